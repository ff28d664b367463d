/* signalr_hub.c — registry of the local SignalR Service: connections, hubs, users, groups
 * and fan-out (see signalr_hub.h for what it owns and why).
 *
 * Lock order: registry lock, then a client's lock (sr_client_* calls). Nothing here is called
 * with a client lock held. */
#include "devhost/signalr/signalr_hub.h"

#include <assert.h>
#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* ---- small containers ------------------------------------------------------------- */

typedef struct vec { void **v; size_t n, cap; } vec_t;

static int vec_push(vec_t *a, void *p)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 8;
        void **nv = realloc(a->v, ncap * sizeof *nv);
        if (!nv) return -1;
        a->v = nv;
        a->cap = ncap;
    }
    a->v[a->n++] = p;
    return 0;
}

static int vec_find(const vec_t *a, const void *p)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] == p) return (int)i;
    return -1;
}

static void vec_remove(vec_t *a, const void *p)
{
    int i = vec_find(a, p);
    if (i >= 0) a->v[i] = a->v[--a->n];
}

typedef struct map_ent { char *key; void *val; struct map_ent *next; } map_ent_t;
typedef struct map { map_ent_t **b; size_t nb, n; } map_t;

static size_t map_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ULL; }
    return (size_t)h;
}

static void *map_get(const map_t *m, const char *key)
{
    if (!m->nb) return NULL;
    for (map_ent_t *e = m->b[map_hash(key) & (m->nb - 1)]; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e->val;
    return NULL;
}

static int map_grow(map_t *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    map_ent_t **b = calloc(nb, sizeof *b);
    if (!b) return -1;
    for (size_t i = 0; i < m->nb; i++) {
        for (map_ent_t *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            size_t h = map_hash(e->key) & (nb - 1);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

/* Insert or replace. Returns 0 or -1 (OOM). */
static int map_put(map_t *m, const char *key, void *val)
{
    if (m->n >= m->nb && map_grow(m) != 0 && !m->nb) return -1;
    size_t h = map_hash(key) & (m->nb - 1);
    for (map_ent_t *e = m->b[h]; e; e = e->next)
        if (strcmp(e->key, key) == 0) { e->val = val; return 0; }
    map_ent_t *e = malloc(sizeof *e);
    if (!e) return -1;
    e->key = strdup(key);
    if (!e->key) { free(e); return -1; }
    e->val = val;
    e->next = m->b[h];
    m->b[h] = e;
    m->n++;
    return 0;
}

static void *map_del(map_t *m, const char *key)
{
    if (!m->nb) return NULL;
    for (map_ent_t **pp = &m->b[map_hash(key) & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            map_ent_t *e = *pp;
            void *v = e->val;
            *pp = e->next;
            free(e->key);
            free(e);
            m->n--;
            return v;
        }
    }
    return NULL;
}

static void map_clear(map_t *m, void (*fv)(void *))
{
    for (size_t i = 0; i < m->nb; i++) {
        for (map_ent_t *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            if (fv) fv(e->val);
            free(e->key);
            free(e);
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}

/* ---- registry ---------------------------------------------------------------------- */

typedef struct group { vec_t clients; map_t users; } group_t;
typedef struct hub { vec_t clients; map_t users; /* user → vec_t* */ map_t groups; } hub_t;

struct sr_registry {
    pthread_rwlock_t lock;
    map_t by_key, by_id, hubs;
    size_t active;
    int closed;
};

static void group_free(void *p)
{
    group_t *g = p;
    free(g->clients.v);
    map_clear(&g->users, NULL);
    free(g);
}

static void vec_free(void *p)
{
    vec_t *v = p;
    free(v->v);
    free(v);
}

static void hub_free(void *p)
{
    hub_t *h = p;
    free(h->clients.v);
    map_clear(&h->users, vec_free);
    map_clear(&h->groups, group_free);
    free(h);
}

static void client_unref_v(void *p) { sr_client_unref(p); }

sr_registry_t *sr_registry_new(void)
{
    sr_registry_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (pthread_rwlock_init(&r->lock, NULL) != 0) { free(r); return NULL; }
    return r;
}

void sr_registry_free(sr_registry_t *r)
{
    if (!r) return;
    map_clear(&r->by_id, NULL);
    map_clear(&r->by_key, client_unref_v);
    map_clear(&r->hubs, hub_free);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

/* Lower-case hub into out (SR_HUB_MAX + 1). Returns 0, or -1 when too long. */
static int hub_key(const char *hub, char *out)
{
    size_t n = strlen(hub);
    if (n > SR_HUB_MAX) return -1;
    for (size_t i = 0; i <= n; i++) out[i] = (char)tolower((unsigned char)hub[i]);
    return 0;
}

static hub_t *hub_get(sr_registry_t *r, const char *hub, int create)
{
    char k[SR_HUB_MAX + 1];
    if (hub_key(hub, k) != 0) return NULL;
    hub_t *h = map_get(&r->hubs, k);
    if (h || !create) return h;
    h = calloc(1, sizeof *h);
    if (!h) return NULL;
    if (map_put(&r->hubs, k, h) != 0) { free(h); return NULL; }
    return h;
}

static group_t *group_get(hub_t *h, const char *group, int create)
{
    group_t *g = map_get(&h->groups, group);
    if (g || !create) return g;
    g = calloc(1, sizeof *g);
    if (!g) return NULL;
    if (map_put(&h->groups, group, g) != 0) { free(g); return NULL; }
    return g;
}

static void group_maybe_drop(hub_t *h, const char *group, group_t *g)
{
    if (g->clients.n == 0 && g->users.n == 0) {
        map_del(&h->groups, group);
        group_free(g);
    }
}

/* Free a hub that holds nothing any more (no connection, no user, no group), so that hub
 * names that come and go cost nothing once unused. h may be NULL. */
static void hub_maybe_drop(sr_registry_t *r, const char *hub, hub_t *h)
{
    char k[SR_HUB_MAX + 1];
    if (!h || h->clients.n || h->users.n || h->groups.n || hub_key(hub, k) != 0) return;
    void *gone = map_del(&r->hubs, k);
    assert(gone == h);
    (void)gone;
    hub_free(h);
}

int sr_registry_add(sr_registry_t *r, sr_client_t *c)
{
    pthread_rwlock_wrlock(&r->lock);
    if (r->closed) { pthread_rwlock_unlock(&r->lock); return -2; }
    if (map_put(&r->by_key, c->key, c) != 0) { pthread_rwlock_unlock(&r->lock); return -1; }
    if (map_put(&r->by_id, c->id, c) != 0) {
        map_del(&r->by_key, c->key);
        pthread_rwlock_unlock(&r->lock);
        return -1;
    }
    sr_client_ref(c);
    c->listed = 1;
    pthread_rwlock_unlock(&r->lock);
    return 0;
}

sr_client_t *sr_registry_find(sr_registry_t *r, const char *key)
{
    pthread_rwlock_rdlock(&r->lock);
    sr_client_t *c = map_get(&r->by_key, key);
    if (c) sr_client_ref(c);
    pthread_rwlock_unlock(&r->lock);
    return c;
}

int sr_registry_activate(sr_registry_t *r, sr_client_t *c)
{
    int rc = 0;
    pthread_rwlock_wrlock(&r->lock);
    pthread_mutex_lock(&c->lock);
    int closing = c->state == SR_CLIENT_CLOSING;
    pthread_mutex_unlock(&c->lock);
    if (c->active || !c->listed || closing) goto out;
    hub_t *h = hub_get(r, c->hub, 1);
    if (!h || vec_push(&h->clients, c) != 0) { rc = -1; goto fail; }
    if (c->user) {
        vec_t *uv = map_get(&h->users, c->user);
        if (!uv) {
            uv = calloc(1, sizeof *uv);
            if (!uv || map_put(&h->users, c->user, uv) != 0) {
                free(uv);
                vec_remove(&h->clients, c);
                rc = -1;
                goto fail;
            }
        }
        if (vec_push(uv, c) != 0) { vec_remove(&h->clients, c); rc = -1; goto fail; }
    }
    c->active = 1;
    r->active++;
    goto out;
fail:
    hub_maybe_drop(r, c->hub, h);
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

static void deactivate_locked(sr_registry_t *r, sr_client_t *c)
{
    if (!c->active) return;
    hub_t *h = hub_get(r, c->hub, 0);
    if (h) {
        vec_remove(&h->clients, c);
        if (c->user) {
            vec_t *uv = map_get(&h->users, c->user);
            if (uv) {
                vec_remove(uv, c);
                if (uv->n == 0) { map_del(&h->users, c->user); vec_free(uv); }
            }
        }
        for (size_t i = 0; i < c->ngroups; i++) {
            group_t *g = map_get(&h->groups, c->groups[i]);
            if (g) {
                vec_remove(&g->clients, c);
                group_maybe_drop(h, c->groups[i], g);
            }
        }
    }
    for (size_t i = 0; i < c->ngroups; i++) free(c->groups[i]);
    c->ngroups = 0;
    c->active = 0;
    r->active--;
    hub_maybe_drop(r, c->hub, h);
}

void sr_registry_deactivate(sr_registry_t *r, sr_client_t *c)
{
    pthread_rwlock_wrlock(&r->lock);
    deactivate_locked(r, c);
    pthread_rwlock_unlock(&r->lock);
}

void sr_registry_remove(sr_registry_t *r, sr_client_t *c)
{
    int drop = 0;
    pthread_rwlock_wrlock(&r->lock);
    deactivate_locked(r, c);
    if (c->listed) {
        map_del(&r->by_key, c->key);
        map_del(&r->by_id, c->id);
        c->listed = 0;
        drop = 1;
    }
    pthread_rwlock_unlock(&r->lock);
    if (drop) sr_client_unref(c);
}

void sr_registry_close(sr_registry_t *r)
{
    pthread_rwlock_wrlock(&r->lock);
    r->closed = 1;
    pthread_rwlock_unlock(&r->lock);
}

size_t sr_registry_snapshot(sr_registry_t *r, sr_client_t ***out)
{
    *out = NULL;
    pthread_rwlock_rdlock(&r->lock);
    size_t n = r->by_key.n, k = 0;
    sr_client_t **arr = n ? malloc(n * sizeof *arr) : NULL;
    if (arr) {
        for (size_t i = 0; i < r->by_key.nb; i++)
            for (map_ent_t *e = r->by_key.b[i]; e && k < n; e = e->next) {
                arr[k] = e->val;
                sr_client_ref(arr[k++]);
            }
    }
    pthread_rwlock_unlock(&r->lock);
    *out = arr;
    return arr ? k : 0;
}

void sr_registry_counts(sr_registry_t *r, size_t *listed, size_t *active)
{
    pthread_rwlock_rdlock(&r->lock);
    *listed = r->by_key.n;
    *active = r->active;
    pthread_rwlock_unlock(&r->lock);
}

size_t sr_registry_hub_count(sr_registry_t *r)
{
    pthread_rwlock_rdlock(&r->lock);
    size_t n = r->hubs.n;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

static int is_excluded(const sr_client_t *c, const char *const *ex, size_t nex)
{
    for (size_t i = 0; i < nex; i++)
        if (strcmp(c->id, ex[i]) == 0) return 1;
    return 0;
}

static long deliver(vec_t *targets, const char *rec, size_t len, const char *const *ex, size_t nex)
{
    long n = 0;
    for (size_t i = 0; i < targets->n; i++) {
        sr_client_t *c = targets->v[i];
        if (nex && is_excluded(c, ex, nex)) continue;
        if (sr_client_enqueue(c, rec, len) == 0) n++;
    }
    return n;
}

long sr_registry_send_all(sr_registry_t *r, const char *hub, const char *rec, size_t len,
                          const char *const *excluded, size_t nexcluded)
{
    pthread_rwlock_rdlock(&r->lock);
    hub_t *h = hub_get(r, hub, 0);
    long n = h ? deliver(&h->clients, rec, len, excluded, nexcluded) : 0;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

long sr_registry_send_user(sr_registry_t *r, const char *hub, const char *user,
                           const char *rec, size_t len)
{
    pthread_rwlock_rdlock(&r->lock);
    hub_t *h = hub_get(r, hub, 0);
    vec_t *uv = h ? map_get(&h->users, user) : NULL;
    long n = uv ? deliver(uv, rec, len, NULL, 0) : 0;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

static int ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

long sr_registry_send_group(sr_registry_t *r, const char *hub, const char *group,
                            const char *rec, size_t len,
                            const char *const *excluded, size_t nexcluded)
{
    long n = 0;
    pthread_rwlock_rdlock(&r->lock);
    hub_t *h = hub_get(r, hub, 0);
    group_t *g = h ? group_get(h, group, 0) : NULL;
    if (g) {
        if (g->users.n == 0) {
            n = deliver(&g->clients, rec, len, excluded, nexcluded);
        } else {
            /* Members are explicit connections plus every connection of member users; a
             * connection in both gets the record once. */
            vec_t all = {0};
            int oom = 0;
            for (size_t i = 0; i < g->clients.n && !oom; i++) oom = vec_push(&all, g->clients.v[i]);
            for (size_t b = 0; b < g->users.nb && !oom; b++)
                for (map_ent_t *e = g->users.b[b]; e && !oom; e = e->next) {
                    vec_t *uv = map_get(&h->users, e->key);
                    for (size_t i = 0; uv && i < uv->n && !oom; i++) oom = vec_push(&all, uv->v[i]);
                }
            if (oom) {
                n = -1;
            } else {
                if (all.n > 1) qsort(all.v, all.n, sizeof *all.v, ptr_cmp);
                size_t k = 0;
                for (size_t i = 0; i < all.n; i++)
                    if (k == 0 || all.v[k - 1] != all.v[i]) all.v[k++] = all.v[i];
                all.n = k;
                n = deliver(&all, rec, len, excluded, nexcluded);
            }
            free(all.v);
        }
    }
    pthread_rwlock_unlock(&r->lock);
    return n;
}

/* The active client with this id in this hub, or NULL. Registry lock held. */
static sr_client_t *active_in_hub(sr_registry_t *r, const char *hub, const char *conn_id)
{
    char k[SR_HUB_MAX + 1];
    if (hub_key(hub, k) != 0) return NULL;
    sr_client_t *c = map_get(&r->by_id, conn_id);
    return c && c->active && strcmp(c->hub, k) == 0 ? c : NULL;
}

long sr_registry_send_connection(sr_registry_t *r, const char *hub, const char *conn_id,
                                 const char *rec, size_t len)
{
    pthread_rwlock_rdlock(&r->lock);
    sr_client_t *c = active_in_hub(r, hub, conn_id);
    long n = c && sr_client_enqueue(c, rec, len) == 0 ? 1 : 0;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

int sr_registry_group_add_connection(sr_registry_t *r, const char *hub, const char *group,
                                     const char *conn_id)
{
    int rc = 0;
    pthread_rwlock_wrlock(&r->lock);
    sr_client_t *c = active_in_hub(r, hub, conn_id);
    hub_t *h = c ? hub_get(r, hub, 0) : NULL;
    if (!c || !h) { rc = 1; goto out; }
    group_t *g = group_get(h, group, 1);
    if (!g) { rc = -1; goto out; }
    if (vec_find(&g->clients, c) >= 0) goto out;
    if (c->ngroups == c->capgroups) {
        size_t ncap = c->capgroups ? c->capgroups * 2 : 4;
        char **ng = realloc(c->groups, ncap * sizeof *ng);
        if (!ng) { rc = -1; group_maybe_drop(h, group, g); goto out; }
        c->groups = ng;
        c->capgroups = ncap;
    }
    char *name = strdup(group);
    if (!name || vec_push(&g->clients, c) != 0) {
        free(name);
        rc = -1;
        group_maybe_drop(h, group, g);
        goto out;
    }
    c->groups[c->ngroups++] = name;
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int sr_registry_group_remove_connection(sr_registry_t *r, const char *hub, const char *group,
                                        const char *conn_id)
{
    int rc = 0;
    pthread_rwlock_wrlock(&r->lock);
    sr_client_t *c = active_in_hub(r, hub, conn_id);
    hub_t *h = c ? hub_get(r, hub, 0) : NULL;
    if (!c || !h) { rc = 1; goto out; }
    group_t *g = group_get(h, group, 0);
    if (g) {
        vec_remove(&g->clients, c);
        group_maybe_drop(h, group, g);
    }
    /* (h stays: c is active in it) */
    for (size_t i = 0; i < c->ngroups; i++) {
        if (strcmp(c->groups[i], group) == 0) {
            free(c->groups[i]);
            c->groups[i] = c->groups[--c->ngroups];
            break;
        }
    }
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int sr_registry_group_add_user(sr_registry_t *r, const char *hub, const char *group,
                               const char *user)
{
    int rc = 0;
    pthread_rwlock_wrlock(&r->lock);
    hub_t *h = hub_get(r, hub, 1);
    group_t *g = h ? group_get(h, group, 1) : NULL;
    if (!g || map_put(&g->users, user, g) != 0) {
        rc = -1;
        if (g) group_maybe_drop(h, group, g);
        hub_maybe_drop(r, hub, h);
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int sr_registry_group_remove_user(sr_registry_t *r, const char *hub, const char *group,
                                  const char *user)
{
    pthread_rwlock_wrlock(&r->lock);
    hub_t *h = hub_get(r, hub, 0);
    group_t *g = h ? group_get(h, group, 0) : NULL;
    if (g) {
        map_del(&g->users, user);
        group_maybe_drop(h, group, g);
        hub_maybe_drop(r, hub, h);
    }
    pthread_rwlock_unlock(&r->lock);
    return 0;
}

int sr_registry_user_leave_all(sr_registry_t *r, const char *hub, const char *user)
{
    int rc = 0;
    pthread_rwlock_wrlock(&r->lock);
    hub_t *h = hub_get(r, hub, 0);
    if (h && h->groups.n) {
        /* Collect first: dropping empty groups changes the map being walked. */
        vec_t names = {0};
        for (size_t b = 0; b < h->groups.nb && !rc; b++)
            for (map_ent_t *e = h->groups.b[b]; e && !rc; e = e->next)
                if (map_get(&((group_t *)e->val)->users, user)) rc = vec_push(&names, e->key);
        for (size_t i = 0; i < names.n; i++) {
            char *name = strdup(names.v[i]);
            if (!name) { rc = -1; break; }
            group_t *g = map_get(&h->groups, name);
            if (g) {
                map_del(&g->users, user);
                group_maybe_drop(h, name, g);
            }
            free(name);
        }
        free(names.v);
        hub_maybe_drop(r, hub, h);
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int sr_registry_has_connection(sr_registry_t *r, const char *hub, const char *conn_id)
{
    pthread_rwlock_rdlock(&r->lock);
    int yes = active_in_hub(r, hub, conn_id) != NULL;
    pthread_rwlock_unlock(&r->lock);
    return yes;
}

int sr_registry_has_user(sr_registry_t *r, const char *hub, const char *user)
{
    pthread_rwlock_rdlock(&r->lock);
    hub_t *h = hub_get(r, hub, 0);
    vec_t *uv = h ? map_get(&h->users, user) : NULL;
    int yes = uv && uv->n > 0;
    pthread_rwlock_unlock(&r->lock);
    return yes;
}

int sr_registry_has_group(sr_registry_t *r, const char *hub, const char *group)
{
    pthread_rwlock_rdlock(&r->lock);
    hub_t *h = hub_get(r, hub, 0);
    group_t *g = h ? group_get(h, group, 0) : NULL;
    int yes = 0;
    if (g) {
        yes = g->clients.n > 0;
        for (size_t b = 0; b < g->users.nb && !yes; b++)
            for (map_ent_t *e = g->users.b[b]; e && !yes; e = e->next) {
                vec_t *uv = map_get(&h->users, e->key);
                yes = uv && uv->n > 0;
            }
    }
    pthread_rwlock_unlock(&r->lock);
    return yes;
}

int sr_registry_close_connection(sr_registry_t *r, const char *hub, const char *conn_id,
                                 const char *reason)
{
    pthread_rwlock_rdlock(&r->lock);
    sr_client_t *c = active_in_hub(r, hub, conn_id);
    if (c) sr_client_ref(c);
    pthread_rwlock_unlock(&r->lock);
    if (!c) return 0;
    sr_client_close(c, reason, 1, NULL, 0);
    sr_client_unref(c);
    return 1;
}
