/* app_config.h — the function app as `func start` reads it: host.json, local.settings.json and
 * every <folder>/function.json under the script root.
 *
 * Owns: host.json (version "2.0"; customHandler.description: defaultExecutablePath resolved
 * against the script root when that file exists, else looked up on PATH; arguments with
 * %Setting% expanded; workingDirectory; enableForwardingHttpRequest; functionTimeout;
 * extensions.http.routePrefix; extensions.eventHubs kept for trigger sources; the optional
 * "functions" list), local.settings.json (IsEncrypted must be false; Values become the settings,
 * the environment winning as in Core Tools; Host.LocalHttpPort, Host.CORS, Host.CORSCredentials)
 * with the command-line overrides applied, and loading every function (function_config.h).
 * Every problem is found here, before anything starts, with a message naming the file (line
 * and column for JSON) and what to do. Immutable once loaded. */
#ifndef ENVIROMON_DH_APP_CONFIG_H
#define ENVIROMON_DH_APP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "devhost/host/function_config.h"

struct cJSON;
struct dh_settings;

#define DH_DEFAULT_PORT 7071
#define DH_DEFAULT_FUNCTION_TIMEOUT_MS (30LL * 60 * 1000)  /* the host's default outside Consumption */

typedef struct dh_app_opts {
    const char *script_root;       /* NULL: the current directory */
    int         port;              /* 0: Host.LocalHttpPort, else 7071 */
    const char *cors;              /* NULL: Host.CORS */
    int         cors_credentials;  /* -1: Host.CORSCredentials */
} dh_app_opts_t;

typedef struct dh_app {
    char                *script_root;     /* absolute */
    struct cJSON        *host_json;
    struct dh_settings  *settings;        /* Values merged with the environment */
    char                *route_prefix;    /* "api" by default; "" for none */
    const struct cJSON  *event_hubs;      /* host.json extensions.eventHubs (inside host_json), or NULL */
    char                *exe;             /* absolute path of the handler executable */
    char               **argv;            /* argv[0] = defaultExecutablePath as written, then arguments */
    char                *workdir;         /* absolute working directory */
    int                  forward_http;    /* customHandler.enableForwardingHttpRequest */
    int64_t              function_timeout_ms; /* functionTimeout; -1 = none */
    int                  port;            /* the front server's port */
    char               **cors;            /* allowed origins, NULL-terminated */
    size_t               ncors;
    int                  cors_any;        /* "*" among them */
    int                  cors_credentials;
    dh_function_t      **functions;       /* sorted by name */
    size_t               nfunctions;
} dh_app_t;

/* Load everything. Returns 0, or -1 with an actionable message in err (nothing is left
 * allocated in app then). */
int dh_app_load(const dh_app_opts_t *o, dh_app_t *app, char *err, size_t errlen);
void dh_app_free(dh_app_t *app);

/* The function named name (ASCII case-insensitive), or NULL. */
dh_function_t *dh_app_function(const dh_app_t *app, const char *name);

#endif
