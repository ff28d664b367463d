// Fan-out benchmark for the local SignalR Service (`devhost signalr`): WebSockets and
// Server-Sent Events side by side in one run.
//
// Opens CLIENTS WebSocket clients on hub bench_ws and CLIENTS SSE clients on hub bench_sse
// (negotiate + transport + JSON handshake, the requests the official client makes, with lean
// parsers so that the load generator is not the bottleneck). Then, for each rate in turn, it
// broadcasts through the REST API for STEP_S seconds to one hub, then to the other (the order
// alternates from rate to rate), so both transports are measured under the same conditions
// minutes apart at most; the idle other half costs the service nothing (suspended SSE streams,
// idle sockets). Per transport and rate it reports delivered messages/s, latency (REST send →
// record parsed by the client, on a sample of clients) as p50/p99/max and the share within
// 100 ms, and the service's CPU time per delivered message (from /proc/<pid>/stat). A rate
// counts as "no loss" when every client received every message of the step within the drain
// time, and as "sustained" when the sender achieved at least 95% of it; a transport stops
// ramping after a loss or when the sender falls below 90%.
//
// Usage: node bench/signalr_fanout.mjs [--clients 1000] [--rates 50,100,200,400,800] [--step 3]
//                                      [--transports ws,sse] [--ping-interval-ms 15000]
// Env: DEVHOST_BIN (default build/release/devhost). Load generator and service share the machine.
import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { startDevhost, token, clientAud } from '../tests/js/signalr_service_helpers.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const CLIENTS = Number(opt('clients', 1000));
const RATES = String(opt('rates', '50,100,200,400,800')).split(',').map(Number);
const STEP_S = Number(opt('step', 3));
const TRANSPORTS = String(opt('transports', 'ws,sse')).split(',');
const SAMPLE_EVERY = Math.max(1, Math.floor(CLIENTS / 50));
const RS = '\x1e';

const svc = await startDevhost({ args: ['--max-queue-bytes', String(4 << 20), '--ping-interval-ms', String(opt('ping-interval-ms', 15000))] });
const port = svc.port;
const ticks = 100; // USER_HZ
const cpuMs = () => {
  const f = fs.readFileSync(`/proc/${svc.proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / ticks;
};

const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
function request(method, path, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent, headers }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// --- clients ---------------------------------------------------------------------------
/** Count records in a chunk of received text; sampled clients also note each latency. */
function onRecords(c, text, now) {
  if (!c.lat) {
    let k = -1;
    while ((k = text.indexOf('"type":1,', k + 1)) >= 0) c.count++;
    return;
  }
  for (const rec of text.split(RS)) {
    const at = rec.indexOf('{"type":1,');
    if (at < 0) continue;
    c.count++;
    const m = /"t":([0-9.]+)/.exec(rec);
    if (m) c.lat.push(now - Number(m[1]));
  }
}

async function negotiate(hub) {
  const n = await request('POST', `/client/negotiate?hub=${hub}&negotiateVersion=1`, { headers: { Authorization: `Bearer ${token(clientAud(hub))}` } });
  if (n.status !== 200) throw new Error(`negotiate ${n.status} ${n.data}`);
  return JSON.parse(n.data).connectionToken;
}

async function openSse(hub, i) {
  const id = await negotiate(hub);
  const c = { count: 0, lat: i % SAMPLE_EVERY === 0 ? [] : null, buf: '' };
  await new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/client/?hub=${hub}&id=${id}`,
      headers: { Accept: 'text/event-stream' }, agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (!c.lat) return onRecords(c, d, 0);
        const now = performance.now();
        c.buf += d;
        let e;
        while ((e = c.buf.indexOf('\r\n\r\n')) >= 0) {
          onRecords(c, c.buf.slice(0, e).replace(/^data: /, ''), now);
          c.buf = c.buf.slice(e + 4);
        }
      });
      c.close = () => req.destroy();
      resolve();
    });
    req.on('error', reject);
  });
  const h = await request('POST', `/client/?hub=${hub}&id=${id}`, { body: `{"protocol":"json","version":1}${RS}` });
  if (h.status !== 200) throw new Error(`handshake ${h.status}`);
  return c;
}

/** A minimal RFC 6455 client: upgrade, one masked Text frame (the handshake), then a parser of
 * the server's unmasked frames (each Text frame holds whole records). */
async function openWs(hub, i) {
  const id = await negotiate(hub);
  const c = { count: 0, frames: 0, lat: i % SAMPLE_EVERY === 0 ? [] : null };
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  c.close = () => sock.destroy();
  await new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let upgraded = false;
    sock.on('error', reject);
    sock.on('connect', () => sock.write(`GET /client/?hub=${hub}&id=${id} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`));
    sock.on('data', (d) => {
      const now = c.lat ? performance.now() : 0;
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!buf.subarray(0, 12).toString().includes('101')) return reject(new Error(`upgrade: ${buf.subarray(0, end)}`));
        upgraded = true;
        buf = buf.subarray(end + 4);
        const payload = Buffer.from(`{"protocol":"json","version":1}${RS}`);
        const mask = crypto.randomBytes(4);
        const masked = Buffer.from(payload.map((b, k) => b ^ mask[k & 3]));
        sock.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
        resolve();
      }
      for (;;) {
        if (buf.length < 2) break;
        let len = buf[1] & 0x7f;
        let h = 2;
        if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); h = 4; }
        else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); h = 10; }
        if (buf.length < h + len) break;
        if ((buf[0] & 0x0f) === 1) {
          c.frames++;
          onRecords(c, buf.toString('utf8', h, h + len), now);
        }
        buf = buf.subarray(h + len);
      }
    });
  });
  return c;
}

const sets = {};
for (const t of TRANSPORTS) {
  const hub = `bench_${t}`;
  const open = t === 'ws' ? openWs : openSse;
  const clients = [];
  for (let i = 0; i < CLIENTS; i += 100) {
    clients.push(...await Promise.all(Array.from({ length: Math.min(100, CLIENTS - i) }, (_, k) => open(hub, i + k))));
  }
  // every client must have its handshake reply before the clock starts
  sets[t] = { hub, clients, ws: t === 'ws', results: [], done: false };
}
await new Promise((r) => setTimeout(r, 500));
const load = () => os.loadavg().map((x) => x.toFixed(1)).join(' ');
console.log(`# ${CLIENTS} clients per transport (${TRANSPORTS.join(', ')}) connected to devhost signalr on port ${port}; load average ${load()}`);

// --- rising rates ----------------------------------------------------------------------
const sendAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });
function send(route, auth, seq) {
  const body = JSON.stringify({ target: 'newMessage', arguments: [{ s: seq, t: performance.now() }] });
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: route, method: 'POST', agent: sendAgent,
      headers: { Authorization: auth, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
    (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end(body);
  });
}
const pct = (s, p) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN);

let seq = 0;
async function step(set, rate) {
  const { clients, hub } = set;
  const route = `/api/v1/hubs/${hub}`;
  const auth = `Bearer ${token(`http://localhost${route}`)}`;
  for (const c of clients) { c.count = 0; c.frames = 0; if (c.lat) c.lat = []; }
  const total = rate * STEP_S;
  const cpu0 = cpuMs();
  const t0 = performance.now();
  const inflight = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(send(route, auth, seq++));
    if (inflight.length >= 64) await Promise.all(inflight.splice(0));
  }
  const codes = await Promise.all(inflight);
  if (codes.some((c) => c !== 202)) throw new Error(`REST send answered ${codes.find((c) => c !== 202)}`);
  const sendEnd = performance.now();
  const drainBy = sendEnd + 5000;
  while (performance.now() < drainBy && clients.some((c) => c.count < total)) await new Promise((r) => setTimeout(r, 20));
  const t1 = performance.now();
  const cpu1 = cpuMs();
  const delivered = clients.reduce((a, c) => a + c.count, 0);
  const lats = clients.flatMap((c) => c.lat || []).sort((a, b) => a - b);
  const r = {
    rate, sentRate: total / ((sendEnd - t0) / 1000), delivered, expected: total * clients.length,
    deliveredPerS: delivered / ((t1 - t0) / 1000),
    p50: pct(lats, 50), p99: pct(lats, 99), max: lats.length ? lats[lats.length - 1] : NaN,
    within100: lats.length ? lats.filter((x) => x <= 100).length / lats.length : NaN,
    cpuUsPerMsg: delivered ? ((cpu1 - cpu0) * 1000) / delivered : NaN,
    cpuShare: (cpu1 - cpu0) / (t1 - t0), // of one core, over the step and its drain
    // WebSockets: records per Text frame (the service batches what queued up while a socket
    // was being written; 1.00 means every record had its own frame)
    perFrame: set.ws ? delivered / clients.reduce((a, c) => a + c.frames, 0) : NaN,
  };
  r.noLoss = r.delivered === r.expected;
  r.sustained = r.sentRate >= 0.95 * rate;
  return r;
}

const fmt = (r) => `delivered ${r.delivered}/${r.expected} ${r.noLoss ? 'no loss' : 'LOSS'}; ${r.deliveredPerS.toFixed(0)} msgs/s;` +
  ` p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, max ${r.max.toFixed(1)} ms, ${(100 * r.within100).toFixed(1)}% ≤ 100 ms;` +
  ` server CPU ${r.cpuUsPerMsg.toFixed(2)} us/delivered msg (${(100 * r.cpuShare).toFixed(0)}% of a core)${Number.isNaN(r.perFrame) ? '' : `; ${r.perFrame.toFixed(2)} records/frame`}`;

for (const [k, rate] of RATES.entries()) {
  const order = k % 2 ? [...TRANSPORTS].reverse() : TRANSPORTS;
  for (const t of order) {
    const set = sets[t];
    if (set.done) continue;
    const r = await step(set, rate);
    set.results.push(r);
    console.log(`${t.padEnd(3)} rate ${rate}/s (achieved ${r.sentRate.toFixed(0)}/s): ${fmt(r)}`);
    if (!r.noLoss || r.sentRate < 0.9 * rate) set.done = true; // loss, or the sender cannot keep the rate
  }
  if (TRANSPORTS.every((t) => sets[t].done)) break;
}

// "highest no-loss rate": no loss AND the offered rate was actually achieved
console.log(`\n# summary: ${CLIENTS} clients per transport, ${STEP_S} s per rate; load average now ${load()}`);
console.log('| transport | highest sustained no-loss rate | delivered msgs/s | p50 | p99 | max | ≤ 100 ms | server CPU / delivered msg |');
console.log('|---|---|---|---|---|---|---|---|');
for (const t of TRANSPORTS) {
  const best = sets[t].results.filter((r) => r.noLoss && r.sustained).pop();
  const name = t === 'ws' ? 'WebSockets' : 'Server-Sent Events';
  if (!best) { console.log(`| ${name} | none | | | | | | |`); continue; }
  console.log(`| ${name} | ${best.rate} broadcasts/s | ${best.deliveredPerS.toFixed(0)} | ${best.p50.toFixed(1)} ms | ${best.p99.toFixed(1)} ms |` +
    ` ${best.max.toFixed(1)} ms | ${(100 * best.within100).toFixed(1)}% | ${best.cpuUsPerMsg.toFixed(2)} µs |`);
}
for (const t of TRANSPORTS) for (const c of sets[t].clients) c.close();
const exit = await svc.stop('SIGTERM');
agent.destroy();
sendAgent.destroy();
process.exit(exit.code === 0 ? 0 : 1);
