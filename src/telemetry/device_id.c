/* device_id.c — device id trust and validity rules, and the RowKey encoding (see device_id.h). */
#include "telemetry/device_id.h"

#include "util/utf8.h"

#include <stdio.h>
#include <string.h>

int device_id_valid(const char *id, char *err, size_t errlen)
{
    char dummy[8];
    if (!err) { err = dummy; errlen = sizeof dummy; }
    if (!id || !*id) { snprintf(err, errlen, "device id is empty"); return 0; }
    size_t len = strlen(id);
    if (!utf8_valid(id, len)) { snprintf(err, errlen, "device id is not valid UTF-8"); return 0; }
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if ((*p & 0xC0) != 0x80) chars++;   /* count UTF-8 lead bytes = characters */
    if (chars > DEVICE_ID_MAX_CHARS) {
        snprintf(err, errlen, "device id is %zu characters long (at most %d)", chars, DEVICE_ID_MAX_CHARS);
        return 0;
    }
    return 1;
}

const char *device_id_choose(const char *system_id, const char *payload_id, int *spoofed)
{
    if (spoofed) *spoofed = 0;
    if (system_id) {
        if (payload_id && spoofed && strcmp(system_id, payload_id) != 0) *spoofed = 1;
        return system_id;
    }
    return payload_id;
}

/* If the character at p must be escaped: its escape into esc (NUL-terminated) and the
 * number of bytes it takes in the id; else 0. */
static size_t escape_at(const unsigned char *p, char esc[4])
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned cp;
    size_t n;
    if (p[0] < 0x20 || p[0] == '#' || p[0] == '/' || p[0] == '?' || p[0] == '\\' || p[0] == '~' || p[0] == 0x7F) {
        cp = p[0];
        n = 1;
    } else if (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) {
        cp = p[1];   /* U+0080..U+009F */
        n = 2;
    } else if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) {
        esc[0] = '~';
        esc[1] = p[2] == 0xA8 ? 'L' : 'P';
        esc[2] = '\0';
        return 3;
    } else {
        return 0;
    }
    esc[0] = '~';
    esc[1] = hex[cp >> 4];
    esc[2] = hex[cp & 15];
    esc[3] = '\0';
    return n;
}

int device_row_key(const char *id, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)id;
    char esc[4];
    /* '~' needs escaping only inside an encoded key; in a plain one it just must not lead */
    int plain = p[0] != '~';
    for (const unsigned char *q = p; plain && *q; q++)
        if (*q != '~' && escape_at(q, esc)) plain = 0;
    size_t len = strlen(id);
    if (plain) {
        if (len + 1 > cap) return -1;
        memcpy(out, id, len + 1);
        return (int)len;
    }
    size_t o = 0;
    if (cap < 2) return -1;
    out[o++] = '~';
    while (*p) {
        size_t n = escape_at(p, esc);
        const char *s = n ? esc : (const char *)p;
        size_t sl = n ? strlen(esc) : 1;
        if (!n) n = 1;
        if (o + sl + 1 > cap) return -1;
        memcpy(out + o, s, sl);
        o += sl;
        p += n;
    }
    out[o] = '\0';
    return (int)o;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int device_id_from_row_key(const char *rk, char *out, size_t cap)
{
    size_t len = strlen(rk);
    size_t o = 0;
    if (rk[0] != '~') {
        if (len + 1 > cap) return -1;
        memcpy(out, rk, len + 1);
        o = len;
        goto canonical;
    }
    for (const char *p = rk + 1; *p;) {
        unsigned char b[3];
        size_t bn;
        if (*p != '~') {
            b[0] = (unsigned char)*p++;
            bn = 1;
        } else if (p[1] == 'L' || p[1] == 'P') {
            b[0] = 0xE2; b[1] = 0x80; b[2] = p[1] == 'L' ? 0xA8 : 0xA9;
            bn = 3;
            p += 2;
        } else {
            int h = hexval(p[1]), l = h < 0 ? -1 : hexval(p[2]);
            if (l < 0) return -1;
            unsigned cp = (unsigned)(h * 16 + l);
            if (cp == 0) return -1;
            if (cp < 0x80) { b[0] = (unsigned char)cp; bn = 1; }
            else { b[0] = (unsigned char)(0xC0 | (cp >> 6)); b[1] = (unsigned char)(0x80 | (cp & 0x3F)); bn = 2; }
            p += 3;
        }
        if (o + bn + 1 > cap) return -1;
        memcpy(out + o, b, bn);
        o += bn;
    }
    out[o] = '\0';
canonical: {
    /* only the canonical form: every key stands for one id and every id has one key (a block:
     * C11 allows no declaration right after a label, and clang refuses it) */
    char again[DEVICE_ROW_KEY_MAX];
    if (device_row_key(out, again, sizeof again) < 0 || strcmp(again, rk) != 0) return -1;
    return (int)o;
}
}
