/* test_sim_model.c — what simulated devices say: the sensor model's reproducibility (--seed)
 * and plausibility, the message body, and faulty readings judged by the handler's own
 * normalisation and validation (so Count + InvalidCount predictions hold). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simulator/message.h"
#include "simulator/sensor.h"
#include "telemetry/normalise.h"
#include "telemetry/validate.h"

static int same_reading(const sim_reading_t *a, const sim_reading_t *b)
{
    return a->temperature == b->temperature && a->humidity == b->humidity && a->pressure == b->pressure &&
           a->light == b->light;
}

static void test_reproducible_with_seed(void **state)
{
    (void)state;
    sim_sensor_t a, b, c, other_seed;
    sim_sensor_init(&a, 42, "sim-1", 2);
    sim_sensor_init(&c, 42, "sim-2", 2);          /* initialised in between: no shared state */
    sim_sensor_init(&b, 42, "sim-1", 2);
    sim_sensor_init(&other_seed, 43, "sim-1", 2);
    int differs_device = 0, differs_seed = 0;
    for (int i = 0; i < 5000; i++) {
        sim_reading_t ra, rb, rc, ro;
        sim_sensor_next(&a, &ra);
        sim_sensor_next(&c, &rc);
        sim_sensor_next(&b, &rb);
        sim_sensor_next(&other_seed, &ro);
        assert_true(same_reading(&ra, &rb));
        differs_device += !same_reading(&ra, &rc);
        differs_seed += !same_reading(&ra, &ro);
    }
    assert_true(differs_device > 4900);
    assert_true(differs_seed > 4900);
    assert_true(sim_seed_mix(1, "a") != sim_seed_mix(2, "a"));
    assert_true(sim_seed_mix(1, "a") != sim_seed_mix(1, "b"));
}

static double decimals_ok(double v, double unit) { return fabs(v / unit - round(v / unit)) < 1e-6; }

/* 40 devices over ten simulated days at one reading a minute. */
static void test_plausible(void **state)
{
    (void)state;
    int devices = 40, per_day = 24 * 60, days = 10;
    double min_t = 1e9, max_t = -1e9, min_p = 1e9, max_p = -1e9, max_l = 0;
    int warmer_afternoons = 0;
    double means[40];
    for (int d = 0; d < devices; d++) {
        char id[16];
        snprintf(id, sizeof id, "dev-%d", d);
        sim_sensor_t s;
        sim_sensor_init(&s, 7, id, 60);
        double afternoon = 0, night = 0, sum = 0;
        int n_aft = 0, n_night = 0;
        for (int i = 0; i < per_day * days; i++) {
            double h = sim_sensor_hour(&s);
            sim_reading_t r;
            sim_sensor_next(&s, &r);
            assert_true(decimals_ok(r.temperature, 0.01) && decimals_ok(r.humidity, 0.1));
            assert_true(decimals_ok(r.pressure, 0.1) && decimals_ok(r.light, 0.1));
            assert_true(r.humidity >= 3 && r.humidity <= 99.5);
            assert_true(r.light >= 0);
            if (h < 5 || h > 23.5) assert_true(r.light == 0); /* dark at night */
            if (r.temperature < min_t) min_t = r.temperature;
            if (r.temperature > max_t) max_t = r.temperature;
            if (r.pressure < min_p) min_p = r.pressure;
            if (r.pressure > max_p) max_p = r.pressure;
            if (r.light > max_l) max_l = r.light;
            sum += r.temperature;
            if (h >= 13 && h < 17) { afternoon += r.temperature; n_aft++; }
            if (h >= 2 && h < 6) { night += r.temperature; n_night++; }
        }
        means[d] = sum / (per_day * days);
        if (afternoon / n_aft > night / n_night + 1) warmer_afternoons++;
    }
    /* Indoor/outdoor-ish climates, never absurd; the handler's defaults accept all of it. */
    assert_true(min_t > -5 && max_t < 45);
    assert_true(min_p > 950 && max_p < 1070);
    assert_true(max_l > 100 && max_l < 2000);
    /* The day cycle is there for (nearly) every device. */
    assert_true(warmer_afternoons >= devices - 1);
    /* Devices differ from one another. */
    double lo = 1e9, hi = -1e9;
    for (int d = 0; d < devices; d++) {
        if (means[d] < lo) lo = means[d];
        if (means[d] > hi) hi = means[d];
    }
    assert_true(hi - lo > 3);
}

/* At the default 2 s interval consecutive readings move little (no white-noise jumps). */
static void test_smooth_at_two_seconds(void **state)
{
    (void)state;
    sim_sensor_t s;
    sim_sensor_init(&s, 99, "sim-1", 2);
    sim_reading_t prev, r;
    sim_sensor_next(&s, &prev);
    double max_dt = 0, max_dp = 0;
    for (int i = 0; i < 20000; i++) {
        sim_sensor_next(&s, &r);
        if (fabs(r.temperature - prev.temperature) > max_dt) max_dt = fabs(r.temperature - prev.temperature);
        if (fabs(r.pressure - prev.pressure) > max_dp) max_dp = fabs(r.pressure - prev.pressure);
        prev = r;
    }
    assert_true(max_dt < 1.0);
    assert_true(max_dp < 0.8);
}

static cJSON *body_of(uint64_t id, const char *dev, const sim_reading_t *r, sim_fault_t f, uint64_t *rng, int *alert)
{
    buf_t b = BUF_INIT;
    assert_int_equal(sim_message_body(&b, id, dev, r, f, rng, alert), 0);
    cJSON *j = cJSON_Parse(buf_str(&b));
    if (!j) fail_msg("not JSON: %s", buf_str(&b));
    buf_free(&b);
    return j;
}

static void test_message_shape(void **state)
{
    (void)state;
    uint64_t rng = 1;
    sim_reading_t r = {21.5, 55.3, 1013.2, 420.0};
    int alert = -1;
    cJSON *j = body_of(17, "sim-\"1\"", &r, SIM_FAULT_NONE, &rng, &alert);
    assert_int_equal(cJSON_GetObjectItem(j, "messageId")->valuedouble, 17);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "messageId")));
    assert_string_equal(cJSON_GetObjectItem(j, "deviceId")->valuestring, "sim-\"1\"");
    assert_true(cJSON_GetObjectItem(j, "temperature")->valuedouble == 21.5);
    assert_true(cJSON_GetObjectItem(j, "humidity")->valuedouble == 55.3);
    assert_true(cJSON_GetObjectItem(j, "pressure")->valuedouble == 1013.2);
    assert_true(cJSON_GetObjectItem(j, "light")->valuedouble == 420.0);
    assert_int_equal(cJSON_GetArraySize(j), 6);
    assert_int_equal(alert, 0);
    cJSON_Delete(j);

    r.temperature = 30.01;
    j = body_of(1, "d", &r, SIM_FAULT_NONE, &rng, &alert);
    assert_int_equal(alert, 1); /* temperatureAlert: temperature > 30, as the original */
    cJSON_Delete(j);
    r.temperature = 30.0;
    j = body_of(1, "d", &r, SIM_FAULT_NONE, &rng, &alert);
    assert_int_equal(alert, 0);
    cJSON_Delete(j);
}

static void test_fault_share(void **state)
{
    (void)state;
    uint64_t rng = 12345;
    int n = 200000, kinds[SIM_FAULT_KINDS] = {0};
    for (int i = 0; i < n; i++) kinds[sim_fault_draw(&rng, 0.02)]++;
    int faulty = n - kinds[SIM_FAULT_NONE];
    /* Binomial(200000, 0.02): mean 4000, sd ~63; 5 sd either way. */
    assert_true(faulty > 4000 - 315 && faulty < 4000 + 315);
    assert_true(abs(kinds[SIM_FAULT_SPIKE] - faulty / 2) < faulty / 10);
    assert_true(abs(kinds[SIM_FAULT_MISSING] - faulty * 3 / 10) < faulty / 10);
    assert_true(abs(kinds[SIM_FAULT_GARBLED] - faulty / 5) < faulty / 10);
    for (int i = 0; i < 1000; i++) assert_int_equal(sim_fault_draw(&rng, 0), SIM_FAULT_NONE);
    for (int i = 0; i < 1000; i++) assert_int_not_equal(sim_fault_draw(&rng, 1), SIM_FAULT_NONE);
}

/* Each reading, as the handler will judge it with its default bounds: good readings and
 * readings with fields missing count in Count; spikes and garbled fields in InvalidCount. */
static void test_faults_as_the_handler_sees_them(void **state)
{
    (void)state;
    const tele_bounds_t bounds = {-40, 80, 600, 1600, 0, 100};
    sim_sensor_t s;
    sim_sensor_init(&s, 5, "sim-9", 2);
    uint64_t rng = 777;
    int counted[SIM_FAULT_KINDS][2] = {{0}};
    for (int i = 0; i < 20000; i++) {
        sim_reading_t r;
        sim_sensor_next(&s, &r);
        sim_fault_t f = (sim_fault_t)(i % SIM_FAULT_KINDS);
        int alert;
        cJSON *j = body_of((uint64_t)i + 1, "sim-9", &r, f, &rng, &alert);
        tele_reading_t t;
        tele_normalise(j, &t);
        char why[200];
        int valid = tele_validate(&bounds, &t, why, sizeof why);
        counted[f][valid]++;
        if (f == SIM_FAULT_MISSING) {
            int fields = 0;
            for (const char *k = "temperature\0humidity\0pressure\0light\0"; *k; k += strlen(k) + 1)
                fields += cJSON_GetObjectItem(j, k) != NULL;
            assert_true(fields <= 3);
        }
        if (alert) assert_true((t.has & TELE_HAS_TEMP) && t.temperature > 30);
        char want[24];
        snprintf(want, sizeof want, "%d", i + 1);
        assert_true(t.has & TELE_HAS_MSGID);
        assert_string_equal(t.message_id, want);
        cJSON_Delete(j);
    }
    assert_int_equal(counted[SIM_FAULT_NONE][0], 0);
    assert_int_equal(counted[SIM_FAULT_MISSING][0], 0);
    assert_int_equal(counted[SIM_FAULT_SPIKE][1], 0);
    assert_int_equal(counted[SIM_FAULT_GARBLED][1], 0);
    assert_int_equal(counted[SIM_FAULT_SPIKE][0], 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproducible_with_seed),
        cmocka_unit_test(test_plausible),
        cmocka_unit_test(test_smooth_at_two_seconds),
        cmocka_unit_test(test_message_shape),
        cmocka_unit_test(test_fault_share),
        cmocka_unit_test(test_faults_as_the_handler_sees_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
