/* server.h — the custom handler's HTTP server (libmicrohttpd).
 *
 * Owns the socket the Functions host talks to: binds 127.0.0.1:<FUNCTIONS_CUSTOMHANDLER_PORT>,
 * answers the host's readiness probe (GET /), routes POST /<FunctionName> case-insensitively
 * to the registered functions, collects request bodies with or without Content-Length
 * (chunked), enforces the body limit (413), rejects malformed JSON (400) and unknown
 * functions (404), and always answers application/json. A function with a body reader
 * (EventTrigger) gets its body chunk by chunk as it arrives instead of as one parsed
 * document. One thread per connection: an EventTrigger invocation may wait on storage for
 * seconds and must not hold up others. A request counts as in flight from the moment its
 * body is complete, so a client that stalls mid-upload never holds up shutdown. */
#ifndef ENVIROMON_SERVER_H
#define ENVIROMON_SERVER_H

#include "handler/app.h"

typedef struct server server_t;

/* Start listening on 127.0.0.1:port (app->cfg.port) and serve app_functions. NULL on
 * error with a message in err (e.g. the port is in use). */
server_t *server_start(app_t *app, char *err, size_t errlen);

/* Graceful stop: stop accepting, wait up to drain_ms for in-flight requests to finish,
 * then close everything and free the server. */
void server_stop(server_t *srv, int drain_ms);

/* Requests currently being processed: bodies complete, answers not yet sent (for tests and
 * shutdown). */
int server_inflight(const server_t *srv);

/* Requests finished so far; unchanged between two looks with nothing in flight = idle. */
unsigned long server_activity(const server_t *srv);

#endif
