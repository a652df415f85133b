'use strict';
// Test vectors of the sealing of end-to-end encrypted sessions (README, "Sealing, for
// interoperable clients"; SPEC §10), made with Node's crypto only and written to
// docs/e2e-vectors.json. Keys and IVs are fixed here, so a run reproduces the file byte for
// byte (real clients draw a fresh random IV per message). A Rust test with the aes-gcm crate
// (tests/api/e2e_vectors.rs) checks them with an independent implementation.
//
//   node tests/e2e/vectors.js           writes docs/e2e-vectors.json
//   node tests/e2e/vectors.js --check   regenerates and compares with the committed file, and
//                                       opens every sealed value in it; exits 1 on a mismatch

const fs = require('fs');
const path = require('path');
const { BLOCK, IV_BYTES, b64url, fromB64url, aadOf, pad, sealText, openText } = require('./sealing');

const FILE = path.join(__dirname, '..', '..', 'docs', 'e2e-vectors.json');

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Two sessions, each with its own key.
const SESSION_1 = '5f0c6a2e-3b1d-4c8e-9a7f-2d4b6e8f1a3c';
const KEY_1 = hex('000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f');
const SESSION_2 = 'c3e1b2a4-7d6f-4e09-8b5a-0f9e8d7c6b5a';
const KEY_2 = hex('8f3a5c7e91b2d4f60a1c3e5f7a9b0d2e 4f61839aa5c7e9f1b3d5f7092b4d6f81');
const ALICE = '0b6f3c1e-8d2a-4f57-b9e4-61c07a3d52e8';
const BOB = 'e4d2a9c7-1f3b-4a6e-8c5d-7b9f0e2a4c61';

// A label of exactly 100 characters (the most a label may have), 3 UTF-8 bytes each.
const LONG_LABEL = '東京駅丸の内北口改札前の広場にある大きな時計台の下で待ち合わせましょう'.repeat(3).slice(0, 100);

// A label that makes the destination's JSON exactly 256 bytes, so that it needs no padding.
const EXACT_LABEL = 'Brandenburger Tor 🚪 ブランデンブルク門の前、パリ広場の真ん中で待ち合わせ。ベルリン中央駅から歩いて来てください。早く着いたら待っててね！';

const VECTORS = [
  {
    description: 'a full location: every field of SPEC §3 (lat, lng, accuracy, heading, speed, timestamp)',
    key: KEY_1,
    session_id: SESSION_1,
    user_id: ALICE,
    iv: hex('1a2b3c4d5e6f708192a3b4c5'),
    value: { lat: 38.7223, lng: -9.1393, accuracy: 8.5, heading: 271.25, speed: 1.4, timestamp: '2026-12-02T18:04:00.123Z' },
  },
  {
    description: 'a minimal location: lat, lng and timestamp only; sealed to the same length as the full one',
    key: KEY_1,
    session_id: SESSION_1,
    user_id: BOB,
    iv: hex('000000000000000000000001'),
    value: { lat: -33.86882, lng: 151.20929, timestamp: '2026-12-02T18:04:01Z' },
  },
  {
    description: 'a destination without a label; the additional data is "{session_id}:destination"',
    key: KEY_1,
    session_id: SESSION_1,
    user_id: null,
    iv: hex('f0e1d2c3b4a5968778695a4b'),
    value: { lat: 48.8566, lng: 2.3522, radius_m: 100 },
  },
  {
    description: 'a destination with a non-ASCII label (2-, 3- and 4-byte UTF-8 characters): padding counts bytes, not characters',
    key: KEY_1,
    session_id: SESSION_1,
    user_id: null,
    iv: hex('0123456789abcdef01234567'),
    value: { lat: 35.681236, lng: 139.767125, radius_m: 150, label: 'Café Ñandú – 東京駅 🚉' },
  },
  {
    description: 'a destination whose JSON is more than 256 bytes (a 100-character label of 3-byte characters): padded to 512',
    key: KEY_2,
    session_id: SESSION_2,
    user_id: null,
    iv: hex('a5a5a5a5a5a5a5a5a5a5a5a5'),
    value: { lat: 35.681236, lng: 139.767125, radius_m: 5000, label: LONG_LABEL },
  },
  {
    description: 'a destination whose JSON is exactly 256 bytes: no padding is added',
    key: KEY_2,
    session_id: SESSION_2,
    user_id: null,
    iv: hex('5a5a5a5a5a5a5a5a5a5a5a5a'),
    value: { lat: 52.520008, lng: 13.404954, radius_m: 250, label: EXACT_LABEL },
    exactBytes: 256,
  },
  {
    description: 'a location in another session, with another key',
    key: KEY_2,
    session_id: SESSION_2,
    user_id: ALICE,
    iv: hex('ffffffffffffffffffffffff'),
    value: { lat: -90, lng: 180, accuracy: 0, heading: 0, speed: 0, timestamp: '2026-12-31T23:59:59.999Z' },
  },
];

function generate() {
  const vectors = VECTORS.map((v) => {
    const aad = aadOf(v.session_id, v.user_id);
    const plaintext = pad(v.value);
    if (v.exactBytes && Buffer.byteLength(JSON.stringify(v.value), 'utf8') !== v.exactBytes) {
      throw new Error(`${v.description}: the JSON is not ${v.exactBytes} bytes`);
    }
    return {
      description: v.description,
      key: b64url(v.key),
      session_id: v.session_id,
      user_id: v.user_id,
      aad,
      iv: b64url(v.iv),
      plaintext,
      sealed: sealText(v.key, v.iv, aad, plaintext),
    };
  });
  const doc = {
    description:
      'Test vectors of the sealing of end-to-end encrypted sessions (SPEC §10, README "Sealing, for interoperable clients"). ' +
      'Made by tests/e2e/vectors.js with Node\'s crypto, with fixed keys and IVs so that they can be reproduced: a real client ' +
      'draws a fresh random IV for every message and never reuses one with a key.',
    format: {
      key: '32 bytes (AES-256), base64url without padding, as in the link fragment #k=',
      iv: '12 bytes, base64url without padding; also the first 12 bytes of sealed',
      aad: 'UTF-8 "{session_id}:{user_id}" of the sender; "{session_id}:destination" for the destination (user_id null)',
      plaintext:
        'a UTF-8 JSON object, then spaces (0x20) up to the next multiple of 256 bytes (none when its length already is one); ' +
        'a location is {"lat","lng","accuracy"?,"heading"?,"speed"?,"timestamp"}, a destination {"lat","lng","radius_m","label"?}',
      sealed: 'base64url without padding of iv ‖ AES-256-GCM(key, iv, aad, plaintext) ‖ 16-byte tag',
    },
    vectors,
  };
  return JSON.stringify(doc, null, 2) + '\n';
}

// Every way a committed vector can be wrong, as messages (none when it is right).
function problems(v, i) {
  const out = [];
  const say = (m) => out.push(`vector ${i} (${v.description}): ${m}`);
  try {
    const key = fromB64url(v.key);
    const raw = fromB64url(v.sealed);
    if (key.length !== 32) say(`key is ${key.length} bytes`);
    if (v.aad !== aadOf(v.session_id, v.user_id)) say(`aad ${JSON.stringify(v.aad)} is not that of its session and user`);
    if (!raw.subarray(0, IV_BYTES).equals(fromB64url(v.iv))) say('sealed does not start with iv');
    const opened = openText(key, v.aad, v.sealed);
    if (opened !== v.plaintext) say('sealed opens to another plaintext');
    const bytes = Buffer.byteLength(v.plaintext, 'utf8');
    if (bytes === 0 || bytes % BLOCK !== 0) say(`plaintext is ${bytes} bytes, not a multiple of ${BLOCK}`);
    const value = JSON.parse(v.plaintext);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) say('plaintext is not a JSON object');
    if (pad(value) !== v.plaintext) say('plaintext is not the JSON text padded with spaces');
    const other = aadOf(v.session_id, v.user_id === null ? '00000000-0000-4000-8000-000000000000' : null);
    let wrongAad = true;
    try {
      openText(key, other, v.sealed);
    } catch {
      wrongAad = false;
    }
    if (wrongAad) say(`opens with the wrong additional data ${other}`);
    const flipped = Buffer.from(raw);
    flipped[flipped.length >> 1] ^= 0x01;
    let tampered = true;
    try {
      openText(key, v.aad, b64url(flipped));
    } catch {
      tampered = false;
    }
    if (tampered) say('opens with a flipped byte');
  } catch (e) {
    say(`does not open: ${e.message}`);
  }
  return out;
}

function check() {
  const committed = fs.readFileSync(FILE, 'utf8');
  // One check for the file as a whole, one for each vector in it.
  const results = [committed === generate() ? [] : [`${path.relative(process.cwd(), FILE)} differs from what vectors.js generates (run node tests/e2e/vectors.js)`]];
  const doc = JSON.parse(committed);
  doc.vectors.forEach((v, i) => results.push(problems(v, i)));
  for (const f of results.flat()) console.error(`e2e-vectors: ${f}`);
  const failed = results.filter((r) => r.length > 0).length;
  console.log(`e2e-vectors: ${results.length - failed} passed, ${failed} failed`);
  return failed === 0;
}

if (process.argv.includes('--check')) {
  process.exit(check() ? 0 : 1);
} else {
  fs.writeFileSync(FILE, generate());
  console.log(`wrote ${path.relative(process.cwd(), FILE)}`);
}
