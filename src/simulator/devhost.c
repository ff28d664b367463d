/* devhost.c — `devhost device add` from the simulator (see devhost.h). */
#define _GNU_SOURCE /* pipe2 */
#include "simulator/devhost.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/buf.h"

extern char **environ;

void sim_devhost_binary(char *out, size_t outlen)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, outlen, "%s/devhost", self);
            if (access(out, X_OK) == 0) return;
        }
    }
    snprintf(out, outlen, "devhost");
}

char *sim_devhost_find_connstr(const char *text)
{
    const char *p = strstr(text, "HostName=");
    if (!p) return NULL;
    size_t n = strcspn(p, " \t\r\n\"'");
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Run argv, collecting stdout and stderr (bounded), with a 30 s limit. Returns the exit
 * status, or -1 when it could not run (err says why). */
static int run_capture(const char *const *argv, buf_t *out, buf_t *errout, char *err, size_t errlen)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0) { snprintf(err, errlen, "pipe: %s", strerror(errno)); return -1; }
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]);
        close(po[1]);
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, po[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, pe[1], STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        close(po[0]);
        close(pe[0]);
        snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(rc));
        return -1;
    }
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    buf_t *bufs[2] = {out, errout};
    int open_fds = 2, waited = 0;
    while (open_fds > 0 && waited < 30000) {
        int n = poll(fds, 2, 1000);
        if (n == 0) { waited += 1000; continue; }
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char chunk[4096];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got > 0) {
                if (bufs[i]->len < 1 << 20) buf_append(bufs[i], chunk, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    if (open_fds > 0) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (open_fds > 0) { snprintf(err, errlen, "%s did not finish within 30 s", argv[0]); return -1; }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    snprintf(err, errlen, "%s was killed by signal %d", argv[0], WTERMSIG(status));
    return -1;
}

/* The first non-empty line of s, for an error message. */
static void first_line(const char *s, char *out, size_t outlen)
{
    while (*s == '\n' || *s == '\r' || *s == ' ') s++;
    size_t n = strcspn(s, "\r\n");
    if (n >= outlen) n = outlen - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

int sim_devhost_device(const char *bin, const char *data_dir, const char *name, char **connstr, char *err,
                       size_t errlen)
{
    static const char *const verbs[] = {"add", "show"};
    char first_err[240] = "";
    *connstr = NULL;
    for (int v = 0; v < 2; v++) {
        /* `add --quiet` prints the connection string alone; `show` prints it among other lines. */
        const char *argv[] = {bin, "device", verbs[v], name, "--data", data_dir, v == 0 ? "--quiet" : NULL, NULL};
        buf_t out = BUF_INIT, eo = BUF_INIT;
        int st = run_capture(argv, &out, &eo, err, errlen);
        if (st < 0) {
            buf_free(&out);
            buf_free(&eo);
            return -1;
        }
        if (st == 0) *connstr = sim_devhost_find_connstr(buf_str(&out));
        if (v == 0 && st != 0) first_line(eo.len ? buf_str(&eo) : buf_str(&out), first_err, sizeof first_err);
        buf_free(&out);
        buf_free(&eo);
        if (*connstr) return 0;
        if (st == 0) {
            snprintf(err, errlen, "%s device %s %s printed no connection string (HostName=...)", bin, verbs[v], name);
            return -1;
        }
    }
    snprintf(err, errlen, "%s device add %s --data %s failed: %s", bin, name, data_dir,
             first_err[0] ? first_err : "no message");
    return -1;
}
