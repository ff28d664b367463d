/* signalr_service.h — the local SignalR Service (`devhost signalr`).
 *
 * Owns: the HTTP server (libmicrohttpd, internal epoll thread(s), suspend/resume instead of a
 * thread per connection), routing, HS256 Bearer authentication of every request, the
 * serverless REST API (v1 and 2022-06-01: broadcast, user, group and connection sends, group
 * membership, health), client negotiate (versions 0 and 1, transports WebSockets,
 * ServerSentEvents and LongPolling; upgraded WebSockets are handed to signalr_ws.c), and the
 * housekeeping thread (pings, poll timeouts, handshake timeouts, removal of closed
 * connections, periodic send counts). Connections live in signalr_conn.c, hubs/users/groups
 * in signalr_hub.c. Facts: shared/reference/signalr-protocol.md. */
#ifndef ENVIROMON_SIGNALR_SERVICE_H
#define ENVIROMON_SIGNALR_SERVICE_H

#include <stddef.h>

#define SR_DEFAULT_CONNECTION_STRING \
    "Endpoint=http://localhost;Port=8888;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;"

typedef struct sr_service_opts {
    const char *connection_string;  /* required; its AccessKey verifies tokens, its Port is the port */
    const char *host;               /* listen address, default "127.0.0.1" (IPv4 or IPv6 literal, or "localhost") */
    int         port;               /* 0: the connection string's port */
    int         ping_interval_ms;   /* keep-alive pings on WebSockets and SSE, default 15000 */
    int         poll_timeout_ms;    /* a held long poll answers empty after this, default 90000 */
    int         handshake_timeout_ms; /* negotiated connections must handshake within, default 15000 */
    int         lp_idle_timeout_ms; /* long-polling client without a poll for this long is closed, default 30000 */
    size_t      max_queue_bytes;    /* per-connection bound on undelivered bytes, default 1 MiB */
    size_t      max_body_bytes;     /* REST and client POST bodies (larger → 413) and client
                                     * WebSocket messages (larger → close 1009), default 1 MiB */
    unsigned    threads;            /* MHD polling threads, default 2 */
    unsigned    max_connections;    /* 0: derived from RLIMIT_NOFILE */
    int         request_timeout_ms; /* a request (headers and body) must arrive within this of
                                     * its connection opening or of the previous response, else
                                     * the connection is closed; default 10000. Connections
                                     * still waiting for their request are also capped (the
                                     * oldest is closed) so that new clients always find room */
} sr_service_opts_t;

typedef struct sr_service sr_service_t;

/* Fill o with the defaults above (connection_string = NULL). */
void sr_service_opts_default(sr_service_opts_t *o);

/* Parse the connection string, raise RLIMIT_NOFILE, start listening and the housekeeping
 * thread. Returns the service, or NULL with an actionable message in err (never the key). */
sr_service_t *sr_service_start(const sr_service_opts_t *o, char *err, size_t errlen);

/* The port actually listened on. */
int sr_service_port(const sr_service_t *s);

/* Graceful stop: refuse new connections, send every client {"type":7,"error":...,
 * "allowReconnect":true}, give streams up to ~3 s to drain, stop the server, free s. */
void sr_service_stop(sr_service_t *s);

/* Check an `aud` claim against a request: scheme and host (port ignored) must match the
 * connection string's (or host_header's host), the path must equal expect_path ignoring a
 * trailing '/' and ASCII case, and every key=value of the aud's query, if any, must equal
 * the request's argument of that name (lookup returns NULL when absent). Exposed for tests.
 * Returns 1 when acceptable, 0 otherwise. */
int sr_service_aud_ok(const char *aud, const char *scheme, const char *host,
                      const char *host_header, const char *expect_path,
                      const char *(*lookup)(void *arg, const char *name), void *arg);

/* 1 when name is a valid hub name (a letter, then letters, digits, '_'; at most 128). */
int sr_service_valid_hub(const char *name);

#endif
