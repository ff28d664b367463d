// simulator_mqtt.test.mjs — ./simulator over MQTT against devhost's real MQTT endpoint
// (tests/tools/mqtt_testhub, the endpoint alone, so that --skew-s can narrow it): into the real local IoT Hub
// (--iothub 1: PUBACK once durable, read back from the partition logs) 5 devices x 200
// messages stored exactly once; a wrong key refused with CONNACK 5; and, with the endpoint
// closing each connection the moment its token expires (--skew-s 0), a 30 s run with 10 s
// tokens renews in time and loses nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { addDevice, dumpLog } from './lib/iothub.mjs';
import { deviceKey, startTestHub, tmpDir, HUB_HOST } from './lib/mqtt.mjs';
import { runSimulator } from './lib/simulator.mjs';

test('--devices 5 over MQTT into the local IoT Hub: 5 x 200 stored exactly once, in order, with their properties', async () => {
  const data = tmpDir('sim-mqtt-');
  const hub = await startTestHub({ data, args: ['--iothub', '1'] });
  try {
    const r = await runSimulator(['--devices', '5', '--data', data, '--endpoint', `mqtts://localhost:${hub.port}`,
      '--count', '200', '--interval', '0.005', '--faulty', '0.02', '--seed', '8', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.transport, 'mqtt');
    assert.equal(r.json.acknowledged, 1000);
    assert.equal(r.json.failed, 0);
    const rows = dumpLog(data);
    assert.equal(rows.length, 1000);
    for (let i = 1; i <= 5; i++) {
      const id = `sim-${i}`;
      const mine = rows.filter((m) => m.deviceId === id);
      assert.equal(r.json.devices[id].acknowledged, 200);
      assert.deepEqual(mine.map((m) => m.messageId), Array.from({ length: 200 }, (_, k) => String(k + 1)));
      for (const m of mine) {
        const body = JSON.parse(m.body);
        assert.equal(String(body.messageId), m.messageId);
        const t = typeof body.temperature === 'number' ? body.temperature : null;
        assert.equal(m.properties.temperatureAlert, t !== null && t > 30 ? 'true' : 'false');
      }
    }
  } finally {
    await hub.stop();
    fs.rmSync(data, { recursive: true, force: true });
  }
});

test('a wrong key over MQTT: CONNACK refused for every message, the summary says so, exit status 1', async () => {
  const data = tmpDir('sim-mqtt-');
  const hub = await startTestHub({ data, args: ['--iothub', '1'] });
  try {
    const d = addDevice('mqtt-wrong', data);
    const bad = d.connectionString.replace(/SharedAccessKey=.*/, `SharedAccessKey=${deviceKey()}`);
    const r = await runSimulator(['--device', bad, '--endpoint', `mqtts://localhost:${hub.port}`, '--ca', hub.ca,
      '--count', '10', '--interval', '0.01', '--json']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.json.failed, 10);
    assert.deepEqual(r.json.lost, { 'CONNACK refused (5: not authorized)': 10 });
    assert.match(r.stderr, /LOST 10 messages: CONNACK refused \(5: not authorized\) ×10/);
    assert.equal(dumpLog(data).length, 0);
  } finally {
    await hub.stop();
    fs.rmSync(data, { recursive: true, force: true });
  }
});

test('token renewal over MQTT: 10 s tokens, an endpoint that drops expired connections at once, 30 s: nothing lost', async () => {
  const keys = { 'renew-1': deviceKey(), 'renew-2': deviceKey() };
  const hub = await startTestHub({ devices: keys, args: ['--skew-s', '0'] });
  try {
    const devices = Object.entries(keys).flatMap(([id, k]) => ['--device', `HostName=${HUB_HOST};DeviceId=${id};SharedAccessKey=${k}`]);
    const r = await runSimulator([...devices, '--endpoint', `mqtts://localhost:${hub.port}`, '--ca', hub.ca,
      '--duration', '30', '--interval', '0.1', '--token-ttl', '10', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json;
    assert.equal(j.failed, 0);
    assert.ok(j.sent >= 590, `sent ${j.sent}`);
    assert.equal(j.retries, 0, 'no connection was closed under a device with messages in flight');
    assert.ok(j.events['MQTT reconnect to renew the SAS token'] >= 6, JSON.stringify(j.events));
    assert.equal(Object.keys(j.events).filter((k) => k.startsWith('MQTT connection lost')).length, 0, JSON.stringify(j.events));
    const received = hub.messages();
    for (const id of Object.keys(keys)) {
      const ids = received.filter((m) => m.device === id).map((m) => Number(m.messageId));
      assert.deepEqual(ids, Array.from({ length: j.devices[id].sent }, (_, k) => k + 1), id);
    }
  } finally {
    await hub.stop();
  }
});
