/* fuzz_static_path.c — request paths against `devhost start`'s static file server, which serves
 * the app's dashboard/ folder at "/" (dh_static_serve: src/devhost/host/static_files.c).
 *
 * The harness makes a folder once: index.html, app.js and sub/style.css to be served; .hidden,
 * sub/.env and a secret next to the folder that must never be; a symlink inside pointing out
 * of the folder (link-out → ../secret.txt) and one pointing inside (dirlink → sub). The input is
 * a request path as received (percent-encoded), tried with GET and with POST.
 *
 * Invariants: whatever the path, a file is served only when it is one of the three (by device
 * and inode, whichever name reached it), never a hidden file, the secret or anything else; a
 * served response carries the security headers; POST never opens a file (405 or nothing). */
#include "fuzz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devhost/host/http_msg.h"
#include "devhost/host/static_files.h"
#include "util/buf.h"

static dh_static_t *g_static;
static struct stat g_allowed[3];
static char g_base[256];

static void put_file(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_base, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0) abort();
}

static void cleanup(void)
{
    static const char *const files[] = {"root/index.html", "root/app.js", "root/sub/style.css", "root/.hidden",
                                        "root/sub/.env", "root/link-out", "root/dirlink", "secret.txt"};
    static const char *const dirs[] = {"root/sub", "root", ""};
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) { snprintf(p, sizeof p, "%s/%s", g_base, files[i]); unlink(p); }
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) { snprintf(p, sizeof p, "%s/%s", g_base, dirs[i]); rmdir(p); }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(g_base, sizeof g_base, "%s/enviromon-fuzz-static-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(g_base)) abort();
    atexit(cleanup);
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/root", g_base);
    if (mkdir(p, 0700) != 0) abort();
    snprintf(p, sizeof p, "%s/root/sub", g_base);
    if (mkdir(p, 0700) != 0) abort();
    put_file("root/index.html", "<!doctype html>");
    put_file("root/app.js", "export {};");
    put_file("root/sub/style.css", "body{}");
    put_file("root/.hidden", "hidden");
    put_file("root/sub/.env", "KEY=secret");
    put_file("secret.txt", "secret");
    snprintf(p, sizeof p, "%s/root/link-out", g_base);
    if (symlink("../secret.txt", p) != 0) abort();
    snprintf(p, sizeof p, "%s/root/dirlink", g_base);
    if (symlink("sub", p) != 0) abort();
    static const char *const ok[] = {"root/index.html", "root/app.js", "root/sub/style.css"};
    for (int i = 0; i < 3; i++) {
        snprintf(q, sizeof q, "%s/%s", g_base, ok[i]);
        if (stat(q, &g_allowed[i]) != 0) abort();
    }
    snprintf(p, sizeof p, "%s/root", g_base);
    int absent = 0;
    char err[256];
    g_static = dh_static_open(p, NULL, &absent, err, sizeof err);
    if (!g_static) abort();
    return 0;
}

static void try_path(const char *path, const char *method)
{
    dh_http_req_t r;
    memset(&r, 0, sizeof r);
    r.method = method;
    r.raw_path = (char *)path;
    dh_http_resp_t w;
    dh_http_resp_init(&w);
    int served = dh_static_serve(g_static, &r, &w);
    if (served && w.fd >= 0) {
        FUZZ_CHECK(strcmp(method, "GET") == 0, "%s opened a file", method);
        struct stat st;
        FUZZ_CHECK(fstat(w.fd, &st) == 0, "fstat");
        int allowed = 0;
        for (int i = 0; i < 3; i++)
            allowed |= st.st_dev == g_allowed[i].st_dev && st.st_ino == g_allowed[i].st_ino;
        FUZZ_CHECK(allowed, "'%s' served a file that must not be served", path);
        FUZZ_CHECK(w.status == 200 && dh_resp_has_header(&w, "Content-Security-Policy") &&
                       dh_resp_has_header(&w, "X-Content-Type-Options"),
                   "served without its headers");
    } else if (served) {
        FUZZ_CHECK(w.status == 405, "answered %d without a file", w.status);
    }
    dh_http_resp_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = fuzz_strndup(data, size);
    try_path(path, "GET");
    try_path(path, "POST");
    free(path);
    return 0;
}
