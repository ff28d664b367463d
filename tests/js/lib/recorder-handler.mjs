// A recording custom handler for devhost tests: started by devhost (host.json:
// "defaultExecutablePath": "node", "arguments": ["recorder-handler.mjs"]), it listens on
// FUNCTIONS_CUSTOMHANDLER_PORT and appends one JSON line per event to $RECORDER_FILE:
//   {event:"start", pid, argv, cwd, env:{FUNCTIONS_*, RECORDER_*, ...}, childPid}
//   {event:"invoke", method, url, headers, body}   (body parsed when JSON, else text)
// What it answers to POST /<Function> comes from the JSON file $RECORDER_BEHAVIOUR, read afresh
// for every request, keyed by the lower-cased function name ("*" for any):
//   {status, contentType, reply (object → JSON text, string → as is), delayMs,
//    exit: code (answer nothing and exit), kill: "SIGKILL" (kill itself),
//    chunks: n (send the reply chunked, in n pieces), raw: "HTTP/1.1 ..." (written to the socket
//    as it is, then the connection is closed)}
// Default: 200 application/json {"Outputs":{"res":{"statusCode":200,"body":"ok"}},"Logs":["recorded"]}.
// RECORDER_SPAWN_CHILD=1 starts a long `sleep` child (to test that devhost's stop reaches it).
import http from 'node:http';
import fs from 'node:fs';
import { spawn } from 'node:child_process';

const file = process.env.RECORDER_FILE;
const record = (o) => fs.appendFileSync(file, `${JSON.stringify(o)}\n`);

let childPid = null;
if (process.env.RECORDER_SPAWN_CHILD === '1') {
  const c = spawn('sleep', ['300'], { stdio: 'ignore' });
  childPid = c.pid;
}

const env = {};
for (const [k, v] of Object.entries(process.env)) {
  if (/^(FUNCTIONS_|RECORDER_|AzureSignalR|Test)/.test(k)) env[k] = v;
}
record({ event: 'start', pid: process.pid, argv: process.argv.slice(2), cwd: process.cwd(), env, childPid });

function behaviour(fn) {
  try {
    const all = JSON.parse(fs.readFileSync(process.env.RECORDER_BEHAVIOUR, 'utf8'));
    return all[fn.toLowerCase()] ?? all['*'] ?? {};
  } catch {
    return {};
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    if (req.method === 'GET' && req.url === '/') { res.end('ready'); return; }
    const text = Buffer.concat(chunks).toString('utf8');
    let body = text;
    try { body = JSON.parse(text); } catch { /* kept as text */ }
    record({ event: 'invoke', method: req.method, url: req.url, headers: req.headers, body });
    const b = behaviour(req.url.slice(1));
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    if (b.kill) { process.kill(process.pid, b.kill); return; }
    if (b.exit !== undefined) { process.exit(b.exit); }
    if (b.raw) { req.socket.end(b.raw); return; }
    const reply = b.reply ?? { Outputs: { res: { statusCode: 200, body: 'ok' } }, Logs: ['recorded'], ReturnValue: null };
    const out = typeof reply === 'string' ? reply : JSON.stringify(reply);
    res.writeHead(b.status ?? 200, { 'Content-Type': b.contentType ?? 'application/json; charset=utf-8' });
    if (b.chunks) {
      const size = Math.ceil(out.length / b.chunks);
      for (let i = 0; i < out.length; i += size) {
        res.write(out.slice(i, i + size));
        await new Promise((r) => setTimeout(r, 5));
      }
      res.end();
      return;
    }
    res.end(out);
  });
});
server.keepAliveTimeout = 120000;
server.listen(Number(process.env.FUNCTIONS_CUSTOMHANDLER_PORT), '127.0.0.1');
process.on('SIGTERM', () => { server.close(); process.exit(0); });
