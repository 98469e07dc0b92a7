/*
 * Unit tests for client/localread: reads of replicas written by the
 * datanode's own code (chunkstore, replicafile), and every check that sends
 * a read back to the network: another version, a corrupt mark, a replica
 * being written, a block that does not match, a replica that is gone.
 */
#include "checksum.h"
#include "datanode/chunkstore.h"
#include "localread.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK  (256u * 1024)
#define BLOCKS (CHUNK / KEEL_BLOCK_SIZE)
#define ID     0x42u

static char dir[64];
static int dirfd_;
static struct chunkstore *cs;
static struct replicafile *rf;
static uint8_t model[CHUNK]; /* what the replica holds */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Writes len bytes of `seed` at off, in the replica and in the model. */
static void put(uint64_t off, size_t len, int seed)
{
    uint8_t *buf = malloc(len);
    bool mismatch = false;

    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 31 + (off + i) * 7);
    ck_assert_int_eq(replicafile_write(rf, off, buf, len, 0, &mismatch), 0);
    memcpy(model + off, buf, len);
    free(buf);
}

static int get(uint64_t version, uint64_t off, size_t len, uint8_t *out)
{
    return localread_read(dirfd_, ID, version, BLOCKS, off, out, len, false);
}

static void setup(void)
{
    static const struct chunkstore_identity ident = {"cluster-l", 9, CHUNK};

    snprintf(dir, sizeof(dir), "/tmp/keel-ut-lr.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
    ck_assert_int_eq(chunkstore_write_identity(cs, &ident), 0);
    chunkstore_adopt_identity(cs, &ident);
    ck_assert_int_eq(chunkstore_create(cs, ID, 5, &rf), 0);
    memset(model, 0, sizeof(model));
    dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dirfd_, 0);
}

static void teardown(void)
{
    if (rf)
        replicafile_close(rf);
    rf = NULL;
    chunkstore_close(cs);
    close(dirfd_);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

START_TEST(reads_a_settled_replica)
{
    static uint8_t out[CHUNK];

    put(0, 3 * KEEL_BLOCK_SIZE, 1);
    put(10 * KEEL_BLOCK_SIZE + 100, 5000, 2); /* unaligned, across a block boundary */
    ck_assert_int_eq(replicafile_settle(rf), 0);
    /* Whole, aligned, from the page cache without waiting. */
    ck_assert_int_eq(localread_read(dirfd_, ID, 5, BLOCKS, 0, out, CHUNK, true), 0);
    ck_assert_mem_eq(out, model, CHUNK);
    /* Unaligned, inside a block and across blocks. */
    memset(out, 0xee, sizeof(out));
    ck_assert_int_eq(get(5, 10 * KEEL_BLOCK_SIZE + 50, 300, out), 0);
    ck_assert_mem_eq(out, model + 10 * KEEL_BLOCK_SIZE + 50, 300);
    ck_assert_int_eq(get(5, KEEL_BLOCK_SIZE - 1, 2 * KEEL_BLOCK_SIZE + 2, out), 0);
    ck_assert_mem_eq(out, model + KEEL_BLOCK_SIZE - 1, 2 * KEEL_BLOCK_SIZE + 2);
    /* Past the data file's end: zeros, as the sparse replica reads. */
    memset(out, 0xee, sizeof(out));
    ck_assert_int_eq(get(5, CHUNK - KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE, out), 0);
    ck_assert_mem_eq(out, model + CHUNK - KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE);
    /* Outside the chunk. */
    ck_assert_int_eq(get(5, CHUNK - 10, 20, out), -EINVAL);
}
END_TEST

START_TEST(refuses_another_version)
{
    uint8_t out[KEEL_BLOCK_SIZE];

    put(0, KEEL_BLOCK_SIZE, 1);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert_int_eq(get(6, 0, sizeof(out), out), -ESTALE); /* this one missed writes */
    ck_assert_int_eq(get(4, 0, sizeof(out), out), -ESTALE);
    ck_assert_int_eq(replicafile_set_version(rf, 6), 0);
    ck_assert_int_eq(get(5, 0, sizeof(out), out), -ESTALE);
    ck_assert_int_eq(get(6, 0, sizeof(out), out), 0);
    ck_assert_mem_eq(out, model, sizeof(out));
}
END_TEST

START_TEST(refuses_a_replica_being_written)
{
    uint8_t out[KEEL_BLOCK_SIZE];

    put(0, KEEL_BLOCK_SIZE, 1);
    /* Its newest checksums are in the datanode's memory only. */
    ck_assert_int_eq(get(5, 0, sizeof(out), out), -EBUSY);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert_int_eq(get(5, 0, sizeof(out), out), 0);
    ck_assert_mem_eq(out, model, sizeof(out));
}
END_TEST

START_TEST(refuses_a_corrupt_replica)
{
    uint8_t out[KEEL_BLOCK_SIZE];

    put(0, 2 * KEEL_BLOCK_SIZE, 1);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert_int_eq(replicafile_mark_corrupt(rf), 0);
    ck_assert_int_eq(get(5, KEEL_BLOCK_SIZE, sizeof(out), out), -EIO);
}
END_TEST

START_TEST(refuses_a_block_that_does_not_match)
{
    char path[128], rel[48];
    uint8_t out[2 * KEEL_BLOCK_SIZE], flip = 0x5a;
    int fd;

    put(0, sizeof(out), 1);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert_int_eq(replica_path(ID, "data", rel, sizeof(rel)), 0);
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, &flip, 1, KEEL_BLOCK_SIZE + 7), 1);
    close(fd);
    ck_assert_int_eq(get(5, 0, KEEL_BLOCK_SIZE, out), 0); /* the block before is sound */
    ck_assert_int_eq(get(5, 0, sizeof(out), out), -EIO);
    ck_assert_int_eq(get(5, KEEL_BLOCK_SIZE + 100, 10, out), -EIO);
}
END_TEST

START_TEST(refuses_a_replica_that_is_gone)
{
    uint8_t out[KEEL_BLOCK_SIZE];

    ck_assert_int_eq(replicafile_settle(rf), 0);
    replicafile_close(rf);
    rf = NULL;
    ck_assert_int_eq(get(5, 0, sizeof(out), out), 0);
    ck_assert_int_eq(chunkstore_remove(cs, ID), 0);
    ck_assert_int_eq(get(5, 0, sizeof(out), out), -ENOENT);
    ck_assert_int_eq(localread_read(dirfd_, 0x43, 5, BLOCKS, 0, out, sizeof(out), false), -ENOENT);
}
END_TEST

/* A FIFO in a replica file's place: the read fails at once, and the
 * caller goes to the datanode. */
START_TEST(refuses_a_fifo_without_waiting)
{
    char path[128], rel[48];
    uint8_t out[KEEL_BLOCK_SIZE];

    ck_assert_int_eq(replicafile_settle(rf), 0);
    for (int i = 0; i < 2; i++) {
        const char *ext = i ? "meta" : "data";

        ck_assert_int_eq(replica_path(ID, ext, rel, sizeof(rel)), 0);
        snprintf(path, sizeof(path), "%s/%s", dir, rel);
        ck_assert_int_eq(unlink(path), 0);
        ck_assert_int_eq(mkfifo(path, 0600), 0);
        ck_assert_int_lt(get(5, 0, sizeof(out), out), 0);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("localread");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, reads_a_settled_replica);
    tcase_add_test(tc, refuses_another_version);
    tcase_add_test(tc, refuses_a_replica_being_written);
    tcase_add_test(tc, refuses_a_corrupt_replica);
    tcase_add_test(tc, refuses_a_block_that_does_not_match);
    tcase_add_test(tc, refuses_a_replica_that_is_gone);
    tcase_add_test(tc, refuses_a_fifo_without_waiting);
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
