/* curl_pool.c — a stack of idle libcurl easy handles (see curl_pool.h). */
#include <curl/curl.h>

#include "devhost/host/curl_pool.h"

#include <pthread.h>
#include <stdlib.h>

struct dh_curl_pool {
    pthread_mutex_t lock;
    CURL          **idle;
    size_t          n, max;
};

dh_curl_pool_t *dh_curl_pool_new(size_t max_idle)
{
    dh_curl_pool_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->max = max_idle ? max_idle : 1;
    p->idle = calloc(p->max, sizeof *p->idle);
    if (!p->idle || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p->idle);
        free(p);
        return NULL;
    }
    return p;
}

void dh_curl_pool_free(dh_curl_pool_t *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) curl_easy_cleanup(p->idle[i]);
    free(p->idle);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

CURL *dh_curl_acquire(dh_curl_pool_t *p)
{
    CURL *h = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->n) h = p->idle[--p->n];
    pthread_mutex_unlock(&p->lock);
    if (h) {
        curl_easy_reset(h);
        return h;
    }
    return curl_easy_init();
}

void dh_curl_release(dh_curl_pool_t *p, CURL *h, int reuse)
{
    if (!h) return;
    if (reuse) {
        pthread_mutex_lock(&p->lock);
        if (p->n < p->max) {
            p->idle[p->n++] = h;
            h = NULL;
        }
        pthread_mutex_unlock(&p->lock);
    }
    if (h) curl_easy_cleanup(h);
}
