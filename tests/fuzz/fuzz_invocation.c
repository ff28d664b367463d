/* fuzz_invocation.c — the custom-handler invocation envelope: the request body the Functions
 * host POSTs ({"Data":{...},"Metadata":{...}}, values possibly JSON-encoded in strings, twice)
 * and json_unwrap (protocol/invocation.c).
 *
 * The body is parsed as server.c does (cJSON_ParseWithLengthOpts, nothing but whitespace after
 * the value) and handed to inv_init; then every accessor a function uses runs on it (Data and
 * Metadata members, the HTTP trigger's method, query, headers and body), a function's outputs
 * are added and the response and failure bodies rendered.
 *
 * Invariants: inv_init succeeds exactly for an object whose Data and Metadata are absent, null
 * or objects (possibly JSON-encoded in strings) and then yields objects; both rendered bodies
 * are JSON objects with the members the host reads; unwrapping the printed text of any value,
 * once or twice encoded, gives that value back (the host's double encoding is undone
 * exactly), and unwrapping a value that is not a string copies it unchanged. */
#include "fuzz.h"

#include <cjson/cJSON.h>

#include "protocol/invocation.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
