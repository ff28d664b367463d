// SendSignalr against the real handler: what reaches Outputs.signalRMessages for every kind of
// body and target, and every client error (400/405/413) as a JSON res.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHandler, invoke, httpReq } from './lib/handler.mjs';
import { httpResult, expectError } from './lib/functions.mjs';

const URL_ = 'http://localhost:7071/api/SendSignalrMessage';
let h;
before(async () => { h = await startHandler({ ENVIROMON_MAX_BODY_BYTES: String(4 * 1024 * 1024) }); });
after(async () => {
  const r = await h.stop();
  assert.equal(r.code, 0, `handler exit ${JSON.stringify(r)}: ${h.stderr()}`);
});

const send = async (opts) => httpResult(await invoke(h, 'SendSignalr', { req: httpReq({ method: 'POST', url: URL_, ...opts }) }));

test('a JSON object is broadcast as newMessage with 202', async () => {
  const msg = { deviceId: 'dev1', temperature: 21.5, nested: { a: [1, 2, null] }, text: 'héllo "x"' };
  const res = await send({ body: msg, headers: { 'Content-Type': 'application/json' } });
  assert.equal(res.status, 202);
  assert.equal(res.body.sentTo, 'all');
  assert.deepEqual(res.messages, [{ target: 'newMessage', arguments: [msg] }]);
});

test('a JSON array is sent as one argument, not spread', async () => {
  const arr = [{ deviceId: 'a' }, { deviceId: 'b' }];
  const res = await send({ body: JSON.stringify(arr) });
  assert.equal(res.status, 202);
  assert.equal(res.messages.length, 1);
  assert.deepEqual(res.messages[0].arguments, [arr]);
});

test('?userId= and ?group= target the message (Query as object or as an old-host string)', async () => {
  let res = await send({ body: { x: 1 }, query: { userId: 'alice' } });
  assert.equal(res.status, 202);
  assert.deepEqual(res.messages, [{ target: 'newMessage', arguments: [{ x: 1 }], userId: 'alice' }]);
  res = await send({ body: { x: 2 }, query: { group: 'lab' }, queryAsString: true });
  assert.equal(res.status, 202);
  assert.deepEqual(res.messages, [{ target: 'newMessage', arguments: [{ x: 2 }], groupName: 'lab' }]);
  assert.equal(res.body.sentTo, 'group');
});

test('both targets, or an empty one: 400 and nothing sent', async () => {
  for (const query of [{ userId: 'a', group: 'g' }, { userId: '' }, { group: '' }, { group: 'g'.repeat(1025) }]) {
    const res = await send({ body: { x: 1 }, query });
    expectError(res, 400, /userId|group/);
    assert.equal(res.messages, undefined, `sent despite ${JSON.stringify(query)}`);
  }
});

test('empty, blank, invalid or non-container bodies: 400 and nothing sent', async () => {
  const cases = [
    [undefined, /empty body/],
    ['', /empty body/],
    ['  \r\n\t', /empty body/],
    ['{"a":', /not valid JSON/],
    ['{"a":1} trailing', /not valid JSON/],
    ['{"a":1}{"b":2}', /not valid JSON/],
    ['not json', /not valid JSON/],
    ['42', /object or array/],
    ['"just a string"', /object or array/],
    ['null', /object or array/],
    ['['.repeat(5000), /not valid JSON/],
  ];
  for (const [body, re] of cases) {
    const res = await send({ body });
    expectError(res, 400, re);
    assert.equal(res.messages, undefined, `sent despite body ${JSON.stringify(body)?.slice(0, 40)}`);
  }
});

test('a body of exactly 1 MiB is accepted; one byte more is 413', async () => {
  const limit = 1024 * 1024;
  const pad = (n) => JSON.stringify({ p: 'x'.repeat(n - 8) }); // {"p":"…"} is n bytes
  const exact = pad(limit);
  assert.equal(Buffer.byteLength(exact), limit);
  let res = await send({ body: exact });
  assert.equal(res.status, 202);
  assert.equal(res.messages[0].arguments[0].p.length, limit - 8);
  res = await send({ body: pad(limit + 1) });
  expectError(res, 413, /1 MiB/);
  assert.equal(res.messages, undefined);
});

test('wrong method and a missing request are client errors, not crashes', async () => {
  expectError(await send({ method: 'GET', body: { x: 1 } }), 405, /POST/);
  expectError(httpResult(await invoke(h, 'SendSignalr', {})), 400, /Data\.req/);
  expectError(httpResult(await invoke(h, 'SendSignalr', { req: 'garbage' })), 400, /Data\.req/);
});
