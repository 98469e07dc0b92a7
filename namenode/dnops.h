/*
 * dnops: the datanode-facing service: registration (identity committed to
 * LMDB before the reply; a datanode of another cluster is refused),
 * heartbeats (liveness, capacity, load; replies carry queued commands, or
 * ask a node back from the dead to register again), block reports (full
 * ones bracket the node's replica set; replicas of unknown chunks are
 * ordered deleted; a version above the committed one is adopted; what the
 * chunks need then is the repair module's business, fed by the chunk
 * map's change hook) and replication-done notices (to repair).
 *
 * While the namenode is in safe mode no delete command leaves: orders are
 * queued and go out with the first heartbeat after it ends.
 *
 * Threads: the loop thread only.
 */
#ifndef KEEL_NN_DNOPS_H
#define KEEL_NN_DNOPS_H

#include "nncore.h"
#include "rpc.h"

#include <stddef.h>

/* Handlers; the service context must be the struct nn_core. */
extern const rpc_handler dnops_handlers[];
extern const size_t dnops_nhandlers;

/* Re-evaluates safe mode (after reports, and on a timer for its timeout);
 * when it ends, repair examines every chunk. */
void dnops_check_safe_mode(struct nn_core *core);

#endif
