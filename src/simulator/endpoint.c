/* endpoint.c — endpoint URLs and the start-up probe (see endpoint.h). */
#include "simulator/endpoint.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *sim_tp_name(sim_tp_kind_t k) { return k == SIM_TP_HTTP ? "http" : "mqtt"; }

static void finish(sim_endpoint_t *ep, const char *scheme)
{
    int v6 = strchr(ep->host, ':') != NULL;
    snprintf(ep->url, sizeof ep->url, "%s://%s%s%s:%d", scheme, v6 ? "[" : "", ep->host, v6 ? "]" : "",
             ep->port);
    snprintf(ep->connect_host, sizeof ep->connect_host, "%s", ep->host);
}

/* Split "host", "host:port", "[v6]" or "[v6]:port" (len bytes at s). */
static int split_hostport(const char *s, size_t len, sim_endpoint_t *ep, int default_port, char *err,
                          size_t errlen)
{
    const char *host = s, *port = NULL;
    size_t host_len = len;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close) { snprintf(err, errlen, "unclosed '[' in host"); return -1; }
        host = s + 1;
        host_len = (size_t)(close - host);
        if ((size_t)(close + 1 - s) < len) {
            if (close[1] != ':') { snprintf(err, errlen, "expected ':port' after ']'"); return -1; }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon) { host_len = (size_t)(colon - s); port = colon + 1; }
    }
    if (host_len == 0 || host_len > SIM_HOST_MAX) { snprintf(err, errlen, "no host name"); return -1; }
    memcpy(ep->host, host, host_len);
    ep->host[host_len] = '\0';
    ep->port = default_port;
    if (port) {
        size_t plen = len - (size_t)(port - s);
        char buf[8];
        char *end;
        if (plen == 0 || plen >= sizeof buf) { snprintf(err, errlen, "bad port"); return -1; }
        memcpy(buf, port, plen);
        buf[plen] = '\0';
        long p = strtol(buf, &end, 10);
        if (*end || p < 1 || p > 65535) { snprintf(err, errlen, "port must be 1..65535"); return -1; }
        ep->port = (int)p;
    }
    return 0;
}

int sim_endpoint_parse(const char *url, sim_tp_kind_t *kind, int kind_given, sim_endpoint_t *ep,
                       char *err, size_t errlen)
{
    static const struct { const char *scheme; sim_tp_kind_t kind; int tls, port; } schemes[] = {
        {"http", SIM_TP_HTTP, 0, 80}, {"https", SIM_TP_HTTP, 1, 443},
        {"mqtt", SIM_TP_MQTT, 0, 1883}, {"mqtts", SIM_TP_MQTT, 1, 8883},
    };
    memset(ep, 0, sizeof *ep);
    const char *sep = strstr(url, "://");
    int which = -1;
    if (sep) {
        for (int i = 0; i < 4; i++)
            if ((size_t)(sep - url) == strlen(schemes[i].scheme) &&
                strncasecmp(url, schemes[i].scheme, (size_t)(sep - url)) == 0)
                which = i;
    }
    if (which < 0) {
        snprintf(err, errlen, "--endpoint %s: expected http://, https://, mqtts:// or mqtt:// and a host", url);
        return -1;
    }
    if (kind_given && *kind != schemes[which].kind) {
        snprintf(err, errlen, "--endpoint %s does not match --transport %s", url, sim_tp_name(*kind));
        return -1;
    }
    *kind = ep->kind = schemes[which].kind;
    ep->tls = schemes[which].tls;
    const char *rest = sep + 3;
    size_t len = strcspn(rest, "/?#");
    if (rest[len] && strcmp(rest + len, "/") != 0) {
        snprintf(err, errlen, "--endpoint %s: give only scheme://host[:port] (no path)", url);
        return -1;
    }
    char why[64];
    if (split_hostport(rest, len, ep, schemes[which].port, why, sizeof why) != 0) {
        snprintf(err, errlen, "--endpoint %s: %s", url, why);
        return -1;
    }
    finish(ep, schemes[which].scheme);
    return 0;
}

int sim_endpoint_for_host(const char *hostport, sim_tp_kind_t kind, sim_endpoint_t *ep, char *err,
                          size_t errlen)
{
    memset(ep, 0, sizeof *ep);
    ep->kind = kind;
    ep->tls = 1;
    char why[64];
    if (split_hostport(hostport, strlen(hostport), ep, kind == SIM_TP_HTTP ? 443 : 8883, why, sizeof why) != 0) {
        snprintf(err, errlen, "host %s: %s", hostport, why);
        return -1;
    }
    finish(ep, kind == SIM_TP_HTTP ? "https" : "mqtts");
    return 0;
}

int sim_endpoint_probe(sim_endpoint_t *ep, const char *ca_file, long timeout_ms, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    if (!c) { snprintf(err, errlen, "cannot reach %s: libcurl failed to start", ep->url); return -1; }
    char url[sizeof ep->url + 16], cerr[CURL_ERROR_SIZE] = "";
    int v6 = strchr(ep->host, ':') != NULL;
    snprintf(url, sizeof url, "%s://%s%s%s:%d/", ep->tls ? "https" : "http", v6 ? "[" : "", ep->host,
             v6 ? "]" : "", ep->port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    if (ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
    CURLcode rc = curl_easy_perform(c);
    int ret = 0;
    if (rc != CURLE_OK) {
        const char *hint = "";
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
            strstr(cerr, "certificate"))
            hint = ca_file ? " (is --ca the CA that signed this server's certificate?)"
                           : " (for devhost, give its local CA: --ca <data folder>/ca.pem)";
        snprintf(err, errlen, "cannot reach %s: %s%s", ep->url, cerr[0] ? cerr : curl_easy_strerror(rc), hint);
        ret = -1;
    } else if (strcasecmp(ep->host, "localhost") == 0) {
        char *ip = NULL;
        if (curl_easy_getinfo(c, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip && *ip)
            snprintf(ep->connect_host, sizeof ep->connect_host, "%s", ip);
    }
    curl_easy_cleanup(c);
    return ret;
}
