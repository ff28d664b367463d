/* Unit tests: the MQTT 3.1.1 packet parser and serialisers (devhost/mqtt/mqtt_packet.c) —
 * every packet type round-trips, the Remaining Length rules, every structural violation a
 * receiver must catch, and packets arriving in fragments (every prefix of a valid stream is
 * "more", never an error or a misparse). Byte vectors are written out from the standard's
 * figures (OASIS MQTT 3.1.1, chapters 2 and 3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "devhost/mqtt/mqtt_packet.h"
#include "mqtt_test_str.h"

#define MAXREM (1024 * 1024)

static mqtt_parse_result_t parse(const void *b, size_t n, mqtt_packet_t *p, size_t *used)
{
    const char *why = NULL;
    mqtt_parse_result_t r = mqtt_parse(b, n, MAXREM, p, used, &why);
    if (r == MQTT_PARSE_MALFORMED || r == MQTT_PARSE_TOO_BIG) assert_non_null(why);
    return r;
}

static void expect_malformed(const uint8_t *b, size_t n)
{
    mqtt_packet_t p;
    size_t used = 99;
    assert_int_equal(parse(b, n, &p, &used), MQTT_PARSE_MALFORMED);
    assert_int_equal(used, 0);
}


/* CONNECT from the standard's example (3.1.2.10, 3.1.3): client id, Will, user name,
 * password; then our serialiser must produce exactly those bytes. */
static void test_connect_roundtrip(void **state)
{
    (void)state;
    static const uint8_t wire[] = {
        0x10, 0x2d,                                    /* CONNECT, remaining 45 */
        0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,          /* protocol, level 4 */
        0xEE,                                          /* user, pass, will retain, will QoS 1, will, clean */
        0x00, 0x3C,                                    /* keep-alive 60 */
        0x00, 0x04, 'd', 'e', 'v', '1',
        0x00, 0x0B, 'd', 'e', 'v', 'i', 'c', 'e', 's', '/', 'w', '/', 'x',
        0x00, 0x02, 'b', 'y',
        0x00, 0x04, 'u', 's', 'e', 'r',
        0x00, 0x04, 's', 'e', 0x00, 'c'};              /* the password is binary: NUL allowed */
    mqtt_packet_t p;
    size_t used;
    assert_int_equal(parse(wire, sizeof wire, &p, &used), MQTT_PARSE_OK);
    assert_int_equal(used, sizeof wire);
    assert_int_equal(p.type, MQTT_CONNECT);
    const mqtt_connect_t *k = &p.u.connect;
    assert_true(k->supported);
    assert_int_equal(k->level, 4);
    assert_true(k->clean);
    assert_int_equal(k->keepalive, 60);
    assert_str(k->client_id, "dev1");
    assert_true(k->has_will);
    assert_int_equal(k->will_qos, 1);
    assert_true(k->will_retain);
    assert_str(k->will_topic, "devices/w/x");
    assert_str(k->will_payload, "by");
    assert_true(k->has_username && k->has_password);
    assert_str(k->username, "user");
    assert_int_equal(k->password.len, 4);
    assert_memory_equal(k->password.s, "se\0c", 4);

    buf_t b = BUF_INIT;
    assert_int_equal(mqtt_put_connect(&b, k), 0);
    assert_int_equal(b.len, sizeof wire);
    assert_memory_equal(b.data, wire, sizeof wire);
    buf_free(&b);
}

static void test_connect_minimal_and_other_protocols(void **state)
{
    (void)state;
    /* No client id, no user: structurally fine (the session refuses it). */
    static const uint8_t minimal[] = {0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00};
    mqtt_packet_t p;
    size_t used;
    assert_int_equal(parse(minimal, sizeof minimal, &p, &used), MQTT_PARSE_OK);
    assert_true(p.u.connect.supported);
    assert_int_equal(p.u.connect.client_id.len, 0);
    assert_false(p.u.connect.has_username);

    /* MQTT 3.1 ("MQIsdp", level 3) and MQTT 5 (level 5, whose variable header differs):
     * parsed only far enough to answer CONNACK 0x01. */
    static const uint8_t v31[] = {0x10, 0x0e, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02, 0x00, 0x3c, 0x00, 0x00};
    assert_int_equal(parse(v31, sizeof v31, &p, &used), MQTT_PARSE_OK);
    assert_false(p.u.connect.supported);
    assert_int_equal(p.u.connect.level, 3);
    static const uint8_t v5[] = {0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x00};
    assert_int_equal(parse(v5, sizeof v5, &p, &used), MQTT_PARSE_OK);
    assert_false(p.u.connect.supported);
    assert_int_equal(p.u.connect.level, 5);
}

static void test_connect_violations(void **state)
{
    (void)state;
    /* reserved connect flag (bit 0) */
    static const uint8_t reserved[] = {0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x00, 0x00, 0x00};
    expect_malformed(reserved, sizeof reserved);
    /* password without user name */
    static const uint8_t pw_only[] = {0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    expect_malformed(pw_only, sizeof pw_only);
    /* Will QoS without the Will flag */
    static const uint8_t wq[] = {0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x0a, 0x00, 0x00, 0x00, 0x00};
    expect_malformed(wq, sizeof wq);
    /* Will QoS 3 */
    static const uint8_t wq3[] = {0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x1e, 0x00, 0x00, 0x00, 0x00,
                                  0x00, 0x01, 't', 0x00, 0x00, 0x00};
    expect_malformed(wq3, sizeof wq3);
    /* client id is not UTF-8 / contains U+0000 */
    static const uint8_t bad_utf8[] = {0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 0xff};
    expect_malformed(bad_utf8, sizeof bad_utf8);
    static const uint8_t nul[] = {0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x02, 'a', 0x00};
    expect_malformed(nul, sizeof nul);
    /* user name flag set but the payload ends */
    static const uint8_t no_user[] = {0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00, 0x00, 0x00, 0x02, 'i', 'd'};
    expect_malformed(no_user, sizeof no_user);
    /* a string length that runs past the packet */
    static const uint8_t overrun[] = {0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x09, 'x'};
    expect_malformed(overrun, sizeof overrun);
    /* bytes after the payload */
    static const uint8_t trailing[] = {0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00};
    expect_malformed(trailing, sizeof trailing);
    /* truncated variable header */
    static const uint8_t trunc[] = {0x10, 0x08, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02};
    expect_malformed(trunc, sizeof trunc);
    /* CONNECT with flags in the fixed header */
    static const uint8_t fh[] = {0x11, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00};
    expect_malformed(fh, sizeof fh);
}

static void test_publish(void **state)
{
    (void)state;
    static const uint8_t q1[] = {0x32, 0x0a, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x07, 'h', 'i', '!'};
    mqtt_packet_t p;
    size_t used;
    assert_int_equal(parse(q1, sizeof q1, &p, &used), MQTT_PARSE_OK);
    assert_int_equal(p.type, MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 1);
    assert_false(p.u.publish.dup);
    assert_false(p.u.publish.retain);
    assert_int_equal(p.u.publish.id, 7);
    assert_str(p.u.publish.topic, "a/b");
    assert_int_equal(p.u.publish.payload_len, 3);
    assert_memory_equal(p.u.publish.payload, "hi!", 3);
    buf_t b = BUF_INIT;
    assert_int_equal(mqtt_put_publish(&b, &p.u.publish), 0);
    assert_int_equal(b.len, sizeof q1);
    assert_memory_equal(b.data, q1, sizeof q1);
    buf_reset(&b);

    /* QoS 0 has no packet identifier; DUP + RETAIN with QoS 1; an empty payload */
    static const uint8_t q0[] = {0x30, 0x04, 0x00, 0x01, 't', 'x'};
    assert_int_equal(parse(q0, sizeof q0, &p, &used), MQTT_PARSE_OK);
    assert_int_equal(p.u.publish.id, 0);
    assert_int_equal(p.u.publish.payload_len, 1);
    static const uint8_t dupret[] = {0x3b, 0x05, 0x00, 0x01, 't', 0x12, 0x34};
    assert_int_equal(parse(dupret, sizeof dupret, &p, &used), MQTT_PARSE_OK);
    assert_true(p.u.publish.dup && p.u.publish.retain);
    assert_int_equal(p.u.publish.id, 0x1234);
    assert_int_equal(p.u.publish.payload_len, 0);
    assert_int_equal(mqtt_put_publish(&b, &p.u.publish), 0);
    assert_memory_equal(b.data, dupret, sizeof dupret);
    buf_free(&b);

    static const uint8_t qos3[] = {0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x01};
    expect_malformed(qos3, sizeof qos3);
    static const uint8_t dup0[] = {0x38, 0x03, 0x00, 0x01, 't'};
    expect_malformed(dup0, sizeof dup0);
    static const uint8_t id0[] = {0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x00};
    expect_malformed(id0, sizeof id0);
    static const uint8_t noid[] = {0x32, 0x04, 0x00, 0x01, 't', 0x00};
    expect_malformed(noid, sizeof noid);
    static const uint8_t wild1[] = {0x30, 0x05, 0x00, 0x03, 'a', '/', '+'};
    expect_malformed(wild1, sizeof wild1);
    static const uint8_t wild2[] = {0x30, 0x03, 0x00, 0x01, '#'};
    expect_malformed(wild2, sizeof wild2);
    static const uint8_t empty_topic[] = {0x30, 0x03, 0x00, 0x00, 'x'};
    expect_malformed(empty_topic, sizeof empty_topic);
    static const uint8_t topic_overrun[] = {0x30, 0x03, 0x00, 0x05, 'x'};
    expect_malformed(topic_overrun, sizeof topic_overrun);
}

static void test_acks_and_empty_packets(void **state)
{
    (void)state;
    static const struct { mqtt_type_t t; uint8_t first; } acks[] = {
        {MQTT_PUBACK, 0x40}, {MQTT_PUBREC, 0x50}, {MQTT_PUBREL, 0x62}, {MQTT_PUBCOMP, 0x70}, {MQTT_UNSUBACK, 0xb0}};
    for (size_t i = 0; i < sizeof acks / sizeof acks[0]; i++) {
        uint8_t wire[4] = {acks[i].first, 0x02, 0xab, 0xcd};
        mqtt_packet_t p;
        size_t used;
        assert_int_equal(parse(wire, 4, &p, &used), MQTT_PARSE_OK);
        assert_int_equal(p.type, acks[i].t);
        assert_int_equal(p.u.id, 0xabcd);
        buf_t b = BUF_INIT;
        assert_int_equal(mqtt_put_id_packet(&b, acks[i].t, 0xabcd), 0);
        assert_int_equal(b.len, 4);
        assert_memory_equal(b.data, wire, 4);
        assert_int_equal(mqtt_put_id_packet(&b, acks[i].t, 0), -1); /* id 0 is not sendable */
        assert_int_equal(b.len, 4);
        buf_free(&b);
        uint8_t longer[5] = {acks[i].first, 0x03, 0x00, 0x01, 0x00};
        expect_malformed(longer, 5);
        uint8_t zero[4] = {acks[i].first, 0x02, 0x00, 0x00};
        expect_malformed(zero, 4);
    }
    static const uint8_t pubrel_flags[] = {0x60, 0x02, 0x00, 0x01}; /* PUBREL must carry 0x2 */
    expect_malformed(pubrel_flags, sizeof pubrel_flags);
    static const uint8_t puback_flags[] = {0x42, 0x02, 0x00, 0x01};
    expect_malformed(puback_flags, sizeof puback_flags);

    static const struct { mqtt_type_t t; uint8_t first; } empties[] = {
        {MQTT_PINGREQ, 0xc0}, {MQTT_PINGRESP, 0xd0}, {MQTT_DISCONNECT, 0xe0}};
    for (size_t i = 0; i < 3; i++) {
        uint8_t wire[2] = {empties[i].first, 0x00};
        mqtt_packet_t p;
        size_t used;
        assert_int_equal(parse(wire, 2, &p, &used), MQTT_PARSE_OK);
        assert_int_equal(p.type, empties[i].t);
        assert_int_equal(used, 2);
        buf_t b = BUF_INIT;
        assert_int_equal(mqtt_put_empty(&b, empties[i].t), 0);
        assert_memory_equal(b.data, wire, 2);
        buf_free(&b);
        uint8_t body[3] = {empties[i].first, 0x01, 0x00};
        expect_malformed(body, 3);
        uint8_t flags[2] = {(uint8_t)(empties[i].first | 1), 0x00};
        expect_malformed(flags, 2);
    }

    static const uint8_t connack[] = {0x20, 0x02, 0x01, 0x05};
    mqtt_packet_t p;
    size_t used;
    assert_int_equal(parse(connack, 4, &p, &used), MQTT_PARSE_OK);
    assert_int_equal(p.type, MQTT_CONNACK);
    assert_true(p.u.connack.session_present);
    assert_int_equal(p.u.connack.rc, 5);
    buf_t b = BUF_INIT;
    assert_int_equal(mqtt_put_connack(&b, 1, 5), 0);
    assert_memory_equal(b.data, connack, 4);
    buf_free(&b);
    static const uint8_t connack_bad[] = {0x20, 0x02, 0x02, 0x00};
    expect_malformed(connack_bad, 4);

    static const uint8_t reserved0[] = {0x00, 0x00}, reserved15[] = {0xf0, 0x00};
    expect_malformed(reserved0, 2);
    expect_malformed(reserved15, 2);
}

static void test_subscribe_unsubscribe_suback(void **state)
{
    (void)state;
    mqtt_str_t filters[] = {S("devices/d/messages/devicebound/#"), S("$iothub/twin/res/#")};
    unsigned qos[] = {1, 0};
    buf_t b = BUF_INIT;
    assert_int_equal(mqtt_put_subscribe(&b, 10, filters, qos, 2), 0);
    mqtt_packet_t p;
    size_t used, pos = 0;
    assert_int_equal(parse(b.data, b.len, &p, &used), MQTT_PARSE_OK);
    assert_int_equal(p.type, MQTT_SUBSCRIBE);
    assert_int_equal(p.flags, 2);
    assert_int_equal(p.u.list.id, 10);
    assert_int_equal(p.u.list.count, 2);
    mqtt_str_t f;
    unsigned q;
    assert_true(mqtt_list_next(&p, &pos, &f, &q));
    assert_str(f, "devices/d/messages/devicebound/#");
    assert_int_equal(q, 1);
    assert_true(mqtt_list_next(&p, &pos, &f, &q));
    assert_str(f, "$iothub/twin/res/#");
    assert_int_equal(q, 0);
    assert_false(mqtt_list_next(&p, &pos, &f, &q));

    buf_reset(&b);
    assert_int_equal(mqtt_put_subscribe(&b, 11, filters, NULL, 2), 0);
    assert_int_equal(parse(b.data, b.len, &p, &used), MQTT_PARSE_OK);
    assert_int_equal(p.type, MQTT_UNSUBSCRIBE);
    pos = 0;
    assert_true(mqtt_list_next(&p, &pos, &f, &q));
    assert_true(mqtt_list_next(&p, &pos, &f, &q));
    assert_str(f, "$iothub/twin/res/#");
    assert_false(mqtt_list_next(&p, &pos, &f, &q));

    buf_reset(&b);
    static const uint8_t codes[] = {1, 0x80, 0};
    assert_int_equal(mqtt_put_suback(&b, 12, codes, 3), 0);
    static const uint8_t suback[] = {0x90, 0x05, 0x00, 0x0c, 0x01, 0x80, 0x00};
    assert_int_equal(b.len, sizeof suback);
    assert_memory_equal(b.data, suback, sizeof suback);
    assert_int_equal(parse(b.data, b.len, &p, &used), MQTT_PARSE_OK);
    pos = 0;
    assert_true(mqtt_list_next(&p, &pos, &f, &q));
    assert_int_equal(q, 1);
    assert_true(mqtt_list_next(&p, &pos, &f, &q));
    assert_int_equal(q, 0x80);
    buf_free(&b);

    static const uint8_t no_entries[] = {0x82, 0x02, 0x00, 0x01};
    expect_malformed(no_entries, sizeof no_entries);
    static const uint8_t bad_qos[] = {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 't', 0x03};
    expect_malformed(bad_qos, sizeof bad_qos);
    static const uint8_t reserved_qos_bits[] = {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 't', 0x41};
    expect_malformed(reserved_qos_bits, sizeof reserved_qos_bits);
    static const uint8_t no_qos[] = {0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 't'};
    expect_malformed(no_qos, sizeof no_qos);
    static const uint8_t wrong_flags[] = {0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 't', 0x00};
    expect_malformed(wrong_flags, sizeof wrong_flags);
    static const uint8_t empty_filter[] = {0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00};
    expect_malformed(empty_filter, sizeof empty_filter);
    static const uint8_t unsub_empty[] = {0xa2, 0x02, 0x00, 0x01};
    expect_malformed(unsub_empty, sizeof unsub_empty);
    static const uint8_t suback_bad[] = {0x90, 0x03, 0x00, 0x01, 0x03};
    expect_malformed(suback_bad, sizeof suback_bad);
}

static void test_remaining_length(void **state)
{
    (void)state;
    mqtt_packet_t p;
    size_t used;
    const char *why;
    /* The standard's boundary values (2.2.3): 127 → 1 byte, 128 → 2, 16383 → 2, 16384 → 3. */
    static const size_t sizes[] = {0, 127, 128, 16383, 16384, 70000};
    static const size_t hdr[] = {2, 2, 3, 3, 4, 4};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t payload = sizes[i] >= 3 ? sizes[i] - 3 : 0;
        if (sizes[i] < 3) continue;
        uint8_t *body = calloc(1, payload ? payload : 1);
        mqtt_publish_t pub = {S("t"), 0, 0, 0, 0, body, payload};
        buf_t b = BUF_INIT;
        assert_int_equal(mqtt_put_publish(&b, &pub), 0);
        assert_int_equal(b.len, hdr[i] + sizes[i]);
        assert_int_equal(mqtt_parse((uint8_t *)b.data, b.len, MAXREM, &p, &used, &why), MQTT_PARSE_OK);
        assert_int_equal(used, b.len);
        assert_int_equal(p.u.publish.payload_len, payload);
        buf_free(&b);
        free(body);
    }
    /* Largest encodable value: 0xff 0xff 0xff 0x7f. A fifth length byte is malformed. */
    static const uint8_t max4[] = {0x30, 0xff, 0xff, 0xff, 0x7f};
    assert_int_equal(mqtt_parse(max4, sizeof max4, MQTT_MAX_REMAINING, &p, &used, &why), MQTT_PARSE_MORE);
    static const uint8_t five[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_malformed(five, sizeof five);
    /* Announced over the bound: refused from the header alone, without the body. */
    static const uint8_t big[] = {0x30, 0x80, 0x80, 0x40}; /* 1 MiB */
    assert_int_equal(mqtt_parse(big, sizeof big, 1024, &p, &used, &why), MQTT_PARSE_TOO_BIG);
    assert_non_null(why);
    /* Non-minimal encodings are not forbidden by 3.1.1: 0x80 0x00 is zero. */
    static const uint8_t nonmin[] = {0xc0, 0x80, 0x00};
    assert_int_equal(parse(nonmin, sizeof nonmin, &p, &used), MQTT_PARSE_OK);
    assert_int_equal(p.type, MQTT_PINGREQ);
    assert_int_equal(used, 3);
    /* Serialising over the limit fails and leaves the buffer untouched. */
    buf_t b = BUF_INIT;
    buf_puts(&b, "keep");
    char *huge_topic = malloc(70000);
    memset(huge_topic, 'a', 70000);
    mqtt_publish_t pub = {{huge_topic, 70000}, 0, 0, 0, 0, (const uint8_t *)"", 0};
    assert_int_equal(mqtt_put_publish(&b, &pub), -1);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    free(huge_topic);
    buf_free(&b);
}

/* A stream of packets fed in every possible fragmentation: each prefix of a packet is MORE,
 * the whole packet parses, and consecutive packets come out one at a time. */
static void test_fragmented_stream(void **state)
{
    (void)state;
    buf_t s = BUF_INIT;
    mqtt_connect_t c = {0};
    c.keepalive = 30;
    c.clean = 1;
    c.client_id = S("dev1");
    c.has_username = c.has_password = 1;
    c.username = S("hub.azure-devices.net/dev1/?api-version=2021-04-12");
    c.password = S("SharedAccessSignature sr=x&sig=y&se=1");
    assert_int_equal(mqtt_put_connect(&s, &c), 0);
    char body[300];
    memset(body, 'z', sizeof body);
    mqtt_publish_t pub = {S("devices/dev1/messages/events/a=b"), 1, 0, 0, 42, (uint8_t *)body, sizeof body};
    assert_int_equal(mqtt_put_publish(&s, &pub), 0);
    assert_int_equal(mqtt_put_empty(&s, MQTT_PINGREQ), 0);
    assert_int_equal(mqtt_put_empty(&s, MQTT_DISCONNECT), 0);

    static const mqtt_type_t order[] = {MQTT_CONNECT, MQTT_PUBLISH, MQTT_PINGREQ, MQTT_DISCONNECT};
    /* Every split point of the first packet and of the concatenation. */
    for (size_t cut = 0; cut <= s.len; cut++) {
        mqtt_packet_t p;
        size_t used, off = 0, k = 0;
        const char *why;
        /* only the first `cut` bytes have arrived */
        for (;;) {
            mqtt_parse_result_t r = mqtt_parse((uint8_t *)s.data + off, cut - off, MAXREM, &p, &used, &why);
            if (r == MQTT_PARSE_MORE) break;
            assert_int_equal(r, MQTT_PARSE_OK);
            assert_int_equal(p.type, order[k]);
            k++;
            off += used;
        }
        /* then the rest */
        for (;;) {
            mqtt_parse_result_t r = mqtt_parse((uint8_t *)s.data + off, s.len - off, MAXREM, &p, &used, &why);
            if (off == s.len) {
                assert_int_equal(r, MQTT_PARSE_MORE);
                break;
            }
            assert_int_equal(r, MQTT_PARSE_OK);
            assert_int_equal(p.type, order[k]);
            if (p.type == MQTT_PUBLISH) {
                assert_int_equal(p.u.publish.id, 42);
                assert_int_equal(p.u.publish.payload_len, sizeof body);
            }
            k++;
            off += used;
        }
        assert_int_equal(k, 4);
    }
    buf_free(&s);
}

/* Any byte string: the parser returns, never reads out of bounds (ASan checks), and a
 * result of OK consumes between 2 bytes and the input. */
static void test_garbage_never_overreads(void **state)
{
    (void)state;
    uint32_t x = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t n = 1 + (x % 40);
        uint8_t *b = malloc(n);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            b[i] = (uint8_t)(x >> 16);
        }
        if (round % 3 == 0) b[0] = (uint8_t)((b[0] & 0xf0) | (b[0] >> 4 == 3 ? b[0] & 0x0f : (b[0] >> 4 == 6 || b[0] >> 4 == 8 || b[0] >> 4 == 10) ? 2 : 0));
        if (n > 1 && round % 2 == 0) b[1] = (uint8_t)(n - 2);
        mqtt_packet_t p;
        size_t used;
        const char *why;
        mqtt_parse_result_t r = mqtt_parse(b, n, MAXREM, &p, &used, &why);
        if (r == MQTT_PARSE_OK) {
            assert_true(used >= 2 && used <= n);
            if (p.type == MQTT_SUBSCRIBE || p.type == MQTT_UNSUBSCRIBE || p.type == MQTT_SUBACK) {
                size_t pos = 0, count = 0;
                mqtt_str_t f;
                unsigned q;
                while (mqtt_list_next(&p, &pos, &f, &q)) count++;
                assert_int_equal(count, p.u.list.count);
            }
        } else {
            assert_int_equal(used, 0);
        }
        free(b);
    }
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(mqtt_type_name(MQTT_CONNECT), "CONNECT");
    assert_string_equal(mqtt_type_name(MQTT_DISCONNECT), "DISCONNECT");
    assert_string_equal(mqtt_type_name(0), "reserved");
    assert_string_equal(mqtt_type_name(15), "reserved");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_roundtrip),
        cmocka_unit_test(test_connect_minimal_and_other_protocols),
        cmocka_unit_test(test_connect_violations),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_acks_and_empty_packets),
        cmocka_unit_test(test_subscribe_unsubscribe_suback),
        cmocka_unit_test(test_remaining_length),
        cmocka_unit_test(test_fragmented_stream),
        cmocka_unit_test(test_garbage_never_overreads),
        cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
