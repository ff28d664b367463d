/* buf.c — growable byte buffer (see buf.h). */
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int buf_reserve(buf_t *b, size_t n)
{
    if (b->oom) return -1;
    if (b->cap - b->len > n) return 0; /* room for n bytes plus the terminator */
    size_t want = b->cap ? b->cap : 64;
    while (want - b->len <= n) {
        if (want > ((size_t)-1) / 2) { b->oom = 1; return -1; }
        want *= 2;
    }
    char *p = realloc(b->data, want);
    if (!p) { b->oom = 1; return -1; }
    b->data = p;
    b->cap = want;
    b->data[b->len] = '\0'; /* the invariant holds from the first allocation, before any append */
    return 0;
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(buf_t *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_putc(buf_t *b, char c) { return buf_append(b, &c, 1); }

int buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0) return -1;
    if (buf_reserve(b, (size_t)n) != 0) return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int buf_put_json_string(buf_t *b, const char *s)
{
    static const char hexd[] = "0123456789abcdef";
    if (buf_reserve(b, strlen(s) + 2) != 0) return -1;
    buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const unsigned char *run = p; /* copy runs of plain bytes at once */
        while (*p && *p >= 0x20 && *p != '"' && *p != '\\') p++;
        if (p > run) buf_append(b, run, (size_t)(p - run));
        if (!*p) break;
        switch (*p) {
        case '"': buf_append(b, "\\\"", 2); break;
        case '\\': buf_append(b, "\\\\", 2); break;
        case '\n': buf_append(b, "\\n", 2); break;
        case '\r': buf_append(b, "\\r", 2); break;
        case '\t': buf_append(b, "\\t", 2); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hexd[*p >> 4], hexd[*p & 15]};
            buf_append(b, esc, sizeof esc);
        }
        }
    }
    buf_putc(b, '"');
    return b->oom ? -1 : 0;
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void buf_free(buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

char *buf_steal(buf_t *b)
{
    if (b->oom) { buf_free(b); return NULL; }
    if (!b->data && buf_reserve(b, 0) != 0) return NULL;
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

const char *buf_str(const buf_t *b) { return b->data ? b->data : ""; }
