/* crc32c.h — CRC-32C (Castagnoli), the checksum of devhost's on-disk records.
 *
 * Chosen over zlib's CRC-32 for its better error detection on storage (it is what ext4,
 * iSCSI and most log-structured stores use) and because it needs no extra library. Pure
 * function, table-driven (slicing by 8), thread-safe. */
#ifndef ENVIROMON_CRC32C_H
#define ENVIROMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32C over p[0..n). Start with crc = 0; crc32c(crc32c(0, a), b) equals the CRC
 * of a followed by b. crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
