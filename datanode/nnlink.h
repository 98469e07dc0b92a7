/*
 * nnlink: the datanode's link to the namenode.
 *
 * One rpc connection carries both directions: this datanode's calls
 * (register, block reports, heartbeats, ReplicateDone) and the namenode's
 * calls to it (CreateReplica, SetVersion, TrimReplica, and CommandReq, which
 * pushes commands at once instead of in a heartbeat reply), which the
 * connection's handler table serves.
 *
 *   DOWN --register--> REGISTERING --reply--> REPORTING --last batch--> UP
 *     ^                     |                     |                      |
 *     +--- failure, lost connection, reregister, retry after a delay ----+
 *
 * A datanode without a VERSION file registers with node id 0, writes the
 * identity it is given, then registers again as that node. After every
 * registration the
 * whole replica table goes out in BlockReportReq batches; only then do
 * heartbeats and incremental reports (new, deleted, corrupt and
 * re-versioned replicas, queued meanwhile) flow. Commands in heartbeat and
 * report replies and in CommandReq are executed through one table {kind,
 * name, handler}. While
 * the namenode is unreachable the datanode keeps serving; registration is
 * retried with backoff.
 *
 * A namenode that refuses this datanode's identity (another cluster, a
 * chunk size that differs) is fatal: the fatal hook is called once.
 *
 * Threads: loop thread; the VERSION write runs on the pool.
 */
#ifndef KEEL_DATANODE_NNLINK_H
#define KEEL_DATANODE_NNLINK_H

#include "chunkstore.h"
#include "replicas.h"
#include "replicate.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct nnlink;

struct nnlink_config {
    uv_loop_t *loop;
    const char *namenode;  /* "host:port" */
    const char *addr;      /* this datanode's data service address */
    const char *domain;    /* failure domain */
    uint64_t capacity;     /* bytes to report; 0: the filesystem's */
    struct chunkstore *cs; /* everything below is borrowed */
    struct replicas *reps;
    struct replicate *repl;
    /* Requests in progress and copies running, for heartbeats. */
    uint32_t (*load)(void *ctx);
    uint32_t (*copies)(void *ctx);
    /* The namenode refused this datanode for good (err). */
    void (*fatal)(void *ctx, int err, const char *why);
    void *ctx;
};

/* Starts registering. Returns 0 or -EINVAL (bad namenode address). */
int nnlink_start(const struct nnlink_config *cfg, struct nnlink **out);

/* Queues an incremental report of a replica (deleted: it is gone). */
void nnlink_report(struct nnlink *nn, const struct replica_info *ri, bool deleted);
/* A write hit a disk error; -ENOSPC is announced in the next heartbeat. */
void nnlink_disk_error(struct nnlink *nn, int err);
/* Tells the namenode how a replication copy ended. */
void nnlink_replicate_done(struct nnlink *nn, const struct replicate_outcome *o);

/* Closes the connection and stops every timer; later calls are ignored. */
void nnlink_stop(struct nnlink *nn);
/* Frees; after the loop has stopped. */
void nnlink_free(struct nnlink *nn);

#endif
