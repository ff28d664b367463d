// Issue 9 end to end through `devhost start`: devices send telemetry to the local IoT Hub on
// devhost's port, EventTrigger (the real ./handler) folds it into DeviceState in Azurite and
// pushes it to an @microsoft/signalr client that negotiated through devhost. Tokens are made by
// Microsoft's azure-iot-common and the C SDK's way; IoT Hub's refusals store nothing; the summary
// line carries the hub's counters. Faults (SIGKILLs, the wire form) are devhost_hub_faults.test.mjs.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { cToken, nodeToken, sendEvent } from './lib/iothub.mjs';
import { useStack, num, waitFor } from './lib/stack.mjs';

const stack = useStack({ tag: 'iothub' });
let s;
let client;
before(async () => { ({ s, client } = await stack.ready); });

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

test('refused through devhost: unknown device, wrong key, expired token, another device\'s token or path, over 256 KiB; nothing stored', async () => {
  const a = s.addDevice('refuse-a');
  const b = s.addDevice('refuse-b');
  const body = JSON.stringify({ temperature: 99, humidity: 99 });
  const refusals = [
    ['unknown device', 'ghost', nodeToken('ghost', a.key), body, 404, 'DeviceNotFound'],
    ['wrong key', a.id, nodeToken(a.id, b.key), body, 401, 'IotHubUnauthorizedAccess'],
    ['expired token', a.id, cToken(a.id, a.key, -400), body, 401, 'IotHubUnauthorizedAccess'],
    ['another device\'s token', a.id, nodeToken(b.id, b.key), body, 401, 'IotHubUnauthorizedAccess'],
    ['a device posting to another device\'s path', b.id, nodeToken(a.id, a.key), body, 401, 'IotHubUnauthorizedAccess'],
    ['256 KiB + 1', a.id, nodeToken(a.id, a.key), `{"temperature":99,"pad":"${'x'.repeat(256 * 1024)}"}`, 413, 'MessageTooLarge'],
  ];
  for (const [what, id, tok, b2, status, code] of refusals) {
    const r = await sendEvent(s.dh.url, id, tok, b2);
    assert.equal(r.status, status, `${what}: ${r.status} ${r.body}`);
    assert.equal(r.headers.get('iothub-errorcode'), code, what);
    assert.match(JSON.parse(r.body).Message, new RegExp(`^ErrorCode:${code};`), what);
  }
  // the next good message of each is the first one counted
  for (const d of [a, b]) {
    const r = await sendEvent(s.dh.url, d.id, cToken(d.id, d.key), JSON.stringify({ temperature: 20, humidity: 50 }));
    assert.equal(r.status, 204, r.body);
  }
  for (const d of [a, b]) {
    const row = await s.waitRow(d.id, (x) => num(x.Count) >= 1);
    assert.equal(num(row.Count), 1);
    assert.equal(row.Celsius, 20);
  }
  assert.equal((await s.rows()).ghost, undefined);
});

test('the 10 s summary line carries the hub\'s counters: received, delivered, retries, failed, lag per partition', async () => {
  // 2 + 2 messages stored by the tests above, all delivered; nothing waits in any partition
  await s.dh.waitLog(/iothub: received=4 delivered=4 retries=0 failed=0 lag=0,0,0,0\b/, 25000);
});
