/*
 * checksum: XXH3-64 over 4 KiB blocks of a chunk replica.
 *
 * A chunk is an array of KEEL_BLOCK_SIZE blocks, each with one 64-bit
 * checksum: XXH3-64 of the block's 4096 bytes, where bytes never written (a
 * hole, or past the replica's end) count as zeros. So a fresh replica's
 * checksums are all csum_zero_block(), and a partial tail block hashes as if
 * zero-padded.
 *
 * Pure functions, no I/O: the datanode supplies the bytes of the edge blocks
 * an unaligned write only partly covers through a read callback.
 */
#ifndef KEEL_CHECKSUM_H
#define KEEL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#define KEEL_BLOCK_SIZE  4096u
#define KEEL_BLOCK_SHIFT 12

/* XXH3-64 of an arbitrary buffer (payload checksums on the wire). */
uint64_t csum_buf(const void *data, size_t len);

/* The checksum of a block of zeros. */
uint64_t csum_zero_block(void);

/* Block range [first, last] touched by the byte range [off, off + len), len > 0. */
void csum_block_range(uint64_t off, uint64_t len, uint64_t *first, uint64_t *last);

/*
 * Checksums of n whole blocks laid out back to back in data; data holds
 * n * KEEL_BLOCK_SIZE bytes. out[i] is the checksum of block i.
 */
void csum_blocks(const void *data, size_t n, uint64_t *out);

/*
 * Reads the current KEEL_BLOCK_SIZE bytes of block `block` into buf (zeros
 * where nothing was written). Returns 0 or a negative errno.
 */
typedef int (*csum_read_fn)(uint64_t block, void *buf, void *arg);

/*
 * A write of len > 0 bytes at byte offset off is about to replace the data:
 * computes the new checksum of every block it touches and stores it in
 * sums[block] (sums indexes the whole chunk). Blocks the write covers fully
 * are hashed from data; at most two edge blocks are read through read() and
 * merged with the new bytes. Nothing is stored if read() fails; its error is
 * returned.
 */
int csum_update(uint64_t *sums, uint64_t off, const void *data, size_t len, csum_read_fn read,
                void *arg);

/*
 * Verifies n whole blocks in data against sums[0..n). Returns 0, or -EIO and
 * sets *bad (if not NULL) to the index of the first block that differs.
 */
int csum_verify(const uint64_t *sums, const void *data, size_t n, size_t *bad);

#endif
