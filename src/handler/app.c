/* app.c — building and tearing down the handler's process-wide state (see app.h). */
#include "handler/app.h"

#include "azure/table.h"
#include "util/log.h"

#include <stdio.h>
#include <string.h>

int  telemetry_app_init(app_t *app, char *err, size_t errlen);
void telemetry_app_free(app_t *app);

/* Placeholders until the telemetry module provides its own (strong) definitions. */
__attribute__((weak)) int telemetry_app_init(app_t *app, char *err, size_t errlen)
{
    (void)app; (void)err; (void)errlen;
    return 0;
}
__attribute__((weak)) void telemetry_app_free(app_t *app) { (void)app; }

int app_init(app_t *app, int require_port, char *err, size_t errlen)
{
    memset(app, 0, sizeof *app);
    if (config_load(&app->cfg, require_port, err, errlen) != 0) return -1;

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
    if (telemetry_app_init(app, err, errlen) != 0) {
        table_client_free(app->tables);
        config_free(&app->cfg);
        return -1;
    }
    return 0;
}

void app_free(app_t *app)
{
    telemetry_app_free(app);
    table_client_free(app->tables);
    config_free(&app->cfg);
    memset(app, 0, sizeof *app);
}
