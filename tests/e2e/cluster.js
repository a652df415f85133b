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
// spread over time, exit within the grace). The helpers, and the first three scenarios, are
// harness.js's: redis_cluster.js runs those on a Redis Cluster.

const assert = require('assert');
const { spawn } = require('child_process');
const net = require('net');
const WebSocket = require('ws');
const {
  harness,
  sleep,
  freePort,
  until,
  api,
  status,
  session,
  join,
  Client,
  expectLocation,
  crossReplica,
  capAcrossReplicas,
  endOnOneClosesOther,
} = require('./harness');

const [binary, databaseUrl] = process.argv.slice(2);
if (!binary || !databaseUrl) {
  console.error('usage: node cluster.js BINARY DATABASE_URL');
  process.exit(2);
}
const { track, Replica, step, run } = harness('cluster', binary, databaseUrl);

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
    track(this.proc);
    await until('redis-server to answer', () => pingRedis(this.port), 5000, 50);
  }

  async down() {
    this.proc.kill('SIGKILL');
    await new Promise((r) => this.proc.once('exit', r));
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

// ----------------------------------------------------------------- scenarios

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
  const [a, b] = await Promise.all([Replica.start('inactive-a', redis.url, env), Replica.start('inactive-b', redis.url, env)]);
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
  const r = await Replica.start('drain', redis.url, env);
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

async function main() {
  const redis = await Redis.start();
  let [a, b] = await Promise.all([Replica.start('a', redis.url), Replica.start('b', redis.url)]);
  await step('cluster.cross_replica_delivery_presence_and_removal', () => crossReplica(a, b));
  await step('cluster.cap_with_joins_split_over_replicas', () => capAcrossReplicas(a, b));
  await step('cluster.end_on_one_replica_closes_the_other', () => endOnOneClosesOther(a, b));
  await step('cluster.busy_elsewhere_is_not_inactive', () => busyElsewhereIsNotInactive(redis));
  await step('cluster.kill_9_and_reconnect', () => killNineAndReconnect(a, b));
  b = await Replica.start('b2', redis.url);
  await step('cluster.redis_restart', () => redisRestart(a, b, redis));
  await step('cluster.sigterm_drain', () => drain(redis));
}

run(main);
