/* device_state.c — DeviceState rows: typed form, fold, ETag cache (see device_state.h). */
#include "telemetry/device_state.h"

#include "telemetry/devmap.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copy src into dst (cap bytes), cut at a character boundary when it does not fit: a row
 * written by another program may hold longer text than a reading carries, and a cut inside a
 * UTF-8 sequence would be written back as bytes the Table service refuses. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    if (!src) src = "";
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;   /* src[n] starts the cut character */
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void device_state_from_entity(const cJSON *e, const char *etag, device_state_t *s)
{
    memset(s, 0, sizeof *s);
    s->exists = 1;
    copy_text(s->etag, sizeof s->etag, etag);
    if (table_get_double(e, "Celsius", &s->celsius) == 0) s->has |= TELE_HAS_TEMP;
    if (table_get_double(e, "Humidity", &s->humidity) == 0) s->has |= TELE_HAS_HUMIDITY;
    if (table_get_double(e, "hPa", &s->hpa) == 0) s->has |= TELE_HAS_PRESSURE;
    if (table_get_double(e, "Light", &s->light) == 0) s->has |= TELE_HAS_LIGHT;
    const char *g = table_get_string(e, "Geo");
    if (g) { copy_text(s->geo, sizeof s->geo, g); s->has |= TELE_HAS_GEO; }
    const char *id = table_get_string(e, "Id");
    if (id) { copy_text(s->id, sizeof s->id, id); s->has |= TELE_HAS_MSGID; }
    if (table_get_int64(e, "Count", &s->count) != 0) s->count = 0;
    if (table_get_int64(e, "InvalidCount", &s->invalid_count) != 0) s->invalid_count = 0;
    const char *ls = table_get_string(e, "LastSeen");
    if (!ls || tele_time_normalise(ls, s->last_seen) != 0) s->last_seen[0] = '\0';
    const char *st = table_get_string(e, "Stream");
    if (st && strlen(st) == 16) memcpy(s->stream, st, 17);
    s->has_seq = s->stream[0] && table_get_int64(e, "LastSeq", &s->last_seq) == 0;
    const char *older = table_get_string(e, "OlderStreams");
    while (older && *older && s->nolder < DEVICE_OLDER_STREAMS) {
        /* "hash:seq;hash:seq" — anything malformed ends the list */
        const char *colon = strchr(older, ':');
        if (!colon || colon - older != 16) break;
        char *end = NULL;
        long long seq = strtoll(colon + 1, &end, 10);
        if (end == colon + 1 || (*end != ';' && *end != '\0')) break;
        memcpy(s->older[s->nolder].id, older, 16);
        s->older[s->nolder].id[16] = '\0';
        s->older[s->nolder].seq = seq;
        s->nolder++;
        older = *end ? end + 1 : end;
    }
}

/* The entity is built fresh, so properties are appended directly (no lookups): the same
 * annotated form the table_set_* helpers produce, at a fraction of the cost (this runs once
 * per device per batch on the hot path). */
static int add_item(cJSON *e, const char *name, cJSON *item)
{
    if (!item) return -1;
    cJSON_AddItemToObject(e, name, item);
    return 0;
}

static int add_annotated(cJSON *e, const char *name, cJSON *item, const char *edm)
{
    static const char suffix[] = "@odata.type";
    char an[64];
    size_t n = strlen(name);
    if (add_item(e, name, item) != 0) return -1;
    if (n + sizeof suffix > sizeof an) return -1;   /* our column names are short */
    memcpy(an, name, n);
    memcpy(an + n, suffix, sizeof suffix);
    return add_item(e, an, cJSON_CreateString(edm));
}

static int add_i64(cJSON *e, const char *name, int64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)v);
    return add_annotated(e, name, cJSON_CreateString(s), "Edm.Int64");
}

static int add_dbl(cJSON *e, const char *name, double v)
{
    if (!isfinite(v)) return table_set_double(e, name, v);   /* never after validation */
    return add_annotated(e, name, cJSON_CreateNumber(v), "Edm.Double");
}

cJSON *device_state_to_entity(const device_state_t *s, const char *pk, const char *row_key, const char *device_id)
{
    cJSON *e = cJSON_CreateObject();
    if (!e) return NULL;
    int rc = 0;
    rc |= add_item(e, "PartitionKey", cJSON_CreateString(pk));
    rc |= add_item(e, "RowKey", cJSON_CreateString(row_key));
    rc |= add_item(e, "DeviceId", cJSON_CreateString(device_id));
    if (s->has & TELE_HAS_TEMP) rc |= add_dbl(e, "Celsius", s->celsius);
    if (s->has & TELE_HAS_HUMIDITY) rc |= add_dbl(e, "Humidity", s->humidity);
    if (s->has & TELE_HAS_PRESSURE) rc |= add_dbl(e, "hPa", s->hpa);
    if (s->has & TELE_HAS_LIGHT) rc |= add_dbl(e, "Light", s->light);
    if (s->has & TELE_HAS_GEO) rc |= add_item(e, "Geo", cJSON_CreateString(s->geo));
    if (s->has & TELE_HAS_MSGID) rc |= add_item(e, "Id", cJSON_CreateString(s->id));
    rc |= add_i64(e, "Count", s->count);
    rc |= add_i64(e, "InvalidCount", s->invalid_count);
    if (s->last_seen[0]) rc |= add_annotated(e, "LastSeen", cJSON_CreateString(s->last_seen), "Edm.DateTime");
    rc |= add_item(e, "Schema", cJSON_CreateNumber(1));
    if (s->stream[0]) rc |= add_item(e, "Stream", cJSON_CreateString(s->stream));
    if (s->has_seq) rc |= add_i64(e, "LastSeq", s->last_seq);
    if (s->nolder > 0) {
        char text[DEVICE_OLDER_STREAMS * 40 + 1];
        size_t len = 0;
        for (int i = 0; i < s->nolder && i < DEVICE_OLDER_STREAMS; i++) {
            int n = snprintf(text + len, sizeof text - len, "%s%.16s:%lld", i ? ";" : "", s->older[i].id,
                             (long long)s->older[i].seq);
            if (n < 0 || (size_t)n >= sizeof text - len) break;
            len += (size_t)n;
        }
        text[len] = '\0';
        rc |= add_item(e, "OlderStreams", cJSON_CreateString(text));
    }
    if (rc) { cJSON_Delete(e); return NULL; }
    return e;
}

int tele_mark_validity(tele_batch_t *b, int first, const tele_calib_t *calib, const tele_bounds_t *bounds,
                       void (*reason_fn)(void *, const tele_event_t *, const char *), void *arg)
{
    int n = 0;
    for (int i = first; i >= 0; i = b->ev[i].next) {
        tele_event_t *e = &b->ev[i];
        tele_reading_t cal;
        char reason[192];
        tele_calibrate(calib, &e->reading, &cal);
        e->invalid = !tele_validate(bounds, &cal, reason, sizeof reason);
        if (e->invalid) {
            n++;
            if (reason_fn) reason_fn(arg, e, reason);
        }
    }
    return n;
}

int device_state_stream_seq(const device_state_t *s, const char *stream, int64_t *seq)
{
    if (s->stream[0] && s->has_seq && strcmp(s->stream, stream) == 0) { *seq = s->last_seq; return 1; }
    for (int i = 0; i < s->nolder; i++)
        if (strcmp(s->older[i].id, stream) == 0) { *seq = s->older[i].seq; return 1; }
    return 0;
}

/* Make stream the current one with sequence number seq, pushing the previous current stream
 * to the front of the older list (bounded, oldest dropped). */
static void switch_stream(device_state_t *s, const char *stream, int64_t seq)
{
    struct device_stream list[DEVICE_OLDER_STREAMS];
    int n = 0;
    if (s->stream[0] && s->has_seq) {
        memcpy(list[n].id, s->stream, 17);
        list[n++].seq = s->last_seq;
    }
    for (int i = 0; i < s->nolder && n < DEVICE_OLDER_STREAMS; i++)
        if (strcmp(s->older[i].id, stream) != 0 && strcmp(s->older[i].id, s->stream) != 0) list[n++] = s->older[i];
    memcpy(s->older, list, (size_t)n * sizeof list[0]);
    s->nolder = n;
    snprintf(s->stream, sizeof s->stream, "%.16s", stream);
    s->last_seq = seq;
    s->has_seq = 1;
}

int device_state_fold(const device_state_t *cur, const tele_batch_t *b, int first,
                      const tele_calib_t *calib, const char *now_utc, device_state_t *next,
                      fold_stats_t *stats)
{
    device_state_t s;
    memcpy(&s, cur, sizeof s);
    fold_stats_t st = {0, 0, 0};
    int64_t known_seq = 0;
    int known = device_state_stream_seq(&s, b->stream, &known_seq);
    int have_max = 0;
    int64_t max_seq = 0;

    for (int i = first; i >= 0; i = b->ev[i].next) {
        const tele_event_t *e = &b->ev[i];
        if (e->has_seq && known && e->seq <= known_seq) { st.replayed++; continue; }
        if (e->has_seq && (!have_max || e->seq > max_seq)) { max_seq = e->seq; have_max = 1; }
        if (e->invalid) { st.invalid++; s.invalid_count++; continue; }
        tele_reading_t r;
        tele_calibrate(calib, &e->reading, &r);   /* from the raw reading, every attempt */
        if (r.has & TELE_HAS_TEMP) s.celsius = r.temperature;
        if (r.has & TELE_HAS_HUMIDITY) s.humidity = r.humidity;
        if (r.has & TELE_HAS_PRESSURE) s.hpa = r.pressure;
        if (r.has & TELE_HAS_LIGHT) s.light = r.light;
        if (r.has & TELE_HAS_GEO) copy_text(s.geo, sizeof s.geo, r.geo);
        if (r.has & TELE_HAS_MSGID) copy_text(s.id, sizeof s.id, r.message_id);
        s.has |= r.has & (TELE_HAS_TEMP | TELE_HAS_HUMIDITY | TELE_HAS_PRESSURE | TELE_HAS_LIGHT |
                          TELE_HAS_GEO | TELE_HAS_MSGID);
        s.count++;
        st.accepted++;
        const char *t = e->enqueued[0] ? e->enqueued : now_utc;
        if (t && t[0] && strcmp(t, s.last_seen) > 0) copy_text(s.last_seen, sizeof s.last_seen, t);
    }
    if (have_max) {
        int64_t seq = known && known_seq > max_seq ? known_seq : max_seq;
        if (s.stream[0] && s.has_seq && strcmp(s.stream, b->stream) == 0) s.last_seq = seq;
        else switch_stream(&s, b->stream, seq);
    }
    if (stats) *stats = st;
    memcpy(next, &s, sizeof s);
    return st.accepted + st.invalid > 0;
}

/* ---- packed form ---- */

typedef struct packer {
    unsigned char *p;
    size_t         n, cap;
    int            bad;
} packer_t;

static void put(packer_t *k, const void *v, size_t n)
{
    if (k->n + n > k->cap) { k->bad = 1; return; }
    memcpy(k->p + k->n, v, n);
    k->n += n;
}

/* Length-prefixed in pieces of up to 254 bytes; a 255 prefix means "255 bytes, more follow". */
static void put_str(packer_t *k, const char *s)
{
    size_t n = strlen(s);
    while (n >= 255) {
        unsigned char m = 255;
        put(k, &m, 1);
        put(k, s, 255);
        s += 255;
        n -= 255;
    }
    unsigned char len = (unsigned char)n;
    put(k, &len, 1);
    put(k, s, len);
}

static void get(packer_t *k, void *v, size_t n)
{
    if (k->n + n > k->cap) { k->bad = 1; memset(v, 0, n); return; }
    memcpy(v, k->p + k->n, n);
    k->n += n;
}

static void get_str(packer_t *k, char *out, size_t cap)
{
    size_t o = 0;
    for (;;) {
        unsigned char len;
        get(k, &len, 1);
        if (k->bad || o + len >= cap) { k->bad = 1; out[0] = '\0'; return; }
        get(k, out + o, len);
        o += len;
        if (len < 255) break;
    }
    out[o] = '\0';
}

size_t device_state_pack(const device_state_t *s, unsigned char *out, size_t cap)
{
    packer_t k = {out, 0, cap, 0};
    unsigned char flags = (unsigned char)((s->has_seq ? 1 : 0) | (s->nolder << 1));
    put(&k, &flags, 1);
    put(&k, &s->has, sizeof s->has);
    const double *d[4] = {&s->celsius, &s->humidity, &s->hpa, &s->light};
    const unsigned bits[4] = {TELE_HAS_TEMP, TELE_HAS_HUMIDITY, TELE_HAS_PRESSURE, TELE_HAS_LIGHT};
    for (int i = 0; i < 4; i++)
        if (s->has & bits[i]) put(&k, d[i], sizeof(double));
    put(&k, &s->count, sizeof s->count);
    put(&k, &s->invalid_count, sizeof s->invalid_count);
    if (s->has_seq) put(&k, &s->last_seq, sizeof s->last_seq);
    put_str(&k, s->etag);
    put_str(&k, s->has & TELE_HAS_GEO ? s->geo : "");
    put_str(&k, s->has & TELE_HAS_MSGID ? s->id : "");
    put_str(&k, s->last_seen);
    put_str(&k, s->stream);
    for (int i = 0; i < s->nolder; i++) {
        put(&k, s->older[i].id, 16);
        put(&k, &s->older[i].seq, sizeof s->older[i].seq);
    }
    assert(!k.bad);
    return k.bad ? 0 : k.n;
}

int device_state_unpack(const unsigned char *p, size_t n, device_state_t *s)
{
    packer_t k = {(unsigned char *)p, 0, n, 0};
    memset(s, 0, sizeof *s);
    s->exists = 1;
    unsigned char flags;
    get(&k, &flags, 1);
    s->has_seq = flags & 1;
    s->nolder = flags >> 1;
    if (s->nolder > DEVICE_OLDER_STREAMS) return -1;
    get(&k, &s->has, sizeof s->has);
    double *d[4] = {&s->celsius, &s->humidity, &s->hpa, &s->light};
    const unsigned bits[4] = {TELE_HAS_TEMP, TELE_HAS_HUMIDITY, TELE_HAS_PRESSURE, TELE_HAS_LIGHT};
    for (int i = 0; i < 4; i++)
        if (s->has & bits[i]) get(&k, d[i], sizeof(double));
    get(&k, &s->count, sizeof s->count);
    get(&k, &s->invalid_count, sizeof s->invalid_count);
    if (s->has_seq) get(&k, &s->last_seq, sizeof s->last_seq);
    get_str(&k, s->etag, sizeof s->etag);
    get_str(&k, s->geo, sizeof s->geo);
    get_str(&k, s->id, sizeof s->id);
    get_str(&k, s->last_seen, sizeof s->last_seen);
    get_str(&k, s->stream, sizeof s->stream);
    for (int i = 0; i < s->nolder; i++) {
        get(&k, s->older[i].id, 16);
        s->older[i].id[16] = '\0';
        get(&k, &s->older[i].seq, sizeof s->older[i].seq);
    }
    return k.bad || k.n != n ? -1 : 0;
}

/* ---- cache ---- */
struct etag_cache {
    pthread_mutex_t lock;
    devmap_t       *map;   /* packed rows, LRU-bounded */
    atomic_int      tables_ready;
    int             seen_new, seen_old;   /* outcomes for uncached devices (guarded by lock) */
};

etag_cache_t *etag_cache_new(size_t max_entries)
{
    etag_cache_t *ec = calloc(1, sizeof *ec);
    if (!ec) return NULL;
    if (pthread_mutex_init(&ec->lock, NULL) != 0) { free(ec); return NULL; }
    ec->map = devmap_new(max_entries ? max_entries : 1);
    if (!ec->map) { pthread_mutex_destroy(&ec->lock); free(ec); return NULL; }
    atomic_init(&ec->tables_ready, 0);
    return ec;
}

void etag_cache_free(etag_cache_t *ec)
{
    if (!ec) return;
    devmap_free(ec->map);
    pthread_mutex_destroy(&ec->lock);
    free(ec);
}

int etag_cache_get(etag_cache_t *ec, const char *device_id, device_state_t *out)
{
    if (!ec) return 0;
    pthread_mutex_lock(&ec->lock);
    size_t n = 0;
    const unsigned char *p = devmap_get(ec->map, device_id, &n);
    int hit = p && device_state_unpack(p, n, out) == 0;
    pthread_mutex_unlock(&ec->lock);
    return hit;
}

void etag_cache_put(etag_cache_t *ec, const char *device_id, const device_state_t *s)
{
    if (!ec || !s->exists || !s->etag[0]) return;
    unsigned char packed[DEVICE_STATE_PACKED_MAX];
    size_t n = device_state_pack(s, packed, sizeof packed);
    if (!n) return;
    pthread_mutex_lock(&ec->lock);
    (void)devmap_put(ec->map, device_id, packed, n);   /* out of memory: not cached, next batch reads */
    pthread_mutex_unlock(&ec->lock);
}

void etag_cache_drop(etag_cache_t *ec, const char *device_id)
{
    if (!ec) return;
    pthread_mutex_lock(&ec->lock);
    devmap_del(ec->map, device_id);
    pthread_mutex_unlock(&ec->lock);
}

int etag_cache_tables_ready(etag_cache_t *ec)
{
    return ec ? atomic_load(&ec->tables_ready) : 0;
}

void etag_cache_set_tables_ready(etag_cache_t *ec, int ready)
{
    if (ec) atomic_store(&ec->tables_ready, ready);
}

int etag_cache_guess_new(etag_cache_t *ec)
{
    if (!ec) return 0;
    pthread_mutex_lock(&ec->lock);
    int total = ec->seen_new + ec->seen_old;
    int guess = total >= ETAG_NEW_SAMPLES && ec->seen_new >= ETAG_NEW_SHARE * total;
    pthread_mutex_unlock(&ec->lock);
    return guess;
}

void etag_cache_note_new(etag_cache_t *ec, int was_new)
{
    if (!ec) return;
    pthread_mutex_lock(&ec->lock);
    if (was_new) ec->seen_new++;
    else ec->seen_old++;
    if (ec->seen_new + ec->seen_old > 4 * ETAG_NEW_SAMPLES) {   /* halve: the recent past counts most */
        ec->seen_new /= 2;
        ec->seen_old /= 2;
    }
    pthread_mutex_unlock(&ec->lock);
}
