/* base64.h — standard base64 (RFC 4648 §4, with padding), for keys and message bodies.
 *
 * Decoding is strict: the standard alphabet only, length a multiple of 4, padding only at the
 * end, and the unused bits of the last character zero — so every byte string has exactly one
 * accepted encoding (a key or body cannot be smuggled in two spellings). Pure functions. */
#ifndef ENVIROMON_BASE64_H
#define ENVIROMON_BASE64_H

#include <stddef.h>

/* Characters base64_encode writes for n bytes, without the terminator. */
#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/* Encode p[0..n) into out, which must hold BASE64_ENCODED_LEN(n) + 1 bytes. Returns the
 * length written (out is NUL-terminated). */
size_t base64_encode(const void *p, size_t n, char *out);

/* Decode s[0..n) into out (room for n / 4 * 3 bytes). Returns the decoded length, or -1 when
 * s is not strict base64. */
long base64_decode(const char *s, size_t n, unsigned char *out);

#endif
