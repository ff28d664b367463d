/* device_cli.h — `devhost device ...`: manage the local IoT Hub's device registry.
 *
 *   devhost device add NAME            [--data DIR] [--hub NAME] [--quiet]
 *   devhost device list                [--data DIR]
 *   devhost device show NAME           [--data DIR] [--hub NAME]
 *   devhost device remove NAME         [--data DIR]
 *   devhost device regenerate-key NAME [--secondary] [--data DIR] [--hub NAME] [--quiet]
 *   devhost device token NAME          [--ttl SECONDS] [--secondary] [--data DIR] [--hub NAME]
 *
 * Works whether or not `devhost start` runs (registry.h explains the locking); a running
 * devhost sees every change on its next request. Prints connection strings and keys on stdout
 * (that is what the command is for); errors go to stderr. Exit status: 0 done, 1 refused or
 * failed (the message says why), 2 usage. */
#ifndef ENVIROMON_IOTHUB_DEVICE_CLI_H
#define ENVIROMON_IOTHUB_DEVICE_CLI_H

/* argv[0] is the subcommand ("add", "list", ...). */
int iothub_device_cli(int argc, char **argv);

#endif
