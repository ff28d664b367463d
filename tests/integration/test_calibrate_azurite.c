/* Integration tests: the calibration cache (telemetry/calibrate.h) against the real Azurite
 * started by tests/run.sh (TEST_STORAGE_CONNECTION). A small Calibration partition is loaded
 * whole, so a row added after the load is not seen until the TTL (proof that a lookup read
 * nothing); a partition over the bound is read row by row, so the same row is seen at once.
 * Each run uses a fresh table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "azure/table.h"
#include "test_azurite.h"
#include "telemetry/calibrate.h"

static table_client_t *tc;
static char tname[32];

static int setup(void **state)
{
    (void)state;
    tc = test_azurite_table("cal", tname, sizeof tname);
    return tc ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    test_azurite_drop(tc, tname);
    return 0;
}

/* A Calibration row: temperature = raw * slope + 0. */
static void put_row(const char *pk, const char *rk, double slope)
{
    cJSON *e = cJSON_CreateObject();
    assert_int_equal(table_set_string(e, "PartitionKey", pk), 0);
    assert_int_equal(table_set_string(e, "RowKey", rk), 0);
    assert_int_equal(table_set_double(e, "TemperatureSlope", slope), 0);
    assert_int_equal(table_set_double(e, "TemperatureYIntercept", 0.0), 0);
    table_result_t res;
    table_status_t st = table_insert_entity(tc, tname, e, NULL, &res);
    if (st != TABLE_OK) fail_msg("insert %s/%s: %s", pk, rk, res.message);
    cJSON_Delete(e);
}

/* n rows <prefix>0 .. <prefix>n-1 with slopes 1 .. n. */
static void put_rows(const char *pk, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char rk[16];
        snprintf(rk, sizeof rk, "%s%d", prefix, i);
        put_row(pk, rk, 1.0 + i);
    }
}

/* calib_lookup for id (RowKey = id); fails the test on a storage error. */
static tele_calib_t lookup(calib_cache_t *cc, table_client_t *client, const char *pk, const char *id)
{
    tele_calib_t c;
    char err[512] = "";
    int st = calib_lookup(cc, client, tname, pk, id, id, &c, err, sizeof err);
    if (st != 0) fail_msg("calib_lookup %s: status %d: %s", id, st, err);
    return c;
}

static void assert_slope(const tele_calib_t *c, double slope)
{
    assert_true(c->found);
    assert_true(c->temperature.present);
    assert_true(c->temperature.slope == slope);
    assert_false(c->humidity.present);
}

/* Wait (polling, at most 10 s) until device id's calibration is found. */
static int found_within_10s(calib_cache_t *cc, const char *pk, const char *id)
{
    long long until = tele_now_ms() + 10000;
    do {
        tele_calib_t c = lookup(cc, tc, pk, id);
        if (c.found) return 1;
        usleep(50 * 1000);
    } while (tele_now_ms() < until);
    return 0;
}

static void test_small_partition_loaded_whole(void **state)
{
    (void)state;
    const char *pk = "small";
    put_row(pk, "a", 2.0);
    put_row(pk, "b", 3.0);
    put_row("other", "late", 9.0);                 /* another partition: never part of ours */
    calib_cache_t *cc = calib_cache_new(1, 100, 3);
    assert_non_null(cc);
    tele_calib_t c = lookup(cc, tc, pk, "a");
    assert_slope(&c, 2.0);
    c = lookup(cc, tc, pk, "nocal");               /* not in the partition: not calibrated */
    assert_false(c.found);
    /* A row added after the load is not read: every lookup is answered from the snapshot. */
    put_row(pk, "late", 4.0);
    c = lookup(cc, tc, pk, "late");
    assert_false(c.found);
    c = lookup(cc, tc, pk, "b");
    assert_slope(&c, 3.0);
    /* Once the TTL (1 s) has passed the partition is loaded again and the row applies. */
    assert_true(found_within_10s(cc, pk, "late"));
    c = lookup(cc, tc, pk, "late");
    assert_slope(&c, 4.0);
    calib_cache_free(cc);
}

static void test_large_partition_row_by_row(void **state)
{
    (void)state;
    const char *pk = "large";
    put_rows(pk, "r", 4);                          /* one more than the bound */
    calib_cache_t *cc = calib_cache_new(300, 100, 3);
    assert_non_null(cc);
    tele_calib_t c = lookup(cc, tc, pk, "r3");
    assert_slope(&c, 4.0);
    /* read row by row: a row added now is found by the first lookup of its device */
    put_row(pk, "late", 7.0);
    c = lookup(cc, tc, pk, "late");
    assert_slope(&c, 7.0);
    /* and cached (positive and negative) for the TTL like any row-by-row answer */
    c = lookup(cc, tc, pk, "nocal");
    assert_false(c.found);
    put_row(pk, "nocal", 8.0);
    c = lookup(cc, tc, pk, "nocal");
    assert_false(c.found);
    calib_cache_free(cc);
}

static void test_partition_at_the_bound_is_whole(void **state)
{
    (void)state;
    const char *pk = "exact";
    put_rows(pk, "e", 3);                          /* exactly the bound */
    calib_cache_t *cc = calib_cache_new(300, 100, 3);
    assert_non_null(cc);
    tele_calib_t c = lookup(cc, tc, pk, "e2");
    assert_slope(&c, 3.0);
    put_row(pk, "late", 5.0);
    c = lookup(cc, tc, pk, "late");
    assert_false(c.found);                         /* snapshot: not read */
    calib_cache_free(cc);
}

static void test_no_table_is_no_calibration(void **state)
{
    (void)state;
    calib_cache_t *cc = calib_cache_new(300, 100, 3);
    tele_calib_t c;
    char err[512] = "";
    assert_int_equal(calib_lookup(cc, tc, "nosuchcalib", "p", "d", "d", &c, err, sizeof err), 0);
    assert_false(c.found);
    calib_cache_free(cc);
}

/* Storage unreachable: the lookup fails with a message naming the table, and nothing is
 * cached (a later lookup against a working client reads the partition). */
static void test_storage_failure_not_cached(void **state)
{
    (void)state;
    const char *pk = "down";
    put_row(pk, "d", 6.0);
    char err[512];
    table_options_t o = {.timeout_ms = 2000, .connect_timeout_ms = 1000, .retries = 0, .retry_base_ms = 10};
    table_client_t *dead = table_client_new(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2tra2tra2tra2tra2tr;"
        "TableEndpoint=http://127.0.0.1:1/devstoreaccount1;", &o, err, sizeof err);
    assert_non_null(dead);
    calib_cache_t *cc = calib_cache_new(300, 100, 3);
    tele_calib_t c;
    err[0] = '\0';
    assert_int_not_equal(calib_lookup(cc, dead, tname, pk, "d", "d", &c, err, sizeof err), 0);
    assert_non_null(strstr(err, tname));
    c = lookup(cc, tc, pk, "d");
    assert_slope(&c, 6.0);
    calib_cache_free(cc);
    table_client_free(dead);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_partition_loaded_whole),
        cmocka_unit_test(test_large_partition_row_by_row),
        cmocka_unit_test(test_partition_at_the_bound_is_whole),
        cmocka_unit_test(test_no_table_is_no_calibration),
        cmocka_unit_test(test_storage_failure_not_cached),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
