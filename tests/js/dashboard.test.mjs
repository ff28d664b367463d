// The dashboard in a real browser against the real local stack: Debian's Chromium (playwright-core)
// loads the page that `devhost start` serves from dashboard/, which talks to the real handler
// (Negotiate, GetDeviceState) and the in-process local SignalR Service; devices send telemetry
// through devhost's IoT Hub HTTP endpoint, so each reading goes IoT Hub → EventTrigger → Table
// Storage (the private Azurite of tests/run.sh) → SignalR → page. The app is the repository's,
// with local.settings.sample.json's settings (tests/js/lib/stack.mjs).
//
// Checked: a device appears after its first message (how long it took is reported, not asserted:
// the 2 s target is measured by bench/dashboard.sh); values and counts update (zero is shown and
// charted as zero); a silent device turns stale; hostile device ids show literally and
// run nothing; the page reconnects by itself after devhost restarts; no console error (apart from
// the browser's own connection-refused lines while devhost is down). Screenshots (desktop,
// phone, dark) go to <build>/test-output/dashboard/. How the page holds up under 200 devices x
// 10 messages/s is a benchmark (bench/dashboard.sh), not a test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { TableClient } from '@azure/data-tables';
import { startDevhost, waitFor, repoRoot } from './lib/devhost.mjs';
import { makeStackApp } from './lib/stack.mjs';
import { addDevice, nodeToken, sendEvent } from './lib/iothub.mjs';
import { launchChromium, openDashboard, dashboardRow, clickDashboardRow } from './lib/browser.mjs';

const CONN = process.env.TEST_STORAGE_CONNECTION;
const OUT = path.join(repoRoot, process.env.ENVIROMON_BUILD || 'build/release', 'test-output', 'dashboard');
const STALE_S = 4;                          // the page's stale time (?stale=), short for the test
const XSS_ID = '<img src=x onerror=alert(1)>';                 // not a valid IoT Hub id
const XSS_SCRIPT_ID = '<script>alert(2)</script>';
const HUB_HOSTILE_ID = "x'-alert(1)-';$(id)@=!*%3Cb%3E(),.:+_";  // every character IoT Hub allows

let app, dh, chromium, page, rec;
const devices = new Map();                  // id → {key}
let downWindow = null;                      // [from, to] ms while devhost was stopped

/** Register a device with the local IoT Hub (once); returns {id, key}. */
function register(id) {
  let d = devices.get(id);
  if (!d) {
    d = addDevice(id, dh.data);
    devices.set(id, d);
  }
  return d;
}

/** Send one reading from a device through the local IoT Hub (registering it first); expects 204. */
async function send(id, body) {
  const d = register(id);
  const r = await sendEvent(dh.url, id, nodeToken(id, d.key), JSON.stringify(body), { 'Content-Type': 'application/json' });
  assert.equal(r.status, 204, `IoT Hub refused ${id}: ${r.status} ${r.body}`);
}

// --- reading the page ---------------------------------------------------------------------

const rowOf = (id, p = page) => dashboardRow(p, id);
const clickRow = (id, p = page) => clickDashboardRow(p, id);
const connState = () => page.evaluate(() => document.getElementById('conn').dataset.state);

async function waitRow(id, pred, { timeoutMs = 10000, what, page: p = page } = {}) {
  return waitFor(async () => { const r = await rowOf(id, p); return r && pred(r) ? r : null; },
    { timeoutMs, intervalMs: 25, what: what ?? `row of ${JSON.stringify(id)}` });
}

const openPage = (context, query = `?stale=${STALE_S}`) => openDashboard(context, dh.url.replace('127.0.0.1', 'localhost'), query);

before(async () => {
  assert.ok(CONN, 'TEST_STORAGE_CONNECTION must be set (run through tests/run.sh)');
  for (const f of ['signalr.min.js', 'uPlot.iife.min.js', 'uPlot.min.css']) {
    assert.ok(fs.existsSync(path.join(repoRoot, 'dashboard', 'vendor', f)), `dashboard/vendor/${f} is missing: run make`);
  }
  fs.mkdirSync(OUT, { recursive: true });
  // The repository's app with the dashboard folder, as devhost start serves it.
  app = await makeStackApp({ tag: 'dashboard' });
  fs.symlinkSync(path.join(repoRoot, 'dashboard'), path.join(app.root, 'dashboard'));
  const PK = app.pk;
  // Rows already in storage before the page loads: they reach it through the snapshot.
  const tc = TableClient.fromConnectionString(CONN, app.table, { allowInsecureConnection: true });
  await tc.createTable();
  const seen = new Date(Date.now() - 3600_000);
  await tc.createEntity({ partitionKey: PK, rowKey: 'seeded-freezer', DeviceId: 'seeded-freezer', Celsius: 0, Humidity: 0,
    hPa: 1001.5, Count: { value: '41', type: 'Int64' }, InvalidCount: { value: '2', type: 'Int64' }, LastSeen: seen, Schema: 1 });
  await tc.createEntity({ partitionKey: PK, rowKey: XSS_ID, DeviceId: XSS_ID, Celsius: 19.5,
    Count: { value: '1', type: 'Int64' }, LastSeen: seen, Schema: 1 });
  dh = await startDevhost(app.root, { args: ['--no-mqtt'] });
  chromium = await launchChromium();
});

after(async () => {
  await chromium?.close();
  await dh?.stop();
  if (dh) fs.rmSync(dh.data, { recursive: true, force: true });
  app?.cleanup();
});

test('devhost serves the page with a CSP that allows no inline script, and the page connects', async () => {
  const res = await fetch(`${dh.url}/`);
  assert.equal(res.status, 200);
  const csp = res.headers.get('content-security-policy');
  assert.ok(csp, 'a Content-Security-Policy header');
  const scriptSrc = /script-src ([^;]*)/.exec(csp)?.[1] ?? /default-src ([^;]*)/.exec(csp)[1];
  assert.doesNotMatch(scriptSrc, /unsafe-inline|unsafe-eval/);
  const html = await res.text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline <script>');
  assert.doesNotMatch(html, /\son[a-z]+=|\sstyle=|<style/i, 'no inline handlers or styles');
  assert.doesNotMatch(html, /https?:\/\/(?!localhost)/i, 'nothing from another site');

  const ctx = await chromium.browser.newContext({ viewport: { width: 1440, height: 900 } });
  ({ p: page, r: rec } = await openPage(ctx));
  // The snapshot: rows written before the page loaded, zero shown as zero, counts as stored.
  const freezer = await waitRow('seeded-freezer', () => true);
  assert.equal(freezer.temp, '0.0');
  assert.equal(freezer.humidity, '0.0');
  assert.equal(freezer.accepted, '41');
  assert.equal(freezer.invalid, '2');
  assert.equal(freezer.status, 'stale', 'last seen an hour ago');
});

test('a device appears after its first message, with its values; values and counts update', async (t) => {
  register('lab-1');
  const t0 = Date.now();
  await send('lab-1', { temperature: 21.5, humidity: 40.25, pressure: 1013.2, light: 300 });
  // A generous deadline, not a timing target: a loaded CI machine must not fail this. The 2 s
  // target is bench/dashboard.sh's (docs/benchmarks.md, "Dashboard").
  const first = await waitRow('lab-1', () => true, { timeoutMs: 30000 });
  t.diagnostic(`lab-1 appeared ${Date.now() - t0} ms after its first message was sent (the 2 s target is measured by bench/dashboard.sh)`);
  assert.deepEqual([first.temp, first.humidity, first.pressure, first.accepted, first.status], ['21.5', '40.3', '1013.2', '1', 'online']);

  await send('lab-1', { temperature: 0, humidity: 41 });
  await send('lab-1', { temperature: 0, humidity: 42 });
  const later = await waitRow('lab-1', (r) => r.accepted === '3');
  assert.equal(later.temp, '0.0', 'zero °C is shown as 0.0');
  assert.equal(later.humidity, '42.0');
  assert.equal(later.pressure, '1013.2', 'a field the message lacked keeps its value');

  // Chart it: click the row; the temperature chart holds the zero readings as values.
  await clickRow('lab-1');
  await waitRow('lab-1', (r) => r.charted);
  const plotted = await page.waitForFunction((id) => {
    const c = window.enviromon.charts;
    const k = c.devices.findIndex((d) => d.id === id);
    const temps = k >= 0 && c.data ? c.data[0][k + 1].filter((v) => v !== undefined && v !== null) : [];
    return temps.length >= 3 ? temps : null;
  }, 'lab-1', { timeout: 5000 });
  assert.deepEqual(await plotted.jsonValue(), [21.5, 0, 0]);
  const legend = await page.evaluate(() => [...document.querySelectorAll('#legend li')].map((li) => li.textContent));
  assert.ok(legend.some((t) => t.startsWith('lab-1') && t.includes('0.0')), `legend: ${JSON.stringify(legend)}`);
});

test('hostile device ids are shown as text and run nothing', async () => {
  // Through IoT Hub: an id made of every punctuation character IoT Hub allows.
  await send(HUB_HOSTILE_ID, { temperature: -5.5 });
  assert.equal((await waitRow(HUB_HOSTILE_ID, () => true)).temp, '-5.5');
  // Markup is no valid IoT Hub id: it can only arrive as a pushed message (SendSignalrMessage)
  // or a snapshot row (seeded before load). Both shapes, and the original's PascalCase.
  const push = async (body) => {
    const r = await fetch(`${dh.url}/api/SendSignalrMessage`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(r.status, 202, await r.text());
  };
  await push({ deviceId: XSS_ID, temperature: 7.25, count: 2, lastSeen: new Date().toISOString() });
  await push([{ DeviceId: XSS_SCRIPT_ID, Celsius: 12.5, Count: 1, Timestamp: new Date().toISOString() }]);
  const xss = await waitRow(XSS_ID, (r) => r.accepted === '2');
  assert.deepEqual([xss.id, xss.temp], [XSS_ID, '7.3'], 'the id shown literally, as text');
  const xssScript = await waitRow(XSS_SCRIPT_ID, () => true);
  assert.deepEqual([xssScript.id, xssScript.temp], [XSS_SCRIPT_ID, '12.5']);
  assert.equal((await rowOf(HUB_HOSTILE_ID)).id, HUB_HOSTILE_ID);
  // Select them so the ids reach the chart legend too.
  for (const id of [XSS_ID, XSS_SCRIPT_ID]) await clickRow(id);
  await page.waitForFunction((ids) => {
    const names = [...document.querySelectorAll('#legend .name')].map((e) => e.textContent);
    return ids.every((id) => names.includes(id));
  }, [XSS_ID, XSS_SCRIPT_ID], { timeout: 5000 });
  await page.waitForTimeout(500);          // an injected onerror would have fired by now
  const dom = await page.evaluate(() => ({
    injected: document.querySelectorAll('img[src="x"], #devices-body img, #devices-body script, #legend img, #legend script').length,
    inlineScripts: [...document.scripts].filter((s) => !s.src).length,
  }));
  assert.deepEqual(dom, { injected: 0, inlineScripts: 0 });
  assert.deepEqual(rec.dialogs(), [], 'no dialog opened');
});

test('a device that goes silent turns stale, and online again when it reports', async () => {
  await send('lab-2', { temperature: 18 });
  await waitRow('lab-2', (r) => r.status === 'online');
  const quietSince = Date.now();
  // lab-3 keeps reporting meanwhile: only the silent one goes stale.
  let stop = false;
  const chatter = (async () => { while (!stop) { await send('lab-3', { temperature: 22 }); await new Promise((r) => setTimeout(r, 700)); } })();
  const stale = await waitRow('lab-2', (r) => r.status === 'stale', { timeoutMs: (STALE_S + 10) * 1000 });
  const after = Date.now() - quietSince;
  assert.ok(after >= STALE_S * 1000 - 1000, `stale after ${after} ms, earlier than ${STALE_S} s of silence`);
  assert.match(stale.seen, /s ago$/);
  assert.equal((await rowOf('lab-3')).status, 'online');
  stop = true;
  await chatter;
  await send('lab-2', { temperature: 18.5 });
  await waitRow('lab-2', (r) => r.status === 'online' && r.temp === '18.5');
});

test('the page recovers by itself after devhost restarts; history survives', async () => {
  const historyBefore = await page.evaluate((id) => window.enviromon.store.devices.get(id).history.length, 'lab-1');
  downWindow = [Date.now(), null];
  await dh.stop('SIGTERM');
  await waitFor(async () => (await connState()) !== 'connected', { timeoutMs: 10000, what: 'the page to notice devhost stopped' });
  const shown = await page.evaluate(() => document.getElementById('conn-text').textContent);
  assert.match(shown, /Reconnecting|Offline|Connecting/);
  await new Promise((r) => setTimeout(r, 1500));
  dh = await startDevhost(app.root, { port: dh.port, data: dh.data, args: ['--no-mqtt'] });
  // No reload, no click: the page reconnects on its own (its retry waits at most ~20 s).
  await waitFor(async () => (await connState()) === 'connected', { timeoutMs: 45000, what: 'the page to reconnect' });
  downWindow[1] = Date.now();
  await send('lab-1', { temperature: 23.75 });
  await waitRow('lab-1', (r) => r.temp === '23.8' && r.accepted === '4');
  const historyAfter = await page.evaluate((id) => window.enviromon.store.devices.get(id).history.length, 'lab-1');
  assert.ok(historyAfter > historyBefore, `chart history kept across the reconnect (${historyBefore} → ${historyAfter})`);
});

test('screenshots: desktop, phone and dark', async () => {
  // Three views of the same rooms as they report: this page, a phone, and a dark desktop.
  const phoneCtx = await chromium.browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const darkCtx = await chromium.browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'dark' });
  const phone = await openPage(phoneCtx, '?stale=60');
  const dark = await openPage(darkCtx, '?stale=60');
  const rooms = ['greenhouse', 'office-north', 'office-south', 'server-room', 'warehouse', 'lobby'];
  const round = (k) => Promise.all(rooms.map((room, i) => send(room, {
    temperature: +(19 + i * 1.7 + Math.sin(k / 2 + i) * 1.2).toFixed(2),
    humidity: +(38 + i * 4 + Math.cos(k / 3 + i) * 3).toFixed(1),
    pressure: +(1009 + i * 0.8 + Math.sin(k / 4) * 0.6).toFixed(1),
    light: Math.round(200 + 50 * i + 40 * Math.sin(k)),
  })));
  await round(0);
  for (const p of [page, phone.p, dark.p]) {    // chart four rooms over everything since load
    await waitRow('lobby', () => true, { page: p });
    if (await p.isVisible('#clear')) await p.click('#clear');
    for (const room of ['greenhouse', 'office-north', 'server-room', 'warehouse']) await clickRow(room, p);
    await p.click('[data-window="all"]');
  }
  const ROUNDS = 10;
  for (let k = 1; k < ROUNDS; k++) {
    await new Promise((r) => setTimeout(r, 400));
    await round(k);
  }
  for (const p of [page, phone.p, dark.p]) {
    await waitRow('lobby', (r) => r.accepted === String(ROUNDS), { page: p });
    await p.evaluate(() => window.scrollTo(0, 0));
  }
  await page.waitForTimeout(400);           // a chart redraw
  await page.screenshot({ path: path.join(OUT, 'desktop.png') });
  await phone.p.screenshot({ path: path.join(OUT, 'phone.png'), fullPage: true });
  await dark.p.screenshot({ path: path.join(OUT, 'desktop-dark.png') });
  for (const x of [phone, dark]) assert.deepEqual(x.r.errors(), [], 'no console error on the phone and dark pages');
  await phoneCtx.close();
  await darkCtx.close();
  for (const f of ['desktop.png', 'phone.png', 'desktop-dark.png']) assert.ok(fs.statSync(path.join(OUT, f)).size > 10_000, f);
});

test('no console error or uncaught exception on the page the whole time', () => {
  // While devhost was stopped the browser itself logs each refused connection ("Failed to load
  // resource: net::ERR_CONNECTION_REFUSED"); that is the network, not the page. Nothing else.
  const refused = (e) => e.kind === 'console' && downWindow && e.at >= downWindow[0] && e.at <= (downWindow[1] ?? Infinity) + 1000 &&
    /^Failed to load resource: net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE|CONNECTION_CLOSED)/.test(e.text);
  assert.deepEqual(rec.errors(refused).map((e) => e.text), []);
  assert.deepEqual(rec.dialogs(), []);
});
