// devhost's local CA and server certificate (src/devhost/mqtt/tls_ca.c), checked with Node's
// own X.509 and TLS code: created at first start with private keys 0600, the server
// certificate valid for localhost / 127.0.0.1 / ::1 and signed by ca.pem, served by the MQTT
// endpoint, reused on later starts, re-issued (under the same CA) when missing or foreign, and
// a CA whose key is gone is an error that says what to do — never silently replaced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { spawnTied } from './lib/proc.mjs';
import { startTestHub, tmpDir, testhubBin } from './lib/mqtt.mjs';

const read = (dir, f) => fs.readFileSync(path.join(dir, f));
const mode = (dir, f) => fs.statSync(path.join(dir, f)).mode & 0o777;

async function startStop(data) {
  const hub = await startTestHub({ data });
  const r = await hub.stop();
  assert.equal(r.code, 0, hub.err());
  return hub;
}

function peerCert(port, caPem, host) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port, ca: caPem, servername: host === '::1' || host === '127.0.0.1' ? undefined : host }, () => {
      const der = s.getPeerX509Certificate();
      s.destroy();
      resolve(der);
    });
    s.on('error', reject);
  });
}

test('first start: CA and server certificate created, keys 0600, certificate verified by Node for localhost and 127.0.0.1', async () => {
  const data = path.join(tmpDir(), 'nested', 'data');
  const hub = await startTestHub({ data });
  try {
    assert.equal(hub.createdCa, true);
    assert.equal(hub.issuedCert, true);
    assert.equal(hub.ca, path.join(data, 'ca.pem'));
    assert.equal(fs.statSync(data).mode & 0o777, 0o700);
    assert.equal(mode(data, 'ca-key.pem'), 0o600);
    assert.equal(mode(data, 'server-key.pem'), 0o600);
    const ca = new crypto.X509Certificate(read(data, 'ca.pem'));
    const cert = new crypto.X509Certificate(read(data, 'server.pem'));
    assert.equal(ca.ca, true);
    assert.equal(cert.ca, false);
    assert.ok(cert.verify(ca.publicKey), 'server.pem is not signed by ca.pem');
    assert.ok(cert.checkIssued(ca));
    assert.equal(cert.checkHost('localhost'), 'localhost');
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.ok(cert.checkIP('::1'));
    assert.equal(cert.checkHost('example.com'), undefined);
    assert.ok(new Date(cert.validTo) > new Date(Date.now() + 700 * 86400e3));
    assert.ok(new Date(ca.validTo) > new Date(Date.now() + 3000 * 86400e3));
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']); // extended key usage: serverAuth
    // private keys are what they claim to be
    const caKey = crypto.createPrivateKey(read(data, 'ca-key.pem'));
    assert.ok(ca.checkPrivateKey(caKey));
    assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(read(data, 'server-key.pem'))));
    // the endpoint serves that certificate, and Node's TLS accepts it by name and by IP
    for (const host of ['localhost', '127.0.0.1']) {
      const served = await peerCert(hub.port, hub.caPem, host);
      assert.equal(served.fingerprint256, cert.fingerprint256);
    }
  } finally {
    assert.equal((await hub.stop()).code, 0);
  }
});

test('later starts reuse everything; a missing or foreign server certificate is re-issued under the same CA', async () => {
  const data = tmpDir();
  await startStop(data);
  const files = ['ca.pem', 'ca-key.pem', 'server.pem', 'server-key.pem'];
  const first = Object.fromEntries(files.map((f) => [f, read(data, f).toString()]));
  const again = await startStop(data);
  assert.equal(again.createdCa, false);
  assert.equal(again.issuedCert, false);
  for (const f of files) assert.equal(read(data, f).toString(), first[f], `${f} changed`);

  fs.unlinkSync(path.join(data, 'server.pem'));
  const reissued = await startStop(data);
  assert.equal(reissued.createdCa, false);
  assert.equal(reissued.issuedCert, true);
  assert.equal(read(data, 'ca.pem').toString(), first['ca.pem']);
  const ca = new crypto.X509Certificate(read(data, 'ca.pem'));
  assert.ok(new crypto.X509Certificate(read(data, 'server.pem')).verify(ca.publicKey));

  // a certificate from another data folder's CA is not trusted by this ca.pem: re-issued
  const other = tmpDir();
  await startStop(other);
  fs.copyFileSync(path.join(other, 'server.pem'), path.join(data, 'server.pem'));
  fs.copyFileSync(path.join(other, 'server-key.pem'), path.join(data, 'server-key.pem'));
  const fixed = await startStop(data);
  assert.equal(fixed.issuedCert, true);
  assert.ok(new crypto.X509Certificate(read(data, 'server.pem')).verify(ca.publicKey));
  assert.notEqual(read(other, 'ca.pem').toString(), first['ca.pem']);
});

test('keys found readable by others are tightened to 0600', async () => {
  const data = tmpDir();
  await startStop(data);
  fs.chmodSync(path.join(data, 'ca-key.pem'), 0o644);
  fs.chmodSync(path.join(data, 'server-key.pem'), 0o640);
  await startStop(data);
  assert.equal(mode(data, 'ca-key.pem'), 0o600);
  assert.equal(mode(data, 'server-key.pem'), 0o600);
});

test('a CA whose key is gone: start fails with what to do, and ca.pem is left as it was', async () => {
  const data = tmpDir();
  await startStop(data);
  const ca = read(data, 'ca.pem').toString();
  fs.unlinkSync(path.join(data, 'ca-key.pem'));
  const proc = spawnTied(testhubBin, ['--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((r) => proc.on('exit', r));
  assert.notEqual(code, 0);
  assert.match(err, /ca\.pem exists but its key .*ca-key\.pem cannot be read.*delete .*ca\.pem to create a new CA/);
  assert.equal(read(data, 'ca.pem').toString(), ca);
  assert.equal(fs.existsSync(path.join(data, 'ca-key.pem')), false);
});
