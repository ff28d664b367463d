/* devmap.c — chained hash map keyed by device id (see devmap.h). */
#include "telemetry/devmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next;
    uint64_t      hash;
    char         *key;
    unsigned char value[];
} entry_t;

struct devmap {
    entry_t **buckets;
    size_t    nbuckets;
    size_t    count;
    size_t    value_size;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ULL; }
    return h;
}

devmap_t *devmap_new(size_t value_size)
{
    devmap_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->nbuckets = 256;
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    if (!m->buckets) { free(m); return NULL; }
    m->value_size = value_size;
    return m;
}

void devmap_clear(devmap_t *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        entry_t *e = m->buckets[i];
        while (e) { entry_t *n = e->next; free(e->key); free(e); e = n; }
        m->buckets[i] = NULL;
    }
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

void *devmap_get(devmap_t *m, const char *key)
{
    entry_t *e = *find(m, key, hash_str(key));
    return e ? e->value : NULL;
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

void *devmap_put(devmap_t *m, const char *key, const void *value)
{
    uint64_t h = hash_str(key);
    entry_t **pp = find(m, key, h);
    if (*pp) { memcpy((*pp)->value, value, m->value_size); return (*pp)->value; }
    entry_t *e = malloc(sizeof *e + m->value_size);
    if (!e) return NULL;
    e->key = strdup(key);
    if (!e->key) { free(e); return NULL; }
    e->hash = h;
    e->next = NULL;
    memcpy(e->value, value, m->value_size);
    *pp = e;
    m->count++;
    if (m->count > m->nbuckets * 2) grow(m);
    return e->value;
}

void devmap_del(devmap_t *m, const char *key)
{
    entry_t **pp = find(m, key, hash_str(key));
    if (!*pp) return;
    entry_t *e = *pp;
    *pp = e->next;
    free(e->key);
    free(e);
    m->count--;
}

size_t devmap_count(const devmap_t *m)
{
    return m ? m->count : 0;
}
