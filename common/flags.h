/*
 * flags: declarative command-line parsing with --help for every program.
 *
 * A program describes its flags in a table; flags_parse fills the targets,
 * prints usage for --help, and reports an unknown or malformed flag in one
 * line. Both "--name value" and "--name=value" are accepted; "--" ends the
 * flags. Parsing stops at the first positional argument when the table's
 * caller asks (so "keel --json ls -l /" hands "ls -l /" to the subcommand).
 */
#ifndef KEEL_FLAGS_H
#define KEEL_FLAGS_H

#include <stdbool.h>
#include <stdint.h>

enum flag_type {
    FLAG_BOOL,     /* bool *: set to true, takes no value */
    FLAG_STRING,   /* const char **: points into argv */
    FLAG_UINT,     /* uint64_t *: decimal */
    FLAG_SIZE,     /* uint64_t *: bytes, "64M" */
    FLAG_DURATION, /* uint64_t *: milliseconds, "30s" */
    FLAG_ADDR,     /* const char **: "host:port", checked */
    FLAG_LOGLEVEL, /* enum log_level *: error|warn|info|debug */
};

struct flag {
    const char *name; /* without the leading "--" */
    enum flag_type type;
    void *dst;
    const char *help;
};

struct flags_spec {
    const char *prog;     /* program name, for messages */
    const char *usage;    /* e.g. "--meta DIR [--format] [options]" */
    const char *about;    /* one paragraph printed by --help */
    const struct flag *flags;
    int nflags;
    bool stop_at_positional;
};

/*
 * Parses argv[1..argc). On success returns 0 and sets *first_arg to the index
 * of the first argument that is not a flag (argc if none). Returns 1 after
 * printing help to stdout (the caller exits 0), or -EINVAL after printing a
 * one-line error to stderr (the caller exits 2).
 */
int flags_parse(const struct flags_spec *spec, int argc, char **argv, int *first_arg);

/* Prints the usage and flag table to stdout. */
void flags_usage(const struct flags_spec *spec);

#endif
