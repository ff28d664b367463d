/* partlog.h — one partition's durable, append-only event log.
 *
 * Owns the on-disk log of one partition of the local IoT Hub (its Event Hub-compatible
 * stream): segment files `<dir>/<base sequence number, 20 digits>.seg`, each a 32-byte header
 * then records; group commit; recovery; readers; compaction.
 *
 * Durability: appends are queued; one committer thread per partition takes everything queued,
 * assigns sequence numbers, offsets and the enqueued time, writes it with one pwrite and makes
 * it durable with one fdatasync (group commit: while one fsync runs, the next group gathers).
 * Only then is each append's callback told "durable", and only then can readers see the
 * records: no event is ever delivered that a crash could take back (its sequence number would
 * otherwise be reused by a different event, and a consumer that skips replays by sequence
 * number would drop it). A failed write or fsync truncates the file back and fails the whole
 * group; nothing of it is acknowledged or delivered.
 *
 * Recovery (open): the last segment is scanned; the first record that is incomplete, fails its
 * checksums or breaks the sequence is a torn tail — it and everything after it is cut (never
 * acknowledged: acknowledged records were fsynced first) and the file is fsynced, so records
 * that survived only in the page cache (a SIGKILL between write and fsync) become durable before
 * anyone reads them.
 *
 * Record (little-endian): u32 magic "EMR1", u32 payload length, u64 sequence number, i64
 * enqueued time (epoch ms), u32 CRC-32C of the payload, u32 CRC-32C of the preceding 28 header
 * bytes; then the payload (message.h). Segment header: "EMS1", u32 version 1, u32 partition,
 * u32 CRC-32C of the other 28 bytes, u64 base sequence number, u64 base offset. A record's
 * offset is its segment's base offset plus its position in the file; a new segment's base
 * offset is the previous segment's base offset plus its size, so offsets only grow.
 *
 * Compaction deletes whole segments (never the active one) that lie entirely below a sequence
 * number every consumer has passed (the caller computes it from the checkpoints). */
#ifndef ENVIROMON_IOTHUB_PARTLOG_H
#define ENVIROMON_IOTHUB_PARTLOG_H

#include <stddef.h>
#include <stdint.h>

#define IOTHUB_PLOG_HEADER      32
#define IOTHUB_PLOG_MAX_PAYLOAD (1u << 20)   /* larger lengths are corruption */

typedef struct iothub_plog iothub_plog_t;
typedef struct iothub_plog_reader iothub_plog_reader_t;

typedef struct iothub_plog_opts {
    const char *dir;              /* the partition's folder (created 0700 if missing) */
    int         partition;
    size_t      segment_bytes;    /* start a new segment beyond this size; 0 = 16 MiB */
    size_t      max_pending_bytes;/* queued bytes beyond which appends are refused; 0 = 64 MiB */
} iothub_plog_opts_t;

/* One record as read (payload points into the reader's buffer or the parsed bytes). */
typedef struct iothub_plog_rec {
    int64_t     seq;
    uint64_t    offset;
    int64_t     enqueued_ms;
    const void *payload;
    uint32_t    len;
} iothub_plog_rec_t;

typedef struct iothub_plog_result {
    int         ok;               /* 1: durable; 0: not written (error says why) */
    int64_t     first_seq;        /* of the append's first record */
    uint64_t    first_offset;
    int64_t     enqueued_ms;
    const char *error;            /* when !ok; valid during the callback only */
} iothub_plog_result_t;

/* Called exactly once per accepted append, from the committer thread, outside any lock. It
 * must not block for long (signal a waiter, resume a connection). */
typedef void (*iothub_plog_done_fn)(void *arg, const iothub_plog_result_t *res);

typedef struct iothub_plog_payload {
    const void *data;
    size_t      len;
} iothub_plog_payload_t;

typedef struct iothub_plog_info {
    int64_t  first_seq;           /* first retained record */
    int64_t  next_seq;            /* one past the last durable record */
    int64_t  last_enqueued_ms;    /* of the last durable record, 0 when none */
    size_t   segments;
    uint64_t disk_bytes;
    uint64_t commits;             /* fsync'd groups since open */
    uint64_t appended;            /* records made durable since open */
} iothub_plog_info_t;

/* Open (creating or recovering) the log and start its committer. Returns NULL with a message
 * naming the file on error (a corrupt segment header, an unreadable folder). */
iothub_plog_t *iothub_plog_open(const iothub_plog_opts_t *o, char *err, size_t errlen);

/* Queue n >= 1 payloads (copied) as consecutive records committed in one group. Returns 0 when
 * queued (done will be called), or -1 when refused without a callback: *why is "throttled"
 * (too much queued), "stopped" or "too large" (a payload over IOTHUB_PLOG_MAX_PAYLOAD) or
 * "out of memory". */
int iothub_plog_append(iothub_plog_t *pl, const iothub_plog_payload_t *p, size_t n,
                       iothub_plog_done_fn done, void *arg, const char **why);

/* Delete the segments that hold only records below keep_from_seq (never the active one).
 * Returns the number of segments deleted. */
int iothub_plog_compact(iothub_plog_t *pl, int64_t keep_from_seq);

void iothub_plog_info(iothub_plog_t *pl, iothub_plog_info_t *out);

/* Wake every reader blocked in iothub_plog_read (they return 0), e.g. to stop. */
void iothub_plog_wake_readers(iothub_plog_t *pl);

/* Commit what is queued (callbacks fire), stop the committer, close. Readers must be closed
 * first. */
void iothub_plog_close(iothub_plog_t *pl);

/* A reader positioned at from_seq (clamped to the retained range: below it starts at the first
 * retained record, with a warning). offset_hint, when it is that record's offset, saves a scan
 * (0 = none). Returns NULL with err on failure. */
iothub_plog_reader_t *iothub_plog_reader_open(iothub_plog_t *pl, int64_t from_seq, uint64_t offset_hint,
                                              char *err, size_t errlen);

/* Read up to max durable records (and about max_bytes of payload, at least one record) from
 * the reader's position, waiting up to timeout_ms for the first one. Records stay valid until
 * the next call. Returns the count (0: none arrived in time, or woken), or -1 on a read error or
 * corruption (err set; the reader skips past an unreadable segment on the next call). */
int iothub_plog_read(iothub_plog_reader_t *r, iothub_plog_rec_t *out, size_t max, size_t max_bytes,
                     int timeout_ms, char *err, size_t errlen);

/* Sequence number the reader reads next. */
int64_t iothub_plog_reader_next(const iothub_plog_reader_t *r);

void iothub_plog_reader_close(iothub_plog_reader_t *r);

/* ---- pure parsing (recovery, readers and the fuzz target use these) ---------------------- */

/* Parse one record at p[0..n). Returns its total size (header + payload) with *out filled (its
 * payload pointing into p; offset left 0), 0 when p holds only a prefix of a record that may
 * still be valid, or -1 when the bytes cannot be a record (bad magic, length, checksum). */
long iothub_plog_parse_record(const void *p, size_t n, iothub_plog_rec_t *out);

/* Parse a segment header. Returns 0 with base_seq/base_offset/partition, or -1. */
int iothub_plog_parse_segment_header(const void *p, size_t n, int64_t *base_seq, uint64_t *base_offset,
                                     int *partition);

/* Scan a whole segment image: header, then records in sequence. *valid_len receives the length
 * of the valid prefix (the cut point), *count the records in it, *next_seq the sequence number
 * after them. Returns 0, or -1 when the header itself is invalid. */
int iothub_plog_scan(const void *p, size_t n, size_t *valid_len, size_t *count, int64_t *next_seq);

#endif
