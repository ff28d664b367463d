// Issue 10 end to end through `devhost start`: Microsoft's azure-iot-device SDK over MQTT (with
// GatewayHostName and devhost's local CA) and mosquitto clients send to the local IoT Hub;
// EventTrigger (the real ./handler, behind a tee that records what devhost sends it) folds the
// messages into DeviceState in Azurite and pushes them to an @microsoft/signalr client.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import { useStack, num, waitFor } from './lib/stack.mjs';
import { makeApp, startDevhost } from './lib/devhost.mjs';
import { addDevice, cToken, deviceCli, nodeToken } from './lib/iothub.mjs';
import { rawClient, connectPacket, username } from './lib/mqtt.mjs';
import { runFile } from './lib/proc.mjs';

const require = createRequire(import.meta.url);
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const stack = useStack({ tag: 'mqtt', handler: 'tee' });
let s;
let client;
let mqttPort;
let caPem;

before(async () => {
  ({ s, client } = await stack.ready);
  mqttPort = await s.dh.mqttPort();
  caPem = fs.readFileSync(s.dh.ca, 'utf8');
});

/** An SDK client for a registered device, through devhost's MQTT endpoint. */
async function sdkClient(dev) {
  const c = Client.fromConnectionString(`${dev.connectionString};GatewayHostName=localhost:${mqttPort}`, Mqtt);
  await c.setOptions({ ca: caPem });
  await c.open();
  return c;
}

/** Every event EventTrigger received (from the tee's records): [{body, properties, system}]. */
function received() {
  const out = [];
  for (const r of s.app.tee()) {
    const bodies = JSON.parse(r.body.Data.events);
    const props = JSON.parse(r.body.Metadata.PropertiesArray);
    const sys = JSON.parse(r.body.Metadata.SystemPropertiesArray);
    bodies.forEach((b, i) => out.push({ body: b, properties: props[i], system: sys[i] }));
  }
  return out;
}

test('Microsoft SDK over MQTT: 100 sendEvent with temperatureAlert → 100 counted, the property in what EventTrigger receives', async () => {
  const dev = s.addDevice('pi-sdk');
  const c = await sdkClient(dev);
  try {
    for (let i = 1; i <= 100; i++) {
      const temperature = 20 + (i % 13);
      const m = new Message(JSON.stringify({ messageId: i, deviceId: dev.id, temperature, humidity: 70 }));
      m.properties.add('temperatureAlert', String(temperature > 30));
      await c.sendEvent(m);
    }
  } finally {
    await c.close();
  }
  const row = await s.waitRow(dev.id, (r) => num(r.Count) === 100);
  assert.equal(num(row.InvalidCount), 0);
  const mine = received().filter((e) => e.system['iothub-connection-device-id'] === dev.id);
  assert.equal(mine.length, 100);
  for (const e of mine) {
    const b = JSON.parse(e.body);
    assert.deepEqual(e.properties, { temperatureAlert: String(b.temperature > 30) });
  }
  await waitFor(() => client.pushes.find((p) => p.deviceId === dev.id && p.count === 100),
    { timeoutMs: 15000, what: 'the push with count 100' });
});

test('the original simulator\'s loop over the SDK (its message shape, one every 2 s, the alert property): rows keyed by the authenticated id, SignalR pushes', async () => {
  const dev = s.addDevice('pi-sim-loop');
  const c = await sdkClient(dev);
  const N = 4;
  try {
    // src/data/sample.js of the Raspberry Pi web simulator, with the sensor's ranges
    let messageId = 0;
    await new Promise((resolve, reject) => {
      const sendMessage = () => {
        messageId++;
        const temperature = 20 + Math.random() * 12;
        const humidity = 60 + Math.random() * 20;
        const m = new Message(JSON.stringify({ messageId, deviceId: 'Raspberry Pi Web Client', temperature, humidity }));
        m.properties.add('temperatureAlert', (temperature > 30).toString());
        c.sendEvent(m).then(() => { if (messageId === N) { clearInterval(timer); resolve(); } }, (e) => { clearInterval(timer); reject(e); });
      };
      const timer = setInterval(sendMessage, 2000);
    });
  } finally {
    await c.close();
  }
  // the payload's deviceId is not trusted: the row belongs to the device that authenticated
  const row = await s.waitRow(dev.id, (r) => num(r.Count) === N);
  assert.equal(num(row.InvalidCount), 0);
  assert.equal((await s.rows())['Raspberry Pi Web Client'], undefined);
  await waitFor(() => client.pushes.find((p) => p.deviceId === dev.id && p.count === N),
    { timeoutMs: 15000, what: `the push with count ${N}` });
});

test('mosquitto_pub with --cafile and a C-SDK-style SAS publishes into DeviceState; a wrong password is refused; another device\'s topic disconnects, nothing stored', async () => {
  const dev = s.addDevice('mosq-dh');
  const victim = s.addDevice('mosq-victim');
  const args = (id, token, extra) => ['-h', 'localhost', '-p', String(mqttPort), '--cafile', s.dh.ca, '-V', 'mqttv311',
    '-i', id, '-u', username(id), '-P', token, '-q', '1', ...extra];
  const body = (t) => JSON.stringify({ temperature: t, humidity: 55 });
  const ok = await runFile('mosquitto_pub', args(dev.id, cToken(dev.id, dev.key), ['-t', `devices/${dev.id}/messages/events/src=mosq`, '-m', body(21.5)]));
  assert.equal(ok.code, 0, ok.stderr);
  const bad = await runFile('mosquitto_pub', args(dev.id, cToken(dev.id, victim.key), ['-t', `devices/${dev.id}/messages/events/`, '-m', body(99)]));
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /not authori[sz]ed/i);
  // connected as mosq-dh, publishing on mosq-victim's topic: the connection is closed, no PUBACK
  const spoof = await rawClient(mqttPort, caPem);
  spoof.send(connectPacket(dev.id, dev.key));
  await spoof.waitPacket((p) => p.cmd === 'connack' && p.returnCode === 0, 'CONNACK 0');
  spoof.send({ cmd: 'publish', topic: `devices/${victim.id}/messages/events/`, payload: Buffer.from(body(50)), qos: 1, messageId: 7 });
  await spoof.closed;
  assert.equal(spoof.packets.filter((p) => p.cmd === 'puback').length, 0);

  const row = await s.waitRow(dev.id, (r) => num(r.Count) >= 1);
  await waitFor(() => client.pushes.find((p) => p.deviceId === dev.id), { timeoutMs: 15000, what: 'the push for mosq-dh' });
  const mine = received().filter((e) => e.system['iothub-connection-device-id'] === dev.id);
  assert.deepEqual(mine.map((e) => e.properties), [{ src: 'mosq' }]);
  assert.equal(num(row.Count), 1);
  assert.equal(received().filter((e) => e.system['iothub-connection-device-id'] === victim.id).length, 0);
  assert.equal((await s.rows())[victim.id], undefined);
});

test('a registry change closes that device\'s MQTT session without traffic (regenerate-key, remove); other devices stay connected', async () => {
  const a = s.addDevice('rekey-a');
  const b = s.addDevice('rekey-b');
  const other = s.addDevice('rekey-other');
  const open = async (d) => {
    const c = await rawClient(mqttPort, caPem);
    c.send(connectPacket(d.id, d.key));
    await c.waitPacket((p) => p.cmd === 'connack' && p.returnCode === 0, `CONNACK 0 for ${d.id}`);
    return c;
  };
  const [ca, cb, co] = [await open(a), await open(b), await open(other)];
  try {
    assert.equal(deviceCli(['regenerate-key', a.id], s.data).status, 0);
    await waitFor(() => ca.isClosed(), { timeoutMs: 5000, what: `${a.id}'s session closed after regenerate-key` });
    assert.equal(deviceCli(['remove', b.id], s.data).status, 0);
    await waitFor(() => cb.isClosed(), { timeoutMs: 5000, what: `${b.id}'s session closed after remove` });
    // the untouched device still publishes on its session
    co.send({ cmd: 'publish', topic: `devices/${other.id}/messages/events/`, payload: Buffer.from('{"temperature":22,"humidity":50}'), qos: 1, messageId: 1 });
    await co.waitPacket((p) => p.cmd === 'puback' && p.messageId === 1, `PUBACK for ${other.id}`);
    assert.equal(co.isClosed(), false);
    // the old key no longer connects
    const again = await rawClient(mqttPort, caPem);
    again.send(connectPacket(a.id, a.key));
    const ack = await again.waitPacket('connack', 'CONNACK for the old key');
    assert.notEqual(ack.returnCode, 0);
    again.end();
  } finally {
    for (const c of [ca, cb, co]) c.end();
  }
  await s.waitRow(other.id, (r) => num(r.Count) === 1);
});

test('--tls: HTTPS on devhost\'s port with the certificate of the local CA (functions and the device API), no plain HTTP', async () => {
  const app = makeApp({ functions: { Hello: { bindings: [
    { type: 'httpTrigger', direction: 'in', name: 'req', authLevel: 'anonymous', methods: ['get'], route: 'hello' },
    { type: 'http', direction: 'out', name: 'res' }] } } });
  const dh = await startDevhost(app.root, { args: ['--tls', '--no-mqtt'] });
  try {
    await dh.waitLog(/serving .* on https:\/\/localhost:\d+/);
    const ca = fs.readFileSync(dh.ca);
    const hello = await httpsRequest(`https://localhost:${dh.port}/api/hello`, { ca });
    assert.equal(hello.status, 200);
    assert.equal(hello.body, 'ok');
    // the recorder saw the request as HTTPS (Data.req.Url)
    const inv = app.records().find((r) => r.event === 'invoke');
    assert.match(inv.body.Data.req.Url, /^https:\/\/localhost:\d+\/api\/hello$/);
    const dev = addDevice('tls-dev', dh.data);
    const sent = await httpsRequest(`https://localhost:${dh.port}/devices/tls-dev/messages/events?api-version=2021-04-12`,
      { ca, method: 'POST', headers: { Authorization: nodeToken(dev.id, dev.key) }, body: '{"temperature":20}' });
    assert.equal(sent.status, 204, sent.body);
    // an untrusted client and plain HTTP get nothing
    await assert.rejects(httpsRequest(`https://localhost:${dh.port}/api/hello`, {}), /self.signed|unable to (verify|get local issuer)/i);
    await assert.rejects(fetch(`http://127.0.0.1:${dh.port}/api/hello`));
  } finally {
    assert.equal((await dh.stop('SIGINT')).code, 0, dh.logs());
    app.cleanup();
  }
});

function httpsRequest(url, { ca, method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
