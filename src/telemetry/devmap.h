/* devmap.h — string-keyed hash map of variable-size values with optional LRU bounds, for the
 * per-device caches and the per-batch device index.
 *
 * Owns only its memory; NOT locked (the caches that embed it hold their own mutex). Keys and
 * values are copied into one allocation per entry. With max_entries set, a put that would
 * exceed it first evicts the least recently used entry (a get counts as a use), so a flood
 * of new device ids costs re-reads, never memory, and never empties the whole cache. */
#ifndef ENVIROMON_TELEMETRY_DEVMAP_H
#define ENVIROMON_TELEMETRY_DEVMAP_H

#include <stddef.h>

typedef struct devmap devmap_t;

/* max_entries: 0 = unbounded. NULL when out of memory. */
devmap_t *devmap_new(size_t max_entries);
void      devmap_free(devmap_t *m);
/* The value stored for key (its size into *size when size is not NULL), or NULL; marks it
 * the most recently used. Valid until the next put/del/clear. */
void     *devmap_get(devmap_t *m, const char *key, size_t *size);
/* Insert or replace with a copy of value[0..size); returns the copy (aligned for any type), or
 * NULL when out of memory (the old value, if any, is gone). */
void     *devmap_put(devmap_t *m, const char *key, const void *value, size_t size);
/* Remove key (no-op when absent). */
void      devmap_del(devmap_t *m, const char *key);
size_t    devmap_count(const devmap_t *m);
void      devmap_clear(devmap_t *m);

#endif
