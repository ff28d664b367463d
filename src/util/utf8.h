/* utf8.h — UTF-8 validation for text that leaves the process (table columns, pushed JSON).
 *
 * Storage would replace or refuse bad bytes while the pushed message carried them as they
 * are; validating first keeps the two equal and the error clear. */
#ifndef ENVIROMON_UTF8_H
#define ENVIROMON_UTF8_H

#include <stddef.h>

/* 1 when s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF), else 0. */
int utf8_valid(const char *s, size_t n);

/* The well-formed sequence at s[0..n) (n >= 1): its length (1..4), or minus the length of the
 * ill-formed prefix that a decoder replaces with one U+FFFD (the Unicode "maximal subpart"
 * rule, which .NET's Encoding.UTF8 follows). */
long utf8_next(const char *s, size_t n);

#endif
