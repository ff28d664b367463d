// signalr_token.test.mjs — cross-checks the C SignalR token library (through the
// tests/tools/sr_token helper) against an independent JWT implementation (jsonwebtoken).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import jwt from 'jsonwebtoken';

const TOOL = path.join(process.env.ENVIROMON_TEST_TOOLS ?? 'build/release/tests/tools', 'sr_token');
const KEY = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH';
const CONN = `Endpoint=http://localhost;Port=8888;AccessKey=${KEY};Version=1.0;`;

function tool(args, env = {}) {
  return spawnSync(TOOL, args, { env: { ...process.env, SR_TOKEN_KEY: KEY, ...env }, encoding: 'utf8' });
}

test('a token minted in C verifies with jsonwebtoken using the raw key bytes', () => {
  const conn = JSON.parse(execFileSync(TOOL, ['conn', 'Enviromon'], { env: { ...process.env, SR_CONN: CONN }, encoding: 'utf8' }));
  assert.equal(conn.clientUrl, 'http://localhost:8888/client/?hub=enviromon');
  assert.equal(conn.audience, 'http://localhost/client/?hub=enviromon');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const r = tool(['mint', conn.audience, String(exp), 'alice@example']);
  assert.equal(r.status, 0, r.stderr);
  const token = r.stdout.trim();
  const claims = jwt.verify(token, Buffer.from(KEY, 'utf8'), { algorithms: ['HS256'], audience: conn.audience });
  assert.equal(claims.aud, conn.audience);
  assert.equal(claims.exp, exp);
  assert.equal(claims.nameid, 'alice@example');
  const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
  assert.deepEqual(header, { alg: 'HS256', typ: 'JWT' });
  // The base64-decoded key (a common mistake) must not verify it.
  assert.throws(() => jwt.verify(token, Buffer.from(KEY, 'base64'), { algorithms: ['HS256'] }), /invalid signature/);
});

test('a token minted by jsonwebtoken verifies in C; expiry, audience and tampering are caught', () => {
  const aud = 'http://localhost/api/hubs/enviromon/:send?api-version=2022-06-01';
  const now = Math.floor(Date.now() / 1000);
  const token = jwt.sign({ aud, 'asrs.s.uid': 'bob' }, Buffer.from(KEY, 'utf8'), { algorithm: 'HS256', expiresIn: 600 });
  let r = tool(['verify', token, aud, String(now)]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.status, 'ok');
  assert.equal(out.userId, 'bob');
  assert.equal(out.aud, aud);
  r = tool(['verify', token, aud, String(now + 601)]);
  assert.equal(JSON.parse(r.stdout).status, 'token expired');
  assert.equal(r.status, 1);
  r = tool(['verify', token, 'http://localhost/api/hubs/other/:send?api-version=2022-06-01', String(now)]);
  assert.equal(JSON.parse(r.stdout).status, 'wrong audience');
  const [h, p, s] = token.split('.');
  const forged = Buffer.from(JSON.stringify({ aud, exp: now + 99999 })).toString('base64url');
  r = tool(['verify', `${h}.${forged}.${s}`, aud, String(now)]);
  assert.equal(JSON.parse(r.stdout).status, 'bad signature');
  const none = jwt.sign({ aud, exp: now + 60 }, null, { algorithm: 'none' });
  r = tool(['verify', none, aud, String(now)]);
  assert.equal(JSON.parse(r.stdout).status, 'malformed token');
  const hs512 = jwt.sign({ aud, exp: now + 60 }, Buffer.from(KEY), { algorithm: 'HS512' });
  r = tool(['verify', hs512, aud, String(now)]);
  assert.equal(JSON.parse(r.stdout).status, 'malformed token');
  r = tool(['verify', `${h}.${p}.${s}`, aud, String(now)], { SR_TOKEN_KEY: 'another key' });
  assert.equal(JSON.parse(r.stdout).status, 'bad signature');
});

test('the reference vector is reproduced byte for byte', () => {
  const r = tool(['mint', 'http://localhost/api/hubs/telemetry/:send', '2000000000']);
  assert.equal(r.stdout.trim(),
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwOi8vbG9jYWxob3N0L2FwaS9odWJzL3RlbGVtZXRyeS86c2VuZCIsImV4cCI6MjAwMDAwMDAwMH0.DudGrS6uu4ZeM9-D1NjPx9r0ChP64y3Qy9FWItIkQU4');
  // jsonwebtoken agrees on the signature for the same header and payload.
  const js = jwt.sign({ aud: 'http://localhost/api/hubs/telemetry/:send', exp: 2000000000 }, Buffer.from(KEY), { algorithm: 'HS256', noTimestamp: true });
  assert.equal(js, r.stdout.trim());
});
