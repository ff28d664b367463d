/* fuzz_mqtt.c — what an MQTT device sends devhost's IoT Hub endpoint: MQTT 3.1.1 packets
 * (mqtt_parse, mqtt_list_next and the serialisers: src/devhost/mqtt/mqtt_packet.c) and IoT
 * Hub's names inside them — the CONNECT user name, the telemetry topic and its property bag,
 * subscription filters (mqtt_iothub.c).
 *
 * Input: a byte choosing the largest Remaining Length accepted, then the bytes a client sends,
 * parsed packet after packet as the server's read loop does.
 *
 * Invariants:
 * - packets: every proper prefix of a packet the parser accepts is "more", never a packet or an
 *   error, and a packet's size is what it consumed; an accepted packet serialised again parses
 *   to the same fields, and to the same bytes when its Remaining Length was minimal; a list's
 *   entries walk to its count; strings are UTF-8 without U+0000;
 * - names: a user name splits into slices of itself (host and device non-empty); a telemetry
 *   topic's id and bag are slices of it; a decoded bag has at most 256 application
 *   properties with unique names, none "$."-prefixed, every string UTF-8 without U+0000, its
 *   size the sum IoT Hub counts, and written back (percent-encoded) it decodes the same. */
#include "fuzz.h"

#include "devhost/mqtt/mqtt_iothub.h"
#include "devhost/mqtt/mqtt_packet.h"
#include "util/buf.h"
#include "util/utf8.h"

static int str_same(mqtt_str_t a, mqtt_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.s, b.s, a.len) == 0);
}

static int inside(mqtt_str_t part, const char *s, size_t n)
{
    return part.len == 0 || (part.s >= s && part.s + part.len <= s + n);
}

static int text_ok(const char *s)
{
    return s && utf8_valid(s, strlen(s));
}

static void put_encoded(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            buf_putc(b, (char)*p);
        } else {
            buf_putc(b, '%');
            buf_putc(b, hex[*p >> 4]);
            buf_putc(b, hex[*p & 15]);
        }
    }
}

static void check_props_equal(const mqtt_props_t *a, const mqtt_props_t *b)
{
    const char *const *sa[] = {&a->message_id, &a->correlation_id, &a->content_type, &a->content_encoding, &a->user_id};
    const char *const *sb[] = {&b->message_id, &b->correlation_id, &b->content_type, &b->content_encoding, &b->user_id};
    for (int i = 0; i < 5; i++)
        FUZZ_CHECK((!*sa[i] && !*sb[i]) || (*sa[i] && *sb[i] && strcmp(*sa[i], *sb[i]) == 0), "system property %d differs", i);
    FUZZ_CHECK(a->napp == b->napp && a->size == b->size, "%zu/%zu properties, size %zu/%zu", a->napp, b->napp, a->size, b->size);
    for (size_t i = 0; i < a->napp; i++)
        FUZZ_CHECK(strcmp(a->app[i].name, b->app[i].name) == 0 && strcmp(a->app[i].value, b->app[i].value) == 0,
                   "property %zu differs", i);
}

static void check_bag(mqtt_str_t bag)
{
    static mqtt_props_t p, q;
    size_t cap = bag.len * 2 + 2;
    char *scratch = malloc(cap), *scratch2 = NULL;
    if (!scratch) abort();
    const char *why = NULL;
    if (mqtt_hub_decode_bag(bag, scratch, cap, &p, &why) != 0) {
        FUZZ_CHECK(why && *why, "bag refused without a reason");
        free(scratch);
        return;
    }
    FUZZ_CHECK(p.napp <= MQTT_HUB_MAX_APP_PROPS, "%zu properties", p.napp);
    size_t size = 0;
    const char *sys[] = {p.message_id, p.correlation_id, p.content_type, p.content_encoding, p.user_id};
    for (int i = 0; i < 5; i++)
        if (sys[i]) {
            FUZZ_CHECK(text_ok(sys[i]), "system property %d not UTF-8", i);
            size += strlen(sys[i]);
        }
    for (size_t i = 0; i < p.napp; i++) {
        const char *k = p.app[i].name, *v = p.app[i].value;
        FUZZ_CHECK(text_ok(k) && *k && text_ok(v), "property %zu not UTF-8 or empty name", i);
        FUZZ_CHECK(!(k[0] == '$' && k[1] == '.'), "protocol field '%s' kept as a property", k);
        for (size_t j = 0; j < i; j++) FUZZ_CHECK(strcmp(p.app[j].name, k) != 0, "'%s' twice", k);
        size += strlen(k) + strlen(v);
    }
    FUZZ_CHECK(size == p.size, "size %zu, IoT Hub counts %zu", p.size, size);

    /* written back, percent-encoded */
    buf_t b = BUF_INIT;
    const char *names[] = {"$.mid", "$.cid", "$.ct", "$.ce", "$.uid"};
    for (int i = 0; i < 5; i++)
        if (sys[i]) {
            if (b.len) buf_putc(&b, '&');
            buf_puts(&b, names[i]);
            buf_putc(&b, '=');
            put_encoded(&b, sys[i]);
        }
    for (size_t i = 0; i < p.napp; i++) {
        if (b.len) buf_putc(&b, '&');
        put_encoded(&b, p.app[i].name);
        buf_putc(&b, '=');
        put_encoded(&b, p.app[i].value);
    }
    if (b.oom) abort();
    mqtt_str_t again = {b.data ? b.data : "", b.len};
    size_t cap2 = again.len * 2 + 2;
    scratch2 = malloc(cap2);
    if (!scratch2) abort();
    FUZZ_CHECK(mqtt_hub_decode_bag(again, scratch2, cap2, &q, &why) == 0, "written-back bag refused: %s", why);
    check_props_equal(&p, &q);
    buf_free(&b);
    free(scratch);
    free(scratch2);
}

static void check_names(const mqtt_packet_t *pkt)
{
    if (pkt->type == MQTT_CONNECT && pkt->u.connect.has_username) {
        mqtt_str_t u = pkt->u.connect.username;
        mqtt_username_t n;
        const char *why;
        if (mqtt_hub_parse_username(u.s, u.len, &n, &why) == 0) {
            FUZZ_CHECK(n.host.len && n.device_id.len, "user name without host or device");
            FUZZ_CHECK(inside(n.host, u.s, u.len) && inside(n.device_id, u.s, u.len) && inside(n.module_id, u.s, u.len) &&
                           inside(n.query, u.s, u.len),
                       "user name parts outside the user name");
        }
    } else if (pkt->type == MQTT_PUBLISH) {
        mqtt_str_t t = pkt->u.publish.topic, id, bag;
        if (mqtt_hub_classify_topic(t, &id, &bag) == MQTT_HUB_TOPIC_TELEMETRY) {
            FUZZ_CHECK(id.len && inside(id, t.s, t.len) && inside(bag, t.s, t.len), "topic parts outside the topic");
            FUZZ_CHECK(!memchr(id.s, '/', id.len), "device id with '/'");
            check_bag(bag);
        }
    } else if (pkt->type == MQTT_SUBSCRIBE) {
        size_t pos = 0;
        mqtt_str_t f;
        unsigned q;
        while (mqtt_list_next(pkt, &pos, &f, &q)) (void)mqtt_hub_filter_ok("dev1", f);
    }
}

/* Serialise pkt again; 0 when there is no serialiser for it (a CONNECT of another protocol). */
static int reserialise(const mqtt_packet_t *pkt, buf_t *b)
{
    switch (pkt->type) {
    case MQTT_CONNECT:
        if (!pkt->u.connect.supported) return 0;
        return mqtt_put_connect(b, &pkt->u.connect) == 0;
    case MQTT_CONNACK: return mqtt_put_connack(b, pkt->u.connack.session_present, pkt->u.connack.rc) == 0;
    case MQTT_PUBLISH: return mqtt_put_publish(b, &pkt->u.publish) == 0;
    case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP: case MQTT_UNSUBACK:
        return mqtt_put_id_packet(b, pkt->type, pkt->u.id) == 0;
    case MQTT_PINGREQ: case MQTT_PINGRESP: case MQTT_DISCONNECT: return mqtt_put_empty(b, pkt->type) == 0;
    case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE: case MQTT_SUBACK: {
        size_t n = pkt->u.list.count, pos = 0, i = 0;
        mqtt_str_t *f = calloc(n, sizeof *f);
        unsigned *q = calloc(n, sizeof *q);
        uint8_t *codes = calloc(n, 1);
        if (!f || !q || !codes) abort();
        while (i < n && mqtt_list_next(pkt, &pos, &f[i], &q[i])) { codes[i] = (uint8_t)q[i]; i++; }
        FUZZ_CHECK(i == n && !mqtt_list_next(pkt, &pos, &f[0], &q[0]), "walked %zu of %zu entries", i, n);
        int ok = pkt->type == MQTT_SUBACK ? mqtt_put_suback(b, pkt->u.list.id, codes, n) == 0
                                          : mqtt_put_subscribe(b, pkt->u.list.id, f, pkt->type == MQTT_SUBSCRIBE ? q : NULL, n) == 0;
        free(f);
        free(q);
        free(codes);
        return ok;
    }
    }
    return 0;
}

static void check_same_packet(const mqtt_packet_t *a, const mqtt_packet_t *b)
{
    FUZZ_CHECK(a->type == b->type && a->flags == b->flags, "type/flags differ");
    switch (a->type) {
    case MQTT_CONNECT: {
        const mqtt_connect_t *x = &a->u.connect, *y = &b->u.connect;
        FUZZ_CHECK(x->clean == y->clean && x->keepalive == y->keepalive && str_same(x->client_id, y->client_id) &&
                       x->has_will == y->has_will && x->will_qos == y->will_qos && x->will_retain == y->will_retain &&
                       str_same(x->will_topic, y->will_topic) && str_same(x->will_payload, y->will_payload) &&
                       x->has_username == y->has_username && x->has_password == y->has_password &&
                       str_same(x->username, y->username) && str_same(x->password, y->password),
                   "CONNECT differs after a round trip");
        break;
    }
    case MQTT_PUBLISH: {
        const mqtt_publish_t *x = &a->u.publish, *y = &b->u.publish;
        FUZZ_CHECK(str_same(x->topic, y->topic) && x->qos == y->qos && x->dup == y->dup && x->retain == y->retain &&
                       x->id == y->id && x->payload_len == y->payload_len &&
                       (x->payload_len == 0 || memcmp(x->payload, y->payload, x->payload_len) == 0),
                   "PUBLISH differs after a round trip");
        break;
    }
    case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE: case MQTT_SUBACK:
        FUZZ_CHECK(a->u.list.id == b->u.list.id && a->u.list.count == b->u.list.count && a->u.list.len == b->u.list.len &&
                       memcmp(a->u.list.p, b->u.list.p, a->u.list.len) == 0,
                   "list differs after a round trip");
        break;
    case MQTT_CONNACK:
        FUZZ_CHECK(a->u.connack.session_present == b->u.connack.session_present && a->u.connack.rc == b->u.connack.rc, "CONNACK");
        break;
    case MQTT_PINGREQ: case MQTT_PINGRESP: case MQTT_DISCONNECT:
        break;
    default:
        FUZZ_CHECK(a->u.id == b->u.id, "packet identifier differs");
    }
}

/* Bytes of the fixed header for this Remaining Length written minimally. */
static size_t minimal_header(size_t rem)
{
    size_t n = 2;
    while (rem >= 128) { rem >>= 7; n++; }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t max_remaining = data[0] & 1 ? MQTT_MAX_REMAINING : (size_t)16 << (data[0] % 16);
    uint8_t *buf = fuzz_memdup(data + 1, size - 1);
    size_t len = size - 1, off = 0;
    for (int packets = 0; off < len && packets < 64; packets++) {
        mqtt_packet_t pkt;
        size_t used = 0;
        const char *why = NULL;
        mqtt_parse_result_t r = mqtt_parse(buf + off, len - off, max_remaining, &pkt, &used, &why);
        if (r == MQTT_PARSE_MORE) break;
        if (r != MQTT_PARSE_OK) {
            FUZZ_CHECK(why && *why && (r == MQTT_PARSE_MALFORMED || r == MQTT_PARSE_TOO_BIG), "result %d", (int)r);
            break;
        }
        FUZZ_CHECK(used == pkt.size && used >= 2 && used <= len - off && used - minimal_header(0) <= max_remaining + 3,
                   "used %zu of %zu", used, len - off);
        /* a proper prefix is never a packet nor an error */
        for (size_t k = 0; k < used; k += 1 + k / 4) {
            mqtt_packet_t pp;
            size_t u2;
            const char *w2;
            FUZZ_CHECK(mqtt_parse(buf + off, k, max_remaining, &pp, &u2, &w2) == MQTT_PARSE_MORE,
                       "a %zu-byte prefix of a %zu-byte packet is not 'more'", k, used);
        }
        if (pkt.type == MQTT_PUBLISH) FUZZ_CHECK(mqtt_utf8_ok(pkt.u.publish.topic.s, pkt.u.publish.topic.len), "topic");
        check_names(&pkt);
        buf_t b = BUF_INIT;
        if (reserialise(&pkt, &b)) {
            mqtt_packet_t again;
            size_t u3;
            const char *w3;
            FUZZ_CHECK(mqtt_parse((const uint8_t *)b.data, b.len, MQTT_MAX_REMAINING, &again, &u3, &w3) == MQTT_PARSE_OK &&
                           u3 == b.len,
                       "a serialised %s does not parse back: %s", mqtt_type_name(pkt.type), w3 ? w3 : "");
            check_same_packet(&pkt, &again);
            size_t rem = used - 1;
            for (size_t h = 1; h < used && (buf[off + h] & 0x80); h++) rem--;
            rem--;   /* rem is now the Remaining Length */
            if (used - rem == minimal_header(rem))
                FUZZ_CHECK(b.len == used && memcmp(b.data, buf + off, used) == 0, "%s not serialised to the same bytes",
                           mqtt_type_name(pkt.type));
        }
        buf_free(&b);
        off += used;
    }
    free(buf);
    return 0;
}
