// Start and stop real ./handler processes for tests: a free port, the environment the
// Functions host would give it, readiness by polling GET / (as the host does), and a
// clean SIGTERM on teardown. Also small helpers to POST host-shaped invocations.
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnTied } from './proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');
export const handlerBin = process.env.HANDLER_BIN || path.join(repoRoot, 'handler');

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Poll fn until it returns a truthy value or timeoutMs passes. */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { lastErr = e; }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${lastErr.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Start a handler. env: extra settings (merged over a minimal environment).
 * Returns {port, url, proc, stdout(), stderr(), exited, stop()}.
 * ENVIROMON_WRAPPER (e.g. valgrind ...) is honoured.
 */
export async function startHandler(env = {}, { bin = handlerBin, readyTimeoutMs = 20000 } = {}) {
  const port = env.FUNCTIONS_CUSTOMHANDLER_PORT ?? await freePort();
  const fullEnv = {
    PATH: process.env.PATH,
    ASAN_OPTIONS: process.env.ASAN_OPTIONS,
    UBSAN_OPTIONS: process.env.UBSAN_OPTIONS,
    FUNCTIONS_CUSTOMHANDLER_PORT: String(port),
    ...env,
  };
  for (const k of Object.keys(fullEnv)) if (fullEnv[k] === undefined) delete fullEnv[k];
  const wrapper = (process.env.ENVIROMON_WRAPPER || '').split(' ').filter(Boolean);
  const cmd = wrapper.length ? wrapper[0] : bin;
  const args = wrapper.length ? [...wrapper.slice(1), bin] : [];
  const proc = spawnTied(cmd, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
    proc.on('error', (e) => resolve({ code: null, signal: null, error: e.message }));
  });
  let dead = null;
  exited.then((r) => { dead = r; });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (dead) throw new Error(`handler exited early (${JSON.stringify(dead)}): ${err}`);
    const r = await fetch(`${url}/`).catch(() => null);
    return r !== null;
  }, { timeoutMs: readyTimeoutMs, what: `handler on port ${port}` });
  return {
    port, url, proc, exited,
    stdout: () => out,
    stderr: () => err,
    async stop() {
      if (dead) return dead;
      proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** POST an invocation {Data, Metadata} to /<fn>. Returns {status, json, text, headers}. */
export async function invoke(h, fn, data = {}, metadata = {}, extraHeaders = {}) {
  const r = await fetch(`${h.url}/${fn}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json; charset=utf-8', 'X-Azure-Functions-InvocationId': crypto.randomUUID(), ...extraHeaders },
    body: JSON.stringify({ Data: data, Metadata: metadata }),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* left null: tests assert on it */ }
  return { status: r.status, json, text, headers: r.headers };
}

/** An HTTP-trigger request object as the host sends it in Data.req. */
export function httpReq({ method = 'GET', url = 'http://localhost:7071/api/x', query = {}, headers = {}, body, queryAsString = false } = {}) {
  const h = {};
  for (const [k, v] of Object.entries(headers)) h[k] = Array.isArray(v) ? v : [v];
  const req = {
    Url: url,
    Method: method,
    Query: queryAsString ? JSON.stringify(query) : query,
    Headers: h,
    Params: {},
    Identities: [{ AuthenticationType: null, IsAuthenticated: false, Claims: [] }],
  };
  if (body !== undefined) req.Body = typeof body === 'string' ? body : JSON.stringify(body);
  return req;
}
