/* http_msg.c — the request URI split and decoded, request accessors, response building (see http_msg.h). */
#include "devhost/host/http_msg.h"

#include "devhost/host/common.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const char *dh_req_method(const dh_http_req_t *r) { return r->method; }
const char *dh_req_path(const dh_http_req_t *r) { return r->path; }
const char *dh_req_client_ip(const dh_http_req_t *r) { return r->client_ip; }
int dh_req_body_too_large(const dh_http_req_t *r) { return r->body_too_large; }

const char *dh_req_query(const dh_http_req_t *r, const char *name)
{
    for (size_t i = 0; i < r->nquery; i++)
        if (strcmp(r->query[i].name, name) == 0) return r->query[i].value;
    for (size_t i = 0; i < r->nquery; i++)
        if (strcasecmp(r->query[i].name, name) == 0) return r->query[i].value;
    return NULL;
}

const char *dh_req_header(const dh_http_req_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

const char *dh_req_body(const dh_http_req_t *r, size_t *len)
{
    if (len) *len = r->body ? r->body_len : 0;
    return r->body_len ? r->body : NULL;
}

static void free_headers(dh_header_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

/* ---- request line -------------------------------------------------------------------------- */

int dh_header_push(dh_header_t **v, size_t *n, const char *name, size_t nl, const char *value, size_t vl)
{
    if (*n >= DH_MAX_HEADERS) return 0; /* more is abuse; ignore the rest */
    dh_header_t *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return -1;
    *v = nv;
    /* as text, the way the host's strings hold them: a client's bytes that are not UTF-8 become
     * U+FFFD here, so that names that read the same are the same name everywhere */
    nv[*n].name = dh_utf8_lossy_dup(name, nl);
    nv[*n].value = dh_utf8_lossy_dup(value, vl);
    if (!nv[*n].name || !nv[*n].value) { free(nv[*n].name); free(nv[*n].value); return -1; }
    (*n)++;
    return 0;
}

int dh_http_req_set_uri(dh_http_req_t *r, const char *uri)
{
    const char *q = strchr(uri, '?');
    size_t pl = q ? (size_t)(q - uri) : strlen(uri);
    r->raw_path = strndup(uri, pl);
    r->raw_query = strdup(q ? q + 1 : "");
    if (!r->raw_path || !r->raw_query) return -1;
    r->path = dh_pct_decode(r->raw_path, pl, 0, NULL);
    if (!r->path) return -1;
    for (const char *p = r->raw_path; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char **ns = realloc(r->segs, (r->nsegs + 1) * sizeof *ns);
        if (!ns) return -1;
        r->segs = ns;
        if (!(r->segs[r->nsegs] = dh_pct_decode(p, n, 0, NULL))) return -1;
        r->nsegs++;
        p += n;
    }
    for (const char *p = r->raw_query; *p;) {
        const char *e = strchr(p, '&');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n) {
            const char *eq = memchr(p, '=', n);
            size_t kl = eq ? (size_t)(eq - p) : n;
            char *k = dh_pct_decode(p, kl, 1, NULL);
            char *v = eq ? dh_pct_decode(eq + 1, n - kl - 1, 1, NULL) : strdup("");
            int rc = (k && v && *k) ? dh_header_push(&r->query, &r->nquery, k, strlen(k), v, strlen(v)) : 0;
            free(k);
            free(v);
            if (rc != 0) return -1;
        }
        p += n;
        if (*p == '&') p++;
    }
    return 0;
}

void dh_http_req_free(dh_http_req_t *r)
{
    free(r->raw_path);
    free(r->raw_query);
    free(r->path);
    for (size_t i = 0; i < r->nsegs; i++) free(r->segs[i]);
    free(r->segs);
    free_headers(r->headers, r->nheaders);
    free_headers(r->query, r->nquery);
    free(r->body);
    memset(r, 0, sizeof *r);
}

void dh_http_resp_init(dh_http_resp_t *w)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

void dh_http_resp_free(dh_http_resp_t *w)
{
    free_headers(w->headers, w->nheaders);
    buf_free(&w->body);
    if (w->fd >= 0) close(w->fd);
    dh_http_resp_init(w);
}

void dh_resp_status(dh_http_resp_t *w, int status) { w->status = status; }

static char *clean_copy(const char *s)
{
    char *c = strdup(s ? s : "");
    if (c)
        for (char *p = c; *p; p++)
            if (*p == '\r' || *p == '\n') *p = ' ';
    return c;
}

int dh_resp_header(dh_http_resp_t *w, const char *name, const char *value)
{
    if (w->nheaders == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 8;
        dh_header_t *h = realloc(w->headers, cap * sizeof *h);
        if (!h) return -1;
        w->headers = h;
        w->cap = cap;
    }
    char *n = clean_copy(name), *v = clean_copy(value);
    if (!n || !v) { free(n); free(v); return -1; }
    w->headers[w->nheaders].name = n;
    w->headers[w->nheaders].value = v;
    w->nheaders++;
    return 0;
}

int dh_resp_has_header(const dh_http_resp_t *w, const char *name)
{
    for (size_t i = 0; i < w->nheaders; i++)
        if (strcasecmp(w->headers[i].name, name) == 0) return 1;
    return 0;
}

int dh_resp_body(dh_http_resp_t *w, const void *data, size_t len)
{
    buf_reset(&w->body);
    return buf_append(&w->body, data, len);
}

int dh_resp_set(dh_http_resp_t *w, int status, const char *content_type, const char *body)
{
    w->status = status;
    if (content_type && dh_resp_header(w, "Content-Type", content_type) != 0) return -1;
    return body ? dh_resp_body(w, body, strlen(body)) : 0;
}
