// The live view's messages, written to by every part of the join page: the banner (a problem
// that lasts, or the end), the notice (arrivals, a rename), the position status and a brief word
// in its place (someone left).

import { state } from './state.js';
import { announce, byId, el } from './ui.js';

const NOTICE_MS = 5000;

export function showBanner(text, offerRejoin = false) {
  const banner = byId('banner');
  banner.replaceChildren(text);
  if (offerRejoin) {
    banner.append(' ', el('a', { href: location.pathname, text: 'Join again' }));
  }
  banner.append(' ', el('a', { href: '/', text: 'Start a new session' }));
  banner.hidden = false;
}

let noticeTimer = null;
export function notify(text) {
  const box = byId('notice');
  announce(box, text);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => announce(box, ''), NOTICE_MS);
}

export function setGeo(text, kind = 'info') {
  state.geoText = text;
  announce(byId('geo-status'), text, kind);
}

let briefTimer = null;
export function announceBrief(text) {
  const region = byId('geo-status');
  const previous = state.geoText;
  announce(region, text);
  clearTimeout(briefTimer);
  briefTimer = setTimeout(() => announce(region, previous), 4000);
}
