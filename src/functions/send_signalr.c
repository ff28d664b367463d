/* send_signalr.c — the SendSignalr function (route SendSignalrMessage, the original app's
 * URL): lets an operator push an arbitrary JSON message to dashboards.
 *
 * Owns the validation of the request (body present, JSON object or array, at most 1 MiB —
 * the SignalR Service's message limit — and at most one of ?userId= / ?group=) and turns a
 * valid body into one newMessage on the signalRMessages output. Stateless, thread-safe. */
#include "functions/functions.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TARGET_NAME_MAX 1024  /* SignalR group names are 1..1024 characters */

static int only_blanks(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

int send_signalr_run(invocation_t *inv, app_t *app)
{
    (void)app;
    char *scratch = NULL;
    cJSON *msg = NULL;
    int rc;
    const cJSON *req = inv_data(inv, "req");
    if (!cJSON_IsObject(req)) {
        rc = inv_http_error(inv, "res", 400, "no HTTP request in the invocation (Data.req is missing)");
        goto done;
    }
    const char *method = http_req_method(req);
    if (*method && strcasecmp(method, "POST") != 0) {
        rc = inv_http_error(inv, "res", 405, "use POST with a JSON body (got %.16s)", method);
        goto done;
    }
    const char *user = http_req_query(req, "userId");
    const char *group = http_req_query(req, "group");
    if ((user && !*user) || (group && !*group)) {
        rc = inv_http_error(inv, "res", 400, "?%s= must not be empty", user && !*user ? "userId" : "group");
        goto done;
    }
    if (user && group) {
        rc = inv_http_error(inv, "res", 400, "give either ?userId= or ?group=, not both");
        goto done;
    }
    if ((user && strlen(user) > TARGET_NAME_MAX) || (group && strlen(group) > TARGET_NAME_MAX)) {
        rc = inv_http_error(inv, "res", 400, "?%s= is longer than %d characters", user ? "userId" : "group",
                            TARGET_NAME_MAX);
        goto done;
    }

    const char *body = http_req_body(req, &scratch);
    if (!body || only_blanks(body)) {
        rc = inv_http_error(inv, "res", 400, "empty body: send a JSON object or array to broadcast");
        goto done;
    }
    size_t len = strlen(body);
    if (len > FN_SEND_MAX_BODY) {
        rc = inv_http_error(inv, "res", 413, "body is %zu bytes; the limit is %u bytes (1 MiB)", len,
                            FN_SEND_MAX_BODY);
        goto done;
    }
    const char *end = NULL;
    msg = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (msg && end) {
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
        if (*end) { cJSON_Delete(msg); msg = NULL; }
    }
    if (!msg) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        rc = inv_http_error(inv, "res", 400, "body is not valid JSON (error near byte %zu)", at);
        goto done;
    }
    if (!cJSON_IsObject(msg) && !cJSON_IsArray(msg)) {
        rc = inv_http_error(inv, "res", 400, "body must be a JSON object or array, not a bare value");
        goto done;
    }
    /* The message is handed over to the output (consumed even on failure). */
    cJSON *arg = msg;
    msg = NULL;
    if (inv_signalr_message(inv, "signalRMessages", FN_SIGNALR_TARGET, arg, user, group) != 0) goto oom;
    cJSON *ok = cJSON_CreateObject();
    if (!ok || !cJSON_AddStringToObject(ok, "target", FN_SIGNALR_TARGET) ||
        !cJSON_AddStringToObject(ok, "sentTo", user ? "user" : group ? "group" : "all") ||
        (user && !cJSON_AddStringToObject(ok, "userId", user)) ||
        (group && !cJSON_AddStringToObject(ok, "group", group))) {
        cJSON_Delete(ok);
        goto oom;
    }
    log_info(&inv->log, "queued %s to %s (%zu bytes)", FN_SIGNALR_TARGET,
             user ? "one user" : group ? "one group" : "all clients", len);
    rc = inv_http_json(inv, "res", 202, ok);
    cJSON_Delete(ok);
done:
    cJSON_Delete(msg);
    free(scratch);
    if (rc != 0) {
        inv_fail(inv, 500, "SendSignalr: out of memory");
        return -1;
    }
    return 0;
oom:
    cJSON_Delete(msg);
    free(scratch);
    inv_fail(inv, 500, "SendSignalr: out of memory");
    return -1;
}
