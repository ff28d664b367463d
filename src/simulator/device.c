/* device.c — device queues, ids and tokens (see device.h). */
#include "simulator/device.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "simulator/sas.h"

int sim_ids_add(sim_ids_t *ids, uint64_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 16;
        uint64_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return -1;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

void sim_ids_free(sim_ids_t *ids)
{
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

void sim_queue_push(sim_device_t *d, sim_msg_t *m)
{
    m->next = NULL;
    if (d->q_tail) d->q_tail->next = m;
    else d->q_head = m;
    d->q_tail = m;
    d->q_len++;
}

void sim_queue_insert(sim_device_t *d, sim_msg_t *m)
{
    sim_msg_t **pp = &d->q_head;
    while (*pp && (*pp)->id < m->id) pp = &(*pp)->next;
    m->next = *pp;
    *pp = m;
    if (!m->next) d->q_tail = m;
    d->q_len++;
}

sim_msg_t *sim_queue_pop(sim_device_t *d)
{
    sim_msg_t *m = d->q_head;
    if (!m) return NULL;
    d->q_head = m->next;
    if (!d->q_head) d->q_tail = NULL;
    d->q_len--;
    m->next = NULL;
    return m;
}

void sim_msg_free(sim_msg_t *m)
{
    if (!m) return;
    free(m->body);
    free(m);
}

int sim_device_token(sim_device_t *d, long long now_s, int64_t mono_ns, int ttl)
{
    if (d->token.len > 0 && mono_ns < d->token_renew_ns) return 0;
    buf_t t = BUF_INIT;
    long long expiry = now_s + ttl;
    if (sim_sas_token(&t, d->cs.host, d->cs.device_id, d->cs.key, d->cs.key_len, expiry) != 0) {
        buf_free(&t);
        return -1;
    }
    if (d->token.data) OPENSSL_cleanse(d->token.data, d->token.len);
    buf_free(&d->token);
    d->token = t;
    d->token_expiry = expiry;
    d->token_renew_ns = mono_ns + (int64_t)ttl * 800000000LL; /* 80 % of the lifetime */
    return 1;
}

void sim_device_free(sim_device_t *d)
{
    sim_msg_t *m;
    while ((m = sim_queue_pop(d))) sim_msg_free(m);
    if (d->token.data) OPENSSL_cleanse(d->token.data, d->token.len);
    buf_free(&d->token);
    OPENSSL_cleanse(d->cs.key, sizeof d->cs.key);
    sim_ids_free(&d->failed_ids);
    sim_ids_free(&d->uncertain_ids);
}
