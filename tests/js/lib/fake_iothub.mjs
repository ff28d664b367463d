// A fault-injecting stand-in for IoT Hub's device endpoints, for the simulator's tests of
// behaviour the real local hub (devhost) does not show on demand: throttling (429), 5xx,
// dropped connections, missing PUBACKs, refused CONNACKs, token expiry.
//
// It speaks just enough of the two device protocols, written from the protocol documents
// (not from the simulator's code): HTTP `POST /devices/{id}/messages/events` and MQTT 3.1.1
// over TLS (CONNECT/CONNACK, PUBLISH QoS 1/PUBACK, PINGREQ, DISCONNECT). Every SAS token is
// checked independently with Node's crypto: HMAC-SHA256 over `sr + "\n" + se` with the
// device key, `sr` naming the device, `se` in the future. What was stored is recorded per
// device with its message id, so tests compare exactly.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { execFileSync } from 'node:child_process';

export const HUB = 'fakehub.azure-devices.net';

/** A CA and a server certificate for localhost / 127.0.0.1, made with the openssl CLI. */
export function makeCerts(dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fakehub-'))) {
  const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=fakehub test CA', '-keyout', 'ca.key', '-out', 'ca.pem']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost',
    '-keyout', 'server.key', '-out', 'server.csr']);
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'ext.cnf', '-out', 'server.pem']);
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    key: fs.readFileSync(path.join(dir, 'server.key')),
    cert: fs.readFileSync(path.join(dir, 'server.pem')),
  };
}

export function newKey() { return crypto.randomBytes(32).toString('base64'); }

export function connectionString(deviceId, key, extra = '') {
  return `HostName=${HUB};DeviceId=${deviceId};SharedAccessKey=${key}${extra}`;
}

/** Check a SAS token for deviceId. Returns null when valid, else the reason. */
export function checkSas(token, deviceId, key, nowS = Math.floor(Date.now() / 1000)) {
  if (typeof token !== 'string' || !token.startsWith('SharedAccessSignature ')) return 'not a SharedAccessSignature';
  const fields = {};
  for (const part of token.slice('SharedAccessSignature '.length).split('&')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields[part.slice(0, eq)] = part.slice(eq + 1);
  }
  if (!fields.sr || !fields.sig || !fields.se) return 'missing sr, sig or se';
  const mac = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${fields.sr}\n${fields.se}`).digest('base64');
  if (decodeURIComponent(fields.sig) !== mac) return 'bad signature';
  if (decodeURIComponent(fields.sr) !== `${HUB}/devices/${deviceId}`) return `sr names ${decodeURIComponent(fields.sr)}`;
  if (Number(fields.se) <= nowS) return 'expired';
  return null;
}

/**
 * Start the fake hub. devices: {id: key}. Options for faults, all changeable later on the
 * returned object's `faults`:
 *   httpStatus(req, n) -> status or 0   status to answer instead of storing (n = request number)
 *   httpDestroy(n)     -> bool          drop the connection without an answer (after reading)
 *   httpStoreThenDestroy(n) -> bool     store the message, then drop the connection unanswered
 *                                       (a hub that crashed between its write and its 204)
 *   mqttConnack(id)    -> code or 0     CONNACK return code for a CONNECT
 *   mqttDropPublish(n) -> bool          close the connection instead of PUBACKing publish n
 *   mqttIgnorePublish(n) -> bool        store it but never PUBACK
 * Returns {httpUrl, mqttUrl, ca, stored, connects, close(), ...}.
 */
export async function startFakeHub(devices, faults = {}) {
  const certs = makeCerts();
  const state = {
    faults,
    stored: new Map(),        // deviceId -> [{messageId, body, props, via}]
    refusedHttp: 0,
    httpRequests: 0,
    publishes: 0,
    connects: [],             // {deviceId, username, ok, code, at}
    tokensSeen: new Map(),    // deviceId -> Set of distinct se values
    mqttSockets: new Set(),
  };
  const store = (deviceId, messageId, body, props, via) => {
    if (!state.stored.has(deviceId)) state.stored.set(deviceId, []);
    state.stored.get(deviceId).push({ messageId, body, props, via });
  };
  const noteToken = (deviceId, token) => {
    const se = /[?&\s]se=(\d+)/.exec(' ' + token.replace('SharedAccessSignature ', '&'))?.[1];
    if (!state.tokensSeen.has(deviceId)) state.tokensSeen.set(deviceId, new Set());
    if (se) state.tokensSeen.get(deviceId).add(se);
  };

  // ---- HTTP ------------------------------------------------------------------------------
  const httpServer = http.createServer((req, res) => {
    const n = ++state.httpRequests;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const m = /^\/devices\/([^/?]+)\/messages\/events\?api-version=/.exec(req.url);
      const deviceId = m ? decodeURIComponent(m[1]) : null;
      const reply = (status, code, text) => {
        state.refusedHttp++;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ Message: `ErrorCode:${code};${text}`, ExceptionMessage: '' }));
      };
      if (req.method !== 'POST' || !deviceId) return reply(404, 'NotFound', 'no such route');
      if (state.faults.httpDestroy?.(n)) { req.socket.destroy(); return; }
      const key = devices[deviceId];
      if (!key) return reply(404, 'DeviceNotFound', deviceId);
      const why = checkSas(req.headers.authorization, deviceId, key);
      if (why) return reply(401, 'IotHubUnauthorizedAccess', why);
      noteToken(deviceId, req.headers.authorization);
      const forced = state.faults.httpStatus?.(req, n) || 0;
      if (forced) return reply(forced, forced === 429 ? 'ThrottlingException' : 'ServerError', 'injected');
      const props = {};
      for (const [k, v] of Object.entries(req.headers)) if (k.startsWith('iothub-app-')) props[k.slice(11)] = v;
      store(deviceId, req.headers['iothub-messageid'], Buffer.concat(chunks).toString(), props, 'http');
      if (state.faults.httpStoreThenDestroy?.(n)) { req.socket.destroy(); return; }
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise((r) => httpServer.listen(0, '127.0.0.1', r));

  // ---- MQTT over TLS -----------------------------------------------------------------------
  const mqttServer = tls.createServer({ key: certs.key, cert: certs.cert }, (sock) => {
    state.mqttSockets.add(sock);
    sock.on('close', () => state.mqttSockets.delete(sock));
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    let deviceId = null;
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (buf.length < 2) return;
        let len = 0, mul = 1, i = 1, b;
        do {
          if (i >= buf.length) return;
          b = buf[i++];
          len += (b & 127) * mul;
          mul *= 128;
        } while (b & 128);
        if (buf.length < i + len) return;
        const type = buf[0] >> 4, flags = buf[0] & 15;
        const body = buf.subarray(i, i + len);
        buf = buf.subarray(i + len);
        if (!handle(type, flags, body)) return;
      }
    });
    const str = (b, o) => { const n = b.readUInt16BE(o); return [b.subarray(o + 2, o + 2 + n).toString(), o + 2 + n]; };
    function handle(type, flags, body) {
      if (type === 1) { // CONNECT
        let o = 0, proto;
        [proto, o] = str(body, o);
        const level = body[o++], cflags = body[o++];
        o += 2; // keep-alive
        let clientId, username = '', password = '';
        [clientId, o] = str(body, o);
        if (cflags & 0x80) [username, o] = str(body, o);
        if (cflags & 0x40) [password, o] = str(body, o);
        let code = 0;
        const key = devices[clientId];
        if (proto !== 'MQTT' || level !== 4) code = 1;
        else if (!key || !username.startsWith(`${HUB}/${clientId}/?api-version=`)) code = 5;
        else if (checkSas(password, clientId, key)) code = 5;
        code = state.faults.mqttConnack?.(clientId) || code;
        state.connects.push({ deviceId: clientId, username, ok: code === 0, code, at: Date.now() });
        sock.write(Buffer.from([0x20, 2, 0, code]));
        if (code) { sock.end(); return false; }
        deviceId = clientId;
        noteToken(deviceId, password);
        return true;
      }
      if (!deviceId) { sock.destroy(); return false; }
      if (type === 3) { // PUBLISH
        const qos = (flags >> 1) & 3;
        let [topic, o] = str(body, 0);
        let pid = 0;
        if (qos > 0) { pid = body.readUInt16BE(o); o += 2; }
        const n = ++state.publishes;
        const prefix = `devices/${deviceId}/messages/events/`;
        if (!topic.startsWith(prefix)) { sock.destroy(); return false; }
        if (state.faults.mqttDropPublish?.(n)) { sock.destroy(); return false; }
        const props = Object.fromEntries(new URLSearchParams(topic.slice(prefix.length)));
        const messageId = props['$.mid'];
        const app = Object.fromEntries(Object.entries(props).filter(([k]) => !k.startsWith('$.')));
        store(deviceId, messageId, body.subarray(o).toString(), app, 'mqtt');
        if (qos === 1 && !state.faults.mqttIgnorePublish?.(n)) sock.write(Buffer.from([0x40, 2, pid >> 8, pid & 255]));
        return true;
      }
      if (type === 12) { sock.write(Buffer.from([0xd0, 0])); return true; } // PINGREQ
      if (type === 14) { sock.end(); return false; } // DISCONNECT
      if (type === 8) { // SUBSCRIBE: grant QoS 0 to each
        const pid = body.readUInt16BE(0);
        sock.write(Buffer.from([0x90, 3, pid >> 8, pid & 255, 0]));
        return true;
      }
      sock.destroy();
      return false;
    }
  });
  await new Promise((r) => mqttServer.listen(0, '127.0.0.1', r));

  return {
    ...state,
    get stored() { return state.stored; },
    get connects() { return state.connects; },
    get publishes() { return state.publishes; },
    get httpRequests() { return state.httpRequests; },
    state,
    ca: certs.ca,
    httpUrl: `http://127.0.0.1:${httpServer.address().port}`,
    mqttUrl: `mqtts://localhost:${mqttServer.address().port}`,
    mqttPort: mqttServer.address().port,
    /** Drop every MQTT connection now (as a crashed hub would). */
    dropAll() { for (const s of state.mqttSockets) s.destroy(); },
    storedIds(deviceId) { return (state.stored.get(deviceId) ?? []).map((m) => Number(m.messageId)); },
    async close() {
      for (const s of state.mqttSockets) s.destroy();
      httpServer.closeAllConnections?.();
      await Promise.all([new Promise((r) => httpServer.close(r)), new Promise((r) => mqttServer.close(r))]);
      fs.rmSync(certs.dir, { recursive: true, force: true });
    },
  };
}
