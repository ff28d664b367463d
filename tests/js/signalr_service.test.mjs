// Local SignalR Service (`devhost signalr`) with the real @microsoft/signalr client:
// REST auth and validation, negotiate auth, broadcast/user/group/connection delivery over
// WebSockets, Server-Sent Events and Long Polling through a {url, accessToken} redirect.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDevhost, startNegotiateApp, makeClient, rest, broadcast, token, clientAud, waitFor,
  HUB, T, KEY,
} from './signalr_service_helpers.mjs';

let svc;
let app;
before(async () => {
  svc = await startDevhost();
  app = await startNegotiateApp(() => svc.port);
});
after(async () => {
  await app?.close();
  if (svc) {
    const r = await svc.stop();
    assert.equal(r.code, 0, `devhost exit ${JSON.stringify(r)}\n${svc.logs()}`);
  }
});

const hub = HUB.toLowerCase();

describe('REST API auth and validation', () => {
  const v1 = `/api/v1/hubs/${hub}`;
  const body = { target: 'newMessage', arguments: [1] };

  test('valid v1 token → 202; valid 2022-06-01 SDK-form token → 202', async () => {
    assert.equal((await rest(svc.port, 'POST', v1, { body })).status, 202);
    const r = await rest(svc.port, 'POST', `/api/hubs/${hub}/:send?api-version=2022-06-01`, { body });
    assert.equal(r.status, 202, r.text);
    // Target/Arguments as the SDK's JSON writer spells them
    assert.equal((await rest(svc.port, 'POST', v1, { body: { Target: 'x', Arguments: [] } })).status, 202);
  });

  test('missing, badly signed, expired and wrong-audience tokens → 401', async () => {
    const aud = `http://localhost${v1}`;
    const cases = {
      missing: '',
      garbage: 'not.a.jwt',
      wrongKey: token(aud, { key: 'some-other-key' }),
      decodedKey: token(aud, { key: Buffer.from(KEY, 'base64') }),
      expired: token(aud, { exp: Math.floor(Date.now() / 1000) - 10 }),
      wrongAudPath: token(`http://localhost/api/v1/hubs/otherhub`),
      wrongAudHost: token(`http://evil.example${v1}`),
      clientAudAtRest: token(clientAud()),
    };
    for (const [name, tok] of Object.entries(cases)) {
      const r = await rest(svc.port, 'POST', v1, { body, tok });
      assert.equal(r.status, 401, `${name}: ${r.status} ${r.text}`);
      assert.ok(!r.text.includes('eyJ'), 'error text must not echo tokens');
    }
    // audience with a port and trailing slash is accepted (port ignored)
    assert.equal((await rest(svc.port, 'POST', v1, { body, aud: `http://localhost:${svc.port}${v1}/` })).status, 202);
    // the 2022-06-01 query in the audience must match the request's
    const r = await rest(svc.port, 'POST', `/api/hubs/${hub}/:send?api-version=2022-06-01`,
      { body, aud: `http://localhost/api/hubs/${hub}/:send?api-version=2021-01-01` });
    assert.equal(r.status, 401);
    assert.ok(!svc.logs().includes('eyJ'), 'no token in the logs');
  });

  test('malformed bodies → 400, over 1 MiB → 413, unknown route → 404, health', async () => {
    for (const b of ['not json', '[]', '{"arguments":[]}', '{"target":""}', '{"target":"x","arguments":5}']) {
      const r = await rest(svc.port, 'POST', v1, { body: b });
      assert.equal(r.status, 400, `${b}: ${r.text}`);
    }
    const big = JSON.stringify({ target: 'x', arguments: ['a'.repeat(1024 * 1024 + 10)] });
    assert.equal((await rest(svc.port, 'POST', v1, { body: big })).status, 413);
    assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/nothing/here`, { body })).status, 404);
    assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/9bad`, { body })).status, 400);
    assert.equal((await rest(svc.port, 'HEAD', '/api/health')).status, 200);
    assert.equal((await rest(svc.port, 'GET', '/api/health')).status, 200);
    assert.equal((await rest(svc.port, 'HEAD', '/api/health', { tok: '' })).status, 401);
  });
});

describe('client negotiate', () => {
  const url = (q = '&negotiateVersion=1') => `http://127.0.0.1:${svc.port}/client/negotiate?hub=${HUB}${q}`;
  const post = (tok, q) => fetch(url(q), { method: 'POST', headers: tok ? { Authorization: `Bearer ${tok}` } : {} });

  test('version 1 answer with a connection token; WebSockets first, then SSE and LP', async () => {
    const res = await post(token(clientAud()));
    assert.equal(res.status, 200);
    const j = await res.json();
    assert.equal(j.negotiateVersion, 1);
    assert.match(j.connectionId, /^[A-Za-z0-9_-]{22}$/);
    assert.match(j.connectionToken, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(j.connectionId, j.connectionToken);
    assert.deepEqual(j.availableTransports, [
      { transport: 'WebSockets', transferFormats: ['Text', 'Binary'] },
      { transport: 'ServerSentEvents', transferFormats: ['Text'] },
      { transport: 'LongPolling', transferFormats: ['Text'] },
    ]);
    assert.ok(!('useStatefulReconnect' in j));
  });

  test('old clients (no negotiateVersion) get version 0 without connectionToken', async () => {
    const res = await post(token(clientAud()), '');
    assert.equal(res.status, 200);
    const j = await res.json();
    assert.equal(j.negotiateVersion, 0);
    assert.ok(j.connectionId);
    assert.ok(!('connectionToken' in j));
  });

  test('bad, expired, wrong-audience or missing client tokens → 401', async () => {
    const bad = {
      missing: null,
      wrongKey: token(clientAud(), { key: 'nope' }),
      expired: token(clientAud(), { exp: Math.floor(Date.now() / 1000) - 5 }),
      otherHub: token(clientAud('otherhub')),
      restAud: token(`http://localhost/api/v1/hubs/${hub}`),
    };
    for (const [name, tok] of Object.entries(bad)) {
      const res = await post(tok);
      assert.equal(res.status, 401, name);
      await res.text();
    }
    // the audience without the query is the documented form: accepted
    const res = await post(token('http://localhost/client'));
    assert.equal(res.status, 200);
    await res.text();
  });

  test('the real client refuses to start with a bad redirect token', async () => {
    const badApp = await startNegotiateApp(() => svc.port, { tokenFor: () => token(clientAud(), { key: 'wrong' }) });
    try {
      const { conn } = makeClient(badApp.port, { transport: T.ServerSentEvents });
      await assert.rejects(conn.start(), /401|Unauthorized/);
    } finally {
      await badApp.close();
    }
  });
});

for (const [tname, transport] of [['WebSockets', T.WebSockets], ['ServerSentEvents', T.ServerSentEvents], ['LongPolling', T.LongPolling]]) {
  describe(`delivery over ${tname}`, () => {
    test('broadcast, user, group and connection sends reach exactly their targets, in order', async () => {
      const alice = makeClient(app.port, { transport, user: 'alice' });
      const bob = makeClient(app.port, { transport, user: 'bob' });
      const anon = makeClient(app.port, { transport });
      await Promise.all([alice.conn.start(), bob.conn.start(), anon.conn.start()]);
      try {
        for (const c of [alice, bob, anon]) {
          assert.equal(c.conn.state, 'Connected');
          // the transport asked for is the one in use (WebSockets is advertised first)
          assert.equal(c.conn.connection.transport.constructor.name, `${tname === 'WebSockets' ? 'WebSocket' : tname}Transport`);
        }
        const marker = async (n) => {
          assert.equal((await broadcast(svc.port, 'newMessage', [{ marker: n }])).status, 202);
          await waitFor(() => [alice, bob, anon].every((c) => c.got.some((m) => m?.marker === n)), 10000, `marker ${n}`);
        };
        await marker(1);

        // user send (v1 and 2022-06-01 routes)
        assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/users/alice`, { body: { target: 'newMessage', arguments: ['to-alice'] } })).status, 202);
        assert.equal((await rest(svc.port, 'POST', `/api/hubs/${hub}/users/bob/:send?api-version=2022-06-01`, { body: { target: 'NEWMESSAGE', arguments: ['to-bob'] } })).status, 202);
        await marker(2);

        // group: alice's connection explicitly, bob as a user
        const gPath = `/api/v1/hubs/${hub}/groups/g1`;
        assert.equal((await rest(svc.port, 'PUT', `${gPath}/connections/${alice.conn.connectionId}`)).status, 202);
        assert.equal((await rest(svc.port, 'PUT', `/api/hubs/${hub}/users/bob/groups/g1?api-version=2022-06-01`)).status, 202);
        assert.equal((await rest(svc.port, 'PUT', `${gPath}/connections/no-such-connection`)).status, 404);
        assert.equal((await rest(svc.port, 'POST', gPath, { body: { target: 'newMessage', arguments: ['to-g1'] } })).status, 202);
        // excluded connection ids are skipped
        assert.equal((await rest(svc.port, 'POST', `${gPath}?excluded=${alice.conn.connectionId}`, { body: { target: 'newMessage', arguments: ['to-g1-not-alice'] } })).status, 202);
        // connection send
        assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/connections/${anon.conn.connectionId}`, { body: { target: 'newMessage', arguments: ['to-anon'] } })).status, 202);
        await marker(3);

        // leave the group
        assert.equal((await rest(svc.port, 'DELETE', `${gPath}/connections/${alice.conn.connectionId}`)).status, 202);
        assert.equal((await rest(svc.port, 'DELETE', `${gPath}/users/bob`)).status, 202);
        assert.equal((await rest(svc.port, 'POST', gPath, { body: { target: 'newMessage', arguments: ['to-g1-empty'] } })).status, 202);
        await marker(4);

        const strs = (c) => c.got.filter((m) => typeof m === 'string');
        const markers = (c) => c.got.filter((m) => m?.marker).map((m) => m.marker);
        assert.deepEqual(strs(alice), ['to-alice', 'to-g1']);
        assert.deepEqual(strs(bob), ['to-bob', 'to-g1', 'to-g1-not-alice']);
        assert.deepEqual(strs(anon), ['to-anon']);
        for (const c of [alice, bob, anon]) assert.deepEqual(markers(c), [1, 2, 3, 4]);
        // per-client order: each client's messages arrive in the order they were sent
        assert.deepEqual(bob.got.map((m) => (typeof m === 'string' ? m : `m${m.marker}`)),
          ['m1', 'to-bob', 'm2', 'to-g1', 'to-g1-not-alice', 'm3', 'm4']);
      } finally {
        await Promise.all([alice.conn.stop(), bob.conn.stop(), anon.conn.stop()]);
      }
    });
  });
}

test('the asrs.s.uid claim (the .NET SDK form) also names the user', async () => {
  const app2 = await startNegotiateApp(() => svc.port, {
    tokenFor: (u) => token(clientAud(), { userId: u, uidClaim: 'asrs.s.uid' }),
  });
  const c = makeClient(app2.port, { transport: T.ServerSentEvents, user: 'carol' });
  try {
    await c.conn.start();
    assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/${hub}/users/carol`, { body: { target: 'newMessage', arguments: ['hi carol'] } })).status, 202);
    await waitFor(() => c.got.includes('hi carol'), 10000, 'user message to carol');
  } finally {
    await c.conn.stop();
    await app2.close();
  }
});

test('hub names are case-insensitive across negotiate and REST', async () => {
  const c = makeClient(app.port, { transport: T.LongPolling });
  try {
    await c.conn.start();
    assert.equal((await rest(svc.port, 'POST', `/api/v1/hubs/ENVIROMON`, { aud: 'http://localhost/api/v1/hubs/ENVIROMON', body: { target: 'newMessage', arguments: ['upper'] } })).status, 202);
    await waitFor(() => c.got.includes('upper'), 10000, 'message sent to the upper-case hub');
  } finally {
    await c.conn.stop();
  }
});
