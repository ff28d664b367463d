/* supervisor.h — the custom handler process, run the way the Functions host runs it.
 *
 * Owns: starting the handler in its own process group (so that stopping it stops everything it
 * started) with the app settings as environment plus FUNCTIONS_CUSTOMHANDLER_PORT /
 * FUNCTIONS_HTTPWORKER_PORT (a free loopback port), FUNCTIONS_CUSTOMHANDLER_WORKER_ID /
 * FUNCTIONS_HTTPWORKER_ID and FUNCTIONS_APP_ROOT_PATH; readiness (GET / every 25 ms, any HTTP
 * answer counts, at most ready_timeout_ms); relaying its stdout and stderr line by line into
 * devhost's log ("handler: ..."; stderr lines as errors, as the host's
 * UseStdErrorStreamForErrorsOnly does); and the host's restart policy: exit code 0 → not
 * restarted, 200 → restarted, anything else (or a crash, or no readiness in time) → restarted,
 * and the third such failure within 30 minutes of the previous one gives up and calls
 * on_fatal. The handler also gets PR_SET_PDEATHSIG, so it dies with devhost even on SIGKILL.
 * One thread does all of this; the query functions are thread-safe. */
#ifndef ENVIROMON_DH_SUPERVISOR_H
#define ENVIROMON_DH_SUPERVISOR_H

#include <stddef.h>
#include <sys/types.h>

struct dh_settings;

#define DH_READY_TIMEOUT_MS 60000      /* "the handler needs to start within 60 seconds" */
#define DH_FAILURE_WINDOW_MS (30LL * 60 * 1000)
#define DH_FAILURE_LIMIT 3

typedef enum {
    DH_HANDLER_STARTING = 0,   /* started (or restarting), not answering yet */
    DH_HANDLER_READY,          /* answering on its port */
    DH_HANDLER_EXITED,         /* exited with code 0: not restarted, as the host does */
    DH_HANDLER_FAILED,         /* gave up after DH_FAILURE_LIMIT failures */
    DH_HANDLER_STOPPED         /* devhost is stopping it */
} dh_handler_state_t;

typedef struct dh_supervisor_opts {
    const char                *exe;       /* absolute path of the executable */
    char *const               *argv;      /* argv[0] first, NULL-terminated */
    const char                *workdir;   /* working directory */
    const char                *app_root;  /* FUNCTIONS_APP_ROOT_PATH */
    const struct dh_settings  *settings;  /* Values for the environment */
    int                        ready_timeout_ms; /* 0: DH_READY_TIMEOUT_MS */
    int                        stop_grace_ms;    /* SIGTERM → SIGKILL, 0: 5000 */
    void (*on_fatal)(void *arg, const char *why); /* called from the supervisor thread */
    void                      *arg;
} dh_supervisor_opts_t;

typedef struct dh_supervisor dh_supervisor_t;

/* A supervisor in state "starting" that has not started anything yet (callers may already wait
 * for readiness). NULL with err when out of memory or pipes. */
dh_supervisor_t *dh_supervisor_new(const dh_supervisor_opts_t *o, char *err, size_t errlen);

/* Start the supervising thread, which starts the handler; returns at once (the handler may not
 * be ready yet). Returns 0, or -1 with err. */
int dh_supervisor_run(dh_supervisor_t *s, char *err, size_t errlen);

/* Wait until the handler is ready (up to timeout_ms; < 0 waits as long as it takes). Returns 0
 * with its port and generation (incremented at every start), 1 on timeout, -1 when it will not
 * become ready (exited with 0, gave up, stopping). */
int dh_supervisor_wait_ready(dh_supervisor_t *s, int timeout_ms, int *port, unsigned *generation);

/* An invocation could not connect to generation `gen`: wait up to wait_ms for the supervisor to
 * notice a change (the process died, so a restart begins). Returns 1 when the generation or
 * state changed, 0 when nothing did (the handler is alive and still refusing). */
int dh_supervisor_refused(dh_supervisor_t *s, unsigned gen, int wait_ms);

/* 1 when generation `gen` is still the running, ready handler (no restart has begun since), 0
 * otherwise. */
int dh_supervisor_is_current(dh_supervisor_t *s, unsigned gen);

dh_handler_state_t dh_supervisor_state(dh_supervisor_t *s);
const char *dh_handler_state_name(dh_handler_state_t st);
/* Restarts so far (after a failure or an exit code 200). */
unsigned dh_supervisor_restarts(dh_supervisor_t *s);

/* Begin stopping: SIGTERM to the handler's process group (returns at once). */
void dh_supervisor_stop_begin(dh_supervisor_t *s);
/* Finish: wait up to stop_grace_ms for the handler, then SIGKILL its process group, reap it,
 * join the thread (if it ran) and free s. */
void dh_supervisor_stop_wait(dh_supervisor_t *s);

#endif
