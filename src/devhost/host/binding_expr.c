/* binding_expr.c — "{...}" binding expressions (see binding_expr.h). */
#include "devhost/host/binding_expr.h"

#include "devhost/host/common.h"
#include "protocol/invocation.h"
#include "util/buf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int dh_expr_has(const char *tmpl)
{
    const char *o = tmpl ? strchr(tmpl, '{') : NULL;
    return o && strchr(o, '}') != NULL;
}

/* Append the text form of a resolved value, as .NET's ToString() gives it. */
static void put_value(buf_t *b, const cJSON *v)
{
    if (cJSON_IsString(v)) buf_puts(b, v->valuestring);
    else if (cJSON_IsBool(v)) buf_puts(b, cJSON_IsTrue(v) ? "True" : "False");
    else if (cJSON_IsNumber(v)) dh_put_number(b, v->valuedouble);
    else if (!cJSON_IsNull(v)) {
        char *t = cJSON_Print(v);
        if (t) buf_puts(b, t);
        free(t);
    }
}

/* Resolve one expression "a.b.c" into b. Returns 0 or -1 with err. */
static int resolve_one(const char *expr, size_t n, const cJSON *md, buf_t *b, char *err, size_t errlen)
{
    char name[256];
    if (n == 0 || n >= sizeof name) {
        snprintf(err, errlen, "invalid binding expression '{%.*s}'", (int)(n < 64 ? n : 64), expr);
        return -1;
    }
    memcpy(name, expr, n);
    name[n] = '\0';
    if (strcasecmp(name, "rand-guid") == 0) {
        char g[37];
        if (dh_uuid4(g) != 0) { snprintf(err, errlen, "no randomness for {rand-guid}"); return -1; }
        buf_puts(b, g);
        return 0;
    }
    if (strcasecmp(name, "datetime") == 0) {
        char t[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(t, sizeof t, "%Y-%m-%dT%H-%M-%SZ", &tm);
        buf_puts(b, t);
        return 0;
    }
    char *save = NULL;
    char *part = strtok_r(name, ".", &save);
    const cJSON *raw = part ? cJSON_GetObjectItem(md, part) : NULL;
    if (!raw || cJSON_IsNull(raw)) {
        snprintf(err, errlen, "No value for named parameter '%s'.", part ? part : "");
        return -1;
    }
    cJSON *cur = json_unwrap(raw); /* the wire double-encodes strings */
    if (!cur) { snprintf(err, errlen, "out of memory"); return -1; }
    while ((part = strtok_r(NULL, ".", &save)) != NULL) {
        const cJSON *next = cJSON_IsObject(cur) ? cJSON_GetObjectItem(cur, part) : NULL;
        if (!next) {
            snprintf(err, errlen, "Error while accessing '%s': property doesn't exist.", part);
            cJSON_Delete(cur);
            return -1;
        }
        cJSON *copy = json_unwrap(next);
        cJSON_Delete(cur);
        if (!(cur = copy)) { snprintf(err, errlen, "out of memory"); return -1; }
    }
    put_value(b, cur);
    cJSON_Delete(cur);
    return 0;
}

char *dh_expr_resolve(const char *tmpl, const cJSON *metadata, char *err, size_t errlen)
{
    buf_t b = BUF_INIT;
    const char *p = tmpl;
    while (*p) {
        const char *o = strchr(p, '{');
        const char *c = o ? strchr(o, '}') : NULL;
        if (!o || !c) { buf_puts(&b, p); break; }
        buf_append(&b, p, (size_t)(o - p));
        if (resolve_one(o + 1, (size_t)(c - o - 1), metadata, &b, err, errlen) != 0) {
            buf_free(&b);
            return NULL;
        }
        p = c + 1;
    }
    char *out = buf_steal(&b);
    if (!out) snprintf(err, errlen, "out of memory");
    return out;
}
