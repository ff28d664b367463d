/* jstream.c — incremental JSON tokenizer, value capture and nested-string chains (see
 * jstream.h).
 *
 * One state machine consumes bytes of the current chunk and returns at most one event per
 * call; a token split across chunks resumes where it stopped (strings keep their escape
 * state, numbers and literals their partial text). Decoded string bytes collect in js->out
 * and leave as JS_STR_CHUNK when it is full, at the end of the chunk, or at the closing quote. */
#include "util/jstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    ST_VALUE,      /* a value must follow (top level, after ':' or after ',' in an array) */
    ST_ARR_FIRST,  /* after '[': a value or ']' */
    ST_OBJ_FIRST,  /* after '{': a member name or '}' */
    ST_OBJ_NEXT,   /* after ',' in an object: a member name */
    ST_COLON,      /* after a member name */
    ST_AFTER,      /* after a value inside a container: ',' or the closing bracket */
    ST_END,        /* after the top-level value: whitespace only */
    ST_STRING,
    ST_NUMBER,
    ST_LITERAL,
    ST_ERROR
};

/* number sub-states (RFC 8259 grammar) */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

void jstream_init(jstream_t *js)
{
    /* only the scalar fields: the buffers are written before they are read */
    js->in = "";   /* never NULL: finish() points raw into it, also before any feed */
    js->in_len = js->pos = 0;
    js->ended = 0;
    js->raw = NULL;
    js->raw_len = 0;
    js->state = ST_VALUE;
    js->depth = 0;
    js->pending = 0;
    js->sub = 0;
    js->in_key = js->esc = js->hex_n = 0;
    js->hex = js->hi = 0;
    js->out_len = 0;
    js->chunk = NULL;
    js->chunk_len = 0;
    js->key_len = 0;
    js->key[0] = '\0';
    js->key_truncated = 0;
    js->scalar_len = 0;
    js->scalar[0] = '\0';
    js->scalar_truncated = 0;
    js->lit = NULL;
    js->lit_pos = js->lit_event = 0;
    js->offset = 0;
    js->line = 1;
    js->col = 1;
    js->error[0] = '\0';
}

void jstream_feed(jstream_t *js, const char *p, size_t n)
{
    js->in = p ? p : "";
    js->in_len = p ? n : 0;
    js->pos = 0;
}

void jstream_end(jstream_t *js) { js->ended = 1; }

int jstream_depth(const jstream_t *js) { return js->depth; }

int jstream_in_object(const jstream_t *js)
{
    if (js->depth <= 0) return 0;
    int d = js->depth - 1;
    return (js->kinds[d / 8] >> (d % 8)) & 1;
}

unsigned long long jstream_offset(const jstream_t *js) { return js->offset; }

static js_event_t fail(jstream_t *js, const char *what)
{
    if (js->state == ST_ERROR) return JS_ERROR;
    js->state = ST_ERROR;
    if (js->pos >= js->in_len && js->ended) {
        snprintf(js->error, sizeof js->error, "invalid JSON: %s at the end of input after %llu bytes", what,
                 js->offset);
        return JS_ERROR;
    }
    char near[24];
    size_t n = 0;
    for (size_t i = js->pos; i < js->in_len && n < sizeof near - 1; i++) {
        unsigned char c = (unsigned char)js->in[i];
        near[n++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    near[n] = '\0';
    snprintf(js->error, sizeof js->error, "invalid JSON at line %lu, column %lu (byte %llu): %s, near '%s'",
             js->line, js->col, js->offset, what, near);
    return JS_ERROR;
}

static void consume(jstream_t *js)
{
    if (js->in[js->pos] == '\n') { js->line++; js->col = 1; }
    else js->col++;
    js->pos++;
    js->offset++;
}

static int push(jstream_t *js, int object)
{
    if (js->depth >= JS_MAX_DEPTH) return -1;
    int d = js->depth++;
    if (object) js->kinds[d / 8] |= (unsigned char)(1u << (d % 8));
    else js->kinds[d / 8] &= (unsigned char)~(1u << (d % 8));
    return 0;
}

/* The state after a complete value. */
static void value_done(jstream_t *js)
{
    js->state = js->depth == 0 ? ST_END : ST_AFTER;
}

/* Append one decoded byte to the key or the value chunk. */
static void emit(jstream_t *js, unsigned char c)
{
    if (js->in_key) {
        if (js->key_len < JS_KEY_MAX) js->key[js->key_len++] = (char)c;
        else js->key_truncated = 1;
    } else {
        js->out[js->out_len++] = (char)c;
    }
}

static void emit_cp(jstream_t *js, unsigned long cp)
{
    if (cp < 0x80) emit(js, (unsigned char)cp);
    else if (cp < 0x800) {
        emit(js, (unsigned char)(0xC0 | (cp >> 6)));
        emit(js, (unsigned char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        emit(js, (unsigned char)(0xE0 | (cp >> 12)));
        emit(js, (unsigned char)(0x80 | ((cp >> 6) & 0x3F)));
        emit(js, (unsigned char)(0x80 | (cp & 0x3F)));
    } else {
        emit(js, (unsigned char)(0xF0 | (cp >> 18)));
        emit(js, (unsigned char)(0x80 | ((cp >> 12) & 0x3F)));
        emit(js, (unsigned char)(0x80 | ((cp >> 6) & 0x3F)));
        emit(js, (unsigned char)(0x80 | (cp & 0x3F)));
    }
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One byte inside a string. Returns 0 to go on, 1 at the closing quote, -1 on an error
 * (message set). The byte is consumed in every case but the error. */
static int string_byte(jstream_t *js, unsigned char c, const char **why)
{
    if (js->hex_n) {
        int v = hexval(c);
        if (v < 0) { *why = "invalid \\u escape"; return -1; }
        js->hex = js->hex * 16 + (unsigned)v;
        if (--js->hex_n) return 0;
        unsigned u = js->hex;
        if (js->hi) {
            if (u < 0xDC00 || u > 0xDFFF) { *why = "a high surrogate without its low surrogate"; return -1; }
            emit_cp(js, 0x10000 + (((unsigned long)js->hi - 0xD800) << 10) + (u - 0xDC00));
            js->hi = 0;
        } else if (u >= 0xD800 && u <= 0xDBFF) {
            js->hi = u;
        } else if (u >= 0xDC00 && u <= 0xDFFF) {
            *why = "a lone low surrogate";
            return -1;
        } else {
            emit_cp(js, u);
        }
        return 0;
    }
    if (js->esc) {
        js->esc = 0;
        if (js->hi && c != 'u') { *why = "a high surrogate without its low surrogate"; return -1; }
        switch (c) {
        case '"': emit(js, '"'); return 0;
        case '\\': emit(js, '\\'); return 0;
        case '/': emit(js, '/'); return 0;
        case 'b': emit(js, '\b'); return 0;
        case 'f': emit(js, '\f'); return 0;
        case 'n': emit(js, '\n'); return 0;
        case 'r': emit(js, '\r'); return 0;
        case 't': emit(js, '\t'); return 0;
        case 'u': js->hex_n = 4; js->hex = 0; return 0;
        default: *why = "invalid escape"; return -1;
        }
    }
    if (c == '\\') { js->esc = 1; return 0; }
    if (js->hi) { *why = "a high surrogate without its low surrogate"; return -1; }
    if (c == '"') return 1;
    emit(js, c);
    return 0;
}

/* Can c continue the number in sub-state *sub? Updates *sub. */
static int number_byte(int *sub, unsigned char c)
{
    int digit = c >= '0' && c <= '9';
    switch (*sub) {
    case N_MINUS: if (c == '0') { *sub = N_ZERO; return 1; } if (digit) { *sub = N_INT; return 1; } return 0;
    case N_ZERO: if (c == '.') { *sub = N_DOT; return 1; } if (c == 'e' || c == 'E') { *sub = N_E; return 1; } return 0;
    case N_INT: if (digit) return 1; if (c == '.') { *sub = N_DOT; return 1; }
                if (c == 'e' || c == 'E') { *sub = N_E; return 1; } return 0;
    case N_DOT: if (digit) { *sub = N_FRAC; return 1; } return 0;
    case N_FRAC: if (digit) return 1; if (c == 'e' || c == 'E') { *sub = N_E; return 1; } return 0;
    case N_E: if (c == '+' || c == '-') { *sub = N_ESIGN; return 1; } if (digit) { *sub = N_EXP; return 1; } return 0;
    case N_ESIGN: if (digit) { *sub = N_EXP; return 1; } return 0;
    case N_EXP: return digit;
    }
    return 0;
}

static int number_complete(int sub)
{
    return sub == N_ZERO || sub == N_INT || sub == N_FRAC || sub == N_EXP;
}

static void scalar_byte(jstream_t *js, unsigned char c)
{
    if (js->scalar_len < JS_SCALAR_MAX) {
        js->scalar[js->scalar_len++] = (char)c;
        js->scalar[js->scalar_len] = '\0';
    } else {
        js->scalar_truncated = 1;
    }
}

/* Start a value at byte c (not consumed yet). Returns an event to return now, or
 * JS_NEED_MORE to go on scanning. */
static js_event_t value_start(jstream_t *js, unsigned char c)
{
    switch (c) {
    case '{':
        if (push(js, 1) != 0) return fail(js, "nested deeper than 1000 levels");
        consume(js);
        js->state = ST_OBJ_FIRST;
        return JS_OBJ_BEGIN;
    case '[':
        if (push(js, 0) != 0) return fail(js, "nested deeper than 1000 levels");
        consume(js);
        js->state = ST_ARR_FIRST;
        return JS_ARR_BEGIN;
    case '"':
        consume(js);
        js->state = ST_STRING;
        js->in_key = 0;
        js->esc = js->hex_n = 0;
        js->hi = 0;
        js->out_len = 0;
        return JS_STR_BEGIN;
    case 't': js->lit = "true"; js->lit_event = JS_TRUE; break;
    case 'f': js->lit = "false"; js->lit_event = JS_FALSE; break;
    case 'n': js->lit = "null"; js->lit_event = JS_NULL; break;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            js->state = ST_NUMBER;
            js->sub = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
            js->scalar_len = 0;
            js->scalar_truncated = 0;
            scalar_byte(js, c);
            consume(js);
            return JS_NEED_MORE;
        }
        return fail(js, "expected a value");
    }
    js->state = ST_LITERAL;
    js->lit_pos = 1;
    consume(js);
    return JS_NEED_MORE;
}

/* Set js->chunk from the collected string bytes and reset the collection. */
static js_event_t flush_chunk(jstream_t *js)
{
    js->chunk = js->out;
    js->chunk_len = js->out_len;
    js->out_len = 0;
    return JS_STR_CHUNK;
}

static js_event_t finish(jstream_t *js, const char *start, js_event_t ev)
{
    js->raw = start ? start : js->in + js->pos;
    js->raw_len = start ? (size_t)(js->in + js->pos - start) : 0;
    return ev;
}

js_event_t jstream_next(jstream_t *js)
{
    if (js->state == ST_ERROR) return finish(js, NULL, JS_ERROR);
    if (js->pending) {
        js_event_t ev = (js_event_t)js->pending;
        js->pending = 0;
        return finish(js, NULL, ev);
    }
    /* a token continued from the previous chunk starts at the first byte; otherwise raw starts
     * at the first non-whitespace byte */
    const char *start = (js->state == ST_STRING || js->state == ST_NUMBER || js->state == ST_LITERAL) &&
                        js->pos < js->in_len ? js->in + js->pos : NULL;
    while (js->pos < js->in_len) {
        unsigned char c = (unsigned char)js->in[js->pos];
        const char *why = NULL;
        switch (js->state) {
        case ST_STRING: {
            /* fast path: plain bytes of a value string */
            if (!js->in_key && !js->esc && !js->hex_n && !js->hi) {
                size_t room = JS_CHUNK_MAX - js->out_len;
                size_t i = js->pos, lim = js->in_len - js->pos < room ? js->in_len : js->pos + room;
                while (i < lim && js->in[i] != '"' && js->in[i] != '\\' && js->in[i] != '\n') i++;
                if (i > js->pos) {
                    size_t n = i - js->pos;
                    memcpy(js->out + js->out_len, js->in + js->pos, n);
                    js->out_len += n;
                    js->pos += n;
                    js->offset += n;
                    js->col += n;
                    if (js->out_len >= JS_CHUNK_MAX) return finish(js, start, flush_chunk(js));
                    continue;
                }
            }
            int r = string_byte(js, c, &why);
            if (r < 0) return finish(js, start, fail(js, why));
            consume(js);
            if (r == 1) {
                if (js->in_key) {
                    js->key[js->key_len] = '\0';
                    js->state = ST_COLON;
                    return finish(js, start, JS_KEY);
                }
                value_done(js);
                if (js->out_len) {
                    js->pending = JS_STR_END;
                    return finish(js, start, flush_chunk(js));
                }
                return finish(js, start, JS_STR_END);
            }
            if (!js->in_key && js->out_len >= JS_CHUNK_MAX) return finish(js, start, flush_chunk(js));
            continue;
        }
        case ST_NUMBER:
            if (number_byte(&js->sub, c)) {
                scalar_byte(js, c);
                consume(js);
                continue;
            }
            if (!number_complete(js->sub)) return finish(js, start, fail(js, "invalid number"));
            value_done(js);
            return finish(js, start, JS_NUMBER);
        case ST_LITERAL:
            if (c != (unsigned char)js->lit[js->lit_pos]) return finish(js, start, fail(js, "invalid literal"));
            consume(js);
            if (js->lit[++js->lit_pos] == '\0') {
                value_done(js);
                return finish(js, start, (js_event_t)js->lit_event);
            }
            continue;
        default:
            break;
        }
        /* structural states */
        if (c <= 0x20) { consume(js); continue; }
        if (!start) start = js->in + js->pos;
        switch (js->state) {
        case ST_VALUE: {
            js_event_t ev = value_start(js, c);
            if (ev != JS_NEED_MORE) return finish(js, start, ev);
            continue;
        }
        case ST_ARR_FIRST:
            if (c == ']') {
                consume(js);
                js->depth--;
                value_done(js);
                return finish(js, start, JS_ARR_END);
            } else {
                js_event_t ev = value_start(js, c);
                if (ev != JS_NEED_MORE) return finish(js, start, ev);
            }
            continue;
        case ST_OBJ_FIRST:
            if (c == '}') {
                consume(js);
                js->depth--;
                value_done(js);
                return finish(js, start, JS_OBJ_END);
            }
            /* fall through */
        case ST_OBJ_NEXT:
            if (c != '"') return finish(js, start, fail(js, "expected a member name in double quotes"));
            consume(js);
            js->state = ST_STRING;
            js->in_key = 1;
            js->esc = js->hex_n = 0;
            js->hi = 0;
            js->key_len = 0;
            js->key_truncated = 0;
            continue;
        case ST_COLON:
            if (c != ':') return finish(js, start, fail(js, "expected ':' after the member name"));
            consume(js);
            js->state = ST_VALUE;
            continue;
        case ST_AFTER:
            if (c == ',') {
                consume(js);
                js->state = jstream_in_object(js) ? ST_OBJ_NEXT : ST_VALUE;
                continue;
            }
            if (c == (jstream_in_object(js) ? '}' : ']')) {
                int obj = jstream_in_object(js);
                consume(js);
                js->depth--;
                value_done(js);
                return finish(js, start, obj ? JS_OBJ_END : JS_ARR_END);
            }
            return finish(js, start, fail(js, jstream_in_object(js) ? "expected ',' or '}'" : "expected ',' or ']'"));
        case ST_END:
            return finish(js, start, fail(js, "trailing data after the JSON value"));
        }
    }
    /* the chunk is used up */
    if (js->state == ST_STRING && !js->in_key && js->out_len) return finish(js, start, flush_chunk(js));
    if (!js->ended) return finish(js, start, JS_NEED_MORE);
    if (js->state == ST_NUMBER && number_complete(js->sub)) {
        value_done(js);
        return finish(js, start, JS_NUMBER);
    }
    if (js->state == ST_END) return finish(js, start, JS_DONE);
    if (js->offset == 0 || (js->state == ST_VALUE && js->depth == 0))
        return finish(js, start, fail(js, "no JSON value"));
    return finish(js, start, fail(js, "unexpected end"));
}

/* ---- jcap ---------------------------------------------------------------------------------- */

void jcap_begin(jcap_t *c, buf_t *buf, size_t cap, const jstream_t *js)
{
    c->buf = buf;
    c->cap = cap;
    c->base = jstream_depth(js);
    c->active = 1;
    c->started = 0;
    c->truncated = 0;
    c->first = 0;
}

static void cap_append(jcap_t *c, const char *p, size_t n)
{
    if (!c->started) {
        /* the separator before the value (',' or ':') and whitespace are not part of it */
        while (n && ((unsigned char)*p <= 0x20 || *p == ',' || *p == ':')) { p++; n--; }
        if (!n) return;
        c->started = 1;
        c->first = *p;
    }
    if (!c->buf) return;
    size_t room = c->buf->len < c->cap ? c->cap - c->buf->len : 0;
    if (n > room) { n = room; c->truncated = 1; }
    if (n) buf_append(c->buf, p, n);
}

int jcap_feed(jcap_t *c, js_event_t ev, const jstream_t *js)
{
    if (!c->active) return 0;
    int depth = jstream_depth(js);
    if ((ev == JS_ARR_END || ev == JS_OBJ_END) && depth < c->base) {
        c->active = 0;   /* the container closed: there was no value */
        return -1;
    }
    cap_append(c, js->raw, js->raw_len);
    int done = 0;
    switch (ev) {
    case JS_NUMBER: case JS_TRUE: case JS_FALSE: case JS_NULL: case JS_STR_END:
    case JS_OBJ_END: case JS_ARR_END:
        done = depth == c->base;
        break;
    default:
        break;
    }
    if (done) c->active = 0;
    return done;
}

/* ---- jchain --------------------------------------------------------------------------------- */

void jchain_init(jchain_t *c, int levels, jchain_fn fn, void *arg)
{
    c->levels = levels < 1 ? 1 : levels > JCHAIN_MAX ? JCHAIN_MAX : levels;
    c->fn = fn;
    c->arg = arg;
    for (int i = 0; i < JCHAIN_MAX; i++) c->routing[i] = c->dead[i] = 0;
    jstream_init(&c->lv[0]);
}

static int pump(jchain_t *c, int k)
{
    jstream_t *js = &c->lv[k];
    for (;;) {
        js_event_t ev = jstream_next(js);
        if (ev == JS_NEED_MORE) {
            /* part of a token was read: a caller copying raw bytes needs them */
            if (js->raw_len && !c->routing[k] && c->fn(c->arg, k, ev, js) != 0) return -1;
            return 0;
        }
        if (c->routing[k]) {
            if (ev == JS_STR_CHUNK) {
                if (!c->dead[k + 1]) {
                    jstream_feed(&c->lv[k + 1], js->chunk, js->chunk_len);
                    if (pump(c, k + 1) != 0) return -1;
                }
                continue;
            }
            if (ev == JS_STR_END) {
                c->routing[k] = 0;
                if (!c->dead[k + 1]) {
                    jstream_end(&c->lv[k + 1]);
                    if (pump(c, k + 1) != 0) return -1;
                }
                continue;
            }
        }
        if (ev == JS_STR_BEGIN && jstream_depth(js) == 0 && k + 1 < c->levels) {
            c->routing[k] = 1;
            c->dead[k + 1] = 0;
            jstream_init(&c->lv[k + 1]);
            if (c->fn(c->arg, k, ev, js) != 0) return -1;
            continue;
        }
        if (ev == JS_ERROR) c->dead[k] = 1;
        if (c->fn(c->arg, k, ev, js) != 0) return -1;
        if (ev == JS_ERROR || ev == JS_DONE) return 0;
    }
}

int jchain_feed(jchain_t *c, const char *p, size_t n)
{
    if (c->dead[0]) return 0;
    jstream_feed(&c->lv[0], p, n);
    return pump(c, 0);
}

int jchain_end(jchain_t *c)
{
    if (c->dead[0]) return 0;
    jstream_end(&c->lv[0]);
    return pump(c, 0);
}

/* UTF-8 of code point cp into o (at least 4 bytes); returns the length. */
static size_t utf8_put(unsigned long cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

int json_string_decode(const char *lit, size_t n, buf_t *out)
{
    const char *p = lit, *end = lit + n;
    while (p < end && (unsigned char)*p <= 0x20) p++;
    if (p == end || *p++ != '"') return -1;
    /* the same rules as the tokenizer: escapes, surrogate pairs, raw bytes as they are */
    /* buf_reserve leaves out terminated, so "" (nothing appended) reads back as an empty string */
    if (buf_reserve(out, (size_t)(end - p)) != 0) return -1;
    for (;;) {
        const char *q = p;
        while (q < end && *q != '"' && *q != '\\') q++;
        if (q > p) buf_append(out, p, (size_t)(q - p));
        if (q == end) return -1;
        p = q + 1;
        if (*q == '"') break;
        if (p == end) return -1;
        char c = *p++, tmp[4];
        switch (c) {
        case '"': case '\\': case '/': buf_putc(out, c); continue;
        case 'b': buf_putc(out, '\b'); continue;
        case 'f': buf_putc(out, '\f'); continue;
        case 'n': buf_putc(out, '\n'); continue;
        case 'r': buf_putc(out, '\r'); continue;
        case 't': buf_putc(out, '\t'); continue;
        case 'u': break;
        default: return -1;
        }
        unsigned u, lo;
        if (hex4(p, end, &u) != 0) return -1;
        p += 4;
        unsigned long cp = u;
        if (u >= 0xDC00 && u <= 0xDFFF) return -1;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            p += 6;
            cp = 0x10000 + (((unsigned long)u - 0xD800) << 10) + (lo - 0xDC00);
        }
        buf_append(out, tmp, utf8_put(cp, tmp));
    }
    while (p < end && (unsigned char)*p <= 0x20) p++;
    return p == end && !out->oom ? 0 : -1;
}
