/* sas.h — the SAS token a simulated device presents, minted from its device key.
 *
 * Owns the token devices send over HTTP (Authorization header) and MQTT (password):
 *   SharedAccessSignature sr={enc(host/devices/id)}&sig={enc(base64(HMAC-SHA256(key, sr + "\n" + se)))}&se={expiry}
 * exactly as Microsoft's Node SDK makes it (azure-iot-common SharedAccessSignature.create over
 * encodeUriComponentStrict(host + '/devices/' + deviceId), no skn for device keys), so that the
 * simulator's tokens are byte-identical to the SDK's (tests/js/simulator_sas.test.mjs). The
 * encoding and signing are the local IoT Hub's own (devhost/iothub/sas.h), the same code that
 * checks tokens. */
#ifndef ENVIROMON_SIM_SAS_H
#define ENVIROMON_SIM_SAS_H

#include <stddef.h>

#include "util/buf.h"

/* Append the token for device_id on hub host, valid until expiry (Unix seconds), to out.
 * Returns 0, or -1 (too long, out of memory, OpenSSL failure). */
int sim_sas_token(buf_t *out, const char *host, const char *device_id, const unsigned char *key,
                  size_t key_len, long long expiry);

#endif
