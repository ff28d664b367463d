// EventTrigger with ever more devices (docs/benchmarks.md, "EventTrigger: 100,000 devices"):
// does anything grow with the number of devices the handler has seen? One Azurite, the
// release handler, BATCHES batches of BATCH events, every event from a device not seen before
// (100,000 distinct devices by default), PARTITIONS partitions posting in lockstep rounds.
// Figures: the handler's CPU per batch over the first and the last WINDOW batches (from
// /proc/<pid>/stat around each round), its peak RSS (VmHWM), the storage requests it made per
// batch in both windows (counted by a pass-through TCP relay in front of Azurite: one
// "Authorization: SharedKey" per request; a $batch's parts carry none), Azurite's CPU per
// batch, wall time. A batch answered 503 (storage too slow on a busy machine) is posted
// again, as the host would; re-posts are counted.
// Side by side: the first window and the last are tens of minutes apart on a machine shared
// with others, so their CPU figures also differ by whatever the load did meanwhile. During
// the last window a second, fresh handler with its own fresh Azurite (the first window's
// conditions: no device seen, an empty table) is fed the first window's batches, its rounds
// alternating with the main handler's; the target is judged on last ÷ that replay, and the
// time-separated last ÷ first is printed beside it.
// Targets: last/first ≤ 1.5, peak RSS ≤ 64 MiB.
// Env: HANDLER_BIN, BENCH_BATCHES (1000), BENCH_BATCH (100), BENCH_PARTITIONS (4),
// BENCH_WINDOW (100), BENCH_OUT (json file), BENCH_HANDLER_ENV (JSON of extra settings).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startHandler, repoRoot, freePort } from '../tests/js/lib/handler.mjs';
import { startAzurite, connectionString } from '../tests/js/lib/azurite.mjs';
import { wireBatch, summaryOf, tableClient } from '../tests/js/lib/eventhub.mjs';
import { procCpuSeconds, procStatusKiB } from '../tests/js/lib/proc.mjs';

const BATCHES = Number(process.env.BENCH_BATCHES ?? 1000);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 4);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 100);
const HANDLER = process.env.HANDLER_BIN ?? path.join(repoRoot, 'build/release/handler');
const PK = 'bench-devices';
const SETTINGS = { PartitionKey: PK, DeviceStateTable: 'BenchDevState', CalibrationTable: 'BenchDevCalibration',
  PoisonEventsTable: 'BenchDevPoison', StorageTimeoutMs: '30000',
  ...(process.env.BENCH_HANDLER_ENV ? JSON.parse(process.env.BENCH_HANDLER_ENV) : {}) };

/** A pass-through TCP relay to port that counts the requests sent through it: each signed
 *  request carries one "Authorization: SharedKey" header (a $batch's parts carry none).
 *  Connections open and close as they would without it. */
async function countingRelay(port) {
  const MARK = 'Authorization: SharedKey';
  const relay = { requests: 0, sockets: new Set() };
  relay.server = net.createServer((c) => {
    const up = net.connect(port, '127.0.0.1');
    relay.sockets.add(c); relay.sockets.add(up);
    let tail = '';
    c.on('data', (d) => {
      const text = tail + d.toString('latin1');
      for (let i = text.indexOf(MARK); i >= 0; i = text.indexOf(MARK, i + MARK.length)) relay.requests++;
      tail = text.slice(-(MARK.length - 1));
      up.write(d);
    });
    up.on('data', (d) => c.write(d));
    const close = () => { c.destroy(); up.destroy(); relay.sockets.delete(c); relay.sockets.delete(up); };
    c.on('end', () => up.end()); up.on('end', () => c.end());
    c.on('error', close); up.on('error', close); c.on('close', close); up.on('close', close);
  });
  relay.port = await freePort();
  await new Promise((r) => relay.server.listen(relay.port, '127.0.0.1', r));
  relay.close = () => { for (const s of relay.sockets) s.destroy(); relay.server.close(); };
  return relay;
}

/** Post one lockstep round (ks: batch numbers) to handler h: CPU seconds per batch of h and of
 *  Azurite pid azPid, storage requests per batch (relay), devices written, re-posts. */
async function round(h, azPid, relay, ks, bodyOf) {
  const bodies = ks.map(bodyOf);   // built before the clock of the round starts
  const c0 = procCpuSeconds(h.proc.pid), a0 = procCpuSeconds(azPid), r0 = relay.requests;
  let written = 0, retries = 0;
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
  return { cpu: (procCpuSeconds(h.proc.pid) - c0) / ks.length, az: (procCpuSeconds(azPid) - a0) / ks.length,
    requests: (relay.requests - r0) / ks.length, written, retries };
}
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
const relay = await countingRelay(az.port);
let h, ref = null;
try {
  h = await startHandler({ StorageConnectionString: connectionString(relay.port), ...SETTINGS }, { bin: HANDLER });
  const w = Math.min(WINDOW, Math.floor(BATCHES / 2));
  const perBatchCpu = new Array(BATCHES).fill(0), perBatchAz = new Array(BATCHES).fill(0), perBatchReq = new Array(BATCHES).fill(0);
  const refCpu = new Array(w).fill(0), refReq = new Array(w).fill(0);
  let written = 0, retries = 0, refRetries = 0, refDone = 0;
  const t0 = process.hrtime.bigint();
  const az0 = procCpuSeconds(az.pid);
  const cpu0 = procCpuSeconds(h.proc.pid);
  const last = (k) => k >= BATCHES - w;
  /** The replay's next round: the first window's next batches, to the fresh handler. */
  const replayRound = async () => {
    const rks = [];
    for (let p = 0; p < PARTITIONS && refDone + p < w; p++) rks.push(refDone + p);
    const rm = await round(ref.h, ref.az.pid, ref.relay, rks, body);
    for (const k of rks) { refCpu[k] = rm.cpu; refReq[k] = rm.requests; }
    refRetries += rm.retries;
    refDone += rks.length;
  };
  for (let r = 0; r * PARTITIONS < BATCHES; r++) {
    const ks = [];
    for (let p = 0; p < PARTITIONS && r * PARTITIONS + p < BATCHES; p++) ks.push(r * PARTITIONS + p);
    if (!ref && ks.some(last)) {
      // the replay of the first window's conditions, side by side with the last window
      const refAz = await startAzurite(), refRelay = await countingRelay(refAz.port);
      ref = { az: refAz, relay: refRelay,
        h: await startHandler({ StorageConnectionString: connectionString(refRelay.port), ...SETTINGS }, { bin: HANDLER }) };
    }
    const m = await round(h, az.pid, relay, ks, body);
    for (const k of ks) { perBatchCpu[k] = m.cpu; perBatchAz[k] = m.az; perBatchReq[k] = m.requests; }
    written += m.written;
    retries += m.retries;
    if (ref && refDone < w) await replayRound();
    if (r % 25 === 24) process.stdout.write(`  ${(r + 1) * PARTITIONS} batches, ${written} devices\n`);
  }
  if (ref) {
    // a window not yet replayed in full (BATCHES not a multiple of PARTITIONS): finish it
    while (refDone < w) await replayRound();
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = procCpuSeconds(h.proc.pid) - cpu0;
  const azCpu = procCpuSeconds(az.pid) - az0;
  const hwm = procStatusKiB(h.proc.pid, 'VmHWM') / 1024;
  const rss = procStatusKiB(h.proc.pid, 'VmRSS') / 1024;
  await h.stop();
  h = null;

  // spot check: every 997th device has its row
  const tc = tableClient(az.connection, 'BenchDevState');
  for (let n = 0; n < BATCHES * BATCH; n += 997) {
    const e = await tc.getEntity(PK, `dev-${String(n).padStart(6, '0')}`);
    if (Number(e.Count) !== 1 || e.Celsius !== 15 + (n % 20)) throw new Error(`device ${n}: ${JSON.stringify(e)}`);
  }
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const first = mean(perBatchCpu.slice(0, w)), lastW = mean(perBatchCpu.slice(BATCHES - w)), replay = mean(refCpu);
  const azFirst = mean(perBatchAz.slice(0, w)), azLast = mean(perBatchAz.slice(BATCHES - w));
  const reqFirst = mean(perBatchReq.slice(0, w)), reqLast = mean(perBatchReq.slice(BATCHES - w)), reqReplay = mean(refReq);
  const result = {
    when: new Date().toISOString(), batches: BATCHES, batch: BATCH, partitions: PARTITIONS, devices: written,
    retries, replay_retries: refRetries, seconds, batches_per_s: BATCHES / seconds, handler_cpu_s: cpu, azurite_cpu_s: azCpu,
    cpu_ms_per_batch_first: first * 1e3, cpu_ms_per_batch_last: lastW * 1e3, cpu_ms_per_batch_replay: replay * 1e3,
    last_over_replay: lastW / replay, last_over_first: lastW / first, replay_over_first: replay / first,
    requests_per_batch_first: reqFirst, requests_per_batch_last: reqLast, requests_per_batch_replay: reqReplay,
    azurite_cpu_ms_per_batch_first: azFirst * 1e3, azurite_cpu_ms_per_batch_last: azLast * 1e3,
    peak_rss_mib: hwm, rss_at_end_mib: rss,
  };
  console.log(`${written} new devices in ${BATCHES} batches of ${BATCH} (${PARTITIONS} partitions): ${seconds.toFixed(1)} s ` +
    `(${result.batches_per_s.toFixed(1)} batches/s, ${retries} re-posted, ${refRetries} in the replay); handler CPU ` +
    `${cpu.toFixed(1)} s, Azurite CPU ${azCpu.toFixed(1)} s`);
  console.log(`handler CPU per batch: first ${w} ${(first * 1e3).toFixed(2)} ms, last ${w} ${(lastW * 1e3).toFixed(2)} ms, ` +
    `first ${w} replayed beside the last ${(replay * 1e3).toFixed(2)} ms (replay ÷ first ${result.replay_over_first.toFixed(2)}: ` +
    `what the load did meanwhile); storage requests per batch: first ${reqFirst.toFixed(2)}, last ${reqLast.toFixed(2)}, ` +
    `replay ${reqReplay.toFixed(2)}`);
  console.log(`Azurite CPU per batch: first ${(azFirst * 1e3).toFixed(1)} ms, last ${(azLast * 1e3).toFixed(1)} ms; ` +
    `peak RSS ${hwm.toFixed(1)} MiB (at the end ${rss.toFixed(1)} MiB)`);
  const targets = [
    [`CPU per batch, last ${w} ≤ 1.5 × first ${w} (replayed side by side)`, result.last_over_replay <= 1.5,
      `${result.last_over_replay.toFixed(2)}× (time-separated: ${result.last_over_first.toFixed(2)}×)`],
    ['handler peak RSS ≤ 64 MiB', hwm <= 64, `${hwm.toFixed(1)} MiB`],
  ];
  console.log('\n| target | measured | met |\n|---|---|---|');
  for (const [name, ok, v] of targets) console.log(`| ${name} | ${v} | ${ok ? 'yes' : 'NO'} |`);
  result.targets = Object.fromEntries(targets.map(([n, ok, v]) => [n, { ok, value: v }]));
  if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, JSON.stringify(result, null, 2));
} finally {
  if (h) await h.stop();
  if (ref) { await ref.h.stop(); ref.relay.close(); await ref.az.stop(); }
  relay.close();
  await az.stop();
}
