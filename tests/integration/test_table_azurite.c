/* Integration tests: the Table client against the real Azurite started by tests/run.sh
 * (TEST_STORAGE_CONNECTION), plus local sockets for the transient-failure paths. Each run
 * uses fresh table names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "azure/table.h"
#include "test_azurite.h"

#define DEV_KEY "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

static table_client_t *tc;
static char tname[32];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int setup(void **state)
{
    (void)state;
    tc = test_azurite_table("it", tname, sizeof tname);
    return tc ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    test_azurite_drop(tc, tname);
    return 0;
}

static cJSON *ent(const char *pk, const char *rk)
{
    cJSON *e = cJSON_CreateObject();
    assert_int_equal(table_set_string(e, "PartitionKey", pk), 0);
    assert_int_equal(table_set_string(e, "RowKey", rk), 0);
    return e;
}

static void test_create_twice(void **state)
{
    (void)state;
    table_result_t res;
    assert_int_equal(table_create_if_missing(tc, tname, &res), TABLE_OK);
    assert_int_equal(res.http_status, 409); /* it existed: still success */
    char other[40];
    snprintf(other, sizeof(other), "%sb", tname);
    assert_int_equal(table_create_if_missing(tc, other, &res), TABLE_OK);
    assert_true(res.http_status == 201 || res.http_status == 204);
    assert_int_equal(table_delete_table(tc, other, &res), TABLE_OK);
    assert_int_equal(table_delete_table(tc, other, &res), TABLE_NOT_FOUND);
    /* bad table name: rejected before any request */
    assert_int_equal(table_create_if_missing(tc, "x-y", &res), TABLE_INVALID_ARG);
    assert_int_equal(res.attempts, 0);
}

static void test_insert_get_conflict(void **state)
{
    (void)state;
    table_result_t res;
    char etag[TABLE_ETAG_MAX], etag2[TABLE_ETAG_MAX];
    cJSON *e = ent("crud", "r1");
    table_set_int64(e, "Count", INT64_C(9007199254740993));
    table_set_double(e, "Celsius", 22.0);
    table_set_datetime(e, "LastSeen", "2024-01-02T03:04:05Z");
    assert_int_equal(table_insert_entity(tc, tname, e, etag, &res), TABLE_OK);
    assert_int_equal(res.attempts, 1);
    assert_true(strncmp(etag, "W/\"", 3) == 0);

    assert_int_equal(table_insert_entity(tc, tname, e, NULL, &res), TABLE_CONFLICT);
    assert_int_equal(res.http_status, 409);
    assert_string_equal(res.code, "EntityAlreadyExists");
    assert_int_equal(res.attempts, 1);
    assert_non_null(strstr(res.message, "409"));

    cJSON *got = NULL;
    assert_int_equal(table_get_entity(tc, tname, "crud", "r1", NULL, &got, etag2, &res), TABLE_OK);
    assert_string_equal(etag2, etag);
    int64_t v;
    double d;
    assert_int_equal(table_get_int64(got, "Count", &v), 0);
    assert_true(v == INT64_C(9007199254740993));
    assert_int_equal(table_get_double(got, "Celsius", &d), 0);
    assert_true(d == 22.0);
    assert_string_equal(table_get_string(got, "LastSeen@odata.type"), "Edm.DateTime");
    assert_null(cJSON_GetObjectItem(got, "odata.metadata"));
    cJSON_Delete(got);

    got = NULL;
    assert_int_equal(table_get_entity(tc, tname, "crud", "r1", "Count", &got, NULL, &res), TABLE_OK);
    assert_non_null(cJSON_GetObjectItem(got, "Count"));
    assert_null(cJSON_GetObjectItem(got, "Celsius"));
    cJSON_Delete(got);

    got = (cJSON *)1;
    assert_int_equal(table_get_entity(tc, tname, "crud", "nope", NULL, &got, etag2, &res), TABLE_NOT_FOUND);
    assert_null(got);
    assert_int_equal(res.http_status, 404);
    cJSON_Delete(e);
}

static void test_merge_replace_etags(void **state)
{
    (void)state;
    table_result_t res;
    char e0[TABLE_ETAG_MAX], e1[TABLE_ETAG_MAX], e2[TABLE_ETAG_MAX];
    cJSON *e = ent("occ", "dev1");
    table_set_int64(e, "Count", 1);
    table_set_string(e, "Keep", "yes");
    assert_int_equal(table_insert_entity(tc, tname, e, e0, &res), TABLE_OK);

    cJSON *m = ent("occ", "dev1");
    table_set_int64(m, "Count", 2);
    assert_int_equal(table_merge_entity(tc, tname, m, e0, e1, &res), TABLE_OK);
    assert_string_not_equal(e0, e1);
    /* stale ETag: 412, never retried */
    table_set_int64(m, "Count", 3);
    assert_int_equal(table_merge_entity(tc, tname, m, e0, NULL, &res), TABLE_PRECONDITION);
    assert_int_equal(res.http_status, 412);
    assert_int_equal(res.attempts, 1);
    assert_string_equal(res.code, "UpdateConditionNotSatisfied");

    cJSON *got = NULL;
    int64_t v;
    assert_int_equal(table_get_entity(tc, tname, "occ", "dev1", NULL, &got, e2, &res), TABLE_OK);
    assert_string_equal(e2, e1);
    assert_int_equal(table_get_int64(got, "Count", &v), 0);
    assert_true(v == 2);
    assert_string_equal(table_get_string(got, "Keep"), "yes"); /* merge kept it */

    /* replace with the current ETag drops properties not sent; reuse the read entity
     * (its odata.* metadata must not be written back) */
    cJSON_DeleteItemFromObject(got, "Keep");
    table_set_int64(got, "Count", 10);
    assert_int_equal(table_replace_entity(tc, tname, got, e2, e0, &res), TABLE_OK);
    assert_int_equal(table_replace_entity(tc, tname, got, e2, NULL, &res), TABLE_PRECONDITION);
    cJSON_Delete(got);
    assert_int_equal(table_get_entity(tc, tname, "occ", "dev1", NULL, &got, NULL, &res), TABLE_OK);
    assert_null(table_get_string(got, "Keep"));
    assert_int_equal(table_get_int64(got, "Count", &v), 0);
    assert_true(v == 10);
    cJSON_Delete(got);

    /* conditional update of a missing entity: 404 */
    cJSON *missing = ent("occ", "missing");
    assert_int_equal(table_merge_entity(tc, tname, missing, e0, NULL, &res), TABLE_NOT_FOUND);
    assert_int_equal(table_replace_entity(tc, tname, missing, e0, NULL, &res), TABLE_NOT_FOUND);
    /* header injection through If-Match is refused before sending */
    assert_int_equal(table_merge_entity(tc, tname, m, "W/\"x\"\r\nX-Evil: 1", NULL, &res), TABLE_INVALID_ARG);
    assert_int_equal(res.attempts, 0);
    cJSON_Delete(missing);
    cJSON_Delete(m);
    cJSON_Delete(e);
}

static void test_upserts_and_delete(void **state)
{
    (void)state;
    table_result_t res;
    char et[TABLE_ETAG_MAX], et2[TABLE_ETAG_MAX];
    cJSON *a = ent("up", "merge-new");
    table_set_string(a, "A", "1");
    assert_int_equal(table_merge_entity(tc, tname, a, NULL, et, &res), TABLE_OK);  /* creates */
    cJSON *a2 = ent("up", "merge-new");
    table_set_string(a2, "B", "2");
    assert_int_equal(table_merge_entity(tc, tname, a2, NULL, et2, &res), TABLE_OK); /* merges */
    assert_string_not_equal(et, et2);
    cJSON *got = NULL;
    assert_int_equal(table_get_entity(tc, tname, "up", "merge-new", NULL, &got, NULL, &res), TABLE_OK);
    assert_string_equal(table_get_string(got, "A"), "1");
    assert_string_equal(table_get_string(got, "B"), "2");
    cJSON_Delete(got);

    cJSON *r = ent("up", "replace-new");
    table_set_string(r, "A", "1");
    assert_int_equal(table_replace_entity(tc, tname, r, NULL, et, &res), TABLE_OK);  /* creates */
    cJSON *r2 = ent("up", "replace-new");
    table_set_string(r2, "B", "2");
    assert_int_equal(table_replace_entity(tc, tname, r2, NULL, NULL, &res), TABLE_OK); /* replaces */
    assert_int_equal(table_get_entity(tc, tname, "up", "replace-new", NULL, &got, et2, &res), TABLE_OK);
    assert_null(table_get_string(got, "A"));
    assert_string_equal(table_get_string(got, "B"), "2");
    cJSON_Delete(got);

    /* delete: stale ETag 412, current ETag ok, then 404 */
    assert_int_equal(table_delete_entity(tc, tname, "up", "replace-new", et, &res), TABLE_PRECONDITION);
    assert_int_equal(table_delete_entity(tc, tname, "up", "replace-new", et2, &res), TABLE_OK);
    assert_int_equal(table_get_entity(tc, tname, "up", "replace-new", NULL, &got, NULL, &res), TABLE_NOT_FOUND);
    assert_int_equal(table_delete_entity(tc, tname, "up", "replace-new", NULL, &res), TABLE_NOT_FOUND);
    assert_int_equal(table_delete_entity(tc, tname, "up", "merge-new", NULL, &res), TABLE_OK);

    /* awkward but legal keys survive URL escaping and signing */
    const char *pk = "O'Brien & Sons 100%", *rk = "caf\xc3\xa9 'quoted' +=;,()";
    cJSON *k = ent(pk, rk);
    assert_int_equal(table_insert_entity(tc, tname, k, NULL, &res), TABLE_OK);
    assert_int_equal(table_merge_entity(tc, tname, k, "*", NULL, &res), TABLE_OK);
    assert_int_equal(table_get_entity(tc, tname, pk, rk, NULL, &got, NULL, &res), TABLE_OK);
    assert_string_equal(table_get_string(got, "RowKey"), rk);
    cJSON_Delete(got);
    assert_int_equal(table_delete_entity(tc, tname, pk, rk, NULL, &res), TABLE_OK);

    /* forbidden key characters: rejected before any request */
    cJSON *bad = ent("up", "a/b");
    assert_int_equal(table_insert_entity(tc, tname, bad, NULL, &res), TABLE_INVALID_ARG);
    assert_int_equal(res.attempts, 0);
    assert_non_null(strstr(res.message, "RowKey"));
    assert_int_equal(table_get_entity(tc, tname, "a#", "x", NULL, &got, NULL, &res), TABLE_INVALID_ARG);
    cJSON_Delete(bad);
    cJSON_Delete(k);
    cJSON_Delete(a); cJSON_Delete(a2); cJSON_Delete(r); cJSON_Delete(r2);
}

typedef struct qstate {
    int rows, with_etag, with_other, in_order, stop_after;
    char last_rk[32];
} qstate_t;

static int on_row(const cJSON *e, void *arg)
{
    qstate_t *q = arg;
    const char *rk = table_get_string(e, "RowKey");
    if (rk && strcmp(rk, q->last_rk) <= 0) q->in_order = 0;
    if (rk) snprintf(q->last_rk, sizeof(q->last_rk), "%s", rk);
    if (table_get_string(e, "odata.etag")) q->with_etag++;
    if (cJSON_GetObjectItem(e, "Other")) q->with_other++;
    q->rows++;
    return q->stop_after && q->rows >= q->stop_after;
}

static void test_query_pages(void **state)
{
    (void)state;
    table_result_t res;
    enum { N = 2500 };
    table_batch_op_t ops[TABLE_BATCH_MAX_OPS];
    cJSON *es[TABLE_BATCH_MAX_OPS];
    double t0 = now_s();
    for (int b = 0; b < N / TABLE_BATCH_MAX_OPS; b++) {
        for (int i = 0; i < TABLE_BATCH_MAX_OPS; i++) {
            char rk[16];
            int n = b * TABLE_BATCH_MAX_OPS + i;
            snprintf(rk, sizeof(rk), "r%05d", n);
            es[i] = ent("q", rk);
            table_set_int64(es[i], "N", n);
            table_set_bool(es[i], "Even", n % 2 == 0);
            table_set_string(es[i], "Other", "x");
            memset(&ops[i], 0, sizeof(ops[i]));
            ops[i].kind = TABLE_OP_INSERT;
            ops[i].entity = es[i];
        }
        assert_int_equal(table_batch(tc, tname, ops, TABLE_BATCH_MAX_OPS, &res), TABLE_OK);
        assert_true(ops[99].etag[0] != '\0');
        for (int i = 0; i < TABLE_BATCH_MAX_OPS; i++) cJSON_Delete(es[i]);
    }
    fprintf(stderr, "# inserted %d entities in %.2fs via $batch\n", N, now_s() - t0);
    /* another partition that the filter must exclude */
    cJSON *o = ent("qq", "r00000");
    assert_int_equal(table_insert_entity(tc, tname, o, NULL, &res), TABLE_OK);
    cJSON_Delete(o);

    qstate_t q = {.in_order = 1};
    assert_int_equal(table_query(tc, tname, "PartitionKey eq 'q'", "RowKey,N", on_row, &q, &res), TABLE_OK);
    assert_int_equal(q.rows, N);
    assert_int_equal(res.pages, 3);        /* 1000 + 1000 + 500 */
    assert_int_equal(q.in_order, 1);
    assert_int_equal(q.with_other, 0);     /* $select applied */
    assert_int_equal(q.with_etag, N);      /* minimalmetadata brings odata.etag */
    assert_string_equal(q.last_rk, "r02499");

    qstate_t h = {.in_order = 1};
    assert_int_equal(table_query(tc, tname, "PartitionKey eq 'q' and Even eq true", NULL, on_row, &h, &res), TABLE_OK);
    assert_int_equal(h.rows, N / 2);
    assert_int_equal(h.with_other, N / 2);

    qstate_t s = {.in_order = 1, .stop_after = 10};
    assert_int_equal(table_query(tc, tname, "PartitionKey eq 'q'", NULL, on_row, &s, &res), TABLE_OK);
    assert_int_equal(s.rows, 10);
    assert_int_equal(res.pages, 1);

    qstate_t z = {.in_order = 1};
    assert_int_equal(table_query(tc, tname, "PartitionKey eq 'nothing'", NULL, on_row, &z, &res), TABLE_OK);
    assert_int_equal(z.rows, 0);
    assert_int_equal(table_query(tc, tname, "PartitionKey eq eq", NULL, on_row, &z, &res), TABLE_BAD_REQUEST);
    assert_int_equal(res.attempts, 1);
}

static void test_batch_failure_rolls_back(void **state)
{
    (void)state;
    table_result_t res;
    cJSON *pre = ent("bat", "x3");
    assert_int_equal(table_insert_entity(tc, tname, pre, NULL, &res), TABLE_OK);
    cJSON *a = ent("bat", "x1"), *b = ent("bat", "x2"), *c = ent("bat", "x3");
    table_batch_op_t ops[3] = {{.kind = TABLE_OP_INSERT, .entity = a}, {.kind = TABLE_OP_INSERT, .entity = b},
                               {.kind = TABLE_OP_INSERT, .entity = c}};
    assert_int_equal(table_batch(tc, tname, ops, 3, &res), TABLE_CONFLICT);
    assert_int_equal(res.batch_index, 2);
    assert_int_equal(res.http_status, 409);
    assert_string_equal(res.code, "EntityAlreadyExists");
    assert_non_null(strstr(res.message, "operation 2"));
    cJSON *got = NULL;
    assert_int_equal(table_get_entity(tc, tname, "bat", "x1", NULL, &got, NULL, &res), TABLE_NOT_FOUND);
    assert_int_equal(table_get_entity(tc, tname, "bat", "x2", NULL, &got, NULL, &res), TABLE_NOT_FOUND);

    /* a mixed batch that succeeds; per-op ETags are the entities' ETags */
    char e3[TABLE_ETAG_MAX], cur[TABLE_ETAG_MAX];
    assert_int_equal(table_get_entity(tc, tname, "bat", "x3", NULL, &got, e3, &res), TABLE_OK);
    cJSON_Delete(got);
    table_set_string(c, "M", "merged");
    table_batch_op_t ok[3] = {{.kind = TABLE_OP_INSERT, .entity = a}, {.kind = TABLE_OP_REPLACE, .entity = b},
                              {.kind = TABLE_OP_MERGE, .entity = c, .if_match = e3}};
    assert_int_equal(table_batch(tc, tname, ok, 3, &res), TABLE_OK);
    assert_int_equal(res.batch_index, -1);
    assert_int_equal(table_get_entity(tc, tname, "bat", "x3", NULL, &got, cur, &res), TABLE_OK);
    assert_string_equal(cur, ok[2].etag);
    assert_string_equal(table_get_string(got, "M"), "merged");
    cJSON_Delete(got);
    assert_int_equal(table_get_entity(tc, tname, "bat", "x1", NULL, &got, cur, &res), TABLE_OK);
    assert_string_equal(cur, ok[0].etag);
    cJSON_Delete(got);

    /* stale ETag at index 1 -> 412, index 1; the delete at index 0 is rolled back */
    table_batch_op_t stale[2] = {{.kind = TABLE_OP_DELETE, .entity = a},
                                 {.kind = TABLE_OP_MERGE, .entity = c, .if_match = e3}};
    assert_int_equal(table_batch(tc, tname, stale, 2, &res), TABLE_PRECONDITION);
    assert_int_equal(res.batch_index, 1);
    assert_int_equal(table_get_entity(tc, tname, "bat", "x1", NULL, &got, NULL, &res), TABLE_OK);
    cJSON_Delete(got);
    cJSON_Delete(pre); cJSON_Delete(a); cJSON_Delete(b); cJSON_Delete(c);
}

static void test_batch_mixed_partitions_rejected(void **state)
{
    (void)state;
    table_result_t res;
    cJSON *a = ent("mixA", "1"), *b = ent("mixB", "2");
    table_batch_op_t ops[2] = {{.kind = TABLE_OP_INSERT, .entity = a}, {.kind = TABLE_OP_INSERT, .entity = b}};
    assert_int_equal(table_batch(tc, tname, ops, 2, &res), TABLE_INVALID_ARG);
    assert_int_equal(res.attempts, 0);      /* no request was made */
    assert_int_equal(res.http_status, 0);
    assert_int_equal(res.batch_index, 1);
    assert_non_null(strstr(res.message, "PartitionKey"));
    cJSON *got = NULL;
    assert_int_equal(table_get_entity(tc, tname, "mixA", "1", NULL, &got, NULL, &res), TABLE_NOT_FOUND);
    assert_int_equal(table_batch(tc, tname, ops, 0, &res), TABLE_INVALID_ARG);
    cJSON_Delete(a); cJSON_Delete(b);
}

static void test_wrong_key_is_auth(void **state)
{
    (void)state;
    const char *ep = table_client_endpoint(tc);
    char conn[512], err[256];
    snprintf(conn, sizeof(conn), "AccountName=devstoreaccount1;AccountKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=;TableEndpoint=%s", ep);
    table_client_t *bad = table_client_new(conn, NULL, err, sizeof(err));
    assert_non_null(bad);
    table_result_t res;
    assert_int_equal(table_create_if_missing(bad, tname, &res), TABLE_AUTH);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.http_status, 403);
    assert_null(strstr(res.message, "AAECAwQF"));
    table_client_free(bad);
}

/* ---- transient failures ----------------------------------------------------------------- */

static int listen_socket(int *port, int backlog)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    if (backlog > 0) assert_int_equal(listen(s, backlog), 0);
    return s;
}

static table_client_t *client_on_port(int port, int timeout_ms, int retries)
{
    char conn[400], err[256];
    snprintf(conn, sizeof(conn), "AccountName=devstoreaccount1;AccountKey=" DEV_KEY
             ";TableEndpoint=http://127.0.0.1:%d/devstoreaccount1", port);
    table_options_t o = {.timeout_ms = timeout_ms, .connect_timeout_ms = 300, .retries = retries, .retry_base_ms = 20};
    table_client_t *c = table_client_new(conn, &o, err, sizeof(err));
    assert_non_null(c);
    return c;
}

static void test_connection_refused(void **state)
{
    (void)state;
    int port;
    int s = listen_socket(&port, 0); /* bound, never listening: connections are refused */
    table_client_t *c = client_on_port(port, 1000, 3);
    table_result_t res;
    double t0 = now_s();
    cJSON *e = ent("p", "r");
    assert_int_equal(table_merge_entity(c, "devices", e, NULL, NULL, &res), TABLE_UNAVAILABLE);
    double dt = now_s() - t0;
    assert_int_equal(res.attempts, 4);
    assert_int_equal(res.http_status, 0);
    assert_non_null(strstr(res.message, "unreachable after 4 attempts"));
    assert_non_null(strstr(res.message, "127.0.0.1"));
    assert_true(dt < 3.0);
    /* bad arguments are still caught before any request */
    cJSON *got = (cJSON *)1;
    assert_int_equal(table_get_entity(c, "devices", "a?b", "r", NULL, &got, NULL, &res), TABLE_INVALID_ARG);
    assert_null(got);
    assert_int_equal(res.attempts, 0);
    cJSON_Delete(e);
    table_client_free(c);
    close(s);
}

static void test_timeout(void **state)
{
    (void)state;
    int port;
    int s = listen_socket(&port, 16); /* accepts via the backlog, never answers */
    table_client_t *c = client_on_port(port, 200, 1);
    table_result_t res;
    cJSON *got = NULL;
    double t0 = now_s();
    assert_int_equal(table_get_entity(c, "devices", "p", "r", NULL, &got, NULL, &res), TABLE_UNAVAILABLE);
    double dt = now_s() - t0;
    assert_int_equal(res.attempts, 2);
    assert_true(dt >= 0.35 && dt < 3.0);
    assert_non_null(strstr(res.message, "unreachable after 2 attempts"));
    table_client_free(c);
    close(s);
}

/* A tiny HTTP server answering 503 to the first `fail_first` requests and 204 + ETag after. */
typedef struct fake {
    int sock;
    atomic_int fail_first, served, stop, accepted;
} fake_t;

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    while (!f->stop) {
        int c = accept(f->sock, NULL, NULL);
        if (c < 0) break;
        f->accepted++;
        char buf[8192];
        size_t have = 0;
        for (;;) {
            ssize_t n = recv(c, buf + have, sizeof(buf) - 1 - have, 0);
            if (n <= 0) break;
            have += (size_t)n;
            buf[have] = '\0';
            char *end;
            while ((end = strstr(buf, "\r\n\r\n"))) {
                size_t hl = (size_t)(end - buf) + 4, cl = 0;
                char *p = strstr(buf, "Content-Length:");
                if (p && p < end) cl = (size_t)atol(p + 15);
                if (have < hl + cl) break;
                static const char busy[] =
                    "{\"odata.error\":{\"code\":\"ServerBusy\",\"message\":{\"value\":\"busy now\"}}}";
                char reply[512];
                if (f->served < f->fail_first)
                    snprintf(reply, sizeof(reply), "HTTP/1.1 503 Server Busy\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\n\r\n%s", strlen(busy), busy);
                else
                    snprintf(reply, sizeof(reply), "HTTP/1.1 204 No Content\r\n"
                             "ETag: W/\"datetime'2024-01-01T00%%3A00%%3A00Z'\"\r\n\r\n");
                f->served++;
                if (send(c, reply, strlen(reply), MSG_NOSIGNAL) < 0) break;
                memmove(buf, buf + hl + cl, have - hl - cl);
                have -= hl + cl;
                buf[have] = '\0';
            }
        }
        close(c);
    }
    return NULL;
}

static void test_5xx_retried_then_ok_or_unavailable(void **state)
{
    (void)state;
    int port;
    fake_t f;
    f.sock = listen_socket(&port, 16);
    atomic_init(&f.fail_first, 2);
    atomic_init(&f.served, 0);
    atomic_init(&f.stop, 0);
    atomic_init(&f.accepted, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_main, &f), 0);
    table_client_t *c = client_on_port(port, 2000, 3);
    table_result_t res;
    char etag[TABLE_ETAG_MAX];
    cJSON *e = ent("p", "r");
    double t0 = now_s();
    assert_int_equal(table_merge_entity(c, "devices", e, NULL, etag, &res), TABLE_OK);
    assert_int_equal(res.attempts, 3);
    assert_true(now_s() - t0 < 1.5); /* retried on the 503s, not on a timeout */
    assert_int_equal(f.accepted, 1);  /* all three attempts on one keep-alive connection */
    assert_string_equal(etag, "W/\"datetime'2024-01-01T00%3A00%3A00Z'\"");

    f.served = 0;
    f.fail_first = 100;
    assert_int_equal(table_merge_entity(c, "devices", e, NULL, NULL, &res), TABLE_UNAVAILABLE);
    assert_int_equal(res.attempts, 4);
    assert_int_equal(res.http_status, 503);
    assert_string_equal(res.code, "ServerBusy");
    assert_non_null(strstr(res.message, "after 4 attempts"));
    assert_int_equal(f.served, 4);
    assert_int_equal(f.accepted, 1);
    cJSON_Delete(e);
    table_client_free(c);   /* closes the keep-alive connection: the server thread sees EOF */
    f.stop = 1;
    shutdown(f.sock, SHUT_RDWR);
    pthread_join(th, NULL);
    close(f.sock);
}

/* ---- threads share one client ------------------------------------------------------------ */

typedef struct worker { int id, failures; } worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < 40; i++) {
        char rk[32];
        snprintf(rk, sizeof(rk), "w%d-%02d", w->id, i);
        cJSON *e = ent("threads", rk);
        table_set_int64(e, "I", i);
        table_result_t res;
        if (table_merge_entity(tc, tname, e, NULL, NULL, &res) != TABLE_OK) w->failures++;
        cJSON *got = NULL;
        if (table_get_entity(tc, tname, "threads", rk, NULL, &got, NULL, &res) != TABLE_OK) w->failures++;
        cJSON_Delete(got);
        cJSON_Delete(e);
    }
    return NULL;
}

static int count_rows(const cJSON *e, void *arg)
{
    (void)e;
    (*(int *)arg)++;
    return 0;
}

/* Every character a device can put in a value, and every one allowed in a key, survives a
 * $batch insert and a $batch conditional merge exactly. Raw U+2028/U+2029 made Azurite's batch
 * parser answer 500 (inserts) or write the row to RowKey '' (keys in merge request lines);
 * table_entity_print escapes them in values, and device RowKeys never hold them
 * (telemetry/device_id.h). The other characters here were checked one by one. */
static void test_batch_characters_round_trip(void **state)
{
    (void)state;
    const char *values[] = {
        "a\xe2\x80\xa8z", "a\xe2\x80\xa9z", "\xe2\x80\xa8\xe2\x80\xa9", "a\xc2\x85z", "a\xc2\xa0z",
        "a\xef\xbb\xbfz", "a\xe2\x80\x8bz", "a\xe3\x80\x80z", "a\x7fz", "a\xf0\x9f\x98\x80z", "a\r\n\tz\x01",
        "a\r\n--changeset_0\r\nHTTP/1.1 500 X\r\n\r\nz", "  x  ", "a\"'\\z", "\xef\xbf\xbf",
    };
    const char *keys[] = {"k-\xc2\xa0", "k-\xef\xbb\xbf", "k-%25", "k-~'", "k-:+*!(),=@;$", "k-\xf0\x9f\x98\x80", "k- x"};
    size_t nv = sizeof values / sizeof values[0], nk = sizeof keys / sizeof keys[0];
    table_batch_op_t ops[32];
    cJSON *ents[32];
    for (int round = 0; round < 2; round++) {   /* insert, then conditional merge */
        char etags[32][TABLE_ETAG_MAX];
        for (size_t i = 0; i < nv + nk; i++) {
            char rk[64];
            if (i < nv) snprintf(rk, sizeof rk, "v%zu", i);
            else snprintf(rk, sizeof rk, "%s", keys[i - nv]);
            ents[i] = cJSON_CreateObject();
            table_set_string(ents[i], "PartitionKey", "chars");
            table_set_string(ents[i], "RowKey", rk);
            table_set_string(ents[i], "Val", i < nv ? values[i] : rk);
            table_set_int64(ents[i], "Round", round);
            memset(&ops[i], 0, sizeof ops[i]);
            ops[i].kind = round == 0 ? TABLE_OP_INSERT : TABLE_OP_MERGE;
            ops[i].entity = ents[i];
            if (round == 1) {
                cJSON *got = NULL;
                assert_int_equal(table_get_entity(tc, tname, "chars", rk, NULL, &got, etags[i], NULL), TABLE_OK);
                cJSON_Delete(got);
                ops[i].if_match = etags[i];
            }
        }
        table_result_t res;
        table_status_t st = table_batch(tc, tname, ops, nv + nk, &res);
        if (st != TABLE_OK) fail_msg("round %d: %s", round, res.message);
        for (size_t i = 0; i < nv + nk; i++) cJSON_Delete(ents[i]);
        for (size_t i = 0; i < nv + nk; i++) {
            char rk[64];
            if (i < nv) snprintf(rk, sizeof rk, "v%zu", i);
            else snprintf(rk, sizeof rk, "%s", keys[i - nv]);
            cJSON *got = NULL;
            assert_int_equal(table_get_entity(tc, tname, "chars", rk, NULL, &got, NULL, &res), TABLE_OK);
            const char *v = table_get_string(got, "Val");
            if (!v || strcmp(v, i < nv ? values[i] : rk) != 0) fail_msg("round %d item %zu changed", round, i);
            int64_t r;
            assert_int_equal(table_get_int64(got, "Round", &r), 0);
            assert_int_equal(r, round);
            cJSON_Delete(got);
        }
    }
    /* nothing went astray: exactly these rows exist */
    int count = 0;
    table_result_t res;
    assert_int_equal(table_query(tc, tname, "PartitionKey eq 'chars'", "RowKey", count_rows, &count, &res), TABLE_OK);
    assert_int_equal(count, (int)(nv + nk));
}

static void test_threads_share_client(void **state)
{
    (void)state;
    enum { T = 4 };
    pthread_t th[T];
    worker_t w[T];
    double t0 = now_s();
    for (int i = 0; i < T; i++) {
        w[i] = (worker_t){.id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    fprintf(stderr, "# %d threads: %d upserts + %d point reads in %.2fs\n", T, T * 40, T * 40, now_s() - t0);
    qstate_t q = {.in_order = 1};
    table_result_t res;
    assert_int_equal(table_query(tc, tname, "PartitionKey eq 'threads'", NULL, on_row, &q, &res), TABLE_OK);
    assert_int_equal(q.rows, T * 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_twice),
        cmocka_unit_test(test_insert_get_conflict),
        cmocka_unit_test(test_merge_replace_etags),
        cmocka_unit_test(test_upserts_and_delete),
        cmocka_unit_test(test_query_pages),
        cmocka_unit_test(test_batch_failure_rolls_back),
        cmocka_unit_test(test_batch_mixed_partitions_rejected),
        cmocka_unit_test(test_wrong_key_is_auth),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_5xx_retried_then_ok_or_unavailable),
        cmocka_unit_test(test_batch_characters_round_trip),
        cmocka_unit_test(test_threads_share_client),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
