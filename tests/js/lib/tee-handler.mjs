// A tee in front of the real ./handler, for tests that need both the real pipeline (rows in
// Table Storage, SignalR pushes) and what the host sent: devhost starts this as its custom
// handler (host.json: "defaultExecutablePath": "node", "arguments": ["tee-handler.mjs"]); it
// starts $TEE_TARGET (./handler) on a port of its own with the same environment, answers
// readiness once that one is ready, forwards every request to it unchanged and relays the
// answer, and appends {url, headers, body} of every POST /EventTrigger to $TEE_FILE. SIGTERM
// stops both. ./handler is devhost's grandchild: devhost's parent-death signal reaches only the
// tee, so ./handler is tied to the tee (spawnTied) and dies with it when devhost is SIGKILLed.
// (proc.mjs is copied next to this file into the app.)
import http from 'node:http';
import fs from 'node:fs';
import net from 'node:net';
import { spawnTied } from './proc.mjs';

const port = Number(process.env.FUNCTIONS_CUSTOMHANDLER_PORT);
const inner = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
});
const child = spawnTied(process.env.TEE_TARGET, [], {
  env: { ...process.env, FUNCTIONS_CUSTOMHANDLER_PORT: String(inner), FUNCTIONS_HTTPWORKER_PORT: String(inner) },
  stdio: ['ignore', 'inherit', 'inherit'],
});
child.on('exit', (code) => process.exit(code ?? 1));
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function forward(req, body) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port: inner, method: req.method, path: req.url, headers: req.headers, agent },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      });
    r.on('error', reject);
    r.end(body);
  });
}

/** Whether something accepts connections on port (the real handler while it lives). */
function listening(p) {
  return new Promise((resolve) => {
    const c = net.connect(p, '127.0.0.1');
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    if (req.method === 'POST' && req.url.toLowerCase() === '/eventtrigger') {
      fs.appendFileSync(process.env.TEE_FILE, `${JSON.stringify({ url: req.url, headers: req.headers, body: JSON.parse(body.toString('utf8')) })}\n`);
    }
    try {
      const a = await forward(req, body);
      res.writeHead(a.status, a.headers);
      res.end(a.body);
    } catch {
      // The handler died (its port refuses) or dropped the connection. A dead one takes the
      // tee with it at once, before this connection is closed: devhost retries a dropped
      // kept-alive connection once on a new one, and while the tee still listened that retry
      // would be recorded as a delivery (RetryCount 0) though no handler was there to take it,
      // where with the real handler alone it is refused.
      if (child.exitCode !== null || child.signalCode !== null || !(await listening(inner))) process.exit(1);
      res.socket.destroy();   // the handler is alive and closed the connection: as if nothing answered
    }
  });
});
server.keepAliveTimeout = 120000;

// ready when the real handler answers GET /
for (;;) {
  const ok = await new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port: inner, path: '/' }, (r) => { r.resume(); resolve(true); }).on('error', () => resolve(false));
  });
  if (ok) break;
  await new Promise((r) => setTimeout(r, 25));
}
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => { child.kill('SIGTERM'); server.close(); });
