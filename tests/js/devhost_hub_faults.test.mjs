// Issues 9 and 10's fault tests through `devhost start` (the whole local stack: the repository's
// app, the real ./handler behind a tee that records every EventTrigger invocation, Azurite, the
// local IoT Hub in devhost's data folder, Microsoft's device SDK as the MQTT peer):
//   - 4 devices × 2,000 HTTP messages from concurrent senders that never re-send, devhost
//     SIGKILLed and restarted twice: per device acknowledged ⊆ stored ⊆ sent and Count equals
//     what the partition logs hold (no event applied twice, none lost between log and row)
//   - 4 SDK clients × 1,000 messages at QoS 1 over MQTT, devhost SIGKILLed mid-run: every message
//     whose sendEvent succeeded is counted; Count exceeds that only by re-sends after a PUBACK
//     lost in the crash (reported)
//   - the handler SIGKILLed with a batch in flight: the batch comes again with RetryContext and
//     the counts are exact
//   - the invocation devhost POSTs for a batch, field by field against the reference's shape
// The partition logs are read with tests/tools/iothub_server --dump while devhost is stopped.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { useStack, num, waitFor, freePort } from './lib/stack.mjs';
import { descendants } from './lib/devhost.mjs';
import { deviceCli, dumpLog, nodeToken, cToken, sendEvent } from './lib/iothub.mjs';

const require = createRequire(import.meta.url);
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

let mqttPort; // fixed across restarts: the SDK clients reconnect to it
const stack = useStack(async () => {
  mqttPort = await freePort();
  return { tag: 'hubfaults', handler: 'tee', args: ['--mqtt-port', String(mqttPort)] };
}, { signalr: false });
let s;
before(async () => { ({ s } = await stack.ready); });

/** Stop devhost cleanly, read every stored message from the partition logs, start it again. */
async function dumpStopped() {
  assert.equal((await s.stop()).code, 0, s.dh.logs());
  const stored = dumpLog(s.data);
  await s.restart();
  return stored;
}

/** Wait until every device's Count equals its stored messages; returns the rows. */
async function waitCounts(stored, ids) {
  const want = Object.fromEntries(ids.map((id) => [id, stored.filter((m) => m.deviceId === id).length]));
  for (const id of ids) await s.waitRow(id, (r) => num(r.Count) >= want[id], { timeoutMs: 60000 });
  const rows = await s.rows();
  for (const id of ids) assert.equal(num(rows[id].Count), want[id], `${id}: Count against the ${want[id]} messages stored`);
  return rows;
}

/** Every event of every EventTrigger invocation the tee saw: {attempt, retry, seq, device, body}. */
function deliveries() {
  const out = [];
  s.app.tee().forEach((r, attempt) => {
    const sys = JSON.parse(r.body.Metadata.SystemPropertiesArray);
    const bodies = JSON.parse(r.body.Data.events);
    const pid = r.body.Metadata.PartitionContext.PartitionId;
    sys.forEach((x, i) => out.push({ attempt, pid, retry: r.body.Metadata.RetryContext, seq: x.SequenceNumber,
      device: x['iothub-connection-device-id'], body: bodies[i] }));
  });
  return out;
}

test('HTTP: 4 devices × 2,000 messages, devhost SIGKILLed and restarted twice: acknowledged ≤ Count ≤ sent, nothing applied twice', { timeout: 240000 }, async () => {
  const PER = 2000;
  const SENDERS = 8; // per device, each its own keep-alive connection
  const devs = [0, 1, 2, 3].map((i) => s.addDevice(`crash-http-${i}`));
  const sent = new Set();
  const acked = new Set();
  let up = Promise.resolve(); // senders that lose their connection wait for the restart, then go on
  const sender = async (d, w) => {
    const tok = nodeToken(d.id, d.key);
    for (let i = w; i < PER; i += SENDERS) {
      const id = `${d.id}/${i}`;
      sent.add(id);
      try {
        const r = await sendEvent(s.dh.url, d.id, tok, JSON.stringify({ temperature: 20 + (i % 10), humidity: 50, id }));
        if (r.status === 204) acked.add(id);
        else assert.fail(`${id}: ${r.status} ${r.body}`);
      } catch (e) {
        if (e.code === 'ERR_ASSERTION') throw e;
        await up; // never re-sent: a message whose 204 was lost may or may not be stored
      }
    }
  };
  const sending = Promise.all(devs.flatMap((d) => Array.from({ length: SENDERS }, (_, w) => sender(d, w))));
  for (const at of [PER * 4 / 3, PER * 8 / 3]) {
    await waitFor(() => acked.size >= at, { timeoutMs: 90000, what: `${at} acknowledged messages` });
    let restarted;
    up = new Promise((r) => { restarted = r; });
    await s.kill();
    await s.restart();
    restarted();
  }
  await sending;
  const stored = await dumpStopped();
  const ids = stored.map((m) => JSON.parse(m.body).id);
  assert.equal(new Set(ids).size, ids.length, 'a message stored twice, though none was re-sent');
  const present = new Set(ids);
  for (const id of acked) assert.ok(present.has(id), `acknowledged ${id} is not stored`);
  for (const id of present) assert.ok(sent.has(id), `${id} was never sent`);
  const rows = await waitCounts(stored, devs.map((d) => d.id));
  for (const d of devs) {
    const a = [...acked].filter((x) => x.startsWith(`${d.id}/`)).length;
    const n = num(rows[d.id].Count);
    assert.ok(a <= n && n <= PER, `${d.id}: acknowledged ${a} ≤ Count ${n} ≤ sent ${PER}`);
  }
  const replays = deliveries().filter((e) => e.device.startsWith('crash-http-')).length - stored.length;
  console.log(`# HTTP: ${sent.size} sent, ${acked.size} acknowledged, ${stored.length} stored and counted; `
    + `${replays} events delivered again after a restart (recognised as replays)`);
});

test('MQTT: devhost SIGKILLed while 4 SDK clients send 1,000 messages each at QoS 1: every acknowledged message counted', { timeout: 240000 }, async () => {
  const PER = 1000;
  const WINDOW = 8; // sendEvents in flight per client
  const devs = [1, 2, 3, 4].map((i) => s.addDevice(`crash-mqtt-${i}`));
  const ca = fs.readFileSync(s.dh.ca, 'utf8');
  const clients = await Promise.all(devs.map(async (d) => {
    const c = Client.fromConnectionString(`${d.connectionString};GatewayHostName=localhost:${mqttPort}`, Mqtt);
    await c.setOptions({ ca });
    await c.open();
    return c;
  }));
  const acked = devs.map(() => new Set());
  let failed = 0;
  const sender = async (client, di) => {
    let next = 1;
    const worker = async () => {
      while (next <= PER) {
        const i = next++;
        const msg = new Message(JSON.stringify({ temperature: 21.5, humidity: 40, n: i }));
        msg.messageId = `${devs[di].id}-${i}`;
        try {
          await client.sendEvent(msg); // the SDK re-sends what was not acknowledged
          acked[di].add(msg.messageId);
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, worker));
  };
  const sending = Promise.all(clients.map(sender));
  const total = () => acked.reduce((n, a) => n + a.size, 0);
  await waitFor(() => total() >= 1200, { timeoutMs: 90000, what: '1,200 acknowledged messages' });
  const killedAt = total();
  await s.kill();
  await s.restart(); // the SDKs reconnect to the same port on their own
  await sending;
  await Promise.all(clients.map((c) => c.close()));
  assert.equal(failed, 0, 'a sendEvent failed for good');

  const stored = await dumpStopped();
  let duplicates = 0;
  for (const [di, d] of devs.entries()) {
    const mine = stored.filter((m) => m.deviceId === d.id).map((m) => m.messageId);
    const unique = new Set(mine);
    assert.equal(acked[di].size, PER);
    for (const id of acked[di]) assert.ok(unique.has(id), `${id} was acknowledged but is not stored`);
    for (const id of unique) assert.ok(acked[di].has(id), `a stranger in ${d.id}'s messages: ${id}`);
    duplicates += mine.length - unique.size;
  }
  // Re-sends after a PUBACK lost in the crash are stored twice, as with IoT Hub: only messages
  // in flight when devhost died (at most WINDOW per client).
  assert.ok(duplicates <= devs.length * WINDOW, `${duplicates} duplicates`);
  const rows = await waitCounts(stored, devs.map((d) => d.id));
  for (const [di, d] of devs.entries()) assert.ok(num(rows[d.id].Count) >= acked[di].size);
  const mine = stored.filter((m) => m.deviceId.startsWith('crash-mqtt-')).length;
  console.log(`# MQTT: SIGKILL after ${killedAt} acknowledged; every one of ${devs.length * PER} sendEvents succeeded; `
    + `${mine} stored and counted, ${duplicates} of them re-sent after a PUBACK lost in the crash`);
});

/** The real ./handler under devhost (the tee's child), by its process name. */
function realHandlerPid() {
  const pids = descendants(s.dh.proc.pid).filter((p) => {
    try { return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'handler'; } catch { return false; }
  });
  assert.equal(pids.length, 1, `handler processes under devhost: ${pids}`);
  return pids[0];
}

test('the handler SIGKILLed with a batch in flight: the batch comes again with RetryContext, counts exact', { timeout: 120000 }, async () => {
  const d = s.addDevice('handler-kill');
  const tok = cToken(d.id, d.key);
  const before = s.app.tee().length;
  // The handler is stopped, so the batch devhost sends it is certainly in flight when it dies.
  const pid = realHandlerPid();
  process.kill(pid, 'SIGSTOP');
  try {
    for (let i = 0; i < 5; i++) {
      const r = await sendEvent(s.dh.url, d.id, tok, JSON.stringify({ temperature: 10 + i, humidity: 30 }));
      assert.equal(r.status, 204, r.body);
    }
    await waitFor(() => deliveries().some((e) => e.device === d.id), { timeoutMs: 15000, what: 'a batch of handler-kill sent to the handler' });
  } finally {
    process.kill(pid, 'SIGKILL');
  }
  const row = await s.waitRow(d.id, (r) => num(r.Count) >= 5, { timeoutMs: 60000 });
  assert.equal(num(row.Count), 5);
  assert.equal(row.Celsius, 14);
  const mine = deliveries().filter((e) => e.device === d.id);
  const first = mine[0];
  assert.ok(first.attempt >= before);
  assert.equal(first.retry.RetryCount, 0);
  // the first event of the failed batch is delivered again by a later attempt with RetryCount ≥ 1
  const again = mine.find((e) => e.seq === first.seq && e.attempt > first.attempt);
  assert.ok(again, `the batch was not delivered again: ${JSON.stringify(mine)}`);
  assert.ok(again.retry.RetryCount >= 1, JSON.stringify(again.retry));
  assert.equal(again.retry.MaxRetryCount, -1);
  assert.ok(again.retry.Exception, 'the retry carries the failure');
});

test('the invocation devhost POSTs for a batch: every field of the reference\'s shape', async () => {
  const d = s.addDevice('wire-shape');
  const generation = /GenerationId:\s*(\d+)/.exec(deviceCli(['show', d.id], s.data).stdout)[1];
  const t0 = Date.now();
  const msgs = [
    { body: '{"temperature":21.5,"humidity":40}', props: { 'iothub-app-temperatureAlert': 'false', 'iothub-messageid': 'm-1',
      'iothub-correlationid': 'c-1', 'iothub-contenttype': 'application/json', 'iothub-contentencoding': 'utf-8' } },
    { body: '{"temperature":31,"humidity":41}', props: { 'iothub-app-temperatureAlert': 'true' } },
    { body: '{"temperature":22,"humidity":42}', props: {} },
  ];
  // one HTTP batch (application/vnd.microsoft.iothub.json): stored as one unit, read as one batch
  const batch = JSON.stringify(msgs.map((m) => ({ body: Buffer.from(m.body).toString('base64'), properties: m.props })));
  const r = await sendEvent(s.dh.url, d.id, nodeToken(d.id, d.key), batch, { 'Content-Type': 'application/vnd.microsoft.iothub.json' });
  assert.equal(r.status, 204, r.body);
  const rec = await waitFor(() => s.app.tee().find((x) => x.body.Metadata.SystemPropertiesArray.includes(`"${d.id}"`)),
    { timeoutMs: 15000, what: 'the invocation for wire-shape' });
  const t1 = Date.now();
  // the request: POST /<function folder>, the host's headers
  assert.equal(rec.url, '/EventTrigger');
  assert.match(rec.headers['content-type'], /^application\/json(; charset=utf-8)?$/);
  assert.match(rec.headers['x-azure-functions-invocationid'], /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.match(rec.headers['user-agent'], /^Azure-Functions-Host\//);
  assert.ok(rec.headers['x-azure-functions-hostversion']);
  const { Data, Metadata } = rec.body;
  assert.deepEqual(Object.keys(rec.body).sort(), ['Data', 'Metadata']);
  // Data.events: a string holding the array of bodies (dataType string)
  assert.deepEqual(Object.keys(Data), ['events']);
  assert.equal(typeof Data.events, 'string');
  assert.deepEqual(JSON.parse(Data.events), msgs.map((m) => m.body));
  assert.deepEqual(Object.keys(Metadata).sort(), ['EnqueuedTimeUtcArray', 'OffsetArray', 'PartitionContext', 'PartitionKeyArray',
    'PropertiesArray', 'RetryContext', 'SequenceNumberArray', 'SystemPropertiesArray', 'sys']);
  // PartitionContext: an object
  const pc = Metadata.PartitionContext;
  assert.deepEqual(Object.keys(pc).sort(), ['ConsumerGroup', 'EventHubName', 'FullyQualifiedNamespace', 'IsCheckpointingAfterInvocation', 'PartitionId']);
  assert.equal(pc.EventHubName, 'enviromon');
  assert.equal(pc.ConsumerGroup, '$Default');
  assert.match(pc.PartitionId, /^[0-3]$/);
  assert.match(pc.FullyQualifiedNamespace, /^enviromon-[0-9a-f-]+\.localhost$/);
  assert.equal(pc.IsCheckpointingAfterInvocation, true);
  // the arrays: strings holding JSON arrays, one element per event
  for (const k of ['PartitionKeyArray', 'OffsetArray', 'SequenceNumberArray', 'EnqueuedTimeUtcArray', 'PropertiesArray', 'SystemPropertiesArray']) {
    assert.equal(typeof Metadata[k], 'string', k);
    assert.equal(JSON.parse(Metadata[k]).length, msgs.length, k);
  }
  const seqs = JSON.parse(Metadata.SequenceNumberArray);
  const offsets = JSON.parse(Metadata.OffsetArray);
  const times = JSON.parse(Metadata.EnqueuedTimeUtcArray);
  const sys = JSON.parse(Metadata.SystemPropertiesArray);
  assert.deepEqual(JSON.parse(Metadata.PartitionKeyArray), [null, null, null]);
  seqs.forEach((q, i) => { assert.ok(Number.isInteger(q)); if (i) assert.equal(q, seqs[i - 1] + 1); });
  offsets.forEach((o, i) => { assert.equal(typeof o, 'string'); if (i) assert.ok(BigInt(o) > BigInt(offsets[i - 1])); });
  for (const t of times) {
    assert.match(t, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?$/, 'a .NET UTC time without a zone');
    const ms = Date.parse(`${t}Z`);
    assert.ok(ms >= t0 - 1000 && ms <= t1 + 1000, `${t} outside the send`);
  }
  assert.deepEqual(JSON.parse(Metadata.PropertiesArray), [{ temperatureAlert: 'false' }, { temperatureAlert: 'true' }, {}]);
  sys.forEach((x, i) => {
    const optional = i === 0 ? { 'message-id': 'm-1', 'correlation-id': 'c-1', 'content-type': 'application/json', 'content-encoding': 'utf-8' } : {};
    assert.deepEqual(Object.keys(x).sort(), ['EnqueuedTimeUtc', 'Offset', 'PartitionKey', 'SequenceNumber', 'iothub-connection-auth-generation-id',
      'iothub-connection-auth-method', 'iothub-connection-device-id', 'iothub-enqueuedtime', 'iothub-message-source', 'x-opt-enqueued-time',
      'x-opt-offset', 'x-opt-sequence-number', ...Object.keys(optional)].sort());
    for (const [k, v] of Object.entries(optional)) assert.equal(x[k], v, k);
    assert.equal(x['iothub-connection-device-id'], d.id);
    assert.deepEqual(JSON.parse(x['iothub-connection-auth-method']), { scope: 'device', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null });
    assert.equal(x['iothub-connection-auth-generation-id'], generation);
    assert.equal(x['iothub-message-source'], 'Telemetry');
    assert.equal(x.SequenceNumber, seqs[i]);
    assert.equal(x['x-opt-sequence-number'], seqs[i]);
    assert.equal(String(x.Offset), offsets[i]);
    assert.equal(String(x['x-opt-offset']), offsets[i]);
    assert.equal(x.PartitionKey, null);
    assert.equal(x.EnqueuedTimeUtc, times[i]);
    assert.equal(Date.parse(x['x-opt-enqueued-time']), Date.parse(`${times[i]}Z`));
    // when the hub received it, as on IoT Hub: before it was enqueued in the partition
    const received = Date.parse(x['iothub-enqueuedtime']);
    assert.ok(received <= Date.parse(`${times[i]}Z`) && received >= t0 - 1000, x['iothub-enqueuedtime']);
  });
  // sys and RetryContext (EventTrigger has a retry policy: present on the first attempt too)
  assert.equal(Metadata.sys.MethodName, 'EventTrigger');
  assert.ok(Math.abs(Date.parse(Metadata.sys.UtcNow) - t1) < 60000, Metadata.sys.UtcNow);
  assert.match(Metadata.sys.RandGuid, /^[0-9a-f-]{36}$/);
  assert.deepEqual(Metadata.RetryContext, { RetryCount: 0, MaxRetryCount: -1, Exception: null, Instance: null, State: {} });
  await s.waitRow(d.id, (x) => num(x.Count) === 3);
});
