'use strict';
// What the multi-replica end-to-end tests (cluster.js, redis_cluster.js) share: free ports and
// polling, the server binary started as a replica, the REST calls, a phoenix client wrapper, the
// scenarios both run against their own kind of Redis, and the PASS/FAIL reporting that kills
// every child the test started whatever happens.
//
// Loading this file does nothing; a test calls harness(name, binary, databaseUrl) for the parts
// that need its binary, its database and its own temp dir.

const assert = require('assert');
const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');
const { Socket, Presence } = require('phoenix');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

// ---------------------------------------------------------------------- HTTP

async function api(base, method, p, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

// 0 when the server does not answer at all, so pollers can wait for a status without a try.
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

// Every series of a Prometheus metric as { labels, value } (labels as printed, '' when none).
// The server prefixes its metrics with `location_sharing_`; the bare name is accepted too.
function metricSeries(text, name) {
  const series = new RegExp(`^(?:location_sharing_)?${name}(\\{[^}]*\\})? (\\S+)$`);
  const out = [];
  for (const line of text.split('\n')) {
    const m = series.exec(line);
    if (m) out.push({ labels: m[1] || '', value: Number(m[2]) });
  }
  return out;
}

// The sum of a metric over its labels, or undefined when it is absent (a counter vector with no
// label set yet is not printed at all).
function metric(text, name) {
  const series = metricSeries(text, name);
  return series.length ? series.reduce((sum, s) => sum + s.value, 0) : undefined;
}

async function scrape(replica) {
  const res = await fetch(`${replica.base}/metrics`, { signal: AbortSignal.timeout(3000) });
  return res.text();
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

  // Resolves with the join reply's snapshot. The client never reconnects or rejoins by itself
  // (60 s): a test decides where and when a client comes back.
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
      this.channel.on(event, (payload) => this.events.push({ event, payload, at: Date.now() }));
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

async function expectLocation(to, from, lat, timeoutMs) {
  await until(
    `${to.name} to get ${from.name}'s location ${lat}`,
    () => to.seen('location_update', (p) => p.user_id === from.userId && p.lat === lat).length,
    timeoutMs,
  );
}

// ------------------------------------------------------- scenarios shared by both tests
// Two replicas a and b on one Redis (cluster.js) or one Redis Cluster (redis_cluster.js) must
// behave as one server.

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

// ------------------------------------------------------------------ a test run

// One test's processes, temp dir and tally. `name` prefixes the closing line
// ("cluster: 7 passed, 0 failed"), which CI reads.
function harness(name, binary, databaseUrl) {
  const JWT_SECRET = `${name}-${Date.now()}-secret-0123456789abcdef`;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `ls-${name}-`));
  const children = new Set();
  let passed = 0;

  // Every process a test starts goes through here, so that no exit path leaves one running.
  function track(proc) {
    children.add(proc);
    proc.once('exit', () => children.delete(proc));
    return proc;
  }

  function killAll() {
    for (const c of children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  const keep = process.env.E2E_KEEP_WORK === '1';
  function removeWork() {
    try {
      // Retried: a process killed a moment ago may still be closing a file in there.
      fs.rmSync(work, { recursive: true, force: true, maxRetries: 5 });
    } catch (e) {
      console.error(`(could not remove ${work}: ${e.message})`);
    }
  }

  // Also when the test dies some other way (an exception thrown in an event handler, exit()):
  // kill() is synchronous, so it works in an 'exit' handler.
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      killAll();
      if (!keep) removeWork();
      process.exit(130);
    });
  }

  class Replica {
    // `redisUrl` is the REDIS_URL as given to the server: one URL, or cluster seeds
    // comma-separated.
    static async start(replicaName, redisUrl, env = {}) {
      const r = new Replica(replicaName, await freePort(), redisUrl, env);
      await r.up();
      return r;
    }

    constructor(replicaName, port, redisUrl, env) {
      this.name = replicaName;
      this.port = port;
      this.base = `http://127.0.0.1:${port}`;
      this.redisUrl = redisUrl;
      this.env = env;
      this.log = path.join(work, `${replicaName}.log`);
    }

    async up() {
      const log = fs.openSync(this.log, 'a');
      this.proc = spawn(binary, [], {
        cwd: work,
        stdio: ['ignore', log, log],
        env: {
          ...process.env,
          HOST: '127.0.0.1',
          PORT: String(this.port),
          PUBLIC_URL: this.base,
          DATABASE_URL: databaseUrl,
          REDIS_URL: this.redisUrl,
          JWT_SECRET,
          RUST_LOG: 'info',
          // The abuse limits (SPEC §11) as these tests need them: every client is 127.0.0.1,
          // and the defaults hold for what they do (a handful of sessions, joins and sockets).
          CREATE_SESSIONS_PER_MINUTE: '60',
          JOINS_PER_MINUTE: '300',
          SOCKET_CONNECTS_PER_MINUTE: '600',
          MAX_SOCKETS_PER_ADDRESS: '1000',
          MAX_SOCKETS_PER_PARTICIPANT: '5',
          ...this.env,
        },
      });
      fs.closeSync(log);
      track(this.proc);
      this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
      await until(
        `${this.name} to serve /health`,
        async () => {
          // A server that refused its configuration is not worth waiting for.
          if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
            throw new Error(`${this.name} exited at start (${this.proc.exitCode ?? this.proc.signalCode}); see ${this.name}.log`);
          }
          return (await status(this.base, '/health')) === 200;
        },
        10000,
        50,
      );
    }

    logText() {
      try {
        return fs.readFileSync(this.log, 'utf8');
      } catch {
        return '';
      }
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

  async function step(stepName, fn) {
    const t0 = Date.now();
    await fn();
    passed += 1;
    console.log(`PASS ${stepName} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }

  // The tail of every log in the temp dir, without access lines (they say nothing a test
  // failure needs and would push out the lines that do). `lines` is a count, or a function of
  // the file name giving one.
  function dumpLogs(lines) {
    try {
      for (const f of fs.readdirSync(work).filter((f) => f.endsWith('.log')).sort()) {
        const text = fs.readFileSync(path.join(work, f), 'utf8').split('\n').filter((l) => !l.includes(' access]'));
        const n = typeof lines === 'function' ? lines(f) : lines;
        console.error(`--- ${f} (last lines)\n${text.slice(-n).join('\n')}`);
      }
    } catch {
      // no logs
    }
  }

  // Runs the test's main(), prints the closing line and exits: 0 when every step passed, 1 with
  // the logs' tails on the first failure. Every child is killed first, so the logs are whole.
  // The temp dir goes at the end of a passing run; a failing one keeps it (its path is printed)
  // unless `removeWork`. E2E_KEEP_WORK=1 keeps it in any case, to read whole logs.
  function run(main, { logLines = 15, removeWork: remove = false } = {}) {
    main()
      .then(
        () => {
          killAll();
          console.log(`${name}: ${passed} passed, 0 failed`);
          return 0;
        },
        (e) => {
          killAll();
          console.error(`${name}: FAILED: ${e.stack || e.message}`);
          if (!remove && !keep) console.error(`(replica logs in ${work})`);
          dumpLogs(logLines);
          console.log(`${name}: ${passed} passed, 1 failed`);
          return 1;
        },
      )
      .then((code) => {
        if (keep) console.error(`(temp dir kept: ${work})`);
        else if (remove || code === 0) removeWork();
        process.exit(code);
      });
  }

  return { JWT_SECRET, work, track, Replica, step, run };
}

module.exports = {
  harness,
  sleep,
  freePort,
  until,
  api,
  status,
  session,
  join,
  metric,
  metricSeries,
  scrape,
  Client,
  expectLocation,
  crossReplica,
  capAcrossReplicas,
  endOnOneClosesOther,
};
