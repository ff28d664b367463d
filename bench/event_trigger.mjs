// EventTrigger benchmark: one Azurite, one run, three figures side by side
// (docs/benchmarks.md, "EventTrigger"). Workload: DEVICES devices spread over PARTITIONS
// partitions (device d lives in partition d % PARTITIONS), events in 100-event batches,
// the partitions processed in parallel, EVENTS events in all.
//   (a) the original algorithm (per event: read + conditional merge, serially per partition)
//       with our C table client — bench/event_trigger_tool orig;
//   (b) EventTrigger through POST /EventTrigger on the release handler;
//   (c) the ceiling: as many row writes as (b) made, as back-to-back $batch merges —
//       bench/event_trigger_tool ceiling.
// Env: HANDLER_BIN, BENCH_TOOL, BENCH_EVENTS (40000), BENCH_A_EVENTS (events for (a), default
// BENCH_EVENTS), BENCH_DEVICES (100), BENCH_PARTITIONS (4), BENCH_BATCH (100), BENCH_OUT (json file).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startHandler, repoRoot } from '../tests/js/lib/handler.mjs';
import { startAzurite } from '../tests/js/lib/azurite.mjs';
import { wireBatch, rowsOf, summaryOf } from '../tests/js/lib/eventhub.mjs';
import { procCpuSeconds, procStatusKiB } from '../tests/js/lib/proc.mjs';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 40000);
const A_EVENTS = Number(process.env.BENCH_A_EVENTS ?? EVENTS);
const DEVICES = Number(process.env.BENCH_DEVICES ?? 100);
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 4);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const TOOL = process.env.BENCH_TOOL ?? path.join(repoRoot, 'build/release/bench/event_trigger_tool');
const HANDLER = process.env.HANDLER_BIN ?? path.join(repoRoot, 'build/release/handler');
const PK = 'bench';
function tool(args, conn) {
  const r = spawnSync(TOOL, args, { env: { ...process.env, BENCH_STORAGE_CONNECTION: conn }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${TOOL} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const az = await startAzurite();
try {
  // ---- (a) the original algorithm
  const a = tool(['orig', 'BenchOriginal', PK, String(A_EVENTS), String(DEVICES), String(PARTITIONS)], az.connection);
  const aRate = a.events / a.seconds;
  console.log(`(a) original: ${a.events} events in ${a.seconds.toFixed(2)} s = ${aRate.toFixed(0)} events/s (${a.requests} requests)`);

  // ---- (b) EventTrigger
  const perPart = Math.ceil(EVENTS / PARTITIONS);
  const batches = [];   // [partition][k]
  for (let p = 0; p < PARTITIONS; p++) {
    const list = [];
    const devsHere = [];
    for (let d = p; d < DEVICES; d += PARTITIONS) devsHere.push(`dev-${String(d).padStart(3, '0')}`);
    for (let off = 0; off < perPart; off += BATCH) {
      const events = [];
      for (let i = off; i < Math.min(off + BATCH, perPart); i++) {
        events.push({ deviceId: devsHere[i % devsHere.length], seq: i + 1,
          enqueued: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString().slice(0, 23),
          body: { temperature: 15 + (i % 20), humidity: 40 + (i % 30), pressure: 1000 + (i % 15), messageId: i } });
      }
      const b = wireBatch(events, { partition: String(p) });
      // serialised up front: the driver's own CPU competes with Azurite and the handler
      list.push(JSON.stringify({ Data: b.data, Metadata: b.metadata }));
    }
    batches.push(list);
  }
  const h = await startHandler({ StorageConnectionString: az.connection, PartitionKey: PK,
    DeviceStateTable: 'BenchState', CalibrationTable: 'BenchCalibration', ...(process.env.BENCH_HANDLER_ENV ? JSON.parse(process.env.BENCH_HANDLER_ENV) : {}) }, { bin: HANDLER });
  let rowsWritten = 0;
  let conflicts = 0;
  let invocations = 0;
  let handlerMs = 0;
  const cpu0 = procCpuSeconds(h.proc.pid);
  const t0 = process.hrtime.bigint();
  await Promise.all(batches.map(async (list) => {
    for (const body of list) {
      const resp = await fetch(`${h.url}/EventTrigger`, { method: 'POST', body,
        headers: { 'Content-Type': 'application/json; charset=utf-8', 'X-Azure-Functions-InvocationId': crypto.randomUUID() } });
      const text = await resp.text();
      if (resp.status !== 200) throw new Error(`EventTrigger answered ${resp.status}: ${text.slice(0, 300)}`);
      const s = summaryOf(JSON.parse(text));
      rowsWritten += s.rows_written;
      handlerMs += s.elapsed_ms;
      conflicts += s.conflicts_retried;
      invocations++;
    }
  }));
  const bSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = procCpuSeconds(h.proc.pid) - cpu0;
  const rss = procStatusKiB(h.proc.pid, 'VmHWM');
  await h.stop();
  const rows = await rowsOf(az.connection, 'BenchState', PK);
  const total = Object.values(rows).reduce((n, r) => n + Number(r.Count), 0);
  if (total !== perPart * PARTITIONS) throw new Error(`sum of Count is ${total}, expected ${perPart * PARTITIONS}`);
  const bEvents = perPart * PARTITIONS;
  const bRate = bEvents / bSeconds;
  const bWrites = rowsWritten / bSeconds;
  console.log(`(b) EventTrigger: ${bEvents} events in ${bSeconds.toFixed(2)} s = ${bRate.toFixed(0)} events/s; ` +
    `${rowsWritten} row writes = ${bWrites.toFixed(0)} rows/s; ${invocations} invocations, ${conflicts} conflicts; ` +
    `handler CPU ${(cpu * 1e6 / bEvents).toFixed(2)} µs/event, peak RSS ${(rss / 1024).toFixed(1)} MiB; ` +
    `mean time inside EventTrigger ${(handlerMs / invocations).toFixed(2)} ms/invocation`);

  // ---- (c) the ceiling: the same number of row writes as $batch merges
  const opsPerBatch = Math.max(1, Math.min(100, Math.round(rowsWritten / invocations)));
  const c = tool(['ceiling', 'BenchCeiling', PK, String(rowsWritten), String(DEVICES), String(PARTITIONS), String(opsPerBatch)], az.connection);
  const cWrites = c.rows / c.seconds;
  console.log(`(c) ceiling: ${c.rows} row writes as $batch of ${opsPerBatch} in ${c.seconds.toFixed(2)} s = ${cWrites.toFixed(0)} rows/s`);

  const result = {
    when: new Date().toISOString(), events: bEvents, devices: DEVICES, partitions: PARTITIONS, batch: BATCH,
    a: { events: a.events, seconds: a.seconds, events_per_s: aRate, requests: a.requests },
    b: { events: bEvents, seconds: bSeconds, events_per_s: bRate, row_writes: rowsWritten, rows_per_s: bWrites,
      conflicts, function_ms_per_invocation: handlerMs / invocations, cpu_us_per_event: cpu * 1e6 / bEvents, peak_rss_mib: rss / 1024 },
    c: { rows: c.rows, seconds: c.seconds, rows_per_s: cWrites, ops_per_batch: opsPerBatch, requests: c.requests },
    ratios: { b_over_a_events: bRate / aRate, b_over_c_rows: bWrites / cWrites },
  };
  const targets = [
    ['(b) events/s ≥ 20 × (a)', result.ratios.b_over_a_events >= 20, `${result.ratios.b_over_a_events.toFixed(1)}×`],
    ['(b) row writes/s ≥ 70 % of (c)', result.ratios.b_over_c_rows >= 0.7, `${(result.ratios.b_over_c_rows * 100).toFixed(0)} %`],
    ['handler CPU ≤ 10 µs/event', result.b.cpu_us_per_event <= 10, `${result.b.cpu_us_per_event.toFixed(2)} µs`],
    ['handler peak RSS ≤ 16 MiB', result.b.peak_rss_mib <= 16, `${result.b.peak_rss_mib.toFixed(1)} MiB`],
  ];
  console.log('\n| target | measured | met |\n|---|---|---|');
  for (const [name, ok, v] of targets) console.log(`| ${name} | ${v} | ${ok ? 'yes' : 'NO'} |`);
  result.targets = Object.fromEntries(targets.map(([n, ok, v]) => [n, { ok, value: v }]));
  if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, JSON.stringify(result, null, 2));
} finally {
  await az.stop();
}
