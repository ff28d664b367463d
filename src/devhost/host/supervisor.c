/* supervisor.c — the handler process: start, readiness, output, restarts, stop (see supervisor.h). */
#define _GNU_SOURCE /* pipe2, close_range */
#include "devhost/host/supervisor.h"

#include "devhost/host/common.h"
#include "devhost/host/settings.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROBE_INTERVAL_MS 25
#define LINE_MAX_BYTES 16384

typedef struct {
    char   buf[LINE_MAX_BYTES];
    size_t len;
    int    fd;
    int    is_err;
} line_reader_t;

struct dh_supervisor {
    dh_supervisor_opts_t o;
    pthread_t            thread;
    int                  thread_started;
    int                  stop_pipe[2];
    pthread_mutex_t      lock;
    pthread_cond_t       cond;
    dh_handler_state_t   state;     /* under lock */
    unsigned             generation;
    int                  port;
    pid_t                pid;
    unsigned             restarts;
    int                  stopping;  /* under lock */
    /* supervisor-thread only */
    int                  failures;
    int64_t              last_failure_ms;
    line_reader_t        out, err;
    int                  pidfd;
};

const char *dh_handler_state_name(dh_handler_state_t st)
{
    static const char *const names[] = {"starting", "ready", "exited", "failed", "stopped"};
    return st <= DH_HANDLER_STOPPED ? names[st] : "?";
}

static void set_state(dh_supervisor_t *s, dh_handler_state_t st)
{
    pthread_mutex_lock(&s->lock);
    if (s->state != DH_HANDLER_STOPPED) s->state = st;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static int is_stopping(dh_supervisor_t *s)
{
    pthread_mutex_lock(&s->lock);
    int v = s->stopping;
    pthread_mutex_unlock(&s->lock);
    return v;
}

/* A TCP port on 127.0.0.1 that was free a moment ago (the host picks it the same way). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- output relay ---------------------------------------------------------------------- */

static void emit_line(line_reader_t *r, const char *line)
{
    log_level_t lvl = r->is_err ? LOG_ERROR : LOG_INFO;
    /* Our own handler tags its lines "[info] ..."; take its level instead of doubling the tag. */
    static const struct { const char *tag; log_level_t lvl; } tags[] = {
        {"[debug] ", LOG_DEBUG}, {"[info] ", LOG_INFO}, {"[warn] ", LOG_WARN}, {"[error] ", LOG_ERROR},
    };
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        size_t tl = strlen(tags[i].tag);
        if (strncmp(line, tags[i].tag, tl) == 0) {
            lvl = tags[i].lvl;
            line += tl;
            break;
        }
    }
    log_msg(NULL, lvl, "handler: %s", line);
}

/* Read what is available; emit complete lines (and the rest at eof). Returns 0 at eof. */
static int relay(line_reader_t *r, int eof_flush)
{
    if (r->fd < 0) return 0;
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - 1 - r->len);
        if (n < 0 && errno == EINTR) continue;
        int done = n == 0 || (n < 0 && errno != EAGAIN);
        if (n > 0) r->len += (size_t)n;
        size_t start = 0;
        for (size_t i = 0; i < r->len; i++) {
            if (r->buf[i] != '\n') continue;
            size_t e = i;
            if (e > start && r->buf[e - 1] == '\r') e--;
            r->buf[e] = '\0';
            emit_line(r, r->buf + start);
            start = i + 1;
        }
        memmove(r->buf, r->buf + start, r->len - start);
        r->len -= start;
        if (r->len == sizeof r->buf - 1 || ((done || eof_flush) && r->len)) { /* an overlong or final partial line */
            r->buf[r->len] = '\0';
            emit_line(r, r->buf);
            r->len = 0;
        }
        if (done) {
            close(r->fd);
            r->fd = -1;
            return 0;
        }
        if (n < 0) return 1; /* EAGAIN */
    }
}

/* ---- spawning --------------------------------------------------------------------------- */

static void close_from(int lowfd)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0) return;
#endif
    for (int fd = lowfd; fd < 65536; fd++) close(fd);
}

/* Fork and exec the handler on port. Returns its pid, or -1 with err. */
static pid_t spawn(dh_supervisor_t *s, int port, char *err, size_t errlen)
{
    char portv[64], port2[64], wid[96], wid2[96], root[4200];
    char uuid[37];
    if (dh_uuid4(uuid) != 0) snprintf(uuid, sizeof uuid, "00000000-0000-4000-8000-000000000000");
    snprintf(portv, sizeof portv, "FUNCTIONS_CUSTOMHANDLER_PORT=%d", port);
    snprintf(port2, sizeof port2, "FUNCTIONS_HTTPWORKER_PORT=%d", port);
    snprintf(wid, sizeof wid, "FUNCTIONS_CUSTOMHANDLER_WORKER_ID=%s", uuid);
    snprintf(wid2, sizeof wid2, "FUNCTIONS_HTTPWORKER_ID=%s", uuid);
    snprintf(root, sizeof root, "FUNCTIONS_APP_ROOT_PATH=%s", s->o.app_root);
    const char *extra[] = {portv, port2, wid, wid2, root, NULL};
    char **envp = dh_settings_environ(s->o.settings, extra);
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, execp[2] = {-1, -1};
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!envp || devnull < 0 || pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 ||
        pipe2(execp, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot prepare the handler process: %s", strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "cannot start the handler: fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls from here on. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        dup2(devnull, 0);
        dup2(outp[1], 1);
        dup2(errp[1], 2);
        /* The exec-error pipe becomes fd 3 (close-on-exec); nothing else of devhost's is inherited. */
        if (execp[1] != 3) dup2(execp[1], 3);
        fcntl(3, F_SETFD, FD_CLOEXEC);
        int ep = 3;
        close_from(4);
        int e = 0;
        if (chdir(s->o.workdir) != 0) e = errno;
        else {
            execve(s->o.exe, s->o.argv, envp);
            e = errno;
        }
        ssize_t w = write(ep, &e, sizeof e);
        (void)w;
        _exit(127);
    }
    setpgid(pid, pid); /* also from the parent: no window where a signal to the group misses it */
    close(outp[1]);
    close(errp[1]);
    close(execp[1]);
    close(devnull);
    dh_settings_free_environ(envp);
    int e = 0;
    ssize_t n;
    while ((n = read(execp[0], &e, sizeof e)) < 0 && errno == EINTR) {}
    close(execp[0]);
    if (n == (ssize_t)sizeof e) {
        waitpid(pid, NULL, 0);
        close(outp[0]);
        close(errp[0]);
        snprintf(err, errlen, "cannot run the handler '%s' in %s: %s", s->o.exe, s->o.workdir, strerror(e));
        return -1;
    }
    fcntl(outp[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    s->out = (line_reader_t){.fd = outp[0], .is_err = 0};
    s->err = (line_reader_t){.fd = errp[0], .is_err = 1};
    s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    return pid;
fail:
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0) close(outp[i]);
        if (errp[i] >= 0) close(errp[i]);
        if (execp[i] >= 0) close(execp[i]);
    }
    if (devnull >= 0) close(devnull);
    dh_settings_free_environ(envp);
    return -1;
}

/* GET / on port: 1 when something answered (any HTTP answer counts, as for the host), 0 when
 * nothing listens yet. */
static int probe(int port)
{
    int fd = dh_loopback_connect(port);
    if (fd < 0) return 0;
    char req[128];
    int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", port);
    ssize_t w = send(fd, req, (size_t)n, MSG_NOSIGNAL);
    (void)w;
    struct pollfd p = {fd, POLLIN, 0};
    poll(&p, 1, 2000); /* an answer, a close, or 2 s: the server is up in every case */
    close(fd);
    return 1;
}

/* Describe a wait status. */
static void describe_exit(int status, char *out, size_t outlen, int *code)
{
    if (WIFEXITED(status)) {
        *code = WEXITSTATUS(status);
        snprintf(out, outlen, "exited with code %d", *code);
    } else if (WIFSIGNALED(status)) {
        *code = -1;
        snprintf(out, outlen, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
        *code = -1;
        snprintf(out, outlen, "ended (status %d)", status);
    }
}

typedef enum { W_EXITED, W_STOP, W_READY_TIMEOUT } wait_result_t;

/* Run the current process until it exits (status), devhost stops, or (when !ready) the
 * readiness deadline passes. Relays output and probes readiness meanwhile. */
static wait_result_t watch(dh_supervisor_t *s, pid_t pid, int port, int *status)
{
    int64_t started = dh_now_ms();
    int64_t deadline = started + (s->o.ready_timeout_ms > 0 ? s->o.ready_timeout_ms : DH_READY_TIMEOUT_MS);
    int ready = 0;
    for (;;) {
        struct pollfd p[4];
        int n = 0;
        p[n++] = (struct pollfd){s->stop_pipe[0], POLLIN, 0};
        int iout = -1, ierr = -1, ipid = -1;
        if (s->out.fd >= 0) { iout = n; p[n++] = (struct pollfd){s->out.fd, POLLIN, 0}; }
        if (s->err.fd >= 0) { ierr = n; p[n++] = (struct pollfd){s->err.fd, POLLIN, 0}; }
        if (s->pidfd >= 0) { ipid = n; p[n++] = (struct pollfd){s->pidfd, POLLIN, 0}; }
        int timeout = ready ? (s->pidfd >= 0 ? -1 : 100) : PROBE_INTERVAL_MS;
        int rc = poll(p, (nfds_t)n, timeout);
        if (rc < 0 && errno != EINTR) timeout = 100;
        if (iout >= 0 && (p[iout].revents & (POLLIN | POLLHUP | POLLERR))) relay(&s->out, 0);
        if (ierr >= 0 && (p[ierr].revents & (POLLIN | POLLHUP | POLLERR))) relay(&s->err, 0);
        if (p[0].revents & POLLIN) return W_STOP;
        if (ipid < 0 || (p[ipid].revents & POLLIN)) {
            pid_t w = waitpid(pid, status, ipid < 0 ? WNOHANG : 0);
            if (w == pid) return W_EXITED;
        }
        if (!ready) {
            if (probe(port)) {
                ready = 1;
                log_info(NULL, "devhost: handler ready on 127.0.0.1:%d (pid %d, %lld ms)", port, (int)pid,
                         (long long)(dh_now_ms() - started));
                set_state(s, DH_HANDLER_READY);
            } else if (dh_now_ms() > deadline) {
                return W_READY_TIMEOUT;
            }
        }
    }
}

/* After the process is gone: drain its output, kill what it left in its group, close pipes. */
static void cleanup_process(dh_supervisor_t *s, pid_t pid)
{
    kill(-pid, SIGKILL);
    relay(&s->out, 1);
    relay(&s->err, 1);
    if (s->out.fd >= 0) { close(s->out.fd); s->out.fd = -1; }
    if (s->err.fd >= 0) { close(s->err.fd); s->err.fd = -1; }
    if (s->pidfd >= 0) { close(s->pidfd); s->pidfd = -1; }
    pthread_mutex_lock(&s->lock);
    s->pid = 0;
    pthread_mutex_unlock(&s->lock);
}

/* Count a failure; returns 1 when it is the one too many. */
static int count_failure(dh_supervisor_t *s)
{
    int64_t now = dh_now_ms();
    if (s->failures && now - s->last_failure_ms > DH_FAILURE_WINDOW_MS) s->failures = 0;
    s->failures++;
    s->last_failure_ms = now;
    return s->failures >= DH_FAILURE_LIMIT;
}

/* Stop the running process: SIGTERM the group, wait the grace period, then SIGKILL. */
static void terminate(dh_supervisor_t *s, pid_t pid)
{
    kill(-pid, SIGTERM);
    int grace = s->o.stop_grace_ms > 0 ? s->o.stop_grace_ms : 5000;
    int64_t deadline = dh_now_ms() + grace;
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        int64_t left = deadline - dh_now_ms();
        if (left <= 0) {
            log_warn(NULL, "devhost: the handler did not stop within %d ms of SIGTERM; killing it", grace);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        struct pollfd p[3];
        int n = 0;
        if (s->pidfd >= 0) p[n++] = (struct pollfd){s->pidfd, POLLIN, 0};
        if (s->out.fd >= 0) p[n++] = (struct pollfd){s->out.fd, POLLIN, 0};
        if (s->err.fd >= 0) p[n++] = (struct pollfd){s->err.fd, POLLIN, 0};
        poll(p, (nfds_t)n, left < 50 ? (int)left : 50);
        relay(&s->out, 0);
        relay(&s->err, 0);
    }
    cleanup_process(s, pid);
}

static void *run(void *arg)
{
    dh_supervisor_t *s = arg;
    while (!is_stopping(s)) {
        char err[512];
        /* A new generation before the new process exists: an invocation that holds the old
         * generation can tell, even when the new handler has already bound the old one's port
         * (free_port may hand it out again). */
        pthread_mutex_lock(&s->lock);
        s->generation++;
        pthread_mutex_unlock(&s->lock);
        int port = free_port();
        pid_t pid = port > 0 ? spawn(s, port, err, sizeof err) : -1;
        if (port <= 0) snprintf(err, sizeof err, "no free loopback port for the handler");
        if (pid < 0) {
            log_error(NULL, "devhost: %s", err);
            if (count_failure(s)) {
                set_state(s, DH_HANDLER_FAILED);
                if (s->o.on_fatal) s->o.on_fatal(s->o.arg, err);
                break;
            }
            continue;
        }
        pthread_mutex_lock(&s->lock);
        s->pid = pid;
        s->port = port;
        if (s->state != DH_HANDLER_STOPPED) s->state = DH_HANDLER_STARTING;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        log_info(NULL, "devhost: started the handler (pid %d): %s, FUNCTIONS_CUSTOMHANDLER_PORT=%d", (int)pid,
                 s->o.exe, port);

        int status = 0;
        wait_result_t wr = watch(s, pid, port, &status);
        if (wr == W_STOP) {
            terminate(s, pid);
            break;
        }
        char why[200];
        int code = -1;
        if (wr == W_READY_TIMEOUT) {
            snprintf(why, sizeof why, "did not answer on port %d within %d s", port,
                     (s->o.ready_timeout_ms > 0 ? s->o.ready_timeout_ms : DH_READY_TIMEOUT_MS) / 1000);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
        } else {
            describe_exit(status, why, sizeof why, &code);
        }
        cleanup_process(s, pid);
        if (is_stopping(s)) break;
        if (code == 0) {
            log_warn(NULL, "devhost: the handler %s: not restarted (as the Functions host does); invocations fail "
                     "until devhost is restarted", why);
            set_state(s, DH_HANDLER_EXITED);
            break;
        }
        if (code == 200) {
            log_info(NULL, "devhost: the handler %s (an intentional restart): restarting it", why);
        } else if (count_failure(s)) {
            char msg[400];
            snprintf(msg, sizeof msg, "the handler %s; that is failure %d within %lld minutes: exceeded the restart "
                     "retry count, shutting down (as the Functions host does)", why, s->failures,
                     DH_FAILURE_WINDOW_MS / 60000);
            log_error(NULL, "devhost: %s", msg);
            set_state(s, DH_HANDLER_FAILED);
            if (s->o.on_fatal) s->o.on_fatal(s->o.arg, msg);
            break;
        } else {
            log_error(NULL, "devhost: the handler %s: restarting it (failure %d of %d allowed within %lld minutes); "
                      "in-flight invocations fail", why, s->failures, DH_FAILURE_LIMIT - 1,
                      DH_FAILURE_WINDOW_MS / 60000);
        }
        pthread_mutex_lock(&s->lock);
        s->restarts++;
        pthread_mutex_unlock(&s->lock);
        set_state(s, DH_HANDLER_STARTING);
    }
    return NULL;
}

dh_supervisor_t *dh_supervisor_new(const dh_supervisor_opts_t *o, char *err, size_t errlen)
{
    dh_supervisor_t *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    s->o = *o;
    s->pidfd = -1;
    s->out.fd = s->err.fd = -1;
    s->state = DH_HANDLER_STARTING;
    if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    return s;
}

int dh_supervisor_run(dh_supervisor_t *s, char *err, size_t errlen)
{
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        snprintf(err, errlen, "cannot start the supervisor thread");
        return -1;
    }
    s->thread_started = 1;
    return 0;
}

static void deadline_ts(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

int dh_supervisor_wait_ready(dh_supervisor_t *s, int timeout_ms, int *port, unsigned *generation)
{
    struct timespec ts;
    if (timeout_ms >= 0) deadline_ts(&ts, timeout_ms);
    pthread_mutex_lock(&s->lock);
    int rc;
    for (;;) {
        if (s->state == DH_HANDLER_READY) {
            if (port) *port = s->port;
            if (generation) *generation = s->generation;
            rc = 0;
            break;
        }
        if (s->state != DH_HANDLER_STARTING || s->stopping) { rc = -1; break; }
        int w = timeout_ms >= 0 ? pthread_cond_timedwait(&s->cond, &s->lock, &ts) : pthread_cond_wait(&s->cond, &s->lock);
        if (w == ETIMEDOUT) { rc = 1; break; }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int dh_supervisor_refused(dh_supervisor_t *s, unsigned gen, int wait_ms)
{
    struct timespec ts;
    deadline_ts(&ts, wait_ms);
    pthread_mutex_lock(&s->lock);
    int changed = 0;
    for (;;) {
        if (s->generation != gen || s->state != DH_HANDLER_READY || s->stopping) { changed = 1; break; }
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&s->lock);
    return changed;
}

int dh_supervisor_is_current(dh_supervisor_t *s, unsigned gen)
{
    pthread_mutex_lock(&s->lock);
    int current = s->generation == gen && s->state == DH_HANDLER_READY && !s->stopping;
    pthread_mutex_unlock(&s->lock);
    return current;
}

dh_handler_state_t dh_supervisor_state(dh_supervisor_t *s)
{
    pthread_mutex_lock(&s->lock);
    dh_handler_state_t st = s->state;
    pthread_mutex_unlock(&s->lock);
    return st;
}

unsigned dh_supervisor_restarts(dh_supervisor_t *s)
{
    pthread_mutex_lock(&s->lock);
    unsigned r = s->restarts;
    pthread_mutex_unlock(&s->lock);
    return r;
}

void dh_supervisor_stop_begin(dh_supervisor_t *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    s->state = DH_HANDLER_STOPPED;
    pthread_cond_broadcast(&s->cond);
    pid_t pid = s->pid;
    pthread_mutex_unlock(&s->lock);
    if (pid > 0) kill(-pid, SIGTERM); /* at once: the thread enforces the grace period */
    ssize_t w = write(s->stop_pipe[1], "x", 1);
    (void)w;
}

void dh_supervisor_stop_wait(dh_supervisor_t *s)
{
    if (!s) return;
    if (s->thread_started) pthread_join(s->thread, NULL);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
