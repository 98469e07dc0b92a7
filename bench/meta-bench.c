/*
 * meta-bench: metadata operations per second against the namenode, from
 * many clients at once.
 *
 *   meta-bench --namenode A [--clients 8] [--files 20000] [--dirs 10]
 *              [--path /meta-bench] [--json]
 *
 * Each client is a thread with its own keel_client (its own connection,
 * client id and I/O thread), as separate processes or mounts would be. The
 * tree is PATH/c<client>/d<dir>/f<file>: every client owns --dirs
 * directories and spreads its share of --files over them. The phases run
 * one after another, all clients starting each phase together:
 *
 *   mkdir   the tree (PATH, then each client's directories)
 *   create  keel_open(CREATE | EXCL) + keel_close of each file
 *   stat    keel_stat of each file
 *   unlink  keel_unlink of each file
 *   rmdir   the tree
 *
 * and each prints its operations per second (operations / wall time from
 * the common start to the last client's end) and the latency percentiles
 * of single operations, in microseconds. PATH must not exist. Every
 * operation must succeed: the exit status is 1 if any failed.
 */
#include "flags.h"
#include "keel.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLIENTS 1024u
#define PATH_LEN    512u

enum phase { PH_MKDIR, PH_CREATE, PH_STAT, PH_UNLINK, PH_RMDIR, NPHASES };

static const char *const phase_names[NPHASES] = {"mkdir", "create", "stat", "unlink", "rmdir"};

static struct {
    const char *namenode, *path;
    uint64_t clients, files, dirs;
    bool json;
} A = {NULL, "/meta-bench", 8, 20000, 10, false};

/* One client's share of the work and what it measured. */
struct worker {
    pthread_t th;
    unsigned idx;
    keel_client *c;
    int connect_err;
    uint64_t nfiles;          /* files this client owns */
    uint32_t *lat[NPHASES];   /* microseconds, one per operation */
    uint64_t nlat[NPHASES];   /* operations done (successful) */
    uint64_t errors[NPHASES]; /* failed operations */
    int first_err[NPHASES];   /* the first failure's errno */
    char first_path[NPHASES][PATH_LEN];
};

static struct worker *workers;
static pthread_barrier_t start_line, finish_line;
static uint64_t phase_start_ns[NPHASES], phase_end_ns[NPHASES];

static void file_path(char *buf, unsigned client, uint64_t i)
{
    snprintf(buf, PATH_LEN, "%s/c%u/d%" PRIu64 "/f%" PRIu64, A.path, client, i % A.dirs, i);
}

static void dir_path(char *buf, unsigned client, int64_t dir)
{
    if (dir < 0)
        snprintf(buf, PATH_LEN, "%s/c%u", A.path, client);
    else
        snprintf(buf, PATH_LEN, "%s/c%u/d%" PRId64, A.path, client, dir);
}

static void record(struct worker *w, enum phase p, uint64_t t0, int r, const char *path)
{
    uint64_t us = (mono_ns() - t0) / 1000;

    if (r == 0) {
        w->lat[p][w->nlat[p]++] = (uint32_t)MIN(us, UINT32_MAX);
        return;
    }
    if (w->errors[p]++ == 0) {
        w->first_err[p] = r;
        snprintf(w->first_path[p], PATH_LEN, "%s", path);
    }
}

static int create_one(keel_client *c, const char *path)
{
    keel_file *f;
    int r = keel_open(c, path, KEEL_O_RDWR | KEEL_O_CREATE | KEEL_O_EXCL, NULL, &f);

    if (r == 0)
        r = keel_close(f);
    return r;
}

static void run_phase(struct worker *w, enum phase p)
{
    char path[PATH_LEN];
    struct keel_stat st;
    uint64_t t0;
    int r;

    switch (p) {
    case PH_MKDIR:
        for (int64_t d = -1; d < (int64_t)A.dirs; d++) {
            dir_path(path, w->idx, d);
            t0 = mono_ns();
            record(w, p, t0, keel_mkdir(w->c, path, 0755), path);
        }
        break;
    case PH_RMDIR:
        for (int64_t d = (int64_t)A.dirs - 1; d >= -1; d--) {
            dir_path(path, w->idx, d);
            t0 = mono_ns();
            record(w, p, t0, keel_rmdir(w->c, path), path);
        }
        break;
    case PH_CREATE:
    case PH_STAT:
    case PH_UNLINK:
        for (uint64_t i = 0; i < w->nfiles; i++) {
            file_path(path, w->idx, i);
            t0 = mono_ns();
            if (p == PH_CREATE)
                r = create_one(w->c, path);
            else if (p == PH_STAT)
                r = keel_stat(w->c, path, &st);
            else
                r = keel_unlink(w->c, path);
            record(w, p, t0, r, path);
        }
        break;
    default:
        break;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct keel_options o;

    keel_options_init(&o);
    o.client_name = "meta-bench";
    w->connect_err = keel_connect(A.namenode, &o, &w->c);
    for (int p = 0; p < NPHASES; p++) {
        /* Everyone (the main thread too) passes the start line together. */
        pthread_barrier_wait(&start_line);
        if (w->c)
            run_phase(w, (enum phase)p);
        pthread_barrier_wait(&finish_line);
    }
    if (w->c)
        keel_disconnect(w->c);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

struct summary {
    uint64_t ops, errors;
    double seconds, rate;
    uint32_t p50, p90, p99, p999, max;
};

static uint32_t pct(const uint32_t *v, uint64_t n, double p)
{
    return n ? v[(size_t)((double)(n - 1) * p)] : 0;
}

static void summarize(enum phase p, struct summary *s)
{
    uint64_t n = 0;
    uint32_t *all;

    memset(s, 0, sizeof(*s));
    for (unsigned i = 0; i < A.clients; i++) {
        n += workers[i].nlat[p];
        s->errors += workers[i].errors[p];
    }
    all = malloc((n ? n : 1) * sizeof(*all));
    if (!all) {
        fprintf(stderr, "meta-bench: out of memory\n");
        exit(1);
    }
    n = 0;
    for (unsigned i = 0; i < A.clients; i++) {
        memcpy(all + n, workers[i].lat[p], workers[i].nlat[p] * sizeof(*all));
        n += workers[i].nlat[p];
    }
    qsort(all, n, sizeof(*all), cmp_u32);
    s->ops = n;
    s->seconds = (double)(phase_end_ns[p] - phase_start_ns[p]) / 1e9;
    s->rate = s->seconds > 0 ? (double)n / s->seconds : 0;
    s->p50 = pct(all, n, 0.50);
    s->p90 = pct(all, n, 0.90);
    s->p99 = pct(all, n, 0.99);
    s->p999 = pct(all, n, 0.999);
    s->max = n ? all[n - 1] : 0;
    free(all);
}

static void report(void)
{
    struct summary s[NPHASES];

    for (int p = 0; p < NPHASES; p++)
        summarize((enum phase)p, &s[p]);
    if (A.json) {
        printf("{\"clients\":%" PRIu64 ",\"files\":%" PRIu64 ",\"dirs\":%" PRIu64 ",\"phases\":[",
               A.clients, A.files, A.clients * A.dirs);
        for (int p = 0; p < NPHASES; p++)
            printf("%s{\"phase\":\"%s\",\"ops\":%" PRIu64 ",\"seconds\":%.3f,\"ops_per_s\":%.0f,"
                   "\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"max_us\":%u,"
                   "\"errors\":%" PRIu64 "}",
                   p ? "," : "", phase_names[p], s[p].ops, s[p].seconds, s[p].rate, s[p].p50,
                   s[p].p90, s[p].p99, s[p].p999, s[p].max, s[p].errors);
        printf("]}\n");
        return;
    }
    printf("meta-bench: %" PRIu64 " clients, %" PRIu64 " files in %" PRIu64 " directories\n",
           A.clients, A.files, A.clients * A.dirs);
    printf("%-7s %9s %8s %9s %8s %8s %8s %8s %8s %6s\n", "phase", "ops", "seconds", "ops/s",
           "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "errors");
    for (int p = 0; p < NPHASES; p++)
        printf("%-7s %9" PRIu64 " %8.2f %9.0f %8u %8u %8u %8u %8u %6" PRIu64 "\n", phase_names[p],
               s[p].ops, s[p].seconds, s[p].rate, s[p].p50, s[p].p90, s[p].p99, s[p].p999, s[p].max,
               s[p].errors);
}

static int parse_args(int argc, char **argv)
{
    const struct flag flags[] = {
        {"namenode", FLAG_ADDR, &A.namenode,
         "namenode address (default: $KEEL_NAMENODE or 127.0.0.1:7420)"},
        {"clients", FLAG_UINT, &A.clients, "client threads, each its own keel_client"},
        {"files", FLAG_UINT, &A.files, "files created, stat'ed and removed, over all clients"},
        {"dirs", FLAG_UINT, &A.dirs, "directories per client the files are spread over"},
        {"path", FLAG_STRING, &A.path, "root of the tree; must not exist"},
        {"json", FLAG_BOOL, &A.json, "one JSON object instead of the table"},
    };
    const struct flags_spec spec = {
        .prog = "meta-bench",
        .usage = "--namenode A [--clients N] [--files N] [--dirs N] [--path P] [--json]",
        .about = "Creates, stats and unlinks files from many clients at once and prints "
                 "operations per second and latency percentiles of each phase.",
        .flags = flags,
        .nflags = (int)ARRAY_SIZE(flags),
    };
    int first, r = flags_parse(&spec, argc, argv, &first);

    if (r)
        return r;
    if (first != argc) {
        fprintf(stderr, "meta-bench: unexpected argument '%s' (see --help)\n", argv[first]);
        return -EINVAL;
    }
    if (A.clients == 0 || A.clients > MAX_CLIENTS || A.dirs == 0 || A.dirs > 100000 ||
        A.files > (1ull << 28) || A.path[0] != '/' || strlen(A.path) > PATH_LEN - 64) {
        fprintf(stderr,
                "meta-bench: --clients 1..%u, --dirs 1..100000, --files up to 2^28, "
                "--path absolute and short\n",
                MAX_CLIENTS);
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct keel_options o;
    keel_client *c = NULL;
    uint64_t errors = 0;
    int r = parse_args(argc, argv), rc = 0;

    if (r)
        return r > 0 ? 0 : 2;
    keel_options_init(&o);
    o.client_name = "meta-bench";
    r = keel_connect(A.namenode, &o, &c);
    if (r) {
        fprintf(stderr, "meta-bench: connect: %s\n", keel_strerror(r));
        return 1;
    }
    r = keel_mkdir(c, A.path, 0755);
    if (r) {
        fprintf(stderr, "meta-bench: mkdir %s: %s\n", A.path, keel_strerror(r));
        keel_disconnect(c);
        return 1;
    }
    workers = calloc(A.clients, sizeof(*workers));
    if (!workers) {
        keel_disconnect(c);
        return 1;
    }
    for (unsigned i = 0; i < A.clients; i++) {
        struct worker *w = &workers[i];
        uint64_t most = MAX(A.files / A.clients + 1, A.dirs + 1);

        w->idx = i;
        w->nfiles = A.files / A.clients + (i < A.files % A.clients);
        for (int p = 0; p < NPHASES; p++) {
            w->lat[p] = malloc(most * sizeof(uint32_t));
            if (!w->lat[p]) {
                fprintf(stderr, "meta-bench: out of memory\n");
                exit(1);
            }
        }
    }
    pthread_barrier_init(&start_line, NULL, (unsigned)A.clients + 1);
    pthread_barrier_init(&finish_line, NULL, (unsigned)A.clients + 1);
    for (unsigned i = 0; i < A.clients; i++)
        pthread_create(&workers[i].th, NULL, worker_main, &workers[i]);
    for (int p = 0; p < NPHASES; p++) {
        pthread_barrier_wait(&start_line);
        phase_start_ns[p] = mono_ns();
        pthread_barrier_wait(&finish_line);
        phase_end_ns[p] = mono_ns();
    }
    for (unsigned i = 0; i < A.clients; i++)
        pthread_join(workers[i].th, NULL);

    for (unsigned i = 0; i < A.clients; i++) {
        struct worker *w = &workers[i];

        if (w->connect_err) {
            fprintf(stderr, "meta-bench: client %u: connect: %s\n", i,
                    keel_strerror(w->connect_err));
            rc = 1;
        }
        for (int p = 0; p < NPHASES; p++) {
            if (!w->errors[p])
                continue;
            errors += w->errors[p];
            fprintf(stderr, "meta-bench: client %u: %" PRIu64 " %s errors, first %s: %s\n", i,
                    w->errors[p], phase_names[p], w->first_path[p], keel_strerror(w->first_err[p]));
        }
    }
    r = keel_rmdir(c, A.path);
    if (r) {
        fprintf(stderr, "meta-bench: rmdir %s: %s\n", A.path, keel_strerror(r));
        rc = 1;
    }
    keel_disconnect(c);
    if (rc == 0)
        report();
    for (unsigned i = 0; i < A.clients; i++)
        for (int p = 0; p < NPHASES; p++)
            free(workers[i].lat[p]);
    free(workers);
    pthread_barrier_destroy(&start_line);
    pthread_barrier_destroy(&finish_line);
    return rc || errors ? 1 : 0;
}
