/* signalr_token.c — Azure SignalR Service connection strings and HS256 access tokens.
 *
 * Owns: the connection-string parser (the SDK's rules: split on ';', each pair on its first
 * '=', case-insensitive keys, duplicates rejected), URL/audience derivation (audiences have
 * no port and a lower-cased hub), and minting/verifying HS256 JWTs keyed with the RAW bytes
 * of AccessKey. Pure functions with no shared state, so every call is thread-safe. Facts and
 * test vectors: shared/reference/signalr-protocol.md §1–§3. */
#include "azure/signalr_token.h"
#include "util/hmac.h"

#include "util/buf.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SR_TOKEN_MAX_LEN 65536   /* longer "tokens" are rejected before any work */
#define SR_JWT_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* ---------------------------------------------------------------- connection string */

static void set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
    if (err && errlen) snprintf(err, errlen, fmt, arg ? arg : "");
}

static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static void lower_ascii(char *s)
{
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

/* May byte c appear in a URL as written (RFC 3986: unreserved, reserved and '%')? Blanks,
 * control characters, non-ASCII bytes and " < > \ ^ ` { | } may not. */
static int url_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"<>\\^`{|}", c);
}

/* Check an http(s) URL "scheme://host[:port][/...]" as the connection string's `what` gives it
 * (Endpoint, ClientEndpoint): the scheme is http or https; the host, which goes verbatim into
 * URLs and token audiences, is an IPv6 literal (hex digits, ':' and '.', kept with its
 * brackets) or a name of RFC 3986 unreserved characters (letters, digits, '-', '.', '_', '~');
 * the port, when given, is 1..65535 in digits; nothing in the URL is a blank, a control
 * character or anything else a URL cannot hold. Returns 0 with the scheme's length, the host
 * [*h, *hend) and the port (0 when absent), or -1 with a message naming `what`. */
static int split_url(const char *url, const char *what, size_t *slen, const char **h, const char **hend,
                     int *port, char *err, size_t errlen)
{
    const char *why = NULL;
    const char *sep = strstr(url, "://");
    *slen = sep ? (size_t)(sep - url) : 0;
    if (!sep) {
        why = "is not an http(s) URL";
    } else if (!((*slen == 4 && strncasecmp(url, "http", 4) == 0) ||
                 (*slen == 5 && strncasecmp(url, "https", 5) == 0))) {
        why = "must use http or https";
    } else {
        const char *p = sep + 3, *e;
        if (*p == '[') {
            e = strchr(p, ']');
            if (e && e > p + 1 && strspn(p + 1, "0123456789abcdefABCDEF:.") == (size_t)(e - p - 1)) e++;
            else e = p;
        } else {
            e = p + strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~");
        }
        *h = p;
        *hend = e;
        *port = 0;
        if (e == p || (*e && !strchr(":/?#", *e))) {
            why = "has no valid host";
        } else if (*e == ':') {
            size_t nd = strspn(e + 1, "0123456789");
            long v = nd && nd <= 5 ? strtol(e + 1, NULL, 10) : 0;
            if (v < 1 || v > 65535 || (e[1 + nd] && !strchr("/?#", e[1 + nd]))) why = "has an invalid port";
            else *port = (int)v;
        }
        for (const char *q = url; !why && *q; q++)
            if (!url_char_ok((unsigned char)*q)) why = "contains a blank or a character a URL cannot hold";
    }
    if (why) {
        if (err && errlen) snprintf(err, errlen, "SignalR connection string: %s '%s' %s", what, url, why);
        return -1;
    }
    return 0;
}

/* Parse the Endpoint URL into c->scheme, c->host (both lower-cased) and the URL's port (0 when
 * absent). Returns 0 or -1. */
static int parse_endpoint_url(const char *url, sr_conn_t *c, int *url_port, char *err, size_t errlen)
{
    size_t slen;
    const char *h, *hend;
    if (split_url(url, "Endpoint", &slen, &h, &hend, url_port, err, errlen) != 0) return -1;
    c->scheme = strndup(url, slen);
    c->host = strndup(h, (size_t)(hend - h));
    if (!c->scheme || !c->host) {
        set_err(err, errlen, "SignalR connection string: %sout of memory", "");
        return -1;
    }
    lower_ascii(c->scheme);
    lower_ascii(c->host);
    return 0;
}

/* Version must look like the SDK's ^1\.\d+ (anything after the digits is tolerated). */
static int version_ok(const char *v)
{
    if (v[0] != '1' || v[1] != '.' || !isdigit((unsigned char)v[2])) return 0;
    return 1;
}

int sr_conn_parse(const char *connstr, sr_conn_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!connstr) {
        set_err(err, errlen, "SignalR connection string is empty (set AzureSignalRConnectionString)%s", "");
        return -1;
    }
    char *copy = strdup(connstr);
    if (!copy) {
        set_err(err, errlen, "SignalR connection string: %sout of memory", "");
        return -1;
    }
    /* Known keys; values borrowed from copy. */
    static const char *const names[] = {"endpoint", "accesskey", "version", "port",
                                        "clientendpoint", "serverendpoint", "authtype"};
    enum { K_ENDPOINT, K_KEY, K_VERSION, K_PORT, K_CLIENT, K_SERVER, K_AUTH, K_N };
    const char *vals[K_N] = {0};
    int pieces = 0, rc = -1;

    char *save = NULL;
    for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        char *piece = trim(tok);
        if (!*piece) continue;
        pieces++;
        char *eq = strchr(piece, '=');
        if (!eq) {
            /* Do not echo the piece: it might be a key that lost its name. */
            set_err(err, errlen, "SignalR connection string: a part has no '=' (expected Key=Value pairs separated by ';')%s", "");
            goto done;
        }
        *eq = '\0';
        char *k = trim(piece), *v = trim(eq + 1);
        for (int i = 0; i < K_N; i++) {
            if (strcasecmp(k, names[i]) != 0) continue;
            if (vals[i]) {
                set_err(err, errlen, "SignalR connection string: duplicate key '%s'", k);
                goto done;
            }
            vals[i] = v;
        }
        /* Unknown keys (ClientId, TenantId, ...) are ignored, as the SDK tolerates them. */
    }
    if (pieces < 2) {
        set_err(err, errlen, "SignalR connection string is malformed: expected at least Endpoint=...;AccessKey=...%s", "");
        goto done;
    }
    if (!vals[K_ENDPOINT] || !*vals[K_ENDPOINT]) {
        set_err(err, errlen, "SignalR connection string has no Endpoint=%s", "");
        goto done;
    }
    if (vals[K_AUTH] && *vals[K_AUTH]) {
        set_err(err, errlen, "SignalR connection string: AuthType=%s (Entra ID) is not supported; use an AccessKey connection string", vals[K_AUTH]);
        goto done;
    }
    if (!vals[K_KEY] || !*vals[K_KEY]) {
        set_err(err, errlen, "SignalR connection string has no AccessKey=%s", "");
        goto done;
    }
    if (vals[K_VERSION] && !version_ok(vals[K_VERSION])) {
        set_err(err, errlen, "SignalR connection string: Version '%s' is not supported (expected 1.x)", vals[K_VERSION]);
        goto done;
    }

    char *ep = strdup(vals[K_ENDPOINT]);
    if (!ep) goto oom;
    size_t n = strlen(ep);
    while (n && ep[n - 1] == '/') ep[--n] = '\0';
    out->endpoint = ep;
    int url_port = 0;
    if (parse_endpoint_url(ep, out, &url_port, err, errlen) != 0) goto done;

    out->port = url_port ? url_port : (strcmp(out->scheme, "https") == 0 ? 443 : 80);
    if (vals[K_PORT]) {
        char *end = NULL;
        errno = 0;
        long p = strtol(vals[K_PORT], &end, 10);
        if (errno || end == vals[K_PORT] || *end || p < 1 || p > 65535) {
            set_err(err, errlen, "SignalR connection string: Port '%s' must be an integer from 1 to 65535", vals[K_PORT]);
            goto done;
        }
        out->port = (int)p;
    }
    out->access_key = strdup(vals[K_KEY]);
    out->version = strdup(vals[K_VERSION] ? vals[K_VERSION] : "1.0");
    if (!out->access_key || !out->version) goto oom;
    if (vals[K_CLIENT] && *vals[K_CLIENT]) {
        out->client_endpoint = strdup(vals[K_CLIENT]);
        if (!out->client_endpoint) goto oom;
        size_t cn = strlen(out->client_endpoint), slen;
        while (cn && out->client_endpoint[cn - 1] == '/') out->client_endpoint[--cn] = '\0';
        const char *h, *hend;
        int cport;
        if (split_url(out->client_endpoint, "ClientEndpoint", &slen, &h, &hend, &cport, err, errlen) != 0) goto done;
    }
    rc = 0;
    goto done;
oom:
    set_err(err, errlen, "SignalR connection string: %sout of memory", "");
done:
    /* The copy holds the key: wipe before freeing. */
    OPENSSL_cleanse(copy, strlen(connstr));
    free(copy);
    if (rc != 0) sr_conn_free(out);
    return rc;
}

void sr_conn_free(sr_conn_t *c)
{
    if (!c) return;
    free(c->endpoint);
    free(c->scheme);
    free(c->host);
    if (c->access_key) {
        OPENSSL_cleanse(c->access_key, strlen(c->access_key));
        free(c->access_key);
    }
    free(c->version);
    free(c->client_endpoint);
    memset(c, 0, sizeof *c);
}

static int default_port(const sr_conn_t *c)
{
    return strcmp(c->scheme, "https") == 0 ? 443 : 80;
}

static int fits(int n, size_t outlen)
{
    return n >= 0 && (size_t)n < outlen;
}

int sr_request_base(const sr_conn_t *c, char *out, size_t outlen)
{
    if (!c || !c->scheme || !c->host || !out) return -1;
    int n = c->port == default_port(c)
                ? snprintf(out, outlen, "%s://%s", c->scheme, c->host)
                : snprintf(out, outlen, "%s://%s:%d", c->scheme, c->host, c->port);
    return fits(n, outlen) ? 0 : -1;
}

/* Lower-cased copy of hub into dst (dstlen bytes); -1 when it does not fit or is empty. */
static int hub_lower(const char *hub, char *dst, size_t dstlen)
{
    if (!hub || !*hub) return -1;
    size_t n = strlen(hub);
    if (n >= dstlen) return -1;
    for (size_t i = 0; i <= n; i++) dst[i] = (char)tolower((unsigned char)hub[i]);
    return 0;
}

int sr_client_url(const sr_conn_t *c, const char *hub, char *out, size_t outlen)
{
    char base[1024], h[256];
    if (!c || !out || hub_lower(hub, h, sizeof h) != 0) return -1;
    if (c->client_endpoint) {
        if (!fits(snprintf(base, sizeof base, "%s", c->client_endpoint), sizeof base)) return -1;
    } else if (sr_request_base(c, base, sizeof base) != 0) {
        return -1;
    }
    return fits(snprintf(out, outlen, "%s/client/?hub=%s", base, h), outlen) ? 0 : -1;
}

int sr_client_audience(const sr_conn_t *c, const char *hub, char *out, size_t outlen)
{
    char h[256];
    if (!c || !c->scheme || !c->host || !out || hub_lower(hub, h, sizeof h) != 0) return -1;
    return fits(snprintf(out, outlen, "%s://%s/client/?hub=%s", c->scheme, c->host, h), outlen) ? 0 : -1;
}

void sr_put_path_segment(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            buf_putc(b, (char)*p);
        } else {
            buf_putc(b, '%');
            buf_putc(b, hex[*p >> 4]);
            buf_putc(b, hex[*p & 15]);
        }
    }
}

int sr_rest_send_path(const char *hub, const char *user_id, const char *group, char *out, size_t outlen)
{
    char h[256];
    if (!out || hub_lower(hub, h, sizeof h) != 0) return -1;
    if (user_id && !*user_id) return -1;
    if (group && !*group) return -1;
    buf_t b = BUF_INIT;
    buf_puts(&b, "/api/hubs/");
    sr_put_path_segment(&b, h);
    if (user_id) {
        buf_puts(&b, "/users/");
        sr_put_path_segment(&b, user_id);
    } else if (group) {
        buf_puts(&b, "/groups/");
        sr_put_path_segment(&b, group);
    }
    buf_puts(&b, "/:send?api-version=2022-06-01");
    int rc = (!b.oom && b.len < outlen) ? 0 : -1;
    if (rc == 0) memcpy(out, buf_str(&b), b.len + 1);
    buf_free(&b);
    return rc;
}

int sr_rest_url(const sr_conn_t *c, const char *path_query, char *out, size_t outlen)
{
    char base[1024];
    if (!c || !path_query || path_query[0] != '/' || !out) return -1;
    if (sr_request_base(c, base, sizeof base) != 0) return -1;
    return fits(snprintf(out, outlen, "%s%s", base, path_query), outlen) ? 0 : -1;
}

int sr_rest_audience(const sr_conn_t *c, const char *path_query, char *out, size_t outlen)
{
    if (!c || !c->scheme || !c->host || !path_query || path_query[0] != '/' || !out) return -1;
    size_t plen = strlen(path_query);
    if (strncmp(path_query, "/api/v1/", 8) == 0) {
        /* v1 (official sample, docs): the URL without query and without trailing slash. */
        const char *q = strchr(path_query, '?');
        if (q) plen = (size_t)(q - path_query);
        while (plen > 1 && path_query[plen - 1] == '/') plen--;
    }
    if (plen > INT_MAX) return -1;
    return fits(snprintf(out, outlen, "%s://%s%.*s", c->scheme, c->host, (int)plen, path_query), outlen) ? 0 : -1;
}

/* ---------------------------------------------------------------- base64url */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url_put(buf_t *b, const unsigned char *p, size_t n)
{
    if (buf_reserve(b, (n + 2) / 3 * 4) != 0) return;
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        *o++ = B64URL[v >> 18];
        *o++ = B64URL[(v >> 12) & 63];
        *o++ = B64URL[(v >> 6) & 63];
        *o++ = B64URL[v & 63];
    }
    if (n - i >= 1) { /* no padding in base64url JWT parts */
        unsigned v = (unsigned)p[i] << 16 | (n - i == 2 ? (unsigned)p[i + 1] << 8 : 0u);
        *o++ = B64URL[v >> 18];
        *o++ = B64URL[(v >> 12) & 63];
        if (n - i == 2) *o++ = B64URL[(v >> 6) & 63];
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

static int b64url_val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '-') return 62;
    if (ch == '_') return 63;
    return -1;
}

/* Strict unpadded base64url decode of s[0..n) into a new NUL-terminated buffer. Rejects
 * padding, other alphabets, impossible lengths and non-zero trailing bits. NULL on error. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *out_len)
{
    if (n % 4 == 1) return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 3);
    if (!out) return NULL;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0) { free(out); return NULL; }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) { free(out); return NULL; }   /* non-canonical trailing bits */
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* ---------------------------------------------------------------- HS256 */

static int hs256(const char *key, size_t key_len, const char *data, size_t n, unsigned char mac[32])
{
    return hmac_sha256(key, key_len, data, n, mac);
}

char *sr_token_mint(const char *key, size_t key_len, const char *aud, time_t exp, const char *user_id)
{
    if (!key || key_len == 0 || key_len > INT_MAX || !aud || !*aud) return NULL;
    buf_t payload = BUF_INIT, tok = BUF_INIT;
    char *result = NULL;
    size_t want = strlen(aud) + (user_id ? strlen(user_id) : 0) + 64;
    if (buf_reserve(&payload, want) != 0 || buf_reserve(&tok, want * 4 / 3 + 128) != 0) goto out;

    buf_puts(&payload, "{\"aud\":");
    if (buf_put_json_string(&payload, aud) != 0) goto out;
    buf_printf(&payload, ",\"exp\":%lld", (long long)exp);
    if (user_id && *user_id) {
        buf_puts(&payload, ",\"nameid\":");
        if (buf_put_json_string(&payload, user_id) != 0) goto out;
    }
    buf_putc(&payload, '}');
    if (payload.oom) goto out;

    b64url_put(&tok, (const unsigned char *)SR_JWT_HEADER, strlen(SR_JWT_HEADER));
    buf_putc(&tok, '.');
    b64url_put(&tok, (const unsigned char *)payload.data, payload.len);
    if (tok.oom) goto out;
    unsigned char mac[32];
    if (hs256(key, key_len, tok.data, tok.len, mac) != 0) goto out;
    buf_putc(&tok, '.');
    b64url_put(&tok, mac, sizeof mac);
    OPENSSL_cleanse(mac, sizeof mac);
    if (tok.oom) goto out;
    result = buf_steal(&tok);
out:
    buf_free(&payload);
    buf_free(&tok);
    return result;
}

/* ---------------------------------------------------------------- verification */

/* Compare two audience URLs: scheme and host ASCII case-insensitively, the rest exactly,
 * ignoring one or more trailing '/' on either side. */
static int aud_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la && a[la - 1] == '/') la--;
    while (lb && b[lb - 1] == '/') lb--;
    /* Length of "scheme://host" prefix (case-insensitive part), counted only when the whole
     * "://" lies within the compared length: stripping the '/' of "http://" leaves "http:". */
    const char *sa = strstr(a, "://"), *sb = strstr(b, "://");
    size_t pa = 0, pb = 0;
    if (sa && (size_t)(sa - a) + 3 <= la) {
        pa = (size_t)(sa - a) + 3;
        while (pa < la && a[pa] != '/' && a[pa] != '?' && a[pa] != '#') pa++;
    }
    if (sb && (size_t)(sb - b) + 3 <= lb) {
        pb = (size_t)(sb - b) + 3;
        while (pb < lb && b[pb] != '/' && b[pb] != '?' && b[pb] != '#') pb++;
    }
    assert(pa <= la && pb <= lb);
    if (pa != pb || la != lb) return 0;
    if (pa && strncasecmp(a, b, pa) != 0) return 0;
    return memcmp(a + pa, b + pb, la - pa) == 0;
}

static int add_aud(sr_claims_t *claims, const char *v)
{
    char *d = strdup(v);
    if (!d) return -1;
    claims->aud[claims->naud++] = d;
    return 0;
}

/* Copy the audiences (a string, or the string elements of an array) and the user id. */
static int fill_claims(sr_claims_t *claims, const cJSON *pj, const cJSON *aud, time_t exp)
{
    claims->exp = exp;
    size_t cap = cJSON_IsString(aud) ? 1 : cJSON_IsArray(aud) ? (size_t)cJSON_GetArraySize(aud) : 0;
    if (cap && !(claims->aud = calloc(cap, sizeof *claims->aud))) return -1;
    if (cJSON_IsString(aud)) {
        if (add_aud(claims, aud->valuestring) != 0) return -1;
    } else if (cJSON_IsArray(aud)) {
        const cJSON *a;
        cJSON_ArrayForEach(a, aud) {
            if (cJSON_IsString(a) && add_aud(claims, a->valuestring) != 0) return -1;
        }
    }
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(pj, "asrs.s.uid");
    if (!cJSON_IsString(uid)) uid = cJSON_GetObjectItemCaseSensitive(pj, "nameid");
    if (cJSON_IsString(uid) && !(claims->user_id = strdup(uid->valuestring))) return -1;
    return 0;
}

void sr_claims_free(sr_claims_t *claims)
{
    if (!claims) return;
    for (size_t i = 0; i < claims->naud; i++) free(claims->aud[i]);
    free(claims->aud);
    free(claims->user_id);
    memset(claims, 0, sizeof *claims);
}

sr_verify_status_t sr_token_verify(const char *token, const char *key, size_t key_len,
                                   const char *expected_aud, time_t now, sr_claims_t *claims)
{
    if (claims) memset(claims, 0, sizeof *claims);
    if (!token || !key) return SR_TOKEN_MALFORMED;
    size_t tlen = strnlen(token, SR_TOKEN_MAX_LEN + 1);
    if (tlen == 0 || tlen > SR_TOKEN_MAX_LEN) return SR_TOKEN_MALFORMED;
    const char *d1 = memchr(token, '.', tlen);
    if (!d1) return SR_TOKEN_MALFORMED;
    const char *d2 = memchr(d1 + 1, '.', tlen - (size_t)(d1 + 1 - token));
    if (!d2 || memchr(d2 + 1, '.', tlen - (size_t)(d2 + 1 - token))) return SR_TOKEN_MALFORMED;
    size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1), slen = tlen - (size_t)(d2 + 1 - token);
    if (!hlen || !plen || !slen) return SR_TOKEN_MALFORMED;

    sr_verify_status_t st = SR_TOKEN_MALFORMED;
    unsigned char *hdr = NULL, *pl = NULL, *sig = NULL;
    cJSON *hj = NULL, *pj = NULL;
    size_t n = 0, sig_len = 0;

    /* Header: must be an object whose alg is exactly HS256 (rejects "none" and friends). */
    hdr = b64url_decode(token, hlen, &n);
    if (!hdr || memchr(hdr, '\0', n)) goto out;
    hj = cJSON_ParseWithLength((const char *)hdr, n);
    if (!cJSON_IsObject(hj)) goto out;
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(hj, "alg");
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0) goto out;
    const cJSON *crit = cJSON_GetObjectItemCaseSensitive(hj, "crit");
    if (crit) goto out;  /* no extensions understood */

    sig = b64url_decode(d2 + 1, slen, &sig_len);
    if (!sig || sig_len != 32) goto out;
    pl = b64url_decode(d1 + 1, plen, &n);
    if (!pl || memchr(pl, '\0', n)) goto out;

    /* Signature before trusting anything in the payload. */
    unsigned char mac[32];
    if (key_len > INT_MAX || hs256(key, key_len, token, (size_t)(d2 - token), mac) != 0) goto out;
    int sig_ok = key_len > 0 && CRYPTO_memcmp(mac, sig, 32) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    if (!sig_ok) { st = SR_TOKEN_BAD_SIGNATURE; goto out; }

    pj = cJSON_ParseWithLength((const char *)pl, n);
    if (!cJSON_IsObject(pj)) goto out;

    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(pj, "exp");
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(pj, "aud");
    if (exp && !cJSON_IsNumber(exp)) goto out;
    if (aud && !cJSON_IsString(aud) && !cJSON_IsArray(aud)) goto out;
    time_t exp_v = 0;
    if (exp) {
        double e = exp->valuedouble;
        if (!isfinite(e)) goto out;
        /* Clamp absurd values instead of overflowing time_t. */
        if (e > 253402300799.0) e = 253402300799.0;   /* 9999-12-31 */
        if (e < 0) e = 0;
        exp_v = (time_t)e;
    }
    if (claims && fill_claims(claims, pj, aud, exp_v) != 0) goto out; /* out of memory */
    if (!exp || exp_v <= now) { st = SR_TOKEN_EXPIRED; goto out; }

    if (expected_aud) {
        int match = 0;
        if (cJSON_IsString(aud)) {
            match = aud_equal(aud->valuestring, expected_aud);
        } else if (cJSON_IsArray(aud)) {
            const cJSON *a;
            cJSON_ArrayForEach(a, aud) {
                if (cJSON_IsString(a) && aud_equal(a->valuestring, expected_aud)) { match = 1; break; }
            }
        }
        if (!match) { st = SR_TOKEN_BAD_AUDIENCE; goto out; }
    }
    st = SR_TOKEN_OK;
out:
    cJSON_Delete(hj);
    cJSON_Delete(pj);
    free(hdr);
    free(pl);
    free(sig);
    return st;
}

const char *sr_verify_status_name(sr_verify_status_t st)
{
    switch (st) {
    case SR_TOKEN_OK: return "ok";
    case SR_TOKEN_MALFORMED: return "malformed token";
    case SR_TOKEN_BAD_SIGNATURE: return "bad signature";
    case SR_TOKEN_EXPIRED: return "token expired";
    case SR_TOKEN_BAD_AUDIENCE: return "wrong audience";
    }
    return "unknown";
}
