/* app_config.c — host.json, local.settings.json and the functions (see app_config.h). */
#include "devhost/host/app_config.h"

#include "devhost/host/json_file.h"
#include "devhost/host/retry.h"
#include "devhost/host/settings.h"
#include "util/log.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FUNCTIONS 256

void dh_app_free(dh_app_t *app)
{
    free(app->script_root);
    cJSON_Delete(app->host_json);
    dh_settings_free(app->settings);
    free(app->route_prefix);
    free(app->exe);
    if (app->argv)
        for (char **p = app->argv; *p; p++) free(*p);
    free(app->argv);
    free(app->workdir);
    if (app->cors)
        for (char **p = app->cors; *p; p++) free(*p);
    free(app->cors);
    for (size_t i = 0; i < app->nfunctions; i++) dh_function_free(app->functions[i]);
    free(app->functions);
    memset(app, 0, sizeof *app);
}

dh_function_t *dh_app_function(const dh_app_t *app, const char *name)
{
    for (size_t i = 0; i < app->nfunctions; i++)
        if (strcasecmp(app->functions[i]->name, name) == 0) return app->functions[i];
    return NULL;
}

static char *join_path(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- local.settings.json ----------------------------------------------------------------- */

static int load_local_settings(dh_app_t *app, const dh_app_opts_t *o, char *err, size_t errlen)
{
    char *path = join_path(app->script_root, "local.settings.json");
    if (!path) { snprintf(err, errlen, "out of memory"); return -1; }
    int missing = 0;
    cJSON *ls = dh_json_load(path, "local.settings.json", &missing, err, errlen);
    free(path);
    if (!ls) {
        if (missing)
            snprintf(err, errlen, "local.settings.json: file not found in %s. devhost, like func start, reads the "
                     "app settings from it: copy local.settings.sample.json to local.settings.json", app->script_root);
        return -1;
    }
    int rc = -1;
    if (!cJSON_IsObject(ls)) {
        snprintf(err, errlen, "local.settings.json: must contain a JSON object {\"Values\": {...}}");
        goto done;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItem(ls, "IsEncrypted"))) {
        snprintf(err, errlen, "local.settings.json: IsEncrypted is true; devhost cannot decrypt it (run "
                 "`func settings decrypt`, or set IsEncrypted to false with plain values)");
        goto done;
    }
    const cJSON *values = cJSON_GetObjectItem(ls, "Values");
    if (values && !cJSON_IsNull(values) && !cJSON_IsObject(values)) {
        snprintf(err, errlen, "local.settings.json: \"Values\" must be an object of setting names and values");
        goto done;
    }
    for (const cJSON *v = values ? values->child : NULL; v; v = v->next) {
        char text[64];
        const char *val;
        if (cJSON_IsNull(v)) continue;
        if (cJSON_IsString(v)) val = v->valuestring;
        else if (cJSON_IsBool(v)) val = cJSON_IsTrue(v) ? "True" : "False";
        else if (cJSON_IsNumber(v)) {
            if (v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e15)
                snprintf(text, sizeof text, "%.0f", v->valuedouble);
            else
                snprintf(text, sizeof text, "%.17g", v->valuedouble);
            val = text;
        } else {
            snprintf(err, errlen, "local.settings.json: Values.%s must be a string, number or boolean, not an %s",
                     v->string, cJSON_IsArray(v) ? "array" : "object");
            goto done;
        }
        int overridden = 0;
        if (dh_settings_add(app->settings, v->string, val, &overridden) != 0) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
        if (overridden)
            log_info(NULL, "devhost: skipping '%s' from local settings as it is already defined in the environment",
                     v->string);
    }

    const cJSON *host = cJSON_GetObjectItem(ls, "Host");
    if (host && !cJSON_IsNull(host) && !cJSON_IsObject(host)) {
        snprintf(err, errlen, "local.settings.json: \"Host\" must be an object");
        goto done;
    }
    app->port = DH_DEFAULT_PORT;
    const cJSON *lp = host ? cJSON_GetObjectItem(host, "LocalHttpPort") : NULL;
    if (lp && !cJSON_IsNull(lp)) {
        double d = cJSON_IsNumber(lp) ? lp->valuedouble : cJSON_IsString(lp) ? strtod(lp->valuestring, NULL) : -1;
        if (!(d >= 1 && d <= 65535) || d != floor(d)) {
            snprintf(err, errlen, "local.settings.json: Host.LocalHttpPort must be a port number (1-65535)");
            goto done;
        }
        app->port = (int)d;
    }
    if (o->port > 0) app->port = o->port;

    const char *cors = o->cors;
    const cJSON *hc = host ? cJSON_GetObjectItem(host, "CORS") : NULL;
    if (!cors && hc && !cJSON_IsNull(hc)) {
        if (!cJSON_IsString(hc)) {
            snprintf(err, errlen, "local.settings.json: Host.CORS must be a string of comma-separated origins");
            goto done;
        }
        cors = hc->valuestring;
    }
    int cred = 0;
    const cJSON *hcc = host ? cJSON_GetObjectItem(host, "CORSCredentials") : NULL;
    if (hcc && !cJSON_IsNull(hcc)) {
        if (cJSON_IsBool(hcc)) cred = cJSON_IsTrue(hcc);
        else if (cJSON_IsString(hcc) && (strcasecmp(hcc->valuestring, "true") == 0 ||
                                          strcasecmp(hcc->valuestring, "false") == 0))
            cred = strcasecmp(hcc->valuestring, "true") == 0;
        else {
            snprintf(err, errlen, "local.settings.json: Host.CORSCredentials must be true or false");
            goto done;
        }
    }
    if (o->cors_credentials >= 0) cred = o->cors_credentials;
    /* Core Tools: Split(',', RemoveEmptyEntries), no trimming. */
    size_t cap = 1;
    for (const char *p = cors ? cors : ""; *p; p++) cap += *p == ',';
    app->cors = calloc(cap + 1, sizeof *app->cors);
    if (!app->cors) { snprintf(err, errlen, "out of memory"); goto done; }
    for (const char *p = cors ? cors : ""; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n) {
            char *origin = strndup(p, n);
            if (!origin) { snprintf(err, errlen, "out of memory"); goto done; }
            if (strcmp(origin, "*") == 0) app->cors_any = 1;
            if (strpbrk(origin, " \t"))
                log_warn(NULL, "devhost: CORS origin '%s' contains a space and will never match (the list is "
                         "comma separated with no spaces, as in func start)", origin);
            app->cors[app->ncors++] = origin;
        }
        p += n;
        if (*p == ',') p++;
    }
    app->cors_credentials = app->ncors ? cred : 0; /* credentials only with origins, as Core Tools */
    if (app->cors_any && app->cors_credentials) {
        snprintf(err, errlen, "CORS: the origin \"*\" and CORSCredentials true cannot be combined (the CORS protocol "
                 "forbids it and ASP.NET Core refuses it): list the origins instead");
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(ls);
    return rc;
}

/* ---- host.json ----------------------------------------------------------------------------- */

/* The executable: script_root/path when that file exists, else a command on PATH. */
static char *resolve_executable(const char *root, const char *path, char *err, size_t errlen)
{
    char *cand = path[0] == '/' ? strdup(path) : join_path(root, path);
    if (!cand) { snprintf(err, errlen, "out of memory"); return NULL; }
    if (is_file(cand) || path[0] == '/' || strchr(path, '/')) {
        if (!is_file(cand)) {
            snprintf(err, errlen, "host.json: customHandler.description.defaultExecutablePath '%s': no such file "
                     "(%s)", path, cand);
            free(cand);
            return NULL;
        }
    } else {
        free(cand);
        cand = NULL;
        const char *pathenv = getenv("PATH");
        for (const char *p = pathenv ? pathenv : ""; *p && !cand;) {
            const char *e = strchr(p, ':');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            char dir[PATH_MAX];
            if (n && n < sizeof dir) {
                memcpy(dir, p, n);
                dir[n] = '\0';
                char *c = join_path(dir, path);
                if (c && is_file(c) && access(c, X_OK) == 0) cand = c;
                else free(c);
            }
            p += n;
            if (*p == ':') p++;
        }
        if (!cand) {
            snprintf(err, errlen, "host.json: customHandler.description.defaultExecutablePath '%s': there is no file "
                     "%s/%s and no command '%s' on PATH. Build the handler first (make), or fix the path",
                     path, root, path, path);
            return NULL;
        }
    }
    if (access(cand, X_OK) != 0) {
        snprintf(err, errlen, "host.json: the handler %s is not executable (chmod +x it)", cand);
        free(cand);
        return NULL;
    }
    char *real = realpath(cand, NULL);
    if (real) { free(cand); cand = real; }
    return cand;
}

static int load_custom_handler(dh_app_t *app, char *err, size_t errlen)
{
    const cJSON *ch = cJSON_GetObjectItem(app->host_json, "customHandler");
    const cJSON *desc = ch ? cJSON_GetObjectItem(ch, "description") : NULL;
    if (!cJSON_IsObject(desc)) {
        snprintf(err, errlen, "host.json: no customHandler.description. devhost runs custom-handler apps only: add "
                 "{\"customHandler\": {\"description\": {\"defaultExecutablePath\": \"handler\"}}}");
        return -1;
    }
    const cJSON *exe = cJSON_GetObjectItem(desc, "defaultExecutablePath");
    if (!cJSON_IsString(exe) || !*exe->valuestring) {
        snprintf(err, errlen, "host.json: customHandler.description.defaultExecutablePath must be a non-empty string");
        return -1;
    }
    const cJSON *wd = cJSON_GetObjectItem(desc, "workingDirectory");
    if (wd && !cJSON_IsNull(wd) && !cJSON_IsString(wd)) {
        snprintf(err, errlen, "host.json: customHandler.description.workingDirectory must be a string");
        return -1;
    }
    const char *w = cJSON_IsString(wd) ? wd->valuestring : "";
    app->workdir = !*w ? strdup(app->script_root) : w[0] == '/' ? strdup(w) : join_path(app->script_root, w);
    if (!app->workdir) { snprintf(err, errlen, "out of memory"); return -1; }
    struct stat st;
    if (stat(app->workdir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "host.json: customHandler.description.workingDirectory '%s' is not a directory", w);
        return -1;
    }
    if (!(app->exe = resolve_executable(app->script_root, exe->valuestring, err, errlen))) return -1;

    const cJSON *args = cJSON_GetObjectItem(desc, "arguments");
    const cJSON *wp = cJSON_GetObjectItem(desc, "defaultWorkerPath");
    if (args && !cJSON_IsNull(args) && !cJSON_IsArray(args)) {
        snprintf(err, errlen, "host.json: customHandler.description.arguments must be an array of strings");
        return -1;
    }
    size_t n = 2 + (size_t)(cJSON_IsArray(args) ? cJSON_GetArraySize(args) : 0) + (cJSON_IsString(wp) ? 1 : 0);
    app->argv = calloc(n, sizeof *app->argv);
    if (!app->argv || !(app->argv[0] = strdup(exe->valuestring))) { snprintf(err, errlen, "out of memory"); return -1; }
    size_t k = 1;
    const cJSON *a;
    const cJSON *arglist = cJSON_IsArray(args) ? args : NULL;
    cJSON_ArrayForEach(a, arglist) {
        if (!cJSON_IsString(a)) {
            snprintf(err, errlen, "host.json: customHandler.description.arguments must be an array of strings");
            return -1;
        }
        char why[400];
        if (!(app->argv[k++] = dh_settings_expand(app->settings, a->valuestring, why, sizeof why))) {
            snprintf(err, errlen, "host.json: customHandler.description.arguments: %s", why);
            return -1;
        }
    }
    if (cJSON_IsString(wp) && *wp->valuestring) {
        char *p = join_path(app->script_root, wp->valuestring);
        if (!p) { snprintf(err, errlen, "out of memory"); return -1; }
        if (wp->valuestring[0] == '/' || !is_file(p)) { free(p); p = strdup(wp->valuestring); }
        if (!(app->argv[k++] = p)) { snprintf(err, errlen, "out of memory"); return -1; }
    }
    app->forward_http = cJSON_IsTrue(cJSON_GetObjectItem(ch, "enableForwardingHttpRequest"));
    return 0;
}

static int load_host_json(dh_app_t *app, char *err, size_t errlen)
{
    char *path = join_path(app->script_root, "host.json");
    if (!path) { snprintf(err, errlen, "out of memory"); return -1; }
    int missing = 0;
    app->host_json = dh_json_load(path, "host.json", &missing, err, errlen);
    free(path);
    if (!app->host_json) {
        if (missing)
            snprintf(err, errlen, "host.json: file not found in %s. Run devhost start in the function app's folder "
                     "(or give --script-root DIR)", app->script_root);
        return -1;
    }
    if (!cJSON_IsObject(app->host_json)) {
        snprintf(err, errlen, "host.json: must contain a JSON object");
        return -1;
    }
    const cJSON *ver = cJSON_GetObjectItem(app->host_json, "version");
    if (!cJSON_IsString(ver) || strcmp(ver->valuestring, "2.0") != 0) {
        snprintf(err, errlen, "host.json: \"version\" must be \"2.0\" (the Functions runtime v4 schema)");
        return -1;
    }
    const cJSON *ext = cJSON_GetObjectItem(app->host_json, "extensions");
    const cJSON *http = cJSON_IsObject(ext) ? cJSON_GetObjectItem(ext, "http") : NULL;
    const cJSON *rp = cJSON_IsObject(http) ? cJSON_GetObjectItem(http, "routePrefix") : NULL;
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsString(rp)) {
        snprintf(err, errlen, "host.json: extensions.http.routePrefix must be a string");
        return -1;
    }
    const char *prefix = cJSON_IsString(rp) ? rp->valuestring : "api";
    while (*prefix == '/') prefix++;
    app->route_prefix = strdup(prefix);
    if (!app->route_prefix) { snprintf(err, errlen, "out of memory"); return -1; }
    size_t pl = strlen(app->route_prefix);
    while (pl && app->route_prefix[pl - 1] == '/') app->route_prefix[--pl] = '\0';
    const cJSON *eh = cJSON_IsObject(ext) ? cJSON_GetObjectItem(ext, "eventHubs") : NULL;
    if (eh && !cJSON_IsNull(eh) && !cJSON_IsObject(eh)) {
        snprintf(err, errlen, "host.json: extensions.eventHubs must be an object");
        return -1;
    }
    app->event_hubs = cJSON_IsObject(eh) ? eh : NULL;

    app->function_timeout_ms = DH_DEFAULT_FUNCTION_TIMEOUT_MS;
    const cJSON *ft = cJSON_GetObjectItem(app->host_json, "functionTimeout");
    if (ft && !cJSON_IsNull(ft)) {
        if (cJSON_IsString(ft) && strcmp(ft->valuestring, "-1") == 0) app->function_timeout_ms = -1;
        else if (!cJSON_IsString(ft) || dh_timespan_ms(ft->valuestring, &app->function_timeout_ms) != 0 ||
                 app->function_timeout_ms <= 0) {
            snprintf(err, errlen, "host.json: functionTimeout must be a time span such as \"00:05:00\" (or \"-1\")");
            return -1;
        }
    }
    return 0;
}

/* ---- functions ----------------------------------------------------------------------------- */

static int cmp_fn(const void *a, const void *b)
{
    return strcasecmp((*(dh_function_t *const *)a)->name, (*(dh_function_t *const *)b)->name);
}

static int listed(const cJSON *list, const char *name)
{
    if (!cJSON_IsArray(list)) return 1;
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
        if (cJSON_IsString(it) && strcasecmp(it->valuestring, name) == 0) return 1;
    return 0;
}

static int load_functions(dh_app_t *app, char *err, size_t errlen)
{
    DIR *d = opendir(app->script_root);
    if (!d) { snprintf(err, errlen, "%s: %s", app->script_root, strerror(errno)); return -1; }
    app->functions = calloc(MAX_FUNCTIONS, sizeof *app->functions);
    if (!app->functions) { closedir(d); snprintf(err, errlen, "out of memory"); return -1; }
    const cJSON *only = cJSON_GetObjectItem(app->host_json, "functions");
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char *dir = join_path(app->script_root, de->d_name);
        char *fj = dir ? join_path(dir, "function.json") : NULL;
        if (!fj) { free(dir); snprintf(err, errlen, "out of memory"); rc = -1; break; }
        if (is_file(fj) && listed(only, de->d_name)) {
            if (app->nfunctions == MAX_FUNCTIONS) {
                snprintf(err, errlen, "more than %d functions", MAX_FUNCTIONS);
                rc = -1;
            } else if (dh_app_function(app, de->d_name)) {
                snprintf(err, errlen, "two function folders are named '%s' apart from letter case", de->d_name);
                rc = -1;
            } else {
                dh_function_t *fn = dh_function_load(dir, de->d_name, app->settings, err, errlen);
                if (!fn) rc = -1;
                else app->functions[app->nfunctions++] = fn;
            }
        }
        free(fj);
        free(dir);
    }
    closedir(d);
    if (rc != 0) return -1;
    qsort(app->functions, app->nfunctions, sizeof *app->functions, cmp_fn);
    if (app->forward_http) {
        for (size_t i = 0; i < app->nfunctions; i++) {
            dh_function_t *fn = app->functions[i];
            if (fn->http && fn->nbindings == 2 && fn->http_out) {
                snprintf(err, errlen, "host.json: customHandler.enableForwardingHttpRequest is true, and %s has only "
                         "http in/out bindings; devhost does not forward raw HTTP requests (set it to false: every "
                         "function then gets the JSON payload)", fn->name);
                return -1;
            }
        }
    }
    return 0;
}

int dh_app_load(const dh_app_opts_t *o, dh_app_t *app, char *err, size_t errlen)
{
    memset(app, 0, sizeof *app);
    const char *root = o->script_root ? o->script_root : ".";
    app->script_root = realpath(root, NULL);
    if (!app->script_root) {
        snprintf(err, errlen, "the script root %s: %s", root, strerror(errno));
        return -1;
    }
    app->settings = dh_settings_new();
    if (!app->settings) { snprintf(err, errlen, "out of memory"); goto fail; }
    if (load_host_json(app, err, errlen) != 0 || load_local_settings(app, o, err, errlen) != 0 ||
        load_custom_handler(app, err, errlen) != 0 || load_functions(app, err, errlen) != 0)
        goto fail;
    return 0;
fail:
    dh_app_free(app);
    return -1;
}
