// The whole local stack for end-to-end tests: the repository's function app (its four function
// folders and host.json) run by `devhost start` with the real ./handler, storage in the test
// run's Azurite (a table and partition key of its own), the local SignalR Service devhost runs
// in-process, and the local IoT Hub in devhost's data folder. Devices are registered with
// `devhost device add`; SignalR clients are the official @microsoft/signalr client negotiating
// through devhost's /api.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { before, after } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { makeApp, startDevhost, freePort, waitFor, signalrConn, repoRoot, tempDir } from './devhost.mjs';
import { processesIn } from './proc.mjs';
import { addDevice } from './iothub.mjs';
import { rowsOf } from './eventhub.mjs';
import { signalR } from '../signalr_service_helpers.mjs';

export const CONN = process.env.TEST_STORAGE_CONNECTION;

/** The app settings of local.settings.sample.json for the local IoT Hub, with storage and
 *  SignalR pointed at this test's. */
export function stackValues({ conn = CONN, table, pk, srPort }) {
  const sample = JSON.parse(fs.readFileSync(path.join(repoRoot, 'local.settings.sample.json'), 'utf8')).Values;
  return {
    ...sample,
    AzureWebJobsStorage: conn,
    StorageConnectionString: conn,
    DeviceStateTable: table,
    PartitionKey: pk,
    AzureSignalRConnectionString: signalrConn(srPort),
  };
}

/**
 * Write the repository's app into a temporary script root.
 *  handler: 'real' (./handler) or 'tee' (tests/js/lib/tee-handler.mjs in front of ./handler,
 *  recording every EventTrigger invocation into teeFile)
 *  values: settings over stackValues; retry: EventTrigger's retry policy instead of the repo's.
 */
export async function makeStackApp({ tag = 'stack', handler = 'real', values = {}, conn = CONN, retry } = {}) {
  const suffix = crypto.randomBytes(4).toString('hex');
  const table = `E2e${tag.replace(/[^A-Za-z0-9]/g, '')}${suffix}`;
  const pk = `${tag}-${suffix}`;
  const srPort = await freePort();
  const app = makeApp({ handler: handler === 'real' ? 'real' : 'none',
    values: { ...stackValues({ conn, table, pk, srPort }), ...values } });
  const hostJson = JSON.parse(fs.readFileSync(path.join(repoRoot, 'host.json'), 'utf8'));
  const teeFile = path.join(app.root, 'tee.jsonl');
  if (handler === 'tee') {
    for (const f of ['tee-handler.mjs', 'proc.mjs']) fs.copyFileSync(path.join(repoRoot, 'tests', 'js', 'lib', f), path.join(app.root, f));
    fs.writeFileSync(teeFile, '');
    hostJson.customHandler.description = { defaultExecutablePath: 'node', arguments: ['tee-handler.mjs'] };
    const ls = JSON.parse(fs.readFileSync(path.join(app.root, 'local.settings.json'), 'utf8'));
    Object.assign(ls.Values, { TEE_TARGET: process.env.HANDLER_BIN || path.join(repoRoot, 'handler'), TEE_FILE: teeFile });
    fs.writeFileSync(path.join(app.root, 'local.settings.json'), JSON.stringify(ls, null, 2));
  }
  fs.writeFileSync(path.join(app.root, 'host.json'), JSON.stringify(hostJson, null, 2));
  for (const f of ['EventTrigger', 'GetDeviceState', 'Negotiate', 'SendSignalr']) {
    fs.cpSync(path.join(repoRoot, f), path.join(app.root, f), { recursive: true });
  }
  if (retry) {
    const p = path.join(app.root, 'EventTrigger', 'function.json');
    const fj = JSON.parse(fs.readFileSync(p, 'utf8'));
    fj.retry = retry;
    fs.writeFileSync(p, JSON.stringify(fj, null, 2));
  }
  return {
    ...app, table, pk, srPort, conn,
    tee: () => fs.readFileSync(teeFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
  };
}

/** The command line of pid, for messages. */
const cmdline = (pid) => {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim(); } catch { return '(gone)'; }
};

/** makeStackApp + devhost start on it, with a data folder of its own. `dh` is the running
 *  devhost; kill() SIGKILLs it and restart() starts it again on the same data folder, app,
 *  front port and arguments (pass a fixed --mqtt-port in args for devices that reconnect).
 *  stop() and kill() return once devhost has exited and assert that every process of the stack
 *  (devhost, the handler, the tee and the tee's ./handler: all run in the app folder) is gone
 *  too: a SIGKILLed devhost must not leave its handler behind. */
export async function startStack(opts = {}) {
  const app = await makeStackApp(opts);
  const data = opts.data ?? tempDir('data');
  const start = (port) => startDevhost(app.root, { data, port, args: opts.args ?? [], env: opts.env ?? {}, ready: opts.ready ?? true });
  const s = {
    app, data,
    dh: await start(),
    rows: () => rowsOf(app.conn, app.table, app.pk),
    addDevice: (id) => addDevice(id, data),
    /** Wait until device id's row satisfies pred(row); returns the row. */
    waitRow: (id, pred, { timeoutMs = 30000 } = {}) => waitFor(async () => {
      const r = (await rowsOf(app.conn, app.table, app.pk))[id];
      return r && pred(r) ? r : null;
    }, { timeoutMs, intervalMs: 100, what: `the DeviceState row of ${id}` }).catch((e) => {
      throw new Error(`${e.message}\n${s.dh.logs().slice(-4000)}`);
    }),
    async stop() {
      const e = await s.dh.stop('SIGINT');
      await s.gone();
      return e;
    },
    async kill() {
      const e = await s.dh.stop('SIGKILL');
      await s.gone();
      return e;
    },
    /** Wait until no process runs in the app folder (a generous deadline: the kernel ends
     *  them at once); fails naming what is left, and kills it so that it does not outlive the
     *  failure. */
    async gone() {
      await waitFor(() => processesIn(app.root).length === 0, { timeoutMs: 10000, intervalMs: 50, what: 'the stack\'s processes to end' })
        .catch((err) => {
          const left = processesIn(app.root);
          const names = left.map((p) => `${p} ${cmdline(p)}`).join('; ');
          for (const p of left) { try { process.kill(p, 'SIGKILL'); } catch { /* gone meanwhile */ } }
          throw new Error(`${err.message}: still running after devhost exited: ${names}`);
        });
    },
    async restart() {
      s.dh = await start(s.dh.port);
      return s.dh;
    },
    cleanup() {
      app.cleanup();
      fs.rmSync(data, { recursive: true, force: true });
    },
  };
  return s;
}

/**
 * The stack for a whole test file: starts it (and an @microsoft/signalr client that negotiated
 * through devhost, unless signalr is false) before the tests, and after them stops both,
 * asserting that devhost exited cleanly. opts: startStack's, or an async function returning them.
 * Returns {s, client, ready}: s and client are set once ready (a promise of the same object)
 * resolves — await it in the file's own before hook, since node:test starts a file's root-level
 * hooks together rather than one after the other.
 */
export function useStack(opts = {}, { signalr = true } = {}) {
  let settle;
  const ctx = { s: null, client: null };
  ctx.ready = new Promise((resolve, reject) => { settle = { resolve, reject }; });
  ctx.ready.catch(() => {}); // reported by the hook that failed
  before(async () => {
    try {
      ctx.s = await startStack(typeof opts === 'function' ? await opts() : opts);
      if (signalr) ctx.client = await signalrClient(ctx.s.dh.url);
      settle.resolve(ctx);
    } catch (e) {
      settle.reject(e);
      throw e;
    }
  });
  after(async () => {
    await ctx.client?.stop();
    const e = await ctx.s?.stop();
    assert.equal(e?.code, 0, ctx.s?.dh.logs());
    ctx.s?.cleanup();
  });
  return ctx;
}

/** An @microsoft/signalr client that negotiated through devhost's /api; pushes collects every
 *  newMessage argument (arrays flattened). */
export async function signalrClient(baseUrl) {
  const conn = new signalR.HubConnectionBuilder().withUrl(`${baseUrl}/api`).configureLogging(signalR.LogLevel.None).build();
  const pushes = [];
  conn.on('newMessage', (m) => { for (const x of Array.isArray(m) ? m : [m]) pushes.push(x); });
  await conn.start();
  return { conn, pushes, stop: () => conn.stop() };
}

/** Int64 columns come back from @azure/data-tables as {value, type} or numbers. */
export const num = (v) => (v && typeof v === 'object' ? Number(v.value) : Number(v));

export { waitFor, freePort };
