/* event_trigger.c — the EventTrigger function (see event_trigger.h for the flow and the rule).
 *
 * Owns the orchestration of one batch: the body reader the server feeds, grouping events by
 * device, the windows of devices handed to device_io, the quarantine of what can never be
 * applied, the SignalR outputs and the summary line. The maths and rules live in the
 * sibling modules. */
#include "telemetry/event_trigger.h"

#include "azure/table.h"
#include "telemetry/batch.h"
#include "telemetry/calibrate.h"
#include "telemetry/device_io.h"
#include "telemetry/device_state.h"
#include "telemetry/device_view.h"
#include "telemetry/devmap.h"
#include "telemetry/quarantine.h"
#include "telemetry/validate.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIGNALR_BINDING "signalRMessages"
#define SIGNALR_TARGET  "newMessage"
#define DETAIL_LOG_MAX  50    /* per batch: detailed lines for bad events, then a count */
#define WINDOW_DEVICES  200   /* devices whose rows are in memory at once */

typedef struct dev_group {
    const char *id;
    int         first, last;
} dev_group_t;

typedef struct run {
    invocation_t    *inv;
    app_t           *app;
    tele_batch_t    *b;
    tele_bounds_t    bounds;
    char             now_utc[TELE_TIME_LEN];
    atomic_int       detail_logged;
    atomic_int       storage_down;
    /* totals */
    int accepted, invalid, rejected, replayed, spoofed, conflicts, written, failed, unavailable;
    int poisoned_devices, quarantined;
    char             first_failure[420];
    int              first_failure_skipped;
    /* events to quarantine, and the reasons written for poisoned devices */
    quarantine_item_t *poison;
    size_t             npoison, cap_poison;
    char             **reasons;
    size_t             nreasons;
} run_t;

/* ---------------------------------------------------------------- app hooks */

int telemetry_app_init(app_t *app, char *err, size_t errlen)
{
    size_t max = (size_t)app->cfg.device_cache_entries;
    app->calib = calib_cache_new(app->cfg.calibration_cache_s, max, CALIB_SNAPSHOT_MAX);
    app->etags = etag_cache_new(max);
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

/* ---------------------------------------------------------------- the body reader */

static void *reader_open(void) { return tele_decoder_new(); }
static int reader_feed(void *rd, const char *p, size_t n) { return tele_decoder_feed(rd, p, n); }
static const char *reader_error(void *rd, int *oom) { return tele_decoder_error(rd, oom); }
static void reader_close(void *rd) { tele_decoder_free(rd); }

const body_reader_t event_trigger_reader = {reader_open, reader_feed, reader_error, reader_close};

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

static int add_poison(run_t *r, const tele_event_t *e, const char *reason, const char *device_id)
{
    if (r->npoison == r->cap_poison) {
        size_t ncap = r->cap_poison ? r->cap_poison * 2 : 16;
        quarantine_item_t *p = realloc(r->poison, ncap * sizeof *p);
        if (!p) return -1;
        r->poison = p;
        r->cap_poison = ncap;
    }
    r->poison[r->npoison++] = (quarantine_item_t){e, reason, device_id, Q_PENDING};
    return 0;
}

/* Store r->poison[from..] in PoisonEvents and count the outcomes. 0, or -1 after inv_fail(). */
static int quarantine(run_t *r, size_t from, int log_rejected)
{
    if (r->npoison == from) return 0;
    app_t *app = r->app;
    quarantine_ctx_t q = {app->tables, app->cfg.poison_table, app->cfg.partition_key, r->inv->invocation_id,
                          r->now_utc};
    table_result_t res;
    memset(&res, 0, sizeof res);
    table_status_t st = quarantine_store(&q, r->b, r->poison + from, r->npoison - from, &res);
    if (st != TABLE_OK) {
        if (st == TABLE_NOT_FOUND) etag_cache_set_tables_ready(app->etags, 0);   /* re-created next time */
        inv_fail(r->inv, st == TABLE_UNAVAILABLE || st == TABLE_NOT_FOUND ? 503 : 500,
                 "storing %zu events in table %s failed: %s: %.256s; the batch will be retried",
                 r->npoison - from, app->cfg.poison_table, table_status_name(st), res.message);
        return -1;
    }
    for (size_t i = from; i < r->npoison; i++) {
        const quarantine_item_t *it = &r->poison[i];
        size_t idx = (size_t)(it->ev - r->b->ev);
        char why[200];
        printable(why, sizeof why, it->reason);
        if (it->outcome == Q_ALREADY) { r->replayed++; continue; }   /* a replay: stored the first time */
        if (log_rejected) r->rejected++;
        if (it->outcome == Q_STORED) {
            r->quarantined++;
            if (log_rejected && detail_ok(r))
                log_warn(&r->inv->log, "event %zu rejected and quarantined in %s: %s", idx, app->cfg.poison_table, why);
        } else {
            char raw[120];
            printable(raw, sizeof raw, it->ev->raw);
            log_error(&r->inv->log, "event %zu could not be quarantined either (the service refused its "
                      "PoisonEvents row); dropped: %s; body starts '%s'", idx, why, raw);
        }
    }
    return 0;
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
    char why[200], id[129];
    printable(why, sizeof why, reason);
    printable(id, sizeof id, e->device_id ? e->device_id : "?");
    log_warn(&r->inv->log, "event %zu of device '%s' is invalid and not applied (InvalidCount += 1): %s", idx, id, why);
}

/* ---------------------------------------------------------------- one window of devices */

/* A device the service refuses: its events (the ones its row has not seen) go to PoisonEvents. */
static int poison_device(run_t *r, const dev_work_t *d)
{
    app_t *app = r->app;
    char *reason = strdup(d->err);
    char **rs = realloc(r->reasons, (r->nreasons + 1) * sizeof *rs);
    if (!reason || !rs) { free(reason); if (rs) r->reasons = rs; return -1; }
    r->reasons = rs;
    r->reasons[r->nreasons++] = reason;
    int64_t known = 0;
    int have_known = d->have_cur && device_state_stream_seq(&d->cur, r->b->stream, &known);
    int n = 0;
    for (int i = d->first; i >= 0; i = r->b->ev[i].next) {
        const tele_event_t *e = &r->b->ev[i];
        if (have_known && e->has_seq && e->seq <= known) { r->replayed++; continue; }
        if (add_poison(r, e, reason, d->id) != 0) return -1;
        n++;
    }
    r->poisoned_devices++;
    char id[129], why[300];
    printable(id, sizeof id, d->id);
    printable(why, sizeof why, d->err);
    log_error(&r->inv->log, "device '%s' cannot be stored (the service refuses it; retrying would fail the same "
              "way): its %d events of this batch go to %s: %s", id, n, app->cfg.poison_table, why);
    etag_cache_drop(app->etags, d->id);
    return 0;
}

static void push(run_t *r, const dev_work_t *d)
{
    cJSON *msg = d->entity ? device_view_from_row(d->entity) : NULL;
    char id[129];
    printable(id, sizeof id, d->id);
    if (!msg) log_error(&r->inv->log, "out of memory building the newMessage for device '%s'", id);
    else if (inv_signalr_message(r->inv, SIGNALR_BINDING, SIGNALR_TARGET, msg, NULL, NULL) != 0)
        log_error(&r->inv->log, "could not add the newMessage for device '%s' to the outputs", id);
}

/* Process groups[0..n): read, validate, fold, write, tally, push. 0, or -1 when out of memory. */
static int run_window(run_t *r, const dev_group_t *groups, size_t n, dev_work_t *devs, size_t *jobs)
{
    memset(devs, 0, n * sizeof *devs);
    for (size_t i = 0; i < n; i++) {
        devs[i].id = groups[i].id;
        devs[i].first = groups[i].first;
    }
    struct timespec c;
    clock_gettime(CLOCK_MONOTONIC, &c);
    dev_window_t w;
    memset(&w, 0, sizeof w);
    w.app = r->app;
    w.b = r->b;
    w.devs = devs;
    w.n = n;
    w.now_utc = r->now_utc;
    w.seed = (uint64_t)c.tv_nsec ^ ((uint64_t)c.tv_sec << 32) ^ (uint64_t)(uintptr_t)devs;
    w.storage_down = &r->storage_down;
    w.log = &r->inv->log;
    w.jobs = jobs;
    atomic_init(&w.next_job, 0);

    device_io_prepare(&w);
    for (size_t i = 0; i < n; i++) {
        dev_work_t *d = &devs[i];
        log_arg_t la = {r, d};
        if (d->state == DEV_OK) tele_mark_validity(r->b, d->first, &d->calib, &r->bounds, log_invalid, &la);
    }
    device_io_write(&w);

    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        dev_work_t *d = &devs[i];
        r->conflicts += d->conflicts;
        if (d->state == DEV_FAILED) {
            r->failed++;
            r->unavailable |= d->unavailable;
            /* report the cause, not a device that was only skipped because of it */
            if (!r->first_failure[0] || (r->first_failure_skipped && !d->skipped)) {
                snprintf(r->first_failure, sizeof r->first_failure, "%s", d->err);
                r->first_failure_skipped = d->skipped;
            }
        } else if (d->state == DEV_POISONED) {
            if (poison_device(r, d) != 0) rc = -1;
        } else {
            r->accepted += d->stats.accepted;
            r->invalid += d->stats.invalid;
            r->replayed += d->stats.replayed;
            r->written += d->written;
            if (d->written && !atomic_load(&r->storage_down)) push(r, d);
        }
        cJSON_Delete(d->entity);
        d->entity = NULL;
    }
    return rc;
}

/* ---------------------------------------------------------------- the function */

/* Group the usable events by device, keeping batch order (a chain through ev[].next). */
static dev_group_t *group(run_t *r, size_t *ngroups)
{
    tele_batch_t *b = r->b;
    devmap_t *index = devmap_new(0);
    size_t cap = b->n < 64 ? (b->n ? b->n : 1) : 64, n = 0;
    dev_group_t *g = malloc(cap * sizeof *g);
    if (!index || !g) goto oom;
    for (size_t i = 0; i < b->n; i++) {
        tele_event_t *e = &b->ev[i];
        if (e->rejected) continue;
        size_t *slot = devmap_get(index, e->device_id, NULL);
        if (slot) {
            b->ev[g[*slot].last].next = (int)i;
            g[*slot].last = (int)i;
            continue;
        }
        if (n == cap) {
            dev_group_t *grown = realloc(g, 2 * cap * sizeof *g);
            if (!grown) goto oom;
            g = grown;
            cap *= 2;
        }
        if (!devmap_put(index, e->device_id, &n, sizeof n)) goto oom;
        g[n++] = (dev_group_t){e->device_id, (int)i, (int)i};
    }
    devmap_free(index);
    *ngroups = n;
    return g;
oom:
    devmap_free(index);
    free(g);
    return NULL;
}

static void log_spoofing(run_t *r)
{
    for (size_t i = 0; i < r->b->n; i++) {
        const tele_event_t *e = &r->b->ev[i];
        if (!e->spoofed) continue;
        r->spoofed++;
        if (!detail_ok(r)) continue;
        char claimed[129], sys[129];
        printable(claimed, sizeof claimed, e->reading.claimed_device_id ? e->reading.claimed_device_id
                                                                         : "(an unusable id)");
        printable(sys, sizeof sys, e->system_device_id);
        log_warn(&r->inv->log, "spoofing attempt: event %zu authenticated as device '%s' claims deviceId '%s' in "
                 "its payload; processed as '%s'", i, sys, claimed, sys);
    }
}

static int decode(invocation_t *inv, tele_batch_t *b)
{
    char err[512];
    if (inv->body_reader) {
        if (tele_decoder_finish(inv->body_reader, b) == 0) return 0;
        int oom = 0;
        const char *why = tele_decoder_error(inv->body_reader, &oom);
        inv_fail(inv, oom ? 503 : 400, "%s", why);
        return -1;
    }
    const cJSON *events = inv->data ? cJSON_GetObjectItem(inv->data, "events") : NULL;
    if (tele_batch_decode(b, events, inv->metadata, err, sizeof err) == 0) return 0;
    inv_fail(inv, 400, "%s", err);
    return -1;
}

int event_trigger_run(invocation_t *inv, app_t *app)
{
    struct timespec c0;
    clock_gettime(CLOCK_MONOTONIC, &c0);
    if (!app->tables) {
        inv_fail(inv, 503, "EventTrigger cannot store device state: %s", app->tables_error);
        return -1;
    }
    char err[512];
    int unavailable = 0;
    if (device_io_ensure_tables(app, err, sizeof err, &unavailable) != 0) {
        inv_fail(inv, unavailable ? 503 : 500, "%s; the batch will be retried", err);
        return -1;
    }
    tele_batch_t b;
    /* a malformed envelope is not from the host (it never sends one): 400 */
    if (decode(inv, &b) != 0) {
        tele_batch_free(&b);
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
    atomic_init(&r.detail_logged, 0);
    atomic_init(&r.storage_down, 0);
    int rc = -1;
    dev_group_t *groups = NULL;
    dev_work_t *devs = NULL;
    size_t *jobs = NULL, ngroups = 0;

    log_spoofing(&r);
    /* events no device can take: quarantined first, so that a failure here fails the batch
     * before any row is written */
    for (size_t i = 0; i < b.n; i++)
        if (b.ev[i].rejected && add_poison(&r, &b.ev[i], b.ev[i].reject_reason, NULL) != 0) goto oom;
    if (quarantine(&r, 0, 1) != 0) goto out;

    groups = group(&r, &ngroups);
    size_t wcap = ngroups < WINDOW_DEVICES ? ngroups : WINDOW_DEVICES;
    devs = calloc(wcap ? wcap : 1, sizeof *devs);
    jobs = calloc(wcap ? wcap : 1, sizeof *jobs);
    if (!groups || !devs || !jobs) goto oom;
    size_t first_device_poison = r.npoison;
    for (size_t off = 0; off < ngroups && !atomic_load(&r.storage_down); off += WINDOW_DEVICES) {
        size_t n = ngroups - off < WINDOW_DEVICES ? ngroups - off : WINDOW_DEVICES;
        if (run_window(&r, groups + off, n, devs, jobs) != 0) goto oom;
    }
    if (atomic_load(&r.storage_down) && !r.failed) {
        r.failed = 1;
        snprintf(r.first_failure, sizeof r.first_failure, "storage failed");
    }
    if (!r.failed && quarantine(&r, first_device_poison, 0) != 0) goto out;

    struct timespec c1;
    clock_gettime(CLOCK_MONOTONIC, &c1);
    double elapsed = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
    char retry[32] = "";
    if (b.retry_count >= 0) snprintf(retry, sizeof retry, " retry=%ld", b.retry_count);
    int more = atomic_load(&r.detail_logged) - DETAIL_LOG_MAX;
    if (more > 0) log_warn(&inv->log, "%d more bad-event lines not logged for this batch", more);
    log_info(&inv->log, "EventTrigger batch: events=%zu devices=%zu accepted=%d invalid=%d rejected=%d "
             "replayed=%d spoofed=%d conflicts_retried=%d rows_written=%d failed_devices=%d "
             "poisoned_devices=%d quarantined=%d elapsed_ms=%.1f stream=%s%s", b.n, ngroups, r.accepted,
             r.invalid, r.rejected, r.replayed, r.spoofed, r.conflicts, r.written, r.failed, r.poisoned_devices,
             r.quarantined, elapsed, b.stream_desc, retry);
    if (r.failed) {
        inv_fail(inv, r.unavailable ? 503 : 500, "%d of %zu devices could not be stored (first: %s); rows already "
                 "written are skipped when the host retries the batch", r.failed, ngroups, r.first_failure);
        goto out;
    }
    rc = 0;
    goto out;
oom:
    inv_fail(inv, 503, "out of memory processing a batch of %zu events; the batch will be retried", b.n);
out:
    for (size_t i = 0; i < r.nreasons; i++) free(r.reasons[i]);
    free(r.reasons);
    free(r.poison);
    free(groups);
    free(devs);
    free(jobs);
    tele_batch_free(&b);
    return rc;
}
