// Local SignalR Service: the WebSockets transport. The real client's default (WebSockets
// first) and explicit WebSockets, keep-alive pings, and raw-socket checks of the RFC 6455
// handshake and framing (masking, fragmentation, control frames, size limit, close codes),
// the close message + close frame on SIGTERM, and a stalled WebSocket client that is dropped
// while another receives everything in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import {
  startDevhost, startNegotiateApp, makeClient, rest, broadcast, token, clientAud, waitFor, HUB, T,
  negotiate,
} from './signalr_service_helpers.mjs';

const hub = HUB.toLowerCase();
const RS = '\x1e';

/** Encode one client frame (masked unless mask === false). */
function frame(opcode, payload, { fin = true, mask = true, lenOverride } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload ?? '');
  const len = lenOverride ?? data.length;
  let head;
  if (len < 126) { head = Buffer.alloc(2); head[1] = len; }
  else if (len < 65536) { head = Buffer.alloc(4); head[1] = 126; head.writeUInt16BE(len, 2); }
  else { head = Buffer.alloc(10); head[1] = 127; head.writeBigUInt64BE(BigInt(len), 2); }
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = crypto.randomBytes(4);
  const body = Buffer.from(data);
  for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat([head, key, body]);
}

/** Raw WebSocket client: HTTP upgrade, then a parser of (unmasked) server frames. */
function rawWs(port, query, { key = crypto.randomBytes(16).toString('base64'), headers = {}, read = true } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let res = null;
    const frames = [];
    let ended = false;
    const st = { sock, frames, key, ended: () => ended, texts: () => frames.filter((f) => f.op === 1).map((f) => f.data.toString()).join('') };
    sock.on('error', (e) => { ended = true; if (!res) reject(e); });
    sock.on('close', () => { ended = true; if (!res) reject(new Error(`closed before a response: ${buf}`)); });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!res) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buf.subarray(0, end).toString().split('\r\n');
        const status = Number(lines[0].split(' ')[1]);
        const h = {};
        for (const l of lines.slice(1)) { const i = l.indexOf(':'); h[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim(); }
        buf = buf.subarray(end + 4);
        res = { status, headers: h };
        Object.assign(st, res);
        if (status !== 101) {
          const bodyDone = () => { st.body = buf.toString(); resolve(st); };
          if (h['content-length'] && buf.length >= Number(h['content-length'])) bodyDone();
          else sock.on('end', bodyDone);
          return;
        }
        if (!read) sock.pause(); // from here on, never read: the kernel buffers fill up
        resolve(st);
      }
      if (res.status !== 101) return;
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        assert.equal(buf[1] & 0x80, 0, 'server frames are never masked');
        if (buf.length < off + len) return;
        frames.push({ fin: (buf[0] & 0x80) !== 0, op: buf[0] & 0x0f, data: Buffer.from(buf.subarray(off, off + len)) });
        buf = buf.subarray(off + len);
      }
    });
    const path = `/client/?hub=${hub}${query}`;
    const hdr = { Host: `127.0.0.1:${port}`, Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13', ...headers };
    if (key !== null) hdr['Sec-WebSocket-Key'] = key;
    sock.write(`GET ${path} HTTP/1.1\r\n${Object.entries(hdr).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`);
  });
}

const closeFrame = (ws) => ws.frames.find((f) => f.op === 8);
const closeCode = (ws) => { const f = closeFrame(ws); return f && f.data.length >= 2 ? f.data.readUInt16BE(0) : null; };
const connected = async (port, id) => (await rest(port, 'HEAD', `/api/v1/hubs/${hub}/connections/${id}`)).status === 200;

test('the real client picks WebSockets by default and receives messages in order', async () => {
  const svc = await startDevhost();
  const app = await startNegotiateApp(() => svc.port);
  const c = makeClient(app.port, { user: 'dora' });
  try {
    await c.conn.start();
    assert.equal(c.conn.connection.transport.constructor.name, 'WebSocketTransport');
    await waitFor(() => /connected \(hub enviromon, WebSockets/.test(svc.logs()), 5000, 'connect log line');
    const gPath = `/api/v1/hubs/${hub}/groups/gw`;
    assert.equal((await rest(svc.port, 'PUT', `${gPath}/connections/${c.conn.connectionId}`)).status, 202);
    for (let i = 0; i < 50; i++) {
      const route = i % 3 === 0 ? `/api/v1/hubs/${hub}` : i % 3 === 1 ? `/api/v1/hubs/${hub}/users/dora` : gPath;
      assert.equal((await rest(svc.port, 'POST', route, { body: { target: 'newMessage', arguments: [i] } })).status, 202);
    }
    await waitFor(() => c.got.length === 50, 10000, 'all 50 messages');
    assert.deepEqual(c.got, [...Array(50).keys()]);
  } finally {
    await c.conn.stop();
    await app.close();
    assert.equal((await svc.stop()).code, 0);
  }
});

test('pings keep a WebSocket client with a short server timeout connected', async () => {
  const svc = await startDevhost({ args: ['--ping-interval-ms', '200'] });
  const app = await startNegotiateApp(() => svc.port);
  const c = makeClient(app.port, { transport: T.WebSockets, serverTimeoutMs: 1000 });
  let closed = null;
  c.conn.onclose((e) => { closed = e || new Error('closed'); });
  try {
    await c.conn.start();
    const t0 = Date.now();
    await waitFor(() => Date.now() - t0 > 2500 || closed, 5000, 'time to pass'); // 2.5 server timeouts
    assert.equal(closed, null);
    assert.equal(c.conn.state, 'Connected');
  } finally {
    await c.conn.stop();
    await app.close();
    assert.equal((await svc.stop()).code, 0);
  }
});

test('raw WebSocket: opening handshake checks, 404 / 409 / 400 / 426', async () => {
  const svc = await startDevhost();
  try {
    const n = await negotiate(svc.port, 1);
    const id = `&id=${n.connectionToken}`;
    // RFC 6455 §1.3 example key → known accept value; browsers also append access_token
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const ws = await rawWs(svc.port, `${id}&access_token=${token(clientAud())}`, { key });
    assert.equal(ws.status, 101);
    assert.equal(ws.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(ws.headers.upgrade.toLowerCase(), 'websocket');
    assert.match(ws.headers.connection, /upgrade/i);
    // a second socket for the same connection → 409
    assert.equal((await rawWs(svc.port, id)).status, 409);
    // unknown id → 404, missing id → 400, bad key → 400, wrong version → 426
    assert.equal((await rawWs(svc.port, '&id=nosuchconnection')).status, 404);
    assert.equal((await rawWs(svc.port, '')).status, 400);
    const n2 = await negotiate(svc.port, 1);
    const id2 = `&id=${n2.connectionToken}`;
    for (const bad of ['short', 'dGhlIHNhbXBsZSBub25jZQ', 'dGhlIHNhbXBsZSBub25jZQ=!', '!!!!!!!!!!!!!!!!!!!!!!==']) {
      assert.equal((await rawWs(svc.port, id2, { key: bad })).status, 400, bad);
    }
    assert.equal((await rawWs(svc.port, id2, { key: null })).status, 400);
    const v8 = await rawWs(svc.port, id2, { headers: { 'Sec-WebSocket-Version': '8' } });
    assert.equal(v8.status, 426);
    assert.equal(v8.headers['sec-websocket-version'], '13');
    // the refused attempts did not use up the connection: a proper upgrade still works
    assert.equal((await rawWs(svc.port, id2)).status, 101);
    assert.ok(!svc.logs().includes('eyJ'), 'no token in the logs');
  } finally {
    assert.equal((await svc.stop()).code, 0);
  }
});

test('raw WebSocket: masked, fragmented and interleaved frames; ping → pong; close handshake', async () => {
  const svc = await startDevhost();
  try {
    const n = await negotiate(svc.port, 1);
    const ws = await rawWs(svc.port, `&id=${n.connectionToken}`);
    assert.equal(ws.status, 101);
    // the handshake split over three fragments, a ping in the middle, all in one write
    const hs = Buffer.from(`{"protocol":"json","version":1}${RS}`);
    ws.sock.write(Buffer.concat([
      frame(1, hs.subarray(0, 5), { fin: false }),
      frame(0, hs.subarray(5, 12), { fin: false }),
      frame(9, 'are you there'),
      frame(0, hs.subarray(12), { fin: true }),
    ]));
    await waitFor(() => ws.frames.some((f) => f.op === 10), 5000, 'pong');
    assert.equal(ws.frames.find((f) => f.op === 10).data.toString(), 'are you there');
    await waitFor(() => ws.texts() === `{}${RS}`, 5000, 'handshake reply in a text frame');
    assert.ok(await connected(svc.port, n.connectionId));
    // a client ping record byte by byte (many tiny writes), then a broadcast
    for (const b of frame(1, `{"type":6}${RS}`)) ws.sock.write(Buffer.from([b]));
    assert.equal((await broadcast(svc.port, 'newMessage', ['é → ✓'])).status, 202);
    await waitFor(() => ws.texts().includes('"arguments":["é → ✓"]'), 5000, 'broadcast');
    const f = ws.frames.find((x) => x.op === 1 && x.data.includes('newMessage'));
    assert.ok(f.fin);
    assert.equal(f.data.toString(), `{"type":1,"target":"newMessage","arguments":["é → ✓"]}${RS}`);
    // client close (code 1000) → the server answers with a close frame and lets go
    const before = ws.frames.length;
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    ws.sock.write(frame(8, code));
    await waitFor(() => ws.frames.length > before && closeFrame(ws), 5000, 'close reply');
    assert.equal(closeCode(ws), 1000);
    await waitFor(() => ws.ended(), 5000, 'socket closed by the server');
    await waitFor(async () => !(await connected(svc.port, n.connectionId)), 5000, 'connection gone');
  } finally {
    assert.equal((await svc.stop()).code, 0);
  }
});

test('raw WebSocket: protocol violations get the right close code and never hurt the server', async () => {
  const svc = await startDevhost();
  try {
    const cases = [
      ['unmasked frame', () => frame(1, `{"protocol":"json","version":1}${RS}`, { mask: false }), 1002],
      ['oversized frame (header announces 2 MiB)', () => frame(1, 'x'.repeat(100), { lenOverride: 2 << 20 }).subarray(0, 14), 1009],
      ['fragments adding up to more than 1 MiB', () => Buffer.concat([
        frame(1, Buffer.alloc(700000, 0x20), { fin: false }), frame(0, Buffer.alloc(700000, 0x20), { fin: true })]), 1009],
      ['binary message', () => frame(2, Buffer.from([1, 2, 3])), 1003],
      ['invalid UTF-8', () => frame(1, Buffer.from([0x7b, 0xc3, 0x28, 0x1e])), 1007],
      ['continuation without a start', () => frame(0, 'x'), 1002],
      ['reserved opcode', () => frame(3, 'x'), 1002],
      ['fragmented ping', () => frame(9, 'x', { fin: false }), 1002],
      ['RSV bit', () => { const b = frame(1, 'x'); b[0] |= 0x40; return b; }, 1002],
    ];
    for (const [name, make, want] of cases) {
      const n = await negotiate(svc.port, 1);
      const ws = await rawWs(svc.port, `&id=${n.connectionToken}`);
      assert.equal(ws.status, 101, name);
      ws.sock.write(make());
      await waitFor(() => closeFrame(ws), 5000, `close frame for ${name}`);
      assert.equal(closeCode(ws), want, name);
      ws.sock.end();
      await waitFor(() => ws.ended(), 5000, `socket end for ${name}`);
    }
    // the service is still fine: a handshake on a new socket works
    const n = await negotiate(svc.port, 1);
    const ws = await rawWs(svc.port, `&id=${n.connectionToken}`);
    ws.sock.write(frame(1, `{"protocol":"json","version":1}${RS}`));
    await waitFor(() => ws.texts() === `{}${RS}`, 5000, 'handshake after the bad clients');
    // a refused handshake: {"error":...} then a normal close
    const n2 = await negotiate(svc.port, 1);
    const ws2 = await rawWs(svc.port, `&id=${n2.connectionToken}`);
    ws2.sock.write(frame(1, `{"protocol":"messagepack","version":1}${RS}`));
    await waitFor(() => closeFrame(ws2), 5000, 'close after a refused handshake');
    assert.match(ws2.texts(), /^\{"error":"[^"]+"\}\x1e$/);
    assert.equal(closeCode(ws2), 1000);
    // SIGTERM: the close message, then a close frame, and exit 0
    const exit = await svc.stop('SIGTERM');
    assert.equal(exit.code, 0);
    assert.ok(ws.texts().endsWith(`{"type":7,"error":"Server is shutting down.","allowReconnect":true}${RS}`), ws.texts());
    assert.equal(closeCode(ws), 1000);
    await waitFor(() => ws.ended(), 5000, 'socket closed at shutdown');
  } finally {
    await svc.stop();
  }
});

test('a WebSocket client that stops reading is closed when its queue overflows; others get everything in order', { timeout: 180000 }, async () => {
  const svc = await startDevhost({ args: ['--max-queue-bytes', String(4 << 20)] });
  const app = await startNegotiateApp(() => svc.port);
  const good = makeClient(app.port, { transport: T.WebSockets });
  try {
    await good.conn.start();
    const n = await negotiate(svc.port, 1);
    const stuck = await rawWs(svc.port, `&id=${n.connectionToken}`, { read: false });
    assert.equal(stuck.status, 101);
    stuck.sock.write(frame(1, `{"protocol":"json","version":1}${RS}`));
    await waitFor(() => connected(svc.port, n.connectionId), 5000, 'stuck client connected');
    const payload = 'x'.repeat(60000);
    const N = 500; // 30 MB: far more than socket buffers plus the 4 MiB bound
    for (let i = 0; i < N; i++) assert.equal((await broadcast(svc.port, 'newMessage', [i, payload])).status, 202);
    await waitFor(() => good.got.length === N, 90000, 'the good client to receive every message');
    assert.deepEqual(good.got.map((m) => m[0]), [...Array(N).keys()]);
    await waitFor(() => /fell behind/.test(svc.logs()), 5000, 'a log line about the slow client');
    await waitFor(async () => !(await connected(svc.port, n.connectionId)), 10000, 'slow client removed');
    await waitFor(() => { stuck.sock.resume(); return stuck.ended(); }, 10000, 'the stuck socket to be closed');
  } finally {
    await good.conn.stop();
    await app.close();
    assert.equal((await svc.stop()).code, 0);
  }
});
