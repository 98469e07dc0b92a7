/*
 * Unit tests for datanode/replicafile (with sidecar and chunkstore for the
 * files): sparse reads, checksum updates of partial blocks against a model,
 * verification of every byte returned, the dirty/flush protocol and the
 * recovery after an unclean stop, trims, versions, sticky errors, and which
 * flushes may leave out the fdatasync.
 */
#include "checksum.h"
#include "datanode/chunkstore.h"
#include "diskio.h"
#include "datanode/replicafile.h"
#include "sidecar.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#define CHUNK  (1u << 20)
#define BLOCKS (CHUNK / KEEL_BLOCK_SIZE)
#define ID     0x1234abcdull

static char dir[64];
static struct chunkstore *cs;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void setup(void)
{
    struct chunkstore_identity id = {"test-cluster", 7, CHUNK};

    snprintf(dir, sizeof(dir), "/tmp/keel-ut-rf.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chunkstore_open(dir, &cs), 0);
    ck_assert_int_eq(chunkstore_write_identity(cs, &id), 0);
    chunkstore_adopt_identity(cs, &id);
}

static void teardown(void)
{
    chunkstore_close(cs);
    cs = NULL;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct replicafile *create(uint64_t version)
{
    struct replicafile *rf;

    ck_assert_int_eq(chunkstore_create(cs, ID, version, &rf), 0);
    return rf;
}

/* replicafile_flush, with the device flush it may ask for. */
static int flush(struct replicafile *rf)
{
    bool device = false;
    int r = replicafile_flush(rf, &device);

    if (r == 0 && device)
        r = chunkstore_flush_device(cs);
    return r;
}

/* Flushes, and tells whether the flush skipped the fdatasync. */
static bool flush_by_device(struct replicafile *rf)
{
    bool device = true;

    ck_assert_int_eq(replicafile_flush(rf, &device), 0);
    if (device)
        ck_assert_int_eq(chunkstore_flush_device(cs), 0);
    return device;
}

/* Path of a replica file, for tampering. */
static void file_path(const char *ext, char *buf, size_t len)
{
    char rel[128];

    ck_assert_int_eq(replica_path(ID, ext, rel, sizeof(rel)), 0);
    snprintf(buf, len, "%s/%s", dir, rel);
}

static void poke(const char *ext, uint64_t off, const void *bytes, size_t n)
{
    char path[256];
    int fd;

    file_path(ext, path, sizeof(path));
    fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void flip_byte(const char *ext, uint64_t off)
{
    char path[256];
    uint8_t b;
    int fd;

    file_path(ext, path, sizeof(path));
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

/* The header as stored on disk right now. */
static struct sidecar_header disk_header(void)
{
    struct sidecar_header h;
    char path[256];
    int fd;

    file_path("meta", path, sizeof(path));
    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sidecar_read_header(fd, &h, false), 0);
    close(fd);
    return h;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 9)) ^ seed);
}

/* The verified read, with its findings as separate out-parameters. */
static int read_blocks(struct replicafile *rf, uint64_t first, size_t n, void *buf, uint64_t *bad,
                       bool *mismatch, size_t *data_bytes)
{
    struct replicafile_readout ro = {0};
    int r = replicafile_read_blocks(rf, first, n, buf, &ro, 0);

    *mismatch = ro.mismatch;
    if (bad && ro.mismatch)
        *bad = ro.bad;
    if (data_bytes && r == 0)
        *data_bytes = ro.data_bytes;
    return r;
}

/* Reads the whole chunk and compares it with model; checks every stored
 * checksum against the model's blocks. */
static void check_against(struct replicafile *rf, const uint8_t *model)
{
    uint8_t *buf = malloc(CHUNK);
    uint64_t *sums = malloc(BLOCKS * sizeof(*sums));
    uint64_t *verified = malloc(BLOCKS * sizeof(*verified));
    struct replicafile_readout ro = {0};

    ro.sums = verified;
    ck_assert_int_eq(replicafile_read_blocks(rf, 0, BLOCKS, buf, &ro, 0), 0);
    ck_assert(!ro.mismatch);
    ck_assert_int_eq(memcmp(buf, model, CHUNK), 0);
    ck_assert_int_eq(replicafile_sums(rf, 0, BLOCKS, sums), 0);
    for (size_t b = 0; b < BLOCKS; b++) {
        ck_assert_uint_eq(sums[b], csum_buf(model + b * KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE));
        ck_assert_uint_eq(verified[b], sums[b]);
    }
    free(verified);
    free(buf);
    free(sums);
}

/* ---------------------------------------------------------------- sidecar */

START_TEST(sidecar_header_round_trip_and_damage)
{
    struct sidecar_header h = {ID, 9, 12345, SIDECAR_DIRTY, BLOCKS}, d;
    uint8_t buf[SIDECAR_HEADER_LEN];

    sidecar_encode(&h, buf);
    ck_assert_int_eq(sidecar_decode(buf, &d), 0);
    ck_assert_uint_eq(d.chunk_id, ID);
    ck_assert_uint_eq(d.version, 9);
    ck_assert_uint_eq(d.length, 12345);
    ck_assert_uint_eq(d.flags, SIDECAR_DIRTY);
    ck_assert_uint_eq(d.blocks, BLOCKS);
    for (size_t i = 0; i < SIDECAR_HEADER_LEN; i++) {
        uint8_t copy[SIDECAR_HEADER_LEN];

        memcpy(copy, buf, sizeof(copy));
        copy[i] ^= 1;
        ck_assert_msg(sidecar_decode(copy, &d) == -EBADMSG, "flip at %zu accepted", i);
    }
}
END_TEST

/* ------------------------------------------------------------------ reads */

START_TEST(fresh_replica_reads_zeros)
{
    struct replicafile *rf = create(3);
    uint8_t *buf = malloc(CHUNK), *zeros = calloc(1, CHUNK);
    size_t data_bytes = 1;
    bool mismatch;

    memset(buf, 0xee, CHUNK);
    ck_assert_int_eq(read_blocks(rf, 0, BLOCKS, buf, NULL, &mismatch, &data_bytes), 0);
    ck_assert_int_eq(memcmp(buf, zeros, CHUNK), 0);
    ck_assert_uint_eq(data_bytes, 0); /* nothing was on disk to read */
    ck_assert_uint_eq(replicafile_header(rf)->version, 3);
    ck_assert_uint_eq(replicafile_length(rf), 0);
    /* Out of range. */
    ck_assert_int_eq(read_blocks(rf, BLOCKS, 1, buf, NULL, &mismatch, NULL), -EINVAL);
    ck_assert_int_eq(read_blocks(rf, BLOCKS - 1, 2, buf, NULL, &mismatch, NULL), -EINVAL);
    replicafile_close(rf);
    free(buf);
    free(zeros);
}
END_TEST

START_TEST(holes_between_writes_read_as_zeros)
{
    struct replicafile *rf = create(1);
    uint8_t *model = calloc(1, CHUNK), data[10000];
    bool mismatch;

    fill(data, sizeof(data), 1);
    ck_assert_int_eq(replicafile_write(rf, 700000, data, sizeof(data), 0, &mismatch), 0);
    memcpy(model + 700000, data, sizeof(data));
    ck_assert_int_eq(replicafile_write(rf, 5, data, 100, 0, &mismatch), 0);
    memcpy(model + 5, data, 100);
    ck_assert_uint_eq(replicafile_length(rf), 710000);
    check_against(rf, model);
    replicafile_close(rf);
    free(model);
}
END_TEST

/* --------------------------------------------------------------- writes */

START_TEST(random_unaligned_writes_match_model)
{
    struct replicafile *rf = create(1);
    uint8_t *model = calloc(1, CHUNK), *data = malloc(CHUNK);
    bool mismatch;

    srand(42);
    for (int i = 0; i < 300; i++) {
        uint64_t off = (uint64_t)rand() % CHUNK;
        size_t len = 1 + (size_t)rand() % (i % 10 == 0 ? 100000 : 9000);

        if (len > CHUNK - off)
            len = CHUNK - off;
        fill(data, len, (unsigned)i);
        ck_assert_int_eq(replicafile_write(rf, off, data, len, 0, &mismatch), 0);
        memcpy(model + off, data, len);
        if (i % 50 == 0)
            check_against(rf, model);
    }
    check_against(rf, model);
    /* The last byte of the chunk, and a write past it. */
    ck_assert_int_eq(replicafile_write(rf, CHUNK - 1, data, 1, 0, &mismatch), 0);
    model[CHUNK - 1] = data[0];
    ck_assert_int_eq(replicafile_write(rf, CHUNK - 1, data, 2, 0, &mismatch), -EINVAL);
    ck_assert_int_eq(replicafile_write(rf, CHUNK, data, 1, 0, &mismatch), -EINVAL);
    ck_assert_int_eq(replicafile_write(rf, 4096, data, 0, 0, &mismatch), -EINVAL);
    check_against(rf, model);
    ck_assert_uint_eq(replicafile_length(rf), CHUNK);
    replicafile_close(rf);
    free(model);
    free(data);
}
END_TEST

START_TEST(partial_block_write_inside_one_block)
{
    struct replicafile *rf = create(1);
    uint8_t *model = calloc(1, CHUNK), data[4096];
    bool mismatch;

    fill(data, sizeof(data), 9);
    /* Whole block, then a few bytes in its middle, then across its end. */
    ck_assert_int_eq(replicafile_write(rf, 8192, data, 4096, 0, &mismatch), 0);
    memcpy(model + 8192, data, 4096);
    ck_assert_int_eq(replicafile_write(rf, 8192 + 100, data + 7, 13, 0, &mismatch), 0);
    memcpy(model + 8192 + 100, data + 7, 13);
    ck_assert_int_eq(replicafile_write(rf, 8192 + 4000, data, 200, 0, &mismatch), 0);
    memcpy(model + 8192 + 4000, data, 200);
    check_against(rf, model);
    replicafile_close(rf);
    free(model);
}
END_TEST

/* ------------------------------------------------------------ corruption */

START_TEST(flipped_data_byte_fails_the_read_of_its_block_only)
{
    struct replicafile *rf = create(1);
    uint8_t *buf = malloc(CHUNK), data[3 * 4096];
    uint64_t bad = 0;
    bool mismatch;

    fill(data, sizeof(data), 3);
    ck_assert_int_eq(replicafile_write(rf, 4096, data, sizeof(data), 0, &mismatch), 0);
    ck_assert_int_eq(flush(rf), 0);
    flip_byte("data", 2 * 4096 + 17);
    ck_assert_int_eq(read_blocks(rf, 0, 4, buf, &bad, &mismatch, NULL), -EIO);
    ck_assert(mismatch);
    ck_assert_uint_eq(bad, 2);
    /* Blocks around it still verify. */
    ck_assert_int_eq(read_blocks(rf, 1, 1, buf, NULL, &mismatch, NULL), 0);
    ck_assert_int_eq(read_blocks(rf, 3, 1, buf, NULL, &mismatch, NULL), 0);
    ck_assert_int_eq(memcmp(buf, data + 2 * 4096, 4096), 0);
    replicafile_close(rf);
    free(buf);
}
END_TEST

START_TEST(flipped_checksum_byte_fails_the_read)
{
    struct replicafile *rf = create(1);
    uint8_t buf[4096];
    uint64_t bad = 0;
    bool mismatch;

    /* A block never written: its zeros must match the stored zero sum. */
    flip_byte("meta", SIDECAR_SUMS_OFF + 100 * 8 + 3);
    ck_assert_int_eq(read_blocks(rf, 100, 1, buf, &bad, &mismatch, NULL), -EIO);
    ck_assert(mismatch);
    ck_assert_uint_eq(bad, 100);
    ck_assert_int_eq(read_blocks(rf, 99, 1, buf, &bad, &mismatch, NULL), 0);
    replicafile_close(rf);
}
END_TEST

START_TEST(partial_write_over_corrupt_block_is_refused_untouched)
{
    struct replicafile *rf = create(1);
    uint8_t data[4096], before[4096], after[4096];
    char path[256];
    bool mismatch;
    int fd;

    fill(data, sizeof(data), 5);
    ck_assert_int_eq(replicafile_write(rf, 0, data, sizeof(data), 0, &mismatch), 0);
    flip_byte("data", 10);
    file_path("data", path, sizeof(path));
    fd = open(path, O_RDONLY);
    ck_assert_int_eq(pread(fd, before, 4096, 0), 4096);
    /* Merging new bytes into the bad block would launder the damage. */
    ck_assert_int_eq(replicafile_write(rf, 100, data, 50, 0, &mismatch), -EIO);
    ck_assert(mismatch);
    ck_assert_int_eq(pread(fd, after, 4096, 0), 4096);
    ck_assert_int_eq(memcmp(before, after, 4096), 0);
    close(fd);
    /* A write covering the whole block needs no old bytes and heals it. */
    ck_assert_int_eq(replicafile_write(rf, 0, data, 4096, 0, &mismatch), 0);
    ck_assert_int_eq(read_blocks(rf, 0, 1, after, NULL, &mismatch, NULL), 0);
    ck_assert_int_eq(memcmp(after, data, 4096), 0);
    replicafile_close(rf);
}
END_TEST

START_TEST(mark_corrupt_persists_and_stops_reads_and_writes)
{
    struct replicafile *rf = create(4);
    uint8_t buf[4096] = {1};
    bool mismatch;

    ck_assert_int_eq(replicafile_mark_corrupt(rf), 0);
    ck_assert_int_eq(read_blocks(rf, 0, 1, buf, NULL, &mismatch, NULL), -EIO);
    ck_assert_int_eq(replicafile_write(rf, 0, buf, 10, 0, &mismatch), -EIO);
    ck_assert(!mismatch);
    replicafile_close(rf);
    ck_assert_uint_eq(disk_header().flags & SIDECAR_CORRUPT, SIDECAR_CORRUPT);
    ck_assert_int_eq(chunkstore_open_replica(cs, ID, &rf), 0);
    ck_assert_int_eq(read_blocks(rf, 0, 1, buf, NULL, &mismatch, NULL), -EIO);
    replicafile_close(rf);
}
END_TEST

/* ------------------------------------------------------- dirty / recovery */

START_TEST(dirty_flag_is_on_disk_before_data_and_cleared_by_settle)
{
    struct replicafile *rf = create(1);
    uint8_t data[100];
    bool mismatch;

    fill(data, sizeof(data), 1);
    ck_assert_uint_eq(disk_header().flags, 0);
    ck_assert(!replicafile_unsettled(rf));
    ck_assert_int_eq(replicafile_write(rf, 10, data, sizeof(data), 0, &mismatch), 0);
    ck_assert_uint_eq(disk_header().flags, SIDECAR_DIRTY);
    ck_assert(replicafile_unsettled(rf));
    /* A flush makes the data durable; the flag stays, so a crash now has the
     * checksums recomputed from that data. */
    ck_assert_int_eq(flush(rf), 0);
    ck_assert_uint_eq(disk_header().flags, SIDECAR_DIRTY);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert_uint_eq(disk_header().flags, 0);
    ck_assert_uint_eq(disk_header().length, 110);
    ck_assert(!replicafile_unsettled(rf));
    /* Nothing written: flush and settle are free and change nothing. */
    ck_assert_int_eq(flush(rf), 0);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert_uint_eq(disk_header().flags, 0);
    ck_assert_int_eq(replicafile_write(rf, 5000, data, sizeof(data), 0, &mismatch), 0);
    ck_assert_uint_eq(disk_header().flags, SIDECAR_DIRTY);
    replicafile_close(rf);
}
END_TEST

START_TEST(write_of_no_bytes_only_marks_dirty)
{
    struct replicafile *rf = create(1);
    uint8_t data[100];
    bool mismatch;
    struct stat st;
    char path[128];

    fill(data, sizeof(data), 2);
    /* Settled, a nowait write of nothing would need the sync: refused. */
    ck_assert_int_eq(replicafile_write(rf, 0, NULL, 0, REPLICAFILE_NOWAIT, &mismatch), -EAGAIN);
    ck_assert_uint_eq(disk_header().flags, 0);
    ck_assert_int_eq(replicafile_write(rf, 4096, NULL, 0, 0, &mismatch), -EINVAL);
    ck_assert_uint_eq(disk_header().flags, 0);
    ck_assert_int_eq(replicafile_write(rf, 0, NULL, 0, 0, &mismatch), 0);
    ck_assert_uint_eq(disk_header().flags, SIDECAR_DIRTY);
    ck_assert(replicafile_unsettled(rf));
    /* Nothing was written... */
    file_path("data", path, sizeof(path));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 0);
    ck_assert_uint_eq(replicafile_length(rf), 0);
    /* ...and the next write, now allowed on the loop, needs no sync. */
    ck_assert_int_eq(replicafile_write(rf, 0, data, sizeof(data), REPLICAFILE_NOWAIT, &mismatch),
                     0);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert_uint_eq(disk_header().flags, 0);
    ck_assert_uint_eq(disk_header().length, sizeof(data));
    replicafile_close(rf);
}
END_TEST

/* Whether the filesystem under path should take flushes as writeback plus a
 * device flush: ext2/3/4 does (unless mounted data=journal, which no test
 * machine is). */
static bool expect_in_place(const char *path)
{
    struct statfs sf;

    ck_assert_int_eq(statfs(path, &sf), 0);
    return sf.f_type == EXT4_SUPER_MAGIC;
}

static bool writes_then_flush_by_device(struct replicafile *rf, uint64_t off, size_t len)
{
    uint8_t data[2 * 4096];
    bool mismatch;

    ck_assert_uint_le(len, sizeof(data));
    fill(data, len, (unsigned)off);
    ck_assert_int_eq(replicafile_write(rf, off, data, len, 0, &mismatch), 0);
    return flush_by_device(rf);
}

START_TEST(flush_skips_fdatasync_only_over_blocks_allocated_before)
{
    bool in_place = expect_in_place(dir);
    struct replicafile *rf = create(1);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    bool mismatch;

    ck_assert_int_ge(fd, 0);
    ck_assert(diskio_overwrites_in_place(fd) == in_place);
    close(fd);
    /* New blocks, then the same ones: only the second flush may skip. */
    ck_assert(!writes_then_flush_by_device(rf, 0, 8192));
    ck_assert(writes_then_flush_by_device(rf, 0, 4096) == in_place);
    ck_assert(writes_then_flush_by_device(rf, 5000, 100) == in_place);
    /* Past the end, leaving a hole; into the hole; each then again. */
    ck_assert(!writes_then_flush_by_device(rf, 16384, 4096));
    ck_assert(writes_then_flush_by_device(rf, 16384, 4096) == in_place);
    ck_assert(!writes_then_flush_by_device(rf, 8192, 4096));
    ck_assert(writes_then_flush_by_device(rf, 8192, 4096) == in_place);
    ck_assert(!writes_then_flush_by_device(rf, 8192, 8192)); /* 12288 was a hole */
    ck_assert(writes_then_flush_by_device(rf, 8192, 8192) == in_place);
    /* A block the end of the file cuts: writing its tail grows the file. */
    ck_assert(!writes_then_flush_by_device(rf, 20480, 100));
    ck_assert(!writes_then_flush_by_device(rf, 20480, 50));
    ck_assert(!writes_then_flush_by_device(rf, 20480, 4096));
    ck_assert(writes_then_flush_by_device(rf, 20480, 4096) == in_place);
    /* Only whole blocks are learnt from a write (a filesystem of smaller
     * blocks may keep a hole in a block written in part). */
    ck_assert(!writes_then_flush_by_device(rf, 26000, 8192));
    ck_assert(writes_then_flush_by_device(rf, 28672, 4096) == in_place);
    ck_assert(!writes_then_flush_by_device(rf, 24576, 4096));
    ck_assert(writes_then_flush_by_device(rf, 24576, 4096) == in_place);
    /* Nothing written: nothing to do. */
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert(!flush_by_device(rf));
    replicafile_close(rf);

    /* A file just opened knows nothing of its blocks. */
    ck_assert_int_eq(chunkstore_open_replica(cs, ID, &rf), 0);
    ck_assert(!writes_then_flush_by_device(rf, 0, 4096));
    ck_assert(writes_then_flush_by_device(rf, 0, 4096) == in_place);
    /* Blocks a write filled count once the next fdatasync is done. */
    ck_assert(!writes_then_flush_by_device(rf, 40960, 4096));
    ck_assert(writes_then_flush_by_device(rf, 40960, 4096) == in_place);
    /* A trim gives up the blocks from the one it cuts. */
    ck_assert_int_eq(replicafile_trim(rf, 6000, 2, &mismatch), 0);
    ck_assert(!writes_then_flush_by_device(rf, 4096, 4096));
    ck_assert(writes_then_flush_by_device(rf, 0, 4096) == in_place);
    replicafile_close(rf);
}
END_TEST

/* A file of more data ranges than the first fdatasync looks up: the ones
 * it missed count once written and synced. */
START_TEST(flush_learns_blocks_past_the_ranges_it_looked_up)
{
    bool in_place = expect_in_place(dir);
    struct replicafile *rf = create(1);
    uint64_t last = (BLOCKS - 2) * 4096ull;

    for (uint64_t b = 0; b < BLOCKS; b += 2)
        (void)writes_then_flush_by_device(rf, b * 4096, 4096);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_open_replica(cs, ID, &rf), 0);
    ck_assert(!writes_then_flush_by_device(rf, 0, 4096)); /* first after the open */
    ck_assert(writes_then_flush_by_device(rf, 4096 * 8, 4096) == in_place); /* looked up */
    ck_assert(!writes_then_flush_by_device(rf, last, 4096));                /* range 128: missed */
    ck_assert(writes_then_flush_by_device(rf, last, 4096) == in_place);
    ck_assert(!writes_then_flush_by_device(rf, 4096, 4096)); /* a hole */
    replicafile_close(rf);
}
END_TEST

START_TEST(flushes_sync_where_overwrites_are_not_known_in_place)
{
    struct chunkstore_identity id = {"test-cluster", 7, CHUNK};
    char shm[64] = "/dev/shm/keel-ut-rf.XXXXXX";
    struct chunkstore *other;
    struct replicafile *rf;
    uint8_t data[4096];
    bool mismatch;

    if (!mkdtemp(shm))
        return; /* no /dev/shm here */
    if (expect_in_place(shm)) {
        rmdir(shm);
        return;
    }
    ck_assert_int_eq(chunkstore_open(shm, &other), 0);
    ck_assert_int_eq(chunkstore_write_identity(other, &id), 0);
    chunkstore_adopt_identity(other, &id);
    ck_assert_int_eq(chunkstore_create(other, ID, 1, &rf), 0);
    fill(data, sizeof(data), 9);
    for (int i = 0; i < 3; i++) {
        bool device = true;

        ck_assert_int_eq(replicafile_write(rf, 0, data, sizeof(data), 0, &mismatch), 0);
        ck_assert_int_eq(replicafile_flush(rf, &device), 0);
        ck_assert(!device);
    }
    replicafile_close(rf);
    chunkstore_close(other);
    nftw(shm, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

START_TEST(checksums_reach_the_sidecar_when_it_settles)
{
    /* Chunks of 4 MiB here: two pages of checksums (512 blocks each). */
    const uint32_t blocks = 1024;
    struct chunkstore_identity id = {"test-cluster", 7, (uint64_t)blocks * KEEL_BLOCK_SIZE};
    struct chunkstore *big;
    struct replicafile *rf;
    uint8_t data[3 * 4096], buf[3 * 4096];
    uint64_t on_disk[4], zero = csum_zero_block();
    struct replicafile_readout ro = {0};
    char sub[128], path[256];
    bool mismatch;
    int fd;

    snprintf(sub, sizeof(sub), "%s/big", dir);
    ck_assert_int_eq(chunkstore_open(sub, &big), 0);
    ck_assert_int_eq(chunkstore_write_identity(big, &id), 0);
    chunkstore_adopt_identity(big, &id);
    ck_assert_int_eq(chunkstore_create(big, ID, 1, &rf), 0);
    fill(data, sizeof(data), 5);
    ck_assert_int_eq(replicafile_write(rf, 510 * 4096, data, sizeof(data), 0, &mismatch), 0);
    snprintf(path, sizeof(path), "%s/chunks/%02x/%016llx.meta", sub, (unsigned)(ID & 0xff),
             (unsigned long long)ID);
    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sidecar_read_sums(fd, 510, 3, on_disk, false), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(on_disk[i], zero); /* only in memory so far... */
    ck_assert_int_eq(replicafile_read_blocks(rf, 510, 3, buf, &ro, 0),
                     0); /* ...which reads trust */
    ck_assert_int_eq(memcmp(buf, data, sizeof(buf)), 0);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    ck_assert_int_eq(sidecar_read_sums(fd, 509, 4, on_disk, false), 0);
    ck_assert_uint_eq(on_disk[0], zero);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(on_disk[1 + i], csum_buf(data + i * 4096, 4096));
    close(fd);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_open_replica(big, ID, &rf), 0);
    memset(buf, 0, sizeof(buf));
    ck_assert_int_eq(replicafile_read_blocks(rf, 510, 3, buf, &ro, 0), 0);
    ck_assert_int_eq(memcmp(buf, data, sizeof(buf)), 0);
    replicafile_close(rf);
    chunkstore_close(big);
}
END_TEST

START_TEST(nowait_never_blocks_and_changes_nothing_when_it_cannot)
{
    struct replicafile *rf = create(1);
    uint8_t data[4096], buf[4096];
    struct replicafile_readout ro = {0};
    bool mismatch;

    fill(data, sizeof(data), 6);
    /* A settled replica needs a sync to be marked dirty: not without waiting. */
    ck_assert_int_eq(replicafile_write(rf, 0, data, 100, REPLICAFILE_NOWAIT, &mismatch), -EAGAIN);
    ck_assert_uint_eq(disk_header().flags, 0);
    ck_assert_uint_eq(replicafile_length(rf), 0);
    ck_assert_int_eq(replicafile_write(rf, 0, data, sizeof(data), 0, &mismatch), 0);
    /* Now dirty, with its data in the page cache: both work at once. */
    ck_assert_int_eq(replicafile_write(rf, 8192 + 7, data, 10, REPLICAFILE_NOWAIT, &mismatch), 0);
    ck_assert_int_eq(replicafile_read_blocks(rf, 0, 1, buf, &ro, REPLICAFILE_NOWAIT), 0);
    ck_assert_int_eq(memcmp(buf, data, sizeof(buf)), 0);
    /* Data dropped from the cache: the read says so instead of waiting. */
    ck_assert_int_eq(flush(rf), 0);
    {
        char path[256];
        int fd;

        file_path("data", path, sizeof(path));
        fd = open(path, O_RDONLY);
        ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
        close(fd);
    }
    ck_assert_int_eq(replicafile_read_blocks(rf, 0, 1, buf, &ro, REPLICAFILE_NOWAIT), -EAGAIN);
    ck_assert_int_eq(replicafile_read_blocks(rf, 0, 1, buf, &ro, 0), 0);
    ck_assert_int_eq(memcmp(buf, data, sizeof(buf)), 0);
    replicafile_close(rf);
}
END_TEST

static int collect(void *arg, const struct replica_info *ri)
{
    struct replica_info *out = arg;

    ck_assert_uint_eq(out->chunk_id, 0);
    *out = *ri;
    return 0;
}

/* The data reached the disk but the checksums did not (a crash between the
 * two writes): recovery makes the new bytes readable, without errors. */
START_TEST(recovery_after_data_without_checksums)
{
    struct replicafile *rf = create(2);
    struct replica_info ri = {0};
    uint8_t *model = calloc(1, CHUNK), data[20000];
    uint64_t changed = 0;
    bool mismatch;

    fill(data, sizeof(data), 1);
    ck_assert_int_eq(replicafile_write(rf, 0, data, sizeof(data), 0, &mismatch), 0);
    memcpy(model, data, sizeof(data));
    ck_assert_int_eq(flush(rf), 0);
    /* Unflushed write through the store, then bytes "from a write whose
     * checksums were lost": the header stays dirty. */
    ck_assert_int_eq(replicafile_write(rf, 30000, data, 10, 0, &mismatch), 0);
    memcpy(model + 30000, data, 10);
    replicafile_close(rf);
    fill(data, sizeof(data), 2);
    poke("data", 40000, data, 5000);
    memcpy(model + 40000, data, 5000);

    ck_assert_int_eq(chunkstore_scan(cs, collect, &ri), 0);
    ck_assert_uint_eq(ri.chunk_id, ID);
    ck_assert_uint_eq(ri.version, 2);
    ck_assert_uint_eq(ri.length, 45000);
    ck_assert(!ri.corrupt);
    ck_assert_uint_eq(disk_header().flags, 0);
    ck_assert_int_eq(chunkstore_open_replica(cs, ID, &rf), 0);
    check_against(rf, model);
    /* Nothing left to recover. */
    ck_assert_int_eq(replicafile_recover(rf, &changed), 0);
    ck_assert_uint_eq(changed, 0);
    replicafile_close(rf);
    free(model);
}
END_TEST

/* The checksums reached the disk but the data did not: recovery goes back
 * to the old bytes, again without errors. */
START_TEST(recovery_after_checksums_without_data)
{
    struct replicafile *rf = create(2);
    struct replica_info ri = {0};
    uint8_t *model = calloc(1, CHUNK), data[8192], old[8192];
    uint64_t junk = 0x1122334455667788ull;
    bool mismatch;

    fill(old, sizeof(old), 3);
    ck_assert_int_eq(replicafile_write(rf, 0, old, sizeof(old), 0, &mismatch), 0);
    ck_assert_int_eq(flush(rf), 0);
    memcpy(model, old, sizeof(old));
    fill(data, sizeof(data), 4);
    ck_assert_int_eq(replicafile_write(rf, 0, data, sizeof(data), 0, &mismatch), 0);
    replicafile_close(rf);
    poke("data", 0, old, sizeof(old)); /* the new data "never made it" */
    poke("meta", SIDECAR_SUMS_OFF + 200 * 8, &junk, 8);

    ck_assert_int_eq(chunkstore_scan(cs, collect, &ri), 0);
    ck_assert(!ri.corrupt);
    ck_assert_int_eq(chunkstore_open_replica(cs, ID, &rf), 0);
    check_against(rf, model);
    replicafile_close(rf);
    free(model);
}
END_TEST

/* A clean replica is not touched by the scan: damage in it stays visible. */
START_TEST(clean_replica_is_not_recomputed)
{
    struct replicafile *rf = create(2);
    struct replica_info ri = {0};
    uint8_t data[4096], buf[4096];
    bool mismatch;

    fill(data, sizeof(data), 3);
    ck_assert_int_eq(replicafile_write(rf, 0, data, sizeof(data), 0, &mismatch), 0);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    replicafile_close(rf);
    flip_byte("data", 99);
    ck_assert_int_eq(chunkstore_scan(cs, collect, &ri), 0);
    ck_assert_int_eq(chunkstore_open_replica(cs, ID, &rf), 0);
    ck_assert_int_eq(read_blocks(rf, 0, 1, buf, NULL, &mismatch, NULL), -EIO);
    ck_assert(mismatch);
    replicafile_close(rf);
}
END_TEST

/* ----------------------------------------------------- trims and versions */

START_TEST(trim_cuts_mid_block_and_sets_version)
{
    struct replicafile *rf = create(1);
    uint8_t *model = calloc(1, CHUNK), *data = malloc(100000);
    bool mismatch;

    fill(data, 100000, 6);
    ck_assert_int_eq(replicafile_write(rf, 0, data, 100000, 0, &mismatch), 0);
    memcpy(model, data, 100000);
    ck_assert_int_eq(replicafile_trim(rf, 50001, 2, &mismatch), 0);
    memset(model + 50001, 0, 100000 - 50001);
    ck_assert_uint_eq(replicafile_length(rf), 50001);
    ck_assert_uint_eq(replicafile_header(rf)->version, 2);
    check_against(rf, model);
    ck_assert_uint_eq(disk_header().version, 2);
    ck_assert_uint_eq(disk_header().flags, 0);
    /* Trimming past the end only changes the version. */
    ck_assert_int_eq(replicafile_trim(rf, 900000, 3, &mismatch), 0);
    ck_assert_uint_eq(replicafile_length(rf), 50001);
    check_against(rf, model);
    /* Trim to an aligned length, then to zero. */
    ck_assert_int_eq(replicafile_trim(rf, 8192, 4, &mismatch), 0);
    memset(model + 8192, 0, 50001 - 8192);
    check_against(rf, model);
    ck_assert_int_eq(replicafile_trim(rf, 0, 5, &mismatch), 0);
    memset(model, 0, 8192);
    check_against(rf, model);
    ck_assert_int_eq(replicafile_trim(rf, CHUNK + 1, 6, &mismatch), -EINVAL);
    replicafile_close(rf);
    free(model);
    free(data);
}
END_TEST

START_TEST(set_version_is_durable)
{
    struct replicafile *rf = create(1);

    ck_assert_int_eq(replicafile_set_version(rf, 8), 0);
    ck_assert_uint_eq(disk_header().version, 8);
    replicafile_close(rf);
    ck_assert_int_eq(chunkstore_open_replica(cs, ID, &rf), 0);
    ck_assert_uint_eq(replicafile_header(rf)->version, 8);
    replicafile_close(rf);
}
END_TEST

START_TEST(clean_data_size_change_is_detected_at_open)
{
    struct replicafile *rf = create(1);
    uint8_t data[100] = {1};
    bool mismatch;
    char path[256];

    ck_assert_int_eq(replicafile_write(rf, 0, data, sizeof(data), 0, &mismatch), 0);
    ck_assert_int_eq(replicafile_settle(rf), 0);
    replicafile_close(rf);
    file_path("data", path, sizeof(path));
    ck_assert_int_eq(truncate(path, 50), 0);
    ck_assert_int_eq(chunkstore_open_replica(cs, ID, &rf), -EBADMSG);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("replicafile");
    TCase *tc = tcase_create("replicafile");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sidecar_header_round_trip_and_damage);
    tcase_add_test(tc, fresh_replica_reads_zeros);
    tcase_add_test(tc, holes_between_writes_read_as_zeros);
    tcase_add_test(tc, random_unaligned_writes_match_model);
    tcase_add_test(tc, partial_block_write_inside_one_block);
    tcase_add_test(tc, flipped_data_byte_fails_the_read_of_its_block_only);
    tcase_add_test(tc, flipped_checksum_byte_fails_the_read);
    tcase_add_test(tc, partial_write_over_corrupt_block_is_refused_untouched);
    tcase_add_test(tc, mark_corrupt_persists_and_stops_reads_and_writes);
    tcase_add_test(tc, dirty_flag_is_on_disk_before_data_and_cleared_by_settle);
    tcase_add_test(tc, write_of_no_bytes_only_marks_dirty);
    tcase_add_test(tc, flush_skips_fdatasync_only_over_blocks_allocated_before);
    tcase_add_test(tc, flush_learns_blocks_past_the_ranges_it_looked_up);
    tcase_add_test(tc, flushes_sync_where_overwrites_are_not_known_in_place);
    tcase_add_test(tc, checksums_reach_the_sidecar_when_it_settles);
    tcase_add_test(tc, nowait_never_blocks_and_changes_nothing_when_it_cannot);
    tcase_add_test(tc, recovery_after_data_without_checksums);
    tcase_add_test(tc, recovery_after_checksums_without_data);
    tcase_add_test(tc, clean_replica_is_not_recomputed);
    tcase_add_test(tc, trim_cuts_mid_block_and_sets_version);
    tcase_add_test(tc, set_version_is_durable);
    tcase_add_test(tc, clean_data_size_change_is_detected_at_open);
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
