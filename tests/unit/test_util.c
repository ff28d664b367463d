/* Unit tests: settings parsing (util/config.c), secret redaction (util/log.c), buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/config.h"
#include "util/log.h"

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
    assert_string_equal(cfg.signalr_hub, "Enviromon");
    assert_null(cfg.signalr_connection);
    config_free(&cfg);
}

static void test_config_overrides(void **state)
{
    (void)state;
    const char *const kv[] = {"FUNCTIONS_CUSTOMHANDLER_PORT", "80", "StorageConnectionString", "X",
                              "AzureWebJobsStorage", "Y", "PartitionKey", "Forbes", "MaxCelsius", "70.5",
                              "ENVIROMON_MAX_BODY_BYTES", "65536", NULL};
    config_t cfg;
    char err[256];
    assert_int_equal(load(&cfg, kv, 1, err, sizeof err), 0);
    assert_string_equal(cfg.storage_connection, "X"); /* StorageConnectionString wins */
    assert_string_equal(cfg.partition_key, "Forbes");
    assert_true(cfg.max_celsius == 70.5);
    assert_int_equal((int)cfg.max_body_bytes, 65536);
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_overrides),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_log_redaction),
        cmocka_unit_test(test_buf),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
