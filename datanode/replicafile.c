/*
 * replicafile: see replicafile.h for the crash-safety protocol.
 *
 * Checksums in memory: pages[p] holds the checksums of blocks
 * [p * SIDECAR_SUMS_PER_PAGE, (p + 1) * SIDECAR_SUMS_PER_PAGE), loaded from
 * the sidecar by the first write that touches them. A loaded page is the
 * truth for its blocks, the sidecar for the others (only a settle, trim or
 * recovery writes the sidecar, and they run alone). Dirty pages go back to
 * the sidecar when the replica settles; the pages are then dropped.
 *
 * Locking: `lock` guards the page table and the pages' contents, length,
 * error and the flush bookkeeping (allocated, written, outside, synced), which
 * operations on disjoint blocks share; it is never held across I/O. hdr
 * changes only in operations that run alone.
 */
#include "replicafile.h"

#include "checksum.h"
#include "diskio.h"
#include "wal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define PER_PAGE        SIDECAR_SUMS_PER_PAGE
#define RECOVER_BLOCKS  256u /* blocks hashed per read while recovering (1 MiB) */
#define STACK_SUMS      64u  /* checksums of a small write or read kept on the stack */
#define MAX_DATA_RANGES 64   /* data ranges looked up by replicafile_flush */

struct sums_page {
    bool dirty; /* differs from the sidecar */
    uint64_t sums[PER_PAGE];
};

struct replicafile {
    int data_fd;
    int meta_fd;
    struct sidecar_header hdr; /* as on disk */
    uint64_t zero_sum;
    uint32_t npages;
    pthread_mutex_t lock;
    struct sums_page **pages; /* NULL entries: not loaded */
    uint64_t length;          /* the data file's size */
    int error;
    bool full_only; /* error is writes' -ENOSPC alone: room clears it */
    /* Flushes by writeback and a device flush (see replicafile_flush). */
    bool in_place;
    bool scanned;        /* an fdatasync has looked for the file's data */
    uint64_t *allocated; /* bitmap: blocks whose allocation an fdatasync committed */
    uint64_t *written;   /* bitmap: blocks wholly written since the last fdatasync began */
    uint64_t outside;    /* writes so far that were not inside `allocated` when they began */
    uint64_t synced;     /* `outside` when the last fdatasync to finish began */
    /* The datanode's log of small writes (see replicafile_flush), or NULL. */
    struct wal *wal;
    uint64_t logged;          /* number of the last record of a write */
    uint64_t unlogged;        /* writes so far that the log refused */
    uint64_t unlogged_synced; /* `unlogged` when the last sync to finish began */
};

/* An edge block of a write, read and verified for csum_update. */
struct edge_ctx {
    struct replicafile *rf;
    uint64_t base; /* block number of the write's first block */
    bool nowait;
    bool mismatch;
};

static size_t bitmap_words(const struct replicafile *rf)
{
    return ((size_t)rf->hdr.blocks + 63) / 64;
}

static uint64_t chunk_bytes(const struct replicafile *rf)
{
    return (uint64_t)rf->hdr.blocks * KEEL_BLOCK_SIZE;
}

static uint32_t page_blocks(const struct replicafile *rf, uint32_t p)
{
    return MIN(PER_PAGE, rf->hdr.blocks - p * PER_PAGE);
}

/* A failure that leaves the files in an unknown state: it sticks. */
static int poison(struct replicafile *rf, int err)
{
    pthread_mutex_lock(&rf->lock);
    if (!rf->error)
        rf->error = err;
    rf->full_only = false;
    pthread_mutex_unlock(&rf->lock);
    return err;
}

/* A write the disk had no room for changed only what the checksums now
 * say (apply_partial_locked), unless it tore a block: that failure sticks
 * only until there is room again (replicafile_clear_full). */
static void poison_write(struct replicafile *rf, int err, bool torn)
{
    bool full = err == -ENOSPC && !torn;

    pthread_mutex_lock(&rf->lock);
    rf->full_only = full && (!rf->error || rf->full_only);
    if (!rf->error)
        rf->error = err;
    pthread_mutex_unlock(&rf->lock);
}

bool replicafile_clear_full(struct replicafile *rf)
{
    bool clear;

    pthread_mutex_lock(&rf->lock);
    if (rf->error == -ENOSPC && rf->full_only) {
        rf->error = 0;
        rf->full_only = false;
    }
    clear = rf->error == 0;
    pthread_mutex_unlock(&rf->lock);
    return clear;
}

static int data_size(const struct replicafile *rf, uint64_t *size)
{
    struct stat st;

    if (fstat(rf->data_fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

static void drop_pages(struct replicafile *rf)
{
    pthread_mutex_lock(&rf->lock);
    for (uint32_t p = 0; p < rf->npages; p++) {
        free(rf->pages[p]);
        rf->pages[p] = NULL;
    }
    pthread_mutex_unlock(&rf->lock);
}

int replicafile_open(int data_fd, int meta_fd, uint64_t chunk_id, uint32_t blocks, unsigned flags,
                     struct replicafile **out)
{
    struct replicafile *rf = calloc(1, sizeof(*rf));
    uint64_t size = 0;
    struct stat st;
    int attr = 0, r;

    if (!rf) {
        close(data_fd);
        close(meta_fd);
        return -ENOMEM;
    }
    rf->data_fd = data_fd;
    rf->meta_fd = meta_fd;
    rf->zero_sum = csum_zero_block();
    pthread_mutex_init(&rf->lock, NULL);
    r = sidecar_read_header(meta_fd, &rf->hdr, false);
    if (r)
        goto fail;
    if (rf->hdr.chunk_id != chunk_id || rf->hdr.blocks != blocks) {
        r = -EBADMSG;
        goto fail;
    }
    /* A file of journalled data (chattr +j) commits its pages in the journal. */
    if ((flags & REPLICAFILE_IN_PLACE) && ioctl(data_fd, FS_IOC_GETFLAGS, &attr) == 0 &&
        !(attr & FS_JOURNAL_DATA_FL)) {
        rf->allocated = calloc(bitmap_words(rf), sizeof(uint64_t));
        rf->written = calloc(bitmap_words(rf), sizeof(uint64_t));
        rf->in_place = rf->allocated && rf->written;
    }
    rf->outside = 1; /* nothing is known allocated until an fdatasync */
    rf->npages = (blocks + PER_PAGE - 1) / PER_PAGE;
    rf->pages = calloc(rf->npages, sizeof(*rf->pages));
    if (!rf->pages) {
        r = -ENOMEM;
        goto fail;
    }
    if (fstat(meta_fd, &st) < 0) {
        r = -errno;
        goto fail;
    }
    if ((uint64_t)st.st_size < sidecar_size(blocks)) {
        r = -EBADMSG;
        goto fail;
    }
    r = data_size(rf, &size);
    if (r)
        goto fail;
    if (size > chunk_bytes(rf)) {
        r = -EBADMSG;
        goto fail;
    }
    if (!(rf->hdr.flags & SIDECAR_DIRTY) && size != rf->hdr.length) {
        r = -EBADMSG; /* the data file changed behind a settled sidecar */
        goto fail;
    }
    rf->length = size; /* a dirty header's length lags */
    *out = rf;
    return 0;
fail:
    replicafile_close(rf);
    return r;
}

void replicafile_close(struct replicafile *rf)
{
    if (!rf)
        return;
    close(rf->data_fd);
    close(rf->meta_fd);
    if (rf->pages)
        drop_pages(rf);
    free(rf->pages);
    free(rf->allocated);
    free(rf->written);
    pthread_mutex_destroy(&rf->lock);
    free(rf);
}

const struct sidecar_header *replicafile_header(const struct replicafile *rf)
{
    return &rf->hdr;
}

uint64_t replicafile_length(struct replicafile *rf)
{
    uint64_t len;

    pthread_mutex_lock(&rf->lock);
    len = rf->length;
    pthread_mutex_unlock(&rf->lock);
    return len;
}

bool replicafile_unsettled(const struct replicafile *rf)
{
    return rf->hdr.flags & SIDECAR_DIRTY;
}

int replicafile_error(struct replicafile *rf)
{
    int err;

    pthread_mutex_lock(&rf->lock);
    err = rf->error;
    pthread_mutex_unlock(&rf->lock);
    return err;
}

/* Writes the header with new flags, and syncs it when asked. */
static int store_header(struct replicafile *rf, const struct sidecar_header *h, bool sync)
{
    int r = sidecar_write_header(rf->meta_fd, h);

    if (r == 0 && sync)
        r = diskio_datasync(rf->meta_fd);
    if (r)
        return poison(rf, r);
    rf->hdr = *h;
    return 0;
}

/* Durably marks the replica dirty before its first change after a settle. */
static int mark_dirty(struct replicafile *rf)
{
    struct sidecar_header h = rf->hdr;

    if (rf->hdr.flags & SIDECAR_DIRTY)
        return 0;
    h.flags |= SIDECAR_DIRTY;
    return store_header(rf, &h, true);
}

static int writable(struct replicafile *rf)
{
    int err = replicafile_error(rf);

    if (err)
        return err;
    if (rf->hdr.flags & SIDECAR_CORRUPT)
        return -EIO;
    return 0;
}

/* ------------------------------------------------------------ checksums */

/* Checksums of blocks [first, first + n): from memory where loaded, else
 * from the sidecar. */
static int get_sums(struct replicafile *rf, uint64_t first, size_t n, uint64_t *out, bool nowait)
{
    while (n) {
        uint32_t p = (uint32_t)(first / PER_PAGE);
        size_t i = first % PER_PAGE, k = MIN(n, PER_PAGE - i);
        bool loaded;
        int r;

        pthread_mutex_lock(&rf->lock);
        loaded = rf->pages[p] != NULL;
        if (loaded)
            memcpy(out, &rf->pages[p]->sums[i], k * sizeof(*out));
        pthread_mutex_unlock(&rf->lock);
        if (!loaded) {
            r = sidecar_read_sums(rf->meta_fd, first, k, out, nowait);
            if (r)
                return r;
        }
        first += k;
        out += k;
        n -= k;
    }
    return 0;
}

/* Loads the pages holding blocks [first, last] that are not in memory. */
static int load_pages(struct replicafile *rf, uint64_t first, uint64_t last, bool nowait)
{
    for (uint32_t p = (uint32_t)(first / PER_PAGE); p <= last / PER_PAGE; p++) {
        struct sums_page *pg;
        bool have;
        int r;

        pthread_mutex_lock(&rf->lock);
        have = rf->pages[p] != NULL;
        pthread_mutex_unlock(&rf->lock);
        if (have)
            continue;
        pg = malloc(sizeof(*pg));
        if (!pg)
            return -ENOMEM;
        pg->dirty = false;
        r = sidecar_read_sums(rf->meta_fd, (uint64_t)p * PER_PAGE, page_blocks(rf, p), pg->sums,
                              nowait);
        if (r) {
            free(pg);
            return r;
        }
        pthread_mutex_lock(&rf->lock);
        if (!rf->pages[p]) {
            rf->pages[p] = pg;
            pg = NULL;
        }
        pthread_mutex_unlock(&rf->lock);
        free(pg); /* another operation loaded it meanwhile */
    }
    return 0;
}

/* Stores new checksums of blocks [first, first + n) in their loaded pages.
 * Called with the lock held. */
static void put_sums_locked(struct replicafile *rf, uint64_t first, size_t n, const uint64_t *sums)
{
    for (size_t k = 0; k < n; k++) {
        struct sums_page *pg = rf->pages[(first + k) / PER_PAGE];

        pg->sums[(first + k) % PER_PAGE] = sums[k];
        pg->dirty = true;
    }
}

/* Writes every dirty page to the sidecar (not synced). */
static int write_pages(struct replicafile *rf)
{
    int r = 0;

    for (uint32_t p = 0; p < rf->npages && r == 0; p++) {
        struct sums_page *pg = rf->pages[p];

        if (pg && pg->dirty)
            r = sidecar_write_sums(rf->meta_fd, (uint64_t)p * PER_PAGE, page_blocks(rf, p),
                                   pg->sums);
        if (r == 0 && pg)
            pg->dirty = false;
    }
    return r;
}

/* The sidecar catches up with data synced first; the header becomes h
 * (flag cleared by the caller), synced when asked. Runs alone. */
static int settle_to(struct replicafile *rf, struct sidecar_header *h, bool sync_header)
{
    /* Runs alone: every write so far is in the file, and the log's records
     * of them must not be replayed over what comes after (see
     * replicafile_flush). */
    uint64_t mark = rf->wal ? wal_last(rf->wal) : 0;
    int r = diskio_datasync(rf->data_fd);

    if (r == 0 && rf->wal) {
        r = wal_barrier(rf->wal, rf->hdr.chunk_id, mark);
        if (r == 0)
            rf->unlogged_synced = rf->unlogged;
    }
    if (r == 0)
        r = write_pages(rf);
    if (r == 0)
        r = diskio_datasync(rf->meta_fd);
    if (r)
        return poison(rf, r);
    r = store_header(rf, h, sync_header);
    if (r == 0)
        drop_pages(rf);
    return r;
}

/* ---------------------------------------------------------------- reads */

int replicafile_read_blocks(struct replicafile *rf, uint64_t first, size_t n, void *buf,
                            struct replicafile_readout *out, unsigned flags)
{
    bool nowait = flags & REPLICAFILE_NOWAIT;
    uint8_t *p = buf;
    uint64_t stack_sums[STACK_SUMS];
    uint64_t *sums = out->sums ? out->sums : stack_sums;
    size_t got = 0, len = n * KEEL_BLOCK_SIZE;
    int r;

    out->mismatch = false;
    if (rf->hdr.flags & SIDECAR_CORRUPT)
        return -EIO;
    if (n == 0 || first >= rf->hdr.blocks || n > rf->hdr.blocks - first)
        return -EINVAL;
    if (!out->sums && n > ARRAY_SIZE(stack_sums)) {
        sums = malloc(n * sizeof(*sums));
        if (!sums)
            return -ENOMEM;
    }
    r = nowait ? diskio_pread_nowait(rf->data_fd, p, len, first * KEEL_BLOCK_SIZE, &got)
               : diskio_pread(rf->data_fd, p, len, first * KEEL_BLOCK_SIZE, &got);
    if (r)
        goto out;
    r = get_sums(rf, first, n, sums, nowait);
    if (r)
        goto out;
    memset(p + got, 0, len - got);
    for (size_t i = 0; i < n; i++) {
        /* A block wholly past the end of the data is zeros: no need to hash it. */
        uint64_t sum = (uint64_t)i * KEEL_BLOCK_SIZE >= got
                           ? rf->zero_sum
                           : csum_buf(p + (uint64_t)i * KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE);

        if (sum != sums[i]) {
            out->bad = first + i;
            out->mismatch = true;
            r = -EIO;
            goto out;
        }
    }
    out->data_bytes = got;
out:
    if (sums != stack_sums && sums != out->sums)
        free(sums);
    return r;
}

int replicafile_check(struct replicafile *rf)
{
    struct stat data, meta;

    if (fstat(rf->data_fd, &data) < 0 || fstat(rf->meta_fd, &meta) < 0)
        return -errno;
    if (data.st_nlink == 0 || meta.st_nlink == 0)
        return -ENOENT;
    if (!(rf->hdr.flags & SIDECAR_DIRTY) && (uint64_t)data.st_size != rf->hdr.length)
        return -EBADMSG;
    /* Writes running alongside only ever grow the file before its length
     * here catches up; a file shorter than that was cut by someone else. */
    if ((uint64_t)data.st_size < replicafile_length(rf))
        return -EBADMSG;
    return 0;
}

int replicafile_sums(struct replicafile *rf, uint64_t first, size_t n, uint64_t *sums)
{
    if (first >= rf->hdr.blocks || n > rf->hdr.blocks - first)
        return -EINVAL;
    return get_sums(rf, first, n, sums, false);
}

/* Reads block b (zeros past the end of the data) and checks its checksum. */
static int read_verified_block(struct replicafile *rf, uint64_t b, uint8_t *buf, bool nowait,
                               bool *mismatch)
{
    uint64_t sum;
    size_t got;
    int r = nowait
                ? diskio_pread_nowait(rf->data_fd, buf, KEEL_BLOCK_SIZE, b * KEEL_BLOCK_SIZE, &got)
                : diskio_pread(rf->data_fd, buf, KEEL_BLOCK_SIZE, b * KEEL_BLOCK_SIZE, &got);

    if (r)
        return r;
    memset(buf + got, 0, KEEL_BLOCK_SIZE - got);
    r = get_sums(rf, b, 1, &sum, nowait);
    if (r)
        return r;
    if (csum_buf(buf, KEEL_BLOCK_SIZE) != sum) {
        *mismatch = true;
        return -EIO;
    }
    return 0;
}

/* csum_read_fn for csum_update: the old bytes of an edge block, verified. */
static int read_edge(uint64_t block, void *buf, void *arg)
{
    struct edge_ctx *e = arg;

    return read_verified_block(e->rf, e->base + block, buf, e->nowait, &e->mismatch);
}

/* --------------------------------------------------------------- writes */

/* After a write that stopped after done bytes: the blocks it finished get
 * their new checksums, the ones it never reached keep theirs; a block it
 * stopped inside is known to no checksum (*torn). Called with the lock. */
static void apply_partial_locked(struct replicafile *rf, uint64_t off, size_t len, size_t done,
                                 uint64_t first, uint64_t last, const uint64_t *sums, bool *torn)
{
    uint64_t cut = off + done;

    for (uint64_t b = first; b <= last; b++) {
        uint64_t start = MAX(off, b * KEEL_BLOCK_SIZE);
        uint64_t end = MIN(off + len, (b + 1) * KEEL_BLOCK_SIZE);

        if (end <= cut)
            put_sums_locked(rf, b, 1, &sums[b - first]);
        else if (start < cut)
            *torn = true;
    }
    if (done && cut > rf->length)
        rf->length = cut;
}

/*
 * A write this large has its pages sent to the disk as soon as they are in
 * the page cache. Otherwise a stream of them (a VM's sequential write, three
 * replicas on one disk) sits dirty until the kernel's background writeback
 * or the next flush, which then makes writers wait while the disk takes it
 * all at once. Buffered 1 MiB writes with end_fsync through keel-fuse went
 * from 246-366 MB/s to 368-430. Small writes are left to the page cache,
 * which gathers rewrites of the same blocks.
 */
#define WRITEBACK_AT (256u << 10)

/* Blocks [first, last] all in `allocated`. Under lock. */
static bool all_allocated(const struct replicafile *rf, uint64_t first, uint64_t last)
{
    for (uint64_t b = first; b <= last; b++)
        if (!(rf->allocated[b / 64] & (1ull << (b % 64))))
            return false;
    return true;
}

/* Sets blocks [first, end) in map. */
static void set_blocks(uint64_t *map, uint64_t first, uint64_t end)
{
    for (uint64_t b = first; b < end; b++)
        map[b / 64] |= 1ull << (b % 64);
}

/*
 * Sets in map the blocks that hold data now, from SEEK_DATA and SEEK_HOLE
 * over at most MAX_DATA_RANGES ranges. A block a range's end cuts (the
 * file's end, or a hole of a filesystem with smaller blocks) is left out.
 */
static void map_data(const struct replicafile *rf, uint64_t *map)
{
    off_t data, hole = 0;

    for (int i = 0; i < MAX_DATA_RANGES; i++) {
        data = lseek(rf->data_fd, hole, SEEK_DATA);
        if (data < 0)
            break; /* ENXIO: no data past hole */
        hole = lseek(rf->data_fd, data, SEEK_HOLE);
        if (hole <= data)
            break;
        set_blocks(map, ((uint64_t)data + KEEL_BLOCK_SIZE - 1) >> KEEL_BLOCK_SHIFT,
                   MIN((uint64_t)hole >> KEEL_BLOCK_SHIFT, rf->hdr.blocks));
    }
}

int replicafile_write(struct replicafile *rf, uint64_t off, const void *data, size_t len,
                      unsigned flags, bool *mismatch)
{
    struct edge_ctx edge = {rf, 0, flags & REPLICAFILE_NOWAIT, false};
    uint64_t first, last, stack_sums[STACK_SUMS], *sums = stack_sums, logged = 0;
    size_t n, done = 0;
    bool outside = false;
    int r;

    *mismatch = false;
    if (off >= chunk_bytes(rf) || len > chunk_bytes(rf) - off || (len == 0 && off != 0))
        return -EINVAL;
    r = writable(rf);
    if (r)
        return r;
    if (edge.nowait && !(rf->hdr.flags & SIDECAR_DIRTY))
        return -EAGAIN; /* marking it dirty takes a sync */
    if (len == 0)
        return mark_dirty(rf);
    csum_block_range(off, len, &first, &last);
    n = (size_t)(last - first + 1);
    if (n > ARRAY_SIZE(stack_sums)) {
        sums = malloc(n * sizeof(*sums));
        if (!sums)
            return -ENOMEM;
    }
    /* New checksums first: a bad edge block fails the write untouched. */
    edge.base = first;
    r = csum_update(sums, off - first * KEEL_BLOCK_SIZE, data, len, read_edge, &edge);
    if (r) {
        *mismatch = edge.mismatch;
        goto out;
    }
    r = load_pages(rf, first, last, edge.nowait);
    if (r == 0)
        r = mark_dirty(rf);
    if (r)
        goto out;
    if (rf->in_place) {
        pthread_mutex_lock(&rf->lock);
        outside = off + len > rf->length || !all_allocated(rf, first, last);
        pthread_mutex_unlock(&rf->lock);
    }
    r = diskio_pwrite_pieces(rf->data_fd, data, len, off, &done);
    if (r == 0 && !edge.nowait && len >= WRITEBACK_AT) /* never on the loop */
        diskio_start_writeback(rf->data_fd, off, len);
    if (r == 0 && rf->wal) { /* see replicafile_flush */
        struct wal_record rec = {rf->hdr.chunk_id, rf->hdr.version, off, (uint32_t)len, WAL_WRITE};

        logged = len <= WAL_MAX_RECORD ? wal_append(rf->wal, &rec, data) : 0;
    }
    pthread_mutex_lock(&rf->lock);
    if (r == 0 && rf->wal) {
        rf->logged = MAX(rf->logged, logged);
        rf->unlogged += logged == 0;
    }
    if (rf->in_place) { /* once written: see replicafile_flush */
        rf->outside += outside;
        if (r == 0)
            set_blocks(rf->written, (off + KEEL_BLOCK_SIZE - 1) >> KEEL_BLOCK_SHIFT,
                       (off + len) >> KEEL_BLOCK_SHIFT);
    }
    if (r == 0) {
        put_sums_locked(rf, first, n, sums);
        if (off + len > rf->length)
            rf->length = off + len;
    } else {
        apply_partial_locked(rf, off, len, done, first, last, sums, mismatch);
    }
    pthread_mutex_unlock(&rf->lock);
    if (r)
        poison_write(rf, r, *mismatch);
out:
    if (sums != stack_sums)
        free(sums);
    return r;
}

/* The last record of a write, and the writes the log refused so far;
 * true if an fdatasync has covered each of those. */
static bool all_logged(struct replicafile *rf, uint64_t *logged, uint64_t *unlogged)
{
    bool yes;

    pthread_mutex_lock(&rf->lock);
    *logged = rf->logged;
    *unlogged = rf->unlogged;
    yes = rf->unlogged == rf->unlogged_synced;
    pthread_mutex_unlock(&rf->lock);
    return yes;
}

/*
 * An fdatasync commits two things: the data, and the metadata needed to
 * read it back (the allocation of blocks that were holes, the size). A
 * write that neither fills a hole nor grows the file needs only the first,
 * and then writeback plus a device flush, which the caller shares among
 * many files, does what the fdatasync would.
 *
 * `allocated` holds blocks whose allocation an fdatasync has committed:
 * those wholly written by writes that had finished when it began (in
 * `written` then), and, for the first one after the file was opened, those
 * that held data just before it began. A write inside it that does not
 * grow the file is inside; any other write counts itself in `outside` once
 * it has written. The length and the map a write looks at before it
 * begins, and the count it adds to after, are read and updated under the
 * lock, so a flush that reads `outside` sees every write that finished
 * before it. A flush may skip the fdatasync only when every write counted
 * in `outside` had finished before an fdatasync that has itself finished:
 * `synced` equals `outside`. A flush beside a slower one that syncs thus
 * syncs too.
 *
 * With the datanode's log (wal.h), a flush whose writes were all logged is
 * a commit of the log and nothing more: one sequential write and one device
 * flush, shared with every other replica's flush that comes meanwhile. The
 * data file's pages are written back later, by the kernel or a checkpoint,
 * and replayed from the log after a crash. A flush that has a write the log
 * refused (too large, or no room) syncs the file as above, then commits a
 * barrier: the log's older records of this chunk must not be replayed over
 * what the file now holds. Records staged after the barrier's mark, by
 * writes that finished while the file synced, stay live. That sync is then
 * an fdatasync, never writeback and a later device flush: the barrier must
 * not reach the disk before the data it stands for.
 *
 * Flushes of one replica may run at once. None takes anything away from
 * the others: `logged` only grows, and a refused write counts in
 * `unlogged` until an fdatasync that began after it has finished, so a
 * flush beside a slower one commits the same records or syncs too.
 */
int replicafile_flush(struct replicafile *rf, bool *device_flush)
{
    size_t bytes = bitmap_words(rf) * sizeof(uint64_t);
    uint64_t gen = 0, *done = NULL, logged = 0, unlogged = 0, mark = 0;
    bool skip = false, scan = false;
    int r = writable(rf);

    *device_flush = false;
    if (r)
        return r;
    if (!(rf->hdr.flags & SIDECAR_DIRTY))
        return 0; /* nothing written since the replica settled */
    if (rf->wal) {
        /* Nothing is taken away here: a flush beside this one commits the
         * same records, or syncs too, and returns no sooner. */
        if (all_logged(rf, &logged, &unlogged) && (logged == 0 || wal_commit(rf->wal, logged) == 0))
            return 0;
        mark = wal_last(rf->wal); /* staged before the sync below: it covers them */
    }
    if (rf->in_place) {
        pthread_mutex_lock(&rf->lock);
        gen = rf->outside;
        skip = gen == rf->synced;
        pthread_mutex_unlock(&rf->lock);
        /* The barrier below must not reach the disk before the data it
         * stands for: that takes a device flush before it, not after. */
        if (skip && rf->wal && wal_has_chunk(rf->wal, rf->hdr.chunk_id))
            skip = false;
    }
    if (rf->in_place && !skip && (done = calloc(1, bytes))) {
        /* Blocks written since `gen` was read are learnt too: they were
         * written before the fdatasync below began. */
        pthread_mutex_lock(&rf->lock);
        memcpy(done, rf->written, bytes);
        memset(rf->written, 0, bytes);
        scan = !rf->scanned;
        rf->scanned = true;
        pthread_mutex_unlock(&rf->lock);
        if (scan)
            map_data(rf, done); /* once: what was written before the open */
    }
    if (skip) {
        r = diskio_writeback_wait(rf->data_fd);
        *device_flush = r == 0;
    } else {
        r = diskio_datasync(rf->data_fd);
    }
    if (r == 0 && !skip && rf->in_place) {
        pthread_mutex_lock(&rf->lock);
        if (done)
            for (size_t w = 0; w < bitmap_words(rf); w++)
                rf->allocated[w] |= done[w];
        rf->synced = MAX(rf->synced, gen);
        pthread_mutex_unlock(&rf->lock);
    }
    free(done);
    if (r == 0 && rf->wal)
        r = wal_barrier(rf->wal, rf->hdr.chunk_id, mark);
    /* Written back is not yet synced: until its device flush, a flush
     * beside this one must wait for one too. */
    if (r == 0 && rf->wal && !skip) {
        pthread_mutex_lock(&rf->lock);
        rf->unlogged_synced = MAX(rf->unlogged_synced, unlogged);
        pthread_mutex_unlock(&rf->lock);
    }
    return r ? poison(rf, r) : 0;
}

bool replicafile_flush_is_commit(struct replicafile *rf, uint64_t *upto)
{
    uint64_t unlogged;

    *upto = 0;
    if (!rf->wal || writable(rf))
        return false;
    if (!(rf->hdr.flags & SIDECAR_DIRTY))
        return true; /* nothing written since the replica settled */
    return all_logged(rf, upto, &unlogged);
}

void replicafile_use_wal(struct replicafile *rf, struct wal *wal)
{
    rf->wal = wal;
}

int replicafile_settle(struct replicafile *rf)
{
    struct sidecar_header h = rf->hdr;
    int r = writable(rf);

    if (r)
        return r;
    if (!(rf->hdr.flags & SIDECAR_DIRTY))
        return 0;
    h.length = replicafile_length(rf);
    h.flags &= ~SIDECAR_DIRTY;
    return settle_to(rf, &h, false);
}

int replicafile_set_version(struct replicafile *rf, uint64_t version)
{
    struct sidecar_header h = rf->hdr;
    int r = writable(rf);

    if (r)
        return r;
    h.version = version;
    return store_header(rf, &h, true);
}

int replicafile_trim(struct replicafile *rf, uint64_t length, uint64_t version, bool *mismatch)
{
    struct sidecar_header h;
    uint8_t block[KEEL_BLOCK_SIZE];
    uint64_t size = 0, keep, end, cut, sum;
    int r;

    *mismatch = false;
    if (length > chunk_bytes(rf))
        return -EINVAL;
    r = writable(rf);
    if (r)
        return r;
    r = data_size(rf, &size);
    if (r)
        return r;
    keep = length < size ? length : size;
    cut = keep >> KEEL_BLOCK_SHIFT; /* first block whose checksum changes */
    end = (size + KEEL_BLOCK_SIZE - 1) >> KEEL_BLOCK_SHIFT;
    if (keep & (KEEL_BLOCK_SIZE - 1)) {
        r = read_verified_block(rf, cut, block, false, mismatch);
        if (r)
            return r;
    }
    if (cut < end)
        r = load_pages(rf, cut, end - 1, false);
    if (r == 0)
        r = mark_dirty(rf);
    if (r)
        return r;
    if (keep < size && ftruncate(rf->data_fd, (off_t)keep) < 0)
        return poison(rf, -errno);
    pthread_mutex_lock(&rf->lock);
    if (keep & (KEEL_BLOCK_SIZE - 1)) {
        memset(block + (keep & (KEEL_BLOCK_SIZE - 1)), 0,
               KEEL_BLOCK_SIZE - (keep & (KEEL_BLOCK_SIZE - 1)));
        sum = csum_buf(block, sizeof(block));
        put_sums_locked(rf, cut, 1, &sum);
        cut++;
    }
    for (uint64_t b = cut; b < end; b++)
        put_sums_locked(rf, b, 1, &rf->zero_sum);
    rf->length = keep;
    if (rf->in_place) /* the blocks from the cut on are holes again */
        for (uint64_t b = keep >> KEEL_BLOCK_SHIFT; b < rf->hdr.blocks; b++) {
            rf->allocated[b / 64] &= ~(1ull << (b % 64));
            rf->written[b / 64] &= ~(1ull << (b % 64));
        }
    pthread_mutex_unlock(&rf->lock);
    h = rf->hdr;
    h.version = version;
    h.length = keep;
    h.flags &= ~SIDECAR_DIRTY;
    return settle_to(rf, &h, true);
}

int replicafile_mark_corrupt(struct replicafile *rf)
{
    struct sidecar_header h = rf->hdr;
    int r;

    h.flags |= SIDECAR_CORRUPT;
    r = sidecar_write_header(rf->meta_fd, &h);
    if (r == 0)
        r = diskio_datasync(rf->meta_fd);
    /* Served as corrupt from now on even if the flag did not reach the disk. */
    rf->hdr.flags |= SIDECAR_CORRUPT;
    return r;
}

int replicafile_recover(struct replicafile *rf, uint64_t *changed)
{
    size_t piece = RECOVER_BLOCKS * KEEL_BLOCK_SIZE;
    uint64_t *sums = NULL, *old = NULL, size = 0, diff = 0;
    struct sidecar_header h;
    uint8_t *buf = NULL;
    int r;

    r = data_size(rf, &size);
    if (r)
        return r;
    buf = malloc(piece);
    sums = malloc((size_t)rf->hdr.blocks * sizeof(*sums));
    old = malloc((size_t)rf->hdr.blocks * sizeof(*old));
    if (!buf || !sums || !old) {
        r = -ENOMEM;
        goto out;
    }
    r = get_sums(rf, 0, rf->hdr.blocks, old, false);
    if (r)
        goto out;
    for (uint64_t b = 0; b < rf->hdr.blocks; b += RECOVER_BLOCKS) {
        size_t n =
            rf->hdr.blocks - b < RECOVER_BLOCKS ? (size_t)(rf->hdr.blocks - b) : RECOVER_BLOCKS;
        size_t got = 0;

        if (b * KEEL_BLOCK_SIZE >= size) {
            for (size_t i = 0; i < n; i++)
                sums[b + i] = rf->zero_sum;
            continue;
        }
        r = diskio_pread(rf->data_fd, buf, n * KEEL_BLOCK_SIZE, b * KEEL_BLOCK_SIZE, &got);
        if (r)
            goto out;
        memset(buf + got, 0, n * KEEL_BLOCK_SIZE - got);
        csum_blocks(buf, n, sums + b);
    }
    for (uint64_t b = 0; b < rf->hdr.blocks; b++)
        diff += sums[b] != old[b];
    /* The checksums must describe data that is on disk, not only cached. */
    r = diskio_datasync(rf->data_fd);
    if (r == 0)
        r = sidecar_write_sums(rf->meta_fd, 0, rf->hdr.blocks, sums);
    if (r == 0)
        r = diskio_datasync(rf->meta_fd);
    if (r) {
        poison(rf, r);
        goto out;
    }
    drop_pages(rf);
    pthread_mutex_lock(&rf->lock);
    rf->length = size;
    pthread_mutex_unlock(&rf->lock);
    h = rf->hdr;
    h.length = size;
    h.flags &= ~SIDECAR_DIRTY;
    r = store_header(rf, &h, true);
    if (r == 0 && changed)
        *changed = diff;
out:
    free(buf);
    free(sums);
    free(old);
    return r;
}
