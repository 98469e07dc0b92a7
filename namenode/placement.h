/*
 * placement: where the replicas of a chunk go. Pure policy: no I/O, no
 * state, deterministic for a given random source, so it can be tested on
 * many topologies.
 *
 * The rules, in order:
 *   1. Only usable nodes: alive, not full, not decommissioning, with room
 *      for one more chunk, not excluded (e.g. already holding the chunk).
 *   2. Distinct failure domains: each pick comes from a domain holding none
 *      of the chunk's replicas yet (counting `existing` ones). When no such
 *      domain is left, the pick comes from the least-used domains (the best
 *      spread) and the result is marked misplaced.
 *   3. Within the allowed nodes, a weighted random pick by free space: more
 *      free space means proportionally more chunks, but an empty node added
 *      to a full cluster is not handed every new chunk at once (which a
 *      greedy "most free first" would do, making it a hot spot).
 *
 * Fewer than `replication` nodes are returned when fewer are usable.
 *
 * The reverse question, which replicas of an over-replicated chunk go, has
 * its own rules: never lose a failure domain that can be kept (remove from
 * the most crowded domain first), and among equals remove from the fullest
 * node (least free space), so that trimming also evens out disk use.
 */
#ifndef KEEL_NN_PLACEMENT_H
#define KEEL_NN_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct placement_node {
    uint64_t id;
    const char *domain;
    uint64_t capacity; /* bytes */
    uint64_t used;     /* bytes */
    bool alive;        /* heartbeating and connected */
    bool full;         /* reported a write failing with ENOSPC */
    bool decommissioning;
};

struct placement_req {
    uint32_t replication; /* how many replicas the chunk should have in all */
    uint64_t chunk_size;  /* the room a node needs */
    /* Nodes already holding the chunk: not picked again, and their
     * domains count as used. */
    const uint64_t *existing;
    size_t nexisting;
    /* Nodes that must not be picked (failed just now). */
    const uint64_t *exclude;
    size_t nexclude;
};

/* xorshift64* state; any non-zero seed. */
struct placement_rng {
    uint64_t s;
};

/*
 * Picks up to req->replication - nexisting nodes into out (room for that
 * many), in pick order. *nout gets the count, *misplaced whether the
 * chunk's replicas (existing and new) share a failure domain. Returns 0,
 * or -EINVAL for a replication of 0.
 */
int placement_choose(const struct placement_node *nodes, size_t n, const struct placement_req *req,
                     struct placement_rng *rng, uint64_t *out, size_t *nout, bool *misplaced);

/*
 * Chooses which of the n holders of a chunk's replicas to remove so that
 * keep of them remain. Writes the ids to remove into out (room for n) and
 * returns how many (0 when n <= keep). Deterministic.
 */
size_t placement_choose_excess(const struct placement_node *holders, size_t n, size_t keep,
                               uint64_t *out);

/* True if the node may receive a new replica of chunk_size bytes. */
bool placement_usable(const struct placement_node *node, uint64_t chunk_size);

#endif
