// The whole local stack as the reliability runs (faults, load, soak) drive it, every part a
// separate process that a run can kill and restart: Azurite (persistent, on disk), the local
// SignalR Service (`devhost signalr`, so that it can go down on its own), `devhost start` with the
// repository's app and the real ./handler (its data folder optionally on a small tmpfs), the
// simulator, and an @microsoft/signalr client that negotiated through devhost.
//
// Also: what the pipeline stored, read back three ways (DeviceState rows in Azurite, the
// partition logs by message id via tests/tools/iothub_server --dump, and the snapshot a new
// dashboard gets), the check every fault run ends with, and (procfs.mjs) /proc figures per
// process.
import { spawn, spawnSync, execFileSync, fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { startAzurite } from '../js/lib/azurite.mjs';
import { makeStackApp, num } from '../js/lib/stack.mjs';
import { startDevhost, tempDir, freePort, waitFor, repoRoot, signalrConn, EMULATOR_KEY } from '../js/lib/devhost.mjs';
import { rowsOf } from '../js/lib/eventhub.mjs';
import { signalR } from '../js/signalr_service_helpers.mjs';
import { childPid, procSample, sampler } from './procfs.mjs';

const build = process.env.ENVIROMON_BUILD || 'build/release';
export const bins = {
  devhost: process.env.DEVHOST_BIN || path.join(repoRoot, build, 'devhost'),
  simulator: process.env.SIMULATOR_BIN || path.join(repoRoot, build, 'simulator'),
  tools: process.env.ENVIROMON_TEST_TOOLS || path.join(repoRoot, build, 'tests', 'tools'),
};
process.env.DEVHOST_BIN = bins.devhost;
process.env.HANDLER_BIN = process.env.HANDLER_BIN || path.join(repoRoot, build, 'handler');

/* Every process a rig started: killed if this script exits without stopping them (a crash). */
const children = new Set();
process.on('exit', () => { for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

/** Mount a tmpfs of mib MiB at dir (root only); returns an unmount function. */
function mountTmpfs(dir, mib) {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', dir]);
  return () => spawnSync('umount', ['-l', dir]);
}

/** Start the local SignalR Service alone on port. */
async function startSignalr(port) {
  const proc = spawn(bins.devhost, ['signalr', '--port', String(port)], {
    env: { ...process.env, AzureSignalRConnectionString: signalrConn(port) }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  children.add(proc);
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  await waitFor(() => fetch(`http://127.0.0.1:${port}/api/health`).then((r) => r.status > 0).catch(() => false),
    { timeoutMs: 20000, what: `the SignalR Service on ${port}` });
  return { proc, logs: () => out, exited, kill: async (sig = 'SIGKILL') => { proc.kill(sig); return exited; } };
}

/**
 * Start the rig. opts: tag, partitions (default 4), tmpfsMiB (devhost's data folder on a tmpfs
 * of that size), mqttPort (0: none).
 */
export async function startRig({ tag = 'rel', partitions = 4, tmpfsMiB = 0, mqtt = false } = {}) {
  const work = tempDir(`${tag}-work`);
  const azDir = path.join(work, 'azurite');
  fs.mkdirSync(azDir);
  const data = path.join(work, 'data');
  fs.mkdirSync(data);
  let az;
  let sr;
  let dh;
  let app;
  let unmount = null;
  const port = await freePort();
  const mqttPort = mqtt ? await freePort() : 0;
  // Each devhost run's whole output goes to a file in the work folder (not the data folder, which
  // may be a small tmpfs); in memory only a bounded part: an hour's soak writes more than a
  // JavaScript string can hold.
  const logFiles = [];
  const devhostLog = () => {
    logFiles.push(path.join(work, `devhost-${logFiles.length + 1}.log`));
    return { logFile: logFiles.at(-1), keepLogBytes: 32 * 2 ** 20 };
  };
  const dhArgs = ['--partitions', String(partitions), ...(mqtt ? ['--mqtt-port', String(mqttPort)] : ['--no-mqtt'])];
  try {
    az = await startAzurite({ location: azDir });
    children.add(az.proc);
    app = await makeStackApp({ tag, conn: az.connection });
    sr = await startSignalr(app.srPort);
    unmount = tmpfsMiB ? mountTmpfs(data, tmpfsMiB) : null;
    dh = await startDevhost(app.root, { port, data, args: dhArgs, readyTimeoutMs: 60000, ...devhostLog() });
    children.add(dh.proc);
  } catch (e) {
    await sr?.kill('SIGKILL');
    await az?.kill('SIGKILL');
    if (unmount) unmount();
    app?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
    throw e;
  }
  const dhLogs = []; // the output of every devhost run (restarts start a new one)
  const rig = {
    work, app, data, port, mqttPort,
    get az() { return az; },
    get sr() { return sr; },
    get dh() { return dh; },
    url: `http://127.0.0.1:${port}`,
    rows: () => rowsOf(app.conn, app.table, app.pk),
    /** pid of the handler devhost runs now: its child process named handler, from /proc. (Not
     *  from devhost's output: that is tens of MiB by the end of a load run, and scanning it each
     *  second blocked this process — and the SignalR client it ran — for up to 0.2 s a time.) */
    handlerPid: () => childPid(dh.proc.pid, 'handler'),
    async restartAzurite({ downMs = 5000, signal = 'SIGKILL' } = {}) {
      await az.kill(signal);
      await sleep(downMs);
      az = await startAzurite({ port: az.port, location: azDir });
      children.add(az.proc);
    },
    async restartSignalr({ downMs = 30000 } = {}) {
      await sr.kill('SIGKILL');
      await sleep(downMs);
      sr = await startSignalr(app.srPort);
    },
    async killDevhost(signal = 'SIGKILL') {
      dhLogs.push(dh.logs());
      await dh.stop(signal);
    },
    async startDevhost() {
      dh = await startDevhost(app.root, { port, data, args: dhArgs, readyTimeoutMs: 60000, ...devhostLog() });
      children.add(dh.proc);
    },
    /** Every devhost output so far, restarts included (of a long run, its start and its latest
     *  tens of MiB; countInDevhostLogs reads all of it). */
    allDevhostLogs: () => [...dhLogs, dh.logs()].join('\n'),
    /** How many lines of every devhost run's whole output (the log files) match re. */
    async countInDevhostLogs(re) {
      let n = 0;
      for (const f of logFiles) {
        if (!fs.existsSync(f)) continue;
        const lines = readline.createInterface({ input: fs.createReadStream(f), crlfDelay: Infinity });
        for await (const line of lines) if (re.test(line)) n++;
      }
      return n;
    },
    async stop() {
      dhLogs.push(dh.logs());
      const e = await dh.stop('SIGINT');
      await sr.kill('SIGTERM');
      await az.stop();
      return e;
    },
    cleanup() {
      if (unmount) unmount();
      fs.rmSync(work, { recursive: true, force: true });
      app.cleanup();
    },
  };
  return rig;
}

/**
 * Run the simulator against the rig: devices × count messages at rate msg/s over transport.
 * Resolves {summary (its --json), stderr, elapsedMs}; the returned object also has proc and
 * started (ms) at once, for faults injected mid-run.
 */
export function runSimulator(rig, { devices, count, rate, transport = 'http', prefix = 'sim-', seed = 1, retryFor = 600, extra = [] }) {
  const endpoint = transport === 'http' ? rig.url : `mqtts://127.0.0.1:${rig.mqttPort}`;
  const args = ['--devices', String(devices), '--prefix', prefix, '--data', rig.data, '--transport', transport,
    '--endpoint', endpoint, ...(count ? ['--count', String(count)] : []), '--rate', String(rate), '--seed', String(seed),
    '--retry-for', String(retryFor), '--json', '--progress', '1', ...(transport === 'mqtt' ? ['--ca', path.join(rig.data, 'ca.pem')] : []),
    ...extra];
  const t0 = Date.now();
  const proc = spawn(bins.simulator, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; if (process.env.RELIAB_VERBOSE) process.stderr.write(d); });
  const done = new Promise((resolve, reject) => proc.on('exit', (code) => {
    let summary = null;
    try { summary = JSON.parse(out); } catch { /* below */ }
    if (!summary) reject(new Error(`simulator exited ${code} without a JSON summary:\n${err.slice(-3000)}`));
    else resolve({ summary, code, stderr: err, elapsedMs: Date.now() - t0 });
  }));
  return { proc, started: t0, done, stderr: () => err };
}

/** Every message in the partition logs (devhost must be stopped). */
export function dumpLogs(data) {
  const r = spawnSync(path.join(bins.tools, 'iothub_server'), ['--data', data, '--dump'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`iothub_server --dump: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** Wait until every device's Count + InvalidCount reaches at least its acknowledged messages
 *  and the totals stay put for quietMs. Returns {rows, ms}; throws when still behind after timeoutMs
 *  or with no progress for stallMs. */
export async function waitDrained(rig, summary, { timeoutMs = 900000, quietMs = 5000, stallMs = 180000 } = {}) {
  const t0 = Date.now();
  let last = -1;
  let since = Date.now();
  for (;;) {
    const rows = await rig.rows().catch(() => null);
    if (rows) {
      let total = 0;
      let behind = 0;
      for (const [id, d] of Object.entries(summary.devices)) {
        const r = rows[id];
        const c = r ? num(r.Count) + num(r.InvalidCount) : 0;
        total += c;
        if (c < d.acknowledged) behind++;
      }
      if (total !== last) { last = total; since = Date.now(); }
      if (!behind && Date.now() - since >= quietMs) return { rows, ms: Date.now() - t0 };
    }
    if (Date.now() - t0 > timeoutMs || Date.now() - since > stallMs) {
      throw new Error(`the pipeline did not catch up (Count + InvalidCount in total ${last}, unchanged for ${Math.round((Date.now() - since) / 1000)} s)`);
    }
    await sleep(500);
  }
}

/**
 * The check every fault run ends with. summary: the simulator's --json; rows: DeviceState;
 * stored: the partition logs' messages. Per device:
 *   - every acknowledged message id is in the partition logs (nothing acknowledged was lost);
 *   - an id stored twice, or stored although the simulator gave it up, is one of its
 *     uncertainIds (a re-send after a lost acknowledgement), never another;
 *   - Count + InvalidCount equals the messages stored for it (every stored message folded
 *     exactly once: no loss, no double count of replays), hence acknowledged ≤ it ≤
 *     acknowledged + uncertain.
 * Returns {ok, problems[], totals}.
 */
export function checkCounts(summary, rows, stored) {
  const problems = [];
  const byDev = new Map();
  for (const m of stored) {
    if (!byDev.has(m.deviceId)) byDev.set(m.deviceId, new Map());
    const ids = byDev.get(m.deviceId);
    ids.set(m.messageId, (ids.get(m.messageId) || 0) + 1);
  }
  const totals = { devices: 0, sent: 0, acknowledged: 0, failed: 0, uncertain: 0, stored: 0, counted: 0, duplicates: 0 };
  for (const [id, d] of Object.entries(summary.devices)) {
    totals.devices++;
    totals.sent += d.sent;
    totals.acknowledged += d.acknowledged;
    totals.failed += d.failed;
    totals.uncertain += d.uncertain;
    const ids = byDev.get(id) || new Map();
    const failed = new Set((d.failedIds || []).map(String));
    const uncertain = new Set((d.uncertainIds || []).map(String));
    let storedN = 0;
    for (const [mid, n] of ids) {
      storedN += n;
      if (n > 1) totals.duplicates += n - 1;
      if ((n > 1 || failed.has(mid)) && !uncertain.has(mid)) problems.push(`${id}: message ${mid} stored ${n}× but not uncertain`);
    }
    for (let k = 1; k <= d.sent; k++) {
      if (!failed.has(String(k)) && !ids.has(String(k))) problems.push(`${id}: acknowledged message ${k} is not in the partition logs`);
    }
    const r = rows[id];
    const counted = r ? num(r.Count) + num(r.InvalidCount) : 0;
    totals.stored += storedN;
    totals.counted += counted;
    if (counted !== storedN) problems.push(`${id}: Count + InvalidCount = ${counted}, stored ${storedN} (acknowledged ${d.acknowledged}, uncertain ${d.uncertain})`);
  }
  return { ok: problems.length === 0, problems, totals };
}

/** A new dashboard's view: a client that negotiated through devhost, then GetDeviceState (which
 *  also broadcasts the snapshot). Returns {deviceId: count} from the pushed snapshot. */
export async function snapshotCounts(rig) {
  const c = await signalrClient(rig.url);
  try {
    const r = await fetch(`${rig.url}/api/getdevicestate`);
    if (!r.ok) throw new Error(`getdevicestate: ${r.status}`);
    const snap = await waitFor(() => c.pushes.find((p) => Array.isArray(p)), { timeoutMs: 20000, what: 'the snapshot push' });
    return Object.fromEntries(snap.map((x) => [x.deviceId, x.count + (x.invalidCount || 0)]));
  } finally {
    await c.stop();
  }
}

/** An @microsoft/signalr client through devhost's /api; pushes keeps every newMessage argument
 *  as received, onPush(item, receivedAtMs) is called per device item. */
export async function signalrClient(baseUrl, { onPush } = {}) {
  const conn = new signalR.HubConnectionBuilder().withUrl(`${baseUrl}/api`).configureLogging(signalR.LogLevel.None).build();
  const pushes = [];
  conn.on('newMessage', (m) => {
    const now = Date.now();
    pushes.push(m);
    if (onPush) for (const x of Array.isArray(m) ? m : [m]) onPush(x, now);
  });
  await conn.start();
  return { conn, pushes, stop: () => conn.stop().catch(() => {}) };
}

/** The same client as signalrClient, in a process of its own (signalr_receiver.mjs), recording
 *  per pushed item whose deviceId starts with prefix its arrival − lastSeen in ms. Resolves once
 *  connected to {pid, stop() → {lat (unsorted), eventLoopDelayMs}}. */
export async function signalrReceiver(baseUrl, prefix) {
  const proc = fork(path.join(path.dirname(new URL(import.meta.url).pathname), 'signalr_receiver.mjs'), [baseUrl, prefix],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(proc);
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  const first = await Promise.race([new Promise((resolve) => proc.once('message', resolve)), exited.then(() => null)]);
  if (!first || !first.ready) throw new Error('the SignalR receiver process did not connect');
  return {
    pid: proc.pid,
    /** {counted, ignored} so far: pushed items of the prefix's devices and of others. */
    async peek() {
      const answer = new Promise((resolve) => proc.once('message', resolve));
      proc.send({ peek: true });
      const r = await Promise.race([answer, exited.then(() => null)]);
      if (!r) throw new Error('the SignalR receiver process exited');
      return r;
    },
    async stop() {
      const answer = new Promise((resolve) => proc.once('message', resolve));
      proc.send({ stop: true });
      const r = await Promise.race([answer, exited.then(() => null)]);
      await exited;
      if (!r) throw new Error('the SignalR receiver process exited without its figures');
      return r;
    },
  };
}

/** Percentile of a sorted numeric array. */
export function pct(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export const machine = () => `${os.cpus().length} × ${os.cpus()[0]?.model?.trim()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`;

export { num, waitFor, EMULATOR_KEY, procSample, sampler };
