/* json_file.c — the function app's JSON files, with positions in errors (see json_file.h). */
#include "devhost/host/json_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void dh_json_position(const char *text, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') { l++; c = 1; }
        else if (((unsigned char)text[i] & 0xC0) != 0x80) c++; /* count characters, not bytes */
    }
    *line = l;
    *col = c;
}

/* Replace // and block comments outside strings with spaces (newlines kept), so that offsets,
 * lines and columns stay those of the file. An unterminated block comment is left for the
 * parser to complain about. */
static void blank_comments(char *s, size_t n)
{
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\' && i + 1 < n) i++;
            else if (ch == '"') in_str = 0;
            continue;
        }
        if (ch == '"') { in_str = 1; continue; }
        if (ch != '/' || i + 1 >= n) continue;
        if (s[i + 1] == '/') {
            while (i < n && s[i] != '\n') s[i++] = ' ';
            i--;
        } else if (s[i + 1] == '*') {
            size_t j = i + 2;
            while (j + 1 < n && !(s[j] == '*' && s[j + 1] == '/')) j++;
            if (j + 1 >= n) return; /* unterminated: let the parser report it here */
            for (size_t k = i; k <= j + 1; k++)
                if (s[k] != '\n') s[k] = ' ';
            i = j + 1;
        }
    }
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* 1 when the text ends inside a string or with brackets still open: cJSON then points at the
 * last token, but the problem is the missing end. */
static int unterminated(const char *s, size_t n)
{
    int in_str = 0, depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (in_str) {
            if (s[i] == '\\') i++;
            else if (s[i] == '"') in_str = 0;
        } else if (s[i] == '"') in_str = 1;
        else if (s[i] == '{' || s[i] == '[') depth++;
        else if (s[i] == '}' || s[i] == ']') depth--;
    }
    return in_str || depth > 0;
}

/* A short printable excerpt of the text at p, for "found ..." in messages. */
static void excerpt(const char *p, const char *end, char *out, size_t outlen)
{
    size_t n = 0;
    while (p < end && n + 1 < outlen && n < 16 && *p != '\n' && *p != '\r') {
        out[n++] = ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) ? *p : '?';
        p++;
    }
    out[n] = '\0';
}

cJSON *dh_json_parse(const char *text, size_t len, const char *shown, char *err, size_t errlen)
{
    char *copy = malloc(len + 1);
    if (!copy) { snprintf(err, errlen, "%s: out of memory", shown); return NULL; }
    memcpy(copy, text, len);
    copy[len] = '\0';
    size_t skip = (len >= 3 && memcmp(copy, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    blank_comments(copy + skip, len - skip);
    const char *body = copy + skip;
    size_t blen = len - skip;

    const char *ws = body;
    while (ws < body + blen && (*ws == ' ' || *ws == '\t' || *ws == '\r' || *ws == '\n')) ws++;
    if (ws == body + blen) {
        snprintf(err, errlen, "%s: the file is empty (expected a JSON object)", shown);
        free(copy);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, blen, &end, 0);
    const char *at = NULL;
    const char *what = NULL;
    if (!root) {
        at = end ? end : cJSON_GetErrorPtr();
        if (!at || at < body || at > body + blen || unterminated(body, blen)) at = body + blen;
    } else {
        for (const char *p = end; p && p < body + blen; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
                at = p;
                what = "unexpected text after the end of the JSON value";
                break;
            }
        }
    }
    if (at) {
        if (!what && at < body + blen) {
            /* A trailing comma: cJSON may point at the bracket after it or just past it. */
            const char *c = at;
            if (*c != '}' && *c != ']') {
                while (c > body && is_ws(c[-1])) c--;
                c = c > body ? c - 1 : c;
            }
            const char *q = c;
            while (q > body && is_ws(q[-1])) q--;
            if ((*c == '}' || *c == ']') && q > body && q[-1] == ',') {
                at = c;
                what = "a trailing comma before it is not allowed in JSON";
            }
            while (!what && at < body + blen && is_ws(*at)) at++;
        }
        if (!what)
            what = at >= body + blen ? "unexpected end of file (a missing '}', ']' or '\"'?)" : "this is not valid JSON here";
        int line, col;
        dh_json_position(text, (size_t)(at - body) + skip, &line, &col);
        char ex[24];
        excerpt(at, body + blen, ex, sizeof ex);
        if (at >= body + blen)
            snprintf(err, errlen, "%s: line %d, column %d: %s", shown, line, col, what);
        else
            snprintf(err, errlen, "%s: line %d, column %d, at '%s': %s", shown, line, col, ex, what);
        cJSON_Delete(root);
        free(copy);
        return NULL;
    }
    free(copy);
    return root;
}

cJSON *dh_json_load(const char *path, const char *shown, int *missing, char *err, size_t errlen)
{
    if (missing) *missing = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) {
            if (missing) *missing = 1;
            snprintf(err, errlen, "%s: file not found", shown);
        } else {
            snprintf(err, errlen, "%s: cannot open: %s", shown, strerror(errno));
        }
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", shown);
        fclose(f);
        return NULL;
    }
    if (st.st_size > (off_t)DH_JSON_MAX_BYTES) {
        snprintf(err, errlen, "%s: %lld bytes is more than the %u-byte limit for a configuration file",
                 shown, (long long)st.st_size, DH_JSON_MAX_BYTES);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *text = malloc(n + 1);
    if (!text) { fclose(f); snprintf(err, errlen, "%s: out of memory", shown); return NULL; }
    size_t got = fread(text, 1, n, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || got != n) {
        snprintf(err, errlen, "%s: read error", shown);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    cJSON *root = dh_json_parse(text, n, shown, err, errlen);
    free(text);
    return root;
}
