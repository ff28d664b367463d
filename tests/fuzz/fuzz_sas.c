/* fuzz_sas.c — IoT Hub shared access signatures as the local hub checks them (iothub_sas_parse,
 * iothub_sas_check, iothub_sas_url_encode and iothub_sas_make: src/devhost/iothub/sas.c).
 *
 * Input: a mode byte, then
 * - mode even: an Authorization value (any bytes, NUL included), parsed and checked for device
 *   "dev1" with a fixed key;
 * - mode odd: a device id (up to the first NUL) for which tokens are minted the way the Node
 *   SDK and the C SDK encode the resource, then parsed and checked.
 *
 * Invariants: a parsed token has a non-empty sr of at most 1024 bytes whose percent-decoding is
 * the resource (no NUL), an se that is the decimal value of its digits, and a decoded skn; the
 * check says OK only when skn is empty, the resource covers the requested one (equal or a
 * prefix ending at '/', ASCII case ignored), se + 5 min is not past and the signature is the
 * HMAC of sr "\n" se_text with the key (recomputed here); a parsed token minted again from its
 * sr and se parses to the same fields and passes the check for its own resource; a token
 * minted for any device id, in either encoding, parses back to that id's resource and passes
 * the check for that device's send path, and fails it with another key. */
#include "fuzz.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <strings.h>

#include "devhost/iothub/sas.h"
#include "util/base64.h"
#include "util/hmac.h"

#define HOST "enviromon.azure-devices.net"
#define NOW 1700000000LL

static const unsigned char KEY[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char OTHER_KEY[32] = "fedcba9876543210fedcba9876543210";

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Independent percent-decoding ('+' stays '+'); -1 on a bad escape or a decoded NUL. */
static long decode(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int h = s[i + 1] ? hexval(s[i + 1]) : -1, l = h >= 0 && s[i + 2] ? hexval(s[i + 2]) : -1;
            if (h < 0 || l < 0) return -1;
            c = h << 4 | l;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}

static int covers(const char *resource, const char *want)
{
    size_t rl = strlen(resource), wl = strlen(want);
    if (rl && resource[rl - 1] == '/') rl--;
    return rl && rl <= wl && strncasecmp(resource, want, rl) == 0 && (rl == wl || want[rl] == '/');
}

static void check_parsed(const iothub_sas_t *t)
{
    size_t n = strlen(t->sr);
    FUZZ_CHECK(n >= 1 && n <= IOTHUB_SAS_MAX_SR, "sr of %zu bytes", n);
    char res[IOTHUB_SAS_MAX_SR + 1];
    FUZZ_CHECK(decode(t->sr, res, sizeof res) >= 0 && strcmp(res, t->resource) == 0, "resource %s is not sr %s decoded",
               t->resource, t->sr);
    long long se = 0;
    size_t sl = strlen(t->se_text);
    FUZZ_CHECK(sl >= 1 && sl <= 18, "se_text '%s'", t->se_text);
    for (size_t i = 0; i < sl; i++) {
        FUZZ_CHECK(isdigit((unsigned char)t->se_text[i]), "se_text '%s'", t->se_text);
        se = se * 10 + (t->se_text[i] - '0');
    }
    FUZZ_CHECK(se == t->se, "se %lld for '%s'", t->se, t->se_text);
}

/* The check's verdict, judged independently. */
static iothub_sas_status_t judge(const iothub_sas_t *t, const char *path, const unsigned char *key, size_t key_len,
                                 long long now)
{
    if (t->skn[0]) return IOTHUB_SAS_POLICY;
    char want[2 * IOTHUB_SAS_MAX_SR];
    snprintf(want, sizeof want, "%s/%s", HOST, path);
    if (!covers(t->resource, want)) return IOTHUB_SAS_WRONG_RESOURCE;
    if (now > t->se + IOTHUB_SAS_SKEW_S) return IOTHUB_SAS_EXPIRED;
    char msg[IOTHUB_SAS_MAX_SR + 32];
    int n = snprintf(msg, sizeof msg, "%s\n%s", t->sr, t->se_text);
    unsigned char mac[HMAC_SHA256_LEN];
    if (hmac_sha256(key, key_len, msg, (size_t)n, mac) != 0) abort();
    return CRYPTO_memcmp(mac, t->sig, sizeof mac) == 0 ? IOTHUB_SAS_OK : IOTHUB_SAS_BAD_SIGNATURE;
}

static void check_verdict(const iothub_sas_t *t, const char *path, const unsigned char *key, long long now)
{
    char err[512] = "";
    iothub_sas_status_t st = iothub_sas_check(t, HOST, path, key, 32, (time_t)now, err, sizeof err);
    iothub_sas_status_t want = judge(t, path, key, 32, now);
    FUZZ_CHECK(st == want, "check says %s, should be %s (%s)", iothub_sas_status_name(st), iothub_sas_status_name(want), err);
    FUZZ_CHECK((st == IOTHUB_SAS_OK) == (err[0] == '\0'), "message '%s' for %s", err, iothub_sas_status_name(st));
}

static void fuzz_token(const uint8_t *data, size_t size)
{
    char *tok = (char *)fuzz_memdup(data, size);
    iothub_sas_t t;
    char err[512] = "";
    iothub_sas_status_t st = iothub_sas_parse(tok, size, &t, err, sizeof err);
    free(tok);
    if (st != IOTHUB_SAS_OK) {
        FUZZ_CHECK(st == IOTHUB_SAS_MALFORMED && err[0], "parse failed with %s '%s'", iothub_sas_status_name(st), err);
        return;
    }
    check_parsed(&t);
    check_verdict(&t, "devices/dev1/messages/events", KEY, NOW);
    check_verdict(&t, "devices/dev1", KEY, t.se);

    /* minted again from its own sr and se: the same fields, and valid for its own resource */
    if (t.skn[0]) return;
    char again[IOTHUB_SAS_MAX_TOKEN + 64];
    if (iothub_sas_make(t.sr, KEY, sizeof KEY, t.se, "", again, sizeof again) != 0) return;
    iothub_sas_t u;
    FUZZ_CHECK(iothub_sas_parse(again, strlen(again), &u, err, sizeof err) == IOTHUB_SAS_OK, "minted token: %s", err);
    FUZZ_CHECK(strcmp(u.sr, t.sr) == 0 && strcmp(u.resource, t.resource) == 0 && u.se == t.se && !u.skn[0],
               "minted token parses to other fields");
    size_t hl = strlen(HOST);
    if (strncasecmp(u.resource, HOST "/", hl + 1) == 0) {
        char err2[512];
        iothub_sas_status_t s2 = iothub_sas_check(&u, HOST, u.resource + hl + 1, KEY, sizeof KEY, (time_t)u.se, err2, sizeof err2);
        FUZZ_CHECK(s2 == IOTHUB_SAS_OK, "minted token refused for its own resource: %s", err2);
    }
}

static void fuzz_device(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t rl;
    size_t n = fuzz_split(data, size, 0, &rest, &rl);
    if (n == 0 || n > 128) return;
    char *id = fuzz_strndup(data, n);
    char resource[300], enc[IOTHUB_SAS_MAX_SR + 1], tok[IOTHUB_SAS_MAX_TOKEN + 64], path[300], err[512];
    snprintf(resource, sizeof resource, HOST "/devices/%s", id);
    snprintf(path, sizeof path, "devices/%s/messages/events", id);
    for (int upper = 0; upper <= 1; upper++) {
        long el = iothub_sas_url_encode(resource, upper, enc, sizeof enc);
        if (el < 0) continue;   /* longer than an sr may be */
        FUZZ_CHECK((size_t)el == strlen(enc), "encoded length %ld", el);
        for (const char *p = enc; *p; p++)
            FUZZ_CHECK((unsigned char)*p > ' ' && (unsigned char)*p < 0x7f && *p != '&', "encoding kept byte 0x%02x",
                       (unsigned char)*p);
        FUZZ_CHECK(iothub_sas_make(enc, KEY, sizeof KEY, NOW + 3600, upper ? NULL : "", tok, sizeof tok) == 0,
                   "cannot mint for %s", enc);
        iothub_sas_t t;
        FUZZ_CHECK(iothub_sas_parse(tok, strlen(tok), &t, err, sizeof err) == IOTHUB_SAS_OK, "minted token: %s", err);
        FUZZ_CHECK(strcmp(t.resource, resource) == 0, "resource %s, want %s", t.resource, resource);
        FUZZ_CHECK(iothub_sas_check(&t, HOST, path, KEY, sizeof KEY, NOW, err, sizeof err) == IOTHUB_SAS_OK,
                   "minted token refused: %s", err);
        FUZZ_CHECK(iothub_sas_check(&t, HOST, path, OTHER_KEY, sizeof OTHER_KEY, NOW, err, sizeof err) ==
                       IOTHUB_SAS_BAD_SIGNATURE, "accepted with another key");
    }
    free(id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) fuzz_device(data + 1, size - 1);
    else fuzz_token(data + 1, size - 1);
    return 0;
}
