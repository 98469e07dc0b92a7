/*
 * repair: see repair.h for what it decides and the life of a copy.
 *
 * Work arrives as chunk ids in the `dirty` set (the chunk map's hook, node
 * events, ends of copies). One run, started by a zero timer whenever work
 * arrives and by repair_tick, examines a bounded batch of dirty chunks,
 * then walks the queue in service order starting copies while datanodes
 * have free streams; leftovers go to the next run, so the loop thread never
 * spends long here. Priority is strict between classes: once a chunk is
 * held back only by busy streams, no chunk of a less urgent class starts in
 * that walk (it would take a stream the urgent one needs next). A chunk whose version is changing
 * (chunkctl_busy) is looked at again on the next tick.
 *
 * Pushed commands and bumps carry a small context (struct call) freed by
 * their callback; during shutdown those callbacks only free it.
 */
#include "repair.h"

#include "errors.h"
#include "log.h"
#include "placement.h"
#include "replq.h"
#include "u64map.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define NCLASSES        (STORE_MAX_REPLICATION + 2u)
#define CLASS_MISPLACED (NCLASSES - 1u)
#define DIRTY_BATCH     4096u  /* chunks examined per run */
#define SCHED_SCAN      2048u  /* queue entries looked at per run */
#define POSTPONE_MS     2000u  /* a chunk with nowhere to go waits this long */
#define BACKOFF_MAX_MS  30000u /* longest wait after repeated failures */
#define DECOM_EVERY_MS  1000u  /* decommission progress is counted at most this often */
#define DECOM_DUTY      50u    /* ... and at least this many times its own cost apart */
#define MAX_HOLDERS     32u    /* replicas of one chunk considered */
#define REPORT_GRACE_MS 15000u /* longest wait for a registered node's full report */
#define MARK            ((void *)1)

struct repair {
    struct repair_config cfg;
    uint64_t chunk_size;
    struct replq *q;
    struct placement_rng rng;
    /* Chunks to examine: a FIFO of ids, without duplicates. */
    struct u64map dirty_set;
    uint64_t *dirty;
    size_t dhead, dlen, dcap;
    struct u64map later;      /* busy chunks, examined again at the next tick */
    struct u64map decom_busy; /* nodes with a decommission commit in flight */
    uv_timer_t *kick;         /* its own allocation: freed by its close callback */
    bool want_schedule, stopping;
    uint64_t next_decom_ms;
    size_t calls; /* bumps and pushes in flight */
    struct repair_stats stats;
};

/* A bump or a push in flight. */
struct call {
    struct repair *rp;
    uint64_t chunk, src, tgt, version;
};

static void must(int r)
{
    if (r < 0) {
        log_error("repair: out of memory");
        abort();
    }
}

static void on_kick(uv_timer_t *t);

static void kick(struct repair *rp)
{
    if (rp->stopping || !rp->kick || uv_is_active((uv_handle_t *)rp->kick))
        return;
    uv_timer_start(rp->kick, on_kick, 0, 0);
}

static void mark_dirty(struct repair *rp, uint64_t chunk)
{
    if (chunk == 0 || u64map_get(&rp->dirty_set, chunk))
        return;
    must(u64map_put(&rp->dirty_set, chunk, MARK));
    if (rp->dhead > 0 && rp->dhead * 2 >= rp->dlen) {
        memmove(rp->dirty, rp->dirty + rp->dhead, (rp->dlen - rp->dhead) * sizeof(*rp->dirty));
        rp->dlen -= rp->dhead;
        rp->dhead = 0;
    }
    if (rp->dlen == rp->dcap) {
        rp->dcap = rp->dcap ? rp->dcap * 2 : 256;
        rp->dirty = xrealloc(rp->dirty, rp->dcap * sizeof(*rp->dirty));
    }
    rp->dirty[rp->dlen++] = chunk;
    kick(rp);
}

static void on_map_change(void *arg, uint64_t chunk)
{
    mark_dirty(arg, chunk);
}

static void dirty_node_chunks(struct repair *rp, uint64_t node)
{
    struct cm_chunk *c;
    size_t i = 0;

    while ((c = chunkmap_node_next(rp->cfg.cm, node, &i)))
        mark_dirty(rp, c->id);
}

/* ---------------------------------------------------------- examination */

static uint64_t backoff_ms(uint32_t failures)
{
    uint64_t ms = 500ull << MIN(failures, 10u);

    return MIN(ms, (uint64_t)BACKOFF_MAX_MS);
}

/* Decides what chunk c needs now (see repair.h). */
static void examine(struct repair *rp, struct cm_chunk *c, const struct cm_view *v, uint64_t now)
{
    struct cm_chunk_health h;
    bool was_queued;

    if (replq_is_running(rp->q, c->id))
        return; /* the end of its copies brings it back */
    if (chunkctl_busy(rp->cfg.ctl, c->id)) {
        must(u64map_put(&rp->later, c->id, MARK));
        return;
    }
    chunkmap_chunk_health(c, v, &h);
    if (h.readable == 0) {
        replq_remove(rp->q, c->id);
        return;
    }
    if (h.good >= c->replication) {
        /* Changes re-announce the chunk; it is looked at again then. */
        if (chunkctl_collect(rp->cfg.ctl, c, v) > 0)
            return;
        if (h.good > c->replication) {
            size_t n = chunkctl_drop_excess(rp->cfg.ctl, c);

            rp->stats.trimmed += n;
            if (n > 0)
                return;
        }
    }
    was_queued = replq_is_queued(rp->q, c->id);
    if (h.good < c->replication)
        replq_push(rp->q, c->id, h.good, now);
    else if (h.misplaced)
        replq_push(rp->q, c->id, CLASS_MISPLACED, now);
    else {
        replq_remove(rp->q, c->id);
        return;
    }
    rp->want_schedule = true;
    /* Back from failed copies: wait a little more after each failure. */
    if (!was_queued && replq_failures(rp->q, c->id) >= 2)
        replq_postpone(rp->q, c->id, now + backoff_ms(replq_failures(rp->q, c->id) - 2));
}

static void examine_dirty(struct repair *rp, uint64_t now)
{
    struct cm_view v = chunkctl_view(rp->cfg.ctl);
    size_t n = 0;

    while (rp->dhead < rp->dlen && n < DIRTY_BATCH) {
        uint64_t id = rp->dirty[rp->dhead++];
        struct cm_chunk *c;

        u64map_del(&rp->dirty_set, id);
        n++;
        c = chunkmap_get(rp->cfg.cm, id);
        if (!c) {
            replq_remove(rp->q, id);
            continue;
        }
        examine(rp, c, &v, now);
    }
    if (rp->dhead == rp->dlen)
        rp->dhead = rp->dlen = 0;
}

/* ------------------------------------------------------------- planning */

/* The nodes as placement sees them, plus what scheduling needs. */
struct cand {
    struct placement_node p;
    struct reg_node *rn;
    uint32_t out, in; /* streams in use, counting this run's starts */
};

struct plan_ctx {
    struct repair *rp;
    struct cand *nodes;
    size_t n;
};

static struct cand *cand_get(struct plan_ctx *pc, uint64_t id)
{
    for (size_t i = 0; i < pc->n; i++)
        if (pc->nodes[i].p.id == id)
            return &pc->nodes[i];
    return NULL;
}

static void build_cands(struct plan_ctx *pc)
{
    struct repair *rp = pc->rp;
    struct reg_node *rn;
    size_t i = 0;

    pc->nodes = xcalloc(registry_count(rp->cfg.reg) + 1, sizeof(*pc->nodes));
    pc->n = 0;
    while ((rn = registry_next(rp->cfg.reg, &i))) {
        struct cand *c = &pc->nodes[pc->n++];

        c->rn = rn;
        c->p.id = rn->id;
        c->p.domain = rn->domain;
        c->p.capacity = rn->capacity;
        c->p.used = rn->used;
        c->p.alive = rn->state == REG_ALIVE && rn->conn;
        c->p.full = rn->full;
        c->p.decommissioning = rn->state == REG_DECOMMISSIONING;
        c->out = replq_out(rp->q, rn->id);
        c->in = replq_in(rp->q, rn->id);
    }
}

/* Can this node send a copy (a live or leaving node we can reach)? */
static bool can_send(const struct cand *c)
{
    return c->rn->conn && (c->rn->state == REG_ALIVE || c->rn->state == REG_DECOMMISSIONING);
}

static bool listed(uint64_t id, const uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static bool domain_listed(const char *d, const char *const *doms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(doms[i], d) == 0)
            return true;
    return false;
}

struct pick_opts {
    bool limits; /* respect the stream limits */
};

/*
 * Chooses up to REPLQ_MAX_COPIES copies for c into out; returns how many.
 * misplaced_only: one copy, to a domain none of the good replicas is in.
 * Nodes that failed this chunk before are avoided, as sources and as
 * targets separately, unless no other node can play the part.
 */
static size_t pick(struct plan_ctx *pc, const struct cm_chunk *c, const struct cm_view *v,
                   bool misplaced_only, struct pick_opts o, struct replq_copy *out)
{
    struct repair *rp = pc->rp;
    uint64_t avoid[REPLQ_MAX_AVOID], good[MAX_HOLDERS], holders[MAX_HOLDERS];
    uint64_t tgts[REPLQ_MAX_COPIES], srcs[MAX_HOLDERS], avoided_srcs[MAX_HOLDERS];
    const char *doms[MAX_HOLDERS + REPLQ_MAX_COPIES];
    bool delta[REPLQ_MAX_COPIES] = {false};
    size_t navoid = replq_avoid(rp->q, c->id, avoid), navoided = 0;
    size_t ngood = 0, nholders = 0, nsrc = 0, ntgt = 0, ndoms = 0, ncopies = 0;
    bool other_src = false, other_tgt = false;
    uint32_t streams = replq_streams(rp->q), need;
    struct cm_chunk_health h;

    chunkmap_chunk_health(c, v, &h);
    if (misplaced_only)
        need = 1;
    else if (h.good >= c->replication)
        return 0;
    else
        need = MIN(c->replication - h.good, REPLQ_MAX_COPIES);

    for (uint32_t i = 0; i < c->nrep && nholders < MAX_HOLDERS; i++) {
        const struct cm_replica *r = &c->reps[i];
        struct cand *cd = cand_get(pc, r->node);
        const char *d;
        enum cm_node_state st = v->node(v->ctx, r->node, &d);

        if (!cm_replica_current(c, r))
            continue;
        holders[nholders++] = r->node;
        if (st == CM_NODE_LIVE && ngood < MAX_HOLDERS) {
            good[ngood++] = r->node;
            if (d && !domain_listed(d, doms, ndoms))
                doms[ndoms++] = d;
        }
        if (st == CM_NODE_GONE || !cd || !can_send(cd))
            continue;
        if (!listed(r->node, avoid, navoid))
            other_src = true; /* busy or not */
        if (o.limits && cd->out >= streams)
            continue;
        if (listed(r->node, avoid, navoid))
            avoided_srcs[navoided++] = r->node;
        else
            srcs[nsrc++] = r->node;
    }
    /* A node that failed this chunk sends it again only if no other can
     * (not merely: no other is free now). */
    if (nsrc == 0 && !other_src) {
        memcpy(srcs, avoided_srcs, navoided * sizeof(*srcs));
        nsrc = navoided;
    }
    if (nsrc == 0)
        return 0;

    /* Stale holders in fresh domains first: they get a delta copy. */
    for (uint32_t i = 0; i < c->nrep && ntgt < need; i++) {
        const struct cm_replica *r = &c->reps[i];
        struct cand *cd = cand_get(pc, r->node);

        if (r->corrupt || r->version >= c->version || !cd)
            continue;
        if (!placement_usable(&cd->p, rp->chunk_size) || (o.limits && cd->in >= streams))
            continue;
        if (listed(r->node, avoid, navoid) || domain_listed(cd->p.domain, doms, ndoms))
            continue;
        delta[ntgt] = true;
        tgts[ntgt++] = r->node;
        doms[ndoms++] = cd->p.domain;
    }

    /* Then the placement policy, over nodes holding no current replica;
     * nodes with a corrupt replica, then nodes that failed this chunk,
     * only as a last resort: the latter only when no other node could take
     * the copy even once its streams are free. Every node is listed
     * (placement needs the holders' domains); the ones not to pick are
     * excluded. */
    for (size_t i = 0; i < pc->n && navoid; i++) {
        const struct cand *cd = &pc->nodes[i];

        other_tgt |= placement_usable(&cd->p, rp->chunk_size) &&
                     !listed(cd->p.id, holders, nholders) && !listed(cd->p.id, tgts, ntgt) &&
                     !listed(cd->p.id, avoid, navoid);
    }
    for (int pass = 0; pass < (other_tgt ? 2 : 3) && ntgt < need; pass++) {
        struct placement_node *nodes = xcalloc(pc->n + 1, sizeof(*nodes));
        uint64_t *exclude = xcalloc(pc->n + 1, sizeof(*exclude));
        uint64_t existing[MAX_HOLDERS + REPLQ_MAX_COPIES], picked[REPLQ_MAX_COPIES];
        size_t nexcl = 0, nexist = 0, got = 0;
        bool mis;
        struct placement_req req = {.chunk_size = rp->chunk_size};

        for (size_t i = 0; i < pc->n; i++) {
            struct cand *cd = &pc->nodes[i];
            bool corrupt = false;

            nodes[i] = cd->p;
            for (uint32_t k = 0; k < c->nrep; k++)
                corrupt |= c->reps[k].node == cd->p.id && c->reps[k].corrupt;
            if (listed(cd->p.id, holders, nholders) || listed(cd->p.id, tgts, ntgt) ||
                (corrupt && pass == 0) || (o.limits && cd->in >= streams) ||
                (listed(cd->p.id, avoid, navoid) && pass < 2))
                exclude[nexcl++] = cd->p.id;
        }
        for (size_t i = 0; i < ngood; i++)
            existing[nexist++] = good[i];
        for (size_t i = 0; i < ntgt; i++)
            existing[nexist++] = tgts[i];
        req.existing = existing;
        req.nexisting = nexist;
        req.exclude = exclude;
        req.nexclude = nexcl;
        req.replication = (uint32_t)(nexist + need - ntgt);
        placement_choose(nodes, pc->n, &req, &rp->rng, picked, &got, &mis);
        for (size_t i = 0; i < got && ntgt < need; i++) {
            struct cand *cd = cand_get(pc, picked[i]);
            bool stale = false;

            if (misplaced_only && domain_listed(cd->p.domain, doms, ndoms))
                continue; /* no better spread to be had */
            for (uint32_t k = 0; k < c->nrep; k++)
                if (c->reps[k].node == picked[i] && !c->reps[k].corrupt)
                    stale = true;
            delta[ntgt] = stale;
            tgts[ntgt++] = picked[i];
            doms[ndoms++] = cd->p.domain;
        }
        free(exclude);
        free(nodes);
    }

    /* A source for each target: leaving nodes first (their disks are not
     * wanted any more), then the least busy. */
    for (size_t t = 0; t < ntgt; t++) {
        struct cand *best = NULL;

        for (size_t s = 0; s < nsrc; s++) {
            struct cand *cd = cand_get(pc, srcs[s]);
            uint32_t extra = 0;
            bool leaving, best_leaving;

            for (size_t k = 0; k < ncopies; k++)
                extra += out[k].src == srcs[s];
            if (o.limits && cd->out + extra >= streams)
                continue;
            if (!best) {
                best = cd;
                continue;
            }
            leaving = cd->rn->state == REG_DECOMMISSIONING;
            best_leaving = best->rn->state == REG_DECOMMISSIONING;
            if (leaving != best_leaving) {
                if (leaving)
                    best = cd;
            } else if (cd->out + cd->rn->load < best->out + best->rn->load) {
                best = cd;
            }
        }
        if (!best)
            break;
        out[ncopies++] = (struct replq_copy){.src = best->p.id, .tgt = tgts[t], .delta = delta[t]};
    }
    return ncopies;
}

/* --------------------------------------------------------------- copies */

static void finish(struct repair *rp, uint64_t chunk, uint64_t src, uint64_t tgt,
                   enum replq_outcome outcome)
{
    registry_cancel_copy(rp->cfg.reg, src, chunk, tgt);
    if (outcome == REPLQ_DONE)
        rp->stats.copies_done++;
    else
        rp->stats.copies_failed++;
    if (replq_end(rp->q, chunk, src, tgt, outcome))
        mark_dirty(rp, chunk);
}

static void fail_all(struct repair *rp, uint64_t chunk, enum replq_outcome outcome)
{
    struct replq_copy copies[REPLQ_MAX_COPIES];
    size_t n = replq_copies(rp->q, chunk, copies);

    for (size_t i = 0; i < n; i++)
        finish(rp, chunk, copies[i].src, copies[i].tgt, outcome);
}

static void push_done(int status, rpc_msg *reply, void *arg)
{
    struct call *cl = arg;
    struct repair *rp = cl->rp;
    struct replq_copy *cp;
    struct reg_node *n;

    rp->calls--;
    if (status == 0 || rp->stopping)
        goto out;
    cp = replq_find(rp->q, cl->chunk, cl->src, cl->tgt);
    if (!cp || cp->version != cl->version)
        goto out;
    n = registry_get(rp->cfg.reg, cl->src);
    if (status == -EOPNOTSUPP && n && !n->no_push) {
        log_info("repair: datanode %" PRIu64 " takes commands at heartbeats only", cl->src);
        n->no_push = true;
    }
    /* Not taken now: the next heartbeat carries it. */
    registry_order_copy(rp->cfg.reg, cl->src,
                        &(struct reg_cmd){REG_CMD_REPLICATE, cl->chunk, cl->version, cl->tgt,
                                          cp->delta, cp->fuzzy});
out:
    free(cl);
}

/* Commands one copy: pushed at once, or left for the source's heartbeat. */
static void command_copy(struct repair *rp, uint64_t chunk, const struct replq_copy *cp)
{
    struct reg_node *src = registry_get(rp->cfg.reg, cp->src);
    struct reg_node *tgt = registry_get(rp->cfg.reg, cp->tgt);
    struct reg_cmd rc = {REG_CMD_REPLICATE, chunk, cp->version, cp->tgt, cp->delta, cp->fuzzy};
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CommandReq req = KEEL__COMMAND_REQ__INIT;
    Keel__Command cmd = KEEL__COMMAND__INIT;
    Keel__Command *cmds[1] = {&cmd};
    Keel__Replica target = KEEL__REPLICA__INIT;
    struct rpc_call_opts o = {.timeout_ms = rp->cfg.call_timeout_ms};
    struct call *cl;

    if (!src || !tgt) {
        finish(rp, chunk, cp->src, cp->tgt, REPLQ_CANCELLED);
        return;
    }
    log_info("repair: copying chunk %" PRIx64 " v%" PRIu64 " from datanode %" PRIu64 " to %" PRIu64
             "%s",
             chunk, cp->version, cp->src, cp->tgt,
             cp->delta   ? " (delta: it holds an older version)"
             : cp->fuzzy ? " (fuzzy: the file is being written; a delta copy follows)"
                         : "");
    if (!src->conn || src->no_push) {
        registry_order_copy(rp->cfg.reg, cp->src, &rc);
        return;
    }
    target.node_id = tgt->id;
    target.addr = tgt->addr;
    target.domain = tgt->domain;
    cmd.kind = KEEL__COMMAND_KIND__CMD_REPLICATE;
    cmd.chunk_id = chunk;
    cmd.version = cp->version;
    cmd.target = &target;
    cmd.delta = cp->delta;
    cmd.fuzzy = cp->fuzzy;
    req.commands = cmds;
    req.n_commands = 1;
    env.body_case = KEEL__ENVELOPE__BODY_COMMAND_REQ;
    env.command_req = &req;
    cl = xcalloc(1, sizeof(*cl));
    *cl = (struct call){rp, chunk, cp->src, cp->tgt, cp->version};
    rp->calls++;
    if (rpc_call(src->conn, &env, RPC_NO_PAYLOAD, &o, push_done, cl) < 0) {
        rp->calls--;
        free(cl);
        registry_order_copy(rp->cfg.reg, cp->src, &rc);
    }
}

/* The chunk is at version on its sources: command every copy. */
static void send_copies(struct repair *rp, uint64_t chunk, uint64_t version)
{
    struct replq_copy copies[REPLQ_MAX_COPIES];
    size_t n = replq_copies(rp->q, chunk, copies);
    uint64_t now = mono_ms();

    for (size_t i = 0; i < n; i++) {
        struct replq_copy *cp = replq_find(rp->q, chunk, copies[i].src, copies[i].tgt);

        cp->version = version;
        cp->sent_ms = now;
        copies[i] = *cp;
    }
    for (size_t i = 0; i < n; i++)
        command_copy(rp, chunk, &copies[i]);
}

static void bumped(void *arg, int status, const struct chunkctl_bump_result *res)
{
    struct call *cl = arg;
    struct repair *rp = cl->rp;
    struct replq_copy copies[REPLQ_MAX_COPIES];
    struct cm_chunk *c;
    size_t n;

    rp->calls--;
    if (rp->stopping)
        goto out;
    if (!replq_is_running(rp->q, cl->chunk))
        goto out;
    c = chunkmap_get(rp->cfg.cm, cl->chunk);
    if (status || !c) {
        log_warn("repair: chunk %" PRIx64 " could not be moved to a new version for its copy: %s",
                 cl->chunk, err_str(status ? status : -ENOENT));
        fail_all(rp, cl->chunk, REPLQ_CANCELLED);
        goto out;
    }
    /* Sources that did not take the new version cannot send it. */
    n = replq_copies(rp->q, cl->chunk, copies);
    for (size_t i = 0; i < n; i++) {
        bool ok = false;

        for (uint32_t k = 0; k < c->nrep; k++)
            if (c->reps[k].node == copies[i].src && cm_replica_current(c, &c->reps[k]))
                ok = true;
        if (!ok)
            finish(rp, cl->chunk, copies[i].src, copies[i].tgt, REPLQ_SOURCE_FAILED);
    }
    if (replq_is_running(rp->q, cl->chunk))
        send_copies(rp, cl->chunk, res->version);
out:
    free(cl);
}

/*
 * A copy that writers must not slip past is fenced: writers of the chunk
 * wait (repair_copying) until it ends, and while the file may be written
 * the chunk first moves to a new version. Whole copies of a file being
 * written are fuzzy instead: at the current version, they take writes as
 * they come and leave a stale replica one version below, which the delta
 * copy that follows (fenced, but short: only the blocks written meanwhile)
 * brings up to date. A writer that comes during a whole fenced copy (the
 * file was idle when it started) moves the chunk past it instead
 * (repair_writer_waits). So a writer waits for a delta or a version
 * change, never for a whole chunk to cross the wire.
 */
static void start(struct repair *rp, struct cm_chunk *c, struct replq_copy *copies, size_t n,
                  uint64_t now)
{
    struct call *cl;
    bool busy = lease_busy(rp->cfg.leases, c->ino, now), fuzzy = busy;
    int r;

    for (size_t i = 0; i < n; i++)
        fuzzy &= !copies[i].delta;
    for (size_t i = 0; i < n; i++)
        copies[i].fuzzy = fuzzy;
    r = replq_start(rp->q, c->id, copies, n);
    if (r) {
        log_error("repair: cannot start copies of chunk %" PRIx64 ": %s", c->id, err_str(r));
        return;
    }
    /* A fuzzy copy needs no fence, only a version - 1 above zero. */
    if (!busy || (fuzzy && c->version >= 2)) {
        send_copies(rp, c->id, c->version);
        return;
    }
    /* Someone may write the file: copy at a fresh version nobody else has. */
    cl = xcalloc(1, sizeof(*cl));
    cl->rp = rp;
    cl->chunk = c->id;
    rp->calls++;
    r = chunkctl_bump(rp->cfg.ctl, c->id, NULL, 0, bumped, cl);
    if (r) {
        rp->calls--;
        free(cl);
        fail_all(rp, c->id, REPLQ_CANCELLED);
    }
}

/*
 * False while a node that may hold replicas has not said what it holds: it
 * is known but not heard from since the start (it registers, or dies at
 * the dead timeout), or it registered and its full report is not through
 * (for at most REPORT_GRACE_MS). Copies made meanwhile would mostly be
 * copies of replicas that exist.
 */
static bool picture_complete(const struct repair *rp, uint64_t now)
{
    struct reg_node *n;
    size_t i = 0;

    while ((n = registry_next(rp->cfg.reg, &i))) {
        if (n->state == REG_UNKNOWN)
            return false;
        if ((n->state == REG_ALIVE || n->state == REG_DECOMMISSIONING) && !n->reported &&
            now - n->registered_ms < REPORT_GRACE_MS)
            return false;
    }
    return true;
}

static void schedule(struct repair *rp, uint64_t now)
{
    struct plan_ctx pc = {rp, NULL, 0};
    struct cm_view v = chunkctl_view(rp->cfg.ctl);
    struct replq_iter it = {0};
    uint32_t streams = replq_streams(rp->q), cls, waiting_cls = UINT32_MAX;
    uint64_t id;
    size_t budget = SCHED_SCAN;

    if (replq_queued(rp->q) == 0)
        return;
    if (!picture_complete(rp, now)) {
        rp->want_schedule = true; /* the next tick tries again */
        return;
    }
    build_cands(&pc);
    while (budget-- > 0 && replq_iter_next(rp->q, &it, &id, &cls)) {
        struct replq_copy copies[REPLQ_MAX_COPIES];
        struct cm_chunk *c = chunkmap_get(rp->cfg.cm, id);
        bool misplaced = cls == CLASS_MISPLACED, any_in = false, any_out = false;
        size_t n;

        for (size_t i = 0; i < pc.n; i++) {
            any_out |= can_send(&pc.nodes[i]) && pc.nodes[i].out < streams;
            any_in |= pc.nodes[i].p.alive && pc.nodes[i].in < streams;
        }
        if (!any_in || !any_out)
            break; /* every stream is taken */
        if (cls > waiting_cls)
            break; /* more urgent chunks wait for streams: they get them first */
        if (!c) {
            replq_remove(rp->q, id);
            continue;
        }
        if (chunkctl_busy(rp->cfg.ctl, id))
            continue;
        n = pick(&pc, c, &v, misplaced, (struct pick_opts){true}, copies);
        if (n == 0) {
            /* Busy streams wait for the next run; nowhere to go waits longer. */
            if (pick(&pc, c, &v, misplaced, (struct pick_opts){false}, copies) == 0)
                replq_postpone(rp->q, id, now + POSTPONE_MS);
            else
                waiting_cls = MIN(waiting_cls, cls);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            cand_get(&pc, copies[i].src)->out++;
            cand_get(&pc, copies[i].tgt)->in++;
        }
        if (misplaced)
            log_info("repair: chunk %" PRIx64 " is misplaced: one copy to a new domain", id);
        else
            log_info("repair: chunk %" PRIx64 " has %u of %u good replicas: %zu cop%s", id, cls,
                     c->replication, n, n == 1 ? "y" : "ies");
        start(rp, c, copies, n, now);
    }
    free(pc.nodes);
}

static void run(struct repair *rp)
{
    uint64_t now = mono_ms();

    if (rp->stopping)
        return;
    if (rp->cfg.safe->on) {
        /* Nothing is decided on a partial picture; all is looked at later. */
        rp->dhead = rp->dlen = 0;
        u64map_free(&rp->dirty_set);
        u64map_init(&rp->dirty_set);
        return;
    }
    examine_dirty(rp, now);
    if (rp->want_schedule) {
        rp->want_schedule = false;
        schedule(rp, now);
    }
    if (rp->dhead < rp->dlen)
        kick(rp);
}

static void on_kick(uv_timer_t *t)
{
    run(t->data);
}

/* ------------------------------------------------------------- events */

void repair_replica_reported(struct repair *rp, uint64_t node, uint64_t chunk, uint64_t version,
                             bool corrupt)
{
    struct replq_copy *cp;
    struct replq_copy copies[REPLQ_MAX_COPIES];
    size_t n = replq_copies(rp->q, chunk, copies);

    for (size_t i = 0; i < n; i++) {
        if (copies[i].tgt != node)
            continue;
        cp = replq_find(rp->q, chunk, copies[i].src, node);
        if (corrupt || !cp->version || cp->version != version)
            return;
        log_info("repair: datanode %" PRIu64 " has chunk %" PRIx64 " v%" PRIu64 " now", node, chunk,
                 version);
        finish(rp, chunk, copies[i].src, node, REPLQ_DONE);
        rp->want_schedule = true;
        return;
    }
}

/* Whose fault a failed copy was, from the source's status. */
static enum replq_outcome blame(int status)
{
    switch (status) {
    case -ENOENT:
    case -ESTALE:
    case -ECANCELED:
    case -ENODATA:
        return REPLQ_SOURCE_FAILED;
    case -EIO:
        return REPLQ_BOTH_FAILED;
    default:
        return REPLQ_TARGET_FAILED;
    }
}

void repair_copy_done(struct repair *rp, uint64_t src, uint64_t chunk, uint64_t version, bool fuzzy,
                      uint64_t target, int status, uint64_t bytes_sent, uint64_t bytes_saved)
{
    struct replq_copy *cp = replq_find(rp->q, chunk, src, target);
    uint64_t installed = fuzzy ? version - 1 : version;
    struct cm_chunk *c;
    struct reg_node *tn;

    rp->stats.bytes_sent += bytes_sent;
    rp->stats.bytes_saved += bytes_saved;
    if (status == 0)
        log_info("repair: chunk %" PRIx64 " v%" PRIu64 " copied from datanode %" PRIu64
                 " to %" PRIu64 ": %" PRIu64 " bytes sent, %" PRIu64 " saved by delta%s",
                 chunk, version, src, target, bytes_sent, bytes_saved,
                 fuzzy ? " (fuzzy: installed one version below, a delta follows)" : "");
    else
        log_warn("repair: copy of chunk %" PRIx64 " v%" PRIu64 " from datanode %" PRIu64
                 " to %" PRIu64 " failed: %s",
                 chunk, version, src, target, err_str(status));
    c = chunkmap_get(rp->cfg.cm, chunk);
    tn = registry_get(rp->cfg.reg, target);
    if (!cp || cp->version != version) {
        /* Ended already: the target reported first, or the copy timed out
         * and went elsewhere. A late success still made a replica. */
        if (status == 0 && c && c->version == installed && tn && registry_node_live(tn))
            chunkmap_set_replica(rp->cfg.cm, c, target, installed);
        return;
    }
    if (status) {
        /* The source does not have it: believe it. */
        if (status == -ENOENT && c)
            chunkmap_drop_replica(rp->cfg.cm, c, src);
        /* Moved past by a writer: the version change failed it, not a node. */
        finish(rp, chunk, src, target, cp->yielding ? REPLQ_CANCELLED : blame(status));
        rp->want_schedule = true;
        return;
    }
    /* A fuzzy copy is recorded as the stale replica it is: the next run
     * plans its delta at once. */
    if (c && (c->version == installed || fuzzy) && tn && registry_node_live(tn))
        chunkmap_set_replica(rp->cfg.cm, c, target, installed);
    finish(rp, chunk, src, target, REPLQ_DONE);
    rp->want_schedule = true;
}

bool repair_copying(const struct repair *rp, uint64_t chunk)
{
    struct replq_copy copies[REPLQ_MAX_COPIES];
    size_t n = replq_is_running(rp->q, chunk) ? replq_copies(rp->q, chunk, copies) : 0;

    for (size_t i = 0; i < n; i++)
        if (!copies[i].fuzzy)
            return true;
    return false;
}

/* Marks the copies of chunk as yielding to a writer, or not. */
static void set_yielding(struct repair *rp, uint64_t chunk, bool on)
{
    struct replq_copy copies[REPLQ_MAX_COPIES];
    size_t n = replq_copies(rp->q, chunk, copies);

    for (size_t i = 0; i < n; i++)
        replq_find(rp->q, chunk, copies[i].src, copies[i].tgt)->yielding = on;
}

static void yielded(void *arg, int status, const struct chunkctl_bump_result *res)
{
    struct call *cl = arg;
    struct repair *rp = cl->rp;
    struct replq_copy copies[REPLQ_MAX_COPIES];
    size_t n;

    rp->calls--;
    if (rp->stopping)
        goto out;
    if (status) {
        log_warn("repair: chunk %" PRIx64 " could not be moved past its copy for a writer: %s",
                 cl->chunk, err_str(status));
        set_yielding(rp, cl->chunk, false);
        goto out;
    }
    log_info("repair: chunk %" PRIx64 " now at version %" PRIu64
             ": its copy is dropped for a writer, a fuzzy copy follows",
             cl->chunk, res->version);
    /* Its source may have failed it already, seeing the new version. */
    n = replq_copies(rp->q, cl->chunk, copies);
    for (size_t i = 0; i < n; i++)
        if (copies[i].yielding)
            finish(rp, cl->chunk, copies[i].src, copies[i].tgt, REPLQ_CANCELLED);
    rp->want_schedule = true;
out:
    free(cl);
}

void repair_writer_waits(struct repair *rp, uint64_t chunk)
{
    struct replq_copy copies[REPLQ_MAX_COPIES];
    size_t n = replq_is_running(rp->q, chunk) ? replq_copies(rp->q, chunk, copies) : 0;
    struct call *cl;
    int r;

    if (n == 0)
        return;
    /* Deltas are short, and a copy not yet commanded is still being set up. */
    for (size_t i = 0; i < n; i++)
        if (copies[i].delta || copies[i].fuzzy || copies[i].yielding || !copies[i].version)
            return;
    set_yielding(rp, chunk, true);
    cl = xcalloc(1, sizeof(*cl));
    cl->rp = rp;
    cl->chunk = chunk;
    rp->calls++;
    r = chunkctl_bump(rp->cfg.ctl, chunk, NULL, 0, yielded, cl);
    if (r) {
        rp->calls--;
        free(cl);
        set_yielding(rp, chunk, false);
        log_warn("repair: chunk %" PRIx64 " could not be moved past its copy for a writer: %s",
                 chunk, err_str(r));
    }
}

void repair_node_dead(struct repair *rp, uint64_t node)
{
    size_t n, dropped;
    struct replq_ref *refs = replq_node_copies(rp->q, node, &n);

    for (size_t i = 0; i < n; i++) {
        log_info("repair: copy of chunk %" PRIx64 " from datanode %" PRIu64 " to %" PRIu64
                 " lost with datanode %" PRIu64,
                 refs[i].chunk, refs[i].src, refs[i].tgt, node);
        finish(rp, refs[i].chunk, refs[i].src, refs[i].tgt,
               refs[i].src == node ? REPLQ_SOURCE_FAILED : REPLQ_TARGET_FAILED);
    }
    free(refs);
    registry_drop_commands(rp->cfg.reg, node);
    dropped = chunkmap_drop_node(rp->cfg.cm, node);
    log_info("repair: datanode %" PRIu64 " is dead: %zu replicas forgotten, their chunks examined",
             node, dropped);
    rp->want_schedule = true;
    kick(rp);
}

void repair_node_registered(struct repair *rp, uint64_t node)
{
    if (replq_wake(rp->q, 0, true))
        rp->want_schedule = true;
    kick(rp);
}

void repair_scan_all(struct repair *rp)
{
    struct cm_chunk *c;
    size_t i = 0;

    while ((c = chunkmap_next(rp->cfg.cm, &i)))
        mark_dirty(rp, c->id);
    rp->want_schedule = true;
}

/* -------------------------------------------------------- decommission */

enum decom_kind { DK_START, DK_FINISH, DK_UNDO };

struct decom_op {
    struct commit_op op;
    struct repair *rp;
    struct store *store;
    uint64_t node;
    enum decom_kind kind;
    uint32_t flags; /* after the commit */
    repair_decom_fn cb;
    void *arg;
};

static int decom_apply(MDB_txn *txn, struct commit_op *op)
{
    struct decom_op *d = list_entry(op, struct decom_op, op);
    const uint32_t both = STORE_NODE_DECOMMISSIONING | STORE_NODE_DECOMMISSIONED;
    struct store_node n;
    uint32_t set = 0, clear = 0;
    int r = store_node_get(d->store, txn, d->node, &n);

    if (r)
        return r;
    switch (d->kind) {
    case DK_START:
        if (!(n.flags & both))
            set = STORE_NODE_DECOMMISSIONING;
        break;
    case DK_FINISH:
        if (n.flags & STORE_NODE_DECOMMISSIONING) {
            set = STORE_NODE_DECOMMISSIONED;
            clear = STORE_NODE_DECOMMISSIONING;
        }
        break;
    case DK_UNDO:
        clear = both;
        break;
    }
    return store_node_set_flags(d->store, txn, d->node, set, clear, &d->flags);
}

static void decom_done(struct commit_op *op, int status)
{
    struct decom_op *d = list_entry(op, struct decom_op, op);
    struct repair *rp = d->rp;
    struct reg_node *n;
    enum reg_state before;

    if (d->kind == DK_FINISH)
        u64map_del(&rp->decom_busy, d->node);
    n = registry_get(rp->cfg.reg, d->node);
    if (status || !n) {
        if (status)
            log_warn("repair: decommission state of datanode %" PRIu64 " not committed: %s",
                     d->node, err_str(status));
        goto out;
    }
    before = n->state;
    registry_set_flags(rp->cfg.reg, d->node, d->flags);
    if (n->state != before) {
        log_info("repair: datanode %" PRIu64 " (%s) is %s", n->id, n->addr,
                 n->state == REG_DECOMMISSIONING  ? "decommissioning: its chunks move elsewhere"
                 : n->state == REG_DECOMMISSIONED ? "decommissioned: nothing on it is needed"
                                                  : "back in service");
    }
    if (n->state == REG_DECOMMISSIONED && before != REG_DECOMMISSIONED)
        chunkmap_drop_node(rp->cfg.cm, n->id); /* announces every chunk */
    else
        dirty_node_chunks(rp, n->id);
    if (n->state == REG_DECOMMISSIONING && before != REG_DECOMMISSIONING)
        n->decommission_left = repair_decommission_left(rp, n->id);
    replq_wake(rp->q, 0, true);
    rp->want_schedule = true;
    kick(rp);
out:
    if (d->cb)
        d->cb(d->arg, status, d->node);
    free(d);
}

static void decom_submit(struct repair *rp, uint64_t node, enum decom_kind kind, repair_decom_fn cb,
                         void *arg)
{
    struct decom_op *d = xcalloc(1, sizeof(*d));

    d->rp = rp;
    d->store = rp->cfg.store;
    d->node = node;
    d->kind = kind;
    d->cb = cb;
    d->arg = arg;
    d->op.apply = decom_apply;
    d->op.done = decom_done;
    commit_submit(rp->cfg.commit, &d->op);
}

void repair_decommission(struct repair *rp, uint64_t node, bool recommission, repair_decom_fn cb,
                         void *arg)
{
    decom_submit(rp, node, recommission ? DK_UNDO : DK_START, cb, arg);
}

uint64_t repair_decommission_left(struct repair *rp, uint64_t node)
{
    struct cm_view v = chunkctl_view(rp->cfg.ctl);
    struct cm_chunk *c;
    uint64_t left = 0;
    size_t i = 0;

    while ((c = chunkmap_node_next(rp->cfg.cm, node, &i))) {
        struct cm_chunk_health h;
        bool mine = false;

        for (uint32_t k = 0; k < c->nrep; k++)
            if (c->reps[k].node == node && cm_replica_current(c, &c->reps[k]))
                mine = true;
        if (!mine)
            continue;
        chunkmap_chunk_health(c, &v, &h);
        left += h.good < c->replication;
    }
    return left;
}

/* Counts what each leaving node still has to copy away, and marks a node
 * with nothing left decommissioned. The count walks the node's replicas, so
 * the next one waits DECOM_DUTY times as long as this one took. */
static void decommission_progress(struct repair *rp, uint64_t now)
{
    struct reg_node *n;
    size_t i = 0;
    uint64_t t0 = mono_ms();

    while ((n = registry_next(rp->cfg.reg, &i))) {
        if (n->state != REG_DECOMMISSIONING)
            continue;
        n->decommission_left = repair_decommission_left(rp, n->id);
        if (n->decommission_left || replq_out(rp->q, n->id) || u64map_get(&rp->decom_busy, n->id))
            continue;
        must(u64map_put(&rp->decom_busy, n->id, MARK));
        decom_submit(rp, n->id, DK_FINISH, NULL, NULL);
    }
    rp->next_decom_ms = now + MAX((uint64_t)DECOM_EVERY_MS, (mono_ms() - t0) * DECOM_DUTY);
}

/* ------------------------------------------------------------ lifecycle */

void repair_tick(struct repair *rp, uint64_t now)
{
    struct replq_ref *refs;
    size_t n, i = 0;
    uint64_t id;

    if (rp->stopping || rp->cfg.safe->on)
        return;
    refs = replq_expired(rp->q, now, rp->cfg.timeout_ms, &n);
    for (size_t k = 0; k < n; k++) {
        log_warn("repair: copy of chunk %" PRIx64 " from datanode %" PRIu64 " to %" PRIu64
                 " timed out; trying elsewhere",
                 refs[k].chunk, refs[k].src, refs[k].tgt);
        finish(rp, refs[k].chunk, refs[k].src, refs[k].tgt, REPLQ_BOTH_FAILED);
    }
    free(refs);
    while (u64map_next(&rp->later, &i, &id, NULL))
        mark_dirty(rp, id);
    u64map_free(&rp->later);
    u64map_init(&rp->later);
    replq_wake(rp->q, now, false);
    if (now >= rp->next_decom_ms)
        decommission_progress(rp, now);
    rp->want_schedule = true;
    run(rp);
}

struct repair *repair_new(const struct repair_config *cfg)
{
    struct repair *rp = xcalloc(1, sizeof(*rp));

    rp->cfg = *cfg;
    rp->chunk_size = store_get_settings(cfg->store)->chunk_size;
    rp->q = replq_new(NCLASSES, cfg->streams);
    rp->rng.s = cfg->seed ? cfg->seed : random_u64();
    u64map_init(&rp->dirty_set);
    u64map_init(&rp->later);
    u64map_init(&rp->decom_busy);
    rp->kick = xcalloc(1, sizeof(*rp->kick));
    if (uv_timer_init(cfg->loop, rp->kick) < 0) {
        /* Only on bad arguments; repair_tick still drives the work. */
        log_error("repair: cannot create a timer");
        free(rp->kick);
        rp->kick = NULL;
    } else {
        rp->kick->data = rp;
    }
    chunkmap_set_hook(cfg->cm, on_map_change, rp);
    return rp;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

void repair_stop(struct repair *rp)
{
    if (!rp || rp->stopping)
        return;
    rp->stopping = true;
    chunkmap_set_hook(rp->cfg.cm, NULL, NULL);
    if (rp->kick) {
        uv_timer_stop(rp->kick);
        uv_close((uv_handle_t *)rp->kick, free_handle);
        rp->kick = NULL;
    }
}

void repair_free(struct repair *rp)
{
    if (!rp)
        return;
    repair_stop(rp);
    if (rp->calls)
        log_error("repair: freed with %zu calls in flight", rp->calls);
    replq_free(rp->q);
    u64map_free(&rp->dirty_set);
    u64map_free(&rp->later);
    u64map_free(&rp->decom_busy);
    free(rp->dirty);
    free(rp);
}

void repair_get_stats(const struct repair *rp, struct repair_stats *out)
{
    *out = rp->stats;
    out->queued = replq_queued(rp->q);
    out->running = replq_running(rp->q);
}
