/* test_tmpdir.h — private temporary folders for C tests (linked into every test binary). */
#ifndef ENVIROMON_TEST_TMPDIR_H
#define ENVIROMON_TEST_TMPDIR_H

#include <stddef.h>

/* Create a fresh folder /tmp/<prefix>-XXXXXX (mode 0700) and write its path into out.
 * Returns 0, or -1 when it cannot be created. */
int test_tmpdir(char *out, size_t len, const char *prefix);

/* Remove dir and everything below it (without following symbolic links). Returns 0 or -1. */
int test_tmpdir_remove(const char *dir);

#endif
