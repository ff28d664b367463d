/* signalr_conn.c — SignalR client connections: bounded queues, handshake, SSE and long
 * polling draining (see signalr_conn.h for what it owns and why). */
#include "devhost/signalr/signalr_conn.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devhost/signalr/signalr_ws.h"
#include "util/log.h"
#include "util/utf8.h"

int64_t sr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sr_random_id(char *out)
{
    static const char b64u[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) return -1;
    /* 128 bits → 22 base64url characters (the last one carries 2 bits). */
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sizeof raw; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            out[o++] = b64u[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits > 0) out[o++] = b64u[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o == SR_ID_LEN ? 0 : -1;
}

sr_client_t *sr_client_new(const char *hub, const char *user, int negotiate_version,
                           size_t max_queue)
{
    if (strlen(hub) > SR_HUB_MAX) return NULL;
    sr_client_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (pthread_mutex_init(&c->lock, NULL) != 0) { free(c); return NULL; }
    c->refs = 1;
    if (sr_random_id(c->id) != 0 || sr_random_id(c->key) != 0) goto fail;
    if (negotiate_version < 1) memcpy(c->key, c->id, sizeof c->key);
    memcpy(c->hub, hub, strlen(hub) + 1);
    if (user && *user) {
        c->user = strdup(user);
        if (!c->user) goto fail;
    }
    c->negotiate_version = negotiate_version;
    c->max_queue = max_queue;
    c->created_ms = c->last_seen_ms = c->last_ping_ms = sr_now_ms();
    return c;
fail:
    pthread_mutex_destroy(&c->lock);
    free(c->user);
    free(c);
    return NULL;
}

void sr_client_ref(sr_client_t *c)
{
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
}

void sr_client_unref(sr_client_t *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    int last = --c->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (!last) return;
    buf_free(&c->queue);
    buf_free(&c->stage);
    for (size_t i = 0; i < c->ngroups; i++) free(c->groups[i]);
    free(c->groups);
    free(c->user);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void wake_locked(sr_client_t *c)
{
    if (c->parked) {
        struct MHD_Connection *m = c->parked;
        c->parked = NULL;
        MHD_resume_connection(m);
    }
    if (c->ws) sr_ws_notify(c->ws);
}

void sr_client_wake(sr_client_t *c)
{
    pthread_mutex_lock(&c->lock);
    wake_locked(c);
    pthread_mutex_unlock(&c->lock);
}

/* Queue a close message; bypasses the bound (it is tiny and always the last record). */
static void queue_close_locked(sr_client_t *c, const char *error, int allow_reconnect)
{
    cJSON *m = cJSON_CreateObject();
    char *s = NULL;
    if (m && cJSON_AddNumberToObject(m, "type", 7) &&
        (!error || cJSON_AddStringToObject(m, "error", error)) &&
        (!allow_reconnect || cJSON_AddTrueToObject(m, "allowReconnect")))
        s = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    if (s) {
        if (buf_puts(&c->queue, s) != 0 || buf_putc(&c->queue, SR_RS) != 0)
            log_error(NULL, "signalr: out of memory queueing the close message for %s", c->id);
        free(s);
    } else {
        buf_puts(&c->queue, "{\"type\":7}\x1e");
    }
}

static void close_locked(sr_client_t *c, const char *reason, int close_msg, const char *error,
                         int allow_reconnect)
{
    if (c->state == SR_CLIENT_CLOSING) return;
    c->state = SR_CLIENT_CLOSING;
    c->closing_since_ms = sr_now_ms();
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason ? reason : "closed");
    if (close_msg && c->transport != SR_TRANSPORT_NONE) queue_close_locked(c, error, allow_reconnect);
    wake_locked(c);
}

void sr_client_close(sr_client_t *c, const char *reason, int close_msg, const char *error,
                     int allow_reconnect)
{
    pthread_mutex_lock(&c->lock);
    close_locked(c, reason, close_msg, error, allow_reconnect);
    pthread_mutex_unlock(&c->lock);
}

int sr_client_enqueue(sr_client_t *c, const char *rec, size_t len)
{
    pthread_mutex_lock(&c->lock);
    if (c->state == SR_CLIENT_CLOSING) {
        pthread_mutex_unlock(&c->lock);
        return 1;
    }
    size_t pending = c->queue.len + (c->stage.len - c->stage_off);
    if (pending > 0 && pending + len > c->max_queue) {
        log_warn(NULL, "signalr: connection %s (hub %s) fell behind: %zu bytes queued, bound %zu;"
                 " closing it", c->id, c->hub, pending, c->max_queue);
        buf_reset(&c->queue);
        close_locked(c, "fell too far behind (queue bound exceeded)", 1,
                     "Connection fell too far behind.", 1);
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    if (buf_append(&c->queue, rec, len) != 0) {
        buf_free(&c->queue);
        log_error(NULL, "signalr: out of memory queueing for connection %s; closing it", c->id);
        close_locked(c, "out of memory", 0, NULL, 0);
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    c->records_out++;
    wake_locked(c);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void queue_raw_locked(sr_client_t *c, const char *s)
{
    if (buf_puts(&c->queue, s) != 0 || buf_putc(&c->queue, SR_RS) != 0)
        log_error(NULL, "signalr: out of memory queueing for connection %s", c->id);
    wake_locked(c);
}

static int handshake_locked(sr_client_t *c, const char *rec, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(rec, len);
    const char *err = NULL;
    if (!j || !cJSON_IsObject(j)) {
        err = "Handshake request is not a JSON object.";
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "protocol");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
        if (!cJSON_IsString(p)) err = "Handshake request has no protocol.";
        else if (strcmp(p->valuestring, "json") != 0)
            err = "The protocol requested is not supported; this server supports only 'json'.";
        else if (!cJSON_IsNumber(v) || v->valuedouble != 1)
            err = "The protocol version requested is not supported; this server supports json version 1.";
    }
    cJSON_Delete(j);
    if (err) {
        char msg[256];
        snprintf(msg, sizeof msg, "{\"error\":\"%s\"}", err);
        queue_raw_locked(c, msg);
        log_warn(NULL, "signalr: handshake refused for connection %s: %s", c->id, err);
        close_locked(c, "handshake refused", 0, NULL, 0);
        return -1;
    }
    queue_raw_locked(c, "{}");
    c->state = SR_CLIENT_CONNECTED;
    return 0;
}

int sr_client_receive(sr_client_t *c, const char *data, size_t len, int *handshake_done)
{
    *handshake_done = 0;
    pthread_mutex_lock(&c->lock);
    c->last_seen_ms = sr_now_ms();
    int rc = 0;
    size_t i = 0;
    /* The JSON hub protocol is text: a POST body in invalid UTF-8 is refused as a WebSocket
     * Text message is (close 1007 there), so every transport treats it alike. */
    if (c->state != SR_CLIENT_CLOSING && !utf8_valid(data, len)) {
        log_warn(NULL, "signalr: connection %s sent a message that is not valid UTF-8; closing it", c->id);
        close_locked(c, "message not valid UTF-8", 1, "Invalid UTF-8 in message.", 0);
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    while (i < len && c->state != SR_CLIENT_CLOSING) {
        const char *rs = memchr(data + i, SR_RS, len - i);
        if (!rs) {
            log_warn(NULL, "signalr: connection %s sent a record without a 0x1E terminator;"
                     " closing it", c->id);
            close_locked(c, "malformed message", 1, "Invalid message framing.", 0);
            rc = -1;
            break;
        }
        size_t rlen = (size_t)(rs - (data + i));
        const char *rec = data + i;
        i += rlen + 1;
        if (c->state == SR_CLIENT_NEGOTIATED) {
            if (handshake_locked(c, rec, rlen) != 0) { rc = -1; break; }
            *handshake_done = 1;
            continue;
        }
        cJSON *j = cJSON_ParseWithLength(rec, rlen);
        const cJSON *t = j ? cJSON_GetObjectItemCaseSensitive(j, "type") : NULL;
        if (!cJSON_IsNumber(t)) {
            cJSON_Delete(j);
            log_warn(NULL, "signalr: connection %s sent a message that is not a hub message;"
                     " closing it", c->id);
            close_locked(c, "malformed message", 1, "Invalid hub message.", 0);
            rc = -1;
            break;
        }
        int type = t->valueint;
        cJSON_Delete(j);
        if (type == 7) {
            close_locked(c, "client sent close", 0, NULL, 0);
        } else if (type != 6) {
            /* Serverless: no upstream to invoke. Ignore, as the service does without upstream. */
            log_debug(NULL, "signalr: connection %s sent message type %d; ignored (serverless)",
                      c->id, type);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

ssize_t sr_client_sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct sr_sse_stream *s = cls;
    sr_client_t *c = s->client;
    pthread_mutex_lock(&c->lock);
    if (c->stage_off >= c->stage.len && c->queue.len > 0) {
        buf_reset(&c->stage);
        c->stage_off = 0;
        /* One event may hold several records: the client splits on 0x1E. Records never
         * contain CR or LF (compact JSON), so one data line suffices. */
        if (buf_puts(&c->stage, "data: ") != 0 ||
            buf_append(&c->stage, c->queue.data, c->queue.len) != 0 ||
            buf_puts(&c->stage, "\r\n\r\n") != 0) {
            buf_free(&c->stage);
            c->stage_off = 0;
            log_error(NULL, "signalr: out of memory framing SSE data for %s; closing it", c->id);
            close_locked(c, "out of memory", 0, NULL, 0);
            pthread_mutex_unlock(&c->lock);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        buf_reset(&c->queue);
    }
    if (c->stage_off < c->stage.len) {
        size_t n = c->stage.len - c->stage_off;
        if (n > max) n = max;
        memcpy(out, c->stage.data + c->stage_off, n);
        c->stage_off += n;
        if (c->stage_off == c->stage.len) {
            buf_reset(&c->stage);
            c->stage_off = 0;
        }
        c->last_seen_ms = sr_now_ms();
        pthread_mutex_unlock(&c->lock);
        return (ssize_t)n;
    }
    if (c->state == SR_CLIENT_CLOSING) {
        pthread_mutex_unlock(&c->lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    /* Nothing to send: park until sr_client_enqueue/close/wake resumes us. libmicrohttpd
     * documents suspending from a content reader as safe. Parking and suspending under
     * c->lock mean a wake either saw the queue before us or finds the suspension done, so
     * MHD_resume_connection always follows MHD_suspend_connection. Never return 0 without
     * suspending: 0.9.75's epoll loop may then not call this reader again. */
    c->parked = s->mhd;
    MHD_suspend_connection(s->mhd);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

char *sr_client_take_locked(sr_client_t *c, size_t *len, int *closed)
{
    *len = 0;
    *closed = 0;
    if (c->queue.len == 0) {
        *closed = c->state == SR_CLIENT_CLOSING;
        return NULL;
    }
    *len = c->queue.len;
    char *body = buf_steal(&c->queue);
    if (!body) *len = 0;
    return body;
}
