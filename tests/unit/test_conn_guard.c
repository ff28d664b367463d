/* Unit tests: the admission guard against slow clients (util/conn_guard.c) on real sockets —
 * the oldest waiting connection makes room, the deadline closes late requests, a connection
 * whose request arrived is never touched, a kept-alive one waits again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/conn_guard.h"

/* 1 when the server side of pair p was shut down (the peer reads EOF), 0 when still open. */
static int was_cut(int p[2])
{
    char b;
    ssize_t n = recv(p[1], &b, 1, MSG_DONTWAIT);
    if (n == 0) return 1;
    assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    return 0;
}

static void test_guard(void **st)
{
    (void)st;
    int sp[6][2];
    for (int i = 0; i < 6; i++) assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp[i]), 0);
    conn_guard_t *g = conn_guard_new(200, 3);
    assert_non_null(g);
    conn_guard_conn_t *k[6];
    for (int i = 0; i < 3; i++) k[i] = conn_guard_opened(g, sp[i][0]);
    for (int i = 0; i < 3; i++) assert_false(was_cut(sp[i]));
    /* a fourth waiting connection: the oldest makes room */
    k[3] = conn_guard_opened(g, sp[3][0]);
    assert_true(was_cut(sp[0]));
    assert_false(was_cut(sp[1]));
    /* k1's request arrives: it no longer waits, which frees a place (no eviction for k4);
     * k5 then evicts k2, the oldest waiting one, and never k1 */
    conn_guard_request_arrived(g, k[1]);
    k[4] = conn_guard_opened(g, sp[4][0]);
    assert_false(was_cut(sp[2]));
    k[5] = conn_guard_opened(g, sp[5][0]);
    assert_true(was_cut(sp[2]));
    assert_false(was_cut(sp[1]));
    uint64_t expired, evicted;
    size_t waiting;
    conn_guard_counts(g, &expired, &evicted, &waiting);
    assert_int_equal(evicted, 2);
    assert_int_equal(expired, 0);
    assert_int_equal(waiting, 3);
    /* the deadline: nothing before it, every waiting one after it, never k1 */
    int64_t now = conn_guard_now_ms();
    assert_int_equal(conn_guard_sweep(g, now), 0);
    assert_int_equal(conn_guard_sweep(g, now + 250), 3);
    for (int i = 3; i < 6; i++) assert_true(was_cut(sp[i]));
    assert_false(was_cut(sp[1]));
    /* k1's response done, connection kept alive: it waits for its next request again */
    conn_guard_idle(g, k[1]);
    assert_int_equal(conn_guard_sweep(g, conn_guard_now_ms() + 1000), 1);
    assert_true(was_cut(sp[1]));
    conn_guard_counts(g, &expired, &evicted, &waiting);
    assert_int_equal(expired, 4);
    assert_int_equal(waiting, 0);
    /* libmicrohttpd reports each closed; NULL (an unguarded connection) is ignored */
    for (int i = 0; i < 6; i++) conn_guard_closed(g, k[i]);
    conn_guard_closed(g, NULL);
    conn_guard_request_arrived(g, NULL);
    conn_guard_idle(g, NULL);
    conn_guard_free(g);
    for (int i = 0; i < 6; i++) {
        close(sp[i][0]);
        close(sp[i][1]);
    }
}

/* A connection closed while waiting leaves the list (the guard never touches its descriptor
 * again, which libmicrohttpd may reuse). */
static void test_guard_closed_while_waiting(void **st)
{
    (void)st;
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    conn_guard_t *g = conn_guard_new(100, 1);
    conn_guard_conn_t *ka = conn_guard_opened(g, a[0]);
    conn_guard_closed(g, ka);
    conn_guard_conn_t *kb = conn_guard_opened(g, b[0]); /* no eviction needed: a is gone */
    assert_false(was_cut(a));
    assert_false(was_cut(b));
    assert_int_equal(conn_guard_sweep(g, conn_guard_now_ms() + 200), 1);
    assert_false(was_cut(a));
    assert_true(was_cut(b));
    conn_guard_closed(g, kb);
    conn_guard_free(g);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard),
        cmocka_unit_test(test_guard_closed_while_waiting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
