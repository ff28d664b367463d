/* Unit tests: the Event Hubs trigger of the local IoT Hub — settings (host.json batching; the
 * retry policy and its delays are devhost/host/retry.h's, tested in test_devhost_host.c), the
 * invocation's wire form (checked field by
 * field and fed to the handler's own batch decoder), and the runtime (batching, order,
 * checkpoints, retry with RetryContext, skip after the policy, stop and redelivery, compaction)
 * with a recording invoke callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devhost/iothub/checkpoint.h"
#include "devhost/iothub/eh_wire.h"
#include "devhost/iothub/eventhub.h"
#include "devhost/iothub/hub.h"
#include "devhost/iothub/message.h"
#include "protocol/invocation.h"
#include "telemetry/batch.h"

#include "test_tmpdir.h"

static char g_dir[64];

static int mk_dir(void **state)
{
    (void)state;
    return test_tmpdir(g_dir, sizeof g_dir, "iothub-eh");
}

static int rm_dir(void **state)
{
    (void)state;
    return test_tmpdir_remove(g_dir);
}

static cJSON *parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    if (!j) fail_msg("not JSON: %s", s);
    return j;
}

/* ---- settings ------------------------------------------------------------------------------ */

static void test_batching_settings(void **state)
{
    (void)state;
    iothub_eh_batching_t b;
    char err[256];
    assert_int_equal(iothub_eh_batching_from_json(NULL, &b, err, sizeof err), 0);
    assert_int_equal(b.max_batch, 100);
    assert_int_equal(b.min_batch, 1);
    assert_int_equal(b.max_wait_ms, 60000);
    assert_int_equal(b.checkpoint_every, 1);
    cJSON *j = parse("{\"maxEventBatchSize\":100,\"minEventBatchSize\":25,\"maxWaitTime\":\"00:05:00\","
                     "\"batchCheckpointFrequency\":2,\"prefetchCount\":300,\"transportType\":\"amqpWebSockets\","
                     "\"initialOffsetOptions\":{\"type\":\"fromStart\",\"enqueuedTimeUtc\":\"\"}}");
    assert_int_equal(iothub_eh_batching_from_json(j, &b, err, sizeof err), 0);
    assert_int_equal(b.max_batch, 100);
    assert_int_equal(b.min_batch, 25);
    assert_int_equal(b.max_wait_ms, 300000);
    assert_int_equal(b.checkpoint_every, 2);
    cJSON_Delete(j);
    const char *bad[] = {"{\"maxEventBatchSize\":0}", "{\"maxEventBatchSize\":\"10\"}", "{\"maxEventBatchSize\":2.5}",
                         "{\"minEventBatchSize\":10,\"maxEventBatchSize\":5}", "{\"maxWaitTime\":\"00:11:00\"}",
                         "{\"maxWaitTime\":5}", "[]", NULL};
    for (int i = 0; bad[i]; i++) {
        j = parse(bad[i]);
        err[0] = '\0';
        if (iothub_eh_batching_from_json(j, &b, err, sizeof err) == 0) fail_msg("accepted %s", bad[i]);
        assert_true(err[0] != '\0');
        cJSON_Delete(j);
    }

}

/* ---- wire form ---------------------------------------------------------------------------- */

typedef struct recs {
    buf_t             payloads[8];
    iothub_plog_rec_t r[8];
    size_t            n;
} recs_t;

static void add_rec(recs_t *rs, const char *device, const void *body, size_t len, const char *mid,
                    const iothub_prop_t *props, size_t np, int64_t seq, int64_t enq_ms)
{
    iothub_msg_t m = {mid, NULL, mid ? "application/json" : NULL, NULL, NULL, props, np, body, len};
    iothub_stamp_t st = {device, "638000000000000001", "sas", enq_ms - 7};
    buf_t *b = &rs->payloads[rs->n];
    memset(b, 0, sizeof *b);
    assert_int_equal(iothub_msg_encode(&m, &st, b), 0);
    rs->r[rs->n] = (iothub_plog_rec_t){seq, (uint64_t)(1000 + 64 * seq), enq_ms, b->data, (uint32_t)b->len};
    rs->n++;
}

static void free_recs(recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) buf_free(&rs->payloads[i]);
}

static const iothub_eh_wire_t WIRE = {"EventTrigger", "events", 1, IOTHUB_EH_STRING, "enviromon-0011223344556677.localhost",
                                      "enviromon", "$Default", 3};

/* A Metadata member that must be a string holding JSON; returns it parsed. */
static cJSON *inner(const cJSON *meta, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    if (!cJSON_IsString(v)) fail_msg("Metadata.%s is not a string", key);
    return parse(v->valuestring);
}

static void test_wire_many(void **state)
{
    (void)state;
    recs_t rs = {0};
    iothub_prop_t props[] = {{"temperatureAlert", "true"}};
    const char *b1 = "{\"deviceId\":\"dev1\",\"temperature\":21.5,\"humidity\":60,\"messageId\":1}";
    const char *b2 = "{\"deviceId\":\"dev2\",\"temperature\":\"x\\\"y\"}";
    add_rec(&rs, "dev1", b1, strlen(b1), "m-1", props, 1, 41, 1700000000120LL);
    add_rec(&rs, "dev2", b2, strlen(b2), NULL, NULL, 0, 42, 1700000001000LL);
    cJSON *data, *meta;
    char err[256];
    assert_int_equal(iothub_eh_build(&WIRE, rs.r, rs.n, &data, &meta, err, sizeof err), 0);

    /* Data.events: a string holding an array of strings, each an event body */
    cJSON *ev = inner(data, "events");
    assert_int_equal(cJSON_GetArraySize(ev), 2);
    assert_string_equal(cJSON_GetArrayItem(ev, 0)->valuestring, b1);
    assert_string_equal(cJSON_GetArrayItem(ev, 1)->valuestring, b2);
    cJSON_Delete(ev);

    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(meta, "PartitionContext");
    assert_true(cJSON_IsObject(pc));
    assert_string_equal(cJSON_GetObjectItem(pc, "FullyQualifiedNamespace")->valuestring, WIRE.ns);
    assert_string_equal(cJSON_GetObjectItem(pc, "EventHubName")->valuestring, "enviromon");
    assert_string_equal(cJSON_GetObjectItem(pc, "ConsumerGroup")->valuestring, "$Default");
    assert_string_equal(cJSON_GetObjectItem(pc, "PartitionId")->valuestring, "3");

    const cJSON *seqraw = cJSON_GetObjectItemCaseSensitive(meta, "SequenceNumberArray");
    assert_string_equal(seqraw->valuestring, "[41,42]");
    assert_string_equal(cJSON_GetObjectItem(meta, "OffsetArray")->valuestring, "[\"3624\",\"3688\"]");
    assert_string_equal(cJSON_GetObjectItem(meta, "PartitionKeyArray")->valuestring, "[null,null]");
    /* .NET DateTime of kind Unspecified: no zone, trailing fraction zeros dropped */
    assert_string_equal(cJSON_GetObjectItem(meta, "EnqueuedTimeUtcArray")->valuestring,
                        "[\"2023-11-14T22:13:20.12\",\"2023-11-14T22:13:21\"]");
    cJSON *props_arr = inner(meta, "PropertiesArray");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(props_arr, 0), "temperatureAlert")->valuestring, "true");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetArrayItem(props_arr, 1)), 0);
    cJSON_Delete(props_arr);

    cJSON *sys = inner(meta, "SystemPropertiesArray");
    const cJSON *s0 = cJSON_GetArrayItem(sys, 0), *s1 = cJSON_GetArrayItem(sys, 1);
    assert_string_equal(cJSON_GetObjectItem(s0, "iothub-connection-device-id")->valuestring, "dev1");
    assert_string_equal(cJSON_GetObjectItem(s0, "iothub-connection-auth-generation-id")->valuestring, "638000000000000001");
    const char *am = cJSON_GetObjectItem(s0, "iothub-connection-auth-method")->valuestring;
    assert_string_equal(am, "{\"scope\":\"device\",\"type\":\"sas\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}");
    assert_string_equal(cJSON_GetObjectItem(s0, "iothub-message-source")->valuestring, "Telemetry");
    assert_string_equal(cJSON_GetObjectItem(s0, "iothub-enqueuedtime")->valuestring, "2023-11-14T22:13:20.113Z");
    assert_string_equal(cJSON_GetObjectItem(s0, "x-opt-enqueued-time")->valuestring, "2023-11-14T22:13:20.12Z");
    assert_int_equal(cJSON_GetObjectItem(s0, "x-opt-sequence-number")->valuedouble, 41);
    assert_string_equal(cJSON_GetObjectItem(s0, "x-opt-offset")->valuestring, "3624");
    assert_string_equal(cJSON_GetObjectItem(s0, "message-id")->valuestring, "m-1");
    assert_string_equal(cJSON_GetObjectItem(s0, "content-type")->valuestring, "application/json");
    assert_int_equal(cJSON_GetObjectItem(s0, "SequenceNumber")->valuedouble, 41);
    assert_int_equal(cJSON_GetObjectItem(s0, "Offset")->valuedouble, 3624);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(s0, "PartitionKey")));
    assert_string_equal(cJSON_GetObjectItem(s0, "EnqueuedTimeUtc")->valuestring, "2023-11-14T22:13:20.12");
    assert_null(cJSON_GetObjectItem(s1, "message-id"));      /* absent when the device set none */
    assert_string_equal(cJSON_GetObjectItem(s1, "iothub-connection-device-id")->valuestring, "dev2");
    cJSON_Delete(sys);

    const cJSON *sysobj = cJSON_GetObjectItemCaseSensitive(meta, "sys");
    assert_string_equal(cJSON_GetObjectItem(sysobj, "MethodName")->valuestring, "EventTrigger");
    assert_int_equal(strlen(cJSON_GetObjectItem(sysobj, "RandGuid")->valuestring), 36);
    assert_null(cJSON_GetObjectItem(meta, "RetryContext"));

    /* the handler's own decoder reads it: device ids from the system properties, sequence
     * numbers, times and the stream identity of this namespace/hub/partition */
    tele_batch_t tb;
    assert_int_equal(tele_batch_decode(&tb, cJSON_GetObjectItem(data, "events"), meta, err, sizeof err), 0);
    assert_int_equal(tb.n, 2);
    assert_string_equal(tb.ev[0].device_id, "dev1");
    assert_string_equal(tb.ev[1].device_id, "dev2");
    assert_true(tb.ev[0].has_seq && tb.ev[0].seq == 41);
    assert_true(tb.ev[1].has_seq && tb.ev[1].seq == 42);
    assert_string_equal(tb.ev[0].enqueued, "2023-11-14T22:13:20.1200000Z");
    char want[17];
    tele_stream_id(WIRE.ns, "enviromon", "3", want);
    assert_string_equal(tb.stream, want);
    assert_true(tb.seq_usable);
    tele_batch_free(&tb);

    /* a retry adds RetryContext: RetryCount, MaxRetryCount, Exception (null first) */
    assert_int_equal(iothub_eh_retry_context(meta, 0, -1, "EventTrigger", NULL), 0);
    const cJSON *rc = cJSON_GetObjectItem(meta, "RetryContext");
    assert_int_equal(cJSON_GetObjectItem(rc, "RetryCount")->valueint, 0);
    assert_int_equal(cJSON_GetObjectItem(rc, "MaxRetryCount")->valueint, -1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(rc, "Exception")));
    assert_int_equal(iothub_eh_retry_context(meta, 2, 5, "EventTrigger", "handler answered 500"), 0);
    rc = cJSON_GetObjectItem(meta, "RetryContext");
    assert_int_equal(cJSON_GetArraySize(meta), 9);    /* replaced, not added twice */
    assert_int_equal(cJSON_GetObjectItem(rc, "RetryCount")->valueint, 2);
    const cJSON *ex = cJSON_GetObjectItem(rc, "Exception");
    assert_string_equal(cJSON_GetObjectItem(ex, "Message")->valuestring, "Exception while executing function: Functions.EventTrigger");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(ex, "InnerException"), "Message")->valuestring,
                        "handler answered 500");
    cJSON_Delete(data);
    cJSON_Delete(meta);
    free_recs(&rs);
}

static void test_wire_bodies(void **state)
{
    (void)state;
    recs_t rs = {0};
    add_rec(&rs, "d", "caf\xC3\xA9 \xFF\xFE!", 9, NULL, NULL, 0, 0, 1700000000000LL);   /* ill-formed UTF-8 */
    add_rec(&rs, "d", "a\0b\n", 4, NULL, NULL, 0, 1, 1700000000000LL);                   /* NUL and control bytes */
    cJSON *data, *meta;
    char err[256];
    assert_int_equal(iothub_eh_build(&WIRE, rs.r, rs.n, &data, &meta, err, sizeof err), 0);
    const char *txt = cJSON_GetObjectItem(data, "events")->valuestring;
    /* two U+FFFD for the two ill-formed bytes (each its own maximal subpart) */
    assert_non_null(strstr(txt, "caf\xC3\xA9 \xEF\xBF\xBD\xEF\xBF\xBD!"));
    assert_non_null(strstr(txt, "a\\u0000b\\n"));
    cJSON_Delete(data);
    cJSON_Delete(meta);

    /* binary: base64 bodies */
    iothub_eh_wire_t w = WIRE;
    w.data_type = IOTHUB_EH_BINARY;
    assert_int_equal(iothub_eh_build(&w, rs.r, rs.n, &data, &meta, err, sizeof err), 0);
    assert_string_equal(cJSON_GetObjectItem(data, "events")->valuestring, "[\"Y2Fmw6kg//4h\",\"YQBiCg==\"]");
    cJSON_Delete(data);
    cJSON_Delete(meta);

    /* dataType omitted: JSON bodies become objects; a body that is not JSON fails the binding */
    w.data_type = IOTHUB_EH_OBJECT;
    assert_int_equal(iothub_eh_build(&w, rs.r, rs.n, &data, &meta, err, sizeof err), 1);
    assert_non_null(strstr(err, "not JSON"));
    free_recs(&rs);
    memset(&rs, 0, sizeof rs);
    add_rec(&rs, "d", "{\"a\":1} ", 8, NULL, NULL, 0, 0, 1700000000000LL);
    assert_int_equal(iothub_eh_build(&w, rs.r, rs.n, &data, &meta, err, sizeof err), 0);
    assert_string_equal(cJSON_GetObjectItem(data, "events")->valuestring, "[{\"a\":1}]");
    cJSON_Delete(data);
    cJSON_Delete(meta);

    /* cardinality one: singular keys with the host's single-value rules */
    w = WIRE;
    w.many = 0;
    free_recs(&rs);
    memset(&rs, 0, sizeof rs);
    iothub_prop_t props[] = {{"k", "v"}};
    add_rec(&rs, "dev1", "{\"t\":1}", 7, "m", props, 1, 9, 1700000000120LL);
    assert_int_equal(iothub_eh_build(&w, rs.r, 1, &data, &meta, err, sizeof err), 0);
    assert_string_equal(cJSON_GetObjectItem(data, "events")->valuestring, "\"{\\\"t\\\":1}\"");   /* double-encoded */
    assert_string_equal(cJSON_GetObjectItem(meta, "Offset")->valuestring, "\"1576\"");
    assert_string_equal(cJSON_GetObjectItem(meta, "SequenceNumber")->valuestring, "9");
    assert_string_equal(cJSON_GetObjectItem(meta, "EnqueuedTimeUtc")->valuestring, "2023-11-14T22:13:20");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(meta, "Properties"), "k")->valuestring, "v");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(meta, "SystemProperties"), "iothub-connection-device-id")->valuestring,
                        "dev1");
    assert_null(cJSON_GetObjectItem(meta, "PartitionKey"));
    assert_null(cJSON_GetObjectItem(meta, "SequenceNumberArray"));
    cJSON_Delete(data);
    cJSON_Delete(meta);
    free_recs(&rs);

    char t[40];
    iothub_net_time(1700000000000LL, 0, t);
    assert_string_equal(t, "2023-11-14T22:13:20");
    iothub_net_time(1700000000005LL, 1, t);
    assert_string_equal(t, "2023-11-14T22:13:20.005Z");
}

/* ---- runtime --------------------------------------------------------------------------------- */

typedef struct call {
    int    partition, n;
    int64_t seqs[128];
    int    has_retry, retry_count, exception_null;
    char   function[64];
} call_t;

typedef struct recorder {
    pthread_mutex_t lock;
    call_t          calls[512];
    int             ncalls;
    int             fail_first;     /* fail this many calls */
    int             fail_always;
    int             cancel;         /* answer IOTHUB_EH_CANCELLED (the host is stopping) */
} recorder_t;

static int record_invoke(void *arg, const char *function, cJSON *data, cJSON *meta, char *err, size_t errlen)
{
    recorder_t *r = arg;
    call_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.function, sizeof c.function, "%s", function);
    cJSON *pc = cJSON_GetObjectItem(meta, "PartitionContext");
    c.partition = atoi(cJSON_GetObjectItem(pc, "PartitionId")->valuestring);
    const cJSON *seqs = cJSON_GetObjectItem(meta, "SequenceNumberArray");
    if (seqs) {
        c.n = (int)tele_parse_int64_array(seqs->valuestring, c.seqs, (unsigned char[128]){0}, 128);
    } else {
        c.n = 1;
        c.seqs[0] = atoll(cJSON_GetObjectItem(meta, "SequenceNumber")->valuestring);
    }
    (void)data;
    const cJSON *rc = cJSON_GetObjectItem(meta, "RetryContext");
    if (rc) {
        c.has_retry = 1;
        c.retry_count = cJSON_GetObjectItem(rc, "RetryCount")->valueint;
        c.exception_null = cJSON_IsNull(cJSON_GetObjectItem(rc, "Exception"));
    }
    pthread_mutex_lock(&r->lock);
    int idx = r->ncalls;
    if (r->ncalls < 512) r->calls[r->ncalls++] = c;
    int fail = r->fail_always || idx < r->fail_first, cancel = r->cancel;
    pthread_mutex_unlock(&r->lock);
    if (cancel) {
        snprintf(err, errlen, "devhost is stopping (test)");
        return IOTHUB_EH_CANCELLED;
    }
    if (fail) snprintf(err, errlen, "handler answered 500 (test)");
    return fail ? -1 : 0;
}

static iothub_t *hub(size_t seg, char *err, size_t errlen)
{
    iothub_opts_t o = {g_dir, "enviromon", 4, seg, 60000};
    iothub_t *h = iothub_open(&o, err, errlen);
    if (!h) fail_msg("hub: %s", err);
    return h;
}

static iothub_auth_t device(iothub_t *h, const char *id)
{
    char dir[128], err[512];
    snprintf(dir, sizeof dir, "%s/iothub", g_dir);
    iothub_device_t d;
    if (iothub_registry_add(dir, id, &d, err, sizeof err) != IOTHUB_REG_OK &&
        iothub_registry_get(dir, id, &d, err, sizeof err) != IOTHUB_REG_OK)
        fail_msg("%s", err);
    (void)h;
    iothub_auth_t a;
    memset(&a, 0, sizeof a);
    snprintf(a.device_id, sizeof a.device_id, "%s", id);
    snprintf(a.generation_id, sizeof a.generation_id, "%s", d.generation_id);
    return a;
}

static void send_n(iothub_t *h, const iothub_auth_t *a, int n)
{
    char err[512];
    for (int i = 0; i < n; i++) {
        char body[64];
        int bl = snprintf(body, sizeof body, "{\"deviceId\":\"%s\",\"i\":%d}", a->device_id, i);
        iothub_msg_t m = {NULL, NULL, NULL, NULL, NULL, NULL, 0, body, (size_t)bl};
        if (iothub_send_wait(h, a, &m, 1, err, sizeof err) != IOTHUB_OK) fail_msg("send: %s", err);
    }
}

static iothub_eh_opts_t opts(recorder_t *r, int max_batch)
{
    iothub_eh_opts_t o;
    memset(&o, 0, sizeof o);
    o.wire = WIRE;
    o.wire.ns = NULL;
    o.batching = (iothub_eh_batching_t){max_batch, 1, 60000, 1};
    o.invoke = record_invoke;
    o.invoke_arg = r;
    o.poll_ms = 20;
    return o;
}

/* Poll (not sleep-as-sync) until the trigger delivered/failed `want` events, 10 s at most. */
static void wait_events(iothub_eh_t *t, uint64_t want)
{
    for (int i = 0; i < 2000; i++) {
        iothub_eh_stats_t s;
        iothub_eh_stats(t, &s);
        if (s.delivered + s.failed >= want) return;
        usleep(5000);
    }
    fail_msg("events not delivered in time");
}

static int64_t checkpoint_of(iothub_t *h, const char *group, int p)
{
    char err[256];
    iothub_ckpt_pos_t pos;
    iothub_ckpt_t *c = iothub_ckpt_open(iothub_checkpoint_root(h), group, p, iothub_instance(h), &pos, err, sizeof err);
    assert_non_null(c);
    iothub_ckpt_close(c);
    return pos.next_seq;
}

static void test_trigger_delivers_in_order(void **state)
{
    (void)state;
    char err[512];
    iothub_t *h = hub(0, err, sizeof err);
    iothub_auth_t a1 = device(h, "dev1"), a2 = device(h, "dev2"), a3 = device(h, "dev3");
    send_n(h, &a1, 7);   /* before the trigger starts: read from the start of the log */
    static recorder_t r = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0, 0, 0};
    memset(r.calls, 0, sizeof r.calls);
    r.ncalls = 0;
    iothub_eh_opts_t o = opts(&r, 3);
    iothub_eh_t *t = iothub_eh_start(h, &o, err, sizeof err);
    assert_non_null(t);
    /* a second function on the same consumer group is refused */
    assert_null(iothub_eh_start(h, &o, err, sizeof err));
    assert_non_null(strstr(err, "consumerGroup"));
    send_n(h, &a2, 5);
    send_n(h, &a3, 5);
    wait_events(t, 17);
    iothub_eh_stats_t s;
    iothub_eh_stats(t, &s);
    assert_int_equal(s.delivered, 17);
    assert_int_equal(s.failed, 0);
    iothub_eh_stop(t);
    /* per partition: contiguous sequence numbers from 0, batches of at most 3, no duplicates */
    int64_t next[4] = {0};
    for (int i = 0; i < r.ncalls; i++) {
        call_t *c = &r.calls[i];
        assert_true(c->n >= 1 && c->n <= 3);
        assert_int_equal(c->has_retry, 0);   /* no retry policy: no RetryContext */
        for (int k = 0; k < c->n; k++) assert_int_equal(c->seqs[k], next[c->partition]++);
    }
    int64_t total = 0;
    for (int p = 0; p < 4; p++) {
        total += next[p];
        assert_int_equal(checkpoint_of(h, "$Default", p), next[p]);   /* checkpointed on stop at the latest */
    }
    assert_int_equal(total, 17);
    /* the 7 events sent before the start came in batches of 3, 3, 1 */
    int p1 = iothub_partition_of("dev1", 4);
    int sizes[8], ns = 0;
    for (int i = 0; i < r.ncalls && ns < 8; i++)
        if (r.calls[i].partition == p1 && r.calls[i].seqs[0] < 7) sizes[ns++] = r.calls[i].n;
    assert_true(ns >= 3);
    assert_int_equal(sizes[0], 3);
    assert_int_equal(sizes[1], 3);
    /* a restart resumes at the checkpoint: nothing is delivered twice */
    r.ncalls = 0;
    t = iothub_eh_start(h, &o, err, sizeof err);
    send_n(h, &a1, 1);
    wait_events(t, 1);
    iothub_eh_stop(t);
    assert_int_equal(r.ncalls, 1);
    assert_int_equal(r.calls[0].seqs[0], next[p1]);
    buf_t line = BUF_INIT;
    iothub_summary(h, NULL, 0, &line);
    assert_non_null(strstr(line.data, "received=18 "));
    buf_free(&line);
    iothub_close(h);
}

static void test_trigger_retry_policy(void **state)
{
    (void)state;
    char err[512];
    iothub_t *h = hub(0, err, sizeof err);
    iothub_auth_t a = device(h, "dev1");
    int p = iothub_partition_of("dev1", 4);
    static recorder_t r = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0, 0, 0};

    /* fails twice, then succeeds: RetryContext 0 (Exception null), 1, 2; one checkpoint */
    r.ncalls = 0;
    r.fail_first = 2;
    r.fail_always = 0;
    iothub_eh_opts_t o = opts(&r, 100);
    o.retry = (dh_retry_t){DH_RETRY_FIXED, 5, 10, 0, 0};
    send_n(h, &a, 4);
    iothub_eh_t *t = iothub_eh_start(h, &o, err, sizeof err);
    wait_events(t, 4);
    iothub_eh_stats_t s;
    iothub_eh_stats(t, &s);
    assert_int_equal(s.delivered, 4);
    assert_int_equal(s.retries, 2);
    iothub_eh_stop(t);
    assert_int_equal(r.ncalls, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.calls[i].has_retry, 1);
        assert_int_equal(r.calls[i].retry_count, i);
        assert_int_equal(r.calls[i].exception_null, i == 0);
        assert_int_equal(r.calls[i].n, 4);           /* the same batch each time */
        assert_int_equal(r.calls[i].seqs[0], 0);
    }
    assert_int_equal(checkpoint_of(h, "$Default", p), 4);

    /* always fails, maxRetryCount 1: two attempts, then skipped; the checkpoint moves past it
     * (the host's rule) and the next event is delivered */
    r.ncalls = 0;
    r.fail_always = 1;
    o.retry.max_retry_count = 1;
    send_n(h, &a, 2);
    t = iothub_eh_start(h, &o, err, sizeof err);
    wait_events(t, 2);
    iothub_eh_stats(t, &s);
    assert_int_equal(s.failed, 2);
    assert_int_equal(r.ncalls, 2);
    r.fail_always = 0;
    send_n(h, &a, 1);
    wait_events(t, 3);
    iothub_eh_stop(t);
    assert_int_equal(r.calls[r.ncalls - 1].seqs[0], 6);
    assert_int_equal(checkpoint_of(h, "$Default", p), 7);

    /* no retry policy: skipped at once, no RetryContext */
    r.ncalls = 0;
    r.fail_first = 1;
    o.retry = (dh_retry_t){DH_RETRY_NONE, 0, 0, 0, 0};
    send_n(h, &a, 1);
    t = iothub_eh_start(h, &o, err, sizeof err);
    wait_events(t, 1);
    iothub_eh_stop(t);
    assert_int_equal(r.ncalls, 1);
    assert_int_equal(r.calls[0].has_retry, 0);
    assert_int_equal(checkpoint_of(h, "$Default", p), 8);

    /* retrying forever, then stopped: no checkpoint; the next start delivers the batch again */
    r.ncalls = 0;
    r.fail_first = 0;
    r.fail_always = 1;
    o.retry = (dh_retry_t){DH_RETRY_EXPONENTIAL, -1, 0, 5, 20};
    send_n(h, &a, 2);
    t = iothub_eh_start(h, &o, err, sizeof err);
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&r.lock);
        int n = r.ncalls;
        pthread_mutex_unlock(&r.lock);
        if (n >= 4) break;
        usleep(5000);
    }
    iothub_eh_stats(t, &s);
    assert_true(s.retries >= 3);
    assert_int_equal(s.p[p].retrying, 1);
    assert_true(s.p[p].lag >= 2);
    iothub_eh_stop(t);
    assert_int_equal(checkpoint_of(h, "$Default", p), 8);
    r.ncalls = 0;
    r.fail_always = 0;
    t = iothub_eh_start(h, &o, err, sizeof err);
    wait_events(t, 2);
    iothub_eh_stop(t);
    assert_int_equal(r.calls[0].seqs[0], 8);
    assert_int_equal(r.calls[0].retry_count, 0);     /* the count restarts, as on a new host instance */
    assert_int_equal(checkpoint_of(h, "$Default", p), 10);

    /* an invocation cancelled because the host stops: neither retried nor skipped, even without a
     * retry policy; no checkpoint, and the next start delivers the batch */
    r.ncalls = 0;
    r.cancel = 1;
    o.retry = (dh_retry_t){DH_RETRY_NONE, 0, 0, 0, 0};
    send_n(h, &a, 1);
    t = iothub_eh_start(h, &o, err, sizeof err);
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&r.lock);
        int n = r.ncalls;
        pthread_mutex_unlock(&r.lock);
        if (n >= 1) break;
        usleep(5000);
    }
    iothub_eh_stats(t, &s);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.retries, 0);
    iothub_eh_stop(t);
    assert_int_equal(r.ncalls, 1);
    assert_int_equal(checkpoint_of(h, "$Default", p), 10);
    r.ncalls = 0;
    r.cancel = 0;
    t = iothub_eh_start(h, &o, err, sizeof err);
    wait_events(t, 1);
    iothub_eh_stop(t);
    assert_int_equal(r.calls[0].seqs[0], 10);
    assert_int_equal(checkpoint_of(h, "$Default", p), 11);
    iothub_close(h);
}

static void test_trigger_single_and_min_batch(void **state)
{
    (void)state;
    char err[512];
    iothub_t *h = hub(0, err, sizeof err);
    iothub_auth_t a = device(h, "dev1");
    static recorder_t r = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0, 0, 0};
    r.ncalls = 0;
    iothub_eh_opts_t o = opts(&r, 10);
    o.wire.many = 0;
    o.wire.consumer_group = "single";
    send_n(h, &a, 3);
    iothub_eh_t *t = iothub_eh_start(h, &o, err, sizeof err);
    wait_events(t, 3);
    iothub_eh_stop(t);
    assert_int_equal(r.ncalls, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.calls[i].n, 1);
        assert_int_equal(r.calls[i].seqs[0], i);
    }
    /* minEventBatchSize 5 with a short maxWaitTime: 2 events still come, together */
    r.ncalls = 0;
    o = opts(&r, 10);
    o.wire.consumer_group = "minbatch";
    o.batching.min_batch = 5;
    o.batching.max_wait_ms = 150;
    t = iothub_eh_start(h, &o, err, sizeof err);
    wait_events(t, 3);   /* the 3 already in the log: fewer than 5, sent after maxWaitTime */
    send_n(h, &a, 5);
    wait_events(t, 8);
    iothub_eh_stop(t);
    assert_int_equal(r.ncalls, 2);
    assert_int_equal(r.calls[0].n, 3);
    assert_int_equal(r.calls[1].n, 5);
    iothub_close(h);
}

static void test_trigger_compaction(void **state)
{
    (void)state;
    char err[512];
    iothub_t *h = hub(400, err, sizeof err);   /* tiny segments */
    iothub_auth_t a = device(h, "dev1");
    int p = iothub_partition_of("dev1", 4);
    send_n(h, &a, 40);
    iothub_stats_t st;
    iothub_stats(h, &st);
    size_t before = st.p[p].segments;
    assert_true(before > 3);
    /* no consumer group yet: nothing may go */
    assert_int_equal(iothub_compact_now(h), 0);
    static recorder_t r = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0, 0, 0};
    r.ncalls = 0;
    iothub_eh_opts_t o = opts(&r, 100);
    iothub_eh_t *t = iothub_eh_start(h, &o, err, sizeof err);
    /* a second consumer group that has read nothing holds everything back */
    iothub_eh_opts_t o2 = opts(&r, 100);
    o2.wire.consumer_group = "slow";
    static recorder_t r2 = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0, 0, 1, 0};
    o2.invoke_arg = &r2;
    o2.retry = (dh_retry_t){DH_RETRY_FIXED, -1, 0, 0, 0};
    o2.retry.delay_ms = 50;
    iothub_eh_t *t2 = iothub_eh_start(h, &o2, err, sizeof err);
    wait_events(t, 40);
    iothub_eh_stop(t);
    assert_int_equal(iothub_compact_now(h), 0);
    iothub_eh_stop(t2);
    char ck[300];
    snprintf(ck, sizeof ck, "%s/slow", iothub_checkpoint_root(h));
    assert_int_equal(test_tmpdir_remove(ck), 0);   /* removing a stale consumer group's checkpoints releases it */
    assert_true(iothub_compact_now(h) > 0);
    iothub_stats(h, &st);
    assert_true(st.p[p].segments < before);
    assert_true(st.p[p].first_seq > 0 && st.p[p].first_seq <= 40);
    iothub_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batching_settings),
        cmocka_unit_test(test_wire_many),
        cmocka_unit_test(test_wire_bodies),
        cmocka_unit_test_setup_teardown(test_trigger_delivers_in_order, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_trigger_retry_policy, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_trigger_single_and_min_batch, mk_dir, rm_dir),
        cmocka_unit_test_setup_teardown(test_trigger_compaction, mk_dir, rm_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
