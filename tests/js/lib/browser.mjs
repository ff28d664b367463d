// Debian's Chromium driven by playwright-core, for the dashboard tests: headless, no sandbox (tests
// may run as root), no GPU, nothing that reaches the network on its own, and a fresh profile
// every launch (Playwright's temporary --user-data-dir). Also a recorder of everything a page reports (console, uncaught errors, dialogs)
// with the time it happened, so tests can assert on "no error" precisely.
import fs from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Launch Chromium; returns {browser, cpuMs(), close()}. Playwright gives every launch a fresh
 *  temporary profile (its own --user-data-dir, removed on close). */
export async function launchChromium() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  return {
    browser,
    /** CPU time (ms) used so far by this browser's processes (Linux /proc). */
    cpuMs: () => descendantCpuMs(process.pid, /chrom/i),
    close: () => browser.close().catch(() => {}),
  };
}

/**
 * Record what a page reports: {events: [{at, kind, type, text}], dialogs: [...], errors()}.
 * kind is 'console', 'pageerror' or 'dialog'; dialogs are dismissed (and recorded).
 */
export function recordPage(page) {
  const events = [];
  page.on('console', (m) => events.push({ at: Date.now(), kind: 'console', type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => events.push({ at: Date.now(), kind: 'pageerror', type: 'error', text: String(e?.stack || e) }));
  page.on('dialog', (d) => {
    events.push({ at: Date.now(), kind: 'dialog', type: d.type(), text: d.message() });
    d.dismiss().catch(() => {});
  });
  return {
    events,
    dialogs: () => events.filter((e) => e.kind === 'dialog'),
    /** Errors (console.error, uncaught exceptions), minus those `allowed(e)` accepts. */
    errors: (allowed = () => false) => events.filter((e) => (e.kind === 'pageerror' || e.type === 'error') && !allowed(e)),
  };
}

/** User+system CPU (ms) of the descendants of pid whose command name matches re (Linux /proc;
 *  the browser is a child of this test process, so these are its processes and nobody else's). */
function descendantCpuMs(pid, re) {
  const procs = new Map();          // pid → {ppid, name, ticks}
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      procs.set(Number(d), { ppid: Number(f[1]), name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
        ticks: Number(f[11]) + Number(f[12]) });
    } catch { /* exited meanwhile */ }
  }
  let ticks = 0;
  for (const [p, info] of procs) {
    if (!re.test(info.name)) continue;
    for (let q = info.ppid; q; q = procs.get(q)?.ppid) if (q === pid) { ticks += info.ticks; break; }
  }
  return ticks * 10;                // USER_HZ is 100 on Linux
}

// --- the dashboard page (device ids are passed as data, never spliced into code) -------------

/** Open the dashboard at baseUrl + query in a new page of context and wait until it says
 *  connected; returns {p, r (its recordPage), resp}. */
export async function openDashboard(context, baseUrl, query = '') {
  const p = await context.newPage();
  const r = recordPage(p);
  const resp = await p.goto(`${baseUrl}/${query}`);
  if (resp.status() !== 200) throw new Error(`the dashboard answered ${resp.status()}`);
  await p.waitForFunction(() => document.getElementById('conn').dataset.state === 'connected', null, { timeout: 30000 });
  return { p, r, resp };
}

/** A device's row as the table shows it: {id, status, temp, humidity, pressure, accepted,
 *  invalid, seen, charted}, or null. Only rows on screen exist, so the table is scrolled to it
 *  first (its reveal(), as keyboard navigation uses). */
export function dashboardRow(p, id) {
  return p.evaluate((want) => {
    const row = window.enviromon.table.reveal(want);
    if (!row) return null;
    const t = (cls) => row.querySelector(cls).textContent;
    return { id: t('.id'), status: row.dataset.status, temp: t('.c-temp'), humidity: t('.c-hum'), pressure: t('.c-press'),
      accepted: t('.c-count'), invalid: t('.c-invalid'), seen: t('.c-seen'), charted: row.classList.contains('charted') };
  }, id);
}

/** Click a device's row, as a person would. */
export async function clickDashboardRow(p, id) {
  await p.evaluate((want) => window.enviromon.table.reveal(want), id);
  await p.locator('#devices-body [role="row"]', { has: p.locator('.id', { hasText: id }) }).first().click();
}
