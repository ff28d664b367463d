/* sas.c — IoT Hub SAS tokens (see sas.h). */
#include "devhost/iothub/sas.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/base64.h"
#include "util/hmac.h"

#define SAS_SCHEME "SharedAccessSignature"

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (unsigned char)tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Percent-decode s[0..n) into out (cap bytes with the terminator). '+' stays '+': SDKs
 * encode a literal plus as %2B, and a device id may contain '+'. Refuses bad escapes and
 * decoded NUL bytes. Returns the length or -1. */
static long pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3) return -1;   /* "%" needs two hex digits */
            int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = (unsigned char)(h << 4 | l);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}

static int set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return -1;
}

iothub_sas_status_t iothub_sas_parse(const char *token, size_t len, iothub_sas_t *out,
                                     char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen) err[0] = '\0';
    size_t sl = strlen(SAS_SCHEME);
    if (len > IOTHUB_SAS_MAX_TOKEN) {
        set_err(err, errlen, "the SAS token is longer than 4096 characters");
        return IOTHUB_SAS_MALFORMED;
    }
    if (len < sl + 1 || strncasecmp(token, SAS_SCHEME, sl) != 0 || token[sl] != ' ') {
        set_err(err, errlen, "expected 'SharedAccessSignature sr=...&sig=...&se=...'");
        return IOTHUB_SAS_MALFORMED;
    }
    size_t i = sl;
    while (i < len && token[i] == ' ') i++;
    int have_sr = 0, have_sig = 0, have_se = 0, have_skn = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && token[j] != '&') j++;
        const char *f = token + i;
        size_t fl = j - i;
        const char *eq = memchr(f, '=', fl);
        if (fl == 0 || !eq) {
            set_err(err, errlen, "SAS token field without '=' (fields are key=value joined by '&')");
            return IOTHUB_SAS_MALFORMED;
        }
        size_t kl = (size_t)(eq - f);
        const char *v = eq + 1;
        size_t vl = fl - kl - 1;
        for (size_t k = 0; k < fl; k++)
            if ((unsigned char)f[k] <= ' ' || (unsigned char)f[k] >= 0x7f) {
                set_err(err, errlen, "SAS token contains spaces or non-ASCII characters");
                return IOTHUB_SAS_MALFORMED;
            }
        int dup = 0;
        if (kl == 2 && memcmp(f, "sr", 2) == 0) {
            dup = have_sr++;
            if (!dup) {
                if (vl == 0 || vl > IOTHUB_SAS_MAX_SR) {
                    set_err(err, errlen, "SAS token sr is empty or longer than 1024 characters");
                    return IOTHUB_SAS_MALFORMED;
                }
                memcpy(out->sr, v, vl);
                out->sr[vl] = '\0';
                if (pct_decode(v, vl, out->resource, sizeof out->resource) < 0) {
                    set_err(err, errlen, "SAS token sr is not valid percent-encoding");
                    return IOTHUB_SAS_MALFORMED;
                }
            }
        } else if (kl == 3 && memcmp(f, "sig", 3) == 0) {
            dup = have_sig++;
            if (!dup) {
                char b64[64];
                unsigned char raw[48];
                long n = pct_decode(v, vl, b64, sizeof b64);
                if (n != 44 || base64_decode(b64, (size_t)n, raw) != 32) {
                    set_err(err, errlen, "SAS token sig is not a URL-encoded base64 HMAC-SHA256");
                    return IOTHUB_SAS_MALFORMED;
                }
                memcpy(out->sig, raw, 32);
            }
        } else if (kl == 2 && memcmp(f, "se", 2) == 0) {
            dup = have_se++;
            if (!dup) {
                if (vl == 0 || vl > 18) {
                    set_err(err, errlen, "SAS token se must be the expiry in seconds since 1970");
                    return IOTHUB_SAS_MALFORMED;
                }
                long long x = 0;
                for (size_t k = 0; k < vl; k++) {
                    if (!isdigit((unsigned char)v[k])) {
                        set_err(err, errlen, "SAS token se must be the expiry in seconds since 1970");
                        return IOTHUB_SAS_MALFORMED;
                    }
                    x = x * 10 + (v[k] - '0');
                }
                memcpy(out->se_text, v, vl);
                out->se_text[vl] = '\0';
                out->se = x;
            }
        } else if (kl == 3 && memcmp(f, "skn", 3) == 0) {
            dup = have_skn++;
            if (!dup && vl && (vl > IOTHUB_SAS_MAX_SKN ||
                               pct_decode(v, vl, out->skn, sizeof out->skn) < 0)) {
                set_err(err, errlen, "SAS token skn is too long or badly encoded");
                return IOTHUB_SAS_MALFORMED;
            }
        }
        /* other fields are ignored, as the SDKs' parsers do */
        if (dup) {
            set_err(err, errlen, "SAS token repeats a field");
            return IOTHUB_SAS_MALFORMED;
        }
        i = j + 1;
    }
    if (!have_sr || !have_sig || !have_se) {
        set_err(err, errlen, !have_sr ? "SAS token has no sr" : !have_sig ? "SAS token has no sig"
                                                                           : "SAS token has no se");
        return IOTHUB_SAS_MALFORMED;
    }
    return IOTHUB_SAS_OK;
}

/* 1 when resource (a token's decoded sr) covers want: equal, or a prefix ending at '/'
 * (ASCII case ignored; one trailing '/' on the resource ignored). */
static int resource_covers(const char *resource, const char *want)
{
    size_t rl = strlen(resource), wl = strlen(want);
    if (rl && resource[rl - 1] == '/') rl--;
    if (rl == 0 || rl > wl || strncasecmp(resource, want, rl) != 0) return 0;
    return rl == wl || want[rl] == '/';
}

iothub_sas_status_t iothub_sas_check(const iothub_sas_t *t, const char *host, const char *path,
                                     const unsigned char *key, size_t key_len, time_t now,
                                     char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (t->skn[0]) {
        if (err && errlen)
            snprintf(err, errlen, "the token is signed with shared access policy '%.64s'; the local hub "
                     "accepts device tokens only (signed with the device's key, no skn)", t->skn);
        return IOTHUB_SAS_POLICY;
    }
    char want[IOTHUB_SAS_MAX_SR * 2];
    if ((size_t)snprintf(want, sizeof want, "%s/%s", host, path) >= sizeof want ||
        !resource_covers(t->resource, want)) {
        if (err && errlen)
            snprintf(err, errlen, "the token's resource (sr) '%.300s' does not cover '%.300s'",
                     t->resource, want);
        return IOTHUB_SAS_WRONG_RESOURCE;
    }
    if ((long long)now > t->se + IOTHUB_SAS_SKEW_S) {
        if (err && errlen)
            snprintf(err, errlen, "the token expired at %lld (now %lld; %d s of clock skew allowed); "
                     "renew it", t->se, (long long)now, IOTHUB_SAS_SKEW_S);
        return IOTHUB_SAS_EXPIRED;
    }
    char msg[IOTHUB_SAS_MAX_SR + 32];
    int n = snprintf(msg, sizeof msg, "%s\n%s", t->sr, t->se_text);
    unsigned char mac[HMAC_SHA256_LEN];
    if (n < 0 || (size_t)n >= sizeof msg || hmac_sha256(key, key_len, msg, (size_t)n, mac) != 0 ||
        CRYPTO_memcmp(mac, t->sig, sizeof mac) != 0) {
        if (err && errlen) snprintf(err, errlen, "the token's signature does not match the device's key");
        OPENSSL_cleanse(mac, sizeof mac);
        return IOTHUB_SAS_BAD_SIGNATURE;
    }
    OPENSSL_cleanse(mac, sizeof mac);
    return IOTHUB_SAS_OK;
}

long iothub_sas_url_encode(const char *s, int upper, char *out, size_t outlen)
{
    const char *hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    const char *keep = upper ? "-_.~" : "!()*-._";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || strchr(keep, *p)) {
            if (o + 1 >= outlen) return -1;
            out[o++] = (char)*p;
        } else {
            /* Node's encodeUriComponentStrict writes !'()* with charCodeAt().toString(16):
             * lowercase ("%2a"), unlike encodeURIComponent's uppercase */
            const char *hx = upper && strchr("!'()*", *p) ? "0123456789abcdef" : hex;
            if (o + 3 >= outlen) return -1;
            out[o++] = '%';
            out[o++] = hx[*p >> 4];
            out[o++] = hx[*p & 15];
        }
    }
    if (o >= outlen) return -1;
    out[o] = '\0';
    return (long)o;
}

int iothub_sas_make(const char *sr_encoded, const unsigned char *key, size_t key_len, long long se,
                    const char *skn, char *out, size_t outlen)
{
    char msg[IOTHUB_SAS_MAX_SR + 32];
    int n = snprintf(msg, sizeof msg, "%s\n%lld", sr_encoded, se);
    if (n < 0 || (size_t)n >= sizeof msg) return -1;
    unsigned char mac[HMAC_SHA256_LEN];
    if (hmac_sha256(key, key_len, msg, (size_t)n, mac) != 0) return -1;
    char b64[BASE64_ENCODED_LEN(HMAC_SHA256_LEN) + 1], sig[3 * sizeof b64];
    base64_encode(mac, sizeof mac, b64);
    OPENSSL_cleanse(mac, sizeof mac);
    if (iothub_sas_url_encode(b64, 1, sig, sizeof sig) < 0) return -1;
    n = snprintf(out, outlen, SAS_SCHEME " sr=%s&sig=%s&se=%lld%s%s", sr_encoded, sig, se,
                 skn ? "&skn=" : "", skn ? skn : "");
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

const char *iothub_sas_status_name(iothub_sas_status_t st)
{
    switch (st) {
    case IOTHUB_SAS_OK: return "ok";
    case IOTHUB_SAS_MALFORMED: return "malformed";
    case IOTHUB_SAS_POLICY: return "policy token";
    case IOTHUB_SAS_WRONG_RESOURCE: return "wrong resource";
    case IOTHUB_SAS_EXPIRED: return "expired";
    case IOTHUB_SAS_BAD_SIGNATURE: return "bad signature";
    }
    return "unknown";
}
