/*
 * chunkstore: the datanode's data directory.
 *
 *   DIR/VERSION                      cluster id, node id, layout, chunk size
 *   DIR/chunks/xx/<id>.data          replica bytes (sparse)
 *   DIR/chunks/xx/<id>.meta          sidecar: version, flags, block checksums
 *   DIR/tmp/<id>-<session>.data|meta replicas being received from a peer
 *   DIR/wal                          log of small writes (wal.h), if kept
 *
 * <id> is the chunk id as 16 lowercase hex digits and xx its low byte, so
 * names come only from numbers. Every file is opened relative to a
 * directory descriptor held open from the start, with O_NOFOLLOW, and must
 * be a regular file: a symlink or device planted in the tree is refused.
 * A replica exists when its .meta exists: the .meta is created (by rename)
 * after the .data and removed before it, so a crash leaves at worst an
 * orphan .data, which the startup scan removes.
 *
 * The identity (VERSION) is absent on a new datanode until it registers;
 * replica operations need it (they refuse with -EAGAIN before).
 *
 * Threads: chunkstore_open/close, the identity getters and
 * chunkstore_adopt_identity run on the loop thread; everything that touches
 * files blocks and runs on worker threads, concurrently for distinct chunk
 * ids. The directory descriptors never change after chunkstore_open.
 */
#ifndef KEEL_DATANODE_CHUNKSTORE_H
#define KEEL_DATANODE_CHUNKSTORE_H

#include "replicafile.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNKSTORE_LAYOUT         1u
#define CHUNKSTORE_MAX_CLUSTER_ID 63u

struct chunkstore;

struct chunkstore_identity {
    char cluster_id[CHUNKSTORE_MAX_CLUSTER_ID + 1];
    uint64_t node_id;
    uint64_t chunk_size;
};

/* What the datanode reports about a replica. */
struct replica_info {
    uint64_t chunk_id;
    uint64_t version;
    uint64_t length;
    bool corrupt;
};

/*
 * Opens (creating what is missing) the data directory dir and reads its
 * VERSION file if there is one. Returns 0, -EBADMSG (VERSION unreadable),
 * -EPROTONOSUPPORT (another layout), or the error of a directory operation.
 */
int chunkstore_open(const char *dir, struct chunkstore **out);
void chunkstore_close(struct chunkstore *cs);

/* The directory given to chunkstore_open. Borrowed while cs is open. */
const char *chunkstore_dir(const struct chunkstore *cs);
/* True and *out filled when the identity is known. */
bool chunkstore_identity(const struct chunkstore *cs, struct chunkstore_identity *out);
/* Blocks per chunk, or 0 while the identity is unknown. */
uint32_t chunkstore_blocks(const struct chunkstore *cs);

/*
 * Writes VERSION atomically (worker thread); the in-memory identity is left
 * alone until chunkstore_adopt_identity (loop thread). -EINVAL for a chunk
 * size that is not a positive multiple of the block size (at most 4 GiB),
 * a node id of 0, or a cluster id that is empty, too long, or not plain
 * printable text.
 */
int chunkstore_write_identity(struct chunkstore *cs, const struct chunkstore_identity *id);
void chunkstore_adopt_identity(struct chunkstore *cs, const struct chunkstore_identity *id);

/*
 * Keeps a log of small writes of `size` bytes in DIR/wal (wal.h), which
 * serves the flushes of every replica opened after the scan; 0: none.
 * Before chunkstore_scan. -EINVAL: a size below WAL_MIN_SIZE or not a
 * multiple of 4 KiB.
 */
int chunkstore_use_wal(struct chunkstore *cs, uint64_t size);

/*
 * The machine's boot id as the scan sees it (else read from
 * /proc/sys/kernel/random/boot_id): the log is replayed only when it was
 * written under another boot, after a power cut or a reboot; after a mere
 * kill of the datanode the page cache holds every write. Tests set another
 * id to play a reboot.
 */
void chunkstore_set_boot_id(struct chunkstore *cs, const char *boot);
/* The same, read from the first line of the file at path. -errno, or
 * -EINVAL if that line is empty. */
int chunkstore_read_boot_id(struct chunkstore *cs, const char *path);

/*
 * Calls fn for every replica on disk, after replaying the log of small
 * writes (if the last run left one, wanted or not) and recovering the
 * replicas left dirty by an unclean stop (replicafile_recover). A replica
 * whose files cannot be trusted (bad header, wrong size) is reported
 * corrupt; if even its version is unknown, with version 0. Orphan files
 * and the tmp directory are cleaned. Without an identity any replica found
 * is an error (-EEXIST). fn returning non-zero stops the scan with that
 * value.
 */
typedef int (*chunkstore_scan_fn)(void *arg, const struct replica_info *ri);
int chunkstore_scan(struct chunkstore *cs, chunkstore_scan_fn fn, void *arg);

/*
 * Creates an empty replica (all zeros, every checksum the zero block's) at
 * version, durably, and opens it. -EEXIST if one exists.
 */
int chunkstore_create(struct chunkstore *cs, uint64_t chunk_id, uint64_t version,
                      struct replicafile **out);
/* Opens an existing replica. -ENOENT if there is none. Replicas open
 * REPLICAFILE_IN_PLACE where the filesystem allows it. */
int chunkstore_open_replica(struct chunkstore *cs, uint64_t chunk_id, struct replicafile **out);
/*
 * Flushes the volatile cache of the device that holds the replicas, for
 * replicafile_flush's *device_flush: an fdatasync of the chunks directory,
 * which sends the flush even when it has nothing to commit. Any thread.
 */
int chunkstore_flush_device(struct chunkstore *cs);
/*
 * The log of small writes: makes every record up to upto durable (blocks;
 * any thread), and the number of the last record known durable (0 without
 * a log).
 */
int chunkstore_commit_log(struct chunkstore *cs, uint64_t upto);
uint64_t chunkstore_log_committed(struct chunkstore *cs);
/* Removes a replica (its .meta first). -ENOENT if there is none. */
int chunkstore_remove(struct chunkstore *cs, uint64_t chunk_id);

/*
 * Replicas being received: tmp/<id>-<session>.data and .meta, created
 * exclusively, opened read-write. The caller owns the descriptors.
 */
int chunkstore_tmp_create(struct chunkstore *cs, uint64_t chunk_id, uint64_t session, int *data_fd,
                          int *meta_fd);
/* Removes both temporary files (missing ones are fine). */
int chunkstore_tmp_remove(struct chunkstore *cs, uint64_t chunk_id, uint64_t session);
/*
 * Makes a replica's data the temporary data file of session (made by
 * chunkstore_tmp_create; *data_fd is its descriptor, closed and replaced by
 * one on the moved file): the .meta is removed first (durably), so from
 * then on, *gone set, there is no replica, whatever fails after. A replica
 * without a .data gives an empty file (zeros).
 */
int chunkstore_take(struct chunkstore *cs, uint64_t chunk_id, uint64_t session, int *data_fd,
                    bool *gone);
/*
 * Moves the temporary files of a finished copy into place, replacing any
 * existing replica of the chunk: the old replica disappears (durably)
 * before the new data arrives, and the new .meta is renamed last, so a
 * crash leaves the old replica, no replica, or the new one. The temporary
 * files must be complete and synced.
 */
int chunkstore_install(struct chunkstore *cs, uint64_t chunk_id, uint64_t session);

#endif
