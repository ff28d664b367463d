/* tls_ca.h — devhost's local certificate authority and its server certificate.
 *
 * Devices and Microsoft's SDK only speak MQTT over TLS, and HTTPS (`--tls`) needs a
 * certificate too, so devhost makes its own at first start, in its data folder:
 *   ca.pem          a CA certificate (ECDSA P-256, 10 years) that users give their clients
 *                   (Node's `ca` option or NODE_EXTRA_CA_CERTS, mosquitto's --cafile);
 *   ca-key.pem      its private key (mode 0600);
 *   server.pem      a certificate for localhost, 127.0.0.1 and ::1 signed by that CA
 *                   (ECDSA P-256, 825 days);
 *   server-key.pem  its private key (mode 0600).
 * Later starts reuse them; the server certificate alone is re-issued when it is missing,
 * does not match its key, was not issued by ca.pem, lacks one of those names, or expires
 * within 30 days — so a CA the user installed once keeps working. A CA whose key is gone is
 * an error that says what to do, never silently replaced. Files are written atomically
 * (temporary file, fsync, rename); key files are created 0600 and tightened to 0600 if found
 * looser. */
#ifndef ENVIROMON_TLS_CA_H
#define ENVIROMON_TLS_CA_H

#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;

typedef struct tls_ca {
    char *ca_path;      /* "<data>/ca.pem" */
    char *cert_pem;     /* the server certificate, PEM (NUL-terminated) */
    char *key_pem;      /* its private key, PEM PKCS#8 (secret: never log it) */
    int   created_ca;   /* this call created the CA */
    int   issued_cert;  /* this call issued the server certificate */
} tls_ca_t;

/* Make sure data_dir (created 0700 if missing, parents included) holds a usable CA and
 * server certificate, creating or re-issuing as described above, and load the server
 * certificate and key into out. Returns 0, or -1 with an actionable message in err. */
int tls_ca_ensure(const char *data_dir, tls_ca_t *out, char *err, size_t errlen);

void tls_ca_free(tls_ca_t *ca);

/* A TLS server context (TLS 1.2 and 1.3) for ca's certificate, tuned for many idle
 * connections (buffers released while idle, partial writes, no renegotiation). Returns NULL
 * with a message in err. */
SSL_CTX *tls_ca_server_ctx(const tls_ca_t *ca, char *err, size_t errlen);

#endif
