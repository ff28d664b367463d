/* fuzz_registry.c — the local IoT Hub's device registry file, devices.json
 * (iothub_registry_parse and iothub_registry_format: src/devhost/iothub/registry.c), which
 * `devhost device ...` and the running hub both read and which a user may edit by hand.
 *
 * Invariants: an accepted file yields devices sorted by id with unique ids, each id valid by
 * IoT Hub's rule, a non-empty all-digit generation id, and two keys that decode to 16..64
 * bytes; formatting the devices and parsing the text again gives the same devices; a refused
 * file gives no devices and a message that never contains a key from the file. */
#include "fuzz.h"

#include <cjson/cJSON.h>

#include "devhost/iothub/registry.h"

/* A key from the input (a "primaryKey"/"secondaryKey" string of a device) in the message? */
static void check_no_key_in(const char *err, const uint8_t *data, size_t size)
{
    cJSON *doc = cJSON_ParseWithLength((const char *)data, size);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "devices"), *e;
    cJSON_ArrayForEach(e, arr) {
        const char *const names[] = {"primaryKey", "secondaryKey"};
        for (int i = 0; i < 2; i++) {
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, names[i]);
            /* keys of 16 bytes or more (24+ base64 characters): shorter text could be a word of
             * the message itself */
            if (cJSON_IsString(k) && strlen(k->valuestring) >= 24)
                FUZZ_CHECK(!strstr(err, k->valuestring), "the error shows a key: %s", err);
        }
    }
    cJSON_Delete(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *bytes = (char *)fuzz_memdup(data, size);
    iothub_device_t *devs = NULL;
    size_t n = 99;
    char err[512] = "";
    int rc = iothub_registry_parse(bytes, size, &devs, &n, err, sizeof err);
    free(bytes);
    if (rc != 0) {
        FUZZ_CHECK(devs == NULL && n == 0 && err[0], "refused with devices or without a message");
        check_no_key_in(err, data, size);
        return 0;
    }
    FUZZ_CHECK(n == 0 || devs, "devices missing");
    for (size_t i = 0; i < n; i++) {
        const iothub_device_t *d = &devs[i];
        FUZZ_CHECK(iothub_device_id_valid(d->id, NULL, 0), "invalid id accepted");
        FUZZ_CHECK(i == 0 || strcmp(devs[i - 1].id, d->id) < 0, "ids not sorted and unique at %zu", i);
        FUZZ_CHECK(d->generation_id[0] && strspn(d->generation_id, "0123456789") == strlen(d->generation_id),
                   "generation id '%s'", d->generation_id);
        unsigned char raw[IOTHUB_KEY_RAW_MAX];
        long k1 = iothub_device_key_raw(d->primary, raw), k2 = iothub_device_key_raw(d->secondary, raw);
        FUZZ_CHECK(k1 >= 16 && k1 <= IOTHUB_KEY_RAW_MAX && k2 >= 16 && k2 <= IOTHUB_KEY_RAW_MAX, "key lengths %ld %ld",
                   k1, k2);
    }
    /* formatted and parsed again: the same devices */
    char *text = iothub_registry_format(devs, n);
    if (text) {
        iothub_device_t *again = NULL;
        size_t m = 0;
        FUZZ_CHECK(iothub_registry_parse(text, strlen(text), &again, &m, err, sizeof err) == 0,
                   "formatted registry refused: %s", err);
        FUZZ_CHECK(m == n, "%zu devices back, %zu before", m, n);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(strcmp(again[i].id, devs[i].id) == 0 && strcmp(again[i].created, devs[i].created) == 0 &&
                           strcmp(again[i].generation_id, devs[i].generation_id) == 0 &&
                           strcmp(again[i].primary, devs[i].primary) == 0 &&
                           strcmp(again[i].secondary, devs[i].secondary) == 0,
                       "device %zu differs after a round trip", i);
        free(again);
        free(text);
    }
    free(devs);
    return 0;
}
