/*
 * io-trace: random reads or writes on one file from one keel_client (as one
 * VMM would do them), with one line per interval, so that a script can see
 * how the throughput changes while something happens to the cluster
 * (bench/recovery: a datanode dies and is re-replicated).
 *
 *   io-trace --namenode A --path P --rw randread|randwrite [--bs 64K]
 *            [--threads 4] [--interval 500ms] [--stop-file F] [--seconds 3600]
 *
 * The file must exist and hold at least one block. Each of --threads
 * threads issues synchronous keel_pread or keel_pwrite calls of --bs bytes
 * at random --bs-aligned offsets below the file's size. Every --interval,
 * one line on stdout:
 *
 *   WALL_MS OPS BYTES P50_US P99_US MAX_US ERRORS
 *
 * WALL_MS is the interval's end (CLOCK_REALTIME, milliseconds, as `date
 * +%s%3N` prints it); the latencies are those of the operations that ended
 * in the interval (percentiles over at most 65,536 of them). It stops when
 * the --stop-file exists, after --seconds, or on SIGINT or SIGTERM; writes
 * are flushed at the end. Exit status 1 if any operation failed. libkeel's
 * warnings go to stderr, and with KEEL_BENCH_DEBUG set in the environment
 * its info lines too, each after the wall time in milliseconds.
 */
#include "flags.h"
#include "keel.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES 65536u
#define MAX_THREADS 256u

static struct {
    const char *namenode, *path, *rw, *stop_file;
    uint64_t bs, threads, interval_ms, seconds;
} A = {NULL, NULL, "randread", NULL, 64u << 10, 4, 500, 3600};

static keel_file *file;
static uint64_t nblocks;
static bool writing;
static atomic_bool stop;
static volatile sig_atomic_t signalled;

/* The current interval's counts, under lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t ops, bytes, errors, total_errors;
static uint32_t samples[MAX_SAMPLES];
static size_t nsamples;
static uint32_t max_us;

static void log_line(int level, const char *line, void *arg)
{
    struct timespec ts;

    (void)level;
    (void)arg;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(stderr, "%" PRIu64 " %s\n", (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
            line);
}

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 7919 + mono_ns();
    void *buf = malloc(A.bs);

    if (!buf)
        return NULL;
    memset(buf, 0x5a, A.bs);
    while (!atomic_load(&stop)) {
        uint64_t off = rng(&seed) % nblocks * A.bs, t0 = mono_ns(), us;
        ssize_t n = writing ? keel_pwrite(file, buf, A.bs, off) : keel_pread(file, buf, A.bs, off);

        us = (mono_ns() - t0) / 1000;
        pthread_mutex_lock(&lock);
        if (n < 0) {
            errors++;
            total_errors++;
        } else {
            ops++;
            bytes += (uint64_t)n;
            if (nsamples < MAX_SAMPLES)
                samples[nsamples++] = (uint32_t)MIN(us, UINT32_MAX);
            max_us = MAX(max_us, (uint32_t)MIN(us, UINT32_MAX));
        }
        pthread_mutex_unlock(&lock);
    }
    free(buf);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Prints the interval that just ended and starts the next. */
static void emit(void)
{
    static uint32_t sorted[MAX_SAMPLES];
    uint64_t o, b, e;
    uint32_t mx;
    size_t n;

    pthread_mutex_lock(&lock);
    o = ops;
    b = bytes;
    e = errors;
    mx = max_us;
    n = nsamples;
    memcpy(sorted, samples, n * sizeof(*sorted));
    ops = bytes = errors = 0;
    nsamples = 0;
    max_us = 0;
    pthread_mutex_unlock(&lock);
    qsort(sorted, n, sizeof(*sorted), cmp_u32);
    printf("%" PRIu64 " %" PRIu64 " %" PRIu64 " %u %u %u %" PRIu64 "\n", wall_ms(), o, b,
           n ? sorted[n / 2] : 0, n ? sorted[(size_t)((double)(n - 1) * 0.99)] : 0, mx, e);
    fflush(stdout);
}

static void on_signal(int sig)
{
    signalled = sig;
}

int main(int argc, char **argv)
{
    const struct flag flags[] = {
        {"namenode", FLAG_ADDR, &A.namenode, "namenode address (default: $KEEL_NAMENODE)"},
        {"path", FLAG_STRING, &A.path, "the file (it must exist)"},
        {"rw", FLAG_STRING, &A.rw, "randread or randwrite"},
        {"bs", FLAG_SIZE, &A.bs, "bytes per operation"},
        {"threads", FLAG_UINT, &A.threads, "threads issuing synchronous operations"},
        {"interval", FLAG_DURATION, &A.interval_ms, "how often a line is printed"},
        {"stop-file", FLAG_STRING, &A.stop_file, "stop once this file exists"},
        {"seconds", FLAG_UINT, &A.seconds, "stop after this long in any case"},
    };
    const struct flags_spec spec = {
        .prog = "io-trace",
        .usage = "--namenode A --path P --rw randread|randwrite [--bs 64K] [--threads 4] "
                 "[--interval 500ms] [--stop-file F] [--seconds 3600]",
        .about = "Random reads or writes on one file from one client, with one line of "
                 "throughput and latency per interval (bench/recovery).",
        .flags = flags,
        .nflags = (int)ARRAY_SIZE(flags),
    };
    pthread_t th[MAX_THREADS];
    struct keel_options o;
    struct keel_stat st;
    keel_client *c = NULL;
    uint64_t end_ms;
    int first, r = flags_parse(&spec, argc, argv, &first);

    if (r)
        return r > 0 ? 0 : 2;
    writing = strcmp(A.rw, "randwrite") == 0;
    if (first != argc || !A.path || (!writing && strcmp(A.rw, "randread") != 0) || A.bs == 0 ||
        A.bs > (64u << 20) || A.threads == 0 || A.threads > MAX_THREADS || A.interval_ms == 0) {
        fprintf(stderr, "io-trace: --path is required; --rw randread or randwrite; --bs up to "
                        "64M; --threads 1..256; --interval above 0 (see --help)\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    keel_options_init(&o);
    o.client_name = "io-trace";
    o.log_fn = log_line;
    o.log_level = getenv("KEEL_BENCH_DEBUG") ? KEEL_LOG_INFO : KEEL_LOG_WARN;
    r = keel_connect(A.namenode, &o, &c);
    if (r == 0)
        r = keel_stat(c, A.path, &st);
    if (r == 0)
        r = keel_open(c, A.path, writing ? KEEL_O_RDWR : KEEL_O_READ, NULL, &file);
    if (r) {
        fprintf(stderr, "io-trace: %s: %s\n", A.path, keel_strerror(r));
        if (c)
            keel_disconnect(c);
        return 1;
    }
    nblocks = st.size / A.bs;
    if (nblocks == 0) {
        fprintf(stderr, "io-trace: %s holds less than one block\n", A.path);
        keel_close(file);
        keel_disconnect(c);
        return 1;
    }
    for (uint64_t i = 0; i < A.threads; i++)
        pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    end_ms = mono_ms() + A.seconds * 1000;
    while (!signalled && mono_ms() < end_ms && !(A.stop_file && access(A.stop_file, F_OK) == 0)) {
        usleep((useconds_t)A.interval_ms * 1000);
        emit();
    }
    atomic_store(&stop, true);
    for (uint64_t i = 0; i < A.threads; i++)
        pthread_join(th[i], NULL);
    if (writing && keel_flush(file))
        total_errors++;
    keel_close(file);
    keel_disconnect(c);
    return total_errors ? 1 : 0;
}
