// MQTT into the real local IoT Hub: tests/tools/mqtt_testhub --iothub 1 runs devhost's MQTT
// endpoint with src/devhost/mqtt/mqtt_hub_backend.c over a data folder's hub (registry from
// `devhost device add`, messages in its partition logs, read back with iothub_server --dump).
// Microsoft's SDK and mosquitto as peers; the SIGKILL test is issue 10's: 4 SDK clients sending
// 1,000 messages each at QoS 1 while the server is killed and restarted — every message whose
// sendEvent succeeded is stored, and the only extra copies are re-sends after a lost PUBACK.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { freePort, waitFor } from './lib/handler.mjs';
import { addDevice, cToken, deviceCli, dumpLog } from './lib/iothub.mjs';
import { startTestHub, tmpDir, username, connected, HUB_HOST } from './lib/mqtt.mjs';
import { runFile } from './lib/proc.mjs';

const require = createRequire(import.meta.url);
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

const startHub = (data, args = []) => startTestHub({ data, args: ['--iothub', '1', ...args] });

async function sdkClient(dev, hub) {
  const client = Client.fromConnectionString(`${dev.connectionString};GatewayHostName=localhost:${hub.port}`, Mqtt);
  await client.setOptions({ ca: hub.caPem });
  await client.open();
  return client;
}

test('Microsoft SDK → MQTT → local IoT Hub: 100 sendEvent with a temperatureAlert property, all in the partition log', async () => {
  const data = tmpDir();
  const dev = addDevice('pi-sim', data);
  const hub = await startHub(data);
  const client = await sdkClient(dev, hub);
  for (let i = 1; i <= 100; i++) {
    const temperature = 20 + (i % 13);
    const msg = new Message(JSON.stringify({ messageId: i, deviceId: 'Raspberry Pi Web Client', temperature, humidity: 70 }));
    msg.properties.add('temperatureAlert', String(temperature > 30));
    msg.messageId = `pi-sim-${i}`;
    await client.sendEvent(msg);
  }
  await client.close();
  assert.equal((await hub.stop()).code, 0, hub.err());
  const stored = dumpLog(data).filter((m) => m.deviceId === 'pi-sim');
  assert.equal(stored.length, 100);
  assert.deepEqual(stored.map((m) => m.messageId), Array.from({ length: 100 }, (_, i) => `pi-sim-${i + 1}`));
  for (const m of stored) {
    const b = JSON.parse(m.body);
    assert.deepEqual(m.properties, { temperatureAlert: String(b.temperature > 30) });
  }
});

test('mosquitto_pub with a C-SDK-style token into the local hub; wrong key and unknown device refused; a removed device loses its session', async () => {
  const data = tmpDir();
  const dev = addDevice('mosq-1', data);
  const other = addDevice('mosq-2', data);
  const hub = await startHub(data);
  try {
    const args = (id, token, extra = []) => ['-h', 'localhost', '-p', String(hub.port), '--cafile', hub.ca, '-V', 'mqttv311',
      '-i', id, '-u', username(id), '-P', token, '-q', '1', ...extra];
    const ok = await runFile('mosquitto_pub', args('mosq-1', cToken('mosq-1', dev.key), ['-t', 'devices/mosq-1/messages/events/a=1', '-m', 'hello']));
    assert.equal(ok.code, 0, ok.stderr);
    const bad = await runFile('mosquitto_pub', args('mosq-1', cToken('mosq-1', other.key), ['-t', 'devices/mosq-1/messages/events/', '-m', 'x']));
    assert.match(bad.stderr, /not authori[sz]ed/i);
    const ghost = await runFile('mosquitto_pub', args('ghost', cToken('ghost', dev.key), ['-t', 'devices/ghost/messages/events/', '-m', 'x']));
    assert.match(ghost.stderr, /not authori[sz]ed/i);

    // connected, then removed from the registry: its next message is refused and the
    // connection closed without PUBACK (the hub checks the device on every send)
    const c = await connected(hub, 'mosq-2', other.key, { password: Buffer.from(cToken('mosq-2', other.key)) });
    assert.equal(deviceCli(['remove', 'mosq-2'], data).status, 0);
    c.send({ cmd: 'publish', topic: 'devices/mosq-2/messages/events/', payload: Buffer.from('after removal'), qos: 1, messageId: 1 });
    await c.closed;
    assert.equal(c.packets.filter((p) => p.cmd === 'puback').length, 0);
  } finally {
    assert.equal((await hub.stop()).code, 0, hub.err());
  }
  const stored = dumpLog(data);
  assert.deepEqual(stored.map((m) => [m.deviceId, m.body, m.properties]),
    [['mosq-1', 'hello', { a: '1' }]]);
});

test('SIGKILL while 4 SDK clients send 1,000 messages each at QoS 1: every acknowledged message is stored', async () => {
  const data = tmpDir();
  const port = await freePort();
  const devs = [1, 2, 3, 4].map((i) => addDevice(`crash-${i}`, data));
  let hub = await startHub(data, ['--port', String(port)]);
  const clients = await Promise.all(devs.map((d) => sdkClient(d, hub)));
  const acked = devs.map(() => new Set());
  const PER = 1000;
  const WINDOW = 8; // sendEvents in flight per client
  let failed = 0;
  const sender = async (client, di) => {
    let next = 1;
    const worker = async () => {
      while (next <= PER) {
        const i = next++;
        const msg = new Message(JSON.stringify({ messageId: i, temperature: 21.5 }));
        msg.messageId = `${devs[di].id}-${i}`;
        try {
          await client.sendEvent(msg);
          acked[di].add(msg.messageId);
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, worker));
  };
  const sending = Promise.all(clients.map(sender));
  const total = () => acked.reduce((n, s) => n + s.size, 0);
  await waitFor(() => total() >= 1200, { timeoutMs: 120000, what: '1,200 acknowledged messages' });
  const killedAt = total();
  hub.proc.kill('SIGKILL');
  await hub.exited;
  hub = await startHub(data, ['--port', String(port)]); // the SDKs reconnect on their own
  await sending;
  await Promise.all(clients.map((c) => c.close()));
  assert.equal((await hub.stop()).code, 0, hub.err());

  assert.equal(failed, 0, 'a sendEvent failed for good');
  const stored = dumpLog(data);
  let duplicates = 0;
  for (const [di, d] of devs.entries()) {
    const ids = stored.filter((m) => m.deviceId === d.id).map((m) => m.messageId);
    const unique = new Set(ids);
    for (const id of acked[di]) assert.ok(unique.has(id), `${id} was acknowledged but is not stored`);
    for (const id of unique) assert.ok(id.startsWith(`${d.id}-`), `a stranger in ${d.id}'s messages: ${id}`);
    assert.equal(acked[di].size, PER);
    duplicates += ids.length - unique.size;
  }
  // Re-sends after a PUBACK lost in the crash are stored twice, as with IoT Hub; they can only
  // be messages that were in flight when the server died (at most WINDOW per client).
  assert.ok(duplicates <= devs.length * WINDOW, `${duplicates} duplicates`);
  console.log(`# SIGKILL after ${killedAt} acknowledged: ${stored.length} stored for ${devs.length * PER} sent, ${duplicates} re-sent after a lost PUBACK`);
});

test('connection string host and user name must name the same hub as the local one', async () => {
  const data = tmpDir();
  const dev = addDevice('named', data);
  const hub = await startHub(data);
  try {
    const client = Client.fromConnectionString(
      `${dev.connectionString.replace(HUB_HOST, 'someone-else.azure-devices.net')};GatewayHostName=localhost:${hub.port}`, Mqtt);
    await client.setOptions({ ca: hub.caPem });
    await assert.rejects(client.open(), (e) => e.constructor.name === 'UnauthorizedError');
    await waitFor(() => /names hub someone-else\.azure-devices\.net, this is enviromon\.azure-devices\.net/.test(hub.out()),
      { what: 'the refusal logged with both hub names' });
  } finally {
    assert.equal((await hub.stop()).code, 0, hub.err());
  }
});
