/*
 * dnops: see dnops.h.
 */
#include "dnops.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMMANDS     256u /* commands per heartbeat or report reply */
#define MAX_VERSION_LEAD 16u  /* a report ahead by more is not believed */

static void reply_err(rpc_req *req, int r)
{
    rpc_reply_error(req, r, "%s", err_str(r));
}

/* Room for the commands of one reply. Strings point into the registry. */
struct cmdbuf {
    Keel__Command cmds[MAX_COMMANDS];
    Keel__Command *ptrs[MAX_COMMANDS];
    Keel__Replica targets[MAX_COMMANDS];
};

/* Fills b with up to MAX_COMMANDS of n's waiting commands (none in safe
 * mode); returns how many. A copy whose target is gone is dropped (the
 * copy times out and goes elsewhere). */
static size_t take_commands(struct nn_core *core, struct reg_node *n, struct cmdbuf *b)
{
    struct reg_cmd rc[MAX_COMMANDS];
    size_t got, k = 0;

    if (core->safe.on)
        return 0;
    got = registry_take_commands(n, rc, MAX_COMMANDS);
    for (size_t i = 0; i < got; i++) {
        Keel__Command *c = &b->cmds[k];

        keel__command__init(c);
        c->kind = (Keel__CommandKind)rc[i].kind;
        c->chunk_id = rc[i].chunk_id;
        c->version = rc[i].version;
        if (rc[i].kind == REG_CMD_REPLICATE) {
            struct reg_node *t = registry_get(core->reg, rc[i].target);

            if (!t)
                continue;
            keel__replica__init(&b->targets[k]);
            b->targets[k].node_id = t->id;
            b->targets[k].addr = t->addr;
            b->targets[k].domain = t->domain;
            c->target = &b->targets[k];
            c->delta = rc[i].delta;
            c->fuzzy = rc[i].fuzzy;
        }
        b->ptrs[k] = c;
        k++;
    }
    if (k)
        log_debug("dnops: %zu commands to datanode %" PRIu64, k, n->id);
    return k;
}

/* ------------------------------------------------------------- register */

struct regop {
    struct commit_op op;
    struct nn_core *core;
    struct store *store;
    rpc_req *req;
    struct store_node node;
};

static int reg_apply(MDB_txn *txn, struct commit_op *op)
{
    struct regop *g = list_entry(op, struct regop, op);

    return store_node_register(g->store, txn, &g->node);
}

static void reg_done(struct commit_op *op, int status)
{
    struct regop *g = list_entry(op, struct regop, op);
    struct nn_core *core = g->core;
    struct nn_peer *peer = rpc_conn_data(g->req->conn);
    /* The datanode may have hung up (or the namenode begun to stop) while
     * the commit ran: its connection is closed then, and the registry must
     * not hold a reference to it that no close will drop. The node counts
     * as registered and disconnected at once (unless a newer registration
     * gave it a connection); it registers again when it reconnects. */
    rpc_conn *conn = rpc_conn_is_open(g->req->conn) ? g->req->conn : NULL;
    struct reg_node *known = registry_get(core->reg, g->node.id);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__RegisterRep rep = KEEL__REGISTER_REP__INIT;

    if (status == -ENOENT) {
        rpc_reply_error(g->req, -EINVAL, "unknown datanode id %" PRIu64, g->node.id);
        goto out;
    }
    if (status) {
        reply_err(g->req, status);
        goto out;
    }
    if (conn && peer && peer->node_id && peer->node_id != g->node.id)
        registry_detach(core->reg, peer->node_id, conn);
    if (conn && peer)
        peer->node_id = g->node.id;
    if (!conn && known && known->conn) {
        log_info("dnops: datanode %" PRIu64 " hung up before its registration was committed",
                 g->node.id);
        goto out;
    }
    registry_register(core->reg, &g->node, conn, mono_ms());
    log_info("dnops: datanode %" PRIu64 " registered (%s, domain %s, %s)%s", g->node.id,
             g->node.addr, g->node.domain, rpc_conn_peer(g->req->conn),
             conn ? "" : ", but hung up meanwhile");
    repair_node_registered(core->repair, g->node.id);
    rep.cluster_id = (char *)core->settings->cluster_id;
    rep.node_id = g->node.id;
    rep.chunk_size = core->settings->chunk_size;
    rep.heartbeat_ms = (uint32_t)core->cfg->heartbeat_ms;
    env.body_case = KEEL__ENVELOPE__BODY_REGISTER_REP;
    env.register_rep = &rep;
    rpc_reply(g->req, &env, RPC_NO_PAYLOAD);
out:
    free(g);
}

static void h_register(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__RegisterReq *rq = req->env->register_req;
    struct sockaddr_in sa;
    struct regop *g;

    if (rq->cluster_id[0] && strcmp(rq->cluster_id, core->settings->cluster_id) != 0) {
        log_warn("dnops: refused a datanode of cluster %.64s from %s", rq->cluster_id,
                 rpc_conn_peer(req->conn));
        rpc_reply_error(req, -EINVAL, "cluster id mismatch: this is cluster %s",
                        core->settings->cluster_id);
        return;
    }
    if (rq->node_id && !rq->cluster_id[0]) {
        rpc_reply_error(req, -EINVAL, "a registered datanode must give its cluster id");
        return;
    }
    if (strlen(rq->addr) > STORE_ADDR_MAX || parse_addr(rq->addr, &sa) || sa.sin_port == 0) {
        rpc_reply_error(req, -EINVAL, "bad datanode address");
        return;
    }
    if (strlen(rq->domain) > STORE_DOMAIN_MAX) {
        rpc_reply_error(req, -ENAMETOOLONG, "failure domain name too long");
        return;
    }
    g = xcalloc(1, sizeof(*g));
    g->core = core;
    g->store = core->store;
    g->req = req;
    g->node.id = rq->node_id;
    snprintf(g->node.addr, sizeof(g->node.addr), "%s", rq->addr);
    snprintf(g->node.domain, sizeof(g->node.domain), "%s", rq->domain[0] ? rq->domain : "default");
    g->node.capacity = rq->capacity;
    g->node.used = rq->used;
    g->op.apply = reg_apply;
    g->op.done = reg_done;
    commit_submit(core->commit, &g->op);
}

/* ------------------------------------------------------------ heartbeat */

static void h_heartbeat(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__HeartbeatReq *rq = req->env->heartbeat_req;
    struct reg_heartbeat hb = {rq->capacity, rq->used, rq->load, rq->copies, rq->full};
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HeartbeatRep rep = KEEL__HEARTBEAT_REP__INIT;
    struct cmdbuf *b = xmalloc(sizeof(*b));
    struct reg_node *n = registry_heartbeat(core->reg, rq->node_id, req->conn, &hb, mono_ms());

    if (!n) {
        rep.reregister = true;
    } else {
        rep.n_commands = take_commands(core, n, b);
        rep.commands = b->ptrs;
    }
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT_REP;
    env.heartbeat_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
    free(b);
}

/* --------------------------------------------------------- block report */

static void h_block_report(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__BlockReportReq *rq = req->env->block_report_req;
    struct reg_node *n = registry_get(core->reg, rq->node_id);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__BlockReportRep rep = KEEL__BLOCK_REPORT_REP__INIT;
    uint64_t t0 = mono_ns();
    struct cmdbuf *b;
    size_t orphans = 0;
    bool drained;

    if (!n || n->conn != req->conn) {
        rpc_reply_error(req, -EINVAL, "datanode %" PRIu64 " must register on this connection",
                        rq->node_id);
        return;
    }
    if (rq->full && rq->first) {
        n->report_start_ns = t0;
        n->report_busy_ns = n->report_batches = n->report_replicas = 0;
    }
    if (rq->full) {
        n->report_batches++;
        n->report_replicas += rq->n_replicas;
    }
    /* A drained node holds nothing the cluster needs: only deletions count. */
    drained = n->state == REG_DECOMMISSIONED;
    if (rq->full && rq->first && !drained)
        chunkmap_full_begin(core->cm, n->id);
    for (size_t i = 0; i < rq->n_replicas; i++) {
        const Keel__ReplicaInfo *ri = rq->replicas[i];
        bool corrupt = ri->state == KEEL__REPLICA_STATE__REPLICA_CORRUPT;
        struct cm_chunk *c;

        if (ri->chunk_id == 0 || ri->version == 0)
            continue;
        if (ri->state == KEEL__REPLICA_STATE__REPLICA_DELETED) {
            chunkmap_report_deleted(core->cm, n->id, ri->chunk_id);
            continue;
        }
        if (drained)
            continue;
        c = chunkmap_get(core->cm, ri->chunk_id);
        if (c && ri->version > c->version + MAX_VERSION_LEAD) {
            log_warn("dnops: datanode %" PRIu64 " reports chunk %" PRIx64 " at version %" PRIu64
                     ", far above %" PRIu64 "; ignored",
                     n->id, ri->chunk_id, ri->version, c->version);
            continue;
        }
        switch (chunkmap_report(core->cm, n->id, ri->chunk_id, ri->version, corrupt)) {
        case CM_ORPHAN:
            if (!chunkctl_allocating(core->ctl, ri->chunk_id)) {
                registry_order_delete(core->reg, n->id, ri->chunk_id, ri->version);
                orphans++;
            }
            break;
        case CM_AHEAD:
            chunkctl_adopt(core->ctl, ri->chunk_id, ri->version);
            break;
        case CM_CORRUPT:
            log_warn("dnops: datanode %" PRIu64 " reports its replica of chunk %" PRIx64 " corrupt",
                     n->id, ri->chunk_id);
            break;
        default:
            break;
        }
        repair_replica_reported(core->repair, n->id, ri->chunk_id, ri->version, corrupt);
    }
    if (orphans)
        log_info("dnops: datanode %" PRIu64 " holds %zu replicas of unknown chunks%s", n->id,
                 orphans, core->safe.on ? " (deleted after safe mode)" : "; ordered deleted");
    if (rq->full && rq->last)
        n->reported = true;
    if (rq->full && rq->last && !drained) {
        size_t gone = chunkmap_full_end(core->cm, n->id);
        uint64_t end = mono_ns();

        n->report_busy_ns += end - t0;
        log_info("dnops: full block report of datanode %" PRIu64 " done: %zu replicas%s; %" PRIu64
                 " reported in %" PRIu64 " batches over %" PRIu64 " ms, %" PRIu64
                 " ms of it handling them",
                 n->id, chunkmap_node_replicas(core->cm, n->id), gone ? ", some forgotten" : "",
                 n->report_replicas, n->report_batches, (end - n->report_start_ns) / 1000000,
                 n->report_busy_ns / 1000000);
    } else if (rq->full) {
        n->report_busy_ns += mono_ns() - t0;
    }
    dnops_check_safe_mode(core);
    b = xmalloc(sizeof(*b));
    rep.n_commands = take_commands(core, n, b);
    rep.commands = b->ptrs;
    env.body_case = KEEL__ENVELOPE__BODY_BLOCK_REPORT_REP;
    env.block_report_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
    free(b);
}

void dnops_check_safe_mode(struct nn_core *core)
{
    if (safemode_update(&core->safe, chunkmap_count(core->cm), chunkmap_reported(core->cm),
                        mono_ms()))
        repair_scan_all(core->repair);
}

static void h_replicate_done(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__ReplicateDoneReq *rq = req->env->replicate_done_req;
    struct reg_node *n = registry_get(core->reg, rq->node_id);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReplicateDoneRep rep = KEEL__REPLICATE_DONE_REP__INIT;

    if (!n || n->conn != req->conn) {
        rpc_reply_error(req, -EINVAL, "datanode %" PRIu64 " must register on this connection",
                        rq->node_id);
        return;
    }
    if (rq->status > 0) {
        rpc_reply_error(req, -EINVAL, "a status is 0 or negative");
        return;
    }
    if (rq->fuzzy && rq->version < 2) {
        rpc_reply_error(req, -EINVAL, "a fuzzy copy is of version 2 or later");
        return;
    }
    repair_copy_done(core->repair, n->id, rq->chunk_id, rq->version, rq->fuzzy, rq->target,
                     err_from_wire(rq->status), rq->bytes_sent, rq->bytes_saved);
    env.body_case = KEEL__ENVELOPE__BODY_REPLICATE_DONE_REP;
    env.replicate_done_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

const rpc_handler dnops_handlers[] = {
    {KEEL__ENVELOPE__BODY_REGISTER_REQ, "register", h_register},
    {KEEL__ENVELOPE__BODY_HEARTBEAT_REQ, "heartbeat", h_heartbeat},
    {KEEL__ENVELOPE__BODY_BLOCK_REPORT_REQ, "block_report", h_block_report},
    {KEEL__ENVELOPE__BODY_REPLICATE_DONE_REQ, "replicate_done", h_replicate_done},
};

const size_t dnops_nhandlers = ARRAY_SIZE(dnops_handlers);
