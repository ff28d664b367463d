/* invoke.c — invocations as the Functions host makes them (dh_invoke), HTTP functions and
 * /admin on the front server. Owns: the request envelope and its sys/input-binding parts, the
 * checks on the handler's reply, output delivery, the per-invocation log line and counters,
 * route matching with the route prefix, authLevel with --enable-auth, and
 * /admin/host/status. */
#include "devhost/host/host_internal.h"

#include "devhost/host/common.h"
#include "devhost/host/http_trigger.h"
#include "devhost/host/invoker.h"
#include "devhost/host/route.h"
#include "devhost/host/signalr_binding.h"
#include "devhost/host/supervisor.h"
#include "util/log.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void dh_invoke_result_free(dh_invoke_result_t *r)
{
    if (!r) return;
    cJSON_Delete(r->outputs);
    cJSON_Delete(r->return_value);
    cJSON_Delete(r->logs);
    r->outputs = r->return_value = r->logs = NULL;
}

static int fail(dh_invoke_result_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(dh_invoke_result_t *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->error, sizeof out->error, fmt, ap);
    va_end(ap);
    out->ok = 0;
    return -1;
}

static int add_sys(const dh_function_t *fn, cJSON *md)
{
    if (cJSON_GetObjectItem(md, "sys")) return 0;
    char now[40], guid[37];
    dh_utc_now_iso(now);
    if (dh_uuid4(guid) != 0) return -1;
    cJSON *sys = cJSON_CreateObject();
    if (!sys || !cJSON_AddStringToObject(sys, "MethodName", fn->name) || !cJSON_AddStringToObject(sys, "UtcNow", now) ||
        !cJSON_AddStringToObject(sys, "RandGuid", guid) || !cJSON_AddItemToObject(md, "sys", sys)) {
        cJSON_Delete(sys);
        return -1;
    }
    return 0;
}

/* A short printable excerpt of the handler's failure body: its "error" when it is JSON. */
static void failure_excerpt(const dh_answer_t *a, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!a->body.len) return;
    cJSON *j = cJSON_ParseWithLength(a->body.data, a->body.len);
    const cJSON *e = j ? cJSON_GetObjectItem(j, "error") : NULL;
    const char *src = cJSON_IsString(e) ? e->valuestring : buf_str(&a->body);
    size_t n = 0;
    for (const char *p = src; *p && n + 4 < outlen && n < 300; p++)
        out[n++] = ((unsigned char)*p >= 0x20 && *p != 0x7f) ? *p : ' ';
    out[n] = '\0';
    cJSON_Delete(j);
}

static int media_type_is_json(const char *ct)
{
    while (*ct == ' ') ct++;
    size_t n = strcspn(ct, "; ");
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

static const char *status_reason(long s)
{
    switch (s) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Request Entity Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return s >= 500 ? "Server Error" : s >= 400 ? "Client Error" : "Unexpected";
    }
}

/* The value of output binding b in the reply. */
static const cJSON *output_value(const dh_binding_t *b, const dh_invoke_result_t *out)
{
    if (strcmp(b->name, "$return") == 0) return out->return_value;
    return out->outputs ? cJSON_GetObjectItem(out->outputs, b->name) : NULL;
}

/* Everything after the POST: the reply's checks and the output bindings. */
static int process_reply(dh_host_t *h, const dh_function_t *fn, const cJSON *md, dh_answer_t *a, dh_http_resp_t *w,
                         dh_invoke_result_t *out)
{
    out->handler_status = a->status;
    if (a->status < 200 || a->status > 299) {
        char ex[320];
        failure_excerpt(a, ex, sizeof ex);
        return fail(out, "Response status code does not indicate success: %ld (%s).%s%s", a->status,
                    status_reason(a->status), ex[0] ? " The handler said: " : "", ex);
    }
    if (!media_type_is_json(a->content_type))
        return fail(out, "the handler answered %ld with Content-Type '%s': the host reads only application/json "
                    "(\"No MediaTypeFormatter is available to read an object of type 'HttpScriptInvocationResult'\")",
                    a->status, a->content_type[0] ? a->content_type : "(none)");
    cJSON *reply = a->body.len ? cJSON_ParseWithLength(a->body.data, a->body.len) : NULL;
    if (!reply || cJSON_IsNull(reply)) {
        int empty = !a->body.len || reply; /* nothing, or the JSON null */
        cJSON_Delete(reply);
        if (empty)
            return fail(out, "the handler answered an empty body (or null): the Functions host never completes such an "
                        "invocation and it hangs until functionTimeout; answer at least {}");
        return fail(out, "the handler's reply is not valid JSON");
    }
    if (!cJSON_IsObject(reply)) {
        cJSON_Delete(reply);
        return fail(out, "the handler's reply must be a JSON object {\"Outputs\":...,\"Logs\":...,\"ReturnValue\":...}");
    }
    /* Outputs, Logs and ReturnValue, matched case-insensitively as Newtonsoft matches them. */
    cJSON *o = cJSON_DetachItemFromObject(reply, "Outputs");
    cJSON *l = cJSON_DetachItemFromObject(reply, "Logs");
    cJSON *rv = cJSON_DetachItemFromObject(reply, "ReturnValue");
    cJSON_Delete(reply);
    if (o && cJSON_IsNull(o)) { cJSON_Delete(o); o = NULL; }
    if (l && cJSON_IsNull(l)) { cJSON_Delete(l); l = NULL; }
    if (rv && cJSON_IsNull(rv)) { cJSON_Delete(rv); rv = NULL; }
    out->outputs = o;
    out->logs = l;
    out->return_value = rv;
    if (o && !cJSON_IsObject(o)) return fail(out, "the reply's Outputs must be an object of binding names");
    if (l) {
        const cJSON *it;
        int good = cJSON_IsArray(l);
        const cJSON *list = good ? l : NULL;
        cJSON_ArrayForEach(it, list) if (!cJSON_IsString(it)) good = 0;
        if (!good) return fail(out, "the reply's Logs must be an array of strings");
    }
    char why[1024];
    if (w && fn->http) {
        const cJSON *res = fn->http_out ? output_value(fn->http_out, out) : NULL;
        if (dh_http_apply_output(res, w, why, sizeof why) != 0) return fail(out, "output '%s': %s",
                                                                           fn->http_out ? fn->http_out->name : "", why);
    }
    for (size_t i = 0; i < fn->nbindings; i++) {
        const dh_binding_t *b = &fn->bindings[i];
        if (!dh_binding_is(b, "signalR")) continue;
        if (dh_sr_deliver(h->sr, b, output_value(b, out), md, &h->stopping, why, sizeof why) < 0)
            return fail(out, "%s", why);
    }
    out->ok = 1;
    return 0;
}

static void log_invocation(const dh_function_t *fn, const dh_invoke_result_t *out)
{
    if (out->ok)
        log_info(NULL, "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", fn->name, out->invocation_id,
                 out->duration_ms);
    else
        log_error(NULL, "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms): %s", fn->name,
                  out->invocation_id, out->duration_ms, out->error);
    const cJSON *line;
    const cJSON *logs = cJSON_IsArray(out->logs) ? out->logs : NULL;
    cJSON_ArrayForEach(line, logs)
        if (cJSON_IsString(line)) log_info(NULL, "  %s: %s", fn->name, line->valuestring);
}

/* Each thread prints envelopes into its own buffer, reused until the thread ends, instead of
 * cJSON_PrintUnformatted's buffer grown by doubling for every invocation (whose large reallocs
 * also make malloc consolidate its free lists). */
#define ENVELOPE_BUF_BYTES (16 * 1024)
static _Thread_local char *tl_envelope;
static pthread_key_t tl_envelope_key;
static pthread_once_t tl_envelope_once = PTHREAD_ONCE_INIT;

static void tl_envelope_init(void) { (void)pthread_key_create(&tl_envelope_key, free); }

/* env as compact JSON: in this thread's buffer when it fits, else in *heap (the caller frees
 * it). NULL when out of memory. The text is valid until this thread's next call. */
static const char *envelope_text(const cJSON *env, char **heap)
{
    *heap = NULL;
    pthread_once(&tl_envelope_once, tl_envelope_init);
    if (!tl_envelope && (tl_envelope = malloc(ENVELOPE_BUF_BYTES)) != NULL)
        (void)pthread_setspecific(tl_envelope_key, tl_envelope); /* freed when the thread ends */
    /* cJSON may need up to 5 bytes more than the text it writes: keep them spare. */
    if (tl_envelope && cJSON_PrintPreallocated((cJSON *)env, tl_envelope, ENVELOPE_BUF_BYTES - 5, 0))
        return tl_envelope;
    return *heap = cJSON_PrintUnformatted(env);
}

int dh_host_invoke(dh_host_t *h, const dh_function_t *fn, cJSON *data, cJSON *metadata, dh_http_resp_t *w,
                   dh_invoke_result_t *out)
{
    memset(out, 0, sizeof *out);
    int64_t t0 = dh_now_ns();
    if (dh_uuid4(out->invocation_id) != 0) snprintf(out->invocation_id, sizeof out->invocation_id, "?");
    /* data and metadata stay the caller's; empty ones are made here for a caller without. */
    cJSON *own_data = data ? NULL : (data = cJSON_CreateObject());
    cJSON *own_md = metadata ? NULL : (metadata = cJSON_CreateObject());
    char *body = NULL;
    int rc = -1;
    if (!data || !metadata || !cJSON_IsObject(data) || !cJSON_IsObject(metadata) || add_sys(fn, metadata) != 0) {
        fail(out, "out of memory (or Data/Metadata not objects)");
        goto done;
    }
    for (size_t i = 0; i < fn->nbindings; i++) {
        const dh_binding_t *b = &fn->bindings[i];
        if (b == fn->trigger || !dh_binding_is(b, "signalRConnectionInfo")) continue;
        char why[600];
        cJSON *v = dh_sr_connection_info(b, metadata, why, sizeof why);
        if (!v) { fail(out, "%s", why); goto done; }
        if (dh_json_set_ci(data, b->name, v) != 0) { fail(out, "out of memory"); goto done; }
    }
    cJSON *env = cJSON_CreateObject();
    if (!env) { fail(out, "out of memory"); goto done; }
    cJSON_AddItemReferenceToObject(env, "Data", data);
    cJSON_AddItemReferenceToObject(env, "Metadata", metadata);
    const char *text = envelope_text(env, &body);
    cJSON_Delete(env); /* references only: data and metadata are untouched */
    if (!text) { fail(out, "out of memory"); goto done; }
    dh_answer_t a;
    char why[512];
    if (dh_invoker_post(h->invoker, fn->name, out->invocation_id, text, strlen(text), &a, why, sizeof why) != 0) {
        fail(out, "%s", why);
        goto done;
    }
    free(body);
    body = NULL;
    rc = process_reply(h, fn, metadata, &a, w, out);
    buf_free(&a.body);
done:
    free(body);
    cJSON_Delete(own_data);
    cJSON_Delete(own_md);
    out->duration_ms = (double)(dh_now_ns() - t0) / 1e6;
    atomic_fetch_add(&h->invocations, 1);
    if (!out->ok) atomic_fetch_add(&h->failures, 1);
    log_invocation(fn, out);
    return rc == 0 && out->ok ? 0 : -1;
}

int dh_invoke(dh_host_t *h, const dh_function_t *fn, cJSON *data, cJSON *metadata, dh_invoke_result_t *out)
{
    return dh_host_invoke(h, fn, data, metadata, NULL, out);
}

/* ---- HTTP functions ------------------------------------------------------------------------ */

/* The key a request presents: ?code= or x-functions-key. */
static const char *presented_key(const dh_http_req_t *r)
{
    const char *k = dh_req_header(r, "x-functions-key");
    return k ? k : dh_req_query(r, "code");
}

/* Who the request is for the function's authLevel; returns 0 when it may not call it. */
static int authorize(const dh_host_t *h, dh_auth_level_t level, const dh_http_req_t *r, dh_identity_t *who)
{
    const char *key = presented_key(r);
    if (!h->enable_auth) {
        /* func start: keys are not checked; a function that requires auth, or a request that
         * presents a key, runs through the bypass handler, which grants Admin. */
        *who = (level == DH_AUTH_ANONYMOUS && !key) ? DH_IDENTITY_ANONYMOUS : DH_IDENTITY_LOCAL_ADMIN;
        return 1;
    }
    *who = DH_IDENTITY_ANONYMOUS;
    if (key && dh_keys_match(key, h->keys.master_key)) *who = DH_IDENTITY_MASTER_KEY;
    else if (key && dh_keys_match(key, h->keys.function_key)) *who = DH_IDENTITY_FUNCTION_KEY;
    switch (level) {
    case DH_AUTH_ANONYMOUS: return 1;
    case DH_AUTH_FUNCTION: return *who != DH_IDENTITY_ANONYMOUS;
    case DH_AUTH_ADMIN: return *who == DH_IDENTITY_MASTER_KEY;
    }
    return 0;
}

static void run_http_function(dh_host_t *h, const dh_function_t *fn, const dh_http_req_t *r, cJSON *params,
                              dh_http_resp_t *w)
{
    dh_identity_t who;
    if (!authorize(h, fn->http->auth, r, &who)) {
        log_warn(NULL, "devhost: %s %s: 401, %s key required (--enable-auth)", r->method, r->raw_path,
                 fn->http->auth == DH_AUTH_ADMIN ? "the master" : "a function");
        w->status = 401;
        cJSON_Delete(params);
        return;
    }
    /* Data.req goes into the envelope as text (a raw item): nothing reads it as a tree. */
    cJSON *data = cJSON_CreateObject();
    buf_t text = BUF_INIT;
    cJSON *req = dh_http_request_text(&text, r, params, who) == 0 ? cJSON_CreateRaw(buf_str(&text)) : NULL;
    buf_free(&text);
    cJSON *md = dh_http_metadata(r, params);
    cJSON_Delete(params);
    if (!data || !req || !md || !cJSON_AddItemToObject(data, fn->trigger->name, req)) {
        cJSON_Delete(data);
        cJSON_Delete(req);
        cJSON_Delete(md);
        w->status = 500;
        return;
    }
    dh_invoke_result_t out;
    if (dh_host_invoke(h, fn, data, md, w, &out) != 0) {
        /* The host answers a failed invocation with a bare 500. */
        dh_http_resp_free(w);
        dh_http_resp_init(w);
        w->status = 500;
    }
    dh_invoke_result_free(&out);
    cJSON_Delete(data);
    cJSON_Delete(md);
}

/* Match the request against the HTTP functions. Returns 1 when a function answered (or a route
 * matched without the method: 404 as the host's routing gives). */
static int dispatch_function(dh_host_t *h, const dh_http_req_t *r, dh_http_resp_t *w)
{
    if (r->nsegs < h->nprefix) return 0;
    for (size_t i = 0; i < h->nprefix; i++)
        if (strcasecmp(r->segs[i], h->prefix[i]) != 0) return 0;
    char *const *segs = r->segs + h->nprefix;
    size_t n = r->nsegs - h->nprefix;
    unsigned bit = dh_method_bit(r->method);
    for (size_t i = 0; i < h->nhttp; i++) {
        const dh_function_t *fn = h->http_fns[i];
        if (fn->http->methods && !(fn->http->methods & bit)) continue;
        cJSON *params = cJSON_CreateObject();
        if (!params) { w->status = 500; return 1; }
        if (dh_route_match(fn->http->tmpl, segs, n, params)) {
            if (r->body_too_large) {
                cJSON_Delete(params);
                log_warn(NULL, "devhost: %s %s: 413, the body is larger than the host accepts (100 MiB)", r->method,
                         r->raw_path);
                w->status = 413;
                return 1;
            }
            run_http_function(h, fn, r, params, w);
            return 1;
        }
        cJSON_Delete(params);
    }
    return 0;
}

/* ---- /admin ---------------------------------------------------------------------------------- */

static void host_status(dh_host_t *h, dh_http_resp_t *w)
{
    dh_handler_state_t st = dh_supervisor_state(h->sup);
    const char *state = h->stopping ? "Stopping" : st == DH_HANDLER_READY ? "Running" :
                        st == DH_HANDLER_STARTING ? "Initialized" : "Error";
    cJSON *o = cJSON_CreateObject();
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    cJSON_AddStringToObject(o, "id", h->instance_id);
    cJSON_AddStringToObject(o, "state", state);
    cJSON_AddStringToObject(o, "version", DH_HOST_VERSION);
    cJSON_AddStringToObject(o, "versionDetails", "devhost (Enviromon's local Functions host)");
    cJSON_AddStringToObject(o, "platformVersion", "");
    cJSON_AddStringToObject(o, "instanceId", h->instance_id);
    cJSON_AddStringToObject(o, "computerName", host);
    cJSON_AddNumberToObject(o, "processUptime", (double)(dh_now_ms() - h->start_ms));
    cJSON_AddStringToObject(o, "functionAppContentEditingState", "NotAllowed");
    cJSON_AddStringToObject(o, "handlerState", dh_handler_state_name(st));
    cJSON_AddNumberToObject(o, "handlerRestarts", dh_supervisor_restarts(h->sup));
    if (strcmp(state, "Error") == 0) {
        cJSON *errs = cJSON_AddArrayToObject(o, "errors");
        cJSON_AddItemToArray(errs, cJSON_CreateString(st == DH_HANDLER_EXITED ?
                             "the custom handler exited with code 0 and is not restarted" :
                             "the custom handler failed too often and is not restarted"));
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    dh_resp_set(w, 200, "application/json; charset=utf-8", text ? text : "{}");
    free(text);
}

static void homepage(dh_host_t *h, dh_http_resp_t *w)
{
    buf_t b = BUF_INIT;
    buf_puts(&b, "devhost is running this function app:\n");
    for (size_t i = 0; i < h->app.nfunctions; i++) {
        const dh_function_t *fn = h->app.functions[i];
        if (fn->http)
            buf_printf(&b, "  %s: /%s%s%s\n", fn->name, h->app.route_prefix, *h->app.route_prefix ? "/" : "",
                       fn->http->route);
        else
            buf_printf(&b, "  %s: %s\n", fn->name, fn->trigger->type);
    }
    buf_puts(&b, "Status: /admin/host/status\n");
    dh_resp_set(w, 200, "text/plain; charset=utf-8", buf_str(&b));
    buf_free(&b);
}

int dh_host_dispatch(void *arg, const dh_http_req_t *r, dh_http_resp_t *w)
{
    dh_host_t *h = arg;
    if (r->nsegs >= 1 && strcasecmp(r->segs[0], "admin") == 0) {
        const char *key = presented_key(r);
        if (h->enable_auth && !(key && dh_keys_match(key, h->keys.master_key))) {
            w->status = 401;
            return 1;
        }
        if (r->nsegs == 3 && strcasecmp(r->segs[1], "host") == 0 && strcasecmp(r->segs[2], "status") == 0 &&
            (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0)) {
            host_status(h, w);
            return 1;
        }
        w->status = 404;
        return 1;
    }
    if (dispatch_function(h, r, w)) return 1;
    if (r->nsegs == 0 && !h->statics && (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0)) {
        homepage(h, w);
        return 1;
    }
    return 0;
}
