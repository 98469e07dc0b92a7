/*
 * Unit tests for datanode/chunkstore: path building, the VERSION file, the
 * refusal of links and odd files, the startup scan (orphans, temporary
 * files, damaged sidecars), removal, and the atomic install of a copy.
 */
#include "checksum.h"
#include "datanode/chunkstore.h"
#include "sidecar.h"
#include "datanode/wal.h"
#include "syswrap.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define CHUNK (256u * 1024)

static char dir[64];
static struct chunkstore *cs;
static const struct chunkstore_identity ident = {"cluster-a", 3, CHUNK};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/keel-ut-cs.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
}

static void teardown(void)
{
    chunkstore_close(cs);
    cs = NULL;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void with_identity(void)
{
    ck_assert_int_eq(chunkstore_write_identity(cs, &ident), 0);
    chunkstore_adopt_identity(cs, &ident);
}

static void reopen(void)
{
    chunkstore_close(cs);
    cs = NULL;
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
}

static void abs_path(uint64_t id, const char *ext, char *buf, size_t len)
{
    char rel[48];

    ck_assert_int_eq(replica_path(id, ext, rel, sizeof(rel)), 0);
    snprintf(buf, len, "%s/%s", dir, rel);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

struct found {
    int n;
    struct replica_info ri[8];
};

static int collect(void *arg, const struct replica_info *ri)
{
    struct found *f = arg;

    ck_assert_int_lt(f->n, 8);
    f->ri[f->n++] = *ri;
    return 0;
}

static const struct replica_info *find(const struct found *f, uint64_t id)
{
    for (int i = 0; i < f->n; i++)
        if (f->ri[i].chunk_id == id)
            return &f->ri[i];
    return NULL;
}

/* ------------------------------------------------------------------ paths */

START_TEST(paths_come_from_the_numeric_id)
{
    char buf[64];

    ck_assert_int_eq(replica_path(0x1234abcdull, "data", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "chunks/cd/000000001234abcd.data");
    ck_assert_int_eq(replica_path(UINT64_MAX, "meta", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "chunks/ff/ffffffffffffffff.meta");
    ck_assert_int_eq(replica_path(0x100, "meta", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "chunks/00/0000000000000100.meta");
    ck_assert_int_eq(replica_path(0, "data", buf, sizeof(buf)), -EINVAL);
    ck_assert_int_eq(replica_path(1, "data", buf, 10), -ENAMETOOLONG);
}
END_TEST

/* --------------------------------------------------------------- identity */

START_TEST(identity_round_trip)
{
    struct chunkstore_identity got;

    ck_assert(!chunkstore_identity(cs, &got));
    ck_assert_uint_eq(chunkstore_blocks(cs), 0);
    with_identity();
    reopen();
    ck_assert(chunkstore_identity(cs, &got));
    ck_assert_str_eq(got.cluster_id, "cluster-a");
    ck_assert_uint_eq(got.node_id, 3);
    ck_assert_uint_eq(got.chunk_size, CHUNK);
    ck_assert_uint_eq(chunkstore_blocks(cs), CHUNK / KEEL_BLOCK_SIZE);
}
END_TEST

START_TEST(bad_identities_are_refused)
{
    struct chunkstore_identity id = ident;

    id.chunk_size = 1000;
    ck_assert_int_eq(chunkstore_write_identity(cs, &id), -EINVAL);
    id = ident;
    id.node_id = 0;
    ck_assert_int_eq(chunkstore_write_identity(cs, &id), -EINVAL);
    id = ident;
    snprintf(id.cluster_id, sizeof(id.cluster_id), "has space");
    ck_assert_int_eq(chunkstore_write_identity(cs, &id), -EINVAL);
    id.cluster_id[0] = '\0';
    ck_assert_int_eq(chunkstore_write_identity(cs, &id), -EINVAL);
}
END_TEST

START_TEST(bad_version_files_stop_the_open)
{
    char path[256];

    chunkstore_close(cs);
    cs = NULL;
    snprintf(path, sizeof(path), "%s/VERSION", dir);
    write_text(path, "cluster_id=a\nnode_id=1\nlayout=2\nchunk_size=4096\n");
    ck_assert_int_eq(chunkstore_open(dir, &cs), -EPROTONOSUPPORT);
    write_text(path, "cluster_id=a\nnode_id=x\nlayout=1\nchunk_size=4096\n");
    ck_assert_int_eq(chunkstore_open(dir, &cs), -EBADMSG);
    write_text(path, "garbage");
    ck_assert_int_eq(chunkstore_open(dir, &cs), -EBADMSG);
    write_text(path, "cluster_id=a\nnode_id=1\nlayout=1\nchunk_size=4097\n");
    ck_assert_int_eq(chunkstore_open(dir, &cs), -EBADMSG);
    write_text(path, "cluster_id=a\nnode_id=1\nlayout=1\nchunk_size=8192\n");
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
    ck_assert_uint_eq(chunkstore_blocks(cs), 2);
}
END_TEST

START_TEST(replica_operations_wait_for_an_identity)
{
    struct replicafile *rf;

    ck_assert_int_eq(chunkstore_create(cs, 5, 1, &rf), -EAGAIN);
    ck_assert_int_eq(chunkstore_open_replica(cs, 5, &rf), -EAGAIN);
}
END_TEST

/* ------------------------------------------------------ create and remove */

START_TEST(create_open_remove)
{
    struct replicafile *rf;
    char data[256], meta[256];

    with_identity();
    ck_assert_int_eq(chunkstore_open_replica(cs, 77, &rf), -ENOENT);
    ck_assert_int_eq(chunkstore_create(cs, 77, 2, &rf), 0);
    ck_assert_uint_eq(replicafile_header(rf)->version, 2);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_create(cs, 77, 2, &rf), -EEXIST);
    ck_assert_int_eq(chunkstore_create(cs, 0, 2, &rf), -EINVAL);
    ck_assert_int_eq(chunkstore_create(cs, 78, 0, &rf), -EINVAL);
    abs_path(77, "data", data, sizeof(data));
    abs_path(77, "meta", meta, sizeof(meta));
    ck_assert(exists(data) && exists(meta));
    ck_assert_int_eq(chunkstore_remove(cs, 77), 0);
    ck_assert(!exists(data) && !exists(meta));
    ck_assert_int_eq(chunkstore_remove(cs, 77), -ENOENT);
}
END_TEST

/* ------------------------------------------------------------------ links */

START_TEST(symlinked_files_are_refused)
{
    struct replicafile *rf;
    char data[256], target[256];
    struct found f = {0};

    with_identity();
    ck_assert_int_eq(chunkstore_create(cs, 9, 1, &rf), 0);
    replicafile_close(rf);
    abs_path(9, "data", data, sizeof(data));
    snprintf(target, sizeof(target), "%s/elsewhere", dir);
    write_text(target, "secret");
    ck_assert_int_eq(unlink(data), 0);
    ck_assert_int_eq(symlink(target, data), 0);
    ck_assert_int_eq(chunkstore_open_replica(cs, 9, &rf), -ELOOP);
    /* The scan reports it corrupt (its version is still known). */
    ck_assert_int_eq(chunkstore_scan(cs, collect, &f), 0);
    ck_assert_int_eq(f.n, 1);
    ck_assert(f.ri[0].corrupt);
    ck_assert_uint_eq(f.ri[0].version, 1);
    /* Removing it removes the link, never its target. */
    ck_assert_int_eq(chunkstore_remove(cs, 9), 0);
    ck_assert(exists(target));
}
END_TEST

START_TEST(symlinked_subdirectory_is_refused_at_open)
{
    char sub[256], moved[256];

    snprintf(sub, sizeof(sub), "%s/chunks/3f", dir);
    snprintf(moved, sizeof(moved), "%s/other", dir);
    chunkstore_close(cs);
    cs = NULL;
    ck_assert_int_eq(rename(sub, moved), 0);
    ck_assert_int_eq(symlink(moved, sub), 0);
    ck_assert_int_eq(chunkstore_open(dir, &cs), -ELOOP);
}
END_TEST

START_TEST(fifo_in_place_of_data_is_refused)
{
    struct replicafile *rf;
    char data[256];

    with_identity();
    ck_assert_int_eq(chunkstore_create(cs, 10, 1, &rf), 0);
    replicafile_close(rf);
    abs_path(10, "data", data, sizeof(data));
    ck_assert_int_eq(unlink(data), 0);
    ck_assert_int_eq(mkfifo(data, 0644), 0);
    ck_assert_int_eq(chunkstore_open_replica(cs, 10, &rf), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------------- scan */

START_TEST(scan_lists_replicas_and_cleans_leftovers)
{
    struct replicafile *rf;
    struct found f = {0};
    char orphan[256], tmpmeta[256], stray[256];
    int dfd, mfd;

    with_identity();
    ck_assert_int_eq(chunkstore_create(cs, 0x101, 4, &rf), 0);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_create(cs, 0x202, 6, &rf), 0);
    replicafile_close(rf);
    abs_path(0x303, "data", orphan, sizeof(orphan));
    write_text(orphan, "no sidecar");
    abs_path(0x404, "meta.tmp", tmpmeta, sizeof(tmpmeta));
    write_text(tmpmeta, "half-made");
    ck_assert_int_eq(chunkstore_tmp_create(cs, 0x505, 99, &dfd, &mfd), 0);
    close(dfd);
    close(mfd);
    snprintf(stray, sizeof(stray), "%s/chunks/01/notes.txt", dir);
    write_text(stray, "left alone");

    ck_assert_int_eq(chunkstore_scan(cs, collect, &f), 0);
    ck_assert_int_eq(f.n, 2);
    ck_assert_uint_eq(find(&f, 0x101)->version, 4);
    ck_assert_uint_eq(find(&f, 0x202)->version, 6);
    ck_assert(!find(&f, 0x202)->corrupt);
    ck_assert(!exists(orphan));
    ck_assert(!exists(tmpmeta));
    ck_assert(exists(stray));
    ck_assert_int_eq(chunkstore_tmp_create(cs, 0x505, 99, &dfd, &mfd), 0); /* was removed */
    close(dfd);
    close(mfd);
}
END_TEST

START_TEST(scan_reports_damaged_sidecars_corrupt)
{
    struct replicafile *rf;
    struct found f = {0};
    char meta[256];
    uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int fd;

    with_identity();
    ck_assert_int_eq(chunkstore_create(cs, 0x11, 5, &rf), 0);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_create(cs, 0x12, 5, &rf), 0);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_create(cs, 0x13, 5, &rf), 0);
    ck_assert_int_eq(replicafile_mark_corrupt(rf), 0);
    replicafile_close(rf);
    abs_path(0x11, "meta", meta, sizeof(meta));
    fd = open(meta, O_WRONLY);
    ck_assert_int_eq(pwrite(fd, junk, sizeof(junk), 16), 8); /* the version field */
    close(fd);
    abs_path(0x12, "meta", meta, sizeof(meta));
    ck_assert_int_eq(truncate(meta, 100), 0);

    ck_assert_int_eq(chunkstore_scan(cs, collect, &f), 0);
    ck_assert_int_eq(f.n, 3);
    ck_assert(find(&f, 0x11)->corrupt);
    ck_assert_uint_eq(find(&f, 0x11)->version, 0); /* header untrustworthy */
    ck_assert(find(&f, 0x12)->corrupt);
    ck_assert_uint_eq(find(&f, 0x12)->version, 5); /* header fine, sums missing */
    ck_assert(find(&f, 0x13)->corrupt);
    ck_assert_uint_eq(find(&f, 0x13)->version, 5);
}
END_TEST

START_TEST(replicas_without_identity_stop_the_scan)
{
    struct replicafile *rf;
    struct found f = {0};
    char path[256];

    with_identity();
    ck_assert_int_eq(chunkstore_create(cs, 0x21, 1, &rf), 0);
    replicafile_close(rf);
    snprintf(path, sizeof(path), "%s/VERSION", dir);
    ck_assert_int_eq(unlink(path), 0);
    reopen();
    ck_assert_int_eq(chunkstore_scan(cs, collect, &f), -EEXIST);
}
END_TEST

/* ---------------------------------------------------------------- install */

static void make_copy(uint64_t id, uint64_t session, uint64_t version, uint8_t byte)
{
    struct sidecar_header h = {id, version, 4096, 0, CHUNK / KEEL_BLOCK_SIZE};
    uint64_t *sums = malloc(h.blocks * sizeof(*sums));
    uint8_t block[4096];
    int dfd, mfd;

    memset(block, byte, sizeof(block));
    for (uint32_t b = 0; b < h.blocks; b++)
        sums[b] = csum_zero_block();
    sums[0] = csum_buf(block, sizeof(block));
    ck_assert_int_eq(chunkstore_tmp_create(cs, id, session, &dfd, &mfd), 0);
    ck_assert_int_eq(pwrite(dfd, block, sizeof(block), 0), 4096);
    ck_assert_int_eq(sidecar_write_new(mfd, &h, sums), 0);
    close(dfd);
    close(mfd);
    free(sums);
}

START_TEST(install_replaces_a_replica)
{
    struct replicafile *rf;
    uint8_t buf[4096];
    struct replicafile_readout ro = {0};

    with_identity();
    ck_assert_int_eq(chunkstore_create(cs, 0x31, 1, &rf), 0);
    replicafile_close(rf);
    make_copy(0x31, 7, 3, 0xab);
    ck_assert_int_eq(chunkstore_tmp_create(cs, 0x31, 7, &(int){0}, &(int){0}), -EEXIST);
    ck_assert_int_eq(chunkstore_install(cs, 0x31, 7), 0);
    ck_assert_int_eq(chunkstore_open_replica(cs, 0x31, &rf), 0);
    ck_assert_uint_eq(replicafile_header(rf)->version, 3);
    ck_assert_int_eq(replicafile_read_blocks(rf, 0, 1, buf, &ro, 0), 0);
    ck_assert_uint_eq(buf[100], 0xab);
    replicafile_close(rf);
    /* Installing into an empty slot works too; the session's files are gone. */
    make_copy(0x32, 8, 1, 0xcd);
    ck_assert_int_eq(chunkstore_install(cs, 0x32, 8), 0);
    ck_assert_int_eq(chunkstore_install(cs, 0x32, 8), -ENOENT);
    ck_assert_int_eq(chunkstore_tmp_remove(cs, 0x32, 8), 0);
}
END_TEST

/* ------------------------------------------------- the log of small writes */

#define WAL_SIZE (8u << 20)

static unsigned boots;

/* A restart of the datanode, after a reboot of the machine (a new boot id:
 * the scan replays the log) or not; the scan's result. */
static int try_restart_after(uint64_t wal_size, bool reboot)
{
    struct found f = {0};
    char boot[32];

    boots += reboot;
    snprintf(boot, sizeof(boot), "boot-%u", boots);
    chunkstore_close(cs);
    cs = NULL;
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
    ck_assert_int_eq(chunkstore_use_wal(cs, wal_size), 0);
    chunkstore_set_boot_id(cs, boot);
    return chunkstore_scan(cs, collect, &f);
}

static void restart_after(uint64_t wal_size, bool reboot)
{
    ck_assert_int_eq(try_restart_after(wal_size, reboot), 0);
}

static void restart(uint64_t wal_size)
{
    restart_after(wal_size, true);
}

static void put(struct replicafile *rf, uint64_t off, size_t len, uint8_t fill)
{
    uint8_t *b = malloc(len);
    bool mismatch;

    memset(b, fill, len);
    ck_assert_int_eq(replicafile_write(rf, off, b, len, 0, &mismatch), 0);
    free(b);
}

/* Flushes as the datanode does; whether it asked for a device flush (then
 * sent) rather than syncing the file. */
static bool flush_by_device(struct replicafile *rf)
{
    bool device = false;

    ck_assert_int_eq(replicafile_flush(rf, &device), 0);
    if (device)
        ck_assert_int_eq(chunkstore_flush_device(cs), 0);
    return device;
}

static void flush(struct replicafile *rf)
{
    (void)flush_by_device(rf);
}

/* A store with the log, and a new replica of chunk id whose first block
 * was written (0x41) and flushed: a record in the log, not yet in the file
 * on disk. */
static struct replicafile *flushed_replica(uint64_t id)
{
    struct replicafile *rf;

    with_identity();
    restart(WAL_SIZE);
    ck_assert_int_eq(chunkstore_create(cs, id, 1, &rf), 0);
    put(rf, 0, 4096, 0x41);
    flush(rf);
    return rf;
}

/* What the disk would hold of a range whose pages never left the cache. */
static void clobber(uint64_t id, uint64_t off, size_t len)
{
    char path[128];
    uint8_t *b = malloc(len);
    int fd;

    abs_path(id, "data", path, sizeof(path));
    fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    memset(b, 0xee, len);
    ck_assert_int_eq(pwrite(fd, b, len, (off_t)off), (ssize_t)len);
    close(fd);
    free(b);
}

/* Reads the blocks of [off, off + len) back, verified, and checks them. */
static void expect_bytes(uint64_t id, uint64_t off, size_t len, uint8_t fill)
{
    struct replicafile_readout out = {0};
    struct replicafile *rf;
    uint8_t *b = malloc(len);

    ck_assert_int_eq(chunkstore_open_replica(cs, id, &rf), 0);
    ck_assert_int_eq(
        replicafile_read_blocks(rf, off / KEEL_BLOCK_SIZE, len / KEEL_BLOCK_SIZE, b, &out, 0), 0);
    for (size_t i = 0; i < len; i++)
        ck_assert_uint_eq(b[i], fill);
    replicafile_close(rf);
    free(b);
}

START_TEST(logged_writes_come_back_after_a_crash)
{
    struct replicafile *rf;
    char path[128];

    with_identity();
    restart(WAL_SIZE);
    snprintf(path, sizeof(path), "%s/wal", dir);
    ck_assert(exists(path));
    ck_assert_int_eq(chunkstore_create(cs, 0x10, 1, &rf), 0);
    put(rf, 8192, 4096, 0x41);
    put(rf, 65536, 16384, 0x42);
    flush(rf);             /* one commit of the log, no sync of the file */
    replicafile_close(rf); /* a crash: the replica stays dirty */
    clobber(0x10, 8192, 4096);
    clobber(0x10, 65536, 16384);

    restart(WAL_SIZE);
    expect_bytes(0x10, 8192, 4096, 0x41);
    expect_bytes(0x10, 65536, 16384, 0x42);
    expect_bytes(0x10, 0, 8192, 0);
}
END_TEST

START_TEST(a_log_no_longer_wanted_is_replayed_then_removed)
{
    struct replicafile *rf = flushed_replica(0x10);
    char path[128];

    replicafile_close(rf);
    clobber(0x10, 0, 4096);

    restart(0);
    expect_bytes(0x10, 0, 4096, 0x41);
    snprintf(path, sizeof(path), "%s/wal", dir);
    ck_assert(!exists(path));
    ck_assert_int_eq(chunkstore_open_replica(cs, 0x10, &rf), 0);
    put(rf, 0, 4096, 0x42);
    flush(rf); /* the file's own sync now */
    replicafile_close(rf);
}
END_TEST

START_TEST(an_unlogged_write_makes_older_records_obsolete)
{
    struct replicafile *rf = flushed_replica(0x10);
    put(rf, 0, WAL_MAX_RECORD * 2, 0x51); /* too large for the log */
    flush(rf);
    replicafile_close(rf);

    /* Replaying 0x41 now would undo a flushed write. */
    restart(WAL_SIZE);
    expect_bytes(0x10, 0, WAL_MAX_RECORD * 2, 0x51);
}
END_TEST

START_TEST(a_settle_makes_older_records_obsolete)
{
    struct replicafile *rf = flushed_replica(0x10);
    put(rf, 0, WAL_MAX_RECORD * 2, 0x51); /* not logged, and synced by the settle */
    ck_assert_int_eq(replicafile_settle(rf), 0);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_open_replica(cs, 0x10, &rf), 0);
    put(rf, 196608, 4096, 0x61); /* logged, and dirty again */
    flush(rf);
    replicafile_close(rf);

    restart(WAL_SIZE);
    expect_bytes(0x10, 0, WAL_MAX_RECORD * 2, 0x51);
    expect_bytes(0x10, 196608, 4096, 0x61);
}
END_TEST

START_TEST(no_replay_without_a_reboot)
{
    struct replicafile *rf = flushed_replica(0x10);
    put(rf, 0, 4096, 0x42); /* acknowledged, not flushed, in the page cache */
    replicafile_close(rf);

    /* A killed datanode: the page cache kept the newer write, which replaying
     * the flushed one would undo (on this replica alone). */
    restart_after(WAL_SIZE, false);
    expect_bytes(0x10, 0, 4096, 0x42);
}
END_TEST

START_TEST(records_outlive_a_version_change)
{
    struct replicafile *rf = flushed_replica(0x10);
    /* A recovery moves the survivors to a new version; the flushed write
     * is still only in the log. */
    ck_assert_int_eq(replicafile_set_version(rf, 2), 0);
    replicafile_close(rf);
    clobber(0x10, 0, 4096);

    restart(WAL_SIZE);
    expect_bytes(0x10, 0, 4096, 0x41);
}
END_TEST

START_TEST(a_recreated_replica_ignores_its_predecessors_records)
{
    struct replicafile *rf = flushed_replica(0x20);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_remove(cs, 0x20), 0);
    ck_assert_int_eq(chunkstore_create(cs, 0x20, 1, &rf), 0);
    put(rf, 8192, 4096, 0x61);
    flush(rf);
    replicafile_close(rf);

    restart(WAL_SIZE);
    expect_bytes(0x20, 0, 4096, 0);
    expect_bytes(0x20, 8192, 4096, 0x61);
}
END_TEST

struct flusher {
    struct replicafile *rf;
    int r;
    bool done; /* under hold_lock */
};

static void *flush_thread(void *arg)
{
    struct flusher *f = arg;
    bool device = false;
    int r = replicafile_flush(f->rf, &device);

    pthread_mutex_lock(&hold_lock);
    f->r = r;
    f->done = true;
    pthread_mutex_unlock(&hold_lock);
    return NULL;
}

START_TEST(a_flush_beside_a_slower_one_returns_no_sooner)
{
    struct replicafile *rf = flushed_replica(0x10);
    struct flusher a = {rf, -1, false}, b = {rf, -1, false};
    pthread_t ta, tb;

    put(rf, 4096, 4096, 0x42);
    hold_sync(0);
    ck_assert_int_eq(pthread_create(&ta, NULL, flush_thread, &a), 0);
    wait_sync_held(); /* a is inside the log's fdatasync */
    ck_assert_int_eq(pthread_create(&tb, NULL, flush_thread, &b), 0);
    usleep(200 * 1000);
    pthread_mutex_lock(&hold_lock);
    ck_assert(!b.done); /* its write is not durable yet */
    pthread_mutex_unlock(&hold_lock);
    release_sync();
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ck_assert_int_eq(a.r, 0);
    ck_assert_int_eq(b.r, 0);
    replicafile_close(rf);
}
END_TEST

START_TEST(a_barrier_follows_a_sync_of_the_file)
{
    const size_t big = WAL_MAX_RECORD * 2; /* too large for the log */
    struct replicafile *plain, *rf = flushed_replica(0x10);
    struct statfs sf;
    bool in_place;

    ck_assert_int_eq(statfs(dir, &sf), 0);
    in_place = sf.f_type == EXT4_SUPER_MAGIC;
    /* A replica the log holds nothing of: an overwrite of synced blocks is
     * written back, then one device flush serves it (ext4). */
    ck_assert_int_eq(chunkstore_create(cs, 0x11, 1, &plain), 0);
    put(plain, 0, big, 0x51);
    ck_assert(!flush_by_device(plain)); /* new blocks */
    put(plain, 0, big, 0x52);
    ck_assert(flush_by_device(plain) == in_place);
    /* With records in the log, the barrier that makes them obsolete must
     * not reach the disk before the file's data: the file is synced. */
    put(rf, 0, big, 0x51);
    ck_assert(!flush_by_device(rf));
    put(rf, 0, big, 0x52);
    ck_assert(!flush_by_device(rf));
    replicafile_close(plain);
    replicafile_close(rf);
}
END_TEST

START_TEST(a_flush_beside_one_awaiting_a_device_flush_awaits_one_too)
{
    const size_t big = WAL_MAX_RECORD * 2; /* too large for the log */
    struct replicafile *rf;
    struct statfs sf;
    bool device = false;
    uint64_t upto;

    with_identity();
    restart(WAL_SIZE);
    ck_assert_int_eq(statfs(dir, &sf), 0);
    ck_assert_int_eq(chunkstore_create(cs, 0x12, 1, &rf), 0);
    put(rf, 0, big, 0x51);
    ck_assert(!flush_by_device(rf)); /* new blocks */
    put(rf, 0, big, 0x52);
    ck_assert_int_eq(replicafile_flush(rf, &device), 0);
    ck_assert(device == (sf.f_type == EXT4_SUPER_MAGIC));
    if (device) {
        /* Written back, its device flush not sent yet: a flush now is no
         * commit of the log alone, and it waits for a device flush too. */
        ck_assert(!replicafile_flush_is_commit(rf, &upto));
        device = false;
        ck_assert_int_eq(replicafile_flush(rf, &device), 0);
        ck_assert(device);
        ck_assert_int_eq(chunkstore_flush_device(cs), 0);
    }
    replicafile_close(rf);
}
END_TEST

START_TEST(a_start_whose_sync_fails_replays_at_the_next)
{
    struct replicafile *rf = flushed_replica(0x10);

    replicafile_close(rf);
    clobber(0x10, 0, 4096); /* the page whose write-back failed */
    /* No reboot, so no replay; the sync before the log is reset fails. */
    syncfs_errno = EIO;
    ck_assert_int_eq(try_restart_after(WAL_SIZE, false), -EIO);
    syncfs_errno = 0;
    /* The kernel reports that failure once: the next start must replay
     * all the same. */
    restart_after(WAL_SIZE, false);
    expect_bytes(0x10, 0, 4096, 0x41);
}
END_TEST

START_TEST(an_install_whose_barrier_fails_leaves_no_replica)
{
    struct replicafile *rf = flushed_replica(0x33);
    struct stat st;
    char path[128];

    replicafile_close(rf);
    make_copy(0x33, 9, 2, 0xab);
    /* The log fails: its commit, then the checkpoint that stands in. */
    snprintf(path, sizeof(path), "%s/wal", dir);
    ck_assert_int_eq(stat(path, &st), 0);
    fail_ino = st.st_ino;
    fdatasync_errno = EIO;
    syncfs_errno = EIO;
    ck_assert_int_eq(chunkstore_install(cs, 0x33, 9), -EIO);
    syncfs_errno = 0;
    fail_ino = 0;
    /* The copy did not take the place of a replica whose records may
     * still be replayed into it. */
    ck_assert_int_eq(chunkstore_open_replica(cs, 0x33, &rf), -ENOENT);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chunkstore");
    TCase *tc = tcase_create("chunkstore");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, paths_come_from_the_numeric_id);
    tcase_add_test(tc, identity_round_trip);
    tcase_add_test(tc, bad_identities_are_refused);
    tcase_add_test(tc, bad_version_files_stop_the_open);
    tcase_add_test(tc, replica_operations_wait_for_an_identity);
    tcase_add_test(tc, create_open_remove);
    tcase_add_test(tc, symlinked_files_are_refused);
    tcase_add_test(tc, symlinked_subdirectory_is_refused_at_open);
    tcase_add_test(tc, fifo_in_place_of_data_is_refused);
    tcase_add_test(tc, scan_lists_replicas_and_cleans_leftovers);
    tcase_add_test(tc, scan_reports_damaged_sidecars_corrupt);
    tcase_add_test(tc, replicas_without_identity_stop_the_scan);
    tcase_add_test(tc, install_replaces_a_replica);
    tcase_add_test(tc, logged_writes_come_back_after_a_crash);
    tcase_add_test(tc, a_log_no_longer_wanted_is_replayed_then_removed);
    tcase_add_test(tc, an_unlogged_write_makes_older_records_obsolete);
    tcase_add_test(tc, a_settle_makes_older_records_obsolete);
    tcase_add_test(tc, records_outlive_a_version_change);
    tcase_add_test(tc, no_replay_without_a_reboot);
    tcase_add_test(tc, a_recreated_replica_ignores_its_predecessors_records);
    tcase_add_test(tc, a_flush_beside_a_slower_one_returns_no_sooner);
    tcase_add_test(tc, a_barrier_follows_a_sync_of_the_file);
    tcase_add_test(tc, a_flush_beside_one_awaiting_a_device_flush_awaits_one_too);
    tcase_add_test(tc, a_start_whose_sync_fails_replays_at_the_next);
    tcase_add_test(tc, an_install_whose_barrier_fails_leaves_no_replica);
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
