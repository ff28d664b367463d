/* mqtt_load.c — MQTT device load for the benchmark (bench/mqtt.sh, docs/benchmarks.md).
 *
 * N devices, each one MQTT 3.1.1 connection over TLS, held by one epoll thread (so the load
 * generator costs little next to the server it measures). Phases:
 *   1. connect all (at most --ramp handshakes at a time), then stay idle --idle-s seconds;
 *   2. --duration-s seconds in which every device publishes one QoS 1 message per second
 *      (phases spread over the second) and every --burst-every-s seconds --burst-devices
 *      devices each publish --burst-size messages back to back;
 *   3. wait for the outstanding PUBACKs (at most 30 s) and disconnect.
 * PUBACK latency = PUBLISH written → PUBACK read, per message. With --server-pid, the
 * server's RSS (before connecting and when idle) and CPU time (over phase 2) are read from
 * /proc. Devices come from --devices FILE (lines "id base64key"; keys never on the command
 * line); SAS tokens are made with the local IoT Hub's sas.h.
 * Prints one JSON object with the results. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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
#include <time.h>
#include <unistd.h>

#include "devhost/iothub/registry.h"
#include "devhost/iothub/sas.h"
#include "devhost/mqtt/mqtt_packet.h"
#include "util/base64.h"
#include "util/buf.h"

#define RING 4096 /* per connection: send times of the last RING packet ids */

typedef enum { C_TCP, C_TLS, C_WAIT_CONNACK, C_ACTIVE, C_DONE } cstate_t;

typedef struct conn {
    int       fd;
    SSL      *ssl;
    cstate_t  state;
    char     *id;
    char     *user, *password;
    buf_t     out, in;
    size_t    out_off;
    unsigned  next_id;
    double    sent_at[RING];
    unsigned char burst[RING];  /* 1 when that packet id was sent in a burst */
    unsigned  inflight;
    double    next_send;
    unsigned  seq;
} conn_t;

static struct {
    const char *host, *hub, *ca, *devices;
    int         port, n, ramp, idle_s, duration_s, burst_every_s, burst_devices, burst_size, server_pid;
} O = {"127.0.0.1", "enviromon", NULL, NULL, 8883, 1000, 64, 5, 30, 10, 50, 20, 0};

static conn_t *C;
static int ep;
static SSL_CTX *ctx;
typedef struct lats {
    double *v;
    size_t  n, cap;
} lats_t;
static lats_t lat_all, lat_steady, lat_burst;
static unsigned long long sent, acked, connect_fail, disconnected;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

static double proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A device token for 24 h, made the way the C SDK makes it (lowercase percent-encoding). */
static char *make_sas(const char *id, const char *key_b64)
{
    unsigned char key[128];
    size_t kl = strlen(key_b64);
    long n = kl / 4 * 3 <= sizeof key ? base64_decode(key_b64, kl, key) : -1;
    char res[512], sr[1024], tok[2048];
    snprintf(res, sizeof res, "%s.azure-devices.net/devices/%s", O.hub, id);
    if (n <= 0 || iothub_sas_url_encode(res, 0, sr, sizeof sr) < 0 ||
        iothub_sas_make(sr, key, (size_t)n, (long long)time(NULL) + 24 * 3600, NULL, tok, sizeof tok) != 0)
        return NULL;
    return strdup(tok);
}

static int load_devices(void)
{
    FILE *f = fopen(O.devices, "r");
    if (!f) {
        fprintf(stderr, "mqtt_load: cannot read %s: %s\n", O.devices, strerror(errno));
        return -1;
    }
    C = calloc((size_t)O.n, sizeof *C);
    char id[256], key[256];
    int i = 0;
    while (i < O.n && fscanf(f, "%255s %255s", id, key) == 2) {
        C[i].id = strdup(id);
        C[i].password = make_sas(id, key);
        if (!C[i].password) {
            fprintf(stderr, "mqtt_load: the key of %s is not base64\n", id);
            fclose(f);
            return -1;
        }
        buf_t u = BUF_INIT;
        buf_printf(&u, "%s.azure-devices.net/%s/?api-version=2021-04-12&DeviceClientType=enviromon-bench", O.hub, id);
        C[i].user = buf_steal(&u);
        C[i].fd = -1;
        i++;
    }
    fclose(f);
    if (i < O.n) {
        fprintf(stderr, "mqtt_load: %s has only %d devices, %d wanted\n", O.devices, i, O.n);
        return -1;
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

static void lat_add(lats_t *l, double ms)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 65536;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = ms;
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
        double ms = (now_s() - c->sent_at[p->u.id % RING]) * 1000.0;
        lat_add(&lat_all, ms);
        lat_add(c->burst[p->u.id % RING] ? &lat_burst : &lat_steady, ms);
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
    c->sent_at[id % RING] = now_s();
    c->burst[id % RING] = (unsigned char)burst;
    c->inflight++;
    sent++;
}

static void pump(double until, int load, double t0)
{
    struct epoll_event evs[256];
    double next_burst = t0 + O.burst_every_s;
    while (now_s() < until) {
        int n = epoll_wait(ep, evs, 256, 5);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        if (!load) continue;
        double t = now_s();
        for (int i = 0; i < O.n; i++) {
            conn_t *c = &C[i];
            if (c->state != C_ACTIVE || t < c->next_send) continue;
            publish_one(c, 0);
            c->next_send += 1.0;
            flush(c);
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

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(lats_t *l, double p)
{
    if (!l->n) return 0;
    size_t i = (size_t)ceil(p / 100.0 * (double)l->n);
    return l->v[i ? i - 1 : 0];
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
        else {
            fprintf(stderr, "mqtt_load: unknown option %s\n", a);
            return 2;
        }
    }
    if (!O.ca || !O.devices || O.n <= 0) {
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

    long rss0 = O.server_pid ? proc_rss_kb(O.server_pid) : -1;
    double t_conn = now_s();
    int started = 0;
    struct epoll_event evs[256];
    while (now_s() - t_conn < 120) {
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
    double connect_s = now_s() - t_conn;
    int active = 0;
    for (int i = 0; i < O.n; i++) active += C[i].state == C_ACTIVE;
    pump(now_s() + O.idle_s, 0, 0); /* idle: only keep the sockets */
    long rss_idle = O.server_pid ? proc_rss_kb(O.server_pid) : -1;

    double cpu0 = O.server_pid ? proc_cpu_s(O.server_pid) : -1;
    double t0 = now_s();
    for (int i = 0; i < O.n; i++) C[i].next_send = t0 + (double)i / O.n; /* spread over the second */
    pump(t0 + O.duration_s, 1, t0);
    double t1 = now_s();
    unsigned long long sent_load = sent, acked_load = acked;
    double cpu1 = O.server_pid ? proc_cpu_s(O.server_pid) : -1;
    double drain_until = now_s() + 30;
    while (acked < sent && now_s() < drain_until) pump(now_s() + 0.1, 0, 0);
    long rss_load = O.server_pid ? proc_rss_kb(O.server_pid) : -1;

    lats_t *ls[] = {&lat_all, &lat_steady, &lat_burst};
    for (int i = 0; i < 3; i++)
        if (ls[i]->n) qsort(ls[i]->v, ls[i]->n, sizeof *ls[i]->v, cmp);
    printf("{\"connections\":%d,\"connected\":%d,\"connectFailures\":%llu,\"disconnected\":%llu,"
           "\"connectSeconds\":%.2f,\"durationSeconds\":%.2f,\"sent\":%llu,\"acked\":%llu,"
           "\"sentDuringLoad\":%llu,\"ackedDuringLoad\":%llu,\"ratePerSecond\":%.1f,"
           "\"pubackMs\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
           "\"steadyPubackMs\":{\"p50\":%.2f,\"p99\":%.2f},\"burstPubackMs\":{\"p50\":%.2f,\"p99\":%.2f},"
           "\"serverRssKb\":{\"before\":%ld,\"idle\":%ld,\"afterLoad\":%ld},"
           "\"serverCpuSeconds\":%.3f,\"serverCpuUsPerMessage\":%.1f}\n",
           O.n, active, connect_fail, disconnected, connect_s, t1 - t0, sent, acked, sent_load, acked_load,
           t1 > t0 ? (double)acked_load / (t1 - t0) : 0.0, pct(&lat_all, 50), pct(&lat_all, 99),
           lat_all.n ? lat_all.v[lat_all.n - 1] : 0.0, pct(&lat_steady, 50), pct(&lat_steady, 99),
           pct(&lat_burst, 50), pct(&lat_burst, 99), rss0,
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
        free(C[i].id);
        free(C[i].user);
        free(C[i].password);
        buf_free(&C[i].out);
        buf_free(&C[i].in);
    }
    free(C);
    for (int i = 0; i < 3; i++) free(ls[i]->v);
    SSL_CTX_free(ctx);
    return acked == sent && active == O.n ? 0 : 1;
}
