/* options.c — command-line parsing (see options.h). */
#include "simulator/options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char sim_usage[] =
    "usage: simulator [devices] [target] [schedule] [output]\n"
    "\n"
    "Simulated IoT Hub devices sending environmental telemetry (temperature, humidity,\n"
    "pressure, light) over MQTT or HTTPS, to devhost or to a real IoT Hub.\n"
    "\n"
    "devices (one of):\n"
    "  --device CONNSTR        a device connection string (repeatable):\n"
    "                          HostName=<hub>.azure-devices.net;DeviceId=<id>;SharedAccessKey=<key>\n"
    "                          [;GatewayHostName=<host[:port]>]\n"
    "  --devices-file FILE     connection strings, one a line ('#' comments, blank lines ok)\n"
    "  --devices N             register N devices with the local devhost (devhost device add)\n"
    "                          and send to it; with --data DIR (devhost's data folder,\n"
    "                          default .devhost) and --prefix P (device names P1..PN, default sim-)\n"
    "target:\n"
    "  --transport mqtt|http   MQTT 3.1.1 over TLS (default, as real devices) or HTTPS REST\n"
    "  --endpoint URL          http://host:port, https://..., mqtts://host:port (default: the\n"
    "                          connection string's GatewayHostName, else its HostName, with the\n"
    "                          transport's scheme and port; with --devices the local devhost,\n"
    "                          http://localhost:7071 or mqtts://localhost:8883)\n"
    "  --ca FILE               CA certificate(s) to trust (devhost: <data>/ca.pem, the default\n"
    "                          with --devices); otherwise the system's CAs\n"
    "  --token-ttl SECONDS     SAS token lifetime, renewed at 80 % (default 3600)\n"
    "schedule:\n"
    "  --interval SECONDS      between a device's messages (default 2; fractions allowed)\n"
    "  --rate N                load mode: N messages/s in total, spread over the devices\n"
    "  --count N               messages per device, then stop\n"
    "  --duration SECONDS      stop taking readings after this long (default: until Ctrl-C)\n"
    "  --faulty SHARE          share of faulty readings, 0..1 (e.g. 0.02; default 0)\n"
    "  --seed N                reproducible readings (default: random, printed in the summary)\n"
    "  --connections N         HTTP: requests in flight at once (default: devices, at most 64)\n"
    "  --inflight N            messages in flight per device (default: HTTP 1, MQTT 16)\n"
    "  --timeout SECONDS       per attempt: HTTP request / MQTT CONNACK or PUBACK (default 30)\n"
    "  --retry-for SECONDS     retry a message this long before counting it lost (default 300)\n"
    "output:\n"
    "  --json                  print the summary as one JSON object on stdout\n"
    "  --progress SECONDS      interval of progress lines when stderr is not a terminal (default 5)\n"
    "  --quiet                 no progress output\n"
    "  --help\n"
    "\n"
    "Exit status: 0 when every message was acknowledged, 1 when any was lost, 2 on bad usage or\n"
    "an unreachable endpoint.\n";

static int need_num(const char *flag, const char *v, double min, double max, double *out, char *err,
                    size_t errlen)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !isfinite(d) || d < min || d > max) {
        snprintf(err, errlen, "%s needs a number from %g to %g%s%s%s", flag, min, max, v ? " (got '" : "",
                 v ? v : "", v ? "')" : "");
        return -1;
    }
    *out = d;
    return 0;
}

static int need_int(const char *flag, const char *v, double min, double max, double *out, char *err,
                    size_t errlen)
{
    if (need_num(flag, v, min, max, out, err, errlen) != 0) return -1;
    if (floor(*out) != *out) {
        snprintf(err, errlen, "%s needs a whole number (got '%s')", flag, v);
        return -1;
    }
    return 0;
}

int sim_opts_parse(int argc, char **argv, sim_opts_t *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->transport = SIM_TP_MQTT;
    o->token_ttl = 3600;
    o->interval = 2;
    o->timeout = 30;
    o->retry_for = 300;
    o->progress = 5;
    o->data_dir = ".devhost";
    o->prefix = "sim-";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        int takes = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { o->help = 1; takes = 0; }
        else if (!strcmp(a, "--json")) { o->json = 1; takes = 0; }
        else if (!strcmp(a, "--quiet")) { o->quiet = 1; takes = 0; }
        else if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return -1;
        } else if (!v || !strncmp(v, "--", 2)) {
            static const char *const known[] = {"--device", "--devices-file", "--devices", "--data", "--prefix",
                                                "--transport", "--endpoint", "--ca", "--token-ttl", "--interval",
                                                "--rate", "--count", "--duration", "--faulty", "--seed",
                                                "--connections", "--inflight", "--timeout", "--retry-for",
                                                "--progress", NULL};
            for (const char *const *k = known; *k; k++)
                if (!strcmp(a, *k)) { snprintf(err, errlen, "%s needs a value", a); return -1; }
            snprintf(err, errlen, "unknown option '%s' (see --help)", a);
            return -1;
        } else if (!strcmp(a, "--device")) {
            const char **n = realloc(o->device_strs, (o->n_device_strs + 1) * sizeof *n);
            if (!n) { snprintf(err, errlen, "out of memory"); return -1; }
            o->device_strs = n;
            o->device_strs[o->n_device_strs++] = v;
        } else if (!strcmp(a, "--devices-file")) o->devices_file = v;
        else if (!strcmp(a, "--devices")) {
            if (need_int(a, v, 1, 100000, &d, err, errlen)) return -1;
            o->devices = (long)d;
        } else if (!strcmp(a, "--data")) o->data_dir = v;
        else if (!strcmp(a, "--prefix")) o->prefix = v;
        else if (!strcmp(a, "--transport")) {
            if (!strcmp(v, "mqtt")) o->transport = SIM_TP_MQTT;
            else if (!strcmp(v, "http")) o->transport = SIM_TP_HTTP;
            else { snprintf(err, errlen, "--transport must be mqtt or http (got '%s')", v); return -1; }
            o->transport_given = 1;
        } else if (!strcmp(a, "--endpoint")) o->endpoint = v;
        else if (!strcmp(a, "--ca")) o->ca_file = v;
        else if (!strcmp(a, "--token-ttl")) {
            if (need_int(a, v, 5, 31536000, &d, err, errlen)) return -1;
            o->token_ttl = (int)d;
        } else if (!strcmp(a, "--interval")) {
            if (need_num(a, v, 0.001, 86400, &d, err, errlen)) return -1;
            o->interval = d;
            o->interval_given = 1;
        } else if (!strcmp(a, "--rate")) {
            if (need_num(a, v, 0.001, 1e6, &d, err, errlen)) return -1;
            o->rate = d;
        } else if (!strcmp(a, "--count")) {
            if (need_int(a, v, 1, 1e12, &d, err, errlen)) return -1;
            o->count = (uint64_t)d;
        } else if (!strcmp(a, "--duration")) {
            if (need_num(a, v, 0.001, 1e9, &d, err, errlen)) return -1;
            o->duration = d;
        } else if (!strcmp(a, "--faulty")) {
            if (need_num(a, v, 0, 1, &d, err, errlen)) return -1;
            o->faulty = d;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') {
                snprintf(err, errlen, "--seed needs a whole number from 0 to 18446744073709551615 (got '%s')", v);
                return -1;
            }
            o->seed = s;
            o->seed_given = 1;
        } else if (!strcmp(a, "--connections")) {
            if (need_int(a, v, 1, 10000, &d, err, errlen)) return -1;
            o->connections = (long)d;
        } else if (!strcmp(a, "--inflight")) {
            if (need_int(a, v, 1, 1000, &d, err, errlen)) return -1;
            o->inflight = (long)d;
        } else if (!strcmp(a, "--timeout")) {
            if (need_num(a, v, 0.1, 3600, &d, err, errlen)) return -1;
            o->timeout = d;
        } else if (!strcmp(a, "--retry-for")) {
            if (need_num(a, v, 0, 86400 * 7, &d, err, errlen)) return -1;
            o->retry_for = d;
        } else if (!strcmp(a, "--progress")) {
            if (need_num(a, v, 0.1, 3600, &d, err, errlen)) return -1;
            o->progress = d;
        } else {
            snprintf(err, errlen, "unknown option '%s' (see --help)", a);
            return -1;
        }
        i += takes;
    }
    if (o->help) return 0;
    int sources = (o->n_device_strs > 0 || o->devices_file) + (o->devices > 0);
    if (sources == 0) {
        snprintf(err, errlen, "no devices: give --device CONNSTR, --devices-file FILE or --devices N (see --help)");
        return -1;
    }
    if (sources > 1) {
        snprintf(err, errlen, "--devices N registers local devices: use it without --device/--devices-file");
        return -1;
    }
    if (o->rate > 0 && o->interval_given) {
        snprintf(err, errlen, "give --interval or --rate, not both (--rate sets each device's interval)");
        return -1;
    }
    if (o->connections && o->transport_given && o->transport == SIM_TP_MQTT) {
        snprintf(err, errlen, "--connections applies to --transport http (over MQTT each device has its own connection)");
        return -1;
    }
    return 0;
}

void sim_opts_free(sim_opts_t *o)
{
    free(o->device_strs);
    o->device_strs = NULL;
    o->n_device_strs = 0;
}
