/* event_body.c — streaming reduction of one event body to a reading (see event_body.h).
 *
 * The body's text goes through a jchain of three levels (the body, then the content of a
 * string body, then one more). The first event of a level is that level's top-level value;
 * only an object's depth-1 members named in tele_field_names are captured (jcap) and turned
 * into a small cJSON object for tele_normalise. */
#include "telemetry/event_body.h"

#include "util/jstream.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_LEVELS 3   /* the body + two string wrappings undone */

struct event_body {
    jchain_t           chain;
    int                top_level;      /* level whose top-level value is being read, -1: none yet */
    char               kind;           /* its first byte: { [ " 0 t f n */
    int                outer_failed;   /* the body itself is not JSON */
    int                inner_failed;   /* a string body's content is not JSON */
    int                oom;
    int                want;           /* tele_field_names index being captured, -1: none */
    unsigned long long seen;           /* bit per tele_field_names index */
    jcap_t             cap;
    buf_t              capbuf;
    cJSON             *obj;            /* the members normalise reads */
    buf_t              raw;
    size_t             raw_total;
};

const char *json_kind_name(char first)
{
    switch (first) {
    case '{': return "a JSON object";
    case '[': return "a JSON array";
    case '"': return "a JSON string";
    case 't': case 'f': return "a JSON boolean";
    case 'n': return "JSON null";
    default: return "a JSON number";
    }
}

static int field_index(const char *key, size_t len, int truncated)
{
    if (truncated) return -1;
    for (int i = 0; tele_field_names[i]; i++)
        if (strlen(tele_field_names[i]) == len && memcmp(tele_field_names[i], key, len) == 0) return i;
    return -1;
}

static char kind_of(js_event_t ev)
{
    switch (ev) {
    case JS_OBJ_BEGIN: return '{';
    case JS_ARR_BEGIN: return '[';
    case JS_STR_BEGIN: return '"';
    case JS_TRUE: return 't';
    case JS_FALSE: return 'f';
    case JS_NULL: return 'n';
    default: return '0';
    }
}

/* The captured JSON text of member `want` as the cJSON value normalise sees. */
static cJSON *member_value(event_body_t *eb)
{
    const char *text = eb->capbuf.data ? eb->capbuf.data : "";
    switch (eb->cap.first) {
    case '{': return cJSON_CreateObject();   /* only the type matters to normalise */
    case '[': return cJSON_CreateArray();
    case 't': return cJSON_CreateTrue();
    case 'f': return cJSON_CreateFalse();
    case 'n': return cJSON_CreateNull();
    case '"': {
        if (eb->cap.truncated) return cJSON_CreateRaw("longer than 65536 bytes of JSON text");
        buf_t s = BUF_INIT;
        cJSON *v;
        if (json_string_decode(text, eb->capbuf.len, &s) != 0) v = NULL;
        else if (memchr(s.data ? s.data : "", 0, s.len)) v = cJSON_CreateRaw("contains a NUL character");
        else v = cJSON_CreateString(s.data ? s.data : "");
        buf_free(&s);
        return v;
    }
    default:
        if (eb->cap.truncated) return cJSON_CreateRaw("not a number (longer than 65536 digits)");
        /* strtod, not cJSON: it reads any number of digits (cJSON stops after 63) */
        return cJSON_CreateNumber(strtod(text, NULL));
    }
}

static int on_level(void *arg, int level, js_event_t ev, jstream_t *js)
{
    event_body_t *eb = arg;
    if (ev == JS_ERROR) {
        if (level == 0) eb->outer_failed = 1;
        else eb->inner_failed = 1;
        return 0;
    }
    if (ev == JS_DONE) return 0;
    if (ev != JS_NEED_MORE && level != eb->top_level) {
        /* the top-level value of a new level (a string announced here is unwrapped next) */
        eb->top_level = level;
        eb->kind = kind_of(ev);
        if (eb->kind == '{') {
            cJSON_Delete(eb->obj);
            eb->obj = cJSON_CreateObject();
            eb->seen = 0;
            eb->want = -1;
            eb->cap.active = 0;
            if (!eb->obj) eb->oom = 1;
        }
        return 0;
    }
    if (level != eb->top_level || eb->kind != '{' || !eb->obj) return 0;
    if (eb->cap.active) {
        if (jcap_feed(&eb->cap, ev, js) == 1) {
            cJSON *v = member_value(eb);
            if (!v) eb->oom = 1;
            else cJSON_AddItemToObjectCS(eb->obj, tele_field_names[eb->want], v);
            eb->want = -1;
        }
        return 0;
    }
    if (ev == JS_KEY && jstream_depth(js) == 1) {
        int i = field_index(js->key, js->key_len, js->key_truncated);
        if (i >= 0 && !(eb->seen & (1ULL << i))) {
            eb->seen |= 1ULL << i;
            eb->want = i;
            buf_reset(&eb->capbuf);
            jcap_begin(&eb->cap, &eb->capbuf, EVENT_MEMBER_MAX, js);
        }
    }
    return 0;
}

event_body_t *event_body_new(void)
{
    event_body_t *eb = calloc(1, sizeof *eb);
    if (eb) event_body_begin(eb);
    return eb;
}

void event_body_free(event_body_t *eb)
{
    if (!eb) return;
    cJSON_Delete(eb->obj);
    buf_free(&eb->capbuf);
    buf_free(&eb->raw);
    free(eb);
}

void event_body_begin(event_body_t *eb)
{
    jchain_init(&eb->chain, BODY_LEVELS, on_level, eb);
    eb->top_level = -1;
    eb->kind = 0;
    eb->outer_failed = eb->inner_failed = eb->oom = 0;
    eb->want = -1;
    eb->seen = 0;
    eb->cap.active = 0;
    cJSON_Delete(eb->obj);
    eb->obj = NULL;
    buf_reset(&eb->raw);
    eb->raw.oom = 0;
    eb->capbuf.oom = 0;
    eb->raw_total = 0;
}

int event_body_data(event_body_t *eb, const char *p, size_t n)
{
    eb->raw_total += n;
    if (eb->raw.len < TELE_RAW_KEEP) {
        size_t keep = TELE_RAW_KEEP - eb->raw.len < n ? TELE_RAW_KEEP - eb->raw.len : n;
        if (buf_append(&eb->raw, p, keep) != 0) return -1;
    }
    jchain_feed(&eb->chain, p, n);
    return eb->oom || eb->capbuf.oom ? -1 : 0;
}

int event_body_end(event_body_t *eb, tele_reading_t *r, char *why, size_t whylen, const char **id_kind)
{
    jchain_end(&eb->chain);
    if (id_kind) *id_kind = NULL;
    if (eb->oom || eb->capbuf.oom) return -1;
    memset(r, 0, sizeof *r);
    if (eb->outer_failed || eb->top_level < 0) {
        snprintf(why, whylen, "event body is not JSON");
        return 0;
    }
    char kind = eb->inner_failed ? '"' : eb->kind;
    if (kind != '{' || !eb->obj) {
        snprintf(why, whylen, "event body is %s, expected an object", json_kind_name(kind));
        return 0;
    }
    tele_normalise(eb->obj, r);
    if (id_kind && !r->claimed_device_id && !r->claimed_bad) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(eb->obj, "deviceId");
        if (!d || cJSON_IsNull(d)) d = cJSON_GetObjectItemCaseSensitive(eb->obj, "DeviceId");
        if (d && !cJSON_IsNull(d) && !cJSON_IsString(d))
            *id_kind = json_kind_name(cJSON_IsNumber(d) ? '0' : cJSON_IsBool(d) ? 't' : cJSON_IsArray(d) ? '[' : '{');
    }
    return 1;
}

const char *event_body_raw(const event_body_t *eb, size_t *kept, size_t *total)
{
    *kept = eb->raw.len;
    *total = eb->raw_total;
    return eb->raw.data ? eb->raw.data : "";
}
