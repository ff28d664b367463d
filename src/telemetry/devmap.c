/* devmap.c — chained hash map keyed by device id, with an LRU list (see devmap.h). */
#include "telemetry/devmap.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next;            /* bucket chain */
    struct entry *newer, *older;   /* LRU list */
    uint64_t      hash;
    size_t        size;            /* value bytes */
    char         *key;             /* points after the value */
    alignas(max_align_t) unsigned char value[];
} entry_t;

struct devmap {
    entry_t **buckets;
    size_t    nbuckets, count, max;
    entry_t  *newest, *oldest;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ULL; }
    return h;
}

devmap_t *devmap_new(size_t max_entries)
{
    devmap_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->nbuckets = 256;
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    if (!m->buckets) { free(m); return NULL; }
    m->max = max_entries;
    return m;
}

void devmap_clear(devmap_t *m)
{
    if (!m) return;
    for (entry_t *e = m->newest, *n; e; e = n) {
        n = e->older;
        free(e);
    }
    memset(m->buckets, 0, m->nbuckets * sizeof *m->buckets);
    m->newest = m->oldest = NULL;
    m->count = 0;
}

void devmap_free(devmap_t *m)
{
    if (!m) return;
    devmap_clear(m);
    free(m->buckets);
    free(m);
}

static entry_t **find(devmap_t *m, const char *key, uint64_t h)
{
    entry_t **pp = &m->buckets[h & (m->nbuckets - 1)];
    while (*pp && !((*pp)->hash == h && strcmp((*pp)->key, key) == 0)) pp = &(*pp)->next;
    return pp;
}

static void lru_unlink(devmap_t *m, entry_t *e)
{
    if (e->newer) e->newer->older = e->older;
    else m->newest = e->older;
    if (e->older) e->older->newer = e->newer;
    else m->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(devmap_t *m, entry_t *e)
{
    e->newer = NULL;
    e->older = m->newest;
    if (m->newest) m->newest->newer = e;
    m->newest = e;
    if (!m->oldest) m->oldest = e;
}

void *devmap_get(devmap_t *m, const char *key, size_t *size)
{
    entry_t *e = *find(m, key, hash_str(key));
    if (!e) return NULL;
    if (m->newest != e) {
        lru_unlink(m, e);
        lru_push(m, e);
    }
    if (size) *size = e->size;
    return e->value;
}

static void grow(devmap_t *m)
{
    size_t nb = m->nbuckets * 2;
    entry_t **b = calloc(nb, sizeof *b);
    if (!b) return;   /* keep working with longer chains */
    for (size_t i = 0; i < m->nbuckets; i++) {
        entry_t *e = m->buckets[i];
        while (e) {
            entry_t *n = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = n;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

/* Unlink and free the entry *pp points to. */
static void drop(devmap_t *m, entry_t **pp)
{
    entry_t *e = *pp;
    *pp = e->next;
    lru_unlink(m, e);
    free(e);
    m->count--;
}

void *devmap_put(devmap_t *m, const char *key, const void *value, size_t size)
{
    uint64_t h = hash_str(key);
    entry_t **pp = find(m, key, h);
    if (*pp && (*pp)->size == size) {
        memcpy((*pp)->value, value, size);
        devmap_get(m, key, NULL);   /* now the most recent */
        return (*pp)->value;
    }
    if (*pp) drop(m, pp);
    if (m->max && m->count >= m->max && m->oldest) {
        entry_t *old = m->oldest;
        drop(m, find(m, old->key, old->hash));
    }
    size_t klen = strlen(key);
    entry_t *e = malloc(sizeof *e + size + klen + 1);
    if (!e) return NULL;
    e->hash = h;
    e->size = size;
    e->key = (char *)e->value + size;
    memcpy(e->key, key, klen + 1);
    memcpy(e->value, value, size);
    pp = find(m, key, h);   /* the chain may have changed */
    e->next = NULL;
    *pp = e;
    lru_push(m, e);
    m->count++;
    if (m->count > m->nbuckets * 2) grow(m);
    return e->value;
}

void devmap_del(devmap_t *m, const char *key)
{
    entry_t **pp = find(m, key, hash_str(key));
    if (*pp) drop(m, pp);
}

size_t devmap_count(const devmap_t *m)
{
    return m ? m->count : 0;
}
