/* mqtt_iothub.c — IoT Hub's MQTT names: user name, topics, property bag, topic filters
 * (see mqtt_iothub.h). */
#include "devhost/mqtt/mqtt_iothub.h"

#include <string.h>
#include <strings.h>

#include "util/utf8.h"

int mqtt_str_eq(mqtt_str_t s, const char *t)
{
    size_t n = strlen(t);
    return s.len == n && memcmp(s.s, t, n) == 0;
}

int mqtt_str_caseeq(mqtt_str_t s, const char *t)
{
    size_t n = strlen(t);
    return s.len == n && strncasecmp(s.s, t, n) == 0;
}

/* Take the bytes of *rest up to the next '/' (or all of it) into *seg; *found says whether
 * a '/' ended it, which is then skipped. */
static void next_segment(mqtt_str_t *rest, mqtt_str_t *seg, int *found)
{
    const char *slash = rest->len ? memchr(rest->s, '/', rest->len) : NULL;
    size_t n = slash ? (size_t)(slash - rest->s) : rest->len;
    seg->s = rest->s;
    seg->len = n;
    *found = slash != NULL;
    rest->s += n + (slash ? 1 : 0);
    rest->len -= n + (slash ? 1 : 0);
}

static int starts_with(mqtt_str_t s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && memcmp(s.s, prefix, n) == 0;
}

int mqtt_hub_parse_username(const char *u, size_t len, mqtt_username_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    mqtt_str_t rest = {u, len}, seg;
    int slash;
    next_segment(&rest, &out->host, &slash);
    if (out->host.len == 0 || !slash) {
        *why = "the user name must be {hub}.azure-devices.net/{device id}/?api-version=...";
        return -1;
    }
    next_segment(&rest, &out->device_id, &slash);
    if (out->device_id.len == 0) {
        *why = "the user name names no device ({hub}.azure-devices.net/{device id}/?api-version=...)";
        return -1;
    }
    /* What follows is "?query", or (old web simulator) "query", or "{module id}/?query". A
     * module segment is told apart from an old-style query by having no '=' before its '/'. */
    if (rest.len > 0 && rest.s[0] != '?') {
        mqtt_str_t probe = rest;
        next_segment(&probe, &seg, &slash);
        if (slash && !memchr(seg.s, '=', seg.len)) {
            out->module_id = seg;
            rest = probe;
        }
    }
    if (rest.len > 0 && rest.s[0] == '?') {
        rest.s++;
        rest.len--;
    }
    out->query = rest;
    return 0;
}

mqtt_hub_topic_t mqtt_hub_classify_topic(mqtt_str_t topic, mqtt_str_t *id, mqtt_str_t *bag)
{
    id->s = bag->s = NULL;
    id->len = bag->len = 0;
    if (starts_with(topic, "$iothub/twin/")) return MQTT_HUB_TOPIC_TWIN;
    if (starts_with(topic, "$iothub/methods/")) return MQTT_HUB_TOPIC_METHODS;
    if (!starts_with(topic, "devices/")) return MQTT_HUB_TOPIC_UNKNOWN;
    mqtt_str_t rest = {topic.s + 8, topic.len - 8}, seg;
    int slash;
    next_segment(&rest, id, &slash);
    if (id->len == 0 || !slash) return MQTT_HUB_TOPIC_UNKNOWN;
    if (starts_with(rest, "modules/")) return MQTT_HUB_TOPIC_MODULE;
    next_segment(&rest, &seg, &slash);
    if (!slash || !mqtt_str_eq(seg, "messages")) return MQTT_HUB_TOPIC_UNKNOWN;
    next_segment(&rest, &seg, &slash);
    if (!slash || !mqtt_str_eq(seg, "events")) return MQTT_HUB_TOPIC_UNKNOWN;
    if (rest.len > 0 && rest.s[0] == '?') {
        rest.s++;
        rest.len--;
    }
    *bag = rest;
    return MQTT_HUB_TOPIC_TELEMETRY;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode s into out (NUL-terminated). Returns the decoded length, or -1 for a bad
 * escape, a decoded NUL or invalid UTF-8. */
static long pct_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (n - i < 3) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0') return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return utf8_valid(out, o) ? (long)o : -1;
}

/* Store one decoded item; a repeated name replaces its earlier value (and its size). */
static int add_item(mqtt_props_t *out, const char *k, size_t klen, const char *v, size_t vlen,
                    const char **why)
{
    static const char *const sys_keys[] = {"$.mid", "$.cid", "$.ct", "$.ce", "$.uid"};
    const char **sys_slots[] = {&out->message_id, &out->correlation_id, &out->content_type,
                                &out->content_encoding, &out->user_id};
    for (size_t i = 0; i < sizeof sys_keys / sizeof sys_keys[0]; i++) {
        if (strcmp(k, sys_keys[i]) != 0) continue;
        if (*sys_slots[i]) out->size -= strlen(*sys_slots[i]);
        *sys_slots[i] = v;
        out->size += vlen;
        return 0;
    }
    if (k[0] == '$' && k[1] == '.') { /* IoT Hub's other protocol fields */
        out->ignored++;
        return 0;
    }
    for (size_t i = 0; i < out->napp; i++) {
        if (strcmp(out->app[i].name, k) != 0) continue;
        out->size -= strlen(out->app[i].value);
        out->app[i].value = v;
        out->size += vlen;
        return 0;
    }
    if (out->napp == MQTT_HUB_MAX_APP_PROPS) {
        *why = "more than 256 application properties";
        return -1;
    }
    out->app[out->napp].name = k;
    out->app[out->napp].value = v;
    out->napp++;
    out->size += klen + vlen;
    return 0;
}

int mqtt_hub_decode_bag(mqtt_str_t bag, char *scratch, size_t scratch_len, mqtt_props_t *out,
                        const char **why)
{
    memset(out, 0, sizeof *out);
    if (scratch_len < bag.len * 2 + 2) {
        *why = "property bag scratch buffer too small";
        return -1;
    }
    char *w = scratch;
    mqtt_str_t rest = bag;
    while (rest.len > 0) {
        const char *amp = memchr(rest.s, '&', rest.len);
        size_t n = amp ? (size_t)(amp - rest.s) : rest.len;
        const char *item = rest.s;
        rest.s += n + (amp ? 1 : 0);
        rest.len -= n + (amp ? 1 : 0);
        if (n == 0) continue;
        const char *eq = memchr(item, '=', n);
        size_t kn = eq ? (size_t)(eq - item) : n;
        if (kn == 0) {
            *why = "a property without a name";
            return -1;
        }
        char *k = w;
        long kl = pct_decode(item, kn, k);
        if (kl < 0) goto bad;
        char *v = k + kl + 1;
        long vl = eq ? pct_decode(eq + 1, n - kn - 1, v) : 0;
        if (vl < 0) goto bad;
        if (!eq) v[0] = '\0';
        w = v + vl + 1;
        if (add_item(out, k, (size_t)kl, v, (size_t)vl, why) != 0) return -1;
    }
    return 0;
bad:
    *why = "a property name or value with a bad percent escape, %00 or invalid UTF-8";
    return -1;
}

int mqtt_hub_filter_ok(const char *device_id, mqtt_str_t filter)
{
    if (mqtt_str_eq(filter, "$iothub/twin/res/#") ||
        mqtt_str_eq(filter, "$iothub/twin/PATCH/properties/desired/#") ||
        mqtt_str_eq(filter, "$iothub/methods/POST/#"))
        return 1;
    static const char pre[] = "devices/", post[] = "/messages/devicebound/#";
    size_t idl = strlen(device_id), pl = sizeof pre - 1, ql = sizeof post - 1;
    return filter.len == pl + idl + ql && memcmp(filter.s, pre, pl) == 0 &&
           memcmp(filter.s + pl, device_id, idl) == 0 && memcmp(filter.s + pl + idl, post, ql) == 0;
}
