/* table_props.c — typed entity properties, key rules and URL encoding for the Table client.
 *
 * Owns: the JSON shapes of Edm types (Int64 as annotated strings, doubles always annotated
 * Edm.Double with NaN/±Infinity as annotated strings, DateTime annotated), the typed
 * getters that accept both annotated and bare forms, PartitionKey/RowKey validation and
 * escaping, table-name validation, and base64/percent-encoding helpers. Pure functions: no
 * I/O, so all of it is unit-tested directly. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "azure/table.h"
#include "azure/table_internal.h"
#include "util/base64.h"

#define ANNOT_SUFFIX "@odata.type"
#define PROP_NAME_MAX 255

static void set_err(char *err, size_t errlen, const char *fmt, const char *a)
{
    if (err && errlen) snprintf(err, errlen, fmt, a ? a : "");
}

/* ---- base64 / percent-encoding --------------------------------------------------------- */

unsigned char *table_b64_decode(const char *in, size_t n, size_t *out_len)
{
    if (!in || !out_len || n == 0) return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    long k = out ? base64_decode(in, n, out) : -1;
    if (k < 0) {
        free(out);
        return NULL;
    }
    *out_len = (size_t)k;
    return out;
}

int table_pct_encode(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (buf_reserve(b, strlen(s) * 3 + 1) != 0) return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
    return b->oom ? -1 : 0;
}

int table_key_escape(buf_t *b, const char *key)
{
    static const char hex[] = "0123456789ABCDEF";
    if (buf_reserve(b, strlen(key) * 6 + 1) != 0) return -1;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_putc(b, (char)c);
        } else if (c == '\'') {
            buf_append(b, "%27%27", 6);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
    return b->oom ? -1 : 0;
}

/* ---- names and keys --------------------------------------------------------------------- */

int table_name_valid(const char *name, char *err, size_t errlen)
{
    if (!name) { set_err(err, errlen, "table name is NULL", NULL); return 0; }
    size_t n = strlen(name);
    if (n < 3 || n > 63) {
        set_err(err, errlen, "table name must be 3-63 characters (letters and digits, starting "
                             "with a letter)%s", "");
        return 0;
    }
    if (!((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z'))) {
        set_err(err, errlen, "table name must start with a letter%s", "");
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            set_err(err, errlen, "table name may only contain letters and digits%s", "");
            return 0;
        }
    }
    {
        static const char reserved[] = "tables";
        size_t i = 0;
        for (; i < n && reserved[i]; i++) {
            char c = name[i];
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (c != reserved[i]) break;
        }
        if (i == n && reserved[i] == '\0') {
            set_err(err, errlen, "\"Tables\" is a reserved table name%s", "");
            return 0;
        }
    }
    return 1;
}

int table_key_valid(const char *key, char *err, size_t errlen)
{
    if (!key) { set_err(err, errlen, "key is NULL", NULL); return 0; }
    size_t units = 0; /* UTF-16 code units, which is how the service counts characters */
    const unsigned char *p = (const unsigned char *)key;
    while (*p) {
        unsigned long cp;
        int len;
        unsigned char c = *p;
        if (c < 0x80) { cp = c; len = 1; }
        else if ((c & 0xE0) == 0xC0) { cp = c & 0x1F; len = 2; }
        else if ((c & 0xF0) == 0xE0) { cp = c & 0x0F; len = 3; }
        else if ((c & 0xF8) == 0xF0) { cp = c & 0x07; len = 4; }
        else { set_err(err, errlen, "key is not valid UTF-8%s", ""); return 0; }
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) { set_err(err, errlen, "key is not valid UTF-8%s", ""); return 0; }
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            set_err(err, errlen, "key is not valid UTF-8%s", "");
            return 0;
        }
        if (cp == '/' || cp == '\\' || cp == '#' || cp == '?') {
            set_err(err, errlen, "key contains a forbidden character ('/', '\\', '#' or '?')%s", "");
            return 0;
        }
        if (cp <= 0x1F || (cp >= 0x7F && cp <= 0x9F)) {
            set_err(err, errlen, "key contains a control character (U+0000-U+001F or "
                                 "U+007F-U+009F)%s", "");
            return 0;
        }
        units += cp >= 0x10000 ? 2 : 1;
        if (units > TABLE_KEY_MAX) {
            set_err(err, errlen, "key is longer than 1024 characters%s", "");
            return 0;
        }
        p += len;
    }
    return 1;
}

int table_entity_keys(const cJSON *entity, const char **pk, const char **rk, char *err,
                      size_t errlen)
{
    char why[160];
    if (!cJSON_IsObject(entity)) { set_err(err, errlen, "entity is not a JSON object%s", ""); return -1; }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(entity, "PartitionKey");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(entity, "RowKey");
    if (!cJSON_IsString(p) || !cJSON_IsString(r)) {
        set_err(err, errlen, "entity needs string PartitionKey and RowKey properties%s", "");
        return -1;
    }
    if (!table_key_valid(p->valuestring, why, sizeof(why))) {
        set_err(err, errlen, "invalid PartitionKey: %s", why);
        return -1;
    }
    if (!table_key_valid(r->valuestring, why, sizeof(why))) {
        set_err(err, errlen, "invalid RowKey: %s", why);
        return -1;
    }
    *pk = p->valuestring;
    *rk = r->valuestring;
    return 0;
}

int table_entity_print(buf_t *b, const cJSON *entity)
{
    if (!cJSON_IsObject(entity)) return -1;
    int has_meta = 0;
    for (const cJSON *c = entity->child; c; c = c->next)
        if (c->string && strncmp(c->string, "odata.", 6) == 0) { has_meta = 1; break; }
    char *s;
    if (!has_meta) {
        s = cJSON_PrintUnformatted(entity);
    } else {
        /* a shallow view without the metadata: references, nothing copied */
        cJSON *view = cJSON_CreateObject();
        if (!view) return -1;
        for (const cJSON *c = entity->child; c; c = c->next) {
            if (!c->string || strncmp(c->string, "odata.", 6) == 0) continue;
            if (!cJSON_AddItemReferenceToObject(view, c->string, (cJSON *)c)) {
                cJSON_Delete(view);
                return -1;
            }
        }
        s = cJSON_PrintUnformatted(view);
        cJSON_Delete(view);
    }
    if (!s) return -1;
    /* U+2028 and U+2029 are valid raw in JSON strings, but Azurite's $batch parser cuts lines
     * at them (a body holding one was refused or, in a key, written to the wrong row): write
     * them escaped, as JSON allows anywhere. Everything else cJSON writes raw was checked
     * against Azurite (tests/integration/test_table_azurite.c). */
    int rc = 0;
    const char *p = s, *q;
    while ((q = strstr(p, "\xe2\x80")) != NULL) {
        unsigned char third = (unsigned char)q[2];
        if (third == 0xA8 || third == 0xA9) {
            rc |= buf_append(b, p, (size_t)(q - p));
            rc |= buf_puts(b, third == 0xA8 ? "\\u2028" : "\\u2029");
            p = q + 3;
        } else {
            rc |= buf_append(b, p, (size_t)(q - p) + 2);   /* another character: copy its lead bytes */
            p = q + 2;
        }
    }
    rc |= buf_puts(b, p);
    cJSON_free(s);
    return rc ? -1 : 0;
}

char *table_partition_filter(const char *pk)
{
    buf_t b = BUF_INIT;
    buf_puts(&b, "PartitionKey eq '");
    for (const char *p = pk; *p; p++) {
        if (*p == '\'') buf_putc(&b, '\'');
        buf_putc(&b, *p);
    }
    buf_putc(&b, '\'');
    if (b.oom) { buf_free(&b); return NULL; }
    return buf_steal(&b);
}

/* ---- typed properties -------------------------------------------------------------------- */

static int annot_name(char *out, size_t outlen, const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > PROP_NAME_MAX || n + sizeof(ANNOT_SUFFIX) > outlen) return -1;
    memcpy(out, name, n);
    memcpy(out + n, ANNOT_SUFFIX, sizeof(ANNOT_SUFFIX));
    return 0;
}

/* Put item under name (replacing) and set or remove the annotation. Takes ownership of item. */
static int put_prop(cJSON *entity, const char *name, cJSON *item, const char *edm)
{
    char an[PROP_NAME_MAX + sizeof(ANNOT_SUFFIX)];
    if (!item) return -1;
    if (!cJSON_IsObject(entity) || !name || annot_name(an, sizeof(an), name) != 0) {
        cJSON_Delete(item);
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(entity, name)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(entity, name, item)) { cJSON_Delete(item); return -1; }
    } else if (!cJSON_AddItemToObject(entity, name, item)) {
        cJSON_Delete(item);
        return -1;
    }
    if (!edm) {
        cJSON_DeleteItemFromObjectCaseSensitive(entity, an);
        return 0;
    }
    cJSON *a = cJSON_GetObjectItemCaseSensitive(entity, an);
    if (cJSON_IsString(a) && strcmp(a->valuestring, edm) == 0) return 0;
    cJSON *na = cJSON_CreateString(edm);
    if (!na) return -1;
    if (a) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(entity, an, na)) { cJSON_Delete(na); return -1; }
    } else if (!cJSON_AddItemToObject(entity, an, na)) {
        cJSON_Delete(na);
        return -1;
    }
    return 0;
}

int table_set_string(cJSON *entity, const char *name, const char *value)
{
    if (!value) return -1;
    return put_prop(entity, name, cJSON_CreateString(value), NULL);
}

int table_set_int64(cJSON *entity, const char *name, int64_t value)
{
    char s[24];
    snprintf(s, sizeof(s), "%lld", (long long)value);
    return put_prop(entity, name, cJSON_CreateString(s), "Edm.Int64");
}

int table_set_double(cJSON *entity, const char *name, double value)
{
    cJSON *item;
    if (isnan(value)) item = cJSON_CreateString("NaN");
    else if (isinf(value)) item = cJSON_CreateString(value > 0 ? "Infinity" : "-Infinity");
    else item = cJSON_CreateNumber(value);
    return put_prop(entity, name, item, "Edm.Double");
}

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* yyyy-mm-ddThh:mm:ss[.f{1,7}]Z */
static int iso8601_utc_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2) || s[10] != 'T' || !digits(s + 11, 2) || s[13] != ':' ||
        !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
        return 0;
    size_t i = 19;
    if (s[i] == '.') {
        size_t f = 0;
        for (i++; s[i] >= '0' && s[i] <= '9'; i++) f++;
        if (f < 1 || f > 7) return 0;
    }
    if (s[i] != 'Z' || s[i + 1] != '\0') return 0;
    int mon = (s[5] - '0') * 10 + (s[6] - '0'), day = (s[8] - '0') * 10 + (s[9] - '0');
    int hh = (s[11] - '0') * 10 + (s[12] - '0'), mm = (s[14] - '0') * 10 + (s[15] - '0');
    int ss = (s[17] - '0') * 10 + (s[18] - '0');
    return mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hh < 24 && mm < 60 && ss < 60;
}

int table_set_datetime(cJSON *entity, const char *name, const char *iso8601_utc)
{
    if (!iso8601_utc || !iso8601_utc_ok(iso8601_utc)) return -1;
    return put_prop(entity, name, cJSON_CreateString(iso8601_utc), "Edm.DateTime");
}

int table_set_bool(cJSON *entity, const char *name, int value)
{
    return put_prop(entity, name, cJSON_CreateBool(value != 0), NULL);
}

int table_get_int64(const cJSON *entity, const char *name, int64_t *out)
{
    if (!cJSON_IsObject(entity) || !name || !out) return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entity, name);
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (!*s || (*s != '-' && (*s < '0' || *s > '9'))) return -1;
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno || *end) return -1;
        *out = (int64_t)x;
        return 0;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        /* exactly representable integers only; 2^63 itself is out of range */
        if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

int table_get_double(const cJSON *entity, const char *name, double *out)
{
    if (!cJSON_IsObject(entity) || !name || !out) return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entity, name);
    if (cJSON_IsNumber(v)) { *out = v->valuedouble; return 0; }
    if (!cJSON_IsString(v)) return -1;
    const char *s = v->valuestring;
    if (strcmp(s, "NaN") == 0) { *out = NAN; return 0; }
    if (strcmp(s, "Infinity") == 0 || strcmp(s, "INF") == 0) { *out = INFINITY; return 0; }
    if (strcmp(s, "-Infinity") == 0 || strcmp(s, "-INF") == 0) { *out = -INFINITY; return 0; }
    /* a numeric string (e.g. an Int64 read as a double) */
    if (!*s || !(*s == '-' || *s == '+' || *s == '.' || (*s >= '0' && *s <= '9'))) return -1;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(d)) return -1;
    *out = d;
    return 0;
}

const char *table_get_string(const cJSON *entity, const char *name)
{
    if (!cJSON_IsObject(entity) || !name) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entity, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int table_etag_ok(const char *e)
{
    size_t n = strlen(e);
    if (n == 0 || n >= TABLE_ETAG_MAX) return 0;
    for (const unsigned char *p = (const unsigned char *)e; *p; p++)
        if (*p < 0x20 || *p == 0x7F) return 0; /* it goes into an If-Match header as it is */
    return 1;
}
