/* host.c — `devhost start`'s lifecycle: set-up, plugins, the local SignalR Service, the main
 * loop with its 10 s summary, and an orderly stop (see host.h). */
#include "devhost/host/host_internal.h"

#include "azure/signalr_token.h"
#include "devhost/host/common.h"
#include "devhost/host/invoker.h"
#include "devhost/host/route.h"
#include "devhost/host/settings.h"
#include "devhost/host/signalr_binding.h"
#include "devhost/host/static_files.h"
#include "devhost/host/supervisor.h"
#include "devhost/signalr/signalr_service.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SUMMARY_EVERY_MS 10000
#define FUNCTION_MAX_BODY (100u * 1024u * 1024u)  /* the host's request limit (100 MB) */
#define FRONT_DRAIN_MS 1500

/* ---- accessors (seam 4) ------------------------------------------------------------------ */

const char *dh_host_data_dir(const dh_host_t *h) { return h->data_dir; }
const char *dh_host_setting(const dh_host_t *h, const char *name) { return dh_settings_get(h->app.settings, name); }
const cJSON *dh_host_event_hubs(const dh_host_t *h) { return h->app.event_hubs; }
size_t dh_host_function_count(const dh_host_t *h) { return h->app.nfunctions; }
const dh_function_t *dh_host_function(const dh_host_t *h, size_t i)
{
    return i < h->app.nfunctions ? h->app.functions[i] : NULL;
}
int dh_host_port(const dh_host_t *h) { return h->front && h->running ? dh_front_port(h->front) : h->app.port; }
int dh_host_stopping(const dh_host_t *h) { return h->stopping; }
const char *dh_host_scheme(const dh_host_t *h) { return h->tls_cert ? "https" : "http"; }

int dh_host_set_tls(dh_host_t *h, const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
    if (h->running) { snprintf(err, errlen, "TLS must be set before devhost runs"); return -1; }
    char *c = strdup(cert_pem), *k = strdup(key_pem);
    if (!c || !k || dh_front_set_tls(h->front, c, k, err, errlen) != 0) {
        if (!c || !k) snprintf(err, errlen, "out of memory");
        free(c);
        if (k) OPENSSL_cleanse(k, strlen(k));
        free(k);
        return -1;
    }
    free(h->tls_cert);
    if (h->tls_key) OPENSSL_cleanse(h->tls_key, strlen(h->tls_key));
    free(h->tls_key);
    h->tls_cert = c;
    h->tls_key = k;
    return 0;
}

int dh_host_add_route(dh_host_t *h, const char *prefix, size_t max_body, dh_route_fn fn, void *arg, char *err,
                      size_t errlen)
{
    return dh_front_add_route(h->front, prefix, max_body, fn, arg, err, errlen);
}

int dh_host_register(dh_host_t *h, const dh_plugin_t *p, char *err, size_t errlen)
{
    if (h->running) { snprintf(err, errlen, "plugins must be registered before devhost runs"); return -1; }
    if (h->nplugins == DH_MAX_PLUGINS) { snprintf(err, errlen, "too many plugins"); return -1; }
    for (size_t i = 0; p->trigger_type && i < h->nplugins; i++) {
        if (h->plugins[i].trigger_type && strcasecmp(h->plugins[i].trigger_type, p->trigger_type) == 0) {
            snprintf(err, errlen, "two plugins serve the trigger type %s (%s and %s)", p->trigger_type,
                     h->plugins[i].name, p->name);
            return -1;
        }
    }
    h->plugins[h->nplugins++] = *p;
    return 0;
}

/* ---- set-up ------------------------------------------------------------------------------- */

static int mkdir_p(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) { snprintf(err, errlen, "path too long"); return -1; }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) goto bad;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) goto bad;
    struct stat st;
    if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode)) { errno = ENOTDIR; goto bad; }
    return 0;
bad:
    snprintf(err, errlen, "the data folder %s cannot be created: %s", path, strerror(errno));
    return -1;
}

static int cmp_route(const void *a, const void *b)
{
    const dh_function_t *x = *(dh_function_t *const *)a, *y = *(dh_function_t *const *)b;
    int c = dh_route_cmp(x->http->tmpl, y->http->tmpl);
    return c ? c : strcasecmp(x->name, y->name);
}

static int prepare_routes(dh_host_t *h, char *err, size_t errlen)
{
    h->http_fns = calloc(h->app.nfunctions + 1, sizeof *h->http_fns);
    h->prefix = calloc(strlen(h->app.route_prefix) + 2, sizeof *h->prefix);
    if (!h->http_fns || !h->prefix) { snprintf(err, errlen, "out of memory"); return -1; }
    for (size_t i = 0; i < h->app.nfunctions; i++)
        if (h->app.functions[i]->http && !h->app.functions[i]->disabled) h->http_fns[h->nhttp++] = h->app.functions[i];
    qsort(h->http_fns, h->nhttp, sizeof *h->http_fns, cmp_route);
    for (const char *p = h->app.route_prefix; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        size_t n = strcspn(p, "/");
        if (!(h->prefix[h->nprefix++] = strndup(p, n))) { snprintf(err, errlen, "out of memory"); return -1; }
        p += n;
    }
    return 0;
}

/* Origins of the SignalR endpoints, for the dashboard's connect-src. */
static void signalr_origins(const dh_host_t *h, buf_t *b)
{
    for (size_t i = 0; i < dh_sr_count(h->sr); i++) {
        const sr_conn_t *c = dh_sr_conn(h->sr, i);
        char base[1100];
        if (c->client_endpoint) snprintf(base, sizeof base, "%s", c->client_endpoint);
        else if (sr_request_base(c, base, sizeof base) != 0) continue;
        size_t n = strlen(base);
        while (n && base[n - 1] == '/') base[--n] = '\0';
        const char *rest = strstr(base, "://");
        if (!rest) continue;
        int tls = strncasecmp(base, "https", 5) == 0;
        buf_printf(b, "%s%s %s%s", b->len ? " " : "", base, tls ? "wss" : "ws", rest);
    }
}

dh_host_t *dh_host_new(const dh_host_opts_t *o, char *err, size_t errlen)
{
    /* Signals first, before any thread exists (curl, MHD and plugins inherit the mask). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    dh_host_t *h = calloc(1, sizeof *h);
    if (!h) { snprintf(err, errlen, "out of memory"); return NULL; }
    h->main_thread = pthread_self();
    h->start_ms = dh_now_ms();
    atomic_init(&h->invocations, 0);
    atomic_init(&h->failures, 0);
    atomic_init(&h->fatal, 0);
    if (dh_uuid4(h->instance_id) != 0) snprintf(h->instance_id, sizeof h->instance_id, "devhost");
    dh_app_opts_t ao = {o->script_root, o->port, o->cors, o->cors_credentials};
    if (dh_app_load(&ao, &h->app, err, errlen) != 0) { free(h); return NULL; }

    h->sr = dh_sr_bindings_new();
    if (!h->sr) { snprintf(err, errlen, "out of memory"); goto fail; }
    for (size_t i = 0; i < h->app.nfunctions; i++) {
        dh_function_t *fn = h->app.functions[i];
        for (size_t k = 0; k < fn->nbindings; k++) {
            dh_binding_t *b = &fn->bindings[k];
            if ((dh_binding_is(b, "signalR") || dh_binding_is(b, "signalRConnectionInfo")) &&
                dh_sr_prepare(h->sr, fn, b, h->app.settings, err, errlen) != 0)
                goto fail;
        }
    }
    if (dh_sr_track_setting(h->sr, h->app.settings, "AzureSignalRConnectionString", err, errlen) != 0) {
        char why[600];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "local.settings.json: %s", why);
        goto fail;
    }
    if (prepare_routes(h, err, errlen) != 0) goto fail;

    const char *dd = o->data_dir ? o->data_dir : ".devhost";
    if (mkdir_p(dd, err, errlen) != 0) goto fail;
    if (!(h->data_dir = realpath(dd, NULL))) { snprintf(err, errlen, "%s: %s", dd, strerror(errno)); goto fail; }
    h->enable_auth = o->enable_auth;
    if (h->enable_auth && dh_keys_load_or_create(h->data_dir, &h->keys, err, errlen) != 0) goto fail;

    char *dash = malloc(strlen(h->app.script_root) + 16);
    if (!dash) { snprintf(err, errlen, "out of memory"); goto fail; }
    sprintf(dash, "%s/dashboard", h->app.script_root);
    buf_t origins = BUF_INIT;
    signalr_origins(h, &origins);
    int absent = 0;
    h->statics = dh_static_open(dash, buf_str(&origins), &absent, err, errlen);
    buf_free(&origins);
    free(dash);
    if (!h->statics && !absent) goto fail;

    dh_front_opts_t fo = {
        .host = "127.0.0.1", .port = h->app.port, .max_body = FUNCTION_MAX_BODY,
        .cors_origins = h->app.cors, .ncors = h->app.ncors, .cors_any = h->app.cors_any,
        .cors_credentials = h->app.cors_credentials, .statics = h->statics,
        .dispatch = dh_host_dispatch, .arg = h,
    };
    if (!(h->front = dh_front_new(&fo))) { snprintf(err, errlen, "out of memory"); goto fail; }
    return h;
fail:
    dh_host_free(h);
    return NULL;
}

/* ---- the local SignalR Service ----------------------------------------------------------- */

static int is_local_host(const char *host)
{
    return strcasecmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "[::1]") == 0;
}

static int listening(int port)
{
    int fd = dh_loopback_connect(port);
    if (fd >= 0) close(fd);
    return fd >= 0;
}

static int start_local_signalr(dh_host_t *h, char *err, size_t errlen)
{
    for (size_t i = 0; i < dh_sr_count(h->sr); i++) {
        const sr_conn_t *c = dh_sr_conn(h->sr, i);
        if (!is_local_host(c->host)) continue;
        int dup = 0;
        for (size_t k = 0; k < i; k++)
            if (dh_sr_conn(h->sr, k)->port == c->port && is_local_host(dh_sr_conn(h->sr, k)->host)) dup = 1;
        if (dup) continue;
        if (listening(c->port)) {
            log_info(NULL, "devhost: using the SignalR Service already listening on localhost:%d", c->port);
            continue;
        }
        if (h->nlocal_sr == DH_MAX_LOCAL_SR) break;
        sr_service_opts_t so;
        sr_service_opts_default(&so);
        so.connection_string = dh_sr_connection_string(h->sr, i);
        so.host = "127.0.0.1";
        char why[512];
        sr_service_t *s = sr_service_start(&so, why, sizeof why);
        if (!s) {
            snprintf(err, errlen, "the local SignalR Service (localhost:%d, from the app's connection string) could not "
                     "start: %s", c->port, why);
            return -1;
        }
        h->local_sr[h->nlocal_sr++] = s;
        log_info(NULL, "devhost: runs the local SignalR Service in-process on localhost:%d (nothing listened there)",
                 c->port);
    }
    return 0;
}

/* ---- running ----------------------------------------------------------------------------- */

static void on_fatal(void *arg, const char *why)
{
    dh_host_t *h = arg;
    snprintf(h->fatal_msg, sizeof h->fatal_msg, "%s", why);
    atomic_store(&h->fatal, 1);
    pthread_kill(h->main_thread, SIGTERM); /* wake the main loop now */
}

static int bind_plugins(dh_host_t *h, char *err, size_t errlen)
{
    for (size_t i = 0; i < h->app.nfunctions; i++) {
        const dh_function_t *fn = h->app.functions[i];
        if (fn->http || fn->disabled) continue;
        const dh_plugin_t *p = NULL;
        for (size_t k = 0; k < h->nplugins; k++)
            if (h->plugins[k].trigger_type && strcasecmp(h->plugins[k].trigger_type, fn->trigger->type) == 0)
                p = &h->plugins[k];
        if (!p) {
            snprintf(err, errlen, "%s: no local trigger source for the trigger type '%s'; devhost runs httpTrigger "
                     "functions%s", fn->shown, fn->trigger->type, h->nplugins ? " and the triggers of its plugins" : "");
            return -1;
        }
        if (p->bind && p->bind(p->self, h, fn, err, errlen) != 0) return -1;
    }
    return 0;
}

static void print_functions(dh_host_t *h)
{
    int port = dh_front_port(h->front);
    log_info(NULL, "Functions:");
    for (size_t i = 0; i < h->app.nfunctions; i++) {
        const dh_function_t *fn = h->app.functions[i];
        if (fn->http) {
            char m[100];
            dh_methods_describe(fn->http->methods, m, sizeof m);
            log_info(NULL, "    %s: [%s] %s://localhost:%d/%s%s%s%s%s", fn->name, m, dh_host_scheme(h), port,
                     h->app.route_prefix, *h->app.route_prefix ? "/" : "", fn->http->route, fn->disabled ? " (disabled)" : "",
                     fn->http->auth != DH_AUTH_ANONYMOUS && h->enable_auth ? " (key required)" : "");
        } else {
            char r[160] = "";
            if (fn->retry.kind != DH_RETRY_NONE) {
                char d[120];
                dh_retry_describe(&fn->retry, d, sizeof d);
                snprintf(r, sizeof r, ", retry %s", d);
            }
            log_info(NULL, "    %s: %s%s%s", fn->name, fn->trigger->type, r, fn->disabled ? " (disabled)" : "");
        }
    }
    if (h->statics)
        log_info(NULL, "Dashboard: %s://localhost:%d/ (%s/dashboard)", dh_host_scheme(h), port, h->app.script_root);
    if (h->enable_auth) {
        /* The one secret devhost prints, on purpose and once: the key to call `function` functions
         * (written directly: log lines redact anything shaped like a key). */
        printf("[info] Function key (authLevel \"function\"; ?code= or x-functions-key): %s\n"
               "[info] The master key (authLevel \"admin\", /admin) is in %s/%s\n",
               h->keys.function_key, h->data_dir, DH_KEYS_FILE);
        fflush(stdout);
    }
}

static void summary(dh_host_t *h, unsigned long long *last_inv, unsigned long long *last_fail)
{
    unsigned long long inv = atomic_load(&h->invocations), f = atomic_load(&h->failures);
    unsigned long long sent = 0, sfail = 0;
    dh_sr_stats(h->sr, &sent, &sfail);
    buf_t line = BUF_INIT;
    buf_printf(&line, "devhost: last 10 s: %llu invocations, %llu failed (total %llu, %llu failed); handler %s, "
               "restarts %u; SignalR messages delivered %llu", inv - *last_inv, f - *last_fail, inv, f,
               dh_handler_state_name(dh_supervisor_state(h->sup)), dh_supervisor_restarts(h->sup), sent);
    for (size_t i = 0; i < h->nplugins; i++) {
        if (!h->plugins[i].summary || !h->plugin_started[i]) continue;
        buf_printf(&line, "; %s:", h->plugins[i].name);
        h->plugins[i].summary(h->plugins[i].self, &line);
    }
    log_info(NULL, "%s", buf_str(&line));
    buf_free(&line);
    *last_inv = inv;
    *last_fail = f;
}

/* Stop everything started, in order, within ~10 s. */
static void stop_all(dh_host_t *h)
{
    h->stopping = 1;
    dh_invoker_abort(h->invoker);                           /* in-flight invocations fail now */
    for (size_t i = h->nplugins; i-- > 0;)
        if (h->plugin_started[i] && h->plugins[i].stop) h->plugins[i].stop(h->plugins[i].self);
    dh_front_quiesce(h->front);
    if (h->sup) dh_supervisor_stop_begin(h->sup);          /* SIGTERM to the handler's group now */
    dh_front_stop(h->front, FRONT_DRAIN_MS);               /* in-flight invocations fail fast */
    h->front = NULL;
    for (size_t i = 0; i < h->nlocal_sr; i++) sr_service_stop(h->local_sr[i]); /* <= 3 s, meanwhile */
    h->nlocal_sr = 0;
    if (h->sup) dh_supervisor_stop_wait(h->sup);           /* SIGKILL after the grace period */
    h->sup = NULL;
}

int dh_host_run(dh_host_t *h)
{
    char err[1024];
    h->running = 1;
    log_set_buffered(1);
    if (bind_plugins(h, err, sizeof err) != 0 || start_local_signalr(h, err, sizeof err) != 0) {
        log_error(NULL, "devhost: %s", err);
        stop_all(h);
        return 1;
    }
    /* The supervisor and the invoker exist before the front server accepts anything (a
     * request may come at once); the handler starts after the port is ours. */
    dh_supervisor_opts_t so = {
        .exe = h->app.exe, .argv = h->app.argv, .workdir = h->app.workdir, .app_root = h->app.script_root,
        .settings = h->app.settings, .ready_timeout_ms = DH_READY_TIMEOUT_MS, .stop_grace_ms = 5000,
        .on_fatal = on_fatal, .arg = h,
    };
    h->sup = dh_supervisor_new(&so, err, sizeof err);
    h->invoker = h->sup ? dh_invoker_new(h->sup, h->app.function_timeout_ms, &h->stopping) : NULL;
    if (!h->sup || !h->invoker) {
        log_error(NULL, "devhost: %s", h->sup ? "out of memory" : err);
        stop_all(h);
        return 1;
    }
    if (dh_front_start(h->front, err, sizeof err) != 0 || dh_supervisor_run(h->sup, err, sizeof err) != 0) {
        log_error(NULL, "devhost: %s", err);
        stop_all(h);
        return 1;
    }
    log_info(NULL, "devhost: serving %s on %s://localhost:%d (data in %s)", h->app.script_root, dh_host_scheme(h),
             dh_front_port(h->front), h->data_dir);
    print_functions(h);
    for (size_t i = 0; i < h->nplugins; i++) {
        if (h->plugins[i].start && h->plugins[i].start(h->plugins[i].self, h, err, sizeof err) != 0) {
            log_error(NULL, "devhost: %s: %s", h->plugins[i].name, err);
            stop_all(h);
            return 1;
        }
        h->plugin_started[i] = 1;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int64_t next_summary = dh_now_ms() + SUMMARY_EVERY_MS;
    unsigned long long last_inv = 0, last_fail = 0;
    int sig = 0;
    while (!atomic_load(&h->fatal)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        sig = sigtimedwait(&set, NULL, &ts);
        log_flush(); /* stdout is buffered: a line per invocation would cost a write each */
        if (sig == SIGINT || sig == SIGTERM) break;
        if (dh_now_ms() >= next_summary) {
            summary(h, &last_inv, &last_fail);
            next_summary += SUMMARY_EVERY_MS;
        }
    }
    int fatal = atomic_load(&h->fatal);
    if (fatal) log_error(NULL, "devhost: stopping: %s", h->fatal_msg);
    else log_info(NULL, "devhost: %s received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    int64_t t0 = dh_now_ms();
    stop_all(h);
    log_info(NULL, "devhost: stopped in %lld ms (%llu invocations, %llu failed)", (long long)(dh_now_ms() - t0),
             (unsigned long long)atomic_load(&h->invocations), (unsigned long long)atomic_load(&h->failures));
    log_flush();
    return fatal ? 1 : 0;
}

void dh_host_free(dh_host_t *h)
{
    if (!h) return;
    if (h->front || h->sup || h->nlocal_sr) stop_all(h);
    for (size_t i = h->nplugins; i-- > 0;)   /* last registered first, as they stop */
        if (h->plugins[i].destroy) h->plugins[i].destroy(h->plugins[i].self);
    dh_invoker_free(h->invoker);
    dh_static_free(h->statics);
    dh_sr_bindings_free(h->sr);
    for (size_t i = 0; i < h->nprefix; i++) free(h->prefix[i]);
    free(h->prefix);
    free(h->http_fns);
    free(h->data_dir);
    free(h->tls_cert);
    if (h->tls_key) OPENSSL_cleanse(h->tls_key, strlen(h->tls_key));
    free(h->tls_key);
    dh_app_free(&h->app);
    memset(&h->keys, 0, sizeof h->keys);
    free(h);
}
