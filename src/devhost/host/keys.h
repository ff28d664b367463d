/* keys.h — the function app's keys for `devhost start --enable-auth`.
 *
 * Like `func start --enableAuth`, devhost then enforces authLevel: a `function` function needs
 * ?code= or the x-functions-key header equal to the function key (or the master key), an
 * `admin` one (and the /admin endpoints) the master key. The keys are generated once (256 random bits,
 * base64url) and kept in <data>/keys.json, created with mode 0600 (a looser mode found later is
 * tightened, with a warning); they survive restarts. Comparisons take constant time. Nothing
 * here logs a key: the caller prints the function key once, as asked. */
#ifndef ENVIROMON_DH_KEYS_H
#define ENVIROMON_DH_KEYS_H

#include <stddef.h>

#define DH_KEYS_FILE "keys.json"

typedef struct dh_keys {
    char function_key[64];   /* the "default" function key */
    char master_key[64];     /* the master (admin) key */
    int  created;            /* 1 when this call generated them */
} dh_keys_t;

/* Load <data_dir>/keys.json, or generate and store the keys when it does not exist. Returns 0,
 * or -1 with err (unreadable or malformed file: the message says to delete it to start over). */
int dh_keys_load_or_create(const char *data_dir, dh_keys_t *k, char *err, size_t errlen);

/* 1 when key equals secret (constant time in the secret's length), 0 otherwise (NULL key: 0). */
int dh_keys_match(const char *key, const char *secret);

#endif
