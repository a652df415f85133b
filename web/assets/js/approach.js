// How a participant approaches the meeting point (SPEC §7), worked out in the page for
// end-to-end encrypted sessions, where the server cannot: the same arithmetic as the server's
// src/domain/geo.rs and src/domain/approach.rs — great-circle distance, speed over at least 10 s
// (a reference fix at most 5 min old), no ETA under 0.5 m/s, and the arrival rule with its
// hysteresis. Pure functions and one small class; no DOM.

/** The mean Earth radius (IUGG), in metres. */
export const EARTH_RADIUS_M = 6_371_008.8;
/** Speed from successive positions is measured over at least this long (ms). */
export const SPEED_SPAN_MS = 10_000;
/** A reference position older than this says nothing about the current speed (ms). */
export const SPEED_STALE_MS = 5 * 60_000;
/** Under this speed (m/s) nobody is heading anywhere: no ETA. */
export const MIN_SPEED = 0.5;
/** A departure needs the position this much farther than the radius at least. */
export const DEPARTURE_MARGIN_M = 50;
const MAX_FIXES = 128;

/** Great-circle distance in metres between {lat, lng} points (haversine). */
export function distanceM(a, b) {
  const rad = Math.PI / 180;
  const phi1 = a.lat * rad;
  const phi2 = b.lat * rad;
  const dPhi = phi2 - phi1;
  const dLambda = (b.lng - a.lng) * rad;
  const h = Math.sin(dPhi / 2) ** 2 + Math.cos(phi1) * Math.cos(phi2) * Math.sin(dLambda / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** A participant's recent fixes, for the speed between them. */
export class Motion {
  constructor() {
    this.fixes = []; // [{at: ms, point: {lat, lng}}], oldest first
  }

  /** Records a fix taken at `at` (ms); the speed (m/s) against the newest fix ≥ 10 s older, or null. */
  record(point, at) {
    const last = this.fixes[this.fixes.length - 1];
    if (last && at < last.at) return null; // out of order: says nothing about speed
    let reference = null;
    for (let i = this.fixes.length - 1; i >= 0; i--) {
      if (this.fixes[i].at <= at - SPEED_SPAN_MS) {
        reference = this.fixes[i];
        break;
      }
    }
    this.fixes.push({ at, point: { lat: point.lat, lng: point.lng } });
    // Keep one fix at least a span old (the next reference) and what came after it.
    while (this.fixes.length > MAX_FIXES || (this.fixes.length > 1 && this.fixes[1].at <= at - SPEED_SPAN_MS)) {
      this.fixes.shift();
    }
    if (!reference) return null;
    const elapsed = at - reference.at;
    if (elapsed > SPEED_STALE_MS) return null;
    return distanceM(reference.point, point) / (elapsed / 1000);
  }
}

/** 'arrived', 'departed' or null: what a fix at `distance` does to someone `arrived` or not. */
export function transition(arrived, distance, accuracy, radiusM) {
  const known = Number.isFinite(accuracy);
  if (!arrived) {
    const precise = !known || accuracy <= radiusM;
    return precise && distance <= radiusM ? 'arrived' : null;
  }
  const margin = Math.max(known ? accuracy : 0, DEPARTURE_MARGIN_M);
  return distance > radiusM + margin ? 'departed' : null;
}

/** Whole seconds to cover `distance` at `speed`; 0 while arrived; null when unknown or too slow. */
export function etaS(distance, speed, arrived) {
  if (arrived) return 0;
  if (!(Number.isFinite(speed) && speed >= MIN_SPEED)) return null;
  return Math.round(distance / speed);
}

/**
 * Feeds one fix ({lat, lng, accuracy?, speed?, at: ms}) of someone who is (or is not) `arrived`
 * at `destination` ({lat, lng, radius_m}): {distance_m, eta_s, transition}, as the server's
 * `distance_m`/`eta_s` and its arrival events would be.
 */
export function progress(destination, fix, motion, arrived) {
  const distance = distanceM(fix, destination);
  const measured = motion.record(fix, fix.at);
  const change = transition(arrived, distance, fix.accuracy, destination.radius_m);
  const arrivedNow = change === 'arrived' ? true : change === 'departed' ? false : arrived;
  const speed = Number.isFinite(fix.speed) ? fix.speed : measured;
  return { distance_m: Math.round(distance), eta_s: etaS(distance, speed, arrivedNow), transition: change };
}
