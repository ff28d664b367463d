/* sensor.h — a plausible environmental sensor, one per simulated device.
 *
 * Owns what a device "measures": temperature (°C), relative humidity (%), pressure (hPa) and
 * light (lux) on a simulated clock that advances by the reporting interval per reading. Each
 * device gets its own climate (mean temperature, day amplitude, humidity level, altitude,
 * window light) and its own random walk, drawn from a generator seeded with the run's seed and
 * the device id, so that the same --seed gives every device the same readings in every run
 * (independent of timing, transport, retries or the order devices are listed in).
 *
 * The model: a day cycle (temperature peaks mid-afternoon, humidity moves against it, light
 * follows the sun, pressure has its small twice-daily tide), slow drift (mean-reverting random
 * walks with time constants of hours: weather) and sensor noise. */
#ifndef ENVIROMON_SIM_SENSOR_H
#define ENVIROMON_SIM_SENSOR_H

#include <stdint.h>

typedef struct sim_reading {
    double temperature;   /* °C, 2 decimals */
    double humidity;      /* %, 1 decimal, 0..100 */
    double pressure;      /* hPa, 1 decimal */
    double light;         /* lux, 1 decimal, >= 0 */
} sim_reading_t;

typedef struct sim_sensor {
    uint64_t rng;                    /* this device's generator (occ_rng_*) */
    double   interval_s;             /* simulated seconds between readings */
    double   start_hour;             /* simulated hour of day of the first reading */
    uint64_t taken;                  /* readings taken so far */
    /* climate, fixed per device */
    double   t_mean, t_amp, t_peak, t_noise;
    double   rh_mean, rh_per_degree;
    double   p_base;
    double   lux_max;
    /* slow drift (Ornstein-Uhlenbeck states) */
    double   d_temp, d_rh, d_p, cloud;
} sim_sensor_t;

/* 64-bit hash of the run seed and a device id (FNV-1a, then a splitmix finaliser). */
uint64_t sim_seed_mix(uint64_t seed, const char *device_id);

/* Set up the sensor of device_id for a run with this seed, taking a reading every
 * interval_s simulated seconds (> 0). */
void sim_sensor_init(sim_sensor_t *s, uint64_t seed, const char *device_id, double interval_s);

/* Simulated hour of day [0, 24) of the next reading. */
double sim_sensor_hour(const sim_sensor_t *s);

/* Take the next reading. */
void sim_sensor_next(sim_sensor_t *s, sim_reading_t *r);

/* Uniform double in [0, 1) and a standard normal deviate from a generator state. */
double sim_rand01(uint64_t *rng);
double sim_rand_normal(uint64_t *rng);

#endif
