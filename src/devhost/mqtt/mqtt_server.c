/* mqtt_server.c — the MQTT endpoint's socket side (see mqtt_server.h): listener, the epoll
 * loop, non-blocking TLS reads and writes, packet framing, timers, the completion queue and
 * the device table. The protocol itself is mqtt_session.c's.
 *
 * Memory per idle connection is kept small on purpose: OpenSSL releases its record buffers
 * while idle (SSL_MODE_RELEASE_BUFFERS), reads go through one loop-wide buffer, and a
 * connection's own in/out buffers exist only while a packet is partial or a write is
 * pending. Threading: everything here runs on the loop thread except mqtt_server_publish_done,
 * mqtt_server_disconnect_device, mqtt_server_stats and mqtt_server_stop, which only touch
 * fields under srv->lock or atomics and wake the loop through its eventfd. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "devhost/mqtt/mqtt_internal.h"

#define RBUF_SIZE       (64 * 1024)
#define READS_PER_TURN  16       /* fairness: at most this many SSL_read per connection per turn */
#define ACCEPTS_PER_TURN 64
#define SWEEP_MS        250      /* timer resolution */
#define CLOSE_GRACE_MS  2000     /* a closing connection may take this long to flush */
#define STOP_GRACE_MS   2000     /* on stop, PUBACKs due within this are still sent */
#define TABLE_SIZE      4096     /* device table buckets (a power of two) */
#define OUT_PAUSE_BYTES (256 * 1024) /* a peer that does not read its PUBACKs is not read either */

int64_t mqtt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void kick(mqtt_server_t *s)
{
    uint64_t one = 1;
    ssize_t n = write(s->efd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, the loop will wake */
}

/* ---- device table --------------------------------------------------------------------- */

static size_t bucket(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 16777619u;
    return h & (TABLE_SIZE - 1);
}

static void table_remove(mqtt_conn_t *c)
{
    if (!c->device_id || c->state != CONN_ACTIVE) return;
    for (mqtt_conn_t **pp = &c->srv->table[bucket(c->device_id)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == c) {
            *pp = c->hnext;
            c->hnext = NULL;
            return;
        }
    }
}

static mqtt_conn_t *table_find(mqtt_server_t *s, const char *id)
{
    for (mqtt_conn_t *c = s->table[bucket(id)]; c; c = c->hnext)
        if (strcmp(c->device_id, id) == 0) return c;
    return NULL;
}

int mqtt_conn_claim_device(mqtt_conn_t *c)
{
    mqtt_server_t *s = c->srv;
    mqtt_conn_t *old = table_find(s, c->device_id);
    if (old && old != c)
        mqtt_conn_close(old, LOG_INFO, "mqtt: device %s (%s) replaced by its new connection from %s",
                        old->device_id, old->peer, c->peer);
    size_t b = bucket(c->device_id);
    c->hnext = s->table[b];
    s->table[b] = c;
    return 0;
}

/* ---- connection I/O --------------------------------------------------------------------- */

/* 1 when c may be read now: in session, not paused by messages in flight, and not sitting
 * on a backlog of unwritten PUBACKs (a peer that does not read is not read either). */
static int can_read(const mqtt_conn_t *c)
{
    return c->fd >= 0 && !c->paused && (c->state == CONN_WAIT_CONNECT || c->state == CONN_ACTIVE) &&
           c->out.len - c->out_off <= OUT_PAUSE_BYTES;
}

static void update_events(mqtt_conn_t *c)
{
    if (c->fd < 0) return;
    uint32_t want = 0;
    int out_pending = c->out_off < c->out.len;
    if (c->state == CONN_HANDSHAKE) want = EPOLLIN | (c->read_wants_write ? EPOLLOUT : 0);
    else if (c->state == CONN_CLOSING) want = out_pending ? EPOLLOUT : 0;
    else want = (can_read(c) ? EPOLLIN : 0) | (out_pending || c->read_wants_write ? EPOLLOUT : 0);
    if (want == c->events) return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(c->srv->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->events = want;
}

static void make_ready(mqtt_conn_t *c)
{
    if (c->in_ready || c->fd < 0) return;
    c->in_ready = 1;
    c->next_ready = c->srv->ready;
    c->srv->ready = c;
}

/* Leave the session: stop counting it, free its device id slot, settle its Will and its
 * messages in flight. Nothing more is read afterwards. */
static void begin_close(mqtt_conn_t *c)
{
    mqtt_server_t *s = c->srv;
    if (c->state == CONN_ACTIVE) atomic_fetch_sub(&s->st_connections, 1);
    table_remove(c);
    c->state = CONN_CLOSING;
    mqtt_session_end(c, !s->stopping);
    buf_free(&c->in);
    c->in_off = 0;
}

/* Close the socket now and queue c for freeing at the end of this loop turn. */
static void destroy(mqtt_conn_t *c)
{
    mqtt_server_t *s = c->srv;
    if (c->fd < 0) return;
    if (c->state != CONN_CLOSING) begin_close(c);
    epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
    if (c->prev) c->prev->next = c->next;
    else s->all = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->in_ready) { /* it is freed at the end of this turn: off the ready list too */
        for (mqtt_conn_t **pp = &s->ready; *pp; pp = &(*pp)->next_ready) {
            if (*pp == c) {
                *pp = c->next_ready;
                break;
            }
        }
        c->in_ready = 0;
    }
    c->next = s->dead;
    s->dead = c;
}

static void conn_free(mqtt_conn_t *c)
{
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->will_topic);
    buf_free(&c->will_payload);
    free(c->device_id);
    free(c);
}

/* The connection broke under us (reset, EOF, TLS error). */
static void lost(mqtt_conn_t *c, const char *why)
{
    if (c->state == CONN_ACTIVE)
        mqtt_conn_close(c, LOG_INFO, "mqtt: device %s (%s) disconnected: %s", c->device_id, c->peer, why);
    else if (c->state != CONN_CLOSING)
        log_debug(NULL, "mqtt: connection from %s closed before CONNECT: %s", c->peer, why);
    destroy(c);
}

static void flush(mqtt_conn_t *c)
{
    while (c->fd >= 0 && c->out_off < c->out.len) {
        size_t w = 0;
        ERR_clear_error();
        int r = SSL_write_ex(c->ssl, c->out.data + c->out_off, c->out.len - c->out_off, &w);
        if (r == 1) {
            c->out_off += w;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return;
        lost(c, "write failed");
        return;
    }
    if (c->fd >= 0) {
        int was_blocked = c->out.len > OUT_PAUSE_BYTES;
        buf_free(&c->out); /* idle connections keep no buffer */
        c->out_off = 0;
        if (was_blocked && can_read(c)) make_ready(c);
        if (c->state == CONN_CLOSING) {
            SSL_shutdown(c->ssl); /* best effort close_notify */
            destroy(c);
        }
    }
}

void mqtt_conn_close(mqtt_conn_t *c, log_level_t level, const char *fmt, ...)
{
    if (c->state == CONN_CLOSING || c->fd < 0) return;
    if (fmt) {
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        log_msg(NULL, level, "%s", line);
    }
    begin_close(c);
    c->deadline_ms = mqtt_now_ms() + CLOSE_GRACE_MS;
    flush(c);
    update_events(c);
}

/* Parse and handle every whole packet of data[0..n) (appended to what c->in holds); keep
 * the rest. Stops early when c pauses or closes. */
static void feed(mqtt_conn_t *c, const unsigned char *data, size_t n)
{
    const unsigned char *p = data;
    size_t len = n;
    int from_in = c->in.len > c->in_off;
    if (from_in) {
        if (n && buf_append(&c->in, data, n) != 0) {
            mqtt_conn_close(c, LOG_ERROR, "mqtt: out of memory reading from %s", c->peer);
            return;
        }
        p = (const unsigned char *)c->in.data + c->in_off;
        len = c->in.len - c->in_off;
    }
    size_t off = 0;
    while (off < len && can_read(c)) {
        mqtt_packet_t pkt;
        size_t used;
        const char *why;
        mqtt_parse_result_t r = mqtt_parse(p + off, len - off, MQTT_MAX_PACKET, &pkt, &used, &why);
        if (r == MQTT_PARSE_MORE) break;
        if (r != MQTT_PARSE_OK) {
            atomic_fetch_add(&c->srv->st_protocol_errors, 1);
            mqtt_conn_close(c, LOG_WARN, "mqtt: %s (%s) sent a malformed packet (%s); connection closed",
                            c->device_id ? c->device_id : "client", c->peer, why);
            return;
        }
        off += used;
        if (c->state == CONN_ACTIVE) c->deadline_ms = mqtt_now_ms() + c->keepalive_ms;
        if (mqtt_session_packet(c, &pkt) != 0) return;
    }
    if (c->state == CONN_CLOSING || c->fd < 0) return;
    /* Keep the unprocessed tail (a partial packet, or whole ones left while paused). */
    if (from_in) {
        c->in_off += off;
        if (c->in_off == c->in.len) {
            buf_free(&c->in);
            c->in_off = 0;
        } else if (c->in_off > 0) {
            memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
            c->in.len -= c->in_off;
            c->in_off = 0;
        }
    } else if (off < len && buf_append(&c->in, p + off, len - off) != 0) {
        mqtt_conn_close(c, LOG_ERROR, "mqtt: out of memory reading from %s", c->peer);
    }
}

static void do_handshake(mqtt_conn_t *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = CONN_WAIT_CONNECT;
        c->read_wants_write = 0;
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->read_wants_write = e == SSL_ERROR_WANT_WRITE;
        return;
    }
    unsigned long oe = ERR_peek_error();
    char reason[200] = "connection closed during the handshake";
    if (oe) ERR_error_string_n(oe, reason, sizeof reason);
    /* Say what usually causes it: a client that does not trust the CA, or one not using TLS. */
    const char *ca = c->srv->opts.ca_path ? c->srv->opts.ca_path : "devhost's ca.pem";
    int why = ERR_GET_REASON(oe);
    if (why == SSL_R_TLSV1_ALERT_UNKNOWN_CA || why == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
        why == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN || why == SSL_R_TLSV1_ALERT_DECRYPT_ERROR)
        log_info(NULL, "mqtt: TLS handshake with %s failed: %s; the client does not trust devhost's "
                 "CA: give it %s (docs/mqtt.md)", c->peer, reason, ca);
    else if (why == SSL_R_WRONG_VERSION_NUMBER || why == SSL_R_HTTP_REQUEST || why == SSL_R_UNSUPPORTED_PROTOCOL)
        log_info(NULL, "mqtt: TLS handshake with %s failed: %s; the client is not speaking TLS (devices "
                 "connect with mqtts and trust %s)", c->peer, reason, ca);
    else
        log_info(NULL, "mqtt: TLS handshake with %s failed: %s", c->peer, reason);
    destroy(c);
}

/* Why a read ended the connection, for the disconnect line. */
static const char *read_error_text(int ssl_error)
{
    if (ssl_error == SSL_ERROR_ZERO_RETURN) return "the device closed the connection without DISCONNECT";
    unsigned long oe = ERR_peek_error();
    if ((ssl_error == SSL_ERROR_SYSCALL && errno == 0 && !oe) ||
        (ssl_error == SSL_ERROR_SSL && ERR_GET_REASON(oe) == SSL_R_UNEXPECTED_EOF_WHILE_READING))
        return "the connection was closed without DISCONNECT";
    if (ssl_error == SSL_ERROR_SYSCALL && errno == ECONNRESET) return "connection reset";
    return "connection lost";
}

static void do_read(mqtt_conn_t *c)
{
    mqtt_server_t *s = c->srv;
    int turns = 0;
    while (can_read(c)) {
        if (turns++ == READS_PER_TURN) {
            make_ready(c); /* more may be waiting: come back after the others had a turn */
            return;
        }
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read_ex(c->ssl, s->rbuf, RBUF_SIZE, &n);
        if (r == 1) {
            c->read_wants_write = 0;
            feed(c, s->rbuf, n);
            /* A short read with nothing buffered in OpenSSL drained the socket: skip the read
             * that would only say EAGAIN (level-triggered epoll reports anything newer). */
            if (n < RBUF_SIZE && c->fd >= 0 && !SSL_has_pending(c->ssl)) return;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) return;
        if (e == SSL_ERROR_WANT_WRITE) {
            c->read_wants_write = 1;
            return;
        }
        lost(c, read_error_text(e));
        return;
    }
}

static void conn_io(mqtt_conn_t *c, uint32_t events)
{
    if (c->fd < 0) return;
    if (c->state == CONN_HANDSHAKE) {
        do_handshake(c);
        if (c->fd < 0 || c->state == CONN_HANDSHAKE) {
            update_events(c);
            return;
        }
    }
    if (events & (EPOLLERR | EPOLLHUP)) {
        /* Reset or fully closed: read what is left (when allowed), then let go. */
        if (c->state != CONN_CLOSING) do_read(c);
        if (c->fd >= 0) lost(c, "connection lost");
        return;
    }
    flush(c);
    do_read(c);
    flush(c);
    update_events(c);
}

/* ---- accepting ------------------------------------------------------------------------- */

static void accept_all(mqtt_server_t *s)
{
    for (int i = 0; i < ACCEPTS_PER_TURN && !s->stopping; i++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(s->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn(NULL, "mqtt: cannot accept more connections (%s); retrying shortly",
                         strerror(errno));
                epoll_ctl(s->ep, EPOLL_CTL_DEL, s->lfd, NULL);
                s->listen_paused = 1;
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* PUBACKs go at once */
        mqtt_conn_t *c = calloc(1, sizeof *c);
        SSL *ssl = c ? SSL_new(s->opts.ssl_ctx) : NULL;
        if (!ssl || SSL_set_fd(ssl, fd) != 1) {
            log_error(NULL, "mqtt: out of memory accepting a connection");
            SSL_free(ssl);
            free(c);
            close(fd);
            continue;
        }
        SSL_set_accept_state(ssl);
        c->srv = s;
        c->fd = fd;
        c->ssl = ssl;
        c->state = CONN_HANDSHAKE;
        c->deadline_ms = mqtt_now_ms() + s->opts.connect_timeout_ms;
        char host[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            port = ntohs(in->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            port = ntohs(in6->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            log_error(NULL, "mqtt: cannot watch a new connection: %s", strerror(errno));
            SSL_free(ssl);
            free(c);
            close(fd);
            continue;
        }
        c->events = EPOLLIN;
        c->next = s->all;
        if (s->all) s->all->prev = c;
        s->all = c;
        atomic_fetch_add(&s->st_accepted, 1);
    }
}

/* ---- completions, kicks, timers --------------------------------------------------------- */

void mqtt_server_publish_done(void *token, mqtt_pub_status_t status)
{
    mqtt_pending_t *p = token;
    mqtt_server_t *s = p->srv;
    pthread_mutex_lock(&s->lock);
    p->status = status;
    p->next_done = NULL;
    int was_empty = s->done_head == NULL;
    if (s->done_tail) s->done_tail->next_done = p;
    else s->done_head = p;
    s->done_tail = p;
    pthread_mutex_unlock(&s->lock);
    if (was_empty) kick(s);
}

static void process_done(mqtt_server_t *s)
{
    pthread_mutex_lock(&s->lock);
    mqtt_pending_t *p = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    while (p) {
        mqtt_pending_t *next = p->next_done;
        p->done = 1;
        s->outstanding--;
        atomic_fetch_add(p->status == MQTT_PUB_OK ? &s->st_acked : &s->st_failed, 1);
        mqtt_conn_t *c = p->conn;
        if (!c) {
            free(p); /* its connection is gone, or it was a Will */
        } else {
            int was_paused = c->paused;
            mqtt_session_drain(c); /* frees p once it reaches the head */
            if (c->fd >= 0) {
                if (was_paused && !c->paused) make_ready(c);
                flush(c);
                update_events(c);
            }
        }
        p = next;
    }
}

static void process_kicks(mqtt_server_t *s)
{
    pthread_mutex_lock(&s->lock);
    char **ids = s->kick;
    size_t n = s->nkick;
    s->kick = NULL;
    s->nkick = 0;
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        mqtt_conn_t *c = table_find(s, ids[i]);
        if (c) mqtt_conn_close(c, LOG_INFO, "mqtt: device %s (%s) disconnected: its registration changed",
                               c->device_id, c->peer);
        free(ids[i]);
    }
    free(ids);
}

static void process_ready(mqtt_server_t *s)
{
    mqtt_conn_t *c = s->ready;
    s->ready = NULL;
    while (c) {
        mqtt_conn_t *next = c->next_ready;
        c->in_ready = 0;
        if (can_read(c)) {
            if (c->in.len > c->in_off) feed(c, NULL, 0);
            if (can_read(c)) {
                do_read(c);
                if (can_read(c) && !c->in_ready && SSL_has_pending(c->ssl)) make_ready(c);
            }
            if (c->fd >= 0) {
                flush(c);
                update_events(c);
            }
        }
        c = next;
    }
}

static void sweep(mqtt_server_t *s, int64_t now)
{
    mqtt_conn_t *next;
    for (mqtt_conn_t *c = s->all; c; c = next) {
        next = c->next;
        if (c->state == CONN_CLOSING) {
            if (now >= c->deadline_ms) destroy(c);
        } else if (c->expires_ms && now >= c->expires_ms) {
            mqtt_conn_close(c, LOG_INFO, "mqtt: device %s (%s) disconnected: its SAS token expired "
                            "(SDKs reconnect with a new one)", c->device_id, c->peer);
        } else if (now >= c->deadline_ms) {
            if (c->state == CONN_ACTIVE)
                mqtt_conn_close(c, LOG_INFO, "mqtt: device %s (%s) disconnected: nothing received for "
                                "%u ms (1.5 x its keep-alive)", c->device_id, c->peer, c->keepalive_ms);
            else
                mqtt_conn_close(c, LOG_INFO, "mqtt: connection from %s closed: no %s within %d ms",
                                c->peer, c->state == CONN_HANDSHAKE ? "TLS handshake" : "CONNECT",
                                s->opts.connect_timeout_ms);
            if (c->fd >= 0 && c->state == CONN_CLOSING && c->out_off >= c->out.len) destroy(c);
        }
    }
    if (s->listen_paused && !s->stopping) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->lfd};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev) == 0) s->listen_paused = 0;
    }
}

static void free_dead(mqtt_server_t *s)
{
    while (s->dead) {
        mqtt_conn_t *c = s->dead;
        s->dead = c->next;
        conn_free(c);
    }
}

/* ---- the loop ----------------------------------------------------------------------------- */

static int all_settled(mqtt_server_t *s)
{
    for (mqtt_conn_t *c = s->all; c; c = c->next)
        if (c->npending > 0 || c->out_off < c->out.len) return 0;
    return 1;
}

static void begin_stop(mqtt_server_t *s)
{
    s->stopping = 1;
    epoll_ctl(s->ep, EPOLL_CTL_DEL, s->lfd, NULL);
    close(s->lfd);
    s->lfd = -1;
    for (mqtt_conn_t *c = s->all; c; c = c->next) {
        c->paused = 1; /* read nothing more; PUBACKs still go out */
        update_events(c);
    }
}

static void *loop(void *arg)
{
    mqtt_server_t *s = arg;
    struct epoll_event evs[256];
    int64_t next_sweep = mqtt_now_ms() + SWEEP_MS, stop_deadline = 0;
    for (;;) {
        int timeout = s->ready ? 0 : SWEEP_MS;
        int n = epoll_wait(s->ep, evs, 256, timeout);
        if (n < 0 && errno != EINTR) {
            log_error(NULL, "mqtt: epoll_wait failed: %s", strerror(errno));
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &s->lfd) accept_all(s);
            else if (ptr == &s->efd) {
                uint64_t v;
                ssize_t r = read(s->efd, &v, sizeof v);
                (void)r;
            } else conn_io(ptr, evs[i].events);
        }
        process_done(s);
        process_kicks(s);
        process_ready(s);
        int64_t now = mqtt_now_ms();
        if (now >= next_sweep) {
            sweep(s, now);
            next_sweep = now + SWEEP_MS;
        }
        free_dead(s);
        pthread_mutex_lock(&s->lock);
        int stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (stop && !s->stopping) {
            stop_deadline = now + STOP_GRACE_MS;
            begin_stop(s);
        }
        if (s->stopping && s->all && (all_settled(s) || now >= stop_deadline)) {
            while (s->all) destroy(s->all);
            free_dead(s);
        }
        if (s->stopping && !s->all && s->outstanding == 0) break;
    }
    return NULL;
}

/* ---- public API ---------------------------------------------------------------------------- */

void mqtt_server_opts_default(mqtt_server_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8883;
    o->connect_timeout_ms = 10000;
    o->max_inflight = 256;
    o->max_keepalive_s = 1767;
}

static int listen_on(mqtt_server_t *s, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", s->opts.port);
    int rc = getaddrinfo(s->host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve the MQTT listen address %s: %s", s->host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "cannot listen for MQTT on %s:%d: %s%s", s->host, s->opts.port,
                 strerror(errno), errno == EADDRINUSE ? " (choose another with --mqtt-port)" : "");
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                             : ((struct sockaddr_in *)&sa)->sin_port);
    s->lfd = fd;
    return 0;
}

/* Thousands of device connections need thousands of descriptors. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void server_free(mqtt_server_t *s)
{
    if (s->lfd >= 0) close(s->lfd);
    if (s->ep >= 0) close(s->ep);
    if (s->efd >= 0) close(s->efd);
    pthread_mutex_destroy(&s->lock);
    for (size_t i = 0; i < s->nkick; i++) free(s->kick[i]);
    free(s->kick);
    free(s->table);
    free(s->rbuf);
    free(s->scratch);
    free(s->host);
    free(s->hub_host);
    free(s->ca_path);
    free(s);
}

mqtt_server_t *mqtt_server_start(const mqtt_server_opts_t *o, char *err, size_t errlen)
{
    if (!o->hub_host || !*o->hub_host || !o->ssl_ctx || !o->backend.authenticate || !o->backend.publish) {
        snprintf(err, errlen, "mqtt: hub host, TLS context and backend are required");
        return NULL;
    }
    mqtt_server_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->opts = *o;
    s->lfd = s->ep = s->efd = -1;
    pthread_mutex_init(&s->lock, NULL);
    if (s->opts.connect_timeout_ms <= 0) s->opts.connect_timeout_ms = 10000;
    if (s->opts.max_inflight == 0) s->opts.max_inflight = 256;
    if (s->opts.max_keepalive_s == 0) s->opts.max_keepalive_s = 1767;
    s->host = strdup(o->host ? o->host : "127.0.0.1");
    s->hub_host = strdup(o->hub_host);
    s->ca_path = o->ca_path ? strdup(o->ca_path) : NULL;
    s->opts.ca_path = s->ca_path;
    s->table = calloc(TABLE_SIZE, sizeof *s->table);
    s->rbuf = malloc(RBUF_SIZE);
    s->scratch_len = 2 * 65536 + 2; /* a topic's property bag is under 64 KiB */
    s->scratch = malloc(s->scratch_len);
    if (!s->host || !s->hub_host || (o->ca_path && !s->ca_path) || !s->table || !s->rbuf || !s->scratch) {
        snprintf(err, errlen, "out of memory");
        server_free(s);
        return NULL;
    }
    raise_nofile();
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    if (listen_on(s, err, errlen) != 0) {
        server_free(s);
        return NULL;
    }
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &s->lfd};
    struct epoll_event eev = {.events = EPOLLIN, .data.ptr = &s->efd};
    if (s->ep < 0 || s->efd < 0 || epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &lev) != 0 ||
        epoll_ctl(s->ep, EPOLL_CTL_ADD, s->efd, &eev) != 0) {
        snprintf(err, errlen, "cannot set up the MQTT event loop: %s", strerror(errno));
        server_free(s);
        return NULL;
    }
    if (pthread_create(&s->th, NULL, loop, s) != 0) {
        snprintf(err, errlen, "cannot start the MQTT thread");
        server_free(s);
        return NULL;
    }
    return s;
}

int mqtt_server_port(const mqtt_server_t *s)
{
    return s->port;
}

void mqtt_server_disconnect_device(mqtt_server_t *s, const char *device_id)
{
    char *id = strdup(device_id);
    pthread_mutex_lock(&s->lock);
    char **k = id ? realloc(s->kick, (s->nkick + 1) * sizeof *k) : NULL;
    if (k) {
        s->kick = k;
        s->kick[s->nkick++] = id;
        id = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (id) log_error(NULL, "mqtt: out of memory: device %s stays connected", device_id);
    free(id);
    kick(s);
}

void mqtt_server_stats(mqtt_server_t *s, mqtt_server_stats_t *st)
{
    st->connections = atomic_load(&s->st_connections);
    st->accepted = atomic_load(&s->st_accepted);
    st->refused = atomic_load(&s->st_refused);
    st->messages = atomic_load(&s->st_messages);
    st->acked = atomic_load(&s->st_acked);
    st->failed = atomic_load(&s->st_failed);
    st->protocol_errors = atomic_load(&s->st_protocol_errors);
}

void mqtt_server_stop(mqtt_server_t *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_mutex_unlock(&s->lock);
    kick(s);
    pthread_join(s->th, NULL);
    server_free(s);
}
