/* device_io.h — EventTrigger's storage work for a window of devices: calibration and current
 * rows in, folded rows out.
 *
 * Owns the bounded worker pool (DeviceWriteConcurrency threads, the caller's included), the
 * $batch-then-OCC write strategy and, for every Table response, the call the batch hinges
 * on: is this failure transient (the invocation fails and the host re-delivers the batch) or
 * deterministic (this device can never be stored: it is poisoned and its events quarantined)?
 *
 *   2xx ............................................ done
 *   412, 409, 404 on a conditional write ............ a conflict: re-read, fold again, retry
 *                                                     (up to OccMaxAttempts; exhausted → transient)
 *   404 on a read ................................... no row / no calibration yet: not a failure
 *   no response (refused, reset, timeout) ........... transient (after StorageRetries)
 *   5xx, 408, 429 ................................... transient (after StorageRetries)
 *   401, 403 ........................................ transient: credentials or SAS are wrong or
 *                                                     expired, which the operator fixes; the data
 *                                                     is not at fault and is not quarantined
 *   unparseable 2xx, out of memory .................. transient
 *   400 and other 4xx; a request the client refuses
 *     to send (a key or ETag that cannot be sent) ... deterministic: the device is poisoned
 *
 * A $batch whose failure is not a conflict and that the service did answer (any status,
 * including a 5xx inside the 202 or an outer 500, which Azurite gives for input its parser
 * mishandles) is retried row by row: every device but the culprit is then stored, and the
 * culprit's own answer classifies it. A $batch that got no answer at all fails its devices
 * as transient without retrying them singly. Once any device has failed transiently the
 * remaining storage work of the invocation is skipped: it will be retried as a whole. */
#ifndef ENVIROMON_TELEMETRY_DEVICE_IO_H
#define ENVIROMON_TELEMETRY_DEVICE_IO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "azure/table.h"
#include "handler/app.h"
#include "telemetry/batch.h"
#include "telemetry/calibrate.h"
#include "telemetry/device_id.h"
#include "telemetry/device_state.h"
#include "util/log.h"

struct cJSON;

enum { DEV_OK = 0, DEV_FAILED, DEV_POISONED };

typedef struct dev_work {
    const char     *id;
    char            row_key[DEVICE_ROW_KEY_MAX];
    int             first;           /* event chain in the batch */
    tele_calib_t    calib;
    int             calib_ok;
    device_state_t  cur;             /* row as cached or last read */
    int             have_cur;
    int             was_cached;      /* cur came from the ETag cache */
    int             guessed_new;     /* not read: written with an insert (etag_cache_guess_new) */
    device_state_t  next;            /* folded row */
    int             changed;
    fold_stats_t    stats;
    int             conflicts;       /* conflicts retried */
    int             attempts;        /* writes attempted */
    int             backoff_first;   /* a $batch conflict named this device: back off, re-read */
    int             written;
    struct cJSON   *entity;          /* the row as written (source of the pushed message) */
    int             state;           /* DEV_OK, DEV_FAILED (transient), DEV_POISONED */
    int             unavailable;     /* a failure the host should see as 503 (else 500) */
    int             skipped;         /* DEV_FAILED only because another device's failure stopped the work */
    char            err[420];
} dev_work_t;

typedef struct dev_window {
    app_t             *app;
    const tele_batch_t *b;
    dev_work_t        *devs;
    size_t             n;
    const char        *now_utc;      /* LastSeen of events without an enqueued time */
    uint64_t           seed;
    atomic_int        *storage_down; /* set on a transient failure: skip the rest */
    log_ctx_t         *log;
    /* pool */
    size_t            *jobs;         /* n slots */
    size_t             njobs;
    atomic_size_t      next_job;
    void             (*job_fn)(struct dev_window *w, dev_work_t *d, uint64_t *rng);
} dev_window_t;

/* Calibration and current row of every device of the window (caches first, storage for the
 * misses, in parallel). */
void device_io_prepare(dev_window_t *w);
/* Fold and write every device still DEV_OK (validity already marked). */
void device_io_write(dev_window_t *w);

/* Create the tables EventTrigger uses unless this process already did. 0, or -1 with err and
 * *unavailable (a transient failure). */
int  device_io_ensure_tables(app_t *app, char *err, size_t errlen, int *unavailable);

/* Is st a refusal that will recur on every retry (400 and the like)? */
int  device_io_deterministic(table_status_t st);

#endif
