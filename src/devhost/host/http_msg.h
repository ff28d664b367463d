/* http_msg.h — one HTTP request to devhost's front server and the response being built for it.
 *
 * The front server (front.h) collects the request completely (raw path and query as received,
 * decoded path segments, headers in received order, the whole body up to the route's limit)
 * before anything handles it, so handlers run on the connection's thread with everything in
 * hand and may block. Route hooks (host.h) use the accessor functions below; the host's own
 * modules may also read the struct. A request and its response belong to one thread. */
#ifndef ENVIROMON_DH_HTTP_MSG_H
#define ENVIROMON_DH_HTTP_MSG_H

#include <stddef.h>
#include <sys/types.h>

#include "util/buf.h"

typedef struct dh_header {
    char *name;
    char *value;
} dh_header_t;

typedef struct dh_http_req {
    const char   *method;        /* "GET", "POST", ... as received */
    char         *raw_path;      /* the path as received (percent-encoded), e.g. "/api/x%20y" */
    char         *raw_query;     /* what follows '?', as received ("" when none) */
    char         *path;          /* raw_path percent-decoded ('+' kept) */
    char        **segs;          /* decoded path segments (empty ones dropped) */
    size_t        nsegs;
    dh_header_t  *headers;       /* in received order, names as received */
    size_t        nheaders;
    dh_header_t  *query;         /* decoded query arguments in order ('+' is a space) */
    size_t        nquery;
    char         *body;          /* the complete body (NUL-terminated; may contain NULs) */
    size_t        body_len;
    int           body_too_large; /* the body passed the route's limit: body is empty */
    long long     content_length; /* Content-Length, or -1 when absent (chunked) */
    char          host[300];     /* the Host header, or "127.0.0.1:<port>" */
    int           https;         /* served over TLS */
    char          client_ip[64]; /* peer address */
} dh_http_req_t;

typedef struct dh_http_resp {
    int          status;         /* 0 until set; the front server answers 500 if nothing set it */
    dh_header_t *headers;
    size_t       nheaders, cap;
    buf_t        body;
    int          fd;             /* when >= 0, the body is this file (fd_size bytes; closed after) */
    off_t        fd_size;
} dh_http_resp_t;

/* ---- request accessors (for route hooks) ---- */

/* Method as received ("POST"). */
const char *dh_req_method(const dh_http_req_t *r);
/* Percent-decoded path without the query ("/devices/dev 1/messages/events"). */
const char *dh_req_path(const dh_http_req_t *r);
/* The first value of query argument name (exact, then ASCII case-insensitive), decoded; NULL
 * when absent ("" for "?name" or "?name="). */
const char *dh_req_query(const dh_http_req_t *r, const char *name);
/* The first value of header name, ASCII case-insensitive; NULL when absent. */
const char *dh_req_header(const dh_http_req_t *r, const char *name);
/* The complete body and its length (NULL and 0 when there was none or it was too large). */
const char *dh_req_body(const dh_http_req_t *r, size_t *len);
/* 1 when the body was longer than the route's limit (and was discarded). */
int dh_req_body_too_large(const dh_http_req_t *r);
/* The peer's IP address as text. */
const char *dh_req_client_ip(const dh_http_req_t *r);

/* ---- response builders ---- */

/* Set the status code. */
void dh_resp_status(dh_http_resp_t *w, int status);
/* Add a header (both strings copied; CR/LF in either are replaced by spaces). Returns 0/-1. */
int dh_resp_header(dh_http_resp_t *w, const char *name, const char *value);
/* 1 when a header of that name (ASCII case-insensitive) was added. */
int dh_resp_has_header(const dh_http_resp_t *w, const char *name);
/* Replace the body with data[0..len). Returns 0/-1. */
int dh_resp_body(dh_http_resp_t *w, const void *data, size_t len);
/* Convenience: status, Content-Type and body in one call. Returns 0/-1. */
int dh_resp_set(dh_http_resp_t *w, int status, const char *content_type, const char *body);

/* ---- used by the front server ---- */

/* Headers (and query arguments) kept per request; more are ignored (abuse, not HTTP). */
#define DH_MAX_HEADERS 200

/* Append a copy of name[0..nl) / value[0..vl) to the list *v of *n entries, each made valid
 * UTF-8 (ill-formed sequences become U+FFFD, as the host decodes them); beyond DH_MAX_HEADERS
 * the pair is ignored. Returns 0, or -1 when out of memory. */
int dh_header_push(dh_header_t **v, size_t *n, const char *name, size_t nl, const char *value, size_t vl);

/* Fill r's raw_path, raw_query, path, segs and query from the request URI as received
 * ("/api/x%20y/?a=1&b"): split at the first '?', the path percent-decoded ('+' kept), its
 * non-empty segments decoded one by one, the query's arguments decoded ('+' is a space;
 * arguments without a name dropped). A %00 decodes to '?' (a NUL cannot be represented). Pure
 * (a fuzz target). Returns 0, or -1 when out of memory; dh_http_req_free frees what was set. */
int dh_http_req_set_uri(dh_http_req_t *r, const char *uri);

void dh_http_req_free(dh_http_req_t *r);
void dh_http_resp_init(dh_http_resp_t *w);
void dh_http_resp_free(dh_http_resp_t *w);

#endif
