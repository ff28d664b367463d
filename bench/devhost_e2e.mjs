// devhost start end to end (issue 9's benchmark, docs/benchmarks.md "devhost start: devices →
// DeviceState → SignalR"): devices POST to devhost's IoT Hub device API over keep-alive HTTP;
// each message is made durable in its partition log, read by the Event Hubs trigger, folded by
// EventTrigger (the release ./handler) into DeviceState rows in Azurite and pushed to an
// @microsoft/signalr client that negotiated through devhost. One run, side by side:
//   1. throughput: wrk (-t2 -cCONNECTIONS, BENCH_SECONDS) as fast as it can; accepted = 204s per
//      second of wrk's run; delivered = every stored message counted in DeviceState and the last
//      push of each device carrying its final Count, per second from the start to the last push
//   2. latency at BENCH_RATE messages/s (BENCH_LAT_SECONDS): each device sends on a fixed schedule
//      (open loop, spread over the period); message k of a device is delivered when a push for
//      that device carries a count that includes k of its messages; latency = push received −
//      POST started
//   3. the EventTrigger-only benchmark (bench/event_trigger.sh, its (b)) in the same run, so that
//      the pipeline's overhead is a ratio: delivered end to end ÷ EventTrigger alone
// devhost's CPU (utime+stime) per message and RSS (VmRSS, VmHWM) come from /proc. Exits 1 on a
// refused or lost message; reports the targets (≥ 6,000 msgs/s, p50 ≤ 50 ms and p99 ≤ 250 ms at
// 1,000 msgs/s, devhost RSS ≤ 64 MiB) without failing on them.
// Env: BENCH_DEVICES (100), BENCH_SECONDS (15), BENCH_CONNECTIONS (32), BENCH_RATE (1000),
// BENCH_LAT_SECONDS (10), BENCH_ET_EVENTS (20000; 0 skips step 3), BENCH_OUT (json file),
// HANDLER_BIN, DEVHOST_BIN.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startAzurite } from '../tests/js/lib/azurite.mjs';
import { makeStackApp, signalrClient, num } from '../tests/js/lib/stack.mjs';
import { startDevhost, tempDir, repoRoot, waitFor } from '../tests/js/lib/devhost.mjs';
import { addDevice, nodeToken, encodeStrict } from '../tests/js/lib/iothub.mjs';
import { rowsOf } from '../tests/js/lib/eventhub.mjs';
import { procCpuSeconds, procStatusKiB } from '../tests/js/lib/proc.mjs';

const DEVICES = Number(process.env.BENCH_DEVICES ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const RATE = Number(process.env.BENCH_RATE ?? 1000);
const LAT_SECONDS = Number(process.env.BENCH_LAT_SECONDS ?? 10);
const ET_EVENTS = Number(process.env.BENCH_ET_EVENTS ?? 20000);
const cpuSeconds = procCpuSeconds;
const memMiB = (pid, key) => procStatusKiB(pid, key) / 1024;
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];
const sumCounts = (rows) => Object.values(rows).reduce((n, r) => n + num(r.Count), 0);

function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${out}`))));
  });
}

const az = await startAzurite();
const app = await makeStackApp({ tag: 'bench', conn: az.connection });
const data = tempDir('bench-data');
let dh;
let client;
let failed = false;
try {
  dh = await startDevhost(app.root, { data, args: ['--no-mqtt'] });
  const pid = dh.proc.pid;
  const devs = Array.from({ length: DEVICES }, (_, i) => addDevice(`bench-${String(i).padStart(4, '0')}`, data));
  client = await signalrClient(dh.url);
  const lastPush = new Map(); // device → {count, at}
  let lastPushAt = 0;
  const listeners = [];
  client.conn.on('newMessage', (m) => {
    const at = performance.now();
    for (const x of Array.isArray(m) ? m : [m]) {
      const prev = lastPush.get(x.deviceId);
      if (!prev || x.count > prev.count) lastPush.set(x.deviceId, { count: x.count, at });
      lastPushAt = at;
      for (const l of listeners) l(x, at);
    }
  });
  const rssIdle = memMiB(pid, 'VmRSS');

  // ---- 1. throughput
  const luaDevs = path.join(app.root, 'devices.lua');
  fs.writeFileSync(luaDevs, `return {\n${devs.map((d) => `{ path = "/devices/${encodeStrict(d.id)}/messages/events?api-version=2021-04-12", `
    + `auth = "${nodeToken(d.id, d.key, 7200)}" }`).join(',\n')}\n}\n`);
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const wrk = JSON.parse((await run('wrk', ['-t2', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '-s', path.join(repoRoot, 'bench', 'devhost_e2e.lua'),
    dh.url], { BENCH_DEVICES_LUA: luaDevs })).trim().split('\n').pop());
  const accepted = wrk.requests - wrk.refused;
  if (wrk.refused) { failed = true; console.log(`REFUSED: ${wrk.refused} messages answered other than 204`); }
  // Messages in flight when wrk stopped may be stored too (at most one per connection).
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
  const lost = stored < accepted || stored > accepted + CONNECTIONS || notPushed > 0;
  if (lost) failed = true;
  const thr = {
    seconds: wrk.seconds, accepted, accepted_per_s: accepted / wrk.seconds, post_p50_ms: wrk.p50_ms, post_p99_ms: wrk.p99_ms,
    socket_errors: wrk.socket_errors, stored_and_counted: stored, delivered_seconds: deliveredSeconds,
    delivered_per_s: stored / deliveredSeconds, devhost_cpu_us_per_msg: ((cpu1 - cpu0) * 1e6) / stored,
    devices_without_final_push: notPushed,
  };
  console.log(`1. throughput: ${accepted} accepted in ${wrk.seconds.toFixed(1)} s = ${thr.accepted_per_s.toFixed(0)} msgs/s `
    + `(POST p50 ${wrk.p50_ms.toFixed(1)} ms, p99 ${wrk.p99_ms.toFixed(1)} ms); ${stored} counted in DeviceState, the last push `
    + `${deliveredSeconds.toFixed(1)} s after the start = ${thr.delivered_per_s.toFixed(0)} msgs/s delivered; devhost CPU `
    + `${thr.devhost_cpu_us_per_msg.toFixed(1)} µs/msg${lost ? ' — LOST OR EXTRA MESSAGES' : ''}`);

  // ---- 2. latency at RATE msgs/s
  const base = new Map(devs.map((d) => [d.id, num(rows[d.id]?.Count ?? 0)]));
  const per = Math.max(1, Math.round((RATE * LAT_SECONDS) / DEVICES)); // messages per device
  const period = (1000 * DEVICES) / RATE; // ms between one device's messages
  const sendAt = new Map(devs.map((d) => [d.id, []])); // device → POST start times, by k
  const latencies = [];
  const seen = new Map(devs.map((d) => [d.id, 0]));
  listeners.push((x, at) => {
    const times = sendAt.get(x.deviceId);
    if (!times) return;
    const k = x.count - base.get(x.deviceId); // messages of phase 2 this push includes
    for (let j = seen.get(x.deviceId); j < Math.min(k, times.length); j++) latencies.push(at - times[j]);
    seen.set(x.deviceId, Math.max(seen.get(x.deviceId), Math.min(k, times.length)));
  });
  // node:http with kept-alive sockets: fetch costs the one-threaded sender several times more CPU
  const agent = new http.Agent({ keepAlive: true, maxSockets: DEVICES });
  const post = (p, auth, body) => new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: dh.port, path: p, method: 'POST', agent,
      headers: { Authorization: auth, 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(body);
  });
  const cpu2 = cpuSeconds(pid);
  const l0 = performance.now();
  let refused = 0;
  let late = 0;
  const inflight = [];
  const postMs = [];
  await Promise.all(devs.map(async (d, i) => {
    const tok = nodeToken(d.id, d.key, 7200);
    const url = `/devices/${encodeStrict(d.id)}/messages/events?api-version=2021-04-12`;
    for (let k = 0; k < per; k++) {
      const due = l0 + (i * period) / DEVICES + k * period;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait)); else if (wait < -period) late++;
      const at = performance.now();
      sendAt.get(d.id).push(at);
      // open loop: the schedule does not wait for the previous 204 (a device's messages may
      // then be stored out of order by the few in flight; the k-th counted stands for the k-th sent)
      inflight.push(post(url, tok, JSON.stringify({ temperature: 20.5, humidity: 50, messageId: 1e9 + i * per + k }))
        .then((status) => { postMs.push(performance.now() - at); if (status !== 204) refused++; }, () => { refused++; }));
    }
  }));
  await Promise.all(inflight);
  const sentSeconds = (performance.now() - l0) / 1000;
  agent.destroy();
  const total = per * DEVICES;
  await waitFor(() => latencies.length >= total, { timeoutMs: 120000, intervalMs: 100, what: `${total} latency samples` })
    .catch(() => { failed = true; });
  const cpu3 = cpuSeconds(pid);
  latencies.sort((a, b) => a - b);
  if (refused) failed = true;
  const lat = {
    offered_per_s: RATE, achieved_per_s: total / sentSeconds, messages: total, samples: latencies.length, refused, late,
    p50_ms: pct(latencies, 50), p99_ms: pct(latencies, 99), max_ms: latencies.at(-1), devhost_cpu_us_per_msg: ((cpu3 - cpu2) * 1e6) / total,
    post_p50_ms: pct(postMs.sort((a, b) => a - b), 50), post_p99_ms: pct(postMs, 99),
  };
  console.log(`2. latency at ${RATE} msgs/s: ${total} messages in ${sentSeconds.toFixed(1)} s (${lat.achieved_per_s.toFixed(0)}/s, `
    + `${late} sent over a period late); POST → push p50 ${lat.p50_ms.toFixed(1)} ms, p99 ${lat.p99_ms.toFixed(1)} ms, `
    + `max ${lat.max_ms.toFixed(1)} ms (POST → 204 p50 ${lat.post_p50_ms.toFixed(1)} ms, p99 ${lat.post_p99_ms.toFixed(1)} ms); ${latencies.length}/${total} delivered; devhost CPU ${lat.devhost_cpu_us_per_msg.toFixed(1)} µs/msg`);
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
  const result = { when: new Date().toISOString(), devices: DEVICES, connections: CONNECTIONS, throughput: thr, latency: lat, rss,
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
if (failed) { console.log('FAILED: a message was refused, lost or not delivered'); process.exit(1); }
