/* storage_account.c — storage connection-string parsing for the Table client.
 *
 * Owns: turning a connection string (account key, TableEndpoint/EndpointSuffix,
 * UseDevelopmentStorage=true [+ DevelopmentStorageProxyUri], SAS, Cosmos DB Table API) into a
 * storage_account_t. Kept apart from the HTTP code because it is pure, easily unit-tested,
 * and the only place that ever touches the raw account key text. Error messages name the
 * offending setting but never echo a value that could be a secret. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "azure/table.h"
#include "azure/table_internal.h"

#define DEV_ACCOUNT "devstoreaccount1"
#define DEV_KEY "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

enum { CS_PROTOCOL, CS_NAME, CS_KEY, CS_SUFFIX, CS_TABLE_EP, CS_SAS, CS_DEV, CS_PROXY, CS_COUNT };
static const char *const cs_names[CS_COUNT] = {
    "DefaultEndpointsProtocol", "AccountName", "AccountKey", "EndpointSuffix",
    "TableEndpoint", "SharedAccessSignature", "UseDevelopmentStorage",
    "DevelopmentStorageProxyUri"};

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static char *dup_range(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s)) { (*s)++; (*n)--; }
    while (*n && isspace((unsigned char)(*s)[*n - 1])) (*n)--;
}

void storage_account_free(storage_account_t *acct)
{
    if (!acct) return;
    free(acct->account_name);
    if (acct->key) {
        /* wipe the key before giving the memory back */
        volatile unsigned char *k = acct->key;
        for (size_t i = 0; i < acct->key_len; i++) k[i] = 0;
        free(acct->key);
    }
    free(acct->table_endpoint);
    free(acct->sas);
    memset(acct, 0, sizeof(*acct));
}

static int url_ok(const char *u)
{
    const char *rest;
    if (strncasecmp(u, "http://", 7) == 0) rest = u + 7;
    else if (strncasecmp(u, "https://", 8) == 0) rest = u + 8;
    else return 0;
    if (!*rest || *rest == '/') return 0;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#') return 0;
    return 1;
}

/* Cosmos DB Table API hosts: *.table.cosmos.* and the legacy *.table.cosmosdb.* */
static int is_cosmos_host(const char *url)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, "/:");
    for (size_t i = 0; i < n; i++) {
        if (strncasecmp(h + i, ".table.cosmos.", 14) == 0 && i + 14 <= n) return 1;
        if (strncasecmp(h + i, ".table.cosmosdb.", 16) == 0 && i + 16 <= n) return 1;
    }
    return 0;
}

int storage_account_parse(const char *connstr, storage_account_t *out, char *err, size_t errlen)
{
    const char *val[CS_COUNT] = {0};
    size_t vlen[CS_COUNT] = {0};
    char msg[256];

    if (!out) { set_err(err, errlen, "storage_account_parse: out is NULL"); return -1; }
    memset(out, 0, sizeof(*out));
    if (!connstr || !*connstr) {
        set_err(err, errlen, "storage connection string is empty; expected e.g. "
                             "\"UseDevelopmentStorage=true\" or \"AccountName=...;AccountKey=...\"");
        return -1;
    }

    /* Pass 1: split into Key=Value pairs (split on the first '=' only). */
    int seg = 0;
    for (const char *p = connstr; *p;) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        p = end ? end + 1 : p + n;
        trim(&s, &n);
        seg++;
        if (n == 0) continue; /* empty segment, e.g. a trailing ';' */
        const char *eq = memchr(s, '=', n);
        if (!eq) {
            snprintf(msg, sizeof(msg), "storage connection string: segment %d has no '=' "
                     "(expected Key=Value pairs separated by ';')", seg);
            set_err(err, errlen, msg);
            return -1;
        }
        const char *k = s, *v = eq + 1;
        size_t kn = (size_t)(eq - s), vn = n - kn - 1;
        trim(&k, &kn);
        trim(&v, &vn);
        for (int i = 0; i < CS_COUNT; i++) {
            if (strlen(cs_names[i]) == kn && strncasecmp(cs_names[i], k, kn) == 0) {
                if (val[i]) {
                    snprintf(msg, sizeof(msg), "storage connection string: %s appears twice",
                             cs_names[i]);
                    set_err(err, errlen, msg);
                    return -1;
                }
                val[i] = v;
                vlen[i] = vn;
            }
        }
        /* Unknown keys (BlobEndpoint, QueueEndpoint, ...) are ignored. */
    }

    const char *name = NULL, *key = NULL, *endpoint = NULL, *sas = NULL;
    size_t name_n = 0, key_n = 0, ep_n = 0, sas_n = 0;
    char ep_buf[1024];

    if (val[CS_DEV]) {
        if (!(vlen[CS_DEV] == 4 && strncasecmp(val[CS_DEV], "true", 4) == 0)) {
            set_err(err, errlen, "storage connection string: UseDevelopmentStorage must be "
                                 "\"true\" (remove it to use a real account)");
            return -1;
        }
        name = DEV_ACCOUNT; name_n = strlen(DEV_ACCOUNT);
        key = DEV_KEY; key_n = strlen(DEV_KEY);
        if (val[CS_PROXY]) {
            /* http://host[:port][/...] -> scheme://host:10002/devstoreaccount1 */
            char proxy[512];
            if (vlen[CS_PROXY] >= sizeof(proxy)) {
                set_err(err, errlen, "storage connection string: DevelopmentStorageProxyUri is too long");
                return -1;
            }
            memcpy(proxy, val[CS_PROXY], vlen[CS_PROXY]);
            proxy[vlen[CS_PROXY]] = '\0';
            if (!url_ok(proxy)) {
                set_err(err, errlen, "storage connection string: DevelopmentStorageProxyUri must "
                                     "be an http:// or https:// URL, e.g. http://myproxy");
                return -1;
            }
            const char *h = strstr(proxy, "://") + 3;
            size_t scheme_n = (size_t)(h - proxy);
            size_t host_n = strcspn(h, ":/");
            snprintf(ep_buf, sizeof(ep_buf), "%.*s%.*s:10002/" DEV_ACCOUNT, (int)scheme_n, proxy,
                     (int)host_n, h);
        } else {
            snprintf(ep_buf, sizeof(ep_buf), "http://127.0.0.1:10002/" DEV_ACCOUNT);
        }
        endpoint = ep_buf; ep_n = strlen(ep_buf);
    } else {
        name = val[CS_NAME]; name_n = vlen[CS_NAME];
        key = val[CS_KEY]; key_n = vlen[CS_KEY];
        sas = val[CS_SAS]; sas_n = vlen[CS_SAS];
        if (name && name_n == 0) name = NULL;
        if (key && key_n == 0) {
            set_err(err, errlen, "storage connection string: AccountKey is empty");
            return -1;
        }
        if (sas && sas_n && *sas == '?') { sas++; sas_n--; }
        if (sas && sas_n == 0) {
            set_err(err, errlen, "storage connection string: SharedAccessSignature is empty");
            return -1;
        }
        if (!key && !sas) {
            set_err(err, errlen, "storage connection string has no credentials: add AccountKey "
                                 "(with AccountName) or SharedAccessSignature, or use "
                                 "UseDevelopmentStorage=true");
            return -1;
        }
        if (key && !name) {
            set_err(err, errlen, "storage connection string: AccountKey needs AccountName");
            return -1;
        }
        if (val[CS_TABLE_EP] && vlen[CS_TABLE_EP]) {
            endpoint = val[CS_TABLE_EP]; ep_n = vlen[CS_TABLE_EP];
        } else if (name) {
            const char *proto = "https";
            size_t proto_n = 5;
            if (val[CS_PROTOCOL]) {
                proto = val[CS_PROTOCOL]; proto_n = vlen[CS_PROTOCOL];
                if (!((proto_n == 4 && strncasecmp(proto, "http", 4) == 0) ||
                      (proto_n == 5 && strncasecmp(proto, "https", 5) == 0))) {
                    set_err(err, errlen, "storage connection string: DefaultEndpointsProtocol "
                                         "must be http or https");
                    return -1;
                }
            }
            const char *suffix = "core.windows.net";
            size_t suffix_n = strlen(suffix);
            if (val[CS_SUFFIX] && vlen[CS_SUFFIX]) { suffix = val[CS_SUFFIX]; suffix_n = vlen[CS_SUFFIX]; }
            int w = snprintf(ep_buf, sizeof(ep_buf), "%.*s://%.*s.table.%.*s", (int)proto_n, proto,
                             (int)name_n, name, (int)suffix_n, suffix);
            if (w < 0 || (size_t)w >= sizeof(ep_buf)) {
                set_err(err, errlen, "storage connection string: AccountName/EndpointSuffix too long");
                return -1;
            }
            endpoint = ep_buf; ep_n = strlen(ep_buf);
        } else {
            set_err(err, errlen, "storage connection string: a SAS connection string needs "
                                 "TableEndpoint (or AccountName to derive it)");
            return -1;
        }
    }

    for (size_t i = 0; i < name_n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(isalnum(c) || c == '-' || c == '_')) {
            set_err(err, errlen, "storage connection string: AccountName may only contain "
                                 "letters, digits, '-' and '_'");
            return -1;
        }
    }

    while (ep_n && endpoint[ep_n - 1] == '/') ep_n--;
    out->table_endpoint = dup_range(endpoint, ep_n);
    if (!out->table_endpoint) goto oom;
    if (!url_ok(out->table_endpoint)) {
        set_err(err, errlen, "storage connection string: TableEndpoint must be an absolute "
                             "http:// or https:// URL without query, e.g. "
                             "https://acct.table.core.windows.net");
        storage_account_free(out);
        return -1;
    }
    out->is_cosmos = is_cosmos_host(out->table_endpoint);
    if (name) {
        out->account_name = dup_range(name, name_n);
        if (!out->account_name) goto oom;
    }
    if (sas) {
        out->sas = dup_range(sas, sas_n);
        if (!out->sas) goto oom;
        for (const char *c = out->sas; *c; c++) {
            if ((unsigned char)*c <= ' ' || *c == '#') {
                set_err(err, errlen, "storage connection string: SharedAccessSignature contains "
                                     "whitespace or '#'; paste it exactly as generated");
                storage_account_free(out);
                return -1;
            }
        }
    }
    if (key) {
        out->key = table_b64_decode(key, key_n, &out->key_len);
        if (!out->key || out->key_len == 0) {
            set_err(err, errlen, "storage connection string: AccountKey is not valid base64 "
                                 "(copy it again from the portal's Access keys)");
            storage_account_free(out);
            return -1;
        }
    }
    return 0;
oom:
    storage_account_free(out);
    set_err(err, errlen, "out of memory parsing the storage connection string");
    return -1;
}
