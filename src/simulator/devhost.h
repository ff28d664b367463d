/* devhost.h — registering local devices with devhost's device registry.
 *
 * Owns running `devhost device add NAME --data DIR --quiet` (and `device show NAME` when the
 * device exists already) and picking the device connection string out of what it prints. The devhost
 * binary is the one next to the simulator's own executable, else `devhost` on PATH. */
#ifndef ENVIROMON_SIM_DEVHOST_H
#define ENVIROMON_SIM_DEVHOST_H

#include <stddef.h>

/* The devhost binary to run (a path, or "devhost" for a PATH lookup) into out. */
void sim_devhost_binary(char *out, size_t outlen);

/* Register device name (or look it up if it exists) in the registry at data_dir; its
 * connection string into connstr (malloc'ed). Returns 0, or -1 with one line in err. */
int sim_devhost_device(const char *bin, const char *data_dir, const char *name, char **connstr, char *err,
                       size_t errlen);

/* The first "HostName=..." connection string in text (up to white space or a quote), malloc'ed,
 * or NULL. */
char *sim_devhost_find_connstr(const char *text);

#endif
