/* sim_sas.c — test helper around the simulator's SAS minting and connection-string parser,
 * so that Microsoft's azure-iot-common (tests/js/simulator_sas.test.mjs) can check them.
 *
 *   sim_sas token CONNSTR EXPIRY   → the token the simulator would send, from the connection
 *                                    string in the environment variable SIM_CONNSTR when
 *                                    CONNSTR is "-" (keeps keys off the command line)
 *   sim_sas parse CONNSTR          → {"host","deviceId","gateway","keyLength"} or the error
 *                                    (exit 1) */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simulator/connstr.h"
#include "simulator/sas.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sim_sas token CONNSTR|- EXPIRY | parse CONNSTR|-\n");
        return 2;
    }
    const char *cs_text = strcmp(argv[2], "-") == 0 ? getenv("SIM_CONNSTR") : argv[2];
    if (!cs_text) { fprintf(stderr, "sim_sas: SIM_CONNSTR is not set\n"); return 2; }
    sim_connstr_t cs;
    char err[300];
    if (sim_connstr_parse(cs_text, &cs, err, sizeof err) != 0) {
        printf("%s\n", err);
        return 1;
    }
    if (strcmp(argv[1], "parse") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "host", cs.host);
        cJSON_AddStringToObject(o, "deviceId", cs.device_id);
        cJSON_AddStringToObject(o, "gateway", cs.gateway);
        cJSON_AddNumberToObject(o, "keyLength", (double)cs.key_len);
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        cJSON_free(s);
        cJSON_Delete(o);
        return 0;
    }
    if (strcmp(argv[1], "token") == 0 && argc == 4) {
        buf_t t = BUF_INIT;
        if (sim_sas_token(&t, cs.host, cs.device_id, cs.key, cs.key_len, atoll(argv[3])) != 0) {
            fprintf(stderr, "sim_sas: minting failed\n");
            return 2;
        }
        puts(buf_str(&t));
        buf_free(&t);
        return 0;
    }
    fprintf(stderr, "sim_sas: unknown command\n");
    return 2;
}
