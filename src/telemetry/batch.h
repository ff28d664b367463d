/* batch.h — decode one EventTrigger batch: event bodies plus per-event metadata.
 *
 * Owns the wire format (shared/reference/custom-handler-protocol.md §2). With
 * cardinality many and dataType string the host sends Data.events as a string holding a JSON
 * array of strings, each string an event body; Metadata.SystemPropertiesArray,
 * PropertiesArray, SequenceNumberArray and EnqueuedTimeUtcArray are strings holding arrays;
 * PartitionContext is an object. Already-decoded forms (arrays, objects, objects as events)
 * are accepted too. Each event is parsed, given a device id (device_id.h) and normalised
 * (normalise.h); events that cannot be used are marked rejected with a reason, never fatal.
 * An unusable body from an authenticated device (valid iothub-connection-device-id) is not
 * rejected but kept as that device's invalid reading (reading.invalid, counts in
 * InvalidCount); only events with no usable device id are rejected.
 *
 * The stream identity (idempotency key, conventions.md): a 16-hex-digit FNV-1a hash of the
 * lower-cased namespace, event hub name and the partition id from PartitionContext. Sequence
 * numbers are only comparable within one stream. */
#ifndef ENVIROMON_TELEMETRY_BATCH_H
#define ENVIROMON_TELEMETRY_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "telemetry/normalise.h"

struct cJSON;

#define TELE_TIME_LEN 29    /* "YYYY-MM-DDTHH:MM:SS.fffffffZ" + NUL */
/* Most events one invocation accepts. The host sends at most maxEventBatchSize (100 in
 * host.json; Event Hubs allows a few thousand), so a larger "batch" is not from the trigger;
 * refusing it keeps a hostile 8 MiB body of tiny events from costing gigabytes. */
#define TELE_MAX_EVENTS 100000

typedef struct tele_event {
    struct cJSON  *owned;           /* parsed body owned by the batch, or NULL */
    const struct cJSON *msg;        /* the telemetry object (NULL when rejected) */
    const char    *device_id;       /* chosen id (borrowed from the batch) or NULL */
    const char    *system_device_id;/* iothub-connection-device-id or NULL */
    int            spoofed;         /* payload claimed another device */
    int            has_seq;
    int64_t        seq;             /* sequence number within the stream */
    char           enqueued[TELE_TIME_LEN]; /* canonical UTC enqueued time or "" */
    int            rejected;        /* unusable event (no object, no/invalid device id) */
    char           reject_reason[192];
    tele_reading_t reading;         /* normalised raw reading (when msg != NULL) */
    int            invalid;         /* set by the caller: reading fails validation after calibration */
    int            next;            /* index of the device's next event, -1 at the end */
} tele_event_t;

typedef struct tele_batch {
    size_t         n;
    tele_event_t  *ev;
    char           stream[17];      /* stream identity hash (hex) */
    char           stream_desc[200];/* "namespace/eventhub/partition" for logs */
    int            seq_usable;      /* PartitionContext named the partition: sequence numbers count */
    struct cJSON  *keep;            /* decoded metadata kept alive for borrowed pointers */
} tele_batch_t;

/* Decode. events: Data.events in any of its forms (NULL = empty batch). metadata: the
 * invocation's Metadata object (may be NULL). Returns 0, or -1 only when out of memory or
 * when events is neither an array nor a string holding one nor a single object, or holds more
 * than TELE_MAX_EVENTS events (err says which). */
int  tele_batch_decode(tele_batch_t *b, const struct cJSON *events, const struct cJSON *metadata,
                       char *err, size_t errlen);
void tele_batch_free(tele_batch_t *b);

/* Normalise an ISO 8601 date-time to "YYYY-MM-DDTHH:MM:SS.fffffffZ" (UTC). No zone means
 * UTC (the host omits the Z); "+hh:mm"/"-hh:mm"/"Z" are honoured; fractions are cut or
 * padded to 7 digits. Returns 0, or -1 when in is not such a time. */
int  tele_time_normalise(const char *in, char out[TELE_TIME_LEN]);

/* Stream identity: 16 hex digits from namespace, event hub and partition id (any may be
 * NULL). */
void tele_stream_id(const char *ns, const char *hub, const char *partition, char out[17]);

/* Parse the text of a JSON array of integers (elements may be null) exactly as int64, into
 * vals/has (capacity cap). Returns the element count, or -1 when text is not such an array. */
long tele_parse_int64_array(const char *text, int64_t *vals, unsigned char *has, size_t cap);

#endif
