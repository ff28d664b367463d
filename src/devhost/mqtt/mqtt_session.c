/* mqtt_session.c — one device connection's MQTT 3.1.1 session, as IoT Hub runs it.
 *
 * CONNECT: client id = device id, user name `{hub}/{device id}/?api-version=...`, password =
 * SAS token checked by the backend; refusals answer CONNACK 0x01-0x05 and close. PUBLISH:
 * only to the device's own telemetry topic, QoS 0 or 1; the property bag becomes system and
 * application properties; the message goes to the backend and its PUBACK waits in a FIFO
 * until the backend reports it durable (PUBACKs leave in arrival order, as MQTT requires).
 * SUBSCRIBE: the topic filters IoT Hub documents are granted (at most QoS 1), others get
 * 0x80. Anything IoT Hub would not accept closes the connection (MQTT has no error reply),
 * with a log line saying why. Socket and TLS work is mqtt_server.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "devhost/iothub/registry.h"
#include "devhost/mqtt/mqtt_internal.h"

/* Copy s for a log line: printable ASCII only (others become '?'), at most 64 bytes. */
static const char *printable(mqtt_str_t s, char out[72])
{
    size_t n = s.len < 64 ? s.len : 64, i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.s[i];
        out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    strcpy(out + i, s.len > 64 ? "..." : "");
    return out;
}

/* A forbidden or malformed packet: count it and close (no reply exists in MQTT 3.1.1). */
static int violation(mqtt_conn_t *c, const char *what)
{
    atomic_fetch_add(&c->srv->st_protocol_errors, 1);
    mqtt_conn_close(c, LOG_WARN, "mqtt: %s (%s) %s; connection closed",
                    c->device_id ? c->device_id : "client", c->peer, what);
    return -1;
}

static int refuse(mqtt_conn_t *c, unsigned rc, const char *why)
{
    atomic_fetch_add(&c->srv->st_refused, 1);
    mqtt_put_connack(&c->out, 0, rc);
    mqtt_conn_close(c, LOG_WARN, "mqtt: CONNECT from %s refused with CONNACK 0x%02x: %s", c->peer,
                    rc, why);
    return -1;
}

static char *dup_str(mqtt_str_t s)
{
    char *d = malloc(s.len + 1);
    if (d) {
        memcpy(d, s.s, s.len);
        d[s.len] = '\0';
    }
    return d;
}

/* Check the user name and password of k against the hub; sets *rc and *why on refusal. */
static int check_identity(mqtt_conn_t *c, const mqtt_connect_t *k, int64_t *expires_at,
                          unsigned *rc, char *why, size_t whylen)
{
    mqtt_server_t *s = c->srv;
    mqtt_username_t u;
    const char *uwhy;
    char shown[72];
    *rc = MQTT_CONNACK_BAD_CREDENTIALS;
    if (!k->has_username || !k->has_password) {
        snprintf(why, whylen, "no user name or no password (a SAS token is required; X.509 "
                 "authentication is not supported)");
        return -1;
    }
    if (mqtt_hub_parse_username(k->username.s, k->username.len, &u, &uwhy) != 0) {
        snprintf(why, whylen, "%s", uwhy);
        return -1;
    }
    if (!mqtt_str_caseeq(u.host, s->hub_host)) {
        snprintf(why, whylen, "the user name names hub %s, this is %s", printable(u.host, shown),
                 s->hub_host);
        return -1;
    }
    if (u.device_id.len != k->client_id.len || memcmp(u.device_id.s, k->client_id.s, u.device_id.len) != 0) {
        snprintf(why, whylen, "the user name names another device than the client identifier");
        return -1;
    }
    if (u.module_id.len > 0) {
        *rc = MQTT_CONNACK_NOT_AUTHORISED;
        snprintf(why, whylen, "module identities are not supported");
        return -1;
    }
    if (memchr(k->password.s, '\0', k->password.len)) {
        snprintf(why, whylen, "the password is not a SAS token");
        return -1;
    }
    char *pw = dup_str(k->password);
    if (!pw) {
        *rc = MQTT_CONNACK_UNAVAILABLE;
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    why[0] = '\0';
    char *user = dup_str(k->username);
    mqtt_auth_t a = user ? s->opts.backend.authenticate(s->opts.backend.ctx, c->device_id, user, pw,
                                                        expires_at, &c->session, why, whylen)
                         : MQTT_AUTH_UNAVAILABLE;
    free(user);
    OPENSSL_cleanse(pw, k->password.len);
    free(pw);
    if (a == MQTT_AUTH_OK) return 0;
    *rc = a == MQTT_AUTH_NOT_AUTHORISED ? MQTT_CONNACK_NOT_AUTHORISED
        : a == MQTT_AUTH_UNAVAILABLE    ? MQTT_CONNACK_UNAVAILABLE
                                        : MQTT_CONNACK_BAD_CREDENTIALS;
    if (!why[0]) snprintf(why, whylen, "the SAS token was not accepted");
    return -1;
}

/* A Will must go where the device's telemetry goes (IoT Hub forwards it as telemetry). */
static int keep_will(mqtt_conn_t *c, const mqtt_connect_t *k)
{
    mqtt_str_t id, bag;
    if (mqtt_hub_classify_topic(k->will_topic, &id, &bag) != MQTT_HUB_TOPIC_TELEMETRY ||
        !mqtt_str_eq(id, c->device_id))
        return -1;
    if (buf_append(&c->will_topic, k->will_topic.s, k->will_topic.len) != 0 ||
        buf_append(&c->will_payload, k->will_payload.s, k->will_payload.len) != 0)
        return -1;
    c->has_will = 1;
    c->will_retain = k->will_retain;
    return 0;
}

static int on_connect(mqtt_conn_t *c, const mqtt_connect_t *k)
{
    mqtt_server_t *s = c->srv;
    if (!k->supported) return refuse(c, MQTT_CONNACK_BAD_PROTOCOL, "not MQTT 3.1.1 (protocol level 4)");
    char why[300];
    char *id = dup_str(k->client_id);
    if (!id) return refuse(c, MQTT_CONNACK_UNAVAILABLE, "out of memory");
    if (!iothub_device_id_valid(id, why, sizeof why)) { /* before the id reaches any log line */
        free(id);
        char line[400];
        snprintf(line, sizeof line, "the client identifier is not a device id: %s", why);
        return refuse(c, MQTT_CONNACK_ID_REJECTED, line);
    }
    c->device_id = id;
    unsigned rc;
    int64_t expires_at = 0;
    if (check_identity(c, k, &expires_at, &rc, why, sizeof why) != 0) {
        char line[400];
        snprintf(line, sizeof line, "device %s: %s", c->device_id, why);
        return refuse(c, rc, line);
    }
    if (k->has_will && keep_will(c, k) != 0)
        return refuse(c, MQTT_CONNACK_NOT_AUTHORISED, "the Will topic must be the device's "
                      "telemetry topic devices/{device id}/messages/events/...");
    if (mqtt_conn_claim_device(c) != 0) return refuse(c, MQTT_CONNACK_UNAVAILABLE, "out of memory");
    mqtt_put_connack(&c->out, 0, MQTT_CONNACK_ACCEPTED);
    c->state = CONN_ACTIVE;
    atomic_fetch_add(&s->st_connections, 1);
    /* 1.5 × keep-alive (3.1.2.10), capped as IoT Hub caps it; keep-alive 0 gets the cap. */
    uint64_t ka_ms = k->keepalive ? (uint64_t)k->keepalive * 1500u : (uint64_t)s->opts.max_keepalive_s * 1000u;
    if (ka_ms > (uint64_t)s->opts.max_keepalive_s * 1000u) ka_ms = (uint64_t)s->opts.max_keepalive_s * 1000u;
    c->keepalive_ms = (unsigned)ka_ms;
    c->deadline_ms = mqtt_now_ms() + (int64_t)ka_ms;
    /* The expiry is wall-clock time; deadlines are on the monotonic clock. */
    c->expires_ms = expires_at > 0 ? mqtt_now_ms() + (expires_at - (int64_t)time(NULL)) * 1000 : 0;
    if (expires_at > 0 && c->expires_ms <= 0) c->expires_ms = 1;
    log_info(NULL, "mqtt: device %s connected from %s (keep-alive %us, clean session %d%s)",
             c->device_id, c->peer, k->keepalive, k->clean, c->has_will ? ", with a Will" : "");
    return 0;
}

/* Hand one message to the backend; its PUBACK (QoS 1) waits at the end of the FIFO. */
static void submit(mqtt_server_t *s, mqtt_conn_t *c, void *session, const char *device_id,
                   const mqtt_props_t *props, const void *body, size_t len, int qos, unsigned id, int will)
{
    mqtt_pending_t *p = calloc(1, sizeof *p);
    if (!p) {
        if (c) mqtt_conn_close(c, LOG_ERROR, "mqtt: out of memory; closing %s's connection", device_id);
        else log_error(NULL, "mqtt: out of memory; the Will of %s is lost", device_id);
        return;
    }
    p->srv = s;
    p->conn = c;
    p->id = qos > 0 ? id : 0;
    if (c) {
        if (c->ptail) c->ptail->next = p;
        else c->phead = p;
        c->ptail = p;
        c->npending++;
        if (c->npending >= s->opts.max_inflight) c->paused = 1;
    }
    s->outstanding++;
    atomic_fetch_add(&s->st_messages, 1);
    mqtt_message_t m = {device_id, props, body, len, qos, will};
    s->opts.backend.publish(s->opts.backend.ctx, session, &m, p);
}

/* Decode a telemetry topic's bag into s->scratch, adding the properties IoT Hub stamps on
 * retained and Will messages. Returns 0, or -1 with *why. */
static int decode_props(mqtt_server_t *s, mqtt_str_t bag, int retain, int will, mqtt_props_t *props,
                        const char **why)
{
    if (mqtt_hub_decode_bag(bag, s->scratch, s->scratch_len, props, why) != 0) return -1;
    static const struct { const char *name, *value; } extra[] = {{"mqtt-retain", "true"},
                                                                  {"iothub-MessageType", "Will"}};
    for (int i = 0; i < 2; i++) {
        if (i == 0 ? !retain : !will) continue;
        size_t j = 0;
        while (j < props->napp && strcmp(props->app[j].name, extra[i].name) != 0) j++;
        if (j == MQTT_HUB_MAX_APP_PROPS) {
            *why = "more than 256 application properties";
            return -1;
        }
        if (j == props->napp) {
            props->napp++;
            props->size += strlen(extra[i].name);
        } else {
            props->size -= strlen(props->app[j].value);
        }
        props->app[j].name = extra[i].name;
        props->app[j].value = extra[i].value;
        props->size += strlen(extra[i].value);
    }
    return 0;
}

static int on_publish(mqtt_conn_t *c, const mqtt_publish_t *p)
{
    mqtt_server_t *s = c->srv;
    if (p->qos == 2) return violation(c, "published at QoS 2 (IoT Hub supports QoS 0 and 1)");
    mqtt_str_t id, bag;
    switch (mqtt_hub_classify_topic(p->topic, &id, &bag)) {
    case MQTT_HUB_TOPIC_TELEMETRY:
        break;
    case MQTT_HUB_TOPIC_TWIN:
        return violation(c, "used a device twin topic (twins are not supported by devhost)");
    case MQTT_HUB_TOPIC_METHODS:
        return violation(c, "used a direct method topic (direct methods are not supported by devhost)");
    case MQTT_HUB_TOPIC_MODULE:
        return violation(c, "published to a module topic (modules are not supported)");
    default:
        return violation(c, "published to a topic IoT Hub does not have (telemetry goes to "
                         "devices/{device id}/messages/events/)");
    }
    if (!mqtt_str_eq(id, c->device_id)) return violation(c, "published to another device's topic");
    mqtt_props_t props;
    const char *why;
    if (decode_props(s, bag, p->retain, 0, &props, &why) != 0) {
        char line[160];
        snprintf(line, sizeof line, "sent a bad property bag (%s)", why);
        return violation(c, line);
    }
    if (props.size + p->payload_len > MQTT_MAX_MESSAGE) {
        char line[160];
        snprintf(line, sizeof line, "sent a message of %zu bytes (IoT Hub's limit is 262144 "
                 "bytes, body and properties)", props.size + p->payload_len);
        return violation(c, line);
    }
    submit(s, c, c->session, c->device_id, &props, p->payload, p->payload_len, p->qos, p->id, 0);
    return c->state == CONN_CLOSING ? -1 : 0;
}

static int on_subscribe(mqtt_conn_t *c, const mqtt_packet_t *p)
{
    uint8_t codes[256];
    size_t n = 0, pos = 0;
    mqtt_str_t f;
    unsigned q;
    if (p->u.list.count > sizeof codes) return violation(c, "subscribed to more than 256 filters at once");
    while (mqtt_list_next(p, &pos, &f, &q)) {
        if (mqtt_hub_filter_ok(c->device_id, f)) {
            codes[n++] = (uint8_t)(q > 1 ? 1 : q);
        } else {
            char shown[72];
            codes[n++] = MQTT_SUBACK_FAILURE;
            log_info(NULL, "mqtt: device %s may not subscribe to %s (refused in SUBACK)",
                     c->device_id, printable(f, shown));
        }
    }
    mqtt_put_suback(&c->out, p->u.list.id, codes, n);
    return 0;
}

int mqtt_session_packet(mqtt_conn_t *c, const mqtt_packet_t *p)
{
    if (c->state == CONN_WAIT_CONNECT) {
        if (p->type != MQTT_CONNECT) {
            char line[96];
            snprintf(line, sizeof line, "sent %s before CONNECT", mqtt_type_name(p->type));
            return violation(c, line);
        }
        return on_connect(c, &p->u.connect);
    }
    switch (p->type) {
    case MQTT_PUBLISH:
        return on_publish(c, &p->u.publish);
    case MQTT_PUBACK: /* devhost never publishes to devices: nothing to settle */
        return 0;
    case MQTT_SUBSCRIBE:
        return on_subscribe(c, p);
    case MQTT_UNSUBSCRIBE:
        mqtt_put_id_packet(&c->out, MQTT_UNSUBACK, p->u.list.id);
        return 0;
    case MQTT_PINGREQ:
        mqtt_put_empty(&c->out, MQTT_PINGRESP);
        return 0;
    case MQTT_DISCONNECT:
        c->has_will = 0; /* a clean disconnect discards the Will (3.14.4) */
        mqtt_conn_close(c, LOG_INFO, "mqtt: device %s disconnected", c->device_id);
        return -1;
    case MQTT_CONNECT:
        return violation(c, "sent a second CONNECT");
    case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP:
        return violation(c, "used QoS 2 flow packets (IoT Hub supports QoS 0 and 1)");
    default: {
        char line[96];
        snprintf(line, sizeof line, "sent %s, which only a server sends", mqtt_type_name(p->type));
        return violation(c, line);
    }
    }
}

void mqtt_session_drain(mqtt_conn_t *c)
{
    mqtt_server_t *s = c->srv;
    while (c->phead && c->phead->done && c->state != CONN_CLOSING) {
        mqtt_pending_t *p = c->phead;
        c->phead = p->next;
        if (!c->phead) c->ptail = NULL;
        c->npending--;
        mqtt_pub_status_t st = p->status;
        if (st == MQTT_PUB_OK && p->id) mqtt_put_id_packet(&c->out, MQTT_PUBACK, p->id);
        free(p);
        if (st != MQTT_PUB_OK)
            mqtt_conn_close(c, LOG_WARN, "mqtt: a message of device %s was %s; closing its connection "
                            "without PUBACK so that the device sends it again", c->device_id,
                            st == MQTT_PUB_REFUSED ? "refused" : "not stored");
    }
    if (c->paused && c->state == CONN_ACTIVE && !s->stopping && c->npending <= s->opts.max_inflight / 2)
        c->paused = 0;
}

/* Messages still with the backend complete later; their PUBACKs have nowhere to go. */
static void detach_pending(mqtt_conn_t *c)
{
    for (mqtt_pending_t *p = c->phead, *next; p; p = next) {
        next = p->next;
        p->next = NULL;
        if (p->done) free(p);
        else p->conn = NULL;
    }
    c->phead = c->ptail = NULL;
    c->npending = 0;
}

/* Send c's Will as telemetry (it exists only after an accepted CONNECT). */
static void send_will(mqtt_conn_t *c)
{
    mqtt_server_t *s = c->srv;
    c->has_will = 0;
    mqtt_str_t topic = {c->will_topic.data, c->will_topic.len}, id, bag;
    mqtt_props_t props;
    const char *why;
    mqtt_hub_classify_topic(topic, &id, &bag); /* checked at CONNECT */
    int bad = decode_props(s, bag, c->will_retain, 1, &props, &why) != 0;
    if (!bad && props.size + c->will_payload.len > MQTT_MAX_MESSAGE) {
        bad = 1;
        why = "larger than 262144 bytes";
    }
    if (bad) {
        log_warn(NULL, "mqtt: the Will of device %s is not sent (%s)", c->device_id, why);
        return;
    }
    log_info(NULL, "mqtt: sending the Will of device %s", c->device_id);
    submit(s, NULL, c->session, c->device_id, &props, c->will_payload.data ? c->will_payload.data : "",
           c->will_payload.len, 1, 0, 1);
}

void mqtt_session_end(mqtt_conn_t *c, int publish_will)
{
    mqtt_server_t *s = c->srv;
    detach_pending(c);
    if (publish_will && c->has_will) send_will(c);
    if (c->session && s->opts.backend.release) s->opts.backend.release(s->opts.backend.ctx, c->session);
    c->session = NULL;
}
