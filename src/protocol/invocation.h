/* invocation.h — one custom-handler invocation: the host's request and our response.
 *
 * The Functions host POSTs {"Data":{...},"Metadata":{...}} to /<FunctionName> and expects
 * 2xx application/json {"Outputs":{...},"Logs":[...],"ReturnValue":...}. Values inside Data
 * and Metadata that are strings, arrays or numbers arrive JSON-encoded as strings, sometimes
 * twice (shared/reference/custom-handler-protocol.md §1); json_unwrap() undoes that.
 *
 * A function fills inv->outputs (and optionally inv->return_value), logs through &inv->log,
 * and returns 0. To fail the invocation (so the host marks it failed and, for EventTrigger,
 * retries it) it calls inv_fail() and returns -1; the server then answers non-2xx with a
 * JSON error body. */
#ifndef ENVIROMON_INVOCATION_H
#define ENVIROMON_INVOCATION_H

#include "util/log.h"

struct cJSON;

typedef struct invocation {
    const char   *function;       /* canonical function name, e.g. "EventTrigger" */
    const char   *invocation_id;  /* X-Azure-Functions-InvocationId or "" */
    struct cJSON *request;        /* the whole parsed body (owned) */
    struct cJSON *data;           /* request.Data (object, borrowed; may be an empty object) */
    struct cJSON *metadata;       /* request.Metadata (object, borrowed; may be empty) */
    struct cJSON *outputs;        /* response Outputs (object, owned until the response) */
    struct cJSON *return_value;   /* response ReturnValue or NULL (owned) */
    void         *body_reader;    /* a streaming function's reader state (app.h), else NULL */
    log_ctx_t     log;            /* lines for the response's Logs */
    int           fail_status;    /* HTTP status to answer when the function fails (default 500) */
    char          fail_message[512];
} invocation_t;

/* Replace v, while it is a string whose whole content is valid JSON, with the parsed
 * value: "\"hello\"" → "hello"; "[1,2]" → [1,2]; "\"[\\\"a\\\"]\"" → ["a"]. A string that is
 * not JSON (e.g. hello) is left alone. Returns a NEW item the caller deletes (a copy when
 * nothing needed unwrapping), or NULL for NULL input or allocation failure. */
struct cJSON *json_unwrap(const struct cJSON *v);

/* Unwrap Data[name] / Metadata[name] in place inside the request tree and return it
 * (borrowed; valid for the invocation's lifetime), or NULL when absent. Keys are matched
 * case-insensitively, as the host's Newtonsoft deserialiser does. */
struct cJSON *inv_data(invocation_t *inv, const char *name);
struct cJSON *inv_metadata(invocation_t *inv, const char *name);

/* Mark the invocation failed with an HTTP status for the host (>= 400) and a message
 * (printf-style) that goes into the JSON error body and the log. */
void inv_fail(invocation_t *inv, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- HTTP trigger helpers (Data.<req> is the request object) ---- */

/* Method ("GET", "POST", ...) or "" */
const char *http_req_method(const struct cJSON *req);
/* Query parameter by name (case-insensitive), tolerating Query as an object or as a
 * JSON-encoded string (older hosts). NULL when absent. */
const char *http_req_query(const struct cJSON *req, const char *name);
/* Header by name, case-insensitive; values may be strings or arrays of strings (first
 * element returned). NULL when absent. */
const char *http_req_header(const struct cJSON *req, const char *name);
/* Raw body as a string (NULL when absent). A JSON body that the host already parsed into an
 * object is printed back to text into *scratch (caller frees *scratch). */
const char *http_req_body(const struct cJSON *req, char **scratch);

/* Set Outputs[binding] to an HTTP response {statusCode, headers{Content-Type}, body}.
 * body is a string (already JSON text when content_type is application/json). Returns 0/-1. */
int inv_http_response(invocation_t *inv, const char *binding, int status,
                      const char *content_type, const char *body);
/* Same with a JSON value as body (printed compactly; the value is not consumed). */
int inv_http_json(invocation_t *inv, const char *binding, int status, const struct cJSON *body);
/* Convenience: {"error": message} JSON body with the given status. */
int inv_http_error(invocation_t *inv, const char *binding, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Append a SignalR output message {target, arguments:[argument], [userId|groupName]} to
 * Outputs[binding] (an array). argument is consumed (ownership passes to outputs).
 * user_id/group may be NULL. Returns 0/-1. */
int inv_signalr_message(invocation_t *inv, const char *binding, const char *target,
                        struct cJSON *argument, const char *user_id, const char *group);

/* ---- used by the server ---- */

/* Initialise an invocation from a parsed request body (takes ownership of request).
 * Returns 0, or -1 when the body is not an object with object-or-absent Data/Metadata, with
 * a message in err. */
int  inv_init(invocation_t *inv, const char *function, const char *invocation_id,
              struct cJSON *request, char *err, size_t errlen);
/* Build the response JSON text {"Outputs","Logs","ReturnValue"} (caller frees). */
char *inv_render_response(invocation_t *inv);
/* Build the failure body {"error":..., "Logs":[...]} (caller frees). */
char *inv_render_failure(invocation_t *inv);
void inv_free(invocation_t *inv);

#endif
