/* signalr_service.c — HTTP front of the local SignalR Service: routing, auth, REST API,
 * negotiate, transports wiring and housekeeping (see signalr_service.h for what it owns). */
#include "devhost/signalr/signalr_service.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "azure/signalr_token.h"
#include "devhost/signalr/signalr_conn.h"
#include "util/conn_guard.h"
#include "devhost/signalr/signalr_hub.h"
#include "devhost/signalr/signalr_ws.h"
#include "util/buf.h"
#include "util/json_raw.h"
#include "util/log.h"
#include "util/utf8.h"

#define SR_MAX_EXCLUDED 1024
#define SR_GROUP_MAX 1024 /* characters (UTF-16 code units), as the service allows */
#define SR_CLOSE_GRACE_MS 5000
#define SR_STATS_EVERY_MS 10000
#define SR_WS_CLOSE_GRACE_MS 2500

struct sr_service {
    struct MHD_Daemon *d;
    sr_conn_t          cs;
    sr_registry_t     *reg;
    sr_ws_server_t    *ws;
    conn_guard_t        *guard;
    sr_service_opts_t  o;
    int                port;
    pthread_t          hk;
    int                hk_started;
    pthread_mutex_t    hk_lock;
    pthread_cond_t     hk_cond;
    int                hk_stop;
    int                stopping;       /* under hk_lock */
    pthread_mutex_t    stats_lock;
    unsigned long long rest_msgs, deliveries, stat_rest_logged, stat_del_logged;
    uint64_t           guard_expired_logged, guard_evicted_logged; /* housekeeping thread */
};

typedef enum { RQ_PLAIN = 0, RQ_SSE, RQ_LP, RQ_LP_PARKED, RQ_WS } rq_kind_t;

typedef struct req {
    char                *raw_path;  /* the request path as sent (not percent-decoded) */
    conn_guard_conn_t     *guard;     /* the connection's admission-guard entry, or NULL */
    int                  started;   /* the first access-handler call (headers) happened */
    rq_kind_t            kind;
    buf_t                body;
    int                  too_large;
    sr_client_t         *client;   /* reference, for transport requests */
    struct sr_sse_stream sse;
    unsigned             poll_gen;
} req_t;

/* ---- small helpers ------------------------------------------------------------------ */

void sr_service_opts_default(sr_service_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->ping_interval_ms = 15000;
    o->poll_timeout_ms = 90000;
    o->handshake_timeout_ms = 15000;
    o->lp_idle_timeout_ms = 30000;
    o->request_timeout_ms = 10000;
    o->max_queue_bytes = 1u << 20;
    o->max_body_bytes = 1u << 20;
    o->threads = 2;
}

int sr_service_valid_hub(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > SR_HUB_MAX || !isalpha((unsigned char)name[0])) return 0;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '_') return 0;
    return 1;
}

/* Length of UTF-8 text s in UTF-16 code units: what the service's (.NET) limits count. */
static size_t utf16_length(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xc0) != 0x80) n++;  /* one per code point ... */
        if (*p >= 0xf0) n++;           /* ... two beyond U+FFFF (a surrogate pair) */
    }
    return n;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* The byte a percent-escape at s[i] ("%XY") stands for, or -1 when there is none there. */
static int pct_at(const char *s, size_t n, size_t i)
{
    if (s[i] != '%' || i + 2 >= n) return -1;
    int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

/* Percent-decode the string s in place ('+' stays '+'; a '%' without two hex digits stays
 * as it is). Returns 0, or -1 when it decodes to a NUL byte (no id may hold one). */
static int pct_decode_inplace(char *s)
{
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = pct_at(s, n, i);
        if (ch == 0) return -1;
        if (ch > 0) i += 2;
        else ch = (unsigned char)s[i];
        s[o++] = (char)ch;
    }
    s[o] = '\0';
    return 0;
}

/* Decoded copy of s[0..n), or NULL when it holds a %00 or memory is short. */
static char *pct_dup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (d && pct_decode_inplace(d) != 0) {
        free(d);
        d = NULL;
    }
    return d;
}

/* 1 when two percent-encoded paths are equal, each decoded once, ignoring ASCII case and
 * trailing '/'. A literal '/' separates segments and never equals an encoded one ("%2F"), so
 * "users/a%2Fb" and "users/a/b" differ. No copies: ids of any length compare. */
static int path_eq(const char *a, size_t na, const char *b, size_t nb)
{
    while (na > 0 && a[na - 1] == '/') na--;
    while (nb > 0 && b[nb - 1] == '/') nb--;
    size_t i = 0, j = 0;
    while (i < na && j < nb) {
        int ca = pct_at(a, na, i), cb = pct_at(b, nb, j);
        int sep_a = ca < 0 && a[i] == '/', sep_b = cb < 0 && b[j] == '/';
        if (ca < 0) ca = (unsigned char)a[i++];
        else i += 3;
        if (cb < 0) cb = (unsigned char)b[j++];
        else j += 3;
        if (sep_a != sep_b || tolower(ca) != tolower(cb)) return 0;
    }
    return i == na && j == nb;
}

int sr_service_aud_ok(const char *aud, const char *scheme, const char *host,
                      const char *host_header, const char *expect_path,
                      const char *(*lookup)(void *arg, const char *name), void *arg)
{
    const char *sep = strstr(aud, "://");
    if (!sep) return 0;
    if ((size_t)(sep - aud) != strlen(scheme) || strncasecmp(aud, scheme, strlen(scheme)) != 0)
        return 0;
    const char *h = sep + 3;
    size_t hl = strcspn(h, "/?#");
    const char *rest = h + hl;
    /* host without port (IPv6 literals keep their brackets) */
    size_t hn = hl;
    if (hn > 0 && h[0] == '[') {
        const char *rb = memchr(h, ']', hl);
        if (!rb) return 0;
        hn = (size_t)(rb - h) + 1;
    } else {
        const char *colon = memchr(h, ':', hl);
        if (colon) hn = (size_t)(colon - h);
    }
    int host_ok = strlen(host) == hn && strncasecmp(h, host, hn) == 0;
    if (!host_ok && host_header) {
        size_t hh = strlen(host_header);
        if (hh > 0 && host_header[0] == '[') {
            const char *rb = strchr(host_header, ']');
            hh = rb ? (size_t)(rb - host_header) + 1 : hh;
        } else {
            const char *colon = strchr(host_header, ':');
            if (colon) hh = (size_t)(colon - host_header);
        }
        host_ok = hh == hn && strncasecmp(h, host_header, hn) == 0;
    }
    if (!host_ok) return 0;
    size_t pl = strcspn(rest, "?#");
    if (!path_eq(rest, pl, expect_path, strlen(expect_path))) return 0;
    if (rest[pl] != '?') return 1;
    const char *q = rest + pl + 1;
    int ok = 1;
    while (ok && *q && *q != '#') {
        size_t n = strcspn(q, "&#");
        if (n > 0) {
            const char *eq = memchr(q, '=', n);
            size_t kn = eq ? (size_t)(eq - q) : n;
            char *k = pct_dup(q, kn), *v = pct_dup(eq ? eq + 1 : q + n, eq ? n - kn - 1 : 0);
            const char *have = k && v && lookup ? lookup(arg, k) : NULL;
            ok = have && strcasecmp(have, v) == 0;
            free(k);
            free(v);
        }
        q += n;
        if (*q == '&') q++;
    }
    return ok;
}

static const char *mhd_arg_lookup(void *arg, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)arg, MHD_GET_ARGUMENT_KIND, name);
}

static void add_common_headers(struct MHD_Connection *mc, struct MHD_Response *r)
{
    const char *origin = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Origin");
    if (origin && *origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Access-Control-Allow-Credentials", "true");
        MHD_add_response_header(r, "Vary", "Origin");
    }
    MHD_add_response_header(r, "Cache-Control", "no-cache, no-store");
}

static enum MHD_Result respond_buf(struct MHD_Connection *mc, unsigned status, const char *ctype,
                                   char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(body);
        log_error(NULL, "signalr: out of memory creating a response");
        return MHD_NO;
    }
    if (ctype) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    add_common_headers(mc, r);
    enum MHD_Result ret = MHD_queue_response(mc, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond(struct MHD_Connection *mc, unsigned status, const char *text)
{
    return respond_buf(mc, status, "text/plain; charset=utf-8", (char *)text, strlen(text),
                       MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result respond_fmt(struct MHD_Connection *mc, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result respond_fmt(struct MHD_Connection *mc, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return respond(mc, status, msg);
}

static void stats_add(sr_service_t *s, unsigned long long msgs, long deliveries)
{
    pthread_mutex_lock(&s->stats_lock);
    s->rest_msgs += msgs;
    if (deliveries > 0) s->deliveries += (unsigned long long)deliveries;
    pthread_mutex_unlock(&s->stats_lock);
}

static int is_stopping(sr_service_t *s)
{
    pthread_mutex_lock(&s->hk_lock);
    int st = s->stopping;
    pthread_mutex_unlock(&s->hk_lock);
    return st;
}

/* ---- authentication ----------------------------------------------------------------- */

/* Verify the request's Bearer token (or, when allow_query, the access_token argument)
 * against the connection string's key and the expected audience path (the raw request path,
 * percent-escapes and all). An aud array is accepted when one of its elements matches (RFC
 * 7519 §4.1.3). Returns 1 when authorised, else 0 with the reason in why (never the token);
 * either way the caller frees claims with sr_claims_free. */
static int authorize(sr_service_t *s, struct MHD_Connection *mc, const char *expect_path,
                     int allow_query, sr_claims_t *claims, char *why, size_t whylen)
{
    memset(claims, 0, sizeof *claims); /* freeable on every path */
    const char *tok = NULL;
    const char *auth = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth) {
        while (*auth == ' ') auth++;
        if (strncasecmp(auth, "Bearer ", 7) == 0) {
            tok = auth + 7;
            while (*tok == ' ') tok++;
        }
    }
    if (!tok && allow_query) tok = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "access_token");
    if (!tok || !*tok) {
        snprintf(why, whylen, "no bearer token (send 'Authorization: Bearer <HS256 JWT signed with"
                 " the connection string's AccessKey>')");
        return 0;
    }
    sr_verify_status_t st = sr_token_verify(tok, s->cs.access_key, strlen(s->cs.access_key), NULL,
                                            time(NULL), claims);
    if (st != SR_TOKEN_OK) {
        snprintf(why, whylen, "token rejected: %s", sr_verify_status_name(st));
        return 0;
    }
    const char *host_hdr = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    for (size_t i = 0; i < claims->naud; i++)
        if (sr_service_aud_ok(claims->aud[i], s->cs.scheme, s->cs.host, host_hdr, expect_path,
                              mhd_arg_lookup, mc))
            return 1;
    if (claims->naud == 1)
        snprintf(why, whylen, "token rejected: audience '%.200s' does not match %s://%s%.200s",
                 claims->aud[0], s->cs.scheme, s->cs.host, expect_path);
    else if (claims->naud == 0)
        snprintf(why, whylen, "token rejected: no aud claim (expected %s://%s%.200s)",
                 s->cs.scheme, s->cs.host, expect_path);
    else
        snprintf(why, whylen, "token rejected: none of its %zu audiences matches %s://%s%.200s",
                 claims->naud, s->cs.scheme, s->cs.host, expect_path);
    return 0;
}

static enum MHD_Result unauthorized(struct MHD_Connection *mc, const char *what, const char *why)
{
    log_warn(NULL, "signalr: 401 for %s: %s", what, why);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(why), (void *)why,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    add_common_headers(mc, r);
    enum MHD_Result ret = MHD_queue_response(mc, MHD_HTTP_UNAUTHORIZED, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- REST API ----------------------------------------------------------------------- */

/* Build {"type":1,"target":T,"arguments":[...]} + 0x1E from a REST body. The body must be
 * exactly one JSON object in valid UTF-8; target and arguments are forwarded as their JSON
 * text as sent (whitespace between tokens removed), never parsed and printed again, so big
 * integers, 1e400 and "\u0000" reach clients unchanged. Property names are matched ignoring
 * case (the SDK sends Target/Arguments, the 2022-06-01 swagger target/arguments). Returns a
 * malloc'd record or NULL with the reason in why. */
static char *make_invocation(const char *body, size_t len, size_t *outlen, char *why, size_t whylen)
{
    static const char shape[] = "body must be a JSON object {\"target\": \"method\", \"arguments\": [...]}";
    buf_t text = BUF_INIT, rec = BUF_INIT;
    char jerr[160];
    if (json_raw_compact(body, len, &text, jerr, sizeof jerr) != 0) {
        snprintf(why, whylen, "%s (%s)", shape, text.oom ? "out of memory" : jerr);
        goto fail;
    }
    if (text.len == 0 || text.data[0] != '{') {
        snprintf(why, whylen, "%s", shape);
        goto fail;
    }
    json_raw_member_t m, target = {0}, args = {0};
    for (size_t pos = 0; json_raw_next_member(text.data, text.len, &pos, &m);) {
        json_raw_member_t *slot = json_raw_string_eq_ci(m.key, m.key_len, "target")      ? &target
                                : json_raw_string_eq_ci(m.key, m.key_len, "arguments") ? &args
                                                                                        : NULL;
        if (!slot) continue;
        if (slot->val) {
            snprintf(why, whylen, "body names \"%s\" twice", slot == &target ? "target" : "arguments");
            goto fail;
        }
        *slot = m;
    }
    if (!target.val || target.val[0] != '"' || target.val_len <= 2) {
        snprintf(why, whylen, "body needs a non-empty string \"target\" (the client method name)");
        goto fail;
    }
    int args_null = args.val && args.val_len == 4 && memcmp(args.val, "null", 4) == 0;
    if (args.val && !args_null && args.val[0] != '[') {
        snprintf(why, whylen, "\"arguments\" must be an array");
        goto fail;
    }
    buf_puts(&rec, "{\"type\":1,\"target\":");
    buf_append(&rec, target.val, target.val_len);
    buf_puts(&rec, ",\"arguments\":");
    if (args.val && !args_null) buf_append(&rec, args.val, args.val_len);
    else buf_puts(&rec, "[]");
    buf_puts(&rec, "}\x1e");
    if (rec.oom) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    buf_free(&text);
    *outlen = rec.len;
    return buf_steal(&rec);
fail:
    buf_free(&text);
    buf_free(&rec);
    return NULL;
}

typedef struct excl { const char *v[SR_MAX_EXCLUDED]; size_t n; } excl_t;

static enum MHD_Result collect_excluded(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    (void)kind;
    excl_t *e = cls;
    if (key && value && strcmp(key, "excluded") == 0 && e->n < SR_MAX_EXCLUDED) e->v[e->n++] = value;
    return MHD_YES;
}

enum rest_op {
    OP_NONE = 0, OP_SEND_ALL, OP_SEND_USER, OP_SEND_GROUP, OP_SEND_CONN,
    OP_ADD_USER_GROUP, OP_DEL_USER_GROUP, OP_DEL_USER_ALL_GROUPS,
    OP_ADD_CONN_GROUP, OP_DEL_CONN_GROUP, OP_CLOSE_CONN,
    OP_HAS_USER, OP_HAS_GROUP, OP_HAS_CONN
};

/* The REST route of seg[0..n) (percent-decoded segments after the hubs prefix; seg[0] is a
 * valid hub name); the caller has authorised the request. */
static enum MHD_Result rest_route(sr_service_t *s, req_t *rq, struct MHD_Connection *mc,
                                  const char *url, const char *method, char **seg, size_t n)
{
    char why[600];
    int is_post = strcmp(method, "POST") == 0, is_put = strcmp(method, "PUT") == 0;
    int is_del = strcmp(method, "DELETE") == 0;
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    enum rest_op op = OP_NONE;
    const char *user = NULL, *group = NULL, *conn = NULL;
    int send_suffix = n >= 2 && strcmp(seg[n - 1], ":send") == 0;
    size_t m = send_suffix ? n - 1 : n;
    if (m == 1 && is_post) op = OP_SEND_ALL;
    else if (m == 3 && strcmp(seg[1], "users") == 0) {
        user = seg[2];
        op = is_post ? OP_SEND_USER : is_get && !send_suffix ? OP_HAS_USER : OP_NONE;
    } else if (m == 3 && strcmp(seg[1], "groups") == 0) {
        group = seg[2];
        op = is_post ? OP_SEND_GROUP : is_get && !send_suffix ? OP_HAS_GROUP : OP_NONE;
    } else if (m == 3 && strcmp(seg[1], "connections") == 0) {
        conn = seg[2];
        op = is_post ? OP_SEND_CONN : send_suffix ? OP_NONE : is_del ? OP_CLOSE_CONN : is_get ? OP_HAS_CONN : OP_NONE;
    } else if (!send_suffix && n == 4 && strcmp(seg[1], "users") == 0 && strcmp(seg[3], "groups") == 0) {
        user = seg[2];
        op = is_del ? OP_DEL_USER_ALL_GROUPS : OP_NONE;
    } else if (!send_suffix && n == 5 && strcmp(seg[1], "users") == 0 && strcmp(seg[3], "groups") == 0) {
        user = seg[2];
        group = seg[4];
        op = is_put ? OP_ADD_USER_GROUP : is_del ? OP_DEL_USER_GROUP : OP_NONE;
    } else if (!send_suffix && n == 5 && strcmp(seg[1], "groups") == 0 && strcmp(seg[3], "users") == 0) {
        group = seg[2];
        user = seg[4];
        op = is_put ? OP_ADD_USER_GROUP : is_del ? OP_DEL_USER_GROUP : OP_NONE;
    } else if (!send_suffix && n == 5 && strcmp(seg[1], "groups") == 0 && strcmp(seg[3], "connections") == 0) {
        group = seg[2];
        conn = seg[4];
        op = is_put ? OP_ADD_CONN_GROUP : is_del ? OP_DEL_CONN_GROUP : OP_NONE;
    }
    if (op == OP_NONE) return respond_fmt(mc, MHD_HTTP_NOT_FOUND, "no such REST route: %s %.200s", method, url);
    if ((user && !utf8_valid(user, strlen(user))) || (group && !utf8_valid(group, strlen(group))))
        return respond(mc, MHD_HTTP_BAD_REQUEST, "user ids and group names must be UTF-8 (percent-encoded)");
    if (group && utf16_length(group) > SR_GROUP_MAX)
        return respond(mc, MHD_HTTP_BAD_REQUEST, "group name longer than 1024 characters");
    const char *hub = seg[0];

    if (op == OP_SEND_ALL || op == OP_SEND_USER || op == OP_SEND_GROUP || op == OP_SEND_CONN) {
        if (rq->too_large)
            return respond_fmt(mc, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than %zu bytes",
                               s->o.max_body_bytes);
        size_t rlen = 0;
        char *rec = make_invocation(buf_str(&rq->body), rq->body.len, &rlen, why, sizeof why);
        if (!rec) return respond(mc, MHD_HTTP_BAD_REQUEST, why);
        excl_t *ex = NULL;
        if (op == OP_SEND_ALL || op == OP_SEND_GROUP) {
            ex = calloc(1, sizeof *ex);
            if (!ex) { free(rec); return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory"); }
            MHD_get_connection_values(mc, MHD_GET_ARGUMENT_KIND, collect_excluded, ex);
        }
        long delivered;
        switch (op) {
        case OP_SEND_ALL:
            delivered = sr_registry_send_all(s->reg, hub, rec, rlen, ex->v, ex->n);
            break;
        case OP_SEND_USER:
            delivered = sr_registry_send_user(s->reg, hub, user, rec, rlen);
            break;
        case OP_SEND_GROUP:
            delivered = sr_registry_send_group(s->reg, hub, group, rec, rlen, ex->v, ex->n);
            break;
        default:
            delivered = sr_registry_send_connection(s->reg, hub, conn, rec, rlen);
            break;
        }
        free(ex);
        free(rec);
        if (delivered < 0) return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
        stats_add(s, 1, delivered);
        log_debug(NULL, "signalr: REST %s %s → %ld connection(s)", method, url, delivered);
        return respond(mc, MHD_HTTP_ACCEPTED, "");
    }

    int rc = 0;
    switch (op) {
    case OP_ADD_USER_GROUP: rc = sr_registry_group_add_user(s->reg, hub, group, user); break;
    case OP_DEL_USER_GROUP: rc = sr_registry_group_remove_user(s->reg, hub, group, user); break;
    case OP_DEL_USER_ALL_GROUPS: rc = sr_registry_user_leave_all(s->reg, hub, user); break;
    case OP_ADD_CONN_GROUP: rc = sr_registry_group_add_connection(s->reg, hub, group, conn); break;
    case OP_DEL_CONN_GROUP: rc = sr_registry_group_remove_connection(s->reg, hub, group, conn); break;
    case OP_CLOSE_CONN:
        rc = sr_registry_close_connection(s->reg, hub, conn, "closed through the REST API") ? 0 : 1;
        break;
    case OP_HAS_USER: return respond(mc, sr_registry_has_user(s->reg, hub, user) ? 200 : 404, "");
    case OP_HAS_GROUP: return respond(mc, sr_registry_has_group(s->reg, hub, group) ? 200 : 404, "");
    case OP_HAS_CONN: return respond(mc, sr_registry_has_connection(s->reg, hub, conn) ? 200 : 404, "");
    default: break;
    }
    if (rc < 0) return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    if (rc > 0) return respond_fmt(mc, MHD_HTTP_NOT_FOUND, "no connection '%.100s' in hub '%.100s'",
                                   conn ? conn : "", hub);
    log_info(NULL, "signalr: REST %s %s done", method, url);
    return respond(mc, MHD_HTTP_ACCEPTED, "");
}

/* Serverless REST API. url is the raw request path: libmicrohttpd's decoded one cannot tell
 * "users/a%2Fb" from "users/a/b", so the path is split first and each segment decoded once
 * (ids with '/' or '%' stay targetable), and the token's audience is compared with the raw
 * path (decoded once on both sides). */
static enum MHD_Result handle_rest(sr_service_t *s, req_t *rq, struct MHD_Connection *mc,
                                   const char *url, const char *method)
{
    char why[600];
    sr_claims_t claims;
    int ok;
    if (strcmp(url, "/api/health") == 0 || strcmp(url, "/api/v1/health") == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            return respond(mc, MHD_HTTP_METHOD_NOT_ALLOWED, "use HEAD or GET");
        ok = authorize(s, mc, url, 0, &claims, why, sizeof why);
        sr_claims_free(&claims);
        return ok ? respond(mc, MHD_HTTP_OK, "") : unauthorized(mc, url, why);
    }
    const char *p;
    if (strncmp(url, "/api/v1/hubs/", 13) == 0) p = url + 13;
    else if (strncmp(url, "/api/hubs/", 10) == 0) p = url + 10;
    else return respond_fmt(mc, MHD_HTTP_NOT_FOUND, "no such REST route: %.200s", url);

    char *path = strdup(p);
    if (!path) return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    char *seg[8];
    size_t n = 0;
    for (char *q = path; n < 8;) {
        seg[n++] = q;
        char *sl = strchr(q, '/');
        if (!sl) break;
        *sl = '\0';
        q = sl + 1;
    }
    enum MHD_Result ret;
    const char *bad = NULL;
    for (size_t i = 0; i < n && !bad; i++) {
        if (!seg[i][0]) bad = "empty path segment";
        else if (pct_decode_inplace(seg[i]) != 0) bad = "%00 in a path segment";
    }
    if (bad) {
        ret = respond_fmt(mc, MHD_HTTP_BAD_REQUEST, "%s in %.200s", bad, url);
    } else if (!sr_service_valid_hub(seg[0])) {
        ret = respond(mc, MHD_HTTP_BAD_REQUEST,
                      "invalid hub name: it must start with a letter and contain only letters, digits and '_'");
    } else {
        ok = authorize(s, mc, url, 0, &claims, why, sizeof why);
        sr_claims_free(&claims);
        ret = ok ? rest_route(s, rq, mc, url, method, seg, n) : unauthorized(mc, url, why);
    }
    free(path);
    return ret;
}

/* ---- negotiate ---------------------------------------------------------------------- */

static enum MHD_Result handle_negotiate(sr_service_t *s, struct MHD_Connection *mc, const char *method)
{
    if (strcmp(method, "POST") != 0) return respond(mc, MHD_HTTP_METHOD_NOT_ALLOWED, "negotiate is POST");
    const char *hub = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "hub");
    if (!hub || !sr_service_valid_hub(hub))
        return respond(mc, MHD_HTTP_BAD_REQUEST,
                       "negotiate needs ?hub=<name> (a letter, then letters, digits or '_')");
    char lhub[SR_HUB_MAX + 1];
    size_t hl = strlen(hub);
    for (size_t i = 0; i <= hl; i++) lhub[i] = (char)tolower((unsigned char)hub[i]);
    char why[600];
    sr_claims_t claims;
    if (!authorize(s, mc, "/client", 1, &claims, why, sizeof why)) {
        sr_claims_free(&claims);
        return unauthorized(mc, "/client/negotiate", why);
    }
    const char *nv = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "negotiateVersion");
    int version = nv && atoi(nv) >= 1 ? 1 : 0;
    int stopping = is_stopping(s);
    sr_client_t *c = stopping ? NULL : sr_client_new(lhub, claims.user_id, version, s->o.max_queue_bytes);
    sr_claims_free(&claims);
    if (stopping) return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "server is shutting down");
    if (!c) return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    int rc = sr_registry_add(s->reg, c);
    if (rc != 0) {
        sr_client_unref(c);
        return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE,
                       rc == -2 ? "server is shutting down" : "out of memory");
    }
    /* Advertise only what is implemented, WebSockets first as Azure does; Text is what the
     * JSON hub protocol needs (a Binary-format client is refused at its handshake). */
    cJSON *j = cJSON_CreateObject();
    cJSON *ts = cJSON_Parse("[{\"transport\":\"WebSockets\",\"transferFormats\":[\"Text\",\"Binary\"]},"
                            "{\"transport\":\"ServerSentEvents\",\"transferFormats\":[\"Text\"]},"
                            "{\"transport\":\"LongPolling\",\"transferFormats\":[\"Text\"]}]");
    char *out = NULL;
    if (j && ts && cJSON_AddStringToObject(j, "connectionId", c->id) &&
        (version == 0 || cJSON_AddStringToObject(j, "connectionToken", c->key)) &&
        cJSON_AddNumberToObject(j, "negotiateVersion", version)) {
        if (cJSON_AddItemToObject(j, "availableTransports", ts)) {
            ts = NULL;
            out = cJSON_PrintUnformatted(j);
        }
    }
    cJSON_Delete(ts);
    cJSON_Delete(j);
    if (!out) {
        sr_client_close(c, "negotiate failed (out of memory)", 0, NULL, 0);
        sr_client_unref(c);
        return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    }
    log_info(NULL, "signalr: negotiated connection %s (hub %s, negotiateVersion %d, %s)", c->id,
             c->hub, version, c->user ? "with user id" : "anonymous");
    sr_client_unref(c);
    return respond_buf(mc, MHD_HTTP_OK, "application/json", out, strlen(out), MHD_RESPMEM_MUST_FREE);
}

/* ---- transports --------------------------------------------------------------------- */

/* With c->lock held: may a streaming transport (SSE, WebSocket) attach to c? If not, unlock
 * c, queue the refusal (404 closed, 409 already attached) into *ret and return 0. */
static int stream_attach_allowed_locked(sr_client_t *c, struct MHD_Connection *mc, enum MHD_Result *ret)
{
    if (c->state != SR_CLIENT_CLOSING && c->transport == SR_TRANSPORT_NONE) return 1;
    int closed = c->state == SR_CLIENT_CLOSING;
    pthread_mutex_unlock(&c->lock);
    *ret = closed ? respond(mc, MHD_HTTP_NOT_FOUND, "connection is closed")
                  : respond(mc, MHD_HTTP_CONFLICT, "connection already has a transport attached");
    return 0;
}

/* With c->lock held: c now streams over transport. */
static void stream_attach_locked(sr_client_t *c, sr_transport_t transport)
{
    c->transport = transport;
    c->stream_open = 1;
    c->last_seen_ms = sr_now_ms();
}

static enum MHD_Result start_sse(req_t *rq, struct MHD_Connection *mc)
{
    sr_client_t *c = rq->client;
    pthread_mutex_lock(&c->lock);
    enum MHD_Result refused;
    if (!stream_attach_allowed_locked(c, mc, &refused)) return refused;
    /* Firefox fires onopen only once data arrives: a comment line first. Any records queued
     * before the stream attached (the handshake reply) follow right after it. */
    if (buf_puts(&c->stage, ":\r\n") != 0) {
        pthread_mutex_unlock(&c->lock);
        return respond(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    }
    stream_attach_locked(c, SR_TRANSPORT_SSE);
    pthread_mutex_unlock(&c->lock);
    rq->kind = RQ_SSE;
    rq->sse.client = c;
    rq->sse.mhd = mc;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                               sr_client_sse_read, &rq->sse, NULL);
    if (!r) {
        sr_client_close(c, "out of memory", 0, NULL, 0);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, "Pragma", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    add_common_headers(mc, r);
    enum MHD_Result ret = MHD_queue_response(mc, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    log_debug(NULL, "signalr: connection %s attached a Server-Sent Events stream", c->id);
    return ret;
}

/* A long poll: answer at once with what is queued, or park until data, close or timeout. */
static enum MHD_Result lp_poll(sr_service_t *s, req_t *rq, struct MHD_Connection *mc, int resumed)
{
    sr_client_t *c = rq->client;
    pthread_mutex_lock(&c->lock);
    int64_t now = sr_now_ms();
    if (!resumed) {
        if (c->transport == SR_TRANSPORT_SSE) {
            pthread_mutex_unlock(&c->lock);
            return respond(mc, MHD_HTTP_BAD_REQUEST, "connection uses Server-Sent Events, not long polling");
        }
        if (c->transport == SR_TRANSPORT_WS) {
            pthread_mutex_unlock(&c->lock);
            return respond(mc, MHD_HTTP_CONFLICT, "connection uses WebSockets, not long polling");
        }
        c->transport = SR_TRANSPORT_LP;
        c->last_seen_ms = now;
        if (c->parked) { /* a newer poll supersedes a held one: that one answers empty */
            struct MHD_Connection *old = c->parked;
            c->parked = NULL;
            MHD_resume_connection(old);
        }
        c->poll_open = 1;
        rq->poll_gen = ++c->poll_gen;
        rq->kind = RQ_LP;
        c->poll_started_ms = now;
        if (c->polls++ == 0) { /* the first poll returns at once; the client ignores its body */
            pthread_mutex_unlock(&c->lock);
            log_debug(NULL, "signalr: connection %s started long polling", c->id);
            return respond(mc, MHD_HTTP_OK, "");
        }
    } else if (rq->poll_gen != c->poll_gen) {
        pthread_mutex_unlock(&c->lock);
        return respond(mc, MHD_HTTP_OK, "");
    }
    size_t len = 0;
    int closed = 0;
    char *body = sr_client_take_locked(c, &len, &closed);
    if (!body && !closed && now - c->poll_started_ms < s->o.poll_timeout_ms && !is_stopping(s)) {
        c->parked = mc;
        rq->kind = RQ_LP_PARKED;
        MHD_suspend_connection(mc);
        pthread_mutex_unlock(&c->lock);
        return MHD_YES;
    }
    c->last_seen_ms = now;
    pthread_mutex_unlock(&c->lock);
    rq->kind = RQ_LP;
    if (body)
        return respond_buf(mc, MHD_HTTP_OK, "text/plain; charset=utf-8", body, len, MHD_RESPMEM_MUST_FREE);
    return respond(mc, closed ? MHD_HTTP_NO_CONTENT : MHD_HTTP_OK, "");
}

/* 1 when the comma-separated header value list contains token (ASCII case ignored). */
static int has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        size_t n = strcspn(p, ",");
        size_t e = n;
        while (e > 0 && (p[e - 1] == ' ' || p[e - 1] == '\t')) e--;
        if (e == tl && strncasecmp(p, token, tl) == 0) return 1;
        p += n;
    }
    return 0;
}

/* libmicrohttpd hands over the upgraded socket: give it and the connection to the
 * WebSocket thread. req_cls is the request's req_t (freed only at the connection's end). */
static void on_upgrade(void *cls, struct MHD_Connection *mc, void *req_cls, const char *extra,
                       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)mc;
    sr_service_t *s = cls;
    req_t *rq = req_cls;
    sr_client_t *c = rq ? rq->client : NULL;
    if (!c) {
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        return;
    }
    rq->client = NULL; /* the WebSocket thread holds its own reference from here on */
    if (sr_ws_server_attach(s->ws, c, sock, urh, extra, extra_len) != 0) {
        pthread_mutex_lock(&c->lock);
        c->stream_open = 0;
        pthread_mutex_unlock(&c->lock);
        sr_client_close(c, "WebSocket could not be served (shutting down or out of memory)", 0, NULL, 0);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    } else {
        log_debug(NULL, "signalr: connection %s attached a WebSocket", c->id);
    }
    sr_client_unref(c);
}

/* WebSocket opening handshake (RFC 6455 §4.2) on GET /client/?id=... */
static enum MHD_Result start_ws(sr_service_t *s, req_t *rq, struct MHD_Connection *mc)
{
    (void)s;
    sr_client_t *c = rq->client;
    const char *conn = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
    const char *ver = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    const char *key = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    char accept[29];
    if (!conn || !has_token(conn, "upgrade"))
        return respond(mc, MHD_HTTP_BAD_REQUEST, "WebSocket request without 'Connection: Upgrade'");
    if (!ver || strcmp(ver, "13") != 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
            strlen("only WebSocket version 13 is supported"),
            (void *)"only WebSocket version 13 is supported", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Sec-WebSocket-Version", "13");
        add_common_headers(mc, r);
        enum MHD_Result ret = MHD_queue_response(mc, MHD_HTTP_UPGRADE_REQUIRED, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (sr_ws_accept_key(key, accept) != 0)
        return respond(mc, MHD_HTTP_BAD_REQUEST,
                       "invalid Sec-WebSocket-Key (must be base64 of 16 bytes)");
    pthread_mutex_lock(&c->lock);
    enum MHD_Result refused;
    if (!stream_attach_allowed_locked(c, mc, &refused)) return refused;
    stream_attach_locked(c, SR_TRANSPORT_WS); /* stream_open until the WebSocket thread lets go */
    pthread_mutex_unlock(&c->lock);
    rq->kind = RQ_WS;
    struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgrade, s);
    if (!r) {
        pthread_mutex_lock(&c->lock);
        c->stream_open = 0;
        pthread_mutex_unlock(&c->lock);
        sr_client_close(c, "out of memory", 0, NULL, 0);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept);
    enum MHD_Result ret = MHD_queue_response(mc, MHD_HTTP_SWITCHING_PROTOCOLS, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle_transport(sr_service_t *s, req_t *rq, struct MHD_Connection *mc,
                                        const char *method)
{
    const char *id = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "id");
    if (!id || !*id) return respond(mc, MHD_HTTP_BAD_REQUEST, "missing ?id=<connection token>");
    if (!rq->client) rq->client = sr_registry_find(s->reg, id);
    if (!rq->client) return respond(mc, MHD_HTTP_NOT_FOUND, "no such connection (negotiate first)");
    sr_client_t *c = rq->client;

    if (strcmp(method, "GET") == 0) {
        const char *up = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
        if (up && has_token(up, "websocket")) return start_ws(s, rq, mc);
        const char *accept = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        if (accept && strstr(accept, "text/event-stream")) return start_sse(rq, mc);
        return lp_poll(s, rq, mc, 0);
    }
    if (strcmp(method, "POST") == 0) {
        if (rq->too_large)
            return respond_fmt(mc, MHD_HTTP_CONTENT_TOO_LARGE, "message larger than %zu bytes",
                               s->o.max_body_bytes);
        int hs = 0;
        pthread_mutex_lock(&c->lock);
        int closing = c->state == SR_CLIENT_CLOSING;
        pthread_mutex_unlock(&c->lock);
        if (closing) return respond(mc, MHD_HTTP_NOT_FOUND, "connection is closed");
        sr_client_receive(c, buf_str(&rq->body), rq->body.len, &hs);
        if (hs) {
            if (sr_registry_activate(s->reg, c) != 0) {
                sr_client_close(c, "out of memory", 1, "Server out of memory.", 0);
            } else {
                log_info(NULL, "signalr: connection %s connected (hub %s, %s, %s)", c->id, c->hub,
                         c->transport == SR_TRANSPORT_LP ? "LongPolling"
                         : c->transport == SR_TRANSPORT_WS ? "WebSockets" : "ServerSentEvents",
                         c->user ? "with user id" : "anonymous");
            }
        }
        return respond(mc, MHD_HTTP_OK, "");
    }
    if (strcmp(method, "DELETE") == 0) {
        sr_client_close(c, "client stopped (DELETE)", 0, NULL, 0);
        return respond(mc, MHD_HTTP_ACCEPTED, "");
    }
    return respond(mc, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET, POST or DELETE");
}

/* ---- MHD callbacks ------------------------------------------------------------------ */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    sr_service_t *s = cls;
    req_t *rq = *con_cls; /* made by on_uri */
    if (!rq) return MHD_NO; /* out of memory there */
    if (!rq->started) {
        rq->started = 1;
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || end == cl || v / 64 > s->o.max_body_bytes)
                return respond_fmt(mc, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than %zu bytes",
                                   s->o.max_body_bytes);
            /* Moderately too large: read and drop the body, then answer 413 (answering before
             * it is read makes the close reset the connection, and clients see no answer). */
            if (v > s->o.max_body_bytes) rq->too_large = 1;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rq->too_large) {
            if (rq->body.len + *upload_size > s->o.max_body_bytes) {
                rq->too_large = 1;
                buf_free(&rq->body);
            } else if (buf_append(&rq->body, upload, *upload_size) != 0) {
                return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    /* The request is all here (headers and body): no deadline until the next one. */
    conn_guard_request_arrived(s->guard, rq->guard);
    if (rq->kind == RQ_LP_PARKED) return lp_poll(s, rq, mc, 1);

    if (strcmp(method, "OPTIONS") == 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        add_common_headers(mc, r);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, HEAD, OPTIONS");
        const char *rh = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                rh && *rh ? rh : "Authorization, Content-Type, X-Requested-With, X-SignalR-User-Agent");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        enum MHD_Result ret = MHD_queue_response(mc, MHD_HTTP_NO_CONTENT, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strncmp(rq->raw_path, "/api/", 5) == 0) return handle_rest(s, rq, mc, rq->raw_path, method);
    if (strcmp(url, "/client/negotiate") == 0 || strcmp(url, "/client/negotiate/") == 0)
        return handle_negotiate(s, mc, method);
    if (strcmp(url, "/client/") == 0 || strcmp(url, "/client") == 0)
        return handle_transport(s, rq, mc, method);
    return respond_fmt(mc, MHD_HTTP_NOT_FOUND, "not found: %.200s (this is the local SignalR Service)", url);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    sr_service_t *s = cls;
    req_t *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    /* A kept-alive connection waits for its next request, under the deadline again. (An
     * upgraded WebSocket is never waiting: its completion means it is gone.) */
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && rq->kind != RQ_WS)
        conn_guard_idle(s->guard, rq->guard);
    sr_client_t *c = rq->client;
    if (c) {
        int stream_ended = 0;
        pthread_mutex_lock(&c->lock);
        if (c->parked == mc) c->parked = NULL;
        if (rq->kind == RQ_SSE) {
            c->stream_open = 0;
            stream_ended = c->state != SR_CLIENT_CLOSING;
        } else if (rq->kind == RQ_WS && !c->ws) { /* the upgrade never happened */
            c->stream_open = 0;
            stream_ended = 1;
        } else if ((rq->kind == RQ_LP || rq->kind == RQ_LP_PARKED) && rq->poll_gen == c->poll_gen) {
            c->poll_open = 0;
            c->last_seen_ms = sr_now_ms();
        }
        pthread_mutex_unlock(&c->lock);
        if (stream_ended)
            sr_client_close(c, rq->kind == RQ_WS ? "WebSocket upgrade did not complete"
                                                 : "event stream closed by the client", 0, NULL, 0);
        sr_client_unref(c);
    }
    buf_free(&rq->body);
    free(rq->raw_path);
    free(rq);
}

/* Request line read (libmicrohttpd's URI log callback, before it decodes anything): the
 * request's state, with the raw path. Its return value is the request's con_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mc)
{
    (void)cls;
    req_t *rq = calloc(1, sizeof *rq);
    if (!rq) return NULL;
    rq->raw_path = strndup(uri, strcspn(uri, "?"));
    if (!rq->raw_path) {
        free(rq);
        return NULL;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    rq->guard = ci ? ci->socket_context : NULL;
    return rq;
}

/* Connection opened or closed: the admission guard tracks it (conn_guard.h). */
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    sr_service_t *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? conn_guard_opened(s->guard, ci->connect_fd) : NULL;
    } else {
        conn_guard_closed(s->guard, *socket_context);
        *socket_context = NULL;
    }
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    log_warn(NULL, "signalr: http server: %s", msg);
}

/* ---- housekeeping ------------------------------------------------------------------- */

enum hk_action { HK_NONE = 0, HK_PING = 1, HK_WAKE = 2, HK_CLOSE = 4, HK_REMOVE = 8, HK_DEACTIVATE = 16,
                 HK_CLOSE_MSG = 32 };

static void housekeep_once(sr_service_t *s, int64_t now)
{
    sr_client_t **all = NULL;
    size_t n = sr_registry_snapshot(s->reg, &all);
    static const char ping[] = "{\"type\":6}\x1e";
    for (size_t i = 0; i < n; i++) {
        sr_client_t *c = all[i];
        int act = HK_NONE;
        const char *reason = NULL;
        char why[160];
        pthread_mutex_lock(&c->lock);
        if (c->state == SR_CLIENT_CLOSING) {
            act |= HK_DEACTIVATE;
            int drained = !c->stream_open && !c->poll_open &&
                          (c->queue.len == 0 || c->transport == SR_TRANSPORT_NONE);
            if (drained || now - c->closing_since_ms > SR_CLOSE_GRACE_MS) {
                act |= HK_REMOVE | HK_WAKE;
                snprintf(why, sizeof why, "%s", c->close_reason);
            }
        } else if (c->state == SR_CLIENT_NEGOTIATED && now - c->created_ms > s->o.handshake_timeout_ms) {
            act |= HK_CLOSE;
            reason = c->transport == SR_TRANSPORT_NONE ? "no transport connected in time"
                                                       : "no handshake in time";
            if (c->transport != SR_TRANSPORT_NONE) act |= HK_CLOSE_MSG;
        } else if (c->transport == SR_TRANSPORT_NONE && now - c->created_ms > s->o.handshake_timeout_ms) {
            /* Handshake POSTed but no transport ever attached: nothing would ever drain its
             * queue, so it is reaped like a connection that never handshook. */
            act |= HK_CLOSE;
            reason = "handshake done but no transport connected in time";
        } else if (c->transport == SR_TRANSPORT_SSE || c->transport == SR_TRANSPORT_WS) {
            if (c->state == SR_CLIENT_CONNECTED && now - c->last_ping_ms >= s->o.ping_interval_ms) {
                c->last_ping_ms = now;
                act |= HK_PING;
            }
        } else if (c->transport == SR_TRANSPORT_LP) {
            if (c->parked && now - c->poll_started_ms >= s->o.poll_timeout_ms) act |= HK_WAKE;
            if (!c->poll_open && now - c->last_seen_ms > s->o.lp_idle_timeout_ms) {
                act |= HK_CLOSE;
                reason = "long-polling client stopped polling";
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (act & HK_PING) sr_client_enqueue(c, ping, sizeof ping - 1);
        if (act & HK_CLOSE) {
            sr_client_close(c, reason, (act & HK_CLOSE_MSG) != 0, (act & HK_CLOSE_MSG) ? reason : NULL, 0);
            sr_registry_deactivate(s->reg, c);
        }
        if (act & HK_DEACTIVATE) sr_registry_deactivate(s->reg, c);
        if (act & HK_REMOVE) {
            sr_registry_remove(s->reg, c);
            log_info(NULL, "signalr: connection %s disconnected (hub %s): %s; %llu message(s) queued to it",
                     c->id, c->hub, why, (unsigned long long)c->records_out);
        }
        if (act & HK_WAKE) sr_client_wake(c);
        sr_client_unref(c);
    }
    free(all);
}

/* One line per stats period when the admission guard closed connections. */
static void log_guard_counts(sr_service_t *s)
{
    uint64_t expired, evicted;
    size_t waiting;
    conn_guard_counts(s->guard, &expired, &evicted, &waiting);
    uint64_t de = expired - s->guard_expired_logged, dv = evicted - s->guard_evicted_logged;
    if (!de && !dv) return;
    s->guard_expired_logged = expired;
    s->guard_evicted_logged = evicted;
    log_warn(NULL, "signalr: closed %llu connection(s) that sent no complete request within %d ms"
             " and %llu more to keep room for new clients (the oldest of too many waiting) in the"
             " last %ds; %zu waiting now", (unsigned long long)de, s->o.request_timeout_ms,
             (unsigned long long)dv, SR_STATS_EVERY_MS / 1000, waiting);
}

static void *housekeeping(void *arg)
{
    sr_service_t *s = arg;
    int64_t tick = s->o.ping_interval_ms / 4;
    if (tick > 250) tick = 250;
    if (tick < 10) tick = 10;
    int64_t last_stats = sr_now_ms();
    pthread_mutex_lock(&s->hk_lock);
    while (!s->hk_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(tick % 1000) * 1000000L;
        ts.tv_sec += (time_t)(tick / 1000) + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->hk_cond, &s->hk_lock, &ts);
        if (s->hk_stop) break;
        pthread_mutex_unlock(&s->hk_lock);
        int64_t now = sr_now_ms();
        conn_guard_sweep(s->guard, now);
        housekeep_once(s, now);
        if (now - last_stats >= SR_STATS_EVERY_MS) {
            last_stats = now;
            pthread_mutex_lock(&s->stats_lock);
            unsigned long long dm = s->rest_msgs - s->stat_rest_logged;
            unsigned long long dd = s->deliveries - s->stat_del_logged;
            s->stat_rest_logged = s->rest_msgs;
            s->stat_del_logged = s->deliveries;
            pthread_mutex_unlock(&s->stats_lock);
            if (dm) {
                size_t listed, active;
                sr_registry_counts(s->reg, &listed, &active);
                log_info(NULL, "signalr: sent %llu message(s) → %llu deliveries in the last %ds;"
                         " %zu connection(s) connected", dm, dd, SR_STATS_EVERY_MS / 1000, active);
            }
            log_guard_counts(s);
        }
        pthread_mutex_lock(&s->hk_lock);
    }
    pthread_mutex_unlock(&s->hk_lock);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static unsigned raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = old;
    }
    return rl.rlim_cur > 1000000 ? 1000000u : (unsigned)rl.rlim_cur;
}

sr_service_t *sr_service_start(const sr_service_opts_t *o, char *err, size_t errlen)
{
    if (!o->connection_string) {
        snprintf(err, errlen, "no SignalR connection string (set AzureSignalRConnectionString)");
        return NULL;
    }
    sr_service_t *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    s->o = *o;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (s->o.ping_interval_ms <= 0) s->o.ping_interval_ms = 15000;
    if (s->o.poll_timeout_ms <= 0) s->o.poll_timeout_ms = 90000;
    if (s->o.handshake_timeout_ms <= 0) s->o.handshake_timeout_ms = 15000;
    if (s->o.lp_idle_timeout_ms <= 0) s->o.lp_idle_timeout_ms = 30000;
    if (s->o.request_timeout_ms <= 0) s->o.request_timeout_ms = 10000;
    if (!s->o.max_queue_bytes) s->o.max_queue_bytes = 1u << 20;
    if (!s->o.max_body_bytes) s->o.max_body_bytes = 1u << 20;
    if (!s->o.threads) s->o.threads = 1;
    pthread_mutex_init(&s->hk_lock, NULL);
    pthread_cond_init(&s->hk_cond, NULL);
    pthread_mutex_init(&s->stats_lock, NULL);
    char perr[256];
    if (sr_conn_parse(o->connection_string, &s->cs, perr, sizeof perr) != 0) {
        snprintf(err, errlen, "invalid SignalR connection string: %s", perr);
        goto fail_nocs;
    }
    if (!s->cs.access_key || !*s->cs.access_key) {
        snprintf(err, errlen, "the SignalR connection string has no AccessKey; the local service needs it to verify tokens");
        goto fail;
    }
    s->port = o->port > 0 ? o->port : s->cs.port;
    if (s->port <= 0 || s->port > 65535) {
        snprintf(err, errlen, "no port to listen on (set Port= in the connection string or --port)");
        goto fail;
    }
    s->reg = sr_registry_new();
    if (!s->reg) { snprintf(err, errlen, "out of memory"); goto fail; }
    s->ws = sr_ws_server_start(s->reg, s->o.max_body_bytes, SR_WS_CLOSE_GRACE_MS, err, errlen);
    if (!s->ws) goto fail;

    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
    const char *host = strcmp(s->o.host, "localhost") == 0 ? "127.0.0.1" : s->o.host;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)s->port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)s->port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "--host must be an IPv4 or IPv6 address (or localhost), not '%.100s'", s->o.host);
        goto fail;
    }
    unsigned fds = raise_fd_limit();
    unsigned limit = s->o.max_connections;
    if (!limit) limit = fds > 128 ? fds - 64 : 64;
    /* Connections waiting for their request may take at most this many places. libmicrohttpd
     * splits the limit evenly among its threads, so half of one thread's share: even if every
     * waiting connection landed on one thread, that thread keeps room for new clients. */
    size_t max_waiting = limit / (2 * s->o.threads);
    if (max_waiting < 8) max_waiting = 8;
    s->guard = conn_guard_new(s->o.request_timeout_ms, max_waiting);
    if (!s->guard) { snprintf(err, errlen, "out of memory"); goto fail; }
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, NULL},
        {MHD_OPTION_SOCK_ADDR, 0, sa},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, s},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)limit, NULL},
        /* an idle timeout: a client that stops reading a response is cut after a minute (the
         * request deadline above covers requests; suspended streams are exempt) */
        {MHD_OPTION_CONNECTION_TIMEOUT, 60, NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, NULL},
        {s->o.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)s->o.threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    s->d = MHD_start_daemon(flags, (uint16_t)s->port, NULL, NULL, on_request, s,
                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on %s:%d (%s); is another SignalR service running there?"
                 " (use --port or the connection string's Port=)", s->o.host, s->port, strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->hk, NULL, housekeeping, s) != 0) {
        snprintf(err, errlen, "cannot start the housekeeping thread");
        MHD_stop_daemon(s->d);
        goto fail;
    }
    s->hk_started = 1;
    log_info(NULL, "signalr: local SignalR Service listening on http://%s:%d (audience host %s,"
             " transports WebSockets, ServerSentEvents and LongPolling, up to %u connections,"
             " %zu of them waiting for a request for at most %d ms)",
             s->o.host, s->port, s->cs.host, limit, max_waiting, s->o.request_timeout_ms);
    return s;
fail:
    sr_conn_free(&s->cs);
fail_nocs:
    sr_ws_server_free(s->ws);
    sr_registry_free(s->reg);
    conn_guard_free(s->guard);
    pthread_mutex_destroy(&s->hk_lock);
    pthread_cond_destroy(&s->hk_cond);
    pthread_mutex_destroy(&s->stats_lock);
    free(s);
    return NULL;
}

int sr_service_port(const sr_service_t *s)
{
    return s->port;
}

void sr_service_stop(sr_service_t *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->hk_lock);
    s->stopping = 1;
    pthread_mutex_unlock(&s->hk_lock);
    sr_registry_close(s->reg);
    sr_client_t **all = NULL;
    size_t n = sr_registry_snapshot(s->reg, &all);
    for (size_t i = 0; i < n; i++) {
        sr_client_close(all[i], "server shutting down", 1, "Server is shutting down.", 1);
        sr_client_unref(all[i]);
    }
    free(all);
    log_info(NULL, "signalr: shutting down, closing %zu connection(s)", n);
    /* Let streams deliver their close message: housekeeping removes each once drained. */
    int64_t deadline = sr_now_ms() + 3000;
    for (;;) {
        size_t listed, active;
        sr_registry_counts(s->reg, &listed, &active);
        if (listed == 0 || sr_now_ms() >= deadline) break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&s->hk_lock);
    s->hk_stop = 1;
    pthread_cond_broadcast(&s->hk_cond);
    pthread_mutex_unlock(&s->hk_lock);
    if (s->hk_started) pthread_join(s->hk, NULL);
    /* Hand every remaining upgraded socket back to MHD (it closes them) before it stops. */
    sr_ws_server_stop(s->ws);
    /* MHD requires every suspended connection to be resumed before it stops. */
    n = sr_registry_snapshot(s->reg, &all);
    for (size_t i = 0; i < n; i++) {
        sr_client_wake(all[i]);
        sr_client_unref(all[i]);
    }
    free(all);
    MHD_stop_daemon(s->d);
    sr_ws_server_free(s->ws);
    sr_registry_free(s->reg);
    conn_guard_free(s->guard); /* after the daemon: it reported every connection closed */
    sr_conn_free(&s->cs);
    pthread_mutex_destroy(&s->hk_lock);
    pthread_cond_destroy(&s->hk_cond);
    pthread_mutex_destroy(&s->stats_lock);
    free(s);
}
