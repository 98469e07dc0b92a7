/*
 * nncore: what the namenode's request handlers share. nnserver builds it
 * and owns every module it points to; the handler modules (nsops for
 * clients, dnops for datanodes) receive it as their service context. The
 * modules below the handlers (store, nstree, commit, registry, chunkmap,
 * chunkctl, placement, lease, safemode, replq, repair, sizes) know nothing
 * of it.
 *
 * Threads: the loop thread only.
 */
#ifndef KEEL_NN_NNCORE_H
#define KEEL_NN_NNCORE_H

#include "chunkctl.h"
#include "chunkmap.h"
#include "commit.h"
#include "lease.h"
#include "registry.h"
#include "repair.h"
#include "safemode.h"
#include "sizes.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct nn_config {
    const char *meta_dir;
    const char *listen;              /* "host:port"; port 0 picks one */
    uint32_t min_replicas;           /* never above the default replication */
    uint64_t dead_timeout_ms;        /* a silent datanode is dead after this */
    uint64_t heartbeat_ms;           /* told to datanodes */
    uint64_t lease_ms;               /* write lease renewal period */
    uint64_t safe_mode_timeout_ms;   /* safe mode ends after this at the latest */
    uint32_t safe_mode_threshold;    /* percent of known chunks reported */
    uint32_t dn_call_timeout_ms;     /* namenode -> datanode calls */
    uint32_t commit_batch;           /* operations per LMDB transaction (0: default) */
    uint32_t replication_streams;    /* repair copies a datanode sends, and receives, at once */
    uint64_t replication_timeout_ms; /* a repair copy not done by then goes elsewhere */
};

/* Who is at the other end of a connection (its rpc_conn data). */
struct nn_peer {
    uint64_t node_id;   /* registered datanode, or 0 */
    uint64_t client_id; /* client after HelloReq, or 0 */
};

struct nsops;

struct nn_core {
    const struct nn_config *cfg;
    uv_loop_t *loop;
    struct store *store;
    const struct store_settings *settings;
    struct commit *commit;
    struct sizes *sizes;
    struct registry *reg;
    struct chunkmap *cm;
    struct chunkctl *ctl;
    struct lease_table *leases;
    struct repair *repair;
    struct nsops *ns;
    struct safemode safe;
    bool stopping;
};

#endif
