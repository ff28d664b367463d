/* device.h — a simulated device: identity, sensor, outgoing queue, token and counters.
 *
 * Owns the per-device bookkeeping that the final report must get exactly right. A message is
 * "sent" once its first attempt starts; it then ends either "acknowledged" (HTTP 2xx / PUBACK)
 * or "failed" (a permanent refusal, or retries given up), so that at the end
 * sent == acknowledged + failed for every device. An attempt whose outcome cannot be known (a
 * timeout or a dropped connection after the message went out, a 5xx) is "uncertain": the hub
 * may have stored the message although the device never heard so, and a retry may then store
 * it twice. The ids of such messages are kept, so that for every device
 *   acknowledged <= messages the hub stored <= acknowledged + uncertain
 * can be checked message id by message id. */
#ifndef ENVIROMON_SIM_DEVICE_H
#define ENVIROMON_SIM_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "simulator/connstr.h"
#include "simulator/endpoint.h"
#include "simulator/message.h"
#include "simulator/sensor.h"
#include "util/buf.h"

typedef struct sim_msg {
    struct sim_msg *next;        /* queue link */
    uint64_t id;                 /* messageId: 1, 2, ... per device */
    char    *body;
    size_t   len;
    unsigned char alert;         /* temperatureAlert property */
    unsigned char fault;         /* sim_fault_t */
    int      attempts;           /* attempts started */
    int      uncertain;          /* attempts whose outcome is unknown */
    int64_t  created_ns;         /* reading taken */
    int64_t  first_ns;           /* start of the first attempt (retry deadline) */
    int64_t  sent_ns;            /* start of the current attempt (latency) */
    int      tag;                /* the transport's handle for the attempt (MQTT mid) */
} sim_msg_t;

/* A growable list of message ids. */
typedef struct sim_ids {
    uint64_t *v;
    size_t    n, cap;
} sim_ids_t;

int  sim_ids_add(sim_ids_t *ids, uint64_t id);
void sim_ids_free(sim_ids_t *ids);

typedef struct sim_counts {
    uint64_t sent, acked, failed;
    uint64_t attempts, uncertain;   /* attempts started; attempts with unknown outcome */
    uint64_t faulty[SIM_FAULT_KINDS];
} sim_counts_t;

typedef struct sim_device {
    sim_connstr_t  cs;
    size_t         index;
    const sim_endpoint_t *ep;      /* where this device sends (shared) */
    sim_sensor_t   sensor;
    uint64_t       fault_rng;
    /* schedule */
    uint64_t       generated;       /* readings taken = id of the newest message */
    uint64_t       slot;            /* schedule slots passed (a full buffer skips one) */
    int64_t        phase_ns;        /* this device's offset in the schedule */
    int64_t        next_due_ns;
    size_t         heap_pos;
    /* messages waiting for an attempt, in id order */
    sim_msg_t     *q_head, *q_tail;
    size_t         q_len;
    size_t         inflight;
    int64_t        hold_until_ns;   /* backing off after a transient failure */
    int            fail_streak;
    int            waiting;         /* on the run's wait list for a free connection */
    int            kicked;          /* on the run's list of devices to try sending for */
    char           last_error[120]; /* why the latest attempt failed */
    /* token */
    buf_t          token;           /* "SharedAccessSignature sr=..." */
    long long      token_expiry;    /* Unix seconds */
    int64_t        token_renew_ns;  /* monotonic time to mint the next one */
    /* refused for good (MQTT CONNACK 4/5): every message fails with this reason */
    char           dead[160];
    /* outcome */
    sim_counts_t   n;
    sim_ids_t      failed_ids, uncertain_ids;
    void          *tp;              /* transport's per-device state */
} sim_device_t;

/* Message queue in id order: push at the back, put a retried message back in place. */
void       sim_queue_push(sim_device_t *d, sim_msg_t *m);
void       sim_queue_insert(sim_device_t *d, sim_msg_t *m);
sim_msg_t *sim_queue_pop(sim_device_t *d);

void sim_msg_free(sim_msg_t *m);

/* Mint a token valid for ttl seconds from now_s if the current one is due for renewal at
 * mono_ns (or there is none). Renewal is due at 80 % of the lifetime, as the C SDK does.
 * Returns 1 when a new token was minted, 0 when the current one stands, -1 on failure. */
int sim_device_token(sim_device_t *d, long long now_s, int64_t mono_ns, int ttl);

/* Free everything the device owns (queue, token, id lists). */
void sim_device_free(sim_device_t *d);

#endif
