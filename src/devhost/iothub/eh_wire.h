/* eh_wire.h — what the Functions host sends a custom handler for an Event Hubs trigger, and
 * the trigger's settings as function apps write them.
 *
 * Owns, as pure functions: the invocation's Data and Metadata for a batch of events
 * (shared/reference/custom-handler-protocol.md §2, iothub-and-local-host.md A3/B3), byte for
 * byte as the host's Newtonsoft serialisation produces them — arrays and strings double-encoded,
 * objects as objects, .NET date formats; the RetryContext; host.json's extensions.eventHubs
 * batching options. (function.json's retry policy, its delays and TimeSpan strings are the
 * host's: devhost/host/retry.h.)
 *
 * Wire form for cardinality "many":
 *   Data.<name>                 string: JSON array of the bodies (dataType string: UTF-8 text,
 *                               invalid bytes as U+FFFD; binary: base64; omitted: parsed JSON —
 *                               a body that is not JSON fails the binding, as in the host)
 *   Metadata.PartitionContext   object {FullyQualifiedNamespace, EventHubName, ConsumerGroup,
 *                               PartitionId, IsCheckpointingAfterInvocation}
 *   Metadata.PartitionKeyArray  string "[null,...]" (IoT Hub sets no partition key)
 *   Metadata.OffsetArray        string of an array of strings
 *   Metadata.SequenceNumberArray string of an array of integers
 *   Metadata.EnqueuedTimeUtcArray string of an array of .NET times without a zone
 *   Metadata.PropertiesArray    string of an array of objects (application properties)
 *   Metadata.SystemPropertiesArray string of an array of objects: x-opt-sequence-number,
 *                               x-opt-offset, x-opt-enqueued-time, iothub-connection-device-id,
 *                               iothub-connection-auth-method, iothub-connection-auth-generation-id,
 *                               iothub-enqueuedtime, iothub-message-source, message-id,
 *                               correlation-id, content-type, content-encoding, user-id (when set),
 *                               then SequenceNumber, Offset, PartitionKey, EnqueuedTimeUtc
 *   Metadata.sys                object {MethodName, UtcNow, RandGuid}
 *   Metadata.RetryContext       object, only when the function has a retry policy
 * Cardinality "one" uses the singular keys (Offset, SequenceNumber, EnqueuedTimeUtc, Properties,
 * SystemProperties; PartitionKey is null and so left out) with the host's single-value rules. */
#ifndef ENVIROMON_IOTHUB_EH_WIRE_H
#define ENVIROMON_IOTHUB_EH_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "devhost/iothub/partlog.h"

struct cJSON;

typedef enum { IOTHUB_EH_STRING = 0, IOTHUB_EH_BINARY, IOTHUB_EH_OBJECT } iothub_eh_datatype_t;

/* host.json "extensions.eventHubs" */
typedef struct iothub_eh_batching {
    int  max_batch;            /* maxEventBatchSize, default 100 */
    int  min_batch;            /* minEventBatchSize, default 1 */
    long max_wait_ms;          /* maxWaitTime, default 60 s (only with min_batch > 1) */
    int  checkpoint_every;     /* batchCheckpointFrequency, default 1 */
} iothub_eh_batching_t;

/* Where a batch comes from and how the function binds it. */
typedef struct iothub_eh_wire {
    const char          *function;        /* sys.MethodName */
    const char          *name;            /* the trigger binding's name: the Data key */
    int                  many;            /* cardinality many */
    iothub_eh_datatype_t data_type;
    const char          *ns;              /* PartitionContext.FullyQualifiedNamespace */
    const char          *event_hub;
    const char          *consumer_group;
    int                  partition;
} iothub_eh_wire_t;

/* Batching options from host.json's extensions.eventHubs (NULL: defaults). Unknown keys are
 * ignored (they configure the AMQP client the local hub does not have). Returns 0, or -1 with a
 * message naming the key. */
int iothub_eh_batching_from_json(const struct cJSON *event_hubs, iothub_eh_batching_t *out,
                                 char *err, size_t errlen);

/* Build Data and Metadata for recs[0..n) (n >= 1; n == 1 for cardinality one). The caller owns
 * *data and *metadata. Returns 0; 1 when the binding fails (dataType omitted and a body is not
 * JSON, err says which event: the invocation fails as in the host); -1 when out of memory or a
 * payload cannot be decoded (err set). */
int iothub_eh_build(const iothub_eh_wire_t *w, const iothub_plog_rec_t *recs, size_t n,
                    struct cJSON **data, struct cJSON **metadata, char *err, size_t errlen);

/* Add Metadata.RetryContext {RetryCount, MaxRetryCount, Exception, Instance, State}; exception
 * is the previous attempt's failure (NULL on the first attempt: Exception null). */
int iothub_eh_retry_context(struct cJSON *metadata, int retry_count, int max_retry_count,
                            const char *function, const char *exception);

/* Format epoch milliseconds as .NET's Newtonsoft does a DateTime ("yyyy-MM-ddTHH:mm:ss.FFFFFFF",
 * trailing fraction zeros dropped) with "Z" when utc. out holds at least 40 bytes. */
void iothub_net_time(int64_t ms, int utc, char *out);

#endif
