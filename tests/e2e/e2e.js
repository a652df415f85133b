'use strict';
// End-to-end test with the official phoenix client (ws as transport): three people join one
// session, exchange locations, one drops and reconnects, one leaves, the creator ends the
// session; each client must see exactly the events SPEC promises, and phoenix.js Presence must
// track who is online through joins, disconnects and reconnects. A second scenario (SPEC §7–§8):
// a destination set by REST, distance and ETA on location updates, an arrival seen by another
// client, the advice going idle when the only viewer hides its page, and Presence showing
// meta.viewing. A third (SPEC §10): an end-to-end encrypted session, where positions and the
// destination travel sealed with the key of the link's fragment, a client with a wrong key opens
// nothing, and clear coordinates are refused.
//
//   node e2e.js http://127.0.0.1:4000

const assert = require('assert');
const WebSocket = require('ws');
const crypto = require('crypto');
const { Socket, Presence } = require('phoenix');
const sealing = require('./sealing');

const base = process.argv[2] || 'http://127.0.0.1:4000';
const WAIT_MS = 5000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function api(method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function until(what, pred, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = pred();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

class Client {
  constructor(name, join, events = ['participant_joined', 'participant_left', 'location_update', 'session_ended']) {
    this.subscribed = events;
    this.name = name;
    this.userId = join.user_id;
    this.token = join.websocket_token;
    this.events = [];
    this.closed = false;
  }

  async connect(sessionId) {
    const endpoint = base.replace(/^http/, 'ws') + '/socket';
    this.socket = new Socket(endpoint, {
      transport: WebSocket,
      params: { token: this.token },
      heartbeatIntervalMs: 1000,
      reconnectAfterMs: () => 60000,
      rejoinAfterMs: () => 60000,
    });
    this.socketCloses = [];
    this.socket.onClose((e) => this.socketCloses.push(e && e.code));
    this.socket.connect();
    this.channel = this.socket.channel(`location:${sessionId}`, {});
    this.presence = new Presence(this.channel);
    for (const event of this.subscribed) {
      this.channel.on(event, (payload) => this.events.push({ event, payload }));
    }
    this.channel.onClose(() => {
      this.closed = true;
    });
    this.snapshot = await new Promise((resolve, reject) => {
      this.channel
        .join()
        .receive('ok', resolve)
        .receive('error', (e) => reject(new Error(`${this.name} join refused: ${JSON.stringify(e)}`)))
        .receive('timeout', () => reject(new Error(`${this.name} join timed out`)));
    });
    return this.snapshot;
  }

  viewing() {
    const byId = {};
    for (const [id, v] of this.presence.list((id, { metas }) => [id, metas[0].viewing])) byId[id] = v;
    return byId;
  }

  online() {
    return this.presence.list((id) => id).sort();
  }

  push(event, payload) {
    return new Promise((resolve, reject) => {
      this.channel
        .push(event, payload)
        .receive('ok', resolve)
        .receive('error', (e) => reject(new Error(`${this.name} ${event} refused: ${JSON.stringify(e)}`)))
        .receive('timeout', () => reject(new Error(`${this.name} ${event} timed out`)));
    });
  }

  // The reply to a push, ok or error: {status, response}.
  reply(event, payload) {
    return new Promise((resolve, reject) => {
      this.channel
        .push(event, payload)
        .receive('ok', (response) => resolve({ status: 'ok', response }))
        .receive('error', (response) => resolve({ status: 'error', response }))
        .receive('timeout', () => reject(new Error(`${this.name} ${event} timed out`)));
    });
  }

  seen(event, pred = () => true) {
    return this.events.filter((e) => e.event === event && pred(e.payload));
  }

  disconnect() {
    this.socket.disconnect();
  }
}

async function main() {
  const created = await api('POST', '/api/sessions', { name: 'e2e', expires_in_minutes: 30 });
  assert.strictEqual(created.status, 201);
  const sid = created.json.session_id;
  const creatorToken = created.json.creator_token;
  const join = async (name) => {
    const r = await api('POST', `/api/sessions/${sid}/join`, { display_name: name });
    assert.strictEqual(r.status, 201, `join ${name}`);
    return new Client(name, r.json);
  };

  // Alice and Bob join and connect; Carol's REST join is then broadcast to them.
  const alice = await join('Alice');
  const bob = await join('Bob');
  await alice.connect(sid);
  await bob.connect(sid);
  const carol = await join('Carol');
  for (const c of [alice, bob]) {
    const ev = await until(`${c.name} sees participant_joined`, () => c.seen('participant_joined')[0]);
    assert.deepStrictEqual(ev.payload.user_id, carol.userId);
    assert.strictEqual(ev.payload.display_name, 'Carol');
    assert.match(ev.payload.avatar_color, /^#[0-9A-F]{6}$/i);
  }
  const snap = await carol.connect(sid);
  assert.strictEqual(snap.participants.length, 3, 'snapshot lists three participants');
  const everyone = [alice.userId, bob.userId, carol.userId].sort();
  for (const c of [alice, bob, carol]) {
    await until(`${c.name}'s Presence lists all three`, () => JSON.stringify(c.online()) === JSON.stringify(everyone));
  }

  // Locations reach the others, never the sender.
  await alice.push('location_update', { lat: 38.7223, lng: -9.1393, accuracy: 8 });
  await bob.push('location_update', { lat: 38.7169, lng: -9.1399 });
  for (const [c, from] of [[bob, alice], [carol, alice], [alice, bob], [carol, bob]]) {
    await until(`${c.name} gets ${from.name}'s location`, () => c.seen('location_update', (p) => p.user_id === from.userId)[0]);
  }
  await sleep(300);
  assert.strictEqual(alice.seen('location_update', (p) => p.user_id === alice.userId).length, 0, 'no echo to Alice');
  assert.strictEqual(bob.seen('location_update', (p) => p.user_id === bob.userId).length, 0, 'no echo to Bob');

  // Carol drops: Presence forgets her; she reconnects: Presence shows her again and her
  // snapshot carries the fresh locations.
  carol.disconnect();
  for (const c of [alice, bob]) {
    await until(`${c.name}'s Presence drops Carol`, () => !c.online().includes(carol.userId));
  }
  const again = await carol.connect(sid);
  const located = again.locations.map((l) => l.user_id).sort();
  assert.deepStrictEqual(located, [alice.userId, bob.userId].sort(), 'reconnect snapshot has both locations');
  for (const c of [alice, bob, carol]) {
    await until(`${c.name}'s Presence lists Carol again`, () => c.online().includes(carol.userId));
  }

  // Carol leaves through REST: everyone (Carol too) hears it, her channel closes, her socket closes with 1000.
  const left = await api('DELETE', `/api/sessions/${sid}/participants/${carol.userId}`, undefined, carol.token);
  assert.strictEqual(left.status, 204);
  for (const c of [alice, bob, carol]) {
    const ev = await until(`${c.name} sees Carol leave`, () => c.seen('participant_left', (p) => p.user_id === carol.userId)[0]);
    assert.strictEqual(ev.payload.reason, 'left');
  }
  await until('Carol channel closed', () => carol.closed);
  await until('Carol socket closed with 1000', () => carol.socketCloses.includes(1000));
  for (const c of [alice, bob]) {
    await until(`${c.name}'s Presence drops Carol for good`, () => !c.online().includes(carol.userId));
  }

  // The creator ends the session.
  const ended = await api('DELETE', `/api/sessions/${sid}`, undefined, creatorToken);
  assert.strictEqual(ended.status, 204);
  for (const c of [alice, bob]) {
    const ev = await until(`${c.name} sees session_ended`, () => c.seen('session_ended')[0]);
    assert.deepStrictEqual(ev.payload, { reason: 'ended_by_creator' });
    await until(`${c.name}'s channel closed`, () => c.closed);
  }

  // Exactly the promised events, no duplicates.
  const summary = (c) => c.events.map((e) => `${e.event}:${e.payload.user_id || e.payload.reason}`);
  const name = { [alice.userId]: 'A', [bob.userId]: 'B', [carol.userId]: 'C' };
  const pretty = (c) => summary(c).map((s) => s.replace(/[0-9a-f-]{36}/, (id) => name[id] || id));
  assert.deepStrictEqual(pretty(alice), ['participant_joined:C', 'location_update:B', 'participant_left:C', 'session_ended:ended_by_creator']);
  assert.deepStrictEqual(pretty(bob), ['participant_joined:C', 'location_update:A', 'participant_left:C', 'session_ended:ended_by_creator']);
  assert.deepStrictEqual(pretty(carol), ['location_update:A', 'location_update:B', 'participant_left:C']);

  const after = await api('POST', `/api/sessions/${sid}/join`, { display_name: 'Late' });
  assert.strictEqual(after.status, 410);
  for (const c of [alice, bob]) c.disconnect();
}

// SPEC §7–§8 with the official client: destination, distance/ETA, arrival, rate advice, viewing.
async function meetingPoint() {
  const created = await api('POST', '/api/sessions', { name: 'meet', expires_in_minutes: 30 });
  assert.strictEqual(created.status, 201);
  assert.strictEqual(created.json.destination, null);
  assert.strictEqual(created.json.locked, false);
  const sid = created.json.session_id;
  const creatorToken = created.json.creator_token;
  const events = ['location_update', 'destination_set', 'participant_arrived', 'participant_departed', 'rate_advice'];
  const join = async (name) => {
    const r = await api('POST', `/api/sessions/${sid}/join`, { display_name: name });
    assert.strictEqual(r.status, 201, `join ${name}`);
    return new Client(name, r.json, events);
  };
  const alice = await join('Alice');
  const bob = await join('Bob');
  await alice.connect(sid);
  await bob.connect(sid);

  // Both look at the map: each is advised the fast rate with one watcher; Presence shows viewing.
  for (const c of [alice, bob]) {
    await until(`${c.name} advised fast`, () =>
      c.seen('rate_advice', (p) => p.interval_ms === 1000 && p.watchers === 1)[0],
    );
    await until(`${c.name}'s Presence shows both viewing`, () => {
      const v = c.viewing();
      return v[alice.userId] === true && v[bob.userId] === true;
    });
  }

  // The creator sets the destination by REST; both hear it.
  const dest = { lat: 48.8566, lng: 2.3522 };
  const put = await api('PUT', `/api/sessions/${sid}/destination`, { ...dest, radius_m: 100, label: 'Café' }, creatorToken);
  assert.strictEqual(put.status, 200, JSON.stringify(put.json));
  assert.deepStrictEqual([put.json.lat, put.json.lng, put.json.radius_m, put.json.label], [48.8566, 2.3522, 100, 'Café']);
  for (const c of [alice, bob]) {
    const ev = await until(`${c.name} gets destination_set`, () => c.seen('destination_set')[0]);
    assert.deepStrictEqual(ev.payload, put.json);
  }
  const shown = await api('GET', `/api/sessions/${sid}`);
  assert.deepStrictEqual(shown.json.destination, put.json);

  // Bob is about 1 km north at 2 m/s: Alice sees distance_m and eta_s.
  const north = (m) => ({ lat: dest.lat + m / 111194.9, lng: dest.lng });
  await bob.push('location_update', { ...north(1000), speed: 2 });
  const far = await until("Alice gets Bob's far location", () => alice.seen('location_update', (p) => p.user_id === bob.userId)[0]);
  assert.ok(far.payload.distance_m >= 995 && far.payload.distance_m <= 1005, `distance_m ${far.payload.distance_m}`);
  assert.ok(Math.abs(far.payload.eta_s - Math.round(far.payload.distance_m / 2)) <= 1, `eta_s ${far.payload.eta_s}`);

  // Bob walks in: Alice (and Bob) see participant_arrived once; his update says eta_s 0.
  await bob.push('location_update', { ...north(20), accuracy: 10, speed: 1.2 });
  for (const c of [alice, bob]) {
    const ev = await until(`${c.name} sees Bob arrive`, () => c.seen('participant_arrived', (p) => p.user_id === bob.userId)[0]);
    assert.match(ev.payload.arrived_at, /Z$/);
  }
  const near = await until("Alice gets Bob's arriving location", () =>
    alice.seen('location_update', (p) => p.user_id === bob.userId && p.distance_m < 100)[0],
  );
  assert.strictEqual(near.payload.eta_s, 0);
  await bob.push('location_update', { ...north(10), accuracy: 5 });
  await until("Alice gets Bob's next location", () =>
    alice.seen('location_update', (p) => p.user_id === bob.userId && p.distance_m < 15)[0],
  );
  assert.strictEqual(alice.seen('participant_arrived').length, 1, 'one arrival for Alice');

  // A late joiner's snapshot carries the destination and the arrival.
  const carol = await join('Carol');
  const snap = await carol.connect(sid);
  assert.deepStrictEqual(snap.destination, put.json);
  assert.deepStrictEqual(Object.keys(snap.arrivals), [bob.userId]);
  carol.disconnect();
  await until("Alice's Presence drops Carol", () => !alice.online().includes(carol.userId));

  // Bob hides his page: Alice's advice goes idle, and her Presence shows Bob not viewing.
  await bob.push('viewing', { visible: false });
  await until("Alice's advice goes idle", () =>
    alice.seen('rate_advice', (p) => p.interval_ms === 15000 && p.watchers === 0)[0],
  );
  await until("Alice's Presence shows Bob not viewing", () => alice.viewing()[bob.userId] === false);
  assert.strictEqual(alice.viewing()[alice.userId], true);
  await until("Bob's Presence shows himself not viewing", () => bob.viewing()[bob.userId] === false);
  // Bob's own advice does not change: Alice still looks.
  await sleep(300);
  const last = bob.seen('rate_advice').pop();
  assert.deepStrictEqual(last.payload, { interval_ms: 1000, watchers: 1 });
  // Bob looks again: Alice is fast again.
  await bob.push('viewing', { visible: true });
  await until("Alice's advice fast again", () => {
    const l = alice.seen('rate_advice').pop();
    return l && l.payload.interval_ms === 1000 && l.payload.watchers === 1;
  });

  const ended = await api('DELETE', `/api/sessions/${sid}`, undefined, creatorToken);
  assert.strictEqual(ended.status, 204);
  for (const c of [alice, bob]) c.disconnect();
}

// SPEC §10 with the official client: an end-to-end encrypted session. The creator makes the key
// and shares it in the link's fragment; Alice and Bob seal their positions with it (each with
// its own additional data) and open each other's; Mallory joined with a wrong key gets every
// message and opens none; clear coordinates are refused; the destination arrives sealed.
async function endToEnd() {
  const created = await api('POST', '/api/sessions', { name: 'secret', expires_in_minutes: 30, e2e: true });
  assert.strictEqual(created.status, 201, JSON.stringify(created.json));
  assert.strictEqual(created.json.e2e, true);
  const sid = created.json.session_id;
  const creatorToken = created.json.creator_token;
  const shown = await api('GET', `/api/sessions/${sid}`);
  assert.strictEqual(shown.json.e2e, true);

  // The key travels in the fragment of the shared link only.
  const link = `${created.json.join_link}#k=${sealing.b64url(crypto.randomBytes(32))}`;
  const keyOf = (l) => {
    const k = new URLSearchParams(new URL(l).hash.slice(1)).get('k');
    assert.match(k, /^[A-Za-z0-9_-]{43}$/);
    return sealing.fromB64url(k);
  };
  const key = keyOf(link);
  const wrongKey = crypto.randomBytes(32);

  const events = ['location_update', 'destination_set', 'participant_arrived'];
  const join = async (name, k) => {
    const r = await api('POST', `/api/sessions/${sid}/join`, { display_name: name });
    assert.strictEqual(r.status, 201, `join ${name}`);
    const c = new Client(name, r.json, events);
    c.key = k;
    return c;
  };
  // What a client opens of what it received, as an e2e client does: a message that fails to
  // open is counted and ignored, never shown.
  const opened = (c) => {
    const positions = [];
    let failures = 0;
    for (const { event, payload } of c.events) {
      const aad = sealing.aadOf(sid, event === 'destination_set' ? null : payload.user_id);
      try {
        positions.push({ event, user_id: payload.user_id, value: sealing.open(c.key, aad, payload.sealed) });
      } catch {
        failures += 1;
      }
    }
    return { positions, failures };
  };

  const alice = await join('Alice', key);
  const bob = await join('Bob', key);
  const mallory = await join('Mallory', wrongKey);
  for (const c of [alice, bob, mallory]) await c.connect(sid);

  // Clear coordinates are refused on `sealed`, alone or beside a sealed value, and not relayed.
  const clear = { lat: 38.7223, lng: -9.1393, timestamp: new Date().toISOString() };
  for (const payload of [clear, { ...clear, sealed: sealing.seal(key, sealing.aadOf(sid, alice.userId), clear) }]) {
    const r = await alice.reply('location_update', payload);
    assert.strictEqual(r.status, 'error', JSON.stringify(r));
    assert.strictEqual(r.response.reason, 'invalid_location');
    assert.deepStrictEqual(Object.keys(r.response.errors), ['sealed'], JSON.stringify(r.response));
    assert.match(r.response.errors.sealed[0], /end-to-end encrypted/);
  }
  const notBase64 = await alice.reply('location_update', { sealed: 'not base64url, and far too clear' });
  assert.strictEqual(notBase64.response.reason, 'invalid_location');
  assert.ok(notBase64.response.errors.sealed, JSON.stringify(notBase64.response));

  // Each seals its position with its own user id as additional data.
  const now = () => new Date().toISOString();
  const aliceAt = { lat: 38.7223, lng: -9.1393, accuracy: 8, heading: 90, speed: 1.2, timestamp: now() };
  const bobAt = { lat: -33.86882, lng: 151.20929, timestamp: now() };
  const aliceSealed = sealing.seal(key, sealing.aadOf(sid, alice.userId), aliceAt);
  const bobSealed = sealing.seal(key, sealing.aadOf(sid, bob.userId), bobAt);
  assert.strictEqual(aliceSealed.length, 379, 'a padded location seals to 379 characters');
  assert.strictEqual(bobSealed.length, aliceSealed.length, 'the minimal location seals to the same length');
  assert.deepStrictEqual(await alice.push('location_update', { sealed: aliceSealed }), {});
  assert.deepStrictEqual(await bob.push('location_update', { type: 'location_update', data: { sealed: bobSealed } }), {});

  for (const [c, from, sealed, at] of [
    [bob, alice, aliceSealed, aliceAt],
    [alice, bob, bobSealed, bobAt],
    [mallory, alice, aliceSealed, null],
    [mallory, bob, bobSealed, null],
  ]) {
    const ev = await until(`${c.name} gets ${from.name}'s sealed location`, () =>
      c.seen('location_update', (p) => p.user_id === from.userId)[0],
    );
    // Relayed byte for byte, with the server's receive time and nothing measured.
    assert.deepStrictEqual(Object.keys(ev.payload).sort(), ['received_at', 'sealed', 'user_id']);
    assert.strictEqual(ev.payload.sealed, sealed);
    assert.match(ev.payload.received_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    if (at) {
      assert.deepStrictEqual(sealing.open(c.key, sealing.aadOf(sid, from.userId), ev.payload.sealed), at, `${c.name} opens ${from.name}'s exact position`);
      // Under another sender's additional data the same message does not open.
      assert.throws(() => sealing.open(c.key, sealing.aadOf(sid, c.userId), ev.payload.sealed));
    }
  }

  // The creator sets a sealed destination by REST; a clear one is refused on `sealed`.
  const refused = await api('PUT', `/api/sessions/${sid}/destination`, { lat: 48.8566, lng: 2.3522, radius_m: 100 }, creatorToken);
  assert.strictEqual(refused.status, 422, JSON.stringify(refused.json));
  assert.ok(refused.json.errors.sealed, JSON.stringify(refused.json));
  const dest = { lat: 48.8566, lng: 2.3522, radius_m: 100, label: 'Café des Deux Moulins' };
  const destSealed = sealing.seal(key, sealing.aadOf(sid, null), dest);
  const put = await api('PUT', `/api/sessions/${sid}/destination`, { sealed: destSealed }, creatorToken);
  assert.strictEqual(put.status, 200, JSON.stringify(put.json));
  assert.deepStrictEqual(Object.keys(put.json).sort(), ['sealed', 'set_at']);
  assert.strictEqual(put.json.sealed, destSealed);
  for (const c of [alice, bob, mallory]) {
    const ev = await until(`${c.name} gets destination_set`, () => c.seen('destination_set')[0]);
    assert.deepStrictEqual(ev.payload, put.json);
  }
  for (const c of [alice, bob]) {
    const ev = c.seen('destination_set')[0];
    assert.deepStrictEqual(sealing.open(c.key, `${sid}:destination`, ev.payload.sealed), dest, `${c.name} opens the destination`);
  }

  // A late joiner's snapshot carries the sealed positions and destination, which open.
  const dave = await join('Dave', key);
  const snap = await dave.connect(sid);
  assert.deepStrictEqual(snap.destination, put.json);
  const byUser = Object.fromEntries(snap.locations.map((l) => [l.user_id, l]));
  assert.deepStrictEqual(Object.keys(byUser).sort(), [alice.userId, bob.userId].sort());
  assert.deepStrictEqual(sealing.open(key, sealing.aadOf(sid, alice.userId), byUser[alice.userId].sealed), aliceAt);
  assert.deepStrictEqual(sealing.open(key, sealing.aadOf(sid, bob.userId), byUser[bob.userId].sealed), bobAt);
  dave.disconnect();

  // Exactly what was sent arrived (the refused clear ones never did), and Mallory, with the
  // wrong key, opened none of it: every message counted as a failure, no position yielded.
  await sleep(300);
  assert.deepStrictEqual(opened(alice), { positions: [
    { event: 'location_update', user_id: bob.userId, value: bobAt },
    { event: 'destination_set', user_id: undefined, value: dest },
  ], failures: 0 });
  assert.deepStrictEqual(opened(bob), { positions: [
    { event: 'location_update', user_id: alice.userId, value: aliceAt },
    { event: 'destination_set', user_id: undefined, value: dest },
  ], failures: 0 });
  assert.strictEqual(mallory.events.length, 3, `Mallory got ${mallory.events.map((e) => e.event)}`);
  assert.deepStrictEqual(opened(mallory), { positions: [], failures: 3 });
  for (const c of [alice, bob, mallory]) assert.strictEqual(c.seen('participant_arrived').length, 0, 'no arrival is computed');

  const ended = await api('DELETE', `/api/sessions/${sid}`, undefined, creatorToken);
  assert.strictEqual(ended.status, 204);
  for (const c of [alice, bob, mallory]) c.disconnect();
}

async function all() {
  await main();
  await meetingPoint();
  await endToEnd();
  console.log('e2e: 3 passed, 0 failed');
}

all().then(
  () => process.exit(0),
  (e) => {
    console.error(`e2e: FAILED: ${e.stack || e.message}`);
    console.log('e2e: FAILED');
    process.exit(1);
  },
);
