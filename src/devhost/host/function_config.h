/* function_config.h — one function of the app: its function.json, read and checked the way the
 * Functions host indexes it.
 *
 * Owns: the binding list (type, direction, name; %Setting% resolved in every string property
 * except type/direction/name, as the host's [AutoResolve]/[AppSetting] properties are), the
 * single trigger, the HTTP trigger's authLevel/methods/route, the `retry` policy, `disabled`
 * (also the AzureWebJobs.<name>.Disabled setting), and start-up errors that name the file and
 * say what to change. Binding types devhost implements itself are httpTrigger, http,
 * signalRConnectionInfo and signalR; any other *Trigger type is accepted here and must have a
 * trigger source when devhost starts (host.h). A dh_function_t is immutable once loaded and is
 * shared by every thread. */
#ifndef ENVIROMON_DH_FUNCTION_CONFIG_H
#define ENVIROMON_DH_FUNCTION_CONFIG_H

#include <stddef.h>

#include "devhost/host/retry.h"

struct cJSON;
struct dh_settings;
struct dh_route;
struct dh_sr_target;

typedef enum { DH_DIR_IN = 1, DH_DIR_OUT = 2, DH_DIR_INOUT = 3 } dh_direction_t;

typedef enum { DH_AUTH_ANONYMOUS = 0, DH_AUTH_FUNCTION, DH_AUTH_ADMIN } dh_auth_level_t;

/* HTTP methods, as bits. */
enum {
    DH_M_GET = 1 << 0, DH_M_POST = 1 << 1, DH_M_PUT = 1 << 2, DH_M_DELETE = 1 << 3,
    DH_M_HEAD = 1 << 4, DH_M_PATCH = 1 << 5, DH_M_OPTIONS = 1 << 6, DH_M_TRACE = 1 << 7,
};

typedef struct dh_binding {
    char            *type;       /* as written, e.g. "eventHubTrigger" (compare case-insensitively) */
    char            *name;       /* "req", "signalRMessages", "$return", ... */
    dh_direction_t   direction;
    struct cJSON    *json;       /* the binding object, %Setting% resolved (owned by the function) */
    struct dh_sr_target *signalr; /* prepared SignalR target for signalR / signalRConnectionInfo, else NULL */
} dh_binding_t;

typedef struct dh_http_trigger {
    dh_auth_level_t  auth;       /* authLevel, default function */
    unsigned         methods;    /* DH_M_* bits; 0 = every method */
    char            *route;      /* the template as configured (default: the function name) */
    struct dh_route *tmpl;       /* parsed template */
} dh_http_trigger_t;

typedef struct dh_function {
    char               *name;       /* the folder name: the handler is POSTed /<name> */
    char               *dir;        /* absolute path of the folder */
    char               *shown;      /* "<name>/function.json", for messages */
    struct cJSON       *json;       /* the whole function.json (bindings resolved in place) */
    dh_binding_t       *bindings;
    size_t              nbindings;
    const dh_binding_t *trigger;    /* the one trigger binding */
    const dh_binding_t *http_out;   /* the `http` output binding, or NULL */
    dh_retry_t          retry;      /* kind DH_RETRY_NONE when function.json has none */
    int                 disabled;
    dh_http_trigger_t  *http;       /* set when the trigger is an httpTrigger */
} dh_function_t;

/* Load <dir>/function.json for the function called name. Returns NULL with an actionable
 * message in err (file, what is wrong, how to fix it). */
dh_function_t *dh_function_load(const char *dir, const char *name, const struct dh_settings *settings,
                                char *err, size_t errlen);
void dh_function_free(dh_function_t *fn);

/* 1 when the binding type (case-insensitively) is type. */
int dh_binding_is(const dh_binding_t *b, const char *type);

/* A string property of the binding (case-insensitive key), or def when absent/not a string. */
const char *dh_binding_str(const dh_binding_t *b, const char *key, const char *def);

/* Method name → DH_M_* bit, 0 when unknown. Case-insensitive. */
unsigned dh_method_bit(const char *method);

/* "GET,POST" for a method mask (every method when 0). */
void dh_methods_describe(unsigned methods, char *out, size_t outlen);

#endif
