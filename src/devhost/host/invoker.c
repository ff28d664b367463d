/* invoker.c — invocations POSTed to the handler over kept-alive connections (see invoker.h).
 *
 * A small blocking HTTP/1.1 client instead of libcurl: the handler is on loopback and every
 * HTTP request through devhost costs one invocation, so the per-request work is kept to one
 * sendmsg and the recv calls of the reply (libcurl's multi machinery, option resets and polls
 * cost more than the rest of devhost's request path together). Replies may carry
 * Content-Length, be chunked, or end with the connection. */
#define _GNU_SOURCE /* MSG_NOSIGNAL with sendmsg on iovecs */
#include "devhost/host/invoker.h"

#include "devhost/host/common.h"
#include "devhost/host/supervisor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define REFUSED_WAIT_MS 2000          /* how long a refused connection waits for the supervisor to notice */
#define NO_TIMEOUT_MS (24LL * 3600 * 1000)
#define MAX_IDLE 64
#define MAX_INUSE 4096
#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_REPLY_BYTES (256u * 1024u * 1024u)

typedef struct {
    int      fd;
    int      port;
    int64_t  idle_since_ms;
} conn_t;

/* A connection idle for longer than this is checked before reuse (the handler may have closed
 * it, e.g. Node's 5 s keep-alive timeout); one used more recently is not, which saves a system
 * call per invocation under load. A handler that died is seen by the supervisor, and its
 * restart listens on another port. */
#define CHECK_IDLE_MS 500

struct dh_invoker {
    struct dh_supervisor *sup;
    int64_t               timeout_ms;
    const volatile int   *stopping;
    pthread_mutex_t       lock;
    conn_t                idle[MAX_IDLE];
    size_t                nidle;
    int                   inuse[MAX_INUSE];  /* fds being used, for dh_invoker_abort */
    size_t                ninuse;
    int                   aborted;
};

dh_invoker_t *dh_invoker_new(struct dh_supervisor *sup, int64_t timeout_ms, const volatile int *stopping)
{
    dh_invoker_t *iv = calloc(1, sizeof *iv);
    if (!iv) return NULL;
    iv->sup = sup;
    iv->timeout_ms = timeout_ms > 0 ? timeout_ms : NO_TIMEOUT_MS;
    iv->stopping = stopping;
    if (pthread_mutex_init(&iv->lock, NULL) != 0) { free(iv); return NULL; }
    return iv;
}

void dh_invoker_free(dh_invoker_t *iv)
{
    if (!iv) return;
    for (size_t i = 0; i < iv->nidle; i++) close(iv->idle[i].fd);
    pthread_mutex_destroy(&iv->lock);
    free(iv);
}

void dh_invoker_abort(dh_invoker_t *iv)
{
    if (!iv) return;
    pthread_mutex_lock(&iv->lock);
    iv->aborted = 1;
    for (size_t i = 0; i < iv->ninuse; i++) shutdown(iv->inuse[i], SHUT_RDWR);
    pthread_mutex_unlock(&iv->lock);
}

static void track(dh_invoker_t *iv, int fd, int add)
{
    pthread_mutex_lock(&iv->lock);
    if (add) {
        if (iv->ninuse < MAX_INUSE) iv->inuse[iv->ninuse++] = fd;
        if (iv->aborted) shutdown(fd, SHUT_RDWR);
    } else {
        for (size_t i = 0; i < iv->ninuse; i++)
            if (iv->inuse[i] == fd) { iv->inuse[i] = iv->inuse[--iv->ninuse]; break; }
    }
    pthread_mutex_unlock(&iv->lock);
}

/* An idle connection to port that the peer has not closed, or -1. */
static int take_idle(dh_invoker_t *iv, int port)
{
    for (;;) {
        int fd = -1;
        int64_t since = 0;
        pthread_mutex_lock(&iv->lock);
        for (size_t i = iv->nidle; i-- > 0;) {
            if (iv->idle[i].port == port) {
                fd = iv->idle[i].fd;
                since = iv->idle[i].idle_since_ms;
                iv->idle[i] = iv->idle[--iv->nidle];
                break;
            }
        }
        pthread_mutex_unlock(&iv->lock);
        if (fd < 0) return -1;
        if (dh_now_ms() - since < CHECK_IDLE_MS) return fd;
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return fd; /* alive and quiet */
        close(fd); /* closed by the handler (or unexpected bytes): never reuse it */
    }
}

static void give_back(dh_invoker_t *iv, int fd, int port, int reuse)
{
    if (reuse) {
        pthread_mutex_lock(&iv->lock);
        if (iv->nidle < MAX_IDLE && !iv->aborted) {
            iv->idle[iv->nidle++] = (conn_t){fd, port, dh_now_ms()};
            fd = -1;
        }
        pthread_mutex_unlock(&iv->lock);
    }
    if (fd >= 0) close(fd);
}

/* A new connection to 127.0.0.1:port; -1 with *refused set when nothing listens. */
static int connect_to(const dh_invoker_t *iv, int port, int *refused)
{
    int fd = dh_loopback_connect(port);
    *refused = fd < 0 && errno == ECONNREFUSED;
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int64_t t = iv->timeout_ms;
    struct timeval tv = {(time_t)(t / 1000), (suseconds_t)((t % 1000) * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* ---- the reply ------------------------------------------------------------------------------ */

typedef struct {
    int    fd;
    char  *buf;     /* bytes received and not consumed */
    size_t len, cap, off;
} reader_t;

/* Receive more bytes. Returns >0, 0 at end of stream, -1 on error (errno). */
static ssize_t fill(reader_t *r)
{
    if (r->off && r->off == r->len) r->off = r->len = 0;
    if (r->len == r->cap) {
        if (r->off) {
            memmove(r->buf, r->buf + r->off, r->len - r->off);
            r->len -= r->off;
            r->off = 0;
        } else {
            size_t cap = r->cap * 2;
            char *nb = realloc(r->buf, cap);
            if (!nb) { errno = ENOMEM; return -1; }
            r->buf = nb;
            r->cap = cap;
        }
    }
    for (;;) {
        ssize_t n = recv(r->fd, r->buf + r->len, r->cap - r->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n > 0) r->len += (size_t)n;
        return n;
    }
}

/* Copy n body bytes into ans (reading as needed). Returns 0 or -1. */
static int take_bytes(reader_t *r, size_t n, buf_t *out)
{
    while (n) {
        if (r->off == r->len && fill(r) <= 0) return -1;
        size_t k = r->len - r->off < n ? r->len - r->off : n;
        if (buf_append(out, r->buf + r->off, k) != 0) return -1;
        r->off += k;
        n -= k;
    }
    return 0;
}

/* One CRLF-terminated line (without the CRLF) of at most 1 KiB, for chunk sizes. */
static int take_line(reader_t *r, char *line, size_t linelen)
{
    for (;;) {
        char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
        if (nl) {
            size_t n = (size_t)(nl - (r->buf + r->off));
            if (n && r->buf[r->off + n - 1] == '\r') n--;
            if (n >= linelen) return -1;
            memcpy(line, r->buf + r->off, n);
            line[n] = '\0';
            r->off = (size_t)(nl - r->buf) + 1;
            return 0;
        }
        if (r->len - r->off > 1024 || fill(r) <= 0) return -1;
    }
}

/* "HTTP/1.<minor> <status> ..." → minor and status (100-999). Returns 0, or -1 when the line is
 * not an HTTP/1.x status line. (By hand: sscanf costs more than the rest of the reply's
 * parsing.) */
static int status_line(const char *h, int *minor, int *status)
{
    if (strncmp(h, "HTTP/1.", 7) != 0 || h[7] < '0' || h[7] > '9') return -1;
    *minor = h[7] - '0';
    const char *p = h + 8;
    if (*p != ' ') return -1;
    while (*p == ' ') p++;
    int v = 0, digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++) v = v * 10 + (*p - '0');
    if (digits != 3 || (*p >= '0' && *p <= '9')) return -1;
    *status = v;
    return v >= 100 ? 0 : -1;
}

typedef enum { RR_OK = 0, RR_TRANSPORT, RR_PROTOCOL, RR_TIMEOUT, RR_TOO_BIG } read_rc_t;

/* Each thread keeps its receive buffer (16 KiB, or what a larger reply grew it to, up to
 * 256 KiB) instead of allocating one per reply. */
static _Thread_local char *tl_buf;
static _Thread_local size_t tl_cap;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static void tl_init(void) { pthread_key_create(&tl_key, free); }

/* Read one reply. *keep: the connection may be reused; *got: some reply bytes arrived. */
static read_rc_t read_reply(int fd, dh_answer_t *ans, int *keep, int *got)
{
    pthread_once(&tl_once, tl_init);
    if (!tl_buf) {
        tl_buf = malloc(16384);
        tl_cap = tl_buf ? 16384 : 0;
        pthread_setspecific(tl_key, tl_buf); /* freed when the thread ends */
    }
    reader_t r = {fd, tl_buf, 0, tl_cap, 0};
    if (!r.buf) return RR_TRANSPORT;
    read_rc_t rc = RR_PROTOCOL;
    *keep = 0;
    for (;;) {
        /* Headers (skipping any 1xx interim replies). */
        char *end;
        while (!(end = memmem(r.buf + r.off, r.len - r.off, "\r\n\r\n", 4))) {
            if (r.len - r.off > MAX_HEADER_BYTES) goto out;
            ssize_t n = fill(&r);
            if (n <= 0) { rc = (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ? RR_TIMEOUT : RR_TRANSPORT; goto out; }
        }
        char *h = r.buf + r.off;
        *end = '\0';
        r.off = (size_t)(end - r.buf) + 4;
        int minor = 0, status = 0;
        if (status_line(h, &minor, &status) != 0) goto out;
        if (status < 200) continue;
        ans->status = status;
        long long clen = -1;
        int chunked = 0, close_after = minor == 0;
        for (char *line = strstr(h, "\r\n"); line; line = strstr(line, "\r\n")) {
            line += 2;
            char *colon = strchr(line, ':');
            char *eol = strstr(line, "\r\n");
            if (!colon || (eol && colon > eol)) continue;
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            size_t vl = eol ? (size_t)(eol - v) : strlen(v);
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
            size_t nl = (size_t)(colon - line);
            if (nl == 14 && strncasecmp(line, "Content-Length", 14) == 0) clen = strtoll(v, NULL, 10);
            else if (nl == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) chunked = vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0;
            else if (nl == 10 && strncasecmp(line, "Connection", 10) == 0) {
                if (vl == 5 && strncasecmp(v, "close", 5) == 0) close_after = 1;
                else if (vl == 10 && strncasecmp(v, "keep-alive", 10) == 0) close_after = 0;
            } else if (nl == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
                size_t k = vl < sizeof ans->content_type - 1 ? vl : sizeof ans->content_type - 1;
                memcpy(ans->content_type, v, k);
                ans->content_type[k] = '\0';
            }
        }
        if (chunked) {
            for (;;) {
                char line[1100];
                if (take_line(&r, line, sizeof line) != 0) { rc = RR_TRANSPORT; goto out; }
                char *e;
                unsigned long long n = strtoull(line, &e, 16);
                if (e == line) goto out;
                if (n == 0) break;
                if (ans->body.len + n > MAX_REPLY_BYTES) { rc = RR_TOO_BIG; goto out; }
                if (take_bytes(&r, (size_t)n, &ans->body) != 0 || take_line(&r, line, sizeof line) != 0 || line[0]) {
                    rc = RR_TRANSPORT;
                    goto out;
                }
            }
            char line[1100];
            do { /* trailers, until the empty line */
                if (take_line(&r, line, sizeof line) != 0) { rc = RR_TRANSPORT; goto out; }
            } while (line[0]);
        } else if (clen >= 0) {
            if ((unsigned long long)clen > MAX_REPLY_BYTES) { rc = RR_TOO_BIG; goto out; }
            if (take_bytes(&r, (size_t)clen, &ans->body) != 0) { rc = RR_TRANSPORT; goto out; }
        } else if (status != 204 && status != 304) {
            /* No length: the body ends with the connection. */
            buf_append(&ans->body, r.buf + r.off, r.len - r.off);
            r.off = r.len;
            for (;;) {
                ssize_t n = fill(&r);
                if (n == 0) break;
                if (n < 0) { rc = RR_TRANSPORT; goto out; }
                if (ans->body.len + (size_t)n > MAX_REPLY_BYTES) { rc = RR_TOO_BIG; goto out; }
                buf_append(&ans->body, r.buf + r.off, r.len - r.off);
                r.off = r.len;
            }
            close_after = 1;
        }
        *keep = !close_after && r.off == r.len; /* nothing unexpected left over */
        rc = ans->body.oom ? RR_TRANSPORT : RR_OK;
        goto out;
    }
out:
    *got = r.len > 0 || ans->status != 0;
    if (r.cap <= 256 * 1024) {
        tl_buf = r.buf;
        tl_cap = r.cap;
    } else {
        free(r.buf);
        tl_buf = NULL;
        tl_cap = 0;
    }
    pthread_setspecific(tl_key, tl_buf);
    return rc;
}

/* ---- posting ------------------------------------------------------------------------------- */

/* Send everything. Returns 0, or -1 (errno); *sent_any tells whether any byte left. */
static int send_all(int fd, struct iovec *iov, int n, int *sent_any)
{
    while (n > 0) {
        struct msghdr m = {0};
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w > 0) *sent_any = 1;
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) { left -= iov->iov_len; iov++; n--; }
        if (n > 0) { iov->iov_base = (char *)iov->iov_base + left; iov->iov_len -= left; }
    }
    return 0;
}

int dh_invoker_post(dh_invoker_t *iv, const char *function, const char *invocation_id, const char *body, size_t len,
                    dh_answer_t *ans, char *err, size_t errlen)
{
    memset(ans, 0, sizeof *ans);
    int fresh_only = 0, delivered_maybe = 0, port = 0;
    unsigned gen = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (iv->stopping && *iv->stopping) { snprintf(err, errlen, "devhost is stopping"); return -1; }
        /* A retry after a dead kept-alive connection goes to the same handler, as HttpClient's
         * does: never to a restarted one, which would run a request the old one may have run. */
        int wr = fresh_only ? 0 : dh_supervisor_wait_ready(iv->sup, DH_READY_TIMEOUT_MS, &port, &gen);
        if (wr != 0) {
            dh_handler_state_t st = dh_supervisor_state(iv->sup);
            snprintf(err, errlen, wr > 0 ? "the handler did not become ready in time" :
                     st == DH_HANDLER_EXITED ? "the handler exited (code 0) and is not restarted" :
                     st == DH_HANDLER_FAILED ? "the handler failed too often and was not restarted" :
                     "the handler is not running (devhost is stopping)");
            return -1;
        }
        char head[768];
        int hl = snprintf(head, sizeof head,
                          "POST /%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                          "Content-Type: application/json; charset=utf-8\r\n"
                          "X-Azure-Functions-InvocationId: %s\r\n"
                          "X-Azure-Functions-HostVersion: " DH_HOST_VERSION "\r\n"
                          "User-Agent: Azure-Functions-Host/" DH_HOST_VERSION "\r\n"
                          "Content-Length: %zu\r\n\r\n", function, port, invocation_id, len);
        if (hl < 0 || (size_t)hl >= sizeof head) { snprintf(err, errlen, "function name too long"); return -1; }
        int sent = 0, refused = 0, reused = 1;
        int fd = fresh_only ? -1 : take_idle(iv, port);
        if (fd < 0) {
            reused = 0;
            fd = connect_to(iv, port, &refused);
        }
        if (fd < 0) {
            /* Refused, and nothing of this request was ever sent anywhere: the handler has just
             * died and never saw it, so it can go to the restarted one, once. */
            if (refused && !delivered_maybe && attempt == 0 && dh_supervisor_refused(iv->sup, gen, REFUSED_WAIT_MS))
                continue;
            snprintf(err, errlen, "the handler did not answer on 127.0.0.1:%d: %s", port,
                     refused ? "connection refused" : strerror(errno));
            return -1;
        }
        if (fresh_only && !dh_supervisor_is_current(iv->sup, gen)) {
            /* The handler died with the request possibly read: the retry would reach its
             * successor on the same port, which must get it only through the retry policy. */
            close(fd);
            snprintf(err, errlen, "the handler on 127.0.0.1:%d went away with the invocation in flight", port);
            return -1;
        }
        track(iv, fd, 1);
        struct iovec iov[2] = {{head, (size_t)hl}, {(void *)body, len}};
        int keep = 0, got = 0;
        read_rc_t rrc = RR_TRANSPORT;
        int serr = send_all(fd, iov, len ? 2 : 1, &sent);
        if (serr == 0) rrc = read_reply(fd, ans, &keep, &got);
        int e = errno;
        track(iv, fd, 0);
        give_back(iv, fd, port, serr == 0 && rrc == RR_OK && keep);
        if (serr == 0 && rrc == RR_OK) return 0;
        buf_free(&ans->body);
        /* A kept-alive connection that failed before any byte of a reply came back (the handler
         * may close an idle connection at any time): retried once on a new connection, as .NET's
         * HttpClient does for the host. */
        if (reused && !got && rrc != RR_TIMEOUT && attempt == 0 && !(iv->stopping && *iv->stopping)) {
            fresh_only = 1;
            delivered_maybe = sent;
            memset(ans, 0, sizeof *ans);
            continue;
        }
        if (iv->stopping && *iv->stopping) snprintf(err, errlen, "devhost is stopping");
        else if (rrc == RR_TIMEOUT || (serr != 0 && (e == EAGAIN || e == EWOULDBLOCK)))
            snprintf(err, errlen, "Timeout value of %lld ms was exceeded by the function (host.json functionTimeout)",
                     (long long)iv->timeout_ms);
        else if (rrc == RR_TOO_BIG)
            snprintf(err, errlen, "the handler's reply is larger than %u bytes", MAX_REPLY_BYTES);
        else if (rrc == RR_PROTOCOL)
            snprintf(err, errlen, "the handler's reply on 127.0.0.1:%d is not HTTP/1.x", port);
        else
            snprintf(err, errlen, "the handler did not answer on 127.0.0.1:%d: %s", port,
                     serr != 0 ? strerror(e) : "the connection closed before a reply");
        return -1;
    }
    snprintf(err, errlen, "the handler refused the connection");
    return -1;
}
