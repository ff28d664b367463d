/* get_device_state.c — the GetDeviceState function: the dashboard's snapshot of every device.
 *
 * Owns reading the DeviceState partition (all pages, through the shared table client),
 * turning rows into the same device objects EventTrigger pushes (telemetry/device_view.h),
 * sorting them by device id, the ?deviceId= single-device form (found under the device's
 * encoded RowKey, telemetry/device_id.h), and the compatibility broadcast of the snapshot as
 * newMessage (the original dashboard expected it over SignalR), throttled per process to one
 * per SnapshotBroadcastSeconds. The function is anonymous: its errors say what the caller can
 * act on plus the invocation id, and the detail (endpoint, table, client error) is logged.
 * Thread-safe: the table client is, and the throttle is one atomic. */
#include "functions/functions.h"

#include "azure/table.h"
#include "telemetry/calibrate.h"
#include "telemetry/device_id.h"
#include "telemetry/device_view.h"
#include "util/buf.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A broadcast message larger than this is split into several newMessage sends: the SignalR
 * Service rejects messages over 1 MB, and the envelope needs some room. */
#define BROADCAST_CHUNK_BYTES (900u * 1024u)

typedef struct collect {
    cJSON **items;
    size_t  n, cap;
    int     oom;
    size_t  skipped;     /* rows without a device id */
} collect_t;

static int collect_row(const cJSON *row, void *arg)
{
    collect_t *c = arg;
    cJSON *dev = device_view_from_row(row);
    if (!dev) {
        c->skipped++;
        return 0;
    }
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        cJSON **p = realloc(c->items, ncap * sizeof *p);
        if (!p) {
            cJSON_Delete(dev);
            c->oom = 1;
            return 1;           /* stop the query */
        }
        c->items = p;
        c->cap = ncap;
    }
    c->items[c->n++] = dev;
    return 0;
}

static int by_device_id(const void *a, const void *b)
{
    const cJSON *da = *(cJSON *const *)a, *db = *(cJSON *const *)b;
    return strcmp(cJSON_GetObjectItemCaseSensitive(da, "deviceId")->valuestring,
                  cJSON_GetObjectItemCaseSensitive(db, "deviceId")->valuestring);
}

static int is_false(const char *v)
{
    return v && (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0);
}

/* Broadcast devices (an array) as newMessage, split into chunks when the printed snapshot is
 * too large for one SignalR message. printed_len: length of the whole array's text. */
static int broadcast(invocation_t *inv, const cJSON *devices, size_t printed_len)
{
    if (printed_len <= BROADCAST_CHUNK_BYTES) {
        cJSON *copy = cJSON_Duplicate(devices, 1);
        if (!copy) return -1;
        return inv_signalr_message(inv, "signalRMessages", FN_SIGNALR_TARGET, copy, NULL, NULL);
    }
    cJSON *chunk = NULL;
    size_t chunk_bytes = 0, chunks = 0;
    for (const cJSON *d = devices->child; d; d = d->next) {
        char *txt = cJSON_PrintUnformatted(d);
        if (!txt) goto oom;
        size_t l = strlen(txt) + 1;
        cJSON_free(txt);
        if (chunk && chunk_bytes + l > BROADCAST_CHUNK_BYTES) {
            cJSON *full = chunk;
            chunk = NULL;
            if (inv_signalr_message(inv, "signalRMessages", FN_SIGNALR_TARGET, full, NULL, NULL) != 0) goto oom;
            chunks++;
        }
        if (!chunk) {
            chunk = cJSON_CreateArray();
            chunk_bytes = 2;
            if (!chunk) goto oom;
        }
        cJSON *copy = cJSON_Duplicate(d, 1);
        if (!copy || !cJSON_AddItemToArray(chunk, copy)) { cJSON_Delete(copy); goto oom; }
        chunk_bytes += l;
    }
    if (chunk) {
        if (inv_signalr_message(inv, "signalRMessages", FN_SIGNALR_TARGET, chunk, NULL, NULL) != 0) return -1;
        chunks++;
    }
    log_info(&inv->log, "snapshot of %d devices broadcast in %zu messages", cJSON_GetArraySize(devices), chunks);
    return 0;
oom:
    cJSON_Delete(chunk);
    return -1;
}

/* Answer a storage failure as a generic 503; what the table client said goes to the log
 * (it names the endpoint and the table, which anonymous callers have no business seeing). */
static int storage_error(invocation_t *inv, app_t *app, const char *detail)
{
    log_error(&inv->log, "device state is unavailable: table %s: %s", app->cfg.device_state_table, detail);
    return inv_http_error(inv, "res", 503, "device state is unavailable right now; try again later (invocation %s)",
                          inv->invocation_id);
}

static int storage_result_error(invocation_t *inv, app_t *app, const table_result_t *res)
{
    char detail[400];
    snprintf(detail, sizeof detail, "%s (%s)", res->message[0] ? res->message : "storage error",
             table_status_name(res->status));
    return storage_error(inv, app, detail);
}

/* May this request broadcast the whole snapshot? At most once per SnapshotBroadcastSeconds
 * per process; the first caller in a window wins it. */
static int broadcast_allowed(invocation_t *inv, app_t *app)
{
    long long window = (long long)app->cfg.snapshot_broadcast_s * 1000, now = tele_now_ms();
    if (window <= 0) return 1;
    long long last = atomic_load(&app->snapshot_broadcast_ms);
    while (last == 0 || now - last >= window) {
        if (atomic_compare_exchange_weak(&app->snapshot_broadcast_ms, &last, now)) return 1;
    }
    log_info(&inv->log, "snapshot not broadcast: the last broadcast was %lld ms ago (SnapshotBroadcastSeconds=%d); "
             "answered over HTTP only", now - last, app->cfg.snapshot_broadcast_s);
    return 0;
}

static int one_device(invocation_t *inv, app_t *app, const char *device_id, int do_broadcast)
{
    char why[128], rk[DEVICE_ROW_KEY_MAX];
    if (!device_id_valid(device_id, why, sizeof why))
        return inv_http_error(inv, "res", 400, "?deviceId= is not a valid device id: %s", why);
    if (device_row_key(device_id, rk, sizeof rk) < 0)
        return inv_http_error(inv, "res", 400, "?deviceId= is not a valid device id");
    cJSON *row = NULL;
    table_result_t res;
    table_status_t st = table_get_entity(app->tables, app->cfg.device_state_table, app->cfg.partition_key,
                                         rk, NULL, &row, NULL, &res);
    if (st == TABLE_NOT_FOUND) return inv_http_error(inv, "res", 404, "no device '%s'", device_id);
    if (st != TABLE_OK) return storage_result_error(inv, app, &res);
    cJSON *dev = device_view_from_row(row);
    cJSON_Delete(row);
    if (!dev) return inv_http_error(inv, "res", 404, "no device '%s'", device_id);
    int rc = inv_http_json(inv, "res", 200, dev);
    if (rc == 0 && do_broadcast) {
        cJSON *arr = cJSON_CreateArray();
        if (!arr || !cJSON_AddItemToArray(arr, dev)) {
            cJSON_Delete(arr);
            cJSON_Delete(dev);
            return -1;
        }
        return inv_signalr_message(inv, "signalRMessages", FN_SIGNALR_TARGET, arr, NULL, NULL);
    }
    cJSON_Delete(dev);
    return rc;
}

static int all_devices(invocation_t *inv, app_t *app, int do_broadcast)
{
    char *filter = table_partition_filter(app->cfg.partition_key);
    if (!filter) return -1;
    collect_t c = {0};
    table_result_t res;
    table_status_t st = table_query(app->tables, app->cfg.device_state_table, filter, NULL, collect_row, &c, &res);
    free(filter);
    cJSON *arr = NULL;
    char *text = NULL;
    int rc = -1;
    if (c.oom) goto out;
    if (st == TABLE_NOT_FOUND) {
        /* No table yet: no device has reported. That is an empty snapshot, not an outage. */
        log_info(&inv->log, "table %s does not exist yet: no devices", app->cfg.device_state_table);
    } else if (st != TABLE_OK) {
        rc = storage_result_error(inv, app, &res);
        goto out;
    }
    if (c.skipped) log_warn(&inv->log, "%zu rows without DeviceId/RowKey skipped", c.skipped);
    if (c.n > 1) qsort(c.items, c.n, sizeof *c.items, by_device_id);
    arr = cJSON_CreateArray();
    if (!arr) goto out;
    size_t i = 0;
    for (; i < c.n; i++) {
        if (!cJSON_AddItemToArray(arr, c.items[i])) break;
    }
    if (i < c.n) {
        for (size_t j = i; j < c.n; j++) cJSON_Delete(c.items[j]);
        c.n = 0;
        goto out;
    }
    c.n = 0;   /* items now owned by arr */
    text = cJSON_PrintUnformatted(arr);
    if (!text) goto out;
    rc = inv_http_response(inv, "res", 200, "application/json", text);
    if (rc == 0 && do_broadcast) do_broadcast = broadcast_allowed(inv, app);
    if (rc == 0 && do_broadcast) rc = broadcast(inv, arr, strlen(text));
    if (rc == 0) log_info(&inv->log, "snapshot: %d devices%s", cJSON_GetArraySize(arr), do_broadcast ? ", broadcast" : "");
out:
    for (size_t j = 0; j < c.n; j++) cJSON_Delete(c.items[j]);
    free(c.items);
    cJSON_Delete(arr);
    cJSON_free(text);
    return rc;
}

int get_device_state_run(invocation_t *inv, app_t *app)
{
    const cJSON *req = inv_data(inv, "req");
    const char *device_id = cJSON_IsObject(req) ? http_req_query(req, "deviceId") : NULL;
    int do_broadcast = !(cJSON_IsObject(req) && is_false(http_req_query(req, "broadcast")));
    int rc;
    if (!app->tables) {
        rc = storage_error(inv, app, app->tables_error[0] ? app->tables_error : "no storage configured");
    } else if (device_id) {
        if (!*device_id) rc = inv_http_error(inv, "res", 400, "?deviceId= must not be empty");
        else rc = one_device(inv, app, device_id, do_broadcast);
    } else {
        rc = all_devices(inv, app, do_broadcast);
    }
    if (rc != 0) {
        inv_fail(inv, 500, "GetDeviceState: out of memory");
        return -1;
    }
    return 0;
}
