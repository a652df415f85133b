// What the parts of the join page share (join.js, people.js, position.js, e2e.js, creator.js,
// notices.js): the session's id and the page's settings, and one object holding the page's
// mutable state. Every part reads and writes it here, so there is one place to look for what
// can change under a function; a part's own timers and bookkeeping stay in that part.

import { config } from './ui.js';

export const cfg = config();
export const sid = decodeURIComponent(location.pathname.split('/')[2] ?? '');

export const state = {
  session: null, // GET /api/sessions/{id}
  me: null, // {user_id, token, display_name, avatar_color, expires_at}
  creator: null, // {creator_token, …} when this browser created the session
  map: null,
  channel: null,
  presence: null,
  over: false, // ended, removed or left: nothing more happens
  people: new Map(), // user_id -> person
  destination: null, // {lat, lng, radius_m, label, set_at} while a meeting point is set
  advice: null, // the last rate_advice: {interval_ms, watchers}
  e2e: null, // in an end-to-end encrypted session: {key: CryptoKey, opened, failed} (see e2e.js)
  ownFix: null, // this device's last position: {lat, lng, accuracy, heading, speed, at}
  geoBlocked: false, // this device's position cannot be had (no https, no service, denied)
  geoText: '', // what the position status says when nothing brief is announced
  autoFit: true, // the map frames everyone until the user moves it
  following: false, // the map follows our own position
};
