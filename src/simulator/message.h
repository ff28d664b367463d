/* message.h — the telemetry message a simulated device sends.
 *
 * Owns the body and properties, shaped like the original's simulator (Azure-Samples
 * raspberry-pi-web-simulator): {"messageId":<counter from 1>,"deviceId":..,"temperature":..,
 * "humidity":..} plus "pressure" and "light", and the application property temperatureAlert
 * ("true" when temperature > 30, else "false"). Also owns the deliberately faulty readings
 * (--faulty SHARE) that exercise the pipeline's validation:
 *   spike   — one field far outside any plausible range (temperature 85..150 or -60..-45 °C,
 *             humidity above 100 or negative, pressure below 500 or above 1700 hPa): the
 *             handler counts the message in InvalidCount;
 *   missing — one to four of the measured fields left out: a valid partial reading (Count);
 *   garbled — one field sent as a string a broken sensor driver might produce ("ERR", "NaN",
 *             "", "--"): InvalidCount.
 * Which readings are faulty, and how, comes from the device's own generator: reproducible. */
#ifndef ENVIROMON_SIM_MESSAGE_H
#define ENVIROMON_SIM_MESSAGE_H

#include <stdint.h>

#include "simulator/sensor.h"
#include "util/buf.h"

typedef enum {
    SIM_FAULT_NONE = 0,
    SIM_FAULT_SPIKE,
    SIM_FAULT_MISSING,
    SIM_FAULT_GARBLED
} sim_fault_t;

#define SIM_FAULT_KINDS 4

/* Name of a fault kind ("none", "spike", "missing", "garbled"). */
const char *sim_fault_name(sim_fault_t f);

/* Decide whether the next reading is faulty (probability share) and how:
 * spike 50 %, missing 30 %, garbled 20 %. */
sim_fault_t sim_fault_draw(uint64_t *rng, double share);

/* Write the JSON body of message msg_id of device_id into b (reset first), applying fault f
 * (its details drawn from rng). *alert receives the temperatureAlert property: 1 when a
 * numeric temperature above 30 is sent. Returns 0 or -1 (out of memory). */
int sim_message_body(buf_t *b, uint64_t msg_id, const char *device_id, const sim_reading_t *r,
                     sim_fault_t f, uint64_t *rng, int *alert);

#endif
