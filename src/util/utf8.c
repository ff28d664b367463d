/* utf8.c — UTF-8 validation (see utf8.h), following RFC 3629's table of well-formed sequences. */
#include "util/utf8.h"

long utf8_next(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = *p;
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }          /* no surrogates */
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }          /* nothing above U+10FFFF */
    else return -1;
    /* the maximal subpart of an ill-formed sequence is replaced as one unit */
    if (n < 2 || p[1] < lo || p[1] > hi) return -1;
    for (size_t i = 2; i < len; i++)
        if (i >= n || (p[i] & 0xC0) != 0x80) return -(long)i;
    return (long)len;
}

int utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        long k = utf8_next(s + i, n - i);
        if (k < 0) return 0;
        i += (size_t)k;
    }
    return 1;
}
