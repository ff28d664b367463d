/* d2c.h — IoT Hub's device-to-cloud HTTP API on devhost's port, independent of the server.
 *
 * Owns the `/devices/...` routes, as IoT Hub's REST API answers them:
 *   POST /devices/{id}/messages/events?api-version=...   send one message (the body), or a
 *        batch (Content-Type application/vnd.microsoft.iothub.json: [{"body":"<base64>",
 *        "properties":{"iothub-app-k":"v",...}},...]); 204 once durable.
 *   GET  /devices/{id}/messages/deviceBound?api-version=...   cloud-to-device poll of the HTTP
 *        SDKs; the local hub has no C2D messages, so an authenticated device gets 204.
 * Request headers: Authorization (a device SAS token, sas.h), `iothub-app-<name>` (application
 * properties), `iothub-messageid`, `-correlationid`, `-contenttype`, `-contentencoding`,
 * `-userid` (system properties; names matched case-insensitively, as the SDKs differ). Errors
 * are IoT Hub's: status, an `iothub-errorcode` header and the body
 *   {"Message":"ErrorCode:<Code>;<text>","ExceptionMessage":"Tracking ID:<id>-G:0-TimeStamp:<time>"}
 * and nothing is stored for a refused request.
 *
 * The server plugs in through iothub_http_req_t: method, decoded path, a visitor over headers
 * and query arguments, and the body (read up to IOTHUB_D2C_MAX_BODY bytes; flag anything more
 * as truncated and the answer is 413 without reading it). iothub_d2c_handle answers at once
 * (errors) or later from a partition's committer thread (the durable 204), so an event-driven
 * server can suspend the connection; iothub_d2c_handle_wait blocks instead. */
#ifndef ENVIROMON_IOTHUB_D2C_H
#define ENVIROMON_IOTHUB_D2C_H

#include <stddef.h>

#include "devhost/iothub/hub.h"

/* A batch's JSON carries base64 bodies (4/3 of 256 KiB) plus framing; anything longer cannot
 * hold an acceptable batch. */
#define IOTHUB_D2C_MAX_BODY (512u * 1024u)

struct cJSON;

/* A batch body (Content-Type application/vnd.microsoft.iothub.json) as messages: msgs[0..n),
 * whose strings point into doc and whose bodies are bodies[i] and property arrays props[i]. */
typedef struct iothub_d2c_batch {
    struct cJSON   *doc;
    iothub_msg_t   *msgs;
    unsigned char **bodies;
    iothub_prop_t **props;
    size_t          n;
} iothub_d2c_batch_t;

/* Parse a batch body: a JSON array of 1 to 500 {"body":"<strict base64>","properties":{...}}
 * whose property names are iothub-app-<name> (name and value as iothub_prop_text_valid allows,
 * each name once ignoring case) or the system properties iothub-messageid, -correlationid,
 * -contenttype, -contentencoding, -userid (each once), values strings. Pure, any bytes (a fuzz
 * target). Returns 0, or -1 with the problem in err; b is to be freed in either case. Sizes
 * (IoT Hub's 256 KiB rule) are checked when the messages are sent, not here. */
int  iothub_d2c_batch_parse(const void *body, size_t len, iothub_d2c_batch_t *b, char *err, size_t errlen);
void iothub_d2c_batch_free(iothub_d2c_batch_t *b);

typedef enum { IOTHUB_HTTP_HEADER = 0, IOTHUB_HTTP_QUERY = 1 } iothub_http_kind_t;

/* Visit callback: return non-zero to stop. */
typedef int (*iothub_http_visit_fn)(void *ctx, const char *name, const char *value);

typedef struct iothub_http_req {
    const char *method;            /* "POST", "GET", ... */
    const char *path;              /* percent-decoded path, e.g. "/devices/dev1/messages/events" */
    /* Call visit(ctx, name, value) for every header (kind IOTHUB_HTTP_HEADER) or every decoded
     * query argument (IOTHUB_HTTP_QUERY) of the request, until visit returns non-zero. */
    void      (*each)(void *arg, iothub_http_kind_t kind, iothub_http_visit_fn visit, void *ctx);
    void       *arg;
    const void *body;
    size_t      body_len;
    int         body_truncated;    /* the body was longer than IOTHUB_D2C_MAX_BODY (not all read) */
} iothub_http_req_t;

typedef struct iothub_http_resp {
    int    status;                 /* 204, 400, 401, 404, 405, 413, 429, 503 */
    char   error_code[48];         /* for the `iothub-errorcode` header; "" on success */
    char   allow[16];              /* for the `Allow` header of a 405; "" otherwise */
    char   content_type[40];       /* "" when there is no body */
    char   body[1024];             /* the JSON error body (body_len bytes) */
    size_t body_len;
} iothub_http_resp_t;

/* Called once, from another thread, with the final answer of a pending request. resp is valid
 * during the call only. */
typedef void (*iothub_d2c_done_fn)(void *arg, const iothub_http_resp_t *resp);

/* 1 when path belongs to the device API ("/devices/..."), so the server routes it here. */
int iothub_d2c_match(const char *path);

/* Handle a request. Returns 1 when *resp holds the answer now, or 0 when the answer will be
 * given to done(arg, resp) (the messages are queued for the disk). The request (body included)
 * may be freed as soon as this returns. */
int iothub_d2c_handle(iothub_t *h, const iothub_http_req_t *req, iothub_http_resp_t *resp,
                      iothub_d2c_done_fn done, void *arg);

/* The same, blocking until the answer is known. */
void iothub_d2c_handle_wait(iothub_t *h, const iothub_http_req_t *req, iothub_http_resp_t *resp);

/* Fill resp with an IoT Hub error (status from st unless status != 0). Exposed for servers that
 * refuse a request themselves (e.g. a body too large to read: IOTHUB_E_TOO_LARGE). */
void iothub_d2c_error(iothub_http_resp_t *resp, iothub_status_t st, int status, const char *code,
                      const char *text);

#endif
