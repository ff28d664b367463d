/* options.h — the simulator's command line, parsed and checked.
 *
 * Owns every flag, its default and its limits (docs/simulator.md lists them). Parsing only:
 * nothing here reads files or starts processes. A bad flag or value is one line naming it. */
#ifndef ENVIROMON_SIM_OPTIONS_H
#define ENVIROMON_SIM_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "simulator/endpoint.h"

typedef struct sim_opts {
    /* devices: connection strings, a file of them, or N registered with devhost */
    const char   **device_strs;        /* --device (repeatable) */
    size_t         n_device_strs;
    const char    *devices_file;       /* --devices-file */
    long           devices;            /* --devices N (0: not used) */
    const char    *data_dir;           /* --data, devhost's data folder (default .devhost) */
    const char    *prefix;             /* --prefix, names of --devices devices (default sim-) */
    /* where and how */
    sim_tp_kind_t  transport;          /* --transport (default mqtt) */
    int            transport_given;
    const char    *endpoint;           /* --endpoint URL */
    const char    *ca_file;            /* --ca FILE */
    int            token_ttl;          /* --token-ttl seconds (default 3600) */
    /* what and when */
    double         interval;           /* --interval seconds per device (default 2) */
    int            interval_given;
    double         rate;               /* --rate messages/s across devices (0: use interval) */
    uint64_t       count;              /* --count messages per device (0: no limit) */
    double         duration;           /* --duration seconds (0: no limit) */
    double         faulty;             /* --faulty share 0..1 */
    uint64_t       seed;               /* --seed */
    int            seed_given;
    /* load */
    long           connections;        /* --connections: HTTP requests in flight at once (0: auto) */
    long           inflight;           /* --inflight: messages in flight per device (0: auto) */
    double         timeout;            /* --timeout seconds per attempt (default 30) */
    double         retry_for;          /* --retry-for seconds a message is retried (default 300) */
    /* output */
    int            json;               /* --json */
    int            quiet;              /* --quiet: no progress output */
    double         progress;           /* --progress seconds between plain progress lines (default 5) */
    int            help;               /* --help */
} sim_opts_t;

/* Parse argv[1..argc-1]. Returns 0, or -1 with a one-line message in err. o->device_strs is
 * allocated (free with sim_opts_free). */
int  sim_opts_parse(int argc, char **argv, sim_opts_t *o, char *err, size_t errlen);
void sim_opts_free(sim_opts_t *o);

/* The usage text. */
extern const char sim_usage[];

#endif
