/* json_raw.c — strict JSON validation that keeps the text as sent (see json_raw.h). A small
 * recursive-descent checker over RFC 8259's grammar, bounded by JSON_RAW_MAX_DEPTH. */
#include "util/json_raw.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "util/utf8.h"

typedef struct jr {
    const char *s;
    size_t      n, i;
    buf_t      *out;
    char       *err;
    size_t      errlen;
} jr_t;

static int jr_fail(jr_t *p, const char *why)
{
    if (p->err && p->errlen)
        snprintf(p->err, p->errlen, "invalid JSON at byte %zu: %s", p->i, why);
    return -1;
}

static int jr_emit(jr_t *p, size_t from)
{
    if (p->out && buf_append(p->out, p->s + from, p->i - from) != 0)
        return jr_fail(p, "out of memory");
    return 0;
}

static void jr_ws(jr_t *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

static int hex4(const char *s, unsigned *cp)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int c = (unsigned char)s[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v << 4 | (unsigned)d;
    }
    *cp = v;
    return 0;
}

/* \uXXXX at p->i (just after the backslash's 'u'); pairs surrogates. */
static int jr_unicode_escape(jr_t *p)
{
    unsigned cp;
    if (p->n - p->i < 4 || hex4(p->s + p->i, &cp) != 0) return jr_fail(p, "bad \\u escape");
    p->i += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return jr_fail(p, "unpaired surrogate escape (not Unicode text)");
    if (cp < 0xD800 || cp > 0xDBFF) return 0;
    unsigned lo;
    if (p->n - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
        hex4(p->s + p->i + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
        return jr_fail(p, "unpaired surrogate escape (not Unicode text)");
    p->i += 6;
    return 0;
}

static int jr_string(jr_t *p)
{
    size_t from = p->i++;
    for (;;) {
        if (p->i >= p->n) return jr_fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') break;
        if (c < 0x20) return jr_fail(p, "control character in a string (escape it)");
        if (c != '\\') { p->i++; continue; }
        if (++p->i >= p->n) return jr_fail(p, "unterminated string");
        char e = p->s[p->i++];
        if (e == 'u') {
            if (jr_unicode_escape(p) != 0) return -1;
        } else if (e == '\0' || !strchr("\"\\/bfnrt", e)) {
            p->i--;
            return jr_fail(p, "invalid escape");
        }
    }
    p->i++;
    return jr_emit(p, from);
}

static int jr_digits(jr_t *p)
{
    size_t from = p->i;
    while (p->i < p->n && isdigit((unsigned char)p->s[p->i])) p->i++;
    return p->i > from ? 0 : jr_fail(p, "digit expected");
}

static int jr_number(jr_t *p)
{
    size_t from = p->i;
    if (p->s[p->i] == '-') p->i++;
    if (p->i < p->n && p->s[p->i] == '0') p->i++;
    else if (p->i >= p->n || !isdigit((unsigned char)p->s[p->i]) || jr_digits(p) != 0)
        return jr_fail(p, "invalid number");
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (jr_digits(p) != 0) return -1;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (jr_digits(p) != 0) return -1;
    }
    return jr_emit(p, from);
}

static int jr_literal(jr_t *p, const char *word)
{
    size_t k = strlen(word);
    if (p->n - p->i < k || memcmp(p->s + p->i, word, k) != 0) return jr_fail(p, "unexpected character");
    size_t from = p->i;
    p->i += k;
    return jr_emit(p, from);
}

static int jr_value(jr_t *p, int depth);

/* An array or object at p->i; close is ']' or '}'. */
static int jr_container(jr_t *p, int depth, char close)
{
    if (depth >= JSON_RAW_MAX_DEPTH) return jr_fail(p, "nested too deeply");
    size_t from = p->i++;
    if (jr_emit(p, from) != 0) return -1;
    jr_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        from = p->i++;
        return jr_emit(p, from);
    }
    for (;;) {
        jr_ws(p);
        if (close == '}') {
            if (p->i >= p->n || p->s[p->i] != '"') return jr_fail(p, "object key (a string) expected");
            if (jr_string(p) != 0) return -1;
            jr_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return jr_fail(p, "':' expected");
            from = p->i++;
            if (jr_emit(p, from) != 0) return -1;
        }
        if (jr_value(p, depth + 1) != 0) return -1;
        jr_ws(p);
        if (p->i < p->n && (p->s[p->i] == ',' || p->s[p->i] == close)) {
            char c = p->s[p->i];
            from = p->i++;
            if (jr_emit(p, from) != 0) return -1;
            if (c == close) return 0;
            continue;
        }
        return jr_fail(p, close == '}' ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int jr_value(jr_t *p, int depth)
{
    jr_ws(p);
    if (p->i >= p->n) return jr_fail(p, "value expected, found the end");
    switch (p->s[p->i]) {
    case '{': return jr_container(p, depth, '}');
    case '[': return jr_container(p, depth, ']');
    case '"': return jr_string(p);
    case 't': return jr_literal(p, "true");
    case 'f': return jr_literal(p, "false");
    case 'n': return jr_literal(p, "null");
    default:
        if (p->s[p->i] == '-' || isdigit((unsigned char)p->s[p->i])) return jr_number(p);
        return jr_fail(p, "unexpected character");
    }
}

int json_raw_compact(const char *json, size_t n, buf_t *out, char *err, size_t errlen)
{
    jr_t p = {json, n, 0, out, err, errlen};
    if (!utf8_valid(json, n)) {
        if (err && errlen) snprintf(err, errlen, "not valid UTF-8");
        return -1;
    }
    if (jr_value(&p, 0) != 0) return -1;
    jr_ws(&p);
    if (p.i != n) return jr_fail(&p, "unexpected content after the JSON value");
    return 0;
}

/* End of the (validated, compact) value starting at s[i]. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
    int depth = 0;
    do {
        char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            i++;
        } else if (c == '{' || c == '[') {
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            depth--;
            i++;
        } else if (c == ',' || c == ':') {
            i++;
        } else {
            while (i < n && !strchr(",:]}", s[i])) i++;
        }
    } while (depth > 0 && i < n);
    return i;
}

int json_raw_next_member(const char *obj, size_t n, size_t *pos, json_raw_member_t *m)
{
    size_t i = *pos ? *pos : 1;
    if (n == 0 || obj[0] != '{' || i >= n || obj[i] != '"') return 0;
    m->key = obj + i;
    i = skip_value(obj, n, i);
    m->key_len = (size_t)(obj + i - m->key);
    i++; /* ':' */
    m->val = obj + i;
    i = skip_value(obj, n, i);
    m->val_len = (size_t)(obj + i - m->val);
    if (i < n && obj[i] == ',') i++;
    *pos = i;
    return 1;
}

int json_raw_string_eq_ci(const char *tok, size_t n, const char *ascii)
{
    if (n < 2) return 0;
    size_t k = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned c = (unsigned char)tok[i];
        if (c == '\\') {
            char e = tok[++i];
            unsigned cp;
            if (e == 'u') {
                if (hex4(tok + i + 1, &cp) != 0) return 0;
                i += 4;
                c = cp;
            } else {
                static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
                const char *f = strchr(from, e);
                c = f ? (unsigned char)to[f - from] : (unsigned char)e;
            }
        }
        if (c > 0x7f || !ascii[k] || tolower((int)c) != tolower((unsigned char)ascii[k])) return 0;
        k++;
    }
    return ascii[k] == '\0';
}
