/*
 * repair: the namenode side of DESIGN.md promises 4 and 6 -- it keeps every
 * chunk at its replication factor and placement. It owns the re-replication
 * queue (replq), decides what each chunk needs, schedules datanode-to-
 * datanode copies, trims extra replicas, has stale and corrupt replicas
 * deleted once enough good ones exist, and drains decommissioning nodes.
 *
 * What starts it: every change the chunk map announces (a replica lost,
 * reported stale or corrupt, a version bump, a full report missing
 * replicas), a datanode declared dead (its replicas are forgotten), a node
 * decommissioned or recommissioned. Each changed chunk is examined on the
 * loop soon after, in bounded batches:
 *
 *   fewer good replicas than wanted  -> queued, class = good replicas
 *                                       (0: only leaving copies left)
 *   well replicated, domains repeat
 *     although more are alive        -> queued in the last class
 *   enough good replicas             -> stale and corrupt replicas deleted,
 *                                       replicas beyond the factor trimmed
 *   no readable replica (missing)    -> left alone until one is reported
 *
 * A copy (one chunk, up to REPLQ_MAX_COPIES targets at once):
 *
 *   QUEUED --sources and targets found--> [BUMPING] --> SENT --> done
 *
 * Sources are current replicas on live nodes (leaving nodes first); the
 * target is a stale holder in a fresh domain when there is one (it gets a
 * delta copy), else the placement policy's pick among usable nodes with a
 * free incoming stream. A copy is fenced when no write may slip past it:
 * meanwhile the chunk is "copying" and writers are told -EAGAIN
 * (repair_copying), unless it is a whole copy, which a writer's arrival
 * cancels (repair_writer_waits). A chunk whose file some client may be
 * writing (lease_busy) is first moved to a new version on its current
 * replicas and copied at that version. A whole copy of such a chunk is
 * fuzzy instead: unfenced, at the current version (one above zero at
 * least), the source takes writes as they come, the target installs the
 * result one version below (stale), and the delta copy planned next, which
 * is fenced, sends only what was written meanwhile. Writers then wait for
 * a delta, not for a whole chunk. The command is pushed with CommandReq on
 * the source's registered connection (or queued for its heartbeat when it
 * cannot take pushes). A copy ends when the target reports the replica or
 * the source's ReplicateDoneReq arrives; a failure, a timeout or a dead
 * node makes the chunk go again, avoiding the node at fault; repeated
 * failures back off. A source that gives a copy up after its first piece
 * tells the target to drop what it received (CopyChunkReq.abort).
 *
 * Copies wait while the picture is incomplete: a node known from before a
 * restart has not registered yet (until it does or is declared dead), or
 * a registered node's full block report is not through (at most 15 s).
 *
 * Decommissioning: a leaving node's replicas are readable but not good, so
 * its chunks are queued; once none of them lacks good replicas the node is
 * marked decommissioned (committed) and its replicas are forgotten.
 *
 * Nothing is copied or deleted in safe mode; when it ends every chunk is
 * examined. Threads: the loop thread only.
 */
#ifndef KEEL_NN_REPAIR_H
#define KEEL_NN_REPAIR_H

#include "chunkctl.h"
#include "chunkmap.h"
#include "commit.h"
#include "lease.h"
#include "registry.h"
#include "safemode.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct repair;

struct repair_config {
    uv_loop_t *loop;
    struct store *store; /* borrowed, as are the others */
    struct commit *commit;
    struct registry *reg;
    struct chunkmap *cm; /* repair sets its change hook */
    struct chunkctl *ctl;
    struct lease_table *leases;
    const struct safemode *safe;
    uint32_t streams;         /* copies a datanode sends, and receives, at once */
    uint64_t timeout_ms;      /* a copy not done by then goes elsewhere */
    uint32_t call_timeout_ms; /* CommandReq pushes */
    uint64_t seed;            /* placement randomness; 0: random */
};

struct repair_stats {
    uint64_t queued;  /* chunks waiting (replq_queued) */
    uint64_t running; /* copies in flight */
    uint64_t copies_done, copies_failed;
    uint64_t bytes_sent, bytes_saved; /* as the sources reported them */
    uint64_t trimmed;                 /* extra replicas ordered deleted */
};

struct repair *repair_new(const struct repair_config *cfg);
/* Stops scheduling and closes the timer (the loop must run once more). */
void repair_stop(struct repair *rp);
/* Stops (if needed) and frees; calls in flight must have ended. */
void repair_free(struct repair *rp);

/* Periodic work (a few times a second): timeouts, postponed chunks,
 * decommission progress. */
void repair_tick(struct repair *rp, uint64_t now_ms);

/* Node was declared dead: its replicas are forgotten, its copies fail. */
void repair_node_dead(struct repair *rp, uint64_t node);

/* A node registered: chunks waiting for a usable node may go now. */
void repair_node_registered(struct repair *rp, uint64_t node);

/* Safe mode ended: every chunk is examined. */
void repair_scan_all(struct repair *rp);

/* A block report showed node holding chunk at version (a copy's target
 * reporting it ends the copy). */
void repair_replica_reported(struct repair *rp, uint64_t node, uint64_t chunk, uint64_t version,
                             bool corrupt);

/* A source's ReplicateDoneReq. status is 0 or a negative errno; fuzzy: the
 * target installed version - 1. */
void repair_copy_done(struct repair *rp, uint64_t src, uint64_t chunk, uint64_t version, bool fuzzy,
                      uint64_t target, int status, uint64_t bytes_sent, uint64_t bytes_saved);

/* True while a fenced copy of chunk runs: writers must wait (-EAGAIN). */
bool repair_copying(const struct repair *rp, uint64_t chunk);

/*
 * A writer was told to wait for chunk's copy. A whole copy (not a delta,
 * which is short) was started while the file was idle; rather than have
 * the writer wait for the whole chunk to cross the wire, the chunk moves to
 * a new version on its current replicas and the copy is dropped: its
 * source fails it (-ESTALE) or its target is left with a stale replica.
 * The writer goes on at the new version once that is committed, and the
 * next copy is fuzzy, the file being written. Once per copy.
 */
void repair_writer_waits(struct repair *rp, uint64_t chunk);

/*
 * Starts (or, with recommission, ends) decommissioning node: the flag is
 * committed, then the registry and the queue follow. cb gets 0, -ENOENT
 * (unknown node) or a commit error; it runs after the commit, on the loop.
 * Asking for the state a node is in already changes nothing.
 */
typedef void (*repair_decom_fn)(void *arg, int status, uint64_t node);
void repair_decommission(struct repair *rp, uint64_t node, bool recommission, repair_decom_fn cb,
                         void *arg);

/* Chunks node still has to copy away, counted now (a walk of the node's
 * replicas; status shows the count kept in reg_node.decommission_left,
 * refreshed a few times a minute or more often). */
uint64_t repair_decommission_left(struct repair *rp, uint64_t node);

void repair_get_stats(const struct repair *rp, struct repair_stats *out);

#endif
