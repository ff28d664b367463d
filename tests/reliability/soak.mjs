#!/usr/bin/env node
// Soak (issue 15): the whole local stack at a steady rate for a long time (default one hour at
// 500 messages/s from 100 devices over HTTP). Every 10 s it samples each process's RSS, open
// file descriptors and threads, and the size of devhost's data folder; at the end it judges:
//   - RSS flat: each process's median RSS over the last quarter of the run is at most 10 % (and
//     at most 16 MiB) above its median over the second quarter (the first is warm-up);
//   - no growing descriptors: the last quarter's fewest open descriptors at most 16 above the
//     second quarter's (a leak raises the floor; devices' connections coming and going move the
//     count up and down by tens — an hour's run went between 48 and 103 — and are not one), and
//     its most at most 64 above;
//   - partition logs compacted: the data folder ends well below what was written (the hub
//     deletes segments every consumer group has read; segments are 16 MiB per partition, so
//     short runs show it only with --partitions 1);
//   - nothing lost or double counted: the fault runs' count check, from the DeviceState rows
//     (the partition logs were compacted, so Count + InvalidCount is compared with what the
//     simulator acknowledged: acknowledged ≤ it ≤ acknowledged + uncertain).
//
//   node tests/reliability/soak.mjs [--minutes M] [--rate R] [--devices N] [--partitions N]
//                                   [--transport http|mqtt] [--json FILE]
//   make soak   (SOAK_ARGS="--minutes 5 --partitions 1")
// Not run in CI.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { startRig, runSimulator, waitDrained, sampler, log, machine, num } from './rig.mjs';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i < 0 ? def : argv[i + 1];
};
const minutes = Number(opt('--minutes', 60));
const rate = Number(opt('--rate', 500));
const devices = Number(opt('--devices', 100));
const partitions = Number(opt('--partitions', 4));
const transport = opt('--transport', 'http');
const jsonOut = opt('--json', '');

const duKiB = (dir) => Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : NaN; };

log(`machine: ${machine()}`);
log(`soak: ${minutes} min at ${rate}/s, ${devices} devices over ${transport}, ${partitions} partitions`);
const rig = await startRig({ tag: 'soak', partitions, mqtt: transport === 'mqtt' });
let ok = false;
try {
  const sim = runSimulator(rig, { devices, count: 0, rate, transport, prefix: 'soak-', extra: ['--duration', String(minutes * 60)] });
  await new Promise((resolve) => {
    const t = setInterval(() => { if (/sent [1-9]/.test(sim.stderr()) || sim.proc.exitCode !== null) { clearInterval(t); resolve(); } }, 200);
  });
  const smp = sampler({ devhost: rig.dh.proc.pid, handler: () => rig.handlerPid(), azurite: rig.az.proc.pid, signalr: rig.sr.proc.pid, simulator: sim.proc.pid }, 10000);
  const disk = [];
  const diskTimer = setInterval(() => { try { disk.push({ t: Date.now(), kib: duKiB(rig.data) }); } catch { /* racing a deletion */ } }, 10000);
  const progress = setInterval(() => {
    const d = smp.series.devhost.at(-1);
    const h = smp.series.handler.at(-1);
    log(`  ${sim.stderr().trim().split('\n').at(-1).trim()} | devhost RSS ${(d?.rssKiB / 1024).toFixed(1)} MiB fds ${d?.fds} | handler RSS ${(h?.rssKiB / 1024).toFixed(1)} MiB fds ${h?.fds} | data ${(disk.at(-1)?.kib / 1024).toFixed(1)} MiB`);
  }, 60000);
  const { summary } = await sim.done;
  clearInterval(progress);
  clearInterval(diskTimer);
  const procs = smp.stop();
  const { rows } = await waitDrained(rig, summary, { quietMs: 3000 });
  await rig.stop();
  const problems = [];
  const flat = {};
  for (const [name, xs] of Object.entries(smp.series)) {
    if (name === 'simulator' || xs.length < 8) continue;
    const q = Math.floor(xs.length / 4);
    const second = xs.slice(q, 2 * q);
    const last = xs.slice(3 * q);
    const r2 = median(second.map((x) => x.rssKiB));
    const r4 = median(last.map((x) => x.rssKiB));
    const f2 = Math.max(...second.map((x) => x.fds));
    const f4 = Math.max(...last.map((x) => x.fds));
    const m2 = Math.min(...second.map((x) => x.fds));
    const m4 = Math.min(...last.map((x) => x.fds));
    flat[name] = { rssSecondQuarterMiB: +(r2 / 1024).toFixed(1), rssLastQuarterMiB: +(r4 / 1024).toFixed(1),
      fdsSecondQuarterMin: m2, fdsLastQuarterMin: m4, fdsSecondQuarterMax: f2, fdsLastQuarterMax: f4 };
    if (r4 > r2 * 1.10 && r4 - r2 > 16 * 1024 / 8) problems.push(`${name}: RSS grew from ${(r2 / 1024).toFixed(1)} to ${(r4 / 1024).toFixed(1)} MiB`);
    if (r4 - r2 > 16 * 1024) problems.push(`${name}: RSS grew by more than 16 MiB`);
    if (m4 > m2 + 16) problems.push(`${name}: the fewest open descriptors grew from ${m2} to ${m4}`);
    if (f4 > f2 + 64) problems.push(`${name}: the most open descriptors grew from ${f2} to ${f4}`);
  }
  const compactions = await rig.countInDevhostLogs(/compacted \d+ segment/);
  const writtenMiB = (summary.acknowledged * 0.4) / 1024; // ~400 bytes a stored message (measured below)
  const dataEndMiB = (disk.at(-1)?.kib ?? 0) / 1024;
  const dataMaxMiB = Math.max(...disk.map((x) => x.kib)) / 1024;
  const segmentsPossible = (summary.acknowledged * 400) / partitions > 16 * 2 ** 20;
  if (segmentsPossible && !compactions) problems.push('the partition logs were never compacted');
  let counted = 0;
  for (const [id, d] of Object.entries(summary.devices)) {
    const r = rows[id];
    const c = r ? num(r.Count) + num(r.InvalidCount) : 0;
    counted += c;
    if (c < d.acknowledged || c > d.acknowledged + d.uncertain) problems.push(`${id}: Count + InvalidCount ${c}, acknowledged ${d.acknowledged}, uncertain ${d.uncertain}`);
  }
  if (summary.failed) problems.push(`the simulator lost ${summary.failed} messages: ${JSON.stringify(summary.lost)}`);
  const result = {
    machine: machine(), minutes, rate, devices, partitions, transport,
    acknowledged: summary.acknowledged, ackRate: Math.round(summary.acknowledged / summary.elapsedSeconds), counted,
    sendAckMs: summary.latencyMs, processes: procs, flat, compactions, dataEndMiB: +dataEndMiB.toFixed(1),
    dataMaxMiB: +dataMaxMiB.toFixed(1), approxWrittenMiB: +writtenMiB.toFixed(1), problems,
  };
  console.log(JSON.stringify(result, null, 2));
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(result, null, 2));
  ok = problems.length === 0;
  log(ok ? 'soak passed' : `soak FAILED:\n  ${problems.join('\n  ')}`);
} finally {
  rig.cleanup();
}
process.exit(ok ? 0 : 1);
