/* binding_expr.h — binding expressions ("{headers.x-ms-client-principal-id}", "{query.id}",
 * "{id}", "{sys.randguid}", "{rand-guid}", "{datetime}") resolved per invocation, as the WebJobs
 * SDK resolves the [AutoResolve] properties of a binding (hubName, userId, ...).
 *
 * The binding data is the invocation's Metadata as devhost sends it to the handler; values the
 * wire double-encodes are unwrapped before use. Lookups are ASCII case-insensitive at every
 * level. A name that does not resolve is an error with the SDK's own wording, which fails the
 * invocation ("Error while accessing 'x-ms-client-principal-id': property doesn't exist." —
 * the real host fails an anonymous negotiate whose userId names an absent header exactly so:
 * Azure/azure-functions-signalrservice-extension#58). Thread-safe. */
#ifndef ENVIROMON_DH_BINDING_EXPR_H
#define ENVIROMON_DH_BINDING_EXPR_H

#include <stddef.h>

struct cJSON;

/* 1 when tmpl contains a "{...}" expression. */
int dh_expr_has(const char *tmpl);

/* Resolve every expression in tmpl. Returns a malloc'd string, or NULL with err set. */
char *dh_expr_resolve(const char *tmpl, const struct cJSON *metadata, char *err, size_t errlen);

#endif
