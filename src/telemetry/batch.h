/* batch.h — decode one EventTrigger batch, as it streams in: event bodies plus per-event
 * metadata.
 *
 * Owns the wire format (shared/reference/custom-handler-protocol.md §2). With cardinality
 * many and dataType string the host sends Data.events as a string holding a JSON array of
 * strings, each an event body; Metadata.SystemPropertiesArray, SequenceNumberArray and
 * EnqueuedTimeUtcArray are strings holding arrays; PartitionContext is an object. Already
 * decoded forms (arrays, objects, objects as events) are accepted too.
 *
 * The request body is read as it arrives (util/jstream.h): one event is parsed, normalised
 * (normalise.h) and reduced to a compact record before the next is read, so the memory a
 * batch costs is a few hundred bytes per event plus at most TELE_RAW_KEEP bytes of each
 * body (kept for the quarantine; TELE_RAW_BUDGET for the whole batch), whatever the size of
 * the body; the host's largest batch
 * under our host.json is about 176 MiB on the wire (docs/event-trigger.md). Only the member
 * values normalise reads are looked at (a 256 KiB array inside an event costs nothing), and a
 * string holding U+0000 is never cut short: a NUL in a device id, payload deviceId, geo or
 * messageId makes the event invalid.
 *
 * Each event gets a device id (device_id.h). An unusable body from an authenticated device
 * (valid iothub-connection-device-id) is not rejected but kept as that device's invalid
 * reading (reading.invalid, counts in InvalidCount); only events with no usable device id
 * are rejected (the caller quarantines them).
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
/* Most events one invocation accepts. The host sends at most host.json's maxEventBatchSize
 * (100), so a larger "batch" is not from the trigger; the bound keeps the per-event records
 * of a hostile body of tiny events to a few MiB. */
#define TELE_MAX_EVENTS 10000
/* Bytes of each event body kept for the PoisonEvents table, and of all of a batch's (a host
 * batch of 100 events keeps at most 1.6 MiB; beyond the budget bodies are kept truncated). */
#define TELE_RAW_KEEP 16384
#define TELE_RAW_BUDGET (8u * 1024u * 1024u)

typedef struct tele_event {
    const char    *device_id;       /* chosen id (batch memory) or NULL */
    const char    *system_device_id;/* iothub-connection-device-id or NULL */
    int            spoofed;         /* payload claimed another device */
    int            has_seq;
    int64_t        seq;             /* sequence number within the stream */
    char           enqueued[TELE_TIME_LEN]; /* canonical UTC enqueued time or "" */
    int            rejected;        /* no usable device id: quarantined by the caller */
    const char    *reject_reason;   /* why ("" when not rejected) */
    tele_reading_t reading;         /* normalised raw reading; its strings live in the batch */
    int            invalid;         /* set by the caller: reading fails validation after calibration */
    int            next;            /* index of the device's next event, -1 at the end */
    const char    *raw;             /* the body as received: its first raw_len bytes */
    size_t         raw_len, raw_total;
} tele_event_t;

typedef struct tele_batch {
    size_t         n;
    tele_event_t  *ev;
    char           stream[17];      /* stream identity hash (hex) */
    char           stream_desc[200];/* "namespace/eventhub/partition" for logs */
    int            seq_usable;      /* PartitionContext named the partition: sequence numbers count */
    long           retry_count;     /* Metadata.RetryContext.RetryCount, -1 when absent */
    struct tele_arena *arena;       /* the strings the events point to */
} tele_batch_t;

/* ---- streaming ---- */
typedef struct tele_decoder tele_decoder_t;

/* A decoder for one request body. NULL when out of memory. */
tele_decoder_t *tele_decoder_new(void);
void tele_decoder_free(tele_decoder_t *d);
/* Feed the next bytes of the body. 0, or -1 when the body cannot be a batch (malformed JSON,
 * not an envelope, too many events, out of memory): see tele_decoder_error. */
int  tele_decoder_feed(tele_decoder_t *d, const char *p, size_t n);
/* The body is complete: fill *b (tele_batch_free it in every case). 0 or -1 (error). */
int  tele_decoder_finish(tele_decoder_t *d, tele_batch_t *b);
/* Why feed/finish failed; *oom set when it was memory (a transient failure). */
const char *tele_decoder_error(const tele_decoder_t *d, int *oom);

/* Decode from values already parsed (tests, tools): events is Data.events in any of its
 * forms (NULL = empty batch), metadata the invocation's Metadata (may be NULL). Returns 0, or
 * -1 with a message in err (events neither an array nor a string holding one nor a single
 * object, more than TELE_MAX_EVENTS events, out of memory). */
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

/* A sequence number from the text of a JSON number: an integer literal exactly (int64), or a
 * number whose value is an integer in int64 range. 1 and *out, else 0. */
int  tele_seq_from_text(const char *text, int64_t *out);

/* Parse the text of a JSON array of integers (elements may be null) exactly as int64, into
 * vals/has (capacity cap). Returns the element count, or -1 when text is not such an array. */
long tele_parse_int64_array(const char *text, int64_t *vals, unsigned char *has, size_t cap);

#endif
