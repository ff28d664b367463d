// `make run` as a newcomer runs it: from a clean clone of this repository, the whole local stack
// (Azurite, devhost start with the handler, local IoT Hub and SignalR Service, the simulator with
// 3 devices, the dashboard) started by one command, seen working, stopped with Ctrl-C, started
// again on the kept data. Run by `make test-run` (tests/stack/run.sh), not by `make test`: the
// clone builds everything from scratch, which would take a large share of `make test`'s budget.
//
// The clone is `git clone` of HEAD when the working tree is clean (CI), else a copy of the files
// git would commit (tracked and untracked-not-ignored, as they are on disk), so that a developer
// tests what they are about to commit. Its node_modules folders are symlinks to this checkout's
// (installed by `make deps` from the same lock files), so the test needs no network; `make deps`
// in the clone still runs and sees them up to date. Every port is a free one passed through
// make's variables (PORT, MQTT_PORT, SIGNALR_PORT, BLOB_PORT, QUEUE_PORT, TABLE_PORT), never the
// conventional ones another stack on this machine may hold.
//
// What it checks: make run prints progress and the dashboard URL; devices sim-1..sim-3 appear
// through /api/getdevicestate; headless Chromium (Debian's, via playwright-core) shows them in the
// dashboard's device table, connected, with no console error; SIGINT to make's process group
// (what Ctrl-C in a terminal sends) stops everything: no process make run started is left (same
// session, or a working directory inside the clone) and every port is free again; a second make
// run on the kept data starts cleanly and the devices' counts continue from where they were.
// Also: a make run on ports another one holds is refused at once, naming each port and the
// variable that moves it; `make run DEVICES=0` starts the stack without the simulator;
// `make run FUNCTIONS_HOST=func` runs `func start` (Core Tools cannot be installed here, so a
// `func` on PATH stands in for it by running `devhost start`, which reads the same files) beside a
// `devhost signalr` it starts itself, and stops them both.
// Output, logs and screenshots: build/test-output/make-run/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { chromium } = createRequire(path.join(repoRoot, 'package.json'))('playwright-core');
const OUT = path.join(repoRoot, 'build', 'test-output', 'make-run');
const DEVICES = ['sim-1', 'sim-2', 'sim-3'];
const KEPT_MIN = 10; // messages per device before the first Ctrl-C (INTERVAL=1)
const BUILD_TIMEOUT_MS = 15 * 60 * 1000; // a clean clone builds everything, on a busy 2-core machine

let clone, ports, browser;
const runs = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function log(msg) { process.stdout.write(`# ${msg}\n`); }

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

async function waitFor(fn, { timeoutMs, what, run }) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    if (run && run.exit) throw new Error(`make run exited (${JSON.stringify(run.exit)}) while waiting for ${what}\n${run.tail()}`);
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}${run ? `\n${run.tail()}` : ''}`);
    await sleep(250);
  }
}

/** A clean clone of what is (about to be) committed, with this checkout's node_modules linked in. */
function makeClone() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'enviromon-clone-'));
  const git = (...a) => execFileSync('git', a, { cwd: repoRoot, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (git('status', '--porcelain').trim() === '') {
    execFileSync('git', ['clone', '--quiet', '--no-checkout', repoRoot, dir]);
    execFileSync('git', ['-C', dir, 'checkout', '--quiet', git('rev-parse', 'HEAD').trim()]);
    log(`clone: git clone of HEAD ${git('rev-parse', '--short', 'HEAD').trim()}`);
  } else {
    const files = git('ls-files', '-z', '--cached', '--others', '--exclude-standard').split('\0').filter(Boolean);
    for (const f of files) {
      const src = path.join(repoRoot, f);
      let st;
      try { st = fs.lstatSync(src); } catch { continue; } // deleted in the working tree
      if (st.isDirectory()) continue; // a submodule or a nested repository
      fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      fs.cpSync(src, path.join(dir, f), { verbatimSymlinks: true });
    }
    log(`clone: the working tree has changes: a copy of the ${files.length} files git would commit`);
  }
  for (const d of ['.', 'dashboard', 'tests/signalr-client']) {
    const nm = path.join(repoRoot, d, 'node_modules');
    if (fs.existsSync(nm) && fs.existsSync(path.join(dir, d))) fs.symlinkSync(fs.realpathSync(nm), path.join(dir, d, 'node_modules'));
  }
  return dir;
}

/** `make run` in the clone, in a new session and process group (as a terminal's foreground job). */
function startMakeRun(tag, vars = {}, extraEnv = {}) {
  const file = path.join(OUT, `${tag}.log`);
  const out = fs.openSync(file, 'w');
  const args = ['run', `DEVICES=${DEVICES.length}`, `PORT=${ports.http}`, `MQTT_PORT=${ports.mqtt}`,
    `SIGNALR_PORT=${ports.signalr}`, `BLOB_PORT=${ports.blob}`, `QUEUE_PORT=${ports.queue}`,
    `TABLE_PORT=${ports.table}`, 'INTERVAL=1', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)];
  const env = { ...process.env, ...extraEnv };
  for (const k of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES']) delete env[k];
  const started = Date.now();
  const proc = spawn('make', args, { cwd: clone, env, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const run = {
    tag, proc, file, started, exit: null,
    text: () => fs.readFileSync(file, 'utf8'),
    tail: (n = 40) => fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n'),
  };
  run.exited = new Promise((resolve) => proc.on('exit', (code, signal) => { run.exit = { code, signal }; resolve(run.exit); }));
  runs.push(run);
  return run;
}

async function deviceState() {
  const r = await fetch(`http://127.0.0.1:${ports.http}/api/getdevicestate?broadcast=false`, { signal: AbortSignal.timeout(5000) });
  if (r.status !== 200) return null;
  return r.json();
}

/** Rows of every simulated device, once each has sent at least `min` messages. */
async function waitDevices(run, min, timeoutMs) {
  return waitFor(async () => {
    const rows = await deviceState();
    if (!rows) return null;
    const byId = Object.fromEntries(rows.map((d) => [d.deviceId, d]));
    return DEVICES.every((id) => byId[id] && byId[id].count >= min) ? byId : null;
  }, { timeoutMs, what: `devices ${DEVICES.join(', ')} with count >= ${min} in /api/getdevicestate`, run });
}

/** Assert that make run's output has a line matching re (the failure shows the output's tail only). */
function expectLine(run, re, want = true) {
  assert.equal(re.test(run.text()), want, `${want ? 'no' : 'a'} line matching ${re} in make run's output (${run.file}):\n${run.tail()}`);
}

/** Processes still running that this make run started: its session, or a working directory in the clone. */
function leftovers(run) {
  const found = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let stat, cwd = '', cmd = '';
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
    } catch { if (!stat) continue; }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = f[0], sid = Number(f[3]);
    if (state === 'Z' && sid !== run.proc.pid) continue;
    if (sid === run.proc.pid || cwd === clone || cwd.startsWith(clone + '/')) found.push(`${pid} [${state}] ${cmd} (cwd ${cwd})`);
  }
  return found;
}

/** Ctrl-C: SIGINT to make's process group; make run must stop everything and exit. */
async function ctrlC(run, { simulator = true } = {}) {
  const t0 = Date.now();
  process.kill(-run.proc.pid, 'SIGINT');
  const exit = await Promise.race([run.exited, sleep(60000).then(() => null)]);
  assert.ok(exit, `make run did not exit within 60 s of SIGINT\n${run.tail()}`);
  const ms = Date.now() - t0;
  log(`${run.tag}: stopped ${ms} ms after SIGINT (${JSON.stringify(exit)})`);
  // make itself dies of the SIGINT it got; the script below it exits after its orderly stop.
  assert.ok(exit.code === 0 || exit.signal === 'SIGINT' || exit.code === 130 || exit.code === 2,
    `make run exit after SIGINT: ${JSON.stringify(exit)}\n${run.tail()}`);
  expectLine(run, simulator ? /make run: stopping simulator devhost azurite/ : /make run: stopping devhost azurite/);
  // Each part stopped by itself, in order, its last lines shown (Azurite after devhost's last write).
  if (simulator) expectLine(run, /^simulator\| simulator: 3 devices over mqtt .*\(interrupted\)$/m);
  expectLine(run, /^devhost +\| \[info\] devhost: stopped/m);
  expectLine(run, /^azurite +\| Azurite Table service successfully closed/m);
  const t = run.text();
  assert.ok(t.lastIndexOf('devhost: stopped') < t.lastIndexOf('Azurite Table service successfully closed'), 'Azurite stops after devhost');
  expectLine(run, /make run: stopped; data kept in \.devhost\//);
  expectLine(run, /did not stop after/, false);
  const left = leftovers(run);
  assert.deepEqual(left, [], `processes left behind by make run:\n${left.join('\n')}`);
  for (const [name, port] of Object.entries(ports)) assert.ok(await portFree(port), `port ${port} (${name}) is still taken after make run stopped`);
  return ms;
}

/** Open the dashboard; wait until every device is in the table and the connection is live. */
async function checkDashboard(shot) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', (d) => { errors.push(`dialog: ${d.message()}`); d.dismiss(); });
  try {
    await page.goto(`http://localhost:${ports.http}/`);
    await page.waitForFunction((ids) => {
      const body = document.querySelector('#devices-body');
      const conn = document.querySelector('#conn');
      return body && conn && conn.dataset.state === 'connected' && ids.every((id) => body.textContent.includes(id));
    }, DEVICES, { timeout: 30000 });
    const online = Number(await page.textContent('#s-online'));
    assert.equal(online, DEVICES.length, 'every simulated device is online on the dashboard');
    // Live updates reach the page over SignalR: the newest message's time (the <time> element's
    // datetime) moves on, and the page counts arrivals per second.
    const before = await page.getAttribute('#last-msg', 'datetime');
    await page.waitForFunction((b) => {
      const t = document.querySelector('#last-msg').getAttribute('datetime');
      return t && t !== b && parseFloat(document.querySelector('#s-rate').textContent) > 0;
    }, before, { timeout: 20000 });
    await page.screenshot({ path: path.join(OUT, shot), fullPage: true });
    assert.deepEqual(errors, [], 'no console errors on the dashboard');
  } finally {
    await page.close();
  }
}

before(async () => {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  clone = makeClone();
  const [http, mqtt, signalr, blob, queue, table] = await Promise.all(Array.from({ length: 6 }, freePort));
  ports = { http, mqtt, signalr, blob, queue, table };
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  // After a failure: Ctrl-C what still runs, then kill whatever make run left behind.
  for (const r of runs) {
    if (r.exit) continue;
    try { process.kill(-r.proc.pid, 'SIGINT'); } catch { /* gone */ }
    await Promise.race([r.exited, sleep(30000)]);
    if (!r.exit) { try { process.kill(-r.proc.pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  for (const r of runs) {
    for (const line of leftovers(r)) {
      log(`killing a process make run left behind: ${line}`);
      try { process.kill(Number(line.split(' ')[0]), 'SIGKILL'); } catch { /* gone */ }
    }
  }
  if (clone) fs.rmSync(clone, { recursive: true, force: true });
});

test('make run from a clean clone: devices on the dashboard, Ctrl-C stops everything, a second run continues on the kept data', async () => {
  // First run: builds everything, creates local.settings.json, registers the devices.
  const first = startMakeRun('first');
  await waitFor(() => /Ctrl-C stops everything\./.test(first.text()), { timeoutMs: BUILD_TIMEOUT_MS, what: 'make run\'s banner', run: first });
  log(`first: running ${((Date.now() - first.started) / 1000).toFixed(1)} s after make run (clean build included)`);
  const counts = await waitDevices(first, 1, 10000);
  const text = first.text();
  expectLine(first, /created local\.settings\.json from local\.settings\.sample\.json/);
  expectLine(first, /make run: \[1\/4\] ports free/);
  expectLine(first, /make run: \[2\/4\] Azurite \(storage\) ready/);
  expectLine(first, /make run: \[3\/4\] devhost start .* ready/);
  expectLine(first, /make run: \[4\/4\] simulator: 3 devices registered, their telemetry in DeviceState/);
  expectLine(first, new RegExp(`Open the dashboard:\\s+http://localhost:${ports.http}/`));
  assert.ok(text.indexOf('[4/4]') < text.indexOf('Enviromon is running'), 'progress comes before the banner');
  assert.ok(fs.existsSync(path.join(clone, 'local.settings.json')));
  for (const f of ['azurite.log', 'devhost.log', 'simulator.log']) assert.ok(fs.existsSync(path.join(clone, '.devhost', 'logs', f)), f);
  await checkDashboard('dashboard-first.png');

  // A second make run while this one holds the ports: refused before it starts anything, with
  // each busy port, what needs it and the variable that moves it; the first run is unharmed.
  const clash = startMakeRun('clash');
  const clashExit = await Promise.race([clash.exited, sleep(120000).then(() => null)]);
  assert.ok(clashExit, `a make run on busy ports did not exit\n${clash.tail()}`);
  assert.equal(clashExit.code, 2, `make run on busy ports: make exits 2 (its recipe failed): ${JSON.stringify(clashExit)}\n${clash.tail()}`);
  expectLine(clash, new RegExp(`make run: port ${ports.http} on 127\\.0\\.0\\.1, for devhost \\(functions, dashboard, IoT Hub HTTP\\), is already in use`));
  expectLine(clash, /choose another port: make run PORT=<port>/);
  for (const v of ['MQTT_PORT', 'SIGNALR_PORT', 'BLOB_PORT', 'QUEUE_PORT', 'TABLE_PORT']) expectLine(clash, new RegExp(`make run ${v}=<port>`));
  expectLine(clash, /^(azurite|devhost|simulator) *\||make run: \[2\//m, false);
  // (by pid: a line also shows the process's state, which changes between two looks)
  const firstPids = new Set(leftovers(first).map((l) => l.split(' ')[0]));
  assert.deepEqual(leftovers(clash).filter((l) => !firstPids.has(l.split(' ')[0])), [], 'the refused run left nothing running');
  // Enough messages that a second run starting from empty storage could not reach these counts
  // before the test's first look at it.
  const seen = await waitDevices(first, KEPT_MIN, 60000);
  await ctrlC(first);
  const kept = Object.fromEntries(DEVICES.map((id) => [id, seen[id].count]));
  log(`first: counts before Ctrl-C ${JSON.stringify(kept)} (at first sight ${JSON.stringify(Object.fromEntries(DEVICES.map((id) => [id, counts[id].count])))})`);

  // Second run on the kept data: no rebuild, local.settings.json kept, the same devices.
  const settingsBefore = fs.readFileSync(path.join(clone, 'local.settings.json'), 'utf8');
  const second = startMakeRun('second');
  const t0 = Date.now();
  // The first snapshot the second run answers already holds the first run's counts (kept
  // storage), and they go on growing (kept device registry: the same devices send again).
  const firstLook = await waitFor(async () => {
    const rows = await deviceState();
    return rows && DEVICES.every((id) => rows.some((d) => d.deviceId === id)) ? rows : null;
  }, { timeoutMs: 180000, what: 'the second run\'s first device snapshot', run: second });
  for (const id of DEVICES) {
    assert.ok(firstLook.find((d) => d.deviceId === id).count >= kept[id], `${id}: count ${firstLook.find((d) => d.deviceId === id).count} < ${kept[id]} kept from the first run`);
  }
  await waitFor(() => /Ctrl-C stops everything\./.test(second.text()), { timeoutMs: 120000, what: 'the second run\'s banner', run: second });
  log(`second: running ${((Date.now() - t0) / 1000).toFixed(1)} s after make run`);
  await waitFor(async () => {
    const rows = await deviceState();
    return rows && DEVICES.every((id) => rows.find((d) => d.deviceId === id)?.count >= kept[id] + 2);
  }, { timeoutMs: 60000, what: 'counts continuing from the first run\'s', run: second });
  expectLine(second, /created local\.settings\.json/, false);
  assert.equal(fs.readFileSync(path.join(clone, 'local.settings.json'), 'utf8'), settingsBefore);
  expectLine(second, /\[error\]/i, false);
  await checkDashboard('dashboard-second.png');
  await ctrlC(second);

  // DEVICES=0: the stack without the simulator; the stored devices stay as they are.
  const third = startMakeRun('third', { DEVICES: 0 });
  await waitFor(() => /Ctrl-C stops everything\./.test(third.text()), { timeoutMs: 180000, what: 'the DEVICES=0 run\'s banner', run: third });
  expectLine(third, /make run: \[3\/3\] devhost start .* ready/);
  expectLine(third, /Simulator +none \(DEVICES=0\)/);
  const still = await deviceState();
  await sleep(3000);
  const later = await deviceState();
  for (const id of DEVICES) {
    assert.equal(later.find((d) => d.deviceId === id).count, still.find((d) => d.deviceId === id).count, `${id} sends nothing with DEVICES=0`);
  }
  expectLine(third, /^simulator\|/m, false);
  await ctrlC(third, { simulator: false });
});

test('make run FUNCTIONS_HOST=func: func start on PORT beside its own devhost signalr, no simulator; Ctrl-C stops them', async () => {
  // Core Tools' `func` cannot be installed here: a `func` on PATH stands in for it. It records how
  // make run called it and runs devhost start, the local stand-in for `func start`, with the
  // arguments given (no MQTT endpoint: func start has no IoT Hub). Whether the real `func start`
  // behaves as devhost does is out of this test's reach; what is checked is make run's side.
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'enviromon-func-'));
  const argsFile = path.join(bin, 'args');
  fs.writeFileSync(path.join(bin, 'func'), `#!/bin/sh
printf '%s\\n' "$*" > '${argsFile}'
[ "$1" = start ] || { echo "func stand-in: only 'func start'" >&2; exit 2; }
shift
exec ./devhost start --no-mqtt "$@"
`, { mode: 0o755 });
  try {
    const run = startMakeRun('func', { FUNCTIONS_HOST: 'func' }, { PATH: `${bin}:${process.env.PATH}` });
    await waitFor(() => /Ctrl-C stops everything\./.test(run.text()), { timeoutMs: 180000, what: 'the func run\'s banner', run });
    assert.equal(fs.readFileSync(argsFile, 'utf8').trim(), `start --port ${ports.http}`, 'make run called func start with the port');
    expectLine(run, /make run: \[1\/4\] ports free/);
    expectLine(run, /make run: \[2\/4\] Azurite \(storage\) ready/);
    expectLine(run, new RegExp(`make run: \\[3/4\\] local SignalR Service \\(devhost signalr\\) ready on ${ports.signalr}`));
    expectLine(run, /make run: \[4\/4\] func start ready/);
    expectLine(run, /Enviromon is running \(func start\)\./);
    expectLine(run, /Simulator +none: func start has no local IoT Hub/);
    expectLine(run, /^simulator\|/m, false);
    // The functions answer on PORT, with the SignalR Service make run started (not one in func's process).
    const neg = await fetch(`http://127.0.0.1:${ports.http}/api/negotiate?negotiateVersion=1`, { method: 'POST', signal: AbortSignal.timeout(5000) });
    assert.equal(neg.status, 200);
    const info = await neg.json();
    assert.match(info.url, new RegExp(`^http://localhost:${ports.signalr}/client/\\?hub=`), JSON.stringify(info));
    expectLine(run, /runs the local SignalR Service in-process/, false);
    const rows = await deviceState();
    assert.ok(rows && DEVICES.every((id) => rows.some((d) => d.deviceId === id)), 'GetDeviceState reads the kept storage');

    process.kill(-run.proc.pid, 'SIGINT');
    const exit = await Promise.race([run.exited, sleep(60000).then(() => null)]);
    assert.ok(exit, `make run did not exit within 60 s of SIGINT\n${run.tail()}`);
    expectLine(run, /make run: stopping func signalr azurite/);
    expectLine(run, /make run: stopped; data kept in \.devhost\//);
    expectLine(run, /did not stop after/, false);
    const left = leftovers(run);
    assert.deepEqual(left, [], `processes left behind by make run:\n${left.join('\n')}`);
    for (const [name, port] of Object.entries(ports)) assert.ok(await portFree(port), `port ${port} (${name}) is still taken after make run stopped`);
  } finally {
    fs.rmSync(bin, { recursive: true, force: true });
  }
});
