/* calibrate.h — per-device linear calibration and its process-wide cache.
 *
 * Owns the Calibration table lookups: calibrated = value * slope + intercept for temperature,
 * humidity and pressure, from the device's Calibration row (PartitionKey setting, RowKey =
 * the device's RowKey, device_id.h; columns TemperatureSlope, TemperatureYIntercept, HumiditySlope,
 * HumidityYIntercept, PressureSlope, PressureYIntercept). A quantity whose slope or
 * intercept is missing passes through unchanged (as in the original).
 *
 * The cache is per process, thread-safe, loaded lazily, and expires after
 * CalibrationCacheSeconds — positive AND negative ("no row") answers alike — so a row added or
 * changed in the table takes effect within the TTL. Storage errors are never cached. Usually
 * few devices are calibrated: while the Calibration partition holds at most snapshot_max rows
 * (CALIB_SNAPSHOT_MAX in the handler), one query per TTL loads all of it and every lookup is
 * answered from that snapshot (a new device costs no read). A larger partition is read row by
 * row, each answer cached, the least recently used device making room; whether it has shrunk
 * enough to be loaded whole again is checked once per TTL (one query of at most
 * snapshot_max + 1 rows). */
#ifndef ENVIROMON_TELEMETRY_CALIBRATE_H
#define ENVIROMON_TELEMETRY_CALIBRATE_H

#include "telemetry/normalise.h"

struct table_client;
struct config;

typedef struct tele_linear {
    int    present;          /* both slope and intercept were in the row */
    double slope, intercept;
} tele_linear_t;

typedef struct tele_calib {
    int           found;     /* a Calibration row exists */
    tele_linear_t temperature, humidity, pressure;
} tele_calib_t;

typedef struct calib_cache calib_cache_t;

/* Apply c to the raw reading, writing calibrated values to *out (a copy of raw with the
 * three quantities transformed). c may be NULL (no calibration). Never applied in place, so
 * retries always start from the raw reading. */
void tele_calibrate(const tele_calib_t *c, const tele_reading_t *raw, tele_reading_t *out);

/* Read a Calibration entity (cJSON, typed or bare numbers) into *c (found = 1). */
void tele_calib_from_entity(const struct cJSON *entity, tele_calib_t *c);

/* Calibration rows a partition may hold and still be loaded whole (the handler's bound:
 * ~160 bytes a row, so at most ~1.6 MiB; ten query pages once per TTL). */
#define CALIB_SNAPSHOT_MAX 10000

/* ttl_s: seconds an entry stays good (0 = never cache, and no snapshot). max_entries bounds
 * the row-by-row cache (the least recently used device makes room). snapshot_max: the most
 * rows a partition may hold and still be loaded whole (0: always row by row). NULL when out
 * of memory. */
calib_cache_t *calib_cache_new(int ttl_s, size_t max_entries, size_t snapshot_max);
void calib_cache_free(calib_cache_t *cc);

/* Cached calibration for device_id at monotonic time now_ms: 1 and *out on a fresh hit,
 * 0 when absent or expired. */
int  calib_cache_peek(calib_cache_t *cc, const char *device_id, long long now_ms, tele_calib_t *out);
/* Store a result (found or not) loaded at now_ms. */
void calib_cache_store(calib_cache_t *cc, const char *device_id, long long now_ms, const tele_calib_t *c);

/* The calibration of device_id (its row under row_key): from the partition snapshot or the
 * cache, else read from the Calibration table and cached (a missing row or table is cached as
 * "none"). Returns 0, or the failing table status (message in err; nothing cached), in which
 * case the caller must not use *out. */
int  calib_lookup(calib_cache_t *cc, struct table_client *tc, const char *table,
                  const char *partition_key, const char *device_id, const char *row_key,
                  tele_calib_t *out, char *err, size_t errlen);

/* Monotonic clock in milliseconds. */
long long tele_now_ms(void);

#endif
