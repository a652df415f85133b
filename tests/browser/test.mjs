// Drives the built-in web client in headless Chromium, as people would use it:
// a creator starts a session on /, two people with different positions join through the link
// and see each other move, a third who denies location still sees them and is told why, the
// creator removes one and ends the session; in a second session a meeting point, an arrival, the
// advised send rate following who looks, and a lock; in a third, with a stand-in for Nominatim, a
// meeting point found by the place search, cleared, and a renamed session. Fails on any console
// error or page error.
//
//   node test.mjs /path/to/location-sharing
//
// The server is started here (SQLite in a temporary directory, a free port, TILE_URL=none) and
// the browser may reach nothing but it (and the stand-in geocoder, for the pages that search).

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const shots = join(here, 'screenshots');
const binary = process.argv[2];
if (!binary) {
  console.error('usage: node test.mjs /path/to/location-sharing');
  process.exit(2);
}

const PHONE = { width: 390, height: 844 };
const LAPTOP = { width: 1280, height: 800 };
const LISBON = { latitude: 38.7223, longitude: -9.1393, accuracy: 15 };
const ALFAMA = { latitude: 38.7118, longitude: -9.1300, accuracy: 40 };
const BAIXA = { latitude: 38.7105, longitude: -9.1370, accuracy: 10 };
const CAROL = 'Carol <img src=x onerror=alert(1)>';

let passed = 0;
let outage = false; // while the server is down on purpose, failed connections are expected
let failed = 0;
const problems = []; // console and page errors, from every page

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A stand-in for Nominatim on a free loopback port: `/search?format=jsonv2&q=…` answers
 * `placesFor(q)` as Nominatim does (lat and lon as strings), to any origin; every query is kept
 * in `queries`.
 */
function fakeNominatim(placesFor) {
  const queries = [];
  const srv = createHttpServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const cors = { 'access-control-allow-origin': '*', 'access-control-allow-headers': 'accept' };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, cors);
      return res.end();
    }
    if (url.pathname !== '/search') {
      res.writeHead(404, cors);
      return res.end();
    }
    queries.push(Object.fromEntries(url.searchParams));
    const body = placesFor(url.searchParams.get('q') ?? '').map((p, i) => ({
      place_id: 1000 + i, licence: 'Data © OpenStreetMap contributors, ODbL 1.0. http://osm.org/copyright',
      osm_type: 'way', osm_id: 2000 + i, lat: p.lat, lon: p.lon, category: 'place', type: 'square',
      place_rank: 25, importance: 0.5, addresstype: 'square', name: p.display_name.split(',')[0],
      display_name: p.display_name, boundingbox: [p.lat, p.lat, p.lon, p.lon],
    }));
    res.writeHead(200, { ...cors, 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve({
      base: `http://127.0.0.1:${srv.address().port}`,
      queries,
      close: () => new Promise((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
    }));
  });
}

async function startServer(extra = {}, { log = null } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'ls-browser-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = { ...process.env };
  delete env.REDIS_URL;
  delete env.ADMIN_TOKEN;
  Object.assign(env, {
    HOST: '127.0.0.1',
    PORT: String(port),
    PUBLIC_URL: base,
    DATABASE_URL: `sqlite://${join(dir, 'db.sqlite3')}`,
    JWT_SECRET: 'browser-test-secret-0123456789abcdef',
    TILE_URL: 'none',
    RUST_LOG: 'warn',
    // The abuse limits (SPEC §11) as a person in a browser meets them: the defaults, said
    // explicitly; every page here comes from 127.0.0.1.
    CREATE_SESSIONS_PER_MINUTE: '60',
    JOINS_PER_MINUTE: '300',
    SOCKET_CONNECTS_PER_MINUTE: '600',
    MAX_SOCKETS_PER_ADDRESS: '1000',
    MAX_SOCKETS_PER_PARTICIPANT: '5',
    ...extra,
  });
  let child = null;
  const launch = async () => {
    const out = log ? openSync(log, 'a') : 'inherit';
    child = spawn(binary, [], { cwd: dir, env, stdio: ['ignore', out, out] });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
      try {
        const res = await fetch(`${base}/health`);
        if (res.ok) return;
      } catch { /* not up yet */ }
      if (Date.now() > deadline) throw new Error('the server did not start within 30 s');
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const kill = (signal) => new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
  await launch();
  return {
    base,
    dir,
    /** Kills the server at once, as a crash or a lost network would. */
    crash: () => kill('SIGKILL'),
    /** Starts it again on the same port and database. */
    restart: launch,
    async stop() {
      await kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}: ${err.message.split('\n')[0]}`);
    throw err;
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/**
 * A browser context that reaches only the test server (and the origins of `options.reach`), and a
 * page on it that records errors.
 */
async function person(browser, server, label, options, expectedError = () => false) {
  const { reach = [], ...contextOptions } = options;
  const origins = [server.base, ...reach];
  const context = await browser.newContext({ locale: 'en-GB', timezoneId: 'Europe/Lisbon', ...contextOptions });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    return origins.some((o) => url.startsWith(`${o}/`)) ? route.continue() : route.abort();
  });
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const expected = (outage && /ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/.test(msg.text()))
      || expectedError(msg);
    if (!expected) problems.push(`${label}: console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`${label}: page error: ${err.message}`));
  page.on('dialog', (dialog) => dialog.accept());
  page.setDefaultTimeout(15_000);
  return { context, page, label };
}

async function joinAs(who, link, name, colour) {
  const { page } = who;
  await page.goto(link);
  await page.locator('#join-view').waitFor();
  await page.locator('#display-name').fill(name);
  await page.getByLabel(colour, { exact: true }).check();
  await page.getByRole('button', { name: 'Join and share my location' }).click();
  await page.locator('#conn[data-state="live"]').waitFor();
  return page.evaluate(() => JSON.parse(localStorage.getItem(`ls.me.${location.pathname.split('/')[2]}`)).user_id);
}

/** The dot of someone's marker (the marker itself is a zero-size anchor). */
function marker(page, userId) {
  return page.locator(`.marker[data-user-id="${userId}"] .marker-dot`);
}

function label(page, userId) {
  return page.locator(`.marker[data-user-id="${userId}"] .marker-label`);
}

async function box(locator) {
  const b = await locator.boundingBox();
  assert(b, 'the marker is not laid out');
  return { x: b.x + b.width / 2, y: b.y + b.height / 2 };
}

async function waitFor(what, fn, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function darkPixels(page, selector) {
  return page.$eval(selector, (canvas) => {
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let dark = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 128 && data[i] < 64) dark += 1;
    return { dark, total: data.length / 4 };
  });
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const server = await startServer();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const ids = {};
  let link;
  try {
    const creator = await person(browser, server, 'creator', { viewport: LAPTOP });
    const alice = await person(browser, server, 'alice', {
      viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2,
      geolocation: LISBON, permissions: ['geolocation'],
    });
    const bob = await person(browser, server, 'bob', {
      viewport: LAPTOP, geolocation: ALFAMA, permissions: ['geolocation'],
    });
    const carol = await person(browser, server, 'carol', { viewport: PHONE, isMobile: true, hasTouch: true });

    await step('the home page has the CSP and no inline script or style', async () => {
      const res = await creator.page.goto(`${server.base}/`);
      const csp = res.headers()['content-security-policy'] ?? '';
      assert(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'"), `CSP: ${csp}`);
      assert(res.headers()['x-content-type-options'] === 'nosniff', 'nosniff');
      assert(res.headers()['referrer-policy'] === 'no-referrer', 'referrer policy');
      const inline = await creator.page.evaluate(() =>
        [...document.scripts].filter((s) => !s.src).length + document.querySelectorAll('[style], style').length);
      assert(inline === 0, `${inline} inline scripts or styles`);
      await creator.page.screenshot({ path: join(shots, 'home-laptop.png') });
    });

    await step('the creator starts a session and gets a link, a copy button and a QR code', async () => {
      const { page } = creator;
      await page.getByLabel('Name of the session').fill('Saturday walk');
      await page.getByLabel('Sharing lasts').selectOption('60');
      await page.getByRole('button', { name: 'Start a session' }).click();
      await page.locator('#manage-view').waitFor();
      link = await page.locator('#share-link').inputValue();
      // End-to-end encryption is on by default: the link carries its key in the fragment.
      assert(/^http:\/\/127\.0\.0\.1:\d+\/join\/[0-9a-f-]{36}#k=[A-Za-z0-9_-]{43}$/.test(link), `join link ${link}`);
      ids.session = new URL(link).pathname.split('/').pop();
      const title = await page.locator('#manage-title').textContent();
      assert(title.includes('Saturday walk'), `title ${title}`);
      await page.getByRole('button', { name: 'Copy link' }).waitFor();
      const qr = await waitFor('the QR code', async () => {
        const px = await darkPixels(page, '#qr');
        return px.dark > px.total * 0.2 ? px : null;
      });
      assert(qr.dark < qr.total * 0.7, 'the QR code is mostly dark');
      await page.screenshot({ path: join(shots, 'manage-laptop.png'), fullPage: true });
    });

    await step('Alice (phone) opens the link, sees the session name and joins', async () => {
      const { page } = alice;
      await page.goto(link);
      await page.locator('#join-view').waitFor();
      const title = await page.locator('#join-title').textContent();
      assert(title.includes('Saturday walk'), `join title ${title}`);
      await page.screenshot({ path: join(shots, 'join-form-phone.png'), fullPage: true });
      ids.alice = await joinAs(alice, link, 'Alice', 'Blue');
      await page.locator('#geo-status', { hasText: 'Sharing your position' }).waitFor();
    });

    await step('Bob (laptop) joins with another position', async () => {
      ids.bob = await joinAs(bob, link, 'Bob', 'Red');
      await bob.page.locator('#geo-status', { hasText: 'Sharing your position' }).waitFor();
    });

    await step('each sees the other on the map and in the list', async () => {
      await marker(alice.page, ids.bob).waitFor({ state: 'visible' });
      await marker(bob.page, ids.alice).waitFor({ state: 'visible' });
      assert((await label(bob.page, ids.alice).textContent()) === 'Alice', 'Alice label');
      await alice.page.locator(`#people li[data-user-id="${ids.bob}"]`, { hasText: 'Online' }).waitFor();
      await bob.page.locator(`#people li[data-user-id="${ids.alice}"]`, { hasText: 'Online' }).waitFor();
    });

    await step('Alice moves and Bob sees her marker move', async () => {
      await bob.page.getByRole('button', { name: 'Fit everyone' }).click();
      const before = await box(marker(bob.page, ids.alice));
      await alice.context.setGeolocation(BAIXA);
      await waitFor('Alice to move on Bob\'s map', async () => {
        const now = await box(marker(bob.page, ids.alice));
        return Math.hypot(now.x - before.x, now.y - before.y) > 5;
      });
    });

    await step('a lost server shows a reconnecting state, and both come back by themselves', async () => {
      outage = true;
      await server.crash();
      for (const who of [alice, bob]) {
        await who.page.locator('#conn[data-state="waiting"]', { hasText: 'Connection lost' }).waitFor();
      }
      assert(await alice.page.getByRole('button', { name: 'Retry now' }).isVisible(), 'a Retry now button');
      await alice.page.screenshot({ path: join(shots, 'reconnecting-alice-phone.png') });
      await server.restart();
      for (const who of [alice, bob]) await who.page.locator('#conn[data-state="live"]').waitFor({ timeout: 30_000 });
      outage = false;
      // Rejoined, each tells the other where it is again (the restarted server had forgotten).
      await marker(bob.page, ids.alice).waitFor({ state: 'visible' });
      await marker(alice.page, ids.bob).waitFor({ state: 'visible' });
      await waitFor('both positions sent to the restarted server', async () => {
        const stats = await (await fetch(`${server.base}/dev/dashboard/stats`)).json();
        return stats.counters.location_updates_in >= 2 && stats.sockets === 2;
      });
    });

    await step('the map pans with the keyboard and zooms with + and the wheel', async () => {
      const { page } = bob;
      const before = await box(marker(page, ids.alice));
      await page.locator('#map').focus();
      await page.keyboard.press('ArrowRight');
      const panned = await waitFor('the keyboard pan', async () => {
        const now = await box(marker(page, ids.alice));
        return Math.abs(now.x - before.x) > 50 ? now : null;
      });
      assert(panned.x < before.x, 'ArrowRight moves the view right, so markers move left');
      const a = await box(marker(page, ids.alice));
      const b = await box(marker(page, ids.bob));
      await page.keyboard.press('+');
      await waitFor('the zoom', async () => {
        const a2 = await box(marker(page, ids.alice));
        const b2 = await box(marker(page, ids.bob));
        return Math.hypot(a2.x - b2.x, a2.y - b2.y) > 1.8 * Math.hypot(a.x - b.x, a.y - b.y);
      });
      const mapBox = await page.locator('#map').boundingBox();
      await page.mouse.move(mapBox.x + mapBox.width / 2, mapBox.y + mapBox.height / 2);
      await page.mouse.wheel(0, 400);
      await page.getByRole('button', { name: 'Fit everyone' }).click();
    });

    await step('screenshots of the map for both participants', async () => {
      await bob.page.waitForTimeout(300);
      await alice.page.getByRole('button', { name: 'Fit everyone' }).click();
      await alice.page.waitForTimeout(300);
      await alice.page.screenshot({ path: join(shots, 'map-alice-phone.png') });
      await bob.page.screenshot({ path: join(shots, 'map-bob-laptop.png') });
    });

    await step('Carol denies location, still sees the others, and is told why she is not shared', async () => {
      ids.carol = await joinAs(carol, link, CAROL, 'Green');
      await carol.page.locator('#geo-status', { hasText: 'Your position is not shared' }).waitFor();
      const text = await carol.page.locator('#geo-status').textContent();
      assert(/location access is blocked/.test(text), `geolocation message: ${text}`);
      await marker(carol.page, ids.alice).waitFor({ state: 'visible' });
      await marker(carol.page, ids.bob).waitFor({ state: 'visible' });
      assert((await marker(carol.page, ids.carol).count()) === 0, 'Carol has no marker of her own');
      assert(await carol.page.getByRole('button', { name: 'Follow me' }).isDisabled(), 'Follow me is disabled');
      await carol.page.screenshot({ path: join(shots, 'map-carol-denied-phone.png') });
      const row = alice.page.locator(`#people li[data-user-id="${ids.carol}"]`);
      await row.filter({ hasText: 'no position shared' }).waitFor();
      // Names are text, never markup.
      assert((await row.locator('.person-name').textContent()) === CAROL, 'Carol\'s name is shown as typed');
      assert((await alice.page.locator('#people img, .marker-label img').count()) === 0, 'a name was parsed as HTML');
    });

    await step('the dashboard shows live numbers (development: loopback HOST, no ADMIN_TOKEN)', async () => {
      const ops = await person(browser, server, 'operator', { viewport: LAPTOP });
      await ops.page.goto(`${server.base}/dev/dashboard`);
      await ops.page.locator('#dash-updated', { hasText: 'Updated' }).waitFor();
      const sockets = ops.page.locator('.stat[aria-label="Sockets open"] .card-value');
      await waitFor('3 sockets', async () => (await sockets.textContent()) === '3');
      await ops.page.waitForTimeout(3000);
      const memory = await ops.page.locator('.stat[aria-label="Memory (RSS)"] .card-value').textContent();
      assert(/MiB$/.test(memory), `memory ${memory}`);
      const db = await ops.page.locator('#deps tr', { hasText: 'Database' }).textContent();
      assert(db.includes('OK'), `database row ${db}`);
      await ops.page.screenshot({ path: join(shots, 'dashboard-laptop.png'), fullPage: true });
      await ops.page.setViewportSize(PHONE);
      await ops.page.screenshot({ path: join(shots, 'dashboard-phone.png') });
      await ops.context.close();
    });

    await step('the creator removes Bob, who is told, and the others see him go', async () => {
      const { page } = creator;
      const row = page.locator(`#people li[data-user-id="${ids.bob}"]`);
      await row.waitFor();
      await row.getByRole('button', { name: 'Remove Bob' }).click();
      await bob.page.locator('#banner', { hasText: 'You were removed from this session' }).waitFor();
      await bob.page.locator('#conn[data-state="closed"]').waitFor();
      await marker(alice.page, ids.bob).waitFor({ state: 'detached' });
      await marker(carol.page, ids.bob).waitFor({ state: 'detached' });
      await bob.page.screenshot({ path: join(shots, 'removed-bob-laptop.png') });
    });

    await step('the creator ends the session and the others see that it ended', async () => {
      const { page } = creator;
      await page.getByRole('button', { name: 'End the session for everyone' }).click();
      await page.locator('#manage-ended', { hasText: 'You ended this session' }).waitFor();
      for (const who of [alice, carol]) {
        await who.page.locator('#banner', { hasText: 'The creator ended this session' }).waitFor();
        await who.page.locator('#conn[data-state="closed"]').waitFor();
      }
      await alice.page.screenshot({ path: join(shots, 'ended-alice-phone.png') });
      const res = await fetch(`${server.base}/api/sessions/${ids.session}`);
      assert((await res.json()).is_active === false, 'the session is over');
    });

    await step('a join link of an ended session says so', async () => {
      const late = await person(browser, server, 'late', { viewport: PHONE });
      await late.page.goto(link);
      await late.page.locator('#gone-view', { hasText: 'This session has ended' }).waitFor();
      await late.context.close();
    });

    await step('home and join pages on a phone', async () => {
      const p = await person(browser, server, 'phone', { viewport: PHONE, isMobile: true, hasTouch: true });
      await p.page.goto(`${server.base}/`);
      await p.page.screenshot({ path: join(shots, 'home-phone.png'), fullPage: true });
      await p.page.getByRole('button', { name: 'Start a session' }).click();
      await p.page.locator('#manage-view').waitFor();
      await waitFor('the QR code', async () => (await darkPixels(p.page, '#qr')).dark > 0);
      await p.page.screenshot({ path: join(shots, 'manage-phone.png'), fullPage: true });
      await p.context.close();
    });

    await step('with the tile server unreachable the map still shows everyone; old positions fade; the dashboard takes ?token=', async () => {
      // Tiles from a local port where nothing listens; positions that live 2 s.
      const tilePort = await freePort();
      const tileOrigin = `http://127.0.0.1:${tilePort}`;
      const other = await startServer({
        TILE_URL: `${tileOrigin}/{z}/{x}/{y}.png`,
        LOCATION_TTL_SECONDS: '2',
        IDLE_UPDATE_INTERVAL_MS: '1500',
        ADMIN_TOKEN: 'browser-test-admin-token-0123456789',
      });
      try {
        const tileFailure = (msg) => (msg.location()?.url ?? '').startsWith(tileOrigin);
        const created = await (await fetch(`${other.base}/api/sessions`, { method: 'POST' })).json();
        const dan = await person(browser, other, 'dan', {
          viewport: PHONE, isMobile: true, hasTouch: true, geolocation: LISBON, permissions: ['geolocation'],
        }, tileFailure);
        const eve = await person(browser, other, 'eve', {
          viewport: LAPTOP, geolocation: ALFAMA, permissions: ['geolocation'],
        }, tileFailure);
        const danId = await joinAs(dan, created.join_link, 'Dan', 'Orange');
        const eveId = await joinAs(eve, created.join_link, 'Eve', 'Purple');
        await marker(dan.page, eveId).waitFor({ state: 'visible' });
        await marker(eve.page, danId).waitFor({ state: 'visible' });
        await waitFor('tiles to fail', async () => (await dan.page.locator('.map-tile.failed').count()) > 0);
        const attribution = dan.page.getByRole('link', { name: '© OpenStreetMap contributors' });
        assert((await attribution.getAttribute('href')) === 'https://www.openstreetmap.org/copyright', 'attribution link');
        await dan.page.screenshot({ path: join(shots, 'no-tile-server-dan-phone.png') });
        await eve.context.close();
        await dan.page.locator(`.marker.stale[data-user-id="${eveId}"] .marker-dot`).waitFor({ timeout: 10_000 });
        await dan.page.locator(`#people li[data-user-id="${eveId}"]`, { hasText: 'Offline · last position' }).waitFor();
        await dan.page.screenshot({ path: join(shots, 'stale-marker-dan-phone.png') });
        await dan.context.close();

        // With ADMIN_TOKEN set, the dashboard opens with ?token=…, which leaves the address bar.
        const ops = await person(browser, other, 'operator', { viewport: LAPTOP });
        await ops.page.goto(`${other.base}/dev/dashboard?token=browser-test-admin-token-0123456789`);
        await ops.page.locator('#dash-updated', { hasText: 'Updated' }).waitFor();
        await ops.page.waitForTimeout(1500);
        assert(!ops.page.url().includes('token'), `the token left the address bar: ${ops.page.url()}`);
        assert(await ops.page.locator('#dash-status').isHidden(), 'no error on the dashboard');
        await ops.context.close();
      } finally {
        await other.stop();
      }
    });

    await step('meeting point: the creator sets it, ETAs show, an arrival is seen, the advised rate follows who looks, and a lock keeps newcomers out', async () => {
      // Short advised intervals, so that fast and idle show within seconds.
      const meet = await startServer({ FAST_UPDATE_INTERVAL_MS: '500', IDLE_UPDATE_INTERVAL_MS: '3000' });
      const PRACA = { latitude: 38.7075, longitude: -9.1364, accuracy: 10 };
      try {
        const host = await person(browser, meet, 'host', { viewport: LAPTOP, geolocation: LISBON, permissions: ['geolocation'] });
        await host.page.goto(`${meet.base}/`);
        await host.page.getByLabel('Name of the session').fill('Dinner');
        // A plain session: here the server computes distances, ETAs and arrivals (SPEC §7).
        await host.page.getByLabel('End-to-end encrypted').uncheck();
        await host.page.getByRole('button', { name: 'Start a session' }).click();
        await host.page.locator('#manage-view').waitFor();
        const meetLink = await host.page.locator('#share-link').inputValue();
        const hostId = await joinAs(host, meetLink, 'Host', 'Teal');

        const ana = await person(browser, meet, 'ana', {
          viewport: PHONE, isMobile: true, hasTouch: true, geolocation: ALFAMA, permissions: ['geolocation'],
        });
        const sent = []; // when Ana's page sent each location_update
        ana.page.on('websocket', (ws) => ws.on('framesent', (f) => {
          if (typeof f.payload === 'string' && f.payload.includes('"location_update"')) sent.push(Date.now());
        }));
        const anaId = await joinAs(ana, meetLink, 'Ana', 'Pink');

        // The creator types the coordinates of the meeting point.
        await host.page.getByLabel('Coordinates').fill(`${PRACA.latitude}, ${PRACA.longitude}`);
        await host.page.getByLabel('Radius (metres)').fill('100');
        await host.page.getByLabel('Label (optional)').fill('Praça do Comércio');
        await host.page.getByRole('button', { name: 'Save meeting point' }).click();
        for (const p of [host.page, ana.page]) {
          await p.locator('.destination .destination-label', { hasText: 'Praça do Comércio' }).waitFor({ state: 'attached' });
          await p.locator('#dest-info', { hasText: 'within 100 m' }).waitFor();
        }

        // Ana walks towards it, 10 m/s, a fix every 250 ms, while the test measures her sends.
        let walked = 0;
        let walking = true;
        const walker = (async () => {
          while (walking) {
            walked += 1;
            const f = Math.min(1, walked * 2.5 / 900);
            await ana.context.setGeolocation({
              latitude: ALFAMA.latitude + (PRACA.latitude - ALFAMA.latitude) * f * 0.5,
              longitude: ALFAMA.longitude + (PRACA.longitude - ALFAMA.longitude) * f * 0.5,
              accuracy: 20,
            });
            await new Promise((r) => setTimeout(r, 250));
          }
        })();
        const countOver = async (ms) => {
          const from = Date.now();
          await new Promise((r) => setTimeout(r, ms));
          return sent.filter((t) => t >= from).length;
        };
        const setVisibility = (page, state) => page.evaluate((v) => {
          Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => v });
          document.dispatchEvent(new Event('visibilitychange'));
        }, state);

        await ana.page.locator('#rate', { hasText: '1 watching · every 0.5 s' }).waitFor();
        const fast = await countOver(3000);
        await setVisibility(host.page, 'hidden');
        await ana.page.locator('#rate', { hasText: 'nobody else watching · every 3 s' }).waitFor({ timeout: 5000 });
        const idle = await countOver(6000);
        assert(fast >= 4, `only ${fast} updates in 3 s while watched`);
        assert(idle <= 3 && idle / 6 < fast / 3 / 2, `${idle} updates in 6 s unwatched against ${fast} in 3 s watched`);
        console.log(`     Ana's sends: ${fast} in 3 s watched, ${idle} in 6 s unwatched`);

        // The host looks again: Ana speeds up, and sends her latest fix at once.
        const shown = Date.now();
        await setVisibility(host.page, 'visible');
        await ana.page.locator('#rate', { hasText: '1 watching · every 0.5 s' }).waitFor({ timeout: 5000 });
        await waitFor('a send right after the speed-up', async () => sent.some((t) => t > shown), 3000);
        assert(sent.find((t) => t > shown) - shown <= 3000, 'Ana did not speed up within 3 s');

        // Walking for over 10 s gives a speed, so an ETA; the host stands still: distance only.
        const anaRow = host.page.locator(`#people li[data-user-id="${anaId}"] .person-progress`);
        await waitFor('Ana\'s distance and ETA on the host\'s list', async () =>
          /^\d+(\.\d)? (m|km) · ~\d+ min$/.test((await anaRow.textContent()) ?? ''), 15_000);
        const hostRow = ana.page.locator(`#people li[data-user-id="${hostId}"] .person-progress`);
        await waitFor('the host\'s distance without ETA on Ana\'s list', async () =>
          /^\d\.\d km$/.test((await hostRow.textContent()) ?? ''));
        await host.page.getByRole('button', { name: 'Fit everyone' }).click();
        // Saving the meeting point scrolled the panel down to the form: the list is what is shown.
        await host.page.locator('#people').scrollIntoViewIfNeeded();
        await ana.page.locator('#people').scrollIntoViewIfNeeded();
        await host.page.waitForTimeout(300);
        await host.page.screenshot({ path: join(shots, 'meeting-point-eta-host-laptop.png') });
        await ana.page.screenshot({ path: join(shots, 'meeting-point-eta-ana-phone.png') });

        // Ana reaches the meeting point.
        walking = false;
        await walker;
        await ana.context.setGeolocation(PRACA);
        await host.page.locator('#notice', { hasText: 'Ana arrived' }).waitFor();
        await waitFor('Ana shown as arrived, first in the list', async () =>
          /^arrived \d\d:\d\d$/.test((await anaRow.textContent()) ?? '')
          && (await host.page.locator('#people li').first().getAttribute('data-user-id')) === anaId);
        await host.page.locator('#people').scrollIntoViewIfNeeded();
        await host.page.screenshot({ path: join(shots, 'meeting-point-arrived-host-laptop.png') });

        // A page opened before the lock learns it from the 403; one opened after, at once.
        const early = await person(browser, meet, 'early', { viewport: PHONE }, (msg) => /403/.test(msg.text()));
        await early.page.goto(meetLink);
        await early.page.locator('#join-view').waitFor();
        await host.page.getByRole('button', { name: 'Lock the session' }).click();
        await ana.page.locator('#locked-badge').waitFor();
        await host.page.getByRole('button', { name: 'Unlock the session' }).waitFor();
        await early.page.locator('#display-name').fill('Early');
        await early.page.getByRole('button', { name: 'Join and share my location' }).click();
        await early.page.locator('#gone-view', { hasText: 'This session is locked' }).waitFor();
        const late = await person(browser, meet, 'late', { viewport: PHONE });
        await late.page.goto(meetLink);
        await late.page.locator('#gone-view', { hasText: 'This session is locked' }).waitFor();
        assert(await late.page.locator('#join-form').isHidden(), 'the join form is still shown');
        await late.page.screenshot({ path: join(shots, 'locked-join-phone.png') });

        // Picking on the map moves the meeting point (and ends the arrivals at the old one).
        await host.page.getByRole('button', { name: 'Set meeting point on the map' }).click();
        const mapBox = await host.page.locator('#map').boundingBox();
        await host.page.mouse.click(mapBox.x + mapBox.width / 3, mapBox.y + mapBox.height / 3);
        await waitFor('the moved meeting point on Ana\'s page', async () =>
          !/^arrived/.test((await ana.page.locator(`#people li[data-user-id="${anaId}"] .person-progress`).textContent()) ?? 'x'));
        for (const who of [host, ana, early, late]) await who.context.close();
      } finally {
        await meet.stop();
      }
    });

    // A third server, with GEOCODER_URL naming a stand-in for Nominatim: the creator finds the
    // meeting point by the place search, clears it, and renames the session.
    const PLACE = { lat: '38.7075185', lon: '-9.1364808', display_name: 'Praça do Comércio, Baixa, Santa Maria Maior, Lisboa, 1100-148, Portugal' };
    // A first part of 100 characters whose last is outside the BMP: two UTF-16 units.
    const LONG = `${'Tasca '.repeat(16)}Sé 🍽`;
    const nominatim = await fakeNominatim((q) => (q === 'tasca' ? [
      { lat: PLACE.lat, lon: PLACE.lon, display_name: `${LONG}, Lisboa, Portugal` },
    ] : [
      PLACE,
      { lat: '41.1496100', lon: '-8.6109900', display_name: 'Praça do Comércio, Vila Nova de Gaia, Porto, Portugal' },
    ]));
    const geo = await startServer({ GEOCODER_URL: nominatim.base });
    const geoPeople = [];
    try {
      let host;
      let kim;
      let geoSid;
      let hostId;
      let kimId;
      const csp = [];
      let refusing = false; // while the server refuses a name on purpose, its 422 is expected

      await step('place search: the creator finds a place through GEOCODER_URL and the others see it as the meeting point', async () => {
        host = await person(browser, geo, 'geo-host', {
          viewport: LAPTOP, geolocation: LISBON, permissions: ['geolocation'], reach: [nominatim.base],
        }, (msg) => refusing && /status of 422/.test(msg.text()));
        geoPeople.push(host);
        // Blocked requests are reported as events too, not only as console errors.
        await host.context.exposeBinding('reportCsp', (_source, text) => csp.push(text));
        await host.context.addInitScript(() => document.addEventListener('securitypolicyviolation',
          (e) => window.reportCsp(`${e.violatedDirective} ${e.blockedURI}`)));
        await host.page.goto(`${geo.base}/`);
        await host.page.getByLabel('Name of the session').fill('Dinner');
        await host.page.getByLabel('End-to-end encrypted').uncheck();
        await host.page.getByRole('button', { name: 'Start a session' }).click();
        await host.page.locator('#manage-view').waitFor();
        const geoLink = await host.page.locator('#share-link').inputValue();
        geoSid = geoLink.split('/').pop();
        const policy = (await fetch(geoLink)).headers.get('content-security-policy') ?? '';
        assert(policy.includes(`connect-src 'self' ws: wss: ${nominatim.base};`), `CSP: ${policy}`);
        hostId = await joinAs(host, geoLink, 'Host', 'Teal');
        kim = await person(browser, geo, 'kim', {
          viewport: PHONE, isMobile: true, hasTouch: true, geolocation: ALFAMA, permissions: ['geolocation'],
        });
        geoPeople.push(kim);
        kimId = await joinAs(kim, geoLink, 'Kim', 'Pink');
        assert(await kim.page.locator('#creator-controls').isHidden(), 'Kim has creator controls');

        await host.page.getByLabel('Search a place').fill('Praça do Comércio');
        await host.page.getByRole('button', { name: 'Search', exact: true }).click();
        const results = host.page.locator('#place-results button');
        await waitFor('two places found', async () => (await results.count()) === 2);
        assert((await results.first().textContent()) === PLACE.display_name, `first place ${await results.first().textContent()}`);
        const asked = nominatim.queries.find((q) => q.q === 'Praça do Comércio');
        assert(asked && asked.format === 'jsonv2', `the stand-in was asked ${JSON.stringify(nominatim.queries)}`);
        await results.last().scrollIntoViewIfNeeded();
        await host.page.screenshot({ path: join(shots, 'place-search-host-laptop.png') });
        await results.first().click();

        const dest = await waitFor('the meeting point through REST', async () =>
          (await (await fetch(`${geo.base}/api/sessions/${geoSid}`)).json()).destination);
        // The page keeps five decimals (about a metre), as for a click on the map.
        assert(Math.abs(dest.lat - Number(PLACE.lat)) <= 5e-6 && Math.abs(dest.lng - Number(PLACE.lon)) <= 5e-6,
          `destination ${dest.lat}, ${dest.lng}`);
        assert(dest.label === 'Praça do Comércio' && dest.radius_m === 100, `destination ${JSON.stringify(dest)}`);
        assert(await host.page.locator('#place-results li').count() === 0, 'the results stay after the pick');
        await kim.page.locator('.destination .destination-label', { hasText: 'Praça do Comércio' }).waitFor({ state: 'attached' });
        await kim.page.locator('#dest-info', { hasText: 'Meeting point: “Praça do Comércio”, within 100 m.' }).waitFor();

        // A long name becomes a label of at most 100 characters, cut between two of them.
        assert(Array.from(LONG).length === 100 && LONG.length === 101, 'the long name is not what it should be');
        await host.page.getByLabel('Search a place').fill('tasca');
        await host.page.getByRole('button', { name: 'Search', exact: true }).click();
        await host.page.locator('#place-results button', { hasText: 'Lisboa, Portugal' }).click();
        await kim.page.locator('#dest-info', { hasText: '🍽' }).waitFor();
        const long = (await (await fetch(`${geo.base}/api/sessions/${geoSid}`)).json()).destination;
        assert(long.label === LONG, `label ${long.label}`);
        assert(await host.page.locator('#dest-error').isHidden(), await host.page.locator('#dest-error').textContent());
        assert(csp.length === 0, `CSP violations: ${csp.join('; ')}`);
        const blocked = problems.filter((p) => /Content Security Policy|CORS/i.test(p));
        assert(blocked.length === 0, blocked.join('\n'));
      });

      await step('the creator clears the meeting point: REST has none, and the other page drops the pin and the figures', async () => {
        // First the figures, on Kim's own row (worked out in her page) and on the host's (from the
        // server, once the host sends a position with the meeting point set).
        await host.context.setGeolocation(BAIXA);
        const kimRows = kim.page.locator('#people li .person-progress');
        const figure = /^\d+(\.\d)? (m|km)( · ~\d+ min)?$/;
        for (const id of [kimId, hostId]) {
          const row = kim.page.locator(`#people li[data-user-id="${id}"] .person-progress`);
          await waitFor(`a distance on Kim's row of ${id === kimId ? 'Kim' : 'the host'}`, async () =>
            figure.test((await row.textContent()) ?? ''));
        }
        await kim.page.locator('.destination').waitFor({ state: 'attached' });

        await host.page.getByRole('button', { name: 'Clear meeting point' }).click();
        await host.page.locator('#dest-summary', { hasText: 'No meeting point yet.' }).waitFor();
        assert(await host.page.getByRole('button', { name: 'Clear meeting point' }).isHidden(), 'the clear button stays');
        const s = await (await fetch(`${geo.base}/api/sessions/${geoSid}`)).json();
        assert(s.destination === null, `destination ${JSON.stringify(s.destination)}`);
        await kim.page.locator('.destination').waitFor({ state: 'detached' });
        await kim.page.locator('#dest-info').waitFor({ state: 'hidden' });
        await waitFor('no distance or ETA left on Kim\'s list', async () =>
          (await kimRows.evaluateAll((spans) => spans.every((e) => e.hidden && !e.textContent))));
        // A later position of the host carries no figure either.
        await host.context.setGeolocation(LISBON);
        await kim.page.waitForTimeout(2000);
        assert(await kimRows.evaluateAll((spans) => spans.every((e) => e.hidden && !e.textContent)), 'a figure came back');
        await kim.page.screenshot({ path: join(shots, 'meeting-point-cleared-kim-phone.png') });
      });

      await step('the creator renames the session: a refused name shows the server\'s reason, a good one reaches everyone', async () => {
        const box = host.page.getByLabel('Name of the session');
        assert((await box.inputValue()) === 'Dinner', `the name box holds ${await box.inputValue()}`);
        // A tab pasted into the name: the server refuses control characters (422).
        await box.fill('Dinner\tat eight');
        refusing = true;
        await host.page.getByRole('button', { name: 'Rename' }).click();
        await host.page.locator('#rename-error', { hasText: 'The name must not contain control characters.' }).waitFor();
        refusing = false;
        assert((await box.getAttribute('aria-invalid')) === 'true', 'the box is not marked invalid');
        assert((await box.inputValue()) === 'Dinner\tat eight', 'the refused name left the box');
        await box.scrollIntoViewIfNeeded();
        await host.page.screenshot({ path: join(shots, 'rename-refused-host-laptop.png') });

        await box.fill('Dinner at eight');
        await host.page.getByRole('button', { name: 'Rename' }).click();
        await host.page.locator('#rename-error').waitFor({ state: 'hidden' });
        assert((await box.getAttribute('aria-invalid')) === null, 'the box stays marked invalid');
        for (const who of [host, kim]) {
          await who.page.locator('#live-title', { hasText: 'Dinner at eight' }).waitFor();
          await waitFor(`the tab title of ${who.label}`, async () => (await who.page.title()).startsWith('Dinner at eight'));
        }
        const s = await (await fetch(`${geo.base}/api/sessions/${geoSid}`)).json();
        assert(s.name === 'Dinner at eight', `name ${s.name}`);
        await kim.page.screenshot({ path: join(shots, 'renamed-kim-phone.png') });
      });
    } finally {
      for (const who of geoPeople) await who.context.close().catch(() => {});
      await geo.stop();
      await nominatim.close();
    }

    await e2eSteps(browser);

    await step('no console error and no page error anywhere', async () => {
      assert(problems.length === 0, problems.join('\n'));
    });
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
}

// ------------------------------------------------------------------ end-to-end encrypted sessions
//
// SPEC §10 in the browser: the page's sealing against docs/e2e-vectors.json; two people joining
// through a link with #k=…; a scan of everything the server got (requests and frames as sent,
// its trace log, its SQLite files, every Redis key of the session and the session's Redis bus)
// for their coordinates and the key; a link without its key and one with a wrong key; a meeting
// point whose distance, ETA and arrival the pages work out themselves; and the lock offered
// after a removal. This server runs on Redis (REDIS_URL, as in production).

const REDIS_URL = process.env.E2E_REDIS_URL ?? 'redis://127.0.0.1:6379';
const E2E_ALICE = { latitude: 48.85661, longitude: 2.35222, accuracy: 12 };
const E2E_ALICE_MOVED = { latitude: 48.85713, longitude: 2.35087, accuracy: 12 };
const E2E_BOB = { latitude: 48.86115, longitude: 2.33643, accuracy: 18 };
const E2E_HOST = { latitude: 48.86483, longitude: 2.32129, accuracy: 25 };
const E2E_MEET = { latitude: 48.85893, longitude: 2.34421 }; // typed by the creator, sealed

/** The ways a coordinate could be written down, in logs, JSON, Redis or SQL. */
function coordinateForms(value) {
  const forms = new Set([String(value), value.toFixed(5), value.toFixed(4)]);
  forms.add(value.toFixed(4).replace('.', ',')); // a decimal comma
  forms.add(String(Math.round(value * 1e5))); // scaled to an integer
  forms.add(String(Math.round(value * 1e6)));
  forms.add(String(Math.round(value * 1e7)));
  return [...forms];
}

/** Every occurrence of any of `needles` in `haystack` (a string), with some context, for the message. */
function findForms(haystack, needles, where) {
  const hits = [];
  for (const n of needles) {
    const i = haystack.indexOf(n);
    if (i >= 0) hits.push(`${where}: "${n}" in …${haystack.slice(Math.max(0, i - 60), i + n.length + 60)}…`);
  }
  return hits;
}

function redisCli(args) {
  const { hostname, port } = new URL(REDIS_URL);
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', ['-h', hostname, '-p', port || '6379', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`redis-cli ${args[0]} exited with ${code}`))));
  });
}

/** Every key of the session in Redis, with its type, TTL and whole value, as text. */
async function dumpRedisSession(sessionId) {
  const keys = (await redisCli(['--scan', '--pattern', `ls:{${sessionId}}:*`])).split('\n').filter(Boolean);
  const parts = [];
  for (const key of keys) {
    const type = (await redisCli(['TYPE', key])).trim();
    const read = {
      string: ['GET', key], hash: ['HGETALL', key], set: ['SMEMBERS', key],
      zset: ['ZRANGE', key, '0', '-1', 'WITHSCORES'], list: ['LRANGE', key, '0', '-1'],
    }[type] ?? ['DUMP', key];
    parts.push(`${key} (${type}, pttl ${(await redisCli(['PTTL', key])).trim()}):\n${await redisCli(read)}`);
  }
  return { keys, text: parts.join('\n') };
}

/** Records everything a person's browser sends: requests (URL, headers, body) and WebSocket frames. */
function recordSent(who, into) {
  who.context.on('request', (req) => {
    into.push(`${req.method()} ${req.url()}\n${JSON.stringify(req.headers())}\n${req.postData() ?? ''}`);
  });
  who.page.on('websocket', (ws) => {
    into.push(`websocket ${ws.url()}`);
    ws.on('framesent', (f) => into.push(typeof f.payload === 'string' ? f.payload : f.payload.toString('latin1')));
    ws.on('framereceived', (f) => received.push(typeof f.payload === 'string' ? f.payload : f.payload.toString('latin1')));
  });
}
const received = []; // every frame the pages of the encrypted session received

/** The page's own sealing module (seal.js under the current asset version). */
function importInPage(page, file) {
  return page.evaluate(async (f) => {
    const base = document.querySelector('script[type="module"]').src.replace(/js\/[^/]+$/, '');
    await import(`${base}js/${f}`);
    return `${base}js/${f}`;
  }, file);
}

async function e2eSteps(browser) {
  const logDir = mkdtempSync(join(tmpdir(), 'ls-e2e-log-'));
  const logFile = join(logDir, 'server.log');
  const server = await startServer({ REDIS_URL, RUST_LOG: 'trace', LOG_FORMAT: 'text' }, { log: logFile });
  const sent = []; // everything the browsers sent to this server
  const bus = { text: '', proc: null }; // the session's Redis pub/sub channel, as Redis carried it
  const ctx = { ids: {} };
  const people = [];
  const expected403 = (msg) => /403/.test(msg.text());
  const join403 = async (name, options, expect) => {
    const p = await person(browser, server, name, options, expect);
    people.push(p);
    recordSent(p, sent);
    return p;
  };
  try {
    await step('e2e: the page seals and opens as docs/e2e-vectors.json says (AES-256-GCM, padding, additional data)', async () => {
      const file = join(here, '..', '..', 'docs', 'e2e-vectors.json');
      const { vectors } = JSON.parse(readFileSync(file, 'utf8'));
      assert(Array.isArray(vectors) && vectors.length > 0, 'no vectors');
      const p = await join403('vectors', { viewport: LAPTOP });
      await p.page.goto(`${server.base}/`);
      const url = await importInPage(p.page, 'seal.js');
      const results = await p.page.evaluate(async ({ url: u, vectors: vs }) => {
        const m = await import(u);
        const out = [];
        for (const v of vs) {
          const key = await m.importKey(v.key);
          const iv = m.b64urlDecode(v.iv);
          const bytes = new TextEncoder().encode(v.plaintext);
          const object = JSON.parse(v.plaintext);
          const sealedBytes = await m.sealBytes(key, v.aad, bytes, iv);
          const sealedObject = await m.seal(key, v.aad, object, iv);
          const opened = await m.open(key, v.aad, v.sealed);
          const other = await m.importKey(m.newKeyText());
          const tampered = v.sealed.slice(0, 40) + (v.sealed[40] === 'A' ? 'B' : 'A') + v.sealed.slice(41);
          out.push({
            description: v.description,
            aad: m.aadOf(v.session_id, v.user_id) === v.aad,
            padded: new TextDecoder().decode(m.padded(object)) === v.plaintext,
            sealedBytes: sealedBytes === v.sealed,
            sealedObject: sealedObject === v.sealed,
            opened: JSON.stringify(opened) === JSON.stringify(object),
            wrongAad: (await m.open(key, `${v.session_id}:someone-else`, v.sealed)) === null,
            wrongKey: (await m.open(other, v.aad, v.sealed)) === null,
            tampered: (await m.open(key, v.aad, tampered)) === null,
          });
        }
        // A fresh IV per message: the same position sealed twice differs, and is 379 characters.
        const key = await m.importKey(m.newKeyText());
        const fix = m.locationPlaintext({ lat: 1.5, lng: 2.5 }, Date.UTC(2026, 11, 2));
        const a = await m.seal(key, 's:u', fix);
        const b = await m.seal(key, 's:u', fix);
        out.push({ description: 'fresh IVs', fresh: a !== b && a.slice(0, 16) !== b.slice(0, 16), length: a.length === 379 && b.length === 379 });
        return out;
      }, { url, vectors });
      const bad = results.filter((r) => Object.entries(r).some(([k, v]) => k !== 'description' && v !== true));
      assert(bad.length === 0, `vectors that do not match: ${JSON.stringify(bad)}`);
      console.log(`     ${vectors.length} vectors matched`);
      await p.context.close();
    });

    await step('e2e: two browsers join through a link with #k=, see each other move; the key leaves the address bar; a lock badge shows', async () => {
      const host = await join403('e2e-host', { viewport: LAPTOP, geolocation: E2E_HOST, permissions: ['geolocation'] });
      await host.page.goto(`${server.base}/`);
      assert(await host.page.getByLabel('End-to-end encrypted').isChecked(), 'end-to-end encryption is not on by default');
      await host.page.getByLabel('Name of the session').fill('Secret dinner');
      await host.page.getByRole('button', { name: 'Start a session' }).click();
      await host.page.locator('#manage-view').waitFor();
      const link = await host.page.locator('#share-link').inputValue();
      const m = /^(http:\/\/127\.0\.0\.1:\d+\/join\/([0-9a-f-]{36}))#k=([A-Za-z0-9_-]{43})$/.exec(link);
      assert(m, `the link has no key: ${link}`);
      Object.assign(ctx, { link, plainLink: m[1], key: m[3] });
      ctx.ids.session = m[2];
      const info = await (await fetch(`${server.base}/api/sessions/${ctx.ids.session}`)).json();
      assert(info.e2e === true, `GET says e2e ${info.e2e}`);
      await host.page.locator('#e2e-note').waitFor();
      // From now on, the session's Redis bus is recorded as Redis carries it.
      bus.proc = spawn('redis-cli', ['-h', new URL(REDIS_URL).hostname, '-p', new URL(REDIS_URL).port || '6379',
        'SUBSCRIBE', `ls:bus:{${ctx.ids.session}}`], { stdio: ['ignore', 'pipe', 'ignore'] });
      bus.proc.stdout.on('data', (d) => { bus.text += d; });
      // The QR code drawn on the page is the one of the whole link, key included.
      const qrUrl = await importInPage(host.page, 'qrcode.js');
      const qrMismatch = await waitFor('the QR code', () => host.page.evaluate(async ({ u, text }) => {
        const { encodeQr } = await import(u);
        const q = encodeQr(text);
        const canvas = document.getElementById('qr');
        const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        const scale = canvas.width / (q.size + 8);
        let wrong = 0;
        for (let y = 0; y < q.size; y++) {
          for (let x = 0; x < q.size; x++) {
            const px = Math.floor((x + 4.5) * scale);
            const py = Math.floor((y + 4.5) * scale);
            const dark = data[(py * canvas.width + px) * 4] < 128;
            if (dark !== (q.modules[y * q.size + x] === '1')) wrong += 1;
          }
        }
        return canvas.width > 0 && !canvas.hidden ? { wrong } : null;
      }, { u: qrUrl, text: link }));
      assert(qrMismatch.wrong === 0, `${qrMismatch.wrong} QR modules differ from the link's`);
      await host.page.screenshot({ path: join(shots, 'e2e-manage-laptop.png'), fullPage: true });

      // The creator opens the map from this page (the key goes along in the fragment).
      await host.page.locator('#open-map').click();
      await host.page.locator('#join-view').waitFor();
      await host.page.locator('#display-name').fill('Host');
      await host.page.getByLabel('Teal', { exact: true }).check();
      await host.page.getByRole('button', { name: 'Join and share my location' }).click();
      await host.page.locator('#conn[data-state="live"]').waitFor();
      ctx.ids.host = await host.page.evaluate(() => JSON.parse(localStorage.getItem(`ls.me.${location.pathname.split('/')[2]}`)).user_id);

      const alice = await join403('e2e-alice', {
        viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2, geolocation: E2E_ALICE, permissions: ['geolocation'],
      });
      const bob = await join403('e2e-bob', { viewport: LAPTOP, geolocation: E2E_BOB, permissions: ['geolocation'] });
      ctx.ids.alice = await joinAs(alice, link, 'Alice', 'Blue');
      ctx.ids.bob = await joinAs(bob, link, 'Bob', 'Red');
      Object.assign(ctx, { host, alice, bob });
      for (const who of [alice, bob, host]) {
        assert(!who.page.url().includes('#'), `the fragment is still in ${who.label}'s address bar: ${who.page.url()}`);
        assert(!who.page.url().includes(ctx.key), `the key is in ${who.label}'s address bar`);
        await who.page.locator('#e2e-badge', { hasText: 'End-to-end encrypted' }).waitFor();
        await who.page.locator('#geo-status', { hasText: 'Sharing your position' }).waitFor();
      }
      // The key stayed in the tab: a reload still opens the session.
      await bob.page.reload();
      await bob.page.locator('#conn[data-state="live"]').waitFor();
      await marker(alice.page, ctx.ids.bob).waitFor({ state: 'visible' });
      await marker(bob.page, ctx.ids.alice).waitFor({ state: 'visible' });
      await marker(host.page, ctx.ids.alice).waitFor({ state: 'visible' });
      assert((await label(bob.page, ctx.ids.alice).textContent()) === 'Alice', 'Alice label');
      await bob.page.getByRole('button', { name: 'Fit everyone' }).click();
      const before = await box(marker(bob.page, ctx.ids.alice));
      await alice.context.setGeolocation(E2E_ALICE_MOVED);
      await waitFor('Alice to move on Bob\'s map', async () => {
        const now = await box(marker(bob.page, ctx.ids.alice));
        return Math.hypot(now.x - before.x, now.y - before.y) > 5;
      });
      // What went over the socket: sealed positions only.
      const frames = sent.filter((t) => t.includes('"location_update"'));
      assert(frames.length >= 3 && frames.every((t) => t.includes('"sealed"') && !t.includes('"lat"')), 'a clear location_update went out');
      assert(await bob.page.locator('#e2e-status').isHidden(), 'Bob was told some messages did not open');
    });

    await step('e2e: the meeting point is sealed; distance, ETA and the arrival are worked out in the pages', async () => {
      const { host, alice, bob } = ctx;
      await host.page.getByLabel('Coordinates').fill(`${E2E_MEET.latitude}, ${E2E_MEET.longitude}`);
      await host.page.getByLabel('Radius (metres)').fill('100');
      await host.page.getByLabel('Label (optional)').fill('Pont des Arts');
      await host.page.getByRole('button', { name: 'Save meeting point' }).click();
      for (const p of [host.page, alice.page, bob.page]) {
        await p.locator('#dest-info', { hasText: 'Meeting point: “Pont des Arts”, within 100 m.' }).waitFor();
        await p.locator('.destination .destination-label', { hasText: 'Pont des Arts' }).waitFor({ state: 'attached' });
      }
      const put = sent.find((t) => t.startsWith('PUT ') && t.includes('/destination'));
      assert(put && /\{"sealed":"[A-Za-z0-9_-]+"\}$/.test(put), `the destination went out as ${put}`);
      // Bob stands still: a distance and no ETA, on Alice's list and on his own row.
      const bobOnAlice = alice.page.locator(`#people li[data-user-id="${ctx.ids.bob}"] .person-progress`);
      await waitFor('Bob\'s distance on Alice\'s list', async () => /^\d+ m$|^\d\.\d km$/.test((await bobOnAlice.textContent()) ?? ''));
      const bobOwn = bob.page.locator(`#people li[data-user-id="${ctx.ids.bob}"] .person-progress`);
      assert((await bobOwn.textContent()) === (await bobOnAlice.textContent()), 'Bob and Alice disagree on Bob\'s distance');
      // Alice walks towards it for 14 s (about 13 m/s), so that a speed and so an ETA show.
      const aliceOnBob = bob.page.locator(`#people li[data-user-id="${ctx.ids.alice}"] .person-progress`);
      const started = Date.now();
      let eta = null;
      while (Date.now() - started < 25_000) {
        const f = Math.min(0.6, ((Date.now() - started) / 14_000) * 0.6);
        await alice.context.setGeolocation({
          latitude: E2E_ALICE_MOVED.latitude + (E2E_MEET.latitude - E2E_ALICE_MOVED.latitude) * f,
          longitude: E2E_ALICE_MOVED.longitude + (E2E_MEET.longitude - E2E_ALICE_MOVED.longitude) * f,
          accuracy: 12,
        });
        const text = (await aliceOnBob.textContent()) ?? '';
        if (/^\d+ m · ~\d+ min$/.test(text)) {
          eta = text;
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      assert(eta, `no ETA for Alice on Bob's list: "${await aliceOnBob.textContent()}"`);
      console.log(`     Alice on Bob's list: ${eta}`);
      await bob.page.locator('#people').scrollIntoViewIfNeeded();
      await bob.page.screenshot({ path: join(shots, 'e2e-meeting-point-eta-bob-laptop.png') });
      // She reaches it: every page says so, and lists her first.
      await alice.context.setGeolocation({ ...E2E_MEET, accuracy: 12 });
      for (const p of [bob.page, host.page]) {
        await p.locator('#notice', { hasText: 'Alice arrived' }).waitFor();
        await waitFor('Alice arrived, first in the list', async () =>
          /^arrived \d\d:\d\d$/.test((await p.locator(`#people li[data-user-id="${ctx.ids.alice}"] .person-progress`).textContent()) ?? '')
          && (await p.locator('#people li').first().getAttribute('data-user-id')) === ctx.ids.alice);
      }
      await alice.page.locator('#notice', { hasText: 'You arrived at the meeting point.' }).waitFor();
      // The server measured nothing: no figure and no arrival in what it sent.
      const measured = received.filter((t) => /distance_m|eta_s|participant_arrived/.test(t));
      assert(measured.length === 0, `the server sent figures: ${measured[0]}`);
      await bob.page.getByRole('button', { name: 'Fit everyone' }).click();
      await bob.page.waitForTimeout(300);
      await bob.page.screenshot({ path: join(shots, 'e2e-map-bob-laptop.png') });
      await alice.page.screenshot({ path: join(shots, 'e2e-map-alice-phone.png') });
    });

    await step('e2e: a late joiner opens the snapshot; a link without its key and one with a wrong key say so and show no position', async () => {
      const carol = await join403('e2e-carol', { viewport: PHONE, isMobile: true, hasTouch: true });
      await joinAs(carol, ctx.link, 'Carol', 'Green');
      for (const id of [ctx.ids.alice, ctx.ids.bob, ctx.ids.host]) await marker(carol.page, id).waitFor({ state: 'visible' });
      await carol.page.locator('#dest-info', { hasText: 'Pont des Arts' }).waitFor();
      await waitFor('Alice arrived on Carol\'s list', async () =>
        /^arrived /.test((await carol.page.locator(`#people li[data-user-id="${ctx.ids.alice}"] .person-progress`).textContent()) ?? ''));
      assert(await carol.page.locator('#e2e-status').isHidden(), 'Carol was told some messages did not open');
      await carol.context.close();

      const nokey = await join403('e2e-nokey', { viewport: PHONE });
      await nokey.page.goto(ctx.plainLink);
      await nokey.page.locator('#gone-view', { hasText: 'This link is missing its key' }).waitFor();
      assert(await nokey.page.locator('#join-form').isHidden() && (await nokey.page.locator('.marker').count()) === 0, 'a keyless page shows the form or a position');
      await nokey.page.screenshot({ path: join(shots, 'e2e-missing-key-phone.png') });
      await nokey.context.close();

      const wrong = await join403('e2e-wrongkey', { viewport: PHONE });
      const wrongKey = ctx.key.startsWith('A') ? `B${ctx.key.slice(1)}` : `A${ctx.key.slice(1)}`;
      await joinAs(wrong, `${ctx.plainLink}#k=${wrongKey}`, 'Mallory', 'Brown');
      await wrong.page.locator('#e2e-status', { hasText: 'Wrong key' }).waitFor();
      await wrong.page.waitForTimeout(2500); // more positions come, and open no better
      const markers = await wrong.page.locator('.marker').count();
      assert(markers === 0, `${markers} markers on a page with the wrong key`);
      assert((await wrong.page.locator('#dest-info').isHidden()), 'a meeting point is shown with the wrong key');
      await wrong.page.screenshot({ path: join(shots, 'e2e-wrong-key-phone.png') });
      await wrong.context.close();
      // While everyone's sealed position lives (for the scan below).
      ctx.redis = await dumpRedisSession(ctx.ids.session);
    });

    await step('e2e: removing someone offers to lock the session, and the lock keeps them out', async () => {
      const { host, bob, alice } = ctx;
      const row = host.page.locator(`#people li[data-user-id="${ctx.ids.bob}"]`);
      await row.getByRole('button', { name: 'Remove Bob' }).click();
      await bob.page.locator('#banner', { hasText: 'You were removed from this session' }).waitFor();
      const offer = host.page.locator('#lock-offer');
      await offer.locator('#lock-offer-text', { hasText: 'Bob still has the link and could join again' }).waitFor();
      await host.page.screenshot({ path: join(shots, 'e2e-lock-offer-laptop.png') });
      await offer.getByRole('button', { name: 'Lock the session' }).click();
      await offer.locator('#lock-offer-text', { hasText: 'The session is locked' }).waitFor();
      await alice.page.locator('#locked-badge').waitFor();
      // Bob still has the link (and its key): the lock keeps him out.
      const again = await join403('e2e-bob-again', { viewport: LAPTOP }, expected403);
      await again.page.goto(ctx.link);
      await again.page.locator('#gone-view', { hasText: 'This session is locked' }).waitFor();
    });

    await step('e2e: nothing the server received holds a coordinate or the key (requests, frames, trace log, SQLite, Redis keys, Redis bus)', async () => {
      const forms = [E2E_ALICE, E2E_ALICE_MOVED, E2E_BOB, E2E_HOST, E2E_MEET]
        .flatMap((p) => [...coordinateForms(p.latitude), ...coordinateForms(p.longitude)]);
      const secrets = [...forms, ctx.key];
      const { redis } = ctx;
      assert(redis.keys.some((k) => k.includes(':loc:')), `no sealed position in Redis: ${redis.keys.join(', ')}`);
      assert(/"sealed"|[A-Za-z0-9_-]{379}/.test(redis.text), 'the positions in Redis are not sealed ones');
      const sqlite = readdirSync(server.dir).filter((f) => f.startsWith('db.sqlite3'))
        .map((f) => readFileSync(join(server.dir, f)).toString('latin1')).join('\n');
      for (const p of people) await p.context.close().catch(() => {});
      await server.stop(); // so that its log is complete
      const hits = [
        ...findForms(sent.join('\n'), secrets, 'sent by the browsers'),
        ...findForms(redis.text, secrets, 'Redis keys'),
        ...findForms(bus.text, secrets, 'Redis bus'),
        ...findForms(sqlite, secrets, 'SQLite'),
        ...findForms(readFileSync(logFile, 'utf8'), secrets, 'server log'),
      ];
      assert(hits.length === 0, hits.join('\n'));
      // What was scanned is the real thing: each holds what it should.
      assert(bus.text.includes('sealed_location'), 'the Redis bus carried no sealed position: was it recorded?');
      assert(readFileSync(logFile, 'utf8').includes(ctx.ids.session) && /TRACE/.test(readFileSync(logFile, 'utf8')), 'the trace log was not captured');
      assert(sqlite.includes(ctx.ids.session), 'the SQLite files were not read');
      console.log(`     scanned ${sent.length} requests and frames, ${redis.keys.length} Redis keys, ${bus.text.length} bytes of bus, `
        + `${sqlite.length} bytes of SQLite, ${readFileSync(logFile).length} bytes of trace log, for ${forms.length} forms of 10 coordinates`);
    });
  } finally {
    bus.proc?.kill();
    for (const p of people) await p.context.close().catch(() => {});
    await server.stop();
    rmSync(logDir, { recursive: true, force: true });
  }
}

main()
  .catch((err) => {
    if (!failed) failed += 1;
    console.error(err.stack ?? String(err));
    if (problems.length) console.error(problems.join('\n'));
  })
  .finally(() => {
    console.log(`\nbrowser: ${passed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  });
