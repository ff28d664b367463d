/* functions.h — the dashboard's HTTP functions (issue 4).
 *
 * Each is a function_fn (handler/app.h) registered in handler/registry.c under its folder
 * name. Client errors and storage outages are reported as Outputs.res with the HTTP status
 * and a JSON {"error": "..."} body while the invocation itself succeeds (returns 0), because
 * that is how an HTTP function answers its caller; only an internal failure (out of memory)
 * fails the invocation with inv_fail() and -1. Binding names: `req` in, `res` out,
 * `connectionInfo` (Negotiate), `signalRMessages` (GetDeviceState, SendSignalr). */
#ifndef ENVIROMON_FUNCTIONS_H
#define ENVIROMON_FUNCTIONS_H

#include "handler/app.h"
#include "protocol/invocation.h"

/* SignalR client method the dashboard listens on. */
#define FN_SIGNALR_TARGET "newMessage"
/* Largest SendSignalr body accepted (the SignalR Service's message limit). */
#define FN_SEND_MAX_BODY (1024u * 1024u)
/* Access-token lifetime Negotiate mints when no binding value arrives (the SDK default). */
#define FN_TOKEN_LIFETIME_S 3600

/* Negotiate (route "negotiate", anonymous): {"url","accessToken"} for the SignalR client —
 * the signalRConnectionInfo binding value when the host supplies one, else a token minted
 * from AzureSignalRConnectionString (aud = client audience, 1 h, nameid from the
 * x-ms-client-principal-id header); when neither works a generic 500 with the invocation id
 * (the log names the setting and what is wrong with it). */
int negotiate_run(invocation_t *inv, app_t *app);

/* GetDeviceState (route "getdevicestate", anonymous): every DeviceState row of the
 * configured partition as the device objects of telemetry/device_view.h, sorted by device
 * id; ?deviceId= selects one (found under its encoded RowKey, 404 when unknown) and
 * broadcasts it. The whole snapshot is also broadcast as newMessage unless ?broadcast=false,
 * at most once per SnapshotBroadcastSeconds per process (within the window the answer is
 * HTTP only: with many devices a snapshot is megabytes to every dashboard). Storage failure
 * → 503. Errors tell the anonymous caller only what it can act on and the invocation id;
 * endpoints, table names and client errors go to the log. */
int get_device_state_run(invocation_t *inv, app_t *app);

/* SendSignalr (route "SendSignalrMessage"): the request body, a JSON object or array of at
 * most FN_SEND_MAX_BODY bytes, is sent as the single argument of newMessage to everyone, or
 * to ?userId= / ?group=. 202 on success; 400 for empty/invalid JSON or bad targeting, 413 for
 * an oversized body. */
int send_signalr_run(invocation_t *inv, app_t *app);

#endif
