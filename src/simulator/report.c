/* report.c — progress lines, notes and the summary (see report.h). */
#include "simulator/report.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "simulator/run.h"
#include "util/buf.h"
#include "util/log.h"

#define LIVE_REFRESH_NS 250000000LL
#define RATE_WINDOW_NS  1000000000LL

static void clear_live(sim_run_t *r)
{
    if (r->live_line) {
        fputs("\r\033[K", stderr);
        r->live_line = 0;
    }
}

/* Write s (redacted) and a newline to f. */
static void put_line(FILE *f, char *s)
{
    log_redact(s);
    fputs(s, f);
    fputc('\n', f);
    fflush(f);
}

void sim_report_note(sim_run_t *r, const char *fmt, ...)
{
    buf_t b = BUF_INIT;
    va_list ap;
    buf_puts(&b, "simulator: ");
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    clear_live(r);
    if (!b.oom) put_line(stderr, b.data);
    buf_free(&b);
}

static double ms(double us) { return us / 1000.0; }

static double elapsed_s(const sim_run_t *r, int64_t now)
{
    int64_t from = r->t0_ns ? r->t0_ns : r->start_ns;
    return (double)(now - from) / 1e9;
}

static void progress_text(sim_run_t *r, int64_t now, buf_t *b, double rate)
{
    const char *tp = r->ops->name;
    if (!r->t0_ns) {
        size_t up = r->tp ? r->ops->connected(r->tp) : 0;
        buf_printf(b, "connecting: %zu/%zu devices connected", up, r->ndev);
        return;
    }
    buf_printf(b, "%6.1fs  sent %llu  acked %llu  failed %llu  in flight %zu  queued %zu  %.0f msg/s  %s p50 %.1f ms p99 %.1f ms",
               elapsed_s(r, now), (unsigned long long)r->total.sent, (unsigned long long)r->total.acked,
               (unsigned long long)r->total.failed, r->inflight, r->queued, rate, tp,
               ms(sim_hist_percentile(&r->lat, 50)), ms(sim_hist_percentile(&r->lat, 99)));
    if (r->ops == &sim_tp_mqtt && r->tp)
        buf_printf(b, "  connected %zu/%zu", r->ops->connected(r->tp), r->ndev);
}

void sim_report_progress(sim_run_t *r, int64_t now, int final)
{
    if (final) {
        clear_live(r);
        return;
    }
    if (r->o->quiet || now < r->next_report_ns) return;
    int64_t period = r->tty ? LIVE_REFRESH_NS : (int64_t)(r->o->progress * 1e9);
    if (r->next_report_ns == 0) {
        r->next_report_ns = now + period; /* first line after one period */
        r->last_report_ns = now;
        r->acked_at_report = r->total.acked;
        return;
    }
    r->next_report_ns = now + period;
    /* Rate over the last second at least (the live line is redrawn more often). */
    if (now - r->last_report_ns >= (r->tty ? RATE_WINDOW_NS : 1)) {
        r->rate = (double)(r->total.acked - r->acked_at_report) / ((double)(now - r->last_report_ns) / 1e9);
        r->last_report_ns = now;
        r->acked_at_report = r->total.acked;
    }
    buf_t b = BUF_INIT;
    progress_text(r, now, &b, r->rate);
    if (!b.oom) {
        log_redact(b.data);
        if (r->tty) {
            fprintf(stderr, "\r\033[K%s", b.data);
            fflush(stderr);
            r->live_line = 1;
        } else {
            fprintf(stderr, "simulator: %s\n", b.data);
            fflush(stderr);
        }
    }
    buf_free(&b);
}

static void tallies_text(buf_t *b, const sim_tallies_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        buf_printf(b, "%s%s ×%llu", i ? ", " : "", t->v[i].label, (unsigned long long)t->v[i].n);
}

static const char *latency_label(const sim_run_t *r)
{
    return r->ops == &sim_tp_http ? "POST → 2xx" : "PUBLISH → PUBACK";
}

void sim_report_text(sim_run_t *r, FILE *f)
{
    buf_t b = BUF_INIT;
    double secs = elapsed_s(r, r->end_ns);
    const sim_counts_t *n = &r->total;
    buf_printf(&b, "simulator: %zu device%s over %s to ", r->ndev, r->ndev == 1 ? "" : "s", r->ops->name);
    for (const sim_endpoint_t *e = r->endpoints; e; e = e->next) buf_printf(&b, "%s%s", e == r->endpoints ? "" : ", ", e->url);
    buf_printf(&b, ", %.1f s, seed %llu%s", secs, (unsigned long long)r->seed, r->interrupted ? " (interrupted)" : "");
    put_line(f, b.data);
    buf_reset(&b);
    buf_printf(&b, "  sent %llu, acknowledged %llu, failed %llu  (%.1f msg/s)", (unsigned long long)n->sent,
               (unsigned long long)n->acked, (unsigned long long)n->failed, secs > 0 ? (double)n->acked / secs : 0.0);
    if (r->unsent) buf_printf(&b, "; %llu readings not sent (abandoned)", (unsigned long long)r->unsent);
    put_line(f, b.data);
    buf_reset(&b);
    if (r->lat.count) {
        buf_printf(&b, "  latency %s: p50 %.2f ms, p99 %.2f ms, max %.2f ms", latency_label(r),
                   ms(sim_hist_percentile(&r->lat, 50)), ms(sim_hist_percentile(&r->lat, 99)), ms((double)r->lat.max_us));
        put_line(f, b.data);
        buf_reset(&b);
    }
    uint64_t faulty = n->faulty[SIM_FAULT_SPIKE] + n->faulty[SIM_FAULT_MISSING] + n->faulty[SIM_FAULT_GARBLED];
    if (faulty) {
        buf_printf(&b, "  faulty readings sent: %llu (spike %llu, missing %llu, garbled %llu)", (unsigned long long)faulty,
                   (unsigned long long)n->faulty[SIM_FAULT_SPIKE], (unsigned long long)n->faulty[SIM_FAULT_MISSING],
                   (unsigned long long)n->faulty[SIM_FAULT_GARBLED]);
        put_line(f, b.data);
        buf_reset(&b);
    }
    if (r->attempt_errors.n) {
        buf_printf(&b, "  failed attempts: %llu (", (unsigned long long)(n->attempts - n->acked));
        tallies_text(&b, &r->attempt_errors);
        buf_printf(&b, "); retries %llu, uncertain outcomes %llu", (unsigned long long)(n->attempts - n->sent),
                   (unsigned long long)n->uncertain);
        put_line(f, b.data);
        buf_reset(&b);
    }
    if (r->events.n) {
        buf_puts(&b, "  connections: ");
        tallies_text(&b, &r->events);
        put_line(f, b.data);
        buf_reset(&b);
    }
    if (n->failed) {
        buf_printf(&b, "  LOST %llu message%s: ", (unsigned long long)n->failed, n->failed == 1 ? "" : "s");
        tallies_text(&b, &r->lost_reasons);
        put_line(f, b.data);
    } else {
        buf_puts(&b, "  nothing lost");
        put_line(f, b.data);
    }
    buf_free(&b);
}

static cJSON *tallies_json(const sim_tallies_t *t)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < t->n; i++) cJSON_AddNumberToObject(o, t->v[i].label, (double)t->v[i].n);
    return o;
}

static cJSON *ids_json(const sim_ids_t *ids)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < ids->n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ids->v[i]));
    return a;
}

static cJSON *faulty_json(const sim_counts_t *n)
{
    cJSON *o = cJSON_CreateObject();
    for (int k = SIM_FAULT_SPIKE; o && k < SIM_FAULT_KINDS; k++)
        cJSON_AddNumberToObject(o, sim_fault_name((sim_fault_t)k), (double)n->faulty[k]);
    return o;
}

static double round3(double v) { return (double)(long long)(v * 1000 + 0.5) / 1000; }

cJSON *sim_report_json(sim_run_t *r)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    const sim_counts_t *n = &r->total;
    double secs = elapsed_s(r, r->end_ns);
    cJSON_AddStringToObject(j, "transport", r->ops->name);
    cJSON *eps = cJSON_AddArrayToObject(j, "endpoints");
    for (const sim_endpoint_t *e = r->endpoints; eps && e; e = e->next) cJSON_AddItemToArray(eps, cJSON_CreateString(e->url));
    if (r->seed <= (1ULL << 53)) cJSON_AddNumberToObject(j, "seed", (double)r->seed);
    else {
        char s[24];
        snprintf(s, sizeof s, "%llu", (unsigned long long)r->seed);
        cJSON_AddStringToObject(j, "seed", s);
    }
    cJSON_AddNumberToObject(j, "intervalSeconds", r->interval);
    cJSON_AddNumberToObject(j, "faultyShare", r->o->faulty);
    cJSON_AddNumberToObject(j, "elapsedSeconds", round3(secs));
    cJSON_AddBoolToObject(j, "interrupted", r->interrupted);
    cJSON_AddNumberToObject(j, "sent", (double)n->sent);
    cJSON_AddNumberToObject(j, "acknowledged", (double)n->acked);
    cJSON_AddNumberToObject(j, "failed", (double)n->failed);
    cJSON_AddNumberToObject(j, "attempts", (double)n->attempts);
    cJSON_AddNumberToObject(j, "retries", (double)(n->attempts - n->sent));
    cJSON_AddNumberToObject(j, "uncertain", (double)n->uncertain);
    cJSON_AddNumberToObject(j, "unsent", (double)r->unsent);
    cJSON_AddNumberToObject(j, "ratePerSecond", round3(secs > 0 ? (double)n->acked / secs : 0));
    cJSON *lat = cJSON_AddObjectToObject(j, "latencyMs");
    if (lat) {
        cJSON_AddNumberToObject(lat, "count", (double)r->lat.count);
        cJSON_AddNumberToObject(lat, "p50", round3(ms(sim_hist_percentile(&r->lat, 50))));
        cJSON_AddNumberToObject(lat, "p90", round3(ms(sim_hist_percentile(&r->lat, 90))));
        cJSON_AddNumberToObject(lat, "p99", round3(ms(sim_hist_percentile(&r->lat, 99))));
        cJSON_AddNumberToObject(lat, "max", round3(ms((double)r->lat.max_us)));
        cJSON_AddNumberToObject(lat, "mean", round3(ms(sim_hist_mean(&r->lat))));
    }
    cJSON_AddItemToObject(j, "faulty", faulty_json(n));
    cJSON_AddItemToObject(j, "errors", tallies_json(&r->attempt_errors));
    cJSON_AddItemToObject(j, "lost", tallies_json(&r->lost_reasons));
    cJSON_AddItemToObject(j, "events", tallies_json(&r->events));
    cJSON *devs = cJSON_AddObjectToObject(j, "devices");
    for (size_t i = 0; devs && i < r->ndev; i++) {
        const sim_device_t *d = &r->devs[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddNumberToObject(o, "sent", (double)d->n.sent);
        cJSON_AddNumberToObject(o, "acknowledged", (double)d->n.acked);
        cJSON_AddNumberToObject(o, "failed", (double)d->n.failed);
        cJSON_AddNumberToObject(o, "attempts", (double)d->n.attempts);
        cJSON_AddNumberToObject(o, "uncertain", (double)d->n.uncertain);
        cJSON_AddItemToObject(o, "faulty", faulty_json(&d->n));
        cJSON_AddNumberToObject(o, "lastMessageId", (double)d->generated);
        cJSON_AddItemToObject(o, "failedIds", ids_json(&d->failed_ids));
        cJSON_AddItemToObject(o, "uncertainIds", ids_json(&d->uncertain_ids));
        cJSON_AddItemToObject(devs, d->cs.device_id, o);
    }
    return j;
}
