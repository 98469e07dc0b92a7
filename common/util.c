/*
 * util: see util.h.
 */
#include "util.h"

#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <malloc.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n)
{
    log_error("out of memory allocating %zu bytes", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom(strlen(s));
    return p;
}

/*
 * glibc serves a block of 128 KiB or more from a mapping of its own, unmapped
 * when freed. After the first such free it raises that threshold to the
 * block's size, but it still trims the heap whenever twice that lies free at
 * its top. A datanode taking a few 1 MiB writes at once frees several
 * payloads together, so its heap shrinks and grows again with every burst
 * and each new buffer is faulted in and zeroed page by page. Measured with
 * keel-bench (libkeel, three replicas on one host, queue depth 4), 1 MiB
 * writes went at 162 MB/s with glibc's defaults and at 368 MB/s with freed
 * memory kept. What is kept is bounded by the peak in use, which a datanode
 * bounds with --max-inflight and libkeel's write-behind with its 16 MiB per
 * file.
 */
void keep_freed_memory(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mono_ms(void)
{
    return mono_ns() / 1000000u;
}

/* Parses a decimal number and returns the unit suffix that follows it. */
static int parse_num(const char *s, uint64_t *num, const char **unit)
{
    char *end;

    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    *num = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    *unit = end;
    return 0;
}

static int scale(uint64_t num, uint64_t mul, uint64_t *out)
{
    if (mul && num > UINT64_MAX / mul)
        return -ERANGE;
    *out = num * mul;
    return 0;
}

int parse_uint(const char *s, uint64_t *out)
{
    const char *unit;
    uint64_t num;
    int r = parse_num(s, &num, &unit);

    if (r == 0 && *unit)
        r = -EINVAL;
    if (r == 0)
        *out = num;
    return r;
}

int parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {{"", 1},           {"b", 1},
                 {"k", 1ull << 10}, {"kib", 1ull << 10},
                 {"m", 1ull << 20}, {"mib", 1ull << 20},
                 {"g", 1ull << 30}, {"gib", 1ull << 30},
                 {"t", 1ull << 40}, {"tib", 1ull << 40}};
    const char *unit;
    uint64_t num;
    int r = parse_num(s, &num, &unit);

    if (r)
        return r;
    for (size_t i = 0; i < ARRAY_SIZE(units); i++)
        if (strcasecmp(unit, units[i].suffix) == 0)
            return scale(num, units[i].mul, out);
    return -EINVAL;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    const char *unit;
    uint64_t num;
    int r = parse_num(s, &num, &unit);

    if (r)
        return r;
    for (size_t i = 0; i < ARRAY_SIZE(units); i++)
        if (strcmp(unit, units[i].suffix) == 0)
            return scale(num, units[i].mul, out);
    return -EINVAL;
}

int parse_addr(const char *s, struct sockaddr_in *out)
{
    char host[256];
    const char *colon;
    uint64_t port;
    const char *unit;
    size_t hlen;
    struct sockaddr_in sa;

    if (!s || !(colon = strrchr(s, ':')))
        return -EINVAL;
    hlen = (size_t)(colon - s);
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    if (parse_num(colon + 1, &port, &unit) || *unit || port > 65535)
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;

        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
            return -EINVAL;
        sa.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
        freeaddrinfo(res);
    }
    *out = sa;
    return 0;
}

void format_addr(const struct sockaddr_in *sa, char *buf, size_t len)
{
    char ip[INET_ADDRSTRLEN];

    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
    snprintf(buf, len, "%s:%u", ip, ntohs(sa->sin_port));
}

uint64_t random_u64(void)
{
    uint64_t v = 0;

    while (v == 0) {
        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
            v = mono_ns() ^ ((uint64_t)getpid() << 32);
    }
    return v;
}

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    int fd, r = 0;

    if (!copy)
        return -ENOMEM;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        r = -errno;
    if (fd >= 0)
        close(fd);
    free(copy);
    return r;
}

int write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    const char *p = data;
    int fd, r = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto out;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) < 0) {
        r = -errno;
        goto out;
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        goto out;
    }
    r = fsync_dir_of(path);
out:
    close(fd);
    if (r)
        unlink(tmp);
    return r;
}

int read_file(const char *path, char **out, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    size_t have = 0;
    int fd, r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (st.st_size > (1 << 24)) {
        r = -EFBIG;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    while (have < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + have, (size_t)st.st_size - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    buf[have] = '\0';
    *out = buf;
    if (len)
        *len = have;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return r;
}
