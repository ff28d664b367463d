#!/usr/bin/env node
// Load (issue 15): 200 devices × 500 messages through the whole local stack at a fixed offered
// rate; prints (and with --json writes) the sustained rate, latency and each process's CPU and
// RSS. The same count check as the fault runs closes the run, so a fast run that loses
// something fails.
//
//   node tests/reliability/load.mjs [--rate R] [--devices N] [--count N] [--transport http|mqtt]
//                                   [--partitions N] [--json FILE]
//   make load   (LOAD_ARGS="--rate 1500")
//
// Figures:
//   - offered rate (--rate) and acknowledged rate (simulator: acknowledged / its elapsed time);
//   - end-to-end rate: messages counted in DeviceState / (first send → last row caught up);
//   - the simulator's send → acknowledgement latency (HTTP 204 after the hub's fsync, or PUBACK);
//   - hub enqueue → SignalR client latency: for each push, now − its lastSeen (the enqueued time
//     of the newest message folded into it, stamped by devhost on this machine's clock). A push
//     carries the newest of the messages of its batch, so this is per push, not per message.
//     The client runs in a process of its own (signalr_receiver.mjs): in this one, whatever
//     blocks the driver's event loop would be counted as pipeline latency;
//   - per process: CPU (share of one core over the run), the time its threads waited for a CPU
//     (run queue, /proc/PID/task/*/schedstat) and RSS (max), from /proc; the machine's load
//     averages at the start and the end and its CPU pressure (/proc/pressure/cpu) over the run.
// The run counts as sustained when the simulator kept the offered rate (acknowledged rate at
// least 95 % of it) and the pipeline caught up within 5 s of the last acknowledgement.
import fs from 'node:fs';
import os from 'node:os';
import { startRig, runSimulator, dumpLogs, waitDrained, checkCounts, signalrReceiver, sampler, pct, log, machine } from './rig.mjs';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i < 0 ? def : argv[i + 1];
};
const rate = Number(opt('--rate', 1000));
const devices = Number(opt('--devices', 200));
const count = Number(opt('--count', 500));
const transport = opt('--transport', 'http');
const partitions = Number(opt('--partitions', 4));
const jsonOut = opt('--json', '');

const loadAvg = () => os.loadavg().map((x) => Math.round(x * 100) / 100);
const loadStart = loadAvg();
log(`machine: ${machine()}`);
log(`load: ${devices} devices × ${count} messages at ${rate}/s over ${transport}, ${partitions} partitions`);
const rig = await startRig({ tag: 'load', partitions, mqtt: transport === 'mqtt' });
let ok = false;
try {
  const client = await signalrReceiver(rig.url, 'load-');
  const sim = runSimulator(rig, { devices, count, rate, transport, prefix: 'load-', retryFor: 600 });
  // registration (devhost device add per device) comes first: sample from the first send on
  await new Promise((resolve) => {
    const t = setInterval(() => { if (/sent [1-9]/.test(sim.stderr()) || sim.proc.exitCode !== null) { clearInterval(t); resolve(); } }, 100);
  });
  const smp = sampler({
    devhost: rig.dh.proc.pid, handler: () => rig.handlerPid(), azurite: rig.az.proc.pid, signalr: rig.sr.proc.pid,
    simulator: sim.proc.pid, 'signalr client (node)': client.pid, 'driver (node)': process.pid,
  }, 1000);
  const { summary } = await sim.done;
  const procs = smp.stop();
  const { rows, ms } = await waitDrained(rig, summary, { quietMs: 2000 });
  const catchUpMs = Math.max(0, ms - 2000); // within the 0.5 s poll interval
  const e2eMs = summary.elapsedSeconds * 1000 + catchUpMs;
  const { lat, eventLoopDelayMs } = await client.stop();
  const loadEnd = loadAvg();
  await rig.stop();
  const c = checkCounts(summary, rows, dumpLogs(rig.data));
  lat.sort((a, b) => a - b);
  const ackRate = summary.acknowledged / summary.elapsedSeconds;
  const sustained = ackRate >= 0.95 * rate && catchUpMs <= 5000;
  const result = {
    machine: machine(), transport, devices, count, partitions, offeredRate: rate,
    acknowledged: summary.acknowledged, failed: summary.failed, retries: summary.retries,
    ackRate: Math.round(ackRate), e2eRate: Math.round(c.totals.counted / (e2eMs / 1000)),
    catchUpSeconds: Math.round(catchUpMs / 100) / 10,
    sendAckMs: summary.latencyMs,
    enqueueToClientMs: { pushes: lat.length, p50: pct(lat, 50), p90: pct(lat, 90), p99: pct(lat, 99), max: lat.at(-1) },
    clientEventLoopDelayMs: eventLoopDelayMs,
    loadAverage: { start: loadStart, end: loadEnd }, cpuPressurePct: smp.machine?.cpuPressurePct ?? null,
    processes: procs, sustained, countCheck: c.ok ? 'ok' : c.problems.slice(0, 10),
  };
  ok = c.ok;
  console.log(JSON.stringify(result, null, 2));
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(result, null, 2));
  log(`${sustained ? 'sustained' : 'NOT sustained'}: offered ${rate}/s, acknowledged ${result.ackRate}/s, end to end ${result.e2eRate}/s; ` +
    `send→ack p50 ${summary.latencyMs.p50} ms p99 ${summary.latencyMs.p99} ms; enqueue→client p50 ${result.enqueueToClientMs.p50} ms ` +
    `p99 ${result.enqueueToClientMs.p99} ms; load average ${loadStart.join(' ')} → ${loadEnd.join(' ')}, CPU pressure ` +
    `${result.cpuPressurePct} %; count check ${c.ok ? 'ok' : 'FAILED'}`);
} finally {
  rig.cleanup();
}
process.exit(ok ? 0 : 1);
