/* mqtt_hub_backend.c — the local IoT Hub as the MQTT endpoint's backend (see
 * mqtt_hub_backend.h). */
#include "devhost/mqtt/mqtt_hub_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devhost/iothub/sas.h"
#include "util/log.h"

static mqtt_auth_t authenticate(void *ctx, const char *device_id, const char *username,
                                const char *password, int64_t *expires_at, void **session,
                                char *why, size_t whylen)
{
    iothub_t *h = ctx;
    (void)username; /* checked by the server: this hub, this device, no module */
    size_t len = strlen(password);
    iothub_sas_t t;
    char reason[300];
    if (iothub_sas_parse(password, len, &t, reason, sizeof reason) != IOTHUB_SAS_OK) {
        snprintf(why, whylen, "the password is not a SAS token (%s)", reason);
        return MQTT_AUTH_BAD_CREDENTIALS;
    }
    iothub_auth_t *a = malloc(sizeof *a);
    if (!a) {
        snprintf(why, whylen, "out of memory");
        return MQTT_AUTH_UNAVAILABLE;
    }
    char path[IOTHUB_DEVICE_ID_MAX + 16];
    snprintf(path, sizeof path, "devices/%s", device_id);
    iothub_status_t st = iothub_authenticate(h, device_id, password, len, path, a, why, whylen);
    if (st != IOTHUB_OK) {
        free(a);
        return st == IOTHUB_E_NOT_FOUND || st == IOTHUB_E_UNAUTHORIZED ? MQTT_AUTH_NOT_AUTHORISED
             : st == IOTHUB_E_BAD_REQUEST                              ? MQTT_AUTH_BAD_CREDENTIALS
                                                                       : MQTT_AUTH_UNAVAILABLE;
    }
    *expires_at = a->expires + IOTHUB_SAS_SKEW_S;
    *session = a;
    return MQTT_AUTH_OK;
}

/* The hub's completion (a partition's committer thread). */
static void stored(void *token, iothub_status_t st, const char *error)
{
    if (st != IOTHUB_OK) log_warn(NULL, "mqtt: a message was not stored: %s", error ? error : "?");
    mqtt_server_publish_done(token, st == IOTHUB_OK ? MQTT_PUB_OK : MQTT_PUB_FAILED);
}

static void publish(void *ctx, void *session, const mqtt_message_t *m, void *token)
{
    iothub_t *h = ctx;
    const mqtt_props_t *p = m->props;
    iothub_prop_t props[IOTHUB_MAX_PROPS];
    size_t n = p->napp < IOTHUB_MAX_PROPS ? p->napp : IOTHUB_MAX_PROPS;
    for (size_t i = 0; i < n; i++) {
        props[i].name = p->app[i].name;
        props[i].value = p->app[i].value;
    }
    iothub_msg_t msg = {p->message_id, p->correlation_id, p->content_type, p->content_encoding,
                        p->user_id, props, n, m->body, m->body_len};
    char err[300];
    iothub_status_t st = iothub_send(h, session, &msg, 1, stored, token, err, sizeof err);
    if (st == IOTHUB_OK) return; /* stored() completes it */
    log_warn(NULL, "mqtt: a message of device %s was not accepted: %s", m->device_id, err);
    int refused = st == IOTHUB_E_TOO_LARGE || st == IOTHUB_E_BAD_REQUEST || st == IOTHUB_E_NOT_FOUND ||
                  st == IOTHUB_E_UNAUTHORIZED;
    mqtt_server_publish_done(token, refused ? MQTT_PUB_REFUSED : MQTT_PUB_FAILED);
}

static void release(void *ctx, void *session)
{
    (void)ctx;
    free(session);
}

void mqtt_hub_backend(iothub_t *h, mqtt_backend_t *b)
{
    memset(b, 0, sizeof *b);
    b->ctx = h;
    b->authenticate = authenticate;
    b->publish = publish;
    b->release = release;
}
