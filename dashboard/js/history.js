// history.js — one device's recent readings (temperature, humidity, pressure) for the charts,
// in bounded memory however long the page stays open.
//
// Two tiers: the newest `rawCap` readings exactly as they arrived (a ring of typed arrays), and
// every reading since load folded into time buckets (mean per metric). When the buckets fill
// up, neighbours merge and the bucket width doubles, so "since load" always covers the whole
// run at a resolution that coarsens with it. A query takes buckets only for the stretch the
// ring no longer holds. Missing values are NaN inside, null outside: zero stays zero.

const METRICS = 3;
const SCRATCH = [null, null, null];

export class History {
  constructor({ rawCap = 3600, coarseCap = 1024, bucketMs = 10000 } = {}) {
    this.rawCap = rawCap;
    this.coarseCap = coarseCap;
    this.bucketMs = bucketMs;
    // raw ring: logical index i lives at (start + i) % cap
    this.rt = new Float64Array(Math.min(64, rawCap));
    this.rv = Array.from({ length: METRICS }, () => new Float32Array(this.rt.length));
    this.rStart = 0;
    this.rLen = 0;
    this.evicted = false;
    // coarse buckets, oldest first
    this.ct = new Float64Array(Math.min(64, coarseCap));
    this.cs = Array.from({ length: METRICS }, () => new Float64Array(this.ct.length));
    this.cn = Array.from({ length: METRICS }, () => new Uint32Array(this.ct.length));
    this.cLen = 0;
    this.lastT = -Infinity;
  }

  /** Readings held exactly (the ring). */
  get length() { return this.rLen; }

  /** Add a reading at time t (ms; clamped to be non-decreasing): temperature, humidity and
   *  pressure, each a number or null. */
  push(t, temperature, humidity, pressure) {
    if (!(t >= this.lastT)) t = Number.isFinite(this.lastT) ? this.lastT : t;
    if (!Number.isFinite(t)) return;
    this.lastT = t;
    const values = SCRATCH;        // no array per reading
    values[0] = temperature;
    values[1] = humidity;
    values[2] = pressure;
    this.#pushRaw(t, values);
    this.#pushCoarse(t, values);
  }

  #pushRaw(t, values) {
    if (this.rLen === this.rt.length && this.rt.length < this.rawCap) this.#growRaw();
    let at;
    if (this.rLen < this.rt.length) {
      at = (this.rStart + this.rLen) % this.rt.length;
      this.rLen++;
    } else {                       // full at rawCap: overwrite the oldest
      at = this.rStart;
      this.rStart = (this.rStart + 1) % this.rt.length;
      this.evicted = true;
    }
    this.rt[at] = t;
    for (let m = 0; m < METRICS; m++) this.rv[m][at] = values[m] == null ? NaN : values[m];
  }

  #growRaw() {
    const cap = Math.min(this.rawCap, this.rt.length * 2);
    const t = new Float64Array(cap);
    const v = this.rv.map(() => new Float32Array(cap));
    for (let i = 0; i < this.rLen; i++) {
      const from = (this.rStart + i) % this.rt.length;
      t[i] = this.rt[from];
      for (let m = 0; m < METRICS; m++) v[m][i] = this.rv[m][from];
    }
    this.rt = t;
    this.rv = v;
    this.rStart = 0;
  }

  #pushCoarse(t, values) {
    const start = Math.floor(t / this.bucketMs) * this.bucketMs;
    if (this.cLen === 0 || this.ct[this.cLen - 1] !== start) {
      if (this.cLen === this.ct.length) {
        if (this.ct.length < this.coarseCap) this.#growCoarse();
        else { this.#compact(); this.#pushCoarse(t, values); return; }
      }
      const i = this.cLen++;
      this.ct[i] = start;
      for (let m = 0; m < METRICS; m++) { this.cs[m][i] = 0; this.cn[m][i] = 0; }
    }
    const i = this.cLen - 1;
    for (let m = 0; m < METRICS; m++) {
      if (values[m] != null) { this.cs[m][i] += values[m]; this.cn[m][i]++; }
    }
  }

  #growCoarse() {
    const cap = Math.min(this.coarseCap, this.ct.length * 2);
    const grow = (a, C) => { const b = new C(cap); b.set(a.subarray(0, this.cLen)); return b; };
    this.ct = grow(this.ct, Float64Array);
    this.cs = this.cs.map((a) => grow(a, Float64Array));
    this.cn = this.cn.map((a) => grow(a, Uint32Array));
  }

  /** Double the bucket width, merging neighbours (sums and counts add up). */
  #compact() {
    this.bucketMs *= 2;
    let out = -1;
    for (let i = 0; i < this.cLen; i++) {
      const start = Math.floor(this.ct[i] / this.bucketMs) * this.bucketMs;
      if (out < 0 || this.ct[out] !== start) {
        out++;
        this.ct[out] = start;
        for (let m = 0; m < METRICS; m++) { this.cs[m][out] = this.cs[m][i]; this.cn[m][out] = this.cn[m][i]; }
      } else {
        for (let m = 0; m < METRICS; m++) { this.cs[m][out] += this.cs[m][i]; this.cn[m][out] += this.cn[m][i]; }
      }
    }
    this.cLen = out + 1;
  }

  /**
   * Readings with from <= t <= to, oldest first: {t: number[], v: [(number|null)[] × 3]}.
   * Older than the ring: bucket means, placed at the bucket's middle.
   */
  range(from, to) {
    const t = [];
    const v = [[], [], []];
    const rawFrom = this.rLen ? this.rt[this.rStart] : Infinity;
    if (this.evicted && from < rawFrom) {
      for (let i = 0; i < this.cLen; i++) {
        const mid = this.ct[i] + this.bucketMs / 2;
        if (mid < from) continue;
        if (mid >= rawFrom || mid > to) break;
        t.push(mid);
        for (let m = 0; m < METRICS; m++) v[m].push(this.cn[m][i] ? this.cs[m][i] / this.cn[m][i] : null);
      }
    }
    const cap = this.rt.length;
    let lo = 0, hi = this.rLen;          // first logical index with t >= from
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.rt[(this.rStart + mid) % cap] < from) lo = mid + 1; else hi = mid;
    }
    for (let i = lo; i < this.rLen; i++) {
      const at = (this.rStart + i) % cap;
      if (this.rt[at] > to) break;
      t.push(this.rt[at]);
      for (let m = 0; m < METRICS; m++) {
        const x = this.rv[m][at];
        v[m].push(Number.isNaN(x) ? null : x);
      }
    }
    return { t, v };
  }
}
