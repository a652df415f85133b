// Sealing for end-to-end encrypted sessions (SPEC §10, README "Sealing, for interoperable
// clients"): AES-256-GCM through WebCrypto, a fresh random 12-byte IV per message, additional data
// "{session_id}:{user_id}" of the sender ("{session_id}:destination" for the meeting point), and
// as plaintext a UTF-8 JSON object padded with spaces to the next multiple of 256 bytes.
//
//   sealed = base64url_nopad(iv ‖ ciphertext ‖ 16-byte tag)
//
// The key lives in the link's fragment (#k=…), which browsers never send; this module never
// sends, stores or logs it. The key object it makes is not extractable.

export const KEY_BYTES = 32;
export const IV_BYTES = 12;
const TAG_BYTES = 16;
const PAD = 256;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** base64url without padding (RFC 4648 §5). */
export function b64urlEncode(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The bytes of a base64url string without padding, or null when it is not one. */
export function b64urlDecode(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** 32 fresh random bytes, as the link carries them (43 characters). */
export function newKeyText() {
  return b64urlEncode(crypto.getRandomValues(new Uint8Array(KEY_BYTES)));
}

/** Whether `text` is a key as links carry it. */
export function isKeyText(text) {
  return typeof text === 'string' && text.length === 43 && b64urlDecode(text)?.length === KEY_BYTES;
}

/** The key of `#k=…` in a URL fragment (`location.hash`), or null. */
export function keyFromFragment(hash) {
  const params = new URLSearchParams(String(hash ?? '').replace(/^#/, ''));
  const k = params.get('k');
  return isKeyText(k) ? k : null;
}

/** A WebCrypto AES-GCM key (not extractable) from its base64url text. */
export async function importKey(text) {
  const raw = b64urlDecode(text);
  if (!raw || raw.length !== KEY_BYTES) throw new Error('not a 256-bit key');
  return crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

/** The additional data of a participant's positions, or of the meeting point (`userId` null). */
export function aadOf(sessionId, userId) {
  return `${sessionId}:${userId ?? 'destination'}`;
}

/** The JSON text of `value`, padded with spaces to a multiple of 256 bytes, as UTF-8. */
export function padded(value) {
  const bytes = utf8.encode(JSON.stringify(value));
  const size = Math.max(PAD, Math.ceil(bytes.length / PAD) * PAD);
  const out = new Uint8Array(size).fill(0x20);
  out.set(bytes);
  return out;
}

/**
 * Seals the object `value` with `key` (a CryptoKey) and the additional data `aad` (a string).
 * `iv` is for test vectors only: left out, a fresh random one is drawn, as it must be.
 */
export function seal(key, aad, value, iv = undefined) {
  return sealBytes(key, aad, padded(value), iv);
}

/** Seals plaintext bytes as they are (already padded): the step under `seal`, for test vectors. */
export async function sealBytes(key, aad, bytes, iv = crypto.getRandomValues(new Uint8Array(IV_BYTES))) {
  if (!(iv instanceof Uint8Array) || iv.length !== IV_BYTES) throw new Error('the IV is 12 bytes');
  const sealed = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: utf8.encode(aad), tagLength: TAG_BYTES * 8 },
    key,
    bytes,
  );
  const out = new Uint8Array(IV_BYTES + sealed.byteLength);
  out.set(iv);
  out.set(new Uint8Array(sealed), IV_BYTES);
  return b64urlEncode(out);
}

/**
 * Opens a sealed string: the JSON object inside, or null when it does not open (another key,
 * another sender's additional data, a changed byte) or holds no JSON object.
 */
export async function open(key, aad, sealed) {
  const bytes = b64urlDecode(sealed);
  if (!bytes || bytes.length < IV_BYTES + TAG_BYTES) return null;
  let plain;
  try {
    plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: bytes.subarray(0, IV_BYTES), additionalData: utf8.encode(aad), tagLength: TAG_BYTES * 8 },
      key,
      bytes.subarray(IV_BYTES),
    );
  } catch {
    return null;
  }
  try {
    const value = JSON.parse(fromUtf8.decode(plain));
    return value && typeof value === 'object' && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/** A location as it is sealed: SPEC §3's fields, the optional ones only when known. */
export function locationPlaintext({ lat, lng, accuracy, heading, speed }, at) {
  const out = { lat, lng };
  if (Number.isFinite(accuracy)) out.accuracy = accuracy;
  if (Number.isFinite(heading)) out.heading = heading;
  if (Number.isFinite(speed)) out.speed = speed;
  out.timestamp = new Date(at).toISOString();
  return out;
}

const finite = (v, lo, hi) => typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi;

/** An opened location, checked as the server checks clear ones (SPEC §3), or null. */
export function readLocation(v) {
  if (!v || !finite(v.lat, -90, 90) || !finite(v.lng, -180, 180)) return null;
  const t = Date.parse(v.timestamp);
  return {
    lat: v.lat,
    lng: v.lng,
    accuracy: finite(v.accuracy, 0, 100_000) ? v.accuracy : undefined,
    heading: finite(v.heading, 0, 359.999999) ? v.heading : undefined,
    speed: finite(v.speed, 0, Number.MAX_VALUE) ? v.speed : undefined,
    timestamp: Number.isFinite(t) ? t : null,
  };
}

/** An opened meeting point, checked as the server checks clear ones (SPEC §7), or null. */
export function readDestination(v) {
  if (!v || !finite(v.lat, -90, 90) || !finite(v.lng, -180, 180)) return null;
  const radius = v.radius_m === undefined ? 100 : v.radius_m;
  if (!finite(radius, 20, 5000)) return null;
  const label = typeof v.label === 'string' && v.label.trim() ? v.label.slice(0, 100) : null;
  return { lat: v.lat, lng: v.lng, radius_m: radius, label };
}
