/* json_raw.h — strict JSON validation that keeps the text as it was sent.
 *
 * Owns: checking that a text is exactly one JSON value (RFC 8259, with I-JSON's rule that
 * strings are Unicode text: valid UTF-8, no unpaired \uD800-\uDFFF escapes), copying it
 * with the insignificant whitespace removed and every token byte for byte as sent, and
 * walking the members of an object so checked. Why: a relay that parses into doubles and
 * C strings and prints again changes what it forwards (9007199254740993 becomes
 * 9.00719925474099e+15, 1e400 becomes null, "a\u0000b" becomes "a"); forwarding the
 * validated text changes nothing, and removing whitespace keeps records on one line (SSE). */
#ifndef ENVIROMON_JSON_RAW_H
#define ENVIROMON_JSON_RAW_H

#include <stddef.h>

#include "util/buf.h"

#define JSON_RAW_MAX_DEPTH 512 /* nested arrays/objects; deeper texts are refused */

/* Validate json[0..n) as exactly one JSON value, optionally surrounded by whitespace
 * (anything else after it is an error). When out is not NULL, append the value without
 * insignificant whitespace. Returns 0, or -1 with a message naming the byte offset in err
 * (out may then hold a partial copy; -1 also when out ran out of memory). */
int json_raw_compact(const char *json, size_t n, buf_t *out, char *err, size_t errlen);

/* One member of an object: the key as its raw string token (quotes included) and the value's
 * text. */
typedef struct json_raw_member {
    const char *key;
    size_t      key_len;
    const char *val;
    size_t      val_len;
} json_raw_member_t;

/* Iterate the members of obj[0..n), an object as json_raw_compact produced it (validated, no
 * whitespace). *pos starts at 0. Returns 1 with *m filled, 0 after the last member. */
int json_raw_next_member(const char *obj, size_t n, size_t *pos, json_raw_member_t *m);

/* 1 when the raw string token tok[0..n) (quotes included, as validated above) decodes to
 * ascii, ignoring ASCII case. */
int json_raw_string_eq_ci(const char *tok, size_t n, const char *ascii);

#endif
