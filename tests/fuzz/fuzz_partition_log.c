/* fuzz_partition_log.c — a partition-log segment image of the local IoT Hub, parsed: the
 * segment header, records (iothub_plog_parse_*, iothub_plog_scan) and the message payload
 * inside each record (iothub_msg_decode / iothub_msg_encode): src/devhost/iothub/partlog.c,
 * message.c. fuzz_partition_file.c runs the same images through recovery and a reader on disk.
 *
 * Input: a flags byte, then a segment image. Checksums would stop almost every mutation at the
 * first CRC, so by default the harness makes them right before parsing (flag bit 0 clear): the
 * segment header's CRC and, record by record, the payload and header CRCs; bit 1 also sets each
 * record's magic and sequence number as a writer would.
 *
 * Invariants: parse_record returns -1, 0 or a size from 32 + the payload length up to the
 * bytes given; a scan's valid prefix is whole records in sequence from the header's base
 * sequence number; a payload that decodes re-encodes to bytes that decode to the same message,
 * and encoding is stable from then on. */
#include "fuzz_plog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    uint8_t *b = fuzz_memdup(data + 1, size - 1);
    size_t n = size - 1;
    if (!(flags & 1)) fix_up(b, n, flags & 2);
    scanned_t s;
    (void)check_image(b, n, &s);
    free(b);
    return 0;
}
