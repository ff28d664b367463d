/* batch.c — EventTrigger batch decoding (see batch.h). */
#include "telemetry/batch.h"

#include "protocol/invocation.h"
#include "telemetry/device_id.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tele_stream_id(const char *ns, const char *hub, const char *partition, char out[17])
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[3] = {ns ? ns : "", hub ? hub : "", partition ? partition : ""};
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (i < 2) c = (unsigned char)tolower(c);   /* host names are case-insensitive */
            h ^= c;
            h *= 1099511628211ULL;
        }
        h ^= 0x1f;   /* separator, so ("ab","c") != ("a","bc") */
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016" PRIx64, h);
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int tele_time_normalise(const char *in, char out[TELE_TIME_LEN])
{
    if (!in) return -1;
    const char *p = in;
    while (*p == ' ') p++;
    int Y, M, D, h, m, s;
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ') return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m)) return -1;
    s = 0;
    if (*p == ':') { p++; if (digits(&p, 2, &s)) return -1; }
    char frac[8] = "0000000";
    if (*p == '.' || *p == ',') {
        p++;
        int n = 0;
        if (!isdigit((unsigned char)*p)) return -1;
        while (isdigit((unsigned char)*p)) { if (n < 7) frac[n++] = *p; p++; }
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') p++;
    else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0;
        p++;
        if (digits(&p, 2, &oh)) return -1;
        if (*p == ':') p++;
        if (isdigit((unsigned char)*p) && digits(&p, 2, &om)) return -1;
        if (oh > 23 || om > 59) return -1;
        off = sign * (oh * 60 + om);
    }
    while (*p == ' ') p++;
    if (*p) return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || s > 59) return -1;
    if (off == 0) {
        /* fast path (the host's own form: UTC, no zone): already canonical once the fraction
         * is padded — no calendar arithmetic, no printf (this runs once per event) */
        static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
        if (D > mdays[M - 1] || (M == 2 && D == 29 && !leap) || Y < 1) return -1;
        const int f[6] = {M, D, h, m, s, 0};
        char *o = out;
        *o++ = (char)('0' + Y / 1000); *o++ = (char)('0' + Y / 100 % 10);
        *o++ = (char)('0' + Y / 10 % 10); *o++ = (char)('0' + Y % 10);
        static const char sep[5] = {'-', 'T', ':', ':', '.'};
        *o++ = '-';
        for (int i = 0; i < 5; i++) {
            *o++ = (char)('0' + f[i] / 10);
            *o++ = (char)('0' + f[i] % 10);
            *o++ = sep[i];
        }
        memcpy(o, frac, 7);
        o[7] = 'Z';
        o[8] = '\0';
        return 0;
    }
    struct tm tm = {0};
    tm.tm_year = Y - 1900; tm.tm_mon = M - 1; tm.tm_mday = D;
    tm.tm_hour = h; tm.tm_min = m; tm.tm_sec = s;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 && !(Y == 1969 && M == 12 && D == 31)) return -1;
    t -= (time_t)off * 60;
    struct tm u;
    if (!gmtime_r(&t, &u) || u.tm_year + 1900 < 1 || u.tm_year + 1900 > 9999) return -1;
    /* every field is range-checked above, so the text is exactly 28 characters */
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%sZ", (u.tm_year + 1900) % 10000,
             (u.tm_mon + 1) % 100, u.tm_mday % 100, u.tm_hour % 100, u.tm_min % 100, u.tm_sec % 100, frac);
    if (strlen(tmp) != TELE_TIME_LEN - 1) return -1;
    memcpy(out, tmp, TELE_TIME_LEN);
    return 0;
}

long tele_parse_int64_array(const char *text, int64_t *vals, unsigned char *has, size_t cap)
{
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (*p++ != '[') return -1;
    long n = 0;
    while (isspace((unsigned char)*p)) p++;
    if (*p == ']') { p++; goto end; }
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        int64_t v = 0;
        int present = 0;
        if (strncmp(p, "null", 4) == 0) p += 4;
        else {
            char *e = NULL;
            errno = 0;
            long long x = strtoll(p, &e, 10);
            if (e == p || errno) return -1;
            if (*e == '.' || *e == 'e' || *e == 'E') return -1;
            v = x; present = 1; p = e;
        }
        if ((size_t)n < cap) { vals[n] = v; has[n] = (unsigned char)present; }
        n++;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') { p++; continue; }
        if (*p == ']') { p++; break; }
        return -1;
    }
end:
    while (isspace((unsigned char)*p)) p++;
    return *p ? -1 : n;
}

/* A sequence number from a decoded JSON number: only a finite integer in int64 range is one
 * (casting anything else to int64_t is undefined; on x86 it gives INT64_MIN, which would make
 * the event look like a replay and drop it). */
static int seq_from_number(const cJSON *x, int64_t *out)
{
    if (!cJSON_IsNumber(x)) return 0;
    double d = x->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return 0;
    *out = (int64_t)d;
    return 1;
}

/* Metadata[name] unwrapped into a copy kept in b->keep (NULL when absent). */
static const cJSON *meta(tele_batch_t *b, const cJSON *metadata, const char *name)
{
    if (!metadata) return NULL;
    const cJSON *raw = cJSON_GetObjectItem(metadata, name);
    if (!raw) return NULL;
    cJSON *v = json_unwrap(raw);
    if (!v) return NULL;
    cJSON_AddItemToArray(b->keep, v);
    return v;
}

static const char *str_item(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void reject(tele_event_t *e, const char *fmt, const char *detail)
{
    e->rejected = 1;
    e->msg = NULL;
    snprintf(e->reject_reason, sizeof e->reject_reason, fmt, detail ? detail : "");
}

static const char *kind(const cJSON *v)
{
    if (cJSON_IsArray(v)) return "a JSON array";
    if (cJSON_IsNumber(v)) return "a JSON number";
    if (cJSON_IsString(v)) return "a JSON string";
    if (cJSON_IsBool(v)) return "a JSON boolean";
    if (cJSON_IsNull(v)) return "JSON null";
    if (cJSON_IsObject(v)) return "a JSON object";
    return "of an unknown type";
}

/* Turn element el into e->msg (an object) or a rejection. */
static void parse_body(tele_event_t *e, const cJSON *el)
{
    if (cJSON_IsObject(el)) { e->msg = el; return; }
    if (!cJSON_IsString(el) || !el->valuestring) { reject(e, "event body is %s, expected an object", kind(el)); return; }
    cJSON *doc = cJSON_ParseWithOpts(el->valuestring, NULL, 1);
    /* a body that is itself a JSON-encoded string (double encoding): unwrap twice at most */
    for (int i = 0; i < 2 && cJSON_IsString(doc) && doc->valuestring; i++) {
        cJSON *inner = cJSON_ParseWithOpts(doc->valuestring, NULL, 1);
        if (!inner) break;
        cJSON_Delete(doc);
        doc = inner;
    }
    if (!doc) { reject(e, "event body is not JSON%s", ""); return; }
    e->owned = doc;
    if (!cJSON_IsObject(doc)) { reject(e, "event body is %s, expected an object", kind(doc)); return; }
    e->msg = doc;
}

int tele_batch_decode(tele_batch_t *b, const cJSON *events, const cJSON *metadata, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->keep = cJSON_CreateArray();
    if (!b->keep) { snprintf(err, errlen, "out of memory decoding the batch"); return -1; }

    const cJSON *arr = NULL;
    if (events) {
        cJSON *u = json_unwrap(events);
        if (!u) { snprintf(err, errlen, "out of memory decoding Data.events"); return -1; }
        cJSON_AddItemToArray(b->keep, u);
        arr = u;
    }
    size_t n = 0;
    int single = 0;
    if (!arr || cJSON_IsNull(arr)) n = 0;
    else if (cJSON_IsArray(arr)) n = (size_t)cJSON_GetArraySize(arr);
    else if (cJSON_IsObject(arr)) { n = 1; single = 1; }
    else {
        snprintf(err, errlen, "Data.events is %s; expected a JSON array of event bodies "
                 "(function.json: cardinality many, dataType string)", kind(arr));
        return -1;
    }

    /* Stream identity from PartitionContext */
    const cJSON *pc = meta(b, metadata, "PartitionContext");
    const char *ns = str_item(pc, "FullyQualifiedNamespace");
    const char *hub = str_item(pc, "EventHubName");
    const char *pid = str_item(pc, "PartitionId");
    tele_stream_id(ns, hub, pid, b->stream);
    snprintf(b->stream_desc, sizeof b->stream_desc, "%.80s/%.60s/%.20s", ns ? ns : "?",
             hub ? hub : "?", pid ? pid : "?");
    /* Sequence numbers are only comparable within one partition: without its id they would be
     * compared across partitions and an event could be mistaken for a replay. Treat them as
     * absent instead (the events are applied; see event_trigger.h). */
    b->seq_usable = pid != NULL && *pid != '\0';

    if (n == 0) return 0;
    if (n > TELE_MAX_EVENTS) {
        snprintf(err, errlen, "Data.events holds %zu events; at most %d are accepted per invocation "
                 "(the Event Hubs trigger sends at most host.json's maxEventBatchSize)", n, TELE_MAX_EVENTS);
        return -1;
    }
    b->ev = calloc(n, sizeof *b->ev);
    if (!b->ev) { snprintf(err, errlen, "out of memory for %zu events", n); return -1; }
    b->n = n;

    const cJSON *sys = meta(b, metadata, "SystemPropertiesArray");
    const cJSON *times = meta(b, metadata, "EnqueuedTimeUtcArray");
    if (!cJSON_IsArray(sys)) sys = NULL;
    if (!cJSON_IsArray(times)) times = NULL;

    /* Sequence numbers: parse the raw text exactly (int64), falling back to decoded numbers */
    int64_t *seqs = calloc(n, sizeof *seqs);
    unsigned char *seq_has = calloc(n, 1);
    if (!seqs || !seq_has) {
        free(seqs); free(seq_has);
        snprintf(err, errlen, "out of memory for %zu sequence numbers", n);
        return -1;
    }
    const cJSON *rawseq = metadata ? cJSON_GetObjectItem(metadata, "SequenceNumberArray") : NULL;
    int seq_ok = 0;
    if (cJSON_IsString(rawseq) && rawseq->valuestring) {
        const char *t = rawseq->valuestring;
        cJSON *tmp = NULL;
        /* double-encoded: a string holding a string holding the array */
        while (isspace((unsigned char)*t)) t++;
        if (*t == '"') {
            tmp = cJSON_Parse(t);
            t = cJSON_IsString(tmp) ? tmp->valuestring : "";
        }
        seq_ok = tele_parse_int64_array(t, seqs, seq_has, n) >= 0;
        cJSON_Delete(tmp);
    }
    if (!seq_ok && rawseq) {
        memset(seq_has, 0, n);
        const cJSON *sa = meta(b, metadata, "SequenceNumberArray");
        size_t i = 0;
        const cJSON *x;
        const cJSON *sarr = cJSON_IsArray(sa) ? sa : NULL;
        cJSON_ArrayForEach(x, sarr) {
            if (i >= n) break;
            if (seq_from_number(x, &seqs[i])) seq_has[i] = 1;
            i++;
        }
    }

    /* walk the arrays side by side (cJSON_GetArrayItem is O(i): 10,000 events would be O(n^2)) */
    const cJSON *el = single ? arr : (arr ? arr->child : NULL);
    const cJSON *sp_it = sys ? sys->child : NULL, *t_it = times ? times->child : NULL;
    for (size_t i = 0; i < n; i++, el = el ? el->next : NULL, sp_it = sp_it ? sp_it->next : NULL,
                               t_it = t_it ? t_it->next : NULL) {
        tele_event_t *e = &b->ev[i];
        e->next = -1;
        const cJSON *sp = cJSON_IsObject(sp_it) ? sp_it : NULL;
        /* metadata */
        if (!b->seq_usable) { /* no partition id: see above */ }
        else if (seq_has[i]) { e->has_seq = 1; e->seq = seqs[i]; }
        else if (sp) {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(sp, "SequenceNumber");
            if (!s) s = cJSON_GetObjectItemCaseSensitive(sp, "x-opt-sequence-number");
            if (seq_from_number(s, &e->seq)) e->has_seq = 1;
        }
        const cJSON *t = t_it;
        const char *ts = cJSON_IsString(t) ? t->valuestring : NULL;
        if (!ts) ts = str_item(sp, "EnqueuedTimeUtc");
        if (!ts) ts = str_item(sp, "iothub-enqueuedtime");
        if (!ts || tele_time_normalise(ts, e->enqueued) != 0) e->enqueued[0] = '\0';
        e->system_device_id = str_item(sp, "iothub-connection-device-id");

        if (!el) { reject(e, "event body is missing%s", ""); continue; }
        parse_body(e, el);
        if (e->rejected) {
            /* an authenticated device sent garbage: count it against that device */
            if (e->system_device_id && device_id_valid(e->system_device_id, NULL, 0)) {
                e->rejected = 0;
                e->device_id = e->system_device_id;
                e->reading.invalid = 1;
                snprintf(e->reading.reason, sizeof e->reading.reason, "%.159s", e->reject_reason);
            }
            continue;
        }
        tele_normalise(e->msg, &e->reading);
        const char *id = device_id_choose(e->system_device_id, e->reading.claimed_device_id, &e->spoofed);
        if (!id) {
            const cJSON *bad = cJSON_GetObjectItemCaseSensitive(e->msg, "deviceId");
            if (!bad) bad = cJSON_GetObjectItemCaseSensitive(e->msg, "DeviceId");
            reject(e, bad ? "device id is %s, expected a string" : "no device id (no "
                   "iothub-connection-device-id system property and no deviceId in the payload)%s",
                   bad ? kind(bad) : "");
            continue;
        }
        char why[160];
        if (!device_id_valid(id, why, sizeof why)) { reject(e, "%s", why); continue; }
        e->device_id = id;
    }
    free(seqs);
    free(seq_has);
    return 0;
}

void tele_batch_free(tele_batch_t *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) cJSON_Delete(b->ev[i].owned);
    free(b->ev);
    cJSON_Delete(b->keep);
    memset(b, 0, sizeof *b);
}
