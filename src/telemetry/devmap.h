/* devmap.h — small string-keyed hash map of fixed-size values, for per-device caches.
 *
 * Owns only its memory; NOT locked (the caches that embed it hold their own mutex). Keys are
 * copied. Growth is bounded by the caller (devmap_count + devmap_clear). */
#ifndef ENVIROMON_TELEMETRY_DEVMAP_H
#define ENVIROMON_TELEMETRY_DEVMAP_H

#include <stddef.h>

typedef struct devmap devmap_t;

/* A map whose values are value_size bytes. NULL when out of memory. */
devmap_t *devmap_new(size_t value_size);
void      devmap_free(devmap_t *m);
/* The value stored for key, or NULL. The pointer is valid until the next put/del/clear. */
void     *devmap_get(devmap_t *m, const char *key);
/* Insert or overwrite; returns the stored value (copied from value) or NULL when out of memory. */
void     *devmap_put(devmap_t *m, const char *key, const void *value);
/* Remove key (no-op when absent). */
void      devmap_del(devmap_t *m, const char *key);
size_t    devmap_count(const devmap_t *m);
void      devmap_clear(devmap_t *m);

#endif
