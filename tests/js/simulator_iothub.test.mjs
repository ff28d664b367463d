// simulator_iothub.test.mjs — ./simulator against the real local IoT Hub's HTTP device API
// (tests/tools/iothub_server, the API alone, so that the test can kill it): devices registered with
// `devhost device add` through --devices, every message stored exactly as acknowledged (read
// back from the partition logs), IoT Hub's own refusals, and the hub SIGKILLed and restarted
// mid-run with nothing acknowledged lost.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addDevice, deviceCli, dumpLog, startIotHubServer } from './lib/iothub.mjs';
import { freePort, waitFor } from './lib/handler.mjs';
import { runSimulator } from './lib/simulator.mjs';

let dir;
let srv;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sim-iothub-'));
  srv = await startIotHubServer(dir);
});

after(async () => {
  await srv?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function byDevice(rows) {
  const m = new Map();
  for (const r of rows) {
    if (!m.has(r.deviceId)) m.set(r.deviceId, []);
    m.get(r.deviceId).push(r);
  }
  return m;
}

test('--devices 5 registers the devices and 5 x 200 messages are stored exactly once, in order', async () => {
  const r = await runSimulator(['--devices', '5', '--data', dir, '--transport', 'http', '--endpoint', srv.url,
    '--count', '200', '--interval', '0.005', '--faulty', '0.02', '--seed', '5', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = r.json;
  assert.equal(j.sent, 1000);
  assert.equal(j.acknowledged, 1000);
  assert.equal(j.failed, 0);
  const listed = deviceCli(['list'], dir).stdout.trim().split('\n');
  const rows = byDevice(dumpLog(dir));
  for (let i = 1; i <= 5; i++) {
    const id = `sim-${i}`;
    assert.ok(listed.includes(id), `${id} registered`);
    const mine = rows.get(id);
    assert.equal(mine.length, 200);
    assert.equal(j.devices[id].acknowledged, 200);
    assert.deepEqual(mine.map((m) => m.messageId), Array.from({ length: 200 }, (_, k) => String(k + 1)));
    for (const m of mine) {
      const body = JSON.parse(m.body);
      assert.equal(body.deviceId, id);
      assert.equal(String(body.messageId), m.messageId);
      assert.ok(['true', 'false'].includes(m.properties.temperatureAlert));
    }
  }
  // Run again: the devices exist now; the simulator uses them (device show) instead of failing.
  const again = await runSimulator(['--devices', '2', '--data', dir, '--transport', 'http', '--endpoint', srv.url,
    '--count', '3', '--interval', '0.01', '--json']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.json.acknowledged, 6);
});

test("a wrong key: IoT Hub's 401 for every message, the summary says so, exit status 1", async () => {
  const d = addDevice('wrong-key-dev', dir);
  const before = dumpLog(dir).length;
  const bad = d.connectionString.replace(/SharedAccessKey=.*/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`);
  const r = await runSimulator(['--device', bad, '--endpoint', srv.url, '--count', '10', '--interval', '0.01', '--json']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.json.failed, 10);
  assert.deepEqual(r.json.lost, { 'HTTP 401 Unauthorized (IotHubUnauthorizedAccess)': 10 });
  assert.match(r.stderr, /LOST 10 messages: HTTP 401 Unauthorized \(IotHubUnauthorizedAccess\) ×10/);
  assert.equal(dumpLog(dir).length, before);
});

test('an unregistered device: 404 DeviceNotFound, lost, exit status 1', async () => {
  const cs = `HostName=enviromon.azure-devices.net;DeviceId=nobody;SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`;
  const r = await runSimulator(['--device', cs, '--endpoint', srv.url, '--count', '2', '--interval', '0.01', '--json']);
  assert.equal(r.code, 1);
  assert.deepEqual(r.json.lost, { 'HTTP 404 Not Found (DeviceNotFound)': 2 });
});

test('the hub SIGKILLed and restarted mid-run: every acknowledged message is stored, duplicates only where reported uncertain', async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'sim-iothub-kill-'));
  const port = await freePort();
  let hub = await startIotHubServer(data, ['--port', String(port)]);
  let sim;
  try {
    const devices = [1, 2, 3, 4].map((i) => addDevice(`crash-${i}`, data));
    let sent = 0;
    let queued = 0;
    const run = runSimulator([...devices.flatMap((d) => ['--device', d.connectionString]), '--transport', 'http',
      '--endpoint', hub.url, '--rate', '400', '--duration', '8', '--inflight', '4', '--json', '--progress', '0.2'],
    {
      onStderr: (t) => {
        for (const x of t.matchAll(/ sent (\d+) .* queued (\d+) /g)) { sent = Number(x[1]); queued = Number(x[2]); }
      },
    });
    sim = run;
    await waitFor(() => sent > 400, { timeoutMs: 20000, what: 'traffic before the kill' });
    await hub.kill();
    await waitFor(() => queued > 200, { timeoutMs: 20000, what: 'readings queued while the hub is down' });
    hub = await startIotHubServer(data, ['--port', String(port)]);
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    const j = r.json;
    assert.equal(j.failed, 0);
    assert.ok(j.retries > 0, 'requests failed while the hub was down and were retried');
    const rows = byDevice(dumpLog(data));
    for (const d of devices) {
      const dev = j.devices[d.id];
      const ids = (rows.get(d.id) ?? []).map((m) => Number(m.messageId));
      const counts = new Map();
      for (const m of ids) counts.set(m, (counts.get(m) ?? 0) + 1);
      for (let m = 1; m <= dev.sent; m++) assert.ok(counts.get(m) >= 1, `${d.id}: acknowledged message ${m} lost`);
      const uncertain = new Set(dev.uncertainIds);
      for (const [m, n] of counts) if (n > 1) assert.ok(uncertain.has(m), `${d.id}: ${m} stored ${n}x, not reported uncertain`);
      assert.ok(ids.length <= dev.acknowledged + dev.uncertain);
    }
  } finally {
    await hub.stop();
    const r = await Promise.race([sim, new Promise((res) => setTimeout(res, 1))]);
    if (!r && sim) (await sim);
    fs.rmSync(data, { recursive: true, force: true });
  }
});
