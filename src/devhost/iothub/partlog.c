/* partlog.c — durable partition log: group commit, recovery, readers, compaction (see
 * partlog.h for the format and the durability argument). */
#include "devhost/iothub/partlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devhost/iothub/fsutil.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/log.h"

#define REC_MAGIC 0x31524D45u   /* "EMR1" little-endian */
#define SEG_MAGIC 0x31534D45u   /* "EMS1" */
#define SEG_VERSION 1
#define DEFAULT_SEGMENT (16u << 20)
#define DEFAULT_PENDING (64u << 20)
#define READ_CHUNK (256u << 10)

typedef struct seg {
    int64_t  base_seq;
    uint64_t base_offset;
    uint64_t size;           /* durable bytes, header included */
} seg_t;

typedef struct pend {
    struct pend        *next;
    size_t              n;
    iothub_plog_done_fn done;
    void               *arg;
    uint32_t           *lens;
    uint32_t           *crcs;
    unsigned char      *data;
} pend_t;

struct iothub_plog {
    char           *dir;
    int             partition;
    size_t          seg_bytes, max_pending;
    pthread_mutex_t lock;
    pthread_cond_t  work;        /* committer: something queued or stop */
    pthread_cond_t  data;        /* readers: new durable records or wake */
    seg_t          *segs;        /* sorted by base_seq; the last one is active */
    size_t          nsegs, cap;
    int             fd;          /* active segment (committer only after open) */
    int64_t         next_seq;    /* one past the last durable record */
    int64_t         last_enq_ms;
    pend_t         *head, *tail;
    size_t          pending_bytes;
    int             stop;
    unsigned        wake_gen;
    pthread_t       thr;
    int             started;
    uint64_t        commits, appended;
    buf_t           wbuf;        /* committer's write buffer */
};

struct iothub_plog_reader {
    iothub_plog_t *pl;
    int            fd;
    int64_t        seg_base;
    uint64_t       seg_offset;
    uint64_t       pos;          /* file position of the next record */
    int64_t        next_seq;     /* sequence number at pos */
    int64_t        skip_until;   /* records below this are skipped (positioning) */
    unsigned char *buf;
    size_t         cap;
};

/* ---- little-endian helpers ------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- pure parsing ---------------------------------------------------------------------- */

long iothub_plog_parse_record(const void *p, size_t n, iothub_plog_rec_t *out)
{
    const unsigned char *b = p;
    if (n >= 4 && get32(b) != REC_MAGIC) return -1;
    if (n < IOTHUB_PLOG_HEADER) return 0;
    if (crc32c(0, b, 28) != get32(b + 28)) return -1;
    uint32_t len = get32(b + 4);
    if (len > IOTHUB_PLOG_MAX_PAYLOAD) return -1;
    int64_t seq = (int64_t)get64(b + 8);
    if (seq < 0) return -1;
    if (n - IOTHUB_PLOG_HEADER < len) return 0;
    if (crc32c(0, b + IOTHUB_PLOG_HEADER, len) != get32(b + 24)) return -1;
    out->seq = seq;
    out->offset = 0;
    out->enqueued_ms = (int64_t)get64(b + 16);
    out->payload = b + IOTHUB_PLOG_HEADER;
    out->len = len;
    return (long)(IOTHUB_PLOG_HEADER + len);
}

static void make_record_header(unsigned char *h, uint32_t len, int64_t seq, int64_t enq, uint32_t pcrc)
{
    put32(h, REC_MAGIC);
    put32(h + 4, len);
    put64(h + 8, (uint64_t)seq);
    put64(h + 16, (uint64_t)enq);
    put32(h + 24, pcrc);
    put32(h + 28, crc32c(0, h, 28));
}

static uint32_t seg_header_crc(const unsigned char *h)
{
    return crc32c(crc32c(0, h, 12), h + 16, 16);
}

int iothub_plog_parse_segment_header(const void *p, size_t n, int64_t *base_seq, uint64_t *base_offset,
                                     int *partition)
{
    const unsigned char *h = p;
    if (n < IOTHUB_PLOG_HEADER || get32(h) != SEG_MAGIC || get32(h + 4) != SEG_VERSION ||
        get32(h + 12) != seg_header_crc(h) || (int64_t)get64(h + 16) < 0)
        return -1;
    *partition = (int)get32(h + 8);
    *base_seq = (int64_t)get64(h + 16);
    *base_offset = get64(h + 24);
    return 0;
}

int iothub_plog_scan(const void *p, size_t n, size_t *valid_len, size_t *count, int64_t *next_seq)
{
    int64_t seq;
    uint64_t off;
    int part;
    *valid_len = 0;
    *count = 0;
    if (iothub_plog_parse_segment_header(p, n, &seq, &off, &part) != 0) return -1;
    size_t pos = IOTHUB_PLOG_HEADER;
    const unsigned char *b = p;
    iothub_plog_rec_t r;
    long k;
    while ((k = iothub_plog_parse_record(b + pos, n - pos, &r)) > 0 && r.seq == seq) {
        pos += (size_t)k;
        seq++;
        (*count)++;
    }
    *valid_len = pos;
    *next_seq = seq;
    return 0;
}

/* ---- segments on disk ------------------------------------------------------------------ */

static void seg_path(const iothub_plog_t *pl, int64_t base, char *out, size_t len)
{
    snprintf(out, len, "%s/%020" PRId64 ".seg", pl->dir, base);
}

static int push_seg(iothub_plog_t *pl, seg_t s)
{
    if (pl->nsegs == pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 8;
        seg_t *ns = realloc(pl->segs, nc * sizeof *ns);
        if (!ns) return -1;
        pl->segs = ns;
        pl->cap = nc;
    }
    pl->segs[pl->nsegs++] = s;
    return 0;
}

/* Create a segment file with its header, durable (file and folder). Returns its fd or -1. */
static int create_segment(iothub_plog_t *pl, int64_t base_seq, uint64_t base_offset, char *err, size_t errlen)
{
    char path[4200];
    seg_path(pl, base_seq, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char h[IOTHUB_PLOG_HEADER] = {0};
    put32(h, SEG_MAGIC);
    put32(h + 4, SEG_VERSION);
    put32(h + 8, (uint32_t)pl->partition);
    put64(h + 16, (uint64_t)base_seq);
    put64(h + 24, base_offset);
    put32(h + 12, seg_header_crc(h));
    if (pwrite(fd, h, sizeof h, 0) != (ssize_t)sizeof h || fdatasync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    if (iothub_fs_sync_dir(pl->dir, err, errlen) != 0) {
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Base sequence numbers of the segment files in pl->dir, sorted. */
static int list_segments(iothub_plog_t *pl, int64_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(pl->dir);
    if (!d) {
        snprintf(err, errlen, "cannot read folder %s: %s", pl->dir, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        if (strlen(s) != 24 || strcmp(s + 20, ".seg") != 0 || strspn(s, "0123456789") != 20) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *nb = realloc(*out, cap * sizeof *nb);
            if (!nb) { closedir(d); snprintf(err, errlen, "out of memory"); return -1; }
            *out = nb;
        }
        (*out)[(*n)++] = strtoll(s, NULL, 10);
    }
    closedir(d);
    if (*n) qsort(*out, *n, sizeof **out, cmp_i64);
    return 0;
}

/* Read and check a non-last segment's header and size. */
static int open_sealed(iothub_plog_t *pl, int64_t base, seg_t *s, char *err, size_t errlen)
{
    char path[4200];
    seg_path(pl, base, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char h[IOTHUB_PLOG_HEADER];
    struct stat st;
    int part;
    if (fd < 0 || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || fstat(fd, &st) != 0 ||
        iothub_plog_parse_segment_header(h, sizeof h, &s->base_seq, &s->base_offset, &part) != 0 ||
        s->base_seq != base || part != pl->partition) {
        snprintf(err, errlen, "segment %s is unreadable or its header is corrupt (move it away to start "
                 "without it; its events would be lost)", path);
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    s->size = (uint64_t)st.st_size;
    return 0;
}

/* Scan the last segment from its header, cut a torn tail, fsync. Leaves its fd open in pl->fd.
 * Returns 0, 1 when the file holds only a torn header (deleted here), or -1. */
static int recover_last(iothub_plog_t *pl, int64_t base, seg_t *s, char *err, size_t errlen)
{
    char path[4200];
    seg_path(pl, base, path, sizeof path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    unsigned char h[IOTHUB_PLOG_HEADER];
    int part;
    ssize_t hr = pread(fd, h, sizeof h, 0);
    if (hr != (ssize_t)sizeof h ||
        iothub_plog_parse_segment_header(h, sizeof h, &s->base_seq, &s->base_offset, &part) != 0 ||
        s->base_seq != base || part != pl->partition) {
        if (st.st_size <= IOTHUB_PLOG_HEADER) {
            /* created but its header never became durable: it never held a record */
            close(fd);
            log_warn(NULL, "iothub: partition %d: removing segment %s with a torn header (it held no records)",
                     pl->partition, path);
            if (unlink(path) != 0 || iothub_fs_sync_dir(pl->dir, err, errlen) != 0) {
                snprintf(err, errlen, "cannot remove torn segment %s: %s", path, strerror(errno));
                return -1;
            }
            return 1;
        }
        snprintf(err, errlen, "segment %s has a corrupt header (move it away to start without it; its "
                 "events would be lost)", path);
        close(fd);
        return -1;
    }
    size_t cap = READ_CHUNK + IOTHUB_PLOG_MAX_PAYLOAD + IOTHUB_PLOG_HEADER;
    unsigned char *buf = malloc(cap);
    if (!buf) { close(fd); snprintf(err, errlen, "out of memory"); return -1; }
    uint64_t pos = IOTHUB_PLOG_HEADER, fsize = (uint64_t)st.st_size;
    int64_t seq = base, last_enq = 0;
    size_t have = 0;      /* bytes in buf, starting at file position pos */
    for (;;) {
        /* fill: keep what is unparsed, read more */
        uint64_t at = pos + have;
        if (at < fsize && have < cap) {
            size_t want = cap - have;
            if ((uint64_t)want > fsize - at) want = (size_t)(fsize - at);
            ssize_t r = pread(fd, buf + have, want, (off_t)at);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) { snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno)); free(buf); close(fd); return -1; }
            have += (size_t)r;
            if (r == 0) fsize = at;
        }
        size_t k = 0;
        iothub_plog_rec_t rec;
        long n;
        while ((n = iothub_plog_parse_record(buf + k, have - k, &rec)) > 0 && rec.seq == seq) {
            k += (size_t)n;
            seq++;
            last_enq = rec.enqueued_ms;
        }
        pos += k;
        memmove(buf, buf + k, have - k);
        have -= k;
        int more = pos + have < fsize;
        if (n > 0 || n < 0 || !more) break;   /* wrong sequence, corrupt, or the file ended */
    }
    free(buf);
    if (pos < (uint64_t)st.st_size) {
        log_warn(NULL, "iothub: partition %d: cut a torn tail of %" PRIu64 " bytes at offset %" PRIu64
                 " of %s (records from sequence number %" PRId64 " on were never acknowledged)",
                 pl->partition, (uint64_t)st.st_size - pos, pos, path, seq);
        if (ftruncate(fd, (off_t)pos) != 0) {
            snprintf(err, errlen, "cannot cut the torn tail of %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    /* records that survived a SIGKILL only in the page cache become durable before anyone reads them */
    if (fdatasync(fd) != 0) {
        snprintf(err, errlen, "cannot sync %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    s->size = pos;
    pl->fd = fd;
    pl->next_seq = seq;
    pl->last_enq_ms = last_enq;
    return 0;
}

static void *committer(void *arg);

iothub_plog_t *iothub_plog_open(const iothub_plog_opts_t *o, char *err, size_t errlen)
{
    iothub_plog_t *pl = calloc(1, sizeof *pl);
    if (!pl || !(pl->dir = strdup(o->dir))) {
        free(pl);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pl->partition = o->partition;
    pl->seg_bytes = o->segment_bytes ? o->segment_bytes : DEFAULT_SEGMENT;
    pl->max_pending = o->max_pending_bytes ? o->max_pending_bytes : DEFAULT_PENDING;
    pl->fd = -1;
    pthread_mutex_init(&pl->lock, NULL);
    pthread_cond_init(&pl->work, NULL);
    pthread_cond_init(&pl->data, NULL);
    int64_t *bases = NULL;
    size_t nb = 0;
    if (iothub_fs_mkdirs(pl->dir, 0700, err, errlen) != 0 || list_segments(pl, &bases, &nb, err, errlen) != 0)
        goto fail;
    int64_t fresh_base = 0;
    while (nb > 0) {
        seg_t last;
        int rc = recover_last(pl, bases[nb - 1], &last, err, errlen);
        if (rc < 0) goto fail;
        if (rc == 1) { fresh_base = bases[--nb]; continue; }
        for (size_t i = 0; i + 1 < nb; i++) {
            seg_t s;
            if (open_sealed(pl, bases[i], &s, err, errlen) != 0 || push_seg(pl, s) != 0) goto fail;
        }
        if (push_seg(pl, last) != 0) goto fail;
        break;
    }
    if (pl->nsegs == 0) {
        /* a new log, or one whose only segment had a torn header */
        int64_t base = fresh_base;
        pl->fd = create_segment(pl, base, 0, err, errlen);
        if (pl->fd < 0) goto fail;
        seg_t s = {base, 0, IOTHUB_PLOG_HEADER};
        if (push_seg(pl, s) != 0) goto fail;
        pl->next_seq = base;
    }
    free(bases);
    bases = NULL;
    if (pthread_create(&pl->thr, NULL, committer, pl) != 0) {
        snprintf(err, errlen, "cannot start the partition %d committer thread", pl->partition);
        goto fail;
    }
    pl->started = 1;
    return pl;
fail:
    free(bases);
    iothub_plog_close(pl);
    return NULL;
}

/* ---- appends and the committer --------------------------------------------------------- */

int iothub_plog_append(iothub_plog_t *pl, const iothub_plog_payload_t *p, size_t n,
                       iothub_plog_done_fn done, void *arg, const char **why)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].len > IOTHUB_PLOG_MAX_PAYLOAD) { *why = "too large"; return -1; }
        total += p[i].len;
    }
    if (n == 0) { *why = "empty"; return -1; }
    pend_t *e = malloc(sizeof *e + n * 2 * sizeof(uint32_t) + total);
    if (!e) { *why = "out of memory"; return -1; }
    e->next = NULL;
    e->n = n;
    e->done = done;
    e->arg = arg;
    e->lens = (uint32_t *)(e + 1);
    e->crcs = e->lens + n;
    e->data = (unsigned char *)(e->crcs + n);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        e->lens[i] = (uint32_t)p[i].len;
        e->crcs[i] = crc32c(0, p[i].data, p[i].len);   /* computed here, in parallel, not in the committer */
        if (p[i].len) memcpy(e->data + at, p[i].data, p[i].len);
        at += p[i].len;
    }
    pthread_mutex_lock(&pl->lock);
    if (pl->stop) *why = "stopped";
    else if (pl->pending_bytes + total > pl->max_pending && pl->head) *why = "throttled";
    else *why = NULL;
    if (*why) {
        pthread_mutex_unlock(&pl->lock);
        free(e);
        return -1;
    }
    if (pl->tail) pl->tail->next = e;
    else pl->head = e;
    pl->tail = e;
    pl->pending_bytes += total + n * IOTHUB_PLOG_HEADER;
    pthread_cond_signal(&pl->work);
    pthread_mutex_unlock(&pl->lock);
    return 0;
}

static void finish(pend_t *list, int ok, int64_t *firsts, uint64_t *offs, int64_t enq, const char *error)
{
    size_t i = 0;
    while (list) {
        pend_t *next = list->next;
        iothub_plog_result_t res = {ok, ok ? firsts[i] : -1, ok ? offs[i] : 0, enq, error};
        if (list->done) list->done(list->arg, &res);
        free(list);
        list = next;
        i++;
    }
}

/* Write one group (everything queued when the committer woke) and make it durable. */
static void commit_group(iothub_plog_t *pl, pend_t *list, size_t groups)
{
    char err[512];
    int64_t *firsts = malloc(groups * sizeof *firsts);
    uint64_t *offs = malloc(groups * sizeof *offs);
    if (!firsts || !offs) {
        free(firsts); free(offs);
        int64_t z = 0; uint64_t zo = 0;
        finish(list, 0, &z, &zo, 0, "out of memory");
        return;
    }
    /* the active segment is always the last one: only this thread adds segments and compaction
     * never removes the last, but compaction may move the array, so copy it under the lock */
    pthread_mutex_lock(&pl->lock);
    seg_t act = pl->segs[pl->nsegs - 1];
    pthread_mutex_unlock(&pl->lock);
    if (act.size >= pl->seg_bytes) {
        /* roll: the active segment is fully durable, so the new one starts after it */
        int64_t base = pl->next_seq;
        uint64_t boff = act.base_offset + act.size;
        int fd = create_segment(pl, base, boff, err, sizeof err);
        if (fd < 0) {
            log_error(NULL, "iothub: partition %d: %s", pl->partition, err);
            finish(list, 0, firsts, offs, 0, err);
            free(firsts); free(offs);
            return;
        }
        seg_t s = {base, boff, IOTHUB_PLOG_HEADER};
        pthread_mutex_lock(&pl->lock);
        int pushed = push_seg(pl, s);
        pthread_mutex_unlock(&pl->lock);
        if (pushed != 0) {
            close(fd);
            finish(list, 0, firsts, offs, 0, "out of memory");
            free(firsts); free(offs);
            return;
        }
        close(pl->fd);
        pl->fd = fd;
        act = s;
    }
    int64_t enq = now_ms();
    if (enq < pl->last_enq_ms) enq = pl->last_enq_ms;   /* enqueued times never go back */
    int64_t seq = pl->next_seq;
    uint64_t start = act.size;
    buf_reset(&pl->wbuf);
    size_t gi = 0, count = 0;
    for (pend_t *e = list; e; e = e->next, gi++) {
        firsts[gi] = seq;
        offs[gi] = act.base_offset + start + pl->wbuf.len;
        size_t at = 0;
        for (size_t i = 0; i < e->n; i++) {
            unsigned char h[IOTHUB_PLOG_HEADER];
            make_record_header(h, e->lens[i], seq++, enq, e->crcs[i]);
            buf_append(&pl->wbuf, h, sizeof h);
            buf_append(&pl->wbuf, e->data + at, e->lens[i]);
            at += e->lens[i];
            count++;
        }
    }
    const char *fail = NULL;
    errno = 0;
    if (pl->wbuf.oom) fail = "out of memory";
    else {
        size_t done = 0;
        while (done < pl->wbuf.len) {
            ssize_t w = pwrite(pl->fd, pl->wbuf.data + done, pl->wbuf.len - done, (off_t)(start + done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            done += (size_t)w;
        }
        if (done < pl->wbuf.len || fdatasync(pl->fd) != 0) {
            snprintf(err, sizeof err, "cannot write partition %d's log: %s", pl->partition,
                     errno ? strerror(errno) : "short write");
            fail = err;
        }
    }
    if (fail) {
        /* nothing of this group is acknowledged or readable; take the bytes back */
        if (ftruncate(pl->fd, (off_t)start) != 0 || fdatasync(pl->fd) != 0)
            log_error(NULL, "iothub: partition %d: cannot truncate after a failed write: %s", pl->partition,
                      strerror(errno));
        log_error(NULL, "iothub: %s (%zu messages refused)", fail, count);
        finish(list, 0, firsts, offs, 0, fail);
    } else {
        pthread_mutex_lock(&pl->lock);
        pl->segs[pl->nsegs - 1].size = start + pl->wbuf.len;
        pl->next_seq = seq;
        pl->last_enq_ms = enq;
        pl->commits++;
        pl->appended += count;
        pthread_cond_broadcast(&pl->data);
        pthread_mutex_unlock(&pl->lock);
        finish(list, 1, firsts, offs, enq, NULL);
    }
    free(firsts);
    free(offs);
    if (pl->wbuf.cap > (1u << 20)) buf_free(&pl->wbuf);   /* do not keep a burst's buffer (RSS) */
}

static void *committer(void *arg)
{
    iothub_plog_t *pl = arg;
    pthread_mutex_lock(&pl->lock);
    for (;;) {
        while (!pl->head && !pl->stop) pthread_cond_wait(&pl->work, &pl->lock);
        if (!pl->head) break;
        pend_t *list = pl->head;
        size_t groups = 0;
        for (pend_t *e = list; e; e = e->next) groups++;
        pl->head = pl->tail = NULL;
        pl->pending_bytes = 0;
        pthread_mutex_unlock(&pl->lock);
        commit_group(pl, list, groups);
        pthread_mutex_lock(&pl->lock);
    }
    pthread_mutex_unlock(&pl->lock);
    return NULL;
}

/* ---- compaction, info, close ------------------------------------------------------------ */

int iothub_plog_compact(iothub_plog_t *pl, int64_t keep_from_seq)
{
    pthread_mutex_lock(&pl->lock);
    size_t k = 0;
    while (k + 1 < pl->nsegs && pl->segs[k + 1].base_seq <= keep_from_seq) k++;
    int64_t *gone = k ? malloc(k * sizeof *gone) : NULL;
    if (!gone) k = 0;
    for (size_t i = 0; i < k; i++) gone[i] = pl->segs[i].base_seq;
    if (k) {
        memmove(pl->segs, pl->segs + k, (pl->nsegs - k) * sizeof *pl->segs);
        pl->nsegs -= k;
    }
    pthread_mutex_unlock(&pl->lock);
    for (size_t i = 0; i < k; i++) {
        char path[4200];
        seg_path(pl, gone[i], path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            log_warn(NULL, "iothub: cannot delete compacted segment %s: %s", path, strerror(errno));
    }
    if (k) {
        char err[256];
        if (iothub_fs_sync_dir(pl->dir, err, sizeof err) != 0) log_warn(NULL, "iothub: %s", err);
    }
    free(gone);
    return (int)k;
}

void iothub_plog_info(iothub_plog_t *pl, iothub_plog_info_t *out)
{
    pthread_mutex_lock(&pl->lock);
    out->first_seq = pl->nsegs ? pl->segs[0].base_seq : pl->next_seq;
    out->next_seq = pl->next_seq;
    out->last_enqueued_ms = pl->last_enq_ms;
    out->segments = pl->nsegs;
    out->disk_bytes = 0;
    for (size_t i = 0; i < pl->nsegs; i++) out->disk_bytes += pl->segs[i].size;
    out->commits = pl->commits;
    out->appended = pl->appended;
    pthread_mutex_unlock(&pl->lock);
}

void iothub_plog_wake_readers(iothub_plog_t *pl)
{
    pthread_mutex_lock(&pl->lock);
    pl->wake_gen++;
    pthread_cond_broadcast(&pl->data);
    pthread_mutex_unlock(&pl->lock);
}

void iothub_plog_close(iothub_plog_t *pl)
{
    if (!pl) return;
    if (pl->started) {
        pthread_mutex_lock(&pl->lock);
        pl->stop = 1;
        pthread_cond_signal(&pl->work);
        pthread_mutex_unlock(&pl->lock);
        pthread_join(pl->thr, NULL);
    }
    if (pl->fd >= 0) close(pl->fd);
    buf_free(&pl->wbuf);
    free(pl->segs);
    pthread_cond_destroy(&pl->work);
    pthread_cond_destroy(&pl->data);
    pthread_mutex_destroy(&pl->lock);
    free(pl->dir);
    free(pl);
}

/* ---- readers ---------------------------------------------------------------------------- */

/* Index of the segment with base_seq == base, or of the first one after it (lock held). */
static size_t seg_index(const iothub_plog_t *pl, int64_t base, int *exact)
{
    size_t lo = 0, hi = pl->nsegs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pl->segs[mid].base_seq < base) lo = mid + 1;
        else hi = mid;
    }
    *exact = lo < pl->nsegs && pl->segs[lo].base_seq == base;
    return lo;
}

static int reader_open_segment(iothub_plog_reader_t *r, const seg_t *s, char *err, size_t errlen)
{
    char path[4200];
    seg_path(r->pl, s->base_seq, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (r->fd >= 0) close(r->fd);
    r->fd = fd;
    r->seg_base = s->base_seq;
    r->seg_offset = s->base_offset;
    r->pos = IOTHUB_PLOG_HEADER;
    r->next_seq = s->base_seq;
    return 0;
}

iothub_plog_reader_t *iothub_plog_reader_open(iothub_plog_t *pl, int64_t from_seq, uint64_t offset_hint,
                                              char *err, size_t errlen)
{
    iothub_plog_reader_t *r = calloc(1, sizeof *r);
    if (!r) { snprintf(err, errlen, "out of memory"); return NULL; }
    r->pl = pl;
    r->fd = -1;
    r->cap = READ_CHUNK;
    r->buf = malloc(r->cap);
    if (!r->buf) { free(r); snprintf(err, errlen, "out of memory"); return NULL; }
    pthread_mutex_lock(&pl->lock);
    int64_t first = pl->segs[0].base_seq, end = pl->next_seq;
    if (from_seq < first) {
        if (from_seq > 0)
            log_warn(NULL, "iothub: partition %d: sequence number %" PRId64 " was compacted away; reading from %"
                     PRId64, pl->partition, from_seq, first);
        from_seq = first;
    }
    if (from_seq > end) {
        log_error(NULL, "iothub: partition %d: a checkpoint is at sequence number %" PRId64 " but the log ends at %"
                  PRId64 "; reading from the end (were log files deleted?)", pl->partition, from_seq, end);
        from_seq = end;
    }
    size_t i = pl->nsegs - 1;
    while (i > 0 && pl->segs[i].base_seq > from_seq) i--;
    seg_t s = pl->segs[i];
    pthread_mutex_unlock(&pl->lock);
    if (reader_open_segment(r, &s, err, errlen) != 0) {
        iothub_plog_reader_close(r);
        return NULL;
    }
    r->skip_until = from_seq;
    if (offset_hint >= s.base_offset + IOTHUB_PLOG_HEADER && offset_hint < s.base_offset + s.size) {
        unsigned char h[IOTHUB_PLOG_HEADER];
        uint64_t pos = offset_hint - s.base_offset;
        if (pread(r->fd, h, sizeof h, (off_t)pos) == (ssize_t)sizeof h && get32(h) == REC_MAGIC &&
            crc32c(0, h, 28) == get32(h + 28) && (int64_t)get64(h + 8) == from_seq) {
            r->pos = pos;
            r->next_seq = from_seq;
        }
    }
    return r;
}

int64_t iothub_plog_reader_next(const iothub_plog_reader_t *r)
{
    return r->next_seq > r->skip_until ? r->next_seq : r->skip_until;
}

int iothub_plog_read(iothub_plog_reader_t *r, iothub_plog_rec_t *out, size_t max, size_t max_bytes,
                     int timeout_ms, char *err, size_t errlen)
{
    iothub_plog_t *pl = r->pl;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&pl->lock);
    unsigned gen = pl->wake_gen;
    pthread_mutex_unlock(&pl->lock);
    for (;;) {
        uint64_t limit;
        pthread_mutex_lock(&pl->lock);
        int exact;
        size_t i = seg_index(pl, r->seg_base, &exact);
        int is_last = exact && i == pl->nsegs - 1;
        if (exact) {
            limit = pl->segs[i].size;
        } else {
            /* compacted away under us: its size is final */
            struct stat st;
            limit = fstat(r->fd, &st) == 0 ? (uint64_t)st.st_size : r->pos;
        }
        if (r->pos >= limit) {
            size_t next = exact ? i + 1 : i;
            if (!is_last && next < pl->nsegs) {
                seg_t s = pl->segs[next];
                pthread_mutex_unlock(&pl->lock);
                if (s.base_seq > r->next_seq && r->next_seq >= r->skip_until)
                    log_warn(NULL, "iothub: partition %d: events %" PRId64 "..%" PRId64 " were compacted before this "
                             "reader got to them", pl->partition, r->next_seq, s.base_seq - 1);
                if (reader_open_segment(r, &s, err, errlen) != 0) return -1;
                continue;
            }
            if (pl->wake_gen != gen) { pthread_mutex_unlock(&pl->lock); return 0; }
            int rc = pthread_cond_timedwait(&pl->data, &pl->lock, &deadline);
            pthread_mutex_unlock(&pl->lock);
            if (rc == ETIMEDOUT) return 0;
            continue;
        }
        pthread_mutex_unlock(&pl->lock);

        size_t want = limit - r->pos > r->cap ? r->cap : (size_t)(limit - r->pos);
        ssize_t got = pread(r->fd, r->buf, want, (off_t)r->pos);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            snprintf(err, errlen, "partition %d: cannot read segment %" PRId64 ": %s", pl->partition, r->seg_base,
                     got < 0 ? strerror(errno) : "unexpected end of file");
            r->pos = limit;   /* skip the unreadable rest of this segment next time */
            return -1;
        }
        size_t k = 0, count = 0, bytes = 0;
        while (count < max && (count == 0 || bytes < max_bytes)) {
            iothub_plog_rec_t rec;
            long n = iothub_plog_parse_record(r->buf + k, (size_t)got - k, &rec);
            if (n == 0) {
                if (k > 0) break;   /* the rest comes with the next pread */
                if ((size_t)got < r->cap) {
                    /* the durable bytes end inside a record: the file was cut or overwritten */
                    snprintf(err, errlen, "partition %d: segment %" PRId64 " ends inside a record at offset %"
                             PRIu64 "; skipping the rest of the segment", pl->partition, r->seg_base,
                             r->seg_offset + r->pos);
                    r->pos = limit;
                    return -1;
                }
                /* one record larger than the buffer (its header is valid): grow to fit it */
                size_t need = IOTHUB_PLOG_HEADER + get32(r->buf + 4);
                unsigned char *nb = realloc(r->buf, need);
                if (!nb) { snprintf(err, errlen, "out of memory for a record of %zu bytes", need); return -1; }
                r->buf = nb;
                r->cap = need;
                break;
            }
            if (n < 0 || rec.seq != r->next_seq) {
                snprintf(err, errlen, "partition %d: segment %" PRId64 " is corrupt at offset %" PRIu64
                         " (expected sequence number %" PRId64 "); skipping the rest of the segment",
                         pl->partition, r->seg_base, r->seg_offset + r->pos + k, r->next_seq);
                r->pos = limit;
                return count ? (int)count : -1;
            }
            rec.offset = r->seg_offset + r->pos + k;
            k += (size_t)n;
            r->next_seq++;
            if (rec.seq < r->skip_until) continue;
            out[count++] = rec;
            bytes += rec.len;
        }
        r->pos += k;
        if (count) return (int)count;
    }
}

void iothub_plog_reader_close(iothub_plog_reader_t *r)
{
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    free(r->buf);
    free(r);
}
