/* Unit tests: the custom-handler envelope (protocol/invocation.c), with the examples of
 * shared/reference/custom-handler-protocol.md §1–3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "protocol/invocation.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static cJSON *unwrap_text(const char *json_text)
{
    cJSON *in = cJSON_Parse(json_text);
    assert_non_null(in);
    cJSON *out = json_unwrap(in);
    cJSON_Delete(in);
    return out;
}

/* The host's own unit test: a string value "hello" arrives as "\"hello\"". */
static void test_unwrap_double_encoded_string(void **state)
{
    (void)state;
    cJSON *v = unwrap_text("\"\\\"hello\\\"\"");
    assert_true(cJSON_IsString(v));
    assert_string_equal(v->valuestring, "hello");
    cJSON_Delete(v);
    /* BAL: "name": "\"hello.txt\"" */
    v = unwrap_text("\"\\\"hello.txt\\\"\"");
    assert_string_equal(v->valuestring, "hello.txt");
    cJSON_Delete(v);
}

/* BAL cosmos-db-arr.json: an array arrives as a string holding the array text. */
static void test_unwrap_array_in_string(void **state)
{
    (void)state;
    cJSON *v = unwrap_text("\"[{\\\"id\\\":\\\"1\\\"},{\\\"id\\\":\\\"2\\\"}]\"");
    assert_true(cJSON_IsArray(v));
    assert_int_equal(cJSON_GetArraySize(v), 2);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 1), "id")->valuestring, "2");
    cJSON_Delete(v);
}

/* Event Hub batch with dataType string: a string holding an array of strings, each a body. */
static void test_unwrap_event_batch(void **state)
{
    (void)state;
    cJSON *v = unwrap_text("\"[\\\"{\\\\\\\"temp\\\\\\\":21.5}\\\",\\\"{\\\\\\\"temp\\\\\\\":22}\\\"]\"");
    assert_true(cJSON_IsArray(v));
    assert_int_equal(cJSON_GetArraySize(v), 2);
    cJSON *first = cJSON_GetArrayItem(v, 0);
    assert_true(cJSON_IsString(first)); /* elements stay strings: each is parsed by its consumer */
    assert_string_equal(first->valuestring, "{\"temp\":21.5}");
    cJSON_Delete(v);
    /* SequenceNumberArray: "[167219,167220]" */
    v = unwrap_text("\"[167219,167220]\"");
    assert_true(cJSON_IsArray(v));
    assert_int_equal((int)cJSON_GetArrayItem(v, 1)->valuedouble, 167220);
    cJSON_Delete(v);
}

/* signalRConnectionInfo: JObject.ToString() then serialised again: an object in a string. */
static void test_unwrap_connection_info(void **state)
{
    (void)state;
    cJSON *v = unwrap_text("\"{\\\"url\\\":\\\"http://localhost:8888/client/?hub=enviromon\\\",\\\"accessToken\\\":\\\"a.b.c\\\"}\"");
    assert_true(cJSON_IsObject(v));
    assert_string_equal(cJSON_GetObjectItem(v, "url")->valuestring, "http://localhost:8888/client/?hub=enviromon");
    cJSON_Delete(v);
    /* Three levels of encoding still unwrap. */
    v = unwrap_text("\"\\\"{\\\\\\\"a\\\\\\\":1}\\\"\"");
    assert_true(cJSON_IsObject(v));
    assert_int_equal(cJSON_GetObjectItem(v, "a")->valueint, 1);
    cJSON_Delete(v);
}

static void test_unwrap_leaves_plain_values(void **state)
{
    (void)state;
    cJSON *v = unwrap_text("\"hello world\"");
    assert_string_equal(v->valuestring, "hello world");
    cJSON_Delete(v);
    v = unwrap_text("\"{not json\"");
    assert_string_equal(v->valuestring, "{not json");
    cJSON_Delete(v);
    v = unwrap_text("{\"a\":\"[1]\"}"); /* objects are returned as they are (a copy) */
    assert_true(cJSON_IsObject(v));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(v, "a")));
    cJSON_Delete(v);
    v = unwrap_text("42");
    assert_true(cJSON_IsNumber(v));
    cJSON_Delete(v);
    assert_null(json_unwrap(NULL));
}

static invocation_t *new_inv(const char *body)
{
    static invocation_t inv;
    char err[256];
    cJSON *req = cJSON_Parse(body);
    assert_non_null(req);
    assert_int_equal(inv_init(&inv, "Test", "id-1", req, err, sizeof err), 0);
    return &inv;
}

static void test_inv_data_and_metadata(void **state)
{
    (void)state;
    invocation_t *inv = new_inv(
        "{\"Data\":{\"events\":\"[\\\"a\\\",\\\"b\\\"]\",\"connectionInfo\":\"{\\\"url\\\":\\\"u\\\"}\"},"
        "\"Metadata\":{\"SequenceNumberArray\":\"[1,2]\",\"PartitionContext\":{\"PartitionId\":\"3\"},"
        "\"sys\":{\"MethodName\":\"Test\"}}}");
    cJSON *ev = inv_data(inv, "events");
    assert_true(cJSON_IsArray(ev));
    assert_ptr_equal(inv_data(inv, "EVENTS"), ev); /* case-insensitive, unwrapped once in place */
    cJSON *ci = inv_data(inv, "connectionInfo");
    assert_string_equal(cJSON_GetObjectItem(ci, "url")->valuestring, "u");
    assert_true(cJSON_IsArray(inv_metadata(inv, "SequenceNumberArray")));
    assert_string_equal(cJSON_GetObjectItem(inv_metadata(inv, "PartitionContext"), "PartitionId")->valuestring, "3");
    assert_null(inv_data(inv, "missing"));
    inv_free(inv);
}

static void test_inv_init_rejects_bad_shapes(void **state)
{
    (void)state;
    invocation_t inv;
    char err[256];
    assert_int_equal(inv_init(&inv, "T", NULL, cJSON_Parse("[1,2]"), err, sizeof err), -1);
    assert_non_null(strstr(err, "array"));
    inv_free(&inv);
    assert_int_equal(inv_init(&inv, "T", NULL, cJSON_Parse("{\"Data\":5}"), err, sizeof err), -1);
    assert_non_null(strstr(err, "Data"));
    inv_free(&inv);
    /* Data and Metadata may be absent or null: they become empty objects. */
    assert_int_equal(inv_init(&inv, "T", NULL, cJSON_Parse("{\"Metadata\":null}"), err, sizeof err), 0);
    assert_true(cJSON_IsObject(inv.data));
    assert_true(cJSON_IsObject(inv.metadata));
    inv_free(&inv);
    /* Data double-encoded as a whole string still works. */
    assert_int_equal(inv_init(&inv, "T", NULL, cJSON_Parse("{\"Data\":\"{\\\"x\\\":1}\"}"), err, sizeof err), 0);
    assert_int_equal(cJSON_GetObjectItem(inv.data, "x")->valueint, 1);
    inv_free(&inv);
}

static void test_http_request_accessors(void **state)
{
    (void)state;
    invocation_t *inv = new_inv(
        "{\"Data\":{\"req\":{\"Url\":\"http://localhost:7071/api/getdevicestate?id=dev1\",\"Method\":\"GET\","
        "\"Query\":{\"id\":\"dev1\"},\"Headers\":{\"Accept\":[\"*/*\"],\"x-ms-client-principal-id\":[\"alice\"]},"
        "\"Params\":{},\"Body\":\"{\\\"deviceId\\\":\\\"dev1\\\"}\"}}}");
    cJSON *req = inv_data(inv, "req");
    assert_string_equal(http_req_method(req), "GET");
    assert_string_equal(http_req_query(req, "id"), "dev1");
    assert_string_equal(http_req_query(req, "ID"), "dev1");
    assert_null(http_req_query(req, "other"));
    assert_string_equal(http_req_header(req, "X-MS-Client-Principal-Id"), "alice");
    char *scratch;
    assert_string_equal(http_req_body(req, &scratch), "{\"deviceId\":\"dev1\"}");
    assert_null(scratch);
    inv_free(inv);

    /* Older hosts: Query as a JSON string; headers as single strings; no Body. */
    inv = new_inv("{\"Data\":{\"req\":{\"Method\":\"POST\",\"Query\":\"{\\\"broadcast\\\":\\\"false\\\"}\","
                  "\"Headers\":{\"Content-Type\":\"application/json\"}}}}");
    req = inv_data(inv, "req");
    assert_string_equal(http_req_query(req, "broadcast"), "false");
    assert_string_equal(http_req_header(req, "content-type"), "application/json");
    assert_null(http_req_body(req, &scratch));
    inv_free(inv);
}

static void test_outputs_and_response(void **state)
{
    (void)state;
    invocation_t *inv = new_inv("{\"Data\":{},\"Metadata\":{}}");
    cJSON *body = cJSON_Parse("{\"url\":\"u\",\"accessToken\":\"t\"}");
    assert_int_equal(inv_http_json(inv, "res", 200, body), 0);
    cJSON_Delete(body);
    assert_int_equal(inv_signalr_message(inv, "signalRMessages", "newMessage", cJSON_Parse("{\"deviceId\":\"d\"}"), NULL, "g1"), 0);
    assert_int_equal(inv_signalr_message(inv, "signalRMessages", "newMessage", cJSON_CreateNumber(1), "u1", NULL), 0);
    log_info(&inv->log, "hello %d", 42);
    char *text = inv_render_response(inv);
    cJSON *resp = cJSON_Parse(text);
    free(text);
    assert_non_null(resp);
    cJSON *res = cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "Outputs"), "res");
    assert_int_equal(cJSON_GetObjectItem(res, "statusCode")->valueint, 200);
    assert_null(cJSON_GetObjectItemCaseSensitive(res, "status"));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "headers"), "Content-Type")->valuestring, "application/json");
    assert_string_equal(cJSON_GetObjectItem(res, "body")->valuestring, "{\"url\":\"u\",\"accessToken\":\"t\"}");
    cJSON *msgs = cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "Outputs"), "signalRMessages");
    assert_int_equal(cJSON_GetArraySize(msgs), 2);
    cJSON *m0 = cJSON_GetArrayItem(msgs, 0);
    assert_string_equal(cJSON_GetObjectItem(m0, "target")->valuestring, "newMessage");
    assert_true(cJSON_IsObject(cJSON_GetArrayItem(cJSON_GetObjectItem(m0, "arguments"), 0)));
    assert_string_equal(cJSON_GetObjectItem(m0, "groupName")->valuestring, "g1");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 1), "userId")->valuestring, "u1");
    cJSON *logs = cJSON_GetObjectItem(resp, "Logs");
    assert_string_equal(cJSON_GetArrayItem(logs, 0)->valuestring, "hello 42");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(resp, "ReturnValue")));
    cJSON_Delete(resp);
    inv_free(inv);
}

static void test_failure_rendering(void **state)
{
    (void)state;
    invocation_t *inv = new_inv("{}");
    inv_fail(inv, 503, "storage unavailable: %s", "connection refused");
    assert_int_equal(inv->fail_status, 503);
    char *text = inv_render_failure(inv);
    cJSON *resp = cJSON_Parse(text);
    free(text);
    assert_string_equal(cJSON_GetObjectItem(resp, "error")->valuestring, "storage unavailable: connection refused");
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(resp, "Logs")) >= 1);
    cJSON_Delete(resp);
    inv_free(inv);
    inv = new_inv("{}");
    inv_fail(inv, 200, "not a failure status"); /* clamped: a failure is never 2xx */
    assert_int_equal(inv->fail_status, 500);
    inv_free(inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unwrap_double_encoded_string),
        cmocka_unit_test(test_unwrap_array_in_string),
        cmocka_unit_test(test_unwrap_event_batch),
        cmocka_unit_test(test_unwrap_connection_info),
        cmocka_unit_test(test_unwrap_leaves_plain_values),
        cmocka_unit_test(test_inv_data_and_metadata),
        cmocka_unit_test(test_inv_init_rejects_bad_shapes),
        cmocka_unit_test(test_http_request_accessors),
        cmocka_unit_test(test_outputs_and_response),
        cmocka_unit_test(test_failure_rendering),
    };
    return cmocka_run_group_tests_name("invocation", tests, NULL, NULL);
}
