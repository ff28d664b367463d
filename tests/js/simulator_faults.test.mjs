// simulator_faults.test.mjs — ./simulator against a fault-injecting stand-in hub
// (lib/fake_iothub.mjs: HTTP and MQTT 3.1.1 over TLS, SAS checked with Node's crypto), for
// what the real local hub does not do on demand: 429 and 5xx answers, dropped connections,
// lost PUBACKs, refused CONNACKs. Every case checks, message id by message id, that what the
// simulator reports matches what the hub stored. Runs against the local IoT Hub itself are in
// simulator_iothub.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeHub, connectionString, newKey, HUB } from './lib/fake_iothub.mjs';
import { runSimulator } from './lib/simulator.mjs';

const keys = { 'sim-a': newKey(), 'sim-b': newKey(), 'sim-c': newKey() };
let hub;

before(async () => { hub = await startFakeHub(keys); });
after(async () => { await hub?.close(); });

function reset(faults = {}) {
  hub.state.stored.clear();
  hub.state.connects.length = 0;
  hub.state.tokensSeen.clear();
  hub.state.faults = faults;
  hub.state.publishes = 0;
  hub.state.httpRequests = 0;
}

function deviceArgs(ids = Object.keys(keys), keyOf = (id) => keys[id]) {
  return ids.flatMap((id) => ['--device', connectionString(id, keyOf(id))]);
}

function target(transport) {
  return transport === 'http' ? ['--endpoint', hub.httpUrl] : ['--endpoint', hub.mqttUrl, '--ca', hub.ca];
}

/** Per device: the stored ids must be exactly the acknowledged ones, plus only uncertain ones. */
function assertStoredMatches(json, { allowDuplicates = false } = {}) {
  for (const [id, d] of Object.entries(json.devices)) {
    const stored = hub.storedIds(id).sort((a, b) => a - b);
    const failed = new Set(d.failedIds);
    const uncertain = new Set(d.uncertainIds);
    const acked = [];
    for (let m = 1; m <= d.sent; m++) if (!failed.has(m)) acked.push(m);
    assert.equal(acked.length, d.acknowledged, `${id}: acknowledged`);
    const counts = new Map();
    for (const m of stored) counts.set(m, (counts.get(m) ?? 0) + 1);
    for (const m of acked) assert.ok(counts.get(m) >= 1, `${id}: acknowledged message ${m} is not stored`);
    for (const [m, n] of counts) {
      if (n > 1 || failed.has(m)) assert.ok(uncertain.has(m), `${id}: message ${m} stored ${n}x but not reported uncertain`);
      if (n > 1) assert.ok(allowDuplicates, `${id}: message ${m} stored twice`);
    }
    assert.ok(stored.length <= d.acknowledged + d.uncertain, `${id}: stored ${stored.length} > acknowledged + uncertain`);
  }
}

for (const transport of ['http', 'mqtt']) {
  test(`${transport}: every message arrives once, shaped like the original's, properties and ids right`, async () => {
    reset();
    const r = await runSimulator([...deviceArgs(), ...target(transport), '--transport', transport, '--count', '30',
      '--interval', '0.01', '--faulty', '0.1', '--seed', '11', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = r.json;
    assert.equal(j.transport, transport);
    assert.equal(j.sent, 90);
    assert.equal(j.acknowledged, 90);
    assert.equal(j.failed, 0);
    assert.equal(j.seed, 11);
    assert.ok(j.latencyMs.p50 > 0 && j.latencyMs.p99 >= j.latencyMs.p50);
    const faulty = j.faulty.spike + j.faulty.missing + j.faulty.garbled;
    assert.ok(faulty > 0 && faulty < 30, `faulty ${faulty} of 90 at 0.1`);
    for (const id of Object.keys(keys)) {
      assert.deepEqual(hub.storedIds(id), Array.from({ length: 30 }, (_, i) => i + 1), `${id} in order, once each`);
      assert.equal(j.devices[id].acknowledged, 30);
      for (const m of hub.state.stored.get(id)) {
        const body = JSON.parse(m.body);
        assert.equal(String(body.messageId), m.messageId);
        assert.equal(body.deviceId, id);
        const t = typeof body.temperature === 'number' ? body.temperature : null;
        // HTTP header names are case-insensitive (Node hands them over lower-cased).
        const alert = m.props.temperatureAlert ?? m.props.temperaturealert;
        assert.equal(alert, t !== null && t > 30 ? 'true' : 'false');
      }
    }
    assert.match(r.stderr, /sent 90, acknowledged 90, failed 0/);
    assert.match(r.stderr, /nothing lost/);
  });
}

test('the same --seed gives the same messages over either transport', async () => {
  reset();
  const args = [...deviceArgs(['sim-a']), '--count', '20', '--interval', '0.005', '--faulty', '0.2', '--seed', '99', '--quiet'];
  let r = await runSimulator([...args, ...target('http'), '--transport', 'http']);
  assert.equal(r.code, 0, r.stderr);
  const first = hub.state.stored.get('sim-a').map((m) => m.body);
  reset();
  r = await runSimulator([...args, ...target('mqtt')]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(hub.state.stored.get('sim-a').map((m) => m.body), first);
  reset();
  r = await runSimulator([...deviceArgs(['sim-a']), '--count', '20', '--interval', '0.005', '--faulty', '0.2', '--seed', '100',
    '--quiet', ...target('http'), '--transport', 'http']);
  assert.notDeepEqual(hub.state.stored.get('sim-a').map((m) => m.body), first);
});

test('http: throttling (429) and 503 are retried with backoff; nothing lost, nothing stored twice', async () => {
  reset({ httpStatus: (req, n) => (n % 4 === 0 ? 429 : n % 9 === 0 ? 503 : 0) });
  const r = await runSimulator([...deviceArgs(), ...target('http'), '--transport', 'http', '--count', '20',
    '--interval', '0.01', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = r.json;
  assert.equal(j.acknowledged, 60);
  assert.equal(j.failed, 0);
  assert.ok(j.errors['HTTP 429 Too Many Requests (ThrottlingException)'] > 5, JSON.stringify(j.errors));
  assert.ok(j.errors['HTTP 503 Service Unavailable (ServerError)'] > 0, JSON.stringify(j.errors));
  assert.equal(j.retries, j.attempts - j.sent);
  assert.equal(j.retries, Object.values(j.errors).reduce((a, b) => a + b, 0));
  assert.equal(j.uncertain, j.errors['HTTP 503 Service Unavailable (ServerError)']); // a 5xx may have stored it
  assertStoredMatches(j);
  for (const id of Object.keys(keys)) assert.equal(hub.storedIds(id).length, 20);
});

test('http: connections dropped without an answer are retried and reported uncertain', async () => {
  reset({ httpDestroy: (n) => n % 7 === 0 });
  const r = await runSimulator([...deviceArgs(), ...target('http'), '--transport', 'http', '--count', '15',
    '--interval', '0.01', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.acknowledged, 45);
  assert.ok(r.json.uncertain > 0);
  assertStoredMatches(r.json);
});

test('http: a hub that stores, then dies before answering: the re-sent copy is reported uncertain (libcurl re-sends on its own too)', async () => {
  reset({ httpStoreThenDestroy: (n) => n % 5 === 0 });
  const r = await runSimulator([...deviceArgs(['sim-a']), ...target('http'), '--transport', 'http', '--count', '20',
    '--interval', '0.01', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = r.json;
  assert.equal(j.acknowledged, 20);
  const ids = hub.storedIds('sim-a');
  const dup = [...new Set(ids.filter((m, i) => ids.indexOf(m) !== i))];
  assert.ok(dup.length >= 3, `stored: ${ids}`);
  for (const m of dup) assert.ok(j.devices['sim-a'].uncertainIds.includes(m), `${m} stored twice, not reported uncertain`);
  assertStoredMatches(j, { allowDuplicates: true });
  assert.equal(j.retries, Object.values(j.errors).reduce((a, b) => a + b, 0));
});

test('mqtt: a hub dropping connections mid-stream: reconnect, resend, nothing lost', async () => {
  reset({ mqttDropPublish: (n) => n % 25 === 0 });
  const r = await runSimulator([...deviceArgs(), ...target('mqtt'), '--count', '60', '--interval', '0.005', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = r.json;
  assert.equal(j.acknowledged, 180);
  assert.equal(j.failed, 0);
  assert.ok(j.uncertain >= 1);
  const lost = Object.keys(j.events).filter((k) => k.startsWith('MQTT connection lost'));
  assert.ok(lost.length > 0, JSON.stringify(j.events));
  assert.ok(j.events['MQTT connected'] > 3, 'reconnected');
  // PUBACKs for messages just before the drop may be lost with the connection: those are
  // stored, re-sent, stored again, and reported uncertain.
  assertStoredMatches(j, { allowDuplicates: true });
});

test('mqtt: a PUBACK that never comes: timeout, reconnect, resend; the duplicate is reported uncertain', async () => {
  reset({ mqttIgnorePublish: (n) => n === 10 });
  const r = await runSimulator([...deviceArgs(['sim-a']), ...target('mqtt'), '--count', '20', '--interval', '0.01',
    '--timeout', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = r.json;
  assert.equal(j.acknowledged, 20);
  const ids = hub.storedIds('sim-a');
  const dup = ids.filter((m, i) => ids.indexOf(m) !== i);
  assert.equal(dup.length, 1, `one message stored twice: ${ids}`);
  assert.deepEqual(j.devices['sim-a'].uncertainIds, dup);
  assert.ok(j.events['MQTT connection lost: no PUBACK before the timeout'] >= 1, JSON.stringify(j.events));
  assertStoredMatches(j, { allowDuplicates: true });
});

test('mqtt: CONNACK 3 (server unavailable) is retried; the device connects later and sends everything', async () => {
  let refusals = 0;
  reset({ mqttConnack: () => (refusals++ < 3 ? 3 : 0) });
  const r = await runSimulator([...deviceArgs(['sim-b']), ...target('mqtt'), '--count', '5', '--interval', '0.01', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.acknowledged, 5);
  assert.equal(hub.state.connects.filter((c) => c.code === 3).length, 3);
});

for (const transport of ['http', 'mqtt']) {
  test(`${transport}: a wrong key: every send refused, the summary says so, exit status 1`, async () => {
    reset();
    const wrong = newKey();
    const r = await runSimulator([...deviceArgs(['sim-a', 'sim-b'], () => wrong), ...target(transport), '--transport',
      transport, '--count', '5', '--interval', '0.01', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const j = r.json;
    assert.equal(j.sent, 10);
    assert.equal(j.acknowledged, 0);
    assert.equal(j.failed, 10);
    const reason = transport === 'http' ? 'HTTP 401 Unauthorized (IotHubUnauthorizedAccess)' : 'CONNACK refused (5: not authorized)';
    assert.deepEqual(j.lost, { [reason]: 10 });
    for (const id of ['sim-a', 'sim-b']) assert.deepEqual(j.devices[id].failedIds, [1, 2, 3, 4, 5]);
    assert.match(r.stderr, new RegExp(`LOST 10 messages: ${reason.replace(/[()]/g, '\\$&')} ×10`));
    assert.equal(hub.state.stored.size, 0);
    assert.ok(!r.stderr.includes(wrong) && !r.stdout.includes(wrong), 'the key is never printed');
  });
}

test('token renewal: with --token-ttl 10, a 25 s run over both transports loses nothing and renews', async () => {
  reset();
  const common = ['--duration', '25', '--interval', '0.2', '--token-ttl', '10', '--json'];
  const [h, m] = await Promise.all([
    runSimulator([...deviceArgs(['sim-a']), ...target('http'), '--transport', 'http', ...common]),
    runSimulator([...deviceArgs(['sim-b', 'sim-c']), ...target('mqtt'), ...common]),
  ]);
  assert.equal(h.code, 0, h.stderr);
  assert.equal(m.code, 0, m.stderr);
  assert.equal(h.json.failed + m.json.failed, 0);
  assert.ok(h.json.sent >= 120 && m.json.sent >= 240, `${h.json.sent} ${m.json.sent}`);
  assert.equal(h.json.retries + m.json.retries, 0, 'no send was refused for an expired token');
  // A token lasts 10 s and is renewed at 8 s: at least three different ones in 25 s.
  for (const id of ['sim-a', 'sim-b', 'sim-c']) assert.ok(hub.state.tokensSeen.get(id).size >= 3, `${id}: ${[...hub.state.tokensSeen.get(id)]}`);
  // Over MQTT, renewal is a clean reconnect with the new token as password (as the SDKs do).
  for (const id of ['sim-b', 'sim-c']) assert.ok(hub.state.connects.filter((c) => c.deviceId === id && c.ok).length >= 3);
  assert.ok(m.json.events['MQTT reconnect to renew the SAS token'] >= 4, JSON.stringify(m.json.events));
  assertStoredMatches(h.json);
  assertStoredMatches(m.json);
});

test('Ctrl-C: the first stops taking readings and delivers what was taken; exit 0 when nothing was lost', async () => {
  reset();
  // Interrupt once it has been sending for a while (a progress line with more than 20 sent).
  const r = await runSimulator([...deviceArgs(), ...target('mqtt'), '--interval', '0.01', '--json', '--progress', '0.2'], {
    signalWhen: { test: (err) => [...err.matchAll(/ sent (\d+) /g)].some((m) => Number(m[1]) > 20), signal: 'SIGINT' },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.interrupted, true);
  assert.ok(r.json.sent > 20);
  assert.equal(r.json.sent, r.json.acknowledged);
  for (const id of Object.keys(keys)) assert.equal(hub.storedIds(id).length, r.json.devices[id].acknowledged);
});

test('bad input and unreachable endpoints: one clear line, exit status 2', async () => {
  const cases = [
    [['--bogus'], /^simulator: unknown option '--bogus' \(see --help\)$/],
    [['--device', `HostName=${HUB};DeviceId=x`], /^simulator: --device #1: connection string has no SharedAccessKey$/],
    [[...deviceArgs(['sim-a']), '--endpoint', 'http://127.0.0.1:1'], /^simulator: cannot reach http:\/\/127\.0\.0\.1:1: .*Couldn't connect to server$/],
    [[...deviceArgs(['sim-a']), '--endpoint', hub.mqttUrl], /^simulator: cannot reach mqtts:\/\/localhost:\d+: SSL certificate problem: .*\(for devhost, give its local CA: --ca <data folder>\/ca\.pem\)$/],
    [[...deviceArgs(['sim-a']), '--endpoint', hub.mqttUrl, '--ca', '/nonexistent/ca.pem'], /^simulator: --ca \/nonexistent\/ca\.pem: No such file or directory$/],
    [[...deviceArgs(['sim-a']), '--transport', 'mqtt', '--endpoint', hub.httpUrl], /does not match --transport mqtt/],
    [['--devices-file', '/nonexistent/devices.txt'], /^simulator: --devices-file \/nonexistent\/devices\.txt: No such file or directory$/],
  ];
  for (const [args, re] of cases) {
    const r = await runSimulator(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], re);
    assert.equal(r.stdout, '');
  }
});
