// The test harness leaves no process behind (CI runs every file on one machine, and a server left
// running holds ports and CPU for the files after it):
//   - a test file that dies before its after hooks (node --test SIGTERMs a file at its timeout)
//     takes the devhost it started, the tee and the tee's ./handler with it: the lib ties every
//     server it starts to the test process (spawnTied, PR_SET_PDEATHSIG)
//   - a SIGKILLed devhost takes the tee and the tee's ./handler (its grandchild) with it
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startStack, waitFor } from './lib/stack.mjs';
import { alive, descendants } from './lib/devhost.mjs';
import { spawnTied, processesIn } from './lib/proc.mjs';

const lib = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib');
const comm = (pid) => { try { return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return null; } };

/** devhost's pid, the tee's (node) and the real ./handler's under it. */
function stackPids(devhostPid) {
  const under = descendants(devhostPid);
  return { devhost: devhostPid, tee: under.filter((p) => comm(p) === 'node'), handler: under.filter((p) => comm(p) === 'handler') };
}

test('a test process that dies without its after hooks takes its devhost, the tee and ./handler with it', async () => {
  // A stand-in for a test file: starts a stack with the tee, reports, then waits to be killed.
  const script = `
    const { startStack } = await import(${JSON.stringify(pathToFileURL(path.join(lib, 'stack.mjs')).href)});
    const s = await startStack({ tag: 'orphans', handler: 'tee' });
    console.log(JSON.stringify({ pid: s.dh.proc.pid, root: s.app.root, data: s.data }));
    setInterval(() => {}, 1000);`;
  const child = spawnTied(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const started = await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`the stand-in exited: ${err}`);
    const line = out.split('\n').find((l) => l.startsWith('{'));
    return line ? JSON.parse(line) : null;
  }, { timeoutMs: 60000, what: 'the stand-in\'s stack' }).catch((e) => { child.kill('SIGKILL'); throw e; });
  try {
    const pids = stackPids(started.pid);
    assert.equal(pids.tee.length, 1, `the tee under devhost: ${pids.tee}`);
    assert.equal(pids.handler.length, 1, `./handler under the tee: ${pids.handler}`);
    assert.ok(processesIn(started.root).length >= 3, 'devhost, the tee and ./handler run in the app folder');
    child.kill('SIGTERM'); // what node --test does to a file at its timeout: no after hook runs
    assert.deepEqual(await exited, { code: null, signal: 'SIGTERM' });
    await waitFor(() => processesIn(started.root).length === 0, { timeoutMs: 10000, intervalMs: 50, what: 'the stand-in\'s processes to end' })
      .catch((e) => { throw new Error(`${e.message}: left ${processesIn(started.root)}`); });
    for (const p of [pids.devhost, ...pids.tee, ...pids.handler]) assert.equal(alive(p), false, `${p} still runs`);
  } finally {
    for (const p of processesIn(started.root)) process.kill(p, 'SIGKILL'); // only after a failure
    fs.rmSync(started.root, { recursive: true, force: true });
    fs.rmSync(started.data, { recursive: true, force: true });
  }
});

test('a SIGKILLed devhost takes the tee and the tee\'s ./handler (its grandchild) with it', async () => {
  const s = await startStack({ tag: 'orphankill', handler: 'tee' });
  try {
    const pids = stackPids(s.dh.proc.pid);
    assert.equal(pids.handler.length, 1, `./handler under the tee: ${pids.handler}`);
    await s.kill(); // waits for the app folder to be empty of processes, failing with what is left
    for (const p of [...pids.tee, ...pids.handler]) assert.equal(alive(p), false, `${p} still runs`);
    await s.restart(); // and the stack comes back as before
    assert.equal(stackPids(s.dh.proc.pid).handler.length, 1);
    assert.equal((await s.stop()).code, 0, s.dh.logs());
  } finally {
    if (!s.dh.exitInfo()) await s.dh.stop('SIGKILL');
    s.cleanup();
  }
});
