/*
 * replicate: the sending end of replication copies (CMD_REPLICATE).
 *
 * A copy sends one replica, at the version the namenode named, to a target
 * datanode as CopyChunkReq pieces. It starts from the replica's block
 * checksums (a snapshot), which decide what is sent:
 *
 *   - a whole copy sends every block that is not all zeros, in pieces of
 *     consecutive blocks (holes, and long runs of zeros, are skipped: the
 *     target treats blocks never sent as zeros);
 *   - a delta copy (the command's delta flag: the target holds an older
 *     replica) first asks the target for its checksums (ChecksumsReq) and
 *     sends only the blocks that differ, when they are fewer than three
 *     quarters of what a whole copy would send; otherwise, or when the
 *     target cannot say (no replica, corrupt, unreachable), the copy is a
 *     whole one. A target that refuses the first delta piece because its
 *     replica went away or went bad gets a whole copy instead.
 *
 * Every piece is read through the replica's queue (verified on the way out)
 * and must agree with the snapshot; at the end the checksums are read again
 * and must still equal it, and the last piece carries them (in its payload,
 * so chunks of any size fit). The target verifies and installs atomically
 * (copyrecv.c). A write or version change during the copy fails it
 * (-EAGAIN or -ESTALE).
 *
 * A fuzzy copy (the namenode's fuzzy flag: the chunk's file is being
 * written) is a whole copy that takes writes as they come: a block that
 * changed since the snapshot is sent as it is now, the last piece carries
 * the checksums of what was sent, and the target installs the replica as
 * version - 1 with the chunk's full length: a stale replica, consistent in
 * itself, that the delta copy the namenode orders next brings up to date.
 * Only a version change fails it.
 *
 * Pacing: at most `streams` copies run at once (more wait, first come first
 * served), and their payload bytes together go out at no more than `rate`
 * bytes per second (0: unlimited), so client I/O keeps priority. Pieces
 * shrink below 1 MiB at low rates so that a target never waits long for
 * the next one. One piece per copy is in flight at a time.
 *
 *   QUEUED --slot free--> [PROBING: target's checksums] --> SNAPSHOT
 *     --> SENDING (read piece, wait for the rate, send; repeat)
 *     --> FINAL (checksums again, last piece) --> (done, status 0)
 *   any state --read error, stale, refusal, timeout, shutdown--> (done, error)
 *
 * Threads: loop thread.
 */
#ifndef KEEL_DATANODE_REPLICATE_H
#define KEEL_DATANODE_REPLICATE_H

#include "peers.h"
#include "replicas.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct replicate;

struct replicate_outcome {
    uint64_t chunk_id;
    uint64_t version;
    uint64_t target;
    int status;
    uint64_t bytes_sent;  /* payload bytes of blocks sent */
    uint64_t bytes_saved; /* delta: bytes a whole copy would have sent on top */
    bool fuzzy;           /* the target got version - 1 */
};

struct replicate_hooks {
    /* A copy ended (the outcome is borrowed for the call). */
    void (*done)(void *ctx, const struct replicate_outcome *o);
    void *ctx;
};

struct replicate_config {
    uint32_t piece_bytes; /* largest payload per piece (rounded down to blocks) */
    uint64_t rate;        /* payload bytes per second, all copies together; 0: unlimited */
    unsigned streams;     /* copies running at once (0: 1) */
};

/* reps and peers are borrowed. */
int replicate_new(uv_loop_t *loop, struct replicas *reps, struct peers *peers,
                  const struct replicate_config *cfg, const struct replicate_hooks *hooks,
                  struct replicate **out);

/*
 * Starts, or queues, a copy of chunk_id at version to the datanode
 * target_id at target_addr; delta: the target holds an older replica;
 * fuzzy: writes may go on during the copy (see above).
 * A copy of the same chunk to the same target at another version (an older
 * command, which its source's version change is ending) runs or waits
 * first: this one waits in the queue until it has ended.
 * Returns 0 (hooks.done follows, later), -EALREADY (that copy, at that
 * version, is running or queued), -ENOENT (no replica), -ESTALE (another
 * version), -EIO (replica corrupt), -EINVAL (bad target), -ECANCELED
 * (shutting down).
 */
int replicate_start(struct replicate *rp, uint64_t chunk_id, uint64_t version, uint64_t target_id,
                    const char *target_addr, bool delta, bool fuzzy);
/* Copies running and queued. */
size_t replicate_active(const struct replicate *rp);
/* Fails queued copies and stops running ones at their next step (done with
 * -ECANCELED); closes the pacing timer. */
void replicate_shutdown(struct replicate *rp);
/* Frees; after the loop has stopped. */
void replicate_free(struct replicate *rp);

#endif
