/* malloc_tune.c — glibc malloc settings for thread-per-connection servers (see malloc_tune.h). */
#include "util/malloc_tune.h"

#include <malloc.h>
#include <stdlib.h>

void malloc_tune_for_threads(void)
{
    if (!getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
    if (!getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    if (!getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 128 * 1024);
}

void malloc_tune_trim(void)
{
    malloc_trim(0);
}
