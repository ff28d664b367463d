/* conn_guard.c — admission guard: request deadline and room for new clients (see
 * conn_guard.h for what it owns and why). One mutex; the waiting list is a doubly linked
 * FIFO, so that the oldest waiting connection (eviction) and the next to expire (sweep) are
 * both at its head: every entry's start time is at least its predecessor's. */
#include "util/conn_guard.h"
#include "util/log.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

int64_t conn_guard_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct conn_guard_conn {
    int              fd;
    int              waiting;     /* linked in the list */
    int64_t          since_ms;    /* when it started waiting */
    conn_guard_conn_t *prev, *next;
};

struct conn_guard {
    pthread_mutex_t  lock;
    int              deadline_ms;
    size_t           max_pending;
    conn_guard_conn_t *head, *tail; /* waiting connections, oldest first */
    size_t           pending;
    uint64_t         expired, evicted;
};

conn_guard_t *conn_guard_new(int deadline_ms, size_t max_pending)
{
    conn_guard_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    if (pthread_mutex_init(&g->lock, NULL) != 0) { free(g); return NULL; }
    g->deadline_ms = deadline_ms > 0 ? deadline_ms : 1;
    g->max_pending = max_pending ? max_pending : 1;
    return g;
}

void conn_guard_free(conn_guard_t *g)
{
    if (!g) return;
    assert(g->pending == 0 && g->head == NULL);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static void unlink_locked(conn_guard_t *g, conn_guard_conn_t *k)
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

static void append_locked(conn_guard_t *g, conn_guard_conn_t *k, int64_t now)
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
static void cut_locked(conn_guard_t *g, conn_guard_conn_t *k)
{
    unlink_locked(g, k);
    shutdown(k->fd, SHUT_RDWR);
}

conn_guard_conn_t *conn_guard_opened(conn_guard_t *g, int fd)
{
    conn_guard_conn_t *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->fd = fd;
    pthread_mutex_lock(&g->lock);
    while (g->pending >= g->max_pending && g->head) {
        cut_locked(g, g->head);
        g->evicted++;
    }
    /* the clock is read under the lock so that appends stay in time order */
    append_locked(g, k, conn_guard_now_ms());
    pthread_mutex_unlock(&g->lock);
    return k;
}

void conn_guard_request_arrived(conn_guard_t *g, conn_guard_conn_t *k)
{
    if (!k) return;
    pthread_mutex_lock(&g->lock);
    if (k->waiting) unlink_locked(g, k);
    pthread_mutex_unlock(&g->lock);
}

void conn_guard_idle(conn_guard_t *g, conn_guard_conn_t *k)
{
    if (!k) return;
    pthread_mutex_lock(&g->lock);
    if (!k->waiting) append_locked(g, k, conn_guard_now_ms());
    pthread_mutex_unlock(&g->lock);
}

void conn_guard_closed(conn_guard_t *g, conn_guard_conn_t *k)
{
    if (!k) return;
    pthread_mutex_lock(&g->lock);
    if (k->waiting) unlink_locked(g, k);
    pthread_mutex_unlock(&g->lock);
    free(k);
}

size_t conn_guard_sweep(conn_guard_t *g, int64_t now_ms)
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

void conn_guard_counts(conn_guard_t *g, uint64_t *expired, uint64_t *evicted, size_t *pending)
{
    pthread_mutex_lock(&g->lock);
    *expired = g->expired;
    *evicted = g->evicted;
    *pending = g->pending;
    pthread_mutex_unlock(&g->lock);
}

/* ---- sweeper thread --------------------------------------------------------------------- */

#define SWEEP_MS     250
#define SWEEP_LOG_MS 10000

struct conn_guard_sweeper {
    conn_guard_t   *g;
    char            who[48];
    pthread_t       thread;
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             stop;
};

/* One line per SWEEP_LOG_MS when the guard closed connections. */
static void sweeper_log(conn_guard_sweeper_t *s, uint64_t *expired_logged, uint64_t *evicted_logged)
{
    uint64_t expired, evicted;
    size_t waiting;
    conn_guard_counts(s->g, &expired, &evicted, &waiting);
    if (expired == *expired_logged && evicted == *evicted_logged) return;
    log_warn(NULL, "%s: closed %llu connection(s) that sent no complete request within %d ms and %llu more to "
             "keep room for new clients (the oldest of more than %zu waiting) in the last %ds; %zu waiting now",
             s->who, (unsigned long long)(expired - *expired_logged), s->g->deadline_ms,
             (unsigned long long)(evicted - *evicted_logged), s->g->max_pending, SWEEP_LOG_MS / 1000, waiting);
    *expired_logged = expired;
    *evicted_logged = evicted;
}

static void *sweeper_main(void *arg)
{
    conn_guard_sweeper_t *s = arg;
    uint64_t expired_logged = 0, evicted_logged = 0;
    int64_t last_log = conn_guard_now_ms();
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SWEEP_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        if (s->stop) break;
        pthread_mutex_unlock(&s->lock);
        int64_t now = conn_guard_now_ms();
        conn_guard_sweep(s->g, now);
        if (now - last_log >= SWEEP_LOG_MS) {
            last_log = now;
            sweeper_log(s, &expired_logged, &evicted_logged);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

conn_guard_sweeper_t *conn_guard_sweeper_start(conn_guard_t *g, const char *who)
{
    conn_guard_sweeper_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->g = g;
    snprintf(s->who, sizeof s->who, "%s", who);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (pthread_create(&s->thread, NULL, sweeper_main, s) != 0) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s);
        return NULL;
    }
    return s;
}

void conn_guard_sweeper_stop(conn_guard_sweeper_t *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
