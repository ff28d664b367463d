/* fuzz_jstream.c — the streaming JSON tokenizer (util/jstream.c) that reads EventTrigger's
 * request body as the socket delivers it, over arbitrary bytes.
 *
 * The input is tokenized three ways: fed whole, fed in chunks whose sizes (0 included) come
 * from a hash of the input, and (for short inputs) one byte at a time. Each run is reduced to
 * its token sequence — strings and their chunks joined into one token, since where a string is
 * cut depends on the chunks — with the error's reason and offset at the end if there is one.
 *
 * Invariants:
 * - however the bytes are chunked, the token sequence, the verdict, the error's reason and
 *   offset and the consumed byte count are the same;
 * - decoded string chunks are at most JS_CHUNK_MAX bytes;
 * - verdict against cJSON (read as server.c does, nothing but bytes <= 0x20 after the value):
 *   a document the tokenizer accepts, cJSON accepts, and the value the tokens build prints as
 *   cJSON's does (unless a name or number was longer than the tokenizer keeps); a document
 *   cJSON refuses, the tokenizer refuses; the tokenizer may refuse what cJSON accepts only at
 *   a number RFC 8259 does not allow (cJSON reads any strtod prefix: 01, 1., .5, +1) or at a
 *   \u escape whose four characters are not hex digits (cJSON reads it as U+0000). */
#include "fuzz.h"

#include <cjson/cJSON.h>

#include "util/buf.h"
#include "util/jstream.h"

/* What one tokenizing run saw. */
typedef struct run {
    buf_t  tokens;      /* the token sequence, serialised */
    int    error;       /* ended in JS_ERROR */
    char   reason[200]; /* error text without its "near '...'" part (that shows the current chunk) */
    unsigned long long offset;
    cJSON *value;       /* the value the tokens build (NULL on error or truncation) */
    int    truncated;   /* a name or number was longer than the tokenizer keeps */
} run_t;

/* Building a cJSON value from the tokens. */
typedef struct builder {
    cJSON *stack[JS_MAX_DEPTH + 2];
    int    depth;
    cJSON *root;
    char  *key;         /* pending member name */
    buf_t  str;         /* string being decoded */
    int    failed;
} builder_t;

static void tok(buf_t *b, char kind, const char *p, size_t n)
{
    char head[32];
    int hl = snprintf(head, sizeof head, "%c%zu:", kind, n);
    if (buf_append(b, head, (size_t)hl) != 0 || (n && buf_append(b, p, n) != 0)) abort();
}

static void add(builder_t *bd, cJSON *item)
{
    if (!item) { bd->failed = 1; return; }
    if (bd->depth == 0) {
        FUZZ_CHECK(!bd->root, "a second top-level value");
        bd->root = item;
    } else if (cJSON_IsObject(bd->stack[bd->depth - 1])) {
        FUZZ_CHECK(bd->key, "an object member without a name");
        cJSON_AddItemToObject(bd->stack[bd->depth - 1], bd->key, item);
    } else {
        cJSON_AddItemToArray(bd->stack[bd->depth - 1], item);
    }
    free(bd->key);
    bd->key = NULL;
}

/* One event into the token sequence and the builder. */
static void on_event(run_t *r, builder_t *bd, js_event_t ev, const jstream_t *js)
{
    cJSON *item;
    switch (ev) {
    case JS_OBJ_BEGIN:
    case JS_ARR_BEGIN:
        tok(&r->tokens, ev == JS_OBJ_BEGIN ? '{' : '[', "", 0);
        item = ev == JS_OBJ_BEGIN ? cJSON_CreateObject() : cJSON_CreateArray();
        add(bd, item);
        FUZZ_CHECK(bd->depth <= JS_MAX_DEPTH, "nested deeper than JS_MAX_DEPTH");
        bd->stack[bd->depth++] = item;
        FUZZ_CHECK(jstream_depth(js) == bd->depth, "depth %d after %d opens", jstream_depth(js), bd->depth);
        FUZZ_CHECK(jstream_in_object(js) == (ev == JS_OBJ_BEGIN), "innermost container kind");
        break;
    case JS_OBJ_END:
    case JS_ARR_END:
        tok(&r->tokens, ev == JS_OBJ_END ? '}' : ']', "", 0);
        FUZZ_CHECK(bd->depth > 0 && cJSON_IsObject(bd->stack[bd->depth - 1]) == (ev == JS_OBJ_END),
                   "a close that matches no open container");
        bd->depth--;
        break;
    case JS_KEY:
        tok(&r->tokens, js->key_truncated ? 'K' : 'k', js->key, js->key_len);
        FUZZ_CHECK(js->key_len <= JS_KEY_MAX && !bd->key, "member name");
        r->truncated |= js->key_truncated;
        bd->key = fuzz_strndup((const uint8_t *)js->key, js->key_len);
        break;
    case JS_STR_BEGIN:
        bd->str.len = 0;
        break;
    case JS_STR_CHUNK:
        FUZZ_CHECK(js->chunk_len <= JS_CHUNK_MAX, "a string chunk of %zu bytes", js->chunk_len);
        if (js->chunk_len && buf_append(&bd->str, js->chunk, js->chunk_len) != 0) abort();
        break;
    case JS_STR_END:
        tok(&r->tokens, 's', bd->str.data, bd->str.len);
        {
            char *s = fuzz_strndup((const uint8_t *)(bd->str.data ? bd->str.data : ""), bd->str.len);
            add(bd, cJSON_CreateString(s));
            free(s);
        }
        break;
    case JS_NUMBER: {
        tok(&r->tokens, js->scalar_truncated ? 'N' : 'n', js->scalar, js->scalar_len);
        r->truncated |= js->scalar_truncated;
        /* the number's text must be one cJSON reads whole */
        const char *end = NULL;
        cJSON *n = cJSON_ParseWithLengthOpts(js->scalar, js->scalar_len, &end, 0);
        if (!js->scalar_truncated)
            FUZZ_CHECK(cJSON_IsNumber(n) && end == js->scalar + js->scalar_len, "number text '%s' cJSON does not read",
                       js->scalar);
        add(bd, n ? n : cJSON_CreateNumber(0));
        break;
    }
    case JS_TRUE: tok(&r->tokens, 't', "", 0); add(bd, cJSON_CreateTrue()); break;
    case JS_FALSE: tok(&r->tokens, 'f', "", 0); add(bd, cJSON_CreateFalse()); break;
    case JS_NULL: tok(&r->tokens, 'z', "", 0); add(bd, cJSON_CreateNull()); break;
    default: break;
    }
}

/* Drain events until the chunk is used up; 1 when the run is over (done or error). */
static int drain(run_t *r, builder_t *bd, jstream_t *js)
{
    for (;;) {
        js_event_t ev = jstream_next(js);
        if (ev == JS_NEED_MORE) return 0;
        if (ev == JS_DONE) {
            FUZZ_CHECK(bd->depth == 0 && bd->root, "done with %d containers open", bd->depth);
            tok(&r->tokens, '.', "", 0);
            return 1;
        }
        if (ev == JS_ERROR) {
            FUZZ_CHECK(js->error[0], "an error without a message");
            r->error = 1;
            snprintf(r->reason, sizeof r->reason, "%s", js->error);
            char *near = strstr(r->reason, ", near '");
            if (near) *near = '\0';
            FUZZ_CHECK(jstream_next(js) == JS_ERROR, "an event after an error");
            return 1;
        }
        on_event(r, bd, ev, js);
    }
}

/* Tokenize data[0..size) in chunks: mode 0 whole, 1 hashed sizes, 2 one byte each. */
static void tokenize(const uint8_t *data, size_t size, int mode, run_t *r)
{
    memset(r, 0, sizeof *r);
    builder_t *bd = calloc(1, sizeof *bd);
    jstream_t *js = malloc(sizeof *js);
    if (!bd || !js) abort();
    jstream_init(js);
    uint64_t seed = fuzz_chunk_seed(data, size);
    size_t pos = 0;
    int over = 0;
    while (!over && pos < size) {
        size_t n = size - pos;
        if (mode == 1) {
            n = fuzz_chunk_len(&seed, 8, size - pos);
        } else if (mode == 2) {
            n = 1;
        }
        /* an exact-size copy: a read past the chunk is caught */
        uint8_t *chunk = fuzz_memdup(data + pos, n);
        jstream_feed(js, (const char *)chunk, n);
        over = drain(r, bd, js);
        free(chunk);
        pos += n;
    }
    if (!over) {
        jstream_end(js);
        jstream_feed(js, "", 0);
        over = drain(r, bd, js);
        FUZZ_CHECK(over, "more input wanted after the end");
    }
    if (r->error) tok(&r->tokens, '!', r->reason, strlen(r->reason));
    r->offset = jstream_offset(js);
    if (!r->error && !bd->failed) {
        r->value = bd->root;
        bd->root = NULL;
    }
    cJSON_Delete(bd->root);
    free(bd->key);
    buf_free(&bd->str);
    free(bd);
    free(js);
}

static void run_free(run_t *r)
{
    buf_free(&r->tokens);
    cJSON_Delete(r->value);
}

static void check_same(const run_t *a, const run_t *b, const char *how)
{
    FUZZ_CHECK(a->error == b->error, "%s: verdict %d, whole: %d (%s%s)", how, b->error, a->error, a->reason, b->reason);
    FUZZ_CHECK(a->offset == b->offset, "%s: %llu bytes consumed, whole: %llu", how, b->offset, a->offset);
    FUZZ_CHECK(a->tokens.len == b->tokens.len && memcmp(a->tokens.data, b->tokens.data, a->tokens.len) == 0,
               "%s: other tokens: %.300s / whole: %.300s", how, b->tokens.data, a->tokens.data);
}

static int number_byte(uint8_t c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Is t[0..n) a number as RFC 8259 writes it? */
static int rfc_number(const uint8_t *t, size_t n)
{
    size_t i = 0;
    if (i < n && t[i] == '-') i++;
    if (i < n && t[i] == '0') i++;
    else if (i < n && t[i] >= '1' && t[i] <= '9') while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    else return 0;
    if (i < n && t[i] == '.') {
        i++;
        if (!(i < n && t[i] >= '0' && t[i] <= '9')) return 0;
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) i++;
        if (!(i < n && t[i] >= '0' && t[i] <= '9')) return 0;
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    }
    return i == n;
}

/* Did the tokenizer stop in a \u escape whose four characters are not all hex digits? cJSON
 * (parse_hex4) reads such an escape as U+0000 and accepts the document. */
static int at_lax_escape(const uint8_t *data, size_t size, unsigned long long off)
{
    size_t at = off < size ? (size_t)off : size;
    for (size_t k = 1; k <= 6 && k <= at; k++) {
        size_t u = at - k;
        if (u + 1 < size && data[u] == '\\' && data[u + 1] == 'u') {
            for (size_t h = u + 2; h < u + 6; h++) {
                if (h >= size) return 0;
                uint8_t c = data[h];
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return 1;
            }
            return 0;
        }
    }
    return 0;
}

/* Did the tokenizer stop at (or right after) a run of number characters that is not an RFC
 * number — the one place cJSON is laxer? */
static int at_lax_number(const uint8_t *data, size_t size, unsigned long long off)
{
    size_t at = off < size ? (size_t)off : size;
    size_t lo = at, hi = at;
    while (lo > 0 && number_byte(data[lo - 1])) lo--;
    while (hi < size && number_byte(data[hi])) hi++;
    return hi > lo && !rfc_number(data + lo, hi - lo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_t whole, split;
    tokenize(data, size, 0, &whole);
    tokenize(data, size, 1, &split);
    check_same(&whole, &split, "hashed chunks");
    run_free(&split);
    if (size <= 4096) {
        run_t bytes;
        tokenize(data, size, 2, &bytes);
        check_same(&whole, &bytes, "one byte at a time");
        run_free(&bytes);
    }

    /* cJSON's verdict, read as server.c reads a body */
    char *copy = (char *)fuzz_memdup(data, size);
    const char *end = NULL;
    cJSON *ref = cJSON_ParseWithLengthOpts(copy, size, &end, 0);
    if (ref) {
        for (const char *p = end; p < copy + size; p++)
            if ((unsigned char)*p > 0x20) { cJSON_Delete(ref); ref = NULL; break; }
    }
    if (!whole.error) {
        FUZZ_CHECK(ref, "the tokenizer accepts a document cJSON refuses");
        if (whole.value && !whole.truncated) {
            char *a = cJSON_PrintUnformatted(whole.value), *b = cJSON_PrintUnformatted(ref);
            FUZZ_CHECK(!a || !b || strcmp(a, b) == 0, "tokens build %.300s, cJSON reads %.300s", a, b);
            free(a);
            free(b);
        }
    } else if (ref) {
        FUZZ_CHECK(at_lax_number(data, size, whole.offset) ||
                       (strstr(whole.reason, "invalid \\u escape") && at_lax_escape(data, size, whole.offset)),
                   "the tokenizer refuses a document cJSON accepts: %s",
                   whole.reason);
    }
    cJSON_Delete(ref);
    free(copy);
    run_free(&whole);
    return 0;
}
