/* json_file.h — reading the function app's JSON files (host.json, function.json,
 * local.settings.json) the way the Functions host reads them, with errors a person can act on.
 *
 * The host parses these files with Newtonsoft, which accepts // and block comments; cJSON does
 * not, so comments are blanked out first (keeping every byte offset, hence line and column, as
 * in the file). A UTF-8 byte-order mark is skipped. A parse error names the file, line and
 * column and what was found there. Files larger than DH_JSON_MAX_BYTES are refused. */
#ifndef ENVIROMON_DH_JSON_FILE_H
#define ENVIROMON_DH_JSON_FILE_H

#include <stddef.h>

struct cJSON;

#define DH_JSON_MAX_BYTES (4u * 1024u * 1024u)

/* Parse the JSON file at path (shown as `shown` in messages, e.g. "Negotiate/function.json").
 * Returns the tree (caller deletes), or NULL with err set: "<shown>: file not found" (and
 * *missing = 1 when missing is not NULL), "<shown>: line 3, column 14: expected ',' or '}'
 * before '\"route\"'", and so on. */
struct cJSON *dh_json_load(const char *path, const char *shown, int *missing, char *err, size_t errlen);

/* Parse text[0..len) (comments allowed, as above). Same error format, `shown` naming the
 * source. Exposed for tests. */
struct cJSON *dh_json_parse(const char *text, size_t len, const char *shown, char *err, size_t errlen);

/* Line and column (both 1-based) of byte offset off in text. */
void dh_json_position(const char *text, size_t off, int *line, int *col);

#endif
