/* http_msg.c — request accessors and response building (see http_msg.h). */
#include "devhost/host/http_msg.h"

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
