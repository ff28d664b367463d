/* Unit tests: the local IoT Hub's storage and device API — partition logs (group commit,
 * readers, torn tails, segments, compaction), checkpoints, the hub (authentication, sends, MQTT
 * helpers) and the HTTP device-to-cloud endpoint. Each test works in its own temporary folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devhost/iothub/checkpoint.h"
#include "devhost/iothub/d2c.h"
#include "devhost/iothub/fsutil.h"
#include "devhost/iothub/hub.h"
#include "devhost/iothub/partlog.h"
#include "devhost/iothub/sas.h"
#include "util/base64.h"

#include "test_tmpdir.h"

static char g_dir[64];

static int mk_dir(void **state)
{
    (void)state;
    return test_tmpdir(g_dir, sizeof g_dir, "iothub-log");
}

static int rm_dir(void **state)
{
    (void)state;
    return test_tmpdir_remove(g_dir);
}

/* ---- partition log ----------------------------------------------------------------------- */

typedef struct acks {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             done, ok;
    int64_t         first;
    uint64_t        offset;
} acks_t;

static void on_done(void *arg, const iothub_plog_result_t *r)
{
    acks_t *a = arg;
    pthread_mutex_lock(&a->lock);
    a->done++;
    if (r->ok) { a->ok++; a->first = r->first_seq; a->offset = r->first_offset; }
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

static void acks_wait(acks_t *a, int n)
{
    pthread_mutex_lock(&a->lock);
    while (a->done < n) pthread_cond_wait(&a->cond, &a->lock);
    pthread_mutex_unlock(&a->lock);
}

static iothub_plog_t *open_log(const char *sub, size_t seg)
{
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, sub);
    iothub_plog_opts_t o = {path, 0, seg, 0};
    iothub_plog_t *pl = iothub_plog_open(&o, err, sizeof err);
    if (!pl) fail_msg("open %s: %s", path, err);
    return pl;
}

/* Append payload "rec-<i>" synchronously; returns its sequence number. */
static int64_t append_one(iothub_plog_t *pl, int i)
{
    char p[32];
    int n = snprintf(p, sizeof p, "rec-%d", i);
    acks_t a = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
    iothub_plog_payload_t pp = {p, (size_t)n};
    const char *why;
    assert_int_equal(iothub_plog_append(pl, &pp, 1, on_done, &a, &why), 0);
    acks_wait(&a, 1);
    assert_int_equal(a.ok, 1);
    return a.first;
}

/* Read everything currently durable from seq 0; returns the count, checks "rec-<i>" order. */
static int read_all(iothub_plog_t *pl, int64_t from, int expect_first_i)
{
    char err[512];
    iothub_plog_reader_t *r = iothub_plog_reader_open(pl, from, 0, err, sizeof err);
    assert_non_null(r);
    iothub_plog_rec_t recs[64];
    int total = 0, n;
    while ((n = iothub_plog_read(r, recs, 64, 1 << 20, 0, err, sizeof err)) > 0) {
        for (int k = 0; k < n; k++) {
            char want[32];
            int wl = snprintf(want, sizeof want, "rec-%d", expect_first_i + total + k);
            if (recs[k].len != (uint32_t)wl || memcmp(recs[k].payload, want, (size_t)wl) != 0)
                fail_msg("record %d: got '%.*s', want '%s'", total + k, (int)recs[k].len, (const char *)recs[k].payload, want);
            assert_int_equal(recs[k].seq, from + total + k);
        }
        total += n;
    }
    assert_int_equal(n, 0);
    iothub_plog_reader_close(r);
    return total;
}

static void test_plog_append_read_reopen(void **state)
{
    (void)state;
    iothub_plog_t *pl = open_log("p0", 0);
    for (int i = 0; i < 10; i++) assert_int_equal(append_one(pl, i), i);
    assert_int_equal(read_all(pl, 0, 0), 10);
    assert_int_equal(read_all(pl, 7, 7), 3);
    iothub_plog_info_t info;
    iothub_plog_info(pl, &info);
    assert_int_equal(info.next_seq, 10);
    assert_int_equal(info.appended, 10);
    iothub_plog_close(pl);
    pl = open_log("p0", 0);
    assert_int_equal(read_all(pl, 0, 0), 10);
    assert_int_equal(append_one(pl, 10), 10);
    assert_int_equal(read_all(pl, 0, 0), 11);
    iothub_plog_close(pl);
}

typedef struct writer { iothub_plog_t *pl; int id, count; acks_t *a; } writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    for (int i = 0; i < w->count; i++) {
        char p[48];
        int n = snprintf(p, sizeof p, "w%d-%d", w->id, i);
        iothub_plog_payload_t pp = {p, (size_t)n};
        const char *why;
        acks_t mine = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
        if (iothub_plog_append(w->pl, &pp, 1, on_done, &mine, &why) != 0) fail_msg("append refused: %s", why);
        acks_wait(&mine, 1);   /* like an HTTP device: the next send waits for the ack */
        on_done(w->a, &(iothub_plog_result_t){mine.ok, 0, 0, 0, NULL});
    }
    return NULL;
}

static void test_plog_group_commit(void **state)
{
    (void)state;
    iothub_plog_t *pl = open_log("gc", 0);
    enum { W = 16, N = 200 };
    acks_t a = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
    pthread_t th[W];
    writer_t w[W];
    for (int i = 0; i < W; i++) {
        w[i] = (writer_t){pl, i, N, &a};
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    for (int i = 0; i < W; i++) pthread_join(th[i], NULL);
    assert_int_equal(a.ok, W * N);
    iothub_plog_info_t info;
    iothub_plog_info(pl, &info);
    assert_int_equal(info.next_seq, W * N);
    /* group commit: far fewer fsync'd groups than records (16 writers waiting on each other) */
    assert_true(info.commits < (uint64_t)(W * N) / 2);
    /* every writer's records are there, each writer's in its own order */
    char err[512];
    iothub_plog_reader_t *r = iothub_plog_reader_open(pl, 0, 0, err, sizeof err);
    int next[W] = {0};
    iothub_plog_rec_t recs[128];
    int n, total = 0;
    while ((n = iothub_plog_read(r, recs, 128, 1 << 20, 0, err, sizeof err)) > 0) {
        for (int k = 0; k < n; k++) {
            int wid, i;
            char txt[48];
            snprintf(txt, sizeof txt, "%.*s", (int)recs[k].len, (const char *)recs[k].payload);
            assert_int_equal(sscanf(txt, "w%d-%d", &wid, &i), 2);
            assert_int_equal(i, next[wid]);
            next[wid]++;
            assert_int_equal(recs[k].seq, total + k);
        }
        total += n;
    }
    assert_int_equal(total, W * N);
    iothub_plog_reader_close(r);
    iothub_plog_close(pl);
}

static void seg_file(const char *sub, char *out, size_t len, int last)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, sub);
    DIR *d = opendir(dir);
    struct dirent *e;
    char best[300] = "";
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".seg")) continue;
        if (!best[0] || (last ? strcmp(e->d_name, best) > 0 : strcmp(e->d_name, best) < 0))
            snprintf(best, sizeof best, "%s", e->d_name);
    }
    closedir(d);
    snprintf(out, len, "%s/%s", dir, best);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_plog_torn_tail(void **state)
{
    (void)state;
    iothub_plog_t *pl = open_log("torn", 0);
    for (int i = 0; i < 5; i++) append_one(pl, i);
    iothub_plog_close(pl);
    char seg[256];
    seg_file("torn", seg, sizeof seg, 1);
    off_t good = file_size(seg);

    /* 1. garbage after the last record */
    int fd = open(seg, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "garbage!", 8), 8);
    close(fd);
    pl = open_log("torn", 0);
    assert_int_equal(file_size(seg), good);
    assert_int_equal(read_all(pl, 0, 0), 5);
    assert_int_equal(append_one(pl, 5), 5);    /* appends continue after the cut */
    iothub_plog_close(pl);
    good = file_size(seg);

    /* 2. a record whose payload was only partly written */
    pl = open_log("torn", 0);
    append_one(pl, 6);
    iothub_plog_close(pl);
    off_t full = file_size(seg);
    assert_int_equal(truncate(seg, full - 2), 0);
    pl = open_log("torn", 0);
    assert_int_equal(file_size(seg), good);
    assert_int_equal(read_all(pl, 0, 0), 6);
    /* 3. a header cut in the middle */
    append_one(pl, 6);
    iothub_plog_close(pl);
    assert_int_equal(truncate(seg, good + 10), 0);
    pl = open_log("torn", 0);
    assert_int_equal(file_size(seg), good);
    /* 4. a flipped bit in the last record's payload */
    append_one(pl, 6);
    iothub_plog_close(pl);
    fd = open(seg, O_RDWR);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, file_size(seg) - 1), 1);
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, file_size(seg) - 1), 1);
    close(fd);
    pl = open_log("torn", 0);
    assert_int_equal(file_size(seg), good);
    assert_int_equal(read_all(pl, 0, 0), 6);
    iothub_plog_info_t info;
    iothub_plog_info(pl, &info);
    assert_int_equal(info.next_seq, 6);
    iothub_plog_close(pl);

    /* 5. a segment whose header never became durable (created, then a crash) is removed */
    char fake[300];
    snprintf(fake, sizeof fake, "%s/torn/%020d.seg", g_dir, 6);
    fd = open(fake, O_WRONLY | O_CREAT, 0600);
    assert_int_equal(write(fd, "EMS", 3), 3);
    close(fd);
    pl = open_log("torn", 0);
    assert_int_equal(access(fake, F_OK), -1);
    assert_int_equal(read_all(pl, 0, 0), 6);
    iothub_plog_close(pl);
}

static void test_plog_segments_and_compaction(void **state)
{
    (void)state;
    iothub_plog_t *pl = open_log("seg", 200);   /* tiny segments: a roll every few records */
    for (int i = 0; i < 60; i++) append_one(pl, i);
    iothub_plog_info_t info;
    iothub_plog_info(pl, &info);
    assert_true(info.segments > 5);
    assert_int_equal(read_all(pl, 0, 0), 60);
    assert_int_equal(read_all(pl, 33, 33), 27);   /* positioned inside a later segment */
    /* a reader with the right offset hint starts there; a wrong hint falls back to a scan */
    char err[512];
    acks_t a = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
    iothub_plog_payload_t pp = {"rec-60", 6};
    const char *why;
    assert_int_equal(iothub_plog_append(pl, &pp, 1, on_done, &a, &why), 0);
    acks_wait(&a, 1);
    for (int hint = 0; hint < 2; hint++) {
        iothub_plog_reader_t *r = iothub_plog_reader_open(pl, 60, hint ? a.offset : 12345, err, sizeof err);
        iothub_plog_rec_t rec;
        assert_int_equal(iothub_plog_read(r, &rec, 1, 1 << 20, 0, err, sizeof err), 1);
        assert_int_equal(rec.seq, 60);
        assert_int_equal(rec.offset, a.offset);
        iothub_plog_reader_close(r);
    }
    /* a reader that is inside a segment while it is compacted keeps reading it */
    iothub_plog_reader_t *slow = iothub_plog_reader_open(pl, 1, 0, err, sizeof err);
    iothub_plog_rec_t rec;
    assert_int_equal(iothub_plog_read(slow, &rec, 1, 1 << 20, 0, err, sizeof err), 1);
    /* delete exactly the first segment (the one the reader is in) */
    int gone = 0;
    for (int64_t keep = 1; keep < 60 && gone == 0; keep++) gone = iothub_plog_compact(pl, keep);
    assert_int_equal(gone, 1);
    iothub_plog_info(pl, &info);
    assert_true(info.first_seq > 1);
    int seen = 1;
    iothub_plog_rec_t recs[16];
    int n;
    int64_t expect = 2;
    while ((n = iothub_plog_read(slow, recs, 16, 1 << 20, 0, err, sizeof err)) > 0) {
        for (int k = 0; k < n; k++) assert_int_equal(recs[k].seq, expect++);
        seen += n;
    }
    assert_int_equal(seen, 60);   /* 1..60 */
    iothub_plog_reader_close(slow);
    /* compaction past a reader that is not a consumer: it skips to what is left, with a warning */
    assert_true(iothub_plog_compact(pl, 40) > 0);
    iothub_plog_info(pl, &info);
    assert_true(info.first_seq <= 40 && info.first_seq > 1);
    /* a new reader from 0 starts at the first retained record */
    iothub_plog_reader_t *r = iothub_plog_reader_open(pl, 0, 0, err, sizeof err);
    assert_int_equal(iothub_plog_read(r, &rec, 1, 1 << 20, 0, err, sizeof err), 1);
    assert_int_equal(rec.seq, info.first_seq);
    iothub_plog_reader_close(r);
    /* the active segment is never compacted, whatever is asked */
    iothub_plog_compact(pl, 1000);
    iothub_plog_info(pl, &info);
    assert_int_equal(info.segments, 1);
    iothub_plog_close(pl);
    pl = open_log("seg", 200);
    iothub_plog_info(pl, &info);
    assert_int_equal(info.next_seq, 61);
    assert_int_equal(append_one(pl, 61), 61);
    iothub_plog_close(pl);
}

static void *late_append(void *arg)
{
    usleep(50000);
    append_one(arg, 0);
    return NULL;
}

static void test_plog_reader_waits(void **state)
{
    (void)state;
    iothub_plog_t *pl = open_log("wait", 0);
    char err[512];
    iothub_plog_reader_t *r = iothub_plog_reader_open(pl, 0, 0, err, sizeof err);
    iothub_plog_rec_t rec;
    assert_int_equal(iothub_plog_read(r, &rec, 1, 1 << 20, 10, err, sizeof err), 0);   /* times out */
    pthread_t th;
    pthread_create(&th, NULL, late_append, pl);
    assert_int_equal(iothub_plog_read(r, &rec, 1, 1 << 20, 5000, err, sizeof err), 1);  /* woken by the commit */
    pthread_join(th, NULL);
    iothub_plog_reader_close(r);
    iothub_plog_close(pl);
}

static void test_plog_parse_robust(void **state)
{
    (void)state;
    /* random bytes: never a crash, never a record */
    srand(7);
    unsigned char junk[4096];
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(rand() % (int)sizeof junk);
        for (size_t i = 0; i < n; i++) junk[i] = (unsigned char)rand();
        iothub_plog_rec_t rec;
        assert_true(iothub_plog_parse_record(junk, n, &rec) <= 0);
        size_t valid, count;
        int64_t next;
        assert_int_equal(iothub_plog_scan(junk, n, &valid, &count, &next), -1);
    }
    /* a real segment image scans to its records */
    iothub_plog_t *pl = open_log("scan", 0);
    for (int i = 0; i < 3; i++) append_one(pl, i);
    iothub_plog_close(pl);
    char seg[256];
    seg_file("scan", seg, sizeof seg, 1);
    FILE *f = fopen(seg, "rb");
    unsigned char img[4096];
    size_t n = fread(img, 1, sizeof img, f);
    fclose(f);
    size_t valid, count;
    int64_t next;
    assert_int_equal(iothub_plog_scan(img, n, &valid, &count, &next), 0);
    assert_int_equal(valid, n);
    assert_int_equal(count, 3);
    assert_int_equal(next, 3);
    assert_int_equal(iothub_plog_scan(img, n - 1, &valid, &count, &next), 0);
    assert_int_equal(count, 2);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static void test_checkpoints(void **state)
{
    (void)state;
    char root[128], err[512];
    snprintf(root, sizeof root, "%s/ck", g_dir);
    const char *inst = "0123456789abcdef";
    iothub_ckpt_pos_t pos;
    iothub_ckpt_t *c = iothub_ckpt_open(root, "$Default", 2, inst, &pos, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(pos.next_seq, 0);
    int64_t min;
    assert_int_equal(iothub_ckpt_min(root, 2, inst, &min), 1);
    assert_int_equal(min, 0);
    for (int i = 1; i <= 5; i++) {
        iothub_ckpt_pos_t p = {i * 10, (uint64_t)i * 100};
        assert_int_equal(iothub_ckpt_write(c, &p, err, sizeof err), 0);
    }
    iothub_ckpt_close(c);
    c = iothub_ckpt_open(root, "$Default", 2, inst, &pos, err, sizeof err);
    assert_int_equal(pos.next_seq, 50);
    assert_int_equal(pos.next_offset, 500);
    iothub_ckpt_close(c);
    /* the newest slot torn: the previous checkpoint is used */
    char path[256];
    snprintf(path, sizeof path, "%s/%%24Default/2.ckpt", root);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b[128];
    assert_int_equal(pread(fd, b, 128, 0), 128);
    /* the first write of a new file is generation 1 (slot 1); the five writes are 2..6, so the
     * newest (6, next_seq 50) is in slot 0 and the one before (5, next_seq 40) in slot 1 */
    b[20] ^= 0xff;
    assert_int_equal(pwrite(fd, b, 128, 0), 128);
    close(fd);
    c = iothub_ckpt_open(root, "$Default", 2, inst, &pos, err, sizeof err);
    assert_int_equal(pos.next_seq, 40);
    iothub_ckpt_close(c);
    /* another instance's checkpoint is ignored */
    c = iothub_ckpt_open(root, "$Default", 2, "fedcba9876543210", &pos, err, sizeof err);
    assert_int_equal(pos.next_seq, 0);
    iothub_ckpt_close(c);
    /* the minimum over groups */
    c = iothub_ckpt_open(root, "$Default", 2, inst, &pos, err, sizeof err);   /* reset above: 0 */
    iothub_ckpt_pos_t p = {70, 0};
    iothub_ckpt_write(c, &p, err, sizeof err);
    iothub_ckpt_close(c);
    c = iothub_ckpt_open(root, "other", 2, inst, &pos, err, sizeof err);
    p.next_seq = 30;
    iothub_ckpt_write(c, &p, err, sizeof err);
    iothub_ckpt_close(c);
    assert_int_equal(iothub_ckpt_min(root, 2, inst, &min), 1);
    assert_int_equal(min, 30);
    /* a group without this partition's checkpoint keeps everything */
    assert_int_equal(iothub_ckpt_min(root, 3, inst, &min), -1);
    char nowhere[160];
    snprintf(nowhere, sizeof nowhere, "%s/none", g_dir);
    assert_int_equal(iothub_ckpt_min(nowhere, 0, inst, &min), 0);
    /* folder names */
    char g[64];
    assert_int_equal(iothub_ckpt_group_dir("$Default", g, sizeof g), 0);
    assert_string_equal(g, "%24Default");
    assert_int_equal(iothub_ckpt_group_dir("../x", g, sizeof g), 0);
    assert_string_equal(g, "..%2Fx");
    assert_int_equal(iothub_ckpt_group_dir("..", g, sizeof g), -1);
    assert_int_equal(iothub_ckpt_group_dir("", g, sizeof g), -1);
    assert_int_equal(iothub_ckpt_decode("short", 5, inst, &pos), -1);
}

/* ---- the hub and the HTTP API ------------------------------------------------------------- */

static iothub_t *open_hub(int partitions, char *err, size_t errlen)
{
    iothub_opts_t o = {g_dir, "enviromon", partitions, 0, 60000};
    return iothub_open(&o, err, errlen);
}

static void add_device(const char *id, iothub_device_t *d)
{
    char dir[128], err[512];
    snprintf(dir, sizeof dir, "%s/iothub", g_dir);
    assert_int_equal(iothub_registry_add(dir, id, d, err, sizeof err), IOTHUB_REG_OK);
}

static void token_for(const iothub_device_t *d, const char *resource, long long se, int lower, char *tok, size_t len)
{
    unsigned char key[64];
    long kl = iothub_device_key_raw(d->primary, key);
    char sr[600];
    assert_true(iothub_sas_url_encode(resource, !lower, sr, sizeof sr) > 0);
    assert_int_equal(iothub_sas_make(sr, key, (size_t)kl, se, lower ? "" : NULL, tok, len), 0);
}

static void test_hub_open_and_auth(void **state)
{
    (void)state;
    char err[512];
    iothub_t *h = open_hub(0, err, sizeof err);
    assert_non_null(h);
    assert_int_equal(iothub_partitions(h), 4);
    assert_string_equal(iothub_host(h), "enviromon.azure-devices.net");
    char inst[IOTHUB_INSTANCE_LEN + 1];
    snprintf(inst, sizeof inst, "%s", iothub_instance(h));
    iothub_close(h);
    /* the partition count is fixed at creation */
    assert_null(open_hub(8, err, sizeof err));
    assert_non_null(strstr(err, "4 partitions"));
    h = open_hub(4, err, sizeof err);
    assert_non_null(h);
    assert_string_equal(iothub_instance(h), inst);

    iothub_device_t d, d2;
    add_device("dev1", &d);
    add_device("dev2", &d2);
    char tok[1024];
    long long se = (long long)time(NULL) + 600;
    token_for(&d, "enviromon.azure-devices.net/devices/dev1", se, 0, tok, sizeof tok);
    iothub_auth_t a;
    assert_int_equal(iothub_authenticate(h, "dev1", tok, strlen(tok), "devices/dev1/messages/events", &a, err, sizeof err), IOTHUB_OK);
    assert_string_equal(a.device_id, "dev1");
    assert_string_equal(a.generation_id, d.generation_id);
    assert_int_equal(a.expires, se);
    /* dev1's token for dev2's path */
    assert_int_equal(iothub_authenticate(h, "dev2", tok, strlen(tok), "devices/dev2/messages/events", &a, err, sizeof err),
                     IOTHUB_E_UNAUTHORIZED);
    /* unknown device */
    assert_int_equal(iothub_authenticate(h, "ghost", tok, strlen(tok), "devices/ghost", &a, err, sizeof err), IOTHUB_E_NOT_FOUND);
    assert_non_null(strstr(err, "ghost"));
    /* expired */
    token_for(&d, "enviromon.azure-devices.net/devices/dev1", (long long)time(NULL) - 400, 1, tok, sizeof tok);
    assert_int_equal(iothub_authenticate(h, "dev1", tok, strlen(tok), "devices/dev1", &a, err, sizeof err), IOTHUB_E_UNAUTHORIZED);
    assert_non_null(strstr(err, "expired"));
    /* the secondary key signs too */
    unsigned char key[64];
    long kl = iothub_device_key_raw(d.secondary, key);
    char sec[1024];
    assert_int_equal(iothub_sas_make("enviromon.azure-devices.net%2Fdevices%2Fdev1", key, (size_t)kl, se, NULL, sec, sizeof sec), 0);
    assert_int_equal(iothub_authenticate(h, "dev1", sec, strlen(sec), "devices/dev1", &a, err, sizeof err), IOTHUB_OK);
    /* a regenerated primary key retires old tokens at once */
    token_for(&d, "enviromon.azure-devices.net/devices/dev1", se, 0, tok, sizeof tok);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/iothub", g_dir);
    iothub_device_t r;
    assert_int_equal(iothub_registry_regenerate(dir, "dev1", 0, &r, err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_authenticate(h, "dev1", tok, strlen(tok), "devices/dev1", &a, err, sizeof err), IOTHUB_E_UNAUTHORIZED);

    iothub_close(h);
}

/* The live view sees every change on the very next lookup (same thread, no wait): an add, a
 * re-key, a removal, a removal and re-add, and an edit of the file in place; files of other
 * names in the folder (a writer's temporary file) do not make it reload. */
static void test_registry_live_view_at_once(void **state)
{
    (void)state;
    char dir[128], err[512], path[256];
    snprintf(dir, sizeof dir, "%s/iothub", g_dir);
    snprintf(path, sizeof path, "%s/devices.json", dir);
    assert_int_equal(iothub_fs_mkdirs(dir, 0700, err, sizeof err), 0);
    iothub_registry_t *r = iothub_registry_open(dir, err, sizeof err);
    assert_non_null(r);
    iothub_device_t d, got;
    assert_int_equal(iothub_registry_lookup(r, "a", &got), 0);
    assert_int_equal(iothub_registry_add(dir, "a", &d, err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_registry_lookup(r, "a", &got), 1);
    assert_string_equal(got.primary, d.primary);
    assert_int_equal(iothub_registry_regenerate(dir, "a", 0, &d, err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_registry_lookup(r, "a", &got), 1);
    assert_string_equal(got.primary, d.primary);
    char gen[24];
    snprintf(gen, sizeof gen, "%s", d.generation_id);
    assert_int_equal(iothub_registry_remove(dir, "a", err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_registry_lookup(r, "a", &got), 0);
    /* removed and added again within one tick of the clock: a new file, a new generation */
    assert_int_equal(iothub_registry_add(dir, "a", &d, err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_registry_lookup(r, "a", &got), 1);
    assert_string_equal(got.generation_id, d.generation_id);
    /* another file in the folder: the view stays as it is */
    char other[256];
    snprintf(other, sizeof other, "%s/devices.json.tmp.1", dir);
    FILE *f = fopen(other, "w");
    assert_non_null(f);
    fputs("not a registry", f);
    fclose(f);
    assert_int_equal(iothub_registry_count(r), 1);
    /* the file edited in place (same inode): the next lookup reloads it */
    iothub_device_t two[2] = {d, d};
    snprintf(two[1].id, sizeof two[1].id, "b");
    char *text = iothub_registry_format(two, 2);
    assert_non_null(text);
    f = fopen(path, "r+");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    fclose(f);
    free(text);
    assert_int_equal(iothub_registry_lookup(r, "b", &got), 1);
    assert_int_equal(iothub_registry_count(r), 2);
    iothub_registry_close(r);
}

/* Registry changes reach the listener without any request: housekeeping notices them. */
typedef struct changes {
    pthread_mutex_t lock;
    char            ids[8][32];
    int             n;
} changes_t;

static void on_change(void *arg, const char *id)
{
    changes_t *c = arg;
    pthread_mutex_lock(&c->lock);
    if (c->n < 8) snprintf(c->ids[c->n++], sizeof c->ids[0], "%s", id);
    pthread_mutex_unlock(&c->lock);
}

static int changes_seen(changes_t *c)
{
    pthread_mutex_lock(&c->lock);
    int n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static void test_registry_change_listener(void **state)
{
    (void)state;
    char err[512], dir[128];
    snprintf(dir, sizeof dir, "%s/iothub", g_dir);
    iothub_t *h = open_hub(0, err, sizeof err);
    assert_non_null(h);
    iothub_device_t d;
    add_device("keep", &d);
    add_device("rekey", &d);
    add_device("gone", &d);
    add_device("again", &d);
    assert_int_equal(iothub_registry_count(iothub_registry(h)), 4);   /* the hub's view has all four */
    static changes_t c = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0};
    iothub_registry_on_change(iothub_registry(h), on_change, &c);
    /* a secondary key regenerated, a device removed, one removed and added again, one added */
    assert_int_equal(iothub_registry_regenerate(dir, "rekey", 1, &d, err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_registry_remove(dir, "gone", err, sizeof err), IOTHUB_REG_OK);
    assert_int_equal(iothub_registry_remove(dir, "again", err, sizeof err), IOTHUB_REG_OK);
    add_device("again", &d);
    add_device("new", &d);
    /* no request is made: the housekeeping thread must notice within a few of its 250 ms looks
     * (whether it sees the changes in one reload or several, each device is reported once) */
    for (int i = 0; i < 500 && changes_seen(&c) < 3; i++) usleep(10000);
    usleep(600000);   /* and nothing more comes */
    iothub_close(h);
    int rekey = 0, gone = 0, again = 0;
    for (int k = 0; k < c.n; k++) {
        if (strcmp(c.ids[k], "rekey") == 0) rekey++;
        else if (strcmp(c.ids[k], "gone") == 0) gone++;
        else if (strcmp(c.ids[k], "again") == 0) again++;
        else fail_msg("'%s' was reported as changed", c.ids[k]);
    }
    assert_int_equal(rekey, 1);
    assert_int_equal(gone, 1);
    assert_int_equal(again, 1);   /* removed, then added back under a new generation */
}

/* Clearing the listener waits for a call of it that is running, so that its owner (the MQTT
 * plugin) may free the listener's argument as soon as iothub_registry_on_change(NULL) returns. */
typedef struct blocking {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             entered, release, cleared;
    iothub_registry_t *reg;
} blocking_t;

static void blocking_change(void *arg, const char *id)
{
    (void)id;
    blocking_t *b = arg;
    pthread_mutex_lock(&b->lock);
    b->entered = 1;
    pthread_cond_broadcast(&b->cond);
    while (!b->release) pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

static void *clear_listener(void *arg)
{
    blocking_t *b = arg;
    iothub_registry_on_change(b->reg, NULL, NULL);
    pthread_mutex_lock(&b->lock);
    b->cleared = 1;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static void test_registry_listener_clear_waits(void **state)
{
    (void)state;
    char err[512], dir[128];
    snprintf(dir, sizeof dir, "%s/iothub", g_dir);
    iothub_t *h = open_hub(0, err, sizeof err);
    assert_non_null(h);
    iothub_device_t d;
    add_device("busy", &d);
    assert_int_equal(iothub_registry_count(iothub_registry(h)), 1);
    static blocking_t b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL};
    b.reg = iothub_registry(h);
    iothub_registry_on_change(b.reg, blocking_change, &b);
    assert_int_equal(iothub_registry_regenerate(dir, "busy", 0, &d, err, sizeof err), IOTHUB_REG_OK);
    pthread_mutex_lock(&b.lock);   /* housekeeping notices the new key and enters the listener */
    while (!b.entered) pthread_cond_wait(&b.cond, &b.lock);
    pthread_mutex_unlock(&b.lock);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, clear_listener, &b), 0);
    usleep(300000);   /* a window in which clearing must not return */
    pthread_mutex_lock(&b.lock);
    assert_int_equal(b.cleared, 0);
    b.release = 1;
    pthread_cond_broadcast(&b.cond);
    while (!b.cleared) pthread_cond_wait(&b.cond, &b.lock);
    pthread_mutex_unlock(&b.lock);
    assert_int_equal(pthread_join(t, NULL), 0);
    iothub_close(h);
}

/* A fake HTTP request: headers and query as NULL-terminated name/value lists. */
typedef struct fake_req { const char *const *headers; const char *const *query; } fake_req_t;

static void fake_each(void *arg, iothub_http_kind_t kind, iothub_http_visit_fn visit, void *ctx)
{
    const fake_req_t *f = arg;
    const char *const *kv = kind == IOTHUB_HTTP_HEADER ? f->headers : f->query;
    for (; kv && kv[0]; kv += 2)
        if (visit(ctx, kv[0], kv[1])) return;
}

static const char *const Q_OK[] = {"api-version", "2021-04-12", NULL};

static iothub_http_resp_t post(iothub_t *h, const char *method, const char *path, const char *const *headers,
                               const char *const *query, const void *body, size_t len, int truncated)
{
    fake_req_t f = {headers, query};
    iothub_http_req_t req = {method, path, fake_each, &f, body, len, truncated};
    iothub_http_resp_t resp;
    iothub_d2c_handle_wait(h, &req, &resp);
    return resp;
}

static int64_t stored(iothub_t *h, const char *device)
{
    iothub_plog_info_t i;
    iothub_plog_info(iothub_partition_log(h, iothub_partition_of(device, iothub_partitions(h))), &i);
    return i.next_seq;
}

static void expect_error(const iothub_http_resp_t *r, int status, const char *code)
{
    if (r->status != status) fail_msg("status %d, want %d: %.*s", r->status, status, (int)r->body_len, r->body);
    assert_string_equal(r->error_code, code);
    char want[80];
    snprintf(want, sizeof want, "{\"Message\":\"ErrorCode:%s;", code);
    assert_memory_equal(r->body, want, strlen(want));
    assert_non_null(strstr(r->body, "\"ExceptionMessage\":\"Tracking ID:"));
}

static void test_d2c(void **state)
{
    (void)state;
    char err[512];
    iothub_t *h = open_hub(0, err, sizeof err);
    assert_non_null(h);
    iothub_device_t d, d2;
    add_device("dev1", &d);
    add_device("dev2", &d2);
    char tok[1024], tok2[1024];
    long long se = (long long)time(NULL) + 600;
    token_for(&d, "enviromon.azure-devices.net/devices/dev1", se, 1, tok, sizeof tok);     /* C SDK form */
    token_for(&d2, "enviromon.azure-devices.net/devices/dev2", se, 0, tok2, sizeof tok2);  /* Node form */
    const char *const H[] = {"Authorization", tok, "IoTHub-MessageId", "m-1", "iothub-app-temperatureAlert", "true",
                             "iothub-contenttype", "application/json", "Content-Type", "application/octet-stream", NULL};
    const char *body = "{\"deviceId\":\"dev1\",\"temperature\":21.5}";
    int64_t before = stored(h, "dev1");
    iothub_http_resp_t r = post(h, "POST", "/devices/dev1/messages/events", H, Q_OK, body, strlen(body), 0);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(stored(h, "dev1"), before + 1);
    /* what was stored */
    char e2[256];
    iothub_plog_reader_t *rd = iothub_plog_reader_open(iothub_partition_log(h, iothub_partition_of("dev1", 4)), before, 0, e2, sizeof e2);
    iothub_plog_rec_t rec;
    assert_int_equal(iothub_plog_read(rd, &rec, 1, 1 << 20, 0, e2, sizeof e2), 1);
    iothub_msg_view_t v;
    assert_int_equal(iothub_msg_decode(rec.payload, rec.len, &v, e2, sizeof e2), 0);
    assert_string_equal(v.stamp.device_id, "dev1");
    assert_string_equal(v.msg.message_id, "m-1");
    assert_string_equal(v.msg.content_type, "application/json");
    assert_int_equal(v.msg.n_props, 1);
    assert_string_equal(v.msg.props[0].name, "temperatureAlert");
    assert_int_equal(v.msg.body_len, strlen(body));
    iothub_plog_reader_close(rd);

    /* refusals: nothing stored */
    int64_t n1 = stored(h, "dev1"), n2 = stored(h, "dev2");
    const char *const NOAUTH[] = {"Content-Type", "application/json", NULL};
    r = post(h, "POST", "/devices/dev1/messages/events", NOAUTH, Q_OK, body, strlen(body), 0);
    expect_error(&r, 401, "IotHubUnauthorizedAccess");
    assert_non_null(strstr(r.body, "Authorization header missing"));
    const char *const OTHER[] = {"Authorization", tok2, NULL};           /* dev2's token on dev1's path */
    r = post(h, "POST", "/devices/dev1/messages/events", OTHER, Q_OK, body, strlen(body), 0);
    expect_error(&r, 401, "IotHubUnauthorizedAccess");
    const char *const GHOST[] = {"Authorization", tok, NULL};
    r = post(h, "POST", "/devices/ghost/messages/events", GHOST, Q_OK, body, strlen(body), 0);
    expect_error(&r, 404, "DeviceNotFound");
    r = post(h, "POST", "/devices/dev1/messages/events", H, NULL, body, strlen(body), 0);
    expect_error(&r, 400, "InvalidProtocolVersion");
    r = post(h, "GET", "/devices/dev1/messages/events", H, Q_OK, NULL, 0, 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "POST");
    r = post(h, "POST", "/devices/dev1/twin", H, Q_OK, NULL, 0, 0);
    assert_int_equal(r.status, 404);
    r = post(h, "POST", "/devices/dev1/messages/events", H, Q_OK, body, 10, 1);     /* truncated: too large */
    expect_error(&r, 413, "MessageTooLarge");
    char *big = malloc(IOTHUB_MAX_MESSAGE_BYTES + 1);
    memset(big, 'a', IOTHUB_MAX_MESSAGE_BYTES + 1);
    r = post(h, "POST", "/devices/dev1/messages/events", H, Q_OK, big, IOTHUB_MAX_MESSAGE_BYTES + 1, 0);
    expect_error(&r, 413, "MessageTooLarge");
    const char *const BADPROP[] = {"Authorization", tok, "iothub-app-bad", "has space", NULL};
    r = post(h, "POST", "/devices/dev1/messages/events", BADPROP, Q_OK, body, strlen(body), 0);
    expect_error(&r, 400, "ArgumentInvalid");
    const char *const DUP[] = {"Authorization", tok, "iothub-messageid", "a", "IOTHUB-MESSAGEID", "b", NULL};
    r = post(h, "POST", "/devices/dev1/messages/events", DUP, Q_OK, body, strlen(body), 0);
    expect_error(&r, 400, "ArgumentInvalid");
    assert_int_equal(stored(h, "dev1"), n1);
    assert_int_equal(stored(h, "dev2"), n2);
    /* exactly 256 KiB of body is accepted */
    r = post(h, "POST", "/devices/dev1/messages/events", GHOST, Q_OK, big, IOTHUB_MAX_MESSAGE_BYTES, 0);
    assert_int_equal(r.status, 204);
    assert_int_equal(stored(h, "dev1"), n1 + 1);
    n1++;

    /* batch */
    const char *const B[] = {"Authorization", tok, "Content-Type", "application/vnd.microsoft.iothub.json; charset=utf-8", NULL};
    const char *batch = "[{\"body\":\"eyJ0IjoxfQ==\",\"properties\":{\"iothub-app-k\":\"v\",\"iothub-messageid\":\"b1\"}},"
                        "{\"body\":\"eyJ0IjoyfQ==\"}]";
    r = post(h, "POST", "/devices/dev1/messages/events", B, Q_OK, batch, strlen(batch), 0);
    assert_int_equal(r.status, 204);
    assert_int_equal(stored(h, "dev1"), n1 + 2);
    static const char *bad_batches[] = {
        "[]", "{}", "[{\"body\":1}]", "[{\"body\":\"!!\"}]", "[{\"body\":\"eA==\",\"properties\":{\"k\":\"v\"}}]",
        "[{\"body\":\"eA==\",\"properties\":{\"iothub-app-k\":1}}]", "not json", NULL};
    for (int i = 0; bad_batches[i]; i++) {
        r = post(h, "POST", "/devices/dev1/messages/events", B, Q_OK, bad_batches[i], strlen(bad_batches[i]), 0);
        if (r.status != 400) fail_msg("bad batch #%d answered %d", i, r.status);
    }
    /* a batch over 256 KiB in total */
    buf_t bb = BUF_INIT;
    char *b64 = malloc(BASE64_ENCODED_LEN(100000) + 1);
    base64_encode(big, 100000, b64);
    buf_printf(&bb, "[{\"body\":\"%s\"},{\"body\":\"%s\"},{\"body\":\"%s\"}]", b64, b64, b64);
    r = post(h, "POST", "/devices/dev1/messages/events", B, Q_OK, bb.data, bb.len, 0);
    expect_error(&r, 413, "MessageTooLarge");
    buf_free(&bb);
    free(b64);
    free(big);
    assert_int_equal(stored(h, "dev1"), n1 + 2);

    /* the HTTP SDKs' C2D poll */
    char tokb[1024];
    token_for(&d, "enviromon.azure-devices.net/devices/dev1", se, 0, tokb, sizeof tokb);
    const char *const G[] = {"Authorization", tokb, NULL};
    r = post(h, "GET", "/devices/dev1/messages/deviceBound", G, Q_OK, NULL, 0, 0);
    assert_int_equal(r.status, 204);

    /* a removed device is refused even with a valid token */
    char dir[128];
    snprintf(dir, sizeof dir, "%s/iothub", g_dir);
    assert_int_equal(iothub_registry_remove(dir, "dev1", err, sizeof err), IOTHUB_REG_OK);
    r = post(h, "POST", "/devices/dev1/messages/events", H, Q_OK, body, strlen(body), 0);
    expect_error(&r, 404, "DeviceNotFound");
    iothub_stats_t st;
    iothub_stats(h, &st);
    assert_true(st.refused >= 10);
    assert_int_equal(st.received, 4);   /* one, one of 256 KiB, a batch of two */
    iothub_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plog_append_read_reopen, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_plog_group_commit, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_plog_torn_tail, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_plog_segments_and_compaction, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_plog_reader_waits, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_plog_parse_robust, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_checkpoints, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_hub_open_and_auth, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_registry_live_view_at_once, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_registry_change_listener, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_registry_listener_clear_waits, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_d2c, mk_dir, rm_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
