// EventTrigger against the real handler and the shared Azurite: a batch in the host's wire
// form becomes the expected rows and SignalR outputs; replays change nothing; calibration
// changes apply after the TTL; each kind of bad input gets its documented result while the
// rest of the batch is applied; a 1 MiB event and a 10,000-event batch are handled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHandler, invoke, waitFor } from './lib/handler.mjs';
import { wireBatch, rowsOf, uniquePk, summaryOf, pushesOf, tableClient } from './lib/eventhub.mjs';
import { startTableProxy } from './lib/table_proxy.mjs';

const CONN = process.env.TEST_STORAGE_CONNECTION;
if (!CONN) throw new Error('TEST_STORAGE_CONNECTION is not set: run through tests/run.sh');

let h;
const handlers = [];
before(async () => {
  h = await startHandler({ StorageConnectionString: CONN, PartitionKey: 'unused' });
  handlers.push(h);
});
after(async () => {
  for (const x of handlers) {
    const r = await x.stop();
    assert.equal(r.signal === 'SIGTERM' || r.code === 0, true, `handler exit ${JSON.stringify(r)}: ${x.stderr()}`);
  }
});

async function handlerFor(pk, extra = {}) {
  const x = await startHandler({ StorageConnectionString: CONN, PartitionKey: pk, ...extra });
  handlers.push(x);
  return x;
}

async function post(x, batch) {
  const r = await invoke(x, 'EventTrigger', batch.data, batch.metadata);
  return r;
}

test('wire-form batch → calibrated rows, one push per changed device, spoofing logged', async () => {
  const pk = uniquePk('wire');
  const x = await handlerFor(pk);
  await tableClient(CONN, 'Calibration').createTable().catch(() => {});
  await tableClient(CONN, 'Calibration').createEntity({ partitionKey: pk, rowKey: 'devA', TemperatureSlope: 2.0,
    TemperatureYIntercept: 1.0, HumiditySlope: 1.0, HumidityYIntercept: -5.0 });
  const batch = wireBatch([
    { deviceId: 'devA', seq: 100, enqueued: '2026-02-01T10:00:00.5', body: { temperature: 20, humidity: 50, pressure: 1000, light: 3, geo: 'Sydney', messageId: 1 } },
    { deviceId: 'devB', seq: 101, enqueued: '2026-02-01T10:00:01', body: { Temperature: 30, deviceId: 'devA' } },
    { deviceId: 'devA', seq: 102, enqueued: '2026-02-01T10:00:02.25', body: { temperature: 21, messageId: 'two' } },
    { seq: 103, body: { deviceId: 'devC', Celsius: 10, HPa: 990 } },
  ], { partition: '2' });
  const r = await post(x, batch);
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.equal(r.json.ReturnValue, null);

  const s = summaryOf(r.json);
  assert.deepEqual([s.events, s.devices, s.accepted, s.invalid, s.rejected, s.replayed, s.spoofed], [4, 3, 4, 0, 0, 0, 1]);
  assert.ok(r.json.Logs.some((l) => /spoofing attempt.*devB.*devA/.test(l)), JSON.stringify(r.json.Logs));

  const rows = await rowsOf(CONN, 'DeviceState', pk);
  assert.deepEqual(Object.keys(rows).sort(), ['devA', 'devB', 'devC']);
  const a = rows.devA;
  assert.equal(a.DeviceId, 'devA');
  assert.equal(a.Celsius, 43);            // 21 * 2 + 1: the newest reading, calibrated once
  assert.equal(a.Humidity, 45);           // 50 * 1 - 5
  assert.equal(a.hPa, 1000);              // no pressure calibration: unchanged
  assert.equal(a.Light, 3);
  assert.equal(a.Geo, 'Sydney');
  assert.equal(a.Id, 'two');
  assert.equal(a.Count, 2n);
  assert.equal(a.InvalidCount, 0n);
  assert.equal(a.Schema, 1);
  assert.equal(a.LastSeen.toISOString(), '2026-02-01T10:00:02.250Z');   // no "Z" on the wire → UTC
  assert.equal(a.LastSeq, 102n);
  assert.match(a.Stream, /^[0-9a-f]{16}$/);
  assert.equal(rows.devB.Celsius, 30);    // processed under the authenticated id
  assert.equal(rows.devB.Count, 1n);
  assert.equal(rows.devC.Celsius, 10);    // plain Event Hubs: payload id
  assert.equal(rows.devC.hPa, 990);
  assert.equal(rows.devC.Humidity, undefined);   // never sent: no made-up value

  const p = pushesOf(r.json);
  assert.deepEqual(Object.keys(p).sort(), ['devA', 'devB', 'devC']);   // first messages pushed too
  assert.deepEqual(p.devA, { deviceId: 'devA', temperature: 43, humidity: 45, pressure: 1000, light: 3, geo: 'Sydney',
    count: 2, invalidCount: 0, lastSeen: '2026-02-01T10:00:02.250Z', messageId: 'two' });
  assert.equal(p.devC.humidity ?? null, null);
  assert.equal(p.devC.count, 1);

  // a later message without temperature leaves the stored temperature alone
  const r2 = await post(x, wireBatch([{ deviceId: 'devA', seq: 104, body: { humidity: 60 } }], { partition: '2' }));
  assert.equal(r2.status, 200, r2.text);
  const a2 = (await rowsOf(CONN, 'DeviceState', pk)).devA;
  assert.equal(a2.Celsius, 43);
  assert.equal(a2.Humidity, 55);
  assert.equal(a2.Count, 3n);
  assert.deepEqual(Object.keys(pushesOf(r2.json)), ['devA']);
});

test('replay: the same batch twice leaves every row as after the first, and pushes nothing', async () => {
  const pk = uniquePk('replay');
  const x = await handlerFor(pk);
  const events = [];
  for (let i = 0; i < 30; i++) events.push({ deviceId: `d${i % 3}`, seq: 5000 + i, body: { temperature: 10 + i, messageId: i } });
  events.push({ deviceId: 'd0', seq: 6000, body: { temperature: 500 } });   // invalid: counted once only
  const batch = wireBatch(events, { partition: '7' });
  const r1 = await post(x, batch);
  assert.equal(r1.status, 200, r1.text);
  const first = await rowsOf(CONN, 'DeviceState', pk);
  assert.equal(first.d0.Count, 10n);
  assert.equal(first.d0.InvalidCount, 1n);

  const r2 = await post(x, batch);
  assert.equal(r2.status, 200, r2.text);
  assert.deepEqual(pushesOf(r2.json), {});
  const s = summaryOf(r2.json);
  assert.equal(s.replayed, 31);
  assert.equal(s.accepted, 0);
  const second = await rowsOf(CONN, 'DeviceState', pk);
  assert.deepEqual(second, first);   // etags included: not even rewritten

  // a new handler process (empty caches) also recognises the replay
  const y = await handlerFor(pk);
  const r3 = await post(y, batch);
  assert.equal(r3.status, 200, r3.text);
  assert.deepEqual(await rowsOf(CONN, 'DeviceState', pk), first);

  // an overlapping batch applies only the events not seen yet
  const more = wireBatch([...events.slice(25, 30), { deviceId: 'd1', seq: 6001, body: { temperature: 1 } }], { partition: '7' });
  const r4 = await post(y, more);
  assert.equal(r4.status, 200, r4.text);
  assert.equal(summaryOf(r4.json).replayed, 5);
  const after4 = await rowsOf(CONN, 'DeviceState', pk);
  assert.equal(after4.d1.Count, first.d1.Count + 1n);
  assert.equal(after4.d0.Count, first.d0.Count);

  // the same sequence numbers from another partition are a different stream: applied
  const r5 = await post(y, wireBatch([{ deviceId: 'd2', seq: 5002, body: { temperature: 2 } }], { partition: '8' }));
  assert.equal(r5.status, 200, r5.text);
  assert.equal((await rowsOf(CONN, 'DeviceState', pk)).d2.Count, first.d2.Count + 1n);
});

test('calibration row changed in the table applies after the TTL', async () => {
  const pk = uniquePk('calib');
  const x = await handlerFor(pk, { CalibrationCacheSeconds: '2' });
  const cal = tableClient(CONN, 'Calibration');
  await cal.createTable().catch(() => {});
  let seq = 1;
  const send = async () => {
    const r = await post(x, wireBatch([{ deviceId: 'cal1', seq: seq++, body: { temperature: 10 } }], { partition: '1' }));
    assert.equal(r.status, 200, r.text);
    return pushesOf(r.json).cal1.temperature;
  };
  assert.equal(await send(), 10);   // no row yet: negative-cached
  await cal.createEntity({ partitionKey: pk, rowKey: 'cal1', TemperatureSlope: 1.0, TemperatureYIntercept: 5.0 });
  const t0 = Date.now();
  await waitFor(async () => (await send()) === 15, { timeoutMs: 15000, intervalMs: 100, what: 'new calibration row to apply' });
  await cal.updateEntity({ partitionKey: pk, rowKey: 'cal1', TemperatureSlope: 2.0, TemperatureYIntercept: 0.0 }, 'Merge');
  assert.equal(await send(), 15, 'a change inside the TTL is not seen yet (cached)');
  await waitFor(async () => (await send()) === 20, { timeoutMs: 15000, intervalMs: 100, what: 'changed calibration to apply' });
  assert.ok(Date.now() - t0 < 30000);
  const row = (await rowsOf(CONN, 'DeviceState', pk)).cal1;
  assert.equal(row.Celsius, 20);
  assert.equal(row.Count, BigInt(seq - 1));
});

test('a small Calibration partition is read once per TTL, whole: new devices cost no calibration read', async () => {
  const pk = uniquePk('calsnap');
  const cal = tableClient(CONN, 'Calibration');
  await cal.createTable().catch(() => {});
  await cal.createEntity({ partitionKey: pk, rowKey: 'snap-3', TemperatureSlope: 2.0, TemperatureYIntercept: 1.0 });
  await cal.createEntity({ partitionKey: pk, rowKey: 'snap-77', TemperatureSlope: 1.0, TemperatureYIntercept: -4.0 });
  const calls = [];
  const proxy = await startTableProxy(Number(process.env.AZURITE_TABLE_PORT), ({ method, url }) => {
    if (/\/Calibration[(?]/.test(url)) calls.push(`${method} ${decodeURIComponent(url)}`);
    return undefined;
  });
  try {
    const x = await handlerFor(pk, { StorageConnectionString: proxy.connection });
    const batch = (k) => wireBatch(Array.from({ length: 100 }, (_, i) => ({ deviceId: `snap-${k * 100 + i}`, seq: k * 100 + i,
      body: { temperature: 10 } })), { partition: '7' });
    let r = await post(x, batch(0));
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const reads = calls.filter((c) => c.startsWith('GET'));
    assert.equal(reads.length, 1, `one query for the whole partition: ${JSON.stringify(calls)}`);
    assert.match(reads[0], /\$filter=PartitionKey eq '/);
    const pushes = pushesOf(r.json);
    assert.equal(pushes['snap-3'].temperature, 21);    // 10 * 2 + 1
    assert.equal(pushes['snap-77'].temperature, 6);    // 10 * 1 - 4
    assert.equal(pushes['snap-4'].temperature, 10);    // no row: unchanged
    calls.length = 0;
    r = await post(x, batch(1));                        // 100 more new devices inside the TTL
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.deepEqual(calls, [], 'no calibration request at all within the TTL');
    assert.equal(summaryOf(r.json).accepted, 100);
  } finally {
    await proxy.close();
  }
});

test('bad input: each event gets its documented result and the rest of the batch is applied', async () => {
  const pk = uniquePk('bad');
  const x = await handlerFor(pk);
  const big = 'x'.repeat(1024 * 1024);
  const events = [
    { deviceId: 'good', seq: 1, body: { temperature: 20 } },
    { deviceId: 'bad1', seq: 2, body: 'this is not JSON' },            // authenticated: InvalidCount
    { deviceId: 'bad2', seq: 3, body: '[1,2,3]' },                     // array: InvalidCount
    { deviceId: 'bad2', seq: 4, body: '42' },                          // number: InvalidCount
    { seq: 5, body: '[{"deviceId":"arr"}]' },                          // array, no id: rejected
    { seq: 6, body: '7' },                                             // number, no id: rejected
    { deviceId: 'bad3', seq: 7, body: { temperature: true } },         // wrong types
    { deviceId: 'bad3', seq: 8, body: { humidity: { v: 1 } } },
    { deviceId: 'bad3', seq: 9, body: { geo: 12 } },
    { deviceId: 'bad4', seq: 10, body: { temperature: 'NaN' } },
    { deviceId: 'bad4', seq: 11, body: { pressure: 'Infinity' } },
    { deviceId: 'bad5', seq: 12, body: '{"temperature":1e308}' },
    { deviceId: 'bad5', seq: 13, body: '{"pressure":-1e308}' },
    { seq: 14, body: { temperature: 20 } },                            // no device id at all: rejected
    { seq: 15, body: { deviceId: 5, temperature: 20 } },               // id of the wrong type: rejected
    { deviceId: 'a/b', seq: 16, body: { temperature: 20 } },           // not a Table key character: stored under an encoded RowKey
    { seq: 17, body: { deviceId: 'x#y', temperature: 20 } },           // likewise
    { seq: 18, body: { deviceId: 'l'.repeat(129), temperature: 20 } }, // too long: rejected
    { deviceId: 'big', seq: 19, body: { temperature: 22, padding: big } },   // 1 MiB event: accepted
    { deviceId: 'good', seq: 20, body: { temperature: 21, humidity: 30 } },
    { deviceId: 'good', seq: 21, body: { deviceId: 'evil\nINJECTED line', temperature: 'x\r\nINJECTED' } },   // log injection
  ];
  const r = await post(x, wireBatch(events, { partition: '0' }));
  assert.equal(r.status, 200, r.text);
  const s = summaryOf(r.json);
  assert.equal(s.events, events.length);
  assert.equal(s.accepted, 5);
  assert.equal(s.invalid, 11);
  assert.equal(s.spoofed, 1);
  assert.equal(s.rejected, 5);
  assert.equal(s.quarantined, 5);
  const rows = await rowsOf(CONN, 'DeviceState', pk);
  assert.deepEqual(Object.values(rows).map((x) => x.DeviceId).sort(),
    ['a/b', 'bad1', 'bad2', 'bad3', 'bad4', 'bad5', 'big', 'good', 'x#y']);
  assert.equal(rows['~a~2Fb'].Count, 1n);
  assert.equal(rows['~x~23y'].Celsius, 20);
  // the rejected events are kept in PoisonEvents with their reasons and bodies
  const poison = await rowsOf(CONN, 'PoisonEvents', pk);
  assert.deepEqual(Object.values(poison).map((p) => Number(p.SequenceNumber)).sort((a, b) => a - b), [5, 6, 14, 15, 18]);
  const p6 = Object.values(poison).find((p) => Number(p.SequenceNumber) === 6);
  assert.equal(p6.Raw, '7');
  assert.match(p6.Reason, /JSON number/);
  assert.match(p6.Stream, /\/0$/);
  assert.equal(rows.good.Count, 2n);
  assert.equal(rows.good.InvalidCount, 1n);
  assert.equal(rows.good.Celsius, 21);
  assert.equal(rows.good.Humidity, 30);
  assert.equal(rows.big.Count, 1n);
  assert.equal(rows.big.Celsius, 22);
  const want = { bad1: 1n, bad2: 2n, bad3: 3n, bad4: 2n, bad5: 2n };
  for (const [id, n] of Object.entries(want)) {
    assert.equal(rows[id].InvalidCount, n, id);
    assert.equal(rows[id].Count, 0n, id);
    assert.equal(rows[id].Celsius, undefined, `${id}: an invalid reading never touches the state`);
    assert.equal(rows[id].hPa, undefined, id);
  }
  const logs = r.json.Logs.join('\n');
  for (const re of [/not JSON/, /JSON array/, /JSON number/, /wrong type boolean/, /temperature: not a number/,
    /pressure: not/, /temperature 1e\+308 outside/, /no device id/, /129 characters/, /quarantined in PoisonEvents/]) {
    assert.match(logs, re);
  }
  // payload text in log lines is neutralised: one line stays one line
  for (const l of r.json.Logs) assert.doesNotMatch(l, /[\r\n]/);
  assert.doesNotMatch(x.stdout(), /^INJECTED/m);
  // the handler is still healthy
  assert.ok((await fetch(`${x.url}/`)).status > 0);

  // the host's retry of the same batch stores and counts nothing twice
  const again = await post(x, wireBatch(events, { partition: '0' }));
  assert.equal(again.status, 200, again.text);
  const s2 = summaryOf(again.json);
  assert.equal(s2.rejected, 0);
  assert.equal(s2.quarantined, 0);
  assert.equal(s2.replayed, events.length);
  assert.deepEqual(await rowsOf(CONN, 'PoisonEvents', pk), poison);
  assert.deepEqual(await rowsOf(CONN, 'DeviceState', pk), rows);
});

test('a 10,000-event batch is folded per device', async () => {
  const pk = uniquePk('large');
  const x = await handlerFor(pk);
  const events = [];
  for (let i = 0; i < 10000; i++) events.push({ deviceId: `L${i % 50}`, seq: i + 1, body: { temperature: (i % 60) - 10, messageId: i } });
  const t0 = Date.now();
  const r = await post(x, wireBatch(events, { partition: '3' }));
  assert.equal(r.status, 200, r.text.slice(0, 500));
  const s = summaryOf(r.json);
  assert.equal(s.accepted, 10000);
  assert.equal(s.devices, 50);
  assert.equal(s.rows_written, 50);   // one write per device, not per event
  const rows = await rowsOf(CONN, 'DeviceState', pk);
  assert.equal(Object.keys(rows).length, 50);
  for (const row of Object.values(rows)) assert.equal(row.Count, 200n);
  assert.equal(rows.L49.Id, '9999');
  assert.ok(Date.now() - t0 < 60000);
});

test('while most unknown devices are new they are inserted without a read; one that exists is still folded exactly', async () => {
  const pk = uniquePk('guess');
  let gets = 0;
  const proxy = await startTableProxy(Number(process.env.AZURITE_TABLE_PORT), ({ method, url }) => {
    if (method === 'GET' && url.includes('/DeviceState(')) gets++;
    return undefined;
  });
  try {
    // an earlier process wrote some devices (this one has not cached them)
    const first = await handlerFor(pk);
    const old = Array.from({ length: 5 }, (_, i) => ({ deviceId: `old-${i}`, seq: 1 + i, body: { temperature: 1 } }));
    assert.equal((await post(first, wireBatch(old, { partition: '6' }))).status, 200);
    const x = await handlerFor(pk, { StorageConnectionString: proxy.connection });
    const fresh = (k) => Array.from({ length: 100 }, (_, i) => ({ deviceId: `new-${k}-${i}`, seq: 1000 * k + i, body: { temperature: 2 } }));
    let r = await post(x, wireBatch(fresh(1), { partition: '6' }));
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(gets, 100, 'at first every unknown device is read');
    gets = 0;
    // now nearly all unknown devices have been new: the next ones are inserted straight away,
    // and the five that exist answer 409, are read and merged (not counted twice, not lost)
    const mixed = [...fresh(2).slice(0, 95), ...old.map((e) => ({ ...e, seq: 50 + e.seq, body: { temperature: 3 } }))];
    r = await post(x, wireBatch(mixed, { partition: '6' }));
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(gets, 5, `only the devices that existed were read (${gets} reads)`);
    const s = summaryOf(r.json);
    assert.equal(s.rows_written, 100);
    const rows = await rowsOf(CONN, 'DeviceState', pk);
    assert.equal(Object.keys(rows).length, 5 + 100 + 95);
    for (let i = 0; i < 5; i++) {
      assert.equal(rows[`old-${i}`].Count, 2n);
      assert.equal(rows[`old-${i}`].Celsius, 3);
    }
    assert.equal(rows['new-2-94'].Count, 1n);
  } finally {
    await proxy.close();
  }
});
