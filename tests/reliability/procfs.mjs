// /proc figures for the reliability runs (rig.mjs): a process's CPU, RSS, descriptors and the
// time its threads waited for a CPU, sampled over a run; the machine's CPU pressure; a child
// process found by name. Linux only; no side effects on import.
import fs from 'node:fs';

const TICK = 100; // USER_HZ
const PAGE = 4096;

/** pid of a child process of pid whose command name is comm (from /proc/PID/task/TID/children),
 *  or 0. The newest when there are several. */
export function childPid(pid, comm) {
  let found = 0;
  let tasks = [];
  try { tasks = fs.readdirSync(`/proc/${pid}/task`); } catch { return 0; }
  for (const tid of tasks) {
    let kids = '';
    try { kids = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8'); } catch { continue; }
    for (const k of kids.split(' ').filter(Boolean).map(Number)) {
      try {
        if (fs.readFileSync(`/proc/${k}/comm`, 'utf8').trim() === comm && k > found) found = k;
      } catch { /* gone */ }
    }
  }
  return found;
}

/** Nanoseconds each thread of pid spent runnable but waiting for a CPU (/proc/PID/task/TID/
 *  schedstat, second field), as a Map tid → ns. */
function runDelays(pid) {
  const m = new Map();
  let tasks = [];
  try { tasks = fs.readdirSync(`/proc/${pid}/task`); } catch { return m; }
  for (const tid of tasks) {
    try { m.set(tid, Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1])); } catch { /* gone */ }
  }
  return m;
}

/** The machine's CPU pressure so far: microseconds in which some runnable task waited for a CPU
 *  (/proc/pressure/cpu "some total"), or null without PSI. */
export function cpuPressureUs() {
  try {
    const m = /^some .*total=(\d+)/m.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** {cpuTicks, rssKiB, fds, threads} of pid, or null when gone. */
export function procSample(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuTicks = Number(f[11]) + Number(f[12]); // utime + stime
    const rssKiB = (Number(f[21]) * PAGE) / 1024;
    const threads = Number(f[17]);
    let fds = 0;
    try { fds = fs.readdirSync(`/proc/${pid}/fd`).length; } catch { fds = -1; }
    return { cpuTicks, rssKiB, fds, threads };
  } catch {
    return null;
  }
}

/**
 * Sample named processes every intervalMs: {stop() → {name: {cpuPct, runWaitPct, rssMaxMiB,
 * rssEndMiB, fdsMax, ...}}}. runWaitPct: the time its threads were runnable but waiting for a
 * CPU (summed over threads, as a share of the wall time; threads sampled while alive), a
 * measure of how much a busy machine held the process back. After stop(), machine is
 * {cpuPressurePct}: the share of the wall time in which some task on the machine waited for a
 * CPU (/proc/pressure/cpu), or null without PSI.
 */
export function sampler(pids, intervalMs = 1000) {
  const series = Object.fromEntries(Object.keys(pids).map((k) => [k, []]));
  const waited = Object.fromEntries(Object.keys(pids).map((k) => [k, { ns: 0, last: new Map(), pid: 0 }]));
  const t0 = Date.now();
  const psi0 = cpuPressureUs();
  const take = () => {
    const t = Date.now();
    for (const [name, pid] of Object.entries(pids)) {
      const p = typeof pid === 'function' ? pid() : pid;
      const s = p ? procSample(p) : null;
      if (s) series[name].push({ t, ...s });
      const w = waited[name];
      if (p && p !== w.pid) { w.pid = p; w.last = new Map(); } // a restarted process: new threads
      if (p) {
        for (const [tid, ns] of runDelays(p)) {
          const prev = w.last.get(tid);
          if (prev !== undefined && ns > prev) w.ns += ns - prev;
          w.last.set(tid, ns);
        }
      }
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  const api = {
    series,
    machine: null,
    stop() {
      clearInterval(timer);
      take();
      const wallMs = Date.now() - t0;
      const psi1 = cpuPressureUs();
      const out = {};
      for (const [name, xs] of Object.entries(series)) {
        if (xs.length < 2) continue;
        const a = xs[0];
        const b = xs.at(-1);
        out[name] = {
          cpuPct: Math.round((((b.cpuTicks - a.cpuTicks) / TICK) / ((b.t - a.t) / 1000)) * 1000) / 10,
          runWaitPct: Math.round((waited[name].ns / 1e6 / wallMs) * 1000) / 10,
          rssMaxMiB: Math.round(Math.max(...xs.map((x) => x.rssKiB)) / 102.4) / 10,
          rssStartMiB: Math.round(a.rssKiB / 102.4) / 10,
          rssEndMiB: Math.round(b.rssKiB / 102.4) / 10,
          fdsStart: a.fds,
          fdsMax: Math.max(...xs.map((x) => x.fds)),
          fdsEnd: b.fds,
        };
      }
      if (psi0 !== null && psi1 !== null) api.machine = { cpuPressurePct: Math.round(((psi1 - psi0) / 1000 / wallMs) * 1000) / 10 };
      return out;
    },
  };
  return api;
}
