/* static_files.c — the dashboard folder at "/" (see static_files.h). */
#include "devhost/host/static_files.h"

#include "devhost/host/common.h"
#include "util/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

struct dh_static {
    char *root;     /* real path of the folder */
    char *csp;
};

const char *dh_static_content_type(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"}, {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"}, {".json", "application/json; charset=utf-8"},
        {".map", "application/json; charset=utf-8"}, {".webmanifest", "application/manifest+json"},
        {".txt", "text/plain; charset=utf-8"}, {".svg", "image/svg+xml"}, {".png", "image/png"},
        {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"}, {".gif", "image/gif"}, {".webp", "image/webp"},
        {".ico", "image/x-icon"}, {".woff", "font/woff"}, {".woff2", "font/woff2"}, {".ttf", "font/ttf"},
        {".wasm", "application/wasm"},
    };
    const char *dot = strrchr(name, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

dh_static_t *dh_static_open(const char *dir, const char *connect_src, int *absent, char *err, size_t errlen)
{
    *absent = 0;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) { *absent = 1; return NULL; }
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) { *absent = 1; return NULL; }
    dh_static_t *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    s->root = realpath(dir, NULL);
    buf_t csp = BUF_INIT;
    buf_printf(&csp, "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                     "font-src 'self'; connect-src 'self'%s%s; object-src 'none'; base-uri 'none'; "
                     "frame-ancestors 'none'; form-action 'self'",
               connect_src && *connect_src ? " " : "", connect_src ? connect_src : "");
    s->csp = buf_steal(&csp);
    if (!s->root || !s->csp) {
        snprintf(err, errlen, "%s: %s", dir, s->root ? "out of memory" : strerror(errno));
        dh_static_free(s);
        return NULL;
    }
    return s;
}

void dh_static_free(dh_static_t *s)
{
    if (!s) return;
    free(s->root);
    free(s->csp);
    free(s);
}

const char *dh_static_csp(const dh_static_t *s) { return s->csp; }

/* The decoded relative path for raw_path, or NULL when any segment is not acceptable. */
static char *safe_relative(const char *raw_path)
{
    buf_t rel = BUF_INIT;
    const char *p = raw_path;
    while (*p) {
        while (*p == '/') p++;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0) break;
        int has_nul = 0;
        char *seg = dh_pct_decode(p, n, 0, &has_nul);
        if (!seg) { buf_free(&rel); return NULL; }
        int bad = has_nul || seg[0] == '.' || seg[0] == '\0' || strchr(seg, '/') || strchr(seg, '\\');
        if (!bad) {
            if (rel.len) buf_putc(&rel, '/');
            buf_puts(&rel, seg);
        }
        free(seg);
        if (bad) { buf_free(&rel); return NULL; }
        p += n;
    }
    if (!rel.len) buf_puts(&rel, "index.html");
    return buf_steal(&rel);
}

int dh_static_serve(dh_static_t *s, const dh_http_req_t *r, dh_http_resp_t *w)
{
    char *rel = safe_relative(r->raw_path);
    if (!rel) return 0;
    size_t flen = strlen(s->root) + strlen(rel) + 2;
    char *full = malloc(flen);
    if (!full) { free(rel); return 0; }
    snprintf(full, flen, "%s/%s", s->root, rel);
    char *real = realpath(full, NULL);
    free(full);
    size_t rl = strlen(s->root);
    int inside = real && strncmp(real, s->root, rl) == 0 && real[rl] == '/';
    int fd = inside ? open(real, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        free(real);
        free(rel);
        return 0;
    }
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
        close(fd);
        free(real);
        free(rel);
        dh_resp_set(w, 405, "text/plain; charset=utf-8", "use GET or HEAD for files\n");
        dh_resp_header(w, "Allow", "GET, HEAD");
        return 1;
    }
    w->status = 200;
    w->fd = fd;
    w->fd_size = st.st_size;
    dh_resp_header(w, "Content-Type", dh_static_content_type(real));
    dh_resp_header(w, "Content-Security-Policy", s->csp);
    dh_resp_header(w, "X-Content-Type-Options", "nosniff");
    dh_resp_header(w, "Cache-Control", "no-cache");
    dh_resp_header(w, "Referrer-Policy", "no-referrer");
    dh_resp_header(w, "X-Frame-Options", "DENY");
    free(real);
    free(rel);
    return 1;
}
