/* device_view.h — a DeviceState table row → the camelCase device object the dashboard sees.
 *
 * One place for the mapping, shared by GetDeviceState (the snapshot) and EventTrigger (the
 * pushed newMessage), so both always send the same shape (shared/conventions.md, "Device
 * state and the pushed message"):
 *   DeviceId (else the device id its RowKey encodes) → deviceId     Celsius → temperature    Humidity → humidity
 *   hPa → pressure    Light → light    Geo → geo    Count → count    InvalidCount → invalidCount
 *   LastSeen → lastSeen (ISO 8601 UTC, "...Z")    Id → messageId
 * Every key is always present; a column the row lacks (or cannot be read as its type) is
 * JSON null, never a made-up zero. */
#ifndef ENVIROMON_TELEMETRY_DEVICE_VIEW_H
#define ENVIROMON_TELEMETRY_DEVICE_VIEW_H

#include <stddef.h>

struct cJSON;

/* Build the device object from a row in the Table service's JSON form (type annotations
 * tolerated, "odata.*" metadata ignored). Returns a new object the caller deletes, or NULL
 * when row is not an object, has neither DeviceId nor RowKey, or memory ran out. */
struct cJSON *device_view_from_row(const struct cJSON *row);

/* Normalise a Table Storage DateTime ("2024-05-01T10:00:00.1234567Z", "...+00:00") to
 * ISO 8601 UTC with at most millisecond precision ("2024-05-01T10:00:00.123Z"). Returns 0,
 * or -1 when text is not such a timestamp or out is too small (needs 25 bytes). */
int device_view_iso8601(const char *text, char *out, size_t outlen);

#endif
