/* sas.h — IoT Hub SAS tokens for a device, minted with the device key.
 *
 * Owns the token format devices present over HTTP (Authorization header) and MQTT (password):
 *   SharedAccessSignature sr={enc(host/devices/id)}&sig={enc(base64(HMAC-SHA256(key, sr + "\n" + se)))}&se={expiry}
 * exactly as Microsoft's Node SDK makes it (azure-iot-common SharedAccessSignature.create over
 * encodeUriComponentStrict(host + '/devices/' + deviceId)): uppercase percent-encoding, the HMAC
 * computed over the encoded sr, no skn for device keys. Tests cross-check byte for byte. */
#ifndef ENVIROMON_SIM_SAS_H
#define ENVIROMON_SIM_SAS_H

#include <stddef.h>

#include "util/buf.h"

/* Append s percent-encoded exactly as the Node SDK's encodeUriComponentStrict (JavaScript's
 * encodeURIComponent, then !'()* escaped too): every byte but A-Z a-z 0-9 - _ . ~ becomes %XX
 * in uppercase hex — except '*', which that function writes as "%2a" (it formats the code
 * with toString(16)). The hub HMACs sr as sent, so any spelling verifies; this one makes our
 * tokens byte-identical to the SDK's. */
int sim_pct_encode(buf_t *b, const char *s);

/* Append the token for device_id on hub host, valid until expiry (Unix seconds), to out.
 * Returns 0, or -1 (out of memory, OpenSSL failure). */
int sim_sas_token(buf_t *out, const char *host, const char *device_id, const unsigned char *key,
                  size_t key_len, long long expiry);

#endif
