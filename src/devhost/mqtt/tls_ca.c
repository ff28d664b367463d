/* tls_ca.c — devhost's local CA and server certificate (see tls_ca.h). */
#include "devhost/mqtt/tls_ca.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"

#define CA_DAYS      3650
#define SERVER_DAYS  825
#define RENEW_DAYS   30

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    if (e && n >= 0 && (size_t)n < errlen) {
        char ossl[256];
        ERR_error_string_n(e, ossl, sizeof ossl);
        snprintf(err + n, errlen - (size_t)n, " (%s)", ossl);
    }
    ERR_clear_error();
    return -1;
}

/* ---- files ------------------------------------------------------------------------------ */

static char *path_join(const char *dir, const char *name)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "%s/%s", dir, name);
    return b.oom ? (buf_free(&b), NULL) : buf_steal(&b);
}

static int mkdirs(const char *dir, char *err, size_t errlen)
{
    char *p = strdup(dir);
    if (!p) return fail(err, errlen, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return fail(err, errlen, "cannot create the data folder %s: %s", dir, strerror(e));
        }
        *s = c;
        if (c == '\0') break;
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail(err, errlen, "the data folder %s is not a directory", dir);
    return 0;
}

/* Read a whole (small) file. Returns NULL with errno set (ENOENT when absent). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    buf_t b = BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < (1u << 20)) buf_append(&b, chunk, n);
    int bad = ferror(f) || b.oom || b.len == 0;
    fclose(f);
    if (bad) {
        buf_free(&b);
        errno = EIO;
        return NULL;
    }
    return buf_steal(&b);
}

/* Write path atomically with the given mode: a temporary file beside it, fsync, rename,
 * fsync of the folder. */
static int write_file(const char *dir, const char *path, const char *data, mode_t mode,
                      char *err, size_t errlen)
{
    buf_t tmp = BUF_INIT;
    buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    if (tmp.oom) return fail(err, errlen, "out of memory");
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    int rc = -1;
    if (fd < 0) {
        fail(err, errlen, "cannot create %s: %s", tmp.data, strerror(errno));
        goto out;
    }
    size_t len = strlen(data), off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    if (off != len || fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        fail(err, errlen, "cannot write %s: %s", tmp.data, strerror(errno));
        close(fd);
        unlink(tmp.data);
        goto out;
    }
    close(fd);
    if (rename(tmp.data, path) != 0) {
        fail(err, errlen, "cannot rename %s to %s: %s", tmp.data, path, strerror(errno));
        unlink(tmp.data);
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
out:
    buf_free(&tmp);
    return rc;
}

/* ---- PEM <-> objects -------------------------------------------------------------------- */

static X509 *cert_from_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}

static EVP_PKEY *key_from_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return k;
}

static char *bio_string(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    return s;
}

static char *cert_to_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = b && PEM_write_bio_X509(b, x) == 1 ? bio_string(b) : NULL;
    BIO_free(b);
    return s;
}

static char *key_to_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1 ? bio_string(b) : NULL;
    BIO_free(b);
    return s;
}

/* ---- issuing ---------------------------------------------------------------------------- */

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!e) return -1;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok == 1 ? 0 : -1;
}

static int set_serial(X509 *x)
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) return -1;
    r[0] &= 0x7f; /* positive */
    r[0] |= 0x01; /* and never zero-led */
    BIGNUM *bn = BN_bin2bn(r, sizeof r, NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

/* A new certificate for key, named cn, valid for days, signed by issuer_key (issuer == NULL:
 * self-signed CA), with the extensions nids[i] = values[i] (nids ends with 0). */
static X509 *issue(EVP_PKEY *key, const char *cn, long days, X509 *issuer, EVP_PKEY *issuer_key,
                   const int *nids, const char *const *values)
{
    X509 *x = X509_new();
    if (!x) return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    int ok = X509_set_version(x, 2) == 1 && set_serial(x) == 0 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL && /* tolerate clock skew */
             X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L) != NULL &&
             X509_set_pubkey(x, key) == 1 &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Enviromon devhost", -1, -1, 0) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    for (size_t i = 0; ok && nids[i]; i++) ok = add_ext(x, &ctx, nids[i], values[i]) == 0;
    if (ok) ok = X509_sign(x, issuer_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Generate a key, issue its certificate (self-signed when issuer is NULL) and save both,
 * the key first (0600). On success *cert and *key are the caller's. */
static int new_pair(const char *dir, const char *cert_path, const char *key_path, const char *cn,
                    long days, X509 *issuer, EVP_PKEY *issuer_key, const int *nids,
                    const char *const *vals, X509 **cert, EVP_PKEY **key, char *err, size_t errlen)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k) return fail(err, errlen, "cannot generate a key for %s", cert_path);
    X509 *x = issue(k, cn, days, issuer, issuer ? issuer_key : k, nids, vals);
    char *kp = x ? key_to_pem(k) : NULL, *cp = x ? cert_to_pem(x) : NULL;
    int rc = -1;
    if (!kp || !cp) fail(err, errlen, "cannot issue the certificate %s", cert_path);
    else if (write_file(dir, key_path, kp, 0600, err, errlen) == 0 &&
             write_file(dir, cert_path, cp, 0644, err, errlen) == 0)
        rc = 0;
    if (kp) OPENSSL_cleanse(kp, strlen(kp));
    free(kp);
    free(cp);
    if (rc != 0) {
        X509_free(x);
        EVP_PKEY_free(k);
        return -1;
    }
    *cert = x;
    *key = k;
    return 0;
}

static int create_ca(const char *dir, const char *ca_path, const char *key_path, X509 **ca,
                     EVP_PKEY **ca_key, char *err, size_t errlen)
{
    unsigned char r[4];
    char cn[96];
    if (RAND_bytes(r, sizeof r) != 1) return fail(err, errlen, "no randomness for the CA name");
    /* A random tag tells apart the CAs of several data folders in one trust store. */
    snprintf(cn, sizeof cn, "Enviromon devhost local CA %02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    static const int nids[] = {NID_basic_constraints, NID_key_usage, NID_subject_key_identifier, 0};
    static const char *const vals[] = {"critical,CA:TRUE,pathlen:0", "critical,keyCertSign,cRLSign", "hash"};
    return new_pair(dir, ca_path, key_path, cn, CA_DAYS, NULL, NULL, nids, vals, ca, ca_key, err, errlen);
}

static int load_ca(const char *ca_path, const char *key_path, X509 **ca, EVP_PKEY **ca_key,
                   char *err, size_t errlen)
{
    char *cp = read_file(ca_path);
    if (!cp) return fail(err, errlen, "cannot read %s: %s", ca_path, strerror(errno));
    char *kp = read_file(key_path);
    if (!kp) {
        int e = errno;
        free(cp);
        return fail(err, errlen, "%s exists but its key %s cannot be read (%s); restore the key, or "
                    "delete %s to create a new CA (clients must then trust the new one)",
                    ca_path, key_path, strerror(e), ca_path);
    }
    X509 *x = cert_from_pem(cp);
    EVP_PKEY *k = key_from_pem(kp);
    OPENSSL_cleanse(kp, strlen(kp));
    free(kp);
    free(cp);
    if (!x || !k || X509_check_private_key(x, k) != 1) {
        X509_free(x);
        EVP_PKEY_free(k);
        return fail(err, errlen, "%s and %s are not a certificate and its key; delete both to create "
                    "a new CA", ca_path, key_path);
    }
    if (X509_cmp_time(X509_get0_notAfter(x), NULL) <= 0) {
        X509_free(x);
        EVP_PKEY_free(k);
        return fail(err, errlen, "the local CA %s has expired; delete it and %s to create a new one",
                    ca_path, key_path);
    }
    *ca = x;
    *ca_key = k;
    return 0;
}

/* Keys must stay private even when an older version or a user loosened them. */
static void tighten(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077)) chmod(path, 0600);
}

/* 1 when the existing server certificate and key can be used as they are. */
static int server_usable(X509 *x, EVP_PKEY *k, X509 *ca)
{
    if (!x || !k || X509_check_private_key(x, k) != 1) return 0;
    EVP_PKEY *cak = X509_get0_pubkey(ca);
    if (!cak || X509_verify(x, cak) != 1) return 0;
    if (X509_check_host(x, "localhost", 0, 0, NULL) != 1 ||
        X509_check_ip_asc(x, "127.0.0.1", 0) != 1 || X509_check_ip_asc(x, "::1", 0) != 1)
        return 0;
    time_t soon = time(NULL) + (time_t)RENEW_DAYS * 86400;
    return X509_cmp_time(X509_get0_notAfter(x), &soon) > 0;
}

static int issue_server(const char *dir, const char *cert_path, const char *key_path, X509 *ca,
                        EVP_PKEY *ca_key, X509 **cert, EVP_PKEY **key, char *err, size_t errlen)
{
    static const int nids[] = {NID_basic_constraints, NID_key_usage, NID_ext_key_usage,
                               NID_subject_alt_name, NID_subject_key_identifier,
                               NID_authority_key_identifier, 0};
    static const char *const vals[] = {"critical,CA:FALSE", "critical,digitalSignature",
                                       "serverAuth", "DNS:localhost,IP:127.0.0.1,IP:::1",
                                       "hash", "keyid:always"};
    return new_pair(dir, cert_path, key_path, "localhost", SERVER_DAYS, ca, ca_key, nids, vals, cert,
                    key, err, errlen);
}

int tls_ca_ensure(const char *data_dir, tls_ca_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (mkdirs(data_dir, err, errlen) != 0) return -1;
    char *ca_key_path = path_join(data_dir, "ca-key.pem");
    char *cert_path = path_join(data_dir, "server.pem");
    char *key_path = path_join(data_dir, "server-key.pem");
    out->ca_path = path_join(data_dir, "ca.pem");
    X509 *ca = NULL, *cert = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    int rc = -1;
    if (!ca_key_path || !cert_path || !key_path || !out->ca_path) {
        fail(err, errlen, "out of memory");
        goto out;
    }
    if (access(out->ca_path, F_OK) == 0) {
        if (load_ca(out->ca_path, ca_key_path, &ca, &ca_key, err, errlen) != 0) goto out;
        tighten(ca_key_path);
    } else {
        if (create_ca(data_dir, out->ca_path, ca_key_path, &ca, &ca_key, err, errlen) != 0) goto out;
        out->created_ca = 1;
    }
    char *cp = read_file(cert_path), *kp = read_file(key_path);
    if (cp && kp) {
        cert = cert_from_pem(cp);
        key = key_from_pem(kp);
        tighten(key_path);
    }
    if (kp) OPENSSL_cleanse(kp, strlen(kp));
    free(kp);
    free(cp);
    ERR_clear_error();
    if (!server_usable(cert, key, ca)) {
        X509_free(cert);
        EVP_PKEY_free(key);
        cert = NULL;
        key = NULL;
        if (issue_server(data_dir, cert_path, key_path, ca, ca_key, &cert, &key, err, errlen) != 0) goto out;
        out->issued_cert = 1;
    }
    out->cert_pem = cert_to_pem(cert);
    out->key_pem = key_to_pem(key);
    if (!out->cert_pem || !out->key_pem) {
        fail(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    X509_free(ca);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    free(ca_key_path);
    free(cert_path);
    free(key_path);
    if (rc != 0) tls_ca_free(out);
    return rc;
}

void tls_ca_free(tls_ca_t *ca)
{
    if (ca->key_pem) OPENSSL_cleanse(ca->key_pem, strlen(ca->key_pem));
    free(ca->key_pem);
    free(ca->cert_pem);
    free(ca->ca_path);
    memset(ca, 0, sizeof *ca);
}

SSL_CTX *tls_ca_server_ctx(const tls_ca_t *ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    X509 *cert = cert_from_pem(ca->cert_pem);
    EVP_PKEY *key = key_from_pem(ca->key_pem);
    int ok = ctx && cert && key && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
             SSL_CTX_use_certificate(ctx, cert) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1 &&
             SSL_CTX_check_private_key(ctx) == 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    if (!ok) {
        SSL_CTX_free(ctx);
        fail(err, errlen, "cannot set up TLS with the server certificate");
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_read_ahead(ctx, 1); /* a burst of records in one read() (released when drained) */
    return ctx;
}
