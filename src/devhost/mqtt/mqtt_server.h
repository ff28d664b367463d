/* mqtt_server.h — devhost's IoT Hub MQTT endpoint: MQTT 3.1.1 over TLS for devices.
 *
 * Owns: the listening socket, one event-loop thread (epoll, non-blocking sockets and
 * OpenSSL) that holds every device connection — an idle connection costs a socket, a small
 * struct and OpenSSL's session state, never a thread —, the MQTT sessions as IoT Hub runs
 * them (mqtt_session.c), keep-alive and connect timeouts, one connection per device, and the
 * hand-over of each message to the backend with its PUBACK held back until the backend says
 * the message is durable. It does not own device identities or storage: those are the
 * backend's (the local IoT Hub), reached through mqtt_backend_t. See docs/mqtt.md for what
 * devices may do and what is not supported.
 *
 * Threading: the backend's authenticate, publish and release are called on the loop thread
 * and must not block for long (publish only queues the message); mqtt_server_publish_done may
 * be called from any thread, before or after publish returns. */
#ifndef ENVIROMON_MQTT_SERVER_H
#define ENVIROMON_MQTT_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "devhost/mqtt/mqtt_iothub.h"

typedef struct ssl_ctx_st SSL_CTX;

typedef enum {
    MQTT_AUTH_OK = 0,
    MQTT_AUTH_BAD_CREDENTIALS, /* the password is not a well-formed SAS token → CONNACK 0x04 */
    MQTT_AUTH_NOT_AUTHORISED,  /* unknown device, wrong signature, expired, another device's
                                * token → 0x05 (as IoT Hub answers a bad SAS) */
    MQTT_AUTH_UNAVAILABLE      /* the backend cannot decide now (registry unreadable) → 0x03 */
} mqtt_auth_t;

typedef enum {
    MQTT_PUB_OK = 0,   /* durable: the device gets its PUBACK */
    MQTT_PUB_REFUSED,  /* the message is not acceptable (e.g. too large, device removed) */
    MQTT_PUB_FAILED    /* not stored (disk full, I/O error): the device must re-send */
} mqtt_pub_status_t;
/* For REFUSED and FAILED the connection is closed without a PUBACK (MQTT 3.1.1 has no
 * negative acknowledgement; IoT Hub closes the connection too), after the PUBACKs of the
 * messages before it: an SDK re-sends what was not acknowledged when it reconnects. */

/* One device-to-cloud message, valid only during the publish call (copy what you keep). */
typedef struct mqtt_message {
    const char         *device_id;  /* the authenticated device (never taken from the topic) */
    const mqtt_props_t *props;      /* system and application properties */
    const void         *body;
    size_t              body_len;
    int                 qos;        /* 0 or 1 (informational: both are stored the same way) */
    int                 will;       /* 1 for a Will message sent because the device vanished */
} mqtt_message_t;

typedef struct mqtt_backend {
    void *ctx;
    /* Check a device's SAS token (password, NUL-terminated; never log it). username is the
     * CONNECT user name as sent; the server has already checked that it names this hub and
     * device_id (client id = device id) and no module. On MQTT_AUTH_OK the backend may set
     * *session to its own state for this connection (handed to publish, then to release) and
     * *expires_at to when the token stops being valid (Unix seconds, clock-skew allowance
     * included; 0 = never): the connection is closed then, as IoT Hub does, and the SDK
     * reconnects with a fresh token. why receives a reason for devhost's log (never the
     * token). */
    mqtt_auth_t (*authenticate)(void *ctx, const char *device_id, const char *username,
                                const char *password, int64_t *expires_at, void **session,
                                char *why, size_t whylen);
    /* Append a message to the device's partition (asynchronously) and call
     * mqtt_server_publish_done(token, ...) exactly once, from any thread, before or after
     * returning, once it is durable or has failed. */
    void (*publish)(void *ctx, void *session, const mqtt_message_t *m, void *token);
    /* The connection of session is gone (optional; never called for a NULL session). */
    void (*release)(void *ctx, void *session);
} mqtt_backend_t;

/* A backend's completion of one publish (thread-safe). */
void mqtt_server_publish_done(void *token, mqtt_pub_status_t status);

typedef struct mqtt_server_opts {
    const char    *host;              /* listen address, default "127.0.0.1" */
    int            port;              /* default 8883; 0 picks a free port (mqtt_server_port) */
    const char    *hub_host;          /* required: "{hub}.azure-devices.net"; user names must name it */
    SSL_CTX       *ssl_ctx;           /* required, borrowed (tls_ca_server_ctx) */
    const char    *ca_path;           /* optional: the CA file named in TLS failure log lines */
    mqtt_backend_t backend;           /* required */
    int            connect_timeout_ms; /* TLS handshake + CONNECT must finish within, default 10000 */
    unsigned       max_inflight;      /* unacknowledged messages per connection before its
                                       * socket is no longer read (TCP pushes back), default 256 */
    unsigned       max_keepalive_s;   /* server-side cap of the keep-alive timeout, and the
                                       * timeout of keep-alive 0, default 1767 (IoT Hub's) */
} mqtt_server_opts_t;

typedef struct mqtt_server mqtt_server_t;

typedef struct mqtt_server_stats {
    uint64_t connections;      /* open device sessions (after CONNACK 0) */
    uint64_t accepted;         /* TCP connections accepted since start */
    uint64_t refused;          /* CONNECTs refused (CONNACK != 0) */
    uint64_t messages;         /* PUBLISHes handed to the backend */
    uint64_t acked;            /* of those, reported durable */
    uint64_t failed;           /* of those, refused or failed by the backend */
    uint64_t protocol_errors;  /* connections closed for a malformed or forbidden packet */
} mqtt_server_stats_t;

void mqtt_server_opts_default(mqtt_server_opts_t *o);

/* Listen and start the loop thread. Returns NULL with an actionable message in err. SIGPIPE
 * is set to be ignored if it was not handled (OpenSSL writes to sockets that peers reset). */
mqtt_server_t *mqtt_server_start(const mqtt_server_opts_t *o, char *err, size_t errlen);

/* The port actually listened on. */
int mqtt_server_port(const mqtt_server_t *s);

/* Close device_id's connection, if any (its key was regenerated, it was removed). Thread-safe. */
void mqtt_server_disconnect_device(mqtt_server_t *s, const char *device_id);

/* A snapshot of the counters. Thread-safe. */
void mqtt_server_stats(mqtt_server_t *s, mqtt_server_stats_t *st);

/* Stop: no new connections, no more reading; PUBACKs of messages that become durable within
 * ~2 s are still sent; then every connection is closed, every outstanding completion is
 * awaited (the backend must still be running), and s is freed. */
void mqtt_server_stop(mqtt_server_t *s);

#endif
