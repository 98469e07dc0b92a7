/*
 * Unit tests for namenode/commit: operations submitted together share one
 * write transaction; operations arriving while a batch commits form the
 * next one; a failing operation is rolled back alone; completions run on
 * the loop only after the commit, never inside commit_submit; what a
 * completion reported as done is on disk after reopening the environment.
 */
#include "commit.h"
#include "store.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOPS 300

static char dir[256];
static uv_loop_t loop;
static MDB_env *env;
static MDB_dbi dbi;
static struct commit *cm;

struct op {
    struct commit_op base;
    uint32_t key;
    size_t vlen;      /* value size written */
    int fail;         /* return this from apply after writing */
    unsigned slow_ms; /* sleep in apply (to hold a batch in flight) */
    int done;
    int status;
    int in_submit;
};

static int submitting;
static int completed;

static void open_env(size_t mapsize)
{
    MDB_txn *txn;

    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, mapsize), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, MDB_NOTLS, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/keel-commit-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    open_env(64 << 20);
    ck_assert_int_eq(commit_new(&loop, env, 0, &cm), 0);
    submitting = 0;
    completed = 0;
}

static void teardown(void)
{
    char cmd[300];

    commit_close(cm);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    mdb_env_close(env);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int apply(MDB_txn *txn, struct commit_op *base)
{
    struct op *op = (struct op *)base;
    MDB_val k = {sizeof(op->key), &op->key}, v;
    char *buf;
    int r;

    if (op->slow_ms)
        usleep(op->slow_ms * 1000);
    buf = calloc(1, op->vlen);
    v.mv_size = op->vlen;
    v.mv_data = buf;
    r = mdb_put(txn, dbi, &k, &v, 0);
    free(buf);
    if (r)
        return store_errno(r);
    return op->fail;
}

static void done(struct commit_op *base, int status)
{
    struct op *op = (struct op *)base;

    op->done++;
    op->status = status;
    op->in_submit = submitting;
    completed++;
}

static void submit(struct op *op, uint32_t key)
{
    op->base.apply = apply;
    op->base.done = done;
    op->key = key;
    if (!op->vlen)
        op->vlen = 16;
    submitting = 1;
    commit_submit(cm, &op->base);
    submitting = 0;
}

static void run_until_completed(int n)
{
    for (int i = 0; i < 100000 && completed < n; i++)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(completed, n);
}

static bool key_on_disk(uint32_t key)
{
    MDB_txn *txn;
    MDB_val k = {sizeof(key), &key}, v;
    int r;

    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    r = mdb_get(txn, dbi, &k, &v);
    mdb_txn_abort(txn);
    ck_assert(r == 0 || r == MDB_NOTFOUND);
    return r == 0;
}

static void reopen_env(void)
{
    mdb_env_close(env);
    open_env(64 << 20);
}

START_TEST(one_transaction_for_a_burst)
{
    static struct op ops[NOPS];
    struct commit_stats s;

    memset(ops, 0, sizeof(ops));
    for (int i = 0; i < NOPS; i++)
        submit(&ops[i], (uint32_t)i);
    for (int i = 0; i < NOPS; i++)
        ck_assert_int_eq(ops[i].done, 0); /* nothing completes inside submit */
    run_until_completed(NOPS);
    commit_get_stats(cm, &s);
    ck_assert_uint_eq(s.batches, 1);
    ck_assert_uint_eq(s.ops, NOPS);
    ck_assert_uint_eq(s.max_batch, NOPS);
    reopen_env();
    for (int i = 0; i < NOPS; i++) {
        ck_assert_int_eq(ops[i].done, 1);
        ck_assert_int_eq(ops[i].status, 0);
        ck_assert_int_eq(ops[i].in_submit, 0);
        ck_assert(key_on_disk((uint32_t)i));
    }
}
END_TEST

static struct op late[NOPS];

static void submit_late(uv_timer_t *t)
{
    for (int i = 0; i < NOPS; i++)
        submit(&late[i], 1000 + (uint32_t)i);
}

START_TEST(arrivals_during_a_commit_form_the_next_batch)
{
    struct op first = {.slow_ms = 300};
    struct commit_stats s;
    uv_timer_t t;

    memset(late, 0, sizeof(late));
    submit(&first, 1);
    /* While the first batch sleeps in apply, NOPS more arrive. */
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, submit_late, 50, 0);
    run_until_completed(1 + NOPS);
    commit_get_stats(cm, &s);
    ck_assert_uint_eq(s.batches, 2);
    ck_assert_uint_eq(s.max_batch, NOPS);
    ck_assert_int_eq(first.status, 0);
    for (int i = 0; i < NOPS; i++)
        ck_assert_int_eq(late[i].status, 0);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}
END_TEST

START_TEST(a_failed_operation_is_rolled_back_alone)
{
    struct op a = {0}, b = {.fail = -EEXIST}, c = {0};

    submit(&a, 1);
    submit(&b, 2);
    submit(&c, 3);
    run_until_completed(3);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(b.status, -EEXIST);
    ck_assert_int_eq(c.status, 0);
    reopen_env();
    ck_assert(key_on_disk(1));
    ck_assert(!key_on_disk(2)); /* its write was rolled back */
    ck_assert(key_on_disk(3));
}
END_TEST

START_TEST(map_full_fails_only_the_operation)
{
    struct op small = {0}, huge = {.vlen = 8 << 20}, after = {0};

    /* A 4 MiB map: the 8 MiB value cannot fit. */
    commit_close(cm);
    uv_run(&loop, UV_RUN_DEFAULT);
    mdb_env_close(env);
    open_env(4 << 20);
    ck_assert_int_eq(commit_new(&loop, env, 0, &cm), 0);
    submit(&small, 1);
    submit(&huge, 2);
    submit(&after, 3);
    run_until_completed(3);
    ck_assert_int_eq(huge.status, -ENOSPC);
    ck_assert(!key_on_disk(2));
    /* LMDB may refuse the rest of that transaction; either way nothing
     * is reported done that is not on disk. */
    ck_assert_int_eq(key_on_disk(1), small.status == 0);
    ck_assert_int_eq(key_on_disk(3), after.status == 0);
}
END_TEST

static struct op chain[3];

static void chained_done(struct commit_op *base, int status)
{
    done(base, status);
    if (base == &chain[0].base)
        submit(&chain[1], 11);
}

START_TEST(completions_may_submit_and_close_drains)
{
    memset(chain, 0, sizeof(chain));
    chain[0].base.apply = apply;
    chain[0].base.done = chained_done;
    chain[0].key = 10;
    chain[0].vlen = 8;
    commit_submit(cm, &chain[0].base);
    commit_close(cm); /* still runs what is queued and what completions add */
    run_until_completed(2);
    uv_run(&loop, UV_RUN_DEFAULT); /* the close completes: cm is freed */
    cm = NULL;
    ck_assert_int_eq(chain[1].status, 0);
    ck_assert(key_on_disk(11));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("commit");
    TCase *tc = tcase_create("commit");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, one_transaction_for_a_burst);
    tcase_add_test(tc, arrivals_during_a_commit_form_the_next_batch);
    tcase_add_test(tc, a_failed_operation_is_rolled_back_alone);
    tcase_add_test(tc, map_full_fails_only_the_operation);
    tcase_add_test(tc, completions_may_submit_and_close_drains);
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
