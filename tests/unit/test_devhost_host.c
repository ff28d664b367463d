/* Unit tests for devhost start's pure parts: JSON files with positions, settings and %Setting%,
 * retry policies, route templates, binding expressions, the HTTP trigger's request and metadata
 * shapes and the `res` mapping, keys, and the dashboard folder's path checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devhost/host/binding_expr.h"
#include "devhost/host/common.h"
#include "devhost/host/http_trigger.h"
#include "devhost/host/json_file.h"
#include "devhost/host/keys.h"
#include "devhost/host/retry.h"
#include "devhost/host/route.h"
#include "devhost/host/settings.h"
#include "devhost/host/static_files.h"
#include "util/utf8.h"

static void test_json_errors(void **st)
{
    (void)st;
    char err[512];
    const char *text = "{\n  \"bindings\": [\n    { \"type\": \"http\" },\n  ]\n}\n";
    assert_null(dh_json_parse(text, strlen(text), "F/function.json", err, sizeof err));
    assert_non_null(strstr(err, "F/function.json: line 4, column 3"));
    assert_non_null(strstr(err, "trailing comma"));

    const char *missing_comma = "{\"a\": 1\n \"b\": 2}";
    assert_null(dh_json_parse(missing_comma, strlen(missing_comma), "x.json", err, sizeof err));
    assert_non_null(strstr(err, "line 2, column 2"));

    const char *truncated = "{\"a\": [1, 2";
    assert_null(dh_json_parse(truncated, strlen(truncated), "t.json", err, sizeof err));
    assert_non_null(strstr(err, "end of file"));

    const char *trailing = "{\"a\": 1} x";
    assert_null(dh_json_parse(trailing, strlen(trailing), "t.json", err, sizeof err));
    assert_non_null(strstr(err, "after the end"));

    assert_null(dh_json_parse("  \n", 3, "e.json", err, sizeof err));
    assert_non_null(strstr(err, "empty"));

    /* Comments (Newtonsoft accepts them) and a BOM are fine; positions stay the file's. */
    const char *commented = "\xEF\xBB\xBF// head\n{ /* c */ \"a\": \"//not a comment\", // tail\n \"b\": [1] }";
    cJSON *j = dh_json_parse(commented, strlen(commented), "c.json", err, sizeof err);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "a")->valuestring, "//not a comment");
    cJSON_Delete(j);
    const char *bad_after_comment = "/* x */\n{\"a\": tru}";
    assert_null(dh_json_parse(bad_after_comment, strlen(bad_after_comment), "c.json", err, sizeof err));
    assert_non_null(strstr(err, "line 2, column 7"));

    int missing = 0;
    assert_null(dh_json_load("/nonexistent/dir/host.json", "host.json", &missing, err, sizeof err));
    assert_int_equal(missing, 1);
    assert_non_null(strstr(err, "host.json: file not found"));
}

static void test_settings(void **st)
{
    (void)st;
    setenv("DH_TEST_FROM_ENV", "env-value", 1);
    unsetenv("DH_TEST_ONLY_VALUES");
    dh_settings_t *s = dh_settings_new();
    int over = -1;
    assert_int_equal(dh_settings_add(s, "DH_TEST_ONLY_VALUES", "values-value", &over), 0);
    assert_int_equal(over, 0);
    assert_int_equal(dh_settings_add(s, "DH_TEST_FROM_ENV", "ignored", &over), 0);
    assert_int_equal(over, 1);
    assert_string_equal(dh_settings_get(s, "DH_TEST_ONLY_VALUES"), "values-value");
    assert_string_equal(dh_settings_get(s, "dh_test_only_values"), "values-value"); /* case-insensitive */
    assert_string_equal(dh_settings_get(s, "DH_TEST_FROM_ENV"), "env-value");     /* the environment wins */
    assert_null(dh_settings_get(s, "DH_TEST_NOT_SET_ANYWHERE"));

    char err[300];
    char *x = dh_settings_expand(s, "%DH_TEST_ONLY_VALUES%/%DH_TEST_FROM_ENV%, 100% sure, %%", err, sizeof err);
    assert_non_null(x);
    assert_string_equal(x, "values-value/env-value, 100% sure, %%");
    free(x);
    assert_null(dh_settings_expand(s, "hub-%DH_TEST_NOT_SET_ANYWHERE%", err, sizeof err));
    assert_non_null(strstr(err, "'DH_TEST_NOT_SET_ANYWHERE'"));
    assert_non_null(strstr(err, "local.settings.json"));

    const char *extra[] = {"FUNCTIONS_CUSTOMHANDLER_PORT=1234", "DH_TEST_FROM_ENV=replaced", NULL};
    char **envp = dh_settings_environ(s, extra);
    int saw_values = 0, saw_port = 0, env_copies = 0;
    for (char **p = envp; *p; p++) {
        if (strcmp(*p, "DH_TEST_ONLY_VALUES=values-value") == 0) saw_values++;
        if (strcmp(*p, "FUNCTIONS_CUSTOMHANDLER_PORT=1234") == 0) saw_port++;
        if (strncmp(*p, "DH_TEST_FROM_ENV=", 17) == 0) { env_copies++; assert_string_equal(*p, "DH_TEST_FROM_ENV=replaced"); }
    }
    assert_int_equal(saw_values, 1);
    assert_int_equal(saw_port, 1);
    assert_int_equal(env_copies, 1);
    dh_settings_free_environ(envp);
    dh_settings_free(s);
    unsetenv("DH_TEST_FROM_ENV");
}

static cJSON *js(const char *t)
{
    cJSON *j = cJSON_Parse(t);
    assert_non_null(j);
    return j;
}

static void test_retry(void **st)
{
    (void)st;
    int64_t ms;
    assert_int_equal(dh_timespan_ms("00:00:10", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(dh_timespan_ms("00:00:00.80", &ms), 0);
    assert_int_equal(ms, 800);
    assert_int_equal(dh_timespan_ms("1.02:03:04.5", &ms), 0);
    assert_int_equal(ms, ((26LL * 60 + 3) * 60 + 4) * 1000 + 500);
    assert_int_equal(dh_timespan_ms("00:15", &ms), 0);
    assert_int_equal(ms, 15 * 60000);
    assert_int_equal(dh_timespan_ms("2", &ms), 0);
    assert_int_equal(ms, 2LL * 86400000);
    assert_int_equal(dh_timespan_ms("-00:00:01", &ms), -1);
    assert_int_equal(dh_timespan_ms("00:61:00", &ms), -1);
    assert_int_equal(dh_timespan_ms("ten", &ms), -1);
    /* the forms host.json's maxWaitTime and function.json's retry intervals come in */
    struct { const char *s; int64_t ms; } ok[] = {
        {"00:05:00", 300000}, {"00:00:02.5", 2500}, {"1:02:03:04", 93784000}, {"00:00:00.1234567", 123},
        {"23:59:59", 86399000}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(dh_timespan_ms(ok[i].s, &ms), 0);
        if (ms != ok[i].ms) fail_msg("%s: %lld, want %lld", ok[i].s, (long long)ms, (long long)ok[i].ms);
    }
    const char *bad_spans[] = {"", "24:00:00", "00:00:10.12345678", "00:00:10.", "1.02:03:04:05", "00:00:60", NULL};
    for (int i = 0; bad_spans[i]; i++)
        if (dh_timespan_ms(bad_spans[i], &ms) == 0) fail_msg("accepted %s", bad_spans[i]);

    dh_retry_t r;
    char err[300];
    cJSON *j = js("{\"strategy\":\"exponentialBackoff\",\"maxRetryCount\":-1,\"minimumInterval\":\"00:00:02\","
                  "\"maximumInterval\":\"00:05:00\"}");
    assert_int_equal(dh_retry_parse(j, "E/function.json", &r, err, sizeof err), 0);
    cJSON_Delete(j);
    assert_int_equal(r.kind, DH_RETRY_EXPONENTIAL);
    assert_int_equal(r.max_retry_count, -1);
    assert_true(dh_retry_should_retry(&r, 1000000));
    assert_int_equal(dh_retry_delay_ms(&r, 1, 0.5), 2000);              /* the minimum first */
    assert_int_equal(dh_retry_delay_ms(&r, 2, 0.0), 2000 + 1600);       /* min + 0.8 * 2^0 * min */
    assert_int_equal(dh_retry_delay_ms(&r, 3, 0.999999), 2000 + 4799);  /* min + ~1.2 * 2^1 * min */
    assert_int_equal(dh_retry_delay_ms(&r, 12, 0.5), 300000);           /* capped */
    assert_int_equal(dh_retry_delay_ms(&r, 1000, 0.5), 300000);
    /* the WebJobs SDK's sequence with the randomisation factor at 1.0 */
    const int64_t want[] = {2000, 4000, 6000, 10000, 18000, 34000, 66000, 130000, 258000, 300000, 300000};
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++)
        if (dh_retry_delay_ms(&r, i + 1, 0.5) != want[i]) fail_msg("retry %d: want %lld", i + 1, (long long)want[i]);

    j = js("{\"strategy\":\"FixedDelay\",\"maxRetryCount\":2,\"delayInterval\":\"00:00:05\"}");
    assert_int_equal(dh_retry_parse(j, "F", &r, err, sizeof err), 0);
    cJSON_Delete(j);
    assert_int_equal(r.kind, DH_RETRY_FIXED);
    assert_int_equal(dh_retry_delay_ms(&r, 7, 0.3), 5000);
    assert_true(dh_retry_should_retry(&r, 0));
    assert_true(dh_retry_should_retry(&r, 1));
    assert_false(dh_retry_should_retry(&r, 2));

    cJSON *ctx = dh_retry_context(2, r.max_retry_count, "EventTrigger", "storage was down");
    assert_int_equal(cJSON_GetObjectItem(ctx, "RetryCount")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(ctx, "MaxRetryCount")->valueint, 2);
    const cJSON *ex = cJSON_GetObjectItem(ctx, "Exception");
    assert_string_equal(cJSON_GetObjectItem(ex, "Message")->valuestring,
                        "Exception while executing function: Functions.EventTrigger");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(ex, "InnerException"), "Message")->valuestring,
                        "storage was down");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(ctx, "Instance")));
    cJSON_Delete(ctx);
    ctx = dh_retry_context(0, r.max_retry_count, "EventTrigger", NULL); /* the first attempt */
    assert_int_equal(cJSON_GetObjectItem(ctx, "RetryCount")->valueint, 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(ctx, "Exception")));
    cJSON_Delete(ctx);

    assert_int_equal(dh_retry_parse(NULL, "F", &r, err, sizeof err), 0);
    assert_int_equal(r.kind, DH_RETRY_NONE);
    assert_false(dh_retry_should_retry(&r, 0));
    const char *bad[] = {
        "{\"strategy\":\"fixedDelay\",\"delayInterval\":\"00:00:05\"}",              /* no maxRetryCount */
        "{\"strategy\":\"fixedDelay\",\"maxRetryCount\":3}",                          /* no delayInterval */
        "{\"strategy\":\"linear\",\"maxRetryCount\":3}",
        "{\"strategy\":\"fixedDelay\",\"maxRetryCount\":-2,\"delayInterval\":\"00:00:05\"}",
        "{\"strategy\":\"exponentialBackoff\",\"maxRetryCount\":1,\"minimumInterval\":\"00:01:00\","
        "\"maximumInterval\":\"00:00:01\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = js(bad[i]);
        assert_int_equal(dh_retry_parse(j, "F/function.json", &r, err, sizeof err), -1);
        assert_non_null(strstr(err, "F/function.json: retry"));
        cJSON_Delete(j);
    }
}

/* Match path (split on '/') against tmpl; returns the params JSON (caller frees) or NULL. */
static char *match(const char *tmpl, const char *path)
{
    char err[300];
    dh_route_t *r = dh_route_parse(tmpl, err, sizeof err);
    assert_non_null(r);
    char buf[256], *segs[16];
    size_t n = 0;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) segs[n++] = t;
    cJSON *params = cJSON_CreateObject();
    char *out = dh_route_match(r, segs, n, params) ? cJSON_PrintUnformatted(params) : NULL;
    cJSON_Delete(params);
    dh_route_free(r);
    return out;
}

static void expect_match(const char *tmpl, const char *path, const char *params)
{
    char *got = match(tmpl, path);
    if (!params) {
        if (got) fail_msg("%s should not match %s, got %s", tmpl, path, got);
        return;
    }
    if (!got) fail_msg("%s should match %s", tmpl, path);
    assert_string_equal(got, params);
    free(got);
}

static void test_routes(void **st)
{
    (void)st;
    expect_match("getdevicestate", "GetDeviceState", "{}");       /* case-insensitive literal */
    expect_match("getdevicestate", "getdevicestate/x", NULL);
    expect_match("/negotiate", "negotiate", "{}");
    expect_match("devices/{id}", "devices/dev%201", "{\"id\":\"dev%201\"}");
    expect_match("devices/{id}", "devices", NULL);
    expect_match("products/{category:alpha}/{id:int?}", "products/tools", "{\"category\":\"tools\",\"id\":null}");
    expect_match("products/{category:alpha}/{id:int?}", "products/tools/42", "{\"category\":\"tools\",\"id\":\"42\"}");
    expect_match("products/{category:alpha}/{id:int?}", "products/t00ls/42", NULL);
    expect_match("products/{category:alpha}/{id:int?}", "products/tools/4x", NULL);
    expect_match("items/{id=5}", "items", "{\"id\":\"5\"}");
    expect_match("files/{*path}", "files/a/b/c.txt", "{\"path\":\"a/b/c.txt\"}");
    expect_match("files/{*path}", "files", "{\"path\":null}");
    expect_match("n/{v:range(1,10)}", "n/10", "{\"v\":\"10\"}");
    expect_match("n/{v:range(1,10)}", "n/11", NULL);
    expect_match("n/{v:length(3)}", "n/abc", "{\"v\":\"abc\"}");
    expect_match("n/{v:length(3)}", "n/abcd", NULL);
    expect_match("n/{v:minlength(2):maxlength(3)}", "n/a", NULL);
    expect_match("g/{v:guid}", "g/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "{\"v\":\"3f2504e0-4f89-11d3-9a0c-0305e82c3301\"}");
    expect_match("g/{v:guid}", "g/nope", NULL);
    expect_match("b/{v:bool}", "b/True", "{\"v\":\"True\"}");
    expect_match("d/{v:datetime}", "d/2026-01-02T03:04:05Z", "{\"v\":\"2026-01-02T03:04:05Z\"}");
    expect_match("r/{v:regex(^[a-c]+$)}", "r/ABCA", "{\"v\":\"ABCA\"}"); /* case-insensitive, as .NET's */
    expect_match("r/{v:regex(^\\d+$)}", "r/2026", "{\"v\":\"2026\"}");

    char err[300];
    const char *bad[] = {"a/{b", "a/x{b}", "a/{*b}/c", "a/{b?}/c", "a/{b}/{B}", "a/{b:nosuch}", "a//b",
                         "a/{b:min(x)}", "a/b}", "a/{b{c}}", "a/{b}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dh_route_t *r = dh_route_parse(bad[i], err, sizeof err);
        if (r) fail_msg("'%s' should be refused", bad[i]);
        assert_non_null(strstr(err, "route '"));
    }
    /* a quantifier after a quantifier is refused, as .NET refuses it ("Nested quantifier"); glibc
     * would compile "1++++++++++++*++..." into gigabytes (fuzz_route); one lazy '?' is fine */
    const char *nested[] = {"r/{v:regex(a**)}", "r/{v:regex(^(1+++++++++++++*+++++++++++++++++,1)$)}",
                            "r/{v:regex(a+?\?)}"};
    for (size_t i = 0; i < sizeof nested / sizeof nested[0]; i++) {
        dh_route_t *r = dh_route_parse(nested[i], err, sizeof err);
        if (r) fail_msg("'%s' should be refused", nested[i]);
        assert_non_null(strstr(err, "nested quantifier"));
    }
    /* glibc copies repeated parts, so nested counts multiply: refused before regcomp builds them */
    const char *huge[] = {"r/{v:regex(((a{{100}}){{100}}){{100}})}",
                          "r/{v:regex((((((((((((((((((((((((((((((((((a)))))))))))))))))))))))))))))))))))}",
                          "r/{v:regex(^[a-z]{{1,2000}}$)}", "r/{v:regex(((a{{,100}}){{,100}}){{,100}})}"};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        dh_route_t *r = dh_route_parse(huge[i], err, sizeof err);
        if (r) fail_msg("'%s' should be refused", huge[i]);
        assert_non_null(strstr(err, "too large once its repetitions are expanded"));
    }
    /* anchors inside a repetition make glibc's compile exponential; back-references make its
     * matching backtrack; nested quantifiers and a lone ')' are refused as glibc reads the pattern
     * too, since .NET's reading takes "\\]" inside a bracket as an escaped ']' and so misses those
     * after one (fuzz_route: 14 s and 12 s to compile, and 2 GiB) */
    const char *slow[][2] = {{"r/{v:regex((((((^)+)+)+)+)+)}", "repeats an anchor"},
                             {"r/{v:regex([\x06\\]g:regex(^a{{2,9}}$)*++++*+[[:alpha:]],2R0)}", "nested quantifier"},
                             {"r/{v:regex(^(x\\b)*$)}", "repeats an anchor"},
                             {"r/{v:regex((a*)+(a*)+\\1\\2b)}", "back-reference"},
                             {"r/{v:regex(g:9}}$)*++++*+)}", "unbalanced parentheses"},
                             {"r/{v:regex([\x06\\]g:9}}$)*++++*+)}", "unbalanced parentheses"},
                             {"r/{v:regex(((a))}", "unbalanced parentheses"},
                             {"r/{v:regex([\\]a*+)}", "nested quantifier"},
                             {"r/{v:regex([\x06\\]ge(0+\xd2++1++++++++++*+++++++++++++++++,2R0))}", "nested quantifier"}};
    for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++) {
        dh_route_t *r = dh_route_parse(slow[i][0], err, sizeof err);
        if (r) fail_msg("'%s' should be refused", slow[i][0]);
        assert_non_null(strstr(err, slow[i][1]));
    }
    expect_match("r/{v:regex(^(ab|c)+$)}", "r/abcab", "{\"v\":\"abcab\"}");
    /* a brace inside a template is doubled, as the host writes it */
    expect_match("r/{v:regex(^[a-z0-9-]{{1,128}}$)}", "r/dev-1", "{\"v\":\"dev-1\"}");
    expect_match("r/{v:regex(^[[:alpha:]]{{2}}(x|y){{1,3}}\\{{$)}", "r/abxy{", "{\"v\":\"abxy{\"}");
    expect_match("r/{v:regex(^\\d{{4}}$)}", "r/12345", NULL);
    expect_match("lit/{{x}}", "lit/{x}", "{}");
    expect_match("r/{v:regex(^a+?b$)}", "r/aab", "{\"v\":\"aab\"}");
    expect_match("r/{v:regex(^[+*]+\\++$)}", "r/*+++", "{\"v\":\"*+++\"}");   /* escaped and bracketed: no quantifiers */
    dh_route_t *lit = dh_route_parse("a/b", err, sizeof err), *par = dh_route_parse("a/{x}", err, sizeof err);
    dh_route_t *con = dh_route_parse("a/{x:int}", err, sizeof err), *all = dh_route_parse("a/{*x}", err, sizeof err);
    assert_true(dh_route_cmp(lit, con) < 0);
    assert_true(dh_route_cmp(con, par) < 0);
    assert_true(dh_route_cmp(par, all) < 0);
    assert_int_equal(dh_route_param_count(con), 1);
    assert_string_equal(dh_route_param_name(con, 0), "x");
    dh_route_free(lit);
    dh_route_free(par);
    dh_route_free(con);
    dh_route_free(all);
}

static void test_binding_expressions(void **st)
{
    (void)st;
    cJSON *md = js("{\"Headers\":{\"X-MS-CLIENT-PRINCIPAL-ID\":\"alice\",\"Host\":\"localhost\"},"
                   "\"Query\":{\"hub\":\"Telemetry\"},\"deviceId\":\"\\\"dev-1\\\"\",\"n\":5,"
                   "\"sys\":{\"MethodName\":\"Negotiate\"}}");
    char err[300];
    char *v = dh_expr_resolve("{headers.x-ms-client-principal-id}", md, err, sizeof err);
    assert_string_equal(v, "alice");
    free(v);
    v = dh_expr_resolve("user-{deviceId}-{query.HUB}-{n}-{sys.methodname}", md, err, sizeof err);
    assert_string_equal(v, "user-dev-1-Telemetry-5-Negotiate"); /* the double-encoded string is unwrapped */
    free(v);
    v = dh_expr_resolve("{rand-guid}", md, err, sizeof err);
    assert_int_equal(strlen(v), 36);
    free(v);
    assert_null(dh_expr_resolve("{headers.x-missing}", md, err, sizeof err));
    assert_string_equal(err, "Error while accessing 'x-missing': property doesn't exist.");
    assert_null(dh_expr_resolve("{nothing}", md, err, sizeof err));
    assert_string_equal(err, "No value for named parameter 'nothing'.");
    assert_true(dh_expr_has("a{b}"));
    assert_false(dh_expr_has("Enviromon"));
    cJSON_Delete(md);
}

/* A request as the front server collects it. */
static void fake_req(dh_http_req_t *r, const char *method, const char *path, const char *query, const char *const *hdrs,
                     const char *body)
{
    memset(r, 0, sizeof *r);
    r->method = method;
    r->raw_path = strdup(path);
    r->raw_query = strdup(query);
    for (const char *const *h = hdrs; h && h[0]; h += 2) {
        r->headers = realloc(r->headers, (r->nheaders + 1) * sizeof *r->headers);
        r->headers[r->nheaders].name = strdup(h[0]);
        r->headers[r->nheaders].value = strdup(h[1]);
        r->nheaders++;
    }
    /* decoded query pairs, as front.c makes them */
    char *q = strdup(query);
    for (char *save = NULL, *t = strtok_r(q, "&", &save); t; t = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(t, '=');
        if (eq) *eq = '\0';
        r->query = realloc(r->query, (r->nquery + 1) * sizeof *r->query);
        r->query[r->nquery].name = dh_pct_decode(t, strlen(t), 1, NULL);
        r->query[r->nquery].value = eq ? dh_pct_decode(eq + 1, strlen(eq + 1), 1, NULL) : strdup("");
        r->nquery++;
    }
    free(q);
    r->body = strdup(body ? body : "");
    r->body_len = body ? strlen(body) : 0;
    r->content_length = body ? (long long)strlen(body) : -1;
    snprintf(r->host, sizeof r->host, "localhost:7071");
}

/* The request object as the handler receives it (Identities is pre-rendered raw JSON). */
static cJSON *as_sent(cJSON *req)
{
    char *t = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    cJSON *j = cJSON_Parse(t);
    free(t);
    assert_non_null(j);
    return j;
}

static void test_http_request_shapes(void **st)
{
    (void)st;
    const char *hdrs[] = {"content-type", "application/json", "x-ms-client-principal-id", "alice",
                          "Accept", "a/b", "accept", "c/d", NULL};
    dh_http_req_t r;
    fake_req(&r, "POST", "/api/devices/dev%201", "name=red&Name=green&code=secret&flag", hdrs,
             "{\"deviceId\":\"d1\",\"n\":12,\"f\":1.5,\"ok\":true,\"nested\":{\"x\":1},\"none\":null,\"Query\":\"q\"}");
    cJSON *params = js("{\"id\":\"dev 1\",\"opt\":null}");
    cJSON *req = as_sent(dh_http_request_object(&r, params, DH_IDENTITY_ANONYMOUS));
    char *text = cJSON_PrintUnformatted(req);
    cJSON *expect = js("{\"Url\":\"http://localhost:7071/api/devices/dev%201?name=red&Name=green&code=secret&flag\","
                       "\"Method\":\"POST\",\"Query\":{\"name\":\"red,green\",\"code\":\"secret\",\"flag\":\"\"},"
                       "\"Headers\":{\"Content-Type\":[\"application/json\"],\"x-ms-client-principal-id\":[\"alice\"],"
                       "\"Accept\":[\"a/b\",\"c/d\"]},\"Params\":{\"id\":\"dev 1\",\"opt\":null}}");
    for (const cJSON *e = expect->child; e; e = e->next) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(req, e->string);
        if (!cJSON_Compare(e, g, 1)) fail_msg("Data.req.%s differs: %s", e->string, text);
    }
    assert_string_equal(cJSON_GetObjectItem(req, "Body")->valuestring, r.body);
    const cJSON *id = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "Identities"), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(id, "AuthenticationType")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(id, "IsAuthenticated")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(id, "Claims")), 0);
    free(text);
    cJSON_Delete(expect);
    cJSON_Delete(req);

    cJSON *md = dh_http_metadata(&r, params);
    text = cJSON_PrintUnformatted(md);
    /* Body scalars (strings double-encoded), query (last value, no "code"), route values, then
     * the Query/Headers dictionaries — unless the body already had a "Query" key. */
    expect = js("{\"deviceId\":\"\\\"d1\\\"\",\"n\":\"\\\"12\\\"\",\"f\":\"\\\"1.5\\\"\",\"ok\":\"\\\"True\\\"\","
                "\"Query\":\"\\\"q\\\"\",\"name\":\"\\\"green\\\"\",\"flag\":\"\\\"\\\"\",\"id\":\"\\\"dev 1\\\"\","
                "\"Headers\":{\"Content-Type\":\"application/json\",\"x-ms-client-principal-id\":\"alice\","
                "\"Accept\":\"a/b,c/d\"}}");
    if (!cJSON_Compare(expect, md, 1)) fail_msg("metadata differs: %s", text);
    free(text);
    cJSON_Delete(expect);
    cJSON_Delete(md);
    dh_http_req_free(&r);

    /* No Content-Length (chunked): no Body, no body metadata; octet-stream: base64. */
    fake_req(&r, "POST", "/api/x", "", NULL, "{\"a\":\"b\"}");
    r.content_length = -1;
    req = as_sent(dh_http_request_object(&r, NULL, DH_IDENTITY_LOCAL_ADMIN));
    assert_null(cJSON_GetObjectItem(req, "Body"));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(req, "Params")), 0);
    id = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "Identities"), 0);
    assert_string_equal(cJSON_GetObjectItem(id, "AuthenticationType")->valuestring, "WebJobsAuthLevel");
    const cJSON *claim = cJSON_GetArrayItem(cJSON_GetObjectItem(id, "Claims"), 0);
    assert_string_equal(cJSON_GetObjectItem(claim, "Value")->valuestring, "Admin");
    cJSON_Delete(req);
    md = dh_http_metadata(&r, NULL);
    assert_null(cJSON_GetObjectItem(md, "a"));
    cJSON_Delete(md);
    dh_http_req_free(&r);
    const char *oct[] = {"Content-Type", "application/octet-stream", NULL};
    fake_req(&r, "POST", "/api/x", "", oct, "hi!");
    req = dh_http_request_object(&r, NULL, DH_IDENTITY_FUNCTION_KEY);
    assert_string_equal(cJSON_GetObjectItem(req, "Body")->valuestring, "aGkh");
    cJSON_Delete(req);
    dh_http_req_free(&r);
    /* Invalid UTF-8 becomes U+FFFD, as .NET reads it. */
    fake_req(&r, "POST", "/api/x", "", NULL, "a\xff" "b");
    req = dh_http_request_object(&r, NULL, DH_IDENTITY_ANONYMOUS);
    assert_string_equal(cJSON_GetObjectItem(req, "Body")->valuestring, "a\xEF\xBF\xBD" "b");
    cJSON_Delete(req);
    dh_http_req_free(&r);
    /* So do a query's and a header's bytes, in Data.req and in Metadata (found by
     * fuzz_http_trigger: they reached the handler as JSON that is not UTF-8). */
    const char *odd[] = {"X-Odd", "v\xfe", NULL};
    fake_req(&r, "GET", "/api/x\xff", "%FF=%C0%80&k=a%E2%82", odd, NULL);
    req = dh_http_request_object(&r, NULL, DH_IDENTITY_ANONYMOUS);
    md = dh_http_metadata(&r, NULL);
    assert_non_null(req);
    assert_non_null(md);
    char *texts[2] = {cJSON_PrintUnformatted(req), cJSON_PrintUnformatted(md)};
    for (int i = 0; i < 2; i++) {
        assert_non_null(texts[i]);
        if (!utf8_valid(texts[i], strlen(texts[i]))) fail_msg("not UTF-8: %s", texts[i]);
        free(texts[i]);
    }
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(req, "Query"), "k")->valuestring, "a\xEF\xBF\xBD");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(req, "Query"), "\xEF\xBF\xBD")->valuestring,
                        "\xEF\xBF\xBD\xEF\xBF\xBD");
    const cJSON *xo = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(req, "Headers"), "X-Odd"), 0);
    assert_string_equal(xo->valuestring, "v\xEF\xBF\xBD");
    assert_string_equal(cJSON_GetObjectItem(req, "Url")->valuestring, "http://localhost:7071/api/x\xEF\xBF\xBD?%FF=%C0%80&k=a%E2%82");
    cJSON_Delete(req);
    cJSON_Delete(md);
    dh_http_req_free(&r);
    /* Names that read the same are one name: the front server stores query arguments and
     * headers as text (dh_header_push), so %FF and %FE are both U+FFFD and join. */
    memset(&r, 0, sizeof r);
    r.method = "GET";
    r.content_length = -1;
    assert_int_equal(dh_http_req_set_uri(&r, "/api/x?%FF=1&%FE=2"), 0);
    assert_int_equal(r.nquery, 2);
    assert_string_equal(r.query[0].name, "\xEF\xBF\xBD");
    assert_string_equal(r.query[1].name, "\xEF\xBF\xBD");
    req = dh_http_request_object(&r, NULL, DH_IDENTITY_ANONYMOUS);
    const cJSON *qo = cJSON_GetObjectItem(req, "Query");
    assert_int_equal(cJSON_GetArraySize(qo), 1);
    assert_string_equal(cJSON_GetObjectItem(qo, "\xEF\xBF\xBD")->valuestring, "1,2");
    cJSON_Delete(req);
    dh_http_req_free(&r);
    cJSON_Delete(params);
}

static const char *header_of(const dh_http_resp_t *w, const char *name)
{
    for (size_t i = 0; i < w->nheaders; i++)
        if (strcasecmp(w->headers[i].name, name) == 0) return w->headers[i].value;
    return NULL;
}

static void test_http_output(void **st)
{
    (void)st;
    char err[300];
    dh_http_resp_t w;
    struct { const char *res; int status; const char *ctype; const char *body; } ok[] = {
        {"{\"statusCode\":201,\"headers\":{\"Content-Type\":\"application/json\",\"X-N\":5},\"body\":\"{\\\"a\\\":1}\"}",
         201, "application/json", "{\"a\":1}"},
        {"{\"statusCode\":\"404\",\"body\":\"nope\"}", 404, "text/plain; charset=utf-8", "nope"},
        {"{\"StatusCode\":202,\"Body\":{\"a\":[1,{\"b\":true}],\"c\":{}}}", 202, "text/plain; charset=utf-8",
         "{\n  \"a\": [\n    1,\n    {\n      \"b\": true\n    }\n  ],\n  \"c\": {}\n}"},
        {"{\"status\":500}", 200, NULL, ""},  /* status is never read: statusCode wins (absent → 200) */
        {"null", 200, NULL, ""},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        dh_http_resp_init(&w);
        cJSON *v = js(ok[i].res);
        assert_int_equal(dh_http_apply_output(v, &w, err, sizeof err), 0);
        assert_int_equal(w.status, ok[i].status);
        if (ok[i].ctype) assert_string_equal(header_of(&w, "Content-Type"), ok[i].ctype);
        else assert_null(header_of(&w, "Content-Type"));
        assert_string_equal(buf_str(&w.body), ok[i].body);
        if (i == 0) assert_string_equal(header_of(&w, "X-N"), "5");
        cJSON_Delete(v);
        dh_http_resp_free(&w);
    }
    const char *bad[] = {"\"a string\"", "[1]", "{\"statusCode\":\"abc\"}", "{\"statusCode\":99}", "{\"headers\":[]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dh_http_resp_init(&w);
        cJSON *v = js(bad[i]);
        assert_int_equal(dh_http_apply_output(v, &w, err, sizeof err), -1);
        cJSON_Delete(v);
        dh_http_resp_free(&w);
    }
}

static void test_wire_and_numbers(void **st)
{
    (void)st;
    cJSON *w = dh_wire_string("he said \"hi\"\n");
    assert_string_equal(w->valuestring, "\"he said \\\"hi\\\"\\n\"");
    cJSON_Delete(w);
    buf_t b = BUF_INIT;
    dh_put_number(&b, 12);
    buf_putc(&b, ' ');
    dh_put_number(&b, 1.5);
    buf_putc(&b, ' ');
    dh_put_number(&b, 0.1);
    assert_string_equal(buf_str(&b), "12 1.5 0.1");
    buf_free(&b);
    cJSON *o = cJSON_CreateObject();
    assert_int_equal(dh_json_set_ci(o, "Name", cJSON_CreateString("a")), 0);
    assert_int_equal(dh_json_set_ci(o, "other", cJSON_CreateString("b")), 0);
    assert_int_equal(dh_json_set_ci(o, "NAME", cJSON_CreateString("c")), 0);
    char *t = cJSON_PrintUnformatted(o);
    assert_string_equal(t, "{\"Name\":\"c\",\"other\":\"b\"}");
    free(t);
    cJSON_Delete(o);
    int nul = 0;
    char *d = dh_pct_decode("a%2Fb+c%00%zz", 13, 1, &nul);
    assert_string_equal(d, "a/b c?%zz");
    assert_int_equal(nul, 1);
    free(d);
}

static void test_keys(void **st)
{
    (void)st;
    char dir[] = "/tmp/dh-keys-XXXXXX";
    assert_non_null(mkdtemp(dir));
    dh_keys_t k1, k2;
    char err[300];
    assert_int_equal(dh_keys_load_or_create(dir, &k1, err, sizeof err), 0);
    assert_int_equal(k1.created, 1);
    assert_true(strlen(k1.function_key) >= 40);
    assert_string_not_equal(k1.function_key, k1.master_key);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, DH_KEYS_FILE);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    chmod(path, 0644);
    assert_int_equal(dh_keys_load_or_create(dir, &k2, err, sizeof err), 0);
    assert_int_equal(k2.created, 0);
    assert_string_equal(k1.function_key, k2.function_key);
    assert_string_equal(k1.master_key, k2.master_key);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600); /* tightened */
    assert_true(dh_keys_match(k1.function_key, k2.function_key));
    assert_false(dh_keys_match("short", k1.function_key));
    assert_false(dh_keys_match(NULL, k1.function_key));
    FILE *f = fopen(path, "w");
    fputs("{\"functionKey\": \"SECRET", f);
    fclose(f);
    assert_int_equal(dh_keys_load_or_create(dir, &k2, err, sizeof err), -1);
    assert_null(strstr(err, "SECRET"));
    unlink(path);
    rmdir(dir);
}

struct keys_race { const char *dir; dh_keys_t k; int rc; };

static void *keys_race_thread(void *arg)
{
    struct keys_race *r = arg;
    char err[300];
    r->rc = dh_keys_load_or_create(r->dir, &r->k, err, sizeof err);
    return NULL;
}

/* Devhosts starting at once on one data folder (threads here): all get the same keys, one of
 * them created them, and nothing but keys.json is left in the folder — a reader never sees a
 * partly written file because the file appears in one step, whole. */
static void test_keys_created_once_whole(void **st)
{
    (void)st;
    char dir[] = "/tmp/dh-keysrace-XXXXXX";
    assert_non_null(mkdtemp(dir));
    enum { N = 8 };
    struct keys_race r[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        r[i].dir = dir;
        assert_int_equal(pthread_create(&t[i], NULL, keys_race_thread, &r[i]), 0);
    }
    int created = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(r[i].rc, 0);
        created += r[i].k.created;
        assert_string_equal(r[i].k.function_key, r[0].k.function_key);
        assert_string_equal(r[i].k.master_key, r[0].k.master_key);
    }
    assert_int_equal(created, 1);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        assert_string_equal(e->d_name, DH_KEYS_FILE);
        files++;
    }
    closedir(d);
    assert_int_equal(files, 1);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, DH_KEYS_FILE);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    unlink(path);
    rmdir(dir);
}

static void test_static_paths(void **st)
{
    (void)st;
    char root[] = "/tmp/dh-static-XXXXXX";
    assert_non_null(mkdtemp(root));
    char p[400];
    snprintf(p, sizeof p, "%s/dashboard", root);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/dashboard/index.html", root);
    FILE *f = fopen(p, "w");
    fputs("<h1>hi</h1>", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/secret.txt", root);
    f = fopen(p, "w");
    fputs("no", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/dashboard/.env", root);
    f = fopen(p, "w");
    fputs("no", f);
    fclose(f);
    char link[400];
    snprintf(link, sizeof link, "%s/dashboard/escape.txt", root);
    snprintf(p, sizeof p, "%s/secret.txt", root);
    assert_int_equal(symlink(p, link), 0);

    snprintf(p, sizeof p, "%s/dashboard", root);
    int absent = 0;
    char err[300];
    dh_static_t *s = dh_static_open(p, "http://localhost:8888 ws://localhost:8888", &absent, err, sizeof err);
    assert_non_null(s);
    assert_non_null(strstr(dh_static_csp(s), "connect-src 'self' http://localhost:8888 ws://localhost:8888"));
    assert_null(strstr(dh_static_csp(s), "unsafe-inline"));
    struct { const char *path; int served; } cases[] = {
        {"/", 1}, {"/index.html", 1}, {"/INDEX.html", 0}, {"/../secret.txt", 0}, {"/%2e%2e/secret.txt", 0},
        {"/..%2fsecret.txt", 0}, {"/%2E%2E%2Fsecret.txt", 0}, {"/escape.txt", 0}, {"/.env", 0},
        {"/index.html%00.png", 0}, {"/sub/../index.html", 0}, {"/..\\secret.txt", 0}, {"/nothing", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dh_http_req_t r;
        fake_req(&r, "GET", cases[i].path, "", NULL, NULL);
        dh_http_resp_t w;
        dh_http_resp_init(&w);
        int got = dh_static_serve(s, &r, &w);
        if (got != cases[i].served) fail_msg("%s: served=%d", cases[i].path, got);
        if (got) {
            assert_int_equal(w.status, 200);
            assert_string_equal(header_of(&w, "Content-Type"), "text/html; charset=utf-8");
            assert_non_null(header_of(&w, "Content-Security-Policy"));
            assert_string_equal(header_of(&w, "X-Content-Type-Options"), "nosniff");
        }
        dh_http_resp_free(&w);
        dh_http_req_free(&r);
    }
    dh_static_free(s);
    snprintf(p, sizeof p, "%s/nodash", root);
    assert_null(dh_static_open(p, NULL, &absent, err, sizeof err));
    assert_int_equal(absent, 1);
    assert_string_equal(dh_static_content_type("a/b.mjs"), "text/javascript; charset=utf-8");
    assert_string_equal(dh_static_content_type("x.unknown"), "application/octet-stream");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_binding_expressions),
        cmocka_unit_test(test_http_request_shapes),
        cmocka_unit_test(test_http_output),
        cmocka_unit_test(test_wire_and_numbers),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_keys_created_once_whole),
        cmocka_unit_test(test_static_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
