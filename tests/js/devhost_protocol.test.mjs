// What `devhost start` POSTs to the handler, field by field, against the shapes of
// shared/reference/custom-handler-protocol.md (a recording handler captures every request), how
// the handler's reply becomes the HTTP response, and the SignalR bindings: the connection info
// minted into Data (checked with jsonwebtoken) and every kind of output message delivered to
// a SignalR REST endpoint (a recording server here, checking each JWT).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import jwt from 'jsonwebtoken';
import { makeApp, startDevhost, freePort, waitFor, signalrConn, EMULATOR_KEY } from './lib/devhost.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const res = { type: 'http', direction: 'out', name: 'res' };
const trig = (extra) => ({ type: 'httpTrigger', direction: 'in', name: 'req', authLevel: 'anonymous', ...extra });
const hub = { hubName: 'Enviromon', connectionStringSetting: 'AzureSignalRConnectionString' };

// A SignalR Service REST endpoint that records every call and answers `answer` (202 by default).
const rest = { calls: [], answer: 202 };
let restServer;
let app;
let dh;

before(async () => {
  restServer = http.createServer((req, r) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      rest.calls.push({ method: req.method, url: req.url, auth: req.headers.authorization, type: req.headers['content-type'], body });
      r.writeHead(rest.answer);
      r.end(rest.answer >= 400 ? 'service says no' : '');
    });
  });
  await new Promise((r) => restServer.listen(0, '127.0.0.1', r));
  app = makeApp({
    functions: {
      Echo: { bindings: [trig({ methods: ['get', 'post'], route: 'items/{category:alpha}/{id:int?}' }), res] },
      Ret: { bindings: [trig({ route: 'ret' }), { type: 'http', direction: 'out', name: '$return' }] },
      NoOut: { bindings: [trig({ route: 'noout' })] },
      Negotiate: { bindings: [trig({ methods: ['post'], route: 'negotiate' }), res,
        { type: 'signalRConnectionInfo', direction: 'in', name: 'connectionInfo', ...hub, userId: '{headers.x-ms-client-principal-id}' }] },
      Push: { bindings: [trig({ methods: ['post'], route: 'push' }), res, { type: 'signalR', direction: 'out', name: 'signalRMessages', ...hub }] },
    },
    values: { AzureSignalRConnectionString: signalrConn(restServer.address().port), TestValue: 'from-values' },
  });
  dh = await startDevhost(app.root);
});

after(async () => {
  const e = await dh?.stop();
  assert.equal(e?.code, 0, dh?.logs());
  assert.doesNotMatch(dh.logs(), new RegExp(EMULATOR_KEY), 'the access key must never be logged');
  assert.doesNotMatch(dh.logs(), /eyJ[\w-]+\.eyJ/, 'no token in the log');
  await new Promise((r) => restServer.close(r));
  app.cleanup();
});

const invocations = () => app.records().filter((r) => r.event === 'invoke');
const lastInvocation = () => invocations().at(-1);

describe('the request devhost sends to the handler', () => {
  test('the handler process: environment, argv, working directory', () => {
    const start = app.records().find((r) => r.event === 'start');
    assert.ok(start, 'the recorder started');
    assert.deepEqual(start.argv, []); // "node recorder-handler.mjs": the script is node's argument
    assert.equal(start.cwd, app.root);
    assert.match(start.env.FUNCTIONS_CUSTOMHANDLER_PORT, /^\d+$/);
    assert.equal(start.env.FUNCTIONS_HTTPWORKER_PORT, start.env.FUNCTIONS_CUSTOMHANDLER_PORT);
    assert.match(start.env.FUNCTIONS_CUSTOMHANDLER_WORKER_ID, UUID);
    assert.equal(start.env.FUNCTIONS_HTTPWORKER_ID, start.env.FUNCTIONS_CUSTOMHANDLER_WORKER_ID);
    assert.equal(start.env.FUNCTIONS_APP_ROOT_PATH, app.root);
    assert.equal(start.env.TestValue, 'from-values');
    assert.equal(start.env.FUNCTIONS_WORKER_RUNTIME, 'custom');
  });

  test('GET with route values, repeated query keys and a key: every field of Data.req and Metadata', async () => {
    const r = await fetch(`${dh.url}/API/Items/tools/42?name=red&Name=green&code=abc&flag`, {
      headers: { 'X-Custom': 'one', 'x-ms-client-principal-id': 'alice' },
    });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'ok');
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
    const inv = lastInvocation();
    assert.equal(inv.method, 'POST');
    assert.equal(inv.url, '/Echo');
    assert.equal(inv.headers['content-type'], 'application/json; charset=utf-8');
    assert.match(inv.headers['x-azure-functions-invocationid'], UUID);
    assert.match(inv.headers['x-azure-functions-hostversion'], /^4\./);
    assert.match(inv.headers['user-agent'], /^Azure-Functions-Host\/4\./);
    assert.deepEqual(Object.keys(inv.body), ['Data', 'Metadata']);
    const req = inv.body.Data.req;
    assert.deepEqual(Object.keys(req), ['Url', 'Method', 'Query', 'Headers', 'Params', 'Identities']); // no Body: none sent
    assert.equal(req.Url, `http://127.0.0.1:${dh.port}/API/Items/tools/42?name=red&Name=green&code=abc&flag`);
    assert.equal(req.Method, 'GET');
    assert.deepEqual(req.Query, { name: 'red,green', code: 'abc', flag: '' });
    assert.deepEqual(req.Headers['X-Custom'] ?? req.Headers['x-custom'], ['one']);
    assert.deepEqual(req.Headers.Host, [`127.0.0.1:${dh.port}`]);
    for (const v of Object.values(req.Headers)) assert.ok(Array.isArray(v) && v.every((s) => typeof s === 'string'));
    assert.deepEqual(req.Params, { category: 'tools', id: '42' });
    // A key was presented: func start's bypass handler authenticates it as Admin.
    assert.equal(req.Identities.length, 1);
    assert.equal(req.Identities[0].AuthenticationType, 'WebJobsAuthLevel');
    assert.equal(req.Identities[0].IsAuthenticated, true);
    assert.deepEqual(req.Identities[0].Claims.map((c) => [c.Type, c.Value]),
      [['http://schemas.microsoft.com/2017/07/functions/claims/authlevel', 'Admin']]);
    const md = inv.body.Metadata;
    // Strings double-encoded; query last value; no "code"; route values; then Query, Headers, sys.
    assert.equal(md.name, '"green"');
    assert.equal(md.flag, '""');
    assert.equal(md.category, '"tools"');
    assert.equal(md.id, '"42"');
    assert.equal(md.code, undefined);
    assert.deepEqual(md.Query, { name: 'green', code: 'abc', flag: '' });
    assert.equal(md.Headers['X-Custom'] ?? md.Headers['x-custom'], 'one');
    assert.equal(md.Headers.Host, `127.0.0.1:${dh.port}`);
    assert.deepEqual(Object.keys(md.sys), ['MethodName', 'UtcNow', 'RandGuid']);
    assert.equal(md.sys.MethodName, 'Echo');
    assert.match(md.sys.UtcNow, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/);
    assert.match(md.sys.RandGuid, UUID);
    assert.deepEqual(Object.keys(md).slice(-3), ['Query', 'Headers', 'sys']);
    // One log line per invocation, with the id sent in the header.
    await waitFor(() => dh.logs().includes(`Executed 'Functions.Echo' (Succeeded, Id=${inv.headers['x-azure-functions-invocationid']}`),
      { what: 'the invocation line' });
    await dh.waitLog(/  Echo: recorded/); // the reply's Logs under it
  });

  test('POST with a JSON body: Body is the text, top-level scalars join Metadata; an unused optional route value is null', async () => {
    const body = JSON.stringify({ deviceId: 'd1', n: 12, ok: true, nested: { a: 1 }, list: [1] });
    await fetch(`${dh.url}/api/items/tools`, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    const { Data, Metadata } = lastInvocation().body;
    assert.equal(Data.req.Body, body);
    assert.deepEqual(Data.req.Params, { category: 'tools', id: null });
    assert.equal(Data.req.Identities[0].IsAuthenticated, false); // anonymous, no key: no authentication ran
    assert.equal(Data.req.Identities[0].AuthenticationType, null);
    assert.equal(Metadata.deviceId, '"d1"');
    assert.equal(Metadata.n, '"12"');
    assert.equal(Metadata.ok, '"True"');
    assert.equal(Metadata.nested, undefined);
    assert.equal(Metadata.list, undefined);
    assert.equal(Metadata.id, undefined);
    assert.equal(Metadata.category, '"tools"');
  });

  test('a chunked body (no Content-Length) reaches the handler without Body, as in the host', async () => {
    const port = dh.port;
    await new Promise((resolve, reject) => {
      const q = http.request({ host: '127.0.0.1', port, path: '/api/items/tools', method: 'POST', headers: { 'Transfer-Encoding': 'chunked' } },
        (r) => { r.resume(); r.on('end', resolve); });
      q.on('error', reject);
      q.write('{"a":');
      q.end('"b"}');
    });
    const { Data, Metadata } = lastInvocation().body;
    assert.equal(Data.req.Body, undefined);
    assert.equal(Metadata.a, undefined);
  });

  test('routes: methods, constraints and unknown paths are 404 and reach no handler', async () => {
    const before = invocations().length;
    for (const [method, p] of [['PUT', '/api/items/tools'], ['GET', '/api/items/t00ls'], ['GET', '/api/items/tools/x'],
      ['GET', '/api/nothing'], ['GET', '/items/tools'], ['GET', '/admin/nothing']]) {
      const r = await fetch(`${dh.url}${p}`, { method });
      assert.equal(r.status, 404, `${method} ${p}`);
    }
    assert.equal(invocations().length, before);
  });
});

describe('the reply becomes the response', () => {
  test('statusCode, headers and a string body; a JSON body is written as indented text', async () => {
    app.setBehaviour({ echo: { reply: { Outputs: { res: { statusCode: '201', headers: { 'Content-Type': 'application/json', 'X-Count': 5 },
      body: '{"a":1}' } }, Logs: [], ReturnValue: null } } });
    let r = await fetch(`${dh.url}/api/items/tools`);
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.headers.get('x-count'), '5');
    assert.equal(await r.text(), '{"a":1}');
    app.setBehaviour({ echo: { reply: { outputs: { RES: { StatusCode: 202, Body: { a: [1, 2] } } } } } });
    r = await fetch(`${dh.url}/api/items/tools`);
    assert.equal(r.status, 202);
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(await r.text(), '{\n  "a": [\n    1,\n    2\n  ]\n}');
    app.setBehaviour({});
  });

  test('$return takes ReturnValue; a function without an http output answers 200 empty', async () => {
    app.setBehaviour({ ret: { reply: { Outputs: {}, ReturnValue: { statusCode: 418, body: 'teapot' } } } });
    let r = await fetch(`${dh.url}/api/ret`);
    assert.equal(r.status, 418);
    assert.equal(await r.text(), 'teapot');
    r = await fetch(`${dh.url}/api/noout`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), '');
    app.setBehaviour({});
  });

  test('replies chunked, ended by the connection, or after a 100 Continue are read whole', async () => {
    const big = 'x'.repeat(100000);
    const reply = { Outputs: { res: { statusCode: 200, body: big } } };
    const json = JSON.stringify(reply);
    for (const behaviour of [
      { chunks: 7, reply },
      { raw: `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${json}` },
      { raw: `HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n${json}` },
      { raw: `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json}` },
      { raw: `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${json.length.toString(16)}\r\n${json}\r\n0\r\nX-Trailer: 1\r\n\r\n` },
    ]) {
      app.setBehaviour({ echo: behaviour });
      const r = await fetch(`${dh.url}/api/items/tools`);
      assert.equal(r.status, 200, JSON.stringify(behaviour).slice(0, 80));
      assert.equal((await r.text()).length, big.length);
    }
    app.setBehaviour({ echo: { raw: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort' } });
    assert.equal((await fetch(`${dh.url}/api/items/tools`)).status, 500, 'a truncated reply fails');
    app.setBehaviour({ echo: { raw: 'SMTP ready\r\n\r\n' } });
    assert.equal((await fetch(`${dh.url}/api/items/tools`)).status, 500, 'something that is not HTTP fails');
    await dh.waitLog(/is not HTTP\/1\.x/);
    app.setBehaviour({});
    assert.equal((await fetch(`${dh.url}/api/items/tools`)).status, 200, 'and the next one is fine');
  });

  test('a failing handler fails the invocation: 500, and the log says why', async () => {
    const cases = [
      [{ status: 500, reply: { error: 'boom in handler' } }, /Response status code does not indicate success: 500 \(Internal Server Error\)\. The handler said: boom in handler/],
      [{ contentType: 'text/plain', reply: '{"Outputs":{}}' }, /Content-Type 'text\/plain'.*No MediaTypeFormatter/],
      [{ reply: '' }, /empty body \(or null\).*hangs until functionTimeout/],
      [{ reply: 'null' }, /empty body \(or null\)/],
      [{ reply: { Outputs: [1] } }, /Outputs must be an object/],
      [{ reply: { Outputs: { res: 'a string' } } }, /Failed while trying to Deserialize to httpOutputBindingResponse/],
      [{ reply: { Outputs: {}, Logs: [1] } }, /Logs must be an array of strings/],
    ];
    for (const [behaviour, why] of cases) {
      app.setBehaviour({ echo: behaviour });
      const r = await fetch(`${dh.url}/api/items/tools`);
      assert.equal(r.status, 500, JSON.stringify(behaviour));
      assert.equal(await r.text(), '');
      const id = lastInvocation().headers['x-azure-functions-invocationid'];
      await waitFor(() => dh.logs().includes(`Executed 'Functions.Echo' (Failed, Id=${id}`), { what: `the failure line for ${id}` });
      const line = dh.logs().split('\n').find((l) => l.includes(id));
      assert.match(line, why);
    }
    app.setBehaviour({});
  });
});

describe('SignalR bindings', () => {
  test('signalRConnectionInfo: the value in Data is the extension\'s JSON text, double-encoded; the token is right', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    await fetch(`${dh.url}/api/negotiate`, { method: 'POST', headers: { 'x-ms-client-principal-id': 'alice' } });
    const wire = lastInvocation().body.Data.connectionInfo;
    assert.equal(typeof wire, 'string');
    const text = JSON.parse(wire);
    assert.equal(typeof text, 'string');
    assert.match(text, /^\{\n {2}"url": /, 'JObject.ToString() is indented');
    const info = JSON.parse(text);
    assert.deepEqual(Object.keys(info), ['url', 'accessToken']);
    assert.equal(info.url, `http://localhost:${restServer.address().port}/client/?hub=enviromon`);
    const claims = jwt.verify(info.accessToken, Buffer.from(EMULATOR_KEY, 'utf8'), { algorithms: ['HS256'],
      audience: 'http://localhost/client/?hub=enviromon' });
    assert.equal(claims.nameid, 'alice');
    assert.ok(claims.exp >= t0 + 3600 && claims.exp <= t0 + 3602);
  });

  test('a userId expression naming an absent header fails the invocation, as the host does', async () => {
    const before = invocations().length;
    const r = await fetch(`${dh.url}/api/negotiate`, { method: 'POST' });
    assert.equal(r.status, 500);
    assert.equal(invocations().length, before, 'the handler is not called when a binding cannot be bound');
    await dh.waitLog(/Exception binding parameter 'connectionInfo'\. Error while accessing 'x-ms-client-principal-id': property doesn't exist\./);
  });

  const reply = (messages) => ({ push: { reply: { Outputs: { res: { statusCode: 202, body: 'sent' }, signalRMessages: messages } } } });
  const base = '/api/hubs/enviromon';

  test('every kind of message goes to its REST path in order, each with its own HS256 token', async () => {
    rest.calls.length = 0;
    app.setBehaviour(reply([
      { target: 'newMessage', arguments: [{ a: 1 }] },
      { target: 'newMessage', arguments: ['to user'], userId: 'u 1' },
      { target: 'newMessage', arguments: [], groupName: 'g1' },
      { target: 'newMessage', arguments: [null], connectionId: 'c1', userId: 'ignored' },
      { userId: 'u 1', groupName: 'g1', action: 'add' },
      { connectionId: 'c1', groupName: 'g1', action: 'remove' },
      { userId: 'u 1', groupName: 'g1', action: 'removeAll' },
    ]));
    const r = await fetch(`${dh.url}/api/push`, { method: 'POST', body: '{}' });
    assert.equal(r.status, 202);
    assert.equal(await r.text(), 'sent');
    const v = '?api-version=2022-06-01';
    assert.deepEqual(rest.calls.map((c) => `${c.method} ${c.url}`), [
      `POST ${base}/:send${v}`,
      `POST ${base}/users/u%201/:send${v}`,
      `POST ${base}/groups/g1/:send${v}`,
      `POST ${base}/connections/c1/:send${v}`,
      `PUT ${base}/users/u%201/groups/g1${v}`,
      `DELETE ${base}/groups/g1/connections/c1${v}`,
      `DELETE ${base}/users/u%201/groups${v}`,
    ]);
    assert.deepEqual(JSON.parse(rest.calls[0].body), { target: 'newMessage', arguments: [{ a: 1 }] });
    assert.deepEqual(JSON.parse(rest.calls[1].body), { target: 'newMessage', arguments: ['to user'] });
    for (const c of rest.calls) {
      assert.match(c.auth, /^Bearer /);
      // The SDK's audience for 2022-06-01: scheme://host + path + query, no port.
      jwt.verify(c.auth.slice(7), Buffer.from(EMULATOR_KEY, 'utf8'), { algorithms: ['HS256'], audience: `http://localhost${c.url}` });
    }
    app.setBehaviour({});
  });

  test('a single object and a string holding a JSON array are delivered too', async () => {
    rest.calls.length = 0;
    app.setBehaviour(reply({ target: 'one', arguments: [1] }));
    assert.equal((await fetch(`${dh.url}/api/push`, { method: 'POST' })).status, 202);
    app.setBehaviour(reply(JSON.stringify([{ target: 'two', arguments: [2] }, { target: 'three', arguments: [3] }])));
    assert.equal((await fetch(`${dh.url}/api/push`, { method: 'POST' })).status, 202);
    assert.deepEqual(rest.calls.map((c) => JSON.parse(c.body).target), ['one', 'two', 'three']);
    app.setBehaviour({});
  });

  test('undeliverable or malformed messages fail the invocation (500)', async () => {
    const bad = [
      [[{ foo: 1 }], /Unable to convert JObject to valid output binding type/],
      [[{ target: 'x' }], /Required property 'arguments'/],
      ['abcd', /reads as base64/],
      [[{ userId: 'u', groupName: 'g', action: 'promote' }], /group action 'promote' is unknown/],
    ];
    for (const [messages, why] of bad) {
      app.setBehaviour(reply(messages));
      const r = await fetch(`${dh.url}/api/push`, { method: 'POST' });
      assert.equal(r.status, 500, JSON.stringify(messages));
      const id = lastInvocation().headers['x-azure-functions-invocationid'];
      await waitFor(() => dh.logs().includes(`(Failed, Id=${id}`), { what: 'the failure line' });
      assert.match(dh.logs().split('\n').find((l) => l.includes(id)), why);
    }
    rest.answer = 500;
    app.setBehaviour(reply([{ target: 'x', arguments: [] }]));
    let r = await fetch(`${dh.url}/api/push`, { method: 'POST' });
    assert.equal(r.status, 500);
    await dh.waitLog(/the SignalR Service answered 500: service says no/);
    rest.answer = 202;
    app.setBehaviour({});
    r = await fetch(`${dh.url}/api/push`, { method: 'POST' });
    assert.equal(r.status, 200, 'the recorder\'s default reply has no messages');
  });
});

test('invocations from many connections at once each get their own id and answer', async () => {
  app.setBehaviour({ echo: { delayMs: 50 } });
  const before = invocations().length;
  const rs = await Promise.all(Array.from({ length: 24 }, () => fetch(`${dh.url}/api/items/tools`).then((r) => r.status)));
  assert.deepEqual(rs, Array(24).fill(200));
  const ids = invocations().slice(before).map((i) => i.headers['x-azure-functions-invocationid']);
  assert.equal(new Set(ids).size, 24);
  app.setBehaviour({});
});

test('the 10 s summary line counts invocations, failures and restarts', async () => {
  await waitFor(() => /devhost: last 10 s: \d+ invocations, \d+ failed \(total \d+, \d+ failed\); handler ready, restarts 0/.test(dh.logs()),
    { timeoutMs: 15000, intervalMs: 200, what: 'a summary line' });
  const free = await freePort();
  assert.ok(free > 0);
});
