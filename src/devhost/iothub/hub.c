/* hub.c — the local IoT Hub object and its device API (see hub.h). */
#include "devhost/iothub/hub.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "devhost/iothub/checkpoint.h"
#include "devhost/iothub/fsutil.h"
#include "devhost/iothub/sas.h"
#include "util/log.h"

struct iothub {
    char               name[64];
    char               host[128];
    char               instance[IOTHUB_INSTANCE_LEN + 1];
    char               dir[4096];        /* <data>/iothub */
    char               ckroot[4200];     /* <data>/iothub/checkpoints */
    int                partitions;
    iothub_registry_t *reg;
    iothub_plog_t     *logs[IOTHUB_MAX_PARTITIONS];
    pthread_t          hk;
    int                hk_started;
    pthread_mutex_t    hk_lock;
    pthread_cond_t     hk_cond;
    int                hk_stop;
    int                compact_ms;
    atomic_ullong      refused;
    pthread_mutex_t    groups_lock;
    char              *groups[16];       /* consumer groups claimed by running triggers */
};

int iothub_status_http(iothub_status_t st)
{
    switch (st) {
    case IOTHUB_OK: return 204;
    case IOTHUB_E_BAD_REQUEST: return 400;
    case IOTHUB_E_UNAUTHORIZED: return 401;
    case IOTHUB_E_NOT_FOUND: return 404;
    case IOTHUB_E_TOO_LARGE: return 413;
    case IOTHUB_E_THROTTLED: return 429;
    case IOTHUB_E_UNAVAILABLE: return 503;
    }
    return 500;
}

const char *iothub_status_code(iothub_status_t st)
{
    switch (st) {
    case IOTHUB_OK: return "";
    case IOTHUB_E_BAD_REQUEST: return "ArgumentInvalid";
    case IOTHUB_E_UNAUTHORIZED: return "IotHubUnauthorizedAccess";
    case IOTHUB_E_NOT_FOUND: return "DeviceNotFound";
    case IOTHUB_E_TOO_LARGE: return "MessageTooLarge";
    case IOTHUB_E_THROTTLED: return "ThrottlingException";
    case IOTHUB_E_UNAVAILABLE: return "ServiceUnavailable";
    }
    return "ServerError";
}

int iothub_partition_of(const char *device_id, int partitions)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)device_id; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return partitions > 0 ? (int)(h % (uint32_t)partitions) : 0;
}

/* ---- hub.json: partition count and instance id ----------------------------------------- */

static int hub_meta(iothub_t *h, int want_partitions, char *err, size_t errlen)
{
    char pdir[4200], path[4300];
    snprintf(pdir, sizeof pdir, "%s/partitions", h->dir);
    snprintf(path, sizeof path, "%s/hub.json", pdir);
    if (iothub_fs_mkdirs(pdir, 0700, err, errlen) != 0) return -1;
    char *text;
    size_t len;
    int rc = iothub_fs_read(path, 65536, &text, &len, NULL, err, errlen);
    if (rc < 0) return -1;
    if (rc == 0) {
        cJSON *doc = cJSON_ParseWithLength(text, len);
        free(text);
        const cJSON *np = cJSON_GetObjectItemCaseSensitive(doc, "partitions");
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(doc, "instance");
        if (!cJSON_IsNumber(np) || np->valueint < 1 || np->valueint > IOTHUB_MAX_PARTITIONS ||
            !cJSON_IsString(in) || strlen(in->valuestring) != IOTHUB_INSTANCE_LEN ||
            strspn(in->valuestring, "0123456789abcdef") != IOTHUB_INSTANCE_LEN) {
            cJSON_Delete(doc);
            snprintf(err, errlen, "%s is corrupt (expected {\"partitions\":N,\"instance\":\"<16 hex>\"})", path);
            return -1;
        }
        h->partitions = np->valueint;
        memcpy(h->instance, in->valuestring, IOTHUB_INSTANCE_LEN + 1);
        cJSON_Delete(doc);
        if (want_partitions && want_partitions != h->partitions) {
            snprintf(err, errlen, "this hub has %d partitions (fixed when it was created, as on Azure); "
                     "--partitions %d needs a new data folder, or remove %s to start over (its messages are lost)",
                     h->partitions, want_partitions, pdir);
            return -1;
        }
        return 0;
    }
    /* a new hub: fix its partition count and give it an instance id */
    h->partitions = want_partitions ? want_partitions : IOTHUB_DEFAULT_PARTITIONS;
    unsigned char raw[IOTHUB_INSTANCE_LEN / 2];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        snprintf(err, errlen, "no randomness for the hub instance id");
        return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++) snprintf(h->instance + 2 * i, 3, "%02x", raw[i]);
    char doc[256];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char created[32];
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(doc, sizeof doc, "{\"version\":1,\"partitions\":%d,\"instance\":\"%s\",\"created\":\"%s\"}\n",
                     h->partitions, h->instance, created);
    return iothub_fs_write_atomic(path, doc, (size_t)n, 0600, err, errlen);
}

/* ---- housekeeping: compaction ------------------------------------------------------------ */

int iothub_compact_now(iothub_t *h)
{
    int total = 0;
    for (int p = 0; p < h->partitions; p++) {
        int64_t min_next = 0;
        int rc = iothub_ckpt_min(h->ckroot, p, h->instance, &min_next);
        if (rc != 1) continue;   /* no consumer yet, or one we cannot read: keep everything */
        int k = iothub_plog_compact(h->logs[p], min_next);
        if (k > 0)
            log_info(NULL, "iothub: partition %d: compacted %d segment(s); every consumer group is past "
                     "sequence number %" PRId64, p, k, min_next);
        total += k;
    }
    return total;
}

/* How often housekeeping looks at the registry file, so that a removed or re-keyed device's
 * MQTT session is closed promptly even when no request comes (one stat(2) per look). */
#define REGISTRY_WATCH_MS 250

static void *housekeeping(void *arg)
{
    iothub_t *h = arg;
    struct timespec last;
    clock_gettime(CLOCK_MONOTONIC, &last);
    pthread_mutex_lock(&h->hk_lock);
    while (!h->hk_stop) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += (long)REGISTRY_WATCH_MS * 1000000L;
        if (t.tv_nsec >= 1000000000L) { t.tv_sec++; t.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&h->hk_cond, &h->hk_lock, &t);
        if (h->hk_stop) break;
        pthread_mutex_unlock(&h->hk_lock);
        (void)iothub_registry_count(h->reg);   /* reloads and notifies when the file changed */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >= h->compact_ms) {
            iothub_compact_now(h);
            last = now;
        }
        pthread_mutex_lock(&h->hk_lock);
    }
    pthread_mutex_unlock(&h->hk_lock);
    return NULL;
}

/* ---- open / close -------------------------------------------------------------------------- */

int iothub_valid_name(const char *s)
{
    /* IoT Hub names: 3-50 alphanumerics or '-', not starting or ending with '-' */
    size_t n = strlen(s);
    if (n < 3 || n > 50 || s[0] == '-' || s[n - 1] == '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-') return 0;
    return 1;
}

iothub_t *iothub_open(const iothub_opts_t *o, char *err, size_t errlen)
{
    const char *name = o->name && *o->name ? o->name : IOTHUB_DEFAULT_NAME;
    if (!iothub_valid_name(name)) {
        snprintf(err, errlen, "invalid hub name '%.60s': 3 to 50 letters, digits or '-', not starting or ending with '-'", name);
        return NULL;
    }
    if (o->partitions < 0 || o->partitions > IOTHUB_MAX_PARTITIONS) {
        snprintf(err, errlen, "--partitions must be from 1 to %d", IOTHUB_MAX_PARTITIONS);
        return NULL;
    }
    iothub_t *h = calloc(1, sizeof *h);
    if (!h) { snprintf(err, errlen, "out of memory"); return NULL; }
    snprintf(h->name, sizeof h->name, "%s", name);
    snprintf(h->host, sizeof h->host, "%s" IOTHUB_HOST_SUFFIX, name);
    for (char *p = h->host; *p; p++) *p = (char)tolower((unsigned char)*p);
    if ((size_t)snprintf(h->dir, sizeof h->dir, "%s/iothub", o->data_dir ? o->data_dir : ".devhost") >= sizeof h->dir) {
        snprintf(err, errlen, "data folder path too long");
        free(h);
        return NULL;
    }
    snprintf(h->ckroot, sizeof h->ckroot, "%s/checkpoints", h->dir);
    h->compact_ms = o->compact_interval_ms > 0 ? o->compact_interval_ms : 10000;
    pthread_mutex_init(&h->hk_lock, NULL);
    pthread_cond_init(&h->hk_cond, NULL);
    pthread_mutex_init(&h->groups_lock, NULL);
    if (iothub_fs_mkdirs(h->dir, 0700, err, errlen) != 0 || hub_meta(h, o->partitions, err, errlen) != 0)
        goto fail;
    if (!(h->reg = iothub_registry_open(h->dir, err, errlen))) goto fail;
    for (int p = 0; p < h->partitions; p++) {
        char pdir[4300];
        snprintf(pdir, sizeof pdir, "%s/partitions/%d", h->dir, p);
        iothub_plog_opts_t po = {pdir, p, o->segment_bytes, 0};
        if (!(h->logs[p] = iothub_plog_open(&po, err, errlen))) goto fail;
    }
    if (pthread_create(&h->hk, NULL, housekeeping, h) != 0) {
        snprintf(err, errlen, "cannot start the hub's housekeeping thread");
        goto fail;
    }
    h->hk_started = 1;
    return h;
fail:
    iothub_close(h);
    return NULL;
}

void iothub_close(iothub_t *h)
{
    if (!h) return;
    if (h->hk_started) {
        pthread_mutex_lock(&h->hk_lock);
        h->hk_stop = 1;
        pthread_cond_signal(&h->hk_cond);
        pthread_mutex_unlock(&h->hk_lock);
        pthread_join(h->hk, NULL);
    }
    for (int p = 0; p < IOTHUB_MAX_PARTITIONS; p++) iothub_plog_close(h->logs[p]);
    iothub_registry_close(h->reg);
    pthread_cond_destroy(&h->hk_cond);
    pthread_mutex_destroy(&h->hk_lock);
    for (size_t i = 0; i < sizeof h->groups / sizeof h->groups[0]; i++) free(h->groups[i]);
    pthread_mutex_destroy(&h->groups_lock);
    free(h);
}

const char *iothub_name(const iothub_t *h) { return h->name; }
const char *iothub_host(const iothub_t *h) { return h->host; }
const char *iothub_instance(const iothub_t *h) { return h->instance; }
int iothub_partitions(const iothub_t *h) { return h->partitions; }
const char *iothub_checkpoint_root(const iothub_t *h) { return h->ckroot; }
iothub_registry_t *iothub_registry(iothub_t *h) { return h->reg; }

iothub_plog_t *iothub_partition_log(iothub_t *h, int partition)
{
    return partition >= 0 && partition < h->partitions ? h->logs[partition] : NULL;
}

void iothub_count_refused(iothub_t *h) { atomic_fetch_add(&h->refused, 1); }

int iothub_claim_group(iothub_t *h, const char *group)
{
    size_t n = sizeof h->groups / sizeof h->groups[0], free_slot = n;
    int rc = 0;
    pthread_mutex_lock(&h->groups_lock);
    for (size_t i = 0; i < n; i++) {
        if (!h->groups[i]) { if (free_slot == n) free_slot = i; }
        else if (strcasecmp(h->groups[i], group) == 0) rc = -1;
    }
    if (rc == 0 && (free_slot == n || !(h->groups[free_slot] = strdup(group)))) rc = -1;
    pthread_mutex_unlock(&h->groups_lock);
    return rc;
}

void iothub_release_group(iothub_t *h, const char *group)
{
    pthread_mutex_lock(&h->groups_lock);
    for (size_t i = 0; i < sizeof h->groups / sizeof h->groups[0]; i++)
        if (h->groups[i] && strcasecmp(h->groups[i], group) == 0) {
            free(h->groups[i]);
            h->groups[i] = NULL;
            break;
        }
    pthread_mutex_unlock(&h->groups_lock);
}

/* ---- authentication --------------------------------------------------------------------- */

iothub_status_t iothub_authenticate(iothub_t *h, const char *device_id, const char *token, size_t token_len,
                                    const char *path, iothub_auth_t *out, char *err, size_t errlen)
{
    char why[300];
    if (!iothub_device_id_valid(device_id, why, sizeof why)) {
        snprintf(err, errlen, "invalid device id: %s", why);
        return IOTHUB_E_BAD_REQUEST;
    }
    iothub_sas_t t;
    if (iothub_sas_parse(token, token_len, &t, why, sizeof why) != IOTHUB_SAS_OK) {
        snprintf(err, errlen, "invalid SAS token: %s", why);
        return IOTHUB_E_UNAUTHORIZED;
    }
    iothub_device_t d;
    if (!iothub_registry_lookup(h->reg, device_id, &d)) {
        snprintf(err, errlen, "IotHub '%s' does not contain the specified device '%s' (`devhost device add %s`)",
                 h->name, device_id, device_id);
        return IOTHUB_E_NOT_FOUND;
    }
    unsigned char key[IOTHUB_KEY_RAW_MAX];
    iothub_sas_status_t st = IOTHUB_SAS_BAD_SIGNATURE;
    time_t now = time(NULL);
    for (int k = 0; k < 2 && st == IOTHUB_SAS_BAD_SIGNATURE; k++) {
        long kl = iothub_device_key_raw(k == 0 ? d.primary : d.secondary, key);
        if (kl < 0) continue;
        st = iothub_sas_check(&t, h->host, path, key, (size_t)kl, now, why, sizeof why);
    }
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(&d.primary, sizeof d.primary);
    OPENSSL_cleanse(&d.secondary, sizeof d.secondary);
    if (st != IOTHUB_SAS_OK) {
        snprintf(err, errlen, "authentication failed for device '%s': %s", device_id, why);
        return IOTHUB_E_UNAUTHORIZED;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->device_id, sizeof out->device_id, "%s", device_id);
    snprintf(out->generation_id, sizeof out->generation_id, "%s", d.generation_id);
    out->expires = t.se;
    return IOTHUB_OK;
}

/* ---- sending ----------------------------------------------------------------------------- */

typedef struct send_ctx {
    iothub_t           *h;
    iothub_send_done_fn done;
    void               *arg;
} send_ctx_t;

static void send_done(void *arg, const iothub_plog_result_t *res)
{
    send_ctx_t *c = arg;
    if (!res->ok) atomic_fetch_add(&c->h->refused, 1);
    c->done(c->arg, res->ok ? IOTHUB_OK : IOTHUB_E_UNAVAILABLE, res->error);
    free(c);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static iothub_status_t refuse(iothub_t *h, iothub_status_t st)
{
    atomic_fetch_add(&h->refused, 1);
    return st;
}

iothub_status_t iothub_send(iothub_t *h, const iothub_auth_t *dev, const iothub_msg_t *msgs, size_t n,
                            iothub_send_done_fn done, void *arg, char *err, size_t errlen)
{
    if (n == 0) {
        snprintf(err, errlen, "no messages to send");
        return refuse(h, IOTHUB_E_BAD_REQUEST);
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sz = iothub_msg_size(&msgs[i]);
        total += sz;
        if (sz > IOTHUB_MAX_MESSAGE_BYTES || total > IOTHUB_MAX_MESSAGE_BYTES) {
            snprintf(err, errlen, "Message size (body plus properties) %s 262144 bytes, the IoT Hub limit%s",
                     sz > IOTHUB_MAX_MESSAGE_BYTES ? "exceeds" : "of the batch exceeds", "");
            return refuse(h, IOTHUB_E_TOO_LARGE);
        }
        if (msgs[i].n_props > IOTHUB_MAX_PROPS) {
            snprintf(err, errlen, "a message has %zu application properties; at most %d are accepted",
                     msgs[i].n_props, IOTHUB_MAX_PROPS);
            return refuse(h, IOTHUB_E_BAD_REQUEST);
        }
    }
    /* the device may have been removed (or removed and added again) since it authenticated */
    iothub_device_t d;
    if (!iothub_registry_lookup(h->reg, dev->device_id, &d) || strcmp(d.generation_id, dev->generation_id) != 0) {
        OPENSSL_cleanse(&d, sizeof d);
        snprintf(err, errlen, "IotHub '%s' does not contain the specified device '%s'", h->name, dev->device_id);
        return refuse(h, IOTHUB_E_NOT_FOUND);
    }
    OPENSSL_cleanse(&d, sizeof d);
    iothub_stamp_t st = {dev->device_id, dev->generation_id, "sas", now_ms()};
    buf_t b = BUF_INIT;
    size_t *ends = malloc(n * sizeof *ends);
    iothub_plog_payload_t *pp = malloc(n * sizeof *pp);
    send_ctx_t *c = malloc(sizeof *c);
    int fail = !ends || !pp || !c;
    for (size_t i = 0; i < n && !fail; i++) {
        fail = iothub_msg_encode(&msgs[i], &st, &b) != 0;
        ends[i] = b.len;
    }
    if (fail) {
        free(ends); free(pp); free(c); buf_free(&b);
        snprintf(err, errlen, "out of memory");
        return refuse(h, IOTHUB_E_UNAVAILABLE);
    }
    for (size_t i = 0; i < n; i++) {
        size_t start = i ? ends[i - 1] : 0;
        pp[i].data = b.data + start;
        pp[i].len = ends[i] - start;
    }
    c->h = h;
    c->done = done;
    c->arg = arg;
    int p = iothub_partition_of(dev->device_id, h->partitions);
    const char *why = NULL;
    int rc = iothub_plog_append(h->logs[p], pp, n, send_done, c, &why);
    free(ends);
    free(pp);
    buf_free(&b);
    if (rc != 0) {
        free(c);
        int thr = why && strcmp(why, "throttled") == 0;
        snprintf(err, errlen, thr ? "too many messages are waiting for the disk; retry later"
                                  : "the hub cannot accept messages now (%s)", why ? why : "?");
        return refuse(h, thr ? IOTHUB_E_THROTTLED : IOTHUB_E_UNAVAILABLE);
    }
    return IOTHUB_OK;
}

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             done;
    iothub_status_t st;
    char            error[256];
} waiter_t;

static void wake(void *arg, iothub_status_t st, const char *error)
{
    waiter_t *w = arg;
    pthread_mutex_lock(&w->lock);
    w->done = 1;
    w->st = st;
    snprintf(w->error, sizeof w->error, "%s", error ? error : "");
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

iothub_status_t iothub_send_wait(iothub_t *h, const iothub_auth_t *dev, const iothub_msg_t *msgs, size_t n,
                                 char *err, size_t errlen)
{
    waiter_t w = {.done = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    iothub_status_t st = iothub_send(h, dev, msgs, n, wake, &w, err, errlen);
    if (st == IOTHUB_OK) {
        pthread_mutex_lock(&w.lock);
        while (!w.done) pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        st = w.st;
        if (st != IOTHUB_OK) snprintf(err, errlen, "message not stored: %s", w.error);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return st;
}

void iothub_stats(iothub_t *h, iothub_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->partitions = h->partitions;
    for (int p = 0; p < h->partitions; p++) {
        iothub_plog_info_t i;
        iothub_plog_info(h->logs[p], &i);
        out->p[p].first_seq = i.first_seq;
        out->p[p].next_seq = i.next_seq;
        out->p[p].received = i.appended;
        out->p[p].segments = i.segments;
        out->p[p].disk_bytes = i.disk_bytes;
        out->received += i.appended;
    }
    out->refused = atomic_load(&h->refused);
}
