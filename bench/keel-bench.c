/*
 * keel-bench: reads and writes through libkeel directly, so the cost of
 * Keel itself can be seen apart from FUSE's.
 *
 *   keel-bench --namenode A --rw write|read|randwrite|randread [--bs 1M] [--size 1G]
 *              [--threads N | --depth Q] [--seconds S] [--path /keel-bench] [--fsync N]
 *              [--fanout-max BYTES] [--poll-us N]
 *
 * --threads N runs N threads of synchronous calls; --depth Q keeps Q
 * asynchronous requests in flight from one thread. Sequential jobs cover
 * --size once (or loop until --seconds); random jobs run for --seconds
 * (default 10). Prints one line: MB/s, IOPS, and latency percentiles in
 * microseconds (of each --fsync flush too), or with --json one JSON object.
 * --fanout-max sets keel_options.fanout_max (0: every write down the chain),
 * --poll-us keel_options.poll_us (default 0, libkeel's).
 */
#include "keel.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SAMPLES (1u << 20)

static struct {
    const char *namenode, *path, *rw;
    uint64_t bs, size, seconds, threads, depth, fsync_every;
    int64_t fanout_max; /* -1: libkeel's default */
    uint64_t poll_us;
    bool json;
} A = {NULL, "/keel-bench", "write", 1u << 20, 1u << 30, 0, 1, 0, 0, -1, 0, false};

static keel_file *file;

static void log_line(int level, const char *line, void *arg)
{
    fprintf(stderr, "%s\n", line);
}
static uint64_t deadline_ms, next_off, ops, bytes;
static int failures;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Latency samples, in microseconds. */
struct samples {
    uint32_t *us;
    size_t n;
};
static struct samples lat, flush_lat; /* of each read or write; of each --fsync flush */

static bool is_write(void)
{
    return strstr(A.rw, "write") != NULL;
}

static bool is_random(void)
{
    return strncmp(A.rw, "rand", 4) == 0;
}

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The next offset, or UINT64_MAX when the job is over. */
static uint64_t take_offset(uint64_t *seed)
{
    uint64_t off = UINT64_MAX, blocks = A.size / A.bs;

    pthread_mutex_lock(&lock);
    if (mono_ms() < deadline_ms || (!A.seconds && !is_random() && next_off < A.size)) {
        if (is_random()) {
            off = (rng(seed) % blocks) * A.bs;
        } else {
            if (next_off >= A.size) {
                if (!A.seconds) {
                    pthread_mutex_unlock(&lock);
                    return UINT64_MAX;
                }
                next_off = 0;
            }
            off = next_off;
            next_off += A.bs;
        }
    }
    pthread_mutex_unlock(&lock);
    return off;
}

/* Under lock. */
static void sample(struct samples *s, uint64_t start_ns)
{
    uint64_t us = (mono_ns() - start_ns) / 1000;

    if (s->n < MAX_SAMPLES)
        s->us[s->n++] = (uint32_t)MIN(us, UINT32_MAX);
}

static void record(uint64_t start_ns, ssize_t r)
{
    pthread_mutex_lock(&lock);
    if (r == (ssize_t)A.bs) {
        ops++;
        bytes += A.bs;
        sample(&lat, start_ns);
    } else {
        failures++;
    }
    pthread_mutex_unlock(&lock);
}

static void *sync_worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg + 1, off, n = 0;
    uint8_t *buf = malloc(A.bs);

    memset(buf, 0x5a, A.bs);
    while ((off = take_offset(&seed)) != UINT64_MAX) {
        uint64_t t = mono_ns();
        ssize_t r =
            is_write() ? keel_pwrite(file, buf, A.bs, off) : keel_pread(file, buf, A.bs, off);

        record(t, r);
        if (is_write() && A.fsync_every && ++n % A.fsync_every == 0) {
            int fr;

            t = mono_ns();
            fr = keel_flush(file);
            pthread_mutex_lock(&lock);
            if (fr) {
                fprintf(stderr, "keel-bench: flush: %s\n", keel_strerror(fr));
                failures++;
            } else {
                sample(&flush_lat, t);
            }
            pthread_mutex_unlock(&lock);
        }
    }
    free(buf);
    return NULL;
}

struct slot {
    keel_aio *aio;
    uint8_t *buf;
    uint64_t start;
};

static void run_async(void)
{
    struct slot *s = calloc(A.depth, sizeof(*s));
    uint64_t seed = 99, off;
    bool more = true;
    size_t busy = 0;

    for (size_t i = 0; i < A.depth; i++) {
        s[i].buf = malloc(A.bs);
        memset(s[i].buf, 0x5a, A.bs);
        keel_aio_create(NULL, NULL, &s[i].aio);
    }
    for (size_t i = 0; more || busy; i = (i + 1) % A.depth) {
        if (s[i].start) {
            keel_aio_wait(s[i].aio, -1);
            record(s[i].start, keel_aio_result(s[i].aio));
            s[i].start = 0;
            busy--;
        }
        if (!more)
            continue;
        off = take_offset(&seed);
        if (off == UINT64_MAX) {
            more = false;
            continue;
        }
        s[i].start = mono_ns();
        if ((is_write() ? keel_aio_pwrite(file, s[i].buf, A.bs, off, s[i].aio)
                        : keel_aio_pread(file, s[i].buf, A.bs, off, s[i].aio)) != 0) {
            failures++;
            s[i].start = 0;
            continue;
        }
        busy++;
    }
    for (size_t i = 0; i < A.depth; i++) {
        keel_aio_release(s[i].aio);
        free(s[i].buf);
    }
    free(s);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* After qsort of s->us. */
static uint32_t pct(const struct samples *s, double p)
{
    return s->n ? s->us[(size_t)((double)(s->n - 1) * p)] : 0;
}

/* ", flush p50 X us, p99 Y us" when there were --fsync flushes. */
static const char *flush_text(void)
{
    static char text[96];

    if (!flush_lat.n)
        return "";
    snprintf(text, sizeof(text), ", flush p50 %u us, p99 %u us", pct(&flush_lat, 0.5),
             pct(&flush_lat, 0.99));
    return text;
}

int main(int argc, char **argv)
{
    struct keel_options o;
    keel_client *c;
    uint64_t t0, ms;
    int r;

    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        uint64_t n = 0;

        if (strcmp(k, "--json") == 0) {
            A.json = true;
            continue;
        }
        if (strcmp(k, "--help") == 0) {
            printf("usage: keel-bench --namenode A --rw write|read|randwrite|randread [--bs 1M]\n"
                   "       [--size 1G] [--threads N | --depth Q] [--seconds S] [--path P]\n"
                   "       [--fsync N] [--fanout-max BYTES] [--poll-us N] [--json]\n");
            return 0;
        }
        i++;
        if (strcmp(k, "--namenode") == 0)
            A.namenode = v;
        else if (strcmp(k, "--path") == 0)
            A.path = v;
        else if (strcmp(k, "--rw") == 0)
            A.rw = v;
        else if (parse_size(v, &n)) {
            fprintf(stderr, "keel-bench: bad value '%s' for %s\n", v, k);
            return 2;
        } else if (strcmp(k, "--bs") == 0)
            A.bs = n;
        else if (strcmp(k, "--size") == 0)
            A.size = n;
        else if (strcmp(k, "--seconds") == 0)
            A.seconds = n;
        else if (strcmp(k, "--threads") == 0)
            A.threads = n;
        else if (strcmp(k, "--depth") == 0)
            A.depth = n;
        else if (strcmp(k, "--fsync") == 0)
            A.fsync_every = n;
        else if (strcmp(k, "--fanout-max") == 0)
            A.fanout_max = (int64_t)MIN(n, UINT32_MAX);
        else if (strcmp(k, "--poll-us") == 0)
            A.poll_us = n;
        else {
            fprintf(stderr, "keel-bench: unknown flag %s (see --help)\n", k);
            return 2;
        }
    }
    if (A.bs == 0 || A.size < A.bs || A.threads == 0 || A.threads > 256 || A.depth > 4096) {
        fprintf(stderr, "keel-bench: bad sizes (see --help)\n");
        return 2;
    }
    if (is_random() && !A.seconds)
        A.seconds = 10;
    keel_options_init(&o);
    o.client_name = "keel-bench";
    if (A.fanout_max >= 0)
        o.fanout_max = (uint32_t)A.fanout_max;
    o.poll_us = (uint32_t)MIN(A.poll_us, UINT32_MAX);
    o.log_fn = log_line; /* warnings and errors, on stderr */
    o.log_level = getenv("KEEL_BENCH_DEBUG") ? KEEL_LOG_INFO : KEEL_LOG_WARN;
    r = keel_connect(A.namenode, &o, &c);
    if (r) {
        fprintf(stderr, "keel-bench: connect: %s\n", keel_strerror(r));
        return 1;
    }
    r = keel_open(c, A.path, KEEL_O_RDWR | KEEL_O_CREATE, NULL, &file);
    if (r) {
        fprintf(stderr, "keel-bench: open %s: %s\n", A.path, keel_strerror(r));
        keel_disconnect(c);
        return 1;
    }
    if (!is_write()) {
        /* Reads cover the file as it is: past its end they would be short. */
        struct keel_stat st;

        if (keel_fstat(file, &st) == 0 && st.size < A.size)
            A.size = st.size / A.bs * A.bs;
        if (A.size < A.bs) {
            fprintf(stderr, "keel-bench: %s holds less than one block: write it first\n", A.path);
            keel_close(file);
            keel_disconnect(c);
            return 1;
        }
    }
    lat.us = malloc(MAX_SAMPLES * sizeof(*lat.us));
    flush_lat.us = malloc(MAX_SAMPLES * sizeof(*flush_lat.us));
    if (!lat.us || !flush_lat.us) {
        fprintf(stderr, "keel-bench: out of memory\n");
        return 1;
    }
    t0 = mono_ms();
    deadline_ms = A.seconds ? t0 + A.seconds * 1000 : 0;
    if (A.depth) {
        run_async();
    } else {
        pthread_t th[256];
        for (uint64_t i = 0; i < A.threads; i++)
            pthread_create(&th[i], NULL, sync_worker, (void *)(uintptr_t)i);
        for (uint64_t i = 0; i < A.threads; i++)
            pthread_join(th[i], NULL);
    }
    if (is_write() && keel_flush(file))
        failures++;
    ms = MAX(mono_ms() - t0, 1);
    qsort(lat.us, lat.n, sizeof(*lat.us), cmp_u32);
    qsort(flush_lat.us, flush_lat.n, sizeof(*flush_lat.us), cmp_u32);
    if (A.json)
        printf("{\"rw\":\"%s\",\"bs\":%" PRIu64 ",\"threads\":%" PRIu64 ",\"depth\":%" PRIu64
               ",\"mb_s\":%.1f,\"iops\":%.0f,\"p50_us\":%u,\"p99_us\":%u,\"flush_p50_us\":%u,"
               "\"flush_p99_us\":%u,\"errors\":%d}\n",
               A.rw, A.bs, A.threads, A.depth, (double)bytes / 1048576.0 / ((double)ms / 1000),
               (double)ops / ((double)ms / 1000), pct(&lat, 0.5), pct(&lat, 0.99),
               pct(&flush_lat, 0.5), pct(&flush_lat, 0.99), failures);
    else
        printf("%s bs=%" PRIu64 " %s=%" PRIu64 ": %.1f MB/s, %.0f IOPS, latency p50 %u us, p99 "
               "%u us%s, %d errors\n",
               A.rw, A.bs, A.depth ? "depth" : "threads", A.depth ? A.depth : A.threads,
               (double)bytes / 1048576.0 / ((double)ms / 1000), (double)ops / ((double)ms / 1000),
               pct(&lat, 0.5), pct(&lat, 0.99), flush_text(), failures);
    free(lat.us);
    free(flush_lat.us);
    keel_close(file);
    keel_disconnect(c);
    return failures ? 1 : 0;
}
