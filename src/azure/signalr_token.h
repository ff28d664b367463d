/* signalr_token.h — Azure SignalR Service connection strings and HS256 access tokens.
 *
 * Owns: parsing the SignalR connection string the way the SDK does, deriving client and
 * REST URLs/audiences, minting HS256 JWTs keyed with the RAW UTF-8 bytes of AccessKey (not
 * base64-decoded), and verifying them (constant-time signature check, aud, exp). Used by the
 * Negotiate function (minting client tokens when no binding value arrives) and by the local
 * SignalR Service in devhost (verifying). Facts and vectors: shared/reference/signalr-protocol.md. */
#ifndef ENVIROMON_SIGNALR_TOKEN_H
#define ENVIROMON_SIGNALR_TOKEN_H

#include <stddef.h>
#include <time.h>

typedef struct sr_conn {
    char *endpoint;       /* scheme://host[:port from URL] without trailing '/' (as given) */
    char *scheme;         /* "http" or "https" */
    char *host;           /* host name only */
    int   port;           /* effective port: Port=, else the URL's, else 80/443 */
    char *access_key;     /* raw AccessKey string (the HMAC key bytes) */
    char *version;        /* "1.0" by default */
    char *client_endpoint;/* ClientEndpoint or NULL */
} sr_conn_t;

/* Parse "Endpoint=...;AccessKey=...;Port=...;Version=...;" (keys case-insensitive, split on
 * the first '=', trimmed, duplicates rejected). Returns 0, or -1 with a message that never
 * contains the key. */
int  sr_conn_parse(const char *connstr, sr_conn_t *out, char *err, size_t errlen);
void sr_conn_free(sr_conn_t *c);

/* Base URL for requests: scheme://host:port/ form WITHOUT trailing slash, e.g.
 * "http://localhost:8888". Writes into out; returns 0 or -1 when it does not fit. */
int sr_request_base(const sr_conn_t *c, char *out, size_t outlen);
/* Client URL: {ClientEndpoint or request base}/client/?hub={hub lower-cased}. */
int sr_client_url(const sr_conn_t *c, const char *hub, char *out, size_t outlen);
/* Client audience: {scheme}://{host}/client/?hub={hub lower} (no port). */
int sr_client_audience(const sr_conn_t *c, const char *hub, char *out, size_t outlen);

/* REST send path (2022-06-01 API) for a broadcast, one user (user_id) or one group (group;
 * used only when user_id is NULL): "/api/hubs/{hub lower}[/users/{u}|/groups/{g}]/:send?api-version=2022-06-01",
 * segments percent-encoded. Returns 0, or -1 (empty names, does not fit). */
int sr_rest_send_path(const char *hub, const char *user_id, const char *group, char *out, size_t outlen);
/* Append s to b as one percent-encoded URL path segment (RFC 3986 unreserved characters
 * kept), for building REST paths with user, group and connection names. */
struct buf;
void sr_put_path_segment(struct buf *b, const char *s);
/* Full REST URL: request base + path_query (which starts with '/'). */
int sr_rest_url(const sr_conn_t *c, const char *path_query, char *out, size_t outlen);
/* REST audience: {scheme}://{host}{path_query} (no port). For "/api/v1/..." paths the query
 * and any trailing '/' are dropped (v1 sample); "/api/hubs/..." keeps the query (SDK form). */
int sr_rest_audience(const sr_conn_t *c, const char *path_query, char *out, size_t outlen);

/* Mint an HS256 JWT: header {"alg":"HS256","typ":"JWT"}, payload {"aud":aud,"exp":exp[,"nameid":user_id]}.
 * user_id may be NULL. Returns a malloc'd token or NULL. */
char *sr_token_mint(const char *key, size_t key_len, const char *aud, time_t exp, const char *user_id);

typedef enum sr_verify_status {
    SR_TOKEN_OK = 0,
    SR_TOKEN_MALFORMED,      /* not three base64url parts / bad JSON / alg not HS256 */
    SR_TOKEN_BAD_SIGNATURE,
    SR_TOKEN_EXPIRED,        /* exp missing or <= now */
    SR_TOKEN_BAD_AUDIENCE
} sr_verify_status_t;

/* Claims of a verified token, sized by the token (which is at most 64 KiB): audiences and
 * user ids of any length come through whole. Free with sr_claims_free. */
typedef struct sr_claims {
    char  **aud;          /* the audiences: aud when a string, else each string element of an
                           * aud array (RFC 7519 §4.1.3); malloc'd, naud entries */
    size_t  naud;
    time_t  exp;
    char   *user_id;      /* "asrs.s.uid" first, then "nameid"; NULL when neither (malloc'd) */
} sr_claims_t;

/* Verify token: signature (constant time) with key, then exp against now, then aud: when
 * expected_aud is not NULL, the token's aud (or one element of an aud array) must equal it,
 * ignoring a trailing '/' and ASCII case in scheme/host. claims may be NULL; when not, it is
 * filled whatever the result (as far as the token could be read) and must be freed with
 * sr_claims_free. */
sr_verify_status_t sr_token_verify(const char *token, const char *key, size_t key_len,
                                   const char *expected_aud, time_t now, sr_claims_t *claims);
/* Free what sr_token_verify put in claims and zero it (NULL is ignored). */
void sr_claims_free(sr_claims_t *claims);
const char *sr_verify_status_name(sr_verify_status_t st);

#endif
