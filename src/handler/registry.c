/* registry.c — which functions this app serves, by the names the Functions host uses.
 *
 * The host POSTs to /<function folder name>; the route table below must list every folder
 * that has a function.json (EventTrigger, Negotiate, GetDeviceState, SendSignalr). Matching
 * is case-insensitive (server.c). */
#include "handler/app.h"

#include "functions/functions.h"
#include "telemetry/event_trigger.h"

const function_entry_t app_functions[] = {
    {"EventTrigger", event_trigger_run, &event_trigger_reader},
    {"Negotiate", negotiate_run, NULL},
    {"GetDeviceState", get_device_state_run, NULL},
    {"SendSignalr", send_signalr_run, NULL},
    {NULL, NULL, NULL},
};
