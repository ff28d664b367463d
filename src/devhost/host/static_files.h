/* static_files.h — the app's dashboard/ folder served at "/", so that the page and the
 * functions share one origin locally.
 *
 * Owns: mapping a request path to a file inside the folder and nowhere else (every segment
 * percent-decoded and refused when it is ".", "..", hidden (leading '.'), or holds '/', '\' or
 * NUL; the resolved real path, symlinks followed, must stay inside the folder's real path), "/"
 * → index.html, no directory listings, the content type from the extension, and the headers a
 * page needs: Content-Security-Policy (scripts only from the page's origin, no inline scripts;
 * connect-src also allows the SignalR Service's origins), X-Content-Type-Options: nosniff,
 * Cache-Control: no-cache (a development server), Referrer-Policy and framing refused. Files
 * are sent straight from their descriptor. Thread-safe. */
#ifndef ENVIROMON_DH_STATIC_FILES_H
#define ENVIROMON_DH_STATIC_FILES_H

#include <stddef.h>

#include "devhost/host/http_msg.h"

typedef struct dh_static dh_static_t;

/* Serve the folder dir. connect_src: extra origins for the policy's connect-src (space
 * separated, may be NULL). Returns NULL with *absent = 1 when dir does not exist (not an
 * error: there is no dashboard), NULL with err on other failures. */
dh_static_t *dh_static_open(const char *dir, const char *connect_src, int *absent, char *err, size_t errlen);
void dh_static_free(dh_static_t *s);

/* The Content-Security-Policy value in use (for tests and logs). */
const char *dh_static_csp(const dh_static_t *s);

/* Answer r from the folder into w: 200 with the file, 405 for a method other than GET/HEAD.
 * Returns 1 when w was filled, 0 when there is no such file (the caller answers 404). */
int dh_static_serve(dh_static_t *s, const dh_http_req_t *r, dh_http_resp_t *w);

/* The content type for a file name's extension ("application/octet-stream" when unknown). */
const char *dh_static_content_type(const char *name);

#endif
