/* table.c — the Table service HTTP exchange: client lifetime, connection pool, signed
 * requests with timeouts and retries, and the entity/table/query/$batch operations.
 *
 * Owns: everything that talks to the network for Table Storage. Connection strings live in
 * storage_account.c, signing in table_auth.c, typed properties and key rules in
 * table_props.c, the $batch wire format in table_batch.c.
 *
 * Connections: each client keeps a small locked pool of CURL easy handles. A thread takes
 * one for the duration of a request and gives it back, so each concurrently active thread
 * has its own keep-alive connection and no handle is ever used by two threads at once.
 * Retries: curl-level network failures (refused, reset, timeout, ...) and 5xx/408/429 are
 * retried with exponential backoff and full jitter up to opts.retries times, then reported
 * as TABLE_UNAVAILABLE. 409/412 and other 4xx are returned at once. Note that a retried
 * insert whose first attempt actually reached the service can come back 409. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/rand.h>

#include "azure/table.h"
#include "azure/table_internal.h"
#include "util/buf.h"
#include "util/log.h"

#define X_MS_VERSION "2019-02-02"
#define ACCEPT_JSON "application/json;odata=minimalmetadata"
#define MAX_RESPONSE_BYTES (64u * 1024u * 1024u)
#define TOKEN_MAX 4096
#define BACKOFF_CAP_MS 10000

typedef struct table_conn {
    CURL              *curl;
    buf_t              url;    /* request URL */
    buf_t              body;   /* response body */
    buf_t              scratch;/* string-to-sign, Authorization */
    buf_t              path;   /* request path and query, reused across requests */
    buf_t              query;
    buf_t              req;    /* request body */
    struct table_conn *next;
} table_conn_t;

struct table_client {
    storage_account_t acct;
    table_options_t   opts;
    char             *canon_prefix;   /* "/" + account + endpoint path, e.g. /devstoreaccount1/devstoreaccount1 */
    char             *auth_prefix;    /* "Authorization: SharedKey acct:" */
    pthread_mutex_t   lock;
    table_conn_t     *idle;           /* pool of idle connections */
};

typedef struct req {
    const char *verb;
    const char *path;          /* encoded resource path relative to the endpoint */
    const char *query;         /* encoded query string without '?', or NULL */
    const char *content_type;  /* NULL: no body */
    const char *body;
    size_t      body_len;
    const char *if_match;
    int         no_content;    /* send Prefer: return-no-content */
} req_t;

typedef struct resp {
    long status;
    int  etag_bad, token_bad;
    int  has_next_pk, has_next_rk;
    char etag[TABLE_ETAG_MAX];
    char next_pk[TOKEN_MAX];
    char next_rk[TOKEN_MAX];
} resp_t;

/* ---- small helpers ---------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;
static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static void res_init(table_result_t *res)
{
    memset(res, 0, sizeof(*res));
    res->batch_index = -1;
}

static table_status_t fail(table_result_t *res, table_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static table_status_t fail(table_result_t *res, table_status_t st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
    res->status = st;
    return st;
}

const char *table_status_name(table_status_t st)
{
    switch (st) {
    case TABLE_OK: return "ok";
    case TABLE_NOT_FOUND: return "not found (404)";
    case TABLE_CONFLICT: return "conflict (409)";
    case TABLE_PRECONDITION: return "precondition failed (412)";
    case TABLE_BAD_REQUEST: return "bad request (4xx)";
    case TABLE_AUTH: return "authorization failed (401/403)";
    case TABLE_UNAVAILABLE: return "service unavailable (retries exhausted)";
    case TABLE_INVALID_ARG: return "invalid argument (rejected before sending)";
    case TABLE_NOMEM: return "out of memory";
    case TABLE_PROTOCOL: return "unexpected response";
    }
    return "unknown status";
}

table_status_t table_status_from_http(long s)
{
    if (s >= 200 && s < 300) return TABLE_OK;
    if (s == 404) return TABLE_NOT_FOUND;
    if (s == 409) return TABLE_CONFLICT;
    if (s == 412) return TABLE_PRECONDITION;
    if (s == 401 || s == 403) return TABLE_AUTH;
    if (s >= 500 || s == 408 || s == 429) return TABLE_UNAVAILABLE;
    if (s >= 400) return TABLE_BAD_REQUEST;
    return TABLE_PROTOCOL;
}

static const char *mem_find(const char *h, size_t hn, const char *needle)
{
    size_t nn = strlen(needle);
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == needle[0] && memcmp(h + i, needle, nn) == 0) return h + i;
    return NULL;
}

/* buf_reset that also clears the sticky OOM flag: connection buffers are reused. */
static void breset(buf_t *b)
{
    buf_reset(b);
    b->oom = 0;
}

static void copy_trunc(char *dst, size_t dstlen, const char *s, size_t n)
{
    if (!dstlen) return;
    if (n >= dstlen) n = dstlen - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

void table_error_from_body(const char *body, size_t len, char *code, size_t codelen,
                           char *message, size_t msglen)
{
    if (codelen) code[0] = '\0';
    if (msglen) message[0] = '\0';
    if (!body || !len) return;
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (j) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "odata.error");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        if (cJSON_IsObject(m)) m = cJSON_GetObjectItemCaseSensitive(m, "value");
        if (cJSON_IsString(c)) copy_trunc(code, codelen, c->valuestring, strlen(c->valuestring));
        if (cJSON_IsString(m)) /* first line only: the rest is RequestId/Time */
            copy_trunc(message, msglen, m->valuestring, strcspn(m->valuestring, "\r\n"));
        cJSON_Delete(j);
        return;
    }
    /* XML errors (e.g. Azurite's 403): <Code>..</Code><Message>..</Message> */
    const char *end = body + len;
    const char *c = mem_find(body, len, "<Code>");
    if (c) {
        c += 6;
        const char *ce = mem_find(c, (size_t)(end - c), "</Code>");
        if (ce) copy_trunc(code, codelen, c, (size_t)(ce - c));
    }
    const char *m = mem_find(body, len, "<Message>");
    if (m) {
        m += 9;
        const char *me = mem_find(m, (size_t)(end - m), "</Message>");
        if (me) {
            size_t n = (size_t)(me - m), nl = 0;
            while (nl < n && m[nl] != '\n' && m[nl] != '\r') nl++;
            copy_trunc(message, msglen, m, nl);
        }
    }
}

/* ---- client ----------------------------------------------------------------------------- */

table_client_t *table_client_new(const char *connstr, const table_options_t *opts, char *err,
                                 size_t errlen)
{
    char e[256] = "";
    if (err && errlen) err[0] = '\0';
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        if (err && errlen) snprintf(err, errlen, "libcurl initialisation failed: %s",
                                    curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    table_client_t *tc = calloc(1, sizeof(*tc));
    if (!tc) {
        if (err && errlen) snprintf(err, errlen, "out of memory creating the table client");
        return NULL;
    }
    if (storage_account_parse(connstr, &tc->acct, e, sizeof(e)) != 0) {
        if (err && errlen) snprintf(err, errlen, "%s", e);
        free(tc);
        return NULL;
    }
    tc->opts.timeout_ms = 10000;
    tc->opts.connect_timeout_ms = 3000;
    tc->opts.retries = 3;
    tc->opts.retry_base_ms = 100;
    if (opts) {
        if (opts->timeout_ms > 0) tc->opts.timeout_ms = opts->timeout_ms;
        if (opts->connect_timeout_ms > 0) tc->opts.connect_timeout_ms = opts->connect_timeout_ms;
        if (opts->retries >= 0) tc->opts.retries = opts->retries > 20 ? 20 : opts->retries;
        if (opts->retry_base_ms > 0) tc->opts.retry_base_ms = opts->retry_base_ms;
    }
    /* canonical prefix: "/" + account + the endpoint's path (doubled account on Azurite) */
    const char *ep = tc->acct.table_endpoint;
    const char *host = strstr(ep, "://");
    const char *path = host ? strchr(host + 3, '/') : NULL;
    buf_t b = BUF_INIT;
    if (tc->acct.account_name) {
        buf_printf(&b, "/%s%s", tc->acct.account_name, path ? path : "");
        tc->canon_prefix = buf_steal(&b);
        buf_printf(&b, "Authorization: SharedKey %s:", tc->acct.account_name);
        tc->auth_prefix = buf_steal(&b);
        if (!tc->canon_prefix || !tc->auth_prefix) goto oom;
    }
    if (pthread_mutex_init(&tc->lock, NULL) != 0) goto oom;
    return tc;
oom:
    buf_free(&b);
    free(tc->canon_prefix);
    free(tc->auth_prefix);
    storage_account_free(&tc->acct);
    free(tc);
    if (err && errlen) snprintf(err, errlen, "out of memory creating the table client");
    return NULL;
}

static void conn_free(table_conn_t *c)
{
    if (!c) return;
    if (c->curl) curl_easy_cleanup(c->curl);
    buf_free(&c->url);
    buf_free(&c->body);
    buf_free(&c->scratch);
    buf_free(&c->path);
    buf_free(&c->query);
    buf_free(&c->req);
    free(c);
}

void table_client_free(table_client_t *tc)
{
    if (!tc) return;
    table_conn_t *c = tc->idle;
    while (c) {
        table_conn_t *n = c->next;
        conn_free(c);
        c = n;
    }
    pthread_mutex_destroy(&tc->lock);
    free(tc->canon_prefix);
    free(tc->auth_prefix);
    storage_account_free(&tc->acct);
    free(tc);
}

const char *table_client_endpoint(const table_client_t *tc)
{
    return tc ? tc->acct.table_endpoint : "";
}

static table_conn_t *conn_get(table_client_t *tc)
{
    pthread_mutex_lock(&tc->lock);
    table_conn_t *c = tc->idle;
    if (c) tc->idle = c->next;
    pthread_mutex_unlock(&tc->lock);
    if (c) {
        c->next = NULL;
        return c;
    }
    c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return NULL;
    }
    return c;
}

static void conn_put(table_client_t *tc, table_conn_t *c)
{
    if (!c) return;
    /* keep the pool's memory bounded after a huge response */
    if (c->body.cap > (1u << 20)) buf_free(&c->body);
    if (c->req.cap > (1u << 20)) buf_free(&c->req);
    pthread_mutex_lock(&tc->lock);
    c->next = tc->idle;
    tc->idle = c;
    pthread_mutex_unlock(&tc->lock);
}

/* ---- one HTTP exchange ------------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    buf_t *b = arg;
    size_t len = size * n;
    if (b->len + len > MAX_RESPONSE_BYTES) return 0;
    return buf_append(b, p, len) == 0 ? len : 0;
}

static int header_value(const char *p, size_t n, const char *name, const char **v, size_t *vn)
{
    size_t nl = strlen(name);
    if (n <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0) return 0;
    const char *s = p + nl + 1, *e = p + n;
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
    *v = s;
    *vn = (size_t)(e - s);
    return 1;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t len = size * n;
    const char *v;
    size_t vn;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* a new response (e.g. after 100 Continue): forget earlier headers */
        r->etag[0] = r->next_pk[0] = r->next_rk[0] = '\0';
        r->etag_bad = r->token_bad = r->has_next_pk = r->has_next_rk = 0;
    } else if (header_value(p, len, "ETag", &v, &vn)) {
        if (vn >= sizeof(r->etag)) r->etag_bad = 1;
        else { memcpy(r->etag, v, vn); r->etag[vn] = '\0'; }
    } else if (header_value(p, len, "x-ms-continuation-NextPartitionKey", &v, &vn)) {
        if (vn >= sizeof(r->next_pk)) r->token_bad = 1;
        else { memcpy(r->next_pk, v, vn); r->next_pk[vn] = '\0'; r->has_next_pk = 1; }
    } else if (header_value(p, len, "x-ms-continuation-NextRowKey", &v, &vn)) {
        if (vn >= sizeof(r->next_rk)) r->token_bad = 1;
        else { memcpy(r->next_rk, v, vn); r->next_rk[vn] = '\0'; r->has_next_rk = 1; }
    }
    return len;
}

static int transient_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static void backoff_sleep(const table_client_t *tc, int attempt)
{
    static _Thread_local unsigned seed;
    if (!seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (unsigned)ts.tv_nsec ^ (unsigned)(uintptr_t)&ts ^ 0x9e3779b9u;
        if (!seed) seed = 1;
    }
    long d = tc->opts.retry_base_ms;
    for (int i = 1; i < attempt && d < BACKOFF_CAP_MS; i++) d *= 2;
    if (d > BACKOFF_CAP_MS) d = BACKOFF_CAP_MS;
    /* "equal jitter": half fixed, half random */
    long ms = d / 2 + (long)(rand_r(&seed) % (unsigned)(d / 2 + 1));
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Perform one attempt. Returns the CURLcode; the status is in r->status. */
static CURLcode perform(table_client_t *tc, table_conn_t *c, const req_t *q, resp_t *r,
                        char *errbuf)
{
    char date[40], sig[64];
    struct curl_slist *h = NULL, *t;
    CURL *cu = c->curl;
    CURLcode cc;
    char line[TABLE_ETAG_MAX + 64];

    r->status = 0;
    r->etag_bad = r->token_bad = r->has_next_pk = r->has_next_rk = 0;
    r->etag[0] = r->next_pk[0] = r->next_rk[0] = '\0';
    breset(&c->body);
    errbuf[0] = '\0';

    table_rfc1123_now(date, sizeof(date));
#define ADDH(s) do { t = curl_slist_append(h, (s)); if (!t) goto nomem; h = t; } while (0)
    snprintf(line, sizeof(line), "x-ms-date: %s", date);
    ADDH(line);
    ADDH("x-ms-version: " X_MS_VERSION);
    ADDH("Accept: " ACCEPT_JSON);
    ADDH("DataServiceVersion: 3.0;NetFx");
    ADDH("MaxDataServiceVersion: 3.0;NetFx");
    ADDH("Expect:");
    if (q->content_type) {
        snprintf(line, sizeof(line), "Content-Type: %s", q->content_type);
        ADDH(line);
    } else {
        ADDH("Content-Type:");  /* never let libcurl invent one */
    }
    if (q->if_match) {
        snprintf(line, sizeof(line), "If-Match: %s", q->if_match);
        ADDH(line);
    }
    if (q->no_content) ADDH("Prefer: return-no-content");
    if (!tc->acct.sas) {
        buf_t *s = &c->scratch;
        breset(s);
        buf_puts(s, q->verb);
        buf_puts(s, "\n\n");
        buf_puts(s, q->content_type ? q->content_type : "");
        buf_putc(s, '\n');
        buf_puts(s, date);
        buf_putc(s, '\n');
        buf_puts(s, tc->canon_prefix);
        buf_putc(s, '/');
        buf_puts(s, q->path);
        if (s->oom) goto nomem;
        if (table_sign(tc->acct.key, tc->acct.key_len, buf_str(s), sig, sizeof(sig)) != 0) goto nomem;
        breset(s);
        buf_puts(s, tc->auth_prefix);
        buf_puts(s, sig);
        if (s->oom) goto nomem;
        ADDH(buf_str(s));
        breset(s);
    }
#undef ADDH

    curl_easy_reset(cu);
    curl_easy_setopt(cu, CURLOPT_URL, buf_str(&c->url));
    curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, (long)tc->opts.timeout_ms);
    curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT_MS, (long)tc->opts.connect_timeout_ms);
    curl_easy_setopt(cu, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, &c->body);
    curl_easy_setopt(cu, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(cu, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, errbuf);
    if (q->content_type) {
        curl_easy_setopt(cu, CURLOPT_POSTFIELDS, q->body ? q->body : "");
        curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        if (strcmp(q->verb, "POST") != 0) curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, q->verb);
    } else if (strcmp(q->verb, "GET") != 0) {
        curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, q->verb);
    }
    cc = curl_easy_perform(cu);
    if (cc == CURLE_OK) curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &r->status);
    /* the handle must not keep pointers into this stack frame */
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(cu, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(h);
    return cc;
nomem:
    curl_slist_free_all(h);
    return CURLE_OUT_OF_MEMORY;
}

/* Build the URL, run the request with retries and fill res (status, message) for anything
 * but a 2xx. Returns the table status of the final attempt. The response body stays in
 * c->body for the caller. `what` names the operation in messages. */
static table_status_t request(table_client_t *tc, table_conn_t *c, const req_t *q, resp_t *r,
                              const char *what, table_result_t *res)
{
    char errbuf[CURL_ERROR_SIZE];
    const char *ep = tc->acct.table_endpoint;

    breset(&c->url);
    buf_puts(&c->url, ep);
    buf_putc(&c->url, '/');
    buf_puts(&c->url, q->path);
    if (q->query && *q->query) {
        buf_putc(&c->url, '?');
        buf_puts(&c->url, q->query);
    }
    if (tc->acct.sas) {
        buf_putc(&c->url, q->query && *q->query ? '&' : '?');
        buf_puts(&c->url, tc->acct.sas);
    }
    if (c->url.oom) return fail(res, TABLE_NOMEM, "out of memory building the request URL");

    int max_attempts = tc->opts.retries + 1;
    for (int attempt = 1;; attempt++) {
        res->attempts = attempt;
        CURLcode cc = perform(tc, c, q, r, errbuf);
        if (cc == CURLE_OUT_OF_MEMORY)
            return fail(res, TABLE_NOMEM, "out of memory sending %s", what);
        if (cc != CURLE_OK) {
            res->http_status = 0;
            const char *why = errbuf[0] ? errbuf : curl_easy_strerror(cc);
            if (cc == CURLE_WRITE_ERROR)
                return fail(res, TABLE_PROTOCOL, "%s: response from %s larger than %u bytes or "
                            "out of memory", what, ep, MAX_RESPONSE_BYTES);
            if (transient_curl(cc) && attempt < max_attempts) {
                log_debug(NULL, "table: %s attempt %d failed (%s); retrying", what, attempt, why);
                backoff_sleep(tc, attempt);
                continue;
            }
            if (transient_curl(cc))
                return fail(res, TABLE_UNAVAILABLE, "Table service at %s unreachable after %d "
                            "attempt%s: %s", ep, attempt, attempt == 1 ? "" : "s", why);
            return fail(res, TABLE_UNAVAILABLE, "%s: request to %s failed: %s (check the "
                        "endpoint and TLS settings)", what, ep, why);
        }
        res->http_status = (int)r->status;
        table_status_t st = table_status_from_http(r->status);
        if (st == TABLE_UNAVAILABLE && attempt < max_attempts) {
            log_debug(NULL, "table: %s attempt %d got HTTP %ld; retrying", what, attempt, r->status);
            backoff_sleep(tc, attempt);
            continue;
        }
        if (st == TABLE_OK) {
            res->status = TABLE_OK;
            return TABLE_OK;
        }
        char msg[200];
        table_error_from_body(c->body.data, c->body.len, res->code, sizeof(res->code), msg,
                              sizeof(msg));
        if (st == TABLE_UNAVAILABLE)
            return fail(res, st, "Table service at %s failing: %s got HTTP %ld %s after %d "
                        "attempts: %s", ep, what, r->status, res->code, attempt, msg);
        if (st == TABLE_AUTH)
            return fail(res, st, "%s: HTTP %ld %s: check the account name and key (or SAS "
                        "permissions and expiry) of the storage connection string; %s",
                        what, r->status, res->code, msg);
        return fail(res, st, "%s: HTTP %ld %s%s%s", what, r->status, res->code,
                    msg[0] ? ": " : "", msg);
    }
}

static table_status_t with_conn(table_client_t *tc, table_conn_t **c, table_result_t *res)
{
    *c = conn_get(tc);
    if (!*c) return fail(res, TABLE_NOMEM, "out of memory creating an HTTP connection");
    return TABLE_OK;
}

static void key_path(buf_t *b, const char *table, const char *pk, const char *rk)
{
    breset(b);
    buf_puts(b, table);
    buf_puts(b, "(PartitionKey='");
    table_key_escape(b, pk);
    buf_puts(b, "',RowKey='");
    table_key_escape(b, rk);
    buf_puts(b, "')");
}

#define RES_SETUP(res) \
    table_result_t res_local_; \
    if (!(res)) (res) = &res_local_; \
    res_init(res)

static table_status_t check_table(const char *table, table_result_t *res)
{
    char why[128];
    if (!table_name_valid(table, why, sizeof(why)))
        return fail(res, TABLE_INVALID_ARG, "invalid table name: %s", why);
    return TABLE_OK;
}

/* ---- tables ------------------------------------------------------------------------------ */

table_status_t table_create_if_missing(table_client_t *tc, const char *table, table_result_t *res)
{
    RES_SETUP(res);
    if (!tc) return fail(res, TABLE_INVALID_ARG, "table client is NULL");
    if (check_table(table, res) != TABLE_OK) return res->status;
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"TableName\":\"%s\"}", table);
    req_t q = {.verb = "POST", .path = "Tables", .content_type = "application/json",
               .body = body, .body_len = (size_t)n, .no_content = 1};
    resp_t r;
    table_conn_t *c;
    if (with_conn(tc, &c, res) != TABLE_OK) return res->status;
    char what[128];
    snprintf(what, sizeof(what), "create table %s", table);
    table_status_t st = request(tc, c, &q, &r, what, res);
    conn_put(tc, c);
    if (st == TABLE_CONFLICT && strcmp(res->code, "TableBeingDeleted") != 0) {
        res->status = TABLE_OK;
        res->message[0] = '\0';
        return TABLE_OK;
    }
    return st;
}

table_status_t table_delete_table(table_client_t *tc, const char *table, table_result_t *res)
{
    RES_SETUP(res);
    if (!tc) return fail(res, TABLE_INVALID_ARG, "table client is NULL");
    if (check_table(table, res) != TABLE_OK) return res->status;
    char path[96], what[128];
    snprintf(path, sizeof(path), "Tables('%s')", table);
    snprintf(what, sizeof(what), "delete table %s", table);
    req_t q = {.verb = "DELETE", .path = path};
    resp_t r;
    table_conn_t *c;
    if (with_conn(tc, &c, res) != TABLE_OK) return res->status;
    table_status_t st = request(tc, c, &q, &r, what, res);
    conn_put(tc, c);
    return st;
}

/* ---- entities ---------------------------------------------------------------------------- */

table_status_t table_get_entity(table_client_t *tc, const char *table, const char *pk,
                                const char *rk, const char *select, cJSON **entity_out,
                                char *etag_out, table_result_t *res)
{
    RES_SETUP(res);
    char why[160];
    if (entity_out) *entity_out = NULL;
    if (etag_out) etag_out[0] = '\0';
    if (!tc || !entity_out) return fail(res, TABLE_INVALID_ARG, "table_get_entity: NULL argument");
    if (check_table(table, res) != TABLE_OK) return res->status;
    if (!table_key_valid(pk, why, sizeof(why)))
        return fail(res, TABLE_INVALID_ARG, "get %s: invalid PartitionKey: %s", table, why);
    if (!table_key_valid(rk, why, sizeof(why)))
        return fail(res, TABLE_INVALID_ARG, "get %s: invalid RowKey: %s", table, why);

    table_conn_t *c;
    table_status_t st;
    if ((st = with_conn(tc, &c, res)) != TABLE_OK) return st;
    breset(&c->query);
    key_path(&c->path, table, pk, rk);
    if (select && *select) {
        buf_puts(&c->query, "$select=");
        table_pct_encode(&c->query, select);
    }
    if (c->path.oom || c->query.oom) {
        st = fail(res, TABLE_NOMEM, "out of memory");
        goto out;
    }
    req_t q = {.verb = "GET", .path = buf_str(&c->path), .query = buf_str(&c->query)};
    resp_t r;
    char what[96];
    snprintf(what, sizeof(what), "get entity from %s", table);
    st = request(tc, c, &q, &r, what, res);
    if (st == TABLE_OK) {
        cJSON *e = cJSON_ParseWithLength(c->body.data ? c->body.data : "", c->body.len);
        if (!cJSON_IsObject(e)) {
            cJSON_Delete(e);
            st = fail(res, TABLE_PROTOCOL, "%s: HTTP %ld with a body that is not a JSON object",
                      what, r.status);
        } else if (r.etag_bad) {
            cJSON_Delete(e);
            st = fail(res, TABLE_PROTOCOL, "%s: ETag longer than %d bytes", what, TABLE_ETAG_MAX - 1);
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(e, "odata.metadata");
            if (etag_out) {
                const char *be = table_get_string(e, "odata.etag");
                if (r.etag[0]) snprintf(etag_out, TABLE_ETAG_MAX, "%s", r.etag);
                else if (be && strlen(be) < TABLE_ETAG_MAX) snprintf(etag_out, TABLE_ETAG_MAX, "%s", be);
            }
            *entity_out = e;
        }
    }
out:
    conn_put(tc, c);
    return st;
}

/* Shared by insert, merge and replace. */
static table_status_t write_entity(table_client_t *tc, const char *verb, const char *table,
                                   const cJSON *entity, const char *if_match, char *etag_out,
                                   table_result_t *res)
{
    char why[200], what[96];
    const char *pk, *rk;
    int insert = strcmp(verb, "POST") == 0;
    if (etag_out) etag_out[0] = '\0';
    if (!tc) return fail(res, TABLE_INVALID_ARG, "table client is NULL");
    if (check_table(table, res) != TABLE_OK) return res->status;
    snprintf(what, sizeof(what), "%s %s", insert ? "insert into" :
             strcmp(verb, "MERGE") == 0 ? "merge into" : "replace in", table);
    if (table_entity_keys(entity, &pk, &rk, why, sizeof(why)) != 0)
        return fail(res, TABLE_INVALID_ARG, "%s: %s", what, why);
    if (if_match && !table_etag_ok(if_match))
        return fail(res, TABLE_INVALID_ARG, "%s: If-Match ETag is empty, too long or contains "
                    "control characters", what);

    table_conn_t *c;
    if (with_conn(tc, &c, res) != TABLE_OK) return res->status;
    table_status_t st;
    breset(&c->path);
    breset(&c->req);
    if (insert) buf_puts(&c->path, table);
    else key_path(&c->path, table, pk, rk);
    if (c->path.oom || table_entity_print(&c->req, entity) != 0 || c->req.oom) {
        st = fail(res, TABLE_NOMEM, "%s: out of memory serialising the entity", what);
        goto out;
    }
    req_t q = {.verb = verb, .path = buf_str(&c->path), .content_type = "application/json",
               .body = c->req.data, .body_len = c->req.len, .if_match = if_match,
               .no_content = insert};
    resp_t r;
    st = request(tc, c, &q, &r, what, res);
    if (st == TABLE_OK) {
        if (r.etag_bad || !r.etag[0])
            st = fail(res, TABLE_PROTOCOL, "%s: HTTP %ld without a usable ETag header", what, r.status);
        else if (etag_out)
            snprintf(etag_out, TABLE_ETAG_MAX, "%s", r.etag);
    }
out:
    conn_put(tc, c);
    return st;
}

table_status_t table_insert_entity(table_client_t *tc, const char *table, const cJSON *entity,
                                   char *etag_out, table_result_t *res)
{
    RES_SETUP(res);
    return write_entity(tc, "POST", table, entity, NULL, etag_out, res);
}

table_status_t table_merge_entity(table_client_t *tc, const char *table, const cJSON *entity,
                                  const char *if_match, char *etag_out, table_result_t *res)
{
    RES_SETUP(res);
    return write_entity(tc, "MERGE", table, entity, if_match, etag_out, res);
}

table_status_t table_replace_entity(table_client_t *tc, const char *table, const cJSON *entity,
                                    const char *if_match, char *etag_out, table_result_t *res)
{
    RES_SETUP(res);
    return write_entity(tc, "PUT", table, entity, if_match, etag_out, res);
}

table_status_t table_delete_entity(table_client_t *tc, const char *table, const char *pk,
                                   const char *rk, const char *if_match, table_result_t *res)
{
    RES_SETUP(res);
    char why[160], what[96];
    if (!tc) return fail(res, TABLE_INVALID_ARG, "table client is NULL");
    if (check_table(table, res) != TABLE_OK) return res->status;
    snprintf(what, sizeof(what), "delete from %s", table);
    if (!table_key_valid(pk, why, sizeof(why)))
        return fail(res, TABLE_INVALID_ARG, "%s: invalid PartitionKey: %s", what, why);
    if (!table_key_valid(rk, why, sizeof(why)))
        return fail(res, TABLE_INVALID_ARG, "%s: invalid RowKey: %s", what, why);
    if (if_match && !table_etag_ok(if_match))
        return fail(res, TABLE_INVALID_ARG, "%s: If-Match ETag is empty, too long or contains "
                    "control characters", what);
    table_conn_t *c;
    table_status_t st = with_conn(tc, &c, res);
    if (st != TABLE_OK) return st;
    key_path(&c->path, table, pk, rk);
    if (c->path.oom) {
        st = fail(res, TABLE_NOMEM, "out of memory");
    } else {
        req_t q = {.verb = "DELETE", .path = buf_str(&c->path), .if_match = if_match ? if_match : "*"};
        resp_t r;
        st = request(tc, c, &q, &r, what, res);
    }
    conn_put(tc, c);
    return st;
}

/* ---- query -------------------------------------------------------------------------------- */

table_status_t table_query(table_client_t *tc, const char *table, const char *filter,
                           const char *select, table_row_fn fn, void *arg, table_result_t *res)
{
    RES_SETUP(res);
    if (!tc || !fn) return fail(res, TABLE_INVALID_ARG, "table_query: NULL argument");
    if (check_table(table, res) != TABLE_OK) return res->status;

    char what[96];
    snprintf(what, sizeof(what), "query %s", table);
    buf_t path = BUF_INIT, base = BUF_INIT, query = BUF_INIT;
    buf_puts(&path, table);
    buf_puts(&path, "()");
    if (filter && *filter) {
        buf_puts(&base, "$filter=");
        table_pct_encode(&base, filter);
    }
    if (select && *select) {
        if (base.len) buf_putc(&base, '&');
        buf_puts(&base, "$select=");
        table_pct_encode(&base, select);
    }
    /* the continuation tokens of the previous page, copied out of the response */
    char *npk = malloc(TOKEN_MAX), *nrk = malloc(TOKEN_MAX);
    resp_t *r = malloc(sizeof(*r));
    table_conn_t *c = NULL;
    table_status_t st;
    int has_pk = 0, has_rk = 0, pages = 0, total = 0;
    if (!npk || !nrk || !r || path.oom || base.oom) {
        st = fail(res, TABLE_NOMEM, "%s: out of memory", what);
        goto out;
    }
    if ((st = with_conn(tc, &c, res)) != TABLE_OK) goto out;
    for (;;) {
        breset(&query);
        buf_puts(&query, buf_str(&base));
        if (has_pk) {
            if (query.len) buf_putc(&query, '&');
            buf_puts(&query, "NextPartitionKey=");
            table_pct_encode(&query, npk);
            if (has_rk) {
                buf_puts(&query, "&NextRowKey=");
                table_pct_encode(&query, nrk);
            }
        }
        if (query.oom) { st = fail(res, TABLE_NOMEM, "%s: out of memory", what); break; }
        req_t q = {.verb = "GET", .path = buf_str(&path), .query = buf_str(&query)};
        st = request(tc, c, &q, r, what, res);
        if (st != TABLE_OK) break;
        pages++;
        if (r->token_bad) {
            st = fail(res, TABLE_PROTOCOL, "%s: continuation token longer than %d bytes", what,
                      TOKEN_MAX - 1);
            break;
        }
        cJSON *page = cJSON_ParseWithLength(c->body.data ? c->body.data : "", c->body.len);
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(page, "value");
        if (!cJSON_IsArray(value)) {
            cJSON_Delete(page);
            st = fail(res, TABLE_PROTOCOL, "%s: page %d is not {\"value\":[...]} JSON", what, pages);
            break;
        }
        int stop = 0;
        for (const cJSON *e = value->child; e && !stop; e = e->next) {
            if (!cJSON_IsObject(e)) continue;
            total++;
            stop = fn(e, arg);
        }
        cJSON_Delete(page);
        if (stop || !r->has_next_pk) break;
        if (has_pk && strcmp(npk, r->next_pk) == 0 && has_rk == r->has_next_rk &&
            (!has_rk || strcmp(nrk, r->next_rk) == 0)) {
            st = fail(res, TABLE_PROTOCOL, "%s: the service returned the same continuation "
                      "token twice; stopping to avoid an endless loop", what);
            break;
        }
        has_pk = 1;
        memcpy(npk, r->next_pk, strlen(r->next_pk) + 1);
        has_rk = r->has_next_rk;
        memcpy(nrk, r->next_rk, strlen(r->next_rk) + 1);
    }
    res->pages = pages;
    log_debug(NULL, "table: %s returned %d entities in %d pages", what, total, pages);
out:
    if (c) conn_put(tc, c);
    free(npk);
    free(nrk);
    free(r);
    buf_free(&path);
    buf_free(&base);
    buf_free(&query);
    return st;
}

/* ---- $batch -------------------------------------------------------------------------------- */

static void random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    if (nbytes > sizeof(raw)) nbytes = sizeof(raw);
    if (RAND_bytes(raw, (int)nbytes) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned s = (unsigned)ts.tv_nsec ^ (unsigned)ts.tv_sec;
        for (size_t i = 0; i < nbytes; i++) raw[i] = (unsigned char)rand_r(&s);
    }
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

table_status_t table_batch(table_client_t *tc, const char *table, table_batch_op_t *ops,
                           size_t n_ops, table_result_t *res)
{
    RES_SETUP(res);
    char err[256], what[96];
    int bad;
    if (!tc) return fail(res, TABLE_INVALID_ARG, "table client is NULL");
    if (check_table(table, res) != TABLE_OK) return res->status;
    snprintf(what, sizeof(what), "$batch on %s", table);
    if (table_batch_validate(ops, n_ops, &bad, err, sizeof(err)) != 0) {
        res->batch_index = bad;
        return fail(res, TABLE_INVALID_ARG, "%s rejected before sending: %s", what, err);
    }
    for (size_t i = 0; i < n_ops; i++) ops[i].etag[0] = '\0';

    char bb[48] = "batch_", cb[48] = "changeset_", ctype[96];
    random_hex(bb + 6, 16);
    random_hex(cb + 10, 16);
    snprintf(ctype, sizeof(ctype), "multipart/mixed; boundary=%s", bb);

    table_status_t st;
    table_conn_t *c = NULL;
    if ((st = with_conn(tc, &c, res)) != TABLE_OK) return st;
    buf_t *url = &c->path, *body = &c->req;
    breset(url);
    breset(body);
    buf_printf(url, "%s/%s", tc->acct.table_endpoint, table);
    if (url->oom || buf_reserve(body, n_ops * 512) != 0 ||
        table_batch_build(body, buf_str(url), ops, n_ops, bb, cb) != 0) {
        st = fail(res, TABLE_NOMEM, "%s: out of memory building the request", what);
        goto out;
    }
    req_t q = {.verb = "POST", .path = "$batch", .content_type = ctype, .body = body->data,
               .body_len = body->len};
    resp_t r;
    st = request(tc, c, &q, &r, what, res);
    if (st == TABLE_OK) {
        if (r.status != 202) {
            st = fail(res, TABLE_PROTOCOL, "%s: expected HTTP 202, got %ld", what, r.status);
        } else {
            st = table_batch_parse(c->body.data, c->body.len, ops, n_ops, res);
            res->status = st;
            if (st != TABLE_OK && res->message[0] == '\0')
                fail(res, st, "%s failed", what);
            else if (st != TABLE_OK) {
                char m[sizeof(res->message)];
                snprintf(m, sizeof(m), "%s", res->message);
                fail(res, st, "%s: %s", what, m);
            }
        }
    }
out:
    conn_put(tc, c);
    return st;
}
