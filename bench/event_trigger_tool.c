/* event_trigger_tool.c — the two non-handler figures of the EventTrigger benchmark
 * (docs/benchmarks.md, "EventTrigger"), using the project's C table client:
 *
 *   event_trigger_tool orig    TABLE PK EVENTS DEVICES PARTITIONS
 *     (a) the original algorithm: per event one read and one conditional merge (insert when
 *         absent; 412/409 → re-read with the original's full-jitter backoff), serially within
 *         a partition, the partitions in parallel (one thread each).
 *   event_trigger_tool ceiling TABLE PK ROWS DEVICES PARTITIONS OPS_PER_BATCH
 *     (c) the ceiling: ROWS row writes as back-to-back $batch merges (OPS_PER_BATCH rows each,
 *         rows shaped like DeviceState rows), one thread per partition.
 *
 * The storage connection string comes from BENCH_STORAGE_CONNECTION. Prints one JSON line:
 * {"mode":..., "seconds":..., "events" or "rows":..., "requests":..., "errors":...}. */
#include "azure/table.h"
#include "telemetry/backoff.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    table_client_t *tc;
    const char     *table, *pk;
    int             partition, partitions, devices;
    long            work;        /* events (orig) or rows (ceiling) for this thread */
    int             ops_per_batch;
    long            requests, errors;
} job_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* device ids of one partition: d where d % partitions == partition */
static void device_id(int partition, int partitions, long k, int devices, char *out, size_t len)
{
    int per = devices / partitions;
    int d = (int)(k % per) * partitions + partition;
    snprintf(out, len, "bench-%03d", d);
}

static cJSON *row(const char *pk, const char *id, long count, double t)
{
    cJSON *e = cJSON_CreateObject();
    table_set_string(e, "PartitionKey", pk);
    table_set_string(e, "RowKey", id);
    table_set_string(e, "DeviceId", id);
    table_set_double(e, "Celsius", t);
    table_set_double(e, "Humidity", 50.5);
    table_set_double(e, "hPa", 1012.25);
    table_set_string(e, "Id", "12345");
    table_set_int64(e, "Count", count);
    table_set_int64(e, "InvalidCount", 0);
    table_set_datetime(e, "LastSeen", "2026-01-01T00:00:00.0000000Z");
    cJSON_AddNumberToObject(e, "Schema", 1);
    table_set_string(e, "Stream", "0123456789abcdef");
    table_set_int64(e, "LastSeq", count);
    return e;
}

static void *run_orig(void *arg)
{
    job_t *j = arg;
    uint64_t rng;
    occ_rng_seed(&rng, (uint64_t)j->partition + 1);
    char id[32];
    for (long k = 0; k < j->work; k++) {
        device_id(j->partition, j->partitions, k, j->devices, id, sizeof id);
        for (int attempt = 1; attempt <= 10; attempt++) {
            cJSON *cur = NULL;
            char etag[TABLE_ETAG_MAX] = "";
            table_result_t res;
            table_status_t st = table_get_entity(j->tc, j->table, j->pk, id, NULL, &cur, etag, &res);
            j->requests++;
            int64_t count = 0;
            if (st == TABLE_OK) table_get_int64(cur, "Count", &count);
            cJSON_Delete(cur);
            cJSON *e = row(j->pk, id, count + 1, 20.0 + (double)(k % 10));
            st = st == TABLE_OK ? table_merge_entity(j->tc, j->table, e, etag, NULL, &res)
                                : table_insert_entity(j->tc, j->table, e, NULL, &res);
            j->requests++;
            cJSON_Delete(e);
            if (st == TABLE_OK) break;
            if (st != TABLE_PRECONDITION && st != TABLE_CONFLICT) { j->errors++; break; }
            occ_sleep_ms(occ_backoff_ms(40, 1000, attempt, &rng));
        }
    }
    return NULL;
}

static void *run_ceiling(void *arg)
{
    job_t *j = arg;
    table_batch_op_t *ops = calloc((size_t)j->ops_per_batch, sizeof *ops);
    cJSON **ents = calloc((size_t)j->ops_per_batch, sizeof *ents);
    if (!ops || !ents) { j->errors++; free(ops); free(ents); return NULL; }
    char id[32];
    long done = 0, round = 0;
    while (done < j->work) {
        int n = (int)(j->work - done < j->ops_per_batch ? j->work - done : j->ops_per_batch);
        for (int k = 0; k < n; k++) {
            device_id(j->partition, j->partitions, k, j->devices, id, sizeof id);
            ents[k] = row(j->pk, id, round + 1, 21.5);
            memset(&ops[k], 0, sizeof ops[k]);
            ops[k].kind = TABLE_OP_MERGE;
            ops[k].entity = ents[k];
        }
        table_result_t res;
        if (table_batch(j->tc, j->table, ops, (size_t)n, &res) != TABLE_OK) j->errors++;
        j->requests++;
        for (int k = 0; k < n; k++) cJSON_Delete(ents[k]);
        done += n;
        round++;
    }
    free(ops);
    free(ents);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 7 || (strcmp(argv[1], "orig") != 0 && strcmp(argv[1], "ceiling") != 0) ||
        (strcmp(argv[1], "ceiling") == 0 && argc < 8)) {
        fprintf(stderr, "usage: %s orig TABLE PK EVENTS DEVICES PARTITIONS\n"
                        "       %s ceiling TABLE PK ROWS DEVICES PARTITIONS OPS_PER_BATCH\n", argv[0], argv[0]);
        return 2;
    }
    const char *conn = getenv("BENCH_STORAGE_CONNECTION");
    if (!conn) { fprintf(stderr, "set BENCH_STORAGE_CONNECTION\n"); return 2; }
    int orig = strcmp(argv[1], "orig") == 0;
    long total = atol(argv[4]);
    int devices = atoi(argv[5]), partitions = atoi(argv[6]);
    int ops = orig ? 1 : atoi(argv[7]);
    if (total <= 0 || devices <= 0 || partitions <= 0 || partitions > 64 || devices % partitions ||
        ops <= 0 || ops > TABLE_BATCH_MAX_OPS || ops > devices / partitions) {
        fprintf(stderr, "bad numbers (DEVICES must be a multiple of PARTITIONS; OPS_PER_BATCH <= devices per partition)\n");
        return 2;
    }
    char err[256];
    table_client_t *tc = table_client_new(conn, NULL, err, sizeof err);
    if (!tc) { fprintf(stderr, "%s\n", err); return 1; }
    table_result_t res;
    if (table_create_if_missing(tc, argv[2], &res) != TABLE_OK) {
        fprintf(stderr, "create table: %s\n", res.message);
        table_client_free(tc);
        return 1;
    }
    job_t jobs[64];
    pthread_t th[64];
    double t0 = now_s();
    for (int p = 0; p < partitions; p++) {
        jobs[p] = (job_t){tc, argv[2], argv[3], p, partitions, devices,
                          total / partitions + (p < total % partitions), ops, 0, 0};
        if (pthread_create(&th[p], NULL, orig ? run_orig : run_ceiling, &jobs[p]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    long requests = 0, errors = 0;
    for (int p = 0; p < partitions; p++) {
        pthread_join(th[p], NULL);
        requests += jobs[p].requests;
        errors += jobs[p].errors;
    }
    double secs = now_s() - t0;
    printf("{\"mode\":\"%s\",\"seconds\":%.3f,\"%s\":%ld,\"requests\":%ld,\"errors\":%ld}\n", argv[1], secs,
           orig ? "events" : "rows", total, requests, errors);
    table_client_free(tc);
    return errors ? 1 : 0;
}
