/* device_id.c — device id trust and validity rules (see device_id.h). */
#include "telemetry/device_id.h"

#include "azure/table.h"

#include <stdio.h>
#include <string.h>

int device_id_valid(const char *id, char *err, size_t errlen)
{
    char dummy[8];
    if (!err) { err = dummy; errlen = sizeof dummy; }
    if (!id || !*id) { snprintf(err, errlen, "device id is empty"); return 0; }
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if ((*p & 0xC0) != 0x80) chars++;   /* count UTF-8 lead bytes = characters */
    if (chars > DEVICE_ID_MAX_CHARS) {
        snprintf(err, errlen, "device id is %zu characters long (at most %d)", chars, DEVICE_ID_MAX_CHARS);
        return 0;
    }
    char why[128];
    if (!table_key_valid(id, why, sizeof why)) {
        snprintf(err, errlen, "device id is not a valid table key: %s", why);
        return 0;
    }
    return 1;
}

const char *device_id_choose(const char *system_id, const char *payload_id, int *spoofed)
{
    if (spoofed) *spoofed = 0;
    if (system_id) {
        if (payload_id && spoofed && strcmp(system_id, payload_id) != 0) *spoofed = 1;
        return system_id;
    }
    return payload_id;
}
