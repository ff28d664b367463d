/* fuzz_checkpoint.c — the local IoT Hub's consumer-group checkpoint files (iothub_ckpt_decode)
 * and the folder names made from consumer group names (iothub_ckpt_group_dir):
 * src/devhost/iothub/checkpoint.c.
 *
 * Input: a flags byte, then a file image (two 64-byte slots). Unless flag bit 0 is set the
 * harness makes each slot's CRC right (and with bit 1 stamps the hub instance into it), so
 * that mutations reach the generation and position logic. The same bytes, up to a NUL, are
 * also a consumer group name.
 *
 * Invariants: decoding picks exactly the slot an independent reading picks (magic, CRC, this
 * instance, a non-negative sequence number; the higher generation, the first on a tie), or
 * none; a group's folder name holds only A-Z a-z 0-9 . _ - and %XX, is never "." or "..",
 * and decodes back to the group (so two groups never share a folder). */
#include "fuzz.h"

#include "devhost/iothub/checkpoint.h"
#include "util/crc32c.h"

#define INSTANCE "00c0ffee00c0ffee"

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static void check_group_dir(const uint8_t *data, size_t size)
{
    size_t n = strnlen((const char *)data, size);
    char *group = fuzz_strndup(data, n);
    char out[600];
    if (iothub_ckpt_group_dir(group, out, sizeof out) == 0) {
        FUZZ_CHECK(strcmp(out, ".") != 0 && strcmp(out, "..") != 0, "folder name '%s'", out);
        char back[600];
        size_t o = 0;
        for (size_t i = 0; out[i]; i++) {
            char c = out[i];
            int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                       c == '-';
            if (c == '%') {
                unsigned v;
                FUZZ_CHECK(sscanf(out + i + 1, "%2X", &v) == 1 && out[i + 1] && out[i + 2], "bad escape in '%s'", out);
                back[o++] = (char)v;
                i += 2;
            } else {
                FUZZ_CHECK(keep, "byte 0x%02x in folder name", (unsigned char)c);
                back[o++] = c;
            }
        }
        back[o] = '\0';
        FUZZ_CHECK(strcmp(back, group) == 0, "folder '%s' does not decode to the group", out);
    } else {
        FUZZ_CHECK(n == 0 || strcmp(group, ".") == 0 || strcmp(group, "..") == 0 || n * 3 >= sizeof out,
                   "group refused: '%s'", group);
    }
    free(group);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    size_t n = size - 1;
    uint8_t *b = fuzz_memdup(data + 1, n);
    check_group_dir(data + 1, n);
    for (size_t s = 0; s + 64 <= n && s < 128; s += 64) {
        if (flags & 2) memcpy(b + s + 32, INSTANCE, 16);
        if (!(flags & 1)) put32(b + s + 48, crc32c(0, b + s, 48));
    }
    /* the independent reading */
    int want = -1;
    uint64_t best = 0;
    for (int i = 0; i < 2 && (size_t)(i + 1) * 64 <= n; i++) {
        const uint8_t *s = b + i * 64;
        if (get32(s) != 0x31434D45u || crc32c(0, s, 48) != get32(s + 48) || memcmp(s + 32, INSTANCE, 16) != 0 ||
            (int64_t)get64(s + 16) < 0)
            continue;
        if (want < 0 || get64(s + 8) > best) { want = i; best = get64(s + 8); }
    }
    iothub_ckpt_pos_t pos = {-7, 7};
    int rc = iothub_ckpt_decode(b, n, INSTANCE, &pos);
    FUZZ_CHECK((rc == 0) == (want >= 0), "decode %d, independent reading slot %d", rc, want);
    if (want >= 0)
        FUZZ_CHECK(pos.next_seq == (int64_t)get64(b + want * 64 + 16) && pos.next_offset == get64(b + want * 64 + 24),
                   "decoded another slot than %d", want);
    /* another instance's checkpoint is never taken */
    FUZZ_CHECK(iothub_ckpt_decode(b, n, "ffffffffffffffff", &pos) != 0 || memcmp(INSTANCE, "ffffffffffffffff", 16) == 0 ||
                   (n >= 64 && memcmp(b + 32, "ffffffffffffffff", 16) == 0) || (n >= 128 && memcmp(b + 96, "ffffffffffffffff", 16) == 0),
               "a slot of another instance taken");
    free(b);
    return 0;
}
