/* fuzz_partition_file.c — a partition's segment file as the local IoT Hub recovers and reads
 * it after a crash or a corruption: iothub_plog_open scanning the last segment and cutting a
 * torn tail, then a reader delivering every record (src/devhost/iothub/partlog.c). Each input
 * costs a file, a log with its committer thread and a reader (milliseconds), so the pure
 * parsing of the same images has its own target, fuzz_partition_log.c.
 *
 * Input: a flags byte, then a segment image, its checksums made right by the harness unless
 * flag bit 0 is set (bit 1 also sets record magics and sequence numbers), as in
 * fuzz_partition_log.c. Images with a valid header and base offset 0 (a first segment) are
 * written as the only segment of a partition folder (on /dev/shm when there is one).
 *
 * Invariants: the image's pure parsing holds (fuzz_plog.h); the log opens; recovery keeps
 * exactly the scanned prefix (file size, first and next sequence numbers); a reader delivers
 * exactly those records, in order, at their offsets, with their payloads. */
#include "fuzz_plog.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

static char g_dir[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/enviromon-fuzz-plog-%d", base, (int)getpid());
    return 0;
}

static void remove_dir(void)
{
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') { snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name); unlink(p); }
        closedir(d);
    }
    rmdir(g_dir);
}

/* The image as the only segment of a partition: recovery keeps the scanned prefix and a reader
 * delivers exactly its records. */
static void check_file(const uint8_t *b, size_t n, const scanned_t *s)
{
    remove_dir();
    if (mkdir(g_dir, 0700) != 0) abort();
    char path[600];
    snprintf(path, sizeof path, "%s/%020" PRId64 ".seg", g_dir, s->base);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, b, n) != (ssize_t)n || close(fd) != 0) abort();

    iothub_plog_opts_t o = {.dir = g_dir, .partition = s->partition};
    char err[512];
    iothub_plog_t *pl = iothub_plog_open(&o, err, sizeof err);
    FUZZ_CHECK(pl, "a segment with a valid header does not open: %s", err);
    iothub_plog_info_t info;
    iothub_plog_info(pl, &info);
    FUZZ_CHECK(info.first_seq == s->base && info.next_seq == s->next, "recovered %" PRId64 "..%" PRId64 ", scanned %" PRId64 "..%" PRId64,
               info.first_seq, info.next_seq, s->base, s->next);
    struct stat st;
    FUZZ_CHECK(stat(path, &st) == 0 && (size_t)st.st_size == s->valid, "file cut to %lld, valid prefix %zu",
               (long long)st.st_size, s->valid);

    iothub_plog_reader_t *r = iothub_plog_reader_open(pl, s->base, 0, err, sizeof err);
    FUZZ_CHECK(r, "reader: %s", err);
    size_t got = 0, pos = IOTHUB_PLOG_HEADER;
    iothub_plog_rec_t recs[16];
    for (;;) {
        int k = iothub_plog_read(r, recs, 16, 1u << 20, 0, err, sizeof err);
        FUZZ_CHECK(k >= 0, "read failed on a recovered log: %s", err);
        if (k == 0) break;
        for (int i = 0; i < k; i++, got++) {
            iothub_plog_rec_t want;
            long w = iothub_plog_parse_record(b + pos, s->valid - pos, &want);
            FUZZ_CHECK(w > 0, "reader delivered more than the scan found");
            FUZZ_CHECK(recs[i].seq == want.seq && recs[i].len == want.len && recs[i].enqueued_ms == want.enqueued_ms &&
                           (want.len == 0 || memcmp(recs[i].payload, want.payload, want.len) == 0),
                       "record %zu read differs from the file", got);
            FUZZ_CHECK(recs[i].offset == pos, "offset %" PRIu64 ", want %zu (base offset 0)", recs[i].offset, pos);
            pos += (size_t)w;
        }
    }
    FUZZ_CHECK(got == s->count, "read %zu records, scanned %zu", got, s->count);
    iothub_plog_reader_close(r);
    iothub_plog_close(pl);
    remove_dir();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    uint8_t *b = fuzz_memdup(data + 1, size - 1);
    size_t n = size - 1;
    if (!(flags & 1)) fix_up(b, n, flags & 2);
    scanned_t s;
    if (check_image(b, n, &s) && get64(b + 24) == 0) check_file(b, n, &s);
    free(b);
    return 0;
}
