/* test_azurite.h — a Table client on the Azurite that tests/run.sh starts, and a fresh table
 * for one test binary (linked into every C test binary). */
#ifndef ENVIROMON_TEST_AZURITE_H
#define ENVIROMON_TEST_AZURITE_H

#include <stddef.h>

#include "azure/table.h"

/* A client for TEST_STORAGE_CONNECTION (10 s timeout, 2 retries) and a new table named
 * <prefix><pid><4 hex digits>, its name written into tname. NULL, with the reason on stderr,
 * when the variable is not set or Azurite refuses. */
table_client_t *test_azurite_table(const char *prefix, char *tname, size_t len);

/* Undo test_azurite_table: delete the table (best effort) and free the client; tc may be NULL. */
void test_azurite_drop(table_client_t *tc, const char *tname);

#endif
