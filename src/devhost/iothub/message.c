/* message.c — D2C message model, size rule and record payload codec (see message.h). */
#include "devhost/iothub/message.h"

#include <stdio.h>
#include <string.h>

#define MSG_VERSION 1

enum {
    T_DEVICE_ID = 1, T_GENERATION_ID = 2, T_AUTH_TYPE = 3, T_RECEIVED_MS = 4,
    T_MESSAGE_ID = 10, T_CORRELATION_ID = 11, T_CONTENT_TYPE = 12, T_CONTENT_ENCODING = 13, T_USER_ID = 14,
    T_PROP_NAME = 20, T_PROP_VALUE = 21,
    T_BODY = 30
};

static size_t slen(const char *s) { return s ? strlen(s) : 0; }

size_t iothub_msg_size(const iothub_msg_t *m)
{
    size_t n = m->body_len + slen(m->message_id) + slen(m->correlation_id) + slen(m->content_type) +
               slen(m->content_encoding) + slen(m->user_id);
    for (size_t i = 0; i < m->n_props; i++) n += slen(m->props[i].name) + slen(m->props[i].value);
    return n;
}

int iothub_prop_text_valid(const char *s, int is_name)
{
    if (!s || (is_name && !*s)) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) continue;
        if (!strchr("!#$%&'*+-.^_`|~", c)) return 0;
    }
    return 1;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int put_field(buf_t *b, int tag, const void *p, size_t n)
{
    if (n > UINT32_MAX) return -1;
    unsigned char h[5];
    h[0] = (unsigned char)tag;
    put_u32(h + 1, (uint32_t)n);
    buf_append(b, h, sizeof h);
    return buf_append(b, p, n);
}

static int put_str(buf_t *b, int tag, const char *s)
{
    return s ? put_field(b, tag, s, strlen(s) + 1) : 0;
}

int iothub_msg_encode(const iothub_msg_t *m, const iothub_stamp_t *st, buf_t *out)
{
    unsigned char ver = MSG_VERSION, ms[8];
    uint64_t r = (uint64_t)st->received_ms;
    for (int i = 0; i < 8; i++) ms[i] = (unsigned char)(r >> (8 * i));
    buf_reserve(out, iothub_msg_size(m) + 256 + 10 * m->n_props);
    buf_append(out, &ver, 1);
    int rc = put_str(out, T_DEVICE_ID, st->device_id) | put_str(out, T_GENERATION_ID, st->generation_id) |
             put_str(out, T_AUTH_TYPE, st->auth_type) | put_field(out, T_RECEIVED_MS, ms, 8) |
             put_str(out, T_MESSAGE_ID, m->message_id) | put_str(out, T_CORRELATION_ID, m->correlation_id) |
             put_str(out, T_CONTENT_TYPE, m->content_type) | put_str(out, T_CONTENT_ENCODING, m->content_encoding) |
             put_str(out, T_USER_ID, m->user_id);
    for (size_t i = 0; i < m->n_props; i++)
        rc |= put_str(out, T_PROP_NAME, m->props[i].name) | put_str(out, T_PROP_VALUE, m->props[i].value ? m->props[i].value : "");
    rc |= put_field(out, T_BODY, m->body ? m->body : "", m->body_len);
    return rc || out->oom ? -1 : 0;
}

/* A stored string: at least the NUL, which must be last and the only one. */
static const char *as_str(const unsigned char *p, uint32_t n)
{
    if (n == 0 || p[n - 1] != '\0' || memchr(p, '\0', n - 1)) return NULL;
    return (const char *)p;
}

int iothub_msg_decode(const void *payload, size_t len, iothub_msg_view_t *out, char *err, size_t errlen)
{
    const unsigned char *p = payload, *end = p + len;
    memset(out, 0, sizeof *out);
    out->msg.props = out->props;
    if (len < 1 || p[0] != MSG_VERSION) {
        snprintf(err, errlen, "record payload version %d is not supported", len ? p[0] : -1);
        return -1;
    }
    p++;
    int have_ms = 0, have_body = 0, pending_name = 0;
    while (p < end) {
        if (end - p < 5) { snprintf(err, errlen, "truncated field header"); return -1; }
        int tag = p[0];
        uint32_t n = get_u32(p + 1);
        p += 5;
        if ((size_t)(end - p) < n) { snprintf(err, errlen, "field %d longer than the payload", tag); return -1; }
        const unsigned char *v = p;
        p += n;
        const char **slot = NULL;
        switch (tag) {
        case T_DEVICE_ID: slot = &out->stamp.device_id; break;
        case T_GENERATION_ID: slot = &out->stamp.generation_id; break;
        case T_AUTH_TYPE: slot = &out->stamp.auth_type; break;
        case T_MESSAGE_ID: slot = &out->msg.message_id; break;
        case T_CORRELATION_ID: slot = &out->msg.correlation_id; break;
        case T_CONTENT_TYPE: slot = &out->msg.content_type; break;
        case T_CONTENT_ENCODING: slot = &out->msg.content_encoding; break;
        case T_USER_ID: slot = &out->msg.user_id; break;
        case T_RECEIVED_MS: {
            if (n != 8 || have_ms++) { snprintf(err, errlen, "bad or repeated receive time"); return -1; }
            uint64_t x = 0;
            for (int i = 7; i >= 0; i--) x = x << 8 | v[i];
            out->stamp.received_ms = (int64_t)x;
            continue;
        }
        case T_PROP_NAME:
            if (pending_name || out->msg.n_props >= IOTHUB_MAX_PROPS || !(out->props[out->msg.n_props].name = as_str(v, n))) {
                snprintf(err, errlen, "bad property name or more than %d properties", IOTHUB_MAX_PROPS);
                return -1;
            }
            pending_name = 1;
            continue;
        case T_PROP_VALUE:
            if (!pending_name || !(out->props[out->msg.n_props].value = as_str(v, n))) {
                snprintf(err, errlen, "property value without a name");
                return -1;
            }
            pending_name = 0;
            out->msg.n_props++;
            continue;
        case T_BODY:
            if (have_body++) { snprintf(err, errlen, "repeated body"); return -1; }
            out->msg.body = v;
            out->msg.body_len = n;
            continue;
        default:
            snprintf(err, errlen, "unknown field %d", tag);
            return -1;
        }
        if (*slot || !(*slot = as_str(v, n))) {
            snprintf(err, errlen, "field %d repeated or not a string", tag);
            return -1;
        }
    }
    if (pending_name || !have_body || !have_ms || !out->stamp.device_id || !out->stamp.generation_id ||
        !out->stamp.auth_type) {
        snprintf(err, errlen, "record payload lacks a required field");
        return -1;
    }
    return 0;
}
