/* device_view.c — DeviceState row → camelCase device object (see device_view.h). */
#include "telemetry/device_view.h"

#include "azure/table.h"
#include "telemetry/device_id.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return 0;
    return 1;
}

int device_view_iso8601(const char *t, char *out, size_t outlen)
{
    if (!t || !out || outlen < 25) return -1;
    /* YYYY-MM-DDTHH:MM:SS */
    if (strlen(t) < 19 || !digits(t, 4) || t[4] != '-' || !digits(t + 5, 2) || t[7] != '-' ||
        !digits(t + 8, 2) || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || !digits(t + 11, 2) ||
        t[13] != ':' || !digits(t + 14, 2) || t[16] != ':' || !digits(t + 17, 2))
        return -1;
    const char *p = t + 19;
    char frac[4] = "";
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 3) frac[n] = *p;
            n++;
            p++;
        }
        if (n == 0) return -1;
        while (n < 3 && frac[0]) frac[n++] = '0';   /* ".5" → ".500" */
        frac[3] = '\0';
    }
    /* Table Storage always stores UTC; accept the UTC spellings only. */
    if (!(strcmp(p, "Z") == 0 || strcmp(p, "z") == 0 || strcmp(p, "+00:00") == 0 ||
          strcmp(p, "-00:00") == 0 || *p == '\0'))
        return -1;
    int n = snprintf(out, outlen, "%.10sT%.8s%s%sZ", t, t + 11, frac[0] ? "." : "", frac);
    return (n > 0 && (size_t)n < outlen) ? 0 : -1;
}

static int add_double(cJSON *o, const char *key, const cJSON *row, const char *col)
{
    double d;
    if (table_get_double(row, col, &d) == 0 && isfinite(d))
        return cJSON_AddNumberToObject(o, key, d) ? 0 : -1;
    return cJSON_AddNullToObject(o, key) ? 0 : -1;
}

static int add_int64(cJSON *o, const char *key, const cJSON *row, const char *col)
{
    int64_t v;
    if (table_get_int64(row, col, &v) == 0)
        return cJSON_AddNumberToObject(o, key, (double)v) ? 0 : -1;
    return cJSON_AddNullToObject(o, key) ? 0 : -1;
}

/* A text column; an integer stored by an older writer is shown as its text. */
static int add_text(cJSON *o, const char *key, const cJSON *row, const char *col)
{
    const char *s = table_get_string(row, col);
    if (s) return cJSON_AddStringToObject(o, key, s) ? 0 : -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, col);
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
        fabs(v->valuedouble) < 9007199254740992.0) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, (int64_t)v->valuedouble);
        return cJSON_AddStringToObject(o, key, buf) ? 0 : -1;
    }
    return cJSON_AddNullToObject(o, key) ? 0 : -1;
}

cJSON *device_view_from_row(const cJSON *row)
{
    if (!cJSON_IsObject(row)) return NULL;
    const char *id = table_get_string(row, "DeviceId");
    char decoded[DEVICE_ROW_KEY_MAX];
    if (!id || !*id) {
        /* a row without DeviceId (written by something else): its RowKey, decoded */
        id = table_get_string(row, "RowKey");
        if (id && device_id_from_row_key(id, decoded, sizeof decoded) >= 0) id = decoded;
    }
    if (!id || !*id) return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int rc = cJSON_AddStringToObject(o, "deviceId", id) ? 0 : -1;
    rc |= add_double(o, "temperature", row, "Celsius");
    rc |= add_double(o, "humidity", row, "Humidity");
    rc |= add_double(o, "pressure", row, "hPa");
    rc |= add_double(o, "light", row, "Light");
    rc |= add_text(o, "geo", row, "Geo");
    rc |= add_int64(o, "count", row, "Count");
    rc |= add_int64(o, "invalidCount", row, "InvalidCount");
    const char *ls = table_get_string(row, "LastSeen");
    char iso[40];
    if (ls && device_view_iso8601(ls, iso, sizeof iso) == 0)
        rc |= cJSON_AddStringToObject(o, "lastSeen", iso) ? 0 : -1;
    else
        rc |= cJSON_AddNullToObject(o, "lastSeen") ? 0 : -1;
    rc |= add_text(o, "messageId", row, "Id");
    if (rc != 0) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
