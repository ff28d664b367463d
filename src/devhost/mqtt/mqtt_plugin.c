/* mqtt_plugin.c — the MQTT endpoint and devhost's TLS inside `devhost start` (see
 * mqtt_plugin.h). */
#include "devhost/mqtt/mqtt_plugin.h"

#include <assert.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devhost/mqtt/mqtt_hub_backend.h"
#include "devhost/mqtt/mqtt_server.h"
#include "devhost/mqtt/tls_ca.h"
#include "util/log.h"

typedef struct plugin {
    iothub_t       *hub;
    int             port;          /* -1: no MQTT endpoint */
    tls_ca_t        ca;
    int             have_ca;
    SSL_CTX        *ctx;
    pthread_mutex_t lock;          /* guards srv against the registry listener */
    mqtt_server_t  *srv;
} plugin_t;

/* The registry listener (any thread): the device's token was checked against an identity that
 * no longer exists, so its session ends now; the SDK reconnects with its current key. */
static void device_changed(void *arg, const char *device_id)
{
    plugin_t *pl = arg;
    pthread_mutex_lock(&pl->lock);
    if (pl->srv) mqtt_server_disconnect_device(pl->srv, device_id);
    pthread_mutex_unlock(&pl->lock);
}

static int start(void *self, dh_host_t *h, char *err, size_t errlen)
{
    (void)h;
    plugin_t *pl = self;
    if (pl->port < 0) return 0;
    char why[600];
    if (!(pl->ctx = tls_ca_server_ctx(&pl->ca, why, sizeof why))) {
        snprintf(err, errlen, "MQTT: %s", why);
        return -1;
    }
    mqtt_server_opts_t o;
    mqtt_server_opts_default(&o);
    o.host = "127.0.0.1";
    o.port = pl->port;
    o.hub_host = iothub_host(pl->hub);
    o.ssl_ctx = pl->ctx;
    o.ca_path = pl->ca.ca_path;
    mqtt_hub_backend(pl->hub, &o.backend);
    mqtt_server_t *srv = mqtt_server_start(&o, why, sizeof why);
    if (!srv) {
        snprintf(err, errlen, "MQTT: %s (--mqtt-port N for another port, --no-mqtt for none)", why);
        return -1;
    }
    pthread_mutex_lock(&pl->lock);
    pl->srv = srv;
    pthread_mutex_unlock(&pl->lock);
    iothub_registry_on_change(iothub_registry(pl->hub), device_changed, pl);
    int port = mqtt_server_port(srv);
    log_info(NULL, "IoT Hub MQTT: mqtts://localhost:%d (MQTT 3.1.1 over TLS) — devices add "
             "GatewayHostName=localhost:%d to their connection string and trust %s", port, port, pl->ca.ca_path);
    return 0;
}

static void summary(void *self, buf_t *line)
{
    plugin_t *pl = self;
    mqtt_server_stats_t st;
    pthread_mutex_lock(&pl->lock);
    int on = pl->srv != NULL;
    if (on) mqtt_server_stats(pl->srv, &st);
    pthread_mutex_unlock(&pl->lock);
    if (!on) return;
    buf_printf(line, " connections=%llu messages=%llu acked=%llu failed=%llu refused=%llu protocol_errors=%llu",
               (unsigned long long)st.connections, (unsigned long long)st.messages, (unsigned long long)st.acked,
               (unsigned long long)st.failed, (unsigned long long)st.refused, (unsigned long long)st.protocol_errors);
}

static void stop(void *self)
{
    plugin_t *pl = self;
    pthread_mutex_lock(&pl->lock);
    mqtt_server_t *srv = pl->srv;
    pl->srv = NULL;
    pthread_mutex_unlock(&pl->lock);
    if (!srv) return;
    /* a listener call already running finds srv NULL; clearing waits for it, so destroy may free pl */
    iothub_registry_on_change(iothub_registry(pl->hub), NULL, NULL);
    mqtt_server_stop(srv);   /* PUBACKs due within ~2 s still go out: the hub is still open */
}

static void destroy(void *self)
{
    plugin_t *pl = self;
    /* the host stopped it (srv NULL) before the local IoT Hub's destroy closed the hub */
    assert(pl->srv == NULL);
    if (pl->ctx) SSL_CTX_free(pl->ctx);
    if (pl->have_ca) tls_ca_free(&pl->ca);
    pthread_mutex_destroy(&pl->lock);
    free(pl);
}

int mqtt_plugin_attach(dh_host_t *h, iothub_t *hub, const mqtt_plugin_opts_t *o, char *err, size_t errlen)
{
    if (o->port < 0 && !o->tls) return 0;   /* neither MQTT nor HTTPS: no certificate needed */
    plugin_t *pl = calloc(1, sizeof *pl);
    if (!pl) { snprintf(err, errlen, "out of memory"); return -1; }
    pl->hub = hub;
    pl->port = o->port;
    pthread_mutex_init(&pl->lock, NULL);
    char why[600];
    if (tls_ca_ensure(dh_host_data_dir(h), &pl->ca, why, sizeof why) != 0) {
        snprintf(err, errlen, "devhost's local CA: %s", why);
        destroy(pl);
        return -1;
    }
    pl->have_ca = 1;
    log_info(NULL, "devhost: local CA %s%s (trust it in clients: Node's `ca` option or NODE_EXTRA_CA_CERTS, "
             "mosquitto's --cafile)", pl->ca.ca_path, pl->ca.created_ca ? " created" : "");
    if (o->tls && dh_host_set_tls(h, pl->ca.cert_pem, pl->ca.key_pem, err, errlen) != 0) {
        destroy(pl);
        return -1;
    }
    dh_plugin_t p = {.name = "mqtt", .self = pl, .start = start, .summary = summary, .stop = stop, .destroy = destroy};
    if (dh_host_register(h, &p, err, errlen) != 0) {
        destroy(pl);
        return -1;
    }
    return 0;
}
