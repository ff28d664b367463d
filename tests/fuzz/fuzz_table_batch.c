/* fuzz_table_batch.c — the Table service's $batch response (table_batch_parse and, for failed
 * operations, table_error_from_body: src/azure/table_batch.c, table.c).
 *
 * Input: one byte choosing the batch (1 + b % 100 operations; the next byte's bits make some of
 * them deletes, which may succeed without an ETag), then the multipart response body.
 *
 * Invariants: a TABLE_OK result has no message, code or index, and
 * every operation that is not a delete has an ETag that can be sent back as If-Match
 * (table_etag_ok: non-empty, shorter than TABLE_ETAG_MAX, no control characters); any other
 * result is not TABLE_OK and carries a message; batch_index is -1 or names one of the
 * operations; code and message are terminated within their buffers. */
#include "fuzz.h"

#include "azure/table.h"
#include "azure/table_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t n_ops = 1 + data[0] % TABLE_BATCH_MAX_OPS;
    uint8_t kinds = data[1];
    data += 2;
    size -= 2;

    table_batch_op_t ops[TABLE_BATCH_MAX_OPS];
    memset(ops, 0, sizeof ops);
    for (size_t i = 0; i < n_ops; i++) {
        ops[i].kind = (kinds >> (i % 8)) & 1 ? TABLE_OP_DELETE : (table_op_kind_t)(i % 3);
        memset(ops[i].etag, 'x', sizeof ops[i].etag);   /* the parser must overwrite it */
    }
    char *body = (char *)fuzz_memdup(data, size);
    table_result_t res;
    memset(&res, 0x55, sizeof res);
    res.code[0] = res.message[0] = '\0';
    table_status_t st = table_batch_parse(body, size, ops, n_ops, &res);

    FUZZ_CHECK(memchr(res.code, '\0', sizeof res.code) && memchr(res.message, '\0', sizeof res.message),
               "code or message not terminated");
    FUZZ_CHECK(res.batch_index >= -1 && res.batch_index < (int)n_ops, "batch_index %d of %zu", res.batch_index, n_ops);
    if (st == TABLE_OK) {
        FUZZ_CHECK(res.batch_index == -1 && res.message[0] == '\0' && res.code[0] == '\0',
                   "success with index %d, message '%s'", res.batch_index, res.message);
        for (size_t i = 0; i < n_ops; i++) {
            FUZZ_CHECK(memchr(ops[i].etag, '\0', sizeof ops[i].etag), "ETag %zu not terminated", i);
            if (ops[i].kind != TABLE_OP_DELETE)
                FUZZ_CHECK(table_etag_ok(ops[i].etag), "operation %zu succeeded with an unusable ETag '%s'", i,
                           ops[i].etag);
        }
    } else {
        FUZZ_CHECK(res.message[0] != '\0', "status %s without a message", table_status_name(st));
    }

    /* the error-body reader on its own, with small buffers */
    char code[8], msg[16];
    table_error_from_body(body, size, code, sizeof code, msg, sizeof msg);
    FUZZ_CHECK(memchr(code, '\0', sizeof code) && memchr(msg, '\0', sizeof msg), "error fields not terminated");
    free(body);
    return 0;
}
