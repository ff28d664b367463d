/* signalr_guard.h — admission guard of the local SignalR Service's HTTP server.
 *
 * Owns: the list of connections whose current request has not fully arrived yet (a new
 * connection, or a keep-alive connection between requests), in arrival order. A request must
 * arrive whole (headers and body) within a deadline of its connection opening or of the
 * previous response; the housekeeping thread closes connections past it. And when more than
 * max_pending connections are waiting for their request, the oldest is closed at once, so that
 * slow-drip clients (each sending part of a header now and then) can never fill the
 * connection limit and lock new clients out. Why here and not in libmicrohttpd: its
 * connection timeout is an idle timeout (each byte resets it) and it has no header deadline.
 *
 * Closing means shutdown(2) on the socket: libmicrohttpd then reads EOF and closes the
 * connection itself. That is safe from any thread because the guard's lock is held and
 * libmicrohttpd reports a connection closed (sr_guard_closed, which takes the lock) before it
 * closes its descriptor, so a listed descriptor is never a reused one. */
#ifndef ENVIROMON_SIGNALR_GUARD_H
#define ENVIROMON_SIGNALR_GUARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct sr_guard sr_guard_t;
typedef struct sr_guard_conn sr_guard_conn_t;

/* New guard; deadline_ms > 0, max_pending >= 1. NULL when out of memory. */
sr_guard_t *sr_guard_new(int deadline_ms, size_t max_pending);
/* Free the guard (every connection must have been reported closed). */
void sr_guard_free(sr_guard_t *g);

/* A connection on socket fd was accepted: it waits for its first request. May close the
 * oldest waiting connection to keep room. Returns the connection's handle (to keep as
 * libmicrohttpd's socket context), or NULL when out of memory (the connection is then simply
 * not guarded). */
sr_guard_conn_t *sr_guard_opened(sr_guard_t *g, int fd);
/* Its request arrived whole: it no longer waits. NULL is ignored. */
void sr_guard_request_arrived(sr_guard_t *g, sr_guard_conn_t *k);
/* Its response is done and the connection stays open: it waits for the next request. */
void sr_guard_idle(sr_guard_t *g, sr_guard_conn_t *k);
/* libmicrohttpd is closing it (before closing the descriptor): forget and free k. */
void sr_guard_closed(sr_guard_t *g, sr_guard_conn_t *k);

/* Close every waiting connection whose deadline passed at now_ms (sr_now_ms clock). Returns
 * how many were closed. */
size_t sr_guard_sweep(sr_guard_t *g, int64_t now_ms);

/* Connections closed so far for missing the deadline and for making room (monotonic). */
void sr_guard_counts(sr_guard_t *g, uint64_t *expired, uint64_t *evicted, size_t *pending);

#endif
