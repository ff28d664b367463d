/* main.c — the `handler` program: Enviromon's Azure Functions custom handler.
 *
 * The Functions host starts it with FUNCTIONS_CUSTOMHANDLER_PORT set and the app settings
 * in the environment, polls GET / until it answers, then POSTs invocations. This file only
 * wires things together: settings → app state → server, a clean exit on SIGTERM/SIGINT
 * (stop accepting, finish in-flight invocations, exit 0), and handing freed memory back to the
 * system when idle. */
#include "handler/app.h"
#include "protocol/server.h"
#include "util/log.h"
#include "util/malloc_tune.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_MS 30000 /* how long in-flight invocations may take to finish on shutdown */
#define IDLE_TRIM_S 1  /* idle this long (no request finished, none in flight): malloc_trim */

static void usage(void)
{
    printf("usage: handler\n"
           "Enviromon's Azure Functions custom handler. Configured entirely by environment\n"
           "variables (app settings); FUNCTIONS_CUSTOMHANDLER_PORT is required. See README.md.\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage();
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "handler: unexpected argument '%s' (the handler takes no arguments; try --help)\n", argv[1]);
        return 2;
    }
    /* Block the stop signals before any thread starts, so that every thread inherits the
     * mask and only sigwait() below sees them. SIGPIPE: a host that hangs up mid-response
     * must not kill the process. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Two arenas, large blocks mmap'ed (util/malloc_tune.h). Measured in bench/
     * (docs/benchmarks.md): EventTrigger peak RSS 17.6 MiB → 15.2 MiB and CPU/event 10.3 → 9.0 µs. */
    malloc_tune_for_threads();

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "handler: libcurl failed to initialise\n");
        return 1;
    }
    app_t app;
    char err[512];
    if (app_init(&app, 1, err, sizeof err) != 0) {
        fprintf(stderr, "handler: %s\n", err);
        curl_global_cleanup();
        return 1;
    }
    server_t *srv = server_start(&app, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "handler: %s\n", err);
        app_free(&app);
        curl_global_cleanup();
        return 1;
    }
    log_info(NULL, "Enviromon handler listening on 127.0.0.1:%d", app.cfg.port);

    /* Wait for a stop signal; meanwhile give freed memory back to the system once the handler
     * has been idle for a second (a burst of large batches must not leave the RSS up). */
    int sig = -1;
    unsigned long seen = server_activity(srv), trimmed = seen;
    while (sig < 0) {
        struct timespec tick = {IDLE_TRIM_S, 0};
        sig = sigtimedwait(&stop, NULL, &tick);
        if (sig >= 0) break;
        unsigned long now = server_activity(srv);
        if (now == seen && now != trimmed && server_inflight(srv) == 0) {
            malloc_tune_trim();
            trimmed = now;
        }
        seen = now;
    }
    log_info(NULL, "received %s: finishing in-flight invocations", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    server_stop(srv, DRAIN_MS);
    app_free(&app);
    curl_global_cleanup();
    log_info(NULL, "stopped");
    return 0;
}
