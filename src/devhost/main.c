/* devhost — Enviromon's local stack.
 *
 * Subcommands: `signalr` runs the local SignalR Service alone (signalr_service.h);
 * `start` and `device add` belong to the devhost issue and are not implemented yet.
 * SIGINT/SIGTERM stop the service gracefully (clients get a close message) and exit 0. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devhost/iothub/device_cli.h"
#include "devhost/signalr/signalr_service.h"
#include "util/log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: devhost signalr [--connection-string STR] [--host ADDR] [--port N]\n"
            "                       [--ping-interval-ms N] [--poll-timeout-ms N]\n"
            "                       [--handshake-timeout-ms N] [--request-timeout-ms N]\n"
            "                       [--max-queue-bytes N] [--max-connections N] [--threads N]\n"
            "       devhost start            (not implemented yet)\n"
            "       devhost device add|list|show|remove|regenerate-key|token ...  (devhost device --help)\n"
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
    if (strcmp(cmd, "start") == 0 || strcmp(cmd, "device") == 0) {
        fprintf(stderr, "devhost %s: not implemented yet (this build provides `devhost signalr` only)\n", cmd);
        return 2;
    }
    fprintf(stderr, "devhost: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
