/* transport.h — what the engine (run.c) needs from a transport, and what a transport reports.
 *
 * A transport moves one message at a time for a device and reports each attempt's outcome
 * through sim_run_acked / sim_run_failed; it never retries on its own, so that every attempt
 * is counted (device.h). Two implementations: mqtt.c (libmosquitto, one TLS connection per
 * device, QoS 1) and http.c (libcurl, keep-alive connections shared by the devices). Both run
 * in the engine's single thread. */
#ifndef ENVIROMON_SIM_TRANSPORT_H
#define ENVIROMON_SIM_TRANSPORT_H

#include <stdint.h>

#include "simulator/device.h"

typedef struct sim_run sim_run_t;

/* How an attempt ended, when it did not end with an acknowledgement. */
typedef enum {
    SIM_FAIL_RETRY,       /* transient and the hub did not take it (429, connection refused,
                           * not connected): retry after backoff */
    SIM_FAIL_UNCERTAIN,   /* transient, and the hub may have taken it (timeout, connection lost
                           * after sending, 5xx): retry after backoff, count as uncertain */
    SIM_FAIL_PERMANENT    /* refused (401, 404, 413, CONNACK refused, ...): the message is lost */
} sim_fail_t;

typedef struct sim_tp_ops {
    const char *name;
    /* Create the transport for the run's devices. Returns NULL with a reason in err. */
    void *(*open)(sim_run_t *run, char *err, size_t errlen);
    /* Can d start an attempt now (connected, not draining)? */
    int  (*ready)(void *t, sim_device_t *d);
    /* Start an attempt of m for d; the outcome comes later through the sim_run_* calls (or
     * at once, for a failure to even start). */
    void (*send)(void *t, sim_device_t *d, sim_msg_t *m);
    /* Wait up to timeout_ms for network events and handle them. */
    void (*poll)(void *t, int timeout_ms);
    /* Housekeeping every few ms: timeouts, token renewal, reconnects. */
    void (*tick)(void *t, int64_t now_ns);
    /* Devices connected (MQTT) or connections open (HTTP), for progress lines. */
    size_t (*connected)(void *t);
    /* While starting: 1 when every device is connected or refused (MQTT), so the schedule
     * can start. */
    int  (*settled)(void *t);
    /* Stop: abandon attempts in flight (reported as SIM_FAIL_UNCERTAIN with abandon set in the
     * run) and free everything. */
    void (*close)(void *t);
} sim_tp_ops_t;

extern const sim_tp_ops_t sim_tp_mqtt;
extern const sim_tp_ops_t sim_tp_http;

/* ---- called by transports ------------------------------------------------------------ */

/* m was acknowledged by the hub. */
void sim_run_acked(sim_run_t *run, sim_device_t *d, sim_msg_t *m);
/* m's attempt ended without an acknowledgement; why is a short label for the summary
 * ("HTTP 429", "CONNACK refused (5: not authorized)", "timeout", ...). */
void sim_run_failed(sim_run_t *run, sim_device_t *d, sim_msg_t *m, sim_fail_t how, const char *why);
/* m went out once more than the transport asked for (libcurl's own re-send on a dead
 * keep-alive connection): count an extra attempt, uncertain, with label why. */
void sim_run_hidden_attempt(sim_run_t *run, sim_device_t *d, sim_msg_t *m, const char *why);
/* d can start attempts again (connected, or a window freed up). */
void sim_run_device_ready(sim_run_t *run, sim_device_t *d);
/* d is refused for good (e.g. CONNACK 4/5): everything it holds or will take fails with why. */
void sim_run_device_dead(sim_run_t *run, sim_device_t *d, const char *why);
/* A connection-level event, counted per label in the summary ("MQTT connected", "MQTT
 * connection lost: ..."); with warn set, the first of each label is also a line on stderr. */
void sim_run_event(sim_run_t *run, const char *label, int warn);

/* What transports read from the run. */
sim_device_t *sim_run_devices(sim_run_t *run, size_t *n);
const struct sim_opts *sim_run_opts(sim_run_t *run);
int64_t sim_run_now_ns(void);            /* CLOCK_MONOTONIC in ns */
long long sim_run_wall_s(void);           /* Unix time in seconds */
/* A backoff delay in ns before attempt number `attempt` (1-based) after failures:
 * uniform in [100 ms, min(10 s, 100 ms * 2^attempt)]. */
int64_t sim_run_backoff_ns(sim_run_t *run, int attempt);
/* Has the user asked to abandon everything (second Ctrl-C)? */
int sim_run_abandoning(sim_run_t *run);

#endif
