/* device_id.h — which device an event belongs to, which ids are acceptable, and the table
 * key a device's rows are stored under.
 *
 * Owns the trust rule: IoT Hub's authenticated `iothub-connection-device-id` system property
 * wins; the payload's deviceId/DeviceId is used only when there is no system property (plain
 * Event Hubs). A payload claiming a different device than the authenticated one is a
 * spoofing attempt (reported to the caller for logging; the event stays under the
 * authenticated id). Acceptable ids: 1..128 characters of valid UTF-8 without U+0000 — every
 * id IoT Hub allows (ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ ') and
 * anything a plain Event Hubs payload may claim.
 *
 * RowKey encoding (DeviceState and Calibration rows; docs/event-trigger.md): Table keys forbid
 * '/', '\\', '#', '?' and U+0000-U+001F, U+007F-U+009F, and Azurite's $batch parser corrupts
 * keys holding U+2028/U+2029. An id containing none of those and not starting with '~' is
 * its own RowKey, so every row written before keeps its key. Any other id is stored as '~'
 * followed by the id with each of those characters, and '~' itself, written as "~HH" (two
 * upper-case hex digits of the code point, U+0001..U+00FF) or "~L" (U+2028) / "~P" (U+2029).
 * Plain keys never start with '~' and encoded ones always do, and inside an encoded key every
 * '~' starts an escape, so the mapping is one-to-one; '%' is left alone because IoT Hub ids
 * use it. The real id is kept in the DeviceId column. */
#ifndef ENVIROMON_TELEMETRY_DEVICE_ID_H
#define ENVIROMON_TELEMETRY_DEVICE_ID_H

#include <stddef.h>

#define DEVICE_ID_MAX_CHARS 128
/* bytes for any encoded RowKey incl. NUL: '~' + 128 characters of at most 4 bytes each
 * (an escape is never longer than the character it replaces takes in a 4-byte slot) */
#define DEVICE_ROW_KEY_MAX (2 + 4 * DEVICE_ID_MAX_CHARS)

/* 1 when id is acceptable, else 0 with a reason in err (may be NULL). */
int device_id_valid(const char *id, char *err, size_t errlen);

/* Choose the id for one event: system_id (may be NULL) wins over payload_id (may be NULL).
 * *spoofed is set to 1 when both exist and differ. Returns the chosen id (one of the two
 * pointers) or NULL when neither exists. Validity is checked separately. */
const char *device_id_choose(const char *system_id, const char *payload_id, int *spoofed);

/* The RowKey of a valid device id into out (cap bytes, DEVICE_ROW_KEY_MAX always enough).
 * Returns its length, or -1 when out is too small. */
int device_row_key(const char *id, char *out, size_t cap);

/* The device id a RowKey stands for, into out. Returns its length, or -1 when rk is not a key
 * device_row_key produces (a malformed or non-canonical escape) or out is too small. */
int device_id_from_row_key(const char *rk, char *out, size_t cap);

#endif
