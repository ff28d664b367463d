/* eventhub.c — Event Hubs trigger runtime: per-partition readers, batching, retry,
 * checkpoints (see eventhub.h). */
#include "devhost/iothub/eventhub.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devhost/iothub/checkpoint.h"
#include "util/log.h"

#define DEFAULT_BATCH_BYTES (2u << 20)

typedef struct ehp {
    struct iothub_eh *t;
    int               p;
    pthread_t         thr;
    int               started;
    iothub_ckpt_t    *ck;
    iothub_ckpt_pos_t pos;           /* processed up to here (checkpointed every N batches) */
    /* stats, under t->lock */
    uint64_t          delivered, retries, failed, invocations;
    int               retrying;
} ehp_t;

struct iothub_eh {
    iothub_t        *h;
    iothub_eh_opts_t o;
    char             function[256], name[128], event_hub[256], group[256], ns[256];
    pthread_mutex_t  lock;
    pthread_cond_t   cond;           /* stop */
    int              stop;
    int              claimed;
    ehp_t            parts[IOTHUB_MAX_PARTITIONS];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void iothub_eh_namespace(iothub_t *h, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s-%s.localhost", iothub_name(h), iothub_instance(h));
}

/* Sleep up to ms unless stopping. Returns 1 when stopping. */
static int nap(struct iothub_eh *t, long ms)
{
    struct timespec d;
    clock_gettime(CLOCK_REALTIME, &d);
    d.tv_sec += ms / 1000;
    d.tv_nsec += (ms % 1000) * 1000000L;
    if (d.tv_nsec >= 1000000000L) { d.tv_sec++; d.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&t->lock);
    while (!t->stop && pthread_cond_timedwait(&t->cond, &t->lock, &d) == 0) {}
    int s = t->stop;
    pthread_mutex_unlock(&t->lock);
    return s;
}

static int stopping(struct iothub_eh *t)
{
    pthread_mutex_lock(&t->lock);
    int s = t->stop;
    pthread_mutex_unlock(&t->lock);
    return s;
}

static double rand01(void)
{
    unsigned int r;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) return 0.5;
    return (double)r / 4294967296.0;
}

/* The batch being gathered: records with copied payloads. */
typedef struct batch {
    iothub_plog_rec_t *recs;
    size_t            *at;       /* payload offsets into data */
    size_t             n, cap;
    buf_t              data;
    int64_t            first_ms; /* when its first event arrived */
} batch_t;

static int batch_add(batch_t *b, const iothub_plog_rec_t *r)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        iothub_plog_rec_t *nr = realloc(b->recs, nc * sizeof *nr);
        if (!nr) return -1;
        b->recs = nr;
        size_t *na = realloc(b->at, nc * sizeof *na);
        if (!na) return -1;
        b->at = na;
        b->cap = nc;
    }
    b->at[b->n] = b->data.len;
    if (buf_append(&b->data, r->payload, r->len) != 0) return -1;
    b->recs[b->n++] = *r;
    if (b->n == 1) b->first_ms = now_ms();
    return 0;
}

static void batch_resolve(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) b->recs[i].payload = b->data.data + b->at[i];
}

typedef enum { GROUP_DONE = 0, GROUP_STOPPED } group_result_t;

/* Invoke the function for recs[0..n) until the retry policy completes. */
static group_result_t run_group(ehp_t *e, const iothub_plog_rec_t *recs, size_t n)
{
    struct iothub_eh *t = e->t;
    const dh_retry_t *rp = &t->o.retry;
    iothub_eh_wire_t w = t->o.wire;
    w.partition = e->p;
    char prev[512] = "", err[512];
    int attempt = 0;
    for (;;) {
        cJSON *data = NULL, *meta = NULL;
        int rc = iothub_eh_build(&w, recs, n, &data, &meta, err, sizeof err);
        if (rc < 0) {
            /* cannot happen for a log we wrote (records are checksummed); do not loop on it */
            log_error(NULL, "%s: partition %d: events %" PRId64 "..%" PRId64 " skipped: %s", t->function, e->p,
                      recs[0].seq, recs[n - 1].seq, err);
            pthread_mutex_lock(&t->lock);
            e->failed += n;
            pthread_mutex_unlock(&t->lock);
            return GROUP_DONE;
        }
        int ok = 0, cancelled = 0;
        if (rc == 0) {
            if (rp->kind != DH_RETRY_NONE)
                iothub_eh_retry_context(meta, attempt, rp->max_retry_count, t->function, attempt ? prev : NULL);
            err[0] = '\0';
            int ir = t->o.invoke(t->o.invoke_arg, t->function, data, meta, err, sizeof err);
            ok = ir == 0;
            cancelled = ir == IOTHUB_EH_CANCELLED;
            if (!ok && !err[0]) snprintf(err, sizeof err, "the invocation failed");
        }
        cJSON_Delete(data);
        cJSON_Delete(meta);
        pthread_mutex_lock(&t->lock);
        if (rc == 0) e->invocations++;
        if (ok) { e->delivered += n; e->retrying = 0; }
        pthread_mutex_unlock(&t->lock);
        if (ok) return GROUP_DONE;
        /* failed because devhost is stopping (the invocation was aborted): no checkpoint, as the
         * host writes none after cancellation; the next start delivers the batch again */
        if (cancelled || stopping(t)) return GROUP_STOPPED;
        if (!dh_retry_should_retry(rp, attempt)) {
            log_error(NULL, "%s: partition %d: events %" PRId64 "..%" PRId64 " skipped after %d attempt(s): %s "
                      "(the Functions host checkpoints a failed batch once its retry policy completes)",
                      t->function, e->p, recs[0].seq, recs[n - 1].seq, attempt + 1, err);
            pthread_mutex_lock(&t->lock);
            e->failed += n;
            e->retrying = 0;
            pthread_mutex_unlock(&t->lock);
            return GROUP_DONE;
        }
        attempt++;
        long delay = (long)dh_retry_delay_ms(rp, attempt, rand01());
        char of[32] = "";
        if (rp->max_retry_count != -1) snprintf(of, sizeof of, " of %d", rp->max_retry_count);
        log_warn(NULL, "%s: partition %d: invocation for events %" PRId64 "..%" PRId64 " failed: %s; retry %d%s in "
                 "%ld ms (the partition waits)", t->function, e->p, recs[0].seq, recs[n - 1].seq, err, attempt, of,
                 delay);
        snprintf(prev, sizeof prev, "%s", err);
        pthread_mutex_lock(&t->lock);
        e->retries++;
        e->retrying = 1;
        pthread_mutex_unlock(&t->lock);
        if (nap(t, delay)) return GROUP_STOPPED;
    }
}

static void checkpoint(ehp_t *e)
{
    char err[512];
    if (iothub_ckpt_write(e->ck, &e->pos, err, sizeof err) != 0)
        log_error(NULL, "%s: partition %d: %s", e->t->function, e->p, err);
}

static void *reader_main(void *arg)
{
    ehp_t *e = arg;
    struct iothub_eh *t = e->t;
    iothub_plog_t *pl = iothub_partition_log(t->h, e->p);
    char err[512];
    iothub_plog_reader_t *r = iothub_plog_reader_open(pl, e->pos.next_seq, e->pos.next_offset, err, sizeof err);
    if (!r) {
        log_error(NULL, "%s: partition %d: cannot read the log: %s", t->function, e->p, err);
        return NULL;
    }
    /* the reader may have clamped the position (compacted or missing events) */
    e->pos.next_seq = iothub_plog_reader_next(r);
    const iothub_eh_batching_t *bo = &t->o.batching;
    size_t max_bytes = t->o.max_batch_bytes ? t->o.max_batch_bytes : DEFAULT_BATCH_BYTES;
    int poll = t->o.poll_ms > 0 ? t->o.poll_ms : 200;
    iothub_plog_rec_t *tmp = malloc((size_t)bo->max_batch * sizeof *tmp);
    batch_t b;
    memset(&b, 0, sizeof b);
    int since_ck = 0;
    while (tmp && !stopping(t)) {
        size_t want = (size_t)bo->max_batch - b.n;
        size_t bytes_left = b.data.len < max_bytes ? max_bytes - b.data.len : 0;
        int wait = poll;
        if (b.n > 0 && bo->min_batch > 1) {
            long left = bo->max_wait_ms - (long)(now_ms() - b.first_ms);
            wait = left < 0 ? 0 : left < poll ? (int)left : poll;
        }
        int got = 0;
        if (want > 0 && bytes_left > 0) {
            got = iothub_plog_read(r, tmp, want, bytes_left, b.n > 0 && bo->min_batch <= 1 ? 0 : wait, err, sizeof err);
            if (got < 0) {
                log_error(NULL, "%s: partition %d: %s", t->function, e->p, err);
                got = 0;
            }
        }
        for (int i = 0; i < got; i++)
            if (batch_add(&b, &tmp[i]) != 0) {
                log_error(NULL, "%s: partition %d: out of memory gathering a batch", t->function, e->p);
                break;
            }
        if (b.n == 0) continue;
        int full = b.n >= (size_t)bo->max_batch || b.data.len >= max_bytes;
        int ready = full || (int)b.n >= bo->min_batch || now_ms() - b.first_ms >= bo->max_wait_ms;
        if (!ready) continue;
        batch_resolve(&b);
        group_result_t gr = GROUP_DONE;
        size_t done = 0;
        if (t->o.wire.many) {
            gr = run_group(e, b.recs, b.n);
            if (gr == GROUP_DONE) done = b.n;
        } else {
            for (; done < b.n && gr == GROUP_DONE; done++) {
                gr = run_group(e, &b.recs[done], 1);
                if (gr == GROUP_STOPPED) break;
            }
        }
        if (done > 0) {
            const iothub_plog_rec_t *last = &b.recs[done - 1];
            e->pos.next_seq = last->seq + 1;
            e->pos.next_offset = last->offset + IOTHUB_PLOG_HEADER + last->len;
            if (++since_ck >= bo->checkpoint_every || gr == GROUP_STOPPED) {
                checkpoint(e);
                since_ck = 0;
            }
        }
        b.n = 0;
        buf_reset(&b.data);
        if (b.data.cap > (1u << 20)) buf_free(&b.data);   /* do not keep a burst's buffer (RSS) */
        if (gr == GROUP_STOPPED) break;
    }
    if (since_ck > 0) checkpoint(e);
    free(tmp);
    free(b.recs);
    free(b.at);
    buf_free(&b.data);
    iothub_plog_reader_close(r);
    return NULL;
}

static void copy_str(char *dst, size_t cap, const char *src, const char *dflt)
{
    snprintf(dst, cap, "%s", src && *src ? src : dflt);
}

iothub_eh_t *iothub_eh_start(iothub_t *h, const iothub_eh_opts_t *o, char *err, size_t errlen)
{
    if (!o->invoke || o->batching.max_batch < 1 || o->batching.min_batch < 1 || o->batching.checkpoint_every < 1) {
        snprintf(err, errlen, "Event Hubs trigger: an invoke callback and batching options are required");
        return NULL;
    }
    struct iothub_eh *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); return NULL; }
    t->h = h;
    t->o = *o;
    copy_str(t->function, sizeof t->function, o->wire.function, "EventHubTrigger");
    copy_str(t->name, sizeof t->name, o->wire.name, "events");
    copy_str(t->event_hub, sizeof t->event_hub, o->wire.event_hub, iothub_name(h));
    copy_str(t->group, sizeof t->group, o->wire.consumer_group, "$Default");
    if (o->wire.ns && *o->wire.ns) copy_str(t->ns, sizeof t->ns, o->wire.ns, "");
    else iothub_eh_namespace(h, t->ns, sizeof t->ns);
    t->o.wire.function = t->function;
    t->o.wire.name = t->name;
    t->o.wire.event_hub = t->event_hub;
    t->o.wire.consumer_group = t->group;
    t->o.wire.ns = t->ns;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    if (iothub_claim_group(h, t->group) != 0) {
        snprintf(err, errlen, "%s: consumer group '%s' is already read by another function; give each "
                 "eventHubTrigger function its own consumerGroup", t->function, t->group);
        iothub_eh_stop(t);
        return NULL;
    }
    t->claimed = 1;
    int np = iothub_partitions(h);
    for (int p = 0; p < np; p++) {
        ehp_t *e = &t->parts[p];
        e->t = t;
        e->p = p;
        if (!(e->ck = iothub_ckpt_open(iothub_checkpoint_root(h), t->group, p, iothub_instance(h), &e->pos, err, errlen))) {
            iothub_eh_stop(t);
            return NULL;
        }
    }
    for (int p = 0; p < np; p++) {
        if (pthread_create(&t->parts[p].thr, NULL, reader_main, &t->parts[p]) != 0) {
            snprintf(err, errlen, "cannot start a reader thread");
            iothub_eh_stop(t);
            return NULL;
        }
        t->parts[p].started = 1;
    }
    return t;
}

void iothub_eh_stop(iothub_eh_t *t)
{
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    int np = iothub_partitions(t->h);
    for (int p = 0; p < np; p++) iothub_plog_wake_readers(iothub_partition_log(t->h, p));
    for (int p = 0; p < np; p++) {
        if (t->parts[p].started) pthread_join(t->parts[p].thr, NULL);
        iothub_ckpt_close(t->parts[p].ck);
    }
    if (t->claimed) iothub_release_group(t->h, t->group);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void iothub_eh_stats(iothub_eh_t *t, iothub_eh_stats_t *out)
{
    memset(out, 0, sizeof *out);
    int np = iothub_partitions(t->h);
    out->partitions = np;
    for (int p = 0; p < np; p++) {
        iothub_plog_info_t info;
        iothub_plog_info(iothub_partition_log(t->h, p), &info);
        ehp_t *e = &t->parts[p];
        iothub_eh_partition_stats_t *s = &out->p[p];
        pthread_mutex_lock(&t->lock);
        s->position = e->pos.next_seq;
        s->delivered = e->delivered;
        s->retries = e->retries;
        s->failed = e->failed;
        s->retrying = e->retrying;
        out->invocations += e->invocations;
        pthread_mutex_unlock(&t->lock);
        s->end = info.next_seq;
        s->lag = s->end > s->position ? s->end - s->position : 0;
        out->delivered += s->delivered;
        out->retries += s->retries;
        out->failed += s->failed;
    }
}

void iothub_summary(iothub_t *h, iothub_eh_t *const *triggers, size_t n, buf_t *out)
{
    iothub_stats_t hs;
    iothub_stats(h, &hs);
    uint64_t delivered = 0, retries = 0, failed = 0;
    int64_t lag[IOTHUB_MAX_PARTITIONS] = {0};
    for (size_t i = 0; i < n; i++) {
        if (!triggers[i]) continue;
        iothub_eh_stats_t s;
        iothub_eh_stats(triggers[i], &s);
        delivered += s.delivered;
        retries += s.retries;
        failed += s.failed;
        for (int p = 0; p < s.partitions; p++)
            if (s.p[p].lag > lag[p]) lag[p] = s.p[p].lag;
    }
    buf_printf(out, "received=%" PRIu64 " delivered=%" PRIu64 " retries=%" PRIu64 " failed=%" PRIu64 " lag=",
               hs.received, delivered, retries, failed);
    for (int p = 0; p < hs.partitions; p++) buf_printf(out, "%s%" PRId64, p ? "," : "", lag[p]);
}
