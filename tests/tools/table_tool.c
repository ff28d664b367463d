/* table_tool — drives the C Table client from other tests (tests/js/table_interop.test.mjs).
 *
 * Usage (connection string from TEST_STORAGE_CONNECTION):
 *   table_tool create TABLE
 *   table_tool put TABLE PK RK      write the fixed typed entity below; prints {"etag":...}
 *   table_tool get TABLE PK RK      prints {"etag":...,"entity":{...},"typed":{...}} where
 *                                   typed[P] = {"type":..., "int64":"...", "double":...}
 *                                   as seen through table_get_int64/table_get_double
 * Exit status 0 on success; on failure the client's message goes to stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "azure/table.h"

static int die(const char *what, const table_result_t *res)
{
    fprintf(stderr, "table_tool: %s: %s (%s)\n", what, res->message, table_status_name(res->status));
    return 1;
}

static cJSON *typed_view(const cJSON *e)
{
    cJSON *out = cJSON_CreateObject();
    char an[300];
    for (const cJSON *p = e->child; p; p = p->next) {
        if (!p->string || strchr(p->string, '@') || strncmp(p->string, "odata.", 6) == 0) continue;
        cJSON *t = cJSON_AddObjectToObject(out, p->string);
        snprintf(an, sizeof(an), "%s@odata.type", p->string);
        const char *type = table_get_string(e, an);
        if (!type) {
            type = cJSON_IsString(p) ? "Edm.String" : cJSON_IsBool(p) ? "Edm.Boolean"
                 : cJSON_IsNumber(p) ? "Edm.Int32-or-Double" : "other";
        }
        cJSON_AddStringToObject(t, "type", type);
        int64_t i;
        double d;
        if (table_get_int64(e, p->string, &i) == 0) {
            char s[32];
            snprintf(s, sizeof(s), "%lld", (long long)i);
            cJSON_AddStringToObject(t, "int64", s);
        }
        if (table_get_double(e, p->string, &d) == 0) {
            if (isnan(d)) cJSON_AddStringToObject(t, "double", "NaN");
            else if (isinf(d)) cJSON_AddStringToObject(t, "double", d > 0 ? "Infinity" : "-Infinity");
            else cJSON_AddNumberToObject(t, "double", d);
        }
        const char *s = table_get_string(e, p->string);
        if (s) cJSON_AddStringToObject(t, "string", s);
    }
    return out;
}

int main(int argc, char **argv)
{
    const char *conn = getenv("TEST_STORAGE_CONNECTION");
    char err[256];
    table_result_t res;
    int rc = 1;
    if (argc < 3 || !conn) {
        fprintf(stderr, "usage: table_tool create|put|get TABLE [PK RK] (needs TEST_STORAGE_CONNECTION)\n");
        return 2;
    }
    table_options_t opts = {.timeout_ms = 5000, .connect_timeout_ms = 2000, .retries = 2, .retry_base_ms = 50};
    table_client_t *tc = table_client_new(conn, &opts, err, sizeof(err));
    if (!tc) {
        fprintf(stderr, "table_tool: %s\n", err);
        return 1;
    }
    const char *cmd = argv[1], *table = argv[2];
    if (strcmp(cmd, "create") == 0) {
        if (table_create_if_missing(tc, table, &res) != TABLE_OK) rc = die("create", &res);
        else { printf("{}\n"); rc = 0; }
    } else if (strcmp(cmd, "put") == 0 && argc == 5) {
        cJSON *e = cJSON_CreateObject();
        char etag[TABLE_ETAG_MAX];
        if (table_set_string(e, "PartitionKey", argv[3]) || table_set_string(e, "RowKey", argv[4]) ||
            table_set_int64(e, "Count", INT64_C(9007199254740993)) ||
            table_set_int64(e, "Negative", INT64_MIN) ||
            table_set_double(e, "Celsius", 22.0) || table_set_double(e, "Ratio", 0.1) ||
            table_set_double(e, "Nan", NAN) || table_set_double(e, "PosInf", INFINITY) ||
            table_set_datetime(e, "LastSeen", "2024-01-02T03:04:05.1234567Z") ||
            table_set_string(e, "Name", "O'Brien \xe2\x9c\x93 \xc3\xbc") ||
            table_set_bool(e, "Flag", 1)) {
            fprintf(stderr, "table_tool: building the entity failed\n");
        } else if (table_replace_entity(tc, table, e, NULL, etag, &res) != TABLE_OK) {
            rc = die("put", &res);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "etag", etag);
            char *s = cJSON_PrintUnformatted(o);
            printf("%s\n", s);
            cJSON_free(s);
            cJSON_Delete(o);
            rc = 0;
        }
        cJSON_Delete(e);
    } else if (strcmp(cmd, "get") == 0 && argc == 5) {
        cJSON *e = NULL;
        char etag[TABLE_ETAG_MAX];
        if (table_get_entity(tc, table, argv[3], argv[4], NULL, &e, etag, &res) != TABLE_OK) {
            rc = die("get", &res);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "etag", etag);
            cJSON_AddItemToObject(o, "typed", typed_view(e));
            cJSON_AddItemToObject(o, "entity", e);
            char *s = cJSON_PrintUnformatted(o);
            printf("%s\n", s);
            cJSON_free(s);
            cJSON_Delete(o);
            rc = 0;
        }
    } else {
        fprintf(stderr, "table_tool: unknown command or wrong arguments\n");
        rc = 2;
    }
    table_client_free(tc);
    return rc;
}
