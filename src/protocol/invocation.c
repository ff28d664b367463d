/* invocation.c — the custom-handler request/response envelope (see invocation.h).
 *
 * Everything here is about the shape the Functions host speaks: double-encoded values in
 * Data/Metadata, the HTTP trigger's request object, the `res` and `signalR` output
 * bindings, and the {"Outputs","Logs","ReturnValue"} response that must never be empty. */
#include "protocol/invocation.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A string nested deeper than this is left as it is: no real host double-encodes more than
 * twice, and the bound keeps hostile input from costing more than a few parses. */
#define UNWRAP_MAX_DEPTH 8

cJSON *json_unwrap(const cJSON *v)
{
    if (!v) return NULL;
    cJSON *cur = cJSON_Duplicate(v, 1);
    for (int depth = 0; cur && cJSON_IsString(cur) && depth < UNWRAP_MAX_DEPTH; depth++) {
        const char *s = cur->valuestring;
        /* Skip the parse for text that cannot be JSON: the common case of a plain string. */
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
        if (!(*s == '{' || *s == '[' || *s == '"' || *s == '-' || (*s >= '0' && *s <= '9') ||
              strcmp(s, "true") == 0 || strcmp(s, "false") == 0 || strcmp(s, "null") == 0))
            break;
        cJSON *inner = cJSON_ParseWithOpts(cur->valuestring, NULL, 1); /* whole string only */
        if (!inner) break;
        cJSON_Delete(cur);
        cur = inner;
    }
    return cur;
}

static cJSON *unwrap_member(cJSON *parent, const char *name)
{
    if (!parent || !cJSON_IsObject(parent)) return NULL;
    cJSON *item = cJSON_GetObjectItem(parent, name); /* case-insensitive, like Newtonsoft */
    if (!item) return NULL;
    if (!cJSON_IsString(item)) return item;
    cJSON *u = json_unwrap(item);
    if (!u) return item;
    /* Nothing to unwrap: json_unwrap returned a plain copy, which still carries the key
     * (overwriting that key below would leak it). Keep the original. */
    if (u->string) { cJSON_Delete(u); return item; }
    /* ReplaceItemViaPointer does not carry the key over: the new item needs its own name. */
    u->string = item->string ? strdup(item->string) : NULL;
    u->type &= ~cJSON_StringIsConst;
    if ((item->string && !u->string) || !cJSON_ReplaceItemViaPointer(parent, item, u)) {
        cJSON_Delete(u);
        return item;
    }
    return u;
}

cJSON *inv_data(invocation_t *inv, const char *name) { return unwrap_member(inv->data, name); }

cJSON *inv_metadata(invocation_t *inv, const char *name) { return unwrap_member(inv->metadata, name); }

void inv_fail(invocation_t *inv, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(inv->fail_message, sizeof inv->fail_message, fmt, ap);
    va_end(ap);
    inv->fail_status = (status >= 400 && status <= 599) ? status : 500;
    log_error(&inv->log, "invocation failed (%d): %s", inv->fail_status, inv->fail_message);
}

/* ---- HTTP trigger request ---- */

static const char *string_of(const cJSON *v)
{
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsArray(v)) {
        const cJSON *first = cJSON_GetArrayItem(v, 0);
        if (cJSON_IsString(first)) return first->valuestring;
    }
    return NULL;
}

const char *http_req_method(const cJSON *req)
{
    const char *m = string_of(cJSON_GetObjectItem(req, "Method"));
    return m ? m : "";
}

/* Query and Identities used to be JSON-encoded strings; unwrap them in place on first use.
 * The cast is safe: the request tree is owned by the invocation, and unwrapping does not
 * change what the value means. */
static const cJSON *req_object_member(const cJSON *req, const char *name)
{
    cJSON *item = unwrap_member((cJSON *)req, name);
    return cJSON_IsObject(item) ? item : NULL;
}

const char *http_req_query(const cJSON *req, const char *name)
{
    const cJSON *q = req_object_member(req, "Query");
    const char *v = q ? string_of(cJSON_GetObjectItem(q, name)) : NULL;
    return v;
}

const char *http_req_header(const cJSON *req, const char *name)
{
    const cJSON *h = req_object_member(req, "Headers");
    return h ? string_of(cJSON_GetObjectItem(h, name)) : NULL;
}

const char *http_req_body(const cJSON *req, char **scratch)
{
    *scratch = NULL;
    const cJSON *b = cJSON_GetObjectItem(req, "Body");
    if (!b || cJSON_IsNull(b)) return NULL;
    if (cJSON_IsString(b)) return b->valuestring;
    *scratch = cJSON_PrintUnformatted(b);
    return *scratch;
}

/* ---- outputs ---- */

static int set_output(invocation_t *inv, const char *binding, cJSON *value)
{
    if (!value) return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(inv->outputs, binding);
    if (!cJSON_AddItemToObject(inv->outputs, binding, value)) {
        cJSON_Delete(value);
        return -1;
    }
    return 0;
}

int inv_http_response(invocation_t *inv, const char *binding, int status, const char *content_type,
                      const char *body)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *headers = cJSON_CreateObject();
    if (!res || !headers) { cJSON_Delete(res); cJSON_Delete(headers); return -1; }
    cJSON_AddItemToObject(res, "headers", headers);
    /* statusCode, never status: the host always has a StatusCode key, so status is ignored. */
    if (!cJSON_AddNumberToObject(res, "statusCode", status) ||
        (content_type && !cJSON_AddStringToObject(headers, "Content-Type", content_type)) ||
        !cJSON_AddStringToObject(res, "body", body ? body : "")) {
        cJSON_Delete(res);
        return -1;
    }
    return set_output(inv, binding, res);
}

int inv_http_json(invocation_t *inv, const char *binding, int status, const cJSON *body)
{
    char *text = cJSON_PrintUnformatted(body);
    if (!text) return -1;
    int rc = inv_http_response(inv, binding, status, "application/json", text);
    free(text);
    return rc;
}

int inv_http_error(invocation_t *inv, const char *binding, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *body = cJSON_CreateObject();
    if (!body || !cJSON_AddStringToObject(body, "error", msg)) { cJSON_Delete(body); return -1; }
    log_msg(&inv->log, status >= 500 ? LOG_ERROR : LOG_WARN, "HTTP %d: %s", status, msg);
    int rc = inv_http_json(inv, binding, status, body);
    cJSON_Delete(body);
    return rc;
}

int inv_signalr_message(invocation_t *inv, const char *binding, const char *target, cJSON *argument,
                        const char *user_id, const char *group)
{
    cJSON *list = cJSON_GetObjectItemCaseSensitive(inv->outputs, binding);
    if (!list) {
        list = cJSON_CreateArray();
        if (!list || !cJSON_AddItemToObject(inv->outputs, binding, list)) {
            cJSON_Delete(list);
            cJSON_Delete(argument);
            return -1;
        }
    }
    cJSON *msg = cJSON_CreateObject();
    cJSON *args = cJSON_CreateArray();
    if (!msg || !args) { cJSON_Delete(msg); cJSON_Delete(args); cJSON_Delete(argument); return -1; }
    cJSON_AddItemToObject(msg, "target", cJSON_CreateString(target));
    cJSON_AddItemToArray(args, argument ? argument : cJSON_CreateNull());
    cJSON_AddItemToObject(msg, "arguments", args);
    if (user_id) cJSON_AddStringToObject(msg, "userId", user_id);
    if (group) cJSON_AddStringToObject(msg, "groupName", group);
    cJSON_AddItemToArray(list, msg);
    return 0;
}

/* ---- server side ---- */

int inv_init(invocation_t *inv, const char *function, const char *invocation_id, cJSON *request,
             char *err, size_t errlen)
{
    memset(inv, 0, sizeof *inv);
    inv->function = function;
    inv->invocation_id = invocation_id ? invocation_id : "";
    inv->request = request;
    inv->fail_status = 500;
    if (log_ctx_init(&inv->log, function, inv->invocation_id) != 0) {
        snprintf(err, errlen, "out of memory");
        inv->request = NULL;
        cJSON_Delete(request);
        return -1;
    }
    inv->outputs = cJSON_CreateObject();
    if (!inv->outputs) { snprintf(err, errlen, "out of memory"); return -1; }
    if (!cJSON_IsObject(request)) {
        snprintf(err, errlen, "the request body must be a JSON object {\"Data\":{...},\"Metadata\":{...}}, "
                              "not a JSON %s", cJSON_IsArray(request) ? "array" :
                              cJSON_IsString(request) ? "string" : cJSON_IsNumber(request) ? "number" :
                              "scalar");
        return -1;
    }
    const char *const keys[] = {"Data", "Metadata"};
    cJSON **slots[] = {&inv->data, &inv->metadata};
    for (int i = 0; i < 2; i++) {
        cJSON *v = unwrap_member(request, keys[i]);
        if (!v || cJSON_IsNull(v)) {
            cJSON_DeleteItemFromObject(request, keys[i]);
            v = cJSON_CreateObject();
            if (!v || !cJSON_AddItemToObject(request, keys[i], v)) { cJSON_Delete(v); snprintf(err, errlen, "out of memory"); return -1; }
        }
        if (!cJSON_IsObject(v)) {
            snprintf(err, errlen, "\"%s\" must be a JSON object", keys[i]);
            return -1;
        }
        *slots[i] = v;
    }
    return 0;
}

char *inv_render_response(invocation_t *inv)
{
    cJSON *resp = cJSON_CreateObject();
    if (!resp) return NULL;
    cJSON_AddItemToObject(resp, "Outputs", inv->outputs ? inv->outputs : cJSON_CreateObject());
    inv->outputs = NULL;
    cJSON_AddItemToObject(resp, "Logs", log_ctx_take_lines(&inv->log));
    cJSON_AddItemToObject(resp, "ReturnValue", inv->return_value ? inv->return_value : cJSON_CreateNull());
    inv->return_value = NULL;
    char *text = cJSON_PrintUnformatted(resp);
    cJSON_Delete(resp);
    return text;
}

char *inv_render_failure(invocation_t *inv)
{
    cJSON *resp = cJSON_CreateObject();
    if (!resp) return NULL;
    cJSON_AddStringToObject(resp, "error", inv->fail_message[0] ? inv->fail_message : "function failed");
    cJSON_AddStringToObject(resp, "function", inv->function ? inv->function : "");
    cJSON_AddItemToObject(resp, "Logs", log_ctx_take_lines(&inv->log));
    char *text = cJSON_PrintUnformatted(resp);
    cJSON_Delete(resp);
    return text;
}

void inv_free(invocation_t *inv)
{
    cJSON_Delete(inv->request);
    cJSON_Delete(inv->outputs);
    cJSON_Delete(inv->return_value);
    if (inv->log.lines || inv->log.function) log_ctx_free(&inv->log);
    memset(inv, 0, sizeof *inv);
}
