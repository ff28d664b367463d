// The dashboard's DOM-free modules (dashboard/js/*.js, loaded as the browser loads them, as ES
// modules): reading pushes and snapshots in every accepted shape, merging them whatever order
// they arrive in, staleness on a skewed clock, bounded chart history, the charts' time
// alignment, formatting (zero is a value), and where the page finds its API.
// The page as a whole is tested in a real browser by dashboard.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMessage, normaliseDevice, DeviceStore, ServerClock, compareState } from '../../dashboard/js/model.js';
import { History } from '../../dashboard/js/history.js';
import { alignSeries } from '../../dashboard/js/charts.js';
import { resolveSettings, apiBase } from '../../dashboard/js/settings.js';
import { retryDelayMs } from '../../dashboard/js/connection.js';
import * as fmt from '../../dashboard/js/format.js';

const T0 = Date.UTC(2024, 4, 1, 10, 0, 0);
const iso = (ms) => new Date(ms).toISOString();

test('a push is read from an object or a JSON string; an array is a snapshot', () => {
  const obj = { deviceId: 'd1', temperature: 21.5, humidity: 40, pressure: 1013.2, light: 0, count: 3, invalidCount: 1, lastSeen: iso(T0), geo: 'Sydney', messageId: 'm1' };
  for (const arg of [obj, JSON.stringify(obj)]) {
    const r = parseMessage(arg);
    assert.equal(r.snapshot, false);
    assert.equal(r.items.length, 1);
    assert.deepEqual(r.items[0].fields, { temperature: 21.5, humidity: 40, pressure: 1013.2, light: 0, count: 3, invalidCount: 1, geo: 'Sydney', messageId: 'm1' });
    assert.equal(r.items[0].lastSeen, T0);
  }
  const snap = parseMessage(JSON.stringify([obj, { ...obj, deviceId: 'd2' }]));
  assert.equal(snap.snapshot, true);
  assert.deepEqual(snap.items.map((i) => i.id), ['d1', 'd2']);
});

test("the original functions' PascalCase objects are accepted", () => {
  const r = parseMessage([{ DeviceId: 'legacy', Celsius: 0, Humidity: 55.5, hPa: 990, Light: 12, Count: '42', Timestamp: iso(T0), Geo: 'Forbes', Id: 7 }]);
  assert.equal(r.items.length, 1);
  const { id, fields, lastSeen } = r.items[0];
  assert.equal(id, 'legacy');
  assert.deepEqual(fields, { temperature: 0, humidity: 55.5, pressure: 990, light: 12, count: 42, geo: 'Forbes', messageId: '7' });
  assert.equal(lastSeen, T0);
});

test('hostile or malformed items are refused one by one; the rest of a snapshot survives', () => {
  const r = parseMessage([
    { deviceId: '<img src=x onerror=alert(1)>', temperature: 1 },   // odd but a valid id: kept as text
    { deviceId: '' }, { deviceId: 42 }, { deviceId: null }, null, 'text', [1, 2],
    { deviceId: 'x'.repeat(300) },
    { deviceId: 'ok', temperature: 'hot', humidity: '12.5', pressure: {}, count: true },
  ]);
  assert.deepEqual(r.items.map((i) => i.id), ['<img src=x onerror=alert(1)>', 'ok']);
  assert.equal(r.rejected, 7);
  assert.deepEqual(r.items[1].fields, { temperature: null, humidity: 12.5, pressure: null, count: null });
  assert.deepEqual(parseMessage('{not json').items, []);
  assert.equal(parseMessage('{not json').rejected, 1);
  assert.equal(normaliseDevice({ deviceId: 'a', lastSeen: 'yesterday' }).lastSeen, null);
});

test('a field the message lacks keeps its value; a null clears it; zero is a value', () => {
  const s = new DeviceStore();
  s.apply(parseMessage({ deviceId: 'd', temperature: 20, humidity: 50, count: 1, lastSeen: iso(T0) }).items[0], T0, true);
  s.apply(parseMessage({ deviceId: 'd', temperature: 0, count: 2, lastSeen: iso(T0 + 1000) }).items[0], T0 + 1000, true);
  const d = s.devices.get('d');
  assert.equal(d.temperature, 0);
  assert.equal(d.humidity, 50);
  s.apply(parseMessage({ deviceId: 'd', humidity: null, count: 3, lastSeen: iso(T0 + 2000) }).items[0], T0 + 2000, true);
  assert.equal(d.humidity, null);
  assert.equal(d.count, 3);
});

test('a snapshot older than a push that overtook it changes nothing; a repeat adds no chart point', () => {
  const s = new DeviceStore();
  const push = { deviceId: 'd', temperature: 25, count: 10, invalidCount: 0, lastSeen: iso(T0 + 5000) };
  assert.ok(s.apply(parseMessage(push).items[0], T0 + 5100, true));
  const older = { ...push, temperature: 24, count: 9, lastSeen: iso(T0 + 4000) };
  assert.equal(s.apply(parseMessage([older]).items[0], T0 + 5200, false), null);
  assert.equal(s.devices.get('d').temperature, 25);
  assert.equal(s.ignoredOlder, 1);
  // The same state again (snapshot after a reconnect): applied, but not a new reading.
  s.apply(parseMessage([push]).items[0], T0 + 6000, false);
  assert.equal(s.devices.get('d').history.length, 1);
  // Same lastSeen, more messages (two events enqueued in the same millisecond): newer.
  assert.ok(s.apply(parseMessage({ ...push, count: 11 }).items[0], T0 + 6100, true));
  assert.equal(s.devices.get('d').history.length, 2);
  // An invalid reading changes only invalidCount: newer too.
  assert.equal(compareState({ lastSeen: 1, count: 11, invalidCount: 1 }, { lastSeen: 1, count: 11, invalidCount: 0 }), 1);
  // Without any ordering information every push is a new reading.
  const s2 = new DeviceStore();
  for (let i = 0; i < 3; i++) s2.apply(parseMessage({ deviceId: 'e', temperature: i }).items[0], T0 + i, true);
  assert.equal(s2.devices.get('e').history.length, 3);
});

test('staleness is measured on the server clock, whatever the browser clock says', () => {
  let local = T0 + 3_600_000;                    // the browser is an hour ahead
  const clock = new ServerClock(() => local);
  const s = new DeviceStore({ clock });
  s.apply(parseMessage({ deviceId: 'd', count: 1, lastSeen: iso(T0) }).items[0], local + 40, true);
  local += 40;
  const d = s.devices.get('d');
  assert.ok(s.ageOf(d) < 100, `age right after a push: ${s.ageOf(d)}`);
  assert.equal(s.statusOf(d, 30_000), 'online');
  local += 31_000;
  assert.equal(s.statusOf(d, 30_000), 'stale');
  // A device known only from a snapshot row without lastSeen: no data, not online.
  s.apply(parseMessage([{ deviceId: 'bare', count: 0 }]).items[0], local, false);
  assert.equal(s.statusOf(s.devices.get('bare'), 30_000), 'unknown');
  // Pushes without lastSeen (older pipelines): age since the push arrived.
  s.apply(parseMessage({ deviceId: 'old', temperature: 3 }).items[0], local, true);
  local += 5_000;
  assert.equal(s.ageOf(s.devices.get('old')), 5_000);
});

test('history keeps the newest readings exactly and the rest as bucket means, in bounded memory', () => {
  const h = new History({ rawCap: 100, coarseCap: 16, bucketMs: 1000 });
  for (let i = 0; i < 1000; i++) h.push(T0 + i * 100, i % 10 === 0 ? 0 : 20, i === 999 ? null : 50, 1000);
  assert.equal(h.length, 100);
  assert.ok(h.ct.length <= 16 && h.rt.length <= 100, 'buffers stay within their caps');
  const recent = h.range(T0 + 90_000, Infinity);
  assert.equal(recent.t.length, 100);
  assert.equal(recent.t[0], T0 + 90_000);
  assert.equal(recent.v[0][0], 0, 'zero stays zero');
  assert.equal(recent.v[1][99], null, 'a missing value stays missing');
  const all = h.range(-Infinity, Infinity);
  assert.ok(all.t.length > 100, 'older readings come from buckets');
  assert.ok(all.t[0] < T0 + 20_000, `since load reaches back to the start: ${all.t[0] - T0}`);
  for (let i = 1; i < all.t.length; i++) assert.ok(all.t[i] > all.t[i - 1], 'times ascend');
  const bucketed = all.v[0].slice(0, all.t.length - 100);
  for (const m of bucketed) assert.ok(Math.abs(m - 18) < 1e-9, `bucket mean of 0,20×9 is 18, got ${m}`);
  // Out-of-order times are clamped, never reorder the ring.
  h.push(T0, 1, 1, 1);
  const last = h.range(-Infinity, Infinity).t;
  assert.equal(last[last.length - 1], T0 + 99_900);
});

test('charts: one time axis; silence longer than the gap is a break; zero is drawn', () => {
  const a = { t: [T0, T0 + 1000, T0 + 100_000], v: [[0, 1, 2], [null, 5, 6], [7, 8, 9]], gapMs: 30_000 };
  const b = { t: [T0 + 500], v: [[3], [4], [5]], gapMs: 30_000 };
  const { x, y } = alignSeries([a, b]);
  assert.deepEqual(x, [T0, T0 + 500, T0 + 1000, T0 + 1001, T0 + 100_000].map((t) => t / 1000));
  assert.deepEqual(y[0][0], [0, undefined, 1, null, 2]);
  assert.deepEqual(y[1][0], [null, undefined, 5, null, 6]);
  assert.deepEqual(y[0][1], [undefined, 3, undefined, undefined, undefined]);
  assert.deepEqual(alignSeries([]), { x: [], y: [[], [], []] });
});

test('formatting: zero is 0.0, missing is a dash, ages read naturally', () => {
  assert.equal(fmt.fixed(0, 1), '0.0');
  assert.equal(fmt.fixed(-0.04, 1), '0.0');
  assert.equal(fmt.fixed(-3.25, 1), '-3.3');
  assert.equal(fmt.fixed(null, 1), fmt.MISSING);
  assert.equal(fmt.fixed(undefined, 1), fmt.MISSING);
  assert.equal(fmt.age(500), 'just now');
  assert.equal(fmt.age(12_000), '12 s ago');
  assert.equal(fmt.age(5 * 60_000), '5 min ago');
  assert.equal(fmt.age(3 * 3_600_000), '3 h ago');
  assert.equal(fmt.age(null), fmt.MISSING);
});

test('the API is ?api=, else config.js, else the page origin; only http(s)', () => {
  const page = 'https://site.z8.web.core.windows.net/dash/index.html';
  assert.equal(resolveSettings(page, {}).api, 'https://site.z8.web.core.windows.net');
  assert.equal(resolveSettings(page, { api: 'https://fn.azurewebsites.net/' }).api, 'https://fn.azurewebsites.net');
  assert.equal(resolveSettings(`${page}?api=${encodeURIComponent('https://other.example/api')}`, { api: 'https://fn.azurewebsites.net' }).api, 'https://other.example');
  assert.equal(apiBase('http://localhost:7071/prefix/api/', page), 'http://localhost:7071/prefix');
  const bad = resolveSettings(`${page}?api=${encodeURIComponent('javascript:alert(1)')}`, {});
  assert.equal(bad.api, null);
  assert.match(bad.apiError, /http or https/);
  assert.equal(resolveSettings(`${page}?stale=5`, { staleSeconds: 90 }).staleMs, 5000);
  assert.equal(resolveSettings(page, { staleSeconds: 90 }).staleMs, 90_000);
  assert.equal(resolveSettings(`${page}?stale=-1`, {}).staleMs, 60_000);
  assert.equal(resolveSettings(page, { autoChart: 0 }).autoChart, 0);
});

test('reconnect waits: immediate first, never giving up, capped', () => {
  assert.equal(retryDelayMs(0), 0);
  assert.equal(retryDelayMs(1), 1000);
  for (let n = 5; n < 1000; n += 97) {
    const d = retryDelayMs(n);
    assert.ok(d >= 15000 && d < 20000, `attempt ${n}: ${d}`);
  }
});
