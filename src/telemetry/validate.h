/* validate.h — range checks on CALIBRATED readings.
 *
 * Owns the rule for what a stored reading may look like: temperature, pressure and humidity
 * must be finite and inside their (inclusive) bounds from the settings (MinCelsius..MaxCelsius,
 * MinHpa..MaxHpa, MinHumidity..MaxHumidity; defaults -40..80 °C, 600..1600 hPa, 0..100 %);
 * light must be finite. A field not sent is not checked. One bad field makes the whole
 * message invalid: it does not touch the state and counts in InvalidCount. */
#ifndef ENVIROMON_TELEMETRY_VALIDATE_H
#define ENVIROMON_TELEMETRY_VALIDATE_H

#include <stddef.h>

#include "telemetry/normalise.h"

typedef struct tele_bounds {
    double min_celsius, max_celsius;
    double min_hpa, max_hpa;
    double min_humidity, max_humidity;
} tele_bounds_t;

/* Returns 1 when r (already calibrated) is acceptable; else 0 with a reason such as
 * "temperature 95.2 outside -40..80" in reason. An r already marked invalid stays invalid. */
int tele_validate(const tele_bounds_t *b, const tele_reading_t *r, char *reason, size_t reasonlen);

#endif
