/* fuzz_connection_string.c — the storage connection string (storage_account_parse,
 * src/azure/storage_account.c) and the SignalR Service connection string (sr_conn_parse and the
 * URLs and audiences derived from it, src/azure/signalr_token.c). Every input goes to both.
 *
 * Invariants:
 * - a parsed storage account has an absolute http(s) table endpoint without a trailing '/',
 *   query or blank, a non-empty decoded key only with an account name, a SAS without '?',
 *   blanks or '#'; written back as a connection string it parses to the same account;
 * - a parsed SignalR string has scheme http or https, a lower-case host, a port in 1..65535, a
 *   key and a 1.x version; written back it parses to the same fields; the derived URLs start
 *   with the scheme; a token minted with its key for its client audience verifies;
 * - an error message never contains the account key or access key: the input is parsed again
 *   with every AccountKey / AccessKey value replaced by a marker, and the marker must not
 *   appear in either error. */
#include "fuzz.h"

#include <ctype.h>
#include <strings.h>
#include <time.h>

#include "azure/signalr_token.h"
#include "azure/table.h"
#include "util/base64.h"
#include "util/buf.h"

#define MARKER "\x01MARKER\x01"

/* The input with the value of every `name=` pair (name matched as the parsers do: trimmed,
 * ASCII case ignored) replaced by MARKER. */
static char *with_marker(const char *s, const char *name)
{
    buf_t b = BUF_INIT;
    for (const char *p = s;;) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        const char *k = p;
        size_t kn = eq ? (size_t)(eq - p) : 0;
        while (kn && isspace((unsigned char)*k)) { k++; kn--; }
        while (kn && isspace((unsigned char)k[kn - 1])) kn--;
        if (eq && kn == strlen(name) && strncasecmp(k, name, kn) == 0) {
            buf_append(&b, p, (size_t)(eq + 1 - p));
            buf_puts(&b, MARKER);
        } else {
            buf_append(&b, p, n);
        }
        if (!end) break;
        buf_putc(&b, ';');
        p = end + 1;
    }
    if (b.oom) abort();
    return buf_steal(&b);
}

static int streq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* ---- storage ---------------------------------------------------------------------------- */

static void check_storage_account(const storage_account_t *a)
{
    const char *ep = a->table_endpoint;
    FUZZ_CHECK(ep && (strncasecmp(ep, "http://", 7) == 0 || strncasecmp(ep, "https://", 8) == 0),
               "table endpoint %s is not http(s)", ep ? ep : "(null)");
    size_t n = strlen(ep);
    FUZZ_CHECK(ep[n - 1] != '/', "table endpoint %s ends with '/'", ep);
    for (const char *p = ep; *p; p++)
        FUZZ_CHECK((unsigned char)*p > ' ' && *p != '?' && *p != '#', "table endpoint %s has a blank, '?' or '#'", ep);
    FUZZ_CHECK(a->key || a->sas, "an account without credentials");
    if (a->key) FUZZ_CHECK(a->key_len > 0 && a->account_name, "a key without length or account name");
    if (a->account_name)
        for (const char *p = a->account_name; *p; p++)
            FUZZ_CHECK(isalnum((unsigned char)*p) || *p == '-' || *p == '_', "account name %s", a->account_name);
    if (a->sas) {
        FUZZ_CHECK(a->sas[0] != '\0', "empty SAS");
        for (const char *p = a->sas; *p; p++)
            FUZZ_CHECK((unsigned char)*p > ' ' && *p != '#', "SAS with a blank or '#'");
    }
    FUZZ_CHECK(a->is_cosmos == 0 || a->is_cosmos == 1, "is_cosmos %d", a->is_cosmos);
}

/* The account written back as the most explicit connection string. */
static char *storage_format(const storage_account_t *a)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "TableEndpoint=%s", a->table_endpoint);
    if (a->account_name) buf_printf(&b, ";AccountName=%s", a->account_name);
    if (a->key) {
        char *k = malloc(BASE64_ENCODED_LEN(a->key_len) + 1);
        if (!k) abort();
        base64_encode(a->key, a->key_len, k);
        buf_printf(&b, ";AccountKey=%s", k);
        free(k);
    }
    /* one leading '?' is dropped by the parser: add it so that a SAS starting with '?' survives */
    if (a->sas) buf_printf(&b, ";SharedAccessSignature=?%s", a->sas);
    if (b.oom) abort();
    return buf_steal(&b);
}

static void fuzz_storage(const char *s, int markable)
{
    storage_account_t a, b;
    char err[512] = "", err2[512] = "";
    int rc = storage_account_parse(s, &a, err, sizeof err);
    if (rc == 0) {
        check_storage_account(&a);
        char *again = storage_format(&a);
        int rc2 = storage_account_parse(again, &b, err2, sizeof err2);
        FUZZ_CHECK(rc2 == 0, "storage account written back does not parse: %s", err2);
        FUZZ_CHECK(streq(a.account_name, b.account_name) && streq(a.table_endpoint, b.table_endpoint) &&
                   streq(a.sas, b.sas) && a.key_len == b.key_len && a.is_cosmos == b.is_cosmos &&
                   (a.key_len == 0 || memcmp(a.key, b.key, a.key_len) == 0),
                   "storage account written back parses differently");
        storage_account_free(&b);
        free(again);
        storage_account_free(&a);
    } else {
        FUZZ_CHECK(err[0] != '\0', "storage_account_parse failed without a message");
    }
    if (!markable) return;
    char *marked = with_marker(s, "AccountKey");
    err2[0] = '\0';
    if (storage_account_parse(marked, &b, err2, sizeof err2) == 0) storage_account_free(&b);
    FUZZ_CHECK(!strstr(err2, "MARKER"), "storage error shows the account key: %s", err2);
    free(marked);
}

/* ---- SignalR ----------------------------------------------------------------------------- */

static void check_sr_conn(const sr_conn_t *c)
{
    FUZZ_CHECK(c->scheme && (strcmp(c->scheme, "http") == 0 || strcmp(c->scheme, "https") == 0), "scheme %s",
               c->scheme ? c->scheme : "(null)");
    FUZZ_CHECK(c->host && c->host[0], "no host");
    for (const char *p = c->host; *p; p++) FUZZ_CHECK(!isupper((unsigned char)*p), "host %s not lower-cased", c->host);
    FUZZ_CHECK(c->port >= 1 && c->port <= 65535, "port %d", c->port);
    FUZZ_CHECK(c->access_key && c->access_key[0], "no access key");
    FUZZ_CHECK(c->version && strncmp(c->version, "1.", 2) == 0, "version %s", c->version ? c->version : "(null)");
    FUZZ_CHECK(c->endpoint && c->endpoint[0], "no endpoint");
}

static void check_sr_derived(const sr_conn_t *c)
{
    char out[2048];
    size_t sl = strlen(c->scheme);
    if (sr_request_base(c, out, sizeof out) == 0) FUZZ_CHECK(strncmp(out, c->scheme, sl) == 0, "request base %s", out);
    if (sr_client_url(c, "Enviromon", out, sizeof out) == 0)
        FUZZ_CHECK(strstr(out, "/client/?hub=enviromon") != NULL, "client URL %s", out);
    char aud[2048];
    if (sr_client_audience(c, "Enviromon", aud, sizeof aud) == 0) {
        FUZZ_CHECK(strncmp(aud, c->scheme, sl) == 0, "client audience %s", aud);
        /* a token minted with the key for this audience verifies */
        time_t now = 1700000000;
        char *tok = sr_token_mint(c->access_key, strlen(c->access_key), aud, now + 60, "user");
        if (tok) {
            sr_claims_t cl;
            sr_verify_status_t st = sr_token_verify(tok, c->access_key, strlen(c->access_key), aud, now, &cl);
            FUZZ_CHECK(st == SR_TOKEN_OK, "own token refused: %s", sr_verify_status_name(st));
            sr_claims_free(&cl);
            free(tok);
        }
    }
    char path[512];
    if (sr_rest_send_path("Enviromon", NULL, "g", path, sizeof path) == 0) {
        if (sr_rest_url(c, path, out, sizeof out) == 0) FUZZ_CHECK(strncmp(out, c->scheme, sl) == 0, "REST URL %s", out);
        if (sr_rest_audience(c, path, out, sizeof out) == 0) FUZZ_CHECK(strncmp(out, c->scheme, sl) == 0, "REST aud %s", out);
    }
    if (sr_rest_audience(c, "/api/v1/hubs/enviromon/?x=1", out, sizeof out) == 0)
        FUZZ_CHECK(!strchr(out + sl, '?'), "v1 audience keeps its query: %s", out);
}

static char *sr_format(const sr_conn_t *c)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "Endpoint=%s;AccessKey=%s;Version=%s;Port=%d", c->endpoint, c->access_key, c->version, c->port);
    if (c->client_endpoint) buf_printf(&b, ";ClientEndpoint=%s", c->client_endpoint);
    if (b.oom) abort();
    return buf_steal(&b);
}

static void fuzz_signalr(const char *s, int markable)
{
    sr_conn_t c, d;
    char err[512] = "", err2[512] = "";
    if (sr_conn_parse(s, &c, err, sizeof err) == 0) {
        check_sr_conn(&c);
        check_sr_derived(&c);
        char *again = sr_format(&c);
        FUZZ_CHECK(sr_conn_parse(again, &d, err2, sizeof err2) == 0, "SignalR string written back does not parse: %s", err2);
        FUZZ_CHECK(streq(c.endpoint, d.endpoint) && streq(c.scheme, d.scheme) && streq(c.host, d.host) &&
                   c.port == d.port && streq(c.access_key, d.access_key) && streq(c.version, d.version) &&
                   streq(c.client_endpoint, d.client_endpoint),
                   "SignalR string written back parses differently: %s", again);
        sr_conn_free(&d);
        free(again);
        sr_conn_free(&c);
    } else {
        FUZZ_CHECK(err[0] != '\0', "sr_conn_parse failed without a message");
    }
    if (!markable) return;
    char *marked = with_marker(s, "AccessKey");
    err2[0] = '\0';
    if (sr_conn_parse(marked, &d, err2, sizeof err2) == 0) sr_conn_free(&d);
    FUZZ_CHECK(!strstr(err2, "MARKER"), "SignalR error shows the access key: %s", err2);
    free(marked);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_strndup(data, size);
    /* (an input that holds the marker itself could have it echoed from another value) */
    int markable = !strstr(s, "MARKER");
    fuzz_storage(s, markable);
    fuzz_signalr(s, markable);
    free(s);
    return 0;
}
