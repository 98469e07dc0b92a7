/*
 * flags: see flags.h.
 */
#include "flags.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *metavar(enum flag_type t)
{
    switch (t) {
    case FLAG_BOOL:
        return "";
    case FLAG_UINT:
        return " N";
    case FLAG_SIZE:
        return " SIZE";
    case FLAG_DURATION:
        return " TIME";
    case FLAG_ADDR:
        return " HOST:PORT";
    case FLAG_LOGLEVEL:
        return " LEVEL";
    default:
        return " VALUE";
    }
}

static void format_default(const struct flag *f, char *buf, size_t len)
{
    buf[0] = '\0';
    switch (f->type) {
    case FLAG_STRING:
    case FLAG_ADDR:
        if (*(const char **)f->dst)
            snprintf(buf, len, " (default %s)", *(const char **)f->dst);
        break;
    case FLAG_UINT:
        snprintf(buf, len, " (default %" PRIu64 ")", *(uint64_t *)f->dst);
        break;
    case FLAG_SIZE:
        snprintf(buf, len, " (default %" PRIu64 " bytes)", *(uint64_t *)f->dst);
        break;
    case FLAG_DURATION:
        snprintf(buf, len, " (default %" PRIu64 "ms)", *(uint64_t *)f->dst);
        break;
    case FLAG_LOGLEVEL: {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        snprintf(buf, len, " (default %s)", names[*(enum log_level *)f->dst]);
        break;
    }
    default:
        break;
    }
}

void flags_usage(const struct flags_spec *spec)
{
    printf("usage: %s %s\n", spec->prog, spec->usage);
    if (spec->about)
        printf("\n%s\n", spec->about);
    printf("\noptions:\n");
    for (int i = 0; i < spec->nflags; i++) {
        const struct flag *f = &spec->flags[i];
        char left[64], def[96];

        snprintf(left, sizeof(left), "--%s%s", f->name, metavar(f->type));
        format_default(f, def, sizeof(def));
        printf("  %-26s %s%s\n", left, f->help, def);
    }
    printf("  %-26s %s\n", "--help", "show this help and exit");
}

static int set_value(const struct flags_spec *spec, const struct flag *f, const char *v)
{
    int r = 0;

    switch (f->type) {
    case FLAG_STRING:
        *(const char **)f->dst = v;
        break;
    case FLAG_ADDR: {
        struct sockaddr_in sa;
        r = parse_addr(v, &sa);
        if (r == 0)
            *(const char **)f->dst = v;
        break;
    }
    case FLAG_UINT:
        r = parse_uint(v, (uint64_t *)f->dst);
        break;
    case FLAG_SIZE:
        r = parse_size(v, (uint64_t *)f->dst);
        break;
    case FLAG_DURATION:
        r = parse_duration_ms(v, (uint64_t *)f->dst);
        break;
    case FLAG_LOGLEVEL:
        r = log_parse_level(v, (enum log_level *)f->dst);
        break;
    default:
        r = -EINVAL;
    }
    if (r)
        fprintf(stderr, "%s: bad value '%s' for --%s (see --help)\n", spec->prog, v, f->name);
    return r ? -EINVAL : 0;
}

int flags_parse(const struct flags_spec *spec, int argc, char **argv, int *first_arg)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *name, *eq, *value = NULL;
        const struct flag *f = NULL;
        size_t nlen;

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (spec->stop_at_positional)
                break;
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", spec->prog, a);
            return -EINVAL;
        }
        if (strcmp(a, "--help") == 0) {
            flags_usage(spec);
            return 1;
        }
        name = a + 2;
        eq = strchr(name, '=');
        nlen = eq ? (size_t)(eq - name) : strlen(name);
        for (int k = 0; k < spec->nflags; k++) {
            if (strlen(spec->flags[k].name) == nlen &&
                strncmp(spec->flags[k].name, name, nlen) == 0) {
                f = &spec->flags[k];
                break;
            }
        }
        if (!f) {
            fprintf(stderr, "%s: unknown flag '%.*s' (see --help)\n", spec->prog, (int)(nlen + 2),
                    a);
            return -EINVAL;
        }
        if (f->type == FLAG_BOOL) {
            if (eq) {
                fprintf(stderr, "%s: --%s takes no value\n", spec->prog, f->name);
                return -EINVAL;
            }
            *(bool *)f->dst = true;
            continue;
        }
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "%s: --%s needs a value (see --help)\n", spec->prog, f->name);
            return -EINVAL;
        }
        if (set_value(spec, f, value))
            return -EINVAL;
    }
    *first_arg = i;
    return 0;
}
