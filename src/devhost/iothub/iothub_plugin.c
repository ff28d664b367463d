/* iothub_plugin.c — the local IoT Hub inside `devhost start` (see iothub_plugin.h). */
#include "devhost/iothub/iothub_plugin.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "devhost/host/http_msg.h"
#include "devhost/iothub/d2c.h"
#include "devhost/iothub/eventhub.h"
#include "util/log.h"

#define MAX_TRIGGERS 16

/* One eventHubTrigger function. */
typedef struct trigger {
    dh_host_t           *host;
    const dh_function_t *fn;
    iothub_eh_opts_t     opts;
    char                 event_hub[256];
    char                 group[256];
    iothub_eh_t         *running;
} trigger_t;

typedef struct plugin {
    iothub_t            *hub;
    dh_host_t           *host;
    iothub_eh_batching_t batching;
    int                  batching_read;
    trigger_t            triggers[MAX_TRIGGERS];
    size_t               ntriggers;
    iothub_eh_t         *running[MAX_TRIGGERS];   /* for iothub_summary */
} plugin_t;

/* ---- the device API on the host's port ----------------------------------------------------- */

static void each(void *arg, iothub_http_kind_t kind, iothub_http_visit_fn visit, void *ctx)
{
    const dh_http_req_t *r = arg;
    const dh_header_t *v = kind == IOTHUB_HTTP_HEADER ? r->headers : r->query;
    size_t n = kind == IOTHUB_HTTP_HEADER ? r->nheaders : r->nquery;
    for (size_t i = 0; i < n; i++)
        if (visit(ctx, v[i].name, v[i].value)) return;
}

static void devices_route(void *arg, const dh_http_req_t *req, dh_http_resp_t *w)
{
    plugin_t *pl = arg;
    size_t len = 0;
    const char *body = dh_req_body(req, &len);
    iothub_http_req_t hr = {dh_req_method(req), dh_req_path(req), each, (void *)req, body, len,
                            dh_req_body_too_large(req)};
    iothub_http_resp_t resp;
    iothub_d2c_handle_wait(pl->hub, &hr, &resp);
    dh_resp_status(w, resp.status);
    if (resp.error_code[0]) dh_resp_header(w, "iothub-errorcode", resp.error_code);
    if (resp.allow[0]) dh_resp_header(w, "Allow", resp.allow);
    if (resp.content_type[0]) dh_resp_header(w, "Content-Type", resp.content_type);
    if (resp.body_len) dh_resp_body(w, resp.body, resp.body_len);
}

/* ---- the eventHubTrigger source --------------------------------------------------------------- */

static int invoke(void *arg, const char *function, cJSON *data, cJSON *metadata, char *err, size_t errlen)
{
    (void)function;
    trigger_t *t = arg;
    dh_invoke_result_t r;
    int rc = dh_invoke(t->host, t->fn, data, metadata, &r);
    if (rc != 0) snprintf(err, errlen, "%s", r.error);
    dh_invoke_result_free(&r);
    if (rc == 0) return 0;
    return dh_host_stopping(t->host) ? IOTHUB_EH_CANCELLED : -1;
}

/* The value of key in a connection string ("A=1;B=2"), NULL when absent. Keys are compared
 * ignoring case, as the Event Hubs SDK does; the value runs to the next ';'. */
static const char *cs_value(const char *cs, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    for (const char *p = cs; p && *p;) {
        while (*p == ' ' || *p == ';') p++;
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > kl && p[kl] == '=' && strncasecmp(p, key, kl) == 0) {
            *len = n - kl - 1;
            return p + kl + 1;
        }
        p = end;
    }
    return NULL;
}

/* Check the trigger's connection setting as the host would and say what devhost makes of it.
 * entity receives its EntityPath ("" when none). */
static int check_connection(plugin_t *pl, const dh_function_t *fn, char *entity, size_t entlen, char *err,
                            size_t errlen)
{
    entity[0] = '\0';
    const char *setting = dh_binding_str(fn->trigger, "connection", NULL);
    if (!setting || !*setting) return 0;   /* nothing to check; the local hub is read */
    const char *cs = dh_host_setting(pl->host, setting);
    if (!cs || !*cs) {
        snprintf(err, errlen, "%s: binding '%s' (eventHubTrigger): the setting '%s' named by \"connection\" has no "
                 "value; set it in local.settings.json — for the local IoT Hub the Event Hubs emulator's string "
                 "\"Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;"
                 "UseDevelopmentEmulator=true;\" (see local.settings.sample.json)", fn->shown, fn->trigger->name, setting);
        return -1;
    }
    size_t el = 0, ul = 0, plen = 0;
    const char *ep = cs_value(cs, "Endpoint", &el);
    if (!ep || el < 6 || strncasecmp(ep, "sb://", 5) != 0) {
        snprintf(err, errlen, "%s: binding '%s' (eventHubTrigger): the setting '%s' is not an Event Hubs connection "
                 "string (Endpoint=sb://<namespace>/;SharedAccessKeyName=...;SharedAccessKey=...)", fn->shown,
                 fn->trigger->name, setting);
        return -1;
    }
    const char *path = cs_value(cs, "EntityPath", &plen);
    if (path && plen) snprintf(entity, entlen, "%.*s", (int)plen, path);
    /* the namespace's host name: sb://<host>[:port][/] ("[::1]" keeps its brackets) */
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(el - 5), ep + 5);
    size_t cut = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/");
    if (cut < strlen(host)) host[cut] = '\0';
    const char *emu = cs_value(cs, "UseDevelopmentEmulator", &ul);
    int local = strcasecmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0 ||
                (emu && ul == 4 && strncasecmp(emu, "true", 4) == 0);
    if (!local)
        log_warn(NULL, "devhost: %s: the setting '%s' names the Event Hubs namespace %s; devhost cannot read Azure's "
                 "Event Hubs (no AMQP) and feeds %s from its local IoT Hub instead: send telemetry to devhost",
                 fn->name, setting, host, fn->name);
    return 0;
}

static int bind_trigger(void *self, dh_host_t *h, const dh_function_t *fn, char *err, size_t errlen)
{
    plugin_t *pl = self;
    const dh_binding_t *b = fn->trigger;
    if (pl->ntriggers == MAX_TRIGGERS) {
        snprintf(err, errlen, "%s: more than %d eventHubTrigger functions", fn->shown, MAX_TRIGGERS);
        return -1;
    }
    if (!pl->batching_read) {
        char why[300];
        if (iothub_eh_batching_from_json(dh_host_event_hubs(h), &pl->batching, why, sizeof why) != 0) {
            snprintf(err, errlen, "host.json: extensions.eventHubs: %s", why);
            return -1;
        }
        pl->batching_read = 1;
    }
    const char *card = dh_binding_str(b, "cardinality", "one");
    int many = strcasecmp(card, "many") == 0;
    if (!many && strcasecmp(card, "one") != 0) {
        snprintf(err, errlen, "%s: binding '%s': cardinality must be \"one\" or \"many\", not \"%.40s\"", fn->shown,
                 b->name, card);
        return -1;
    }
    const char *dt = dh_binding_str(b, "dataType", NULL);
    iothub_eh_datatype_t type = IOTHUB_EH_OBJECT;
    if (dt && strcasecmp(dt, "string") == 0) type = IOTHUB_EH_STRING;
    else if (dt && strcasecmp(dt, "binary") == 0) type = IOTHUB_EH_BINARY;
    else if (dt && *dt) {
        snprintf(err, errlen, "%s: binding '%s': dataType \"%.40s\" is not supported here (\"string\", \"binary\", or "
                 "none for JSON objects)", fn->shown, b->name, dt);
        return -1;
    }
    trigger_t *t = &pl->triggers[pl->ntriggers];
    memset(t, 0, sizeof *t);
    char entity[256];
    if (check_connection(pl, fn, entity, sizeof entity, err, errlen) != 0) return -1;
    /* the connection string's EntityPath overrides eventHubName, as in the host */
    const char *eh = entity[0] ? entity : dh_binding_str(b, "eventHubName", NULL);
    if (!eh || !*eh) {
        snprintf(err, errlen, "%s: binding '%s' (eventHubTrigger): eventHubName is required (or an EntityPath in the "
                 "connection string); locally any name reads the local IoT Hub, e.g. \"%s\"", fn->shown, b->name,
                 iothub_name(pl->hub));
        return -1;
    }
    snprintf(t->event_hub, sizeof t->event_hub, "%s", eh);
    snprintf(t->group, sizeof t->group, "%s", dh_binding_str(b, "consumerGroup", "$Default"));
    if (!t->group[0]) snprintf(t->group, sizeof t->group, "$Default");
    for (size_t i = 0; i < pl->ntriggers; i++) {
        if (strcasecmp(pl->triggers[i].group, t->group) == 0) {
            snprintf(err, errlen, "%s and %s both read consumer group '%s' of the local IoT Hub: each would see only part "
                     "of the events; give each eventHubTrigger function its own consumerGroup", pl->triggers[i].fn->shown,
                     fn->shown, t->group);
            return -1;
        }
    }
    t->host = h;
    t->fn = fn;
    t->opts.wire = (iothub_eh_wire_t){.function = fn->name, .name = b->name, .many = many, .data_type = type,
                                      .event_hub = t->event_hub, .consumer_group = t->group};
    t->opts.batching = pl->batching;
    t->opts.retry = fn->retry;
    t->opts.invoke = invoke;
    t->opts.invoke_arg = t;
    pl->ntriggers++;
    return 0;
}

static int start(void *self, dh_host_t *h, char *err, size_t errlen)
{
    plugin_t *pl = self;
    int port = dh_host_port(h);
    iothub_registry_t *reg = iothub_registry(pl->hub);
    log_info(NULL, "IoT Hub: %s (local; %d partitions, %zu devices: `devhost device add NAME` prints a connection "
             "string) — devices send to POST %s://localhost:%d/devices/{id}/messages/events", iothub_host(pl->hub),
             iothub_partitions(pl->hub), iothub_registry_count(reg), dh_host_scheme(h), port);
    for (size_t i = 0; i < pl->ntriggers; i++) {
        trigger_t *t = &pl->triggers[i];
        char why[512];
        if (!(t->running = iothub_eh_start(pl->hub, &t->opts, why, sizeof why))) {
            snprintf(err, errlen, "%s: %s", t->fn->name, why);
            return -1;
        }
        pl->running[i] = t->running;
        log_info(NULL, "    %s: reads the local IoT Hub's events (event hub '%s', consumer group '%s', batches of up "
                 "to %d)", t->fn->name, t->event_hub, t->group, t->opts.wire.many ? pl->batching.max_batch : 1);
    }
    return 0;
}

static void summary(void *self, buf_t *line)
{
    plugin_t *pl = self;
    buf_printf(line, " ");
    iothub_summary(pl->hub, pl->running, pl->ntriggers, line);
}

static void stop_triggers(plugin_t *pl)
{
    for (size_t i = 0; i < pl->ntriggers; i++) {
        iothub_eh_stop(pl->triggers[i].running);
        pl->triggers[i].running = NULL;
        pl->running[i] = NULL;
    }
}

static void stop(void *self) { stop_triggers(self); }

static void destroy(void *self)
{
    plugin_t *pl = self;
    stop_triggers(pl);   /* when start failed half-way */
    iothub_close(pl->hub);
    free(pl);
}

iothub_t *iothub_plugin_attach(dh_host_t *h, const iothub_plugin_opts_t *o, char *err, size_t errlen)
{
    plugin_t *pl = calloc(1, sizeof *pl);
    if (!pl) { snprintf(err, errlen, "out of memory"); return NULL; }
    pl->host = h;
    iothub_opts_t ho = {.data_dir = dh_host_data_dir(h), .name = o->name, .partitions = o->partitions};
    char why[600];
    if (!(pl->hub = iothub_open(&ho, why, sizeof why))) {
        snprintf(err, errlen, "the local IoT Hub: %s", why);
        free(pl);
        return NULL;
    }
    dh_plugin_t p = {.name = "iothub", .trigger_type = "eventHubTrigger", .self = pl, .bind = bind_trigger,
                     .start = start, .summary = summary, .stop = stop, .destroy = destroy};
    if (dh_host_add_route(h, "/devices/", IOTHUB_D2C_MAX_BODY, devices_route, pl, err, errlen) != 0 ||
        dh_host_register(h, &p, err, errlen) != 0) {
        /* the route (if added) is never served: the host does not run after this error */
        destroy(pl);
        return NULL;
    }
    return pl->hub;
}
