/* hmac.h — HMAC-SHA256, the one primitive behind Shared Key (Table Storage) and HS256
 * (SignalR tokens).
 *
 * OpenSSL 3's one-shot HMAC() looks its algorithm up in the provider registry on every call,
 * which cost more than everything else Negotiate does. This fetches SHA-256 once per
 * process and builds HMAC (RFC 2104) on it. Thread-safe. */
#ifndef ENVIROMON_HMAC_H
#define ENVIROMON_HMAC_H

#include <stddef.h>

#define HMAC_SHA256_LEN 32

/* out receives the 32-byte MAC of msg under key. Returns 0, or -1 if OpenSSL failed. */
int hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                unsigned char out[HMAC_SHA256_LEN]);

#endif
