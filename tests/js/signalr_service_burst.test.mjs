// Local SignalR Service under a burst: 200 real clients (WebSockets, Server-Sent Events and Long
// Polling mixed: every 20th client long-polls, half of the others use WebSockets) each receive
// all 1,000 broadcast messages, in order, none lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevhost, startNegotiateApp, makeClient, HUB, T, token, waitFor } from './signalr_service_helpers.mjs';
import http from 'node:http';

const CLIENTS = 200;
const MESSAGES = 1000;

test(`${CLIENTS} clients each receive all ${MESSAGES} messages of a burst, in order`, { timeout: 120000 }, async () => {
  const svc = await startDevhost({ args: ['--max-queue-bytes', String(8 << 20)] });
  const app = await startNegotiateApp(() => svc.port);
  const clients = [];
  try {
    for (let i = 0; i < CLIENTS; i++) {
      clients.push(makeClient(app.port, { transport: i % 20 === 19 ? T.LongPolling : i % 2 ? T.ServerSentEvents : T.WebSockets }));
    }
    // connect in waves so that the negotiate app and the service see realistic concurrency
    for (let i = 0; i < CLIENTS; i += 50) await Promise.all(clients.slice(i, i + 50).map((c) => c.conn.start()));
    for (const c of clients) assert.equal(c.conn.state, 'Connected');

    const route = `/api/v1/hubs/${HUB.toLowerCase()}`;
    const auth = `Bearer ${token(`http://localhost${route}`)}`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (i) => new Promise((resolve, reject) => {
      const body = JSON.stringify({ target: 'newMessage', arguments: [{ seq: i, t: Date.now() }] });
      const req = http.request({ host: '127.0.0.1', port: svc.port, path: route, method: 'POST', agent,
        headers: { Authorization: auth, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
      (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
      req.on('error', reject);
      req.end(body);
    });
    const t0 = Date.now();
    // one keep-alive connection, requests strictly one after another: the send order is defined
    for (let i = 0; i < MESSAGES; i++) assert.equal(await post(i), 202);
    const sentMs = Date.now() - t0;
    await waitFor(() => clients.every((c) => c.got.length >= MESSAGES), 60000,
      `all clients to receive ${MESSAGES} (min so far ${Math.min(...clients.map((c) => c.got.length))})`);
    const doneMs = Date.now() - t0;
    for (const [k, c] of clients.entries()) {
      assert.equal(c.got.length, MESSAGES, `client ${k} got ${c.got.length}`);
      for (let i = 0; i < MESSAGES; i++) {
        if (c.got[i].seq !== i) assert.fail(`client ${k}: message ${i} has seq ${c.got[i].seq}`);
      }
    }
    agent.destroy();
    console.log(`# burst: ${MESSAGES} sends in ${sentMs} ms, ${CLIENTS * MESSAGES} deliveries complete after ${doneMs} ms`);
    assert.ok(!/fell behind/.test(svc.logs()), 'no client should have been dropped');
  } finally {
    await Promise.all(clients.map((c) => c.conn.stop().catch(() => {})));
    await app.close();
    const r = await svc.stop();
    assert.equal(r.code, 0);
  }
});
