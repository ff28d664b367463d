/* fuzz_signalr_audience.c — how the local SignalR Service matches a token's `aud` claim to the
 * request it came with (sr_service_aud_ok, src/devhost/signalr/signalr_service.c): negotiate
 * (path "/client", the hub in the query), the REST API (the raw request path) and health
 * checks; and the hub names negotiate accepts (sr_service_valid_hub).
 *
 * Input: NUL-separated fields aud, the request's Host header, the expected path, the request's
 * query arguments ("name=value" lines), then a hub name.
 *
 * Invariants: an accepted aud names the service's scheme and its host or the Host header's
 * (ports ignored, ASCII case ignored), and every argument its query names is one the request
 * has; the aud the harness builds from the request itself (scheme, host, path, then every
 * argument of the request) is accepted, also with another port, another case or a trailing
 * '/'; it is refused with another host, another scheme, or one more argument the request does
 * not have; a valid hub name is 1..128 letters, digits and '_' starting with a letter. */
#include "fuzz.h"

#include <ctype.h>
#include <strings.h>

#include "devhost/signalr/signalr_service.h"
#include "util/buf.h"

#define SCHEME "http"
#define HOST "localhost"
#define MAX_ARGS 16

typedef struct args { char *name[MAX_ARGS], *value[MAX_ARGS]; size_t n; } args_t;

static const char *lookup(void *arg, const char *name)
{
    const args_t *a = arg;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->name[i], name) == 0) return a->value[i];
    return NULL;
}

/* Only characters that need no escaping in a URL and no decoding: the harness's own auds. */
static int plain(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-._~", *s)) return 0;
    return 1;
}

static int ok(const char *aud, const char *host_header, const char *path, args_t *a)
{
    return sr_service_aud_ok(aud, SCHEME, HOST, host_header, path, lookup, a);
}

static void check_built(const char *host_header, const char *path, args_t *a)
{
    /* the request's own audience, argument names and values plain, the path plain segments */
    if (*path != '/') return;
    for (const char *p = path; *p; p++)
        if (*p != '/' && !isalnum((unsigned char)*p) && !strchr("-._~", *p)) return;
    for (size_t i = 0; i < a->n; i++) {
        if (!*a->name[i] || !plain(a->name[i]) || !plain(a->value[i])) return;
        for (size_t k = 0; k < i; k++)
            if (strcmp(a->name[k], a->name[i]) == 0) return;
    }
    buf_t q = BUF_INIT;
    for (size_t i = 0; i < a->n; i++) buf_printf(&q, "%s%s=%s", i ? "&" : "?", a->name[i], a->value[i]);
    const char *qs = buf_str(&q);
    buf_t b = BUF_INIT;
    buf_printf(&b, "%s://%s%s%s", SCHEME, HOST, path, qs);
    FUZZ_CHECK(ok(buf_str(&b), host_header, path, a), "the request's own audience refused: %s", buf_str(&b));
    buf_free(&b);
    buf_printf(&b, "HTTP://LocalHost:8888%s/%s", path, qs);
    FUZZ_CHECK(ok(buf_str(&b), host_header, path, a), "port, case or trailing '/' mattered: %s", buf_str(&b));
    buf_free(&b);
    buf_printf(&b, "%s://evil.example%s%s", SCHEME, path, qs);
    if (!host_header || strncasecmp(host_header, "evil.example", 12) != 0 ||
        (host_header[12] != '\0' && host_header[12] != ':'))
        FUZZ_CHECK(!ok(buf_str(&b), host_header, path, a), "another host accepted: %s", buf_str(&b));
    buf_free(&b);
    buf_printf(&b, "https://%s%s%s", HOST, path, qs);
    FUZZ_CHECK(!ok(buf_str(&b), host_header, path, a), "another scheme accepted: %s", buf_str(&b));
    buf_free(&b);
    if (!lookup(a, "zzextra")) {
        buf_printf(&b, "%s://%s%s%s%szzextra=1", SCHEME, HOST, path, qs, a->n ? "&" : "?");
        FUZZ_CHECK(!ok(buf_str(&b), host_header, path, a), "an argument the request lacks accepted: %s", buf_str(&b));
        buf_free(&b);
    }
    buf_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *f[5];
    size_t fl[5];
    fuzz_fields(data, size, 5, f, fl);
    char *aud = fuzz_strndup(f[0] ? f[0] : (const uint8_t *)"", fl[0]);
    char *host_header = f[1] && fl[1] ? fuzz_strndup(f[1], fl[1]) : NULL;
    char *path = fuzz_strndup(f[2] ? f[2] : (const uint8_t *)"/client", f[2] ? fl[2] : 7);
    char *query = fuzz_strndup(f[3] ? f[3] : (const uint8_t *)"", fl[3]);
    char *hub = fuzz_strndup(f[4] ? f[4] : (const uint8_t *)"", fl[4]);

    args_t a = {.n = 0};
    for (char *p = query; p && *p && a.n < MAX_ARGS;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        char *eq = strchr(p, '=');
        if (eq) *eq = '\0';
        a.name[a.n] = p;
        a.value[a.n] = eq ? eq + 1 : "";
        a.n++;
        p = nl ? nl + 1 : NULL;
    }

    if (ok(aud, host_header, path, &a)) {
        FUZZ_CHECK(strncasecmp(aud, SCHEME "://", strlen(SCHEME) + 3) == 0, "accepted another scheme: %s", aud);
        const char *h = aud + strlen(SCHEME) + 3;
        size_t hl = strcspn(h, "/?#:");
        int mine = hl == strlen(HOST) && strncasecmp(h, HOST, hl) == 0;
        if (!mine && host_header) {
            size_t hh = strcspn(host_header, ":");
            if (host_header[0] == '[') {
                const char *rb = strchr(host_header, ']');
                hh = rb ? (size_t)(rb - host_header) + 1 : strlen(host_header);
                hl = strcspn(h, "/?#");
                const char *rb2 = memchr(h, ']', hl);
                hl = rb2 ? (size_t)(rb2 - h) + 1 : hl;
            }
            mine = hl == hh && strncasecmp(h, host_header, hh) == 0;
        }
        FUZZ_CHECK(mine, "accepted another host: %s (Host %s)", aud, host_header ? host_header : "-");
    }
    check_built(host_header, path, &a);

    if (sr_service_valid_hub(hub)) {
        size_t n = strlen(hub);
        FUZZ_CHECK(n >= 1 && n <= 128 && isalpha((unsigned char)hub[0]) && (unsigned char)hub[0] < 0x80,
                   "hub %s accepted", hub);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)hub[i] < 0x80 && (isalnum((unsigned char)hub[i]) || hub[i] == '_'),
                       "hub %s accepted", hub);
    }

    free(aud);
    free(host_header);
    free(path);
    free(query);
    free(hub);
    return 0;
}
