/* device_io.c — storage work for a window of devices (see device_io.h for the failure rules). */
#include "telemetry/device_io.h"

#include "telemetry/backoff.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POOL_THREADS 64

int device_io_deterministic(table_status_t st)
{
    return st == TABLE_BAD_REQUEST || st == TABLE_INVALID_ARG;
}

static int is_conflict(table_status_t st)
{
    return st == TABLE_PRECONDITION || st == TABLE_CONFLICT || st == TABLE_NOT_FOUND;
}

/* Record a failed storage step for d: poisoned when the refusal is deterministic, else a
 * transient failure that fails the invocation (and stops the window's storage work). */
static void dev_fail(dev_window_t *w, dev_work_t *d, table_status_t st, const char *msg, const char *what)
{
    if (device_io_deterministic(st)) {
        d->state = DEV_POISONED;
    } else {
        d->state = DEV_FAILED;
        d->unavailable = st == TABLE_UNAVAILABLE;
        atomic_store(w->storage_down, 1);
    }
    snprintf(d->err, sizeof d->err, "%s for device '%.128s' failed: %s%s%.256s", what, d->id, table_status_name(st),
             msg && *msg ? ": " : "", msg ? msg : "");
}

/* The window is failing: do no more storage work for d. */
static int skipped(dev_window_t *w, dev_work_t *d)
{
    if (!atomic_load(w->storage_down)) return 0;
    if (d->state == DEV_OK) {
        d->state = DEV_FAILED;
        d->unavailable = 1;
        d->skipped = 1;
        snprintf(d->err, sizeof d->err, "device '%.128s' not stored: an earlier storage failure fails the batch",
                 d->id);
    }
    return 1;
}

int device_io_ensure_tables(app_t *app, char *err, size_t errlen, int *unavailable)
{
    if (etag_cache_tables_ready(app->etags)) return 0;
    const char *names[3] = {app->cfg.device_state_table, app->cfg.calibration_table, app->cfg.poison_table};
    for (int i = 0; i < 3; i++) {
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

/* ---- worker pool ----------------------------------------------------------------------------- */

static void *pool_worker(void *arg)
{
    dev_window_t *w = arg;
    uint64_t rng;
    occ_rng_seed(&rng, w->seed ^ (uint64_t)(uintptr_t)&rng);
    for (;;) {
        size_t k = atomic_fetch_add(&w->next_job, 1);
        if (k >= w->njobs) break;
        w->job_fn(w, &w->devs[w->jobs[k]], &rng);
    }
    return NULL;
}

/* Run fn over w->jobs on up to DeviceWriteConcurrency threads (the caller's included). */
static void run_jobs(dev_window_t *w, void (*fn)(dev_window_t *, dev_work_t *, uint64_t *))
{
    if (w->njobs == 0) return;
    w->job_fn = fn;
    atomic_store(&w->next_job, 0);
    size_t want = (size_t)(w->app->cfg.device_concurrency > 0 ? w->app->cfg.device_concurrency : 1);
    if (want > w->njobs) want = w->njobs;
    if (want > MAX_POOL_THREADS) want = MAX_POOL_THREADS;
    pthread_t th[MAX_POOL_THREADS];
    size_t started = 0;
    for (size_t i = 1; i < want; i++)
        if (pthread_create(&th[started], NULL, pool_worker, w) == 0) started++;
    /* too few threads (resource limits) only means less parallelism */
    pool_worker(w);
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
}

/* ---- reading ----------------------------------------------------------------------------------- */

static int read_row(dev_window_t *w, dev_work_t *d)
{
    app_t *app = w->app;
    cJSON *e = NULL;
    char etag[TABLE_ETAG_MAX] = "";
    table_result_t res;
    table_status_t st = table_get_entity(app->tables, app->cfg.device_state_table, app->cfg.partition_key,
                                         d->row_key, NULL, &e, etag, &res);
    int first_look = !d->was_cached && !d->have_cur && !d->attempts;
    if (st == TABLE_OK) {
        device_state_from_entity(e, etag, &d->cur);
        cJSON_Delete(e);
        d->have_cur = 1;
        etag_cache_put(app->etags, d->id, &d->cur);
        if (first_look) etag_cache_note_new(app->etags, 0);
        return 0;
    }
    cJSON_Delete(e);
    if (st == TABLE_NOT_FOUND) {
        memset(&d->cur, 0, sizeof d->cur);
        d->have_cur = 1;
        if (first_look) etag_cache_note_new(app->etags, 1);
        return 0;
    }
    dev_fail(w, d, st, res.message, "reading the DeviceState row");
    return -1;
}

static void job_prepare(dev_window_t *w, dev_work_t *d, uint64_t *rng)
{
    (void)rng;
    app_t *app = w->app;
    if (skipped(w, d)) return;
    if (!d->calib_ok) {
        char err[400];
        int st = calib_lookup(app->calib, app->tables, app->cfg.calibration_table, app->cfg.partition_key, d->id,
                              d->row_key, &d->calib, err, sizeof err);
        if (st != TABLE_OK) {
            dev_fail(w, d, (table_status_t)st, err, "reading the Calibration row");
            return;
        }
        d->calib_ok = 1;
    }
    if (!d->have_cur && !skipped(w, d)) (void)read_row(w, d);
}

void device_io_prepare(dev_window_t *w)
{
    long long now_ms = tele_now_ms();
    int guess_new = etag_cache_guess_new(w->app->etags);
    w->njobs = 0;
    for (size_t i = 0; i < w->n; i++) {
        dev_work_t *d = &w->devs[i];
        if (device_row_key(d->id, d->row_key, sizeof d->row_key) < 0) {
            dev_fail(w, d, TABLE_INVALID_ARG, "the device id has no RowKey", "encoding the RowKey");
            continue;
        }
        d->calib_ok = calib_cache_peek(w->app->calib, d->id, now_ms, &d->calib);
        d->have_cur = d->was_cached = etag_cache_get(w->app->etags, d->id, &d->cur);
        if (!d->have_cur && guess_new) {
            /* most unknown devices are new lately: insert without reading (a 409 re-reads) */
            memset(&d->cur, 0, sizeof d->cur);
            d->have_cur = d->guessed_new = 1;
        }
        if (!d->calib_ok || !d->have_cur) w->jobs[w->njobs++] = i;
    }
    run_jobs(w, job_prepare);
}

/* ---- writing ----------------------------------------------------------------------------------- */

/* Insert or conditional merge of d->next; on success d->next holds the new ETag. */
static table_status_t write_row(dev_window_t *w, dev_work_t *d, table_result_t *res)
{
    app_t *app = w->app;
    cJSON *ent = device_state_to_entity(&d->next, app->cfg.partition_key, d->row_key, d->id);
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

/* One device's optimistic-concurrency loop: (read) → fold → write, re-read on conflict. */
static void job_occ(dev_window_t *w, dev_work_t *d, uint64_t *rng)
{
    app_t *app = w->app;
    const config_t *cfg = &app->cfg;
    int need_read = !d->have_cur;
    if (d->backoff_first) {
        occ_sleep_ms(occ_backoff_ms(cfg->occ_base_ms, cfg->occ_cap_ms, d->attempts, rng));
        need_read = 1;
    }
    while (d->attempts < cfg->occ_max_attempts) {
        if (skipped(w, d)) return;
        if (need_read && read_row(w, d) != 0) return;
        need_read = 0;
        d->changed = device_state_fold(&d->cur, w->b, d->first, &d->calib, w->now_utc, &d->next, &d->stats);
        if (!d->changed) return;
        d->attempts++;
        table_result_t res;
        table_status_t st = write_row(w, d, &res);
        int wrong_guess = d->guessed_new && st == TABLE_CONFLICT;   /* it exists: read it, no contention */
        if (d->guessed_new && (st == TABLE_OK || st == TABLE_CONFLICT)) {
            etag_cache_note_new(app->etags, st == TABLE_OK);
            d->guessed_new = 0;
        }
        if (st == TABLE_OK) {
            d->written = 1;
            etag_cache_put(app->etags, d->id, &d->next);
            return;
        }
        if (!is_conflict(st)) {
            dev_fail(w, d, st, res.message, "writing the DeviceState row");
            return;
        }
        /* 412: changed since read; 409: inserted meanwhile; 404: deleted (or the table was) */
        d->conflicts++;
        etag_cache_drop(app->etags, d->id);
        if (st == TABLE_NOT_FOUND && !d->cur.exists) {
            etag_cache_set_tables_ready(app->etags, 0);   /* the table itself went away */
            int unavailable = 0;
            char err[320];
            if (device_io_ensure_tables(app, err, sizeof err, &unavailable) != 0) {
                d->state = DEV_FAILED;
                d->unavailable = unavailable;
                atomic_store(w->storage_down, 1);
                snprintf(d->err, sizeof d->err, "%s", err);
                return;
            }
        }
        need_read = 1;
        if (d->attempts < cfg->occ_max_attempts && !wrong_guess)
            occ_sleep_ms(occ_backoff_ms(cfg->occ_base_ms, cfg->occ_cap_ms, d->attempts, rng));
    }
    d->state = DEV_FAILED;
    d->unavailable = 1;   /* contention, not a bad request: the host should retry later */
    atomic_store(w->storage_down, 1);
    snprintf(d->err, sizeof d->err, "device '%.128s': gave up after %d write attempts, the row kept "
             "changing underneath (optimistic-concurrency conflicts; raise OccMaxAttempts?)",
             d->id, d->attempts);
}

/* How a failed $batch is handled: its devices' own loops (conflicts, or finding the culprit),
 * or failed together (nothing answered). */
static int batch_retry_singly(table_status_t st, const table_result_t *res)
{
    if (st == TABLE_AUTH) return 0;
    if (st == TABLE_UNAVAILABLE && res->http_status == 0) return 0;
    return 1;
}

void device_io_write(dev_window_t *w)
{
    app_t *app = w->app;
    size_t nchanged = 0;
    for (size_t i = 0; i < w->n; i++) {
        dev_work_t *d = &w->devs[i];
        if (d->state != DEV_OK) continue;
        d->changed = device_state_fold(&d->cur, w->b, d->first, &d->calib, w->now_utc, &d->next, &d->stats);
        if (d->changed) w->jobs[nchanged++] = i;
    }
    if (nchanged == 0) return;
    if (nchanged == 1 || atomic_load(w->storage_down)) {
        w->njobs = nchanged;
        run_jobs(w, job_occ);
        return;
    }

    size_t nocc = 0;
    size_t *occ = malloc(nchanged * sizeof *occ);
    table_batch_op_t *ops = calloc(TABLE_BATCH_MAX_OPS, sizeof *ops);
    cJSON **ents = calloc(TABLE_BATCH_MAX_OPS, sizeof *ents);
    if (!occ || !ops || !ents) {
        /* no memory for the batch path: per-device loops */
        free(ops);
        free(ents);
        free(occ);
        w->njobs = nchanged;
        run_jobs(w, job_occ);
        return;
    }
    size_t *chunk_idx = w->jobs;   /* device indexes, chunked in place */
    for (size_t off = 0; off < nchanged; off += TABLE_BATCH_MAX_OPS) {
        size_t n = nchanged - off < TABLE_BATCH_MAX_OPS ? nchanged - off : TABLE_BATCH_MAX_OPS;
        int built = 1;
        for (size_t k = 0; k < n; k++) {
            dev_work_t *d = &w->devs[chunk_idx[off + k]];
            ents[k] = device_state_to_entity(&d->next, app->cfg.partition_key, d->row_key, d->id);
            if (!ents[k]) built = 0;
            memset(&ops[k], 0, sizeof ops[k]);
            ops[k].kind = d->cur.exists ? TABLE_OP_MERGE : TABLE_OP_INSERT;
            ops[k].entity = ents[k];
            ops[k].if_match = d->cur.exists ? d->cur.etag : NULL;
        }
        table_result_t res;
        memset(&res, 0, sizeof res);
        table_status_t st = atomic_load(w->storage_down) ? TABLE_UNAVAILABLE
                          : built ? table_batch(app->tables, app->cfg.device_state_table, ops, n, &res) : TABLE_NOMEM;
        if (st == TABLE_OK) {
            for (size_t k = 0; k < n; k++) {
                dev_work_t *d = &w->devs[chunk_idx[off + k]];
                cJSON_Delete(d->entity);
                d->entity = ents[k];   /* kept for the pushed message */
                ents[k] = NULL;
                d->attempts = 1;
                d->written = 1;
                d->next.exists = 1;
                snprintf(d->next.etag, sizeof d->next.etag, "%s", ops[k].etag);
                etag_cache_put(app->etags, d->id, &d->next);
                if (d->guessed_new) etag_cache_note_new(app->etags, 1);
            }
            continue;
        }
        for (size_t k = 0; k < n; k++) { cJSON_Delete(ents[k]); ents[k] = NULL; }
        if (atomic_load(w->storage_down) || !batch_retry_singly(st, &res)) {
            for (size_t k = 0; k < n; k++)
                dev_fail(w, &w->devs[chunk_idx[off + k]], st == TABLE_OK ? TABLE_UNAVAILABLE : st, res.message,
                         "$batch write of DeviceState rows");
            continue;
        }
        if (is_conflict(st)) {
            int bad = res.batch_index;
            for (size_t k = 0; k < n; k++) {
                dev_work_t *d = &w->devs[chunk_idx[off + k]];
                if (bad < 0 || (size_t)bad == k) {
                    d->attempts = 1;
                    d->conflicts++;
                    if (d->guessed_new && st == TABLE_CONFLICT) {
                        /* the guess was wrong, it exists: read it (no contention, no backoff) */
                        etag_cache_note_new(app->etags, 0);
                        d->guessed_new = 0;
                        d->have_cur = 0;
                        continue;
                    }
                    d->backoff_first = 1;
                    etag_cache_drop(app->etags, d->id);
                    if (st == TABLE_NOT_FOUND && !d->cur.exists) etag_cache_set_tables_ready(app->etags, 0);
                }
            }
        } else if (st != TABLE_NOMEM) {
            /* not a conflict, yet the service answered: one row may be at fault. Writing the rows
             * one by one stores the others and makes the culprit's own answer say what it is. */
            log_warn(w->log, "a $batch of %zu DeviceState rows failed (%s: %.200s); writing them one at a "
                     "time to find the device responsible", n, table_status_name(st), res.message);
        }
        for (size_t k = 0; k < n; k++) occ[nocc++] = chunk_idx[off + k];
    }
    free(ops);
    free(ents);
    if (nocc) {
        if (!etag_cache_tables_ready(app->etags)) {
            int unavailable = 0;
            char err[320];
            if (device_io_ensure_tables(app, err, sizeof err, &unavailable) != 0) {
                for (size_t k = 0; k < nocc; k++) {
                    dev_work_t *d = &w->devs[occ[k]];
                    d->state = DEV_FAILED;
                    d->unavailable = unavailable;
                    snprintf(d->err, sizeof d->err, "%s", err);
                }
                atomic_store(w->storage_down, 1);
                free(occ);
                return;
            }
        }
        memcpy(w->jobs, occ, nocc * sizeof *occ);
        w->njobs = nocc;
        run_jobs(w, job_occ);
    }
    free(occ);
}
