// devhost's IoT Hub HTTP device endpoint alone, A/B (docs/benchmarks.md, "devhost start: devices →
// DeviceState → SignalR", "what changed, A/B in one run"): two devhost binaries, rounds
// alternating A, B, A, B..., each round a fresh `devhost start --no-mqtt` on a fresh data folder
// with an app that has no function (the test recorder as handler; so devhost's CPU is the HTTP front, SAS
// checks, the registry and the group-committed partition logs, nothing downstream), BENCH_DEVICES
// devices, then wrk (-t2 -cCONNECTIONS, bench/devhost_e2e.lua) for BENCH_SECONDS. Per round:
// accepted msgs/s and devhost's CPU (utime+stime from /proc) per accepted message. Prints the
// medians per binary and the ratio B ÷ A, with the load average; exits 1 on a refused message.
// Env: AB_A, AB_B (devhost binaries; default: build/release/devhost for both), AB_ROUNDS (3),
// BENCH_DEVICES (100), BENCH_SECONDS (8), BENCH_CONNECTIONS (32), BENCH_OUT (json file).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tempDir, repoRoot, makeApp, freePort } from '../tests/js/lib/devhost.mjs';
import { encodeStrict, nodeToken } from '../tests/js/lib/iothub.mjs';
import { procCpuSeconds, spawnTied } from '../tests/js/lib/proc.mjs';

const def = path.join(repoRoot, 'build', 'release', 'devhost');
const BINS = { A: process.env.AB_A ?? def, B: process.env.AB_B ?? def };
const ROUNDS = Number(process.env.AB_ROUNDS ?? 3);
const DEVICES = Number(process.env.BENCH_DEVICES ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

function run(cmd, args, env = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${out}${err}`))));
  });
}

/** `devhost start` on a fresh data folder; resolves when /admin/host/status says Running. */
async function startDevhost(bin, root, data) {
  const port = await freePort();
  const proc = spawnTied(bin, ['start', '--script-root', root, '--port', String(port), '--data', data, '--no-mqtt'],
    { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => proc.on('exit', r));
  for (const deadline = Date.now() + 30000; ;) {
    const s = await fetch(`http://127.0.0.1:${port}/admin/host/status`).then((r) => r.json()).catch(() => null);
    if (s?.state === 'Running') break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`devhost did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { port, pid: proc.pid, stop: () => { proc.kill('SIGINT'); return exited; } };
}

async function round(label) {
  const bin = BINS[label];
  const app = makeApp();
  const data = tempDir('ab-data');
  try {
    const devs = [];
    for (let i = 0; i < DEVICES; i++) {
      const id = `ab-${String(i).padStart(4, '0')}`;
      const out = await run(bin, ['device', 'add', id, '--data', data]);
      devs.push({ id, key: /SharedAccessKey=([^;\s]+)/.exec(out)[1] });
    }
    const luaDevs = path.join(app.root, 'devices.lua');
    fs.writeFileSync(luaDevs, `return {\n${devs.map((d) => `{ path = "/devices/${encodeStrict(d.id)}/messages/events?api-version=2021-04-12", `
      + `auth = "${nodeToken(d.id, d.key, 7200)}" }`).join(',\n')}\n}\n`, { mode: 0o600 });
    const dh = await startDevhost(bin, app.root, data);
    const cpu0 = procCpuSeconds(dh.pid);
    const wrk = JSON.parse((await run('wrk', ['-t2', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '-s',
      path.join(repoRoot, 'bench', 'devhost_e2e.lua'), `http://127.0.0.1:${dh.port}`], { BENCH_DEVICES_LUA: luaDevs }))
      .trim().split('\n').pop());
    const cpu1 = procCpuSeconds(dh.pid);
    await dh.stop();
    const accepted = wrk.requests - wrk.refused;
    return { label, accepted, refused: wrk.refused, socket_errors: wrk.socket_errors, per_s: accepted / wrk.seconds,
      cpu_us_per_msg: ((cpu1 - cpu0) * 1e6) / accepted, p50_ms: wrk.p50_ms, p99_ms: wrk.p99_ms, loadavg: os.loadavg()[0] };
  } finally {
    app.cleanup();
    fs.rmSync(data, { recursive: true, force: true });
  }
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const rounds = [];
let failed = false;
console.log(`A = ${BINS.A}\nB = ${BINS.B}\nload average at start: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
for (let i = 0; i < ROUNDS; i++) {
  for (const label of i % 2 ? ['B', 'A'] : ['A', 'B']) {
    const r = await round(label);
    rounds.push(r);
    if (r.refused || r.socket_errors) failed = true;
    console.log(`round ${i + 1} ${label}: ${r.per_s.toFixed(0)} msgs/s accepted, devhost ${r.cpu_us_per_msg.toFixed(1)} µs/msg, `
      + `204 p50 ${r.p50_ms.toFixed(1)} ms p99 ${r.p99_ms.toFixed(1)} ms, refused ${r.refused}, socket errors ${r.socket_errors}, `
      + `load ${r.loadavg.toFixed(2)}`);
  }
}
const summary = {};
for (const label of ['A', 'B']) {
  const mine = rounds.filter((r) => r.label === label);
  summary[label] = { per_s: median(mine.map((r) => r.per_s)), cpu_us_per_msg: median(mine.map((r) => r.cpu_us_per_msg)) };
}
summary.ratio_cpu_b_over_a = summary.B.cpu_us_per_msg / summary.A.cpu_us_per_msg;
summary.ratio_rate_b_over_a = summary.B.per_s / summary.A.per_s;
console.log(`medians: A ${summary.A.per_s.toFixed(0)} msgs/s, ${summary.A.cpu_us_per_msg.toFixed(1)} µs/msg; `
  + `B ${summary.B.per_s.toFixed(0)} msgs/s, ${summary.B.cpu_us_per_msg.toFixed(1)} µs/msg; B ÷ A: CPU/msg `
  + `${summary.ratio_cpu_b_over_a.toFixed(2)}, msgs/s ${summary.ratio_rate_b_over_a.toFixed(2)}; `
  + `load average at end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, JSON.stringify({ when: new Date().toISOString(), bins: BINS, rounds, summary }, null, 2));
if (failed) { console.log('FAILED: a message was refused or a socket failed'); process.exit(1); }
