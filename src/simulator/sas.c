/* sas.c — device SAS tokens (see sas.h). */
#include "simulator/sas.h"

#include <openssl/crypto.h>
#include <stdio.h>

#include "devhost/iothub/sas.h"
#include "simulator/connstr.h"

int sim_sas_token(buf_t *out, const char *host, const char *device_id, const unsigned char *key,
                  size_t key_len, long long expiry)
{
    char resource[SIM_HOST_MAX + SIM_DEVICE_ID_MAX + 16], sr[IOTHUB_SAS_MAX_SR + 1], tok[IOTHUB_SAS_MAX_TOKEN];
    int n = snprintf(resource, sizeof resource, "%s/devices/%s", host, device_id);
    if (n < 0 || (size_t)n >= sizeof resource) return -1;
    if (iothub_sas_url_encode(resource, 1, sr, sizeof sr) < 0) return -1;
    if (iothub_sas_make(sr, key, key_len, expiry, NULL, tok, sizeof tok) != 0) return -1;
    int rc = buf_puts(out, tok);
    OPENSSL_cleanse(tok, sizeof tok);
    return rc;
}
