/* route.h — HTTP trigger route templates, as ASP.NET Core routing reads them for the host.
 *
 * Owns parsing a function's `route` ("getdevicestate", "products/{category:alpha}/{id:int?}",
 * "files/{*path}", "items/{id=5}") and matching a request path against it: literal segments
 * compared ASCII case-insensitively, parameters bound to the percent-decoded segment, optional
 * parameters and defaults at the end, a catch-all taking the rest, and the common inline
 * constraints (int, long, bool, guid, alpha, double, float, decimal, datetime, min, max,
 * range, minlength, maxlength, length, regex, required). One parameter per segment (complex
 * segments such as "{a}-{b}" are refused at start-up with a clear message). Immutable after
 * parsing; matching is thread-safe. */
#ifndef ENVIROMON_DH_ROUTE_H
#define ENVIROMON_DH_ROUTE_H

#include <stddef.h>

struct cJSON;

typedef struct dh_route dh_route_t;

/* Parse a template (a leading '/' or "~/" is ignored). Returns NULL with a message in err
 * naming the problem ("route 'a/{b': a '{' without its '}'"). */
dh_route_t *dh_route_parse(const char *tmpl, char *err, size_t errlen);
void dh_route_free(dh_route_t *r);

/* Match decoded path segments segs[0..n) (the path after the route prefix, split on '/').
 * On a match returns 1 and, when params is not NULL, adds every parameter to the object
 * params: name → string value, or JSON null for an optional parameter without value or
 * default (as the host's route data has it). Returns 0 when the path does not match. */
int dh_route_match(const dh_route_t *r, char *const *segs, size_t n, struct cJSON *params);

/* Compare the precedence of two routes for the same path (negative: a is tried first).
 * Literal segments beat constrained parameters, which beat plain, optional and catch-all ones,
 * segment by segment, as ASP.NET Core orders them. */
int dh_route_cmp(const dh_route_t *a, const dh_route_t *b);

/* Number of parameters and the i-th parameter's name (for the binding data contract). */
size_t dh_route_param_count(const dh_route_t *r);
const char *dh_route_param_name(const dh_route_t *r, size_t i);

#endif
