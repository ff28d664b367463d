/* conn_guard.h — admission guard of a libmicrohttpd server against slow clients: devhost's front
 * port, the local SignalR Service and the handler's port all use it.
 *
 * Owns: the list of connections whose current request has not fully arrived yet (a new
 * connection, or a keep-alive connection between requests), in arrival order. A request must
 * arrive whole (headers and body) within a deadline of its connection opening or of the
 * previous response; the server's housekeeping thread closes connections past it (conn_guard_sweep). And when more than
 * max_pending connections are waiting for their request, the oldest is closed at once, so that
 * slow-drip clients (each sending part of a header now and then) can never fill the
 * connection limit and lock new clients out. Why here and not in libmicrohttpd: its
 * connection timeout is an idle timeout (each byte resets it) and it has no header deadline.
 *
 * Closing means shutdown(2) on the socket: libmicrohttpd then reads EOF and closes the
 * connection itself. That is safe from any thread because the guard's lock is held and
 * libmicrohttpd reports a connection closed (conn_guard_closed, which takes the lock) before it
 * closes its descriptor, so a listed descriptor is never a reused one. */
#ifndef ENVIROMON_CONN_GUARD_H
#define ENVIROMON_CONN_GUARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct conn_guard conn_guard_t;
typedef struct conn_guard_conn conn_guard_conn_t;

/* New guard; deadline_ms > 0, max_pending >= 1. NULL when out of memory. */
conn_guard_t *conn_guard_new(int deadline_ms, size_t max_pending);
/* Free the guard (every connection must have been reported closed). */
void conn_guard_free(conn_guard_t *g);

/* A connection on socket fd was accepted: it waits for its first request. May close the
 * oldest waiting connection to keep room. Returns the connection's handle (to keep as
 * libmicrohttpd's socket context), or NULL when out of memory (the connection is then simply
 * not guarded). */
conn_guard_conn_t *conn_guard_opened(conn_guard_t *g, int fd);
/* Its request arrived whole: it no longer waits. NULL is ignored. */
void conn_guard_request_arrived(conn_guard_t *g, conn_guard_conn_t *k);
/* Its response is done and the connection stays open: it waits for the next request. */
void conn_guard_idle(conn_guard_t *g, conn_guard_conn_t *k);
/* libmicrohttpd is closing it (before closing the descriptor): forget and free k. */
void conn_guard_closed(conn_guard_t *g, conn_guard_conn_t *k);

/* Milliseconds on a monotonic clock (CLOCK_MONOTONIC): the guard's time base. */
int64_t conn_guard_now_ms(void);

/* Close every waiting connection whose deadline passed at now_ms (conn_guard_now_ms). Returns
 * how many were closed. */
size_t conn_guard_sweep(conn_guard_t *g, int64_t now_ms);

/* Connections closed so far for missing the deadline and for making room (monotonic). */
void conn_guard_counts(conn_guard_t *g, uint64_t *expired, uint64_t *evicted, size_t *pending);

/* A thread that sweeps g every 250 ms and, when it closed connections, logs one warning line
 * per 10 s naming who ("devhost", "handler"). NULL when no thread could be started. Stop it
 * before stopping the server and freeing g. */
typedef struct conn_guard_sweeper conn_guard_sweeper_t;
conn_guard_sweeper_t *conn_guard_sweeper_start(conn_guard_t *g, const char *who);
void conn_guard_sweeper_stop(conn_guard_sweeper_t *s);

#endif
