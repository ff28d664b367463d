/* http_trigger.h — the HTTP trigger's side of the custom-handler protocol, in the real host's
 * shapes (shared/reference/custom-handler-protocol.md §3; host HttpRequestExtensions.
 * GetRequestAsJObject, WebJobs HttpTriggerAttributeBindingProvider, HttpBinding).
 *
 * Owns: Data.<req> — {Url, Method, Query (key → values joined with ","), Headers (name →
 * [values]), Params (route values, null for an unused optional one), Identities, Body (only
 * when Content-Length > 0; base64 for application/octet-stream and multipart types)}; the trigger's
 * Metadata — top-level scalar properties of a JSON object body, every query argument but
 * "code" (last value), the route values, then Query (last values) and Headers (values joined),
 * strings double-encoded as the wire carries them, keys merged case-insensitively as the host's
 * dictionary merges them; and turning the `http` output ({statusCode, headers, body}) into the
 * response. Pure functions of their inputs; thread-safe. */
#ifndef ENVIROMON_DH_HTTP_TRIGGER_H
#define ENVIROMON_DH_HTTP_TRIGGER_H

#include <stddef.h>

#include "devhost/host/http_msg.h"

struct cJSON;

/* Who the request is, as the host's authentication sees it. */
typedef enum {
    DH_IDENTITY_ANONYMOUS = 0,   /* no key involved (anonymous function, no key sent) */
    DH_IDENTITY_LOCAL_ADMIN,     /* keys not enforced (func start's default): auth level Admin */
    DH_IDENTITY_FUNCTION_KEY,    /* --enable-auth, the function key: auth level Function */
    DH_IDENTITY_MASTER_KEY       /* --enable-auth, the master key: auth level Admin */
} dh_identity_t;

/* Append Data.<req> for the request to b as JSON text, with params (route values; may be NULL
 * → {}). Written directly rather than through a cJSON tree: this runs for every HTTP
 * invocation and the tree cost more than the rest of the envelope. Returns 0, or -1 when out
 * of memory. */
int dh_http_request_text(struct buf *b, const dh_http_req_t *r, const struct cJSON *params, dh_identity_t who);

/* Data.<req> as a cJSON tree (dh_http_request_text parsed). NULL when out of memory. */
struct cJSON *dh_http_request_object(const dh_http_req_t *r, const struct cJSON *params, dh_identity_t who);

/* The trigger's Metadata (without sys, which dh_invoke adds). NULL when out of memory. */
struct cJSON *dh_http_metadata(const dh_http_req_t *r, const struct cJSON *params);

/* Turn the value of an `http` output binding (Outputs.res or ReturnValue) into w. NULL value →
 * 200 with an empty body (the host's OkResult). Returns 0, or -1 with err (the host's
 * "Failed while trying to Deserialize to httpOutputBindingResponse" cases), which fails the
 * invocation. */
int dh_http_apply_output(const struct cJSON *value, dh_http_resp_t *w, char *err, size_t errlen);

/* Append v as Newtonsoft's JToken.ToString() writes it: indented by two spaces, ": " after
 * names. */
void dh_json_indented(struct buf *b, const struct cJSON *v);

#endif
