/* load_common.h — what the device load generators (bench/mqtt_load.c, bench/http_load.c) share:
 * clocks, the server's CPU and RSS from /proc, the device file and SAS tokens, latency samples
 * and percentiles, and the per-message record file bench/devhost_e2e.mjs joins with the
 * SignalR pushes. */
#ifndef BENCH_LOAD_COMMON_H
#define BENCH_LOAD_COMMON_H

#include <stddef.h>

/* CLOCK_MONOTONIC in seconds: every interval the tools measure. */
double load_now_s(void);

/* Wall-clock milliseconds (CLOCK_REALTIME) of a load_now_s() instant, so that a send time can
 * be compared with a push received by another process (Node's timeOrigin + performance.now()). */
double load_wall_ms(double mono_s);

/* VmRSS of pid in KiB, or -1. */
long load_proc_rss_kb(int pid);

/* utime + stime of pid in seconds, or -1. */
double load_proc_cpu_s(int pid);

/* One device of the --devices file (lines "id base64key"; keys never on a command line). */
typedef struct load_device {
    char *id;
    char *sas; /* "SharedAccessSignature sr=...", valid 24 h, the C SDK's spelling */
} load_device_t;

/* Read the first n devices of file for hub; returns a calloc'd array, or NULL with a message
 * on stderr (unreadable file, fewer than n devices, a key that is not base64). */
load_device_t *load_devices_read(const char *file, const char *hub, int n);
void load_devices_free(load_device_t *d, int n);

/* Latency samples in ms. */
typedef struct load_lats {
    double *v;
    size_t  n, cap;
} load_lats_t;

void   load_lats_add(load_lats_t *l, double ms);
void   load_lats_sort(load_lats_t *l);
/* The p-th percentile (nearest rank) of sorted samples; 0 when there are none. */
double load_lats_pct(const load_lats_t *l, double p);
double load_lats_max(const load_lats_t *l);

/* The per-message record: one line per message, "device seq sent_wall_ms acked_wall_ms status"
 * (acked 0 and status 0 when no answer came). A device's seq counts its messages from 1 in
 * sending order. */
typedef struct load_rec {
    int      dev;
    unsigned seq;
    double   sent, acked; /* load_now_s() instants; acked 0 = none */
    int      status;
} load_rec_t;

typedef struct load_recs {
    load_rec_t *v;
    size_t      n, cap;
} load_recs_t;

/* Append a record for a message just sent; returns its index. */
size_t load_recs_add(load_recs_t *r, int dev, unsigned seq, double sent);
/* Write every record to path (device ids from devs); 0, or -1 with a message on stderr. */
int load_recs_write(const load_recs_t *r, const load_device_t *devs, const char *path);

#endif
