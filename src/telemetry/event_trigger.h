/* event_trigger.h — the EventTrigger function: IoT Hub telemetry batches → calibrated,
 * validated DeviceState rows (exactly-once effect) and one SignalR newMessage per changed
 * device.
 *
 * Per batch: decode (batch.h) → group events by device → per device, in parallel (bounded by
 * DeviceWriteConcurrency): calibration (calibrate.h, cached) and the current row (ETag cache,
 * else a read) → validate (validate.h) → fold (device_state.h) → write: all changed devices as
 * $batch entity-group transactions (one PartitionKey, up to 100 rows each), conditional on
 * each row's ETag; a conflicting device falls back to its own read-modify-write loop with
 * full-jitter backoff (backoff.h) up to OccMaxAttempts. Storage unavailable or attempts
 * exhausted → the invocation fails with 503 so the host's retry policy re-delivers the batch;
 * devices already written are then skipped by sequence number (Stream + LastSeq columns).
 * A replayed batch changes nothing and pushes nothing (no newMessage for an unchanged row).
 * Events without a sequence number (not from the Event Hubs trigger), and every event of a
 * batch whose PartitionContext names no partition (sequence numbers restart per partition, so
 * they could not be compared), cannot be recognised as replays and are always applied. An accepted event without an enqueued time counts as seen
 * now. Bad events are logged (the first 50 per batch in detail, then a count), counted and
 * skipped; they never fail the batch. One summary line per batch: events, devices, accepted,
 * invalid, rejected, replayed, spoofed, conflicts_retried, rows_written, failed_devices,
 * elapsed_ms, stream. */
#ifndef ENVIROMON_TELEMETRY_EVENT_TRIGGER_H
#define ENVIROMON_TELEMETRY_EVENT_TRIGGER_H

#include <stddef.h>

#include "handler/app.h"
#include "protocol/invocation.h"

/* The function body registered as "EventTrigger". 0, or -1 after inv_fail(). */
int event_trigger_run(invocation_t *inv, app_t *app);

/* Create the EventTrigger caches in app (called from app_init). Storage is not touched: the
 * tables are created lazily on first use, so storage being down never stops start-up.
 * Returns 0, or -1 with a message in err. */
int  telemetry_app_init(app_t *app, char *err, size_t errlen);
void telemetry_app_free(app_t *app);

#endif
