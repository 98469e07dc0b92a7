/*
 * inspect: the cluster-inspection part of the public API: status, the
 * chunks of a file with their replicas, one replica's block checksums, and
 * decommissioning. Used by the keel CLI (status, nodes, stat, fsck).
 */
#include "core.h"
#include "errors.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *keel_node_state_name(int state)
{
    switch (state) {
    case KEEL__NODE_STATE__NODE_ALIVE:
        return "alive";
    case KEEL__NODE_STATE__NODE_DEAD:
        return "dead";
    case KEEL__NODE_STATE__NODE_DECOMMISSIONING:
        return "decommissioning";
    case KEEL__NODE_STATE__NODE_DECOMMISSIONED:
        return "decommissioned";
    default:
        return "unknown";
    }
}

static void copy_node(const Keel__NodeStatus *n, struct keel_node *out)
{
    memset(out, 0, sizeof(*out));
    out->node_id = n->node_id;
    snprintf(out->addr, sizeof(out->addr), "%s", n->addr ? n->addr : "");
    snprintf(out->domain, sizeof(out->domain), "%s", n->domain ? n->domain : "");
    out->state = n->state;
    out->capacity = n->capacity;
    out->used = n->used;
    out->chunks = n->chunks;
    out->since_heartbeat_ms = n->since_heartbeat_ms;
    out->load = n->load;
    out->decommission_left = n->decommission_left;
}

struct status_out {
    struct keel_status *st;
    int err;
};

static void copy_status(const Keel__Envelope *rep, void *arg)
{
    struct status_out *o = arg;
    struct keel_status *st = o->st;
    const Keel__StatusRep *r = rep->status_rep;

    if (rep->body_case != KEEL__ENVELOPE__BODY_STATUS_REP) {
        o->err = -EPROTO;
        return;
    }
    snprintf(st->cluster_id, sizeof(st->cluster_id), "%s", r->cluster_id ? r->cluster_id : "");
    st->chunk_size = r->chunk_size;
    st->replication = r->replication;
    st->min_replicas = r->min_replicas;
    st->safe_mode = r->safe_mode;
    st->files = r->files;
    st->chunks = r->chunks;
    st->healthy = r->healthy;
    st->under_replicated = r->under_replicated;
    st->missing = r->missing;
    st->misplaced = r->misplaced;
    st->stale_pending = r->stale_pending;
    st->corrupt = r->corrupt;
    st->repl_queue = r->repl_queue;
    st->repl_running = r->repl_running;
    st->nodes = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*st->nodes));
    if (!st->nodes) {
        o->err = -ENOMEM;
        return;
    }
    for (size_t i = 0; i < r->n_nodes; i++)
        copy_node(r->nodes[i], &st->nodes[i]);
    st->nnodes = r->n_nodes;
}

int keel_status(keel_client *c, struct keel_status *st)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatusReq req = KEEL__STATUS_REQ__INIT;
    struct keel_status tmp;
    struct status_out o = {&tmp, 0};
    int r;

    if (!c || !st)
        return -EINVAL;
    memset(&tmp, 0, sizeof(tmp));
    env.body_case = KEEL__ENVELOPE__BODY_STATUS_REQ;
    env.status_req = &req;
    r = core_nn_sync(c, &env, copy_status, &o, 0);
    if (r == 0)
        r = o.err;
    if (r) {
        free(tmp.nodes);
        return r;
    }
    *st = tmp;
    return 0;
}

void keel_status_free(struct keel_status *st)
{
    if (!st)
        return;
    free(st->nodes);
    st->nodes = NULL;
    st->nnodes = 0;
}

struct decom_out {
    int err;
};

static void copy_decom(const Keel__Envelope *rep, void *arg)
{
    struct decom_out *o = arg;

    if (rep->body_case != KEEL__ENVELOPE__BODY_DECOMMISSION_REP)
        o->err = -EPROTO;
}

int keel_decommission(keel_client *c, uint64_t node_id, bool recommission)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__DecommissionReq req = KEEL__DECOMMISSION_REQ__INIT;
    struct decom_out o = {0};
    int r;

    if (!c || node_id == 0)
        return -EINVAL;
    req.node_id = node_id;
    req.recommission = recommission;
    env.body_case = KEEL__ENVELOPE__BODY_DECOMMISSION_REQ;
    env.decommission_req = &req;
    r = core_nn_sync(c, &env, copy_decom, &o, 0);
    return r ? r : o.err;
}

/* ----------------------------------------------------------- file chunks */

static void copy_replicas(Keel__Replica **reps, size_t n, int state, struct keel_replica *out,
                          unsigned *count)
{
    for (size_t i = 0; i < n; i++) {
        struct keel_replica *r = &out[(*count)++];

        r->node_id = reps[i]->node_id;
        snprintf(r->addr, sizeof(r->addr), "%s", reps[i]->addr ? reps[i]->addr : "");
        snprintf(r->domain, sizeof(r->domain), "%s", reps[i]->domain ? reps[i]->domain : "");
        r->state = state;
    }
}

struct chunks_out {
    struct keel_chunk_info *chunks;
    size_t n;
    int err;
};

static void copy_chunks(const Keel__Envelope *rep, void *arg)
{
    struct chunks_out *o = arg;
    const Keel__GetChunksRep *r = rep->get_chunks_rep;

    if (rep->body_case != KEEL__ENVELOPE__BODY_GET_CHUNKS_REP) {
        o->err = -EPROTO;
        return;
    }
    o->chunks = calloc(r->n_chunks ? r->n_chunks : 1, sizeof(*o->chunks));
    if (!o->chunks) {
        o->err = -ENOMEM;
        return;
    }
    for (size_t i = 0; i < r->n_chunks; i++) {
        const Keel__ChunkLoc *l = r->chunks[i];
        struct keel_chunk_info *ci = &o->chunks[i];
        size_t total = l->n_replicas + l->n_stale + l->n_corrupt;

        ci->index = l->index;
        ci->chunk_id = l->chunk_id;
        ci->version = l->version;
        ci->replication = l->replication;
        ci->misplaced = l->misplaced;
        ci->replicas = calloc(total ? total : 1, sizeof(*ci->replicas));
        o->n = i + 1;
        if (!ci->replicas) {
            o->err = -ENOMEM;
            return;
        }
        copy_replicas(l->replicas, l->n_replicas, 0, ci->replicas, &ci->nreplicas);
        copy_replicas(l->stale, l->n_stale, 1, ci->replicas, &ci->nreplicas);
        copy_replicas(l->corrupt, l->n_corrupt, 2, ci->replicas, &ci->nreplicas);
    }
}

void keel_chunks_free(struct keel_chunk_info *chunks, size_t count)
{
    if (!chunks)
        return;
    for (size_t i = 0; i < count; i++)
        free(chunks[i].replicas);
    free(chunks);
}

int keel_file_chunks(keel_client *c, const char *path, uint64_t off, uint64_t len,
                     struct keel_chunk_info **out, size_t *count)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__GetChunksReq req = KEEL__GET_CHUNKS_REQ__INIT;
    struct chunks_out o = {NULL, 0, 0};
    struct keel_stat st;
    int r;

    if (!c || !out || !count)
        return -EINVAL;
    r = keel_stat(c, path, &st);
    if (r)
        return r;
    req.ino = st.ino;
    req.offset = off;
    req.length = len ? len : (st.size > off ? st.size - off : 0);
    req.detail = true;
    env.body_case = KEEL__ENVELOPE__BODY_GET_CHUNKS_REQ;
    env.get_chunks_req = &req;
    if (req.length == 0) {
        *out = NULL;
        *count = 0;
        return 0;
    }
    r = core_nn_sync(c, &env, copy_chunks, &o, 0);
    if (r == 0)
        r = o.err;
    if (r) {
        keel_chunks_free(o.chunks, o.n);
        return r;
    }
    *out = o.chunks;
    *count = o.n;
    return 0;
}

/* ------------------------------------------------------ replica checksums */

struct sums_op {
    struct core_op op;
    struct core_wait w;
    const char *addr;
    Keel__Envelope env;
    Keel__ChecksumsReq req;
    uint64_t *sums;
    size_t count;
    uint64_t length;
    int status;
};

static void sums_done(int status, rpc_msg *m, void *arg)
{
    struct sums_op *s = arg;

    if (status == 0 &&
        (m->env->body_case != KEEL__ENVELOPE__BODY_CHECKSUMS_REP || m->payload_len % 8 != 0))
        status = -EPROTO;
    if (status == 0) {
        s->count = m->payload_len / 8;
        s->length = m->env->checksums_rep->length;
        s->sums = malloc(s->count ? m->payload_len : 8);
        if (!s->sums)
            status = -ENOMEM;
        else
            for (size_t i = 0; i < s->count; i++) {
                const uint8_t *p = m->payload + i * 8;
                uint64_t v = 0;
                for (int b = 7; b >= 0; b--)
                    v = v << 8 | p[b];
                s->sums[i] = v;
            }
    }
    s->status = status;
    core_wait_signal(&s->w);
}

static void sums_run(struct core_op *base)
{
    struct sums_op *s = (struct sums_op *)base;
    struct core_node *n = core_node_get(base->client, s->addr);
    int r = n ? rpc_call(n->conn, &s->env, RPC_NO_PAYLOAD, NULL, sums_done, s) : -ENOMEM;

    if (r) {
        s->status = r;
        core_wait_signal(&s->w);
    }
}

int keel_replica_checksums(keel_client *c, const char *addr, uint64_t chunk_id, uint64_t version,
                           uint64_t **sums, size_t *count, uint64_t *length)
{
    struct sums_op s;
    struct sockaddr_in sa;
    int r;

    if (!c || !addr || parse_addr(addr, &sa) || !sums || !count)
        return -EINVAL;
    memset(&s, 0, sizeof(s));
    s.op.run = sums_run;
    s.addr = addr;
    keel__envelope__init(&s.env);
    keel__checksums_req__init(&s.req);
    s.req.chunk_id = chunk_id;
    s.req.version = version;
    s.env.body_case = KEEL__ENVELOPE__BODY_CHECKSUMS_REQ;
    s.env.checksums_req = &s.req;
    r = core_submit_wait(c, &s.op, &s.w, &s.status);
    if (r == 0) {
        *sums = s.sums;
        *count = s.count;
        if (length)
            *length = s.length;
    }
    return r;
}
