/* invoker.c — invocations POSTed to the handler over kept-alive connections (see invoker.h). */
#include <curl/curl.h>

#include "devhost/host/invoker.h"

#include "devhost/host/curl_pool.h"
#include "devhost/host/supervisor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REFUSED_WAIT_MS 2000     /* how long a refused connection waits for the supervisor to notice */
#define NO_TIMEOUT_MS (24LL * 3600 * 1000)

struct dh_invoker {
    struct dh_supervisor *sup;
    int64_t               timeout_ms;
    const volatile int   *stopping;
    dh_curl_pool_t       *curl;
};

dh_invoker_t *dh_invoker_new(struct dh_supervisor *sup, int64_t timeout_ms, const volatile int *stopping)
{
    dh_invoker_t *iv = calloc(1, sizeof *iv);
    if (!iv) return NULL;
    iv->sup = sup;
    iv->timeout_ms = timeout_ms > 0 ? timeout_ms : NO_TIMEOUT_MS;
    iv->stopping = stopping;
    iv->curl = dh_curl_pool_new(64);
    if (!iv->curl) { free(iv); return NULL; }
    return iv;
}

void dh_invoker_free(dh_invoker_t *iv)
{
    if (!iv) return;
    dh_curl_pool_free(iv->curl);
    free(iv);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    buf_t *b = arg;
    return buf_append(b, p, size * n) == 0 ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    dh_answer_t *a = arg;
    size_t len = size * n;
    if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
        const char *v = p + 13;
        while (*v == ' ' || *v == '\t') v++;
        size_t vl = len - (size_t)(v - p);
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--;
        if (vl >= sizeof a->content_type) vl = sizeof a->content_type - 1;
        memcpy(a->content_type, v, vl);
        a->content_type[vl] = '\0';
    }
    return len;
}

/* Called right before the request goes out on a connection (new or reused): from then on the
 * handler may have received it, and it must not be sent again. */
static int on_prereq(void *arg, char *ip, char *local_ip, int port, int local_port)
{
    (void)ip; (void)local_ip; (void)port; (void)local_port;
    *(int *)arg = 1;
    return CURL_PREREQFUNC_OK;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a; (void)b; (void)c; (void)d;
    const dh_invoker_t *iv = arg;
    return iv->stopping && *iv->stopping;
}

int dh_invoker_post(dh_invoker_t *iv, const char *function, const char *invocation_id, const char *body, size_t len,
                    dh_answer_t *ans, char *err, size_t errlen)
{
    memset(ans, 0, sizeof *ans);
    char idh[128];
    snprintf(idh, sizeof idh, "X-Azure-Functions-InvocationId: %s", invocation_id);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (iv->stopping && *iv->stopping) { snprintf(err, errlen, "devhost is stopping"); return -1; }
        int port = 0;
        unsigned gen = 0;
        int wr = dh_supervisor_wait_ready(iv->sup, DH_READY_TIMEOUT_MS, &port, &gen);
        if (wr != 0) {
            dh_handler_state_t st = dh_supervisor_state(iv->sup);
            snprintf(err, errlen, wr > 0 ? "the handler did not become ready in time" :
                     st == DH_HANDLER_EXITED ? "the handler exited (code 0) and is not restarted" :
                     st == DH_HANDLER_FAILED ? "the handler failed too often and was not restarted" :
                     "the handler is not running (devhost is stopping)");
            return -1;
        }
        char url[512];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/%s", port, function);
        CURL *h = dh_curl_acquire(iv->curl);
        struct curl_slist *hdrs = NULL, *t;
        const char *lines[] = {"Content-Type: application/json; charset=utf-8", idh,
                               "X-Azure-Functions-HostVersion: " DH_HOST_VERSION, "Expect:", NULL};
        for (const char *const *l = lines; *l; l++)
            if ((t = curl_slist_append(hdrs, *l))) hdrs = t;
        if (!h || !hdrs) {
            curl_slist_free_all(hdrs);
            dh_curl_release(iv->curl, h, 0);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        buf_reset(&ans->body);
        ans->content_type[0] = '\0';
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "Azure-Functions-Host/" DH_HOST_VERSION);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)iv->timeout_ms);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &ans->body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, ans);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, iv);
        int sent = 0;
        curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(h, CURLOPT_PREREQDATA, &sent);
        CURLcode rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ans->status);
        curl_slist_free_all(hdrs);
        dh_curl_release(iv->curl, h, rc == CURLE_OK);
        if (rc == CURLE_OK) return 0;
        /* Refused before anything was sent (not even on a kept-alive connection that then died,
         * which libcurl retries by itself): the handler has just died and never saw this
         * request, so it can go to the restarted one, once. Anything else fails, as in the host. */
        if (rc == CURLE_COULDNT_CONNECT && !sent && attempt == 0 && dh_supervisor_refused(iv->sup, gen, REFUSED_WAIT_MS))
            continue;
        buf_free(&ans->body);
        if (rc == CURLE_ABORTED_BY_CALLBACK) snprintf(err, errlen, "devhost is stopping");
        else if (rc == CURLE_OPERATION_TIMEDOUT)
            snprintf(err, errlen, "Timeout value of %lld ms was exceeded by the function (host.json functionTimeout)",
                     (long long)iv->timeout_ms);
        else
            snprintf(err, errlen, "the handler did not answer on 127.0.0.1:%d: %s", port, curl_easy_strerror(rc));
        return -1;
    }
    snprintf(err, errlen, "the handler refused the connection");
    return -1;
}
