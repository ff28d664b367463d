/* fuzz_websocket.c — WebSocket frames from clients of the local SignalR Service (the
 * incremental reader sr_ws_reader_*, and sr_ws_accept_key: src/devhost/signalr/signalr_ws.c).
 *
 * Input: a mode byte, a size byte (the largest message accepted: 16 bytes to 1 MiB), then
 * - mode even: raw bytes from the socket;
 * - mode odd: frame descriptions from which the harness builds correctly masked frames and,
 *   with an independent model of RFC 6455's rules, the events a reader must report.
 *
 * Invariants: the reader reports the same events whether the bytes arrive at once or in any
 * chunking; a Text message is well-formed UTF-8 (judged by util/utf8's table-driven check), no
 * message exceeds the bound, control payloads are at most 125 bytes, close codes are ones a
 * peer may send, an error carries 1002, 1007, 1009 or 1011 and nothing follows it; for built
 * frames the events are exactly the model's (reassembled fragments, interleaved control
 * frames, the first violation with its close code). Any 24-byte key either yields a 28-byte
 * base64 accept value or is refused. */
#include "fuzz.h"

#include "devhost/signalr/signalr_ws.h"
#include "util/buf.h"
#include "util/utf8.h"

#define MAX_EVENTS 512

typedef struct ev {
    int      type;
    unsigned code;
    size_t   len;
    uint8_t *data;
} ev_t;

typedef struct evlist {
    ev_t   e[MAX_EVENTS];
    size_t n;
    int    overflow;
} evlist_t;

static void add(evlist_t *l, int type, unsigned code, const uint8_t *p, size_t len)
{
    if (l->n == MAX_EVENTS) { l->overflow = 1; return; }
    ev_t *e = &l->e[l->n++];
    e->type = type;
    e->code = code;
    e->len = len;
    e->data = fuzz_memdup(p ? p : (const uint8_t *)"", len);
}

static void clear(evlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->e[i].data);
    l->n = 0;
    l->overflow = 0;
}

static int close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* Drain the reader's events into l, checking each. */
static void drain(sr_ws_reader_t *r, evlist_t *l, size_t max_msg)
{
    for (;;) {
        const unsigned char *d;
        size_t len;
        unsigned code;
        sr_ws_event_t t = sr_ws_reader_next(r, &d, &len, &code);
        if (t == SR_WS_EV_NONE) return;
        FUZZ_CHECK(!(l->n && l->e[l->n - 1].type == SR_WS_EV_ERROR), "an event after an error");
        switch (t) {
        case SR_WS_EV_TEXT:
            FUZZ_CHECK(utf8_valid((const char *)d, len), "a Text message that is not UTF-8");
            /* fall through */
        case SR_WS_EV_BINARY:
            FUZZ_CHECK(len <= max_msg, "message of %zu bytes over the bound %zu", len, max_msg);
            break;
        case SR_WS_EV_PING:
        case SR_WS_EV_PONG:
            FUZZ_CHECK(len <= 125, "control payload of %zu bytes", len);
            break;
        case SR_WS_EV_CLOSE:
            FUZZ_CHECK(code == SR_WS_CLOSE_NO_STATUS || close_code_ok(code), "close code %u", code);
            FUZZ_CHECK(len <= 123 && utf8_valid((const char *)d, len), "close reason");
            break;
        case SR_WS_EV_ERROR:
            FUZZ_CHECK(code == SR_WS_CLOSE_PROTOCOL || code == SR_WS_CLOSE_BAD_DATA || code == SR_WS_CLOSE_TOO_BIG ||
                           code == SR_WS_CLOSE_INTERNAL, "error close code %u", code);
            break;
        default:
            FUZZ_CHECK(0, "unknown event %d", (int)t);
        }
        if (t == SR_WS_EV_ERROR) { add(l, (int)t, code, NULL, 0); return; }   /* (no payload defined) */
        add(l, (int)t, code, d, len);
    }
}

/* Feed stream[0..n) in chunks whose sizes come from seed (0: all at once). */
static void read_stream(const uint8_t *stream, size_t n, size_t max_msg, unsigned seed, evlist_t *l)
{
    sr_ws_reader_t r;
    sr_ws_reader_init(&r, max_msg);
    size_t at = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (at < n) {
        size_t k = n - at;
        if (seed) {
            x = x * 1103515245u + 12345u;
            size_t c = 1 + (x >> 16) % 37;
            if (c < k) k = c;
        }
        if (sr_ws_reader_feed(&r, stream + at, k) != 0) abort();
        at += k;
        drain(&r, l, max_msg);
    }
    drain(&r, l, max_msg);
    sr_ws_reader_free(&r);
}

static void compare(const evlist_t *a, const evlist_t *b, const char *what)
{
    FUZZ_CHECK(a->n == b->n, "%s: %zu events against %zu", what, a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        FUZZ_CHECK(a->e[i].type == b->e[i].type && a->e[i].code == b->e[i].code && a->e[i].len == b->e[i].len &&
                       (a->e[i].len == 0 || memcmp(a->e[i].data, b->e[i].data, a->e[i].len) == 0),
                   "%s: event %zu differs (type %d/%d, code %u/%u, %zu/%zu bytes)", what, i, a->e[i].type, b->e[i].type,
                   a->e[i].code, b->e[i].code, a->e[i].len, b->e[i].len);
}

/* One frame: header (minimal or not), mask, masked payload. */
static void put_frame(buf_t *b, int fin, unsigned op, const uint8_t *mask, const uint8_t *p, size_t n, int long_form)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126 && !long_form) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff && long_form != 2) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    memcpy(h + hl, mask, 4);
    hl += 4;
    buf_append(b, h, hl);
    for (size_t i = 0; i < n; i++) buf_putc(b, (char)(p[i] ^ mask[i & 3]));
}

/* Build frames from descriptions and the events a reader must report. */
static void build(const uint8_t *d, size_t n, size_t max_msg, buf_t *stream, evlist_t *want)
{
    buf_t msg = BUF_INIT;
    unsigned msg_op = 0;
    size_t at = 0;
    while (at + 6 <= n && want->n < MAX_EVENTS - 1) {
        uint8_t ctl = d[at];
        const uint8_t *mask = d + at + 1;
        size_t len = d[at + 5];
        at += 6;
        if (len > n - at) len = n - at;
        const uint8_t *p = d + at;
        at += len;
        int kind = ctl & 3, fin = (ctl >> 2) & 1, long_form = (ctl >> 6) & 3;
        if (kind == 3) {   /* a data frame: a start (Text or Binary) or a continuation */
            kind = msg_op ? 1 : 0;
        }
        if (kind == 2) {   /* control: close, ping or pong; never fragmented, at most 125 bytes */
            static const unsigned ops[] = {SR_WS_OP_CLOSE, SR_WS_OP_PING, SR_WS_OP_PONG, SR_WS_OP_PING};
            unsigned op = ops[(ctl >> 4) & 3];
            if (len > 125) len = 125;
            put_frame(stream, 1, op, mask, p, len, long_form);
            if (op == SR_WS_OP_CLOSE) {
                if (len == 0) { add(want, SR_WS_EV_CLOSE, SR_WS_CLOSE_NO_STATUS, NULL, 0); continue; }
                unsigned code = len >= 2 ? ((unsigned)p[0] << 8 | p[1]) : 0;
                if (len == 1 || !close_code_ok(code)) { add(want, SR_WS_EV_ERROR, SR_WS_CLOSE_PROTOCOL, NULL, 0); break; }
                if (!utf8_valid((const char *)p + 2, len - 2)) { add(want, SR_WS_EV_ERROR, SR_WS_CLOSE_BAD_DATA, NULL, 0); break; }
                add(want, SR_WS_EV_CLOSE, code, p + 2, len - 2);
            } else {
                add(want, op == SR_WS_OP_PING ? SR_WS_EV_PING : SR_WS_EV_PONG, 0, p, len);
            }
            continue;
        }
        unsigned op = kind == 1 ? SR_WS_OP_CONT : ((ctl >> 3) & 1 ? SR_WS_OP_BINARY : SR_WS_OP_TEXT);
        put_frame(stream, fin, op, mask, p, len, long_form);
        if ((op == SR_WS_OP_CONT) != (msg_op != 0)) { add(want, SR_WS_EV_ERROR, SR_WS_CLOSE_PROTOCOL, NULL, 0); break; }
        if (msg.len + len > max_msg) { add(want, SR_WS_EV_ERROR, SR_WS_CLOSE_TOO_BIG, NULL, 0); break; }
        if (op != SR_WS_OP_CONT) msg_op = op;
        buf_append(&msg, p, len);
        if (!fin) continue;
        if (msg_op == SR_WS_OP_TEXT && !utf8_valid(msg.data ? msg.data : "", msg.len)) {
            add(want, SR_WS_EV_ERROR, SR_WS_CLOSE_BAD_DATA, NULL, 0);
            break;
        }
        add(want, msg_op == SR_WS_OP_TEXT ? SR_WS_EV_TEXT : SR_WS_EV_BINARY, 0, (const uint8_t *)msg.data, msg.len);
        buf_reset(&msg);
        msg_op = 0;
    }
    if (msg.oom || stream->oom) abort();
    buf_free(&msg);
}

static evlist_t g_a, g_b, g_want;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    unsigned mode = data[0];
    size_t max_msg = (size_t)16 << (data[1] % 17);
    data += 2;
    size -= 2;

    if (size >= 24) {
        char key[25], out[29];
        memcpy(key, data, 24);
        key[24] = '\0';
        if (!memchr(key, '\0', 24) && sr_ws_accept_key(key, out) == 0)
            FUZZ_CHECK(strlen(out) == 28 && out[27] == '=', "accept value '%s'", out);
    }

    if (mode & 1) {
        buf_t stream = BUF_INIT;
        build(data, size, max_msg, &stream, &g_want);
        read_stream((const uint8_t *)stream.data, stream.len, max_msg, mode >> 1, &g_a);
        compare(&g_want, &g_a, "built frames against the model");
        buf_free(&stream);
    } else {
        read_stream(data, size, max_msg, 0, &g_a);
        read_stream(data, size, max_msg, (mode >> 1) | 1, &g_b);
        if (!g_a.overflow && !g_b.overflow) compare(&g_a, &g_b, "all at once against in chunks");
    }
    clear(&g_a);
    clear(&g_b);
    clear(&g_want);
    return 0;
}
