/* http_load.c — open-loop device-to-cloud sender over HTTP for the end-to-end benchmark
 * (bench/devhost_e2e.mjs, docs/benchmarks.md "devhost start: devices → DeviceState → SignalR").
 *
 * Offers --rate messages/s for --seconds to devhost's IoT Hub device API
 * (POST /devices/{id}/messages/events) on a fixed schedule that does not depend on the answers:
 * message i is due at t0 + i/rate and belongs to device i mod N, each device with its own SAS
 * token. One epoll thread; keep-alive HTTP/1.1 connections from a pool shared by the devices
 * (the Authorization header, not the connection, says which device is sending): a due message
 * goes out on an idle connection, or on a new one while the pool is below --connections, else it
 * waits — that wait is the sender falling behind, reported as dispatch lag and as the achieved
 * rate, never hidden. The node sender this replaces could not offer 1,000 msgs/s on a busy machine.
 *
 * --record FILE writes one line per message (load_common.h: device, seq, POST started and
 * answered as wall-clock ms, HTTP status) for the script to join with the SignalR pushes.
 * Prints one JSON object; exits 1 when a message was not answered 204. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devhost/iothub/sas.h"
#include "load_common.h"
#include "util/buf.h"

typedef enum { H_FREE, H_CONNECTING, H_IDLE, H_BUSY } hstate_t;

typedef struct hconn {
    int      fd;
    hstate_t state;
    buf_t    out, in;
    size_t   out_off;
    size_t   rec;     /* the message in flight */
    int      in_idle; /* on the idle stack */
} hconn_t;

static struct {
    const char *host, *hub, *devices, *record;
    int         port, n, max_conns, warm, server_pid;
    double      rate, seconds;
} O = {"127.0.0.1", "enviromon", NULL, NULL, 0, 100, 256, 32, 0, 1000, 10};

static load_device_t *D;
static char         **paths; /* per device: the request line's path */
static unsigned      *seqs;  /* per device: messages sent */
static hconn_t       *P;
static int           *idle, nidle; /* stack of idle connections */
static int            ep, opened, busy;
static load_recs_t    recs;
static load_lats_t    lag, answer;
static unsigned long long refused, failed, answered;

static void idle_push(hconn_t *h)
{
    assert(!h->in_idle && h->state == H_IDLE);
    idle[nidle++] = (int)(h - P);
    h->in_idle = 1;
}

/* Take h off the idle stack (the server closed an idle connection). */
static void idle_remove(hconn_t *h)
{
    for (int k = 0; k < nidle; k++)
        if (idle[k] == (int)(h - P)) {
            idle[k] = idle[--nidle];
            break;
        }
    h->in_idle = 0;
}

static void watch(hconn_t *h, int op, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = h};
    epoll_ctl(ep, op, h->fd, &e);
}

/* The connection is gone: its message in flight (if any) failed; the slot may be reopened. */
static void hconn_close(hconn_t *h, const char *why)
{
    if (h->state == H_BUSY || (h->state == H_CONNECTING && h->out.len)) {
        failed++;
        busy--;
        if (failed <= 5) fprintf(stderr, "http_load: a request failed: %s\n", why);
    }
    if (h->in_idle) idle_remove(h);
    epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
    close(h->fd);
    h->fd = -1;
    h->state = H_FREE;
    buf_reset(&h->out);
    buf_reset(&h->in);
    h->out_off = 0;
}

static int hconn_open(hconn_t *h)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
    inet_pton(AF_INET, O.host, &sa.sin_addr);
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0) return -1;
    int one = 1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    h->state = H_CONNECTING;
    watch(h, EPOLL_CTL_ADD, EPOLLOUT);
    opened++;
    if (connect(h->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        hconn_close(h, strerror(errno));
        return -1;
    }
    return 0;
}

static void hconn_flush(hconn_t *h)
{
    while (h->out_off < h->out.len) {
        ssize_t w = write(h->fd, h->out.data + h->out_off, h->out.len - h->out_off);
        if (w > 0) {
            h->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            watch(h, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
            return;
        }
        hconn_close(h, "write failed");
        return;
    }
    buf_reset(&h->out);
    h->out_off = 0;
    watch(h, EPOLL_CTL_MOD, EPOLLIN);
}

/* Put message i (device i mod N) on connection h; POST started = now. */
static void send_message(hconn_t *h, unsigned long long i)
{
    int dev = (int)(i % (unsigned long long)O.n);
    unsigned seq = ++seqs[dev];
    char body[128];
    int bl = snprintf(body, sizeof body, "{\"temperature\":%u.5,\"humidity\":50,\"messageId\":%llu}", 20 + seq % 10,
                      1000000000ULL + i);
    buf_printf(&h->out,
               "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: %s\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s",
               paths[dev], O.host, O.port, D[dev].sas, bl, body);
    h->rec = load_recs_add(&recs, dev, seq, load_now_s());
    busy++;
    if (h->state == H_IDLE) {
        h->state = H_BUSY;
        hconn_flush(h);
    } /* else connecting: written once connected */
}

/* A connection for the next message: an idle one, else a new one while the pool allows. */
static hconn_t *take_conn(void)
{
    if (nidle) {
        hconn_t *h = &P[idle[--nidle]];
        h->in_idle = 0;
        return h;
    }
    for (int k = 0; k < O.max_conns; k++)
        if (P[k].state == H_FREE) return hconn_open(&P[k]) == 0 ? &P[k] : NULL;
    return NULL;
}

/* Parse and record the answer in h->in, if it is complete. */
static void take_answer(hconn_t *h)
{
    buf_append(&h->in, "", 1); /* NUL for the string functions; not counted below */
    h->in.len--;
    char *end = strstr(h->in.data, "\r\n\r\n");
    if (!end) return;
    if (h->state != H_BUSY) {
        hconn_close(h, "an answer nobody asked for");
        return;
    }
    size_t hdr = (size_t)(end - h->in.data) + 4, clen = 0;
    int status = 0, close_after = 0;
    sscanf(h->in.data, "HTTP/1.%*d %d", &status);
    for (char *l = strstr(h->in.data, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n")) {
        char *v = l + 2, *le = strstr(v, "\r\n"), *c;
        if (!strncasecmp(v, "content-length:", 15)) clen = strtoul(v + 15, NULL, 10);
        else if (!strncasecmp(v, "connection:", 11) && (c = strcasestr(v, "close")) && c < le) close_after = 1;
    }
    if (h->in.len < hdr + clen) return;
    load_rec_t *x = &recs.v[h->rec];
    x->acked = load_now_s();
    x->status = status;
    load_lats_add(&answer, (x->acked - x->sent) * 1e3);
    answered++;
    if (status != 204) {
        refused++;
        if (refused <= 5) fprintf(stderr, "http_load: %s answered %d: %.*s\n", D[x->dev].id, status, (int)clen, h->in.data + hdr);
    }
    busy--;
    if (h->in.len > hdr + clen || close_after) {
        h->state = H_IDLE; /* nothing in flight: closing it fails no message */
        hconn_close(h, "closed");
        return;
    }
    buf_reset(&h->in);
    h->state = H_IDLE;
    idle_push(h);
}

/* A complete response in h->in: record it; the connection goes back to the pool. An answer
 * followed by the server closing the connection still counts (it is parsed before the close). */
static void on_readable(hconn_t *h)
{
    char b[16384];
    const char *gone = NULL;
    for (;;) {
        ssize_t r = read(h->fd, b, sizeof b);
        if (r > 0) {
            buf_append(&h->in, b, (size_t)r);
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
        gone = r == 0 ? "connection closed by the server" : strerror(errno);
        break;
    }
    if (h->in.len) take_answer(h);
    if (gone && h->state != H_FREE) hconn_close(h, gone);
}

static void on_event(hconn_t *h, uint32_t ev)
{
    if (h->state == H_FREE) return;
    if (h->state == H_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            hconn_close(h, strerror(err));
            return;
        }
        if (h->out.len) {
            h->state = H_BUSY;
            hconn_flush(h);
        } else {
            h->state = H_IDLE;
            idle_push(h);
            watch(h, EPOLL_CTL_MOD, EPOLLIN);
        }
        return;
    }
    if (ev & EPOLLOUT) hconn_flush(h);
    if (h->state != H_FREE && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(h);
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
}

static int setup(void)
{
    D = load_devices_read(O.devices, O.hub, O.n);
    paths = calloc((size_t)O.n, sizeof *paths);
    seqs = calloc((size_t)O.n, sizeof *seqs);
    P = calloc((size_t)O.max_conns, sizeof *P);
    idle = calloc((size_t)O.max_conns, sizeof *idle);
    if (!D || !paths || !seqs || !P || !idle) return -1;
    for (int i = 0; i < O.n; i++) {
        char enc[1024];
        if (iothub_sas_url_encode(D[i].id, 1, enc, sizeof enc) < 0) return -1;
        buf_t p = BUF_INIT;
        buf_printf(&p, "/devices/%s/messages/events?api-version=2021-04-12", enc);
        paths[i] = buf_steal(&p);
    }
    for (int k = 0; k < O.max_conns; k++) P[k].fd = -1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    return ep < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--host")) O.host = v;
        else if (!strcmp(a, "--port")) O.port = atoi(v);
        else if (!strcmp(a, "--hub")) O.hub = v;
        else if (!strcmp(a, "--devices")) O.devices = v;
        else if (!strcmp(a, "--count")) O.n = atoi(v);
        else if (!strcmp(a, "--rate")) O.rate = atof(v);
        else if (!strcmp(a, "--seconds")) O.seconds = atof(v);
        else if (!strcmp(a, "--connections")) O.max_conns = atoi(v);
        else if (!strcmp(a, "--warm")) O.warm = atoi(v);
        else if (!strcmp(a, "--record")) O.record = v;
        else if (!strcmp(a, "--server-pid")) O.server_pid = atoi(v);
        else {
            fprintf(stderr, "http_load: unknown option %s\n", a);
            return 2;
        }
    }
    if (!O.devices || O.port <= 0 || O.n <= 0 || O.rate <= 0 || O.seconds <= 0 || O.max_conns <= 0) {
        fprintf(stderr, "usage: http_load --port N --devices FILE [--count N] [--rate R] [--seconds S] "
                        "[--connections MAX] [--warm N] [--record FILE] [--server-pid PID]\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (setup() != 0) {
        fprintf(stderr, "http_load: cannot set up (devices file, memory or epoll)\n");
        return 1;
    }
    /* Warm connections first, so that the schedule does not start with TCP handshakes. */
    for (int k = 0; k < O.warm && k < O.max_conns; k++) hconn_open(&P[k]);
    for (double until = load_now_s() + 5; nidle < O.warm && nidle < O.max_conns && load_now_s() < until;) poll_once(10);

    unsigned long long total = (unsigned long long)llround(O.rate * O.seconds), next = 0;
    double cpu0 = O.server_pid ? load_proc_cpu_s(O.server_pid) : -1;
    double t0 = load_now_s(), last = t0;
    while (next < total) {
        double t = load_now_s();
        while (next < total && t0 + (double)next / O.rate <= t) {
            hconn_t *h = take_conn();
            if (!h) break; /* the pool is exhausted: the message waits, late */
            send_message(h, next);
            load_lats_add(&lag, (t - (t0 + (double)next / O.rate)) * 1e3);
            last = t;
            next++;
        }
        double wait_ms = next < total ? (t0 + (double)next / O.rate - load_now_s()) * 1e3 : 0;
        poll_once(wait_ms > 0 ? (int)ceil(wait_ms) : 0);
    }
    double t1 = load_now_s(), cpu1 = O.server_pid ? load_proc_cpu_s(O.server_pid) : -1;
    for (double until = t1 + 30; busy > 0 && load_now_s() < until;) poll_once(50);
    long rss = O.server_pid ? load_proc_rss_kb(O.server_pid) : -1;
    int rec_rc = O.record ? load_recs_write(&recs, D, O.record) : 0;

    /* An ideal sender sends message total-1 at t0 + (total-1)/rate: achieved = rate exactly. */
    double achieved = (double)total / (last - t0 + 1.0 / O.rate);
    load_lats_sort(&lag);
    load_lats_sort(&answer);
    printf("{\"offeredPerSecond\":%.1f,\"messages\":%llu,\"sendSeconds\":%.3f,\"achievedPerSecond\":%.1f,"
           "\"dispatchLagMs\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},\"answerMs\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
           "\"answered\":%llu,\"refused\":%llu,\"failed\":%llu,\"unanswered\":%d,\"connectionsOpened\":%d,"
           "\"serverCpuSeconds\":%.3f,\"serverCpuUsPerMessage\":%.1f,\"serverRssKb\":%ld}\n",
           O.rate, total, last - t0, achieved, load_lats_pct(&lag, 50), load_lats_pct(&lag, 99), load_lats_max(&lag),
           load_lats_pct(&answer, 50), load_lats_pct(&answer, 99), load_lats_max(&answer), answered, refused, failed, busy,
           opened, cpu1 - cpu0, total ? (cpu1 - cpu0) * 1e6 / (double)total : 0.0, rss);

    for (int k = 0; k < O.max_conns; k++) {
        if (P[k].fd >= 0) close(P[k].fd);
        buf_free(&P[k].out);
        buf_free(&P[k].in);
    }
    for (int i = 0; i < O.n; i++) free(paths[i]);
    free(paths);
    free(seqs);
    free(P);
    free(idle);
    free(recs.v);
    free(lag.v);
    free(answer.v);
    load_devices_free(D, O.n);
    close(ep);
    return refused || failed || busy || rec_rc ? 1 : 0;
}
