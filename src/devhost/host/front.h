/* front.h — devhost's front HTTP server (127.0.0.1:7071 by default), the local stand-in for the
 * Functions host's web front.
 *
 * Owns: listening (libmicrohttpd, one thread per connection, because invocations and route
 * hooks block), collecting each request whole (raw URI, decoded path and query, headers, the
 * body up to the route's limit; 413 is left to the handler, which sees body_too_large), CORS
 * exactly as Core Tools configures ASP.NET Core's middleware (origins from Host.CORS/--cors,
 * not trimmed; preflights answered 204 for every path, with Access-Control-Allow-* only for an
 * allowed origin; credentials only when asked and origins are set; "*" allowed without
 * credentials; no CORS headers at all when unset), and dispatching: route hooks (path prefixes
 * registered by other modules, checked first), then the dispatch callback (the host: /admin
 * and the functions), then the static folder, then 404. With a certificate (tls_cert_pem) the
 * port speaks HTTPS only (devhost --tls). Thread-safe; the route table is fixed once the server
 * starts. */
#ifndef ENVIROMON_DH_FRONT_H
#define ENVIROMON_DH_FRONT_H

#include <stddef.h>

#include "devhost/host/http_msg.h"

struct dh_static;

/* A route hook: fills w for a request whose decoded path starts with its prefix. Runs on the
 * connection's thread and may block (for an fsync, say). */
typedef void (*dh_route_fn)(void *arg, const dh_http_req_t *req, dh_http_resp_t *w);

/* The host's part: returns 1 when it answered (w filled), 0 to let the static folder try. */
typedef int (*dh_front_dispatch_fn)(void *arg, const dh_http_req_t *req, dh_http_resp_t *w);

typedef struct dh_front_opts {
    const char          *host;            /* listen address, "127.0.0.1" */
    int                  port;            /* 0: any free port */
    size_t               max_body;        /* limit for requests no hook claims (functions) */
    char *const         *cors_origins;    /* allowed origins (exact, ASCII case-insensitive) */
    size_t               ncors;
    int                  cors_any;        /* "*" among them */
    int                  cors_credentials;/* Access-Control-Allow-Credentials: true */
    struct dh_static    *statics;         /* the dashboard folder, or NULL */
    dh_front_dispatch_fn dispatch;
    void                *arg;
    const char          *tls_cert_pem;    /* with tls_key_pem: serve HTTPS (not HTTP) with this
                                           * certificate (PEM; chain allowed); NULL: plain HTTP */
    const char          *tls_key_pem;     /* its private key (PEM); secret, never logged */
} dh_front_opts_t;

typedef struct dh_front dh_front_t;

/* A server that does not listen yet (route hooks are added before dh_front_start). NULL when
 * out of memory. The origin strings must outlive the server. */
dh_front_t *dh_front_new(const dh_front_opts_t *o);

/* Serve requests whose decoded path starts with prefix (e.g. "/devices/") with fn, reading at
 * most max_body bytes of body. Only before dh_front_start. Returns 0, or -1 with err (a prefix
 * already taken, or the server already started). */
int dh_front_add_route(dh_front_t *f, const char *prefix, size_t max_body, dh_route_fn fn, void *arg,
                       char *err, size_t errlen);

/* Serve HTTPS with this certificate and key (PEM strings that must outlive the server), as if
 * given in dh_front_opts_t. Only before dh_front_start. Returns 0, or -1 with err (the server
 * already started, or this libmicrohttpd was built without TLS). */
int dh_front_set_tls(dh_front_t *f, const char *cert_pem, const char *key_pem, char *err, size_t errlen);

/* 1 when the server serves HTTPS. */
int dh_front_https(const dh_front_t *f);

/* Start listening. Returns 0, or -1 with err ("127.0.0.1:7071 is in use ..."). */
int dh_front_start(dh_front_t *f, char *err, size_t errlen);

/* The port listened on (after start). */
int dh_front_port(const dh_front_t *f);

/* Requests served so far (all routes). */
unsigned long long dh_front_requests(const dh_front_t *f);

/* Stop accepting connections (in-flight requests go on). */
void dh_front_quiesce(dh_front_t *f);

/* Wait up to drain_ms for in-flight requests, stop the server and free f. */
void dh_front_stop(dh_front_t *f, int drain_ms);

#endif
