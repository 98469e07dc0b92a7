/*
 * replicafile: one open chunk replica, its data file and its sidecar, and
 * the rules that keep them consistent across crashes.
 *
 * The data file holds the chunk's bytes (sparse; unwritten ranges read as
 * zeros). The sidecar (sidecar.h) holds the version, the flags and one
 * XXH3-64 per 4 KiB block. A write changes both files, and without a sync
 * in between either may reach the disk first. So:
 *
 *   CLEAN --write--> DIRTY --flush--> CLEAN
 *
 *   - before the first write after a flush, SIDECAR_DIRTY is set in the
 *     header and the sidecar synced: a chunk whose checksums may lag behind
 *     its data is marked so on stable storage first;
 *   - flush syncs the data, then the sidecar, and only then clears the flag
 *     (that header write needs no sync: a flag left set is merely
 *     conservative);
 *   - after an unclean stop, replicafile_recover() recomputes the checksums
 *     of a DIRTY replica from its data. Flushed blocks are unchanged by
 *     this; blocks written after the last flush read back their old or new
 *     bytes, never a checksum error.
 *
 * Every byte returned is verified against its block checksum first, and a
 * partial-block write verifies the block's old bytes before merging, so a
 * corrupt block is never laundered into a fresh checksum.
 *
 * Errors: a write or sync that fails leaves the replica in an unknown state
 * on disk, so the error sticks: every later write, flush, version change or
 * trim fails with it (a failed fdatasync is never retried into a success).
 * Reads stay possible; the checksums still vouch for every byte.
 *
 * Threads: blocking I/O, run on worker threads. A replicafile is used by one
 * thread at a time, except that replicafile_read_blocks and
 * replicafile_sums may run concurrently with each other (they only read).
 */
#ifndef KEEL_DATANODE_REPLICAFILE_H
#define KEEL_DATANODE_REPLICAFILE_H

#include "sidecar.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct replicafile;

/*
 * Wraps an open data file and sidecar of chunk chunk_id with `blocks`
 * blocks, reading and checking the header (-EBADMSG: header, chunk id or
 * block count wrong, or the data larger than the chunk). Takes ownership of
 * both descriptors, also on failure.
 */
int replicafile_open(int data_fd, int meta_fd, uint64_t chunk_id, uint32_t blocks,
                     struct replicafile **out);
/* Closes the descriptors and frees rf. Unflushed writes stay in the page cache. */
void replicafile_close(struct replicafile *rf);

/* The header as last read or written. Borrowed while rf is open. */
const struct sidecar_header *replicafile_header(const struct replicafile *rf);
/* The sticky error (0 if none). */
int replicafile_error(const struct replicafile *rf);

/* What a verified read found, besides the bytes. */
struct replicafile_readout {
    uint64_t *sums;    /* in: room for n checksums, or NULL; out: the verified ones */
    bool mismatch;     /* a block failed its checksum: mark the replica corrupt */
    uint64_t bad;      /* then: the first bad block's number */
    size_t data_bytes; /* bytes read from the data file (holes past its end are free) */
};

/*
 * Reads blocks [first, first + n) into buf (n * KEEL_BLOCK_SIZE bytes) and
 * verifies each against its checksum. Returns 0; -EIO if the replica is
 * marked corrupt, or if a block does not match (out->mismatch, out->bad);
 * -EINVAL for a range outside the chunk; or a read error.
 */
int replicafile_read_blocks(struct replicafile *rf, uint64_t first, size_t n, void *buf,
                            struct replicafile_readout *out);

/*
 * Checks that the files are still the replica's: both still linked in the
 * directory (-ENOENT if one was removed behind the datanode's back) and, for
 * a clean replica, the data as long as the sidecar says (-EBADMSG). May run
 * alongside reads.
 */
int replicafile_check(struct replicafile *rf);

/* Copies the checksums of blocks [first, first + n) into sums. */
int replicafile_sums(struct replicafile *rf, uint64_t first, size_t n, uint64_t *sums);

/*
 * Writes len > 0 bytes at off and updates the checksums of the blocks they
 * touch (the edge blocks of an unaligned write are read, verified and
 * merged). Returns 0; -EINVAL for a range outside the chunk; -EIO with
 * *mismatch set when an edge block fails its checksum (nothing written);
 * the sticky error; or the write error (-ENOSPC, -EIO), which then sticks.
 * Space for the range is allocated first, so a full disk usually fails the
 * write before any byte changes.
 */
int replicafile_write(struct replicafile *rf, uint64_t off, const void *data, size_t len,
                      bool *mismatch);

/*
 * Copies the data file into dst_fd (an empty file opened for writing) and
 * gives it the same size. Only the extents holding data are copied
 * (copy_file_range, so a filesystem that can share extents does), holes stay
 * holes. Returns 0 or an error of the copy (-ENOSPC...). May run alongside
 * reads.
 */
int replicafile_clone_data(struct replicafile *rf, int dst_fd);

/* Makes every write so far durable (data, then checksums). 0 or an error. */
int replicafile_flush(struct replicafile *rf);

/* Durably sets the version. */
int replicafile_set_version(struct replicafile *rf, uint64_t version);

/*
 * Durably cuts the data to length bytes (no-op past the end) and sets the
 * version, in one step: every write before it is durable too. The block
 * holding the cut is verified before its checksum is recomputed (-EIO with
 * *mismatch set if it fails).
 */
int replicafile_trim(struct replicafile *rf, uint64_t length, uint64_t version, bool *mismatch);

/* Durably marks the replica corrupt; reads fail from then on. */
int replicafile_mark_corrupt(struct replicafile *rf);

/*
 * For a replica found DIRTY after an unclean stop: recomputes every block
 * checksum from the data, syncs data and sidecar, and clears the flag.
 * *changed (may be NULL) receives the number of checksums that differed.
 */
int replicafile_recover(struct replicafile *rf, uint64_t *changed);

#endif
