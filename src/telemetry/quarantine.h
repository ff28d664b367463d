/* quarantine.h — the PoisonEvents table: events EventTrigger can never apply, kept with the
 * reason instead of failing the batch (a failed batch is retried for ever and stalls its
 * partition).
 *
 * Owns the row layout (docs/event-trigger.md): PartitionKey = the PartitionKey setting (like
 * DeviceState and Calibration), RowKey = "<stream>-<sequence number, 20 digits>", or
 * "<stream>-x<hash of the body, device and enqueued time>" for an event without a sequence
 * number; columns Stream ("namespace/eventhub/partition"), SequenceNumber (Int64), DeviceId,
 * Reason, EnqueuedTime (DateTime), QuarantinedAt (DateTime), InvocationId, Raw (the body as
 * received, its first TELE_RAW_KEEP bytes; base64 with RawEncoding = "base64" when it is not
 * plain UTF-8 text), RawBytes (Int64, the body's full size), RawTruncated.
 *
 * Idempotent: the key is the event's, so a replayed event finds its row already there
 * (Q_ALREADY) and is neither stored nor counted twice. Rows go as $batch inserts of up to 100;
 * a batch that fails is retried row by row. A row the service refuses for itself (4xx) is
 * retried without its Raw and then given up (Q_DROPPED, for the log), never failing the
 * batch; only transient failures are returned. */
#ifndef ENVIROMON_TELEMETRY_QUARANTINE_H
#define ENVIROMON_TELEMETRY_QUARANTINE_H

#include <stddef.h>

#include "azure/table.h"
#include "telemetry/batch.h"

enum { Q_PENDING, Q_STORED, Q_ALREADY, Q_DROPPED };

typedef struct quarantine_item {
    const tele_event_t *ev;
    const char         *reason;
    const char         *device_id;   /* the device it was for, when known (may be NULL) */
    int                 outcome;     /* out: Q_STORED, Q_ALREADY, Q_DROPPED */
} quarantine_item_t;

typedef struct quarantine_ctx {
    table_client_t *tables;
    const char     *table;           /* PoisonEventsTable */
    const char     *partition_key;   /* the PartitionKey setting */
    const char     *invocation_id;
    const char     *now_utc;         /* QuarantinedAt, "YYYY-MM-DDTHH:MM:SS.fffffffZ" */
} quarantine_ctx_t;

/* Store items (all of batch b). TABLE_OK when each one is Q_STORED, Q_ALREADY or Q_DROPPED;
 * otherwise the transient failure (UNAVAILABLE, AUTH, NOMEM, PROTOCOL, or NOT_FOUND when the
 * table is gone) with res filled, and the items not done yet stay Q_PENDING. */
table_status_t quarantine_store(const quarantine_ctx_t *q, const tele_batch_t *b, quarantine_item_t *items,
                                size_t n, table_result_t *res);

/* The RowKey of event e of batch b into rk (at least 40 bytes). */
void quarantine_row_key(const tele_batch_t *b, const tele_event_t *e, char *rk, size_t cap);

/* The row for one item (a new cJSON object, NULL when out of memory); with_raw = 0 leaves the
 * body out. */
struct cJSON *quarantine_row(const quarantine_ctx_t *q, const tele_batch_t *b, const quarantine_item_t *it,
                             int with_raw);

#endif
