// charts.js — live line charts (temperature, humidity, pressure) of the charted devices over the
// chosen window (5 min, 1 h, since load), drawn with uPlot, plus one legend shared by the three
// charts that reads the values under the cursor (or the latest ones).
//
// The three charts share one x axis built by merging every charted device's timestamps;
// a device's value is `undefined` where another device reported (uPlot draws across it) and
// `null` where the device itself was silent for longer than the stale time (a visible gap).
// Zero is a value like any other. Redraws are throttled — at most every DRAW_MS, and never more
// than DRAW_SHARE of the time (a long window of busy devices takes longer to draw) — because a
// chart that repaints 60 times a second for 200 devices' worth of pushes helps nobody.

import * as fmt from './format.js';

export const METRICS = [
  { key: 'temperature', label: 'Temperature', unit: '°C', digits: 1 },
  { key: 'humidity', label: 'Humidity', unit: '%', digits: 1 },
  { key: 'pressure', label: 'Pressure', unit: 'hPa', digits: 1 },
];

/** Chart windows: key → span in ms (null: since the page loaded). */
export const WINDOWS = { '5m': 5 * 60 * 1000, '1h': 60 * 60 * 1000, all: null };

const DRAW_MS = 200;
const DRAW_SHARE = 0.1;

/**
 * Align per-device readings on one time axis. series: [{t: ms[], v: [[...] × 3], gapMs}].
 * Returns {x: seconds[], y: [metric][device] → (number|null|undefined)[]}: null marks a gap
 * (silence longer than gapMs, drawn as a break), undefined a time at which only other
 * devices reported.
 */
export function alignSeries(series) {
  const withGaps = series.map(({ t, v, gapMs }) => {
    const tt = [];
    const vv = v.map(() => []);
    for (let i = 0; i < t.length; i++) {
      if (i > 0 && t[i] - t[i - 1] > gapMs) {
        tt.push(t[i - 1] + 1);
        for (const a of vv) a.push(null);
      }
      tt.push(t[i]);
      for (let m = 0; m < v.length; m++) vv[m].push(v[m][i]);
    }
    return { t: tt, v: vv };
  });
  let total = 0;
  for (const s of withGaps) total += s.t.length;
  const all = new Float64Array(total);
  let k = 0;
  for (const s of withGaps) { all.set(s.t, k); k += s.t.length; }
  all.sort();
  const xs = [];
  for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) xs.push(all[i]);
  const y = METRICS.map(() => []);
  for (const s of withGaps) {
    const cols = METRICS.map(() => new Array(xs.length).fill(undefined));
    let j = 0;
    for (let i = 0; i < s.t.length; i++) {
      while (xs[j] < s.t[i]) j++;
      for (let m = 0; m < METRICS.length; m++) cols[m][j] = s.v[m][i];
    }
    for (let m = 0; m < METRICS.length; m++) y[m].push(cols[m]);
  }
  return { x: xs.map((t) => t / 1000), y };
}

const hhmm = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const hhmmss = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const ddhhmm = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

/** x tick labels on one line, as precise as the window needs (uPlot's default takes two). */
function timeTicks(u, ticks) {
  const span = u.scales.x.max - u.scales.x.min;
  const f = span > 36 * 3600 ? ddhhmm : span < 180 ? hhmmss : hhmm;
  return ticks.map((s) => f.format(new Date(s * 1000)));
}

/**
 * uPlot points filter: with lines only, a reading with no neighbour to join (a device's first
 * reading, or one between two silences) would be invisible; mark those. When uPlot already
 * shows every point (sparse data), nothing to add.
 */
function isolatedPoints(u, si, show) {
  if (show) return null;
  const ys = u.data[si];
  const [i0, i1] = u.series[0].idxs ?? [0, ys.length - 1];
  const out = [];
  let before = null;           // the previous defined (non-undefined) value in view
  let cand = -1;               // a non-null value whose left side is empty, awaiting its right side
  for (let i = i0; i <= i1; i++) {
    const v = ys[i];
    if (v === undefined) continue;
    if (cand >= 0) { if (v === null) out.push(cand); cand = -1; }
    if (v !== null && before === null) cand = i;
    before = v;
  }
  if (cand >= 0) out.push(cand);
  return out.length ? out : null;
}

/** y tick labels with as many decimals as the ticks need (22.5 must not read as 23). */
function valueTicks(u, ticks) {
  let d = 0;
  while (d < 3 && ticks.some((t) => Math.abs(t * 10 ** d - Math.round(t * 10 ** d)) > 1e-6)) d++;
  return ticks.map((t) => fmt.fixed(t, d));
}

function yRange(min, max) {
  if (min == null || max == null) return [0, 1];
  if (min === max) return [min - 1, max + 1];
  const pad = (max - min) * 0.08;
  return [min - pad, max + pad];
}

export class Charts {
  /**
   * els: {plots: [div × 3], legend: element, hint: element, time: element};
   * uPlot: the uPlot constructor; store: DeviceStore; staleMs; loadedAt: browser time at load;
   * onLegendClick(id).
   */
  constructor(els, { uPlot, store, staleMs, loadedAt, onLegendClick }) {
    this.els = els;
    this.uPlot = uPlot;
    this.store = store;
    this.staleMs = staleMs;
    this.loadedAt = loadedAt;
    this.onLegendClick = onLegendClick;
    this.windowKey = '5m';
    this.devices = [];              // [{id, colour}]
    this.plots = [];
    this.data = null;
    this.lastDraw = 0;
    this.drawCost = 0;              // ms the last redraw took
    this.timer = null;
    this.hoverIdx = null;
    this.legendRows = new Map();
    this.syncKey = `enviromon-${Math.random().toString(36).slice(2)}`;
    this.resize = new ResizeObserver(() => this.#fit());
    for (const p of els.plots) this.resize.observe(p);
  }

  setWindow(key) {
    if (!(key in WINDOWS) || key === this.windowKey) return;
    this.windowKey = key;
    this.drawNow();
  }

  /** The charted devices ([{id, colour}], in legend order). Rebuilds the charts when they change. */
  setDevices(list) {
    const same = list.length === this.devices.length &&
      list.every((d, i) => d.id === this.devices[i].id && d.colour === this.devices[i].colour);
    if (same) return;
    this.devices = list.slice();
    this.#build();
  }

  #build() {
    for (const u of this.plots) u.destroy();
    this.plots = [];
    this.hoverIdx = null;
    this.#buildLegend();
    const css = getComputedStyle(document.documentElement);
    const v = (name) => css.getPropertyValue(name).trim();
    const axisColour = v('--muted');
    const gridColour = v('--grid');
    const font = `12px ${v('--font-ui') || 'system-ui, sans-serif'}`;
    this.els.hint.hidden = this.devices.length > 0;
    this.#window();
    METRICS.forEach((metric, m) => {
      const el = this.els.plots[m];
      el.replaceChildren();
      if (this.devices.length === 0) return;
      const axis = { stroke: axisColour, font, grid: { stroke: gridColour, width: 1 }, ticks: { stroke: gridColour, width: 1, size: 4 } };
      const opts = {
        width: Math.max(120, el.clientWidth),
        height: Math.max(80, el.clientHeight),
        legend: { show: false },
        padding: [10, 28, 0, 0],    // room for the last time label
        cursor: { sync: { key: this.syncKey }, drag: { x: false, y: false }, points: { size: 7 } },
        scales: {
          x: { time: true, range: () => [this.from / 1000, this.to / 1000] },
          y: { range: (u, min, max) => yRange(min, max) },
        },
        axes: [
          { ...axis, space: (u, i, min, max) => (max - min < 180 ? 104 : 76), size: 28, values: timeTicks },
          { ...axis, size: 52, values: valueTicks },
        ],
        series: [{}, ...this.devices.map((d) => ({
          label: d.id, stroke: d.colour, width: 1.75, spanGaps: false,
          points: { filter: isolatedPoints, size: 6, fill: d.colour },
          value: (u, val) => fmt.fixed(val, metric.digits),
        }))],
        hooks: { setCursor: [(u) => this.#cursor(u)] },
      };
      this.plots.push(new this.uPlot(opts, [[], ...this.devices.map(() => [])], el));
    });
    this.drawNow();
  }

  #buildLegend() {
    const ul = this.els.legend;
    ul.replaceChildren();
    this.legendRows.clear();
    for (const d of this.devices) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.title = `Stop charting ${d.id}`;
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.backgroundColor = d.colour;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = d.id;
      b.append(sw, name);
      b.addEventListener('click', () => this.onLegendClick(d.id));
      const vals = METRICS.map((metric) => {
        const s = document.createElement('span');
        s.className = `val v-${metric.key}`;
        s.title = `${metric.label} (${metric.unit})`;
        return s;
      });
      li.append(b, ...vals);
      ul.append(li);
      this.legendRows.set(d.id, { vals, texts: [null, null, null] });
    }
  }

  #window() {
    const now = this.store.clock.serverNow();
    const span = WINDOWS[this.windowKey];
    this.to = now;
    // Since load: from the moment the page loaded, on the server clock (readings the snapshot
    // brought from before then belong to the 5 min and 1 h windows), and at least 30 s.
    const loaded = this.loadedAt - (this.store.clock.offset ?? 0);
    this.from = span != null ? now - span : Math.min(loaded, now - 30 * 1000);
  }

  /** Data changed: redraw soon (throttled). */
  request() {
    if (this.timer !== null || this.devices.length === 0) return;
    const gap = Math.max(DRAW_MS, this.drawCost / DRAW_SHARE);
    const wait = Math.max(0, gap - (performance.now() - this.lastDraw));
    this.timer = setTimeout(() => requestAnimationFrame(() => { this.timer = null; this.drawNow(); }), wait);
  }

  /** Rebuild the aligned data for the window and hand it to the three charts. */
  drawNow() {
    const start = performance.now();
    this.lastDraw = start;
    this.#window();
    if (this.devices.length === 0) return;
    const series = this.devices.map(({ id }) => {
      const h = this.store.devices.get(id)?.history;
      if (!h) return { t: [], v: [[], [], []], gapMs: this.staleMs };
      const r = h.range(this.from, this.to);
      return { ...r, gapMs: Math.max(this.staleMs, 1.5 * h.bucketMs) };
    });
    const { x, y } = alignSeries(series);
    this.data = METRICS.map((_, m) => [x, ...y[m]]);
    this.plots.forEach((u, m) => u.setData(this.data[m]));
    this.#legendValues();
    // uPlot draws in a microtask queued by setData: measure after it.
    queueMicrotask(() => { this.drawCost = performance.now() - start; });
  }

  #fit() {
    this.plots.forEach((u, m) => {
      const el = this.els.plots[m];
      const w = Math.max(120, el.clientWidth), h = Math.max(80, el.clientHeight);
      if (u.width !== w || u.height !== h) u.setSize({ width: w, height: h });
    });
  }

  #cursor(u) {
    const idx = u.cursor.idx;
    this.hoverIdx = idx == null ? null : idx;
    this.#legendValues();
  }

  /** Legend values: under the cursor (nearest earlier reading of each device), else the latest. */
  #legendValues() {
    const idx = this.hoverIdx;
    const x = this.data?.[0]?.[0];
    const hovering = idx != null && x && idx < x.length;
    this.els.time.textContent = hovering ? fmt.stamp(x[idx] * 1000) : 'latest';
    this.devices.forEach(({ id }, k) => {
      const row = this.legendRows.get(id);
      if (!row) return;
      METRICS.forEach((metric, m) => {
        let v;
        if (hovering) {
          const col = this.data[m][k + 1];
          let i = idx;
          while (i >= 0 && col[i] === undefined) i--;
          v = i >= 0 ? col[i] : null;
        } else {
          v = this.store.devices.get(id)?.[metric.key];
        }
        const text = fmt.fixed(v, metric.digits);
        if (row.texts[m] !== text) { row.texts[m] = text; row.vals[m].textContent = text; }
      });
    });
  }
}
