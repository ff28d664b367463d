/* run.c — the engine: schedule, sends, retries, counts (see run.h). */
#include "simulator/run.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "simulator/report.h"
#include "telemetry/backoff.h"

#define TICK_NS      10000000LL   /* housekeeping every 10 ms */
#define MAX_WAIT_MS  50

static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
    (void)sig;
    g_signals++;
}

/* ---- small helpers ------------------------------------------------------------------- */

int64_t sim_run_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long sim_run_wall_s(void) { return (long long)time(NULL); }

uint64_t sim_tally_add(sim_tallies_t *t, const char *label)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].label, label) == 0) return ++t->v[i].n;
    sim_tally_t *v = realloc(t->v, (t->n + 1) * sizeof *v);
    if (!v) return 0;
    t->v = v;
    if (!(t->v[t->n].label = strdup(label))) return 0;
    t->v[t->n].n = 1;
    t->n++;
    return 1;
}

void sim_tallies_free(sim_tallies_t *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->v[i].label);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

double sim_run_interval(const sim_opts_t *o, size_t ndev)
{
    if (o->rate > 0) return (double)ndev / o->rate;
    return o->interval;
}

int64_t sim_run_first_due(size_t i, size_t n, double interval)
{
    return (int64_t)((double)i / (double)n * interval * 1e9);
}

sim_device_t *sim_run_devices(sim_run_t *run, size_t *n)
{
    *n = run->ndev;
    return run->devs;
}

const sim_opts_t *sim_run_opts(sim_run_t *run) { return run->o; }

int64_t sim_run_backoff_ns(sim_run_t *run, int attempt)
{
    return (int64_t)occ_backoff_ms(100, 10000, attempt < 1 ? 1 : attempt, &run->rng) * 1000000LL;
}

int sim_run_abandoning(sim_run_t *run) { return run->abandon; }

/* ---- the reading schedule: a min-heap of devices by next_due_ns ---------------------- */

static void heap_swap(sim_run_t *r, size_t a, size_t b)
{
    sim_device_t *t = r->heap[a];
    r->heap[a] = r->heap[b];
    r->heap[b] = t;
    r->heap[a]->heap_pos = a;
    r->heap[b]->heap_pos = b;
}

static void heap_up(sim_run_t *r, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (r->heap[p]->next_due_ns <= r->heap[i]->next_due_ns) break;
        heap_swap(r, i, p);
        i = p;
    }
}

static void heap_down(sim_run_t *r, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, s = i;
        if (l < r->heap_n && r->heap[l]->next_due_ns < r->heap[s]->next_due_ns) s = l;
        if (l + 1 < r->heap_n && r->heap[l + 1]->next_due_ns < r->heap[s]->next_due_ns) s = l + 1;
        if (s == i) return;
        heap_swap(r, i, s);
        i = s;
    }
}

static void heap_push(sim_run_t *r, sim_device_t *d)
{
    d->heap_pos = r->heap_n;
    r->heap[r->heap_n++] = d;
    heap_up(r, d->heap_pos);
}

static sim_device_t *heap_pop(sim_run_t *r)
{
    sim_device_t *d = r->heap[0];
    r->heap[0] = r->heap[--r->heap_n];
    r->heap[0]->heap_pos = 0;
    if (r->heap_n) heap_down(r, 0);
    return d;
}

/* ---- sending ------------------------------------------------------------------------- */

static void wait_push(sim_run_t *r, sim_device_t *d)
{
    if (d->waiting) return;
    d->waiting = 1;
    r->wait[(r->wait_head + r->wait_n++) % r->ndev] = d;
}

/* The message is lost: count it, remember its id, say why once per reason. */
static void lose(sim_run_t *r, sim_device_t *d, sim_msg_t *m, const char *why)
{
    d->n.failed++;
    r->total.failed++;
    sim_ids_add(&d->failed_ids, m->id);
    if (m->uncertain) sim_ids_add(&d->uncertain_ids, m->id);
    if (sim_tally_add(&r->lost_reasons, why) == 1 && !r->abandon)
        sim_report_note(r, "device %s lost message %llu: %s", d->cs.device_id, (unsigned long long)m->id, why);
    sim_msg_free(m);
}

/* Start an attempt: the first one makes the message "sent". */
static void begin_attempt(sim_run_t *r, sim_device_t *d, sim_msg_t *m, int64_t now)
{
    if (m->attempts++ == 0) {
        m->first_ns = now;
        d->n.sent++;
        r->total.sent++;
        d->n.faulty[m->fault]++;
        r->total.faulty[m->fault]++;
    }
    m->sent_ns = now;
    d->n.attempts++;
    r->total.attempts++;
}

static void fail_queue(sim_run_t *r, sim_device_t *d, const char *why)
{
    sim_msg_t *m;
    while ((m = sim_queue_pop(d))) {
        r->queued--;
        begin_attempt(r, d, m, sim_run_now_ns());
        lose(r, d, m, why);
    }
}

static void try_send(sim_run_t *r, sim_device_t *d)
{
    if (d->dead[0]) {
        fail_queue(r, d, d->dead);
        return;
    }
    while (d->q_head && !r->abandon) {
        int64_t now = sim_run_now_ns();
        if (now < d->hold_until_ns) return;          /* the tick kicks it */
        if (d->inflight >= r->window) return;        /* an outcome kicks it */
        if (r->max_inflight && r->inflight >= r->max_inflight) {
            wait_push(r, d);                         /* a free slot kicks it */
            return;
        }
        if (!r->ops->ready(r->tp, d)) return;        /* connecting: device_ready kicks it */
        sim_msg_t *m = sim_queue_pop(d);
        r->queued--;
        begin_attempt(r, d, m, now);
        d->inflight++;
        r->inflight++;
        r->ops->send(r->tp, d, m);
        if (d->dead[0]) {
            fail_queue(r, d, d->dead);
            return;
        }
    }
}

/* Try sending for d, and for whoever else became ready meanwhile, without recursion: the
 * transport may report outcomes from inside send. */
static void kick(sim_run_t *r, sim_device_t *d)
{
    if (d && !d->kicked) {
        d->kicked = 1;
        r->kick[r->kick_n++] = d;
    }
    if (r->kicking) return;
    r->kicking = 1;
    while (r->kick_n > 0) {
        sim_device_t *k = r->kick[--r->kick_n];
        k->kicked = 0;
        try_send(r, k);
    }
    r->kicking = 0;
}

/* A slot freed up: let the longest-waiting device use it. */
static void pump_wait(sim_run_t *r)
{
    while (r->wait_n > 0 && (!r->max_inflight || r->inflight < r->max_inflight)) {
        sim_device_t *d = r->wait[r->wait_head];
        r->wait_head = (r->wait_head + 1) % r->ndev;
        r->wait_n--;
        d->waiting = 0;
        kick(r, d);
        if (d->waiting) break; /* it took the slot and wants more: others wait their turn */
    }
}

void sim_run_acked(sim_run_t *r, sim_device_t *d, sim_msg_t *m)
{
    int64_t now = sim_run_now_ns();
    d->inflight--;
    r->inflight--;
    uint64_t us = (uint64_t)((now - m->sent_ns) / 1000);
    sim_hist_add(&r->lat, us);
    sim_hist_add(&r->lat_window, us);
    d->n.acked++;
    r->total.acked++;
    if (m->uncertain) sim_ids_add(&d->uncertain_ids, m->id);
    d->fail_streak = 0;
    sim_msg_free(m);
    kick(r, d);
    pump_wait(r);
}

void sim_run_failed(sim_run_t *r, sim_device_t *d, sim_msg_t *m, sim_fail_t how, const char *why)
{
    int64_t now = sim_run_now_ns();
    d->inflight--;
    r->inflight--;
    snprintf(d->last_error, sizeof d->last_error, "%s", why);
    sim_tally_add(&r->attempt_errors, why);
    if (how == SIM_FAIL_UNCERTAIN) {
        m->uncertain++;
        d->n.uncertain++;
        r->total.uncertain++;
    }
    if (how == SIM_FAIL_PERMANENT || r->abandon) {
        lose(r, d, m, why);
    } else if (now - m->first_ns >= (int64_t)(r->o->retry_for * 1e9)) {
        char label[200];
        snprintf(label, sizeof label, "gave up after --retry-for %gs (last: %s)", r->o->retry_for, why);
        lose(r, d, m, label);
    } else {
        sim_queue_insert(d, m);
        r->queued++;
        if (now >= d->hold_until_ns) { /* one backoff step per burst of failures */
            d->fail_streak++;
            d->hold_until_ns = now + sim_run_backoff_ns(r, d->fail_streak);
        }
    }
    kick(r, d); /* a window slot is free (a held device stays held) */
    pump_wait(r);
}

void sim_run_hidden_attempt(sim_run_t *r, sim_device_t *d, sim_msg_t *m, const char *why)
{
    m->attempts++;
    m->uncertain++;
    d->n.attempts++;
    d->n.uncertain++;
    r->total.attempts++;
    r->total.uncertain++;
    sim_tally_add(&r->attempt_errors, why);
}

void sim_run_device_ready(sim_run_t *r, sim_device_t *d) { kick(r, d); }

void sim_run_device_dead(sim_run_t *r, sim_device_t *d, const char *why)
{
    snprintf(d->dead, sizeof d->dead, "%s", why);
    kick(r, d);
}

void sim_run_event(sim_run_t *r, const char *label, int warn)
{
    if (sim_tally_add(&r->events, label) == 1 && warn) sim_report_note(r, "%s", label);
}

/* ---- readings ------------------------------------------------------------------------ */

static int take_reading(sim_run_t *r, sim_device_t *d, int64_t now)
{
    sim_msg_t *m = calloc(1, sizeof *m);
    if (!m) return -1;
    sim_reading_t rd;
    sim_sensor_next(&d->sensor, &rd);
    sim_fault_t f = sim_fault_draw(&d->fault_rng, r->o->faulty);
    buf_t b = BUF_INIT;
    int alert = 0;
    if (sim_message_body(&b, d->generated + 1, d->cs.device_id, &rd, f, &d->fault_rng, &alert) != 0) {
        buf_free(&b);
        free(m);
        return -1;
    }
    m->id = ++d->generated;
    m->len = b.len;
    m->body = buf_steal(&b);
    m->alert = (unsigned char)alert;
    m->fault = (unsigned char)f;
    m->created_ns = now;
    sim_queue_push(d, m);
    r->queued++;
    return 0;
}

static int device_done_generating(const sim_run_t *r, const sim_device_t *d)
{
    return r->o->count && d->generated >= r->o->count;
}

/* Slot k of device d: t0 + its phase + k intervals, computed (not accumulated) so that
 * rounding never adds or loses a reading over a long run. */
static int64_t slot_time(const sim_run_t *r, const sim_device_t *d, uint64_t k)
{
    return r->t0_ns + d->phase_ns + (int64_t)llround((double)k * r->interval * 1e9);
}

static void take_due_readings(sim_run_t *r, int64_t now)
{
    while (r->heap_n > 0 && r->heap[0]->next_due_ns <= now && !r->stopping) {
        sim_device_t *d = heap_pop(r);
        if (d->q_len < SIM_BACKLOG_MAX) { /* else its buffer is full: this slot is skipped */
            if (take_reading(r, d, now) != 0) {
                sim_report_note(r, "out of memory taking a reading; stopping");
                r->stopping = 1;
                heap_push(r, d);
                return;
            }
            kick(r, d);
        }
        d->next_due_ns = slot_time(r, d, ++d->slot);
        if (!device_done_generating(r, d)) heap_push(r, d);
    }
}

/* ---- housekeeping -------------------------------------------------------------------- */

/* Give up the oldest queued messages of a device that cannot send (retry deadline passed). */
static void expire_queue(sim_run_t *r, sim_device_t *d, int64_t now)
{
    int64_t limit = (int64_t)(r->o->retry_for * 1e9);
    while (d->q_head) {
        sim_msg_t *m = d->q_head;
        int64_t since = m->attempts ? m->first_ns : m->created_ns;
        if (now - since < limit) return;
        if (!m->attempts && r->ops->ready(r->tp, d)) return; /* can send now: it will */
        sim_queue_pop(d);
        r->queued--;
        char label[200];
        snprintf(label, sizeof label, "gave up after --retry-for %gs (last: %s)", r->o->retry_for,
                 d->last_error[0] ? d->last_error : "not connected");
        if (!m->attempts) begin_attempt(r, d, m, now);
        lose(r, d, m, label);
    }
}

static void housekeeping(sim_run_t *r, int64_t now)
{
    r->ops->tick(r->tp, now);
    for (size_t i = 0; i < r->ndev; i++) {
        sim_device_t *d = &r->devs[i];
        if (!d->q_head) continue;
        expire_queue(r, d, now);
        if (d->q_head && d->hold_until_ns && now >= d->hold_until_ns) {
            d->hold_until_ns = 0;
            kick(r, d);
        }
    }
}

/* Second Ctrl-C: stop now. In flight and retrying messages are lost; readings never sent
 * are counted as unsent. */
static void abandon_all(sim_run_t *r)
{
    r->abandon = 1;
    r->ops->close(r->tp);
    r->tp = NULL;
    for (size_t i = 0; i < r->ndev; i++) {
        sim_device_t *d = &r->devs[i];
        sim_msg_t *m;
        while ((m = sim_queue_pop(d))) {
            r->queued--;
            if (m->attempts) {
                lose(r, d, m, "abandoned (interrupted)");
            } else {
                r->unsent++;
                sim_msg_free(m);
            }
        }
    }
}

static int all_done(const sim_run_t *r)
{
    if (r->inflight || r->queued) return 0;
    if (r->stopping) return 1;
    return r->heap_n == 0; /* every device took its --count readings */
}

/* ---- the loop ------------------------------------------------------------------------ */

int sim_run_init(sim_run_t *r, const sim_opts_t *o, sim_device_t *devs, size_t ndev, sim_endpoint_t *endpoints,
                 uint64_t seed, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    r->devs = devs;
    r->ndev = ndev;
    r->endpoints = endpoints;
    r->seed = seed;
    r->ops = endpoints->kind == SIM_TP_HTTP ? &sim_tp_http : &sim_tp_mqtt;
    r->interval = sim_run_interval(o, ndev);
    r->window = o->inflight > 0 ? (size_t)o->inflight : (endpoints->kind == SIM_TP_HTTP ? 1 : 16);
    if (endpoints->kind == SIM_TP_HTTP)
        r->max_inflight = o->connections > 0 ? (size_t)o->connections : (ndev < 64 ? ndev : 64);
    r->heap = calloc(ndev, sizeof *r->heap);
    r->kick = calloc(ndev, sizeof *r->kick);
    r->wait = calloc(ndev, sizeof *r->wait);
    if (!r->heap || !r->kick || !r->wait) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    occ_rng_seed(&r->rng, seed ^ 0x5851f42d4c957f2dULL);
    for (size_t i = 0; i < ndev; i++) {
        sim_device_t *d = &devs[i];
        d->index = i;
        sim_sensor_init(&d->sensor, seed, d->cs.device_id, r->interval);
        occ_rng_seed(&d->fault_rng, sim_seed_mix(seed ^ 0xfa017ULL, d->cs.device_id));
    }
    r->tty = isatty(STDERR_FILENO);
    return 0;
}

int sim_run_main(sim_run_t *r)
{
    char err[300];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    g_signals = 0;
    r->start_ns = sim_run_now_ns();
    r->tp = r->ops->open(r, err, sizeof err);
    if (!r->tp) {
        sim_report_note(r, "%s", err);
        return 2;
    }
    int seen_signals = 0;

    /* MQTT: connect every device before the clock starts, so that the schedule measures
     * sending, not connecting (bounded by --timeout). */
    int64_t connect_limit = r->start_ns + (int64_t)(r->o->timeout * 1e9);
    int64_t next_tick = 0;
    while (!r->ops->settled(r->tp) && g_signals == 0) {
        int64_t now = sim_run_now_ns();
        if (now >= connect_limit) break;
        if (now >= next_tick) {
            r->ops->tick(r->tp, now);
            next_tick = now + TICK_NS;
            sim_report_progress(r, now, 0);
        }
        r->ops->poll(r->tp, 10);
    }

    r->t0_ns = sim_run_now_ns();
    if (r->o->duration > 0) r->stop_ns = r->t0_ns + (int64_t)(r->o->duration * 1e9);
    for (size_t i = 0; i < r->ndev; i++) {
        r->devs[i].phase_ns = sim_run_first_due(i, r->ndev, r->interval);
        r->devs[i].next_due_ns = slot_time(r, &r->devs[i], 0);
        heap_push(r, &r->devs[i]);
    }
    r->last_report_ns = r->t0_ns;
    sim_report_progress(r, r->t0_ns, 0);

    while (!all_done(r)) {
        int64_t now = sim_run_now_ns();
        if (g_signals != seen_signals) {
            int fresh = g_signals - seen_signals;
            seen_signals = g_signals;
            if (r->interrupted || fresh > 1) { /* the second Ctrl-C / SIGTERM */
                r->interrupted = 1;
                abandon_all(r);
                break;
            }
            r->interrupted = 1;
            r->stopping = 1;
            size_t left = r->inflight + r->queued;
            if (left > 0)
                sim_report_note(r, "stopping: sending the %zu reading%s already taken (Ctrl-C again to abandon %s)",
                                left, left == 1 ? "" : "s", left == 1 ? "it" : "them");
        }
        if (r->stop_ns && now >= r->stop_ns && !r->stopping) {
            take_due_readings(r, r->stop_ns - 1); /* every reading due before the end, even if late */
            r->stopping = 1;
        }
        take_due_readings(r, now);
        if (now >= next_tick) {
            housekeeping(r, now);
            next_tick = now + TICK_NS;
        }
        sim_report_progress(r, now, 0);
        if (all_done(r)) break;

        int64_t until = next_tick;
        if (!r->stopping && r->heap_n > 0 && r->heap[0]->next_due_ns < until) until = r->heap[0]->next_due_ns;
        if (r->next_report_ns && r->next_report_ns < until) until = r->next_report_ns;
        int64_t wait_ns = until - sim_run_now_ns();
        int wait_ms = wait_ns <= 0 ? 0 : (int)((wait_ns + 999999) / 1000000);
        if (wait_ms > MAX_WAIT_MS) wait_ms = MAX_WAIT_MS;
        r->ops->poll(r->tp, wait_ms);
    }
    r->end_ns = sim_run_now_ns();
    if (r->tp) {
        r->ops->close(r->tp);
        r->tp = NULL;
    }
    sim_report_progress(r, r->end_ns, 1);
    return r->total.failed > 0 ? 1 : 0;
}

void sim_run_free(sim_run_t *r)
{
    if (r->tp) r->ops->close(r->tp);
    for (size_t i = 0; i < r->ndev; i++) sim_device_free(&r->devs[i]);
    free(r->devs);
    while (r->endpoints) {
        sim_endpoint_t *e = r->endpoints;
        r->endpoints = e->next;
        free(e);
    }
    free(r->heap);
    free(r->kick);
    free(r->wait);
    sim_tallies_free(&r->attempt_errors);
    sim_tallies_free(&r->lost_reasons);
    sim_tallies_free(&r->events);
    memset(r, 0, sizeof *r);
}
