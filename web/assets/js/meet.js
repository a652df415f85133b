// The meeting point (SPEC §7) as people read it: distances, ETAs, typed coordinates, and the
// optional place search. Pure functions, apart from the one fetch of the search.

import { clock } from './ui.js';

export const RADIUS_MIN = 20;
export const RADIUS_MAX = 5000;
export const RADIUS_DEFAULT = 100;

/** "350 m", "4.2 km", "12 km": metres stay whole, since a GPS fix is no better than that. */
export function formatDistance(m) {
  if (!Number.isFinite(m)) return '';
  if (m < 1000) return `${Math.round(m / 10) * 10 || Math.round(m)} m`;
  if (m < 10_000) return `${(m / 1000).toFixed(1)} km`;
  return `${Math.round(m / 1000)} km`;
}

/** "~4 min", "~1 h 5 min"; under a minute still reads "~1 min" (the figure is straight-line). */
export function formatEta(s) {
  if (!Number.isFinite(s)) return '';
  const m = Math.max(1, Math.round(s / 60));
  if (m < 60) return `~${m} min`;
  return m % 60 ? `~${Math.floor(m / 60)} h ${m % 60} min` : `~${m / 60} h`;
}

/** What a person's row says about the meeting point: "4.2 km · ~11 min", "1.2 km", "arrived 18:04". */
export function progressText({ arrivedAt, distance, eta }) {
  if (arrivedAt) return `arrived ${clock(arrivedAt)}`;
  if (!Number.isFinite(distance)) return '';
  const d = formatDistance(distance);
  return Number.isFinite(eta) && eta > 0 ? `${d} · ${formatEta(eta)}` : d;
}

/** Great-circle distance in metres, for our own row (the server does not echo our updates). */
export function haversine(a, b) {
  const R = 6_371_008.8;
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLng = (b.lng - a.lng) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLng / 2) ** 2;
  return 2 * R * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** "48.8566, 2.3522" or "48.8566 2.3522" → {lat, lng}, or null when it is not a position. */
export function parseCoordinates(text) {
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*[,;\s]\s*(-?\d+(?:\.\d+)?)\s*$/.exec(text ?? '');
  if (!m) return null;
  const lat = Number(m[1]);
  const lng = Number(m[2]);
  if (!(Math.abs(lat) <= 90 && Math.abs(lng) <= 180)) return null;
  return { lat, lng };
}

/** A radius the server takes, or null. */
export function parseRadius(text) {
  if (String(text ?? '').trim() === '') return RADIUS_DEFAULT;
  const r = Number(text);
  return Number.isFinite(r) && r >= RADIUS_MIN && r <= RADIUS_MAX ? r : null;
}

/**
 * Asks the Nominatim-compatible service for up to five places. The browser calls it directly:
 * the server never sees what is searched.
 */
export async function searchPlaces(base, query, signal) {
  const url = `${base}/search?format=jsonv2&limit=5&q=${encodeURIComponent(query)}`;
  const res = await fetch(url, { signal, credentials: 'omit', referrerPolicy: 'no-referrer', headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`the place search answered ${res.status}`);
  const data = await res.json();
  return (Array.isArray(data) ? data : [])
    .map((r) => ({ lat: Number(r.lat), lng: Number(r.lon), name: String(r.display_name ?? r.name ?? '') }))
    .filter((r) => Number.isFinite(r.lat) && Number.isFinite(r.lng));
}
