/* config.c — app settings from the environment (see config.h). */
#include "util/config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env_lookup(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

int config_parse_int(const char *name, const char *text, long min, long max, long *out,
                     char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    while (end && (*end == ' ' || *end == '\t')) end++;
    if (errno || end == text || *end != '\0' || v < min || v > max) {
        snprintf(err, errlen, "setting %s: '%.40s' is not an integer in %ld..%ld", name, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int config_parse_double(const char *name, const char *text, double *out, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    while (end && (*end == ' ' || *end == '\t')) end++;
    if (errno || end == text || *end != '\0' || !isfinite(v)) {
        snprintf(err, errlen, "setting %s: '%.40s' is not a finite number", name, text);
        return -1;
    }
    *out = v;
    return 0;
}

typedef struct {
    const char *(*lookup)(const char *, void *);
    void *arg;
    char *err;
    size_t errlen;
    int failed;
} loader_t;

static const char *get(loader_t *l, const char *name)
{
    const char *v = l->lookup(name, l->arg);
    return (v && *v) ? v : NULL;
}

static char *get_str(loader_t *l, const char *name, const char *def)
{
    const char *v = get(l, name);
    if (!v) v = def;
    if (!v) return NULL;
    char *s = strdup(v);
    if (!s) { snprintf(l->err, l->errlen, "out of memory reading %s", name); l->failed = 1; }
    return s;
}

static void get_int(loader_t *l, const char *name, long def, long min, long max, int *out)
{
    const char *v = get(l, name);
    long x = def;
    if (v && !l->failed && config_parse_int(name, v, min, max, &x, l->err, l->errlen) != 0) l->failed = 1;
    *out = (int)x;
}

static void get_double(loader_t *l, const char *name, double def, double *out)
{
    const char *v = get(l, name);
    double x = def;
    if (v && !l->failed && config_parse_double(name, v, &x, l->err, l->errlen) != 0) l->failed = 1;
    *out = x;
}

static void check_range(loader_t *l, const char *lo_name, double lo, const char *hi_name, double hi)
{
    if (!l->failed && lo > hi) {
        snprintf(l->err, l->errlen, "settings %s (%g) and %s (%g): the minimum is above the maximum",
                 lo_name, lo, hi_name, hi);
        l->failed = 1;
    }
}

int config_load_from(config_t *cfg, const char *(*lookup)(const char *, void *), void *arg,
                     int require_port, char *err, size_t errlen)
{
    loader_t l = {lookup, arg, err, errlen, 0};
    memset(cfg, 0, sizeof *cfg);
    err[0] = '\0';

    const char *port = get(&l, "FUNCTIONS_CUSTOMHANDLER_PORT");
    if (!port) port = get(&l, "FUNCTIONS_HTTPWORKER_PORT");
    if (port) {
        long p;
        if (config_parse_int("FUNCTIONS_CUSTOMHANDLER_PORT", port, 1, 65535, &p, err, errlen) != 0)
            l.failed = 1;
        else
            cfg->port = (int)p;
    } else if (require_port) {
        snprintf(err, errlen, "setting FUNCTIONS_CUSTOMHANDLER_PORT is missing: the Functions host "
                              "sets it; to run the handler by hand, export a free TCP port in it");
        l.failed = 1;
    }

    long maxbody = 8L * 1024 * 1024;
    const char *mb = get(&l, "ENVIROMON_MAX_BODY_BYTES");
    if (mb && !l.failed && config_parse_int("ENVIROMON_MAX_BODY_BYTES", mb, 1024, 1024L * 1024 * 1024, &maxbody, err, errlen) != 0)
        l.failed = 1;
    cfg->max_body_bytes = (size_t)maxbody;
    long maxbatch = 256L * 1024 * 1024;
    const char *mbatch = get(&l, "ENVIROMON_MAX_BATCH_BYTES");
    if (mbatch && !l.failed && config_parse_int("ENVIROMON_MAX_BATCH_BYTES", mbatch, 1024, 16L * 1024 * 1024 * 1024,
                                                &maxbatch, err, errlen) != 0)
        l.failed = 1;
    cfg->max_batch_bytes = (size_t)maxbatch;
    get_int(&l, "ENVIROMON_REQUEST_TIMEOUT", 300, 1, 86400, &cfg->request_timeout_s);

    const char *webjobs = get(&l, "AzureWebJobsStorage");
    cfg->storage_connection = get_str(&l, "StorageConnectionString", webjobs);
    cfg->partition_key = get_str(&l, "PartitionKey", "Sydney");
    cfg->device_state_table = get_str(&l, "DeviceStateTable", "DeviceState");
    cfg->calibration_table = get_str(&l, "CalibrationTable", "Calibration");
    cfg->poison_table = get_str(&l, "PoisonEventsTable", "PoisonEvents");
    get_int(&l, "CalibrationCacheSeconds", 300, 0, 86400 * 7, &cfg->calibration_cache_s);
    get_int(&l, "DeviceCacheEntries", 32768, 1, 10000000, &cfg->device_cache_entries);
    get_int(&l, "StorageTimeoutMs", 10000, 100, 600000, &cfg->storage_timeout_ms);
    get_int(&l, "StorageRetries", 3, 0, 20, &cfg->storage_retries);

    get_double(&l, "MinCelsius", -40, &cfg->min_celsius);
    get_double(&l, "MaxCelsius", 80, &cfg->max_celsius);
    get_double(&l, "MinHpa", 600, &cfg->min_hpa);
    get_double(&l, "MaxHpa", 1600, &cfg->max_hpa);
    get_double(&l, "MinHumidity", 0, &cfg->min_humidity);
    get_double(&l, "MaxHumidity", 100, &cfg->max_humidity);
    check_range(&l, "MinCelsius", cfg->min_celsius, "MaxCelsius", cfg->max_celsius);
    check_range(&l, "MinHpa", cfg->min_hpa, "MaxHpa", cfg->max_hpa);
    check_range(&l, "MinHumidity", cfg->min_humidity, "MaxHumidity", cfg->max_humidity);
    get_int(&l, "OccBaseMs", 40, 1, 60000, &cfg->occ_base_ms);
    get_int(&l, "OccCapMs", 1000, 1, 600000, &cfg->occ_cap_ms);
    get_int(&l, "OccMaxAttempts", 10, 1, 1000, &cfg->occ_max_attempts);
    check_range(&l, "OccBaseMs", cfg->occ_base_ms, "OccCapMs", cfg->occ_cap_ms);
    get_int(&l, "DeviceWriteConcurrency", 8, 1, 64, &cfg->device_concurrency);

    cfg->signalr_connection = get_str(&l, "AzureSignalRConnectionString", NULL);
    cfg->signalr_hub = get_str(&l, "SignalRHub", "Enviromon");
    get_int(&l, "SnapshotBroadcastSeconds", 10, 0, 86400, &cfg->snapshot_broadcast_s);

    if (l.failed) { config_free(cfg); return -1; }
    return 0;
}

int config_load(config_t *cfg, int require_port, char *err, size_t errlen)
{
    return config_load_from(cfg, env_lookup, NULL, require_port, err, errlen);
}

void config_free(config_t *cfg)
{
    free(cfg->storage_connection);
    free(cfg->partition_key);
    free(cfg->device_state_table);
    free(cfg->calibration_table);
    free(cfg->poison_table);
    free(cfg->signalr_connection);
    free(cfg->signalr_hub);
    memset(cfg, 0, sizeof *cfg);
}
