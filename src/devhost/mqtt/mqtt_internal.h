/* mqtt_internal.h — what mqtt_server.c (sockets, TLS, the loop) and mqtt_session.c (the
 * MQTT/IoT Hub protocol of one connection) share. Everything here is used on the loop
 * thread only, except where a field says otherwise. */
#ifndef ENVIROMON_MQTT_INTERNAL_H
#define ENVIROMON_MQTT_INTERNAL_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#include "devhost/mqtt/mqtt_server.h"
#include "util/buf.h"
#include "util/log.h"

/* IoT Hub's limit on one device-to-cloud message (body + properties). */
#define MQTT_MAX_MESSAGE (256 * 1024)
/* The largest packet read: a 256 KiB message, a 64 KiB topic and the headers. */
#define MQTT_MAX_PACKET (MQTT_MAX_MESSAGE + 65535 + 16)

typedef enum {
    CONN_HANDSHAKE,     /* TLS handshake in progress */
    CONN_WAIT_CONNECT,  /* TLS up, no CONNECT yet */
    CONN_ACTIVE,        /* CONNACK 0 sent */
    CONN_CLOSING        /* flushing what is written, then closed; nothing more is read */
} conn_state_t;

struct mqtt_conn;

/* One message handed to the backend and not yet acknowledged to the device. */
typedef struct mqtt_pending {
    struct mqtt_conn    *conn;      /* NULL once the connection is gone (or for a Will) */
    mqtt_server_t       *srv;
    unsigned             id;        /* packet identifier to acknowledge (QoS 1), else 0 */
    int                  done;      /* loop thread: the completion was processed */
    mqtt_pub_status_t    status;
    struct mqtt_pending *next;      /* the connection's FIFO */
    struct mqtt_pending *next_done; /* srv->lock: the completion queue */
} mqtt_pending_t;

typedef struct mqtt_conn {
    mqtt_server_t    *srv;
    int               fd;
    SSL              *ssl;
    conn_state_t      state;
    char              peer[64];      /* "127.0.0.1:54321" for log lines */
    char             *device_id;     /* set by an accepted CONNECT (checked charset) */
    void             *session;       /* the backend's state for this connection, or NULL */
    buf_t             in;            /* bytes of an incomplete packet, or unprocessed ones */
    size_t            in_off;
    buf_t             out;           /* bytes to write */
    size_t            out_off;
    int               paused;        /* too many messages in flight: not reading */
    int               read_wants_write; /* SSL_read needs the socket writable (TLS 1.3 key update) */
    int               in_ready;      /* on the ready list (has input to process without a poll) */
    uint32_t          events;        /* registered epoll events */
    int64_t           deadline_ms;   /* connect timeout, then keep-alive timeout */
    unsigned          keepalive_ms;  /* 0 before CONNECT */
    int64_t           expires_ms;    /* SAS token expiry, 0 = none */
    mqtt_pending_t   *phead, *ptail; /* messages in flight, in arrival order */
    unsigned          npending;
    buf_t             will_topic;    /* Will message (empty when none or cleared) */
    buf_t             will_payload;
    int               has_will, will_retain;
    const char       *close_reason;  /* static text for the disconnect log line */
    struct mqtt_conn *hnext;         /* device table chain */
    struct mqtt_conn *prev, *next;   /* all connections */
    struct mqtt_conn *next_ready;
} mqtt_conn_t;

struct mqtt_server {
    mqtt_server_opts_t opts;
    char              *host;
    char              *hub_host;
    char              *ca_path;
    int                port;
    int                lfd, ep, efd;
    int                listen_paused;  /* out of file descriptors: accept later */
    int                stopping;       /* loop thread's copy of stop: reading has ended */
    pthread_t          th;
    pthread_mutex_t    lock;
    int                stop;           /* lock */
    mqtt_pending_t    *done_head, *done_tail; /* lock: completions to process */
    char             **kick;           /* lock: device ids to disconnect */
    size_t             nkick;
    mqtt_conn_t       *all;
    mqtt_conn_t       *ready;          /* input to process without waiting for a poll */
    mqtt_conn_t       *dead;           /* destroyed this turn, freed at its end */
    mqtt_conn_t      **table;          /* device id → its one connection */
    size_t             table_size;
    uint64_t           outstanding;    /* publishes whose completion has not been processed */
    unsigned char     *rbuf;           /* one read buffer for all connections */
    char              *scratch;        /* property-bag decoding */
    size_t             scratch_len;
    _Atomic uint64_t   st_connections, st_accepted, st_refused, st_messages, st_acked,
                       st_failed, st_protocol_errors;
};

int64_t mqtt_now_ms(void);

/* ---- server services for the session ------------------------------------------------- */

/* Close c: nothing more is read; what is in c->out is still written (bounded by a short
 * grace), then the socket is closed. level/fmt: the log line (NULL fmt = no line). */
void mqtt_conn_close(mqtt_conn_t *c, log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Make c the connection of c->device_id, closing the one it replaces. -1: out of memory. */
int mqtt_conn_claim_device(mqtt_conn_t *c);

/* ---- the session (mqtt_session.c) ----------------------------------------------------- */

/* Handle one parsed packet. Returns 0, or -1 when c is closing. */
int mqtt_session_packet(mqtt_conn_t *c, const mqtt_packet_t *p);

/* c's completions changed: send the PUBACKs now due, in order; close on a failure. */
void mqtt_session_drain(mqtt_conn_t *c);

/* c is being closed: detach its messages in flight, publish its Will when publish_will (not
 * after DISCONNECT, not when the server stops) and release the backend's session. */
void mqtt_session_end(mqtt_conn_t *c, int publish_will);

#endif
