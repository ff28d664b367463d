// reliability_rig.test.mjs — the pieces of the reliability runs' rig (tests/reliability/) that
// their figures rest on, checked against a real stack (devhost start, the real ./handler,
// Azurite, the local SignalR Service):
//   - childPid finds the handler devhost runs, from /proc, also after devhost restarted it (the
//     load run samples its CPU through it and the handler fault run kills it); it replaced a scan
//     of devhost's whole output each second, which blocked the load run's driver for up to
//     0.2 s a time by the end of a run;
//   - signalrReceiver: the load run's SignalR client in a process of its own (so that the
//     driver's work is not counted as pipeline latency) receives the pushes and reports, per
//     pushed item of its devices, arrival − lastSeen, and which devices it counted (another
//     device's pushes, seen arriving, are left out).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runSimulator } from './lib/simulator.mjs';
import { startStack, num, waitFor } from './lib/stack.mjs';
import { childPid } from '../reliability/procfs.mjs';
import { signalrReceiver } from '../reliability/rig.mjs';

let s;

before(async () => {
  s = await startStack({ tag: 'rig' });
});

after(async () => {
  await s?.stop();
  s?.cleanup();
});

/** The handler pid devhost logged last. */
const loggedPid = () => Number([...s.dh.logs().matchAll(/started the handler \(pid (\d+)\)/g)].at(-1)?.[1] ?? 0);

test('childPid finds the handler devhost runs, and the one it starts after the first is killed', async () => {
  const first = await waitFor(() => loggedPid(), { timeoutMs: 10000, what: "devhost's handler start line" });
  assert.equal(childPid(s.dh.proc.pid, 'handler'), first);
  assert.equal(childPid(s.dh.proc.pid, 'no-such-command'), 0);
  assert.equal(childPid(process.pid, 'handler'), 0, 'the handler is devhost\'s child, not this process\'s');
  process.kill(first, 'SIGKILL');
  const second = await waitFor(() => { const p = loggedPid(); return p && p !== first ? p : 0; },
    { timeoutMs: 30000, what: 'devhost restarting the handler' }).catch((e) => { throw new Error(`${e.message}\n${s.dh.logs().slice(-3000)}`); });
  await waitFor(() => childPid(s.dh.proc.pid, 'handler') === second, { timeoutMs: 10000, what: 'childPid finding the new handler' });
});

test('signalrReceiver: a SignalR client in its own process reports arrival − lastSeen for its devices\' pushes', async () => {
  const recv = await signalrReceiver(s.dh.url, 'rigrecv-');
  let r;
  try {
    assert.notEqual(recv.pid, process.pid);
    const sim = await runSimulator(['--devices', '2', '--prefix', 'rigrecv-', '--data', s.data, '--transport', 'http',
      '--endpoint', s.dh.url, '--count', '5', '--interval', '0.05', '--seed', '7', '--json', '--quiet']);
    assert.equal(sim.code, 0, sim.stderr);
    assert.equal(sim.json.acknowledged, 10);
    for (const id of ['rigrecv-1', 'rigrecv-2']) await s.waitRow(id, (x) => num(x.Count) + num(x.InvalidCount) === 5);
    // another device's pushes are not counted
    const other = await runSimulator(['--devices', '1', '--prefix', 'rigother-', '--data', s.data, '--transport', 'http',
      '--endpoint', s.dh.url, '--count', '1', '--seed', '7', '--json', '--quiet']);
    assert.equal(other.code, 0, other.stderr);
    await s.waitRow('rigother-1', (x) => num(x.Count) + num(x.InvalidCount) === 1);
    // the other device's push reached the receiver (so the filter below was exercised)
    await waitFor(async () => (await recv.peek()).ignored >= 1, { timeoutMs: 10000, what: "the other device's push at the receiver" });
  } finally {
    r = await recv.stop();
  }
  // every accepted batch pushes its devices once: at least one push per device, at most one per message
  assert.deepEqual(r.devices, ['rigrecv-1', 'rigrecv-2'], 'only the prefix\'s devices are counted');
  assert.ok(r.ignored >= 1, `other devices' items ignored: ${r.ignored}`);
  assert.ok(r.lat.length >= 2 && r.lat.length <= 10, `pushes counted: ${r.lat.length}`);
  for (const ms of r.lat) assert.ok(Number.isFinite(ms) && ms >= 0 && ms < 60000, `latency ${ms} ms`);
  assert.ok(Number.isFinite(r.eventLoopDelayMs.max), JSON.stringify(r.eventLoopDelayMs));
});
