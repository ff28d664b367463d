// simulator_sas.test.mjs — the simulator's SAS tokens and connection-string parser (C, through
// tests/tools/sim_sas) against Microsoft's azure-iot-common and azure-iot-device, byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { SharedAccessSignature, encodeUriComponentStrict } = require('azure-iot-common');
const { ConnectionString } = require('azure-iot-device');

const TOOL = path.join(process.env.ENVIROMON_TEST_TOOLS ?? 'build/release/tests/tools', 'sim_sas');

function tool(args, connstr) {
  const r = spawnSync(TOOL, args, { env: { ...process.env, SIM_CONNSTR: connstr }, encoding: 'utf8' });
  return { status: r.status, out: r.stdout.trim(), err: r.stderr };
}

// What azure-iot-device does for a device key (device/core/src/shared_access_signature.ts).
function sdkToken(host, deviceId, key, expiry) {
  const uri = encodeUriComponentStrict(`${host}/devices/${deviceId}`);
  return SharedAccessSignature.create(uri, null, key, expiry).toString();
}

test('device tokens equal azure-iot-common SharedAccessSignature.create, for awkward ids and keys', () => {
  const cases = [
    ['myhub.azure-devices.net', 'sim-1', crypto.randomBytes(32).toString('base64'), 1700000000],
    ['enviromon.azure-devices.net', "dev:ice.+%_#*?!(),=@$'", crypto.randomBytes(32).toString('base64'), 2000000000],
    ['h.azure-devices.net', 'd', crypto.randomBytes(16).toString('base64'), 1],
    ['h.azure-devices.net', 'x'.repeat(128), crypto.randomBytes(64).toString('base64'), 4102444800],
  ];
  for (let i = 0; i < 200; i++) {
    cases.push([`hub${i}.azure-devices.net`, `d-${i}`, crypto.randomBytes(32).toString('base64'), 1700000000 + i * 7919]);
  }
  for (const [host, id, key, se] of cases) {
    const r = tool(['token', '-', String(se)], `HostName=${host};DeviceId=${id};SharedAccessKey=${key}`);
    assert.equal(r.status, 0, r.err);
    assert.equal(r.out, sdkToken(host, id, key, se), `${host} ${id}`);
    // And it verifies as the hub checks it: HMAC over sr as sent.
    const f = Object.fromEntries(r.out.slice('SharedAccessSignature '.length).split('&').map((p) => p.split(/=(.*)/s).slice(0, 2)));
    const mac = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${f.sr}\n${f.se}`).digest('base64');
    assert.equal(decodeURIComponent(f.sig), mac);
    assert.equal(decodeURIComponent(f.sr), `${host}/devices/${id}`);
  }
});

test('a wrong key gives a different signature', () => {
  const key = crypto.randomBytes(32).toString('base64');
  const other = crypto.randomBytes(32).toString('base64');
  const r = tool(['token', '-', '1700000000'], `HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey=${other}`);
  assert.notEqual(r.out, sdkToken('h.azure-devices.net', 'd1', key, 1700000000));
});

test('connection strings parse as azure-iot-device parses them (GatewayHostName, order, = in keys)', () => {
  const key = crypto.randomBytes(32).toString('base64'); // ends in '='
  const strings = [
    `HostName=hub.azure-devices.net;DeviceId=sim-1;SharedAccessKey=${key}`,
    `DeviceId=sim-2;SharedAccessKey=${key};HostName=enviromon.azure-devices.net;GatewayHostName=localhost:8883`,
    `HostName=a.azure-devices.net;DeviceId=d;SharedAccessKey=${key};GatewayHostName=edge.local;`,
    `HostName=first.azure-devices.net;HostName=second.azure-devices.net;DeviceId=d;SharedAccessKey=${key}`,
  ];
  for (const s of strings) {
    const sdk = ConnectionString.parse(s);
    const r = tool(['parse', '-'], s);
    assert.equal(r.status, 0, r.out + r.err);
    const c = JSON.parse(r.out);
    assert.equal(c.host, sdk.HostName);
    assert.equal(c.deviceId, sdk.DeviceId);
    assert.equal(c.gateway, sdk.GatewayHostName ?? '');
    assert.equal(c.keyLength, Buffer.from(sdk.SharedAccessKey, 'base64').length);
  }
});

test('bad connection strings: one clear line, never the key', () => {
  const key = 'c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwMTIzNA==';
  const cases = [
    [`HostName=h.azure-devices.net;SharedAccessKey=${key}`, /no DeviceId/],
    [`DeviceId=d;SharedAccessKey=${key}`, /no HostName/],
    ['HostName=h.azure-devices.net;DeviceId=d', /no SharedAccessKey/],
    [`HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=not base64!`, /not a base64 key/],
    [`hostname=h.azure-devices.net;DeviceId=d;SharedAccessKey=${key}`, /'hostname' should be spelled 'HostName'/],
    [`HostName=h.azure-devices.net;DeviceId=d/e;SharedAccessKey=${key}`, /characters IoT Hub does not allow/],
    [`HostName=https://h.azure-devices.net;DeviceId=d;SharedAccessKey=${key}`, /HostName must be a host name/],
    [`HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=${key};ModuleId=m`, /ModuleId/],
    [`HostName=h.azure-devices.net;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=x`, /cannot be renewed/],
    [`HostName=h.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`, /hub \(service\) connection string/],
    ['just some text', /has no '='/],
  ];
  for (const [s, re] of cases) {
    const r = tool(['parse', '-'], s);
    assert.equal(r.status, 1, s);
    assert.match(r.out, re, s);
    assert.equal(r.out.split('\n').length, 1);
    assert.ok(!r.out.includes(key) && !r.out.includes('c2VjcmV0'), 'the key must not be echoed');
  }
});
