// GET /join/{session_id}: join a session, share this device's position, and watch everyone's on
// the map, live, over the Phoenix channel `location:{session_id}`.
//
// This module starts the page, holds the join form and runs the live view (the channel, the
// connection state, leaving and ending); the rest lives by what it holds: state.js (what the
// parts share), people.js (the list and the map), position.js (this device's position and the
// rate advice), e2e.js (sealing, SPEC §10), creator.js (the creator's controls) and notices.js.

import { api, ApiError, socketEndpoint } from './api.js';
import { Presence, Socket, SocketState } from './channel.js';
import { setupCreatorControls, showSessionControls } from './creator.js';
import { inOrder, joinedSealed, receiveSealed, receiveSealedDestination, setupE2e, takeKeyFromLink } from './e2e.js';
import { SlippyMap } from './map.js';
import { announceBrief, notify, setGeo, showBanner } from './notices.js';
import {
  drawPerson, fitEveryone, maybeAutoFit, person, renderAll, setFollow, showDestination, tick, userMovedMap,
} from './people.js';
import { followAdvice, sendPosition, sendViewing, startGeolocation, stopGeolocation } from './position.js';
import { cfg, sid, state } from './state.js';
import { announce, byId, clock, el, showView, storage, until } from './ui.js';

const VIEWS = ['loading-view', 'gone-view', 'join-view', 'live-view'];
const LOCKED_TITLE = 'This session is locked';
const LOCKED_TEXT = 'Its creator has locked it: nobody new can join. Ask them to unlock it if you should be in it.';
const PROBE_AFTER_FAILURES = 2; // failed reconnects before asking the API why

const COLOURS = [
  ['Blue', '#1E88E5'],
  ['Red', '#E53935'],
  ['Green', '#2E7D32'],
  ['Orange', '#EF6C00'],
  ['Purple', '#8E24AA'],
  ['Teal', '#00897B'],
  ['Pink', '#D81B60'],
  ['Brown', '#6D4C41'],
];

let socket = null; // the live view's; its channel and presence are in state

// ------------------------------------------------------------------ start

async function init() {
  storage.prune();
  byId('join-form').addEventListener('submit', submitJoin);
  byId('gone-retry').addEventListener('click', () => location.reload());
  buildColourChoices();
  if (!/^[0-9a-fA-F-]{36}$/.test(sid)) {
    gone('There is no session here', 'This link is incomplete or mistyped. Ask for the link again.');
    return;
  }
  const linkKey = takeKeyFromLink();
  try {
    state.session = await api.session(sid);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      gone('There is no session here', 'This session does not exist, or it ended a while ago.');
    } else {
      gone('Cannot open the session', err instanceof ApiError ? err.message : String(err), true);
    }
    return;
  }
  if (!state.session.is_active) {
    storage.forgetSession(sid);
    gone('This session has ended', 'Sharing in this session is over. Ask for a new link if you still want to meet.');
    return;
  }
  state.creator = storage.creator(sid);
  state.me = storage.me(sid);
  // Who is already in stays in (SPEC §9): only a newcomer meets the lock.
  if (state.session.locked && !(state.me?.user_id && state.me?.token)) {
    gone(LOCKED_TITLE, LOCKED_TEXT);
    return;
  }
  if (state.session.e2e && !(await setupE2e(linkKey, gone))) return;
  const title = state.session.name ? `Join “${state.session.name}”` : 'Join the session';
  byId('join-title').textContent = title;
  document.title = `${title} · Location sharing`;
  const expires = new Date(state.session.expires_at);
  const count = state.session.participant_count;
  byId('join-meta').textContent =
    `Sharing is open until ${clock(expires)} (in ${until(expires)}). ` +
    (count === 0 ? 'Nobody has joined yet.' : count === 1 ? '1 person is in it.' : `${count} people are in it.`);
  if (state.me?.user_id && state.me?.token) {
    startLive();
  } else {
    showView(VIEWS, 'join-view');
  }
}

function gone(title, text, canRetry = false) {
  byId('gone-title').textContent = title;
  byId('gone-text').textContent = text;
  byId('gone-retry').hidden = !canRetry;
  showView(VIEWS, 'gone-view');
  document.title = `${title} · Location sharing`;
}

function buildColourChoices() {
  const box = byId('colour-choices');
  const pick = Math.floor(Math.random() * COLOURS.length);
  COLOURS.forEach(([name, hex], i) => {
    const id = `colour-${name.toLowerCase()}`;
    const input = el('input', { type: 'radio', name: 'avatar_color', id, value: hex, checked: i === pick });
    const swatch = el('span', { class: 'swatch' });
    swatch.style.backgroundColor = hex;
    box.append(el('div', { class: 'colour-choice' }, input, el('label', { for: id }, swatch, name)));
  });
}

async function submitJoin(event) {
  event.preventDefault();
  const input = byId('display-name');
  const nameError = byId('display-name-error');
  const error = byId('join-error');
  const name = input.value.trim();
  announce(error, '');
  nameError.hidden = true;
  input.removeAttribute('aria-invalid');
  if (!name) {
    nameError.textContent = 'Please enter a name, so the others know who you are.';
    nameError.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  const colour = document.querySelector('input[name="avatar_color"]:checked')?.value;
  const button = byId('join-button');
  button.disabled = true;
  button.textContent = 'Joining…';
  try {
    const joined = await api.join(sid, name, colour);
    state.me = {
      user_id: joined.user_id,
      token: joined.websocket_token,
      display_name: name,
      avatar_color: colour,
      expires_at: state.session.expires_at,
    };
    storage.setMe(sid, state.me);
    startLive();
  } catch (err) {
    if (err instanceof ApiError && err.fields?.display_name) {
      nameError.textContent = `Your name ${[].concat(err.fields.display_name).join(', ')}.`;
      nameError.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } else if (err instanceof ApiError && err.status === 403 && err.detail === 'session is locked') {
      gone(LOCKED_TITLE, LOCKED_TEXT);
    } else if (err instanceof ApiError && (err.status === 409 || err.status === 410 || err.status === 404)) {
      if (err.status !== 409) storage.forgetSession(sid);
      gone(err.status === 409 ? 'This session is full' : 'This session has ended', err.message);
    } else {
      announce(error, err instanceof ApiError ? err.message : 'Something went wrong. Please try again.', 'error');
    }
  } finally {
    button.disabled = false;
    button.textContent = 'Join and share my location';
  }
}

// ------------------------------------------------------------------ live view

function startLive() {
  showView(VIEWS, 'live-view');
  const title = state.session.name || 'Location sharing';
  byId('live-title').textContent = title;
  document.title = `${title} · Location sharing`;
  // The form that had focus is gone: start from the top of the live view.
  byId('live-title').tabIndex = -1;
  byId('live-title').focus();
  state.map = new SlippyMap(byId('map'), { tileUrl: cfg.tileUrl, onUserMove: userMovedMap });
  person(state.me.user_id, { display_name: state.me.display_name, avatar_color: state.me.avatar_color });

  byId('fit').addEventListener('click', () => {
    setFollow(false);
    fitEveryone();
  });
  byId('follow').addEventListener('click', () => setFollow(!state.following));
  byId('leave').addEventListener('click', leave);
  byId('retry-now').addEventListener('click', () => socket?.reconnectNow());
  if (state.creator?.creator_token) {
    byId('creator-controls').hidden = false;
    byId('end-session').addEventListener('click', endSession);
    setupCreatorControls(showSession);
  }
  showSession(state.session);
  if (state.e2e) {
    showDestination(null);
    receiveSealedDestination(state.session.destination ?? null);
  } else {
    showDestination(state.session.destination ?? null);
  }
  document.addEventListener('visibilitychange', sendViewing);

  socket = new Socket(socketEndpoint(), {
    // `sid` lets an ingress hashing on it keep a session's sockets on one replica (README,
    // Session-affine routing); the server reads only the token.
    params: { sid, token: state.me.token },
    onStateChange: connectionChanged,
    onOpenFailure: (tries) => {
      if (tries >= PROBE_AFTER_FAILURES && tries % PROBE_AFTER_FAILURES === 0) probe();
    },
  });
  state.channel = socket.channel(`location:${sid}`, {});
  state.presence = new Presence(state.channel);
  state.presence.onSync = renderAll;
  state.channel.join()
    .receive('ok', joinedChannel)
    .receive('error', ({ reason }) => refused(reason));
  state.channel.on('participant_joined', (p) => {
    person(p.user_id, p);
    renderAll();
  });
  state.channel.on('participant_left', ({ user_id: userId, reason }) => {
    if (userId === state.me.user_id) {
      finish(
        reason === 'removed' ? 'You were removed from this session by its creator.'
          : reason === 'inactive' ? 'You were taken out of this session after a long time without activity.'
            : 'You left this session (from another tab or device).',
        'Removed',
      );
      storage.forgetMe(sid);
      return;
    }
    const p = state.people.get(userId);
    state.people.delete(userId);
    state.map.removeMarker(userId);
    p?.row?.remove();
    renderAll();
    if (p) announceBrief(`${p.display_name} ${reason === 'removed' ? 'was removed' : 'left'}.`);
  });
  state.channel.on('location_update', (u) => {
    if (state.e2e) {
      receiveSealed(u);
      return;
    }
    const p = person(u.user_id, {});
    p.loc = { lat: u.lat, lng: u.lng, accuracy: u.accuracy, at: Date.now() };
    p.lastSeen = Date.now();
    // The keys are there only while a meeting point is set.
    p.dist = Number.isFinite(u.distance_m) ? { distance: u.distance_m, eta: u.eta_s ?? null } : null;
    drawPerson(p);
    renderAll();
    maybeAutoFit();
  });
  state.channel.on('destination_set', (d) => {
    if (state.e2e) {
      receiveSealedDestination(d);
      return;
    }
    showDestination(d);
    renderAll();
  });
  state.channel.on('destination_cleared', () => {
    if (state.e2e) {
      // In order with the sealed messages still being opened.
      inOrder(async () => {
        showDestination(null);
        renderAll();
      });
      return;
    }
    showDestination(null);
    renderAll();
  });
  state.channel.on('participant_arrived', ({ user_id: userId, arrived_at: at }) => {
    const p = person(userId, {});
    p.arrivedAt = new Date(at);
    renderAll();
    notify(userId === state.me.user_id ? 'You arrived at the meeting point.' : `${p.display_name} arrived`);
  });
  state.channel.on('participant_departed', ({ user_id: userId }) => {
    const p = state.people.get(userId);
    if (!p) return;
    p.arrivedAt = null;
    renderAll();
  });
  state.channel.on('session_updated', (s) => {
    showSession({ ...state.session, ...s });
  });
  state.channel.on('rate_advice', followAdvice);
  state.channel.on('session_ended', ({ reason }) => {
    storage.forgetSession(sid);
    const why = {
      ended_by_creator: 'The creator ended this session.',
      expired: 'This session has reached the end of its time.',
      inactive: 'This session ended after a long time without activity.',
    }[reason] ?? 'This session has ended.';
    finish(`${why} Positions are no longer shared.`, 'Ended');
  });
  socket.connect();
  startGeolocation();
  setInterval(tick, 1000);
}

function joinedChannel({ participants = [], locations = [], destination: dest = null, arrivals = {} }) {
  setConnection('live', 'Live');
  sendViewing();
  if (!state.e2e) showDestination(dest);
  for (const p of state.people.values()) p.arrivedAt = null;
  for (const [id, at] of Object.entries(arrivals ?? {})) person(id, {}).arrivedAt = new Date(at);
  const now = Date.now();
  const listed = new Set();
  for (const p of participants) {
    listed.add(p.user_id);
    const person_ = person(p.user_id, p);
    const seen = Date.parse(p.last_seen);
    if (Number.isFinite(seen)) person_.lastSeen = Math.max(person_.lastSeen ?? 0, Math.min(seen, now));
  }
  // Whoever left while we were away is gone.
  for (const id of [...state.people.keys()]) {
    if (!listed.has(id) && id !== state.me.user_id) {
      state.people.get(id)?.row?.remove();
      state.people.delete(id);
      state.map.removeMarker(id);
    }
  }
  if (state.e2e) {
    joinedSealed(dest, locations);
    return;
  }
  for (const l of locations) {
    if (l.user_id === state.me.user_id) continue;
    const p = person(l.user_id, {});
    const age = Math.min(cfg.locationTtlMs, Math.max(0, now - Date.parse(l.timestamp) || 0));
    p.loc = { lat: l.lat, lng: l.lng, accuracy: l.accuracy, at: now - age };
    p.dist = Number.isFinite(l.distance_m) ? { distance: l.distance_m, eta: l.eta_s ?? null } : p.dist ?? null;
    drawPerson(p);
  }
  renderAll();
  maybeAutoFit();
  // After a reconnect, tell the others where we are at once.
  if (state.ownFix) sendPosition(true);
}

function refused(reason) {
  if (reason === 'session_ended') {
    storage.forgetSession(sid);
    finish('This session has ended.', 'Ended');
  } else {
    storage.forgetMe(sid);
    finish('You are no longer in this session. Reload the page to join again.', 'Removed', true);
  }
}

/** The socket keeps failing: ask the API whether the session or our place in it is gone. */
async function probe() {
  if (state.over) return;
  try {
    const s = await api.session(sid);
    if (!s.is_active) {
      refused('session_ended');
      return;
    }
    const { participants } = await api.participants(sid);
    if (!participants.some((p) => p.user_id === state.me.user_id)) refused('not_a_participant');
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) refused('session_ended');
    else if (err instanceof ApiError && err.status >= 500) showBanner(`${err.message} Still trying to reconnect.`);
    // Network down: the socket keeps retrying and the connection state says so.
  }
}

/** Ends the live view: no more sharing, no reconnects. */
function finish(text, connection, offerRejoin = false) {
  if (state.over) return;
  state.over = true;
  stopGeolocation();
  socket?.disconnect();
  setConnection('closed', connection);
  showBanner(text, offerRejoin);
  byId('follow').disabled = true;
  byId('leave').disabled = true;
  byId('creator-controls').hidden = true;
  byId('lock-offer').hidden = true;
  setGeo('Your position is no longer shared.');
  for (const b of byId('people').querySelectorAll('button.remove')) b.remove();
  // Nobody's position is shown any more: the server has already forgotten them.
  for (const p of state.people.values()) {
    if (p.id === state.me.user_id) continue;
    if (p.loc) p.lastSeen = Math.max(p.lastSeen ?? 0, p.loc.at);
    p.loc = null;
    state.map.removeMarker(p.id);
  }
  renderAll();
}

/** The session as it now is (after `session_updated` or the creator's change): name, badges, controls. */
function showSession(s) {
  state.session = { ...state.session, ...s };
  const title = state.session.name || 'Location sharing';
  if (byId('live-title').textContent !== title) byId('live-title').textContent = title;
  document.title = `${title} · Location sharing`;
  byId('locked-badge').hidden = !state.session.locked;
  byId('e2e-badge').hidden = !state.e2e;
  if (state.creator?.creator_token) showSessionControls();
}

// ------------------------------------------------------------------ connection state

let countdownTimer = null;

function connectionChanged(socketState, info) {
  if (state.over) return;
  clearInterval(countdownTimer);
  byId('conn-countdown').textContent = '';
  byId('retry-now').hidden = true;
  if (socketState === SocketState.CONNECTING) {
    setConnection('connecting', info.tries ? 'Reconnecting…' : 'Connecting…');
  } else if (socketState === SocketState.OPEN) {
    setConnection('connecting', 'Joining…');
  } else if (socketState === SocketState.WAITING) {
    setConnection('waiting', 'Connection lost');
    byId('retry-now').hidden = false;
    const show = () => {
      const s = Math.max(0, Math.ceil((info.at - Date.now()) / 1000));
      byId('conn-countdown').textContent = s > 0 ? `retry in ${s} s` : 'retrying…';
    };
    show();
    countdownTimer = setInterval(show, 1000);
  } else if (socketState === SocketState.CLOSED) {
    setConnection('closed', 'Disconnected');
  }
  tick(); // who is online is unknown while disconnected: the list says so at once
}

function setConnection(kind, text) {
  const conn = byId('conn');
  conn.dataset.state = kind;
  if (conn.textContent !== text) conn.textContent = text;
  if (kind === 'live') byId('banner').hidden = state.over ? byId('banner').hidden : true;
}

// ------------------------------------------------------------------ leaving and ending

async function endSession() {
  if (!state.creator?.creator_token || state.over) return;
  if (!window.confirm('End this session for everyone? Nobody will be able to share in it again.')) return;
  try {
    await api.end(sid, state.creator.creator_token);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 410)) {
      showBanner(err instanceof ApiError ? err.message : 'Could not end the session.');
      return;
    }
  }
  storage.forgetSession(sid);
  finish('You ended this session for everyone.', 'Ended');
}

async function leave() {
  if (state.over) return;
  if (!window.confirm('Leave this session? The others will see that you left.')) return;
  const button = byId('leave');
  button.disabled = true;
  try {
    await api.remove(sid, state.me.user_id, state.me.token);
  } catch (err) {
    // 401: our place was already gone; anything else: say so and stay.
    if (!(err instanceof ApiError && (err.status === 401 || err.status === 404 || err.status === 410))) {
      button.disabled = false;
      showBanner(err instanceof ApiError ? err.message : 'Could not leave. Please try again.');
      return;
    }
  }
  storage.forgetMe(sid);
  finish('You left this session. Your position is no longer shared.', 'Left', true);
}

init();
