/* hmac.c — HMAC-SHA256 on a SHA-256 fetched once (see hmac.h). */
#include "util/hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#define SHA256_BLOCK 64

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static EVP_MD *g_sha256; /* fetched once, kept for the life of the process */

static void fetch_sha256(void) { g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL); }

/* H(pad || a || b) into out. */
static int digest3(EVP_MD_CTX *ctx, const unsigned char *pad, const void *a, size_t alen,
                   unsigned char out[HMAC_SHA256_LEN])
{
    unsigned int n = 0;
    return (EVP_DigestInit_ex(ctx, g_sha256, NULL) == 1 &&
            EVP_DigestUpdate(ctx, pad, SHA256_BLOCK) == 1 &&
            (alen == 0 || EVP_DigestUpdate(ctx, a, alen) == 1) &&
            EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == HMAC_SHA256_LEN) ? 0 : -1;
}

int hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                unsigned char out[HMAC_SHA256_LEN])
{
    if (pthread_once(&g_once, fetch_sha256) != 0 || !g_sha256) return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return -1;
    unsigned char k[SHA256_BLOCK] = {0};
    int rc = 0;
    if (key_len > SHA256_BLOCK) { /* long keys are hashed first (RFC 2104 §2) */
        unsigned int n = 0;
        rc = (EVP_DigestInit_ex(ctx, g_sha256, NULL) == 1 && EVP_DigestUpdate(ctx, key, key_len) == 1 &&
              EVP_DigestFinal_ex(ctx, k, &n) == 1) ? 0 : -1;
    } else if (key_len) {
        memcpy(k, key, key_len);
    }
    unsigned char ipad[SHA256_BLOCK], opad[SHA256_BLOCK], inner[HMAC_SHA256_LEN];
    for (int i = 0; i < SHA256_BLOCK; i++) {
        ipad[i] = (unsigned char)(k[i] ^ 0x36);
        opad[i] = (unsigned char)(k[i] ^ 0x5c);
    }
    if (rc == 0) rc = digest3(ctx, ipad, msg, msg_len, inner);
    if (rc == 0) rc = digest3(ctx, opad, inner, sizeof inner, out);
    EVP_MD_CTX_free(ctx);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(ipad, sizeof ipad);
    OPENSSL_cleanse(opad, sizeof opad);
    return rc;
}
