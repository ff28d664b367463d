/* Unit tests: $batch validation, body building and response parsing (samples captured from
 * Azurite 3.35.0, plus the real-Azure failure shape from the reference, §4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "azure/table.h"
#include "azure/table_internal.h"

static cJSON *ent(const char *pk, const char *rk)
{
    cJSON *e = cJSON_CreateObject();
    table_set_string(e, "PartitionKey", pk);
    table_set_string(e, "RowKey", rk);
    return e;
}

static void test_validate(void **state)
{
    (void)state;
    char err[256];
    int bad;
    cJSON *a = ent("p", "1"), *b = ent("p", "2"), *c = ent("q", "3"), *d = ent("p", "1"), *x = ent("p", "a/b");
    table_batch_op_t ops[3] = {{.kind = TABLE_OP_INSERT, .entity = a}, {.kind = TABLE_OP_MERGE, .entity = b},
                               {.kind = TABLE_OP_DELETE, .entity = c}};
    assert_int_equal(table_batch_validate(ops, 2, &bad, err, sizeof(err)), 0);
    assert_int_equal(table_batch_validate(ops, 3, &bad, err, sizeof(err)), -1);
    assert_int_equal(bad, 2);
    assert_non_null(strstr(err, "PartitionKey"));
    ops[2].entity = d;
    assert_int_equal(table_batch_validate(ops, 3, &bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "same entity"));
    ops[2].entity = x;
    assert_int_equal(table_batch_validate(ops, 3, &bad, err, sizeof(err)), -1);
    assert_int_equal(bad, 2);
    ops[2].entity = NULL;
    assert_int_equal(table_batch_validate(ops, 3, &bad, err, sizeof(err)), -1);
    ops[2].entity = c;
    ops[1].if_match = "W/\"x\"\r\nX-Evil: 1";
    assert_int_equal(table_batch_validate(ops, 2, &bad, err, sizeof(err)), -1);
    assert_int_equal(bad, 1);
    ops[1].if_match = NULL;
    ops[1].kind = (table_op_kind_t)42;
    assert_int_equal(table_batch_validate(ops, 2, &bad, err, sizeof(err)), -1);
    assert_int_equal(table_batch_validate(ops, 0, &bad, err, sizeof(err)), -1);

    table_batch_op_t *many = calloc(TABLE_BATCH_MAX_OPS + 1, sizeof(*many));
    cJSON *es[TABLE_BATCH_MAX_OPS + 1];
    for (int i = 0; i <= TABLE_BATCH_MAX_OPS; i++) {
        char rk[16];
        snprintf(rk, sizeof(rk), "r%d", i);
        es[i] = ent("p", rk);
        many[i].kind = TABLE_OP_INSERT;
        many[i].entity = es[i];
    }
    assert_int_equal(table_batch_validate(many, TABLE_BATCH_MAX_OPS, &bad, err, sizeof(err)), 0);
    assert_int_equal(table_batch_validate(many, TABLE_BATCH_MAX_OPS + 1, &bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at most 100"));
    for (int i = 0; i <= TABLE_BATCH_MAX_OPS; i++) cJSON_Delete(es[i]);
    free(many);
    cJSON_Delete(a); cJSON_Delete(b); cJSON_Delete(c); cJSON_Delete(d); cJSON_Delete(x);
}

static void test_build(void **state)
{
    (void)state;
    cJSON *a = ent("d1", "evt-1"), *b = ent("d1", "O'Brien"), *c = ent("d1", "gone");
    table_set_double(b, "temp", 22.0);
    table_batch_op_t ops[3] = {
        {.kind = TABLE_OP_INSERT, .entity = a},
        {.kind = TABLE_OP_MERGE, .entity = b, .if_match = "W/\"datetime'2024-01-01T00%3A00%3A00.1234567Z'\""},
        {.kind = TABLE_OP_DELETE, .entity = c},
    };
    buf_t body = BUF_INIT;
    assert_int_equal(table_batch_build(&body, "http://127.0.0.1:10002/devstoreaccount1/devices", ops, 3,
                                       "batch_B", "changeset_C"), 0);
    const char *expect =
        "--batch_B\r\nContent-Type: multipart/mixed; boundary=changeset_C\r\n\r\n"
        "--changeset_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "POST http://127.0.0.1:10002/devstoreaccount1/devices HTTP/1.1\r\n"
        "Accept: application/json;odata=minimalmetadata\r\nDataServiceVersion: 3.0;\r\n"
        "Content-Type: application/json\r\nPrefer: return-no-content\r\n\r\n"
        "{\"PartitionKey\":\"d1\",\"RowKey\":\"evt-1\"}\r\n"
        "--changeset_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "MERGE http://127.0.0.1:10002/devstoreaccount1/devices(PartitionKey='d1',RowKey='O%27%27Brien') HTTP/1.1\r\n"
        "Accept: application/json;odata=minimalmetadata\r\nDataServiceVersion: 3.0;\r\n"
        "Content-Type: application/json\r\nIf-Match: W/\"datetime'2024-01-01T00%3A00%3A00.1234567Z'\"\r\n\r\n"
        "{\"PartitionKey\":\"d1\",\"RowKey\":\"O'Brien\",\"temp\":22,\"temp@odata.type\":\"Edm.Double\"}\r\n"
        "--changeset_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "DELETE http://127.0.0.1:10002/devstoreaccount1/devices(PartitionKey='d1',RowKey='gone') HTTP/1.1\r\n"
        "Accept: application/json;odata=minimalmetadata\r\nDataServiceVersion: 3.0;\r\n"
        "If-Match: *\r\n\r\n"
        "--changeset_C--\r\n--batch_B--\r\n";
    assert_string_equal(buf_str(&body), expect);
    buf_free(&body);
    cJSON_Delete(a); cJSON_Delete(b); cJSON_Delete(c);
}

/* Azurite 3.35.0, 2 inserts */
static const char ok2[] =
    "--batchresponse_B\r\nContent-Type: multipart/mixed; boundary=changesetresponse_C\r\n\r\n"
    "--changesetresponse_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 204 No Content\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\nDataServiceVersion: 3.0;\r\n"
    "Location: http://127.0.0.1:36679/devstoreaccount1/smoke1(PartitionKey='b',RowKey='r0')\r\n"
    "DataServiceId: http://127.0.0.1:36679/devstoreaccount1/smoke1(PartitionKey='b',RowKey='r0')\r\n"
    "ETag: W/\"datetime'2026-11-26T12%3A27%3A10.2645998Z'\"\r\n\r\n\r\n"
    "--changesetresponse_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 204 No Content\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\nDataServiceVersion: 3.0;\r\n"
    "Location: http://127.0.0.1:36679/devstoreaccount1/smoke1(PartitionKey='b',RowKey='r1')\r\n"
    "DataServiceId: http://127.0.0.1:36679/devstoreaccount1/smoke1(PartitionKey='b',RowKey='r1')\r\n"
    "ETag: W/\"datetime'2026-11-26T12%3A27%3A10.2646002Z'\"\r\n\r\n\r\n"
    "--changesetresponse_C--\r\n--batchresponse_B--\r\n";

/* Azurite 3.35.0, 3 inserts, the first already existing (note Content-ID: 1) */
static const char fail409[] =
    "--batchresponse_B\r\nContent-Type: multipart/mixed; boundary=changesetresponse_C\r\n\r\n"
    "--changesetresponse_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 409 Conflict\r\nContent-ID: 1\r\nDataServiceVersion: 3.0;\r\n"
    "Content-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n\r\n"
    "{\"odata.error\":{\"code\":\"EntityAlreadyExists\",\"message\":{\"lang\":\"en-US\",\"value\":\"0:The specified entity already exists.\\nRequestId:c36d1a2e\\nTime:2026-11-26T12:27:10.267Z\"}}}\r\n"
    "--changesetresponse_C--\r\n--batchresponse_B--\r\n";

/* Azurite 3.35.0, 101 operations: the stray "changesetresponse_C" line before the status */
static const char fail101[] =
    "--batchresponse_B\r\nContent-Type: multipart/mixed; boundary=changesetresponse_C\r\n\r\n"
    "--changesetresponse_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "changesetresponse_C\r\nHTTP/1.1 400 Bad Request\r\nX-Content-Type-Options: nosniff\r\nDataServiceVersion: 3.0;\r\n"
    "Content-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n\r\n"
    "{\"odata.error\":{\"code\":\"InvalidInput\",\"message\":{\"lang\":\"en-US\",\"value\":\"0:The batch request operation exceeds the maximum 100 changes per change set.\\nRequestId:cefb0a6b\\nTime:2026-11-26T12:27:10.2620000Z\"}}}\r\n"
    "--changesetresponse_C--\r\n--batchresponse_B--\r\n";

/* real-Azure shape (reference §4): no Content-ID, index only in the message, LF endings */
static const char fail412_azure[] =
    "--batchresponse_x\nContent-Type: multipart/mixed; boundary=changesetresponse_y\n\n"
    "--changesetresponse_y\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n\n"
    "HTTP/1.1 412 Precondition Failed\nX-Content-Type-Options: nosniff\nDataServiceVersion: 3.0;\n"
    "Content-Type: application/json;odata=minimalmetadata;streaming=true;charset=utf-8\n\n"
    "{\"odata.error\":{\"code\":\"UpdateConditionNotSatisfied\",\"message\":{\"lang\":\"en-US\",\"value\":\"12:The update condition specified in the request was not satisfied.\\nRequestId:abc\"}}}\n"
    "--changesetresponse_y--\n--batchresponse_x--\n";

static void test_parse(void **state)
{
    (void)state;
    table_batch_op_t ops[TABLE_BATCH_MAX_OPS];
    table_result_t res;
    memset(ops, 0, sizeof(ops));

    memset(&res, 0, sizeof(res));
    assert_int_equal(table_batch_parse(ok2, strlen(ok2), ops, 2, &res), TABLE_OK);
    assert_string_equal(ops[0].etag, "W/\"datetime'2026-11-26T12%3A27%3A10.2645998Z'\"");
    assert_string_equal(ops[1].etag, "W/\"datetime'2026-11-26T12%3A27%3A10.2646002Z'\"");
    assert_int_equal(res.batch_index, -1);
    /* a count mismatch is a protocol error, not a success */
    assert_int_equal(table_batch_parse(ok2, strlen(ok2), ops, 3, &res), TABLE_PROTOCOL);

    memset(&res, 0, sizeof(res));
    assert_int_equal(table_batch_parse(fail409, strlen(fail409), ops, 3, &res), TABLE_CONFLICT);
    assert_int_equal(res.batch_index, 0);
    assert_int_equal(res.http_status, 409);
    assert_string_equal(res.code, "EntityAlreadyExists");
    assert_non_null(strstr(res.message, "The specified entity already exists."));

    memset(&res, 0, sizeof(res));
    assert_int_equal(table_batch_parse(fail101, strlen(fail101), ops, 100, &res), TABLE_BAD_REQUEST);
    assert_int_equal(res.batch_index, 0);
    assert_int_equal(res.http_status, 400);
    assert_string_equal(res.code, "InvalidInput");
    assert_non_null(strstr(res.message, "exceeds the maximum 100"));

    memset(&res, 0, sizeof(res));
    assert_int_equal(table_batch_parse(fail412_azure, strlen(fail412_azure), ops, 20, &res), TABLE_PRECONDITION);
    assert_int_equal(res.batch_index, 12);
    assert_string_equal(res.code, "UpdateConditionNotSatisfied");

    /* index out of range is not trusted */
    memset(&res, 0, sizeof(res));
    assert_int_equal(table_batch_parse(fail412_azure, strlen(fail412_azure), ops, 5, &res), TABLE_PRECONDITION);
    assert_int_equal(res.batch_index, -1);
}

static void test_parse_hostile(void **state)
{
    (void)state;
    table_batch_op_t ops[4];
    table_result_t res;
    memset(ops, 0, sizeof(ops));
    memset(&res, 0, sizeof(res));
    assert_int_equal(table_batch_parse("", 0, ops, 1, &res), TABLE_PROTOCOL);
    assert_int_equal(table_batch_parse("garbage\r\n\r\n--x--", 16, ops, 1, &res), TABLE_PROTOCOL);
    const char *trunc = "HTTP/1.1 204 No Content\r\nETag: W/\"a\"";
    assert_int_equal(table_batch_parse(trunc, strlen(trunc), ops, 1, &res), TABLE_OK);
    assert_string_equal(ops[0].etag, "W/\"a\"");
    const char *noetag = "HTTP/1.1 204 No Content\r\n\r\n";
    assert_int_equal(table_batch_parse(noetag, strlen(noetag), ops, 1, &res), TABLE_PROTOCOL);
    /* a failure without a usable message falls back to Content-ID, then to the single op */
    const char *cid = "HTTP/1.1 404 Not Found\r\nContent-ID: 3\r\n\r\n{not json\r\n";
    assert_int_equal(table_batch_parse(cid, strlen(cid), ops, 4, &res), TABLE_NOT_FOUND);
    assert_int_equal(res.batch_index, 2);
    const char *one = "HTTP/1.1 412 Precondition Failed\r\n\r\n";
    assert_int_equal(table_batch_parse(one, strlen(one), ops, 1, &res), TABLE_PRECONDITION);
    assert_int_equal(res.batch_index, 0);
    /* an ETag longer than TABLE_ETAG_MAX is refused, never overflowed */
    char big[600];
    int n = snprintf(big, sizeof(big), "HTTP/1.1 204 No Content\r\nETag: W/\"%0300d\"\r\n\r\n", 1);
    assert_int_equal(table_batch_parse(big, (size_t)n, ops, 1, &res), TABLE_PROTOCOL);
    /* an ETag that could not go back into an If-Match header as it is: empty, or holding a
     * control character (fuzz_table_batch: a lone CR inside the ETag line was kept) */
    const char *bad_etags[] = {"HTTP/1.1 204 No Content\r\nETag: W/\"a\rb\"\r\n\r\n",
                               "HTTP/1.1 204 No Content\r\nETag: W/\"a\x01\"\r\n\r\n",
                               "HTTP/1.1 204 No Content\r\nETag: \r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad_etags) / sizeof(bad_etags[0]); i++) {
        memset(&res, 0, sizeof(res));
        assert_int_equal(table_batch_parse(bad_etags[i], strlen(bad_etags[i]), ops, 1, &res), TABLE_PROTOCOL);
        assert_non_null(strstr(res.message, "ETag"));
        assert_int_equal(res.batch_index, 0);
        assert_string_equal(ops[0].etag, "");
    }
    /* a delete needs none, and a bad one is not kept */
    ops[0].kind = TABLE_OP_DELETE;
    assert_int_equal(table_batch_parse(bad_etags[0], strlen(bad_etags[0]), ops, 1, &res), TABLE_OK);
    assert_string_equal(ops[0].etag, "");
    ops[0].kind = TABLE_OP_INSERT;
    /* many status lines (more than the parser's initial capacity) */
    buf_t b = BUF_INIT;
    for (int i = 0; i < 40; i++) buf_printf(&b, "HTTP/1.1 204 No Content\r\nETag: W/\"%d\"\r\n\r\n--c\r\n", i);
    table_batch_op_t many[40];
    memset(many, 0, sizeof(many));
    assert_int_equal(table_batch_parse(b.data, b.len, many, 40, &res), TABLE_OK);
    assert_string_equal(many[39].etag, "W/\"39\"");
    buf_free(&b);
}

/* Mutated samples and random bytes never crash the parsers (meaningful under ASan/valgrind)
 * and a status is always one of the defined ones. */
static void test_parse_mutations(void **state)
{
    (void)state;
    const char *samples[] = {ok2, fail409, fail101, fail412_azure};
    unsigned seed = 12345;
    char buf[2048];
    table_batch_op_t ops[3];
    table_result_t res;
    for (int it = 0; it < 3000; it++) {
        const char *src = samples[it % 4];
        size_t n = strlen(src);
        if (n > sizeof(buf)) n = sizeof(buf);
        memcpy(buf, src, n);
        int muts = 1 + rand_r(&seed) % 8;
        for (int m = 0; m < muts; m++) buf[rand_r(&seed) % n] = (char)(rand_r(&seed) & 0xff);
        size_t len = (size_t)(rand_r(&seed) % (int)(n + 1));
        memset(ops, 0, sizeof(ops));
        memset(&res, 0, sizeof(res));
        table_status_t st = table_batch_parse(buf, len, ops, 1 + (size_t)(it % 3), &res);
        assert_true(st >= TABLE_OK && st <= TABLE_PROTOCOL);
        assert_true(res.batch_index >= -1 && res.batch_index < 3);
        assert_true(memchr(res.message, '\0', sizeof(res.message)) != NULL);
        for (int i = 0; i < 3; i++) assert_true(memchr(ops[i].etag, '\0', TABLE_ETAG_MAX) != NULL);
        /* the same bytes as a connection string and as a key */
        buf[len < sizeof(buf) ? len : sizeof(buf) - 1] = '\0';
        storage_account_t a;
        char err[128];
        if (storage_account_parse(buf, &a, err, sizeof(err)) == 0) storage_account_free(&a);
        (void)table_key_valid(buf, err, sizeof(err));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_parse_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
