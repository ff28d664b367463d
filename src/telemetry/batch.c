/* batch.c — EventTrigger batch decoding as the body streams in (see batch.h).
 *
 * Three readers share one decoder: the envelope ({"Data":{"events":...},"Metadata":{...}},
 * read by a jstream over the request bytes), the events array (a jchain fed with the decoded
 * content of Data.events, or with its raw JSON text when it is not a string) and the system
 * properties array (likewise). Each events element goes to event_body as it streams, and is
 * reduced to a compact record before the next one is read; each system properties element
 * keeps only the few members used. The small metadata values (PartitionContext, sequence
 * numbers, enqueued times, RetryContext) are captured as JSON text and read at the end, when
 * events and metadata are matched by index and each event gets its device id. */
#include "telemetry/batch.h"

#include "protocol/invocation.h"
#include "telemetry/device_id.h"
#include "telemetry/event_body.h"
#include "util/jstream.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define META_SMALL_CAP  (64u * 1024u)          /* PartitionContext, RetryContext */
#define META_ARRAY_CAP  (4u * 1024u * 1024u)   /* SequenceNumberArray, EnqueuedTimeUtcArray */
#define MEMBER_TEXT_CAP (64u * 1024u * 1024u)  /* Data/Metadata sent as a string (never by the host) */

/* ---- arena: the strings events point to ----------------------------------------------------- */

typedef struct ablock {
    struct ablock *next;
    size_t         used, cap;
    char           data[];
} ablock_t;

struct tele_arena {
    ablock_t *head;
};

static void arena_free(struct tele_arena *a)
{
    if (!a) return;
    for (ablock_t *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    free(a);
}

/* A NUL-terminated copy of s[0..n), or NULL when out of memory. */
static char *arena_dup(struct tele_arena *a, const char *s, size_t n)
{
    ablock_t *b = a->head;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > 60000 ? n + 1 : 60000;
        ablock_t *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->used = 0;
        nb->cap = cap;
        /* a big string gets its own block behind the current one, which keeps filling */
        if (b && n + 1 > 60000) { nb->next = b->next; b->next = nb; }
        else { nb->next = b; a->head = nb; }
        b = nb;
    }
    char *p = b->data + b->used;
    memcpy(p, s, n);
    p[n] = '\0';
    b->used += n + 1;
    return p;
}

/* ---- decoder state ------------------------------------------------------------------------- */

enum { M_NONE, M_DATA, M_META, M_OTHER };
enum { V_NONE, V_EVENTS, V_SYS, V_PC, V_SEQ, V_TIMES, V_RETRY };

/* What the envelope reader is doing; a fresh one reads Data/Metadata sent as strings. */
typedef struct env {
    jstream_t js;
    int       started;
    int       member;       /* M_*: the depth-1 member whose value comes next or is open */
    int       expect;       /* the next value event starts that value */
    int       in;           /* M_DATA / M_META while inside that object */
    int       value;        /* V_*: the depth-2 member whose value comes next */
    int       value_expect;
    int       collect;      /* M_DATA / M_META: its string's content is being collected */
    int       route;        /* V_EVENTS / V_SYS: string content goes to that chain */
    int       fwd;          /* V_EVENTS / V_SYS: raw JSON text of the value goes to that chain */
    int       fwd_started, fwd_base;
    jcap_t    cap;
    int       cap_target;   /* V_PC ... while capturing */
    int       nested;       /* re-reading a member sent as a string: no more strings */
    int       done;
} env_t;

typedef struct sys_rec {
    const char *device_id;   /* iothub-connection-device-id (arena) or NULL */
    const char *id_bad;      /* why it cannot be used, or NULL */
    int         has_seq1, has_seq2;
    int64_t     seq1, seq2;  /* SequenceNumber, x-opt-sequence-number */
    char        t1[TELE_TIME_LEN], t2[TELE_TIME_LEN];   /* EnqueuedTimeUtc, iothub-enqueuedtime */
} sys_rec_t;

typedef struct rec {
    tele_event_t ev;
    const char  *body_error;   /* the body is unusable: why (arena) */
    const char  *id_kind;      /* a deviceId member of the wrong JSON kind */
} rec_t;

struct tele_decoder {
    env_t              env;
    struct tele_arena *arena;
    int                failed, oom;
    char               error[320];
    int                data_seen, meta_seen, events_seen, sys_seen;
    int                seen_pc, seen_seq, seen_times, seen_retry;
    buf_t              data_text, meta_text;   /* Data / Metadata sent as strings */
    int                data_text_set, meta_text_set;
    buf_t              pc_text, seq_text, times_text, retry_text;
    /* the events array */
    jchain_t           events;
    int                ev_level, ev_single, ev_el;   /* ev_el: 0 between elements, 1 string, 2 raw */
    int                ev_el_started;
    event_body_t      *body;
    rec_t             *recs;
    size_t             n, cap;
    /* the system properties array */
    jchain_t           sys;
    int                sys_level, sys_el, sys_bad, sys_want;
    unsigned           sys_seen_mask;
    jcap_t             sys_cap;
    buf_t              sys_capbuf;
    sys_rec_t         *sysr;
    size_t             nsys, capsys;
    size_t             raw_budget;    /* raw body bytes the batch may still keep */
};

static int fail_msg(tele_decoder_t *d, const char *fmt, const char *a) __attribute__((format(printf, 2, 0)));
static int fail_msg(tele_decoder_t *d, const char *fmt, const char *a)
{
    if (!d->failed) {
        d->failed = 1;
        snprintf(d->error, sizeof d->error, fmt, a ? a : "");
    }
    return -1;
}

static int fail_oom(tele_decoder_t *d)
{
    d->oom = 1;
    return fail_msg(d, "out of memory decoding the batch%s", "");
}

const char *tele_decoder_error(const tele_decoder_t *d, int *oom)
{
    if (oom) *oom = d->oom;
    return d->error;
}

static int key_is(const jstream_t *js, const char *name)
{
    return !js->key_truncated && strlen(name) == js->key_len && strncasecmp(js->key, name, js->key_len) == 0 &&
           !memchr(js->key, 0, js->key_len);
}

/* Raw JSON text of the current event, without the separator that may lead it. */
static void raw_text(const jstream_t *js, int *started, const char **p, size_t *n)
{
    *p = js->raw;
    *n = js->raw_len;
    if (!*started) {
        while (*n && ((unsigned char)**p <= 0x20 || **p == ',' || **p == ':')) { (*p)++; (*n)--; }
        if (*n) *started = 1;
    }
}

/* ---- events -------------------------------------------------------------------------------- */

static int event_begin(tele_decoder_t *d)
{
    if (d->n >= TELE_MAX_EVENTS) {
        char lim[64];
        snprintf(lim, sizeof lim, "%d", TELE_MAX_EVENTS);
        return fail_msg(d, "Data.events holds more than %s events; at most that many are accepted per "
                           "invocation (the Event Hubs trigger sends at most host.json's maxEventBatchSize)", lim);
    }
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 64;
        rec_t *r = realloc(d->recs, ncap * sizeof *r);
        if (!r) return fail_oom(d);
        d->recs = r;
        d->cap = ncap;
    }
    event_body_begin(d->body);
    return 0;
}

static int event_data(tele_decoder_t *d, const char *p, size_t n)
{
    return event_body_data(d->body, p, n) == 0 ? 0 : fail_oom(d);
}

static const char *adup(tele_decoder_t *d, const char *s)
{
    if (!s) return NULL;
    char *c = arena_dup(d->arena, s, strlen(s));
    if (!c) fail_oom(d);
    return c;
}

static int event_end(tele_decoder_t *d)
{
    rec_t *r = &d->recs[d->n];
    memset(r, 0, sizeof *r);
    char why[160];
    int rc = event_body_end(d->body, &r->ev.reading, why, sizeof why, &r->id_kind);
    if (rc < 0) return fail_oom(d);
    tele_reading_t *rd = &r->ev.reading;
    if (rc == 0) {
        r->body_error = adup(d, why);
    } else {
        /* the reading's strings live in the body reader: copy the ones kept */
        rd->geo = adup(d, rd->geo);
        rd->message_id = adup(d, rd->message_id);
        rd->claimed_device_id = adup(d, rd->claimed_device_id);
    }
    size_t kept, total;
    const char *raw = event_body_raw(d->body, &kept, &total);
    if (kept > d->raw_budget) kept = d->raw_budget;   /* a non-host batch of thousands of big events */
    d->raw_budget -= kept;
    r->ev.raw = arena_dup(d->arena, raw, kept);
    r->ev.raw_len = kept;
    r->ev.raw_total = total;
    if (!r->ev.raw || d->oom) return fail_oom(d);
    d->n++;
    return 0;
}

/* A scalar element (decoded form): its text is its body. */
static int event_scalar(tele_decoder_t *d, js_event_t ev, const jstream_t *js)
{
    const char *text = ev == JS_TRUE ? "true" : ev == JS_FALSE ? "false" : ev == JS_NULL ? "null" : js->scalar;
    if (event_begin(d) != 0 || event_data(d, text, strlen(text)) != 0) return -1;
    return event_end(d);
}

static int on_events(void *arg, int level, js_event_t ev, jstream_t *js)
{
    tele_decoder_t *d = arg;
    if (d->failed) return -1;
    if (ev == JS_ERROR) return fail_msg(d, "Data.events is a JSON string that does not hold a JSON array of "
                                           "event bodies: %s", js->error);
    if (ev == JS_DONE) return 0;
    int depth = jstream_depth(js);
    if (d->ev_level < 0 || level != d->ev_level) {
        if (ev == JS_NEED_MORE) return 0;
        switch (ev) {
        case JS_STR_BEGIN:
            if (level + 1 < JCHAIN_MAX) return 0;   /* a string holding JSON: unwrapped next */
            break;
        case JS_ARR_BEGIN:
            d->ev_level = level;
            return 0;
        case JS_NULL:
            d->ev_level = level;
            return 0;
        case JS_OBJ_BEGIN: {   /* a single event */
            d->ev_level = level;
            d->ev_single = 1;
            if (event_begin(d) != 0) return -1;
            d->ev_el = 2;
            d->ev_el_started = 1;
            return event_data(d, js->raw, js->raw_len);
        }
        default:
            break;
        }
        return fail_msg(d, "Data.events is %s; expected a JSON array of event bodies (function.json: "
                           "cardinality many, dataType string)", json_kind_name(ev == JS_STR_BEGIN ? '"' :
                           ev == JS_TRUE || ev == JS_FALSE ? 't' : '0'));
    }
    if (d->ev_el == 1) {   /* a string element: its content is the body */
        if (ev == JS_STR_CHUNK) return event_data(d, js->chunk, js->chunk_len);
        if (ev == JS_STR_END) {
            d->ev_el = 0;
            return event_end(d);
        }
        return 0;
    }
    if (d->ev_el == 2) {   /* a container element: its JSON text is the body */
        const char *p;
        size_t n;
        raw_text(js, &d->ev_el_started, &p, &n);
        if (n && event_data(d, p, n) != 0) return -1;
        if ((ev == JS_OBJ_END || ev == JS_ARR_END) && depth == (d->ev_single ? 0 : 1)) {
            d->ev_el = 0;
            return event_end(d);
        }
        return 0;
    }
    if (ev == JS_NEED_MORE || ev == JS_ARR_END) return 0;
    if (ev == JS_STR_BEGIN) {
        if (event_begin(d) != 0) return -1;
        d->ev_el = 1;
        return 0;
    }
    if (ev == JS_OBJ_BEGIN || ev == JS_ARR_BEGIN) {
        if (event_begin(d) != 0) return -1;
        d->ev_el = 2;
        d->ev_el_started = 0;
        const char *p;
        size_t n;
        raw_text(js, &d->ev_el_started, &p, &n);
        return event_data(d, p, n);
    }
    return event_scalar(d, ev, js);
}

/* ---- system properties --------------------------------------------------------------------- */

static const char *const sys_names[] = {"iothub-connection-device-id", "SequenceNumber", "x-opt-sequence-number",
                                        "EnqueuedTimeUtc", "iothub-enqueuedtime", NULL};

static void sys_value(tele_decoder_t *d, sys_rec_t *r, int which)
{
    const char *text = d->sys_capbuf.data ? d->sys_capbuf.data : "";
    if (which == 1 || which == 2) {
        int64_t v;
        if (d->sys_cap.first != '"' && !d->sys_cap.truncated && tele_seq_from_text(text, &v)) {
            if (which == 1) { r->seq1 = v; r->has_seq1 = 1; }
            else { r->seq2 = v; r->has_seq2 = 1; }
        }
        return;
    }
    if (d->sys_cap.first != '"') return;   /* only strings count */
    if (d->sys_cap.truncated) {
        if (which == 0) r->id_bad = "is longer than 65536 bytes of JSON text";
        return;
    }
    buf_t s = BUF_INIT;
    if (json_string_decode(text, d->sys_capbuf.len, &s) != 0) { buf_free(&s); fail_oom(d); return; }
    const char *v = s.data ? s.data : "";
    if (which == 0) {
        if (memchr(v, 0, s.len)) r->id_bad = "contains a NUL character";
        else if (!(r->device_id = arena_dup(d->arena, v, s.len))) fail_oom(d);
    } else if (!memchr(v, 0, s.len)) {
        if (tele_time_normalise(v, which == 3 ? r->t1 : r->t2) != 0) (which == 3 ? r->t1 : r->t2)[0] = '\0';
    }
    buf_free(&s);
}

static int on_sys(void *arg, int level, js_event_t ev, jstream_t *js)
{
    tele_decoder_t *d = arg;
    if (d->failed) return -1;
    if (ev == JS_ERROR) { d->sys_bad = 1; return 0; }   /* not an array: as if absent */
    if (ev == JS_DONE || d->sys_bad) return 0;
    int depth = jstream_depth(js);
    if (d->sys_level < 0 || level != d->sys_level) {
        if (ev == JS_NEED_MORE) return 0;
        if (ev == JS_ARR_BEGIN) d->sys_level = level;
        else if (!(ev == JS_STR_BEGIN && level + 1 < JCHAIN_MAX)) d->sys_bad = 1;
        return 0;
    }
    if (d->sys_cap.active) {
        if (jcap_feed(&d->sys_cap, ev, js) == 1 && d->nsys > 0) sys_value(d, &d->sysr[d->nsys - 1], d->sys_want);
        return d->oom ? -1 : 0;
    }
    if (ev == JS_NEED_MORE) return 0;
    if (d->sys_el) {   /* inside an element: 1 an object, 2 something else */
        if (d->sys_el == 1 && ev == JS_KEY && depth == 2) {
            for (int i = 0; sys_names[i]; i++) {
                if (!js->key_truncated && strlen(sys_names[i]) == js->key_len &&
                    memcmp(sys_names[i], js->key, js->key_len) == 0 && !(d->sys_seen_mask & (1u << i))) {
                    d->sys_seen_mask |= 1u << i;
                    d->sys_want = i;
                    buf_reset(&d->sys_capbuf);
                    jcap_begin(&d->sys_cap, &d->sys_capbuf, EVENT_MEMBER_MAX, js);
                }
            }
        }
        if ((ev == JS_OBJ_END || ev == JS_ARR_END || ev == JS_STR_END) && depth == 1) d->sys_el = 0;
        return 0;
    }
    if (ev == JS_ARR_END) return 0;
    /* an element starts: one record per element, whatever it is */
    if (d->nsys < TELE_MAX_EVENTS) {
        if (d->nsys == d->capsys) {
            size_t ncap = d->capsys ? d->capsys * 2 : 64;
            sys_rec_t *r = realloc(d->sysr, ncap * sizeof *r);
            if (!r) return fail_oom(d);
            d->sysr = r;
            d->capsys = ncap;
        }
        memset(&d->sysr[d->nsys++], 0, sizeof d->sysr[0]);
    }
    d->sys_seen_mask = 0;
    if (ev == JS_OBJ_BEGIN) d->sys_el = 1;
    else if (ev == JS_ARR_BEGIN || ev == JS_STR_BEGIN) d->sys_el = 2;
    return 0;
}

/* ---- the envelope -------------------------------------------------------------------------- */

static jchain_t *chain_of(tele_decoder_t *d, int v)
{
    return v == V_EVENTS ? &d->events : &d->sys;
}

static int chain_start(tele_decoder_t *d, int v)
{
    if (v == V_EVENTS) {
        jchain_init(&d->events, JCHAIN_MAX, on_events, d);
        d->ev_level = -1;
    } else {
        jchain_init(&d->sys, JCHAIN_MAX, on_sys, d);
        d->sys_level = -1;
    }
    return 0;
}

static int chain_feed(tele_decoder_t *d, int v, const char *p, size_t n)
{
    if (jchain_feed(chain_of(d, v), p, n) != 0 || d->failed) return -1;
    return 0;
}

static int chain_end(tele_decoder_t *d, int v)
{
    if (jchain_end(chain_of(d, v)) != 0 || d->failed) return -1;
    if (v == V_EVENTS && d->ev_el) return fail_msg(d, "Data.events ended inside an event%s", "");
    return 0;
}

static buf_t *capture_buf(tele_decoder_t *d, int v)
{
    switch (v) {
    case V_PC: return &d->pc_text;
    case V_SEQ: return &d->seq_text;
    case V_TIMES: return &d->times_text;
    default: return &d->retry_text;
    }
}

/* The value of a Metadata member: which V_* it feeds (first occurrence only), or V_NONE. */
static int meta_member(tele_decoder_t *d, const jstream_t *js)
{
    struct { const char *name; int v; int *seen; } m[] = {
        {"SystemPropertiesArray", V_SYS, &d->sys_seen}, {"PartitionContext", V_PC, &d->seen_pc},
        {"SequenceNumberArray", V_SEQ, &d->seen_seq}, {"EnqueuedTimeUtcArray", V_TIMES, &d->seen_times},
        {"RetryContext", V_RETRY, &d->seen_retry},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        if (key_is(js, m[i].name)) {
            if (*m[i].seen) return V_NONE;
            *m[i].seen = 1;
            return m[i].v;
        }
    }
    return V_NONE;
}

static int value_kind_error(tele_decoder_t *d, const char *member, js_event_t ev)
{
    char msg[160];
    snprintf(msg, sizeof msg, "\"%s\" must be a JSON object, not %%s", member);
    return fail_msg(d, msg, json_kind_name(ev == JS_ARR_BEGIN ? '[' : ev == JS_TRUE || ev == JS_FALSE ? 't' : '0'));
}

static int env_event(tele_decoder_t *d, env_t *e, js_event_t ev)
{
    jstream_t *js = &e->js;
    int depth = jstream_depth(js);
    if (ev == JS_ERROR) return fail_msg(d, "%s", js->error);
    if (e->cap.active) {
        int r = jcap_feed(&e->cap, ev, js);
        if (r == 1 && e->cap.truncated)
            return fail_msg(d, "a Metadata value is larger than the handler reads (%s)", "PartitionContext, "
                            "SequenceNumberArray, EnqueuedTimeUtcArray or RetryContext");
        return capture_buf(d, e->cap_target)->oom ? fail_oom(d) : 0;
    }
    if (e->fwd) {
        const char *p;
        size_t n;
        raw_text(js, &e->fwd_started, &p, &n);
        if (n && chain_feed(d, e->fwd, p, n) != 0) return -1;
        if ((ev == JS_OBJ_END || ev == JS_ARR_END) && depth == e->fwd_base) {
            int v = e->fwd;
            e->fwd = 0;
            return chain_end(d, v);
        }
        return 0;
    }
    if (e->route) {
        if (ev == JS_STR_CHUNK) return chain_feed(d, e->route, js->chunk, js->chunk_len);
        if (ev == JS_STR_END) {
            int v = e->route;
            e->route = 0;
            return chain_end(d, v);
        }
        return 0;
    }
    if (e->collect) {
        buf_t *t = e->collect == M_DATA ? &d->data_text : &d->meta_text;
        if (ev == JS_STR_CHUNK) {
            if (t->len + js->chunk_len > MEMBER_TEXT_CAP) return fail_msg(d, "Data or Metadata sent as a string is too large%s", "");
            return buf_append(t, js->chunk, js->chunk_len) == 0 ? 0 : fail_oom(d);
        }
        if (ev == JS_STR_END) e->collect = 0;
        return 0;
    }
    if (ev == JS_DONE) e->done = 1;
    if (ev == JS_NEED_MORE || ev == JS_DONE) return 0;
    if (!e->started) {
        e->started = 1;
        if (ev != JS_OBJ_BEGIN)
            return fail_msg(d, "the request body must be a JSON object {\"Data\":{...},\"Metadata\":{...}}, not %s",
                            json_kind_name(ev == JS_ARR_BEGIN ? '[' : ev == JS_STR_BEGIN ? '"' :
                                           ev == JS_TRUE || ev == JS_FALSE ? 't' : ev == JS_NULL ? 'n' : '0'));
        return 0;
    }
    if (e->expect) {   /* the value of a top-level member */
        e->expect = 0;
        if (e->member != M_DATA && e->member != M_META) return 0;
        const char *name = e->member == M_DATA ? "Data" : "Metadata";
        if (ev == JS_OBJ_BEGIN) { e->in = e->member; return 0; }
        if (ev == JS_NULL) return 0;
        if (ev == JS_STR_BEGIN && !e->nested) {
            e->collect = e->member;
            if (e->member == M_DATA) d->data_text_set = 1;
            else d->meta_text_set = 1;
            return 0;
        }
        return value_kind_error(d, name, ev);
    }
    if (e->value_expect) {   /* the value of a member of Data or Metadata */
        e->value_expect = 0;
        int v = e->value;
        e->value = V_NONE;
        if (v == V_EVENTS || v == V_SYS) {
            if (ev == JS_NULL) return 0;
            if (ev == JS_STR_BEGIN) {
                chain_start(d, v);
                e->route = v;
                return 0;
            }
            if (ev == JS_OBJ_BEGIN || ev == JS_ARR_BEGIN) {
                chain_start(d, v);
                e->fwd = v;
                e->fwd_started = 0;
                e->fwd_base = depth - 1;
                const char *p;
                size_t n;
                raw_text(js, &e->fwd_started, &p, &n);
                return chain_feed(d, v, p, n);
            }
            if (v == V_EVENTS)
                return fail_msg(d, "Data.events is %s; expected a JSON array of event bodies (function.json: "
                                   "cardinality many, dataType string)",
                                json_kind_name(ev == JS_TRUE || ev == JS_FALSE ? 't' : '0'));
            return 0;
        }
        return 0;
    }
    if (ev == JS_KEY && depth == 1) {
        e->in = M_NONE;
        e->expect = 1;
        e->member = M_OTHER;
        if (key_is(js, "Data") && !d->data_seen) { d->data_seen = 1; e->member = M_DATA; }
        else if (key_is(js, "Metadata") && !d->meta_seen) { d->meta_seen = 1; e->member = M_META; }
        return 0;
    }
    if (ev == JS_OBJ_END && depth == 1) { e->in = M_NONE; return 0; }
    if (ev == JS_KEY && depth == 2 && e->in == M_DATA) {
        if (key_is(js, "events") && !d->events_seen) {
            d->events_seen = 1;
            e->value = V_EVENTS;
            e->value_expect = 1;
        }
        return 0;
    }
    if (ev == JS_KEY && depth == 2 && e->in == M_META) {
        int v = meta_member(d, js);
        if (v == V_SYS) { e->value = v; e->value_expect = 1; }
        else if (v != V_NONE) {
            e->cap_target = v;
            jcap_begin(&e->cap, capture_buf(d, v), v == V_SEQ || v == V_TIMES ? META_ARRAY_CAP : META_SMALL_CAP, js);
        }
        return 0;
    }
    return 0;
}

static int env_feed(tele_decoder_t *d, env_t *e, const char *p, size_t n)
{
    jstream_feed(&e->js, p, n);
    for (;;) {
        js_event_t ev = jstream_next(&e->js);
        if (env_event(d, e, ev) != 0) return -1;
        if (ev == JS_NEED_MORE || ev == JS_DONE) return 0;
    }
}

static void env_init(env_t *e)
{
    memset(e, 0, sizeof *e);
    jstream_init(&e->js);
}

tele_decoder_t *tele_decoder_new(void)
{
    tele_decoder_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->arena = calloc(1, sizeof *d->arena);
    d->body = event_body_new();
    if (!d->arena || !d->body) {
        tele_decoder_free(d);
        return NULL;
    }
    env_init(&d->env);
    d->ev_level = d->sys_level = -1;
    d->raw_budget = TELE_RAW_BUDGET;
    return d;
}

void tele_decoder_free(tele_decoder_t *d)
{
    if (!d) return;
    arena_free(d->arena);
    event_body_free(d->body);
    free(d->recs);
    free(d->sysr);
    buf_free(&d->data_text);
    buf_free(&d->meta_text);
    buf_free(&d->pc_text);
    buf_free(&d->seq_text);
    buf_free(&d->times_text);
    buf_free(&d->retry_text);
    buf_free(&d->sys_capbuf);
    free(d);
}

int tele_decoder_feed(tele_decoder_t *d, const char *p, size_t n)
{
    if (d->failed) return -1;
    return env_feed(d, &d->env, p, n);
}

/* Read Data or Metadata that was sent as a string holding JSON, as if it had been inline. */
static int reread_member(tele_decoder_t *d, const char *name, buf_t *text)
{
    env_t *e = malloc(sizeof *e);
    if (!e) return fail_oom(d);
    env_init(e);
    e->nested = 1;
    if (name[0] == 'D') d->data_seen = 0;
    else d->meta_seen = 0;
    char head[32];
    snprintf(head, sizeof head, "{\"%s\":", name);
    int rc = env_feed(d, e, head, strlen(head));
    if (rc == 0) rc = env_feed(d, e, text->data ? text->data : "null", text->data ? text->len : 4);
    if (rc == 0) rc = env_feed(d, e, "}", 1);
    if (rc == 0) {
        jstream_end(&e->js);
        rc = env_feed(d, e, "", 0);
    }
    free(e);
    return rc;
}

/* ---- the end: metadata, device ids ---------------------------------------------------------- */

/* The captured JSON text of a Metadata value, unwrapped (a string holding JSON), or NULL. */
static cJSON *meta_value(const buf_t *text)
{
    if (!text->len) return NULL;
    cJSON *raw = cJSON_ParseWithLength(text->data, text->len);
    if (!raw) return NULL;
    cJSON *v = json_unwrap(raw);
    cJSON_Delete(raw);
    return v;
}

static const char *str_item(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Per-element sequence numbers from SequenceNumberArray's JSON text, read exactly (int64):
 * an array, or a string holding one (the host's form, possibly wrapped again). */
static void read_seqs(const buf_t *text, int64_t *seqs, unsigned char *has, size_t n)
{
    buf_t cur = BUF_INIT, next = BUF_INIT;
    if (buf_append(&cur, text->data, text->len) != 0) goto out;
    for (int unwrap = 0; unwrap < JCHAIN_MAX; unwrap++) {
        const char *p = cur.data;
        while ((unsigned char)*p <= 0x20 && *p) p++;
        if (*p != '"') break;
        buf_reset(&next);
        if (json_string_decode(cur.data, cur.len, &next) != 0) goto out;
        buf_t t = cur;
        cur = next;
        next = t;
    }
    jstream_t *js = malloc(sizeof *js);
    if (!js) goto out;
    jstream_init(js);
    jstream_feed(js, cur.data, cur.len);
    jstream_end(js);
    if (jstream_next(js) == JS_ARR_BEGIN) {
        size_t i = 0;
        for (;;) {
            js_event_t ev = jstream_next(js);
            if (ev == JS_ERROR || ev == JS_DONE || (ev == JS_ARR_END && jstream_depth(js) == 0)) break;
            int element = jstream_depth(js) == 1 || (jstream_depth(js) == 2 && (ev == JS_OBJ_BEGIN || ev == JS_ARR_BEGIN));
            if (!element || ev == JS_STR_CHUNK || ev == JS_STR_END || ev == JS_NEED_MORE) continue;
            if (i < n && ev == JS_NUMBER && !js->scalar_truncated)
                has[i] = (unsigned char)tele_seq_from_text(js->scalar, &seqs[i]);
            i++;
        }
    }
    free(js);
out:
    buf_free(&cur);
    buf_free(&next);
}

static void resolve(tele_decoder_t *d, rec_t *r, const sys_rec_t *s)
{
    tele_event_t *e = &r->ev;
    e->reject_reason = "";
    const char *sys_id = s ? s->device_id : NULL;
    const char *sys_bad = s ? s->id_bad : NULL;
    char why[200];
    e->system_device_id = sys_id;
    if (sys_bad) {
        snprintf(why, sizeof why, "device id (iothub-connection-device-id) %s", sys_bad);
        e->rejected = 1;
        e->reject_reason = adup(d, why);
        return;
    }
    if (r->body_error) {
        /* an authenticated device sent garbage: count it against that device */
        if (sys_id && device_id_valid(sys_id, NULL, 0)) {
            e->device_id = sys_id;
            e->reading.invalid = 1;
            snprintf(e->reading.reason, sizeof e->reading.reason, "%s", r->body_error);
            return;
        }
        e->rejected = 1;
        e->reject_reason = r->body_error;
        return;
    }
    const char *claimed = e->reading.claimed_device_id;
    if (sys_id) {
        e->device_id = sys_id;
        e->spoofed = e->reading.claimed_bad || (claimed && strcmp(claimed, sys_id) != 0);
    } else if (e->reading.claimed_bad) {
        e->rejected = 1;
        e->reject_reason = adup(d, e->reading.reason);
        return;
    } else if (claimed) {
        e->device_id = claimed;
    } else {
        if (r->id_kind) snprintf(why, sizeof why, "device id is %s, expected a string", r->id_kind);
        else snprintf(why, sizeof why, "no device id (no iothub-connection-device-id system property and no "
                                      "deviceId in the payload)");
        e->rejected = 1;
        e->reject_reason = adup(d, why);
        return;
    }
    char bad[160];
    if (!device_id_valid(e->device_id, bad, sizeof bad)) {
        e->rejected = 1;
        e->reject_reason = adup(d, bad);
        e->device_id = NULL;
    }
}

int tele_decoder_finish(tele_decoder_t *d, tele_batch_t *b)
{
    memset(b, 0, sizeof *b);
    b->retry_count = -1;
    if (d->failed) return -1;
    jstream_end(&d->env.js);
    if (env_feed(d, &d->env, "", 0) != 0) return -1;
    if (!d->env.done) return fail_msg(d, "invalid JSON: the body ended early%s", "");
    if (d->data_text_set && reread_member(d, "Data", &d->data_text) != 0) return -1;
    if (d->meta_text_set && reread_member(d, "Metadata", &d->meta_text) != 0) return -1;

    cJSON *pc = meta_value(&d->pc_text);
    const char *ns = str_item(pc, "FullyQualifiedNamespace");
    const char *hub = str_item(pc, "EventHubName");
    const char *pid = str_item(pc, "PartitionId");
    tele_stream_id(ns, hub, pid, b->stream);
    snprintf(b->stream_desc, sizeof b->stream_desc, "%.80s/%.60s/%.20s", ns ? ns : "?", hub ? hub : "?",
             pid ? pid : "?");
    /* Sequence numbers are only comparable within one partition: without its id they would be
     * compared across partitions and an event could be mistaken for a replay. Treat them as
     * absent instead (the events are applied; see event_trigger.h). */
    b->seq_usable = pid != NULL && *pid != '\0';
    cJSON_Delete(pc);
    cJSON *retry = meta_value(&d->retry_text);
    const cJSON *rc = cJSON_IsObject(retry) ? cJSON_GetObjectItem(retry, "RetryCount") : NULL;
    if (cJSON_IsNumber(rc)) b->retry_count = (long)rc->valuedouble;
    cJSON_Delete(retry);

    size_t n = d->n;
    int64_t *seqs = calloc(n ? n : 1, sizeof *seqs);
    unsigned char *has = calloc(n ? n : 1, 1);
    if (!seqs || !has) {
        free(seqs);
        free(has);
        return fail_oom(d);
    }
    if (d->seq_text.len) read_seqs(&d->seq_text, seqs, has, n);
    cJSON *times = meta_value(&d->times_text);
    const cJSON *t_it = cJSON_IsArray(times) ? times->child : NULL;
    for (size_t i = 0; i < n; i++, t_it = t_it ? t_it->next : NULL) {
        rec_t *r = &d->recs[i];
        tele_event_t *e = &r->ev;
        const sys_rec_t *s = !d->sys_bad && i < d->nsys ? &d->sysr[i] : NULL;
        e->next = -1;
        if (!b->seq_usable) { /* no partition id: see above */ }
        else if (has[i]) { e->has_seq = 1; e->seq = seqs[i]; }
        else if (s && s->has_seq1) { e->has_seq = 1; e->seq = s->seq1; }
        else if (s && !s->has_seq1 && s->has_seq2) { e->has_seq = 1; e->seq = s->seq2; }
        const char *ts = cJSON_IsString(t_it) ? t_it->valuestring : NULL;
        if (!ts || tele_time_normalise(ts, e->enqueued) != 0) {
            e->enqueued[0] = '\0';
            if (s && s->t1[0]) memcpy(e->enqueued, s->t1, TELE_TIME_LEN);
            else if (s && s->t2[0]) memcpy(e->enqueued, s->t2, TELE_TIME_LEN);
        }
        resolve(d, r, s);
    }
    cJSON_Delete(times);
    free(seqs);
    free(has);
    if (d->oom) return -1;
    /* hand the records and their strings over to the batch */
    if (n) {
        b->ev = malloc(n * sizeof *b->ev);
        if (!b->ev) return fail_oom(d);
        for (size_t i = 0; i < n; i++) b->ev[i] = d->recs[i].ev;
    }
    b->n = n;
    b->arena = d->arena;
    d->arena = NULL;
    return 0;
}

/* ---- convenience: from parsed values -------------------------------------------------------- */

int tele_batch_decode(tele_batch_t *b, const cJSON *events, const cJSON *metadata, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->retry_count = -1;
    tele_decoder_t *d = tele_decoder_new();
    char *ev_text = events ? cJSON_PrintUnformatted(events) : NULL;
    char *meta_text = metadata ? cJSON_PrintUnformatted(metadata) : NULL;
    int rc = -1;
    if (!d || (events && !ev_text) || (metadata && !meta_text)) {
        snprintf(err, errlen, "out of memory decoding the batch");
        goto out;
    }
    const char *parts[] = {"{\"Data\":{", ev_text ? "\"events\":" : "", ev_text ? ev_text : "", "}",
                           meta_text ? ",\"Metadata\":" : "", meta_text ? meta_text : "", "}"};
    rc = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0] && rc == 0; i++)
        rc = tele_decoder_feed(d, parts[i], strlen(parts[i]));
    if (rc == 0) rc = tele_decoder_finish(d, b);
    if (rc != 0) snprintf(err, errlen, "%s", tele_decoder_error(d, NULL));
out:
    cJSON_free(ev_text);
    cJSON_free(meta_text);
    tele_decoder_free(d);
    return rc;
}

void tele_batch_free(tele_batch_t *b)
{
    if (!b) return;
    free(b->ev);
    arena_free(b->arena);
    memset(b, 0, sizeof *b);
}
