/* load_common.c — clocks, /proc readings, devices and SAS tokens, latency samples and message
 * records for the device load generators (see load_common.h). Kept out of src/: only the
 * benchmarks use it. */
#define _GNU_SOURCE
#include "load_common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devhost/iothub/sas.h"
#include "util/base64.h"

double load_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double load_wall_ms(double mono_s)
{
    static double offset_ms;
    static int    have;
    if (!have) {
        struct timespec w;
        clock_gettime(CLOCK_REALTIME, &w);
        offset_ms = ((double)w.tv_sec * 1e3 + (double)w.tv_nsec / 1e6) - load_now_s() * 1e3;
        have = 1;
    }
    return mono_s * 1e3 + offset_ms;
}

long load_proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

double load_proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A device token for 24 h, made the way the C SDK makes it (lowercase percent-encoding). */
static char *make_sas(const char *hub, const char *id, const char *key_b64)
{
    unsigned char key[128];
    size_t kl = strlen(key_b64);
    long n = kl / 4 * 3 <= sizeof key ? base64_decode(key_b64, kl, key) : -1;
    char res[512], sr[1024], tok[2048];
    snprintf(res, sizeof res, "%s.azure-devices.net/devices/%s", hub, id);
    if (n <= 0 || iothub_sas_url_encode(res, 0, sr, sizeof sr) < 0 ||
        iothub_sas_make(sr, key, (size_t)n, (long long)time(NULL) + 24 * 3600, NULL, tok, sizeof tok) != 0)
        return NULL;
    return strdup(tok);
}

load_device_t *load_devices_read(const char *file, const char *hub, int n)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "cannot read %s: %s\n", file, strerror(errno));
        return NULL;
    }
    load_device_t *d = calloc((size_t)n, sizeof *d);
    char id[256], key[256];
    int i = 0, bad = !d;
    while (!bad && i < n && fscanf(f, "%255s %255s", id, key) == 2) {
        d[i].id = strdup(id);
        d[i].sas = make_sas(hub, id, key);
        if (!d[i].sas) {
            fprintf(stderr, "the key of %s in %s is not base64\n", id, file);
            bad = 1;
        }
        i++;
    }
    fclose(f);
    if (!bad && i < n) {
        fprintf(stderr, "%s has only %d devices, %d wanted\n", file, i, n);
        bad = 1;
    }
    if (bad) {
        load_devices_free(d, n);
        return NULL;
    }
    return d;
}

void load_devices_free(load_device_t *d, int n)
{
    for (int i = 0; d && i < n; i++) {
        free(d[i].id);
        free(d[i].sas);
    }
    free(d);
}

void load_lats_add(load_lats_t *l, double ms)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 65536;
        double *v = realloc(l->v, cap * sizeof *v);
        if (!v) return; /* a sample lost rather than a crash mid-run */
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void load_lats_sort(load_lats_t *l)
{
    if (l->n) qsort(l->v, l->n, sizeof *l->v, cmp_double);
}

double load_lats_pct(const load_lats_t *l, double p)
{
    if (!l->n) return 0;
    size_t i = (size_t)ceil(p / 100.0 * (double)l->n);
    return l->v[i ? i - 1 : 0];
}

double load_lats_max(const load_lats_t *l)
{
    return l->n ? l->v[l->n - 1] : 0.0;
}

size_t load_recs_add(load_recs_t *r, int dev, unsigned seq, double sent)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 65536;
        load_rec_t *v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "out of memory for message records\n");
            exit(1);
        }
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n] = (load_rec_t){dev, seq, sent, 0, 0};
    return r->n++;
}

int load_recs_write(const load_recs_t *r, const load_device_t *devs, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < r->n; i++) {
        const load_rec_t *x = &r->v[i];
        fprintf(f, "%s %u %.3f %.3f %d\n", devs[x->dev].id, x->seq, load_wall_ms(x->sent),
                x->acked > 0 ? load_wall_ms(x->acked) : 0.0, x->status);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}
