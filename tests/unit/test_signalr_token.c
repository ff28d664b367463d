/* test_signalr_token.c — SignalR connection strings and HS256 tokens against the reference
 * vectors (shared/reference/signalr-protocol.md §1–§3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "azure/signalr_token.h"
#include "util/hmac.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMU_KEY "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
#define EMU_CONN "Endpoint=http://localhost;Port=8888;AccessKey=" EMU_KEY ";Version=1.0;"
#define VEC_AUD "http://localhost/api/hubs/telemetry/:send"
#define VEC_TOKEN                                                                                  \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                        \
    "eyJhdWQiOiJodHRwOi8vbG9jYWxob3N0L2FwaS9odWJzL3RlbGVtZXRyeS86c2VuZCIsImV4cCI6MjAwMDAwMDAwMH0." \
    "DudGrS6uu4ZeM9-D1NjPx9r0ChP64y3Qy9FWItIkQU4"
#define VEC_DECODED_KEY_SIG "F0V1LX0OFTq69YTzhow2imD0CYJKgymlBKDNroZMQTE"

static sr_verify_status_t verify(const char *tok, const char *aud, time_t now)
{
    return sr_token_verify(tok, EMU_KEY, strlen(EMU_KEY), aud, now, NULL);
}

/* --- minting ---------------------------------------------------------------------- */

static void test_positive_vector(void **state)
{
    (void)state;
    char *tok = sr_token_mint(EMU_KEY, strlen(EMU_KEY), VEC_AUD, 2000000000, NULL);
    assert_non_null(tok);
    assert_string_equal(tok, VEC_TOKEN);
    free(tok);
    sr_claims_t cl;
    assert_int_equal(sr_token_verify(VEC_TOKEN, EMU_KEY, strlen(EMU_KEY), VEC_AUD, 1999999999, &cl), SR_TOKEN_OK);
    assert_int_equal(cl.naud, 1);
    assert_string_equal(cl.aud[0], VEC_AUD);
    assert_int_equal((long long)cl.exp, 2000000000LL);
    assert_null(cl.user_id);
    sr_claims_free(&cl);
}

static void test_decoded_key_is_wrong(void **state)
{
    (void)state;
    unsigned char raw[64];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)EMU_KEY, (int)strlen(EMU_KEY));
    assert_int_equal(n, 33); /* 44 chars, no padding → 33 bytes */
    char *tok = sr_token_mint((const char *)raw, (size_t)n, VEC_AUD, 2000000000, NULL);
    assert_non_null(tok);
    const char *sig = strrchr(tok, '.') + 1;
    assert_string_equal(sig, VEC_DECODED_KEY_SIG);
    assert_string_not_equal(tok, VEC_TOKEN);
    /* The reference token does not verify under the decoded key, and vice versa. */
    assert_int_equal(sr_token_verify(VEC_TOKEN, (const char *)raw, (size_t)n, VEC_AUD, 0, NULL),
                     SR_TOKEN_BAD_SIGNATURE);
    assert_int_equal(verify(tok, VEC_AUD, 0), SR_TOKEN_BAD_SIGNATURE);
    free(tok);
}

static void test_user_id_claim(void **state)
{
    (void)state;
    char *tok = sr_token_mint(EMU_KEY, strlen(EMU_KEY), "http://localhost/client/?hub=enviromon",
                              2000000000, "user \"7\"");
    assert_non_null(tok);
    sr_claims_t cl;
    assert_int_equal(sr_token_verify(tok, EMU_KEY, strlen(EMU_KEY), "http://localhost/client/?hub=enviromon",
                                     1000, &cl), SR_TOKEN_OK);
    assert_string_equal(cl.user_id, "user \"7\"");
    sr_claims_free(&cl);
    free(tok);
}

static void test_mint_rejects_bad_input(void **state)
{
    (void)state;
    assert_null(sr_token_mint(NULL, 0, VEC_AUD, 1, NULL));
    assert_null(sr_token_mint(EMU_KEY, 0, VEC_AUD, 1, NULL));
    assert_null(sr_token_mint(EMU_KEY, strlen(EMU_KEY), "", 1, NULL));
    assert_null(sr_token_mint(EMU_KEY, strlen(EMU_KEY), NULL, 1, NULL));
}

/* --- verification failures ----------------------------------------------------------- */

static void test_expired(void **state)
{
    (void)state;
    assert_int_equal(verify(VEC_TOKEN, VEC_AUD, 2000000000), SR_TOKEN_EXPIRED);
    assert_int_equal(verify(VEC_TOKEN, VEC_AUD, 2100000000), SR_TOKEN_EXPIRED);
    /* A token with no exp at all never verifies. */
    char *tok = sr_token_mint(EMU_KEY, strlen(EMU_KEY), VEC_AUD, 0, NULL);
    assert_non_null(tok);
    assert_int_equal(verify(tok, VEC_AUD, 1), SR_TOKEN_EXPIRED);
    free(tok);
}

static void test_wrong_audience(void **state)
{
    (void)state;
    assert_int_equal(verify(VEC_TOKEN, "http://localhost/api/hubs/other/:send", 0), SR_TOKEN_BAD_AUDIENCE);
    assert_int_equal(verify(VEC_TOKEN, "https://localhost/api/hubs/telemetry/:send", 0), SR_TOKEN_BAD_AUDIENCE);
    assert_int_equal(verify(VEC_TOKEN, "http://localhost/api/hubs/Telemetry/:send", 0), SR_TOKEN_BAD_AUDIENCE);
    assert_int_equal(verify(VEC_TOKEN, "http://localhost:8888/api/hubs/telemetry/:send", 0), SR_TOKEN_BAD_AUDIENCE);
    /* Scheme/host case and a trailing slash do not matter; NULL skips the check. */
    assert_int_equal(verify(VEC_TOKEN, "HTTP://LocalHost/api/hubs/telemetry/:send/", 0), SR_TOKEN_OK);
    assert_int_equal(verify(VEC_TOKEN, NULL, 0), SR_TOKEN_OK);
}

/* Audiences that are nothing but a scheme and "://" (fuzz_jwt: comparing "http://" with itself
 * stripped the trailing '/' into the "://" and compared -2 bytes). */
static void test_degenerate_audience(void **state)
{
    (void)state;
    static const struct { const char *aud, *expect; sr_verify_status_t want; } cases[] = {
        {"http://", "http://", SR_TOKEN_OK},
        {"http:///", "http://", SR_TOKEN_OK},
        {"HTTP://", "http://", SR_TOKEN_BAD_AUDIENCE},   /* "HTTP:" and "http:" hold no host part */
        {"://", "://", SR_TOKEN_OK},
        {"http://", "http://a", SR_TOKEN_BAD_AUDIENCE},
        {"http://a", "http://", SR_TOKEN_BAD_AUDIENCE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = sr_token_mint(EMU_KEY, strlen(EMU_KEY), cases[i].aud, 2000000000, NULL);
        assert_non_null(tok);
        sr_verify_status_t st = verify(tok, cases[i].expect, 1999999999);
        if (st != cases[i].want) fail_msg("case %zu: %s", i, sr_verify_status_name(st));
        free(tok);
    }
}

static void test_tampered(void **state)
{
    (void)state;
    char tok[sizeof VEC_TOKEN];
    /* A changed payload byte (aud claim → different text, still valid base64url). */
    memcpy(tok, VEC_TOKEN, sizeof tok);
    char *p = strchr(tok, '.') + 10;
    *p = (char)(*p == 'A' ? 'B' : 'A');
    assert_int_equal(verify(tok, NULL, 0), SR_TOKEN_BAD_SIGNATURE);
    /* A changed signature byte. */
    memcpy(tok, VEC_TOKEN, sizeof tok);
    p = strrchr(tok, '.') + 5;
    *p = (char)(*p == 'A' ? 'B' : 'A');
    assert_int_equal(verify(tok, NULL, 0), SR_TOKEN_BAD_SIGNATURE);
    /* Payload swapped for one with a later exp, signature kept. */
    char *later = sr_token_mint(EMU_KEY, strlen(EMU_KEY), VEC_AUD, 2100000000, NULL);
    assert_non_null(later);
    char forged[512];
    const char *vec_sig = strrchr(VEC_TOKEN, '.');
    size_t head = (size_t)(strrchr(later, '.') - later);
    snprintf(forged, sizeof forged, "%.*s%s", (int)head, later, vec_sig);
    assert_int_equal(verify(forged, NULL, 0), SR_TOKEN_BAD_SIGNATURE);
    free(later);
    /* Wrong key. */
    assert_int_equal(sr_token_verify(VEC_TOKEN, "nope", 4, NULL, 0, NULL), SR_TOKEN_BAD_SIGNATURE);
    assert_int_equal(sr_token_verify(VEC_TOKEN, "", 0, NULL, 0, NULL), SR_TOKEN_BAD_SIGNATURE);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        ".",
        "..",
        "abc",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..DudGrS6uu4ZeM9-D1NjPx9r0ChP64y3Qy9FWItIkQU4",
        /* '+' and '/' are not base64url; '=' padding rejected */
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e+J.DudGrS6uu4ZeM9-D1NjPx9r0ChP64y3Qy9FWItIkQU4",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9=.eyJ9.DudGrS6uu4ZeM9-D1NjPx9r0ChP64y3Qy9FWItIkQU4",
        /* header not JSON ("hello") */
        "aGVsbG8.eyJleHAiOjF9.DudGrS6uu4ZeM9-D1NjPx9r0ChP64y3Qy9FWItIkQU4",
        /* signature of the wrong length */
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjF9.AAAA",
        /* header is a JSON array */
        "W10.eyJleHAiOjF9.DudGrS6uu4ZeM9-D1NjPx9r0ChP64y3Qy9FWItIkQU4",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sr_verify_status_t st = verify(bad[i], NULL, 0);
        if (st != SR_TOKEN_MALFORMED) fail_msg("case %zu (%s): got %s", i, bad[i], sr_verify_status_name(st));
    }
    assert_int_equal(sr_token_verify(NULL, EMU_KEY, 3, NULL, 0, NULL), SR_TOKEN_MALFORMED);
    /* Very long input is refused without work. */
    size_t big = 100000;
    char *huge = malloc(big + 1);
    assert_non_null(huge);
    memset(huge, 'a', big);
    huge[big] = '\0';
    huge[10] = '.';
    huge[20] = '.';
    assert_int_equal(verify(huge, NULL, 0), SR_TOKEN_MALFORMED);
    free(huge);
}

/* base64url of p[0..n) without padding (test-side, via OpenSSL's standard base64). */
static void b64url_n(const void *p, size_t n, char *out)
{
    int k = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    while (k > 0 && out[k - 1] == '=') k--;
    out[k] = '\0';
    for (char *q = out; *q; q++) {
        if (*q == '+') *q = '-';
        else if (*q == '/') *q = '_';
    }
}

static void b64url(const char *s, char *out)
{
    b64url_n(s, strlen(s), out);
}

/* An HS256 token (emulator key) for any payload JSON; the caller frees it. */
static char *sign(const char *payload)
{
    size_t n = strlen(payload);
    char *tok = malloc(64 + n * 4 / 3 + 64);
    assert_non_null(tok);
    b64url("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", tok);
    strcat(tok, ".");
    b64url_n(payload, n, tok + strlen(tok));
    unsigned char mac[32];
    assert_int_equal(hmac_sha256(EMU_KEY, strlen(EMU_KEY), tok, strlen(tok), mac), 0);
    strcat(tok, ".");
    b64url_n(mac, sizeof mac, tok + strlen(tok));
    return tok;
}

/* Claims are sized by the token: an audience of 2,500 bytes and a user id of 1,000 come
 * through whole (they were cut at 511 and 255 bytes, so long group names got 401 and long
 * user ids were unreachable). */
static void test_long_claims(void **state)
{
    (void)state;
    char aud[2600], uid[1001], payload[4000];
    int k = snprintf(aud, sizeof aud, "http://localhost/api/v1/hubs/h/groups/");
    memset(aud + k, 'g', 2500 - (size_t)k);
    aud[2500] = '\0';
    memset(uid, 'u', 1000);
    uid[1000] = '\0';
    snprintf(payload, sizeof payload, "{\"aud\":\"%s\",\"exp\":2000000000,\"nameid\":\"%s\"}", aud, uid);
    char *tok = sign(payload);
    sr_claims_t cl;
    assert_int_equal(sr_token_verify(tok, EMU_KEY, strlen(EMU_KEY), aud, 1000, &cl), SR_TOKEN_OK);
    assert_int_equal(cl.naud, 1);
    assert_string_equal(cl.aud[0], aud);
    assert_string_equal(cl.user_id, uid);
    assert_int_equal(cl.exp, 2000000000);
    sr_claims_free(&cl);
    assert_null(cl.aud);
    assert_null(cl.user_id);
    free(tok);
}

/* RFC 7519 §4.1.3: aud may be an array; the token is for us when one element matches. */
static void test_aud_array(void **state)
{
    (void)state;
    char *tok = sign("{\"aud\":[\"http://elsewhere/x\",7,\"" VEC_AUD "\"],\"exp\":2000000000,\"asrs.s.uid\":\"bob\"}");
    sr_claims_t cl;
    assert_int_equal(sr_token_verify(tok, EMU_KEY, strlen(EMU_KEY), VEC_AUD, 1000, &cl), SR_TOKEN_OK);
    assert_int_equal(cl.naud, 2); /* the number is not an audience */
    assert_string_equal(cl.aud[0], "http://elsewhere/x");
    assert_string_equal(cl.aud[1], VEC_AUD);
    assert_string_equal(cl.user_id, "bob");
    sr_claims_free(&cl);
    assert_int_equal(verify(tok, "http://localhost/api/hubs/other/:send", 1000), SR_TOKEN_BAD_AUDIENCE);
    free(tok);
    tok = sign("{\"aud\":[],\"exp\":2000000000}");
    assert_int_equal(sr_token_verify(tok, EMU_KEY, strlen(EMU_KEY), NULL, 1000, &cl), SR_TOKEN_OK);
    assert_int_equal(cl.naud, 0);
    assert_null(cl.user_id);
    sr_claims_free(&cl);
    assert_int_equal(verify(tok, VEC_AUD, 1000), SR_TOKEN_BAD_AUDIENCE);
    free(tok);
}

static void test_alg_none_and_others(void **state)
{
    (void)state;
    char h[128], body[256], tok[1024];
    char payload[256];
    b64url("{\"aud\":\"" VEC_AUD "\",\"exp\":2000000000}", payload);
    /* alg none with an empty signature: the classic bypass. */
    b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", h);
    snprintf(tok, sizeof tok, "%s.%s.", h, payload);
    assert_int_equal(verify(tok, VEC_AUD, 0), SR_TOKEN_MALFORMED);
    /* alg none but carrying the genuine HS256 signature of the same payload: still refused. */
    snprintf(body, sizeof body, "%s", strrchr(VEC_TOKEN, '.') + 1);
    snprintf(tok, sizeof tok, "%s.%s.%s", h, payload, body);
    assert_int_equal(verify(tok, VEC_AUD, 0), SR_TOKEN_MALFORMED);
    /* Other algorithms and case variants are refused. */
    static const char *algs[] = {"{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}", "{\"typ\":\"JWT\"}",
                                 "{\"alg\":256}", "{\"alg\":\"HS256\",\"crit\":[\"x\"]}"};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        b64url(algs[i], h);
        snprintf(tok, sizeof tok, "%s.%s.%s", h, payload, body);
        assert_int_equal(verify(tok, VEC_AUD, 0), SR_TOKEN_MALFORMED);
    }
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(sr_verify_status_name(SR_TOKEN_OK), "ok");
    assert_string_equal(sr_verify_status_name(SR_TOKEN_EXPIRED), "token expired");
    assert_string_equal(sr_verify_status_name(SR_TOKEN_BAD_AUDIENCE), "wrong audience");
}

/* --- connection strings -------------------------------------------------------------- */

static void test_parse_emulator(void **state)
{
    (void)state;
    sr_conn_t c;
    char err[256] = "", out[512];
    assert_int_equal(sr_conn_parse(EMU_CONN, &c, err, sizeof err), 0);
    assert_string_equal(c.scheme, "http");
    assert_string_equal(c.host, "localhost");
    assert_int_equal(c.port, 8888);
    assert_string_equal(c.access_key, EMU_KEY);
    assert_string_equal(c.version, "1.0");
    assert_null(c.client_endpoint);
    assert_int_equal(sr_request_base(&c, out, sizeof out), 0);
    assert_string_equal(out, "http://localhost:8888");
    assert_int_equal(sr_client_url(&c, "Enviromon", out, sizeof out), 0);
    assert_string_equal(out, "http://localhost:8888/client/?hub=enviromon");
    assert_int_equal(sr_client_audience(&c, "Enviromon", out, sizeof out), 0);
    assert_string_equal(out, "http://localhost/client/?hub=enviromon");
    char path[256];
    assert_int_equal(sr_rest_send_path("Enviromon", NULL, NULL, path, sizeof path), 0);
    assert_string_equal(path, "/api/hubs/enviromon/:send?api-version=2022-06-01");
    assert_int_equal(sr_rest_url(&c, path, out, sizeof out), 0);
    assert_string_equal(out, "http://localhost:8888/api/hubs/enviromon/:send?api-version=2022-06-01");
    assert_int_equal(sr_rest_audience(&c, path, out, sizeof out), 0);
    assert_string_equal(out, "http://localhost/api/hubs/enviromon/:send?api-version=2022-06-01");
    assert_int_equal(sr_rest_audience(&c, "/api/v1/hubs/enviromon/?x=1", out, sizeof out), 0);
    assert_string_equal(out, "http://localhost/api/v1/hubs/enviromon");
    assert_int_equal(sr_rest_send_path("Enviromon", "u 1/é", NULL, path, sizeof path), 0);
    assert_string_equal(path, "/api/hubs/enviromon/users/u%201%2F%C3%A9/:send?api-version=2022-06-01");
    assert_int_equal(sr_rest_send_path("Enviromon", NULL, "g1", path, sizeof path), 0);
    assert_string_equal(path, "/api/hubs/enviromon/groups/g1/:send?api-version=2022-06-01");
    assert_int_equal(sr_rest_send_path("", NULL, NULL, path, sizeof path), -1);
    assert_int_equal(sr_rest_send_path("h", NULL, NULL, path, 10), -1);
    assert_int_equal(sr_client_url(&c, "Enviromon", out, 20), -1);
    sr_conn_free(&c);
}

static void test_parse_azure_forms(void **state)
{
    (void)state;
    sr_conn_t c;
    char err[256] = "", out[512];
    /* Case-insensitive keys, spaces, trailing '/', '=' padding kept in the key, https default port. */
    assert_int_equal(sr_conn_parse(" endpoint = https://X.service.signalr.net/ ; ACCESSKEY=abc+/def== ;", &c, err,
                                   sizeof err), 0);
    assert_string_equal(c.endpoint, "https://X.service.signalr.net");
    assert_string_equal(c.host, "x.service.signalr.net");
    assert_int_equal(c.port, 443);
    assert_string_equal(c.access_key, "abc+/def==");
    assert_int_equal(sr_client_url(&c, "Hub1", out, sizeof out), 0);
    assert_string_equal(out, "https://x.service.signalr.net/client/?hub=hub1");
    sr_conn_free(&c);
    /* Port= overrides the URL's port; the audience never carries a port. */
    assert_int_equal(sr_conn_parse("Endpoint=https://h.example:1234;AccessKey=k;Port=4443;Version=1.1", &c, err,
                                   sizeof err), 0);
    assert_int_equal(c.port, 4443);
    assert_int_equal(sr_request_base(&c, out, sizeof out), 0);
    assert_string_equal(out, "https://h.example:4443");
    assert_int_equal(sr_client_audience(&c, "H", out, sizeof out), 0);
    assert_string_equal(out, "https://h.example/client/?hub=h");
    sr_conn_free(&c);
    /* ClientEndpoint replaces the client URL's base but not the audience. */
    assert_int_equal(sr_conn_parse("Endpoint=http://a;AccessKey=k;ClientEndpoint=https://proxy.example/sr/", &c, err,
                                   sizeof err), 0);
    assert_int_equal(sr_client_url(&c, "Enviromon", out, sizeof out), 0);
    assert_string_equal(out, "https://proxy.example/sr/client/?hub=enviromon");
    assert_int_equal(sr_client_audience(&c, "Enviromon", out, sizeof out), 0);
    assert_string_equal(out, "http://a/client/?hub=enviromon");
    sr_conn_free(&c);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct { const char *conn, *expect; } cases[] = {
        {"", "at least"},
        {"Endpoint=http://a", "at least"},
        {"Endpoint=http://a;SECRETKEYWITHOUTNAME", "no '='"},
        {"AccessKey=SECRET123;Version=1.0", "no Endpoint"},
        {"Endpoint=http://a;Version=1.0", "no AccessKey"},
        {"Endpoint=http://a;AccessKey=SECRET123;AccessKey=SECRET123", "duplicate"},
        {"Endpoint=ftp://a;AccessKey=SECRET123", "http or https"},
        {"Endpoint=localhost;AccessKey=SECRET123", "not an http(s) URL"},
        {"Endpoint=http://:80;AccessKey=SECRET123", "no valid host"},
        {"Endpoint=http://;AccessKey=SECRET123", "not an http(s) URL"},
        {"Endpoint=http://a:99999;AccessKey=SECRET123", "invalid port"},
        {"Endpoint=http://a;AccessKey=SECRET123;Port=0", "Port"},
        {"Endpoint=http://a;AccessKey=SECRET123;Port=12x", "Port"},
        {"Endpoint=http://a;AccessKey=SECRET123;Version=2.0", "Version"},
        {"Endpoint=http://a;AuthType=azure.msi", "not supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sr_conn_t c;
        char err[256] = "";
        if (sr_conn_parse(cases[i].conn, &c, err, sizeof err) != -1) fail_msg("case %zu accepted", i);
        if (!strstr(err, cases[i].expect)) fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].expect);
        if (strstr(err, "SECRET")) fail_msg("case %zu: error leaks the key: %s", i, err);
        assert_null(c.access_key);
    }
    sr_conn_t c;
    char err[64];
    assert_int_equal(sr_conn_parse(NULL, &c, err, sizeof err), -1);
}

/* The host goes verbatim into URLs and audiences: only an IPv6 literal or a name of RFC 3986
 * unreserved characters is a host (fuzz_connection_string found "[=========?==::1]" taken as
 * one, which made every derived URL and audience malformed). Both URLs must be URLs. */
static void test_parse_host_rule(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Endpoint=http://[=========?==::1]:8888/;AccessKey=SECRET123",
        "Endpoint=http://[]:8888;AccessKey=SECRET123",
        "Endpoint=http://[::1;AccessKey=SECRET123",
        "Endpoint=http://a\"b/;AccessKey=SECRET123",
        "Endpoint=http://user@host/;AccessKey=SECRET123",
        "Endpoint=http://a b;AccessKey=SECRET123",
        "Endpoint=http://h\xc3\xa9/;AccessKey=SECRET123",
        "Endpoint=http://a;AccessKey=SECRET123;ClientEndpoint=https://[=?::1]/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sr_conn_t c;
        char err[256] = "";
        if (sr_conn_parse(bad[i], &c, err, sizeof err) != -1) fail_msg("case %zu accepted", i);
        if (!strstr(err, "no valid host")) fail_msg("case %zu: '%s'", i, err);
    }
    /* The same rules for ClientEndpoint, and no blank or control character in either URL
     * (fuzz_connection_string: "https://pr.e'/////\x11...\n\n//" was kept with its newlines,
     * and stripping the trailing '/' left blanks at the end that a second parse trimmed). */
    static const struct { const char *conn, *expect; } bad_url[] = {
        {"Endpoint=http://a;AccessKey=SECRET123;ClientEndpoint=https://p.example/a\021b//\n\n//", "ClientEndpoint"},
        {"Endpoint=http://a;AccessKey=SECRET123;ClientEndpoint=https://p.example/a b", "blank"},
        {"Endpoint=http://a;AccessKey=SECRET123;ClientEndpoint=ftp://p.example", "http or https"},
        {"Endpoint=http://a;AccessKey=SECRET123;ClientEndpoint=https://p.example:0", "invalid port"},
        {"Endpoint=http://a/x\ty;AccessKey=SECRET123", "blank"},
        {"Endpoint=http://a/{x};AccessKey=SECRET123", "cannot hold"},
        {"Endpoint=http://a:+80;AccessKey=SECRET123", "invalid port"},
    };
    for (size_t i = 0; i < sizeof bad_url / sizeof bad_url[0]; i++) {
        sr_conn_t c;
        char err[256] = "";
        if (sr_conn_parse(bad_url[i].conn, &c, err, sizeof err) != -1) fail_msg("URL case %zu accepted", i);
        if (!strstr(err, bad_url[i].expect)) fail_msg("URL case %zu: '%s' lacks '%s'", i, err, bad_url[i].expect);
        if (strstr(err, "SECRET")) fail_msg("URL case %zu: error leaks the key: %s", i, err);
    }
    sr_conn_t c;
    char err[256] = "", out[256];
    assert_int_equal(sr_conn_parse("Endpoint=http://[::1]:8888/;AccessKey=k", &c, err, sizeof err), 0);
    assert_string_equal(c.host, "[::1]");
    assert_int_equal(c.port, 8888);
    assert_int_equal(sr_client_audience(&c, "Enviromon", out, sizeof out), 0);
    assert_string_equal(out, "http://[::1]/client/?hub=enviromon");
    sr_conn_free(&c);
    assert_int_equal(sr_conn_parse("Endpoint=http://signalr_emulator-1.local~x:8888;AccessKey=k", &c, err, sizeof err), 0);
    assert_string_equal(c.host, "signalr_emulator-1.local~x");
    sr_conn_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positive_vector),
        cmocka_unit_test(test_decoded_key_is_wrong),
        cmocka_unit_test(test_user_id_claim),
        cmocka_unit_test(test_mint_rejects_bad_input),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_wrong_audience),
        cmocka_unit_test(test_degenerate_audience),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_alg_none_and_others),
        cmocka_unit_test(test_long_claims),
        cmocka_unit_test(test_aud_array),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_parse_emulator),
        cmocka_unit_test(test_parse_azure_forms),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_host_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
