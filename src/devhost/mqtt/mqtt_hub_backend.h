/* mqtt_hub_backend.h — the local IoT Hub (devhost/iothub) as the MQTT endpoint's backend.
 *
 * Authentication is the hub's SAS check for the resource `{host}/devices/{id}` (either key of
 * the device); the session keeps the authenticated identity (device id and generation id, which
 * the hub stamps on every message) for the connection's life. A message becomes one
 * iothub_send: its PUBACK is released when the hub reports it durable in its partition log,
 * exactly when the HTTP API answers 204. Mapping of outcomes:
 *   token not even parseable → CONNACK 0x04; unknown device, bad signature, expired → 0x05;
 *   message too large / malformed / device removed since CONNECT → refused, the hub throttling
 *   or unable to write → failed (both close the connection without PUBACK; the device re-sends). */
#ifndef ENVIROMON_MQTT_HUB_BACKEND_H
#define ENVIROMON_MQTT_HUB_BACKEND_H

#include "devhost/iothub/hub.h"
#include "devhost/mqtt/mqtt_server.h"

/* Fill b to use hub h, which must outlive the MQTT server. */
void mqtt_hub_backend(iothub_t *h, mqtt_backend_t *b);

#endif
