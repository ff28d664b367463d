/* fuzz_jwt.c — verification of SignalR Service access tokens (HS256 JWTs: sr_token_verify and
 * sr_token_mint, src/azure/signalr_token.c), as the local SignalR Service checks every client
 * and REST caller.
 *
 * Input: a mode byte, then
 * - mode even: the token text itself, verified with a fixed key (a random signature never
 *   matches, so this covers the structure checks before the HMAC);
 * - mode odd: NUL-separated fields header-JSON, payload-JSON, key, audience; the harness signs
 *   base64url(header) "." base64url(payload) with the key, so that everything after the
 *   signature check (alg, exp, aud, claims) is reached with any JSON.
 *
 * Invariants: a token the harness signed is never refused for its signature (with a non-empty
 * key); OK only for an object header with alg exactly "HS256" and no "crit", an exp in the
 * future and, when an audience is expected, a matching aud; changing any one character of an
 * accepted token (header, payload or signature) makes it unacceptable; a token minted with
 * sr_token_mint for the audience verifies with the same claims back. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <time.h>

#include "azure/signalr_token.h"
#include "util/buf.h"
#include "util/hmac.h"

#define NOW ((time_t)1700000000)

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url, the JWT way (an independent encoder: the one under test is static). */
static void b64url(buf_t *b, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        size_t chars = n - i >= 3 ? 4 : n - i + 1;
        for (size_t k = 0; k < chars; k++) buf_putc(b, B64URL[(v >> (18 - 6 * k)) & 63]);
    }
}

/* Independent judgement of what the verifier should accept from a token whose signature is
 * good: 1 when it must be OK. */
static int should_accept(const uint8_t *hdr, size_t hn, const uint8_t *pl, size_t pn, const char *aud)
{
    if (memchr(hdr, '\0', hn) || memchr(pl, '\0', pn)) return 0;
    int ok = 0;
    cJSON *h = cJSON_ParseWithLength((const char *)hdr, hn), *p = cJSON_ParseWithLength((const char *)pl, pn);
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    if (cJSON_IsObject(h) && cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0 &&
        !cJSON_GetObjectItemCaseSensitive(h, "crit") && cJSON_IsObject(p)) {
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(p, "exp");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(p, "aud");
        /* exp counts in whole seconds: 1700000000.5 is not after NOW */
        ok = cJSON_IsNumber(exp) && isfinite(exp->valuedouble) && exp->valuedouble >= (double)NOW + 1 &&
             (!a || cJSON_IsString(a) || cJSON_IsArray(a));
        /* the audience rule itself (case, trailing '/') is the verifier's: only "no aud at all
         * cannot match an expected one" is judged here */
        if (ok && aud && !a) ok = 0;
    }
    cJSON_Delete(h);
    cJSON_Delete(p);
    return ok;
}

/* Every one-character change of an accepted token is refused. */
static void check_tamper(const char *tok, const char *key, size_t key_len, const char *aud)
{
    size_t n = strlen(tok);
    char *t = fuzz_strndup((const uint8_t *)tok, n);
    size_t step = n > 64 ? n / 64 : 1;
    for (size_t i = 0; i < n; i += step) {
        if (t[i] == '.') continue;
        char was = t[i];
        t[i] = (char)(was == 'A' ? 'B' : 'A');
        sr_verify_status_t st = sr_token_verify(t, key, key_len, aud, NOW, NULL);
        FUZZ_CHECK(st != SR_TOKEN_OK, "token changed at %zu still accepted", i);
        t[i] = was;
    }
    free(t);
}

static void fuzz_signed(const uint8_t *data, size_t size)
{
    const uint8_t *f[4] = {NULL, NULL, NULL, NULL};
    size_t fl[4] = {0, 0, 0, 0};
    const uint8_t *rest = data;
    size_t rl = size;
    for (int i = 0; i < 4 && rest; i++) {
        f[i] = rest;
        fl[i] = fuzz_split(rest, rl, 0, &rest, &rl);
    }
    if (!f[2] || fl[2] == 0) return;   /* no key: nothing to sign with */
    const char *key = (const char *)f[2];
    size_t key_len = fl[2];
    char *aud = f[3] ? fuzz_strndup(f[3], fl[3]) : NULL;

    buf_t tok = BUF_INIT;
    b64url(&tok, f[0], fl[0]);
    buf_putc(&tok, '.');
    b64url(&tok, f[1], fl[1]);
    uint8_t mac[HMAC_SHA256_LEN];
    if (hmac_sha256(key, key_len, tok.data, tok.len, mac) != 0) abort();
    buf_putc(&tok, '.');
    b64url(&tok, mac, sizeof mac);
    if (tok.oom) abort();

    sr_claims_t claims;
    sr_verify_status_t st = sr_token_verify(tok.data, key, key_len, aud, NOW, &claims);
    FUZZ_CHECK(st != SR_TOKEN_BAD_SIGNATURE, "a correctly signed token refused for its signature");
    int want = should_accept(f[0], fl[0], f[1], fl[1], aud);
    if (st == SR_TOKEN_OK) {
        FUZZ_CHECK(want, "accepted a token that breaks the rules");
        FUZZ_CHECK(claims.exp > NOW, "accepted with exp %lld", (long long)claims.exp);
        check_tamper(tok.data, key, key_len, aud);
    } else if (!aud) {
        /* with no audience to match, only the rules above decide */
        FUZZ_CHECK(!want || tok.len > 65536, "refused (%s) a token that keeps the rules", sr_verify_status_name(st));
    }
    sr_claims_free(&claims);
    buf_free(&tok);

    /* minted for the audience, it verifies with its claims */
    if (aud && *aud) {
        char *m = sr_token_mint(key, key_len, aud, NOW + 3600, "fuzz-user");
        if (m) {
            sr_verify_status_t ms = sr_token_verify(m, key, key_len, aud, NOW, &claims);
            FUZZ_CHECK(ms == SR_TOKEN_OK || strlen(m) > 65536, "minted token refused: %s", sr_verify_status_name(ms));
            if (ms == SR_TOKEN_OK) {
                FUZZ_CHECK(claims.exp == NOW + 3600, "exp %lld", (long long)claims.exp);
                FUZZ_CHECK(claims.user_id && strcmp(claims.user_id, "fuzz-user") == 0, "user %s",
                           claims.user_id ? claims.user_id : "(none)");
                /* claims are sized by the token: the audience comes back whole */
                FUZZ_CHECK(claims.naud == 1 && strcmp(claims.aud[0], aud) == 0, "%zu audiences, first %s", claims.naud,
                           claims.naud ? claims.aud[0] : "(none)");
            }
            sr_claims_free(&claims);
            free(m);
        }
    }
    free(aud);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) {
        fuzz_signed(data + 1, size - 1);
    } else {
        char *tok = fuzz_strndup(data + 1, size - 1);
        sr_claims_t claims;
        sr_verify_status_t st = sr_token_verify(tok, "fuzz-key", 8, "http://localhost/client/?hub=enviromon", NOW, &claims);
        FUZZ_CHECK(st != SR_TOKEN_OK, "an unsigned token accepted");
        FUZZ_CHECK(*sr_verify_status_name(st), "no name for status %d", (int)st);
        sr_claims_free(&claims);
        free(tok);
    }
    return 0;
}
