// authLevel under `devhost start`: like `func start`, keys are not enforced by default; with
// --enable-auth a function key and a master key are generated once into the data folder (mode
// 0600, kept across restarts), the function key is printed at start (and is the only secret
// devhost ever prints), `function` functions need it (?code= or x-functions-key), `admin` ones
// and /admin need the master key; the handler sees the identity the host would give it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeApp, startDevhost, tempDir } from './lib/devhost.mjs';

const fn = (authLevel, route) => ({ bindings: [{ type: 'httpTrigger', direction: 'in', name: 'req', authLevel, route },
  { type: 'http', direction: 'out', name: 'res' }] });
const app = makeApp({ functions: { Open: fn('anonymous', 'open'), Keyed: fn('function', 'keyed'), Admin: fn('admin', 'admin-only') } });
const data = tempDir('authdata');
after(() => { app.cleanup(); fs.rmSync(data, { recursive: true, force: true }); });

const identity = () => {
  const inv = app.records().filter((r) => r.event === 'invoke').at(-1);
  const id = inv.body.Data.req.Identities[0];
  return [id.AuthenticationType, ...id.Claims.map((c) => `${c.Type.split('/').pop()}=${c.Value}`)].join(' ');
};

test('without --enable-auth keys are not checked, as in func start', async () => {
  const dh = await startDevhost(app.root, { data });
  try {
    const r = await fetch(`${dh.url}/api/keyed`);
    assert.equal(r.status, 200);
    assert.equal(identity(), 'WebJobsAuthLevel authlevel=Admin'); // the bypass handler grants Admin
    assert.equal((await fetch(`${dh.url}/api/admin-only`)).status, 200);
    assert.equal((await fetch(`${dh.url}/admin/host/status`)).status, 200);
    assert.equal(fs.existsSync(path.join(data, 'keys.json')), false, 'no keys are made without --enable-auth');
  } finally {
    await dh.stop();
  }
});

test('--enable-auth: generated keys, printed once, enforced per authLevel, kept across restarts', async () => {
  let dh = await startDevhost(app.root, { data, args: ['--enable-auth'], ready: false });
  let functionKey;
  try {
    const m = await (async () => {
      for (let i = 0; i < 300; i++) {
        const x = /Function key \(authLevel "function"; \?code= or x-functions-key\): (\S+)/.exec(dh.logs());
        if (x) return x;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no key printed:\n${dh.logs()}`);
    })();
    functionKey = m[1];
    const file = path.join(data, 'keys.json');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const keys = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(keys.functionKey, functionKey);
    assert.ok(keys.masterKey.length >= 40 && keys.masterKey !== functionKey);
    const master = keys.masterKey;
    for (let i = 0; i < 200 && !(await fetch(`${dh.url}/admin/host/status`, { headers: { 'x-functions-key': master } })
      .then((r) => r.ok && r.json()).then((s) => s && s.state === 'Running').catch(() => false)); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const before = app.records().filter((r) => r.event === 'invoke').length;
    const get = (p, headers = {}) => fetch(`${dh.url}${p}`, { headers }).then((r) => r.status);
    assert.equal(await get('/api/keyed'), 401);
    assert.equal(await get('/api/keyed?code=wrong'), 401);
    assert.equal(await get('/api/keyed', { 'x-functions-key': `${functionKey}x` }), 401);
    assert.equal(app.records().filter((r) => r.event === 'invoke').length, before, 'refused requests reach no handler');
    assert.equal(await get(`/api/keyed?code=${encodeURIComponent(functionKey)}`), 200);
    assert.equal(identity(), 'WebJobsAuthLevel authlevel=Function keyid=default');
    assert.equal(await get('/api/keyed', { 'x-functions-key': functionKey }), 200);
    assert.equal(await get('/api/keyed', { 'x-functions-key': master }), 200);
    assert.equal(identity(), 'WebJobsAuthLevel authlevel=Admin keyid=master');
    assert.equal(await get('/api/admin-only', { 'x-functions-key': functionKey }), 401);
    assert.equal(await get(`/api/admin-only?code=${encodeURIComponent(master)}`), 200);
    assert.equal(await get('/api/open'), 200);
    assert.equal(identity(), ''); // anonymous, no key: no authentication ran
    const inv = app.records().filter((r) => r.event === 'invoke').at(-1);
    assert.equal(inv.body.Data.req.Identities[0].IsAuthenticated, false);
    assert.equal(await get('/admin/host/status'), 401);
    assert.equal(await get('/admin/host/status', { 'x-functions-key': functionKey }), 401);
    assert.equal(await get('/admin/host/status', { 'x-functions-key': master }), 200);
    // The key appears once (the start line); the master key never; the query's code is not logged.
    assert.equal(dh.logs().split(functionKey).length - 1, 1, dh.logs());
    assert.equal(dh.logs().includes(master), false);
  } finally {
    await dh.stop();
  }
  dh = await startDevhost(app.root, { data, args: ['--enable-auth'], ready: false });
  try {
    for (let i = 0; i < 300 && !/Function key/.test(dh.logs()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(dh.logs(), new RegExp(`: ${functionKey.replace(/[-]/g, '\\-')}\\n`), 'the same key after a restart');
  } finally {
    await dh.stop();
  }
});
