'use strict';
// The sealing of an end-to-end encrypted session (README, "Sealing, for interoperable
// clients"), with Node's crypto only: AES-256-GCM, a 12-byte IV, the additional data
// "{session_id}:{user_id}" ("{session_id}:destination" for the destination), as plaintext a
// JSON object padded with spaces to a multiple of 256 bytes, sealed = base64url(iv ‖ ct ‖ tag).
// Used by vectors.js (docs/e2e-vectors.json) and by the e2e scenario of e2e.js.

const crypto = require('crypto');

const BLOCK = 256;
const IV_BYTES = 12;
const TAG_BYTES = 16;

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const fromB64url = (s) => {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new Error('not base64url');
  return Buffer.from(s, 'base64url');
};

// The additional data of a sender: a participant's user id, or null for the destination.
const aadOf = (sessionId, userId) => `${sessionId}:${userId === null ? 'destination' : userId}`;

// JSON text of `obj`, then spaces (0x20) up to the next multiple of 256 UTF-8 bytes (a text
// whose length already is one is not padded).
function pad(obj) {
  const json = JSON.stringify(obj);
  const bytes = Buffer.byteLength(json, 'utf8');
  const padded = Math.ceil(bytes / BLOCK) * BLOCK;
  return json + ' '.repeat(padded - bytes);
}

// Seals the padded plaintext string with key (32 bytes), iv (12 bytes) and aad (string).
function sealText(key, iv, aad, plaintext) {
  if (key.length !== 32) throw new Error('key must be 32 bytes');
  if (iv.length !== IV_BYTES) throw new Error('iv must be 12 bytes');
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const ct = Buffer.concat([cipher.update(Buffer.from(plaintext, 'utf8')), cipher.final()]);
  return b64url(Buffer.concat([iv, ct, cipher.getAuthTag()]));
}

// Seals a location or destination object with a fresh random IV.
const seal = (key, aad, obj) => sealText(key, crypto.randomBytes(IV_BYTES), aad, pad(obj));

// Opens a sealed string to its plaintext string; throws when it does not open (wrong key,
// wrong additional data, a tampered byte) or is too short to hold an IV and a tag.
function openText(key, aad, sealed) {
  const raw = fromB64url(sealed);
  if (raw.length < IV_BYTES + TAG_BYTES) throw new Error('sealed message too short');
  const iv = raw.subarray(0, IV_BYTES);
  const tag = raw.subarray(raw.length - TAG_BYTES);
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(tag);
  const pt = Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
  // fatal: a plaintext that is not UTF-8 does not open either.
  return new TextDecoder('utf-8', { fatal: true }).decode(pt);
}

// Opens a sealed string to the JSON object it holds; throws as openText does, and when the
// plaintext is not a JSON object.
function open(key, aad, sealed) {
  const value = JSON.parse(openText(key, aad, sealed));
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
  return value;
}

module.exports = { BLOCK, IV_BYTES, TAG_BYTES, b64url, fromB64url, aadOf, pad, sealText, seal, openText, open };
