/* devhost — Enviromon's local stack. This file is the command line only.
 *
 * Subcommands: `start` runs the function app as `func start` does (host/host.h: the handler,
 * HTTP triggers, bindings, the dashboard folder, the local SignalR Service when needed) with the
 * local IoT Hub plugged in (iothub/iothub_plugin.h: the device API, the eventHubTrigger source;
 * mqtt/mqtt_plugin.h: the MQTT endpoint, the local CA, --tls);
 * `signalr` runs the local SignalR Service alone (signalr/signalr_service.h); `device ...`
 * manages the local IoT Hub's devices (iothub/device_cli.h). SIGINT/SIGTERM stop `start` and
 * `signalr` gracefully and exit 0. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devhost/host/host.h"
#include "devhost/iothub/device_cli.h"
#include "devhost/iothub/iothub_plugin.h"
#include "devhost/mqtt/mqtt_plugin.h"
#include "devhost/signalr/signalr_service.h"
#include "util/log.h"
#include "util/malloc_tune.h"

#include <curl/curl.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: devhost start [--script-root DIR] [--port N] [--cors ORIGINS] [--cors-credentials]\n"
            "                     [--enable-auth] [--data DIR] [--hub NAME] [--partitions N]\n"
            "                     [--mqtt-port N | --no-mqtt] [--tls]\n"
            "       devhost signalr [--connection-string STR] [--host ADDR] [--port N]\n"
            "                       [--ping-interval-ms N] [--poll-timeout-ms N]\n"
            "                       [--handshake-timeout-ms N] [--request-timeout-ms N]\n"
            "                       [--max-queue-bytes N] [--max-connections N] [--threads N]\n"
            "       devhost device add|list|show|remove|regenerate-key|token ...  (devhost device --help)\n"
            "\n"
            "start: runs the function app in DIR (default: the current directory) as `func start` does:\n"
            "  reads host.json, */function.json and local.settings.json, starts the custom handler,\n"
            "  serves the HTTP functions at http://localhost:7071/api/... (Host.LocalHttpPort or --port),\n"
            "  the dashboard/ folder at /, /admin/host/status, and the local SignalR Service in-process when\n"
            "  the SignalR connection string names localhost and nothing listens there.\n"
            "  --cors and --cors-credentials override Host.CORS / Host.CORSCredentials; --enable-auth enforces\n"
            "  authLevel with keys generated once into the data folder (--data, default .devhost/).\n"
            "  The local IoT Hub (--hub NAME, default enviromon; --partitions N, default 4, fixed when the\n"
            "  hub is created) takes devices' telemetry at POST /devices/{id}/messages/events on the same\n"
            "  port and feeds the eventHubTrigger functions, and IoT Hub's MQTT over TLS on --mqtt-port\n"
            "  (default 8883, 0 for any free port; --no-mqtt for none) with a local CA made in the data\n"
            "  folder (ca.pem); --tls serves HTTPS instead of HTTP on the port with the same certificate.\n"
            "  See docs/devhost.md, docs/iothub.md and docs/mqtt.md.\n"
            "\n"
            "signalr: the local Azure SignalR Service (serverless REST API + client endpoint).\n"
            "  The connection string comes from --connection-string, else AzureSignalRConnectionString,\n"
            "  else the emulator's well-known string (Endpoint=http://localhost;Port=8888;...).\n"
            "  It listens on --host (default 127.0.0.1) at the connection string's Port (or --port).\n");
}

static int parse_num(const char *flag, const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || n < min || n > max) {
        fprintf(stderr, "devhost: %s needs an integer from %ld to %ld\n", flag, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

static int run_signalr(int argc, char **argv)
{
    sr_service_opts_t o;
    sr_service_opts_default(&o);
    const char *cs = getenv("AzureSignalRConnectionString");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "devhost signalr: %s needs a value (or is unknown)\n", a); return 2; }
        if (strcmp(a, "--connection-string") == 0) cs = v;
        else if (strcmp(a, "--host") == 0) o.host = v;
        else if (strcmp(a, "--port") == 0) {
            if (parse_num(a, v, 1, 65535, &n)) return 2;
            o.port = (int)n;
        } else if (strcmp(a, "--ping-interval-ms") == 0) {
            if (parse_num(a, v, 10, 3600000, &n)) return 2;
            o.ping_interval_ms = (int)n;
        } else if (strcmp(a, "--poll-timeout-ms") == 0) {
            if (parse_num(a, v, 10, 3600000, &n)) return 2;
            o.poll_timeout_ms = (int)n;
        } else if (strcmp(a, "--handshake-timeout-ms") == 0) {
            if (parse_num(a, v, 10, 3600000, &n)) return 2;
            o.handshake_timeout_ms = (int)n;
        } else if (strcmp(a, "--request-timeout-ms") == 0) {
            if (parse_num(a, v, 10, 3600000, &n)) return 2;
            o.request_timeout_ms = (int)n;
        } else if (strcmp(a, "--max-connections") == 0) {
            if (parse_num(a, v, 16, 1000000, &n)) return 2;
            o.max_connections = (unsigned)n;
        } else if (strcmp(a, "--max-queue-bytes") == 0) {
            if (parse_num(a, v, 1024, LONG_MAX, &n)) return 2;
            o.max_queue_bytes = (size_t)n;
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_num(a, v, 1, 64, &n)) return 2;
            o.threads = (unsigned)n;
        } else {
            fprintf(stderr, "devhost signalr: unknown option %s (see devhost --help)\n", a);
            return 2;
        }
        i++;
    }
    o.connection_string = cs && *cs ? cs : SR_DEFAULT_CONNECTION_STRING;

    /* Block the stop signals in every thread; main waits for them with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        fprintf(stderr, "devhost signalr: cannot block signals\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    sr_service_t *s = sr_service_start(&o, err, sizeof err);
    if (!s) {
        log_error(NULL, "devhost signalr: %s", err);
        return 1;
    }
    int sig = 0;
    if (sigwait(&set, &sig) != 0) sig = SIGTERM;
    log_info(NULL, "devhost signalr: %s received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    sr_service_stop(s);
    log_info(NULL, "devhost signalr: stopped");
    return 0;
}

static int run_start(int argc, char **argv)
{
    dh_host_opts_t o = {.cors_credentials = -1};
    iothub_plugin_opts_t ho = {0};
    mqtt_plugin_opts_t mo = {.port = MQTT_PLUGIN_DEFAULT_PORT};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); return 0; }
        if (strcmp(a, "--cors-credentials") == 0) { o.cors_credentials = 1; continue; }
        if (strcmp(a, "--enable-auth") == 0 || strcmp(a, "--enableAuth") == 0) { o.enable_auth = 1; continue; }
        if (strcmp(a, "--tls") == 0) { mo.tls = 1; continue; }
        if (strcmp(a, "--no-mqtt") == 0) { mo.port = -1; continue; }
        if (!v) { fprintf(stderr, "devhost start: %s needs a value (or is unknown; see devhost --help)\n", a); return 2; }
        if (strcmp(a, "--script-root") == 0) o.script_root = v;
        else if (strcmp(a, "--data") == 0) o.data_dir = v;
        else if (strcmp(a, "--cors") == 0) o.cors = v;
        else if (strcmp(a, "--hub") == 0) ho.name = v;
        else if (strcmp(a, "--port") == 0 || strcmp(a, "-p") == 0) {
            if (parse_num(a, v, 1, 65535, &n)) return 2;
            o.port = (int)n;
        } else if (strcmp(a, "--mqtt-port") == 0) {
            if (parse_num(a, v, 0, 65535, &n)) return 2;
            mo.port = (int)n;
        } else if (strcmp(a, "--partitions") == 0) {
            if (parse_num(a, v, 1, IOTHUB_MAX_PARTITIONS, &n)) return 2;
            ho.partitions = (int)n;
        } else {
            fprintf(stderr, "devhost start: unknown option %s (see devhost --help)\n", a);
            return 2;
        }
        i++;
    }
    if (ho.name && !iothub_valid_name(ho.name)) {
        fprintf(stderr, "devhost start: --hub '%s': an IoT Hub name is 3 to 50 letters, digits or '-', not starting or "
                "ending with '-'\n", ho.name);
        return 2;
    }
    /* Fully buffered: the host flushes stdout every 200 ms (a write per log line would cost
     * more than the rest of a request's logging). */
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    malloc_tune_for_threads();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "devhost start: libcurl failed to initialise\n");
        return 1;
    }
    char err[2048];
    int rc = 1;
    dh_host_t *h = dh_host_new(&o, err, sizeof err);
    iothub_t *hub = h ? iothub_plugin_attach(h, &ho, err, sizeof err) : NULL;
    if (hub && mqtt_plugin_attach(h, hub, &mo, err, sizeof err) == 0)
        rc = dh_host_run(h);
    else
        log_error(NULL, "devhost start: %s", err);
    dh_host_free(h);
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (strcmp(cmd, "signalr") == 0) return run_signalr(argc - 2, argv + 2);
    if (strcmp(cmd, "device") == 0) return iothub_device_cli(argc - 2, argv + 2);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "start") == 0) return run_start(argc - 2, argv + 2);
    fprintf(stderr, "devhost: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
