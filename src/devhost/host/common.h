/* common.h — small helpers the devhost host modules share: ids, clocks, the wire encoding of
 * values the Functions host double-encodes, case-insensitive JSON dictionaries (the host's
 * binding data is an OrdinalIgnoreCase dictionary), percent-decoding, and numbers printed the
 * way .NET prints them. Pure functions, thread-safe. */
#ifndef ENVIROMON_DH_COMMON_H
#define ENVIROMON_DH_COMMON_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;
struct buf;

/* A random (version 4) UUID "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" into out, for invocation
 * ids (unique, not secret: a per-thread generator seeded from the system). 0, or -1 when the
 * system has no randomness to give. */
int dh_uuid4(char out[37]);

/* Monotonic milliseconds and nanoseconds (for durations). */
int64_t dh_now_ms(void);
int64_t dh_now_ns(void);

/* UTC now as the host writes DateTime values in sys.UtcNow: "2026-01-02T03:04:05.1234567Z". */
void dh_utc_now_iso(char out[40]);

/* A JSON string item holding the JSON text of the string s: what the host's
 * JsonConvert.SerializeObject(string) puts in Data/Metadata ("hello" → "\"hello\""). */
struct cJSON *dh_wire_string(const char *s);

/* Set obj[key] = value (consumed) with the semantics of an OrdinalIgnoreCase .NET dictionary:
 * an existing key (ASCII case-insensitive) keeps its place and spelling and gets the new value;
 * otherwise the key is appended. Returns 0, or -1 (value deleted) when out of memory. */
int dh_json_set_ci(struct cJSON *obj, const char *key, struct cJSON *value);

/* Percent-decode s[0..n) into a new string; '+' becomes ' ' when plus_is_space. Invalid
 * escapes are kept as they are. *has_nul is set when the result would contain a NUL byte
 * (which cannot be represented; callers refuse such input). NULL when out of memory. */
char *dh_pct_decode(const char *s, size_t n, int plus_is_space, int *has_nul);

/* Append a number as .NET formats a double ("5", "1.5", "1E+21"): integers without a
 * fraction, others with up to 17 significant digits. */
void dh_put_number(struct buf *b, double v);

/* Append s[0..n) as valid UTF-8: ill-formed sequences become U+FFFD, as .NET's UTF-8 decoder
 * reads a request body. */
void dh_put_utf8_lossy(struct buf *b, const char *s, size_t n);

/* A malloc'd copy of s[0..n) (up to a NUL) made valid UTF-8 as dh_put_utf8_lossy does; NULL
 * when out of memory. */
char *dh_utf8_lossy_dup(const char *s, size_t n);

/* Make every string and member name in the tree v valid UTF-8 the way dh_put_utf8_lossy does,
 * in place: the host's strings are UTF-16, so what it hands a handler is always valid text,
 * whatever bytes a client put in a query, header or body. Returns 0, or -1 when out of memory. */
int dh_json_utf8_lossy(struct cJSON *v);

/* A TCP connection to 127.0.0.1:port (blocking, close-on-exec), or -1 with errno
 * (ECONNREFUSED when nothing listens). */
int dh_loopback_connect(int port);

#endif
