/* calibrate.c — calibration maths and the TTL cache of Calibration rows (see calibrate.h). */
#include "telemetry/calibrate.h"

#include "azure/table.h"
#include "telemetry/devmap.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct calib_entry {
    tele_calib_t calib;
    long long    loaded_ms;
} calib_entry_t;

enum { SNAP_NONE, SNAP_WHOLE, SNAP_TOO_BIG };

struct calib_cache {
    pthread_mutex_t lock;
    devmap_t       *map;        /* row by row, LRU-bounded */
    int             ttl_s;
    /* the whole partition, while it has at most snapshot_max rows */
    size_t          snapshot_max;
    pthread_mutex_t snap_lock;  /* held while loading, so one thread loads and the others wait */
    devmap_t       *snap;       /* RowKey → tele_calib_t (guarded by lock) */
    int             snap_state;
    long long       snap_ms;    /* when it was loaded */
};

long long tele_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double lin(const tele_linear_t *l, double v)
{
    return l->present ? v * l->slope + l->intercept : v;
}

void tele_calibrate(const tele_calib_t *c, const tele_reading_t *raw, tele_reading_t *out)
{
    if (out != raw) {
        *out = *raw;
        if (raw->message_id == raw->msgid_buf) out->message_id = out->msgid_buf;
    }
    if (!c || !c->found) return;
    if (out->has & TELE_HAS_TEMP) out->temperature = lin(&c->temperature, raw->temperature);
    if (out->has & TELE_HAS_HUMIDITY) out->humidity = lin(&c->humidity, raw->humidity);
    if (out->has & TELE_HAS_PRESSURE) out->pressure = lin(&c->pressure, raw->pressure);
}

static void linear(const cJSON *e, const char *slope, const char *icpt, tele_linear_t *l)
{
    l->present = table_get_double(e, slope, &l->slope) == 0 &&
                 table_get_double(e, icpt, &l->intercept) == 0;
    if (!l->present) l->slope = 1, l->intercept = 0;
}

void tele_calib_from_entity(const cJSON *entity, tele_calib_t *c)
{
    memset(c, 0, sizeof *c);
    c->found = 1;
    linear(entity, "TemperatureSlope", "TemperatureYIntercept", &c->temperature);
    linear(entity, "HumiditySlope", "HumidityYIntercept", &c->humidity);
    linear(entity, "PressureSlope", "PressureYIntercept", &c->pressure);
}

calib_cache_t *calib_cache_new(int ttl_s, size_t max_entries, size_t snapshot_max)
{
    calib_cache_t *cc = calloc(1, sizeof *cc);
    if (!cc) return NULL;
    if (pthread_mutex_init(&cc->lock, NULL) != 0) { free(cc); return NULL; }
    if (pthread_mutex_init(&cc->snap_lock, NULL) != 0) { pthread_mutex_destroy(&cc->lock); free(cc); return NULL; }
    cc->map = devmap_new(max_entries ? max_entries : 1);
    if (!cc->map) { calib_cache_free(cc); return NULL; }
    cc->ttl_s = ttl_s < 0 ? 0 : ttl_s;
    cc->snapshot_max = snapshot_max;
    return cc;
}

void calib_cache_free(calib_cache_t *cc)
{
    if (!cc) return;
    devmap_free(cc->map);
    devmap_free(cc->snap);
    pthread_mutex_destroy(&cc->lock);
    pthread_mutex_destroy(&cc->snap_lock);
    free(cc);
}

/* ---- the partition snapshot ---- */

typedef struct snap_load {
    devmap_t *map;
    size_t    max;
    int       too_big, oom;
} snap_load_t;

static int snap_row(const cJSON *row, void *arg)
{
    snap_load_t *l = arg;
    const char *rk = table_get_string(row, "RowKey");
    if (!rk) return 0;
    if (devmap_count(l->map) >= l->max) { l->too_big = 1; return 1; }
    tele_calib_t c;
    tele_calib_from_entity(row, &c);
    if (!devmap_put(l->map, rk, &c, sizeof c)) { l->oom = 1; return 1; }
    return 0;
}

static int fresh(const calib_cache_t *cc, long long loaded, long long now)
{
    return now >= loaded && now - loaded < (long long)cc->ttl_s * 1000;
}

/* Make the snapshot current (load it when stale). Returns its state, or -1 with err when
 * loading failed; *st gets the table status. */
static int snap_refresh(calib_cache_t *cc, table_client_t *tc, const char *table, const char *pk, long long now,
                        table_status_t *st, char *err, size_t errlen)
{
    pthread_mutex_lock(&cc->snap_lock);
    pthread_mutex_lock(&cc->lock);
    int state = cc->snap_state;
    int current = state != SNAP_NONE && fresh(cc, cc->snap_ms, now);
    pthread_mutex_unlock(&cc->lock);
    if (current) {
        pthread_mutex_unlock(&cc->snap_lock);
        return state;
    }
    snap_load_t l = {devmap_new(0), cc->snapshot_max, 0, 0};
    char *filter = table_partition_filter(pk);
    table_result_t res;
    *st = TABLE_NOMEM;
    if (l.map && filter)
        *st = table_query(tc, table, filter, "RowKey,TemperatureSlope,TemperatureYIntercept,HumiditySlope,"
                          "HumidityYIntercept,PressureSlope,PressureYIntercept", snap_row, &l, &res);
    free(filter);
    if (*st == TABLE_NOT_FOUND) *st = TABLE_OK;   /* no table yet: nothing is calibrated */
    if (*st == TABLE_OK && l.oom) *st = TABLE_NOMEM;
    if (*st != TABLE_OK) {
        devmap_free(l.map);
        pthread_mutex_unlock(&cc->snap_lock);
        snprintf(err, errlen, "loading the Calibration partition from table %s: %s (%s)", table,
                 table_status_name(*st), *st == TABLE_NOMEM ? "out of memory" : res.message);
        return -1;
    }
    pthread_mutex_lock(&cc->lock);
    devmap_free(cc->snap);
    cc->snap = l.too_big ? NULL : l.map;
    if (l.too_big) devmap_free(l.map);
    cc->snap_state = l.too_big ? SNAP_TOO_BIG : SNAP_WHOLE;
    cc->snap_ms = now;
    state = cc->snap_state;
    pthread_mutex_unlock(&cc->lock);
    pthread_mutex_unlock(&cc->snap_lock);
    return state;
}

int calib_cache_peek(calib_cache_t *cc, const char *device_id, long long now_ms, tele_calib_t *out)
{
    int hit = 0;
    if (!cc) return 0;
    pthread_mutex_lock(&cc->lock);
    calib_entry_t *e = devmap_get(cc->map, device_id, NULL);
    if (e && now_ms - e->loaded_ms < (long long)cc->ttl_s * 1000 && now_ms >= e->loaded_ms) {
        *out = e->calib;
        hit = 1;
    }
    pthread_mutex_unlock(&cc->lock);
    return hit;
}

void calib_cache_store(calib_cache_t *cc, const char *device_id, long long now_ms, const tele_calib_t *c)
{
    if (!cc || cc->ttl_s == 0) return;
    calib_entry_t e = {*c, now_ms};
    pthread_mutex_lock(&cc->lock);
    /* bounded (least recently used out): hostile id floods only cost re-reads */
    (void)devmap_put(cc->map, device_id, &e, sizeof e);   /* out of memory: simply not cached */
    pthread_mutex_unlock(&cc->lock);
}

int calib_lookup(calib_cache_t *cc, table_client_t *tc, const char *table, const char *partition_key,
                 const char *device_id, const char *row_key, tele_calib_t *out, char *err, size_t errlen)
{
    long long now = tele_now_ms();
    if (cc && calib_cache_peek(cc, device_id, now, out)) return 0;
    memset(out, 0, sizeof *out);
    if (!tc) return 0;
    if (cc && cc->ttl_s > 0 && cc->snapshot_max > 0) {
        table_status_t st = TABLE_OK;
        int state = snap_refresh(cc, tc, table, partition_key, now, &st, err, errlen);
        if (state < 0) return (int)st;
        if (state == SNAP_WHOLE) {
            pthread_mutex_lock(&cc->lock);
            const tele_calib_t *c = cc->snap ? devmap_get(cc->snap, row_key, NULL) : NULL;
            if (c) *out = *c;
            pthread_mutex_unlock(&cc->lock);
            return 0;   /* not in the partition: not calibrated */
        }
    }
    cJSON *entity = NULL;
    table_result_t res;
    table_status_t st = table_get_entity(tc, table, partition_key, row_key, NULL, &entity, NULL, &res);
    if (st == TABLE_OK) {
        tele_calib_from_entity(entity, out);
        cJSON_Delete(entity);
    } else if (st != TABLE_NOT_FOUND) {
        snprintf(err, errlen, "reading calibration of device '%.128s' from table %s: %s (%s)",
                 device_id, table, table_status_name(st), res.message);
        return (int)st;
    }
    if (cc) calib_cache_store(cc, device_id, now, out);
    return 0;
}
