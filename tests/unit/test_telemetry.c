/* test_telemetry.c — EventTrigger's pure logic: normalisation, calibration maths and cache,
 * validation bounds, OCC backoff range, device id rules, batch decoding (wire forms, bad
 * events, exact sequence numbers, enqueued times) and folding a batch into a row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "telemetry/backoff.h"
#include "telemetry/batch.h"
#include "telemetry/calibrate.h"
#include "telemetry/device_id.h"
#include "telemetry/device_state.h"
#include "telemetry/devmap.h"
#include "telemetry/normalise.h"
#include "telemetry/validate.h"
#include "util/utf8.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tele_bounds_t BOUNDS = {-40, 80, 600, 1600, 0, 100};

static void norm(const char *json, tele_reading_t *r, cJSON **keep)
{
    *keep = cJSON_Parse(json);
    assert_non_null(*keep);
    tele_normalise(*keep, r);
}

/* ------------------------------------------------------------------ normalisation */

static void test_aliases_first_wins(void **state)
{
    (void)state;
    tele_reading_t r;
    cJSON *m;
    norm("{\"Celsius\":1,\"Temperature\":2,\"temperature\":3,\"HPa\":900,\"hPa\":901,\"Pressure\":902,"
         "\"Humidity\":50,\"Light\":7,\"Geo\":\"Perth\",\"Id\":\"m1\",\"DeviceId\":\"d1\"}", &r, &m);
    assert_false(r.invalid);
    assert_true(r.temperature == 3);
    assert_true(r.pressure == 902);
    assert_true(r.humidity == 50);
    assert_true(r.light == 7);
    assert_string_equal(r.geo, "Perth");
    assert_string_equal(r.message_id, "m1");
    assert_string_equal(r.claimed_device_id, "d1");
    assert_int_equal(r.has, TELE_HAS_TEMP | TELE_HAS_PRESSURE | TELE_HAS_HUMIDITY | TELE_HAS_LIGHT |
                                TELE_HAS_GEO | TELE_HAS_MSGID);
    cJSON_Delete(m);

    norm("{\"hPa\":1000.5,\"messageId\":42,\"deviceId\":\"x\",\"DeviceId\":\"y\"}", &r, &m);
    assert_true(r.pressure == 1000.5);
    assert_string_equal(r.message_id, "42");
    assert_string_equal(r.claimed_device_id, "x");
    assert_int_equal(r.has, TELE_HAS_PRESSURE | TELE_HAS_MSGID);
    cJSON_Delete(m);
}

static void test_absent_and_null_are_not_sent(void **state)
{
    (void)state;
    tele_reading_t r;
    cJSON *m;
    norm("{\"temperature\":null,\"humidity\":20}", &r, &m);
    assert_false(r.invalid);
    assert_int_equal(r.has, TELE_HAS_HUMIDITY);
    cJSON_Delete(m);
    /* null on the first alias falls through to the next one */
    norm("{\"temperature\":null,\"Celsius\":12}", &r, &m);
    assert_int_equal(r.has, TELE_HAS_TEMP);
    assert_true(r.temperature == 12);
    cJSON_Delete(m);
}

static void test_numeric_strings_and_bad_types(void **state)
{
    (void)state;
    static const struct { const char *json; int invalid; double value; } cases[] = {
        {"{\"temperature\":\"21.5\"}", 0, 21.5},
        {"{\"temperature\":\" -3e1 \"}", 0, -30},
        {"{\"temperature\":\"NaN\"}", 1, 0},
        {"{\"temperature\":\"nan\"}", 1, 0},
        {"{\"temperature\":\"Infinity\"}", 1, 0},
        {"{\"temperature\":\"-inf\"}", 1, 0},
        {"{\"temperature\":\"1e400\"}", 1, 0},
        {"{\"temperature\":\"0x10\"}", 1, 0},
        {"{\"temperature\":\"21.5abc\"}", 1, 0},
        {"{\"temperature\":\"\"}", 1, 0},
        {"{\"temperature\":true}", 1, 0},
        {"{\"temperature\":{}}", 1, 0},
        {"{\"temperature\":[1]}", 1, 0},
        {"{\"humidity\":\"abc\"}", 1, 0},
        {"{\"light\":false}", 1, 0},
        {"{\"geo\":5}", 1, 0},
        {"{\"messageId\":1.5}", 1, 0},
        {"{\"messageId\":{}}", 1, 0},
        {"{\"temperature\":1e308}", 0, 1e308},   /* parses; the range check rejects it */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tele_reading_t r;
        cJSON *m;
        norm(cases[i].json, &r, &m);
        if (r.invalid != cases[i].invalid) fail_msg("case %s: invalid=%d (%s)", cases[i].json, r.invalid, r.reason);
        if (r.invalid) assert_true(strlen(r.reason) > 0);
        if (!cases[i].invalid && cases[i].json[2] == 't') assert_true(r.temperature == cases[i].value);
        cJSON_Delete(m);
    }
}

static void test_long_text_rejected(void **state)
{
    (void)state;
    char geo[TELE_TEXT_MAX + 2];
    memset(geo, 'g', sizeof geo - 1);
    geo[sizeof geo - 1] = '\0';
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "geo", geo);
    tele_reading_t r;
    tele_normalise(m, &r);
    assert_true(r.invalid);
    assert_non_null(strstr(r.reason, "geo"));
    cJSON_Delete(m);
}

/* Text that is not UTF-8 would be stored one way (storage substitutes U+FFFD) and pushed
 * another: the reading is invalid instead, with a reason. */
static void test_invalid_utf8_text_rejected(void **state)
{
    (void)state;
    const char *fields[] = {"geo", "messageId"};
    for (size_t i = 0; i < 2; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, fields[i], "ab\xff\xfe");
        cJSON_AddNumberToObject(m, "temperature", 20);
        tele_reading_t r;
        tele_normalise(m, &r);
        assert_true(r.invalid);
        assert_non_null(strstr(r.reason, "UTF-8"));
        cJSON_Delete(m);
    }
    cJSON *ok = cJSON_CreateObject();
    cJSON_AddStringToObject(ok, "geo", "S\xc3\xa3o Paulo");
    tele_reading_t r;
    tele_normalise(ok, &r);
    assert_false(r.invalid);
    assert_string_equal(r.geo, "S\xc3\xa3o Paulo");
    cJSON_Delete(ok);
}

static void test_not_an_object(void **state)
{
    (void)state;
    cJSON *a = cJSON_Parse("[1,2]");
    tele_reading_t r;
    tele_normalise(a, &r);
    assert_true(r.invalid);
    cJSON_Delete(a);
}

/* ------------------------------------------------------------------ calibration */

static void test_calibration_maths(void **state)
{
    (void)state;
    cJSON *row = cJSON_Parse("{\"TemperatureSlope\":2,\"TemperatureYIntercept\":-1.5,"
                             "\"HumiditySlope\":\"0.5\",\"HumiditySlope@odata.type\":\"Edm.Double\","
                             "\"HumidityYIntercept\":10,\"PressureSlope\":3}");
    tele_calib_t c;
    tele_calib_from_entity(row, &c);
    cJSON_Delete(row);
    assert_true(c.found);
    assert_true(c.temperature.present);
    assert_true(c.humidity.present);
    assert_false(c.pressure.present);   /* no intercept → pass through */

    tele_reading_t raw, out;
    cJSON *m;
    norm("{\"temperature\":20,\"humidity\":40,\"pressure\":1000,\"light\":3}", &raw, &m);
    tele_calibrate(&c, &raw, &out);
    assert_true(out.temperature == 38.5);
    assert_true(out.humidity == 30);
    assert_true(out.pressure == 1000);
    assert_true(out.light == 3);
    /* the raw reading is untouched: a retry calibrates from it again, never twice */
    assert_true(raw.temperature == 20);
    tele_reading_t again;
    tele_calibrate(&c, &raw, &again);
    assert_true(again.temperature == 38.5);
    /* no calibration row: values pass through */
    tele_calibrate(NULL, &raw, &out);
    assert_true(out.temperature == 20);
    cJSON_Delete(m);
}

static void test_calibration_cache_ttl_and_negative(void **state)
{
    (void)state;
    calib_cache_t *cc = calib_cache_new(10, 100, 0);
    assert_non_null(cc);
    tele_calib_t c = {0}, got;
    assert_false(calib_cache_peek(cc, "d", 1000, &got));
    calib_cache_store(cc, "d", 1000, &c);          /* negative entry: no row */
    assert_true(calib_cache_peek(cc, "d", 1000 + 9999, &got));
    assert_false(got.found);
    assert_false(calib_cache_peek(cc, "d", 1000 + 10000, &got));   /* expired after the TTL */
    c.found = 1;
    c.temperature = (tele_linear_t){1, 2, 3};
    calib_cache_store(cc, "d", 20000, &c);
    assert_true(calib_cache_peek(cc, "d", 20001, &got));
    assert_true(got.found && got.temperature.slope == 2);
    calib_cache_free(cc);

    cc = calib_cache_new(0, 100, 0);                    /* TTL 0: never cached */
    calib_cache_store(cc, "d", 5, &c);
    assert_false(calib_cache_peek(cc, "d", 5, &got));
    calib_cache_free(cc);

    cc = calib_cache_new(100, 3, 0);                    /* bounded */
    char id[16];
    for (int i = 0; i < 10; i++) { snprintf(id, sizeof id, "d%d", i); calib_cache_store(cc, id, 0, &c); }
    assert_true(calib_cache_peek(cc, "d9", 1, &got));
    assert_false(calib_cache_peek(cc, "d0", 1, &got));
    calib_cache_free(cc);
}

/* ------------------------------------------------------------------ validation */

static int valid_json(const char *json, const tele_calib_t *c, char *reason)
{
    tele_reading_t raw, cal;
    cJSON *m;
    norm(json, &raw, &m);
    tele_calibrate(c, &raw, &cal);
    int ok = tele_validate(&BOUNDS, &cal, reason, 160);
    cJSON_Delete(m);
    return ok;
}

static void test_validation_bounds(void **state)
{
    (void)state;
    char reason[160];
    assert_true(valid_json("{\"temperature\":-40,\"pressure\":600,\"humidity\":0}", NULL, reason));
    assert_true(valid_json("{\"temperature\":80,\"pressure\":1600,\"humidity\":100}", NULL, reason));
    assert_true(valid_json("{\"light\":123456}", NULL, reason));
    assert_true(valid_json("{}", NULL, reason));
    assert_false(valid_json("{\"temperature\":80.0001}", NULL, reason));
    assert_non_null(strstr(reason, "temperature"));
    assert_false(valid_json("{\"temperature\":-40.5}", NULL, reason));
    assert_false(valid_json("{\"pressure\":599.9}", NULL, reason));
    assert_non_null(strstr(reason, "pressure"));
    assert_false(valid_json("{\"pressure\":1600.1}", NULL, reason));
    assert_false(valid_json("{\"humidity\":-0.1}", NULL, reason));
    assert_false(valid_json("{\"humidity\":100.01}", NULL, reason));
    assert_false(valid_json("{\"temperature\":1e308}", NULL, reason));
    assert_false(valid_json("{\"temperature\":\"NaN\"}", NULL, reason));
    /* calibration happens first: 90 raw → 45 calibrated is fine, 30 → 60 is not for humidity */
    tele_calib_t c = {1, {1, 0.5, 0}, {1, 2, 0}, {0, 1, 0}};
    assert_true(valid_json("{\"temperature\":90}", &c, reason));
    assert_false(valid_json("{\"humidity\":60}", &c, reason));
    /* calibration overflowing to infinity is invalid */
    tele_calib_t big = {1, {1, 1e300, 0}, {0, 1, 0}, {0, 1, 0}};
    assert_false(valid_json("{\"temperature\":1e10}", &big, reason));
    assert_non_null(strstr(reason, "finite"));
    /* custom bounds */
    tele_bounds_t b = {0, 10, 600, 1600, 0, 100};
    tele_reading_t r = {0};
    r.has = TELE_HAS_TEMP;
    r.temperature = 11;
    assert_false(tele_validate(&b, &r, reason, sizeof reason));
}

/* ------------------------------------------------------------------ backoff */

static void test_backoff_range(void **state)
{
    (void)state;
    static const long want[] = {40, 80, 160, 320, 640, 1000, 1000, 1000};
    for (int a = 0; a < 8; a++) assert_int_equal(occ_backoff_upper(40, 1000, a), want[a]);
    assert_int_equal(occ_backoff_upper(40, 1000, 1000), 1000);   /* no overflow */
    uint64_t rng;
    occ_rng_seed(&rng, 42);
    for (int a = 1; a <= 10; a++) {
        long lo = 100000, hi = -1, up = occ_backoff_upper(40, 1000, a);
        for (int i = 0; i < 20000; i++) {
            long v = occ_backoff_ms(40, 1000, a, &rng);
            if (v < 40 || v > up) fail_msg("attempt %d: %ld outside [40, %ld]", a, v, up);
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        assert_int_equal(lo, 40);   /* both ends of the range are reachable */
        assert_int_equal(hi, up);
    }
    /* uniform: the mean of attempt 5 ([40,1000]) is near 520 */
    double sum = 0;
    for (int i = 0; i < 20000; i++) sum += (double)occ_backoff_ms(40, 1000, 5, &rng);
    assert_true(fabs(sum / 20000 - 520) < 15);
}

/* ------------------------------------------------------------------ device ids */

static void test_device_id_rules(void **state)
{
    (void)state;
    char err[160];
    char id[300];
    assert_true(device_id_valid("dev-1_A.b:c", err, sizeof err));
    assert_false(device_id_valid("", err, sizeof err));
    assert_false(device_id_valid(NULL, err, sizeof err));
    memset(id, 'a', 128); id[128] = '\0';
    assert_true(device_id_valid(id, err, sizeof err));
    memset(id, 'a', 129); id[129] = '\0';
    assert_false(device_id_valid(id, err, sizeof err));
    assert_non_null(strstr(err, "129"));
    /* 128 two-byte characters are 128 characters, not 256 */
    id[0] = '\0';
    for (int i = 0; i < 64; i++) strcat(id, "\xc3\xa9\xc3\xa9");
    assert_true(device_id_valid(id, err, sizeof err));
    /* every id IoT Hub allows, and what Table keys forbid, is a device id now (its RowKey is
     * encoded); only invalid UTF-8 is not */
    const char *good[] = {"#hash", "q?", "a/b", "a\\b", "a\tb", "a\x7f" "b", "a\xc2\x85z", "~x",
                          "-:.+%_#*?!(),=@;$'"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!device_id_valid(good[i], err, sizeof err)) fail_msg("id %zu refused: %s", i, err);
    assert_false(device_id_valid("\xff\xfe", err, sizeof err));
    assert_false(device_id_valid("a\xed\xa0\x80", err, sizeof err));   /* a surrogate */

    int spoofed;
    assert_string_equal(device_id_choose("sys", "sys", &spoofed), "sys");
    assert_false(spoofed);
    assert_string_equal(device_id_choose("sys", "other", &spoofed), "sys");
    assert_true(spoofed);
    assert_string_equal(device_id_choose(NULL, "payload", &spoofed), "payload");
    assert_false(spoofed);
    assert_null(device_id_choose(NULL, NULL, &spoofed));
}

static void row_key_round_trip(const char *id, const char *want)
{
    char rk[DEVICE_ROW_KEY_MAX], back[DEVICE_ROW_KEY_MAX], why[128];
    int n = device_row_key(id, rk, sizeof rk);
    assert_true(n >= 0);
    assert_int_equal((size_t)n, strlen(rk));
    if (want) assert_string_equal(rk, want);
    if (!table_key_valid(rk, why, sizeof why)) fail_msg("RowKey of '%s' is not a table key: %s", id, why);
    assert_null(strstr(rk, "\xe2\x80\xa8"));
    assert_null(strstr(rk, "\xe2\x80\xa9"));
    assert_int_equal(device_id_from_row_key(rk, back, sizeof back), (int)strlen(id));
    assert_string_equal(back, id);
}

static void test_row_key_encoding(void **state)
{
    (void)state;
    /* plain ids keep their RowKey: rows written before stay where they are */
    row_key_round_trip("dev-1_A.b:c", "dev-1_A.b:c");
    row_key_round_trip("100%", "100%");
    row_key_round_trip("a%23b", "a%23b");
    row_key_round_trip("-:.+%_*!(),=@;$'", "-:.+%_*!(),=@;$'");
    row_key_round_trip("\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9");
    /* the others are marked with a leading '~' and escaped */
    row_key_round_trip("#hash", "~~23hash");
    row_key_round_trip("q?", "~q~3F");
    row_key_round_trip("a/b\\c", "~a~2Fb~5Cc");
    row_key_round_trip("a#b", "~a~23b");          /* never the plain "a%23b" or "a~23b" */
    row_key_round_trip("~x", "~~7Ex");
    row_key_round_trip("x~", "x~");               /* '~' only matters first or beside an escape */
    row_key_round_trip("x~#", "~x~7E~23");
    row_key_round_trip("t\tn\n\x01\x7f", "~t~09n~0A~01~7F");
    row_key_round_trip("c1\xc2\x85\xc2\x9f", "~c1~85~9F");
    row_key_round_trip("ls\xe2\x80\xa8ps\xe2\x80\xa9", "~ls~Lps~P");
    row_key_round_trip("-:.+%_#*?!(),=@;$'", "~-:.+%_~23*~3F!(),=@;$'");   /* all IoT Hub allows */
    /* the longest id still fits in a key */
    char id[DEVICE_ID_MAX_CHARS * 3 + 1] = "";
    for (int i = 0; i < DEVICE_ID_MAX_CHARS; i++) strcat(id, "\xe2\x80\xa8");
    row_key_round_trip(id, NULL);
    for (int i = 0; i < DEVICE_ID_MAX_CHARS; i++) id[i] = '#';
    id[DEVICE_ID_MAX_CHARS] = '\0';
    row_key_round_trip(id, NULL);

    /* one-to-one over random ids from the troublesome alphabet */
    const char *alpha[] = {"a", "~", "#", "?", "/", "\\", "%", "2", "3", "F", "L", "P", "\t", "\xc2\x85",
                           "\xe2\x80\xa8", "\xe2\x80\xa9", "\xc3\xa9"};
    size_t na = sizeof alpha / sizeof alpha[0];
    uint64_t rng;
    occ_rng_seed(&rng, 7);
    enum { N = 3000 };
    char (*keys)[DEVICE_ROW_KEY_MAX] = malloc(N * sizeof *keys);
    char (*ids)[64] = malloc(N * sizeof *ids);
    for (int i = 0; i < N; i++) {
        ids[i][0] = '\0';
        int len = 1 + (int)(occ_rng_next(&rng) % 6);
        for (int k = 0; k < len; k++) strcat(ids[i], alpha[occ_rng_next(&rng) % na]);
        row_key_round_trip(ids[i], NULL);
        device_row_key(ids[i], keys[i], DEVICE_ROW_KEY_MAX);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            if (strcmp(ids[i], ids[j]) != 0 && strcmp(keys[i], keys[j]) == 0) fail_msg("'%s' and '%s' share a key", ids[i], ids[j]);
    free(keys);
    free(ids);

    /* keys that no id has: malformed or non-canonical escapes */
    char out[DEVICE_ROW_KEY_MAX];
    const char *bad[] = {"~a~", "~a~2", "~a~ZZ", "~~41", "~abc", "~a~2f", "~~00", "~~A0x", "ls\xe2\x80\xa8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (device_id_from_row_key(bad[i], out, sizeof out) >= 0) fail_msg("'%s' decoded to '%s'", bad[i], out);
    assert_int_equal(device_row_key("#", out, 3), -1);   /* too small */
}

/* ------------------------------------------------------------------ batch decoding */

/* The real host's form: everything an array is a string holding JSON; bodies are strings. */
static const char *WIRE =
    "{\"events\":\"[\\\"{\\\\\\\"temperature\\\\\\\":21.5,\\\\\\\"deviceId\\\\\\\":\\\\\\\"evil\\\\\\\"}\\\","
    "\\\"not json\\\",\\\"[1,2]\\\",\\\"42\\\",\\\"{\\\\\\\"humidity\\\\\\\":5}\\\",\\\"{\\\\\\\"deviceId\\\\\\\":\\\\\\\"p1\\\\\\\"}\\\"]\","
    "\"meta\":{\"PartitionContext\":{\"FullyQualifiedNamespace\":\"NS.servicebus.windows.net\","
    "\"EventHubName\":\"hub\",\"PartitionId\":\"3\"},"
    "\"SequenceNumberArray\":\"[9007199254740993,2,3,null,5,6]\","
    "\"EnqueuedTimeUtcArray\":\"[\\\"2026-01-02T03:04:05.1234567\\\",\\\"2026-01-02T13:04:05+10:00\\\","
    "\\\"bad\\\",\\\"2026-01-02T03:04:05Z\\\",\\\"2026-01-02T03:04:05.123456789\\\",\\\"2026-01-02 03:04:05\\\"]\","
    "\"SystemPropertiesArray\":\"[{\\\"iothub-connection-device-id\\\":\\\"dev1\\\"},"
    "{\\\"iothub-connection-device-id\\\":\\\"dev1\\\"},{},{\\\"iothub-connection-device-id\\\":\\\"a\\\\u0000b\\\"},"
    "{\\\"iothub-connection-device-id\\\":\\\"dev2\\\",\\\"SequenceNumber\\\":77},{}]\"}}";

static void test_batch_wire_form(void **state)
{
    (void)state;
    cJSON *doc = cJSON_Parse(WIRE);
    assert_non_null(doc);
    tele_batch_t b;
    char err[256];
    assert_int_equal(tele_batch_decode(&b, cJSON_GetObjectItem(doc, "events"), cJSON_GetObjectItem(doc, "meta"),
                                       err, sizeof err), 0);
    assert_int_equal(b.n, 6);
    /* 0: authenticated dev1, payload claims "evil" → spoofing, processed as dev1; exact int64 seq */
    assert_false(b.ev[0].rejected);
    assert_string_equal(b.ev[0].device_id, "dev1");
    assert_true(b.ev[0].spoofed);
    assert_true(b.ev[0].has_seq);
    assert_true(b.ev[0].seq == 9007199254740993LL);
    assert_string_equal(b.ev[0].enqueued, "2026-01-02T03:04:05.1234567Z");
    assert_true(b.ev[0].reading.temperature == 21.5);
    /* 1: non-JSON body from an authenticated device: that device's invalid reading */
    assert_false(b.ev[1].rejected);
    assert_string_equal(b.ev[1].device_id, "dev1");
    assert_true(b.ev[1].reading.invalid);
    assert_string_equal(b.ev[1].enqueued, "2026-01-02T03:04:05.0000000Z");   /* +10:00 → UTC */
    /* 2: an array body with no device id anywhere: rejected */
    assert_true(b.ev[2].rejected);
    assert_non_null(strstr(b.ev[2].reject_reason, "array"));
    assert_string_equal(b.ev[2].enqueued, "");
    /* 3: a NUL in the authenticated id: rejected (never cut to "a"); null sequence number */
    assert_true(b.ev[3].rejected);
    assert_non_null(strstr(b.ev[3].reject_reason, "NUL"));
    assert_false(b.ev[3].has_seq);
    /* 4: plain reading from dev2 */
    assert_false(b.ev[4].rejected);
    assert_string_equal(b.ev[4].device_id, "dev2");
    assert_true(b.ev[4].seq == 5);
    assert_string_equal(b.ev[4].enqueued, "2026-01-02T03:04:05.1234567Z");
    /* 5: no system property: payload deviceId is used (plain Event Hubs) */
    assert_false(b.ev[5].rejected);
    assert_string_equal(b.ev[5].device_id, "p1");
    assert_false(b.ev[5].spoofed);
    char want[17];
    tele_stream_id("ns.servicebus.windows.net", "HUB", "3", want);
    assert_string_equal(b.stream, want);   /* namespace and hub compare case-insensitively */
    char other[17];
    tele_stream_id("ns.servicebus.windows.net", "hub", "4", other);
    assert_string_not_equal(b.stream, other);
    tele_batch_free(&b);
    cJSON_Delete(doc);
}

static void test_batch_decoded_forms_and_errors(void **state)
{
    (void)state;
    tele_batch_t b;
    char err[256];
    /* already-decoded: an array of objects, metadata arrays as arrays */
    cJSON *ev = cJSON_Parse("[{\"deviceId\":\"x\",\"temperature\":1},\"{\\\"deviceId\\\":\\\"y\\\"}\",7,null]");
    cJSON *meta = cJSON_Parse("{\"SequenceNumberArray\":[10,11,12,13],\"PartitionContext\":\"{\\\"PartitionId\\\":\\\"1\\\"}\"}");
    assert_int_equal(tele_batch_decode(&b, ev, meta, err, sizeof err), 0);
    assert_int_equal(b.n, 4);
    assert_string_equal(b.ev[0].device_id, "x");
    assert_true(b.ev[0].seq == 10);
    assert_string_equal(b.ev[1].device_id, "y");
    assert_true(b.ev[2].rejected);
    assert_non_null(strstr(b.ev[2].reject_reason, "number"));
    assert_true(b.ev[3].rejected);
    char want[17];
    tele_stream_id(NULL, NULL, "1", want);
    assert_string_equal(b.stream, want);
    tele_batch_free(&b);
    cJSON_Delete(ev);
    cJSON_Delete(meta);

    /* a missing Data.events is an empty batch; a number is an envelope error */
    assert_int_equal(tele_batch_decode(&b, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(b.n, 0);
    tele_batch_free(&b);
    cJSON *num = cJSON_CreateNumber(3);
    assert_int_equal(tele_batch_decode(&b, num, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "events"));
    tele_batch_free(&b);
    cJSON_Delete(num);
}

/* Decoded sequence numbers that are not int64 integers (1e999 parses as +inf, 1e30, 2.5) are
 * no sequence numbers: never cast (undefined; INT64_MIN on x86, which made the event a
 * "replay" and dropped it). */
static void test_batch_bad_decoded_sequence_numbers(void **state)
{
    (void)state;
    tele_batch_t b;
    char err[256];
    cJSON *ev = cJSON_Parse("[{\"deviceId\":\"x\"},{\"deviceId\":\"x\"},{\"deviceId\":\"x\"},{\"deviceId\":\"x\"},"
                            "{\"deviceId\":\"x\"}]");
    cJSON *meta = cJSON_Parse("{\"SequenceNumberArray\":[1e999,1e30,2.5,-1e999,42],"
                              "\"PartitionContext\":{\"PartitionId\":\"1\"}}");
    assert_int_equal(tele_batch_decode(&b, ev, meta, err, sizeof err), 0);
    assert_int_equal(b.n, 5);
    for (int i = 0; i < 4; i++) assert_false(b.ev[i].has_seq);
    assert_true(b.ev[4].has_seq);
    assert_true(b.ev[4].seq == 42);
    tele_batch_free(&b);
    cJSON_Delete(meta);
    /* the same through SystemPropertiesArray[i].SequenceNumber */
    meta = cJSON_Parse("{\"SystemPropertiesArray\":[{\"SequenceNumber\":1e999},{\"SequenceNumber\":-1e300},"
                       "{\"x-opt-sequence-number\":0.5},{},{\"SequenceNumber\":7}],"
                       "\"PartitionContext\":{\"PartitionId\":\"1\"}}");
    assert_int_equal(tele_batch_decode(&b, ev, meta, err, sizeof err), 0);
    for (int i = 0; i < 4; i++) assert_false(b.ev[i].has_seq);
    assert_true(b.ev[4].has_seq);
    assert_true(b.ev[4].seq == 7);
    tele_batch_free(&b);
    cJSON_Delete(meta);
    cJSON_Delete(ev);
}

/* More events than any trigger batch: refused with a message, nothing allocated per event. */
static void test_batch_too_many_events(void **state)
{
    (void)state;
    cJSON *ev = cJSON_CreateArray();
    for (int i = 0; i <= TELE_MAX_EVENTS; i++) cJSON_AddItemToArray(ev, cJSON_CreateObject());
    tele_batch_t b;
    char err[256];
    assert_int_equal(tele_batch_decode(&b, ev, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "at most"));
    assert_null(b.ev);
    tele_batch_free(&b);
    cJSON_DeleteItemFromArray(ev, 0); /* exactly the limit is fine */
    assert_int_equal(tele_batch_decode(&b, ev, NULL, err, sizeof err), 0);
    assert_int_equal((int)b.n, TELE_MAX_EVENTS);
    tele_batch_free(&b);
    cJSON_Delete(ev);
}

/* Without PartitionContext.PartitionId the numbers cannot be compared (they restart in every
 * partition): none is used, so no event can be mistaken for a replay. */
static void test_batch_without_partition_has_no_sequence(void **state)
{
    (void)state;
    tele_batch_t b;
    char err[256];
    cJSON *ev = cJSON_Parse("[{\"deviceId\":\"x\"},{\"deviceId\":\"x\"}]");
    const char *metas[] = {
        "{\"SequenceNumberArray\":\"[5,6]\"}",
        "{\"SequenceNumberArray\":\"[5,6]\",\"PartitionContext\":{\"EventHubName\":\"hub\"}}",
        "{\"SequenceNumberArray\":\"[5,6]\",\"PartitionContext\":{\"PartitionId\":\"\"}}",
    };
    for (size_t m = 0; m < sizeof metas / sizeof metas[0]; m++) {
        cJSON *meta = cJSON_Parse(metas[m]);
        assert_int_equal(tele_batch_decode(&b, ev, meta, err, sizeof err), 0);
        assert_int_equal(b.n, 2);
        assert_false(b.ev[0].has_seq);
        assert_false(b.ev[1].has_seq);
        tele_batch_free(&b);
        cJSON_Delete(meta);
    }
    cJSON *meta = cJSON_Parse("{\"SequenceNumberArray\":\"[5,6]\",\"PartitionContext\":{\"PartitionId\":\"3\"}}");
    assert_int_equal(tele_batch_decode(&b, ev, meta, err, sizeof err), 0);
    assert_true(b.ev[0].has_seq && b.ev[0].seq == 5);
    assert_true(b.ev[1].has_seq && b.ev[1].seq == 6);
    tele_batch_free(&b);
    cJSON_Delete(meta);
    cJSON_Delete(ev);
}

static void test_time_and_int_array(void **state)
{
    (void)state;
    char out[TELE_TIME_LEN];
    assert_int_equal(tele_time_normalise("2026-03-04T05:06:07", out), 0);
    assert_string_equal(out, "2026-03-04T05:06:07.0000000Z");
    assert_int_equal(tele_time_normalise("2026-03-04T00:30:00-01:30", out), 0);
    assert_string_equal(out, "2026-03-04T02:00:00.0000000Z");
    assert_int_equal(tele_time_normalise("2025-12-31T23:59:59.9Z", out), 0);
    assert_string_equal(out, "2025-12-31T23:59:59.9000000Z");
    assert_int_equal(tele_time_normalise("2024-02-29T12:00:00.12345678", out), 0);   /* leap day; 7 digits kept */
    assert_string_equal(out, "2024-02-29T12:00:00.1234567Z");
    assert_int_equal(tele_time_normalise("2000-02-29T00:00:00+00:00", out), 0);
    assert_string_equal(out, "2000-02-29T00:00:00.0000000Z");
    const char *bad[] = {"", "yesterday", "2026-13-01T00:00:00", "2026-01-01", "2026-01-01T00:00:00Q",
                         "2026-01-01T25:00:00", "2026-01-01T00:00:00.", "2026-02-29T00:00:00",
                         "2026-04-31T00:00:00", "2100-02-29T00:00:00", "0000-01-01T00:00:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (tele_time_normalise(bad[i], out) == 0) fail_msg("accepted '%s'", bad[i]);

    int64_t v[4];
    unsigned char has[4];
    assert_int_equal(tele_parse_int64_array(" [ 1 , null,9223372036854775807 ] ", v, has, 4), 3);
    assert_true(v[0] == 1 && has[0] && !has[1] && v[2] == INT64_MAX);
    assert_int_equal(tele_parse_int64_array("[]", v, has, 4), 0);
    assert_int_equal(tele_parse_int64_array("[1.5]", v, has, 4), -1);
    assert_int_equal(tele_parse_int64_array("[1,", v, has, 4), -1);
    assert_int_equal(tele_parse_int64_array("[99999999999999999999]", v, has, 4), -1);
}

/* ------------------------------------------------------------------ fold */

static tele_batch_t fold_batch(cJSON **doc, const char *events, const char *meta)
{
    tele_batch_t b;
    char err[256];
    cJSON *e = cJSON_Parse(events);
    cJSON *m = cJSON_Parse(meta);
    assert_non_null(e);
    assert_non_null(m);
    assert_int_equal(tele_batch_decode(&b, e, m, err, sizeof err), 0);
    /* chain all events (single-device batches in these tests) */
    for (size_t i = 0; i + 1 < b.n; i++) b.ev[i].next = (int)i + 1;
    *doc = cJSON_CreateArray();
    cJSON_AddItemToArray(*doc, e);
    cJSON_AddItemToArray(*doc, m);
    return b;
}

static void test_fold_apply_replay_stream(void **state)
{
    (void)state;
    cJSON *doc;
    tele_batch_t b = fold_batch(&doc,
        "[{\"deviceId\":\"d\",\"temperature\":10,\"geo\":\"Syd\"},{\"deviceId\":\"d\",\"temperature\":500},"
        "{\"deviceId\":\"d\",\"humidity\":50,\"messageId\":\"m3\"}]",
        "{\"SequenceNumberArray\":\"[5,6,7]\",\"PartitionContext\":{\"PartitionId\":\"0\"},"
        "\"EnqueuedTimeUtcArray\":\"[\\\"2026-01-01T00:00:03\\\",\\\"2026-01-01T00:00:09\\\",\\\"2026-01-01T00:00:02\\\"]\"}");
    tele_calib_t cal = {1, {1, 2, 1}, {0, 1, 0}, {0, 1, 0}};   /* temperature * 2 + 1 */
    assert_int_equal(tele_mark_validity(&b, 0, &cal, &BOUNDS, NULL, NULL), 1);

    device_state_t cur, next;
    memset(&cur, 0, sizeof cur);
    cur.exists = 1;
    cur.has = TELE_HAS_PRESSURE | TELE_HAS_LIGHT;
    cur.hpa = 1000; cur.light = 3;
    cur.count = 10; cur.invalid_count = 1;
    snprintf(cur.last_seen, sizeof cur.last_seen, "2025-06-01T00:00:00.0000000Z");
    fold_stats_t st;
    assert_int_equal(device_state_fold(&cur, &b, 0, &cal, "2026-09-09T00:00:00.0000000Z", &next, &st), 1);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.invalid, 1);
    assert_int_equal(st.replayed, 0);
    assert_true(next.count == 12);
    assert_true(next.invalid_count == 2);
    assert_true(next.celsius == 21);            /* 10 * 2 + 1: calibrated once */
    assert_true(next.humidity == 50);
    assert_true(next.hpa == 1000 && next.light == 3);   /* absent fields keep their values */
    assert_string_equal(next.geo, "Syd");
    assert_string_equal(next.id, "m3");
    /* LastSeen: newest ACCEPTED event (the invalid one at :09 does not count) */
    assert_string_equal(next.last_seen, "2026-01-01T00:00:03.0000000Z");
    assert_true(next.has_seq && next.last_seq == 7);
    assert_string_equal(next.stream, b.stream);

    /* replaying the same batch onto the result changes nothing */
    device_state_t again;
    assert_int_equal(device_state_fold(&next, &b, 0, &cal, "x", &again, &st), 0);
    assert_int_equal(st.replayed, 3);
    assert_true(again.count == 12 && again.invalid_count == 2);

    /* a partly applied batch (LastSeq 5) applies only what is newer */
    device_state_t part = next;
    part.last_seq = 5;
    part.count = 11;
    assert_int_equal(device_state_fold(&part, &b, 0, &cal, "x", &again, &st), 1);
    assert_int_equal(st.replayed, 1);
    assert_true(again.count == 12);

    /* the same sequence numbers from ANOTHER stream are applied, and it becomes the stream */
    device_state_t other = next;
    snprintf(other.stream, sizeof other.stream, "0123456789abcdef");
    other.last_seq = 1000;
    assert_int_equal(device_state_fold(&other, &b, 0, &cal, "x", &again, &st), 1);
    assert_int_equal(st.replayed, 0);
    assert_true(again.count == 14);
    assert_true(again.last_seq == 7);
    assert_string_equal(again.stream, b.stream);
    /* ...and the previous stream is remembered, so ITS replays are still recognised */
    int64_t seq = 0;
    assert_true(device_state_stream_seq(&again, "0123456789abcdef", &seq));
    assert_true(seq == 1000);
    assert_false(device_state_stream_seq(&again, "ffffffffffffffff", &seq));
    device_state_t third;
    assert_int_equal(device_state_fold(&again, &b, 0, &cal, "x", &third, &st), 0);
    assert_int_equal(st.replayed, 3);

    /* stream history is bounded: the oldest streams are forgotten */
    device_state_t many = next;
    for (int i = 0; i < DEVICE_OLDER_STREAMS + 5; i++) {
        snprintf(many.stream, sizeof many.stream, "%016x", i + 1);
        many.has_seq = 1;
        many.last_seq = i;
        assert_int_equal(device_state_fold(&many, &b, 0, &cal, "x", &many, &st), 1);
    }
    assert_int_equal(many.nolder, DEVICE_OLDER_STREAMS);
    assert_string_equal(many.stream, b.stream);
    assert_true(device_state_stream_seq(&many, "0000000000000014", &seq) && seq == 19);
    assert_false(device_state_stream_seq(&many, "0000000000000001", &seq));
    tele_batch_free(&b);
    cJSON_Delete(doc);
}

/* Text longer than a reading carries, in a row another program wrote, is cut at a character
 * boundary: cut inside a UTF-8 sequence it would be written back as bytes the Table service
 * refuses (fuzz_table_entity: "a" + 200 x "é" as Geo came back with half an "é" at the end). */
static void test_row_long_text_cut_at_character(void **state)
{
    (void)state;
    char geo[1 + 2 * 200 + 1] = "a", id[300];
    for (int i = 0; i < 200; i++) memcpy(geo + 1 + 2 * i, "\xc3\xa9", 2);
    geo[sizeof geo - 1] = '\0';
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "RowKey", "dev");
    cJSON_AddStringToObject(row, "Geo", geo);
    cJSON_AddStringToObject(row, "Id", id);
    device_state_t s;
    device_state_from_entity(row, NULL, &s);
    assert_true(s.has & TELE_HAS_GEO);
    assert_int_equal(strlen(s.geo), 255);   /* "a" and 127 whole characters, not 256 bytes */
    assert_true(utf8_valid(s.geo, strlen(s.geo)));
    assert_memory_equal(s.geo, geo, 255);
    assert_int_equal(strlen(s.id), TELE_TEXT_MAX);
    cJSON *e = device_state_to_entity(&s, "pk", "dev", "dev");
    assert_non_null(e);
    const char *g = table_get_string(e, "Geo");
    assert_true(utf8_valid(g, strlen(g)));
    cJSON_Delete(e);
    cJSON_Delete(row);
}

static void test_row_round_trip(void **state)
{
    (void)state;
    device_state_t s, back;
    memset(&s, 0, sizeof s);
    s.exists = 1;
    s.has = TELE_HAS_TEMP | TELE_HAS_GEO | TELE_HAS_MSGID;
    s.celsius = 20;   /* whole double must stay a Double, not become an Int32 */
    snprintf(s.geo, sizeof s.geo, "Sydney");
    snprintf(s.id, sizeof s.id, "m");
    s.count = 5000000000LL;
    s.invalid_count = 3;
    snprintf(s.last_seen, sizeof s.last_seen, "2026-01-01T00:00:00.0000000Z");
    snprintf(s.stream, sizeof s.stream, "00112233445566ff");
    s.has_seq = 1;
    s.last_seq = 9007199254740993LL;
    s.nolder = 2;
    snprintf(s.older[0].id, sizeof s.older[0].id, "aaaaaaaaaaaaaaaa");
    s.older[0].seq = 12;
    snprintf(s.older[1].id, sizeof s.older[1].id, "bbbbbbbbbbbbbbbb");
    s.older[1].seq = -1;
    cJSON *e = device_state_to_entity(&s, "pk", "~d~23v", "d#v");
    assert_non_null(e);
    assert_string_equal(table_get_string(e, "Count@odata.type"), "Edm.Int64");
    assert_string_equal(table_get_string(e, "LastSeen@odata.type"), "Edm.DateTime");
    assert_string_equal(table_get_string(e, "RowKey"), "~d~23v");
    assert_string_equal(table_get_string(e, "DeviceId"), "d#v");
    assert_null(cJSON_GetObjectItem(e, "Humidity"));   /* never sent → not written */
    device_state_from_entity(e, "W/\"etag\"", &back);
    assert_int_equal(back.has, s.has);
    assert_true(back.celsius == 20 && back.count == s.count && back.invalid_count == 3);
    assert_true(back.last_seq == s.last_seq && back.has_seq);
    assert_string_equal(back.stream, s.stream);
    assert_string_equal(back.last_seen, s.last_seen);
    assert_string_equal(back.etag, "W/\"etag\"");
    assert_string_equal(table_get_string(e, "OlderStreams"), "aaaaaaaaaaaaaaaa:12;bbbbbbbbbbbbbbbb:-1");
    assert_int_equal(back.nolder, 2);
    assert_string_equal(back.older[1].id, "bbbbbbbbbbbbbbbb");
    assert_true(back.older[1].seq == -1);
    cJSON_Delete(e);

    etag_cache_t *ec = etag_cache_new(10);
    device_state_t got;
    assert_false(etag_cache_get(ec, "dev", &got));
    etag_cache_put(ec, "dev", &back);
    assert_true(etag_cache_get(ec, "dev", &got));
    assert_string_equal(got.etag, back.etag);
    etag_cache_drop(ec, "dev");
    assert_false(etag_cache_get(ec, "dev", &got));
    etag_cache_free(ec);
}

/* The cache keeps rows packed; unpacking gives back exactly what was put in. */
static void test_packed_rows(void **state)
{
    (void)state;
    device_state_t s, back;
    memset(&s, 0, sizeof s);
    s.exists = 1;
    snprintf(s.etag, sizeof s.etag, "W/\"datetime'2026-01-01T00%%3A00%%3A00.1234567Z'\"");
    s.has = TELE_HAS_HUMIDITY | TELE_HAS_LIGHT | TELE_HAS_GEO | TELE_HAS_MSGID;
    s.humidity = 55.5;
    s.light = -0.0;
    memset(s.geo, 'g', TELE_TEXT_MAX);   /* the longest text a row holds */
    s.geo[TELE_TEXT_MAX] = '\0';
    memset(s.id, 'i', 255);
    s.id[255] = '\0';
    s.count = INT64_MAX;
    s.invalid_count = 7;
    snprintf(s.last_seen, sizeof s.last_seen, "2026-01-01T00:00:00.0000000Z");
    snprintf(s.stream, sizeof s.stream, "0011223344556677");
    s.has_seq = 1;
    s.last_seq = -5;
    s.nolder = DEVICE_OLDER_STREAMS;
    for (int i = 0; i < DEVICE_OLDER_STREAMS; i++) {
        snprintf(s.older[i].id, sizeof s.older[i].id, "%016x", i);
        s.older[i].seq = i * 1000;
    }
    unsigned char buf[DEVICE_STATE_PACKED_MAX];
    size_t n = device_state_pack(&s, buf, sizeof buf);
    assert_true(n > 0 && n < sizeof s);
    assert_int_equal(device_state_unpack(buf, n, &back), 0);
    assert_memory_equal(&back, &s, sizeof s);   /* s was zeroed first, so padding matches */
    assert_int_equal(device_state_unpack(buf, n - 1, &back), -1);
    /* a typical row is a fraction of device_state_t */
    device_state_t small;
    memset(&small, 0, sizeof small);
    small.exists = 1;
    snprintf(small.etag, sizeof small.etag, "W/\"datetime'2026-01-01T00%%3A00%%3A00.1234567Z'\"");
    small.has = TELE_HAS_TEMP;
    small.count = 3;
    snprintf(small.stream, sizeof small.stream, "0011223344556677");
    small.has_seq = 1;
    assert_true(device_state_pack(&small, buf, sizeof buf) < 150);
}

/* Guessing that unknown devices are new: only after enough evidence, and it fades. */
static void test_guess_new(void **state)
{
    (void)state;
    etag_cache_t *ec = etag_cache_new(10);
    for (int i = 0; i < ETAG_NEW_SAMPLES - 1; i++) etag_cache_note_new(ec, 1);
    assert_false(etag_cache_guess_new(ec));        /* not enough samples yet */
    etag_cache_note_new(ec, 1);
    assert_true(etag_cache_guess_new(ec));
    for (int i = 0; i < 8; i++) etag_cache_note_new(ec, 0);
    assert_false(etag_cache_guess_new(ec));        /* 64 of 72 new: under 90 % */
    for (int i = 0; i < 1000; i++) etag_cache_note_new(ec, 0);
    for (int i = 0; i < 100; i++) etag_cache_note_new(ec, 1);
    assert_false(etag_cache_guess_new(ec));        /* the past still weighs */
    for (int i = 0; i < 500; i++) etag_cache_note_new(ec, 1);
    assert_true(etag_cache_guess_new(ec));         /* ...until it has halved away */
    etag_cache_free(ec);
}

/* Bounded caches evict the least recently used device, not everything. */
static void test_devmap_lru(void **state)
{
    (void)state;
    devmap_t *m = devmap_new(3);
    int v = 1;
    devmap_put(m, "a", &v, sizeof v);
    devmap_put(m, "b", &v, sizeof v);
    devmap_put(m, "c", &v, sizeof v);
    assert_non_null(devmap_get(m, "a", NULL));   /* a is now the most recent: b goes next */
    devmap_put(m, "d", &v, sizeof v);
    assert_int_equal(devmap_count(m), 3);
    assert_null(devmap_get(m, "b", NULL));
    assert_non_null(devmap_get(m, "a", NULL));
    assert_non_null(devmap_get(m, "c", NULL));
    /* values of any size; a put replaces */
    char big[300];
    memset(big, 'x', sizeof big);
    size_t sz = 0;
    devmap_put(m, "c", big, sizeof big);
    assert_memory_equal(devmap_get(m, "c", &sz), big, sizeof big);
    assert_int_equal(sz, sizeof big);
    devmap_del(m, "c");
    assert_null(devmap_get(m, "c", NULL));
    assert_int_equal(devmap_count(m), 2);
    devmap_free(m);
    /* unbounded: many entries, all found */
    m = devmap_new(0);
    char key[32];
    for (size_t i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "k%zu", i);
        devmap_put(m, key, &i, sizeof i);
    }
    for (size_t i = 0; i < 20000; i += 997) {
        snprintf(key, sizeof key, "k%zu", i);
        size_t *got = devmap_get(m, key, NULL);
        assert_non_null(got);
        assert_int_equal(*got, i);
    }
    devmap_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aliases_first_wins),
        cmocka_unit_test(test_absent_and_null_are_not_sent),
        cmocka_unit_test(test_numeric_strings_and_bad_types),
        cmocka_unit_test(test_long_text_rejected),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_calibration_maths),
        cmocka_unit_test(test_calibration_cache_ttl_and_negative),
        cmocka_unit_test(test_validation_bounds),
        cmocka_unit_test(test_backoff_range),
        cmocka_unit_test(test_device_id_rules),
        cmocka_unit_test(test_row_key_encoding),
        cmocka_unit_test(test_batch_wire_form),
        cmocka_unit_test(test_batch_decoded_forms_and_errors),
        cmocka_unit_test(test_batch_bad_decoded_sequence_numbers),
        cmocka_unit_test(test_invalid_utf8_text_rejected),
        cmocka_unit_test(test_batch_without_partition_has_no_sequence),
        cmocka_unit_test(test_batch_too_many_events),
        cmocka_unit_test(test_time_and_int_array),
        cmocka_unit_test(test_fold_apply_replay_stream),
        cmocka_unit_test(test_row_round_trip),
        cmocka_unit_test(test_packed_rows),
        cmocka_unit_test(test_devmap_lru),
        cmocka_unit_test(test_guess_new),
        cmocka_unit_test(test_row_long_text_cut_at_character),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
