/* Integration test: the local IoT Hub loses no acknowledged message when its process is
 * SIGKILLed at a random moment, and cuts torn tails on restart.
 *
 * Each round forks a child that opens the hub and sends from 8 device threads as fast as the
 * disk allows (up to 32 sends in flight each, so group commit is exercised); every
 * acknowledgement (the callback that means "durable") is reported to the parent through a pipe.
 * The parent kills the child with SIGKILL after a random delay, sometimes also appends garbage
 * to a partition's last segment (a torn write), reopens the hub and checks, from the logs
 * alone: every acknowledged message is there, none is there twice, sequence numbers are
 * contiguous (the reader checks), and sending resumes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devhost/iothub/hub.h"
#include "devhost/iothub/message.h"
#include "devhost/iothub/partlog.h"

#include "test_tmpdir.h"

#define DEVICES 8
#define ROUNDS 6
#define WINDOW 32
#define MAX_MSGS (1 << 20)

static char g_dir[64];
static iothub_auth_t g_auth[DEVICES];
static uint32_t g_next[DEVICES];     /* first counter each device sends in the next round */
static unsigned char *g_acked[DEVICES];

/* ---- the child ------------------------------------------------------------------------------ */

static int g_pipe = -1;
static pthread_mutex_t g_pipe_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct sender {
    iothub_t       *h;
    int             dev;
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             inflight;
} sender_t;

typedef struct sent { sender_t *s; uint32_t counter; } sent_t;

static void on_ack(void *arg, iothub_status_t st, const char *error)
{
    (void)error;
    sent_t *m = arg;
    if (st == IOTHUB_OK) {
        uint32_t rec[2] = {(uint32_t)m->s->dev, m->counter};
        pthread_mutex_lock(&g_pipe_lock);
        ssize_t w = write(g_pipe, rec, sizeof rec);
        pthread_mutex_unlock(&g_pipe_lock);
        if (w != (ssize_t)sizeof rec) _exit(3);
    }
    pthread_mutex_lock(&m->s->lock);
    m->s->inflight--;
    pthread_cond_signal(&m->s->cond);
    pthread_mutex_unlock(&m->s->lock);
    free(m);
}

static void *sender_main(void *arg)
{
    sender_t *s = arg;
    char err[256];
    for (uint32_t c = g_next[s->dev];; c++) {
        pthread_mutex_lock(&s->lock);
        while (s->inflight >= WINDOW) pthread_cond_wait(&s->cond, &s->lock);
        s->inflight++;
        pthread_mutex_unlock(&s->lock);
        char body[96];
        int bl = snprintf(body, sizeof body, "{\"device\":%d,\"counter\":%u,\"pad\":\"%0*d\"}", s->dev, c,
                          (int)(c % 40), 0);
        iothub_msg_t m = {NULL, NULL, NULL, NULL, NULL, NULL, 0, body, (size_t)bl};
        sent_t *x = malloc(sizeof *x);
        x->s = s;
        x->counter = c;
        iothub_status_t st = iothub_send(s->h, &g_auth[s->dev], &m, 1, on_ack, x, err, sizeof err);
        if (st != IOTHUB_OK) {
            /* throttled: back off a little; anything else is a failure of the test */
            if (st != IOTHUB_E_THROTTLED) _exit(4);
            free(x);
            pthread_mutex_lock(&s->lock);
            s->inflight--;
            pthread_mutex_unlock(&s->lock);
            usleep(1000);
            c--;
        }
    }
    return NULL;
}

static void child_main(void)
{
    char err[512];
    iothub_opts_t o = {g_dir, "enviromon", 4, 64 * 1024, 60000};   /* small segments: rolls under load */
    iothub_t *h = iothub_open(&o, err, sizeof err);
    if (!h) { fprintf(stderr, "child: %s\n", err); _exit(2); }
    static sender_t s[DEVICES];
    pthread_t th[DEVICES];
    for (int i = 0; i < DEVICES; i++) {
        s[i].h = h;
        s[i].dev = i;
        pthread_mutex_init(&s[i].lock, NULL);
        pthread_cond_init(&s[i].cond, NULL);
        pthread_create(&th[i], NULL, sender_main, &s[i]);
    }
    for (;;) pause();   /* until SIGKILL */
}

/* ---- the parent ----------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    if (test_tmpdir(g_dir, sizeof g_dir, "iothub-crash") != 0) return -1;
    char dir[128], err[512];
    snprintf(dir, sizeof dir, "%s/iothub", g_dir);
    for (int i = 0; i < DEVICES; i++) {
        char id[32];
        snprintf(id, sizeof id, "crash-%d", i);
        iothub_device_t d;
        if (iothub_registry_add(dir, id, &d, err, sizeof err) != IOTHUB_REG_OK) return -1;
        snprintf(g_auth[i].device_id, sizeof g_auth[i].device_id, "%s", id);
        snprintf(g_auth[i].generation_id, sizeof g_auth[i].generation_id, "%s", d.generation_id);
        g_acked[i] = calloc(MAX_MSGS, 1);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < DEVICES; i++) free(g_acked[i]);
    return test_tmpdir_remove(g_dir);
}

/* Append garbage to the last segment of partition p: what a write torn by a power cut leaves. */
static void tear(int p)
{
    char dir[256], best[300] = "";
    snprintf(dir, sizeof dir, "%s/iothub/partitions/%d", g_dir, p);
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0) snprintf(best, sizeof best, "%s", e->d_name);
    closedir(d);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, best);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    unsigned char junk[300];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)rand();
    /* sometimes a plausible record header, so the cut must rely on the checksums */
    if (rand() % 2) memcpy(junk, "EMR1", 4);
    size_t n = 1 + (size_t)(rand() % (int)sizeof junk);
    assert_int_equal(write(fd, junk, n), (ssize_t)n);
    close(fd);
}

typedef struct tally { uint64_t acked, present, dup, missing; } tally_t;

static void verify(tally_t *t)
{
    char err[512];
    iothub_opts_t o = {g_dir, "enviromon", 4, 64 * 1024, 60000};
    iothub_t *h = iothub_open(&o, err, sizeof err);
    if (!h) fail_msg("reopen: %s", err);
    static unsigned char *seen[DEVICES];
    for (int i = 0; i < DEVICES; i++) {
        if (!seen[i]) seen[i] = malloc(MAX_MSGS);
        memset(seen[i], 0, MAX_MSGS);
    }
    uint32_t max[DEVICES] = {0};
    for (int p = 0; p < 4; p++) {
        iothub_plog_reader_t *r = iothub_plog_reader_open(iothub_partition_log(h, p), 0, 0, err, sizeof err);
        assert_non_null(r);
        iothub_plog_rec_t recs[256];
        int n;
        int64_t expect = 0;
        while ((n = iothub_plog_read(r, recs, 256, 1 << 22, 0, err, sizeof err)) > 0) {
            for (int k = 0; k < n; k++) {
                assert_int_equal(recs[k].seq, expect++);
                iothub_msg_view_t v;
                if (iothub_msg_decode(recs[k].payload, recs[k].len, &v, err, sizeof err) != 0) fail_msg("decode: %s", err);
                int dev;
                unsigned c;
                char body[128];
                snprintf(body, sizeof body, "%.*s", (int)v.msg.body_len, (const char *)v.msg.body);
                assert_int_equal(sscanf(body, "{\"device\":%d,\"counter\":%u", &dev, &c), 2);
                assert_true(dev >= 0 && dev < DEVICES && c < MAX_MSGS);
                assert_int_equal(iothub_partition_of(v.stamp.device_id, 4), p);
                if (seen[dev][c]) t->dup++;
                seen[dev][c] = 1;
                t->present++;
                if (c + 1 > max[dev]) max[dev] = c + 1;
            }
        }
        if (n < 0) fail_msg("read partition %d: %s", p, err);
        iothub_plog_reader_close(r);
    }
    for (int d = 0; d < DEVICES; d++)
        for (uint32_t c = 0; c < MAX_MSGS; c++)
            if (g_acked[d][c] && !seen[d][c]) t->missing++;
    for (int d = 0; d < DEVICES; d++) g_next[d] = max[d] > g_next[d] ? max[d] : g_next[d];
    iothub_close(h);
}

static void test_sigkill_loses_nothing_acknowledged(void **state)
{
    (void)state;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    tally_t total = {0};
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            g_pipe = fds[1];
            child_main();
        }
        close(fds[1]);
        /* read acknowledgements as they come (a full pipe would stall the child); once the first
         * one arrived (start-up and recovery are over), SIGKILL at a random moment while writes
         * are in flight */
        uint64_t acks = 0;
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long kill_at_ms = 30000, elapsed = 0;   /* until the first ack: a generous start-up limit */
        uint32_t rec[2];
        for (int killed = 0;;) {
            if (!killed && elapsed >= kill_at_ms) {
                assert_int_equal(kill(pid, SIGKILL), 0);
                killed = 1;
            }
            if (acks == 1 && kill_at_ms == 30000) kill_at_ms = elapsed + 50 + rand() % 400;
            struct pollfd pf = {fds[0], POLLIN, 0};
            int pr = poll(&pf, 1, killed ? 1000 : (int)(kill_at_ms - elapsed));
            if (pr > 0) {
                ssize_t r = read(fds[0], rec, sizeof rec);
                if (r == 0) break;   /* the child is gone and everything it wrote is read */
                assert_int_equal(r, (ssize_t)sizeof rec);
                assert_true(rec[0] < DEVICES && rec[1] < MAX_MSGS);
                g_acked[rec[0]][rec[1]] = 1;
                acks++;
            }
            clock_gettime(CLOCK_MONOTONIC, &now);
            elapsed = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status)) fail_msg("child exited on its own (status %d) before the kill", WEXITSTATUS(status));
        close(fds[0]);
        if (round % 2 == 1) tear(rand() % 4);
        tally_t t = {0};
        verify(&t);
        print_message("round %d: %llu acknowledged, log holds %llu (all rounds), %llu missing, %llu duplicated\n", round,
                      (unsigned long long)acks, (unsigned long long)t.present, (unsigned long long)t.missing,
                      (unsigned long long)t.dup);
        assert_true(acks > 0);   /* the child was under load when it died */
        assert_int_equal(t.missing, 0);
        assert_int_equal(t.dup, 0);
        total.acked += acks;
    }
    assert_true(total.acked > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_loses_nothing_acknowledged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
