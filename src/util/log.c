/* log.c — process and invocation logging with secret redaction (see log.h). */
#define _GNU_SOURCE /* strcasestr */
#include "util/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static log_level_t g_level = LOG_INFO;
static int g_level_init;
static pthread_mutex_t g_stdio_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_buffered; /* stdout lines are flushed by log_flush(), not one by one */

void log_set_buffered(int on) { g_buffered = on; }

void log_flush(void)
{
    pthread_mutex_lock(&g_stdio_lock);
    fflush(stdout);
    pthread_mutex_unlock(&g_stdio_lock);
}

void log_set_level(log_level_t level)
{
    g_level = level;
    g_level_init = 1;
}

static log_level_t current_level(void)
{
    if (!g_level_init) {
        g_level = getenv("ENVIROMON_DEBUG") ? LOG_DEBUG : LOG_INFO;
        g_level_init = 1;
    }
    return g_level;
}

int log_ctx_init(log_ctx_t *ctx, const char *function, const char *invocation_id)
{
    memset(ctx, 0, sizeof *ctx);
    if (pthread_mutex_init(&ctx->lock, NULL) != 0) return -1;
    ctx->lines = cJSON_CreateArray();
    if (!ctx->lines) { pthread_mutex_destroy(&ctx->lock); return -1; }
    ctx->max_lines = 1000;
    ctx->function = function;
    ctx->invocation_id = invocation_id;
    return 0;
}

cJSON *log_ctx_take_lines(log_ctx_t *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    cJSON *lines = ctx->lines;
    if (lines && ctx->dropped) {
        char note[96];
        snprintf(note, sizeof note, "... %zu more log lines not shown (see the handler's stdout)",
                 ctx->dropped);
        cJSON_AddItemToArray(lines, cJSON_CreateString(note));
    }
    ctx->lines = NULL;
    pthread_mutex_unlock(&ctx->lock);
    return lines ? lines : cJSON_CreateArray();
}

void log_ctx_free(log_ctx_t *ctx)
{
    cJSON_Delete(ctx->lines);
    ctx->lines = NULL;
    pthread_mutex_destroy(&ctx->lock);
}

/* Overwrite the value that starts at p (up to a delimiter) with "***", shifting the rest. */
static char *mask_value(char *p, const char *stops)
{
    char *end = p;
    while (*end && !strchr(stops, *end)) end++;
    if (end == p) return p;
    size_t vlen = (size_t)(end - p);
    if (vlen >= 3) {
        memcpy(p, "***", 3);
        memmove(p + 3, end, strlen(end) + 1);
    } else {
        memset(p, '*', vlen);
    }
    return p + (vlen >= 3 ? 3 : vlen);
}

static int is_b64url(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_'; }

char *log_redact(char *s)
{
    static const char *const keys[] = {
        "AccountKey=", "AccessKey=", "SharedAccessKey=", "SharedAccessSignature=",
        "sig=", "access_token=", "code=",
    };
    if (!s) return s;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        size_t kl = strlen(keys[k]);
        for (char *p = s; (p = strcasestr(p, keys[k])) != NULL;) {
            /* "sig=" must start a parameter, not end a longer word (e.g. "config="). */
            if (p > s && isalnum((unsigned char)p[-1])) { p += kl; continue; }
            p = mask_value(p + kl, ";&\" \t\r\n,'");
        }
    }
    for (char *p = s; (p = strcasestr(p, "Authorization:")) != NULL;) {
        p += strlen("Authorization:");
        while (*p == ' ') p++;
        while (*p && *p != ' ' && *p != '\r' && *p != '\n') p++; /* keep the scheme */
        while (*p == ' ') p++;
        p = mask_value(p, "\r\n\"");
    }
    for (char *p = s; (p = strstr(p, "Bearer ")) != NULL;) p = mask_value(p + 7, " \r\n\",;");
    /* JWTs: header.payload.signature, both leading parts base64url JSON ("eyJ"). */
    for (char *p = s; (p = strstr(p, "eyJ")) != NULL;) {
        char *q = p;
        while (is_b64url(*q)) q++;
        if (*q == '.' && strncmp(q + 1, "eyJ", 3) == 0) {
            p = mask_value(p, " \r\n\",;&'");
        } else {
            p = q;
        }
    }
    return s;
}

void log_msg(log_ctx_t *ctx, log_level_t level, const char *fmt, ...)
{
    /* Nothing to do for a line no sink wants: skip the formatting and redaction. */
    if (level < current_level() && !(ctx && level >= LOG_INFO)) return;
    char stackbuf[512];
    char *line = stackbuf;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(stackbuf, sizeof stackbuf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof stackbuf) {
        line = malloc((size_t)n + 1);
        if (!line) { line = stackbuf; } else {
            va_start(ap, fmt);
            vsnprintf(line, (size_t)n + 1, fmt, ap);
            va_end(ap);
        }
    }
    /* Control characters (from hostile device ids, say) would forge log lines. */
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t') *c = ' ';
    log_redact(line);

    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level >= current_level()) {
        FILE *out = level >= LOG_ERROR ? stderr : stdout;
        pthread_mutex_lock(&g_stdio_lock);
        if (ctx && ctx->function)
            fprintf(out, "[%s] %s: %s\n", names[level], ctx->function, line);
        else
            fprintf(out, "[%s] %s\n", names[level], line);
        if (out != stdout || !g_buffered) fflush(out);
        pthread_mutex_unlock(&g_stdio_lock);
    }
    if (ctx && level >= LOG_INFO) {
        pthread_mutex_lock(&ctx->lock);
        if (ctx->lines && ctx->count < ctx->max_lines) {
            char *tagged = NULL;
            if (level != LOG_INFO) {
                size_t tl = strlen(line) + 16;
                tagged = malloc(tl);
                if (tagged) snprintf(tagged, tl, "%s: %s", level == LOG_ERROR ? "ERROR" : "WARN", line);
            }
            cJSON_AddItemToArray(ctx->lines, cJSON_CreateString(tagged ? tagged : line));
            free(tagged);
            ctx->count++;
        } else if (ctx->lines) {
            ctx->dropped++;
        }
        pthread_mutex_unlock(&ctx->lock);
    }
    if (line != stackbuf) free(line);
}
