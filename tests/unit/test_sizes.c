/*
 * Unit tests for namenode/sizes over a real store and group commit: a
 * grown size is visible at once and committed shortly after, many grows
 * share one commit, sizes never shrink, a size grown during a commit stays
 * for the next one, a hold commits the inode's size ahead of the operation
 * that takes it and a superseding operation drops it, deleted inodes
 * commit as nothing, the overlay is bounded, and closing commits what is
 * left.
 */
#include "commit.h"
#include "nstree.h"
#include "sizes.h"
#include "store.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CS (1u << 20)

static uv_loop_t loop;
static char dir[256];
static struct store *st;
static struct commit *cm;
static struct sizes *z;

static uint64_t make_file(const char *path)
{
    struct nstree_create_args a = {.path = path, .mode = 0644, .now = 1};
    struct store_inode in;
    MDB_txn *txn;
    bool created;

    ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
    ck_assert_int_eq(nstree_create(st, txn, &a, &in, &created, NULL), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    return in.ino;
}

/* The committed inode. */
static struct store_inode committed(uint64_t ino)
{
    struct store_inode in;
    MDB_txn *txn;

    ck_assert_int_eq(store_read_begin(st, &txn), 0);
    ck_assert_int_eq(store_inode_get(st, txn, ino, &in), 0);
    mdb_txn_abort(txn);
    return in;
}

static void run_until_idle(void)
{
    /* A few loop turns for the timer, then until nothing is committing. */
    for (int i = 0; i < 2000; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (i > 5 && commit_idle(cm)) {
            struct sizes_stats s;

            sizes_get_stats(z, &s);
            if (s.entries == 0)
                return;
        }
        usleep(1000);
    }
}

/* Runs the loop for about ms milliseconds. */
static void run_for(unsigned ms)
{
    for (unsigned i = 0; i < ms; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void setup(void)
{
    struct store_settings cfg = {.chunk_size = CS, .replication = 3};
    char err[256];

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    snprintf(dir, sizeof(dir), "/tmp/keel-sizes-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(store_format(dir, &cfg, err, sizeof(err)), 0);
    ck_assert_int_eq(store_open(dir, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(commit_new(&loop, store_env(st), 0, &cm), 0);
    z = sizes_new(&loop, cm, st, 2, 4);
}

static void teardown(void)
{
    char cmd[300];

    sizes_close(z);
    commit_close(cm);
    uv_run(&loop, UV_RUN_DEFAULT);
    sizes_free(z);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(visible_at_once_committed_soon)
{
    uint64_t ino = make_file("/a"), vis;
    struct store_inode in;
    struct sizes_stats s;

    ck_assert_int_eq(sizes_grow(z, ino, 0, 5000, 777, false, &vis), 0);
    ck_assert_uint_eq(vis, 5000);
    ck_assert_uint_eq(sizes_visible(z, ino, 0), 5000);
    ck_assert_uint_eq(committed(ino).size, 0); /* not yet */
    in = committed(ino);
    sizes_apply(z, &in);
    ck_assert_uint_eq(in.size, 5000);
    ck_assert_int_eq(in.mtime, 777);
    /* Many more grows before the timer: one commit carries the last. */
    for (uint64_t sz = 5001; sz <= 6000; sz++)
        ck_assert_int_eq(sizes_grow(z, ino, 0, sz, 778, false, &vis), 0);
    /* A smaller size never shrinks what clients see. */
    ck_assert_int_eq(sizes_grow(z, ino, 0, 100, 779, false, &vis), 0);
    ck_assert_uint_eq(vis, 6000);
    run_until_idle();
    in = committed(ino);
    ck_assert_uint_eq(in.size, 6000);
    ck_assert_int_eq(in.mtime, 778);
    sizes_get_stats(z, &s);
    ck_assert_uint_eq(s.commits, 1);
    ck_assert_uint_eq(s.entries, 0);
    ck_assert_uint_eq(s.grows, 1001);
    /* Committed already: visible is the committed size. */
    ck_assert_uint_eq(sizes_visible(z, ino, 6000), 6000);
    ck_assert_int_eq(sizes_grow(z, ino, 6000, 10, 780, false, &vis), 0);
    ck_assert_uint_eq(vis, 6000);
}
END_TEST

/* A touch (the data changed, the size did not) moves mtime and ctime up,
 * at once for clients and then in LMDB, and never back. */
START_TEST(a_touch_moves_the_times_without_growing)
{
    uint64_t ino = make_file("/t"), vis;
    struct store_inode in;

    ck_assert_int_eq(sizes_grow(z, ino, 0, 4000, 10, false, &vis), 0);
    run_until_idle();
    ck_assert_uint_eq(committed(ino).size, 4000);
    ck_assert_int_eq(committed(ino).mtime, 10);
    /* Not a touch, not a grow: nothing. */
    ck_assert_int_eq(sizes_grow(z, ino, 4000, 100, 15, false, &vis), 0);
    ck_assert_uint_eq(vis, 4000);
    in = committed(ino);
    sizes_apply(z, &in);
    ck_assert_int_eq(in.mtime, 10);
    ck_assert_int_eq(sizes_grow(z, ino, 4000, 100, 20, true, &vis), 0);
    ck_assert_uint_eq(vis, 4000);
    in = committed(ino);
    sizes_apply(z, &in);
    ck_assert_uint_eq(in.size, 4000);
    ck_assert_int_eq(in.mtime, 20);
    ck_assert_int_eq(in.ctime, 20);
    /* A touch alone is committed up to a second later ... */
    run_for(100);
    ck_assert_int_eq(committed(ino).mtime, 10);
    run_until_idle();
    in = committed(ino);
    ck_assert_uint_eq(in.size, 4000);
    ck_assert_int_eq(in.mtime, 20);
    ck_assert_int_eq(in.ctime, 20);
    /* ... but a grow after it soon, the touch with it. */
    ck_assert_int_eq(sizes_grow(z, ino, 4000, 0, 30, true, &vis), 0);
    ck_assert_int_eq(sizes_grow(z, ino, 4000, 5000, 31, false, &vis), 0);
    run_for(100);
    ck_assert_uint_eq(committed(ino).size, 5000);
    ck_assert_int_eq(committed(ino).mtime, 31);
    run_until_idle();
    /* A touch stamped earlier (a clock that stepped back) keeps the later. */
    ck_assert_int_eq(sizes_grow(z, ino, 4000, 0, 18, true, &vis), 0);
    run_until_idle();
    ck_assert_int_eq(committed(ino).mtime, 31);
    ck_assert_uint_eq(committed(ino).size, 5000);
}
END_TEST

START_TEST(grown_again_while_committing)
{
    uint64_t ino = make_file("/a"), vis;
    struct sizes_stats s;

    ck_assert_int_eq(sizes_grow(z, ino, 0, 1000, 1, false, &vis), 0);
    /* Turn the loop until the commit is in flight, then grow again. */
    for (int i = 0; i < 1000 && commit_idle(cm); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(200);
    }
    ck_assert(!commit_idle(cm));
    ck_assert_int_eq(sizes_grow(z, ino, 0, 2000, 2, false, &vis), 0);
    run_until_idle();
    ck_assert_uint_eq(committed(ino).size, 2000);
    sizes_get_stats(z, &s);
    ck_assert_uint_eq(s.commits, 2);
    ck_assert_uint_eq(s.entries, 0);
}
END_TEST

struct truncate_op {
    struct commit_op op;
    uint64_t ino, size;
    int status;
    bool done;
};

static int truncate_apply(MDB_txn *txn, struct commit_op *op)
{
    struct truncate_op *t = (struct truncate_op *)op;
    struct nstree_setattr_args a = {
        .ino = t->ino, .valid = NSTREE_SET_SIZE, .size = t->size, .now = 5};
    struct store_inode out;

    return nstree_setattr(st, txn, &a, &out, NULL);
}

static void truncate_done(struct commit_op *op, int status)
{
    struct truncate_op *t = (struct truncate_op *)op;

    t->status = status;
    t->done = true;
}

START_TEST(a_hold_goes_first_and_a_truncate_wins)
{
    uint64_t ino = make_file("/a"), vis;
    struct truncate_op t = {.op = {truncate_apply, truncate_done}, .size = 10};

    t.ino = ino;
    ck_assert_int_eq(sizes_grow(z, ino, 0, 90000, 1, false, &vis), 0);
    /* The truncate is submitted at once after the hold: the grown size
     * must be committed before it, not after (which would undo it). */
    sizes_hold(z, ino);
    commit_submit(cm, &t.op);
    ck_assert_int_eq(sizes_grow(z, ino, 0, 95000, 2, false, &vis), -EAGAIN);
    for (int i = 0; i < 2000 && !t.done; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(500);
    }
    ck_assert(t.done);
    ck_assert_int_eq(t.status, 0);
    sizes_release(z, ino, true);
    run_until_idle();
    ck_assert_uint_eq(committed(ino).size, 10);
    ck_assert_uint_eq(sizes_visible(z, ino, 10), 10);
    ck_assert_int_eq(sizes_grow(z, ino, 10, 20, 3, false, &vis), 0);
    ck_assert_uint_eq(vis, 20);
    run_until_idle();
    ck_assert_uint_eq(committed(ino).size, 20);
    /* A hold that does not supersede keeps an entry it did not commit. */
    sizes_hold(z, ino);
    sizes_release(z, ino, false);
    sizes_release(z, 12345, true); /* never held: ignored */
}
END_TEST

START_TEST(deleted_files_and_bounds)
{
    uint64_t a = make_file("/a"), b = make_file("/b"), vis;
    uint64_t others[4];
    MDB_txn *txn;
    struct sizes_stats s;

    ck_assert_int_eq(sizes_grow(z, a, 0, 100, 1, false, &vis), 0);
    ck_assert_int_eq(sizes_grow(z, b, 0, 200, 1, false, &vis), 0);
    /* /a is deleted before the commit: it commits as nothing, /b still. */
    ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
    ck_assert_int_eq(nstree_unlink(st, txn, "/a", 2, NULL), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    run_until_idle();
    ck_assert_uint_eq(committed(b).size, 200);
    sizes_get_stats(z, &s);
    ck_assert_uint_eq(s.entries, 0);
    /* At most 4 inodes in the overlay here: the fifth waits its turn. */
    for (int i = 0; i < 4; i++) {
        char p[16];

        snprintf(p, sizeof(p), "/f%d", i);
        others[i] = make_file(p);
        ck_assert_int_eq(sizes_grow(z, others[i], 0, 10, 3, false, &vis), 0);
    }
    ck_assert_int_eq(sizes_grow(z, b, 200, 300, 3, false, &vis), -EAGAIN);
    ck_assert_int_eq(sizes_grow(z, others[0], 0, 20, 3, false, &vis), 0); /* present: fine */
    run_until_idle();
    ck_assert_int_eq(sizes_grow(z, b, 200, 300, 3, false, &vis), 0);
}
END_TEST

START_TEST(closing_commits_what_is_left)
{
    uint64_t ino = make_file("/a"), vis;

    ck_assert_int_eq(sizes_grow(z, ino, 0, 4242, 1, false, &vis), 0);
    sizes_close(z);
    ck_assert_int_eq(sizes_grow(z, ino, 0, 5000, 1, false, &vis), -EAGAIN);
    for (int i = 0; i < 2000 && !commit_idle(cm); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(500);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_uint_eq(committed(ino).size, 4242);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sizes");
    TCase *tc = tcase_create("sizes");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, visible_at_once_committed_soon);
    tcase_add_test(tc, a_touch_moves_the_times_without_growing);
    tcase_add_test(tc, grown_again_while_committing);
    tcase_add_test(tc, a_hold_goes_first_and_a_truncate_wins);
    tcase_add_test(tc, deleted_files_and_bounds);
    tcase_add_test(tc, closing_commits_what_is_left);
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
