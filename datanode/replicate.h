/*
 * replicate: the sending end of replication copies (CMD_REPLICATE).
 *
 * A copy streams one replica, at the version the namenode named, to a
 * target datanode as CopyChunkReq pieces of whole blocks, each read through
 * the replica's queue (so every block is verified on the way out) and sent
 * with its checksums; a final piece carries the checksums of every block.
 * One piece is in flight at a time and the next is read while nothing else
 * waits, so a copy holds at most one piece of memory. The target verifies
 * and installs atomically (copyrecv.c); a write or version change during
 * the copy makes the target's final check, or the next read, fail it.
 *
 *   (start) --> SENDING --all pieces acked--> (done, status 0)
 *                  \--read error, stale, refusal, timeout--> (done, error)
 *
 * Threads: loop thread.
 */
#ifndef KEEL_DATANODE_REPLICATE_H
#define KEEL_DATANODE_REPLICATE_H

#include "peers.h"
#include "replicas.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct replicate;

struct replicate_outcome {
    uint64_t chunk_id;
    uint64_t version;
    uint64_t target;
    int status;
    uint64_t bytes_sent;
};

struct replicate_hooks {
    /* A copy ended (the outcome is borrowed for the call). */
    void (*done)(void *ctx, const struct replicate_outcome *o);
    void *ctx;
};

/* reps and peers are borrowed; piece_bytes: payload per piece (whole blocks). */
int replicate_new(uv_loop_t *loop, struct replicas *reps, struct peers *peers, uint32_t piece_bytes,
                  const struct replicate_hooks *hooks, struct replicate **out);

/*
 * Starts copying chunk_id at version to the datanode target_id at
 * target_addr. Returns 0 (hooks.done follows, later), -EALREADY (that copy
 * is running), -ENOENT (no replica), -ESTALE (another version), -EIO
 * (replica corrupt), -EINVAL (bad target), -ECANCELED (shutting down).
 */
int replicate_start(struct replicate *rp, uint64_t chunk_id, uint64_t version, uint64_t target_id,
                    const char *target_addr);
size_t replicate_active(const struct replicate *rp);
/* Stops every copy at its next step (done with -ECANCELED). */
void replicate_shutdown(struct replicate *rp);
void replicate_free(struct replicate *rp);

#endif
