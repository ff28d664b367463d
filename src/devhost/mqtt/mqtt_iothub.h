/* mqtt_iothub.h — what IoT Hub makes of MQTT names: the CONNECT user name, the telemetry
 * topic and its property bag, and the topic filters a device may subscribe to.
 *
 * Pure functions over strings, shared by the server and the unit tests/fuzzer. Facts (see
 * docs/mqtt.md for sources): the user name is `{hub host}/{device id}/?{query}` (the old
 * web simulator omits the `?`; modules add `/{module id}`); device and module ids are used
 * raw, never percent-decoded; telemetry goes to `devices/{device id}/messages/events/` followed
 * by an optional property bag `k=v&k2=v2` whose names and values are percent-encoded (Node's
 * SDK encodes `$` too: `%24.mid`), `$.mid` `$.cid` `$.ct` `$.ce` `$.uid` being the message id,
 * correlation id, content type, content encoding and user id; IoT Hub's other `$.` names
 * ($.to, $.exp, $.ifid, $.on, $.sub ...) are protocol fields Enviromon ignores. */
#ifndef ENVIROMON_MQTT_IOTHUB_H
#define ENVIROMON_MQTT_IOTHUB_H

#include <stddef.h>

#include "devhost/mqtt/mqtt_packet.h"

/* A device may attach at most this many application properties to one message. */
#define MQTT_HUB_MAX_APP_PROPS 256

typedef struct mqtt_username {
    mqtt_str_t host;       /* "{hub}.azure-devices.net" as the device wrote it */
    mqtt_str_t device_id;
    mqtt_str_t module_id;  /* len 0 unless the user name names a module */
    mqtt_str_t query;      /* after the optional '?', may be empty */
} mqtt_username_t;

/* Split a CONNECT user name. Returns 0, or -1 with *why when it is not of IoT Hub's form
 * (empty host or device id, nothing after the host). */
int mqtt_hub_parse_username(const char *u, size_t len, mqtt_username_t *out, const char **why);

typedef enum {
    MQTT_HUB_TOPIC_TELEMETRY,  /* devices/{id}/messages/events/{bag}: *id and *bag set */
    MQTT_HUB_TOPIC_MODULE,     /* devices/{id}/modules/{m}/messages/events/...: not supported */
    MQTT_HUB_TOPIC_TWIN,       /* $iothub/twin/...: not supported (no twins) */
    MQTT_HUB_TOPIC_METHODS,    /* $iothub/methods/...: not supported (no direct methods) */
    MQTT_HUB_TOPIC_UNKNOWN     /* anything else */
} mqtt_hub_topic_t;

/* Classify a PUBLISH topic name. For telemetry, *id is the device id in the topic and *bag
 * the property bag after "messages/events/" (without one leading '?', which is tolerated). */
mqtt_hub_topic_t mqtt_hub_classify_topic(mqtt_str_t topic, mqtt_str_t *id, mqtt_str_t *bag);

typedef struct mqtt_prop {
    const char *name;
    const char *value;
} mqtt_prop_t;

/* A decoded property bag. Strings are NUL-terminated and live in the scratch buffer given to
 * mqtt_hub_decode_bag. */
typedef struct mqtt_props {
    const char *message_id;       /* $.mid, NULL when absent */
    const char *correlation_id;   /* $.cid */
    const char *content_type;     /* $.ct */
    const char *content_encoding; /* $.ce */
    const char *user_id;          /* $.uid */
    mqtt_prop_t app[MQTT_HUB_MAX_APP_PROPS];
    size_t      napp;             /* application properties, in order, names unique */
    size_t      ignored;          /* other `$.` names ($.to, $.exp, ...) dropped */
    size_t      size;             /* bytes IoT Hub counts against the 256 KiB message limit:
                                   * system property values + application names and values */
} mqtt_props_t;

/* Decode a property bag: `&`-separated `name=value` items, percent-decoded ('+' stays '+'),
 * empty items skipped, an item without '=' has the value "", a repeated name keeps its last
 * value, names starting with `$.` other than the five above dropped. scratch must hold at least bag.len + 2 * (number of items) + 2 bytes; bag.len * 2 + 2
 * always suffices. Returns 0, or -1 with *why (a static string) for a bad percent escape, an
 * empty name, a decoded U+0000 or invalid UTF-8, or more than MQTT_HUB_MAX_APP_PROPS names. */
int mqtt_hub_decode_bag(mqtt_str_t bag, char *scratch, size_t scratch_len, mqtt_props_t *out,
                        const char **why);

/* 1 when device_id may subscribe to filter: its own `devices/{id}/messages/devicebound/#`,
 * `$iothub/twin/res/#`, `$iothub/twin/PATCH/properties/desired/#` or `$iothub/methods/POST/#`
 * (accepted so that SDKs can enable them; nothing is ever published to them). */
int mqtt_hub_filter_ok(const char *device_id, mqtt_str_t filter);

/* 1 when s equals the NUL-terminated t exactly / ignoring ASCII case. */
int mqtt_str_eq(mqtt_str_t s, const char *t);
int mqtt_str_caseeq(mqtt_str_t s, const char *t);

#endif
