/* signalr_binding.c — signalRConnectionInfo and signalR bindings (see signalr_binding.h). */
#include <curl/curl.h>

#include "devhost/host/signalr_binding.h"

#include "azure/signalr_token.h"
#include "devhost/signalr/signalr_service.h"
#include "devhost/host/binding_expr.h"
#include "devhost/host/common.h"
#include "devhost/host/curl_pool.h"
#include "devhost/host/function_config.h"
#include "devhost/host/settings.h"
#include "util/buf.h"
#include "util/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TOKEN_LIFETIME_S 3600  /* the SDK's default for client and REST tokens */
#define MAX_CONNS 16

typedef struct {
    char     *setting;   /* the setting name */
    char     *text;      /* the connection string */
    sr_conn_t conn;
} conn_entry_t;

struct dh_sr_target {
    const conn_entry_t *ce;
    const char         *hub;      /* hubName (may hold binding expressions), in the binding's JSON */
    const char         *user_id;  /* signalRConnectionInfo userId, or NULL */
};

struct dh_sr_bindings {
    conn_entry_t     conns[MAX_CONNS];
    size_t           nconns;
    struct dh_sr_target *targets[256];
    size_t           ntargets;
    dh_curl_pool_t  *curl;
    atomic_ullong    delivered, failed;
};

dh_sr_bindings_t *dh_sr_bindings_new(void)
{
    dh_sr_bindings_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->curl = dh_curl_pool_new(32);
    if (!c->curl) { free(c); return NULL; }
    return c;
}

void dh_sr_bindings_free(dh_sr_bindings_t *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nconns; i++) {
        free(c->conns[i].setting);
        free(c->conns[i].text);
        sr_conn_free(&c->conns[i].conn);
    }
    for (size_t i = 0; i < c->ntargets; i++) free(c->targets[i]);
    dh_curl_pool_free(c->curl);
    free(c);
}

/* The entry for the connection string held by setting name (parsed once). */
static const conn_entry_t *get_conn(dh_sr_bindings_t *c, const dh_settings_t *settings, const char *name,
                                    int required, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nconns; i++)
        if (strcmp(c->conns[i].setting, name) == 0) return &c->conns[i];
    const char *text = dh_settings_get(settings, name);
    if (!text || !*text) {
        if (required)
            snprintf(err, errlen, "the setting '%s' (the SignalR Service connection string) has no value: add it "
                     "to Values in local.settings.json, e.g. the local emulator string "
                     "\"Endpoint=http://localhost;Port=8888;AccessKey=...;Version=1.0;\"", name);
        return NULL;
    }
    if (c->nconns == MAX_CONNS) { snprintf(err, errlen, "too many SignalR connection strings"); return NULL; }
    conn_entry_t *e = &c->conns[c->nconns];
    char why[256];
    if (sr_conn_parse(text, &e->conn, why, sizeof why) != 0) {
        snprintf(err, errlen, "the setting '%s' is not a valid SignalR connection string: %s", name, why);
        return NULL;
    }
    if (!e->conn.access_key || !*e->conn.access_key) {
        sr_conn_free(&e->conn);
        snprintf(err, errlen, "the setting '%s' has no AccessKey; devhost signs tokens with it (Entra ID "
                 "authentication is not supported locally)", name);
        return NULL;
    }
    e->setting = strdup(name);
    e->text = strdup(text);
    if (!e->setting || !e->text) {
        free(e->setting);
        free(e->text);
        sr_conn_free(&e->conn);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->nconns++;
    return e;
}

int dh_sr_track_setting(dh_sr_bindings_t *c, const dh_settings_t *settings, const char *name, char *err,
                        size_t errlen)
{
    err[0] = '\0';
    if (get_conn(c, settings, name, 0, err, errlen)) return 0;
    return err[0] ? -1 : 0;
}

size_t dh_sr_count(const dh_sr_bindings_t *c) { return c->nconns; }
const sr_conn_t *dh_sr_conn(const dh_sr_bindings_t *c, size_t i) { return i < c->nconns ? &c->conns[i].conn : NULL; }
const char *dh_sr_connection_string(const dh_sr_bindings_t *c, size_t i)
{
    return i < c->nconns ? c->conns[i].text : NULL;
}

int dh_sr_prepare(dh_sr_bindings_t *c, dh_function_t *fn, dh_binding_t *b, const dh_settings_t *settings,
                  char *err, size_t errlen)
{
    const char *setting = dh_binding_str(b, "connectionStringSetting", NULL);
    if (!setting) setting = dh_binding_str(b, "connection", "AzureSignalRConnectionString");
    const char *hub = dh_binding_str(b, "hubName", NULL);
    if (!hub || !*hub) {
        snprintf(err, errlen, "%s: binding '%s' (%s) needs \"hubName\"", fn->shown, b->name, b->type);
        return -1;
    }
    if (!dh_expr_has(hub) && !sr_service_valid_hub(hub)) {
        snprintf(err, errlen, "%s: binding '%s': hubName '%.60s' is not a valid hub name (a letter, then letters, "
                 "digits or '_')", fn->shown, b->name, hub);
        return -1;
    }
    char why[512];
    const conn_entry_t *ce = get_conn(c, settings, setting, 1, why, sizeof why);
    if (!ce) {
        snprintf(err, errlen, "%s: binding '%s' (%s): %s", fn->shown, b->name, b->type, why);
        return -1;
    }
    if (c->ntargets == sizeof c->targets / sizeof c->targets[0]) {
        snprintf(err, errlen, "too many SignalR bindings");
        return -1;
    }
    struct dh_sr_target *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); return -1; }
    t->ce = ce;
    t->hub = hub;
    if (dh_binding_is(b, "signalRConnectionInfo")) {
        const char *uid = dh_binding_str(b, "userId", NULL);
        t->user_id = uid && *uid ? uid : NULL;
        if (cJSON_GetObjectItem(b->json, "idToken") || cJSON_GetObjectItem(b->json, "claimTypeList"))
            log_warn(NULL, "%s: binding '%s': idToken and claimTypeList are not implemented by devhost; the "
                     "token carries only the user id", fn->shown, b->name);
    }
    c->targets[c->ntargets++] = t;
    b->signalr = t;
    return 0;
}

/* hubName resolved for this invocation. */
static char *resolve_hub(const struct dh_sr_target *t, const cJSON *md, char *err, size_t errlen)
{
    char *hub = dh_expr_resolve(t->hub, md, err, errlen);
    if (hub && !sr_service_valid_hub(hub)) {
        snprintf(err, errlen, "hubName '%.60s' is not a valid hub name", hub);
        free(hub);
        return NULL;
    }
    return hub;
}

cJSON *dh_sr_connection_info(const dh_binding_t *b, const cJSON *metadata, char *err, size_t errlen)
{
    const struct dh_sr_target *t = b->signalr;
    char why[400];
    char *hub = resolve_hub(t, metadata, why, sizeof why);
    char *user = NULL;
    if (!hub) goto bind_fail;
    if (t->user_id && !(user = dh_expr_resolve(t->user_id, metadata, why, sizeof why))) goto bind_fail;
    char url[1200], aud[1200];
    if (sr_client_url(&t->ce->conn, hub, url, sizeof url) != 0 ||
        sr_client_audience(&t->ce->conn, hub, aud, sizeof aud) != 0) {
        snprintf(why, sizeof why, "the SignalR endpoint or hub name is too long");
        goto bind_fail;
    }
    const sr_conn_t *cn = &t->ce->conn;
    char *token = sr_token_mint(cn->access_key, strlen(cn->access_key), aud, time(NULL) + TOKEN_LIFETIME_S,
                                user && *user ? user : NULL);
    free(hub);
    free(user);
    if (!token) { snprintf(err, errlen, "out of memory"); return NULL; }
    /* JObject.ToString(): indented with two spaces, as the extension's value provider gives it. */
    buf_t text = BUF_INIT;
    buf_puts(&text, "{\n  \"url\": ");
    buf_put_json_string(&text, url);
    buf_puts(&text, ",\n  \"accessToken\": ");
    buf_put_json_string(&text, token);
    buf_puts(&text, "\n}");
    free(token);
    cJSON *wire = text.oom ? NULL : dh_wire_string(buf_str(&text));
    buf_free(&text);
    if (!wire) snprintf(err, errlen, "out of memory");
    return wire;
bind_fail:
    free(hub);
    free(user);
    snprintf(err, errlen, "Exception binding parameter '%s'. %s", b->name, why);
    return NULL;
}

/* ---- delivery ------------------------------------------------------------------------- */

typedef struct {
    buf_t                body;
    const volatile int  *stop;
} xfer_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    xfer_t *x = arg;
    size_t len = size * n;
    if (x->body.len < 2048) buf_append(&x->body, p, len < 2048 - x->body.len ? len : 2048 - x->body.len);
    return len;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a; (void)b; (void)c; (void)d;
    xfer_t *x = arg;
    return x->stop && *x->stop; /* non-zero aborts the transfer */
}

/* One REST call. Returns 0 on 2xx, else -1 with err. */
static int rest_call(dh_sr_bindings_t *c, const sr_conn_t *cn, const char *method, const char *path,
                     const char *body, const volatile int *stop, char *err, size_t errlen)
{
    char url[2400], aud[2400];
    if (sr_rest_url(cn, path, url, sizeof url) != 0 || sr_rest_audience(cn, path, aud, sizeof aud) != 0) {
        snprintf(err, errlen, "the REST URL is too long");
        return -1;
    }
    char *token = sr_token_mint(cn->access_key, strlen(cn->access_key), aud, time(NULL) + TOKEN_LIFETIME_S, NULL);
    if (!token) { snprintf(err, errlen, "out of memory"); return -1; }
    buf_t auth = BUF_INIT;
    buf_printf(&auth, "Authorization: Bearer %s", token);
    free(token);
    CURL *h = dh_curl_acquire(c->curl);
    struct curl_slist *hdrs = NULL, *t;
    if ((t = curl_slist_append(hdrs, buf_str(&auth)))) hdrs = t;
    if ((t = curl_slist_append(hdrs, "Content-Type: application/json"))) hdrs = t;
    if ((t = curl_slist_append(hdrs, "Expect:"))) hdrs = t;
    buf_free(&auth);
    if (!h || auth.oom) {
        curl_slist_free_all(hdrs);
        dh_curl_release(c->curl, h, 0);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    xfer_t x = {BUF_INIT, stop};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)DH_SR_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)DH_SR_REQUEST_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    dh_curl_release(c->curl, h, rc == CURLE_OK);
    int ret = 0;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s %.300s failed: %s", method, url,
                 rc == CURLE_ABORTED_BY_CALLBACK ? "devhost is stopping" : curl_easy_strerror(rc));
        ret = -1;
    } else if (status < 200 || status > 299) {
        char ex[200];
        size_t n = 0;
        for (const char *p = buf_str(&x.body); *p && n + 1 < sizeof ex; p++)
            ex[n++] = ((unsigned char)*p >= 0x20 && *p != 0x7f) ? *p : ' ';
        ex[n] = '\0';
        snprintf(err, errlen, "%s %.300s: the SignalR Service answered %ld%s%s", method, url, status, n ? ": " : "", ex);
        ret = -1;
    }
    buf_free(&x.body);
    return ret;
}

/* .NET's Convert.FromBase64String accepts s (whitespace ignored)? The host tries it on every
 * string output before anything else. */
static int dotnet_base64(const char *s)
{
    size_t n = 0, pad = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') continue;
        if (*p == '=') { pad++; n++; continue; }
        if (pad || !(isalnum((unsigned char)*p) || *p == '+' || *p == '/')) return 0;
        n++;
    }
    return n % 4 == 0 && pad <= 2;
}

static const char *str_member(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) && *v->valuestring ? v->valuestring : NULL;
}

/* Deliver one message object. */
static int deliver_one(dh_sr_bindings_t *c, const sr_conn_t *cn, const char *hub, const cJSON *m,
                       const volatile int *stop, char *err, size_t errlen)
{
    if (!cJSON_IsObject(m)) {
        snprintf(err, errlen, "Unable to convert %s to valid output binding type, check parameters.",
                 cJSON_IsArray(m) ? "JArray" : "JValue");
        return -1;
    }
    const char *conn = str_member(m, "connectionId"), *user = str_member(m, "userId");
    const char *group = str_member(m, "groupName");
    const cJSON *target = cJSON_GetObjectItem(m, "target");
    buf_t path = BUF_INIT;
    buf_puts(&path, "/api/hubs/");
    char lhub[256];
    size_t hl = strlen(hub);
    for (size_t i = 0; i <= hl && i < sizeof lhub; i++) lhub[i] = (char)tolower((unsigned char)hub[i]);
    lhub[sizeof lhub - 1] = '\0';
    sr_put_path_segment(&path, lhub);
    int rc;
    if (target) {
        const cJSON *args = cJSON_GetObjectItem(m, "arguments");
        if (!cJSON_IsString(target) || !*target->valuestring) {
            snprintf(err, errlen, "a SignalR message needs \"target\", a non-empty string");
            buf_free(&path);
            return -1;
        }
        if (!cJSON_IsArray(args)) {
            snprintf(err, errlen, "Required property 'arguments' not found in JSON (it must be an array)");
            buf_free(&path);
            return -1;
        }
        if (conn) { buf_puts(&path, "/connections/"); sr_put_path_segment(&path, conn); }
        else if (user) { buf_puts(&path, "/users/"); sr_put_path_segment(&path, user); }
        else if (group) { buf_puts(&path, "/groups/"); sr_put_path_segment(&path, group); }
        buf_puts(&path, "/:send?api-version=2022-06-01");
        cJSON *body = cJSON_CreateObject();
        cJSON *acopy = cJSON_Duplicate(args, 1);
        char *text = NULL;
        if (body && acopy && cJSON_AddStringToObject(body, "target", target->valuestring) &&
            cJSON_AddItemToObject(body, "arguments", acopy)) {
            acopy = NULL;
            text = cJSON_PrintUnformatted(body);
        }
        cJSON_Delete(acopy);
        cJSON_Delete(body);
        if (!text || path.oom) {
            free(text);
            buf_free(&path);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        rc = rest_call(c, cn, "POST", buf_str(&path), text, stop, err, errlen);
        free(text);
    } else {
        const char *action = str_member(m, "action");
        if (!action || !group || (!user && !conn)) {
            snprintf(err, errlen, "Unable to convert JObject to valid output binding type, check parameters. (a "
                     "message needs \"target\" and \"arguments\"; a group action needs \"action\", \"groupName\" and "
                     "\"userId\" or \"connectionId\")");
            buf_free(&path);
            return -1;
        }
        const char *method;
        if (strcasecmp(action, "add") == 0) method = "PUT";
        else if (strcasecmp(action, "remove") == 0 || strcasecmp(action, "removeAll") == 0) method = "DELETE";
        else {
            snprintf(err, errlen, "group action '%.20s' is unknown: use add, remove or removeAll", action);
            buf_free(&path);
            return -1;
        }
        if (strcasecmp(action, "removeAll") == 0) {
            buf_puts(&path, conn ? "/connections/" : "/users/");
            sr_put_path_segment(&path, conn ? conn : user);
            buf_puts(&path, "/groups");
        } else if (conn) {
            buf_puts(&path, "/groups/");
            sr_put_path_segment(&path, group);
            buf_puts(&path, "/connections/");
            sr_put_path_segment(&path, conn);
        } else {
            buf_puts(&path, "/users/");
            sr_put_path_segment(&path, user);
            buf_puts(&path, "/groups/");
            sr_put_path_segment(&path, group);
        }
        buf_puts(&path, "?api-version=2022-06-01");
        rc = path.oom ? -1 : rest_call(c, cn, method, buf_str(&path), NULL, stop, err, errlen);
    }
    buf_free(&path);
    return rc;
}

int dh_sr_deliver(dh_sr_bindings_t *c, const dh_binding_t *b, const cJSON *value, const cJSON *metadata,
                  const volatile int *stop, char *err, size_t errlen)
{
    if (!value || cJSON_IsNull(value)) return 0;
    const struct dh_sr_target *t = b->signalr;
    cJSON *parsed = NULL;
    if (cJSON_IsString(value)) {
        if (dotnet_base64(value->valuestring)) {
            snprintf(err, errlen, "output '%s' is a string the host reads as base64 (it decodes such strings to "
                     "bytes before converting them); send the messages as a JSON object or array", b->name);
            atomic_fetch_add(&c->failed, 1);
            return -1;
        }
        parsed = cJSON_Parse(value->valuestring);
        if (!parsed) {
            snprintf(err, errlen, "output '%s' is a string that is not JSON", b->name);
            atomic_fetch_add(&c->failed, 1);
            return -1;
        }
        value = parsed;
    }
    char why[1200];
    char *hub = resolve_hub(t, metadata, why, sizeof why);
    if (!hub) {
        snprintf(err, errlen, "output '%s': %s", b->name, why);
        cJSON_Delete(parsed);
        atomic_fetch_add(&c->failed, 1);
        return -1;
    }
    int count = 0, rc = 0;
    if (cJSON_IsArray(value)) {
        const cJSON *m;
        int i = 0;
        cJSON_ArrayForEach(m, value) {
            cJSON *inner = cJSON_IsString(m) ? cJSON_Parse(m->valuestring) : NULL;
            if (deliver_one(c, &t->ce->conn, hub, inner ? inner : m, stop, why, sizeof why) != 0) {
                snprintf(err, errlen, "output '%s', message %d: %s", b->name, i, why);
                cJSON_Delete(inner);
                rc = -1;
                break;
            }
            cJSON_Delete(inner);
            count++;
            i++;
        }
    } else if (deliver_one(c, &t->ce->conn, hub, value, stop, why, sizeof why) != 0) {
        snprintf(err, errlen, "output '%s': %s", b->name, why);
        rc = -1;
    } else {
        count = 1;
    }
    free(hub);
    cJSON_Delete(parsed);
    atomic_fetch_add(&c->delivered, (unsigned long long)count);
    if (rc != 0) {
        atomic_fetch_add(&c->failed, 1);
        return -1;
    }
    return count;
}

void dh_sr_stats(const dh_sr_bindings_t *c, unsigned long long *delivered, unsigned long long *failed)
{
    *delivered = atomic_load(&((dh_sr_bindings_t *)c)->delivered);
    *failed = atomic_load(&((dh_sr_bindings_t *)c)->failed);
}
