/* mqtt_load.c — MQTT device load for the benchmark (bench/mqtt.sh, docs/benchmarks.md).
 *
 * N devices, each one MQTT 3.1.1 connection over TLS, held by one epoll thread (so the load
 * generator costs little next to the server it measures). Phases:
 *   1. connect all (at most --ramp handshakes at a time), then stay idle --idle-s seconds;
 *   2. --duration-s seconds in which the devices publish QoS 1 messages: open loop at --rate
 *      messages/s in all (default one per device per second; each device on its own fixed
 *      schedule, phases spread over the period, whatever the PUBACKs do), or with --rate 0
 *      closed loop, each device keeping --window messages unacknowledged (as fast as the
 *      server goes); and every --burst-every-s seconds --burst-devices devices each publish
 *      --burst-size messages back to back;
 *   3. wait for the outstanding PUBACKs (at most 30 s) and disconnect.
 * PUBACK latency = PUBLISH written → PUBACK read, per message. With --server-pid, the
 * server's RSS (before connecting and when idle) and CPU time (over phase 2) are read from
 * /proc. Devices come from --devices FILE (lines "id base64key"; keys never on the command
 * line); SAS tokens are made with the local IoT Hub's sas.h. --record FILE writes one line per
 * message (load_common.h; status 1 = PUBACK received) for bench/devhost_e2e.mjs.
 * Prints one JSON object with the results. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devhost/iothub/registry.h"
#include "devhost/iothub/sas.h"
#include "devhost/mqtt/mqtt_packet.h"
#include "util/base64.h"
#include "util/buf.h"
#include "load_common.h"

#define RING 4096 /* per connection: send times of the last RING packet ids */

typedef enum { C_TCP, C_TLS, C_WAIT_CONNACK, C_ACTIVE, C_DONE } cstate_t;

typedef struct conn {
    int       fd;
    SSL      *ssl;
    cstate_t  state;
    int       dev;            /* index into D */
    const char *id, *password; /* D[dev]'s */
    char     *user;
    buf_t     out, in;
    size_t    out_off;
    unsigned  next_id;
    double    sent_at[RING];
    unsigned char burst[RING];  /* 1 when that packet id was sent in a burst */
    unsigned  rec[RING];        /* with --record: that packet id's record */
    unsigned  inflight;
    double    next_send;
    unsigned  seq;
} conn_t;

static struct {
    const char *host, *hub, *ca, *devices, *record;
    int         port, n, ramp, idle_s, duration_s, burst_every_s, burst_devices, burst_size, server_pid, window;
    double      rate; /* messages/s over all devices; < 0: one per device per second; 0: closed loop */
} O = {"127.0.0.1", "enviromon", NULL, NULL, NULL, 8883, 1000, 64, 5, 30, 10, 50, 20, 0, 8, -1};

static conn_t *C;
static load_device_t *D;
static load_recs_t recs;
static int ep;
static SSL_CTX *ctx;
static load_lats_t lat_all, lat_steady, lat_burst;
static unsigned long long sent, acked, connect_fail, disconnected, late;

/* The devices of --devices, each with its MQTT user name. */
static int load_devices(void)
{
    D = load_devices_read(O.devices, O.hub, O.n);
    C = calloc((size_t)O.n, sizeof *C);
    if (!D || !C) return -1;
    for (int i = 0; i < O.n; i++) {
        buf_t u = BUF_INIT;
        buf_printf(&u, "%s.azure-devices.net/%s/?api-version=2021-04-12&DeviceClientType=enviromon-bench", O.hub, D[i].id);
        C[i].dev = i;
        C[i].id = D[i].id;
        C[i].password = D[i].sas;
        C[i].user = buf_steal(&u);
        C[i].fd = -1;
    }
    return 0;
}

static void set_events(conn_t *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void conn_fail(conn_t *c, const char *why)
{
    if (c->state == C_DONE) return;
    if (c->state != C_ACTIVE) connect_fail++;
    else disconnected++;
    if (connect_fail + disconnected <= 5) fprintf(stderr, "mqtt_load: %s: %s\n", c->id, why);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    c->state = C_DONE;
}

static void start_connect(conn_t *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
    inet_pton(AF_INET, O.host, &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = C_TCP;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) conn_fail(c, strerror(errno));
}

static void flush(conn_t *c)
{
    while (c->out_off < c->out.len) {
        size_t w;
        int r = SSL_write_ex(c->ssl, c->out.data + c->out_off, c->out.len - c->out_off, &w);
        if (r == 1) {
            c->out_off += w;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            set_events(c, EPOLLIN | EPOLLOUT);
            return;
        }
        conn_fail(c, "write failed");
        return;
    }
    buf_reset(&c->out);
    c->out_off = 0;
    set_events(c, EPOLLIN);
}

static void on_packet(conn_t *c, const mqtt_packet_t *p)
{
    if (p->type == MQTT_CONNACK) {
        if (p->u.connack.rc != 0) {
            char why[64];
            snprintf(why, sizeof why, "CONNACK %u", p->u.connack.rc);
            conn_fail(c, why);
            return;
        }
        c->state = C_ACTIVE;
    } else if (p->type == MQTT_PUBACK) {
        double t = load_now_s(), ms = (t - c->sent_at[p->u.id % RING]) * 1000.0;
        load_lats_add(&lat_all, ms);
        load_lats_add(c->burst[p->u.id % RING] ? &lat_burst : &lat_steady, ms);
        if (O.record) {
            recs.v[c->rec[p->u.id % RING]].acked = t;
            recs.v[c->rec[p->u.id % RING]].status = 1;
        }
        acked++;
        c->inflight--;
    }
}

static void do_read(conn_t *c)
{
    unsigned char b[16384];
    for (;;) {
        size_t n;
        int r = SSL_read_ex(c->ssl, b, sizeof b, &n);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) conn_fail(c, "connection closed by the server");
            return;
        }
        buf_append(&c->in, b, n);
        size_t off = 0, used;
        mqtt_packet_t p;
        const char *why;
        mqtt_parse_result_t pr;
        while ((pr = mqtt_parse((uint8_t *)c->in.data + off, c->in.len - off, 1 << 20, &p, &used, &why)) == MQTT_PARSE_OK) {
            on_packet(c, &p);
            if (c->state == C_DONE) return;
            off += used;
        }
        if (pr != MQTT_PARSE_MORE) {
            conn_fail(c, why);
            return;
        }
        memmove(c->in.data, c->in.data + off, c->in.len - off);
        c->in.len -= off;
    }
}

static void on_event(conn_t *c, uint32_t ev)
{
    if (c->state == C_DONE) return;
    if (c->state == C_TCP) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            conn_fail(c, strerror(err));
            return;
        }
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        SSL_set1_host(c->ssl, "localhost");
        SSL_set_connect_state(c->ssl);
        c->state = C_TLS;
    }
    if (c->state == C_TLS) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) set_events(c, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE) set_events(c, EPOLLOUT);
            else conn_fail(c, ERR_reason_error_string(ERR_get_error()) ? ERR_reason_error_string(ERR_get_error()) : "TLS handshake failed");
            return;
        }
        mqtt_connect_t k = {0};
        k.clean = 1;
        k.keepalive = 120;
        k.client_id.s = c->id;
        k.client_id.len = strlen(c->id);
        k.has_username = k.has_password = 1;
        k.username.s = c->user;
        k.username.len = strlen(c->user);
        k.password.s = c->password;
        k.password.len = strlen(c->password);
        mqtt_put_connect(&c->out, &k);
        c->state = C_WAIT_CONNACK;
        flush(c);
        return;
    }
    if (ev & EPOLLOUT) flush(c);
    if (c->state != C_DONE && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) do_read(c);
}

static void publish_one(conn_t *c, int burst)
{
    if (c->state != C_ACTIVE) return;
    if (c->inflight >= RING) return; /* never reuse a slot still waiting */
    char topic[300], body[256];
    c->seq++;
    unsigned id = c->next_id = c->next_id % 65535 + 1;
    double t = 20 + (c->seq % 13);
    snprintf(topic, sizeof topic, "devices/%s/messages/events/%%24.mid=%s-%u&temperatureAlert=%s", c->id, c->id, c->seq,
             t > 30 ? "true" : "false");
    int bl = snprintf(body, sizeof body, "{\"messageId\":%u,\"deviceId\":\"%s\",\"temperature\":%.2f,\"humidity\":%.2f}",
                      c->seq, c->id, t, 60.0 + c->seq % 20);
    mqtt_publish_t p = {{topic, strlen(topic)}, 1, 0, 0, id, (uint8_t *)body, (size_t)bl};
    mqtt_put_publish(&c->out, &p);
    c->sent_at[id % RING] = load_now_s();
    c->burst[id % RING] = (unsigned char)burst;
    if (O.record) c->rec[id % RING] = (unsigned)load_recs_add(&recs, c->dev, c->seq, c->sent_at[id % RING]);
    c->inflight++;
    sent++;
}

static void pump(double until, int load, double t0)
{
    struct epoll_event evs[256];
    double next_burst = t0 + O.burst_every_s;
    while (load_now_s() < until) {
        int n = epoll_wait(ep, evs, 256, 5);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        if (!load) continue;
        double t = load_now_s(), period = O.rate < 0 ? 1.0 : O.n / O.rate;
        for (int i = 0; i < O.n; i++) {
            conn_t *c = &C[i];
            if (c->state != C_ACTIVE) continue;
            int any = 0;
            if (O.rate == 0) {
                while (c->inflight < (unsigned)O.window) {
                    publish_one(c, 0);
                    any = 1;
                }
            } else {
                for (; t >= c->next_send && c->next_send < until; c->next_send += period) {
                    if (t - c->next_send > period) late++;
                    publish_one(c, 0);
                    any = 1;
                }
            }
            if (any) flush(c);
        }
        if (O.burst_every_s > 0 && t >= next_burst) {
            for (int k = 0; k < O.burst_devices && k < O.n; k++) {
                conn_t *c = &C[rand() % O.n];
                for (int j = 0; j < O.burst_size; j++) publish_one(c, 1);
                if (c->state == C_ACTIVE) flush(c);
            }
            next_burst += O.burst_every_s;
        }
    }
}

/* `--make-devices N DIR FILE`: register N devices bench-0001.. in the local IoT Hub of data
 * folder DIR (written in one go with the registry's own formatter, rather than N runs of
 * `devhost device add`, each of which fsyncs) and write their "id key" lines to FILE. */
static int make_devices(int n, const char *dir, const char *file)
{
    iothub_device_t *d = calloc((size_t)n, sizeof *d);
    FILE *f = fopen(file, "w");
    if (!d || !f) {
        fprintf(stderr, "mqtt_load: cannot create %s\n", file);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        unsigned char k[64];
        RAND_bytes(k, sizeof k);
        snprintf(d[i].id, sizeof d[i].id, "bench-%04d", i + 1);
        snprintf(d[i].generation_id, sizeof d[i].generation_id, "63900000000%08d", i + 1);
        snprintf(d[i].created, sizeof d[i].created, "2026-01-01T00:00:00Z");
        base64_encode(k, 32, d[i].primary);
        base64_encode(k + 32, 32, d[i].secondary);
        fprintf(f, "%s %s\n", d[i].id, d[i].primary);
    }
    fclose(f);
    char path[4096];
    snprintf(path, sizeof path, "mkdir -p '%s/iothub'", dir);
    char *text = iothub_registry_format(d, (size_t)n);
    int rc = text && system(path) == 0 ? 0 : 1;
    snprintf(path, sizeof path, "%s/iothub/devices.json", dir);
    FILE *r = rc == 0 ? fopen(path, "w") : NULL;
    if (!r || fchmod(fileno(r), 0600) != 0 || fputs(text, r) < 0 || fclose(r) != 0) rc = 1; /* it holds keys */
    free(text);
    free(d);
    if (rc) fprintf(stderr, "mqtt_load: cannot write %s\n", path);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--make-devices") == 0) return make_devices(atoi(argv[2]), argv[3], argv[4]);
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--host")) O.host = v;
        else if (!strcmp(a, "--port")) O.port = atoi(v);
        else if (!strcmp(a, "--hub")) O.hub = v;
        else if (!strcmp(a, "--ca")) O.ca = v;
        else if (!strcmp(a, "--devices")) O.devices = v;
        else if (!strcmp(a, "--connections")) O.n = atoi(v);
        else if (!strcmp(a, "--ramp")) O.ramp = atoi(v);
        else if (!strcmp(a, "--idle-s")) O.idle_s = atoi(v);
        else if (!strcmp(a, "--duration-s")) O.duration_s = atoi(v);
        else if (!strcmp(a, "--burst-every-s")) O.burst_every_s = atoi(v);
        else if (!strcmp(a, "--burst-devices")) O.burst_devices = atoi(v);
        else if (!strcmp(a, "--burst-size")) O.burst_size = atoi(v);
        else if (!strcmp(a, "--server-pid")) O.server_pid = atoi(v);
        else if (!strcmp(a, "--rate")) O.rate = atof(v);
        else if (!strcmp(a, "--window")) O.window = atoi(v);
        else if (!strcmp(a, "--record")) O.record = v;
        else {
            fprintf(stderr, "mqtt_load: unknown option %s\n", a);
            return 2;
        }
    }
    if (!O.ca || !O.devices || O.n <= 0 || O.window <= 0 || O.window >= RING) {
        fprintf(stderr, "usage: mqtt_load --ca CA.pem --devices FILE [--connections N] [--port N] ...\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (load_devices() != 0) return 1;
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, O.ca, NULL) != 1) {
        fprintf(stderr, "mqtt_load: cannot load %s\n", O.ca);
        return 1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    ep = epoll_create1(EPOLL_CLOEXEC);

    long rss0 = O.server_pid ? load_proc_rss_kb(O.server_pid) : -1;
    double t_conn = load_now_s();
    int started = 0;
    struct epoll_event evs[256];
    while (load_now_s() - t_conn < 120) {
        int active = 0, pending = 0;
        for (int i = 0; i < started; i++) {
            if (C[i].state == C_ACTIVE) active++;
            else if (C[i].state != C_DONE) pending++;
        }
        if (active + (int)connect_fail == O.n) break;
        while (started < O.n && pending < O.ramp) {
            start_connect(&C[started++]);
            pending++;
        }
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    }
    double connect_s = load_now_s() - t_conn;
    int active = 0;
    for (int i = 0; i < O.n; i++) active += C[i].state == C_ACTIVE;
    pump(load_now_s() + O.idle_s, 0, 0); /* idle: only keep the sockets */
    long rss_idle = O.server_pid ? load_proc_rss_kb(O.server_pid) : -1;

    double cpu0 = O.server_pid ? load_proc_cpu_s(O.server_pid) : -1;
    double t0 = load_now_s(), period = O.rate <= 0 ? 1.0 : O.n / O.rate;
    for (int i = 0; i < O.n; i++) C[i].next_send = t0 + period * i / O.n; /* spread over the period */
    pump(t0 + O.duration_s, 1, t0);
    double t1 = load_now_s();
    unsigned long long sent_load = sent, acked_load = acked;
    double cpu1 = O.server_pid ? load_proc_cpu_s(O.server_pid) : -1;
    double drain_until = load_now_s() + 30;
    while (acked < sent && load_now_s() < drain_until) pump(load_now_s() + 0.1, 0, 0);
    long rss_load = O.server_pid ? load_proc_rss_kb(O.server_pid) : -1;
    int rec_rc = O.record ? load_recs_write(&recs, D, O.record) : 0;

    load_lats_t *ls[] = {&lat_all, &lat_steady, &lat_burst};
    for (int i = 0; i < 3; i++) load_lats_sort(ls[i]);
    printf("{\"connections\":%d,\"connected\":%d,\"connectFailures\":%llu,\"disconnected\":%llu,"
           "\"connectSeconds\":%.2f,\"durationSeconds\":%.2f,\"sent\":%llu,\"acked\":%llu,"
           "\"sentDuringLoad\":%llu,\"ackedDuringLoad\":%llu,\"ratePerSecond\":%.1f,"
           "\"offeredPerSecond\":%.1f,\"sentPerSecond\":%.1f,\"late\":%llu,\"loadStartWallMs\":%.3f,"
           "\"pubackMs\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
           "\"steadyPubackMs\":{\"p50\":%.2f,\"p99\":%.2f},\"burstPubackMs\":{\"p50\":%.2f,\"p99\":%.2f},"
           "\"serverRssKb\":{\"before\":%ld,\"idle\":%ld,\"afterLoad\":%ld},"
           "\"serverCpuSeconds\":%.3f,\"serverCpuUsPerMessage\":%.1f}\n",
           O.n, active, connect_fail, disconnected, connect_s, t1 - t0, sent, acked, sent_load, acked_load,
           t1 > t0 ? (double)acked_load / (t1 - t0) : 0.0, O.rate < 0 ? (double)O.n : O.rate,
           t1 > t0 ? (double)sent_load / (t1 - t0) : 0.0, late, load_wall_ms(t0), load_lats_pct(&lat_all, 50), load_lats_pct(&lat_all, 99),
           load_lats_max(&lat_all), load_lats_pct(&lat_steady, 50), load_lats_pct(&lat_steady, 99),
           load_lats_pct(&lat_burst, 50), load_lats_pct(&lat_burst, 99), rss0,
           rss_idle, rss_load, cpu1 - cpu0, acked_load ? (cpu1 - cpu0) * 1e6 / (double)acked_load : 0.0);
    for (int i = 0; i < O.n; i++) {
        if (C[i].state == C_ACTIVE) {
            buf_t d = BUF_INIT;
            mqtt_put_empty(&d, MQTT_DISCONNECT);
            size_t w;
            SSL_write_ex(C[i].ssl, d.data, d.len, &w);
            buf_free(&d);
        }
        if (C[i].ssl) SSL_free(C[i].ssl);
        if (C[i].fd >= 0) close(C[i].fd);
        free(C[i].user);
        buf_free(&C[i].out);
        buf_free(&C[i].in);
    }
    free(C);
    load_devices_free(D, O.n);
    free(recs.v);
    for (int i = 0; i < 3; i++) free(ls[i]->v);
    SSL_CTX_free(ctx);
    return acked == sent && active == O.n && rec_rc == 0 ? 0 : 1;
}
