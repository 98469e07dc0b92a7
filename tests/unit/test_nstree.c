/*
 * Unit tests for namenode/nstree: every namespace operation, its POSIX
 * invariants (nlink, times, never-reused inode numbers) and its errors
 * (bad names and paths, wrong types, missing parents, non-empty
 * directories), over a real LMDB store in a temp directory.
 */
#include "nstree.h"
#include "store.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char dir[256];
static struct store *st;
static MDB_txn *txn;
static int64_t clock_ns = 1000;

static void setup(void)
{
    struct store_settings cfg = {.chunk_size = 1 << 20, .replication = 3};
    char err[256];

    snprintf(dir, sizeof(dir), "/tmp/keel-nstree-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(store_format(dir, &cfg, err, sizeof(err)), 0);
    ck_assert_int_eq(store_open(dir, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
}

static void teardown(void)
{
    char cmd[300];

    if (txn)
        mdb_txn_abort(txn);
    txn = NULL;
    store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int64_t tick(void)
{
    return clock_ns += 1000;
}

static struct store_inode mkdir_ok(const char *path)
{
    struct store_inode in;

    ck_assert_int_eq(nstree_mkdir(st, txn, path, 0755, 1, 2, tick(), &in), 0);
    return in;
}

static int create(const char *path, bool excl, bool trunc, struct store_chunk_list *freed,
                  struct store_inode *out)
{
    struct nstree_create_args a = {.path = path,
                                   .mode = 0644,
                                   .uid = 10,
                                   .gid = 20,
                                   .exclusive = excl,
                                   .truncate = trunc,
                                   .now = tick()};
    struct store_inode in;
    bool created;

    return nstree_create(st, txn, &a, out ? out : &in, &created, freed);
}

static struct store_inode create_ok(const char *path)
{
    struct store_inode in;

    ck_assert_int_eq(create(path, true, false, NULL, &in), 0);
    return in;
}

static struct store_inode stat_ok(const char *path)
{
    struct store_inode in;

    ck_assert_int_eq(nstree_stat(st, txn, path, &in), 0);
    return in;
}

static int stat_err(const char *path)
{
    struct store_inode in;

    return nstree_stat(st, txn, path, &in);
}

/* Maps chunks 0..n-1 of a file with ids base+i. */
static void add_chunks(uint64_t ino, uint64_t base, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(store_chunk_add(st, txn, ino, (uint64_t)i, base + (uint64_t)i, 3), 0);
}

START_TEST(path_syntax)
{
    char name[300], longpath[5000];

    ck_assert_int_eq(nstree_check_path("/"), 0);
    ck_assert_int_eq(nstree_check_path("//a///b/"), 0);
    ck_assert_int_eq(nstree_check_path(""), -EINVAL);
    ck_assert_int_eq(nstree_check_path("a/b"), -EINVAL);
    ck_assert_int_eq(nstree_check_path("/a/./b"), -EINVAL);
    ck_assert_int_eq(nstree_check_path("/a/../b"), -EINVAL);
    ck_assert_int_eq(nstree_check_path("/.."), -EINVAL);
    ck_assert_int_eq(nstree_check_path("/..."), 0);
    ck_assert_int_eq(nstree_check_path(NULL), -EINVAL);
    memset(name, 'n', sizeof(name));
    name[0] = '/';
    name[256] = '\0'; /* a 255-byte name */
    ck_assert_int_eq(nstree_check_path(name), 0);
    name[256] = 'n';
    name[257] = '\0';
    ck_assert_int_eq(nstree_check_path(name), -ENAMETOOLONG);
    for (int i = 0; i < 4900; i += 2) {
        longpath[i] = '/';
        longpath[i + 1] = 'x';
    }
    longpath[4900] = '\0';
    ck_assert_int_eq(nstree_check_path(longpath), -ENAMETOOLONG);

    /* Every operation refuses them, and nothing changes. */
    ck_assert_int_eq(nstree_mkdir(st, txn, "/a/../b", 0755, 0, 0, tick(), NULL), -EINVAL);
    ck_assert_int_eq(create("relative", true, false, NULL, NULL), -EINVAL);
    ck_assert_int_eq(create(name, true, false, NULL, NULL), -ENAMETOOLONG);
    ck_assert_int_eq(nstree_unlink(st, txn, "/.", tick(), NULL), -EINVAL);
    ck_assert_int_eq(nstree_rename(st, txn, "/x", "/..", 0, tick(), NULL), -EINVAL);
    ck_assert_uint_eq(stat_ok("/").nlink, 2);
}
END_TEST

START_TEST(mkdir_and_stat)
{
    struct store_inode a, b, root;

    a = mkdir_ok("/a");
    ck_assert(S_ISDIR(a.mode));
    ck_assert_uint_eq(a.mode & 07777, 0755);
    ck_assert_uint_eq(a.nlink, 2);
    ck_assert_uint_eq(a.uid, 1);
    b = mkdir_ok("//a/b/");
    ck_assert_uint_gt(b.ino, a.ino);
    ck_assert_uint_eq(stat_ok("/a").nlink, 3);
    root = stat_ok("/");
    ck_assert_uint_eq(root.ino, STORE_ROOT_INO);
    ck_assert_uint_eq(root.nlink, 3);
    ck_assert_uint_eq(stat_ok("/a/b").ino, b.ino);

    ck_assert_int_eq(nstree_mkdir(st, txn, "/a", 0755, 0, 0, tick(), &a), -EEXIST);
    ck_assert_int_eq(nstree_mkdir(st, txn, "/", 0755, 0, 0, tick(), &a), -EEXIST);
    ck_assert_int_eq(nstree_mkdir(st, txn, "/none/x", 0755, 0, 0, tick(), &a), -ENOENT);
    create_ok("/f");
    ck_assert_int_eq(nstree_mkdir(st, txn, "/f/x", 0755, 0, 0, tick(), &a), -ENOTDIR);
    ck_assert_int_eq(stat_err("/f/x"), -ENOTDIR);
    ck_assert_int_eq(stat_err("/nothing"), -ENOENT);
}
END_TEST

START_TEST(create_open_truncate)
{
    struct store_chunk_list freed = {0};
    struct store_inode f, g, d;
    struct nstree_create_args a = {.path = "/big", .mode = 0600, .size = 1ull << 40, .now = 5};
    bool created;

    f = create_ok("/f");
    ck_assert(S_ISREG(f.mode));
    ck_assert_uint_eq(f.mode & 07777, 0644);
    ck_assert_uint_eq(f.replication, 3);
    ck_assert_uint_eq(f.nlink, 1);
    ck_assert_int_eq(create("/f", true, false, NULL, NULL), -EEXIST);
    ck_assert_int_eq(nstree_create(st, txn, &a, &g, &created, NULL), 0);
    ck_assert(created);
    ck_assert_uint_eq(g.size, 1ull << 40); /* thin: nothing allocated */
    ck_assert_uint_eq(g.nchunks, 0);
    a.now = 6;
    ck_assert_int_eq(nstree_create(st, txn, &a, &g, &created, NULL), 0);
    ck_assert(!created);

    add_chunks(f.ino, 500, 3);
    ck_assert_int_eq(create("/f", false, true, &freed, &g), 0);
    ck_assert_uint_eq(g.ino, f.ino);
    ck_assert_uint_eq(g.size, 0);
    ck_assert_uint_eq(g.nchunks, 0);
    ck_assert_uint_eq(freed.n, 3);
    store_chunk_list_free(&freed);

    d = mkdir_ok("/d");
    (void)d;
    ck_assert_int_eq(create("/d", false, false, NULL, NULL), -EISDIR);
    ck_assert_int_eq(create("/", false, false, NULL, NULL), -EISDIR);
    a.path = "/bad";
    a.mode = S_IFDIR | 0755;
    ck_assert_int_eq(nstree_create(st, txn, &a, &g, &created, NULL), -EINVAL);
    a.mode = 0644;
    a.replication = 17;
    ck_assert_int_eq(nstree_create(st, txn, &a, &g, &created, NULL), -EINVAL);
    a.replication = 2;
    a.size = STORE_MAX_FILE_SIZE + 1;
    ck_assert_int_eq(nstree_create(st, txn, &a, &g, &created, NULL), -EFBIG);
    a.size = 0;
    ck_assert_int_eq(nstree_create(st, txn, &a, &g, &created, NULL), 0);
    ck_assert_uint_eq(g.replication, 2);
}
END_TEST

struct listing {
    char names[64][32];
    int n;
};

static void list_cb(const char *name, size_t len, const struct store_inode *in, void *arg)
{
    struct listing *l = arg;

    ck_assert_uint_lt(len, 32);
    memcpy(l->names[l->n], name, len);
    l->names[l->n++][len] = '\0';
    ck_assert_uint_ne(in->ino, 0);
}

START_TEST(readdir_pages)
{
    struct listing l = {0};
    char p[32], after[32];
    bool eof;

    mkdir_ok("/d");
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof(p), "/d/f%02d", i);
        create_ok(p);
    }
    ck_assert_int_eq(nstree_readdir(st, txn, "/d", "", 4, list_cb, &l, &eof), 0);
    ck_assert_int_eq(l.n, 4);
    ck_assert(!eof);
    ck_assert_str_eq(l.names[0], "f00");
    ck_assert_str_eq(l.names[3], "f03");
    snprintf(after, sizeof(after), "%s", l.names[3]);

    /* Changes between pages do not move the page boundary. */
    ck_assert_int_eq(nstree_unlink(st, txn, "/d/f03", tick(), NULL), 0);
    create_ok("/d/f00a");
    l.n = 0;
    ck_assert_int_eq(nstree_readdir(st, txn, "/d", after, 4, list_cb, &l, &eof), 0);
    ck_assert_int_eq(l.n, 4);
    ck_assert_str_eq(l.names[0], "f04");
    l.n = 0;
    ck_assert_int_eq(nstree_readdir(st, txn, "/d", "f07", 4, list_cb, &l, &eof), 0);
    ck_assert_int_eq(l.n, 2);
    ck_assert(eof);
    l.n = 0;
    ck_assert_int_eq(nstree_readdir(st, txn, "/d", "f09", 4, list_cb, &l, &eof), 0);
    ck_assert_int_eq(l.n, 0);
    ck_assert(eof);
    /* Exactly max entries left: the next page is empty and eof. */
    l.n = 0;
    ck_assert_int_eq(nstree_readdir(st, txn, "/d", "f07", 2, list_cb, &l, &eof), 0);
    ck_assert_int_eq(l.n, 2);

    l.n = 0;
    mkdir_ok("/e");
    ck_assert_int_eq(nstree_readdir(st, txn, "/e", "", 10, list_cb, &l, &eof), 0);
    ck_assert_int_eq(l.n, 0);
    ck_assert(eof);
    ck_assert_int_eq(nstree_readdir(st, txn, "/d/f00", "", 10, list_cb, &l, &eof), -ENOTDIR);
    ck_assert_int_eq(nstree_readdir(st, txn, "/zz", "", 10, list_cb, &l, &eof), -ENOENT);
}
END_TEST

START_TEST(unlink_and_hard_links)
{
    struct store_chunk_list freed = {0};
    struct store_inode f, l, first;
    uint64_t ids[2];

    first = create_ok("/f");
    f = create_ok("/g");
    add_chunks(f.ino, 700, 2);
    ck_assert_int_eq(nstree_link(st, txn, "/g", "/h", tick(), &l), 0);
    ck_assert_uint_eq(l.ino, f.ino);
    ck_assert_uint_eq(l.nlink, 2);
    ck_assert_int_eq(nstree_unlink(st, txn, "/g", tick(), &freed), 0);
    ck_assert_uint_eq(freed.n, 0); /* still linked as /h */
    ck_assert_uint_eq(stat_ok("/h").nlink, 1);
    ck_assert_int_eq(stat_err("/g"), -ENOENT);
    ck_assert_int_eq(nstree_unlink(st, txn, "/h", tick(), &freed), 0);
    ck_assert_uint_eq(freed.n, 2);
    ck_assert_uint_eq(freed.v[0].id, 700);
    ck_assert_int_eq(store_inode_get(st, txn, f.ino, &l), -ENOENT);
    ck_assert_int_eq(store_file_chunk(st, txn, f.ino, 0, &ids[0]), -ENOENT);
    store_chunk_list_free(&freed);

    ck_assert_int_eq(nstree_unlink(st, txn, "/h", tick(), NULL), -ENOENT);
    mkdir_ok("/d");
    ck_assert_int_eq(nstree_unlink(st, txn, "/d", tick(), NULL), -EISDIR);
    ck_assert_int_eq(nstree_unlink(st, txn, "/", tick(), NULL), -EISDIR);
    ck_assert_int_eq(nstree_link(st, txn, "/d", "/d2", tick(), &l), -EPERM);
    ck_assert_int_eq(nstree_link(st, txn, "/f", "/d", tick(), &l), -EEXIST);
    ck_assert_int_eq(nstree_link(st, txn, "/nope", "/x", tick(), &l), -ENOENT);

    /* Inode numbers are never reused. */
    ck_assert_int_eq(nstree_unlink(st, txn, "/f", tick(), NULL), 0);
    ck_assert_uint_gt(create_ok("/f").ino, f.ino);
    ck_assert_uint_gt(f.ino, first.ino);
}
END_TEST

START_TEST(rmdir_rules)
{
    mkdir_ok("/a");
    mkdir_ok("/a/b");
    create_ok("/a/f");
    ck_assert_int_eq(nstree_rmdir(st, txn, "/a", tick()), -ENOTEMPTY);
    ck_assert_int_eq(nstree_rmdir(st, txn, "/a/f", tick()), -ENOTDIR);
    ck_assert_int_eq(nstree_rmdir(st, txn, "/", tick()), -EBUSY);
    ck_assert_int_eq(nstree_rmdir(st, txn, "/a/zz", tick()), -ENOENT);
    ck_assert_uint_eq(stat_ok("/a").nlink, 3);
    ck_assert_int_eq(nstree_rmdir(st, txn, "/a/b", tick()), 0);
    ck_assert_uint_eq(stat_ok("/a").nlink, 2);
    ck_assert_int_eq(nstree_unlink(st, txn, "/a/f", tick(), NULL), 0);
    ck_assert_int_eq(nstree_rmdir(st, txn, "/a", tick()), 0);
    ck_assert_uint_eq(stat_ok("/").nlink, 2);
}
END_TEST

START_TEST(rename_rules)
{
    struct store_chunk_list freed = {0};
    struct store_inode a, f, g, l;
    int64_t before;

    a = mkdir_ok("/a");
    mkdir_ok("/a/sub");
    mkdir_ok("/b");
    f = create_ok("/a/f");
    g = create_ok("/b/g");
    add_chunks(g.ino, 900, 2);

    /* A file over a file: the target's chunks are freed. */
    ck_assert_int_eq(nstree_rename(st, txn, "/a/f", "/b/g", 0, tick(), &freed), 0);
    ck_assert_uint_eq(stat_ok("/b/g").ino, f.ino);
    ck_assert_int_eq(stat_err("/a/f"), -ENOENT);
    ck_assert_uint_eq(freed.n, 2);
    store_chunk_list_free(&freed);

    /* NOREPLACE, unknown flags, missing source. */
    create_ok("/b/h");
    ck_assert_int_eq(nstree_rename(st, txn, "/b/g", "/b/h", NSTREE_RENAME_NOREPLACE, tick(), NULL),
                     -EEXIST);
    ck_assert_int_eq(nstree_rename(st, txn, "/b/g", "/b/x", 8, tick(), NULL), -EINVAL);
    ck_assert_int_eq(nstree_rename(st, txn, "/b/none", "/b/x", 0, tick(), NULL), -ENOENT);
    ck_assert_int_eq(nstree_rename(st, txn, "/b/g", "/none/x", 0, tick(), NULL), -ENOENT);

    /* Directories: into itself, over non-directories and non-empty ones. */
    ck_assert_int_eq(nstree_rename(st, txn, "/a", "/a/sub/x", 0, tick(), NULL), -EINVAL);
    ck_assert_int_eq(nstree_rename(st, txn, "/a", "/b/g", 0, tick(), NULL), -ENOTDIR);
    ck_assert_int_eq(nstree_rename(st, txn, "/b/g", "/a", 0, tick(), NULL), -EISDIR);
    ck_assert_int_eq(nstree_rename(st, txn, "/a", "/b", 0, tick(), NULL), -ENOTEMPTY);
    ck_assert_int_eq(nstree_rename(st, txn, "/", "/x", 0, tick(), NULL), -EBUSY);
    ck_assert_int_eq(nstree_rename(st, txn, "/a", "/", 0, tick(), NULL), -EBUSY);

    /* A directory over an empty directory, across parents: nlinks follow. */
    mkdir_ok("/b/empty");
    ck_assert_uint_eq(stat_ok("/b").nlink, 3);
    ck_assert_uint_eq(stat_ok("/a").nlink, 3);
    ck_assert_int_eq(nstree_rename(st, txn, "/a/sub", "/b/empty", 0, tick(), NULL), 0);
    ck_assert_uint_eq(stat_ok("/a").nlink, 2);
    ck_assert_uint_eq(stat_ok("/b").nlink, 3);
    ck_assert_int_eq(stat_err("/a/sub"), -ENOENT);
    ck_assert(S_ISDIR(stat_ok("/b/empty").mode));

    /* Moving a whole tree keeps what is inside it. */
    create_ok("/b/empty/deep");
    before = stat_ok("/b/empty/deep").ctime;
    ck_assert_int_eq(nstree_rename(st, txn, "/b", "/a/b2", 0, tick(), NULL), 0);
    ck_assert_uint_eq(stat_ok("/a/b2/empty/deep").ctime, before);
    ck_assert_uint_eq(stat_ok("/a").nlink, 3);
    ck_assert_uint_eq(stat_ok("/").nlink, 3);
    ck_assert_uint_eq(stat_ok("/a").ino, a.ino);

    /* Two names of one file: nothing happens. */
    ck_assert_int_eq(nstree_link(st, txn, "/a/b2/g", "/a/b2/g2", tick(), &l), 0);
    ck_assert_int_eq(nstree_rename(st, txn, "/a/b2/g", "/a/b2/g2", 0, tick(), NULL), 0);
    ck_assert_uint_eq(stat_ok("/a/b2/g").nlink, 2);
    ck_assert_uint_eq(stat_ok("/a/b2/g2").nlink, 2);
    /* Renaming a path to itself succeeds. */
    ck_assert_int_eq(nstree_rename(st, txn, "/a", "/a", 0, tick(), NULL), 0);
}
END_TEST

START_TEST(symlinks)
{
    struct store_inode s, f;
    char buf[64], small[4];
    char big[NSTREE_SYMLINK_MAX + 2];

    ck_assert_int_eq(nstree_symlink(st, txn, "../target/x", "/ln", 7, 8, tick(), &s), 0);
    ck_assert(S_ISLNK(s.mode));
    ck_assert_uint_eq(s.size, strlen("../target/x"));
    ck_assert_int_eq(nstree_readlink(st, txn, "/ln", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "../target/x");
    ck_assert_int_eq(nstree_readlink(st, txn, "/ln", small, sizeof(small)), -ERANGE);
    f = create_ok("/f");
    (void)f;
    ck_assert_int_eq(nstree_readlink(st, txn, "/f", buf, sizeof(buf)), -EINVAL);
    ck_assert_int_eq(nstree_readlink(st, txn, "/none", buf, sizeof(buf)), -ENOENT);
    ck_assert_int_eq(nstree_symlink(st, txn, "t", "/ln", 0, 0, tick(), &s), -EEXIST);
    ck_assert_int_eq(nstree_symlink(st, txn, "", "/ln2", 0, 0, tick(), &s), -EINVAL);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(nstree_symlink(st, txn, big, "/ln2", 0, 0, tick(), &s), -ENAMETOOLONG);
    /* A symlink is not followed as a directory, and keeps its target
     * through attribute changes and renames. */
    ck_assert_int_eq(stat_err("/ln/x"), -ENOTDIR);
    ck_assert_int_eq(create("/ln", false, false, NULL, NULL), -EEXIST);
    ck_assert_int_eq(nstree_rename(st, txn, "/ln", "/ln3", 0, tick(), NULL), 0);
    ck_assert_int_eq(nstree_readlink(st, txn, "/ln3", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "../target/x");
    ck_assert_int_eq(nstree_unlink(st, txn, "/ln3", tick(), NULL), 0);
}
END_TEST

START_TEST(setattr_and_extend)
{
    struct store_chunk_list freed = {0};
    struct nstree_setattr_args a = {0};
    struct store_inode f, out;
    struct store_chunk c;
    uint64_t size, cs = 1 << 20;

    f = create_ok("/f");
    add_chunks(f.ino, 1000, 4); /* indexes 0..3 */
    ck_assert_int_eq(nstree_extend(st, txn, f.ino, 4 * cs, tick(), false, &size), 0);
    ck_assert_uint_eq(size, 4 * cs);
    ck_assert_int_eq(nstree_extend(st, txn, f.ino, cs, tick(), false, &size), 0);
    ck_assert_uint_eq(size, 4 * cs); /* never shrinks */
    /* A touch moves the times up, and never back. */
    ck_assert_int_eq(store_inode_get(st, txn, f.ino, &out), 0);
    ck_assert_int_eq(nstree_extend(st, txn, f.ino, cs, out.mtime + 1000, true, &size), 0);
    ck_assert_uint_eq(size, 4 * cs);
    ck_assert_int_eq(store_inode_get(st, txn, f.ino, &f), 0);
    ck_assert_int_eq(f.mtime, out.mtime + 1000);
    ck_assert_int_eq(f.ctime, out.mtime + 1000);
    ck_assert_uint_eq(f.size, 4 * cs);
    ck_assert_int_eq(nstree_extend(st, txn, f.ino, 0, out.mtime, true, &size), 0);
    ck_assert_int_eq(store_inode_get(st, txn, f.ino, &f), 0);
    ck_assert_int_eq(f.mtime, out.mtime + 1000);

    a.path = "/f";
    a.valid =
        NSTREE_SET_MODE | NSTREE_SET_UID | NSTREE_SET_GID | NSTREE_SET_MTIME | NSTREE_SET_ATIME_NOW;
    a.mode = S_IFDIR | 0700; /* the type bits are ignored */
    a.uid = 33;
    a.gid = 44;
    a.mtime = 12345;
    a.now = tick();
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), 0);
    ck_assert(S_ISREG(out.mode));
    ck_assert_uint_eq(out.mode & 07777, 0700);
    ck_assert_uint_eq(out.uid, 33);
    ck_assert_uint_eq(out.gid, 44);
    ck_assert_int_eq(out.mtime, 12345);
    ck_assert_int_eq(out.atime, a.now);
    ck_assert_int_eq(out.ctime, a.now);

    /* Shrink to 1.5 chunks: chunks 2 and 3 go, chunk 1 is trimmed and
     * takes its new version in the same step. */
    memset(&a, 0, sizeof(a));
    a.ino = f.ino;
    a.valid = NSTREE_SET_SIZE;
    a.size = cs + cs / 2;
    a.now = tick();
    a.trim_chunk = 1001;
    a.trim_old_version = 2; /* wrong: it is at 1 */
    a.trim_new_version = 3;
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), -ESTALE);
    a.trim_old_version = 1;
    a.trim_new_version = 2;
    a.trim_chunk = 1000; /* wrong chunk */
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), -ESTALE);
    ck_assert_uint_eq(freed.n, 0);
    a.trim_chunk = 1001;
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), 0);
    ck_assert_uint_eq(out.size, cs + cs / 2);
    ck_assert_uint_eq(out.nchunks, 2);
    ck_assert_int_eq(out.mtime, a.now);
    ck_assert_uint_eq(freed.n, 2);
    ck_assert_uint_eq(freed.v[0].id, 1002);
    ck_assert_uint_eq(freed.v[1].id, 1003);
    ck_assert_int_eq(store_chunk_get(st, txn, 1001, &c), 0);
    ck_assert_uint_eq(c.version, 2);
    store_chunk_list_free(&freed);

    /* Growing keeps chunks; a size that does not grow drops those past it. */
    a.trim_chunk = 0;
    a.size = 10 * cs;
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), 0);
    ck_assert_uint_eq(out.nchunks, 2);
    ck_assert_int_eq(store_chunk_add(st, txn, f.ino, 20, 1020, 3), 0); /* past the end */
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), 0);    /* same size */
    ck_assert_uint_eq(freed.n, 1);
    ck_assert_uint_eq(freed.v[0].id, 1020);
    store_chunk_list_free(&freed);

    /* Errors. */
    mkdir_ok("/d");
    a.ino = 0;
    a.path = "/d";
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), -EISDIR);
    a.path = "/f";
    a.size = STORE_MAX_FILE_SIZE + 1;
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), -EFBIG);
    a.valid = 1u << 12;
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), -EINVAL);
    a.valid = NSTREE_SET_MODE;
    a.path = "/none";
    ck_assert_int_eq(nstree_setattr(st, txn, &a, &out, &freed), -ENOENT);
    ck_assert_int_eq(nstree_extend(st, txn, 1, cs, tick(), false, &size), -EISDIR);
    ck_assert_int_eq(nstree_extend(st, txn, 999999, cs, tick(), false, &size), -ENOENT);
    ck_assert_int_eq(nstree_extend(st, txn, f.ino, STORE_MAX_FILE_SIZE + 1, tick(), false, &size),
                     -EFBIG);
}
END_TEST

START_TEST(committed_tree_survives_reopen)
{
    char err[256];

    mkdir_ok("/keep");
    create_ok("/keep/f");
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
    create_ok("/lost");
    mdb_txn_abort(txn);
    store_close(st);
    ck_assert_int_eq(store_open(dir, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
    ck_assert(S_ISREG(stat_ok("/keep/f").mode));
    ck_assert_int_eq(stat_err("/lost"), -ENOENT);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("nstree");
    TCase *tc = tcase_create("nstree");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, path_syntax);
    tcase_add_test(tc, mkdir_and_stat);
    tcase_add_test(tc, create_open_truncate);
    tcase_add_test(tc, readdir_pages);
    tcase_add_test(tc, unlink_and_hard_links);
    tcase_add_test(tc, rmdir_rules);
    tcase_add_test(tc, rename_rules);
    tcase_add_test(tc, symlinks);
    tcase_add_test(tc, setattr_and_extend);
    tcase_add_test(tc, committed_tree_survives_reopen);
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
