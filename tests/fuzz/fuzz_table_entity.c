/* fuzz_table_entity.c — rows as Table Storage hands them back: a DeviceState row read into the
 * fold's typed state and written again (device_state_from_entity / device_state_to_entity:
 * src/telemetry/device_state.c), the device object GetDeviceState and EventTrigger push for it
 * (device_view_from_row: device_view.c), and a Calibration row (tele_calib_from_entity:
 * calibrate.c). The table is ours, but a row may come from an older version, a hand edit in
 * Storage Explorer or another writer, and EventTrigger must not turn it into one the service
 * refuses (that device's telemetry would then fail for good).
 *
 * Input: the row's JSON (any JSON; objects are rows).
 *
 * Invariants: reading the row, writing it and reading that again gives the same state (one
 * normalisation, then a fixed point); every string the row is written back with is valid
 * UTF-8 when the row's own strings were; the pushed object has every documented key, the
 * device id from DeviceId or the decoded RowKey (a key that decodes re-encodes to itself),
 * finite numbers or null, lastSeen as YYYY-MM-DDTHH:MM:SS[.fff]Z or null; calibration terms
 * are taken only in pairs. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <math.h>

#include "azure/table.h"
#include "azure/table_internal.h"
#include "telemetry/calibrate.h"
#include "telemetry/device_id.h"
#include "telemetry/device_state.h"
#include "telemetry/device_view.h"
#include "util/buf.h"
#include "util/utf8.h"

/* Are all strings (keys and values) in v valid UTF-8? */
static int all_utf8(const cJSON *v)
{
    if (v->string && !utf8_valid(v->string, strlen(v->string))) return 0;
    if (cJSON_IsString(v) && !utf8_valid(v->valuestring, strlen(v->valuestring))) return 0;
    for (const cJSON *c = v->child; c; c = c->next)
        if (!all_utf8(c)) return 0;
    return 1;
}

static void check_same(const device_state_t *a, const device_state_t *b)
{
    FUZZ_CHECK(a->has == b->has && a->count == b->count && a->invalid_count == b->invalid_count &&
                   strcmp(a->last_seen, b->last_seen) == 0 && strcmp(a->stream, b->stream) == 0 &&
                   a->has_seq == b->has_seq && (!a->has_seq || a->last_seq == b->last_seq) && a->nolder == b->nolder,
               "state changed on its second trip (has %x/%x, count %lld/%lld, seen '%s'/'%s', older %d/%d)", a->has,
               b->has, (long long)a->count, (long long)b->count, a->last_seen, b->last_seen, a->nolder, b->nolder);
    FUZZ_CHECK((!(a->has & TELE_HAS_GEO) || strcmp(a->geo, b->geo) == 0) && (!(a->has & TELE_HAS_MSGID) || strcmp(a->id, b->id) == 0),
               "text changed on its second trip");
    for (int i = 0; i < a->nolder; i++)
        FUZZ_CHECK(strcmp(a->older[i].id, b->older[i].id) == 0 && a->older[i].seq == b->older[i].seq, "older stream %d", i);
}

static void check_view(const cJSON *row)
{
    cJSON *v = device_view_from_row(row);
    if (!v) return;
    static const char *const keys[] = {"deviceId", "temperature", "humidity", "pressure", "light", "geo",
                                       "count", "invalidCount", "lastSeen", "messageId"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(v, keys[i]);
        FUZZ_CHECK(k, "pushed object lacks %s", keys[i]);
        FUZZ_CHECK(!cJSON_IsNumber(k) || isfinite(k->valuedouble), "%s is not finite", keys[i]);
    }
    /* the id: DeviceId, else the RowKey decoded (device_id.h), else the RowKey as it is */
    const char *id = table_get_string(row, "DeviceId");
    char decoded[DEVICE_ROW_KEY_MAX], again[DEVICE_ROW_KEY_MAX];
    if (!id || !*id) {
        id = table_get_string(row, "RowKey");
        if (id && device_id_from_row_key(id, decoded, sizeof decoded) >= 0) {
            /* a key that decodes is one device_row_key produces: the mapping is one-to-one */
            FUZZ_CHECK(device_row_key(decoded, again, sizeof again) >= 0 && strcmp(again, id) == 0,
                       "RowKey '%s' decodes to '%s', which is stored as '%s'", id, decoded, again);
            id = decoded;
        }
    }
    const cJSON *did = cJSON_GetObjectItemCaseSensitive(v, "deviceId");
    FUZZ_CHECK(id && cJSON_IsString(did) && strcmp(did->valuestring, id) == 0, "deviceId is not the row's");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(v, "lastSeen");
    if (cJSON_IsString(ls)) {
        const char *t = ls->valuestring;
        size_t n = strlen(t);
        FUZZ_CHECK((n == 20 || n == 24) && t[10] == 'T' && t[n - 1] == 'Z' && (n == 20 || t[19] == '.'), "lastSeen '%s'", t);
    } else {
        FUZZ_CHECK(cJSON_IsNull(ls), "lastSeen neither a string nor null");
    }
    cJSON_Delete(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *row = cJSON_ParseWithLength((const char *)data, size);
    if (!cJSON_IsObject(row)) { cJSON_Delete(row); return 0; }

    device_state_t s, t;
    device_state_from_entity(row, "W/\"datetime'2024-01-01T00%3A00%3A00Z'\"", &s);
    cJSON *e = device_state_to_entity(&s, "Sydney", "dev1", "dev1");
    if (e) {
        buf_t text = BUF_INIT;
        if (table_entity_print(&text, e) == 0) {
            cJSON *back = cJSON_Parse(text.data);
            FUZZ_CHECK(back, "the written row is not JSON");
            if (all_utf8(row)) FUZZ_CHECK(all_utf8(back), "a valid row is written back with invalid UTF-8: %.300s", text.data);
            device_state_from_entity(back, "W/\"2\"", &t);
            check_same(&s, &t);
            cJSON_Delete(back);
        }
        buf_free(&text);
        cJSON_Delete(e);
    }
    check_view(row);

    tele_calib_t c;
    tele_calib_from_entity(row, &c);
    const tele_linear_t *l[3] = {&c.temperature, &c.humidity, &c.pressure};
    static const char *const slope[] = {"TemperatureSlope", "HumiditySlope", "PressureSlope"};
    static const char *const icpt[] = {"TemperatureYIntercept", "HumidityYIntercept", "PressureYIntercept"};
    for (int i = 0; i < 3; i++) {
        double a, b;
        int both = table_get_double(row, slope[i], &a) == 0 && table_get_double(row, icpt[i], &b) == 0;
        FUZZ_CHECK(!l[i]->present || both, "%s taken without both terms", slope[i]);
    }
    cJSON_Delete(row);
    return 0;
}
