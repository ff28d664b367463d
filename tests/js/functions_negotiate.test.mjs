// Negotiate against the real handler: the signalRConnectionInfo binding value in every shape
// the host may send, the locally minted fallback (verified independently with jsonwebtoken),
// and the configuration errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import { startHandler, invoke, httpReq } from './lib/handler.mjs';
import { httpResult, expectError, EMULATOR_KEY, EMULATOR_CONN } from './lib/functions.mjs';

const NEG_URL = 'http://localhost:7071/api/negotiate?negotiateVersion=1';
let withConn, noConn, badConn;
before(async () => {
  [withConn, noConn, badConn] = await Promise.all([
    startHandler({ AzureSignalRConnectionString: EMULATOR_CONN }),
    startHandler({}),
    startHandler({ AzureSignalRConnectionString: 'Endpoint=ftp://nowhere;AccessKey=TOPSECRETKEY123;' }),
  ]);
});
after(async () => {
  for (const h of [withConn, noConn, badConn]) {
    const r = await h.stop();
    assert.equal(r.code, 0, `handler exit ${JSON.stringify(r)}: ${h.stderr()}`);
    assert.doesNotMatch(h.stdout() + h.stderr(), /TOPSECRETKEY123|ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH/);
  }
});

const info = { url: 'https://enviromon.service.signalr.net/client/?hub=enviromon', accessToken: 'eyJ.binding.token' };

test('the binding value double-encoded as the host sends it is returned as camelCase JSON', async () => {
  // The extension's value is JObject.ToString(); the custom-handler layer serialises that
  // string again, so Data.connectionInfo is a string whose content is a JSON string literal.
  const wire = JSON.stringify(JSON.stringify(info));
  const req = httpReq({ method: 'POST', url: NEG_URL, query: { negotiateVersion: '1' } });
  const r = await invoke(noConn, 'Negotiate', { req, connectionInfo: wire });
  const res = httpResult(r);
  assert.equal(res.status, 200);
  assert.equal(res.contentType, 'application/json');
  assert.deepEqual(res.body, info);
  assert.equal(res.messages, undefined, 'negotiate sends no SignalR message');
});

test('a once-encoded string, a plain object and PascalCase keys are accepted too', async () => {
  const req = httpReq({ method: 'POST', url: NEG_URL });
  for (const ci of [JSON.stringify(info), info, { Url: info.url, AccessToken: info.accessToken, TokenLifetimeSeconds: 3600 }]) {
    const res = httpResult(await invoke(noConn, 'negotiate', { req, connectionInfo: ci }));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, info, `for ${JSON.stringify(ci)}`);
    assert.deepEqual(Object.keys(res.body), ['url', 'accessToken']);
  }
});

test('the binding value wins over the connection string', async () => {
  const res = httpResult(await invoke(withConn, 'Negotiate', { req: httpReq({ method: 'POST' }), connectionInfo: JSON.stringify(info) }));
  assert.deepEqual(res.body, info);
});

test('without a binding value a token is minted from AzureSignalRConnectionString', async () => {
  const before = Math.floor(Date.now() / 1000);
  const req = httpReq({ method: 'POST', url: NEG_URL, headers: { 'X-MS-CLIENT-PRINCIPAL-ID': 'alice' } });
  const res = httpResult(await invoke(withConn, 'Negotiate', { req }));
  const after = Math.floor(Date.now() / 1000);
  assert.equal(res.status, 200);
  assert.equal(res.body.url, 'http://localhost:8888/client/?hub=enviromon');
  const aud = 'http://localhost/client/?hub=enviromon';
  // Independent verification: raw UTF-8 key bytes, HS256, audience, expiry.
  const claims = jwt.verify(res.body.accessToken, Buffer.from(EMULATOR_KEY, 'utf8'), { algorithms: ['HS256'], audience: aud });
  assert.equal(claims.aud, aud);
  assert.ok(claims.exp >= before + 3600 && claims.exp <= after + 3600, `exp ${claims.exp} not ~1 h ahead`);
  assert.equal(claims.nameid, 'alice');
  assert.throws(() => jwt.verify(res.body.accessToken, Buffer.from(EMULATOR_KEY, 'base64'), { algorithms: ['HS256'] }));
});

test('minted without a user id when the header is absent; GET, null binding and a string Query work', async () => {
  const req = httpReq({ method: 'GET', url: NEG_URL, query: { negotiateVersion: '1' }, queryAsString: true });
  const res = httpResult(await invoke(withConn, 'Negotiate', { req, connectionInfo: null }));
  assert.equal(res.status, 200);
  const claims = jwt.verify(res.body.accessToken, Buffer.from(EMULATOR_KEY, 'utf8'), { algorithms: ['HS256'] });
  assert.equal(claims.nameid, undefined);
  // No req at all (hostile/minimal payload) still mints.
  const bare = httpResult(await invoke(withConn, 'Negotiate', {}));
  assert.equal(bare.status, 200);
});

test('a binding value without url/accessToken falls back to minting', async () => {
  const res = httpResult(await invoke(withConn, 'Negotiate', { req: httpReq(), connectionInfo: JSON.stringify({ url: '' }) }));
  assert.equal(res.status, 200);
  assert.equal(res.body.url, 'http://localhost:8888/client/?hub=enviromon');
  assert.match(res.logs.join('\n'), /no url\/accessToken/);
});

test('neither binding value nor setting: a generic 500 for the caller, the missing setting in the log', async () => {
  const id = crypto.randomUUID();
  const res = httpResult(await invoke(noConn, 'Negotiate', { req: httpReq({ method: 'POST' }) }, {},
    { 'X-Azure-Functions-InvocationId': id }));
  const msg = expectError(res, 500, /negotiation is unavailable/);
  assert.ok(msg.includes(id), msg);
  assert.doesNotMatch(msg, /AzureSignalRConnectionString/);
  assert.match(res.logs.join('\n'), /AzureSignalRConnectionString setting is not set/);
  const res2 = httpResult(await invoke(noConn, 'Negotiate', { req: httpReq(), connectionInfo: '"{\\"url\\":\\"x\\"}"' }));
  expectError(res2, 500, /negotiation is unavailable/);
  assert.match(res2.logs.join('\n'), /AzureSignalRConnectionString/);
});

test('a malformed connection string: a generic 500 that quotes no configuration; the log explains it without the key', async () => {
  const r = await invoke(badConn, 'Negotiate', { req: httpReq({ method: 'POST' }) });
  const res = httpResult(r);
  const msg = expectError(res, 500, /negotiation is unavailable/);
  assert.doesNotMatch(msg, /AzureSignalRConnectionString|ftp|Endpoint|http or https/);
  assert.match(res.logs.join('\n'), /AzureSignalRConnectionString.*http or https/);
  assert.doesNotMatch(r.text, /TOPSECRET/);
});

test('an absurdly long principal id is refused', async () => {
  const req = httpReq({ headers: { 'x-ms-client-principal-id': 'u'.repeat(5000) } });
  expectError(httpResult(await invoke(withConn, 'Negotiate', { req })), 400, /x-ms-client-principal-id/);
});
