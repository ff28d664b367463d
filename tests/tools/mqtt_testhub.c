/* mqtt_testhub.c — devhost's MQTT endpoint with an in-memory backend, for tests that drive
 * it with real peers (mosquitto clients, Microsoft's azure-iot-device SDK, raw TLS sockets).
 *
 *   MQTT_TEST_DEVICES='dev1=<base64 key>;dev2=<key>' mqtt_testhub --data DIR [--port N]
 *       [--hub NAME] [--connect-timeout-ms N] [--max-inflight N] [--max-keepalive-s N]
 *       [--ack-delay-ms N] [--skew-s N (clock skew allowed after a token's se, default 300)]
 *       [--quiet 1 (no message/completed lines: benchmarks)]
 *   mqtt_testhub --data DIR --iothub 1 [--hub NAME] [--port N] ...
 *       the same endpoint with the real local IoT Hub of DIR as its backend
 *       (src/devhost/mqtt/mqtt_hub_backend.c): devices from its registry (`devhost device
 *       add`), messages appended to its partition logs (read them back with
 *       `iothub_server --data DIR --dump`); no message/completed lines, no hold/fail.
 *
 * Keys never go on the command line. The backend checks SAS tokens as IoT Hub does (HMAC
 * over `sr` as sent, `sr` naming {hub}.azure-devices.net/devices/{id}, `se` in the future)
 * and "stores" each message by printing it; completions come from a separate thread after
 * --ack-delay-ms, as a real durable append would.
 *
 * stdout, one JSON object per line:
 *   {"event":"listening","port":N,"ca":"DIR/ca.pem"}
 *   {"event":"message","device":..,"qos":..,"will":..,"messageId":..,"correlationId":..,
 *    "contentType":..,"contentEncoding":..,"userId":..,"properties":{..},"size":N,
 *    "body":"<base64>","seq":N}
 *   {"event":"completed","seq":N,"status":"ok|refused|failed"}
 *   {"event":"stats",...}                                  (after the `stats` command)
 *   {"event":"command","line":...}                         (each command, once in effect)
 * stdin commands, one per line: `hold` (complete nothing until `release`), `release`,
 * `complete SEQ` (complete that message now, even while holding: out-of-order
 * completions), `fail` / `refuse` (complete later messages with that status), `ok`,
 * `kick DEVICE`, `stats`. SIGTERM/SIGINT stop the server gracefully and exit 0. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "devhost/mqtt/mqtt_hub_backend.h"
#include "devhost/mqtt/mqtt_server.h"
#include "devhost/mqtt/tls_ca.h"
#include "devhost/iothub/sas.h"
#include "util/base64.h"
#include "util/log.h"

typedef struct device {
    char          *id;
    unsigned char  key[128];
    int            key_len;
} device_t;

typedef struct job {
    void          *token;
    long long      due_ms;
    long long      seq;
    struct job    *next;
} job_t;

static struct {
    device_t       *devices;
    size_t          ndevices;
    char            hub_host[256];
    int             ack_delay_ms;
    int             skew_s;
    int             quiet;    /* --quiet 1: no message/completed lines (benchmarks) */
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    job_t          *head, *tail;
    int             hold, stop;
    mqtt_pub_status_t mode;
    long long       seq;
    pthread_mutex_t out_lock;
} T = {.skew_s = 300, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
       .out_lock = PTHREAD_MUTEX_INITIALIZER};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return;
    pthread_mutex_lock(&T.out_lock);
    printf("%s\n", s); /* one call: log lines of other threads never split it */
    fflush(stdout);
    pthread_mutex_unlock(&T.out_lock);
    free(s);
}

/* ---- SAS check: the local IoT Hub's (sas.h) against the in-memory device list ----------- */

static device_t *find_device(const char *id)
{
    for (size_t i = 0; i < T.ndevices; i++)
        if (strcmp(T.devices[i].id, id) == 0) return &T.devices[i];
    return NULL;
}

static mqtt_auth_t authenticate(void *ctx, const char *device_id, const char *username,
                                const char *password, int64_t *expires_at, void **session, char *why,
                                size_t whylen)
{
    (void)ctx;
    (void)session;
    (void)username; /* the server checked it against the hub and the client id */
    iothub_sas_t t;
    if (iothub_sas_parse(password, strlen(password), &t, why, whylen) != IOTHUB_SAS_OK)
        return MQTT_AUTH_BAD_CREDENTIALS;
    device_t *d = find_device(device_id);
    if (!d) {
        snprintf(why, whylen, "no such device");
        return MQTT_AUTH_NOT_AUTHORISED;
    }
    char path[300];
    snprintf(path, sizeof path, "devices/%s", device_id);
    /* The hub allows IOTHUB_SAS_SKEW_S after se; --skew-s narrows that for expiry tests. */
    time_t now = time(NULL) + (IOTHUB_SAS_SKEW_S - T.skew_s);
    if (iothub_sas_check(&t, T.hub_host, path, d->key, (size_t)d->key_len, now, why, whylen) != IOTHUB_SAS_OK)
        return MQTT_AUTH_NOT_AUTHORISED;
    *expires_at = t.se + T.skew_s;
    return MQTT_AUTH_OK;
}

/* ---- publish: print, then complete from the worker ----------------------------------- */

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

/* Print one message as the backend "stores" it. */
static void print_message(long long seq, const mqtt_message_t *m)
{
    char *b64 = malloc(4 * (m->body_len / 3 + 1) + 1);
    cJSON *o = cJSON_CreateObject(), *props = cJSON_CreateObject();
    if (!b64 || !o || !props) {
        free(b64);
        cJSON_Delete(o);
        cJSON_Delete(props);
        return;
    }
    EVP_EncodeBlock((unsigned char *)b64, m->body, (int)m->body_len);
    cJSON_AddStringToObject(o, "event", "message");
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    cJSON_AddStringToObject(o, "device", m->device_id);
    cJSON_AddNumberToObject(o, "qos", m->qos);
    cJSON_AddBoolToObject(o, "will", m->will);
    add_str(o, "messageId", m->props->message_id);
    add_str(o, "correlationId", m->props->correlation_id);
    add_str(o, "contentType", m->props->content_type);
    add_str(o, "contentEncoding", m->props->content_encoding);
    add_str(o, "userId", m->props->user_id);
    for (size_t i = 0; i < m->props->napp; i++)
        cJSON_AddStringToObject(props, m->props->app[i].name, m->props->app[i].value);
    cJSON_AddItemToObject(o, "properties", props);
    cJSON_AddNumberToObject(o, "size", (double)(m->props->size + m->body_len));
    cJSON_AddStringToObject(o, "body", b64);
    free(b64);
    emit(o);
}

static void publish(void *ctx, void *session, const mqtt_message_t *m, void *token)
{
    (void)ctx;
    (void)session;
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        mqtt_server_publish_done(token, MQTT_PUB_FAILED);
        return;
    }
    pthread_mutex_lock(&T.lock);
    j->seq = ++T.seq;
    pthread_mutex_unlock(&T.lock);
    if (!T.quiet) print_message(j->seq, m);
    j->token = token;
    j->due_ms = now_ms() + T.ack_delay_ms;
    pthread_mutex_lock(&T.lock);
    if (T.tail) T.tail->next = j;
    else T.head = j;
    T.tail = j;
    pthread_cond_signal(&T.cond);
    pthread_mutex_unlock(&T.lock);
}

/* Complete j (taken off the queue) and report it. Called without T.lock. */
static void finish(job_t *j, mqtt_pub_status_t st)
{
    mqtt_server_publish_done(j->token, st);
    if (T.quiet) {
        free(j);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "completed");
    cJSON_AddNumberToObject(o, "seq", (double)j->seq);
    cJSON_AddStringToObject(o, "status", st == MQTT_PUB_OK ? "ok" : st == MQTT_PUB_REFUSED ? "refused" : "failed");
    emit(o);
    free(j);
}

/* Take the job numbered seq off the queue (T.lock held). */
static job_t *take(long long seq)
{
    for (job_t **pp = &T.head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if ((*pp)->seq != seq) continue;
        job_t *j = *pp;
        *pp = j->next;
        if (T.tail == j) T.tail = prev;
        return j;
    }
    return NULL;
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&T.lock);
    for (;;) {
        if (T.head && !T.hold && now_ms() >= T.head->due_ms) {
            job_t *j = T.head;
            T.head = j->next;
            if (!T.head) T.tail = NULL;
            mqtt_pub_status_t st = T.mode;
            pthread_mutex_unlock(&T.lock);
            finish(j, st);
            pthread_mutex_lock(&T.lock);
            continue;
        }
        if (T.stop && !T.head) break;
        if (T.head && !T.hold) {
            long long wait = T.head->due_ms - now_ms();
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (wait > 0 ? wait : 1) * 1000000LL;
            ts.tv_sec += ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&T.cond, &T.lock, &ts);
        } else {
            pthread_cond_wait(&T.cond, &T.lock);
        }
    }
    pthread_mutex_unlock(&T.lock);
    return NULL;
}

/* ---- commands ------------------------------------------------------------------------ */

static mqtt_server_t *server;

static void *commands(void *arg)
{
    (void)arg;
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        pthread_mutex_lock(&T.lock);
        if (strcmp(line, "hold") == 0) T.hold = 1;
        else if (strcmp(line, "release") == 0) T.hold = 0;
        else if (strcmp(line, "fail") == 0) T.mode = MQTT_PUB_FAILED;
        else if (strcmp(line, "refuse") == 0) T.mode = MQTT_PUB_REFUSED;
        else if (strcmp(line, "ok") == 0) T.mode = MQTT_PUB_OK;
        job_t *j = strncmp(line, "complete ", 9) == 0 ? take(atoll(line + 9)) : NULL;
        mqtt_pub_status_t mode = T.mode;
        pthread_cond_signal(&T.cond);
        pthread_mutex_unlock(&T.lock);
        if (j) finish(j, mode);
        if (strncmp(line, "kick ", 5) == 0) mqtt_server_disconnect_device(server, line + 5);
        if (strcmp(line, "stats") == 0) {
            mqtt_server_stats_t st;
            mqtt_server_stats(server, &st);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "event", "stats");
            cJSON_AddNumberToObject(o, "connections", (double)st.connections);
            cJSON_AddNumberToObject(o, "accepted", (double)st.accepted);
            cJSON_AddNumberToObject(o, "refused", (double)st.refused);
            cJSON_AddNumberToObject(o, "messages", (double)st.messages);
            cJSON_AddNumberToObject(o, "acked", (double)st.acked);
            cJSON_AddNumberToObject(o, "failed", (double)st.failed);
            cJSON_AddNumberToObject(o, "protocolErrors", (double)st.protocol_errors);
            emit(o);
        }
        cJSON *ack = cJSON_CreateObject(); /* last: tests wait for it before relying on the command */
        cJSON_AddStringToObject(ack, "event", "command");
        cJSON_AddStringToObject(ack, "line", line);
        emit(ack);
    }
    return NULL;
}

static int load_devices(void)
{
    const char *env = getenv("MQTT_TEST_DEVICES");
    if (!env || !*env) return 0;
    char *copy = strdup(env), *save = NULL;
    for (char *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) continue;
        *eq = '\0';
        device_t *nd = realloc(T.devices, (T.ndevices + 1) * sizeof *nd);
        if (!nd) break;
        T.devices = nd;
        device_t *d = &T.devices[T.ndevices];
        d->id = strdup(item);
        size_t kl = strlen(eq + 1);
        d->key_len = kl / 4 * 3 <= sizeof d->key ? (int)base64_decode(eq + 1, kl, d->key) : -1;
        if (d->key_len <= 0) {
            fprintf(stderr, "mqtt_testhub: the key of %s is not base64\n", item);
            free(d->id);
            free(copy);
            return -1;
        }
        T.ndevices++;
    }
    free(copy);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *data = NULL, *hub = "enviromon";
    int use_iothub = 0;
    mqtt_server_opts_t o;
    mqtt_server_opts_default(&o);
    o.port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--data") == 0) data = v;
        else if (strcmp(a, "--port") == 0) o.port = atoi(v);
        else if (strcmp(a, "--hub") == 0) hub = v;
        else if (strcmp(a, "--connect-timeout-ms") == 0) o.connect_timeout_ms = atoi(v);
        else if (strcmp(a, "--max-inflight") == 0) o.max_inflight = (unsigned)atoi(v);
        else if (strcmp(a, "--max-keepalive-s") == 0) o.max_keepalive_s = (unsigned)atoi(v);
        else if (strcmp(a, "--ack-delay-ms") == 0) T.ack_delay_ms = atoi(v);
        else if (strcmp(a, "--skew-s") == 0) T.skew_s = atoi(v);
        else if (strcmp(a, "--quiet") == 0) T.quiet = atoi(v);
        else if (strcmp(a, "--iothub") == 0) use_iothub = atoi(v);
        else {
            fprintf(stderr, "mqtt_testhub: unknown option %s\n", a);
            return 2;
        }
    }
    if (!data) {
        fprintf(stderr, "usage: MQTT_TEST_DEVICES='id=key;...' mqtt_testhub --data DIR [options]\n");
        return 2;
    }
    if (load_devices() != 0) return 2;
    snprintf(T.hub_host, sizeof T.hub_host, "%s.azure-devices.net", hub);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    char err[512];
    tls_ca_t ca;
    if (tls_ca_ensure(data, &ca, err, sizeof err) != 0) {
        fprintf(stderr, "mqtt_testhub: %s\n", err);
        return 1;
    }
    SSL_CTX *ctx = tls_ca_server_ctx(&ca, err, sizeof err);
    if (!ctx) {
        fprintf(stderr, "mqtt_testhub: %s\n", err);
        tls_ca_free(&ca);
        return 1;
    }
    o.hub_host = T.hub_host;
    o.ssl_ctx = ctx;
    o.ca_path = ca.ca_path;
    iothub_t *ih = NULL;
    if (use_iothub) {
        iothub_opts_t ho = {.data_dir = data, .name = hub};
        if (!(ih = iothub_open(&ho, err, sizeof err))) {
            fprintf(stderr, "mqtt_testhub: %s\n", err);
            return 1;
        }
        mqtt_hub_backend(ih, &o.backend);
    } else {
        o.backend.authenticate = authenticate;
        o.backend.publish = publish;
    }
    pthread_t wth, cth;
    pthread_create(&wth, NULL, worker, NULL);
    server = mqtt_server_start(&o, err, sizeof err);
    if (!server) {
        fprintf(stderr, "mqtt_testhub: %s\n", err);
        return 1;
    }
    pthread_create(&cth, NULL, commands, NULL);
    pthread_detach(cth);
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "event", "listening");
    cJSON_AddNumberToObject(l, "port", mqtt_server_port(server));
    cJSON_AddStringToObject(l, "ca", ca.ca_path);
    cJSON_AddBoolToObject(l, "createdCa", ca.created_ca);
    cJSON_AddBoolToObject(l, "issuedCert", ca.issued_cert);
    cJSON_AddStringToObject(l, "backend", ih ? "iothub" : "memory");
    emit(l);

    int sig = 0;
    sigwait(&set, &sig);
    /* Held completions are released so that the stop can finish (it awaits them all). */
    pthread_mutex_lock(&T.lock);
    T.hold = 0;
    pthread_cond_signal(&T.cond);
    pthread_mutex_unlock(&T.lock);
    mqtt_server_stop(server);
    if (ih) iothub_close(ih); /* after the server: it awaits every completion first */
    pthread_mutex_lock(&T.lock);
    T.stop = 1;
    pthread_cond_signal(&T.cond);
    pthread_mutex_unlock(&T.lock);
    pthread_join(wth, NULL);
    SSL_CTX_free(ctx);
    tls_ca_free(&ca);
    for (size_t i = 0; i < T.ndevices; i++) {
        OPENSSL_cleanse(T.devices[i].key, sizeof T.devices[i].key);
        free(T.devices[i].id);
    }
    free(T.devices);
    log_info(NULL, "mqtt_testhub: stopped");
    return 0;
}
