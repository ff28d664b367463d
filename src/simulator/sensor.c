/* sensor.c — the per-device sensor model (see sensor.h). */
#include "simulator/sensor.h"

#include <math.h>
#include <string.h>

#include "telemetry/backoff.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

uint64_t sim_seed_mix(uint64_t seed, const char *device_id)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (const unsigned char *p = (const unsigned char *)device_id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= seed * 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

double sim_rand01(uint64_t *rng)
{
    return (double)(occ_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

double sim_rand_normal(uint64_t *rng)
{
    double u1 = sim_rand01(rng), u2 = sim_rand01(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double uniform(uint64_t *rng, double lo, double hi) { return lo + (hi - lo) * sim_rand01(rng); }

void sim_sensor_init(sim_sensor_t *s, uint64_t seed, const char *device_id, double interval_s)
{
    memset(s, 0, sizeof *s);
    occ_rng_seed(&s->rng, sim_seed_mix(seed, device_id));
    s->interval_s = interval_s > 0 ? interval_s : 1;
    s->start_hour = uniform(&s->rng, 0, 24);
    s->t_mean = uniform(&s->rng, 16, 25);     /* rooms, greenhouses, sheds */
    s->t_amp = uniform(&s->rng, 1.5, 6);      /* half the day-night swing */
    s->t_peak = uniform(&s->rng, 14, 16.5);   /* warmest mid-afternoon */
    s->t_noise = uniform(&s->rng, 0.03, 0.12);
    s->rh_mean = uniform(&s->rng, 40, 65);
    s->rh_per_degree = uniform(&s->rng, 1.5, 3.5); /* warmer air, lower relative humidity */
    s->p_base = uniform(&s->rng, 1000, 1022);  /* altitude and season */
    s->lux_max = uniform(&s->rng, 150, 1200);  /* how much sun reaches the sensor */
    s->d_temp = sim_rand_normal(&s->rng) * 0.8;
    s->d_rh = sim_rand_normal(&s->rng) * 3;
    s->d_p = sim_rand_normal(&s->rng) * 5;
    s->cloud = uniform(&s->rng, 0.4, 1);
}

double sim_sensor_hour(const sim_sensor_t *s)
{
    double h = s->start_hour + (double)s->taken * s->interval_s / 3600.0;
    return fmod(h, 24.0);
}

/* One step of a mean-reverting random walk: stationary standard deviation sd, time constant
 * tau seconds, over dt seconds (exact discretisation, so any interval gives the same law). */
static double ou_step(double x, double mean, double sd, double tau, double dt, uint64_t *rng)
{
    double a = exp(-dt / tau);
    return mean + (x - mean) * a + sd * sqrt(1 - a * a) * sim_rand_normal(rng);
}

static double round_to(double v, double unit) { return round(v / unit) * unit; }

void sim_sensor_next(sim_sensor_t *s, sim_reading_t *r)
{
    double dt = s->interval_s, h = sim_sensor_hour(s);
    if (s->taken > 0) {
        s->d_temp = ou_step(s->d_temp, 0, 1.2, 3 * 3600.0, dt, &s->rng);
        s->d_rh = ou_step(s->d_rh, 0, 4, 4 * 3600.0, dt, &s->rng);
        s->d_p = ou_step(s->d_p, 0, 6, 36 * 3600.0, dt, &s->rng);
        s->cloud = ou_step(s->cloud, 0.75, 0.2, 1800.0, dt, &s->rng);
    }
    double day = cos(2 * M_PI * (h - s->t_peak) / 24);
    double t = s->t_mean + s->t_amp * day + s->d_temp;
    double rh = s->rh_mean - s->rh_per_degree * (t - s->t_mean) + s->d_rh;
    double p = s->p_base + s->d_p + 0.6 * cos(4 * M_PI * (h - 10) / 24);
    double sun = (h > 6 && h < 18) ? sin(M_PI * (h - 6) / 12) : 0;
    double cloud = s->cloud < 0.15 ? 0.15 : s->cloud > 1 ? 1 : s->cloud;
    double lux = s->lux_max * sun * cloud + (h > 18.5 && h < 23 ? 40 : 0) /* lamps in the evening */;

    t += s->t_noise * sim_rand_normal(&s->rng);
    rh += 0.3 * sim_rand_normal(&s->rng);
    p += 0.08 * sim_rand_normal(&s->rng);
    lux *= 1 + 0.02 * sim_rand_normal(&s->rng);

    if (rh < 3) rh = 3;
    if (rh > 99.5) rh = 99.5;
    if (lux < 0) lux = 0;
    r->temperature = round_to(t, 0.01);
    r->humidity = round_to(rh, 0.1);
    r->pressure = round_to(p, 0.1);
    r->light = round_to(lux, 0.1);
    s->taken++;
}
