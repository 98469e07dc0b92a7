/*
 * chunkio: the client's view of the chunks of the files it has open, and
 * the I/O that moves data to and from their replicas.
 *
 * Each open inode (struct kinode, shared by every keel_file of this client
 * on that file) caches the location of its chunks. A file operation (struct
 * fop) is cut into pieces, one per chunk range; each piece queues on its
 * chunk, and the chunk's pump starts what may start:
 *
 *   - a read needs a known location (fresh within location_ttl_ms unless we
 *     hold the write lease); it is read from the files of a replica on this
 *     host if there is one (localread.h: on this thread when the page cache
 *     holds it, else on libuv's pool), else, or if that fails, it goes to
 *     the replica replica_pick() prefers and falls over to the next on any
 *     error, then refetches the location;
 *     it waits for the writes queued before it that it overlaps, so it sees
 *     them (what makes write-behind and asynchronous writes readable);
 *   - a write needs a location fetched for writing under our lease; it goes
 *     to the pipeline head and must not overlap a write already in flight on
 *     the chunk (overlapping writes go in submission order).
 *
 * A chunk's states:
 *
 *   UNKNOWN --fetch--> FETCHING --reply--> KNOWN (hole, or id+version+replicas)
 *   KNOWN --write failed--> RECOVERING: no new writes; when the writes in
 *          flight have finished, RecoverChunk at the namenode (or a refetch
 *          when only our version was stale) --> KNOWN, failed writes resent
 *
 * Everything here runs on the client's I/O thread.
 */
#ifndef KEEL_CLIENT_CHUNKIO_H
#define KEEL_CLIENT_CHUNKIO_H

#include "core.h"

#include <stdbool.h>
#include <stdint.h>

#define KC_MAX_REPLICAS 16
#define KC_MAX_IO       (4u << 20) /* bytes per request to a datanode */
/* A read with no other in flight is cut into pieces of this size, so that
 * the replicas serve it together; see read_piece_size(). */
#define KC_READ_PIECE   (128u << 10)

struct kreplica {
    uint64_t node_id;
    char addr[64];
};

struct kchunk {
    struct kinode *in;
    uint64_t index;
    uint64_t id; /* 0 with known: a hole */
    uint64_t version;
    unsigned nreps;
    struct kreplica reps[KC_MAX_REPLICAS];
    bool known;
    bool writable; /* fetched for writing while we held the lease */
    bool fetching;
    bool recovering;
    bool dirty;   /* written since the last flush */
    bool readied; /* sent a write of no bytes (ready_next), not written since */
    uint64_t fetched_ms;
    uint64_t retry_at_ms;  /* waiting out -EAGAIN */
    unsigned attempts;     /* recovery rounds without a successful write */
    unsigned stale_rounds; /* refetches after -ESTALE without a successful write */
    int error;             /* why the last recovery failed; reported by flush */
    uint64_t failed[KC_MAX_REPLICAS];
    int failed_status[KC_MAX_REPLICAS];
    unsigned nfailed;
    uint64_t next_seq;
    struct list waiting;  /* pieces, in submission order */
    struct list inflight; /* write pieces at the datanodes */
    unsigned reads;       /* read pieces at the datanodes */
};

/* Per-file state of this client, shared by its keel_files on the file. */
struct kinode {
    keel_client *c;
    uint64_t ino;
    unsigned opens;
    unsigned ops; /* fops in progress */
    uint64_t size;
    bool lease;
    uint64_t last_write_ms;
    uint64_t seq_end;     /* where the last write sent to a datanode ended */
    unsigned writes;      /* write fops in progress */
    struct u64map chunks; /* index + 1 -> kchunk */
    /* Growing the size at the namenode (ExtendReq), shared by writes. */
    uint64_t ext_done;    /* size the namenode shows every client */
    uint64_t ext_durable; /* size the namenode has committed */
    uint64_t ext_want;
    bool ext_want_durable;
    bool ext_inflight;
    struct list ext_waiters;
    /* Telling the namenode the data changed (ExtendReq touch: its mtime). */
    uint64_t wgen;      /* writes that landed */
    uint64_t ext_touch; /* the wgen a touch was asked for */
    uint64_t touched;   /* the wgen of the last touch answered (or given up) */
    struct list deferred; /* flushes waiting for chunks to settle */
    /* Write-behind writes (file.c), guarded by c->wb_lock. */
    struct list wb;   /* struct wb_write in flight, oldest first */
    uint64_t wb_seq;  /* the number of the next one */
    size_t wb_bytes;  /* their bytes */
    size_t wb_writes; /* and how many */
    int wb_err;       /* the first failure not yet reported */
};

/* FOP_TOUCH: tells the namenode of the writes that landed before it (the
 * mtime; keel_drain), without waiting for its answer. */
enum fop_kind { FOP_READ, FOP_WRITE, FOP_FLUSH, FOP_TOUCH };

struct fop;
typedef void (*fop_done_fn)(struct fop *op);

/* One file operation. */
struct fop {
    struct core_op base;
    struct kinode *in;
    enum fop_kind kind;
    uint8_t *buf;
    uint64_t off;
    size_t len;
    unsigned pending; /* pieces and namenode calls outstanding */
    int err;
    ssize_t result;
    fop_done_fn done; /* on the I/O thread, once */
    void *done_arg;
    struct piece *pieces;
    size_t npieces;
    /* flush state */
    struct kchunk **flush_chunks; /* the chunks dirty when the flush began */
    uint8_t *flush_state;         /* per chunk: FS_DONE, FS_AGAIN, FS_ROUND */
    size_t nflush;
    unsigned flush_rounds;
    struct list defer_link;
};

/* The inode's state for ino, created (with the size given) on first use. */
struct kinode *chunkio_inode(keel_client *c, uint64_t ino, uint64_t size);
/* Frees an inode nobody uses (no opens, no fops). */
void chunkio_inode_put(struct kinode *in);

/* Starts op (read, write or flush of op->in); op->done runs when finished. */
void chunkio_start(struct fop *op);

/* The lease on in is gone (lost, released), or is being handed over (its
 * flush follows): forget write locations. */
void chunkio_drop_lease(struct kinode *in, bool handover);

/* The file was truncated to size: forget chunks at or past it. */
void chunkio_truncated(struct kinode *in, uint64_t size);

/* True when this client knows in's size better than the namenode: it holds
 * the lease, or writes of its own are on their way. */
static inline bool chunkio_size_is_ours(const struct kinode *in)
{
    return in->lease || in->writes > 0;
}

/* Attributes from the namenode, as this client knows them: a file it writes
 * may be longer than the namenode has heard yet. */
void chunkio_local_attr(keel_client *c, struct keel_stat *st);

/* True when a chunk of in was written since its last flush, or its size
 * grew without being committed. */
bool chunkio_dirty(const struct kinode *in);

/* The namenode connection is new (it may have restarted): re-send the sizes
 * of the files we hold the lease of, which it may have lost. */
void chunkio_resend_sizes(keel_client *c);

/* Periodic: retries after -EAGAIN, deferred flushes. */
void chunkio_tick(keel_client *c, uint64_t now_ms);

#endif
