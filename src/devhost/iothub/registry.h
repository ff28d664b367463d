/* registry.h — the local IoT Hub's device registry (identities and their keys).
 *
 * Owns the device id rule, the registry file `<hub dir>/devices.json` and its concurrency
 * rules. Writers (`devhost device ...`, possibly while `devhost start` runs) serialise on an
 * flock(2) of `devices.lock`, read the current file, change it and replace it atomically
 * (write a temporary file, fsync, rename, fsync the folder), so a reader sees the old or the
 * new registry, never a mix. The running hub reads without the lock: a lookup reloads the file when
 * its identity (inode, size, mtime, ctime) changed, so an added, removed or re-keyed device
 * takes effect on the next request. It stat(2)s the file only when an inotify watch on the
 * folder has queued an event since the last look (every look, when inotify is unavailable):
 * the kernel queues the event before the writer's rename returns, so nothing is missed.
 *
 * File format (JSON, mode 0600; it holds keys):
 *   {"version":1,"devices":[{"deviceId":"...","generationId":"638...","created":"...Z",
 *     "primaryKey":"<base64>","secondaryKey":"<base64>"}]}
 * Keys are 32 random bytes, base64 (as IoT Hub generates). The generation id is .NET ticks
 * at creation (IoT Hub's `iothub-connection-auth-generation-id`): a device removed and added
 * again under the same id gets a new one, as on Azure. */
#ifndef ENVIROMON_IOTHUB_REGISTRY_H
#define ENVIROMON_IOTHUB_REGISTRY_H

#include <stddef.h>

#define IOTHUB_DEVICE_ID_MAX 128
#define IOTHUB_KEY_B64_MAX   88     /* base64 of at most 64 bytes */
#define IOTHUB_KEY_RAW_MAX   64

typedef struct iothub_device {
    char id[IOTHUB_DEVICE_ID_MAX + 1];
    char generation_id[24];
    char created[32];                         /* ISO 8601 UTC */
    char primary[IOTHUB_KEY_B64_MAX + 1];     /* base64 */
    char secondary[IOTHUB_KEY_B64_MAX + 1];   /* base64 */
} iothub_device_t;

typedef enum iothub_reg_status {
    IOTHUB_REG_OK = 0,
    IOTHUB_REG_EXISTS,     /* add: the id is taken */
    IOTHUB_REG_NOT_FOUND,  /* show/remove/regenerate: no such device */
    IOTHUB_REG_INVALID,    /* the id breaks the rule */
    IOTHUB_REG_IO          /* the file or folder could not be read or written, or is corrupt */
} iothub_reg_status_t;

/* 1 when id is a valid IoT Hub device id: 1..128 characters from A-Z a-z 0-9 and
 * - : . + % _ # * ? ! ( ) , = @ ; $ '. Else 0 with the rule and the first bad character in err. */
int iothub_device_id_valid(const char *id, char *err, size_t errlen);

/* Parse a registry file's bytes (any bytes: a fuzz target). On success *devs (malloc'd, sorted
 * by id with strcmp, ids unique) and *n are set; an empty input means no devices. Returns 0, or
 * -1 with the reason (and JSON position) in err. */
int iothub_registry_parse(const char *bytes, size_t len, iothub_device_t **devs, size_t *n,
                          char *err, size_t errlen);

/* The file text for devs[0..n) (malloc'd), or NULL when out of memory. */
char *iothub_registry_format(const iothub_device_t *devs, size_t n);

/* Decode a device's base64 key into raw (IOTHUB_KEY_RAW_MAX bytes). Returns the length or -1. */
long iothub_device_key_raw(const char *b64, unsigned char raw[IOTHUB_KEY_RAW_MAX]);

/* ---- changes (the CLI): each locks, reads, changes and atomically replaces the file ---- */

/* dir is the hub's folder (created 0700 when missing). */
iothub_reg_status_t iothub_registry_add(const char *dir, const char *id, iothub_device_t *out,
                                        char *err, size_t errlen);
iothub_reg_status_t iothub_registry_remove(const char *dir, const char *id, char *err, size_t errlen);
/* New random key for the primary (secondary = 0) or secondary key. */
iothub_reg_status_t iothub_registry_regenerate(const char *dir, const char *id, int secondary,
                                               iothub_device_t *out, char *err, size_t errlen);
/* Every device (sorted by id); *devs is malloc'd (NULL when none). */
iothub_reg_status_t iothub_registry_list(const char *dir, iothub_device_t **devs, size_t *n,
                                         char *err, size_t errlen);
iothub_reg_status_t iothub_registry_get(const char *dir, const char *id, iothub_device_t *out,
                                        char *err, size_t errlen);

/* ---- the running hub's live view ------------------------------------------------------ */

typedef struct iothub_registry iothub_registry_t;

/* Open the live view of dir's registry (a missing file is an empty registry). Returns NULL
 * with a message naming the file when it exists but cannot be read or parsed. */
iothub_registry_t *iothub_registry_open(const char *dir, char *err, size_t errlen);

/* Look id up, first reloading the file if it changed. Returns 1 (found, copied to *out), 0 (no
 * such device). When a changed file cannot be read or parsed, the last good registry keeps
 * serving and the problem is logged once per change. Thread-safe. */
int iothub_registry_lookup(iothub_registry_t *r, const char *id, iothub_device_t *out);

/* Number of devices in the current view (after a reload check; hub.c's housekeeping calls
 * it a few times a second so that changes are noticed without traffic). */
size_t iothub_registry_count(iothub_registry_t *r);

/* Called once per device whose identity changed in a reload — removed, removed and added again
 * (a new generation id) or given a new primary or secondary key — from the thread that noticed
 * the change, after the registry's lock is released. Must be thread-safe. (The MQTT endpoint
 * closes that device's connection: its token was checked against the old identity.) */
typedef void (*iothub_registry_change_fn)(void *arg, const char *device_id);

/* Set (or, with NULL, clear) the change listener. Thread-safe. Returns once no call of the
 * previous listener is running (so its arg may be freed then); never call it from a listener. */
void iothub_registry_on_change(iothub_registry_t *r, iothub_registry_change_fn fn, void *arg);

void iothub_registry_close(iothub_registry_t *r);

#endif
