/* Unit tests for the local SignalR Service internals: audience matching, hub names, client
 * queues and handshake (signalr_conn), registry fan-out and groups (signalr_hub), WebSocket
 * framing (signalr_ws). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "devhost/signalr/signalr_conn.h"
#include "devhost/signalr/signalr_hub.h"
#include "devhost/signalr/signalr_service.h"
#include "devhost/signalr/signalr_ws.h"
#include "util/utf8.h"

static const char *args_lookup(void *arg, const char *name)
{
    const char *const *kv = arg;
    for (; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0) return kv[1];
    return NULL;
}

static void test_aud(void **st)
{
    (void)st;
    const char *q[] = {"hub", "Enviromon", "negotiateVersion", "1", NULL};
    /* SDK client form, documented form without query, port and trailing slash ignored */
    assert_int_equal(sr_service_aud_ok("http://localhost/client/?hub=enviromon", "http", "localhost", NULL, "/client", args_lookup, q), 1);
    assert_int_equal(sr_service_aud_ok("http://localhost/client", "http", "localhost", NULL, "/client", args_lookup, q), 1);
    assert_int_equal(sr_service_aud_ok("http://LOCALHOST:8888/client/", "http", "localhost", NULL, "/client", args_lookup, q), 1);
    /* another hub, another path, another scheme, another host */
    assert_int_equal(sr_service_aud_ok("http://localhost/client/?hub=other", "http", "localhost", NULL, "/client", args_lookup, q), 0);
    assert_int_equal(sr_service_aud_ok("http://localhost/api/v1/hubs/enviromon", "http", "localhost", NULL, "/client", args_lookup, q), 0);
    assert_int_equal(sr_service_aud_ok("https://localhost/client/?hub=enviromon", "http", "localhost", NULL, "/client", args_lookup, q), 0);
    assert_int_equal(sr_service_aud_ok("http://evil/client/?hub=enviromon", "http", "localhost", NULL, "/client", args_lookup, q), 0);
    /* the Host header's host is accepted too */
    assert_int_equal(sr_service_aud_ok("http://127.0.0.1/client/?hub=enviromon", "http", "localhost", "127.0.0.1:9000", "/client", args_lookup, q), 1);
    /* REST: percent-encoded aud path, query must match the request */
    const char *v2[] = {"api-version", "2022-06-01", NULL};
    assert_int_equal(sr_service_aud_ok("http://localhost/api/hubs/h/users/a%20b/:send?api-version=2022-06-01", "http", "localhost", NULL, "/api/hubs/h/users/a b/:send", args_lookup, v2), 1);
    assert_int_equal(sr_service_aud_ok("http://localhost/api/hubs/h/:send?api-version=2023-01-01", "http", "localhost", NULL, "/api/hubs/h/:send", args_lookup, v2), 0);
    assert_int_equal(sr_service_aud_ok("http://localhost/api/hubs/h/:send?x=1", "http", "localhost", NULL, "/api/hubs/h/:send", args_lookup, v2), 0);
    /* garbage */
    assert_int_equal(sr_service_aud_ok("", "http", "localhost", NULL, "/client", args_lookup, q), 0);
    assert_int_equal(sr_service_aud_ok("localhost/client", "http", "localhost", NULL, "/client", args_lookup, q), 0);
    assert_int_equal(sr_service_aud_ok("http://[::1/client", "http", "localhost", NULL, "/client", args_lookup, q), 0);
}

/* The request path is the raw one (percent-escapes and all): each side is decoded once, and
 * an encoded '/' is part of an id, never a separator. Ids of any length compare. */
static void test_aud_raw_paths(void **st)
{
    (void)st;
    const char *none[] = {NULL};
#define AUD_OK(aud, path) sr_service_aud_ok(aud, "http", "localhost", NULL, path, args_lookup, none)
    assert_int_equal(AUD_OK("http://localhost/api/v1/hubs/h/users/a%2Fb", "/api/v1/hubs/h/users/a%2Fb"), 1);
    assert_int_equal(AUD_OK("http://localhost/api/v1/hubs/h/users/a%2fb", "/api/v1/hubs/h/users/a%2Fb"), 1);
    assert_int_equal(AUD_OK("http://localhost/api/v1/hubs/h/users/a/b", "/api/v1/hubs/h/users/a%2Fb"), 0);
    assert_int_equal(AUD_OK("http://localhost/api/v1/hubs/h/users/a%2Fb", "/api/v1/hubs/h/users/a/b"), 0);
    /* user "a%41": sent as a%2541, decoded once on each side (it was decoded twice: 401) */
    assert_int_equal(AUD_OK("http://localhost/api/v1/hubs/h/users/a%2541", "/api/v1/hubs/h/users/a%2541"), 1);
    assert_int_equal(AUD_OK("http://localhost/api/v1/hubs/h/users/a%41", "/api/v1/hubs/h/users/a%2541"), 0);
    assert_int_equal(AUD_OK("http://localhost/api/v1/hubs/h/users/aA", "/api/v1/hubs/h/users/a%41"), 1);
    /* a group of 1,024 characters, every one percent-encoded (3,072 bytes of path) */
    size_t glen = 1024 * 3;
    char *g = malloc(glen + 1);
    assert_non_null(g);
    for (size_t i = 0; i < 1024; i++) memcpy(g + 3 * i, i % 2 ? "%C3" : "%A9", 3);
    g[glen] = '\0';
    char *path = malloc(glen + 64), *aud = malloc(glen + 128);
    assert_non_null(path);
    assert_non_null(aud);
    snprintf(path, glen + 64, "/api/v1/hubs/h/groups/%s", g);
    snprintf(aud, glen + 128, "http://localhost%s", path);
    assert_int_equal(AUD_OK(aud, path), 1);
    aud[strlen(aud) - 1] = 'A'; /* one byte differs at the very end */
    assert_int_equal(AUD_OK(aud, path), 0);
    free(g);
    free(path);
    free(aud);
#undef AUD_OK
    /* a long query value in the audience must equal the request's */
    char val[3000];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    const char *q[] = {"x", val, NULL};
    char qa[3100];
    snprintf(qa, sizeof qa, "http://localhost/client/?x=%s", val);
    assert_int_equal(sr_service_aud_ok(qa, "http", "localhost", NULL, "/client", args_lookup, q), 1);
    qa[strlen(qa) - 1] = 'w';
    assert_int_equal(sr_service_aud_ok(qa, "http", "localhost", NULL, "/client", args_lookup, q), 0);
}

static void test_hub_names(void **st)
{
    (void)st;
    assert_true(sr_service_valid_hub("Enviromon"));
    assert_true(sr_service_valid_hub("a_1"));
    assert_false(sr_service_valid_hub(""));
    assert_false(sr_service_valid_hub("1abc"));
    assert_false(sr_service_valid_hub("a-b"));
    assert_false(sr_service_valid_hub("a/b"));
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_false(sr_service_valid_hub(longname));
}

static void test_client_queue_and_handshake(void **st)
{
    (void)st;
    sr_client_t *c = sr_client_new("enviromon", "alice", 1, 64);
    assert_non_null(c);
    assert_string_not_equal(c->id, c->key);
    assert_int_equal(strlen(c->id), SR_ID_LEN);
    int hs = 0;
    /* a record without the separator is refused and closes the client */
    sr_client_t *bad = sr_client_new("enviromon", NULL, 0, 64);
    assert_non_null(bad);
    assert_string_equal(bad->id, bad->key); /* version 0: transport id = connectionId */
    assert_int_equal(sr_client_receive(bad, "{\"protocol\":\"json\"", 18, &hs), -1);
    assert_int_equal(bad->state, SR_CLIENT_CLOSING);
    sr_client_unref(bad);

    static const char hello[] = "{\"protocol\":\"json\",\"version\":1}\x1e{\"type\":6}\x1e";
    assert_int_equal(sr_client_receive(c, hello, sizeof hello - 1, &hs), 0);
    assert_int_equal(hs, 1);
    assert_int_equal(c->state, SR_CLIENT_CONNECTED);
    assert_int_equal(c->queue.len, 3);
    assert_memory_equal(c->queue.data, "{}\x1e", 3);
    /* the bound: 3 + 40 fits in 64, a further 40 does not → closed with a close message */
    c->transport = SR_TRANSPORT_SSE;
    char rec[40];
    memset(rec, 'x', sizeof rec);
    rec[39] = SR_RS;
    assert_int_equal(sr_client_enqueue(c, rec, sizeof rec), 0);
    assert_int_equal(sr_client_enqueue(c, rec, sizeof rec), -1);
    assert_int_equal(c->state, SR_CLIENT_CLOSING);
    assert_non_null(strstr(buf_str(&c->queue), "{\"type\":7,\"error\":"));
    assert_null(strstr(buf_str(&c->queue), "xxx")); /* pending records were discarded */
    assert_int_equal(sr_client_enqueue(c, rec, sizeof rec), 1);
    sr_client_unref(c);

    /* a big record always fits into an empty queue */
    c = sr_client_new("h", NULL, 1, 16);
    assert_non_null(c);
    assert_int_equal(sr_client_enqueue(c, rec, sizeof rec), 0);
    sr_client_unref(c);
}

static sr_client_t *connected(sr_registry_t *r, const char *hub, const char *user)
{
    sr_client_t *c = sr_client_new(hub, user, 1, 1 << 20);
    assert_non_null(c);
    assert_int_equal(sr_registry_add(r, c), 0);
    int hs = 0;
    assert_int_equal(sr_client_receive(c, "{\"protocol\":\"json\",\"version\":1}\x1e", 32, &hs), 0);
    assert_int_equal(sr_registry_activate(r, c), 0);
    buf_reset(&c->queue); /* drop the handshake reply */
    return c;
}

static int count_recs(sr_client_t *c)
{
    int n = 0;
    for (size_t i = 0; i < c->queue.len; i++) n += c->queue.data[i] == SR_RS;
    return n;
}

static void test_registry_fanout(void **st)
{
    (void)st;
    sr_registry_t *r = sr_registry_new();
    assert_non_null(r);
    sr_client_t *a = connected(r, "enviromon", "alice");
    sr_client_t *b = connected(r, "enviromon", "bob");
    sr_client_t *o = connected(r, "other", "alice");
    const char m[] = "{\"type\":1,\"target\":\"t\",\"arguments\":[]}\x1e";
    size_t ml = sizeof m - 1;

    assert_int_equal(sr_registry_send_all(r, "ENVIROMON", m, ml, NULL, 0), 2);
    const char *ex[] = {a->id};
    assert_int_equal(sr_registry_send_all(r, "enviromon", m, ml, ex, 1), 1);
    assert_int_equal(sr_registry_send_user(r, "enviromon", "alice", m, ml), 1);
    assert_int_equal(sr_registry_send_user(r, "enviromon", "nobody", m, ml), 0);
    assert_int_equal(sr_registry_send_connection(r, "enviromon", o->id, m, ml), 0); /* wrong hub */
    assert_int_equal(sr_registry_send_connection(r, "other", o->id, m, ml), 1);

    /* alice both as a connection and as a user: one copy */
    assert_int_equal(sr_registry_group_add_connection(r, "enviromon", "g", a->id), 0);
    assert_int_equal(sr_registry_group_add_connection(r, "enviromon", "g", "missing"), 1);
    assert_int_equal(sr_registry_group_add_user(r, "enviromon", "g", "alice"), 0);
    assert_int_equal(sr_registry_send_group(r, "enviromon", "g", m, ml, NULL, 0), 1);
    assert_int_equal(sr_registry_group_add_user(r, "enviromon", "g", "bob"), 0);
    assert_int_equal(sr_registry_send_group(r, "enviromon", "g", m, ml, ex, 1), 1);
    assert_true(sr_registry_has_group(r, "enviromon", "g"));
    assert_int_equal(sr_registry_user_leave_all(r, "enviromon", "bob"), 0);
    assert_int_equal(sr_registry_group_remove_user(r, "enviromon", "g", "alice"), 0);
    assert_int_equal(sr_registry_group_remove_connection(r, "enviromon", "g", a->id), 0);
    assert_false(sr_registry_has_group(r, "enviromon", "g"));
    assert_int_equal(sr_registry_send_group(r, "enviromon", "g", m, ml, NULL, 0), 0);

    assert_int_equal(count_recs(a), 3);
    assert_int_equal(count_recs(b), 3);
    assert_int_equal(count_recs(o), 1);

    /* removal: no more deliveries, no longer findable */
    sr_registry_remove(r, b);
    assert_int_equal(sr_registry_send_all(r, "enviromon", m, ml, NULL, 0), 1);
    assert_null(sr_registry_find(r, b->key));
    sr_client_t *f = sr_registry_find(r, a->key);
    assert_ptr_equal(f, a);
    sr_client_unref(f);
    assert_int_equal(sr_registry_close_connection(r, "enviromon", a->id, "test"), 1);
    assert_int_equal(a->state, SR_CLIENT_CLOSING);
    sr_registry_close(r);
    sr_client_t *late = sr_client_new("enviromon", NULL, 1, 1024);
    assert_int_equal(sr_registry_add(r, late), -2);
    sr_client_unref(late);
    sr_client_unref(a);
    sr_client_unref(b);
    sr_client_unref(o);
    sr_registry_free(r);
}

/* Hubs live while they hold something: names that come and go cost nothing afterwards. */
static void test_registry_frees_hubs(void **st)
{
    (void)st;
    sr_registry_t *r = sr_registry_new();
    assert_non_null(r);
    sr_client_t *cs[200];
    char hub[32];
    for (int i = 0; i < 200; i++) {
        snprintf(hub, sizeof hub, "hub%d", i);
        cs[i] = connected(r, hub, i % 2 ? "u" : NULL);
        if (i % 3 == 0) assert_int_equal(sr_registry_group_add_connection(r, hub, "g", cs[i]->id), 0);
    }
    assert_int_equal(sr_registry_hub_count(r), 200);
    for (int i = 0; i < 200; i++) {
        if (i % 2) sr_registry_deactivate(r, cs[i]);
        else sr_registry_remove(r, cs[i]);
    }
    assert_int_equal(sr_registry_hub_count(r), 0);
    /* a user's group membership outlives its connections (it applies to future ones) and
     * keeps the hub; leaving the group frees it */
    assert_int_equal(sr_registry_group_add_user(r, "solo", "g", "alice"), 0);
    assert_int_equal(sr_registry_hub_count(r), 1);
    assert_int_equal(sr_registry_group_remove_user(r, "solo", "g", "alice"), 0);
    assert_int_equal(sr_registry_hub_count(r), 0);
    assert_int_equal(sr_registry_group_add_user(r, "solo", "g1", "alice"), 0);
    assert_int_equal(sr_registry_group_add_user(r, "SOLO", "g2", "alice"), 0);
    assert_int_equal(sr_registry_user_leave_all(r, "solo", "alice"), 0);
    assert_int_equal(sr_registry_hub_count(r), 0);
    /* sends to unknown hubs create nothing */
    assert_int_equal(sr_registry_send_all(r, "nohub", "x\x1e", 2, NULL, 0), 0);
    assert_int_equal(sr_registry_send_group(r, "nohub", "g", "x\x1e", 2, NULL, 0), 0);
    assert_int_equal(sr_registry_hub_count(r), 0);
    for (int i = 0; i < 200; i++) sr_client_unref(cs[i]);
    sr_registry_free(r);
}

/* A client's message in invalid UTF-8 closes it on every transport (WebSockets: 1007). */
static void test_receive_invalid_utf8(void **st)
{
    (void)st;
    sr_client_t *c = sr_client_new("h", NULL, 1, 1024);
    assert_non_null(c);
    c->transport = SR_TRANSPORT_SSE;
    int hs = 0;
    assert_int_equal(sr_client_receive(c, "{\"protocol\":\"json\",\"version\":1}\x1e", 32, &hs), 0);
    assert_int_equal(hs, 1);
    assert_int_equal(sr_client_receive(c, "{\"type\":6,\"x\":\"\xff\xfe\"}\x1e", 20, &hs), -1);
    assert_int_equal(c->state, SR_CLIENT_CLOSING);
    assert_non_null(strstr(buf_str(&c->queue), "Invalid UTF-8"));
    sr_client_unref(c);
}

/* One masked client frame into out; returns its length. */
static size_t mkframe(unsigned char *out, int fin, unsigned op, const void *payload, size_t n, int mask)
{
    static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = 0;
    out[h++] = (unsigned char)((fin ? 0x80 : 0) | op);
    unsigned char m = mask ? 0x80 : 0;
    if (n < 126) out[h++] = (unsigned char)(m | n);
    else if (n <= 0xffff) { out[h++] = m | 126; out[h++] = (unsigned char)(n >> 8); out[h++] = (unsigned char)n; }
    else {
        out[h++] = m | 127;
        for (int i = 7; i >= 0; i--) out[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    if (mask) { memcpy(out + h, key, 4); h += 4; }
    const unsigned char *p = payload;
    for (size_t i = 0; i < n; i++) out[h + i] = mask ? p[i] ^ key[i & 3] : p[i];
    return h + n;
}

static void test_ws_handshake_and_headers(void **st)
{
    (void)st;
    char acc[29];
    /* RFC 6455 §1.3 example */
    assert_int_equal(sr_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", acc), 0);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(sr_ws_accept_key(NULL, acc), -1);
    assert_int_equal(sr_ws_accept_key("", acc), -1);
    assert_int_equal(sr_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", acc), -1);     /* no padding */
    assert_int_equal(sr_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=!", acc), -1);
    assert_int_equal(sr_ws_accept_key("dGhlIHNhbXBsZSBub25jZSE=", acc), -1);  /* 17 bytes */
    assert_int_equal(sr_ws_accept_key("!!!!!!!!!!!!!!!!!!!!!!==", acc), -1);

    unsigned char h[10];
    assert_int_equal(sr_ws_frame_header(SR_WS_OP_TEXT, 5, h), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 5);
    assert_int_equal(sr_ws_frame_header(SR_WS_OP_TEXT, 125, h), 2);
    assert_int_equal(sr_ws_frame_header(SR_WS_OP_TEXT, 126, h), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal((h[2] << 8) | h[3], 126);
    assert_int_equal(sr_ws_frame_header(SR_WS_OP_CLOSE, 65535, h), 4);
    assert_int_equal(h[0], 0x88);
    assert_int_equal(sr_ws_frame_header(SR_WS_OP_TEXT, 65536, h), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7], 1);
    assert_int_equal(h[8], 0);
    assert_int_equal(h[9], 0);

    assert_true(utf8_valid("plain", 5));
    assert_true(utf8_valid("\xc3\xa9\xe2\x86\x92\xf0\x9f\x98\x80", 9));
    assert_false(utf8_valid("\xc3\x28", 2));
    assert_false(utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(utf8_valid("\xe2\x86", 2));         /* truncated */
}

static void test_ws_reader(void **st)
{
    (void)st;
    sr_ws_reader_t r;
    unsigned char buf[4096];
    const unsigned char *d;
    size_t n, len = 0;
    unsigned code;

    /* nothing fed yet, or an empty chunk (the bytes libmicrohttpd read ahead may be none): no
     * event, and no arithmetic on the empty buffer's NULL pointer (fuzz_websocket under UBSan) */
    sr_ws_reader_init(&r, 1024);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_NONE);
    assert_int_equal(sr_ws_reader_feed(&r, "", 0), 0);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_NONE);

    /* fragments with a ping in between, fed one byte at a time */
    len += mkframe(buf + len, 0, SR_WS_OP_TEXT, "{\"proto", 7, 1);
    len += mkframe(buf + len, 1, SR_WS_OP_PING, "hi", 2, 1);
    len += mkframe(buf + len, 0, SR_WS_OP_CONT, "col\":\"js", 8, 1);
    len += mkframe(buf + len, 1, SR_WS_OP_CONT, "on\"}\x1e", 5, 1);
    int got_ping = 0, got_text = 0;
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(sr_ws_reader_feed(&r, buf + i, 1), 0);
        sr_ws_event_t ev;
        while ((ev = sr_ws_reader_next(&r, &d, &n, &code)) != SR_WS_EV_NONE) {
            if (ev == SR_WS_EV_PING) {
                assert_false(got_text);
                assert_int_equal(n, 2);
                assert_memory_equal(d, "hi", 2);
                got_ping++;
            } else {
                assert_int_equal(ev, SR_WS_EV_TEXT);
                assert_int_equal(n, 20);
                assert_memory_equal(d, "{\"protocol\":\"json\"}\x1e", 20);
                got_text++;
            }
        }
    }
    assert_int_equal(got_ping, 1);
    assert_int_equal(got_text, 1);
    /* close with a code and a reason; then a 16-bit and a 64-bit length in one feed */
    len = mkframe(buf, 1, SR_WS_OP_CLOSE, "\x03\xe8" "bye", 5, 1);
    sr_ws_reader_feed(&r, buf, len);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_CLOSE);
    assert_int_equal(code, 1000);
    assert_int_equal(n, 3);
    assert_memory_equal(d, "bye", 3);
    len = mkframe(buf, 1, SR_WS_OP_CLOSE, "", 0, 1);
    sr_ws_reader_feed(&r, buf, len);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_CLOSE);
    assert_int_equal(code, SR_WS_CLOSE_NO_STATUS);
    sr_ws_reader_free(&r);

    sr_ws_reader_init(&r, 100000);
    static unsigned char big[70000 + 14], pl[70000];
    memset(pl, 'a', sizeof pl);
    len = mkframe(big, 1, SR_WS_OP_BINARY, pl, 300, 1);
    len += mkframe(big + len, 1, SR_WS_OP_TEXT, pl, 66000, 1);
    sr_ws_reader_feed(&r, big, len);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_BINARY);
    assert_int_equal(n, 300);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_TEXT);
    assert_int_equal(n, 66000);
    assert_int_equal(d[65999], 'a');
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_NONE);
    sr_ws_reader_free(&r);

    /* violations: each is reported once with its close code, then nothing more */
    struct { int fin; unsigned op; const char *p; size_t n; int mask; unsigned rsv; unsigned want; } bad[] = {
        {1, SR_WS_OP_TEXT, "x", 1, 0, 0, SR_WS_CLOSE_PROTOCOL},     /* unmasked */
        {1, SR_WS_OP_TEXT, "x", 1, 1, 0x40, SR_WS_CLOSE_PROTOCOL},  /* RSV1 */
        {1, SR_WS_OP_CONT, "x", 1, 1, 0, SR_WS_CLOSE_PROTOCOL},     /* orphan continuation */
        {1, 0x3, "x", 1, 1, 0, SR_WS_CLOSE_PROTOCOL},               /* reserved data opcode */
        {1, 0xB, "x", 1, 1, 0, SR_WS_CLOSE_PROTOCOL},               /* reserved control opcode */
        {0, SR_WS_OP_PING, "x", 1, 1, 0, SR_WS_CLOSE_PROTOCOL},     /* fragmented control */
        {1, SR_WS_OP_CLOSE, "\x03", 1, 1, 0, SR_WS_CLOSE_PROTOCOL}, /* 1-byte close */
        {1, SR_WS_OP_CLOSE, "\x03\xed", 2, 1, 0, SR_WS_CLOSE_PROTOCOL}, /* code 1005 may not be sent */
        {1, SR_WS_OP_TEXT, "\xff", 1, 1, 0, SR_WS_CLOSE_BAD_DATA},  /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sr_ws_reader_init(&r, 1024);
        len = mkframe(buf, bad[i].fin, bad[i].op, bad[i].p, bad[i].n, bad[i].mask);
        buf[0] |= (unsigned char)bad[i].rsv;
        sr_ws_reader_feed(&r, buf, len);
        assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_ERROR);
        assert_int_equal(code, bad[i].want);
        assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_NONE);
        sr_ws_reader_free(&r);
    }
    /* a ping payload over 125 bytes */
    sr_ws_reader_init(&r, 1024);
    len = mkframe(buf, 1, SR_WS_OP_PING, pl, 126, 1);
    sr_ws_reader_feed(&r, buf, len);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_ERROR);
    assert_int_equal(code, SR_WS_CLOSE_PROTOCOL);
    sr_ws_reader_free(&r);
    /* too big: refused from the header alone (8 bytes announce 2^40), and across fragments */
    sr_ws_reader_init(&r, 1024);
    unsigned char hdr[14] = {0x81, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    sr_ws_reader_feed(&r, hdr, sizeof hdr);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_ERROR);
    assert_int_equal(code, SR_WS_CLOSE_TOO_BIG);
    sr_ws_reader_free(&r);
    sr_ws_reader_init(&r, 1024);
    len = mkframe(buf, 0, SR_WS_OP_TEXT, pl, 600, 1);
    len += mkframe(buf + len, 1, SR_WS_OP_CONT, pl, 600, 1);
    sr_ws_reader_feed(&r, buf, len);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_ERROR);
    assert_int_equal(code, SR_WS_CLOSE_TOO_BIG);
    sr_ws_reader_free(&r);
    /* a length with the top bit set */
    sr_ws_reader_init(&r, 1024);
    unsigned char hdr2[14] = {0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    sr_ws_reader_feed(&r, hdr2, sizeof hdr2);
    assert_int_equal(sr_ws_reader_next(&r, &d, &n, &code), SR_WS_EV_ERROR);
    assert_int_equal(code, SR_WS_CLOSE_PROTOCOL);
    sr_ws_reader_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aud),
        cmocka_unit_test(test_aud_raw_paths),
        cmocka_unit_test(test_hub_names),
        cmocka_unit_test(test_client_queue_and_handshake),
        cmocka_unit_test(test_registry_fanout),
        cmocka_unit_test(test_registry_frees_hubs),
        cmocka_unit_test(test_receive_invalid_utf8),
        cmocka_unit_test(test_ws_handshake_and_headers),
        cmocka_unit_test(test_ws_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
