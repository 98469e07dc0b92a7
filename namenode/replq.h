/*
 * replq: the re-replication queue and the copies in flight, as pure
 * bookkeeping: no I/O, no clock of its own, no idea what a chunk needs. The
 * repair module decides that, and asks this one what comes next and
 * whether a datanode has a free copy stream.
 *
 * A chunk has one entry while it needs attention:
 *
 *   QUEUED (in its class, by age) --replq_start--> RUNNING (copies in flight)
 *   QUEUED --replq_postpone--> POSTPONED --replq_wake--> QUEUED
 *   RUNNING --its last copy ends (replq_end)--> IDLE: the caller looks at the
 *                                  chunk again, queues it (replq_push) or
 *                                  removes it
 *   any state --replq_remove--> (gone)
 *
 * Classes: 0 is served first. Within a class the oldest entry goes first;
 * an entry keeps the time it was first queued until it is removed, also
 * when it moves to another class, is postponed or runs.
 *
 * Streams: a datanode sends at most `streams` copies and receives at most
 * `streams` copies at a time; replq_start refuses copies past either limit.
 *
 * Failure memory: a copy that failed marks its target (and its source, when
 * the source was at fault) as nodes to avoid for that chunk, so the next
 * attempt goes elsewhere; the memory lives as long as the entry.
 *
 * Memory: one entry per chunk needing repair (bounded by the chunk map).
 * Threads: the loop thread only.
 */
#ifndef KEEL_NN_REPLQ_H
#define KEEL_NN_REPLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPLQ_MAX_COPIES 4u /* copies of one chunk at a time */
#define REPLQ_MAX_AVOID  6u /* failed nodes remembered per chunk */

struct replq;

struct replq_copy {
    uint64_t src, tgt;
    uint64_t version; /* the version copied; 0 until commanded */
    uint64_t sent_ms; /* when commanded; 0 before */
    bool delta;       /* the target holds an older version of the chunk */
    bool fuzzy;       /* writes go on meanwhile: the target ends up stale */
    bool yielding;    /* a writer came: the chunk is being moved past it */
};

/* Names one copy. */
struct replq_ref {
    uint64_t chunk, src, tgt;
};

enum replq_outcome {
    REPLQ_DONE,          /* the target has the replica */
    REPLQ_TARGET_FAILED, /* avoid the target next time */
    REPLQ_SOURCE_FAILED, /* avoid the source next time */
    REPLQ_BOTH_FAILED,   /* no word (a timeout): avoid both */
    REPLQ_CANCELLED,     /* nobody's fault (the chunk changed): avoid neither */
};

/* nclasses >= 1; streams >= 1. */
struct replq *replq_new(uint32_t nclasses, uint32_t streams);
void replq_free(struct replq *q);

/*
 * Queues chunk in class cls (clamped to the last class), or moves a queued
 * or postponed entry there keeping its age. A RUNNING entry is left alone.
 */
void replq_push(struct replq *q, uint64_t chunk, uint32_t cls, uint64_t now_ms);

/* Forgets chunk in any state; the streams of its copies are freed. */
void replq_remove(struct replq *q, uint64_t chunk);

/* A queued chunk that cannot be served now: skipped until until_ms. */
void replq_postpone(struct replq *q, uint64_t chunk, uint64_t until_ms);

/* Postponed entries due by now_ms (every one, with all) go back to their
 * class; returns how many. */
size_t replq_wake(struct replq *q, uint64_t now_ms, bool all);

/* Iteration over QUEUED entries in service order. The entry last returned
 * may be started, postponed or removed before the next call; no other
 * change is allowed during an iteration. */
struct replq_iter {
    uint32_t cls;
    void *next;
    bool begun;
};
bool replq_iter_next(struct replq *q, struct replq_iter *it, uint64_t *chunk, uint32_t *cls);

/*
 * QUEUED or POSTPONED -> RUNNING with the n copies given (1..REPLQ_MAX_COPIES;
 * copied). Returns 0, -ENOENT (no such entry), -EALREADY (running), -EINVAL
 * (bad n, or a copy from a node to itself), or -EBUSY (a node would pass its
 * stream limit: nothing changed).
 */
int replq_start(struct replq *q, uint64_t chunk, const struct replq_copy *copies, size_t n);

bool replq_is_running(const struct replq *q, uint64_t chunk);
bool replq_is_queued(const struct replq *q, uint64_t chunk); /* QUEUED or POSTPONED */

/* A running copy, to record its version and send time; NULL if none. */
struct replq_copy *replq_find(struct replq *q, uint64_t chunk, uint64_t src, uint64_t tgt);

/* The copies of a running chunk into out (room for REPLQ_MAX_COPIES). */
size_t replq_copies(const struct replq *q, uint64_t chunk, struct replq_copy *out);

/*
 * Ends one copy with its outcome, freeing its streams and remembering the
 * nodes to avoid. Returns true when it was the chunk's last copy: the entry
 * is IDLE then. false also when there was no such copy.
 */
bool replq_end(struct replq *q, uint64_t chunk, uint64_t src, uint64_t tgt,
               enum replq_outcome outcome);

/* Nodes to avoid for chunk into out (room for REPLQ_MAX_AVOID); count. */
size_t replq_avoid(const struct replq *q, uint64_t chunk, uint64_t *out);

/* Attempts of chunk that failed since it last succeeded or was queued. */
uint32_t replq_failures(const struct replq *q, uint64_t chunk);

/* Copies a node sends and receives now. */
uint32_t replq_out(const struct replq *q, uint64_t node);
uint32_t replq_in(const struct replq *q, uint64_t node);
uint32_t replq_streams(const struct replq *q);

/*
 * Copies sent before now_ms - timeout_ms (expired), or involving node as
 * source or target (node_copies), into a malloc'd array the caller frees;
 * *n gets the count. NULL when there are none.
 */
struct replq_ref *replq_expired(const struct replq *q, uint64_t now_ms, uint64_t timeout_ms,
                                size_t *n);
struct replq_ref *replq_node_copies(const struct replq *q, uint64_t node, size_t *n);

/* Entries QUEUED or POSTPONED; copies RUNNING. */
size_t replq_queued(const struct replq *q);
size_t replq_running(const struct replq *q);

#endif
