// The creator's controls on the live view (SPEC §9): the meeting point (picked on the map, typed,
// or found with the place search; moved or cleared), the lock, the session's name, removing
// someone, and the offer to lock the session right after a removal. Only a browser holding the
// creator token shows them (join.js sets them up); ending the session is join.js's, with leaving.

import { api, ApiError } from './api.js';
import { setSealedDestination } from './e2e.js';
import { parseCoordinates, parseRadius, RADIUS_MAX, RADIUS_MIN, searchPlaces } from './meet.js';
import { notify, showBanner } from './notices.js';
import { renderAll, setRemoveAction, showDestination } from './people.js';
import { cfg, sid, state } from './state.js';
import { announce, byId, el } from './ui.js';

let renaming = false; // the creator has edited the name box since it last matched the session

/**
 * The creator's lock button, lock offer and name box, in step with the session (join.js's
 * showSession calls it whenever the session changes).
 */
export function showSessionControls() {
  const lock = byId('lock');
  lock.textContent = state.session.locked ? 'Unlock the session' : 'Lock the session';
  lock.setAttribute('aria-pressed', String(!!state.session.locked));
  if (!byId('lock-offer').hidden) showLockOffer();
  // A name being typed is the creator's: only an untouched box follows the session.
  if (!renaming) byId('rename-input').value = state.session.name ?? '';
}

/** The creator renames the session (SPEC §9); every page follows on `session_updated`. */
function setupRename(token, showSession) {
  const input = byId('rename-input');
  const error = byId('rename-error');
  input.addEventListener('input', () => { renaming = true; });
  byId('rename-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    input.removeAttribute('aria-invalid');
    const button = byId('rename-save');
    button.disabled = true;
    try {
      // Blank clears the name, as the server reads it.
      const updated = await api.update(sid, { name: input.value.trim() || null }, token);
      renaming = false;
      showSession(updated);
      notify(updated.name ? `The session is now called “${updated.name}”.` : 'The session has no name now.');
    } catch (err) {
      error.textContent = err instanceof ApiError && err.fields?.name
        ? `The name ${[].concat(err.fields.name).join(', ')}.`
        : err instanceof ApiError ? err.message : 'Could not rename the session.';
      error.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
}

async function toggleLock(showSession) {
  if (!state.creator?.creator_token || state.over) return;
  try {
    showSession(await api.update(sid, { locked: !state.session.locked }, state.creator.creator_token));
  } catch (err) {
    showBanner(err instanceof ApiError ? err.message : 'Could not change the lock.');
  }
}

// A removed person who kept the link (and its key) can join again under a new name unless the
// session is locked (SPEC §9): right after a removal, offer to lock it.
let offeredFor = null;

function offerLock(name) {
  offeredFor = name;
  showLockOffer();
}

function showLockOffer() {
  const box = byId('lock-offer');
  if (offeredFor === null || state.over || !state.creator?.creator_token) {
    box.hidden = true;
    return;
  }
  byId('lock-offer-text').textContent = state.session.locked
    ? 'The session is locked: nobody new can join, and who is in stays in.'
    : `${offeredFor} still has the link and could join again under another name. Lock the session so that nobody new can join?`;
  byId('lock-offer-button').hidden = !!state.session.locked;
  byId('lock-offer-dismiss').textContent = state.session.locked ? 'OK' : 'Not now';
  box.hidden = false;
}

/** Wires the creator's controls up; `showSession` is join.js's, given what the API answers. */
export function setupCreatorControls(showSession) {
  const token = state.creator.creator_token;
  setRemoveAction(removePerson);
  setupRename(token, showSession);
  const error = byId('dest-error');
  const pick = byId('dest-pick');
  const setPicking = (on) => {
    pick.setAttribute('aria-pressed', String(on));
    byId('map').classList.toggle('picking', on);
    state.map.onPick = on ? (ll) => {
      setPicking(false);
      byId('dest-coords').value = `${ll.lat.toFixed(5)}, ${ll.lng.toFixed(5)}`;
      saveDestination();
    } : null;
  };
  pick.addEventListener('click', () => setPicking(pick.getAttribute('aria-pressed') !== 'true'));

  async function saveDestination() {
    announce(error, '');
    const at = parseCoordinates(byId('dest-coords').value);
    const radius = parseRadius(byId('dest-radius').value);
    if (!at) return announce(error, 'Type a latitude and a longitude, like “48.8566, 2.3522”, or click the map.', 'error');
    if (radius === null) return announce(error, `The radius is from ${RADIUS_MIN} to ${RADIUS_MAX} metres.`, 'error');
    const label = byId('dest-label').value.trim();
    try {
      if (state.e2e) {
        await setSealedDestination({ ...at, radius_m: radius, label: label || null }, token);
        return;
      }
      showDestination(await api.setDestination(sid, { ...at, radius_m: radius, label: label || null }, token));
      renderAll();
    } catch (err) {
      announce(error, err instanceof ApiError ? err.message : 'Could not set the meeting point.', 'error');
    }
  }
  byId('dest-form').addEventListener('submit', (e) => {
    e.preventDefault();
    saveDestination();
  });
  byId('dest-clear').addEventListener('click', async () => {
    announce(error, '');
    try {
      await api.clearDestination(sid, token);
    } catch (err) {
      // 404: it was already gone, which is what was asked.
      if (!(err instanceof ApiError && err.status === 404)) {
        announce(error, err instanceof ApiError ? err.message : 'Could not clear the meeting point.', 'error');
        return;
      }
    }
    showDestination(null);
    renderAll();
  });
  const toggle = () => toggleLock(showSession);
  byId('lock').addEventListener('click', toggle);
  byId('lock-offer-button').addEventListener('click', toggle);
  byId('lock-offer-dismiss').addEventListener('click', () => {
    byId('lock-offer').hidden = true;
  });

  if (!cfg.geocoderUrl) return;
  byId('place-search').hidden = false;
  const results = byId('place-results');
  let inFlight = null;
  const search = async () => {
    const q = byId('place-query').value.trim();
    if (!q) return;
    inFlight?.abort();
    inFlight = new AbortController();
    results.replaceChildren(el('li', { class: 'hint', text: 'Searching…' }));
    try {
      const places = await searchPlaces(cfg.geocoderUrl, q, inFlight.signal);
      results.replaceChildren(...(places.length ? places.map((place) => el('li', {},
        el('button', {
          type: 'button',
          class: 'link',
          text: place.name || `${place.lat}, ${place.lng}`,
          on: {
            click: () => {
              results.replaceChildren();
              byId('dest-coords').value = `${place.lat.toFixed(5)}, ${place.lng.toFixed(5)}`;
              // Cut by characters, as the server counts: a cut inside a surrogate pair is malformed JSON to it.
              byId('dest-label').value = Array.from(place.name.split(',')[0]).slice(0, 100).join('');
              saveDestination();
            },
          },
        }))) : [el('li', { class: 'hint', text: 'No place found.' })]));
    } catch (err) {
      if (err.name !== 'AbortError') results.replaceChildren(el('li', { class: 'hint', text: 'The place search is not available right now.' }));
    }
  };
  byId('place-go').addEventListener('click', search);
  // Enter searches; it must not submit the meeting-point form with stale coordinates.
  byId('place-query').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      search();
    }
  });
}

/** The creator's Remove button on someone's row (people.js draws it). */
async function removePerson(p) {
  if (!state.creator?.creator_token || state.over) return;
  if (!window.confirm(`Remove ${p.display_name} from the session? They will see that you removed them.`)) return;
  try {
    await api.remove(sid, p.id, state.creator.creator_token);
    offerLock(p.display_name);
  } catch (err) {
    showBanner(err instanceof ApiError ? err.message : 'Could not remove them.');
  }
}
