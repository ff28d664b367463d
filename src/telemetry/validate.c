/* validate.c — bounds on calibrated readings (see validate.h). */
#include "telemetry/validate.h"

#include <math.h>
#include <stdio.h>

static int check(const char *name, double v, double lo, double hi, char *reason, size_t len)
{
    if (!isfinite(v)) {
        snprintf(reason, len, "%s is not finite after calibration", name);
        return 0;
    }
    if (v < lo || v > hi) {
        snprintf(reason, len, "%s %g outside %g..%g", name, v, lo, hi);
        return 0;
    }
    return 1;
}

int tele_validate(const tele_bounds_t *b, const tele_reading_t *r, char *reason, size_t reasonlen)
{
    if (r->invalid) {
        snprintf(reason, reasonlen, "%s", r->reason);
        return 0;
    }
    if ((r->has & TELE_HAS_TEMP) &&
        !check("temperature", r->temperature, b->min_celsius, b->max_celsius, reason, reasonlen))
        return 0;
    if ((r->has & TELE_HAS_PRESSURE) &&
        !check("pressure", r->pressure, b->min_hpa, b->max_hpa, reason, reasonlen))
        return 0;
    if ((r->has & TELE_HAS_HUMIDITY) &&
        !check("humidity", r->humidity, b->min_humidity, b->max_humidity, reason, reasonlen))
        return 0;
    if ((r->has & TELE_HAS_LIGHT) && !isfinite(r->light)) {
        snprintf(reason, reasonlen, "light is not finite");
        return 0;
    }
    return 1;
}
