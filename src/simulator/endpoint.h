/* endpoint.h — where a device's messages go, and whether it can be reached.
 *
 * Owns the rules for the target: an explicit --endpoint URL (http://, https://, mqtts://,
 * mqtt://), else the connection string's GatewayHostName, else its HostName, with the
 * transport's scheme and port (MQTT: mqtts, 8883; HTTP: https, 443), as Microsoft's SDKs
 * choose it. Also the start-up probe: one TCP connect (and TLS handshake with certificate and
 * host name checks, where TLS is used) per distinct endpoint, so that an unreachable endpoint
 * or a certificate problem is one clear line before any device starts. */
#ifndef ENVIROMON_SIM_ENDPOINT_H
#define ENVIROMON_SIM_ENDPOINT_H

#include <stddef.h>

#include "simulator/connstr.h"

typedef enum { SIM_TP_MQTT = 0, SIM_TP_HTTP = 1 } sim_tp_kind_t;

typedef struct sim_endpoint {
    sim_tp_kind_t kind;
    int   tls;
    char  host[SIM_HOST_MAX + 1];          /* no brackets around IPv6 literals */
    int   port;
    char  url[SIM_HOST_MAX + 32];          /* scheme://host:port, no trailing slash */
    char  connect_host[SIM_HOST_MAX + 1];  /* what to connect to (see sim_endpoint_probe) */
    struct sim_endpoint *next;             /* the run's list of distinct endpoints */
} sim_endpoint_t;

const char *sim_tp_name(sim_tp_kind_t k);

/* Parse an --endpoint URL. The scheme decides the transport; when *kind_given, it must agree
 * with *kind, else *kind is set from it. Returns 0 or -1 with a reason in err. */
int sim_endpoint_parse(const char *url, sim_tp_kind_t *kind, int kind_given, sim_endpoint_t *ep,
                       char *err, size_t errlen);

/* The endpoint implied by a host name with an optional :port (GatewayHostName / HostName). */
int sim_endpoint_for_host(const char *hostport, sim_tp_kind_t kind, sim_endpoint_t *ep, char *err,
                          size_t errlen);

/* Connect once (TCP, and the TLS handshake verifying the certificate against ca_file, or the
 * system's CAs when NULL, and the host name) within timeout_ms. Sets connect_host: the host
 * itself, except that "localhost" becomes the loopback address that answered (the MQTT
 * library tries only the first address a name resolves to). Returns 0, or -1 with a one-line
 * reason in err naming the endpoint. */
int sim_endpoint_probe(sim_endpoint_t *ep, const char *ca_file, long timeout_ms, char *err, size_t errlen);

#endif
