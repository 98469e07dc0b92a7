/*
 * replicafile: one open chunk replica, its data file and its sidecar, and
 * the rules that keep them consistent across crashes.
 *
 * The data file holds the chunk's bytes (sparse; unwritten ranges read as
 * zeros). The sidecar (sidecar.h) holds the version, the flags and one
 * XXH3-64 per 4 KiB block. The block checksums of a replica being written
 * live in memory (pages of 512, one 4 KiB page of the sidecar each) and
 * reach the sidecar only when the replica settles, so a small write costs
 * one write of its data and nothing else. What keeps this crash-safe is the
 * SIDECAR_DIRTY flag:
 *
 *   SETTLED --first write--> UNSETTLED --settle--> SETTLED
 *               (flag set and synced)     (data synced, checksums written and
 *                                          synced, then the flag cleared)
 *
 *   - before the first write after a settle, SIDECAR_DIRTY is set in the
 *     header and the sidecar synced: while checksums on disk may lag behind
 *     the data, the replica is marked so on stable storage;
 *   - a flush only has to make the data durable (fdatasync of the data
 *     file): the flag is on disk, so after a crash the checksums are
 *     recomputed from exactly that data;
 *   - settle (run when the replica goes idle, before its files close, and at
 *     shutdown) syncs the data, writes the checksums, syncs the sidecar and
 *     only then clears the flag (that header write needs no sync: a flag
 *     left set is merely conservative);
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
 * on disk, so the error sticks: every later write, flush, settle, version
 * change or trim fails with it (a failed fdatasync is never retried into a
 * success). Reads stay possible; the checksums still vouch for every byte.
 *
 * Non-blocking use: with REPLICAFILE_NOWAIT, reads (of data, and of
 * checksums not in memory) that would wait for the disk fail with -EAGAIN
 * and change nothing, so a caller can try an operation on its event loop
 * and hand it to a thread only on a page-cache miss. A buffered write of
 * data itself cannot be made non-blocking on ext4; a caller that runs
 * writes on its loop keeps them small.
 *
 * Threads: operations of one replicafile may run on several threads at
 * once when they touch disjoint blocks or only read (reads, checksum reads,
 * writes to an UNSETTLED replica, flush, check). Those that change
 * the header (a write to a SETTLED replica, settle, set_version, trim,
 * mark_corrupt, recover) run alone. The caller orders them (replicas.c).
 */
#ifndef KEEL_DATANODE_REPLICAFILE_H
#define KEEL_DATANODE_REPLICAFILE_H

#include "sidecar.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wal;

/* Flag: fail with -EAGAIN instead of waiting for a disk read. */
#define REPLICAFILE_NOWAIT 0x1u
/* Flag of replicafile_open: the filesystem overwrites allocated blocks in
 * place (diskio_overwrites_in_place); see replicafile_flush. */
#define REPLICAFILE_IN_PLACE 0x2u

struct replicafile;

/*
 * Wraps an open data file and sidecar of chunk chunk_id with `blocks`
 * blocks, reading and checking the header (-EBADMSG: header, chunk id or
 * block count wrong, or the data larger than the chunk). Takes ownership of
 * both descriptors, also on failure. flags: 0 or REPLICAFILE_IN_PLACE.
 */
int replicafile_open(int data_fd, int meta_fd, uint64_t chunk_id, uint32_t blocks, unsigned flags,
                     struct replicafile **out);
/*
 * Closes the descriptors and frees rf. Unflushed writes stay in the page
 * cache. An UNSETTLED replica loses its in-memory checksums: close it only
 * after replicafile_settle, or when the process ends (the flag on disk then
 * has them recomputed at the next start).
 */
void replicafile_close(struct replicafile *rf);

/*
 * The header as last written to disk: chunk id, blocks, version and flags
 * (they change only in operations that run alone); its length is the one
 * of the last settle. Borrowed while rf is open.
 */
const struct sidecar_header *replicafile_header(const struct replicafile *rf);
/* The replica's length now (the data file's size). */
uint64_t replicafile_length(struct replicafile *rf);
/* True while SIDECAR_DIRTY is set on disk. */
bool replicafile_unsettled(const struct replicafile *rf);
/* The sticky error (0 if none). */
int replicafile_error(struct replicafile *rf);
/* Clears the sticky error if it came only from writes the disk had no room
 * for (for when it has room again); true if rf has no error left. */
bool replicafile_clear_full(struct replicafile *rf);

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
 * -EINVAL for a range outside the chunk; -EAGAIN (REPLICAFILE_NOWAIT) when
 * the disk would have to be read; or a read error.
 */
int replicafile_read_blocks(struct replicafile *rf, uint64_t first, size_t n, void *buf,
                            struct replicafile_readout *out, unsigned flags);

/*
 * Checks that the files are still the replica's: both still linked in the
 * directory (-ENOENT if one was removed behind the datanode's back) and the
 * data as long as the sidecar says (settled) or as the writes made it
 * (-EBADMSG).
 */
int replicafile_check(struct replicafile *rf);

/* Copies the checksums of blocks [first, first + n) into sums. */
int replicafile_sums(struct replicafile *rf, uint64_t first, size_t n, uint64_t *sums);

/*
 * Writes len bytes at off and updates the checksums of the blocks they
 * touch (the edge blocks of an unaligned write are read, verified and
 * merged). Returns 0; -EINVAL for a range outside the chunk; -EIO with
 * *mismatch set when an edge block fails its checksum (nothing written);
 * -EAGAIN (REPLICAFILE_NOWAIT) when a disk read, or the sync that marks a
 * settled replica dirty, would be needed (nothing written); the sticky
 * error; or the write error (-ENOSPC, -EIO), which then sticks. A full disk
 * fails a write at the first page it cannot reserve: the blocks written
 * before that page keep their new bytes and checksums, the others their
 * old ones, and should the page boundary cut a block (an unaligned write),
 * *mismatch is set as for damage, since that block's bytes are now known
 * to no checksum. A write of no bytes (off 0) writes nothing and only marks
 * the replica dirty on disk, as a first write would, ahead of the writes
 * to come.
 */
int replicafile_write(struct replicafile *rf, uint64_t off, const void *data, size_t len,
                      unsigned flags, bool *mismatch);

/*
 * Makes every write that finished before the call durable. 0 or an error.
 * Normally an fdatasync of the data. On a file opened REPLICAFILE_IN_PLACE
 * whose writes since the last fdatasync all fell in blocks already
 * allocated then (the steady state of a VM disk), it writes the dirty pages
 * back and waits for them instead, and sets *device_flush: the writes are
 * durable once a device cache flush that begins after this returns
 * (chunkstore_flush_device) has succeeded. One flush serves many files.
 */
int replicafile_flush(struct replicafile *rf, bool *device_flush);

/*
 * Whether a flush would be a commit of the log alone, every write since the
 * last flush having been logged: the flush is then done once the log holds
 * every record up to *upto (chunkstore_commit_log; 0: none needed). Any
 * thread, without waiting.
 */
bool replicafile_flush_is_commit(struct replicafile *rf, uint64_t *upto);

/*
 * Logs this replica's small writes in wal (not NULL), which then serves its
 * flushes (see replicafile_flush in replicafile.c). Before any write.
 */
void replicafile_use_wal(struct replicafile *rf, struct wal *wal);

/*
 * Brings the sidecar up to date and clears SIDECAR_DIRTY (see above), and
 * drops the in-memory checksums. No-op for a settled replica.
 */
int replicafile_settle(struct replicafile *rf);

/* Durably sets the version. */
int replicafile_set_version(struct replicafile *rf, uint64_t version);

/*
 * Durably cuts the data to length bytes (no-op past the end) and sets the
 * version, in one step: every write before it is durable too, and the
 * replica is settled. The block holding the cut is verified before its
 * checksum is recomputed (-EIO with *mismatch set if it fails).
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
