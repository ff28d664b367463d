/* normalise.h — one telemetry message (a JSON object) → a typed reading.
 *
 * Owns the field aliases the original accepted and the strict numeric parsing, so that every
 * later step (calibration, validation, folding into device state) sees one shape:
 *   temperature | Temperature | Celsius   → temperature (°C)
 *   humidity | Humidity                   → humidity (%)
 *   pressure | Pressure | hPa | HPa       → pressure (hPa)
 *   light | Light                         → light
 *   geo | Geo                             → geo (string)
 *   messageId | Id                        → message id (string; an integer is kept as its text)
 *   deviceId | DeviceId                   → the device the payload claims to be
 * The first alias present wins. A field that is absent or JSON null is "not sent" and leaves
 * the stored value alone. Numbers may be JSON numbers or strings holding a decimal number;
 * anything else (booleans, objects, "abc", "NaN", "Infinity", overflow to ±inf) makes the
 * whole message invalid, with a reason.
 *
 * A value the caller could not hand over as a cJSON string — one holding U+0000, which cJSON
 * would cut short, or one too long to keep — arrives as a cJSON Raw item whose text is the
 * reason ("contains a NUL character"); any field holding one makes the message invalid, and
 * a deviceId holding one is a claim that cannot be used (claimed_bad), never a truncated id
 * that could pass for another device. */
#ifndef ENVIROMON_TELEMETRY_NORMALISE_H
#define ENVIROMON_TELEMETRY_NORMALISE_H

#include <stddef.h>

struct cJSON;

#define TELE_TEXT_MAX 256        /* longest geo / message id kept (bytes) */

enum {
    TELE_HAS_TEMP     = 1u << 0,
    TELE_HAS_HUMIDITY = 1u << 1,
    TELE_HAS_PRESSURE = 1u << 2,
    TELE_HAS_LIGHT    = 1u << 3,
    TELE_HAS_GEO      = 1u << 4,
    TELE_HAS_MSGID    = 1u << 5
};

typedef struct tele_reading {
    unsigned    has;                     /* TELE_HAS_* bits for the fields sent */
    double      temperature, humidity, pressure, light;
    const char *geo;                     /* borrowed from the message, when TELE_HAS_GEO */
    const char *message_id;              /* borrowed, or msgid_buf, when TELE_HAS_MSGID */
    char        msgid_buf[24];           /* text of an integer message id */
    const char *claimed_device_id;       /* payload deviceId/DeviceId (borrowed) or NULL */
    int         claimed_bad;             /* the payload's deviceId is unusable (see above) */
    int         invalid;                 /* 1 when the message must not touch the state */
    char        reason[128];             /* why, when invalid */
} tele_reading_t;

/* Every member name tele_normalise reads, NULL-terminated (a caller that builds msg from a
 * larger object needs only these). */
extern const char *const tele_field_names[];

/* Strictly parse a number out of a JSON value: a finite JSON number, or a string holding only
 * a finite decimal number (surrounding blanks allowed). Returns 0 with *out set, or -1 with
 * a short reason ("not a number", "not finite", "wrong type object") in why (may be NULL). */
int tele_parse_number(const struct cJSON *v, double *out, char *why, size_t whylen);

/* Fill r from the message object msg (which must be a JSON object). Never fails: problems
 * set r->invalid and r->reason. r->claimed_device_id points into msg. */
void tele_normalise(const struct cJSON *msg, tele_reading_t *r);

#endif
