/* fsutil.h — the few durable-file operations the local IoT Hub needs.
 *
 * Owns "create the folder", "replace a file atomically and durably" (temporary file, fsync,
 * rename, fsync of the folder: after a crash the old or the new content is there, never a
 * mix or an empty file) and "read a whole small file". Errors carry the path and strerror. */
#ifndef ENVIROMON_IOTHUB_FSUTIL_H
#define ENVIROMON_IOTHUB_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p with mode for the folders it creates. Returns 0 or -1 (err set). */
int iothub_fs_mkdirs(const char *path, mode_t mode, char *err, size_t errlen);

/* fsync a folder (so a rename or a new file in it survives a crash). Returns 0 or -1. */
int iothub_fs_sync_dir(const char *dir, char *err, size_t errlen);

/* Replace path with data[0..len) atomically and durably; the file gets mode. Returns 0 or -1. */
int iothub_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                           char *err, size_t errlen);

/* Read a whole file (at most max bytes) into a malloc'd NUL-terminated buffer; st (may be
 * NULL) receives the fstat of the file read. Returns 0, 1 when the file does not exist (*out
 * NULL), or -1 (err set). */
struct stat;
int iothub_fs_read(const char *path, size_t max, char **out, size_t *len, struct stat *st,
                   char *err, size_t errlen);

/* write(2) all of p[0..n) (retrying short writes and EINTR). Returns 0 or -1 (errno set). */
int iothub_fs_write_all(int fd, const void *p, size_t n);

#endif
