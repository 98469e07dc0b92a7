/*
 * log: one line per event, with a timestamp and a level.
 *
 *   2026-11-25T13:14:03.123Z INFO  namenode: datanode 3 registered (127.0.0.1:40111, domain a)
 *
 * Daemons log to stderr. The client library routes lines to a callback its
 * caller sets (or drops them), so it never writes to a caller's stdio.
 * Thread-safe: each line is formatted whole and emitted in one write.
 */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Receives a formatted line without its newline. */
typedef void (*log_sink_fn)(enum log_level level, const char *line, void *arg);

/* Sets the program name put on each line and the most verbose level shown. */
void log_init(const char *name, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* NULL restores stderr. */
void log_set_sink(log_sink_fn fn, void *arg);
/* "error", "warn", "info", "debug" -> level; -EINVAL if unknown. */
int log_parse_level(const char *s, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_DEBUG)                                                          \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

#endif
