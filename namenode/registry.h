/*
 * registry: the datanodes the namenode knows. Identity (id, address,
 * failure domain, capacity, decommission flags) is persisted in the store's
 * nodes database by the caller; this module keeps what changes every few
 * seconds in memory: liveness, capacity and load from heartbeats, the
 * connection the node registered on (the namenode calls the node on it),
 * and the commands waiting for its next heartbeat.
 *
 * States of a node (values equal keel.proto's NodeState):
 *
 *   UNKNOWN (known from the store, not seen since start)
 *      --registers--> ALIVE --silent for dead_timeout--> DEAD
 *   UNKNOWN --not seen for dead_timeout after start--> DEAD
 *   DEAD --registers again--> ALIVE
 *   ALIVE --decommission--> DECOMMISSIONING --drained--> DECOMMISSIONED
 *   DECOMMISSIONING, DECOMMISSIONED --recommission--> ALIVE
 *
 * A DEAD node's replicas are forgotten (the caller drops them from the
 * chunk map), so a dead node that heartbeats again is told to register
 * again: its full block report then says what it holds now. The same goes
 * for a decommissioned node that is recommissioned. Decommissioning flags
 * are kept in the store (set by the caller) and decide the state a node
 * registers into; a decommissioning node that goes silent is DEAD like any
 * other, a decommissioned one stays DECOMMISSIONED.
 *
 * A node's connection closing does not make it dead: it stays ALIVE until
 * the dead timeout, but is no longer picked for new replicas.
 *
 * Commands waiting for a node's next heartbeat: deletions (one per chunk,
 * the highest version wins) and replication copies (few: bounded by the
 * caller's per-node stream limit).
 *
 * Threads: the loop thread only.
 */
#ifndef KEEL_NN_REGISTRY_H
#define KEEL_NN_REGISTRY_H

#include "rpc.h"
#include "store.h"
#include "u64map.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum reg_state {
    REG_UNKNOWN = 0,
    REG_ALIVE = 1,
    REG_DEAD = 2,
    REG_DECOMMISSIONING = 3,
    REG_DECOMMISSIONED = 4,
};

/* Command kinds (values equal keel.proto's CommandKind). */
#define REG_CMD_DELETE    1u
#define REG_CMD_REPLICATE 4u

struct reg_cmd {
    uint32_t kind;
    uint64_t chunk_id;
    uint64_t version;
    uint64_t target; /* REPLICATE: the node to copy to */
    bool delta;      /* REPLICATE: the target holds an older version */
    bool fuzzy;      /* REPLICATE: writes may go on; the target gets version - 1 */
};

struct reg_node {
    uint64_t id;
    char addr[STORE_ADDR_MAX + 1];
    char domain[STORE_DOMAIN_MAX + 1];
    uint64_t capacity, used; /* bytes, from the last heartbeat */
    uint32_t load, copies;
    bool full;      /* the last heartbeat reported a write failing with ENOSPC */
    uint32_t flags; /* STORE_NODE_* */
    enum reg_state state;
    uint64_t last_seen_ms;      /* monotonic: last registration or heartbeat */
    rpc_conn *conn;             /* referenced; NULL when not connected */
    bool reregister;            /* ask it to register again (and report in full) */
    bool reported;              /* its full report since it registered is complete */
    uint64_t registered_ms;     /* monotonic: its last registration */
    bool no_push;               /* it answered CommandReq with -EOPNOTSUPP */
    uint64_t decommission_left; /* chunks still to copy away (DECOMMISSIONING) */
    struct u64map deletes;      /* chunk id -> struct reg_cmd, waiting to be sent */
    struct reg_cmd *copy_cmds;  /* REPLICATE commands waiting to be sent */
    size_t ncopies, copies_cap;
    /* The full report in progress (for its log line): when its first batch
     * arrived, batches and replicas so far, time spent handling them. */
    uint64_t report_start_ns, report_busy_ns, report_batches, report_replicas;
};

struct registry;

struct registry *registry_new(uint64_t dead_timeout_ms);
/* Frees every node and drops the connection references. */
void registry_free(struct registry *r);

/* A node read from the store at start-up: UNKNOWN until it registers. */
void registry_load(struct registry *r, const struct store_node *n, uint64_t now_ms);

/* The node, or NULL. Borrowed until the registry is freed. */
struct reg_node *registry_get(const struct registry *r, uint64_t id);

/*
 * A node registered (its identity is committed): records it, marks it
 * ALIVE and binds conn (referenced; a previous connection of the node is
 * released). Returns the node.
 */
struct reg_node *registry_register(struct registry *r, const struct store_node *n, rpc_conn *conn,
                                   uint64_t now_ms);

/* conn closed: if it is node id's connection, forget it. */
void registry_detach(struct registry *r, uint64_t id, const rpc_conn *conn);

struct reg_heartbeat {
    uint64_t capacity, used;
    uint32_t load, copies;
    bool full;
};

/*
 * A heartbeat from node id on conn. Returns the node, or NULL when the node
 * must register again: it is unknown, registered on another connection, was
 * DEAD (its replicas were forgotten) or was recommissioned after it drained.
 */
struct reg_node *registry_heartbeat(struct registry *r, uint64_t id, const rpc_conn *conn,
                                    const struct reg_heartbeat *hb, uint64_t now_ms);

/* Marks silent nodes DEAD; fn (may be NULL) runs for each one that died now. */
void registry_tick(struct registry *r, uint64_t now_ms, void (*fn)(struct reg_node *n, void *arg),
                   void *arg);

/* Orders node id to delete its replica of chunk_id (any version <= version).
 * Repeated orders for one chunk keep the highest version. */
void registry_order_delete(struct registry *r, uint64_t id, uint64_t chunk_id, uint64_t version);

/* Queues a REPLICATE command (cmd is copied) for node id's next heartbeat;
 * the same copy queued twice is sent once. */
void registry_order_copy(struct registry *r, uint64_t id, const struct reg_cmd *cmd);

/* Withdraws a queued copy of chunk_id to target that was not sent yet. */
void registry_cancel_copy(struct registry *r, uint64_t id, uint64_t chunk_id, uint64_t target);

/* Drops every command waiting for node id (it died: what it holds will be
 * learnt again from its next full report). */
void registry_drop_commands(struct registry *r, uint64_t id);

/* Takes up to max waiting commands of n into out, copies first; returns
 * how many. */
size_t registry_take_commands(struct reg_node *n, struct reg_cmd *out, size_t max);

/* The store's decommissioning flags of node id changed to flags (committed
 * by the caller): updates its state. Returns the node, or NULL. */
struct reg_node *registry_set_flags(struct registry *r, uint64_t id, uint32_t flags);

/* ALIVE or DECOMMISSIONING: its replicas may be read. */
bool registry_node_live(const struct reg_node *n);

/* Iterates: for (size_t i = 0; (n = registry_next(r, &i));) ... */
struct reg_node *registry_next(const struct registry *r, size_t *iter);

size_t registry_count(const struct registry *r);

#endif
