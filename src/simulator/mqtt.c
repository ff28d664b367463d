/* mqtt.c — the MQTT transport: IoT Hub's MQTT 3.1.1 device protocol over TLS, on libmosquitto.
 *
 * Each device has its own connection, as IoT Hub requires: client id = device id, user name
 * "{HostName}/{deviceId}/?api-version=2021-04-12&DeviceClientType=...", password = the device's
 * SAS token; telemetry is a QoS 1 PUBLISH to
 * "devices/{deviceId}/messages/events/{url-encoded property bag}" ($.mid, $.ct, $.ce and the
 * temperatureAlert application property), acknowledged by PUBACK.
 *
 * libmosquitto does the packets, TLS and keep-alive; this file owns the connections' life. All
 * connections share one epoll loop in the engine's thread (mosquitto_loop_read/write/misc on
 * the library's non-blocking sockets), not a thread per device. The library is used as a
 * codec and socket only: every connection is thrown away when it drops (so the library never
 * re-sends a message on its own behind our back), and what was in flight goes back to the
 * engine as "uncertain" for an explicit, counted retry on the next connection.
 *
 * Token renewal works as Microsoft's SDKs do over MQTT (there is no in-band renewal): at 80 %
 * of the token's life the device stops publishing, waits for its PUBACKs, disconnects and
 * connects again with a fresh token as password.
 *
 * TLS: one SSL_CTX per endpoint, shared by its connections (the CA file is read once), with
 * peer verification and host name checking (X509_VERIFY_PARAM), minimum TLS 1.2, SNI sent by
 * libmosquitto. */
#include <errno.h>
#include <mosquitto.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "simulator/options.h"
#include "simulator/transport.h"

#define MQTT_API_VERSION   "2021-04-12"
#define MQTT_CLIENT_TYPE   "enviromon-simulator%%2F1.0" /* a printf format: %2F */
#define MQTT_KEEPALIVE_S   60
#define MQTT_MAX_CONNECTING 64   /* handshakes in progress at once */

typedef enum { MC_IDLE, MC_CONNECTING, MC_UP, MC_DRAINING, MC_WAIT, MC_DEAD } mc_state_t;

typedef struct mqtt_conn {
    sim_device_t     *d;
    struct mosquitto *mosq;
    SSL_CTX          *ctx;          /* the endpoint's, shared; NULL for mqtt:// */
    mc_state_t        state;
    int               fd;           /* registered with epoll, or -1 */
    uint32_t          events;
    int               tcp_up;       /* first writable event seen */
    int64_t           since_ns;     /* entered the current state */
    int64_t           retry_at_ns;  /* MC_WAIT: when to connect again */
    int               fails;        /* consecutive failed connections */
    int               lost;         /* on_disconnect seen */
    int               lost_rc;
    int               connack;      /* -1 until CONNACK */
    int               io_rc;        /* last failing loop call */
    sim_msg_t       **win;          /* in flight, tagged with their mid */
    size_t            win_n;
    char             *username;
    char             *topic;        /* "devices/{id}/messages/events/" */
} mqtt_conn_t;

typedef struct tls_entry {
    const sim_endpoint_t *ep;
    SSL_CTX *ctx;
} tls_entry_t;

typedef struct mqtt_tp {
    sim_run_t   *run;
    int          epfd;
    mqtt_conn_t *conns;
    size_t       n;
    size_t       window;
    tls_entry_t *tls;
    size_t       n_tls;
    size_t       connecting, up;
    buf_t        scratch;
    int          tick_misc;     /* ticks since the last keep-alive pass */
} mqtt_tp_t;

/* The last certificate problem seen by the verify callback (the engine is single-threaded). */
static char g_tls_error[200];

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok) {
        int e = X509_STORE_CTX_get_error(x);
        snprintf(g_tls_error, sizeof g_tls_error, "certificate verify failed: %s",
                 X509_verify_cert_error_string(e));
    }
    return ok;
}

static SSL_CTX *tls_ctx_new(const sim_endpoint_t *ep, const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { snprintf(err, errlen, "OpenSSL could not create a TLS context"); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, errlen, "cannot load CA certificates from %s", ca_file ? ca_file : "the system store");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    if (strchr(ep->host, ':') || strspn(ep->host, "0123456789.") == strlen(ep->host))
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, ep->host);
    else
        ok = X509_VERIFY_PARAM_set1_host(param, ep->host, 0);
    if (ok != 1) {
        snprintf(err, errlen, "cannot check certificates for host %s", ep->host);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static SSL_CTX *tls_for(mqtt_tp_t *t, const sim_endpoint_t *ep, const char *ca_file, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n_tls; i++)
        if (t->tls[i].ep == ep) return t->tls[i].ctx;
    SSL_CTX *ctx = tls_ctx_new(ep, ca_file, err, errlen);
    if (!ctx) return NULL;
    tls_entry_t *n = realloc(t->tls, (t->n_tls + 1) * sizeof *n);
    if (!n) { SSL_CTX_free(ctx); snprintf(err, errlen, "out of memory"); return NULL; }
    t->tls = n;
    t->tls[t->n_tls++] = (tls_entry_t){ep, ctx};
    return ctx;
}

/* ---- epoll registration ------------------------------------------------------------- */

static void conn_sync(mqtt_tp_t *t, mqtt_conn_t *c)
{
    int fd = c->mosq ? mosquitto_socket(c->mosq) : -1;
    if (c->fd >= 0 && c->fd != fd) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->fd = -1;
        c->events = 0;
    }
    if (fd < 0) return;
    uint32_t want = EPOLLIN;
    if (!c->tcp_up || mosquitto_want_write(c->mosq)) want |= EPOLLOUT;
    if (c->fd == fd && c->events == want) return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(t->epfd, c->fd == fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == 0) {
        c->fd = fd;
        c->events = want;
    }
}

static void conn_set_state(mqtt_tp_t *t, mqtt_conn_t *c, mc_state_t s)
{
    if (c->state == MC_CONNECTING) t->connecting--;
    if (c->state == MC_UP || c->state == MC_DRAINING) t->up--;
    if (s == MC_CONNECTING) t->connecting++;
    if (s == MC_UP || s == MC_DRAINING) t->up++;
    c->state = s;
    c->since_ns = sim_run_now_ns();
}

/* Throw the library's connection away (no callbacks, nothing re-sent). */
static void conn_destroy(mqtt_tp_t *t, mqtt_conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->fd = -1;
        c->events = 0;
    }
    if (c->mosq) {
        mosquitto_destroy(c->mosq);
        c->mosq = NULL;
    }
    c->tcp_up = 0;
}

/* Give every message in flight back to the engine. */
static void conn_return_inflight(mqtt_tp_t *t, mqtt_conn_t *c, sim_fail_t how, const char *why)
{
    while (c->win_n > 0) {
        sim_msg_t *m = c->win[--c->win_n];
        sim_run_failed(t->run, c->d, m, how, why);
    }
}

/* The connection is gone or unusable: in-flight messages may have reached the hub. */
static void conn_lost(mqtt_tp_t *t, mqtt_conn_t *c, const char *why)
{
    char label[600];
    conn_destroy(t, c);
    c->fails++;
    c->retry_at_ns = sim_run_now_ns() + sim_run_backoff_ns(t->run, c->fails);
    conn_set_state(t, c, MC_WAIT);
    snprintf(label, sizeof label, "MQTT connection lost: %s", why);
    sim_run_event(t->run, label, 1);
    conn_return_inflight(t, c, SIM_FAIL_UNCERTAIN, why);
}

/* ---- library callbacks (run inside mosquitto_loop_read) ----------------------------- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    mqtt_conn_t *c = obj;
    c->connack = rc;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    mqtt_conn_t *c = obj;
    c->lost = 1;
    c->lost_rc = rc;
}

/* PUBACKs are handled after the read returns: the engine may publish from its callbacks. */
static int *g_acked;
static size_t g_acked_n, g_acked_cap;

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    (void)mosq;
    (void)obj;
    if (g_acked_n == g_acked_cap) {
        size_t cap = g_acked_cap ? g_acked_cap * 2 : 64;
        int *n = realloc(g_acked, cap * sizeof *n);
        if (!n) return; /* the PUBACK is then lost to us: the message times out and is retried */
        g_acked = n;
        g_acked_cap = cap;
    }
    g_acked[g_acked_n++] = mid;
}

static void conn_handle_acks(mqtt_tp_t *t, mqtt_conn_t *c)
{
    size_t n = g_acked_n;
    g_acked_n = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < c->win_n; j++) {
            if (c->win[j]->tag != g_acked[i]) continue;
            sim_msg_t *m = c->win[j];
            c->win[j] = c->win[--c->win_n];
            sim_run_acked(t->run, c->d, m);
            break;
        }
    }
}

/* ---- connecting ---------------------------------------------------------------------- */

static const char *connack_text(int rc)
{
    switch (rc) {
    case 1: return "1: unacceptable protocol version";
    case 2: return "2: identifier rejected";
    case 3: return "3: server unavailable";
    case 4: return "4: bad user name or password";
    case 5: return "5: not authorized";
    default: return "unknown code";
    }
}

static void conn_start(mqtt_tp_t *t, mqtt_conn_t *c)
{
    sim_device_t *d = c->d;
    const sim_opts_t *o = sim_run_opts(t->run);
    char why[512];
    g_tls_error[0] = '\0';
    if (sim_device_token(d, sim_run_wall_s(), sim_run_now_ns(), o->token_ttl) < 0) {
        sim_run_device_dead(t->run, d, "cannot mint a SAS token (OpenSSL failed)");
        conn_set_state(t, c, MC_DEAD);
        return;
    }
    c->mosq = mosquitto_new(d->cs.device_id, true, c);
    if (!c->mosq) {
        conn_lost(t, c, "out of memory");
        return;
    }
    c->lost = 0;
    c->connack = -1;
    c->io_rc = 0;
    mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(c->mosq, MOSQ_OPT_SEND_MAXIMUM, (int)t->window);
    if (c->ctx) { /* ours as it is: the library's defaults would want a CA file of their own */
        mosquitto_int_option(c->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
        mosquitto_void_option(c->mosq, MOSQ_OPT_SSL_CTX, c->ctx);
    }
    mosquitto_connect_callback_set(c->mosq, on_connect);
    mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
    mosquitto_publish_callback_set(c->mosq, on_publish);
    mosquitto_username_pw_set(c->mosq, c->username, buf_str(&d->token));
    conn_set_state(t, c, MC_CONNECTING);
    int rc = mosquitto_connect_async(c->mosq, d->ep->connect_host, d->ep->port, MQTT_KEEPALIVE_S);
    if (rc != MOSQ_ERR_SUCCESS) {
        if (rc == MOSQ_ERR_ERRNO) snprintf(why, sizeof why, "connect: %s", strerror(errno));
        else if (rc == MOSQ_ERR_EAI) snprintf(why, sizeof why, "cannot resolve %s: %s", d->ep->connect_host, gai_strerror(errno));
        else if (rc == MOSQ_ERR_TLS) snprintf(why, sizeof why, "TLS: %s", g_tls_error[0] ? g_tls_error : "handshake failed");
        else snprintf(why, sizeof why, "connect: %s", mosquitto_strerror(rc));
        conn_lost(t, c, why);
        return;
    }
    conn_sync(t, c);
}

/* After I/O on c: CONNACK arrived? connection dropped? */
static void conn_after_io(mqtt_tp_t *t, mqtt_conn_t *c)
{
    char why[256];
    if (c->connack > 0) {
        int code = c->connack;
        snprintf(why, sizeof why, "CONNACK refused (%s)", connack_text(code));
        conn_destroy(t, c);
        if (code == 3) { /* server unavailable: try again later */
            c->connack = -1;
            conn_lost(t, c, why);
            return;
        }
        conn_set_state(t, c, MC_DEAD);
        conn_return_inflight(t, c, SIM_FAIL_PERMANENT, why);
        sim_run_device_dead(t->run, c->d, why);
        return;
    }
    if (c->state == MC_CONNECTING && c->connack == 0) {
        c->connack = -2; /* handled */
        c->fails = 0;
        conn_set_state(t, c, MC_UP);
        sim_run_event(t->run, "MQTT connected", 0);
        sim_run_device_ready(t->run, c->d);
    }
    if (c->lost || (c->io_rc != MOSQ_ERR_SUCCESS && c->mosq)) {
        int rc = c->lost ? c->lost_rc : c->io_rc;
        if (c->state == MC_CONNECTING && rc == MOSQ_ERR_TLS)
            snprintf(why, sizeof why, "TLS: %s", g_tls_error[0] ? g_tls_error : "handshake failed");
        else if (rc == MOSQ_ERR_ERRNO && errno)
            snprintf(why, sizeof why, "%s", strerror(errno));
        else if (rc == MOSQ_ERR_KEEPALIVE)
            snprintf(why, sizeof why, "keep-alive timeout");
        else
            snprintf(why, sizeof why, "%s", mosquitto_strerror(rc));
        conn_lost(t, c, why);
        return;
    }
    conn_sync(t, c);
}

/* ---- transport operations ------------------------------------------------------------ */

static void *mqtt_open(sim_run_t *run, char *err, size_t errlen)
{
    const sim_opts_t *o = sim_run_opts(run);
    size_t n;
    sim_device_t *devs = sim_run_devices(run, &n);
    mosquitto_lib_init();
    mqtt_tp_t *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); return NULL; }
    t->run = run;
    t->window = o->inflight > 0 ? (size_t)o->inflight : 16;
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->conns = calloc(n, sizeof *t->conns);
    t->n = n;
    if (t->epfd < 0 || !t->conns) {
        snprintf(err, errlen, "out of memory or file descriptors");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) t->conns[i].fd = -1;
    for (size_t i = 0; i < n; i++) {
        mqtt_conn_t *c = &t->conns[i];
        sim_device_t *d = &devs[i];
        c->d = d;
        c->state = MC_IDLE;
        c->win = calloc(t->window, sizeof *c->win);
        buf_t u = BUF_INIT, tp = BUF_INIT;
        buf_printf(&u, "%s/%s/?api-version=" MQTT_API_VERSION "&DeviceClientType=" MQTT_CLIENT_TYPE,
                   d->cs.host, d->cs.device_id);
        buf_printf(&tp, "devices/%s/messages/events/", d->cs.device_id);
        c->username = buf_steal(&u);
        c->topic = buf_steal(&tp);
        if (!c->win || !c->username || !c->topic) { snprintf(err, errlen, "out of memory"); goto fail; }
        if (d->ep->tls && !(c->ctx = tls_for(t, d->ep, o->ca_file, err, errlen))) goto fail;
        d->tp = c;
    }
    return t;
fail:
    sim_tp_mqtt.close(t);
    return NULL;
}

static int mqtt_ready(void *tp, sim_device_t *d)
{
    mqtt_tp_t *t = tp;
    mqtt_conn_t *c = d->tp;
    return c->state == MC_UP && c->win_n < t->window;
}

static void mqtt_send(void *tp, sim_device_t *d, sim_msg_t *m)
{
    mqtt_tp_t *t = tp;
    mqtt_conn_t *c = d->tp;
    buf_t *topic = &t->scratch;
    buf_reset(topic);
    buf_printf(topic, "%s$.mid=%llu&$.ct=application%%2Fjson&$.ce=utf-8&temperatureAlert=%s", c->topic,
               (unsigned long long)m->id, m->alert ? "true" : "false");
    if (topic->oom) {
        sim_run_failed(t->run, d, m, SIM_FAIL_RETRY, "out of memory");
        return;
    }
    int mid = 0;
    int rc = mosquitto_publish(c->mosq, &mid, buf_str(topic), (int)m->len, m->body, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        /* Not written: the connection is unusable (or the message too large for MQTT). */
        if (rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_OVERSIZE_PACKET) {
            sim_run_failed(t->run, d, m, SIM_FAIL_PERMANENT, "message too large for MQTT");
            return;
        }
        c->win[c->win_n++] = m;
        m->tag = mid;
        c->io_rc = rc;
        conn_after_io(t, c);
        return;
    }
    m->tag = mid;
    c->win[c->win_n++] = m;
    conn_sync(t, c);
}

static void mqtt_poll(void *tp, int timeout_ms)
{
    mqtt_tp_t *t = tp;
    struct epoll_event evs[256];
    int n = epoll_wait(t->epfd, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        mqtt_conn_t *c = evs[i].data.ptr;
        if (!c->mosq) continue; /* dropped earlier in this batch */
        uint32_t e = evs[i].events;
        int rc = MOSQ_ERR_SUCCESS;
        if (e & EPOLLOUT) c->tcp_up = 1;
        if (c->state == MC_CONNECTING || (e & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            rc = mosquitto_loop_read(c->mosq, 1);
        if (rc == MOSQ_ERR_SUCCESS && c->mosq && !c->lost && (e & EPOLLOUT) && mosquitto_want_write(c->mosq))
            rc = mosquitto_loop_write(c->mosq, 1);
        c->io_rc = rc;
        if (g_acked_n) conn_handle_acks(t, c);
        conn_after_io(t, c);
    }
}

static void mqtt_tick(void *tp, int64_t now)
{
    mqtt_tp_t *t = tp;
    const sim_opts_t *o = sim_run_opts(t->run);
    int64_t timeout_ns = (int64_t)(o->timeout * 1e9);
    int misc = ++t->tick_misc >= 10; /* keep-alive has 1 s resolution: every 10th tick */
    if (misc) t->tick_misc = 0;
    for (size_t i = 0; i < t->n; i++) {
        mqtt_conn_t *c = &t->conns[i];
        sim_device_t *d = c->d;
        switch (c->state) {
        case MC_IDLE:
        case MC_WAIT:
            if (c->state == MC_WAIT && now < c->retry_at_ns) break;
            if (t->connecting >= MQTT_MAX_CONNECTING) break;
            conn_start(t, c);
            break;
        case MC_CONNECTING:
            if (now - c->since_ns > timeout_ns) conn_lost(t, c, "no CONNACK before the timeout");
            break;
        case MC_UP:
        case MC_DRAINING:
            if (c->win_n > 0) {
                int64_t oldest = now;
                for (size_t j = 0; j < c->win_n; j++)
                    if (c->win[j]->sent_ns < oldest) oldest = c->win[j]->sent_ns;
                if (now - oldest > timeout_ns) {
                    conn_lost(t, c, "no PUBACK before the timeout");
                    break;
                }
            }
            if (c->state == MC_UP && now >= d->token_renew_ns) {
                conn_set_state(t, c, MC_DRAINING); /* stop publishing; wait for the PUBACKs */
            }
            if (c->state == MC_DRAINING) {
                /* Renew within the token's last 20 %: after the PUBACKs, or force it. */
                int64_t limit = (int64_t)o->token_ttl * 100000000LL; /* 10 % of the lifetime */
                if (c->win_n == 0) {
                    mosquitto_disconnect(c->mosq);
                    mosquitto_loop_write(c->mosq, 1);
                    conn_destroy(t, c);
                    sim_run_event(t->run, "MQTT reconnect to renew the SAS token", 0);
                    conn_start(t, c);
                    break;
                }
                if (now - c->since_ns > limit) {
                    conn_lost(t, c, "PUBACKs still missing when the token had to be renewed");
                    break;
                }
            }
            if (misc && c->mosq) {
                c->io_rc = mosquitto_loop_misc(c->mosq);
                conn_after_io(t, c);
            }
            break;
        case MC_DEAD:
            break;
        }
    }
}

static size_t mqtt_connected(void *tp) { return ((mqtt_tp_t *)tp)->up; }

static int mqtt_settled(void *tp)
{
    mqtt_tp_t *t = tp;
    for (size_t i = 0; i < t->n; i++) {
        mc_state_t s = t->conns[i].state;
        if (s != MC_UP && s != MC_DEAD) return 0;
    }
    return 1;
}

static void mqtt_close(void *tp)
{
    mqtt_tp_t *t = tp;
    if (!t) return;
    for (size_t i = 0; t->conns && i < t->n; i++) {
        mqtt_conn_t *c = &t->conns[i];
        if (c->mosq && (c->state == MC_UP || c->state == MC_DRAINING) && c->win_n == 0) {
            mosquitto_disconnect(c->mosq);
            mosquitto_loop_write(c->mosq, 1);
        }
        conn_destroy(t, c);
        if (c->win) conn_return_inflight(t, c, SIM_FAIL_UNCERTAIN, "abandoned");
        free(c->win);
        free(c->username);
        free(c->topic);
        if (c->d) c->d->tp = NULL;
    }
    for (size_t i = 0; i < t->n_tls; i++) SSL_CTX_free(t->tls[i].ctx);
    free(t->tls);
    free(t->conns);
    if (t->epfd >= 0) close(t->epfd);
    buf_free(&t->scratch);
    free(g_acked);
    g_acked = NULL;
    g_acked_n = g_acked_cap = 0;
    free(t);
    mosquitto_lib_cleanup();
}

const sim_tp_ops_t sim_tp_mqtt = {
    .name = "mqtt",
    .open = mqtt_open,
    .ready = mqtt_ready,
    .send = mqtt_send,
    .poll = mqtt_poll,
    .tick = mqtt_tick,
    .connected = mqtt_connected,
    .settled = mqtt_settled,
    .close = mqtt_close,
};
