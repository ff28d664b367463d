/* quarantine.c — PoisonEvents rows and their idempotent writes (see quarantine.h). */
#include "telemetry/quarantine.h"

#include "util/base64.h"
#include "util/utf8.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* JSON text a Raw value may take inside a row: keeps 100 rows under the 4 MiB $batch limit
 * whatever the bodies hold (a body that would escape to more is stored as base64). */
#define RAW_JSON_MAX (24u * 1024u)

void quarantine_row_key(const tele_batch_t *b, const tele_event_t *e, char *rk, size_t cap)
{
    if (e->has_seq) {
        snprintf(rk, cap, "%.16s-%020" PRId64, b->stream, e->seq);
        return;
    }
    /* no sequence number: the same event delivered again has the same body, device and time */
    uint64_t h = 1469598103934665603ULL;
    const char *parts[3] = {e->raw ? e->raw : "", e->system_device_id ? e->system_device_id : "", e->enqueued};
    size_t lens[3] = {e->raw_len, strlen(parts[1]), strlen(parts[2])};
    for (int i = 0; i < 3; i++) {
        for (size_t k = 0; k < lens[i]; k++) {
            h ^= (unsigned char)parts[i][k];
            h *= 1099511628211ULL;
        }
        h ^= 0x1f;
        h *= 1099511628211ULL;
    }
    h ^= (uint64_t)e->raw_total;
    snprintf(rk, cap, "%.16s-x%016" PRIx64, b->stream, h);
}

/* Bytes of JSON text s would take as a string value (without quotes). */
static size_t json_len(const char *s, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') out += 2;
        else if (c < 0x20) out += 6;
        else out++;
    }
    return out;
}

/* Printable UTF-8 for a column: invalid bytes and control characters become '?'. */
static char *clean_text(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        long len = utf8_next(s + i, n - i);
        unsigned char c = (unsigned char)s[i];
        if (len < 0 || c < 0x20 || c == 0x7F) {
            out[o++] = '?';
            i += len < 0 ? (size_t)-len : 1;
            continue;
        }
        memcpy(out + o, s + i, (size_t)len);
        o += (size_t)len;
        i += (size_t)len;
    }
    out[o] = '\0';
    return out;
}

static int add_str(cJSON *e, const char *name, const char *v)
{
    char *c = clean_text(v);
    if (!c) return -1;
    int rc = table_set_string(e, name, c);
    free(c);
    return rc;
}

cJSON *quarantine_row(const quarantine_ctx_t *q, const tele_batch_t *b, const quarantine_item_t *it, int with_raw)
{
    const tele_event_t *ev = it->ev;
    char rk[48];
    quarantine_row_key(b, ev, rk, sizeof rk);
    cJSON *e = cJSON_CreateObject();
    if (!e) return NULL;
    int rc = table_set_string(e, "PartitionKey", q->partition_key);
    rc |= table_set_string(e, "RowKey", rk);
    rc |= add_str(e, "Stream", b->stream_desc);
    if (ev->has_seq) rc |= table_set_int64(e, "SequenceNumber", ev->seq);
    if (it->device_id && utf8_valid(it->device_id, strlen(it->device_id))) rc |= table_set_string(e, "DeviceId", it->device_id);
    rc |= add_str(e, "Reason", it->reason ? it->reason : "");
    if (ev->enqueued[0]) rc |= table_set_datetime(e, "EnqueuedTime", ev->enqueued);
    rc |= table_set_datetime(e, "QuarantinedAt", q->now_utc);
    if (q->invocation_id && *q->invocation_id) rc |= add_str(e, "InvocationId", q->invocation_id);
    rc |= table_set_int64(e, "RawBytes", (int64_t)ev->raw_total);
    rc |= table_set_bool(e, "RawTruncated", ev->raw_len < ev->raw_total || !with_raw);
    if (with_raw && ev->raw) {
        int text = utf8_valid(ev->raw, ev->raw_len) && !memchr(ev->raw, 0, ev->raw_len) &&
                   json_len(ev->raw, ev->raw_len) <= RAW_JSON_MAX;
        if (text) {
            rc |= table_set_string(e, "Raw", ev->raw);
        } else {
            char *b64 = malloc(BASE64_ENCODED_LEN(ev->raw_len) + 1);
            if (!b64) rc = -1;
            else {
                base64_encode(ev->raw, ev->raw_len, b64);
                rc |= table_set_string(e, "Raw", b64);
                rc |= table_set_string(e, "RawEncoding", "base64");
                free(b64);
            }
        }
    }
    if (rc) { cJSON_Delete(e); return NULL; }
    return e;
}

/* Failures that are not the row's fault (404: the table went away and must be re-created). */
static int transient(table_status_t st)
{
    return st == TABLE_UNAVAILABLE || st == TABLE_AUTH || st == TABLE_NOMEM || st == TABLE_PROTOCOL ||
           st == TABLE_NOT_FOUND;
}

/* One row by itself: stored, already there, or (refused even without its body) dropped. */
static table_status_t store_one(const quarantine_ctx_t *q, const tele_batch_t *b, quarantine_item_t *it,
                                table_result_t *res)
{
    for (int with_raw = 1; with_raw >= 0; with_raw--) {
        cJSON *row = quarantine_row(q, b, it, with_raw);
        if (!row) {
            res->status = TABLE_NOMEM;
            snprintf(res->message, sizeof res->message, "out of memory building a PoisonEvents row");
            return TABLE_NOMEM;
        }
        table_status_t st = table_insert_entity(q->tables, q->table, row, NULL, res);
        cJSON_Delete(row);
        if (st == TABLE_OK) { it->outcome = Q_STORED; return TABLE_OK; }
        if (st == TABLE_CONFLICT) { it->outcome = Q_ALREADY; return TABLE_OK; }
        if (transient(st)) return st;
        /* refused for itself (4xx): try once more without the body */
    }
    it->outcome = Q_DROPPED;
    return TABLE_OK;
}

table_status_t quarantine_store(const quarantine_ctx_t *q, const tele_batch_t *b, quarantine_item_t *items,
                                size_t n, table_result_t *res)
{
    table_batch_op_t ops[TABLE_BATCH_MAX_OPS];
    cJSON *rows[TABLE_BATCH_MAX_OPS];
    for (size_t off = 0; off < n; off += TABLE_BATCH_MAX_OPS) {
        size_t k = n - off < TABLE_BATCH_MAX_OPS ? n - off : TABLE_BATCH_MAX_OPS;
        int built = 1;
        for (size_t i = 0; i < k; i++) {
            rows[i] = quarantine_row(q, b, &items[off + i], 1);
            if (!rows[i]) built = 0;
            memset(&ops[i], 0, sizeof ops[i]);
            ops[i].kind = TABLE_OP_INSERT;
            ops[i].entity = rows[i];
        }
        table_status_t st = TABLE_OK;
        if (built && k > 1) st = table_batch(q->tables, q->table, ops, k, res);
        for (size_t i = 0; i < k; i++) cJSON_Delete(rows[i]);
        if (!built) {
            res->status = TABLE_NOMEM;
            snprintf(res->message, sizeof res->message, "out of memory building PoisonEvents rows");
            return TABLE_NOMEM;
        }
        if (k > 1 && st == TABLE_OK) {
            for (size_t i = 0; i < k; i++) items[off + i].outcome = Q_STORED;
            continue;
        }
        /* no answer from the service, or credentials refused: nothing more to try now */
        if (k > 1 && ((st == TABLE_UNAVAILABLE && res->http_status == 0) || st == TABLE_AUTH)) return st;
        /* a row already there (a replay), a duplicate, a refusal, or a single row: row by row */
        for (size_t i = 0; i < k; i++) {
            st = store_one(q, b, &items[off + i], res);
            if (st != TABLE_OK) return st;
        }
    }
    return TABLE_OK;
}
