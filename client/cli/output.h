/*
 * output: the keel CLI's machine-readable output, a small streaming JSON
 * writer (objects, arrays, strings escaped), plus human helpers (sizes,
 * times, the progress bar).
 */
#ifndef KEEL_CLI_OUTPUT_H
#define KEEL_CLI_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json {
    FILE *f;
    int depth;
    bool first[JSON_MAX_DEPTH];
};

void json_init(struct json *j, FILE *f);
/* key is NULL inside arrays and at the top level. */
void json_begin(struct json *j, const char *key);       /* { */
void json_end(struct json *j);                          /* } */
void json_begin_array(struct json *j, const char *key); /* [ */
void json_end_array(struct json *j);                    /* ] */
void json_str(struct json *j, const char *key, const char *v);
void json_u64(struct json *j, const char *key, uint64_t v);
void json_i64(struct json *j, const char *key, int64_t v);
void json_bool(struct json *j, const char *key, bool v);
/* Ends the document with a newline. */
void json_done(struct json *j);

/* "1.5 GiB" style, into buf. */
const char *human_size(uint64_t bytes, char *buf, size_t len);
/* "2026-11-25 13:14" (local time) from nanoseconds, into buf. */
const char *human_time(int64_t ns, char *buf, size_t len);

/* A progress bar on stderr, drawn only when enabled. */
struct progress {
    bool on;
    uint64_t total;
    uint64_t done;
    uint64_t start_ms;
    uint64_t last_ms;
};
void progress_start(struct progress *p, bool on, uint64_t total);
void progress_update(struct progress *p, uint64_t done);
void progress_end(struct progress *p);

#endif
