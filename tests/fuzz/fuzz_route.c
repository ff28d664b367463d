/* fuzz_route.c — request URIs as `devhost start` splits them (dh_http_req_set_uri:
 * src/devhost/host/http_msg.c) and HTTP trigger route templates matched against them
 * (dh_route_parse, dh_route_match, dh_route_cmp: route.c).
 *
 * Input: a route template (function.json's `route`), a NUL, then a request URI as received.
 *
 * Invariants: the URI splits at its first '?' into raw path and query; segments are the
 * non-empty parts of the path, decoded, never empty; query arguments have names and number at
 * most DH_MAX_HEADERS; a template either parses or is refused with a message; a route compares
 * equal to itself; a match gives exactly the route's parameters, each a string or null, and
 * matching again gives the same; a template of plain literal segments matches its own path. */
#include "fuzz.h"

#include <cjson/cJSON.h>

#include "devhost/host/http_msg.h"
#include "devhost/host/route.h"

static int plain_literal(const char *t)
{
    if (!*t) return 0;
    for (const char *p = t; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._/", *p)))
            return 0;
    return 1;
}

static void check_uri(const dh_http_req_t *r, const char *uri)
{
    size_t pl = strcspn(uri, "?");
    FUZZ_CHECK(strlen(r->raw_path) == pl && memcmp(r->raw_path, uri, pl) == 0, "raw path");
    FUZZ_CHECK(strcmp(r->raw_query, uri[pl] ? uri + pl + 1 : "") == 0, "raw query");
    size_t want = 0;
    for (const char *p = r->raw_path; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        want++;
        p += strcspn(p, "/");
    }
    FUZZ_CHECK(r->nsegs == want, "%zu segments, the path has %zu", r->nsegs, want);
    for (size_t i = 0; i < r->nsegs; i++) FUZZ_CHECK(r->segs[i][0], "empty segment %zu", i);
    FUZZ_CHECK(r->nquery <= DH_MAX_HEADERS, "%zu query arguments", r->nquery);
    for (size_t i = 0; i < r->nquery; i++) FUZZ_CHECK(r->query[i].name[0], "query argument without a name");
}

static void check_match(const dh_route_t *rt, char *const *segs, size_t n)
{
    cJSON *params = cJSON_CreateObject();
    int m = dh_route_match(rt, segs, n, params);
    FUZZ_CHECK(m == 0 || m == 1, "match returned %d", m);
    if (m) {
        size_t np = dh_route_param_count(rt);
        FUZZ_CHECK((size_t)cJSON_GetArraySize(params) == np, "%d parameters bound, the route has %zu",
                   cJSON_GetArraySize(params), np);
        for (size_t i = 0; i < np; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, dh_route_param_name(rt, i));
            FUZZ_CHECK(cJSON_IsString(v) || cJSON_IsNull(v), "parameter %s missing or not a string",
                       dh_route_param_name(rt, i));
        }
    }
    FUZZ_CHECK(dh_route_match(rt, segs, n, NULL) == m, "matching again gives another answer");
    cJSON_Delete(params);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t rl;
    size_t tl = fuzz_split(data, size, 0, &rest, &rl);
    char *tmpl = fuzz_strndup(data, tl);
    char *uri = fuzz_strndup(rest ? rest : (const uint8_t *)"", rl);
    /* (the URI stops at a NUL: libmicrohttpd hands over a C string) */

    dh_http_req_t r;
    memset(&r, 0, sizeof r);
    if (dh_http_req_set_uri(&r, uri) != 0) abort();
    check_uri(&r, uri);

    char err[512] = "";
    dh_route_t *rt = dh_route_parse(tmpl, err, sizeof err);
    if (!rt) {
        FUZZ_CHECK(err[0], "template refused without a message");
    } else {
        FUZZ_CHECK(dh_route_cmp(rt, rt) == 0, "a route does not compare equal to itself");
        check_match(rt, r.segs, r.nsegs);
        if (plain_literal(tmpl) && dh_route_param_count(rt) == 0) {
            dh_http_req_t self;
            memset(&self, 0, sizeof self);
            char *path = malloc(strlen(tmpl) + 2);
            if (!path) abort();
            snprintf(path, strlen(tmpl) + 2, "/%s", tmpl);
            if (dh_http_req_set_uri(&self, path) != 0) abort();
            FUZZ_CHECK(dh_route_match(rt, self.segs, self.nsegs, NULL) == 1, "route '%s' does not match its own path", tmpl);
            dh_http_req_free(&self);
            free(path);
        }
        dh_route_free(rt);
    }
    dh_http_req_free(&r);
    free(tmpl);
    free(uri);
    return 0;
}
