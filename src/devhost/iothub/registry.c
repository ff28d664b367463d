/* registry.c — device registry file, its locking and the hub's live view (see registry.h). */
#include "devhost/iothub/registry.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devhost/iothub/fsutil.h"
#include "util/base64.h"
#include "util/log.h"

#define REG_FILE "devices.json"
#define REG_LOCK "devices.lock"
#define REG_MAX_BYTES (64u << 20)
#define REG_MAX_DEVICES 1000000

static const char g_id_chars[] = "-:.+%_#*?!(),=@;$'";

int iothub_device_id_valid(const char *id, char *err, size_t errlen)
{
    static const char rule[] = "a device id is 1 to 128 characters from A-Z a-z 0-9 - : . + % _ # * ? ! ( ) , = @ ; $ '";
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > IOTHUB_DEVICE_ID_MAX) {
        if (err && errlen) snprintf(err, errlen, "%s (this one has %zu)", rule, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 (c && strchr(g_id_chars, c));
        if (!ok) {
            if (err && errlen) {
                if (c > ' ' && c < 0x7f) snprintf(err, errlen, "%s; '%c' at position %zu is not allowed", rule, c, i + 1);
                else snprintf(err, errlen, "%s; byte 0x%02x at position %zu is not allowed", rule, c, i + 1);
            }
            return 0;
        }
    }
    return 1;
}

long iothub_device_key_raw(const char *b64, unsigned char raw[IOTHUB_KEY_RAW_MAX])
{
    size_t n = strlen(b64);
    if (n == 0 || n > IOTHUB_KEY_B64_MAX) return -1;
    unsigned char tmp[IOTHUB_KEY_B64_MAX];
    long k = base64_decode(b64, n, tmp);
    if (k < 16 || k > IOTHUB_KEY_RAW_MAX) { OPENSSL_cleanse(tmp, sizeof tmp); return -1; }
    memcpy(raw, tmp, (size_t)k);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return k;
}

static int cmp_dev(const void *a, const void *b)
{
    return strcmp(((const iothub_device_t *)a)->id, ((const iothub_device_t *)b)->id);
}

/* Copy a string member into dst (cap bytes) when it is a string that fits. */
static int take_str(const cJSON *obj, const char *name, char *dst, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(v) || !v->valuestring) return -1;
    size_t n = strlen(v->valuestring);
    if (n >= cap) return -1;
    memcpy(dst, v->valuestring, n + 1);
    return 0;
}

int iothub_registry_parse(const char *bytes, size_t len, iothub_device_t **devs, size_t *n,
                          char *err, size_t errlen)
{
    *devs = NULL;
    *n = 0;
    size_t k = 0;
    while (k < len && (bytes[k] == ' ' || bytes[k] == '\n' || bytes[k] == '\r' || bytes[k] == '\t')) k++;
    if (k == len) return 0;   /* empty file: no devices */
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(bytes, len, &end, 0);
    if (!doc) {
        snprintf(err, errlen, "not valid JSON (at byte %ld)", end ? (long)(end - bytes) : 0L);
        return -1;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(doc, "version");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "devices");
    if (!cJSON_IsObject(doc) || !cJSON_IsNumber(ver) || ver->valuedouble != 1 || !cJSON_IsArray(arr)) {
        snprintf(err, errlen, "expected {\"version\":1,\"devices\":[...]}");
        cJSON_Delete(doc);
        return -1;
    }
    int count = cJSON_GetArraySize(arr);
    if (count > REG_MAX_DEVICES) {
        snprintf(err, errlen, "more than %d devices", REG_MAX_DEVICES);
        cJSON_Delete(doc);
        return -1;
    }
    iothub_device_t *d = count ? calloc((size_t)count, sizeof *d) : NULL;
    if (count && !d) {
        snprintf(err, errlen, "out of memory for %d devices", count);
        cJSON_Delete(doc);
        return -1;
    }
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        iothub_device_t *x = &d[i];
        unsigned char raw[IOTHUB_KEY_RAW_MAX];
        char why[200];
        const char *bad = NULL;
        if (!cJSON_IsObject(e)) bad = "is not an object";
        else if (take_str(e, "deviceId", x->id, sizeof x->id) || !iothub_device_id_valid(x->id, why, sizeof why))
            bad = "has a missing or invalid deviceId";
        else if (take_str(e, "generationId", x->generation_id, sizeof x->generation_id) ||
                 strspn(x->generation_id, "0123456789") != strlen(x->generation_id) || !x->generation_id[0])
            bad = "has a missing or non-numeric generationId";
        else if (take_str(e, "created", x->created, sizeof x->created)) bad = "has no created time";
        else if (take_str(e, "primaryKey", x->primary, sizeof x->primary) || iothub_device_key_raw(x->primary, raw) < 0 ||
                 take_str(e, "secondaryKey", x->secondary, sizeof x->secondary) || iothub_device_key_raw(x->secondary, raw) < 0)
            bad = "has a key that is not base64 of 16 to 64 bytes";
        OPENSSL_cleanse(raw, sizeof raw);
        if (bad) {
            snprintf(err, errlen, "device #%zu %s", i + 1, bad);
            OPENSSL_cleanse(d, (size_t)count * sizeof *d);
            free(d);
            cJSON_Delete(doc);
            return -1;
        }
        i++;
    }
    cJSON_Delete(doc);
    if (i) qsort(d, i, sizeof *d, cmp_dev);
    for (size_t j = 1; j < i; j++)
        if (strcmp(d[j - 1].id, d[j].id) == 0) {
            snprintf(err, errlen, "device '%s' appears twice", d[j].id);
            OPENSSL_cleanse(d, i * sizeof *d);
            free(d);
            return -1;
        }
    *devs = d;
    *n = i;
    return 0;
}

char *iothub_registry_format(const iothub_device_t *devs, size_t n)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    if (!doc || !arr) { cJSON_Delete(doc); cJSON_Delete(arr); return NULL; }
    cJSON_AddNumberToObject(doc, "version", 1);
    cJSON_AddItemToObject(doc, "devices", arr);
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o) { cJSON_Delete(doc); return NULL; }
        cJSON_AddItemToArray(arr, o);
        if (!cJSON_AddStringToObject(o, "deviceId", devs[i].id) ||
            !cJSON_AddStringToObject(o, "generationId", devs[i].generation_id) ||
            !cJSON_AddStringToObject(o, "created", devs[i].created) ||
            !cJSON_AddStringToObject(o, "primaryKey", devs[i].primary) ||
            !cJSON_AddStringToObject(o, "secondaryKey", devs[i].secondary)) {
            cJSON_Delete(doc);
            return NULL;
        }
    }
    char *s = cJSON_Print(doc);
    cJSON_Delete(doc);
    return s;
}

/* ---- file access ------------------------------------------------------------------------ */

typedef struct file_id { dev_t dev; ino_t ino; off_t size; struct timespec mtim, ctim; int exists; } file_id_t;

static void file_id_of(const struct stat *st, file_id_t *f)
{
    memset(f, 0, sizeof *f);
    f->exists = 1;
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    f->size = st->st_size;
    f->mtim = st->st_mtim;
    f->ctim = st->st_ctim;
}

static int file_id_eq(const file_id_t *a, const file_id_t *b)
{
    if (a->exists != b->exists) return 0;
    if (!a->exists) return 1;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec &&
           a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}

/* Read and parse dir's registry; *id receives the identity of the file read. */
static int load(const char *dir, iothub_device_t **devs, size_t *n, file_id_t *id, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" REG_FILE, dir);
    *devs = NULL;
    *n = 0;
    if (id) memset(id, 0, sizeof *id);
    char *b;
    size_t got;
    struct stat st;
    int rd = iothub_fs_read(path, REG_MAX_BYTES, &b, &got, &st, err, errlen);
    if (rd != 0) return rd > 0 ? 0 : -1;   /* no file: no devices */
    char why[256];
    int rc = iothub_registry_parse(b, got, devs, n, why, sizeof why);
    OPENSSL_cleanse(b, got);
    free(b);
    if (rc != 0) {
        snprintf(err, errlen, "%s is corrupt: %s (fix or remove it; devices would have to be added again)", path, why);
        return -1;
    }
    if (id) file_id_of(&st, id);
    return 0;
}

static void free_devs(iothub_device_t *d, size_t n)
{
    if (d) OPENSSL_cleanse(d, n * sizeof *d);
    free(d);
}

/* Take the writers' lock. Returns the lock fd or -1. */
static int lock_dir(const char *dir, char *err, size_t errlen)
{
    if (iothub_fs_mkdirs(dir, 0700, err, errlen) != 0) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/" REG_LOCK, dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void unlock_dir(int fd)
{
    flock(fd, LOCK_UN);
    close(fd);
}

static int save(const char *dir, const iothub_device_t *d, size_t n, char *err, size_t errlen)
{
    char *text = iothub_registry_format(d, n);
    if (!text) {
        snprintf(err, errlen, "out of memory writing the registry");
        return -1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/" REG_FILE, dir);
    size_t len = strlen(text);
    int rc = iothub_fs_write_atomic(path, text, len, 0600, err, errlen);
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

static int new_key(char out[IOTHUB_KEY_B64_MAX + 1])
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) return -1;
    base64_encode(raw, sizeof raw, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

static iothub_device_t *find(iothub_device_t *d, size_t n, const char *id)
{
    iothub_device_t key;
    size_t len = strlen(id);
    if (len > IOTHUB_DEVICE_ID_MAX) return NULL;   /* never match a truncated prefix */
    memcpy(key.id, id, len + 1);
    return n ? bsearch(&key, d, n, sizeof *d, cmp_dev) : NULL;
}

typedef enum { OP_ADD, OP_REMOVE, OP_REGEN_PRIMARY, OP_REGEN_SECONDARY } reg_op_t;

static iothub_reg_status_t change(const char *dir, const char *id, reg_op_t op, iothub_device_t *out,
                                  char *err, size_t errlen)
{
    char why[256];
    if (!iothub_device_id_valid(id, why, sizeof why)) {
        snprintf(err, errlen, "invalid device id: %s", why);
        return IOTHUB_REG_INVALID;
    }
    int lk = lock_dir(dir, err, errlen);
    if (lk < 0) return IOTHUB_REG_IO;
    iothub_device_t *d = NULL;
    size_t n = 0;
    iothub_reg_status_t st = IOTHUB_REG_OK;
    if (load(dir, &d, &n, NULL, err, errlen) != 0) { unlock_dir(lk); return IOTHUB_REG_IO; }
    iothub_device_t *x = find(d, n, id);
    if (op == OP_ADD) {
        if (x) {
            snprintf(err, errlen, "device '%s' already exists (`devhost device show %s` prints its connection string)", id, id);
            st = IOTHUB_REG_EXISTS;
            goto out;
        }
        iothub_device_t *nd = realloc(d, (n + 1) * sizeof *d);
        if (!nd) { snprintf(err, errlen, "out of memory"); st = IOTHUB_REG_IO; goto out; }
        d = nd;
        x = &d[n++];
        memset(x, 0, sizeof *x);
        snprintf(x->id, sizeof x->id, "%s", id);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        /* .NET ticks (100 ns since 0001-01-01), IoT Hub's generation id format */
        unsigned long long ticks = 621355968000000000ULL + (unsigned long long)ts.tv_sec * 10000000ULL +
                                   (unsigned long long)ts.tv_nsec / 100;
        snprintf(x->generation_id, sizeof x->generation_id, "%llu", ticks);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(x->created, sizeof x->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (new_key(x->primary) != 0 || new_key(x->secondary) != 0) {
            snprintf(err, errlen, "no randomness for a device key (OpenSSL RAND_bytes failed)");
            st = IOTHUB_REG_IO;
            goto out;
        }
        qsort(d, n, sizeof *d, cmp_dev);
        x = find(d, n, id);
    } else {
        if (!x) {
            snprintf(err, errlen, "no device '%s' in %s/" REG_FILE " (`devhost device list` shows them)", id, dir);
            st = IOTHUB_REG_NOT_FOUND;
            goto out;
        }
        if (op == OP_REMOVE) {
            memmove(x, x + 1, (size_t)(d + n - (x + 1)) * sizeof *d);
            n--;
            x = NULL;
        } else if (new_key(op == OP_REGEN_PRIMARY ? x->primary : x->secondary) != 0) {
            snprintf(err, errlen, "no randomness for a device key (OpenSSL RAND_bytes failed)");
            st = IOTHUB_REG_IO;
            goto out;
        }
    }
    if (save(dir, d, n, err, errlen) != 0) { st = IOTHUB_REG_IO; goto out; }
    if (out && x) *out = *x;
out:
    free_devs(d, n);
    unlock_dir(lk);
    return st;
}

iothub_reg_status_t iothub_registry_add(const char *dir, const char *id, iothub_device_t *out,
                                        char *err, size_t errlen)
{
    return change(dir, id, OP_ADD, out, err, errlen);
}

iothub_reg_status_t iothub_registry_remove(const char *dir, const char *id, char *err, size_t errlen)
{
    return change(dir, id, OP_REMOVE, NULL, err, errlen);
}

iothub_reg_status_t iothub_registry_regenerate(const char *dir, const char *id, int secondary,
                                               iothub_device_t *out, char *err, size_t errlen)
{
    return change(dir, id, secondary ? OP_REGEN_SECONDARY : OP_REGEN_PRIMARY, out, err, errlen);
}

iothub_reg_status_t iothub_registry_list(const char *dir, iothub_device_t **devs, size_t *n,
                                         char *err, size_t errlen)
{
    return load(dir, devs, n, NULL, err, errlen) == 0 ? IOTHUB_REG_OK : IOTHUB_REG_IO;
}

iothub_reg_status_t iothub_registry_get(const char *dir, const char *id, iothub_device_t *out,
                                        char *err, size_t errlen)
{
    iothub_device_t *d;
    size_t n;
    if (load(dir, &d, &n, NULL, err, errlen) != 0) return IOTHUB_REG_IO;
    iothub_device_t *x = find(d, n, id);
    if (x) *out = *x;
    else snprintf(err, errlen, "no device '%s' in %s/" REG_FILE " (`devhost device list` shows them)", id, dir);
    free_devs(d, n);
    return x ? IOTHUB_REG_OK : IOTHUB_REG_NOT_FOUND;
}

/* ---- live view ---------------------------------------------------------------------------- */

struct iothub_registry {
    char           *dir;
    char           *path;
    pthread_mutex_t lock;
    iothub_device_t *devs;
    size_t          n;
    file_id_t       loaded;    /* identity of the file the view came from */
    file_id_t       failed;    /* identity of a file that failed to load (logged once) */
    int             inotify;   /* watches dir for changes to the registry file; -1: stat per look */
    iothub_registry_change_fn on_change;
    void           *on_change_arg;
    int             notifying;      /* listener calls in flight (outside the lock) */
    pthread_cond_t  notified;       /* signalled when notifying drops to 0 */
};

/* Ids whose identity changed between two views: removed, re-created (new generation) or
 * re-keyed. changed: ids joined by NULs, *count of them (malloc'd; NULL when none). */
typedef struct {
    char  *ids;
    size_t len, count;
} changed_t;

static void diff_views(const iothub_device_t *old, size_t nold, iothub_device_t *cur, size_t ncur, changed_t *out)
{
    for (size_t i = 0; i < nold; i++) {
        const iothub_device_t *o = &old[i];
        const iothub_device_t *c = find(cur, ncur, o->id);
        if (c && strcmp(c->generation_id, o->generation_id) == 0 && strcmp(c->primary, o->primary) == 0 &&
            strcmp(c->secondary, o->secondary) == 0)
            continue;
        size_t l = strlen(o->id) + 1;
        char *n = realloc(out->ids, out->len + l);
        if (!n) {
            log_error(NULL, "iothub: out of memory: a changed registration of '%s' is not acted on", o->id);
            continue;
        }
        memcpy(n + out->len, o->id, l);
        out->ids = n;
        out->len += l;
        out->count++;
    }
}

/* Looking for a change costs one stat(2) of the file's path, under the lock, twice per HTTP
 * message (authentication, then the generation check of the send) — a path walk that every
 * connection thread queued behind. The registry is replaced by rename into dir (or edited in
 * place), and the kernel queues an inotify event for that before the rename returns, so a
 * look that finds the inotify queue empty (FIONREAD, no path walk, outside the lock) has seen
 * every change completed before it: the view it holds is current. Only when something
 * happened in dir is the file stat'ed as before. Watching is set up before the first load,
 * so no change can fall between the two. Returns the inotify descriptor (non-blocking), or -1
 * (no inotify instance left: every look stats the file, as before). */
static int watch_dir(const char *dir)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        log_debug(NULL, "iothub: no inotify instance (%s); the registry file is stat'ed on every lookup", strerror(errno));
        return -1;
    }
    uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB |
                    IN_DELETE_SELF | IN_MOVE_SELF;
    if (inotify_add_watch(fd, dir, mask) < 0) {
        log_debug(NULL, "iothub: cannot watch %s (%s); the registry file is stat'ed on every lookup", dir, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when dir may have changed since the last look (inotify events queued, or no watch). */
static int maybe_changed(const iothub_registry_t *r)
{
    int queued = 0;
    if (r->inotify < 0 || ioctl(r->inotify, FIONREAD, &queued) != 0) return 1;
    return queued > 0;
}

/* Drain the inotify queue (r->lock held). Returns 1 when an event may concern the registry
 * file (its name, the folder itself, an overflow), else 0 (e.g. a writer's temporary file).
 * A watch that is gone (the folder was removed) is given up: every look stats from then on. */
static int drain_events(iothub_registry_t *r)
{
    if (r->inotify < 0) return 1;
    int relevant = 0;
    _Alignas(struct inotify_event) char buf[8192];
    for (;;) {
        ssize_t n = read(r->inotify, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            if (!e->len || strcmp(e->name, REG_FILE) == 0) relevant = 1;
            if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW)) relevant = 1;
            if (e->mask & IN_IGNORED) {
                close(r->inotify);
                r->inotify = -1;
                return 1;
            }
            p += sizeof *e + e->len;
        }
    }
    return relevant;
}

iothub_registry_t *iothub_registry_open(const char *dir, char *err, size_t errlen)
{
    iothub_registry_t *r = calloc(1, sizeof *r);
    if (!r) { snprintf(err, errlen, "out of memory"); return NULL; }
    r->inotify = -1;
    r->dir = strdup(dir);
    r->path = malloc(strlen(dir) + sizeof("/" REG_FILE));
    if (!r->dir || !r->path) {
        free(r->dir); free(r->path); free(r);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sprintf(r->path, "%s/" REG_FILE, dir);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->notified, NULL);
    r->inotify = watch_dir(dir);
    if (load(dir, &r->devs, &r->n, &r->loaded, err, errlen) != 0) {
        iothub_registry_close(r);
        return NULL;
    }
    return r;
}

void iothub_registry_on_change(iothub_registry_t *r, iothub_registry_change_fn fn, void *arg)
{
    pthread_mutex_lock(&r->lock);
    r->on_change = fn;
    r->on_change_arg = arg;
    /* A call that copied the previous listener may still be running: once this returns, the
     * previous listener is never called again, so its owner may free what arg points to. */
    while (r->notifying) pthread_cond_wait(&r->notified, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

/* Reload when the file changed (r->lock held); the ids whose identity changed go to *ch when
 * someone listens. */
static void refresh(iothub_registry_t *r, changed_t *ch, int maybe)
{
    if (!maybe || !drain_events(r)) return;
    struct stat st;
    file_id_t now;
    if (stat(r->path, &st) == 0) file_id_of(&st, &now);
    else memset(&now, 0, sizeof now);
    if (file_id_eq(&now, &r->loaded) || (now.exists && file_id_eq(&now, &r->failed))) return;
    iothub_device_t *d;
    size_t n;
    file_id_t got;
    char err[512];
    if (load(r->dir, &d, &n, &got, err, sizeof err) != 0) {
        log_error(NULL, "iothub: device registry not reloaded, the previous one stays in use: %s", err);
        r->failed = now;
        return;
    }
    if (r->on_change) diff_views(r->devs, r->n, d, n, ch);
    free_devs(r->devs, r->n);
    r->devs = d;
    r->n = n;
    r->loaded = got;
}

/* Tell the listener (outside the lock: it may take its own locks or call back in). */
static void notify(iothub_registry_t *r, changed_t *ch)
{
    if (!ch->count) return;
    pthread_mutex_lock(&r->lock);
    iothub_registry_change_fn fn = r->on_change;
    void *arg = r->on_change_arg;
    if (fn) r->notifying++;
    pthread_mutex_unlock(&r->lock);
    for (const char *id = ch->ids; fn && id < ch->ids + ch->len; id += strlen(id) + 1) fn(arg, id);
    free(ch->ids);
    if (!fn) return;
    pthread_mutex_lock(&r->lock);
    if (--r->notifying == 0) pthread_cond_broadcast(&r->notified);
    pthread_mutex_unlock(&r->lock);
}

int iothub_registry_lookup(iothub_registry_t *r, const char *id, iothub_device_t *out)
{
    changed_t ch = {0};
    int maybe = maybe_changed(r);
    pthread_mutex_lock(&r->lock);
    refresh(r, &ch, maybe);
    iothub_device_t *x = find(r->devs, r->n, id);
    if (x) *out = *x;
    pthread_mutex_unlock(&r->lock);
    notify(r, &ch);
    return x != NULL;
}

size_t iothub_registry_count(iothub_registry_t *r)
{
    changed_t ch = {0};
    int maybe = maybe_changed(r);
    pthread_mutex_lock(&r->lock);
    refresh(r, &ch, maybe);
    size_t n = r->n;
    pthread_mutex_unlock(&r->lock);
    notify(r, &ch);
    return n;
}

void iothub_registry_close(iothub_registry_t *r)
{
    if (!r) return;
    assert(r->notifying == 0);
    free_devs(r->devs, r->n);
    if (r->inotify >= 0) close(r->inotify);
    pthread_cond_destroy(&r->notified);
    pthread_mutex_destroy(&r->lock);
    free(r->dir);
    free(r->path);
    free(r);
}
