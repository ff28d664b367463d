/* test_tmpdir.c — private temporary folders for C tests (see test_tmpdir.h). */
#define _XOPEN_SOURCE 700
#include "test_tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int test_tmpdir(char *out, size_t len, const char *prefix)
{
    if ((size_t)snprintf(out, len, "/tmp/%s-XXXXXX", prefix) >= len) return -1;
    return mkdtemp(out) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : -1;
}

int test_tmpdir_remove(const char *dir)
{
    return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
