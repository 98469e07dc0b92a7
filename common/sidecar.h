/*
 * sidecar: the on-disk format of a replica's checksum file (<id>.meta).
 *
 *   offset 0     header, SIDECAR_HEADER_LEN bytes used of the first 4 KiB:
 *                  0  u32 magic "KMTA"     4  u32 layout (SIDECAR_LAYOUT)
 *                  8  u64 chunk id        16  u64 chunk version
 *                 24  u64 length          32  u32 flags (SIDECAR_*)
 *                 36  u32 blocks          40  16 bytes reserved, zero
 *                 56  u64 XXH3-64 of bytes [0, 56)
 *   offset 4096  one u64 per 4 KiB block of the chunk: XXH3-64 of the block
 *                (unwritten bytes count as zeros), `blocks` of them
 *
 * All integers little-endian. The header is small enough to live in one
 * disk sector, so it is rewritten in place atomically; its own checksum
 * catches a flipped bit. `length` is exact whenever SIDECAR_DIRTY is clear;
 * while it is set the data file's size is the truth and the block checksums
 * may lag behind the data (see replicafile.h for the protocol). Checksums
 * are grouped in pages of SIDECAR_SUMS_PER_PAGE, one 4 KiB page of the
 * file each, which a datanode keeps in memory while it writes.
 *
 * Pure I/O helpers on a file descriptor, no policy; safe on any thread.
 */
#ifndef KEEL_SIDECAR_H
#define KEEL_SIDECAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIDECAR_LAYOUT        1u
#define SIDECAR_HEADER_LEN    64u
#define SIDECAR_SUMS_OFF      4096u
#define SIDECAR_SUMS_PER_PAGE 512u

/* Writes since the last settle may have reached the data but not the sums. */
#define SIDECAR_DIRTY 0x1u
/* A checksum failed: the replica must not be served again. */
#define SIDECAR_CORRUPT 0x2u
#define SIDECAR_FLAGS   (SIDECAR_DIRTY | SIDECAR_CORRUPT)

struct sidecar_header {
    uint64_t chunk_id;
    uint64_t version;
    uint64_t length;
    uint32_t flags;
    uint32_t blocks;
};

/*
 * Where a replica's files are below its datanode's directory:
 * "chunks/xx/<id>.<ext>" (ext "data" or "meta"), <id> the chunk id as 16
 * lowercase hex digits and xx its low byte (datanode/chunkstore.h has the
 * whole tree). -EINVAL for id 0, -ENAMETOOLONG if it does not fit in len.
 */
int replica_path(uint64_t chunk_id, const char *ext, char *buf, size_t len);

/* Size of the sidecar of a chunk of `blocks` blocks. */
uint64_t sidecar_size(uint32_t blocks);

/* Encodes h into buf (SIDECAR_HEADER_LEN bytes), with its checksum. */
void sidecar_encode(const struct sidecar_header *h, uint8_t *buf);
/*
 * Decodes and checks a header: magic, layout, checksum, known flags, blocks
 * > 0. Returns 0 or -EBADMSG (a header that cannot be trusted).
 */
int sidecar_decode(const uint8_t *buf, struct sidecar_header *h);

/* Reads and decodes the header. Returns 0, -EBADMSG, or a read error;
 * nowait: -EAGAIN rather than wait for the disk (diskio_pread_nowait). */
int sidecar_read_header(int fd, struct sidecar_header *h, bool nowait);
/* Rewrites the header in place (not synced). Returns 0 or a write error. */
int sidecar_write_header(int fd, const struct sidecar_header *h);

/*
 * Reads the checksums of blocks [first, first + n) into sums (host order).
 * A sidecar too short to hold them is -EBADMSG. nowait: -EAGAIN rather than
 * wait for the disk (diskio_pread_nowait).
 */
int sidecar_read_sums(int fd, uint64_t first, size_t n, uint64_t *sums, bool nowait);
/* Writes the checksums of blocks [first, first + n); sums is not modified. */
int sidecar_write_sums(int fd, uint64_t first, size_t n, const uint64_t *sums);

/*
 * Fills an empty file with a whole sidecar: header h, then sums (h->blocks
 * of them), or the zero-block checksum for every block when sums is NULL.
 * Not synced. Returns 0, -ENOMEM, or a write error (-ENOSPC...).
 */
int sidecar_write_new(int fd, const struct sidecar_header *h, const uint64_t *sums);

#endif
