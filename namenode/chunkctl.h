/*
 * chunkctl: every change to a chunk that involves datanodes, done in the
 * order that keeps metadata crash-safe: first the datanodes, then the LMDB
 * commit, then the in-memory chunk map, then the caller's completion.
 *
 *   allocation   CreateReplicaReq (version 1) to the placed nodes in
 *                parallel; at least min(min_replicas, replication) must
 *                succeed; then commit the chunk and its file map entry.
 *                Concurrent requests for one missing chunk share one
 *                allocation. Chunk ids come from ranges reserved in LMDB
 *                beforehand, so an id a datanode saw is never reused.
 *   version bump SetVersionReq (v -> v + 1) to the current replicas on
 *                live nodes (recovery drops the failed ones first); the
 *                new version commits if at least one succeeded; replicas
 *                that failed are left behind at v, i.e. stale.
 *   trim         TrimReplicaReq to the current replicas; the caller commits
 *                the new version together with the file's new size, then
 *                calls chunkctl_trim_finish.
 *   adoption     a block report shows a version above LMDB's (the namenode
 *                died between the datanodes and the commit): commit it.
 *   deletion     chunks dropped from LMDB are forgotten and their replicas
 *                ordered deleted; stale and corrupt replicas are ordered
 *                deleted once the chunk has enough good ones (current, on
 *                live nodes that stay); current replicas beyond the
 *                replication factor are ordered deleted keeping the best
 *                spread over failure domains, the fullest node first.
 *
 * Version changes of one chunk run one at a time, in arrival order.
 *
 * Completions: a function that takes a callback and returns 0 runs the
 * callback exactly once, on the loop thread, possibly before it returns;
 * callers make the call their last step. On an error return the callback
 * never runs. Threads: the loop thread only.
 */
#ifndef KEEL_NN_CHUNKCTL_H
#define KEEL_NN_CHUNKCTL_H

#include "chunkmap.h"
#include "commit.h"
#include "registry.h"
#include "store.h"

#include <stdint.h>
#include <uv.h>

struct chunkctl;

struct chunkctl_config {
    uv_loop_t *loop;
    struct store *store; /* borrowed, as are the others */
    struct commit *commit;
    struct registry *reg;
    struct chunkmap *cm;
    uint32_t min_replicas;    /* a write needs this many current replicas */
    uint32_t call_timeout_ms; /* for each datanode call */
    uint64_t seed;            /* placement randomness */
};

struct chunkctl *chunkctl_new(const struct chunkctl_config *cfg);
/* Frees the module; run the loop until nothing is in flight first. */
void chunkctl_free(struct chunkctl *ctl);

typedef void (*chunkctl_done_fn)(void *arg, int status);

/*
 * Makes sure ino has a chunk at index. cb gets 0 once the chunk is in LMDB
 * and the chunk map (allocated now or by someone else), -ENOSPC when the
 * datanodes are full, -EIO when too few replicas could be created,
 * -ENOENT when ino vanished, or a commit error.
 */
int chunkctl_alloc(struct chunkctl *ctl, uint64_t ino, uint64_t index, uint32_t replication,
                   chunkctl_done_fn cb, void *arg);

/* True while chunk_id is being allocated (its replicas may be reported
 * before it is committed; they are not orphans). */
bool chunkctl_allocating(const struct chunkctl *ctl, uint64_t chunk_id);

struct chunkctl_bump_result {
    uint64_t version; /* the new version */
    uint32_t targets; /* replicas asked */
    uint32_t ok;      /* replicas now at the new version */
};

/*
 * Moves a chunk to a new version on its current live replicas, except the
 * nodes in drop (borrowed for the call). cb gets 0 and the result once the
 * new version is committed, -EIO if no replica took it (nothing changed),
 * -ENOENT if the chunk is gone, -ENODATA if it has no current replica on a
 * live node besides those dropped, or a commit error.
 */
typedef void (*chunkctl_bump_fn)(void *arg, int status, const struct chunkctl_bump_result *res);
int chunkctl_bump(struct chunkctl *ctl, uint64_t chunk_id, const uint64_t *drop, size_t ndrop,
                  chunkctl_bump_fn cb, void *arg);

/*
 * First half of a shrink: cuts the chunk's current live replicas to length
 * bytes at a new version. cb gets 0 and a handle, or an error as for
 * chunkctl_bump (the handle is then NULL). With 0 the chunk stays locked
 * until the caller has committed (old, new version) and called
 * chunkctl_trim_finish with the commit's status.
 */
struct chunkctl_change; /* a version change in progress */
typedef void (*chunkctl_trim_fn)(void *arg, int status, struct chunkctl_change *t);
int chunkctl_trim(struct chunkctl *ctl, uint64_t chunk_id, uint64_t length, chunkctl_trim_fn cb,
                  void *arg);
uint64_t chunkctl_trim_old_version(const struct chunkctl_change *t);
uint64_t chunkctl_trim_new_version(const struct chunkctl_change *t);
/* Ends a trim (frees t): with commit_status 0 the map takes the new version. */
void chunkctl_trim_finish(struct chunkctl *ctl, struct chunkctl_change *t, int commit_status);

/* A block report saw chunk_id at a version above the committed one. */
void chunkctl_adopt(struct chunkctl *ctl, uint64_t chunk_id, uint64_t version);

/* Chunks deleted from LMDB: forget them, order their replicas deleted. */
void chunkctl_forget(struct chunkctl *ctl, const struct store_chunk_list *freed);

/* True while a version change of chunk_id is queued or running. */
bool chunkctl_busy(const struct chunkctl *ctl, uint64_t chunk_id);

/*
 * Orders c's stale and corrupt replicas on live nodes deleted, and forgets
 * them, if c has enough good replicas and no version change runs; returns
 * how many went. v is a view from chunkctl_view (borrowed). The caller
 * checks safe mode.
 */
size_t chunkctl_collect(struct chunkctl *ctl, struct cm_chunk *c, const struct cm_view *v);

/*
 * Orders the good replicas of c beyond its replication factor deleted and
 * forgets them (see placement_choose_excess for which go); none while a
 * version change runs. Replicas on leaving nodes are never trimmed. Returns
 * how many went. The caller checks safe mode and running copies.
 */
size_t chunkctl_drop_excess(struct chunkctl *ctl, struct cm_chunk *c);

/* Registry-backed view of nodes for chunkmap health: ALIVE nodes are live,
 * DECOMMISSIONING ones leaving, the others gone. Building it counts the
 * live domains (a walk of the registry): build one per batch of chunks,
 * and use it at once (it does not follow later registry changes). */
struct cm_view chunkctl_view(struct chunkctl *ctl);

/* A digest of what chunkctl_view says of every node (state and domain) and
 * of the live domains: equal digests, the same view (for
 * chunkmap_health_recent). A walk of the registry. */
uint64_t chunkctl_view_digest(struct chunkctl *ctl);

/* Allocations and version changes in flight. */
size_t chunkctl_in_flight(const struct chunkctl *ctl);

#endif
