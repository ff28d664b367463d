/* mqtt_plugin.h — IoT Hub's MQTT device endpoint and devhost's TLS inside `devhost start`.
 *
 * Owns the glue between the host (devhost/host/host.h), devhost's local CA (tls_ca.h) and the
 * MQTT server (mqtt_server.h) with the local IoT Hub as its backend (mqtt_hub_backend.h): the CA
 * and server certificate made or checked in the data folder (its path printed at start), the
 * MQTT-over-TLS listener on 127.0.0.1 (`--mqtt-port`, default 8883), HTTPS on the front port
 * with the same certificate (`--tls`), a device's MQTT session closed as soon as the registry
 * says it was removed, re-created or re-keyed, and the endpoint's part of the summary line.
 * main.c attaches it after the local IoT Hub (iothub_plugin.h); the host stops it before the hub
 * closes, so every PUBACK still due is sent. */
#ifndef ENVIROMON_MQTT_PLUGIN_H
#define ENVIROMON_MQTT_PLUGIN_H

#include <stddef.h>

#include "devhost/host/host.h"
#include "devhost/iothub/hub.h"

#define MQTT_PLUGIN_DEFAULT_PORT 8883

typedef struct mqtt_plugin_opts {
    int port;   /* the MQTT port: MQTT_PLUGIN_DEFAULT_PORT, 0 for any free port (printed), -1 for no
                 * MQTT endpoint (--no-mqtt) */
    int tls;    /* serve HTTPS instead of HTTP on the front port (--tls) */
} mqtt_plugin_opts_t;

/* Make sure the CA exists (when MQTT or TLS is on), set the front's certificate for --tls and
 * register the MQTT plugin (started after the front server). hub must stay open until the
 * host's plugins are stopped. Returns 0, or -1 with an actionable message in err. */
int mqtt_plugin_attach(dh_host_t *h, iothub_t *hub, const mqtt_plugin_opts_t *o, char *err, size_t errlen);

#endif
