/* table.h — Azure Table Storage REST client (libcurl + OpenSSL + cJSON).
 *
 * Owns: connection-string parsing, Shared Key signing, the HTTP exchange with the Table
 * service (Azure, Azurite, the Cosmos DB Table API), typed properties, continuation paging
 * and $batch entity-group transactions. Facts and test vectors: shared/reference/table-storage.md.
 *
 * Entities are cJSON objects in the service's JSON form, type annotations included:
 *   {"PartitionKey":"p","RowKey":"r","Count":"42","Count@odata.type":"Edm.Int64", ...}
 * Build them with the table_set_* helpers so Int64, Double and DateTime keep their types.
 * Reads use odata=minimalmetadata: Int64/DateTime come back annotated, but an integral Double
 * (22.0) comes back as a bare 22, so before writing a read entity back, re-set its doubles
 * with table_set_double or the service stores them as Int32. "odata.*" members of a read
 * entity are never sent on writes.
 *
 * Thread safety: a table_client_t may be shared by any number of threads; each thread gets
 * its own keep-alive connection. Every request has a timeout. Transient failures (5xx,
 * timeouts, connection refused/reset) are retried with backoff inside the client and, when
 * retries run out, reported as TABLE_UNAVAILABLE — distinct from concurrency conflicts
 * (TABLE_CONFLICT 409, TABLE_PRECONDITION 412), which are never retried here because only
 * the caller knows how to re-apply its change. */
#ifndef ENVIROMON_TABLE_H
#define ENVIROMON_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define TABLE_ETAG_MAX 128        /* bytes for an ETag incl. NUL; longer ETags are an error */
#define TABLE_BATCH_MAX_OPS 100   /* entity-group transaction limit */
#define TABLE_KEY_MAX 1024        /* PartitionKey/RowKey length limit (characters) */

typedef enum table_status {
    TABLE_OK = 0,
    TABLE_NOT_FOUND,     /* 404: entity or table does not exist */
    TABLE_CONFLICT,      /* 409: entity (or table) already exists */
    TABLE_PRECONDITION,  /* 412: If-Match ETag no longer current */
    TABLE_BAD_REQUEST,   /* 400 and other caller-caused 4xx (bad key, too large, ...) */
    TABLE_AUTH,          /* 401/403: credentials or signature rejected */
    TABLE_UNAVAILABLE,   /* transient failure that outlasted the retries: 5xx, timeout, refused */
    TABLE_INVALID_ARG,   /* rejected by the client before any request was sent */
    TABLE_NOMEM,         /* allocation failure */
    TABLE_PROTOCOL       /* the service answered something the client cannot parse */
} table_status_t;

/* What happened, for logs and decisions. Messages never contain secrets. */
typedef struct table_result {
    table_status_t status;
    int  http_status;      /* last HTTP status (0 when no response arrived) */
    char code[64];         /* service error code (odata.error.code), may be "" */
    char message[256];     /* human-readable, actionable */
    int  batch_index;      /* 0-based failing operation in a $batch, else -1 */
    int  attempts;         /* HTTP attempts made (1 + transient retries) */
    int  pages;            /* table_query: result pages (HTTP responses) consumed */
} table_result_t;

typedef struct table_options {
    int timeout_ms;        /* per HTTP request, default 10000 */
    int connect_timeout_ms;/* default 3000 */
    int retries;           /* transient-failure retries, default 3 */
    int retry_base_ms;     /* first backoff, doubled per retry with jitter, default 100 */
} table_options_t;

typedef struct table_client table_client_t;

/* Parsed storage connection string. */
typedef struct storage_account {
    char          *account_name;  /* NULL for SAS-only strings */
    unsigned char *key;           /* decoded AccountKey, NULL for SAS */
    size_t         key_len;
    char          *table_endpoint;/* no trailing '/', e.g. http://127.0.0.1:10002/devstoreaccount1 */
    char          *sas;           /* SharedAccessSignature without leading '?', or NULL */
    int            is_cosmos;     /* endpoint is a Cosmos DB Table API endpoint */
} storage_account_t;

/* Parse a storage connection string: account key (+EndpointSuffix or TableEndpoint),
 * UseDevelopmentStorage=true (+DevelopmentStorageProxyUri), SAS, Cosmos DB Table API.
 * Keys are matched case-insensitively; pairs split on the first '='. Returns 0, or -1 with
 * an actionable message (never containing the key) in err. */
int  storage_account_parse(const char *connstr, storage_account_t *out, char *err, size_t errlen);
void storage_account_free(storage_account_t *acct);

/* Shared Key for the Table service: base64(HMAC-SHA256(key, string_to_sign)) into out
 * (at least 45 bytes). Returns 0 or -1. */
int  table_sign(const unsigned char *key, size_t key_len, const char *string_to_sign,
                char *out, size_t outlen);

/* Create a client. opts may be NULL for defaults. NULL on error, with a message in err. */
table_client_t *table_client_new(const char *connstr, const table_options_t *opts,
                                 char *err, size_t errlen);
void table_client_free(table_client_t *tc);
/* The account's table endpoint (for logs; contains no secret). */
const char *table_client_endpoint(const table_client_t *tc);

/* Create the table unless it exists (409 TableAlreadyExists counts as success). */
table_status_t table_create_if_missing(table_client_t *tc, const char *table, table_result_t *res);
/* Delete a table (tests). */
table_status_t table_delete_table(table_client_t *tc, const char *table, table_result_t *res);

/* Point read. On TABLE_OK *entity_out is a new cJSON object (caller deletes) with type
 * annotations, and etag_out (TABLE_ETAG_MAX bytes, may be NULL) holds the ETag.
 * select: comma-separated property list or NULL. */
table_status_t table_get_entity(table_client_t *tc, const char *table, const char *pk,
                                const char *rk, const char *select, struct cJSON **entity_out,
                                char *etag_out, table_result_t *res);

/* Insert; TABLE_CONFLICT when it exists. etag_out may be NULL. */
table_status_t table_insert_entity(table_client_t *tc, const char *table, const struct cJSON *entity,
                                   char *etag_out, table_result_t *res);
/* Merge. if_match = ETag → conditional (TABLE_PRECONDITION on mismatch, TABLE_NOT_FOUND if
 * absent); if_match = NULL → insert-or-merge (upsert). Uses the MERGE verb (Cosmos-safe). */
table_status_t table_merge_entity(table_client_t *tc, const char *table, const struct cJSON *entity,
                                  const char *if_match, char *etag_out, table_result_t *res);
/* Replace (PUT), same If-Match semantics as merge. */
table_status_t table_replace_entity(table_client_t *tc, const char *table, const struct cJSON *entity,
                                    const char *if_match, char *etag_out, table_result_t *res);
/* Delete; if_match NULL means "*". */
table_status_t table_delete_entity(table_client_t *tc, const char *table, const char *pk,
                                   const char *rk, const char *if_match, table_result_t *res);

/* Called once per entity of a query, in service order. The entity (with "odata.etag" when the
 * service sends it) is owned by the client and valid only during the call. Return 0 to go
 * on, non-zero to stop early (table_query then returns TABLE_OK). */
typedef int (*table_row_fn)(const struct cJSON *entity, void *arg);

/* Query with optional $filter and $select (NULL for none), following continuation tokens
 * across every page. */
table_status_t table_query(table_client_t *tc, const char *table, const char *filter,
                           const char *select, table_row_fn fn, void *arg, table_result_t *res);

typedef enum table_op_kind {
    TABLE_OP_INSERT,         /* fails 409 if present */
    TABLE_OP_MERGE,          /* conditional when if_match set, else upsert-merge */
    TABLE_OP_REPLACE,        /* conditional when if_match set, else upsert-replace */
    TABLE_OP_DELETE          /* if_match NULL means "*" */
} table_op_kind_t;

typedef struct table_batch_op {
    table_op_kind_t     kind;
    const struct cJSON *entity;   /* for DELETE only PartitionKey/RowKey are used */
    const char         *if_match; /* NULL: see kind */
    char                etag[TABLE_ETAG_MAX]; /* out: the entity's new ETag on success */
} table_batch_op_t;

/* Entity-group transaction: 1..100 operations on one PartitionKey (enforced here, before
 * any request). All or nothing: on failure res->batch_index names the failing operation and
 * the status is that operation's (e.g. TABLE_PRECONDITION), and nothing was committed. */
table_status_t table_batch(table_client_t *tc, const char *table, table_batch_op_t *ops,
                           size_t n_ops, table_result_t *res);

/* "PartitionKey eq '<pk>'" with single quotes doubled (an OData string literal), for
 * table_query. Returns a malloc'ed string, or NULL when out of memory. */
char *table_partition_filter(const char *pk);

/* Is name a valid table name (^[A-Za-z][A-Za-z0-9]{2,62}$, not "Tables")? 1 or 0 with a
 * reason in err (may be NULL). */
int table_name_valid(const char *name, char *err, size_t errlen);

/* Is this a valid PartitionKey/RowKey? Forbidden: '/', '\\', '#', '?', U+0000-U+001F,
 * U+007F-U+009F, invalid UTF-8, more than TABLE_KEY_MAX characters. Returns 1 or 0 (with a
 * reason in err when err is not NULL). */
int table_key_valid(const char *key, char *err, size_t errlen);

/* Typed property setters (replace any existing value and annotation). Return 0 or -1. */
int table_set_string(struct cJSON *entity, const char *name, const char *value);
int table_set_int64(struct cJSON *entity, const char *name, int64_t value);
int table_set_double(struct cJSON *entity, const char *name, double value); /* NaN/±Inf as annotated strings */
int table_set_datetime(struct cJSON *entity, const char *name, const char *iso8601_utc);
int table_set_bool(struct cJSON *entity, const char *name, int value);

/* Typed getters tolerant of both annotated and bare forms (Int64 as string or number,
 * Double as number or "NaN"/"Infinity"). Return 0 when present and convertible, else -1. */
int table_get_int64(const struct cJSON *entity, const char *name, int64_t *out);
int table_get_double(const struct cJSON *entity, const char *name, double *out);
/* String property or NULL. */
const char *table_get_string(const struct cJSON *entity, const char *name);

/* Name of a status, e.g. "precondition failed (412)". */
const char *table_status_name(table_status_t st);

#endif
