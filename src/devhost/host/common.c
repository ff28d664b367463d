/* common.c — helpers shared by the devhost host modules (see common.h). */
#include "devhost/host/common.h"

#include "util/buf.h"
#include "util/utf8.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Invocation ids and RandGuid need uniqueness, not secrecy: a per-thread xoshiro256** seeded
 * once from getrandom saves two system calls per invocation. */
static _Thread_local uint64_t rng_s[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void)
{
    uint64_t *s = rng_s;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

int dh_uuid4(char out[37])
{
    if (!rng_seeded) {
        size_t got = 0;
        while (got < sizeof rng_s) {
            ssize_t n = getrandom((char *)rng_s + got, sizeof rng_s - got, 0);
            if (n <= 0) return -1;
            got += (size_t)n;
        }
        if (!(rng_s[0] | rng_s[1] | rng_s[2] | rng_s[3])) rng_s[0] = 1;
        rng_seeded = 1;
    }
    unsigned char r[16];
    uint64_t a = rng_next(), b = rng_next();
    memcpy(r, &a, 8);
    memcpy(r + 8, &b, 8);
    r[6] = (unsigned char)((r[6] & 0x0F) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3F) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[r[i] >> 4];
        out[o++] = hex[r[i] & 15];
    }
    out[o] = '\0';
    return 0;
}

int64_t dh_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t dh_now_ms(void) { return dh_now_ns() / 1000000; }

void dh_utc_now_iso(char out[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%.19s.%07dZ", base, (int)(ts.tv_nsec / 100) % 10000000);
}

cJSON *dh_wire_string(const char *s)
{
    buf_t b = BUF_INIT;
    buf_put_json_string(&b, s ? s : "");
    cJSON *item = b.oom ? NULL : cJSON_CreateString(buf_str(&b));
    buf_free(&b);
    return item;
}

int dh_json_set_ci(cJSON *obj, const char *key, cJSON *value)
{
    if (!value) return -1;
    cJSON *old = cJSON_GetObjectItem(obj, key); /* ASCII case-insensitive */
    if (old) {
        value->string = old->string ? strdup(old->string) : NULL;
        if ((old->string && !value->string) || !cJSON_ReplaceItemViaPointer(obj, old, value)) {
            cJSON_Delete(value);
            return -1;
        }
        return 0;
    }
    if (!cJSON_AddItemToObject(obj, key, value)) { cJSON_Delete(value); return -1; }
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *dh_pct_decode(const char *s, size_t n, int plus_is_space, int *has_nul)
{
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    if (has_nul) *has_nul = 0;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval((unsigned char)s[i + 1])) >= 0 &&
            (l = hexval((unsigned char)s[i + 2])) >= 0) {
            char c = (char)(h * 16 + l);
            if (c == '\0' && has_nul) *has_nul = 1;
            out[o++] = c ? c : '?';
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

void dh_put_number(buf_t *b, double v)
{
    if (!isfinite(v)) { buf_puts(b, v != v ? "NaN" : v > 0 ? "Infinity" : "-Infinity"); return; }
    if (v == floor(v) && fabs(v) < 1e15) { buf_printf(b, "%.0f", v); return; }
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    buf_puts(b, tmp);
}

void dh_put_utf8_lossy(buf_t *b, const char *s, size_t n)
{
    size_t i = 0, run = 0;
    while (i < n) {
        long k = utf8_next(s + i, n - i);
        if (k > 0 && s[i] != '\0') {
            i += (size_t)k;
            continue;
        }
        /* An ill-formed maximal subpart (or a NUL, which a C string cannot carry) becomes one
         * U+FFFD, as .NET's decoder does. */
        buf_append(b, s + run, i - run);
        buf_puts(b, "\xEF\xBF\xBD");
        i += k < 0 ? (size_t)-k : 1;
        run = i;
    }
    buf_append(b, s + run, n - run);
}

char *dh_utf8_lossy_dup(const char *s, size_t n)
{
    n = strnlen(s, n);
    if (utf8_valid(s, n)) return strndup(s, n);
    buf_t b = BUF_INIT;
    dh_put_utf8_lossy(&b, s, n);
    if (b.oom) { buf_free(&b); return NULL; }
    return buf_steal(&b);
}

/* A malloc'd valid-UTF-8 copy of s when it is not valid UTF-8, else NULL (*oom on failure). */
static char *lossy_copy(const char *s, int *oom)
{
    if (utf8_valid(s, strlen(s))) return NULL;
    char *t = dh_utf8_lossy_dup(s, strlen(s));
    if (!t) *oom = 1;
    return t;
}

int dh_json_utf8_lossy(cJSON *v)
{
    int oom = 0;
    for (; v && !oom; v = v->next) {
        char *t;
        /* a constant name is a literal of ours, never a client's bytes */
        if (v->string && !(v->type & cJSON_StringIsConst) && (t = lossy_copy(v->string, &oom))) {
            free(v->string);
            v->string = t;
        }
        if (cJSON_IsString(v) && v->valuestring && (t = lossy_copy(v->valuestring, &oom))) {
            free(v->valuestring);
            v->valuestring = t;
        }
        if (v->child && dh_json_utf8_lossy(v->child) != 0) oom = 1;
    }
    return oom ? -1 : 0;
}

int dh_loopback_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}
