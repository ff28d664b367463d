// Run ./simulator for tests: its exit status, output, and the --json summary when asked for.
import path from 'node:path';
import { repoRoot } from './handler.mjs';
import { spawnTied } from './proc.mjs';

export const simulatorBin = process.env.SIMULATOR_BIN || path.join(repoRoot, 'simulator');

/**
 * Run the simulator with args. Options: signals [{afterMs, signal}] sent while it runs,
 * signalWhen {test(stderr) -> bool, signal} sent once when its test first passes,
 * onStderr(text) called as stderr grows, timeoutMs (SIGKILL after, default 120 s), env.
 * Resolves {code, signal, stdout, stderr, json}.
 */
export function runSimulator(args, { signals = [], signalWhen, timeoutMs = 120000, env = {}, onStderr } = {}) {
  const wrapper = (process.env.ENVIROMON_WRAPPER || '').split(' ').filter(Boolean);
  const cmd = wrapper.length ? wrapper[0] : simulatorBin;
  const argv = wrapper.length ? [...wrapper.slice(1), simulatorBin, ...args] : args;
  const proc = spawnTied(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => { stdout += d; });
  let signalled = false;
  proc.stderr.on('data', (d) => {
    stderr += d;
    onStderr?.(stderr);
    if (signalWhen && !signalled && signalWhen.test(stderr)) {
      signalled = true;
      proc.kill(signalWhen.signal ?? 'SIGINT');
    }
  });
  const timers = signals.map(({ afterMs, signal = 'SIGINT' }) => setTimeout(() => proc.kill(signal), afterMs));
  const killer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      timers.forEach(clearTimeout);
      clearTimeout(killer);
      let json = null;
      if (args.includes('--json')) {
        try { json = JSON.parse(stdout); } catch { json = null; }
      }
      resolve({ code, signal, stdout, stderr, json, proc });
    });
  });
}
