'use strict';
// Several replicas sharing PostgreSQL and Redis, driven with the official phoenix client.
// Starts its own redis-server on a free port (so it can restart it) and the server binary it is
// given, several times:
//
//   node cluster.js path/to/location-sharing postgres://postgres@127.0.0.1:5432/test
//
// Scenarios: cross-replica delivery and Presence; the cap with 60 joins split over two
// replicas; the creator ending a session on one replica closing sockets on the other; a session
// busy on one replica never ended for inactivity by the other; kill -9 of a replica (its clients
// reconnect to the other and resume, its Presence entries vanish within 60 s); redis-server
// restarted (readiness 503 then 200, fan-out resumes); SIGTERM drain (readiness, 1012 closes
// spread over time, exit within the grace).

const assert = require('assert');
const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');
const { Socket, Presence } = require('phoenix');

const [binary, databaseUrl] = process.argv.slice(2);
if (!binary || !databaseUrl) {
  console.error('usage: node cluster.js BINARY DATABASE_URL');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const JWT_SECRET = `cluster-${Date.now()}-secret-0123456789abcdef`;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-cluster-'));
const children = new Set();
let passed = 0;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function until(what, pred, timeoutMs = 5000, everyMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await pred();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ------------------------------------------------------------------ processes

class Redis {
  static async start() {
    const r = new Redis(await freePort());
    await r.up();
    return r;
  }

  constructor(port) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
  }

  async up() {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    children.add(this.proc);
    await until('redis-server to answer', () => pingRedis(this.port), 5000, 50);
  }

  async down() {
    this.proc.kill('SIGKILL');
    await new Promise((r) => this.proc.once('exit', r));
    children.delete(this.proc);
  }
}

function pingRedis(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      s.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
  });
}

class Replica {
  static async start(name, redis, env = {}) {
    const r = new Replica(name, await freePort(), redis, env);
    await r.up();
    return r;
  }

  constructor(name, port, redis, env) {
    this.name = name;
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.redis = redis;
    this.env = env;
  }

  async up() {
    const log = fs.openSync(path.join(work, `${this.name}.log`), 'a');
    this.proc = spawn(binary, [], {
      cwd: work,
      stdio: ['ignore', log, log],
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(this.port),
        PUBLIC_URL: this.base,
        DATABASE_URL: databaseUrl,
        REDIS_URL: this.redis.url,
        JWT_SECRET,
        RUST_LOG: 'info',
        // The abuse limits (SPEC §11) as this test needs them: every client is 127.0.0.1, and
        // the defaults hold for what it does (a handful of sessions, joins and sockets).
        CREATE_SESSIONS_PER_MINUTE: '60',
        JOINS_PER_MINUTE: '300',
        SOCKET_CONNECTS_PER_MINUTE: '600',
        MAX_SOCKETS_PER_ADDRESS: '1000',
        MAX_SOCKETS_PER_PARTICIPANT: '5',
        ...this.env,
      },
    });
    children.add(this.proc);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
    this.exited.then(() => children.delete(this.proc));
    await until(`${this.name} to serve /health`, async () => (await status(this.base, '/health')) === 200, 10000, 50);
  }

  kill9() {
    this.proc.kill('SIGKILL');
    return this.exited;
  }

  term() {
    this.proc.kill('SIGTERM');
    return this.exited;
  }
}

// ---------------------------------------------------------------------- HTTP

async function api(base, method, p, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function status(base, p) {
  try {
    const res = await fetch(base + p, { signal: AbortSignal.timeout(3000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

async function session(base, body = {}) {
  const r = await api(base, 'POST', '/api/sessions', body);
  assert.strictEqual(r.status, 201);
  return r.json;
}

async function join(base, sid, name) {
  const r = await api(base, 'POST', `/api/sessions/${sid}/join`, { display_name: name });
  assert.strictEqual(r.status, 201, `join ${name}: ${JSON.stringify(r.json)}`);
  return r.json;
}

// ------------------------------------------------------------------- clients

class Client {
  constructor(name, joined) {
    this.name = name;
    this.userId = joined.user_id;
    this.token = joined.websocket_token;
    this.events = [];
    this.closes = [];
    this.channelClosed = false;
  }

  async connect(replica, sid) {
    this.socket = new Socket(`ws://127.0.0.1:${replica.port}/socket`, {
      transport: WebSocket,
      params: { token: this.token },
      heartbeatIntervalMs: 1000,
      reconnectAfterMs: () => 60000,
      rejoinAfterMs: () => 60000,
    });
    this.socket.onClose((e) => this.closes.push({ code: e && e.code, at: Date.now() }));
    this.socket.connect();
    this.channel = this.socket.channel(`location:${sid}`, {});
    this.presence = new Presence(this.channel);
    for (const event of ['participant_joined', 'participant_left', 'location_update', 'session_ended']) {
      this.channel.on(event, (payload) => this.events.push({ event, payload }));
    }
    this.channel.onClose(() => {
      this.channelClosed = true;
    });
    return new Promise((resolve, reject) => {
      this.channel
        .join()
        .receive('ok', resolve)
        .receive('error', (e) => reject(new Error(`${this.name} join refused: ${JSON.stringify(e)}`)))
        .receive('timeout', () => reject(new Error(`${this.name} join timed out`)));
    });
  }

  online() {
    return this.presence.list((id) => id).sort();
  }

  push(event, payload) {
    return new Promise((resolve, reject) => {
      this.channel
        .push(event, payload)
        .receive('ok', resolve)
        .receive('error', (e) => reject(new Error(`${this.name} ${event}: ${JSON.stringify(e)}`)))
        .receive('timeout', () => reject(new Error(`${this.name} ${event} timed out`)));
    });
  }

  seen(event, pred = () => true) {
    return this.events.filter((e) => e.event === event && pred(e.payload));
  }

  close() {
    if (this.socket) this.socket.disconnect();
  }
}

async function expectLocation(to, from, lat) {
  await until(`${to.name} to get ${from.name}'s location ${lat}`, () =>
    to.seen('location_update', (p) => p.user_id === from.userId && p.lat === lat).length,
  );
}

// ----------------------------------------------------------------- scenarios

async function crossReplica(a, b) {
  const s = await session(a.base);
  const alice = new Client('Alice', await join(a.base, s.session_id, 'Alice'));
  const bob = new Client('Bob', await join(b.base, s.session_id, 'Bob'));
  await alice.connect(a, s.session_id);
  await bob.connect(b, s.session_id);
  const both = [alice.userId, bob.userId].sort();
  for (const c of [alice, bob]) {
    await until(`${c.name}'s Presence to list both`, () => JSON.stringify(c.online()) === JSON.stringify(both));
  }
  const carol = await join(b.base, s.session_id, 'Carol');
  for (const c of [alice, bob]) {
    await until(`${c.name} to hear Carol joined on B`, () => c.seen('participant_joined', (p) => p.user_id === carol.user_id).length);
  }
  await alice.push('location_update', { lat: 10.5, lng: 20.5 });
  await bob.push('location_update', { lat: 11.5, lng: 21.5 });
  await expectLocation(bob, alice, 10.5);
  await expectLocation(alice, bob, 11.5);
  // Order across replicas: a burst from Alice arrives at Bob in the order sent.
  for (let i = 0; i < 8; i++) await alice.push('location_update', { lat: 50 + i, lng: 0 });
  await until('the burst to arrive', () => bob.seen('location_update', (p) => p.lat >= 50).length === 8);
  const lats = bob.seen('location_update', (p) => p.lat >= 50).map((e) => e.payload.lat);
  assert.deepStrictEqual(lats, [50, 51, 52, 53, 54, 55, 56, 57], 'per-participant order across replicas');
  assert.strictEqual(alice.seen('location_update', (p) => p.user_id === alice.userId).length, 0, 'no echo');
  assert.strictEqual(bob.seen('location_update', (p) => p.lat === 10.5).length, 1, 'delivered exactly once');
  // Removal on B closes Alice's socket on A.
  const gone = await api(b.base, 'DELETE', `/api/sessions/${s.session_id}/participants/${alice.userId}`, undefined, s.creator_token);
  assert.strictEqual(gone.status, 204);
  await until("Alice's socket on A to close with 1000", () => alice.closes.some((c) => c.code === 1000));
  const ev = await until('Bob to hear Alice was removed', () => bob.seen('participant_left', (p) => p.user_id === alice.userId)[0]);
  assert.strictEqual(ev.payload.reason, 'removed');
  await until("Bob's Presence to drop Alice", () => !bob.online().includes(alice.userId));
  bob.close();
}

async function capAcrossReplicas(a, b) {
  const s = await session(a.base);
  const results = await Promise.all(
    Array.from({ length: 60 }, (_, i) =>
      api(i % 2 ? a.base : b.base, 'POST', `/api/sessions/${s.session_id}/join`, { display_name: `p${i}` }).then((r) => r.status),
    ),
  );
  const count = (code) => results.filter((x) => x === code).length;
  assert.strictEqual(count(201), 50, `exactly 50 joins succeed, got ${JSON.stringify(results)}`);
  assert.strictEqual(count(409), 10, 'exactly 10 joins get 409');
  const g = await api(b.base, 'GET', `/api/sessions/${s.session_id}`);
  assert.strictEqual(g.json.participant_count, 50);
}

async function endOnOneClosesOther(a, b) {
  const s = await session(a.base);
  const dave = new Client('Dave', await join(a.base, s.session_id, 'Dave'));
  const erin = new Client('Erin', await join(a.base, s.session_id, 'Erin'));
  await dave.connect(a, s.session_id);
  await erin.connect(b, s.session_id);
  const ended = await api(a.base, 'DELETE', `/api/sessions/${s.session_id}`, undefined, s.creator_token);
  assert.strictEqual(ended.status, 204);
  for (const c of [dave, erin]) {
    const ev = await until(`${c.name} to get session_ended`, () => c.seen('session_ended')[0]);
    assert.deepStrictEqual(ev.payload, { reason: 'ended_by_creator' });
    await until(`${c.name}'s channel to close`, () => c.channelClosed);
  }
  await sleep(300);
  for (const c of [dave, erin]) assert.strictEqual(c.seen('session_ended').length, 1, `${c.name} got session_ended once`);
  dave.close();
  erin.close();
}

async function rawSocket(replica, token, topic) {
  const ws = new WebSocket(`ws://127.0.0.1:${replica.port}/socket/websocket?vsn=2.0.0&token=${token}`);
  const frames = [];
  ws.on('message', (m) => frames.push(JSON.parse(m.toString())));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify(['1', '1', topic, 'phx_join', {}]));
  await until('a raw socket to join', () => frames.some((f) => f[3] === 'phx_reply' && f[1] === '1'));
  return { ws, frames };
}

async function busyElsewhereIsNotInactive(redis) {
  const env = { SESSION_INACTIVITY_SECONDS: '4' };
  const [a, b] = await Promise.all([Replica.start('inactive-a', redis, env), Replica.start('inactive-b', redis, env)]);
  try {
    const s = await session(a.base);
    const topic = `location:${s.session_id}`;
    // A socket joins on A and goes: A's session actor lingers with no local activity at all.
    const visitor = await join(a.base, s.session_id, 'Visitor');
    const v = await rawSocket(a, visitor.websocket_token, topic);
    v.ws.close();
    // Busy is active on B only (raw, so no heartbeats once it stops pushing).
    const busy = await join(b.base, s.session_id, 'Busy');
    const bz = await rawSocket(b, busy.websocket_token, topic);
    const started = Date.now();
    let ref = 2;
    while (Date.now() - started < 9000) {
      bz.ws.send(JSON.stringify(['1', String(ref++), topic, 'location_update', { lat: 1, lng: 1 }]));
      await sleep(500);
    }
    assert.ok(!bz.frames.some((f) => f[3] === 'session_ended'), 'a session busy on B was ended for inactivity');
    for (const r of [a, b]) {
      const g = await api(r.base, 'GET', `/api/sessions/${s.session_id}`);
      assert.strictEqual(g.json.is_active, true, `${r.name} calls a session busy on B inactive`);
    }
    // Busy goes quiet: the session ends for inactivity, once.
    const quiet = Date.now();
    await until('session_ended after the session went quiet', () => bz.frames.some((f) => f[3] === 'session_ended'), 8000);
    console.log(`  ended ${((Date.now() - quiet) / 1000).toFixed(1)} s after the last frame (limit 4 s)`);
    await sleep(500);
    const ended = bz.frames.filter((f) => f[3] === 'session_ended');
    assert.strictEqual(ended.length, 1);
    assert.deepStrictEqual(ended[0][4], { reason: 'inactive' });
    const g = await api(a.base, 'GET', `/api/sessions/${s.session_id}`);
    assert.strictEqual(g.json.is_active, false);
    bz.ws.close();
  } finally {
    a.proc.kill('SIGKILL');
    b.proc.kill('SIGKILL');
  }
}

async function killNineAndReconnect(a, b) {
  const s = await session(a.base);
  const frank = new Client('Frank', await join(a.base, s.session_id, 'Frank'));
  const gina = new Client('Gina', await join(a.base, s.session_id, 'Gina'));
  const hank = new Client('Hank', await join(a.base, s.session_id, 'Hank'));
  await frank.connect(a, s.session_id);
  await gina.connect(b, s.session_id);
  await hank.connect(b, s.session_id);
  const all = [frank.userId, gina.userId, hank.userId].sort();
  await until("Frank's Presence to list all three", () => JSON.stringify(frank.online()) === JSON.stringify(all));
  await b.kill9();
  await until("Gina's socket to notice B died", () => gina.closes.length > 0);
  // Gina reconnects to A and resumes; Hank does not come back.
  gina.close();
  const snapshot = await gina.connect(a, s.session_id);
  assert.ok(snapshot.participants.some((p) => p.user_id === frank.userId));
  await gina.push('location_update', { lat: 33.3, lng: 44.4 });
  await expectLocation(frank, gina, 33.3);
  await frank.push('location_update', { lat: 55.5, lng: 66.6 });
  await expectLocation(gina, frank, 55.5);
  const t0 = Date.now();
  await until("Hank (held by the dead replica) to vanish from Frank's Presence", () => !frank.online().includes(hank.userId), 60000, 200);
  console.log(`  dead replica's Presence vanished after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.ok(frank.online().includes(gina.userId), 'Gina, reconnected to A, is online');
  frank.close();
  gina.close();
  hank.close();
}

async function redisRestart(a, b, redis) {
  const s = await session(a.base);
  const ivy = new Client('Ivy', await join(a.base, s.session_id, 'Ivy'));
  const jack = new Client('Jack', await join(a.base, s.session_id, 'Jack'));
  const kim = new Client('Kim', await join(a.base, s.session_id, 'Kim'));
  await ivy.connect(a, s.session_id);
  await kim.connect(a, s.session_id);
  await jack.connect(b, s.session_id);
  await ivy.push('location_update', { lat: 1.25, lng: 1 });
  await expectLocation(jack, ivy, 1.25);

  await redis.down();
  const down = Date.now();
  await until('A readiness 503 with Redis down', async () => (await status(a.base, '/health/ready')) === 503, 5000, 100);
  console.log(`  readiness 503 ${((Date.now() - down) / 1000).toFixed(1)} s after Redis went down`);
  // Same-replica delivery goes on without Redis.
  await ivy.push('location_update', { lat: 2.25, lng: 1 });
  await expectLocation(kim, ivy, 2.25);

  await redis.up();
  const up = Date.now();
  for (const r of [a, b]) {
    await until(`${r.name} readiness 200 after Redis returned`, async () => (await status(r.base, '/health/ready')) === 200, 10000, 100);
  }
  console.log(`  readiness 200 ${((Date.now() - up) / 1000).toFixed(1)} s after Redis returned`);
  // Fan-out across replicas resumes once the bus has resubscribed.
  let lat = 3;
  await until(
    'cross-replica fan-out to resume',
    async () => {
      lat += 0.001;
      await ivy.push('location_update', { lat, lng: 1 }).catch(() => {});
      await sleep(150);
      return jack.seen('location_update', (p) => p.user_id === ivy.userId && p.lat >= 3).length > 0;
    },
    10000,
    50,
  );
  const metrics = await (await fetch(`${a.base}/metrics`)).text();
  assert.match(metrics, /location_sharing_pubsub_reconnects_total [1-9]/, 'the reconnect is counted');
  assert.match(metrics, /location_sharing_pubsub_connected 1/);
  for (const c of [ivy, jack, kim]) c.close();
}

async function drain(redis) {
  const env = { SHUTDOWN_GRACE_SECONDS: '9' };
  const r = await Replica.start('drain', redis, env);
  const s = await session(r.base);
  const clients = [];
  for (let i = 0; i < 12; i++) {
    const c = new Client(`d${i}`, await join(r.base, s.session_id, `d${i}`));
    await c.connect(r, s.session_id);
    clients.push(c);
  }
  const sent = Date.now();
  r.term();
  await until('readiness 503 after SIGTERM', async () => (await status(r.base, '/health/ready')) === 503, 1000, 50);
  const refused = await new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${r.port}/socket/websocket?vsn=2.0.0&token=${clients[0].token}`);
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
    ws.on('open', () => resolve('opened'));
    ws.on('error', () => resolve('error'));
  });
  assert.strictEqual(refused, 503, 'new sockets are refused while draining');
  await until('every socket to close', () => clients.every((c) => c.closes.length > 0), 9000, 50);
  const closes = clients.map((c) => c.closes[0]);
  assert.ok(closes.every((c) => c.code === 1012), `close codes: ${closes.map((c) => c.code)}`);
  const times = closes.map((c) => c.at - sent).sort((x, y) => x - y);
  console.log(`  drain closes at ${times.join(', ')} ms`);
  assert.ok(times[times.length - 1] - times[0] >= 1000, 'closes are spread over time, not all at once');
  const exit = await r.exited;
  const took = exit.at - sent;
  console.log(`  exited ${took} ms after SIGTERM (code ${exit.code}, signal ${exit.signal})`);
  assert.ok(took <= 9000, 'exits within SHUTDOWN_GRACE_SECONDS');
  assert.strictEqual(exit.code, 0);
  for (const c of clients) c.close();
}

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  passed += 1;
  console.log(`PASS ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

async function main() {
  const redis = await Redis.start();
  let [a, b] = await Promise.all([Replica.start('a', redis), Replica.start('b', redis)]);
  await step('cluster.cross_replica_delivery_presence_and_removal', () => crossReplica(a, b));
  await step('cluster.cap_with_joins_split_over_replicas', () => capAcrossReplicas(a, b));
  await step('cluster.end_on_one_replica_closes_the_other', () => endOnOneClosesOther(a, b));
  await step('cluster.busy_elsewhere_is_not_inactive', () => busyElsewhereIsNotInactive(redis));
  await step('cluster.kill_9_and_reconnect', () => killNineAndReconnect(a, b));
  b = await Replica.start('b2', redis);
  await step('cluster.redis_restart', () => redisRestart(a, b, redis));
  await step('cluster.sigterm_drain', () => drain(redis));
}

function cleanup() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

main().then(
  () => {
    cleanup();
    console.log(`cluster: ${passed} passed, 0 failed`);
    process.exit(0);
  },
  (e) => {
    cleanup();
    console.error(`cluster: FAILED: ${e.stack || e.message}`);
    console.error(`(replica logs in ${work})`);
    try {
      for (const f of fs.readdirSync(work)) {
        const lines = fs.readFileSync(path.join(work, f), 'utf8').split('\n').filter((l) => !l.includes(' access]'));
        console.error(`--- ${f} (last lines)\n${lines.slice(-15).join('\n')}`);
      }
    } catch {
      // no logs
    }
    console.log(`cluster: ${passed} passed, 1 failed`);
    process.exit(1);
  },
);
