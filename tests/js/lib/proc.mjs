// Processes for tests and benchmarks (Linux): starting a child that cannot outlive the test
// process, and what /proc says about a process (CPU time, memory, working folder).
import fs from 'node:fs';
import path from 'node:path';
import { execFile, spawn, spawnSync } from 'node:child_process';

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100);

/** utime + stime of pid, in seconds. */
export function procCpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** A "Vm...:  N kB" field of /proc/<pid>/status in KiB (VmHWM: peak RSS, VmRSS: now). */
export function procStatusKiB(pid, field) {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** util-linux's setpriv (Debian: in the essential util-linux package), looked up once. */
const SETPRIV = (process.env.PATH || '/usr/bin:/bin').split(':').map((d) => path.join(d, 'setpriv'))
  .find((f) => { try { fs.accessSync(f, fs.constants.X_OK); return true; } catch { return false; } }) || '/usr/bin/setpriv';

/**
 * spawn(cmd, args, opts) with the child tied to this process: setpriv sets PR_SET_PDEATHSIG
 * (SIGKILL) and execs cmd, so the kernel kills the child when this process dies however it dies
 * (node --test SIGTERMs a test file at its timeout, and a file can crash before its after hooks
 * run); otherwise such a child runs on forever with parent 1. The pid is cmd's (exec keeps it).
 * A server the child starts in turn is its own business: devhost ties its handler the same way.
 * (setpriv sets the signal as it starts: if this process died in those few milliseconds, the
 * child would not get it.)
 */
export function spawnTied(cmd, args = [], opts = {}) {
  return spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args], opts);
}

/** Run cmd to its end (killed after opts.timeout ms, 20 s unless given): resolves
 *  { code, stdout, stderr }, code -1 when it was killed or could not start. Never rejects, so
 *  a test asserts on the code and shows stderr. */
export function runFile(cmd, args = [], opts = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20000, ...opts }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
  });
}

/** Live processes whose working folder is dir or inside it: what a test started there and
 *  left running (zombies and processes of other users are not listed). */
export function processesIn(dir) {
  const root = path.resolve(dir);
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let cwd;
    try { cwd = fs.readlinkSync(`/proc/${d}/cwd`).replace(/ \(deleted\)$/, ''); } catch { continue; }
    if (cwd === root || cwd.startsWith(`${root}/`)) out.push(Number(d));
  }
  return out;
}
