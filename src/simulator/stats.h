/* stats.h — latency histogram and percentiles for acknowledged sends.
 *
 * Owns how latencies are summarised: a log-linear histogram of microseconds (exact below
 * 64 µs, then 32 buckets per power of two, so any reported percentile is within ~3 % of the
 * true sample), constant memory however long the run. Single-threaded (the simulator's event
 * loop owns it). */
#ifndef ENVIROMON_SIM_STATS_H
#define ENVIROMON_SIM_STATS_H

#include <stdint.h>

#define SIM_HIST_SUB     32
#define SIM_HIST_LINEAR  64
#define SIM_HIST_BUCKETS (SIM_HIST_LINEAR + (40 - 6) * SIM_HIST_SUB) /* up to 2^40 µs */

typedef struct sim_hist {
    uint64_t count;
    uint64_t min_us, max_us;
    double   sum_us;
    uint64_t bucket[SIM_HIST_BUCKETS];
} sim_hist_t;

void sim_hist_reset(sim_hist_t *h);
void sim_hist_add(sim_hist_t *h, uint64_t us);
/* Merge src into dst. */
void sim_hist_merge(sim_hist_t *dst, const sim_hist_t *src);
/* The p-th percentile (0 < p <= 100) in microseconds: the smallest bucket value v such that
 * at least p % of the samples are <= v's bucket (nearest-rank), clamped to [min, max].
 * 0 when empty. */
double sim_hist_percentile(const sim_hist_t *h, double p);
double sim_hist_mean(const sim_hist_t *h);

/* Bucket index of a value, and the value range [lo, hi] a bucket covers (for tests). */
int sim_hist_index(uint64_t us);
void sim_hist_bounds(int index, uint64_t *lo, uint64_t *hi);

#endif
