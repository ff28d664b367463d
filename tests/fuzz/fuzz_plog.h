/* fuzz_plog.h — what the partition-log targets share: making an image's checksums right,
 * and checking an image by pure parsing (segment header, records in sequence, each record's
 * message payload through decode → encode → decode). Used by fuzz_partition_log.c (the image
 * alone) and fuzz_partition_file.c (the image as a segment file, recovered and read). */
#ifndef ENVIROMON_FUZZ_PLOG_H
#define ENVIROMON_FUZZ_PLOG_H

#include "fuzz.h"

#include <inttypes.h>

#include "devhost/iothub/message.h"
#include "devhost/iothub/partlog.h"
#include "util/buf.h"
#include "util/crc32c.h"

static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static inline void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* Make the checksums (and with writer != 0 the record magics and sequence numbers) right. */
static inline void fix_up(uint8_t *b, size_t n, int writer)
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

static inline int strs_equal(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static inline void check_same_message(const iothub_msg_view_t *a, const iothub_msg_view_t *b)
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
static inline void check_payload(const void *p, size_t n)
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
static inline int check_image(const uint8_t *b, size_t n, scanned_t *s)
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

#endif
