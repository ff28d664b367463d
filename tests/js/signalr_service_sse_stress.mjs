// Stress check for lost SSE wake-ups (not part of `make test`): many raw SSE clients negotiate,
// open their stream, handshake and get a broadcast at once against one `devhost signalr`
// pinging every 200 ms; a stream that misses the handshake reply, its invocation or a ping
// within --deadline-ms is reported as stalled, with what it got. Records are matched whole,
// whatever events they share (sseRecords); the streams whose handshake reply shared its event
// with another record are counted too.
//   node tests/js/signalr_service_sse_stress.mjs [--clients N] [--rounds N] [--deadline-ms N]
//        [--threads N] [--busy N]
// --busy N runs N busy loops (child processes) meanwhile; ENVIROMON_WRAPPER="valgrind ..."
// runs devhost under valgrind (waits then scale by 10, as in the tests).
import { spawn } from 'node:child_process';
import { startDevhost, negotiate, openSse, clientPost, broadcast, waitFor, sseRecords } from './signalr_service_helpers.mjs';

const RS = '\x1e';
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const clients = arg('clients', 50);
const rounds = arg('rounds', 5);
const deadline = arg('deadline-ms', 5000);
const threads = arg('threads', 0);
const busy = arg('busy', 0);

const burners = [];
for (let i = 0; i < busy; i++)
  burners.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));

async function one(port) {
  const n = await negotiate(port);
  const sse = await openSse(port, n.connectionId);
  try {
    await waitFor(() => sse.text().startsWith(':\r\n'), deadline, 'comment');
    const r = await clientPost(port, n.connectionId, `{"protocol":"json","version":1}${RS}{"type":6}${RS}`);
    if (r.status !== 200) return `handshake POST ${r.status}`;
    const t0 = Date.now();
    let step = 'handshake reply';
    try {
      await waitFor(() => sseRecords(sse.text())[0] === '{}', deadline, step);
      if (!sse.text().includes(`data: {}${RS}\r\n\r\n`)) coalesced++;
      step = 'invocation';
      const b = await broadcast(port, 'newMessage', [n.connectionId]);
      if (b.status !== 202) return `broadcast ${b.status}`;
      await waitFor(() => sseRecords(sse.text()).includes(`{"type":1,"target":"newMessage","arguments":["${n.connectionId}"]}`), deadline, step);
      step = 'ping';
      await waitFor(() => sseRecords(sse.text()).includes('{"type":6}'), deadline, step);
    } catch {
      return `stalled waiting for ${step}: ${JSON.stringify(sse.text())} after ${Date.now() - t0} ms, ended ${sse.ended()}`;
    }
    return null;
  } finally {
    sse.req.destroy();
  }
}

let total = 0, stalled = 0, coalesced = 0;
try {
  for (let r = 0; r < rounds; r++) {
    const svc = await startDevhost({ args: ['--ping-interval-ms', '200', ...(threads ? ['--threads', String(threads)] : [])] });
    try {
      const res = await Promise.all(Array.from({ length: clients }, () => one(svc.port).catch((e) => `error: ${e.message}`)));
      for (const x of res) {
        total++;
        if (x) { stalled++; console.log(`round ${r}: ${x}`); }
      }
    } finally {
      await svc.stop();
    }
    console.log(`round ${r}: ${stalled}/${total} stalled so far`);
  }
} finally {
  for (const b of burners) b.kill();
}
console.log(`RESULT ${stalled}/${total} streams stalled; ${coalesced} handshake replies shared their event (clients ${clients}, rounds ${rounds}, busy ${busy}, threads ${threads || 'default'})`);
