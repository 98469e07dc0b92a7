/*
 * output: see output.h.
 */
#include "output.h"

#include "util.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

void json_init(struct json *j, FILE *f)
{
    memset(j, 0, sizeof(*j));
    j->f = f;
    j->first[0] = true;
}

static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void sep(struct json *j, const char *key)
{
    if (!j->first[j->depth])
        fputc(',', j->f);
    j->first[j->depth] = false;
    if (key) {
        put_string(j->f, key);
        fputc(':', j->f);
    }
}

static void open_(struct json *j, const char *key, char c)
{
    sep(j, key);
    fputc(c, j->f);
    if (j->depth + 1 < JSON_MAX_DEPTH)
        j->depth++;
    j->first[j->depth] = true;
}

void json_begin(struct json *j, const char *key)
{
    open_(j, key, '{');
}

void json_end(struct json *j)
{
    fputc('}', j->f);
    if (j->depth > 0)
        j->depth--;
}

void json_begin_array(struct json *j, const char *key)
{
    open_(j, key, '[');
}

void json_end_array(struct json *j)
{
    fputc(']', j->f);
    if (j->depth > 0)
        j->depth--;
}

void json_str(struct json *j, const char *key, const char *v)
{
    sep(j, key);
    put_string(j->f, v ? v : "");
}

void json_u64(struct json *j, const char *key, uint64_t v)
{
    sep(j, key);
    fprintf(j->f, "%" PRIu64, v);
}

void json_i64(struct json *j, const char *key, int64_t v)
{
    sep(j, key);
    fprintf(j->f, "%" PRId64, v);
}

void json_bool(struct json *j, const char *key, bool v)
{
    sep(j, key);
    fputs(v ? "true" : "false", j->f);
}

void json_done(struct json *j)
{
    fputc('\n', j->f);
    fflush(j->f);
}

const char *human_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;

    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

const char *human_time(int64_t ns, char *buf, size_t len)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;

    localtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M", &tm);
    return buf;
}

void progress_start(struct progress *p, bool on, uint64_t total)
{
    memset(p, 0, sizeof(*p));
    p->on = on;
    p->total = total;
    p->start_ms = mono_ms();
}

static void draw(struct progress *p)
{
    char a[32], b[32], r[32];
    uint64_t ms = mono_ms() - p->start_ms;
    unsigned pct = p->total ? (unsigned)(p->done * 100 / p->total) : 100;
    unsigned bars = pct * 30 / 100;
    char bar[31];

    memset(bar, '#', bars);
    memset(bar + bars, '.', 30 - bars);
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] %3u%% %s / %s  %s/s ", bar, pct, human_size(p->done, a, sizeof(a)),
            human_size(p->total, b, sizeof(b)),
            human_size(ms ? p->done * 1000 / ms : 0, r, sizeof(r)));
}

void progress_update(struct progress *p, uint64_t done)
{
    uint64_t now = mono_ms();

    p->done = done;
    if (!p->on || now - p->last_ms < 100)
        return;
    p->last_ms = now;
    draw(p);
}

void progress_end(struct progress *p)
{
    if (!p->on)
        return;
    draw(p);
    fputc('\n', stderr);
}
