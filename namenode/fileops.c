/*
 * fileops: see fileops.h.
 *
 * GetChunksReq with for_write:
 *   VALIDATE --> LEASE (may wait for a recall or a fence) --> ALLOCATE the
 *   missing chunks of the range in parallel --> REPLY with fresh locations,
 *   and the chunks go on the lease's list of chunks given for writing.
 * Without for_write it answers at once from a read transaction and the
 * chunk map. A chunk being re-replicated is not handed out for writing
 * (-EAGAIN, the client retries): its copy must not miss a write.
 *
 * Replica order in a ChunkLoc: least loaded first, then most free space;
 * for a write this is the pipeline order.
 */
#include "fileops.h"

#include "errors.h"
#include "log.h"
#include "nsops.h"
#include "nstree.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FAILED 32u     /* RecoverChunkReq.failed entries accepted */
#define MAX_RENEW  100000u /* LeaseRenewReq.inos entries accepted */

static void reply_err(rpc_req *req, int r)
{
    rpc_reply_error(req, r, "%s", err_str(r));
}

static int regular_file(struct nn_core *core, uint64_t ino, struct store_inode *in)
{
    MDB_txn *txn;
    int r = store_read_begin(core->store, &txn);

    if (r)
        return r;
    r = store_inode_get(core->store, txn, ino, in);
    mdb_txn_abort(txn);
    if (r)
        return r;
    if (S_ISDIR(in->mode))
        return -EISDIR;
    return S_ISREG(in->mode) ? 0 : -EINVAL;
}

/* ------------------------------------------------------------ locations */

struct locbuf {
    Keel__ChunkLoc loc;
    Keel__Replica *reps;
    Keel__Replica **cur, **stale, **corrupt;
};

static void locbuf_free(struct locbuf *b)
{
    free(b->reps);
    free(b->cur);
    free(b->stale);
    free(b->corrupt);
}

static uint64_t node_free(const struct reg_node *n)
{
    return n->capacity > n->used ? n->capacity - n->used : 0;
}

/* Least loaded first, then most free space. */
static bool goes_before(const struct reg_node *a, const struct reg_node *b)
{
    if (a->load != b->load)
        return a->load < b->load;
    return node_free(a) > node_free(b);
}

static void set_replica(Keel__Replica *r, const struct reg_node *n)
{
    keel__replica__init(r);
    r->node_id = n->id;
    r->addr = (char *)n->addr;
    r->domain = (char *)n->domain;
}

/*
 * Fills b for one chunk. c is the chunk map entry (NULL if the map does not
 * know the chunk: no replicas then). With a view (GetChunksReq.detail), stale
 * and corrupt replicas and the placement are filled too. Strings point into
 * the registry and stay valid until the loop runs again.
 */
static void fill_loc(struct nn_core *core, struct locbuf *b, uint64_t index, uint64_t chunk_id,
                     uint64_t version, const struct cm_chunk *c, const struct cm_view *detail)
{
    const struct reg_node *order[64];
    size_t nrep = c ? MIN(c->nrep, ARRAY_SIZE(order)) : 0, k = 0;

    memset(b, 0, sizeof(*b));
    keel__chunk_loc__init(&b->loc);
    b->loc.index = index;
    b->loc.chunk_id = chunk_id;
    b->loc.version = c ? c->version : version;
    if (!c)
        return;
    b->reps = xcalloc(nrep + 1, sizeof(*b->reps));
    b->cur = xcalloc(nrep + 1, sizeof(*b->cur));
    b->stale = xcalloc(nrep + 1, sizeof(*b->stale));
    b->corrupt = xcalloc(nrep + 1, sizeof(*b->corrupt));
    for (size_t i = 0; i < nrep; i++) {
        const struct cm_replica *r = &c->reps[i];
        const struct reg_node *n = registry_get(core->reg, r->node);
        size_t j;

        if (!n)
            continue;
        if (cm_replica_current(c, r) && registry_node_live(n)) {
            for (j = b->loc.n_replicas; j > 0 && goes_before(n, order[j - 1]); j--)
                order[j] = order[j - 1];
            order[j] = n;
            b->loc.n_replicas++;
        } else if (!detail || !registry_node_live(n)) {
            continue; /* a gone node's replicas are nobody's business */
        } else if (r->corrupt) {
            set_replica(&b->reps[k], n);
            b->corrupt[b->loc.n_corrupt++] = &b->reps[k++];
        } else if (r->version < c->version) {
            set_replica(&b->reps[k], n);
            b->stale[b->loc.n_stale++] = &b->reps[k++];
        }
    }
    for (size_t i = 0; i < b->loc.n_replicas; i++) {
        set_replica(&b->reps[k], order[i]);
        b->cur[i] = &b->reps[k++];
    }
    b->loc.replicas = b->cur;
    b->loc.stale = b->stale;
    b->loc.corrupt = b->corrupt;
    if (detail) {
        struct cm_chunk_health h;

        chunkmap_chunk_health(c, detail, &h);
        b->loc.misplaced = h.misplaced;
        b->loc.replication = c->replication;
    }
}

/* ------------------------------------------------------------ GetChunks */

struct gcreq {
    struct nn_core *core;
    rpc_req *req;
    struct lease_waiter lw;
    uint64_t ino, client;
    uint64_t first, last; /* chunk indexes; empty when first > last */
    uint32_t replication;
    size_t pending;
    int status;
};

struct found {
    uint64_t *index, *id;
    size_t n, cap;
};

static int found_cb(uint64_t index, uint64_t chunk_id, void *arg)
{
    struct found *f = arg;

    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->index = xrealloc(f->index, f->cap * sizeof(*f->index));
        f->id = xrealloc(f->id, f->cap * sizeof(*f->id));
    }
    f->index[f->n] = index;
    f->id[f->n++] = chunk_id;
    return 0;
}

static void found_free(struct found *f)
{
    free(f->index);
    free(f->id);
}

static void gc_reply(struct gcreq *g)
{
    struct nn_core *core = g->core;
    Keel__GetChunksReq *rq = g->req->env->get_chunks_req;
    const bool for_write = rq->for_write; /* rq goes with an early reply */
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__GetChunksRep rep = KEEL__GET_CHUNKS_REP__INIT;
    struct found f = {0};
    struct store_inode in;
    struct locbuf *bufs = NULL;
    Keel__ChunkLoc **locs = NULL;
    struct cm_view view = {0};
    MDB_txn *txn;
    int r = store_read_begin(core->store, &txn);

    if (r)
        goto out;
    r = store_inode_get(core->store, txn, g->ino, &in);
    if (r == 0 && g->first <= g->last)
        r = store_file_chunks(core->store, txn, g->ino, g->first, g->last, found_cb, &f);
    bufs = xcalloc(f.n + 1, sizeof(*bufs));
    locs = xcalloc(f.n + 1, sizeof(*locs));
    if (rq->detail)
        view = chunkctl_view(core->ctl);
    for (size_t i = 0; r == 0 && i < f.n; i++) {
        struct cm_chunk *c = chunkmap_get(core->cm, f.id[i]);
        struct store_chunk sc = {0};

        if (!c) {
            r = store_chunk_get(core->store, txn, f.id[i], &sc);
            if (r)
                break;
        }
        fill_loc(core, &bufs[i], f.index[i], f.id[i], sc.version, c, rq->detail ? &view : NULL);
        locs[i] = &bufs[i].loc;
    }
    mdb_txn_abort(txn);
    if (r)
        goto out;
    for (size_t i = 0; for_write && i < f.n; i++) {
        if (repair_copying(core->repair, f.id[i])) {
            repair_writer_waits(core->repair, f.id[i]);
            if (g->req)
                rpc_reply_error(g->req, -EAGAIN, "chunk %" PRIx64 " is being re-replicated",
                                f.id[i]);
            g->req = NULL;
        }
    }
    if (!g->req)
        goto out;
    if (for_write && lease_holder(core->leases, g->ino) != g->client) {
        /* Lost while allocating: the next holder was fenced without these. */
        r = -EBUSY;
        goto out;
    }
    if (for_write)
        lease_given(core->leases, g->ino, g->client, f.id, f.n);
    rep.chunk_size = core->settings->chunk_size;
    rep.size = sizes_visible(core->sizes, in.ino, in.size);
    rep.chunks = locs;
    rep.n_chunks = f.n;
    env.body_case = KEEL__ENVELOPE__BODY_GET_CHUNKS_REP;
    env.get_chunks_rep = &rep;
    rpc_reply(g->req, &env, RPC_NO_PAYLOAD);
    g->req = NULL;
out:
    if (g->req)
        reply_err(g->req, r);
    for (size_t i = 0; bufs && i < f.n; i++)
        locbuf_free(&bufs[i]);
    free(bufs);
    free(locs);
    found_free(&f);
    free(g);
}

static void gc_alloc_done(void *arg, int status)
{
    struct gcreq *g = arg;

    if (status && !g->status)
        g->status = status;
    if (--g->pending > 0)
        return;
    if (g->status) {
        reply_err(g->req, g->status);
        free(g);
        return;
    }
    gc_reply(g);
}

/* With the lease held: allocates the missing chunks of the range. */
static void gc_allocate(struct gcreq *g)
{
    struct nn_core *core = g->core;
    struct found f = {0};
    MDB_txn *txn;
    size_t have = 0;
    int r = store_read_begin(core->store, &txn);

    if (r == 0) {
        r = store_file_chunks(core->store, txn, g->ino, g->first, g->last, found_cb, &f);
        mdb_txn_abort(txn);
    }
    if (r) {
        found_free(&f);
        reply_err(g->req, r);
        free(g);
        return;
    }
    g->pending = 1; /* held until every allocation is started */
    /* last is at most STORE_MAX_FILE_SIZE / chunk size: idx cannot wrap. */
    for (uint64_t idx = g->first; idx <= g->last; idx++) {
        if (have < f.n && f.index[have] == idx) {
            have++;
            continue;
        }
        g->pending++;
        r = chunkctl_alloc(core->ctl, g->ino, idx, g->replication, gc_alloc_done, g);
        if (r) {
            g->pending--;
            g->status = g->status ? g->status : r;
            break;
        }
    }
    found_free(&f);
    gc_alloc_done(g, 0);
}

static void gc_lease_cb(struct lease_waiter *w, int status)
{
    struct gcreq *g = list_entry(w, struct gcreq, lw);

    if (status) {
        reply_err(g->req, status);
        free(g);
        return;
    }
    gc_allocate(g);
}

static void h_get_chunks(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__GetChunksReq *rq = req->env->get_chunks_req;
    uint64_t cs = core->settings->chunk_size, end;
    struct store_inode in;
    struct gcreq *g;
    int r = regular_file(core, rq->ino, &in);

    if (r) {
        reply_err(req, r);
        return;
    }
    if (rq->offset > UINT64_MAX - rq->length) {
        rpc_reply_error(req, -EINVAL, "offset + length overflows");
        return;
    }
    end = rq->offset + rq->length;
    if (rq->for_write && end > STORE_MAX_FILE_SIZE) {
        reply_err(req, -EFBIG);
        return;
    }
    if (rq->for_write && rq->client_id == 0) {
        rpc_reply_error(req, -EINVAL, "a write needs the client_id of a write lease");
        return;
    }
    g = xcalloc(1, sizeof(*g));
    g->core = core;
    g->req = req;
    g->ino = in.ino;
    g->client = rq->client_id;
    g->replication = in.replication;
    g->first = 1;
    g->last = 0;
    if (rq->length > 0 && rq->offset < STORE_MAX_FILE_SIZE) {
        g->first = rq->offset / cs;
        g->last = (MIN(end, STORE_MAX_FILE_SIZE) - 1) / cs;
        if (g->last - g->first >= FILEOPS_MAX_CHUNKS) {
            rpc_reply_error(req, -EINVAL, "the range spans more than %u chunks",
                            FILEOPS_MAX_CHUNKS);
            free(g);
            return;
        }
    }
    if (!rq->for_write) {
        gc_reply(g);
        return;
    }
    g->lw.cb = gc_lease_cb;
    r = lease_acquire(core->leases, g->ino, g->client, mono_ms(), &g->lw);
    if (r == -EINPROGRESS)
        return;
    if (r) {
        reply_err(req, r);
        free(g);
        return;
    }
    gc_allocate(g);
}

/* --------------------------------------------------------- RecoverChunk */

struct rcreq {
    struct nn_core *core;
    rpc_req *req;
    struct lease_waiter lw;
    uint64_t ino, chunk_id, client;
};

static void rc_reply_loc(struct rcreq *rc, const struct cm_chunk *c)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__RecoverChunkRep rep = KEEL__RECOVER_CHUNK_REP__INIT;
    struct locbuf b;

    fill_loc(rc->core, &b, c->index, c->id, c->version, c, NULL);
    lease_given(rc->core->leases, rc->ino, rc->client, &c->id, 1);
    rep.chunk = &b.loc;
    env.body_case = KEEL__ENVELOPE__BODY_RECOVER_CHUNK_REP;
    env.recover_chunk_rep = &rep;
    rpc_reply(rc->req, &env, RPC_NO_PAYLOAD);
    locbuf_free(&b);
}

static void rc_bumped(void *arg, int status, const struct chunkctl_bump_result *res)
{
    struct rcreq *rc = arg;
    struct cm_chunk *c = chunkmap_get(rc->core->cm, rc->chunk_id);
    uint32_t need;

    if (status == -ENODATA) {
        rpc_reply_error(rc->req, -EIO, "no replica of chunk %" PRIx64 " survives", rc->chunk_id);
    } else if (status) {
        reply_err(rc->req, status);
    } else if (!c) {
        reply_err(rc->req, -ENOENT);
    } else if (lease_holder(rc->core->leases, rc->ino) != rc->client) {
        rpc_reply_error(rc->req, -EBUSY, "the write lease was lost during the recovery");
    } else {
        need = MIN(rc->core->cfg->min_replicas, c->replication);
        if (res->ok < need) {
            log_warn("fileops: recovery of chunk %" PRIx64
                     " failed: %u replicas took version %" PRIu64 ", %u needed",
                     rc->chunk_id, res->ok, c->version, need);
            rpc_reply_error(rc->req, -EIO,
                            "only %u current replicas of chunk %" PRIx64 " left, %u needed",
                            res->ok, rc->chunk_id, need);
        } else
            rc_reply_loc(rc, c);
    }
    free(rc);
}

/* Current replicas on live nodes that the client did not name as failed. */
static uint32_t survivors(struct nn_core *core, const struct cm_chunk *c, const uint64_t *failed,
                          size_t nfailed)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < c->nrep; i++) {
        const struct cm_replica *r = &c->reps[i];
        struct reg_node *node = registry_get(core->reg, r->node);
        bool named = false;

        for (size_t k = 0; k < nfailed && !named; k++)
            named = failed[k] == r->node;
        n += !named && cm_replica_current(c, r) && node && registry_node_live(node);
    }
    return n;
}

static void rc_go(struct rcreq *rc)
{
    Keel__RecoverChunkReq *rq = rc->req->env->recover_chunk_req;
    struct cm_chunk *c = chunkmap_get(rc->core->cm, rc->chunk_id);
    uint32_t need, left;
    int r;

    if (!c) {
        reply_err(rc->req, -ENOENT);
        free(rc);
        return;
    }
    if (rq->version < c->version) {
        /* Recovered already, fenced or being copied: the client refetches. */
        rpc_reply_error(rc->req, -ESTALE,
                        "chunk %" PRIx64 " is at version %" PRIu64 ", not %" PRIu64, rc->chunk_id,
                        c->version, rq->version);
        free(rc);
        return;
    }
    if (repair_copying(rc->core->repair, rc->chunk_id)) {
        repair_writer_waits(rc->core->repair, rc->chunk_id);
        rpc_reply_error(rc->req, -EAGAIN, "chunk %" PRIx64 " is being re-replicated", rc->chunk_id);
        free(rc);
        return;
    }
    /* A client's word alone never takes a chunk below min-replicas. */
    need = MIN(rc->core->cfg->min_replicas, c->replication);
    left = survivors(rc->core, c, rq->failed, rq->n_failed);
    if (left < need) {
        log_warn("fileops: recovery of chunk %" PRIx64 " v%" PRIu64
                 " refused: %u of its current replicas would be left, %u needed",
                 rc->chunk_id, c->version, left, need);
        rpc_reply_error(rc->req, -EIO,
                        "only %u current replicas of chunk %" PRIx64 " would be left, %u needed",
                        left, rc->chunk_id, need);
        free(rc);
        return;
    }
    r = chunkctl_bump(rc->core->ctl, rc->chunk_id, rq->failed, rq->n_failed, rc_bumped, rc);
    if (r) {
        reply_err(rc->req, r);
        free(rc);
    }
}

static void rc_lease_cb(struct lease_waiter *w, int status)
{
    struct rcreq *rc = list_entry(w, struct rcreq, lw);

    if (status) {
        reply_err(rc->req, status);
        free(rc);
        return;
    }
    rc_go(rc);
}

static void h_recover_chunk(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__RecoverChunkReq *rq = req->env->recover_chunk_req;
    struct cm_chunk *c = chunkmap_get(core->cm, rq->chunk_id);
    struct rcreq *rc;
    int r;

    if (!c || c->ino != rq->ino) {
        rpc_reply_error(req, -ENOENT, "no chunk %" PRIx64 " in inode %" PRIu64, rq->chunk_id,
                        rq->ino);
        return;
    }
    if (rq->n_failed > MAX_FAILED || rq->client_id == 0) {
        rpc_reply_error(req, -EINVAL, "bad failed list or client_id");
        return;
    }
    if (rq->version > c->version) {
        rpc_reply_error(req, -ESTALE, "version %" PRIu64 " is newer than the chunk's", rq->version);
        return;
    }
    rc = xcalloc(1, sizeof(*rc));
    rc->core = core;
    rc->req = req;
    rc->ino = rq->ino;
    rc->chunk_id = rq->chunk_id;
    rc->client = rq->client_id;
    rc->lw.cb = rc_lease_cb;
    r = lease_acquire(core->leases, rq->ino, rq->client_id, mono_ms(), &rc->lw);
    if (r == -EINPROGRESS)
        return;
    if (r) {
        reply_err(req, r);
        free(rc);
        return;
    }
    rc_go(rc);
}

/* --------------------------------------------------------------- Extend */

struct exreq {
    struct commit_op op;
    struct nn_core *core;
    struct store *store;
    rpc_req *req;
    struct lease_waiter lw;
    uint64_t ino, size, result;
    int64_t now;
    bool durable, touch;
};

static void ex_reply(struct exreq *x, uint64_t size)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ExtendRep rep = KEEL__EXTEND_REP__INIT;

    rep.size = size;
    env.body_case = KEEL__ENVELOPE__BODY_EXTEND_REP;
    env.extend_rep = &rep;
    rpc_reply(x->req, &env, RPC_NO_PAYLOAD);
}

static int ex_apply(MDB_txn *txn, struct commit_op *op)
{
    struct exreq *x = list_entry(op, struct exreq, op);

    return nstree_extend(x->store, txn, x->ino, x->size, x->now, x->touch, &x->result);
}

static void ex_done(struct commit_op *op, int status)
{
    struct exreq *x = list_entry(op, struct exreq, op);

    if (status)
        reply_err(x->req, status);
    else
        ex_reply(x, sizes_visible(x->core->sizes, x->ino, x->result));
    free(x);
}

/* With the lease held: a size that need not be durable is answered from
 * memory once visible; a durable one (or one that must queue behind a
 * truncate) is answered after its commit. */
static void ex_submit(struct exreq *x)
{
    struct store_inode in;
    uint64_t visible;
    int r;

    x->now = now_ns();
    if (!x->durable) {
        r = regular_file(x->core, x->ino, &in);
        if (r) {
            reply_err(x->req, r);
            free(x);
            return;
        }
        if (sizes_grow(x->core->sizes, x->ino, in.size, x->size, x->now, x->touch, &visible) == 0) {
            ex_reply(x, visible);
            free(x);
            return;
        }
    }
    x->op.apply = ex_apply;
    x->op.done = ex_done;
    commit_submit(x->core->commit, &x->op);
}

static void ex_lease_cb(struct lease_waiter *w, int status)
{
    struct exreq *x = list_entry(w, struct exreq, lw);

    if (status) {
        reply_err(x->req, status);
        free(x);
        return;
    }
    ex_submit(x);
}

static void h_extend(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__ExtendReq *rq = req->env->extend_req;
    struct store_inode in;
    struct exreq *x;
    int r = regular_file(core, rq->ino, &in);

    if (r == 0 && rq->size > STORE_MAX_FILE_SIZE)
        r = -EFBIG;
    if (r == 0 && rq->client_id == 0)
        r = -EINVAL;
    /* A touch alone from a client that no longer writes the file (its lease
     * went to another) must not ask for the lease back. */
    if (r == 0 && rq->touch && rq->size <= sizes_visible(core->sizes, rq->ino, in.size) &&
        lease_holder(core->leases, rq->ino) != rq->client_id)
        r = -EBUSY;
    if (r) {
        reply_err(req, r);
        return;
    }
    x = xcalloc(1, sizeof(*x));
    x->core = core;
    x->store = core->store;
    x->req = req;
    x->ino = rq->ino;
    x->size = rq->size;
    x->durable = rq->durable;
    x->touch = rq->touch;
    x->lw.cb = ex_lease_cb;
    r = lease_acquire(core->leases, rq->ino, rq->client_id, mono_ms(), &x->lw);
    if (r == -EINPROGRESS)
        return;
    if (r) {
        reply_err(req, r);
        free(x);
        return;
    }
    ex_submit(x);
}

/* ----------------------------------------------------- small requests */

static void h_bad_replica(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__BadReplicaReq *rq = req->env->bad_replica_req;
    struct cm_chunk *c = chunkmap_get(core->cm, rq->chunk_id);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__BadReplicaRep rep = KEEL__BAD_REPLICA_REP__INIT;

    if (!c || !registry_get(core->reg, rq->node_id)) {
        rpc_reply_error(req, -ENOENT, "unknown chunk or node");
        return;
    }
    /* A report about an older version concerns a replica already stale. */
    if (rq->version == c->version && chunkmap_mark_corrupt(core->cm, c, rq->node_id))
        log_warn("fileops: replica of chunk %" PRIx64 " on datanode %" PRIu64
                 " reported bad: %.100s",
                 rq->chunk_id, rq->node_id, rq->reason);
    env.body_case = KEEL__ENVELOPE__BODY_BAD_REPLICA_REP;
    env.bad_replica_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void h_lease_renew(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__LeaseRenewReq *rq = req->env->lease_renew_req;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__LeaseRenewRep rep = KEEL__LEASE_RENEW_REP__INIT;
    uint64_t now = mono_ms();
    uint64_t *lost;

    if (rq->client_id == 0 || rq->n_inos > MAX_RENEW) {
        rpc_reply_error(req, -EINVAL, "bad client_id or too many inodes");
        return;
    }
    lost = xcalloc(rq->n_inos + 1, sizeof(*lost));
    for (size_t i = 0; i < rq->n_inos; i++)
        if (lease_renew(core->leases, rq->client_id, rq->inos[i], now))
            lost[rep.n_lost++] = rq->inos[i];
    rep.lost = lost;
    env.body_case = KEEL__ENVELOPE__BODY_LEASE_RENEW_REP;
    env.lease_renew_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
    free(lost);
}

static void h_lease_release(rpc_req *req, void *ctx)
{
    struct nn_core *core = ctx;
    Keel__LeaseReleaseReq *rq = req->env->lease_release_req;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__LeaseReleaseRep rep = KEEL__LEASE_RELEASE_REP__INIT;

    /* Releasing a lease one does not hold is not an error: it is gone. */
    lease_release(core->leases, rq->client_id, rq->ino, mono_ms());
    env.body_case = KEEL__ENVELOPE__BODY_LEASE_RELEASE_REP;
    env.lease_release_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

/* --------------------------------------------------------- lease actions */

struct recall {
    struct nn_core *core;
    uint64_t ino;
};

static void recall_done(int status, rpc_msg *reply, void *arg)
{
    struct recall *rc = arg;
    bool released = false;

    if (status == 0 && reply->env->body_case == KEEL__ENVELOPE__BODY_LEASE_RECALL_REP)
        released = reply->env->lease_recall_rep->released;
    else if (status == 0)
        status = -EPROTO;
    lease_recall_done(rc->core->leases, rc->ino, status, released, mono_ms());
    free(rc);
}

static int op_recall(void *ctx, uint64_t holder, uint64_t ino)
{
    struct nn_core *core = ctx;
    rpc_conn *conn = nsops_client_conn(core->ns, holder);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__LeaseRecallReq body = KEEL__LEASE_RECALL_REQ__INIT;
    struct rpc_call_opts o = {.timeout_ms = (uint32_t)MAX(core->cfg->lease_ms / 2, 1000)};
    struct recall *rc;
    int r;

    if (!conn)
        return -ENOTCONN;
    rc = xcalloc(1, sizeof(*rc));
    rc->core = core;
    rc->ino = ino;
    body.ino = ino;
    env.body_case = KEEL__ENVELOPE__BODY_LEASE_RECALL_REQ;
    env.lease_recall_req = &body;
    r = rpc_call(conn, &env, RPC_NO_PAYLOAD, &o, recall_done, rc);
    if (r)
        free(rc);
    return r;
}

struct fence {
    struct nn_core *core;
    uint64_t ino;
    size_t pending;
    int status;
};

static void fence_bumped(void *arg, int status, const struct chunkctl_bump_result *res)
{
    struct fence *f = arg;

    /* Gone, or nothing live to fence: no late write can land anywhere. */
    if (status && status != -ENOENT && status != -ENODATA && !f->status)
        f->status = status;
    if (--f->pending > 0)
        return;
    lease_fence_done(f->core->leases, f->ino, f->status, mono_ms());
    free(f);
}

static void op_fence(void *ctx, uint64_t ino, const uint64_t *chunks, size_t n, bool all)
{
    struct nn_core *core = ctx;
    struct fence *f = xcalloc(1, sizeof(*f));
    struct found everything = {0};
    MDB_txn *txn;
    int r;

    f->core = core;
    f->ino = ino;
    f->pending = 1; /* held until every bump is started */
    if (all) {
        r = store_read_begin(core->store, &txn);
        if (r == 0) {
            r = store_file_chunks(core->store, txn, ino, 0, UINT64_MAX, found_cb, &everything);
            mdb_txn_abort(txn);
        }
        if (r && r != -ENOENT)
            f->status = r;
        chunks = everything.id;
        n = everything.n;
    }
    log_info("fileops: fencing %zu chunks of inode %" PRIu64 " before a new writer", n, ino);
    for (size_t i = 0; i < n && !f->status; i++) {
        f->pending++;
        r = chunkctl_bump(core->ctl, chunks[i], NULL, 0, fence_bumped, f);
        if (r) {
            f->pending--;
            if (r != -ENOENT)
                f->status = r;
        }
    }
    found_free(&everything);
    fence_bumped(f, 0, NULL);
}

struct lease_ops fileops_lease_ops(struct nn_core *core)
{
    return (struct lease_ops){op_recall, op_fence, core};
}

const rpc_handler fileops_handlers[] = {
    {KEEL__ENVELOPE__BODY_GET_CHUNKS_REQ, "get_chunks", h_get_chunks},
    {KEEL__ENVELOPE__BODY_RECOVER_CHUNK_REQ, "recover_chunk", h_recover_chunk},
    {KEEL__ENVELOPE__BODY_EXTEND_REQ, "extend", h_extend},
    {KEEL__ENVELOPE__BODY_BAD_REPLICA_REQ, "bad_replica", h_bad_replica},
    {KEEL__ENVELOPE__BODY_LEASE_RENEW_REQ, "lease_renew", h_lease_renew},
    {KEEL__ENVELOPE__BODY_LEASE_RELEASE_REQ, "lease_release", h_lease_release},
};

const size_t fileops_nhandlers = ARRAY_SIZE(fileops_handlers);
