/* Unit tests: EventTrigger's streaming batch decoder (telemetry/batch.c, event_body.c) — the
 * host's wire form read in any chunking, NUL characters that must not truncate, members that
 * cost nothing, the kept raw bodies, envelope errors, and forms only other callers send. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "telemetry/batch.h"
#include "util/buf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Build the host's body for event bodies[] (each an event's text) and system device ids
 * (NULL entries: no system properties): strings inside strings, as the host sends them. */
static char *host_body(const char *const *bodies, const char *const *ids, int n)
{
    cJSON *arr = cJSON_CreateArray(), *sys = cJSON_CreateArray(), *seq = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(arr, cJSON_CreateString(bodies[i]));
        cJSON *s = cJSON_CreateObject();
        if (ids && ids[i]) cJSON_AddStringToObject(s, "iothub-connection-device-id", ids[i]);
        cJSON_AddItemToArray(sys, s);
        cJSON_AddItemToArray(seq, cJSON_CreateNumber(100 + i));
    }
    char *ev = cJSON_PrintUnformatted(arr), *sy = cJSON_PrintUnformatted(sys), *sq = cJSON_PrintUnformatted(seq);
    cJSON *env = cJSON_CreateObject(), *data = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "events", ev);
    cJSON_AddItemToObject(env, "Data", data);
    cJSON_AddStringToObject(meta, "SystemPropertiesArray", sy);
    cJSON_AddStringToObject(meta, "SequenceNumberArray", sq);
    cJSON *pc = cJSON_AddObjectToObject(meta, "PartitionContext");
    cJSON_AddStringToObject(pc, "PartitionId", "4");
    cJSON_AddItemToObject(env, "Metadata", meta);
    char *out = cJSON_PrintUnformatted(env);
    cJSON_Delete(env);
    cJSON_Delete(arr);
    cJSON_Delete(sys);
    cJSON_Delete(seq);
    cJSON_free(ev);
    cJSON_free(sy);
    cJSON_free(sq);
    return out;
}

/* Decode body fed in pieces of step bytes (0: whole). Returns 0 or -1 (err filled). */
static int decode(const char *body, size_t len, size_t step, tele_batch_t *b, char *err, size_t errlen)
{
    tele_decoder_t *d = tele_decoder_new();
    assert_non_null(d);
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += step ? step : len)
        rc = tele_decoder_feed(d, body + off, step && len - off > step ? step : len - off);
    if (rc == 0) rc = tele_decoder_finish(d, b);
    else memset(b, 0, sizeof *b);
    if (rc != 0) snprintf(err, errlen, "%s", tele_decoder_error(d, NULL));
    tele_decoder_free(d);
    return rc;
}

static void expect_same(const tele_batch_t *a, const tele_batch_t *b)
{
    assert_int_equal(a->n, b->n);
    assert_string_equal(a->stream, b->stream);
    for (size_t i = 0; i < a->n; i++) {
        const tele_event_t *x = &a->ev[i], *y = &b->ev[i];
        assert_int_equal(x->rejected, y->rejected);
        assert_int_equal(x->reading.invalid, y->reading.invalid);
        assert_int_equal(x->reading.has, y->reading.has);
        assert_true(x->reading.temperature == y->reading.temperature);
        assert_int_equal(x->has_seq, y->has_seq);
        assert_true(x->seq == y->seq);
        assert_int_equal(x->raw_len, y->raw_len);
        assert_memory_equal(x->raw, y->raw, x->raw_len);
        if (x->device_id) assert_string_equal(x->device_id, y->device_id);
        else assert_null(y->device_id);
    }
}

static void test_any_chunking_same_batch(void **state)
{
    (void)state;
    const char *bodies[] = {"{\"temperature\":21.5,\"geo\":\"Syd\\u00e9ney\",\"messageId\":7}", "not json",
                            "\"{\\\"humidity\\\":40}\"", "[1,2]", "{\"deviceId\":\"p1\",\"pressure\":\"1000.5\"}"};
    const char *ids[] = {"dev1", "dev1", "dev2", NULL, NULL};
    char *body = host_body(bodies, ids, 5);
    tele_batch_t whole, split;
    char err[256];
    assert_int_equal(decode(body, strlen(body), 0, &whole, err, sizeof err), 0);
    assert_int_equal(whole.n, 5);
    assert_true(whole.ev[0].reading.temperature == 21.5);
    assert_string_equal(whole.ev[0].reading.geo, "Syd\xc3\xa9ney");
    assert_string_equal(whole.ev[0].reading.message_id, "7");
    assert_true(whole.ev[0].has_seq && whole.ev[0].seq == 100);
    assert_true(whole.ev[1].reading.invalid);                   /* garbage from an authenticated device */
    assert_string_equal(whole.ev[1].device_id, "dev1");
    assert_true(whole.ev[2].reading.has & TELE_HAS_HUMIDITY);   /* a JSON-encoded JSON body */
    assert_true(whole.ev[3].rejected);                          /* an array, no device id */
    assert_string_equal(whole.ev[4].device_id, "p1");
    assert_true(whole.ev[4].reading.pressure == 1000.5);
    /* the kept raw body is the body as the device sent it */
    assert_int_equal(whole.ev[1].raw_len, 8);
    assert_memory_equal(whole.ev[1].raw, "not json", 8);
    assert_int_equal(whole.ev[0].raw_total, strlen(bodies[0]));
    for (size_t step = 1; step < 40; step += 3) {
        assert_int_equal(decode(body, strlen(body), step, &split, err, sizeof err), 0);
        expect_same(&whole, &split);
        tele_batch_free(&split);
    }
    tele_batch_free(&whole);
    cJSON_free(body);
}

/* Replace every "ZZNUL" in s with the escape of U+0000 two string levels deep (the level
 * every event body and system property string sits at in the host's body). */
static char *with_nuls(const char *s)
{
    buf_t b = BUF_INIT;
    for (const char *p = s; *p;) {
        if (strncmp(p, "ZZNUL", 5) == 0) { buf_puts(&b, "\\\\u0000"); p += 5; }
        else buf_putc(&b, *p++);
    }
    return buf_steal(&b);
}

/* A NUL is never a terminator: "dev1\0x" is not dev1, "nul\0evil" is not nul. */
static void test_nul_never_truncates(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"deviceId\":\"dev1\\u0000x\",\"temperature\":20}",   /* under system id dev1: spoofing + invalid */
        "{\"deviceId\":\"nul\\u0000evil\",\"temperature\":20}", /* no system id: rejected */
        "{\"geo\":\"a\\u0000b\",\"temperature\":20}",
        "{\"messageId\":\"m\\u0000\",\"temperature\":20}",
        "{\"geo\\u0000x\":\"Perth\",\"temperature\":20}",       /* not the geo member */
        "{\"temperature\":20}ZZNUL",                              /* a device's NUL terminator: harmless */
        "{\"temperature\":20}",
    };
    const char *ids[] = {"dev1", NULL, "g", "m", "k", "t", "nulZZNULx"};
    char *plain = host_body(bodies, ids, 7);
    char *body = with_nuls(plain);
    tele_batch_t b;
    char err[256];
    assert_int_equal(decode(body, strlen(body), 7, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 7);
    assert_string_equal(b.ev[0].device_id, "dev1");
    assert_true(b.ev[0].spoofed);
    assert_true(b.ev[0].reading.invalid);
    assert_non_null(strstr(b.ev[0].reading.reason, "NUL"));
    assert_true(b.ev[1].rejected);
    assert_non_null(strstr(b.ev[1].reject_reason, "NUL"));
    assert_true(b.ev[2].reading.invalid);
    assert_non_null(strstr(b.ev[2].reading.reason, "geo"));
    assert_true(b.ev[3].reading.invalid);
    assert_false(b.ev[4].reading.invalid);
    assert_false(b.ev[4].reading.has & TELE_HAS_GEO);
    assert_false(b.ev[5].reading.invalid);
    assert_true(b.ev[5].reading.temperature == 20);
    assert_int_equal(b.ev[5].raw_len, 19);                       /* the NUL is kept in the raw body */
    assert_int_equal(b.ev[5].raw[18], 0);
    assert_true(b.ev[6].rejected);                               /* "nul\0x": never "nul" */
    assert_non_null(strstr(b.ev[6].reject_reason, "NUL"));
    tele_batch_free(&b);
    free(body);
    cJSON_free(plain);
}

/* Only the members normalise reads are kept: the first of each, whatever else the body holds. */
static void test_members_first_and_rest_ignored(void **state)
{
    (void)state;
    buf_t big = BUF_INIT;
    buf_puts(&big, "{\"pad\":[");
    for (int i = 0; i < 200000; i++) buf_puts(&big, i ? ",1" : "1");
    buf_puts(&big, "],\"temperature\":1,\"temperature\":2,\"nested\":{\"temperature\":3},\"Temperature\":4}");
    const char *bodies[] = {big.data, "{\"humidity\":{\"v\":1}}", "{\"light\":1e400}"};
    const char *ids[] = {"a", "b", "c"};
    char *body = host_body(bodies, ids, 3);
    tele_batch_t b;
    char err[256];
    assert_int_equal(decode(body, strlen(body), 4096, &b, err, sizeof err), 0);
    assert_true(b.ev[0].reading.temperature == 1);   /* the first "temperature"; alias order beats Temperature */
    assert_false(b.ev[0].reading.invalid);
    assert_int_equal(b.ev[0].raw_len, TELE_RAW_KEEP);     /* only a prefix of a big body is kept */
    assert_int_equal(b.ev[0].raw_total, big.len);
    assert_true(b.ev[1].reading.invalid);
    assert_non_null(strstr(b.ev[1].reading.reason, "wrong type object"));
    assert_true(b.ev[2].reading.invalid);
    assert_non_null(strstr(b.ev[2].reading.reason, "not finite"));
    tele_batch_free(&b);
    cJSON_free(body);
    buf_free(&big);
}

static void test_envelope_errors(void **state)
{
    (void)state;
    tele_batch_t b;
    char err[256];
    struct { const char *body, *want; } cases[] = {
        {"[1,2]", "must be a JSON object"},
        {"{\"Data\":{\"events\":\"[1,\"}}", "does not hold a JSON array"},
        {"{\"Data\":{\"events\":7}}", "JSON number"},
        {"{\"Data\":[]}", "\"Data\" must be a JSON object"},
        {"{\"Data\":{\"events\":[]}", "end of input"},
        {"{\"Data\":{}} x", "trailing data"},
        {"{\"Data\": {\"events\": [}", "line 1, column 22"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(decode(cases[i].body, strlen(cases[i].body), 3, &b, err, sizeof err), -1);
        if (!strstr(err, cases[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
        tele_batch_free(&b);
    }
    /* nothing at all, and null events, are empty batches */
    const char *empty[] = {"{}", "{\"Data\":{\"events\":null}}", "{\"Data\":null,\"Other\":[{\"events\":[1]}]}"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(decode(empty[i], strlen(empty[i]), 0, &b, err, sizeof err), 0);
        assert_int_equal(b.n, 0);
        tele_batch_free(&b);
    }
}

/* Forms the host does not send but other callers may: decoded arrays, a single object,
 * Data as a string holding an object, events wrapped twice, keys in any case. */
static void test_other_forms(void **state)
{
    (void)state;
    tele_batch_t b;
    char err[256];
    /* Data as a string holding {"EVENTS": <a string holding a string holding the array>} */
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateString("{\"deviceId\":\"w\"}"));
    char *t1 = cJSON_PrintUnformatted(arr);
    cJSON *s1 = cJSON_CreateString(t1);
    char *t2 = cJSON_PrintUnformatted(s1);
    cJSON *data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "EVENTS", t2);
    char *t3 = cJSON_PrintUnformatted(data);
    cJSON *env = cJSON_CreateObject();
    cJSON_AddStringToObject(env, "data", t3);
    cJSON *meta = cJSON_AddObjectToObject(env, "metadata");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(meta, "partitioncontext"), "PartitionId", "1");
    char *body = cJSON_PrintUnformatted(env);
    assert_int_equal(decode(body, strlen(body), 5, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.ev[0].device_id, "w");
    assert_true(b.seq_usable);
    tele_batch_free(&b);
    cJSON_free(body);
    cJSON_free(t1);
    cJSON_free(t2);
    cJSON_free(t3);
    cJSON_Delete(arr);
    cJSON_Delete(s1);
    cJSON_Delete(data);
    cJSON_Delete(env);
    const char *single = "{\"Data\":{\"events\":{\"deviceId\":\"s\",\"temperature\":3}},\"Metadata\":{\"RetryContext\":{\"RetryCount\":4}}}";
    assert_int_equal(decode(single, strlen(single), 2, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.ev[0].device_id, "s");
    assert_true(b.ev[0].reading.temperature == 3);
    assert_int_equal(b.retry_count, 4);
    tele_batch_free(&b);
    const char *decoded = "{\"Data\":{\"events\":[ {\"deviceId\" : \"o\" , \"geo\" : \"G\"} , 5 , \"{\\\"deviceId\\\":\\\"t\\\"}\" ]}}";
    assert_int_equal(decode(decoded, strlen(decoded), 1, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 3);
    assert_string_equal(b.ev[0].device_id, "o");
    assert_string_equal(b.ev[0].reading.geo, "G");
    assert_true(b.ev[1].rejected);
    assert_string_equal(b.ev[2].device_id, "t");
    tele_batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_any_chunking_same_batch),
        cmocka_unit_test(test_nul_never_truncates),
        cmocka_unit_test(test_members_first_and_rest_ignored),
        cmocka_unit_test(test_envelope_errors),
        cmocka_unit_test(test_other_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
