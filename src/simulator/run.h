/* run.h — the simulator's engine: one event loop that takes readings on schedule, hands
 * messages to the transport, retries, counts, and reports.
 *
 * Owns the schedule and every count in the summary. Single-threaded: readings, sends,
 * acknowledgements and progress lines all happen in the loop of sim_run_main, so the counts
 * need no locks and are exact.
 *
 * Schedule: each device takes a reading every `interval` seconds (--interval, or with --rate R
 * the interval devices/R), devices evenly staggered over the first interval; readings are
 * taken on time whatever the network does (open loop, so a slow hub shows as latency and
 * backlog, not as a lower offered rate), up to 10,000 unsent readings per device; while a
 * device's buffer is that full it skips its readings (nothing taken is ever dropped). Reading
 * k of a device is due at start + phase + k * interval, computed, not accumulated, so a run of
 * --duration D takes exactly the readings due before D.
 *
 * Retries: a transient failure puts the message back in its place in the device's queue and
 * the device backs off (exponential, full jitter, 100 ms to 10 s); a message is given up (and
 * lost) after --retry-for seconds. A permanent refusal loses it at once. */
#ifndef ENVIROMON_SIM_RUN_H
#define ENVIROMON_SIM_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "simulator/device.h"
#include "simulator/endpoint.h"
#include "simulator/options.h"
#include "simulator/stats.h"
#include "simulator/transport.h"

#define SIM_BACKLOG_MAX 10000   /* unsent readings a device holds before it pauses */

/* A label and how often it happened. */
typedef struct sim_tally {
    char    *label;
    uint64_t n;
} sim_tally_t;

typedef struct sim_tallies {
    sim_tally_t *v;
    size_t       n;
} sim_tallies_t;

/* Count one more of label; returns the new count (1 = first time), 0 when out of memory. */
uint64_t sim_tally_add(sim_tallies_t *t, const char *label);
void     sim_tallies_free(sim_tallies_t *t);

struct sim_run {
    const sim_opts_t   *o;
    sim_device_t       *devs;
    size_t              ndev;
    sim_endpoint_t     *endpoints;      /* distinct endpoints (list, owned) */
    const sim_tp_ops_t *ops;
    void               *tp;             /* the transport's state */
    uint64_t            seed;
    double              interval;       /* seconds between one device's readings */
    size_t              window;         /* messages in flight per device */
    size_t              max_inflight;   /* in flight across devices (HTTP: connections); 0 = no cap */
    /* state */
    size_t              inflight, queued;
    sim_device_t      **heap;           /* devices by next reading (min-heap) */
    size_t              heap_n;
    sim_device_t      **kick;           /* devices to try sending for */
    size_t              kick_n;
    int                 kicking;
    sim_device_t      **wait;           /* FIFO of devices waiting for a free connection */
    size_t              wait_head, wait_n;
    uint64_t            rng;            /* backoff jitter */
    int64_t             start_ns, t0_ns, stop_ns, end_ns;
    int                 stopping, abandon, interrupted;
    /* outcome */
    sim_counts_t        total;
    uint64_t            unsent;         /* readings taken but never sent (abandoned) */
    sim_hist_t          lat, lat_window;
    sim_tallies_t       attempt_errors; /* failed attempts by label (retried or not) */
    sim_tallies_t       lost_reasons;   /* lost messages by final reason */
    sim_tallies_t       events;         /* connection events */
    /* progress */
    int                 tty;
    int64_t             next_report_ns, last_report_ns;
    uint64_t            acked_at_report;
    double              rate;           /* acknowledged per second, last report period */
    int                 live_line;      /* a live line is on the terminal */
};

/* Prepare a run over devs (taken over: freed by sim_run_free) and the endpoints list. */
int  sim_run_init(sim_run_t *r, const sim_opts_t *o, sim_device_t *devs, size_t ndev,
                  sim_endpoint_t *endpoints, uint64_t seed, char *err, size_t errlen);
/* Run to the end (count reached, duration over, or interrupted). Returns the exit status:
 * 0 nothing lost, 1 something lost, 2 the transport could not start. */
int  sim_run_main(sim_run_t *r);
void sim_run_free(sim_run_t *r);

/* Schedule helpers (exposed for tests). The interval per device for a run: --rate R over n
 * devices gives n / R seconds, else --interval. */
double  sim_run_interval(const sim_opts_t *o, size_t ndev);
/* When device i of n takes its first reading, relative to the schedule's start (ns). */
int64_t sim_run_first_due(size_t i, size_t n, double interval);

#endif
