/* signalr_hub.h — the local SignalR Service's registry: connections, hubs, users, groups,
 * and fan-out.
 *
 * Owns: lookup of connections by transport key and by connection id, the per-hub lists of
 * connected clients, the users' connections, group membership (explicit connections and
 * users), and delivering one record to a set of targets. One read-write lock protects it all:
 * sends take it shared (many at once), membership changes take it exclusive. Delivering only
 * appends to each client's bounded queue (signalr_conn.h), so a slow client never blocks a
 * send. Hub names are compared lower-cased; user, group and connection ids exactly. */
#ifndef ENVIROMON_SIGNALR_HUB_H
#define ENVIROMON_SIGNALR_HUB_H

#include <stddef.h>

#include "devhost/signalr/signalr_conn.h"

typedef struct sr_registry sr_registry_t;

/* New empty registry, or NULL when out of memory. */
sr_registry_t *sr_registry_new(void);
/* Free it, dropping the registry's references to every client. */
void sr_registry_free(sr_registry_t *r);

/* Make c findable by key and id (the registry takes a reference). Returns 0, -1 when out of
 * memory, or -2 when the registry is closed (shutting down). */
int sr_registry_add(sr_registry_t *r, sr_client_t *c);
/* Find a listed client by transport key; returns a new reference or NULL. */
sr_client_t *sr_registry_find(sr_registry_t *r, const char *key);
/* List c in its hub and under its user (after the handshake). Returns 0 or -1 (OOM). */
int sr_registry_activate(sr_registry_t *r, sr_client_t *c);
/* Take c out of its hub, user and groups (no more deliveries); it stays findable by key. */
void sr_registry_deactivate(sr_registry_t *r, sr_client_t *c);
/* Deactivate and forget c entirely (drops the registry's reference). */
void sr_registry_remove(sr_registry_t *r, sr_client_t *c);
/* Refuse further sr_registry_add calls (shutdown). */
void sr_registry_close(sr_registry_t *r);

/* Every listed client, each with a new reference, in a malloc'd array (caller unrefs each
 * and frees the array). Returns the count; *out is NULL when zero or out of memory. */
size_t sr_registry_snapshot(sr_registry_t *r, sr_client_t ***out);
/* Number of listed clients and of active (connected) ones. */
void sr_registry_counts(sr_registry_t *r, size_t *listed, size_t *active);
/* Number of hubs held: a hub exists while it has a connection, a user or a group (tests). */
size_t sr_registry_hub_count(sr_registry_t *r);

/* Deliveries. Each returns the number of connections the record was queued for, or -1 on
 * out of memory. excluded (may be NULL) lists connection ids to skip. */
long sr_registry_send_all(sr_registry_t *r, const char *hub, const char *rec, size_t len,
                          const char *const *excluded, size_t nexcluded);
long sr_registry_send_user(sr_registry_t *r, const char *hub, const char *user,
                           const char *rec, size_t len);
long sr_registry_send_group(sr_registry_t *r, const char *hub, const char *group,
                            const char *rec, size_t len,
                            const char *const *excluded, size_t nexcluded);
/* Returns 1 when delivered, 0 when no such connected client in that hub. */
long sr_registry_send_connection(sr_registry_t *r, const char *hub, const char *conn_id,
                                 const char *rec, size_t len);

/* Group membership. Connection operations return 0, 1 when no such connection is active in
 * the hub, or -1 on out of memory. User operations return 0 or -1. */
int sr_registry_group_add_connection(sr_registry_t *r, const char *hub, const char *group,
                                     const char *conn_id);
int sr_registry_group_remove_connection(sr_registry_t *r, const char *hub, const char *group,
                                        const char *conn_id);
int sr_registry_group_add_user(sr_registry_t *r, const char *hub, const char *group,
                               const char *user);
int sr_registry_group_remove_user(sr_registry_t *r, const char *hub, const char *group,
                                  const char *user);
/* Remove user from every group of the hub. */
int sr_registry_user_leave_all(sr_registry_t *r, const char *hub, const char *user);

/* Existence checks for HEAD/GET routes: 1 when present (active), 0 otherwise. */
int sr_registry_has_connection(sr_registry_t *r, const char *hub, const char *conn_id);
int sr_registry_has_user(sr_registry_t *r, const char *hub, const char *user);
int sr_registry_has_group(sr_registry_t *r, const char *hub, const char *group);

/* Close one active connection of the hub (REST DELETE). Returns 1 when found, else 0. */
int sr_registry_close_connection(sr_registry_t *r, const char *hub, const char *conn_id,
                                 const char *reason);

#endif
