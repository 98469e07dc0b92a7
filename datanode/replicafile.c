/*
 * replicafile: see replicafile.h for the crash-safety protocol.
 */
#include "replicafile.h"

#include "checksum.h"
#include "diskio.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECOVER_BLOCKS 256u /* blocks hashed per read while recovering (1 MiB) */

struct replicafile {
    int data_fd;
    int meta_fd;
    struct sidecar_header hdr;
    int error;
    uint64_t zero_sum;
};

/* An edge block of a write, read and verified for csum_update. */
struct edge_ctx {
    struct replicafile *rf;
    uint64_t base; /* block number of the write's first block */
    bool mismatch;
};

static uint64_t chunk_bytes(const struct replicafile *rf)
{
    return (uint64_t)rf->hdr.blocks * KEEL_BLOCK_SIZE;
}

/* A failure that leaves the files in an unknown state: it sticks. */
static int poison(struct replicafile *rf, int err)
{
    if (!rf->error)
        rf->error = err;
    return err;
}

static int data_size(const struct replicafile *rf, uint64_t *size)
{
    struct stat st;

    if (fstat(rf->data_fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int replicafile_open(int data_fd, int meta_fd, uint64_t chunk_id, uint32_t blocks,
                     struct replicafile **out)
{
    struct replicafile *rf = calloc(1, sizeof(*rf));
    uint64_t size = 0;
    struct stat st;
    int r;

    if (!rf) {
        close(data_fd);
        close(meta_fd);
        return -ENOMEM;
    }
    rf->data_fd = data_fd;
    rf->meta_fd = meta_fd;
    rf->zero_sum = csum_zero_block();
    r = sidecar_read_header(meta_fd, &rf->hdr);
    if (r)
        goto fail;
    if (rf->hdr.chunk_id != chunk_id || rf->hdr.blocks != blocks) {
        r = -EBADMSG;
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
    if (rf->hdr.flags & SIDECAR_DIRTY)
        rf->hdr.length = size; /* the header's length lags while dirty */
    else if (size != rf->hdr.length) {
        r = -EBADMSG; /* the data file changed behind a clean sidecar */
        goto fail;
    }
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
    free(rf);
}

const struct sidecar_header *replicafile_header(const struct replicafile *rf)
{
    return &rf->hdr;
}

int replicafile_error(const struct replicafile *rf)
{
    return rf->error;
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

/* Durably marks the replica dirty before its first change after a flush. */
static int mark_dirty(struct replicafile *rf)
{
    struct sidecar_header h = rf->hdr;

    if (rf->hdr.flags & SIDECAR_DIRTY)
        return 0;
    h.flags |= SIDECAR_DIRTY;
    return store_header(rf, &h, true);
}

static int writable(const struct replicafile *rf)
{
    if (rf->error)
        return rf->error;
    if (rf->hdr.flags & SIDECAR_CORRUPT)
        return -EIO;
    return 0;
}

int replicafile_read_blocks(struct replicafile *rf, uint64_t first, size_t n, void *buf,
                            struct replicafile_readout *out)
{
    uint8_t *p = buf;
    uint64_t stack_sums[64];
    uint64_t *sums = out->sums ? out->sums : stack_sums;
    size_t got = 0;
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
    r = diskio_pread(rf->data_fd, p, n * KEEL_BLOCK_SIZE, first * KEEL_BLOCK_SIZE, &got);
    if (r)
        goto out;
    r = sidecar_read_sums(rf->meta_fd, first, n, sums);
    if (r)
        goto out;
    memset(p + got, 0, n * KEEL_BLOCK_SIZE - got);
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
    return 0;
}

int replicafile_sums(struct replicafile *rf, uint64_t first, size_t n, uint64_t *sums)
{
    if (first >= rf->hdr.blocks || n > rf->hdr.blocks - first)
        return -EINVAL;
    return sidecar_read_sums(rf->meta_fd, first, n, sums);
}

/* Reads block b (zeros past the end of the data) and checks its stored sum. */
static int read_verified_block(struct replicafile *rf, uint64_t b, uint8_t *buf, bool *mismatch)
{
    uint64_t sum;
    size_t got;
    int r = diskio_pread(rf->data_fd, buf, KEEL_BLOCK_SIZE, b * KEEL_BLOCK_SIZE, &got);

    if (r)
        return r;
    memset(buf + got, 0, KEEL_BLOCK_SIZE - got);
    r = sidecar_read_sums(rf->meta_fd, b, 1, &sum);
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

    return read_verified_block(e->rf, e->base + block, buf, &e->mismatch);
}

int replicafile_write(struct replicafile *rf, uint64_t off, const void *data, size_t len,
                      bool *mismatch)
{
    struct edge_ctx edge = {rf, 0, false};
    uint64_t first, last, *sums = NULL;
    size_t n;
    int r;

    *mismatch = false;
    if (len == 0 || off >= chunk_bytes(rf) || len > chunk_bytes(rf) - off)
        return -EINVAL;
    r = writable(rf);
    if (r)
        return r;
    csum_block_range(off, len, &first, &last);
    n = (size_t)(last - first + 1);
    sums = malloc(n * sizeof(*sums));
    if (!sums)
        return -ENOMEM;
    /* New checksums first: a bad edge block fails the write untouched. */
    edge.base = first;
    r = csum_update(sums, off - first * KEEL_BLOCK_SIZE, data, len, read_edge, &edge);
    if (r) {
        *mismatch = edge.mismatch;
        goto out;
    }
    r = mark_dirty(rf);
    if (r)
        goto out;
    if (fallocate(rf->data_fd, 0, (off_t)off, (off_t)len) < 0 && errno != EOPNOTSUPP) {
        /* Nothing changed yet, but this replica now lacks a write: it must
         * not take later ones as if it had it. */
        r = poison(rf, -errno);
        goto out;
    }
    r = diskio_pwrite(rf->data_fd, data, len, off);
    if (r == 0)
        r = sidecar_write_sums(rf->meta_fd, first, n, sums);
    if (r) {
        poison(rf, r);
        goto out;
    }
    if (off + len > rf->hdr.length)
        rf->hdr.length = off + len;
out:
    free(sums);
    return r;
}

/* Copies [off, off + len) of src to the same offsets of dst through a buffer,
 * for filesystems where copy_file_range cannot. */
static int copy_through_buffer(int src, int dst, uint64_t off, uint64_t len)
{
    size_t piece = RECOVER_BLOCKS * KEEL_BLOCK_SIZE;
    uint8_t *buf = malloc(piece);
    int r = 0;

    if (!buf)
        return -ENOMEM;
    while (len && r == 0) {
        size_t n = len < piece ? (size_t)len : piece, got = 0;

        r = diskio_pread(src, buf, n, off, &got);
        if (r == 0 && got < n)
            r = -EIO; /* the file shrank under an exclusive operation */
        if (r == 0)
            r = diskio_pwrite(dst, buf, n, off);
        off += n;
        len -= n;
    }
    free(buf);
    return r;
}

static int copy_range(int src, int dst, uint64_t off, uint64_t len)
{
    loff_t in = (loff_t)off, out = (loff_t)off;

    while (len) {
        ssize_t n = copy_file_range(src, &in, dst, &out, len, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL))
            return copy_through_buffer(src, dst, (uint64_t)in, len);
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        len -= (uint64_t)n;
    }
    return 0;
}

int replicafile_clone_data(struct replicafile *rf, int dst_fd)
{
    uint64_t size = 0, off = 0;
    int r = data_size(rf, &size);

    while (r == 0 && off < size) {
        off_t data = lseek(rf->data_fd, (off_t)off, SEEK_DATA), hole;

        if (data < 0 && errno == ENXIO)
            break; /* only a hole remains */
        if (data < 0 && errno == EINVAL) {
            /* No hole reporting here: copy the rest whole. */
            r = copy_range(rf->data_fd, dst_fd, off, size - off);
            break;
        }
        if (data < 0) {
            r = -errno;
            break;
        }
        hole = lseek(rf->data_fd, data, SEEK_HOLE);
        if (hole < 0) {
            r = -errno;
            break;
        }
        if ((uint64_t)hole > size)
            hole = (off_t)size;
        r = copy_range(rf->data_fd, dst_fd, (uint64_t)data, (uint64_t)(hole - data));
        off = (uint64_t)hole;
    }
    if (r == 0 && ftruncate(dst_fd, (off_t)size) < 0)
        r = -errno;
    return r;
}

int replicafile_flush(struct replicafile *rf)
{
    struct sidecar_header h = rf->hdr;
    int r = writable(rf);

    if (r)
        return r;
    if (!(rf->hdr.flags & SIDECAR_DIRTY))
        return 0;
    r = diskio_datasync(rf->data_fd);
    if (r == 0)
        r = diskio_datasync(rf->meta_fd);
    if (r)
        return poison(rf, r);
    h.flags &= ~SIDECAR_DIRTY;
    return store_header(rf, &h, false);
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
    uint64_t size = 0, keep, end, cut, zero[64];
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
        r = read_verified_block(rf, cut, block, mismatch);
        if (r)
            return r;
    }
    r = mark_dirty(rf);
    if (r)
        return r;
    if (keep < size && ftruncate(rf->data_fd, (off_t)keep) < 0)
        return poison(rf, -errno);
    if (keep & (KEEL_BLOCK_SIZE - 1)) {
        uint64_t sum;

        memset(block + (keep & (KEEL_BLOCK_SIZE - 1)), 0,
               KEEL_BLOCK_SIZE - (keep & (KEEL_BLOCK_SIZE - 1)));
        sum = csum_buf(block, sizeof(block));
        r = sidecar_write_sums(rf->meta_fd, cut, 1, &sum);
        if (r)
            return poison(rf, r);
        cut++;
    }
    for (size_t i = 0; i < ARRAY_SIZE(zero); i++)
        zero[i] = rf->zero_sum;
    for (uint64_t b = cut; b < end; b += ARRAY_SIZE(zero)) {
        size_t k = end - b < ARRAY_SIZE(zero) ? (size_t)(end - b) : ARRAY_SIZE(zero);

        r = sidecar_write_sums(rf->meta_fd, b, k, zero);
        if (r)
            return poison(rf, r);
    }
    r = diskio_datasync(rf->data_fd);
    if (r == 0)
        r = diskio_datasync(rf->meta_fd);
    if (r)
        return poison(rf, r);
    h = rf->hdr;
    h.version = version;
    h.length = keep;
    h.flags &= ~SIDECAR_DIRTY;
    return store_header(rf, &h, true);
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
    r = sidecar_read_sums(rf->meta_fd, 0, rf->hdr.blocks, old);
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
