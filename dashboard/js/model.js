// model.js — what the dashboard knows about each device, independent of the DOM.
//
// Owns reading `newMessage` arguments and snapshots (an object, a JSON string of one, or an
// array of them; camelCase as our functions send, PascalCase as the original's functions did),
// merging them into one record per device in arrival-order-independent fashion (a snapshot
// fetched over HTTP may be older than a push that overtook it), the server-clock estimate used
// for "last seen" and staleness, and each device's chart history (history.js).
// Every value from the wire is untrusted: ids must be non-empty strings, numbers finite.

import { History } from './history.js';

/** The fields of a device, each with the wire names accepted for it (first present wins). */
const NUMBERS = {
  temperature: ['temperature', 'Temperature', 'Celsius', 'celsius'],
  humidity: ['humidity', 'Humidity'],
  pressure: ['pressure', 'Pressure', 'hPa', 'HPa'],
  light: ['light', 'Light'],
  count: ['count', 'Count'],
  invalidCount: ['invalidCount', 'InvalidCount'],
};
const TEXTS = { geo: ['geo', 'Geo'], messageId: ['messageId', 'MessageId', 'Id'] };
const SPECIAL = { id: ['deviceId', 'DeviceId', 'RowKey'], lastSeen: ['lastSeen', 'LastSeen', 'Timestamp'] };

/** Wire name → [field, rank] (one lookup per key of a message: this runs per message), and
 *  field → how its value is read. */
const ALIAS = new Map();
const KIND = new Map();
for (const [kind, table] of [['number', NUMBERS], ['text', TEXTS], ['special', SPECIAL]]) {
  for (const [field, names] of Object.entries(table)) {
    KIND.set(field, kind);
    names.forEach((n, rank) => ALIAS.set(n, [field, rank]));
  }
}

/** Longest device id kept (IoT Hub allows 128 characters; anything longer is not a device). */
export const MAX_ID_LENGTH = 256;

/** A finite number from a number or a numeric string (Int64 columns may arrive as strings). */
function num(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return null;
}

/**
 * One wire object → {id, fields: {name: value|null}, lastSeen: ms|null} or null when it names
 * no usable device. Only fields present on the wire appear in `fields` (absent = unchanged).
 */
export function normaliseDevice(obj) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return null;
  const rank = {};
  const raw = {};
  for (const k in obj) {
    if (!Object.hasOwn(obj, k)) continue;
    const a = ALIAS.get(k);
    if (a === undefined) continue;
    const [field, r] = a;
    if (rank[field] !== undefined && rank[field] <= r) continue;
    rank[field] = r;
    raw[field] = obj[k];
  }
  const id = raw.id;
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) return null;
  const fields = {};
  for (const field in raw) {
    const kind = KIND.get(field);
    const v = raw[field];
    if (kind === 'number') fields[field] = num(v);
    else if (kind === 'text') fields[field] = typeof v === 'string' || typeof v === 'number' ? String(v) : null;
  }
  let lastSeen = null;
  if (typeof raw.lastSeen === 'string') {
    const t = Date.parse(raw.lastSeen);
    if (Number.isFinite(t)) lastSeen = t;
  }
  return { id, fields, lastSeen, hasLastSeen: 'lastSeen' in raw };
}

/**
 * A `newMessage` argument or a snapshot body → {items: [normalised...], snapshot: bool,
 * rejected: n}. Strings are JSON-parsed; an array is a snapshot (or a chunk of one).
 */
export function parseMessage(arg) {
  let v = arg;
  if (typeof v === 'string') {
    try { v = JSON.parse(v); } catch { return { items: [], snapshot: false, rejected: 1 }; }
  }
  const snapshot = Array.isArray(v);
  const list = snapshot ? v : [v];
  const items = [];
  let rejected = 0;
  for (const o of list) {
    const d = normaliseDevice(o);
    if (d) items.push(d); else rejected++;
  }
  return { items, snapshot, rejected };
}

/**
 * -1, 0 or 1: is state a older than, the same as, or newer than state b? Compared on
 * (lastSeen, count, invalidCount), each only when both sides know it. Unknown = same.
 */
export function compareState(a, b) {
  const keys = [['lastSeen', a.lastSeen, b.lastSeen], ['count', a.count, b.count],
    ['invalidCount', a.invalidCount, b.invalidCount]];
  for (const [, x, y] of keys) {
    if (x == null || y == null) continue;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return 0;
}

/**
 * Server clock estimate. The dashboard's notion of "now" for a device's lastSeen (stamped by
 * IoT Hub) is the browser clock minus the smallest (receive time − lastSeen) seen in live
 * pushes: that cancels any skew between the browser and the service, up to the fastest
 * delivery latency. Until the first live push it is the browser clock.
 */
export class ServerClock {
  constructor(now = () => Date.now()) {
    this.now = now;
    this.offset = null;
  }

  observe(receivedAt, lastSeen) {
    if (lastSeen == null) return;
    const o = receivedAt - lastSeen;
    if (this.offset === null || o < this.offset) this.offset = o;
  }

  serverNow() {
    return this.now() - (this.offset ?? 0);
  }
}

/** Every known device, merged from snapshots and pushes. */
export class DeviceStore {
  constructor({ clock = new ServerClock(), historyOptions } = {}) {
    this.clock = clock;
    this.devices = new Map();
    this.historyOptions = historyOptions;
    this.lastMessageAt = null;   // browser time of the last accepted item
    this.accepted = 0;            // items applied (live and snapshot)
    this.ignoredOlder = 0;        // items older than what we had (a late snapshot)
  }

  /**
   * Apply one normalised item received at browser time receivedAt. live: it came as a push
   * (feeds the clock estimate). Returns the device when it changed, else null.
   */
  apply(item, receivedAt, live) {
    let d = this.devices.get(item.id);
    const incoming = {
      lastSeen: item.lastSeen,
      count: item.fields.count !== undefined ? item.fields.count : d?.count,
      invalidCount: item.fields.invalidCount !== undefined ? item.fields.invalidCount : d?.invalidCount,
    };
    if (live) this.clock.observe(receivedAt, item.lastSeen);
    let order = 1;
    if (d) {
      order = compareState(incoming, d);
      if (order < 0) { this.ignoredOlder++; return null; }
    } else {
      d = {
        id: item.id, temperature: null, humidity: null, pressure: null, light: null,
        count: null, invalidCount: null, geo: null, messageId: null, lastSeen: null,
        heardAt: null, liveAt: null,
        history: new History(this.historyOptions),
      };
      this.devices.set(item.id, d);
    }
    for (const [k, v] of Object.entries(item.fields)) d[k] = v;
    if (item.lastSeen != null) d.lastSeen = item.lastSeen;
    d.heardAt = receivedAt;
    if (live) d.liveAt = receivedAt;
    this.lastMessageAt = receivedAt;
    this.accepted++;
    // A chart point per new state: the same state seen twice (a snapshot after a reconnect
    // repeating the last push) adds nothing. With no ordering information at all, every
    // message is new.
    const known = incoming.lastSeen != null || incoming.count != null;
    if (order > 0 || !known) {
      const t = item.lastSeen ?? this.clock.serverNow();
      d.history.push(t, d.temperature, d.humidity, d.pressure);
    }
    return d;
  }

  /**
   * Milliseconds since the device's last message: by its lastSeen on the server clock, else
   * (pushes that carry no lastSeen) since the last push arrived; null when neither is known.
   */
  ageOf(d) {
    if (d.lastSeen != null) return Math.max(0, this.clock.serverNow() - d.lastSeen);
    if (d.liveAt != null) return Math.max(0, this.clock.now() - d.liveAt);
    return null;
  }

  /** 'online', 'stale' (nothing for more than staleMs) or 'unknown' (no lastSeen). */
  statusOf(d, staleMs) {
    const a = this.ageOf(d);
    if (a == null) return 'unknown';
    return a > staleMs ? 'stale' : 'online';
  }
}
