/* checkpoint.h — where each consumer group has got to in each partition.
 *
 * Owns the checkpoint files `<root>/<consumer group, %-encoded>/<partition>.ckpt` and the
 * "every consumer has passed it" computation that compaction uses. A checkpoint names the next
 * sequence number to deliver (and that record's offset, a hint that saves a scan) and the hub
 * instance it belongs to: a log recreated from scratch restarts its sequence numbers, so a
 * checkpoint from an earlier instance is ignored rather than skipping new events.
 *
 * A file holds two 64-byte slots, written alternately with a generation number and a CRC-32C;
 * the newest valid slot wins, so a torn write falls back to the previous checkpoint. Writes are
 * not fsynced (a checkpoint lost to a power cut only re-delivers events, which the consumer
 * skips as replays); iothub_ckpt_min fsyncs every checkpoint before compaction relies on it, so
 * no segment is deleted on the strength of a checkpoint that could still be lost. */
#ifndef ENVIROMON_IOTHUB_CHECKPOINT_H
#define ENVIROMON_IOTHUB_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#define IOTHUB_CKPT_FILE_BYTES 128
#define IOTHUB_INSTANCE_LEN 16        /* hex characters of a hub instance id */

typedef struct iothub_ckpt_pos {
    int64_t  next_seq;      /* first sequence number not yet processed */
    uint64_t next_offset;   /* its offset when known, else 0 */
} iothub_ckpt_pos_t;

typedef struct iothub_ckpt iothub_ckpt_t;

/* Open (creating) the checkpoint of group/partition under root. *pos receives the stored
 * position, or {0, 0} ("from the start") when there is none or it belongs to another instance.
 * A new file is written at once, so compaction knows this consumer exists. */
iothub_ckpt_t *iothub_ckpt_open(const char *root, const char *group, int partition, const char *instance,
                                iothub_ckpt_pos_t *pos, char *err, size_t errlen);

/* Record a new position. Returns 0 or -1 (err set). */
int iothub_ckpt_write(iothub_ckpt_t *c, const iothub_ckpt_pos_t *pos, char *err, size_t errlen);

void iothub_ckpt_close(iothub_ckpt_t *c);

/* The smallest next_seq over every consumer group's checkpoint of partition under root (after
 * fsyncing them). Returns 1 with *min_next set, 0 when no consumer group exists (nothing may
 * be compacted on anyone's behalf... nor needs keeping: the caller decides), or -1 when a
 * group's checkpoint is missing or unreadable (keep everything). */
int iothub_ckpt_min(const char *root, int partition, const char *instance, int64_t *min_next);

/* Folder name for a consumer group: bytes outside A-Z a-z 0-9 . _ - become %XX. Returns 0,
 * or -1 when group is empty or the result does not fit. */
int iothub_ckpt_group_dir(const char *group, char *out, size_t outlen);

/* Decode a checkpoint file's bytes (any bytes: a fuzz target). Returns 0 with the newest valid
 * slot of this instance in *out, or -1 when no slot is valid. */
int iothub_ckpt_decode(const void *bytes, size_t len, const char *instance, iothub_ckpt_pos_t *out);

#endif
