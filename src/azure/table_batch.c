/* table_batch.c — the $batch (entity-group transaction) wire format.
 *
 * Owns: client-side batch rules (1..100 operations, one PartitionKey, each row once),
 * building the multipart/mixed request body (CRLF, absolute inner URLs) and parsing the
 * multipart response. The parser does not trust the layout: it scans for "HTTP/1.1 NNN"
 * status lines (Azurite's error for >100 operations puts a stray changeset line before
 * it), takes each part's ETag, and finds the failing operation from the "N:" prefix of the
 * error message. Pure functions; the HTTP exchange lives in table.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "azure/table.h"
#include "azure/table_internal.h"

int table_batch_validate(const table_batch_op_t *ops, size_t n_ops, int *bad_index, char *err,
                         size_t errlen)
{
    char why[200];
    const char *pk0 = NULL;
    *bad_index = -1;
    if (!ops || n_ops == 0) {
        snprintf(err, errlen, "a batch needs at least one operation");
        return -1;
    }
    if (n_ops > TABLE_BATCH_MAX_OPS) {
        snprintf(err, errlen, "a batch holds at most %d operations, got %zu; split it",
                 TABLE_BATCH_MAX_OPS, n_ops);
        return -1;
    }
    const char **rks = malloc(n_ops * sizeof(*rks));
    if (!rks) { snprintf(err, errlen, "out of memory"); return -1; }
    for (size_t i = 0; i < n_ops; i++) {
        const char *pk, *rk;
        *bad_index = (int)i;
        if (ops[i].kind != TABLE_OP_INSERT && ops[i].kind != TABLE_OP_MERGE &&
            ops[i].kind != TABLE_OP_REPLACE && ops[i].kind != TABLE_OP_DELETE) {
            snprintf(err, errlen, "batch operation %zu has an unknown kind", i);
            goto fail;
        }
        if (table_entity_keys(ops[i].entity, &pk, &rk, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "batch operation %zu: %s", i, why);
            goto fail;
        }
        if (ops[i].if_match && !table_etag_ok(ops[i].if_match)) {
            snprintf(err, errlen, "batch operation %zu: If-Match ETag is empty, too long or "
                     "contains control characters", i);
            goto fail;
        }
        if (!pk0) {
            pk0 = pk;
        } else if (strcmp(pk, pk0) != 0) {
            snprintf(err, errlen, "batch operation %zu has PartitionKey different from "
                     "operation 0; an entity-group transaction must use one PartitionKey", i);
            goto fail;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(rks[j], rk) == 0) {
                snprintf(err, errlen, "batch operations %zu and %zu touch the same entity; "
                         "each entity may appear only once per batch", j, i);
                goto fail;
            }
        }
        rks[i] = rk;
    }
    free(rks);
    *bad_index = -1;
    return 0;
fail:
    free(rks);
    return -1;
}

static void put_key_path(buf_t *b, const char *table_url, const char *pk, const char *rk)
{
    buf_puts(b, table_url);
    buf_puts(b, "(PartitionKey='");
    table_key_escape(b, pk);
    buf_puts(b, "',RowKey='");
    table_key_escape(b, rk);
    buf_puts(b, "')");
}

int table_batch_build(buf_t *b, const char *table_url, const table_batch_op_t *ops,
                      size_t n_ops, const char *batch_boundary, const char *changeset_boundary)
{
    buf_printf(b, "--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n", batch_boundary,
               changeset_boundary);
    for (size_t i = 0; i < n_ops; i++) {
        const table_batch_op_t *op = &ops[i];
        const char *pk = table_get_string(op->entity, "PartitionKey");
        const char *rk = table_get_string(op->entity, "RowKey");
        if (!pk || !rk) return -1;
        buf_printf(b, "--%s\r\nContent-Type: application/http\r\n"
                      "Content-Transfer-Encoding: binary\r\n\r\n", changeset_boundary);
        switch (op->kind) {
        case TABLE_OP_INSERT:
            buf_printf(b, "POST %s HTTP/1.1\r\n", table_url);
            break;
        case TABLE_OP_MERGE:
        case TABLE_OP_REPLACE:
        case TABLE_OP_DELETE:
            buf_puts(b, op->kind == TABLE_OP_MERGE ? "MERGE " :
                        op->kind == TABLE_OP_REPLACE ? "PUT " : "DELETE ");
            put_key_path(b, table_url, pk, rk);
            buf_puts(b, " HTTP/1.1\r\n");
            break;
        default:
            return -1;
        }
        buf_puts(b, "Accept: application/json;odata=minimalmetadata\r\n"
                    "DataServiceVersion: 3.0;\r\n");
        if (op->kind == TABLE_OP_DELETE) {
            buf_printf(b, "If-Match: %s\r\n\r\n", op->if_match ? op->if_match : "*");
        } else {
            buf_puts(b, "Content-Type: application/json\r\n");
            if (op->kind == TABLE_OP_INSERT) buf_puts(b, "Prefer: return-no-content\r\n");
            else if (op->if_match) buf_printf(b, "If-Match: %s\r\n", op->if_match);
            buf_puts(b, "\r\n");
            if (table_entity_print(b, op->entity) != 0) return -1;
            buf_puts(b, "\r\n");
        }
    }
    buf_printf(b, "--%s--\r\n--%s--\r\n", changeset_boundary, batch_boundary);
    return b->oom ? -1 : 0;
}

/* ---- response parsing ------------------------------------------------------------------- */

typedef struct part {
    int         status;
    const char *hdr, *hdr_end;     /* header block after the status line */
    const char *body, *body_end;   /* up to the next boundary line */
} part_t;

static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

/* Is [p, e) an "HTTP/1.x NNN" status line (leading whitespace allowed)? */
static int status_line(const char *p, const char *e, int *status)
{
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    if (e - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ') return 0;
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    if (e - p > 12 && p[12] != ' ' && p[12] != '\r') return 0;
    *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    return 1;
}

/* Find the value of header `name` in [h, e); copies it (trimmed) into out. */
static int find_header(const char *h, const char *e, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    for (const char *p = h; p < e;) {
        const char *le = line_end(p, e);
        if ((size_t)(le - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if ((size_t)(ve - v) >= outlen) return -1;
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return 0;
        }
        p = le < e ? le + 1 : e;
    }
    return -1;
}

table_status_t table_batch_parse(const char *body, size_t len, table_batch_op_t *ops,
                                 size_t n_ops, table_result_t *res)
{
    part_t stack_parts[8];
    part_t *parts = stack_parts;
    size_t cap = 8, n = 0;
    const char *end = body + len;
    table_status_t st = TABLE_PROTOCOL;

    res->batch_index = -1;
    if (!body) len = 0, end = body;
    for (const char *p = body; p && p < end;) {
        const char *le = line_end(p, end);
        int status;
        if (status_line(p, le, &status)) {
            if (n == cap) {
                part_t *np = malloc(cap * 2 * sizeof(*np));
                if (!np) { st = TABLE_NOMEM; goto out; }
                memcpy(np, parts, n * sizeof(*np));
                if (parts != stack_parts) free(parts);
                parts = np;
                cap *= 2;
            }
            part_t *pt = &parts[n++];
            pt->status = status;
            pt->hdr = le < end ? le + 1 : end;
            /* headers end at the first empty line */
            const char *q = pt->hdr;
            while (q < end) {
                const char *qe = line_end(q, end);
                if (qe == q || (qe - q == 1 && *q == '\r')) break;
                q = qe < end ? qe + 1 : end;
            }
            pt->hdr_end = q;
            const char *b = q < end ? line_end(q, end) : end;
            b = b < end ? b + 1 : end;
            pt->body = b;
            /* the body runs to the next boundary ("--...") or status line */
            const char *r = b;
            int dummy;
            while (r < end) {
                const char *re = line_end(r, end);
                if ((re - r >= 2 && r[0] == '-' && r[1] == '-') || status_line(r, re, &dummy)) break;
                r = re < end ? re + 1 : end;
            }
            pt->body_end = r;
            p = r;
            continue;
        }
        p = le < end ? le + 1 : end;
    }

    if (n == 0) {
        snprintf(res->message, sizeof(res->message),
                 "$batch response (202) holds no operation status; cannot tell what happened");
        goto out;
    }
    /* Any non-2xx part is the failure. */
    for (size_t i = 0; i < n; i++) {
        if (parts[i].status >= 200 && parts[i].status < 300) continue;
        part_t *pt = &parts[i];
        char msg[200] = "";
        table_error_from_body(pt->body, (size_t)(pt->body_end - pt->body), res->code,
                              sizeof(res->code), msg, sizeof(msg));
        int idx = -1;
        const char *m = msg;
        if (*m >= '0' && *m <= '9') {
            long v = 0;
            while (*m >= '0' && *m <= '9' && v < 100000) v = v * 10 + (*m++ - '0');
            if (*m == ':') { idx = (int)v; m++; }
            else m = msg;
        }
        if (idx < 0) {
            char cid[16];
            if (find_header(pt->hdr, pt->hdr_end, "Content-ID", cid, sizeof(cid)) == 0) {
                int v = atoi(cid);
                if (v >= 1) idx = v - 1;
            }
        }
        if (idx < 0 && n_ops == 1) idx = 0;
        if (idx >= (int)n_ops) idx = -1;
        res->batch_index = idx;
        res->http_status = pt->status;
        st = table_status_from_http(pt->status);
        if (st == TABLE_OK) st = TABLE_PROTOCOL;
        if (idx >= 0)
            snprintf(res->message, sizeof(res->message), "operation %d failed: %d %.63s: %.140s",
                     idx, pt->status, res->code[0] ? res->code : "(no code)", m);
        else
            snprintf(res->message, sizeof(res->message), "failed (operation unknown): %d %.63s: %.150s",
                     pt->status, res->code[0] ? res->code : "(no code)", m);
        goto out;
    }
    if (n != n_ops) {
        snprintf(res->message, sizeof(res->message),
                 "$batch response has %zu operation results for %zu operations", n, n_ops);
        goto out;
    }
    /* An ETag is kept only when it can be sent back as an If-Match header as it is (no
     * control characters: a lone CR inside a header line is not a line end here). */
    for (size_t i = 0; i < n; i++) {
        ops[i].etag[0] = '\0';
        if (find_header(parts[i].hdr, parts[i].hdr_end, "ETag", ops[i].etag, TABLE_ETAG_MAX) != 0 ||
            !table_etag_ok(ops[i].etag)) {
            ops[i].etag[0] = '\0';
            if (ops[i].kind == TABLE_OP_DELETE) continue;
            snprintf(res->message, sizeof(res->message),
                     "$batch operation %zu succeeded but its ETag is missing, too long or holds control "
                     "characters", i);
            res->batch_index = (int)i;
            goto out;
        }
    }
    res->code[0] = '\0';
    res->message[0] = '\0';
    st = TABLE_OK;
out:
    if (parts != stack_parts) free(parts);
    return st;
}
