/* table_auth.c — Shared Key / Shared Key Lite signing for the Table service.
 *
 * Owns: the string-to-sign layout, the HMAC-SHA256 + base64 step and the RFC 1123 date.
 * Separate so the signing vectors of shared/reference/table-storage.md §2.1 can be unit
 * tested without any HTTP. The key is only ever used as HMAC input, never formatted. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "azure/table.h"
#include "azure/table_internal.h"
#include "util/hmac.h"

static int sign_raw(const unsigned char *key, size_t key_len, const char *msg, size_t msg_len,
                    char *out, size_t outlen)
{
    unsigned char mac[HMAC_SHA256_LEN];
    if (!key || !key_len || !msg || !out || outlen < 45) return -1;
    if (hmac_sha256(key, key_len, msg, msg_len, mac) != 0) return -1;
    /* 32 bytes -> 44 base64 characters + NUL */
    int n = EVP_EncodeBlock((unsigned char *)out, mac, (int)sizeof mac);
    return n == 44 ? 0 : -1;
}

int table_sign(const unsigned char *key, size_t key_len, const char *string_to_sign,
               char *out, size_t outlen)
{
    if (!string_to_sign) return -1;
    return sign_raw(key, key_len, string_to_sign, strlen(string_to_sign), out, outlen);
}

int table_sign_lite(const unsigned char *key, size_t key_len, const char *date,
                    const char *canonical_resource, char *out, size_t outlen)
{
    buf_t b = BUF_INIT;
    if (!date || !canonical_resource) return -1;
    buf_puts(&b, date);
    buf_putc(&b, '\n');
    buf_puts(&b, canonical_resource);
    int rc = b.oom ? -1 : sign_raw(key, key_len, buf_str(&b), b.len, out, outlen);
    buf_free(&b);
    return rc;
}

int table_string_to_sign(buf_t *b, const char *verb, const char *content_type,
                         const char *date, const char *canonical_resource)
{
    buf_reset(b);
    buf_puts(b, verb);
    buf_puts(b, "\n\n");              /* Content-MD5 is never sent */
    buf_puts(b, content_type ? content_type : "");
    buf_putc(b, '\n');
    buf_puts(b, date);
    buf_putc(b, '\n');
    buf_puts(b, canonical_resource);
    return b->oom ? -1 : 0;
}

void table_rfc1123_now(char *out, size_t outlen)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t now = time(NULL);
    if (!gmtime_r(&now, &tm)) memset(&tm, 0, sizeof(tm));
    /* formatted by hand: strftime's %a/%b follow the locale */
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
}
