/*
 * chunkctl: see chunkctl.h for the flows.
 *
 * An allocation (struct alloc) goes
 *   WAIT_ID --id reserved--> CREATING --replies--> COMMITTING --> done
 * and is found by (ino, index) so that a second request joins the first.
 *
 * A version change (struct chunkctl_change: bump, trim or adoption) goes
 *   QUEUED (another change of the chunk runs) --> CALLING (datanodes)
 *     --> COMMITTING (bump, adoption) or HELD by the caller (trim) --> done
 * with at most one active per chunk (`busy`).
 */
#include "chunkctl.h"

#include "errors.h"
#include "log.h"
#include "placement.h"
#include "u64map.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define ID_BATCH 1024u /* chunk ids reserved per LMDB commit */
#define ID_LOW   128u  /* reserve the next range when fewer are left */
#define MAX_REPS 32u   /* replicas of one chunk a change talks to */

struct chunkctl;

struct call_slot {
    void *owner;
    size_t i;
};

struct alloc_waiter {
    struct list link;
    chunkctl_done_fn cb;
    void *arg;
};

struct alloc {
    struct chunkctl *ctl;
    struct list link; /* the ino's allocations, or the id queue */
    uint64_t ino, index, chunk_id;
    uint32_t replication, need;
    size_t n, answered;
    uint64_t nodes[STORE_MAX_REPLICATION];
    int results[STORE_MAX_REPLICATION];
    struct call_slot slots[STORE_MAX_REPLICATION];
    struct commit_op op;
    struct store *store; /* for the worker thread */
    struct list waiters;
};

enum vkind { V_BUMP, V_TRIM, V_ADOPT };

struct chunkctl_change {
    struct chunkctl *ctl;
    enum vkind kind;
    struct list link; /* waiting behind the chunk's active change */
    uint64_t chunk_id, old_version, new_version, length;
    uint64_t drop[MAX_REPS];
    size_t ndrop;
    size_t n, answered;
    uint64_t nodes[MAX_REPS];
    int results[MAX_REPS];
    struct call_slot slots[MAX_REPS];
    struct commit_op op;
    struct store *store;
    chunkctl_bump_fn bump_cb;
    chunkctl_trim_fn trim_cb;
    void *arg;
};

struct busy {
    struct chunkctl_change *active;
    struct list waiting;
};

struct id_reservation {
    struct commit_op op;
    struct chunkctl *ctl;
    struct store *store;
    uint64_t first;
};

struct chunkctl {
    struct chunkctl_config cfg;
    struct placement_rng rng;
    struct u64map by_ino;    /* ino -> struct list of struct alloc */
    struct u64map alloc_ids; /* chunk id -> struct alloc, once it has an id */
    struct u64map busy;      /* chunk id -> struct busy */
    uint64_t id_next, id_end;
    bool reserving;
    struct id_reservation res;
    struct list id_wait; /* allocations waiting for an id */
    size_t in_flight;
};

static void must(int r)
{
    if (r < 0) {
        log_error("chunkctl: out of memory");
        abort();
    }
}

/* ------------------------------------------------------------ datanodes */

static int dn_call(struct chunkctl *ctl, uint64_t node, Keel__Envelope *env, rpc_done_fn cb,
                   void *arg)
{
    struct reg_node *n = registry_get(ctl->cfg.reg, node);
    struct rpc_call_opts o = {.timeout_ms = ctl->cfg.call_timeout_ms};

    if (!n || !n->conn)
        return -ENOTCONN;
    return rpc_call(n->conn, env, RPC_NO_PAYLOAD, &o, cb, arg);
}

static enum cm_node_state view_node(void *ctx, uint64_t id, const char **domain)
{
    struct chunkctl *ctl = ctx;
    struct reg_node *n = registry_get(ctl->cfg.reg, id);

    *domain = n ? n->domain : NULL;
    if (!n)
        return CM_NODE_GONE;
    if (n->state == REG_ALIVE)
        return CM_NODE_LIVE;
    return n->state == REG_DECOMMISSIONING ? CM_NODE_LEAVING : CM_NODE_GONE;
}

/* Failure domains with an ALIVE node: each counted at its first node. */
static uint32_t live_domains(const struct registry *reg)
{
    struct reg_node *n, *m;
    uint32_t count = 0;
    size_t i = 0;

    while ((n = registry_next(reg, &i))) {
        size_t k = 0;
        bool first = true;

        if (n->state != REG_ALIVE)
            continue;
        while (first && (m = registry_next(reg, &k)) && m != n)
            first = m->state != REG_ALIVE || strcmp(m->domain, n->domain) != 0;
        count += first;
    }
    return count;
}

struct cm_view chunkctl_view(struct chunkctl *ctl)
{
    return (struct cm_view){view_node, ctl, live_domains(ctl->cfg.reg)};
}

/* Mixes x into h (the finaliser of splitmix64 over their sum). */
static uint64_t mix(uint64_t h, uint64_t x)
{
    h = (h ^ x) + 0x9E3779B97F4A7C15ull;
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

uint64_t chunkctl_view_digest(struct chunkctl *ctl)
{
    uint64_t h = mix(0, live_domains(ctl->cfg.reg));
    struct reg_node *n;
    size_t i = 0;

    while ((n = registry_next(ctl->cfg.reg, &i))) {
        const char *d = NULL;

        h = mix(h, n->id);
        h = mix(h, (uint64_t)view_node(ctl, n->id, &d));
        for (; d && *d; d++)
            h = mix(h, (unsigned char)*d);
    }
    return h;
}

/* ----------------------------------------------------------- allocation */

static void id_reserve(struct chunkctl *ctl);
static void alloc_place(struct alloc *a);

static struct list *ino_list(struct chunkctl *ctl, uint64_t ino, bool create)
{
    struct list *l = u64map_get(&ctl->by_ino, ino);

    if (!l && create) {
        l = xmalloc(sizeof(*l));
        list_init(l);
        must(u64map_put(&ctl->by_ino, ino, l));
    }
    return l;
}

static void order_deletes(struct chunkctl *ctl, const uint64_t *nodes, const int *results, size_t n,
                          uint64_t chunk_id, uint64_t version)
{
    for (size_t i = 0; i < n; i++)
        if (results[i] == 0)
            registry_order_delete(ctl->cfg.reg, nodes[i], chunk_id, version);
}

static void alloc_finish(struct alloc *a, int status)
{
    struct chunkctl *ctl = a->ctl;
    struct list *l, *n;

    list_del(&a->link);
    l = ino_list(ctl, a->ino, false);
    if (l && list_empty(l)) {
        u64map_del(&ctl->by_ino, a->ino);
        free(l);
    }
    if (a->chunk_id)
        u64map_del(&ctl->alloc_ids, a->chunk_id);
    ctl->in_flight--;
    while ((n = list_pop(&a->waiters))) {
        struct alloc_waiter *w = list_entry(n, struct alloc_waiter, link);

        w->cb(w->arg, status);
        free(w);
    }
    free(a);
}

static int alloc_apply(MDB_txn *txn, struct commit_op *op)
{
    struct alloc *a = list_entry(op, struct alloc, op);

    return store_chunk_add(a->store, txn, a->ino, a->index, a->chunk_id, a->replication);
}

static void alloc_committed(struct commit_op *op, int status)
{
    struct alloc *a = list_entry(op, struct alloc, op);
    struct chunkctl *ctl = a->ctl;
    struct cm_chunk *c;

    if (status) {
        /* Our replicas are orphans now. -EEXIST: the index got a chunk
         * meanwhile, which is what the caller wanted. */
        order_deletes(ctl, a->nodes, a->results, a->n, a->chunk_id, 1);
        if (status != -EEXIST)
            log_warn("chunkctl: chunk %" PRIx64 " of inode %" PRIu64 " not committed: %s",
                     a->chunk_id, a->ino, err_str(status));
        alloc_finish(a, status == -EEXIST ? 0 : status);
        return;
    }
    c = chunkmap_add(ctl->cfg.cm, a->chunk_id, 1, a->replication, a->ino, a->index);
    for (size_t i = 0; i < a->n; i++)
        if (a->results[i] == 0)
            chunkmap_set_replica(ctl->cfg.cm, c, a->nodes[i], 1);
    log_debug("chunkctl: allocated chunk %" PRIx64 " for inode %" PRIu64 " index %" PRIu64,
              a->chunk_id, a->ino, a->index);
    alloc_finish(a, 0);
}

static void alloc_created(struct alloc *a)
{
    struct chunkctl *ctl = a->ctl;
    size_t ok = 0;
    bool nospc = false;

    for (size_t i = 0; i < a->n; i++) {
        if (a->results[i] == 0)
            ok++;
        else if (a->results[i] == -ENOSPC)
            nospc = true;
    }
    if (ok < a->need) {
        log_warn("chunkctl: chunk %" PRIx64 ": only %zu of %zu replicas created", a->chunk_id, ok,
                 a->n);
        order_deletes(ctl, a->nodes, a->results, a->n, a->chunk_id, 1);
        alloc_finish(a, nospc ? -ENOSPC : -EIO);
        return;
    }
    a->store = ctl->cfg.store;
    a->op.apply = alloc_apply;
    a->op.done = alloc_committed;
    commit_submit(ctl->cfg.commit, &a->op);
}

static void on_created(int status, rpc_msg *reply, void *arg)
{
    struct call_slot *s = arg;
    struct alloc *a = s->owner;

    a->results[s->i] = status;
    if (status)
        log_info("chunkctl: datanode %" PRIu64 " could not create chunk %" PRIx64 ": %s",
                 a->nodes[s->i], a->chunk_id, err_str(status));
    if (++a->answered == a->n)
        alloc_created(a);
}

/* Builds the placement view of the registry: live, connected nodes.
 * *pending counts the nodes that may soon be usable: known from before a
 * restart but not heard from yet, or alive with their connection lost. */
static struct placement_node *candidates(struct chunkctl *ctl, size_t *n, bool *any_full,
                                         size_t *pending)
{
    struct placement_node *v = xcalloc(registry_count(ctl->cfg.reg) + 1, sizeof(*v));
    struct reg_node *rn;
    size_t i = 0, k = 0;

    *any_full = false;
    *pending = 0;
    while ((rn = registry_next(ctl->cfg.reg, &i))) {
        struct placement_node *p = &v[k++];

        if (rn->state == REG_UNKNOWN || (rn->state == REG_ALIVE && !rn->conn))
            (*pending)++;

        p->id = rn->id;
        p->domain = rn->domain;
        p->capacity = rn->capacity;
        p->used = rn->used;
        p->alive = rn->state == REG_ALIVE && rn->conn; /* detached when it closes */
        p->full = rn->full;
        p->decommissioning = rn->state == REG_DECOMMISSIONING;
        if (p->alive && !placement_usable(p, store_get_settings(ctl->cfg.store)->chunk_size))
            *any_full = true;
    }
    *n = k;
    return v;
}

static void alloc_place(struct alloc *a)
{
    struct chunkctl *ctl = a->ctl;
    struct placement_req req = {.replication = a->replication,
                                .chunk_size = store_get_settings(ctl->cfg.store)->chunk_size};
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CreateReplicaReq body = KEEL__CREATE_REPLICA_REQ__INIT;
    struct placement_node *nodes;
    size_t nn, got = 0, pending;
    bool misplaced, any_full;

    nodes = candidates(ctl, &nn, &any_full, &pending);
    placement_choose(nodes, nn, &req, &ctl->rng, a->nodes, &got, &misplaced);
    free(nodes);
    if (got < a->need) {
        /* Datanodes still coming back (after a restart of either side):
         * the client asks again rather than failing its write. */
        int err = got + pending >= a->need ? -EAGAIN : any_full ? -ENOSPC : -EIO;

        log_warn("chunkctl: no room for chunk %" PRIx64 ": %zu usable datanodes, %u needed%s",
                 a->chunk_id, got, a->need, err == -EAGAIN ? ", more expected" : "");
        alloc_finish(a, err);
        return;
    }
    if (misplaced)
        log_info("chunkctl: chunk %" PRIx64 " is misplaced: too few failure domains alive",
                 a->chunk_id);
    must(u64map_put(&ctl->alloc_ids, a->chunk_id, a));
    a->n = got;
    body.chunk_id = a->chunk_id;
    body.version = 1;
    env.body_case = KEEL__ENVELOPE__BODY_CREATE_REPLICA_REQ;
    env.create_replica_req = &body;
    for (size_t i = 0; i < got; i++) {
        int r;

        a->slots[i] = (struct call_slot){a, i};
        r = dn_call(ctl, a->nodes[i], &env, on_created, &a->slots[i]);
        if (r < 0)
            on_created(r, NULL, &a->slots[i]);
    }
}

static void take_id(struct alloc *a)
{
    struct chunkctl *ctl = a->ctl;

    a->chunk_id = ctl->id_next++;
    if (ctl->id_end - ctl->id_next < ID_LOW)
        id_reserve(ctl);
    alloc_place(a);
}

static int reserve_apply(MDB_txn *txn, struct commit_op *op)
{
    struct id_reservation *res = list_entry(op, struct id_reservation, op);

    return store_reserve_chunk_ids(res->store, txn, ID_BATCH, &res->first);
}

static void reserve_done(struct commit_op *op, int status)
{
    struct id_reservation *res = list_entry(op, struct id_reservation, op);
    struct chunkctl *ctl = res->ctl;
    struct list *n;

    ctl->reserving = false;
    ctl->in_flight--;
    if (status) {
        log_error("chunkctl: cannot reserve chunk ids: %s", err_str(status));
        while ((n = list_pop(&ctl->id_wait)))
            alloc_finish(list_entry(n, struct alloc, link), status);
        return;
    }
    ctl->id_next = res->first;
    ctl->id_end = res->first + ID_BATCH;
    while (ctl->id_next < ctl->id_end && (n = list_pop(&ctl->id_wait))) {
        struct alloc *a = list_entry(n, struct alloc, link);
        struct list *l = ino_list(ctl, a->ino, true);

        list_add_tail(l, &a->link);
        take_id(a);
    }
    if (!list_empty(&ctl->id_wait))
        id_reserve(ctl);
}

static void id_reserve(struct chunkctl *ctl)
{
    if (ctl->reserving)
        return;
    ctl->reserving = true;
    ctl->in_flight++;
    ctl->res.ctl = ctl;
    ctl->res.store = ctl->cfg.store;
    ctl->res.op.apply = reserve_apply;
    ctl->res.op.done = reserve_done;
    commit_submit(ctl->cfg.commit, &ctl->res.op);
}

static struct alloc *find_alloc(struct chunkctl *ctl, uint64_t ino, uint64_t index)
{
    struct list *l = ino_list(ctl, ino, false), *pos, *tmp;

    if (!l)
        return NULL;
    list_for_each_safe(pos, tmp, l)
    {
        struct alloc *a = list_entry(pos, struct alloc, link);

        if (a->index == index)
            return a;
    }
    return NULL;
}

static struct alloc *find_waiting(struct chunkctl *ctl, uint64_t ino, uint64_t index)
{
    struct list *pos, *tmp;

    list_for_each_safe(pos, tmp, &ctl->id_wait)
    {
        struct alloc *a = list_entry(pos, struct alloc, link);

        if (a->ino == ino && a->index == index)
            return a;
    }
    return NULL;
}

int chunkctl_alloc(struct chunkctl *ctl, uint64_t ino, uint64_t index, uint32_t replication,
                   chunkctl_done_fn cb, void *arg)
{
    struct alloc_waiter *w;
    struct alloc *a;

    if (replication < 1 || replication > STORE_MAX_REPLICATION)
        return -EINVAL;
    w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    a = find_alloc(ctl, ino, index);
    if (!a)
        a = find_waiting(ctl, ino, index);
    if (a) {
        list_add_tail(&a->waiters, &w->link);
        return 0;
    }
    a = xcalloc(1, sizeof(*a));
    a->ctl = ctl;
    a->ino = ino;
    a->index = index;
    a->replication = replication;
    a->need = MIN(ctl->cfg.min_replicas, replication);
    list_init(&a->waiters);
    list_add_tail(&a->waiters, &w->link);
    ctl->in_flight++;
    if (ctl->id_next < ctl->id_end) {
        list_add_tail(ino_list(ctl, ino, true), &a->link);
        take_id(a);
    } else {
        list_add_tail(&ctl->id_wait, &a->link);
        id_reserve(ctl);
    }
    return 0;
}

bool chunkctl_allocating(const struct chunkctl *ctl, uint64_t chunk_id)
{
    return chunk_id && u64map_get(&ctl->alloc_ids, chunk_id) != NULL;
}

/* ------------------------------------------------------- version changes */

static void vchange_start(struct chunkctl_change *v);

static void vchange_free(struct chunkctl_change *v)
{
    v->ctl->in_flight--;
    free(v);
}

/* The chunk is free for its next change. */
static void release_chunk(struct chunkctl *ctl, uint64_t chunk_id)
{
    struct busy *b = u64map_get(&ctl->busy, chunk_id);
    struct list *n;

    if (!b)
        return;
    n = list_pop(&b->waiting);
    if (!n) {
        u64map_del(&ctl->busy, chunk_id);
        free(b);
        return;
    }
    b->active = list_entry(n, struct chunkctl_change, link);
    vchange_start(b->active);
}

static void vchange_end(struct chunkctl_change *v, int status)
{
    struct chunkctl_bump_result res = {v->new_version, (uint32_t)v->n, 0};
    struct chunkctl *ctl = v->ctl;

    for (size_t i = 0; i < v->n; i++)
        res.ok += v->results[i] == 0;
    release_chunk(ctl, v->chunk_id);
    if (v->kind == V_BUMP)
        v->bump_cb(v->arg, status, status ? NULL : &res);
    else if (v->kind == V_TRIM)
        v->trim_cb(v->arg, status, NULL);
    vchange_free(v);
}

/* The map learns the committed version and which replicas have it. */
static void vchange_apply_map(struct chunkctl_change *v)
{
    struct cm_chunk *c = chunkmap_get(v->ctl->cfg.cm, v->chunk_id);

    if (!c)
        return;
    chunkmap_set_version(v->ctl->cfg.cm, c, v->new_version);
    for (size_t i = 0; i < v->n; i++)
        if (v->results[i] == 0)
            chunkmap_set_replica(v->ctl->cfg.cm, c, v->nodes[i], v->new_version);
}

static int vchange_apply(MDB_txn *txn, struct commit_op *op)
{
    struct chunkctl_change *v = list_entry(op, struct chunkctl_change, op);

    return store_chunk_set_version(v->store, txn, v->chunk_id, v->old_version, v->new_version);
}

static void vchange_committed(struct commit_op *op, int status)
{
    struct chunkctl_change *v = list_entry(op, struct chunkctl_change, op);

    if (status == 0) {
        vchange_apply_map(v);
        log_info("chunkctl: chunk %" PRIx64 " now at version %" PRIu64 " (%s)", v->chunk_id,
                 v->new_version, v->kind == V_ADOPT ? "adopted from a report" : "bumped");
    } else {
        log_warn("chunkctl: version %" PRIu64 " of chunk %" PRIx64 " not committed: %s",
                 v->new_version, v->chunk_id, err_str(status));
    }
    vchange_end(v, status);
}

static void vchange_commit(struct chunkctl_change *v)
{
    v->store = v->ctl->cfg.store;
    v->op.apply = vchange_apply;
    v->op.done = vchange_committed;
    commit_submit(v->ctl->cfg.commit, &v->op);
}

static void vchange_called(struct chunkctl_change *v)
{
    size_t ok = 0;

    for (size_t i = 0; i < v->n; i++)
        ok += v->results[i] == 0;
    if (ok == 0) {
        log_warn("chunkctl: no replica of chunk %" PRIx64 " took version %" PRIu64, v->chunk_id,
                 v->new_version);
        vchange_end(v, -EIO);
        return;
    }
    if (v->kind == V_TRIM) {
        /* The caller commits; the chunk stays busy until it finishes. */
        v->trim_cb(v->arg, 0, v);
        return;
    }
    vchange_commit(v);
}

static void on_vcall(int status, rpc_msg *reply, void *arg)
{
    struct call_slot *s = arg;
    struct chunkctl_change *v = s->owner;

    v->results[s->i] = status;
    if (status)
        log_info("chunkctl: datanode %" PRIu64 " did not take version %" PRIu64 " of chunk %" PRIx64
                 ": %s",
                 v->nodes[s->i], v->new_version, v->chunk_id, err_str(status));
    if (++v->answered == v->n)
        vchange_called(v);
}

static bool dropped(const struct chunkctl_change *v, uint64_t node)
{
    for (size_t i = 0; i < v->ndrop; i++)
        if (v->drop[i] == node)
            return true;
    return false;
}

/* Current replicas on live nodes, minus the dropped ones, into v->nodes. */
static size_t pick_targets(struct chunkctl_change *v, const struct cm_chunk *c)
{
    size_t n = 0;

    for (uint32_t i = 0; i < c->nrep && n < MAX_REPS; i++) {
        const struct cm_replica *r = &c->reps[i];
        struct reg_node *node = registry_get(v->ctl->cfg.reg, r->node);

        if (cm_replica_current(c, r) && node && registry_node_live(node) && !dropped(v, r->node))
            v->nodes[n++] = r->node;
    }
    return n;
}

static void vchange_start(struct chunkctl_change *v)
{
    struct cm_chunk *c = chunkmap_get(v->ctl->cfg.cm, v->chunk_id);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__SetVersionReq sv = KEEL__SET_VERSION_REQ__INIT;
    Keel__TrimReplicaReq tr = KEEL__TRIM_REPLICA_REQ__INIT;

    if (!c) {
        vchange_end(v, -ENOENT);
        return;
    }
    v->old_version = c->version;
    if (v->kind == V_ADOPT) {
        if (v->new_version <= c->version) {
            vchange_end(v, 0);
            return;
        }
        vchange_commit(v);
        return;
    }
    v->new_version = c->version + 1;
    v->n = pick_targets(v, c);
    if (v->n == 0) {
        vchange_end(v, -ENODATA);
        return;
    }
    if (v->kind == V_TRIM) {
        tr.chunk_id = v->chunk_id;
        tr.version = v->old_version;
        tr.new_version = v->new_version;
        tr.length = v->length;
        env.body_case = KEEL__ENVELOPE__BODY_TRIM_REPLICA_REQ;
        env.trim_replica_req = &tr;
    } else {
        sv.chunk_id = v->chunk_id;
        sv.version = v->old_version;
        sv.new_version = v->new_version;
        env.body_case = KEEL__ENVELOPE__BODY_SET_VERSION_REQ;
        env.set_version_req = &sv;
    }
    for (size_t i = 0, n = v->n; i < n; i++) {
        int r;

        v->slots[i] = (struct call_slot){v, i};
        r = dn_call(v->ctl, v->nodes[i], &env, on_vcall, &v->slots[i]);
        if (r < 0)
            on_vcall(r, NULL, &v->slots[i]);
    }
}

static struct chunkctl_change *vchange_new(struct chunkctl *ctl, enum vkind kind, uint64_t chunk_id)
{
    struct chunkctl_change *v = xcalloc(1, sizeof(*v));

    v->ctl = ctl;
    v->kind = kind;
    v->chunk_id = chunk_id;
    list_init(&v->link);
    ctl->in_flight++;
    return v;
}

/* Runs v now, or after the chunk's active change. */
static void vchange_submit(struct chunkctl *ctl, struct chunkctl_change *v)
{
    struct busy *b = u64map_get(&ctl->busy, v->chunk_id);

    if (b) {
        list_add_tail(&b->waiting, &v->link);
        return;
    }
    b = xcalloc(1, sizeof(*b));
    list_init(&b->waiting);
    b->active = v;
    must(u64map_put(&ctl->busy, v->chunk_id, b));
    vchange_start(v);
}

int chunkctl_bump(struct chunkctl *ctl, uint64_t chunk_id, const uint64_t *drop, size_t ndrop,
                  chunkctl_bump_fn cb, void *arg)
{
    struct chunkctl_change *v;

    if (!chunkmap_get(ctl->cfg.cm, chunk_id))
        return -ENOENT;
    if (ndrop > MAX_REPS)
        return -EINVAL;
    v = vchange_new(ctl, V_BUMP, chunk_id);
    if (ndrop)
        memcpy(v->drop, drop, ndrop * sizeof(*drop));
    v->ndrop = ndrop;
    v->bump_cb = cb;
    v->arg = arg;
    vchange_submit(ctl, v);
    return 0;
}

int chunkctl_trim(struct chunkctl *ctl, uint64_t chunk_id, uint64_t length, chunkctl_trim_fn cb,
                  void *arg)
{
    struct chunkctl_change *v;

    if (!chunkmap_get(ctl->cfg.cm, chunk_id))
        return -ENOENT;
    v = vchange_new(ctl, V_TRIM, chunk_id);
    v->length = length;
    v->trim_cb = cb;
    v->arg = arg;
    vchange_submit(ctl, v);
    return 0;
}

uint64_t chunkctl_trim_old_version(const struct chunkctl_change *t)
{
    return t->old_version;
}

uint64_t chunkctl_trim_new_version(const struct chunkctl_change *t)
{
    return t->new_version;
}

void chunkctl_trim_finish(struct chunkctl *ctl, struct chunkctl_change *t, int commit_status)
{
    if (commit_status == 0)
        vchange_apply_map(t);
    release_chunk(ctl, t->chunk_id);
    vchange_free(t);
}

void chunkctl_adopt(struct chunkctl *ctl, uint64_t chunk_id, uint64_t version)
{
    struct chunkctl_change *v;

    if (u64map_get(&ctl->busy, chunk_id))
        return; /* a change in flight will settle the version */
    v = vchange_new(ctl, V_ADOPT, chunk_id);
    v->new_version = version;
    vchange_submit(ctl, v);
}

/* ------------------------------------------------------------- deletion */

void chunkctl_forget(struct chunkctl *ctl, const struct store_chunk_list *freed)
{
    for (size_t i = 0; i < freed->n; i++) {
        struct cm_chunk *c = chunkmap_get(ctl->cfg.cm, freed->v[i].id);

        if (!c)
            continue;
        /* Ids are never reused: every version of the replica is garbage. */
        for (uint32_t k = 0; k < c->nrep; k++)
            registry_order_delete(ctl->cfg.reg, c->reps[k].node, c->id, UINT64_MAX);
        chunkmap_remove(ctl->cfg.cm, c->id);
    }
}

bool chunkctl_busy(const struct chunkctl *ctl, uint64_t chunk_id)
{
    return chunk_id && u64map_get(&ctl->busy, chunk_id) != NULL;
}

size_t chunkctl_collect(struct chunkctl *ctl, struct cm_chunk *c, const struct cm_view *v)
{
    struct cm_chunk_health h;
    uint64_t gone[MAX_REPS];
    uint64_t id = c->id;
    size_t ngone = 0;

    chunkmap_chunk_health(c, v, &h);
    if (h.good < c->replication || (h.stale == 0 && h.corrupt == 0))
        return 0;
    if (u64map_get(&ctl->busy, c->id))
        return 0;
    for (uint32_t i = 0; i < c->nrep && ngone < MAX_REPS; i++) {
        const struct cm_replica *r = &c->reps[i];
        const char *d;

        if (!r->corrupt && r->version >= c->version)
            continue;
        if (view_node(ctl, r->node, &d) == CM_NODE_GONE)
            continue;
        registry_order_delete(ctl->cfg.reg, r->node, c->id, r->version);
        log_info("chunkctl: chunk %" PRIx64 ": %s replica on datanode %" PRIu64 " (version %" PRIu64
                 ") ordered deleted",
                 c->id, r->corrupt ? "corrupt" : "stale", r->node, r->version);
        gone[ngone++] = r->node;
    }
    for (size_t i = 0; i < ngone; i++) {
        c = chunkmap_get(ctl->cfg.cm, id);
        if (c)
            chunkmap_drop_replica(ctl->cfg.cm, c, gone[i]);
    }
    return ngone;
}

size_t chunkctl_drop_excess(struct chunkctl *ctl, struct cm_chunk *c)
{
    struct placement_node holders[MAX_REPS];
    uint64_t victims[MAX_REPS];
    uint64_t id = c->id, version = c->version;
    size_t n = 0, nv;

    if (u64map_get(&ctl->busy, c->id))
        return 0;
    for (uint32_t i = 0; i < c->nrep && n < MAX_REPS; i++) {
        const struct cm_replica *r = &c->reps[i];
        struct reg_node *rn = registry_get(ctl->cfg.reg, r->node);

        if (!cm_replica_current(c, r) || !rn || rn->state != REG_ALIVE)
            continue;
        memset(&holders[n], 0, sizeof(holders[n]));
        holders[n].id = rn->id;
        holders[n].domain = rn->domain;
        holders[n].capacity = rn->capacity;
        holders[n].used = rn->used;
        holders[n].alive = true;
        n++;
    }
    nv = placement_choose_excess(holders, n, c->replication, victims);
    for (size_t i = 0; i < nv; i++) {
        registry_order_delete(ctl->cfg.reg, victims[i], id, version);
        log_info("chunkctl: chunk %" PRIx64 " has %zu good replicas for %u wanted: the one on "
                 "datanode %" PRIu64 " ordered deleted",
                 id, n, c->replication, victims[i]);
    }
    for (size_t i = 0; i < nv; i++) {
        c = chunkmap_get(ctl->cfg.cm, id);
        if (c)
            chunkmap_drop_replica(ctl->cfg.cm, c, victims[i]);
    }
    return nv;
}

/* ------------------------------------------------------------ lifecycle */

struct chunkctl *chunkctl_new(const struct chunkctl_config *cfg)
{
    struct chunkctl *ctl = xcalloc(1, sizeof(*ctl));

    ctl->cfg = *cfg;
    ctl->rng.s = cfg->seed ? cfg->seed : random_u64();
    u64map_init(&ctl->by_ino);
    u64map_init(&ctl->alloc_ids);
    u64map_init(&ctl->busy);
    list_init(&ctl->id_wait);
    return ctl;
}

void chunkctl_free(struct chunkctl *ctl)
{
    size_t i = 0;
    void *v;

    if (!ctl)
        return;
    if (ctl->in_flight)
        log_error("chunkctl: freed with %zu operations in flight", ctl->in_flight);
    while (u64map_next(&ctl->by_ino, &i, NULL, &v))
        free(v);
    i = 0;
    while (u64map_next(&ctl->busy, &i, NULL, &v))
        free(v);
    u64map_free(&ctl->by_ino);
    u64map_free(&ctl->alloc_ids);
    u64map_free(&ctl->busy);
    free(ctl);
}

size_t chunkctl_in_flight(const struct chunkctl *ctl)
{
    return ctl->in_flight;
}
