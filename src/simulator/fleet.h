/* fleet.h — the devices of a run, from the command line.
 *
 * Owns turning --device / --devices-file / --devices N into devices with their endpoints:
 * connection strings parsed (a bad one is reported with where it came from: "--device #2",
 * "devices.txt line 7"), duplicate device ids refused (two connections with one id would
 * keep disconnecting each other on IoT Hub), endpoints resolved (endpoint.h) and de-duplicated,
 * the endpoints probed once (a dead or mistrusted endpoint is one line before anything starts),
 * and for --devices N the local devices registered with `devhost device add` (devhost.h). */
#ifndef ENVIROMON_SIM_FLEET_H
#define ENVIROMON_SIM_FLEET_H

#include <stddef.h>

#include "simulator/device.h"
#include "simulator/endpoint.h"
#include "simulator/options.h"

typedef struct sim_fleet {
    sim_device_t   *devs;       /* calloc'ed array */
    size_t          n;
    sim_endpoint_t *endpoints;  /* list of distinct endpoints (malloc'ed nodes) */
    char           *ca_file;    /* the CA to trust (--ca, or devhost's with --devices); may be NULL */
} sim_fleet_t;

/* Build the fleet for o (o->transport may be updated from an --endpoint scheme) and probe
 * its endpoints (within probe_ms each; with --devices before registering anything). Returns
 * 0, or -1 with one line in err. */
int  sim_fleet_load(sim_opts_t *o, sim_fleet_t *f, long probe_ms, char *err, size_t errlen);
/* Add one device from a connection string; where names its origin for messages. */
int  sim_fleet_add(sim_fleet_t *f, const char *connstr, const char *where, char *err, size_t errlen);
/* Resolve every device's endpoint (explicit URL, or from its connection string). */
int  sim_fleet_resolve(sim_fleet_t *f, sim_opts_t *o, const char *endpoint, char *err, size_t errlen);
void sim_fleet_free(sim_fleet_t *f);

#endif
