/* mqtt_packet.h — MQTT 3.1.1 control packets: a bounded parser and the serialisers.
 *
 * Owns the wire format only (OASIS MQTT 3.1.1, chapters 2 and 3): the fixed header and its
 * Remaining Length, each packet's variable header and payload, and every structural rule a
 * receiver must enforce (reserved flag bits, UTF-8 strings without U+0000, packet
 * identifiers other than 0, QoS 3, DUP on QoS 0, empty SUBSCRIBE, trailing bytes). It knows
 * nothing of sockets, sessions or IoT Hub, so it is a pure function over bytes: the server
 * feeds it whatever has arrived, the fuzzer feeds it anything. Parsed packets point into the
 * caller's buffer (no copies, no allocation); strings are NOT NUL-terminated.
 *
 * The serialisers cover both directions so that tests and the load generator speak the
 * protocol with the same code the server is checked against (the tests also use independent
 * peers: mosquitto, mqtt.js). */
#ifndef ENVIROMON_MQTT_PACKET_H
#define ENVIROMON_MQTT_PACKET_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef enum {
    MQTT_CONNECT = 1, MQTT_CONNACK = 2, MQTT_PUBLISH = 3, MQTT_PUBACK = 4, MQTT_PUBREC = 5,
    MQTT_PUBREL = 6, MQTT_PUBCOMP = 7, MQTT_SUBSCRIBE = 8, MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10, MQTT_UNSUBACK = 11, MQTT_PINGREQ = 12, MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14
} mqtt_type_t;

/* CONNACK return codes (3.2.2.3). */
enum {
    MQTT_CONNACK_ACCEPTED = 0x00,
    MQTT_CONNACK_BAD_PROTOCOL = 0x01,
    MQTT_CONNACK_ID_REJECTED = 0x02,
    MQTT_CONNACK_UNAVAILABLE = 0x03,
    MQTT_CONNACK_BAD_CREDENTIALS = 0x04,
    MQTT_CONNACK_NOT_AUTHORISED = 0x05
};

#define MQTT_SUBACK_FAILURE 0x80
/* The largest Remaining Length the encoding can express (4 bytes of 7 bits). */
#define MQTT_MAX_REMAINING 268435455u

/* A length-delimited string or byte run inside the parsed buffer; not NUL-terminated. */
typedef struct mqtt_str {
    const char *s;
    size_t      len;
} mqtt_str_t;

typedef struct mqtt_connect {
    mqtt_str_t protocol;      /* "MQTT" for 3.1.1 */
    unsigned   level;         /* 4 for 3.1.1 */
    int        supported;     /* 1 when protocol is "MQTT" level 4 and the payload was parsed;
                               * 0: only protocol and level are set (answer CONNACK 0x01) */
    int        clean;
    unsigned   keepalive;     /* seconds, 0 = none */
    mqtt_str_t client_id;
    int        has_will, will_qos, will_retain;
    mqtt_str_t will_topic, will_payload;
    int        has_username, has_password;
    mqtt_str_t username, password; /* password is binary data */
} mqtt_connect_t;

typedef struct mqtt_publish {
    mqtt_str_t     topic;
    int            qos, dup, retain;
    unsigned       id;        /* packet identifier, 0 for QoS 0 */
    const uint8_t *payload;
    size_t         payload_len;
} mqtt_publish_t;

/* SUBSCRIBE / UNSUBSCRIBE / SUBACK bodies are validated whole by the parser and walked
 * with mqtt_list_next. */
typedef struct mqtt_list {
    unsigned       id;
    const uint8_t *p;         /* the entries */
    size_t         len;
    size_t         count;     /* number of entries */
} mqtt_list_t;

typedef struct mqtt_packet {
    mqtt_type_t type;
    unsigned    flags;        /* low nibble of the first byte */
    size_t      size;         /* whole packet: fixed header + Remaining Length */
    union {
        mqtt_connect_t connect;
        mqtt_publish_t publish;
        struct { int session_present; unsigned rc; } connack;
        unsigned       id;    /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
        mqtt_list_t    list;  /* SUBSCRIBE, UNSUBSCRIBE, SUBACK */
    } u;
} mqtt_packet_t;

typedef enum {
    MQTT_PARSE_OK = 0,     /* *pkt describes the first packet; *used bytes were consumed */
    MQTT_PARSE_MORE,       /* the first packet is not complete yet */
    MQTT_PARSE_MALFORMED,  /* protocol violation: close the connection (*why says which) */
    MQTT_PARSE_TOO_BIG     /* the fixed header announces more than max_remaining */
} mqtt_parse_result_t;

/* Parse the first packet of buf[0..len). max_remaining bounds the Remaining Length; a
 * packet over it is refused as soon as its fixed header is complete, before its body
 * arrives. On MQTT_PARSE_OK, *used is the packet's size and pkt's pointers point into buf.
 * On MALFORMED/TOO_BIG, *why is a static description. Never reads outside buf. */
mqtt_parse_result_t mqtt_parse(const uint8_t *buf, size_t len, size_t max_remaining,
                               mqtt_packet_t *pkt, size_t *used, const char **why);

/* Next entry of a parsed SUBSCRIBE (filter + requested QoS), UNSUBSCRIBE (filter; *qos = 0)
 * or SUBACK (no filter; *qos = return code). *pos starts at 0. Returns 1, or 0 at the end. */
int mqtt_list_next(const mqtt_packet_t *pkt, size_t *pos, mqtt_str_t *filter, unsigned *qos);

/* 1 when s is an MQTT UTF-8 string: well-formed UTF-8 without U+0000 (1.5.3). */
int mqtt_utf8_ok(const char *s, size_t len);

/* ---- serialisers: append one packet to b. Return 0, or -1 when a field does not fit the
 * encoding (a string over 65535 bytes, a packet over MQTT_MAX_REMAINING, packet id 0 where
 * one is required; b is then left as it was) or memory ran out (b->oom). ------------- */

int mqtt_put_connack(buf_t *b, int session_present, unsigned rc);
/* PUBACK, PUBREC, PUBREL (flags 0x2), PUBCOMP, UNSUBACK. */
int mqtt_put_id_packet(buf_t *b, mqtt_type_t type, unsigned id);
int mqtt_put_suback(buf_t *b, unsigned id, const uint8_t *codes, size_t n);
/* PINGREQ, PINGRESP, DISCONNECT. */
int mqtt_put_empty(buf_t *b, mqtt_type_t type);
/* CONNECT from c (protocol "MQTT" level 4 regardless of c->protocol/level). */
int mqtt_put_connect(buf_t *b, const mqtt_connect_t *c);
int mqtt_put_publish(buf_t *b, const mqtt_publish_t *p);
/* SUBSCRIBE (qos != NULL, one requested QoS per filter) or UNSUBSCRIBE (qos == NULL). */
int mqtt_put_subscribe(buf_t *b, unsigned id, const mqtt_str_t *filters, const unsigned *qos,
                       size_t n);

/* "CONNECT", "PUBLISH", ... for log lines; "reserved" for 0 and 15. */
const char *mqtt_type_name(unsigned type);

#endif
