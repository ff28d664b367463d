/* buf.h — growable byte buffer.
 *
 * Owns nothing but its own memory. Used for HTTP bodies, request payloads and signed
 * strings. The data is always NUL-terminated so that it can be handed to string APIs,
 * but may contain NUL bytes of its own (len is authoritative). Allocation failure is
 * sticky: once an append fails, buf->oom is set and later appends are no-ops, so callers
 * can build a whole buffer and check once. */
#ifndef ENVIROMON_BUF_H
#define ENVIROMON_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char  *data;   /* NUL-terminated; NULL until the first append */
    size_t len;    /* bytes used, excluding the terminator */
    size_t cap;    /* bytes allocated */
    int    oom;    /* set when an allocation failed */
} buf_t;

#define BUF_INIT {NULL, 0, 0, 0}

/* Append n bytes. Returns 0, or -1 on allocation failure (and sets oom). */
int buf_append(buf_t *b, const void *p, size_t n);
/* Append a NUL-terminated string. */
int buf_puts(buf_t *b, const char *s);
/* Append one byte. */
int buf_putc(buf_t *b, char c);
/* printf-style append. */
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Append s as a JSON string literal, quotes included, escaping '"', '\\' and control
 * characters (bytes >= 0x80 are copied as they are: the input is UTF-8). */
int buf_put_json_string(buf_t *b, const char *s);
/* Make sure at least n more bytes fit without reallocating. */
int buf_reserve(buf_t *b, size_t n);
/* Forget the contents but keep the memory. */
void buf_reset(buf_t *b);
/* Free the memory and reset to BUF_INIT. */
void buf_free(buf_t *b);
/* Hand the data to the caller (who frees it) and reset. Never NULL unless oom. */
char *buf_steal(buf_t *b);
/* The contents as a C string ("" when empty). */
const char *buf_str(const buf_t *b);

#endif
