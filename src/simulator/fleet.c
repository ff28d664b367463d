/* fleet.c — devices from the command line (see fleet.h). */
#include "simulator/fleet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "simulator/devhost.h"

int sim_fleet_add(sim_fleet_t *f, const char *connstr, const char *where, char *err, size_t errlen)
{
    sim_connstr_t cs;
    char why[240];
    if (sim_connstr_parse(connstr, &cs, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", where, why);
        return -1;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->devs[i].cs.device_id, cs.device_id) == 0 && strcmp(f->devs[i].cs.host, cs.host) == 0) {
            snprintf(err, errlen, "%s: device %s is given twice (IoT Hub allows one connection per device)", where,
                     cs.device_id);
            return -1;
        }
    }
    sim_device_t *n = realloc(f->devs, (f->n + 1) * sizeof *n);
    if (!n) { snprintf(err, errlen, "out of memory"); return -1; }
    f->devs = n;
    memset(&f->devs[f->n], 0, sizeof f->devs[f->n]);
    f->devs[f->n].cs = cs;
    f->n++;
    return 0;
}

static int load_file(sim_fleet_t *f, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "--devices-file %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    size_t before = f->n;
    while ((len = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        char *e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
        if (*s == '\0' || *s == '#') continue;
        char where[400];
        snprintf(where, sizeof where, "%s line %ld", path, lineno);
        if (sim_fleet_add(f, s, where, err, errlen) != 0) { rc = -1; break; }
    }
    if (line) memset(line, 0, cap); /* it held keys */
    free(line);
    fclose(fp);
    if (rc == 0 && f->n == before) {
        snprintf(err, errlen, "--devices-file %s has no connection strings", path);
        rc = -1;
    }
    return rc;
}

static sim_endpoint_t *endpoint_intern(sim_fleet_t *f, const sim_endpoint_t *ep)
{
    for (sim_endpoint_t *e = f->endpoints; e; e = e->next)
        if (strcmp(e->url, ep->url) == 0) return e;
    sim_endpoint_t *e = malloc(sizeof *e);
    if (!e) return NULL;
    *e = *ep;
    e->next = NULL;
    sim_endpoint_t **tail = &f->endpoints;
    while (*tail) tail = &(*tail)->next;
    *tail = e;
    return e;
}

int sim_fleet_resolve(sim_fleet_t *f, sim_opts_t *o, const char *endpoint, char *err, size_t errlen)
{
    sim_endpoint_t ep;
    if (endpoint) {
        if (sim_endpoint_parse(endpoint, &o->transport, o->transport_given, &ep, err, errlen) != 0) return -1;
        const sim_endpoint_t *e = endpoint_intern(f, &ep);
        if (!e) { snprintf(err, errlen, "out of memory"); return -1; }
        for (size_t i = 0; i < f->n; i++) f->devs[i].ep = e;
        return 0;
    }
    for (size_t i = 0; i < f->n; i++) {
        const sim_connstr_t *cs = &f->devs[i].cs;
        const char *target = cs->gateway[0] ? cs->gateway : cs->host;
        if (sim_endpoint_for_host(target, o->transport, &ep, err, errlen) != 0) return -1;
        const sim_endpoint_t *e = endpoint_intern(f, &ep);
        if (!e) { snprintf(err, errlen, "out of memory"); return -1; }
        f->devs[i].ep = e;
    }
    return 0;
}

static int register_local(sim_fleet_t *f, const sim_opts_t *o, char *err, size_t errlen)
{
    char bin[4096];
    sim_devhost_binary(bin, sizeof bin);
    for (long i = 1; i <= o->devices; i++) {
        char name[256], *cs = NULL;
        snprintf(name, sizeof name, "%s%ld", o->prefix, i);
        if (sim_devhost_device(bin, o->data_dir, name, &cs, err, errlen) != 0) return -1;
        char where[300];
        snprintf(where, sizeof where, "devhost device %s", name);
        int rc = sim_fleet_add(f, cs, where, err, errlen);
        memset(cs, 0, strlen(cs));
        free(cs);
        if (rc != 0) return -1;
    }
    return 0;
}

/* The CA to trust: --ca, or devhost's own with --devices. */
static int choose_ca(const sim_opts_t *o, sim_fleet_t *f, char *err, size_t errlen)
{
    if (o->ca_file) {
        if (access(o->ca_file, R_OK) != 0) {
            snprintf(err, errlen, "--ca %s: %s", o->ca_file, strerror(errno));
            return -1;
        }
        f->ca_file = strdup(o->ca_file);
    } else if (o->devices > 0 && f->endpoints->tls) {
        size_t n = strlen(o->data_dir) + sizeof "/ca.pem";
        if ((f->ca_file = malloc(n))) snprintf(f->ca_file, n, "%s/ca.pem", o->data_dir);
        if (f->ca_file && access(f->ca_file, R_OK) != 0) {
            snprintf(err, errlen, "devhost's CA %s is not there yet: start devhost once (it creates it), or give --ca",
                     f->ca_file);
            return -1;
        }
    }
    return 0;
}

static int probe_all(sim_fleet_t *f, long probe_ms, char *err, size_t errlen)
{
    for (sim_endpoint_t *e = f->endpoints; e; e = e->next)
        if (sim_endpoint_probe(e, f->ca_file, probe_ms, err, errlen) != 0) return -1;
    return 0;
}

int sim_fleet_load(sim_opts_t *o, sim_fleet_t *f, long probe_ms, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (o->devices > 0) {
        /* The local devhost: check it answers before registering anything. */
        const char *endpoint = o->endpoint;
        if (!endpoint) endpoint = o->transport == SIM_TP_HTTP ? "http://localhost:7071" : "mqtts://localhost:8883";
        sim_endpoint_t ep;
        if (sim_endpoint_parse(endpoint, &o->transport, o->endpoint ? o->transport_given : 1, &ep, err, errlen) != 0)
            return -1;
        if (!endpoint_intern(f, &ep)) { snprintf(err, errlen, "out of memory"); return -1; }
        if (choose_ca(o, f, err, errlen) != 0 || probe_all(f, probe_ms, err, errlen) != 0) return -1;
        if (register_local(f, o, err, errlen) != 0) return -1;
        for (size_t i = 0; i < f->n; i++) f->devs[i].ep = f->endpoints;
    } else {
        for (size_t i = 0; i < o->n_device_strs; i++) {
            char where[32];
            snprintf(where, sizeof where, "--device #%zu", i + 1);
            if (sim_fleet_add(f, o->device_strs[i], where, err, errlen) != 0) return -1;
        }
        if (o->devices_file && load_file(f, o->devices_file, err, errlen) != 0) return -1;
        if (sim_fleet_resolve(f, o, o->endpoint, err, errlen) != 0) return -1;
        if (choose_ca(o, f, err, errlen) != 0 || probe_all(f, probe_ms, err, errlen) != 0) return -1;
    }
    if (o->connections && o->transport == SIM_TP_MQTT) {
        snprintf(err, errlen, "--connections applies to --transport http (over MQTT each device has its own connection)");
        return -1;
    }
    return 0;
}

void sim_fleet_free(sim_fleet_t *f)
{
    for (size_t i = 0; i < f->n; i++) sim_device_free(&f->devs[i]);
    free(f->devs);
    while (f->endpoints) {
        sim_endpoint_t *e = f->endpoints;
        f->endpoints = e->next;
        free(e);
    }
    free(f->ca_file);
    memset(f, 0, sizeof *f);
}
