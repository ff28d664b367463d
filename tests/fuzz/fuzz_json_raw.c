/* fuzz_json_raw.c — the strict JSON validator that keeps text as sent (util/json_raw.c): the
 * local SignalR Service's REST API reads every message body with it (target and arguments
 * forwarded to clients byte for byte), and the arguments carry device data.
 *
 * Input: any bytes, validated as one JSON text; accepted objects are walked member by member
 * and their keys compared with the words the REST API looks for.
 *
 * Invariants: an accepted text is valid UTF-8, cJSON (an independent parser) reads it, and reads
 * the compacted copy as the same value; the copy is exactly the input with the whitespace
 * outside strings removed (so every token is byte for byte as sent), is accepted again and
 * compacts to itself; an object's members rebuild it exactly ("{" key ":" value "," ... "}"),
 * each value is itself an accepted text, their count is cJSON's; a key equals "target" or
 * "arguments" ignoring ASCII case exactly when cJSON decodes it so; a refusal says where. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <strings.h>

#include "util/buf.h"
#include "util/json_raw.h"
#include "util/utf8.h"

/* The input without the whitespace outside strings (the input is valid JSON: strings are
 * closed and escapes well formed). */
static void strip_ws(const char *s, size_t n, buf_t *out)
{
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            buf_putc(out, c);
            if (c == '\\' && i + 1 < n) buf_putc(out, s[++i]);
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
            buf_putc(out, c);
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            buf_putc(out, c);
        }
    }
}

/* What cJSON decodes the raw string token to equals word ignoring ASCII case (a token with a
 * \u0000 escape never does: cJSON's C string would stop there). */
static int cjson_key_is(const char *tok, size_t n, const char *word)
{
    for (size_t i = 0; i + 6 <= n; i++)
        if (tok[i] == '\\' && (tok[i + 1] == 'u' || tok[i + 1] == 'U') && strncmp(tok + i + 2, "0000", 4) == 0)
            return 0;
    cJSON *k = cJSON_ParseWithLength(tok, n);
    FUZZ_CHECK(cJSON_IsString(k), "a member key is not a JSON string: %.*s", (int)n, tok);
    int eq = strcasecmp(k->valuestring, word) == 0;
    cJSON_Delete(k);
    return eq;
}

static void check_members(const buf_t *text, const cJSON *obj)
{
    buf_t again = BUF_INIT;
    buf_putc(&again, '{');
    size_t count = 0, pos = 0;
    json_raw_member_t m;
    while (json_raw_next_member(text->data, text->len, &pos, &m)) {
        FUZZ_CHECK(m.key >= text->data && m.key + m.key_len <= text->data + text->len && m.val >= text->data &&
                       m.val + m.val_len <= text->data + text->len,
                   "member %zu outside the object", count);
        FUZZ_CHECK(m.key_len >= 2 && m.key[0] == '"' && m.key[m.key_len - 1] == '"', "member %zu key %.*s", count,
                   (int)m.key_len, m.key);
        char err[160];
        FUZZ_CHECK(m.val_len > 0 && json_raw_compact(m.val, m.val_len, NULL, err, sizeof err) == 0,
                   "member %zu value refused: %s", count, err);
        if (count) buf_putc(&again, ',');
        buf_append(&again, m.key, m.key_len);
        buf_putc(&again, ':');
        buf_append(&again, m.val, m.val_len);
        static const char *const words[] = {"target", "arguments"};
        for (size_t w = 0; w < 2; w++)
            FUZZ_CHECK(json_raw_string_eq_ci(m.key, m.key_len, words[w]) == cjson_key_is(m.key, m.key_len, words[w]),
                       "key %.*s against \"%s\"", (int)m.key_len, m.key, words[w]);
        count++;
        FUZZ_CHECK(count <= text->len, "the member walk does not end");
    }
    buf_putc(&again, '}');
    if (again.oom) abort();
    FUZZ_CHECK(again.len == text->len && memcmp(again.data, text->data, text->len) == 0,
               "members do not rebuild the object");
    FUZZ_CHECK(count == (size_t)cJSON_GetArraySize(obj), "%zu members, cJSON counts %d", count,
               cJSON_GetArraySize(obj));
    buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = (char *)fuzz_memdup(data, size);
    buf_t out = BUF_INIT;
    char err[160] = "";
    if (json_raw_compact(in, size, &out, err, sizeof err) != 0) {
        FUZZ_CHECK(out.oom || (err[0] && strlen(err) < sizeof err), "a refusal without a reason");
        buf_free(&out);
        free(in);
        return 0;
    }
    if (out.oom) abort();
    FUZZ_CHECK(utf8_valid(in, size), "accepted a text that is not UTF-8");

    buf_t want = BUF_INIT;
    strip_ws(in, size, &want);
    if (want.oom) abort();
    FUZZ_CHECK(want.len == out.len && memcmp(want.data, out.data, out.len) == 0,
               "the copy is not the input without its whitespace");

    buf_t again = BUF_INIT;
    FUZZ_CHECK(json_raw_compact(out.data, out.len, &again, err, sizeof err) == 0, "the copy refused: %s", err);
    FUZZ_CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0, "compacting is not idempotent");

    /* cJSON nests at most CJSON_NESTING_LIMIT (1000) deep, json_raw 512: both read it */
    cJSON *a = cJSON_ParseWithLength(in, size), *b = cJSON_ParseWithLength(out.data, out.len);
    FUZZ_CHECK(a && b, "accepted text that cJSON cannot read");
    /* printed rather than cJSON_Compare: that finds members by name, so repeated keys differ */
    char *pa = cJSON_PrintUnformatted(a), *pb = cJSON_PrintUnformatted(b);
    if (!pa || !pb) abort();
    FUZZ_CHECK(strcmp(pa, pb) == 0, "the copy reads as another value");
    free(pa);
    free(pb);
    if (out.data[0] == '{') {
        FUZZ_CHECK(cJSON_IsObject(b), "an object that cJSON does not read as one");
        check_members(&out, b);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    buf_free(&again);
    buf_free(&want);
    buf_free(&out);
    free(in);
    return 0;
}
