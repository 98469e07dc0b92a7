/*
 * util: small helpers every process needs: clocks, parsing of sizes,
 * durations and addresses, random ids, and the daemons' allocator.
 */
#ifndef KEEL_UTIL_H
#define KEEL_UTIL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/*
 * Daemon allocator: aborts with a log line when memory runs out. The client
 * library must not use these; it returns -ENOMEM instead.
 */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/*
 * For processes that allocate and free buffers of a MiB or more at the rate
 * requests arrive (a datanode's payloads, keel-fuse's requests): keep freed
 * memory for the next buffer instead of handing it back to the kernel. See
 * util.c.
 */
void keep_freed_memory(void);

/* Wall clock in nanoseconds since the epoch. */
int64_t now_ns(void);
/* Monotonic clock in milliseconds and nanoseconds. */
uint64_t mono_ms(void);
uint64_t mono_ns(void);

/* "4096" -> 4096: decimal digits only. -EINVAL if malformed or too large. */
int parse_uint(const char *s, uint64_t *out);
/* "64M", "4k", "1G", "4096" -> bytes (binary units). -EINVAL if malformed. */
int parse_size(const char *s, uint64_t *out);
/* "30s", "500ms", "2m", "1h", "250" (milliseconds) -> milliseconds. */
int parse_duration_ms(const char *s, uint64_t *out);
/*
 * "host:port" (IPv4 literal or a name that resolves to one) -> sockaddr_in.
 * Port 0 is allowed (pick a free port when listening). -EINVAL if malformed.
 */
int parse_addr(const char *s, struct sockaddr_in *out);
/* Formats an address as "a.b.c.d:port" into buf. */
void format_addr(const struct sockaddr_in *sa, char *buf, size_t len);

/* 64 random bits from the system's entropy source (never 0). */
uint64_t random_u64(void);

/* Writes len bytes to path atomically: temp file, fsync, rename, fsync dir. */
int write_file_atomic(const char *path, const void *data, size_t len);
/* Reads a whole small file into a NUL-terminated malloc'd buffer (*out). */
int read_file(const char *path, char **out, size_t *len);

#endif
