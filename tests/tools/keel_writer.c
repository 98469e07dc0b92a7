/*
 * keel_writer: drives libkeel for the integration and fault tests and checks
 * what it reads back against a model of what it wrote.
 *
 *   keel_writer overlap --namenode A --path P [--threads 8] [--ops 200] [--span BYTES] [--seed S]
 *       Threads write random, overlapping, 512-byte-aligned ranges at once.
 *       Every 512-byte sector carries the id of the write that put it there;
 *       afterwards each sector must hold whole data of a write that covered
 *       it and was not superseded (no write covering it started after that
 *       one ended), and never-written sectors read as zeros.
 *
 *   keel_writer stream --namenode A --path P [--size BYTES] [--io BYTES] [--seconds N]
 *                      [--random] [--flush-every N] [--seed S]
 *       Writes seeded data until --seconds pass (or --size is covered once,
 *       sequentially), counts every acknowledged write, then reads the file
 *       back and verifies every acknowledged block. Exit 0 only if no write
 *       failed and everything verifies. Prints "acked N failed M".
 *
 *   keel_writer verify --namenode A --path P --size BYTES [--io BYTES] [--seed S]
 *                      [--model FILE]
 *       Verifies a file written by `stream` with the same arguments: the
 *       blocks the model file (written by stream --model) says were
 *       acknowledged, or without one every block at its first generation.
 *
 *   keel_writer crash --namenode A --path P --size BYTES [--io BYTES] [--seed S]
 *                     [--unflushed N]
 *       Writes every block (generation 1) and flushes, then overwrites N
 *       random blocks with generation 2 without flushing, prints "ready",
 *       and waits to be killed along with the cluster.
 *
 *   keel_writer crashcheck --namenode A --path P --size BYTES [--io BYTES] [--seed S]
 *       After a crash of everything: every block reads without error and
 *       holds whole generation 1 or whole generation 2 data.
 *
 *   keel_writer powercut --namenode A --path P --base FILE [--io BYTES] [--every N]
 *       Writes FILE to a new P in 1 MiB writes and flushes; then replaces
 *       every Nth IO-sized block (block 1, N+1, 2N+1...) with the bitwise
 *       complement of its bytes and flushes again, prints "ready", and
 *       writes those same bytes again and again, without flushing, so that
 *       no replica goes idle and settles, until it is killed along with the
 *       datanodes.
 *
 *   keel_writer lease --namenode A --path P
 *       Promise 5: a second client writing while the first is active gets
 *       -EBUSY; once the first is idle the lease moves, the chunk versions
 *       move on, and a write carrying the old version is refused by the
 *       datanode (-ESTALE).
 *
 *   keel_writer aio --namenode A --path P [--depth 64]
 *       The async API with DEPTH requests in flight, each completing once.
 *
 * Common: --timeout MS, the timeout of one request to a node (default 5000);
 * --fanout-max BYTES, keel_options.fanout_max (0: every write down the chain).
 *
 * Every loop is bounded; any unexpected result prints a line and exits 1.
 */
#include "checksum.h"
#include "keel.h"
#include "rpc.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECTOR 512

static struct {
    const char *namenode;
    const char *path;
    int threads;
    int ops;
    uint64_t span;
    uint64_t seed;
    uint64_t size;
    uint64_t io;
    uint64_t seconds;
    bool random;
    uint64_t flush_every;
    int depth;
    uint64_t timeout_ms;
    const char *model;
    uint64_t unflushed;
    const char *base;
    uint64_t every;
    int64_t fanout_max; /* -1: libkeel's default */
} A = {NULL,  NULL, 8,  200,  8u << 20, 1,  64u << 20, 1u << 20, 0,
       false, 0,    64, 5000, NULL,     16, NULL,      5,        -1};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "keel_writer: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static uint64_t rng(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* libkeel's warnings go to stderr, which the tests keep with the output. */
static void log_line(int level, const char *line, void *arg)
{
    fprintf(stderr, "%s\n", line);
}

static keel_client *connect_or_die(uint32_t idle_ms)
{
    struct keel_options o;
    keel_client *c;
    int r;

    keel_options_init(&o);
    o.call_timeout_ms = (uint32_t)A.timeout_ms;
    o.retry_ms = 60000;
    o.lease_idle_ms = idle_ms;
    o.client_name = "keel_writer";
    if (A.fanout_max >= 0)
        o.fanout_max = (uint32_t)A.fanout_max;
    o.log_fn = log_line;
    o.log_level = KEEL_LOG_INFO;
    r = keel_connect(A.namenode, &o, &c);
    if (r)
        die("connect %s: %s", A.namenode, keel_strerror(r));
    return c;
}

static keel_file *open_or_die(keel_client *c, int flags)
{
    keel_file *f;
    int r = keel_open(c, A.path, flags, NULL, &f);

    if (r)
        die("open %s: %s", A.path, keel_strerror(r));
    return f;
}

/* ------------------------------------------------------------- overlap */

struct wrec {
    uint64_t off, len;
    uint64_t start_ns, end_ns;
};

static struct wrec *writes;
static keel_file *shared_file;

/* Sector content of write id at file sector s: the id, then a pattern. */
static void fill_sector(uint8_t *p, uint64_t id, uint64_t s)
{
    memcpy(p, &id, 8);
    for (int i = 8; i < SECTOR; i++)
        p[i] = (uint8_t)(id * 31 + s * 7 + (uint64_t)i);
}

static void *overlap_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t st = A.seed * 1000 + (uint64_t)t;
    uint64_t nsec = A.span / SECTOR;
    uint8_t *buf = malloc(64 * SECTOR);

    for (int i = 0; i < A.ops; i++) {
        uint64_t id = (uint64_t)t * (uint64_t)A.ops + (uint64_t)i + 1;
        uint64_t n = 1 + rng(&st) % 64;
        uint64_t s0 = rng(&st) % (nsec - n);
        struct wrec *w = &writes[id];
        ssize_t r;

        for (uint64_t k = 0; k < n; k++)
            fill_sector(buf + k * SECTOR, id, s0 + k);
        w->off = s0 * SECTOR;
        w->len = n * SECTOR;
        w->start_ns = mono_ns();
        r = keel_pwrite(shared_file, buf, w->len, w->off);
        w->end_ns = mono_ns();
        if (r != (ssize_t)w->len)
            die("write %" PRIu64 " at %" PRIu64 ": %s", id, w->off,
                r < 0 ? keel_strerror((int)r) : "short");
    }
    free(buf);
    return NULL;
}

static int run_overlap(void)
{
    keel_client *c = connect_or_die(1000);
    uint64_t nwrites = (uint64_t)A.threads * (uint64_t)A.ops;
    uint64_t nsec = A.span / SECTOR;
    uint8_t *data = malloc(A.span), want[SECTOR];
    pthread_t th[64];
    uint64_t bad = 0, written = 0;

    if (A.threads > 64 || A.span < 128 * SECTOR)
        die("bad arguments");
    writes = calloc(nwrites + 1, sizeof(*writes));
    shared_file = open_or_die(c, KEEL_O_RDWR | KEEL_O_CREATE | KEEL_O_TRUNC);
    for (int t = 0; t < A.threads; t++)
        pthread_create(&th[t], NULL, overlap_thread, (void *)(intptr_t)t);
    for (int t = 0; t < A.threads; t++)
        pthread_join(th[t], NULL);
    if (keel_flush(shared_file))
        die("flush failed");
    if (keel_pread(shared_file, data, A.span, 0) < 0)
        die("read back failed");
    for (uint64_t s = 0; s < nsec; s++) {
        uint64_t id, latest_start = 0;
        uint8_t *p = data + s * SECTOR;

        memcpy(&id, p, 8);
        for (uint64_t w = 1; w <= nwrites; w++)
            if (writes[w].off <= s * SECTOR && s * SECTOR < writes[w].off + writes[w].len &&
                writes[w].start_ns > latest_start)
                latest_start = writes[w].start_ns;
        if (id == 0) {
            static const uint8_t zero[SECTOR];
            if (latest_start || memcmp(p, zero, SECTOR) != 0)
                bad++;
            continue;
        }
        written++;
        if (id > nwrites || writes[id].off > s * SECTOR ||
            s * SECTOR >= writes[id].off + writes[id].len) {
            bad++;
            continue;
        }
        fill_sector(want, id, s);
        /* Superseded: another write covering s started after this one ended. */
        if (memcmp(want, p, SECTOR) != 0 || latest_start > writes[id].end_ns)
            bad++;
    }
    printf("overlap: %" PRIu64 " writes, %" PRIu64 " sectors written, %" PRIu64 " bad\n", nwrites,
           written, bad);
    keel_close(shared_file);
    keel_disconnect(c);
    free(data);
    free(writes);
    return bad ? 1 : 0;
}

/* ------------------------------------------------------------- stream */

/* The data of the io-sized block at index b for a seed. */
static void fill_block(uint8_t *p, uint64_t len, uint64_t b, uint64_t seed)
{
    uint64_t s = seed * 0x100000001b3ull + b;

    for (uint64_t i = 0; i + 8 <= len; i += 8) {
        uint64_t v = rng(&s);
        memcpy(p + i, &v, 8);
    }
}

static int verify_blocks(keel_file *f, const uint8_t *acked, uint64_t nblocks)
{
    uint8_t *want = malloc(A.io), *got = malloc(A.io);
    uint64_t bad = 0, checked = 0;

    for (uint64_t b = 0; b < nblocks; b++) {
        ssize_t r;

        if (acked && !acked[b])
            continue;
        fill_block(want, A.io, b, A.seed + (acked ? acked[b] - 1 : 0));
        r = keel_pread(f, got, A.io, b * A.io);
        checked++;
        if (r != (ssize_t)A.io || memcmp(want, got, A.io) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "keel_writer: block %" PRIu64 " differs (read %zd)\n", b, r);
        }
    }
    printf("verified %" PRIu64 " blocks, %" PRIu64 " bad\n", checked, bad);
    free(want);
    free(got);
    return bad ? 1 : 0;
}

static int run_stream(void)
{
    keel_client *c = connect_or_die(1000);
    keel_file *f = open_or_die(c, KEEL_O_RDWR | KEEL_O_CREATE);
    uint64_t nblocks = A.size / A.io, st = A.seed, acked = 0, failed = 0, n = 0;
    uint64_t deadline = A.seconds ? mono_ms() + A.seconds * 1000 : 0;
    /* acked[b]: 1 + the generation last acknowledged for block b (0: none) */
    uint8_t *gen = calloc(nblocks, 1), *buf = malloc(A.io);
    int rc;

    for (;;) {
        uint64_t b = A.random ? rng(&st) % nblocks : n % nblocks;
        uint8_t g = (uint8_t)(A.random ? 1 + rng(&st) % 200 : 1 + (n / nblocks) % 200);
        ssize_t r;

        if (deadline ? mono_ms() >= deadline : n >= nblocks)
            break;
        fill_block(buf, A.io, b, A.seed + g - 1);
        r = keel_pwrite(f, buf, A.io, b * A.io);
        if (r == (ssize_t)A.io) {
            gen[b] = g;
            acked++;
        } else {
            failed++;
            fprintf(stderr, "keel_writer: write of block %" PRIu64 ": %s\n", b,
                    r < 0 ? keel_strerror((int)r) : "short");
            /* What was there may be old or new now: forget the block. */
            gen[b] = 0;
        }
        n++;
        if (A.flush_every && n % A.flush_every == 0 && keel_flush(f) != 0) {
            failed++;
            fprintf(stderr, "keel_writer: flush failed\n");
        }
    }
    if (keel_flush(f) != 0) {
        failed++;
        fprintf(stderr, "keel_writer: final flush failed\n");
    }
    printf("acked %" PRIu64 " failed %" PRIu64 "\n", acked, failed);
    fflush(stdout);
    if (A.model) {
        FILE *m = fopen(A.model, "wb");
        if (!m || fwrite(gen, 1, nblocks, m) != nblocks || fclose(m) != 0)
            die("cannot save the model to %s", A.model);
    }
    rc = verify_blocks(f, gen, nblocks);
    keel_close(f);
    keel_disconnect(c);
    free(gen);
    free(buf);
    return rc || failed ? 1 : 0;
}

static int run_verify(void)
{
    keel_client *c = connect_or_die(1000);
    keel_file *f = open_or_die(c, KEEL_O_READ);
    uint64_t nblocks = A.size / A.io;
    uint8_t *gen = NULL;
    int rc;

    if (A.model) {
        FILE *m = fopen(A.model, "rb");
        gen = calloc(nblocks, 1);
        if (!m || fread(gen, 1, nblocks, m) != nblocks)
            die("cannot load the model from %s", A.model);
        fclose(m);
    }
    rc = verify_blocks(f, gen, nblocks);
    keel_close(f);
    keel_disconnect(c);
    free(gen);
    return rc;
}

static int run_crash(void)
{
    keel_client *c = connect_or_die(1000);
    keel_file *f = open_or_die(c, KEEL_O_RDWR | KEEL_O_CREATE | KEEL_O_TRUNC);
    uint64_t nblocks = A.size / A.io, st = A.seed;
    uint8_t *buf = malloc(A.io);

    for (uint64_t b = 0; b < nblocks; b++) {
        fill_block(buf, A.io, b, A.seed);
        if (keel_pwrite(f, buf, A.io, b * A.io) != (ssize_t)A.io)
            die("write of block %" PRIu64 " failed", b);
    }
    if (keel_flush(f))
        die("flush failed");
    for (uint64_t i = 0; i < A.unflushed; i++) {
        uint64_t b = rng(&st) % nblocks;

        fill_block(buf, A.io, b, A.seed + 1);
        if (keel_pwrite(f, buf, A.io, b * A.io) != (ssize_t)A.io)
            die("unflushed write of block %" PRIu64 " failed", b);
    }
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < 600; i++)
        sleep(1); /* killed by the test long before */
    return 1;
}

static int run_crashcheck(void)
{
    keel_client *c = connect_or_die(1000);
    keel_file *f = open_or_die(c, KEEL_O_READ);
    uint64_t nblocks = A.size / A.io, bad = 0, newer = 0;
    uint8_t *g1 = malloc(A.io), *g2 = malloc(A.io), *got = malloc(A.io);

    for (uint64_t b = 0; b < nblocks; b++) {
        ssize_t r = keel_pread(f, got, A.io, b * A.io);

        fill_block(g1, A.io, b, A.seed);
        fill_block(g2, A.io, b, A.seed + 1);
        if (r != (ssize_t)A.io) {
            fprintf(stderr, "keel_writer: block %" PRIu64 ": %s\n", b,
                    r < 0 ? keel_strerror((int)r) : "short read");
            bad++;
        } else if (memcmp(got, g2, A.io) == 0) {
            newer++;
        } else if (memcmp(got, g1, A.io) != 0) {
            fprintf(stderr, "keel_writer: block %" PRIu64 " is neither old nor new\n", b);
            bad++;
        }
    }
    printf("crashcheck: %" PRIu64 " blocks, %" PRIu64 " with unflushed data, %" PRIu64 " bad\n",
           nblocks, newer, bad);
    keel_close(f);
    keel_disconnect(c);
    free(g1);
    free(g2);
    free(got);
    return bad ? 1 : 0;
}

static void write_or_die(keel_file *f, const uint8_t *p, size_t len, uint64_t off)
{
    ssize_t r = keel_pwrite(f, p, len, off);

    if (r != (ssize_t)len)
        die("write at %" PRIu64 ": %s", off, r < 0 ? keel_strerror((int)r) : "short");
}

/* Blocks 1, every+1, 2*every+1...: complemented in place. */
static void complement_blocks(uint8_t *data, uint64_t size)
{
    for (uint64_t off = A.io; off + A.io <= size; off += A.every * A.io)
        for (uint64_t i = off; i < off + A.io; i++)
            data[i] = (uint8_t)~data[i];
}

static int run_powercut(void)
{
    keel_client *c = connect_or_die(1000);
    keel_file *f;
    uint8_t *data;
    size_t size;
    FILE *in;

    if (!A.base || !(in = fopen(A.base, "rb")))
        die("powercut needs a readable --base FILE");
    if (fseek(in, 0, SEEK_END) != 0 || (size = (size_t)ftell(in)) == 0 || A.every == 0)
        die("bad --base or --every");
    data = malloc(size);
    rewind(in);
    if (fread(data, 1, size, in) != size)
        die("cannot read %s", A.base);
    fclose(in);

    f = open_or_die(c, KEEL_O_RDWR | KEEL_O_CREATE | KEEL_O_TRUNC);
    for (size_t off = 0; off < size; off += 1u << 20)
        write_or_die(f, data + off, MIN(size - off, (size_t)1 << 20), off);
    if (keel_flush(f))
        die("flush of the base failed");
    complement_blocks(data, size);
    for (int pass = 0; pass < 6000; pass++) {
        for (uint64_t off = A.io; off + A.io <= size; off += A.every * A.io)
            write_or_die(f, data + off, A.io, off);
        if (pass == 0) {
            if (keel_flush(f))
                die("flush of the small writes failed");
            printf("ready\n");
            fflush(stdout);
        }
        usleep(100000); /* killed by the test long before the end */
    }
    return 1;
}

/* -------------------------------------------------------------- lease */

static volatile int keep_writing;
static keel_file *holder_file;
static int holder_errors;

static void *busy_writer(void *arg)
{
    uint8_t buf[4096];

    memset(buf, 0xAA, sizeof(buf));
    while (keep_writing) {
        if (keel_pwrite(holder_file, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
            holder_errors++;
        usleep(20000);
    }
    return NULL;
}

struct stale_write {
    int status;
    int done;
};

static void stale_done(int status, rpc_msg *m, void *arg)
{
    struct stale_write *s = arg;

    s->status = status;
    if (status == 0 && m->env->write_rep->n_failed > 0)
        s->status = m->env->write_rep->failed_status[0];
    s->done = 1;
}

/* Sends a write with the given version straight to a datanode. */
static int raw_write(const char *addr, uint64_t chunk_id, uint64_t version)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__WriteReq req = KEEL__WRITE_REQ__INIT;
    struct stale_write s = {0, 0};
    static uint8_t data[4096];
    uv_loop_t loop;
    rpc_conn *conn;

    uv_loop_init(&loop);
    if (rpc_connect(&loop, addr, NULL, NULL, &conn))
        die("bad datanode address %s", addr);
    req.chunk_id = chunk_id;
    req.version = version;
    req.offset = 0;
    req.length = sizeof(data);
    req.checksum = csum_buf(data, sizeof(data));
    env.body_case = KEEL__ENVELOPE__BODY_WRITE_REQ;
    env.write_req = &req;
    if (rpc_call(conn, &env, (rpc_payload){data, sizeof(data), NULL, NULL}, NULL, stale_done, &s))
        die("cannot send a raw write");
    while (!s.done)
        uv_run(&loop, UV_RUN_ONCE);
    rpc_conn_close(conn);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return s.status;
}

static int run_lease(void)
{
    keel_client *a = connect_or_die(1000), *b = connect_or_die(1000);
    keel_file *fb;
    struct keel_chunk_info *before, *after;
    size_t nb, na;
    uint8_t buf[4096];
    pthread_t th;
    ssize_t r;
    int st;

    holder_file = open_or_die(a, KEEL_O_RDWR | KEEL_O_CREATE | KEEL_O_TRUNC);
    memset(buf, 1, sizeof(buf));
    if (keel_pwrite(holder_file, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
        die("first write by A failed");
    keep_writing = 1;
    pthread_create(&th, NULL, busy_writer, NULL);
    /* B may open while A writes (a migration destination does). */
    fb = open_or_die(b, KEEL_O_RDWR);
    usleep(300000);
    r = keel_pwrite(fb, buf, sizeof(buf), 8192);
    if (r != -EBUSY)
        die("B's write while A is active: expected -EBUSY, got %zd", r);
    printf("lease: B refused with EBUSY while A writes\n");
    keep_writing = 0;
    pthread_join(th, NULL);
    if (holder_errors)
        die("A's own writes failed %d times", holder_errors);
    if (keel_file_chunks(a, A.path, 0, 0, &before, &nb) || nb == 0)
        die("cannot list chunks");
    /* A goes idle: after lease_idle_ms the lease moves to B. */
    usleep(1500000);
    memset(buf, 2, sizeof(buf));
    r = keel_pwrite(fb, buf, sizeof(buf), 0);
    if (r != (ssize_t)sizeof(buf))
        die("B's write after A went idle: %s", r < 0 ? keel_strerror((int)r) : "short");
    printf("lease: handed over to B\n");
    if (keel_file_chunks(b, A.path, 0, 0, &after, &na) || na == 0)
        die("cannot list chunks");
    if (after[0].version <= before[0].version)
        die("chunk version did not move on at handover (%" PRIu64 " -> %" PRIu64 ")",
            before[0].version, after[0].version);
    /* A late write of A, with the version A was given, is fenced off. */
    st = raw_write(before[0].replicas[0].addr, before[0].chunk_id, before[0].version);
    if (st != -ESTALE)
        die("a write with the old version was not refused with ESTALE: %s", keel_strerror(st));
    printf("lease: old holder's write refused (ESTALE), version %" PRIu64 " -> %" PRIu64 "\n",
           before[0].version, after[0].version);
    /* And A cannot take the lease back while B is active... B is idle now,
     * so A's write takes it back the same way. The data must be B's. */
    r = keel_pread(fb, buf, sizeof(buf), 0);
    if (r != (ssize_t)sizeof(buf) || buf[0] != 2 || buf[4095] != 2)
        die("B does not read its own write back");
    keel_chunks_free(before, nb);
    keel_chunks_free(after, na);
    keel_close(fb);
    keel_close(holder_file);
    keel_disconnect(a);
    keel_disconnect(b);
    return 0;
}

/* ---------------------------------------------------------------- aio */

static int completions;

static void on_complete(keel_aio *aio, void *arg)
{
    __atomic_add_fetch(&completions, 1, __ATOMIC_SEQ_CST);
}

static int run_aio(void)
{
    keel_client *c = connect_or_die(1000);
    keel_file *f = open_or_die(c, KEEL_O_RDWR | KEEL_O_CREATE | KEEL_O_TRUNC);
    const uint64_t len = 64 * 1024;
    keel_aio **aio = calloc((size_t)A.depth, sizeof(*aio));
    uint8_t *out = malloc((size_t)A.depth * len), *in = malloc((size_t)A.depth * len);

    for (int i = 0; i < A.depth; i++) {
        fill_block(out + (uint64_t)i * len, len, (uint64_t)i, A.seed);
        if (keel_aio_create(on_complete, NULL, &aio[i]))
            die("aio create");
        if (keel_aio_pwrite(f, out + (uint64_t)i * len, len, (uint64_t)i * len * 3, aio[i]))
            die("aio write submit");
    }
    for (int i = 0; i < A.depth; i++)
        if (keel_aio_wait(aio[i], 60000) || keel_aio_result(aio[i]) != (ssize_t)len)
            die("aio write %d: %zd", i, keel_aio_result(aio[i]));
    for (int i = 0; i < A.depth; i++)
        if (keel_aio_pread(f, in + (uint64_t)i * len, len, (uint64_t)i * len * 3, aio[i]))
            die("aio read submit");
    for (int i = 0; i < A.depth; i++)
        if (keel_aio_wait(aio[i], 60000) || keel_aio_result(aio[i]) != (ssize_t)len)
            die("aio read %d: %zd", i, keel_aio_result(aio[i]));
    if (memcmp(out, in, (size_t)A.depth * len) != 0)
        die("aio data differs");
    if (keel_aio_flush(f, aio[0]) || keel_aio_wait(aio[0], 60000) || keel_aio_result(aio[0]))
        die("aio flush");
    for (int i = 0; i < 100 && __atomic_load_n(&completions, __ATOMIC_SEQ_CST) < 2 * A.depth + 1;
         i++)
        usleep(10000);
    if (completions != 2 * A.depth + 1)
        die("%d callbacks for %d requests", completions, 2 * A.depth + 1);
    printf("aio: %d requests in flight, every one completed once\n", A.depth);
    for (int i = 0; i < A.depth; i++)
        keel_aio_release(aio[i]);
    free(aio);
    free(out);
    free(in);
    keel_close(f);
    keel_disconnect(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage: keel_writer overlap|stream|verify|lease|aio --namenode A --path P ...");
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n = 0;

        if (strcmp(k, "--random") == 0) {
            A.random = true;
            continue;
        }
        if (!v)
            die("%s needs a value", k);
        i++;
        if (strcmp(k, "--namenode") == 0)
            A.namenode = v;
        else if (strcmp(k, "--path") == 0)
            A.path = v;
        else if (strcmp(k, "--model") == 0)
            A.model = v;
        else if (strcmp(k, "--base") == 0)
            A.base = v;
        else if (parse_size(v, &n))
            die("bad value for %s: %s", k, v);
        else if (strcmp(k, "--threads") == 0)
            A.threads = (int)n;
        else if (strcmp(k, "--ops") == 0)
            A.ops = (int)n;
        else if (strcmp(k, "--span") == 0)
            A.span = n;
        else if (strcmp(k, "--seed") == 0)
            A.seed = n;
        else if (strcmp(k, "--size") == 0)
            A.size = n;
        else if (strcmp(k, "--io") == 0)
            A.io = n;
        else if (strcmp(k, "--seconds") == 0)
            A.seconds = n;
        else if (strcmp(k, "--flush-every") == 0)
            A.flush_every = n;
        else if (strcmp(k, "--depth") == 0)
            A.depth = (int)n;
        else if (strcmp(k, "--timeout") == 0)
            A.timeout_ms = n;
        else if (strcmp(k, "--unflushed") == 0)
            A.unflushed = n;
        else if (strcmp(k, "--every") == 0)
            A.every = n;
        else if (strcmp(k, "--fanout-max") == 0)
            A.fanout_max = (int64_t)MIN(n, UINT32_MAX);
        else
            die("unknown flag %s", k);
    }
    if (!A.path || A.io == 0 || A.size < A.io)
        die("--path is required; --size must hold at least one --io");
    if (strcmp(argv[1], "overlap") == 0)
        return run_overlap();
    if (strcmp(argv[1], "stream") == 0)
        return run_stream();
    if (strcmp(argv[1], "verify") == 0)
        return run_verify();
    if (strcmp(argv[1], "lease") == 0)
        return run_lease();
    if (strcmp(argv[1], "aio") == 0)
        return run_aio();
    if (strcmp(argv[1], "crash") == 0)
        return run_crash();
    if (strcmp(argv[1], "crashcheck") == 0)
        return run_crashcheck();
    if (strcmp(argv[1], "powercut") == 0)
        return run_powercut();
    die("unknown mode %s", argv[1]);
}
