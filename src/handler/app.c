/* app.c — building and tearing down the handler's process-wide state (see app.h). */
#include "handler/app.h"

#include "azure/signalr_token.h"
#include "azure/table.h"
#include "telemetry/event_trigger.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void app_free_signalr(app_t *app)
{
    if (app->signalr) sr_conn_free(app->signalr);
    free(app->signalr);
    free(app->signalr_client_url);
    free(app->signalr_client_aud);
    app->signalr = NULL;
    app->signalr_client_url = app->signalr_client_aud = NULL;
}

/* Parse AzureSignalRConnectionString and derive the client URL and audience Negotiate hands
 * out. On failure app->signalr stays NULL and app->signalr_error says why. */
static void app_init_signalr(app_t *app)
{
    if (!app->cfg.signalr_connection || !*app->cfg.signalr_connection) {
        snprintf(app->signalr_error, sizeof app->signalr_error, "the AzureSignalRConnectionString setting is not set");
        return;
    }
    char serr[200], url[1200], aud[1200];
    app->signalr = calloc(1, sizeof *app->signalr);
    if (!app->signalr) {
        snprintf(app->signalr_error, sizeof app->signalr_error, "out of memory");
        return;
    }
    if (sr_conn_parse(app->cfg.signalr_connection, app->signalr, serr, sizeof serr) != 0) {
        free(app->signalr);
        app->signalr = NULL;
        snprintf(app->signalr_error, sizeof app->signalr_error, "setting AzureSignalRConnectionString: %s", serr);
        log_warn(NULL, "%s", app->signalr_error);
        return;
    }
    if (sr_client_url(app->signalr, app->cfg.signalr_hub, url, sizeof url) != 0 ||
        sr_client_audience(app->signalr, app->cfg.signalr_hub, aud, sizeof aud) != 0 ||
        !(app->signalr_client_url = strdup(url)) || !(app->signalr_client_aud = strdup(aud))) {
        app_free_signalr(app);
        snprintf(app->signalr_error, sizeof app->signalr_error,
                 "setting AzureSignalRConnectionString: the endpoint or hub name is too long to build the client URL");
        log_warn(NULL, "%s", app->signalr_error);
    }
}

/* Table names and the PartitionKey are used in every write: one the service refuses would
 * refuse every batch, so it is a start-up error, not something to find out per event. */
static int check_storage_names(const config_t *cfg, char *err, size_t errlen)
{
    const char *settings[] = {"DeviceStateTable", "CalibrationTable", "PoisonEventsTable"};
    const char *names[] = {cfg->device_state_table, cfg->calibration_table, cfg->poison_table};
    char why[160];
    for (int i = 0; i < 3; i++) {
        if (!table_name_valid(names[i], why, sizeof why)) {
            snprintf(err, errlen, "setting %s: '%.64s' is not a valid table name: %s", settings[i], names[i], why);
            return -1;
        }
    }
    if (!table_key_valid(cfg->partition_key, why, sizeof why)) {
        snprintf(err, errlen, "setting PartitionKey: not a valid Table Storage key: %s", why);
        return -1;
    }
    return 0;
}

int app_init(app_t *app, int require_port, char *err, size_t errlen)
{
    memset(app, 0, sizeof *app);
    if (config_load(&app->cfg, require_port, err, errlen) != 0) return -1;
    if (check_storage_names(&app->cfg, err, errlen) != 0) {
        config_free(&app->cfg);
        return -1;
    }

    if (app->cfg.storage_connection) {
        table_options_t opts = {
            .timeout_ms = app->cfg.storage_timeout_ms,
            .connect_timeout_ms = app->cfg.storage_timeout_ms < 3000 ? app->cfg.storage_timeout_ms : 3000,
            .retries = app->cfg.storage_retries,
            .retry_base_ms = 100,
        };
        char terr[256];
        app->tables = table_client_new(app->cfg.storage_connection, &opts, terr, sizeof terr);
        if (!app->tables) {
            /* A malformed connection string is a configuration error: say so at start-up. */
            snprintf(err, errlen, "setting StorageConnectionString (or AzureWebJobsStorage): %s", terr);
            config_free(&app->cfg);
            return -1;
        }
    } else {
        snprintf(app->tables_error, sizeof app->tables_error,
                 "no storage configured: set StorageConnectionString or AzureWebJobsStorage");
        log_warn(NULL, "%s; storage-backed functions will fail", app->tables_error);
    }
    /* Parsed once here; a malformed string is reported by the functions that need it (Negotiate
     * answers 500 naming the setting), so it does not stop EventTrigger from running. */
    app_init_signalr(app);
    if (telemetry_app_init(app, err, errlen) != 0) {
        app_free_signalr(app);
        table_client_free(app->tables);
        config_free(&app->cfg);
        return -1;
    }
    return 0;
}

void app_free(app_t *app)
{
    telemetry_app_free(app);
    app_free_signalr(app);
    table_client_free(app->tables);
    config_free(&app->cfg);
    memset(app, 0, sizeof *app);
}
