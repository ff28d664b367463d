// The packaged handler on Azure's own images: in each root that tools/package/check.sh
// prepared (Debian 11 and 12 minbase holding exactly the Functions image's package set, the
// zip unpacked in /home/site/wwwroot, a test CA in the root's trust store, /proc mounted), the
// handler runs under chroot and is driven from outside on loopback as the Functions host
// would: readiness probe, Negotiate, an EventTrigger batch and GetDeviceState against an
// Azurite on the host reached over HTTPS (rows checked with @azure/data-tables), and TLS
// refused for a certificate from an untrusted CA or for another host name. Run by
// `make check-package` only (needs root and the prepared roots).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import { freePort, waitFor, invoke, httpReq } from '../js/lib/handler.mjs';
import { startAzurite, connectionString } from '../js/lib/azurite.mjs';
import { wireBatch, rowsOf, uniquePk, summaryOf, pushesOf } from '../js/lib/eventhub.mjs';
import { httpResult } from '../js/lib/functions.mjs';

const ROOTS = (process.env.PACKAGE_ROOTS ?? '').split(' ').filter(Boolean)
  .map((s) => ({ debian: s.slice(0, s.indexOf(':')), dir: s.slice(s.indexOf(':') + 1) }));
const PKI = process.env.PACKAGE_PKI;
if (ROOTS.length === 0 || !PKI) throw new Error('run through make check-package (tools/package/check.sh prepares the roots)');
const pem = (name) => path.join(PKI, name);
const CHROOT = ['/usr/sbin/chroot', '/usr/bin/chroot'].find((p) => fs.existsSync(p));
const FIRST_ANSWER_LIMIT_MS = 1000;   // issue 14: first request answered within 1 s of start
const SR_KEY = crypto.randomBytes(32).toString('base64');
const SR_ENDPOINT = 'https://enviromon-check.service.signalr.net';

/** One GET / on a fresh connection, as the host's readiness probe: the status, or null. Raw
 *  TCP so that the first-answer time measures the handler, not the client's start-up. */
function probe(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const done = (v) => { s.destroy(); resolve(v); };
    s.setTimeout(2000, () => done(null));
    s.on('connect', () => s.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    s.on('data', (d) => { buf += d; const m = /^HTTP\/1\.[01] (\d{3}) /.exec(buf); if (m) done(Number(m[1])); });
    s.on('error', () => done(null));
    s.on('close', () => done(null));
  });
}

/** How long ago the kernel started process pid, in ms (10 ms resolution): the handler's own
 *  start, whatever it cost the test to fork it on a busy machine. */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
function processAgeMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);   // field 22
  const uptimeS = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return uptimeS * 1000 - (startTicks * 1000) / CLK_TCK;
}

/** Start <root>/home/site/wwwroot/handler under chroot with the host's environment shape;
 *  resolves once GET / answers, with firstAnswerMs measured from the spawn. */
async function startInRoot(root, settings) {
  const port = await freePort();
  const env = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    FUNCTIONS_CUSTOMHANDLER_PORT: String(port),
    FUNCTIONS_CUSTOMHANDLER_WORKER_ID: crypto.randomUUID(),
    AzureWebJobsScriptRoot: '/home/site/wwwroot',
    ...settings,
  };
  const t0 = performance.now();
  const proc = spawn(CHROOT, [root, '/bin/sh', '-c', 'cd /home/site/wwwroot && exec ./handler'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  let dead = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => { dead = { code, signal }; resolve(dead); }));
  const url = `http://127.0.0.1:${port}`;
  let readyStatus = null;
  await waitFor(async () => {
    if (dead) throw new Error(`handler exited (${JSON.stringify(dead)}): ${out}`);
    readyStatus = await probe(port);
    return readyStatus;
  }, { timeoutMs: 15000, intervalMs: 1, what: `the handler in ${root}` });
  const sinceSpawnMs = performance.now() - t0;
  const firstAnswerMs = processAgeMs(proc.pid);
  return {
    url, proc, firstAnswerMs, sinceSpawnMs, readyStatus,
    output: () => out,
    async stop() {
      if (!dead) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** An HTTPS server with the given certificate that counts connections and requests. */
async function tlsServer(name) {
  const seen = { connections: 0, requests: 0 };
  const srv = https.createServer({ cert: fs.readFileSync(pem(`${name}.pem`)), key: fs.readFileSync(pem(`${name}.key`)) },
    (req, res) => { seen.requests++; res.writeHead(500).end(); });
  srv.on('connection', () => { seen.connections++; });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { port: srv.address().port, seen, close: () => new Promise((resolve) => srv.close(resolve)) };
}

let az, rogue, misnamed;
before(async () => {
  az = await startAzurite({ cert: pem('server.pem'), key: pem('server.key') });
  [rogue, misnamed] = await Promise.all([tlsServer('rogue'), tlsServer('misnamed')]);
});
after(async () => {
  await az?.stop();
  await rogue?.close();
  await misnamed?.close();
});

for (const { debian, dir } of ROOTS) {
  describe(`Debian ${debian} image root`, () => {
    const pk = uniquePk(`pkg${debian}`);
    const handlers = [];
    let h;
    const start = async (settings) => {
      const x = await startInRoot(dir, { PartitionKey: pk, AzureSignalRConnectionString: `Endpoint=${SR_ENDPOINT};AccessKey=${SR_KEY};Version=1.0;`, ...settings });
      handlers.push(x);
      return x;
    };
    before(async () => { h = await start({ StorageConnectionString: az.connection }); });
    after(async () => {
      for (const x of handlers) {
        const r = await x.stop();
        assert.equal(r.code, 0, `handler exit ${JSON.stringify(r)}: ${x.output()}`);
        assert.doesNotMatch(x.output(), new RegExp(SR_KEY.slice(0, 20).replace(/[+/]/g, '\\$&')), 'no secret in the log');
      }
    });

    test('starts, answers the readiness probe within 1 s, and needs nothing the image lacks', async (t) => {
      t.diagnostic(`Debian ${debian}: first answer ${h.firstAnswerMs.toFixed(0)} ms after the process started ` +
        `(${h.sinceSpawnMs.toFixed(0)} ms after the test called spawn; load average ${os.loadavg()[0].toFixed(1)})`);
      assert.equal(h.readyStatus, 200);
      assert.ok(h.firstAnswerMs < FIRST_ANSWER_LIMIT_MS, `first answer after ${h.firstAnswerMs} ms`);
      await waitFor(() => /listening on 127\.0\.0\.1/.test(h.output()), { what: 'the start-up log line' });
      assert.doesNotMatch(h.output(), /error|cannot open shared object/i);
    });

    test('Negotiate mints a token for the SignalR Service in Azure', async () => {
      const t0 = Math.floor(Date.now() / 1000);
      const res = httpResult(await invoke(h, 'Negotiate', { req: httpReq({ method: 'POST', headers: { 'X-MS-CLIENT-PRINCIPAL-ID': 'pkg' } }) }));
      assert.equal(res.status, 200);
      const url = `${SR_ENDPOINT}/client/?hub=enviromon`;
      assert.equal(res.body.url, url);
      const claims = jwt.verify(res.body.accessToken, Buffer.from(SR_KEY, 'utf8'), { algorithms: ['HS256'], audience: url });
      assert.equal(claims.nameid, 'pkg');
      assert.ok(claims.exp >= t0 + 3600 - 5, `exp ${claims.exp}`);
    });

    test('EventTrigger folds a batch into rows in Table Storage over HTTPS (the image trust store)', async () => {
      const batch = wireBatch([
        { deviceId: 'devA', seq: 10, enqueued: '2026-03-01T08:00:00.5', body: { temperature: 20.5, humidity: 40, messageId: 'm1' } },
        { deviceId: 'devB', seq: 11, enqueued: '2026-03-01T08:00:01', body: { temperature: 18, pressure: 1012 } },
        { deviceId: 'devA', seq: 12, enqueued: '2026-03-01T08:00:02', body: { temperature: 21.25, humidity: 41, messageId: 'm2' } },
      ], { partition: '1' });
      const r = await invoke(h, 'EventTrigger', batch.data, batch.metadata);
      assert.equal(r.status, 200, r.text);
      const s = summaryOf(r.json);
      assert.deepEqual([s.events, s.devices, s.accepted, s.invalid, s.rejected], [3, 2, 3, 0, 0]);
      assert.deepEqual(Object.keys(pushesOf(r.json)).sort(), ['devA', 'devB']);
      const rows = await rowsOf(az.connection, 'DeviceState', pk);
      assert.deepEqual(Object.keys(rows).sort(), ['devA', 'devB']);
      assert.equal(rows.devA.Celsius, 21.25);
      assert.equal(rows.devA.Humidity, 41);
      assert.equal(rows.devA.Count, 2n);
      assert.equal(rows.devA.LastSeq, 12n);
      assert.equal(rows.devA.LastSeen.toISOString(), '2026-03-01T08:00:02.000Z');
      assert.equal(rows.devB.hPa, 1012);
      assert.equal(rows.devB.Humidity, undefined);
    });

    test('GetDeviceState reads the row back over HTTPS', async () => {
      const res = httpResult(await invoke(h, 'GetDeviceState', {
        req: httpReq({ method: 'GET', url: 'https://app.azurewebsites.net/api/getdevicestate', query: { deviceId: 'devA', broadcast: 'false' } }),
      }));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.deviceId, 'devA');
      assert.equal(res.body.temperature, 21.25);
      assert.equal(res.body.humidity, 41);
      assert.equal(res.body.count, 2);
      assert.equal(res.body.lastSeen, '2026-03-01T08:00:02.000Z');
      assert.equal(res.body.messageId, 'm2');
    });

    test('TLS is refused for a certificate from a CA the image does not trust, and for another host name', async () => {
      for (const [srv, why] of [[rogue, /certificate/i], [misnamed, /subject|host ?name|certificate/i]]) {
        const before = { ...srv.seen };
        const x = await start({ StorageConnectionString: connectionString(srv.port, { scheme: 'https', host: 'localhost' }), StorageRetries: '0' });
        const batch = wireBatch([{ deviceId: 'devT', seq: 1, body: { temperature: 1 } }]);
        const r = await invoke(x, 'EventTrigger', batch.data, batch.metadata);
        assert.ok(r.status >= 500, `must fail so that the host retries: ${r.text}`);
        assert.match(r.json?.error ?? '', why);
        assert.ok(srv.seen.connections > before.connections, 'the handler did connect');
        assert.equal(srv.seen.requests, before.requests, 'but no request got through the handshake');
      }
    });
  });
}
