// simulator_devhost.test.mjs — issue 11's end-to-end checks: ./simulator against `devhost start`
// (the real ./handler, Azurite, the local IoT Hub on devhost's port and its MQTT endpoint).
// 5 devices x 200 messages over each transport at once, with faulty readings: devhost counts
// exactly 1,000 received per transport (its own counters, then its partition logs read back per
// device), and each device's Count + InvalidCount in DeviceState equals what the simulator's
// --json summary says was acknowledged for it (InvalidCount: its spikes and garbled readings).
// A wrong key: every send refused (401 / CONNACK 5), exit status 1, nothing stored.
//
// Token renewal is not repeated here: devhost start, like IoT Hub, accepts a token for 5 minutes
// of clock skew after its expiry, so a 30 s run with 10 s tokens would pass without renewing.
// simulator_faults.test.mjs (both transports, a hub that refuses expired tokens) and
// simulator_mqtt.test.mjs (devhost's MQTT endpoint with no skew) check renewal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { addDevice, dumpLog } from './lib/iothub.mjs';
import { deviceKey } from './lib/mqtt.mjs';
import { runSimulator } from './lib/simulator.mjs';
import { startStack, num, waitFor } from './lib/stack.mjs';

const N = 5;
const COUNT = 200;
let s;
let mqttUrl;
let stopped = false;

before(async () => {
  s = await startStack({ tag: 'simdev' });
  mqttUrl = `mqtts://localhost:${await s.dh.mqttPort()}`;
});

after(async () => {
  if (!stopped) await s?.stop();
  s?.cleanup();
});

/** The newest 10 s summary line's counters: {received, delivered, ..., mqtt: {messages, acked, ...}}. */
function summary() {
  const lines = s.dh.logs().split('\n').filter((l) => l.includes('devhost: last 10 s:'));
  const last = lines[lines.length - 1];
  if (!last) return null;
  const pick = (part) => Object.fromEntries([...(part ?? '').matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1], Number(m[2])]));
  return { ...pick(/; iothub:([^;]*)/.exec(last)?.[1]), mqtt: pick(/; mqtt:([^;]*)/.exec(last)?.[1]), line: last };
}

test('a wrong key: every send refused (401 over HTTP, CONNACK 5 over MQTT), exit status 1, nothing stored', async () => {
  const wrong = (id) => addDevice(id, s.data).connectionString.replace(/SharedAccessKey=.*/, `SharedAccessKey=${deviceKey()}`);
  const common = ['--count', '10', '--interval', '0.01', '--json'];   // the text summary on stderr too
  const [h, m] = await Promise.all([
    runSimulator(['--device', wrong('wrongkey-http'), '--transport', 'http', '--endpoint', s.dh.url, ...common]),
    runSimulator(['--device', wrong('wrongkey-mqtt'), '--endpoint', mqttUrl, '--ca', s.dh.ca, ...common]),
  ]);
  for (const [r, reason] of [[h, 'HTTP 401 Unauthorized (IotHubUnauthorizedAccess)'], [m, 'CONNACK refused (5: not authorized)']]) {
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.json.sent, 10);
    assert.equal(r.json.acknowledged, 0);
    assert.equal(r.json.failed, 10);
    assert.deepEqual(r.json.lost, { [reason]: 10 });
    assert.match(r.stderr, new RegExp(`LOST 10 messages: ${reason.replace(/[()]/g, '\\$&')} ×10`));
  }
  // devhost refused them too: nothing received, no MQTT message, the CONNACKs counted as refused.
  const c = await waitFor(() => { const x = summary(); return x && x.mqtt.refused >= 1 ? x : null; },
    { timeoutMs: 15000, what: 'a summary line counting the refused MQTT connection' });
  assert.equal(c.received, 0, c.line);
  assert.equal(c.mqtt.messages, 0, c.line);
  assert.equal((await s.rows())['wrongkey-http'], undefined);
  assert.equal((await s.rows())['wrongkey-mqtt'], undefined);
});

test(`${N} devices x ${COUNT} messages per transport: devhost receives exactly ${N * COUNT} per transport, DeviceState counts what was acknowledged`, async () => {
  const common = ['--devices', String(N), '--data', s.data, '--count', String(COUNT), '--interval', '0.005',
    '--faulty', '0.1', '--seed', '42', '--json', '--quiet'];
  const [h, m] = await Promise.all([
    runSimulator([...common, '--prefix', 'http-', '--transport', 'http', '--endpoint', s.dh.url]),
    runSimulator([...common, '--prefix', 'mqtt-', '--endpoint', mqttUrl]),
  ]);
  const runs = { http: h, mqtt: m };
  for (const [transport, r] of Object.entries(runs)) {
    assert.equal(r.code, 0, `${transport}: ${r.stderr}`);
    assert.equal(r.json.transport, transport);
    assert.equal(r.json.acknowledged, N * COUNT, transport);
    assert.equal(r.json.failed, 0, transport);
    assert.ok(r.json.faulty.spike + r.json.faulty.garbled > 0, `${transport}: some readings were invalid on purpose`);
  }

  // devhost's own counters: the hub made 2,000 messages durable, 1,000 of them over MQTT (so
  // 1,000 over HTTP), and EventTrigger took every one of them.
  const c = await waitFor(() => { const x = summary(); return x && x.received === 2 * N * COUNT && x.delivered === 2 * N * COUNT ? x : null; },
    { timeoutMs: 60000, what: 'a summary line with every message received and delivered' }).catch((e) => {
    throw new Error(`${e.message}\n${summary()?.line}`);
  });
  assert.equal(c.mqtt.messages, N * COUNT, c.line);
  assert.equal(c.mqtt.acked, N * COUNT, c.line);
  assert.equal(c.failed, 0, c.line);

  // DeviceState: each device's Count + InvalidCount is what the simulator saw acknowledged;
  // InvalidCount is exactly its spikes and garbled readings.
  for (const [transport, r] of Object.entries(runs)) {
    for (let i = 1; i <= N; i++) {
      const id = `${transport}-${i}`;
      const d = r.json.devices[id];
      assert.ok(d, `${id} in the summary`);
      const row = await s.waitRow(id, (x) => num(x.Count) + num(x.InvalidCount) >= d.acknowledged);
      assert.equal(num(row.Count) + num(row.InvalidCount), d.acknowledged, `${id}: Count ${num(row.Count)} + InvalidCount ${num(row.InvalidCount)}`);
      assert.equal(num(row.InvalidCount), d.faulty.spike + d.faulty.garbled, `${id}: InvalidCount vs ${JSON.stringify(d.faulty)}`);
    }
  }

  // The partition logs, read once devhost has stopped: 1,000 messages per transport, each
  // device's ids 1..200 exactly once, nothing from the wrong keys.
  const e = await s.stop();
  stopped = true;
  assert.equal(e.code, 0, s.dh.logs().slice(-4000));
  const stored = dumpLog(s.data);
  assert.equal(stored.length, 2 * N * COUNT);
  for (const transport of Object.keys(runs)) {
    assert.equal(stored.filter((x) => x.deviceId.startsWith(`${transport}-`)).length, N * COUNT, transport);
    for (let i = 1; i <= N; i++) {
      const ids = stored.filter((x) => x.deviceId === `${transport}-${i}`).map((x) => Number(x.messageId)).sort((a, b) => a - b);
      assert.deepEqual(ids, Array.from({ length: COUNT }, (_, k) => k + 1), `${transport}-${i}`);
    }
  }
});
