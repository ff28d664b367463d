// devhost's IoT Hub MQTT endpoint with independent peers: Debian's mosquitto clients and
// Microsoft's azure-iot-device + azure-iot-device-mqtt, pointed at it exactly as docs/mqtt.md
// says (GatewayHostName, the local CA through the `ca` option or NODE_EXTRA_CA_CERTS,
// mosquitto's --cafile). The server runs with an in-memory backend (tests/tools/mqtt_testhub).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { waitFor } from './lib/handler.mjs';
import { runFile, spawnTied } from './lib/proc.mjs';
import { startTestHub, deviceKey, sas, username, HUB_HOST } from './lib/mqtt.mjs';

const require = createRequire(import.meta.url);
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const keys = { sdk1: deviceKey(), sdk2: deviceKey(), mosq: deviceKey() };
let hub;

before(async () => { hub = await startTestHub({ devices: keys, args: ['--ack-delay-ms', '5'] }); });
after(async () => {
  const r = await hub.stop();
  assert.equal(r.code, 0, hub.err());
});

const connectionString = (id) =>
  `HostName=${HUB_HOST};DeviceId=${id};SharedAccessKey=${keys[id]};GatewayHostName=localhost:${hub.port}`;

const mosqArgs = (id, password, extra = []) => [
  '-h', 'localhost', '-p', String(hub.port), '--cafile', hub.ca, '-i', id,
  '-u', username(id), '-P', password, '-V', 'mqttv311', ...extra];

async function sdkClient(id) {
  const client = Client.fromConnectionString(connectionString(id), Mqtt);
  await client.setOptions({ ca: hub.caPem }); // asynchronous: open only once it is applied
  await client.open();
  return client;
}

test('mosquitto_pub with --cafile, the user name and a SAS password publishes at QoS 1 (and QoS 0)', async () => {
  const before1 = hub.messages().length;
  const r = await runFile('mosquitto_pub', mosqArgs('mosq', sas('mosq', keys.mosq), [
    '-t', 'devices/mosq/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&temperatureAlert=true',
    '-m', '{"temperature":33}', '-q', '1', '-d']));
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /received PUBACK/);
  const r0 = await runFile('mosquitto_pub', mosqArgs('mosq', sas('mosq', keys.mosq), [
    '-h', '127.0.0.1', '-t', 'devices/mosq/messages/events/', '-m', 'q0', '-q', '0']));
  assert.equal(r0.code, 0, r0.stderr);
  await waitFor(() => hub.messages().length === before1 + 2, { what: 'two messages' });
  const [m, m0] = hub.messages().slice(before1);
  assert.equal(m.device, 'mosq');
  assert.equal(m.contentType, 'application/json');
  assert.equal(m.contentEncoding, 'utf-8');
  assert.deepEqual(m.properties, { temperatureAlert: 'true' });
  assert.equal(Buffer.from(m.body, 'base64').toString(), '{"temperature":33}');
  assert.equal(Buffer.from(m0.body, 'base64').toString(), 'q0');
});

test('mosquitto_pub: a wrong password gets CONNACK refused; another device\'s topic disconnects; no CA fails TLS', async () => {
  const n = hub.messages().length;
  const bad = await runFile('mosquitto_pub', mosqArgs('mosq', sas('mosq', keys.sdk1), ['-t', 'devices/mosq/messages/events/', '-m', 'x', '-q', '1']));
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /bad user name or password|not authori[sz]ed/i);
  const other = await runFile('mosquitto_pub', mosqArgs('mosq', sas('mosq', keys.mosq), ['-t', 'devices/sdk1/messages/events/', '-m', 'spoof', '-q', '1']));
  assert.notEqual(other.code, 0);
  assert.match(other.stderr, /connection was lost/i);
  const noCa = await runFile('mosquitto_pub', ['-h', 'localhost', '-p', String(hub.port), '--capath', '/nonexistent-ca-dir',
    '-i', 'mosq', '-u', username('mosq'), '-P', sas('mosq', keys.mosq), '-t', 'devices/mosq/messages/events/', '-m', 'x']);
  assert.notEqual(noCa.code, 0);
  assert.equal(hub.messages().length, n);
  await waitFor(() => /TLS handshake with .* failed: .*the client does not trust devhost's CA: give it .*ca\.pem/.test(hub.out()), { what: 'TLS failure logged with the CA to give' });
});

test('mosquitto_sub: its own devicebound and twin filters are granted, another device\'s refused (0x80)', async () => {
  const r = await runFile('mosquitto_sub', mosqArgs('mosq', sas('mosq', keys.mosq), [
    '-t', 'devices/mosq/messages/devicebound/#', '-t', '$iothub/twin/res/#', '-t', 'devices/sdk1/messages/devicebound/#',
    '-q', '1', '-d', '-W', '1']));
  // -W 1: exits after 1 s without a message (nothing is ever sent to devices)
  assert.match(r.stdout, /Subscribed \(mid: \d+\): 1, 1, 128/);
});

test('Microsoft SDK: 100 sendEvent with a temperatureAlert property over GatewayHostName + the local CA', async () => {
  const from = hub.messages().at(-1)?.seq ?? 0;
  const client = await sdkClient('sdk1');
  for (let i = 1; i <= 100; i++) {
    const msg = new Message(JSON.stringify({ messageId: i, deviceId: 'Raspberry Pi Web Client', temperature: 20 + (i % 15), humidity: 70 }));
    msg.properties.add('temperatureAlert', String(20 + (i % 15) > 30));
    msg.messageId = `sdk1-${i}`;
    await client.sendEvent(msg);
  }
  await client.close();
  const got = hub.messages().filter((m) => m.seq > from && m.device === 'sdk1');
  assert.equal(got.length, 100);
  assert.deepEqual(got.map((m) => m.messageId), Array.from({ length: 100 }, (_, i) => `sdk1-${i + 1}`));
  for (const m of got) {
    const b = JSON.parse(Buffer.from(m.body, 'base64').toString());
    assert.equal(m.properties.temperatureAlert, String(b.temperature > 30));
    assert.equal(m.qos, 1);
  }
  assert.match(hub.out(), /device sdk1 connected from .* \(keep-alive 180s, clean session 0\)/);
});

test('Microsoft SDK: sendEvent resolves only once the message is durable', async () => {
  const client = await sdkClient('sdk2');
  await hub.cmd('hold');
  let settled = false;
  const p = client.sendEvent(new Message('held')).then(() => { settled = true; });
  await hub.waitEvent((e) => e.event === 'message' && e.device === 'sdk2' && Buffer.from(e.body, 'base64').toString() === 'held');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(settled, false, 'sendEvent resolved before the message was durable');
  await hub.cmd('release');
  await p;
  assert.equal(settled, true);
  await client.close();
});

test('Microsoft SDK: a message that was not stored is re-sent after the SDK reconnects; a kicked client reconnects', async () => {
  const client = await sdkClient('sdk2');
  const from = hub.messages().at(-1)?.seq ?? 0;
  await hub.cmd('fail');
  const p = client.sendEvent(new Message('retry me'));
  await hub.waitEvent((e) => e.event === 'completed' && e.seq > from && e.status === 'failed', 'the failed completion');
  await hub.cmd('ok');
  await p; // the SDK's retry policy reconnects and publishes it again
  const copies = hub.messages().filter((m) => m.seq > from && Buffer.from(m.body, 'base64').toString() === 'retry me');
  assert.equal(copies.length, 2);
  await hub.cmd('kick sdk2');
  await waitFor(() => /device sdk2 .* its registration changed/.test(hub.out()), { what: 'the kick' });
  await client.sendEvent(new Message('after kick'));
  assert.ok(hub.messages().some((m) => m.seq > from && Buffer.from(m.body, 'base64').toString() === 'after kick'));
  await client.close();
});

test('Microsoft SDK: a wrong key is refused (UnauthorizedError); the CA from NODE_EXTRA_CA_CERTS works too', async () => {
  const bad = Client.fromConnectionString(connectionString('sdk1').replace(keys.sdk1, keys.sdk2), Mqtt);
  await bad.setOptions({ ca: hub.caPem });
  await assert.rejects(bad.open(), (e) => e.constructor.name === 'UnauthorizedError');

  const script = `
    const { Client, Message } = require('azure-iot-device');
    const { Mqtt } = require('azure-iot-device-mqtt');
    const c = Client.fromConnectionString(process.env.CS, Mqtt);
    c.open().then(() => c.sendEvent(new Message('extra-ca'))).then(() => c.close()).then(() => process.exit(0),
      (e) => { console.error(e); process.exit(1); });`;
  const child = spawnTied(process.execPath, ['-e', script], {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: hub.ca, CS: connectionString('sdk1'), NODE_PATH: `${process.cwd()}/node_modules` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((r) => child.on('exit', r));
  assert.equal(code, 0, err);
  assert.ok(hub.messages().some((m) => m.device === 'sdk1' && Buffer.from(m.body, 'base64').toString() === 'extra-ca'));
});
