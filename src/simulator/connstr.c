/* connstr.c — device connection strings (see connstr.h). */
#include "simulator/connstr.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/base64.h"

int sim_device_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > SIM_DEVICE_ID_MAX) return 0;
    for (const char *p = id; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) continue;
        if (!strchr("-:.+%_#*?!(),=@;$'", c)) return 0;
    }
    return 1;
}

/* One "Key=value" part: copy the value of key `name` into dst (cap bytes) when it matches. */
typedef struct part { const char *key; size_t key_len; const char *val; size_t val_len; } part_t;

static int part_is(const part_t *p, const char *name)
{
    return p->key_len == strlen(name) && memcmp(p->key, name, p->key_len) == 0;
}

static int part_is_nocase(const part_t *p, const char *name)
{
    return p->key_len == strlen(name) && strncasecmp(p->key, name, p->key_len) == 0;
}

static const char *const known_keys[] = {"HostName", "DeviceId", "SharedAccessKey", "GatewayHostName",
                                         "ModuleId", "SharedAccessSignature", "x509",
                                         "SharedAccessKeyName", NULL};

int sim_connstr_parse(const char *s, sim_connstr_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    part_t host = {0}, dev = {0}, key = {0}, gw = {0};
    int have_host = 0, have_dev = 0, have_key = 0, have_gw = 0;
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            if (!eq) {
                snprintf(err, errlen, "connection string part %.*s has no '=' (expected "
                         "HostName=...;DeviceId=...;SharedAccessKey=...)", len > 40 ? 40 : (int)len, p);
                return -1;
            }
            part_t pt = {p, (size_t)(eq - p), eq + 1, len - (size_t)(eq - p) - 1};
            if (part_is(&pt, "HostName")) { host = pt; have_host = 1; }
            else if (part_is(&pt, "DeviceId")) { dev = pt; have_dev = 1; }
            else if (part_is(&pt, "SharedAccessKey")) { key = pt; have_key = 1; }
            else if (part_is(&pt, "GatewayHostName")) { gw = pt; have_gw = 1; }
            else if (part_is(&pt, "ModuleId")) {
                snprintf(err, errlen, "module connection strings (ModuleId) are not supported: give a device's");
                return -1;
            } else if (part_is(&pt, "x509")) {
                snprintf(err, errlen, "x509 connection strings are not supported: give the device's SharedAccessKey");
                return -1;
            } else if (part_is(&pt, "SharedAccessSignature")) {
                snprintf(err, errlen, "a connection string with a SharedAccessSignature cannot be renewed: "
                         "give the device's SharedAccessKey instead");
                return -1;
            } else if (part_is(&pt, "SharedAccessKeyName")) {
                snprintf(err, errlen, "SharedAccessKeyName makes this a hub (service) connection string: "
                         "give a device connection string (HostName, DeviceId, SharedAccessKey)");
                return -1;
            } else {
                for (const char *const *k = known_keys; *k; k++) {
                    if (part_is_nocase(&pt, *k)) {
                        snprintf(err, errlen, "connection string key '%.*s' should be spelled '%s' "
                                 "(keys are case-sensitive)", (int)pt.key_len, pt.key, *k);
                        return -1;
                    }
                }
                /* Other keys are ignored, as the SDKs ignore them. */
            }
        }
        if (!end) break;
        p = end + 1;
    }
    if (!have_host || host.val_len == 0) {
        snprintf(err, errlen, "connection string has no HostName (expected HostName=<hub>.azure-devices.net;"
                 "DeviceId=...;SharedAccessKey=...)");
        return -1;
    }
    if (!have_dev || dev.val_len == 0) { snprintf(err, errlen, "connection string has no DeviceId"); return -1; }
    if (!have_key || key.val_len == 0) {
        snprintf(err, errlen, "connection string has no SharedAccessKey");
        return -1;
    }
    if (host.val_len > SIM_HOST_MAX || memchr(host.val, '/', host.val_len) || memchr(host.val, ':', host.val_len) ||
        memchr(host.val, ' ', host.val_len)) {
        snprintf(err, errlen, "HostName must be a host name such as myhub.azure-devices.net (no scheme, "
                 "port or path)");
        return -1;
    }
    memcpy(out->host, host.val, host.val_len);
    if (dev.val_len > SIM_DEVICE_ID_MAX) {
        snprintf(err, errlen, "DeviceId is longer than IoT Hub's 128 characters");
        return -1;
    }
    memcpy(out->device_id, dev.val, dev.val_len);
    if (!sim_device_id_valid(out->device_id)) {
        snprintf(err, errlen, "DeviceId '%s' has characters IoT Hub does not allow (letters, digits and "
                 "-:.+%%_#*?!(),=@;$' only)", out->device_id);
        return -1;
    }
    unsigned char raw[SIM_KEY_MAX + 2];
    long n = key.val_len <= BASE64_ENCODED_LEN(SIM_KEY_MAX) ? base64_decode(key.val, key.val_len, raw) : -1;
    if (n > 0 && n <= SIM_KEY_MAX) memcpy(out->key, raw, (size_t)n);
    OPENSSL_cleanse(raw, sizeof raw);
    if (n <= 0 || n > SIM_KEY_MAX) {
        snprintf(err, errlen, "SharedAccessKey of device '%s' is not a base64 key of at most %d bytes",
                 out->device_id, SIM_KEY_MAX);
        memset(out->key, 0, sizeof out->key);
        return -1;
    }
    out->key_len = (size_t)n;
    if (have_gw && gw.val_len > 0) {
        if (gw.val_len >= sizeof out->gateway || memchr(gw.val, '/', gw.val_len) || memchr(gw.val, ' ', gw.val_len)) {
            snprintf(err, errlen, "GatewayHostName must be a host name, optionally with :port (no scheme or path)");
            return -1;
        }
        memcpy(out->gateway, gw.val, gw.val_len);
    }
    return 0;
}
