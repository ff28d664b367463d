/* connstr.h — IoT Hub device connection strings.
 *
 * Owns the one format a person pastes from the Azure portal or from `devhost device add`:
 *   HostName=<hub>.azure-devices.net;DeviceId=<id>;SharedAccessKey=<base64>[;GatewayHostName=<host[:port]>]
 * Parsed as Microsoft's SDKs parse it: split on ';', each part split at its FIRST '=' (a base64
 * key ends in '='), empty parts ignored, the last of a repeated key wins, key names
 * case-sensitive. HostName, DeviceId and SharedAccessKey are required; x509, ModuleId and a
 * ready-made SharedAccessSignature are refused (the simulator mints and renews its own tokens
 * from a device key). Error messages name the problem but never quote the key. */
#ifndef ENVIROMON_SIM_CONNSTR_H
#define ENVIROMON_SIM_CONNSTR_H

#include <stddef.h>

#define SIM_HOST_MAX      255   /* DNS name limit */
#define SIM_DEVICE_ID_MAX 128   /* IoT Hub's device id limit */
#define SIM_KEY_MAX       64    /* decoded key bytes (IoT Hub keys are 16..64) */

typedef struct sim_connstr {
    char          host[SIM_HOST_MAX + 1];         /* HostName: the hub, signs the token */
    char          device_id[SIM_DEVICE_ID_MAX + 1];
    char          gateway[SIM_HOST_MAX + 1 + 6];  /* GatewayHostName, may end in :port; "" if none */
    unsigned char key[SIM_KEY_MAX];               /* SharedAccessKey, base64-decoded */
    size_t        key_len;
} sim_connstr_t;

/* Parse s into out. Returns 0, or -1 with a one-line reason in err (no secrets in it). */
int sim_connstr_parse(const char *s, sim_connstr_t *out, char *err, size_t errlen);

/* Is id a device id IoT Hub accepts: 1..128 characters of [A-Za-z0-9-:.+%_#*?!(),=@;$']? */
int sim_device_id_valid(const char *id);

#endif
