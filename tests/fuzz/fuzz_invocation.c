/* fuzz_invocation.c — the custom-handler invocation envelope: the request body the Functions
 * host POSTs ({"Data":{...},"Metadata":{...}}, values possibly JSON-encoded in strings, twice),
 * json_unwrap (protocol/invocation.c), and the HTTP functions that answer from it without
 * storage: Negotiate and SendSignalr (functions/negotiate.c, send_signalr.c).
 *
 * The body is parsed as server.c does (cJSON_ParseWithLengthOpts, nothing but whitespace after
 * the value) and handed to inv_init; then every accessor a function uses runs on it (Data and
 * Metadata members, the HTTP trigger's method, query, headers and body), a function's outputs
 * are added and the response and failure bodies rendered; then the same body is run through
 * Negotiate and SendSignalr with the local SignalR Service's connection string.
 *
 * Invariants: inv_init succeeds exactly for an object whose Data and Metadata are absent, null
 * or objects (possibly JSON-encoded in strings) and then yields objects; both rendered bodies
 * are JSON objects with the members the host reads; unwrapping the printed text of any value,
 * once or twice encoded, gives that value back (the host's double encoding is undone
 * exactly), and unwrapping a value that is not a string copies it unchanged; each function
 * answers (never fails the invocation) with Outputs.res holding a status it documents and a
 * JSON body — {"url","accessToken"} with a token that verifies, a 202 with exactly one
 * newMessage carrying the request body, or {"error"} — and neither the response nor its logs
 * contain the access key (unless the input itself holds it). */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <time.h>

#include "azure/signalr_token.h"
#include "functions/functions.h"
#include "protocol/invocation.h"
#include "util/log.h"

#define SR_KEY "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
#define SR_CONN "Endpoint=http://localhost;Port=8888;AccessKey=" SR_KEY ";Version=1.0;"

static app_t g_app;
static sr_conn_t g_sr;
static char g_url[256], g_aud[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    char err[256];
    if (sr_conn_parse(SR_CONN, &g_sr, err, sizeof err) != 0 ||
        sr_client_url(&g_sr, "Enviromon", g_url, sizeof g_url) != 0 ||
        sr_client_audience(&g_sr, "Enviromon", g_aud, sizeof g_aud) != 0)
        abort();
    g_app.signalr = &g_sr;
    g_app.signalr_client_url = g_url;
    g_app.signalr_client_aud = g_aud;
    snprintf(g_app.tables_error, sizeof g_app.tables_error, "no storage in the fuzz target");
    return 0;
}

/* Printed compactly (NULL when out of memory). */
static char *print(const cJSON *v)
{
    return cJSON_PrintUnformatted(v);
}

/* unwrap(encode^times(v)) prints as v does, for a v that is not itself a string (a string is
 * unwrapped as deep as it goes, so only its innermost value comes back). */
static void check_unwrap_round_trip(const cJSON *v, int times)
{
    if (cJSON_IsString(v)) return;
    char *want = print(v);
    if (!want) return;
    cJSON *cur = cJSON_Duplicate(v, 1);
    for (int i = 0; cur && i < times; i++) {
        char *text = print(cur);
        cJSON_Delete(cur);
        cur = text ? cJSON_CreateString(text) : NULL;
        free(text);
    }
    if (cur) {
        cJSON *u = json_unwrap(cur);
        char *got = u ? print(u) : NULL;
        FUZZ_CHECK(!u || !got || strcmp(got, want) == 0, "unwrap of %d-fold encoding: got %s, want %s", times, got, want);
        free(got);
        cJSON_Delete(u);
    }
    cJSON_Delete(cur);
    free(want);
}

/* A member that is not a string is copied unchanged by unwrapping. */
static void check_unwrap_value(const cJSON *v)
{
    cJSON *u = json_unwrap(v);
    if (!u) return;
    if (!cJSON_IsString(v)) {
        /* compared as printed: cJSON_Compare never finds 1e999 (infinity) equal to itself */
        char *a = print(u), *b = print(v);
        FUZZ_CHECK(!a || !b || strcmp(a, b) == 0, "unwrap changed a non-string value: %.200s -> %.200s", b, a);
        free(a);
        free(b);
    }
    cJSON_Delete(u);
}

static int is_object_or_absent(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsObject(v)) return 1;
    if (!cJSON_IsString(v)) return 0;
    cJSON *u = json_unwrap(v);
    int ok = u && (cJSON_IsObject(u) || cJSON_IsNull(u));
    cJSON_Delete(u);
    return ok;
}

static void exercise_http_request(invocation_t *inv, const char *name)
{
    const cJSON *req = inv_data(inv, name);
    if (!cJSON_IsObject(req)) return;
    const char *m = http_req_method(req);
    FUZZ_CHECK(m != NULL, "http_req_method returned NULL");
    (void)http_req_query(req, "deviceId");
    (void)http_req_query(req, "broadcast");
    (void)http_req_header(req, "x-ms-client-principal-id");
    (void)http_req_header(req, "Content-Type");
    char *scratch = NULL;
    const char *body = http_req_body(req, &scratch);
    (void)body;
    free(scratch);
}

static void check_rendered(char *text, const char *const *members, size_t n)
{
    if (!text) return;   /* out of memory */
    cJSON *j = cJSON_Parse(text);
    FUZZ_CHECK(cJSON_IsObject(j), "rendered body is not a JSON object: %.200s", text);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(j, members[i]) != NULL, "rendered body lacks %s", members[i]);
    cJSON_Delete(j);
    free(text);
}

/* Run an HTTP function on a fresh invocation of the request and check its answer. */
static void run_http_function(const cJSON *request, const char *name, function_fn fn, int key_in_input)
{
    invocation_t inv;
    char err[256];
    if (inv_init(&inv, name, "fuzz", cJSON_Duplicate(request, 1), err, sizeof err) != 0) {
        inv_free(&inv);
        return;
    }
    /* the body the function will see, for SendSignalr's echo */
    const cJSON *req = inv_data(&inv, "req");
    char *scratch = NULL;
    const char *sent = cJSON_IsObject(req) ? http_req_body(req, &scratch) : NULL;
    cJSON *sent_json = sent ? cJSON_Parse(sent) : NULL;
    free(scratch);

    int rc = fn(&inv, &g_app);
    FUZZ_CHECK(rc == 0, "%s failed the invocation: %s", name, inv.fail_message);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(inv.outputs, "res");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(res, "statusCode");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(res, "body");
    FUZZ_CHECK(cJSON_IsNumber(status) && cJSON_IsString(body), "%s: no res with statusCode and body", name);
    int st = status->valueint;
    cJSON *b = cJSON_Parse(body->valuestring);
    FUZZ_CHECK(cJSON_IsObject(b), "%s: %d with a body that is not a JSON object", name, st);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(inv.outputs, "signalRMessages");
    if (st == 200 && fn == negotiate_run) {
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(b, "url");
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(b, "accessToken");
        FUZZ_CHECK(cJSON_IsString(url) && cJSON_IsString(tok), "negotiate: 200 without url and accessToken");
        /* a token we minted (not one the binding supplied) verifies for the client audience */
        if (strcmp(url->valuestring, g_url) == 0 && strncmp(tok->valuestring, "eyJ", 3) == 0)
            FUZZ_CHECK(sr_token_verify(tok->valuestring, SR_KEY, strlen(SR_KEY), g_aud, time(NULL), NULL) == SR_TOKEN_OK ||
                           !cJSON_GetObjectItem(inv.data, "req") || cJSON_GetObjectItem(inv.data, "connectionInfo"),
                       "negotiate: minted token does not verify");
    } else if (st == 202 && fn == send_signalr_run) {
        FUZZ_CHECK(cJSON_IsArray(msgs) && cJSON_GetArraySize(msgs) == 1, "send: 202 without exactly one message");
        const cJSON *m = cJSON_GetArrayItem(msgs, 0);
        const cJSON *target = cJSON_GetObjectItemCaseSensitive(m, "target");
        const cJSON *arg = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "arguments"), 0);
        FUZZ_CHECK(cJSON_IsString(target) && strcmp(target->valuestring, FN_SIGNALR_TARGET) == 0, "send: target");
        FUZZ_CHECK(sent_json && arg && cJSON_Compare(arg, sent_json, 1), "send: the message is not the request body");
    } else {
        FUZZ_CHECK(st == 400 || st == 405 || st == 413 || st == 500, "%s answered %d", name, st);
        FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(b, "error")), "%s: %d without an error", name, st);
        FUZZ_CHECK(!msgs, "%s: a message sent with an error", name);
    }
    cJSON_Delete(b);
    cJSON_Delete(sent_json);
    char *out = inv_render_response(&inv);
    FUZZ_CHECK(!out || !strstr(out, SR_KEY) || key_in_input, "%s: the access key is in the response or its logs", name);
    free(out);
    inv_free(&inv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* (an input holding the key may have it echoed back, legitimately) */
    int key_in_input = fuzz_contains(data, size, SR_KEY, strlen(SR_KEY));
    char *body = (char *)fuzz_memdup(data, size);
    const char *end = NULL;
    cJSON *req = cJSON_ParseWithLengthOpts(body, size, &end, 0);
    if (!req) { free(body); return 0; }
    for (const char *p = end; p && p < body + size; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') { cJSON_Delete(req); free(body); return 0; }
    free(body);

    /* unwrap round trips on the parsed value and its first members */
    check_unwrap_round_trip(req, 1);
    check_unwrap_round_trip(req, 2);
    const cJSON *child;
    int k = 0;
    cJSON_ArrayForEach(child, req) {
        if (k++ == 8) break;
        check_unwrap_value(child);
        check_unwrap_round_trip(child, 1);
    }

    int expect_ok = cJSON_IsObject(req) &&
                    is_object_or_absent(cJSON_GetObjectItem(req, "Data")) &&
                    is_object_or_absent(cJSON_GetObjectItem(req, "Metadata"));
    invocation_t inv;
    char err[256] = "";
    int rc = inv_init(&inv, "FuzzFunction", "fuzz-invocation", req, err, sizeof err);
    FUZZ_CHECK((rc == 0) == expect_ok, "inv_init returned %d for an envelope that is%s acceptable (%s)", rc,
               expect_ok ? "" : " not", err);
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0', "inv_init failed without a message");
        inv_free(&inv);
        return 0;
    }
    FUZZ_CHECK(cJSON_IsObject(inv.data) && cJSON_IsObject(inv.metadata), "Data/Metadata are not objects");
    run_http_function(inv.request, "Negotiate", negotiate_run, key_in_input);
    run_http_function(inv.request, "SendSignalr", send_signalr_run, key_in_input);

    /* what the functions read */
    exercise_http_request(&inv, "req");
    const cJSON *ci = inv_data(&inv, "connectionInfo");
    (void)ci;
    const char *const names[] = {"events", "PartitionContext", "SystemPropertiesArray", "SequenceNumberArray",
                                 "EnqueuedTimeUtcArray", "PropertiesArray", "RetryContext", "sys"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        (void)inv_data(&inv, names[i]);
        (void)inv_metadata(&inv, names[i]);
    }
    /* every Data member, as a function would take it (names first: inv_data replaces the
     * member it unwraps, so it must not run inside a walk over the members) */
    char *member[16];
    size_t nm = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, inv.data) {
        if (nm == 16) break;
        if (m->string) member[nm++] = fuzz_strndup((const uint8_t *)m->string, strlen(m->string));
    }
    for (size_t i = 0; i < nm; i++) {
        (void)inv_data(&inv, member[i]);
        free(member[i]);
    }

    /* outputs, then both rendered bodies */
    inv_http_response(&inv, "res", 200, "application/json", "{}");
    inv_signalr_message(&inv, "signalRMessages", "newMessage", cJSON_Duplicate(inv.data, 1), NULL, NULL);
    /* as inv_fail leaves it, without its line on stderr for every input */
    inv.fail_status = 500;
    snprintf(inv.fail_message, sizeof inv.fail_message, "fuzz failure");
    static const char *const ok_members[] = {"Outputs", "Logs", "ReturnValue"};
    static const char *const fail_members[] = {"error", "function", "Logs"};
    check_rendered(inv_render_failure(&inv), fail_members, 3);
    check_rendered(inv_render_response(&inv), ok_members, 3);
    inv_free(&inv);
    return 0;
}
