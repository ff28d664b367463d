/* event_trigger.h — the EventTrigger function: IoT Hub telemetry batches → calibrated,
 * validated DeviceState rows (exactly-once effect) and one SignalR newMessage per changed
 * device. Details and the reasoning behind them: docs/event-trigger.md.
 *
 * The body is decoded as it arrives (batch.h: one event at a time, the host's largest batch
 * in a few MiB). Then: events without a usable device id are quarantined (quarantine.h);
 * the others are grouped by device and processed a window of devices at a time, each device
 * in parallel (bounded by DeviceWriteConcurrency): calibration (calibrate.h, cached) and the
 * current row (ETag cache, else a read) → validate (validate.h) → fold (device_state.h) →
 * write: the window's changed devices as $batch entity-group transactions (one PartitionKey,
 * up to 100 rows each), conditional on each row's ETag; a conflicting device falls back to
 * its own read-modify-write loop with full-jitter backoff (backoff.h) up to OccMaxAttempts,
 * and a $batch that fails for any other reason the service gave is retried row by row, which
 * finds the device responsible.
 *
 * The rule (never stall a partition): the invocation answers non-2xx only for transient
 * infrastructure failures — storage unreachable, 5xx or 408/429 after the client's retries,
 * credentials refused, out of memory, optimistic-concurrency attempts exhausted — so that the
 * host's retry policy re-delivers the batch; devices already written are then skipped by
 * sequence number (Stream + LastSeq columns) and quarantined events by their key. Anything
 * that fails identically on every delivery — a device whose Calibration read or DeviceState
 * write the service refuses (400 and other 4xx that are not conflicts), an event without a
 * usable device id — is isolated: logged with the reason, counted, and its events stored in
 * PoisonEvents; the rest of the batch is applied normally.
 *
 * A replayed batch changes nothing and pushes nothing (no newMessage for an unchanged row).
 * Events without a sequence number (not from the Event Hubs trigger), and every event of a
 * batch whose PartitionContext names no partition (sequence numbers restart per partition,
 * so they could not be compared), cannot be recognised as replays and are always applied. An
 * accepted event without an enqueued time counts as seen now. Bad readings only bump
 * InvalidCount. Bad events are logged (the first 50 per batch in detail, then a count). One
 * summary line per batch: events, devices, accepted, invalid, rejected, replayed, spoofed,
 * conflicts_retried, rows_written, failed_devices, poisoned_devices, quarantined,
 * elapsed_ms, stream, and retry (the host's RetryContext.RetryCount) when the host sent one. */
#ifndef ENVIROMON_TELEMETRY_EVENT_TRIGGER_H
#define ENVIROMON_TELEMETRY_EVENT_TRIGGER_H

#include <stddef.h>

#include "handler/app.h"
#include "protocol/invocation.h"

/* How the server hands EventTrigger its body (a batch decoder, batch.h). */
extern const body_reader_t event_trigger_reader;

/* The function body registered as "EventTrigger". 0, or -1 after inv_fail(). With
 * inv->body_reader NULL it decodes Data.events and Metadata from the parsed request. */
int event_trigger_run(invocation_t *inv, app_t *app);

/* Create the EventTrigger caches in app (called from app_init). Storage is not touched: the
 * tables are created lazily on first use, so storage being down never stops start-up.
 * Returns 0, or -1 with a message in err. */
int  telemetry_app_init(app_t *app, char *err, size_t errlen);
void telemetry_app_free(app_t *app);

#endif
