/* server.c — libmicrohttpd server for the custom-handler protocol (see server.h).
 *
 * Slow-drip clients: libmicrohttpd's connection timeout is an idle timeout that every byte
 * resets, so 512 sockets each sending a header byte now and then would fill the connection
 * limit and make every invocation that needs a new connection fail. The admission guard
 * (util/conn_guard.h) gives a request SERVER_REQUEST_DEADLINE_MS to arrive whole and lets at
 * most half the connections wait for their request (the oldest is closed to make room). */
#include "protocol/server.h"

#include "protocol/invocation.h"
#include "util/buf.h"
#include "util/conn_guard.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

#define SERVER_MAX_CONNECTIONS     512
#define SERVER_REQUEST_DEADLINE_MS 30000

struct server {
    struct MHD_Daemon    *daemon;
    app_t                *app;
    atomic_int            inflight;
    atomic_ulong          completed;   /* requests finished, for idle detection */
    conn_guard_t         *guard;       /* slow-drip defence (see the top of this file) */
    conn_guard_sweeper_t *sweeper;
};

/* Per-request state, created on the first access-handler call. */
typedef struct request_state {
    buf_t                   body;
    size_t                  received;
    int                     too_large;  /* the body passed its limit: drain it, then answer 413 */
    int                     counted;    /* in server->inflight (only once the body is complete) */
    const function_entry_t *streamed;   /* a function reading its body as it arrives */
    void                   *reader;     /* its reader state */
    int                     refused;    /* the reader refused the body: drain it, then answer */
    conn_guard_conn_t      *gk;         /* the connection's guard entry, or NULL */
} request_state_t;

static MHD_Result_t send_json(struct MHD_Connection *conn, unsigned int status, char *body_owned)
{
    if (!body_owned) {
        body_owned = strdup("{\"error\":\"out of memory\"}");
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        if (!body_owned) return MHD_NO;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body_owned), body_owned, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body_owned); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
    MHD_Result_t rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* {"error": msg} with printf formatting. */
static MHD_Result_t send_error(struct MHD_Connection *conn, unsigned int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static MHD_Result_t send_error(struct MHD_Connection *conn, unsigned int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && cJSON_AddStringToObject(o, "error", msg)) text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    log_msg(NULL, status >= 500 ? LOG_ERROR : LOG_WARN, "HTTP %u: %s", status, msg);
    return send_json(conn, status, text);
}

static const function_entry_t *find_function(const char *path)
{
    if (path[0] == '/') path++;
    size_t len = strlen(path);
    while (len && path[len - 1] == '/') len--; /* tolerate a trailing slash */
    for (const function_entry_t *f = app_functions; f->name; f++)
        if (strlen(f->name) == len && strncasecmp(f->name, path, len) == 0) return f;
    return NULL;
}

/* Where a JSON parse failed, as "line L, column C" plus a short excerpt, for the 400. */
static void describe_parse_error(const char *text, size_t len, const char *at, char *out, size_t outlen)
{
    if (!at || at < text || at > text + len) { snprintf(out, outlen, "invalid JSON"); return; }
    size_t off = (size_t)(at - text);
    if (off >= len) { snprintf(out, outlen, "invalid JSON: unexpected end of input after %zu bytes", len); return; }
    int line = 1, col = 1;
    for (size_t i = 0; i < off; i++) { if (text[i] == '\n') { line++; col = 1; } else col++; }
    char excerpt[24];
    size_t n = 0;
    for (size_t i = off; i < len && n < sizeof excerpt - 1; i++)
        excerpt[n++] = (text[i] >= 0x20 && text[i] < 0x7f && text[i] != '"' && text[i] != '\\') ? text[i] : '?';
    excerpt[n] = '\0';
    snprintf(out, outlen, "invalid JSON at line %d, column %d (byte %zu), near '%s'", line, col, off, excerpt);
}

/* Call f with a complete invocation (takes ownership of req) and answer. */
static MHD_Result_t invoke(server_t *srv, struct MHD_Connection *conn, const function_entry_t *f, cJSON *req,
                           void *reader)
{
    const char *inv_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Azure-Functions-InvocationId");
    invocation_t inv;
    char err[256];
    if (inv_init(&inv, f->name, inv_id, req, err, sizeof err) != 0) {
        inv_free(&inv);
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "%s: %s", f->name, err);
    }
    inv.body_reader = reader;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = f->fn(&inv, srv->app);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
    log_debug(NULL, "%s invocation %s finished in %ld ms (rc=%d)", f->name, inv.invocation_id, ms, rc);
    MHD_Result_t ret;
    if (rc == 0) {
        ret = send_json(conn, MHD_HTTP_OK, inv_render_response(&inv));
    } else {
        if (!inv.fail_message[0]) snprintf(inv.fail_message, sizeof inv.fail_message, "%s failed", f->name);
        ret = send_json(conn, (unsigned)inv.fail_status, inv_render_failure(&inv));
    }
    inv_free(&inv);
    return ret;
}

/* A streamed body is complete: answer the reader's refusal, or run the function. */
static MHD_Result_t run_streamed(server_t *srv, struct MHD_Connection *conn, request_state_t *st)
{
    const function_entry_t *f = st->streamed;
    if (st->received == 0)
        return send_error(conn, MHD_HTTP_BAD_REQUEST,
                          "empty request body: expected {\"Data\":{...},\"Metadata\":{...}}");
    if (!st->reader || st->refused) {
        int oom = !st->reader;
        const char *why = st->reader ? f->reader->error(st->reader, &oom) : "out of memory";
        /* out of memory is transient: the host retries; anything else is the body's fault */
        return send_error(conn, oom ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_BAD_REQUEST, "%s: %s", f->name, why);
    }
    cJSON *req = cJSON_CreateObject();
    if (!req) return send_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "%s: out of memory", f->name);
    return invoke(srv, conn, f, req, st->reader);
}

static MHD_Result_t run_function(server_t *srv, struct MHD_Connection *conn, const function_entry_t *f,
                                 request_state_t *st)
{
    if (st->body.len == 0)
        return send_error(conn, MHD_HTTP_BAD_REQUEST,
                          "empty request body: expected {\"Data\":{...},\"Metadata\":{...}}");
    const char *end = NULL;
    cJSON *req = cJSON_ParseWithLengthOpts(st->body.data, st->body.len, &end, 0);
    if (!req) {
        char why[160];
        describe_parse_error(st->body.data, st->body.len, end, why, sizeof why);
        return send_error(conn, MHD_HTTP_BAD_REQUEST, "%s: %s", f->name, why);
    }
    /* Nothing but whitespace may follow the value. */
    for (const char *p = end; p && p < st->body.data + st->body.len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(req);
            char why[160];
            describe_parse_error(st->body.data, st->body.len, p, why, sizeof why);
            return send_error(conn, MHD_HTTP_BAD_REQUEST, "%s: trailing data after the JSON value: %s", f->name, why);
        }
    }
    buf_free(&st->body); /* the tree is all we need from here on */
    return invoke(srv, conn, f, req, NULL);
}

static MHD_Result_t on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    (void)version;
    server_t *srv = cls;
    request_state_t *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st) return MHD_NO;
        *con_cls = st;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        st->gk = ci ? ci->socket_context : NULL;
        char path[80];
        snprintf(path, sizeof path, "%s", url);
        for (char *c = path; *c; c++) if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        log_debug(NULL, "%s %s: headers received", method, path);
        /* Not in flight yet: a client that sends headers and then stalls must not hold up
         * shutdown. It counts once its body is complete. */
        const function_entry_t *f = strcmp(method, "POST") == 0 ? find_function(url) : NULL;
        if (f && f->reader) {
            st->streamed = f;
            st->reader = f->reader->open();   /* NULL: out of memory, answered at the end */
            return MHD_YES;
        }
        /* One allocation for the whole body when its size is announced (and allowed). */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long announced = cl ? strtoull(cl, NULL, 10) : 0;
        if (announced && announced <= srv->app->cfg.max_body_bytes) (void)buf_reserve(&st->body, (size_t)announced);
        return MHD_YES; /* wait for the body (or its absence) */
    }
    size_t limit = st->streamed ? srv->app->cfg.max_batch_bytes : srv->app->cfg.max_body_bytes;
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (st->too_large) return MHD_YES;
        if (st->received + n > limit) {
            st->too_large = 1;
            buf_free(&st->body);
            return MHD_YES;
        }
        st->received += n;
        if (st->streamed) {
            if (st->reader && !st->refused && st->streamed->reader->feed(st->reader, upload_data, n) != 0)
                st->refused = 1;
        } else if (buf_append(&st->body, upload_data, n) != 0) {
            st->too_large = 1; /* out of memory: treat like an oversized body */
            buf_free(&st->body);
        }
        return MHD_YES;
    }

    /* The whole request is in: from here on it is in flight (shutdown waits for it), and no
     * deadline applies while it is served. */
    conn_guard_request_arrived(srv->guard, st->gk);
    if (!st->counted) {
        st->counted = 1;
        atomic_fetch_add(&srv->inflight, 1);
    }
    if (st->too_large)
        return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body exceeds the %zu-byte limit (setting %s)",
                          limit, st->streamed ? "ENVIROMON_MAX_BATCH_BYTES" : "ENVIROMON_MAX_BODY_BYTES");
    if (strcmp(url, "/") == 0 && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0))
        return send_json(conn, MHD_HTTP_OK, strdup("{\"status\":\"ready\"}"));
    const function_entry_t *f = find_function(url);
    if (!f) {
        char name[80];
        snprintf(name, sizeof name, "%s", url[0] == '/' ? url + 1 : url);
        for (char *c = name; *c; c++) if ((unsigned char)*c < 0x20 || *c == '"' || *c == '\\') *c = '?';
        return send_error(conn, MHD_HTTP_NOT_FOUND, "no function named '%s'", name);
    }
    if (strcmp(method, "POST") != 0)
        return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                          "%s: the Functions host invokes functions with POST, not %s", f->name, method);
    if (st->streamed) return run_streamed(srv, conn, st);
    return run_function(srv, conn, f, st);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    server_t *srv = cls;
    request_state_t *st = *con_cls;
    if (!st) return;
    /* a kept-alive connection waits for its next request, under the deadline again */
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) conn_guard_idle(srv->guard, st->gk);
    if (st->counted) atomic_fetch_sub(&srv->inflight, 1);
    atomic_fetch_add(&srv->completed, 1);
    if (st->reader) st->streamed->reader->close(st->reader);
    buf_free(&st->body);
    free(st);
    *con_cls = NULL;
}

/* Connection opened or closed: the admission guard tracks it. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    server_t *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? conn_guard_opened(srv->guard, ci->connect_fd) : NULL;
    } else {
        conn_guard_closed(srv->guard, *socket_context);
        *socket_context = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[256];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    log_debug(NULL, "libmicrohttpd: %s", line);
}

server_t *server_start(app_t *app, char *err, size_t errlen)
{
    server_t *srv = calloc(1, sizeof *srv);
    if (!srv) { snprintf(err, errlen, "out of memory"); return NULL; }
    srv->app = app;
    atomic_init(&srv->inflight, 0);
    atomic_init(&srv->completed, 0);
    if (!(srv->guard = conn_guard_new(SERVER_REQUEST_DEADLINE_MS, SERVER_MAX_CONNECTIONS / 2))) {
        snprintf(err, errlen, "out of memory");
        free(srv);
        return NULL;
    }

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)app->cfg.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_ERROR_LOG | MHD_USE_POLL | MHD_USE_ITC;
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)app->cfg.port, NULL, NULL, on_request, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)app->cfg.request_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)SERVER_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024), /* headers only: bodies stream past it */
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024),
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errlen, "cannot listen on 127.0.0.1:%d (is the port already in use?)", app->cfg.port);
        conn_guard_free(srv->guard);
        free(srv);
        return NULL;
    }
    if (!(srv->sweeper = conn_guard_sweeper_start(srv->guard, "handler"))) {
        snprintf(err, errlen, "cannot start a thread");
        MHD_stop_daemon(srv->daemon);
        conn_guard_free(srv->guard);
        free(srv);
        return NULL;
    }
    return srv;
}

int server_inflight(const server_t *srv) { return atomic_load(&srv->inflight); }

unsigned long server_activity(const server_t *srv) { return atomic_load(&srv->completed); }

void server_stop(server_t *srv, int drain_ms)
{
    if (!srv) return;
    /* Stop accepting: new connections are refused from here on. */
    MHD_socket lsock = MHD_quiesce_daemon(srv->daemon);
    if (lsock != MHD_INVALID_SOCKET) close(lsock);
    for (int waited = 0; atomic_load(&srv->inflight) > 0 && waited < drain_ms; waited += 10) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    conn_guard_sweeper_stop(srv->sweeper);
    MHD_stop_daemon(srv->daemon);
    conn_guard_free(srv->guard); /* after the daemon: it reported every connection closed */
    free(srv);
}
