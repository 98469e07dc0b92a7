/*
 * keel: the command-line tool for users and operators of a Keel cluster.
 * Parses the global flags, connects, and runs one subcommand (commands.c).
 */
#include "commands.h"
#include "flags.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void log_to_stderr(int level, const char *line, void *arg)
{
    fprintf(stderr, "%s\n", line);
}

static void usage_commands(void)
{
    printf("\ncommands:\n");
    for (int i = 0; i < ncommands; i++) {
        char left[64];

        snprintf(left, sizeof(left), "%s %s", commands[i].name, commands[i].usage);
        printf("  %-42s %s\n", left, commands[i].summary);
    }
}

int main(int argc, char **argv)
{
    const char *namenode = getenv("KEEL_NAMENODE");
    bool json = false;
    uint64_t timeout_ms = 10000, retry_ms = 30000;
    enum log_level level = LOG_WARN;
    struct flag f[] = {
        {"namenode", FLAG_ADDR, &namenode, "namenode address (or KEEL_NAMENODE)"},
        {"json", FLAG_BOOL, &json, "machine-readable output"},
        {"timeout", FLAG_DURATION, &timeout_ms, "timeout of one request"},
        {"retry", FLAG_DURATION, &retry_ms, "how long to retry an unreachable namenode"},
        {"log-level", FLAG_LOGLEVEL, &level, "error, warn, info or debug"},
    };
    struct flags_spec spec = {"keel",
                              "[options] COMMAND [ARGS...]",
                              "Uses a Keel cluster: files, chunks and datanodes.",
                              f,
                              (int)(sizeof(f) / sizeof(f[0])),
                              true};
    struct keel_options o;
    struct cli cli = {0};
    const struct command *cmd = NULL;
    int first, r;

    if (!namenode || !*namenode)
        namenode = "127.0.0.1:7420";
    r = flags_parse(&spec, argc, argv, &first);
    if (r == 1) {
        usage_commands();
        return 0;
    }
    if (r < 0)
        return 2;
    if (first >= argc) {
        fprintf(stderr, "keel: no command (see --help)\n");
        return 2;
    }
    for (int i = 0; i < ncommands; i++)
        if (strcmp(commands[i].name, argv[first]) == 0)
            cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "keel: unknown command '%s' (see --help)\n", argv[first]);
        return 2;
    }
    keel_options_init(&o);
    o.call_timeout_ms = (uint32_t)timeout_ms;
    o.retry_ms = (uint32_t)retry_ms;
    o.log_fn = log_to_stderr;
    o.log_level = (int)level;
    o.client_name = "keel";
    r = keel_connect(namenode, &o, &cli.c);
    if (r) {
        fprintf(stderr, "keel: cannot reach the namenode at %s: %s\n", namenode, keel_strerror(r));
        return 1;
    }
    cli.json = json;
    cli.namenode = namenode;
    json_init(&cli.j, stdout);
    r = cmd->run(&cli, argc - first - 1, argv + first + 1);
    keel_disconnect(cli.c);
    fflush(stdout);
    return r;
}
