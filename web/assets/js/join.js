// GET /join/{session_id}: join a session, share this device's position, and watch everyone's on
// the map, live, over the Phoenix channel `location:{session_id}`.

import { api, ApiError, socketEndpoint } from './api.js';
import { Presence, Socket, SocketState } from './channel.js';
import { SlippyMap } from './map.js';
import { haversine, parseCoordinates, parseRadius, progressText, RADIUS_MAX, RADIUS_MIN, searchPlaces } from './meet.js';
import { Motion, progress as approach } from './approach.js';
import { aadOf, importKey, isKeyText, locationPlaintext, open, readDestination, readLocation, seal } from './seal.js';
import { announce, ago, byId, clock, config, el, showView, storage, tabKey, until } from './ui.js';

const VIEWS = ['loading-view', 'gone-view', 'join-view', 'live-view'];
const SEND_MIN_INTERVAL_MS = 1000; // until the server advises: at most one update a second
const SEND_FLOOR_MS = 250; // whatever the advice says, never faster than this
const NOTICE_MS = 5000;
const LOCKED_TITLE = 'This session is locked';
const LOCKED_TEXT = 'Its creator has locked it: nobody new can join. Ask them to unlock it if you should be in it.';
const SEND_REFRESH_MS = 10_000; // a still device re-sends so its position does not expire
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

const cfg = config();
const sid = decodeURIComponent(location.pathname.split('/')[2] ?? '');

let session = null; // GET /api/sessions/{id}
let me = null; // {user_id, token, display_name, avatar_color, expires_at}
let creator = null; // {creator_token, …} when this browser created the session
let map = null;
let socket = null;
let channel = null;
let presence = null;
let over = false; // ended, removed or left: nothing more happens
const people = new Map(); // user_id -> person
let destination = null; // {lat, lng, radius_m, label, set_at} while a meeting point is set
let advice = null; // the last rate_advice: {interval_ms, watchers}
let e2e = null; // in an end-to-end encrypted session: {key: CryptoKey, opened, failed} (see "sealing")

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
    session = await api.session(sid);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      gone('There is no session here', 'This session does not exist, or it ended a while ago.');
    } else {
      gone('Cannot open the session', err instanceof ApiError ? err.message : String(err), true);
    }
    return;
  }
  if (!session.is_active) {
    storage.forgetSession(sid);
    gone('This session has ended', 'Sharing in this session is over. Ask for a new link if you still want to meet.');
    return;
  }
  creator = storage.creator(sid);
  me = storage.me(sid);
  // Who is already in stays in (SPEC §9): only a newcomer meets the lock.
  if (session.locked && !(me?.user_id && me?.token)) {
    gone(LOCKED_TITLE, LOCKED_TEXT);
    return;
  }
  if (session.e2e && !(await setupE2e(linkKey))) return;
  const title = session.name ? `Join “${session.name}”` : 'Join the session';
  byId('join-title').textContent = title;
  document.title = `${title} · Location sharing`;
  const expires = new Date(session.expires_at);
  const count = session.participant_count;
  byId('join-meta').textContent =
    `Sharing is open until ${clock(expires)} (in ${until(expires)}). ` +
    (count === 0 ? 'Nobody has joined yet.' : count === 1 ? '1 person is in it.' : `${count} people are in it.`);
  if (me?.user_id && me?.token) {
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
    me = {
      user_id: joined.user_id,
      token: joined.websocket_token,
      display_name: name,
      avatar_color: colour,
      expires_at: session.expires_at,
    };
    storage.setMe(sid, me);
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
  const title = session.name || 'Location sharing';
  byId('live-title').textContent = title;
  document.title = `${title} · Location sharing`;
  // The form that had focus is gone: start from the top of the live view.
  byId('live-title').tabIndex = -1;
  byId('live-title').focus();
  map = new SlippyMap(byId('map'), { tileUrl: cfg.tileUrl, onUserMove: userMovedMap });
  person(me.user_id, { display_name: me.display_name, avatar_color: me.avatar_color });

  byId('fit').addEventListener('click', () => {
    setFollow(false);
    fitEveryone();
  });
  byId('follow').addEventListener('click', () => setFollow(!following));
  byId('leave').addEventListener('click', leave);
  byId('retry-now').addEventListener('click', () => socket?.reconnectNow());
  if (creator?.creator_token) {
    byId('creator-controls').hidden = false;
    byId('end-session').addEventListener('click', endSession);
    setupCreatorControls();
  }
  showSession(session);
  if (e2e) {
    showDestination(null);
    receiveSealedDestination(session.destination ?? null);
  } else {
    showDestination(session.destination ?? null);
  }
  document.addEventListener('visibilitychange', sendViewing);

  socket = new Socket(socketEndpoint(), {
    params: { token: me.token },
    onStateChange: connectionChanged,
    onOpenFailure: (tries) => {
      if (tries >= PROBE_AFTER_FAILURES && tries % PROBE_AFTER_FAILURES === 0) probe();
    },
  });
  channel = socket.channel(`location:${sid}`, {});
  presence = new Presence(channel);
  presence.onSync = renderAll;
  channel.join()
    .receive('ok', joinedChannel)
    .receive('error', ({ reason }) => refused(reason));
  channel.on('participant_joined', (p) => {
    person(p.user_id, p);
    renderAll();
  });
  channel.on('participant_left', ({ user_id: userId, reason }) => {
    if (userId === me.user_id) {
      finish(
        reason === 'removed' ? 'You were removed from this session by its creator.'
          : reason === 'inactive' ? 'You were taken out of this session after a long time without activity.'
            : 'You left this session (from another tab or device).',
        'Removed',
      );
      storage.forgetMe(sid);
      return;
    }
    const p = people.get(userId);
    people.delete(userId);
    map.removeMarker(userId);
    p?.row?.remove();
    renderAll();
    if (p) announceBrief(`${p.display_name} ${reason === 'removed' ? 'was removed' : 'left'}.`);
  });
  channel.on('location_update', (u) => {
    if (e2e) {
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
  channel.on('destination_set', (d) => {
    if (e2e) {
      receiveSealedDestination(d);
      return;
    }
    showDestination(d);
    renderAll();
  });
  channel.on('destination_cleared', () => {
    if (e2e) {
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
  channel.on('participant_arrived', ({ user_id: userId, arrived_at: at }) => {
    const p = person(userId, {});
    p.arrivedAt = new Date(at);
    renderAll();
    notify(userId === me.user_id ? 'You arrived at the meeting point.' : `${p.display_name} arrived`);
  });
  channel.on('participant_departed', ({ user_id: userId }) => {
    const p = people.get(userId);
    if (!p) return;
    p.arrivedAt = null;
    renderAll();
  });
  channel.on('session_updated', (s) => {
    showSession({ ...session, ...s });
  });
  channel.on('rate_advice', followAdvice);
  channel.on('session_ended', ({ reason }) => {
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
  if (!e2e) showDestination(dest);
  for (const p of people.values()) p.arrivedAt = null;
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
  for (const id of [...people.keys()]) {
    if (!listed.has(id) && id !== me.user_id) {
      people.get(id)?.row?.remove();
      people.delete(id);
      map.removeMarker(id);
    }
  }
  if (e2e) {
    joinedSealed(dest, locations);
    return;
  }
  for (const l of locations) {
    if (l.user_id === me.user_id) continue;
    const p = person(l.user_id, {});
    const age = Math.min(cfg.locationTtlMs, Math.max(0, now - Date.parse(l.timestamp) || 0));
    p.loc = { lat: l.lat, lng: l.lng, accuracy: l.accuracy, at: now - age };
    p.dist = Number.isFinite(l.distance_m) ? { distance: l.distance_m, eta: l.eta_s ?? null } : p.dist ?? null;
    drawPerson(p);
  }
  renderAll();
  maybeAutoFit();
  // After a reconnect, tell the others where we are at once.
  if (ownFix) sendPosition(true);
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
  if (over) return;
  try {
    const s = await api.session(sid);
    if (!s.is_active) {
      refused('session_ended');
      return;
    }
    const { participants } = await api.participants(sid);
    if (!participants.some((p) => p.user_id === me.user_id)) refused('not_a_participant');
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) refused('session_ended');
    else if (err instanceof ApiError && err.status >= 500) showBanner(`${err.message} Still trying to reconnect.`);
    // Network down: the socket keeps retrying and the connection state says so.
  }
}

/** Ends the live view: no more sharing, no reconnects. */
function finish(text, state, offerRejoin = false) {
  if (over) return;
  over = true;
  stopGeolocation();
  socket?.disconnect();
  setConnection('closed', state);
  showBanner(text, offerRejoin);
  byId('follow').disabled = true;
  byId('leave').disabled = true;
  byId('creator-controls').hidden = true;
  byId('lock-offer').hidden = true;
  setGeo('Your position is no longer shared.');
  for (const b of byId('people').querySelectorAll('button.remove')) b.remove();
  // Nobody's position is shown any more: the server has already forgotten them.
  for (const p of people.values()) {
    if (p.id === me.user_id) continue;
    if (p.loc) p.lastSeen = Math.max(p.lastSeen ?? 0, p.loc.at);
    p.loc = null;
    map.removeMarker(p.id);
  }
  renderAll();
}

function showBanner(text, offerRejoin = false) {
  const banner = byId('banner');
  banner.replaceChildren(text);
  if (offerRejoin) {
    banner.append(' ', el('a', { href: location.pathname, text: 'Join again' }));
  }
  banner.append(' ', el('a', { href: '/', text: 'Start a new session' }));
  banner.hidden = false;
}

let briefTimer = null;
function announceBrief(text) {
  const region = byId('geo-status');
  const previous = geoText;
  announce(region, text);
  clearTimeout(briefTimer);
  briefTimer = setTimeout(() => announce(region, previous), 4000);
}

// ------------------------------------------------------------------ connection state

let countdownTimer = null;

function connectionChanged(state, info) {
  if (over) return;
  clearInterval(countdownTimer);
  byId('conn-countdown').textContent = '';
  byId('retry-now').hidden = true;
  if (state === SocketState.CONNECTING) {
    setConnection('connecting', info.tries ? 'Reconnecting…' : 'Connecting…');
  } else if (state === SocketState.OPEN) {
    setConnection('connecting', 'Joining…');
  } else if (state === SocketState.WAITING) {
    setConnection('waiting', 'Connection lost');
    byId('retry-now').hidden = false;
    const show = () => {
      const s = Math.max(0, Math.ceil((info.at - Date.now()) / 1000));
      byId('conn-countdown').textContent = s > 0 ? `retry in ${s} s` : 'retrying…';
    };
    show();
    countdownTimer = setInterval(show, 1000);
  } else if (state === SocketState.CLOSED) {
    setConnection('closed', 'Disconnected');
  }
  tick(); // who is online is unknown while disconnected: the list says so at once
}

function setConnection(state, text) {
  const conn = byId('conn');
  conn.dataset.state = state;
  if (conn.textContent !== text) conn.textContent = text;
  if (state === 'live') byId('banner').hidden = over ? byId('banner').hidden : true;
}

// ------------------------------------------------------------------ people

function person(id, data) {
  let p = people.get(id);
  if (!p) {
    p = { id, display_name: '…', avatar_color: '#555555', lastSeen: null, loc: null, row: null };
    people.set(id, p);
  }
  if (data.display_name) p.display_name = data.display_name;
  if (data.avatar_color) p.avatar_color = data.avatar_color;
  return p;
}

function isOnline(id) {
  if (over) return false;
  return !!presence?.state[id] || (id === me.user_id && channel?.isJoined());
}

function isStale(p) {
  return !p.loc || Date.now() - p.loc.at > cfg.locationTtlMs;
}

function drawPerson(p) {
  if (!p.loc) return;
  map.setMarker(p.id, {
    lat: p.loc.lat,
    lng: p.loc.lng,
    accuracy: p.loc.accuracy,
    color: p.avatar_color,
    label: p.id === me.user_id ? `${p.display_name} (you)` : p.display_name,
    // Our own fix stays current while the device keeps watching (a still phone reports no new
    // fix, but the position is re-sent); anyone else's fades once older than the server keeps it.
    stale: p.id === me.user_id ? over || geoBlocked : isStale(p),
    self: p.id === me.user_id,
  });
}

function statusText(p) {
  const self = p.id === me.user_id;
  const now = Date.now();
  if (self) {
    if (over) return 'You · not sharing any more';
    if (!ownFix) return geoBlocked ? 'You · position not shared' : 'You · waiting for your position';
    return `You · position ${ago(now - p.loc.at)}`;
  }
  // Who is online is known only while joined; otherwise say only what we last saw.
  const known = !over && !!channel?.isJoined();
  const online = known && isOnline(p.id);
  const prefix = known ? (online ? 'Online · ' : 'Offline · ') : '';
  let rest;
  if (p.loc) rest = `${isStale(p) ? 'last position' : 'position'} ${ago(now - p.loc.at)}`;
  else if (online) rest = 'no position shared';
  else rest = p.lastSeen ? `last seen ${ago(now - p.lastSeen)}` : 'not seen yet';
  const text = prefix + rest;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function renderRow(p) {
  if (!p.row) {
    const swatch = el('span', { class: 'swatch' });
    const name = el('span', { class: 'person-name' });
    const status = el('span', { class: 'person-status' });
    const progress = el('span', { class: 'person-progress' });
    const show = el('button', {
      type: 'button',
      class: 'small show',
      text: 'Show',
      on: {
        click: () => {
          if (!p.loc) return;
          setFollow(false);
          autoFit = false;
          map.setView(p.loc.lat, p.loc.lng, Math.max(map.zoom, 15));
        },
      },
    });
    const row = el('li', { dataset: { userId: p.id } }, swatch, el('span', { class: 'person-main' }, name, status, progress), show);
    if (creator?.creator_token && p.id !== me.user_id && !over) {
      row.append(el('button', {
        type: 'button',
        class: 'small danger-outline remove',
        text: 'Remove',
        on: { click: () => removePerson(p) },
      }));
    }
    p.row = row;
    p.parts = { swatch, name, status, progress, show };
  }
  const { swatch, name, status, progress, show } = p.parts;
  const along = progressText(progressOf(p));
  if (progress.textContent !== along) progress.textContent = along;
  progress.hidden = !along;
  p.row.classList.toggle('arrived', !!p.arrivedAt);
  swatch.style.backgroundColor = p.avatar_color;
  const label = p.id === me.user_id ? `${p.display_name} (you)` : p.display_name;
  if (name.textContent !== label) name.textContent = label;
  const text = statusText(p);
  if (status.textContent !== text) status.textContent = text;
  show.disabled = !p.loc;
  show.setAttribute('aria-label', `Show ${p.display_name} on the map`);
  p.row.querySelector('.remove')?.setAttribute('aria-label', `Remove ${p.display_name}`);
  p.row.classList.toggle('offline', !isOnline(p.id));
}

/** Distance, ETA and arrival of a person; ours is worked out here, since our updates are not echoed. */
function progressOf(p) {
  if (!destination) return {};
  if (p.arrivedAt) return { arrivedAt: p.arrivedAt };
  if (p.id === me.user_id && !e2e) {
    if (!ownFix) return {};
    const distance = haversine(ownFix, destination);
    const eta = ownFix.speed >= 0.5 ? distance / ownFix.speed : null;
    return { distance, eta };
  }
  return p.dist ?? {};
}

/** Arrived first (earliest first), then the soonest ETA; among the rest: you, who is online, names. */
function rank(p) {
  const g = progressOf(p);
  if (g.arrivedAt) return [0, g.arrivedAt.getTime()];
  if (Number.isFinite(g.eta) && g.eta > 0) return [1, g.eta];
  return [2, 0];
}

/** Rows in order (see rank); nodes move only when the order changes. */
function renderAll() {
  const list = byId('people');
  const ranks = new Map([...people.values()].map((p) => [p.id, rank(p)]));
  const ordered = [...people.values()].sort((a, b) =>
    ranks.get(a.id)[0] - ranks.get(b.id)[0] || ranks.get(a.id)[1] - ranks.get(b.id)[1] ||
    (b.id === me.user_id) - (a.id === me.user_id) ||
    isOnline(b.id) - isOnline(a.id) ||
    a.display_name.localeCompare(b.display_name));
  ordered.forEach((p, i) => {
    renderRow(p);
    if (list.children[i] !== p.row) list.insertBefore(p.row, list.children[i] ?? null);
  });
  byId('people-title').textContent = `People (${people.size})`;
}

function tick() {
  for (const p of people.values()) {
    if (p.loc) drawPerson(p);
    if (p.row) renderRow(p);
  }
}

async function removePerson(p) {
  if (!creator?.creator_token || over) return;
  if (!window.confirm(`Remove ${p.display_name} from the session? They will see that you removed them.`)) return;
  try {
    await api.remove(sid, p.id, creator.creator_token);
    offerLock(p.display_name);
  } catch (err) {
    showBanner(err instanceof ApiError ? err.message : 'Could not remove them.');
  }
}

async function endSession() {
  if (!creator?.creator_token || over) return;
  if (!window.confirm('End this session for everyone? Nobody will be able to share in it again.')) return;
  try {
    await api.end(sid, creator.creator_token);
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
  if (over) return;
  if (!window.confirm('Leave this session? The others will see that you left.')) return;
  const button = byId('leave');
  button.disabled = true;
  try {
    await api.remove(sid, me.user_id, me.token);
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

// ------------------------------------------------------------------ map view

let autoFit = true;
let following = false;

function userMovedMap() {
  autoFit = false;
  setFollow(false);
}

function setFollow(on) {
  following = on && !!ownFix;
  byId('follow').setAttribute('aria-pressed', String(following));
  if (following) map.setView(ownFix.lat, ownFix.lng, Math.max(map.zoom, 15));
}

function positions() {
  return [...people.values()].filter((p) => p.loc).map((p) => p.loc);
}

function fitEveryone() {
  const all = positions();
  const fresh = all.filter((l) => Date.now() - l.at <= cfg.locationTtlMs);
  // Where everyone is heading belongs in "everyone".
  const dest = destination ? [{ lat: destination.lat, lng: destination.lng }] : [];
  map.fitPoints([...(fresh.length ? fresh : all), ...dest]);
}

function maybeAutoFit() {
  if (autoFit && !following) fitEveryone();
}

// ------------------------------------------------------------------ geolocation

let watchId = null;
let ownFix = null; // {lat, lng, accuracy, heading, speed, at}
let geoBlocked = false;
let geoText = '';
let lastSentAt = 0;
let sendTimer = null;
let refreshTimer = null;

function setGeo(text, kind = 'info') {
  geoText = text;
  announce(byId('geo-status'), text, kind);
}

function startGeolocation() {
  if (!window.isSecureContext) {
    return geoOff('browsers only give out a position to pages opened over https. Ask for an https link.');
  }
  if (!('geolocation' in navigator)) {
    return geoOff('this browser has no location service.');
  }
  setGeo('Asking for your position… Allow location access to share it.');
  watchPositions();
  refreshTimer = setInterval(() => {
    // Never more often than advised: a still phone nobody watches rests too.
    if (ownFix && Date.now() - lastSentAt >= Math.max(SEND_REFRESH_MS, sendIntervalMs())) sendPosition(true);
  }, 2000);
  // If location access is granted later (from the browser's site settings), start sharing.
  navigator.permissions?.query({ name: 'geolocation' }).then((status) => {
    status.addEventListener('change', () => {
      if (status.state === 'granted' && geoBlocked && !over) {
        geoBlocked = false;
        stopGeolocation();
        startGeolocation();
      }
    });
  }).catch(() => {});
}

let highAccuracy = null;

/** (Re)starts watching; GPS is what drains a phone, so nobody watching means coarse fixes. */
function watchPositions() {
  const wanted = !advice || advice.watchers > 0;
  if (watchId !== null && wanted === highAccuracy) return;
  if (watchId !== null) navigator.geolocation.clearWatch(watchId);
  highAccuracy = wanted;
  watchId = navigator.geolocation.watchPosition(onFix, onGeoError, {
    enableHighAccuracy: wanted,
    maximumAge: 5000,
    timeout: 30_000,
  });
}

function stopGeolocation() {
  if (watchId !== null) navigator.geolocation.clearWatch(watchId);
  watchId = null;
  clearInterval(refreshTimer);
  clearTimeout(sendTimer);
}

function geoOff(why) {
  geoBlocked = true;
  setGeo(`Your position is not shared: ${why} You can still follow the others on the map.`, 'warning');
  byId('follow').disabled = true;
  byId('follow').title = 'Your position is not shared';
  const self = people.get(me.user_id);
  if (self?.row) renderRow(self);
}

function onGeoError(err) {
  if (over) return;
  if (err.code === err.PERMISSION_DENIED) {
    stopGeolocation();
    geoOff('location access is blocked for this site. To share, allow location for this site in your browser settings; the page picks it up by itself.');
  } else if (err.code === err.POSITION_UNAVAILABLE) {
    geoOff('your device cannot find its position right now (is location turned on?). It keeps trying.');
  } else if (!ownFix) {
    setGeo('Still waiting for your position…');
  }
}

function onFix(pos) {
  if (over) return;
  const c = pos.coords;
  if (!Number.isFinite(c.latitude) || !Number.isFinite(c.longitude)) return;
  const first = !ownFix;
  ownFix = {
    lat: c.latitude,
    lng: c.longitude,
    accuracy: Number.isFinite(c.accuracy) ? Math.min(c.accuracy, 100_000) : undefined,
    heading: Number.isFinite(c.heading) && c.heading >= 0 && c.heading < 360 ? c.heading : undefined,
    speed: Number.isFinite(c.speed) && c.speed >= 0 ? c.speed : undefined,
    at: Date.now(),
  };
  if (geoBlocked || first) {
    geoBlocked = false;
    byId('follow').disabled = false;
    byId('follow').removeAttribute('title');
  }
  const accuracy = ownFix.accuracy !== undefined ? ` (within ${Math.round(ownFix.accuracy)} m)` : '';
  const text = `Sharing your position${accuracy}.`;
  if (first || !geoText.startsWith('Sharing')) setGeo(text);
  else geoText = text; // quiet update: no announcement for every fix
  const self = person(me.user_id, {});
  self.loc = { ...ownFix };
  self.lastSeen = ownFix.at;
  if (e2e) measure(self, ownFix, false);
  drawPerson(self);
  renderRow(self);
  if (following) map.setView(ownFix.lat, ownFix.lng);
  else if (first) maybeAutoFit();
  sendPosition(false);
}

function sendIntervalMs() {
  return Math.max(SEND_FLOOR_MS, advice?.interval_ms ?? SEND_MIN_INTERVAL_MS);
}

/** Sends the latest fix, at most once per advised interval (a later fix waits for the next slot). */
function sendPosition(force) {
  if (!ownFix || over) return;
  const wait = sendIntervalMs() - (Date.now() - lastSentAt);
  if (!force && wait > 0) {
    if (!sendTimer) sendTimer = setTimeout(() => { sendTimer = null; sendPosition(true); }, wait);
    return;
  }
  if (!channel?.isJoined()) return; // sent again on (re)join
  lastSentAt = Date.now();
  if (e2e) {
    sendSealed(ownFix);
    return;
  }
  const { lat, lng, accuracy, heading, speed } = ownFix;
  const payload = { lat, lng };
  if (accuracy !== undefined) payload.accuracy = accuracy;
  if (heading !== undefined) payload.heading = heading;
  if (speed !== undefined) payload.speed = speed;
  channel.push('location_update', payload).receive('error', ({ reason }) => {
    if (reason === 'invalid_location') console.warn('the server refused a position', payload);
    // rate_limited: the next fix goes out anyway.
  });
}


// ------------------------------------------------------------------ rate advice (SPEC §8)

function sendViewing() {
  if (over || !channel?.isJoined()) return; // said again on every (re)join
  channel.push('viewing', { visible: document.visibilityState === 'visible' });
}

function followAdvice({ interval_ms: interval, watchers }) {
  if (!Number.isFinite(interval) || interval <= 0) return;
  const before = sendIntervalMs();
  advice = { interval_ms: interval, watchers: Number.isFinite(watchers) ? watchers : 0 };
  const every = interval < 1000 ? `${interval / 1000} s` : `${Math.round(interval / 1000)} s`;
  byId('rate').textContent = `${advice.watchers === 0 ? 'nobody else' : advice.watchers} watching · every ${every}`;
  if (watchId !== null && !over) watchPositions();
  const now = sendIntervalMs();
  if (now < before) {
    // Someone opened the map: they should not wait out the old, long interval.
    clearTimeout(sendTimer);
    sendTimer = null;
    sendPosition(true);
  } else if (now > before && sendTimer) {
    clearTimeout(sendTimer);
    sendTimer = null;
    sendPosition(false);
  }
}

// ------------------------------------------------------------------ meeting point and lock

let noticeTimer = null;
function notify(text) {
  const box = byId('notice');
  announce(box, text);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => announce(box, ''), NOTICE_MS);
}

function describeDestination(d) {
  const where = d.label ? `“${d.label}”` : `${d.lat.toFixed(5)}, ${d.lng.toFixed(5)}`;
  return `Meeting point: ${where}, within ${Math.round(d.radius_m)} m.`;
}

function showDestination(d) {
  const changed = d?.set_at !== destination?.set_at || !d !== !destination;
  destination = d && Number.isFinite(d.lat) && Number.isFinite(d.lng) ? d : null;
  if (changed) {
    // A new or cleared meeting point ends every arrival and makes old distances meaningless.
    for (const p of people.values()) {
      p.arrivedAt = null;
      p.dist = null;
    }
  }
  if (changed && e2e && destination) {
    for (const p of people.values()) if (p.lastFix) measure(p, p.lastFix, false);
  }
  map?.setDestination(destination);
  const info = byId('dest-info');
  info.textContent = destination ? describeDestination(destination) : '';
  info.hidden = !destination;
  if (creator?.creator_token) {
    byId('dest-summary').textContent = destination ? describeDestination(destination) : 'No meeting point yet.';
    byId('dest-clear').hidden = !destination;
    byId('dest-save').textContent = destination ? 'Move meeting point' : 'Save meeting point';
  }
}

function showSession(s) {
  session = { ...session, ...s };
  const title = session.name || 'Location sharing';
  if (byId('live-title').textContent !== title) byId('live-title').textContent = title;
  document.title = `${title} · Location sharing`;
  byId('locked-badge').hidden = !session.locked;
  byId('e2e-badge').hidden = !e2e;
  if (creator?.creator_token) {
    const lock = byId('lock');
    lock.textContent = session.locked ? 'Unlock the session' : 'Lock the session';
    lock.setAttribute('aria-pressed', String(!!session.locked));
    if (!byId('lock-offer').hidden) showLockOffer();
    // A name being typed is the creator's: only an untouched box follows the session.
    if (!renaming) byId('rename-input').value = session.name ?? '';
  }
}

let renaming = false; // the creator has edited the name box since it last matched the session

/** The creator renames the session (SPEC §9); every page follows on `session_updated`. */
function setupRename(token) {
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

async function toggleLock() {
  if (!creator?.creator_token || over) return;
  try {
    showSession(await api.update(sid, { locked: !session.locked }, creator.creator_token));
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
  if (offeredFor === null || over || !creator?.creator_token) {
    box.hidden = true;
    return;
  }
  byId('lock-offer-text').textContent = session.locked
    ? 'The session is locked: nobody new can join, and who is in stays in.'
    : `${offeredFor} still has the link and could join again under another name. Lock the session so that nobody new can join?`;
  byId('lock-offer-button').hidden = !!session.locked;
  byId('lock-offer-dismiss').textContent = session.locked ? 'OK' : 'Not now';
  box.hidden = false;
}

function setupCreatorControls() {
  const token = creator.creator_token;
  setupRename(token);
  const error = byId('dest-error');
  const pick = byId('dest-pick');
  const setPicking = (on) => {
    pick.setAttribute('aria-pressed', String(on));
    byId('map').classList.toggle('picking', on);
    map.onPick = on ? (ll) => {
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
      if (e2e) {
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
  byId('lock').addEventListener('click', toggleLock);
  byId('lock-offer-button').addEventListener('click', toggleLock);
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

// ------------------------------------------------------------------ sealing (SPEC §10)
//
// In an end-to-end encrypted session every position and the meeting point travel sealed with the
// key from the link's fragment (seal.js); the server relays them and computes nothing, so
// distances, ETAs and arrivals are worked out here (approach.js), by the same rules as the
// server's. A message that does not open is ignored and counted, and the page says so: it never
// shows a position it could not open.

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
function takeKeyFromLink() {
  if (!location.hash) return null;
  const k = new URLSearchParams(location.hash.slice(1)).get('k');
  history.replaceState(history.state, '', location.pathname + location.search);
  if (k === null) return null;
  if (!isKeyText(k)) return '';
  tabKey.set(sid, k);
  return k;
}

/** Readies sealing with the key from the link, or from this tab; false (and says why) without one. */
async function setupE2e(linkKey) {
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
    e2e = { key: await importKey(text), opened: 0, failed: 0 };
  } catch {
    gone('This browser cannot open encrypted sessions', 'It lacks the Web Crypto API (AES-GCM) this session needs. Try an up-to-date browser.');
    return false;
  }
  byId('join-e2e').hidden = false;
  return true;
}

// Opening is asynchronous: one chain keeps sealed messages in the order they came.
let chain = Promise.resolve();
function inOrder(fn) {
  chain = chain.then(fn).catch((err) => console.error('an encrypted message could not be handled:', err?.message));
  return chain;
}

function counted(ok) {
  if (ok) e2e.opened += 1;
  else e2e.failed += 1;
  if (!ok || e2e.failed) showE2eStatus();
  return ok;
}

function showE2eStatus() {
  const box = byId('e2e-status');
  const n = e2e.failed;
  if (n === 0) {
    box.hidden = true;
    return;
  }
  box.dataset.kind = e2e.opened === 0 ? 'wrong-key' : 'some-failed';
  const text = e2e.opened === 0
    ? `Wrong key: nothing in this session opens with the key in your link (${n === 1 ? '1 message' : `${n} messages`} `
      + 'could not be opened), so no position can be shown. The link may be damaged or belong to another session: ask for it again.'
    : `${n === 1 ? '1 message' : `${n} messages`} could not be opened with this session's key and ${n === 1 ? 'was' : 'were'} ignored.`;
  if (box.textContent !== text) box.textContent = text;
  box.hidden = false;
}

/** A sealed position opened: {lat, lng, accuracy?, heading?, speed?, timestamp}, or null (counted). */
async function openLocation(userId, sealed) {
  const loc = readLocation(await open(e2e.key, aadOf(sid, userId), sealed));
  counted(!!loc);
  return loc;
}

/** A sealed meeting point {sealed, set_at} opened, as a clear one {lat, lng, radius_m, label, set_at}. */
async function openDestination(d) {
  if (!d) return null;
  const place = typeof d.sealed === 'string' ? readDestination(await open(e2e.key, aadOf(sid, null), d.sealed)) : null;
  counted(!!place);
  return place ? { ...place, set_at: d.set_at } : null;
}

/** Distance, ETA and arrival of `p` after a fix {lat, lng, accuracy?, speed?, at: ms}, as the server would. */
function measure(p, fix, quiet) {
  p.lastFix = fix;
  p.motion ??= new Motion();
  if (!destination) {
    p.motion.record(fix, fix.at);
    return;
  }
  const g = approach(destination, fix, p.motion, !!p.arrivedAt);
  if (g.transition === 'arrived') {
    p.arrivedAt = new Date(Math.min(Date.now(), fix.at));
    if (!quiet) notify(p.id === me.user_id ? 'You arrived at the meeting point.' : `${p.display_name} arrived`);
  } else if (g.transition === 'departed') {
    p.arrivedAt = null;
  }
  p.dist = { distance: g.distance_m, eta: g.eta_s };
}

/** Someone's sealed location: {user_id, sealed, received_at}; `quiet` for the join snapshot's. */
function receiveSealed(u, quiet = false) {
  return inOrder(async () => {
    if (typeof u?.sealed !== 'string' || !u.user_id || u.user_id === me.user_id) return;
    const loc = await openLocation(u.user_id, u.sealed);
    if (!loc || over) return;
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

function receiveSealedDestination(d) {
  return inOrder(async () => {
    const place = await openDestination(d);
    if (over) return;
    // One that does not open is no meeting point at all: never show a place it could not read.
    showDestination(place);
    renderAll();
  });
}

/** The join snapshot's sealed meeting point and locations (the rest of it is handled already). */
function joinedSealed(dest, locations) {
  receiveSealedDestination(dest);
  for (const l of locations) receiveSealed(l, true);
  inOrder(async () => {
    renderAll();
    maybeAutoFit();
  });
}

/** Seals our position (SPEC §3's fields, sent now) and sends it; in order, like clear ones. */
let sealing = Promise.resolve();
function sendSealed(fix) {
  const plain = locationPlaintext(fix, Date.now());
  sealing = sealing.then(async () => {
    const sealed = await seal(e2e.key, aadOf(sid, me.user_id), plain);
    if (over || !channel?.isJoined()) return;
    channel.push('location_update', { sealed }).receive('error', ({ reason }) => {
      if (reason === 'invalid_location') console.warn('the server refused a sealed position');
    });
  }).catch((err) => console.error('could not seal a position:', err?.message));
}

/** The creator seals the meeting point ({lat, lng, radius_m, label}) and sets it. */
async function setSealedDestination(place, token) {
  const plain = { lat: place.lat, lng: place.lng, radius_m: place.radius_m };
  if (place.label) plain.label = place.label;
  const sealed = await seal(e2e.key, aadOf(sid, null), plain);
  const set = await api.setDestination(sid, { sealed }, token);
  await inOrder(async () => {
    showDestination({ ...plain, label: place.label ?? null, set_at: set.set_at });
    renderAll();
  });
}

init();
