// devhost's IoT Hub MQTT endpoint, protocol level: raw MQTT over TLS against
// tests/tools/mqtt_testhub (the real server with an in-memory backend). CONNECT and every
// CONNACK refusal, telemetry with system/application properties, PUBACK only once the backend
// reports the message durable and in arrival order, failures closing without PUBACK,
// SUBSCRIBE/UNSUBSCRIBE/PINGREQ/DISCONNECT, keep-alive and connect timeouts, one connection per
// device, Will and retain, size limits, malformed and fragmented packets, and that one bad
// connection never disturbs another.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { waitFor } from './lib/handler.mjs';
import {
  startTestHub, rawClient, connectPacket, connected, deviceKey, sas, username, mqttPacket, HUB_HOST,
} from './lib/mqtt.mjs';

const keys = { dev1: deviceKey(), dev2: deviceKey(), 'dev:3': deviceKey() };
let hub;

before(async () => {
  hub = await startTestHub({ devices: keys });
});
after(async () => {
  const r = await hub.stop();
  assert.equal(r.code, 0, `mqtt_testhub exit: ${JSON.stringify(r)}\n${hub.err()}`);
});

const publish = (topic, payload, qos = 1, messageId = 1, extra = {}) =>
  ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, messageId, retain: false, dup: false, ...extra });
const newMessages = (from) => hub.messages().filter((m) => m.seq > from);
const lastSeq = () => hub.messages().at(-1)?.seq ?? 0;
const body = (m) => Buffer.from(m.body, 'base64').toString();

async function refusedWith(packet, code) {
  const c = await rawClient(hub.port, hub.caPem);
  c.send(packet);
  const ack = await c.waitPacket('connack');
  assert.equal(ack.returnCode, code);
  await c.closed; // refusals close the connection
}

test('CONNECT accepted: CONNACK 0 without session present; PINGREQ, SUBSCRIBE, UNSUBSCRIBE answered', async () => {
  const c = await rawClient(hub.port, hub.caPem);
  c.send(connectPacket('dev1', keys.dev1, { clean: false }));
  const ack = await c.waitPacket('connack');
  assert.equal(ack.returnCode, 0);
  assert.equal(ack.sessionPresent, false);
  c.send({ cmd: 'pingreq' });
  await c.waitPacket('pingresp');
  c.send({
    cmd: 'subscribe', messageId: 9, subscriptions: [
      { topic: 'devices/dev1/messages/devicebound/#', qos: 1 },
      { topic: '$iothub/twin/res/#', qos: 0 },
      { topic: '$iothub/methods/POST/#', qos: 2 },
      { topic: '$iothub/twin/PATCH/properties/desired/#', qos: 1 },
      { topic: 'devices/dev2/messages/devicebound/#', qos: 1 },
      { topic: '#', qos: 0 },
    ],
  });
  const sub = await c.waitPacket('suback');
  assert.equal(sub.messageId, 9);
  assert.deepEqual(sub.granted, [1, 0, 1, 1, 128, 128]);
  c.send({ cmd: 'unsubscribe', messageId: 10, unsubscriptions: ['$iothub/twin/res/#'] });
  assert.equal((await c.waitPacket('unsuback')).messageId, 10);
  c.send({ cmd: 'disconnect' });
  await c.closed;
});

test('CONNECT refusals: CONNACK 0x01..0x05 as IoT Hub answers them, then the connection closes', async () => {
  await refusedWith(connectPacket('dev1', keys.dev1, { protocolVersion: 3, protocolId: 'MQIsdp' }), 1);
  await refusedWith(connectPacket('a/b', keys.dev1, { username: username('a/b') }), 2);
  await refusedWith(connectPacket('', keys.dev1, { clientId: '', username: username('x') }), 2);
  // malformed: no password, not a token, wrong hub, user name for another device
  await refusedWith(connectPacket('dev1', keys.dev1, { password: undefined }), 4);
  await refusedWith(connectPacket('dev1', keys.dev1, { username: username('dev1', 'other.azure-devices.net') }), 4);
  await refusedWith(connectPacket('dev1', keys.dev1, { username: username('dev2') }), 4);
  await refusedWith(connectPacket('dev1', keys.dev1, { password: Buffer.from('not a token') }), 4);
  // not authorised: wrong key, expired token, unknown device, a token for another device, a module
  await refusedWith(connectPacket('dev1', keys.dev1, { password: Buffer.from(sas('dev1', keys.dev2)) }), 5);
  await refusedWith(connectPacket('dev1', keys.dev1, { password: Buffer.from(sas('dev1', keys.dev1, -400)) }), 5);
  await refusedWith(connectPacket('ghost', keys.dev1), 5);
  await refusedWith(connectPacket('dev1', keys.dev2, { password: Buffer.from(sas('dev2', keys.dev2)) }), 5);
  await refusedWith(connectPacket('dev1', keys.dev1, { username: `${HUB_HOST}/dev1/mod/?api-version=2021-04-12` }), 5);
  const st = await hub.stats();
  assert.ok(st.refused >= 12, JSON.stringify(st));
});

test('a token expired less than 5 minutes ago is accepted (IoT Hub\'s clock-skew allowance)', async () => {
  const c = await connected(hub, 'dev1', keys.dev1, { password: Buffer.from(sas('dev1', keys.dev1, -10)) });
  c.send({ cmd: 'disconnect' });
  await c.closed;
});

test('user name forms: the docs, the web simulator (no "?") and extra query items are accepted; host case-insensitive', async () => {
  for (const u of [
    `${HUB_HOST}/dev1/?api-version=2021-04-12`,
    `${HUB_HOST}/dev1/api-version=2016-11-14&DeviceClientType=simulator%2F1.0`,
    `${HUB_HOST.toUpperCase()}/dev1/?api-version=2021-04-12&DeviceClientType=x&model-id=dtmi%3Ax%3B1`,
  ]) {
    const c = await connected(hub, 'dev1', keys.dev1, { username: u });
    c.send({ cmd: 'disconnect' });
    await c.closed;
  }
});

test('telemetry: topic property bag → system and application properties; the body as sent; QoS 0 and 1', async () => {
  const from = lastSeq();
  const c = await connected(hub, 'dev1', keys.dev1);
  const topic = 'devices/dev1/messages/events/%24.mid=msg-1&%24.cid=corr%2F1&%24.ct=application%2Fjson&%24.ce=utf-8'
    + '&temperatureAlert=true&caf%C3%A9=x%20y&%24.uid=user%201&%24.to=ignored';
  c.send(publish(topic, '{"temperature":31.5}', 1, 77));
  assert.equal((await c.waitPacket('puback')).messageId, 77);
  c.send(publish('devices/dev1/messages/events/', 'plain', 0));
  await waitFor(() => newMessages(from).length === 2, { what: 'two messages' });
  const [m1, m2] = newMessages(from);
  assert.equal(m1.device, 'dev1');
  assert.equal(m1.qos, 1);
  assert.equal(m1.messageId, 'msg-1');
  assert.equal(m1.correlationId, 'corr/1');
  assert.equal(m1.contentType, 'application/json');
  assert.equal(m1.contentEncoding, 'utf-8');
  assert.equal(m1.userId, 'user 1');
  assert.deepEqual(m1.properties, { temperatureAlert: 'true', 'café': 'x y' });
  assert.equal(body(m1), '{"temperature":31.5}');
  assert.equal(m2.qos, 0);
  assert.equal(m2.messageId, null);
  assert.deepEqual(m2.properties, {});
  assert.equal(body(m2), 'plain');
  // QoS 0 gets no PUBACK
  c.send({ cmd: 'pingreq' });
  await c.waitPacket('pingresp');
  assert.equal(c.packets.filter((p) => p.cmd === 'puback').length, 1);
  c.end();
});

test('PUBACK only once the backend reports the message durable, and in arrival order', async () => {
  const c = await connected(hub, 'dev2', keys.dev2);
  const from = lastSeq();
  await hub.cmd('hold');
  for (const id of [1, 2, 3]) c.send(publish('devices/dev2/messages/events/', `m${id}`, 1, id));
  await waitFor(() => newMessages(from).length === 3, { what: 'three messages at the backend' });
  const seqs = newMessages(from).map((m) => m.seq);
  // The backend has them but has not made them durable: no PUBACK may arrive. (A PINGREQ
  // round trip proves the server has processed everything sent before it.)
  c.send({ cmd: 'pingreq' });
  await c.waitPacket('pingresp');
  assert.equal(c.packets.filter((p) => p.cmd === 'puback').length, 0);
  // The third becomes durable first: its PUBACK waits for the first two.
  await hub.cmd(`complete ${seqs[2]}`);
  await hub.waitEvent((e) => e.event === 'completed' && e.seq === seqs[2]);
  c.send({ cmd: 'pingreq' });
  await waitFor(() => c.packets.filter((p) => p.cmd === 'pingresp').length === 2, { what: 'second PINGRESP' });
  assert.equal(c.packets.filter((p) => p.cmd === 'puback').length, 0);
  await hub.cmd(`complete ${seqs[0]}`);
  await c.waitPacket((p) => p.cmd === 'puback' && p.messageId === 1);
  await hub.cmd('release');
  await waitFor(() => c.packets.filter((p) => p.cmd === 'puback').length === 3, { what: 'three PUBACKs' });
  assert.deepEqual(c.packets.filter((p) => p.cmd === 'puback').map((p) => p.messageId), [1, 2, 3]);
  c.end();
});

test('a message the backend fails: no PUBACK for it, earlier ones acknowledged, connection closed', async () => {
  const c = await connected(hub, 'dev2', keys.dev2);
  const from = lastSeq();
  await hub.cmd('hold');
  c.send(publish('devices/dev2/messages/events/', 'ok', 1, 5));
  await waitFor(() => newMessages(from).length === 1, { what: 'first message' });
  const first = newMessages(from)[0].seq;
  await hub.cmd(`complete ${first}`);
  await c.waitPacket('puback');
  await hub.cmd('fail');
  c.send(publish('devices/dev2/messages/events/', 'lost', 1, 6));
  await hub.cmd('release');
  await c.closed;
  await hub.cmd('ok');
  assert.deepEqual(c.packets.filter((p) => p.cmd === 'puback').map((p) => p.messageId), [5]);
  // refused likewise
  const c2 = await connected(hub, 'dev2', keys.dev2);
  await hub.cmd('refuse');
  c2.send(publish('devices/dev2/messages/events/', 'too much', 1, 7));
  await c2.closed;
  await hub.cmd('ok');
  assert.equal(c2.packets.filter((p) => p.cmd === 'puback').length, 0);
});

test('forbidden publishes disconnect: another device\'s topic, twin/method topics, unknown topics, QoS 2', async () => {
  for (const p of [
    publish('devices/dev2/messages/events/', 'spoof'),
    publish('devices/dev1/modules/m/messages/events/', 'x'),
    publish('$iothub/twin/GET/?$rid=1', ''),
    publish('$iothub/methods/res/200/?$rid=1', '{}'),
    publish('devices/dev1/messages/events', 'no trailing slash'),
    publish('telemetry', 'x'),
    publish('devices/dev1/messages/events/', 'qos2', 2),
    publish('devices/dev1/messages/events/a=%zz', 'bad escape'),
  ]) {
    const from = lastSeq();
    const c = await connected(hub, 'dev1', keys.dev1);
    c.send(p);
    await c.closed;
    assert.equal(newMessages(from).length, 0, `stored from ${p.topic}`);
  }
});

test('size limit: body + properties up to 256 KiB accepted; one byte more disconnects', async () => {
  const from = lastSeq();
  const c = await connected(hub, 'dev1', keys.dev1);
  const props = 'k=vv'; // 3 bytes counted
  c.send(publish(`devices/dev1/messages/events/${props}`, 'a'.repeat(262144 - 3), 1, 1));
  await c.waitPacket('puback');
  assert.equal(newMessages(from)[0].size, 262144);
  c.send(publish(`devices/dev1/messages/events/${props}`, 'a'.repeat(262144 - 2), 1, 2));
  await c.closed;
  assert.equal(newMessages(from).length, 1);
});

test('retain flag becomes the mqtt-retain property; the Will is sent when a device vanishes, not after DISCONNECT', async () => {
  const from = lastSeq();
  const c = await connected(hub, 'dev1', keys.dev1);
  c.send(publish('devices/dev1/messages/events/a=1', 'r', 1, 3, { retain: true }));
  await c.waitPacket('puback');
  assert.deepEqual(newMessages(from)[0].properties, { a: '1', 'mqtt-retain': 'true' });
  c.end();

  const will = { topic: 'devices/dev1/messages/events/reason=gone', payload: Buffer.from('bye'), qos: 1, retain: false };
  const w1 = await connected(hub, 'dev1', keys.dev1, { will });
  w1.send({ cmd: 'disconnect' });
  await w1.closed;
  const w2 = await connected(hub, 'dev1', keys.dev1, { will });
  w2.end(); // vanishes without DISCONNECT
  const wm = await hub.waitEvent((e) => e.event === 'message' && e.will && e.seq > from, 'Will message');
  assert.equal(wm.device, 'dev1');
  assert.equal(body(wm), 'bye');
  assert.deepEqual(wm.properties, { reason: 'gone', 'iothub-MessageType': 'Will' });
  assert.equal(hub.messages().filter((m) => m.will && m.seq > from).length, 1);
  // a Will to another device's topic is refused at CONNECT
  await refusedWith(connectPacket('dev1', keys.dev1, { will: { ...will, topic: 'devices/dev2/messages/events/' } }), 5);
});

test('one connection per device: a new connection replaces the old; a kicked device is disconnected', async () => {
  const a = await connected(hub, 'dev:3', keys['dev:3']);
  const b = await connected(hub, 'dev:3', keys['dev:3']);
  await a.closed;
  assert.equal(b.isClosed(), false);
  b.send({ cmd: 'pingreq' });
  await b.waitPacket('pingresp');
  await hub.cmd('kick dev:3');
  await b.closed;
});

test('keep-alive: closed after 1.5 × keep-alive of silence; PINGREQs keep it open', async () => {
  const idle = await connected(hub, 'dev1', keys.dev1, { keepalive: 1 });
  const t0 = Date.now();
  const pinged = await connected(hub, 'dev2', keys.dev2, { keepalive: 1 });
  const timer = setInterval(() => pinged.send({ cmd: 'pingreq' }), 400);
  await idle.closed;
  const waited = Date.now() - t0;
  assert.ok(waited >= 1400 && waited < 4000, `closed after ${waited} ms`);
  await new Promise((r) => setTimeout(r, 1500)); // the pinged one outlives 1.5 s of keep-alive
  clearInterval(timer);
  assert.equal(pinged.isClosed(), false);
  pinged.end();
});

test('connect timeout: a TLS connection that never sends CONNECT, and a TCP one that never handshakes, are closed', async () => {
  // Its own server with a short timeout (under valgrind a TLS handshake alone can take a second).
  const ms = process.env.ENVIROMON_WRAPPER ? 5000 : 1000;
  const h = await startTestHub({ devices: keys, args: ['--connect-timeout-ms', String(ms)] });
  try {
    const t0 = Date.now();
    const c = await rawClient(h.port, h.caPem);
    const sock = net.connect(h.port, '127.0.0.1');
    const tcpClosed = new Promise((r) => sock.on('close', r));
    sock.on('error', () => {});
    await c.closed;
    await tcpClosed;
    assert.ok(Date.now() - t0 >= ms - 100, `closed before the ${ms} ms timeout`);
    assert.match(h.out(), /closed: no CONNECT within/);
  } finally {
    assert.equal((await h.stop()).code, 0);
  }
});

test('malformed packets close only their own connection', async () => {
  const bystander = await connected(hub, 'dev2', keys.dev2);
  const bad = [
    Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),         // Remaining Length of 5 bytes
    Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]),               // 256 MiB announced
    Buffer.from([0x36, 0x05, 0x00, 0x01, 0x74, 0x00, 0x01]),   // QoS 3
    Buffer.from([0xc1, 0x00]),                                 // PINGREQ with flags
    Buffer.from([0xf0, 0x00]),                                 // reserved type 15
    Buffer.from([0x82, 0x02, 0x00, 0x01]),                     // SUBSCRIBE without filters
    Buffer.from([0x30, 0x05, 0x00, 0x03, 0x61, 0x2f, 0x2b]),   // wildcard in a topic name
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'dev1', keepalive: 0, clean: true }), // second CONNECT
    mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }), // a server-only packet
    mqttPacket.generate({ cmd: 'pubrel', messageId: 1 }),                          // QoS 2 flow
  ];
  for (const b of bad) {
    const c = await connected(hub, 'dev1', keys.dev1);
    c.send(b);
    await c.closed;
  }
  // before CONNECT: any packet other than CONNECT, or garbage
  for (const b of [mqttPacket.generate({ cmd: 'pingreq' }), Buffer.from('GET / HTTP/1.1\r\n\r\n')]) {
    const c = await rawClient(hub.port, hub.caPem);
    c.send(b);
    await c.closed;
    assert.equal(c.packets.length, 0);
  }
  bystander.send({ cmd: 'pingreq' });
  await bystander.waitPacket('pingresp');
  assert.equal(bystander.isClosed(), false);
  bystander.end();
  const st = await hub.stats();
  assert.ok(st.protocolErrors >= bad.length + 2, JSON.stringify(st));
});

test('fragmented and coalesced packets: CONNECT byte by byte, then many PUBLISHes in one write', async () => {
  const from = lastSeq();
  const c = await rawClient(hub.port, hub.caPem);
  const conn = mqttPacket.generate(connectPacket('dev1', keys.dev1));
  for (const byte of conn) {
    c.sock.write(Buffer.from([byte]));
    await new Promise((r) => setImmediate(r));
  }
  assert.equal((await c.waitPacket('connack')).returnCode, 0);
  const many = Buffer.concat(Array.from({ length: 50 }, (_, i) =>
    mqttPacket.generate(publish(`devices/dev1/messages/events/i=${i}`, `body-${i}`, 1, i + 1))));
  // and split that burst at awkward places
  c.sock.write(many.subarray(0, 7));
  c.sock.write(many.subarray(7, 1000));
  c.sock.write(many.subarray(1000));
  await waitFor(() => c.packets.filter((p) => p.cmd === 'puback').length === 50, { what: '50 PUBACKs' });
  assert.deepEqual(c.packets.filter((p) => p.cmd === 'puback').map((p) => p.messageId), Array.from({ length: 50 }, (_, i) => i + 1));
  assert.deepEqual(newMessages(from).map((m) => m.properties.i), Array.from({ length: 50 }, (_, i) => String(i)));
  c.end();
});

test('back-pressure: a device with more unacknowledged messages than the bound is not read until they settle', async () => {
  const small = await startTestHub({ devices: { d: keys.dev1 }, args: ['--max-inflight', '4'] });
  try {
    const c = await connected(small, 'd', keys.dev1);
    await small.cmd('hold');
    for (let i = 1; i <= 12; i++) c.send(publish('devices/d/messages/events/', `m${i}`, 1, i));
    await waitFor(() => small.messages().length === 4, { what: '4 messages' });
    await new Promise((r) => setTimeout(r, 200)); // nothing more is read while 4 are in flight
    assert.equal(small.messages().length, 4);
    await small.cmd('release');
    await waitFor(() => c.packets.filter((p) => p.cmd === 'puback').length === 12, { what: '12 PUBACKs' });
    assert.deepEqual(c.packets.filter((p) => p.cmd === 'puback').map((p) => p.messageId), Array.from({ length: 12 }, (_, i) => i + 1));
    assert.equal(small.messages().length, 12);
    c.end();
  } finally {
    assert.equal((await small.stop()).code, 0);
  }
});

test('SAS token expiry closes the session (SDKs reconnect with a new token)', async () => {
  const strict = await startTestHub({ devices: { d: keys.dev1 }, args: ['--skew-s', '0'] });
  try {
    const t0 = Date.now();
    const c = await connected(strict, 'd', keys.dev1, { password: Buffer.from(sas('d', keys.dev1, 3)), keepalive: 0 });
    await c.closed; // keep-alive 0: nothing but the token's expiry closes it
    const waited = Date.now() - t0;
    assert.ok(waited >= 1900 && waited < 6000, `closed after ${waited} ms`);
    assert.match(strict.out(), /SAS token expired/);
  } finally {
    assert.equal((await strict.stop()).code, 0);
  }
});

test('graceful stop: PUBACKs of messages that become durable during the stop still reach the device', async () => {
  const h = await startTestHub({ devices: { d: keys.dev1 } });
  const c = await connected(h, 'd', keys.dev1);
  await h.cmd('hold');
  c.send(publish('devices/d/messages/events/', 'late', 1, 42));
  await waitFor(() => h.messages().length === 1, { what: 'the message' });
  const exit = h.stop(); // the tool releases held completions on SIGTERM
  await c.closed;
  assert.deepEqual(c.packets.filter((p) => p.cmd === 'puback').map((p) => p.messageId), [42]);
  assert.equal((await exit).code, 0);
});
