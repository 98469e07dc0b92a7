/*
 * log: formats a line in a stack buffer and emits it with one write(2), so
 * lines from several threads never interleave.
 */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char prog[32] = "keel";
static _Atomic int cur_level = LOG_INFO;
static log_sink_fn sink;
static void *sink_arg;

static const char *const names[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

void log_init(const char *name, enum log_level level)
{
    snprintf(prog, sizeof(prog), "%s", name);
    cur_level = level;
}

void log_set_level(enum log_level level)
{
    cur_level = level;
}

enum log_level log_get_level(void)
{
    return (enum log_level)cur_level;
}

void log_set_sink(log_sink_fn fn, void *arg)
{
    sink = fn;
    sink_arg = arg;
}

int log_parse_level(const char *s, enum log_level *out)
{
    static const char *const lower[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, lower[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -22; /* -EINVAL without dragging errno.h into a header user */
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int r;

    if ((int)level > cur_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s: ", ts.tv_nsec / 1000000,
                 names[level], prog);
    if (r > 0)
        n += (size_t)r;
    r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (r > 0)
        n += (size_t)r < sizeof(line) - n - 1 ? (size_t)r : sizeof(line) - n - 2;
    if (sink) {
        line[n] = '\0';
        sink(level, line, sink_arg);
        return;
    }
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* Nowhere left to report a failure to report. */
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
