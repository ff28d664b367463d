/* registry.c — which functions this app serves, by the names the Functions host uses.
 *
 * The host POSTs to /<function folder name>; the route table below must list every folder
 * that has a function.json (EventTrigger, Negotiate, GetDeviceState, SendSignalr). Matching
 * is case-insensitive (server.c). */
#include "handler/app.h"
#include "protocol/invocation.h"

int event_trigger_run(invocation_t *inv, app_t *app);
int negotiate_run(invocation_t *inv, app_t *app);
int get_device_state_run(invocation_t *inv, app_t *app);
int send_signalr_run(invocation_t *inv, app_t *app);

/* Placeholders while the modules are being written: a strong definition in the function's
 * own module replaces each one at link time. */
#define NOT_YET(fn)                                                                 \
    __attribute__((weak)) int fn(invocation_t *inv, app_t *app)                     \
    {                                                                               \
        (void)app;                                                                  \
        inv_fail(inv, 501, "%s is not implemented in this build", inv->function);   \
        return -1;                                                                  \
    }
NOT_YET(event_trigger_run)
NOT_YET(negotiate_run)
NOT_YET(get_device_state_run)
NOT_YET(send_signalr_run)

const function_entry_t app_functions[] = {
    {"EventTrigger", event_trigger_run},
    {"Negotiate", negotiate_run},
    {"GetDeviceState", get_device_state_run},
    {"SendSignalr", send_signalr_run},
    {NULL, NULL},
};
