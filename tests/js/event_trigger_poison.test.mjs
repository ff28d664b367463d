// Issue 16's reproductions, each a regression test: EventTrigger never stalls a partition and
// stays small under the host's largest batches. Against the real handler and Azurite (a
// proxy in front of it where a test needs the service to refuse something).
//  - U+2028/U+2029 in messageId, geo or device id beside five ordinary devices: stored;
//  - a device the service refuses: quarantined in PoisonEvents, the rest of its $batch
//    stored, idempotent on replay; a $batch answered 500 is retried row by row; a device
//    failing transiently fails the batch (503) and is not quarantined;
//  - the largest batch the host sends under host.json (100 × 256 KiB of control characters,
//    ~176 MiB twice encoded): accepted, in small memory;
//  - thirty 256 KiB array bodies (six invocations at once): small peak, memory given back;
//  - device ids IoT Hub allows ('#hash', 'q?', ...): stored under encoded RowKeys, found by
//    GetDeviceState?deviceId=, plain ids keep their RowKeys;
//  - U+0000 in a device id, payload id or geo: the event is invalid, never truncated.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { startHandler, invoke, waitFor, handlerBin, httpReq } from './lib/handler.mjs';
import { wireBatch, rowsOf, uniquePk, summaryOf, pushesOf, tableClient } from './lib/eventhub.mjs';
import { startTableProxy, odataError, batchFailure, batchIndexOf } from './lib/table_proxy.mjs';
import { httpResult } from './lib/functions.mjs';
import { procStatusKiB } from './lib/proc.mjs';

const CONN = process.env.TEST_STORAGE_CONNECTION;
if (!CONN) throw new Error('TEST_STORAGE_CONNECTION is not set: run through tests/run.sh');
const AZ_PORT = Number(process.env.AZURITE_TABLE_PORT);
// Memory figures mean nothing under sanitizers or valgrind: there only behaviour is checked.
const INSTRUMENTED = Boolean(process.env.ENVIROMON_WRAPPER) || /\/asan\//.test(handlerBin);
const VALGRIND = /valgrind/.test(process.env.ENVIROMON_WRAPPER ?? '');

const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

async function handler(env) {
  const h = await startHandler({ StorageConnectionString: CONN, ...env });
  cleanup.push(async () => {
    const r = await h.stop();
    assert.ok(r.code === 0 || r.signal === 'SIGTERM', `handler exit ${JSON.stringify(r)}: ${h.stderr()}`);
  });
  return h;
}

const post = (h, batch) => invoke(h, 'EventTrigger', batch.data, batch.metadata);

test('U+2028/U+2029 in messageId, geo or device id beside five ordinary devices: all six stored, exactly', async () => {
  for (const [field, ch] of [['messageId', '\u2028'], ['geo', '\u2029'], ['deviceId', '\u2028']]) {
    const pk = uniquePk(`lsep-${field}`);
    const h = await handler({ PartitionKey: pk });
    const odd = field === 'deviceId' ? `odd${ch}dev` : 'odd';
    const body = (seq) => ({ temperature: 21.5, messageId: field === 'messageId' ? `m${ch}${seq}` : `m${seq}`,
      geo: field === 'geo' ? `Syd${ch}ney` : 'Sydney' });
    const events = (seq0) => [
      ...['d1', 'd2', 'd3', 'd4', 'd5'].map((d, i) => ({ deviceId: d, seq: seq0 + i, body: { temperature: 10 + i } })),
      { deviceId: odd, seq: seq0 + 5, body: body(seq0) },
    ];
    // new rows ($batch inserts), then the same devices again (conditional merges: the keys
    // are in the request lines, where Azurite once wrote such a row to RowKey '')
    for (const seq0 of [100, 200]) {
      const r = await post(h, wireBatch(events(seq0), { partition: '1' }));
      assert.equal(r.status, 200, `${field} ${seq0}: ${r.text.slice(0, 400)}`);
      const s = summaryOf(r.json);
      assert.equal(s.rows_written, 6, field);
      assert.equal(s.poisoned_devices, 0);
    }
    const rows = await rowsOf(CONN, 'DeviceState', pk);
    assert.equal(Object.keys(rows).length, 6, `${field}: ${Object.keys(rows)}`);
    assert.ok(!('' in rows), 'no row under an empty RowKey');
    const row = Object.values(rows).find((x) => x.DeviceId === odd);
    assert.ok(row, `${field}: the odd device's row`);
    assert.equal(row.Count, 2n);
    assert.equal(row.Id, body(200).messageId);
    assert.equal(row.Geo, body(200).geo);
    if (field === 'deviceId') assert.equal(row.rowKey, '~odd~Ldev');
    // and GetDeviceState finds it by its real id
    const one = httpResult(await invoke(h, 'GetDeviceState', { req: httpReq({ query: { deviceId: odd, broadcast: 'false' } }) }));
    assert.equal(one.status, 200, JSON.stringify(one.body));
    assert.equal(one.body.deviceId, odd);
    assert.equal(one.body.messageId, body(200).messageId);
  }
});

test('a device the service refuses: its events are quarantined, the rest of its $batch is stored, once', async () => {
  const pk = uniquePk('refuse');
  let mode = 'batch400';
  const proxy = await startTableProxy(AZ_PORT, ({ method, url, body }) => {
    // only DeviceState writes for that device are refused (its PoisonEvents rows must go through)
    const mentions = url.includes('refused-dev') || body.includes('"refused-dev"');
    const state = url.includes('/DeviceState') || body.includes('/DeviceState');
    if (!mentions || !state || method === 'GET') return undefined;
    if (url.includes('$batch')) {
      if (mode === 'batch400') return batchFailure(batchIndexOf(body, 'refused-dev'), 400, 'InvalidInput', 'One of the request inputs is not valid.');
      return { status: 500, body: odataError('InternalError', 'Server encountered an internal error.') };
    }
    if (mode === 'flaky') return { status: 503, body: odataError('ServerBusy', 'The server is busy.') };
    return { status: 400, body: odataError('InvalidInput', 'One of the request inputs is not valid.') };
  });
  cleanup.push(() => proxy.close());
  const h = await handler({ StorageConnectionString: proxy.connection, PartitionKey: pk, StorageRetries: '1' });
  const batch = (seq0) => wireBatch([
    ...['a1', 'a2', 'a3', 'a4', 'a5'].map((d, i) => ({ deviceId: d, seq: seq0 + i, body: { temperature: 20 } })),
    { deviceId: 'refused-dev', seq: seq0 + 5, body: { temperature: 21, messageId: 'lost?' } },
    { deviceId: 'refused-dev', seq: seq0 + 6, body: { temperature: 22 } },
  ], { partition: '3' });

  const r1 = await post(h, batch(1000));
  assert.equal(r1.status, 200, r1.text.slice(0, 500));
  const s1 = summaryOf(r1.json);
  assert.deepEqual([s1.rows_written, s1.poisoned_devices, s1.quarantined, s1.failed_devices], [5, 1, 2, 0]);
  assert.match(r1.json.Logs.join('\n'), /writing them one at a time to find the device responsible/);
  assert.match(r1.json.Logs.join('\n'), /device 'refused-dev' cannot be stored.*2 events/);
  assert.deepEqual(Object.keys(pushesOf(r1.json)).sort(), ['a1', 'a2', 'a3', 'a4', 'a5']);
  const rows = await rowsOf(CONN, 'DeviceState', pk);
  assert.deepEqual(Object.keys(rows).sort(), ['a1', 'a2', 'a3', 'a4', 'a5']);
  let poison = await rowsOf(CONN, 'PoisonEvents', pk);
  assert.equal(Object.keys(poison).length, 2);
  for (const p of Object.values(poison)) {
    assert.equal(p.DeviceId, 'refused-dev');
    assert.match(p.Reason, /DeviceState row.*bad request.*InvalidInput/);
    assert.match(p.Raw, /"temperature":2[12]/);
    assert.equal(p.RawTruncated, false);
  }

  // the host's retry of the same batch: nothing stored or counted twice
  const r2 = await post(h, batch(1000));
  assert.equal(r2.status, 200, r2.text.slice(0, 500));
  const s2 = summaryOf(r2.json);
  assert.deepEqual([s2.quarantined, s2.rows_written, s2.replayed], [0, 0, 7]);
  assert.deepEqual(await rowsOf(CONN, 'PoisonEvents', pk), poison);

  // a $batch answered with a 500 (as Azurite once answered some input): row by row, same result
  mode = 'batch500';
  const r3 = await post(h, batch(2000));
  assert.equal(r3.status, 200, r3.text.slice(0, 500));
  assert.deepEqual([summaryOf(r3.json).rows_written, summaryOf(r3.json).quarantined], [5, 2]);
  assert.equal((await rowsOf(CONN, 'DeviceState', pk)).a1.Count, 2n);

  // a device whose writes fail transiently is not poison: the batch fails (the host retries)
  // and nothing is quarantined; once the service recovers the retry stores everything once
  mode = 'flaky';
  const r4 = await post(h, batch(3000));
  assert.equal(r4.status, 503, r4.text.slice(0, 500));
  assert.match(r4.json.error, /refused-dev|earlier storage failure/);
  poison = await rowsOf(CONN, 'PoisonEvents', pk);
  assert.equal(Object.keys(poison).length, 4);
  mode = 'healed';
  const proxyOff = await handler({ PartitionKey: pk });   // straight to Azurite
  const r5 = await post(proxyOff, batch(3000));
  assert.equal(r5.status, 200, r5.text.slice(0, 500));
  const after5 = await rowsOf(CONN, 'DeviceState', pk);
  assert.equal(after5['refused-dev'].Count, 2n);            // only the retried batch's two
  assert.equal(after5.a1.Count, 3n);
});

test('the largest batch the host sends under host.json is accepted, in small memory', async () => {
  const hostJson = JSON.parse(fs.readFileSync(new URL('../../host.json', import.meta.url), 'utf8'));
  const max = hostJson.extensions.eventHubs.maxEventBatchSize;
  const n = VALGRIND ? 4 : max;
  const pk = uniquePk('largest');
  const h = await handler({ PartitionKey: pk });
  // 256 KiB bodies of control characters: what the host's Newtonsoft writer escapes most
  // (1 byte → \u0001 → \\u0001, 7×)
  const pad = '\u0001'.repeat(262144 - 64);
  const events = [];
  for (let i = 0; i < n; i++) events.push({ deviceId: `big-${i}`, seq: i + 1, body: `{"temperature":20,"messageId":"m${i}","pad":"${pad}"}` });
  // the host's body, written a chunk at a time (the test must not hold 180 MB either):
  // escaping is per character, so each event's share of Data.events is its body encoded twice
  const meta = JSON.stringify(wireBatch(events.map((e) => ({ ...e, body: {} })), { partition: '5' }).metadata);
  const chunks = ['{"Data":{"events":"['];
  events.forEach((e, i) => chunks.push((i ? ',' : '') + JSON.stringify(JSON.stringify(e.body)).slice(1, -1)));
  chunks.push(`]"},"Metadata":${meta}}`);
  const size = chunks.reduce((t, c) => t + Buffer.byteLength(c), 0);
  if (n === max) assert.ok(size > 170 * 1024 * 1024, `the body is ${size} bytes`);
  const { status, text } = await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: h.port, path: '/EventTrigger', method: 'POST',
      headers: { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': size } }, (res) => {
      let t = '';
      res.on('data', (d) => { t += d; });
      res.on('end', () => resolve({ status: res.statusCode, text: t }));
    });
    req.on('error', reject);
    (async () => {
      for (const c of chunks) if (!req.write(c)) await new Promise((r) => req.once('drain', r));
      req.end();
    })();
  });
  assert.equal(status, 200, text.slice(0, 500));
  const s = summaryOf(JSON.parse(text));
  assert.deepEqual([s.events, s.accepted, s.rows_written], [n, n, n]);
  const hwm = procStatusKiB(h.proc.pid, 'VmHWM') / 1024;
  console.log(`# ${n} events, ${(size / 1048576).toFixed(1)} MiB body: handler peak RSS ${hwm.toFixed(1)} MiB`);
  if (!INSTRUMENTED) assert.ok(hwm < 64, `peak RSS ${hwm} MiB`);
  // the last event's row (under valgrind the batch is only 4 events)
  const row = (await rowsOf(CONN, 'DeviceState', pk))[`big-${n - 1}`];
  assert.equal(row.Celsius, 20);
  assert.equal(row.Id, `m${n - 1}`);
});

test('thirty 256 KiB array bodies, six invocations at once: small peak, memory given back when idle', async () => {
  const pk = uniquePk('arrays');
  const h = await handler({ PartitionKey: pk });
  const arrayBody = `[${Array(131072).fill('1').join(',')}]`;   // 256 KiB, 131,072 elements
  const batch = (w) => wireBatch(Array.from({ length: 30 }, (_, i) => ({ deviceId: `arr-${w}-${i % 3}`, seq: i + 1, body: arrayBody })),
    { partition: String(w) });
  const bodies = Array.from({ length: 6 }, (_, w) => JSON.stringify({ Data: batch(w).data, Metadata: batch(w).metadata }));
  const idle0 = procStatusKiB(h.proc.pid, 'VmRSS');
  const rs = await Promise.all(bodies.map((body) => fetch(`${h.url}/EventTrigger`, { method: 'POST', body,
    headers: { 'Content-Type': 'application/json' } }).then(async (r) => ({ status: r.status, text: await r.text() }))));
  for (const r of rs) {
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const s = summaryOf(JSON.parse(r.text));
    assert.deepEqual([s.events, s.invalid, s.accepted], [30, 30, 0]);   // an array is not a reading
  }
  const hwm = procStatusKiB(h.proc.pid, 'VmHWM') / 1024;
  console.log(`# 6 × 7.5 MiB of arrays at once: handler peak RSS ${hwm.toFixed(1)} MiB (idle ${(idle0 / 1024).toFixed(1)} MiB)`);
  if (!INSTRUMENTED) {
    assert.ok(hwm < 96, `peak RSS ${hwm} MiB`);
    // idle again: freed memory goes back to the system (malloc_trim after a second of quiet)
    await waitFor(() => procStatusKiB(h.proc.pid, 'VmRSS') < idle0 + 8 * 1024,
      { timeoutMs: 10000, intervalMs: 200, what: `RSS back near ${idle0} kB (now ${procStatusKiB(h.proc.pid, 'VmRSS')} kB)` });
  }
  const rows = await rowsOf(CONN, 'DeviceState', pk);
  assert.equal(rows['arr-0-0'].InvalidCount, 10n);
});

test('device ids IoT Hub allows are stored under reversible RowKeys and found by GetDeviceState', async () => {
  const pk = uniquePk('ids');
  const h = await handler({ PartitionKey: pk, CalibrationCacheSeconds: '0' });
  const ids = ['#hash', 'q?', "-:.+%_#*?!(),=@;$'", 'a%23b', 'plain-1', '~tilde'];
  const r = await post(h, wireBatch(ids.map((d, i) => ({ deviceId: d, seq: i + 1, body: { temperature: i } })), { partition: '2' }));
  assert.equal(r.status, 200, r.text.slice(0, 400));
  assert.equal(summaryOf(r.json).rows_written, ids.length);
  assert.deepEqual(Object.keys(pushesOf(r.json)).sort(), [...ids].sort());
  const rows = await rowsOf(CONN, 'DeviceState', pk);
  const byId = Object.fromEntries(Object.values(rows).map((x) => [x.DeviceId, x.rowKey]));
  assert.deepEqual(byId, { '#hash': '~~23hash', 'q?': '~q~3F', "-:.+%_#*?!(),=@;$'": "~-:.+%_~23*~3F!(),=@;$'",
    'a%23b': 'a%23b', 'plain-1': 'plain-1', '~tilde': '~~7Etilde' });   // plain ids keep their RowKey
  for (const [i, id] of ids.entries()) {
    const one = httpResult(await invoke(h, 'GetDeviceState', { req: httpReq({ query: { deviceId: id, broadcast: 'false' } }) }));
    assert.equal(one.status, 200, `${id}: ${JSON.stringify(one.body)}`);
    assert.equal(one.body.deviceId, id);
    assert.equal(one.body.temperature, i);
  }
  const all = httpResult(await invoke(h, 'GetDeviceState', { req: httpReq({ query: { broadcast: 'false' } }) }));
  assert.deepEqual(all.body.map((d) => d.deviceId).sort(), [...ids].sort());
  // a Calibration row under the encoded key applies
  await tableClient(CONN, 'Calibration').createEntity({ partitionKey: pk, rowKey: '~~23hash', TemperatureSlope: 1.0, TemperatureYIntercept: 50.0 });
  const r2 = await post(h, wireBatch([{ deviceId: '#hash', seq: 50, body: { temperature: 1 } }], { partition: '2' }));
  assert.equal(r2.status, 200, r2.text.slice(0, 400));
  assert.equal(pushesOf(r2.json)['#hash'].temperature, 51, JSON.stringify(r2.json));
});

test('U+0000 in a device id, payload id or geo makes the event invalid; nothing is cut at the NUL', async () => {
  const pk = uniquePk('nul');
  const h = await handler({ PartitionKey: pk });
  const r = await post(h, wireBatch([
    { deviceId: 'nul\u0000evil', seq: 1, body: { temperature: 20 } },             // authenticated id with a NUL
    { deviceId: 'dev1', seq: 2, body: { deviceId: 'dev1\u0000x', temperature: 20 } },  // payload claims another device
    { seq: 3, body: { deviceId: 'pay\u0000load', temperature: 20 } },             // no system id: nothing usable
    { deviceId: 'dev2', seq: 4, body: { geo: 'Syd\u0000ney', temperature: 20 } },
    { deviceId: 'dev2', seq: 5, body: { messageId: 'm\u0000', temperature: 20 } },
    { deviceId: 'dev3', seq: 6, body: { temperature: 20, geo: 'fine' } },
  ], { partition: '4' }));
  assert.equal(r.status, 200, r.text.slice(0, 400));
  const s = summaryOf(r.json);
  assert.deepEqual([s.accepted, s.invalid, s.rejected, s.spoofed], [1, 3, 2, 1]);
  const rows = await rowsOf(CONN, 'DeviceState', pk);
  assert.deepEqual(Object.keys(rows).sort(), ['dev1', 'dev2', 'dev3']);   // never 'nul' or 'pay'
  assert.equal(rows.dev1.InvalidCount, 1n);
  assert.equal(rows.dev1.Count, 0n);
  assert.equal(rows.dev2.InvalidCount, 2n);
  assert.equal(rows.dev2.Geo, undefined);
  assert.match(r.json.Logs.join('\n'), /spoofing attempt: event 1 authenticated as device 'dev1'/);
  const poison = Object.values(await rowsOf(CONN, 'PoisonEvents', pk));
  assert.equal(poison.length, 2);
  assert.ok(poison.every((p) => /NUL/.test(p.Reason)), JSON.stringify(poison.map((p) => p.Reason)));
});
