/* simulator — simulated IoT Hub devices for Enviromon's pipeline (docs/simulator.md).
 *
 * The command line only: parse the flags, gather the devices, check that their endpoints
 * answer, run, print the summary. The work is in run.c (engine), mqtt.c / http.c
 * (transports), sensor.c / message.c (what devices say) and report.c (what the user sees).
 * Exit status: 0 nothing lost, 1 a message was lost, 2 bad usage or unreachable endpoint. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "simulator/fleet.h"
#include "simulator/options.h"
#include "simulator/report.h"
#include "simulator/run.h"
#include "util/log.h"

static int fail(const char *msg)
{
    char line[600];
    snprintf(line, sizeof line, "simulator: %s", msg);
    log_redact(line);
    fprintf(stderr, "%s\n", line);
    return 2;
}

static uint64_t random_seed(void)
{
    uint32_t s;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = (uint32_t)time(NULL) ^ (uint32_t)getpid();
    return s;
}

int main(int argc, char **argv)
{
    sim_opts_t o;
    char err[600];
    if (sim_opts_parse(argc, argv, &o, err, sizeof err) != 0) {
        sim_opts_free(&o);
        return fail(err);
    }
    if (o.help) {
        fputs(sim_usage, stdout);
        sim_opts_free(&o);
        return 0;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        sim_opts_free(&o);
        return fail("libcurl failed to initialise");
    }
    int rc = 2;
    sim_fleet_t fleet;
    sim_run_t run;
    memset(&run, 0, sizeof run);
    long probe_ms = o.timeout > 10 ? (long)(o.timeout * 1000) : 10000; /* a start-up check: be patient */
    if (sim_fleet_load(&o, &fleet, probe_ms, err, sizeof err) != 0) {
        rc = fail(err);
        goto out_fleet;
    }
    o.ca_file = fleet.ca_file;
    uint64_t seed = o.seed_given ? o.seed : random_seed();
    if (sim_run_init(&run, &o, fleet.devs, fleet.n, fleet.endpoints, seed, err, sizeof err) != 0) {
        rc = fail(err);
        goto out_fleet;
    }
    fleet.devs = NULL; /* the run owns them now */
    fleet.n = 0;
    fleet.endpoints = NULL;
    rc = sim_run_main(&run);
    if (rc != 2) {
        if (o.json) {
            cJSON *j = sim_report_json(&run);
            char *s = j ? cJSON_PrintUnformatted(j) : NULL;
            if (s) {
                fputs(s, stdout);
                fputc('\n', stdout);
            } else {
                rc = fail("out of memory printing the summary");
            }
            free(s);
            cJSON_Delete(j);
            if (!o.quiet) sim_report_text(&run, stderr);
        } else {
            sim_report_text(&run, stdout);
        }
    }
    sim_run_free(&run);
out_fleet:
    sim_fleet_free(&fleet);
    curl_global_cleanup();
    sim_opts_free(&o);
    return rc;
}
