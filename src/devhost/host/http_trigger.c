/* http_trigger.c — HTTP requests as the host hands them to a custom handler, and `res` back
 * into a response (see http_trigger.h). */
#include "devhost/host/http_trigger.h"

#include "devhost/host/common.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Kestrel gives the headers it knows their canonical spelling; others keep the client's. */
static const char *const KNOWN_HEADERS[] = {
    "Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Access-Control-Request-Headers",
    "Access-Control-Request-Method", "Authorization", "Baggage", "Cache-Control", "Connection", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Location", "Content-MD5", "Content-Range", "Content-Type",
    "Cookie", "Correlation-Context", "Date", "Expect", "From", "Grpc-Accept-Encoding", "Grpc-Encoding",
    "Grpc-Timeout", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
    "Keep-Alive", "Max-Forwards", "Origin", "Pragma", "Proxy-Authorization", "Range", "Referer", "Request-Id",
    "TE", "traceparent", "tracestate", "Trailer", "Transfer-Encoding", "Translate", "Upgrade",
    "Upgrade-Insecure-Requests", "User-Agent", "Via", "Warning", NULL,
};

static const char *canonical_header(const char *name)
{
    for (const char *const *k = KNOWN_HEADERS; *k; k++)
        if (strcasecmp(*k, name) == 0) return *k;
    return name;
}

/* ---- Data.req ----------------------------------------------------------------------------- */

static cJSON *identity_object_build(dh_identity_t who)
{
    cJSON *id = cJSON_CreateObject();
    cJSON *claims = cJSON_CreateArray();
    if (!id || !claims) { cJSON_Delete(id); cJSON_Delete(claims); return NULL; }
    int authed = who != DH_IDENTITY_ANONYMOUS;
    if (authed) cJSON_AddStringToObject(id, "AuthenticationType", "WebJobsAuthLevel");
    else cJSON_AddNullToObject(id, "AuthenticationType");
    cJSON_AddBoolToObject(id, "IsAuthenticated", authed);
    cJSON_AddNullToObject(id, "Actor");
    cJSON_AddNullToObject(id, "BootstrapContext");
    struct { const char *type, *value; } c[2];
    int nc = 0;
    if (authed) {
        c[nc].type = "http://schemas.microsoft.com/2017/07/functions/claims/authlevel";
        c[nc++].value = who == DH_IDENTITY_FUNCTION_KEY ? "Function" : "Admin";
        if (who != DH_IDENTITY_LOCAL_ADMIN) {
            c[nc].type = "http://schemas.microsoft.com/2017/07/functions/claims/keyid";
            c[nc++].value = who == DH_IDENTITY_FUNCTION_KEY ? "default" : "master";
        }
    }
    for (int i = 0; i < nc; i++) {
        cJSON *cl = cJSON_CreateObject();
        if (!cl) break;
        cJSON_AddStringToObject(cl, "Issuer", "LOCAL AUTHORITY");
        cJSON_AddStringToObject(cl, "OriginalIssuer", "LOCAL AUTHORITY");
        cJSON_AddItemToObject(cl, "Properties", cJSON_CreateObject());
        cJSON_AddStringToObject(cl, "Type", c[i].type);
        cJSON_AddStringToObject(cl, "Value", c[i].value);
        cJSON_AddStringToObject(cl, "ValueType", "http://www.w3.org/2001/XMLSchema#string");
        cJSON_AddItemToArray(claims, cl);
    }
    cJSON_AddItemToObject(id, "Claims", claims);
    cJSON_AddNullToObject(id, "Label");
    cJSON_AddNullToObject(id, "Name");
    cJSON_AddStringToObject(id, "NameClaimType", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name");
    cJSON_AddStringToObject(id, "RoleClaimType", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role");
    return id;
}

/* The Identities array for who, as raw JSON rendered once (the same four texts serve every
 * request: a tree of some thirty items per request would cost more than the rest of Data.req). */
static pthread_once_t identities_once = PTHREAD_ONCE_INIT;
static char *identities_text[4];

static void render_identities(void)
{
    for (int who = 0; who < 4; who++) {
        cJSON *arr = cJSON_CreateArray();
        cJSON *id = identity_object_build((dh_identity_t)who);
        if (arr && id) { cJSON_AddItemToArray(arr, id); id = NULL; }
        cJSON_Delete(id);
        identities_text[who] = arr ? cJSON_PrintUnformatted(arr) : NULL;
        cJSON_Delete(arr);
    }
}

static const char *identities(dh_identity_t who)
{
    pthread_once(&identities_once, render_identities);
    return (unsigned)who < 4 ? identities_text[who] : NULL;
}

/* Append name → value pairs grouped as the host's dictionaries group them: a name equal to an
 * earlier one (ASCII case-insensitive) joins that entry, which keeps the first spelling. Values
 * are an array of strings (arrays = 1) or joined with "," (0). names[i] may differ from
 * v[i].name (canonical header spellings). n is at most a few hundred, so the quadratic scan
 * costs less than a hash table would. */
static void put_grouped(buf_t *b, const dh_header_t *v, const char *const *names, size_t n, int arrays)
{
    buf_putc(b, '{');
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < i && strcasecmp(names[j], names[i]) != 0) j++;
        if (j < i) continue; /* already written with its first spelling */
        if (!first) buf_putc(b, ',');
        first = 0;
        buf_put_json_string(b, names[i]);
        buf_puts(b, arrays ? ":[" : ":\"");
        for (size_t k = i, nv = 0; k < n; k++) {
            if (k != i && strcasecmp(names[k], names[i]) != 0) continue;
            if (nv++) buf_putc(b, ',');
            if (arrays) {
                buf_put_json_string(b, v[k].value);
            } else {
                /* the value's inner text: its JSON string without the quotes */
                size_t at = b->len;
                buf_put_json_string(b, v[k].value);
                if (!b->oom) {
                    memmove(b->data + at, b->data + at + 1, b->len - at - 2);
                    b->len -= 2;
                    b->data[b->len] = '\0';
                }
            }
        }
        buf_putc(b, arrays ? ']' : '"');
    }
    buf_putc(b, '}');
}

/* Query's last values (the binding data's Query dictionary). */
static cJSON *query_last(const dh_http_req_t *r)
{
    cJSON *q = cJSON_CreateObject();
    if (!q) return NULL;
    for (size_t i = 0; i < r->nquery; i++)
        if (dh_json_set_ci(q, r->query[i].name, cJSON_CreateString(r->query[i].value)) != 0) {
            cJSON_Delete(q);
            return NULL;
        }
    return q;
}

/* Headers for Metadata: canonical name → values joined with ",". */
static cJSON *headers_joined(const dh_http_req_t *r)
{
    cJSON *h = cJSON_CreateObject();
    if (!h) return NULL;
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *name = canonical_header(r->headers[i].name);
        cJSON *old = cJSON_GetObjectItem(h, name);
        if (old) {
            size_t n = strlen(old->valuestring) + strlen(r->headers[i].value) + 2;
            char *v = malloc(n);
            if (!v) { cJSON_Delete(h); return NULL; }
            snprintf(v, n, "%s,%s", old->valuestring, r->headers[i].value);
            cJSON *nv = cJSON_CreateString(v);
            free(v);
            if (dh_json_set_ci(h, name, nv) != 0) { cJSON_Delete(h); return NULL; }
        } else if (!cJSON_AddStringToObject(h, name, r->headers[i].value)) {
            cJSON_Delete(h);
            return NULL;
        }
    }
    return h;
}

static int media_is_binary(const char *ct)
{
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    return strncasecmp(ct, "application/octet-stream", 24) == 0 || strncasecmp(ct, "multipart/", 10) == 0;
}

static const char *req_header(const dh_http_req_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

/* The body as a JSON string: base64 for binary media types, else text as .NET's StreamReader
 * decodes it (a leading BOM dropped, ill-formed UTF-8 as U+FFFD). */
static void put_body(buf_t *b, const dh_http_req_t *r)
{
    const char *s = r->body ? r->body : "";
    size_t n = r->body_len;
    buf_t t = BUF_INIT;
    if (media_is_binary(req_header(r, "Content-Type"))) {
        if (buf_reserve(&t, 4 * ((n + 2) / 3) + 1) == 0) {
            t.len = (size_t)EVP_EncodeBlock((unsigned char *)t.data, (const unsigned char *)s, (int)n);
            t.data[t.len] = '\0';
        }
    } else {
        if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) { s += 3; n -= 3; }
        dh_put_utf8_lossy(&t, s, n);
    }
    if (t.oom) b->oom = 1;
    else buf_put_json_string(b, buf_str(&t));
    buf_free(&t);
}

int dh_http_request_text(buf_t *b, const dh_http_req_t *r, const cJSON *params, dh_identity_t who)
{
    const char *ids = identities(who);
    if (!ids) return -1;
    size_t start = b->len;
    /* Url: scheme, Host header, then the path and query exactly as received. */
    buf_puts(b, "{\"Url\":");
    buf_t url = BUF_INIT;
    buf_puts(&url, r->https ? "https://" : "http://");
    buf_puts(&url, r->host);
    buf_puts(&url, r->raw_path);
    if (r->raw_query && *r->raw_query) {
        buf_putc(&url, '?');
        buf_puts(&url, r->raw_query);
    }
    if (url.oom) b->oom = 1;
    else buf_put_json_string(b, buf_str(&url));
    buf_free(&url);
    buf_puts(b, ",\"Method\":");
    buf_put_json_string(b, r->method);
    /* Query: every value of a key joined with ","; Headers: canonical name → [values]. */
    size_t nn = r->nquery > r->nheaders ? r->nquery : r->nheaders;
    const char **names = malloc((nn ? nn : 1) * sizeof *names);
    if (!names) return -1;
    for (size_t i = 0; i < r->nquery; i++) names[i] = r->query[i].name;
    buf_puts(b, ",\"Query\":");
    put_grouped(b, r->query, names, r->nquery, 0);
    for (size_t i = 0; i < r->nheaders; i++) names[i] = canonical_header(r->headers[i].name);
    buf_puts(b, ",\"Headers\":");
    put_grouped(b, r->headers, names, r->nheaders, 1);
    free(names);
    buf_puts(b, ",\"Params\":");
    if (params) {
        char *p = cJSON_PrintUnformatted(params);
        if (!p) return -1;
        buf_puts(b, p);
        free(p);
    } else {
        buf_puts(b, "{}");
    }
    buf_puts(b, ",\"Identities\":");
    buf_puts(b, ids);
    /* Body only when Content-Length > 0: the host reads nothing for a chunked request. */
    if (r->content_length > 0 && !r->body_too_large) {
        buf_puts(b, ",\"Body\":");
        put_body(b, r);
    }
    buf_putc(b, '}');
    if (b->oom) return -1;
    /* A path or query may carry any bytes; the host would hand over valid text. JSON's own
     * characters are ASCII, so mending the whole text (U+FFFD for what is not UTF-8) mends
     * each string in it. */
    buf_t t = BUF_INIT;
    dh_put_utf8_lossy(&t, b->data + start, b->len - start);
    int rc = t.oom ? -1 : 0;
    if (rc == 0 && (t.len != b->len - start || memcmp(t.data, b->data + start, t.len) != 0)) {
        b->len = start;
        rc = buf_append(b, t.data, t.len);
    }
    buf_free(&t);
    return rc;
}

cJSON *dh_http_request_object(const dh_http_req_t *r, const cJSON *params, dh_identity_t who)
{
    buf_t b = BUF_INIT;
    cJSON *o = dh_http_request_text(&b, r, params, who) == 0 ? cJSON_ParseWithLength(b.data, b.len) : NULL;
    buf_free(&b);
    return o;
}

/* ---- Metadata ---------------------------------------------------------------------------- */

/* (string)JValue: the invariant-culture text of a scalar. */
static int scalar_text(const cJSON *v, buf_t *b)
{
    if (cJSON_IsString(v)) return buf_puts(b, v->valuestring);
    if (cJSON_IsBool(v)) return buf_puts(b, cJSON_IsTrue(v) ? "True" : "False");
    if (cJSON_IsNumber(v)) { dh_put_number(b, v->valuedouble); return b->oom ? -1 : 0; }
    return -1;
}

static int body_is_json(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    return n >= 2 && ((s[0] == '{' && s[n - 1] == '}') || (s[0] == '[' && s[n - 1] == ']'));
}

cJSON *dh_http_metadata(const dh_http_req_t *r, const cJSON *params)
{
    cJSON *md = cJSON_CreateObject();
    if (!md) return NULL;
    /* 1. Top-level scalars of a JSON object body (Content-Length > 0 only). */
    if (r->content_length > 0 && r->body && body_is_json(r->body, r->body_len)) {
        cJSON *parsed = cJSON_ParseWithLength(r->body, r->body_len);
        if (cJSON_IsObject(parsed)) {
            for (const cJSON *p = parsed->child; p; p = p->next) {
                if (!p->string || cJSON_IsNull(p) || cJSON_IsObject(p) || cJSON_IsArray(p)) continue;
                buf_t t = BUF_INIT;
                if (scalar_text(p, &t) == 0 && dh_json_set_ci(md, p->string, dh_wire_string(buf_str(&t))) != 0) {
                    buf_free(&t);
                    cJSON_Delete(parsed);
                    cJSON_Delete(md);
                    return NULL;
                }
                buf_free(&t);
            }
        }
        cJSON_Delete(parsed);
    }
    /* 2. Query arguments (last value wins), except the key "code". */
    for (size_t i = 0; i < r->nquery; i++) {
        if (strcasecmp(r->query[i].name, "code") == 0) continue;
        if (dh_json_set_ci(md, r->query[i].name, dh_wire_string(r->query[i].value)) != 0) { cJSON_Delete(md); return NULL; }
    }
    /* 3. Route values (an unused optional one is null: no metadata). */
    for (const cJSON *p = params ? params->child : NULL; p; p = p->next) {
        if (!cJSON_IsString(p)) continue;
        if (dh_json_set_ci(md, p->string, dh_wire_string(p->valuestring)) != 0) { cJSON_Delete(md); return NULL; }
    }
    /* 4, 5. Query and Headers dictionaries, unless a key of that name is already there. */
    if (!cJSON_GetObjectItem(md, "Query") && !cJSON_AddItemToObject(md, "Query", query_last(r))) {
        cJSON_Delete(md);
        return NULL;
    }
    if (!cJSON_GetObjectItem(md, "Headers") && !cJSON_AddItemToObject(md, "Headers", headers_joined(r))) {
        cJSON_Delete(md);
        return NULL;
    }
    if (dh_json_utf8_lossy(md) != 0) { cJSON_Delete(md); return NULL; }
    return md;
}

/* ---- the http output --------------------------------------------------------------------- */

static void indent(buf_t *b, int level)
{
    buf_putc(b, '\n');
    for (int i = 0; i < level; i++) buf_puts(b, "  ");
}

static void indented(buf_t *b, const cJSON *v, int level)
{
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        int obj = cJSON_IsObject(v);
        if (!v->child) { buf_puts(b, obj ? "{}" : "[]"); return; }
        buf_putc(b, obj ? '{' : '[');
        for (const cJSON *c = v->child; c; c = c->next) {
            indent(b, level + 1);
            if (obj) {
                buf_put_json_string(b, c->string ? c->string : "");
                buf_puts(b, ": ");
            }
            indented(b, c, level + 1);
            if (c->next) buf_putc(b, ',');
        }
        indent(b, level);
        buf_putc(b, obj ? '}' : ']');
    } else if (cJSON_IsString(v)) {
        buf_put_json_string(b, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        dh_put_number(b, v->valuedouble);
    } else if (cJSON_IsBool(v)) {
        buf_puts(b, cJSON_IsTrue(v) ? "true" : "false");
    } else {
        buf_puts(b, "null");
    }
}

void dh_json_indented(buf_t *b, const cJSON *v) { indented(b, v, 0); }

/* ToString() of a header or body value: strings as they are, scalars as .NET prints them,
 * objects and arrays as indented JSON. */
static void to_string(buf_t *b, const cJSON *v)
{
    if (cJSON_IsString(v)) buf_puts(b, v->valuestring);
    else if (cJSON_IsBool(v)) buf_puts(b, cJSON_IsTrue(v) ? "True" : "False");
    else if (cJSON_IsNumber(v)) dh_put_number(b, v->valuedouble);
    else if (!cJSON_IsNull(v)) dh_json_indented(b, v);
}

/* Headers the front server manages itself. */
static int managed_header(const char *name)
{
    return strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
           strcasecmp(name, "Connection") == 0;
}

int dh_http_apply_output(const cJSON *value, dh_http_resp_t *w, char *err, size_t errlen)
{
    if (!value || cJSON_IsNull(value)) {
        w->status = 200;
        return 0;
    }
    if (!cJSON_IsObject(value)) {
        snprintf(err, errlen, "Failed while trying to Deserialize to httpOutputBindingResponse: the http output is "
                 "a JSON %s, not an object {\"statusCode\":...,\"headers\":{...},\"body\":...}",
                 cJSON_IsArray(value) ? "array" : cJSON_IsString(value) ? "string" : "scalar");
        return -1;
    }
    int status = 200;
    const cJSON *sc = cJSON_GetObjectItem(value, "statusCode");
    if (sc && !cJSON_IsNull(sc)) {
        double d = NAN;
        if (cJSON_IsNumber(sc)) d = sc->valuedouble;
        else if (cJSON_IsString(sc)) {
            char *end;
            d = strtod(sc->valuestring, &end);
            if (end == sc->valuestring || *end) d = NAN;
        }
        if (!(d >= 100 && d <= 599) || d != floor(d)) {
            snprintf(err, errlen, "the http output's statusCode is not an HTTP status (100-599)");
            return -1;
        }
        status = (int)d;
    }
    w->status = status;
    const cJSON *hs = cJSON_GetObjectItem(value, "headers");
    if (hs && !cJSON_IsNull(hs)) {
        if (!cJSON_IsObject(hs)) {
            snprintf(err, errlen, "Failed while trying to Deserialize to httpOutputBindingResponse: headers must be "
                     "an object");
            return -1;
        }
        for (const cJSON *h = hs->child; h; h = h->next) {
            if (!h->string || cJSON_IsNull(h) || managed_header(h->string)) continue;
            buf_t t = BUF_INIT;
            to_string(&t, h);
            int rc = t.oom ? -1 : dh_resp_header(w, h->string, buf_str(&t));
            buf_free(&t);
            if (rc != 0) { snprintf(err, errlen, "out of memory"); return -1; }
        }
    }
    const cJSON *body = cJSON_GetObjectItem(value, "body");
    buf_reset(&w->body);
    if (body && !cJSON_IsNull(body)) to_string(&w->body, body);
    if (w->body.oom) { snprintf(err, errlen, "out of memory"); return -1; }
    if (w->body.len && !dh_resp_has_header(w, "Content-Type") &&
        dh_resp_header(w, "Content-Type", "text/plain; charset=utf-8") != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}
