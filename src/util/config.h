/* config.h — every app setting the handler reads, parsed once at start-up.
 *
 * Settings come from the environment (Azure app settings, or local.settings.json Values
 * under `func start`/devhost). Each has a documented default (README, "Configuration").
 * A malformed value is a start-up error naming the setting, never a silent default.
 * Connection strings are kept verbatim here and parsed by their clients; config never logs
 * them. */
#ifndef ENVIROMON_CONFIG_H
#define ENVIROMON_CONFIG_H

#include <stddef.h>

typedef struct config {
    /* Handler process */
    int    port;                  /* FUNCTIONS_CUSTOMHANDLER_PORT (required, 1..65535) */
    size_t max_body_bytes;        /* ENVIROMON_MAX_BODY_BYTES, default 8 MiB */
    size_t max_batch_bytes;       /* ENVIROMON_MAX_BATCH_BYTES (EventTrigger, read as it streams), default 256 MiB */
    int    request_timeout_s;     /* ENVIROMON_REQUEST_TIMEOUT, idle connection timeout, default 300 */
    /* Storage */
    char  *storage_connection;    /* StorageConnectionString, default AzureWebJobsStorage; may be NULL */
    char  *partition_key;         /* PartitionKey, default "Sydney" */
    char  *device_state_table;    /* DeviceStateTable, default "DeviceState" */
    char  *calibration_table;     /* CalibrationTable, default "Calibration" */
    char  *poison_table;          /* PoisonEventsTable, default "PoisonEvents" */
    int    calibration_cache_s;   /* CalibrationCacheSeconds, default 300 */
    int    device_cache_entries;  /* DeviceCacheEntries, devices remembered per cache, default 32768 */
    int    storage_timeout_ms;    /* StorageTimeoutMs, default 10000 (per request) */
    int    storage_retries;       /* StorageRetries, transient-failure retries, default 3 */
    /* EventTrigger */
    double min_celsius, max_celsius;     /* MinCelsius/MaxCelsius, default -40/80 */
    double min_hpa, max_hpa;             /* MinHpa/MaxHpa, default 600/1600 */
    double min_humidity, max_humidity;   /* MinHumidity/MaxHumidity, default 0/100 */
    int    occ_base_ms;           /* OccBaseMs, default 40 */
    int    occ_cap_ms;            /* OccCapMs, default 1000 */
    int    occ_max_attempts;      /* OccMaxAttempts, default 10 */
    int    device_concurrency;    /* DeviceWriteConcurrency, parallel device writes per batch, default 8 */
    /* SignalR */
    char  *signalr_connection;    /* AzureSignalRConnectionString; may be NULL */
    char  *signalr_hub;           /* SignalRHub, default "Enviromon" */
    int    snapshot_broadcast_s;  /* SnapshotBroadcastSeconds, GetDeviceState broadcasts at most once per, default 10 */
} config_t;

/* Parse the environment into cfg. require_port: whether FUNCTIONS_CUSTOMHANDLER_PORT must be
 * present (the handler) or may be absent (tests, tools). On error returns -1 and writes a
 * message naming the setting into err. */
int config_load(config_t *cfg, int require_port, char *err, size_t errlen);

/* Same, but from a lookup function instead of getenv (for tests). */
int config_load_from(config_t *cfg, const char *(*lookup)(const char *name, void *arg), void *arg,
                     int require_port, char *err, size_t errlen);

void config_free(config_t *cfg);

/* Parse helpers, shared with other modules that read settings. Each returns 0 on success
 * or -1 with a message naming `name` in err. */
int config_parse_int(const char *name, const char *text, long min, long max, long *out,
                     char *err, size_t errlen);
int config_parse_double(const char *name, const char *text, double *out, char *err, size_t errlen);

#endif
