// A Phoenix Channels client (serializer vsn 2.0.0), written for this page: a socket with a
// heartbeat, refs and reconnect with backoff; channels with join/push/replies and rejoin; and
// Presence (presence_state / presence_diff). It follows phoenix.js's behaviour where it matters.
//
// Frames are arrays: [join_ref, ref, topic, event, payload].

const HEARTBEAT_MS = 30_000;
const PUSH_TIMEOUT_MS = 10_000;
const RECONNECT_MS = [500, 1000, 2000, 5000, 10_000];
const REJOIN_MS = [1000, 2000, 5000, 10_000];

/** Socket states, for `onStateChange`. */
export const SocketState = Object.freeze({
  CONNECTING: 'connecting',
  OPEN: 'open',
  WAITING: 'waiting', // closed, a reconnect is scheduled
  CLOSED: 'closed', // closed for good (disconnect() was called)
});

function backoff(steps, tries) {
  const base = steps[Math.min(tries, steps.length) - 1] ?? steps[steps.length - 1];
  // ±20 % so that many clients dropped at once do not come back at once.
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export class Socket {
  /**
   * @param {string} endPoint e.g. `wss://host/socket` (`/websocket` is appended)
   * @param {{params?: object, onStateChange?: (state, info) => void, onOpenFailure?: (tries) => void}} opts
   */
  constructor(endPoint, opts = {}) {
    this.endPoint = endPoint;
    this.params = opts.params ?? {};
    this.onStateChange = opts.onStateChange ?? (() => {});
    this.onOpenFailure = opts.onOpenFailure ?? (() => {});
    this.channels = [];
    this.ref = 0;
    this.conn = null;
    this.state = SocketState.CLOSED;
    this.tries = 0; // failed attempts since the last open
    this.wantOpen = false;
    this.heartbeatTimer = null;
    this.pendingHeartbeatRef = null;
    this.reconnectTimer = null;
    this.nextAttemptAt = null;
    this.lastClose = null;

    this.wake = () => {
      if (this.state === SocketState.WAITING) this.reconnectNow();
    };
    window.addEventListener('online', this.wake);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.wake();
    });
  }

  makeRef() {
    this.ref = this.ref + 1 === Number.MAX_SAFE_INTEGER ? 1 : this.ref + 1;
    return String(this.ref);
  }

  url() {
    const query = new URLSearchParams({ ...this.params, vsn: '2.0.0' });
    return `${this.endPoint}/websocket?${query}`;
  }

  setState(state, info = {}) {
    this.state = state;
    this.onStateChange(state, info);
  }

  isConnected() {
    return this.conn?.readyState === WebSocket.OPEN;
  }

  connect() {
    this.wantOpen = true;
    if (this.conn) return;
    clearTimeout(this.reconnectTimer);
    this.setState(SocketState.CONNECTING, { tries: this.tries });
    let conn;
    try {
      conn = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.conn = conn;
    let opened = false;
    conn.onopen = () => {
      opened = true;
      this.tries = 0;
      this.setState(SocketState.OPEN);
      this.startHeartbeat();
      for (const channel of this.channels) channel.socketOpened();
    };
    conn.onmessage = (event) => this.onMessage(event.data);
    conn.onerror = () => { /* a close event follows */ };
    conn.onclose = (event) => {
      if (this.conn !== conn) return;
      this.conn = null;
      this.stopHeartbeat();
      this.lastClose = { code: event.code, reason: event.reason, opened };
      for (const channel of this.channels) channel.socketClosed();
      if (!this.wantOpen) {
        this.setState(SocketState.CLOSED, this.lastClose);
        return;
      }
      if (!opened) {
        this.tries += 1;
        this.onOpenFailure(this.tries);
        if (!this.wantOpen) return; // the failure handler gave up
      } else {
        this.tries = Math.max(this.tries, 1);
      }
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    const delay = backoff(RECONNECT_MS, Math.max(1, this.tries));
    this.nextAttemptAt = Date.now() + delay;
    this.setState(SocketState.WAITING, { at: this.nextAttemptAt, tries: this.tries, close: this.lastClose });
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (!this.wantOpen || this.conn) return;
    clearTimeout(this.reconnectTimer);
    this.connect();
  }

  /** Closes for good: no reconnect until connect() is called again. */
  disconnect(code = 1000, reason = 'client leaving') {
    this.wantOpen = false;
    clearTimeout(this.reconnectTimer);
    this.stopHeartbeat();
    const conn = this.conn;
    this.conn = null;
    for (const channel of this.channels) channel.socketClosed();
    if (conn) {
      conn.onclose = null;
      conn.onmessage = null;
      try { conn.close(code, reason); } catch { /* already closed */ }
    }
    this.setState(SocketState.CLOSED, { code, reason, opened: true });
  }

  /** Drops the connection and reconnects (heartbeat lost, server said 1012, …). */
  abnormalClose(reason) {
    const conn = this.conn;
    if (!conn) return;
    try { conn.close(4000, reason); } catch { /* ignore */ }
    // Browsers fire onclose on their own schedule; do not wait for it.
    conn.onclose?.({ code: 4000, reason });
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => this.sendHeartbeat(), HEARTBEAT_MS);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.pendingHeartbeatRef = null;
  }

  sendHeartbeat() {
    if (!this.isConnected()) return;
    if (this.pendingHeartbeatRef) {
      // The last heartbeat was never answered: the connection is dead even if the browser
      // has not noticed yet.
      this.pendingHeartbeatRef = null;
      this.abnormalClose('heartbeat timeout');
      return;
    }
    this.pendingHeartbeatRef = this.makeRef();
    this.send([null, this.pendingHeartbeatRef, 'phoenix', 'heartbeat', {}]);
  }

  send(frame) {
    if (!this.isConnected()) return false;
    this.conn.send(JSON.stringify(frame));
    return true;
  }

  onMessage(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (!Array.isArray(frame) || frame.length !== 5) return;
    const [joinRef, ref, topic, event, payload] = frame;
    if (topic === 'phoenix' && event === 'phx_reply' && ref !== null && ref === this.pendingHeartbeatRef) {
      this.pendingHeartbeatRef = null;
      return;
    }
    for (const channel of this.channels) {
      if (channel.topic === topic && channel.isMember(joinRef)) channel.trigger(event, payload, ref, joinRef);
    }
  }

  channel(topic, params = {}) {
    const channel = new Channel(this, topic, params);
    this.channels.push(channel);
    return channel;
  }

  remove(channel) {
    this.channels = this.channels.filter((c) => c !== channel);
  }
}

/** A push waiting for its reply. Hooks: ok, error, timeout. */
export class Push {
  constructor(channel, event, payload, timeoutMs = PUSH_TIMEOUT_MS) {
    this.channel = channel;
    this.event = event;
    this.payload = payload;
    this.timeoutMs = timeoutMs;
    this.hooks = [];
    this.ref = null;
    this.timer = null;
    this.received = null;
  }

  receive(status, callback) {
    this.hooks.push({ status, callback });
    if (this.received?.status === status) callback(this.received.response);
    return this;
  }

  /** Sends (again, for a rejoin) with a fresh ref. */
  send(joinRef) {
    this.cancel();
    this.received = null;
    this.ref = this.channel.socket.makeRef();
    this.channel.pending.set(this.ref, this);
    this.timer = setTimeout(() => this.reply({ status: 'timeout', response: {} }), this.timeoutMs);
    const sent = this.channel.socket.send([joinRef, this.ref, this.channel.topic, this.event, this.payload]);
    if (!sent) this.reply({ status: 'timeout', response: {} });
  }

  reply({ status, response }) {
    this.cancel();
    this.received = { status, response };
    for (const hook of this.hooks) if (hook.status === status) hook.callback(response ?? {});
  }

  cancel() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ref) this.channel.pending.delete(this.ref);
  }
}

export class Channel {
  constructor(socket, topic, params) {
    this.socket = socket;
    this.topic = topic;
    this.params = params;
    this.state = 'closed'; // closed | joining | joined | errored | leaving
    this.joinRef = null;
    this.joinPush = new Push(this, 'phx_join', params);
    this.bindings = [];
    this.pending = new Map();
    this.rejoinTries = 0;
    this.rejoinTimer = null;
    this.joinedOnce = false;

    this.joinPush.receive('ok', () => {
      this.state = 'joined';
      this.rejoinTries = 0;
      this.joinedOnce = true;
    });
    this.joinPush.receive('error', () => {
      // Refused (unauthorized, session_ended, not_a_participant): no rejoin; the page decides.
      this.state = 'closed';
    });
    this.joinPush.receive('timeout', () => {
      this.state = 'errored';
      this.scheduleRejoin();
    });
  }

  /** Joins; the returned push's hooks run on every (re)join reply. */
  join() {
    if (this.state !== 'closed') return this.joinPush;
    this.state = 'joining';
    this.sendJoin();
    return this.joinPush;
  }

  sendJoin() {
    clearTimeout(this.rejoinTimer);
    if (!this.socket.isConnected()) return; // sent when the socket opens
    this.state = 'joining';
    this.joinPush.cancel();
    this.joinRef = this.socket.makeRef();
    // The join ref doubles as the join push's ref, as phoenix.js does.
    this.joinPush.received = null;
    this.joinPush.ref = this.joinRef;
    this.pending.set(this.joinRef, this.joinPush);
    this.joinPush.timer = setTimeout(() => this.joinPush.reply({ status: 'timeout', response: {} }), PUSH_TIMEOUT_MS);
    this.socket.send([this.joinRef, this.joinRef, this.topic, 'phx_join', this.params]);
  }

  scheduleRejoin() {
    clearTimeout(this.rejoinTimer);
    if (this.state === 'closed' || this.state === 'leaving') return;
    this.rejoinTries += 1;
    this.rejoinTimer = setTimeout(() => this.sendJoin(), backoff(REJOIN_MS, this.rejoinTries));
  }

  socketOpened() {
    if (this.state === 'joining' || this.state === 'errored') this.sendJoin();
  }

  socketClosed() {
    clearTimeout(this.rejoinTimer);
    for (const push of [...this.pending.values()]) if (push !== this.joinPush) push.reply({ status: 'timeout', response: {} });
    this.joinPush.cancel();
    // Rejoin when the socket is back (a closed or leaving channel stays so).
    if (this.state === 'joined' || this.state === 'errored') this.state = 'joining';
  }

  isJoined() {
    return this.state === 'joined' && this.socket.isConnected();
  }

  /** Messages of an old join (a stale join_ref) are not ours. */
  isMember(joinRef) {
    return joinRef === null || joinRef === undefined || joinRef === this.joinRef;
  }

  on(event, callback) {
    this.bindings.push({ event, callback });
    return this;
  }

  /** Pushes an event; when not joined the push times out at once (nothing is queued). */
  push(event, payload, timeoutMs = PUSH_TIMEOUT_MS) {
    const push = new Push(this, event, payload, timeoutMs);
    if (!this.isJoined()) {
      queueMicrotask(() => push.reply({ status: 'timeout', response: {} }));
      return push;
    }
    push.send(this.joinRef);
    return push;
  }

  /** Leaves the topic (the server replies and sends phx_close). */
  leave() {
    clearTimeout(this.rejoinTimer);
    const wasJoined = this.isJoined();
    this.state = 'leaving';
    const push = new Push(this, 'phx_leave', {});
    const done = () => {
      this.state = 'closed';
      this.trigger('phx_close', {}, null, this.joinRef);
    };
    push.receive('ok', done).receive('timeout', done);
    if (wasJoined) push.send(this.joinRef);
    else done();
    return push;
  }

  trigger(event, payload, ref, joinRef) {
    if (event === 'phx_reply') {
      const push = ref !== null ? this.pending.get(ref) : null;
      if (push) push.reply(payload ?? {});
      return;
    }
    if (event === 'phx_error') {
      // The channel crashed on the server (phoenix.js rejoins by itself).
      if (joinRef !== this.joinRef) return;
      this.state = 'errored';
      this.joinPush.cancel();
      this.scheduleRejoin();
    }
    if (event === 'phx_close') {
      if (joinRef !== null && joinRef !== undefined && joinRef !== this.joinRef) return;
      clearTimeout(this.rejoinTimer);
      this.state = 'closed';
    }
    for (const binding of this.bindings) if (binding.event === event) binding.callback(payload ?? {}, ref, joinRef);
  }
}

/**
 * Phoenix.Presence: who is online, from `presence_state` and `presence_diff`. Keys are user ids,
 * each `{metas: [{phx_ref, …}]}`. Diffs that arrive before the state of the current join are
 * held back and applied after it, as phoenix.js does.
 */
export class Presence {
  constructor(channel) {
    this.channel = channel;
    this.state = {};
    this.pendingDiffs = [];
    this.joinRef = null;
    this.onSync = () => {};
    channel.on('presence_state', (state) => {
      this.joinRef = channel.joinRef;
      this.state = Presence.syncState(state);
      for (const diff of this.pendingDiffs) this.state = Presence.syncDiff(this.state, diff);
      this.pendingDiffs = [];
      this.onSync();
    });
    channel.on('presence_diff', (diff) => {
      if (this.inPendingSyncState()) {
        this.pendingDiffs.push(diff);
      } else {
        this.state = Presence.syncDiff(this.state, diff);
        this.onSync();
      }
    });
  }

  inPendingSyncState() {
    return !this.joinRef || this.joinRef !== this.channel.joinRef;
  }

  /** Keys online now. */
  keys() {
    return Object.keys(this.state);
  }

  list(chooser = (key, presence) => presence) {
    return Object.entries(this.state).map(([key, presence]) => chooser(key, presence));
  }

  static clone(obj) {
    return JSON.parse(JSON.stringify(obj));
  }

  /** The server's full state replaces ours (it is sent on every join). */
  static syncState(incoming) {
    const next = {};
    for (const [key, presence] of Object.entries(incoming ?? {})) {
      if (presence && Array.isArray(presence.metas)) next[key] = Presence.clone(presence);
    }
    return next;
  }

  /** Applies `{joins, leaves}`: metas are added or removed by `phx_ref`. */
  static syncDiff(current, { joins = {}, leaves = {} } = {}) {
    const state = Presence.clone(current);
    for (const [key, presence] of Object.entries(joins)) {
      const metas = Array.isArray(presence?.metas) ? presence.metas : [];
      const existing = state[key]?.metas ?? [];
      const seen = new Set(metas.map((m) => m.phx_ref));
      state[key] = { ...presence, metas: [...existing.filter((m) => !seen.has(m.phx_ref)), ...metas] };
    }
    for (const [key, presence] of Object.entries(leaves)) {
      if (!state[key]) continue;
      const gone = new Set((presence?.metas ?? []).map((m) => m.phx_ref));
      const metas = state[key].metas.filter((m) => !gone.has(m.phx_ref));
      if (metas.length) state[key].metas = metas;
      else delete state[key];
    }
    return state;
  }
}
