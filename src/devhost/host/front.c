/* front.c — the front HTTP server: requests collected whole, CORS, hooks, dispatch (see front.h).
 *
 * Slow-drip clients: libmicrohttpd's connection timeout is an idle timeout that every byte
 * resets, so a thousand sockets each sending a header byte now and then would fill the
 * connection limit and lock devices, the API and the dashboard out. The admission guard
 * (util/conn_guard.h; the SignalR Service and the handler use it too): a request must arrive
 * whole within FRONT_REQUEST_DEADLINE_MS of its connection opening (or of the previous response), and at
 * most FRONT_MAX_WAITING connections may wait for their request at once (the oldest is closed
 * to make room), so new clients always find a place. A sweeper thread enforces the deadline. */
#include "devhost/host/front.h"

#include "devhost/host/common.h"
#include "devhost/host/static_files.h"
#include "util/conn_guard.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_HOOKS 16
#define FRONT_MAX_CONNECTIONS     1000
#define FRONT_MAX_WAITING         (FRONT_MAX_CONNECTIONS / 2)
#define FRONT_REQUEST_DEADLINE_MS 30000

typedef struct {
    char        *prefix;
    size_t       max_body;
    dh_route_fn  fn;
    void        *arg;
} hook_t;

struct dh_front {
    dh_front_opts_t    o;
    struct MHD_Daemon *d;
    hook_t             hooks[MAX_HOOKS];
    size_t             nhooks;
    int                port;
    int                quiesced;
    atomic_int         inflight;
    atomic_ullong      requests;
    conn_guard_t      *guard;        /* slow-drip defence (see the top of this file) */
    conn_guard_sweeper_t *sweeper;
};

/* Per-request state: made by the URI logger (which sees the raw URI), filled on the first
 * access-handler call, freed when the request completes. */
typedef struct {
    char          *raw_uri;
    int            started;
    dh_http_req_t  req;
    size_t         limit;
    const hook_t  *hook;
    buf_t          body;
    conn_guard_conn_t *gk;   /* the connection's guard entry (its socket context), or NULL */
} rq_t;

dh_front_t *dh_front_new(const dh_front_opts_t *o)
{
    dh_front_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->o = *o;
    if (!f->o.host) f->o.host = "127.0.0.1";
    atomic_init(&f->inflight, 0);
    atomic_init(&f->requests, 0);
    return f;
}

int dh_front_add_route(dh_front_t *f, const char *prefix, size_t max_body, dh_route_fn fn, void *arg, char *err,
                       size_t errlen)
{
    if (f->d) { snprintf(err, errlen, "route hooks must be added before the server starts"); return -1; }
    if (!prefix || prefix[0] != '/' || !fn) { snprintf(err, errlen, "a route prefix starts with '/'"); return -1; }
    if (f->nhooks == MAX_HOOKS) { snprintf(err, errlen, "too many route hooks"); return -1; }
    for (size_t i = 0; i < f->nhooks; i++) {
        if (strcmp(f->hooks[i].prefix, prefix) == 0) {
            snprintf(err, errlen, "the path prefix %s is already served by another module", prefix);
            return -1;
        }
    }
    char *p = strdup(prefix);
    if (!p) { snprintf(err, errlen, "out of memory"); return -1; }
    f->hooks[f->nhooks++] = (hook_t){p, max_body, fn, arg};
    return 0;
}

int dh_front_set_tls(dh_front_t *f, const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
    if (f->d) { snprintf(err, errlen, "TLS must be set before the server starts"); return -1; }
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS: HTTPS (--tls) is not available");
        return -1;
    }
    f->o.tls_cert_pem = cert_pem;
    f->o.tls_key_pem = key_pem;
    return 0;
}

int dh_front_https(const dh_front_t *f) { return f->o.tls_cert_pem && f->o.tls_key_pem; }

/* ---- request collection ------------------------------------------------------------------ */

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *con)
{
    (void)cls;
    rq_t *rq = calloc(1, sizeof *rq);
    if (rq && !(rq->raw_uri = strdup(uri ? uri : "/"))) { free(rq); rq = NULL; }
    if (rq) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        rq->gk = ci ? ci->socket_context : NULL;
    }
    return rq;
}

/* Connection opened or closed: the admission guard tracks it. */
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    dh_front_t *f = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? conn_guard_opened(f->guard, ci->connect_fd) : NULL;
    } else {
        conn_guard_closed(f->guard, *socket_context);
        *socket_context = NULL;
    }
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    dh_http_req_t *r = cls;
    if (!key) return MHD_YES;
    if (!value) value = "";
    return dh_header_push(&r->headers, &r->nheaders, key, strlen(key), value, strlen(value)) == 0 ? MHD_YES : MHD_NO;
}

static const hook_t *find_hook(const dh_front_t *f, const char *path)
{
    for (size_t i = 0; i < f->nhooks; i++)
        if (strncmp(path, f->hooks[i].prefix, strlen(f->hooks[i].prefix)) == 0) return &f->hooks[i];
    return NULL;
}

static int start_request(dh_front_t *f, struct MHD_Connection *mc, rq_t *rq, const char *method)
{
    dh_http_req_t *r = &rq->req;
    r->method = method;
    r->content_length = -1;
    if (dh_http_req_set_uri(r, rq->raw_uri) != 0) return -1;
    if (MHD_get_connection_values(mc, MHD_HEADER_KIND, collect_header, r) < 0) return -1;
    const char *cl = NULL, *host = NULL;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, "Content-Length") == 0) cl = r->headers[i].value;
        else if (strcasecmp(r->headers[i].name, "Host") == 0) host = r->headers[i].value;
    }
    if (cl) r->content_length = strtoll(cl, NULL, 10);
    if (host && *host) snprintf(r->host, sizeof r->host, "%s", host);
    else snprintf(r->host, sizeof r->host, "127.0.0.1:%d", f->port);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client_ip, sizeof r->client_ip);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client_ip, sizeof r->client_ip);
    }
    r->https = dh_front_https(f);
    rq->hook = find_hook(f, r->path);
    rq->limit = rq->hook ? rq->hook->max_body : f->o.max_body;
    /* One allocation for an announced body that fits; one announced larger than the limit is
     * too large from its first byte, so none of it is kept (it is still read to its end, then
     * refused) — rather than buffered up to the limit and dropped. */
    if (r->content_length > 0 && (unsigned long long)r->content_length > rq->limit)
        r->body_too_large = 1;
    else if (r->content_length > 0)
        (void)buf_reserve(&rq->body, (size_t)r->content_length);
    return 0;
}

/* ---- CORS -------------------------------------------------------------------------------- */

static int origin_allowed(const dh_front_t *f, const char *origin)
{
    if (f->o.cors_any) return 1;
    for (size_t i = 0; i < f->o.ncors; i++)
        if (strcasecmp(f->o.cors_origins[i], origin) == 0) return 1;
    return 0;
}

static void cors_allow(const dh_front_t *f, dh_http_resp_t *w, const char *origin)
{
    int wildcard = f->o.cors_any && !f->o.cors_credentials;
    dh_resp_header(w, "Access-Control-Allow-Origin", wildcard ? "*" : origin);
    if (f->o.cors_credentials) dh_resp_header(w, "Access-Control-Allow-Credentials", "true");
    if (!wildcard) dh_resp_header(w, "Vary", "Origin");
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static void handle(dh_front_t *f, rq_t *rq, dh_http_resp_t *w)
{
    dh_http_req_t *r = &rq->req;
    const char *origin = dh_req_header(r, "Origin");
    int cors = (f->o.ncors || f->o.cors_any) && origin;
    if (cors && strcmp(r->method, "OPTIONS") == 0 && dh_req_header(r, "Access-Control-Request-Method")) {
        /* A preflight: ASP.NET's middleware ends it here, 204, whatever the path. */
        w->status = 204;
        if (origin_allowed(f, origin)) {
            cors_allow(f, w, origin);
            dh_resp_header(w, "Access-Control-Allow-Methods", dh_req_header(r, "Access-Control-Request-Method"));
            const char *rh = dh_req_header(r, "Access-Control-Request-Headers");
            if (rh && *rh) dh_resp_header(w, "Access-Control-Allow-Headers", rh);
        }
        return;
    }
    if (rq->hook) {
        rq->hook->fn(rq->hook->arg, r, w);
    } else if (!(f->o.dispatch && f->o.dispatch(f->o.arg, r, w)) &&
               !(f->o.statics && dh_static_serve(f->o.statics, r, w))) {
        w->status = 404;
    }
    if (!w->status) {
        log_error(NULL, "devhost: no response was set for %s %s", r->method, r->path);
        dh_http_resp_free(w);
        dh_http_resp_init(w);
        w->status = 500;
    }
    if (cors && origin_allowed(f, origin)) cors_allow(f, w, origin);
}

static enum MHD_Result send_response(struct MHD_Connection *mc, dh_http_resp_t *w)
{
    struct MHD_Response *resp;
    if (w->fd >= 0) {
        resp = MHD_create_response_from_fd((uint64_t)w->fd_size, w->fd);
        if (resp) w->fd = -1; /* MHD closes it */
    } else {
        size_t len = w->body.len;
        char *data = len ? buf_steal(&w->body) : NULL;
        resp = MHD_create_response_from_buffer(len, data, data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp) free(data);
    }
    if (!resp) return MHD_NO;
    for (size_t i = 0; i < w->nheaders; i++) MHD_add_response_header(resp, w->headers[i].name, w->headers[i].value);
    enum MHD_Result rc = MHD_queue_response(mc, (unsigned)w->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)url;
    (void)version;
    dh_front_t *f = cls;
    rq_t *rq = *con_cls;
    if (!rq) return MHD_NO; /* the URI logger could not allocate */
    if (!rq->started) {
        rq->started = 1;
        atomic_fetch_add(&f->inflight, 1);
        if (start_request(f, mc, rq, method) != 0) return MHD_NO;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!rq->req.body_too_large) {
            if (rq->body.len + *upload_data_size > rq->limit || buf_append(&rq->body, upload_data, *upload_data_size) != 0) {
                rq->req.body_too_large = 1;
                buf_free(&rq->body);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* the request is all here: no deadline while it is served */
    conn_guard_request_arrived(f->guard, rq->gk);
    dh_http_req_t *r = &rq->req;
    r->body_len = rq->body.len;
    r->body = buf_steal(&rq->body);
    if (!r->body) return MHD_NO;
    atomic_fetch_add(&f->requests, 1);
    dh_http_resp_t w;
    dh_http_resp_init(&w);
    handle(f, rq, &w);
    enum MHD_Result ret = send_response(mc, &w);
    dh_http_resp_free(&w);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)mc;
    dh_front_t *f = cls;
    rq_t *rq = *con_cls;
    if (!rq) return;
    /* a kept-alive connection waits for its next request, under the deadline again */
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) conn_guard_idle(f->guard, rq->gk);
    if (rq->started) atomic_fetch_sub(&f->inflight, 1);
    dh_http_req_free(&rq->req);
    buf_free(&rq->body);
    free(rq->raw_uri);
    free(rq);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[300];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    log_debug(NULL, "devhost: libmicrohttpd: %s", line);
}

int dh_front_start(dh_front_t *f, char *err, size_t errlen)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)f->o.port);
    if (inet_pton(AF_INET, strcmp(f->o.host, "localhost") == 0 ? "127.0.0.1" : f->o.host, &a.sin_addr) != 1) {
        snprintf(err, errlen, "the listen address must be an IPv4 address, not '%.60s'", f->o.host);
        return -1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    f->guard = conn_guard_new(FRONT_REQUEST_DEADLINE_MS, FRONT_MAX_WAITING);
    if (!f->guard) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* With TLS the key and certificate go first in the option list; without, the list starts
     * at the socket address (MHD_OPTION_ARRAY with an empty array is a no-op). */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)f->o.tls_key_pem},
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)f->o.tls_cert_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    if (dh_front_https(f)) flags |= MHD_USE_TLS;
    else tls_opts[0].option = MHD_OPTION_END;
    f->d = MHD_start_daemon(flags, (uint16_t)f->o.port, NULL, NULL, on_request, f,
                            MHD_OPTION_ARRAY, tls_opts,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                            MHD_OPTION_URI_LOG_CALLBACK, uri_logger, f,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, f,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, f,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)FRONT_MAX_CONNECTIONS,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024), /* headers; bodies stream past it */
                            MHD_OPTION_THREAD_STACK_SIZE, (size_t)(2 * 1024 * 1024),
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_END);
    if (!f->d) {
        int e = errno;
        if (dh_front_https(f) && e != EADDRINUSE)
            snprintf(err, errlen, "cannot serve HTTPS on %s:%d (%s): libmicrohttpd refused the listening socket or "
                     "the TLS certificate and key", f->o.host, f->o.port, strerror(e));
        else
            snprintf(err, errlen, "cannot listen on %s:%d (%s): is another devhost or `func start` running? Choose "
                     "another port with --port or Host.LocalHttpPort", f->o.host, f->o.port, strerror(e));
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    f->port = di && di->port ? di->port : f->o.port;
    if (!(f->sweeper = conn_guard_sweeper_start(f->guard, "devhost"))) {
        snprintf(err, errlen, "cannot start a thread");
        MHD_stop_daemon(f->d);
        f->d = NULL;
        return -1;
    }
    return 0;
}

int dh_front_port(const dh_front_t *f) { return f->port; }

unsigned long long dh_front_requests(const dh_front_t *f) { return atomic_load(&((dh_front_t *)f)->requests); }

void dh_front_quiesce(dh_front_t *f)
{
    if (!f || !f->d || f->quiesced) return;
    f->quiesced = 1;
    MHD_socket s = MHD_quiesce_daemon(f->d);
    if (s != MHD_INVALID_SOCKET) close(s);
}

void dh_front_stop(dh_front_t *f, int drain_ms)
{
    if (!f) return;
    if (f->d) {
        dh_front_quiesce(f);
        for (int waited = 0; atomic_load(&f->inflight) > 0 && waited < drain_ms; waited += 10) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    conn_guard_sweeper_stop(f->sweeper);
    if (f->d) MHD_stop_daemon(f->d);
    conn_guard_free(f->guard); /* after the daemon: it reported every connection closed */
    for (size_t i = 0; i < f->nhooks; i++) free(f->hooks[i].prefix);
    free(f);
}
