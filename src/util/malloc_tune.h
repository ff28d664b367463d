/* malloc_tune.h — glibc malloc settings for servers with a thread per connection.
 *
 * glibc's default gives every thread its own malloc arena and keeps freed request-sized blocks
 * (bodies, JSON trees) in them; fragmentation, not live data, then grows the RSS, and many
 * arenas cost more than they save. Measured for the handler in bench/ (docs/benchmarks.md). */
#ifndef ENVIROMON_MALLOC_TUNE_H
#define ENVIROMON_MALLOC_TUNE_H

/* Two arenas (one per core: one arena's lock was contended by 16 connection threads), blocks
 * of 64 KiB and up mmap'ed and returned at once, a 128 KiB trim threshold. The MALLOC_*
 * environment variables, when set, win. Call before starting threads. */
void malloc_tune_for_threads(void);

/* Hand freed memory at the top of every arena and in whole free pages back to the system
 * (glibc's malloc_trim). For an idle server after a burst: the RSS must not stay at its peak. */
void malloc_tune_trim(void);

#endif
