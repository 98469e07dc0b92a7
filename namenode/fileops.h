/*
 * fileops: the client-facing data-path service: chunk locations
 * (GetChunksReq, allocating on write), write pipeline recovery
 * (RecoverChunkReq), file growth (ExtendReq), bad replica reports and the
 * write lease calls (renew, release); and, for the lease table, the two
 * actions it needs: recalling a lease from its holder over the holder's
 * connection, and fencing the old holder's chunks at the datanodes.
 *
 * Every request that writes takes the file's write lease first (lease.h).
 * A growing size without ExtendReq.durable is answered once it is visible
 * (sizes.h) and committed a few milliseconds later; with durable, after
 * its commit. Chunks being re-replicated are not handed out for writing
 * or recovered (-EAGAIN); a recovery naming replicas as failed never takes
 * a chunk below min-replicas (-EIO, nothing changes), and one for an old
 * version is refused with -ESTALE (the client refetches).
 * Threads: the loop thread only.
 */
#ifndef KEEL_NN_FILEOPS_H
#define KEEL_NN_FILEOPS_H

#include "lease.h"
#include "nncore.h"
#include "rpc.h"

#include <stddef.h>

/* Handlers; the service context must be the struct nn_core. */
extern const rpc_handler fileops_handlers[];
extern const size_t fileops_nhandlers;

/* The lease table's recall and fence actions, working on core. */
struct lease_ops fileops_lease_ops(struct nn_core *core);

/* Most chunks one GetChunksReq may span. */
#define FILEOPS_MAX_CHUNKS 4096u

#endif
