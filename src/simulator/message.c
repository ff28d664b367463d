/* message.c — message bodies and faulty readings (see message.h). */
#include "simulator/message.h"

#include "simulator/sensor.h"

const char *sim_fault_name(sim_fault_t f)
{
    switch (f) {
    case SIM_FAULT_SPIKE: return "spike";
    case SIM_FAULT_MISSING: return "missing";
    case SIM_FAULT_GARBLED: return "garbled";
    default: return "none";
    }
}

sim_fault_t sim_fault_draw(uint64_t *rng, double share)
{
    if (share <= 0) return SIM_FAULT_NONE;
    if (sim_rand01(rng) >= share) return SIM_FAULT_NONE;
    double k = sim_rand01(rng);
    return k < 0.5 ? SIM_FAULT_SPIKE : k < 0.8 ? SIM_FAULT_MISSING : SIM_FAULT_GARBLED;
}

enum { F_TEMP, F_HUM, F_PRES, F_LIGHT, F_COUNT };

static const char *const field_name[F_COUNT] = {"temperature", "humidity", "pressure", "light"};
static const char *const field_fmt[F_COUNT] = {"%.2f", "%.1f", "%.1f", "%.1f"};

int sim_message_body(buf_t *b, uint64_t msg_id, const char *device_id, const sim_reading_t *r,
                     sim_fault_t f, uint64_t *rng, int *alert)
{
    double v[F_COUNT] = {r->temperature, r->humidity, r->pressure, r->light};
    unsigned present = (1u << F_COUNT) - 1;
    int garbled = -1;
    static const char *const junk[] = {"ERR", "NaN", "", "--"};

    switch (f) {
    case SIM_FAULT_SPIKE: {
        int which = (int)(sim_rand01(rng) * 3); /* temperature, humidity or pressure */
        int high = sim_rand01(rng) < 0.6;
        if (which == F_TEMP) v[F_TEMP] = high ? 85 + 65 * sim_rand01(rng) : -60 + 15 * sim_rand01(rng);
        else if (which == F_HUM) v[F_HUM] = high ? 101 + 49 * sim_rand01(rng) : -30 + 29 * sim_rand01(rng);
        else v[F_PRES] = high ? 1700 + 800 * sim_rand01(rng) : 500 * sim_rand01(rng);
        break;
    }
    case SIM_FAULT_MISSING: {
        int drop = 1 + (int)(sim_rand01(rng) * 4); /* 1..4 fields */
        for (int i = 0; i < drop; i++) {
            int k = (int)(sim_rand01(rng) * F_COUNT);
            while (!(present & (1u << k))) k = (k + 1) % F_COUNT;
            present &= ~(1u << k);
        }
        break;
    }
    case SIM_FAULT_GARBLED:
        garbled = (int)(sim_rand01(rng) * F_COUNT);
        break;
    default:
        break;
    }

    buf_reset(b);
    buf_printf(b, "{\"messageId\":%llu,\"deviceId\":", (unsigned long long)msg_id);
    buf_put_json_string(b, device_id);
    for (int i = 0; i < F_COUNT; i++) {
        if (!(present & (1u << i))) continue;
        buf_printf(b, ",\"%s\":", field_name[i]);
        if (i == garbled) {
            buf_put_json_string(b, junk[(int)(sim_rand01(rng) * 4)]);
        } else {
            /* clang/gcc: the format is one of the constant strings above. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            buf_printf(b, field_fmt[i], v[i]);
#pragma GCC diagnostic pop
        }
    }
    buf_putc(b, '}');
    *alert = (present & (1u << F_TEMP)) && garbled != F_TEMP && v[F_TEMP] > 30;
    return b->oom ? -1 : 0;
}
