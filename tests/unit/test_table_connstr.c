/* Unit tests: storage connection strings and Shared Key signing (table-storage.md §1, §2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "azure/table.h"
#include "azure/table_internal.h"

#define DEV_KEY "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
/* a made-up 32-byte key */
#define KEY32 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

static void test_dev_storage(void **state)
{
    (void)state;
    storage_account_t a;
    char err[256];
    assert_int_equal(storage_account_parse("UseDevelopmentStorage=true", &a, err, sizeof(err)), 0);
    assert_string_equal(a.account_name, "devstoreaccount1");
    assert_string_equal(a.table_endpoint, "http://127.0.0.1:10002/devstoreaccount1");
    assert_int_equal(a.key_len, 64);
    assert_null(a.sas);
    assert_int_equal(a.is_cosmos, 0);
    storage_account_free(&a);

    /* case-insensitive keys and value, trailing ';', whitespace */
    assert_int_equal(storage_account_parse(" usedevelopmentstorage = TRUE ;", &a, err, sizeof(err)), 0);
    assert_string_equal(a.table_endpoint, "http://127.0.0.1:10002/devstoreaccount1");
    storage_account_free(&a);

    assert_int_equal(storage_account_parse("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://myproxy:8080/x",
                                           &a, err, sizeof(err)), 0);
    assert_string_equal(a.table_endpoint, "http://myproxy:10002/devstoreaccount1");
    storage_account_free(&a);

    assert_int_equal(storage_account_parse("UseDevelopmentStorage=false", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "UseDevelopmentStorage"));
}

static void test_account_key_forms(void **state)
{
    (void)state;
    storage_account_t a;
    char err[256];
    /* EndpointSuffix + default protocol; the key's "==" must survive (split on first '=') */
    assert_int_equal(storage_account_parse("DefaultEndpointsProtocol=https;AccountName=Acct1;AccountKey=" DEV_KEY
                                           ";EndpointSuffix=core.chinacloudapi.cn", &a, err, sizeof(err)), 0);
    assert_string_equal(a.account_name, "Acct1");
    assert_string_equal(a.table_endpoint, "https://Acct1.table.core.chinacloudapi.cn");
    assert_int_equal(a.key_len, 64);
    storage_account_free(&a);

    assert_int_equal(storage_account_parse("AccountName=acct;AccountKey=" KEY32, &a, err, sizeof(err)), 0);
    assert_string_equal(a.table_endpoint, "https://acct.table.core.windows.net");
    assert_int_equal(a.key_len, 32);
    assert_int_equal(a.key[31], 31);
    storage_account_free(&a);

    /* explicit TableEndpoint, trailing slash removed, http kept */
    assert_int_equal(storage_account_parse("accountname=devstoreaccount1;ACCOUNTKEY=" DEV_KEY
                                           ";tableendpoint=http://127.0.0.1:5555/devstoreaccount1/;", &a, err, sizeof(err)), 0);
    assert_string_equal(a.table_endpoint, "http://127.0.0.1:5555/devstoreaccount1");
    storage_account_free(&a);

    /* Cosmos DB Table API */
    assert_int_equal(storage_account_parse("DefaultEndpointsProtocol=https;AccountName=cos;AccountKey=" KEY32
                                           ";TableEndpoint=https://cos.table.cosmos.azure.com:443/;", &a, err, sizeof(err)), 0);
    assert_int_equal(a.is_cosmos, 1);
    assert_string_equal(a.table_endpoint, "https://cos.table.cosmos.azure.com:443");
    storage_account_free(&a);
    assert_int_equal(storage_account_parse("AccountName=cos;AccountKey=" KEY32
                                           ";TableEndpoint=https://cos.table.cosmosdb.azure.com", &a, err, sizeof(err)), 0);
    assert_int_equal(a.is_cosmos, 1);
    storage_account_free(&a);
}

static void test_sas(void **state)
{
    (void)state;
    storage_account_t a;
    char err[256];
    assert_int_equal(storage_account_parse("TableEndpoint=https://acct.table.core.windows.net;"
                                           "SharedAccessSignature=?sv=2019-02-02&tn=t&sig=abc%3D", &a, err, sizeof(err)), 0);
    assert_null(a.account_name);
    assert_null(a.key);
    assert_string_equal(a.sas, "sv=2019-02-02&tn=t&sig=abc%3D");
    assert_string_equal(a.table_endpoint, "https://acct.table.core.windows.net");
    storage_account_free(&a);

    /* SAS without an endpoint or account */
    assert_int_equal(storage_account_parse("SharedAccessSignature=sv=1&sig=SECRETSIG", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "TableEndpoint"));
    assert_null(strstr(err, "SECRETSIG"));
}

static void test_errors_are_actionable_and_secret_free(void **state)
{
    (void)state;
    storage_account_t a;
    char err[256];
    assert_int_equal(storage_account_parse("", &a, err, sizeof(err)), -1);
    assert_int_equal(storage_account_parse(NULL, &a, err, sizeof(err)), -1);
    assert_int_equal(storage_account_parse("AccountName=acct", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "AccountKey"));
    assert_int_equal(storage_account_parse("AccountKey=" KEY32, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "AccountName"));
    assert_null(strstr(err, KEY32));
    assert_int_equal(storage_account_parse("AccountName=acct;AccountKey=not*base64!!", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "base64"));
    assert_null(strstr(err, "not*base64"));
    assert_int_equal(storage_account_parse("AccountName=acct;garbage;AccountKey=" KEY32, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "segment 2"));
    assert_int_equal(storage_account_parse("AccountName=a;AccountName=b;AccountKey=" KEY32, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(storage_account_parse("AccountName=acct;AccountKey=" KEY32 ";TableEndpoint=ftp://x", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "TableEndpoint"));
    assert_int_equal(storage_account_parse("AccountName=acct;AccountKey=" KEY32 ";DefaultEndpointsProtocol=gopher", &a, err, sizeof(err)), -1);
    assert_int_equal(storage_account_parse("AccountName=ac/ct;AccountKey=" KEY32, &a, err, sizeof(err)), -1);
    /* client creation reports the same message */
    assert_null(table_client_new("AccountName=acct", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "AccountKey"));
}

static void sign_with_dev_key(const char *sts, char *out)
{
    size_t n;
    unsigned char *k = table_b64_decode(DEV_KEY, strlen(DEV_KEY), &n);
    assert_non_null(k);
    assert_int_equal(n, 64);
    assert_int_equal(table_sign(k, n, sts, out, 64), 0);
    free(k);
}

static void test_signing_vectors(void **state)
{
    (void)state;
    char sig[64];
    sign_with_dev_key("GET\n\n\nMon, 01 Jan 2024 00:00:00 GMT\n/devstoreaccount1/devstoreaccount1/devices(PartitionKey='dev1',RowKey='state')", sig);
    assert_string_equal(sig, "vsOuto6TYT6qQa31qTM/gdPrMkRIPSU1PEVhHzA3T2M=");
    sign_with_dev_key("MERGE\n\napplication/json\nMon, 01 Jan 2024 00:00:00 GMT\n/devstoreaccount1/devstoreaccount1/devices(PartitionKey='dev1',RowKey='state')", sig);
    assert_string_equal(sig, "V+H4fb7YU60C1zdqRq8MugqrnogBFm9L2tWhZ1hxV+Y=");

    /* the same via the string-to-sign builder */
    buf_t b = BUF_INIT;
    assert_int_equal(table_string_to_sign(&b, "MERGE", "application/json", "Mon, 01 Jan 2024 00:00:00 GMT",
                                          "/devstoreaccount1/devstoreaccount1/devices(PartitionKey='dev1',RowKey='state')"), 0);
    sign_with_dev_key(buf_str(&b), sig);
    assert_string_equal(sig, "V+H4fb7YU60C1zdqRq8MugqrnogBFm9L2tWhZ1hxV+Y=");
    buf_free(&b);

    size_t n;
    unsigned char *k = table_b64_decode(DEV_KEY, strlen(DEV_KEY), &n);
    assert_int_equal(table_sign_lite(k, n, "Mon, 01 Jan 2024 00:00:00 GMT", "/devstoreaccount1/devstoreaccount1/Tables",
                                     sig, sizeof(sig)), 0);
    assert_string_equal(sig, "13UOPPE/P1+LLsRFYJCHphuPCEQ21EO/4WbbW+OXG4U=");
    /* too-small output buffer and missing key are errors, not overflows */
    assert_int_equal(table_sign(k, n, "x", sig, 44), -1);
    assert_int_equal(table_sign(NULL, 0, "x", sig, sizeof(sig)), -1);
    free(k);
}

static void test_base64_and_date(void **state)
{
    (void)state;
    size_t n;
    unsigned char *p = table_b64_decode("aGk=", 4, &n);
    assert_non_null(p);
    assert_int_equal(n, 2);
    assert_memory_equal(p, "hi", 2);
    free(p);
    assert_null(table_b64_decode("aGk", 3, &n));
    assert_null(table_b64_decode("a=k=", 4, &n));
    assert_null(table_b64_decode("aG\n=", 4, &n));
    char d[40];
    table_rfc1123_now(d, sizeof(d));
    assert_int_equal(strlen(d), 29);
    assert_string_equal(d + 25, " GMT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dev_storage),
        cmocka_unit_test(test_account_key_forms),
        cmocka_unit_test(test_sas),
        cmocka_unit_test(test_errors_are_actionable_and_secret_free),
        cmocka_unit_test(test_signing_vectors),
        cmocka_unit_test(test_base64_and_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
