/* settings.c — local.settings.json Values merged with the environment (see settings.h). */
#include "devhost/host/settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

typedef struct {
    char *name;
    char *value;     /* the effective value (the environment's when it defines the name) */
} entry_t;

struct dh_settings {
    entry_t *v;
    size_t   n, cap;
};

dh_settings_t *dh_settings_new(void) { return calloc(1, sizeof(dh_settings_t)); }

void dh_settings_free(dh_settings_t *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].name);
        free(s->v[i].value);
    }
    free(s->v);
    free(s);
}

static entry_t *find_exact(const dh_settings_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0) return &s->v[i];
    return NULL;
}

int dh_settings_add(dh_settings_t *s, const char *name, const char *value, int *overridden)
{
    const char *env = getenv(name);
    if (overridden) *overridden = env != NULL;
    char *nv = strdup(env ? env : value);
    if (!nv) return -1;
    entry_t *e = find_exact(s, name);
    if (e) {
        free(e->value);
        e->value = nv;
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        entry_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) { free(nv); return -1; }
        s->v = v;
        s->cap = cap;
    }
    char *nn = strdup(name);
    if (!nn) { free(nv); return -1; }
    s->v[s->n].name = nn;
    s->v[s->n].value = nv;
    s->n++;
    return 0;
}

const char *dh_settings_get(const dh_settings_t *s, const char *name)
{
    const char *env = getenv(name);
    if (env) return env;
    entry_t *e = find_exact(s, name);
    if (e) return e->value;
    for (size_t i = 0; i < s->n; i++)
        if (strcasecmp(s->v[i].name, name) == 0) return s->v[i].value;
    /* The environment too is searched case-insensitively, as the host's configuration is. */
    size_t nl = strlen(name);
    for (char **ep = environ; ep && *ep; ep++)
        if (strncasecmp(*ep, name, nl) == 0 && (*ep)[nl] == '=') return *ep + nl + 1;
    return NULL;
}

size_t dh_settings_count(const dh_settings_t *s) { return s->n; }

const char *dh_settings_name(const dh_settings_t *s, size_t i) { return i < s->n ? s->v[i].name : NULL; }

static int name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == ':';
}

char *dh_settings_expand(const dh_settings_t *s, const char *in, char *err, size_t errlen)
{
    size_t cap = strlen(in) + 1, len = 0;
    char *out = malloc(cap);
    if (!out) { snprintf(err, errlen, "out of memory"); return NULL; }
    for (const char *p = in; *p;) {
        const char *q = p + 1;
        if (*p == '%') {
            while (name_char(*q)) q++;
        }
        if (*p == '%' && q > p + 1 && *q == '%') {
            char name[256];
            size_t nl = (size_t)(q - p - 1);
            if (nl >= sizeof name) {
                snprintf(err, errlen, "the setting name in '%.40s...' is too long", p);
                free(out);
                return NULL;
            }
            memcpy(name, p + 1, nl);
            name[nl] = '\0';
            const char *v = dh_settings_get(s, name);
            if (!v) {
                snprintf(err, errlen, "the setting '%s' (%%%s%%) has no value: add it to Values in "
                         "local.settings.json (or to the environment)", name, name);
                free(out);
                return NULL;
            }
            size_t vl = strlen(v);
            if (len + vl + strlen(q + 1) + 1 > cap) {
                cap = len + vl + strlen(q + 1) + 1;
                char *n = realloc(out, cap);
                if (!n) { free(out); snprintf(err, errlen, "out of memory"); return NULL; }
                out = n;
            }
            memcpy(out + len, v, vl);
            len += vl;
            p = q + 1;
        } else {
            if (len + 2 > cap) {
                cap = cap * 2 + 2;
                char *n = realloc(out, cap);
                if (!n) { free(out); snprintf(err, errlen, "out of memory"); return NULL; }
                out = n;
            }
            out[len++] = *p++;
        }
    }
    out[len] = '\0';
    return out;
}

static int env_name_eq(const char *entry, const char *name_eq)
{
    /* name_eq is "NAME=..." : compare up to and including '='. */
    const char *eq = strchr(name_eq, '=');
    size_t nl = eq ? (size_t)(eq - name_eq) + 1 : strlen(name_eq);
    return strncmp(entry, name_eq, nl) == 0;
}

char **dh_settings_environ(const dh_settings_t *s, const char *const *extra)
{
    size_t nenv = 0, nextra = 0;
    for (char **ep = environ; ep && *ep; ep++) nenv++;
    for (const char *const *x = extra; x && *x; x++) nextra++;
    char **out = calloc(nenv + s->n + nextra + 1, sizeof *out);
    if (!out) return NULL;
    size_t k = 0;
    for (char **ep = environ; ep && *ep; ep++) {
        int replaced = 0;
        for (const char *const *x = extra; x && *x; x++)
            if (env_name_eq(*ep, *x)) replaced = 1;
        if (replaced) continue;
        if (!(out[k++] = strdup(*ep))) goto oom;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (getenv(s->v[i].name)) continue; /* the environment's value is already there */
        int replaced = 0;
        size_t nl = strlen(s->v[i].name);
        for (const char *const *x = extra; x && *x; x++)
            if (strncmp(*x, s->v[i].name, nl) == 0 && (*x)[nl] == '=') replaced = 1;
        if (replaced) continue;
        size_t len = nl + strlen(s->v[i].value) + 2;
        if (!(out[k] = malloc(len))) goto oom;
        snprintf(out[k++], len, "%s=%s", s->v[i].name, s->v[i].value);
    }
    for (const char *const *x = extra; x && *x; x++)
        if (!(out[k++] = strdup(*x))) goto oom;
    out[k] = NULL;
    return out;
oom:
    dh_settings_free_environ(out);
    return NULL;
}

void dh_settings_free_environ(char **envp)
{
    if (!envp) return;
    for (char **p = envp; *p; p++) free(*p);
    free(envp);
}
