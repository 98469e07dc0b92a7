/*
 * Unit tests for namenode/store: formatting and opening (unformatted,
 * foreign and bad settings refused), durability across reopen, chunk
 * records and versions, the file chunk map, chunk id reservation, and the
 * datanode registry records.
 */
#include "store.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static struct store *st;

static void rm_rf(const char *path)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    ck_assert_int_eq(system(cmd), 0);
}

static void format_dir(const char *d, uint64_t cs, uint32_t repl)
{
    struct store_settings cfg = {.chunk_size = cs, .replication = repl};
    char err[256];

    ck_assert_int_eq(store_format(d, &cfg, err, sizeof(err)), 0);
}

static void setup(void)
{
    char err[256];

    snprintf(dir, sizeof(dir), "/tmp/keel-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    format_dir(dir, 1 << 20, 3);
    ck_assert_int_eq(store_open(dir, &st, err, sizeof(err)), 0);
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    rm_rf(dir);
}

static MDB_txn *wbegin(void)
{
    MDB_txn *txn;

    ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
    return txn;
}

static void wcommit(MDB_txn *txn)
{
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
}

static MDB_txn *rbegin(void)
{
    MDB_txn *txn;

    ck_assert_int_eq(store_read_begin(st, &txn), 0);
    return txn;
}

static void reopen(void)
{
    char err[256];

    store_close(st);
    ck_assert_int_eq(store_open(dir, &st, err, sizeof(err)), 0);
}

/* A regular file inode made directly, for chunk tests. */
static uint64_t make_file(MDB_txn *txn)
{
    struct store_inode in = {0};

    ck_assert_int_eq(store_next_ino(st, txn, &in.ino), 0);
    in.mode = S_IFREG | 0644;
    in.nlink = 1;
    in.replication = 3;
    ck_assert_int_eq(store_inode_create(st, txn, &in, NULL, 0), 0);
    return in.ino;
}

START_TEST(format_and_open)
{
    const struct store_settings *cfg = store_get_settings(st);
    struct store_inode root;
    MDB_txn *txn = rbegin();

    ck_assert_uint_eq(cfg->chunk_size, 1 << 20);
    ck_assert_uint_eq(cfg->replication, 3);
    ck_assert_uint_ge(strlen(cfg->cluster_id), 16);
    ck_assert_int_eq(store_inode_get(st, txn, STORE_ROOT_INO, &root), 0);
    ck_assert(S_ISDIR(root.mode));
    ck_assert_uint_eq(root.nlink, 2);
    mdb_txn_abort(txn);
}
END_TEST

START_TEST(format_twice_refused)
{
    struct store_settings cfg = {.chunk_size = 1 << 20, .replication = 3};
    char err[256] = "";

    ck_assert_int_eq(store_format(dir, &cfg, err, sizeof(err)), -EEXIST);
    ck_assert_ptr_nonnull(strstr(err, "already"));
}
END_TEST

START_TEST(bad_settings_refused)
{
    char d[300];
    char err[256];
    struct store_settings bad_cs = {.chunk_size = 1000000, .replication = 3};
    struct store_settings tiny = {.chunk_size = 4096, .replication = 3};
    struct store_settings bad_r = {.chunk_size = 1 << 20, .replication = 0};
    struct store_settings big_r = {.chunk_size = 1 << 20, .replication = 17};
    struct stat sb;

    snprintf(d, sizeof(d), "%s/other", dir);
    ck_assert_int_eq(store_format(d, &bad_cs, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(store_format(d, &tiny, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(store_format(d, &bad_r, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(store_format(d, &big_r, err, sizeof(err)), -EINVAL);
    ck_assert_int_ne(stat(d, &sb), 0); /* nothing was created */
}
END_TEST

START_TEST(open_unformatted_and_foreign)
{
    char d[300], f[400];
    char err[256];
    struct store *s2 = NULL;
    MDB_env *env;
    int fd;

    snprintf(d, sizeof(d), "%s/empty", dir);
    ck_assert_int_eq(mkdir(d, 0700), 0);
    ck_assert_int_eq(store_open(d, &s2, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "--format"));

    /* An LMDB environment that is not ours. */
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_open(env, d, 0, 0600), 0);
    mdb_env_close(env);
    ck_assert_int_eq(store_open(d, &s2, err, sizeof(err)), -EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "not a Keel"));

    /* Not LMDB at all. */
    snprintf(f, sizeof(f), "%s/data.mdb", d);
    unlink(f);
    snprintf(f, sizeof(f), "%s/lock.mdb", d);
    unlink(f);
    snprintf(f, sizeof(f), "%s/data.mdb", d);
    fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    for (int i = 0; i < 64; i++)
        ck_assert_int_eq(write(fd, "garbage garbage garbage garbage!", 32), 32);
    close(fd);
    ck_assert_int_eq(store_open(d, &s2, err, sizeof(err)), -EPROTO);
    ck_assert_ptr_null(s2);
}
END_TEST

START_TEST(chunks_and_versions)
{
    MDB_txn *txn = wbegin();
    struct store_chunk c;
    uint64_t ino = make_file(txn), id;
    struct store_inode in;

    ck_assert_int_eq(store_chunk_add(st, txn, ino, 0, 100, 3), 0);
    ck_assert_int_eq(store_chunk_add(st, txn, ino, 5, 101, 2), 0);
    ck_assert_int_eq(store_chunk_add(st, txn, ino, 5, 102, 2), -EEXIST);  /* index taken */
    ck_assert_int_eq(store_chunk_add(st, txn, ino, 6, 100, 2), -EEXIST);  /* id taken */
    ck_assert_int_eq(store_chunk_add(st, txn, 9999, 0, 103, 2), -ENOENT); /* no inode */
    ck_assert_int_eq(store_chunk_add(st, txn, 1, 0, 104, 2), -EINVAL);    /* a directory */
    ck_assert_int_eq(store_chunk_add(st, txn, ino, 1ull << 50, 105, 2), -EINVAL);
    ck_assert_int_eq(store_chunk_add(st, txn, ino, 1, 0, 2), -EINVAL);
    wcommit(txn);

    reopen();
    txn = wbegin();
    ck_assert_int_eq(store_chunk_get(st, txn, 100, &c), 0);
    ck_assert_uint_eq(c.version, 1);
    ck_assert_uint_eq(c.refs, 1);
    ck_assert_uint_eq(c.ino, ino);
    ck_assert_uint_eq(c.index, 0);
    ck_assert_uint_eq(c.replication, 3);
    ck_assert_int_eq(store_inode_get(st, txn, ino, &in), 0);
    ck_assert_uint_eq(in.nchunks, 2);
    ck_assert_int_eq(store_file_chunk(st, txn, ino, 5, &id), 0);
    ck_assert_uint_eq(id, 101);
    ck_assert_int_eq(store_file_chunk(st, txn, ino, 4, &id), -ENOENT);

    ck_assert_int_eq(store_chunk_set_version(st, txn, 100, 1, 2), 0);
    ck_assert_int_eq(store_chunk_set_version(st, txn, 100, 1, 3), -ESTALE);
    ck_assert_int_eq(store_chunk_set_version(st, txn, 555, 1, 2), -ENOENT);
    ck_assert_int_eq(store_chunk_get(st, txn, 100, &c), 0);
    ck_assert_uint_eq(c.version, 2);
    mdb_txn_abort(txn); /* nothing of this is kept */

    txn = rbegin();
    ck_assert_int_eq(store_chunk_get(st, txn, 100, &c), 0);
    ck_assert_uint_eq(c.version, 1);
    mdb_txn_abort(txn);
}
END_TEST

struct seen {
    uint64_t idx[16], ids[16];
    int n;
};

static int collect(uint64_t index, uint64_t chunk_id, void *arg)
{
    struct seen *s = arg;

    s->idx[s->n] = index;
    s->ids[s->n++] = chunk_id;
    return 0;
}

static int count_chunk(const struct store_chunk *c, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

START_TEST(file_chunk_ranges_and_drop)
{
    MDB_txn *txn = wbegin();
    uint64_t a = make_file(txn), b = make_file(txn), removed = 0;
    struct store_chunk_list freed = {0};
    struct seen s = {0};
    int n = 0;

    for (uint64_t i = 0; i < 6; i++)
        ck_assert_int_eq(store_chunk_add(st, txn, a, i * 2, 200 + i, 3), 0);
    ck_assert_int_eq(store_chunk_add(st, txn, b, 0, 300, 3), 0);
    ck_assert_int_eq(store_file_chunks(st, txn, a, 3, 8, collect, &s), 0);
    ck_assert_int_eq(s.n, 3);
    ck_assert_uint_eq(s.idx[0], 4);
    ck_assert_uint_eq(s.ids[0], 202);
    ck_assert_uint_eq(s.idx[2], 8);

    ck_assert_int_eq(store_file_chunks_drop(st, txn, a, 5, &freed, &removed), 0);
    ck_assert_uint_eq(removed, 3);
    ck_assert_uint_eq(freed.n, 3);
    ck_assert_uint_eq(freed.v[0].id, 203);
    ck_assert_uint_eq(freed.v[2].id, 205);
    ck_assert_int_eq(store_chunks_foreach(st, txn, count_chunk, &n), 0);
    ck_assert_int_eq(n, 4); /* 3 left of a, 1 of b */
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(store_file_chunks(st, txn, b, 0, UINT64_MAX, collect, &s), 0);
    ck_assert_int_eq(s.n, 1);
    store_chunk_list_free(&freed);
    wcommit(txn);
}
END_TEST

START_TEST(chunk_ids_reserved_not_reused)
{
    MDB_txn *txn = wbegin();
    uint64_t a, b, c;

    ck_assert_int_eq(store_reserve_chunk_ids(st, txn, 100, &a), 0);
    ck_assert_int_eq(store_reserve_chunk_ids(st, txn, 100, &b), 0);
    ck_assert_uint_ge(a, 1);
    ck_assert_uint_eq(b, a + 100);
    wcommit(txn);
    txn = wbegin();
    ck_assert_int_eq(store_reserve_chunk_ids(st, txn, 10, &c), 0);
    mdb_txn_abort(txn); /* an uncommitted reservation is forgotten... */
    reopen();
    txn = wbegin();
    ck_assert_int_eq(store_reserve_chunk_ids(st, txn, 10, &c), 0);
    ck_assert_uint_eq(c, b + 100); /* ...but a committed one survives */
    ck_assert_int_eq(store_reserve_chunk_ids(st, txn, 0, &c), -EOVERFLOW);
    wcommit(txn);
}
END_TEST

static int count_node(const struct store_node *n, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

START_TEST(nodes)
{
    struct store_node n = {0}, m = {0}, got;
    MDB_txn *txn = wbegin();
    int count = 0;

    snprintf(n.addr, sizeof(n.addr), "127.0.0.1:4000");
    snprintf(n.domain, sizeof(n.domain), "rack-a");
    n.capacity = 1000;
    ck_assert_int_eq(store_node_register(st, txn, &n), 0);
    ck_assert_uint_ne(n.id, 0);
    m = n;
    m.id = 0;
    ck_assert_int_eq(store_node_register(st, txn, &m), 0);
    ck_assert_uint_ne(m.id, n.id);
    wcommit(txn);
    reopen();

    txn = wbegin();
    ck_assert_int_eq(store_node_get(st, txn, n.id, &got), 0);
    ck_assert_str_eq(got.addr, "127.0.0.1:4000");
    ck_assert_str_eq(got.domain, "rack-a");
    ck_assert_uint_eq(got.capacity, 1000);
    /* Re-registration updates the address and keeps the id. */
    snprintf(got.addr, sizeof(got.addr), "127.0.0.1:5000");
    ck_assert_int_eq(store_node_register(st, txn, &got), 0);
    ck_assert_int_eq(store_node_get(st, txn, n.id, &got), 0);
    ck_assert_str_eq(got.addr, "127.0.0.1:5000");
    got.id = 77;
    ck_assert_int_eq(store_node_register(st, txn, &got), -ENOENT);
    ck_assert_int_eq(store_nodes_foreach(st, txn, count_node, &count), 0);
    ck_assert_int_eq(count, 2);
    wcommit(txn);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, format_and_open);
    tcase_add_test(tc, format_twice_refused);
    tcase_add_test(tc, bad_settings_refused);
    tcase_add_test(tc, open_unformatted_and_foreign);
    tcase_add_test(tc, chunks_and_versions);
    tcase_add_test(tc, file_chunk_ranges_and_drop);
    tcase_add_test(tc, chunk_ids_reserved_not_reused);
    tcase_add_test(tc, nodes);
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
