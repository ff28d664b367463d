/* eventhub.h — the Event Hubs trigger of `devhost start`, reading the local IoT Hub.
 *
 * Owns the runtime of one eventHubTrigger function: one reader thread per partition
 * (partitions in parallel, each in order), batching as host.json's extensions.eventHubs says,
 * the invocation (through the host's callback) in the real host's wire form (eh_wire.h), the
 * function's retry policy with Metadata.RetryContext, and checkpoints (checkpoint.h) per
 * consumer group and partition, starting from the checkpoint, else from the start of the log.
 *
 * As the Functions host does: a failed invocation is retried per the function's `retry`
 * (maxRetryCount -1 = forever); the partition waits meanwhile and the others go on; the
 * checkpoint advances only when the retry policy completes — after a success, or after the
 * last retry failed (the batch is then skipped with an error line: Event Hubs has no
 * poison-message queue). Without a retry policy a failed batch is skipped at once. Stopping in
 * the middle of a retry, or an invocation that fails because devhost is stopping, writes no
 * checkpoint for that batch (the host writes none after cancellation), so it is delivered again
 * on the next start; batches already processed are checkpointed on stop.
 *
 * Plugging in: the host resolves the binding (`%Setting%` in eventHubName and consumerGroup),
 * parses host.json's batching options (eh_wire.h) and function.json's retry (retry.h), and
 * passes an invoke callback
 * that sends {"Data":data,"Metadata":metadata} to the handler, delivers the outputs (e.g.
 * signalRMessages) and answers success (0) or failure (-1 with a reason). Metadata arrives
 * complete (sys included); the callback may add to it but keeps no pointer after returning. */
#ifndef ENVIROMON_IOTHUB_EVENTHUB_H
#define ENVIROMON_IOTHUB_EVENTHUB_H

#include <stddef.h>
#include <stdint.h>

#include "devhost/host/retry.h"
#include "devhost/iothub/eh_wire.h"
#include "devhost/iothub/hub.h"
#include "util/buf.h"

struct cJSON;

/* Invoke the function once. Called from a partition's thread (up to one call per partition at
 * a time). Returns 0 on success, -1 on failure with a reason in err, or IOTHUB_EH_CANCELLED when
 * it failed because the host is stopping (the batch is then neither retried nor checkpointed,
 * and the next start delivers it again). */
#define IOTHUB_EH_CANCELLED (-2)
typedef int (*iothub_eh_invoke_fn)(void *arg, const char *function, struct cJSON *data,
                                   struct cJSON *metadata, char *err, size_t errlen);

typedef struct iothub_eh_opts {
    iothub_eh_wire_t     wire;       /* function, name, many, data_type, event_hub, consumer_group
                                      * (NULL: "$Default"), ns (NULL: iothub_eh_namespace);
                                      * partition is set per reader */
    iothub_eh_batching_t batching;   /* iothub_eh_batching_from_json */
    dh_retry_t           retry;      /* the function's policy (devhost/host/retry.h; fn->retry in
                                      * devhost start) */
    iothub_eh_invoke_fn  invoke;
    void                *invoke_arg;
    int                  poll_ms;    /* reader wake-up period (stop latency), 0 = 200 */
    size_t               max_batch_bytes; /* payload bytes per batch (at least one event), 0 = 2 MiB:
                                      * keeps a batch of 256 KiB messages within a handler's body limit */
} iothub_eh_opts_t;

typedef struct iothub_eh_partition_stats {
    int64_t  position;       /* next sequence number to deliver */
    int64_t  end;            /* one past the last durable event */
    int64_t  lag;            /* end - position */
    uint64_t delivered;      /* events in successful invocations */
    uint64_t retries;
    uint64_t failed;         /* events skipped after the retry policy gave up */
    int      retrying;       /* the partition is waiting to retry a batch */
} iothub_eh_partition_stats_t;

typedef struct iothub_eh_stats {
    int      partitions;
    uint64_t invocations, delivered, retries, failed;
    iothub_eh_partition_stats_t p[IOTHUB_MAX_PARTITIONS];
} iothub_eh_stats_t;

typedef struct iothub_eh iothub_eh_t;

/* The FullyQualifiedNamespace the local hub reports in PartitionContext:
 * "{hub}-{instance}.localhost". It changes when the partition logs are created anew (their
 * sequence numbers restart), so a consumer that skips replays by (namespace, event hub,
 * partition, sequence number) never mistakes a new hub's events for old ones. */
void iothub_eh_namespace(iothub_t *h, char *out, size_t outlen);

/* Start the readers. Fails when another trigger of this hub already reads the consumer group
 * (two functions on one group would each miss events; give each its own consumerGroup). */
iothub_eh_t *iothub_eh_start(iothub_t *h, const iothub_eh_opts_t *o, char *err, size_t errlen);

/* Stop the readers (waits for in-flight invocations to return) and checkpoint what was
 * processed. */
void iothub_eh_stop(iothub_eh_t *t);

void iothub_eh_stats(iothub_eh_t *t, iothub_eh_stats_t *out);

/* The local IoT Hub's part of devhost's 10 s summary line, e.g.
 * "received=1200 delivered=1180 retries=2 failed=0 lag=0,20,0,0" (received counts messages
 * made durable since start; the others sum over the triggers; lag is per partition, the
 * largest over the triggers). */
void iothub_summary(iothub_t *h, iothub_eh_t *const *triggers, size_t n, buf_t *out);

#endif
