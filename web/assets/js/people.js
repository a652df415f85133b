// Who is in the session and how the page shows them: each person's row in the list (status,
// distance and ETA, the order) and marker on the map, the meeting point on both, and the map's
// framing (fit everyone, follow me). In an end-to-end encrypted session the distances, ETAs and
// arrivals are worked out here from the opened positions (measure), by the server's rules.

import { Motion, progress as approach } from './approach.js';
import { haversine, progressText } from './meet.js';
import { notify } from './notices.js';
import { cfg, state } from './state.js';
import { ago, byId, el } from './ui.js';

// What the creator's Remove button does (creator.js sets it before any row is drawn).
let removeAction = null;
export function setRemoveAction(fn) {
  removeAction = fn;
}

export function person(id, data) {
  let p = state.people.get(id);
  if (!p) {
    p = { id, display_name: '…', avatar_color: '#555555', lastSeen: null, loc: null, row: null };
    state.people.set(id, p);
  }
  if (data.display_name) p.display_name = data.display_name;
  if (data.avatar_color) p.avatar_color = data.avatar_color;
  return p;
}

function isOnline(id) {
  if (state.over) return false;
  return !!state.presence?.state[id] || (id === state.me.user_id && state.channel?.isJoined());
}

function isStale(p) {
  return !p.loc || Date.now() - p.loc.at > cfg.locationTtlMs;
}

export function drawPerson(p) {
  if (!p.loc) return;
  state.map.setMarker(p.id, {
    lat: p.loc.lat,
    lng: p.loc.lng,
    accuracy: p.loc.accuracy,
    color: p.avatar_color,
    label: p.id === state.me.user_id ? `${p.display_name} (you)` : p.display_name,
    // Our own fix stays current while the device keeps watching (a still phone reports no new
    // fix, but the position is re-sent); anyone else's fades once older than the server keeps it.
    stale: p.id === state.me.user_id ? state.over || state.geoBlocked : isStale(p),
    self: p.id === state.me.user_id,
  });
}

function statusText(p) {
  const self = p.id === state.me.user_id;
  const now = Date.now();
  if (self) {
    if (state.over) return 'You · not sharing any more';
    if (!state.ownFix) return state.geoBlocked ? 'You · position not shared' : 'You · waiting for your position';
    return `You · position ${ago(now - p.loc.at)}`;
  }
  // Who is online is known only while joined; otherwise say only what we last saw.
  const known = !state.over && !!state.channel?.isJoined();
  const online = known && isOnline(p.id);
  const prefix = known ? (online ? 'Online · ' : 'Offline · ') : '';
  let rest;
  if (p.loc) rest = `${isStale(p) ? 'last position' : 'position'} ${ago(now - p.loc.at)}`;
  else if (online) rest = 'no position shared';
  else rest = p.lastSeen ? `last seen ${ago(now - p.lastSeen)}` : 'not seen yet';
  const text = prefix + rest;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function renderRow(p) {
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
          state.autoFit = false;
          state.map.setView(p.loc.lat, p.loc.lng, Math.max(state.map.zoom, 15));
        },
      },
    });
    const row = el('li', { dataset: { userId: p.id } }, swatch, el('span', { class: 'person-main' }, name, status, progress), show);
    if (state.creator?.creator_token && p.id !== state.me.user_id && !state.over) {
      row.append(el('button', {
        type: 'button',
        class: 'small danger-outline remove',
        text: 'Remove',
        on: { click: () => removeAction(p) },
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
  const label = p.id === state.me.user_id ? `${p.display_name} (you)` : p.display_name;
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
  if (!state.destination) return {};
  if (p.arrivedAt) return { arrivedAt: p.arrivedAt };
  if (p.id === state.me.user_id && !state.e2e) {
    if (!state.ownFix) return {};
    const distance = haversine(state.ownFix, state.destination);
    const eta = state.ownFix.speed >= 0.5 ? distance / state.ownFix.speed : null;
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
export function renderAll() {
  const list = byId('people');
  const ranks = new Map([...state.people.values()].map((p) => [p.id, rank(p)]));
  const ordered = [...state.people.values()].sort((a, b) =>
    ranks.get(a.id)[0] - ranks.get(b.id)[0] || ranks.get(a.id)[1] - ranks.get(b.id)[1] ||
    (b.id === state.me.user_id) - (a.id === state.me.user_id) ||
    isOnline(b.id) - isOnline(a.id) ||
    a.display_name.localeCompare(b.display_name));
  ordered.forEach((p, i) => {
    renderRow(p);
    if (list.children[i] !== p.row) list.insertBefore(p.row, list.children[i] ?? null);
  });
  byId('people-title').textContent = `People (${state.people.size})`;
}

export function tick() {
  for (const p of state.people.values()) {
    if (p.loc) drawPerson(p);
    if (p.row) renderRow(p);
  }
}

// ------------------------------------------------------------------ map view

export function userMovedMap() {
  state.autoFit = false;
  setFollow(false);
}

export function setFollow(on) {
  state.following = on && !!state.ownFix;
  byId('follow').setAttribute('aria-pressed', String(state.following));
  if (state.following) state.map.setView(state.ownFix.lat, state.ownFix.lng, Math.max(state.map.zoom, 15));
}

function positions() {
  return [...state.people.values()].filter((p) => p.loc).map((p) => p.loc);
}

export function fitEveryone() {
  const all = positions();
  const fresh = all.filter((l) => Date.now() - l.at <= cfg.locationTtlMs);
  // Where everyone is heading belongs in "everyone".
  const dest = state.destination ? [{ lat: state.destination.lat, lng: state.destination.lng }] : [];
  state.map.fitPoints([...(fresh.length ? fresh : all), ...dest]);
}

export function maybeAutoFit() {
  if (state.autoFit && !state.following) fitEveryone();
}

// ------------------------------------------------------------------ distances and the meeting point

/** Distance, ETA and arrival of `p` after a fix {lat, lng, accuracy?, speed?, at: ms}, as the server would. */
export function measure(p, fix, quiet) {
  p.lastFix = fix;
  p.motion ??= new Motion();
  if (!state.destination) {
    p.motion.record(fix, fix.at);
    return;
  }
  const g = approach(state.destination, fix, p.motion, !!p.arrivedAt);
  if (g.transition === 'arrived') {
    p.arrivedAt = new Date(Math.min(Date.now(), fix.at));
    if (!quiet) notify(p.id === state.me.user_id ? 'You arrived at the meeting point.' : `${p.display_name} arrived`);
  } else if (g.transition === 'departed') {
    p.arrivedAt = null;
  }
  p.dist = { distance: g.distance_m, eta: g.eta_s };
}

function describeDestination(d) {
  const where = d.label ? `“${d.label}”` : `${d.lat.toFixed(5)}, ${d.lng.toFixed(5)}`;
  return `Meeting point: ${where}, within ${Math.round(d.radius_m)} m.`;
}

export function showDestination(d) {
  const changed = d?.set_at !== state.destination?.set_at || !d !== !state.destination;
  state.destination = d && Number.isFinite(d.lat) && Number.isFinite(d.lng) ? d : null;
  if (changed) {
    // A new or cleared meeting point ends every arrival and makes old distances meaningless.
    for (const p of state.people.values()) {
      p.arrivedAt = null;
      p.dist = null;
    }
  }
  if (changed && state.e2e && state.destination) {
    for (const p of state.people.values()) if (p.lastFix) measure(p, p.lastFix, false);
  }
  state.map?.setDestination(state.destination);
  const info = byId('dest-info');
  info.textContent = state.destination ? describeDestination(state.destination) : '';
  info.hidden = !state.destination;
  if (state.creator?.creator_token) {
    byId('dest-summary').textContent = state.destination ? describeDestination(state.destination) : 'No meeting point yet.';
    byId('dest-clear').hidden = !state.destination;
    byId('dest-save').textContent = state.destination ? 'Move meeting point' : 'Save meeting point';
  }
}

