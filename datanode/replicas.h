/*
 * replicas: the datanode's table of chunk replicas and the per-chunk
 * operation queues that order every disk access.
 *
 * Each replica has one queue, and operations start in arrival order unless
 * they cannot interfere with what came before them: reads, checksum reads
 * and scrub passes run alongside each other, and alongside writes to other
 * blocks; writes to disjoint blocks run alongside each other; a flush waits
 * for the writes that arrived before it (and only those: later writes run
 * while it syncs). Everything else (version change, trim, delete, install,
 * take, settle, and the first write after a settle, which marks the
 * replica dirty on disk) runs alone. Overlapping operations therefore apply
 * in arrival order, and different chunks run in parallel. The version and
 * state checks of an operation (fencing: a version other than the
 * replica's is -ESTALE) happen when it starts, so they see every earlier
 * operation it could conflict with.
 *
 * Where operations run: small reads and writes that find what they need in
 * memory run at once on the loop (a read whose blocks are in the page
 * cache; a write of at most 128 KiB to a replica already marked dirty, whose
 * edge blocks, if any, are cached), since a thread handoff costs more than
 * the work. Everything else runs on the libuv pool. Should a write on the
 * loop ever take long (the kernel throttling dirty pages), writes go to the
 * pool for a while.
 *
 * A replica in the table is:
 *
 *   (creating) --create/install ok--> PRESENT --delete--> (gone)
 *                                       |  \--checksum mismatch--> CORRUPT
 *                                       \--write/flush disk error--> FAILED
 *
 * CORRUPT replicas refuse reads and writes with -EIO (the flag is persisted
 * and the namenode told at once). FAILED ones (a write, flush or trim hit a
 * disk error) refuse writes, flushes and version changes with that sticky
 * error but still serve verified reads; an error other than -ENOSPC leaves
 * the files in an unknown state, so it also makes the replica CORRUPT and
 * the namenode replaces it.
 *
 * Written replicas keep their checksums in memory and are marked dirty on
 * disk (replicafile.h); one idle for a second settles (checksums to the
 * sidecar, flag cleared), and so does every one at shutdown. The files of
 * settled, idle replicas are kept open in a bounded LRU; unsettled ones stay
 * open until they settle (their checksums are only in memory, and a
 * writeback error must reach the fsync of the descriptor that wrote).
 *
 * Callbacks: an operation that returns 0 from its submit function calls its
 * callback exactly once, later, on the loop thread; one that returns an
 * error never calls it.
 *
 * Threads: every function here runs on the loop thread; the work itself runs
 * there or on the libuv pool and touches only its own operation and the
 * replica file (replicafile.h allows the overlaps above).
 */
#ifndef KEEL_DATANODE_REPLICAS_H
#define KEEL_DATANODE_REPLICAS_H

#include "chunkstore.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct replicas;

/* Who hears about changes the namenode must learn of. */
struct replicas_hooks {
    /* A replica was found corrupt, or changed by an operation submitted
     * with REPLICAS_REPORT (deleted: it is gone). */
    void (*report)(void *ctx, const struct replica_info *ri, bool deleted);
    /* A write path hit a disk error (-ENOSPC, -EIO...). */
    void (*disk_error)(void *ctx, uint64_t chunk_id, int err);
    void *ctx;
};

/* Submit flag: report the change through hooks.report when it is done. */
#define REPLICAS_REPORT 0x1u
/* Read flag: also return the verified checksums of the blocks read. */
#define REPLICAS_SUMS 0x2u

/*
 * The outcome of an operation, valid during its callback. The callback may
 * take base and sums (set them to NULL; free() them later).
 */
struct replicas_result {
    struct replica_info info; /* the replica after the operation */
    void *base;               /* read, checksums: the buffer holding data */
    const uint8_t *data;      /* read: the bytes asked for; checksums: LE u64s */
    size_t len;
    uint64_t checksum; /* read: XXH3-64 of data */
    uint64_t *sums;    /* read with REPLICAS_SUMS: one per block read */
    size_t nsums;
    size_t data_bytes; /* scrub: bytes read from disk */
};

typedef void (*replicas_cb)(int status, struct replicas_result *res, void *arg);

/*
 * Creates the table. cs and hooks are borrowed for its life. max_open bounds
 * the replicas whose files stay open while idle and clean.
 */
int replicas_new(uv_loop_t *loop, struct chunkstore *cs, unsigned max_open,
                 const struct replicas_hooks *hooks, struct replicas **out);
/*
 * Starts shutting down: queued operations fail with -ECANCELED, new ones
 * are refused; running ones complete. The loop stops once they have.
 */
void replicas_shutdown(struct replicas *r);
/* Frees the table and closes every file; only after the loop has stopped. */
void replicas_free(struct replicas *r);

/* Adds a replica found by the startup scan. -EEXIST if already known. */
int replicas_load(struct replicas *r, const struct replica_info *ri);

/* True and *out filled if the chunk has a replica here. */
bool replicas_get(const struct replicas *r, uint64_t chunk_id, struct replica_info *out);
size_t replicas_count(const struct replicas *r);
/* Sum of the replicas' lengths. */
uint64_t replicas_bytes(const struct replicas *r);
/* Operations queued or running. */
size_t replicas_busy(const struct replicas *r);
/* Every present replica, in a malloc'd array the caller frees. */
size_t replicas_snapshot(const struct replicas *r, struct replica_info **out);
/* Present replica ids in increasing order after `after`, at most max. */
size_t replicas_ids_after(const struct replicas *r, uint64_t after, uint64_t *ids, size_t max);

/*
 * Data operations. Synchronous errors: -ENOENT (no such replica), -EINVAL
 * (range outside the chunk, length 0), -EAGAIN (no identity yet),
 * -ECANCELED (shutting down).
 *
 * read: len bytes at off, every block touched verified; -ESTALE unless
 * version is the replica's; -EIO for a corrupt replica or a mismatch (which
 * marks it corrupt and reports it).
 */
int replicas_read(struct replicas *r, uint64_t chunk_id, uint64_t version, uint64_t off, size_t len,
                  unsigned flags, replicas_cb cb, void *arg);
/* write: data is borrowed until the callback. -ESTALE, -EIO, sticky errors.
 * No bytes at off 0 marks the replica dirty and writes nothing
 * (replicafile_write). */
int replicas_write(struct replicas *r, uint64_t chunk_id, uint64_t version, uint64_t off,
                   const void *data, size_t len, replicas_cb cb, void *arg);
/* flush: every write before it is durable when it succeeds. */
int replicas_flush(struct replicas *r, uint64_t chunk_id, uint64_t version, replicas_cb cb,
                   void *arg);
/* checksums: every block's checksum, little-endian u64s. version 0: any. */
int replicas_checksums(struct replicas *r, uint64_t chunk_id, uint64_t version, replicas_cb cb,
                       void *arg);
/* scrub: verifies blocks [first, first + n) (clamped to the chunk). */
int replicas_scrub(struct replicas *r, uint64_t chunk_id, uint64_t first, size_t n, replicas_cb cb,
                   void *arg);

/*
 * Namenode operations.
 *
 * create: a new empty replica at version; -EEXIST if one exists.
 * set_version: moves the replica to `to`. from != 0: the replica must be at
 *   from or already at to; from == 0: any version below to, or to itself.
 *   Otherwise -ESTALE. Durable before the callback.
 * trim: cuts to length and moves from -> to in one durable step (same
 *   version rule; from == to keeps the version).
 * delete: removes the replica if its version is at most max_version
 *   (-ESTALE otherwise).
 */
int replicas_create(struct replicas *r, uint64_t chunk_id, uint64_t version, replicas_cb cb,
                    void *arg);
int replicas_set_version(struct replicas *r, uint64_t chunk_id, uint64_t from, uint64_t to,
                         unsigned flags, replicas_cb cb, void *arg);
int replicas_trim(struct replicas *r, uint64_t chunk_id, uint64_t from, uint64_t to,
                  uint64_t length, unsigned flags, replicas_cb cb, void *arg);
int replicas_delete(struct replicas *r, uint64_t chunk_id, uint64_t max_version, unsigned flags,
                    replicas_cb cb, void *arg);

/*
 * take: the start of a delta copy, cheaper than copying the replica: it
 * stops being one. Its block checksums go into sums (room for one per
 * block of the chunk, borrowed until the callback), its data file becomes
 * the temporary data file of copy session `session` (*data_fd, from
 * chunkstore_tmp_create, is replaced by a descriptor on it), and its
 * removal is reported. The delta then rewrites only the blocks that
 * differ. -ENOENT (no replica), -EIO (corrupt), -EEXIST (its version is
 * `below` or newer: nothing to bring up to date); res->info is the replica
 * taken. A failure after the replica is gone still leaves it gone.
 */
int replicas_take(struct replicas *r, uint64_t chunk_id, uint64_t below, uint64_t session,
                  int *data_fd, uint64_t *sums, replicas_cb cb, void *arg);

/*
 * install: the complete, synced temporary files of copy `session`
 * (chunkstore_tmp_create) replace the chunk's replica, which becomes ri.
 * -EEXIST (at run time) if a sound replica at ri->version or newer is
 * present (a corrupt one is replaced whatever its version).
 * Always reported.
 */
int replicas_install(struct replicas *r, const struct replica_info *ri, uint64_t session,
                     replicas_cb cb, void *arg);

#endif
