/* sas.c — device SAS tokens (see sas.h). */
#include "simulator/sas.h"

#include <openssl/evp.h>
#include <string.h>

#include "util/hmac.h"

int sim_pct_encode(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (buf_reserve(b, strlen(s) * 3 + 1) != 0) return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            buf_putc(b, (char)c);
        } else if (c == '*') {
            buf_puts(b, "%2a"); /* the SDK's replace(/[!'()*]/, c => '%' + code.toString(16)): lowercase */
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
    return b->oom ? -1 : 0;
}

int sim_sas_token(buf_t *out, const char *host, const char *device_id, const unsigned char *key,
                  size_t key_len, long long expiry)
{
    buf_t uri = BUF_INIT, sr = BUF_INIT, to_sign = BUF_INIT;
    int rc = -1;
    unsigned char mac[HMAC_SHA256_LEN];
    unsigned char sig[4 * ((HMAC_SHA256_LEN + 2) / 3) + 1];

    buf_printf(&uri, "%s/devices/%s", host, device_id);
    if (uri.oom || sim_pct_encode(&sr, buf_str(&uri)) != 0) goto done;
    buf_printf(&to_sign, "%s\n%lld", buf_str(&sr), expiry);
    if (to_sign.oom) goto done;
    if (hmac_sha256(key, key_len, to_sign.data, to_sign.len, mac) != 0) goto done;
    EVP_EncodeBlock(sig, mac, HMAC_SHA256_LEN);
    buf_printf(out, "SharedAccessSignature sr=%s&sig=", buf_str(&sr));
    if (sim_pct_encode(out, (const char *)sig) != 0) goto done;
    buf_printf(out, "&se=%lld", expiry);
    rc = out->oom ? -1 : 0;
done:
    OPENSSL_cleanse(mac, sizeof mac);
    buf_free(&uri);
    buf_free(&sr);
    buf_free(&to_sign);
    return rc;
}
