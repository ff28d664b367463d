/* fuzz_d2c_request.c — whole device-to-cloud HTTP requests to the local IoT Hub's device API
 * (iothub_d2c_handle_wait, src/devhost/iothub/d2c.c): method, decoded path, query arguments,
 * headers and body, against a real hub (registry and partition logs in a temporary folder,
 * on /dev/shm when there is one). fuzz_d2c_batch covers the batch body on its own; this target
 * covers the path split, the api-version, the system and application property headers, the
 * Authorization header and the order of the refusals.
 *
 * Input: a flags byte, then NUL-separated fields method, path, query ("name=value" lines),
 * headers ("Name: value" lines), body. Flags: bit 0 — the harness adds an Authorization
 * header with a token it mints for the path's device (Node's encoding, or the C SDK's with bit
 * 2; the secondary key with bit 1), as no committed input can hold a token that verifies (the
 * keys are made fresh for every run); bit 3 — the body is flagged as truncated (longer than
 * the server read).
 *
 * Invariants, judged by an independent model of the API: the answer is 204 exactly when the
 * request is acceptable (404 for another path, 405 for the wrong method, 413 for a truncated
 * message; 429/503 are allowed for acceptable requests only); a 204 stores exactly the request's
 * messages (one, or the batch's) and a refusal stores none; every refusal carries an error
 * code and a JSON body {"Message": "ErrorCode:<code>;..."}; no device key and no signature
 * appears in an answer. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "devhost/iothub/d2c.h"
#include "devhost/iothub/hub.h"
#include "devhost/iothub/message.h"
#include "devhost/iothub/registry.h"
#include "devhost/iothub/sas.h"
#include "util/log.h"

#define MAX_FIELDS 64
#define REOPEN_EVERY 20000   /* inputs between fresh hubs, so the partition logs stay small */

static const char *const DEVICES[] = {"dev1", "odd#%(id)=@;$'"};
#define NDEVICES (sizeof DEVICES / sizeof DEVICES[0])

static char g_dir[256];
static iothub_t *g_hub;
static iothub_device_t g_dev[NDEVICES];
static unsigned long g_runs;

static void hub_fresh(void)
{
    char err[512];
    if (g_hub) {
        iothub_close(g_hub);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) abort();
    }
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/fuzz_d2c_request.XXXXXX", base);
    if (!mkdtemp(g_dir)) abort();
    char hubdir[300];
    snprintf(hubdir, sizeof hubdir, "%s/iothub", g_dir);
    for (size_t i = 0; i < NDEVICES; i++)
        if (iothub_registry_add(hubdir, DEVICES[i], &g_dev[i], err, sizeof err) != IOTHUB_REG_OK) {
            fprintf(stderr, "fuzz_d2c_request: %s\n", err);
            abort();
        }
    iothub_opts_t o = {.data_dir = g_dir, .partitions = 2};
    if (!(g_hub = iothub_open(&o, err, sizeof err))) {
        fprintf(stderr, "fuzz_d2c_request: %s\n", err);
        abort();
    }
}

static void cleanup(void)
{
    if (!g_hub) return;
    iothub_close(g_hub);
    g_hub = NULL;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_d2c_request: could not remove %s\n", g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    hub_fresh();
    atexit(cleanup);
    return 0;
}

/* ---- the request ---------------------------------------------------------------------------- */

typedef struct field { char *name, *value; } field_t;

typedef struct req {
    field_t query[MAX_FIELDS], hdr[MAX_FIELDS + 1];
    size_t  nquery, nhdr;
} req_t;

static void each(void *arg, iothub_http_kind_t kind, iothub_http_visit_fn visit, void *ctx)
{
    req_t *r = arg;
    const field_t *f = kind == IOTHUB_HTTP_QUERY ? r->query : r->hdr;
    size_t n = kind == IOTHUB_HTTP_QUERY ? r->nquery : r->nhdr;
    for (size_t i = 0; i < n; i++)
        if (visit(ctx, f[i].name, f[i].value)) return;
}

/* Split text into lines, each at sep into name and value (a line without sep: all name, value ""). */
static size_t split_lines(char *text, char sep, field_t *out, size_t max)
{
    size_t n = 0;
    for (char *p = text; p && *p && n < max;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        char *s = strchr(p, sep);
        if (s) *s = '\0';
        const char *v = s ? s + 1 : "";
        if (sep == ':') while (*v == ' ') v++;
        out[n].name = p;
        out[n].value = (char *)v;
        n++;
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

/* ---- the model ------------------------------------------------------------------------------ */

static int prop_char(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int prop_text(const char *s, int is_name)
{
    if (is_name && !*s) return 0;
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80 || !prop_char((unsigned char)*s)) return 0;
    return 1;
}

static int id_char(int c)
{
    return (c < 0x80 && isalnum(c)) || (c && strchr("-:.+%_#*?!(),=@;$'", c) != NULL);
}

/* "/devices/{id}/messages/{events|devicebound}", fixed words ignoring case: 1 (events), 2
 * (devicebound) or 0, with id. */
static int model_path(const char *path, char *id, size_t idcap)
{
    if (strncasecmp(path, "/devices/", 9) != 0) return 0;
    const char *p = path + 9, *slash = strchr(p, '/');
    if (!slash || slash == p || (size_t)(slash - p) >= idcap) return 0;
    memcpy(id, p, (size_t)(slash - p));
    id[slash - p] = '\0';
    if (strncasecmp(slash, "/messages/", 10) != 0) return 0;
    if (strcasecmp(slash + 10, "events") == 0) return 1;
    if (strcasecmp(slash + 10, "devicebound") == 0) return 2;
    return 0;
}

static int model_api_version(const char *v)
{
    if (!v || strlen(v) < 10) return 0;
    for (int i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? v[i] != '-' : !(v[i] >= '0' && v[i] <= '9')) return 0;
    return v[10] == '\0' || strcmp(v + 10, "-preview") == 0;
}

static const char *const SYSTEM[] = {"authorization", "content-type", "iothub-messageid", "iothub-correlationid",
                                     "iothub-contenttype", "iothub-contentencoding", "iothub-userid"};

/* Headers as the API allows them: system headers once, application properties valid, unique
 * ignoring case and at most 256. */
static int model_headers(const req_t *r)
{
    size_t napp = 0;
    for (size_t i = 0; i < r->nhdr; i++) {
        const char *n = r->hdr[i].name;
        if (strncasecmp(n, "iothub-app-", 11) == 0) {
            if (!prop_text(n + 11, 1) || !prop_text(r->hdr[i].value, 0)) return 0;
            for (size_t k = 0; k < i; k++)
                if (strncasecmp(r->hdr[k].name, "iothub-app-", 11) == 0 && strcasecmp(r->hdr[k].name, n) == 0) return 0;
            if (++napp > IOTHUB_MAX_PROPS) return 0;
            continue;
        }
        for (size_t s = 0; s < sizeof SYSTEM / sizeof *SYSTEM; s++)
            if (strcasecmp(n, SYSTEM[s]) == 0)
                for (size_t k = 0; k < i; k++)
                    if (strcasecmp(r->hdr[k].name, n) == 0) return 0;
    }
    return 1;
}

static const char *header(const req_t *r, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < r->nhdr; i++)
        if (strcasecmp(r->hdr[i].name, name) == 0) v = r->hdr[i].value;
    return v;
}

static int is_batch_type(const char *ct)
{
    static const char t[] = "application/vnd.microsoft.iothub.json";
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    return strncasecmp(ct, t, sizeof t - 1) == 0 &&
           (ct[sizeof t - 1] == '\0' || ct[sizeof t - 1] == ';' || ct[sizeof t - 1] == ' ');
}

static uint64_t received(void)
{
    iothub_stats_t st;
    iothub_stats(g_hub, &st);
    return st.received;
}

/* ---- the target ----------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024) return 0;
    if (++g_runs % REOPEN_EVERY == 0) hub_fresh();
    unsigned flags = data[0];
    const uint8_t *f[5];
    size_t fl[5];
    fuzz_fields(data + 1, size - 1, 5, f, fl);
    char *method = fuzz_strndup(f[0] ? f[0] : (const uint8_t *)"", fl[0]);
    char *path = fuzz_strndup(f[1] ? f[1] : (const uint8_t *)"", fl[1]);
    char *query = fuzz_strndup(f[2] ? f[2] : (const uint8_t *)"", fl[2]);
    char *hdrs = fuzz_strndup(f[3] ? f[3] : (const uint8_t *)"", fl[3]);
    uint8_t *body = fuzz_memdup(f[4] ? f[4] : (const uint8_t *)"", fl[4]);

    static req_t r;
    memset(&r, 0, sizeof r);
    r.nquery = split_lines(query, '=', r.query, MAX_FIELDS);
    size_t first = 0;
    char token[2048] = "", id[IOTHUB_DEVICE_ID_MAX + 1] = "";
    int kind = model_path(path, id, sizeof id);
    const iothub_device_t *dev = NULL;
    for (size_t i = 0; i < NDEVICES; i++)
        if (strcmp(id, DEVICES[i]) == 0) dev = &g_dev[i];
    int minted = 0;
    if ((flags & 1) && kind && dev) {
        /* a token for {host}/devices/{id}, as the SDKs mint it */
        char res[512], sr[1600];
        snprintf(res, sizeof res, "%s/devices/%s", iothub_host(g_hub), id);
        unsigned char key[IOTHUB_KEY_RAW_MAX];
        long kl = iothub_device_key_raw(flags & 2 ? dev->secondary : dev->primary, key);
        FUZZ_CHECK(kl > 0, "device key does not decode");
        if (iothub_sas_url_encode(res, !(flags & 4), sr, sizeof sr) < 0 ||
            iothub_sas_make(sr, key, (size_t)kl, (long long)time(NULL) + 3600, flags & 4 ? "" : NULL, token,
                            sizeof token) != 0)
            abort();
        r.hdr[0].name = "Authorization";
        r.hdr[0].value = token;
        first = 1;
        minted = 1;
    }
    r.nhdr = first + split_lines(hdrs, ':', r.hdr + first, MAX_FIELDS);

    iothub_http_req_t q = {.method = method, .path = path, .each = each, .arg = &r,
                           .body = body, .body_len = fl[4], .body_truncated = (flags & 8) != 0};
    uint64_t before = received();
    iothub_http_resp_t resp;
    iothub_d2c_handle_wait(g_hub, &q, &resp);
    uint64_t stored = received() - before;

    /* the model */
    const char *api = NULL;
    for (size_t i = 0; i < r.nquery; i++)
        if (strcmp(r.query[i].name, "api-version") == 0) api = r.query[i].value;
    int method_ok = kind == 1 ? strcmp(method, "POST") == 0 : kind == 2 ? strcmp(method, "GET") == 0 : 0;
    int api_ok = model_api_version(api);
    const char *auth = header(&r, "authorization");
    int own_auth = minted && auth == token;  /* the token the harness minted, and no other */
    int id_ok = 1;
    for (const char *p = id; *p; p++) id_ok &= id_char((unsigned char)*p);
    size_t want_n = 1;
    int body_ok = 1;
    if (kind == 1 && is_batch_type(header(&r, "content-type"))) {
        iothub_d2c_batch_t b;
        memset(&b, 0, sizeof b);
        char err[300];
        body_ok = iothub_d2c_batch_parse(body, fl[4], &b, err, sizeof err) == 0;
        want_n = b.n;
        iothub_d2c_batch_free(&b);
    }
    int acceptable = kind && method_ok && api_ok && own_auth && id_ok && dev &&
                     (kind == 2 || (!q.body_truncated && model_headers(&r) && body_ok));

    if (!kind) FUZZ_CHECK(resp.status == 404, "%s: status %d, not 404", path, resp.status);
    else if (!method_ok) {
        FUZZ_CHECK(resp.status == 405, "%s %s: status %d, not 405", method, path, resp.status);
        FUZZ_CHECK(strcmp(resp.allow, kind == 1 ? "POST" : "GET") == 0, "Allow: %s", resp.allow);
    } else if (api_ok && kind == 1 && q.body_truncated)
        FUZZ_CHECK(resp.status == 413, "truncated body: status %d, not 413", resp.status);
    if (acceptable)
        FUZZ_CHECK(resp.status == 204 || resp.status == 429 || resp.status == 503,
                   "an acceptable request refused: %d %.*s", resp.status, (int)resp.body_len, resp.body);
    else
        FUZZ_CHECK(resp.status != 204, "an unacceptable request accepted (%s %s)", method, path);

    if (resp.status == 204) {
        FUZZ_CHECK(!resp.error_code[0] && resp.body_len == 0, "a 204 with an error or a body");
        FUZZ_CHECK(stored == (kind == 1 ? want_n : 0), "204: %llu messages stored, want %zu",
                   (unsigned long long)stored, kind == 1 ? want_n : 0);
    } else {
        static const int allowed[] = {400, 401, 404, 405, 413, 429, 503};
        int known = 0;
        for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) known |= resp.status == allowed[i];
        FUZZ_CHECK(known, "status %d", resp.status);
        FUZZ_CHECK(stored == 0, "a refusal (%d) stored %llu messages", resp.status, (unsigned long long)stored);
        FUZZ_CHECK(resp.error_code[0], "status %d without an error code", resp.status);
        FUZZ_CHECK(resp.body_len > 0 && resp.body_len < sizeof resp.body, "body length %zu", resp.body_len);
        cJSON *j = cJSON_ParseWithLength(resp.body, resp.body_len);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "Message");
        char want[64];
        snprintf(want, sizeof want, "ErrorCode:%s;", resp.error_code);
        FUZZ_CHECK(cJSON_IsString(m) && strncmp(m->valuestring, want, strlen(want)) == 0, "error body %.*s",
                   (int)resp.body_len, resp.body);
        cJSON_Delete(j);
    }
    /* no secret in the answer (unless the request itself carried it elsewhere: libFuzzer learns
     * the keys from the comparisons below and echoing a client's own header name is fine) */
    for (size_t i = 0; i < NDEVICES; i++) {
        const char *keys[2] = {g_dev[i].primary, g_dev[i].secondary};
        for (int k = 0; k < 2; k++)
            FUZZ_CHECK(fuzz_contains(data, size, keys[k], strlen(keys[k])) ||
                           !fuzz_contains(resp.body, resp.body_len, keys[k], strlen(keys[k])),
                       "a device key in the answer");
    }
    const char *sig = strstr(token, "sig=");
    if (sig) {
        size_t sl = strcspn(sig + 4, "&");
        FUZZ_CHECK(fuzz_contains(data, size, sig + 4, sl) || !fuzz_contains(resp.body, resp.body_len, sig + 4, sl),
                   "the signature in the answer");
    }

    free(method);
    free(path);
    free(query);
    free(hdrs);
    free(body);
    return 0;
}
