// Local SignalR Service: wire-level behaviour (raw SSE framing, handshake, pings, close on
// shutdown), keep-alive with the real client, automatic reconnect after a restart, long-poll
// timeouts, and a slow client that must not delay others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  startDevhost, startNegotiateApp, makeClient, rest, broadcast, token, clientAud, waitFor, HUB, T,
  negotiate, openSse, clientPost, sseRecords,
} from './signalr_service_helpers.mjs';

const hub = HUB.toLowerCase();
const RS = '\x1e';

const send = clientPost;

test('raw SSE: v0 ids, comment line, handshake, invocation without invocationId, pings, close on SIGTERM', async () => {
  const svc = await startDevhost({ args: ['--ping-interval-ms', '200'] });
  try {
    const n = await negotiate(svc.port);            // version 0: the transport id is connectionId
    const sse = await openSse(svc.port, n.connectionId);
    assert.equal(sse.res.statusCode, 200);
    assert.match(sse.res.headers['content-type'], /^text\/event-stream/);
    await waitFor(() => sse.text().startsWith(':\r\n'), 5000, 'SSE comment line');
    const r = await send(svc.port, n.connectionId, `{"protocol":"json","version":1}${RS}{"type":6}${RS}`);
    assert.equal(r.status, 200);
    // the handshake reply is the first record; a ping queued meanwhile may share its event
    await waitFor(() => sseRecords(sse.text()).length > 0, 5000, 'handshake reply');
    assert.equal(sseRecords(sse.text())[0], '{}');
    assert.equal((await broadcast(svc.port, 'newMessage', [{ a: 'line\nbreak' }])).status, 202);
    const want = '{"type":1,"target":"newMessage","arguments":[{"a":"line\\nbreak"}]}';
    await waitFor(() => sseRecords(sse.text()).includes(want), 5000, () => `invocation record, got ${JSON.stringify(sse.text())}`);
    await waitFor(() => sseRecords(sse.text()).includes('{"type":6}'), 5000, 'a ping');
    // an unknown id → 404, a missing id → 400
    assert.equal((await send(svc.port, 'nope', `{"type":6}${RS}`)).status, 404);
    const noId = await fetch(`http://127.0.0.1:${svc.port}/client/?hub=${hub}`, { method: 'POST', body: 'x' });
    assert.equal(noId.status, 400);
    const exit = await svc.stop('SIGTERM');
    assert.equal(exit.code, 0);
    assert.equal(sseRecords(sse.text()).at(-1), '{"type":7,"error":"Server is shutting down.","allowReconnect":true}',
      `close message missing: ${JSON.stringify(sse.text().slice(-200))}`);
    await waitFor(() => sse.ended(), 5000, 'stream end');
  } finally {
    await svc.stop();
  }
});

// The service frames everything queued when the stream gets to write as one event (the client
// splits on 0x1E), so a test must match records: under load a ping queued right after the
// handshake shared the reply's event, and a test that wanted `data: {}\x1e\r\n\r\n` waited in vain.
// Records queued before the stream attaches make that coalescing certain.
test('records queued before the SSE stream attaches arrive in one event, whole and in order', async () => {
  const svc = await startDevhost();
  try {
    const n = await negotiate(svc.port, 1);
    assert.equal((await send(svc.port, n.connectionToken, `{"protocol":"json","version":1}${RS}`)).status, 200);
    assert.equal((await broadcast(svc.port, 'newMessage', [1])).status, 202);
    assert.equal((await broadcast(svc.port, 'newMessage', [2])).status, 202);
    const sse = await openSse(svc.port, n.connectionToken);
    const inv = (a) => `{"type":1,"target":"newMessage","arguments":[${a}]}`;
    const want = `:\r\ndata: {}${RS}${inv(1)}${RS}${inv(2)}${RS}\r\n\r\n`;
    await waitFor(() => sse.text().length >= want.length, 5000, () => `the queued records, got ${JSON.stringify(sse.text())}`);
    assert.equal(sse.text(), want);
    assert.deepEqual(sseRecords(sse.text()), ['{}', inv(1), inv(2)]);
    sse.req.destroy();
  } finally {
    assert.equal((await svc.stop()).code, 0);
  }
});

test('handshake with an unsupported protocol gets {"error":...} and the stream ends', async () => {
  const svc = await startDevhost();
  try {
    const n = await negotiate(svc.port, 1);
    const sse = await openSse(svc.port, n.connectionToken);
    await send(svc.port, n.connectionToken, `{"protocol":"messagepack","version":1}${RS}`);
    await waitFor(() => sseRecords(sse.text()).length > 0, 5000, 'handshake error');
    assert.match(sseRecords(sse.text())[0], /^\{"error":"[^"]+"\}$/);
    await waitFor(() => sse.ended(), 5000, 'stream end after refused handshake');
    // the connection id is no longer usable once removed
    await waitFor(async () => (await send(svc.port, n.connectionToken, `{"type":6}${RS}`)).status === 404, 10000, '404 after close');
  } finally {
    assert.equal((await svc.stop()).code, 0);
  }
});

test('pings keep a client with a short server timeout connected; without them it times out', async () => {
  const fast = await startDevhost({ args: ['--ping-interval-ms', '200'] });
  const slow = await startDevhost();   // default 15 s pings
  const appFast = await startNegotiateApp(() => fast.port);
  const appSlow = await startNegotiateApp(() => slow.port);
  try {
    const a = makeClient(appFast.port, { transport: T.ServerSentEvents, serverTimeoutMs: 1000 });
    const b = makeClient(appSlow.port, { transport: T.ServerSentEvents, serverTimeoutMs: 1000 });
    let bClosed = null;
    b.conn.onclose((e) => { bClosed = e || new Error('closed'); });
    await Promise.all([a.conn.start(), b.conn.start()]);
    await waitFor(() => bClosed, 5000, 'the client without pings to time out');
    assert.match(String(bClosed), /timeout|Server timeout/i);
    assert.equal(a.conn.state, 'Connected');
    await new Promise((r) => setTimeout(r, 1500)); // a.serverTimeout (1 s) elapses 1.5 times over
    assert.equal(a.conn.state, 'Connected');
    await a.conn.stop();
  } finally {
    await appFast.close();
    await appSlow.close();
    assert.equal((await fast.stop()).code, 0);
    assert.equal((await slow.stop()).code, 0);
  }
});

for (const [tname, transport] of [['WebSockets', T.WebSockets], ['ServerSentEvents', T.ServerSentEvents], ['LongPolling', T.LongPolling]]) {
  test(`automatic reconnect after the service restarts on the same port (${tname})`, async () => {
    let svc = await startDevhost({ args: ['--ping-interval-ms', '500'] });
    const port = svc.port;
    const app = await startNegotiateApp(() => port);
    const c = makeClient(app.port, { transport, reconnect: [0, 100, 200, 300, 500, 500, 500, 1000, 1000, 1000, 1000, 1000] });
    let reconnecting = 0;
    let reconnected = 0;
    c.conn.onreconnecting(() => { reconnecting++; });
    c.conn.onreconnected(() => { reconnected++; });
    try {
      await c.conn.start();
      assert.equal(c.conn.connection.transport.constructor.name, `${tname === 'WebSockets' ? 'WebSocket' : tname}Transport`);
      const firstId = c.conn.connectionId;
      assert.equal((await broadcast(port, 'newMessage', ['before'])).status, 202);
      await waitFor(() => c.got.includes('before'), 5000, 'message before restart');
      assert.equal((await svc.stop('SIGTERM')).code, 0);
      await waitFor(() => reconnecting > 0, 5000, 'onreconnecting');
      svc = await startDevhost({ port, args: ['--ping-interval-ms', '500'] });
      await waitFor(() => reconnected > 0, 15000, 'onreconnected');
      assert.equal(c.conn.state, 'Connected');
      assert.notEqual(c.conn.connectionId, firstId);
      assert.equal((await broadcast(port, 'newMessage', ['after'])).status, 202);
      await waitFor(() => c.got.includes('after'), 5000, 'message after restart');
      assert.equal(c.conn.connection.transport.constructor.name, `${tname === 'WebSockets' ? 'WebSocket' : tname}Transport`);
    } finally {
      await c.conn.stop();
      await app.close();
      assert.equal((await svc.stop()).code, 0);
    }
  });
}

test('long polls that time out are answered empty and the client keeps receiving; DELETE closes', async () => {
  const svc = await startDevhost({ args: ['--poll-timeout-ms', '200'] });
  const app = await startNegotiateApp(() => svc.port);
  const c = makeClient(app.port, { transport: T.LongPolling });
  try {
    await c.conn.start();
    await new Promise((r) => setTimeout(r, 700)); // several poll timeouts pass
    assert.equal((await broadcast(svc.port, 'newMessage', ['after timeouts'])).status, 202);
    await waitFor(() => c.got.includes('after timeouts'), 5000, 'message after poll timeouts');
    const id = c.conn.connectionId;
    await c.conn.stop(); // sends DELETE
    await waitFor(async () => (await rest(svc.port, 'HEAD', `/api/v1/hubs/${hub}/connections/${id}`)).status === 404,
      5000, 'connection gone after DELETE');
  } finally {
    await app.close();
    assert.equal((await svc.stop()).code, 0);
  }
});

test('a client that stops reading is closed when its queue overflows; others get everything in order', { timeout: 180000 }, async () => {
  const svc = await startDevhost({ args: ['--max-queue-bytes', String(4 << 20)] });
  const app = await startNegotiateApp(() => svc.port);
  const good = makeClient(app.port, { transport: T.ServerSentEvents });
  try {
    await good.conn.start();
    // a raw SSE client that completes the handshake and then never reads its stream
    const n = await negotiate(svc.port, 1);
    const stuck = await openSse(svc.port, n.connectionToken, { pause: true });
    assert.equal((await send(svc.port, n.connectionToken, `{"protocol":"json","version":1}${RS}`)).status, 200);
    await waitFor(async () => (await rest(svc.port, 'HEAD', `/api/v1/hubs/${hub}/connections/${n.connectionId}`)).status === 200,
      5000, 'stuck client connected');
    const payload = 'x'.repeat(60000);
    // 30 MB: more than the loopback socket buffers (a few MB each way) plus the 4 MiB bound can
    // hide, while a client that reads (even under ASan on a busy machine) stays far below the bound
    const N = 500;
    for (let i = 0; i < N; i++) {
      const r = await broadcast(svc.port, 'newMessage', [i, payload]);
      assert.equal(r.status, 202);
    }
    await waitFor(() => good.got.length === N, 90000, 'the good client to receive every message');
    assert.deepEqual(good.got.map((m) => m[0]), [...Array(N).keys()]);
        await waitFor(() => /fell behind/.test(svc.logs()), 5000, 'a log line about the slow client');
    await waitFor(async () => (await rest(svc.port, 'HEAD', `/api/v1/hubs/${hub}/connections/${n.connectionId}`)).status === 404,
      10000, 'slow client removed');
    stuck.req.destroy();
  } finally {
    await good.conn.stop();
    await app.close();
    assert.equal((await svc.stop()).code, 0);
  }
});
