/* signalr_ws.c — WebSocket framing and the WebSocket thread of the local SignalR Service
 * (see signalr_ws.h for what it owns and why).
 *
 * Threading: every struct sr_ws_conn field is used only by the WebSocket thread, except
 * in_ready/next_ready/next_incoming (the server's lock). The client's `ws` pointer, queue and
 * stage are under the client's lock; lock order is client lock, then the server's lock
 * (sr_ws_notify), and the thread never holds the server's lock while taking a client's.
 *
 * The ready list (sockets with something new to write) keeps this invariant, checked by
 * assert wherever it changes: under the server's lock, w->in_ready is 1 exactly when w is
 * linked in s->ready, s->nready is the list's length, and next_ready is only ever read or
 * written with the lock held. Each loop turn the thread first drains the eventfd, then moves
 * the whole list into its private `batch` array in one critical section (clearing in_ready),
 * and only then flushes the batch without the lock. A notify that comes after the move finds
 * in_ready clear, links the socket into the (now empty) list and kicks the eventfd, so the
 * next turn starts at once: no wake-up is lost and no data waits for a ping. (The first
 * version cleared in_ready and then walked the detached list without the lock; a concurrent
 * notify re-linked an entry into the new list, the walk followed it there and stranded the
 * rest of the old list.) */
#include "devhost/signalr/signalr_ws.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devhost/signalr/signalr_hub.h"
#include "util/log.h"
#include "util/utf8.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_READ_CHUNK (64 * 1024)
#define WS_READS_PER_WAKE 16 /* fairness: at most this many recv() per socket per loop turn */
#define WS_TICK_MS 100

/* ---- framing ------------------------------------------------------------------------ */

int sr_ws_accept_key(const char *key, char out[29])
{
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=') return -1;
    unsigned char raw[24];
    if (EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18) return -1; /* 16 + padding */
    char cat[24 + sizeof WS_GUID];
    memcpy(cat, key, 24);
    memcpy(cat + 24, WS_GUID, sizeof WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (EVP_Digest(cat, 24 + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return -1;
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28) return -1;
    out[28] = '\0';
    return 0;
}

size_t sr_ws_frame_header(unsigned opcode, size_t payload_len, unsigned char out[10])
{
    out[0] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (payload_len < 126) {
        out[1] = (unsigned char)payload_len;
        return 2;
    }
    if (payload_len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(payload_len >> 8);
        out[3] = (unsigned char)payload_len;
        return 4;
    }
    out[1] = 127;
    uint64_t l = (uint64_t)payload_len;
    for (int i = 0; i < 8; i++) out[2 + i] = (unsigned char)(l >> (56 - 8 * i));
    return 10;
}

void sr_ws_reader_init(sr_ws_reader_t *r, size_t max_msg)
{
    memset(r, 0, sizeof *r);
    r->max_msg = max_msg;
}

void sr_ws_reader_free(sr_ws_reader_t *r)
{
    buf_free(&r->in);
    buf_free(&r->msg);
    r->off = 0;
}

int sr_ws_reader_feed(sr_ws_reader_t *r, const void *data, size_t n)
{
    if (r->failed) return 0;
    if (r->off > 0) { /* drop what was parsed */
        memmove(r->in.data, r->in.data + r->off, r->in.len - r->off);
        r->in.len -= r->off;
        r->off = 0;
    }
    return buf_append(&r->in, data, n);
}

static sr_ws_event_t reader_fail(sr_ws_reader_t *r, unsigned *code, unsigned c)
{
    r->failed = 1;
    *code = c;
    return SR_WS_EV_ERROR;
}

static int close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

sr_ws_event_t sr_ws_reader_next(sr_ws_reader_t *r, const unsigned char **data, size_t *len,
                                unsigned *code)
{
    *data = NULL;
    *len = 0;
    *code = 0;
    if (r->failed) return SR_WS_EV_NONE;
    if (r->msg_done) {
        buf_reset(&r->msg);
        r->msg_done = 0;
        r->msg_op = 0;
    }
    for (;;) {
        size_t avail = r->in.len - r->off;
        if (avail < 2) return SR_WS_EV_NONE;   /* (in.data is NULL until something is fed) */
        unsigned char *p = (unsigned char *)r->in.data + r->off;
        int fin = (p[0] & 0x80) != 0;
        unsigned op = p[0] & 0x0f;
        if (p[0] & 0x70) return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL);   /* no extensions */
        if (!(p[1] & 0x80)) return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL); /* clients mask */
        uint64_t plen = p[1] & 0x7f;
        size_t h = 2;
        if (plen == 126) {
            if (avail < 4) return SR_WS_EV_NONE;
            plen = ((uint64_t)p[2] << 8) | p[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10) return SR_WS_EV_NONE;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | p[2 + i];
            if (plen >> 63) return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL);
            h = 10;
        }
        int control = (op & 0x8) != 0;
        if (control) {
            if (op != SR_WS_OP_CLOSE && op != SR_WS_OP_PING && op != SR_WS_OP_PONG)
                return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL);
            if (!fin || plen > 125) return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL);
        } else {
            if (op != SR_WS_OP_CONT && op != SR_WS_OP_TEXT && op != SR_WS_OP_BINARY)
                return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL);
            if ((op == SR_WS_OP_CONT) != (r->msg_op != 0)) /* orphan continuation / nested start */
                return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL);
            if (plen > r->max_msg || r->msg.len + plen > r->max_msg)
                return reader_fail(r, code, SR_WS_CLOSE_TOO_BIG);
        }
        if (avail - h < 4 || avail - h - 4 < plen) return SR_WS_EV_NONE;
        const unsigned char *mask = p + h;
        unsigned char *pl = p + h + 4;
        for (size_t i = 0; i < (size_t)plen; i++) pl[i] ^= mask[i & 3];
        r->off += h + 4 + (size_t)plen;
        if (control) {
            if (op == SR_WS_OP_CLOSE) {
                if (plen == 1) return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL);
                if (plen == 0) { *code = SR_WS_CLOSE_NO_STATUS; return SR_WS_EV_CLOSE; }
                unsigned c = ((unsigned)pl[0] << 8) | pl[1];
                if (!close_code_ok(c)) return reader_fail(r, code, SR_WS_CLOSE_PROTOCOL);
                if (!utf8_valid((const char *)pl + 2, (size_t)plen - 2))
                    return reader_fail(r, code, SR_WS_CLOSE_BAD_DATA);
                *code = c;
                *data = pl + 2;
                *len = (size_t)plen - 2;
                return SR_WS_EV_CLOSE;
            }
            *data = pl;
            *len = (size_t)plen;
            return op == SR_WS_OP_PING ? SR_WS_EV_PING : SR_WS_EV_PONG;
        }
        if (op != SR_WS_OP_CONT) r->msg_op = (int)op;
        if (buf_append(&r->msg, pl, (size_t)plen) != 0) {
            buf_free(&r->msg);
            return reader_fail(r, code, SR_WS_CLOSE_INTERNAL);
        }
        if (!fin) continue;
        r->msg_done = 1;
        *data = (const unsigned char *)r->msg.data;
        *len = r->msg.len;
        if (r->msg_op == SR_WS_OP_TEXT) {
            if (!utf8_valid((const char *)*data, *len)) return reader_fail(r, code, SR_WS_CLOSE_BAD_DATA);
            return SR_WS_EV_TEXT;
        }
        return SR_WS_EV_BINARY;
    }
}

/* ---- the WebSocket thread ----------------------------------------------------------- */

struct sr_ws_conn {
    sr_ws_server_t *srv;
    sr_client_t    *c;            /* reference */
    int             fd;
    struct MHD_UpgradeResponseHandle *urh;
    sr_ws_reader_t  rd;
    int             epoll_out;    /* EPOLLOUT is registered */
    int             close_sent;   /* our close frame is staged (or written) */
    int             close_rcvd;   /* the client's close frame arrived */
    int             discard;      /* ignore further input (after a close or an error) */
    unsigned        close_code;   /* code for our close frame */
    int             dead;         /* finished: socket handed back, freed by the sweep */
    int             in_ready;     /* server lock: linked in s->ready */
    struct sr_ws_conn *next_ready; /* server lock: next in s->ready */
    struct sr_ws_conn *next_incoming; /* server lock: next in s->incoming */
    struct sr_ws_conn *prev, *next; /* thread's list of all sockets */
};

struct sr_ws_server {
    struct sr_registry *reg;
    size_t           max_msg;
    int              close_grace_ms;
    int              ep, efd;
    pthread_t        th;
    pthread_mutex_t  lock;
    int              stop;           /* lock */
    int              stopped;        /* lock: the thread has finished everything */
    struct sr_ws_conn *incoming;     /* lock: attached, not yet adopted (linked by next_incoming) */
    struct sr_ws_conn *ready;        /* lock: sockets with something to write (see the top) */
    size_t           nready;         /* lock: length of ready */
    struct sr_ws_conn **batch;       /* thread only: the ready list taken this turn */
    size_t           batch_cap;      /* thread only */
    struct sr_ws_conn *all;          /* thread only: every adopted socket */
    size_t           ndead;          /* thread only: finished sockets in all, not yet swept */
    unsigned char    rbuf[WS_READ_CHUNK];
};

static void kick(sr_ws_server_t *s)
{
    uint64_t one = 1;
    ssize_t n = write(s->efd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, the thread will wake */
}

void sr_ws_notify(struct sr_ws_conn *w)
{
    sr_ws_server_t *s = w->srv;
    int need_kick = 0;
    pthread_mutex_lock(&s->lock);
    if (!w->in_ready) {
        assert(w->next_ready == NULL);
        assert((s->ready == NULL) == (s->nready == 0));
        w->in_ready = 1;
        need_kick = s->ready == NULL; /* the thread kicks itself no more once it took the list */
        w->next_ready = s->ready;
        s->ready = w;
        s->nready++;
    }
    pthread_mutex_unlock(&s->lock);
    if (need_kick) kick(s);
}

static void set_epoll_out(struct sr_ws_conn *w, int on)
{
    if (w->dead || w->epoll_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = w};
    if (epoll_ctl(w->srv->ep, EPOLL_CTL_MOD, w->fd, &ev) == 0) w->epoll_out = on;
}

/* Give the socket back to libmicrohttpd (which closes it) and mark w for the sweep. */
static void ws_finish(struct sr_ws_conn *w, const char *reason)
{
    if (w->dead) return;
    w->dead = 1;
    w->srv->ndead++;
    epoll_ctl(w->srv->ep, EPOLL_CTL_DEL, w->fd, NULL);
    sr_client_t *c = w->c;
    pthread_mutex_lock(&c->lock);
    if (c->ws == w) c->ws = NULL;
    c->stream_open = 0;
    pthread_mutex_unlock(&c->lock);
    sr_client_close(c, reason ? reason : "WebSocket closed", 0, NULL, 0);
    MHD_upgrade_action(w->urh, MHD_UPGRADE_ACTION_CLOSE);
    w->urh = NULL;
}

/* Stage a control frame (whole frames only, so it never splits a data frame). c->lock held. */
static void stage_control_locked(sr_client_t *c, unsigned op, const unsigned char *payload, size_t n)
{
    unsigned char h[10];
    size_t hl = sr_ws_frame_header(op, n, h);
    if (buf_append(&c->stage, h, hl) != 0 || buf_append(&c->stage, payload, n) != 0)
        log_error(NULL, "signalr: out of memory staging a WebSocket control frame for %s", c->id);
}

/* Write what can be written: staged frames, then the queue as one Text frame, then (when
 * the client is closing) the close frame. */
static void ws_flush(struct sr_ws_conn *w)
{
    if (w->dead) return;
    sr_client_t *c = w->c;
    int io_error = 0, blocked = 0;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (c->stage_off >= c->stage.len) {
            buf_reset(&c->stage);
            c->stage_off = 0;
            if (w->close_sent || w->close_rcvd || w->discard) buf_reset(&c->queue);
            if (c->queue.len > 0) {
                unsigned char h[10];
                size_t hl = sr_ws_frame_header(SR_WS_OP_TEXT, c->queue.len, h);
                if (buf_reserve(&c->stage, hl + c->queue.len) != 0) {
                    log_error(NULL, "signalr: out of memory framing WebSocket data for %s; closing it", c->id);
                    io_error = 1;
                    break;
                }
                buf_append(&c->stage, h, hl);
                buf_append(&c->stage, c->queue.data, c->queue.len);
                buf_reset(&c->queue);
            } else if (c->state == SR_CLIENT_CLOSING && !w->close_sent) {
                unsigned code = w->close_code ? w->close_code : SR_WS_CLOSE_NORMAL;
                unsigned char pl[2] = {(unsigned char)(code >> 8), (unsigned char)code};
                stage_control_locked(c, SR_WS_OP_CLOSE, pl, 2);
                w->close_sent = 1;
            } else {
                break;
            }
        }
        ssize_t n = send(w->fd, c->stage.data + c->stage_off, c->stage.len - c->stage_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->stage_off += (size_t)n;
            c->last_seen_ms = sr_now_ms();
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) blocked = 1;
        else io_error = 1;
        break;
    }
    int all_written = c->stage_off >= c->stage.len && c->queue.len == 0;
    pthread_mutex_unlock(&c->lock);
    if (io_error) {
        ws_finish(w, "WebSocket connection lost");
        return;
    }
    set_epoll_out(w, blocked);
    if (w->close_sent && all_written && w->close_rcvd) ws_finish(w, NULL);
}

/* A protocol violation: close with code, ignore further input, drop pending records. */
static void ws_fail(struct sr_ws_conn *w, unsigned code, const char *why)
{
    sr_client_t *c = w->c;
    log_warn(NULL, "signalr: connection %s sent an invalid WebSocket frame (%s); closing it with %u",
             c->id, why, code);
    w->discard = 1;
    if (!w->close_sent) w->close_code = code;
    pthread_mutex_lock(&c->lock);
    buf_reset(&c->queue);
    pthread_mutex_unlock(&c->lock);
    sr_client_close(c, why, 0, NULL, 0);
}

static void ws_on_text(struct sr_ws_conn *w, const unsigned char *data, size_t len)
{
    sr_client_t *c = w->c;
    int hs = 0;
    sr_client_receive(c, (const char *)data, len, &hs);
    if (!hs) return;
    if (sr_registry_activate(w->srv->reg, c) != 0) {
        sr_client_close(c, "out of memory", 1, "Server out of memory.", 0);
        return;
    }
    log_info(NULL, "signalr: connection %s connected (hub %s, WebSockets, %s)", c->id, c->hub,
             c->user ? "with user id" : "anonymous");
}

static void ws_process_input(struct sr_ws_conn *w)
{
    const unsigned char *d;
    size_t n;
    unsigned code;
    sr_ws_event_t ev;
    while (!w->dead && !w->discard && (ev = sr_ws_reader_next(&w->rd, &d, &n, &code)) != SR_WS_EV_NONE) {
        switch (ev) {
        case SR_WS_EV_TEXT:
            if (!w->close_sent) ws_on_text(w, d, n);
            break;
        case SR_WS_EV_BINARY:
            ws_fail(w, SR_WS_CLOSE_UNSUPPORTED, "binary message; only the JSON protocol (Text) is supported");
            break;
        case SR_WS_EV_PING:
            if (!w->close_sent) {
                /* A client that pings without reading must not grow the stage without bound:
                 * beyond the queue bound its pings go unanswered (RFC 6455 §5.5.3 allows
                 * answering only the latest). */
                pthread_mutex_lock(&w->c->lock);
                if (w->c->stage.len - w->c->stage_off + n <= w->c->max_queue)
                    stage_control_locked(w->c, SR_WS_OP_PONG, d, n);
                pthread_mutex_unlock(&w->c->lock);
            }
            break;
        case SR_WS_EV_PONG:
            break;
        case SR_WS_EV_CLOSE:
            w->close_rcvd = 1;
            w->discard = 1;
            if (!w->close_sent) w->close_code = code == SR_WS_CLOSE_NO_STATUS ? SR_WS_CLOSE_NORMAL : code;
            pthread_mutex_lock(&w->c->lock);
            buf_reset(&w->c->queue);
            pthread_mutex_unlock(&w->c->lock);
            sr_client_close(w->c, "client closed the WebSocket", 0, NULL, 0);
            break;
        case SR_WS_EV_ERROR:
            ws_fail(w, code, code == SR_WS_CLOSE_TOO_BIG ? "message too large"
                             : code == SR_WS_CLOSE_BAD_DATA ? "invalid UTF-8"
                             : code == SR_WS_CLOSE_INTERNAL ? "out of memory" : "protocol violation");
            break;
        default:
            break;
        }
    }
}

static void ws_on_readable(struct sr_ws_conn *w)
{
    sr_ws_server_t *s = w->srv;
    for (int i = 0; i < WS_READS_PER_WAKE && !w->dead; i++) {
        ssize_t n = recv(w->fd, s->rbuf, sizeof s->rbuf, 0);
        if (n > 0) {
            if (w->discard) continue;
            if (sr_ws_reader_feed(&w->rd, s->rbuf, (size_t)n) != 0) {
                ws_fail(w, SR_WS_CLOSE_INTERNAL, "out of memory");
                continue;
            }
            ws_process_input(w);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        ws_finish(w, n == 0 ? (w->close_sent || w->close_rcvd ? NULL
                                                              : "WebSocket closed by the client")
                            : "WebSocket connection lost");
        return;
    }
    ws_flush(w);
}

static void ws_adopt(sr_ws_server_t *s, struct sr_ws_conn *w)
{
    w->next = s->all;
    if (s->all) s->all->prev = w;
    s->all = w;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, w->fd, &ev) != 0) {
        log_error(NULL, "signalr: cannot watch the WebSocket of connection %s (%s); closing it",
                  w->c->id, strerror(errno));
        ws_finish(w, "WebSocket could not be watched");
        return;
    }
    pthread_mutex_lock(&w->c->lock);
    w->c->ws = w;
    pthread_mutex_unlock(&w->c->lock);
    ws_process_input(w); /* bytes libmicrohttpd read ahead */
    ws_flush(w);         /* records queued before the socket attached */
}

static void ws_free(struct sr_ws_conn *w)
{
    sr_ws_reader_free(&w->rd);
    sr_client_unref(w->c);
    free(w);
}

/* Free finished sockets. A finished socket can still be on the ready list (notified before
 * ws_finish cleared the client's pointer to it; no notify can come after): one pass over the
 * list unlinks every such entry before any is freed. */
static void ws_sweep(sr_ws_server_t *s)
{
    if (s->ndead == 0) return;
    pthread_mutex_lock(&s->lock);
    for (struct sr_ws_conn **pp = &s->ready; *pp;) {
        struct sr_ws_conn *w = *pp;
        assert(w->in_ready);
        if (!w->dead) { pp = &w->next_ready; continue; }
        *pp = w->next_ready;
        w->next_ready = NULL;
        w->in_ready = 0;
        s->nready--;
    }
    assert((s->ready == NULL) == (s->nready == 0));
    pthread_mutex_unlock(&s->lock);
    for (struct sr_ws_conn *w = s->all, *nx; w && s->ndead; w = nx) {
        nx = w->next;
        if (!w->dead) continue;
        assert(!w->in_ready);
        if (w->prev) w->prev->next = w->next;
        else s->all = w->next;
        if (w->next) w->next->prev = w->prev;
        s->ndead--;
        ws_free(w);
    }
}

static void ws_timers(sr_ws_server_t *s, int64_t now)
{
    for (struct sr_ws_conn *w = s->all; w; w = w->next) {
        if (w->dead) continue;
        pthread_mutex_lock(&w->c->lock);
        int closing = w->c->state == SR_CLIENT_CLOSING;
        int64_t since = w->c->closing_since_ms;
        pthread_mutex_unlock(&w->c->lock);
        if (closing && now - since > s->close_grace_ms) ws_finish(w, NULL);
    }
}

/* Move the whole ready list into s->batch (one critical section; see the invariant at the
 * top). Returns how many were taken. When the batch cannot grow, takes what fits and leaves
 * the rest linked (*more is then set, so that the next turn does not sleep). */
static size_t take_ready(sr_ws_server_t *s, int *more)
{
    pthread_mutex_lock(&s->lock);
    size_t want = s->nready;
    pthread_mutex_unlock(&s->lock);
    if (want > s->batch_cap) { /* grown outside the lock; the list may grow meanwhile */
        size_t cap = s->batch_cap;
        while (cap < want) cap *= 2;
        struct sr_ws_conn **nb = realloc(s->batch, cap * sizeof *nb);
        if (nb) {
            s->batch = nb;
            s->batch_cap = cap;
        } else {
            log_error(NULL, "signalr: out of memory growing the WebSocket ready batch; catching up in steps");
        }
    }
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    while (s->ready && n < s->batch_cap) {
        struct sr_ws_conn *w = s->ready;
        assert(w->in_ready && s->nready > 0);
        s->ready = w->next_ready;
        w->next_ready = NULL;
        w->in_ready = 0;
        s->nready--;
        s->batch[n++] = w;
    }
    assert((s->ready == NULL) == (s->nready == 0));
    *more = s->ready != NULL;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void *ws_thread(void *arg)
{
    sr_ws_server_t *s = arg;
    struct epoll_event evs[64];
    int64_t last_tick = sr_now_ms();
    int more = 0;
    for (;;) {
        int n = epoll_wait(s->ep, evs, 64, more ? 0 : WS_TICK_MS);
        /* Drain the eventfd before taking the ready list: a notify after this read either
         * finds its socket taken below or links it into an empty list and kicks again. */
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr) continue;
            uint64_t v;
            ssize_t r = read(s->efd, &v, sizeof v);
            (void)r; /* EAGAIN: already drained */
        }
        pthread_mutex_lock(&s->lock);
        int stop = s->stop;
        struct sr_ws_conn *inc = s->incoming;
        s->incoming = NULL;
        pthread_mutex_unlock(&s->lock);
        while (inc) {
            struct sr_ws_conn *w = inc;
            inc = w->next_incoming;
            w->next_incoming = NULL;
            ws_adopt(s, w);
        }
        /* Batch entries stay valid: only the sweep below frees, and it runs after this. An
         * entry may be linked into s->ready again meanwhile; it is then flushed next turn. */
        size_t nb = take_ready(s, &more);
        for (size_t i = 0; i < nb; i++) ws_flush(s->batch[i]);
        for (int i = 0; i < n; i++) {
            struct sr_ws_conn *w = evs[i].data.ptr;
            if (!w || w->dead) continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) ws_on_readable(w);
            if (!w->dead && (evs[i].events & EPOLLOUT)) ws_flush(w);
        }
        int64_t now = sr_now_ms();
        if (now - last_tick >= WS_TICK_MS) {
            last_tick = now;
            ws_timers(s, now);
        }
        if (stop) {
            for (struct sr_ws_conn *w = s->all; w; w = w->next) ws_finish(w, "server shutting down");
            ws_sweep(s);
            pthread_mutex_lock(&s->lock);
            s->stopped = 1;
            inc = s->incoming; /* attaches that raced the stop */
            s->incoming = NULL;
            pthread_mutex_unlock(&s->lock);
            while (inc) {
                struct sr_ws_conn *w = inc;
                inc = w->next_incoming;
                ws_finish(w, "server shutting down");
                ws_free(w);
            }
            break;
        }
        ws_sweep(s);
    }
    return NULL;
}

sr_ws_server_t *sr_ws_server_start(struct sr_registry *reg, size_t max_msg, int close_grace_ms,
                                   char *err, size_t errlen)
{
    sr_ws_server_t *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    s->reg = reg;
    s->max_msg = max_msg;
    s->close_grace_ms = close_grace_ms;
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&s->lock, NULL);
    /* Never empty, so that the thread always makes progress (growing it may fail later). */
    s->batch_cap = 64;
    s->batch = malloc(s->batch_cap * sizeof *s->batch);
    if (!s->batch) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (s->ep < 0 || s->efd < 0 || epoll_ctl(s->ep, EPOLL_CTL_ADD, s->efd, &ev) != 0) {
        snprintf(err, errlen, "cannot set up the WebSocket thread's epoll: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->th, NULL, ws_thread, s) != 0) {
        snprintf(err, errlen, "cannot start the WebSocket thread");
        goto fail;
    }
    return s;
fail:
    if (s->ep >= 0) close(s->ep);
    if (s->efd >= 0) close(s->efd);
    pthread_mutex_destroy(&s->lock);
    free(s->batch);
    free(s);
    return NULL;
}

int sr_ws_server_attach(sr_ws_server_t *s, sr_client_t *c, int fd,
                        struct MHD_UpgradeResponseHandle *urh, const char *extra, size_t extra_len)
{
    struct sr_ws_conn *w = calloc(1, sizeof *w);
    if (!w) return -1;
    w->srv = s;
    w->fd = fd;
    w->urh = urh;
    sr_ws_reader_init(&w->rd, s->max_msg);
    if (extra_len && sr_ws_reader_feed(&w->rd, extra, extra_len) != 0) {
        sr_ws_reader_free(&w->rd);
        free(w);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        sr_ws_reader_free(&w->rd);
        free(w);
        return -1;
    }
    sr_client_ref(c);
    w->c = c;
    pthread_mutex_lock(&s->lock);
    if (s->stop) {
        pthread_mutex_unlock(&s->lock);
        w->urh = NULL;
        ws_free(w);
        return -1;
    }
    w->next_incoming = s->incoming;
    s->incoming = w;
    pthread_mutex_unlock(&s->lock);
    kick(s);
    return 0;
}

void sr_ws_server_stop(sr_ws_server_t *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    int already = s->stop;
    s->stop = 1;
    pthread_mutex_unlock(&s->lock);
    if (already) return;
    kick(s);
    pthread_join(s->th, NULL);
}

void sr_ws_server_free(sr_ws_server_t *s)
{
    if (!s) return;
    sr_ws_server_stop(s);
    close(s->ep);
    close(s->efd);
    pthread_mutex_destroy(&s->lock);
    free(s->batch);
    free(s);
}
