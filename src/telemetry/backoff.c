/* backoff.c — full-jitter exponential backoff for OCC retries (see backoff.h). */
#include "telemetry/backoff.h"

#include <errno.h>
#include <time.h>

void occ_rng_seed(uint64_t *state, uint64_t seed)
{
    /* splitmix64 scramble so that nearby seeds give unrelated sequences */
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    *state = z ? z : 0x2545F4914F6CDD1DULL;
}

uint64_t occ_rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

long occ_backoff_upper(int base_ms, int cap_ms, int attempt)
{
    if (base_ms < 0) base_ms = 0;
    if (cap_ms < base_ms) cap_ms = base_ms;
    if (attempt < 0) attempt = 0;
    long up = base_ms;
    for (int i = 0; i < attempt && up < cap_ms; i++) up *= 2;
    if (up > cap_ms) up = cap_ms;
    if (up < base_ms) up = base_ms;
    return up;
}

long occ_backoff_ms(int base_ms, int cap_ms, int attempt, uint64_t *rng)
{
    long lo = base_ms < 0 ? 0 : base_ms;
    long hi = occ_backoff_upper(base_ms, cap_ms, attempt);
    return lo + (long)(occ_rng_next(rng) % (uint64_t)(hi - lo + 1));
}

void occ_sleep_ms(long ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}
