/* eh_wire.c — the Event Hubs trigger's wire form and settings (see eh_wire.h). */
#include "devhost/iothub/eh_wire.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "devhost/host/retry.h"
#include "devhost/iothub/message.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/utf8.h"

#define AUTH_METHOD "{\"scope\":\"device\",\"type\":\"sas\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}"

/* ---- settings ---------------------------------------------------------------- */

static const cJSON *item(const cJSON *o, const char *name)
{
    return cJSON_GetObjectItem(o, name);   /* host.json/function.json keys are case-insensitive */
}

static int int_opt(const cJSON *o, const char *name, int min, int max, int *out, char *err, size_t errlen)
{
    const cJSON *v = item(o, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble || v->valuedouble < min ||
        v->valuedouble > max) {
        snprintf(err, errlen, "%s must be an integer from %d to %d", name, min, max);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

static int span_opt(const cJSON *o, const char *name, long *out, char *err, size_t errlen)
{
    const cJSON *v = item(o, name);
    if (!v) return 0;
    int64_t ms;
    if (!cJSON_IsString(v) || dh_timespan_ms(v->valuestring, &ms) != 0) {
        snprintf(err, errlen, "%s must be a TimeSpan such as \"00:00:10\"", name);
        return -1;
    }
    *out = (long)ms;
    return 0;
}

int iothub_eh_batching_from_json(const cJSON *eh, iothub_eh_batching_t *out, char *err, size_t errlen)
{
    out->max_batch = 100;
    out->min_batch = 1;
    out->max_wait_ms = 60000;
    out->checkpoint_every = 1;
    if (!eh) return 0;
    if (!cJSON_IsObject(eh)) {
        snprintf(err, errlen, "extensions.eventHubs must be an object");
        return -1;
    }
    /* maxBatchSize is the extension v4 name of maxEventBatchSize */
    if (!item(eh, "maxEventBatchSize") && int_opt(eh, "maxBatchSize", 1, 100000, &out->max_batch, err, errlen)) return -1;
    if (int_opt(eh, "maxEventBatchSize", 1, 100000, &out->max_batch, err, errlen) ||
        int_opt(eh, "minEventBatchSize", 1, 100000, &out->min_batch, err, errlen) ||
        int_opt(eh, "batchCheckpointFrequency", 1, 1000000, &out->checkpoint_every, err, errlen) ||
        span_opt(eh, "maxWaitTime", &out->max_wait_ms, err, errlen))
        return -1;
    if (out->min_batch > out->max_batch) {
        snprintf(err, errlen, "minEventBatchSize (%d) is larger than maxEventBatchSize (%d)", out->min_batch, out->max_batch);
        return -1;
    }
    if (out->max_wait_ms > 600000) {
        snprintf(err, errlen, "maxWaitTime is at most 00:10:00");
        return -1;
    }
    return 0;
}

/* ---- JSON text helpers -------------------------------------------------------------------- */

/* s[0..n) as a JSON string literal; ill-formed UTF-8 becomes U+FFFD, as .NET decodes it. */
static void put_text(buf_t *b, const void *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const char *p = s;
    buf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x80) {
            long k = utf8_next(p + i, n - i);
            if (k > 0) { buf_append(b, p + i, (size_t)k); i += (size_t)k; }
            else { buf_append(b, "\xEF\xBF\xBD", 3); i += (size_t)-k; }
            continue;
        }
        if (c == '"') buf_puts(b, "\\\"");
        else if (c == '\\') buf_puts(b, "\\\\");
        else if (c == '\n') buf_puts(b, "\\n");
        else if (c == '\r') buf_puts(b, "\\r");
        else if (c == '\t') buf_puts(b, "\\t");
        else if (c == '\b') buf_puts(b, "\\b");
        else if (c == '\f') buf_puts(b, "\\f");
        else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 6);
        } else buf_putc(b, (char)c);
        i++;
    }
    buf_putc(b, '"');
}

static void put_str(buf_t *b, const char *s) { put_text(b, s, strlen(s)); }

static void put_key(buf_t *b, int *first, const char *k)
{
    if (!*first) buf_putc(b, ',');
    *first = 0;
    put_str(b, k);
    buf_putc(b, ':');
}

void iothub_net_time(int64_t ms, int utc, char *out)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)t * 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    int n = (int)strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac) {
        n += sprintf(out + n, ".%03d", frac);
        while (out[n - 1] == '0') out[--n] = '\0';
    }
    if (utc) { out[n++] = 'Z'; out[n] = '\0'; }
}

/* The application properties object. */
static void put_props(buf_t *b, const iothub_msg_t *m)
{
    int first = 1;
    buf_putc(b, '{');
    for (size_t i = 0; i < m->n_props; i++) {
        put_key(b, &first, m->props[i].name);
        put_str(b, m->props[i].value);
    }
    buf_putc(b, '}');
}

static void put_opt(buf_t *b, int *first, const char *k, const char *v)
{
    if (!v) return;
    put_key(b, first, k);
    put_str(b, v);
}

/* The SystemProperties object of one event. */
static void put_sys(buf_t *b, const iothub_plog_rec_t *r, const iothub_msg_view_t *v)
{
    char t_enq[40], t_enq_z[40], t_recv_z[40], num[32];
    iothub_net_time(r->enqueued_ms, 0, t_enq);
    iothub_net_time(r->enqueued_ms, 1, t_enq_z);
    iothub_net_time(v->stamp.received_ms, 1, t_recv_z);
    int first = 1;
    buf_putc(b, '{');
    put_key(b, &first, "x-opt-sequence-number");
    buf_printf(b, "%" PRId64, r->seq);
    put_key(b, &first, "x-opt-offset");
    snprintf(num, sizeof num, "%" PRIu64, r->offset);
    put_str(b, num);
    put_key(b, &first, "x-opt-enqueued-time");
    put_str(b, t_enq_z);
    put_opt(b, &first, "iothub-connection-device-id", v->stamp.device_id);
    put_opt(b, &first, "iothub-connection-auth-method", AUTH_METHOD);
    put_opt(b, &first, "iothub-connection-auth-generation-id", v->stamp.generation_id);
    put_opt(b, &first, "iothub-enqueuedtime", t_recv_z);
    put_opt(b, &first, "iothub-message-source", "Telemetry");
    put_opt(b, &first, "message-id", v->msg.message_id);
    put_opt(b, &first, "correlation-id", v->msg.correlation_id);
    put_opt(b, &first, "content-type", v->msg.content_type);
    put_opt(b, &first, "content-encoding", v->msg.content_encoding);
    if (v->msg.user_id) {
        /* AMQP user-id is binary; Newtonsoft writes byte[] as base64 */
        size_t ul = strlen(v->msg.user_id);
        char *u = malloc(BASE64_ENCODED_LEN(ul) + 1);
        if (u) {
            base64_encode(v->msg.user_id, ul, u);
            put_opt(b, &first, "user-id", u);
            free(u);
        }
    }
    put_key(b, &first, "SequenceNumber");
    buf_printf(b, "%" PRId64, r->seq);
    put_key(b, &first, "Offset");
    buf_printf(b, "%" PRIu64, r->offset);
    put_key(b, &first, "PartitionKey");
    buf_puts(b, "null");
    put_key(b, &first, "EnqueuedTimeUtc");
    put_str(b, t_enq);
    buf_putc(b, '}');
}

/* The body as the binding sees it, appended to b. Returns 0, or 1 when it is not JSON for the
 * object binding. */
static int put_body(buf_t *b, iothub_eh_datatype_t type, const iothub_msg_t *m)
{
    if (type == IOTHUB_EH_STRING) {
        put_text(b, m->body, m->body_len);
        return 0;
    }
    if (type == IOTHUB_EH_BINARY) {
        char *enc = malloc(BASE64_ENCODED_LEN(m->body_len) + 1);
        if (!enc) { b->oom = 1; return 0; }
        base64_encode(m->body, m->body_len, enc);
        buf_putc(b, '"');
        buf_puts(b, enc);
        buf_putc(b, '"');
        free(enc);
        return 0;
    }
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(m->body, m->body_len, &end, 0);
    if (!doc || !end || (size_t)(end - (const char *)m->body) != m->body_len) {
        /* trailing whitespace is fine */
        const char *p = end;
        while (doc && p && p < (const char *)m->body + m->body_len && isspace((unsigned char)*p)) p++;
        if (!doc || p != (const char *)m->body + m->body_len) { cJSON_Delete(doc); return 1; }
    }
    char *txt = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!txt) { b->oom = 1; return 0; }
    buf_puts(b, txt);
    free(txt);
    return 0;
}

static cJSON *take_string(buf_t *b)
{
    cJSON *s = b->oom ? NULL : cJSON_CreateString(buf_str(b));
    buf_free(b);
    return s;
}

static int add(cJSON *obj, const char *k, cJSON *v)
{
    if (!v) return -1;
    cJSON_AddItemToObject(obj, k, v);
    return 0;
}

static void uuid4(char out[37])
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) memset(r, 0x5a, sizeof r);
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
}

static cJSON *sys_object(const char *function)
{
    cJSON *s = cJSON_CreateObject();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char now[48], g[37];
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(now + n, sizeof now - n, ".%07ldZ", ts.tv_nsec / 100);
    uuid4(g);
    if (!s || !cJSON_AddStringToObject(s, "MethodName", function ? function : "") ||
        !cJSON_AddStringToObject(s, "UtcNow", now) || !cJSON_AddStringToObject(s, "RandGuid", g)) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

static cJSON *partition_context(const iothub_eh_wire_t *w)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", w->partition);
    cJSON *pc = cJSON_CreateObject();
    if (!pc || !cJSON_AddStringToObject(pc, "FullyQualifiedNamespace", w->ns ? w->ns : "") ||
        !cJSON_AddStringToObject(pc, "EventHubName", w->event_hub ? w->event_hub : "") ||
        !cJSON_AddStringToObject(pc, "ConsumerGroup", w->consumer_group ? w->consumer_group : "$Default") ||
        !cJSON_AddStringToObject(pc, "PartitionId", pid) || !cJSON_AddTrueToObject(pc, "IsCheckpointingAfterInvocation")) {
        cJSON_Delete(pc);
        return NULL;
    }
    return pc;
}

int iothub_eh_build(const iothub_eh_wire_t *w, const iothub_plog_rec_t *recs, size_t n,
                    cJSON **data, cJSON **metadata, char *err, size_t errlen)
{
    *data = *metadata = NULL;
    if (errlen) err[0] = '\0';
    iothub_msg_view_t *v = malloc(sizeof *v);
    if (!v) { snprintf(err, errlen, "out of memory"); return -1; }
    buf_t bodies = BUF_INIT, keys = BUF_INIT, offs = BUF_INIT, seqs = BUF_INIT, times = BUF_INIT,
          props = BUF_INIT, sys = BUF_INIT;
    int rc = 0;
    char num[32], t[40];
    buf_putc(&bodies, '['); buf_putc(&keys, '['); buf_putc(&offs, '['); buf_putc(&seqs, '[');
    buf_putc(&times, '['); buf_putc(&props, '['); buf_putc(&sys, '[');
    for (size_t i = 0; i < n && rc == 0; i++) {
        char why[160];
        if (iothub_msg_decode(recs[i].payload, recs[i].len, v, why, sizeof why) != 0) {
            snprintf(err, errlen, "event %" PRId64 " cannot be decoded: %s", recs[i].seq, why);
            rc = -1;
            break;
        }
        const char *sep = i ? "," : "";
        buf_puts(&bodies, sep); buf_puts(&keys, sep); buf_puts(&offs, sep); buf_puts(&seqs, sep);
        buf_puts(&times, sep); buf_puts(&props, sep); buf_puts(&sys, sep);
        if (put_body(&bodies, w->data_type, &v->msg) != 0) {
            snprintf(err, errlen, "Binding parameters to complex objects (such as 'Object') uses Json.NET "
                     "serialization: the body of event %" PRId64 " (device %.128s) is not JSON "
                     "(set \"dataType\": \"string\" in function.json to receive any text)", recs[i].seq,
                     v->stamp.device_id);
            rc = 1;
            break;
        }
        buf_puts(&keys, "null");
        snprintf(num, sizeof num, "%" PRIu64, recs[i].offset);
        put_str(&offs, num);
        buf_printf(&seqs, "%" PRId64, recs[i].seq);
        iothub_net_time(recs[i].enqueued_ms, 0, t);
        put_str(&times, t);
        put_props(&props, &v->msg);
        put_sys(&sys, &recs[i], v);
    }
    buf_putc(&bodies, ']'); buf_putc(&keys, ']'); buf_putc(&offs, ']'); buf_putc(&seqs, ']');
    buf_putc(&times, ']'); buf_putc(&props, ']'); buf_putc(&sys, ']');
    free(v);
    cJSON *d = NULL, *m = NULL;
    if (rc == 0) {
        d = cJSON_CreateObject();
        m = cJSON_CreateObject();
        if (!d || !m) rc = -1;
    }
    if (rc == 0 && w->many) {
        /* arrays are not JObjects: the host serialises them to strings */
        if (add(d, w->name, take_string(&bodies)) || add(m, "PartitionContext", partition_context(w)) ||
            add(m, "PartitionKeyArray", take_string(&keys)) || add(m, "OffsetArray", take_string(&offs)) ||
            add(m, "SequenceNumberArray", take_string(&seqs)) || add(m, "EnqueuedTimeUtcArray", take_string(&times)) ||
            add(m, "PropertiesArray", take_string(&props)) || add(m, "SystemPropertiesArray", take_string(&sys)) ||
            add(m, "sys", sys_object(w->function)))
            rc = -1;
    } else if (rc == 0) {
        /* one event: strip the array brackets; the host's single-value rules apply (strings and
         * numbers double-encoded, objects as objects, DateTime re-parsed to whole seconds) */
        bodies.data[bodies.len - 1] = '\0';
        props.data[props.len - 1] = '\0';
        sys.data[sys.len - 1] = '\0';
        offs.data[offs.len - 1] = '\0';
        seqs.data[seqs.len - 1] = '\0';
        cJSON *body = NULL;
        if (w->data_type == IOTHUB_EH_BINARY) {
            cJSON *tmp = cJSON_Parse(bodies.data + 1);
            body = tmp && cJSON_IsString(tmp) ? cJSON_CreateString(tmp->valuestring) : NULL;
            cJSON_Delete(tmp);
        } else if (w->data_type == IOTHUB_EH_OBJECT && bodies.data[1] == '{') {
            body = cJSON_Parse(bodies.data + 1);
        } else {
            body = cJSON_CreateString(bodies.data + 1);
        }
        char tsec[40];
        iothub_net_time(recs[0].enqueued_ms - recs[0].enqueued_ms % 1000, 0, tsec);
        if (add(d, w->name, body) || add(m, "PartitionContext", partition_context(w)) ||
            add(m, "Offset", cJSON_CreateString(offs.data + 1)) || add(m, "SequenceNumber", cJSON_CreateString(seqs.data + 1)) ||
            add(m, "EnqueuedTimeUtc", cJSON_CreateString(tsec)) || add(m, "Properties", cJSON_Parse(props.data + 1)) ||
            add(m, "SystemProperties", cJSON_Parse(sys.data + 1)) || add(m, "sys", sys_object(w->function)))
            rc = -1;
    }
    buf_free(&bodies); buf_free(&keys); buf_free(&offs); buf_free(&seqs);
    buf_free(&times); buf_free(&props); buf_free(&sys);
    if (rc != 0) {
        if (rc < 0 && !err[0]) snprintf(err, errlen, "out of memory building the invocation");
        cJSON_Delete(d);
        cJSON_Delete(m);
        return rc;
    }
    *data = d;
    *metadata = m;
    return 0;
}

int iothub_eh_retry_context(cJSON *metadata, int retry_count, int max_retry_count, const char *function,
                            const char *exception)
{
    cJSON *rc = dh_retry_context(retry_count, max_retry_count, function, exception);
    if (!rc) return -1;
    cJSON_DeleteItemFromObject(metadata, "RetryContext");
    cJSON_AddItemToObject(metadata, "RetryContext", rc);
    return 0;
}
