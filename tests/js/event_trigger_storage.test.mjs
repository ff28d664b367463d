// Storage outages: with its Azurite stopped the handler answers non-2xx (so the host retries
// the batch), keeps serving, and does not crash; once storage is back the same batch applies
// exactly once. Also: the handler starts while storage is down.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startHandler, invoke, waitFor } from './lib/handler.mjs';
import { startAzurite } from './lib/azurite.mjs';
import { wireBatch, rowsOf, summaryOf, pushesOf } from './lib/eventhub.mjs';

const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

function batchFor(devs, seq0, partition = '0') {
  const events = [];
  for (let i = 0; i < 12; i++) events.push({ deviceId: devs[i % devs.length], seq: seq0 + i, body: { temperature: 15 + i } });
  return wireBatch(events, { partition });
}

test('storage down → 503 and no crash; after restart the same batch applies once', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'enviromon-az-'));
  cleanup.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  let az = await startAzurite({ location: dir });
  const port = az.port;
  cleanup.push(async () => az.stop());
  const h = await startHandler({ StorageConnectionString: az.connection, PartitionKey: 'down',
    StorageRetries: '1', StorageTimeoutMs: '2000' });
  cleanup.push(async () => {
    const x = await h.stop();
    assert.ok(x.code === 0 || x.signal === 'SIGTERM', `handler exit ${JSON.stringify(x)}: ${h.stderr()}`);
  });

  // warm: tables created, rows and ETags cached in the process
  const warm = await invoke(h, 'EventTrigger', batchFor(['s1', 's2'], 1).data, batchFor(['s1', 's2'], 1).metadata);
  assert.equal(warm.status, 200, warm.text);
  // Azurite saves its database to disk every few seconds: wait until the warm rows are on
  // disk, or the restart below would (legitimately) bring back an older table
  const db = path.join(dir, '__azurite_db_table__.json');
  await waitFor(() => fs.existsSync(db) && /"s2"/.test(fs.readFileSync(db, 'utf8')) && /"Count":"?6/.test(fs.readFileSync(db, 'utf8')),
    { timeoutMs: 20000, intervalMs: 200, what: 'Azurite to persist the warm rows' });

  await az.stop();
  const b = batchFor(['s1', 's2', 's3'], 100);
  for (let i = 0; i < 2; i++) {
    const r = await invoke(h, 'EventTrigger', b.data, b.metadata);
    assert.equal(r.status, 503, r.text);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    assert.match(r.json.error, /unavailable|refused|connect/i);
  }
  assert.equal(h.proc.exitCode, null, 'the handler survived');
  assert.ok((await fetch(`${h.url}/`)).status > 0, 'and still answers');

  az = await startAzurite({ port, location: dir });
  const r = await invoke(h, 'EventTrigger', b.data, b.metadata);
  assert.equal(r.status, 200, r.text);
  assert.equal(summaryOf(r.json).accepted, 12);
  assert.deepEqual(Object.keys(pushesOf(r.json)).sort(), ['s1', 's2', 's3']);
  const again = await invoke(h, 'EventTrigger', b.data, b.metadata);   // the host's retry, late
  assert.equal(again.status, 200, again.text);
  assert.equal(summaryOf(again.json).replayed, 12);
  const rows = await rowsOf(az.connection, 'DeviceState', 'down');
  assert.equal(rows.s1.Count, 6n + 4n);   // warm 6 + 4
  assert.equal(rows.s2.Count, 6n + 4n);
  assert.equal(rows.s3.Count, 4n);
});

test('the handler starts while storage is down and works once it is up', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'enviromon-az-'));
  cleanup.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  let az = await startAzurite({ location: dir });
  const port = az.port;
  await az.stop();
  const h = await startHandler({ StorageConnectionString: az.connection, PartitionKey: 'late', StorageRetries: '0' });
  cleanup.push(async () => h.stop());
  const b = batchFor(['t1'], 1);
  const down = await invoke(h, 'EventTrigger', b.data, b.metadata);
  assert.equal(down.status, 503, down.text);
  az = await startAzurite({ port, location: dir });
  cleanup.push(async () => az.stop());
  const up = await invoke(h, 'EventTrigger', b.data, b.metadata);
  assert.equal(up.status, 200, up.text);
  assert.equal((await rowsOf(az.connection, 'DeviceState', 'late')).t1.Count, 12n);
});
