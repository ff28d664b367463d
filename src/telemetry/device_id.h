/* device_id.h — which device an event belongs to, and which ids are acceptable.
 *
 * Owns the trust rule: IoT Hub's authenticated `iothub-connection-device-id` system property
 * wins; the payload's deviceId/DeviceId is used only when there is no system property (plain
 * Event Hubs). A payload claiming a different device than the authenticated one is a
 * spoofing attempt (reported to the caller for logging; the event stays under the
 * authenticated id). Acceptable ids: 1..128 characters, valid as a Table Storage RowKey
 * (table_key_valid: no '/', '\\', '#', '?', control characters or invalid UTF-8). */
#ifndef ENVIROMON_TELEMETRY_DEVICE_ID_H
#define ENVIROMON_TELEMETRY_DEVICE_ID_H

#include <stddef.h>

#define DEVICE_ID_MAX_CHARS 128

/* 1 when id is acceptable, else 0 with a reason in err (may be NULL). */
int device_id_valid(const char *id, char *err, size_t errlen);

/* Choose the id for one event: system_id (may be NULL) wins over payload_id (may be NULL).
 * *spoofed is set to 1 when both exist and differ. Returns the chosen id (one of the two
 * pointers) or NULL when neither exists. Validity is checked separately. */
const char *device_id_choose(const char *system_id, const char *payload_id, int *spoofed);

#endif
