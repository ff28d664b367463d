/* Unit tests for the local SignalR Service internals: audience matching, hub names, client
 * queues and handshake (signalr_conn), registry fan-out and groups (signalr_hub). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "devhost/signalr_conn.h"
#include "devhost/signalr_hub.h"
#include "devhost/signalr_service.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aud),
        cmocka_unit_test(test_hub_names),
        cmocka_unit_test(test_client_queue_and_handshake),
        cmocka_unit_test(test_registry_fanout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
