/* host.h — `devhost start`: the local stand-in for the Azure Functions host, and the seams other
 * devhost modules plug into.
 *
 * The host loads the function app (app_config.h), keeps the custom handler running
 * (supervisor.h), serves HTTP on 127.0.0.1 (front.h: HTTP triggers, /admin/host/status, the
 * dashboard folder, route hooks), runs the local SignalR Service in-process when the app's
 * connection string points at localhost and nothing listens there, invokes functions
 * (dh_invoke: the real host's request shape, output bindings delivered, one log line per
 * invocation), prints a summary every 10 s, and stops everything it started on SIGINT/SIGTERM
 * within 10 s (or when the handler failed too often, with exit code 1).
 *
 * Seams (everything here is safe to call from any thread unless it says otherwise):
 *  1. Trigger sources and other plugins: dh_host_register() a dh_plugin_t before dh_host_run().
 *     Every enabled function whose trigger type is not httpTrigger is handed to the plugin
 *     registered for that type (bind); an unknown trigger type without a plugin is a start-up
 *     error. The plugin invokes functions with dh_invoke() (from any number of threads) and
 *     does its own retrying with the function's retry policy (retry.h: dh_retry_should_retry,
 *     dh_retry_delay_ms, dh_retry_context for Metadata.RetryContext).
 *  2. Route hooks: dh_host_add_route() serves a path prefix of the front server.
 *  3. Lifecycle and the 10 s summary: the plugin's start/stop/summary callbacks.
 *  4. The data folder (dh_host_data_dir) and the settings (dh_host_setting).
 */
#ifndef ENVIROMON_DH_HOST_H
#define ENVIROMON_DH_HOST_H

#include <stddef.h>

#include "devhost/host/front.h"
#include "devhost/host/function_config.h"
#include "devhost/host/retry.h"
#include "util/buf.h"

struct cJSON;

typedef struct dh_host dh_host_t;

/* ---- running the host (main.c) ---------------------------------------------------------- */

typedef struct dh_host_opts {
    const char *script_root;       /* NULL: the current directory */
    int         port;              /* 0: Host.LocalHttpPort, else 7071 */
    const char *cors;              /* NULL: Host.CORS */
    int         cors_credentials;  /* -1: Host.CORSCredentials; 0/1: --cors-credentials given */
    int         enable_auth;       /* enforce authLevel with generated keys (--enable-auth) */
    const char *data_dir;          /* NULL: ".devhost" (created when missing) */
} dh_host_opts_t;

/* Load and check the app, create the data folder (and the keys with enable_auth), prepare the
 * bindings and the front server; nothing listens and nothing runs yet. Blocks SIGINT/SIGTERM in
 * the calling thread (call it before starting threads: they inherit the mask, so that
 * dh_host_run alone receives the signals) and ignores SIGPIPE. NULL with an actionable message
 * in err (a configuration error: exit non-zero). */
dh_host_t *dh_host_new(const dh_host_opts_t *o, char *err, size_t errlen);

/* Bind functions to plugins, start the local SignalR Service if needed, the front server, the
 * handler and the plugins; then serve until SIGINT/SIGTERM or a fatal handler failure, and stop
 * everything (at most ~10 s). Returns the process exit code: 0 after a signal, 1 after a start-up
 * error or when the handler failed too often (the reason is logged). Call once, from the thread
 * that called dh_host_new. */
int dh_host_run(dh_host_t *h);

/* Free the host (after dh_host_run, or instead of it). Destroys the registered plugins, the
 * last registered first (plugins stop in that order too, so a plugin may use what an earlier
 * one owns until its own stop). */
void dh_host_free(dh_host_t *h);

/* ---- seam 1: plugins (trigger sources) ---------------------------------------------------- */

typedef struct dh_plugin {
    const char *name;          /* for messages, e.g. "iothub" */
    const char *trigger_type;  /* the trigger binding type it serves (e.g. "eventHubTrigger"), or NULL */
    void       *self;          /* passed to every callback */
    /* Called once per enabled function whose trigger type equals trigger_type (ASCII
     * case-insensitively), in function-name order, in dh_host_run before anything starts. The
     * function (bindings with %Setting% resolved, fn->retry, fn->trigger) stays valid until
     * dh_host_free. Return 0, or -1 with err: devhost exits with it, nothing started. May be NULL. */
    int  (*bind)(void *self, dh_host_t *h, const dh_function_t *fn, char *err, size_t errlen);
    /* After the front server listens and the handler was started (it may still be starting:
     * dh_invoke waits for it). Return 0, or -1 with err: devhost stops. May be NULL. */
    int  (*start)(void *self, dh_host_t *h, char *err, size_t errlen);
    /* Append fragments (" received=12 delivered=12", leading space) to the 10 s summary line.
     * Called from the main thread. May be NULL. */
    void (*summary)(void *self, buf_t *line);
    /* Stop producing invocations and return within ~2 s (dh_host_stopping() is already 1 and
     * in-flight dh_invoke calls fail fast). Called from the main thread. May be NULL. */
    void (*stop)(void *self);
    /* Free the plugin (after stop, or when start-up failed). May be NULL. */
    void (*destroy)(void *self);
} dh_plugin_t;

/* Register a plugin (copied) before dh_host_run. Returns 0, or -1 with err (two plugins for one
 * trigger type, or the host already running). On failure the plugin is not destroyed. */
int dh_host_register(dh_host_t *h, const dh_plugin_t *p, char *err, size_t errlen);

/* The outcome of one invocation. */
typedef struct dh_invoke_result {
    int           ok;                /* 1: the handler answered 2xx application/json and every output was delivered */
    char          invocation_id[37]; /* the X-Azure-Functions-InvocationId sent */
    char          error[1024];       /* why it failed ("" when ok); never contains secrets */
    long          handler_status;    /* the handler's HTTP status (0: no answer) */
    double        duration_ms;
    struct cJSON *outputs;           /* the reply's Outputs object (owned), or NULL */
    struct cJSON *return_value;      /* the reply's ReturnValue (owned), or NULL */
    struct cJSON *logs;              /* the reply's Logs array (owned), or NULL */
} dh_invoke_result_t;

/* Invoke fn the way the Functions host does: POST {"Data":data,"Metadata":metadata} to the
 * handler's /<fn->name> with X-Azure-Functions-InvocationId, X-Azure-Functions-HostVersion and
 * User-Agent Azure-Functions-Host/<version>. data holds the trigger value under the trigger
 * binding's name, in its wire form (for eventHubTrigger cardinality many: a string holding the
 * JSON array); metadata the trigger's binding data in wire form (strings double-encoded, see
 * common.h dh_wire_string). Both stay the caller's: dh_invoke adds "sys" to metadata when it is
 * absent and the values of other input bindings (signalRConnectionInfo) to data, and keeps no
 * pointer after returning (NULL is taken as an empty object). Waits while the handler
 * (re)starts. Checks the reply as the host does (2xx, application/json, a JSON object, never
 * empty or null), then delivers the function's signalR outputs (a delivery failure is a
 * failure), logs one line (plus the reply's Logs) and counts it. Returns 0 when ok, -1 otherwise
 * (out->error says why); free out with dh_invoke_result_free either way. Safe from many threads
 * at once. */
int dh_invoke(dh_host_t *h, const dh_function_t *fn, struct cJSON *data, struct cJSON *metadata,
              dh_invoke_result_t *out);
void dh_invoke_result_free(dh_invoke_result_t *r);

/* ---- seam 2: route hooks -------------------------------------------------------------------- */

/* Serve requests whose decoded path starts with prefix (e.g. "/devices/") with fn (front.h:
 * dh_route_fn; http_msg.h for the request accessors and response builders), reading at most
 * max_body bytes of body (the handler sees dh_req_body_too_large beyond it). Before
 * dh_host_run only. Hooks are matched before the functions. Returns 0, or -1 with err. */
int dh_host_add_route(dh_host_t *h, const char *prefix, size_t max_body, dh_route_fn fn, void *arg, char *err,
                      size_t errlen);

/* Serve HTTPS instead of HTTP on the front port with this certificate and key (PEM, copied),
 * e.g. devhost's local CA's server certificate (`--tls`). Before dh_host_run. Returns 0, or -1
 * with err. */
int dh_host_set_tls(dh_host_t *h, const char *cert_pem, const char *key_pem, char *err, size_t errlen);

/* ---- seam 4: what plugins may read ------------------------------------------------------------ */

/* The data folder (absolute; exists). */
const char *dh_host_data_dir(const dh_host_t *h);
/* A setting (local.settings.json Values merged with the environment), NULL when unset. */
const char *dh_host_setting(const dh_host_t *h, const char *name);
/* host.json extensions.eventHubs, or NULL. */
const struct cJSON *dh_host_event_hubs(const dh_host_t *h);
/* The functions of the app, sorted by name. */
size_t dh_host_function_count(const dh_host_t *h);
const dh_function_t *dh_host_function(const dh_host_t *h, size_t i);
/* The front server's port (after dh_host_run has started it; the configured one before). */
int dh_host_port(const dh_host_t *h);
/* "https" when the front port serves HTTPS (dh_host_set_tls), else "http". */
const char *dh_host_scheme(const dh_host_t *h);
/* 1 once devhost is stopping. */
int dh_host_stopping(const dh_host_t *h);

#endif
