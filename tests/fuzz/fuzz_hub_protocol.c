/* fuzz_hub_protocol.c — the SignalR JSON hub protocol as clients of the local SignalR Service
 * speak it: the handshake record, then hub messages, each ended by 0x1E, in the bodies of
 * SSE/long-polling POSTs or in WebSocket Text messages (sr_client_receive and what it queues:
 * src/devhost/signalr/signalr_conn.c).
 *
 * Input: a byte for the negotiate version, then bodies separated by 0xFF (a byte that never
 * occurs in UTF-8), each handed to sr_client_receive in turn, as successive messages from one
 * connection.
 *
 * Invariants: a body is refused (-1) exactly when the connection is closing afterwards, and
 * once closing it stays closing; the connection is connected exactly when the first record it
 * ever got was a handshake an independent reading accepts (a JSON object, protocol "json",
 * version 1), and handshake_done is reported by the call that completed it; everything queued
 * for the client is whole records (JSON objects, each ended by 0x1E) — the handshake answer
 * first ({} or {"error":...}), then at most a close message {"type":7,...}. */
#include "fuzz.h"

#include <cjson/cJSON.h>

#include "devhost/signalr/signalr_conn.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    return 0;
}

/* Does an independent reading accept rec[0..n) as the handshake? */
static int handshake_ok(const char *rec, size_t n)
{
    cJSON *j = cJSON_ParseWithLength(rec, n);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "protocol"), *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    int ok = cJSON_IsObject(j) && cJSON_IsString(p) && strcmp(p->valuestring, "json") == 0 && cJSON_IsNumber(v) &&
             v->valuedouble == 1;
    cJSON_Delete(j);
    return ok;
}

static void check_queue(const sr_client_t *c, int connected_ever)
{
    const char *q = c->queue.data;
    size_t n = c->queue.len, at = 0, k = 0;
    while (at < n) {
        const char *rs = memchr(q + at, SR_RS, n - at);
        FUZZ_CHECK(rs, "a queued record without its 0x1E");
        size_t len = (size_t)(rs - (q + at));
        cJSON *j = cJSON_ParseWithLength(q + at, len);
        FUZZ_CHECK(cJSON_IsObject(j), "a queued record that is not a JSON object: %.*s", (int)len, q + at);
        if (k == 0) {
            FUZZ_CHECK(connected_ever ? len == 2 : cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "error")),
                       "the first record is not the handshake answer: %.*s", (int)len, q + at);
        } else {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
            FUZZ_CHECK(cJSON_IsNumber(t) && t->valueint == 7 && k == 1, "unexpected record %zu: %.*s", k, (int)len, q + at);
        }
        cJSON_Delete(j);
        at += len + 1;
        k++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    sr_client_t *c = sr_client_new("enviromon", NULL, data[0] & 1, 1u << 20);
    if (!c) abort();
    const uint8_t *rest = data + 1;
    size_t rl = size - 1;
    int first_seen = 0, want_connected = 0;
    while (rest) {
        const uint8_t *body = rest;
        size_t n = fuzz_split(rest, rl, 0xFF, &rest, &rl);
        if (!first_seen && n) {
            /* the first record the connection ever sees decides the handshake */
            const uint8_t *rs = memchr(body, SR_RS, n);
            if (rs) want_connected = handshake_ok((const char *)body, (size_t)(rs - body));
            first_seen = 1;
        }
        char *copy = (char *)fuzz_memdup(body, n);
        int was_closing = c->state == SR_CLIENT_CLOSING, was_connected = c->state == SR_CLIENT_CONNECTED, done = -1;
        int rc = sr_client_receive(c, copy, n, &done);
        free(copy);
        FUZZ_CHECK(rc == 0 || rc == -1, "receive returned %d", rc);
        FUZZ_CHECK(done == 0 || done == 1, "handshake_done %d", done);
        FUZZ_CHECK(!done || (!was_connected && c->state != SR_CLIENT_NEGOTIATED), "handshake_done without a handshake");
        if (rc != 0) FUZZ_CHECK(c->state == SR_CLIENT_CLOSING, "a refused body left the connection open");
        if (was_closing) FUZZ_CHECK(c->state == SR_CLIENT_CLOSING, "a closing connection reopened");
        if (was_connected) FUZZ_CHECK(c->state != SR_CLIENT_NEGOTIATED, "a connected client back to negotiated");
    }
    if (c->state == SR_CLIENT_CONNECTED) FUZZ_CHECK(want_connected, "connected without a valid handshake");
    if (first_seen && want_connected) FUZZ_CHECK(c->state != SR_CLIENT_NEGOTIATED, "a valid handshake not taken");
    check_queue(c, want_connected);
    sr_client_unref(c);
    return 0;
}
