/* fuzz.h — what every libFuzzer target under tests/fuzz/ shares.
 *
 * Each tests/fuzz/fuzz_<what it parses>.c defines LLVMFuzzerTestOneInput and is linked with
 * -fsanitize=fuzzer against the library built with ASan + UBSan (`make fuzz`, docs/
 * reliability.md). Beyond "does not crash", targets check invariants with FUZZ_CHECK: a
 * broken one prints what failed and aborts, which libFuzzer reports as a crash and saves the
 * input. Header-only so that every target stays one file. */
#ifndef ENVIROMON_FUZZ_H
#define ENVIROMON_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An invariant: abort (a crash for libFuzzer) with the condition and location when false. */
#define FUZZ_CHECK(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* A NUL-terminated heap copy of data[0..n) (the parsers under test take C strings), so that
 * ASan sees a read one past the end. Aborts when out of memory: that is the harness's
 * failure, not the parser's. */
static inline char *fuzz_strndup(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* An exact-size heap copy (no terminator), so that reading past the end is caught. */
static inline uint8_t *fuzz_memdup(const uint8_t *data, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (!p) abort();
    if (n) memcpy(p, data, n);
    return p;
}

/* Split data at the first occurrence of byte sep: [data, *rest) before it, *rest after it
 * (NULL when there is none). Returns the length of the first part. Lets one input carry
 * several fields (e.g. a token and the key it is checked with). */
static inline size_t fuzz_split(const uint8_t *data, size_t n, uint8_t sep, const uint8_t **rest,
                                size_t *rest_len)
{
    const uint8_t *p = n ? memchr(data, sep, n) : NULL;
    if (!p) { *rest = NULL; *rest_len = 0; return n; }
    *rest = p + 1;
    *rest_len = n - (size_t)(p + 1 - data);
    return (size_t)(p - data);
}

/* Split data into at most n fields at each NUL: f[i]/fl[i] for the fields present, NULL/0 for
 * the missing ones; the last field (f[n - 1]) keeps every byte after the (n-1)th NUL, NULs
 * included, so that it can be a body. Returns how many fields were present. */
static inline int fuzz_fields(const uint8_t *data, size_t size, int n, const uint8_t **f, size_t *fl)
{
    const uint8_t *rest = data;
    size_t rl = size;
    int i;
    for (i = 0; i < n; i++) { f[i] = NULL; fl[i] = 0; }
    for (i = 0; i < n && rest; i++) {
        f[i] = rest;
        fl[i] = i < n - 1 ? fuzz_split(rest, rl, 0, &rest, &rl) : rl;
    }
    return i;
}

/* Are the nlen >= 1 bytes of needle somewhere in hay[0..hlen)? (memmem is a GNU extension.) */
static inline int fuzz_contains(const void *hay, size_t hlen, const void *needle, size_t nlen)
{
    for (size_t i = 0; nlen && i + nlen <= hlen; i++)
        if (memcmp((const char *)hay + i, needle, nlen) == 0) return 1;
    return 0;
}

/* Chunk sizes for feeding a streaming parser: a seed hashed from the input (FNV-1a, so that a
 * saved input replays with the same chunks), then fuzz_chunk_len gives the next size: mostly
 * 0..small (0 included: an empty chunk), one in eight 0..4999, never more than left. */
static inline uint64_t fuzz_chunk_seed(const uint8_t *data, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ data[i]) * 1099511628211ull;
    return h | 1;
}

static inline size_t fuzz_chunk_len(uint64_t *seed, size_t small, size_t left)
{
    uint64_t x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    size_t n = (x & 7) == 0 ? (size_t)(x >> 8) % 5000 : (size_t)(x >> 8) % (small + 1);
    return n < left ? n : left;
}

#endif
