// MQTT test helpers: start tests/tools/mqtt_testhub (devhost's MQTT endpoint with an
// in-memory backend), mint device SAS tokens with Microsoft's azure-iot-common, and a raw
// MQTT-over-TLS client whose packets are parsed by the mqtt-packet library (an independent
// implementation) so that tests can send exactly the bytes they mean, malformed ones included.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { repoRoot, waitFor } from './handler.mjs';
import { spawnTied } from './proc.mjs';

const require = createRequire(import.meta.url);
const mqttPacket = require('mqtt-packet');
const { SharedAccessSignature } = require('azure-iot-common');
const { encodeUriComponentStrict } = require('azure-iot-common/dist/authorization');

export { mqttPacket };
export const HUB = 'enviromon';
export const HUB_HOST = `${HUB}.azure-devices.net`;
const toolsDir = process.env.ENVIROMON_TEST_TOOLS || path.join(repoRoot, 'build', 'release', 'tests', 'tools');
export const testhubBin = path.join(toolsDir, 'mqtt_testhub');

export const deviceKey = () => crypto.randomBytes(32).toString('base64');

/** A device SAS token made by Microsoft's SDK code, valid for ttl seconds (may be negative). */
export function sas(deviceId, key, ttl = 3600, host = HUB_HOST) {
  const uri = encodeUriComponentStrict(`${host}/devices/${deviceId}`);
  return SharedAccessSignature.create(uri, null, key, Math.floor(Date.now() / 1000) + ttl).toString();
}

export const username = (deviceId, host = HUB_HOST) => `${host}/${deviceId}/?api-version=2021-04-12`;

export const tmpDir = (prefix = 'mqtt-') => fs.mkdtempSync(path.join(os.tmpdir(), prefix));

/**
 * Start mqtt_testhub. devices: {id: base64Key}. Returns {port, ca, caPem, data, proc,
 * events, waitEvent(pred), messages(), cmd(line) (async), stats(), stop(), out(), err()}.
 */
export async function startTestHub({ devices = {}, args = [], data = tmpDir() } = {}) {
  const env = {
    PATH: process.env.PATH,
    ASAN_OPTIONS: process.env.ASAN_OPTIONS,
    UBSAN_OPTIONS: process.env.UBSAN_OPTIONS,
    MQTT_TEST_DEVICES: Object.entries(devices).map(([id, k]) => `${id}=${k}`).join(';'),
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const wrapper = (process.env.ENVIROMON_WRAPPER || '').split(' ').filter(Boolean);
  const argv = ['--data', data, ...args];
  const proc = spawnTied(wrapper[0] || testhubBin, wrapper.length ? [...wrapper.slice(1), testhubBin, ...argv] : argv,
    { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let partial = '';
  const events = [];
  proc.stdout.on('data', (d) => {
    out += d;
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop();
    for (const l of lines) if (l.startsWith('{')) events.push(JSON.parse(l));
  });
  proc.stderr.on('data', (d) => { err += d; });
  let dead = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => { dead = { code, signal }; resolve(dead); }));
  const listening = await waitFor(() => {
    if (dead) throw new Error(`mqtt_testhub exited (${JSON.stringify(dead)}): ${err}`);
    return events.find((e) => e.event === 'listening');
  }, { timeoutMs: 20000, what: 'mqtt_testhub to listen' });
  const waitEvent = (pred, what = 'event', timeoutMs = 10000) =>
    waitFor(() => events.find(pred), { timeoutMs, what });
  return {
    ...listening,
    data,
    proc,
    events,
    exited,
    caPem: fs.readFileSync(listening.ca, 'utf8'),
    messages: () => events.filter((e) => e.event === 'message'),
    waitEvent,
    /** Send a command line; resolves once the tool has it in effect. */
    async cmd(line) {
      const n = events.filter((e) => e.event === 'command').length;
      proc.stdin.write(`${line}\n`);
      await waitFor(() => events.filter((e) => e.event === 'command').length > n, { what: `command ${line}` });
    },
    out: () => out,
    err: () => err,
    async stats() {
      await this.cmd('stats');
      return events.filter((e) => e.event === 'stats').at(-1);
    },
    async stop() {
      if (!dead) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * A raw MQTT client over TLS. send(obj) generates with mqtt-packet, send(Buffer) writes bytes
 * as they are. packets: what the server sent, parsed. closed: resolves when the server closes.
 */
export function rawClient(port, caPem, { host = '127.0.0.1', servername = 'localhost' } = {}) {
  return new Promise((resolve, reject) => {
    const packets = [];
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let isClosed = false;
    let parseError = null;
    parser.on('packet', (p) => packets.push(p));
    parser.on('error', (e) => { parseError = e; });
    const sock = tls.connect({ host, port, ca: caPem, servername });
    const closed = new Promise((res) => sock.on('close', () => { isClosed = true; res(); }));
    sock.on('data', (d) => parser.parse(d));
    sock.on('error', () => {});
    sock.once('secureConnect', () => resolve({
      sock,
      packets,
      closed,
      isClosed: () => isClosed,
      parseError: () => parseError,
      send: (p) => sock.write(Buffer.isBuffer(p) ? p : mqttPacket.generate(p)),
      waitPacket: (pred, what = 'packet', timeoutMs = 10000) =>
        waitFor(() => packets.find(typeof pred === 'string' ? (p) => p.cmd === pred : pred), { timeoutMs, what }),
      end: () => sock.destroy(),
    }));
    sock.once('error', reject);
  });
}

/** CONNECT packet object for deviceId with a valid token unless overridden. */
export function connectPacket(deviceId, key, over = {}) {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: deviceId,
    keepalive: 60,
    username: username(deviceId),
    password: Buffer.from(sas(deviceId, key)),
    ...over,
  };
}

/** Connect a raw client as deviceId and wait for CONNACK 0. */
export async function connected(hub, deviceId, key, over = {}) {
  const c = await rawClient(hub.port, hub.caPem);
  c.send(connectPacket(deviceId, key, over));
  const ack = await waitFor(() => {
    const p = c.packets.find((x) => x.cmd === 'connack');
    if (!p && c.isClosed()) throw new Error(`connection of ${deviceId} closed before CONNACK`);
    return p;
  }, { what: `CONNACK for ${deviceId}` });
  if (ack.returnCode !== 0) throw new Error(`CONNACK ${ack.returnCode} for ${deviceId}`);
  return c;
}
