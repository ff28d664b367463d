/* Unit tests: IoT Hub's MQTT names (devhost/mqtt/mqtt_iothub.c) — user names as Microsoft's
 * SDKs, the docs and the original web simulator write them, telemetry topics and property
 * bags as the Node SDK encodes them (querystring.stringify: `$` → `%24`) and topic filters.
 * (Device ids are the registry's rule, iothub_device_id_valid, tested with the registry.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devhost/mqtt/mqtt_iothub.h"
#include "mqtt_test_str.h"


static void test_username(void **state)
{
    (void)state;
    mqtt_username_t u;
    const char *why;
    /* Node SDK (azure-iot-device-mqtt _getBaseTransportConfig) */
    const char *node = "enviromon.azure-devices.net/dev-1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4";
    assert_int_equal(mqtt_hub_parse_username(node, strlen(node), &u, &why), 0);
    assert_str(u.host, "enviromon.azure-devices.net");
    assert_str(u.device_id, "dev-1");
    assert_int_equal(u.module_id.len, 0);
    assert_str(u.query, "api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4");
    /* the docs' form */
    const char *docs = "contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12";
    assert_int_equal(mqtt_hub_parse_username(docs, strlen(docs), &u, &why), 0);
    assert_str(u.device_id, "MyDevice01");
    assert_str(u.query, "api-version=2021-04-12");
    /* the web simulator's: no '?', and a '/' inside a query value */
    const char *sim = "hub.azure-devices.net/Raspberry/api-version=2016-11-14&DeviceClientType=iothubclient%2F1.1.7 a/b";
    assert_int_equal(mqtt_hub_parse_username(sim, strlen(sim), &u, &why), 0);
    assert_str(u.device_id, "Raspberry");
    assert_int_equal(u.module_id.len, 0);
    assert_str(u.query, "api-version=2016-11-14&DeviceClientType=iothubclient%2F1.1.7 a/b");
    /* no query at all */
    assert_int_equal(mqtt_hub_parse_username("h/d/", 4, &u, &why), 0);
    assert_str(u.device_id, "d");
    assert_int_equal(u.query.len, 0);
    assert_int_equal(mqtt_hub_parse_username("h/d", 3, &u, &why), 0);
    assert_str(u.device_id, "d");
    /* a module identity */
    const char *mod = "hub.azure-devices.net/dev/mod1/?api-version=2021-04-12";
    assert_int_equal(mqtt_hub_parse_username(mod, strlen(mod), &u, &why), 0);
    assert_str(u.device_id, "dev");
    assert_str(u.module_id, "mod1");
    assert_str(u.query, "api-version=2021-04-12");
    /* refused */
    static const char *const bad[] = {"", "hub", "hub/", "/dev/?api-version=1", "hub//?x=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(mqtt_hub_parse_username(bad[i], strlen(bad[i]), &u, &why), -1);
        assert_non_null(why);
    }
}

static void test_classify_topic(void **state)
{
    (void)state;
    mqtt_str_t id, bag;
    assert_int_equal(mqtt_hub_classify_topic(S("devices/dev1/messages/events/"), &id, &bag), MQTT_HUB_TOPIC_TELEMETRY);
    assert_str(id, "dev1");
    assert_int_equal(bag.len, 0);
    assert_int_equal(mqtt_hub_classify_topic(S("devices/d:1/messages/events/%24.mid=5&a=b"), &id, &bag),
                     MQTT_HUB_TOPIC_TELEMETRY);
    assert_str(id, "d:1");
    assert_str(bag, "%24.mid=5&a=b");
    /* a leading '?' on the bag is tolerated (some clients write the bag as a query) */
    assert_int_equal(mqtt_hub_classify_topic(S("devices/d/messages/events/?a=b"), &id, &bag), MQTT_HUB_TOPIC_TELEMETRY);
    assert_str(bag, "a=b");
    /* the trailing slash is part of the topic name */
    assert_int_equal(mqtt_hub_classify_topic(S("devices/d/messages/events"), &id, &bag), MQTT_HUB_TOPIC_UNKNOWN);
    assert_int_equal(mqtt_hub_classify_topic(S("devices//messages/events/"), &id, &bag), MQTT_HUB_TOPIC_UNKNOWN);
    assert_int_equal(mqtt_hub_classify_topic(S("devices/d/messages/devicebound/"), &id, &bag), MQTT_HUB_TOPIC_UNKNOWN);
    assert_int_equal(mqtt_hub_classify_topic(S("devices/d/modules/m/messages/events/"), &id, &bag), MQTT_HUB_TOPIC_MODULE);
    assert_int_equal(mqtt_hub_classify_topic(S("$iothub/twin/GET/?$rid=1"), &id, &bag), MQTT_HUB_TOPIC_TWIN);
    assert_int_equal(mqtt_hub_classify_topic(S("$iothub/twin/PATCH/properties/reported/?$rid=2"), &id, &bag), MQTT_HUB_TOPIC_TWIN);
    assert_int_equal(mqtt_hub_classify_topic(S("$iothub/methods/res/200/?$rid=1"), &id, &bag), MQTT_HUB_TOPIC_METHODS);
    assert_int_equal(mqtt_hub_classify_topic(S("telemetry"), &id, &bag), MQTT_HUB_TOPIC_UNKNOWN);
    assert_int_equal(mqtt_hub_classify_topic(S("devices/d"), &id, &bag), MQTT_HUB_TOPIC_UNKNOWN);
}

static int decode(const char *bag, mqtt_props_t *p, char **scratch, const char **why)
{
    size_t n = strlen(bag) * 2 + 2;
    *scratch = malloc(n);
    return mqtt_hub_decode_bag(S(bag), *scratch, n, p, why);
}

static void test_property_bag(void **state)
{
    (void)state;
    mqtt_props_t p;
    char *sc;
    const char *why = NULL;
    /* What the Node SDK sends for messageId, correlationId, contentType, contentEncoding and
     * two properties (querystring.stringify + encodeURIComponent). */
    const char *node = "%24.mid=m-1&%24.cid=c%2F2&%24.ct=application%2Fjson&%24.ce=utf-8"
                       "&temperatureAlert=true&caf%C3%A9=na%C3%AFve%20v%2Bw";
    assert_int_equal(decode(node, &p, &sc, &why), 0);
    assert_string_equal(p.message_id, "m-1");
    assert_string_equal(p.correlation_id, "c/2");
    assert_string_equal(p.content_type, "application/json");
    assert_string_equal(p.content_encoding, "utf-8");
    assert_int_equal(p.napp, 2);
    assert_string_equal(p.app[0].name, "temperatureAlert");
    assert_string_equal(p.app[0].value, "true");
    assert_string_equal(p.app[1].name, "caf\xc3\xa9");
    assert_string_equal(p.app[1].value, "na\xc3\xafve v+w");
    /* size: system values (3+3+16+5) + names and values (16+4 + 5+10) */
    assert_int_equal(p.size, 27 + 20 + 15);
    free(sc);

    /* unencoded `$`, '+' kept literally, an item without '=', empty items, last value wins */
    assert_int_equal(decode("$.mid=1&a=x+y&flag&&b=&a=2&$.mid=3&", &p, &sc, &why), 0);
    assert_string_equal(p.message_id, "3");
    assert_int_equal(p.napp, 3);
    assert_string_equal(p.app[0].name, "a");
    assert_string_equal(p.app[0].value, "2");
    assert_string_equal(p.app[1].name, "flag");
    assert_string_equal(p.app[1].value, "");
    assert_string_equal(p.app[2].name, "b");
    assert_string_equal(p.app[2].value, "");
    assert_int_equal(p.size, 1 + 2 + 4 + 1);
    free(sc);

    /* $.uid is the user id; IoT Hub's other `$.` fields are dropped, never made application
     * properties; a name merely starting with '$' is an application property */
    assert_int_equal(decode("%24.uid=u&%24.to=%2Fdevices%2Fd&%24.exp=x&%24.ifid=i&%24.on=o&%24.sub=s&%24.custom=1&%24k=v", &p, &sc, &why), 0);
    assert_string_equal(p.user_id, "u");
    assert_int_equal(p.ignored, 6);
    assert_int_equal(p.napp, 1);
    assert_string_equal(p.app[0].name, "$k");
    assert_null(p.message_id);
    assert_int_equal(p.size, 1 + 2 + 1);
    free(sc);

    assert_int_equal(decode("", &p, &sc, &why), 0);
    assert_int_equal(p.napp, 0);
    assert_int_equal(p.size, 0);
    free(sc);

    static const char *const bad[] = {"=v", "a=%zz", "a=%4", "a%=1", "a=%00", "%00=1", "a=%ff", "a=%c3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(decode(bad[i], &p, &sc, &why), -1);
        assert_non_null(why);
        free(sc);
    }
}

static void test_property_bag_limits(void **state)
{
    (void)state;
    char big[257 * 8];
    size_t o = 0;
    for (int i = 0; i < 257; i++) o += (size_t)sprintf(big + o, "p%d=1&", i);
    mqtt_props_t p;
    char *sc;
    const char *why = NULL;
    assert_int_equal(decode(big, &p, &sc, &why), -1);
    assert_non_null(why);
    free(sc);
    big[o - strlen("p256=1&")] = '\0'; /* 256 properties are fine */
    assert_int_equal(decode(big, &p, &sc, &why), 0);
    assert_int_equal(p.napp, 256);
    free(sc);
    /* a scratch buffer that is too small is refused, not overrun */
    char small[4];
    assert_int_equal(mqtt_hub_decode_bag(S("abc=def"), small, sizeof small, &p, &why), -1);
}

static void test_filters(void **state)
{
    (void)state;
    assert_true(mqtt_hub_filter_ok("dev1", S("devices/dev1/messages/devicebound/#")));
    assert_true(mqtt_hub_filter_ok("dev1", S("$iothub/twin/res/#")));
    assert_true(mqtt_hub_filter_ok("dev1", S("$iothub/twin/PATCH/properties/desired/#")));
    assert_true(mqtt_hub_filter_ok("dev1", S("$iothub/methods/POST/#")));
    assert_false(mqtt_hub_filter_ok("dev1", S("devices/dev2/messages/devicebound/#")));
    assert_false(mqtt_hub_filter_ok("dev1", S("devices/dev10/messages/devicebound/#")));
    assert_false(mqtt_hub_filter_ok("dev10", S("devices/dev1/messages/devicebound/#")));
    assert_false(mqtt_hub_filter_ok("dev1", S("devices/+/messages/devicebound/#")));
    assert_false(mqtt_hub_filter_ok("dev1", S("#")));
    assert_false(mqtt_hub_filter_ok("dev1", S("$iothub/#")));
    assert_false(mqtt_hub_filter_ok("dev1", S("devices/dev1/messages/events/")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_username),
        cmocka_unit_test(test_classify_topic),
        cmocka_unit_test(test_property_bag),
        cmocka_unit_test(test_property_bag_limits),
        cmocka_unit_test(test_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
