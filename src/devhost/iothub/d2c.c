/* d2c.c — IoT Hub device-to-cloud HTTP API (see d2c.h). */
#include "devhost/iothub/d2c.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/base64.h"
#include "util/buf.h"

#define BATCH_TYPE "application/vnd.microsoft.iothub.json"
#define BATCH_MAX_MESSAGES 500

/* ---- errors -------------------------------------------------------------------------------- */

void iothub_d2c_error(iothub_http_resp_t *resp, iothub_status_t st, int status, const char *code,
                      const char *text)
{
    static atomic_uint seq;
    memset(resp, 0, sizeof *resp);
    resp->status = status ? status : iothub_status_http(st);
    snprintf(resp->error_code, sizeof resp->error_code, "%s", code ? code : iothub_status_code(st));
    snprintf(resp->content_type, sizeof resp->content_type, "application/json; charset=utf-8");
    char msg[700], track[160];
    snprintf(msg, sizeof msg, "ErrorCode:%s;%s", resp->error_code, text ? text : "");
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%m/%d/%Y %H:%M:%S", &tm);
    snprintf(track, sizeof track, "Tracking ID:%016llx%08x%08x-G:0-TimeStamp:%s", (unsigned long long)now,
             atomic_fetch_add(&seq, 1), (unsigned)resp->status, ts);
    buf_t b = BUF_INIT;
    buf_puts(&b, "{\"Message\":");
    buf_put_json_string(&b, msg);
    buf_puts(&b, ",\"ExceptionMessage\":");
    buf_put_json_string(&b, track);
    buf_putc(&b, '}');
    if (!b.oom && b.len < sizeof resp->body) {
        memcpy(resp->body, b.data, b.len);
        resp->body_len = b.len;
    } else {
        resp->body_len = (size_t)snprintf(resp->body, sizeof resp->body,
                                          "{\"Message\":\"ErrorCode:%s;\"}", resp->error_code);
    }
    buf_free(&b);
}

static void ok_204(iothub_http_resp_t *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->status = 204;
}

/* ---- request parsing -------------------------------------------------------------------------- */

int iothub_d2c_match(const char *path)
{
    return path && strncasecmp(path, "/devices/", 9) == 0;
}

typedef struct hdrs {
    const char   *authorization, *content_type;
    const char   *message_id, *correlation_id, *msg_content_type, *content_encoding, *user_id;
    iothub_prop_t props[IOTHUB_MAX_PROPS];
    size_t        n_props;
    char          bad[320];        /* first problem found, "" when none */
} hdrs_t;

static void set_bad(hdrs_t *h, const char *fmt, const char *what)
{
    if (!h->bad[0]) snprintf(h->bad, sizeof h->bad, fmt, what);
}

/* One system property header into its slot (repeats are an error). */
static void take_sys(hdrs_t *h, const char **slot, const char *name, const char *value)
{
    if (*slot) set_bad(h, "header %s appears twice", name);
    *slot = value;
}

static int visit_header(void *ctx, const char *name, const char *value)
{
    hdrs_t *h = ctx;
    if (!name || !value) return 0;
    if (strncasecmp(name, "iothub-app-", 11) == 0) {
        const char *pn = name + 11;
        if (!iothub_prop_text_valid(pn, 1) || !iothub_prop_text_valid(value, 0)) {
            set_bad(h, "application property %.100s: names and values may contain only ASCII letters, digits "
                    "and ! # $ %% & ' * + - . ^ _ ` | ~", pn);
            return 0;
        }
        for (size_t i = 0; i < h->n_props; i++)
            if (strcasecmp(h->props[i].name, pn) == 0) { set_bad(h, "application property %.100s appears twice", pn); return 0; }
        if (h->n_props == IOTHUB_MAX_PROPS) { set_bad(h, "more than %s application properties", "256"); return 0; }
        h->props[h->n_props].name = pn;
        h->props[h->n_props].value = value;
        h->n_props++;
    } else if (strcasecmp(name, "authorization") == 0) take_sys(h, &h->authorization, name, value);
    else if (strcasecmp(name, "content-type") == 0) take_sys(h, &h->content_type, name, value);
    else if (strcasecmp(name, "iothub-messageid") == 0) take_sys(h, &h->message_id, name, value);
    else if (strcasecmp(name, "iothub-correlationid") == 0) take_sys(h, &h->correlation_id, name, value);
    else if (strcasecmp(name, "iothub-contenttype") == 0) take_sys(h, &h->msg_content_type, name, value);
    else if (strcasecmp(name, "iothub-contentencoding") == 0) take_sys(h, &h->content_encoding, name, value);
    else if (strcasecmp(name, "iothub-userid") == 0) take_sys(h, &h->user_id, name, value);
    return 0;
}

typedef struct query { const char *api_version; } query_t;

static int visit_query(void *ctx, const char *name, const char *value)
{
    query_t *q = ctx;
    if (name && strcmp(name, "api-version") == 0) q->api_version = value ? value : "";
    return 0;
}

/* api-version looks like 2021-04-12 or 2021-04-12-preview. */
static int api_version_ok(const char *v)
{
    if (!v || strlen(v) < 10) return 0;
    for (int i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? v[i] != '-' : !isdigit((unsigned char)v[i])) return 0;
    return v[10] == '\0' || strcmp(v + 10, "-preview") == 0;
}

/* Split "/devices/{id}/messages/{tail}" (fixed words compared ignoring case). Returns 0 with
 * id copied and *tail set, or -1. */
static int split_path(const char *path, char id[IOTHUB_DEVICE_ID_MAX + 1], const char **tail)
{
    const char *p = path + 9;   /* after "/devices/" */
    const char *slash = strchr(p, '/');
    if (!slash || slash == p || (size_t)(slash - p) > IOTHUB_DEVICE_ID_MAX) return -1;
    memcpy(id, p, (size_t)(slash - p));
    id[slash - p] = '\0';
    if (strncasecmp(slash, "/messages/", 10) != 0) return -1;
    *tail = slash + 10;
    return 0;
}

/* ---- sending ---------------------------------------------------------------------------------- */

typedef struct pending {
    iothub_d2c_done_fn done;
    void              *arg;
} pending_t;

static void on_durable(void *arg, iothub_status_t st, const char *error)
{
    pending_t *p = arg;
    iothub_http_resp_t resp;
    if (st == IOTHUB_OK) ok_204(&resp);
    else iothub_d2c_error(&resp, st, 0, NULL, error && *error ? error : "the message could not be stored");
    p->done(p->arg, &resp);
    free(p);
}

void iothub_d2c_batch_free(iothub_d2c_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) { free(b->bodies[i]); free(b->props[i]); }
    free(b->msgs);
    free(b->bodies);
    free(b->props);
    cJSON_Delete(b->doc);
}

int iothub_d2c_batch_parse(const void *body, size_t len, iothub_d2c_batch_t *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    const char *end = NULL;
    b->doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!cJSON_IsArray(b->doc)) {
        snprintf(err, errlen, "a batch body (" BATCH_TYPE ") must be a JSON array of {\"body\":\"<base64>\","
                 "\"properties\":{...}}%s", b->doc ? "" : " (not valid JSON)");
        return -1;
    }
    int n = cJSON_GetArraySize(b->doc);
    if (n < 1 || n > BATCH_MAX_MESSAGES) {
        snprintf(err, errlen, "a batch holds 1 to %d messages (this one %d)", BATCH_MAX_MESSAGES, n);
        return -1;
    }
    b->msgs = calloc((size_t)n, sizeof *b->msgs);
    b->bodies = calloc((size_t)n, sizeof *b->bodies);
    b->props = calloc((size_t)n, sizeof *b->props);
    if (!b->msgs || !b->bodies || !b->props) { snprintf(err, errlen, "out of memory"); return -1; }
    const cJSON *e;
    cJSON_ArrayForEach(e, b->doc) {
        size_t i = b->n++;
        iothub_msg_t *m = &b->msgs[i];
        const cJSON *bd = cJSON_GetObjectItemCaseSensitive(e, "body");
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(e, "properties");
        if (!cJSON_IsObject(e) || !cJSON_IsString(bd) || (pr && !cJSON_IsObject(pr))) {
            snprintf(err, errlen, "batch message %zu: expected {\"body\":\"<base64>\",\"properties\":{...}}", i + 1);
            return -1;
        }
        size_t bl = strlen(bd->valuestring);
        b->bodies[i] = malloc(bl / 4 * 3 + 1);
        long dl = b->bodies[i] ? base64_decode(bd->valuestring, bl, b->bodies[i]) : -1;
        if (dl < 0) {
            snprintf(err, errlen, "batch message %zu: body is not base64", i + 1);
            return -1;
        }
        m->body = b->bodies[i];
        m->body_len = (size_t)dl;
        int np = pr ? cJSON_GetArraySize(pr) : 0;
        if (np > IOTHUB_MAX_PROPS) {
            snprintf(err, errlen, "batch message %zu: more than %d properties", i + 1, IOTHUB_MAX_PROPS);
            return -1;
        }
        b->props[i] = np ? calloc((size_t)np, sizeof **b->props) : NULL;
        if (np && !b->props[i]) { snprintf(err, errlen, "out of memory"); return -1; }
        m->props = b->props[i];
        const cJSON *kv;
        cJSON_ArrayForEach(kv, pr) {
            const char *k = kv->string, *v = cJSON_IsString(kv) ? kv->valuestring : NULL;
            if (!k || !v) {
                snprintf(err, errlen, "batch message %zu: property values must be strings", i + 1);
                return -1;
            }
            const char **slot = NULL;
            if (strcasecmp(k, "iothub-messageid") == 0) slot = &m->message_id;
            else if (strcasecmp(k, "iothub-correlationid") == 0) slot = &m->correlation_id;
            else if (strcasecmp(k, "iothub-contenttype") == 0) slot = &m->content_type;
            else if (strcasecmp(k, "iothub-contentencoding") == 0) slot = &m->content_encoding;
            else if (strcasecmp(k, "iothub-userid") == 0) slot = &m->user_id;
            if (slot) {
                if (*slot) { snprintf(err, errlen, "batch message %zu: %.60s appears twice", i + 1, k); return -1; }
                *slot = v;
                continue;
            }
            if (strncasecmp(k, "iothub-app-", 11) != 0) {
                snprintf(err, errlen, "batch message %zu: property '%.60s' is neither iothub-app-<name> nor a "
                         "system property (iothub-messageid, -correlationid, -contenttype, -contentencoding)", i + 1, k);
                return -1;
            }
            const char *pn = k + 11;
            if (!iothub_prop_text_valid(pn, 1) || !iothub_prop_text_valid(v, 0)) {
                snprintf(err, errlen, "batch message %zu: application property %.60s: names and values may contain "
                         "only ASCII letters, digits and ! # $ %% & ' * + - . ^ _ ` | ~", i + 1, pn);
                return -1;
            }
            for (size_t j = 0; j < m->n_props; j++)
                if (strcasecmp(m->props[j].name, pn) == 0) {
                    snprintf(err, errlen, "batch message %zu: application property %.60s appears twice", i + 1, pn);
                    return -1;
                }
            b->props[i][m->n_props].name = pn;
            b->props[i][m->n_props].value = v;
            m->n_props++;
        }
    }
    return 0;
}

static int is_batch(const char *content_type)
{
    if (!content_type) return 0;
    while (*content_type == ' ') content_type++;
    size_t n = strlen(BATCH_TYPE);
    return strncasecmp(content_type, BATCH_TYPE, n) == 0 &&
           (content_type[n] == '\0' || content_type[n] == ';' || content_type[n] == ' ');
}

int iothub_d2c_handle(iothub_t *h, const iothub_http_req_t *req, iothub_http_resp_t *resp,
                      iothub_d2c_done_fn done, void *arg)
{
    char id[IOTHUB_DEVICE_ID_MAX + 1], err[600];
    const char *tail;
    if (!iothub_d2c_match(req->path) || split_path(req->path, id, &tail) != 0) {
        iothub_d2c_error(resp, IOTHUB_E_NOT_FOUND, 404, "NotFound",
                         "the local IoT Hub serves POST /devices/{id}/messages/events and GET "
                         "/devices/{id}/messages/deviceBound only");
        iothub_count_refused(h);
        return 1;
    }
    int events = strcasecmp(tail, "events") == 0;
    int bound = strcasecmp(tail, "devicebound") == 0;
    const char *method = req->method ? req->method : "";
    if (!events && !bound) {
        iothub_d2c_error(resp, IOTHUB_E_NOT_FOUND, 404, "NotFound",
                         "the local IoT Hub serves POST /devices/{id}/messages/events and GET "
                         "/devices/{id}/messages/deviceBound only");
        iothub_count_refused(h);
        return 1;
    }
    if ((events && strcmp(method, "POST") != 0) || (bound && strcmp(method, "GET") != 0)) {
        iothub_d2c_error(resp, IOTHUB_E_BAD_REQUEST, 405, "MethodNotAllowed",
                         events ? "messages/events takes POST" : "messages/deviceBound takes GET");
        snprintf(resp->allow, sizeof resp->allow, "%s", events ? "POST" : "GET");
        iothub_count_refused(h);
        return 1;
    }
    query_t q = {NULL};
    if (req->each) req->each(req->arg, IOTHUB_HTTP_QUERY, visit_query, &q);
    if (!api_version_ok(q.api_version)) {
        iothub_d2c_error(resp, IOTHUB_E_BAD_REQUEST, 400, "InvalidProtocolVersion",
                         q.api_version ? "api-version must look like 2021-04-12"
                                       : "BadRequest: the api-version query parameter is required (e.g. ?api-version=2021-04-12)");
        iothub_count_refused(h);
        return 1;
    }
    if (events && (req->body_truncated || req->body_len > IOTHUB_D2C_MAX_BODY)) {
        iothub_d2c_error(resp, IOTHUB_E_TOO_LARGE, 0, NULL, "Message size exceeds 262144 bytes, the IoT Hub limit");
        iothub_count_refused(h);
        return 1;
    }
    hdrs_t *hd = calloc(1, sizeof *hd);
    if (!hd) {
        iothub_d2c_error(resp, IOTHUB_E_UNAVAILABLE, 0, NULL, "out of memory");
        return 1;
    }
    if (req->each) req->each(req->arg, IOTHUB_HTTP_HEADER, visit_header, hd);
    iothub_status_t st;
    iothub_auth_t auth;
    if (!hd->authorization) {
        st = IOTHUB_E_UNAUTHORIZED;
        snprintf(err, sizeof err, "Authorization header missing (SharedAccessSignature sr=...&sig=...&se=...)");
        goto refused;
    }
    char path[IOTHUB_DEVICE_ID_MAX + 32];
    snprintf(path, sizeof path, "devices/%s/messages/%s", id, events ? "events" : "devicebound");
    st = iothub_authenticate(h, id, hd->authorization, strlen(hd->authorization), path, &auth, err, sizeof err);
    if (st != IOTHUB_OK) goto refused;
    if (bound) {
        /* no cloud-to-device messages in the local hub */
        free(hd);
        ok_204(resp);
        return 1;
    }
    if (hd->bad[0]) {
        st = IOTHUB_E_BAD_REQUEST;
        snprintf(err, sizeof err, "%s", hd->bad);
        goto refused;
    }
    iothub_d2c_batch_t b;
    memset(&b, 0, sizeof b);
    iothub_msg_t single;
    const iothub_msg_t *msgs = &single;
    size_t n = 1;
    if (is_batch(hd->content_type)) {
        if (req->body_len > IOTHUB_D2C_MAX_BODY || iothub_d2c_batch_parse(req->body, req->body_len, &b, err, sizeof err) != 0) {
            iothub_d2c_batch_free(&b);
            st = IOTHUB_E_BAD_REQUEST;
            goto refused;
        }
        msgs = b.msgs;
        n = b.n;
    } else {
        memset(&single, 0, sizeof single);
        single.message_id = hd->message_id;
        single.correlation_id = hd->correlation_id;
        single.content_type = hd->msg_content_type;
        single.content_encoding = hd->content_encoding;
        single.user_id = hd->user_id;
        single.props = hd->props;
        single.n_props = hd->n_props;
        single.body = req->body;
        single.body_len = req->body_len;
    }
    pending_t *p = malloc(sizeof *p);
    if (!p) {
        iothub_d2c_batch_free(&b);
        st = IOTHUB_E_UNAVAILABLE;
        snprintf(err, sizeof err, "out of memory");
        goto refused;
    }
    p->done = done;
    p->arg = arg;
    st = iothub_send(h, &auth, msgs, n, on_durable, p, err, sizeof err);
    iothub_d2c_batch_free(&b);
    free(hd);
    if (st == IOTHUB_OK) return 0;
    free(p);
    iothub_d2c_error(resp, st, 0, NULL, err);
    return 1;
refused:
    free(hd);
    iothub_count_refused(h);
    iothub_d2c_error(resp, st, 0, NULL, err);
    return 1;
}

typedef struct waiter {
    pthread_mutex_t    lock;
    pthread_cond_t     cond;
    int                done;
    iothub_http_resp_t *resp;
} waiter_t;

static void wake(void *arg, const iothub_http_resp_t *resp)
{
    waiter_t *w = arg;
    pthread_mutex_lock(&w->lock);
    *w->resp = *resp;
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void iothub_d2c_handle_wait(iothub_t *h, const iothub_http_req_t *req, iothub_http_resp_t *resp)
{
    waiter_t w = {.done = 0, .resp = resp};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    if (iothub_d2c_handle(h, req, resp, wake, &w) == 0) {
        pthread_mutex_lock(&w.lock);
        while (!w.done) pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
}
