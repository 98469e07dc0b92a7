/*
 * nsops: the namespace service; see nsops.h.
 *
 * A mutation is a struct mut: built on the loop from the request, applied
 * by the commit worker (its apply function reads only the request and the
 * mut, never loop state), and answered from the commit's completion. Those
 * that need the write lease (truncating create, setattr of size) wait for
 * it first through an embedded lease waiter; a shrink then holds the last
 * chunk's trim until the commit is done.
 *
 *   BUILD --[LEASE]--[TRIM]--> COMMIT (worker) --> REPLY (loop) --> freed
 */
#include "nsops.h"

#include "errors.h"
#include "log.h"
#include "nstree.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define READDIR_DEFAULT 500u
#define READDIR_MAX     2000u /* keeps a reply well under the 1 MiB header limit */

struct nsclient {
    uint64_t id;
    rpc_conn *conn; /* referenced */
};

struct nsops {
    struct nn_core *core;
    struct u64map clients;        /* client id -> struct nsclient */
    struct cm_health_memo health; /* Status's chunk counts */
};

static struct nn_core *core_of(void *ctx)
{
    return ctx;
}

static void reply_err(rpc_req *req, int r)
{
    rpc_reply_error(req, r, "%s", err_str(r));
}

static void fill_attr(Keel__Attr *a, const struct store_inode *in)
{
    keel__attr__init(a);
    a->ino = in->ino;
    a->mode = in->mode;
    a->nlink = in->nlink;
    a->uid = in->uid;
    a->gid = in->gid;
    a->size = in->size;
    a->atime_ns = in->atime;
    a->mtime_ns = in->mtime;
    a->ctime_ns = in->ctime;
    a->replication = in->replication;
    a->chunks = in->nchunks;
}

/* ------------------------------------------------------------- clients */

struct nsops *nsops_new(struct nn_core *core)
{
    struct nsops *ns = xcalloc(1, sizeof(*ns));

    ns->core = core;
    u64map_init(&ns->clients);
    return ns;
}

void nsops_free(struct nsops *ns)
{
    size_t i = 0;
    void *v;

    if (!ns)
        return;
    while (u64map_next(&ns->clients, &i, NULL, &v)) {
        struct nsclient *cl = v;

        if (cl->conn)
            rpc_conn_unref(cl->conn);
        free(cl);
    }
    u64map_free(&ns->clients);
    free(ns);
}

rpc_conn *nsops_client_conn(const struct nsops *ns, uint64_t client_id)
{
    struct nsclient *cl = client_id ? u64map_get(&ns->clients, client_id) : NULL;

    return cl && cl->conn && rpc_conn_is_open(cl->conn) ? cl->conn : NULL;
}

void nsops_conn_closed(struct nsops *ns, uint64_t client_id, const rpc_conn *conn)
{
    struct nsclient *cl = client_id ? u64map_get(&ns->clients, client_id) : NULL;

    if (!cl || cl->conn != conn)
        return;
    u64map_del(&ns->clients, client_id);
    rpc_conn_unref(cl->conn);
    free(cl);
}

static void h_hello(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__HelloReq *h = req->env->hello_req;
    struct nn_peer *peer = rpc_conn_data(req->conn);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HelloRep rep = KEEL__HELLO_REP__INIT;
    struct nsclient *cl;

    if (h->client_id == 0) {
        rpc_reply_error(req, -EINVAL, "client_id must not be 0");
        return;
    }
    cl = u64map_get(&core->ns->clients, h->client_id);
    if (!cl) {
        cl = xcalloc(1, sizeof(*cl));
        cl->id = h->client_id;
        if (u64map_put(&core->ns->clients, cl->id, cl) < 0) {
            free(cl);
            rpc_reply_error(req, -ENOMEM, "out of memory");
            return;
        }
    }
    if (cl->conn != req->conn) {
        rpc_conn_ref(req->conn);
        if (cl->conn)
            rpc_conn_unref(cl->conn);
        cl->conn = req->conn;
    }
    if (peer)
        peer->client_id = h->client_id;
    log_debug("nsops: client %" PRIx64 " (%s) on %s", h->client_id, h->name,
              rpc_conn_peer(req->conn));
    rep.cluster_id = (char *)core->settings->cluster_id;
    rep.chunk_size = core->settings->chunk_size;
    rep.lease_ms = (uint32_t)core->cfg->lease_ms;
    rep.min_replicas = core->cfg->min_replicas;
    env.body_case = KEEL__ENVELOPE__BODY_HELLO_REP;
    env.hello_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

/* ----------------------------------------------------------------- reads */

static void h_stat(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatRep rep = KEEL__STAT_REP__INIT;
    Keel__Attr attr;
    struct store_inode in;
    MDB_txn *txn;
    int r = store_read_begin(core->store, &txn);

    if (r == 0) {
        r = nstree_stat(core->store, txn, req->env->stat_req->path, &in);
        mdb_txn_abort(txn);
    }
    if (r) {
        reply_err(req, r);
        return;
    }
    sizes_apply(core->sizes, &in);
    fill_attr(&attr, &in);
    rep.attr = &attr;
    env.body_case = KEEL__ENVELOPE__BODY_STAT_REP;
    env.stat_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

struct listing {
    const struct sizes *sizes;
    Keel__DirEntry *ents;
    Keel__DirEntry **ptrs;
    Keel__Attr *attrs;
    char *names; /* STORE_NAME_MAX + 1 per entry */
    size_t n;
};

static void list_entry_cb(const char *name, size_t len, const struct store_inode *in, void *arg)
{
    struct listing *l = arg;
    char *dst = l->names + l->n * (STORE_NAME_MAX + 1);
    struct store_inode seen = *in;

    memcpy(dst, name, len);
    dst[len] = '\0';
    keel__dir_entry__init(&l->ents[l->n]);
    sizes_apply(l->sizes, &seen);
    fill_attr(&l->attrs[l->n], &seen);
    l->ents[l->n].name = dst;
    l->ents[l->n].attr = &l->attrs[l->n];
    l->ptrs[l->n] = &l->ents[l->n];
    l->n++;
}

static void h_readdir(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__ReaddirReq *rq = req->env->readdir_req;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReaddirRep rep = KEEL__READDIR_REP__INIT;
    size_t max = rq->max ? MIN(rq->max, READDIR_MAX) : READDIR_DEFAULT;
    struct listing l = {.sizes = core->sizes};
    MDB_txn *txn;
    bool eof = false;
    int r;

    l.ents = xcalloc(max, sizeof(*l.ents));
    l.ptrs = xcalloc(max, sizeof(*l.ptrs));
    l.attrs = xcalloc(max, sizeof(*l.attrs));
    l.names = xmalloc(max * (STORE_NAME_MAX + 1));
    r = store_read_begin(core->store, &txn);
    if (r == 0) {
        r = nstree_readdir(core->store, txn, rq->path, rq->after, max, list_entry_cb, &l, &eof);
        mdb_txn_abort(txn);
    }
    if (r) {
        reply_err(req, r);
        goto out;
    }
    rep.entries = l.ptrs;
    rep.n_entries = l.n;
    rep.eof = eof;
    env.body_case = KEEL__ENVELOPE__BODY_READDIR_REP;
    env.readdir_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
out:
    free(l.names);
    free(l.attrs);
    free(l.ptrs);
    free(l.ents);
}

static void h_readlink(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReadlinkRep rep = KEEL__READLINK_REP__INIT;
    char target[NSTREE_SYMLINK_MAX + 1];
    MDB_txn *txn;
    int r = store_read_begin(core->store, &txn);

    if (r == 0) {
        r = nstree_readlink(core->store, txn, req->env->readlink_req->path, target, sizeof(target));
        mdb_txn_abort(txn);
    }
    if (r) {
        reply_err(req, r);
        return;
    }
    rep.target = target;
    env.body_case = KEEL__ENVELOPE__BODY_READLINK_REP;
    env.readlink_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void h_statfs(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatfsRep rep = KEEL__STATFS_REP__INIT;
    struct reg_node *n;
    MDB_txn *txn;
    size_t i = 0;
    int r;

    while ((n = registry_next(core->reg, &i))) {
        if (!registry_node_live(n))
            continue;
        rep.capacity += n->capacity;
        rep.used += MIN(n->used, n->capacity);
        rep.live_nodes++;
    }
    rep.free = rep.capacity - rep.used;
    rep.chunk_size = core->settings->chunk_size;
    rep.replication = core->settings->replication;
    r = store_read_begin(core->store, &txn);
    if (r == 0) {
        r = store_count_inodes(core->store, txn, &rep.files);
        mdb_txn_abort(txn);
    }
    if (r) {
        reply_err(req, r);
        return;
    }
    env.body_case = KEEL__ENVELOPE__BODY_STATFS_REP;
    env.statfs_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void fill_node_status(struct nn_core *core, Keel__NodeStatus *st, struct reg_node *n,
                             uint64_t now)
{
    keel__node_status__init(st);
    st->node_id = n->id;
    st->addr = n->addr;
    st->domain = n->domain;
    st->state = (Keel__NodeState)n->state;
    st->capacity = n->capacity;
    st->used = n->used;
    st->chunks = chunkmap_node_replicas(core->cm, n->id);
    st->since_heartbeat_ms = now > n->last_seen_ms ? now - n->last_seen_ms : 0;
    st->load = n->load;
    if (n->state == REG_DECOMMISSIONING)
        st->decommission_left = n->decommission_left;
}

static void h_status(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatusRep rep = KEEL__STATUS_REP__INIT;
    size_t count = registry_count(core->reg), i = 0, k = 0;
    Keel__NodeStatus *st = xcalloc(count + 1, sizeof(*st));
    Keel__NodeStatus **ptrs = xcalloc(count + 1, sizeof(*ptrs));
    struct cm_view view = chunkctl_view(core->ctl);
    uint64_t now = mono_ms();
    struct repair_stats rs;
    struct cm_health h;
    struct reg_node *n;
    MDB_txn *txn;
    int r;

    while ((n = registry_next(core->reg, &i)) && k < count) {
        fill_node_status(core, &st[k], n, now);
        ptrs[k] = &st[k];
        k++;
    }
    chunkmap_health_recent(core->cm, &view, chunkctl_view_digest(core->ctl), mono_ns(),
                           &core->ns->health, &h);
    repair_get_stats(core->repair, &rs);
    rep.cluster_id = (char *)core->settings->cluster_id;
    rep.chunk_size = core->settings->chunk_size;
    rep.replication = core->settings->replication;
    rep.min_replicas = core->cfg->min_replicas;
    rep.safe_mode = core->safe.on;
    rep.nodes = ptrs;
    rep.n_nodes = k;
    rep.chunks = h.chunks;
    rep.healthy = h.healthy;
    rep.under_replicated = h.under_replicated;
    rep.missing = h.missing;
    rep.misplaced = h.misplaced;
    rep.stale_pending = h.stale;
    rep.corrupt = h.corrupt;
    rep.repl_queue = rs.queued;
    rep.repl_running = rs.running;
    r = store_read_begin(core->store, &txn);
    if (r == 0) {
        r = store_count_inodes(core->store, txn, &rep.files);
        mdb_txn_abort(txn);
    }
    if (r) {
        reply_err(req, r);
    } else {
        env.body_case = KEEL__ENVELOPE__BODY_STATUS_REP;
        env.status_rep = &rep;
        rpc_reply(req, &env, RPC_NO_PAYLOAD);
    }
    free(ptrs);
    free(st);
}

struct decomreq {
    struct nn_core *core;
    rpc_req *req;
};

static void decom_done(void *arg, int status, uint64_t node)
{
    struct decomreq *d = arg;
    struct reg_node *n = registry_get(d->core->reg, node);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__DecommissionRep rep = KEEL__DECOMMISSION_REP__INIT;
    Keel__NodeStatus st;

    if (status == 0 && !n)
        status = -ENOENT;
    if (status == -ENOENT) {
        rpc_reply_error(d->req, -ENOENT, "no datanode %" PRIu64, node);
    } else if (status) {
        reply_err(d->req, status);
    } else {
        fill_node_status(d->core, &st, n, mono_ms());
        rep.node = &st;
        env.body_case = KEEL__ENVELOPE__BODY_DECOMMISSION_REP;
        env.decommission_rep = &rep;
        rpc_reply(d->req, &env, RPC_NO_PAYLOAD);
    }
    free(d);
}

static void h_decommission(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__DecommissionReq *rq = req->env->decommission_req;
    struct decomreq *d;

    if (!registry_get(core->reg, rq->node_id)) {
        rpc_reply_error(req, -ENOENT, "no datanode %" PRIu64, rq->node_id);
        return;
    }
    d = xcalloc(1, sizeof(*d));
    d->core = core;
    d->req = req;
    log_info("nsops: %s of datanode %" PRIu64 " asked by %s",
             rq->recommission ? "recommission" : "decommission", rq->node_id,
             rpc_conn_peer(req->conn));
    repair_decommission(core->repair, rq->node_id, rq->recommission, decom_done, d);
}

/* ------------------------------------------------------------- mutations */

struct mut;

struct mut_kind {
    const char *name;
    /* Worker thread: may read only m and m->req. */
    int (*apply)(struct mut *m, MDB_txn *txn);
    /* Loop thread, after the commit: answers m->req. */
    void (*reply)(struct mut *m);
};

struct mut {
    struct commit_op op;
    struct nn_core *core;
    struct store *store;
    rpc_req *req;
    const struct mut_kind *kind;
    int64_t now;
    struct store_inode attr;
    struct store_chunk_list freed;
    bool created;
    struct nstree_setattr_args sa;
    struct chunkctl_change *trim; /* held until the commit is done */
    struct lease_waiter lw;
    uint64_t ino; /* the file whose lease is needed */
    uint64_t client_id;
    void (*after_lease)(struct mut *m);
    uint64_t held;   /* inode with a sizes hold, or 0 */
    bool supersedes; /* it sets the held inode's size */
};

static struct mut *mut_new(struct nn_core *core, rpc_req *req, const struct mut_kind *kind)
{
    struct mut *m = xcalloc(1, sizeof(*m));

    m->core = core;
    m->store = core->store;
    m->req = req;
    m->kind = kind;
    m->now = now_ns();
    return m;
}

/* Takes a sizes hold on ino: a grown size of it commits first. */
static void mut_hold(struct mut *m, uint64_t ino, bool supersedes)
{
    sizes_hold(m->core->sizes, ino);
    m->held = ino;
    m->supersedes = supersedes;
}

static void mut_unhold(struct mut *m, int status)
{
    if (m->held)
        sizes_release(m->core->sizes, m->held, status == 0 && m->supersedes);
    m->held = 0;
}

static void mut_free(struct mut *m)
{
    mut_unhold(m, -ECANCELED);
    store_chunk_list_free(&m->freed);
    free(m);
}

static int mut_apply(MDB_txn *txn, struct commit_op *op)
{
    struct mut *m = list_entry(op, struct mut, op);
    int r = m->kind->apply(m, txn);

    if (r)
        m->freed.n = 0; /* rolled back: nothing was freed */
    return r;
}

static void mut_done(struct commit_op *op, int status)
{
    struct mut *m = list_entry(op, struct mut, op);

    if (m->trim)
        chunkctl_trim_finish(m->core->ctl, m->trim, status);
    mut_unhold(m, status);
    if (status == 0 && m->freed.n)
        chunkctl_forget(m->core->ctl, &m->freed);
    if (status)
        reply_err(m->req, status);
    else
        m->kind->reply(m);
    mut_free(m);
}

static void mut_submit(struct mut *m)
{
    m->op.apply = mut_apply;
    m->op.done = mut_done;
    commit_submit(m->core->commit, &m->op);
}

static void mut_fail(struct mut *m, int r)
{
    reply_err(m->req, r);
    mut_free(m);
}

static void mut_lease_cb(struct lease_waiter *w, int status)
{
    struct mut *m = list_entry(w, struct mut, lw);

    if (status) {
        mut_fail(m, status);
        return;
    }
    m->after_lease(m);
}

/* Runs next once m->client_id holds the lease on m->ino. */
static void mut_with_lease(struct mut *m, void (*next)(struct mut *m))
{
    int r;

    if (m->client_id == 0) {
        rpc_reply_error(m->req, -EINVAL, "a size change needs the client_id of a write lease");
        mut_free(m);
        return;
    }
    m->after_lease = next;
    m->lw.cb = mut_lease_cb;
    r = lease_acquire(m->core->leases, m->ino, m->client_id, mono_ms(), &m->lw);
    if (r == -EINPROGRESS)
        return; /* the callback continues (it may already have run) */
    if (r) {
        mut_fail(m, r);
        return;
    }
    next(m);
}

static void reply_attr(struct mut *m, Keel__Envelope__BodyCase body)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__MkdirRep mk = KEEL__MKDIR_REP__INIT;
    Keel__LinkRep ln = KEEL__LINK_REP__INIT;
    Keel__SymlinkRep sl = KEEL__SYMLINK_REP__INIT;
    Keel__SetattrRep sa = KEEL__SETATTR_REP__INIT;
    Keel__CreateRep cr = KEEL__CREATE_REP__INIT;
    Keel__Attr attr;

    sizes_apply(m->core->sizes, &m->attr);
    fill_attr(&attr, &m->attr);
    env.body_case = body;
    switch (body) {
    case KEEL__ENVELOPE__BODY_MKDIR_REP:
        mk.attr = &attr;
        env.mkdir_rep = &mk;
        break;
    case KEEL__ENVELOPE__BODY_LINK_REP:
        ln.attr = &attr;
        env.link_rep = &ln;
        break;
    case KEEL__ENVELOPE__BODY_SYMLINK_REP:
        sl.attr = &attr;
        env.symlink_rep = &sl;
        break;
    case KEEL__ENVELOPE__BODY_SETATTR_REP:
        sa.attr = &attr;
        env.setattr_rep = &sa;
        break;
    case KEEL__ENVELOPE__BODY_CREATE_REP:
        cr.attr = &attr;
        cr.created = m->created;
        env.create_rep = &cr;
        break;
    default:
        env.body_case = KEEL__ENVELOPE__BODY__NOT_SET;
        break;
    }
    rpc_reply(m->req, &env, RPC_NO_PAYLOAD);
}

static void reply_empty(struct mut *m, Keel__Envelope__BodyCase body)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__UnlinkRep ul = KEEL__UNLINK_REP__INIT;
    Keel__RmdirRep rd = KEEL__RMDIR_REP__INIT;
    Keel__RenameRep rn = KEEL__RENAME_REP__INIT;

    env.body_case = body;
    if (body == KEEL__ENVELOPE__BODY_UNLINK_REP)
        env.unlink_rep = &ul;
    else if (body == KEEL__ENVELOPE__BODY_RMDIR_REP)
        env.rmdir_rep = &rd;
    else
        env.rename_rep = &rn;
    rpc_reply(m->req, &env, RPC_NO_PAYLOAD);
}

/* mkdir */

static int apply_mkdir(struct mut *m, MDB_txn *txn)
{
    Keel__MkdirReq *r = m->req->env->mkdir_req;

    return nstree_mkdir(m->store, txn, r->path, r->mode, r->uid, r->gid, m->now, &m->attr);
}

static void reply_mkdir(struct mut *m)
{
    reply_attr(m, KEEL__ENVELOPE__BODY_MKDIR_REP);
}

static const struct mut_kind k_mkdir = {"mkdir", apply_mkdir, reply_mkdir};

/* create */

static int apply_create(struct mut *m, MDB_txn *txn)
{
    Keel__CreateReq *r = m->req->env->create_req;
    struct nstree_create_args a = {.path = r->path,
                                   .mode = r->mode,
                                   .uid = r->uid,
                                   .gid = r->gid,
                                   .exclusive = r->exclusive,
                                   .truncate = r->truncate,
                                   .size = r->size,
                                   .replication = r->replication,
                                   .now = m->now};

    return nstree_create(m->store, txn, &a, &m->attr, &m->created, &m->freed);
}

static void reply_create(struct mut *m)
{
    reply_attr(m, KEEL__ENVELOPE__BODY_CREATE_REP);
}

static const struct mut_kind k_create = {"create", apply_create, reply_create};

/* unlink, rmdir, rename */

static int apply_unlink(struct mut *m, MDB_txn *txn)
{
    return nstree_unlink(m->store, txn, m->req->env->unlink_req->path, m->now, &m->freed);
}

static void reply_unlink(struct mut *m)
{
    reply_empty(m, KEEL__ENVELOPE__BODY_UNLINK_REP);
}

static const struct mut_kind k_unlink = {"unlink", apply_unlink, reply_unlink};

static int apply_rmdir(struct mut *m, MDB_txn *txn)
{
    return nstree_rmdir(m->store, txn, m->req->env->rmdir_req->path, m->now);
}

static void reply_rmdir(struct mut *m)
{
    reply_empty(m, KEEL__ENVELOPE__BODY_RMDIR_REP);
}

static const struct mut_kind k_rmdir = {"rmdir", apply_rmdir, reply_rmdir};

static int apply_rename(struct mut *m, MDB_txn *txn)
{
    Keel__RenameReq *r = m->req->env->rename_req;

    return nstree_rename(m->store, txn, r->from, r->to, r->flags, m->now, &m->freed);
}

static void reply_rename(struct mut *m)
{
    reply_empty(m, KEEL__ENVELOPE__BODY_RENAME_REP);
}

static const struct mut_kind k_rename = {"rename", apply_rename, reply_rename};

/* link, symlink */

static int apply_link(struct mut *m, MDB_txn *txn)
{
    Keel__LinkReq *r = m->req->env->link_req;

    return nstree_link(m->store, txn, r->from, r->to, m->now, &m->attr);
}

static void reply_link(struct mut *m)
{
    reply_attr(m, KEEL__ENVELOPE__BODY_LINK_REP);
}

static const struct mut_kind k_link = {"link", apply_link, reply_link};

static int apply_symlink(struct mut *m, MDB_txn *txn)
{
    Keel__SymlinkReq *r = m->req->env->symlink_req;

    return nstree_symlink(m->store, txn, r->target, r->path, r->uid, r->gid, m->now, &m->attr);
}

static void reply_symlink(struct mut *m)
{
    reply_attr(m, KEEL__ENVELOPE__BODY_SYMLINK_REP);
}

static const struct mut_kind k_symlink = {"symlink", apply_symlink, reply_symlink};

/* setattr */

static int apply_setattr(struct mut *m, MDB_txn *txn)
{
    return nstree_setattr(m->store, txn, &m->sa, &m->attr, &m->freed);
}

static void reply_setattr(struct mut *m)
{
    reply_attr(m, KEEL__ENVELOPE__BODY_SETATTR_REP);
}

static const struct mut_kind k_setattr = {"setattr", apply_setattr, reply_setattr};

/* Submits a mutation at once: the request's paths are checked first so
 * that garbage never costs a transaction. */
static void simple(rpc_req *req, void *ctx, const struct mut_kind *kind, const char *p1,
                   const char *p2)
{
    int r = nstree_check_path(p1);

    if (r == 0 && p2)
        r = nstree_check_path(p2);
    if (r) {
        reply_err(req, r);
        return;
    }
    mut_submit(mut_new(core_of(ctx), req, kind));
}

static void h_mkdir(rpc_req *req, void *ctx)
{
    simple(req, ctx, &k_mkdir, req->env->mkdir_req->path, NULL);
}

static void h_unlink(rpc_req *req, void *ctx)
{
    simple(req, ctx, &k_unlink, req->env->unlink_req->path, NULL);
}

static void h_rmdir(rpc_req *req, void *ctx)
{
    simple(req, ctx, &k_rmdir, req->env->rmdir_req->path, NULL);
}

static void h_rename(rpc_req *req, void *ctx)
{
    simple(req, ctx, &k_rename, req->env->rename_req->from, req->env->rename_req->to);
}

static void h_link(rpc_req *req, void *ctx)
{
    simple(req, ctx, &k_link, req->env->link_req->from, req->env->link_req->to);
}

static void h_symlink(rpc_req *req, void *ctx)
{
    simple(req, ctx, &k_symlink, req->env->symlink_req->path, NULL);
}

/* The file a request names, looked up now (loop thread). */
static int lookup(struct nn_core *core, const char *path, uint64_t ino, struct store_inode *out)
{
    MDB_txn *txn;
    int r = store_read_begin(core->store, &txn);

    if (r)
        return r;
    if (path && path[0])
        r = nstree_stat(core->store, txn, path, out);
    else
        r = store_inode_get(core->store, txn, ino, out);
    mdb_txn_abort(txn);
    return r;
}

/* With the lease held: the size set to 0 must not be overtaken by a grown one. */
static void create_truncate(struct mut *m)
{
    mut_hold(m, m->ino, true);
    mut_submit(m);
}

static void h_create(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__CreateReq *rq = req->env->create_req;
    struct store_inode in;
    struct mut *m;
    int r = nstree_check_path(rq->path);

    if (r) {
        reply_err(req, r);
        return;
    }
    m = mut_new(core, req, &k_create);
    /* Truncating an existing file is a write: it needs the lease. */
    if (rq->truncate && !rq->exclusive && lookup(core, rq->path, 0, &in) == 0 && S_ISREG(in.mode)) {
        m->ino = in.ino;
        m->client_id = rq->client_id;
        mut_with_lease(m, create_truncate);
        return;
    }
    mut_submit(m);
}

static void trim_done(void *arg, int status, struct chunkctl_change *t)
{
    struct mut *m = arg;

    if (status) {
        if (status == -ENODATA)
            rpc_reply_error(m->req, -EIO, "the chunk to cut has no live replica");
        else
            reply_err(m->req, status);
        mut_free(m);
        return;
    }
    m->trim = t;
    m->sa.trim_old_version = chunkctl_trim_old_version(t);
    m->sa.trim_new_version = chunkctl_trim_new_version(t);
    mut_submit(m);
}

/* With the lease held: a shrink that leaves a partial chunk trims it first. */
static void setattr_size(struct mut *m)
{
    uint64_t cs = m->core->settings->chunk_size, chunk_id;
    struct store_inode in;
    MDB_txn *txn;
    int r;

    mut_hold(m, m->ino, true);
    r = lookup(m->core, NULL, m->ino, &in);
    if (r) {
        mut_fail(m, r);
        return;
    }
    sizes_apply(m->core->sizes, &in); /* shrinking is judged on what clients saw */
    if (m->sa.size >= in.size || m->sa.size % cs == 0) {
        mut_submit(m);
        return;
    }
    r = store_read_begin(m->core->store, &txn);
    if (r) {
        mut_fail(m, r);
        return;
    }
    r = store_file_chunk(m->core->store, txn, m->ino, (m->sa.size - 1) / cs, &chunk_id);
    mdb_txn_abort(txn);
    if (r == -ENOENT) {
        mut_submit(m); /* a hole: nothing to cut */
        return;
    }
    if (r == 0) {
        m->sa.trim_chunk = chunk_id;
        r = chunkctl_trim(m->core->ctl, chunk_id, m->sa.size % cs, trim_done, m);
    }
    if (r)
        mut_fail(m, r);
}

static void h_setattr(rpc_req *req, void *ctx)
{
    struct nn_core *core = core_of(ctx);
    Keel__SetattrReq *rq = req->env->setattr_req;
    struct store_inode in;
    struct mut *m;
    int r = 0;

    if (rq->path[0])
        r = nstree_check_path(rq->path);
    if (r == 0 && (rq->valid & ~NSTREE_SET_ALL))
        r = -EINVAL;
    if (r == 0)
        r = lookup(core, rq->path, rq->ino, &in);
    if (r) {
        reply_err(req, r);
        return;
    }
    m = mut_new(core, req, &k_setattr);
    /* By inode number from now on: the path may change meanwhile. */
    m->sa.ino = in.ino;
    m->sa.valid = rq->valid;
    m->sa.mode = rq->mode;
    m->sa.uid = rq->uid;
    m->sa.gid = rq->gid;
    m->sa.size = rq->size;
    m->sa.atime = rq->atime_ns;
    m->sa.mtime = rq->mtime_ns;
    m->sa.now = m->now;
    if (rq->valid & NSTREE_SET_SIZE) {
        if (!S_ISREG(in.mode)) {
            mut_fail(m, S_ISDIR(in.mode) ? -EISDIR : -EINVAL);
            return;
        }
        if (rq->size > STORE_MAX_FILE_SIZE) {
            mut_fail(m, -EFBIG);
            return;
        }
        m->ino = in.ino;
        m->client_id = rq->client_id;
        mut_with_lease(m, setattr_size);
        return;
    }
    /* Times set here must not be overtaken by a grown size's times. */
    mut_hold(m, in.ino, false);
    mut_submit(m);
}

const rpc_handler nsops_handlers[] = {
    {KEEL__ENVELOPE__BODY_HELLO_REQ, "hello", h_hello},
    {KEEL__ENVELOPE__BODY_STAT_REQ, "stat", h_stat},
    {KEEL__ENVELOPE__BODY_MKDIR_REQ, "mkdir", h_mkdir},
    {KEEL__ENVELOPE__BODY_CREATE_REQ, "create", h_create},
    {KEEL__ENVELOPE__BODY_READDIR_REQ, "readdir", h_readdir},
    {KEEL__ENVELOPE__BODY_UNLINK_REQ, "unlink", h_unlink},
    {KEEL__ENVELOPE__BODY_RMDIR_REQ, "rmdir", h_rmdir},
    {KEEL__ENVELOPE__BODY_RENAME_REQ, "rename", h_rename},
    {KEEL__ENVELOPE__BODY_LINK_REQ, "link", h_link},
    {KEEL__ENVELOPE__BODY_SYMLINK_REQ, "symlink", h_symlink},
    {KEEL__ENVELOPE__BODY_READLINK_REQ, "readlink", h_readlink},
    {KEEL__ENVELOPE__BODY_SETATTR_REQ, "setattr", h_setattr},
    {KEEL__ENVELOPE__BODY_STATFS_REQ, "statfs", h_statfs},
    {KEEL__ENVELOPE__BODY_STATUS_REQ, "status", h_status},
    {KEEL__ENVELOPE__BODY_DECOMMISSION_REQ, "decommission", h_decommission},
};

const size_t nsops_nhandlers = ARRAY_SIZE(nsops_handlers);
