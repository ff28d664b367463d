/* batch_meta.c — the small value formats of a batch's metadata: enqueued times, sequence
 * numbers and the stream identity (see batch.h). Pure functions. */
#include "telemetry/batch.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tele_stream_id(const char *ns, const char *hub, const char *partition, char out[17])
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[3] = {ns ? ns : "", hub ? hub : "", partition ? partition : ""};
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (i < 2) c = (unsigned char)tolower(c);   /* host names are case-insensitive */
            h ^= c;
            h *= 1099511628211ULL;
        }
        h ^= 0x1f;   /* separator, so ("ab","c") != ("a","bc") */
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016" PRIx64, h);
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int tele_time_normalise(const char *in, char out[TELE_TIME_LEN])
{
    if (!in) return -1;
    const char *p = in;
    while (*p == ' ') p++;
    int Y, M, D, h, m, s;
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ') return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m)) return -1;
    s = 0;
    if (*p == ':') { p++; if (digits(&p, 2, &s)) return -1; }
    char frac[8] = "0000000";
    if (*p == '.' || *p == ',') {
        p++;
        int n = 0;
        if (!isdigit((unsigned char)*p)) return -1;
        while (isdigit((unsigned char)*p)) { if (n < 7) frac[n++] = *p; p++; }
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') p++;
    else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0;
        p++;
        if (digits(&p, 2, &oh)) return -1;
        if (*p == ':') p++;
        if (isdigit((unsigned char)*p) && digits(&p, 2, &om)) return -1;
        if (oh > 23 || om > 59) return -1;
        off = sign * (oh * 60 + om);
    }
    while (*p == ' ') p++;
    if (*p) return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || s > 59) return -1;
    if (off == 0) {
        /* fast path (the host's own form: UTC, no zone): already canonical once the fraction
         * is padded — no calendar arithmetic, no printf (this runs once per event) */
        static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
        if (D > mdays[M - 1] || (M == 2 && D == 29 && !leap) || Y < 1) return -1;
        const int f[6] = {M, D, h, m, s, 0};
        char *o = out;
        *o++ = (char)('0' + Y / 1000); *o++ = (char)('0' + Y / 100 % 10);
        *o++ = (char)('0' + Y / 10 % 10); *o++ = (char)('0' + Y % 10);
        static const char sep[5] = {'-', 'T', ':', ':', '.'};
        *o++ = '-';
        for (int i = 0; i < 5; i++) {
            *o++ = (char)('0' + f[i] / 10);
            *o++ = (char)('0' + f[i] % 10);
            *o++ = sep[i];
        }
        memcpy(o, frac, 7);
        o[7] = 'Z';
        o[8] = '\0';
        return 0;
    }
    struct tm tm = {0};
    tm.tm_year = Y - 1900; tm.tm_mon = M - 1; tm.tm_mday = D;
    tm.tm_hour = h; tm.tm_min = m; tm.tm_sec = s;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 && !(Y == 1969 && M == 12 && D == 31)) return -1;
    t -= (time_t)off * 60;
    struct tm u;
    if (!gmtime_r(&t, &u) || u.tm_year + 1900 < 1 || u.tm_year + 1900 > 9999) return -1;
    /* every field is range-checked above, so the text is exactly 28 characters */
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%sZ", (u.tm_year + 1900) % 10000,
             (u.tm_mon + 1) % 100, u.tm_mday % 100, u.tm_hour % 100, u.tm_min % 100, u.tm_sec % 100, frac);
    if (strlen(tmp) != TELE_TIME_LEN - 1) return -1;
    memcpy(out, tmp, TELE_TIME_LEN);
    return 0;
}

long tele_parse_int64_array(const char *text, int64_t *vals, unsigned char *has, size_t cap)
{
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (*p++ != '[') return -1;
    long n = 0;
    while (isspace((unsigned char)*p)) p++;
    if (*p == ']') { p++; goto end; }
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        int64_t v = 0;
        int present = 0;
        if (strncmp(p, "null", 4) == 0) p += 4;
        else {
            char *e = NULL;
            errno = 0;
            long long x = strtoll(p, &e, 10);
            if (e == p || errno) return -1;
            if (*e == '.' || *e == 'e' || *e == 'E') return -1;
            v = x; present = 1; p = e;
        }
        if ((size_t)n < cap) { vals[n] = v; has[n] = (unsigned char)present; }
        n++;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') { p++; continue; }
        if (*p == ']') { p++; break; }
        return -1;
    }
end:
    while (isspace((unsigned char)*p)) p++;
    return *p ? -1 : n;
}

int tele_seq_from_text(const char *text, int64_t *out)
{
    const char *p = text;
    if (*p == '-') p++;
    if (isdigit((unsigned char)*p)) {
        const char *q = p;
        while (isdigit((unsigned char)*q)) q++;
        if (*q == '\0') {   /* an integer literal: exact, or nothing when it overflows */
            char *end = NULL;
            errno = 0;
            long long v = strtoll(text, &end, 10);
            if (errno || *end) return 0;
            *out = v;
            return 1;
        }
    }
    /* 1e2, 100.0: a number whose value is an integer counts; casting anything else to
     * int64_t is undefined (INT64_MIN on x86 made the event a silent "replay") */
    char *end = NULL;
    double d = strtod(text, &end);
    if (end == text || *end || !isfinite(d) || d != floor(d) || d < -9223372036854775808.0 ||
        d >= 9223372036854775808.0)
        return 0;
    *out = (int64_t)d;
    return 1;
}
