/* settings.h — the app settings devhost runs the function app with.
 *
 * Owns the merge Core Tools does: `Values` of local.settings.json become environment variables
 * of the host (and so of the handler), except that a variable already set in devhost's own
 * environment wins (Core Tools: "Skipping '<name>' from local settings as it's already defined
 * in current environment variables"). Lookups are exact first and then case-insensitive, as the
 * host's configuration is. Also owns %Setting% expansion (binding properties, host.json
 * arguments) and the handler's environment block. Read-only after loading: safe to share
 * between threads. Values are secrets as far as logging goes: nothing here prints them. */
#ifndef ENVIROMON_DH_SETTINGS_H
#define ENVIROMON_DH_SETTINGS_H

#include <stddef.h>

typedef struct dh_settings dh_settings_t;

/* An empty set (lookups still fall back to the process environment). NULL when out of memory. */
dh_settings_t *dh_settings_new(void);
void dh_settings_free(dh_settings_t *s);

/* Add a Values entry. When the environment already defines name, the environment's value is
 * kept and *overridden is set to 1 (the caller says so in the log). Returns 0, or -1 when out
 * of memory. A later duplicate name replaces an earlier one. */
int dh_settings_add(dh_settings_t *s, const char *name, const char *value, int *overridden);

/* The effective value of a setting: the environment's, else the Values entry (exact name,
 * then ASCII case-insensitive). NULL when unset. The pointer stays valid while s lives. */
const char *dh_settings_get(const dh_settings_t *s, const char *name);

/* Number of Values entries and the i-th name (in file order), for listing. */
size_t dh_settings_count(const dh_settings_t *s);
const char *dh_settings_name(const dh_settings_t *s, size_t i);

/* Expand every %Name% in in with the setting's value (a '%' not followed by a name and a
 * closing '%' stays as it is). Returns a malloc'd string, or NULL with err naming the missing
 * setting: "the setting 'X' (%X%) has no value". */
char *dh_settings_expand(const dh_settings_t *s, const char *in, char *err, size_t errlen);

/* The environment block for a child process: devhost's environment, plus every Values entry
 * the environment does not define, plus the extra "NAME=value" strings (which replace
 * anything of the same name). NULL-terminated, malloc'd; free with dh_settings_free_environ. */
char **dh_settings_environ(const dh_settings_t *s, const char *const *extra);
void dh_settings_free_environ(char **envp);

#endif
