// devhost start end to end (issue 9's benchmark, docs/benchmarks.md "devhost start: devices →
// DeviceState → SignalR"): devices send to devhost's IoT Hub device side — BENCH_TRANSPORT=http
// (default: POST over keep-alive HTTP) or mqtt (MQTT 3.1.1 over TLS, QoS 1, one connection per
// device, devhost's CA <data>/ca.pem); each message is made durable in its partition log, read by
// the Event Hubs trigger, folded by EventTrigger (the release ./handler) into DeviceState rows in
// Azurite and pushed to an @microsoft/signalr client that negotiated through devhost. One run,
// side by side:
//   1. throughput, as fast as it goes for BENCH_SECONDS: http — wrk (-t2 -cCONNECTIONS); mqtt —
//      bench/mqtt_load closed loop, each device keeping BENCH_WINDOW QoS 1 messages unacknowledged.
//      Accepted = 204s (PUBACKs) per second of the load; delivered = every stored message counted
//      in DeviceState and the last push of each device carrying its final Count, per second from
//      the start of the load to the last push
//   2. latency at BENCH_RATE messages/s (BENCH_LAT_SECONDS), open loop in C (bench/http_load or
//      bench/mqtt_load --rate): message i is due at i/RATE whatever the answers do, each device with
//      its own SAS token; the sender records, per message, device, seq and when it was sent (POST
//      started / PUBLISH written). Message k of a device is delivered when a push for that device
//      carries a count that includes k of its messages; latency = push received − sent (wall
//      clocks of the two processes). The achieved rate is reported; the step is valid only if the
//      sender reached ≥ 95 % of RATE
//   3. the EventTrigger-only benchmark (bench/event_trigger.sh, its (b)) in the same run, so that
//      the pipeline's overhead is a ratio: delivered end to end ÷ EventTrigger alone
// devhost's CPU (utime+stime) per message and RSS (VmRSS, VmHWM) come from /proc. Exits 1 on a
// refused or lost message or an invalid latency step; reports the targets (≥ 6,000 msgs/s, p50 ≤
// 50 ms and p99 ≤ 250 ms at 1,000 msgs/s, devhost RSS ≤ 64 MiB) without failing on them.
// Env: BENCH_TRANSPORT (http), BENCH_DEVICES (100), BENCH_SECONDS (15), BENCH_CONNECTIONS (32,
// wrk's), BENCH_WINDOW (8, mqtt), BENCH_RATE (1000), BENCH_LAT_SECONDS (10), BENCH_LAT_CONNECTIONS
// (256, http_load's pool at most), BENCH_ET_EVENTS (20000; 0 skips step 3), BENCH_OUT (json file),
// HANDLER_BIN, DEVHOST_BIN, BENCH_TOOLS (build/release/bench).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startAzurite } from '../tests/js/lib/azurite.mjs';
import { makeStackApp, signalrClient, num } from '../tests/js/lib/stack.mjs';
import { startDevhost, tempDir, repoRoot, waitFor } from '../tests/js/lib/devhost.mjs';
import { addDevice, nodeToken, encodeStrict } from '../tests/js/lib/iothub.mjs';
import { rowsOf } from '../tests/js/lib/eventhub.mjs';
import { procCpuSeconds, procStatusKiB } from '../tests/js/lib/proc.mjs';

const TRANSPORT = process.env.BENCH_TRANSPORT ?? 'http';
const DEVICES = Number(process.env.BENCH_DEVICES ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 8);
const RATE = Number(process.env.BENCH_RATE ?? 1000);
const LAT_SECONDS = Number(process.env.BENCH_LAT_SECONDS ?? 10);
const LAT_CONNECTIONS = Number(process.env.BENCH_LAT_CONNECTIONS ?? 256);
const ET_EVENTS = Number(process.env.BENCH_ET_EVENTS ?? 20000);
const TOOLS = process.env.BENCH_TOOLS ?? path.join(repoRoot, 'build', 'release', 'bench');
if (TRANSPORT !== 'http' && TRANSPORT !== 'mqtt') throw new Error(`BENCH_TRANSPORT is http or mqtt, not ${TRANSPORT}`);
const cpuSeconds = procCpuSeconds;
const memMiB = (pid, key) => procStatusKiB(pid, key) / 1024;
const pct = (a, p) => (a.length ? a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))] : NaN);
const sumCounts = (rows) => Object.values(rows).reduce((n, r) => n + num(r.Count), 0);
// Wall-clock ms, comparable with the C senders' CLOCK_REALTIME records.
const wallMs = () => performance.timeOrigin + performance.now();

function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${out}`))));
  });
}
/** Run a load tool that prints one JSON line and exits 1 when a message went wrong: its JSON
 *  either way (the failure is flagged, the figures still reported). */
async function runTool(name, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(path.join(TOOLS, name), args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) { failed = true; console.log(`${name} exited ${code}`); }
      try { resolve(JSON.parse(out.trim().split('\n').pop())); } catch { reject(new Error(`${name} exited ${code}: ${out}`)); }
    });
  });
}

/** A sender's --record file: device → its messages in seq order, [{seq, sent, acked, status}]. */
function readRecords(file) {
  const byDev = new Map();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    const [id, seq, sent, acked, status] = line.split(' ');
    if (!byDev.has(id)) byDev.set(id, []);
    byDev.get(id).push({ seq: Number(seq), sent: Number(sent), acked: Number(acked), status: Number(status) });
  }
  for (const l of byDev.values()) l.sort((x, y) => x.seq - y.seq);
  return byDev;
}

let failed = false;
const az = await startAzurite();
const app = await makeStackApp({ tag: 'bench', conn: az.connection });
const data = tempDir('bench-data');
let dh;
let client;
try {
  dh = await startDevhost(app.root, { data, args: TRANSPORT === 'http' ? ['--no-mqtt'] : [] });
  const pid = dh.proc.pid;
  const mqttPort = TRANSPORT === 'mqtt' ? await dh.mqttPort() : 0;
  const devs = Array.from({ length: DEVICES }, (_, i) => addDevice(`bench-${String(i).padStart(4, '0')}`, data));
  // The C senders read "id key" lines from a private file (keys never on a command line).
  const devFile = path.join(app.root, 'devices.txt');
  fs.writeFileSync(devFile, devs.map((d) => `${d.id} ${d.key}\n`).join(''), { mode: 0o600 });
  const mqttArgs = ['--port', String(mqttPort), '--ca', dh.ca, '--devices', devFile, '--connections', String(DEVICES),
    '--idle-s', '0', '--burst-every-s', '0', '--server-pid', String(pid)];
  client = await signalrClient(dh.url);
  const lastPush = new Map(); // device → {count, at}
  let lastPushAt = 0;
  const listeners = [];
  client.conn.on('newMessage', (m) => {
    const at = wallMs();
    for (const x of Array.isArray(m) ? m : [m]) {
      const prev = lastPush.get(x.deviceId);
      if (!prev || x.count > prev.count) lastPush.set(x.deviceId, { count: x.count, at });
      lastPushAt = at;
      for (const l of listeners) l(x, at);
    }
  });
  const rssIdle = memMiB(pid, 'VmRSS');

  // ---- 1. throughput
  const cpu0 = cpuSeconds(pid);
  let t0 = wallMs();
  let load; // {seconds, accepted, inflight (sent but unanswered: may be stored), refused, p50_ms, p99_ms, socket_errors}
  if (TRANSPORT === 'http') {
    const luaDevs = path.join(app.root, 'devices.lua');
    fs.writeFileSync(luaDevs, `return {\n${devs.map((d) => `{ path = "/devices/${encodeStrict(d.id)}/messages/events?api-version=2021-04-12", `
      + `auth = "${nodeToken(d.id, d.key, 7200)}" }`).join(',\n')}\n}\n`, { mode: 0o600 });
    const wrk = JSON.parse((await run('wrk', ['-t2', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '-s', path.join(repoRoot, 'bench', 'devhost_e2e.lua'),
      dh.url], { BENCH_DEVICES_LUA: luaDevs })).trim().split('\n').pop());
    // Messages in flight when wrk stopped may be stored too (at most one per connection).
    load = { seconds: wrk.seconds, accepted: wrk.requests - wrk.refused, inflight: CONNECTIONS, refused: wrk.refused,
      p50_ms: wrk.p50_ms, p99_ms: wrk.p99_ms, socket_errors: wrk.socket_errors };
  } else {
    const r = await runTool('mqtt_load', [...mqttArgs, '--duration-s', String(SECONDS), '--rate', '0', '--window', String(WINDOW)]);
    t0 = r.loadStartWallMs; // after the TLS handshakes
    // accepted per second counts the PUBACKs during the load; every PUBLISH is drained after it
    load = { seconds: r.durationSeconds, accepted: r.acked, accepted_in_load: r.ackedDuringLoad, inflight: r.sent - r.acked,
      refused: 0, p50_ms: r.pubackMs.p50, p99_ms: r.pubackMs.p99, socket_errors: r.connectFailures + r.disconnected };
  }
  const accepted = load.accepted;
  if (load.refused) { failed = true; console.log(`REFUSED: ${load.refused} messages answered other than 204`); }
  let stored = 0;
  let stableSince = performance.now();
  await waitFor(async () => {
    const n = sumCounts(await rowsOf(az.connection, app.table, app.pk));
    if (n !== stored) { stored = n; stableSince = performance.now(); }
    return n >= accepted && performance.now() - stableSince > 3000;
  }, { timeoutMs: 600000, intervalMs: 250, what: 'every accepted message in DeviceState' });
  const rows = await rowsOf(az.connection, app.table, app.pk);
  const unpushed = () => devs.filter((d) => rows[d.id] && lastPush.get(d.id)?.count !== num(rows[d.id].Count)).length;
  await waitFor(() => unpushed() === 0, { timeoutMs: 30000, what: 'the last push of every device' }).catch(() => {});
  const notPushed = unpushed();
  const cpu1 = cpuSeconds(pid);
  const deliveredSeconds = (lastPushAt - t0) / 1000;
  const lost = stored < accepted || stored > accepted + load.inflight || notPushed > 0;
  if (lost) failed = true;
  const acceptedPerS = (load.accepted_in_load ?? accepted) / load.seconds;
  const thr = {
    seconds: load.seconds, accepted, accepted_per_s: acceptedPerS, ack_p50_ms: load.p50_ms, ack_p99_ms: load.p99_ms,
    socket_errors: load.socket_errors, stored_and_counted: stored, delivered_seconds: deliveredSeconds,
    delivered_per_s: stored / deliveredSeconds, devhost_cpu_us_per_msg: ((cpu1 - cpu0) * 1e6) / stored,
    devices_without_final_push: notPushed,
  };
  const [sentName, ack] = TRANSPORT === 'http' ? ['POST', '204'] : ['PUBLISH', 'PUBACK'];
  console.log(`1. throughput (${TRANSPORT}): ${accepted} accepted, ${thr.accepted_per_s.toFixed(0)} msgs/s over ${load.seconds.toFixed(1)} s `
    + `(${sentName} → ${ack} p50 ${load.p50_ms.toFixed(1)} ms, p99 ${load.p99_ms.toFixed(1)} ms); ${stored} counted in DeviceState, the last push `
    + `${deliveredSeconds.toFixed(1)} s after the start = ${thr.delivered_per_s.toFixed(0)} msgs/s delivered; devhost CPU `
    + `${thr.devhost_cpu_us_per_msg.toFixed(1)} µs/msg${lost ? ' — LOST OR EXTRA MESSAGES' : ''}`);

  // ---- 2. latency at RATE msgs/s
  const base = new Map(devs.map((d) => [d.id, num(rows[d.id]?.Count ?? 0)]));
  const pushes = new Map(devs.map((d) => [d.id, []])); // device → [{count, at}] of this step
  listeners.push((x, at) => pushes.get(x.deviceId)?.push({ count: x.count - base.get(x.deviceId), at }));
  const recFile = path.join(app.root, 'latency-records.txt');
  const cpu2 = cpuSeconds(pid);
  let sender;
  if (TRANSPORT === 'http') {
    const r = await runTool('http_load', ['--port', String(dh.port), '--devices', devFile, '--count', String(DEVICES),
      '--rate', String(RATE), '--seconds', String(LAT_SECONDS), '--connections', String(LAT_CONNECTIONS), '--record', recFile]);
    sender = { achieved_per_s: r.achievedPerSecond, dispatch_lag_p99_ms: r.dispatchLagMs.p99, ack_p50_ms: r.answerMs.p50,
      ack_p99_ms: r.answerMs.p99, refused: r.refused + r.failed + r.unanswered, connections: r.connectionsOpened };
  } else {
    const r = await runTool('mqtt_load', [...mqttArgs, '--duration-s', String(LAT_SECONDS), '--rate', String(RATE), '--record', recFile]);
    sender = { achieved_per_s: r.sentPerSecond, late: r.late, ack_p50_ms: r.steadyPubackMs.p50, ack_p99_ms: r.steadyPubackMs.p99,
      refused: r.sent - r.acked + r.connectFailures + r.disconnected, connections: r.connected };
  }
  const recs = readRecords(recFile);
  const total = [...recs.values()].reduce((n, l) => n + l.length, 0);
  const delivered = () => devs.every((d) => (pushes.get(d.id).at(-1)?.count ?? 0) >= (recs.get(d.id)?.length ?? 0));
  await waitFor(delivered, { timeoutMs: 120000, intervalMs: 100, what: `${total} messages pushed` }).catch(() => { failed = true; });
  const cpu3 = cpuSeconds(pid);
  const latencies = [];
  const afterAck = []; // the 204 / PUBACK → push part of each latency
  for (const [id, list] of recs) {
    const ps = pushes.get(id);
    let j = 0;
    // the k-th counted stands for the k-th sent (an HTTP device's messages in flight together
    // may be stored out of order)
    for (let k = 0; k < list.length; k++) {
      while (j < ps.length && ps[j].count < k + 1) j++;
      if (j < ps.length) latencies.push(ps[j].at - list[k].sent);
      if (j < ps.length && list[k].acked > 0) afterAck.push(ps[j].at - list[k].acked);
    }
  }
  latencies.sort((a, b) => a - b);
  afterAck.sort((a, b) => a - b);
  const valid = sender.achieved_per_s >= 0.95 * RATE;
  if (sender.refused || !valid) failed = true;
  const lat = {
    offered_per_s: RATE, achieved_per_s: sender.achieved_per_s, valid, messages: total, samples: latencies.length, sender,
    p50_ms: pct(latencies, 50), p99_ms: pct(latencies, 99), max_ms: latencies.at(-1),
    ack_to_push_p50_ms: pct(afterAck, 50), ack_to_push_p99_ms: pct(afterAck, 99), devhost_cpu_us_per_msg: ((cpu3 - cpu2) * 1e6) / total,
  };
  console.log(`2. latency at ${RATE} msgs/s (${TRANSPORT}): sender achieved ${lat.achieved_per_s.toFixed(0)}/s `
    + `(${valid ? 'valid, ≥ 95 %' : 'INVALID, < 95 % of the rate'}), ${total} messages over ${sender.connections} connections; `
    + `sent → push p50 ${lat.p50_ms.toFixed(1)} ms, p99 ${lat.p99_ms.toFixed(1)} ms, max ${(lat.max_ms ?? NaN).toFixed(1)} ms `
    + `(${sentName} → ${ack} p50 ${sender.ack_p50_ms.toFixed(1)} ms, p99 ${sender.ack_p99_ms.toFixed(1)} ms; ${ack} → push p50 `
    + `${lat.ack_to_push_p50_ms.toFixed(1)} ms, p99 ${lat.ack_to_push_p99_ms.toFixed(1)} ms); ${latencies.length}/${total} delivered; `
    + `devhost CPU ${lat.devhost_cpu_us_per_msg.toFixed(1)} µs/msg`);
  const rss = { idle_mib: rssIdle, now_mib: memMiB(pid, 'VmRSS'), peak_mib: memMiB(pid, 'VmHWM') };
  console.log(`devhost RSS: ${rss.idle_mib.toFixed(1)} MiB idle, ${rss.now_mib.toFixed(1)} MiB after, peak ${rss.peak_mib.toFixed(1)} MiB`);
  await client.stop();
  client = null;
  const e = await dh.stop('SIGINT');
  dh = null;
  if (e.code !== 0) throw new Error(`devhost exited ${e.code}`);

  // ---- 3. EventTrigger alone, same run
  let et = null;
  if (ET_EVENTS > 0) {
    const out = path.join(os.tmpdir(), `devhost-e2e-et-${process.pid}.json`);
    await run(path.join(repoRoot, 'bench', 'event_trigger.sh'), [],
      { BENCH_EVENTS: String(ET_EVENTS), BENCH_A_EVENTS: '1000', BENCH_OUT: out });
    const all = JSON.parse(fs.readFileSync(out, 'utf8'));
    fs.rmSync(out);
    et = all.b;
    console.log(`   (EventTrigger benchmark: (b) ${et.events} events in ${et.seconds.toFixed(2)} s, ${et.cpu_us_per_event.toFixed(1)} µs/event; `
      + `(a) ${all.a.events_per_s.toFixed(0)}/s, (c) ${all.c.rows_per_s.toFixed(0)} rows/s)`);
    console.log(`3. EventTrigger alone: ${et.events_per_s.toFixed(0)} events/s → end to end delivered ÷ EventTrigger alone = `
      + `${(thr.delivered_per_s / et.events_per_s).toFixed(2)}`);
  }
  const result = { when: new Date().toISOString(), transport: TRANSPORT, loadavg: os.loadavg(), devices: DEVICES, connections: CONNECTIONS, throughput: thr, latency: lat, rss,
    event_trigger_only: et && { events_per_s: et.events_per_s, cpu_us_per_event: et.cpu_us_per_event },
    ratio_delivered_over_event_trigger: et ? thr.delivered_per_s / et.events_per_s : null };
  const targets = [
    ['accepted ≥ 6,000 msgs/s', thr.accepted_per_s >= 6000, thr.accepted_per_s.toFixed(0)],
    ['delivered ≥ 6,000 msgs/s', thr.delivered_per_s >= 6000, thr.delivered_per_s.toFixed(0)],
    [`p50 ≤ 50 ms at ${RATE}/s`, lat.p50_ms <= 50, `${lat.p50_ms.toFixed(1)} ms`],
    [`p99 ≤ 250 ms at ${RATE}/s`, lat.p99_ms <= 250, `${lat.p99_ms.toFixed(1)} ms`],
    ['devhost RSS ≤ 64 MiB', rss.peak_mib <= 64, `${rss.peak_mib.toFixed(1)} MiB`],
  ];
  console.log('\n| target | measured | met |\n|---|---|---|');
  for (const [n, ok, v] of targets) console.log(`| ${n} | ${v} | ${ok ? 'yes' : 'NO'} |`);
  result.targets = Object.fromEntries(targets.map(([n, ok, v]) => [n, { ok, value: v }]));
  if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, JSON.stringify(result, null, 2));
} finally {
  await client?.stop().catch(() => {});
  if (dh) await dh.stop('SIGINT');
  app.cleanup();
  fs.rmSync(data, { recursive: true, force: true });
  await az.stop();
}
if (failed) { console.log('FAILED: a message was refused, lost or not delivered, or the sender missed the rate'); process.exit(1); }
