/* Unit tests: the incremental JSON tokenizer (util/jstream.c) — event traces independent of
 * how the input is split, validity against cJSON, escapes and surrogates, limits, error
 * positions, value capture from raw bytes, and chains that undo double encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/jstream.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run js over doc cut into pieces of `step` bytes (0: whole) and write a trace:
 * { } [ ] K<key> S<string> N<number> T F Z $ (done) or E (error). */
static int trace(const char *doc, size_t len, size_t step, buf_t *out)
{
    jstream_t *js = malloc(sizeof *js);
    assert_non_null(js);
    jstream_init(js);
    size_t off = 0;
    int rc = -1;
    int in_str = 0;
    for (;;) {
        js_event_t ev = jstream_next(js);
        if (ev == JS_NEED_MORE) {
            if (off >= len) { jstream_end(js); continue; }
            size_t n = step && len - off > step ? step : len - off;
            jstream_feed(js, doc + off, n);
            off += n;
            continue;
        }
        switch (ev) {
        case JS_OBJ_BEGIN: buf_putc(out, '{'); break;
        case JS_OBJ_END: buf_putc(out, '}'); break;
        case JS_ARR_BEGIN: buf_putc(out, '['); break;
        case JS_ARR_END: buf_putc(out, ']'); break;
        case JS_KEY: buf_putc(out, 'K'); buf_append(out, js->key, js->key_len); buf_putc(out, ' '); break;
        case JS_STR_BEGIN: buf_putc(out, 'S'); in_str = 1; break;
        case JS_STR_CHUNK: assert_true(in_str); buf_append(out, js->chunk, js->chunk_len); break;
        case JS_STR_END: buf_putc(out, ' '); in_str = 0; break;
        case JS_NUMBER: buf_putc(out, 'N'); buf_puts(out, js->scalar); buf_putc(out, ' '); break;
        case JS_TRUE: buf_putc(out, 'T'); break;
        case JS_FALSE: buf_putc(out, 'F'); break;
        case JS_NULL: buf_putc(out, 'Z'); break;
        case JS_DONE: buf_putc(out, '$'); rc = 0; goto out;
        case JS_ERROR: buf_putc(out, 'E'); goto out;
        default: fail_msg("unexpected event %d", ev);
        }
    }
out:
    free(js);
    return rc;
}

static int valid(const char *doc, size_t len)
{
    buf_t b = BUF_INIT;
    int rc = trace(doc, len, 0, &b);
    buf_free(&b);
    return rc == 0;
}

static void test_trace_independent_of_chunking(void **state)
{
    (void)state;
    const char *docs[] = {
        "{\"a\": [1, -2.5e+3, 0, true, false, null, \"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\"], \"b\": {}, \"c\": [], \"\": \"\"}",
        "  [ \"\\u00e9\\u20AC\\ud83d\\ude00\" , {\"k\\u0000ey\": 1e5}]  ",
        "\"just a string\"",
        "-0.0e-0",
        "[[[[[]]]]]",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        buf_t whole = BUF_INIT;
        assert_int_equal(trace(docs[i], strlen(docs[i]), 0, &whole), 0);
        for (size_t step = 1; step < 8; step++) {
            buf_t split = BUF_INIT;
            assert_int_equal(trace(docs[i], strlen(docs[i]), step, &split), 0);
            assert_int_equal(split.len, whole.len);
            assert_memory_equal(split.data, whole.data, whole.len);
            buf_free(&split);
        }
        buf_free(&whole);
    }
    buf_t b = BUF_INIT;
    const char *d = docs[1];
    assert_int_equal(trace(d, strlen(d), 3, &b), 0);
    /* é, €, U+1F600 as UTF-8; the key keeps its NUL */
    const char want[] = "[S\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 {Kk\0ey N1e5 }]$";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, sizeof want - 1);
    buf_free(&b);
}

static void test_long_strings_stream_in_chunks(void **state)
{
    (void)state;
    size_t n = 3 * JS_CHUNK_MAX + 17;
    char *doc = malloc(n + 3);
    assert_non_null(doc);
    doc[0] = '"';
    for (size_t i = 0; i < n; i++) doc[1 + i] = (char)('a' + i % 26);
    doc[n + 1] = '"';
    doc[n + 2] = '\0';
    jstream_t *js = malloc(sizeof *js);
    jstream_init(js);
    jstream_feed(js, doc, n + 2);
    jstream_end(js);
    assert_int_equal(jstream_next(js), JS_STR_BEGIN);
    size_t got = 0, chunks = 0;
    js_event_t ev;
    while ((ev = jstream_next(js)) == JS_STR_CHUNK) {
        assert_true(js->chunk_len <= JS_CHUNK_MAX);
        assert_memory_equal(js->chunk, doc + 1 + got, js->chunk_len);
        got += js->chunk_len;
        chunks++;
    }
    assert_int_equal(ev, JS_STR_END);
    assert_int_equal(got, n);
    assert_int_equal(chunks, 4);
    assert_int_equal(jstream_next(js), JS_DONE);
    free(js);
    free(doc);
}

/* Documents cJSON and jstream agree on. */
static void test_validity_agrees_with_cjson(void **state)
{
    (void)state;
    const char *docs[] = {
        "{}", "[]", "1", "-1", "0.5", "1e10", "1E-10", "true", "null", "\"\"", "  {\"a\":1}  ",
        "{\"a\":1,}", "[1,]", "[1 2]", "{\"a\" 1}", "{a:1}", "{\"a\":}", "[", "]", "{\"a\":1}}", "tru",
        "nul", "falsey", "\"abc", "\"\\x\"", "\"\\u12\"", "[1]x", "{} {}", "\"\\ud800\"",
        "\"\\udc00\"", "\"\\ud800\\u0041\"", "--1", "1..2", "1e", "1e+", ".5", "[-]", "[\"a\",\"b\",[{}]]",
        "{\"\\u0041\":\"\\u00e9\"}", "\x01{}\x02",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        cJSON *j = cJSON_ParseWithOpts(docs[i], NULL, 1);
        int want = j != NULL;
        cJSON_Delete(j);
        if (valid(docs[i], strlen(docs[i])) != want) fail_msg("doc %zu '%s': cJSON says %d", i, docs[i], want);
    }
    /* where jstream follows RFC 8259 instead of cJSON's leniency on numbers */
    const char *strict[] = {"01", "1.", "-01", "[1.]", "\"\\u12G4\"" /* cJSON reads U+0000 */};
    for (size_t i = 0; i < sizeof strict / sizeof strict[0]; i++)
        if (valid(strict[i], strlen(strict[i]))) fail_msg("'%s' accepted", strict[i]);
    /* raw control bytes inside strings and any byte <= 0x20 outside them are accepted (as cJSON) */
    const char raw[] = "{\"a\":\"x\ty\x01z\"}\0";
    assert_true(valid(raw, sizeof raw - 1));
}

static void test_depth_limit_and_errors(void **state)
{
    (void)state;
    char *deep = malloc(2 * JS_MAX_DEPTH + 3);
    for (int n = JS_MAX_DEPTH; n <= JS_MAX_DEPTH + 1; n++) {
        memset(deep, '[', (size_t)n);
        memset(deep + n, ']', (size_t)n);
        deep[2 * n] = '\0';
        assert_int_equal(valid(deep, (size_t)(2 * n)), n == JS_MAX_DEPTH);
    }
    free(deep);

    jstream_t *js = malloc(sizeof *js);
    jstream_init(js);
    const char *doc = "{\"a\": 1,\n  \"b\": [2, 3}";
    jstream_feed(js, doc, strlen(doc));
    jstream_end(js);
    js_event_t ev;
    while ((ev = jstream_next(js)) != JS_ERROR && ev != JS_DONE) {}
    assert_int_equal(ev, JS_ERROR);
    assert_non_null(strstr(js->error, "line 2, column 13 (byte 21)"));
    assert_non_null(strstr(js->error, "expected ',' or ']'"));
    assert_int_equal(jstream_next(js), JS_ERROR);   /* sticky */

    jstream_init(js);
    jstream_feed(js, "{\"a\":", 5);
    jstream_end(js);
    while ((ev = jstream_next(js)) != JS_ERROR && ev != JS_DONE) {}
    assert_non_null(strstr(js->error, "end of input after 5 bytes"));
    jstream_init(js);
    jstream_feed(js, "  ", 2);
    jstream_end(js);
    assert_int_equal(jstream_next(js), JS_ERROR);
    assert_non_null(strstr(js->error, "no JSON value"));
    free(js);
}

static void test_keys_and_scalars_truncate(void **state)
{
    (void)state;
    buf_t doc = BUF_INIT;
    buf_puts(&doc, "{\"");
    for (int i = 0; i < JS_KEY_MAX + 10; i++) buf_putc(&doc, 'k');
    buf_puts(&doc, "\":1");
    for (int i = 0; i < JS_SCALAR_MAX + 10; i++) buf_putc(&doc, '0' + i % 10);
    buf_puts(&doc, "}");
    jstream_t *js = malloc(sizeof *js);
    jstream_init(js);
    jstream_feed(js, doc.data, doc.len);
    jstream_end(js);
    assert_int_equal(jstream_next(js), JS_OBJ_BEGIN);
    assert_int_equal(jstream_next(js), JS_KEY);
    assert_int_equal(js->key_len, JS_KEY_MAX);
    assert_true(js->key_truncated);
    assert_int_equal(jstream_next(js), JS_NUMBER);
    assert_true(js->scalar_truncated);
    assert_int_equal(js->scalar_len, JS_SCALAR_MAX);
    assert_int_equal(jstream_next(js), JS_OBJ_END);
    assert_int_equal(jstream_next(js), JS_DONE);
    free(js);
    buf_free(&doc);
}

/* Capture each member value of an object from the raw bytes, whatever the chunking. */
static void test_capture_values(void **state)
{
    (void)state;
    const char *doc = "{ \"a\" : { \"x\" : [ 1 , \"s\\\"\" ] } , \"b\":-1.5e3,\"c\" :\"q\\u00e9\",\"d\":[ ],\"e\":null }";
    const char *want[] = {"{ \"x\" : [ 1 , \"s\\\"\" ] }", "-1.5e3", "\"q\\u00e9\"", "[ ]", "null"};
    for (size_t step = 1; step <= strlen(doc); step += (step < 10 ? 1 : 17)) {
        jstream_t *js = malloc(sizeof *js);
        jstream_init(js);
        size_t off = 0;
        buf_t got[5] = {BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT};
        jcap_t cap = {0};
        int which = -1;
        for (;;) {
            js_event_t ev = jstream_next(js);
            if (cap.active && jcap_feed(&cap, ev, js) != 0) which = -1;
            if (ev == JS_NEED_MORE) {
                if (off >= strlen(doc)) { jstream_end(js); continue; }
                size_t n = strlen(doc) - off < step ? strlen(doc) - off : step;
                jstream_feed(js, doc + off, n);
                off += n;
                continue;
            }
            if (ev == JS_DONE) break;
            assert_int_not_equal(ev, JS_ERROR);
            if (ev == JS_KEY && jstream_depth(js) == 1) {
                which = js->key[0] - 'a';
                jcap_begin(&cap, &got[which], 1000, js);
            }
        }
        /* whitespace between tokens may go, nothing else */
        for (int i = 0; i < 5; i++) {
            cJSON *a = cJSON_Parse(got[i].data), *b = cJSON_Parse(want[i]);
            if (!a || !cJSON_Compare(a, b, 1)) fail_msg("step %zu member %d: '%s'", step, i, got[i].data ? got[i].data : "");
            cJSON_Delete(a);
            cJSON_Delete(b);
            buf_free(&got[i]);
        }
        (void)which;
        free(js);
    }
}

static void test_capture_elements_and_limits(void **state)
{
    (void)state;
    const char *doc = "[{\"a\":1}, 22 ,\"x\"]";
    jstream_t *js = malloc(sizeof *js);
    jstream_init(js);
    jstream_feed(js, doc, strlen(doc));
    jstream_end(js);
    buf_t b = BUF_INIT;
    jcap_t cap;
    assert_int_equal(jstream_next(js), JS_ARR_BEGIN);
    const char *want[] = {"{\"a\":1}", "22", "\"x\""};
    for (int i = 0; i < 3; i++) {
        jcap_begin(&cap, &b, 4, js);
        int r;
        do r = jcap_feed(&cap, jstream_next(js), js); while (r == 0);
        assert_int_equal(r, 1);
        assert_int_equal(cap.truncated, strlen(want[i]) > 4);
        assert_int_equal(cap.first, want[i][0]);
        assert_int_equal(b.len, strlen(want[i]) > 4 ? 4 : strlen(want[i]));
        assert_memory_equal(b.data, want[i], b.len);
        buf_reset(&b);
    }
    /* no more elements: the array's end is reported as "no value" */
    jcap_begin(&cap, &b, 100, js);
    assert_int_equal(jcap_feed(&cap, jstream_next(js), js), -1);
    assert_int_equal(jstream_next(js), JS_DONE);
    buf_free(&b);
    free(js);
}

typedef struct chain_log { buf_t b; int abort_at; int n; } chain_log_t;

static int on_chain(void *arg, int level, js_event_t ev, jstream_t *js)
{
    chain_log_t *l = arg;
    if (ev == JS_NEED_MORE) return 0;
    if (ev == JS_STR_CHUNK) {   /* chunk boundaries depend on the input's: data only */
        buf_append(&l->b, js->chunk, js->chunk_len);
        return 0;
    }
    char tag[8];
    snprintf(tag, sizeof tag, "%d", level);
    buf_puts(&l->b, tag);
    switch (ev) {
    case JS_OBJ_BEGIN: buf_putc(&l->b, '{'); break;
    case JS_OBJ_END: buf_putc(&l->b, '}'); break;
    case JS_ARR_BEGIN: buf_putc(&l->b, '['); break;
    case JS_ARR_END: buf_putc(&l->b, ']'); break;
    case JS_KEY: buf_putc(&l->b, 'K'); buf_append(&l->b, js->key, js->key_len); break;
    case JS_STR_BEGIN: buf_putc(&l->b, 'S'); break;
    case JS_STR_END: buf_putc(&l->b, '.'); break;
    case JS_NUMBER: buf_putc(&l->b, 'N'); buf_puts(&l->b, js->scalar); break;
    case JS_DONE: buf_putc(&l->b, '$'); break;
    case JS_ERROR: buf_putc(&l->b, 'E'); break;
    default: buf_putc(&l->b, '?'); break;
    }
    if (ev != JS_STR_BEGIN) buf_putc(&l->b, ' ');
    return ++l->n == l->abort_at;
}

static void test_chain_undoes_double_encoding(void **state)
{
    (void)state;
    /* the host's form: a string holding an array of strings */
    const char *doc = "\"[\\\"{\\\\\\\"a\\\\\\\":1}\\\",2]\"";
    for (size_t step = 1; step <= strlen(doc); step++) {
        jchain_t *c = malloc(sizeof *c);
        chain_log_t l = {BUF_INIT, 0, 0};
        jchain_init(c, 3, on_chain, &l);
        for (size_t off = 0; off < strlen(doc); off += step)
            assert_int_equal(jchain_feed(c, doc + off, strlen(doc) - off < step ? strlen(doc) - off : step), 0);
        assert_int_equal(jchain_end(c), 0);
        /* level 1's element strings are not unwrapped: only a level's top-level value is */
        assert_string_equal(l.b.data, "0S1[ 1S{\"a\":1}1. 1N2 1] 1$ 0$ ");
        buf_free(&l.b);
        free(c);
    }
    /* content that is not JSON: an error at the inner level, then the outer level finishes */
    jchain_t *c = malloc(sizeof *c);
    chain_log_t l = {BUF_INIT, 0, 0};
    jchain_init(c, 2, on_chain, &l);
    const char *bad = "\"[1,\" ";
    assert_int_equal(jchain_feed(c, bad, strlen(bad)), 0);
    assert_int_equal(jchain_end(c), 0);
    assert_string_equal(l.b.data, "0S1[ 1N1 1E 0$ ");
    buf_free(&l.b);
    /* an empty string: the inner level ends without ever being fed (found by fuzz_event_batch:
     * its raw pointer was computed from a NULL input, undefined behaviour) */
    l = (chain_log_t){BUF_INIT, 0, 0};
    jchain_init(c, 2, on_chain, &l);
    assert_int_equal(jchain_feed(c, "\"\"", 2), 0);
    assert_int_equal(jchain_end(c), 0);
    assert_string_equal(l.b.data, "0S1E 0$ ");
    buf_free(&l.b);
    jstream_t *js = malloc(sizeof *js);
    jstream_init(js);
    jstream_end(js);
    assert_int_equal(jstream_next(js), JS_ERROR);
    assert_non_null(js->raw);
    assert_int_equal(js->raw_len, 0);
    assert_non_null(strstr(js->error, "no JSON value"));
    jstream_init(js);
    jstream_feed(js, NULL, 0);
    assert_int_equal(jstream_next(js), JS_NEED_MORE);
    assert_non_null(js->raw);
    free(js);
    /* beyond the last level a string is just a string */
    l = (chain_log_t){BUF_INIT, 0, 0};
    jchain_init(c, 1, on_chain, &l);
    assert_int_equal(jchain_feed(c, "\"[]\"", 4), 0);
    assert_int_equal(jchain_end(c), 0);
    assert_string_equal(l.b.data, "0S[]0. 0$ ");
    buf_free(&l.b);
    /* the callback can stop the chain */
    l = (chain_log_t){BUF_INIT, 2, 0};
    jchain_init(c, 2, on_chain, &l);
    assert_int_equal(jchain_feed(c, "[1,2,3]", 7), -1);
    buf_free(&l.b);
    free(c);
}

static void test_string_decode(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    /* an empty string into a fresh buffer: the data is "" (found by fuzz_event_batch: the
     * buffer was allocated but never terminated, and event_body read an empty member value
     * such as "deviceId": "" from uninitialised memory) */
    char empty[120];
    memset(empty, ' ', sizeof empty);
    memcpy(empty, "\"\"", 2);
    assert_int_equal(json_string_decode(empty, sizeof empty, &b), 0);
    assert_int_equal(b.len, 0);
    assert_non_null(b.data);
    assert_int_equal(b.data[0], '\0');
    buf_free(&b);
    b = (buf_t)BUF_INIT;
    assert_int_equal(json_string_decode("\"a\\u0000b\\n\"", 12, &b), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "a\0b\n", 4);
    buf_reset(&b);
    assert_int_equal(json_string_decode("\"a\" ", 4, &b), 0);
    buf_free(&b);
    /* the empty string into a fresh buffer: data is a terminated "" (it was an unterminated
     * allocation that cJSON_CreateString read past: heap-buffer-overflow under ASan through
     * event_body's member_value, found by the simulator_devhost test under make asan) */
    assert_int_equal(json_string_decode("\"\"", 2, &b), 0);
    assert_int_equal(b.len, 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    assert_int_equal(json_string_decode("\"a", 2, &b), -1);
    assert_int_equal(json_string_decode("1", 1, &b), -1);
    assert_int_equal(json_string_decode("\"a\"x", 4, &b), -1);
    /* the same verdicts and bytes as the tokenizer, on every literal */
    const char *lits[] = {"\"\\ud83d\\ude00 \\u00e9\\/\\b\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83d\\u0041\"",
                          "\"\\q\"", "\"\\u12\"", "\"raw\x01\xff\"", "\"\\\"\"", "\"\\\"", "\"\"", " \"x\" "};
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        buf_t t = BUF_INIT, d = BUF_INIT;
        int tok = trace(lits[i], strlen(lits[i]), 0, &t);
        int dec = json_string_decode(lits[i], strlen(lits[i]), &d);
        assert_int_equal(dec, tok);
        if (tok == 0) {   /* trace: S<bytes> $ */
            assert_int_equal(d.len + 3, t.len);
            assert_memory_equal(d.data ? d.data : "", t.data + 1, d.len);
        }
        buf_free(&t);
        buf_free(&d);
    }
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_independent_of_chunking),
        cmocka_unit_test(test_long_strings_stream_in_chunks),
        cmocka_unit_test(test_validity_agrees_with_cjson),
        cmocka_unit_test(test_depth_limit_and_errors),
        cmocka_unit_test(test_keys_and_scalars_truncate),
        cmocka_unit_test(test_capture_values),
        cmocka_unit_test(test_capture_elements_and_limits),
        cmocka_unit_test(test_chain_undoes_double_encoding),
        cmocka_unit_test(test_string_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
