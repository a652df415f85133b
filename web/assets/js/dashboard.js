// /dev/dashboard: reads /dev/dashboard/stats every second and shows the server's numbers, with
// rates worked out from successive readings and a minute of history drawn as sparklines.

import { byId, el } from './ui.js';

const INTERVAL_MS = 1000;
const HISTORY = 60;

// A token given as ?token=… is kept for this tab only and taken out of the address bar.
const params = new URLSearchParams(location.search);
if (params.has('token')) {
  try { sessionStorage.setItem('ls.admin', params.get('token')); } catch { /* ignore */ }
  history.replaceState(null, '', location.pathname);
}
let token = null;
try { token = sessionStorage.getItem('ls.admin'); } catch { /* ignore */ }

const CARDS = [
  { key: 'sockets', label: 'Sockets open', format: (v) => fmtInt(v) },
  { key: 'sessions', label: 'Live sessions', format: (v) => fmtInt(v) },
  { key: 'updates', label: 'Updates in / s', format: (v) => fmtRate(v) },
  { key: 'deliveries', label: 'Deliveries out / s', format: (v) => fmtRate(v) },
  { key: 'http', label: 'HTTP requests / s', format: (v) => fmtRate(v) },
  { key: 'latency', label: 'HTTP latency (mean)', format: (v) => fmtMs(v) },
  { key: 'p95', label: 'HTTP latency (p95)', format: (v) => (v === Infinity ? '> 2.5 s' : fmtMs(v)) },
  { key: 'memory', label: 'Memory (RSS)', format: (v) => (v == null ? '—' : `${(v / 1048576).toFixed(1)} MiB`) },
];

const COUNTERS = [
  ['location_updates_in', 'Location updates in'],
  ['location_deliveries_out', 'Location deliveries out'],
  ['http_requests', 'HTTP requests (without this dashboard)'],
  ['rate_limited', 'Updates refused by the rate limit'],
  ['frames_dropped', 'Frames dropped from slow sockets'],
  ['unparsable_frames', 'Unparsable client frames'],
  ['store_errors', 'Ephemeral store errors'],
  ['session_restarts', 'Session actors restarted'],
  ['pubsub_published', 'Cluster messages published'],
  ['pubsub_received', 'Cluster messages received'],
];

const fmtInt = (v) => (v == null ? '—' : Math.round(v).toLocaleString('en'));
const fmtRate = (v) => (v == null ? '—' : v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString('en'));
const fmtMs = (v) => (v == null || Number.isNaN(v) ? '—' : v < 10 ? `${v.toFixed(2)} ms` : `${Math.round(v)} ms`);

const series = Object.fromEntries(CARDS.map((c) => [c.key, []]));
const cardEls = {};
let previous = null;

function buildCards() {
  const box = byId('cards');
  for (const c of CARDS) {
    const value = el('p', { class: 'card-value', text: '—' });
    const canvas = el('canvas', { class: 'spark', width: 240, height: 48, 'aria-hidden': 'true' });
    box.append(el('section', { class: 'stat', 'aria-label': c.label }, el('h2', { text: c.label }), value, canvas));
    cardEls[c.key] = { value, canvas };
  }
}

function rate(now, before, dt, key) {
  if (!before || dt <= 0) return null;
  return Math.max(0, (now.counters[key] - before.counters[key]) / dt);
}

/** Mean and p95 of the HTTP requests between two readings, from the histogram's buckets. */
function latency(now, before) {
  if (!before) return { mean: null, p95: null };
  const n = now.http_latency.count - before.http_latency.count;
  if (n <= 0) return { mean: null, p95: null };
  const mean = ((now.http_latency.sum_seconds - before.http_latency.sum_seconds) / n) * 1000;
  let p95 = Infinity;
  for (let i = 0; i < now.http_latency.buckets.length; i++) {
    const [le, cum] = now.http_latency.buckets[i];
    const prev = before.http_latency.buckets[i]?.[1] ?? 0;
    if (cum - prev >= 0.95 * n) {
      p95 = le * 1000;
      break;
    }
  }
  return { mean, p95 };
}

function draw(canvas, values) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length < 2) return;
  const max = Math.max(...finite, 1e-9);
  ctx.strokeStyle = '#0b5cad';
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => {
    // The newest reading is at the right edge.
    const x = w - ((values.length - 1 - i) / (HISTORY - 1)) * w;
    const y = h - 3 - ((Number.isFinite(v) ? v : 0) / max) * (h - 6);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function show(stats) {
  const dt = previous ? (Date.parse(stats.time) - Date.parse(previous.time)) / 1000 : 0;
  const { mean, p95 } = latency(stats, previous);
  const values = {
    sockets: stats.sockets,
    sessions: stats.sessions_live,
    updates: rate(stats, previous, dt, 'location_updates_in'),
    deliveries: rate(stats, previous, dt, 'location_deliveries_out'),
    http: rate(stats, previous, dt, 'http_requests'),
    latency: mean,
    p95,
    memory: stats.memory_rss_bytes,
  };
  for (const c of CARDS) {
    const v = values[c.key];
    cardEls[c.key].value.textContent = c.format(v);
    const h = series[c.key];
    h.push(Number.isFinite(v) ? v : null);
    while (h.length > HISTORY) h.shift();
    draw(cardEls[c.key].canvas, h);
  }

  const deps = byId('deps');
  const rows = [
    ['Database', stats.checks.database],
    ['Redis', stats.checks.redis],
    ['Session registry', { status: stats.registry_responding ? 'ok' : 'error', latency_ms: null }],
    ['Cluster bus', stats.pubsub_connected === null
      ? { status: 'disabled', latency_ms: null }
      : { status: stats.pubsub_connected ? 'ok' : 'error', latency_ms: null }],
    ['Draining', { status: stats.draining ? 'draining' : 'no', latency_ms: null }],
  ];
  deps.replaceChildren(...rows.map(([name, check]) => {
    const label = { ok: 'OK', error: 'Down', disabled: 'Not configured', draining: 'Draining (shutting down)', no: 'No' }[check.status] ?? check.status;
    return el('tr', {},
      el('th', { scope: 'row', text: name }),
      el('td', {}, el('span', { class: `badge badge-${check.status}`, text: label })),
      el('td', { text: check.latency_ms == null ? '—' : fmtMs(check.latency_ms) }));
  }));

  byId('counters').replaceChildren(...COUNTERS.map(([key, label]) =>
    el('tr', {},
      el('th', { scope: 'row', text: label }),
      el('td', { text: fmtInt(stats.counters[key]) }),
      el('td', { text: fmtRate(rate(stats, previous, dt, key)) }))));

  const up = stats.uptime_seconds;
  const upText = up == null ? '' : ` · up ${up < 3600 ? `${Math.floor(up / 60)} min` : `${(up / 3600).toFixed(1)} h`}`;
  byId('dash-updated').textContent = `Updated ${new Date(stats.time).toLocaleTimeString()} · version ${stats.version}${upText}`;
  setError('');
  previous = stats;
}

function setError(text) {
  const status = byId('dash-status');
  if (status.textContent !== text) status.textContent = text;
  status.hidden = !text;
}

async function refresh() {
  try {
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    const res = await fetch('/dev/dashboard/stats', { headers, cache: 'no-store', credentials: 'omit' });
    if (res.status === 401) {
      setError('This dashboard needs the admin token: open /dev/dashboard?token=… with the ADMIN_TOKEN of the server.');
      return; // no point retrying with the same token
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    show(await res.json());
  } catch (err) {
    setError(`Cannot read the server's numbers (${err.message}). Retrying every second.`);
  }
  setTimeout(refresh, INTERVAL_MS);
}

buildCards();
refresh();
