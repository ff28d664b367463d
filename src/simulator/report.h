/* report.h — what the simulator tells the person running it.
 *
 * Owns the output: on a terminal a live progress line on stderr (redrawn four times a second:
 * sent, acknowledged, failed, in flight, rate, latency p50/p99 of the transport); otherwise a
 * plain progress line every --progress seconds; notes (first occurrence of each problem) on
 * stderr; and the final summary — text on stdout, or with --json one JSON object on stdout
 * (and the text on stderr). Every line goes through log_redact, so no key or token can leak
 * into a terminal or a log file. */
#ifndef ENVIROMON_SIM_REPORT_H
#define ENVIROMON_SIM_REPORT_H

#include <stdint.h>
#include <stdio.h>

struct sim_run;
struct cJSON;

/* Redraw / print the progress line if it is due (or now, with final: then end the live line). */
void sim_report_progress(struct sim_run *r, int64_t now_ns, int final);

/* One line on stderr, "simulator: ..." (clears the live line first). */
void sim_report_note(struct sim_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The final summary as text. */
void sim_report_text(struct sim_run *r, FILE *f);

/* The final summary as a JSON object (caller frees with cJSON_Delete); NULL when out of
 * memory. Fields: transport, endpoints, seed, intervalSeconds, faultyShare, elapsedSeconds,
 * interrupted, sent, acknowledged, failed, attempts, retries, uncertain, unsent,
 * ratePerSecond, latencyMs {count, p50, p90, p99, max, mean}, faulty {spike, missing,
 * garbled}, errors {label: failed attempts}, lost {reason: messages}, events {label: count},
 * devices {id: {sent, acknowledged, failed, attempts, uncertain, faulty, lastMessageId,
 * failedIds [...], uncertainIds [...]}}. */
struct cJSON *sim_report_json(struct sim_run *r);

#endif
