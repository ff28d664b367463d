/* event_trigger.c — the EventTrigger function (see event_trigger.h for the flow).
 *
 * Owns the orchestration of one batch: grouping by device, the bounded worker pool for the
 * per-device storage I/O, the $batch-then-OCC write strategy, the SignalR outputs and the
 * summary line. The maths and rules live in the sibling modules. */
#include "telemetry/event_trigger.h"

#include "azure/table.h"
#include "telemetry/backoff.h"
#include "telemetry/batch.h"
#include "telemetry/calibrate.h"
#include "telemetry/device_id.h"
#include "telemetry/device_state.h"
#include "telemetry/device_view.h"
#include "telemetry/devmap.h"
#include "telemetry/validate.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIGNALR_BINDING "signalRMessages"
#define SIGNALR_TARGET  "newMessage"
#define CACHE_MAX_DEVICES 100000
#define DETAIL_LOG_MAX 50          /* per batch: detailed lines for bad events, then a count */
#define MAX_POOL_THREADS 64

typedef struct dev_work {
    const char     *id;
    int             first, last;     /* event chain in the batch */
    tele_calib_t    calib;
    int             calib_ok;
    device_state_t  cur;             /* row as cached or last read */
    int             have_cur;
    device_state_t  next;            /* folded row */
    int             changed;
    fold_stats_t    stats;
    int             conflicts;       /* conflicts retried */
    int             attempts;        /* writes attempted */
    int             backoff_first;   /* a $batch conflict named this device: back off, re-read */
    int             written;
    cJSON          *entity;          /* the row as written (source of the pushed message) */
    int             failed, unavailable;
    char            err[700];
} dev_work_t;

typedef struct run {
    invocation_t   *inv;
    app_t          *app;
    tele_batch_t   *b;
    dev_work_t     *devs;
    size_t          ndev;
    tele_bounds_t   bounds;
    char            now_utc[TELE_TIME_LEN];
    size_t         *jobs;
    size_t          njobs;
    atomic_size_t   next_job;
    void          (*job_fn)(struct run *r, dev_work_t *d, uint64_t *rng);
    uint64_t        seed;
    atomic_int      detail_logged;
} run_t;

/* ---------------------------------------------------------------- app hooks */

int telemetry_app_init(app_t *app, char *err, size_t errlen)
{
    app->calib = calib_cache_new(app->cfg.calibration_cache_s, CACHE_MAX_DEVICES);
    app->etags = etag_cache_new(CACHE_MAX_DEVICES);
    if (!app->calib || !app->etags) {
        telemetry_app_free(app);
        snprintf(err, errlen, "out of memory creating the EventTrigger caches");
        return -1;
    }
    return 0;
}

void telemetry_app_free(app_t *app)
{
    calib_cache_free(app->calib);
    etag_cache_free(app->etags);
    app->calib = NULL;
    app->etags = NULL;
}

/* ---------------------------------------------------------------- helpers */

static void now_utc(char out[TELE_TIME_LEN])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%07ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 100);
    snprintf(out, TELE_TIME_LEN, "%.28s", tmp);
}

/* A payload-supplied string made safe for one log line (control characters → '?'). */
static void printable(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

static int detail_ok(run_t *r)
{
    return atomic_fetch_add(&r->detail_logged, 1) < DETAIL_LOG_MAX;
}

static void dev_fail(dev_work_t *d, table_status_t st, const table_result_t *res, const char *what)
{
    d->failed = 1;
    d->unavailable = (st == TABLE_UNAVAILABLE);
    snprintf(d->err, sizeof d->err, "%s for device '%.128s' failed: %s%s%.256s", what, d->id,
             table_status_name(st), res && res->message[0] ? ": " : "", res ? res->message : "");
}

static int ensure_tables(app_t *app, char *err, size_t errlen, int *unavailable)
{
    if (etag_cache_tables_ready(app->etags)) return 0;
    const char *names[2] = {app->cfg.device_state_table, app->cfg.calibration_table};
    for (int i = 0; i < 2; i++) {
        table_result_t res;
        table_status_t st = table_create_if_missing(app->tables, names[i], &res);
        if (st != TABLE_OK) {
            *unavailable = (st == TABLE_UNAVAILABLE);
            snprintf(err, errlen, "creating table %s at %s failed: %s: %.256s", names[i],
                     table_client_endpoint(app->tables), table_status_name(st), res.message);
            return -1;
        }
    }
    etag_cache_set_tables_ready(app->etags, 1);
    return 0;
}

/* ---------------------------------------------------------------- worker pool */

static void *pool_worker(void *arg)
{
    run_t *r = arg;
    uint64_t rng;
    occ_rng_seed(&rng, r->seed ^ (uint64_t)(uintptr_t)&rng);
    for (;;) {
        size_t k = atomic_fetch_add(&r->next_job, 1);
        if (k >= r->njobs) break;
        r->job_fn(r, &r->devs[r->jobs[k]], &rng);
    }
    return NULL;
}

/* Run job_fn over r->jobs on up to DeviceWriteConcurrency threads (the caller's included). */
static void run_jobs(run_t *r, void (*fn)(run_t *, dev_work_t *, uint64_t *))
{
    if (r->njobs == 0) return;
    r->job_fn = fn;
    atomic_store(&r->next_job, 0);
    size_t want = (size_t)(r->app->cfg.device_concurrency > 0 ? r->app->cfg.device_concurrency : 1);
    if (want > r->njobs) want = r->njobs;
    if (want > MAX_POOL_THREADS) want = MAX_POOL_THREADS;
    pthread_t th[MAX_POOL_THREADS];
    size_t started = 0;
    for (size_t i = 1; i < want; i++)
        if (pthread_create(&th[started], NULL, pool_worker, r) == 0) started++;
    /* too few threads (resource limits) only means less parallelism */
    pool_worker(r);
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
}

/* ---------------------------------------------------------------- storage steps */

static int read_row(run_t *r, dev_work_t *d)
{
    app_t *app = r->app;
    cJSON *e = NULL;
    char etag[TABLE_ETAG_MAX] = "";
    table_result_t res;
    table_status_t st = table_get_entity(app->tables, app->cfg.device_state_table, app->cfg.partition_key,
                                         d->id, NULL, &e, etag, &res);
    if (st == TABLE_OK) {
        device_state_from_entity(e, etag, &d->cur);
        cJSON_Delete(e);
        d->have_cur = 1;
        etag_cache_put(app->etags, d->id, &d->cur);
        return 0;
    }
    cJSON_Delete(e);
    if (st == TABLE_NOT_FOUND) {
        memset(&d->cur, 0, sizeof d->cur);
        d->have_cur = 1;
        return 0;
    }
    dev_fail(d, st, &res, "reading the DeviceState row");
    return -1;
}

static void job_prepare(run_t *r, dev_work_t *d, uint64_t *rng)
{
    (void)rng;
    app_t *app = r->app;
    if (!d->calib_ok) {
        int unavailable = 0;
        if (calib_lookup(app->calib, app->tables, app->cfg.calibration_table, app->cfg.partition_key,
                         d->id, &d->calib, &unavailable, d->err, sizeof d->err) != 0) {
            d->failed = 1;
            d->unavailable = unavailable;
            return;
        }
        d->calib_ok = 1;
    }
    if (!d->have_cur) (void)read_row(r, d);
}

/* Insert or conditional merge of d->next; on success d->next holds the new ETag. */
static table_status_t write_row(run_t *r, dev_work_t *d, table_result_t *res)
{
    app_t *app = r->app;
    cJSON *ent = device_state_to_entity(&d->next, app->cfg.partition_key, d->id);
    if (!ent) {
        memset(res, 0, sizeof *res);
        snprintf(res->message, sizeof res->message, "out of memory building the row");
        return TABLE_NOMEM;
    }
    char etag[TABLE_ETAG_MAX] = "";
    table_status_t st = d->cur.exists
        ? table_merge_entity(app->tables, app->cfg.device_state_table, ent, d->cur.etag, etag, res)
        : table_insert_entity(app->tables, app->cfg.device_state_table, ent, etag, res);
    if (st == TABLE_OK) {
        d->next.exists = 1;
        snprintf(d->next.etag, sizeof d->next.etag, "%s", etag);
        cJSON_Delete(d->entity);
        d->entity = ent;
    } else {
        cJSON_Delete(ent);
    }
    return st;
}

static int is_conflict(table_status_t st)
{
    return st == TABLE_PRECONDITION || st == TABLE_CONFLICT || st == TABLE_NOT_FOUND;
}

/* One device's optimistic-concurrency loop: (read) → fold → write, re-read on conflict. */
static void job_occ(run_t *r, dev_work_t *d, uint64_t *rng)
{
    app_t *app = r->app;
    const config_t *cfg = &app->cfg;
    int need_read = !d->have_cur;
    if (d->backoff_first) {
        occ_sleep_ms(occ_backoff_ms(cfg->occ_base_ms, cfg->occ_cap_ms, d->attempts, rng));
        need_read = 1;
    }
    while (d->attempts < cfg->occ_max_attempts) {
        if (need_read && read_row(r, d) != 0) return;
        need_read = 0;
        d->changed = device_state_fold(&d->cur, r->b, d->first, &d->calib, r->now_utc, &d->next, &d->stats);
        if (!d->changed) return;
        d->attempts++;
        table_result_t res;
        table_status_t st = write_row(r, d, &res);
        if (st == TABLE_OK) {
            d->written = 1;
            etag_cache_put(app->etags, d->id, &d->next);
            return;
        }
        if (!is_conflict(st)) { dev_fail(d, st, &res, "writing the DeviceState row"); return; }
        /* 412: changed since read; 409: inserted meanwhile; 404: deleted (or the table was) */
        d->conflicts++;
        etag_cache_drop(app->etags, d->id);
        if (st == TABLE_NOT_FOUND && !d->cur.exists) {
            etag_cache_set_tables_ready(app->etags, 0);   /* the table itself went away */
            int unavailable = 0;
            char err[320];
            if (ensure_tables(app, err, sizeof err, &unavailable) != 0) {
                d->failed = 1;
                d->unavailable = unavailable;
                snprintf(d->err, sizeof d->err, "%s", err);
                return;
            }
        }
        need_read = 1;
        if (d->attempts < cfg->occ_max_attempts)
            occ_sleep_ms(occ_backoff_ms(cfg->occ_base_ms, cfg->occ_cap_ms, d->attempts, rng));
    }
    d->failed = 1;
    d->unavailable = 1;   /* contention, not a bad request: the host should retry later */
    snprintf(d->err, sizeof d->err, "device '%.128s': gave up after %d write attempts, the row kept "
             "changing underneath (optimistic-concurrency conflicts; raise OccMaxAttempts?)",
             d->id, d->attempts);
}

/* Write every changed device: $batch transactions of up to 100 rows first; devices of a
 * failed transaction fall back to their own OCC loops (run in parallel). */
static void write_changes(run_t *r)
{
    app_t *app = r->app;
    size_t nchanged = 0;
    for (size_t i = 0; i < r->ndev; i++) {
        dev_work_t *d = &r->devs[i];
        if (d->failed) continue;
        d->changed = device_state_fold(&d->cur, r->b, d->first, &d->calib, r->now_utc, &d->next, &d->stats);
        if (d->changed) r->jobs[nchanged++] = i;
    }
    if (nchanged == 0) return;

    size_t nocc = 0;
    size_t *occ = malloc(nchanged * sizeof *occ);
    table_batch_op_t *ops = calloc(nchanged < TABLE_BATCH_MAX_OPS ? nchanged : TABLE_BATCH_MAX_OPS, sizeof *ops);
    cJSON **ents = calloc(TABLE_BATCH_MAX_OPS, sizeof *ents);
    if (!occ || !ops || !ents || nchanged == 1) {
        /* single device (or no memory for the batch path): per-device loops */
        free(ops); free(ents);
        if (occ) free(occ);
        r->njobs = nchanged;
        run_jobs(r, job_occ);
        return;
    }
    size_t *chunk_idx = r->jobs;   /* device indexes, chunked in place */
    for (size_t off = 0; off < nchanged; off += TABLE_BATCH_MAX_OPS) {
        size_t n = nchanged - off < TABLE_BATCH_MAX_OPS ? nchanged - off : TABLE_BATCH_MAX_OPS;
        int built = 1;
        for (size_t k = 0; k < n; k++) {
            dev_work_t *d = &r->devs[chunk_idx[off + k]];
            ents[k] = device_state_to_entity(&d->next, app->cfg.partition_key, d->id);
            if (!ents[k]) built = 0;
            memset(&ops[k], 0, sizeof ops[k]);
            ops[k].kind = d->cur.exists ? TABLE_OP_MERGE : TABLE_OP_INSERT;
            ops[k].entity = ents[k];
            ops[k].if_match = d->cur.exists ? d->cur.etag : NULL;
        }
        table_result_t res;
        memset(&res, 0, sizeof res);
        table_status_t st = built ? table_batch(app->tables, app->cfg.device_state_table, ops, n, &res) : TABLE_NOMEM;
        if (st == TABLE_OK) {
            for (size_t k = 0; k < n; k++) {
                dev_work_t *d = &r->devs[chunk_idx[off + k]];
                cJSON_Delete(d->entity);
                d->entity = ents[k];   /* kept for the pushed message */
                ents[k] = NULL;
                d->attempts = 1;
                d->written = 1;
                d->next.exists = 1;
                snprintf(d->next.etag, sizeof d->next.etag, "%s", ops[k].etag);
                etag_cache_put(app->etags, d->id, &d->next);
            }
            continue;
        }
        for (size_t k = 0; k < n; k++) { cJSON_Delete(ents[k]); ents[k] = NULL; }
        if (is_conflict(st) || st == TABLE_NOMEM) {
            int bad = res.batch_index;
            for (size_t k = 0; k < n; k++) {
                dev_work_t *d = &r->devs[chunk_idx[off + k]];
                if (st != TABLE_NOMEM && (bad < 0 || (size_t)bad == k)) {
                    d->attempts = 1;
                    d->conflicts++;
                    d->backoff_first = 1;
                    etag_cache_drop(app->etags, d->id);
                    if (st == TABLE_NOT_FOUND && !d->cur.exists) etag_cache_set_tables_ready(app->etags, 0);
                }
                occ[nocc++] = chunk_idx[off + k];
            }
            continue;
        }
        for (size_t k = 0; k < n; k++) dev_fail(&r->devs[chunk_idx[off + k]], st, &res, "$batch write of DeviceState rows");
    }
    free(ops);
    free(ents);
    if (nocc) {
        if (!etag_cache_tables_ready(app->etags)) {
            int unavailable = 0;
            char err[320];
            if (ensure_tables(app, err, sizeof err, &unavailable) != 0) {
                for (size_t k = 0; k < nocc; k++) {
                    dev_work_t *d = &r->devs[occ[k]];
                    d->failed = 1;
                    d->unavailable = unavailable;
                    snprintf(d->err, sizeof d->err, "%s", err);
                }
                free(occ);
                return;
            }
        }
        memcpy(r->jobs, occ, nocc * sizeof *occ);
        r->njobs = nocc;
        run_jobs(r, job_occ);
    }
    free(occ);
}

/* ---------------------------------------------------------------- logging callbacks */

typedef struct log_arg {
    run_t            *r;
    const dev_work_t *d;
} log_arg_t;

static void log_invalid(void *arg, const tele_event_t *e, const char *reason)
{
    const log_arg_t *la = arg;
    run_t *r = la->r;
    const device_state_t *cur = &la->d->cur;
    /* an event this row already folded in (a replay) was reported the first time round */
    int64_t seq;
    if (e->has_seq && device_state_stream_seq(cur, r->b->stream, &seq) && e->seq <= seq) return;
    if (!detail_ok(r)) return;
    size_t idx = (size_t)(e - r->b->ev);
    char why[200];
    printable(why, sizeof why, reason);   /* reasons quote payload text */
    log_warn(&r->inv->log, "event %zu of device '%.128s' is invalid and not applied (InvalidCount += 1): %s",
             idx, e->device_id ? e->device_id : "?", why);
}

/* ---------------------------------------------------------------- the function */

int event_trigger_run(invocation_t *inv, app_t *app)
{
    long long t0 = tele_now_ms();
    struct timespec c0;
    clock_gettime(CLOCK_MONOTONIC, &c0);
    if (!app->tables) {
        inv_fail(inv, 503, "EventTrigger cannot store device state: %s", app->tables_error);
        return -1;
    }
    char err[512];
    int unavailable = 0;
    if (ensure_tables(app, err, sizeof err, &unavailable) != 0) {
        inv_fail(inv, unavailable ? 503 : 500, "%s; the batch will be retried", err);
        return -1;
    }

    const cJSON *events = inv->data ? cJSON_GetObjectItem(inv->data, "events") : NULL;
    tele_batch_t b;
    if (tele_batch_decode(&b, events, inv->metadata, err, sizeof err) != 0) {
        tele_batch_free(&b);
        /* a malformed envelope is not transient: fail loudly (the retry will fail the same way) */
        inv_fail(inv, 400, "%s", err);
        return -1;
    }

    run_t r;
    memset(&r, 0, sizeof r);
    r.inv = inv;
    r.app = app;
    r.b = &b;
    r.bounds = (tele_bounds_t){app->cfg.min_celsius, app->cfg.max_celsius, app->cfg.min_hpa,
                               app->cfg.max_hpa, app->cfg.min_humidity, app->cfg.max_humidity};
    now_utc(r.now_utc);
    r.seed = (uint64_t)c0.tv_nsec ^ ((uint64_t)c0.tv_sec << 32) ^ (uint64_t)(uintptr_t)inv;
    atomic_init(&r.detail_logged, 0);
    atomic_init(&r.next_job, 0);

    int rc = -1, rejected = 0, spoofed = 0;
    devmap_t *index = devmap_new(sizeof(size_t));
    /* Per-device state grows with the devices found, not with the events: a batch of a
     * million tiny events from 20 devices needs 20 slots. */
    size_t dev_cap = b.n < 64 ? (b.n ? b.n : 1) : 64;
    r.devs = calloc(dev_cap, sizeof *r.devs);
    if (!index || !r.devs) {
        inv_fail(inv, 503, "out of memory for a batch of %zu events; the batch will be retried", b.n);
        goto out;
    }

    /* group by device, keeping batch order */
    for (size_t i = 0; i < b.n; i++) {
        tele_event_t *e = &b.ev[i];
        if (e->spoofed) {
            spoofed++;
            if (detail_ok(&r)) {
                char claimed[129];
                printable(claimed, sizeof claimed, e->reading.claimed_device_id);
                log_warn(&inv->log, "spoofing attempt: event %zu authenticated as device '%.128s' claims "
                         "deviceId '%s' in its payload; processed as '%.128s'", i, e->system_device_id,
                         claimed, e->system_device_id);
            }
        }
        if (e->rejected) {
            rejected++;
            if (detail_ok(&r)) {
                char why[200];
                printable(why, sizeof why, e->reject_reason);
                log_warn(&inv->log, "event %zu rejected: %s", i, why);
            }
            continue;
        }
        size_t *slot = devmap_get(index, e->device_id);
        if (slot) {
            dev_work_t *d = &r.devs[*slot];
            b.ev[d->last].next = (int)i;
            d->last = (int)i;
            continue;
        }
        size_t di = r.ndev;
        if (r.ndev == dev_cap) {
            dev_work_t *grown = realloc(r.devs, 2 * dev_cap * sizeof *r.devs);
            if (!grown) {
                inv_fail(inv, 503, "out of memory grouping the batch by device; the batch will be retried");
                goto out;
            }
            memset(grown + dev_cap, 0, dev_cap * sizeof *grown);
            r.devs = grown;
            dev_cap *= 2;
        }
        if (!devmap_put(index, e->device_id, &di)) {
            inv_fail(inv, 503, "out of memory grouping the batch by device; the batch will be retried");
            goto out;
        }
        dev_work_t *d = &r.devs[r.ndev++];
        d->id = e->device_id;
        d->first = d->last = (int)i;
    }

    r.jobs = calloc(r.ndev ? r.ndev : 1, sizeof *r.jobs);
    if (!r.jobs) {
        inv_fail(inv, 503, "out of memory for a batch of %zu devices; the batch will be retried", r.ndev);
        goto out;
    }

    /* calibration and current rows: caches first, storage for the misses (in parallel) */
    long long now_ms = tele_now_ms();
    r.njobs = 0;
    for (size_t i = 0; i < r.ndev; i++) {
        dev_work_t *d = &r.devs[i];
        d->calib_ok = calib_cache_peek(app->calib, d->id, now_ms, &d->calib);
        d->have_cur = etag_cache_get(app->etags, d->id, &d->cur);
        if (!d->calib_ok || !d->have_cur) r.jobs[r.njobs++] = i;
    }
    run_jobs(&r, job_prepare);

    for (size_t i = 0; i < r.ndev; i++) {
        dev_work_t *d = &r.devs[i];
        log_arg_t la = {&r, d};
        if (!d->failed) tele_mark_validity(&b, d->first, &d->calib, &r.bounds, log_invalid, &la);
    }
    write_changes(&r);

    /* outcome */
    int accepted = 0, invalid = 0, replayed = 0, conflicts = 0, written = 0, failed = 0, unavail = 0;
    const dev_work_t *first_failure = NULL;
    for (size_t i = 0; i < r.ndev; i++) {
        dev_work_t *d = &r.devs[i];
        conflicts += d->conflicts;
        if (d->failed) {
            failed++;
            unavail |= d->unavailable;
            if (!first_failure) first_failure = d;
            continue;
        }
        accepted += d->stats.accepted;
        invalid += d->stats.invalid;
        replayed += d->stats.replayed;
        written += d->written;
    }
    struct timespec c1;
    clock_gettime(CLOCK_MONOTONIC, &c1);
    double elapsed = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
    int more = atomic_load(&r.detail_logged) - DETAIL_LOG_MAX;
    if (more > 0) log_warn(&inv->log, "%d more bad-event lines not logged for this batch", more);
    log_info(&inv->log, "EventTrigger batch: events=%zu devices=%zu accepted=%d invalid=%d rejected=%d "
             "replayed=%d spoofed=%d conflicts_retried=%d rows_written=%d failed_devices=%d "
             "elapsed_ms=%.1f stream=%s", b.n, r.ndev, accepted, invalid, rejected, replayed, spoofed,
             conflicts, written, failed, elapsed, b.stream_desc);
    (void)t0;

    if (failed) {
        inv_fail(inv, unavail ? 503 : 500, "%d of %zu devices could not be stored (first: %s); rows already "
                 "written are skipped when the host retries the batch", failed, r.ndev, first_failure->err);
        goto out;
    }

    /* one newMessage per changed device, in the same shape as GetDeviceState's snapshot */
    for (size_t i = 0; i < r.ndev; i++) {
        dev_work_t *d = &r.devs[i];
        if (!d->written) continue;
        cJSON *msg = d->entity ? device_view_from_row(d->entity) : NULL;
        if (!msg || inv_signalr_message(inv, SIGNALR_BINDING, SIGNALR_TARGET, msg, NULL, NULL) != 0) {
            if (!msg) log_error(&inv->log, "out of memory building the newMessage for device '%.128s'", d->id);
            else log_error(&inv->log, "could not add the newMessage for device '%.128s' to the outputs", d->id);
        }
    }
    rc = 0;
out:
    for (size_t i = 0; r.devs && i < r.ndev; i++) cJSON_Delete(r.devs[i].entity);
    devmap_free(index);
    free(r.devs);
    free(r.jobs);
    tele_batch_free(&b);
    return rc;
}
