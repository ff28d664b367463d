/* hub.h — the local IoT Hub: one object that owns the registry, the partition logs and the
 * checkpoints of a devhost data folder, and the transport-independent device API.
 *
 * Layout under `<data>/iothub/`: `devices.json` + `devices.lock` (registry.h),
 * `partitions/hub.json` (partition count and instance id, fixed when the partitions are first
 * created, as on Azure), `partitions/<p>/<n>.seg` (partlog.h), `checkpoints/<group>/<p>.ckpt`
 * (checkpoint.h). A housekeeping thread looks at the registry file 4 times a second (so that
 * registry changes reach iothub_registry_on_change listeners without traffic) and compacts each
 * partition's log once every consumer group's checkpoint has passed a segment.
 *
 * Device API (HTTP in d2c.h, MQTT in devhost/mqtt/mqtt_hub_backend.c): authenticate a device by
 * its SAS token (HTTP Authorization header or MQTT CONNECT password), then send messages as
 * that device. A send is acknowledged (callback or return of iothub_send_wait) only when the
 * messages are durable in their partition's log — an HTTP 204 and an MQTT PUBACK both mean
 * "on disk". Messages of one device always go to the same partition (FNV-1a of the device id
 * modulo the partition count), so they are delivered in the order they were acknowledged.
 *
 * Thread-safe: any number of transport threads may authenticate and send at once. */
#ifndef ENVIROMON_IOTHUB_HUB_H
#define ENVIROMON_IOTHUB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "devhost/iothub/message.h"
#include "devhost/iothub/partlog.h"
#include "devhost/iothub/registry.h"

#define IOTHUB_DEFAULT_NAME       "enviromon"
#define IOTHUB_DEFAULT_PARTITIONS 4
#define IOTHUB_MAX_PARTITIONS     32
#define IOTHUB_HOST_SUFFIX        ".azure-devices.net"

typedef struct iothub iothub_t;

typedef struct iothub_opts {
    const char *data_dir;          /* devhost's data folder; the hub lives in <data_dir>/iothub */
    const char *name;              /* hub name, default "enviromon" */
    int         partitions;        /* 0: the existing count, or 4 for a new hub */
    size_t      segment_bytes;     /* partlog segment size; 0 = default */
    int         compact_interval_ms; /* compaction period; 0 = 10 s */
} iothub_opts_t;

/* Outcomes, with the HTTP status and IoT Hub error code each maps to (iothub_status_http,
 * iothub_status_code). MQTT maps IOTHUB_E_UNAUTHORIZED/NOT_FOUND to CONNACK 0x05 (0x04 for a
 * malformed username or password). */
typedef enum iothub_status {
    IOTHUB_OK = 0,
    IOTHUB_E_BAD_REQUEST,    /* 400 ArgumentInvalid */
    IOTHUB_E_UNAUTHORIZED,   /* 401 IotHubUnauthorizedAccess */
    IOTHUB_E_NOT_FOUND,      /* 404 DeviceNotFound */
    IOTHUB_E_TOO_LARGE,      /* 413 MessageTooLarge */
    IOTHUB_E_THROTTLED,      /* 429 ThrottlingException: too much is waiting for the disk */
    IOTHUB_E_UNAVAILABLE     /* 503 ServiceUnavailable: the log could not be written (disk full...) */
} iothub_status_t;

int         iothub_status_http(iothub_status_t st);
const char *iothub_status_code(iothub_status_t st);

/* An authenticated device (what the hub stamps on its messages). */
typedef struct iothub_auth {
    char      device_id[IOTHUB_DEVICE_ID_MAX + 1];
    char      generation_id[24];
    long long expires;              /* token expiry (epoch s); MQTT disconnects after it (+ skew) */
} iothub_auth_t;

/* Called once per accepted send, from a partition's committer thread, when the messages are
 * durable (IOTHUB_OK) or definitely not stored (IOTHUB_E_UNAVAILABLE; error says why, valid
 * during the call). Must not block for long. */
typedef void (*iothub_send_done_fn)(void *arg, iothub_status_t st, const char *error);

/* 1 when name is a valid IoT Hub name: 3 to 50 letters, digits or '-', not starting or
 * ending with '-'. */
int iothub_valid_name(const char *name);

/* Open (creating) the hub in o->data_dir. Fails with a message naming the file on a corrupt
 * registry or log, or when o->partitions differs from the existing hub's count. */
iothub_t *iothub_open(const iothub_opts_t *o, char *err, size_t errlen);

/* Stop housekeeping, commit what is queued (its callbacks fire), close. Event Hubs triggers
 * (eventhub.h) must be stopped first. */
void iothub_close(iothub_t *h);

const char *iothub_name(const iothub_t *h);
const char *iothub_host(const iothub_t *h);        /* "{name}.azure-devices.net" */
const char *iothub_instance(const iothub_t *h);    /* 16 hex digits, new whenever the logs are created */
int         iothub_partitions(const iothub_t *h);
const char *iothub_checkpoint_root(const iothub_t *h);
iothub_plog_t *iothub_partition_log(iothub_t *h, int partition);
iothub_registry_t *iothub_registry(iothub_t *h);

/* The partition a device's messages go to. */
int iothub_partition_of(const char *device_id, int partitions);

/* Authenticate device_id with a SAS token for the resource `{host}/{path}` (path e.g.
 * "devices/<id>/messages/events" for HTTP, "devices/<id>" for MQTT; either key of the device
 * may have signed it). Returns IOTHUB_OK with *out filled, IOTHUB_E_NOT_FOUND (no such device),
 * or IOTHUB_E_UNAUTHORIZED / IOTHUB_E_BAD_REQUEST with a message in err (never the token). */
iothub_status_t iothub_authenticate(iothub_t *h, const char *device_id, const char *token, size_t token_len,
                                    const char *path, iothub_auth_t *out, char *err, size_t errlen);

/* Send n >= 1 messages as the authenticated device, as one unit (all durable or none). Checks
 * the size rule (each message and the total at most 256 KiB: IOTHUB_E_TOO_LARGE), the property
 * count, and that the device still exists with the same generation (IOTHUB_E_NOT_FOUND). Returns
 * IOTHUB_OK when queued — done is then called exactly once — or an error (done is not called). */
iothub_status_t iothub_send(iothub_t *h, const iothub_auth_t *dev, const iothub_msg_t *msgs, size_t n,
                            iothub_send_done_fn done, void *arg, char *err, size_t errlen);

/* The same, waiting until the messages are durable or refused. */
iothub_status_t iothub_send_wait(iothub_t *h, const iothub_auth_t *dev, const iothub_msg_t *msgs, size_t n,
                                 char *err, size_t errlen);

typedef struct iothub_partition_stats {
    int64_t  first_seq, next_seq;   /* retained range */
    uint64_t received;              /* messages made durable since open */
    size_t   segments;
    uint64_t disk_bytes;
} iothub_partition_stats_t;

typedef struct iothub_stats {
    int      partitions;
    iothub_partition_stats_t p[IOTHUB_MAX_PARTITIONS];
    uint64_t received;              /* sum over partitions */
    uint64_t refused;               /* sends refused (auth, size, throttle, storage) since open */
} iothub_stats_t;

void iothub_stats(iothub_t *h, iothub_stats_t *out);

/* Count a refused request (transports call this for refusals they decide themselves). */
void iothub_count_refused(iothub_t *h);

/* Claim a consumer group for a reader (eventhub.c): 0, or -1 when it is already claimed
 * (compared ignoring case). release gives it back. */
int  iothub_claim_group(iothub_t *h, const char *group);
void iothub_release_group(iothub_t *h, const char *group);

/* Run one compaction pass now (the housekeeping thread does this periodically). Returns the
 * number of segments deleted. */
int iothub_compact_now(iothub_t *h);

#endif
