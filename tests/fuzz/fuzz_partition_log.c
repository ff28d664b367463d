/* fuzz_partition_log.c — the local IoT Hub's partition log as read back from disk: segment
 * headers, records (iothub_plog_parse_*, iothub_plog_scan), the message payload inside each
 * record (iothub_msg_decode / iothub_msg_encode) and, for some inputs, the whole recovery and
 * read path on a real file (iothub_plog_open cutting a torn tail, a reader reading every
 * record): src/devhost/iothub/partlog.c, message.c.
 *
 * Input: a flags byte, then a segment image. Checksums would stop almost every mutation at the
 * first CRC, so by default the harness makes them right before parsing (flag bit 0 clear): the
 * segment header's CRC and, record by record, the payload and header CRCs; bit 1 also sets each
 * record's magic and sequence number as a writer would; bits 2 and 3 both set write the image
 * as a segment file and open the log on it (a few ms each, so not for every input).
 *
 * Invariants: parse_record returns -1, 0 or a size from 32 + the payload length up to the
 * bytes given; a scan's valid prefix is whole records in sequence from the header's base
 * sequence number; a payload that decodes re-encodes to bytes that decode to the same message,
 * and encoding is stable from then on; on a file, recovery keeps exactly the scanned prefix
 * and a reader delivers exactly those records, in order, with the same payloads. */
#include "fuzz.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devhost/iothub/message.h"
#include "devhost/iothub/partlog.h"
#include "util/buf.h"
#include "util/crc32c.h"
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

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* Make the checksums (and with writer != 0 the record magics and sequence numbers) right. */
static void fix_up(uint8_t *b, size_t n, int writer)
{
    if (n < IOTHUB_PLOG_HEADER) return;
    put32(b + 12, crc32c(crc32c(0, b, 12), b + 16, 16));
    uint64_t seq = get64(b + 16);
    for (size_t pos = IOTHUB_PLOG_HEADER; n - pos >= IOTHUB_PLOG_HEADER; seq++) {
        uint8_t *h = b + pos;
        if (writer) {
            put32(h, 0x31524D45u);   /* "EMR1" */
            put64(h + 8, seq);
        }
        uint32_t len = get32(h + 4);
        if (len > n - pos - IOTHUB_PLOG_HEADER) {
            put32(h + 28, crc32c(0, h, 28));
            break;
        }
        put32(h + 24, crc32c(0, h + IOTHUB_PLOG_HEADER, len));
        put32(h + 28, crc32c(0, h, 28));
        pos += IOTHUB_PLOG_HEADER + len;
    }
}

static int strs_equal(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same_message(const iothub_msg_view_t *a, const iothub_msg_view_t *b)
{
    FUZZ_CHECK(strs_equal(a->stamp.device_id, b->stamp.device_id) && strs_equal(a->stamp.generation_id, b->stamp.generation_id) &&
                   strs_equal(a->stamp.auth_type, b->stamp.auth_type) && a->stamp.received_ms == b->stamp.received_ms,
               "stamp changed in a round trip");
    FUZZ_CHECK(strs_equal(a->msg.message_id, b->msg.message_id) && strs_equal(a->msg.correlation_id, b->msg.correlation_id) &&
                   strs_equal(a->msg.content_type, b->msg.content_type) &&
                   strs_equal(a->msg.content_encoding, b->msg.content_encoding) && strs_equal(a->msg.user_id, b->msg.user_id),
               "system properties changed in a round trip");
    FUZZ_CHECK(a->msg.n_props == b->msg.n_props, "%zu properties, then %zu", a->msg.n_props, b->msg.n_props);
    for (size_t i = 0; i < a->msg.n_props; i++)
        FUZZ_CHECK(strcmp(a->props[i].name, b->props[i].name) == 0 && strcmp(a->props[i].value, b->props[i].value) == 0,
                   "property %zu changed", i);
    FUZZ_CHECK(a->msg.body_len == b->msg.body_len && (a->msg.body_len == 0 || memcmp(a->msg.body, b->msg.body, a->msg.body_len) == 0),
               "body changed in a round trip");
}

/* A record's payload: decode → encode → decode gives the same message; encoding is stable. */
static void check_payload(const void *p, size_t n)
{
    static iothub_msg_view_t a, b, c;   /* 4 KiB of properties each: not on the stack */
    char err[256];
    if (iothub_msg_decode(p, n, &a, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0], "decode failed without a reason");
        return;
    }
    FUZZ_CHECK(a.msg.props == a.props && a.msg.n_props <= IOTHUB_MAX_PROPS, "props");
    buf_t e1 = BUF_INIT, e2 = BUF_INIT;
    FUZZ_CHECK(iothub_msg_encode(&a.msg, &a.stamp, &e1) == 0, "decoded message does not encode");
    FUZZ_CHECK(iothub_msg_decode(e1.data, e1.len, &b, err, sizeof err) == 0, "re-encoded payload refused: %s", err);
    check_same_message(&a, &b);
    FUZZ_CHECK(iothub_msg_encode(&b.msg, &b.stamp, &e2) == 0, "second encode");
    FUZZ_CHECK(e1.len == e2.len && memcmp(e1.data, e2.data, e1.len) == 0, "encoding not stable");
    FUZZ_CHECK(iothub_msg_decode(e2.data, e2.len, &c, err, sizeof err) == 0, "third decode");
    buf_free(&e1);
    buf_free(&e2);
}

typedef struct scanned {
    int64_t base;
    int     partition;
    size_t  valid, count;
    int64_t next;
} scanned_t;

/* Pure parsing of the image; returns 1 with *s filled when the header is valid. */
static int check_image(const uint8_t *b, size_t n, scanned_t *s)
{
    iothub_plog_rec_t r;
    long k = iothub_plog_parse_record(b, n, &r);
    FUZZ_CHECK(k == -1 || k == 0 || (k >= IOTHUB_PLOG_HEADER && (size_t)k <= n && (size_t)k == IOTHUB_PLOG_HEADER + r.len),
               "parse_record returned %ld for %zu bytes", k, n);

    uint64_t base_off;
    int hdr_ok = iothub_plog_parse_segment_header(b, n, &s->base, &base_off, &s->partition) == 0;
    int scan_ok = iothub_plog_scan(b, n, &s->valid, &s->count, &s->next) == 0;
    FUZZ_CHECK(hdr_ok == scan_ok, "header %d but scan %d", hdr_ok, scan_ok);
    if (!scan_ok) {
        FUZZ_CHECK(s->valid == 0 && s->count == 0, "failed scan with a prefix");
        return 0;
    }
    FUZZ_CHECK(s->base >= 0 && s->valid >= IOTHUB_PLOG_HEADER && s->valid <= n, "valid %zu of %zu", s->valid, n);
    FUZZ_CHECK(s->next == s->base + (int64_t)s->count, "next %" PRId64 " after %zu from %" PRId64, s->next, s->count, s->base);
    /* walk the valid prefix again: whole records in sequence */
    size_t pos = IOTHUB_PLOG_HEADER;
    for (size_t i = 0; i < s->count; i++) {
        k = iothub_plog_parse_record(b + pos, s->valid - pos, &r);
        FUZZ_CHECK(k > 0 && r.seq == s->base + (int64_t)i, "record %zu of the valid prefix does not parse", i);
        FUZZ_CHECK(r.len <= IOTHUB_PLOG_MAX_PAYLOAD && (const uint8_t *)r.payload == b + pos + IOTHUB_PLOG_HEADER, "payload");
        check_payload(r.payload, r.len);
        pos += (size_t)k;
    }
    FUZZ_CHECK(pos == s->valid, "records end at %zu, the prefix at %zu", pos, s->valid);
    return 1;
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
    /* the file path only with base offset 0 (a first segment): offsets are then positions */
    if (check_image(b, n, &s) && (flags & 12) == 12 && n >= IOTHUB_PLOG_HEADER && get64(b + 24) == 0) check_file(b, n, &s);
    free(b);
    return 0;
}
