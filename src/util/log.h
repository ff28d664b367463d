/* log.h — log lines for the process and for one invocation.
 *
 * Every line goes to stdout (info, warnings) or stderr (errors: the Functions host logs
 * stderr lines as errors), and, when a log context is given, also into that invocation's
 * `Logs` array so that the host attaches it to the invocation. Every line passes through
 * log_redact() first, so secrets (account keys, access keys, SAS signatures, bearer
 * tokens) never reach any log even if a caller formats them by mistake. */
#ifndef ENVIROMON_LOG_H
#define ENVIROMON_LOG_H

#include <pthread.h>
#include <stddef.h>

struct cJSON;

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level_t;

/* One invocation's log collector. Thread-safe: EventTrigger logs from worker threads. */
typedef struct log_ctx {
    pthread_mutex_t lock;
    struct cJSON   *lines;       /* JSON array of strings (owned) */
    size_t          count;       /* lines collected */
    size_t          dropped;     /* lines not collected once max_lines was reached */
    size_t          max_lines;   /* cap on collected lines (stdout still gets them all) */
    const char     *function;    /* function name for the stdout prefix, may be NULL */
    const char     *invocation_id; /* may be NULL */
} log_ctx_t;

/* Initialise a collector. Returns 0, or -1 when out of memory. */
int log_ctx_init(log_ctx_t *ctx, const char *function, const char *invocation_id);
/* Detach the collected lines (a cJSON array the caller owns); never NULL unless OOM.
 * Adds a final "... N more lines not shown" line when lines were dropped. */
struct cJSON *log_ctx_take_lines(log_ctx_t *ctx);
void log_ctx_free(log_ctx_t *ctx);

/* Minimum level written to stdout/stderr (default LOG_INFO; LOG_DEBUG when the
 * ENVIROMON_DEBUG environment variable is set). Invocation Logs get LOG_INFO and up. */
void log_set_level(log_level_t level);

/* Buffer stdout lines instead of flushing each one (errors on stderr are still written at
 * once); the caller then calls log_flush() regularly. For a process that logs a line per
 * request (devhost), where one write per line costs more than the rest of its logging. */
void log_set_buffered(int on);
/* Write out buffered stdout lines. */
void log_flush(void);

/* Format and emit one line. ctx may be NULL for process-level lines. */
void log_msg(log_ctx_t *ctx, log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ctx, ...) log_msg((ctx), LOG_DEBUG, __VA_ARGS__)
#define log_info(ctx, ...)  log_msg((ctx), LOG_INFO, __VA_ARGS__)
#define log_warn(ctx, ...)  log_msg((ctx), LOG_WARN, __VA_ARGS__)
#define log_error(ctx, ...) log_msg((ctx), LOG_ERROR, __VA_ARGS__)

/* Replace secret values in s, in place, with "***": the values of AccountKey=,
 * AccessKey=, SharedAccessKey=, SharedAccessSignature=, sig= and Authorization
 * headers, and anything shaped like a JWT (eyJ...\.eyJ...). Returns s. */
char *log_redact(char *s);

#endif
