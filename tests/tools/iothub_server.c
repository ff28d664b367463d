/* iothub_server.c — the local IoT Hub's HTTP device API alone, on a loopback port, for tests
 * and benchmarks that drive it with real clients (Node's fetch, azure-iot-common tokens) before
 * or besides `devhost start`. libmicrohttpd, one thread per connection, each request answered
 * with iothub_d2c_handle_wait — the way devhost's front server runs route hooks.
 *
 *   iothub_server --data DIR [--hub NAME] [--partitions N] [--port N] [--segment-bytes N]
 *   iothub_server --data DIR --dump      every stored message, one JSON object a line:
 *                                        {"partition","seq","offset","enqueued","deviceId",
 *                                         "messageId","properties":{...},"body"}
 *
 * Prints "listening <port>" on stdout when ready; SIGINT/SIGTERM close the hub cleanly. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devhost/iothub/d2c.h"
#include "devhost/iothub/hub.h"
#include "devhost/iothub/message.h"
#include <cjson/cJSON.h>

typedef struct req_ctx {
    char  *body;
    size_t len, cap;
    int    truncated;
} req_ctx_t;

typedef struct visit_ctx {
    iothub_http_visit_fn visit;
    void                *ctx;
    int                  stop;
} visit_ctx_t;

static enum MHD_Result mhd_visit(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    visit_ctx_t *v = cls;
    if (v->stop) return MHD_NO;
    v->stop = v->visit(v->ctx, key, value ? value : "");
    return v->stop ? MHD_NO : MHD_YES;
}

static void each(void *arg, iothub_http_kind_t kind, iothub_http_visit_fn visit, void *ctx)
{
    visit_ctx_t v = {visit, ctx, 0};
    MHD_get_connection_values(arg, kind == IOTHUB_HTTP_HEADER ? MHD_HEADER_KIND : MHD_GET_ARGUMENT_KIND, mhd_visit, &v);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    iothub_t *h = cls;
    req_ctx_t *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->truncated) {
            if (r->len + *upload_size > IOTHUB_D2C_MAX_BODY) r->truncated = 1;
            else {
                if (r->len + *upload_size > r->cap) {
                    size_t nc = (r->len + *upload_size) * 2;
                    char *nb = realloc(r->body, nc);
                    if (!nb) return MHD_NO;
                    r->body = nb;
                    r->cap = nc;
                }
                memcpy(r->body + r->len, upload, *upload_size);
                r->len += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    iothub_http_resp_t resp;
    if (iothub_d2c_match(url)) {
        iothub_http_req_t req = {method, url, each, c, r->body, r->len, r->truncated};
        iothub_d2c_handle_wait(h, &req, &resp);
    } else {
        iothub_d2c_error(&resp, IOTHUB_E_NOT_FOUND, 404, "NotFound", "only /devices/ is served here");
    }
    struct MHD_Response *m = MHD_create_response_from_buffer(resp.body_len, resp.body, MHD_RESPMEM_MUST_COPY);
    if (!m) return MHD_NO;
    if (resp.content_type[0]) MHD_add_response_header(m, "Content-Type", resp.content_type);
    if (resp.error_code[0]) MHD_add_response_header(m, "iothub-errorcode", resp.error_code);
    if (resp.allow[0]) MHD_add_response_header(m, "Allow", resp.allow);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)resp.status, m);
    MHD_destroy_response(m);
    return rc;
}

static void done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls; (void)c; (void)t;
    req_ctx_t *r = *con_cls;
    if (r) { free(r->body); free(r); }
    *con_cls = NULL;
}

static int dump(iothub_t *h)
{
    char err[512];
    for (int p = 0; p < iothub_partitions(h); p++) {
        iothub_plog_reader_t *r = iothub_plog_reader_open(iothub_partition_log(h, p), 0, 0, err, sizeof err);
        if (!r) { fprintf(stderr, "iothub_server: %s\n", err); return 1; }
        iothub_plog_rec_t recs[256];
        int n;
        while ((n = iothub_plog_read(r, recs, 256, 1 << 22, 0, err, sizeof err)) > 0) {
            for (int k = 0; k < n; k++) {
                iothub_msg_view_t v;
                if (iothub_msg_decode(recs[k].payload, recs[k].len, &v, err, sizeof err) != 0) {
                    fprintf(stderr, "iothub_server: %s\n", err);
                    return 1;
                }
                cJSON *o = cJSON_CreateObject(), *props = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "partition", p);
                cJSON_AddNumberToObject(o, "seq", (double)recs[k].seq);
                cJSON_AddNumberToObject(o, "offset", (double)recs[k].offset);
                cJSON_AddNumberToObject(o, "enqueued", (double)recs[k].enqueued_ms);
                cJSON_AddStringToObject(o, "deviceId", v.stamp.device_id);
                if (v.msg.message_id) cJSON_AddStringToObject(o, "messageId", v.msg.message_id);
                for (size_t i = 0; i < v.msg.n_props; i++) cJSON_AddStringToObject(props, v.msg.props[i].name, v.msg.props[i].value);
                cJSON_AddItemToObject(o, "properties", props);
                char *body = malloc(v.msg.body_len + 1);
                memcpy(body, v.msg.body, v.msg.body_len);
                body[v.msg.body_len] = '\0';
                cJSON_AddStringToObject(o, "body", body);
                free(body);
                char *line = cJSON_PrintUnformatted(o);
                puts(line);
                free(line);
                cJSON_Delete(o);
            }
        }
        iothub_plog_reader_close(r);
        if (n < 0) { fprintf(stderr, "iothub_server: %s\n", err); return 1; }
    }
    return 0;
}

int main(int argc, char **argv)
{
    iothub_opts_t o = {".devhost", NULL, 0, 0, 0};
    int port = 0, do_dump = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--dump") == 0) { do_dump = 1; memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof *argv); argc--; }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--data") == 0) o.data_dir = argv[i + 1];
        else if (strcmp(argv[i], "--hub") == 0) o.name = argv[i + 1];
        else if (strcmp(argv[i], "--partitions") == 0) o.partitions = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--segment-bytes") == 0) o.segment_bytes = (size_t)atol(argv[i + 1]);
        else { fprintf(stderr, "iothub_server: unknown option %s\n", argv[i]); return 2; }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    char err[512];
    iothub_t *h = iothub_open(&o, err, sizeof err);
    if (!h) { fprintf(stderr, "iothub_server: %s\n", err); return 1; }
    if (do_dump) {
        int rc = dump(h);
        iothub_close(h);
        return rc;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL,
                                            0, NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR, &sa,
                                            MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                                            MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024), MHD_OPTION_END);
    if (!d) { fprintf(stderr, "iothub_server: cannot listen on port %d\n", port); iothub_close(h); return 1; }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening %u\n", di ? di->port : 0);
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    iothub_close(h);
    return 0;
}
