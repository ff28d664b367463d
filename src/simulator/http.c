/* http.c — the HTTP transport: IoT Hub's REST device-to-cloud send, on libcurl.
 *
 *   POST {endpoint}/devices/{deviceId}/messages/events?api-version=2021-04-12
 *   Authorization: SharedAccessSignature sr=...&sig=...&se=...
 *   iothub-messageid: <messageId>, iothub-contenttype: application/json,
 *   iothub-contentencoding: utf-8, iothub-app-temperatureAlert: true|false
 * answered 204 by the hub. One curl multi handle drives every request in the engine's thread;
 * its connection cache keeps up to --connections keep-alive connections, shared by the devices
 * (each request carries its own device's token). Every request has a connect timeout and a
 * total timeout (--timeout).
 *
 * A request libcurl re-sent on its own (see on_debug) counts as an extra, uncertain attempt.
 *
 * Outcomes: 2xx acknowledged; 429 (throttled) and 408 retried; 5xx retried as uncertain (the
 * hub may have stored it); a transport error is retried, as uncertain once any of the request
 * went out; other statuses (400, 401, 403, 404, 413, ...) are permanent: IoT Hub refused the
 * message and stored nothing. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simulator/options.h"
#include "devhost/iothub/sas.h"
#include "simulator/connstr.h"
#include "simulator/transport.h"

#define HTTP_API_VERSION "2021-04-12"
#define HTTP_MAX_ERROR_BODY 4096

typedef struct http_xfer {
    struct http_xfer *next_free;
    struct http_xfer *prev, *next;   /* the active list */
    CURL             *easy;
    struct curl_slist *hdrs;
    sim_device_t     *d;
    sim_msg_t        *m;
    buf_t             resp;
    int               requests_out;      /* times the request went out (libcurl may re-send) */
    char              errbuf[CURL_ERROR_SIZE];
} http_xfer_t;

typedef struct http_tp {
    sim_run_t   *run;
    CURLM       *multi;
    http_xfer_t *free_list;
    http_xfer_t *active_list;
    size_t       active;
    char       **urls;      /* per device: the events URL */
    size_t       n;
    buf_t        scratch;
} http_tp_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    http_xfer_t *x = arg;
    size_t len = size * n;
    if (x->resp.len < HTTP_MAX_ERROR_BODY) buf_append(&x->resp, p, len); /* error bodies are short */
    return len;
}

/* libcurl re-sends a request by itself when a reused keep-alive connection dies before any
 * answer byte ("Connection died, retrying a fresh connect") — even a POST the hub may already
 * have stored. There is no option to turn that off, so count the request lines that go out:
 * each one beyond the first is an extra attempt whose outcome is unknown. */
static int on_debug(CURL *c, curl_infotype type, char *data, size_t size, void *arg)
{
    (void)c;
    http_xfer_t *x = arg;
    if (type == CURLINFO_HEADER_OUT && size >= 5 && memcmp(data, "POST ", 5) == 0) x->requests_out++;
    return 0;
}

static http_xfer_t *xfer_get(http_tp_t *t)
{
    http_xfer_t *x = t->free_list;
    if (x) {
        t->free_list = x->next_free;
        return x;
    }
    x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->easy = curl_easy_init();
    if (!x->easy) { free(x); return NULL; }
    const sim_opts_t *o = sim_run_opts(t->run);
    long timeout_ms = (long)(o->timeout * 1000);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_DEBUGFUNCTION, on_debug); /* only called when VERBOSE */
    curl_easy_setopt(x->easy, CURLOPT_DEBUGDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "enviromon-simulator/1.0");
    if (o->ca_file) curl_easy_setopt(x->easy, CURLOPT_CAINFO, o->ca_file);
    return x;
}

static void xfer_put(http_tp_t *t, http_xfer_t *x)
{
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    x->d = NULL;
    x->m = NULL;
    x->requests_out = 0;
    buf_reset(&x->resp);
    x->errbuf[0] = '\0';
    x->next_free = t->free_list;
    t->free_list = x;
}

static void xfer_free(http_xfer_t *x)
{
    curl_slist_free_all(x->hdrs);
    curl_easy_cleanup(x->easy);
    buf_free(&x->resp);
    free(x);
}

static struct curl_slist *add_header(struct curl_slist *l, const char *h, int *ok)
{
    struct curl_slist *n = curl_slist_append(l, h);
    if (!n) { *ok = 0; return l; }
    return n;
}

/* "ErrorCode:IotHubUnauthorizedAccess;..." in the body's Message → "IotHubUnauthorizedAccess". */
static void error_code(const char *body, char *out, size_t outlen)
{
    out[0] = '\0';
    const char *p = strstr(body, "ErrorCode:");
    if (!p) return;
    p += strlen("ErrorCode:");
    size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
    if (n >= outlen) n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static const char *status_text(long s)
{
    switch (s) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

static void deactivate(http_tp_t *t, http_xfer_t *x)
{
    curl_multi_remove_handle(t->multi, x->easy);
    if (x->prev) x->prev->next = x->next;
    else t->active_list = x->next;
    if (x->next) x->next->prev = x->prev;
    x->prev = x->next = NULL;
    t->active--;
}

static void xfer_done(http_tp_t *t, http_xfer_t *x, CURLcode rc)
{
    sim_device_t *d = x->d;
    sim_msg_t *m = x->m;
    char why[160];
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    deactivate(t, x);
    for (int i = 1; i < x->requests_out; i++)
        sim_run_hidden_attempt(t->run, d, m, "connection died; libcurl re-sent the request");
    if (rc == CURLE_OK && status >= 200 && status < 300) {
        xfer_put(t, x);
        sim_run_acked(t->run, d, m);
        return;
    }
    sim_fail_t how;
    if (rc != CURLE_OK) {
        long sent = 0;
        curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
        how = sent > 0 ? SIM_FAIL_UNCERTAIN : SIM_FAIL_RETRY;
        snprintf(why, sizeof why, "%s", curl_easy_strerror(rc));
    } else {
        char code[64];
        error_code(buf_str(&x->resp), code, sizeof code);
        const char *text = status_text(status);
        snprintf(why, sizeof why, "HTTP %ld%s%s%s%s%s", status, *text ? " " : "", text, *code ? " (" : "", code,
                 *code ? ")" : "");
        if (status == 429 || status == 408) how = SIM_FAIL_RETRY;
        else if (status >= 500) how = SIM_FAIL_UNCERTAIN;
        else how = SIM_FAIL_PERMANENT;
    }
    xfer_put(t, x);
    sim_run_failed(t->run, d, m, how, why);
}

static void *http_open(sim_run_t *run, char *err, size_t errlen)
{
    const sim_opts_t *o = sim_run_opts(run);
    size_t n;
    sim_device_t *devs = sim_run_devices(run, &n);
    http_tp_t *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); return NULL; }
    t->run = run;
    t->multi = curl_multi_init();
    t->urls = calloc(n, sizeof *t->urls);
    t->n = n;
    if (!t->multi || !t->urls) {
        snprintf(err, errlen, "out of memory");
        sim_tp_http.close(t);
        return NULL;
    }
    long conns = o->connections > 0 ? o->connections : (long)(n < 64 ? n : 64);
    curl_multi_setopt(t->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
    curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, conns);
    for (size_t i = 0; i < n; i++) {
        buf_t u = BUF_INIT;
        char id[SIM_DEVICE_ID_MAX * 3 + 1];
        if (iothub_sas_url_encode(devs[i].cs.device_id, 1, id, sizeof id) < 0) id[0] = '\0';
        buf_printf(&u, "%s/devices/%s/messages/events?api-version=" HTTP_API_VERSION, devs[i].ep->url, id);
        if (!(t->urls[i] = buf_steal(&u))) {
            snprintf(err, errlen, "out of memory");
            sim_tp_http.close(t);
            return NULL;
        }
        devs[i].tp = t->urls[i];
    }
    return t;
}

static int http_ready(void *tp, sim_device_t *d)
{
    http_tp_t *t = tp;
    (void)t;
    (void)d;
    return 1;
}

static void http_send(void *tp, sim_device_t *d, sim_msg_t *m)
{
    http_tp_t *t = tp;
    const sim_opts_t *o = sim_run_opts(t->run);
    if (sim_device_token(d, sim_run_wall_s(), sim_run_now_ns(), o->token_ttl) < 0) {
        sim_run_failed(t->run, d, m, SIM_FAIL_RETRY, "cannot mint a SAS token");
        return;
    }
    http_xfer_t *x = xfer_get(t);
    if (!x) {
        sim_run_failed(t->run, d, m, SIM_FAIL_RETRY, "out of memory");
        return;
    }
    int ok = 1;
    buf_t *h = &t->scratch;
    buf_reset(h);
    buf_printf(h, "Authorization: %s", buf_str(&d->token));
    x->hdrs = add_header(x->hdrs, buf_str(h), &ok);
    buf_reset(h);
    buf_printf(h, "iothub-messageid: %llu", (unsigned long long)m->id);
    x->hdrs = add_header(x->hdrs, buf_str(h), &ok);
    x->hdrs = add_header(x->hdrs, m->alert ? "iothub-app-temperatureAlert: true" : "iothub-app-temperatureAlert: false", &ok);
    x->hdrs = add_header(x->hdrs, "iothub-contenttype: application/json", &ok);
    x->hdrs = add_header(x->hdrs, "iothub-contentencoding: utf-8", &ok);
    x->hdrs = add_header(x->hdrs, "Content-Type: application/json", &ok);
    x->hdrs = add_header(x->hdrs, "Expect:", &ok);
    if (!ok || h->oom) {
        xfer_put(t, x);
        sim_run_failed(t->run, d, m, SIM_FAIL_RETRY, "out of memory");
        return;
    }
    x->d = d;
    x->m = m;
    curl_easy_setopt(x->easy, CURLOPT_URL, (const char *)d->tp);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, m->body);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)m->len);
    if (curl_multi_add_handle(t->multi, x->easy) != CURLM_OK) {
        xfer_put(t, x);
        sim_run_failed(t->run, d, m, SIM_FAIL_RETRY, "libcurl refused the request");
        return;
    }
    x->prev = NULL;
    x->next = t->active_list;
    if (x->next) x->next->prev = x;
    t->active_list = x;
    t->active++;
}

static void http_drain(http_tp_t *t)
{
    int running = 0, left = 0;
    curl_multi_perform(t->multi, &running);
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(t->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        http_xfer_t *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        xfer_done(t, x, msg->data.result);
    }
}

static void http_poll(void *tp, int timeout_ms)
{
    http_tp_t *t = tp;
    http_drain(t); /* start what was just added */
    curl_multi_poll(t->multi, NULL, 0, timeout_ms, NULL);
    http_drain(t);
}

static void http_tick(void *tp, int64_t now)
{
    http_tp_t *t = tp;
    (void)now;
    http_drain(t); /* curl's own timeouts */
}

static size_t http_connected(void *tp) { return ((http_tp_t *)tp)->active; }

static int http_settled(void *tp)
{
    http_tp_t *t = tp;
    (void)t;
    return 1;
}

static void http_close(void *tp)
{
    http_tp_t *t = tp;
    if (!t) return;
    while (t->active_list) {
        http_xfer_t *x = t->active_list;
        deactivate(t, x);
        sim_device_t *d = x->d;
        sim_msg_t *m = x->m;
        xfer_put(t, x);
        sim_run_failed(t->run, d, m, SIM_FAIL_UNCERTAIN, "abandoned");
    }
    while (t->free_list) {
        http_xfer_t *x = t->free_list;
        t->free_list = x->next_free;
        xfer_free(x);
    }
    if (t->multi) curl_multi_cleanup(t->multi);
    size_t n;
    sim_device_t *devs = sim_run_devices(t->run, &n);
    for (size_t i = 0; t->urls && i < t->n; i++) {
        free(t->urls[i]);
        if (i < n) devs[i].tp = NULL;
    }
    free(t->urls);
    buf_free(&t->scratch);
    free(t);
}

const sim_tp_ops_t sim_tp_http = {
    .name = "http",
    .open = http_open,
    .ready = http_ready,
    .send = http_send,
    .poll = http_poll,
    .tick = http_tick,
    .connected = http_connected,
    .settled = http_settled,
    .close = http_close,
};
