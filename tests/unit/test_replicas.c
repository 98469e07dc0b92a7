/*
 * Unit tests for datanode/replicas on a real loop and thread pool: writes of
 * one chunk apply in arrival order, fencing by version at the head of the
 * queue, corruption found by a read is persisted and reported, deletes
 * order with what was queued before them, a bounded set of open files,
 * and a shutdown that answers every queued op exactly once.
 */
#include "checksum.h"
#include "datanode/chunkstore.h"
#include "datanode/replicas.h"
#include "sidecar.h"
#include "datanode/wal.h"
#include "syswrap.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (256u * 1024)

static uv_loop_t loop;
static char dir[64];
static struct chunkstore *cs;
static struct replicas *reps;

/* What the hooks heard. */
static struct replica_info reported[64];
static bool reported_deleted[64];
static int nreported;
static int disk_errors;

static void on_report(void *ctx, const struct replica_info *ri, bool deleted)
{
    ck_assert_int_lt(nreported, 64);
    reported_deleted[nreported] = deleted;
    reported[nreported++] = *ri;
}

static void on_disk_error(void *ctx, uint64_t id, int err)
{
    disk_errors++;
}

static const struct replicas_hooks hooks = {on_report, on_disk_error, NULL};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void start(unsigned max_open)
{
    struct chunkstore_identity id = {"c", 1, CHUNK};

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    snprintf(dir, sizeof(dir), "/tmp/keel-ut-reps.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
    ck_assert_int_eq(chunkstore_write_identity(cs, &id), 0);
    chunkstore_adopt_identity(cs, &id);
    ck_assert_int_eq(replicas_new(&loop, cs, max_open, &hooks, &reps), 0);
    nreported = 0;
    disk_errors = 0;
}

static void setup(void)
{
    start(64);
}

static int load(void *arg, const struct replica_info *ri)
{
    return replicas_load(arg, ri);
}

/* A fresh store whose small writes go to a log. */
static void start_with_log(void)
{
    start(64);
    ck_assert_int_eq(chunkstore_use_wal(cs, WAL_MIN_SIZE), 0);
    ck_assert_int_eq(chunkstore_scan(cs, load, reps), 0);
}

/* Shuts the table down, runs the loop dry, frees everything but the files. */
static void stop_keep(void)
{
    replicas_shutdown(reps);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    replicas_free(reps);
    reps = NULL;
    chunkstore_close(cs);
    cs = NULL;
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static void stop(void)
{
    stop_keep();
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void teardown(void)
{
    if (reps)
        stop();
}

/* ----------------------------------------------------------- completions */

struct res {
    int calls;
    int status;
    struct replica_info info;
    uint8_t *data; /* reads: a copy */
    size_t len;
    uint64_t checksum;
    int order; /* completion order */
};

static int completions;

static void done(int status, struct replicas_result *rr, void *arg)
{
    struct res *r = arg;

    r->calls++;
    r->status = status;
    r->info = rr->info;
    r->order = completions++;
    if (status == 0 && rr->data && rr->len) {
        r->data = malloc(rr->len);
        memcpy(r->data, rr->data, rr->len);
        r->len = rr->len;
        r->checksum = rr->checksum;
    }
}

/* Runs the loop until every result in rs[0..n) has been called back. */
static void wait_all(struct res *rs, int n)
{
    for (int guard = 0; guard < 100000; guard++) {
        int left = 0;

        for (int i = 0; i < n; i++)
            left += rs[i].calls == 0;
        if (!left)
            return;
        uv_run(&loop, UV_RUN_ONCE);
    }
    ck_abort_msg("operations did not complete");
}

static int create(uint64_t id, uint64_t version)
{
    struct res r = {0};

    ck_assert_int_eq(replicas_create(reps, id, version, done, &r), 0);
    wait_all(&r, 1);
    return r.status;
}

static int flush(uint64_t id, uint64_t version)
{
    struct res r = {0};

    ck_assert_int_eq(replicas_flush(reps, id, version, done, &r), 0);
    wait_all(&r, 1);
    return r.status;
}

static struct res read_sync(uint64_t id, uint64_t version, uint64_t off, size_t len)
{
    struct res r = {0};

    ck_assert_int_eq(replicas_read(reps, id, version, off, len, 0, done, &r), 0);
    wait_all(&r, 1);
    return r;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 13 + seed * 101 + (i >> 8));
}

/* ------------------------------------------------------------------ tests */

START_TEST(writes_of_one_chunk_apply_in_arrival_order)
{
    enum { N = 200 };
    static struct res rs[N];
    static uint8_t data[N][9000];
    static uint64_t blocks[N][2];
    uint8_t *model = calloc(1, CHUNK);
    struct res rd;

    memset(rs, 0, sizeof(rs));
    ck_assert_int_eq(create(5, 1), 0);
    srand(7);
    /* Overlapping writes, all in flight at once: the last one queued for a
     * byte must win. */
    for (int i = 0; i < N; i++) {
        uint64_t off = (uint64_t)(rand() % 20000);
        size_t len = 1 + (size_t)rand() % sizeof(data[i]);

        fill(data[i], len, (unsigned)i);
        csum_block_range(off, len, &blocks[i][0], &blocks[i][1]);
        ck_assert_int_eq(replicas_write(reps, 5, 1, off, data[i], len, done, &rs[i]), 0);
        memcpy(model + off, data[i], len);
    }
    ck_assert_uint_ge(replicas_busy(reps), 1);
    wait_all(rs, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(rs[i].status, 0);
    /* Writes whose blocks overlap completed in arrival order. */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++)
            if (!(blocks[j][1] < blocks[i][0] || blocks[i][1] < blocks[j][0]))
                ck_assert_int_gt(rs[i].order, rs[j].order);
    rd = read_sync(5, 1, 0, 40000);
    ck_assert_int_eq(rd.status, 0);
    ck_assert_int_eq(memcmp(rd.data, model, 40000), 0);
    ck_assert_uint_eq(rd.checksum, csum_buf(model, 40000));
    free(rd.data);
    free(model);
}
END_TEST

START_TEST(version_is_checked_when_the_op_reaches_the_head)
{
    struct res w1 = {0}, sv = {0}, w_old = {0}, w_new = {0}, rd_old = {0};
    uint8_t data[100];

    fill(data, sizeof(data), 1);
    ck_assert_int_eq(create(6, 1), 0);
    /* All queued at once: the version change fences the writes behind it. */
    ck_assert_int_eq(replicas_write(reps, 6, 1, 0, data, 100, done, &w1), 0);
    ck_assert_int_eq(replicas_set_version(reps, 6, 1, 2, 0, done, &sv), 0);
    ck_assert_int_eq(replicas_write(reps, 6, 1, 100, data, 100, done, &w_old), 0);
    ck_assert_int_eq(replicas_write(reps, 6, 2, 200, data, 100, done, &w_new), 0);
    ck_assert_int_eq(replicas_read(reps, 6, 1, 0, 10, 0, done, &rd_old), 0);
    wait_all(&w1, 1);
    wait_all(&sv, 1);
    wait_all(&w_old, 1);
    wait_all(&w_new, 1);
    wait_all(&rd_old, 1);
    ck_assert_int_eq(w1.status, 0);
    ck_assert_int_eq(sv.status, 0);
    ck_assert_uint_eq(sv.info.version, 2);
    ck_assert_int_eq(w_old.status, -ESTALE);
    ck_assert_int_eq(w_new.status, 0);
    ck_assert_int_eq(rd_old.status, -ESTALE);
    /* A higher version than the replica's is refused too. */
    {
        struct res w3 = {0};

        ck_assert_int_eq(replicas_write(reps, 6, 3, 0, data, 1, done, &w3), 0);
        wait_all(&w3, 1);
        ck_assert_int_eq(w3.status, -ESTALE);
    }
    /* The bytes of the refused write are not there. */
    {
        struct res rd = read_sync(6, 2, 100, 100);
        uint8_t zeros[100] = {0};

        ck_assert_int_eq(memcmp(rd.data, zeros, 100), 0);
        free(rd.data);
    }
    ck_assert_int_eq(nreported, 0); /* the namenode's own call is not reported */
}
END_TEST

START_TEST(set_version_rules)
{
    struct res r = {0};

    ck_assert_int_eq(create(7, 3), 0);
    /* Neither from nor to: refused. */
    ck_assert_int_eq(replicas_set_version(reps, 7, 2, 4, 0, done, &r), 0);
    wait_all(&r, 1);
    ck_assert_int_eq(r.status, -ESTALE);
    /* Already at to: fine (a retried call). */
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(replicas_set_version(reps, 7, 2, 3, 0, done, &r), 0);
    wait_all(&r, 1);
    ck_assert_int_eq(r.status, 0);
    /* A command (from 0) may only raise, and is reported. */
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(replicas_set_version(reps, 7, 0, 2, REPLICAS_REPORT, done, &r), 0);
    wait_all(&r, 1);
    ck_assert_int_eq(r.status, -ESTALE);
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(replicas_set_version(reps, 7, 0, 9, REPLICAS_REPORT, done, &r), 0);
    wait_all(&r, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(nreported, 1);
    ck_assert_uint_eq(reported[0].version, 9);
    ck_assert(!reported_deleted[0]);
}
END_TEST

static void flip(uint64_t id, const char *ext, uint64_t off)
{
    char rel[64], path[160];
    uint8_t b;
    int fd;

    replica_path(id, ext, rel, sizeof(rel));
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 1;
    ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

START_TEST(corruption_found_by_a_read_is_persisted_and_reported)
{
    uint8_t data[8192];
    struct res w = {0}, rd;
    struct replica_info ri;
    struct replicafile *rf;

    fill(data, sizeof(data), 2);
    ck_assert_int_eq(create(8, 4), 0);
    ck_assert_int_eq(replicas_write(reps, 8, 4, 0, data, sizeof(data), done, &w), 0);
    wait_all(&w, 1);
    ck_assert_int_eq(flush(8, 4), 0);
    flip(8, "data", 5000);
    rd = read_sync(8, 4, 4096, 10);
    ck_assert_int_eq(rd.status, -EIO);
    ck_assert_int_eq(nreported, 1);
    ck_assert_uint_eq(reported[0].chunk_id, 8);
    ck_assert_uint_eq(reported[0].version, 4);
    ck_assert(reported[0].corrupt);
    /* The intact first block is refused too: the replica is out of service. */
    rd = read_sync(8, 4, 0, 10);
    ck_assert_int_eq(rd.status, -EIO);
    ck_assert(replicas_get(reps, 8, &ri));
    ck_assert(ri.corrupt);
    ck_assert_int_eq(nreported, 1);
    /* The flag reached the sidecar. */
    stop_keep();
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
    ck_assert_int_eq(chunkstore_open_replica(cs, 8, &rf), 0);
    ck_assert_uint_eq(replicafile_header(rf)->flags & SIDECAR_CORRUPT, SIDECAR_CORRUPT);
    replicafile_close(rf);
    chunkstore_close(cs);
    cs = NULL;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

START_TEST(scrub_finds_a_bad_checksum)
{
    struct res s = {0};

    ck_assert_int_eq(create(9, 1), 0);
    flip(9, "meta", SIDECAR_SUMS_OFF + 8 * 40);
    ck_assert_int_eq(replicas_scrub(reps, 9, 0, 1000, done, &s), 0); /* clamped */
    wait_all(&s, 1);
    ck_assert_int_eq(s.status, -EIO);
    ck_assert_int_eq(nreported, 1);
    ck_assert(reported[0].corrupt);
    ck_assert_int_eq(replicas_scrub(reps, 9, CHUNK / KEEL_BLOCK_SIZE, 1, done, &s), -EINVAL);
}
END_TEST

/* Files removed or cut while their descriptors are open still read "fine"
 * through them; the scrubber looks at the files and finds out. */
START_TEST(scrub_finds_files_removed_or_cut_behind_its_back)
{
    char rel[64], path[160];
    struct res s = {0}, rd;
    uint8_t data[100] = {7};

    ck_assert_int_eq(create(15, 1), 0);
    ck_assert_int_eq(create(16, 1), 0);
    {
        struct res w = {0};

        ck_assert_int_eq(replicas_write(reps, 16, 1, 0, data, sizeof(data), done, &w), 0);
        wait_all(&w, 1);
        ck_assert_int_eq(flush(16, 1), 0);
    }
    rd = read_sync(15, 1, 0, 10); /* both are open now */
    ck_assert_int_eq(rd.status, 0);
    free(rd.data);
    replica_path(15, "data", rel, sizeof(rel));
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    ck_assert_int_eq(unlink(path), 0);
    replica_path(16, "data", rel, sizeof(rel));
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    ck_assert_int_eq(truncate(path, 50), 0);

    ck_assert_int_eq(replicas_scrub(reps, 15, 0, 16, done, &s), 0);
    wait_all(&s, 1);
    ck_assert_int_eq(s.status, -ENOENT);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(replicas_scrub(reps, 16, 0, 16, done, &s), 0);
    wait_all(&s, 1);
    ck_assert_int_eq(s.status, -EBADMSG);
    ck_assert_int_eq(nreported, 2);
    ck_assert(reported[0].corrupt && reported[1].corrupt);
    rd = read_sync(15, 1, 0, 10);
    ck_assert_int_eq(rd.status, -EIO);
}
END_TEST

START_TEST(delete_orders_with_earlier_ops_and_fails_later_ones)
{
    uint8_t data[100] = {1};
    struct res w = {0}, del = {0}, w_after = {0}, stale = {0};

    ck_assert_int_eq(create(10, 2), 0);
    ck_assert_int_eq(replicas_delete(reps, 10, 1, REPLICAS_REPORT, done, &stale), 0);
    ck_assert_int_eq(replicas_write(reps, 10, 2, 0, data, 100, done, &w), 0);
    ck_assert_int_eq(replicas_delete(reps, 10, 2, REPLICAS_REPORT, done, &del), 0);
    ck_assert_int_eq(replicas_write(reps, 10, 2, 0, data, 100, done, &w_after), 0);
    wait_all(&stale, 1);
    wait_all(&w, 1);
    wait_all(&del, 1);
    wait_all(&w_after, 1);
    ck_assert_int_eq(stale.status, -ESTALE); /* the replica is newer than asked */
    ck_assert_int_eq(w.status, 0);
    ck_assert_int_eq(del.status, 0);
    ck_assert_int_eq(w_after.status, -ENOENT);
    ck_assert(!replicas_get(reps, 10, NULL));
    ck_assert_int_eq(nreported, 1);
    ck_assert(reported_deleted[0]);
    ck_assert_int_eq(replicas_write(reps, 10, 2, 0, data, 100, done, &w), -ENOENT);
    /* The id can be created again. */
    ck_assert_int_eq(create(10, 3), 0);
    ck_assert_int_eq(replicas_count(reps), 1);
}
END_TEST

START_TEST(synchronous_errors_never_call_back)
{
    uint8_t data[10] = {0};
    struct res r = {0};

    ck_assert_int_eq(replicas_read(reps, 99, 1, 0, 10, 0, done, &r), -ENOENT);
    ck_assert_int_eq(create(11, 1), 0);
    ck_assert_int_eq(replicas_read(reps, 11, 1, CHUNK - 5, 10, 0, done, &r), -EINVAL);
    ck_assert_int_eq(replicas_read(reps, 11, 1, 0, 0, 0, done, &r), -EINVAL);
    ck_assert_int_eq(replicas_write(reps, 11, 1, CHUNK, data, 1, done, &r), -EINVAL);
    ck_assert_int_eq(replicas_create(reps, 11, 1, done, &r), -EEXIST);
    ck_assert_int_eq(replicas_create(reps, 0, 1, done, &r), -EINVAL);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(r.calls, 0);
}
END_TEST

START_TEST(flush_makes_the_replica_clean)
{
    uint8_t data[100];
    struct res w = {0}, t = {0}, rd;
    struct replicafile *rf;

    memset(data, 3, sizeof(data));
    ck_assert_int_eq(create(12, 1), 0);
    ck_assert_int_eq(flush(12, 1), 0); /* nothing written: nothing to do */
    ck_assert_int_eq(replicas_write(reps, 12, 1, 4090, data, 100, done, &w), 0);
    wait_all(&w, 1);
    ck_assert_int_eq(flush(12, 2), -ESTALE);
    ck_assert_int_eq(flush(12, 1), 0);
    ck_assert_int_eq(replicas_trim(reps, 12, 1, 2, 4095, REPLICAS_REPORT, done, &t), 0);
    wait_all(&t, 1);
    ck_assert_int_eq(t.status, 0);
    ck_assert_uint_eq(t.info.length, 4095);
    ck_assert_uint_eq(t.info.version, 2);
    ck_assert_int_eq(nreported, 1);
    rd = read_sync(12, 2, 4090, 10);
    ck_assert_int_eq(rd.status, 0);
    ck_assert_uint_eq(rd.data[4], 3);
    ck_assert_uint_eq(rd.data[5], 0);
    free(rd.data);
    /* On disk: clean and at the new version. */
    ck_assert_int_eq(chunkstore_open_replica(cs, 12, &rf), 0);
    ck_assert_uint_eq(replicafile_header(rf)->flags, 0);
    ck_assert_uint_eq(replicafile_header(rf)->version, 2);
    replicafile_close(rf);
}
END_TEST

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

START_TEST(idle_files_stay_bounded)
{
    struct res rd;
    int base;

    stop();
    start(2);
    base = count_fds();
    for (uint64_t id = 1; id <= 10; id++) {
        ck_assert_int_eq(create(id, 1), 0);
        rd = read_sync(id, 1, 0, 100);
        ck_assert_int_eq(rd.status, 0);
        free(rd.data);
    }
    /* Ten replicas were opened; two stay open, with two descriptors each. */
    ck_assert_int_le(count_fds() - base, 4);
    ck_assert_int_ge(count_fds() - base, 2);
}
END_TEST

START_TEST(shutdown_answers_every_queued_op_once)
{
    enum { N = 100 };
    static struct res rs[N];
    static uint8_t data[4096];

    memset(rs, 0, sizeof(rs));
    ck_assert_int_eq(create(13, 1), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(replicas_write(reps, 13, 1, (uint64_t)i * 100, data, 4096, done, &rs[i]),
                         0);
    replicas_shutdown(reps);
    ck_assert_int_eq(replicas_write(reps, 13, 1, 0, data, 1, done, &rs[0]), -ECANCELED);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    {
        int ok = 0, canceled = 0;

        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(rs[i].calls, 1);
            ok += rs[i].status == 0;
            canceled += rs[i].status == -ECANCELED;
        }
        ck_assert_int_eq(ok + canceled, N);
        ck_assert_int_ge(canceled, 1);
        /* Those that ran did so in order: a prefix. */
        for (int i = 1; i < N; i++)
            if (rs[i].status == 0)
                ck_assert_int_eq(rs[i - 1].status, 0);
    }
}
END_TEST

START_TEST(install_replaces_and_reports)
{
    struct sidecar_header h = {14, 5, 4096, 0, CHUNK / KEEL_BLOCK_SIZE};
    uint64_t *sums = malloc(h.blocks * sizeof(*sums));
    struct replica_info ri = {14, 5, 4096, false};
    uint8_t block[4096];
    struct res in = {0}, again = {0}, rd;
    int dfd, mfd;

    ck_assert_int_eq(create(14, 2), 0);
    memset(block, 0x5a, sizeof(block));
    for (uint32_t b = 0; b < h.blocks; b++)
        sums[b] = csum_zero_block();
    sums[0] = csum_buf(block, sizeof(block));
    ck_assert_int_eq(chunkstore_tmp_create(cs, 14, 77, &dfd, &mfd), 0);
    ck_assert_int_eq(pwrite(dfd, block, sizeof(block), 0), 4096);
    ck_assert_int_eq(sidecar_write_new(mfd, &h, sums), 0);
    close(dfd);
    close(mfd);
    ck_assert_int_eq(replicas_install(reps, &ri, 77, done, &in), 0);
    ck_assert_int_eq(replicas_install(reps, &ri, 78, done, &again), 0);
    wait_all(&in, 1);
    wait_all(&again, 1);
    ck_assert_int_eq(in.status, 0);
    ck_assert_uint_eq(in.info.version, 5);
    ck_assert_int_eq(again.status, -EEXIST); /* not older than what is there */
    ck_assert_int_eq(nreported, 1);
    ck_assert_uint_eq(reported[0].version, 5);
    ck_assert_uint_eq(reported[0].length, 4096);
    rd = read_sync(14, 5, 0, 4096);
    ck_assert_int_eq(rd.status, 0);
    ck_assert_uint_eq(rd.data[4095], 0x5a);
    free(rd.data);

    /* Found corrupt, it is replaced by a copy at the very same version. */
    flip(14, "data", 100);
    rd = read_sync(14, 5, 0, 4096);
    ck_assert_int_eq(rd.status, -EIO);
    ck_assert_int_eq(chunkstore_tmp_create(cs, 14, 79, &dfd, &mfd), 0);
    ck_assert_int_eq(pwrite(dfd, block, sizeof(block), 0), 4096);
    ck_assert_int_eq(sidecar_write_new(mfd, &h, sums), 0);
    close(dfd);
    close(mfd);
    memset(&in, 0, sizeof(in));
    ck_assert_int_eq(replicas_install(reps, &ri, 79, done, &in), 0);
    wait_all(&in, 1);
    ck_assert_int_eq(in.status, 0);
    ck_assert(!in.info.corrupt);
    rd = read_sync(14, 5, 0, 4096);
    ck_assert_int_eq(rd.status, 0);
    ck_assert_uint_eq(rd.data[100], 0x5a);
    free(rd.data);
    free(sums);
}
END_TEST

static struct res write_sync(uint64_t id, uint64_t version, uint64_t off, const void *data,
                             size_t len);

START_TEST(take_hands_an_older_replica_to_a_copy_in_queue_order)
{
    const uint32_t blocks = CHUNK / KEEL_BLOCK_SIZE;
    uint64_t *sums = malloc(blocks * sizeof(*sums)), *want = malloc(blocks * sizeof(*want));
    uint8_t data[12288], back[12288];
    struct res w = {0}, tk = {0}, r;
    int dfd, mfd, old_fd;

    ck_assert_int_eq(create(15, 3), 0);
    fill(data, sizeof(data), 9);
    ck_assert_int_eq(chunkstore_tmp_create(cs, 15, 88, &dfd, &mfd), 0);
    old_fd = dfd;
    nreported = 0;
    /* A write queued before the take is part of it. */
    ck_assert_int_eq(replicas_write(reps, 15, 3, 4096, data, sizeof(data), done, &w), 0);
    ck_assert_int_eq(replicas_take(reps, 15, 4, 88, &dfd, sums, done, &tk), 0);
    wait_all(&w, 1);
    wait_all(&tk, 1);
    ck_assert_int_eq(w.status, 0);
    ck_assert_int_eq(tk.status, 0);
    ck_assert_uint_eq(tk.info.version, 3);
    /* The session's data file is the replica's data now, nothing copied. */
    ck_assert_int_ne(dfd, old_fd);
    ck_assert_int_eq(pread(dfd, back, sizeof(back), 4096), (ssize_t)sizeof(back));
    ck_assert_int_eq(memcmp(back, data, sizeof(data)), 0);
    for (uint32_t b = 0; b < blocks; b++)
        want[b] = csum_zero_block();
    csum_blocks(data, 3, want + 1);
    ck_assert_int_eq(memcmp(sums, want, blocks * sizeof(*sums)), 0);
    /* The replica is gone, and reported gone. */
    ck_assert_int_eq(replicas_read(reps, 15, 3, 0, 4096, 0, done, &r), -ENOENT);
    ck_assert_int_eq(nreported, 1);
    ck_assert(reported_deleted[0]);
    ck_assert_uint_eq(reported[0].chunk_id, 15);
    close(dfd);
    close(mfd);
    ck_assert_int_eq(chunkstore_tmp_remove(cs, 15, 88), 0);

    /* Nothing to bring up to date from a replica as new as the copy: it
     * stays a replica. */
    ck_assert_int_eq(create(17, 3), 0);
    ck_assert_int_eq(chunkstore_tmp_create(cs, 17, 89, &dfd, &mfd), 0);
    memset(&tk, 0, sizeof(tk));
    ck_assert_int_eq(replicas_take(reps, 17, 3, 89, &dfd, sums, done, &tk), 0);
    wait_all(&tk, 1);
    ck_assert_int_eq(tk.status, -EEXIST);
    r = read_sync(17, 3, 0, 4096);
    ck_assert_int_eq(r.status, 0);
    free(r.data);
    /* No replica, or a corrupt one: nothing to start from. */
    ck_assert_int_eq(replicas_take(reps, 16, 4, 89, &dfd, sums, done, &tk), -ENOENT);
    ck_assert_int_eq(write_sync(17, 3, 4096, data, 4096).status, 0);
    flip(17, "data", 5000);
    r = read_sync(17, 3, 4096, 4096);
    ck_assert_int_eq(r.status, -EIO);
    memset(&tk, 0, sizeof(tk));
    ck_assert_int_eq(replicas_take(reps, 17, 4, 89, &dfd, sums, done, &tk), 0);
    wait_all(&tk, 1);
    ck_assert_int_eq(tk.status, -EIO);
    close(dfd);
    close(mfd);
    free(sums);
    free(want);
}
END_TEST

static struct res write_sync(uint64_t id, uint64_t version, uint64_t off, const void *data,
                             size_t len)
{
    struct res r = {0};

    ck_assert_int_eq(replicas_write(reps, id, version, off, data, len, done, &r), 0);
    wait_all(&r, 1);
    return r;
}

START_TEST(disjoint_ops_do_not_wait_for_each_other)
{
    static uint8_t big[200 * 1024], small[4096], over[4096];
    struct res w1 = {0}, w2 = {0}, w3 = {0}, f = {0}, rd = {0};

    fill(big, sizeof(big), 1);
    fill(small, sizeof(small), 2);
    fill(over, sizeof(over), 3);
    ck_assert_int_eq(create(17, 1), 0);
    ck_assert_int_eq(write_sync(17, 1, 240 * 1024, small, 100).status, 0); /* now dirty */
    /* Too big for the loop: runs on the pool. */
    ck_assert_int_eq(replicas_write(reps, 17, 1, 0, big, sizeof(big), done, &w1), 0);
    ck_assert_int_eq(replicas_flush(reps, 17, 1, done, &f), 0);
    /* Other blocks: need not wait for the big write, nor for the flush. */
    ck_assert_int_eq(replicas_write(reps, 17, 1, 220 * 1024, small, sizeof(small), done, &w2), 0);
    /* The same blocks as the big write: after it. */
    ck_assert_int_eq(replicas_write(reps, 17, 1, 4096, over, sizeof(over), done, &w3), 0);
    ck_assert_int_eq(replicas_read(reps, 17, 1, 0, 8192, 0, done, &rd), 0);
    wait_all(&rd, 1);
    wait_all(&f, 1);
    wait_all(&w2, 1);
    ck_assert_int_eq(w1.status, 0);
    ck_assert_int_eq(w2.status, 0);
    ck_assert_int_eq(w3.status, 0);
    ck_assert_int_eq(f.status, 0);
    ck_assert_int_eq(rd.status, 0);
    ck_assert_int_lt(w2.order, w1.order);
    ck_assert_int_lt(w1.order, f.order); /* a flush covers the writes before it */
    ck_assert_int_lt(w1.order, w3.order);
    ck_assert_int_lt(w3.order, rd.order);
    ck_assert_int_eq(memcmp(rd.data, big, 4096), 0);
    ck_assert_int_eq(memcmp(rd.data + 4096, over, 4096), 0);
    free(rd.data);
    rd = read_sync(17, 1, 220 * 1024, sizeof(small));
    ck_assert_int_eq(memcmp(rd.data, small, sizeof(small)), 0);
    free(rd.data);
}
END_TEST

/* The replica's header as on disk now. */
static struct sidecar_header disk_header(uint64_t id)
{
    struct sidecar_header h;
    char rel[64], path[160];
    int fd;

    replica_path(id, "meta", rel, sizeof(rel));
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sidecar_read_header(fd, &h, false), 0);
    close(fd);
    return h;
}

static void on_nap(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop for ms milliseconds. */
static void run_for(unsigned ms)
{
    uv_timer_t t;
    bool over = false;

    uv_timer_init(&loop, &t);
    t.data = &over;
    uv_timer_start(&t, on_nap, ms, 0);
    while (!over)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

START_TEST(idle_replicas_settle_and_shutdown_settles_the_rest)
{
    uint8_t data[100];
    struct replicafile *rf;
    struct res rd;

    fill(data, sizeof(data), 4);
    ck_assert_int_eq(create(18, 1), 0);
    ck_assert_int_eq(create(19, 1), 0);
    ck_assert_int_eq(write_sync(18, 1, 5000, data, sizeof(data)).status, 0);
    ck_assert_uint_eq(disk_header(18).flags, SIDECAR_DIRTY);
    run_for(1700); /* idle for over a second: settles */
    ck_assert_uint_eq(disk_header(18).flags, 0);
    ck_assert_uint_eq(disk_header(18).length, 5100);
    rd = read_sync(18, 1, 5000, sizeof(data));
    ck_assert_int_eq(rd.status, 0);
    ck_assert_int_eq(memcmp(rd.data, data, sizeof(data)), 0);
    free(rd.data);
    /* Written just before a clean shutdown: settled on the way out. */
    ck_assert_int_eq(write_sync(19, 1, 0, data, sizeof(data)).status, 0);
    ck_assert_uint_eq(disk_header(19).flags, SIDECAR_DIRTY);
    stop_keep();
    ck_assert_uint_eq(disk_header(19).flags, 0);
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
    ck_assert_int_eq(chunkstore_open_replica(cs, 19, &rf), 0);
    ck_assert_uint_eq(replicafile_length(rf), sizeof(data));
    replicafile_close(rf);
    chunkstore_close(cs);
    cs = NULL;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

struct wanted {
    uint64_t chunk, off;
    unsigned found;
};

static int count_write(void *arg, const struct wal_record *rec, const void *data)
{
    struct wanted *q = arg;

    q->found += rec->kind == WAL_WRITE && rec->chunk_id == q->chunk && rec->off == q->off;
    return 0;
}

/* The writes of chunk id at off in the log on disk, as a second reader of
 * the live log finds them (what a replay would put back). */
static unsigned logged_writes(uint64_t id, uint64_t off)
{
    struct wanted q = {id, off, 0};
    struct wal *w;
    uint64_t n = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);

    ck_assert_int_ge(dfd, 0);
    ck_assert_int_eq(wal_open(dfd, "wal", WAL_MIN_SIZE, &w), 0);
    ck_assert_int_eq(wal_replay(w, count_write, &q, &n), 0);
    wal_close(w);
    close(dfd);
    return q.found;
}

START_TEST(flushes_of_logged_writes_commit_the_log)
{
    enum { N = 8 };
    struct res ws[N], fs[N];
    uint8_t data[4096];

    memset(ws, 0, sizeof(ws));
    memset(fs, 0, sizeof(fs));
    stop();
    start_with_log();
    fill(data, sizeof(data), 9);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(create(30 + i, 1), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(
            replicas_write(reps, 30 + i, 1, (uint64_t)i * 8192, data, sizeof(data), done, &ws[i]),
            0);
    wait_all(ws, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(ws[i].status, 0);
    ck_assert_uint_eq(chunkstore_log_committed(cs), 0); /* staged only */
    /* Flushed all at once, as the chunks of one flush request. */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(replicas_flush(reps, 30 + i, 1, done, &fs[i]), 0);
    wait_all(fs, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(fs[i].status, 0);
    ck_assert_uint_gt(chunkstore_log_committed(cs), 0);
    /* What they acknowledged is in the log on disk. */
    for (int i = 0; i < N; i++)
        ck_assert_uint_eq(logged_writes(30 + i, (uint64_t)i * 8192), 1);
    /* Nothing written since: done without a commit. */
    ck_assert_int_eq(flush(30, 1), 0);
}
END_TEST

static ino_t log_ino; /* of the log: its fdatasyncs are the ones held */

static struct chained {
    uint8_t data[4096];
    struct res first, write, second, late;
    unsigned late_on_disk; /* chunk 42's write in the log when its flush was answered */
} ch;

/* A flush's callback that writes another chunk and flushes it at once;
 * the commit that flush starts is held. */
static void flush_then_more(int status, struct replicas_result *rr, void *arg)
{
    done(status, rr, &ch.first);
    hold_sync(log_ino);
    ck_assert_int_eq(replicas_write(reps, 41, 1, 0, ch.data, sizeof(ch.data), done, &ch.write), 0);
    ck_assert_int_eq(replicas_flush(reps, 41, 1, done, &ch.second), 0);
}

static void late_flush_done(int status, struct replicas_result *rr, void *arg)
{
    done(status, rr, &ch.late);
    ch.late_on_disk = logged_writes(42, 0);
}

START_TEST(a_flush_is_answered_only_once_its_own_commit_is_done)
{
    struct res w42 = {0};
    struct stat st;
    char path[96];

    memset(&ch, 0, sizeof(ch));
    stop();
    start_with_log();
    snprintf(path, sizeof(path), "%s/wal", dir);
    ck_assert_int_eq(stat(path, &st), 0);
    log_ino = st.st_ino;
    fill(ch.data, sizeof(ch.data), 3);
    for (uint64_t id = 40; id <= 42; id++) {
        ck_assert_int_eq(create(id, 1), 0);
        ck_assert_int_eq(write_sync(id, 1, 8192, ch.data, sizeof(ch.data)).status, 0);
        ck_assert_int_eq(flush(id, 1), 0); /* dirty on disk: writes run on the loop */
    }
    ck_assert_int_eq(write_sync(40, 1, 0, ch.data, sizeof(ch.data)).status, 0);
    /* Chunk 40's commit is held in its device flush while chunk 42 is
     * written and flushed: 42's record is for the commit after it. */
    hold_sync(log_ino);
    ck_assert_int_eq(replicas_flush(reps, 40, 1, flush_then_more, NULL), 0);
    wait_sync_held();
    ck_assert_int_eq(replicas_write(reps, 42, 1, 0, ch.data, sizeof(ch.data), done, &w42), 0);
    wait_all(&w42, 1);
    ck_assert_int_eq(replicas_flush(reps, 42, 1, late_flush_done, NULL), 0);
    /* 40's callback starts a flush of 41, whose commit (42's too) is held:
     * 42's flush must not be answered meanwhile. */
    release_sync();
    wait_all(&ch.first, 1);
    wait_sync_held();
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(ch.late.calls, 0);
    release_sync();
    wait_all(&ch.second, 1);
    wait_all(&ch.late, 1);
    ck_assert_int_eq(ch.first.status, 0);
    ck_assert_int_eq(ch.write.status, 0);
    ck_assert_int_eq(ch.second.status, 0);
    ck_assert_int_eq(ch.late.status, 0);
    ck_assert_uint_eq(ch.late_on_disk, 1);
    ck_assert_uint_eq(logged_writes(41, 0), 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("replicas");
    TCase *tc = tcase_create("replicas");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, writes_of_one_chunk_apply_in_arrival_order);
    tcase_add_test(tc, version_is_checked_when_the_op_reaches_the_head);
    tcase_add_test(tc, set_version_rules);
    tcase_add_test(tc, corruption_found_by_a_read_is_persisted_and_reported);
    tcase_add_test(tc, scrub_finds_a_bad_checksum);
    tcase_add_test(tc, scrub_finds_files_removed_or_cut_behind_its_back);
    tcase_add_test(tc, delete_orders_with_earlier_ops_and_fails_later_ones);
    tcase_add_test(tc, synchronous_errors_never_call_back);
    tcase_add_test(tc, flush_makes_the_replica_clean);
    tcase_add_test(tc, flushes_of_logged_writes_commit_the_log);
    tcase_add_test(tc, a_flush_is_answered_only_once_its_own_commit_is_done);
    tcase_add_test(tc, idle_files_stay_bounded);
    tcase_add_test(tc, shutdown_answers_every_queued_op_once);
    tcase_add_test(tc, install_replaces_and_reports);
    tcase_add_test(tc, take_hands_an_older_replica_to_a_copy_in_queue_order);
    tcase_add_test(tc, disjoint_ops_do_not_wait_for_each_other);
    tcase_add_test(tc, idle_replicas_settle_and_shutdown_settles_the_rest);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
