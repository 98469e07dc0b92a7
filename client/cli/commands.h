/*
 * commands: the keel CLI's subcommands, one function each, listed in a
 * table {name, usage, summary, function}. Each returns the process exit
 * code: 0 success, 1 the operation failed (or fsck found a problem), 2 bad
 * usage.
 */
#ifndef KEEL_CLI_COMMANDS_H
#define KEEL_CLI_COMMANDS_H

#include "keel.h"
#include "output.h"

#include <stdbool.h>

struct cli {
    keel_client *c;
    bool json;
    struct json j;
    const char *namenode;
};

struct command {
    const char *name;
    const char *usage;
    const char *summary;
    int (*run)(struct cli *cli, int argc, char **argv);
    bool needs_client;
};

extern const struct command commands[];
extern const int ncommands;

#endif
