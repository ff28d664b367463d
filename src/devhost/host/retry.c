/* retry.c — function retry policies (see retry.h). */
#include "devhost/host/retry.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Digits only, at most max_digits, into *v. Returns the number of characters read (0 = none). */
static size_t read_uint(const char *p, size_t max_digits, int64_t *v)
{
    size_t n = 0;
    int64_t x = 0;
    while (isdigit((unsigned char)p[n]) && n < max_digits) x = x * 10 + (p[n++] - '0');
    *v = x;
    return n;
}

int dh_timespan_ms(const char *s, int64_t *out)
{
    if (!s) return -1;
    while (*s == ' ') s++;
    if (*s == '-') return -1;
    int64_t days = 0, h = 0, m = 0, sec = 0, ms = 0, a;
    const char *p = s;
    size_t n = read_uint(p, 8, &a);
    if (!n) return -1;
    p += n;
    if (*p == '\0') { *out = a * 86400000; return 0; }  /* .NET: a bare number is days */
    if (*p == '.') {                                     /* d.hh:mm[:ss] */
        days = a;
        p++;
        if (!(n = read_uint(p, 2, &h))) return -1;
        p += n;
    } else {
        h = a;
    }
    if (*p++ != ':') return -1;
    if (!(n = read_uint(p, 2, &m))) return -1;
    p += n;
    if (*p == ':') {
        p++;
        if (!(n = read_uint(p, 2, &sec))) return -1;
        p += n;
        if (*p == ':' && days == 0 && s[strspn(s, "0123456789")] == ':') { /* d:hh:mm:ss, as .NET reads it */
            days = h;
            h = m;
            m = sec;
            p++;
            if (!(n = read_uint(p, 2, &sec))) return -1;
            p += n;
        }
        if (*p == '.') {                                 /* fraction: up to 7 digits */
            p++;
            int64_t frac;
            size_t fd = read_uint(p, 7, &frac);
            if (!fd) return -1;
            p += fd;
            for (size_t i = fd; i < 3; i++) frac *= 10;
            for (size_t i = 3; i < fd; i++) frac /= 10;
            ms = frac;
        }
    }
    while (*p == ' ') p++;
    if (*p || h > 23 || m > 59 || sec > 59) return -1;
    *out = ((days * 24 + h) * 60 + m) * 60000 + sec * 1000 + ms;
    return 0;
}

static int span_field(const cJSON *retry, const char *key, const char *shown, int64_t *out, char *err,
                      size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItem(retry, key);
    if (!v) {
        snprintf(err, errlen, "%s: retry.%s is required for this strategy", shown, key);
        return -1;
    }
    if (!cJSON_IsString(v) || dh_timespan_ms(v->valuestring, out) != 0) {
        snprintf(err, errlen, "%s: retry.%s must be a time span such as \"00:00:10\" (hh:mm:ss)", shown, key);
        return -1;
    }
    return 0;
}

int dh_retry_parse(const cJSON *retry, const char *shown, dh_retry_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!retry || cJSON_IsNull(retry)) return 0;
    if (!cJSON_IsObject(retry)) {
        snprintf(err, errlen, "%s: retry must be an object {\"strategy\":...,\"maxRetryCount\":...}", shown);
        return -1;
    }
    const cJSON *st = cJSON_GetObjectItem(retry, "strategy");
    if (!cJSON_IsString(st)) {
        snprintf(err, errlen, "%s: retry.strategy is required: \"fixedDelay\" or \"exponentialBackoff\"", shown);
        return -1;
    }
    const cJSON *mc = cJSON_GetObjectItem(retry, "maxRetryCount");
    if (!mc) {
        snprintf(err, errlen, "%s: retry.maxRetryCount is required (-1 retries forever)", shown);
        return -1;
    }
    double d = cJSON_IsNumber(mc) ? mc->valuedouble : NAN;
    if (cJSON_IsString(mc)) {
        char *end;
        d = strtod(mc->valuestring, &end);
        if (end == mc->valuestring || *end) d = NAN;
    }
    if (!(d >= -1 && d <= 1000000) || d != floor(d)) {
        snprintf(err, errlen, "%s: retry.maxRetryCount must be an integer >= -1 (-1 retries forever)", shown);
        return -1;
    }
    out->max_retry_count = (int)d;
    if (strcasecmp(st->valuestring, "fixedDelay") == 0) {
        out->kind = DH_RETRY_FIXED;
        if (span_field(retry, "delayInterval", shown, &out->delay_ms, err, errlen) != 0) return -1;
    } else if (strcasecmp(st->valuestring, "exponentialBackoff") == 0) {
        out->kind = DH_RETRY_EXPONENTIAL;
        if (span_field(retry, "minimumInterval", shown, &out->min_ms, err, errlen) != 0 ||
            span_field(retry, "maximumInterval", shown, &out->max_ms, err, errlen) != 0)
            return -1;
        if (out->min_ms > out->max_ms) {
            snprintf(err, errlen, "%s: retry.minimumInterval must not be greater than retry.maximumInterval", shown);
            return -1;
        }
    } else {
        snprintf(err, errlen, "%s: retry.strategy '%.40s' is unknown: use \"fixedDelay\" or \"exponentialBackoff\"",
                 shown, st->valuestring);
        return -1;
    }
    return 0;
}

int dh_retry_should_retry(const dh_retry_t *r, int retries_done)
{
    if (r->kind == DH_RETRY_NONE) return 0;
    return r->max_retry_count == -1 || retries_done < r->max_retry_count;
}

int64_t dh_retry_delay_ms(const dh_retry_t *r, int retry, double random01)
{
    if (r->kind == DH_RETRY_FIXED) return r->delay_ms;
    if (r->kind != DH_RETRY_EXPONENTIAL) return 0;
    if (retry <= 1) return r->min_ms;
    double factor = 0.8 + 0.4 * (random01 < 0 ? 0 : random01 >= 1 ? 0.999999 : random01);
    int exp = retry - 2;
    if (exp > 60) exp = 60;
    double delay = (double)r->min_ms + factor * ldexp(1.0, exp) * (double)r->min_ms;
    return delay >= (double)r->max_ms ? r->max_ms : (int64_t)delay;
}

/* A .NET exception as Newtonsoft serialises it (ISerializable: GetObjectData's fields). */
static cJSON *net_exception(const char *cls, const char *message, cJSON *inner)
{
    cJSON *e = cJSON_CreateObject();
    if (!e) { cJSON_Delete(inner); return NULL; }
    cJSON_AddStringToObject(e, "ClassName", cls);
    cJSON_AddStringToObject(e, "Message", message);
    cJSON_AddNullToObject(e, "Data");
    if (inner) cJSON_AddItemToObject(e, "InnerException", inner);
    else cJSON_AddNullToObject(e, "InnerException");
    cJSON_AddNullToObject(e, "HelpURL");
    cJSON_AddNullToObject(e, "StackTraceString");
    cJSON_AddNullToObject(e, "RemoteStackTraceString");
    cJSON_AddNumberToObject(e, "RemoteStackIndex", 0);
    cJSON_AddNullToObject(e, "ExceptionMethod");
    cJSON_AddNumberToObject(e, "HResult", -2146233088);
    cJSON_AddStringToObject(e, "Source", "devhost");
    cJSON_AddNullToObject(e, "WatsonBuckets");
    return e;
}

cJSON *dh_retry_context(int retry_count, int max_retry_count, const char *function, const char *error)
{
    cJSON *ctx = cJSON_CreateObject();
    if (!ctx) return NULL;
    cJSON_AddNumberToObject(ctx, "RetryCount", retry_count);
    cJSON_AddNumberToObject(ctx, "MaxRetryCount", max_retry_count);
    if (error) {
        char outer[300];
        snprintf(outer, sizeof outer, "Exception while executing function: Functions.%s", function ? function : "");
        cJSON *e = net_exception("Microsoft.Azure.WebJobs.Host.FunctionInvocationException", outer,
                                 net_exception("System.Exception", error, NULL));
        if (!e) { cJSON_Delete(ctx); return NULL; }
        cJSON_AddItemToObject(ctx, "Exception", e);
    } else {
        cJSON_AddNullToObject(ctx, "Exception");
    }
    cJSON_AddNullToObject(ctx, "Instance");
    cJSON_AddItemToObject(ctx, "State", cJSON_CreateObject());
    return ctx;
}

static void fmt_span(int64_t ms, char *out, size_t outlen)
{
    if (ms % 3600000 == 0 && ms) snprintf(out, outlen, "%lld h", (long long)(ms / 3600000));
    else if (ms % 60000 == 0 && ms) snprintf(out, outlen, "%lld min", (long long)(ms / 60000));
    else if (ms % 1000 == 0) snprintf(out, outlen, "%lld s", (long long)(ms / 1000));
    else snprintf(out, outlen, "%lld ms", (long long)ms);
}

void dh_retry_describe(const dh_retry_t *r, char *out, size_t outlen)
{
    char a[32], b[32], count[32];
    if (r->max_retry_count < 0) snprintf(count, sizeof count, "forever");
    else snprintf(count, sizeof count, "up to %d retries", r->max_retry_count);
    switch (r->kind) {
    case DH_RETRY_FIXED:
        fmt_span(r->delay_ms, a, sizeof a);
        snprintf(out, outlen, "fixedDelay (%s, every %s)", count, a);
        break;
    case DH_RETRY_EXPONENTIAL:
        fmt_span(r->min_ms, a, sizeof a);
        fmt_span(r->max_ms, b, sizeof b);
        snprintf(out, outlen, "exponentialBackoff (%s, %s .. %s)", count, a, b);
        break;
    default:
        snprintf(out, outlen, "none");
    }
}
