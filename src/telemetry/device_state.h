/* device_state.h — the DeviceState row: its typed form, folding a batch into it, and the
 * per-process cache of rows and ETags.
 *
 * Owns the row layout (conventions.md): PartitionKey = PartitionKey setting, RowKey = the
 * device id's RowKey (device_id.h: the id itself unless it holds characters keys cannot);
 * DeviceId (the id itself), Celsius, Humidity, hPa, Light, Geo, Id, Count (Int64), InvalidCount (Int64),
 * LastSeen (DateTime, enqueued time of the newest accepted event), Schema 1, and the
 * idempotency columns Stream (stream identity hash, batch.h) and LastSeq (Int64, the highest
 * sequence number of that stream already folded in), plus OlderStreams ("hash:seq;..." for
 * up to DEVICE_OLDER_STREAMS (31) streams the row saw before, most recent first). A batch whose
 * stream is not the current one is checked against OlderStreams, so a batch re-delivered
 * after another stream wrote the row (partition moved back, a retry racing another
 * partition's batch) is still recognised as a replay; a stream never seen (or evicted) is
 * applied, never mistaken for a replay.
 *
 * Folding is pure: from the current row and the device's events of one batch it computes the
 * next row — replayed events (same Stream, sequence number <= LastSeq) are skipped, invalid
 * readings only bump InvalidCount, accepted readings are calibrated FROM THE RAW READING
 * (never twice) and overwrite only the fields they carry, Count += accepted. Because it is
 * pure it can be re-run on a freshly read row after an optimistic-concurrency conflict.
 *
 * The ETag cache remembers, per device, the row and ETag this process last wrote or read so
 * the next batch can go straight to a conditional write (a stale entry costs one 412 and a
 * re-read). Rows are kept packed (about 200 bytes each, not the 1.6 KB of device_state_t) and
 * the least recently used device makes room when DeviceCacheEntries are held. Thread-safe. */
#ifndef ENVIROMON_TELEMETRY_DEVICE_STATE_H
#define ENVIROMON_TELEMETRY_DEVICE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "azure/table.h"
#include "telemetry/batch.h"
#include "telemetry/calibrate.h"
#include "telemetry/normalise.h"
#include "telemetry/validate.h"

struct cJSON;

#define DEVICE_OLDER_STREAMS 31

typedef struct device_state {
    int      exists;                      /* the row exists; etag is its ETag */
    char     etag[TABLE_ETAG_MAX];
    unsigned has;                         /* TELE_HAS_* bits of the stored fields */
    double   celsius, humidity, hpa, light;
    char     geo[TELE_TEXT_MAX + 1];
    char     id[TELE_TEXT_MAX + 1];
    int64_t  count, invalid_count;
    char     last_seen[TELE_TIME_LEN];    /* "" when never set */
    char     stream[17];                  /* current stream, "" when unknown */
    int      has_seq;
    int64_t  last_seq;                    /* highest folded sequence number of stream */
    int      nolder;
    struct device_stream {
        char    id[17];
        int64_t seq;
    } older[DEVICE_OLDER_STREAMS];        /* streams seen before, most recent first */
} device_state_t;

/* The highest sequence number already folded in for stream: 1 and *seq when the row knows
 * the stream, else 0. */
int device_state_stream_seq(const device_state_t *s, const char *stream, int64_t *seq);

typedef struct fold_stats {
    int accepted, invalid, replayed;
} fold_stats_t;

/* Read a row (any mix of typed/bare properties) into *s; etag may be NULL. */
void device_state_from_entity(const struct cJSON *entity, const char *etag, device_state_t *s);

/* Build the entity to write for s (NULL when out of memory). */
struct cJSON *device_state_to_entity(const device_state_t *s, const char *partition_key,
                                     const char *row_key, const char *device_id);

/* The compact form the cache keeps: packed into out (cap bytes, DEVICE_STATE_PACKED_MAX is
 * always enough); returns its length. */
#define DEVICE_STATE_PACKED_MAX (sizeof(device_state_t))
size_t device_state_pack(const device_state_t *s, unsigned char *out, size_t cap);
/* Unpack what device_state_pack wrote (s->exists = 1). 0, or -1 when it is not such data. */
int    device_state_unpack(const unsigned char *p, size_t n, device_state_t *s);

/* Fold the events of one device (b->ev[first], then .next links) into cur, writing the result
 * to *next (which may alias cur). calib may be NULL. Events must have .invalid already set
 * (tele_mark_validity). now_utc is the fallback LastSeen for events without an enqueued
 * time. Returns 1 when the row changes (something accepted or invalid), else 0. */
int device_state_fold(const device_state_t *cur, const tele_batch_t *b, int first,
                      const tele_calib_t *calib, const char *now_utc, device_state_t *next,
                      fold_stats_t *stats);

/* Calibrate and validate every event of one device, setting ev.invalid; reason_fn (may be
 * NULL) is told about each invalid event. Returns the number of invalid events. */
int tele_mark_validity(tele_batch_t *b, int first, const tele_calib_t *calib,
                       const tele_bounds_t *bounds,
                       void (*reason_fn)(void *arg, const tele_event_t *e, const char *reason),
                       void *arg);

/* ---- ETag / row cache ---- */
typedef struct etag_cache etag_cache_t;

etag_cache_t *etag_cache_new(size_t max_entries);
void etag_cache_free(etag_cache_t *ec);
/* Copy the cached row of device_id into *out: 1 on a hit, 0 on a miss. */
int  etag_cache_get(etag_cache_t *ec, const char *device_id, device_state_t *out);
/* Remember a row just written or read (s->exists must be 1). */
void etag_cache_put(etag_cache_t *ec, const char *device_id, const device_state_t *s);
/* Forget device_id (after a conflict). */
void etag_cache_drop(etag_cache_t *ec, const char *device_id);
/* Whether the tables were created by this process (lazy creation at first use). */
int  etag_cache_tables_ready(etag_cache_t *ec);
void etag_cache_set_tables_ready(etag_cache_t *ec, int ready);

/* Are devices this process has not cached probably new? When lately nearly every one of them
 * (ETAG_NEW_SHARE of at least ETAG_NEW_SAMPLES) turned out to have no row — devices being
 * onboarded, a fleet growing — reading them first is a wasted request each: they are written
 * with an insert instead, and the rare one that exists answers 409 and is re-read. After a
 * restart, when every cached-out device exists, reads find rows and the guess stays off. */
#define ETAG_NEW_SAMPLES 64
#define ETAG_NEW_SHARE   0.9
int  etag_cache_guess_new(etag_cache_t *ec);
/* How it turned out for an uncached device: was_new = 1 when it had no row (a read found
 * none, or an insert succeeded), 0 when it had one. Recent outcomes count most. */
void etag_cache_note_new(etag_cache_t *ec, int was_new);

#endif
