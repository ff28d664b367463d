// table.js — the device table: one row per device, sortable by any column, filtered by id and
// status, rows toggled into the chart selection by click or keyboard.
//
// Built for hundreds of devices updating many times a second. Only the rows on screen exist: the
// body is as tall as all rows together (padding above and below), and a small pool of row
// elements shows the devices at the scroll position. Sorting or filtering is then a sort of ids
// plus rewriting a screenful of rows — never hundreds of DOM moves — and a message for a device
// out of view costs nothing here. Rows are fixed-height CSS grid rows (an ARIA grid, so that a
// changed value re-lays out one row, not a whole <table>). Rows sorted by a live value re-order
// at most once a second: a table that reshuffles on every message cannot be read.
// Everything from the wire is written as text: the data of a text node, or textContent.

import * as fmt from './format.js';

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
const STATUS_RANK = { online: 0, stale: 1, unknown: 2 };
const STATUS_TEXT = { online: 'online', stale: 'stale', unknown: 'no data' };
const RESORT_MS = 1000;
const OVERSCAN = 6;                 // rows kept beyond each edge of the visible part

/** Table columns: key, header text (short: on phones), unit, and how a device's value reads. */
export const COLUMNS = [
  { key: 'pick', label: '', title: 'Charted', cls: 'c-pick' },
  { key: 'status', label: 'Status', short: '', cls: 'c-status' },
  { key: 'id', label: 'Device', cls: 'c-id' },
  { key: 'temperature', label: 'Temp', short: '°C', unit: '°C', cls: 'c-num c-temp', text: (d) => fmt.fixed(d.temperature, 1) },
  { key: 'humidity', label: 'Humidity', short: 'RH', unit: '%', cls: 'c-num c-hum', text: (d) => fmt.fixed(d.humidity, 1) },
  { key: 'pressure', label: 'Pressure', unit: 'hPa', cls: 'c-num c-press', text: (d) => fmt.fixed(d.pressure, 1) },
  { key: 'light', label: 'Light', cls: 'c-num c-light', text: (d) => fmt.fixed(d.light, 0) },
  { key: 'count', label: 'Accepted', cls: 'c-num c-count', text: (d) => fmt.count(d.count) },
  { key: 'invalidCount', label: 'Invalid', cls: 'c-num c-invalid', text: (d) => fmt.count(d.invalidCount) },
  { key: 'lastSeen', label: 'Last seen', short: 'Seen', cls: 'c-num c-seen' },
];
const SEEN = COLUMNS.length - 1;
const LIVE_SORT = new Set(['status', 'temperature', 'humidity', 'pressure', 'light', 'count', 'invalidCount', 'lastSeen']);
const DESCENDING_FIRST = new Set(['lastSeen', 'count', 'invalidCount']);

export class DeviceTable {
  /**
   * els: {grid, head, body, wrap (the scroll box), empty}; store: DeviceStore; staleMs;
   * colorOf(id) → CSS colour or null (charted devices); onToggle(id): a row was activated.
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
    this.status = new Map();        // id → 'online' | 'stale' | 'unknown'
    this.ids = [];                  // the visible devices (filtered), in order
    this.pool = [];                 // row views on screen: {el, nodes[], texts[], id, ...}
    this.viewOf = new WeakMap();    // row element → row view
    this.first = 0;                 // index in ids of pool[0]
    this.orderDirty = true;
    this.valuesMoved = false;
    this.lastSortAt = 0;
    this.rowH = 0;
    this.#buildHead();
    this.#empty();
    els.body.addEventListener('click', (e) => this.#activate(e));
    els.body.addEventListener('keydown', (e) => this.#key(e));
    const onScroll = () => this.#scheduleWindow();
    els.wrap.addEventListener('scroll', onScroll, { passive: true });
    window.addEventListener('scroll', onScroll, { passive: true });
    window.addEventListener('resize', () => { this.rowH = 0; this.#scheduleWindow(); });
    // The part on screen also moves when the layout does (the page settling, panels growing).
    new ResizeObserver(() => this.#scheduleWindow()).observe(els.wrap);
  }

  // --- header and sorting -------------------------------------------------------------------

  #buildHead() {
    const hr = document.createElement('div');
    hr.className = 'row';
    hr.setAttribute('role', 'row');
    hr.setAttribute('aria-rowindex', '1');
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
        if (c.short !== undefined) {
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

  /** Sort by key (dir 1 or -1); without dir, the same key again reverses the direction. */
  setSort(key, dir) {
    if (dir) this.sort = { key, dir };
    else this.sort = { key, dir: this.sort.key === key ? -this.sort.dir : (DESCENDING_FIRST.has(key) ? -1 : 1) };
    this.#markSort();
    this.#reorderNow();
  }

  setFilter(text) { this.filterText = text.trim().toLowerCase(); this.#reorderNow(); }

  setStatusFilter(s) { this.statusFilter = s; this.#reorderNow(); }

  #reorderNow() {
    this.orderDirty = true;
    this.lastSortAt = 0;
  }

  // --- updates ------------------------------------------------------------------------------

  /** A device's status, noting when that changes the rows (a new device always does). */
  #statusOf(d) {
    const s = this.store.statusOf(d, this.staleMs);
    const before = this.status.get(d.id);
    if (before !== s) {
      if (before === undefined || this.sort.key === 'status' || this.statusFilter !== 'all') this.orderDirty = true;
      this.status.set(d.id, s);
    }
    return s;
  }

  /** Apply a frame's changes: ids whose device changed (new devices included). */
  update(changedIds) {
    const shown = new Set();
    for (const id of changedIds) {
      const d = this.store.devices.get(id);
      if (!d) continue;
      this.#statusOf(d);
      if (LIVE_SORT.has(this.sort.key)) this.valuesMoved = true;
      shown.add(id);
    }
    if (!this.#reorder()) {
      for (const v of this.pool) if (shown.has(v.id)) this.#render(v, this.store.devices.get(v.id));
    }
  }

  /** Once a second: statuses of every device (ages move on), and the rows on screen. */
  tick() {
    for (const d of this.store.devices.values()) this.#statusOf(d);
    if (this.#reorder()) return;
    const [first, last] = this.#range();
    if (first !== this.first || last - first !== this.pool.length) this.#window();
    else for (const v of this.pool) this.#render(v, this.store.devices.get(v.id));
  }

  /** Re-apply colours (the charted set changed). */
  recolour() {
    for (const v of this.pool) this.#render(v, this.store.devices.get(v.id));
  }

  #visible(d) {
    if (this.filterText && !d.id.toLowerCase().includes(this.filterText)) return false;
    if (this.statusFilter !== 'all' && this.status.get(d.id) !== this.statusFilter) return false;
    return true;
  }

  #compare(a, b) {
    const k = this.sort.key;
    let r;
    if (k === 'id') {
      r = collator.compare(a.id, b.id);
    } else {
      const va = k === 'status' ? STATUS_RANK[this.status.get(a.id)] : a[k];
      const vb = k === 'status' ? STATUS_RANK[this.status.get(b.id)] : b[k];
      if (va == null || vb == null) {
        if (va == null && vb == null) return collator.compare(a.id, b.id);
        return va == null ? 1 : -1;              // missing values last, either direction
      }
      r = va < vb ? -1 : va > vb ? 1 : 0;
      if (r === 0) return collator.compare(a.id, b.id);
    }
    return r * this.sort.dir;
  }

  /** Re-filter and re-sort when due; returns true when it did (and redrew the window). */
  #reorder() {
    const now = performance.now();
    const due = this.orderDirty || (this.valuesMoved && now - this.lastSortAt >= RESORT_MS);
    if (!due) return false;
    this.orderDirty = false;
    this.valuesMoved = false;
    this.lastSortAt = now;
    const list = [];
    for (const d of this.store.devices.values()) if (this.#visible(d)) list.push(d);
    list.sort((a, b) => this.#compare(a, b));
    this.ids = list.map((d) => d.id);
    this.els.grid.setAttribute('aria-rowcount', String(this.ids.length + 1));
    this.#empty();
    this.#window();
    return true;
  }

  #empty() {
    const e = this.els.empty;
    if (this.ids.length > 0) { e.hidden = true; return; }
    e.hidden = false;
    if (this.store.devices.size === 0) e.textContent = 'Waiting for devices…';
    else if (this.filterText) e.textContent = `No device matches \u201c${this.filterText}\u201d.`;
    else e.textContent = `No ${this.statusFilter} devices.`;
  }

  // --- the window of rows on screen ---------------------------------------------------------

  #scheduleWindow() {
    if (this.windowQueued) return;
    this.windowQueued = true;
    requestAnimationFrame(() => { this.windowQueued = false; this.#window(); });
  }

  /** Which ids are on screen (the body's part inside both the scroll box and the viewport). */
  #range() {
    if (!this.rowH) this.rowH = parseFloat(getComputedStyle(this.els.body).getPropertyValue('--row-h')) || 37;
    const body = this.els.body.getBoundingClientRect();
    const wrap = this.els.wrap.getBoundingClientRect();
    const top = Math.max(wrap.top, 0) - body.top;
    const bottom = Math.min(wrap.bottom, window.innerHeight) - body.top;
    const n = this.ids.length;
    const first = Math.max(0, Math.min(n, Math.floor(top / this.rowH) - OVERSCAN));
    const last = Math.max(first, Math.min(n, Math.ceil(bottom / this.rowH) + OVERSCAN));
    return [first, last];
  }

  /** Bind the pool of row elements to the ids on screen and size the space around them. */
  #window() {
    const [first, last] = this.#range();
    const n = this.ids.length;
    const body = this.els.body;
    const focusedId = this.viewOf.get(document.activeElement)?.id;
    body.style.paddingTop = `${first * this.rowH}px`;
    body.style.paddingBottom = `${(n - last) * this.rowH}px`;
    const want = last - first;
    while (this.pool.length < want) body.append(this.#newRow().el);
    while (this.pool.length > want) this.pool.pop().el.remove();
    this.first = first;
    for (let k = 0; k < want; k++) {
      const v = this.pool[k];
      const id = this.ids[first + k];
      if (v.id !== id) { v.id = id; v.texts.fill(null); v.status = v.colour = undefined; }
      v.el.setAttribute('aria-rowindex', String(first + k + 2));
      this.#render(v, this.store.devices.get(id));
    }
    if (focusedId !== undefined) this.#viewFor(focusedId)?.el.focus({ preventScroll: true });
  }

  #viewFor(id) { return this.pool.find((v) => v.id === id); }

  /** Scroll the table (or the page) so that device id's row is on screen; returns its element. */
  reveal(id) {
    this.#reorder();
    const i = this.ids.indexOf(id);
    if (i < 0) return null;
    if (!this.rowH) this.#range();
    const wrap = this.els.wrap;
    const y = i * this.rowH;
    if (wrap.scrollHeight > wrap.clientHeight + 1) {
      const top = this.els.body.offsetTop + y;            // the wrap is the offset parent
      const head = this.els.head.offsetHeight;
      if (top < wrap.scrollTop + head) wrap.scrollTop = top - head;
      else if (top + this.rowH > wrap.scrollTop + wrap.clientHeight) wrap.scrollTop = top + this.rowH - wrap.clientHeight;
    } else {
      const top = this.els.body.getBoundingClientRect().top + y;
      if (top < 0 || top + this.rowH > window.innerHeight) window.scrollBy(0, top - window.innerHeight / 2);
    }
    this.#window();
    return this.#viewFor(id)?.el ?? null;
  }

  /** Ids in table order (after filtering). */
  visibleIds() { this.#reorder(); return this.ids.slice(); }

  // --- rows ---------------------------------------------------------------------------------

  #newRow() {
    const el = document.createElement('div');
    el.className = 'row';
    el.setAttribute('role', 'row');
    el.tabIndex = 0;
    const nodes = [];               // one Text node per cell, updated in place
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
    const idSpan = document.createElement('span');
    idSpan.className = 'id';
    cells[2].append(idSpan);
    const text = (parent) => parent.appendChild(document.createTextNode(''));
    nodes.push(null, text(st), text(idSpan), ...cells.slice(3).map(text));
    const v = { el, cells, nodes, sw, texts: new Array(COLUMNS.length).fill(null), id: undefined, status: undefined, colour: undefined };
    this.pool.push(v);
    this.viewOf.set(el, v);
    return v;
  }

  #setText(v, i, text) {
    if (v.texts[i] === text) return;
    v.texts[i] = text;
    v.nodes[i].data = text;
  }

  /** Bring one row up to date with device d. */
  #render(v, d) {
    if (!d) return;
    if (v.texts[2] === null) v.el.title = d.id;
    this.#setText(v, 2, d.id);      // hostile: a text node's data, never markup
    const status = this.status.get(d.id) ?? this.#statusOf(d);
    if (status !== v.status) {
      v.status = status;
      v.el.dataset.status = status;
      this.#setText(v, 1, STATUS_TEXT[status]);
    }
    const colour = this.colorOf(d.id);
    if (colour !== v.colour) {
      v.colour = colour;
      v.sw.style.backgroundColor = colour ?? '';
      v.el.classList.toggle('charted', !!colour);
      v.el.setAttribute('aria-selected', colour ? 'true' : 'false');
    }
    for (let i = 3; i < SEEN; i++) this.#setText(v, i, COLUMNS[i].text(d));
    const seen = fmt.age(this.store.ageOf(d));
    if (v.texts[SEEN] !== seen) {
      this.#setText(v, SEEN, seen);
      v.cells[SEEN].title = d.lastSeen != null ? fmt.stamp(d.lastSeen) : '';
    }
  }

  #activate(e) {
    const el = e.target.closest('[role="row"]');
    const v = el && this.viewOf.get(el);
    if (v && v.id !== undefined) this.onToggle(v.id);
  }

  #key(e) {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); this.#activate(e); return; }
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const v = this.viewOf.get(e.target.closest('[role="row"]'));
    if (!v) return;
    const i = this.ids.indexOf(v.id) + (e.key === 'ArrowDown' ? 1 : -1);
    if (i < 0 || i >= this.ids.length) return;
    e.preventDefault();
    this.reveal(this.ids[i])?.focus({ preventScroll: true });
  }
}
