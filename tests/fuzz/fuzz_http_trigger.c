/* fuzz_http_trigger.c — HTTP requests to `devhost start`'s functions as the host hands them to
 * the custom handler (src/devhost/host/http_trigger.c): Data.<req> (dh_http_request_object:
 * Url, Method, Query, Headers, Params, Identities, Body) and the trigger's Metadata
 * (dh_http_metadata: top-level scalars of a JSON body, query arguments, route values, the
 * Query and Headers dictionaries). Every anonymous request to /api/negotiate goes this way.
 *
 * Input: a flags byte, then NUL-separated fields method, request URI, headers ("Name: value"
 * lines), route values (a JSON object, or anything else for none), body. Flags: bit 0 HTTPS,
 * bit 1 Content-Length absent (chunked), bit 2 the body was too large, bits 3-4 the identity.
 *
 * Invariants: both objects exist and print as JSON that reads back as the same value and is
 * valid UTF-8 (the handler is given what the host would give: the host's strings are UTF-16);
 * Url is scheme://host + the raw path and query; Method as received; Query has every argument
 * name, its value ending with the argument's last value; Headers hold every header value, in
 * arrays, and no other; Body present exactly when the request had a readable body, the base64
 * of it for binary media types; Metadata holds the Query and Headers dictionaries (or values
 * of that name), every route value, and every query argument but "code" unless a route value
 * of that name took its place. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <strings.h>

#include "devhost/host/common.h"
#include "devhost/host/http_msg.h"
#include "devhost/host/http_trigger.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/utf8.h"

/* obj's member named key (as valid UTF-8, the way the host decodes it), ASCII
 * case-insensitive (cJSON_GetObjectItem is). */
static const cJSON *get_ci(const cJSON *obj, const char *key)
{
    buf_t b = BUF_INIT;
    dh_put_utf8_lossy(&b, key, strlen(key));
    if (b.oom) abort();
    const cJSON *v = cJSON_GetObjectItem(obj, buf_str(&b));
    buf_free(&b);
    return v;
}

static void check_json(const cJSON *v, const char *what)
{
    char *p = cJSON_PrintUnformatted(v);
    if (!p) abort();
    FUZZ_CHECK(utf8_valid(p, strlen(p)), "%s is not valid UTF-8: %.200s", what, p);
    cJSON *back = cJSON_Parse(p);
    char *q = back ? cJSON_PrintUnformatted(back) : NULL;
    FUZZ_CHECK(q && strcmp(p, q) == 0, "%s does not read back as itself", what);
    cJSON_Delete(back);
    free(p);
    free(q);
}

static int ends_with(const char *s, const char *t)
{
    size_t a = strlen(s), b = strlen(t);
    return a >= b && strcmp(s + a - b, t) == 0;
}

static void check_request(const dh_http_req_t *r, const cJSON *o, const cJSON *params)
{
    check_json(o, "Data.req");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(o, "Url");
    FUZZ_CHECK(cJSON_IsString(url), "no Url");
    char head[400];
    snprintf(head, sizeof head, "%s://%s", r->https ? "https" : "http", r->host);
    /* compared only when the parts are text cJSON can carry as they are */
    if (utf8_valid(r->raw_path, strlen(r->raw_path)) && utf8_valid(r->raw_query, strlen(r->raw_query)))
        FUZZ_CHECK(strncmp(url->valuestring, head, strlen(head)) == 0 &&
                       strncmp(url->valuestring + strlen(head), r->raw_path, strlen(r->raw_path)) == 0,
                   "Url %s", url->valuestring);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "Method");
    FUZZ_CHECK(cJSON_IsString(m), "no Method");
    if (utf8_valid(r->method, strlen(r->method))) FUZZ_CHECK(strcmp(m->valuestring, r->method) == 0, "Method");

    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "Query");
    FUZZ_CHECK(cJSON_IsObject(q), "no Query");
    for (size_t i = 0; i < r->nquery; i++) {
        const cJSON *v = get_ci(q, r->query[i].name);
        FUZZ_CHECK(cJSON_IsString(v), "query argument %s missing", r->query[i].name);
        size_t last = r->nquery;
        for (size_t k = 0; k < r->nquery; k++)
            if (strcasecmp(r->query[k].name, r->query[i].name) == 0) last = k;
        if (utf8_valid(r->query[last].value, strlen(r->query[last].value)))
            FUZZ_CHECK(ends_with(v->valuestring, r->query[last].value), "Query.%s = %s", r->query[i].name,
                       v->valuestring);
    }

    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "Headers");
    FUZZ_CHECK(cJSON_IsObject(h), "no Headers");
    int values = 0;
    for (const cJSON *a = h->child; a; a = a->next) {
        FUZZ_CHECK(cJSON_IsArray(a), "Headers.%s is not an array", a->string);
        values += cJSON_GetArraySize(a);
    }
    FUZZ_CHECK((size_t)values == r->nheaders, "%d header values for %zu headers", values, r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++)
        FUZZ_CHECK(cJSON_IsArray(get_ci(h, r->headers[i].name)), "header %s missing", r->headers[i].name);

    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "Params");
    FUZZ_CHECK(cJSON_IsObject(p), "no Params");
    FUZZ_CHECK(cJSON_GetArraySize(p) == (params ? cJSON_GetArraySize(params) : 0), "Params size");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "Identities");  /* pre-rendered text */
    FUZZ_CHECK(cJSON_IsArray(ids) || (cJSON_IsRaw(ids) && ids->valuestring[0] == '['), "no Identities");

    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "Body");
    int want_body = r->content_length > 0 && !r->body_too_large;
    FUZZ_CHECK(!b == !want_body, "Body %s", b ? "present" : "missing");
    if (!b) return;
    FUZZ_CHECK(cJSON_IsString(b), "Body is not a string");
    const char *ct = NULL;
    for (size_t i = 0; i < r->nheaders && !ct; i++)
        if (strcasecmp(r->headers[i].name, "Content-Type") == 0) ct = r->headers[i].value;
    while (ct && *ct == ' ') ct++;
    int binary = ct && (strncasecmp(ct, "application/octet-stream", 24) == 0 || strncasecmp(ct, "multipart/", 10) == 0);
    if (binary) {
        size_t bl = strlen(b->valuestring);
        unsigned char *dec = malloc(bl / 4 * 3 + 3);
        if (!dec) abort();
        long n = base64_decode(b->valuestring, bl, dec);
        FUZZ_CHECK(n >= 0 && (size_t)n == r->body_len && (n == 0 || memcmp(dec, r->body, (size_t)n) == 0),
                   "binary Body is not the body");
        free(dec);
    } else if (utf8_valid(r->body, r->body_len) && !memchr(r->body, '\0', r->body_len)) {
        const char *s = r->body;
        if (r->body_len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;
        FUZZ_CHECK(strcmp(b->valuestring, s) == 0, "text Body is not the body");
    }
}

static void check_metadata(const dh_http_req_t *r, const cJSON *md, const cJSON *params)
{
    check_json(md, "Metadata");
    FUZZ_CHECK(cJSON_IsObject(md), "Metadata is not an object");
    FUZZ_CHECK(get_ci(md, "Query") && get_ci(md, "Headers"), "Metadata without Query or Headers");
    for (const cJSON *p = params ? params->child : NULL; p; p = p->next)
        if (cJSON_IsString(p)) FUZZ_CHECK(cJSON_IsString(get_ci(md, p->string)), "route value %s missing", p->string);
    for (size_t i = 0; i < r->nquery; i++) {
        if (strcasecmp(r->query[i].name, "code") == 0) continue;
        FUZZ_CHECK(get_ci(md, r->query[i].name), "query argument %s missing from Metadata", r->query[i].name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned flags = data[0];
    const uint8_t *f[5];
    size_t fl[5];
    fuzz_fields(data + 1, size - 1, 5, f, fl);
    char *method = fuzz_strndup(f[0] ? f[0] : (const uint8_t *)"", fl[0]);
    char *uri = fuzz_strndup(f[1] ? f[1] : (const uint8_t *)"/", fl[1]);
    char *hdrs = fuzz_strndup(f[2] ? f[2] : (const uint8_t *)"", fl[2]);
    cJSON *params = f[3] ? cJSON_ParseWithLength((const char *)f[3], fl[3]) : NULL;
    if (params && !cJSON_IsObject(params)) { cJSON_Delete(params); params = NULL; }

    dh_http_req_t r;
    memset(&r, 0, sizeof r);
    r.method = method;
    r.https = flags & 1;
    snprintf(r.host, sizeof r.host, "127.0.0.1:7071");
    if (dh_http_req_set_uri(&r, uri) != 0) abort();
    for (char *p = hdrs; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *colon = memchr(p, ':', n);
        if (colon && colon > p) {
            const char *v = colon + 1;
            while (v < p + n && *v == ' ') v++;
            if (dh_header_push(&r.headers, &r.nheaders, p, (size_t)(colon - p), v, (size_t)(p + n - v)) != 0) abort();
        }
        p = nl ? nl + 1 : NULL;
    }
    size_t bl = f[4] ? fl[4] : 0;
    r.body = malloc(bl + 1);
    if (!r.body) abort();
    if (bl) memcpy(r.body, f[4], bl);
    r.body[bl] = '\0';
    r.body_len = bl;
    r.body_too_large = (flags & 4) != 0;
    if (r.body_too_large) r.body_len = 0;
    r.content_length = (flags & 2) ? -1 : (long long)bl;

    cJSON *o = dh_http_request_object(&r, params, (dh_identity_t)((flags >> 3) % 4));
    FUZZ_CHECK(o, "no request object");
    check_request(&r, o, params);
    cJSON *md = dh_http_metadata(&r, params);
    FUZZ_CHECK(md, "no metadata");
    check_metadata(&r, md, params);

    cJSON_Delete(o);
    cJSON_Delete(md);
    cJSON_Delete(params);
    dh_http_req_free(&r);
    free(method);
    free(uri);
    free(hdrs);
    return 0;
}
