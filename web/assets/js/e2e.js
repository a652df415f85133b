// End-to-end encryption on the join page (SPEC §10): the key from the link's fragment, opening
// what arrives and sealing what we send in the order it came, and the status line when something
// does not open. The cryptography itself is seal.js.
//
// In an end-to-end encrypted session every position and the meeting point travel sealed with the
// key from the link's fragment (seal.js); the server relays them and computes nothing, so
// distances, ETAs and arrivals are worked out here (people.js's measure, with approach.js), by
// the same rules as the server's. A message that does not open is ignored and counted, and the
// page says so: it never shows a position it could not open.

import { api } from './api.js';
import { drawPerson, maybeAutoFit, measure, person, renderAll, showDestination } from './people.js';
import { aadOf, importKey, isKeyText, locationPlaintext, open, readDestination, readLocation, seal } from './seal.js';
import { sid, state } from './state.js';
import { byId, tabKey } from './ui.js';

const KEY_MISSING_TITLE = 'This link is missing its key';
const KEY_MISSING_TEXT = 'This session is end-to-end encrypted: positions can only be read with the key at the end of '
  + 'its link (the part after “#k=”), and this link has none. Ask for the whole link again — use the Copy link '
  + 'button or the QR code, since some apps cut links short.';
const KEY_DAMAGED_TITLE = 'The key in this link is damaged';
const KEY_DAMAGED_TEXT = 'This session is end-to-end encrypted, and the key at the end of its link (after “#k=”) is '
  + 'incomplete or changed. Ask for the whole link again — use the Copy link button or the QR code.';

/**
 * Takes `#k=…` out of the address bar at once (so it is not left in history, bookmarks or a
 * screenshot), keeping the key in this tab only; returns it, '' when malformed, or null.
 */
export function takeKeyFromLink() {
  if (!location.hash) return null;
  const k = new URLSearchParams(location.hash.slice(1)).get('k');
  history.replaceState(history.state, '', location.pathname + location.search);
  if (k === null) return null;
  if (!isKeyText(k)) return '';
  tabKey.set(sid, k);
  return k;
}

/**
 * Readies sealing with the key from the link, or from this tab; false without one, having said why
 * with `gone(title, text)` (join.js's page for a session that cannot be entered).
 */
export async function setupE2e(linkKey, gone) {
  if (linkKey === '') {
    gone(KEY_DAMAGED_TITLE, KEY_DAMAGED_TEXT);
    return false;
  }
  const text = linkKey ?? tabKey.get(sid);
  if (!isKeyText(text)) {
    gone(KEY_MISSING_TITLE, KEY_MISSING_TEXT);
    return false;
  }
  try {
    state.e2e = { key: await importKey(text), opened: 0, failed: 0 };
  } catch {
    gone('This browser cannot open encrypted sessions', 'It lacks the Web Crypto API (AES-GCM) this session needs. Try an up-to-date browser.');
    return false;
  }
  byId('join-e2e').hidden = false;
  return true;
}

// Opening is asynchronous: one chain keeps sealed messages in the order they came.
let chain = Promise.resolve();
export function inOrder(fn) {
  chain = chain.then(fn).catch((err) => console.error('an encrypted message could not be handled:', err?.message));
  return chain;
}

function counted(ok) {
  if (ok) state.e2e.opened += 1;
  else state.e2e.failed += 1;
  if (!ok || state.e2e.failed) showE2eStatus();
  return ok;
}

function showE2eStatus() {
  const box = byId('e2e-status');
  const n = state.e2e.failed;
  if (n === 0) {
    box.hidden = true;
    return;
  }
  box.dataset.kind = state.e2e.opened === 0 ? 'wrong-key' : 'some-failed';
  const text = state.e2e.opened === 0
    ? `Wrong key: nothing in this session opens with the key in your link (${n === 1 ? '1 message' : `${n} messages`} `
      + 'could not be opened), so no position can be shown. The link may be damaged or belong to another session: ask for it again.'
    : `${n === 1 ? '1 message' : `${n} messages`} could not be opened with this session's key and ${n === 1 ? 'was' : 'were'} ignored.`;
  if (box.textContent !== text) box.textContent = text;
  box.hidden = false;
}

/** A sealed position opened: {lat, lng, accuracy?, heading?, speed?, timestamp}, or null (counted). */
async function openLocation(userId, sealed) {
  const loc = readLocation(await open(state.e2e.key, aadOf(sid, userId), sealed));
  counted(!!loc);
  return loc;
}

/** A sealed meeting point {sealed, set_at} opened, as a clear one {lat, lng, radius_m, label, set_at}. */
async function openDestination(d) {
  if (!d) return null;
  const place = typeof d.sealed === 'string' ? readDestination(await open(state.e2e.key, aadOf(sid, null), d.sealed)) : null;
  counted(!!place);
  return place ? { ...place, set_at: d.set_at } : null;
}

/** Someone's sealed location: {user_id, sealed, received_at}; `quiet` for the join snapshot's. */
export function receiveSealed(u, quiet = false) {
  return inOrder(async () => {
    if (typeof u?.sealed !== 'string' || !u.user_id || u.user_id === state.me.user_id) return;
    const loc = await openLocation(u.user_id, u.sealed);
    if (!loc || state.over) return;
    const now = Date.now();
    const received = Date.parse(u.received_at);
    const at = Number.isFinite(received) ? Math.min(received, now) : now;
    const p = person(u.user_id, {});
    p.loc = { lat: loc.lat, lng: loc.lng, accuracy: loc.accuracy, at };
    p.lastSeen = Math.max(p.lastSeen ?? 0, at);
    measure(p, { ...loc, at: loc.timestamp ?? at }, quiet);
    drawPerson(p);
    renderAll();
    maybeAutoFit();
  });
}

export function receiveSealedDestination(d) {
  return inOrder(async () => {
    const place = await openDestination(d);
    if (state.over) return;
    // One that does not open is no meeting point at all: never show a place it could not read.
    showDestination(place);
    renderAll();
  });
}

/** The join snapshot's sealed meeting point and locations (the rest of it is handled already). */
export function joinedSealed(dest, locations) {
  receiveSealedDestination(dest);
  for (const l of locations) receiveSealed(l, true);
  inOrder(async () => {
    renderAll();
    maybeAutoFit();
  });
}

/** Seals our position (SPEC §3's fields, sent now) and sends it; in order, like clear ones. */
let sealing = Promise.resolve();
export function sendSealed(fix) {
  const plain = locationPlaintext(fix, Date.now());
  sealing = sealing.then(async () => {
    const sealed = await seal(state.e2e.key, aadOf(sid, state.me.user_id), plain);
    if (state.over || !state.channel?.isJoined()) return;
    state.channel.push('location_update', { sealed }).receive('error', ({ reason }) => {
      if (reason === 'invalid_location') console.warn('the server refused a sealed position');
    });
  }).catch((err) => console.error('could not seal a position:', err?.message));
}

/** The creator seals the meeting point ({lat, lng, radius_m, label}) and sets it. */
export async function setSealedDestination(place, token) {
  const plain = { lat: place.lat, lng: place.lng, radius_m: place.radius_m };
  if (place.label) plain.label = place.label;
  const sealed = await seal(state.e2e.key, aadOf(sid, null), plain);
  const set = await api.setDestination(sid, { sealed }, token);
  await inOrder(async () => {
    showDestination({ ...plain, label: place.label ?? null, set_at: set.set_at });
    renderAll();
  });
}
