/* Unit tests: the local IoT Hub's pure parts — SAS tokens (vectors made by Microsoft's
 * azure-iot-common SharedAccessSignature.create and the C SDK's encoding), device ids, the
 * registry file, message records, and the util helpers they use (CRC-32C, base64, UTF-8). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devhost/iothub/message.h"
#include "devhost/iothub/registry.h"
#include "devhost/iothub/sas.h"
#include "util/base64.h"
#include "util/crc32c.h"
#include "util/utf8.h"

#include "test_tmpdir.h"

#define KEY_B64 "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="   /* "0123456789abcdef0123456789abcdef" */
#define HOST "enviromon.azure-devices.net"
#define SE 1700000000LL

/* Made with azure-iot-common: SharedAccessSignature.create(encodeUriComponentStrict(HOST +
 * "/devices/" + id), null, KEY_B64, 1700000000).toString() */
static const char *NODE_DEV1 =
    "SharedAccessSignature sr=enviromon.azure-devices.net%2Fdevices%2Fdev1&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1700000000";
static const char *NODE_ODD =
    "SharedAccessSignature sr=enviromon.azure-devices.net%2Fdevices%2Fsensor-7%2a%28x%29%21&sig=1iC9oHPcUjDet21PajB%2Bj8rpf%2FdGf4qYpdfvZ6NUHdE%3D&se=1700000000";
/* The same with keyName "device": a shared access policy token */
static const char *NODE_POLICY =
    "SharedAccessSignature sr=enviromon.azure-devices.net%2Fdevices%2Fdev1&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&skn=device&se=1700000000";
/* The C SDK's form (azure-c-shared-utility URL_Encode: lowercase hex, !()* kept; sastoken.c
 * always appends &skn=), computed independently with Python's hmac */
static const char *C_DEV1 =
    "SharedAccessSignature sr=enviromon.azure-devices.net%2fdevices%2fdev1&sig=cmubC7BYsNRsayfWB%2fe8W%2bYRXLoSrkSeLlakvaBWrT0%3d&se=1700000000&skn=";
static const char *C_ODD =
    "SharedAccessSignature sr=enviromon.azure-devices.net%2fdevices%2fsensor-7*(x)!&sig=zm7L40iZbyjQeC5EABowZYMHsj0B%2bZp2BzIzrKFMzOg%3d&se=1700000000&skn=";

static unsigned char g_key[64];
static size_t g_key_len;

static int setup_key(void **state)
{
    (void)state;
    long n = base64_decode(KEY_B64, strlen(KEY_B64), g_key);
    if (n != 32) return -1;
    g_key_len = (size_t)n;
    return 0;
}

static iothub_sas_status_t check(const char *tok, const char *path, time_t now, const unsigned char *key,
                                 size_t kl, char *err)
{
    iothub_sas_t t;
    iothub_sas_status_t st = iothub_sas_parse(tok, strlen(tok), &t, err, 256);
    if (st != IOTHUB_SAS_OK) return st;
    return iothub_sas_check(&t, HOST, path, key, kl, now, err, 256);
}

static void test_util_vectors(void **state)
{
    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
    char big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (char)(i * 7);
    uint32_t whole = crc32c(0, big, sizeof big);
    assert_int_equal(crc32c(crc32c(0, big, 333), big + 333, 667), whole);   /* unaligned split */

    char enc[64];
    unsigned char dec[64];
    assert_int_equal(base64_encode("foobar", 6, enc), 8);
    assert_string_equal(enc, "Zm9vYmFy");
    base64_encode("fo", 2, enc);
    assert_string_equal(enc, "Zm8=");
    assert_int_equal(base64_decode("Zm8=", 4, dec), 2);
    assert_memory_equal(dec, "fo", 2);
    assert_int_equal(base64_decode("Zm9=", 4, dec), -1);    /* non-zero unused bits */
    assert_int_equal(base64_decode("Zm8", 3, dec), -1);     /* not a multiple of 4 */
    assert_int_equal(base64_decode("Z=8=", 4, dec), -1);    /* padding in the middle */
    assert_int_equal(base64_decode("Zm-_", 4, dec), -1);    /* base64url alphabet */
    assert_int_equal(base64_decode("", 0, dec), 0);

    assert_int_equal(utf8_next("a", 1), 1);
    assert_int_equal(utf8_next("\xC3\xA9", 2), 2);
    assert_int_equal(utf8_next("\xE2\x82", 2), -2);          /* truncated: one replacement for both */
    assert_int_equal(utf8_next("\xE0\x80\x80", 3), -1);      /* overlong: the lead alone */
    assert_int_equal(utf8_next("\xFF", 1), -1);
    assert_int_equal(utf8_next("\xF0\x9F\x98\x80", 4), 4);
    assert_true(utf8_valid("h\xC3\xA9llo", 6));
    assert_false(utf8_valid("\xED\xA0\x80", 3));             /* surrogate */
}

static void test_sas_node_and_c_tokens(void **state)
{
    (void)state;
    char err[256];
    time_t now = (time_t)SE - 60;
    assert_int_equal(check(NODE_DEV1, "devices/dev1/messages/events", now, g_key, g_key_len, err), IOTHUB_SAS_OK);
    assert_int_equal(check(C_DEV1, "devices/dev1/messages/events", now, g_key, g_key_len, err), IOTHUB_SAS_OK);
    assert_int_equal(check(NODE_ODD, "devices/sensor-7*(x)!/messages/events", now, g_key, g_key_len, err), IOTHUB_SAS_OK);
    assert_int_equal(check(C_ODD, "devices/sensor-7*(x)!", now, g_key, g_key_len, err), IOTHUB_SAS_OK);
    /* the decoded resource */
    iothub_sas_t t;
    assert_int_equal(iothub_sas_parse(C_ODD, strlen(C_ODD), &t, err, sizeof err), IOTHUB_SAS_OK);
    assert_string_equal(t.resource, HOST "/devices/sensor-7*(x)!");
    assert_string_equal(t.sr, "enviromon.azure-devices.net%2fdevices%2fsensor-7*(x)!");
    assert_string_equal(t.skn, "");
    assert_int_equal(t.se, SE);
}

static void test_sas_refusals(void **state)
{
    (void)state;
    char err[256];
    time_t now = (time_t)SE - 60;
    /* another device's path */
    assert_int_equal(check(NODE_DEV1, "devices/dev2/messages/events", now, g_key, g_key_len, err), IOTHUB_SAS_WRONG_RESOURCE);
    assert_non_null(strstr(err, "does not cover"));
    /* a prefix that does not end at a segment: devices/dev covers devices/dev/... not devices/dev1 */
    char tok[512];
    assert_int_equal(iothub_sas_make("enviromon.azure-devices.net%2Fdevices%2Fdev", g_key, g_key_len, SE, NULL, tok, sizeof tok), 0);
    assert_int_equal(check(tok, "devices/dev1/messages/events", now, g_key, g_key_len, err), IOTHUB_SAS_WRONG_RESOURCE);
    assert_int_equal(check(tok, "devices/dev/messages/events", now, g_key, g_key_len, err), IOTHUB_SAS_OK);
    /* segment prefixes: the host alone, host/devices */
    assert_int_equal(iothub_sas_make(HOST, g_key, g_key_len, SE, NULL, tok, sizeof tok), 0);
    assert_int_equal(check(tok, "devices/dev1/messages/events", now, g_key, g_key_len, err), IOTHUB_SAS_OK);
    assert_int_equal(iothub_sas_make("ENVIROMON.azure-devices.net%2Fdevices%2F", g_key, g_key_len, SE, NULL, tok, sizeof tok), 0);
    assert_int_equal(check(tok, "devices/dev1", now, g_key, g_key_len, err), IOTHUB_SAS_OK);
    /* another hub */
    assert_int_equal(iothub_sas_make("other.azure-devices.net%2Fdevices%2Fdev1", g_key, g_key_len, SE, NULL, tok, sizeof tok), 0);
    assert_int_equal(check(tok, "devices/dev1", now, g_key, g_key_len, err), IOTHUB_SAS_WRONG_RESOURCE);
    /* expiry with 5 minutes of skew */
    assert_int_equal(check(NODE_DEV1, "devices/dev1", (time_t)SE + 299, g_key, g_key_len, err), IOTHUB_SAS_OK);
    assert_int_equal(check(NODE_DEV1, "devices/dev1", (time_t)SE + 301, g_key, g_key_len, err), IOTHUB_SAS_EXPIRED);
    assert_non_null(strstr(err, "expired"));
    /* wrong key */
    unsigned char other[32];
    memcpy(other, g_key, 32);
    other[0] ^= 1;
    assert_int_equal(check(NODE_DEV1, "devices/dev1", now, other, 32, err), IOTHUB_SAS_BAD_SIGNATURE);
    assert_null(strstr(err, "9lcH"));   /* never echoes the signature */
    /* a changed sr with the old signature */
    char forged[512];
    snprintf(forged, sizeof forged, "%s", NODE_DEV1);
    char *p = strstr(forged, "dev1&");
    p[3] = '2';
    assert_int_equal(check(forged, "devices/dev2", now, g_key, g_key_len, err), IOTHUB_SAS_BAD_SIGNATURE);
    /* an extended expiry with the old signature */
    snprintf(forged, sizeof forged, "%s", NODE_DEV1);
    p = strstr(forged, "se=17");
    p[3] = '8';
    assert_int_equal(check(forged, "devices/dev1", now, g_key, g_key_len, err), IOTHUB_SAS_BAD_SIGNATURE);
    /* shared access policy tokens */
    assert_int_equal(check(NODE_POLICY, "devices/dev1", now, g_key, g_key_len, err), IOTHUB_SAS_POLICY);
    assert_non_null(strstr(err, "device"));
}

static void test_sas_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "Bearer abc",
        "SharedAccessSignature",
        "SharedAccessSignature ",
        "SharedAccessSignaturesr=a&sig=b&se=1",
        "SharedAccessSignature sr=a&se=1",                       /* no sig */
        "SharedAccessSignature sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1",  /* no sr */
        "SharedAccessSignature sr=a&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D",   /* no se */
        "SharedAccessSignature sr=a&sr=a&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1",
        "SharedAccessSignature sr=a%2&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1",
        "SharedAccessSignature sr=a%00b&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1",
        "SharedAccessSignature sr=a&sig=abc&se=1",                /* not 32 bytes */
        "SharedAccessSignature sr=a&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=-1",
        "SharedAccessSignature sr=a&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1e9",
        "SharedAccessSignature sr=a&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=99999999999999999999",
        "SharedAccessSignature sr=a b&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1",
        "SharedAccessSignature sr=a&&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1",
        "SharedAccessSignature =a&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&se=1",
        NULL};
    for (int i = 0; bad[i]; i++) {
        iothub_sas_t t;
        char err[256] = "";
        if (iothub_sas_parse(bad[i], strlen(bad[i]), &t, err, sizeof err) != IOTHUB_SAS_MALFORMED)
            fail_msg("accepted malformed token #%d: %s", i, bad[i]);
        assert_true(err[0] != '\0');
    }
    /* too long */
    size_t n = IOTHUB_SAS_MAX_TOKEN + 10;
    char *huge = malloc(n + 1);
    memset(huge, 'a', n);
    memcpy(huge, "SharedAccessSignature sr=", 25);
    huge[n] = '\0';
    iothub_sas_t t;
    char err[256];
    assert_int_equal(iothub_sas_parse(huge, n, &t, err, sizeof err), IOTHUB_SAS_MALFORMED);
    free(huge);
    /* field order does not matter; the scheme word is case-insensitive; unknown fields ignored */
    const char *reordered =
        "sharedaccesssignature se=1700000000&x=1&sig=9lcHuIOwhdrz8WIrSodVWhtQPW9kM7hJULU5MTIYh9U%3D&sr=enviromon.azure-devices.net%2Fdevices%2Fdev1";
    assert_int_equal(check(reordered, "devices/dev1", (time_t)SE, g_key, g_key_len, err), IOTHUB_SAS_OK);
}

static void test_sas_make_matches_sdks(void **state)
{
    (void)state;
    char sr[256], tok[512];
    assert_true(iothub_sas_url_encode(HOST "/devices/sensor-7*(x)!", 1, sr, sizeof sr) > 0);
    assert_string_equal(sr, "enviromon.azure-devices.net%2Fdevices%2Fsensor-7%2a%28x%29%21");
    assert_int_equal(iothub_sas_make(sr, g_key, g_key_len, SE, NULL, tok, sizeof tok), 0);
    assert_string_equal(tok, NODE_ODD);
    assert_true(iothub_sas_url_encode(HOST "/devices/sensor-7*(x)!", 0, sr, sizeof sr) > 0);
    assert_string_equal(sr, "enviromon.azure-devices.net%2fdevices%2fsensor-7*(x)!");
    assert_int_equal(iothub_sas_url_encode("abc", 1, sr, 3), -1);   /* does not fit */
}

static void test_device_id_rule(void **state)
{
    (void)state;
    char err[256];
    assert_true(iothub_device_id_valid("dev-1", err, sizeof err));
    assert_true(iothub_device_id_valid("a-:.+%_#*?!(),=@;$'Z9", err, sizeof err));
    char id[130];
    memset(id, 'x', 128);
    id[128] = '\0';
    assert_true(iothub_device_id_valid(id, err, sizeof err));
    id[128] = 'x';
    id[129] = '\0';
    assert_false(iothub_device_id_valid(id, err, sizeof err));
    assert_non_null(strstr(err, "128"));
    assert_false(iothub_device_id_valid("", err, sizeof err));
    assert_false(iothub_device_id_valid("a/b", err, sizeof err));
    assert_non_null(strstr(err, "'/' at position 2"));
    assert_false(iothub_device_id_valid("a b", err, sizeof err));
    assert_false(iothub_device_id_valid("caf\xC3\xA9", err, sizeof err));
    assert_non_null(strstr(err, "0xc3"));
    assert_false(iothub_device_id_valid("a\"b", err, sizeof err));
    assert_false(iothub_device_id_valid("<script>", err, sizeof err));
}

static void test_registry_parse(void **state)
{
    (void)state;
    iothub_device_t *d;
    size_t n;
    char err[256];
    const char *ok = "{\"version\":1,\"devices\":[{\"deviceId\":\"b\",\"generationId\":\"2\",\"created\":\"x\","
                     "\"primaryKey\":\"" KEY_B64 "\",\"secondaryKey\":\"" KEY_B64 "\"},{\"deviceId\":\"a\",\"generationId\":\"1\","
                     "\"created\":\"x\",\"primaryKey\":\"" KEY_B64 "\",\"secondaryKey\":\"" KEY_B64 "\"}]}";
    assert_int_equal(iothub_registry_parse(ok, strlen(ok), &d, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(d[0].id, "a");   /* sorted */
    char *text = iothub_registry_format(d, n);
    iothub_device_t *d2;
    size_t n2;
    assert_int_equal(iothub_registry_parse(text, strlen(text), &d2, &n2, err, sizeof err), 0);
    assert_int_equal(n2, 2);
    assert_memory_equal(d, d2, 2 * sizeof *d);
    free(text);
    free(d);
    free(d2);
    assert_int_equal(iothub_registry_parse("  \n", 3, &d, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    static const char *bad[] = {
        "{", "[]", "{\"version\":2,\"devices\":[]}", "{\"version\":1}",
        "{\"version\":1,\"devices\":[1]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"a/b\",\"generationId\":\"1\",\"created\":\"x\",\"primaryKey\":\"" KEY_B64 "\",\"secondaryKey\":\"" KEY_B64 "\"}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"a\",\"generationId\":\"x1\",\"created\":\"x\",\"primaryKey\":\"" KEY_B64 "\",\"secondaryKey\":\"" KEY_B64 "\"}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"a\",\"generationId\":\"1\",\"created\":\"x\",\"primaryKey\":\"abc\",\"secondaryKey\":\"" KEY_B64 "\"}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"a\",\"generationId\":\"1\",\"created\":\"x\",\"primaryKey\":\"" KEY_B64 "\"}]}",
        "{\"version\":1,\"devices\":[{\"deviceId\":\"a\",\"generationId\":\"1\",\"created\":\"x\",\"primaryKey\":\"" KEY_B64 "\",\"secondaryKey\":\"" KEY_B64 "\"},"
        "{\"deviceId\":\"a\",\"generationId\":\"1\",\"created\":\"x\",\"primaryKey\":\"" KEY_B64 "\",\"secondaryKey\":\"" KEY_B64 "\"}]}",
        NULL};
    for (int i = 0; bad[i]; i++) {
        err[0] = '\0';
        if (iothub_registry_parse(bad[i], strlen(bad[i]), &d, &n, err, sizeof err) == 0)
            fail_msg("accepted bad registry #%d", i);
        assert_true(err[0] != '\0');
    }
    /* bytes that are not text at all */
    unsigned char junk[64];
    for (int i = 0; i < 64; i++) junk[i] = (unsigned char)(i * 37 + 11);
    assert_int_equal(iothub_registry_parse((const char *)junk, sizeof junk, &d, &n, err, sizeof err), -1);
}

static void test_registry_changes_and_live_view(void **state)
{
    (void)state;
    char tmpl[64];
    assert_int_equal(test_tmpdir(tmpl, sizeof tmpl, "iothub-reg"), 0);
    char dir[256], err[512];
    snprintf(dir, sizeof dir, "%s/iothub", tmpl);
    iothub_registry_t *live = iothub_registry_open(dir, err, sizeof err);   /* missing: empty */
    assert_non_null(live);
    iothub_device_t d, x;
    assert_int_equal(iothub_registry_lookup(live, "dev1", &x), 0);
    assert_int_equal(iothub_registry_add(dir, "dev1", &d, err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(strlen(d.primary), 44);
    assert_string_not_equal(d.primary, d.secondary);
    assert_int_equal(iothub_registry_add(dir, "dev1", &d, err, sizeof err), IOTHUB_REG_EXISTS);
    assert_int_equal(iothub_registry_add(dir, "bad id", &d, err, sizeof err), IOTHUB_REG_INVALID);
    /* the live view sees the change at once */
    assert_int_equal(iothub_registry_lookup(live, "dev1", &x), 1);
    assert_string_equal(x.primary, d.primary);
    assert_string_equal(x.generation_id, d.generation_id);
    /* a same-size change (a new key) is seen too */
    iothub_device_t r;
    assert_int_equal(iothub_registry_regenerate(dir, "dev1", 0, &r, err, sizeof err), IOTHUB_REG_OK);
    assert_string_not_equal(r.primary, d.primary);
    assert_string_equal(r.secondary, d.secondary);
    assert_int_equal(iothub_registry_lookup(live, "dev1", &x), 1);
    assert_string_equal(x.primary, r.primary);
    assert_int_equal(iothub_registry_regenerate(dir, "dev1", 1, &r, err, sizeof err), IOTHUB_REG_OK);
    assert_string_not_equal(r.secondary, d.secondary);
    assert_int_equal(iothub_registry_regenerate(dir, "nope", 0, &r, err, sizeof err), IOTHUB_REG_NOT_FOUND);
    /* the file is private */
    char path[300];
    snprintf(path, sizeof path, "%s/devices.json", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    /* a truncated lookup id never matches a prefix */
    char longid[200];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(iothub_registry_lookup(live, longid, &x), 0);
    /* a corrupt file keeps the last good view */
    FILE *f = fopen(path, "w");
    fputs("{corrupt", f);
    fclose(f);
    assert_int_equal(iothub_registry_lookup(live, "dev1", &x), 1);
    assert_int_equal(iothub_registry_add(dir, "dev2", &d, err, sizeof err), IOTHUB_REG_IO);
    assert_non_null(strstr(err, "corrupt"));
    unlink(path);
    assert_int_equal(iothub_registry_lookup(live, "dev1", &x), 0);   /* removed file: no devices */
    assert_int_equal(iothub_registry_add(dir, "dev2", &d, err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_registry_remove(dir, "dev2", err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_registry_lookup(live, "dev2", &x), 0);
    assert_int_equal(iothub_registry_remove(dir, "dev2", err, sizeof err), IOTHUB_REG_NOT_FOUND);
    iothub_registry_close(live);
    assert_int_equal(test_tmpdir_remove(tmpl), 0);
}

static void test_message_codec(void **state)
{
    (void)state;
    iothub_prop_t props[2] = {{"temperatureAlert", "true"}, {"empty", ""}};
    iothub_msg_t m = {"mid-1", "cid-1", "application/json", "utf-8", NULL, props, 2, "{\"t\":1}\0x", 9};
    iothub_stamp_t st = {"dev1", "638000000000000000", "sas", 1700000000123LL};
    assert_int_equal(iothub_msg_size(&m), 9 + 5 + 5 + 16 + 5 + 16 + 4 + 5);
    buf_t b = BUF_INIT;
    assert_int_equal(iothub_msg_encode(&m, &st, &b), 0);
    iothub_msg_view_t v;
    char err[160];
    assert_int_equal(iothub_msg_decode(b.data, b.len, &v, err, sizeof err), 0);
    assert_string_equal(v.stamp.device_id, "dev1");
    assert_string_equal(v.stamp.generation_id, "638000000000000000");
    assert_int_equal(v.stamp.received_ms, 1700000000123LL);
    assert_string_equal(v.msg.message_id, "mid-1");
    assert_string_equal(v.msg.content_encoding, "utf-8");
    assert_null(v.msg.user_id);
    assert_int_equal(v.msg.n_props, 2);
    assert_string_equal(v.msg.props[1].name, "empty");
    assert_string_equal(v.msg.props[1].value, "");
    assert_int_equal(v.msg.body_len, 9);
    assert_memory_equal(v.msg.body, "{\"t\":1}\0x", 9);   /* NUL bytes in a body survive */
    /* every truncation and a flipped version byte are refused, never read past the end */
    for (size_t cut = 0; cut < b.len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.data, cut);
        assert_int_equal(iothub_msg_decode(copy, cut, &v, err, sizeof err), -1);
        free(copy);
    }
    b.data[0] = 9;
    assert_int_equal(iothub_msg_decode(b.data, b.len, &v, err, sizeof err), -1);
    buf_free(&b);
    /* property text rule (HTTPS) */
    assert_true(iothub_prop_text_valid("a-Z_9.!#$%&'*+^`|~", 1));
    assert_false(iothub_prop_text_valid("", 1));
    assert_true(iothub_prop_text_valid("", 0));
    assert_false(iothub_prop_text_valid("a b", 0));
    assert_false(iothub_prop_text_valid("a\"b", 0));
    assert_false(iothub_prop_text_valid("\xC3\xA9", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_vectors),
        cmocka_unit_test(test_sas_node_and_c_tokens),
        cmocka_unit_test(test_sas_refusals),
        cmocka_unit_test(test_sas_malformed),
        cmocka_unit_test(test_sas_make_matches_sdks),
        cmocka_unit_test(test_device_id_rule),
        cmocka_unit_test(test_registry_parse),
        cmocka_unit_test(test_registry_changes_and_live_view),
        cmocka_unit_test(test_message_codec),
    };
    return cmocka_run_group_tests(tests, setup_key, NULL);
}
