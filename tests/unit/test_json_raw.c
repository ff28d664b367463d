/* Unit tests: strict JSON validation that keeps the text as sent (util/json_raw.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util/json_raw.h"

/* Compact s; returns the copy (static buffer) or NULL when refused (err filled). */
static const char *compact(const char *s, size_t n, char *err, size_t errlen)
{
    static char out[4096];
    buf_t b = BUF_INIT;
    int rc = json_raw_compact(s, n, &b, err, errlen);
    if (rc == 0) {
        assert_true(b.len < sizeof out);
        memcpy(out, b.data ? b.data : "", b.len + 1);
    }
    buf_free(&b);
    return rc == 0 ? out : NULL;
}

#define OK(in, want)                                                                    \
    do {                                                                                \
        char e_[200] = "";                                                              \
        const char *got_ = compact(in, sizeof in - 1, e_, sizeof e_);                   \
        if (!got_) fail_msg("refused %s: %s", #in, e_);                                 \
        assert_string_equal(got_, want);                                                \
    } while (0)

#define BAD(in, what)                                                                   \
    do {                                                                                \
        char e_[200] = "";                                                              \
        if (compact(in, sizeof in - 1, e_, sizeof e_)) fail_msg("accepted %s", #in);    \
        if (!strstr(e_, what)) fail_msg("%s: message '%s' lacks '%s'", #in, e_, what);  \
    } while (0)

static void test_tokens_kept_as_sent(void **st)
{
    (void)st;
    /* numbers are not converted: big integers, huge exponents, negative zero, precision */
    OK("[9007199254740993, 1e400, -0, 0.1000000000000000055511151231257827, 1E+2]",
       "[9007199254740993,1e400,-0,0.1000000000000000055511151231257827,1E+2]");
    /* escapes stay escapes, NUL included; non-ASCII stays UTF-8; a valid surrogate pair */
    OK("\"a\\u0000b\"", "\"a\\u0000b\"");
    OK("{ \"k\" : \"\xc3\xa9\\n\\\"\\/\\ud83d\\ude00\" }", "{\"k\":\"\xc3\xa9\\n\\\"\\/\\ud83d\\ude00\"}");
    /* whitespace between tokens goes (records stay on one line), inside strings it stays */
    OK("\r\n\t {\"a\" :\n [ 1 ,\n 2 ] , \"b c\": {} , \"d\":[ ]}\n ", "{\"a\":[1,2],\"b c\":{},\"d\":[]}");
    OK("true", "true");
    OK(" null ", "null");
    OK("false", "false");
}

static void test_refusals(void **st)
{
    (void)st;
    BAD("{\"a\":1} x", "after the JSON value");
    BAD("{\"a\":1}{}", "after the JSON value");
    BAD("\"\xff\xfe\"", "UTF-8");
    BAD("\"\xc0\xaf\"", "UTF-8");
    BAD("\"\\ud800\"", "surrogate");
    BAD("\"\\udc00x\"", "surrogate");
    BAD("\"\\ud800\\u0041\"", "surrogate");
    BAD("\"a\tb\"", "control character");
    BAD("\"\\x\"", "invalid escape");
    BAD("\"\\u12\"", "\\u escape");
    BAD("\"abc", "unterminated");
    BAD("[1,]", "unexpected character");
    BAD("{\"a\" 1}", "':' expected");
    BAD("{1:2}", "key");
    BAD("[1 2]", "',' or ']'");
    BAD("01", "after the JSON value");
    BAD("1.", "digit expected");
    BAD("-", "invalid number");
    BAD("1e", "digit expected");
    BAD("+1", "unexpected character");
    BAD("NaN", "unexpected character");
    BAD("tru", "unexpected character");
    BAD("", "found the end");
    BAD("   ", "found the end");
    BAD("[\"a\0\"]", "control character");
    /* nesting is bounded */
    char deep[2 * JSON_RAW_MAX_DEPTH + 3];
    memset(deep, '[', JSON_RAW_MAX_DEPTH + 1);
    memset(deep + JSON_RAW_MAX_DEPTH + 1, ']', JSON_RAW_MAX_DEPTH + 1);
    char e[200];
    buf_t b = BUF_INIT;
    assert_int_equal(json_raw_compact(deep, 2 * JSON_RAW_MAX_DEPTH + 2, &b, e, sizeof e), -1);
    assert_non_null(strstr(e, "nested too deeply"));
    buf_free(&b);
    assert_int_equal(json_raw_compact(deep + 1, 2 * JSON_RAW_MAX_DEPTH, NULL, e, sizeof e), 0);
}

static void test_members(void **st)
{
    (void)st;
    char e[200];
    const char *c = compact("{ \"Target\" : \"x\", \"n\":{\"target\":[1,\"]\"]}, \"t\\u0061rget\" : [1, {\"a\":\"}\"}] }",
                            strlen("{ \"Target\" : \"x\", \"n\":{\"target\":[1,\"]\"]}, \"t\\u0061rget\" : [1, {\"a\":\"}\"}] }"),
                            e, sizeof e);
    assert_non_null(c);
    size_t pos = 0;
    json_raw_member_t m;
    const char *keys[3], *vals[3];
    size_t kl[3], vl[3], k = 0;
    while (json_raw_next_member(c, strlen(c), &pos, &m)) {
        assert_true(k < 3);
        keys[k] = m.key, kl[k] = m.key_len, vals[k] = m.val, vl[k] = m.val_len;
        k++;
    }
    assert_int_equal(k, 3);
    assert_true(json_raw_string_eq_ci(keys[0], kl[0], "target"));
    assert_memory_equal(vals[0], "\"x\"", vl[0]);
    assert_false(json_raw_string_eq_ci(keys[1], kl[1], "target"));
    assert_memory_equal(vals[1], "{\"target\":[1,\"]\"]}", vl[1]);
    assert_true(json_raw_string_eq_ci(keys[2], kl[2], "TARGET")); /* escaped letter */
    assert_memory_equal(vals[2], "[1,{\"a\":\"}\"}]", vl[2]);
    assert_false(json_raw_string_eq_ci("\"targets\"", 9, "target"));
    assert_false(json_raw_string_eq_ci("\"targ\"", 6, "target"));
    pos = 0;
    assert_int_equal(json_raw_next_member("{}", 2, &pos, &m), 0);
    pos = 0;
    assert_int_equal(json_raw_next_member("[1]", 3, &pos, &m), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens_kept_as_sent),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
