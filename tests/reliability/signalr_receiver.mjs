// A dashboard's SignalR client in a process of its own, for the load run's enqueue → client
// latency: it negotiates through devhost's /api, and for every pushed device item whose id starts
// with the prefix records (arrival − lastSeen) in ms. Kept out of the driving process, whose
// own work (the /proc sampler, the simulator's output, its growing heap) would otherwise delay
// the arrivals it measures. Started with child_process.fork by rig.mjs (signalrReceiver):
//   argv: baseUrl prefix; sends {ready: true} once connected; on {peek: true} it answers
//   {counted, ignored} (pushed items of its devices / of other devices so far); on {stop: true} it
//   disconnects and answers {lat: [...], devices: [ids counted, sorted], ignored,
//   eventLoopDelayMs: {p50, p99, max}}, then exits.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { signalR } from '../js/signalr_service_helpers.mjs';

const [baseUrl, prefix] = process.argv.slice(2);
const lat = [];
const devices = new Set();
let ignored = 0;
const conn = new signalR.HubConnectionBuilder().withUrl(`${baseUrl}/api`).configureLogging(signalR.LogLevel.None).build();
conn.on('newMessage', (m) => {
  const now = Date.now();
  for (const x of Array.isArray(m) ? m : [m]) {
    if (!x || !x.lastSeen) continue;
    if (!String(x.deviceId).startsWith(prefix)) { ignored++; continue; }
    lat.push(now - Date.parse(x.lastSeen));
    devices.add(String(x.deviceId));
  }
});
const eld = monitorEventLoopDelay({ resolution: 10 });
process.on('message', async (msg) => {
  if (msg && msg.peek) { process.send({ counted: lat.length, ignored }); return; }
  if (!msg || !msg.stop) return;
  eld.disable();
  await conn.stop().catch(() => {});
  const ms = (ns) => Math.round(ns / 1e5) / 10;
  process.send({ lat, devices: [...devices].sort(), ignored, eventLoopDelayMs: { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max) } },
    () => process.exit(0));
});
process.on('disconnect', () => process.exit(0)); // the driver went away
try {
  await conn.start();
} catch (e) {
  console.error(`signalr_receiver: cannot connect: ${e.message}`);
  process.exit(1);
}
eld.enable();
process.send({ ready: true });
