// A private Azurite table service on a free port, for tests that need to stop and restart
// storage (the shared one from tests/run.sh must stay up for everyone else). In memory by
// default; give a location directory to keep the data across a restart, or a certificate and
// key to serve HTTPS (tests/package: the packaged handler's TLS against a test CA).
import path from 'node:path';
import { freePort, repoRoot, waitFor } from './handler.mjs';
import { spawnTied } from './proc.mjs';
import net from 'node:net';

export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export function connectionString(port, { scheme = 'http', host = '127.0.0.1' } = {}) {
  return `DefaultEndpointsProtocol=${scheme};AccountName=devstoreaccount1;AccountKey=${DEV_KEY};` +
    `TableEndpoint=${scheme}://${host}:${port}/devstoreaccount1;`;
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Start Azurite (table only). port: reuse a port (restart), else a free one; location: a
 *  directory for persistent data (else in memory); cert, key: PEM files to serve HTTPS (the
 *  connection string then names https://localhost). Returns {port, pid, proc, connection,
 *  kill(signal), stop()}. */
export async function startAzurite({ port, location, cert, key } = {}) {
  port = port ?? await freePort();
  const bin = path.join(repoRoot, 'node_modules', '.bin', 'azurite-table');
  const storage = location ? ['--location', location] : ['--inMemoryPersistence'];
  const tls = cert ? ['--cert', cert, '--key', key] : [];
  const proc = spawnTied(bin, ['--tableHost', '127.0.0.1', '--tablePort', String(port), ...storage, ...tls,
    '--disableTelemetry', '--silent'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  let dead = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => { dead = { code, signal }; resolve(dead); }));
  await waitFor(async () => {
    if (dead) throw new Error(`azurite exited: ${log}`);
    return portOpen(port);
  }, { timeoutMs: 30000, what: `azurite on ${port}` });
  return {
    port,
    pid: proc.pid,
    proc,
    connection: cert ? connectionString(port, { scheme: 'https', host: 'localhost' }) : connectionString(port),
    /** Kill it with signal (SIGKILL: as a crash) and wait for it to be gone. */
    async kill(signal = 'SIGKILL') {
      if (!dead) proc.kill(signal);
      await exited;
    },
    async stop() {
      if (!dead) proc.kill('SIGTERM');
      await exited;
      await waitFor(async () => !(await portOpen(port)), { timeoutMs: 10000, what: `port ${port} closed` });
    },
  };
}
