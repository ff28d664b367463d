/* function_config.c — reading and checking one function.json (see function_config.h). */
#include "devhost/host/function_config.h"

#include "devhost/host/json_file.h"
#include "devhost/host/route.h"
#include "devhost/host/settings.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct { const char *name; unsigned bit; } METHODS[] = {
    {"GET", DH_M_GET}, {"POST", DH_M_POST}, {"PUT", DH_M_PUT}, {"DELETE", DH_M_DELETE},
    {"HEAD", DH_M_HEAD}, {"PATCH", DH_M_PATCH}, {"OPTIONS", DH_M_OPTIONS}, {"TRACE", DH_M_TRACE},
};

unsigned dh_method_bit(const char *method)
{
    for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++)
        if (strcasecmp(METHODS[i].name, method) == 0) return METHODS[i].bit;
    return 0;
}

void dh_methods_describe(unsigned methods, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    if (!methods) { snprintf(out, outlen, "any method"); return; }
    for (size_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++) {
        if (!(methods & METHODS[i].bit)) continue;
        int n = snprintf(out + o, outlen - o, "%s%s", o ? "," : "", METHODS[i].name);
        if (n < 0 || (size_t)n >= outlen - o) break;
        o += (size_t)n;
    }
}

int dh_binding_is(const dh_binding_t *b, const char *type) { return strcasecmp(b->type, type) == 0; }

const char *dh_binding_str(const dh_binding_t *b, const char *key, const char *def)
{
    const cJSON *v = cJSON_GetObjectItem(b->json, key);
    return cJSON_IsString(v) ? v->valuestring : def;
}

static int is_trigger_type(const char *type)
{
    size_t n = strlen(type);
    return n > 7 && strcasecmp(type + n - 7, "Trigger") == 0;
}

static const char *const KNOWN_TYPES[] = {"httpTrigger", "http", "signalRConnectionInfo", "signalR", NULL};

static int valid_binding_name(const char *s)
{
    if (strcmp(s, "$return") == 0) return 1;
    if (!isalpha((unsigned char)s[0])) return 0;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++)
        if (!isalnum((unsigned char)*p)) return 0;
    return n <= 128;
}

void dh_function_free(dh_function_t *fn)
{
    if (!fn) return;
    for (size_t i = 0; i < fn->nbindings; i++) {
        free(fn->bindings[i].type);
        free(fn->bindings[i].name);
        /* json points into fn->json; signalr targets belong to the SignalR binding cache */
    }
    free(fn->bindings);
    if (fn->http) {
        free(fn->http->route);
        dh_route_free(fn->http->tmpl);
        free(fn->http);
    }
    cJSON_Delete(fn->json);
    free(fn->name);
    free(fn->dir);
    free(fn->shown);
    free(fn);
}

/* Resolve %Setting% in every string property of a binding except type, direction and name. */
static int resolve_binding_settings(dh_function_t *fn, cJSON *b, size_t idx, const dh_settings_t *settings,
                                    char *err, size_t errlen)
{
    for (cJSON *p = b->child; p;) {
        cJSON *next = p->next;
        if (cJSON_IsString(p) && p->string && strcasecmp(p->string, "type") != 0 &&
            strcasecmp(p->string, "direction") != 0 && strcasecmp(p->string, "name") != 0 &&
            strchr(p->valuestring, '%')) {
            char why[400];
            char *v = dh_settings_expand(settings, p->valuestring, why, sizeof why);
            if (!v) {
                snprintf(err, errlen, "%s: bindings[%zu].%s: %s", fn->shown, idx, p->string, why);
                return -1;
            }
            free(p->valuestring);
            p->valuestring = v;
        }
        p = next;
    }
    return 0;
}

static int parse_disabled(const dh_function_t *fn, const dh_settings_t *settings, char *err, size_t errlen,
                          int *out)
{
    *out = 0;
    const cJSON *d = cJSON_GetObjectItem(fn->json, "disabled");
    if (cJSON_IsBool(d)) *out = cJSON_IsTrue(d);
    else if (cJSON_IsString(d)) {
        const char *v = d->valuestring;
        if (strcasecmp(v, "true") != 0 && strcasecmp(v, "false") != 0 && *v) v = dh_settings_get(settings, v);
        *out = v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0);
    } else if (d && !cJSON_IsNull(d)) {
        snprintf(err, errlen, "%s: \"disabled\" must be true, false or the name of a setting", fn->shown);
        return -1;
    }
    char key[300];
    snprintf(key, sizeof key, "AzureWebJobs.%s.Disabled", fn->name);
    const char *s = dh_settings_get(settings, key);
    if (s && (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0)) *out = 1;
    return 0;
}

static int parse_http_trigger(dh_function_t *fn, const dh_binding_t *b, char *err, size_t errlen)
{
    dh_http_trigger_t *h = calloc(1, sizeof *h);
    if (!h) { snprintf(err, errlen, "out of memory"); return -1; }
    fn->http = h;
    h->auth = DH_AUTH_FUNCTION;
    const cJSON *al = cJSON_GetObjectItem(b->json, "authLevel");
    if (al && !cJSON_IsNull(al)) {
        const char *v = cJSON_IsString(al) ? al->valuestring : "";
        if (strcasecmp(v, "anonymous") == 0) h->auth = DH_AUTH_ANONYMOUS;
        else if (strcasecmp(v, "function") == 0) h->auth = DH_AUTH_FUNCTION;
        else if (strcasecmp(v, "admin") == 0) h->auth = DH_AUTH_ADMIN;
        else {
            snprintf(err, errlen, "%s: authLevel must be \"anonymous\", \"function\" or \"admin\"", fn->shown);
            return -1;
        }
    }
    const cJSON *m = cJSON_GetObjectItem(b->json, "methods");
    if (m && !cJSON_IsNull(m)) {
        if (!cJSON_IsArray(m)) {
            snprintf(err, errlen, "%s: methods must be an array such as [\"get\", \"post\"]", fn->shown);
            return -1;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, m) {
            unsigned bit = cJSON_IsString(it) ? dh_method_bit(it->valuestring) : 0;
            if (!bit) {
                snprintf(err, errlen, "%s: methods: '%.20s' is not an HTTP method (get, post, put, delete, head, "
                         "patch, options, trace)", fn->shown, cJSON_IsString(it) ? it->valuestring : "?");
                return -1;
            }
            h->methods |= bit;
        }
    }
    const char *route = dh_binding_str(b, "route", NULL);
    if (!route || !*route) route = fn->name;
    h->route = strdup(route);
    if (!h->route) { snprintf(err, errlen, "out of memory"); return -1; }
    char why[400];
    h->tmpl = dh_route_parse(route, why, sizeof why);
    if (!h->tmpl) {
        snprintf(err, errlen, "%s: %s", fn->shown, why);
        return -1;
    }
    return 0;
}

static int parse_binding(dh_function_t *fn, cJSON *bj, size_t idx, dh_binding_t *b, const dh_settings_t *settings,
                         char *err, size_t errlen)
{
    if (!cJSON_IsObject(bj)) {
        snprintf(err, errlen, "%s: bindings[%zu] must be an object", fn->shown, idx);
        return -1;
    }
    const char *keys[] = {"type", "direction", "name"};
    const char *vals[3];
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetObjectItem(bj, keys[k]);
        if (!cJSON_IsString(v) || !*v->valuestring) {
            snprintf(err, errlen, "%s: bindings[%zu] needs a \"%s\" string", fn->shown, idx, keys[k]);
            return -1;
        }
        vals[k] = v->valuestring;
    }
    b->json = bj;
    if (!(b->type = strdup(vals[0])) || !(b->name = strdup(vals[2]))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (strcasecmp(vals[1], "in") == 0) b->direction = DH_DIR_IN;
    else if (strcasecmp(vals[1], "out") == 0) b->direction = DH_DIR_OUT;
    else if (strcasecmp(vals[1], "inout") == 0) b->direction = DH_DIR_INOUT;
    else {
        snprintf(err, errlen, "%s: bindings[%zu] (%s): direction must be \"in\", \"out\" or \"inout\"", fn->shown,
                 idx, b->name);
        return -1;
    }
    if (!valid_binding_name(b->name)) {
        snprintf(err, errlen, "%s: bindings[%zu]: the name '%.40s' is not valid (a letter, then letters and "
                 "digits, at most 128; or \"$return\" for an output)", fn->shown, idx, b->name);
        return -1;
    }
    if (strcmp(b->name, "$return") == 0 && b->direction != DH_DIR_OUT) {
        snprintf(err, errlen, "%s: bindings[%zu]: \"$return\" is only for an output binding", fn->shown, idx);
        return -1;
    }
    int known = is_trigger_type(b->type);
    for (const char *const *t = KNOWN_TYPES; *t; t++)
        if (strcasecmp(*t, b->type) == 0) known = 1;
    if (!known) {
        snprintf(err, errlen, "%s: bindings[%zu] (%s): unknown binding type '%.60s'. devhost implements httpTrigger, "
                 "http, signalRConnectionInfo and signalR, and triggers that have a local trigger source",
                 fn->shown, idx, b->name, b->type);
        return -1;
    }
    struct { const char *type; dh_direction_t dir; } want[] = {
        {"http", DH_DIR_OUT}, {"signalR", DH_DIR_OUT}, {"signalRConnectionInfo", DH_DIR_IN},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        if (dh_binding_is(b, want[k].type) && b->direction != want[k].dir) {
            snprintf(err, errlen, "%s: bindings[%zu] (%s): a %s binding has direction \"%s\"", fn->shown, idx,
                     b->name, want[k].type, want[k].dir == DH_DIR_IN ? "in" : "out");
            return -1;
        }
    }
    if (is_trigger_type(b->type) && b->direction != DH_DIR_IN) {
        snprintf(err, errlen, "%s: bindings[%zu] (%s): a trigger has direction \"in\"", fn->shown, idx, b->name);
        return -1;
    }
    return resolve_binding_settings(fn, bj, idx, settings, err, errlen);
}

dh_function_t *dh_function_load(const char *dir, const char *name, const dh_settings_t *settings, char *err,
                                size_t errlen)
{
    dh_function_t *fn = calloc(1, sizeof *fn);
    if (!fn) { snprintf(err, errlen, "out of memory"); return NULL; }
    size_t sl = strlen(name) + 32;
    char path[4200];
    fn->name = strdup(name);
    fn->dir = strdup(dir);
    fn->shown = malloc(sl);
    if (!fn->name || !fn->dir || !fn->shown) { snprintf(err, errlen, "out of memory"); goto fail; }
    snprintf(fn->shown, sl, "%s/function.json", name);
    snprintf(path, sizeof path, "%s/function.json", dir);

    /* The host's rule for function names. */
    int ok = isalpha((unsigned char)name[0]) && strlen(name) <= 128;
    for (const char *p = name; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '_' || *p == '-';
    if (!ok) {
        snprintf(err, errlen, "%s: the folder name '%s' is not a valid function name (a letter, then letters, "
                 "digits, '_' or '-', at most 128)", fn->shown, name);
        goto fail;
    }
    fn->json = dh_json_load(path, fn->shown, NULL, err, errlen);
    if (!fn->json) goto fail;
    if (!cJSON_IsObject(fn->json)) {
        snprintf(err, errlen, "%s: must contain a JSON object {\"bindings\": [...]}", fn->shown);
        goto fail;
    }
    cJSON *bl = cJSON_GetObjectItem(fn->json, "bindings");
    if (!cJSON_IsArray(bl) || cJSON_GetArraySize(bl) == 0) {
        snprintf(err, errlen, "%s: \"bindings\" must be a non-empty array", fn->shown);
        goto fail;
    }
    fn->nbindings = (size_t)cJSON_GetArraySize(bl);
    fn->bindings = calloc(fn->nbindings, sizeof *fn->bindings);
    if (!fn->bindings) { snprintf(err, errlen, "out of memory"); goto fail; }
    size_t i = 0;
    cJSON *bj;
    cJSON_ArrayForEach(bj, bl) {
        if (parse_binding(fn, bj, i, &fn->bindings[i], settings, err, errlen) != 0) goto fail;
        for (size_t k = 0; k < i; k++) {
            if (strcasecmp(fn->bindings[k].name, fn->bindings[i].name) == 0) {
                snprintf(err, errlen, "%s: two bindings are named '%s'", fn->shown, fn->bindings[i].name);
                goto fail;
            }
        }
        i++;
    }
    for (i = 0; i < fn->nbindings; i++) {
        dh_binding_t *b = &fn->bindings[i];
        if (is_trigger_type(b->type)) {
            if (fn->trigger) {
                snprintf(err, errlen, "%s: more than one trigger binding ('%s' and '%s'); a function has exactly one",
                         fn->shown, fn->trigger->name, b->name);
                goto fail;
            }
            fn->trigger = b;
        }
        if (dh_binding_is(b, "http")) fn->http_out = b;
    }
    if (!fn->trigger) {
        snprintf(err, errlen, "%s: no trigger binding (a binding whose type ends in 'Trigger', such as httpTrigger)",
                 fn->shown);
        goto fail;
    }
    if (dh_binding_is(fn->trigger, "httpTrigger")) {
        if (parse_http_trigger(fn, fn->trigger, err, errlen) != 0) goto fail;
    } else if (fn->http_out) {
        snprintf(err, errlen, "%s: an http output binding needs an httpTrigger", fn->shown);
        goto fail;
    }
    if (dh_retry_parse(cJSON_GetObjectItem(fn->json, "retry"), fn->shown, &fn->retry, err, errlen) != 0) goto fail;
    if (parse_disabled(fn, settings, err, errlen, &fn->disabled) != 0) goto fail;
    return fn;
fail:
    dh_function_free(fn);
    return NULL;
}
