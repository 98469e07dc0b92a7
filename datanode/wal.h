/*
 * wal: the datanode's log of small writes, so that a flush of many
 * replicas costs one sequential write and one device cache flush instead
 * of the writeback of every page it covers, scattered over many files.
 *
 * A small write still goes to its replica's data file as before (the page
 * cache); its bytes are also copied to a staging buffer here. A flush then
 * commits the staged records: one write of them at the log's head, then a
 * device flush. The data files' dirty pages are written back later, by the
 * kernel or by a checkpoint, and a power cut before that is undone by
 * replaying the log at the next start (after a mere kill of the process the
 * page cache still holds them: see wal_boot).
 *
 *   offset 0     superblock, two copies in the first two 4 KiB blocks, the
 *                one with the higher generation in use (copy g % 2 holds
 *                generation g; a torn write leaves the other):
 *                  0  u64 magic "KEELWAL1"   8  u32 layout   12  u32 flags
 *                 16  u64 file size         24  u64 seq of the first live segment
 *                 32  u64 its offset        40  u64 epoch
 *                 48  40 bytes: the boot id of the machine that wrote it
 *                     (text, zero-padded)
 *                 88  u64 generation
 *                 96  u64 XXH3-64 of bytes [0, 96)
 *                 flags: 1, replay even under the same boot (wal_must_replay)
 *   offset 8192  segments, one after another, wrapping to 8192 at the end:
 *                  header block (4 KiB):
 *                    0  u64 magic "KEELSEG1"  8  u64 seq   16  u64 bytes (all of it)
 *                   24  u32 records          28  u32 zero  32  u64 epoch
 *                   40  u64 XXH3-64 of the whole segment with this field zero
 *                   48  16 bytes zero
 *                   64  records of 48 bytes: u64 chunk id, u64 version,
 *                       u64 offset, u32 length, u32 kind, u64 number,
 *                       8 bytes zero
 *                  then each WAL_WRITE record's bytes, in record order, each
 *                  padded to a multiple of 4 KiB
 *
 * All integers little-endian. Segments carry consecutive sequence numbers:
 * replay starts at the superblock's segment and follows the chain until a
 * segment is missing, torn (hash) or out of sequence, so a crash in the
 * middle of a commit loses only that commit, which had not been
 * acknowledged. A segment of another epoch than the superblock's is stale:
 * replay is followed by a reset to a new epoch, so that segments written
 * before it can never be mistaken for the ones that follow. A checkpoint
 * makes everything the live segments describe durable in the data files
 * (syncfs) and then moves the superblock past them, freeing their space.
 *
 * Ordering. A record is replayed only as the newest word on its bytes as
 * far as the log knows, so whatever made the data file newer than a record
 * by other means must say so in the log. Records are numbered as they are
 * staged (from 1 in each epoch); a WAL_BARRIER record for a chunk, with a
 * number N in `off`, makes the chunk's records numbered up to N obsolete:
 * its data file was made durable after they were staged (a flush of writes
 * that were not logged), or it is another file (the replica was replaced
 * or created). Records staged after N, while that sync ran, stay live.
 * A version change needs no barrier: it keeps the data file as it is.
 *
 * Space. wal_append refuses (returns 0) when the record does not fit in the
 * staging buffer or in the log's free space; the caller then makes that
 * replica durable its own way at the next flush. A commit never runs out of
 * space: appends reserve it.
 *
 * Threads: every call is thread-safe. wal_commit and wal_checkpoint block
 * (disk I/O) and belong on worker threads; wal_append only copies.
 */
#ifndef KEEL_DATANODE_WAL_H
#define KEEL_DATANODE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_LAYOUT     2u
#define WAL_MIN_SIZE   (8ull << 20)
#define WAL_MAX_RECORD (64u * 1024) /* largest write logged */
#define WAL_WRITE      1u
#define WAL_BARRIER    2u
#define WAL_BOOT_LEN   40u /* bytes of a boot id kept */

struct wal;

struct wal_record {
    uint64_t chunk_id;
    uint64_t version; /* WAL_WRITE: the replica's version when written */
    uint64_t off;     /* WAL_WRITE: byte offset in the chunk; WAL_BARRIER: see above */
    uint32_t len;     /* WAL_WRITE: 1..WAL_MAX_RECORD bytes */
    uint32_t kind;    /* WAL_WRITE or WAL_BARRIER */
};

/*
 * Opens the log `name` below dirfd, creating a file of `size` bytes (a
 * multiple of 4 KiB, at least WAL_MIN_SIZE) if there is none; an existing
 * log keeps its own size. Nothing is appended until wal_replay and
 * wal_reset have run. -EBADMSG: a file that is not a log;
 * -EPROTONOSUPPORT: a log of another layout.
 */
int wal_open(int dirfd, const char *name, uint64_t size, struct wal **out);
void wal_close(struct wal *w);

/*
 * Calls fn for every WAL_WRITE record of the live segments that no later
 * barrier of its chunk makes obsolete, oldest first; data holds its len
 * bytes, valid during the call. fn returning non-zero stops the replay
 * with that value. *records (may be NULL) receives the number of records
 * passed to fn.
 */
typedef int (*wal_replay_fn)(void *arg, const struct wal_record *r, const void *data);
int wal_replay(struct wal *w, wal_replay_fn fn, void *arg, uint64_t *records);

/*
 * The boot id the log was last reset under. A log that was written since
 * the machine last booted needs no replay: every write that returned is in
 * the page cache, newer than the log's records, and replaying those could
 * take a block back to an older content on one replica only.
 */
const char *wal_boot(const struct wal *w);

/* True when a checkpoint found that a write-back failed (syncfs): the data
 * files may lack what the log holds, so the log is replayed even under the
 * boot it was written in. */
bool wal_must_replay(const struct wal *w);
/* Makes the next start replay the log whatever the boot, as a failed
 * checkpoint does: the data files may lack what it holds. */
int wal_keep_for_replay(struct wal *w);

/*
 * Forgets every segment: the caller has made what wal_replay handed it
 * durable, or found no replay needed. Records `boot` (the machine's boot
 * id) and opens the log for appends.
 */
int wal_reset(struct wal *w, const char *boot);

/*
 * Stages a record (data: len bytes of a WAL_WRITE, NULL for a barrier).
 * Returns its number (> 0), to be given to wal_commit, or 0 when there is
 * no room or the log has failed.
 */
uint64_t wal_append(struct wal *w, const struct wal_record *r, const void *data);

/*
 * Makes every record up to number `upto` durable (0 or the log's error,
 * which sticks: a caller falls back to syncing the data file). One commit
 * serves every record staged when it began.
 */
int wal_commit(struct wal *w, uint64_t upto);

/* True while the live log may hold a record of the chunk: a barrier is
 * then needed to make them obsolete. */
bool wal_has_chunk(struct wal *w, uint64_t chunk_id);

/* The number of the last record staged: what a barrier taken now covers. */
uint64_t wal_last(struct wal *w);
/* The number of the last record known durable. */
uint64_t wal_committed(struct wal *w);

/*
 * Makes the chunk's records numbered up to `upto` obsolete, durably: a
 * committed barrier, or if there is no room for one, a checkpoint. Nothing
 * to do when the log holds no record of the chunk.
 */
int wal_barrier(struct wal *w, uint64_t chunk_id, uint64_t upto);

/* True when half of what writes may fill is in use and no checkpoint is
 * running. */
bool wal_wants_checkpoint(struct wal *w);

/*
 * Syncs the filesystem that holds the log (and the replicas), then frees
 * the segments committed before it began. 0 or an error (the log then
 * keeps its segments and appends refuse once it is full). A failed syncfs
 * sticks: every later call returns its error, nothing is freed again, and
 * the next start replays the log whatever the boot (wal_must_replay).
 */
int wal_checkpoint(struct wal *w);

/* The log file's size. */
uint64_t wal_size(const struct wal *w);

/* Bytes of the log in use (committed and reserved). */
uint64_t wal_used(struct wal *w);

/* Starts a thread that checkpoints whenever wal_wants_checkpoint would say so;
 * wal_close stops it. */
int wal_start_checkpoints(struct wal *w);

#endif
