/* fuzz_d2c_batch.c — the IoT Hub HTTP batch body (Content-Type
 * application/vnd.microsoft.iothub.json: [{"body":"<base64>","properties":{...}},...]) as the
 * local hub parses it (iothub_d2c_batch_parse, src/devhost/iothub/d2c.c), and each message's
 * way into the partition log's record payload (iothub_msg_encode / iothub_msg_decode).
 *
 * Invariants: an accepted batch holds 1..500 messages; every application property name and
 * value is what IoT Hub allows over HTTPS and no name repeats (ASCII case ignored); each body is
 * the strict base64 decoding of its "body" string, which is therefore its only encoding; the
 * batch written back as JSON parses to the same messages; each message with the hub's stamp
 * encodes to a record payload that decodes to the same message. */
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <strings.h>

#include "devhost/iothub/d2c.h"
#include "devhost/iothub/message.h"
#include "util/base64.h"
#include "util/buf.h"

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const iothub_msg_t *a, const iothub_msg_t *b, size_t i)
{
    FUZZ_CHECK(same_str(a->message_id, b->message_id) && same_str(a->correlation_id, b->correlation_id) &&
                   same_str(a->content_type, b->content_type) && same_str(a->content_encoding, b->content_encoding) &&
                   same_str(a->user_id, b->user_id),
               "message %zu: system properties differ", i);
    FUZZ_CHECK(a->n_props == b->n_props, "message %zu: %zu properties, then %zu", i, a->n_props, b->n_props);
    for (size_t k = 0; k < a->n_props; k++)
        FUZZ_CHECK(strcmp(a->props[k].name, b->props[k].name) == 0 && strcmp(a->props[k].value, b->props[k].value) == 0,
                   "message %zu: property %zu differs", i, k);
    FUZZ_CHECK(a->body_len == b->body_len && (a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0),
               "message %zu: body differs", i);
}

static void add_sys(cJSON *props, const char *name, const char *v)
{
    if (v) cJSON_AddStringToObject(props, name, v);
}

/* The batch as a device SDK would write it. */
static char *write_back(const iothub_d2c_batch_t *b)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < b->n; i++) {
        const iothub_msg_t *m = &b->msgs[i];
        cJSON *o = cJSON_CreateObject(), *props = cJSON_CreateObject();
        char *enc = malloc(BASE64_ENCODED_LEN(m->body_len) + 1);
        if (!enc) abort();
        base64_encode(m->body, m->body_len, enc);
        cJSON_AddStringToObject(o, "body", enc);
        free(enc);
        add_sys(props, "iothub-messageid", m->message_id);
        add_sys(props, "iothub-correlationid", m->correlation_id);
        add_sys(props, "iothub-contenttype", m->content_type);
        add_sys(props, "iothub-contentencoding", m->content_encoding);
        add_sys(props, "iothub-userid", m->user_id);
        for (size_t k = 0; k < m->n_props; k++) {
            buf_t name = BUF_INIT;
            buf_printf(&name, "iothub-app-%s", m->props[k].name);
            if (name.oom) abort();
            cJSON_AddStringToObject(props, name.data, m->props[k].value);
            buf_free(&name);
        }
        cJSON_AddItemToObject(o, "properties", props);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return text;
}

static void check_record(const iothub_msg_t *m, size_t i)
{
    static iothub_msg_view_t v;
    iothub_stamp_t st = {"dev1", "638400000000000000", "sas", 1700000000123};
    buf_t p = BUF_INIT;
    FUZZ_CHECK(iothub_msg_encode(m, &st, &p) == 0, "message %zu does not encode", i);
    char err[256];
    FUZZ_CHECK(iothub_msg_decode(p.data, p.len, &v, err, sizeof err) == 0, "message %zu payload refused: %s", i, err);
    check_same(m, &v.msg, i);
    FUZZ_CHECK(strcmp(v.stamp.device_id, "dev1") == 0 && v.stamp.received_ms == st.received_ms, "stamp differs");
    buf_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = (char *)fuzz_memdup(data, size);
    iothub_d2c_batch_t b;
    char err[600] = "";
    int rc = iothub_d2c_batch_parse(body, size, &b, err, sizeof err);
    free(body);
    if (rc != 0) {
        FUZZ_CHECK(err[0], "refused without a reason");
        iothub_d2c_batch_free(&b);
        return 0;
    }
    FUZZ_CHECK(b.n >= 1 && b.n <= 500 && cJSON_IsArray(b.doc) && (size_t)cJSON_GetArraySize(b.doc) == b.n,
               "%zu messages", b.n);
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, b.doc) {
        const iothub_msg_t *m = &b.msgs[i];
        const char *text = cJSON_GetObjectItemCaseSensitive(e, "body")->valuestring;
        char *enc = malloc(BASE64_ENCODED_LEN(m->body_len) + 1);
        if (!enc) abort();
        base64_encode(m->body, m->body_len, enc);
        FUZZ_CHECK(strcmp(enc, text) == 0, "message %zu: body '%.40s' is not the one encoding of its bytes", i, text);
        free(enc);
        for (size_t k = 0; k < m->n_props; k++) {
            FUZZ_CHECK(iothub_prop_text_valid(m->props[k].name, 1) && iothub_prop_text_valid(m->props[k].value, 0),
                       "message %zu: property '%s' not allowed", i, m->props[k].name);
            for (size_t j = 0; j < k; j++)
                FUZZ_CHECK(strcasecmp(m->props[j].name, m->props[k].name) != 0, "message %zu: '%s' twice", i, m->props[k].name);
        }
        check_record(m, i);
        i++;
    }
    char *again = write_back(&b);
    if (again) {
        iothub_d2c_batch_t c;
        FUZZ_CHECK(iothub_d2c_batch_parse(again, strlen(again), &c, err, sizeof err) == 0, "written back, refused: %s", err);
        FUZZ_CHECK(c.n == b.n, "%zu messages back, %zu before", c.n, b.n);
        for (size_t k = 0; k < b.n; k++) check_same(&b.msgs[k], &c.msgs[k], k);
        iothub_d2c_batch_free(&c);
        free(again);
    }
    iothub_d2c_batch_free(&b);
    return 0;
}
