// GetDeviceState against the real handler and a private Azurite (TEST_STORAGE_CONNECTION from
// tests/run.sh): 1,500 rows written with @azure/data-tables (two query pages), the snapshot and
// its newMessage broadcast, ?deviceId=, ?broadcast=false, and every error path.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { startHandler, invoke, httpReq, freePort, waitFor } from './lib/handler.mjs';
import { httpResult, expectError } from './lib/functions.mjs';

const CONN = process.env.TEST_STORAGE_CONNECTION;
const suffix = crypto.randomBytes(4).toString('hex');
const TABLE = `DevState${suffix}`;
const PK = `Syd'ney-${suffix}`; // a quote, to prove the $filter literal is escaped
const OTHER_PK = `Other-${suffix}`;
const BIG_PK = `Big-${suffix}`;
const N = 1500;
const BASE_MS = Date.UTC(2024, 4, 1, 10, 0, 0);
const URL_ = 'http://localhost:7071/api/getdevicestate';

let client, h, hBig, hMissingTable, hDown, hNone;
const expected = new Map(); // deviceId → expected object

function rowFor(i) {
  const id = `dev-${i}`;
  return {
    partitionKey: PK, rowKey: id, DeviceId: id,
    Celsius: 20.25 + i / 100, Humidity: 40.5 + (i % 50), hPa: 1000.5 + (i % 30), Light: i % 7 === 0 ? 0.5 : 300.5,
    Geo: `-33.${i},151.${i}`, Id: `msg-${i}`,
    Count: { value: String(i * 1000000007), type: 'Int64' }, InvalidCount: { value: String(i % 3), type: 'Int64' },
    LastSeen: new Date(BASE_MS + i * 1001), Schema: 1,
  };
}
function expectedFor(i) {
  return {
    deviceId: `dev-${i}`, temperature: 20.25 + i / 100, humidity: 40.5 + (i % 50), pressure: 1000.5 + (i % 30),
    light: i % 7 === 0 ? 0.5 : 300.5, geo: `-33.${i},151.${i}`, count: i * 1000000007, invalidCount: i % 3,
    lastSeen: new Date(BASE_MS + i * 1001).toISOString(), messageId: `msg-${i}`,
  };
}

async function writeAll(rows) {
  for (let k = 0; k < rows.length; k += 100) {
    await client.submitTransaction(rows.slice(k, k + 100).map((e) => ['create', e]));
  }
}

before(async () => {
  assert.ok(CONN, 'TEST_STORAGE_CONNECTION must be set (run through tests/run.sh)');
  client = TableClient.fromConnectionString(CONN, TABLE, { allowInsecureConnection: true });
  await client.createTable();
  const rows = [];
  for (let i = 0; i < N - 2; i++) { rows.push(rowFor(i)); expected.set(`dev-${i}`, expectedFor(i)); }
  // A device that never sent a measurement: every field null, never zero.
  rows.push({ partitionKey: PK, rowKey: 'dev-bare', DeviceId: 'dev-bare', Count: { value: '0', type: 'Int64' } });
  expected.set('dev-bare', { deviceId: 'dev-bare', temperature: null, humidity: null, pressure: null, light: null,
    geo: null, count: 0, invalidCount: null, lastSeen: null, messageId: null });
  // A legacy row whose DeviceId sorts differently from its RowKey: the output is sorted by device id.
  rows.push({ partitionKey: PK, rowKey: 'aaa-legacy', DeviceId: 'zzz-legacy', Celsius: 1.5 });
  expected.set('zzz-legacy', { deviceId: 'zzz-legacy', temperature: 1.5, humidity: null, pressure: null, light: null,
    geo: null, count: null, invalidCount: null, lastSeen: null, messageId: null });
  await writeAll(rows);
  // Rows of another partition must never appear.
  await writeAll([0, 1, 2].map((i) => ({ ...rowFor(i), partitionKey: OTHER_PK, rowKey: `intruder-${i}`, DeviceId: `intruder-${i}` })));
  // A partition whose snapshot is too large for one SignalR message (> 900 KB).
  const big = [];
  for (let i = 0; i < 300; i++) big.push({ partitionKey: BIG_PK, rowKey: `big-${String(i).padStart(3, '0')}`, Geo: 'g'.repeat(4000) });
  await writeAll(big);

  const env = { StorageConnectionString: CONN, DeviceStateTable: TABLE, PartitionKey: PK };
  const closed = await freePort();
  [h, hBig, hMissingTable, hDown, hNone] = await Promise.all([
    startHandler(env),
    startHandler({ ...env, PartitionKey: BIG_PK }),
    startHandler({ ...env, DeviceStateTable: `Missing${suffix}` }),
    startHandler({ ...env, StorageConnectionString: CONN.replace(/TableEndpoint=http:\/\/127\.0\.0\.1:\d+/, `TableEndpoint=http://127.0.0.1:${closed}`),
      StorageRetries: '0', StorageTimeoutMs: '2000' }),
    startHandler({ DeviceStateTable: TABLE, PartitionKey: PK }),
  ]);
});

after(async () => {
  for (const x of [h, hBig, hMissingTable, hDown, hNone]) {
    if (!x) continue;
    const r = await x.stop();
    assert.equal(r.code, 0, `handler exit ${JSON.stringify(r)}: ${x.stderr()}`);
    assert.doesNotMatch(x.stdout() + x.stderr(), /Eby8vdM02xNOcqFl/, 'the account key leaked into a log');
  }
  await client?.deleteTable().catch(() => {});
});

const get = async (handler, query = {}, extra = {}) =>
  httpResult(await invoke(handler, 'GetDeviceState', { req: httpReq({ method: 'GET', url: URL_, query, ...extra }) }));

function checkDevice(got) {
  const want = expected.get(got.deviceId);
  assert.ok(want, `unexpected device ${got.deviceId}`);
  const { lastSeen, ...rest } = got;
  const { lastSeen: wantSeen, ...wantRest } = want;
  assert.deepEqual(Object.keys(rest).sort(), Object.keys(wantRest).sort());
  for (const [k, v] of Object.entries(wantRest)) {
    // Doubles may differ in the last bit: cJSON prints 15 significant digits when they
    // round-trip within one ulp (e.g. 30.259999999999998 → 30.26).
    if (typeof v === 'number' && !Number.isInteger(v)) {
      assert.equal(typeof rest[k], 'number', `${got.deviceId}.${k}`);
      assert.ok(Math.abs(rest[k] - v) <= Math.abs(v) * 1e-12, `${got.deviceId}.${k}: ${rest[k]} vs ${v}`);
    } else {
      assert.deepEqual(rest[k], v, `${got.deviceId}.${k}`);
    }
  }
  if (wantSeen === null) assert.equal(lastSeen, null);
  else {
    assert.match(lastSeen, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/);
    assert.equal(new Date(lastSeen).getTime(), new Date(wantSeen).getTime());
  }
}

test('all 1,500 devices of the partition (two pages), sorted by id, broadcast as newMessage', async () => {
  const res = await get(h);
  assert.equal(res.status, 200);
  assert.equal(res.contentType, 'application/json');
  assert.ok(Array.isArray(res.body));
  assert.equal(res.body.length, N, 'every row of every page, none from other partitions');
  const ids = res.body.map((d) => d.deviceId);
  assert.deepEqual(ids, [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  assert.equal(ids.at(-1), 'zzz-legacy');
  assert.equal(new Set(ids).size, N);
  for (const d of res.body) checkDevice(d);
  assert.deepEqual(Object.keys(res.body[0]),
    ['deviceId', 'temperature', 'humidity', 'pressure', 'light', 'geo', 'count', 'invalidCount', 'lastSeen', 'messageId']);
  // The output message carries exactly the same snapshot.
  assert.equal(res.messages.length, 1);
  assert.equal(res.messages[0].target, 'newMessage');
  assert.equal(res.messages[0].userId, undefined);
  assert.deepEqual(res.messages[0].arguments, [res.body]);
});

test('?broadcast=false answers the snapshot without a SignalR message (Query as a string too)', async () => {
  const res = await get(h, { broadcast: 'false' }, { queryAsString: true });
  assert.equal(res.status, 200);
  assert.equal(res.body.length, N);
  assert.equal(res.messages, undefined);
});

test('?deviceId= returns one device and broadcasts it', async () => {
  const res = await get(h, { deviceId: 'dev-1234' });
  assert.equal(res.status, 200);
  checkDevice(res.body);
  assert.equal(res.body.deviceId, 'dev-1234');
  assert.deepEqual(res.messages, [{ target: 'newMessage', arguments: [[res.body]] }]);
  const bare = await get(h, { deviceId: 'dev-bare', broadcast: 'false' });
  checkDevice(bare.body);
  assert.equal(bare.messages, undefined);
});

test('unknown or other-partition device: 404; invalid or empty id: 400', async () => {
  const unknown = expectError(await get(h, { deviceId: 'no-such-device' }), 404, /no-such-device/);
  assert.doesNotMatch(unknown, new RegExp(PK.replace(/[^\w]/g, '.')), 'the partition is configuration, not for callers');
  expectError(await get(h, { deviceId: 'intruder-1' }), 404);
  expectError(await get(h, { deviceId: 'a/b' }), 404, /a\/b/);   // a valid id (encoded RowKey), not there
  expectError(await get(h, { deviceId: '' }), 400, /deviceId/);
  const r = await get(h, { deviceId: 'x'.repeat(2000) });
  expectError(r, 400);
  assert.equal(r.messages, undefined);
});

test('a snapshot too large for one SignalR message is split, losing nothing', async () => {
  const res = await get(hBig);
  assert.equal(res.status, 200);
  assert.equal(res.body.length, 300);
  assert.ok(res.messages.length >= 2, `expected a split, got ${res.messages.length} message(s)`);
  const joined = [];
  for (const m of res.messages) {
    assert.equal(m.target, 'newMessage');
    assert.ok(JSON.stringify(m).length < 1024 * 1024, 'each message under the 1 MB SignalR limit');
    joined.push(...m.arguments[0]);
  }
  assert.deepEqual(joined, res.body);
});

test('the snapshot is broadcast at most once per SnapshotBroadcastSeconds; within the window HTTP only', async () => {
  // a window far longer than any two calls take, even under sanitizers on a loaded machine
  const hs = await startHandler({ StorageConnectionString: CONN, DeviceStateTable: TABLE, PartitionKey: BIG_PK,
    SnapshotBroadcastSeconds: '600' });
  try {
    const first = await get(hs);
    assert.equal(first.body.length, 300);
    assert.ok(first.messages.length >= 1, 'the first snapshot is broadcast');
    const again = await get(hs);
    assert.deepEqual(again.body, first.body, 'the caller still gets the snapshot');
    assert.equal(again.messages, undefined, 'but it is not pushed to every dashboard again');
    assert.match(again.logs.join('\n'), /not broadcast.*SnapshotBroadcastSeconds=600/);
    // ?deviceId= still answers (one small message) and does not take the window
    const one = await get(hs, { deviceId: 'big-001' });
    assert.equal(one.messages.length, 1);
  } finally {
    assert.equal((await hs.stop()).code, 0);
  }
});

test('once SnapshotBroadcastSeconds has passed the next snapshot is broadcast again', async () => {
  const hs = await startHandler({ StorageConnectionString: CONN, DeviceStateTable: TABLE, PartitionKey: BIG_PK,
    SnapshotBroadcastSeconds: '1' });
  try {
    const t0 = Date.now();
    const first = await get(hs);
    assert.ok(first.messages.length >= 1, 'the first snapshot is broadcast');
    let later;
    await waitFor(async () => { later = await get(hs); return later.messages !== undefined; },
      { timeoutMs: 20000, intervalMs: 250, what: 'the next broadcast' });
    // the first broadcast was decided after t0, the next one at least a window later
    assert.ok(Date.now() - t0 >= 1000, `re-broadcast after ${Date.now() - t0} ms`);
    assert.deepEqual(later.messages.flatMap((m) => m.arguments[0]), first.body);
  } finally {
    assert.equal((await hs.stop()).code, 0);
  }
});

test('a table that does not exist yet is an empty snapshot', async () => {
  const res = await get(hMissingTable);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, []);
});

test('storage unreachable or not configured: 503 JSON error, nothing broadcast, detail only in the log', async () => {
  const t0 = Date.now();
  const id = crypto.randomUUID();
  let res = httpResult(await invoke(hDown, 'GetDeviceState', { req: httpReq({ method: 'GET', url: URL_ }) }, {},
    { 'X-Azure-Functions-InvocationId': id }));
  const msg = expectError(res, 503, /unavailable/);
  assert.ok(msg.includes(id), `the caller gets the invocation id to quote: ${msg}`);
  for (const secret of [/127\.0\.0\.1/, /devstoreaccount1/, new RegExp(TABLE), /Couldn't connect|refused|curl/i])
    assert.doesNotMatch(msg, secret);
  assert.match(res.logs.join('\n'), new RegExp(`${TABLE}.*(refused|unreachable|connect)`, 'i'), 'the log has the detail');
  assert.equal(res.messages, undefined);
  assert.ok(Date.now() - t0 < 15000, 'the outage is reported promptly');
  res = await get(hDown, { deviceId: 'dev-1' });
  assert.doesNotMatch(expectError(res, 503, /unavailable/), /127\.0\.0\.1|devstoreaccount1/);
  res = await get(hNone);
  assert.doesNotMatch(expectError(res, 503, /unavailable/), /StorageConnectionString/);
  assert.match(res.logs.join('\n'), /StorageConnectionString/);
});
