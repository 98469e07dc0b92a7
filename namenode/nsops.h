/*
 * nsops: the client-facing namespace service: HelloReq (which binds a
 * client id to its connection, for lease recalls), stat, mkdir, create,
 * readdir, unlink, rmdir, rename, link, symlink, readlink, setattr, statfs,
 * status and decommission.
 *
 * Reads run in LMDB read transactions on the loop thread; the sizes and
 * times they show include sizes grown but not committed yet (sizes.h).
 * Every mutation goes through the group commit and is answered only from
 * its completion, after its transaction committed; chunks it freed are
 * then forgotten and their replicas ordered deleted. Size changes take the
 * write lease first, and a shrink trims the last partial chunk at the
 * datanodes before its commit; setattr and truncating creates hold the
 * inode's grown size so that it commits before them (and is dropped when
 * they set the size). Status counts come from the chunk map's health and
 * the repair queue; decommissioning is repair's (repair_decommission).
 *
 * Threads: the loop thread only.
 */
#ifndef KEEL_NN_NSOPS_H
#define KEEL_NN_NSOPS_H

#include "nncore.h"
#include "rpc.h"

#include <stddef.h>
#include <stdint.h>

struct nsops *nsops_new(struct nn_core *core);
/* Drops every client's connection reference. */
void nsops_free(struct nsops *ns);

/* Handlers; the service context must be the struct nn_core. */
extern const rpc_handler nsops_handlers[];
extern const size_t nsops_nhandlers;

/* The connection client_id said hello on, or NULL. Borrowed. */
rpc_conn *nsops_client_conn(const struct nsops *ns, uint64_t client_id);

/* A connection closed: forget it as client_id's. */
void nsops_conn_closed(struct nsops *ns, uint64_t client_id, const rpc_conn *conn);

#endif
