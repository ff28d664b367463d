/* message.h — a device-to-cloud message, as the local IoT Hub stores and delivers it.
 *
 * Owns the message model shared by every transport (HTTP here, MQTT in issue 10): the
 * properties the device sets (IoT Hub system properties message-id, correlation-id,
 * content-type, content-encoding, user-id, and application properties), the properties the hub
 * stamps (authenticated device id, its generation id, the auth method, the time the hub
 * received it), IoT Hub's size rule, and the record payload codec of the partition log. The
 * codec is versioned and strict; decoding is a pure function over any bytes (a fuzz target).
 *
 * Payload: byte 1 (version), then fields (u8 tag, u32 little-endian length, bytes). Strings are
 * stored with their terminating NUL so that a decoded view can point into the payload. */
#ifndef ENVIROMON_IOTHUB_MESSAGE_H
#define ENVIROMON_IOTHUB_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define IOTHUB_MAX_MESSAGE_BYTES (256 * 1024)   /* IoT Hub's D2C limit, per message and per batch */
#define IOTHUB_MAX_PROPS 256                    /* application properties per message (local limit) */

typedef struct iothub_prop {
    const char *name;
    const char *value;
} iothub_prop_t;

typedef struct iothub_msg {
    const char *message_id;       /* each may be NULL */
    const char *correlation_id;
    const char *content_type;
    const char *content_encoding;
    const char *user_id;
    const iothub_prop_t *props;   /* application properties, as the device named them */
    size_t n_props;
    const void *body;
    size_t body_len;
} iothub_msg_t;

/* What the hub stamps on every message it accepts (anti-spoofing: never from the device). */
typedef struct iothub_stamp {
    const char *device_id;        /* the authenticated device */
    const char *generation_id;    /* its registry generation id */
    const char *auth_type;        /* "sas" */
    int64_t     received_ms;      /* iothub-enqueuedtime, epoch ms */
} iothub_stamp_t;

/* A decoded payload: every pointer points into the payload bytes. */
typedef struct iothub_msg_view {
    iothub_stamp_t stamp;
    iothub_msg_t   msg;
    iothub_prop_t  props[IOTHUB_MAX_PROPS];
} iothub_msg_view_t;

/* IoT Hub's size of a message: body bytes + system property values + application property
 * names and values (the devguide's rule). */
size_t iothub_msg_size(const iothub_msg_t *m);

/* 1 when s is a valid application property name or value for D2C over HTTPS: ASCII letters,
 * digits and ! # $ % & ' * + - . ^ _ ` | ~ only (values may be empty, names may not). */
int iothub_prop_text_valid(const char *s, int is_name);

/* Append m and st as a record payload to out. Returns 0, or -1 when out of memory or when a
 * field is longer than 4 GiB. */
int iothub_msg_encode(const iothub_msg_t *m, const iothub_stamp_t *st, buf_t *out);

/* Decode payload[0..len). Returns 0, or -1 with the reason in err. */
int iothub_msg_decode(const void *payload, size_t len, iothub_msg_view_t *out, char *err, size_t errlen);

#endif
