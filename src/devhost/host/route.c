/* route.c — route templates and matching (see route.h). */
#include "devhost/host/route.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SEGMENTS 64

typedef enum { C_INT, C_LONG, C_BOOL, C_GUID, C_ALPHA, C_DOUBLE, C_DATETIME, C_MIN, C_MAX, C_RANGE,
               C_MINLEN, C_MAXLEN, C_LENGTH, C_REGEX, C_REQUIRED } ckind_t;

typedef struct {
    ckind_t kind;
    long long a, b;      /* numeric arguments */
    regex_t  re;         /* C_REGEX */
} cons_t;

typedef struct {
    int     literal;     /* 1: text is a literal; 0: a parameter named text */
    char   *text;
    int     optional;    /* {x?} */
    int     catch_all;   /* {*x} */
    char   *def;         /* {x=default} */
    cons_t *cons;
    size_t  ncons;
} seg_t;

struct dh_route {
    seg_t  seg[MAX_SEGMENTS];
    size_t n;
    size_t nparams;
};

static void seg_free(seg_t *s)
{
    free(s->text);
    free(s->def);
    for (size_t i = 0; i < s->ncons; i++)
        if (s->cons[i].kind == C_REGEX) regfree(&s->cons[i].re);
    free(s->cons);
}

void dh_route_free(dh_route_t *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) seg_free(&r->seg[i]);
    free(r);
}

/* .NET regex shorthands that POSIX ERE lacks, inside and outside brackets. */
static char *translate_regex(const char *in)
{
    size_t cap = strlen(in) * 12 + 1;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0;
    int in_bracket = 0;
    for (const char *p = in; *p; p++) {
        const char *rep = NULL;
        if (*p == '\\' && p[1]) {
            switch (p[1]) {
            case 'd': rep = in_bracket ? "0-9" : "[0-9]"; break;
            case 'w': rep = in_bracket ? "A-Za-z0-9_" : "[A-Za-z0-9_]"; break;
            case 's': rep = in_bracket ? "[:space:]" : "[[:space:]]"; break;
            case 'D': rep = in_bracket ? NULL : "[^0-9]"; break;
            case 'W': rep = in_bracket ? NULL : "[^A-Za-z0-9_]"; break;
            default: break;
            }
            if (rep) {
                size_t rl = strlen(rep);
                memcpy(out + o, rep, rl);
                o += rl;
                p++;
                continue;
            }
            out[o++] = *p++;
            out[o++] = *p;
            continue;
        }
        if (*p == '[') in_bracket = 1;
        else if (*p == ']') in_bracket = 0;
        out[o++] = *p;
    }
    out[o] = '\0';
    return out;
}

/* Length of a quantifier at p as glibc reads a POSIX extended regex ("*", "+", "?", "{n}",
 * "{n,}", "{n,m}", and "{,m}" for "{0,m}"), 0 when there is none. */
static size_t posix_quantifier_len(const char *p)
{
    if (*p == '*' || *p == '+' || *p == '?') return 1;
    if (*p != '{') return 0;
    size_t i = 1 + strspn(p + 1, "0123456789");
    if (p[i] == ',') i += 1 + strspn(p + i + 1, "0123456789");
    return p[i] == '}' ? i + 1 : 0;
}

/* The same as .NET reads it: a brace quantifier starts with its count ("{,m}" is text). */
static size_t quantifier_len(const char *p)
{
    size_t q = posix_quantifier_len(p);
    return (q > 1 && !isdigit((unsigned char)p[1])) ? 0 : q;
}

/* .NET refuses a quantifier that follows another ("a**", "a+{2}"; one '?' after a quantifier
 * makes it lazy and is allowed): "Nested quantifier". glibc would accept such a pattern and
 * compile it into an automaton that can take gigabytes ("1++++++++*++..." did, under
 * fuzz_route), so a route using one is refused, as the host refuses it. 1 when re has one. */
static int nested_quantifier(const char *re)
{
    int after = 0, lazy_done = 0, in_bracket = 0;
    for (const char *p = re; *p;) {
        if (*p == '\\' && p[1]) { p += 2; after = 0; continue; }
        if (in_bracket) { if (*p == ']') in_bracket = 0; p++; continue; }
        if (*p == '[') { in_bracket = 1; p++; if (*p == '^') p++; if (*p == ']') p++; after = 0; continue; }
        size_t q = quantifier_len(p);
        if (q) {
            if (after) {
                if (*p != '?' || lazy_done) return 1;
                lazy_done = 1;
            } else {
                after = 1;
                lazy_done = 0;
            }
            p += q;
            continue;
        }
        after = 0;
        p++;
    }
    return 0;
}

/* glibc's regex engine has three costs a route pattern can blow up, each found by fuzz_route:
 * - it compiles repetition by copying the repeated part ("x{3}" is "xxx", "x+" is "xx*"), so
 *   nested counts multiply: "((a{100}){100}){100}" needs gigabytes. A bracket can hide nested
 *   quantifiers from the .NET-syntax check above ("[\]ge(1++++*++)": .NET reads "\]" as an
 *   escaped ']', POSIX ends the bracket there). Refused over ROUTE_REGEX_MAX_POSITIONS; at the
 *   limit glibc takes at most some tens of MiB, and real route patterns ("^[a-z0-9-]{1,128}$",
 *   a GUID, a date) need well under a few hundred positions.
 * - an anchor (^ $ \b \B \< \> \` \') inside a repetition makes its epsilon closures
 *   exponential in the nesting: "(((((^)+)+)+)+)+" takes seconds to compile, one level more
 *   over a minute. Refused (in a route such an anchor matches at most once anyway).
 * - a back-reference (\1 to \9) makes matching backtrack: "(a*)+(a*)+\1\2b" against 200
 *   characters runs for minutes. Refused.
 * Nested quantifiers and unbalanced parentheses, which .NET refuses, are refused here too as
 * glibc reads the pattern: "$)*++++*+" (a lone ')' glibc accepts) took 12 s to compile. */
#define ROUTE_REGEX_MAX_POSITIONS 2000
#define ROUTE_STR_(x) #x
#define ROUTE_STR(x)  ROUTE_STR_(x)
#define ROUTE_REGEX_MAX_DEPTH     32

/* What regex_measure finds in a POSIX extended regex. */
typedef struct {
    double positions;    /* upper estimate of what regcomp builds (HUGE_VAL: nested too deep) */
    int    backref;      /* has \1 .. \9 */
    int    anchor_repeated;
    int    nested_quantifier; /* a quantifier after a quantifier (but for one lazy '?') */
    int    unbalanced;        /* a ')' without its '(' or the reverse; glibc accepts a lone ')' */
} regex_shape_t;

/* Skip a POSIX bracket expression starting at p ('['), as regcomp reads it: a backslash is
 * literal, "[:alpha:]", "[.x.]" and "[=x=]" are single items, a ']' first is literal. Returns
 * the character after the closing ']' (or the end of the string). */
static const char *posix_bracket_end(const char *p)
{
    assert(*p == '[');
    p++;
    if (*p == '^') p++;
    if (*p == ']') p++;
    while (*p && *p != ']') {
        if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            char close[3] = {p[1], ']', '\0'};
            const char *e = strstr(p + 2, close);
            if (!e) return p + strlen(p);
            p = e + 2;
            continue;
        }
        p++;
    }
    return *p ? p + 1 : p;
}

/* The size of one part after the quantifier at q (of length ql) is applied to it. */
static double regex_repeat(double part, const char *q, size_t ql)
{
    if (*q == '*' || *q == '?') return part + 1;
    if (*q == '+') return 2 * part + 1;
    double m = 0, n = -1;                           /* "{m}", "{m,}", "{m,n}" */
    const char *p = q + 1;
    for (; *p >= '0' && *p <= '9'; p++) m = fmin(m * 10 + (*p - '0'), 1e9);
    if (*p == ',') {
        if (p[1] != '}') { n = 0; for (p++; *p >= '0' && *p <= '9'; p++) n = fmin(n * 10 + (*p - '0'), 1e9); }
        else n = m + 1;                             /* "{m,}": m copies and a star */
    }
    assert(q[ql - 1] == '}');
    return fmax(fmax(m, n), 1) * (part + 1);
}

/* Measure the POSIX extended regex ere as glibc reads it: alternatives and concatenation add
 * positions, a quantifier multiplies the part before it. */
static void regex_measure(const char *ere, regex_shape_t *out)
{
    /* per open group: positions so far and of the last part; whether either holds an anchor */
    struct { double done, last; int done_anchor, last_anchor, last_quantifiers; } st[ROUTE_REGEX_MAX_DEPTH];
    int d = 0;
    memset(out, 0, sizeof *out);
    memset(&st[0], 0, sizeof st[0]);
    for (const char *p = ere; *p;) {
        double atom = 1;
        int anchor = 0;
        size_t ql = posix_quantifier_len(p);
        if (ql && st[d].last > 0) {
            if (st[d].last_anchor) out->anchor_repeated = 1;
            if (st[d].last_quantifiers++ && (*p != '?' || st[d].last_quantifiers > 2)) out->nested_quantifier = 1;
            st[d].last = regex_repeat(st[d].last, p, ql);
            p += ql;
            continue;
        }
        if (*p == '(') {
            if (++d == ROUTE_REGEX_MAX_DEPTH) { out->positions = HUGE_VAL; return; }
            memset(&st[d], 0, sizeof st[d]);
            p++;
            continue;
        }
        if (*p == ')') {
            if (d == 0) { out->unbalanced = 1; return; }
            atom = st[d].done + st[d].last + 2;
            anchor = st[d].done_anchor || st[d].last_anchor;
            d--;
            p++;
        } else if (*p == '|') {
            st[d].done += st[d].last + 1;
            st[d].done_anchor |= st[d].last_anchor;
            st[d].last = 0;
            st[d].last_anchor = 0;
            st[d].last_quantifiers = 0;
            p++;
            continue;
        } else if (*p == '[') {
            p = posix_bracket_end(p);
        } else if (*p == '\\' && p[1]) {
            if (p[1] >= '1' && p[1] <= '9') out->backref = 1;
            anchor = strchr("bB<>`'", p[1]) != NULL;
            p += 2;
        } else {
            anchor = *p == '^' || *p == '$';
            p++;
        }
        st[d].done += st[d].last;
        st[d].done_anchor |= st[d].last_anchor;
        st[d].last = atom;
        st[d].last_anchor = anchor;
        st[d].last_quantifiers = 0;
    }
    if (d > 0) out->unbalanced = 1;
    for (; d >= 0; d--) out->positions += st[d].done + st[d].last;
}

/* Why the route regex raw (.NET syntax), translated to the POSIX extended regex ere, is refused
 * (see ROUTE_REGEX_MAX_POSITIONS), or NULL when glibc may be given ere. */
static const char *regex_refusal(const char *raw, const char *ere)
{
    regex_shape_t shape;
    regex_measure(ere, &shape);
    if (shape.unbalanced) return "has unbalanced parentheses";
    if (nested_quantifier(raw) || shape.nested_quantifier)
        return "has a nested quantifier (a quantifier after a quantifier, as in 'a**'), which .NET refuses";
    if (shape.positions > ROUTE_REGEX_MAX_POSITIONS)
        return "is too large once its repetitions are expanded (over " ROUTE_STR(ROUTE_REGEX_MAX_POSITIONS)
               " positions; nested counts multiply, as in '(a{{100}}){{100}}')";
    if (shape.anchor_repeated)
        return "repeats an anchor (^, $, \\b, \\B, \\<, \\>), which glibc's regex engine takes exponential "
               "time to compile";
    if (shape.backref)
        return "uses a back-reference (\\1 to \\9), which glibc's regex engine can take exponential time to match";
    return NULL;
}

static int parse_ll(const char *s, size_t n, long long *v)
{
    char buf[32];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    *v = strtoll(buf, &end, 10);
    return (errno || *end) ? -1 : 0;
}

/* Parse one constraint "name" or "name(args)" of length n. */
static int parse_constraint(const char *s, size_t n, cons_t *c, const char *tmpl, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    const char *paren = memchr(s, '(', n);
    size_t nl = paren ? (size_t)(paren - s) : n;
    const char *args = paren ? paren + 1 : NULL;
    size_t al = paren ? n - nl - 2 : 0;
    if (paren && s[n - 1] != ')') goto bad;
    static const struct { const char *name; ckind_t kind; int nargs; } table[] = {
        {"int", C_INT, 0}, {"long", C_LONG, 0}, {"bool", C_BOOL, 0}, {"guid", C_GUID, 0},
        {"alpha", C_ALPHA, 0}, {"double", C_DOUBLE, 0}, {"float", C_DOUBLE, 0}, {"decimal", C_DOUBLE, 0},
        {"datetime", C_DATETIME, 0}, {"min", C_MIN, 1}, {"max", C_MAX, 1}, {"range", C_RANGE, 2},
        {"minlength", C_MINLEN, 1}, {"maxlength", C_MAXLEN, 1}, {"length", C_LENGTH, -1},
        {"regex", C_REGEX, -2}, {"required", C_REQUIRED, 0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strlen(table[i].name) != nl || strncasecmp(table[i].name, s, nl) != 0) continue;
        c->kind = table[i].kind;
        int want = table[i].nargs;
        if (want == 0) {
            if (paren) goto bad;
            return 0;
        }
        if (!paren) goto bad;
        if (want == -2) {               /* regex(expr) */
            char *raw = strndup(args, al);
            char *tr = raw ? translate_regex(raw) : NULL;
            const char *why = tr ? regex_refusal(raw, tr) : NULL;
            if (why) {
                snprintf(err, errlen, "route '%s': the regex constraint '%.*s' %s", tmpl, (int)n, s, why);
                free(raw);
                free(tr);
                return -1;
            }
            int rc = tr ? regcomp(&c->re, tr, REG_EXTENDED | REG_ICASE | REG_NOSUB) : -1;
            free(raw);
            free(tr);
            if (rc != 0) {
                snprintf(err, errlen, "route '%s': the regex constraint '%.*s' is not a regular expression "
                         "devhost can use (POSIX extended syntax plus \\d \\w \\s)", tmpl, (int)n, s);
                return -1;
            }
            return 0;
        }
        const char *comma = memchr(args, ',', al);
        if (comma) {
            if (want == 1 || parse_ll(args, (size_t)(comma - args), &c->a) != 0 ||
                parse_ll(comma + 1, al - (size_t)(comma - args) - 1, &c->b) != 0)
                goto bad;
        } else {
            if (want == 2 || parse_ll(args, al, &c->a) != 0) goto bad;
            if (c->kind == C_LENGTH) c->b = c->a; /* length(n) = exactly n */
        }
        return 0;
    }
    snprintf(err, errlen, "route '%s': unknown constraint '%.*s' (devhost knows int, long, bool, guid, alpha, "
             "double, float, decimal, datetime, min, max, range, minlength, maxlength, length, regex, required)",
             tmpl, (int)n, s);
    return -1;
bad:
    snprintf(err, errlen, "route '%s': constraint '%.*s' has the wrong arguments", tmpl, (int)n, s);
    return -1;
}

/* Parse "{...}" content (without braces) into a parameter segment. */
static int parse_param(const char *s, size_t n, seg_t *seg, const char *tmpl, char *err, size_t errlen)
{
    size_t i = 0;
    if (i < n && s[i] == '*') { seg->catch_all = 1; i++; if (i < n && s[i] == '*') i++; }
    size_t name_start = i;
    while (i < n && s[i] != ':' && s[i] != '=' && s[i] != '?') i++;
    if (i == name_start) {
        snprintf(err, errlen, "route '%s': a parameter without a name", tmpl);
        return -1;
    }
    for (size_t k = name_start; k < i; k++) {
        if (!(isalnum((unsigned char)s[k]) || s[k] == '_' || s[k] == '-')) {
            snprintf(err, errlen, "route '%s': parameter name '%.*s' may contain only letters, digits, '_' and '-'",
                     tmpl, (int)(i - name_start), s + name_start);
            return -1;
        }
    }
    seg->text = strndup(s + name_start, i - name_start);
    if (!seg->text) { snprintf(err, errlen, "out of memory"); return -1; }
    while (i < n && s[i] == ':') {
        size_t cs = ++i;
        int depth = 0;
        while (i < n) {
            if (s[i] == '\\' && i + 1 < n) { i += 2; continue; }
            if (s[i] == '(') depth++;
            else if (s[i] == ')') depth--;
            else if (depth == 0 && (s[i] == ':' || s[i] == '=' || s[i] == '?')) break;
            i++;
        }
        cons_t *nc = realloc(seg->cons, (seg->ncons + 1) * sizeof *nc);
        if (!nc) { snprintf(err, errlen, "out of memory"); return -1; }
        seg->cons = nc;
        if (parse_constraint(s + cs, i - cs, &seg->cons[seg->ncons], tmpl, err, errlen) != 0) return -1;
        seg->ncons++;
    }
    if (i < n && s[i] == '=') {
        seg->def = strndup(s + i + 1, n - i - 1);
        if (!seg->def) { snprintf(err, errlen, "out of memory"); return -1; }
        i = n;
    }
    if (i < n && s[i] == '?') { seg->optional = 1; i++; }
    if (i != n) {
        snprintf(err, errlen, "route '%s': cannot read the parameter '{%.*s}'", tmpl, (int)n, s);
        return -1;
    }
    if (seg->catch_all && seg->optional) {
        snprintf(err, errlen, "route '%s': a catch-all parameter cannot be marked optional", tmpl);
        return -1;
    }
    return 0;
}

/* Read the parameter body after a '{' at p, unescaping "{{" and "}}" (the host's way of writing
 * a brace inside a parameter, as in "{id:regex(^\d{{4}}$)}") into out. Returns the characters
 * consumed including the closing '}', or 0 with err set. */
static size_t seg_read_param(const char *p, char *out, size_t *olen, const char *tmpl, char *err, size_t errlen)
{
    size_t i = 0, o = 0;
    for (;;) {
        if (!p[i]) {
            snprintf(err, errlen, "route '%s': a '{' without its '}'", tmpl);
            return 0;
        }
        if ((p[i] == '{' || p[i] == '}') && p[i + 1] == p[i]) {
            out[o++] = p[i];
            i += 2;
        } else if (p[i] == '}') {
            *olen = o;
            return i + 1;
        } else if (p[i] == '{') {
            snprintf(err, errlen, "route '%s': a '{' inside a parameter (write '{{' for a literal '{')", tmpl);
            return 0;
        } else {
            out[o++] = p[i++];
        }
    }
}

/* Read one segment of tmpl at p into seg: a literal (with "{{" and "}}" unescaped) or a single
 * parameter filling the whole segment. Returns the characters consumed (the segment ends at a
 * '/' outside a parameter or at the end), or 0 with err set. */
static size_t seg_read(const char *p, seg_t *seg, const char *tmpl, char *err, size_t errlen)
{
    char *buf = malloc(strlen(p) + 1);
    if (!buf) { snprintf(err, errlen, "out of memory"); return 0; }
    size_t i = 0, o = 0, params = 0, text = 0, plen = 0;
    while (p[i] && p[i] != '/') {
        if ((p[i] == '{' || p[i] == '}') && p[i + 1] == p[i]) {
            buf[o++] = p[i];
            i += 2;
            text++;
        } else if (p[i] == '{') {
            size_t used = seg_read_param(p + i + 1, buf, &plen, tmpl, err, errlen);
            if (!used) goto fail;
            i += 1 + used;
            params++;
        } else if (p[i] == '}') {
            snprintf(err, errlen, "route '%s': a '}' without its '{' (write '}}' for a literal '}')", tmpl);
            goto fail;
        } else {
            buf[o++] = p[i++];
            text++;
        }
    }
    if (params > 1 || (params && text)) {
        snprintf(err, errlen, "route '%s': segment '%.*s' mixes text and parameters; devhost supports one "
                 "parameter per path segment", tmpl, (int)i, p);
        goto fail;
    }
    if (params) {
        if (parse_param(buf, plen, seg, tmpl, err, errlen) != 0) goto fail;
        free(buf);
    } else {
        buf[o] = '\0';
        seg->literal = 1;
        seg->text = buf;
    }
    return i;
fail:
    free(buf);
    return 0;
}

dh_route_t *dh_route_parse(const char *tmpl, char *err, size_t errlen)
{
    dh_route_t *r = calloc(1, sizeof *r);
    if (!r) { snprintf(err, errlen, "out of memory"); return NULL; }
    const char *p = tmpl;
    if (p[0] == '~' && p[1] == '/') p += 2;
    while (*p == '/') p++;
    while (*p) {
        if (r->n == MAX_SEGMENTS) {
            snprintf(err, errlen, "route '%s': more than %d segments", tmpl, MAX_SEGMENTS);
            goto fail;
        }
        seg_t *seg = &r->seg[r->n++];
        size_t n = seg_read(p, seg, tmpl, err, errlen);
        if (!n) goto fail;
        if (!seg->literal) {
            for (size_t i = 0; i + 1 < r->n; i++) {
                if (!r->seg[i].literal && strcasecmp(r->seg[i].text, seg->text) == 0) {
                    snprintf(err, errlen, "route '%s': the parameter '%s' appears twice", tmpl, seg->text);
                    goto fail;
                }
            }
            r->nparams++;
        }
        p += n;
        if (*p == '/') p++;
        if (*p == '/') {
            snprintf(err, errlen, "route '%s': empty segment ('//')", tmpl);
            goto fail;
        }
    }
    /* Catch-all last; optional parameters (or defaults) only followed by more of them. */
    for (size_t i = 0; i < r->n; i++) {
        seg_t *s = &r->seg[i];
        if (s->catch_all && i + 1 != r->n) {
            snprintf(err, errlen, "route '%s': a catch-all parameter ({*%s}) must be the last segment", tmpl, s->text);
            goto fail;
        }
        if (!s->literal && (s->optional || s->def)) {
            for (size_t j = i + 1; j < r->n; j++) {
                seg_t *t = &r->seg[j];
                if (t->literal || !(t->optional || t->def || t->catch_all)) {
                    snprintf(err, errlen, "route '%s': the optional parameter '%s' may only be followed by "
                             "optional parameters", tmpl, s->text);
                    goto fail;
                }
            }
        }
    }
    return r;
fail:
    dh_route_free(r);
    return NULL;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

static int guid_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 32) return is_hex(v, 32);
    if ((n == 38 && ((v[0] == '{' && v[37] == '}') || (v[0] == '(' && v[37] == ')')))) { v++; n = 36; }
    if (n != 36) return 0;
    return is_hex(v, 8) && v[8] == '-' && is_hex(v + 9, 4) && v[13] == '-' && is_hex(v + 14, 4) &&
           v[18] == '-' && is_hex(v + 19, 4) && v[23] == '-' && is_hex(v + 24, 12);
}

static int datetime_ok(const char *v)
{
    /* yyyy-mm-dd, optionally followed by [T ]hh:mm[:ss[.f+]] and Z or ±hh:mm. */
    int y, mo, d, used = 0;
    if (sscanf(v, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10) return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return 0;
    const char *p = v + 10;
    if (!*p) return 1;
    if (*p != 'T' && *p != ' ') return 0;
    int h, mi;
    if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &used) != 2 || used != 5 || h > 23 || mi > 59) return 0;
    p += 6;
    if (*p == ':') {
        if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2])) return 0;
        p += 3;
        if (*p == '.') { p++; if (!isdigit((unsigned char)*p)) return 0; while (isdigit((unsigned char)*p)) p++; }
    }
    if (*p == 'Z') p++;
    else if (*p == '+' || *p == '-') {
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &used) != 2 || used != 5) return 0;
        p += 6;
    }
    return *p == '\0';
}

static int cons_ok(const cons_t *c, const char *v)
{
    char *end;
    errno = 0;
    switch (c->kind) {
    case C_INT: case C_LONG: case C_MIN: case C_MAX: case C_RANGE: {
        if (!*v || isspace((unsigned char)*v)) return 0;
        long long x = strtoll(v, &end, 10);
        if (errno || *end) return 0;
        if (c->kind == C_INT) return x >= INT32_MIN && x <= INT32_MAX;
        if (c->kind == C_MIN) return x >= c->a;
        if (c->kind == C_MAX) return x <= c->a;
        if (c->kind == C_RANGE) return x >= c->a && x <= c->b;
        return 1;
    }
    case C_BOOL: return strcasecmp(v, "true") == 0 || strcasecmp(v, "false") == 0;
    case C_GUID: return guid_ok(v);
    case C_ALPHA:
        if (!*v) return 0;
        for (const char *p = v; *p; p++)
            if (!isalpha((unsigned char)*p)) return 0;
        return 1;
    case C_DOUBLE: {
        if (!*v || isspace((unsigned char)*v)) return 0;
        double d = strtod(v, &end);
        return !errno && !*end && isfinite(d);
    }
    case C_DATETIME: return datetime_ok(v);
    case C_MINLEN: return (long long)utf8_chars(v) >= c->a;
    case C_MAXLEN: return (long long)utf8_chars(v) <= c->a;
    case C_LENGTH: { long long n = (long long)utf8_chars(v); return n >= c->a && n <= c->b; }
    case C_REGEX: return regexec(&c->re, v, 0, NULL, 0) == 0;
    case C_REQUIRED: return *v != '\0';
    }
    return 0;
}

static int seg_value_ok(const seg_t *s, const char *v)
{
    for (size_t i = 0; i < s->ncons; i++)
        if (!cons_ok(&s->cons[i], v)) return 0;
    return 1;
}

static char *join_segments(char *const *segs, size_t n)
{
    size_t len = 1;
    for (size_t k = 0; k < n; k++) len += strlen(segs[k]) + 1;
    char *out = malloc(len), *o = out;
    if (!out) return NULL;
    for (size_t k = 0; k < n; k++) {
        if (k) *o++ = '/';
        size_t l = strlen(segs[k]);
        memcpy(o, segs[k], l);
        o += l;
    }
    *o = '\0';
    return out;
}

int dh_route_match(const dh_route_t *r, char *const *segs, size_t n, cJSON *params)
{
    size_t i;
    for (i = 0; i < r->n; i++) {
        const seg_t *s = &r->seg[i];
        if (s->catch_all) break;
        if (s->literal) {
            if (i >= n || strcasecmp(s->text, segs[i]) != 0) return 0;
            continue;
        }
        if (i >= n) {
            if (s->optional || s->def) continue;
            return 0;
        }
        if (!segs[i][0] || !seg_value_ok(s, segs[i])) return 0;
    }
    char *rest = NULL;
    if (i < r->n) {                        /* the catch-all takes what is left */
        if (i < n && !(rest = join_segments(segs + i, n - i))) return 0;
        const char *v = rest ? rest : r->seg[i].def;
        if (v && !seg_value_ok(&r->seg[i], v)) { free(rest); return 0; }
    } else if (n > r->n) {
        return 0;
    }
    int ok = 1;
    for (size_t k = 0; params && k < r->n && ok; k++) {
        const seg_t *s = &r->seg[k];
        if (s->literal) continue;
        const char *v = s->catch_all ? rest : (k < n ? segs[k] : NULL);
        if (!v) v = s->def;
        cJSON *item = v ? cJSON_CreateString(v) : cJSON_CreateNull();
        if (!item || !cJSON_AddItemToObject(params, s->text, item)) { cJSON_Delete(item); ok = 0; }
    }
    free(rest);
    return ok;
}

static int rank(const seg_t *s)
{
    if (s->literal) return 1;
    if (s->catch_all) return 5;
    if (s->optional || s->def) return 4;
    return s->ncons ? 2 : 3;
}

int dh_route_cmp(const dh_route_t *a, const dh_route_t *b)
{
    size_t n = a->n < b->n ? a->n : b->n;
    for (size_t i = 0; i < n; i++) {
        int ra = rank(&a->seg[i]), rb = rank(&b->seg[i]);
        if (ra != rb) return ra - rb;
    }
    /* More segments first: "a/b" is more specific than "a" followed by optionals. */
    return (int)b->n - (int)a->n;
}

size_t dh_route_param_count(const dh_route_t *r) { return r->nparams; }

const char *dh_route_param_name(const dh_route_t *r, size_t i)
{
    for (size_t k = 0; k < r->n; k++) {
        if (r->seg[k].literal) continue;
        if (i-- == 0) return r->seg[k].text;
    }
    return NULL;
}
