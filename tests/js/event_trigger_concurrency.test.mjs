// Optimistic concurrency across processes: 4 handler processes × 8 concurrent invocations,
// overlapping batches for the same 20 devices. A batch that fails (conflicts exhausted,
// storage busy) is posted again as the host's retry policy would; exactly-once effect means
// every device's final Count equals exactly the accepted events sent, whatever got retried.
// (32 streams write every device here; a row remembers 32 streams, see device_state.h.)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHandler, invoke } from './lib/handler.mjs';
import { wireBatch, rowsOf, uniquePk, summaryOf } from './lib/eventhub.mjs';

const CONN = process.env.TEST_STORAGE_CONNECTION;
if (!CONN) throw new Error('TEST_STORAGE_CONNECTION is not set: run through tests/run.sh');
const handlers = [];
after(async () => {
  for (const h of handlers) {
    const r = await h.stop();   // clean exit (leak checkers under ASan/valgrind fail it otherwise)
    assert.ok(r.code === 0 || r.signal === 'SIGTERM', `handler exit ${JSON.stringify(r)}: ${h.stderr()}`);
  }
});

async function scenario({ tag, env = {}, mustRetry = false }) {
  const pk = uniquePk(tag);
  const hs = [];
  for (let i = 0; i < 4; i++) hs.push(await startHandler({ StorageConnectionString: CONN, PartitionKey: pk, ...env }));
  handlers.push(...hs);
  const DEVICES = 20;
  const BATCHES_PER_WORKER = 2;
  const expected = {};
  const expectedInvalid = {};
  const batches = [];
  for (let w = 0; w < 32; w++) {
    for (let k = 0; k < BATCHES_PER_WORKER; k++) {
      // each worker is one partition (one stream, as the host gives one partition to one
      // invocation at a time), its batches in sequence-number order; one event in ten invalid
      const events = [];
      const n = 60 + ((w * 7 + k) % 40);
      for (let i = 0; i < n; i++) {
        const dev = `c${(i * 3 + w) % DEVICES}`;
        const invalid = (i + w) % 10 === 0;
        events.push({ deviceId: dev, seq: 1000 * (k + 1) + i, body: { temperature: invalid ? 1000 : 20 + (i % 10), messageId: `${w}-${k}-${i}` } });
        if (invalid) expectedInvalid[dev] = (expectedInvalid[dev] ?? 0) + 1;
        else expected[dev] = (expected[dev] ?? 0) + 1;
      }
      batches.push({ worker: w, batch: wireBatch(events, { partition: `p${w}` }) });
    }
  }
  let retries = 0;
  let conflicts = 0;
  // 8 concurrent invocation loops per handler
  await Promise.all(Array.from({ length: 32 }, async (_, w) => {
    const h = hs[w % 4];
    for (const { batch } of batches.filter((b) => b.worker === w)) {
      for (let attempt = 1; ; attempt++) {
        const r = await invoke(h, 'EventTrigger', batch.data, batch.metadata);
        if (r.status === 200) { conflicts += summaryOf(r.json).conflicts_retried; break; }
        assert.ok([500, 503].includes(r.status), `unexpected ${r.status}: ${r.text}`);
        assert.ok(r.json && typeof r.json.error === 'string', r.text);
        assert.ok(attempt < 200, `batch still failing after ${attempt} attempts: ${r.text}`);
        retries++;
      }
    }
  }));
  const rows = await rowsOf(CONN, 'DeviceState', pk);
  assert.equal(Object.keys(rows).length, DEVICES);
  for (const [dev, n] of Object.entries(expected)) {
    assert.equal(rows[dev].Count, BigInt(n), `${dev} Count`);
    assert.equal(rows[dev].InvalidCount, BigInt(expectedInvalid[dev] ?? 0), `${dev} InvalidCount`);
  }
  assert.ok(conflicts > 0, 'the workload must actually produce write conflicts');
  if (mustRetry) assert.ok(retries > 0, 'the workload must actually make invocations fail and be re-posted');
  console.log(`# ${tag}: ${conflicts} conflicts retried inside invocations, ${retries} batches re-posted`);
  for (const h of hs) assert.equal(h.proc.exitCode, null, 'handler still running');
}

test('4 processes × 8 concurrent invocations on 20 shared devices: Count is exact', async () => {
  await scenario({ tag: 'conc' });
});

test('same, with OccMaxAttempts=2 so invocations fail and the host re-posts them: still exact', async () => {
  // partly applied batches come back: devices already written must be skipped by sequence
  // number, the others applied — exactly once either way
  await scenario({ tag: 'conc-retry', env: { OccMaxAttempts: '2', OccBaseMs: '5', OccCapMs: '20' }, mustRetry: true });
});
