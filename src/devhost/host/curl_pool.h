/* curl_pool.h — reusable libcurl easy handles, so that outbound HTTP keeps its connections alive.
 *
 * A libcurl easy handle keeps the connections it opened; handing the same few handles from one
 * request to the next (from whichever thread) gives keep-alive to the handler and to the SignalR
 * Service without a thread-local handle per short-lived connection thread. Acquire returns a
 * handle reset to defaults (connections kept); release puts it back, or frees it when the pool
 * already holds `max_idle`. Thread-safe. */
#ifndef ENVIROMON_DH_CURL_POOL_H
#define ENVIROMON_DH_CURL_POOL_H

#include <stddef.h>

typedef void CURL;
typedef struct dh_curl_pool dh_curl_pool_t;

/* A pool keeping at most max_idle idle handles. NULL when out of memory. */
dh_curl_pool_t *dh_curl_pool_new(size_t max_idle);
/* Free the pool and its idle handles (handles still acquired must have been released). */
void dh_curl_pool_free(dh_curl_pool_t *p);

/* An easy handle (reset with curl_easy_reset: options cleared, connections kept), or NULL
 * when libcurl cannot make one. */
CURL *dh_curl_acquire(dh_curl_pool_t *p);
/* Give a handle back. reuse = 0 closes it instead (after a protocol error, say). */
void dh_curl_release(dh_curl_pool_t *p, CURL *h, int reuse);

#endif
