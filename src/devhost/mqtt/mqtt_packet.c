/* mqtt_packet.c — MQTT 3.1.1 packet parser and serialisers (see mqtt_packet.h).
 *
 * The parser is a cursor over one packet's body: every read checks the bytes left first, so
 * a lying length can only make a packet malformed, never make the parser read past it. */
#include "devhost/mqtt/mqtt_packet.h"

#include <string.h>

#include "util/utf8.h"

/* ---- parsing ---------------------------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *p;
    size_t         left;
} cursor_t;

static int cur_u8(cursor_t *c, unsigned *v)
{
    if (c->left < 1) return -1;
    *v = c->p[0];
    c->p++;
    c->left--;
    return 0;
}

static int cur_u16(cursor_t *c, unsigned *v)
{
    if (c->left < 2) return -1;
    *v = ((unsigned)c->p[0] << 8) | c->p[1];
    c->p += 2;
    c->left -= 2;
    return 0;
}

/* Two-byte length + bytes (binary data, 1.5.3 without the UTF-8 rule). */
static int cur_bytes(cursor_t *c, mqtt_str_t *out)
{
    unsigned n;
    if (cur_u16(c, &n) != 0 || c->left < n) return -1;
    out->s = (const char *)c->p;
    out->len = n;
    c->p += n;
    c->left -= n;
    return 0;
}

int mqtt_utf8_ok(const char *s, size_t len)
{
    return memchr(s, '\0', len) == NULL && utf8_valid(s, len);
}

static int cur_string(cursor_t *c, mqtt_str_t *out)
{
    return cur_bytes(c, out) == 0 && mqtt_utf8_ok(out->s, out->len) ? 0 : -1;
}

#define FAIL(msg) do { *why = (msg); return MQTT_PARSE_MALFORMED; } while (0)

static mqtt_parse_result_t parse_connect(cursor_t *c, mqtt_connect_t *k, const char **why)
{
    memset(k, 0, sizeof *k);
    unsigned level, flags, ka;
    if (cur_string(c, &k->protocol) != 0) FAIL("CONNECT without a valid protocol name");
    if (cur_u8(c, &level) != 0) FAIL("CONNECT truncated before the protocol level");
    k->level = level;
    if (k->protocol.len != 4 || memcmp(k->protocol.s, "MQTT", 4) != 0 || level != 4)
        return MQTT_PARSE_OK; /* another protocol or version: the caller answers 0x01 */
    if (cur_u8(c, &flags) != 0 || cur_u16(c, &ka) != 0) FAIL("CONNECT truncated in its variable header");
    if (flags & 0x01) FAIL("CONNECT reserved flag set");
    k->clean = (flags >> 1) & 1;
    k->has_will = (flags >> 2) & 1;
    k->will_qos = (int)((flags >> 3) & 3);
    k->will_retain = (flags >> 5) & 1;
    k->has_password = (flags >> 6) & 1;
    k->has_username = (flags >> 7) & 1;
    k->keepalive = ka;
    if (!k->has_will && (k->will_qos || k->will_retain)) FAIL("CONNECT Will QoS/Retain set without a Will");
    if (k->will_qos == 3) FAIL("CONNECT Will QoS 3");
    if (k->has_password && !k->has_username) FAIL("CONNECT password without a user name");
    if (cur_string(c, &k->client_id) != 0) FAIL("CONNECT client identifier missing or not UTF-8");
    if (k->has_will) {
        if (cur_string(c, &k->will_topic) != 0) FAIL("CONNECT Will topic missing or not UTF-8");
        if (cur_bytes(c, &k->will_payload) != 0) FAIL("CONNECT Will message truncated");
    }
    if (k->has_username && cur_string(c, &k->username) != 0) FAIL("CONNECT user name missing or not UTF-8");
    if (k->has_password && cur_bytes(c, &k->password) != 0) FAIL("CONNECT password truncated");
    if (c->left != 0) FAIL("CONNECT has bytes after its payload");
    k->supported = 1;
    return MQTT_PARSE_OK;
}

static mqtt_parse_result_t parse_publish(cursor_t *c, unsigned flags, mqtt_publish_t *p,
                                         const char **why)
{
    memset(p, 0, sizeof *p);
    p->retain = flags & 1;
    p->qos = (int)((flags >> 1) & 3);
    p->dup = (flags >> 3) & 1;
    if (p->qos == 3) FAIL("PUBLISH with QoS 3");
    if (p->dup && p->qos == 0) FAIL("PUBLISH with DUP set at QoS 0");
    if (cur_string(c, &p->topic) != 0) FAIL("PUBLISH topic name missing or not UTF-8");
    if (p->topic.len == 0) FAIL("PUBLISH with an empty topic name");
    if (memchr(p->topic.s, '+', p->topic.len) || memchr(p->topic.s, '#', p->topic.len))
        FAIL("PUBLISH topic name contains a wildcard");
    if (p->qos > 0) {
        if (cur_u16(c, &p->id) != 0) FAIL("PUBLISH truncated before its packet identifier");
        if (p->id == 0) FAIL("PUBLISH with packet identifier 0");
    }
    p->payload = c->p;
    p->payload_len = c->left;
    c->left = 0;
    return MQTT_PARSE_OK;
}

/* SUBSCRIBE (filters + QoS), UNSUBSCRIBE (filters) or SUBACK (return codes): check every
 * entry now so that mqtt_list_next can walk them without checks. */
static mqtt_parse_result_t parse_list(cursor_t *c, mqtt_type_t type, mqtt_list_t *l, const char **why)
{
    memset(l, 0, sizeof *l);
    if (cur_u16(c, &l->id) != 0) FAIL("packet truncated before its packet identifier");
    if (l->id == 0) FAIL("packet identifier 0");
    l->p = c->p;
    l->len = c->left;
    while (c->left > 0) {
        unsigned q;
        if (type != MQTT_SUBACK) {
            mqtt_str_t f;
            if (cur_string(c, &f) != 0) FAIL("topic filter truncated or not UTF-8");
            if (f.len == 0) FAIL("empty topic filter");
        }
        if (type != MQTT_UNSUBSCRIBE) {
            if (cur_u8(c, &q) != 0) FAIL("SUBSCRIBE truncated before a requested QoS");
            if (type == MQTT_SUBSCRIBE && q > 2) FAIL("SUBSCRIBE requested QoS not 0, 1 or 2");
            if (type == MQTT_SUBACK && q > 2 && q != MQTT_SUBACK_FAILURE) FAIL("SUBACK return code invalid");
        }
        l->count++;
    }
    if (l->count == 0) FAIL("SUBSCRIBE/UNSUBSCRIBE/SUBACK without any entry");
    return MQTT_PARSE_OK;
}

int mqtt_list_next(const mqtt_packet_t *pkt, size_t *pos, mqtt_str_t *filter, unsigned *qos)
{
    const mqtt_list_t *l = &pkt->u.list;
    if (*pos >= l->len) return 0;
    cursor_t c = {l->p + *pos, l->len - *pos};
    filter->s = NULL;
    filter->len = 0;
    *qos = 0;
    if (pkt->type != MQTT_SUBACK && cur_bytes(&c, filter) != 0) return 0;
    if (pkt->type != MQTT_UNSUBSCRIBE && cur_u8(&c, qos) != 0) return 0;
    *pos = l->len - c.left;
    return 1;
}

/* Flags each type must carry (2.2.2); PUBLISH's are its own. */
static int flags_ok(unsigned type, unsigned flags)
{
    switch (type) {
    case MQTT_PUBLISH: return 1;
    case MQTT_PUBREL: case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE: return flags == 0x2;
    default: return flags == 0;
    }
}

mqtt_parse_result_t mqtt_parse(const uint8_t *buf, size_t len, size_t max_remaining,
                               mqtt_packet_t *pkt, size_t *used, const char **why)
{
    *used = 0;
    *why = NULL;
    if (len < 2) return MQTT_PARSE_MORE;
    unsigned type = buf[0] >> 4, flags = buf[0] & 0x0f;
    if (type == 0 || type == 15) FAIL("reserved packet type");
    if (!flags_ok(type, flags)) FAIL("reserved flag bits in the fixed header");
    size_t rem = 0, h = 1;
    for (unsigned shift = 0;; shift += 7) {
        if (h >= len) return MQTT_PARSE_MORE;
        uint8_t d = buf[h++];
        rem |= (size_t)(d & 0x7f) << shift;
        if (!(d & 0x80)) break;
        if (h == 5) FAIL("Remaining Length longer than 4 bytes");
    }
    if (rem > max_remaining) {
        *why = "packet larger than the server accepts";
        return MQTT_PARSE_TOO_BIG;
    }
    if (len - h < rem) return MQTT_PARSE_MORE;

    memset(pkt, 0, sizeof *pkt);
    pkt->type = (mqtt_type_t)type;
    pkt->flags = flags;
    pkt->size = h + rem;
    cursor_t c = {buf + h, rem};
    mqtt_parse_result_t r = MQTT_PARSE_OK;
    switch (pkt->type) {
    case MQTT_CONNECT:
        r = parse_connect(&c, &pkt->u.connect, why);
        break;
    case MQTT_CONNACK: {
        unsigned af, rc;
        if (rem != 2 || cur_u8(&c, &af) != 0 || cur_u8(&c, &rc) != 0) FAIL("CONNACK length is not 2");
        if (af & 0xfe) FAIL("CONNACK reserved flags set");
        pkt->u.connack.session_present = (int)af;
        pkt->u.connack.rc = rc;
        break;
    }
    case MQTT_PUBLISH:
        r = parse_publish(&c, flags, &pkt->u.publish, why);
        break;
    case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP: case MQTT_UNSUBACK:
        if (rem != 2 || cur_u16(&c, &pkt->u.id) != 0) FAIL("acknowledgement length is not 2");
        if (pkt->u.id == 0) FAIL("packet identifier 0");
        break;
    case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE: case MQTT_SUBACK:
        r = parse_list(&c, pkt->type, &pkt->u.list, why);
        break;
    case MQTT_PINGREQ: case MQTT_PINGRESP: case MQTT_DISCONNECT:
        if (rem != 0) FAIL("PINGREQ/PINGRESP/DISCONNECT with a body");
        break;
    }
    if (r != MQTT_PARSE_OK) return r;
    *used = pkt->size;
    return MQTT_PARSE_OK;
}

#undef FAIL

/* ---- serialising ------------------------------------------------------------------------ */

static int put_header(buf_t *b, unsigned first, size_t rem)
{
    if (rem > MQTT_MAX_REMAINING) return -1;
    uint8_t h[5];
    size_t n = 0;
    h[n++] = (uint8_t)first;
    do {
        uint8_t d = rem & 0x7f;
        rem >>= 7;
        h[n++] = (uint8_t)(d | (rem ? 0x80 : 0));
    } while (rem);
    return buf_append(b, h, n);
}

static int put_u16(buf_t *b, unsigned v)
{
    uint8_t d[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return buf_append(b, d, 2);
}

static int put_str(buf_t *b, const char *s, size_t len)
{
    if (len > 0xffff) return -1;
    if (put_u16(b, (unsigned)len) != 0) return -1;
    return buf_append(b, s, len);
}

int mqtt_put_connack(buf_t *b, int session_present, unsigned rc)
{
    if (put_header(b, MQTT_CONNACK << 4, 2) != 0) return -1;
    uint8_t d[2] = {(uint8_t)(session_present ? 1 : 0), (uint8_t)rc};
    return buf_append(b, d, 2);
}

int mqtt_put_id_packet(buf_t *b, mqtt_type_t type, unsigned id)
{
    if (id == 0 || id > 0xffff) return -1;
    unsigned first = (unsigned)type << 4 | (type == MQTT_PUBREL ? 0x2 : 0);
    if (put_header(b, first, 2) != 0) return -1;
    return put_u16(b, id);
}

int mqtt_put_suback(buf_t *b, unsigned id, const uint8_t *codes, size_t n)
{
    if (id == 0 || id > 0xffff || n == 0) return -1;
    if (put_header(b, MQTT_SUBACK << 4, 2 + n) != 0 || put_u16(b, id) != 0) return -1;
    return buf_append(b, codes, n);
}

int mqtt_put_empty(buf_t *b, mqtt_type_t type)
{
    return put_header(b, (unsigned)type << 4, 0);
}

static int put_connect_raw(buf_t *b, const mqtt_connect_t *c)
{
    if (c->has_password && !c->has_username) return -1;
    size_t rem = 10 + 2 + c->client_id.len;
    if (c->has_will) rem += 4 + c->will_topic.len + c->will_payload.len;
    if (c->has_username) rem += 2 + c->username.len;
    if (c->has_password) rem += 2 + c->password.len;
    unsigned flags = (c->clean ? 0x02 : 0) | (c->has_password ? 0x40 : 0) | (c->has_username ? 0x80 : 0);
    if (c->has_will) flags |= 0x04 | (unsigned)(c->will_qos & 3) << 3 | (c->will_retain ? 0x20 : 0);
    if (put_header(b, MQTT_CONNECT << 4, rem) != 0 || put_str(b, "MQTT", 4) != 0) return -1;
    uint8_t v[4] = {4, (uint8_t)flags, (uint8_t)(c->keepalive >> 8), (uint8_t)c->keepalive};
    if (buf_append(b, v, 4) != 0 || put_str(b, c->client_id.s, c->client_id.len) != 0) return -1;
    if (c->has_will && (put_str(b, c->will_topic.s, c->will_topic.len) != 0 ||
                        put_str(b, c->will_payload.s, c->will_payload.len) != 0))
        return -1;
    if (c->has_username && put_str(b, c->username.s, c->username.len) != 0) return -1;
    if (c->has_password && put_str(b, c->password.s, c->password.len) != 0) return -1;
    return 0;
}

static int put_publish_raw(buf_t *b, const mqtt_publish_t *p)
{
    if (p->qos < 0 || p->qos > 2 || (p->qos > 0 && (p->id == 0 || p->id > 0xffff))) return -1;
    size_t rem = 2 + p->topic.len + (p->qos ? 2 : 0) + p->payload_len;
    unsigned first = MQTT_PUBLISH << 4 | (p->dup ? 0x08 : 0) | (unsigned)p->qos << 1 | (p->retain ? 1 : 0);
    if (put_header(b, first, rem) != 0 || put_str(b, p->topic.s, p->topic.len) != 0) return -1;
    if (p->qos && put_u16(b, p->id) != 0) return -1;
    return buf_append(b, p->payload, p->payload_len);
}

static int put_subscribe_raw(buf_t *b, unsigned id, const mqtt_str_t *filters, const unsigned *qos, size_t n)
{
    if (id == 0 || id > 0xffff || n == 0) return -1;
    size_t rem = 2;
    for (size_t i = 0; i < n; i++) rem += 2 + filters[i].len + (qos ? 1 : 0);
    unsigned first = (qos ? MQTT_SUBSCRIBE : MQTT_UNSUBSCRIBE) << 4 | 0x2;
    if (put_header(b, first, rem) != 0 || put_u16(b, id) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        if (put_str(b, filters[i].s, filters[i].len) != 0) return -1;
        if (qos && buf_putc(b, (char)(qos[i] & 3)) != 0) return -1;
    }
    return 0;
}

/* The serialisers of packets with strings can fail half-way (a string over 65535 bytes):
 * b is then put back as it was, so that it never holds a partial packet. The others check
 * everything before writing. */
static int undo(buf_t *b, size_t mark, int rc)
{
    if (rc != 0 && !b->oom && b->data) {
        b->len = mark;
        b->data[mark] = '\0';
    }
    return rc;
}

int mqtt_put_connect(buf_t *b, const mqtt_connect_t *c)
{
    size_t mark = b->len;
    return undo(b, mark, put_connect_raw(b, c));
}

int mqtt_put_publish(buf_t *b, const mqtt_publish_t *p)
{
    size_t mark = b->len;
    return undo(b, mark, put_publish_raw(b, p));
}

int mqtt_put_subscribe(buf_t *b, unsigned id, const mqtt_str_t *filters, const unsigned *qos, size_t n)
{
    size_t mark = b->len;
    return undo(b, mark, put_subscribe_raw(b, id, filters, qos, n));
}

const char *mqtt_type_name(unsigned type)
{
    static const char *const names[16] = {
        "reserved", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
        "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT",
        "reserved"};
    return names[type & 15];
}
