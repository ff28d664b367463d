// iothub_http.test.mjs — the local IoT Hub's HTTP device API with real clients: tokens made by
// Microsoft's azure-iot-common and the C SDK's way, device ids with every allowed special
// character, refusals with IoT Hub's error bodies (and nothing stored), batches in the Node SDK's
// format, registry changes seen at once by a running hub, and SIGKILL under concurrent load
// losing no acknowledged message. Runs tests/tools/iothub_server (the API alone).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { addDevice, cToken, deviceCli, dumpLog, nodeToken, sendEvent, startIotHubServer } from './lib/iothub.mjs';
import { waitFor } from './lib/handler.mjs';

let dir;
let srv;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-http-'));
  srv = await startIotHubServer(dir);
});

after(async () => {
  await srv?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const stored = () => dumpLog(dir);

function expectIotHubError(r, status, code) {
  assert.equal(r.status, status, r.body);
  assert.equal(r.headers.get('iothub-errorcode'), code);
  const j = JSON.parse(r.body);
  assert.match(j.Message, new RegExp(`^ErrorCode:${code};`));
  assert.match(j.ExceptionMessage, /^Tracking ID:/);
}

test('tokens from azure-iot-common and the C SDK are accepted, for ids with every allowed character', async () => {
  const ids = ['plain-1', "odd:.+%_#*?!(),=@;$'x", 'UPPER.case', '(x)', '*', `${'a'.repeat(127)}Z`];
  for (const id of ids) {
    const d = addDevice(id, dir);
    for (const [kind, tok] of [['node', nodeToken(id, d.key)], ['c', cToken(id, d.key)]]) {
      const body = JSON.stringify({ deviceId: id, kind });
      const r = await sendEvent(srv.url, id, tok, body, { 'iothub-app-kind': kind, 'IoTHub-MessageId': `${kind}-1` });
      assert.equal(r.status, 204, `${kind} token for ${id}: ${r.body}`);
    }
  }
  const rows = stored();
  for (const id of ids) {
    const mine = rows.filter((m) => m.deviceId === id);
    assert.deepEqual(mine.map((m) => m.properties.kind).sort(), ['c', 'node']);
    assert.deepEqual(mine.map((m) => m.messageId).sort(), ['c-1', 'node-1']);
  }
});

test('refusals: IoT Hub status, error code and body, and nothing stored', async () => {
  const a = addDevice('refuse-a', dir);
  const b = addDevice('refuse-b', dir);
  const before = stored().length;
  const body = '{"t":1}';
  expectIotHubError(await sendEvent(srv.url, 'refuse-a', null, body), 401, 'IotHubUnauthorizedAccess');
  expectIotHubError(await sendEvent(srv.url, 'ghost', nodeToken('ghost', a.key), body), 404, 'DeviceNotFound');
  // wrong key, expired, another device's token, a device posting to another device's path
  expectIotHubError(await sendEvent(srv.url, 'refuse-a', nodeToken('refuse-a', b.key), body), 401, 'IotHubUnauthorizedAccess');
  expectIotHubError(await sendEvent(srv.url, 'refuse-a', nodeToken('refuse-a', a.key, -400), body), 401, 'IotHubUnauthorizedAccess');
  expectIotHubError(await sendEvent(srv.url, 'refuse-a', nodeToken('refuse-b', b.key), body), 401, 'IotHubUnauthorizedAccess');
  expectIotHubError(await sendEvent(srv.url, 'refuse-b', nodeToken('refuse-a', a.key), body), 401, 'IotHubUnauthorizedAccess');
  expectIotHubError(await sendEvent(srv.url, 'refuse-a', nodeToken('refuse-a', a.key), body, {}, { apiVersion: null }), 400,
    'InvalidProtocolVersion');
  expectIotHubError(await sendEvent(srv.url, 'refuse-a', nodeToken('refuse-a', a.key), body, { 'iothub-app-bad': 'a b' }), 400,
    'ArgumentInvalid');
  // over 256 KiB: 413, for a body the server reads and for one it stops reading
  for (const size of [256 * 1024 + 1, 3 * 1024 * 1024]) {
    const r = await sendEvent(srv.url, 'refuse-a', nodeToken('refuse-a', a.key), Buffer.alloc(size, 'x'));
    expectIotHubError(r, 413, 'MessageTooLarge');
  }
  assert.equal(stored().length, before);
  // exactly 256 KiB is a message
  const r = await sendEvent(srv.url, 'refuse-a', cToken('refuse-a', a.key), Buffer.alloc(256 * 1024, 'y'));
  assert.equal(r.status, 204, r.body);
  assert.equal(stored().length, before + 1);
});

test('a batch in the Node SDK format is stored as separate messages with their properties', async () => {
  const d = addDevice('batcher', dir);
  // the body azure-iot-device-http's sendEventBatch builds
  const msgs = [{ data: '{"i":1}', props: { temperatureAlert: 'true' } }, { data: '{"i":2}', props: {} }];
  const body = `[${msgs.map((m) => {
    const keys = Object.keys(m.props);
    const props = keys.length ? `, "properties":{${keys.map((k) => `"iothub-app-${k}":"${m.props[k]}"`).join(',')}}` : '';
    return `{"body": "${Buffer.from(m.data).toString('base64')}"${props}}`;
  }).join(',')}]`;
  const r = await sendEvent(srv.url, 'batcher', nodeToken('batcher', d.key), body,
    { 'Content-Type': 'application/vnd.microsoft.iothub.json' });
  assert.equal(r.status, 204, r.body);
  const mine = stored().filter((m) => m.deviceId === 'batcher');
  assert.deepEqual(mine.map((m) => m.body), ['{"i":1}', '{"i":2}']);
  assert.deepEqual(mine[0].properties, { temperatureAlert: 'true' });
  assert.equal(mine[1].seq, mine[0].seq + 1);
});

test('the running hub sees registry changes at once', async () => {
  const tok = (d) => nodeToken(d.id, d.key);
  const d = addDevice('live-1', dir);
  assert.equal((await sendEvent(srv.url, 'live-1', tok(d), '{}')).status, 204);
  // a new key retires tokens signed with the old one; the secondary key still works
  const regen = deviceCli(['regenerate-key', 'live-1', '--quiet'], dir);
  assert.equal(regen.status, 0, regen.stderr);
  const newKey = /SharedAccessKey=([^;\s]+)/.exec(regen.stdout)[1];
  assert.equal((await sendEvent(srv.url, 'live-1', tok(d), '{}')).status, 401);
  assert.equal((await sendEvent(srv.url, 'live-1', nodeToken('live-1', newKey), '{}')).status, 204);
  const shown = deviceCli(['show', 'live-1'], dir).stdout;
  const secondary = /Secondary connection string:\s+\S*SharedAccessKey=(\S+)/.exec(shown)[1];
  assert.equal((await sendEvent(srv.url, 'live-1', cToken('live-1', secondary), '{}')).status, 204);
  // removed: 404, even with a valid token
  assert.equal(deviceCli(['remove', 'live-1'], dir).status, 0);
  assert.equal((await sendEvent(srv.url, 'live-1', nodeToken('live-1', newKey), '{}')).status, 404);
  // the CLI's own token works too
  const d2 = addDevice('live-2', dir);
  const cliTok = deviceCli(['token', 'live-2', '--ttl', '60'], dir).stdout.trim();
  assert.match(cliTok, /^SharedAccessSignature sr=enviromon\.azure-devices\.net%2Fdevices%2Flive-2&sig=/);
  assert.equal((await sendEvent(srv.url, 'live-2', cliTok, '{}')).status, 204);
  assert.ok(d2.connectionString.startsWith('HostName=enviromon.azure-devices.net;DeviceId=live-2;SharedAccessKey='));
  // without --quiet, add prints both endpoints to use the connection string with
  const shownAdd = deviceCli(['add', 'live-3'], dir).stdout;
  assert.match(shownAdd, /^HostName=enviromon\.azure-devices\.net;DeviceId=live-3;SharedAccessKey=\S+$/m);
  assert.match(shownAdd, /POST http:\/\/localhost:7071\/devices\/live-3\/messages\/events\?api-version=2021-04-12/);
  assert.match(shownAdd, /;GatewayHostName=localhost:8883\n/);
  assert.ok(shownAdd.includes(`${dir}/ca.pem`), shownAdd);
  // ids outside the rule are refused with the rule
  const bad = deviceCli(['add', 'no/slash'], dir);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /1 to 128 characters from/);
});

test('SIGKILL under concurrent load: every acknowledged message is stored, none twice', async () => {
  const crashDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-crash-'));
  try {
    const devices = [0, 1, 2, 3].map((i) => addDevice(`crash-${i}`, crashDir));
    let server = await startIotHubServer(crashDir);
    const acked = new Set();
    const sent = new Set();
    let killed = false;
    // 4 devices x 8 concurrent senders, each message sent once, never re-sent
    const senders = [];
    for (const d of devices) {
      for (let w = 0; w < 8; w++) {
        senders.push((async () => {
          for (let i = 0; i < 100000 && !killed; i++) {
            const id = `${d.id}/${w}/${i}`;
            sent.add(id);
            try {
              const r = await sendEvent(server.url, d.id, nodeToken(d.id, d.key), JSON.stringify({ id }),
                { 'iothub-messageid': crypto.createHash('sha1').update(id).digest('hex') });
              if (r.status === 204) acked.add(id);
            } catch { /* connection refused or reset by the kill */ }
          }
        })());
      }
    }
    // under load (some messages acknowledged), then a random moment for the kill
    await waitFor(() => acked.size >= 200, { timeoutMs: 60000, what: '200 acknowledged messages' });
    await new Promise((r) => setTimeout(r, Math.random() * 300));
    killed = true;
    await server.kill();
    await Promise.all(senders);
    const rows = dumpLog(crashDir);
    const ids = rows.map((m) => JSON.parse(m.body).id);
    const present = new Set(ids);
    assert.equal(present.size, ids.length, 'a message is stored twice');
    for (const id of acked) assert.ok(present.has(id), `acknowledged ${id} is missing`);
    for (const id of present) assert.ok(sent.has(id));
    // restarted, it accepts more and continues the sequence numbers
    server = await startIotHubServer(crashDir);
    const r = await sendEvent(server.url, 'crash-0', nodeToken('crash-0', devices[0].key), '{"id":"after"}');
    assert.equal(r.status, 204);
    await server.stop();
    const after = dumpLog(crashDir).filter((m) => m.deviceId === 'crash-0');
    assert.equal(after.at(-1).body, '{"id":"after"}');
    for (let i = 1; i < after.length; i++) assert.equal(after[i].seq, after[i - 1].seq + 1);
  } finally {
    fs.rmSync(crashDir, { recursive: true, force: true });
  }
});
