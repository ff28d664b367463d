/* test_sim_config.c — the simulator's inputs: device connection strings (GatewayHostName,
 * bad input messages), base64 keys, endpoint URLs and the command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "simulator/connstr.h"
#include "simulator/endpoint.h"
#include "simulator/options.h"

#define KEY32 "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=" /* 32 bytes */

static void test_connstr_good(void **state)
{
    (void)state;
    sim_connstr_t cs;
    char err[300];
    assert_int_equal(sim_connstr_parse("HostName=hub.azure-devices.net;DeviceId=sim-1;SharedAccessKey=" KEY32,
                                       &cs, err, sizeof err), 0);
    assert_string_equal(cs.host, "hub.azure-devices.net");
    assert_string_equal(cs.device_id, "sim-1");
    assert_string_equal(cs.gateway, "");
    assert_int_equal(cs.key_len, 32);
    assert_int_equal(cs.key[0], 0xab);
    assert_int_equal(cs.key[31], 0x90);

    /* Any order, GatewayHostName with a port, a trailing ';', an unknown key ignored. */
    assert_int_equal(sim_connstr_parse("SharedAccessKey=" KEY32 ";GatewayHostName=localhost:8883;Foo=bar;"
                                       "DeviceId=d2;HostName=enviromon.azure-devices.net;",
                                       &cs, err, sizeof err), 0);
    assert_string_equal(cs.host, "enviromon.azure-devices.net");
    assert_string_equal(cs.device_id, "d2");
    assert_string_equal(cs.gateway, "localhost:8883");

    /* A repeated key: the last wins, as in the SDKs' dictionary parse. */
    assert_int_equal(sim_connstr_parse("HostName=a.azure-devices.net;HostName=b.azure-devices.net;DeviceId=d;"
                                       "SharedAccessKey=" KEY32, &cs, err, sizeof err), 0);
    assert_string_equal(cs.host, "b.azure-devices.net");

    /* Every character IoT Hub allows in a device id except ';' (the separator). */
    assert_int_equal(sim_connstr_parse("HostName=h.azure-devices.net;DeviceId=a-:.+%_#*?!(),=@$'Z9;"
                                       "SharedAccessKey=" KEY32, &cs, err, sizeof err), 0);
    assert_string_equal(cs.device_id, "a-:.+%_#*?!(),=@$'Z9");
}

static void expect_bad(const char *s, const char *needle)
{
    sim_connstr_t cs;
    char err[300] = "";
    assert_int_equal(sim_connstr_parse(s, &cs, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("'%s': error '%s' lacks '%s'", s, err, needle);
    assert_null(strstr(err, KEY32));
    assert_null(strchr(err, '\n'));
}

static void test_connstr_bad(void **state)
{
    (void)state;
    expect_bad("", "no HostName");
    expect_bad("DeviceId=d;SharedAccessKey=" KEY32, "no HostName");
    expect_bad("HostName=h.azure-devices.net;SharedAccessKey=" KEY32, "no DeviceId");
    expect_bad("HostName=h.azure-devices.net;DeviceId=d", "no SharedAccessKey");
    expect_bad("HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=", "no SharedAccessKey");
    expect_bad("HostName=h.azure-devices.net;DeviceId=;SharedAccessKey=" KEY32, "no DeviceId");
    expect_bad("HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=abc", "not a base64 key");
    expect_bad("HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" KEY32 KEY32 KEY32, "at most 64 bytes");
    expect_bad("HostName=h.azure-devices.net;DeviceId=bad/id;SharedAccessKey=" KEY32, "characters IoT Hub does not allow");
    expect_bad("HostName=h.azure-devices.net;DeviceId=has space;SharedAccessKey=" KEY32, "does not allow");
    expect_bad("HostName=h.azure-devices.net:443;DeviceId=d;SharedAccessKey=" KEY32, "no scheme, port or path");
    expect_bad("HostName=https://h.azure-devices.net;DeviceId=d;SharedAccessKey=" KEY32, "HostName must be");
    expect_bad("hostname=h;DeviceId=d;SharedAccessKey=" KEY32, "'hostname' should be spelled 'HostName'");
    expect_bad("HostName=h;DeviceID=d;SharedAccessKey=" KEY32, "'DeviceID' should be spelled 'DeviceId'");
    expect_bad("HostName=h;DeviceId=d;SharedAccessKey=" KEY32 ";ModuleId=m", "ModuleId");
    expect_bad("HostName=h;DeviceId=d;x509=true", "x509");
    expect_bad("HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=a&sig=b&se=1", "cannot be renewed");
    expect_bad("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=" KEY32, "hub (service) connection string");
    expect_bad("HostName=h;DeviceId=d;SharedAccessKey=" KEY32 ";GatewayHostName=https://x", "GatewayHostName must");
    expect_bad("garbage", "has no '='");

    char longid[200];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    char s[400];
    snprintf(s, sizeof s, "HostName=h;DeviceId=%s;SharedAccessKey=" KEY32, longid);
    expect_bad(s, "longer than IoT Hub's 128");
    longid[128] = '\0';
    snprintf(s, sizeof s, "HostName=h;DeviceId=%s;SharedAccessKey=" KEY32, longid);
    sim_connstr_t cs;
    char err[300];
    assert_int_equal(sim_connstr_parse(s, &cs, err, sizeof err), 0);
}

static void test_device_id_rule(void **state)
{
    (void)state;
    assert_true(sim_device_id_valid("sim-1"));
    assert_true(sim_device_id_valid("a;b"));
    assert_false(sim_device_id_valid(""));
    assert_false(sim_device_id_valid("a/b"));
    assert_false(sim_device_id_valid("caf\xc3\xa9"));
    assert_false(sim_device_id_valid("tab\there"));
}

static void test_endpoint_urls(void **state)
{
    (void)state;
    sim_endpoint_t ep;
    char err[300];
    sim_tp_kind_t k = SIM_TP_MQTT;
    assert_int_equal(sim_endpoint_parse("http://localhost:7071", &k, 0, &ep, err, sizeof err), 0);
    assert_int_equal(k, SIM_TP_HTTP);
    assert_int_equal(ep.tls, 0);
    assert_string_equal(ep.host, "localhost");
    assert_int_equal(ep.port, 7071);
    assert_string_equal(ep.url, "http://localhost:7071");

    k = SIM_TP_HTTP;
    assert_int_equal(sim_endpoint_parse("mqtts://127.0.0.1:8883/", &k, 0, &ep, err, sizeof err), 0);
    assert_int_equal(k, SIM_TP_MQTT);
    assert_int_equal(ep.tls, 1);
    assert_string_equal(ep.connect_host, "127.0.0.1");

    assert_int_equal(sim_endpoint_parse("https://myhub.azure-devices.net", &k, 0, &ep, err, sizeof err), 0);
    assert_int_equal(ep.port, 443);
    assert_string_equal(ep.url, "https://myhub.azure-devices.net:443");
    assert_int_equal(sim_endpoint_parse("mqtt://[::1]:1884", &k, 0, &ep, err, sizeof err), 0);
    assert_string_equal(ep.host, "::1");
    assert_int_equal(ep.port, 1884);
    assert_string_equal(ep.url, "mqtt://[::1]:1884");
    assert_int_equal(sim_endpoint_parse("MQTTS://h", &k, 0, &ep, err, sizeof err), 0);
    assert_int_equal(ep.port, 8883);

    k = SIM_TP_MQTT;
    assert_int_equal(sim_endpoint_parse("http://localhost:7071", &k, 1, &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not match --transport mqtt"));
    assert_int_equal(sim_endpoint_parse("ftp://h", &k, 0, &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected http://"));
    assert_int_equal(sim_endpoint_parse("localhost:8883", &k, 0, &ep, err, sizeof err), -1);
    assert_int_equal(sim_endpoint_parse("http://h:0", &k, 0, &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "port must be 1..65535"));
    assert_int_equal(sim_endpoint_parse("http://h:70000", &k, 0, &ep, err, sizeof err), -1);
    assert_int_equal(sim_endpoint_parse("http://h:80x", &k, 0, &ep, err, sizeof err), -1);
    assert_int_equal(sim_endpoint_parse("https://h/devices", &k, 0, &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "no path"));
    assert_int_equal(sim_endpoint_parse("http://", &k, 0, &ep, err, sizeof err), -1);
}

static void test_endpoint_from_connstr_hosts(void **state)
{
    (void)state;
    sim_endpoint_t ep;
    char err[300];
    assert_int_equal(sim_endpoint_for_host("localhost:8883", SIM_TP_MQTT, &ep, err, sizeof err), 0);
    assert_string_equal(ep.url, "mqtts://localhost:8883");
    assert_int_equal(sim_endpoint_for_host("myhub.azure-devices.net", SIM_TP_MQTT, &ep, err, sizeof err), 0);
    assert_string_equal(ep.url, "mqtts://myhub.azure-devices.net:8883");
    assert_int_equal(sim_endpoint_for_host("myhub.azure-devices.net", SIM_TP_HTTP, &ep, err, sizeof err), 0);
    assert_string_equal(ep.url, "https://myhub.azure-devices.net:443");
    assert_int_equal(ep.tls, 1);
    assert_int_equal(sim_endpoint_for_host("edge:0", SIM_TP_HTTP, &ep, err, sizeof err), -1);
}

static int parse(sim_opts_t *o, char *err, size_t errlen, ...)
{
    char *argv[64] = {"simulator"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; (a = va_arg(ap, char *)) && argc < 63;) argv[argc++] = a;
    va_end(ap);
    int rc = sim_opts_parse(argc, argv, o, err, errlen);
    return rc;
}

#define CS "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" KEY32

static void test_options_defaults_and_values(void **state)
{
    (void)state;
    sim_opts_t o;
    char err[300];
    assert_int_equal(parse(&o, err, sizeof err, "--device", CS, NULL), 0);
    assert_int_equal(o.transport, SIM_TP_MQTT);
    assert_true(o.interval == 2);
    assert_int_equal(o.token_ttl, 3600);
    assert_true(o.faulty == 0);
    assert_true(o.count == 0 && o.duration == 0 && o.rate == 0);
    assert_string_equal(o.data_dir, ".devhost");
    assert_int_equal(o.n_device_strs, 1);
    sim_opts_free(&o);

    assert_int_equal(parse(&o, err, sizeof err, "--device", CS, "--device", CS, "--transport", "http", "--interval", "0.25",
                           "--count", "200", "--faulty", "0.02", "--seed", "18446744073709551615", "--json",
                           "--token-ttl", "10", "--connections", "8", "--inflight", "4", "--retry-for", "0", NULL), 0);
    assert_int_equal(o.n_device_strs, 2);
    assert_int_equal(o.transport, SIM_TP_HTTP);
    assert_true(o.interval == 0.25);
    assert_int_equal(o.count, 200);
    assert_true(o.faulty == 0.02);
    assert_true(o.seed == UINT64_MAX && o.seed_given);
    assert_true(o.json);
    assert_int_equal(o.token_ttl, 10);
    assert_int_equal(o.connections, 8);
    assert_int_equal(o.inflight, 4);
    assert_true(o.retry_for == 0);
    sim_opts_free(&o);

    assert_int_equal(parse(&o, err, sizeof err, "--devices", "5", "--data", "/tmp/x", "--rate", "1000", "--duration", "1.5", NULL), 0);
    assert_int_equal(o.devices, 5);
    assert_true(o.rate == 1000 && o.duration == 1.5);
    sim_opts_free(&o);

    assert_int_equal(parse(&o, err, sizeof err, "--help", NULL), 0);
    assert_true(o.help);
    sim_opts_free(&o);
}

static void expect_opts_error(const char *needle, ...)
{
    char *argv[64] = {"simulator"};
    int argc = 1;
    va_list ap;
    va_start(ap, needle);
    for (char *a; (a = va_arg(ap, char *)) && argc < 63;) argv[argc++] = a;
    va_end(ap);
    sim_opts_t o;
    char err[300] = "";
    assert_int_equal(sim_opts_parse(argc, argv, &o, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("error '%s' lacks '%s'", err, needle);
    sim_opts_free(&o);
}

static void test_options_errors(void **state)
{
    (void)state;
    expect_opts_error("unknown option '--frobnicate'", "--device", CS, "--frobnicate", "1", NULL);
    expect_opts_error("unknown option '--nope'", "--device", CS, "--nope", NULL);
    expect_opts_error("--count needs a value", "--device", CS, "--count", NULL);
    expect_opts_error("--interval needs a value", "--device", CS, "--interval", "--json", NULL);
    expect_opts_error("unexpected argument 'extra'", "--device", CS, "extra", NULL);
    expect_opts_error("no devices", "--count", "5", NULL);
    expect_opts_error("--devices N registers local devices", "--devices", "2", "--device", CS, NULL);
    expect_opts_error("give --interval or --rate", "--device", CS, "--interval", "1", "--rate", "5", NULL);
    expect_opts_error("--transport must be mqtt or http", "--device", CS, "--transport", "amqp", NULL);
    expect_opts_error("--faulty needs a number from 0 to 1", "--device", CS, "--faulty", "1.5", NULL);
    expect_opts_error("--count needs a whole number", "--device", CS, "--count", "2.5", NULL);
    expect_opts_error("--count needs a number", "--device", CS, "--count", "0", NULL);
    expect_opts_error("--interval needs a number", "--device", CS, "--interval", "abc", NULL);
    expect_opts_error("--token-ttl needs a number from 5", "--device", CS, "--token-ttl", "1", NULL);
    expect_opts_error("--seed needs a whole number", "--device", CS, "--seed", "-1", NULL);
    expect_opts_error("--seed needs a whole number", "--device", CS, "--seed", "18446744073709551616", NULL);
    expect_opts_error("--connections applies to --transport http", "--device", CS, "--transport", "mqtt",
                      "--connections", "4", NULL);
    expect_opts_error("--devices needs a number from 1", "--devices", "0", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connstr_good),
        cmocka_unit_test(test_connstr_bad),
        cmocka_unit_test(test_device_id_rule),
        cmocka_unit_test(test_endpoint_urls),
        cmocka_unit_test(test_endpoint_from_connstr_hosts),
        cmocka_unit_test(test_options_defaults_and_values),
        cmocka_unit_test(test_options_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
