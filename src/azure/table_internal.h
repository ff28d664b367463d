/* table_internal.h — helpers shared by the table client's own files (table*.c,
 * storage_account.c) and their unit tests. Not part of the public API in table.h: callers
 * outside src/azure/table*.c should not use these.
 *
 * Owns the contracts for: base64, percent-encoding, key escaping for URLs, the Shared Key
 * string-to-sign, entity serialisation and the $batch wire format. */
#ifndef ENVIROMON_TABLE_INTERNAL_H
#define ENVIROMON_TABLE_INTERNAL_H

#include <stddef.h>

#include "azure/table.h"
#include "util/buf.h"

struct cJSON;

/* ---- encoding helpers (table_props.c) -------------------------------------------------- */

/* Strict base64 decode (standard alphabet, padding required). Returns a malloc'ed buffer
 * and its length in *out_len, or NULL when the input is not valid base64 (or on OOM). */
unsigned char *table_b64_decode(const char *in, size_t in_len, size_t *out_len);

/* Append s percent-encoded: every byte except A-Z a-z 0-9 - . _ ~ becomes %XX. */
int table_pct_encode(buf_t *b, const char *s);

/* Append a key for use inside '...' in a URL path or a $filter: single quotes doubled,
 * then percent-encoded. */
int table_key_escape(buf_t *b, const char *key);

/* Append the entity's JSON for a write request. Properties named "odata.*" (metadata
 * from a previous read) are left out; U+2028/U+2029 are written as \u escapes (Azurite's
 * $batch parser mishandles them raw). Returns 0 or -1 (OOM / not an object). */
int table_entity_print(buf_t *b, const struct cJSON *entity);

/* Fetch and validate the PartitionKey and RowKey of an entity. Returns 0, or -1 with a
 * message in err. */
int table_entity_keys(const struct cJSON *entity, const char **pk, const char **rk,
                      char *err, size_t errlen);

/* Can e be sent as an If-Match value: non-empty, shorter than TABLE_ETAG_MAX, no control
 * characters (it is copied into a header byte for byte)? 1 or 0. */
int table_etag_ok(const char *e);

/* ---- signing (table_auth.c) ------------------------------------------------------------ */

/* Shared Key Lite: base64(HMAC-SHA256(key, date + "\n" + canonical_resource)). */
int table_sign_lite(const unsigned char *key, size_t key_len, const char *date,
                    const char *canonical_resource, char *out, size_t outlen);

/* Build the Shared Key string-to-sign for the Table service into b (reset first):
 * VERB\nContent-MD5(empty)\nContent-Type\nDate\nCanonicalizedResource. */
int table_string_to_sign(buf_t *b, const char *verb, const char *content_type,
                         const char *date, const char *canonical_resource);

/* RFC 1123 date of `now` into out (at least 30 bytes), C locale, GMT. */
void table_rfc1123_now(char *out, size_t outlen);

/* ---- $batch wire format (table_batch.c) ------------------------------------------------ */

/* Check a batch before any request: 1..TABLE_BATCH_MAX_OPS operations, valid kinds and
 * keys, one PartitionKey, each RowKey once, ETags free of control characters. Returns 0, or
 * -1 with a message in err and the offending index in *bad_index (-1 when global). */
int table_batch_validate(const table_batch_op_t *ops, size_t n_ops, int *bad_index,
                         char *err, size_t errlen);

/* Build the multipart/mixed body of a batch against table_url (the absolute URL of the
 * table, e.g. http://127.0.0.1:10002/devstoreaccount1/devices) with the given boundaries
 * ("batch_..." and "changeset_..."). Operations must have been validated. Returns 0 or -1. */
int table_batch_build(buf_t *b, const char *table_url, const table_batch_op_t *ops,
                      size_t n_ops, const char *batch_boundary, const char *changeset_boundary);

/* Parse a 202 $batch response body. On success (every operation answered 2xx, one status
 * line per operation, each but a delete with an ETag that table_etag_ok accepts) copies each
 * ETag into ops[i].etag ("" for a delete without one) and returns TABLE_OK with res->
 * http_status 202. On a failed batch returns the failing operation's status with
 * res->batch_index set from the "N:" message prefix (else Content-ID - 1, else 0 for a
 * single operation, else -1), res->http_status, res->code and res->message filled. Returns
 * TABLE_PROTOCOL when the body cannot be understood. */
table_status_t table_batch_parse(const char *body, size_t len, table_batch_op_t *ops,
                                 size_t n_ops, table_result_t *res);

/* ---- responses (table.c) --------------------------------------------------------------- */

/* Map an HTTP status to a table_status_t (2xx OK; 5xx/408/429 UNAVAILABLE). */
table_status_t table_status_from_http(long http_status);

/* Extract odata.error code and the first line of message.value (or an XML <Code>) from an
 * error body. code/message may be left "". */
void table_error_from_body(const char *body, size_t len, char *code, size_t codelen,
                           char *message, size_t msglen);

#endif
