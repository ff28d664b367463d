/* sr_token.c — test helper around the SignalR token library, so an independent verifier
 * (jsonwebtoken in tests/js/signalr_token.test.mjs) can check what the C code mints.
 *
 * The key never goes on the command line: it is read from SR_TOKEN_KEY.
 *   sr_token mint AUD EXP [USER_ID]      → prints the JWT
 *   sr_token verify TOKEN AUD|- NOW      → prints {"status":...,"aud":...,"exp":...,"userId":...};
 *                                          exit 0 only when the token verifies
 *   sr_token conn HUB                    → parses SR_CONN, prints {"clientUrl","audience","requestBase"} */
#include "azure/signalr_token.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: SR_TOKEN_KEY=... sr_token mint AUD EXP [USER] | verify TOKEN AUD|- NOW | SR_CONN=... sr_token conn HUB\n");
    return 2;
}

static int print_json(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) { fprintf(stderr, "sr_token: out of memory\n"); return 2; }
    puts(s);
    cJSON_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    if (strcmp(argv[1], "conn") == 0) {
        if (argc != 3) return usage();
        const char *cs = getenv("SR_CONN");
        sr_conn_t c;
        char err[256], url[1024], aud[1024], base[1024];
        if (sr_conn_parse(cs, &c, err, sizeof err) != 0) { fprintf(stderr, "sr_token: %s\n", err); return 1; }
        int ok = sr_client_url(&c, argv[2], url, sizeof url) == 0 &&
                 sr_client_audience(&c, argv[2], aud, sizeof aud) == 0 &&
                 sr_request_base(&c, base, sizeof base) == 0;
        sr_conn_free(&c);
        if (!ok) { fprintf(stderr, "sr_token: URL too long\n"); return 1; }
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "clientUrl", url);
            cJSON_AddStringToObject(o, "audience", aud);
            cJSON_AddStringToObject(o, "requestBase", base);
        }
        return print_json(o);
    }
    const char *key = getenv("SR_TOKEN_KEY");
    if (!key) { fprintf(stderr, "sr_token: set SR_TOKEN_KEY\n"); return 2; }
    if (strcmp(argv[1], "mint") == 0) {
        if (argc != 4 && argc != 5) return usage();
        char *tok = sr_token_mint(key, strlen(key), argv[2], (time_t)strtoll(argv[3], NULL, 10),
                                  argc == 5 ? argv[4] : NULL);
        if (!tok) { fprintf(stderr, "sr_token: mint failed\n"); return 1; }
        puts(tok);
        free(tok);
        return 0;
    }
    if (strcmp(argv[1], "verify") == 0) {
        if (argc != 5) return usage();
        sr_claims_t cl;
        const char *aud = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
        sr_verify_status_t st = sr_token_verify(argv[2], key, strlen(key), aud,
                                                (time_t)strtoll(argv[4], NULL, 10), &cl);
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "status", sr_verify_status_name(st));
            /* aud: one audience as a string ("" when none), several as an array */
            cJSON *a = cl.naud <= 1 ? cJSON_CreateString(cl.naud ? cl.aud[0] : "")
                                    : cJSON_CreateStringArray((const char *const *)cl.aud, (int)cl.naud);
            if (a) cJSON_AddItemToObject(o, "aud", a);
            cJSON_AddNumberToObject(o, "exp", (double)cl.exp);
            cJSON_AddStringToObject(o, "userId", cl.user_id ? cl.user_id : "");
        }
        sr_claims_free(&cl);
        int rc = print_json(o);
        return rc ? rc : (st == SR_TOKEN_OK ? 0 : 1);
    }
    return usage();
}
