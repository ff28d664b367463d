/* fuzz_event_batch.c — an EventTrigger invocation from the body the host POSTs to the fold
 * into DeviceState rows, without storage: the envelope (inv_init), batch decoding and
 * per-event normalisation (tele_batch_decode, tele_normalise: src/telemetry/batch.c,
 * normalise.c, device_id.c), then, per device, calibration and validation
 * (tele_mark_validity), the fold (device_state_fold), the row as an entity and back
 * (device_state_to_entity, table_entity_print, device_state_from_entity) and the pushed
 * message (device_view_from_row).
 *
 * The same body is also read as the handler reads it (protocol/server.c feeding
 * event_trigger_reader): its raw bytes fed to the streaming decoder (tele_decoder_feed,
 * tele_decoder_finish: batch.c, event_body.c, util/jstream.c) whole and in chunks whose sizes
 * (0 included) come from a hash of the input, and the invariants below are checked on that
 * batch too.
 *
 * Invariants:
 * - the streaming decoder's verdict and batch (every event's id, claim, sequence number,
 *   time, reading and kept raw body) do not depend on how the body is chunked; a body
 *   it accepts is JSON cJSON accepts; a refusal carries a reason;
 * - trust: an event with an iothub-connection-device-id belongs to exactly that device or is
 *   rejected — never to the id its payload claims; an accepted event's device id is valid;
 *   a rejected one says why; sequence numbers are used only when the partition is known;
 * - a reading that is not invalid holds only finite numbers; enqueued times are canonical
 *   and normalising them again changes nothing;
 * - the fold counts every event once: Count and InvalidCount grow by exactly the accepted and
 *   invalid events; folding the same batch again (a host retry) skips every event that has a
 *   sequence number and changes neither count for them;
 * - the row is valid UTF-8 (the Table service refuses anything else) and survives the trip
 *   through its Table entity's JSON, and the pushed message names the device with the row's
 *   count. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>

#include "azure/table.h"
#include "azure/table_internal.h"
#include "protocol/invocation.h"
#include "telemetry/batch.h"
#include "telemetry/calibrate.h"
#include "telemetry/device_id.h"
#include "telemetry/device_state.h"
#include "telemetry/device_view.h"
#include "telemetry/devmap.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/utf8.h"

#define MAX_FOLD_EVENTS 2000   /* the fold is quadratic in nothing, but keep runs short */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    return 0;
}

static void check_event(const tele_batch_t *b, const tele_event_t *e, size_t i)
{
    if (e->rejected) {
        FUZZ_CHECK(e->reject_reason[0], "event %zu rejected without a reason", i);
        FUZZ_CHECK(!e->system_device_id || !device_id_valid(e->system_device_id, NULL, 0),
                   "event %zu of authenticated device '%s' rejected instead of counted as invalid", i, e->system_device_id);
    } else {
        FUZZ_CHECK(e->device_id && device_id_valid(e->device_id, NULL, 0), "event %zu accepted with an invalid id", i);
        if (e->system_device_id)
            FUZZ_CHECK(strcmp(e->device_id, e->system_device_id) == 0, "event %zu of '%s' filed under '%s'", i,
                       e->system_device_id, e->device_id);
        if (e->spoofed)
            /* (a claim that is no usable id is a spoof whose claim is not kept: claimed_bad) */
            FUZZ_CHECK(e->system_device_id && (e->reading.claimed_bad || (e->reading.claimed_device_id &&
                           strcmp(e->system_device_id, e->reading.claimed_device_id) != 0)),
                       "event %zu marked spoofed without a differing claim", i);
        if (!e->reading.invalid) {
            const tele_reading_t *r = &e->reading;
            FUZZ_CHECK((!(r->has & TELE_HAS_TEMP) || isfinite(r->temperature)) &&
                           (!(r->has & TELE_HAS_HUMIDITY) || isfinite(r->humidity)) &&
                           (!(r->has & TELE_HAS_PRESSURE) || isfinite(r->pressure)) &&
                           (!(r->has & TELE_HAS_LIGHT) || isfinite(r->light)),
                       "event %zu: a valid reading with a non-finite number", i);
            FUZZ_CHECK(!(r->has & TELE_HAS_GEO) || (r->geo && strlen(r->geo) <= TELE_TEXT_MAX), "event %zu: geo", i);
            FUZZ_CHECK(!(r->has & TELE_HAS_MSGID) || (r->message_id && strlen(r->message_id) <= TELE_TEXT_MAX),
                       "event %zu: message id", i);
        } else {
            FUZZ_CHECK(e->reading.reason[0], "event %zu invalid without a reason", i);
        }
    }
    FUZZ_CHECK(!e->has_seq || b->seq_usable, "event %zu has a sequence number without a partition", i);
    if (e->enqueued[0]) {
        char again[TELE_TIME_LEN];
        FUZZ_CHECK(strlen(e->enqueued) == TELE_TIME_LEN - 1 && e->enqueued[TELE_TIME_LEN - 2] == 'Z' &&
                       tele_time_normalise(e->enqueued, again) == 0 && strcmp(again, e->enqueued) == 0,
                   "event %zu: enqueued time '%s' is not canonical", i, e->enqueued);
    }
}

/* Equal, or apart by the last bit or two: cJSON prints a double with 15 significant digits
 * whenever that reads back within DBL_EPSILON of it (its compare_double), so a stored reading
 * may differ from the computed one in the 17th digit (72.05000000000001 is stored as 72.05). */
static int near(double x, double y)
{
    return x == y || fabs(x - y) <= 2 * DBL_EPSILON * fmax(fabs(x), fabs(y));
}

static void check_states_equal(const device_state_t *a, const device_state_t *b, const char *what)
{
    FUZZ_CHECK(a->has == b->has && a->count == b->count && a->invalid_count == b->invalid_count &&
                   strcmp(a->last_seen, b->last_seen) == 0 && strcmp(a->stream, b->stream) == 0 &&
                   a->has_seq == b->has_seq && (!a->has_seq || a->last_seq == b->last_seq) && a->nolder == b->nolder,
               "%s: row fields differ (count %lld/%lld, invalid %lld/%lld, seen '%s'/'%s')", what, (long long)a->count,
               (long long)b->count, (long long)a->invalid_count, (long long)b->invalid_count, a->last_seen, b->last_seen);
    FUZZ_CHECK((!(a->has & TELE_HAS_TEMP) || near(a->celsius, b->celsius)) &&
                   (!(a->has & TELE_HAS_HUMIDITY) || near(a->humidity, b->humidity)) &&
                   (!(a->has & TELE_HAS_PRESSURE) || near(a->hpa, b->hpa)) && (!(a->has & TELE_HAS_LIGHT) || near(a->light, b->light)),
               "%s: readings differ (%.17g/%.17g %.17g/%.17g %.17g/%.17g %.17g/%.17g)", what, a->celsius, b->celsius,
               a->humidity, b->humidity, a->hpa, b->hpa, a->light, b->light);
    FUZZ_CHECK((!(a->has & TELE_HAS_GEO) || strcmp(a->geo, b->geo) == 0) && (!(a->has & TELE_HAS_MSGID) || strcmp(a->id, b->id) == 0),
               "%s: geo or id differ", what);
    for (int i = 0; i < a->nolder; i++)
        FUZZ_CHECK(strcmp(a->older[i].id, b->older[i].id) == 0 && a->older[i].seq == b->older[i].seq, "%s: older stream %d",
                   what, i);
}

/* The row as Table Storage would hand it back: entity → JSON text → entity. */
static void check_row_round_trip(const device_state_t *s, const char *id)
{
    char rk[DEVICE_ROW_KEY_MAX];
    if (device_row_key(id, rk, sizeof rk) < 0) return;   /* an id no key can hold is rejected earlier */
    cJSON *ent = device_state_to_entity(s, "Sydney", rk, id);
    if (!ent) return;
    buf_t text = BUF_INIT;
    if (table_entity_print(&text, ent) == 0) {
        cJSON *back = cJSON_Parse(text.data);
        FUZZ_CHECK(back, "entity JSON does not parse: %.200s", text.data);
        FUZZ_CHECK(utf8_valid(text.data, text.len), "the row holds invalid UTF-8 (the service refuses it): %.200s", text.data);
        device_state_t r;
        device_state_from_entity(back, "W/\"1\"", &r);
        check_states_equal(s, &r, "entity round trip");
        cJSON *view = device_view_from_row(back);
        if (view) {
            const cJSON *did = cJSON_GetObjectItemCaseSensitive(view, "deviceId");
            const cJSON *count = cJSON_GetObjectItemCaseSensitive(view, "count");
            FUZZ_CHECK(cJSON_IsString(did) && strcmp(did->valuestring, id) == 0, "pushed message names another device");
            FUZZ_CHECK(cJSON_IsNumber(count) && count->valuedouble == (double)s->count, "pushed count differs");
            cJSON_Delete(view);
        }
        cJSON_Delete(back);
    }
    buf_free(&text);
    cJSON_Delete(ent);
}

typedef struct group { int first, last; } group_t;

static void fold_devices(tele_batch_t *b)
{
    devmap_t *m = devmap_new(0);   /* 0: no bound, every device of the batch kept */
    if (!m) abort();
    const char **ids = calloc(b->n ? b->n : 1, sizeof *ids);
    size_t nd = 0;
    if (!ids) abort();
    for (size_t i = 0; i < b->n; i++) {
        tele_event_t *e = &b->ev[i];
        if (e->rejected) continue;
        group_t *g = devmap_get(m, e->device_id, NULL);
        if (g) {
            b->ev[g->last].next = (int)i;
            g->last = (int)i;
        } else {
            group_t ng = {(int)i, (int)i};
            if (!devmap_put(m, e->device_id, &ng, sizeof ng)) abort();
            ids[nd++] = e->device_id;
        }
    }
    const tele_calib_t calib = {1, {1, 1.8, 32}, {0, 0, 0}, {1, 1.0, -0.25}};
    const tele_bounds_t bounds = {-40, 80, 600, 1600, 0, 100};
    for (size_t d = 0; d < nd; d++) {
        const group_t *g = devmap_get(m, ids[d], NULL);
        int n_events = 0, n_seq = 0;
        for (int i = g->first; i >= 0; i = b->ev[i].next) {
            n_events++;
            n_seq += b->ev[i].has_seq;
        }
        int n_invalid = tele_mark_validity(b, g->first, &calib, &bounds, NULL, NULL);
        device_state_t cur, next, again;
        memset(&cur, 0, sizeof cur);
        fold_stats_t st, st2;
        device_state_fold(&cur, b, g->first, &calib, "2024-01-01T00:00:00.0000000Z", &next, &st);
        FUZZ_CHECK(st.accepted + st.invalid == n_events && st.replayed == 0 && st.invalid == n_invalid,
                   "first fold: %d accepted, %d invalid, %d replayed of %d events (%d invalid)", st.accepted, st.invalid,
                   st.replayed, n_events, n_invalid);
        FUZZ_CHECK(next.count == st.accepted && next.invalid_count == st.invalid, "counts %lld/%lld after %d/%d",
                   (long long)next.count, (long long)next.invalid_count, st.accepted, st.invalid);
        /* the host retries the same batch: events with a sequence number are replays */
        device_state_fold(&next, b, g->first, &calib, "2024-01-01T00:00:00.0000000Z", &again, &st2);
        FUZZ_CHECK(st2.replayed == n_seq && st2.accepted + st2.invalid == n_events - n_seq,
                   "retry: %d replayed of %d with sequence numbers, %d counted again of %d without", st2.replayed, n_seq,
                   st2.accepted + st2.invalid, n_events - n_seq);
        if (n_seq == n_events) check_states_equal(&next, &again, "retry of a fully sequenced batch");
        check_row_round_trip(&next, ids[d]);
        if (n_seq) check_row_round_trip(&again, ids[d]);
    }
    free(ids);
    devmap_free(m);
}

/* The body through the streaming decoder as the handler feeds it: whole (split 0) or in
 * hashed chunk sizes (split 1), each chunk an exact-size copy so that a read past it is
 * caught. 0, or -1 with the decoder's reason in err. */
static int stream_decode(const uint8_t *data, size_t size, int split, tele_batch_t *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    tele_decoder_t *d = tele_decoder_new();
    if (!d) abort();
    uint64_t seed = fuzz_chunk_seed(data, size);
    int rc = 0;
    size_t pos = 0;
    do {
        size_t n = size - pos;
        if (split) {
            n = fuzz_chunk_len(&seed, 16, size - pos);
        }
        char *chunk = (char *)fuzz_memdup(data + pos, n);
        rc = tele_decoder_feed(d, chunk, n);
        free(chunk);
        pos += n;
    } while (rc == 0 && pos < size);
    if (rc == 0) rc = tele_decoder_finish(d, b);
    if (rc != 0) {
        int oom = 0;
        const char *why = tele_decoder_error(d, &oom);
        FUZZ_CHECK(why && why[0], "the streaming decoder failed without a reason");
        FUZZ_CHECK(!oom, "out of memory reported for a fuzz input: %s", why);
        snprintf(err, errlen, "%s", why);
    }
    tele_decoder_free(d);
    return rc;
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_num(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

/* JSON text without the bytes <= 0x20 outside strings. */
static void compact(const char *p, size_t n, buf_t *out)
{
    int in_str = 0, esc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c <= 0x20) {
            continue;
        }
        if (buf_putc(out, (char)c) != 0) abort();
    }
}

static void check_batches_equal(const tele_batch_t *a, const tele_batch_t *b)
{
    FUZZ_CHECK(a->n == b->n && strcmp(a->stream, b->stream) == 0 && a->seq_usable == b->seq_usable &&
                   a->retry_count == b->retry_count && strcmp(a->stream_desc, b->stream_desc) == 0,
               "chunked: %zu events of '%s', whole: %zu of '%s'", b->n, b->stream_desc, a->n, a->stream_desc);
    for (size_t i = 0; i < a->n; i++) {
        const tele_event_t *x = &a->ev[i], *y = &b->ev[i];
        const tele_reading_t *p = &x->reading, *q = &y->reading;
        FUZZ_CHECK(same_str(x->device_id, y->device_id) && same_str(x->system_device_id, y->system_device_id) &&
                       x->spoofed == y->spoofed && x->rejected == y->rejected &&
                       same_str(x->reject_reason, y->reject_reason) && x->has_seq == y->has_seq &&
                       (!x->has_seq || x->seq == y->seq) && strcmp(x->enqueued, y->enqueued) == 0,
                   "event %zu differs when chunked: id '%s'/'%s', rejected %d/%d", i, y->device_id, x->device_id,
                   y->rejected, x->rejected);
        FUZZ_CHECK(p->has == q->has && same_num(p->temperature, q->temperature) && same_num(p->humidity, q->humidity) &&
                       same_num(p->pressure, q->pressure) && same_num(p->light, q->light) &&
                       same_str(p->geo, q->geo) && same_str(p->message_id, q->message_id) &&
                       same_str(p->claimed_device_id, q->claimed_device_id) && p->claimed_bad == q->claimed_bad &&
                       p->invalid == q->invalid && strcmp(p->reason, q->reason) == 0,
                   "event %zu: reading differs when chunked ('%s' / '%s')", i, q->reason, p->reason);
        /* a decoded-form body (an object element) is its raw JSON text, which loses the
         * whitespace between tokens that ends a chunk (jstream reports no raw bytes for a
         * chunk of only whitespace): the same text once that whitespace is dropped */
        if (x->raw_len == x->raw_total && y->raw_len == y->raw_total) {
            buf_t cx = BUF_INIT, cy = BUF_INIT;
            compact(x->raw, x->raw_len, &cx);
            compact(y->raw, y->raw_len, &cy);
            FUZZ_CHECK(cx.len == cy.len && (!cx.len || memcmp(cx.data, cy.data, cx.len) == 0),
                       "event %zu: kept body differs when chunked: %.200s / %.200s", i, cy.data, cx.data);
            buf_free(&cx);
            buf_free(&cy);
        }
    }
}

static void check_batch(tele_batch_t *b)
{
    FUZZ_CHECK(strlen(b->stream) == 16, "stream id '%s'", b->stream);
    for (size_t i = 0; i < b->n; i++) {
        check_event(b, &b->ev[i], i);
        FUZZ_CHECK(b->ev[i].raw_len <= TELE_RAW_KEEP && b->ev[i].raw_len <= b->ev[i].raw_total,
                   "event %zu keeps %zu of %zu bytes", i, b->ev[i].raw_len, b->ev[i].raw_total);
    }
    if (b->n <= MAX_FOLD_EVENTS) fold_devices(b);
}

/* The handler's path: the raw body streamed. */
static void check_streaming(const uint8_t *data, size_t size, int json_ok)
{
    tele_batch_t whole, split;
    char err1[512] = "", err2[512] = "";
    int rc1 = stream_decode(data, size, 0, &whole, err1, sizeof err1);
    int rc2 = stream_decode(data, size, 1, &split, err2, sizeof err2);
    FUZZ_CHECK(rc1 == rc2, "chunked: %d (%s), whole: %d (%s)", rc2, err2, rc1, err1);
    if (rc1 == 0) {
        FUZZ_CHECK(json_ok, "the streaming decoder accepts a body cJSON refuses");
        check_batches_equal(&whole, &split);
        check_batch(&whole);
    }
    /* a refusal's reason may differ: a body that is broken both in Data.events' string and in
     * that string's JSON content is refused for whichever the chunks reveal first */
    tele_batch_free(&whole);
    tele_batch_free(&split);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = (char *)fuzz_memdup(data, size);
    const char *end = NULL;
    cJSON *req = cJSON_ParseWithLengthOpts(body, size, &end, 0);
    int json_ok = req != NULL;
    for (const char *p = end; req && p < body + size; p++)
        if ((unsigned char)*p > 0x20) json_ok = 0;
    free(body);
    check_streaming(data, size, json_ok);
    if (!req) return 0;
    invocation_t inv;
    char err[512];
    if (inv_init(&inv, "EventTrigger", "fuzz", req, err, sizeof err) != 0) {
        inv_free(&inv);
        return 0;
    }
    const cJSON *events = cJSON_GetObjectItem(inv.data, "events");
    tele_batch_t b;
    if (tele_batch_decode(&b, events, inv.metadata, err, sizeof err) == 0) {
        check_batch(&b);
    } else {
        FUZZ_CHECK(err[0], "decode failed without a reason");
    }
    tele_batch_free(&b);
    inv_free(&inv);
    return 0;
}
