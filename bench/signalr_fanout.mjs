// Fan-out benchmark for the local SignalR Service (`devhost signalr`).
//
// Opens CLIENTS Server-Sent Events connections (negotiate + SSE GET + JSON handshake, the
// same requests the official client makes, but with a lean parser so that the load generator
// is not the bottleneck), then broadcasts through the REST API at rising rates, STEP_S seconds
// per rate. For every rate it reports delivered messages/s, p50/p99 delivery latency (REST
// send → record parsed by the client, measured on a sample of clients) and the service's CPU
// time per delivered message (from /proc/<pid>/stat). A rate counts as "no loss" when every
// client received every message of the step within the drain time, and it is "sustained"
// when the sender achieved at least 95% of it (the ramp stops below 90%).
//
// Usage: node bench/signalr_fanout.mjs [--clients 1000] [--rates 50,100,200,400,800] [--step 3]
// Env: DEVHOST_BIN (default build/release/devhost). Load generator and service share the machine.
import http from 'node:http';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { startDevhost, token, clientAud, HUB } from '../tests/js/signalr_service_helpers.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : dflt; };
const CLIENTS = Number(opt('clients', 1000));
const RATES = String(opt('rates', '50,100,200,400,800')).split(',').map(Number);
const STEP_S = Number(opt('step', 3));
const SAMPLE_EVERY = Math.max(1, Math.floor(CLIENTS / 50));
const hub = HUB.toLowerCase();

const svc = await startDevhost({ args: ['--max-queue-bytes', String(4 << 20)] });
const port = svc.port;
const ticks = 100; // USER_HZ
const cpuMs = () => {
  const f = fs.readFileSync(`/proc/${svc.proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / ticks;
};

const agent = new http.Agent({ keepAlive: true, maxSockets: 2000 });
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
const clients = [];
const ctok = token(clientAud());
async function openClient(i) {
  const n = await request('POST', `/client/negotiate?hub=${hub}&negotiateVersion=1`, { headers: { Authorization: `Bearer ${ctok}` } });
  if (n.status !== 200) throw new Error(`negotiate ${n.status} ${n.data}`);
  const { connectionToken } = JSON.parse(n.data);
  const c = { count: 0, lat: i % SAMPLE_EVERY === 0 ? [] : null, buf: '' };
  await new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/client/?hub=${hub}&id=${connectionToken}`,
      headers: { Accept: 'text/event-stream' }, agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (!c.lat) { // count records only
          let k = -1;
          while ((k = d.indexOf('"type":1,', k + 1)) >= 0) c.count++;
          return;
        }
        const now = performance.now();
        c.buf += d;
        let e;
        while ((e = c.buf.indexOf('\r\n\r\n')) >= 0) {
          const ev = c.buf.slice(0, e);
          c.buf = c.buf.slice(e + 4);
          for (const rec of ev.replace(/^data: /, '').split('\x1e')) {
            if (!rec.startsWith('{"type":1,')) continue;
            c.count++;
            const m = /"t":([0-9.]+)/.exec(rec);
            if (m) c.lat.push(now - Number(m[1]));
          }
        }
      });
      resolve();
    });
    req.on('error', reject);
  });
  const h = await request('POST', `/client/?hub=${hub}&id=${connectionToken}`, { body: '{"protocol":"json","version":1}\x1e' });
  if (h.status !== 200) throw new Error(`handshake ${h.status}`);
  clients.push(c);
}
for (let i = 0; i < CLIENTS; i += 100) {
  await Promise.all(Array.from({ length: Math.min(100, CLIENTS - i) }, (_, k) => openClient(i + k)));
}
console.log(`# ${CLIENTS} SSE clients connected to devhost signalr on port ${port}`);

// --- rising rates ----------------------------------------------------------------------
const route = `/api/v1/hubs/${hub}`;
const auth = `Bearer ${token(`http://localhost${route}`)}`;
const sendAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });
function send(seq) {
  const body = JSON.stringify({ target: 'newMessage', arguments: [{ s: seq, t: performance.now() }] });
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: route, method: 'POST', agent: sendAgent,
      headers: { Authorization: auth, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
    (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end(body);
  });
}
const pct = (a, p) => { if (!a.length) return NaN; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };

let seq = 0;
const results = [];
for (const rate of RATES) {
  for (const c of clients) { c.count = 0; if (c.lat) c.lat = []; }
  const total = rate * STEP_S;
  const cpu0 = cpuMs();
  const t0 = performance.now();
  const inflight = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(send(seq++));
    if (inflight.length >= 64) await Promise.all(inflight.splice(0));
  }
  await Promise.all(inflight);
  const sendEnd = performance.now();
  const drainBy = sendEnd + 5000;
  while (performance.now() < drainBy && clients.some((c) => c.count < total)) await new Promise((r) => setTimeout(r, 20));
  const t1 = performance.now();
  const cpu1 = cpuMs();
  const delivered = clients.reduce((a, c) => a + c.count, 0);
  const lats = clients.flatMap((c) => c.lat || []);
  const r = {
    rate, sentRate: total / ((sendEnd - t0) / 1000), delivered, expected: total * CLIENTS,
    noLoss: delivered === total * CLIENTS,
    deliveredPerS: delivered / ((t1 - t0) / 1000),
    p50: pct(lats, 50), p99: pct(lats, 99),
    cpuUsPerMsg: delivered ? ((cpu1 - cpu0) * 1000) / delivered : NaN,
  };
  results.push(r);
  console.log(`rate ${rate}/s (achieved ${r.sentRate.toFixed(0)}/s): delivered ${delivered}/${r.expected}` +
    ` ${r.noLoss ? 'no loss' : 'LOSS'}; ${r.deliveredPerS.toFixed(0)} msgs/s; p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms;` +
    ` server CPU ${r.cpuUsPerMsg.toFixed(2)} us/delivered msg`);
  r.sustained = r.sentRate >= 0.95 * rate;
  if (!r.noLoss || r.sentRate < 0.9 * rate) break; // loss, or the sender cannot keep the rate
}
// "highest no-loss rate": no loss AND the offered rate was actually achieved
const best = results.filter((r) => r.noLoss && r.sustained).pop();
if (best) {
  console.log(`# highest no-loss rate: ${best.rate} broadcasts/s to ${CLIENTS} clients = ${best.deliveredPerS.toFixed(0)} delivered msgs/s,` +
    ` p50 ${best.p50.toFixed(1)} ms, p99 ${best.p99.toFixed(1)} ms, ${best.cpuUsPerMsg.toFixed(2)} us server CPU per delivered message`);
}
const exit = await svc.stop('SIGTERM');
agent.destroy();
sendAgent.destroy();
process.exit(exit.code === 0 ? 0 : 1);
