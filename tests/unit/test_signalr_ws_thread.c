/* Unit test: the WebSocket thread of the local SignalR Service (signalr_ws.c) loses no
 * wake-up. Several threads queue records to 64 connections at once (broadcasts and single
 * sends mixed, as REST requests do) while the thread flushes; every connection must receive
 * every record with nothing else to wake it (no pings, no later sends). Socket pairs stand in
 * for upgraded sockets (no libmicrohttpd handle: closing them is the test's job). Before the
 * fix, entries re-linked by a concurrent notify made the thread's walk jump lists and strand
 * connections; this test then timed out with records missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devhost/signalr/signalr_conn.h"
#include "devhost/signalr/signalr_hub.h"
#include "devhost/signalr/signalr_ws.h"

#define NCONN    64
#define NSENDERS 3
#define NROUNDS  300
#define NSINGLES 8

static sr_client_t *clients[NCONN];
static unsigned long sent[NSENDERS][NCONN];
static pthread_barrier_t round_start, round_end;

/* Each round, every sender broadcasts to all connections and sends to a few single ones, all
 * at the same time as the others (the "one broadcast plus concurrent single sends"). */
static void *sender(void *arg)
{
    int t = (int)(intptr_t)arg;
    unsigned seed = 12345u + (unsigned)t;
    static const char rec[] = "{\"type\":1,\"target\":\"t\",\"arguments\":[1]}\x1e";
    for (int r = 0; r < NROUNDS; r++) {
        pthread_barrier_wait(&round_start);
        for (int i = 0; i < NCONN + NSINGLES; i++) {
            int k = i < NCONN ? (i + t * 21) % NCONN : rand_r(&seed) % NCONN;
            if (sr_client_enqueue(clients[k], rec, sizeof rec - 1) == 0) sent[t][k]++;
        }
        pthread_barrier_wait(&round_end);
    }
    return NULL;
}

/* Incremental parser of unmasked server frames: counts records (0x1E) in Text frames. */
typedef struct rd {
    unsigned char buf[1 << 16];
    size_t        len;
    unsigned long records;
} rd_t;

static void rd_parse(rd_t *r)
{
    size_t off = 0;
    for (;;) {
        unsigned char *p = r->buf + off;
        size_t avail = r->len - off;
        if (avail < 2) break;
        assert_int_equal(p[1] & 0x80, 0); /* servers never mask */
        uint64_t plen = p[1] & 0x7f;
        size_t h = 2;
        if (plen == 126) {
            if (avail < 4) break;
            plen = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = plen << 8 | p[2 + i];
            h = 10;
        }
        assert_true(plen < sizeof r->buf - 16);
        if (avail < h + plen) break;
        assert_int_equal(p[0], 0x80 | SR_WS_OP_TEXT);
        for (size_t i = 0; i < plen; i++) r->records += p[h + i] == SR_RS;
        off += h + (size_t)plen;
    }
    memmove(r->buf, r->buf + off, r->len - off);
    r->len -= off;
}

static void test_no_lost_wakeups(void **st)
{
    (void)st;
    char err[256];
    sr_registry_t *reg = sr_registry_new();
    assert_non_null(reg);
    sr_ws_server_t *ws = sr_ws_server_start(reg, 1 << 20, 2500, err, sizeof err);
    assert_non_null(ws);
    int sp[NCONN][2];
    static rd_t rd[NCONN];
    for (int k = 0; k < NCONN; k++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp[k]), 0);
        clients[k] = sr_client_new("h", NULL, 1, 64u << 20);
        assert_non_null(clients[k]);
        clients[k]->transport = SR_TRANSPORT_WS;
        int hs = 0;
        assert_int_equal(sr_client_receive(clients[k], "{\"protocol\":\"json\",\"version\":1}\x1e", 32, &hs), 0);
        assert_int_equal(sr_ws_server_attach(ws, clients[k], sp[k][0], NULL, NULL, 0), 0);
    }
    assert_int_equal(pthread_barrier_init(&round_start, NULL, NSENDERS + 1), 0);
    assert_int_equal(pthread_barrier_init(&round_end, NULL, NSENDERS + 1), 0);
    pthread_t th[NSENDERS];
    for (int t = 0; t < NSENDERS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, sender, (void *)(intptr_t)t), 0);

    /* After each round nothing else happens until every connection has all its records (the
     * handshake reply included): a stranded connection has nothing left to wake it, so the
     * round's deadline (far beyond any flush, on a busy machine too) catches it. */
    unsigned long want[NCONN];
    for (int r = 0; r < NROUNDS; r++) {
        pthread_barrier_wait(&round_start);
        pthread_barrier_wait(&round_end);
        for (int k = 0; k < NCONN; k++) {
            want[k] = 1;
            for (int t = 0; t < NSENDERS; t++) want[k] += sent[t][k];
        }
        int64_t deadline = sr_now_ms() + 10000;
        for (;;) {
            int done = 1;
            for (int k = 0; k < NCONN && done; k++) done = rd[k].records >= want[k];
            if (done) break;
            if (sr_now_ms() > deadline) {
                int missing = 0;
                for (int k = 0; k < NCONN; k++) missing += rd[k].records < want[k];
                fail_msg("round %d: %d of %d connections are missing records (stranded wake-ups)",
                         r, missing, NCONN);
            }
            struct pollfd pf[NCONN];
            for (int k = 0; k < NCONN; k++) pf[k] = (struct pollfd){.fd = sp[k][1], .events = POLLIN};
            poll(pf, NCONN, 50);
            for (int k = 0; k < NCONN; k++) {
                if (!(pf[k].revents & POLLIN)) continue;
                ssize_t n = recv(sp[k][1], rd[k].buf + rd[k].len, sizeof rd[k].buf - rd[k].len, MSG_DONTWAIT);
                if (n > 0) {
                    rd[k].len += (size_t)n;
                    rd_parse(&rd[k]);
                }
            }
        }
    }
    for (int t = 0; t < NSENDERS; t++) pthread_join(th[t], NULL);
    pthread_barrier_destroy(&round_start);
    pthread_barrier_destroy(&round_end);
    for (int k = 0; k < NCONN; k++) assert_int_equal(rd[k].records, want[k]);
    sr_ws_server_stop(ws);
    sr_ws_server_free(ws);
    for (int k = 0; k < NCONN; k++) {
        close(sp[k][0]);
        close(sp[k][1]);
        sr_client_unref(clients[k]);
    }
    sr_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_lost_wakeups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
