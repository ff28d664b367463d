// `devhost start` refuses a broken function app before starting anything: each error names the
// file (with line and column for JSON) and says what to change; the exit code is non-zero,
// nothing listens on the port and the handler never ran. Also: the repository's own app starts
// with local.settings.sample.json (its %Setting% references resolve) and its EventTrigger reads
// the local IoT Hub; an eventHubTrigger's connection setting is checked as the host checks it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { makeApp, runDevhostToExit, startDevhost, repoRoot } from './lib/devhost.mjs';

const httpFn = (route = 'hello', extra = {}) => ({
  bindings: [
    { type: 'httpTrigger', direction: 'in', name: 'req', authLevel: 'anonymous', methods: ['get', 'post'], route, ...extra },
    { type: 'http', direction: 'out', name: 'res' },
  ],
});

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Start devhost on app, expect it to fail with a message matching every pattern. */
async function expectRefused(app, patterns, opts = {}) {
  try {
    const r = await runDevhostToExit(app.root, opts);
    assert.equal(r.code, 1, `devhost should have refused to start with exit code 1:\n${r.out}`);
    assert.equal(r.signal, null, `devhost was killed instead of exiting:\n${r.out}`);
    for (const p of patterns) assert.match(r.out, p, r.out);
    assert.equal(await portOpen(r.port), false, 'nothing may listen after a configuration error');
    assert.deepEqual(app.records(), [], 'the handler must not have been started');
    return r.out;
  } finally {
    app.cleanup();
  }
}

test('malformed function.json: file, line and column', async () => {
  const app = makeApp({ functions: { Hello: httpFn(), Broken: '{\n  "bindings": [\n    { "type": "httpTrigger", }\n  ]\n}\n' } });
  await expectRefused(app, [/Broken\/function\.json: line 3, column 30/, /trailing comma/]);
});

test('malformed host.json and local.settings.json: positions', async () => {
  let app = makeApp({ functions: { Hello: httpFn() }, hostJson: '{ "version": "2.0" "customHandler": {} }' });
  await expectRefused(app, [/host\.json: line 1, column 20/]);
  app = makeApp({ functions: { Hello: httpFn() }, localSettings: '{\n "Values": {\n  "A": "x"\n  "B": "y"\n }\n}' });
  await expectRefused(app, [/local\.settings\.json: line 4, column 3/]);
});

test('a %Setting% with no value names the setting, the file and the binding property', async () => {
  const app = makeApp({ functions: { Hello: httpFn('%RouteSetting%/x') } });
  await expectRefused(app, [/Hello\/function\.json: bindings\[0\]\.route: the setting 'RouteSetting' \(%RouteSetting%\) has no value/,
    /local\.settings\.json/]);
});

test('missing handler executable: says where it looked and how to build it', async () => {
  const app = makeApp({ functions: { Hello: httpFn() },
    hostJson: { version: '2.0', customHandler: { description: { defaultExecutablePath: 'handler-that-is-not-built' } } } });
  await expectRefused(app, [/defaultExecutablePath 'handler-that-is-not-built'/, /no command 'handler-that-is-not-built' on PATH/, /make/]);
});

test('a handler file that is not executable', async () => {
  const app = makeApp({ functions: { Hello: httpFn() },
    hostJson: { version: '2.0', customHandler: { description: { defaultExecutablePath: 'handler' } } }, handler: 'none' });
  fs.writeFileSync(path.join(app.root, 'handler'), '#!/bin/sh\n');
  fs.chmodSync(path.join(app.root, 'handler'), 0o644);
  await expectRefused(app, [/is not executable/]);
});

test('unknown binding type, unknown trigger type, two triggers, bad route, bad authLevel', async () => {
  await expectRefused(makeApp({ functions: { Hello: { bindings: [...httpFn().bindings, { type: 'blob', direction: 'in', name: 'b' }] } } }),
    [/Hello\/function\.json: bindings\[2\] \(b\): unknown binding type 'blob'/]);
  await expectRefused(makeApp({ functions: { Q: { bindings: [{ type: 'queueTrigger', direction: 'in', name: 'm', queueName: 'q' }] } } }),
    [/Q\/function\.json: no local trigger source for the trigger type 'queueTrigger'/]);
  await expectRefused(makeApp({ functions: { Two: { bindings: [...httpFn().bindings, { type: 'timerTrigger', direction: 'in', name: 't' }] } } }),
    [/more than one trigger binding/]);
  await expectRefused(makeApp({ functions: { R: httpFn('items/{id') } }), [/R\/function\.json: route 'items\/\{id': a '\{' without its '\}'/]);
  await expectRefused(makeApp({ functions: { A: httpFn('a', { authLevel: 'everyone' }) } }), [/authLevel must be/]);
});

test('missing local.settings.json, encrypted settings, CORS * with credentials', async () => {
  await expectRefused(makeApp({ functions: { Hello: httpFn() }, localSettings: null }), [/local\.settings\.json: file not found/,
    /copy local\.settings\.sample\.json/]);
  await expectRefused(makeApp({ functions: { Hello: httpFn() }, localSettings: { IsEncrypted: true, Values: {} } }), [/IsEncrypted/]);
  await expectRefused(makeApp({ functions: { Hello: httpFn() }, host: { CORS: '*', CORSCredentials: true } }),
    [/"\*" and CORSCredentials true cannot be combined/]);
});

test('a signalR binding whose connection string setting is missing or malformed', async () => {
  const fn = { bindings: [...httpFn().bindings, { type: 'signalR', direction: 'out', name: 'msgs', hubName: 'Enviromon',
    connectionStringSetting: 'MySignalR' }] };
  await expectRefused(makeApp({ functions: { S: fn } }), [/S\/function\.json: binding 'msgs' \(signalR\): the setting 'MySignalR'/]);
  const out = await expectRefused(makeApp({ functions: { S: fn }, values: { MySignalR: 'Endpoint=ftp://x;AccessKey=TOPSECRET123;' } }),
    [/MySignalR' is not a valid SignalR connection string/]);
  assert.doesNotMatch(out, /TOPSECRET123/, 'the key must never be printed');
});

test("the repository's app starts with local.settings.sample.json; its EventTrigger reads the local IoT Hub", async () => {
  const app = makeApp({ handler: 'real' });
  for (const f of ['EventTrigger', 'GetDeviceState', 'Negotiate', 'SendSignalr']) {
    fs.cpSync(path.join(repoRoot, f), path.join(app.root, f), { recursive: true });
  }
  const sample = JSON.parse(fs.readFileSync(path.join(repoRoot, 'local.settings.sample.json'), 'utf8'));
  const sigPort = (await import('./lib/devhost.mjs')).freePort;
  sample.Values.AzureSignalRConnectionString = sample.Values.AzureSignalRConnectionString.replace('8888', String(await sigPort()));
  fs.writeFileSync(path.join(app.root, 'local.settings.json'), JSON.stringify(sample));
  const dh = await startDevhost(app.root);
  try {
    await dh.waitLog(/EventTrigger: eventHubTrigger, retry exponentialBackoff \(forever, 2 s \.\. 5 min\)/);
    await dh.waitLog(/EventTrigger: reads the local IoT Hub's events \(event hub 'enviromon', consumer group '\$Default', batches of up to 100\)/);
    assert.doesNotMatch(dh.logs(), /cannot read Azure's Event Hubs/, 'the sample names the local endpoint');
    const r = await fetch(`${dh.url}/api/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(r.status, 200, dh.logs());
  } finally {
    const e = await dh.stop('SIGINT');
    assert.equal(e.code, 0, dh.logs());
  }
  // An Azure namespace in the connection string: devhost says it reads its local hub instead.
  const azure = structuredClone(sample);
  azure.Values.IoTHubConnectionString = 'Endpoint=sb://iothub-ns-myhub-123.servicebus.windows.net/;SharedAccessKeyName=service;'
    + 'SharedAccessKey=c2VjcmV0;EntityPath=myhub';
  fs.writeFileSync(path.join(app.root, 'local.settings.json'), JSON.stringify(azure));
  const dh2 = await startDevhost(app.root);
  try {
    await dh2.waitLog(/EventTrigger: the setting 'IoTHubConnectionString' names the Event Hubs namespace iothub-ns-myhub-123\.servicebus\.windows\.net; devhost cannot read Azure's Event Hubs/);
    await dh2.waitLog(/event hub 'myhub'/);   // EntityPath overrides eventHubName, as in the host
    assert.doesNotMatch(dh2.logs(), /c2VjcmV0/, 'the key must never be printed');
  } finally {
    assert.equal((await dh2.stop('SIGINT')).code, 0, dh2.logs());
  }
  // The connection setting must have a value, as the host requires; and be an Event Hubs string.
  for (const [value, re] of [[undefined, /EventTrigger\/function\.json: binding 'events' \(eventHubTrigger\): the setting 'IoTHubConnectionString' named by "connection" has no value/],
    ['UseDevelopmentStorage=true', /the setting 'IoTHubConnectionString' is not an Event Hubs connection string/]]) {
    const bad = structuredClone(sample);
    if (value === undefined) delete bad.Values.IoTHubConnectionString; else bad.Values.IoTHubConnectionString = value;
    fs.writeFileSync(path.join(app.root, 'local.settings.json'), JSON.stringify(bad));
    const r = await runDevhostToExit(app.root);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, re);
  }
  // Without the consumer group setting, EventTrigger/function.json cannot be indexed.
  delete sample.Values.IoTHubConsumerGroup;
  fs.writeFileSync(path.join(app.root, 'local.settings.json'), JSON.stringify(sample));
  const r = await runDevhostToExit(app.root);
  assert.notEqual(r.code, 0);
  assert.match(r.out, /EventTrigger\/function\.json: bindings\[0\]\.consumerGroup: the setting 'IoTHubConsumerGroup'/);
  app.cleanup();
});
