/* app.h — the handler's process-wide state, shared by every invocation.
 *
 * Built once at start-up from the settings (config.h) and read-only afterwards, except for
 * members that are internally thread-safe (the table client, the calibration cache, the
 * device ETag cache). Functions receive it as their second argument. */
#ifndef ENVIROMON_APP_H
#define ENVIROMON_APP_H

#include <stdatomic.h>

#include "util/config.h"

struct table_client;
struct calib_cache;
struct etag_cache;
struct sr_conn;
struct invocation;

typedef struct app {
    config_t              cfg;
    struct table_client  *tables;     /* NULL when no storage connection string is set */
    char                  tables_error[256]; /* why tables is NULL (no secret in it) */
    struct sr_conn       *signalr;    /* parsed AzureSignalRConnectionString, or NULL */
    char                  signalr_error[256]; /* why signalr is NULL (no secret in it) */
    char                 *signalr_client_url; /* {endpoint}/client/?hub={hub}, when signalr is set */
    char                 *signalr_client_aud; /* its token audience (no port) */
    struct calib_cache   *calib;      /* EventTrigger calibration cache (may be NULL) */
    struct etag_cache    *etags;      /* EventTrigger device ETag/state cache (may be NULL) */
    atomic_llong          snapshot_broadcast_ms; /* GetDeviceState's last broadcast (monotonic ms), 0: none */
} app_t;

/* A function body. Returns 0 on success; on failure calls inv_fail() and returns -1. */
typedef int (*function_fn)(struct invocation *inv, app_t *app);

/* How a function that reads its request body as it arrives takes it (EventTrigger: the
 * host's largest batches are far larger than the handler should hold in memory). The server
 * opens a reader per request, feeds it every chunk, and hands it to the function in
 * inv->body_reader once the body is complete; the invocation's Data and Metadata are then
 * empty. Such bodies are limited by ENVIROMON_MAX_BATCH_BYTES instead of
 * ENVIROMON_MAX_BODY_BYTES. */
typedef struct body_reader {
    void       *(*open)(void);                              /* NULL when out of memory */
    int         (*feed)(void *rd, const char *p, size_t n); /* 0, or -1: the body is refused */
    const char *(*error)(void *rd, int *oom);               /* why feed refused it */
    void        (*close)(void *rd);
} body_reader_t;

typedef struct function_entry {
    const char          *name;     /* route: POST /<name>, matched case-insensitively */
    function_fn          fn;
    const body_reader_t *reader;   /* NULL: the body is parsed as one JSON document first */
} function_entry_t;

/* The registered functions (functions/registry.c), terminated by {NULL, NULL}. */
extern const function_entry_t app_functions[];

/* Build app from the environment. Returns 0, or -1 with a message in err. Storage being
 * unreachable is not an error here (functions report it per invocation). */
int  app_init(app_t *app, int require_port, char *err, size_t errlen);
void app_free(app_t *app);

#endif
