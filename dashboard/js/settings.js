// settings.js — where the API is and how the page behaves, from the page URL's query, else
// config.js (edited at deployment), else defaults. Pure: takes the URL and the config object.

export const DEFAULTS = Object.freeze({
  api: '',            // function app base URL; '' = the page's own origin
  staleSeconds: 60,   // a device with nothing for longer than this is stale
  maxCharted: 10,     // devices charted at once
  autoChart: 4,       // with nothing selected, chart the first N devices
});

/**
 * The function app's base URL (no trailing slash, no trailing /api) from `raw`, resolved
 * against the page's URL. Throws an Error with a message for the page when it is not an
 * http(s) URL.
 */
export function apiBase(raw, pageUrl) {
  const text = (raw ?? '').trim();
  let u;
  try {
    u = new URL(text === '' ? '/' : text, pageUrl);
  } catch {
    throw new Error(`the API address "${text}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new Error(`the API address must be http or https, not ${u.protocol}`);
  }
  if (text === '') return u.origin;
  u.search = '';
  u.hash = '';
  let s = u.href.replace(/\/+$/, '');
  if (/\/api$/i.test(s)) s = s.slice(0, -4);
  return s;
}

/** v as a number in (min, max] (or [min, max] when inclusive), else fallback. */
function bounded(v, fallback, min, max, inclusive = false) {
  if (v === null || v === undefined || v === '') return fallback;
  const n = Number(v);
  const above = inclusive ? n >= min : n > min;
  return Number.isFinite(n) && above && n <= max ? n : fallback;
}

/**
 * Settings from the page URL (?api=, ?stale= seconds) over config (config.js) over DEFAULTS.
 * Returns {api, apiError, staleMs, maxCharted, autoChart}; apiError is a message when the
 * API address is unusable (api is then null).
 */
export function resolveSettings(pageUrl, config = {}) {
  const url = new URL(pageUrl);
  const q = url.searchParams;
  const cfg = { ...DEFAULTS, ...config };
  let api = null;
  let apiError = null;
  try {
    api = apiBase(q.has('api') ? q.get('api') : cfg.api, url.href);
  } catch (e) {
    apiError = e.message;
  }
  const staleSeconds = bounded(q.get('stale') ?? cfg.staleSeconds, DEFAULTS.staleSeconds, 0, 7 * 86400);
  return {
    api,
    apiError,
    staleMs: staleSeconds * 1000,
    maxCharted: Math.floor(bounded(cfg.maxCharted, DEFAULTS.maxCharted, 1, 50, true)),
    autoChart: Math.floor(bounded(cfg.autoChart, DEFAULTS.autoChart, 0, 50, true)),
  };
}
