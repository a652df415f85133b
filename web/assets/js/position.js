// This device's position: watching it (the Geolocation API), sending it (no faster than the
// server's rate advice, re-sent while still so it does not expire; sealed in an end-to-end
// encrypted session) and telling the server whether anyone is looking at this page (SPEC §8).

import { sendSealed } from './e2e.js';
import { setGeo } from './notices.js';
import { drawPerson, maybeAutoFit, measure, person, renderRow } from './people.js';
import { state } from './state.js';
import { byId } from './ui.js';

const SEND_MIN_INTERVAL_MS = 1000; // until the server advises: at most one update a second
const SEND_FLOOR_MS = 250; // whatever the advice says, never faster than this
const SEND_REFRESH_MS = 10_000; // a still device re-sends so its position does not expire

// ------------------------------------------------------------------ geolocation

let watchId = null;
let lastSentAt = 0;
let sendTimer = null;
let refreshTimer = null;

export function startGeolocation() {
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
    if (state.ownFix && Date.now() - lastSentAt >= Math.max(SEND_REFRESH_MS, sendIntervalMs())) sendPosition(true);
  }, 2000);
  // If location access is granted later (from the browser's site settings), start sharing.
  navigator.permissions?.query({ name: 'geolocation' }).then((status) => {
    status.addEventListener('change', () => {
      if (status.state === 'granted' && state.geoBlocked && !state.over) {
        state.geoBlocked = false;
        stopGeolocation();
        startGeolocation();
      }
    });
  }).catch(() => {});
}

let highAccuracy = null;

/** (Re)starts watching; GPS is what drains a phone, so nobody watching means coarse fixes. */
function watchPositions() {
  const wanted = !state.advice || state.advice.watchers > 0;
  if (watchId !== null && wanted === highAccuracy) return;
  if (watchId !== null) navigator.geolocation.clearWatch(watchId);
  highAccuracy = wanted;
  watchId = navigator.geolocation.watchPosition(onFix, onGeoError, {
    enableHighAccuracy: wanted,
    maximumAge: 5000,
    timeout: 30_000,
  });
}

export function stopGeolocation() {
  if (watchId !== null) navigator.geolocation.clearWatch(watchId);
  watchId = null;
  clearInterval(refreshTimer);
  clearTimeout(sendTimer);
}

function geoOff(why) {
  state.geoBlocked = true;
  setGeo(`Your position is not shared: ${why} You can still follow the others on the map.`, 'warning');
  byId('follow').disabled = true;
  byId('follow').title = 'Your position is not shared';
  const self = state.people.get(state.me.user_id);
  if (self?.row) renderRow(self);
}

function onGeoError(err) {
  if (state.over) return;
  if (err.code === err.PERMISSION_DENIED) {
    stopGeolocation();
    geoOff('location access is blocked for this site. To share, allow location for this site in your browser settings; the page picks it up by itself.');
  } else if (err.code === err.POSITION_UNAVAILABLE) {
    geoOff('your device cannot find its position right now (is location turned on?). It keeps trying.');
  } else if (!state.ownFix) {
    setGeo('Still waiting for your position…');
  }
}

function onFix(pos) {
  if (state.over) return;
  const c = pos.coords;
  if (!Number.isFinite(c.latitude) || !Number.isFinite(c.longitude)) return;
  const first = !state.ownFix;
  state.ownFix = {
    lat: c.latitude,
    lng: c.longitude,
    accuracy: Number.isFinite(c.accuracy) ? Math.min(c.accuracy, 100_000) : undefined,
    heading: Number.isFinite(c.heading) && c.heading >= 0 && c.heading < 360 ? c.heading : undefined,
    speed: Number.isFinite(c.speed) && c.speed >= 0 ? c.speed : undefined,
    at: Date.now(),
  };
  if (state.geoBlocked || first) {
    state.geoBlocked = false;
    byId('follow').disabled = false;
    byId('follow').removeAttribute('title');
  }
  const accuracy = state.ownFix.accuracy !== undefined ? ` (within ${Math.round(state.ownFix.accuracy)} m)` : '';
  const text = `Sharing your position${accuracy}.`;
  if (first || !state.geoText.startsWith('Sharing')) setGeo(text);
  else state.geoText = text; // quiet update: no announcement for every fix
  const self = person(state.me.user_id, {});
  self.loc = { ...state.ownFix };
  self.lastSeen = state.ownFix.at;
  if (state.e2e) measure(self, state.ownFix, false);
  drawPerson(self);
  renderRow(self);
  if (state.following) state.map.setView(state.ownFix.lat, state.ownFix.lng);
  else if (first) maybeAutoFit();
  sendPosition(false);
}

function sendIntervalMs() {
  return Math.max(SEND_FLOOR_MS, state.advice?.interval_ms ?? SEND_MIN_INTERVAL_MS);
}

/** Sends the latest fix, at most once per advised interval (a later fix waits for the next slot). */
export function sendPosition(force) {
  if (!state.ownFix || state.over) return;
  const wait = sendIntervalMs() - (Date.now() - lastSentAt);
  if (!force && wait > 0) {
    if (!sendTimer) sendTimer = setTimeout(() => { sendTimer = null; sendPosition(true); }, wait);
    return;
  }
  if (!state.channel?.isJoined()) return; // sent again on (re)join
  lastSentAt = Date.now();
  if (state.e2e) {
    sendSealed(state.ownFix);
    return;
  }
  const { lat, lng, accuracy, heading, speed } = state.ownFix;
  const payload = { lat, lng };
  if (accuracy !== undefined) payload.accuracy = accuracy;
  if (heading !== undefined) payload.heading = heading;
  if (speed !== undefined) payload.speed = speed;
  state.channel.push('location_update', payload).receive('error', ({ reason }) => {
    if (reason === 'invalid_location') console.warn('the server refused a position', payload);
    // rate_limited: the next fix goes out anyway.
  });
}

// ------------------------------------------------------------------ rate advice (SPEC §8)

export function sendViewing() {
  if (state.over || !state.channel?.isJoined()) return; // said again on every (re)join
  state.channel.push('viewing', { visible: document.visibilityState === 'visible' });
}

export function followAdvice({ interval_ms: interval, watchers }) {
  if (!Number.isFinite(interval) || interval <= 0) return;
  const before = sendIntervalMs();
  state.advice = { interval_ms: interval, watchers: Number.isFinite(watchers) ? watchers : 0 };
  const every = interval < 1000 ? `${interval / 1000} s` : `${Math.round(interval / 1000)} s`;
  byId('rate').textContent = `${state.advice.watchers === 0 ? 'nobody else' : state.advice.watchers} watching · every ${every}`;
  if (watchId !== null && !state.over) watchPositions();
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

