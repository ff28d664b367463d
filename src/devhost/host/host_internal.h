/* host_internal.h — the dh_host structure shared by host.c (lifecycle, plugins, summary) and
 * invoke.c (dh_invoke, HTTP functions, /admin). Not for other modules: they use host.h. */
#ifndef ENVIROMON_DH_HOST_INTERNAL_H
#define ENVIROMON_DH_HOST_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "devhost/host/app_config.h"
#include "devhost/host/host.h"
#include "devhost/host/keys.h"

struct dh_sr_bindings;
struct sr_service;
struct dh_static;
struct dh_supervisor;
struct dh_invoker;

#define DH_MAX_PLUGINS 16
#define DH_MAX_LOCAL_SR 4

struct dh_host {
    dh_app_t                app;
    char                   *data_dir;
    int                     enable_auth;
    dh_keys_t               keys;
    struct dh_sr_bindings  *sr;
    struct sr_service      *local_sr[DH_MAX_LOCAL_SR];
    size_t                  nlocal_sr;
    struct dh_static       *statics;
    dh_front_t             *front;
    char                   *tls_cert, *tls_key;  /* --tls: the front's certificate and key (PEM) */
    struct dh_supervisor   *sup;
    struct dh_invoker      *invoker;
    volatile int            stopping;
    atomic_int              fatal;
    char                    fatal_msg[512];
    dh_plugin_t             plugins[DH_MAX_PLUGINS];
    int                     plugin_started[DH_MAX_PLUGINS];
    size_t                  nplugins;
    int                     running;
    dh_function_t         **http_fns;     /* HTTP functions in route precedence order */
    size_t                  nhttp;
    char                  **prefix;       /* route prefix segments */
    size_t                  nprefix;
    atomic_ullong           invocations, failures;
    int64_t                 start_ms;
    char                    instance_id[37];
    pthread_t               main_thread;
};

/* invoke.c: the front server's dispatch callback (/admin and the HTTP functions). */
int dh_host_dispatch(void *arg, const dh_http_req_t *req, dh_http_resp_t *w);

/* invoke.c: dh_invoke with an HTTP response to fill from the function's http output (w may be
 * NULL). */
int dh_host_invoke(dh_host_t *h, const dh_function_t *fn, struct cJSON *data, struct cJSON *metadata,
                   dh_http_resp_t *w, dh_invoke_result_t *out);

#endif
