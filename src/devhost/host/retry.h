/* retry.h — a function's `retry` policy from function.json, as the Functions runtime applies it.
 *
 * Owns parsing ({"strategy":"fixedDelay","maxRetryCount":4,"delayInterval":"00:00:10"} or
 * {"strategy":"exponentialBackoff","maxRetryCount":-1,"minimumInterval":"00:00:02",
 * "maximumInterval":"00:05:00"}; maxRetryCount -1 = forever; TimeSpan strings
 * [d.]hh:mm:ss[.fffffff]), the delay before retry n (the WebJobs SDK's
 * RandomizedExponentialBackoffStrategy: the minimum first, then minimum + U(0.8,1.2) ×
 * 2^(n-2) × minimum, capped at the maximum), and the Metadata.RetryContext object. Retrying is
 * the trigger source's job (the Event Hubs trigger retries a batch in place; HTTP triggers have
 * no retries): these are its helpers. Pure functions, thread-safe. */
#ifndef ENVIROMON_DH_RETRY_H
#define ENVIROMON_DH_RETRY_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

typedef enum {
    DH_RETRY_NONE = 0,        /* no `retry` in function.json: a failure is final */
    DH_RETRY_FIXED,           /* fixedDelay */
    DH_RETRY_EXPONENTIAL      /* exponentialBackoff */
} dh_retry_kind_t;

typedef struct dh_retry {
    dh_retry_kind_t kind;
    int             max_retry_count;   /* -1: retry forever; else 0..n retries after the first attempt */
    int64_t         delay_ms;          /* fixedDelay's delayInterval */
    int64_t         min_ms, max_ms;    /* exponentialBackoff's minimumInterval / maximumInterval */
} dh_retry_t;

/* Parse the `retry` object (NULL or absent → DH_RETRY_NONE). shown names the file in errors.
 * Returns 0, or -1 with a message like "EventTrigger/function.json: retry.maxRetryCount is
 * required" (the host refuses such a policy at start-up too). */
int dh_retry_parse(const struct cJSON *retry, const char *shown, dh_retry_t *out, char *err, size_t errlen);

/* Parse a .NET TimeSpan string ("00:00:10", "1.02:03:04", "1:02:03:04", "00:00:00.80", "10" =
 * 10 days as .NET reads a bare number; at most 7 fraction digits) into milliseconds. Returns 0, or -1 when malformed or negative. */
int dh_timespan_ms(const char *s, int64_t *out);

/* 1 when another attempt is allowed after `retries_done` retries (0 after the first failure). */
int dh_retry_should_retry(const dh_retry_t *r, int retries_done);

/* Milliseconds to wait before retry number `retry` (1 = the first retry). fixedDelay: always
 * delay_ms. exponentialBackoff: min_ms for retry 1, then min + U(0.8,1.2)·2^(retry-2)·min,
 * never above max_ms. `random01` is a value in [0,1) (pass drand48() or a test value); it picks
 * the randomisation factor. 0 for DH_RETRY_NONE. */
int64_t dh_retry_delay_ms(const dh_retry_t *r, int retry, double random01);

/* Metadata.RetryContext for an execution of a function with a retry policy (max_retry_count:
 * the policy's, -1 = forever): {"RetryCount":n, "MaxRetryCount":m,"Exception":...,"Instance":null,"State":{}}. retry_count is 0 for the first
 * attempt (the WebJobs SDK sets a RetryContext on every execution with a policy since 2021) and
 * n for the n-th retry; error (why the previous attempt failed, NULL on the first) becomes a
 * FunctionInvocationException wrapping a System.Exception, in the shape Newtonsoft gives a .NET
 * exception. The exact Exception JSON the host sends is UNVERIFIED (no capture exists). Used by
 * the local IoT Hub's trigger (iothub/eh_wire.h). Returns a new object, or NULL when out of
 * memory. */
struct cJSON *dh_retry_context(int retry_count, int max_retry_count, const char *function, const char *error);

/* "exponentialBackoff (forever, 2 s .. 5 min)" style description for logs. */
void dh_retry_describe(const dh_retry_t *r, char *out, size_t outlen);

#endif
