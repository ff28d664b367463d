/* device_cli.c — `devhost device ...` (see device_cli.h). */
#include "devhost/iothub/device_cli.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devhost/iothub/hub.h"
#include "devhost/iothub/registry.h"
#include "devhost/iothub/sas.h"

#define API_VERSION "2021-04-12"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: devhost device add NAME            [--data DIR] [--hub NAME] [--quiet]\n"
            "       devhost device list                [--data DIR]\n"
            "       devhost device show NAME           [--data DIR] [--hub NAME]\n"
            "       devhost device remove NAME         [--data DIR]\n"
            "       devhost device regenerate-key NAME [--secondary] [--data DIR] [--hub NAME] [--quiet]\n"
            "       devhost device token NAME          [--ttl SECONDS] [--secondary] [--data DIR] [--hub NAME]\n"
            "\n"
            "The local IoT Hub's devices (stored in DIR/iothub/devices.json; DIR defaults to .devhost).\n"
            "A device id is 1 to 128 characters from A-Z a-z 0-9 - : . + %% _ # * ? ! ( ) , = @ ; $ '.\n"
            "--hub names the hub in connection strings and tokens (default " IOTHUB_DEFAULT_NAME ";\n"
            "use the same name as `devhost start --hub`). --quiet prints the connection string only.\n");
}

typedef struct cli {
    const char *cmd, *name, *data, *hub;
    long        ttl;
    int         secondary, quiet;
} cli_t;

static int parse(int argc, char **argv, cli_t *c)
{
    memset(c, 0, sizeof *c);
    c->data = ".devhost";
    c->hub = IOTHUB_DEFAULT_NAME;
    c->ttl = 3600;
    c->cmd = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--secondary") == 0) c->secondary = 1;
        else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) c->quiet = 1;
        else if (strcmp(a, "--data") == 0 || strcmp(a, "--hub") == 0 || strcmp(a, "--ttl") == 0) {
            if (!v || !*v) { fprintf(stderr, "devhost device: %s needs a value\n", a); return -1; }
            if (a[2] == 'd') c->data = v;
            else if (a[2] == 'h') c->hub = v;
            else {
                char *end;
                errno = 0;
                c->ttl = strtol(v, &end, 10);
                if (errno || *end || c->ttl < 1 || c->ttl > 10L * 365 * 86400) {
                    fprintf(stderr, "devhost device: --ttl needs seconds from 1 to 315360000\n");
                    return -1;
                }
            }
            i++;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "devhost device: unknown option %s\n", a);
            return -1;
        } else if (!c->name) {
            c->name = a;
        } else {
            fprintf(stderr, "devhost device %s: unexpected argument '%s'\n", c->cmd, a);
            return -1;
        }
    }
    if (!iothub_valid_name(c->hub)) {
        fprintf(stderr, "devhost device: invalid --hub '%s': 3 to 50 letters, digits or '-'\n", c->hub);
        return -1;
    }
    return 0;
}

static void hub_host(const cli_t *c, char *out, size_t len)
{
    snprintf(out, len, "%s" IOTHUB_HOST_SUFFIX, c->hub);
    for (char *p = out; *p; p++) if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
}

static void print_conn(const cli_t *c, const iothub_device_t *d, int secondary)
{
    char host[128];
    hub_host(c, host, sizeof host);
    printf("HostName=%s;DeviceId=%s;SharedAccessKey=%s\n", host, d->id, secondary ? d->secondary : d->primary);
}

/* Both device endpoints of `devhost start`, so that the connection string just printed can be
 * used at once: HTTP on the front port, MQTT over TLS the way an IoT Edge gateway is reached. */
static void print_endpoints(const cli_t *c, const iothub_device_t *d)
{
    char enc[IOTHUB_DEVICE_ID_MAX * 3 + 1];
    if (iothub_sas_url_encode(d->id, 1, enc, sizeof enc) < 0) return;
    printf("\nWith `devhost start` running, the device sends telemetry to the local hub over HTTP:\n"
           "  POST http://localhost:7071/devices/%s/messages/events?api-version=" API_VERSION "\n"
           "  Authorization: <a SAS token; `devhost device token %s` makes one>\n"
           "or over MQTT (Microsoft's device SDKs, mosquitto): append\n"
           "  ;GatewayHostName=localhost:8883\n"
           "to the connection string and trust the local CA %s/ca.pem (made by the first `devhost start`).\n"
           "(7071 and 8883 are devhost's default ports; use the ones `devhost start` prints.)\n", enc, d->id, c->data);
}

static int report(iothub_reg_status_t st, const char *err)
{
    if (st == IOTHUB_REG_OK) return 0;
    fprintf(stderr, "devhost device: %s\n", err);
    return 1;
}

int iothub_device_cli(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "help") == 0) {
        usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(stdout); return 0; }
    cli_t c;
    if (parse(argc, argv, &c) != 0) return 2;
    int needs_name = strcmp(c.cmd, "list") != 0;
    if (needs_name != (c.name != NULL)) {
        fprintf(stderr, needs_name ? "devhost device %s: the device NAME is missing\n"
                                   : "devhost device %s: takes no NAME\n", c.cmd);
        usage(stderr);
        return 2;
    }
    char dir[4096], err[700];
    snprintf(dir, sizeof dir, "%s/iothub", c.data);
    iothub_device_t d;
    iothub_reg_status_t st;
    int rc;
    if (strcmp(c.cmd, "add") == 0) {
        st = iothub_registry_add(dir, c.name, &d, err, sizeof err);
        if ((rc = report(st, err)) == 0) {
            if (c.quiet) print_conn(&c, &d, 0);
            else {
                printf("Device '%s' added to the local IoT Hub '%s' (%s).\nConnection string:\n", d.id, c.hub, dir);
                print_conn(&c, &d, 0);
                print_endpoints(&c, &d);
            }
        }
    } else if (strcmp(c.cmd, "list") == 0) {
        iothub_device_t *all;
        size_t n;
        st = iothub_registry_list(dir, &all, &n, err, sizeof err);
        if ((rc = report(st, err)) == 0) {
            for (size_t i = 0; i < n; i++) printf("%s\n", all[i].id);
            if (all) OPENSSL_cleanse(all, n * sizeof *all);
            free(all);
        }
    } else if (strcmp(c.cmd, "show") == 0) {
        st = iothub_registry_get(dir, c.name, &d, err, sizeof err);
        if ((rc = report(st, err)) == 0) {
            char host[128];
            hub_host(&c, host, sizeof host);
            printf("DeviceId:      %s\nHub:           %s\nGenerationId:  %s\nCreated:       %s\n", d.id, host,
                   d.generation_id, d.created);
            printf("Primary connection string:\n  ");
            print_conn(&c, &d, 0);
            printf("Secondary connection string:\n  ");
            print_conn(&c, &d, 1);
        }
    } else if (strcmp(c.cmd, "remove") == 0) {
        st = iothub_registry_remove(dir, c.name, err, sizeof err);
        if ((rc = report(st, err)) == 0) printf("Device '%s' removed.\n", c.name);
    } else if (strcmp(c.cmd, "regenerate-key") == 0) {
        st = iothub_registry_regenerate(dir, c.name, c.secondary, &d, err, sizeof err);
        if ((rc = report(st, err)) == 0) {
            if (!c.quiet)
                printf("New %s key for '%s'; tokens signed with the old one are refused from now on.\n"
                       "Connection string:\n", c.secondary ? "secondary" : "primary", d.id);
            print_conn(&c, &d, c.secondary);
        }
    } else if (strcmp(c.cmd, "token") == 0) {
        st = iothub_registry_get(dir, c.name, &d, err, sizeof err);
        if ((rc = report(st, err)) == 0) {
            char host[128], res[600], sr[1800], tok[IOTHUB_SAS_MAX_TOKEN];
            unsigned char key[IOTHUB_KEY_RAW_MAX];
            hub_host(&c, host, sizeof host);
            snprintf(res, sizeof res, "%s/devices/%s", host, d.id);
            long kl = iothub_device_key_raw(c.secondary ? d.secondary : d.primary, key);
            if (kl < 0 || iothub_sas_url_encode(res, 1, sr, sizeof sr) < 0 ||
                iothub_sas_make(sr, key, (size_t)kl, (long long)time(NULL) + c.ttl, NULL, tok, sizeof tok) != 0) {
                fprintf(stderr, "devhost device token: cannot make a token for '%s'\n", c.name);
                rc = 1;
            } else {
                printf("%s\n", tok);
            }
            OPENSSL_cleanse(key, sizeof key);
        }
    } else {
        fprintf(stderr, "devhost device: unknown command '%s'\n", c.cmd);
        usage(stderr);
        return 2;
    }
    OPENSSL_cleanse(&d, sizeof d);
    return rc;
}
