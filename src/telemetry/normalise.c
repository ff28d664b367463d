/* normalise.c — field aliases and strict numeric parsing for telemetry (see normalise.h). */
#include "telemetry/normalise.h"
#include "util/utf8.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsBool(v)) return "boolean";
    if (cJSON_IsObject(v)) return "object";
    if (cJSON_IsArray(v)) return "array";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsNumber(v)) return "number";
    return "unknown";
}

int tele_parse_number(const cJSON *v, double *out, char *why, size_t whylen)
{
    char dummy[8];
    if (!why) { why = dummy; whylen = sizeof dummy; }
    if (cJSON_IsRaw(v)) { snprintf(why, whylen, "%s", v->valuestring); return -1; }
    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble)) { snprintf(why, whylen, "not finite"); return -1; }
        *out = v->valuedouble;
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        snprintf(why, whylen, "wrong type %s", type_name(v));
        return -1;
    }
    const char *s = v->valuestring;
    while (*s == ' ' || *s == '\t') s++;
    /* strtod also accepts "nan", "inf", hex floats: allow only a plain decimal form. */
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1]))) {
        snprintf(why, whylen, "not a number (\"%.24s\")", v->valuestring);
        return -1;
    }
    for (const char *q = p; *q; q++) {
        if (!(isdigit((unsigned char)*q) || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' ||
              *q == '-' || *q == ' ' || *q == '\t')) {
            snprintf(why, whylen, "not a number (\"%.24s\")", v->valuestring);
            return -1;
        }
    }
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    while (end && (*end == ' ' || *end == '\t')) end++;
    if (end == s || !end || *end != '\0') {
        snprintf(why, whylen, "not a number (\"%.24s\")", v->valuestring);
        return -1;
    }
    if (!isfinite(d) || (errno == ERANGE && fabs(d) > 1.0)) {
        snprintf(why, whylen, "not finite");
        return -1;
    }
    *out = d;
    return 0;
}

/* First present, non-null alias. */
static const cJSON *field(const cJSON *msg, const char *const *names)
{
    for (; *names; names++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, *names);
        if (v && !cJSON_IsNull(v)) return v;
    }
    return NULL;
}

static void invalid(tele_reading_t *r, const char *name, const char *why)
{
    if (r->invalid) return;   /* keep the first reason */
    r->invalid = 1;
    snprintf(r->reason, sizeof r->reason, "%s: %s", name, why);
}

static void number_field(const cJSON *msg, tele_reading_t *r, const char *const *names,
                         unsigned bit, double *dst)
{
    const cJSON *v = field(msg, names);
    if (!v) return;
    char why[96];
    if (tele_parse_number(v, dst, why, sizeof why) != 0) { invalid(r, names[0], why); return; }
    r->has |= bit;
}

static void text_field(const cJSON *msg, tele_reading_t *r, const char *const *names,
                       unsigned bit, const char **dst, int allow_integer)
{
    const cJSON *v = field(msg, names);
    if (!v) return;
    if (cJSON_IsRaw(v)) { invalid(r, names[0], v->valuestring); return; }
    if (cJSON_IsString(v) && v->valuestring) {
        size_t n = strlen(v->valuestring);
        if (n > TELE_TEXT_MAX) {
            char why[64];
            snprintf(why, sizeof why, "longer than %d bytes", TELE_TEXT_MAX);
            invalid(r, names[0], why);
            return;
        }
        if (!utf8_valid(v->valuestring, n)) {
            invalid(r, names[0], "not valid UTF-8");
            return;
        }
        *dst = v->valuestring;
        r->has |= bit;
        return;
    }
    if (allow_integer && cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
        v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9007199254740992.0) {
        snprintf(r->msgid_buf, sizeof r->msgid_buf, "%.0f", v->valuedouble);
        *dst = r->msgid_buf;
        r->has |= bit;
        return;
    }
    char why[64];
    snprintf(why, sizeof why, "wrong type %s", type_name(v));
    invalid(r, names[0], why);
}

static const char *const temp[] = {"temperature", "Temperature", "Celsius", NULL};
static const char *const hum[] = {"humidity", "Humidity", NULL};
static const char *const pres[] = {"pressure", "Pressure", "hPa", "HPa", NULL};
static const char *const light[] = {"light", "Light", NULL};
static const char *const geo[] = {"geo", "Geo", NULL};
static const char *const msgid[] = {"messageId", "Id", NULL};
static const char *const devid[] = {"deviceId", "DeviceId", NULL};

const char *const tele_field_names[] = {
    "temperature", "Temperature", "Celsius", "humidity", "Humidity", "pressure", "Pressure", "hPa", "HPa",
    "light", "Light", "geo", "Geo", "messageId", "Id", "deviceId", "DeviceId", NULL,
};

void tele_normalise(const cJSON *msg, tele_reading_t *r)
{

    memset(r, 0, sizeof *r);
    if (!cJSON_IsObject(msg)) {
        invalid(r, "message", "not a JSON object");
        return;
    }
    number_field(msg, r, temp, TELE_HAS_TEMP, &r->temperature);
    number_field(msg, r, hum, TELE_HAS_HUMIDITY, &r->humidity);
    number_field(msg, r, pres, TELE_HAS_PRESSURE, &r->pressure);
    number_field(msg, r, light, TELE_HAS_LIGHT, &r->light);
    text_field(msg, r, geo, TELE_HAS_GEO, &r->geo, 0);
    text_field(msg, r, msgid, TELE_HAS_MSGID, &r->message_id, 1);
    const cJSON *d = field(msg, devid);
    if (d && cJSON_IsString(d) && d->valuestring) r->claimed_device_id = d->valuestring;
    if (d && cJSON_IsRaw(d)) {
        r->claimed_bad = 1;
        invalid(r, devid[0], d->valuestring);
    }
}
