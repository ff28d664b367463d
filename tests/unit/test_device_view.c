/* test_device_view.c — DeviceState row → camelCase device object (telemetry/device_view.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "telemetry/device_view.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static cJSON *view_of(const char *row_json)
{
    cJSON *row = cJSON_Parse(row_json);
    assert_non_null(row);
    cJSON *v = device_view_from_row(row);
    cJSON_Delete(row);
    return v;
}

static void assert_json(const cJSON *v, const char *expected)
{
    cJSON *e = cJSON_Parse(expected);
    assert_non_null(e);
    if (!cJSON_Compare(v, e, 1)) {
        char *got = cJSON_PrintUnformatted(v);
        fail_msg("got %s\nwant %s", got, expected);
    }
    cJSON_Delete(e);
}

static void test_full_row_annotated(void **state)
{
    (void)state;
    /* As the Table service returns it: Int64 as annotated strings, DateTime annotated with 7
     * fractional digits, whole doubles annotated. */
    cJSON *v = view_of("{\"odata.etag\":\"W/\\\"x\\\"\",\"PartitionKey\":\"Sydney\",\"RowKey\":\"dev1\","
                       "\"Timestamp\":\"2024-05-01T10:00:01.0000000Z\",\"DeviceId\":\"dev1\","
                       "\"Celsius\":21.5,\"Humidity\":55.0,\"Humidity@odata.type\":\"Edm.Double\","
                       "\"hPa\":1013.25,\"Light\":300,\"Geo\":\"-33.86,151.21\",\"Id\":\"42\","
                       "\"Count@odata.type\":\"Edm.Int64\",\"Count\":\"12345678901\","
                       "\"InvalidCount@odata.type\":\"Edm.Int64\",\"InvalidCount\":\"2\","
                       "\"LastSeen@odata.type\":\"Edm.DateTime\",\"LastSeen\":\"2024-05-01T10:00:00.1234567Z\","
                       "\"Schema\":1}");
    assert_non_null(v);
    assert_json(v, "{\"deviceId\":\"dev1\",\"temperature\":21.5,\"humidity\":55,\"pressure\":1013.25,"
                   "\"light\":300,\"geo\":\"-33.86,151.21\",\"count\":12345678901,\"invalidCount\":2,"
                   "\"lastSeen\":\"2024-05-01T10:00:00.123Z\",\"messageId\":\"42\"}");
    cJSON_Delete(v);
}

static void test_missing_columns_are_null(void **state)
{
    (void)state;
    /* Only a RowKey: every measurement null, never zero; the id falls back to RowKey. */
    cJSON *v = view_of("{\"PartitionKey\":\"p\",\"RowKey\":\"lonely\",\"Celsius\":\"abc\",\"Count\":true}");
    assert_non_null(v);
    assert_json(v, "{\"deviceId\":\"lonely\",\"temperature\":null,\"humidity\":null,\"pressure\":null,"
                   "\"light\":null,\"geo\":null,\"count\":null,\"invalidCount\":null,\"lastSeen\":null,"
                   "\"messageId\":null}");
    cJSON_Delete(v);
}

static void test_numeric_id_and_odd_values(void **state)
{
    (void)state;
    cJSON *v = view_of("{\"RowKey\":\"r\",\"DeviceId\":\"d\",\"Id\":17,\"Celsius\":\"NaN\",\"Light\":0,"
                       "\"LastSeen\":\"not a date\",\"Count\":0}");
    assert_non_null(v);
    /* A real zero stays zero; NaN becomes null; an unparseable date becomes null. */
    assert_json(v, "{\"deviceId\":\"d\",\"temperature\":null,\"humidity\":null,\"pressure\":null,"
                   "\"light\":0,\"geo\":null,\"count\":0,\"invalidCount\":null,\"lastSeen\":null,"
                   "\"messageId\":\"17\"}");
    cJSON_Delete(v);
}

static void test_rejects_non_rows(void **state)
{
    (void)state;
    assert_null(device_view_from_row(NULL));
    cJSON *arr = cJSON_CreateArray();
    assert_null(device_view_from_row(arr));
    cJSON_Delete(arr);
    cJSON *v = view_of("{\"PartitionKey\":\"p\",\"Celsius\":1}");
    assert_null(v);
    v = view_of("{\"RowKey\":\"\",\"DeviceId\":\"\"}");
    assert_null(v);
}

static void test_iso8601(void **state)
{
    (void)state;
    char out[40];
    assert_int_equal(device_view_iso8601("2024-05-01T10:00:00Z", out, sizeof out), 0);
    assert_string_equal(out, "2024-05-01T10:00:00Z");
    assert_int_equal(device_view_iso8601("2024-05-01T10:00:00.5+00:00", out, sizeof out), 0);
    assert_string_equal(out, "2024-05-01T10:00:00.500Z");
    assert_int_equal(device_view_iso8601("2024-05-01T10:00:00.1234567Z", out, sizeof out), 0);
    assert_string_equal(out, "2024-05-01T10:00:00.123Z");
    assert_int_equal(device_view_iso8601("2024-05-01T10:00:00", out, sizeof out), 0);
    assert_string_equal(out, "2024-05-01T10:00:00Z");
    assert_int_equal(device_view_iso8601("2024-05-01T10:00:00+10:00", out, sizeof out), -1);
    assert_int_equal(device_view_iso8601("2024-05-01T10:00:00.Z", out, sizeof out), -1);
    assert_int_equal(device_view_iso8601("2024-05-01", out, sizeof out), -1);
    assert_int_equal(device_view_iso8601("", out, sizeof out), -1);
    assert_int_equal(device_view_iso8601(NULL, out, sizeof out), -1);
    assert_int_equal(device_view_iso8601("2024-05-01T10:00:00Z", out, 10), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_row_annotated),
        cmocka_unit_test(test_missing_columns_are_null),
        cmocka_unit_test(test_numeric_id_and_odd_values),
        cmocka_unit_test(test_rejects_non_rows),
        cmocka_unit_test(test_iso8601),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
