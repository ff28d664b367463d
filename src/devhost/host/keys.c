/* keys.c — function and master keys in the data folder (see keys.h). */
#include "devhost/host/keys.h"

#include "devhost/host/json_file.h"
#include "devhost/iothub/fsutil.h"
#include "util/log.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static int random_key(char out[64])
{
    static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char r[33];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    /* 33 bytes → 44 base64url characters, no padding. */
    size_t o = 0;
    for (size_t i = 0; i < sizeof r; i += 3) {
        unsigned v = (unsigned)r[i] << 16 | (unsigned)r[i + 1] << 8 | r[i + 2];
        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
        out[o++] = b64u[v & 63];
    }
    out[o] = '\0';
    return 0;
}

static int key_ok(const cJSON *v)
{
    if (!cJSON_IsString(v)) return 0;
    size_t n = strlen(v->valuestring);
    return n >= 16 && n < 64;
}

/* Make path hold text[0..n) whole or not at all: written to a private temporary file, synced,
 * then hard-linked into place. A reader (another devhost, a script waiting for the keys) never
 * sees an empty or half-written keys.json, a crash never leaves one that would stop the next
 * start, and link(2), unlike rename(2), fails when path already exists, so of two devhosts
 * starting on one data folder the first one's keys stand. Returns 0, 1 when path already
 * existed (nothing written), or -1 (err set). */
static int keys_publish(const char *data_dir, const char *path, const char *text, size_t n, char *err,
                        size_t errlen)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp); /* mode 0600, a name no one else has */
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC); /* not inherited by the handler */
    int ok = iothub_fs_write_all(fd, text, n) == 0 && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(saved));
        unlink(tmp);
        return -1;
    }
    int linked = link(tmp, path);
    saved = errno;
    unlink(tmp);
    if (linked != 0) {
        if (saved == EEXIST) return 1;
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(saved));
        return -1;
    }
    return iothub_fs_sync_dir(data_dir, err, errlen) == 0 ? 0 : -1;
}

int dh_keys_load_or_create(const char *data_dir, dh_keys_t *k, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", data_dir, DH_KEYS_FILE);
    int missing = 0;
    cJSON *j = dh_json_load(path, path, &missing, err, errlen);
    if (j) {
        const cJSON *f = cJSON_GetObjectItem(j, "functionKey"), *m = cJSON_GetObjectItem(j, "masterKey");
        if (!key_ok(f) || !key_ok(m)) {
            snprintf(err, errlen, "%s: expected {\"functionKey\": \"...\", \"masterKey\": \"...\"}; delete the file to "
                     "have new keys generated", path);
            cJSON_Delete(j);
            return -1;
        }
        snprintf(k->function_key, sizeof k->function_key, "%s", f->valuestring);
        snprintf(k->master_key, sizeof k->master_key, "%s", m->valuestring);
        cJSON_Delete(j);
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077)) {
            log_warn(NULL, "devhost: %s was readable by others (mode %03o); setting it to 0600", path,
                     (unsigned)(st.st_mode & 0777));
            if (chmod(path, 0600) != 0) log_warn(NULL, "devhost: chmod %s: %s", path, strerror(errno));
        }
        return 0;
    }
    if (!missing) {
        /* No excerpt of the file in the message: it holds secrets. */
        snprintf(err, errlen, "%s is unreadable or not valid JSON; delete it to have new keys generated", path);
        return -1;
    }
    if (random_key(k->function_key) != 0 || random_key(k->master_key) != 0) {
        snprintf(err, errlen, "no randomness available to generate keys");
        return -1;
    }
    char text[256];
    int n = snprintf(text, sizeof text, "{\n  \"functionKey\": \"%s\",\n  \"masterKey\": \"%s\"\n}\n",
                     k->function_key, k->master_key);
    assert(n > 0 && (size_t)n < sizeof text);
    int rc = keys_publish(data_dir, path, text, (size_t)n, err, errlen);
    if (rc < 0) return -1;
    if (rc == 1) return dh_keys_load_or_create(data_dir, k, err, errlen); /* another devhost won */
    k->created = 1;
    return 0;
}

int dh_keys_match(const char *key, const char *secret)
{
    if (!key || !secret) return 0;
    size_t kl = strlen(key), sl = strlen(secret);
    unsigned char diff = (unsigned char)(kl != sl);
    for (size_t i = 0; i < sl; i++) diff |= (unsigned char)(secret[i] ^ (i < kl ? key[i] : 0));
    return diff == 0;
}
