// Helpers for the HTTP-function tests (Negotiate, GetDeviceState, SendSignalr): read the
// Outputs.res the function set and the SignalR messages it queued, checking on the way that
// the invocation itself was answered the way the Functions host needs (200 + JSON).
import assert from 'node:assert/strict';

export const EMULATOR_KEY = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH';
export const EMULATOR_CONN = `Endpoint=http://localhost;Port=8888;AccessKey=${EMULATOR_KEY};Version=1.0;`;

/** From an invoke() result: {status, body, contentType, messages, logs, raw}. */
export function httpResult(r) {
  assert.equal(r.status, 200, `the invocation itself must succeed for the res to be delivered: ${r.text}`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  assert.ok(r.json && typeof r.json.Outputs === 'object', `no Outputs in ${r.text}`);
  const res = r.json.Outputs.res;
  assert.ok(res, `no Outputs.res in ${r.text}`);
  assert.equal(typeof res.statusCode, 'number');
  assert.equal(res.status, undefined, 'statusCode, never status');
  assert.equal(typeof res.body, 'string', 'body is JSON text in a string');
  const body = JSON.parse(res.body);
  return {
    status: res.statusCode,
    body,
    contentType: res.headers?.['Content-Type'],
    messages: r.json.Outputs.signalRMessages,
    logs: r.json.Logs,
    raw: r.text,
  };
}

/** Assert an error reply {"error": "..."} with the status; returns the message. */
export function expectError(res, status, pattern) {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  assert.equal(typeof res.body.error, 'string');
  if (pattern) assert.match(res.body.error, pattern);
  assert.equal(res.contentType, 'application/json');
  return res.body.error;
}
