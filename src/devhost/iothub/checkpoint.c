/* checkpoint.c — two-slot checkpoint files (see checkpoint.h). */
#include "devhost/iothub/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devhost/iothub/fsutil.h"
#include "util/crc32c.h"

#define CKPT_MAGIC 0x31434D45u   /* "EMC1" */
#define SLOT 64

struct iothub_ckpt {
    int      fd;
    uint64_t gen;
    char     instance[IOTHUB_INSTANCE_LEN + 1];
    char     path[4200];
};

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

/* Slot: magic, reserved, gen, next_seq, next_offset, instance[16], crc at 48. */
static int slot_decode(const unsigned char *s, const char *instance, uint64_t *gen, iothub_ckpt_pos_t *pos)
{
    if (get32(s) != CKPT_MAGIC || crc32c(0, s, 48) != get32(s + 48)) return -1;
    if (memcmp(s + 32, instance, IOTHUB_INSTANCE_LEN) != 0) return -1;
    int64_t seq = (int64_t)get64(s + 16);
    if (seq < 0) return -1;
    *gen = get64(s + 8);
    pos->next_seq = seq;
    pos->next_offset = get64(s + 24);
    return 0;
}

/* Newest valid slot; *gen receives its generation (0 when none). */
static int decode(const void *bytes, size_t len, const char *instance, iothub_ckpt_pos_t *out, uint64_t *gen)
{
    const unsigned char *b = bytes;
    int found = -1;
    *gen = 0;
    if (strlen(instance) != IOTHUB_INSTANCE_LEN) return -1;
    for (int i = 0; i < 2; i++) {
        if (len < (size_t)(i + 1) * SLOT) break;
        uint64_t g;
        iothub_ckpt_pos_t p;
        if (slot_decode(b + i * SLOT, instance, &g, &p) == 0 && (found < 0 || g > *gen)) {
            *gen = g;
            *out = p;
            found = 0;
        }
    }
    return found;
}

int iothub_ckpt_decode(const void *bytes, size_t len, const char *instance, iothub_ckpt_pos_t *out)
{
    uint64_t gen;
    return decode(bytes, len, instance, out, &gen);
}

int iothub_ckpt_group_dir(const char *group, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (!group || !*group) return -1;
    for (const unsigned char *p = (const unsigned char *)group; *p; p++) {
        int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                   *p == '.' || *p == '_' || *p == '-';
        if (o + (keep ? 1 : 3) >= outlen) return -1;
        if (keep) out[o++] = (char)*p;
        else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    /* "." and ".." would not be folders of their own */
    if ((o == 1 && out[0] == '.') || (o == 2 && out[0] == '.' && out[1] == '.')) return -1;
    out[o] = '\0';
    return 0;
}

int iothub_ckpt_write(iothub_ckpt_t *c, const iothub_ckpt_pos_t *pos, char *err, size_t errlen)
{
    unsigned char s[SLOT] = {0};
    uint64_t gen = c->gen + 1;
    put32(s, CKPT_MAGIC);
    put64(s + 8, gen);
    put64(s + 16, (uint64_t)pos->next_seq);
    put64(s + 24, pos->next_offset);
    memcpy(s + 32, c->instance, IOTHUB_INSTANCE_LEN);
    put32(s + 48, crc32c(0, s, 48));
    off_t at = (off_t)(gen % 2) * SLOT;
    ssize_t w;
    do w = pwrite(c->fd, s, sizeof s, at); while (w < 0 && errno == EINTR);
    if (w != (ssize_t)sizeof s) {
        snprintf(err, errlen, "cannot write checkpoint %s: %s", c->path, w < 0 ? strerror(errno) : "short write");
        return -1;
    }
    c->gen = gen;
    return 0;
}

iothub_ckpt_t *iothub_ckpt_open(const char *root, const char *group, int partition, const char *instance,
                                iothub_ckpt_pos_t *pos, char *err, size_t errlen)
{
    char gdir[600], dir[4096];
    if (strlen(instance) != IOTHUB_INSTANCE_LEN || iothub_ckpt_group_dir(group, gdir, sizeof gdir) != 0) {
        snprintf(err, errlen, "invalid consumer group name '%.100s'", group ? group : "");
        return NULL;
    }
    snprintf(dir, sizeof dir, "%s/%s", root, gdir);
    if (iothub_fs_mkdirs(dir, 0700, err, errlen) != 0) return NULL;
    iothub_ckpt_t *c = calloc(1, sizeof *c);
    if (!c) { snprintf(err, errlen, "out of memory"); return NULL; }
    memcpy(c->instance, instance, IOTHUB_INSTANCE_LEN + 1);
    snprintf(c->path, sizeof c->path, "%s/%d.ckpt", dir, partition);
    c->fd = open(c->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        snprintf(err, errlen, "cannot open checkpoint %s: %s", c->path, strerror(errno));
        free(c);
        return NULL;
    }
    unsigned char b[IOTHUB_CKPT_FILE_BYTES];
    ssize_t r = pread(c->fd, b, sizeof b, 0);
    pos->next_seq = 0;
    pos->next_offset = 0;
    if (r < 0 || decode(b, (size_t)r, instance, pos, &c->gen) != 0) {
        /* new, torn or from another hub instance: start from the beginning, and say so on disk */
        c->gen = 0;
        if (iothub_ckpt_write(c, pos, err, errlen) != 0 || fdatasync(c->fd) != 0 ||
            iothub_fs_sync_dir(dir, err, errlen) != 0) {
            iothub_ckpt_close(c);
            return NULL;
        }
    }
    return c;
}

void iothub_ckpt_close(iothub_ckpt_t *c)
{
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    free(c);
}

int iothub_ckpt_min(const char *root, int partition, const char *instance, int64_t *min_next)
{
    DIR *d = opendir(root);
    if (!d) return errno == ENOENT ? 0 : -1;
    int found = 0, bad = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s/%d.ckpt", root, e->d_name, partition);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) { bad = 1; continue; }
        unsigned char b[IOTHUB_CKPT_FILE_BYTES];
        iothub_ckpt_pos_t p;
        uint64_t gen;
        /* durable before compaction deletes anything on its strength */
        ssize_t r = fdatasync(fd) == 0 ? pread(fd, b, sizeof b, 0) : -1;
        close(fd);
        if (r < 0 || decode(b, (size_t)r, instance, &p, &gen) != 0) { bad = 1; continue; }
        if (!found || p.next_seq < *min_next) *min_next = p.next_seq;
        found = 1;
    }
    closedir(d);
    if (bad) return -1;
    return found;
}
