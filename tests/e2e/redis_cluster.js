'use strict';
// Replicas on a real Redis Cluster (SPEC §12), driven with the official phoenix client. Starts
// its own six-node cluster (three primaries, one replica each) from redis-server in a temp dir,
// and two replicas of the server binary it is given, seeded with different nodes:
//
//   node redis_cluster.js path/to/location-sharing postgres://postgres@127.0.0.1:5432/test
//
// Scenarios: cross-replica delivery and Presence; sessions on every shard, each delivering
// across replicas through sharded pub/sub (one SSUBSCRIBE per replica on the owning primary,
// no classic subscription anywhere) with its keys in its own slot on that primary; bursts in a
// session of every shard at once (batches over several slots, all delivered in order); the cap and
// an end across replicas; no store error in all that; SIGKILL of the primary of a busy session
// (its replica promoted, fan-out and readiness back within 10 s, the resubscription counted);
// live migration of a busy session's slot to another primary (Redis unsubscribes the slot's
// subscribers; fan-out back within 10 s on the new owner, positions migrated with the slot).
// Store and Redis error counters are printed after each phase. Every redis-server and replica
// it started is killed at the end, pass or fail, and its temp dir removed (E2E_KEEP_WORK=1
// keeps it, to read whole logs).

const assert = require('assert');
const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');
const {
  harness,
  sleep,
  freePort,
  until,
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
} = require('./harness');

const CLUSTER_SLOTS = 16384;
// SPEC §12: after a failover or a slot move, fan-out across replicas resumes within this.
const RESUME_MS = 10000;

// ------------------------------------------------------------- RESP by hand
// The test's own look-ups at the nodes (CLUSTER …, PUBSUB SHARDNUMSUB, MIGRATE) go straight to
// one node each: a cluster client would follow redirects and hide which node answered.

function encode(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = String(a);
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  }
  return out;
}

// One RESP2 reply from buf at i: { value, next }, or undefined while it is incomplete. An error
// reply becomes an Error value, so that a caller can tell `-MOVED …` from a string.
function parseReply(buf, i) {
  const eol = buf.indexOf('\r\n', i);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[i]);
  const line = buf.toString('utf8', i + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, next };
    case '-':
      return { value: new Error(line), next };
    case ':':
      return { value: Number(line), next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, next };
      if (buf.length < next + n + 2) return undefined;
      return { value: buf.toString('utf8', next, next + n), next: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, next };
      const items = [];
      let at = next;
      for (let k = 0; k < n; k++) {
        const item = parseReply(buf, at);
        if (!item) return undefined;
        items.push(item.value);
        at = item.next;
      }
      return { value: items, next: at };
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}

// One command on a fresh connection to one node; rejects on an error reply, a refused
// connection or no answer within 5 s.
function redis(port, ...args) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const fail = (why) => {
      s.destroy();
      reject(new Error(`redis :${port} ${args.join(' ')}: ${why}`));
    };
    s.setTimeout(5000, () => fail('no answer within 5 s'));
    s.on('error', (e) => fail(e.message));
    s.on('connect', () => s.write(encode(args)));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parseReply(buf, 0);
      if (!r) return;
      s.destroy();
      if (r.value instanceof Error) fail(r.value.message);
      else resolve(r.value);
    });
  });
}

// ------------------------------------------------------------ the Redis Cluster

class RedisNode {
  constructor(port, busPort, dir) {
    this.port = port;
    this.busPort = busPort;
    this.dir = dir;
    this.alive = false;
  }

  start(track, logDir) {
    const args = [
      '--port', String(this.port),
      // Redis' default bus port is port + 10000, which for a port from the ephemeral range
      // can lie past 65535: the bus gets a free port of its own.
      '--cluster-port', String(this.busPort),
      '--cluster-enabled', 'yes',
      '--cluster-config-file', `nodes-${this.port}.conf`,
      '--cluster-node-timeout', '1000',
      '--save', '',
      '--appendonly', 'no',
      // Replicas sync over the socket at once, instead of after the default 5 s wait for more
      // replicas to share one transfer.
      '--repl-diskless-sync-delay', '0',
      // CLUSTER SLOTS leaves out a replica until it has a replication offset, which on an empty
      // primary only its pings advance: every second, not every ten.
      '--repl-ping-replica-period', '1',
      '--bind', '127.0.0.1',
      '--dir', this.dir,
      '--logfile', path.join(logDir, `redis-${this.port}.log`),
    ];
    this.proc = track(spawn('redis-server', args, { stdio: 'ignore' }));
    this.alive = true;
    this.proc.once('exit', () => {
      this.alive = false;
    });
  }

  kill9() {
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGKILL');
    return exited;
  }

  send(...args) {
    return redis(this.port, ...args);
  }

  toString() {
    return `:${this.port}`;
  }
}

// `CLUSTER SLOTS` as [{ start, end, primary: port, replicas: [port] }], by first slot.
function slotRanges(reply) {
  return reply
    .map(([start, end, primary, ...replicas]) => ({ start, end, primary: primary[1], replicas: replicas.map((r) => r[1]).sort() }))
    .sort((x, y) => x.start - y.start);
}

class RedisCluster {
  static async start(track, work, size = 6) {
    const dir = path.join(work, 'redis');
    fs.mkdirSync(dir);
    // Two ports a node (clients, cluster bus), all distinct: the OS may hand a port just
    // released by freePort() out again.
    const ports = new Set();
    while (ports.size < 2 * size) ports.add(await freePort());
    const [clientPorts, busPorts] = [[...ports].slice(0, size), [...ports].slice(size)];
    const nodes = clientPorts.map((p, i) => new RedisNode(p, busPorts[i], dir));
    for (const n of nodes) n.start(track, work);
    for (const n of nodes) await until(`redis-server ${n} to answer`, () => n.send('PING').catch(() => false), 5000, 50);
    for (const n of nodes) n.id = await n.send('CLUSTER', 'MYID');
    const cluster = new RedisCluster(nodes);
    await cluster.create(track);
    await cluster.settled();
    return cluster;
  }

  constructor(nodes) {
    this.nodes = nodes;
  }

  async create(track) {
    const args = ['--cluster', 'create', ...this.nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'];
    const proc = track(spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    const code = await new Promise((r) => proc.once('exit', r));
    if (code !== 0) throw new Error(`redis-cli --cluster create exited with ${code}:\n${out}`);
  }

  alive() {
    return this.nodes.filter((n) => n.alive);
  }

  byPort(port) {
    return this.nodes.find((n) => n.port === port);
  }

  // Until every live node says cluster_state:ok and they all hand out one and the same slot
  // map, covering every slot with live primaries and listing every live node: only then does a
  // client see the same cluster whichever node it asks.
  async settled(timeoutMs = 15000) {
    let why = '';
    const settled = async () => {
      const maps = [];
      for (const n of this.alive()) {
        const info = await n.send('CLUSTER', 'INFO');
        if (!/cluster_state:ok/.test(info)) return (why = `${n} ${info.split('\r\n')[0]}`), false;
        maps.push(JSON.stringify(slotRanges(await n.send('CLUSTER', 'SLOTS'))));
      }
      if (new Set(maps).size !== 1) return (why = 'the nodes disagree on the slot map'), false;
      const ranges = JSON.parse(maps[0]);
      const covered = ranges.reduce((sum, r) => sum + r.end - r.start + 1, 0);
      if (covered !== CLUSTER_SLOTS) return (why = `${covered} slots covered`), false;
      if (!ranges.every((r) => this.byPort(r.primary).alive)) return (why = 'a dead primary still owns slots'), false;
      // A replica shows in the map only once it has synced with its primary.
      const listed = new Set(ranges.flatMap((r) => [r.primary, ...r.replicas]));
      const missing = this.alive().filter((n) => !listed.has(n.port));
      if (missing.length) return (why = `${missing.join(', ')} not in the slot map yet`), false;
      return true;
    };
    await until('the Redis Cluster to settle', () => settled().catch((e) => ((why = e.message), false)), timeoutMs, 100).catch((e) => {
      throw new Error(`${e.message} (${why})`);
    });
  }

  async slots() {
    return slotRanges(await this.alive()[0].send('CLUSTER', 'SLOTS'));
  }

  async primaries() {
    const ports = [...new Set((await this.slots()).map((r) => r.primary))];
    return ports.map((p) => this.byPort(p));
  }

  // The slot of a session: its id is the hash tag of each of its keys and of its bus channel.
  keyslot(sessionId) {
    return this.alive()[0].send('CLUSTER', 'KEYSLOT', sessionId);
  }

  async ownerOf(slot) {
    const range = (await this.slots()).find((r) => r.start <= slot && slot <= r.end);
    return this.byPort(range.primary);
  }

  // The flags `asker` holds for `node` in CLUSTER NODES (myself, master, slave, fail, fail?, …).
  async flags(asker, node) {
    const line = (await asker.send('CLUSTER', 'NODES')).split('\n').find((l) => l.startsWith(`${node.id} `));
    return line ? line.split(' ')[2].split(',') : [];
  }

  async replicasOf(primary) {
    const ranges = (await this.slots()).filter((r) => r.primary === primary.port);
    return [...new Set(ranges.flatMap((r) => r.replicas))].map((p) => this.byPort(p));
  }

  // Shard-channel subscribers of `channel` on each live node, as "port=count" (for messages).
  async shardSubscribers(channel) {
    const counts = [];
    for (const n of this.alive()) counts.push(`${n.port}=${(await n.send('PUBSUB', 'SHARDNUMSUB', channel))[1]}`);
    return counts.join(' ');
  }

  // Classic (non-sharded) subscribers of `channel` over every live node: a classic PUBLISH goes
  // to every node of a cluster, which is what sharded pub/sub is there to avoid.
  async classicSubscribers(channel) {
    let sum = 0;
    for (const n of this.alive()) sum += (await n.send('PUBSUB', 'NUMSUB', channel))[1];
    return sum;
  }

  // The standard live resharding of one slot, as `redis-cli --cluster reshard` does it: mark it
  // importing on the target and migrating on the source, MIGRATE its keys until none is left
  // (the server may write new ones meanwhile: the source sends those writes to the target with
  // ASK, so none lands behind the loop), then hand the slot to the target on every primary.
  // Returns how many keys moved.
  async migrateSlot(slot, from, to) {
    await to.send('CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id);
    await from.send('CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id);
    let moved = 0;
    for (;;) {
      const keys = await from.send('CLUSTER', 'GETKEYSINSLOT', slot, 100);
      if (keys.length === 0) break;
      await from.send('MIGRATE', '127.0.0.1', to.port, '', 0, 5000, 'KEYS', ...keys);
      moved += keys.length;
    }
    // The target first, so that it owns the slot before the source redirects there for good.
    await to.send('CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
    await from.send('CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
    for (const p of await this.primaries()) {
      if (p !== to && p !== from) await p.send('CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
    }
    return moved;
  }
}

const busChannel = (sid) => `ls:bus:{${sid}}`;
const keyPrefix = (sid) => `ls:{${sid}}:`;

// ------------------------------------------------------------------ a busy session

// Two participants, one per replica, each sending a fresh position every 200 ms (within
// MAX_UPDATES_PER_SECOND): the traffic a failover or a slot move has to survive. Every latitude
// is unique, so what arrives tells when it was sent.
class Busy {
  static async start(a, b, names) {
    const s = await session(a.base);
    const busy = new Busy(s);
    busy.left = new Client(names[0], await join(a.base, s.session_id, names[0]));
    busy.right = new Client(names[1], await join(b.base, s.session_id, names[1]));
    await busy.left.connect(a, s.session_id);
    await busy.right.connect(b, s.session_id);
    busy.timer = setInterval(() => busy.tick(), 200);
    await busy.flowing(Date.now(), 5000);
    return busy;
  }

  constructor(s) {
    this.s = s;
    this.sid = s.session_id;
    this.sentAt = new Map();
    this.acked = new Map();
    this.inFlight = new Set();
    this.refused = 0;
    this.n = 0;
  }

  tick() {
    for (const c of [this.left, this.right]) {
      this.n += 1;
      const lat = this.n / 1000;
      this.sentAt.set(lat, Date.now());
      const p = c
        .push('location_update', { lat, lng: 1 })
        .then(() => this.acked.set(c.userId, Math.max(this.acked.get(c.userId) || 0, lat)))
        .catch(() => {
          // A refusal or a timeout while Redis moves: the traffic goes on; counted for the report.
          this.refused += 1;
        })
        .finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  // The first time `to` received a position from `from` that was sent at `since` or later.
  firstSince(to, from, since) {
    const e = to.events.find((e) => e.event === 'location_update' && e.payload.user_id === from.userId && this.sentAt.get(e.payload.lat) >= since);
    return e && e.at;
  }

  // Until positions sent at `since` or later crossed both ways; resolves with when the later
  // of the two directions got its first one.
  async flowing(since, timeoutMs) {
    return until(
      `positions sent from ${new Date(since).toISOString()} on to cross replicas both ways in ${this.sid}`,
      () => {
        const there = this.firstSince(this.right, this.left, since);
        const back = this.firstSince(this.left, this.right, since);
        return there && back && Math.max(there, back);
      },
      timeoutMs,
    );
  }

  // Stops the traffic and waits for every push's reply, so that `acked` holds each participant's
  // last stored position.
  async stop() {
    clearInterval(this.timer);
    await Promise.all([...this.inFlight]);
  }

  close() {
    clearInterval(this.timer);
    this.left.close();
    this.right.close();
  }
}

// ------------------------------------------------------------------ the server

async function ready(replica) {
  return (await status(replica.base, '/health/ready')) === 200;
}

// `/health/ready` polled every 100 ms from now on, to tell whether (and for how long) a
// replica reported an outage.
function watchReadiness(replica) {
  const w = { notReadyMs: 0, codes: new Set(), stop: false };
  w.done = (async () => {
    while (!w.stop) {
      const t = Date.now();
      const code = await status(replica.base, '/health/ready');
      if (code !== 200) {
        w.codes.add(code);
        w.notReadyMs += Math.max(100, Date.now() - t);
      }
      await sleep(100);
    }
  })();
  return w;
}

// Every replica's /metrics text, by replica name.
async function scrapeAll(replicas) {
  const out = {};
  for (const r of replicas) out[r.name] = await scrape(r);
  return out;
}

// How each series of a counter grew from `before` to `after` (one replica's texts), as
// "{label} +n" for those that did; '' when none did.
function growth(before, after, name) {
  const was = new Map(metricSeries(before, name).map((s) => [s.labels, s.value]));
  return metricSeries(after, name)
    .filter((s) => s.value > (was.get(s.labels) || 0))
    .map((s) => `${s.labels ? `${s.labels} ` : ''}+${s.value - (was.get(s.labels) || 0)}`)
    .join(', ');
}

// The store and Redis error counters of every replica: totals (redis_errors_total may be absent,
// which is zero), and what grew since `since` when given.
function describeErrors(now, since) {
  const counters = ['store_errors_total', 'redis_errors_total'];
  return Object.entries(now)
    .map(([name, text]) => {
      const totals = counters.map((c) => `${c} ${metric(text, c) ?? 'absent'}`).join(', ');
      if (!since) return `${name}: ${totals}`;
      const grown = counters.map((c) => [c, growth(since[name], text, c)]).filter(([, g]) => g);
      return `${name}: ${totals} (grew: ${grown.map(([c, g]) => `${c} ${g}`).join('; ') || 'none'})`;
    })
    .join('\n    ');
}

// What a lost cross-replica message leaves to look at: who is subscribed to the session's
// channel where, and what each replica's bus says it did.
async function busDiagnostics(cluster, sid, replicas) {
  const owner = await cluster.ownerOf(await cluster.keyslot(sid));
  const counters = ['pubsub_published_total', 'pubsub_skipped_total', 'pubsub_received_total', 'pubsub_dropped_total', 'pubsub_refused_total', 'pubsub_connected'];
  const texts = await scrapeAll(replicas);
  const perReplica = Object.entries(texts).map(([name, t]) => `${name} ${counters.map((c) => `${c.replace(/_total$/, '')}=${metric(t, c)}`).join(' ')}`);
  return `owner ${owner}; SHARDNUMSUB per node ${await cluster.shardSubscribers(busChannel(sid))}; ${perReplica.join('; ')}`;
}

// ----------------------------------------------------------------- scenarios

// Sessions until each primary owns the slot of one; in each, delivery across replicas, the
// bus on the owning primary's shard channels, the keys in the session's slot there.
async function everyShard(cluster, a, b) {
  const primaries = await cluster.primaries();
  const byOwner = new Map();
  for (let tries = 0; byOwner.size < primaries.length; tries++) {
    assert.ok(tries < 40, `40 sessions did not land on all ${primaries.length} primaries`);
    const s = await session(a.base);
    const slot = await cluster.keyslot(s.session_id);
    const owner = await cluster.ownerOf(slot);
    if (!byOwner.has(owner)) byOwner.set(owner, { s, slot });
  }
  for (const [owner, { s, slot }] of byOwner) {
    const sid = s.session_id;
    const fay = new Client('Fay', await join(a.base, sid, 'Fay'));
    const gus = new Client('Gus', await join(b.base, sid, 'Gus'));
    await fay.connect(a, sid);
    await gus.connect(b, sid);
    await fay.push('location_update', { lat: 12.5, lng: 1 });
    await gus.push('location_update', { lat: 13.5, lng: 1 });
    await expectLocation(gus, fay, 12.5).catch(async (e) => {
      throw new Error(`${e.message}; ${await busDiagnostics(cluster, sid, [a, b])}`);
    });
    await expectLocation(fay, gus, 13.5).catch(async (e) => {
      throw new Error(`${e.message}; ${await busDiagnostics(cluster, sid, [a, b])}`);
    });
    await until(`Fay's Presence to list Gus (${sid})`, () => fay.online().includes(gus.userId));

    // One shard subscription per replica holding the session, on the primary owning its slot.
    const channel = busChannel(sid);
    await until(
      `PUBSUB SHARDNUMSUB ${channel} on ${owner} to be 2`,
      async () => (await owner.send('PUBSUB', 'SHARDNUMSUB', channel))[1] === 2,
    ).catch(async (e) => {
      throw new Error(`${e.message}; per node: ${await cluster.shardSubscribers(channel)}`);
    });
    assert.strictEqual(await cluster.classicSubscribers(channel), 0, `a classic SUBSCRIBE to ${channel} somewhere`);

    // The session's keys, all in its slot on the owner; none of that slot elsewhere.
    const wanted = [`${keyPrefix(sid)}locs`, `${keyPrefix(sid)}loc:${fay.userId}`, `${keyPrefix(sid)}loc:${gus.userId}`];
    const keys = await until(`${sid}'s location keys on ${owner}`, async () => {
      const inSlot = await owner.send('CLUSTER', 'GETKEYSINSLOT', slot, 1000);
      return wanted.every((k) => inSlot.includes(k)) && inSlot;
    });
    const mine = keys.filter((k) => k.includes(sid));
    assert.ok(mine.every((k) => k.startsWith(keyPrefix(sid))), `keys naming the session without its prefix: ${mine}`);
    assert.ok((await owner.send('CLUSTER', 'COUNTKEYSINSLOT', slot)) >= wanted.length);
    for (const p of primaries) {
      if (p !== owner) assert.strictEqual(await p.send('CLUSTER', 'COUNTKEYSINSLOT', slot), 0, `slot ${slot} keys on ${p} too`);
    }
    const kinds = mine.map((k) => k.slice(keyPrefix(sid).length).replace(/^loc:.*/, 'loc:…'));
    console.log(`  ${owner} slot ${slot}: 2 shard subscribers, keys ${[...new Set(kinds)].sort().join(' ')}`);
    fay.close();
    gus.close();
  }
}

async function primaryKilled(cluster, a, b) {
  const busy = await Busy.start(a, b, ['Hal', 'Ida']);
  const slot = await cluster.keyslot(busy.sid);
  const victim = await cluster.ownerOf(slot);
  const [heir] = await cluster.replicasOf(victim);
  assert.ok(heir, `${victim} has no replica to promote`);
  const metricsBefore = await Promise.all([a, b].map(scrape));
  const watches = [a, b].map(watchReadiness);

  const killedAt = Date.now();
  await victim.kill9();
  // Promoted: the heir calls itself a master and the victim failed, and the slot map agrees.
  const promoted = async () =>
    (await cluster.flags(heir, heir)).includes('master') && (await cluster.flags(heir, victim)).includes('fail') && (await cluster.ownerOf(slot)) === heir;
  await until(`${heir} to be promoted in place of ${victim} (slot ${slot})`, promoted, RESUME_MS, 100);
  const promotedAt = Date.now();
  // Fresh positions, sent after the promotion, must cross both ways by the deadline.
  const resumedAt = await busy.flowing(promotedAt, killedAt + RESUME_MS - Date.now()).catch((e) => {
    throw new Error(`fan-out did not resume within ${RESUME_MS} ms of the kill: ${e.message}`);
  });
  const since = (t) => `${((t - killedAt) / 1000).toFixed(1)} s`;
  console.log(`  killed ${victim}: ${heir} promoted after ${since(promotedAt)}, fan-out resumed after ${since(resumedAt)}`);
  for (const r of [a, b]) {
    await until(`${r.name} /health/ready to be 200 again`, () => ready(r), RESUME_MS, 100);
  }
  for (const w of watches) w.stop = true;
  await Promise.all(watches.map((w) => w.done));
  const outage = [a, b].map((r, i) => (watches[i].notReadyMs ? `${r.name} ${[...watches[i].codes].join('/')} for ~${watches[i].notReadyMs} ms` : `${r.name} stayed 200`));
  console.log(`  readiness during the failover: ${outage.join(', ')}`);

  // The resubscription is counted somewhere (on the replica(s) whose subscription was on the
  // dead primary), and the bus is connected again everywhere.
  const grown = await until(
    'pubsub_resubscriptions_total to grow on a replica',
    async () => {
      const after = await Promise.all([a, b].map(scrape));
      const g = after.map((t, i) => growth(metricsBefore[i], t, 'pubsub_resubscriptions_total'));
      return g.some(Boolean) && g;
    },
    5000,
    200,
  );
  console.log(`  pubsub_resubscriptions_total grew on a: ${grown[0] || 'no'}; b: ${grown[1] || 'no'}`);
  console.log(`  ${busy.refused} push(es) refused or timed out meanwhile`);
  for (const r of [a, b]) {
    await until(`${r.name} pubsub_connected to be 1`, async () => metric(await scrape(r), 'pubsub_connected') === 1, 5000, 200);
  }
  busy.close();
}

async function slotMigrated(cluster, a, b, replicaStart) {
  const busy = await Busy.start(a, b, ['Jo', 'Kai']);
  const metricsBefore = await Promise.all([a, b].map(scrape));
  const sid = busy.sid;
  const slot = await cluster.keyslot(sid);
  const from = await cluster.ownerOf(slot);
  const to = (await cluster.primaries()).find((p) => p !== from);
  const channel = busChannel(sid);
  await until(`2 shard subscribers of ${channel} on ${from}`, async () => (await from.send('PUBSUB', 'SHARDNUMSUB', channel))[1] === 2);
  // Lea sends one position before the move and none after: only MIGRATE can have taken it to
  // the new owner.
  const lea = new Client('Lea', await join(a.base, sid, 'Lea'));
  await lea.connect(a, sid);
  await lea.push('location_update', { lat: 77.25, lng: 7 });
  await expectLocation(busy.right, lea, 77.25);
  await until(`Lea's position on ${from}`, async () => (await from.send('EXISTS', `${keyPrefix(sid)}loc:${lea.userId}`)) === 1);

  // A second of traffic before the move and one after it, so that it happens mid-stream.
  await sleep(1000);
  const started = Date.now();
  const moved = await cluster.migrateSlot(slot, from, to);
  const handedOver = Date.now();
  const resumedAt = await busy.flowing(handedOver, RESUME_MS).catch((e) => {
    throw new Error(`fan-out did not resume within ${RESUME_MS} ms of the slot move: ${e.message}`);
  });
  await until(
    `2 shard subscribers of ${channel} on the new owner ${to}`,
    async () => (await to.send('PUBSUB', 'SHARDNUMSUB', channel))[1] === 2,
    Math.max(0, handedOver + RESUME_MS - Date.now()),
    100,
  ).catch(async (e) => {
    throw new Error(`${e.message}; per node: ${await cluster.shardSubscribers(channel)}`);
  });
  assert.strictEqual(await cluster.classicSubscribers(channel), 0);
  const since = (t) => `${((t - handedOver) / 1000).toFixed(1)} s`;
  console.log(
    `  slot ${slot} ${from} → ${to}: ${moved} key(s) in ${handedOver - started} ms, fan-out resumed after ${since(resumedAt)}, ` +
      `shard subscribers now ${await cluster.shardSubscribers(channel)}`,
  );
  const after = await Promise.all([a, b].map(scrape));
  const resubscribed = after.map((t, i) => growth(metricsBefore[i], t, 'pubsub_resubscriptions_total') || 'no');
  console.log(`  pubsub_resubscriptions_total grew on a: ${resubscribed[0]}; b: ${resubscribed[1]}; ${busy.refused} push(es) refused or timed out`);

  await sleep(1000);
  await busy.stop();
  // Positions reach the store a moment after their reply (the session actor batches them for
  // STORE_DELAY): each participant's last one, on the new owner, before anyone looks.
  for (const p of [busy.left, busy.right]) {
    const key = `${keyPrefix(sid)}loc:${p.userId}`;
    const stored = async () => JSON.parse((await to.send('GET', key)) || '{}').lat;
    await until(`${p.name}'s last position ${busy.acked.get(p.userId)} in ${key} on ${to}`, async () => (await stored()) === busy.acked.get(p.userId), 3000, 50).catch(
      async (e) => {
        throw new Error(`${e.message} (it holds ${await stored()})`);
      },
    );
  }
  // A newcomer on a replica that never held the session, seeded with the new owner only: its
  // session actor loads the positions from the store, so the snapshot shows what the cluster
  // kept, not what a or b remembers.
  const c = await replicaStart('c', `redis://127.0.0.1:${to.port}`);
  await until('c /health/ready to be 200', () => ready(c), 10000, 100);
  const mo = new Client('Mo', await join(c.base, sid, 'Mo'));
  const snapshot = await mo.connect(c, sid);
  const lat = (user) => (snapshot.locations.find((l) => l.user_id === user.userId) || {}).lat;
  assert.strictEqual(lat(lea), 77.25, `Lea's position from before the move: ${JSON.stringify(snapshot.locations)}`);
  for (const p of [busy.left, busy.right]) {
    assert.strictEqual(lat(p), busy.acked.get(p.userId), `${p.name}'s last position: ${JSON.stringify(snapshot.locations)}`);
  }
  const everyone = [busy.left, busy.right, lea].map((p) => p.userId);
  await until("Mo's Presence (on c) to list the three on a and b", () => everyone.every((id) => mo.online().includes(id)));
  for (const n of [lea, mo]) n.close();
  busy.close();
  await c.kill9();
}

// ----------------------------------------------------------------------- main

// Bursts in sessions of every shard at once: the publisher's batches then hold messages of
// several slots, which one pipeline could not carry (CROSSSLOT fails it whole, and a client that
// ignored that would lose the lot). Every message must arrive, in order, none counted lost.
async function burstsAcrossShards(cluster, a, b) {
  const primaries = await cluster.primaries();
  const byOwner = new Map();
  for (let tries = 0; byOwner.size < primaries.length; tries++) {
    assert.ok(tries < 40, `40 sessions did not land on all ${primaries.length} primaries`);
    const s = await session(a.base);
    const owner = await cluster.ownerOf(await cluster.keyslot(s.session_id));
    if (!byOwner.has(owner)) byOwner.set(owner, s);
  }
  const pairs = [];
  for (const s of byOwner.values()) {
    const from = new Client('Hal', await join(a.base, s.session_id, 'Hal'));
    const to = new Client('Ida', await join(b.base, s.session_id, 'Ida'));
    await from.connect(a, s.session_id);
    await to.connect(b, s.session_id);
    pairs.push({ from, to });
  }
  const before = await scrapeAll([a, b]);
  const burst = Array.from({ length: 10 }, (_, i) => 30 + i);
  await Promise.all(pairs.flatMap(({ from }) => burst.map((lat) => from.push('location_update', { lat, lng: 2 }))));
  for (const { from, to } of pairs) {
    const got = () => to.seen('location_update', (p) => p.user_id === from.userId && p.lat >= 30).map((e) => e.payload.lat);
    await until(`all ${burst.length} positions of a burst across replicas`, () => got().length === burst.length);
    assert.deepStrictEqual(got(), burst, 'in the order sent');
  }
  const after = await scrapeAll([a, b]);
  for (const r of [a, b]) {
    const crossslot = (m) => metricSeries(m, 'redis_errors_total').find((x) => x.labels === '{error="crossslot"}')?.value ?? 0;
    assert.strictEqual(crossslot(after[r.name]), crossslot(before[r.name]), `${r.name}: CROSSSLOT errors`);
    assert.strictEqual(metric(after[r.name], 'pubsub_dropped_total'), metric(before[r.name], 'pubsub_dropped_total'), `${r.name}: dropped`);
  }
  console.log(`  ${pairs.length} sessions on ${byOwner.size} shards, ${burst.length} positions each at once: all delivered in order`);
  for (const { from, to } of pairs) {
    from.close();
    to.close();
  }
}

async function main(h) {
  const { step, Replica, track, work } = h;
  const t0 = Date.now();
  const cluster = await RedisCluster.start(track, work);
  const seeds = cluster.nodes.map((n) => `redis://127.0.0.1:${n.port}`);
  const shape = (await cluster.primaries()).map(async (p) => `${p} (replica ${(await cluster.replicasOf(p)).join(', ')})`);
  console.log(`  Redis Cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s: primaries ${(await Promise.all(shape)).join(', ')}`);
  // Two seeds for a, one other seed for b: one is enough to find the whole cluster.
  const [a, b] = await Promise.all([Replica.start('a', `${seeds[0]},${seeds[1]}`), Replica.start('b', seeds[2])]);
  for (const r of [a, b]) await until(`${r.name} /health/ready to be 200`, () => ready(r), 10000, 100);
  for (const r of [a, b]) {
    const line = r.logText().split('\n').find((l) => l.includes('a cluster'));
    console.log(`  ${r.name} (REDIS_URL=${r.redisUrl}): ${line ? line.replace(/^.*?\] ?/, '') : 'logged no line saying it found a cluster'}`);
  }

  const start = await scrapeAll([a, b]);
  await step('redis_cluster.cross_replica_delivery_presence_and_removal', () => crossReplica(a, b));
  await step('redis_cluster.sessions_on_every_shard_sharded_pubsub_and_keys', () => everyShard(cluster, a, b));
  await step('redis_cluster.bursts_in_every_shard_at_once', () => burstsAcrossShards(cluster, a, b));
  await step('redis_cluster.cap_with_joins_split_over_replicas', () => capAcrossReplicas(a, b));
  await step('redis_cluster.end_on_one_replica_closes_the_other', () => endOnOneClosesOther(a, b));
  const steady = await scrapeAll([a, b]);
  await step('redis_cluster.no_store_errors_in_steady_operation', async () => {
    console.log(`  since the start:\n    ${describeErrors(steady, start)}`);
    for (const r of [a, b]) {
      assert.strictEqual(metric(steady[r.name], 'store_errors_total') || 0, metric(start[r.name], 'store_errors_total') || 0, `${r.name}: store errors without any failure`);
    }
  });
  // A failover and a slot move may cost errors (commands in flight to a dead primary, a
  // redirect not followed): they must be counted, not swallowed, so they are shown, not judged.
  await step('redis_cluster.primary_killed_failover', async () => {
    await primaryKilled(cluster, a, b);
    await cluster.settled();
  });
  const failedOver = await scrapeAll([a, b]);
  console.log(`  errors during the failover:\n    ${describeErrors(failedOver, steady)}`);
  await step('redis_cluster.busy_slot_migrated', () => slotMigrated(cluster, a, b, (name, url) => Replica.start(name, url)));
  const migrated = await scrapeAll([a, b]);
  console.log(`  errors during the migration:\n    ${describeErrors(migrated, failedOver)}`);
  await step('redis_cluster.ready_and_connected_at_the_end', async () => {
    for (const r of [a, b]) {
      assert.ok(await ready(r), `${r.name} ready at the end`);
      assert.strictEqual(metric(await scrape(r), 'pubsub_connected'), 1, `${r.name} pubsub_connected at the end`);
    }
  });
}

if (require.main === module) {
  const [binary, databaseUrl] = process.argv.slice(2);
  if (!binary || !databaseUrl) {
    console.error('usage: node redis_cluster.js BINARY DATABASE_URL');
    process.exit(2);
  }
  const h = harness('redis_cluster', binary, databaseUrl);
  // The replicas' logs tell what went wrong; a Redis node's last lines mostly say who failed
  // over to whom.
  h.run(() => main(h), { logLines: (file) => (file.startsWith('redis-') ? 8 : 30), removeWork: true });
}

module.exports = { RedisCluster, redis };
