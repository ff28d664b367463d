/* sas.h — IoT Hub shared access signatures: parsing, checking and minting device tokens.
 *
 * A token is `SharedAccessSignature sr=<URL-encoded resource>&sig=<URL-encoded base64
 * HMAC-SHA256>&se=<expiry, epoch seconds>[&skn=<policy>]`, fields in any order. The signature
 * is the HMAC (key = the base64-decoded device key) of the `sr` value EXACTLY AS SENT, a "\n"
 * and the `se` value as sent: SDKs differ in percent-encoding case (Node writes %2F, the C SDK
 * %2f), and each signs its own spelling, so the check never re-encodes. The decoded resource
 * must be `{host}/{path}` or a prefix of it that ends at a '/' (ASCII case ignored: the docs
 * describe the resource as lower-cased; the signature is what binds the token to a device,
 * since it is checked with the key of the device named in the request). The token is valid
 * until se + IOTHUB_SAS_SKEW_S (IoT Hub allows 5 minutes of clock skew). An empty `skn` is a
 * device token (the C SDK always appends `&skn=`); a non-empty one names a shared access
 * policy, which the local hub does not have.
 *
 * Pure functions over bytes (a fuzz target): no I/O, no globals. Facts and vectors:
 * shared/reference/iothub-and-local-host.md, A2. */
#ifndef ENVIROMON_IOTHUB_SAS_H
#define ENVIROMON_IOTHUB_SAS_H

#include <stddef.h>
#include <time.h>

#define IOTHUB_SAS_SKEW_S     300
#define IOTHUB_SAS_MAX_TOKEN  4096   /* longer tokens are malformed */
#define IOTHUB_SAS_MAX_SR     1024   /* raw sr */
#define IOTHUB_SAS_MAX_SKN    256

typedef struct iothub_sas {
    char          sr[IOTHUB_SAS_MAX_SR + 1];       /* as sent (percent-encoded) */
    char          resource[IOTHUB_SAS_MAX_SR + 1]; /* sr percent-decoded */
    char          se_text[24];                     /* as sent: the signed spelling */
    long long     se;                              /* expiry, epoch seconds */
    unsigned char sig[32];                         /* decoded HMAC-SHA256 */
    char          skn[IOTHUB_SAS_MAX_SKN + 1];     /* decoded; "" when absent or empty */
} iothub_sas_t;

typedef enum iothub_sas_status {
    IOTHUB_SAS_OK = 0,
    IOTHUB_SAS_MALFORMED,       /* not a SharedAccessSignature, missing/duplicate fields, bad encoding */
    IOTHUB_SAS_POLICY,          /* signed with a shared access policy (non-empty skn) */
    IOTHUB_SAS_WRONG_RESOURCE,  /* sr does not cover the requested resource */
    IOTHUB_SAS_EXPIRED,         /* se + skew is in the past */
    IOTHUB_SAS_BAD_SIGNATURE    /* HMAC does not match this key */
} iothub_sas_status_t;

/* Parse token[0..len) (with its "SharedAccessSignature " prefix; the scheme word is matched
 * ASCII case-insensitively). Returns IOTHUB_SAS_OK, or IOTHUB_SAS_MALFORMED with the reason in
 * err (which never contains the signature). */
iothub_sas_status_t iothub_sas_parse(const char *token, size_t len, iothub_sas_t *out,
                                     char *err, size_t errlen);

/* Check a parsed token for access to `{host}/{path}` (path without a leading '/', e.g.
 * "devices/dev1/messages/events") with the raw key bytes, at time now. Order: policy,
 * resource, expiry, signature (constant-time). Returns the first failure with an actionable
 * message in err, or IOTHUB_SAS_OK. */
iothub_sas_status_t iothub_sas_check(const iothub_sas_t *t, const char *host, const char *path,
                                     const unsigned char *key, size_t key_len, time_t now,
                                     char *err, size_t errlen);

/* Percent-encode s into out. upper != 0: Node's encodeUriComponentStrict (unreserved
 * A-Z a-z 0-9 - _ . ~, uppercase hex except for ! ' ( ) *, which it writes in lowercase);
 * upper == 0: the C SDK's URL_Encode (unreserved
 * A-Z a-z 0-9 ! ( ) * - . _, lowercase hex). Returns the length, or -1 when it does not fit. */
long iothub_sas_url_encode(const char *s, int upper, char *out, size_t outlen);

/* Mint a token: sr = sr_encoded verbatim, sig over it and se, then "&se=", then "&skn=" and skn
 * when skn is not NULL (the C SDK's form uses ""). Writes "SharedAccessSignature sr=...&sig=...
 * &se=...[&skn=...]". Returns 0, or -1 when it does not fit or the HMAC failed. */
int iothub_sas_make(const char *sr_encoded, const unsigned char *key, size_t key_len, long long se,
                    const char *skn, char *out, size_t outlen);

/* A short name for a status ("expired", ...), for logs. */
const char *iothub_sas_status_name(iothub_sas_status_t st);

#endif
