// format.js — how numbers and times read on the dashboard. Pure functions (no DOM), so that
// the table, the legend and the tests all agree: a missing value is an em dash, never a zero,
// and zero is "0.0", never missing.

export const MISSING = '\u2014';

const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** value with `digits` decimals, or MISSING when it is not a finite number. */
export function fixed(value, digits) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return MISSING;
  const s = value.toFixed(digits);
  return s === '-0' || /^-0\.0*$/.test(s) ? s.slice(1) : s; // -0.04 reads as 0.0, not -0.0
}

/** A count with thousands grouping, or MISSING. */
export function count(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return MISSING;
  return intFmt.format(value);
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "4 d ago" for an age in ms (null: MISSING). */
export function age(ms) {
  if (ms == null || !Number.isFinite(ms)) return MISSING;
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 2) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

/** A local date and time for tooltips ("2024-05-01 10:00:03"), or MISSING. */
export function stamp(epochMs) {
  if (epochMs == null || !Number.isFinite(epochMs)) return MISSING;
  const d = new Date(epochMs);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Messages per second for the summary: one decimal below 10, whole numbers above. */
export function rate(perSecond) {
  if (!Number.isFinite(perSecond)) return MISSING;
  return perSecond < 10 ? perSecond.toFixed(1) : intFmt.format(Math.round(perSecond));
}
