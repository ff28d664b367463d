// The dashboard's flow through `devhost start` with real parts only: the real ./handler, a
// private Azurite, the local SignalR Service that devhost runs in-process, Debian's Chromium
// (playwright-core) loading a page from devhost's dashboard folder with the official
// @microsoft/signalr browser bundle, and the official Node client. Also CORS as Core Tools
// configures it (preflights and real cross-origin fetches from pages on other origins) and the
// dashboard folder's safety (content types, CSP, no escaping the folder).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { TableClient } from '@azure/data-tables';
import { makeApp, startDevhost, freePort, waitFor, signalrConn, repoRoot } from './lib/devhost.mjs';
import { signalR } from './signalr_service_helpers.mjs';

const rootRequire = createRequire(path.join(repoRoot, 'package.json'));
const { chromium } = rootRequire('playwright-core');
const CONN = process.env.TEST_STORAGE_CONNECTION;
const suffix = crypto.randomBytes(4).toString('hex');
const TABLE = `DevhostState${suffix}`;
const PK = `devhost-${suffix}`;
const bundle = path.join(repoRoot, 'dashboard', 'node_modules', '@microsoft', 'signalr', 'dist', 'browser', 'signalr.min.js');

const page = {
  'index.html': '<!doctype html><html><head><meta charset="utf-8"><title>devhost test</title>\n'
    + '<link rel="icon" href="data:,">'
    + '<script src="signalr.min.js"></script><script src="app.js"></script></head><body><p>test</p></body></html>\n',
  'app.js': `window.received = []; window.errors = [];
document.addEventListener('securitypolicyviolation', (e) => window.errors.push('CSP ' + e.violatedDirective + ' ' + e.blockedURI));
const conn = new signalR.HubConnectionBuilder().withUrl(location.origin + '/api').configureLogging(signalR.LogLevel.Warning).build();
conn.on('newMessage', (m) => { window.received.push(m); }); // a handler must return nothing
conn.start().then(async () => {
  window.connected = true;
  const r = await fetch('/api/getdevicestate');
  window.snapshot = await r.json();
}).catch((e) => window.errors.push(String(e)));
`,
  'sub/inner.txt': 'inner',
};

// Pages on other origins, for real cross-origin fetches: GET / serves a page that calls devhost.
function originServer() {
  const s = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>other origin</title>');
  });
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s)));
}

let app, dh, browser, allowed, other, sigPort;

before(async () => {
  assert.ok(CONN, 'TEST_STORAGE_CONNECTION must be set (run through tests/run.sh)');
  assert.ok(fs.existsSync(bundle), `the @microsoft/signalr browser bundle is missing (${bundle}): run make deps`);
  const tc = TableClient.fromConnectionString(CONN, TABLE, { allowInsecureConnection: true });
  await tc.createTable();
  await tc.createEntity({ partitionKey: PK, rowKey: 'dev-a', DeviceId: 'dev-a', Celsius: 21.5, Humidity: 40,
    Count: { value: '3', type: 'Int64' }, LastSeen: new Date('2026-01-02T03:04:05Z'), Schema: 1 });
  [allowed, other] = await Promise.all([originServer(), originServer()]);
  sigPort = await freePort();
  app = makeApp({
    handler: 'real',
    values: {
      StorageConnectionString: CONN, DeviceStateTable: TABLE, PartitionKey: PK,
      AzureSignalRConnectionString: signalrConn(sigPort),
      IoTHubConnectionString: 'Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=s;SharedAccessKey=k;EntityPath=e',
      IoTHubEventHubName: 'e', IoTHubConsumerGroup: '$Default',
    },
    host: { CORS: `http://127.0.0.1:${allowed.address().port}`, CORSCredentials: true },
    dashboard: { ...page, 'signalr.min.js': fs.readFileSync(bundle) },
  });
  for (const f of ['EventTrigger', 'GetDeviceState', 'Negotiate', 'SendSignalr']) {
    fs.cpSync(path.join(repoRoot, f), path.join(app.root, f), { recursive: true });
  }
  fs.writeFileSync(path.join(app.root, 'local.settings.secret'), 'do-not-serve');
  dh = await startDevhost(app.root);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  const e = await dh?.stop('SIGINT');
  assert.equal(e?.code, 0, dh?.logs());
  allowed?.close();
  other?.close();
  app?.cleanup();
});

test('devhost runs the local SignalR Service in-process for the app\'s localhost connection string', async () => {
  await dh.waitLog(new RegExp(`runs the local SignalR Service in-process on localhost:${sigPort}`));
});

test('the browser: page from the dashboard folder, negotiate through /api, snapshot as newMessage, SendSignalrMessage arrives', async () => {
  const p = await browser.newPage();
  const consoleErrors = [];
  p.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  p.on('pageerror', (e) => consoleErrors.push(String(e)));
  p.on('response', (r) => { if (r.status() >= 400) consoleErrors.push(`${r.status()} ${r.url()}`); });
  try {
    await p.goto(`${dh.url}/`);
    await p.waitForFunction(() => window.connected || window.errors.length, null, { timeout: 30000 });
    assert.deepEqual(await p.evaluate(() => window.errors), []);
    // GetDeviceState answered the page and broadcast the snapshot as newMessage.
    await p.waitForFunction(() => window.snapshot && window.received.some(Array.isArray), null, { timeout: 30000 });
    const snapshot = await p.evaluate(() => window.snapshot);
    assert.equal(snapshot.length, 1);
    assert.equal(snapshot[0].deviceId, 'dev-a');
    assert.equal(snapshot[0].temperature, 21.5);
    const pushed = await p.evaluate(() => window.received.find(Array.isArray));
    assert.deepEqual(pushed, snapshot);
    // An operator's message through SendSignalrMessage reaches the page.
    const r = await fetch(`${dh.url}/api/SendSignalrMessage`, { method: 'POST', body: JSON.stringify({ hello: 'browser' }) });
    assert.equal(r.status, 202, await r.text());
    await p.waitForFunction(() => window.received.some((m) => m && m.hello === 'browser'), null, { timeout: 15000 });
    assert.deepEqual(consoleErrors, []);
  } finally {
    await p.close();
  }
});

test('the official Node client negotiates through devhost and receives newMessage', async () => {
  const conn = new signalR.HubConnectionBuilder().withUrl(`${dh.url}/api`).configureLogging(signalR.LogLevel.None).build();
  const got = [];
  conn.on('newMessage', (m) => got.push(m));
  await conn.start();
  try {
    const r = await fetch(`${dh.url}/api/getdevicestate?deviceId=dev-a`);
    assert.equal(r.status, 200);
    await waitFor(() => got.some((m) => Array.isArray(m) ? m[0]?.deviceId === 'dev-a' : m?.deviceId === 'dev-a'),
      { timeoutMs: 15000, what: 'the snapshot push' });
  } finally {
    await conn.stop();
  }
});

describe('CORS as Core Tools sets it (origins from Host.CORS, credentials)', () => {
  test('preflight from the allowed origin: 204 with the allow headers; from another origin: none', async () => {
    const allowedOrigin = `http://127.0.0.1:${allowed.address().port}`;
    const pre = (origin) => fetch(`${dh.url}/api/negotiate?negotiateVersion=1`, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-requested-with,x-signalr-user-agent' },
    });
    let r = await pre(allowedOrigin);
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), allowedOrigin);
    assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
    assert.equal(r.headers.get('access-control-allow-methods'), 'POST');
    assert.equal(r.headers.get('access-control-allow-headers'), 'x-requested-with,x-signalr-user-agent');
    r = await pre('http://evil.example');
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    assert.equal(r.headers.get('access-control-allow-credentials'), null);
    // The actual request from the allowed origin carries the headers too.
    r = await fetch(`${dh.url}/api/negotiate`, { method: 'POST', headers: { Origin: allowedOrigin } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), allowedOrigin);
    assert.equal(r.headers.get('vary'), 'Origin');
    r = await fetch(`${dh.url}/api/negotiate`, { method: 'POST', headers: { Origin: 'http://evil.example' } });
    assert.equal(r.headers.get('access-control-allow-origin'), null);
  });

  test('a real browser on the allowed origin can negotiate with credentials; on another origin it cannot', async () => {
    const p = await browser.newPage();
    try {
      const call = (origin) => p.goto(`${origin}/`).then(() => p.evaluate(async (u) => {
        try {
          const r = await fetch(u, { method: 'POST', credentials: 'include', headers: { 'X-Requested-With': 'XMLHttpRequest' } });
          const j = await r.json();
          return typeof j.url === 'string' ? 'ok' : 'bad';
        } catch (e) {
          return `blocked: ${e}`;
        }
      }, `${dh.url}/api/negotiate?negotiateVersion=1`));
      assert.equal(await call(`http://127.0.0.1:${allowed.address().port}`), 'ok');
      assert.match(await call(`http://127.0.0.1:${other.address().port}`), /^blocked/);
    } finally {
      await p.close();
    }
  });
});

describe('the dashboard folder', () => {
  test('/ is index.html with a Content-Security-Policy that allows the SignalR Service and no inline script', async () => {
    const r = await fetch(`${dh.url}/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(await r.text(), page['index.html']);
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /script-src 'self';/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, new RegExp(`connect-src 'self' http://localhost:${sigPort} ws://localhost:${sigPort}`));
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    const js = await fetch(`${dh.url}/app.js`);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    const head = await fetch(`${dh.url}/index.html`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    assert.equal((await fetch(`${dh.url}/index.html`, { method: 'DELETE' })).status, 405);
  });

  test('no directory listing and no way out of the folder', async () => {
    // Raw paths: fetch() would normalise the dots away before sending.
    const raw = (p) => new Promise((resolve, reject) => {
      const q = http.request({ host: '127.0.0.1', port: dh.port, path: p, method: 'GET' }, (res) => {
        let body = '';
        res.on('data', (c) => { body += c; });
        res.on('end', () => resolve({ status: res.statusCode, body }));
      });
      q.on('error', reject);
      q.end();
    });
    for (const p of ['/sub', '/sub/', '/../local.settings.json', '/%2e%2e/local.settings.json', '/..%2flocal.settings.json',
      '/%2E%2E%2Fhost.json', '/sub/../../local.settings.secret', '/sub/%2e%2e/%2e%2e/local.settings.secret', '//etc/passwd',
      '/%2fetc%2fpasswd', '/..\\local.settings.json', '/index.html%00.js', '/.hidden', '/local.settings.secret']) {
      const r = await raw(p);
      assert.equal(r.status, 404, `${p} → ${r.status}`);
      assert.doesNotMatch(r.body, /do-not-serve|AzureSignalRConnectionString|root:/);
    }
    assert.equal((await raw('/sub/inner.txt')).body, 'inner');
  });
});
