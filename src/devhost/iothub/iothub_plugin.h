/* iothub_plugin.h — the local IoT Hub inside `devhost start`.
 *
 * Owns the glue between the host (devhost/host/host.h) and the hub (hub.h, d2c.h, eventhub.h):
 * the hub opened in the host's data folder, IoT Hub's device API on the host's port (the
 * `/devices/` route, answered by d2c.c), the source of every `eventHubTrigger` function (one
 * Event Hubs trigger per function, reading the hub's partitions and invoking the function with
 * dh_invoke), and the hub's part of the 10 s summary line. main.c attaches it after
 * dh_host_new; the host starts, stops and frees it with its other plugins.
 *
 * What a function's binding means locally: `eventHubName` (%Setting% resolved by the host, or
 * the connection string's EntityPath, which wins as in the host) names the Event Hub in
 * PartitionContext — the local hub has one Event Hub-compatible endpoint and every name reads
 * it; `consumerGroup` (default `$Default`) keeps its own checkpoints; `cardinality` and
 * `dataType` shape the invocation (eh_wire.h); `connection` names a setting that must hold an
 * Event Hubs connection string (Endpoint=sb://...), as the host requires — one naming
 * localhost (the Event Hubs emulator's
 * `Endpoint=sb://localhost;...;UseDevelopmentEmulator=true;`) is the local hub, and any other
 * namespace is reported at start because devhost cannot read Azure's Event Hubs (no AMQP) and
 * reads the local hub instead. */
#ifndef ENVIROMON_IOTHUB_PLUGIN_H
#define ENVIROMON_IOTHUB_PLUGIN_H

#include <stddef.h>

#include "devhost/host/host.h"
#include "devhost/iothub/hub.h"

typedef struct iothub_plugin_opts {
    const char *name;        /* hub name (--hub), NULL: "enviromon" */
    int         partitions;  /* --partitions, 0: the existing hub's count or 4 */
} iothub_plugin_opts_t;

/* Open the hub in dh_host_data_dir(h), add the `/devices/` route and register the
 * eventHubTrigger plugin. Call after dh_host_new and before dh_host_run. Returns the hub — it
 * belongs to the plugin, stays open until dh_host_free (after every plugin's stop, so that other
 * plugins such as MQTT may use it until theirs) — or NULL with an actionable message in err. */
iothub_t *iothub_plugin_attach(dh_host_t *h, const iothub_plugin_opts_t *o, char *err, size_t errlen);

#endif
