/* event_body.h — one event body, as it streams in → its normalised reading.
 *
 * Owns the verdict on a body. A JSON object is reduced to the members normalise reads (the
 * first occurrence of each); every other member is only checked for syntax, so a 256 KiB
 * array inside a reading costs nothing. A string whose content is JSON is unwrapped up to
 * twice (devices that JSON-encode their JSON, as the original accepted). Anything else is an
 * unusable body with a reason: "event body is not JSON", "event body is a JSON array,
 * expected an object". A member string holding U+0000, or longer than EVENT_MEMBER_MAX bytes
 * of JSON text, reaches normalise as its Raw marker (normalise.h), so it can never be cut
 * short into another value. The first TELE_RAW_KEEP bytes of the body are kept for the
 * quarantine. One per request; not thread-safe. */
#ifndef ENVIROMON_TELEMETRY_EVENT_BODY_H
#define ENVIROMON_TELEMETRY_EVENT_BODY_H

#include <stddef.h>

#include "telemetry/batch.h"
#include "telemetry/normalise.h"

/* JSON text kept per member value normalise reads; a longer string cannot be a valid geo,
 * messageId or device id anyway (each is at most a few hundred bytes). */
#define EVENT_MEMBER_MAX 65536

typedef struct event_body event_body_t;

event_body_t *event_body_new(void);
void event_body_free(event_body_t *eb);

/* Start a new body (forgets the previous one and its reading). */
void event_body_begin(event_body_t *eb);
/* The next bytes of the body's text. 0, or -1 when out of memory. */
int  event_body_data(event_body_t *eb, const char *p, size_t n);
/* The body is complete. Returns 1 with *r filled when it is a JSON object (r's strings stay
 * valid until the next event_body_begin); 0 when it is unusable, with the reason in why; -1
 * when out of memory. *id_kind (may be NULL) is set to the JSON kind ("a JSON number") of a
 * deviceId/DeviceId member that is there but neither a string nor null, else NULL. */
int  event_body_end(event_body_t *eb, tele_reading_t *r, char *why, size_t whylen, const char **id_kind);
/* The kept prefix of the body: *kept bytes (at most TELE_RAW_KEEP) of *total. */
const char *event_body_raw(const event_body_t *eb, size_t *kept, size_t *total);

/* "a JSON array", "a JSON number", ... for the first byte of a value's JSON text. */
const char *json_kind_name(char first);

#endif
