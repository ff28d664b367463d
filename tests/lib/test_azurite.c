/* test_azurite.c — a Table client and a fresh table on the tests' Azurite (see test_azurite.h). */
#include "test_azurite.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

table_client_t *test_azurite_table(const char *prefix, char *tname, size_t len)
{
    const char *conn = getenv("TEST_STORAGE_CONNECTION");
    if (!conn) {
        fprintf(stderr, "TEST_STORAGE_CONNECTION is not set; run through tests/run.sh\n");
        return NULL;
    }
    char err[256];
    table_options_t o = {.timeout_ms = 10000, .connect_timeout_ms = 2000, .retries = 2, .retry_base_ms = 50};
    table_client_t *tc = table_client_new(conn, &o, err, sizeof err);
    if (!tc) {
        fprintf(stderr, "table_client_new: %s\n", err);
        return NULL;
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(tname, len, "%s%d%04x", prefix, (int)getpid(), rand() & 0xffff);
    table_result_t res;
    if (table_create_if_missing(tc, tname, &res) != TABLE_OK) {
        fprintf(stderr, "create %s: %s\n", tname, res.message);
        table_client_free(tc);
        return NULL;
    }
    return tc;
}

void test_azurite_drop(table_client_t *tc, const char *tname)
{
    if (!tc) return;
    table_result_t res;
    table_delete_table(tc, tname, &res);
    table_client_free(tc);
}
