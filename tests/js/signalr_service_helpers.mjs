// Helpers for the local SignalR Service tests (tests/js/signalr_service*.test.mjs):
// start/stop `devhost signalr` on a free port, mint HS256 tokens with jsonwebtoken (root
// node_modules; key = raw AccessKey bytes), a tiny "function app" that serves the
// {url, accessToken} negotiate redirect as a dashboard sees it, and the official
// @microsoft/signalr client loaded from its own npm folder (tests/signalr-client).
import { createRequire } from 'node:module';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnTied } from './lib/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
const rootRequire = createRequire(path.join(repo, 'package.json'));
const clientRequire = createRequire(path.join(repo, 'tests', 'signalr-client', 'package.json'));
export const jwt = rootRequire('jsonwebtoken');
export const signalR = clientRequire('@microsoft/signalr');

export const KEY = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH';
export const HUB = 'Enviromon';

export const DEVHOST = process.env.DEVHOST_BIN || path.join(repo, 'build', 'release', 'devhost');

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

export function connString(port, key = KEY) {
  return `Endpoint=http://localhost;Port=${port};AccessKey=${key};Version=1.0;`;
}

/** Under a wrapper (valgrind runs every thread of the service on one lock, 10-50× slower) the
 *  waits below last this many times longer; what they wait for is the same. */
const WAIT_SCALE = process.env.ENVIROMON_WRAPPER ? 10 : 1;

/** Poll cond() every 10 ms until it is truthy or timeoutMs (× WAIT_SCALE) passes (then throw
 * with what, a string or a function returning one). */
export async function waitFor(cond, timeoutMs, what) {
  timeoutMs *= WAIT_SCALE;
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/** Start `devhost signalr` on port (a free one when omitted). Returns {port, proc, logs(), stop()}. */
export async function startDevhost({ port, args = [], env = {} } = {}) {
  port = port || await freePort();
  const wrapper = (process.env.ENVIROMON_WRAPPER || '').split(' ').filter(Boolean);
  const cmd = wrapper.length ? wrapper[0] : DEVHOST;
  const argv = [...wrapper.slice(1), ...(wrapper.length ? [DEVHOST] : []), 'signalr', ...args];
  const proc = spawnTied(cmd, argv, {
    env: { ...process.env, AzureSignalRConnectionString: connString(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  let exited = null;
  const exitP = new Promise((resolve) => proc.on('exit', (code, sig) => { exited = { code, sig }; resolve(exited); }));
  await waitFor(async () => {
    if (exited) throw new Error(`devhost exited early (${JSON.stringify(exited)}):\n${out}`);
    return canConnect(port);
  }, 20000, 'devhost to listen');
  return {
    port,
    proc,
    logs: () => out,
    exited: () => exited,
    async stop(signal = 'SIGTERM') {
      if (!exited) proc.kill(signal);
      const r = await exitP;
      return r;
    },
  };
}

/** HS256 token keyed with the raw AccessKey bytes. opts: {expiresIn (s), key, userId, uidClaim, exp} */
export function token(aud, opts = {}) {
  const payload = { aud };
  if (opts.userId) payload[opts.uidClaim || 'nameid'] = opts.userId;
  if (opts.exp !== undefined) payload.exp = opts.exp;
  const signOpts = { algorithm: 'HS256' };
  if (opts.exp === undefined) signOpts.expiresIn = opts.expiresIn ?? 3600;
  return jwt.sign(payload, opts.key ?? KEY, signOpts);
}

export const clientAud = (hub = HUB) => `http://localhost/client/?hub=${hub.toLowerCase()}`;

/** REST call to the service. route is the path (and query) after the origin; body is a
 * string or Buffer sent as it is, or a value sent as JSON. */
export async function rest(port, method, route, { body, tok, aud, headers = {} } = {}) {
  const url = `http://127.0.0.1:${port}${route}`;
  if (tok === undefined) {
    // v1: audience = URL without query; 2022-06-01: the SDK form, with query, no port
    const p = route.startsWith('/api/v1/') ? route.split('?')[0] : route;
    tok = token(aud ?? `http://localhost${p}`);
  }
  const h = { ...headers };
  if (tok) h.Authorization = `Bearer ${tok}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(url, { method, headers: h, body: body === undefined ? undefined : (typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body)) });
  const text = await res.text();
  return { status: res.status, text };
}

export const broadcast = (port, target, args) =>
  rest(port, 'POST', `/api/v1/hubs/${HUB.toLowerCase()}`, { body: { target, arguments: args } });

/** A tiny function app: POST /api/negotiate → {url, accessToken} for the service on svcPort.
 * The user id comes from the x-user header (as an authenticated dashboard would). */
export async function startNegotiateApp(getSvcPort, { tokenFor } = {}) {
  const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url.startsWith('/api/negotiate')) {
      const user = req.headers['x-user'];
      const accessToken = tokenFor ? tokenFor(user) : token(clientAud(), { userId: user });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ url: `http://127.0.0.1:${getSvcPort()}/client/?hub=${HUB.toLowerCase()}`, accessToken }));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

/** Build a HubConnection through the negotiate app; records every newMessage argument. */
export function makeClient(appPort, { transport, user, reconnect, serverTimeoutMs } = {}) {
  const headers = user ? { 'x-user': user } : {};
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`http://127.0.0.1:${appPort}/api`, { transport, headers })
    .configureLogging(signalR.LogLevel.None);
  if (reconnect) b = b.withAutomaticReconnect(reconnect);
  if (serverTimeoutMs) b = b.withServerTimeout(serverTimeoutMs);
  const conn = b.build();
  const got = [];
  conn.on('newMessage', (...a) => got.push(a.length === 1 ? a[0] : a));
  return { conn, got };
}

export const T = signalR.HttpTransportType;

/** Raw negotiate (as the client does it). version: negotiateVersion, omitted when undefined. */
export async function negotiate(port, version, { hub = HUB.toLowerCase(), tok = token(clientAud()) } = {}) {
  const q = version === undefined ? '' : `&negotiateVersion=${version}`;
  const res = await fetch(`http://127.0.0.1:${port}/client/negotiate?hub=${hub}${q}`, {
    method: 'POST', headers: { Authorization: `Bearer ${tok}` },
  });
  if (res.status !== 200) throw new Error(`negotiate: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Open a raw SSE stream for transport id; returns {text(), res, req, ended()}. */
export function openSse(port, id, { pause = false } = {}) {
  return new Promise((resolve, reject) => {
    let text = '';
    let ended = false;
    const req = http.get({ host: '127.0.0.1', port, path: `/client/?hub=${HUB.toLowerCase()}&id=${encodeURIComponent(id)}`,
      headers: { Accept: 'text/event-stream' } }, (res) => {
      res.setEncoding('utf8');
      if (!pause) res.on('data', (d) => { text += d; });
      res.on('end', () => { ended = true; });
      res.on('close', () => { ended = true; });
      resolve({ res, req, text: () => text, ended: () => ended });
    });
    req.on('error', (e) => { ended = true; if (!text) reject(e); });
  });
}

/** Client → server POST on transport id (SSE / long polling), body as given (string or Buffer). */
export const clientPost = (port, id, body) => fetch(`http://127.0.0.1:${port}/client/?hub=${HUB.toLowerCase()}&id=${encodeURIComponent(id)}`,
  { method: 'POST', body, headers: { 'Content-Type': 'text/plain;charset=UTF-8' } });

/** The hub-protocol records of a raw SSE stream's text, in order: what the official client
 * reads. One event may carry several records (the service frames everything queued when the
 * stream gets to write, e.g. the handshake reply and a ping that arrived meanwhile), so tests
 * match records, never one record per event. Only complete events (ended by a blank line)
 * count; comment lines are skipped. Throws when the framing is wrong: a line that is neither a
 * comment nor `data: `, or an event whose data does not end with the record separator. */
export function sseRecords(text) {
  const records = [];
  const events = text.split('\r\n\r\n');
  events.pop(); // the part after the last blank line is not a complete event yet
  for (const ev of events) {
    let data = null;
    for (const line of ev.split('\r\n')) {
      if (line.startsWith(':')) continue;
      if (!line.startsWith('data: ')) throw new Error(`not an SSE data or comment line: ${JSON.stringify(line)}`);
      data = (data === null ? '' : `${data}\n`) + line.slice(6);
    }
    if (data === null) continue; // comments only
    if (!data.endsWith('\x1e')) throw new Error(`SSE event without whole records: ${JSON.stringify(data)}`);
    records.push(...data.slice(0, -1).split('\x1e'));
  }
  return records;
}
