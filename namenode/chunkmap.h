/*
 * chunkmap: every chunk the store knows, with its version, wanted
 * replication and the replicas datanodes reported (soft state, rebuilt from
 * block reports after a restart, like HDFS's block map).
 *
 * A replica's standing is derived, not stored: it is current when its
 * version equals the chunk's, stale when lower, ahead when higher (the
 * namenode died between setting a version at the datanodes and committing
 * it), and corrupt when reported so. Changing a chunk's version re-derives
 * every replica at once.
 *
 * Full block reports are bracketed by chunkmap_full_begin/end: replicas of
 * the node the report did not mention are dropped at the end. Replicas the
 * namenode records itself (after creating or re-versioning them) count as
 * seen by a report in progress.
 *
 * Health (for Status, fsck and the repair queue) needs to know which nodes
 * are live, which are leaving (decommissioning) and in which domain, and
 * how many failure domains could take a replica: the caller supplies that
 * view.
 *
 * Every change of a chunk's version, replica set or replica states is
 * announced through an optional hook (the repair module re-examines the
 * chunk), after the change and on the loop thread; the hook must not call
 * back into the map.
 *
 * Threads: the loop thread only. Chunks returned are borrowed until removed.
 */
#ifndef KEEL_NN_CHUNKMAP_H
#define KEEL_NN_CHUNKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cm_replica {
    uint64_t node;
    uint64_t version;
    uint64_t gen; /* the node's report generation when last seen */
    bool corrupt;
};

struct cm_chunk {
    uint64_t id;
    uint64_t version;
    uint64_t ino, index;
    uint32_t replication;
    uint32_t nrep, cap;
    struct cm_replica *reps;
};

/* How a block report saw one replica. */
enum cm_report {
    CM_ORPHAN,  /* no such chunk: the replica is garbage */
    CM_CURRENT, /* at the chunk's version */
    CM_STALE,   /* lower version: missed writes */
    CM_AHEAD,   /* higher version: adopt it */
    CM_CORRUPT, /* a checksum failed there */
};

struct chunkmap;

struct chunkmap *chunkmap_new(void);
void chunkmap_free(struct chunkmap *cm);

/* A chunk the store has (loaded at start, or just committed). Replaces the
 * version and replication of a chunk already present. */
struct cm_chunk *chunkmap_add(struct chunkmap *cm, uint64_t id, uint64_t version,
                              uint32_t replication, uint64_t ino, uint64_t index);

struct cm_chunk *chunkmap_get(const struct chunkmap *cm, uint64_t id);

/* The chunk was deleted from the store: forget it and its replicas. */
void chunkmap_remove(struct chunkmap *cm, uint64_t id);

/* The chunk's committed version changed. */
void chunkmap_set_version(struct chunkmap *cm, struct cm_chunk *c, uint64_t version);

/* Node holds the chunk at version (now, as the namenode itself arranged). */
void chunkmap_set_replica(struct chunkmap *cm, struct cm_chunk *c, uint64_t node, uint64_t version);

/* Node no longer holds the chunk (or must not be trusted to). */
void chunkmap_drop_replica(struct chunkmap *cm, struct cm_chunk *c, uint64_t node);

/* Forgets every replica of node (it died or left); returns how many. */
size_t chunkmap_drop_node(struct chunkmap *cm, uint64_t node);

/* Node's replica failed a checksum. Returns false if node has no replica. */
bool chunkmap_mark_corrupt(struct chunkmap *cm, struct cm_chunk *c, uint64_t node);

/* A block report entry (full or incremental). */
enum cm_report chunkmap_report(struct chunkmap *cm, uint64_t node, uint64_t chunk_id,
                               uint64_t version, bool corrupt);

/* An incremental report says node deleted its replica. */
void chunkmap_report_deleted(struct chunkmap *cm, uint64_t node, uint64_t chunk_id);

void chunkmap_full_begin(struct chunkmap *cm, uint64_t node);
/* Ends a full report; returns how many replicas of node were dropped. */
size_t chunkmap_full_end(struct chunkmap *cm, uint64_t node);

static inline bool cm_replica_current(const struct cm_chunk *c, const struct cm_replica *r)
{
    return !r->corrupt && r->version == c->version;
}

/* Chunks known; chunks with at least one current replica reported. */
size_t chunkmap_count(const struct chunkmap *cm);
size_t chunkmap_reported(const struct chunkmap *cm);
/* Replicas recorded on node. */
size_t chunkmap_node_replicas(const struct chunkmap *cm, uint64_t node);

/* Iterates: for (size_t i = 0; (c = chunkmap_next(cm, &i));) ... */
struct cm_chunk *chunkmap_next(const struct chunkmap *cm, size_t *iter);

/* Iterates over the chunks node holds a replica of (in any state); the
 * map must not change during the iteration. */
struct cm_chunk *chunkmap_node_next(const struct chunkmap *cm, uint64_t node, size_t *iter);

/* Runs fn(arg, chunk id) after every change of a chunk (NULL: none). */
void chunkmap_set_hook(struct chunkmap *cm, void (*fn)(void *arg, uint64_t chunk_id), void *arg);

/* A node as the caller sees it. */
enum cm_node_state {
    CM_NODE_GONE,    /* dead, unknown, decommissioned: its replicas do not count */
    CM_NODE_LIVE,    /* serving, and staying */
    CM_NODE_LEAVING, /* serving, but decommissioning: its replicas must move */
};

/* The caller's view of nodes: each node's state and failure domain (NULL
 * when the node is unknown), and how many failure domains have a live
 * node, which bounds how well any chunk can be spread. */
struct cm_view {
    enum cm_node_state (*node)(void *ctx, uint64_t id, const char **domain);
    void *ctx;
    uint32_t live_domains;
};

struct cm_chunk_health {
    uint32_t good;     /* current replicas on live nodes that stay */
    uint32_t readable; /* current replicas on live or leaving nodes */
    uint32_t leaving;  /* current replicas on leaving nodes */
    uint32_t stale;    /* stale replicas on live or leaving nodes */
    uint32_t corrupt;  /* corrupt replicas on live or leaving nodes */
    uint32_t domains;  /* distinct failure domains of the good replicas */
    /* The good replicas share a failure domain although more domains are
     * alive: min(good, live domains) > domains. */
    bool misplaced;
};

void chunkmap_chunk_health(const struct cm_chunk *c, const struct cm_view *v,
                           struct cm_chunk_health *h);

struct cm_health {
    uint64_t chunks;
    uint64_t healthy;          /* enough good replicas, well placed */
    uint64_t under_replicated; /* readable, but fewer good ones than wanted */
    uint64_t missing;          /* no readable replica */
    uint64_t misplaced;
    uint64_t stale;   /* stale replicas waiting for deletion or resync */
    uint64_t corrupt; /* corrupt replicas waiting for deletion */
};

/* Counts over every chunk: a walk of the whole map (at a million chunks,
 * a good fraction of a second of the loop). */
void chunkmap_health(const struct chunkmap *cm, const struct cm_view *v, struct cm_health *out);

/* Changes so far: bumped by every change of any chunk (added, removed, its
 * version or its replicas). Equal counts: nothing changed in between. */
uint64_t chunkmap_changes(const struct chunkmap *cm);

#define CM_HEALTH_DUTY     10u      /* a remembered health is kept this many times its cost */
#define CM_HEALTH_MIN_COST 1000000u /* ns of CPU: cheaper counts are never kept stale */

/* A chunkmap_health result remembered for chunkmap_health_recent; starts
 * zeroed; owned by the caller. */
struct cm_health_memo {
    struct cm_health h;
    uint64_t changes, view_sig; /* what it was counted from */
    uint64_t at_ns;             /* when (the caller's clock) */
    uint64_t cost_ns;           /* the loop thread's CPU time it took */
    bool valid;
};

/*
 * The health counts for Status, without a walk per call: m's counts are
 * reused when neither the map (chunkmap_changes) nor the view (view_sig,
 * the caller's digest of it) changed since they were counted, and also,
 * while chunks keep changing, until they are CM_HEALTH_DUTY times as old
 * as the walk took, so that frequent callers on a large map hold the loop
 * a tenth of the time at most (at a million chunks the counts may then be
 * a few seconds old). The walk's cost is the thread's CPU time, so that
 * being descheduled does not stretch the window, and a walk that cost
 * less than CM_HEALTH_MIN_COST opens none: small maps always get fresh
 * counts. now_ns is monotonic. Fills out; returns true when it walked.
 */
bool chunkmap_health_recent(const struct chunkmap *cm, const struct cm_view *v, uint64_t view_sig,
                            uint64_t now_ns, struct cm_health_memo *m, struct cm_health *out);

#endif
