// Helpers for the `devhost start` tests: temporary function apps (script roots) on disk, with the
// recording handler (recorder-handler.mjs) or the real ./handler; starting devhost on free ports
// and waiting until /admin/host/status says Running; reading what the recorder saw; and checking
// that processes are gone.
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor, repoRoot, handlerBin } from './handler.mjs';
import { spawnTied } from './proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const devhostBin = process.env.DEVHOST_BIN || path.join(repoRoot, 'build', 'release', 'devhost');
export const EMULATOR_KEY = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH';
export const signalrConn = (port, key = EMULATOR_KEY) => `Endpoint=http://localhost;Port=${port};AccessKey=${key};Version=1.0;`;

/** GET url over HTTPS trusting only the CA in caFile; resolves to the parsed JSON body. */
export function httpsJson(url, caFile) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca: fs.readFileSync(caFile), servername: 'localhost' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
    });
    req.on('error', reject);
  });
}

/** A temporary directory removed by cleanup(). */
export function tempDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `devhost-${tag}-`));
}

const writeJson = (p, v) => fs.writeFileSync(p, typeof v === 'string' ? v : JSON.stringify(v, null, 2));

/**
 * Write a function app into a new temporary script root.
 *  functions: {Name: functionJson (object or raw text)}
 *  values: local.settings.json Values; host: its Host section; localSettings: raw text instead
 *  hostJson: object (default: the recorder as handler) or raw text
 *  handler: 'recorder' (default) | 'real' (symlink to the built ./handler) | 'none'
 *  dashboard: {relativePath: content} files of dashboard/
 * Returns {root, recordFile, behaviourFile, setBehaviour(obj), records(), cleanup()}.
 */
export function makeApp({ functions = {}, values = {}, host, localSettings, hostJson, handler = 'recorder', dashboard } = {}) {
  const root = tempDir('app');
  const recordFile = path.join(root, 'records.jsonl');
  const behaviourFile = path.join(root, 'behaviour.json');
  fs.writeFileSync(recordFile, '');
  writeJson(behaviourFile, {});
  if (hostJson === undefined) {
    hostJson = handler === 'real'
      ? JSON.parse(fs.readFileSync(path.join(repoRoot, 'host.json'), 'utf8'))
      : { version: '2.0', customHandler: { description: { defaultExecutablePath: 'node', arguments: ['recorder-handler.mjs'] } },
          extensions: { http: { routePrefix: 'api' } } };
  }
  writeJson(path.join(root, 'host.json'), hostJson);
  if (handler === 'recorder') fs.copyFileSync(path.join(here, 'recorder-handler.mjs'), path.join(root, 'recorder-handler.mjs'));
  if (handler === 'real') fs.symlinkSync(handlerBin, path.join(root, 'handler'));
  for (const [name, fj] of Object.entries(functions)) {
    fs.mkdirSync(path.join(root, name));
    writeJson(path.join(root, name, 'function.json'), fj);
  }
  if (localSettings !== null) {
    writeJson(path.join(root, 'local.settings.json'), localSettings ?? {
      IsEncrypted: false,
      Values: { FUNCTIONS_WORKER_RUNTIME: 'custom', RECORDER_FILE: recordFile, RECORDER_BEHAVIOUR: behaviourFile, ...values },
      ...(host ? { Host: host } : {}),
    });
  }
  if (dashboard) {
    for (const [rel, content] of Object.entries(dashboard)) {
      const p = path.join(root, 'dashboard', rel);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, content);
    }
  }
  return {
    root,
    recordFile,
    behaviourFile,
    setBehaviour: (b) => writeJson(behaviourFile, b),
    records: () => fs.readFileSync(recordFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

/** 1 when pid is a live (non-zombie) process. */
export function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Process ids whose parent chain leads to pid (its descendants now). */
export function descendants(pid) {
  const parent = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const out = [];
  for (const [p] of parent) {
    for (let q = parent.get(p); q; q = parent.get(q)) if (q === pid) { out.push(p); break; }
  }
  return out;
}

/** Tests never use the fixed MQTT port 8883 (other test runs may hold it): any free one unless
 *  the caller chose. */
const withMqttPort = (args) => (args.includes('--mqtt-port') || args.includes('--no-mqtt') ? args : [...args, '--mqtt-port', '0']);

/**
 * Start `devhost start` for a script root. args: extra arguments; port: the front port (a free
 * one when omitted); data: --data DIR (a new temp dir when omitted); ready: wait for Running.
 * Its output is kept in memory for logs(); long runs (the soak writes hundreds of MiB) pass
 * logFile, which receives all of it, and keepLogBytes, which bounds what stays in memory: the
 * first 256 KiB (the start-up lines) and the latest keepLogBytes / 2 or more.
 * Returns {port, url, data, proc, logs(), exited (promise), exitInfo(), stop(signal), status(),
 * mqttPort() (waits for the MQTT endpoint's start line), ca (data/ca.pem)}.
 */
export async function startDevhost(root, { args = [], port, data, env = {}, ready = true, readyTimeoutMs = 30000,
  logFile, keepLogBytes = Infinity } = {}) {
  port = port ?? await freePort();
  data = data ?? tempDir('data');
  const wrapper = (process.env.ENVIROMON_WRAPPER || '').split(' ').filter(Boolean);
  const argv = ['start', '--script-root', root, '--port', String(port), '--data', data, ...withMqttPort(args)];
  const cmd = wrapper.length ? wrapper[0] : devhostBin;
  const fullArgs = wrapper.length ? [...wrapper.slice(1), devhostBin, ...argv] : argv;
  const proc = spawnTied(cmd, fullArgs, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const sink = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : null;
  let head = '', out = '', dropped = 0, trimmed = false;
  const keep = (d) => {
    sink?.write(d);
    out += d;
    if (out.length <= keepLogBytes) return;
    if (!trimmed) { trimmed = true; head = out.slice(0, 256 * 1024); out = out.slice(head.length); }
    const cut = Math.max(0, out.length - Math.floor(keepLogBytes / 2));
    dropped += cut;
    out = out.slice(cut);
  };
  const logs = () => (trimmed ? `${head}\n[... ${dropped} characters of output not kept in memory${logFile ? `; all of it is in ${logFile}` : ''} ...]\n${out}` : out);
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exitInfo = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
    exitInfo = { code, signal };
    if (sink) sink.end(() => resolve(exitInfo)); else resolve(exitInfo);
  }));
  const tls = args.includes('--tls');
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const status = async () => {
    if (tls) return httpsJson(`${url}/admin/host/status`, path.join(data, 'ca.pem'));
    const r = await fetch(`${url}/admin/host/status`);
    return r.json();
  };
  if (ready) {
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (exitInfo) throw new Error(`devhost exited early (${JSON.stringify(exitInfo)}):\n${logs()}`);
      const s = await status().catch(() => null);
      if (s && s.state === 'Running') break;
      if (Date.now() > deadline) throw new Error(`devhost on ${port} was not Running after ${readyTimeoutMs} ms:\n${logs()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return {
    port, url, data, proc, exited,
    logs,
    /** Wait until the log matches re (devhost writes its stdout every 200 ms). */
    async waitLog(re, timeoutMs = 5000) {
      await waitFor(() => re.test(logs()), { timeoutMs, what: `a log line matching ${re}` }).catch((e) => {
        throw new Error(`${e.message}\n${logs()}`);
      });
    },
    exitInfo: () => exitInfo,
    status,
    ca: path.join(data, 'ca.pem'),
    async mqttPort(timeoutMs = 10000) {
      const re = /IoT Hub MQTT: mqtts:\/\/localhost:(\d+)/;
      await this.waitLog(re, timeoutMs);
      return Number(re.exec(logs())[1]);
    },
    async stop(signal = 'SIGTERM') {
      if (!exitInfo) proc.kill(signal);
      return exited;
    },
  };
}

/** Run devhost start to completion (a start-up error is expected): {code, signal, out}. */
export async function runDevhostToExit(root, { args = [], timeoutMs = 20000, env = {} } = {}) {
  const port = await freePort();
  const data = tempDir('data');
  const wrapper = (process.env.ENVIROMON_WRAPPER || '').split(' ').filter(Boolean);
  const argv = ['start', '--script-root', root, '--port', String(port), '--data', data, ...withMqttPort(args)];
  const proc = spawnTied(wrapper.length ? wrapper[0] : devhostBin, wrapper.length ? [...wrapper.slice(1), devhostBin, ...argv] : argv,
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await new Promise((resolve) => proc.on('exit', (c, s) => resolve({ code: c, signal: s })));
  clearTimeout(timer);
  fs.rmSync(data, { recursive: true, force: true });
  return { code, signal, out, port };
}

export { freePort, waitFor, handlerBin, repoRoot };
