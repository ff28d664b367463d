/* backoff.h — optimistic-concurrency retry delays: exponential backoff with full jitter.
 *
 * Owns the delay rule the original used (and the issue keeps): before retry number `attempt`
 * (1 = after the first failed write) wait a uniformly random whole number of milliseconds in
 * [base, min(cap, base * 2^attempt)] — OccBaseMs 40, OccCapMs 1000 by default. The random
 * state is the caller's (one per thread), so no locking is needed. */
#ifndef ENVIROMON_TELEMETRY_BACKOFF_H
#define ENVIROMON_TELEMETRY_BACKOFF_H

#include <stdint.h>

/* Seed a generator state (any value; 0 is remapped). */
void occ_rng_seed(uint64_t *state, uint64_t seed);
/* Next 64 random bits (xorshift64*). */
uint64_t occ_rng_next(uint64_t *state);
/* Upper bound of the delay for attempt: min(cap, base * 2^attempt), never below base. */
long occ_backoff_upper(int base_ms, int cap_ms, int attempt);
/* A delay in [base, occ_backoff_upper(...)] milliseconds, uniform. */
long occ_backoff_ms(int base_ms, int cap_ms, int attempt, uint64_t *rng);
/* Sleep that many milliseconds (restarts after signals). */
void occ_sleep_ms(long ms);

#endif
