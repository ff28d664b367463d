/* signalr_guard.c — admission guard: request deadline and room for new clients (see
 * signalr_guard.h for what it owns and why). One mutex; the waiting list is a doubly linked
 * FIFO, so that the oldest waiting connection (eviction) and the next to expire (sweep) are
 * both at its head: every entry's start time is at least its predecessor's. */
#include "devhost/signalr/signalr_guard.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "devhost/signalr/signalr_conn.h"

struct sr_guard_conn {
    int              fd;
    int              waiting;     /* linked in the list */
    int64_t          since_ms;    /* when it started waiting */
    sr_guard_conn_t *prev, *next;
};

struct sr_guard {
    pthread_mutex_t  lock;
    int              deadline_ms;
    size_t           max_pending;
    sr_guard_conn_t *head, *tail; /* waiting connections, oldest first */
    size_t           pending;
    uint64_t         expired, evicted;
};

sr_guard_t *sr_guard_new(int deadline_ms, size_t max_pending)
{
    sr_guard_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    if (pthread_mutex_init(&g->lock, NULL) != 0) { free(g); return NULL; }
    g->deadline_ms = deadline_ms > 0 ? deadline_ms : 1;
    g->max_pending = max_pending ? max_pending : 1;
    return g;
}

void sr_guard_free(sr_guard_t *g)
{
    if (!g) return;
    assert(g->pending == 0 && g->head == NULL);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static void unlink_locked(sr_guard_t *g, sr_guard_conn_t *k)
{
    assert(k->waiting && g->pending > 0);
    if (k->prev) k->prev->next = k->next;
    else g->head = k->next;
    if (k->next) k->next->prev = k->prev;
    else g->tail = k->prev;
    k->prev = k->next = NULL;
    k->waiting = 0;
    g->pending--;
}

static void append_locked(sr_guard_t *g, sr_guard_conn_t *k, int64_t now)
{
    assert(!k->waiting);
    assert(!g->tail || g->tail->since_ms <= now); /* FIFO in time: see the top */
    k->since_ms = now;
    k->prev = g->tail;
    k->next = NULL;
    if (g->tail) g->tail->next = k;
    else g->head = k;
    g->tail = k;
    k->waiting = 1;
    g->pending++;
}

/* Close the connection (libmicrohttpd sees EOF) and stop tracking it as waiting. */
static void cut_locked(sr_guard_t *g, sr_guard_conn_t *k)
{
    unlink_locked(g, k);
    shutdown(k->fd, SHUT_RDWR);
}

sr_guard_conn_t *sr_guard_opened(sr_guard_t *g, int fd)
{
    sr_guard_conn_t *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->fd = fd;
    pthread_mutex_lock(&g->lock);
    while (g->pending >= g->max_pending && g->head) {
        cut_locked(g, g->head);
        g->evicted++;
    }
    /* sr_now_ms is read under the lock so that appends stay in time order */
    append_locked(g, k, sr_now_ms());
    pthread_mutex_unlock(&g->lock);
    return k;
}

void sr_guard_request_arrived(sr_guard_t *g, sr_guard_conn_t *k)
{
    if (!k) return;
    pthread_mutex_lock(&g->lock);
    if (k->waiting) unlink_locked(g, k);
    pthread_mutex_unlock(&g->lock);
}

void sr_guard_idle(sr_guard_t *g, sr_guard_conn_t *k)
{
    if (!k) return;
    pthread_mutex_lock(&g->lock);
    if (!k->waiting) append_locked(g, k, sr_now_ms());
    pthread_mutex_unlock(&g->lock);
}

void sr_guard_closed(sr_guard_t *g, sr_guard_conn_t *k)
{
    if (!k) return;
    pthread_mutex_lock(&g->lock);
    if (k->waiting) unlink_locked(g, k);
    pthread_mutex_unlock(&g->lock);
    free(k);
}

size_t sr_guard_sweep(sr_guard_t *g, int64_t now_ms)
{
    size_t n = 0;
    pthread_mutex_lock(&g->lock);
    while (g->head && now_ms - g->head->since_ms >= g->deadline_ms) {
        cut_locked(g, g->head);
        n++;
    }
    g->expired += n;
    pthread_mutex_unlock(&g->lock);
    return n;
}

void sr_guard_counts(sr_guard_t *g, uint64_t *expired, uint64_t *evicted, size_t *pending)
{
    pthread_mutex_lock(&g->lock);
    *expired = g->expired;
    *evicted = g->evicted;
    *pending = g->pending;
    pthread_mutex_unlock(&g->lock);
}
