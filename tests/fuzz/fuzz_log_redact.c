/* fuzz_log_redact.c — log lines carrying secrets (log_msg and log_redact, src/util/log.c): the
 * last line of defence that keeps account keys, access keys, SAS signatures and bearer tokens
 * out of every log, whatever a caller formats by mistake.
 *
 * Input: a kind byte, then NUL-separated prefix, secret and suffix. The harness builds the line
 * prefix + <the kind's marker> + secret + suffix, where the marker is one of the forms a secret
 * takes in this project (AccountKey=, AccessKey=, SharedAccessKey=, a SAS's sig=, an
 * Authorization header with a SharedAccessSignature or a Bearer JWT, a bare JWT, access_token=)
 * and the secret is spelled with the characters such a secret has (base64, its URL encoding,
 * base64url). The line is logged into an invocation's log collector, as a function would.
 *
 * Invariant: the collected line does not contain the secret. The prefix ends at a word boundary
 * (a marker glued to a longer word, like "config=" for "sig=", is not one by design), and the
 * check is skipped when the prefix or suffix spells the secret themselves. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <ctype.h>

#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);   /* info lines go to the collector only */
    return 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char URLB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%";

typedef struct kind {
    const char *before, *after;   /* around the secret */
    const char *alphabet;
    int         pad;              /* base64 padding may end the secret */
} kind_t;

static const kind_t KINDS[] = {
    {"AccountName=acct;AccountKey=", ";EndpointSuffix=core.windows.net", B64, 1},
    {"Endpoint=http://localhost;Port=8888;AccessKey=", ";Version=1.0;", B64, 1},
    {"HostName=enviromon.azure-devices.net;DeviceId=d;SharedAccessKey=", "", B64, 1},
    {"https://acct.table.core.windows.net/t?sv=2019-02-02&sig=", "&se=2030-01-01", URLB64, 0},
    {"Authorization: SharedAccessSignature sr=enviromon.azure-devices.net%2Fdevices%2Fd&sig=", "&se=1700000000", URLB64, 0},
    {"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.", "", B64URL, 0},
    {"token eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.", " expired", B64URL, 0},
    {"GET /client/?hub=h&access_token=", " HTTP/1.1", B64URL, 0},
    {"sharedaccesskey=", "", B64, 1},
};
#define NKINDS (sizeof KINDS / sizeof KINDS[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const kind_t *k = &KINDS[data[0] % NKINDS];
    const uint8_t *f[3] = {data + 1, NULL, NULL};
    size_t fl[3] = {0, 0, 0};
    const uint8_t *rest = data + 1;
    size_t rl = size - 1;
    for (int i = 0; i < 3 && rest; i++) {
        f[i] = rest;
        fl[i] = fuzz_split(rest, rl, 0, &rest, &rl);
    }
    /* the secret, spelled in its alphabet, at least 16 characters */
    size_t alen = strlen(k->alphabet), sl = fl[1] < 16 ? 16 : fl[1];
    char *secret = malloc(sl + 3);
    if (!secret) abort();
    for (size_t i = 0; i < sl; i++) secret[i] = k->alphabet[(i < fl[1] ? f[1][i] : (uint8_t)(i * 7 + 3)) % alen];
    secret[sl] = '\0';
    if (k->pad && f[1] && fl[1] && (f[1][0] & 1)) strcat(secret, "==");
    char *prefix = fuzz_strndup(f[0], fl[0]), *suffix = fuzz_strndup(f[2] ? f[2] : (const uint8_t *)"", fl[2]);
    size_t pl = strlen(prefix);
    /* a marker glued to a longer word is not one (by design); a blank separates them */
    int check = !(pl && isalnum((unsigned char)prefix[pl - 1])) && !strstr(prefix, secret) && !strstr(suffix, secret);

    log_ctx_t ctx;
    if (log_ctx_init(&ctx, "Fuzz", "fuzz") != 0) abort();
    log_msg(&ctx, LOG_INFO, "%s%s%s%s%s", prefix, k->before, secret, k->after, suffix);
    cJSON *lines = log_ctx_take_lines(&ctx);
    const cJSON *line = cJSON_GetArrayItem(lines, 0);
    FUZZ_CHECK(cJSON_IsString(line), "no line collected");
    if (check)
        FUZZ_CHECK(!strstr(line->valuestring, secret), "the secret survived redaction: %.300s", line->valuestring);
    for (const char *c = line->valuestring; *c; c++)
        FUZZ_CHECK((unsigned char)*c >= 0x20 || *c == '\t', "control character 0x%02x in a log line", (unsigned char)*c);
    cJSON_Delete(lines);
    log_ctx_free(&ctx);
    free(secret);
    free(prefix);
    free(suffix);
    return 0;
}
