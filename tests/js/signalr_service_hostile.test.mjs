// Local SignalR Service under hostile input (issue 17): every finding of the adversarial review
// is a regression test here (the lost wake-ups have their own file, signalr_service_wakeup).
//   - invalid UTF-8 in a REST body: 400 on every route, and no client on any transport is hurt;
//     a client's own invalid UTF-8 closes it alike on every transport
//   - arguments reach clients as sent (NUL escapes, big integers, 1e400), trailing garbage → 400
//   - a handshake without a transport is reaped like a connection that never attached
//   - long ids (a 1,000-character group, a 600-character user id) and an aud array
//   - ids with '/' or '%' are targetable (the raw path, decoded once)
//   - slow-drip clients cannot lock others out (request deadline, room for new clients)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startDevhost, startNegotiateApp, makeClient, rest, broadcast, token, clientAud, waitFor,
  negotiate, openSse, clientPost, sseRecords, HUB, T,
} from './signalr_service_helpers.mjs';

const hub = HUB.toLowerCase();
const RS = '\x1e';
const TRANSPORTS = [['WebSockets', T.WebSockets], ['ServerSentEvents', T.ServerSentEvents], ['LongPolling', T.LongPolling]];

/** POST raw bytes (a Buffer) to a REST route with a valid token. */
const restRaw = (port, route, bytes) => rest(port, 'POST', route, { body: bytes });

/** One real client per transport, connected; returns them with their transport names. */
async function clientsOnEveryTransport(appPort, opts = {}) {
  const cs = TRANSPORTS.map(([name, transport]) => ({ name, ...makeClient(appPort, { transport, ...opts }) }));
  await Promise.all(cs.map((c) => c.conn.start()));
  return cs;
}

test('invalid UTF-8 in a REST body is refused with 400 on every route; clients on every transport keep receiving', async () => {
  const svc = await startDevhost();
  const app = await startNegotiateApp(() => svc.port);
  const cs = await clientsOnEveryTransport(app.port, { user: 'u1' });
  try {
    await rest(svc.port, 'PUT', `/api/v1/hubs/${hub}/groups/g/users/u1`);
    const bad = Buffer.concat([Buffer.from('{"target":"newMessage","arguments":["'), Buffer.from([0xff, 0xfe]), Buffer.from('"]}')]);
    const overlong = Buffer.concat([Buffer.from('{"target":"newMessage","arguments":["'), Buffer.from([0xc0, 0xaf]), Buffer.from('"]}')]);
    const badTarget = Buffer.concat([Buffer.from('{"target":"new'), Buffer.from([0xe2, 0x28, 0xa1]), Buffer.from('","arguments":[]}')]);
    const routes = [
      `/api/v1/hubs/${hub}`, `/api/hubs/${hub}/:send?api-version=2022-06-01`,
      `/api/v1/hubs/${hub}/users/u1`, `/api/v1/hubs/${hub}/groups/g`,
      `/api/v1/hubs/${hub}/connections/${cs[0].conn.connectionId}`,
    ];
    for (const route of routes) {
      for (const body of [bad, overlong, badTarget]) {
        const r = await restRaw(svc.port, route, body);
        assert.equal(r.status, 400, `${route}: ${r.status} ${r.text}`);
        assert.match(r.text, /UTF-8/);
      }
    }
    // every client is still connected and gets the next message (the official WebSocket
    // client used to close with 1006 and miss everything after)
    assert.equal((await broadcast(svc.port, 'newMessage', ['after'])).status, 202);
    await waitFor(() => cs.every((c) => c.got.includes('after')), 10000, 'the message after the refused ones');
    for (const c of cs) {
      assert.equal(c.conn.state, 'Connected', c.name);
      assert.deepEqual(c.got, ['after'], c.name);
    }
    // valid non-ASCII text passes unchanged
    assert.equal((await broadcast(svc.port, 'newMessage', ['é → 😀'])).status, 202);
    await waitFor(() => cs.every((c) => c.got.includes('é → 😀')), 10000, 'non-ASCII text');
  } finally {
    await Promise.all(cs.map((c) => c.conn.stop()));
    await app.close();
    assert.equal((await svc.stop()).code, 0);
  }
});

test("a client's own message in invalid UTF-8 closes it on SSE/long polling as on WebSockets (1007)", async () => {
  const svc = await startDevhost();
  try {
    const n = await negotiate(svc.port, 1);
    const sse = await openSse(svc.port, n.connectionToken);
    assert.equal((await clientPost(svc.port, n.connectionToken, `{"protocol":"json","version":1}${RS}`)).status, 200);
    await waitFor(() => sse.text().includes(`data: {}${RS}`), 5000, 'handshake reply');
    const r = await clientPost(svc.port, n.connectionToken, Buffer.concat([Buffer.from('{"type":6,"x":"'), Buffer.from([0xff]), Buffer.from(`"}${RS}`)]));
    await r.text();
    await waitFor(() => sse.ended(), 5000, 'the stream to end');
    assert.ok(sse.text().includes(`{"type":7,"error":"Invalid UTF-8 in message."}${RS}`), sse.text());
  } finally {
    assert.equal((await svc.stop()).code, 0);
  }
});

test('arguments reach clients as sent: NUL escapes, big integers, 1e400, -0; trailing garbage and the like → 400', async () => {
  const svc = await startDevhost();
  const app = await startNegotiateApp(() => svc.port);
  const ws = makeClient(app.port, { transport: T.WebSockets });
  await ws.conn.start();
  const n = await negotiate(svc.port, 1);
  const sse = await openSse(svc.port, n.connectionToken);
  try {
    await clientPost(svc.port, n.connectionToken, `{"protocol":"json","version":1}${RS}`);
    const args = '[ "a\\u0000b", 9007199254740993, 1e400, -0, 0.1000000000000000055511151231257827,\n  {"deep": [1.50, "\\ud83d\\ude00", "tab\\there"]} ]';
    const body = `{\r\n  "target" : "newMessage",\n  "arguments" : ${args}\n}\n`;
    assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/${hub}`, { body })).status, 202);
    // the record holds the arguments' JSON text as sent, only the whitespace between tokens gone
    const rec = '{"type":1,"target":"newMessage","arguments":["a\\u0000b",9007199254740993,1e400,-0,' +
      '0.1000000000000000055511151231257827,{"deep":[1.50,"\\ud83d\\ude00","tab\\there"]}]}';
    await waitFor(() => sseRecords(sse.text()).includes(rec), 5000, () => `the record as sent, got ${JSON.stringify(sse.text())}`);
    // the official client parses exactly what was sent (a JS number cannot hold 2^53+1: that
    // is the client's limit, no longer the relay's; 1e400 parses as Infinity, not null)
    await waitFor(() => ws.got.length === 1, 5000, 'the WebSocket client');
    const sent = JSON.parse(args);
    assert.deepEqual(ws.got[0], sent);
    assert.equal(ws.got[0][0], 'a\u0000b');
    assert.equal(ws.got[0][2], Infinity);
    assert.ok(Object.is(ws.got[0][3], -0));
    for (const bad of [
      '{"target":"x","arguments":[]} trailing',
      '{"target":"x","arguments":[]}{"target":"y"}',
      '{"target":"x","arguments":[1,]}',
      '{"target":"x","target":"y","arguments":[]}',
      '{"target":"x","Arguments":[1],"arguments":[2]}',
      '{"target":"x","arguments":["\\ud800"]}',
      '{"target":"x","arguments":[NaN]}',
      '{"target":"x","arguments":["a\tb"]}',
      '{"target":5,"arguments":[]}',
      '{"target":"x","arguments":{"a":1}}',
    ]) {
      const r = await rest(svc.port, 'POST', `/api/v1/hubs/${hub}`, { body: bad });
      assert.equal(r.status, 400, `${bad}: ${r.status} ${r.text}`);
    }
    // null or missing arguments are an empty list; Target/Arguments (the SDK's spelling) work
    assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/${hub}`, { body: '{"Target":"newMessage","Arguments":null}' })).status, 202);
    await waitFor(() => sseRecords(sse.text()).includes('{"type":1,"target":"newMessage","arguments":[]}'), 5000, 'empty arguments');
  } finally {
    await ws.conn.stop();
    sse.req.destroy();
    await app.close();
    assert.equal((await svc.stop()).code, 0);
  }
});

test('a handshake without a transport is reaped like a connection that never attached', async () => {
  const svc = await startDevhost({ args: ['--handshake-timeout-ms', '1000'] });
  try {
    const n = await negotiate(svc.port, 1);
    assert.equal((await clientPost(svc.port, n.connectionToken, `{"protocol":"json","version":1}${RS}`)).status, 200);
    const has = async () => (await rest(svc.port, 'HEAD', `/api/v1/hubs/${hub}/connections/${n.connectionId}`)).status;
    assert.equal(await has(), 200, 'connected after its handshake');
    // it used to live forever, filling its queue with every broadcast
    await waitFor(async () => (await has()) === 404, 10000, 'the transport-less connection to be reaped');
    await waitFor(() => /disconnected .*no transport connected in time/.test(svc.logs()), 5000, 'the disconnect line');
    // and a late transport finds it gone
    const late = await openSse(svc.port, n.connectionToken);
    assert.equal(late.res.statusCode, 404);
  } finally {
    assert.equal((await svc.stop()).code, 0);
  }
});

test('long ids: a 1,000-character group and a 600-character user id are targetable', async () => {
  const svc = await startDevhost();
  const longUser = `user-${'ü'.repeat(300)}-${'x'.repeat(290)}`; // 600 characters, 900 bytes
  const app = await startNegotiateApp(() => svc.port);
  const c = makeClient(app.port, { transport: T.ServerSentEvents, user: encodeURIComponent(longUser) });
  // the negotiate app puts the x-user header into nameid; headers are ASCII, so decode it there
  const app2 = await startNegotiateApp(() => svc.port, { tokenFor: (u) => token(clientAud(), { userId: decodeURIComponent(u) }) });
  const c2 = makeClient(app2.port, { transport: T.WebSockets, user: encodeURIComponent(longUser) });
  await Promise.all([c.conn.start(), c2.conn.start()]);
  try {
    const group = `g${'é'.repeat(499)}${'/%'.repeat(250)}`; // 1,000 characters, 1,999 bytes, 3,999 encoded
    assert.equal([...group].length, 1000);
    const g = encodeURIComponent(group);
    // the SDK's 2022-06-01 form: the audience carries the (long) path and the query
    let r = await rest(svc.port, 'PUT', `/api/hubs/${hub}/groups/${g}/connections/${c.conn.connectionId}?api-version=2022-06-01`);
    assert.equal(r.status, 202, r.text);
    r = await rest(svc.port, 'POST', `/api/hubs/${hub}/groups/${g}/:send?api-version=2022-06-01`, { body: { target: 'newMessage', arguments: ['to the long group'] } });
    assert.equal(r.status, 202, r.text);
    await waitFor(() => c.got.includes('to the long group'), 10000, 'the group message');
    // a group name over the service's 1,024-character limit is refused as such (not as 401)
    r = await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/groups/${'g'.repeat(1025)}`, { body: { target: 'newMessage', arguments: [] } });
    assert.equal(r.status, 400, r.text);
    // user id of 600 characters: reachable (it was cut at 255 bytes and silently unreachable)
    r = await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/users/${encodeURIComponent(longUser)}`, { body: { target: 'newMessage', arguments: ['to the long user'] } });
    assert.equal(r.status, 202, r.text);
    await waitFor(() => c2.got.includes('to the long user'), 10000, 'the user message');
    assert.ok(!c.got.includes('to the long user'), 'only the client whose token names the user');
    assert.equal((await rest(svc.port, 'HEAD', `/api/v1/hubs/${hub}/users/${encodeURIComponent(longUser)}`)).status, 200);
  } finally {
    await Promise.all([c.conn.stop(), c2.conn.stop()]);
    await app.close();
    await app2.close();
    assert.equal((await svc.stop()).code, 0);
  }
});

test("ids with '/' or '%' are targetable (v1 and 2022-06-01 routes); a literal '/' is not part of an id", async () => {
  const svc = await startDevhost();
  const users = ['a/b', 'a%41', 'x y+z', 'ü/%2F'];
  const apps = [];
  const cs = [];
  try {
    for (const u of users) {
      const a = await startNegotiateApp(() => svc.port, { tokenFor: () => token(clientAud(), { userId: u }) });
      apps.push(a);
      const c = makeClient(a.port, { transport: T.WebSockets });
      await c.conn.start();
      cs.push(c);
    }
    for (const [i, u] of users.entries()) {
      const e = encodeURIComponent(u);
      let r = await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/users/${e}`, { body: { target: 'newMessage', arguments: [`v1 ${u}`] } });
      assert.equal(r.status, 202, `${u}: ${r.text}`);
      r = await rest(svc.port, 'POST', `/api/hubs/${hub}/users/${e}/:send?api-version=2022-06-01`, { body: { target: 'newMessage', arguments: [`v2 ${u}`] } });
      assert.equal(r.status, 202, `${u}: ${r.text}`);
      // group with the same awkward name, joined by this user
      r = await rest(svc.port, 'PUT', `/api/hubs/${hub}/users/${e}/groups/${e}?api-version=2022-06-01`);
      assert.equal(r.status, 202, `${u}: ${r.text}`);
      r = await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/groups/${e}`, { body: { target: 'newMessage', arguments: [`group ${u}`] } });
      assert.equal(r.status, 202, `${u}: ${r.text}`);
      await waitFor(() => cs[i].got.length === 3, 10000, `messages for ${u}`);
    }
    for (const [i, u] of users.entries()) assert.deepEqual(cs[i].got, [`v1 ${u}`, `v2 ${u}`, `group ${u}`]);
    // "users/a/b" (literal slash) is another route, not the user "a/b"
    const r = await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/users/a/b`, { body: { target: 'newMessage', arguments: ['wrong'] } });
    assert.equal(r.status, 404);
    // a token for "a%2Fb" does not authorise "a%252Fb" (decoded once each, not twice)
    const tok = token(`http://localhost/api/v1/hubs/${hub}/users/a%2Fb`);
    assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/users/a%252Fb`, { tok, body: { target: 'newMessage', arguments: [] } })).status, 401);
    // %00 is no id
    assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/users/a%00b`, { body: { target: 'newMessage', arguments: [] } })).status, 400);
  } finally {
    await Promise.all(cs.map((c) => c.conn.stop()));
    for (const a of apps) await a.close();
    assert.equal((await svc.stop()).code, 0);
  }
});

test('a JWT aud given as an array is accepted when one element matches (REST and negotiate)', async () => {
  const svc = await startDevhost();
  try {
    const route = `/api/v1/hubs/${hub}`;
    const body = { target: 'newMessage', arguments: [] };
    let r = await rest(svc.port, 'POST', route, { tok: token(['http://elsewhere/x', `http://localhost${route}`]), body });
    assert.equal(r.status, 202, r.text);
    r = await rest(svc.port, 'POST', route, { tok: token(['http://elsewhere/x', 'http://localhost/api/v1/hubs/other']), body });
    assert.equal(r.status, 401);
    assert.match(r.text, /none of its 2 audiences/);
    r = await rest(svc.port, 'POST', route, { tok: token([]), body });
    assert.equal(r.status, 401);
    const n = await negotiate(svc.port, 1, { tok: token([clientAud('other'), clientAud()]) });
    assert.ok(n.connectionToken);
  } finally {
    assert.equal((await svc.stop()).code, 0);
  }
});

// Slow drip: ATTACKERS sockets (more than the service's --max-connections 300) each send part
// of a request header, then one more byte every 500 ms (so that no idle timeout fires). The
// service must keep room: a new REST request and a new real client both get through at once,
// and each attacker is cut within the request deadline (--request-timeout-ms 2000). 450
// sockets here (plus as many on the service side) stay far below this machine's 20,000
// descriptors per process; the 20,000 would only repeat the same thing.
const ATTACKERS = 450;
test(`${ATTACKERS} slow-drip sockets cannot lock new clients out`, { timeout: 120000 }, async () => {
  const svc = await startDevhost({ args: ['--max-connections', '300', '--request-timeout-ms', '2000', '--threads', '2'] });
  const app = await startNegotiateApp(() => svc.port);
  const attackers = [];
  let closedByServer = 0;
  let dripping = true;
  try {
    for (let i = 0; i < ATTACKERS; i++) {
      const s = net.connect(svc.port, '127.0.0.1');
      s.on('error', () => {});
      s.on('close', () => { closedByServer++; });
      s.on('connect', () => s.write(`GET /client/?hub=${hub}&id=x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: `));
      attackers.push(s);
    }
    const drip = setInterval(() => { for (const s of attackers) if (!s.destroyed && s.writable) s.write('a'); }, 500);
    await waitFor(() => attackers.every((s) => !s.connecting || s.destroyed), 10000, 'the attackers to connect');
    try {
      // while they drip, new clients get through (they used to time out for 5 minutes)
      const t0 = Date.now();
      const r = await rest(svc.port, 'GET', '/api/health');
      assert.equal(r.status, 200);
      const c = makeClient(app.port, { transport: T.WebSockets });
      await c.conn.start();
      assert.equal((await broadcast(svc.port, 'newMessage', ['through'])).status, 202);
      await waitFor(() => c.got.includes('through'), 10000, 'the message to the new client');
      console.log(`# ${ATTACKERS} dripping sockets: health + negotiate + WebSocket + delivery took ${Date.now() - t0} ms`);
      await c.conn.stop();
      // every attacker is cut (made room for others, or past the 2 s deadline) while still dripping
      await waitFor(() => closedByServer === ATTACKERS, 15000, () => `the server to close the dripping sockets (${closedByServer}/${ATTACKERS} closed)`);
      assert.ok(dripping);
    } finally {
      dripping = false;
      clearInterval(drip);
    }
  } finally {
    for (const s of attackers) s.destroy();
    await app.close();
    assert.equal((await svc.stop()).code, 0);
  }
});
