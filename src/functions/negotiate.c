/* negotiate.c — the Negotiate function: where the dashboard's SignalR client learns which
 * SignalR Service URL to use and with which access token.
 *
 * Owns the choice between the host's signalRConnectionInfo binding value (preferred: in
 * Azure the extension mints it) and minting locally from AzureSignalRConnectionString (when
 * the host did not supply one, e.g. devhost or an older bundle), and the camelCase
 * {"url","accessToken"} reply the client insists on. Stateless, hence thread-safe. */
#include "functions/functions.h"

#include "azure/signalr_token.h"
#include "util/buf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define USER_ID_MAX 256  /* longest x-ms-client-principal-id accepted, bytes */

/* Answer {"url":url,"accessToken":token} with 200. Returns 0, or -1 when out of memory. */
static int reply_info(invocation_t *inv, const char *url, const char *token)
{
    buf_t body = BUF_INIT;
    buf_puts(&body, "{\"url\":");
    buf_put_json_string(&body, url);
    buf_puts(&body, ",\"accessToken\":");
    buf_put_json_string(&body, token);
    buf_putc(&body, '}');
    int rc = body.oom ? -1 : inv_http_response(inv, "res", 200, "application/json", body.data);
    buf_free(&body);
    return rc;
}

static const char *nonempty_string(const cJSON *o, const char *key)
{
    /* cJSON_GetObjectItem is case-insensitive: url/Url, accessToken/AccessToken. */
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return (cJSON_IsString(v) && v->valuestring[0]) ? v->valuestring : NULL;
}

int negotiate_run(invocation_t *inv, app_t *app)
{
    const cJSON *ci = inv_data(inv, "connectionInfo");
    if (ci && !cJSON_IsNull(ci)) {
        const char *url = cJSON_IsObject(ci) ? nonempty_string(ci, "url") : NULL;
        const char *tok = cJSON_IsObject(ci) ? nonempty_string(ci, "accessToken") : NULL;
        if (url && tok) {
            if (reply_info(inv, url, tok) != 0) goto oom;
            return 0;
        }
        log_warn(&inv->log, "the connectionInfo binding value has no url/accessToken; "
                            "minting from AzureSignalRConnectionString instead");
    }

    if (!app->signalr) {
        /* the detail quotes configuration (the endpoint): for the log, not the caller */
        if (!app->cfg.signalr_connection || !*app->cfg.signalr_connection)
            log_error(&inv->log, "SignalR is not configured: no signalRConnectionInfo binding value arrived and the "
                      "AzureSignalRConnectionString setting is not set");
        else
            log_error(&inv->log, "%s", app->signalr_error);   /* never contains the key (signalr_token.h) */
        if (inv_http_error(inv, "res", 500, "negotiation is unavailable: the function app's SignalR configuration is "
                           "missing or invalid (invocation %s)", inv->invocation_id) != 0)
            goto oom;
        return 0;
    }
    const sr_conn_t *c = app->signalr;

    const cJSON *req = inv_data(inv, "req");
    const char *user = cJSON_IsObject(req) ? http_req_header(req, "x-ms-client-principal-id") : NULL;
    if (user && !*user) user = NULL;
    if (user && strlen(user) > USER_ID_MAX) {
        if (inv_http_error(inv, "res", 400, "x-ms-client-principal-id is longer than %d bytes", USER_ID_MAX) != 0)
            goto oom;
        return 0;
    }

    char *token = sr_token_mint(c->access_key, strlen(c->access_key), app->signalr_client_aud,
                                time(NULL) + FN_TOKEN_LIFETIME_S, user);
    if (!token) goto oom;
    int rc = reply_info(inv, app->signalr_client_url, token);
    free(token);
    if (rc != 0) goto oom;
    return 0;
oom:
    inv_fail(inv, 500, "Negotiate: out of memory");
    return -1;
}
