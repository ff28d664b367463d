// Helpers for tests of the local IoT Hub: the `devhost device` CLI, SAS tokens made the way
// Microsoft's SDKs make them (azure-iot-common's SharedAccessSignature.create for Node; the C
// SDK's lowercase percent-encoding and empty skn, reproduced from azure-c-shared-utility), and
// the tests/tools/iothub_server process (the HTTP device API alone) with its --dump of the logs.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import common from 'azure-iot-common';
import { repoRoot, waitFor } from './handler.mjs';
import { spawnTied } from './proc.mjs';

const { SharedAccessSignature } = common;
export const devhostBin = process.env.DEVHOST_BIN || path.join(repoRoot, 'devhost');
export const toolsDir = process.env.ENVIROMON_TEST_TOOLS || path.join(repoRoot, 'build/release/tests/tools');
export const HUB_HOST = 'enviromon.azure-devices.net';

/** Run `devhost device ...`; returns {status, stdout, stderr}. */
export function deviceCli(args, dataDir) {
  const r = spawnSync(devhostBin, ['device', ...args, '--data', dataDir], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Add a device; returns {id, key, connectionString}. */
export function addDevice(id, dataDir) {
  const r = deviceCli(['add', id, '--quiet'], dataDir);
  if (r.status !== 0) throw new Error(`devhost device add ${id}: ${r.stderr}`);
  const cs = r.stdout.trim();
  const key = /SharedAccessKey=([^;]+)/.exec(cs)[1];
  return { id, key, connectionString: cs };
}

/** encodeURIComponent plus !'()* — azure-iot-common's encodeUriComponentStrict. */
export function encodeStrict(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
}

/** A device token from azure-iot-common, as the Node device SDK makes it. */
export function nodeToken(id, key, ttl = 3600, host = HUB_HOST) {
  const se = Math.floor(Date.now() / 1000) + ttl;
  return SharedAccessSignature.create(encodeStrict(`${host}/devices/${id}`), null, key, se).toString();
}

/** azure-c-shared-utility URL_Encode: lowercase hex, ! ( ) * - . _ and alphanumerics kept. */
export function cEncode(s) {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9!()*\-._]/.test(c) ? c : `%${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** A device token the C SDK's way (sastoken.c): lowercase %2f, signature over that spelling, &skn=. */
export function cToken(id, key, ttl = 3600, host = HUB_HOST) {
  const se = Math.floor(Date.now() / 1000) + ttl;
  const sr = cEncode(`${host}/devices/${id}`);
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${sr}\n${se}`).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${cEncode(sig)}&se=${se}&skn=`;
}

/** Start tests/tools/iothub_server on a free port; returns {port, url, proc, stop(), kill()}. */
export async function startIotHubServer(dataDir, extra = []) {
  const proc = spawnTied(path.join(toolsDir, 'iothub_server'), ['--data', dataDir, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let errText = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { errText += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const port = await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`iothub_server exited: ${errText}`);
    const m = /listening (\d+)/.exec(out);
    return m && Number(m[1]);
  }, { what: 'iothub_server to listen' });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    proc,
    exited,
    stderr: () => errText,
    async stop() { if (proc.exitCode === null) proc.kill('SIGTERM'); return exited; },
    async kill() { if (proc.exitCode === null) proc.kill('SIGKILL'); return exited; },
  };
}

/** Every stored message, from the partition logs (iothub_server --dump). */
export function dumpLog(dataDir) {
  const r = spawnSync(path.join(toolsDir, 'iothub_server'), ['--data', dataDir, '--dump'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`dump: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** POST one D2C message; returns {status, body, headers}. */
export async function sendEvent(base, id, token, body, headers = {}, { apiVersion = '2021-04-12' } = {}) {
  const q = apiVersion ? `?api-version=${apiVersion}` : '';
  const res = await fetch(`${base}/devices/${encodeStrict(id)}/messages/events${q}`, {
    method: 'POST',
    headers: { ...(token ? { Authorization: token } : {}), ...headers },
    body,
  });
  const text = await res.text();
  return { status: res.status, body: text, headers: res.headers };
}
