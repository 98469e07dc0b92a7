/*
 * Unit tests for datanode/wal: what a commit makes durable comes back from
 * a reopen, in order, and nothing else does: records never committed,
 * records a barrier made obsolete, a torn segment and everything after it,
 * segments from before a reset, segments freed by a checkpoint. Also the
 * ring's wrap, a full log, and commits from several threads at once.
 */
#include "datanode/wal.h"
#include "syswrap.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SEEN 4096

static char dir[64];
static int dirfd_;
static struct wal *w;

struct seen {
    struct wal_record rec[MAX_SEEN];
    uint8_t first[MAX_SEEN]; /* first byte of each record's data */
    uint8_t last[MAX_SEEN];  /* and its last */
    size_t n;
};
static struct seen seen;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/keel-ut-wal.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dirfd_, 0);
    memset(&seen, 0, sizeof(seen));
}

static void teardown(void)
{
    wal_close(w);
    w = NULL;
    close(dirfd_);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int collect(void *arg, const struct wal_record *r, const void *data)
{
    struct seen *s = arg;
    const uint8_t *d = data;

    ck_assert_uint_lt(s->n, MAX_SEEN);
    ck_assert_uint_eq(r->kind, WAL_WRITE);
    s->rec[s->n] = *r;
    s->first[s->n] = d[0];
    s->last[s->n] = d[r->len - 1];
    s->n++;
    return 0;
}

/* Opens (creating) the log, replays it into `seen`, and resets it. */
static void open_log(uint64_t size)
{
    uint64_t n = 0;

    wal_close(w);
    w = NULL;
    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(wal_open(dirfd_, "wal", size, &w), 0);
    ck_assert_int_eq(wal_replay(w, collect, &seen, &n), 0);
    ck_assert_uint_eq(n, seen.n);
    ck_assert_int_eq(wal_reset(w, "test-boot"), 0);
}

static uint64_t put(uint64_t chunk, uint64_t off, uint32_t len, uint8_t fill)
{
    struct wal_record r = {chunk, 7, off, len, WAL_WRITE};
    uint8_t *buf = malloc(len);
    uint64_t n;

    memset(buf, fill, len);
    buf[len - 1] = (uint8_t)(fill + 1);
    n = wal_append(w, &r, buf);
    free(buf);
    return n;
}

static uint64_t barrier(uint64_t chunk, uint64_t upto)
{
    struct wal_record r = {chunk, 0, upto, 0, WAL_BARRIER};

    return wal_append(w, &r, NULL);
}

static void expect(size_t i, uint64_t chunk, uint64_t off, uint32_t len, uint8_t fill)
{
    ck_assert_uint_lt(i, seen.n);
    ck_assert_uint_eq(seen.rec[i].chunk_id, chunk);
    ck_assert_uint_eq(seen.rec[i].version, 7);
    ck_assert_uint_eq(seen.rec[i].off, off);
    ck_assert_uint_eq(seen.rec[i].len, len);
    ck_assert_uint_eq(seen.first[i], fill);
    ck_assert_uint_eq(seen.last[i], (uint8_t)(fill + 1));
}

/* Flips one byte of the log file, at off. */
static void damage(uint64_t off)
{
    int fd = openat(dirfd_, "wal", O_RDWR);
    uint8_t b;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x5a;
    ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

START_TEST(committed_records_come_back_in_order)
{
    uint64_t n;

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 0);
    ck_assert_uint_gt(put(1, 0, 4096, 0x10), 0);
    ck_assert_uint_gt(put(2, 8192, 100, 0x20), 0);
    n = put(1, 4096, WAL_MAX_RECORD, 0x30);
    ck_assert_uint_gt(n, 0);
    ck_assert_int_eq(wal_commit(w, n), 0);
    ck_assert(wal_has_chunk(w, 1));
    ck_assert(wal_has_chunk(w, 2));
    ck_assert(!wal_has_chunk(w, 3));
    /* Staged, never committed: lost, as it was never acknowledged. */
    ck_assert_uint_gt(put(3, 0, 4096, 0x40), 0);

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 3);
    expect(0, 1, 0, 4096, 0x10);
    expect(1, 2, 8192, 100, 0x20);
    expect(2, 1, 4096, WAL_MAX_RECORD, 0x30);

    /* Replayed and reset: the next start has nothing to do. */
    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 0);
}
END_TEST

START_TEST(bad_records_are_refused)
{
    struct wal_record r = {1, 7, 0, WAL_MAX_RECORD + 1, WAL_WRITE};
    uint8_t buf[16] = {0};

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(wal_append(w, &r, buf), 0);
    r.len = 0;
    ck_assert_uint_eq(wal_append(w, &r, buf), 0);
    ck_assert_int_eq(wal_commit(w, 1), -EINVAL); /* never given */
}
END_TEST

START_TEST(a_barrier_makes_earlier_records_obsolete)
{
    uint64_t mark, n;

    open_log(WAL_MIN_SIZE);
    put(1, 0, 4096, 0x10);
    put(2, 0, 4096, 0x20);
    ck_assert_int_eq(wal_commit(w, put(1, 4096, 4096, 0x11)), 0);
    mark = wal_last(w);
    /* Staged while the sync the barrier stands for ran: stays live. */
    put(1, 8192, 4096, 0x13);
    barrier(1, mark);
    n = put(1, 0, 4096, 0x12);
    ck_assert_int_eq(wal_commit(w, n), 0);

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 3);
    expect(0, 2, 0, 4096, 0x20);
    expect(1, 1, 8192, 4096, 0x13);
    expect(2, 1, 0, 4096, 0x12);
}
END_TEST

START_TEST(wal_barrier_commits_or_checkpoints)
{
    uint64_t n;

    open_log(WAL_MIN_SIZE);
    ck_assert_int_eq(wal_barrier(w, 4, wal_last(w)), 0); /* no record: nothing */
    ck_assert_uint_eq(wal_used(w), 0);
    ck_assert_int_eq(wal_commit(w, put(4, 0, 4096, 0x10)), 0);
    ck_assert_int_eq(wal_barrier(w, 4, wal_last(w)), 0);
    /* Fill the log: the next barrier finds no room and checkpoints. */
    while ((n = put(5, 0, WAL_MAX_RECORD, 0x20)) != 0)
        ck_assert_int_eq(wal_commit(w, n), 0);
    while ((n = put(5, 0, 4096, 0x30)) != 0)
        ck_assert_int_eq(wal_commit(w, n), 0);
    while ((n = barrier(5, wal_last(w))) != 0) /* use up the room kept for barriers */
        ck_assert_int_eq(wal_commit(w, n), 0);
    ck_assert_int_eq(wal_barrier(w, 5, wal_last(w)), 0);
    ck_assert(!wal_has_chunk(w, 5));
    ck_assert(!wal_has_chunk(w, 4));

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 0);
}
END_TEST

START_TEST(a_barrier_commits_a_full_stage_rather_than_checkpoint)
{
    unsigned staged = 0;

    open_log(16ull << 20);
    while (put(7, (uint64_t)staged * 65536, WAL_MAX_RECORD, (uint8_t)staged) != 0)
        ck_assert_uint_lt(++staged, 200); /* never committed: the stage fills */
    ck_assert_uint_gt(staged, 30);
    ck_assert_int_eq(wal_barrier(w, 7, 0), 0); /* makes nothing obsolete */
    ck_assert_uint_gt(wal_used(w), 0);         /* committed, not checkpointed */

    open_log(16ull << 20);
    ck_assert_uint_eq(seen.n, staged);
    expect(staged - 1, 7, (uint64_t)(staged - 1) * 65536, WAL_MAX_RECORD, (uint8_t)(staged - 1));
}
END_TEST

START_TEST(a_torn_segment_ends_the_log)
{
    open_log(WAL_MIN_SIZE);
    /* Three commits of one 4 KiB record: segments at 8192, 16384, 24576. */
    ck_assert_int_eq(wal_commit(w, put(1, 0, 4096, 0x10)), 0);
    ck_assert_int_eq(wal_commit(w, put(1, 4096, 4096, 0x20)), 0);
    ck_assert_int_eq(wal_commit(w, put(1, 8192, 4096, 0x30)), 0);
    damage(16384 + 4096 + 100); /* the second segment's data */

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 1);
    expect(0, 1, 0, 4096, 0x10);

    /* A commit of the same size now lands where the torn one was. The
     * third segment, whole and next in number, is from before the reset
     * and must stay dead. */
    ck_assert_int_eq(wal_commit(w, put(5, 0, 4096, 0x50)), 0);
    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 1);
    expect(0, 5, 0, 4096, 0x50);
}
END_TEST

START_TEST(a_damaged_header_ends_the_log)
{
    open_log(WAL_MIN_SIZE);
    ck_assert_int_eq(wal_commit(w, put(1, 0, 4096, 0x10)), 0);
    ck_assert_int_eq(wal_commit(w, put(1, 0, 4096, 0x20)), 0);
    damage(16384 + 8); /* the second segment's number */
    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 1);
    expect(0, 1, 0, 4096, 0x10);
}
END_TEST

START_TEST(the_ring_wraps_and_checkpoints_free_it)
{
    unsigned since = 0, checkpoints = 0;

    open_log(WAL_MIN_SIZE);
    /* 200 commits of 64 KiB: about twice around an 8 MiB log. */
    for (unsigned i = 0; i < 200; i++) {
        uint64_t n = put(1 + i % 5, (uint64_t)i * 65536, WAL_MAX_RECORD, (uint8_t)i);

        ck_assert_uint_gt(n, 0);
        ck_assert_int_eq(wal_commit(w, n), 0);
        since++;
        if (wal_wants_checkpoint(w)) {
            ck_assert_int_eq(wal_checkpoint(w), 0);
            checkpoints++;
            since = 0;
        }
        ck_assert_uint_le(wal_used(w), WAL_MIN_SIZE - 4096);
    }
    ck_assert_uint_ge(checkpoints, 3);

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, since);
    for (unsigned k = 0; k < since; k++) {
        unsigned i = 200 - since + k;

        expect(k, 1 + i % 5, (uint64_t)i * 65536, WAL_MAX_RECORD, (uint8_t)i);
    }
}
END_TEST

START_TEST(a_full_log_refuses_appends_until_a_checkpoint)
{
    unsigned committed = 0;
    uint64_t n;

    open_log(WAL_MIN_SIZE);
    while ((n = put(9, 0, WAL_MAX_RECORD, 0x33)) != 0) {
        ck_assert_int_eq(wal_commit(w, n), 0);
        ck_assert_uint_lt(++committed, 200);
    }
    ck_assert_uint_gt(committed, 20);
    n = barrier(9, wal_last(w)); /* barriers still find room */
    ck_assert_uint_gt(n, 0);
    ck_assert_int_eq(wal_commit(w, n), 0);
    ck_assert(wal_has_chunk(w, 9));
    ck_assert_int_eq(wal_checkpoint(w), 0);
    ck_assert(!wal_has_chunk(w, 9));
    ck_assert_uint_eq(wal_used(w), 0);
    n = put(9, 0, 4096, 0x44);
    ck_assert_uint_gt(n, 0);
    ck_assert_int_eq(wal_commit(w, n), 0);

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 1);
    expect(0, 9, 0, 4096, 0x44);
}
END_TEST

START_TEST(a_failed_commit_is_never_replayed)
{
    uint64_t n;

    open_log(WAL_MIN_SIZE);
    n = put(3, 0, 4096, 0x31);
    ck_assert_int_eq(wal_commit(w, n), 0);
    n = put(3, 4096, 4096, 0x32);
    fdatasync_errno = EIO; /* written whole, but not known to be durable */
    ck_assert_int_eq(wal_commit(w, n), -EIO);
    /* The flush that needed it syncs the file instead, then commits a
     * barrier, which the failed log turns into a checkpoint. */
    ck_assert_int_eq(wal_barrier(w, 3, n), 0);
    /* Its records are gone with the others: later flushes of the chunk
     * need no barrier (each would be a checkpoint now). */
    ck_assert(!wal_has_chunk(w, 3));

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 0);
}
END_TEST

START_TEST(a_segment_that_ends_the_file_leaves_the_next_at_the_start)
{
    uint64_t blocks = WAL_MIN_SIZE / 4096 - 1, n; /* behind the superblock */

    open_log(WAL_MIN_SIZE);
    /* Segments of two blocks (a header, 4 KiB of data) up to the file's
     * last block, then one of a barrier alone, which ends the file. */
    for (uint64_t i = 0; i < (blocks - 1) / 2; i++) {
        n = put(1, (i % 16) * 4096, 4096, (uint8_t)i);
        ck_assert_uint_gt(n, 0);
        ck_assert_int_eq(wal_commit(w, n), 0);
        if (wal_wants_checkpoint(w))
            ck_assert_int_eq(wal_checkpoint(w), 0);
    }
    n = barrier(1, wal_last(w));
    ck_assert_int_eq(wal_commit(w, n), 0);
    ck_assert_int_eq(wal_checkpoint(w), 0); /* the tail at the file's end */
    n = put(2, 0, 4096, 0x77);
    ck_assert_int_eq(wal_commit(w, n), 0);

    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 1);
    expect(0, 2, 0, 4096, 0x77);
}
END_TEST

START_TEST(a_checkpoint_needs_something_committed)
{
    uint64_t n, staged = 0;

    open_log(WAL_MIN_SIZE);
    /* A full stage, half the log and more, none of it committed: a
     * checkpoint would free nothing, and the checkpointer would spin. */
    while ((n = put(6, 0, WAL_MAX_RECORD, 0x66)) != 0)
        ck_assert_uint_lt(++staged, 200);
    ck_assert_uint_gt(staged, 8);
    ck_assert(!wal_wants_checkpoint(w));
    ck_assert_int_eq(wal_commit(w, wal_last(w)), 0);
    ck_assert(wal_wants_checkpoint(w));
}
END_TEST

START_TEST(a_failed_checkpoint_keeps_the_log_for_replay)
{
    uint64_t n, used, got = 0;

    open_log(WAL_MIN_SIZE);
    n = put(4, 0, 4096, 0x50);
    ck_assert_int_eq(wal_commit(w, n), 0);
    used = wal_used(w);
    syncfs_errno = EIO;
    ck_assert_int_eq(wal_checkpoint(w), -EIO);
    /* The kernel reports a writeback error once: a later syncfs succeeds
     * though the page it lost never reached the disk. */
    syncfs_errno = 0;
    ck_assert_int_eq(wal_checkpoint(w), -EIO);
    ck_assert_uint_eq(wal_used(w), used);
    ck_assert(!wal_wants_checkpoint(w));
    ck_assert(wal_has_chunk(w, 4));
    n = put(5, 8192, 4096, 0x60);
    ck_assert_int_eq(wal_commit(w, n), 0);

    /* Under the same boot, the superblock's flag asks for a replay. */
    wal_close(w);
    ck_assert_int_eq(wal_open(dirfd_, "wal", WAL_MIN_SIZE, &w), 0);
    ck_assert(wal_must_replay(w));
    ck_assert_int_eq(wal_replay(w, collect, &seen, &got), 0);
    ck_assert_uint_eq(got, 2);
    expect(0, 4, 0, 4096, 0x50);
    expect(1, 5, 8192, 4096, 0x60);
    ck_assert_int_eq(wal_reset(w, "test-boot"), 0);
    ck_assert(!wal_must_replay(w));
}
END_TEST

/* The generation of the superblock copy in block `slot`. */
static uint64_t super_gen(int slot)
{
    uint8_t b[8];
    int fd = openat(dirfd_, "wal", O_RDONLY);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, b, 8, slot * 4096 + 88), 8);
    close(fd);
    return (uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24 |
           (uint64_t)b[4] << 32 | (uint64_t)b[5] << 40 | (uint64_t)b[6] << 48 |
           (uint64_t)b[7] << 56;
}

START_TEST(a_torn_superblock_leaves_the_copy_before_it)
{
    uint64_t n;

    open_log(WAL_MIN_SIZE);
    n = put(7, 0, 4096, 0x70);
    ck_assert_int_eq(wal_commit(w, n), 0);
    n = put(7, 4096, 4096, 0x71);
    ck_assert_int_eq(wal_commit(w, n), 0);
    ck_assert_int_eq(wal_checkpoint(w), 0);
    n = put(8, 0, 4096, 0x80);
    ck_assert_int_eq(wal_commit(w, n), 0);
    /* The checkpoint's copy is the newer one; tear it. The copy before it
     * has the tail before the checkpoint: the records it freed come back
     * (they are in their files anyway), and those after it too. */
    damage(super_gen(1) > super_gen(0) ? 4096 + 20 : 20);
    open_log(WAL_MIN_SIZE);
    ck_assert_uint_eq(seen.n, 3);
    expect(0, 7, 0, 4096, 0x70);
    expect(1, 7, 4096, 4096, 0x71);
    expect(2, 8, 0, 4096, 0x80);
    /* A copy that cannot be read stops the open, whichever it is: the
     * other may describe a tail the ring has written over since. */
    wal_close(w);
    w = NULL;
    for (off_t slot = 0; slot < 2; slot++) {
        pread_fails_at = slot * 4096;
        ck_assert_int_eq(wal_open(dirfd_, "wal", WAL_MIN_SIZE, &w), -EIO);
        pread_fails_at = -1;
    }
    /* Both torn: not a log any more. */
    wal_close(w);
    w = NULL;
    damage(20);
    damage(4096 + 20);
    ck_assert_int_eq(wal_open(dirfd_, "wal", WAL_MIN_SIZE, &w), -EBADMSG);
}
END_TEST

START_TEST(a_log_of_another_layout_is_refused_as_such)
{
    int fd;
    uint8_t one = 1;

    open_log(WAL_MIN_SIZE);
    wal_close(w);
    w = NULL;
    fd = openat(dirfd_, "wal", O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, &one, 1, 8), 1); /* the layout, in both copies */
    ck_assert_int_eq(pwrite(fd, &one, 1, 4096 + 8), 1);
    close(fd);
    ck_assert_int_eq(wal_open(dirfd_, "wal", WAL_MIN_SIZE, &w), -EPROTONOSUPPORT);
}
END_TEST

START_TEST(a_log_keeps_its_size_and_a_stranger_is_refused)
{
    struct wal *other;
    int fd;

    open_log(WAL_MIN_SIZE * 2);
    ck_assert_int_eq(wal_commit(w, put(1, 0, 4096, 0x10)), 0);
    open_log(WAL_MIN_SIZE); /* the size asked for no longer matters */
    ck_assert_uint_eq(seen.n, 1);
    ck_assert_int_eq(wal_open(dirfd_, "wal", 4097 * 1024, &other), -EINVAL);

    fd = openat(dirfd_, "junk", O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, WAL_MIN_SIZE), 0);
    close(fd);
    ck_assert_int_eq(wal_open(dirfd_, "junk", WAL_MIN_SIZE, &other), -EBADMSG);
}
END_TEST

#define THREADS    4
#define PER_THREAD 150

static void *writer(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;

    for (unsigned i = 0; i < PER_THREAD; i++) {
        uint64_t n = put(100 + t, (uint64_t)i * 4096, 4096, (uint8_t)i);

        ck_assert_uint_gt(n, 0);
        ck_assert_int_eq(wal_commit(w, n), 0);
    }
    return NULL;
}

START_TEST(commits_from_many_threads)
{
    pthread_t th[THREADS];
    unsigned next[THREADS] = {0};

    open_log(16ull << 20);
    for (unsigned t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&th[t], NULL, writer, (void *)(uintptr_t)t), 0);
    for (unsigned t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    open_log(16ull << 20);
    ck_assert_uint_eq(seen.n, THREADS * PER_THREAD);
    for (size_t k = 0; k < seen.n; k++) {
        unsigned t = (unsigned)(seen.rec[k].chunk_id - 100), i;

        ck_assert_uint_lt(t, THREADS);
        i = next[t]++; /* each thread's records in its order */
        ck_assert_uint_eq(seen.rec[k].off, (uint64_t)i * 4096);
        ck_assert_uint_eq(seen.first[k], (uint8_t)i);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("wal");
    TCase *tc = tcase_create("wal");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, committed_records_come_back_in_order);
    tcase_add_test(tc, bad_records_are_refused);
    tcase_add_test(tc, a_barrier_makes_earlier_records_obsolete);
    tcase_add_test(tc, wal_barrier_commits_or_checkpoints);
    tcase_add_test(tc, a_barrier_commits_a_full_stage_rather_than_checkpoint);
    tcase_add_test(tc, a_torn_segment_ends_the_log);
    tcase_add_test(tc, a_damaged_header_ends_the_log);
    tcase_add_test(tc, the_ring_wraps_and_checkpoints_free_it);
    tcase_add_test(tc, a_full_log_refuses_appends_until_a_checkpoint);
    tcase_add_test(tc, a_failed_checkpoint_keeps_the_log_for_replay);
    tcase_add_test(tc, a_failed_commit_is_never_replayed);
    tcase_add_test(tc, a_torn_superblock_leaves_the_copy_before_it);
    tcase_add_test(tc, a_log_of_another_layout_is_refused_as_such);
    tcase_add_test(tc, a_segment_that_ends_the_file_leaves_the_next_at_the_start);
    tcase_add_test(tc, a_checkpoint_needs_something_committed);
    tcase_add_test(tc, a_log_keeps_its_size_and_a_stranger_is_refused);
    tcase_add_test(tc, commits_from_many_threads);
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
