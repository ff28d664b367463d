/* base64.c — strict standard base64 (see base64.h). */
#include "util/base64.h"

static const char g_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encode(const void *p, size_t n, char *out)
{
    const unsigned char *s = p;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned w = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        out[o++] = g_alpha[w >> 18];
        out[o++] = g_alpha[(w >> 12) & 63];
        out[o++] = g_alpha[(w >> 6) & 63];
        out[o++] = g_alpha[w & 63];
    }
    if (i < n) {
        unsigned w = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0);
        out[o++] = g_alpha[w >> 18];
        out[o++] = g_alpha[(w >> 12) & 63];
        out[o++] = i + 1 < n ? g_alpha[(w >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long base64_decode(const char *s, size_t n, unsigned char *out)
{
    if (n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int last = i + 4 == n;
        int pad = 0;
        if (last && s[i + 3] == '=') pad = s[i + 2] == '=' ? 2 : 1;
        int v[4];
        for (int j = 0; j < 4 - pad; j++)
            if ((v[j] = val((unsigned char)s[i + (size_t)j])) < 0) return -1;
        for (int j = 4 - pad; j < 4; j++) v[j] = 0;
        /* the bits a padded group does not use must be zero (one encoding per value) */
        if (pad == 2 && (v[1] & 15)) return -1;
        if (pad == 1 && (v[2] & 3)) return -1;
        unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2) out[o++] = (unsigned char)(w >> 8);
        if (pad < 1) out[o++] = (unsigned char)w;
    }
    return (long)o;
}
