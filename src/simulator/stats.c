/* stats.c — latency histogram (see stats.h). */
#include "simulator/stats.h"

#include <math.h>
#include <string.h>

void sim_hist_reset(sim_hist_t *h) { memset(h, 0, sizeof *h); }

int sim_hist_index(uint64_t us)
{
    if (us < SIM_HIST_LINEAR) return (int)us;
    int msb = 63 - __builtin_clzll(us); /* >= 6 */
    if (msb >= 40) return SIM_HIST_BUCKETS - 1;
    int sub = (int)((us >> (msb - 5)) & (SIM_HIST_SUB - 1));
    return SIM_HIST_LINEAR + (msb - 6) * SIM_HIST_SUB + sub;
}

void sim_hist_bounds(int index, uint64_t *lo, uint64_t *hi)
{
    if (index < SIM_HIST_LINEAR) {
        *lo = *hi = (uint64_t)index;
        return;
    }
    int k = index - SIM_HIST_LINEAR;
    int msb = 6 + k / SIM_HIST_SUB, sub = k % SIM_HIST_SUB;
    uint64_t width = 1ULL << (msb - 5);
    *lo = (1ULL << msb) + (uint64_t)sub * width;
    *hi = *lo + width - 1;
}

void sim_hist_add(sim_hist_t *h, uint64_t us)
{
    if (h->count == 0 || us < h->min_us) h->min_us = us;
    if (us > h->max_us) h->max_us = us;
    h->count++;
    h->sum_us += (double)us;
    h->bucket[sim_hist_index(us)]++;
}

void sim_hist_merge(sim_hist_t *dst, const sim_hist_t *src)
{
    if (src->count == 0) return;
    if (dst->count == 0 || src->min_us < dst->min_us) dst->min_us = src->min_us;
    if (src->max_us > dst->max_us) dst->max_us = src->max_us;
    dst->count += src->count;
    dst->sum_us += src->sum_us;
    for (int i = 0; i < SIM_HIST_BUCKETS; i++) dst->bucket[i] += src->bucket[i];
}

double sim_hist_percentile(const sim_hist_t *h, double p)
{
    if (h->count == 0) return 0;
    if (p <= 0) return (double)h->min_us;
    if (p >= 100) return (double)h->max_us;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < SIM_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            sim_hist_bounds(i, &lo, &hi);
            double v = (double)lo + (double)(hi - lo) / 2.0;
            if (v < (double)h->min_us) v = (double)h->min_us;
            if (v > (double)h->max_us) v = (double)h->max_us;
            return v;
        }
    }
    return (double)h->max_us;
}

double sim_hist_mean(const sim_hist_t *h) { return h->count ? h->sum_us / (double)h->count : 0; }
