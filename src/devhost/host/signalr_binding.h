/* signalr_binding.h — the SignalR Service bindings, as the SignalR extension implements them.
 *
 * Owns: preparing each signalRConnectionInfo / signalR binding at start-up (its
 * connectionStringSetting, default AzureSignalRConnectionString, must name a setting holding a
 * valid connection string; hubName is required), minting the connection info an input binding
 * passes in Data (HS256 client token for {scheme}://{host}/client/?hub={hub}, one hour,
 * `nameid` = the resolved userId; the value is the extension's JObject.ToString() text,
 * double-encoded by the custom-handler layer), and delivering an output binding's messages
 * through the service's REST API (2022-06-01 paths, HS256 token per request, in order, with a
 * timeout): sends to everyone, a user, a group or a connection (precedence connectionId >
 * userId > groupName) and group actions (add/remove/removeAll). Any message that cannot be
 * converted or delivered fails the invocation, as the host fails it. Connections to the service
 * are kept alive between invocations. Thread-safe once prepared. */
#ifndef ENVIROMON_DH_SIGNALR_BINDING_H
#define ENVIROMON_DH_SIGNALR_BINDING_H

#include <stddef.h>

struct cJSON;
struct dh_settings;
struct dh_function;
struct dh_binding;
struct sr_conn;

typedef struct dh_sr_bindings dh_sr_bindings_t;

/* Delivery limits: connect timeout and whole-request timeout of each REST call. */
#define DH_SR_CONNECT_TIMEOUT_MS 3000
#define DH_SR_REQUEST_TIMEOUT_MS 15000

/* The set of SignalR connections the app uses. NULL when out of memory. */
dh_sr_bindings_t *dh_sr_bindings_new(void);
void dh_sr_bindings_free(dh_sr_bindings_t *c);

/* Prepare binding b of fn (type signalR or signalRConnectionInfo): sets b->signalr. Returns 0,
 * or -1 with a message naming the file, the binding and the setting. Warnings (properties
 * devhost does not implement, such as idToken) are logged. */
int dh_sr_prepare(dh_sr_bindings_t *c, struct dh_function *fn, struct dh_binding *b,
                  const struct dh_settings *settings, char *err, size_t errlen);

/* Also track the connection string in setting `name` when it is set and valid (the app's
 * AzureSignalRConnectionString even when no binding names it), for the local-service check.
 * Returns 0 (nothing to track is not an error), -1 with err when it is set but malformed. */
int dh_sr_track_setting(dh_sr_bindings_t *c, const struct dh_settings *settings, const char *name,
                        char *err, size_t errlen);

/* The distinct connections in use: count, parsed form, and the raw connection string. */
size_t dh_sr_count(const dh_sr_bindings_t *c);
const struct sr_conn *dh_sr_conn(const dh_sr_bindings_t *c, size_t i);
const char *dh_sr_connection_string(const dh_sr_bindings_t *c, size_t i);

/* The Data value of a signalRConnectionInfo binding for one invocation (metadata = the
 * invocation's binding data, for userId/hubName expressions). Returns the wire value (a JSON
 * string item), or NULL with err (e.g. the SDK's "Error while accessing
 * 'x-ms-client-principal-id': property doesn't exist."). */
struct cJSON *dh_sr_connection_info(const struct dh_binding *b, const struct cJSON *metadata, char *err,
                                    size_t errlen);

/* Deliver the output value of a signalR binding (an object, an array of them, or a string
 * holding JSON). Returns the number of messages delivered (>= 0), or -1 with err naming the
 * message that failed and why. Blocks for at most DH_SR_REQUEST_TIMEOUT_MS per message;
 * *stop (when not NULL and set) aborts between and during requests. */
int dh_sr_deliver(dh_sr_bindings_t *c, const struct dh_binding *b, const struct cJSON *value,
                  const struct cJSON *metadata, const volatile int *stop, char *err, size_t errlen);

/* Totals for the summary line: messages delivered and delivery failures. */
void dh_sr_stats(const dh_sr_bindings_t *c, unsigned long long *delivered, unsigned long long *failed);

#endif
