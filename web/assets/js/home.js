// GET /: start a session, share its link (copy, share sheet, QR code) and manage it.

import { api, ApiError } from './api.js';
import { drawQr } from './qr.js';
import { encodeQr } from './qrcode.js';
import { newKeyText } from './seal.js';
import { announce, byId, clock, el, ago, showView, storage, tabKey, until } from './ui.js';

const VIEWS = ['start-view', 'manage-view'];
const POLL_MS = 3000;

let current = null; // {session_id, creator_token, join_link, expires_at, name, e2e}
let locked = false; // the session's lock, as last polled
let pollTimer = null;
let ended = false;

function startView() {
  stopPolling();
  current = null;
  history.replaceState(null, '', '/');
  showView(VIEWS, 'start-view');
  listMySessions();
}

function listMySessions() {
  const mine = storage.created();
  const list = byId('my-sessions-list');
  list.replaceChildren();
  byId('my-sessions').hidden = mine.length === 0;
  for (const s of mine) {
    const name = s.name || 'Untitled session';
    list.append(
      el('li', {},
        el('span', { class: 'grow' },
          el('strong', { text: name }),
          el('span', { class: 'hint', text: ` · ends at ${clock(new Date(s.expires_at))}` })),
        el('button', {
          type: 'button',
          text: 'Manage',
          'aria-label': `Manage ${name}`,
          on: { click: () => manage(s) },
        })),
    );
  }
}

async function start(event) {
  event.preventDefault();
  const name = byId('session-name').value.trim();
  const minutes = Number.parseInt(byId('session-duration').value, 10);
  const button = byId('start-button');
  const error = byId('start-error');
  const nameError = byId('session-name-error');
  announce(error, '');
  nameError.hidden = true;
  byId('session-name').removeAttribute('aria-invalid');
  button.disabled = true;
  button.textContent = 'Starting…';
  const e2e = byId('session-e2e').checked;
  try {
    const created = await api.createSession(name, minutes, e2e);
    const record = {
      session_id: created.session_id,
      creator_token: created.creator_token,
      join_link: created.join_link,
      expires_at: created.expires_at,
      name: created.name,
      e2e: created.e2e === true,
      created_at: new Date().toISOString(),
    };
    // The key is made here and stays in this tab; the server only learns that there is one.
    if (record.e2e) tabKey.set(created.session_id, newKeyText());
    storage.setCreator(created.session_id, record);
    manage(record);
  } catch (err) {
    if (err instanceof ApiError && err.fields?.name) {
      nameError.textContent = `The name ${[].concat(err.fields.name).join(', ')}.`;
      nameError.hidden = false;
      byId('session-name').setAttribute('aria-invalid', 'true');
      byId('session-name').focus();
    } else {
      announce(error, err instanceof ApiError ? err.message : 'Something went wrong. Please try again.', 'error');
    }
  } finally {
    button.disabled = false;
    button.textContent = 'Start a session';
  }
}

function manage(record) {
  current = record;
  ended = false;
  offered = null;
  history.replaceState(null, '', `/#session=${record.session_id}`);
  showView(VIEWS, 'manage-view');
  byId('manage-title').textContent = record.name ? `“${record.name}” is ready` : 'Your session is ready';
  const expires = new Date(record.expires_at);
  byId('manage-meta').textContent = `Sharing is open until ${clock(expires)} (in ${until(expires)}). Send this link to the people you want to see.`;
  byId('manage-ended').hidden = true;
  byId('share-box').hidden = false;
  byId('creator-box').hidden = false;
  byId('lock-offer').hidden = true;
  locked = false;
  // An encrypted session's link is only whole with its key, which only this tab has.
  const key = record.e2e ? tabKey.get(record.session_id) : null;
  const link = key ? `${record.join_link}#k=${key}` : record.join_link;
  const usable = !record.e2e || !!key;
  byId('e2e-note').hidden = !(record.e2e && key);
  byId('key-missing').hidden = usable;
  byId('share-link').closest('.row').hidden = !usable;
  byId('qr').closest('figure').hidden = !usable;
  byId('share-link').value = usable ? link : '';
  byId('copy-status').textContent = '';
  byId('open-map').href = `/join/${encodeURIComponent(record.session_id)}${key ? `#k=${key}` : ''}`;
  byId('share-link-button').hidden = !usable || typeof navigator.share !== 'function';
  byId('people').replaceChildren();
  byId('people-empty').hidden = false;
  announce(byId('manage-status'), '');
  byId('manage-title').tabIndex = -1;
  byId('manage-title').focus();
  if (usable) loadQr(record, link);
  poll();
}

async function loadQr(record, link) {
  const canvas = byId('qr');
  try {
    // The server draws the QR code of a plain link; one that carries a key is encoded here, since
    // the key must not leave this tab.
    const matrix = record.e2e ? encodeQr(link) : await api.qr(record.session_id);
    drawQr(canvas, matrix, 200);
    canvas.hidden = false;
  } catch {
    canvas.hidden = true;
  }
}

async function copyLink() {
  const input = byId('share-link');
  const status = byId('copy-status');
  try {
    await navigator.clipboard.writeText(input.value);
    status.textContent = 'Link copied. Paste it into a message.';
  } catch {
    input.focus();
    input.select();
    status.textContent = 'Select the link and copy it (it is selected now).';
  }
}

async function shareLink() {
  try {
    await navigator.share({ title: current?.name || 'Location sharing', url: byId('share-link').value });
  } catch {
    // Cancelled by the person, or unavailable: nothing to say.
  }
}

function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = null;
}

async function poll() {
  stopPolling();
  const record = current;
  if (!record || ended) return;
  try {
    const [session, list] = await Promise.all([api.session(record.session_id), api.participants(record.session_id)]);
    if (current !== record) return;
    locked = !!session.locked;
    showLockOffer();
    renderPeople(list.participants);
    if (!session.is_active) {
      showEnded('This session has ended. Start a new one to share again.');
      return;
    }
    announceOnce('');
  } catch (err) {
    if (current !== record) return;
    if (err instanceof ApiError && err.status === 404) {
      showEnded('This session no longer exists.');
      return;
    }
    announceOnce(err instanceof ApiError ? err.message : 'Cannot load the people in this session.');
  }
  if (document.visibilityState === 'visible') pollTimer = setTimeout(poll, POLL_MS);
}

let lastStatus = '';
function announceOnce(text) {
  if (text === lastStatus) return;
  lastStatus = text;
  announce(byId('manage-status'), text, text ? 'error' : 'info');
}

function renderPeople(participants) {
  const list = byId('people');
  byId('people-empty').hidden = participants.length > 0;
  const rows = new Map([...list.children].map((li) => [li.dataset.userId, li]));
  const seen = new Set();
  for (const p of participants) {
    seen.add(p.user_id);
    let li = rows.get(p.user_id);
    if (!li) {
      const swatch = el('span', { class: 'swatch' });
      swatch.style.backgroundColor = p.avatar_color;
      li = el('li', { dataset: { userId: p.user_id } },
        swatch,
        el('span', { class: 'person-main' },
          el('span', { class: 'person-name', text: p.display_name }),
          el('span', { class: 'person-status' })),
        el('button', {
          type: 'button',
          class: 'small danger-outline',
          text: 'Remove',
          'aria-label': `Remove ${p.display_name}`,
          on: { click: () => removePerson(p) },
        }));
      list.append(li);
    }
    const seenAgo = ago(Date.now() - Date.parse(p.last_seen));
    li.querySelector('.person-status').textContent = p.is_active ? `Active · seen ${seenAgo}` : `Idle · last seen ${seenAgo}`;
  }
  for (const [id, li] of rows) if (!seen.has(id)) li.remove();
}

async function removePerson(p) {
  const record = current;
  if (!record || ended) return;
  if (!window.confirm(`Remove ${p.display_name} from the session? They will see that you removed them.`)) return;
  try {
    await api.remove(record.session_id, p.user_id, record.creator_token);
    announce(byId('manage-status'), `${p.display_name} was removed from the session.`);
    lastStatus = byId('manage-status').textContent;
    offerLock(p.display_name);
  } catch (err) {
    announce(byId('manage-status'), err instanceof ApiError ? err.message : 'Could not remove them.', 'error');
  }
  poll();
}

// ------------------------------------------------------------------ the lock, offered after a removal
//
// A removed person who kept the link (and, in an encrypted session, its key) can join again
// under a new name unless the session is locked (SPEC §9): so right after a removal, offer it.

let offered = null; // the name of who was removed, while the offer is shown

function offerLock(name) {
  offered = name;
  showLockOffer();
}

function showLockOffer() {
  const box = byId('lock-offer');
  if (offered === null || ended) {
    box.hidden = true;
    return;
  }
  byId('lock-offer-text').textContent = locked
    ? 'The session is locked: nobody new can join, and who is in stays in.'
    : `${offered} still has the link and could join again under another name. Lock the session so that nobody new can join?`;
  byId('lock-offer-button').textContent = locked ? 'Unlock the session' : 'Lock the session';
  box.hidden = false;
}

async function toggleLock() {
  const record = current;
  if (!record || ended) return;
  try {
    const s = await api.update(record.session_id, { locked: !locked }, record.creator_token);
    if (current !== record) return;
    locked = !!s.locked;
    showLockOffer();
  } catch (err) {
    announce(byId('manage-status'), err instanceof ApiError ? err.message : 'Could not change the lock.', 'error');
  }
}

async function endSession() {
  const record = current;
  if (!record || ended) return;
  if (!window.confirm('End this session for everyone? Nobody will be able to share in it again.')) return;
  const button = byId('end-session');
  button.disabled = true;
  try {
    await api.end(record.session_id, record.creator_token);
    showEnded('You ended this session. Everyone in it has been told.');
  } catch (err) {
    if (err instanceof ApiError && err.status === 410) {
      showEnded('This session had already ended.');
    } else {
      announce(byId('manage-status'), err instanceof ApiError ? err.message : 'Could not end the session.', 'error');
    }
  } finally {
    button.disabled = false;
  }
}

function showEnded(text) {
  ended = true;
  stopPolling();
  if (current) storage.forgetSession(current.session_id);
  byId('manage-title').textContent = 'Session ended';
  byId('manage-meta').textContent = '';
  const box = byId('manage-ended');
  box.textContent = text;
  box.hidden = false;
  byId('share-box').hidden = true;
  byId('creator-box').hidden = true;
  offered = null;
  for (const b of byId('people').querySelectorAll('button')) b.remove();
}

function init() {
  storage.prune();
  byId('start-form').addEventListener('submit', start);
  byId('copy-link').addEventListener('click', copyLink);
  byId('share-link-button').addEventListener('click', shareLink);
  byId('end-session').addEventListener('click', endSession);
  byId('lock-offer-button').addEventListener('click', toggleLock);
  byId('new-session').addEventListener('click', () => {
    startView();
    byId('session-name').value = '';
    byId('session-name').focus();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && current && !ended) poll();
  });
  const match = /^#session=([0-9a-fA-F-]{36})$/.exec(location.hash);
  const record = match ? storage.creator(match[1]) : null;
  if (record) manage(record);
  else startView();
}

init();
