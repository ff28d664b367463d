/* jstream.h — incremental JSON tokenizer: bytes in, events out, no tree.
 *
 * Owns reading JSON whose size must not decide the memory it costs: EventTrigger's request
 * body (up to ~180 MiB for the host's largest batch, see docs/event-trigger.md) is fed in the
 * chunks the socket delivers, and each value is seen as events (object/array begin and end,
 * member name, string chunks, scalars). Strings are decoded as they stream (escapes, UTF-16
 * surrogate pairs → UTF-8) and handed out in chunks of at most JS_CHUNK_MAX bytes, so a
 * 100 MB string costs 4 KiB. Every event also reports the raw input bytes it consumed
 * (js->raw), which lets a caller copy a value's JSON text (jcap) or re-feed it elsewhere.
 *
 * Grammar: RFC 8259, with cJSON's two leniencies kept so that event bodies judged by the old
 * tree parser keep their verdict: any byte <= 0x20 outside strings is whitespace (a device's
 * trailing NUL terminator is harmless), and raw control bytes inside strings are accepted
 * (passed through; a NUL inside a string reaches the caller as a 0 byte it can detect).
 * Nesting deeper than JS_MAX_DEPTH, invalid escapes, lone surrogates and malformed numbers or
 * literals are errors with the byte offset, line and column.
 *
 * jchain stacks tokenizers for values that are JSON text inside a JSON string (the Functions
 * host's double encoding): when the top-level value of level k is a string, its decoded
 * content is parsed by level k+1. Not thread-safe; one per request. */
#ifndef ENVIROMON_JSTREAM_H
#define ENVIROMON_JSTREAM_H

#include <stddef.h>

#include "util/buf.h"

#define JS_MAX_DEPTH   1000   /* the nesting limit cJSON has */
#define JS_KEY_MAX     256    /* member names are kept up to this many bytes (see key_truncated) */
#define JS_SCALAR_MAX  64     /* number text kept (see scalar_truncated) */
#define JS_CHUNK_MAX   4096   /* decoded string bytes per JS_STR_CHUNK */

typedef enum js_event {
    JS_NEED_MORE = 0,  /* the input chunk is used up: jstream_feed more, or jstream_end */
    JS_OBJ_BEGIN, JS_OBJ_END, JS_ARR_BEGIN, JS_ARR_END,
    JS_KEY,            /* a member name: key/key_len (decoded) */
    JS_STR_BEGIN,      /* a string value starts */
    JS_STR_CHUNK,      /* decoded bytes of it: chunk/chunk_len (valid until the next call) */
    JS_STR_END,
    JS_NUMBER,         /* scalar/scalar_len: the number's text */
    JS_TRUE, JS_FALSE, JS_NULL,
    JS_DONE,           /* the value and what follows it were read to the end (after jstream_end) */
    JS_ERROR           /* error[] says what and where; every later call returns JS_ERROR */
} js_event_t;

typedef struct jstream {
    /* the current input chunk */
    const char   *in;
    size_t        in_len, pos;
    int           ended;
    /* raw input consumed by the last call, from its first non-whitespace byte */
    const char   *raw;
    size_t        raw_len;
    /* grammar */
    int           state, depth, pending, sub;
    unsigned char kinds[JS_MAX_DEPTH / 8 + 1];   /* bit set: object, clear: array */
    /* strings */
    int           in_key, esc, hex_n;
    unsigned      hex, hi;
    char          out[JS_CHUNK_MAX + 8];
    size_t        out_len;
    const char   *chunk;
    size_t        chunk_len;
    char          key[JS_KEY_MAX + 1];
    size_t        key_len;
    int           key_truncated;                 /* the name was longer than JS_KEY_MAX */
    /* scalars */
    char          scalar[JS_SCALAR_MAX + 1];
    size_t        scalar_len;
    int           scalar_truncated;
    const char   *lit;
    int           lit_pos, lit_event;
    /* position, for error messages */
    unsigned long long offset;
    unsigned long line, col;
    char          error[200];
} jstream_t;

void jstream_init(jstream_t *js);
/* The next input chunk (the previous one must be used up: JS_NEED_MORE). The bytes must stay
 * valid until the call that returns JS_NEED_MORE. */
void jstream_feed(jstream_t *js, const char *p, size_t n);
/* No more input follows. */
void jstream_end(jstream_t *js);
js_event_t jstream_next(jstream_t *js);
/* Containers open right now (after JS_OBJ_BEGIN of a top-level object: 1). */
int  jstream_depth(const jstream_t *js);
/* Whether the innermost open container is an object. */
int  jstream_in_object(const jstream_t *js);
/* Bytes consumed so far. */
unsigned long long jstream_offset(const jstream_t *js);

/* ---- jcap: copy (or skip) one value's JSON text from the raw bytes of its events ---- */
typedef struct jcap {
    buf_t  *buf;          /* NULL: skip the value */
    size_t  cap;          /* bytes kept at most; the rest is dropped (truncated = 1) */
    int     base, active, started, truncated;
    char    first;        /* the value's first byte: { [ " digit - t f n */
} jcap_t;

/* Start capturing the next value: right after its JS_KEY, or where an array element starts
 * (after JS_ARR_BEGIN or the end of the previous element). */
void jcap_begin(jcap_t *c, buf_t *buf, size_t cap, const jstream_t *js);
/* Call with every event (JS_NEED_MORE too) while c->active. Returns 1 when the value is
 * complete, -1 when the container ended without one (an empty array), else 0. */
int  jcap_feed(jcap_t *c, js_event_t ev, const jstream_t *js);

/* ---- jchain: JSON inside JSON strings ---- */
#define JCHAIN_MAX 8

/* Called with every event of the innermost level that is not being unwrapped (JS_NEED_MORE
 * only when it consumed part of a token, for jcap). level 0 reads
 * the input; JS_STR_BEGIN at depth 0 of a level below the last announces that the level's
 * value is a string whose content level+1 parses next. JS_ERROR at level k > 0 means that
 * string's content is not JSON (the rest of it is ignored). Return non-zero to abort. */
typedef int (*jchain_fn)(void *arg, int level, js_event_t ev, jstream_t *js);

typedef struct jchain {
    jstream_t lv[JCHAIN_MAX];
    int       levels;
    int       routing[JCHAIN_MAX];
    int       dead[JCHAIN_MAX];
    jchain_fn fn;
    void     *arg;
} jchain_t;

/* levels: 1 + how many string wrappings to undo (at most JCHAIN_MAX). */
void jchain_init(jchain_t *c, int levels, jchain_fn fn, void *arg);
/* Feed bytes of level 0; 0, or -1 when fn aborted. */
int  jchain_feed(jchain_t *c, const char *p, size_t n);
/* End of level 0's input. */
int  jchain_end(jchain_t *c);

/* Decode the JSON string literal lit[0..n) (quotes included) into out (appended). 0, or -1
 * when it is not a complete, valid string literal. */
int  json_string_decode(const char *lit, size_t n, buf_t *out);

#endif
