// Issue 9 end to end through `devhost start`: devices send telemetry to the local IoT Hub on
// devhost's port, EventTrigger (the real ./handler) folds it into DeviceState in Azurite and
// pushes it to an @microsoft/signalr client that negotiated through devhost. Tokens are made by
// Microsoft's azure-iot-common and the C SDK's way; refusals store nothing; the summary line
// carries the hub's counters.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cToken, nodeToken, sendEvent, dumpLog } from './lib/iothub.mjs';
import { startStack, signalrClient, num, waitFor } from './lib/stack.mjs';

let s;
let client;

before(async () => {
  s = await startStack({ tag: 'iothub' });
  client = await signalrClient(s.dh.url);
});

after(async () => {
  await client?.stop();
  const e = await s?.stop();
  assert.equal(e?.code, 0, s?.dh.logs());
  s?.cleanup();
});

test('a device message with an azure-iot-common token and one with a C SDK token: stored in DeviceState and pushed', async () => {
  const d = s.addDevice('sensor-1');
  const r1 = await sendEvent(s.dh.url, d.id, nodeToken(d.id, d.key),
    JSON.stringify({ deviceId: d.id, temperature: 21.5, humidity: 40, messageId: 1 }), { 'iothub-app-temperatureAlert': 'false' });
  assert.equal(r1.status, 204, r1.body);
  const r2 = await sendEvent(s.dh.url, d.id, cToken(d.id, d.key),
    JSON.stringify({ deviceId: d.id, temperature: 31.25, humidity: 45.5, pressure: 1012, messageId: 2 }),
    { 'iothub-messageid': 'c-sdk-2', 'iothub-app-temperatureAlert': 'true' });
  assert.equal(r2.status, 204, r2.body);
  const row = await s.waitRow(d.id, (r) => num(r.Count) === 2);
  assert.equal(row.Celsius, 31.25);
  assert.equal(row.Humidity, 45.5);
  assert.equal(row.hPa, 1012);
  assert.equal(num(row.InvalidCount), 0);
  // the push of the second message reaches the client that negotiated through devhost
  const push = await waitFor(() => client.pushes.find((p) => p.deviceId === d.id && p.count === 2),
    { timeoutMs: 15000, what: 'the newMessage push of sensor-1' });
  assert.equal(push.temperature, 31.25);
  assert.equal(push.humidity, 45.5);
  assert.equal(push.pressure, 1012);
  assert.equal(push.invalidCount, 0);
  assert.match(push.lastSeen, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
});
