/* Unit tests: key validation and escaping, table names, typed property round-trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <stdlib.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "azure/table.h"
#include "azure/table_internal.h"

static void test_key_valid(void **state)
{
    (void)state;
    char err[160];
    assert_true(table_key_valid("", err, sizeof(err)));
    assert_true(table_key_valid("dev-1 O'Brien \xe2\x9c\x93 \xf0\x9f\x98\x80", err, sizeof(err)));
    const char *bad[] = {"a/b", "a\\b", "a#b", "a?b", "tab\there", "nl\n", "\x7f", "\xc2\x85" /* U+0085 */,
                         "\xc0\xaf" /* overlong '/' */, "\xed\xa0\x80" /* surrogate */, "\xff", "\xe2\x9c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        err[0] = '\0';
        assert_false(table_key_valid(bad[i], err, sizeof(err)));
        assert_true(strlen(err) > 0);
    }
    assert_false(table_key_valid(NULL, NULL, 0));
    char *k = malloc(TABLE_KEY_MAX + 2);
    memset(k, 'a', TABLE_KEY_MAX);
    k[TABLE_KEY_MAX] = '\0';
    assert_true(table_key_valid(k, NULL, 0));
    k[TABLE_KEY_MAX] = 'a';
    k[TABLE_KEY_MAX + 1] = '\0';
    assert_false(table_key_valid(k, err, sizeof(err)));
    assert_non_null(strstr(err, "1024"));
    free(k);
}

static void test_key_escape(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(table_key_escape(&b, "O'Brien x/y\xc3\xbc"), 0);
    assert_string_equal(buf_str(&b), "O%27%27Brien%20x%2Fy%C3%BC");
    buf_reset(&b);
    assert_int_equal(table_pct_encode(&b, "PartitionKey eq 'a' and N ge 2L"), 0);
    assert_string_equal(buf_str(&b), "PartitionKey%20eq%20%27a%27%20and%20N%20ge%202L");
    buf_reset(&b);
    assert_int_equal(table_pct_encode(&b, "cA=="), 0); /* Azurite continuation token */
    assert_string_equal(buf_str(&b), "cA%3D%3D");
    buf_free(&b);
}

static void test_table_names(void **state)
{
    (void)state;
    assert_true(table_name_valid("DeviceState", NULL, 0));
    assert_true(table_name_valid("abc", NULL, 0));
    assert_false(table_name_valid("ab", NULL, 0));
    assert_false(table_name_valid("1abc", NULL, 0));
    assert_false(table_name_valid("ab-c", NULL, 0));
    assert_false(table_name_valid("Tables", NULL, 0));
    assert_false(table_name_valid("tAbLeS", NULL, 0));
    assert_true(table_name_valid("Tables1", NULL, 0));
    assert_false(table_name_valid("a')/../x", NULL, 0));
    char n[80];
    memset(n, 'a', 64);
    n[64] = '\0';
    assert_false(table_name_valid(n, NULL, 0));
    n[63] = '\0';
    assert_true(table_name_valid(n, NULL, 0));
}

/* Serialise, parse back (as if it came from the service), and read typed values. */
static cJSON *round_trip(const cJSON *e)
{
    buf_t b = BUF_INIT;
    assert_int_equal(table_entity_print(&b, e), 0);
    cJSON *back = cJSON_Parse(buf_str(&b));
    buf_free(&b);
    assert_non_null(back);
    return back;
}

/* U+2028/U+2029 leave as escapes (Azurite's $batch parser mishandles them raw); every other
 * character, and the value itself, survive. */
static void test_print_escapes_line_separators(void **state)
{
    (void)state;
    const char *v = "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xe2\x80\xa6" "d\xe2\x80" "\xe2\x80\xa8";
    cJSON *e = cJSON_CreateObject();
    assert_int_equal(table_set_string(e, "Geo", v), 0);
    assert_int_equal(table_set_string(e, "K\xe2\x80\xa9", "x"), 0);
    buf_t b = BUF_INIT;
    assert_int_equal(table_entity_print(&b, e), 0);
    assert_null(strstr(buf_str(&b), "\xe2\x80\xa8"));
    assert_null(strstr(buf_str(&b), "\xe2\x80\xa9"));
    assert_non_null(strstr(buf_str(&b), "a\\u2028b\\u2029c\xe2\x80\xa6"));   /* U+2026 stays raw */
    cJSON *back = cJSON_Parse(buf_str(&b));
    assert_non_null(back);
    assert_string_equal(cJSON_GetObjectItem(back, "Geo")->valuestring, v);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(back, "K\xe2\x80\xa9"));
    cJSON_Delete(back);
    buf_free(&b);
    cJSON_Delete(e);
}

static void test_typed_round_trip(void **state)
{
    (void)state;
    cJSON *e = cJSON_CreateObject();
    assert_int_equal(table_set_string(e, "PartitionKey", "p"), 0);
    assert_int_equal(table_set_double(e, "Celsius", 22.0), 0);
    assert_int_equal(table_set_double(e, "Tiny", 0.1), 0);
    assert_int_equal(table_set_double(e, "N", NAN), 0);
    assert_int_equal(table_set_double(e, "PI", INFINITY), 0);
    assert_int_equal(table_set_double(e, "NI", -INFINITY), 0);
    assert_int_equal(table_set_int64(e, "Count", INT64_C(9007199254740993)), 0);
    assert_int_equal(table_set_int64(e, "Min", INT64_MIN), 0);
    assert_int_equal(table_set_datetime(e, "LastSeen", "2024-01-02T03:04:05.1234567Z"), 0);
    assert_int_equal(table_set_bool(e, "Flag", 1), 0);

    cJSON *r = round_trip(e);
    assert_string_equal(table_get_string(r, "Celsius@odata.type"), "Edm.Double");
    double d;
    assert_int_equal(table_get_double(r, "Celsius", &d), 0);
    assert_true(d == 22.0);
    assert_int_equal(table_get_double(r, "Tiny", &d), 0);
    assert_true(d == 0.1);
    assert_int_equal(table_get_double(r, "N", &d), 0);
    assert_true(isnan(d));
    assert_string_equal(table_get_string(r, "N"), "NaN");
    assert_string_equal(table_get_string(r, "N@odata.type"), "Edm.Double");
    assert_int_equal(table_get_double(r, "PI", &d), 0);
    assert_true(isinf(d) && d > 0);
    assert_int_equal(table_get_double(r, "NI", &d), 0);
    assert_true(isinf(d) && d < 0);

    int64_t v;
    assert_string_equal(table_get_string(r, "Count"), "9007199254740993");
    assert_string_equal(table_get_string(r, "Count@odata.type"), "Edm.Int64");
    assert_int_equal(table_get_int64(r, "Count", &v), 0);
    assert_true(v == INT64_C(9007199254740993));
    assert_int_equal(table_get_int64(r, "Min", &v), 0);
    assert_true(v == INT64_MIN);
    assert_string_equal(table_get_string(r, "LastSeen@odata.type"), "Edm.DateTime");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "Flag")));
    cJSON_Delete(r);

    /* replacing a value changes its annotation too */
    assert_int_equal(table_set_string(e, "Count", "now a string"), 0);
    assert_null(cJSON_GetObjectItem(e, "Count@odata.type"));
    assert_int_equal(table_set_int64(e, "Celsius", 5), 0);
    assert_string_equal(table_get_string(e, "Celsius@odata.type"), "Edm.Int64");
    assert_int_equal(cJSON_GetArraySize(e), 17);
    cJSON_Delete(e);
}

static void test_getters_tolerant(void **state)
{
    (void)state;
    cJSON *e = cJSON_Parse("{\"a\":\"42\",\"b\":42,\"c\":4.5,\"d\":\"x\",\"e\":\"99999999999999999999\","
                           "\"f\":1e300,\"g\":\"Infinity\",\"h\":true,\"i\":\"-7\",\"j\":\"\",\"k\":\"12abc\"}");
    int64_t v;
    double d;
    assert_int_equal(table_get_int64(e, "a", &v), 0); assert_true(v == 42);
    assert_int_equal(table_get_int64(e, "b", &v), 0); assert_true(v == 42);
    assert_int_equal(table_get_int64(e, "i", &v), 0); assert_true(v == -7);
    assert_int_equal(table_get_int64(e, "c", &v), -1);
    assert_int_equal(table_get_int64(e, "d", &v), -1);
    assert_int_equal(table_get_int64(e, "e", &v), -1); /* overflow */
    assert_int_equal(table_get_int64(e, "f", &v), -1);
    assert_int_equal(table_get_int64(e, "h", &v), -1);
    assert_int_equal(table_get_int64(e, "j", &v), -1);
    assert_int_equal(table_get_int64(e, "k", &v), -1);
    assert_int_equal(table_get_int64(e, "missing", &v), -1);
    assert_int_equal(table_get_double(e, "c", &d), 0); assert_true(d == 4.5);
    assert_int_equal(table_get_double(e, "a", &d), 0); assert_true(d == 42.0);
    assert_int_equal(table_get_double(e, "g", &d), 0); assert_true(isinf(d));
    assert_int_equal(table_get_double(e, "d", &d), -1);
    assert_int_equal(table_get_double(e, "h", &d), -1);
    assert_null(table_get_string(e, "b"));
    assert_string_equal(table_get_string(e, "d"), "x");
    assert_int_equal(table_get_int64(NULL, "a", &v), -1);
    cJSON_Delete(e);
}

static void test_setter_errors_and_metadata(void **state)
{
    (void)state;
    cJSON *e = cJSON_CreateObject();
    assert_int_equal(table_set_datetime(e, "t", "2024-01-02"), -1);
    assert_int_equal(table_set_datetime(e, "t", "2024-13-02T00:00:00Z"), -1);
    assert_int_equal(table_set_datetime(e, "t", "2024-01-02T00:00:00.12345678Z"), -1);
    assert_int_equal(table_set_datetime(e, "t", "2024-01-02T00:00:00+01:00"), -1);
    assert_int_equal(table_set_string(e, "s", NULL), -1);
    assert_int_equal(table_set_string(NULL, "s", "x"), -1);
    assert_int_equal(table_set_string(e, "", "x"), -1);
    assert_int_equal(cJSON_GetArraySize(e), 0);

    /* odata.* metadata from a read is not written back */
    cJSON *r = cJSON_Parse("{\"odata.etag\":\"W/x\",\"odata.metadata\":\"m\",\"PartitionKey\":\"p\",\"v\":1}");
    buf_t b = BUF_INIT;
    assert_int_equal(table_entity_print(&b, r), 0);
    assert_string_equal(buf_str(&b), "{\"PartitionKey\":\"p\",\"v\":1}");
    buf_free(&b);
    assert_int_equal(cJSON_GetArraySize(r), 4); /* original untouched */

    const char *pk, *rk;
    char err[200];
    assert_int_equal(table_entity_keys(r, &pk, &rk, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "RowKey"));
    table_set_string(r, "RowKey", "a#b");
    assert_int_equal(table_entity_keys(r, &pk, &rk, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid RowKey"));
    cJSON_Delete(r);
    cJSON_Delete(e);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(table_status_name(TABLE_PRECONDITION), "precondition failed (412)");
    assert_int_equal(table_status_from_http(204), TABLE_OK);
    assert_int_equal(table_status_from_http(412), TABLE_PRECONDITION);
    assert_int_equal(table_status_from_http(409), TABLE_CONFLICT);
    assert_int_equal(table_status_from_http(503), TABLE_UNAVAILABLE);
    assert_int_equal(table_status_from_http(403), TABLE_AUTH);
    assert_int_equal(table_status_from_http(400), TABLE_BAD_REQUEST);
    char code[64], msg[128];
    const char *j = "{\"odata.error\":{\"code\":\"EntityAlreadyExists\",\"message\":{\"lang\":\"en-US\","
                    "\"value\":\"The specified entity already exists.\\nRequestId:x\"}}}";
    table_error_from_body(j, strlen(j), code, sizeof(code), msg, sizeof(msg));
    assert_string_equal(code, "EntityAlreadyExists");
    assert_string_equal(msg, "The specified entity already exists.");
    const char *x = "<?xml version=\"1.0\"?><Error><Code>AuthorizationFailure</Code><Message>Server failed.\nRequestId:1</Message></Error>";
    table_error_from_body(x, strlen(x), code, sizeof(code), msg, sizeof(msg));
    assert_string_equal(code, "AuthorizationFailure");
    assert_string_equal(msg, "Server failed.");
    table_error_from_body("garbage", 7, code, sizeof(code), msg, sizeof(msg));
    assert_string_equal(code, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_key_escape),
        cmocka_unit_test(test_table_names),
        cmocka_unit_test(test_typed_round_trip),
        cmocka_unit_test(test_print_escapes_line_separators),
        cmocka_unit_test(test_getters_tolerant),
        cmocka_unit_test(test_setter_errors_and_metadata),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
