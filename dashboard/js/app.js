// app.js — the Enviromon dashboard: wires the connection, the device store, the table, the
// charts and the header together.
//
// Pushes are merged into the store as they arrive (cheap, and bounded by the number of
// devices however long a hidden tab goes unpainted); everything that touches the DOM waits for
// the next animation frame and handles all devices that changed since the last one. A
// one-second tick moves the clocks ("12 s ago"), the stale statuses and the chart window.

import config from '../config.js';
import { resolveSettings } from './settings.js';
import { DeviceStore, parseMessage } from './model.js';
import { DeviceTable } from './table.js';
import { Charts, WINDOWS } from './charts.js';
import { Connection } from './connection.js';
import * as fmt from './format.js';

const PALETTE_LIGHT = ['#2f6fd0', '#e0672b', '#1f9d6b', '#c2417e', '#7a5bd6', '#b8860b', '#0f8fa8', '#d1423f', '#5d7a1f', '#8a5a44'];
const PALETTE_DARK = ['#6ea8ff', '#ff9a5c', '#4fd1a1', '#f47fb5', '#a78bfa', '#f2c14e', '#45c7e0', '#ff7a77', '#a3c95a', '#d4a58a'];
const RATE_SECONDS = 5;            // the messages/s figure averages this many whole seconds
// DOM updates run in an animation frame, at most this often: ten refreshes a second read as
// live, and a table re-laid out on every frame at hundreds of messages a second is not.
const FRAME_MIN_MS = 100;
const PREFS_KEY = 'enviromon.dashboard.v1';

const $ = (id) => document.getElementById(id);

/** Set an element's text only when it differs (an unchanged write still costs a layout). */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function loadPrefs() {
  try { return JSON.parse(localStorage.getItem(PREFS_KEY)) ?? {}; } catch { return {}; }
}
function savePrefs(p) {
  try { localStorage.setItem(PREFS_KEY, JSON.stringify(p)); } catch { /* private mode: fine */ }
}

function banner(text) {
  const b = $('banner');
  b.textContent = text;
  b.hidden = !text;
}

function main() {
  const settings = resolveSettings(location.href, config);
  $('stale-after').textContent = `${settings.staleMs / 1000} s`;
  if (!globalThis.signalR || !globalThis.uPlot) {
    banner('The page\u2019s libraries (vendor/) are missing: run make in the repository to copy them in.');
    return;
  }
  if (settings.apiError) {
    banner(`Cannot connect: ${settings.apiError}. Set ?api= or config.js.`);
    return;
  }
  $('api').textContent = settings.api;

  const prefs = loadPrefs();
  const dark = matchMedia('(prefers-color-scheme: dark)');
  const store = new DeviceStore();
  const loadedAt = Date.now();
  // Chart selection: id → palette slot, in the order chosen. Restored from the last visit.
  const selection = new Map();
  for (const id of Array.isArray(prefs.selection) ? prefs.selection : []) {
    if (typeof id === 'string' && selection.size < settings.maxCharted) selection.set(id, selection.size);
  }
  const palette = () => (dark.matches ? PALETTE_DARK : PALETTE_LIGHT);
  let charted = [];               // [{id, colour}]
  let chartedColour = new Map();

  const table = new DeviceTable({
    grid: $('devices'), head: $('devices-head'), body: $('devices-body'), wrap: $('devices-wrap'), empty: $('empty'),
  }, {
    store,
    staleMs: settings.staleMs,
    colorOf: (id) => chartedColour.get(id) ?? null,
    onToggle: toggle,
    sort: prefs.sort && typeof prefs.sort.key === 'string' ? prefs.sort : undefined,
  });
  const charts = new Charts({
    plots: [$('chart-temperature'), $('chart-humidity'), $('chart-pressure')],
    legend: $('legend'), hint: $('chart-hint'), time: $('legend-time'),
  }, { uPlot: globalThis.uPlot, store, staleMs: settings.staleMs, loadedAt, onLegendClick: unchart });

  function persist() {
    savePrefs({ selection: [...selection.keys()], sort: table.sort, window: charts.windowKey });
  }

  /** Recompute the charted devices: the selection, else the first few known devices by id. */
  function updateCharted() {
    let list;
    const pal = palette();
    const note = $('chart-note');
    if (selection.size > 0) {
      list = [...selection].filter(([id]) => store.devices.has(id)).map(([id, slot]) => ({ id, colour: pal[slot % pal.length] }));
      note.textContent = `${selection.size} selected \u00b7 click rows to add or remove`;
      $('clear').hidden = false;
    } else {
      const ids = [...store.devices.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).slice(0, settings.autoChart);
      list = ids.map((id, i) => ({ id, colour: pal[i % pal.length] }));
      note.textContent = list.length ? `Showing the first ${list.length} \u00b7 click rows to choose` : '';
      $('clear').hidden = true;
    }
    const changed = list.length !== charted.length || list.some((d, i) => d.id !== charted[i].id || d.colour !== charted[i].colour);
    if (!changed) return;
    charted = list;
    chartedColour = new Map(list.map((d) => [d.id, d.colour]));
    charts.setDevices(list);
    table.recolour();
  }

  function toggle(id) {
    if (selection.has(id)) {
      selection.delete(id);
    } else {
      if (selection.size >= settings.maxCharted) {
        flash(`Up to ${settings.maxCharted} devices can be charted at once.`);
        return;
      }
      const used = new Set(selection.values());
      let slot = 0;
      while (used.has(slot)) slot++;
      selection.set(id, slot);
    }
    updateCharted();
    persist();
  }

  /** Stop charting id (a legend click): with nothing picked, the others charted stay picked. */
  function unchart(id) {
    if (selection.size === 0) charted.forEach((d, slot) => { if (d.id !== id) selection.set(d.id, slot); });
    else selection.delete(id);
    updateCharted();
    persist();
  }

  let flashTimer = null;
  function flash(text) {
    const n = $('chart-note');
    const before = n.textContent;
    n.textContent = text;
    n.classList.add('warn');
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { n.classList.remove('warn'); n.textContent = before; updateCharted(); }, 2500);
  }

  // --- frame batching -------------------------------------------------------------------
  const changed = new Set();
  let frameRequested = false;
  let lastFrame = -Infinity;
  let newDevices = false;
  // Live items per whole second (a ring of RATE_SECONDS + 1 counters) for the messages/s figure.
  const perSecond = new Uint32Array(RATE_SECONDS + 1);
  let perSecondAt = Math.floor(Date.now() / 1000);
  function countArrivals(n, nowMs) {
    const sec = Math.floor(nowMs / 1000);
    if (sec - perSecondAt >= perSecond.length) { perSecond.fill(0); perSecondAt = sec; }
    for (; perSecondAt < sec; perSecondAt++) perSecond[(perSecondAt + 1) % perSecond.length] = 0;
    perSecond[sec % perSecond.length] += n;
  }
  function messageRate(nowMs) {
    countArrivals(0, nowMs);
    const sec = Math.floor(nowMs / 1000);
    let sum = 0;                  // the last RATE_SECONDS complete seconds
    for (let k = 1; k <= RATE_SECONDS; k++) sum += perSecond[(sec - k) % perSecond.length];
    const seconds = Math.min(RATE_SECONDS, Math.max(1, sec - Math.floor(loadedAt / 1000)));
    return sum / seconds;
  }
  function schedule() {
    if (frameRequested) return;
    frameRequested = true;
    const wait = FRAME_MIN_MS - (performance.now() - lastFrame);
    if (wait > 0) setTimeout(() => requestAnimationFrame(frame), wait);
    else requestAnimationFrame(frame);
  }
  function ingest(arg, live) {
    const now = Date.now();
    const { items } = parseMessage(arg);
    let fresh = 0;
    for (const item of items) {
      const isNew = !store.devices.has(item.id);
      const d = store.apply(item, now, live);
      if (!d) continue;
      if (isNew) newDevices = true;
      changed.add(d.id);
      fresh++;
    }
    if (live && fresh) countArrivals(fresh, now);
    if (changed.size) schedule();
  }
  function frame(now) {
    frameRequested = false;
    lastFrame = now;
    if (changed.size === 0) return;
    if (newDevices) { newDevices = false; updateCharted(); summary(); }
    table.update(changed);
    let chartedChanged = false;
    for (const d of charted) if (changed.has(d.id)) { chartedChanged = true; break; }
    changed.clear();
    if (chartedChanged) charts.request();
  }

  // --- header: connection, last message, summary ------------------------------------------
  let connState = { state: 'connecting' };
  function showConnection() {
    const el = $('conn');
    const s = connState;
    el.dataset.state = s.state;
    let text;
    if (s.state === 'connected') text = 'Live';
    else if (s.state === 'reconnecting') text = 'Reconnecting\u2026';
    else if (s.state === 'connecting') text = 'Connecting\u2026';
    else {
      const secs = s.retryAt ? Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000)) : 0;
      text = secs > 0 ? `Offline \u00b7 retry in ${secs} s` : 'Offline';
    }
    setText($('conn-text'), text);
    el.title = s.error ? `Last error: ${s.error}` : '';
    banner(s.state === 'connected' && s.snapshotError ? `Live, but the device list could not be loaded (${s.snapshotError}); retrying.` : '');
  }
  function summary() {
    let online = 0, stale = 0;
    for (const d of store.devices.values()) {
      const s = store.statusOf(d, settings.staleMs);
      if (s === 'online') online++; else if (s === 'stale') stale++;
    }
    setText($('s-devices'), fmt.count(store.devices.size));
    setText($('s-online'), fmt.count(online));
    setText($('s-stale'), fmt.count(stale));
    $('s-stale').parentElement.toggleAttribute('data-some', stale > 0);
    const now = Date.now();
    setText($('s-rate'), fmt.rate(messageRate(now)));
    const last = store.lastMessageAt;
    setText($('last-msg'), last == null ? fmt.MISSING : fmt.age(now - last));
    $('last-msg').dateTime = last == null ? '' : new Date(last).toISOString();
    $('last-msg').title = last == null ? '' : fmt.stamp(last);
    document.title = stale > 0 ? `(${stale} stale) Enviromon` : 'Enviromon';
  }

  // --- controls ---------------------------------------------------------------------------
  $('filter').addEventListener('input', (e) => { table.setFilter(e.target.value); table.update([]); });
  for (const b of document.querySelectorAll('[data-status-filter]')) {
    b.addEventListener('click', () => {
      const want = b.dataset.statusFilter === table.statusFilter ? 'all' : b.dataset.statusFilter;
      table.setStatusFilter(want);
      for (const o of document.querySelectorAll('[data-status-filter]')) o.setAttribute('aria-pressed', String(o.dataset.statusFilter === want));
      table.update([]);
    });
  }
  for (const b of document.querySelectorAll('[data-window]')) {
    b.addEventListener('click', () => {
      charts.setWindow(b.dataset.window);
      for (const o of document.querySelectorAll('[data-window]')) o.setAttribute('aria-pressed', String(o === b));
      persist();
    });
  }
  if (prefs.window in WINDOWS) document.querySelector(`[data-window="${prefs.window}"]`)?.click();
  $('clear').addEventListener('click', () => { selection.clear(); updateCharted(); persist(); });
  $('devices-head').addEventListener('click', () => { table.update([]); persist(); });
  dark.addEventListener('change', () => { charted = []; updateCharted(); });   // new palette: charts rebuilt with the new colours

  function tick() {
    showConnection();
    if (document.hidden) return;    // nothing to see; catch up when visible again
    table.tick();
    charts.request();
    summary();
  }
  setInterval(tick, 1000);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });

  const conn = new Connection({
    signalR: globalThis.signalR,
    api: settings.api,
    onPush: (arg) => ingest(arg, true),
    onSnapshot: (body) => ingest(Array.isArray(body) ? body : [], false),
    onState: (s) => { connState = s; showConnection(); },
  });
  conn.start();
  updateCharted();
  summary();

  // For the browser console (and the tests): read-only handles on the live state.
  Object.defineProperty(globalThis, 'enviromon', {
    value: Object.freeze({ settings, store, charts, table, connection: conn }),
  });
}

main();
