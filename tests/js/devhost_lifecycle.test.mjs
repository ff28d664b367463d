// The handler's life under `devhost start`, as the Functions host runs it: a crash restarts it
// and the next request succeeds; an in-flight invocation fails; exit code 0 is not restarted;
// the third failure within 30 minutes stops devhost with a message; SIGTERM/SIGINT stop
// devhost, the handler and everything it started within 10 s; a SIGKILLed devhost takes its
// handler with it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeApp, startDevhost, waitFor, alive } from './lib/devhost.mjs';

const echo = { bindings: [{ type: 'httpTrigger', direction: 'in', name: 'req', authLevel: 'anonymous', route: 'echo' },
  { type: 'http', direction: 'out', name: 'res' }] };

function handlerStarts(app) {
  return app.records().filter((r) => r.event === 'start');
}

async function withDevhost(values, fn) {
  const app = makeApp({ functions: { Echo: echo }, values });
  const dh = await startDevhost(app.root);
  try {
    await fn(app, dh);
  } finally {
    if (!dh.exitInfo()) await dh.stop();
    app.cleanup();
  }
}

/** Wait until the recorder has started n times and devhost reports Running. */
async function waitStarts(app, dh, n) {
  await waitFor(() => handlerStarts(app).length >= n, { timeoutMs: 20000, what: `handler start #${n}` });
  await waitFor(async () => (await dh.status()).state === 'Running', { timeoutMs: 20000, what: 'Running again' });
}

test('SIGKILL on the handler: restarted, the next request succeeds; an in-flight invocation fails', async () => {
  await withDevhost({}, async (app, dh) => {
    const first = handlerStarts(app)[0].pid;
    assert.equal((await fetch(`${dh.url}/api/echo`)).status, 200);
    process.kill(first, 'SIGKILL');
    // Once devhost has noticed (it is restarting the handler), the very next request waits for
    // the restart instead of failing on a dead port. (A request racing the crash itself fails,
    // as in the Functions host: it may have reached the dying handler.)
    await waitFor(async () => (await dh.status()).handlerRestarts === 1, { what: 'devhost to notice the crash' });
    const r = await fetch(`${dh.url}/api/echo`);
    assert.equal(r.status, 200, dh.logs());
    await waitStarts(app, dh, 2);
    assert.notEqual(handlerStarts(app)[1].pid, first);
    await dh.waitLog(/the handler was killed by signal 9 .*: restarting it \(failure 1 of 2 allowed within 30 minutes\)/);
    assert.equal((await dh.status()).handlerRestarts, 1);

    // A handler that dies while it works on an invocation: that invocation fails.
    app.setBehaviour({ echo: { kill: 'SIGKILL' } });
    const inflight = await fetch(`${dh.url}/api/echo`);
    app.setBehaviour({});
    assert.equal(inflight.status, 500);
    await waitStarts(app, dh, 3);
    assert.equal((await fetch(`${dh.url}/api/echo`)).status, 200);
    await dh.waitLog(/Executed 'Functions\.Echo' \(Failed, .*the handler did not answer/);
  });
});

test('exit code 0: not restarted, invocations fail, devhost keeps running and reports it', async () => {
  await withDevhost({}, async (app, dh) => {
    app.setBehaviour({ echo: { exit: 0 } });
    assert.equal((await fetch(`${dh.url}/api/echo`)).status, 500);
    await waitFor(async () => (await dh.status()).state === 'Error', { what: 'state Error' });
    const st = await dh.status();
    assert.equal(st.handlerState, 'exited');
    assert.match(st.errors[0], /exited with code 0 and is not restarted/);
    app.setBehaviour({});
    assert.equal((await fetch(`${dh.url}/api/echo`)).status, 500);
    assert.equal(handlerStarts(app).length, 1, 'never restarted');
    await dh.waitLog(/exited with code 0: not restarted/);
    assert.equal(dh.exitInfo(), null);
  });
});

test('exit code 200 is an intentional restart and is not counted as a failure', async () => {
  await withDevhost({}, async (app, dh) => {
    for (let i = 1; i <= 3; i++) {
      app.setBehaviour({ echo: { exit: 200 } });
      await fetch(`${dh.url}/api/echo`);
      app.setBehaviour({});
      await waitStarts(app, dh, i + 1);
    }
    assert.equal(dh.exitInfo(), null, 'still running after three exits with 200');
    assert.equal((await fetch(`${dh.url}/api/echo`)).status, 200);
    await dh.waitLog(/exited with code 200 \(an intentional restart\)/);
  });
});

test('the third crash within 30 minutes stops devhost with a message and exit code 1', async () => {
  const app = makeApp({ functions: { Echo: echo } });
  const dh = await startDevhost(app.root);
  try {
    for (let i = 1; i <= 3; i++) {
      const pid = handlerStarts(app).at(-1).pid;
      process.kill(pid, 'SIGKILL');
      if (i < 3) await waitStarts(app, dh, i + 1);
    }
    const e = await Promise.race([dh.exited, new Promise((r) => setTimeout(() => r('timeout'), 15000))]);
    assert.notEqual(e, 'timeout', `devhost did not stop:\n${dh.logs()}`);
    assert.equal(e.code, 1);
    await dh.waitLog(/failure 3 within 30 minutes: exceeded the restart retry count, shutting down/);
    await dh.waitLog(/devhost: stopping: /);
    for (const s of handlerStarts(app)) assert.equal(alive(s.pid), false);
  } finally {
    if (!dh.exitInfo()) await dh.stop('SIGKILL');
    app.cleanup();
  }
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`${signal} stops devhost, the handler and the handler's own child within 10 s`, async () => {
    const app = makeApp({ functions: { Echo: echo }, values: { RECORDER_SPAWN_CHILD: '1' } });
    const dh = await startDevhost(app.root);
    try {
      const start = handlerStarts(app)[0];
      assert.ok(alive(start.pid) && alive(start.childPid), 'handler and its child run');
      // An invocation in progress does not hold the stop up.
      app.setBehaviour({ echo: { delayMs: 60000 } });
      const slow = fetch(`${dh.url}/api/echo`).then((r) => r.status, () => 'error');
      await waitFor(() => app.records().some((r) => r.event === 'invoke'), { what: 'the slow invocation to start' });
      const t0 = Date.now();
      const e = await dh.stop(signal);
      const took = Date.now() - t0;
      assert.equal(e.code, 0, dh.logs());
      assert.ok(took < 10000, `took ${took} ms`);
      assert.ok(['error', 500].includes(await slow));
      await waitFor(() => !alive(start.pid) && !alive(start.childPid), { timeoutMs: 2000, what: 'no process left' });
      await dh.waitLog(new RegExp(`${signal} received, stopping`));
    } finally {
      if (!dh.exitInfo()) await dh.stop('SIGKILL');
      app.cleanup();
    }
  });
}

test('a SIGKILLed devhost takes its handler with it (parent-death signal)', async () => {
  const app = makeApp({ functions: { Echo: echo } });
  const dh = await startDevhost(app.root);
  try {
    const pid = handlerStarts(app)[0].pid;
    await dh.stop('SIGKILL');
    await waitFor(() => !alive(pid), { timeoutMs: 5000, what: 'the handler to die with devhost' });
  } finally {
    app.cleanup();
  }
});
