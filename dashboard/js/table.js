// table.js — the device table: one row per device, sortable by any column, filtered by id and
// status, rows toggled into the chart selection by click or keyboard.
//
// Built for many devices updating many times a second: rows are created once and kept in a map,
// a frame touches only the cells whose text changed, and rows are re-ordered at most once a
// second when a live value column is the sort key (a table that reshuffles on every message
// cannot be read). It is an ARIA table of CSS grid rows rather than a <table>: each row has a
// fixed height and `content-visibility: auto`, so the browser lays out and paints only the rows
// on screen, and a changed value re-lays out its own row, never the whole table (a <table>
// re-measures every row, which at 200 devices × 10 messages/s cost more than everything else).
// Everything from the wire goes in through textContent only.

import * as fmt from './format.js';

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
const STATUS_RANK = { online: 0, stale: 1, unknown: 2 };
const STATUS_TEXT = { online: 'online', stale: 'stale', unknown: 'no data' };
const RESORT_MS = 1000;

/** Table columns: key, header text, unit, how a device's value reads, and what sorts. */
export const COLUMNS = [
  { key: 'pick', label: '', title: 'Charted', cls: 'c-pick' },
  { key: 'status', label: 'Status', short: '', cls: 'c-status' },
  { key: 'id', label: 'Device', cls: 'c-id' },
  { key: 'temperature', label: 'Temp', unit: '°C', cls: 'c-num c-temp', text: (d) => fmt.fixed(d.temperature, 1) },
  { key: 'humidity', label: 'Humidity', short: 'RH', unit: '%', cls: 'c-num c-hum', text: (d) => fmt.fixed(d.humidity, 1) },
  { key: 'pressure', label: 'Pressure', unit: 'hPa', cls: 'c-num c-press', text: (d) => fmt.fixed(d.pressure, 1) },
  { key: 'light', label: 'Light', cls: 'c-num c-light', text: (d) => fmt.fixed(d.light, 0) },
  { key: 'count', label: 'Accepted', cls: 'c-num c-count', text: (d) => fmt.count(d.count) },
  { key: 'invalidCount', label: 'Invalid', cls: 'c-num c-invalid', text: (d) => fmt.count(d.invalidCount) },
  { key: 'lastSeen', label: 'Last seen', short: 'Seen', cls: 'c-num c-seen' },
];
const LIVE_SORT = new Set(['status', 'temperature', 'humidity', 'pressure', 'light', 'count', 'invalidCount', 'lastSeen']);

export class DeviceTable {
  /**
   * els: {head, body, empty} (the header and body row groups); store: DeviceStore; staleMs; colorOf(id) → CSS colour or null
   * (charted devices); onToggle(id): a row was clicked.
   */
  constructor(els, { store, staleMs, colorOf, onToggle, sort = { key: 'id', dir: 1 } }) {
    this.els = els;
    this.store = store;
    this.staleMs = staleMs;
    this.colorOf = colorOf;
    this.onToggle = onToggle;
    this.sort = sort;
    this.filterText = '';
    this.statusFilter = 'all';
    this.rows = new Map();          // id → {el, cells[], texts[], status, colour}
    this.idOf = new WeakMap();      // row element → id
    this.order = [];                // ids currently in the body, in order
    this.orderDirty = true;
    this.lastSortAt = 0;
    this.#buildHead();
    this.#empty();
    els.body.addEventListener('click', (e) => this.#rowEvent(e));
    els.body.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); this.#rowEvent(e); }
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        const row = e.target.closest('[data-row]');
        const next = row && (e.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling);
        if (next) { e.preventDefault(); next.focus(); }
      }
    });
  }

  #buildHead() {
    const hr = document.createElement('div');
    hr.className = 'row';
    hr.setAttribute('role', 'row');
    this.headCells = [];
    for (const c of COLUMNS) {
      const th = document.createElement('div');
      th.className = `cell ${c.cls}`;
      th.setAttribute('role', 'columnheader');
      this.headCells.push(th);
      if (c.key === 'pick') {
        th.title = c.title;
        const s = document.createElement('span');
        s.className = 'sr-only';
        s.textContent = c.title;
        th.append(s);
      } else {
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.key = c.key;
        b.setAttribute('aria-label', `Sort by ${c.label.toLowerCase()}`);
        const long = document.createElement('span');
        long.textContent = c.label;
        b.append(long);
        if (c.short !== undefined) {       // phones show the short label
          long.className = 'long';
          const short = document.createElement('span');
          short.className = 'short';
          short.textContent = c.short;
          b.append(short);
        }
        if (c.unit) {
          const u = document.createElement('span');
          u.className = 'unit';
          u.textContent = ` ${c.unit}`;
          b.append(u);
        }
        b.addEventListener('click', () => this.setSort(c.key));
        th.append(b);
      }
      hr.append(th);
    }
    this.els.head.replaceChildren(hr);
    this.#markSort();
  }

  #markSort() {
    for (const th of this.headCells) {
      const b = th.querySelector('button');
      if (!b) continue;
      th.setAttribute('aria-sort', b.dataset.key === this.sort.key ? (this.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
  }

  /** Sort by key; the same key again reverses the direction. */
  setSort(key, dir) {
    if (dir) this.sort = { key, dir };
    else this.sort = { key, dir: this.sort.key === key ? -this.sort.dir : (key === 'lastSeen' || key === 'count' || key === 'invalidCount' ? -1 : 1) };
    this.#markSort();
    this.orderDirty = true;
    this.lastSortAt = 0;
  }

  setFilter(text) { this.filterText = text.trim().toLowerCase(); this.orderDirty = true; this.lastSortAt = 0; }

  setStatusFilter(s) { this.statusFilter = s; this.orderDirty = true; this.lastSortAt = 0; }

  #rowEvent(e) {
    const el = e.target.closest('[data-row]');
    if (!el || !this.els.body.contains(el)) return;
    const id = this.idOf.get(el);
    if (id !== undefined) this.onToggle(id);
  }

  #newRow(d) {
    const el = document.createElement('div');
    el.className = 'row';
    el.setAttribute('role', 'row');
    el.dataset.row = '';
    el.tabIndex = 0;
    const cells = COLUMNS.map((c) => {
      const cell = document.createElement('div');
      cell.className = `cell ${c.cls}`;
      cell.setAttribute('role', c.key === 'id' ? 'rowheader' : 'gridcell');
      el.append(cell);
      return cell;
    });
    const sw = document.createElement('span');
    sw.className = 'swatch';
    cells[0].append(sw);
    const dot = document.createElement('span');
    dot.className = 'dot';
    const st = document.createElement('span');
    st.className = 'status-text';
    cells[1].append(dot, st);
    const id = document.createElement('span');
    id.className = 'id';
    id.textContent = d.id;        // hostile: text only
    cells[2].append(id);
    el.title = d.id;
    this.idOf.set(el, d.id);
    const row = { el, cells, sw, dot, st, texts: new Array(COLUMNS.length).fill(null), status: null, colour: undefined };
    this.rows.set(d.id, row);
    this.orderDirty = true;
    return row;
  }

  #setText(row, i, text) {
    if (row.texts[i] === text) return;
    row.texts[i] = text;
    row.cells[i].textContent = text;
  }

  /** Refresh the cells of one device (values, status, last seen, colour). */
  #render(d, row) {
    for (let i = 3; i < COLUMNS.length - 1; i++) this.#setText(row, i, COLUMNS[i].text(d));
    const age = this.store.ageOf(d);
    const seen = fmt.age(age);
    if (row.texts[COLUMNS.length - 1] !== seen) {
      this.#setText(row, COLUMNS.length - 1, seen);
      row.cells[COLUMNS.length - 1].title = d.lastSeen != null ? fmt.stamp(d.lastSeen) : '';
    }
    const status = this.store.statusOf(d, this.staleMs);
    if (status !== row.status) {
      if (this.sort.key === 'status' || this.statusFilter !== 'all') this.orderDirty = true;
      row.status = status;
      row.el.dataset.status = status;
      row.st.textContent = STATUS_TEXT[status];
    }
    const colour = this.colorOf(d.id);
    if (colour !== row.colour) {
      row.colour = colour;
      row.sw.style.backgroundColor = colour ?? '';
      row.el.classList.toggle('charted', !!colour);
      row.el.setAttribute('aria-selected', colour ? 'true' : 'false');
    }
  }

  /** Apply a frame's changes: ids whose device changed (new devices included). */
  update(changedIds) {
    for (const id of changedIds) {
      const d = this.store.devices.get(id);
      if (!d) continue;
      const row = this.rows.get(id) ?? this.#newRow(d);
      this.#render(d, row);
      if (LIVE_SORT.has(this.sort.key)) this.valuesMoved = true;
    }
    this.#reorder();
  }

  /** Once a second: ages, statuses and colours of every row. */
  tick() {
    for (const [id, row] of this.rows) this.#render(this.store.devices.get(id), row);
    this.#reorder();
  }

  /** Re-apply colours (the charted set changed). */
  recolour() {
    for (const [id, row] of this.rows) this.#render(this.store.devices.get(id), row);
  }

  #visible(d, row) {
    if (this.filterText && !d.id.toLowerCase().includes(this.filterText)) return false;
    if (this.statusFilter !== 'all' && row.status !== this.statusFilter) return false;
    return true;
  }

  #compare(a, b) {
    const k = this.sort.key;
    let r;
    if (k === 'id') {
      r = collator.compare(a.id, b.id);
    } else {
      const va = k === 'status' ? STATUS_RANK[this.rows.get(a.id).status] : a[k];
      const vb = k === 'status' ? STATUS_RANK[this.rows.get(b.id).status] : b[k];
      if (va == null || vb == null) {
        if (va == null && vb == null) return collator.compare(a.id, b.id);
        return va == null ? 1 : -1;              // missing values last, either direction
      }
      r = va < vb ? -1 : va > vb ? 1 : 0;
      if (r === 0) return collator.compare(a.id, b.id);
    }
    return r * this.sort.dir;
  }

  #reorder() {
    const now = performance.now();
    const due = this.orderDirty || (this.valuesMoved && now - this.lastSortAt >= RESORT_MS);
    if (!due) return;
    this.orderDirty = false;
    this.valuesMoved = false;
    this.lastSortAt = now;
    const list = [];
    for (const [id, row] of this.rows) {
      const d = this.store.devices.get(id);
      if (this.#visible(d, row)) list.push(d);
    }
    list.sort((a, b) => this.#compare(a, b));
    const ids = list.map((d) => d.id);
    const same = ids.length === this.order.length && ids.every((id, i) => id === this.order[i]);
    if (!same) {
      const frag = document.createDocumentFragment();
      for (const id of ids) frag.append(this.rows.get(id).el);
      this.els.body.replaceChildren(frag);
      this.order = ids;
    }
    this.#empty();
  }

  #empty() {
    const e = this.els.empty;
    if (this.order.length > 0) { e.hidden = true; return; }
    e.hidden = false;
    if (this.rows.size === 0) e.textContent = 'Waiting for devices…';
    else if (this.filterText) e.textContent = `No device matches \u201c${this.filterText}\u201d.`;
    else e.textContent = `No ${this.statusFilter} devices.`;
  }

  /** Ids in table order (visible rows). */
  visibleIds() { return this.order.slice(); }
}
