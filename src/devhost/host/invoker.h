/* invoker.h — the HTTP client that POSTs invocations to the handler, as the host's
 * DefaultHttpWorkerService does.
 *
 * Owns: POST http://127.0.0.1:<port>/<FunctionName> with Content-Type application/json;
 * charset=utf-8, X-Azure-Functions-InvocationId, X-Azure-Functions-HostVersion and
 * User-Agent: Azure-Functions-Host/<version>; keep-alive connections (a pool of idle sockets, each
 * checked before reuse);
 * waiting for the handler to be ready (an invocation arriving while it (re)starts waits, up to
 * the readiness limit); one transparent retry when the connection is refused before the request
 * was sent anywhere because the handler has just died (it never saw the request, so nothing runs
 * twice; a request the handler may have received is never re-sent: it fails, as in the host);
 * replies with Content-Length, chunked, or ended by the connection; the function
 * timeout; and aborting in-flight requests when devhost stops. Thread-safe. */
#ifndef ENVIROMON_DH_INVOKER_H
#define ENVIROMON_DH_INVOKER_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct dh_supervisor;

#define DH_HOST_VERSION "4.0.0-devhost"

typedef struct dh_invoker dh_invoker_t;

typedef struct dh_answer {
    long  status;             /* the handler's HTTP status */
    char  content_type[128];  /* its Content-Type ("" when none) */
    buf_t body;               /* its body */
} dh_answer_t;

/* timeout_ms: per-invocation limit (-1: none; devhost then uses 24 h). stopping: set by the
 * host when it stops; aborts waits and transfers. NULL when out of memory. */
dh_invoker_t *dh_invoker_new(struct dh_supervisor *sup, int64_t timeout_ms, const volatile int *stopping);
void dh_invoker_free(dh_invoker_t *iv);

/* Abort every request in progress (their sockets are shut down) and any later one: for stopping. */
void dh_invoker_abort(dh_invoker_t *iv);

/* POST body[0..len) to /<function> with the invocation id. Returns 0 when the handler answered
 * (any status; ans filled; free ans->body), or -1 with err when it could not be reached, the
 * transfer failed or timed out, or devhost is stopping. */
int dh_invoker_post(dh_invoker_t *iv, const char *function, const char *invocation_id, const char *body, size_t len,
                    dh_answer_t *ans, char *err, size_t errlen);

#endif
