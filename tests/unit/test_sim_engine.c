/* test_sim_engine.c — the simulator's engine with a scripted in-process transport: exact
 * per-message accounting (sent = acknowledged + failed, failed and uncertain ids), retries,
 * giving up, refused devices, rate control (readings on schedule, exactly), interruption, and
 * the JSON summary built from a real run. Also the latency histogram and its percentiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simulator/report.h"
#include "simulator/run.h"
#include "simulator/stats.h"

/* ---- a scripted transport ------------------------------------------------------------ */

enum { ACK, RETRY, UNCERTAIN, PERMANENT, DEAD, HOLD };

typedef struct fake {
    sim_run_t *run;
    struct { sim_device_t *d; sim_msg_t *m; } pending[8192];
    size_t n;
    int (*decide)(sim_device_t *d, sim_msg_t *m);
    uint64_t last_id[64];     /* per device: ids must arrive in order on first attempts */
    int out_of_order;
    uint64_t sends;
} fake_t;

static fake_t g_fake;

static void *fake_open(sim_run_t *run, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    memset(&g_fake.pending, 0, sizeof g_fake.pending);
    g_fake.n = 0;
    g_fake.run = run;
    memset(g_fake.last_id, 0, sizeof g_fake.last_id);
    g_fake.out_of_order = 0;
    g_fake.sends = 0;
    return &g_fake;
}

static int fake_ready(void *t, sim_device_t *d)
{
    (void)t;
    (void)d;
    return 1;
}

static void fake_send(void *t, sim_device_t *d, sim_msg_t *m)
{
    fake_t *f = t;
    f->sends++;
    if (m->attempts == 1) {
        if (m->id != f->last_id[d->index] + 1) f->out_of_order = 1;
        f->last_id[d->index] = m->id;
    }
    assert_true(f->n < 8192);
    f->pending[f->n].d = d;
    f->pending[f->n].m = m;
    f->n++;
}

static void fake_poll(void *t, int timeout_ms)
{
    fake_t *f = t;
    if (f->n == 0) {
        struct timespec ts = {0, (timeout_ms > 1 ? 1 : timeout_ms) * 1000000L};
        nanosleep(&ts, NULL);
        return;
    }
    size_t n = f->n, kept = 0;
    static struct { sim_device_t *d; sim_msg_t *m; } batch[8192];
    memcpy(batch, f->pending, n * sizeof batch[0]);
    f->n = 0;
    for (size_t i = 0; i < n; i++) {
        sim_device_t *d = batch[i].d;
        sim_msg_t *m = batch[i].m;
        switch (f->decide ? f->decide(d, m) : ACK) {
        case ACK: sim_run_acked(f->run, d, m); break;
        case RETRY: sim_run_failed(f->run, d, m, SIM_FAIL_RETRY, "HTTP 429 Too Many Requests"); break;
        case UNCERTAIN: sim_run_failed(f->run, d, m, SIM_FAIL_UNCERTAIN, "Timeout was reached"); break;
        case PERMANENT: sim_run_failed(f->run, d, m, SIM_FAIL_PERMANENT, "HTTP 413 Payload Too Large"); break;
        case DEAD:
            sim_run_failed(f->run, d, m, SIM_FAIL_PERMANENT, "CONNACK refused (5: not authorized)");
            sim_run_device_dead(f->run, d, "CONNACK refused (5: not authorized)");
            break;
        case HOLD: /* no answer (yet) */
            f->pending[f->n].d = d;
            f->pending[f->n].m = m;
            f->n++;
            kept++;
            break;
        }
    }
    (void)kept;
}

static void fake_tick(void *t, int64_t now)
{
    (void)t;
    (void)now;
}

static size_t fake_connected(void *t)
{
    (void)t;
    return 0;
}

static int fake_settled(void *t)
{
    (void)t;
    return 1;
}

static void fake_close(void *t)
{
    fake_t *f = t;
    while (f->n > 0) {
        f->n--;
        sim_run_failed(f->run, f->pending[f->n].d, f->pending[f->n].m, SIM_FAIL_UNCERTAIN, "abandoned");
    }
}

static const sim_tp_ops_t fake_ops = {"fake", fake_open, fake_ready, fake_send, fake_poll, fake_tick,
                                      fake_connected, fake_settled, fake_close};

/* ---- running ------------------------------------------------------------------------- */

static void opts_default(sim_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->transport = SIM_TP_HTTP;
    o->token_ttl = 3600;
    o->interval = 0.001;
    o->timeout = 30;
    o->retry_for = 300;
    o->progress = 5;
    o->quiet = 1;
    o->inflight = 1;
}

static int run_fleet(sim_run_t *r, const sim_opts_t *o, size_t ndev, int (*decide)(sim_device_t *, sim_msg_t *))
{
    sim_device_t *devs = calloc(ndev, sizeof *devs);
    sim_endpoint_t *ep = calloc(1, sizeof *ep);
    assert_non_null(devs);
    assert_non_null(ep);
    ep->kind = SIM_TP_HTTP;
    snprintf(ep->url, sizeof ep->url, "http://fake:1");
    for (size_t i = 0; i < ndev; i++) {
        snprintf(devs[i].cs.device_id, sizeof devs[i].cs.device_id, "sim-%zu", i + 1);
        snprintf(devs[i].cs.host, sizeof devs[i].cs.host, "hub.azure-devices.net");
        devs[i].ep = ep;
    }
    char err[200];
    assert_int_equal(sim_run_init(r, o, devs, ndev, ep, 42, err, sizeof err), 0);
    r->ops = &fake_ops;
    g_fake.decide = decide;
    return sim_run_main(r);
}

static void check_balance(const sim_run_t *r)
{
    uint64_t sent = 0, acked = 0, failed = 0;
    for (size_t i = 0; i < r->ndev; i++) {
        const sim_device_t *d = &r->devs[i];
        assert_int_equal(d->n.sent, d->n.acked + d->n.failed);
        assert_int_equal(d->failed_ids.n, d->n.failed);
        sent += d->n.sent;
        acked += d->n.acked;
        failed += d->n.failed;
    }
    assert_int_equal(sent, r->total.sent);
    assert_int_equal(acked, r->total.acked);
    assert_int_equal(failed, r->total.failed);
    assert_int_equal(r->inflight, 0);
    assert_int_equal(r->queued, 0);
}

static void test_count_all_acknowledged(void **state)
{
    (void)state;
    sim_opts_t o;
    opts_default(&o);
    o.count = 40;
    sim_run_t r;
    assert_int_equal(run_fleet(&r, &o, 5, NULL), 0);
    check_balance(&r);
    assert_int_equal(r.total.sent, 200);
    assert_int_equal(r.total.acked, 200);
    assert_int_equal(r.total.attempts, 200);
    assert_int_equal(r.lat.count, 200);
    assert_false(g_fake.out_of_order);
    for (size_t i = 0; i < 5; i++) assert_int_equal(r.devs[i].generated, 40);
    sim_run_free(&r);
}

/* First attempts: ids divisible by 7 time out (uncertain), by 5 are throttled; id 13 is
 * refused for good. */
static int decide_mixed(sim_device_t *d, sim_msg_t *m)
{
    (void)d;
    if (m->id == 13) return PERMANENT;
    if (m->attempts == 1 && m->id % 7 == 0) return UNCERTAIN;
    if (m->attempts == 1 && m->id % 5 == 0) return RETRY;
    return ACK;
}

static void test_retries_and_exact_ids(void **state)
{
    (void)state;
    sim_opts_t o;
    opts_default(&o);
    o.count = 40;
    sim_run_t r;
    assert_int_equal(run_fleet(&r, &o, 3, decide_mixed), 1); /* something lost: status 1 */
    check_balance(&r);
    assert_int_equal(r.total.sent, 120);
    assert_int_equal(r.total.failed, 3);
    assert_int_equal(r.total.acked, 117);
    /* retried: 7,14,21,28,35 (uncertain) + 5,10,15,20,25,30,40 (throttled) per device */
    assert_int_equal(r.total.attempts, 120 + 3 * 12);
    assert_int_equal(r.total.uncertain, 3 * 5);
    for (size_t i = 0; i < 3; i++) {
        const sim_device_t *d = &r.devs[i];
        assert_int_equal(d->failed_ids.n, 1);
        assert_int_equal(d->failed_ids.v[0], 13);
        assert_int_equal(d->uncertain_ids.n, 5);
        uint64_t seen = 0;
        for (size_t k = 0; k < d->uncertain_ids.n; k++) {
            assert_int_equal(d->uncertain_ids.v[k] % 7, 0);
            seen |= 1ULL << (d->uncertain_ids.v[k] / 7);
        }
        assert_int_equal(seen, 0x3e); /* 7, 14, 21, 28, 35 */
    }

    /* The JSON summary says exactly that. */
    r.end_ns = r.end_ns ? r.end_ns : sim_run_now_ns();
    cJSON *j = sim_report_json(&r);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "sent")->valuedouble, 120);
    assert_int_equal(cJSON_GetObjectItem(j, "acknowledged")->valuedouble, 117);
    assert_int_equal(cJSON_GetObjectItem(j, "failed")->valuedouble, 3);
    assert_int_equal(cJSON_GetObjectItem(j, "retries")->valuedouble, 36);
    assert_int_equal(cJSON_GetObjectItem(j, "uncertain")->valuedouble, 15);
    assert_string_equal(cJSON_GetObjectItem(j, "transport")->valuestring, "fake");
    assert_int_equal(cJSON_GetObjectItem(j, "seed")->valuedouble, 42);
    cJSON *lost = cJSON_GetObjectItem(j, "lost");
    assert_int_equal(cJSON_GetObjectItem(lost, "HTTP 413 Payload Too Large")->valuedouble, 3);
    cJSON *errors = cJSON_GetObjectItem(j, "errors");
    assert_int_equal(cJSON_GetObjectItem(errors, "HTTP 429 Too Many Requests")->valuedouble, 21);
    assert_int_equal(cJSON_GetObjectItem(errors, "Timeout was reached")->valuedouble, 15);
    cJSON *dev = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "devices"), "sim-2");
    assert_non_null(dev);
    assert_int_equal(cJSON_GetObjectItem(dev, "sent")->valuedouble, 40);
    assert_int_equal(cJSON_GetObjectItem(dev, "acknowledged")->valuedouble, 39);
    assert_int_equal(cJSON_GetObjectItem(dev, "failed")->valuedouble, 1);
    assert_int_equal(cJSON_GetObjectItem(dev, "lastMessageId")->valuedouble, 40);
    cJSON *ids = cJSON_GetObjectItem(dev, "failedIds");
    assert_int_equal(cJSON_GetArraySize(ids), 1);
    assert_int_equal(cJSON_GetArrayItem(ids, 0)->valuedouble, 13);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(dev, "uncertainIds")), 5);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "latencyMs"), "count")->valuedouble, 117);
    cJSON_Delete(j);

    /* And the text summary says what was lost and why. */
    char text[4096] = "";
    FILE *f = fmemopen(text, sizeof text - 1, "w");
    sim_report_text(&r, f);
    fclose(f);
    assert_non_null(strstr(text, "sent 120, acknowledged 117, failed 3"));
    assert_non_null(strstr(text, "LOST 3 messages: HTTP 413 Payload Too Large ×3"));
    sim_run_free(&r);
}

static int decide_device1_throttled(sim_device_t *d, sim_msg_t *m)
{
    (void)m;
    return d->index == 0 ? RETRY : ACK;
}

static void test_gives_up_after_retry_for(void **state)
{
    (void)state;
    sim_opts_t o;
    opts_default(&o);
    o.count = 3;
    o.retry_for = 0.3;
    sim_run_t r;
    assert_int_equal(run_fleet(&r, &o, 2, decide_device1_throttled), 1);
    check_balance(&r);
    assert_int_equal(r.devs[0].n.failed, 3);
    assert_int_equal(r.devs[0].n.acked, 0);
    assert_true(r.devs[0].n.attempts > 3);
    assert_int_equal(r.devs[1].n.acked, 3);
    assert_int_equal(r.lost_reasons.n, 1);
    assert_non_null(strstr(r.lost_reasons.v[0].label, "gave up after --retry-for 0.3s (last: HTTP 429"));
    sim_run_free(&r);
}

static int decide_refused(sim_device_t *d, sim_msg_t *m)
{
    (void)m;
    return d->index == 1 ? DEAD : ACK;
}

static void test_refused_device_fails_every_message(void **state)
{
    (void)state;
    sim_opts_t o;
    opts_default(&o);
    o.count = 25;
    sim_run_t r;
    assert_int_equal(run_fleet(&r, &o, 3, decide_refused), 1);
    check_balance(&r);
    assert_int_equal(r.devs[1].n.sent, 25);
    assert_int_equal(r.devs[1].n.failed, 25);
    assert_int_equal(r.devs[0].n.acked, 25);
    assert_int_equal(r.devs[2].n.acked, 25);
    assert_int_equal(r.lost_reasons.n, 1);
    assert_string_equal(r.lost_reasons.v[0].label, "CONNACK refused (5: not authorized)");
    sim_run_free(&r);
}

/* --rate R over n devices: each device every n/R seconds, staggered; a --duration run takes
 * exactly the readings due before its end, however busy the machine. */
static void test_rate_control_exact(void **state)
{
    (void)state;
    sim_opts_t o;
    opts_default(&o);
    o.rate = 2000;
    o.duration = 0.25;
    o.inflight = 4;
    sim_run_t r;
    assert_int_equal(run_fleet(&r, &o, 10, NULL), 0);
    check_balance(&r);
    assert_true(fabs(r.interval - 0.005) < 1e-12);
    assert_int_equal(r.total.sent, 500);
    for (size_t i = 0; i < 10; i++) assert_int_equal(r.devs[i].n.sent, 50);
    sim_run_free(&r);

    /* An interval that is no whole number of nanoseconds (20 devices at 300/s: 1/15 s): the
     * schedule must not drift a reading in or out (9 readings each before 0.6 s). */
    opts_default(&o);
    o.rate = 300;
    o.duration = 0.6;
    o.inflight = 4;
    assert_int_equal(run_fleet(&r, &o, 20, NULL), 0);
    check_balance(&r);
    assert_int_equal(r.total.sent, 180);
    for (size_t i = 0; i < 20; i++) assert_int_equal(r.devs[i].n.sent, 9);
    sim_run_free(&r);

    o.rate = 2000;
    assert_true(sim_run_interval(&o, 10) == 0.005);
    o.rate = 0;
    o.interval = 2;
    assert_true(sim_run_interval(&o, 10) == 2);
    /* Staggered evenly over one interval. */
    assert_int_equal(sim_run_first_due(0, 4, 2), 0);
    assert_int_equal(sim_run_first_due(1, 4, 2), 500000000LL);
    assert_int_equal(sim_run_first_due(3, 4, 2), 1500000000LL);
}

static int raised;

static int decide_interrupt_once(sim_device_t *d, sim_msg_t *m)
{
    (void)d;
    if (m->id == 5 && d->index == 0 && !raised) {
        raised = 1;
        raise(SIGINT);
    }
    return ACK;
}

static void test_first_interrupt_finishes_what_was_taken(void **state)
{
    (void)state;
    sim_opts_t o;
    opts_default(&o);
    o.interval = 0.002;
    raised = 0;
    sim_run_t r;
    assert_int_equal(run_fleet(&r, &o, 4, decide_interrupt_once), 0); /* no --count: until Ctrl-C */
    check_balance(&r);
    assert_true(r.interrupted);
    assert_int_equal(r.total.failed, 0);
    assert_int_equal(r.unsent, 0);
    uint64_t generated = 0;
    for (size_t i = 0; i < 4; i++) generated += r.devs[i].generated;
    assert_int_equal(generated, r.total.sent); /* every reading taken was delivered */
    sim_run_free(&r);
}

static int decide_hold_then_interrupt(sim_device_t *d, sim_msg_t *m)
{
    (void)d;
    if (m->id >= 3) {
        if (raised < 2) {
            raised++;
            raise(SIGINT);
        }
        return HOLD;
    }
    return ACK;
}

static void test_second_interrupt_abandons(void **state)
{
    (void)state;
    sim_opts_t o;
    opts_default(&o);
    o.interval = 0.002;
    raised = 0;
    sim_run_t r;
    assert_int_equal(run_fleet(&r, &o, 2, decide_hold_then_interrupt), 1);
    check_balance(&r);
    assert_true(r.interrupted);
    assert_true(r.total.failed >= 1);                    /* the attempts in flight */
    assert_int_equal(r.total.uncertain, r.total.failed); /* ... whose outcome is unknown */
    uint64_t generated = r.devs[0].generated + r.devs[1].generated;
    assert_int_equal(generated, r.total.sent + r.unsent);
    sim_run_free(&r);
}

/* ---- histogram ----------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_histogram_percentiles(void **state)
{
    (void)state;
    sim_hist_t h;
    sim_hist_reset(&h);
    assert_true(sim_hist_percentile(&h, 50) == 0);
    sim_hist_add(&h, 1234);
    assert_true(sim_hist_percentile(&h, 50) == 1234);
    assert_true(sim_hist_percentile(&h, 99) == 1234);

    /* Buckets cover every value with at most 1/32 relative width. */
    for (uint64_t v = 0; v < 5000000; v = v * 11 / 10 + 1) {
        uint64_t lo, hi;
        sim_hist_bounds(sim_hist_index(v), &lo, &hi);
        assert_true(lo <= v && v <= hi);
        assert_true((double)(hi - lo) <= (double)lo / 32.0 + 1);
    }

    /* Against exact nearest-rank percentiles of a skewed sample. */
    static uint64_t s[100000];
    uint64_t rng = 99;
    sim_hist_reset(&h);
    for (int i = 0; i < 100000; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        double u = (double)(rng >> 11) / 9007199254740992.0;
        s[i] = (uint64_t)(500 + 200000 * pow(u, 8)); /* long tail */
        sim_hist_add(&h, s[i]);
    }
    qsort(s, 100000, sizeof s[0], cmp_u64);
    double ps[] = {50, 90, 99, 99.9};
    for (int k = 0; k < 4; k++) {
        double exact = (double)s[(size_t)ceil(ps[k] / 100 * 100000) - 1];
        double got = sim_hist_percentile(&h, ps[k]);
        assert_true(fabs(got - exact) / exact < 0.035);
    }
    assert_true(sim_hist_percentile(&h, 100) == (double)s[99999]);

    sim_hist_t a, b;
    sim_hist_reset(&a);
    sim_hist_reset(&b);
    sim_hist_add(&a, 10);
    sim_hist_add(&b, 1000);
    sim_hist_merge(&a, &b);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.min_us, 10);
    assert_int_equal(a.max_us, 1000);
    assert_true(sim_hist_mean(&a) == 505);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_all_acknowledged),
        cmocka_unit_test(test_retries_and_exact_ids),
        cmocka_unit_test(test_gives_up_after_retry_for),
        cmocka_unit_test(test_refused_device_fails_every_message),
        cmocka_unit_test(test_rate_control_exact),
        cmocka_unit_test(test_first_interrupt_finishes_what_was_taken),
        cmocka_unit_test(test_second_interrupt_abandons),
        cmocka_unit_test(test_histogram_percentiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
