/* Unit tests: settings parsing (util/config.c), secret redaction (util/log.c), buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/config.h"
#include "util/hmac.h"
#include "util/log.h"
#include "util/utf8.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *const *kv; } fake_env_t;

static const char *fake_lookup(const char *name, void *arg)
{
    const fake_env_t *env = arg;
    for (const char *const *p = env->kv; p[0]; p += 2)
        if (strcmp(p[0], name) == 0) return p[1];
    return NULL;
}

static int load(config_t *cfg, const char *const *kv, int require_port, char *err, size_t errlen)
{
    fake_env_t env = {kv};
    return config_load_from(cfg, fake_lookup, &env, require_port, err, errlen);
}

static void test_config_defaults(void **state)
{
    (void)state;
    const char *const kv[] = {"FUNCTIONS_CUSTOMHANDLER_PORT", "5005", "AzureWebJobsStorage", "UseDevelopmentStorage=true", NULL};
    config_t cfg;
    char err[256];
    assert_int_equal(load(&cfg, kv, 1, err, sizeof err), 0);
    assert_int_equal(cfg.port, 5005);
    assert_string_equal(cfg.storage_connection, "UseDevelopmentStorage=true"); /* falls back to AzureWebJobsStorage */
    assert_string_equal(cfg.partition_key, "Sydney");
    assert_string_equal(cfg.device_state_table, "DeviceState");
    assert_string_equal(cfg.calibration_table, "Calibration");
    assert_int_equal(cfg.calibration_cache_s, 300);
    assert_true(cfg.min_celsius == -40 && cfg.max_celsius == 80);
    assert_true(cfg.min_hpa == 600 && cfg.max_hpa == 1600);
    assert_true(cfg.min_humidity == 0 && cfg.max_humidity == 100);
    assert_int_equal(cfg.occ_base_ms, 40);
    assert_int_equal(cfg.occ_cap_ms, 1000);
    assert_int_equal(cfg.occ_max_attempts, 10);
    assert_int_equal((int)cfg.max_body_bytes, 8 * 1024 * 1024);
    assert_int_equal((int)cfg.max_batch_bytes, 256 * 1024 * 1024);
    assert_string_equal(cfg.poison_table, "PoisonEvents");
    assert_int_equal(cfg.device_cache_entries, 32768);
    assert_int_equal(cfg.snapshot_broadcast_s, 10);
    assert_string_equal(cfg.signalr_hub, "Enviromon");
    assert_null(cfg.signalr_connection);
    config_free(&cfg);
}

static void test_config_overrides(void **state)
{
    (void)state;
    const char *const kv[] = {"FUNCTIONS_CUSTOMHANDLER_PORT", "80", "StorageConnectionString", "X",
                              "AzureWebJobsStorage", "Y", "PartitionKey", "Forbes", "MaxCelsius", "70.5",
                              "ENVIROMON_MAX_BODY_BYTES", "65536", "ENVIROMON_MAX_BATCH_BYTES", "1048576",
                              "PoisonEventsTable", "Quarantine", "DeviceCacheEntries", "100",
                              "SnapshotBroadcastSeconds", "0", NULL};
    config_t cfg;
    char err[256];
    assert_int_equal(load(&cfg, kv, 1, err, sizeof err), 0);
    assert_string_equal(cfg.storage_connection, "X"); /* StorageConnectionString wins */
    assert_string_equal(cfg.partition_key, "Forbes");
    assert_true(cfg.max_celsius == 70.5);
    assert_int_equal((int)cfg.max_body_bytes, 65536);
    assert_int_equal((int)cfg.max_batch_bytes, 1048576);
    assert_string_equal(cfg.poison_table, "Quarantine");
    assert_int_equal(cfg.device_cache_entries, 100);
    assert_int_equal(cfg.snapshot_broadcast_s, 0);
    config_free(&cfg);
}

static void expect_error(const char *const *kv, int require_port, const char *needle)
{
    config_t cfg;
    char err[256];
    assert_int_equal(load(&cfg, kv, require_port, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_config_errors(void **state)
{
    (void)state;
    const char *const missing[] = {NULL};
    expect_error(missing, 1, "FUNCTIONS_CUSTOMHANDLER_PORT is missing");
    const char *const bad_port[] = {"FUNCTIONS_CUSTOMHANDLER_PORT", "70000", NULL};
    expect_error(bad_port, 1, "FUNCTIONS_CUSTOMHANDLER_PORT");
    const char *const junk_port[] = {"FUNCTIONS_CUSTOMHANDLER_PORT", "12ab", NULL};
    expect_error(junk_port, 1, "not an integer");
    const char *const bad_double[] = {"MinCelsius", "cold", NULL};
    expect_error(bad_double, 0, "MinCelsius");
    const char *const nan_double[] = {"MaxHpa", "nan", NULL};
    expect_error(nan_double, 0, "MaxHpa");
    const char *const inverted[] = {"MinHumidity", "90", "MaxHumidity", "10", NULL};
    expect_error(inverted, 0, "MinHumidity");
    const char *const bad_ttl[] = {"CalibrationCacheSeconds", "-1", NULL};
    expect_error(bad_ttl, 0, "CalibrationCacheSeconds");
    const char *const bad_window[] = {"SnapshotBroadcastSeconds", "-1", NULL};
    expect_error(bad_window, 0, "SnapshotBroadcastSeconds");
    const char *const bad_cache[] = {"DeviceCacheEntries", "0", NULL};
    expect_error(bad_cache, 0, "DeviceCacheEntries");
    const char *const bad_batch[] = {"ENVIROMON_MAX_BATCH_BYTES", "lots", NULL};
    expect_error(bad_batch, 0, "ENVIROMON_MAX_BATCH_BYTES");
    /* Without require_port, a missing port is fine. */
    config_t cfg;
    char err[256];
    assert_int_equal(load(&cfg, missing, 0, err, sizeof err), 0);
    config_free(&cfg);
}

static void redacts(const char *in, const char *secret, const char *keep)
{
    char *s = strdup(in);
    log_redact(s);
    if (strstr(s, secret)) fail_msg("'%s' still contains the secret '%s'", s, secret);
    if (keep && !strstr(s, keep)) fail_msg("'%s' lost '%s'", s, keep);
    free(s);
}

static void test_log_redaction(void **state)
{
    (void)state;
    redacts("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=x",
            "Eby8vdM02", "AccountName=devstoreaccount1");
    redacts("Endpoint=http://localhost;Port=8888;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;",
            "ABCDEFGHIJKLMNOP", "Port=8888");
    redacts("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=service;SharedAccessKey=c2VjcmV0;EntityPath=hub",
            "c2VjcmV0", "EntityPath=hub");
    redacts("GET /t?sv=2019-02-02&sig=AbCd%2FeF%3D&se=2030 failed", "AbCd", "sv=2019-02-02");
    redacts("Authorization: SharedKey devstoreaccount1:vsOuto6TYT6qQa31qTM/gdPrMkRIPSU1PEVhHzA3T2M=", "vsOuto6", "SharedKey");
    redacts("header Bearer abc.def.ghi sent", "abc.def.ghi", "sent");
    redacts("token eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.sig123 in text", "eyJhbGciOiJIUzI1NiJ9", "in text");
    redacts("https://app/api/SendSignalrMessage?code=funckey123", "funckey123", "SendSignalrMessage");
    /* Ordinary text is left alone. */
    char plain[] = "device rpi-1 temperature 21.5 config=ok";
    log_redact(plain);
    assert_string_equal(plain, "device rpi-1 temperature 21.5 config=ok");
}

static void test_buf(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_string_equal(buf_str(&b), "");
    for (int i = 0; i < 1000; i++) assert_int_equal(buf_printf(&b, "%d,", i), 0);
    assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
    assert_int_equal(b.data[b.len], '\0');
    size_t len = b.len;
    assert_int_equal(buf_append(&b, "\0x", 2), 0);
    assert_int_equal(b.len, len + 2);
    char *s = buf_steal(&b);
    assert_null(b.data);
    free(s);
    buf_free(&b);

    /* JSON string literals: what cJSON parses back must be the original text. */
    const char *samples[] = {"plain", "", "q\"uote", "back\\slash", "nl\ncr\rtab\t", "\x01\x1f ctl",
                             "caf\xc3\xa9 \xe2\x82\xac", "</script>"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        buf_t j = BUF_INIT;
        assert_int_equal(buf_put_json_string(&j, samples[i]), 0);
        cJSON *v = cJSON_Parse(j.data);
        if (!cJSON_IsString(v)) fail_msg("'%s' is not a JSON string", j.data);
        assert_string_equal(v->valuestring, samples[i]);
        cJSON_Delete(v);
        buf_free(&j);
    }
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

/* RFC 4231 test cases 1, 2 and 6 (a key longer than the block size). */
static void test_hmac_sha256_rfc4231(void **state)
{
    (void)state;
    unsigned char mac[HMAC_SHA256_LEN];
    char h[65];
    unsigned char key1[20];
    memset(key1, 0x0b, sizeof key1);
    assert_int_equal(hmac_sha256(key1, sizeof key1, "Hi There", 8, mac), 0);
    hex(mac, sizeof mac, h);
    assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_int_equal(hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac), 0);
    hex(mac, sizeof mac, h);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    unsigned char key6[131];
    memset(key6, 0xaa, sizeof key6);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    assert_int_equal(hmac_sha256(key6, sizeof key6, m6, strlen(m6), mac), 0);
    hex(mac, sizeof mac, h);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_utf8_valid(void **state)
{
    (void)state;
    const char *good[] = {"", "ascii", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!utf8_valid(good[i], strlen(good[i]))) fail_msg("good sample %zu refused", i);
    const char *bad[] = {"\xff", "ab\xfe", "\xc3", "\xc0\xaf" /* overlong '/' */, "\xe0\x80\xaf",
                         "\xed\xa0\x80" /* surrogate */, "\xf4\x90\x80\x80" /* > U+10FFFF */,
                         "\xe2\x82", "\x80", "\xf8\x88\x80\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (utf8_valid(bad[i], strlen(bad[i]))) fail_msg("bad sample %zu accepted", i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_overrides),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_log_redaction),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_hmac_sha256_rfc4231),
        cmocka_unit_test(test_utf8_valid),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
