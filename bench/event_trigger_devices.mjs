// EventTrigger with ever more devices (docs/benchmarks.md, "EventTrigger: 100,000 devices"):
// does anything grow with the number of devices the handler has seen? One Azurite, the
// release handler, BATCHES batches of BATCH events, every event from a device not seen before
// (100,000 distinct devices by default), PARTITIONS partitions posting in lockstep rounds.
// Figures: the handler's CPU per batch over the first and the last WINDOW batches (from
// /proc/<pid>/stat around each round) and their ratio, the handler's peak RSS (VmHWM),
// Azurite's CPU (per batch, first and last, too), wall time. A batch answered 503 (storage
// too slow on a busy machine) is posted again, as the host would; re-posts are counted.
// Targets: last/first ≤ 1.5, peak RSS ≤ 64 MiB.
// Env: HANDLER_BIN, BENCH_BATCHES (1000), BENCH_BATCH (100), BENCH_PARTITIONS (4),
// BENCH_WINDOW (100), BENCH_OUT (json file), BENCH_HANDLER_ENV (JSON of extra settings).
import fs from 'node:fs';
import path from 'node:path';
import { startHandler, repoRoot } from '../tests/js/lib/handler.mjs';
import { startAzurite } from '../tests/js/lib/azurite.mjs';
import { wireBatch, summaryOf, tableClient } from '../tests/js/lib/eventhub.mjs';
import { procCpuSeconds, procStatusKiB } from '../tests/js/lib/proc.mjs';

const BATCHES = Number(process.env.BENCH_BATCHES ?? 1000);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 4);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 100);
const HANDLER = process.env.HANDLER_BIN ?? path.join(repoRoot, 'build/release/handler');
const PK = 'bench-devices';
/** The body of batch k (its devices: k*BATCH .. k*BATCH+BATCH-1), on partition k % PARTITIONS. */
function body(k) {
  const events = [];
  for (let i = 0; i < BATCH; i++) {
    const n = k * BATCH + i;
    events.push({ deviceId: `dev-${String(n).padStart(6, '0')}`, seq: 1000 + Math.floor(k / PARTITIONS) * BATCH + i,
      enqueued: new Date(Date.UTC(2026, 0, 1) + n * 10).toISOString().slice(0, 23),
      body: { temperature: 15 + (n % 20), humidity: 40 + (n % 30), pressure: 1000 + (n % 15), messageId: n } });
  }
  const b = wireBatch(events, { partition: String(k % PARTITIONS) });
  return JSON.stringify({ Data: b.data, Metadata: b.metadata });
}

const az = await startAzurite();
let h;
try {
  h = await startHandler({ StorageConnectionString: az.connection, PartitionKey: PK, DeviceStateTable: 'BenchDevState',
    CalibrationTable: 'BenchDevCalibration', PoisonEventsTable: 'BenchDevPoison', StorageTimeoutMs: '30000',
    ...(process.env.BENCH_HANDLER_ENV ? JSON.parse(process.env.BENCH_HANDLER_ENV) : {}) }, { bin: HANDLER });
  const perBatchCpu = new Array(BATCHES).fill(0), perBatchAz = new Array(BATCHES).fill(0);
  let written = 0, retries = 0;
  const t0 = process.hrtime.bigint();
  const az0 = procCpuSeconds(az.pid);
  const cpu0 = procCpuSeconds(h.proc.pid);
  for (let round = 0; round * PARTITIONS < BATCHES; round++) {
    const ks = [];
    for (let p = 0; p < PARTITIONS && round * PARTITIONS + p < BATCHES; p++) ks.push(round * PARTITIONS + p);
    const bodies = ks.map(body);   // built before the clock of the round starts
    const c0 = procCpuSeconds(h.proc.pid), a0 = procCpuSeconds(az.pid);
    await Promise.all(bodies.map(async (b) => {
      // as the host does: a batch that fails (storage too slow on a busy machine) is posted again
      for (let attempt = 1; ; attempt++) {
        const r = await fetch(`${h.url}/EventTrigger`, { method: 'POST', body: b,
          headers: { 'Content-Type': 'application/json; charset=utf-8', 'X-Azure-Functions-InvocationId': crypto.randomUUID() } });
        const text = await r.text();
        if (r.status === 503 && attempt < 10) { retries++; continue; }
        if (r.status !== 200) throw new Error(`EventTrigger answered ${r.status}: ${text.slice(0, 300)}`);
        const s = summaryOf(JSON.parse(text));
        if (s.accepted + s.replayed !== BATCH) throw new Error(`unexpected summary ${JSON.stringify(s)}`);
        written += s.rows_written;
        break;
      }
    }));
    const c = (procCpuSeconds(h.proc.pid) - c0) / ks.length, a = (procCpuSeconds(az.pid) - a0) / ks.length;
    for (const k of ks) { perBatchCpu[k] = c; perBatchAz[k] = a; }
    if (round % 25 === 24) process.stdout.write(`  ${(round + 1) * PARTITIONS} batches, ${written} devices\n`);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = procCpuSeconds(h.proc.pid) - cpu0;
  const azCpu = procCpuSeconds(az.pid) - az0;
  const hwm = procStatusKiB(h.proc.pid, 'VmHWM') / 1024;
  const rss = procStatusKiB(h.proc.pid, 'VmRSS') / 1024;
  await h.stop();
  h = null;

  // spot check: every hundredth device has its row
  const tc = tableClient(az.connection, 'BenchDevState');
  for (let n = 0; n < BATCHES * BATCH; n += 997) {
    const e = await tc.getEntity(PK, `dev-${String(n).padStart(6, '0')}`);
    if (Number(e.Count) !== 1 || e.Celsius !== 15 + (n % 20)) throw new Error(`device ${n}: ${JSON.stringify(e)}`);
  }
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const w = Math.min(WINDOW, Math.floor(BATCHES / 2));
  const first = mean(perBatchCpu.slice(0, w)), last = mean(perBatchCpu.slice(BATCHES - w));
  const azFirst = mean(perBatchAz.slice(0, w)), azLast = mean(perBatchAz.slice(BATCHES - w));
  const result = {
    when: new Date().toISOString(), batches: BATCHES, batch: BATCH, partitions: PARTITIONS, devices: written,
    retries, seconds, batches_per_s: BATCHES / seconds, handler_cpu_s: cpu, azurite_cpu_s: azCpu,
    cpu_ms_per_batch_first: first * 1e3, cpu_ms_per_batch_last: last * 1e3, last_over_first: last / first,
    azurite_cpu_ms_per_batch_first: azFirst * 1e3, azurite_cpu_ms_per_batch_last: azLast * 1e3,
    peak_rss_mib: hwm, rss_at_end_mib: rss,
  };
  console.log(`${written} new devices in ${BATCHES} batches of ${BATCH} (${PARTITIONS} partitions): ${seconds.toFixed(1)} s ` +
    `(${result.batches_per_s.toFixed(1)} batches/s, ${retries} re-posted); handler CPU ${cpu.toFixed(1)} s, ` +
    `Azurite CPU ${azCpu.toFixed(1)} s`);
  console.log(`handler CPU per batch: first ${w} ${(first * 1e3).toFixed(2)} ms, last ${w} ${(last * 1e3).toFixed(2)} ms; ` +
    `Azurite CPU per batch: first ${(azFirst * 1e3).toFixed(1)} ms, last ${(azLast * 1e3).toFixed(1)} ms; ` +
    `peak RSS ${hwm.toFixed(1)} MiB (at the end ${rss.toFixed(1)} MiB)`);
  const targets = [
    [`CPU per batch, last ${w} ≤ 1.5 × first ${w}`, result.last_over_first <= 1.5, `${result.last_over_first.toFixed(2)}×`],
    ['handler peak RSS ≤ 64 MiB', hwm <= 64, `${hwm.toFixed(1)} MiB`],
  ];
  console.log('\n| target | measured | met |\n|---|---|---|');
  for (const [name, ok, v] of targets) console.log(`| ${name} | ${v} | ${ok ? 'yes' : 'NO'} |`);
  result.targets = Object.fromEntries(targets.map(([n, ok, v]) => [n, { ok, value: v }]));
  if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, JSON.stringify(result, null, 2));
} finally {
  if (h) await h.stop();
  await az.stop();
}
