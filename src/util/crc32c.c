/* crc32c.c — CRC-32C, slicing by 8 (see crc32c.h). */
#include "util/crc32c.h"

#include <pthread.h>
#include <string.h>

static uint32_t g_table[8][256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        g_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            g_table[t][i] = (g_table[t - 1][i] >> 8) ^ g_table[0][g_table[t - 1][i] & 0xff];
}

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&g_once, build_tables);
    const unsigned char *s = p;
    crc = ~crc;
    while (n && ((uintptr_t)s & 7)) { crc = (crc >> 8) ^ g_table[0][(crc ^ *s++) & 0xff]; n--; }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, s + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = g_table[7][lo & 0xff] ^ g_table[6][(lo >> 8) & 0xff] ^ g_table[5][(lo >> 16) & 0xff] ^
              g_table[4][lo >> 24] ^ g_table[3][hi & 0xff] ^ g_table[2][(hi >> 8) & 0xff] ^
              g_table[1][(hi >> 16) & 0xff] ^ g_table[0][hi >> 24];
        s += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ g_table[0][(crc ^ *s++) & 0xff];
    return ~crc;
}
