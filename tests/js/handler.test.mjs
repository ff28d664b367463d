// The handler core against real processes and sockets: start-up errors, readiness, routing,
// body handling (chunked, oversized, malformed), response shape, graceful shutdown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startHandler, invoke, handlerBin, freePort, waitFor } from './lib/handler.mjs';
import { spawnTied } from './lib/proc.mjs';

let h;
before(async () => { h = await startHandler({ ENVIROMON_MAX_BODY_BYTES: '65536', ENVIROMON_MAX_BATCH_BYTES: '100000' }); });
after(async () => {
  const r = await h.stop();
  assert.equal(r.code, 0, `handler exit ${JSON.stringify(r)}; stderr: ${h.stderr()}`);
});

/** Raw HTTP request with control over chunking. chunks: array of strings written one by one. */
function rawPost(port, path, chunks, { chunked = true, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const body = chunks.join('');
    const hdrs = { 'Content-Type': 'application/json', ...headers };
    if (!chunked) hdrs['Content-Length'] = Buffer.byteLength(body);
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: hdrs }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject);
    if (chunked) req.setHeader('Transfer-Encoding', 'chunked');
    (async () => {
      for (const c of chunks) {
        req.write(c);
        await new Promise((r) => setImmediate(r));
      }
      req.end();
    })();
  });
}

function runToExit(env, args = []) {
  return new Promise((resolve) => {
    const p = spawnTied(handlerBin, args, { env: { PATH: process.env.PATH, ...env } });
    let err = '';
    let out = '';
    p.stderr.on('data', (d) => { err += d; });
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (code) => resolve({ code, err, out }));
  });
}

test('a missing port is a clear error and a non-zero exit', async () => {
  const r = await runToExit({});
  assert.notEqual(r.code, 0);
  assert.match(r.err, /FUNCTIONS_CUSTOMHANDLER_PORT is missing/);
});

test('an invalid port is a clear error and a non-zero exit', async () => {
  for (const bad of ['0', '65536', 'http', '-5']) {
    const r = await runToExit({ FUNCTIONS_CUSTOMHANDLER_PORT: bad });
    assert.notEqual(r.code, 0, `port ${bad}`);
    assert.match(r.err, /FUNCTIONS_CUSTOMHANDLER_PORT/, `port ${bad}`);
  }
});

test('a malformed setting is named at start-up', async () => {
  const r = await runToExit({ FUNCTIONS_CUSTOMHANDLER_PORT: String(await freePort()), MaxCelsius: 'hot' });
  assert.notEqual(r.code, 0);
  assert.match(r.err, /MaxCelsius/);
});

test('a table name or PartitionKey storage would refuse is a start-up error, not a failure of every batch', async () => {
  for (const [name, value] of [['DeviceStateTable', 'device-state'], ['PoisonEventsTable', 'Tables'], ['PartitionKey', 'Syd/ney']]) {
    const r = await runToExit({ FUNCTIONS_CUSTOMHANDLER_PORT: String(await freePort()), [name]: value });
    assert.notEqual(r.code, 0, name);
    assert.match(r.err, new RegExp(`setting ${name}`), name);
  }
});

test('a port in use is reported, not ignored', async () => {
  const r = await runToExit({ FUNCTIONS_CUSTOMHANDLER_PORT: String(h.port) });
  assert.notEqual(r.code, 0);
  assert.match(r.err, /cannot listen on 127\.0\.0\.1:\d+/);
});

test('a bad storage connection string is reported without its key', async () => {
  const secret = 'U2VjcmV0S2V5VGhhdE11c3ROb3RCZUxvZ2dlZA==';
  const r = await runToExit({
    FUNCTIONS_CUSTOMHANDLER_PORT: String(await freePort()),
    StorageConnectionString: `AccountKey=${secret};Nonsense`,
  });
  assert.notEqual(r.code, 0);
  assert.match(r.err, /StorageConnectionString/);
  assert.ok(!r.err.includes(secret) && !r.out.includes(secret), 'the key leaked into the output');
});

test('the readiness probe GET / answers 200 JSON', async () => {
  const r = await fetch(`${h.url}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.deepEqual(await r.json(), { status: 'ready' });
});

test('an unknown function is a 404 JSON error naming it', async () => {
  const r = await invoke(h, 'NoSuchFunction');
  assert.equal(r.status, 404);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.match(r.json.error, /NoSuchFunction/);
});

test('functions are routed case-insensitively', async () => {
  // Every registered function parses the envelope; a body that is not an object is a 400 that
  // names the function, which proves the route resolved.
  for (const name of ['eventtrigger', 'NEGOTIATE', 'GetDeviceState', 'sendsignalr']) {
    const r = await rawPost(h.port, `/${name}`, ['[1,2]'], { chunked: false });
    assert.equal(r.status, 400, name);
    assert.match(JSON.parse(r.text).error, /must be a JSON object/, name);
  }
});

test('a non-POST to a function is a 405 JSON error', async () => {
  const r = await fetch(`${h.url}/Negotiate`);
  assert.equal(r.status, 405);
  assert.match((await r.json()).error, /POST/);
});

test('malformed JSON is a 400 saying where', async () => {
  const r = await rawPost(h.port, '/Negotiate', ['{"Data": {"req": \n  {"Method": GET}}}'], { chunked: false });
  assert.equal(r.status, 400);
  const body = JSON.parse(r.text);
  assert.match(body.error, /invalid JSON at line 2, column \d+/);
  const empty = await rawPost(h.port, '/Negotiate', [], { chunked: false });
  assert.equal(empty.status, 400);
  assert.match(JSON.parse(empty.text).error, /empty request body/);
  const trailing = await rawPost(h.port, '/Negotiate', ['{"Data":{}} {"x":1}'], { chunked: false });
  assert.equal(trailing.status, 400);
  assert.match(JSON.parse(trailing.text).error, /trailing data/);
  const truncated = await rawPost(h.port, '/Negotiate', ['{"Data":{"a":'], { chunked: false });
  assert.equal(truncated.status, 400);
  assert.match(JSON.parse(truncated.text).error, /invalid JSON/);
});

test('a chunked body without Content-Length is read in full', async () => {
  // The error lies in the last chunk: the 400 can only name byte 60000+ if every chunk arrived.
  const pad = 'x'.repeat(20000);
  const chunks = ['{"Data":{"a":"', pad, pad, pad, '"},"Metadata":{}', ' oops}'];
  const r = await rawPost(h.port, '/Negotiate', chunks, { chunked: true });
  assert.equal(r.status, 400);
  const off = Number(JSON.parse(r.text).error.match(/byte (\d+)/)[1]);
  assert.ok(off > 60000, `error at byte ${off}`);
  // And a well-formed chunked body reaches the function (which answers with the envelope).
  const ok = await rawPost(h.port, '/Negotiate', ['{"Data":', '{}', ',"Metadata":{}}'], { chunked: true });
  assert.notEqual(ok.status, 400, ok.text);
  assert.match(ok.headers['content-type'], /^application\/json/);
  assert.ok(ok.text.length > 2, 'never an empty body');
});

test('an oversized body is a 413 JSON error, chunked or not, and the server goes on', async () => {
  const big = '{"Data":{"a":"' + 'y'.repeat(70000) + '"}}';
  const r1 = await rawPost(h.port, '/Negotiate', [big], { chunked: false });
  assert.equal(r1.status, 413);
  assert.match(JSON.parse(r1.text).error, /65536-byte limit.*ENVIROMON_MAX_BODY_BYTES/);
  const r2 = await rawPost(h.port, '/SendSignalr', [big.slice(0, 30000), big.slice(30000)], { chunked: true });
  assert.equal(r2.status, 413);
  // EventTrigger reads its body as it streams: its own, larger limit
  const ok = await rawPost(h.port, '/EventTrigger', [big], { chunked: false });
  assert.notEqual(ok.status, 413, ok.text);
  const huge = '{"Data":{"a":"' + 'y'.repeat(100000) + '"}}';
  const r3 = await rawPost(h.port, '/EventTrigger', [huge.slice(0, 50000), huge.slice(50000)], { chunked: true });
  assert.equal(r3.status, 413);
  assert.match(JSON.parse(r3.text).error, /100000-byte limit.*ENVIROMON_MAX_BATCH_BYTES/);
  const probe = await fetch(`${h.url}/`);
  assert.equal(probe.status, 200);
});

test('hostile paths and methods never crash the server', async () => {
  const paths = ['/%00', '/../../etc/passwd', '/' + 'A'.repeat(4000), '/Negotiate/extra', '/%ff%fe'];
  for (const p of paths) {
    const r = await rawPost(h.port, p, ['{}'], { chunked: false }).catch((e) => ({ status: 0, e }));
    assert.ok(r.status >= 400 && r.status < 500, `${p} -> ${r.status}`);
  }
  for (const m of ['PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
    const r = await fetch(`${h.url}/EventTrigger`, { method: m });
    assert.equal(r.status, 405, m);
  }
  assert.equal((await fetch(`${h.url}/`)).status, 200);
});

/** A TCP server that accepts connections and never answers (a storage account that hangs). */
function blackhole() {
  return new Promise((resolve) => {
    const socks = [];
    const srv = net.createServer((s) => { socks.push(s); s.on('error', () => {}); });
    srv.listen(0, '127.0.0.1', () => resolve({ port: srv.address().port, connections: () => socks.length,
      close: () => new Promise((r) => { for (const s of socks) s.destroy(); srv.close(r); }) }));
  });
}

test('SIGTERM finishes an in-flight request, then exits 0', async () => {
  // A request whose body is complete and whose function is busy (storage that never answers,
  // 1.5 s timeout): in flight when the signal arrives, so it is answered before the exit.
  const hole = await blackhole();
  const h2 = await startHandler({ StorageConnectionString: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;` +
    `AccountKey=${Buffer.from('k'.repeat(64)).toString('base64')};TableEndpoint=http://127.0.0.1:${hole.port}/devstoreaccount1;`,
  StorageTimeoutMs: '1500', StorageRetries: '0' });
  try {
    const pending = invoke(h2, 'GetDeviceState', { req: { Method: 'GET', Query: { broadcast: 'false' }, Headers: {} } });
    await waitFor(() => hole.connections() > 0, { what: 'the function to wait on storage' });
    h2.proc.kill('SIGTERM');
    const r = await pending;
    assert.equal(r.status, 200, r.text);              // the invocation answered (its res says 503)
    assert.equal(JSON.parse(r.json.Outputs.res.body).error !== undefined, true);
    const exit = await h2.exited;
    assert.equal(exit.code, 0);
    assert.match(h2.stdout(), /received SIGTERM/);
  } finally {
    await hole.close();
  }
});

test('a stalled upload does not hold up shutdown', async () => {
  // Headers and one body byte, then nothing: not in flight, so SIGTERM exits at once rather
  // than after the 30 s drain.
  const h2 = await startHandler({ ENVIROMON_DEBUG: '1' });
  for (const path of ['/EventTrigger', '/Negotiate']) {
    await new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: h2.port, path, method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': '1000' } });
      req.on('error', () => {});   // cut when the handler exits
      req.write('{', () => resolve());
      req.on('socket', (s) => s.on('error', reject));
    });
  }
  await waitFor(() => (h2.stdout().match(/POST \/(EventTrigger|Negotiate): headers received/g) ?? []).length === 2,
    { what: 'both uploads to start' });
  const t0 = Date.now();
  h2.proc.kill('SIGTERM');
  const exit = await h2.exited;
  assert.equal(exit.code, 0);
  assert.ok(Date.now() - t0 < 5000, `exit took ${Date.now() - t0} ms`);
});
