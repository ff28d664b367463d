/* signalr_conn.h — one SignalR client connection of the local SignalR Service.
 *
 * Owns: the per-connection state (ids, hub, user, handshake), its bounded outgoing queue of
 * whole JSON hub-protocol records, and two of the transports that drain it: Server-Sent Events
 * (an MHD callback response that parks itself with MHD_suspend_connection while the queue is
 * empty) and Long Polling (a poll request parked until data arrives or the poll times out).
 * The third, WebSockets, lives in signalr_ws.c; waking a connection notifies its socket.
 * Records are queued before any transport attaches (reference §4.10: the handshake POST may
 * beat the SSE GET), and a client that falls further behind than its queue bound is closed
 * so that it never delays others. Every field below is protected by `lock` unless marked
 * "registry", in which case the registry lock (signalr_hub.c) protects it. */
#ifndef ENVIROMON_SIGNALR_CONN_H
#define ENVIROMON_SIGNALR_CONN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/buf.h"

struct MHD_Connection;

#define SR_ID_LEN   22     /* 16 random bytes, base64url without padding */
#define SR_HUB_MAX  128    /* longest hub name accepted */
#define SR_RS       '\x1e' /* JSON hub protocol record separator */

typedef enum { SR_TRANSPORT_NONE = 0, SR_TRANSPORT_SSE, SR_TRANSPORT_LP, SR_TRANSPORT_WS } sr_transport_t;

struct sr_ws_conn;
typedef enum { SR_CLIENT_NEGOTIATED = 0, SR_CLIENT_CONNECTED, SR_CLIENT_CLOSING } sr_client_state_t;

typedef struct sr_client {
    pthread_mutex_t lock;
    int            refs;
    char           id[SR_ID_LEN + 1];   /* public connectionId */
    char           key[SR_ID_LEN + 1];  /* transport id: connectionToken (v1) or connectionId (v0) */
    char           hub[SR_HUB_MAX + 1]; /* lower-cased hub name */
    char          *user;                /* user id from the token, or NULL */
    int            negotiate_version;   /* 0 or 1 */
    sr_transport_t transport;
    sr_client_state_t state;
    size_t         max_queue;           /* bound on queued + staged bytes */
    buf_t          queue;               /* whole records (each ends with 0x1E) not yet handed out */
    buf_t          stage;               /* SSE/WebSockets: framed bytes being written */
    size_t         stage_off;
    struct MHD_Connection *parked;      /* suspended MHD connection waiting for data, or NULL */
    struct sr_ws_conn *ws;              /* WebSocket being served by the WebSocket thread, or NULL */
    int            stream_open;         /* an SSE stream or a WebSocket is attached */
    int            poll_open;           /* a long poll is in flight */
    int            post_open;           /* a send POST is in flight */
    unsigned       poll_gen;            /* bumped when a poll is superseded */
    unsigned long  polls;               /* long polls seen */
    int64_t        created_ms, last_seen_ms, poll_started_ms, last_ping_ms, closing_since_ms;
    char           close_reason[160];
    uint64_t       records_out;         /* records queued for this client */
    /* registry fields */
    int            active;              /* listed in its hub (handshake done, not closing) */
    int            listed;              /* findable by key / id */
    char         **groups;              /* groups this connection was added to */
    size_t         ngroups, capgroups;
} sr_client_t;

/* Monotonic milliseconds. */
int64_t sr_now_ms(void);

/* Fill out (SR_ID_LEN + 1 bytes) with a random base64url id. Returns 0 or -1. */
int sr_random_id(char *out);

/* New client with one reference (the caller's). hub is lower-cased and must be at most
 * SR_HUB_MAX bytes; user may be NULL or "". Returns NULL when out of memory. */
sr_client_t *sr_client_new(const char *hub, const char *user, int negotiate_version,
                           size_t max_queue);
void sr_client_ref(sr_client_t *c);
/* Drop one reference; frees the client with the last one. */
void sr_client_unref(sr_client_t *c);

/* Queue one whole record (JSON + 0x1E). Returns 0 when queued, 1 when the client is closing
 * (dropped), -1 when the record would exceed the queue bound: the client is then closed with
 * a log line (its pending records are discarded, a close message with allowReconnect is
 * queued). A record is always accepted into an empty queue, whatever its size. */
int sr_client_enqueue(sr_client_t *c, const char *rec, size_t len);

/* Start closing: state CLOSING, reason logged; when close_msg, queue {"type":7,...} (with
 * error when error is not NULL, allowReconnect when allow_reconnect); wakes a parked
 * transport so that it drains and ends. Idempotent. */
void sr_client_close(sr_client_t *c, const char *reason, int close_msg, const char *error,
                     int allow_reconnect);

/* Resume the parked MHD connection, if any, or notify the WebSocket thread (new data,
 * timeout, closing). */
void sr_client_wake(sr_client_t *c);

/* Process the body of a client→server POST (one or more records). Handles the handshake
 * (replying {} or {"error":...}), pings and close messages; invocations are ignored
 * (serverless connections are listen-only). Sets *handshake_done to 1 when this body
 * completed the handshake. Returns 0, or -1 when the body was invalid (the client is then
 * closing). */
int sr_client_receive(sr_client_t *c, const char *data, size_t len, int *handshake_done);

/* SSE content reader for MHD_create_response_from_callback: cls must point to a
 * struct sr_sse_stream. */
struct sr_sse_stream {
    sr_client_t           *client;   /* holds a reference */
    struct MHD_Connection *mhd;
};
ssize_t sr_client_sse_read(void *cls, uint64_t pos, char *out, size_t max);

/* Long polling: take everything queued as one poll body. Returns a malloc'd buffer (caller
 * frees; *len may be 0 and the buffer then NULL) and sets *closed when the client is closing
 * and has nothing more to send (answer 204). Must be called with c->lock held. */
char *sr_client_take_locked(sr_client_t *c, size_t *len, int *closed);

#endif
