/*
 * dataserv: see dataserv.h.
 *
 * A chained write (struct chain_write) holds the request's payload with a
 * reference count: one for the handler until it replies, one for the local
 * write until its callback, one for the forwarded call until rpc releases
 * the payload (which may be after the call's callback, when the socket
 * write finishes). The last reference frees the buffer.
 */
#include "dataserv.h"

#include "busypoll.h"
#include "checksum.h"
#include "errors.h"
#include "frame.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FLUSH_CHUNKS 4096

struct dataserv {
    uv_loop_t *loop;
    struct chunkstore *cs;
    struct replicas *reps;
    struct peers *peers;
    struct copyrecv *copies;
    struct inflight *inflight;
    rpc_service svc; /* the handler table with this instance as context */
    rpc_server *server;
    uint32_t load;
    bool no_local_reads;
    struct busypoll poll; /* kicked by every request from a client or peer */
};

static uint64_t chunk_size(const struct dataserv *ds)
{
    return (uint64_t)chunkstore_blocks(ds->cs) * KEEL_BLOCK_SIZE;
}

/* Checks that [off, off + len) is a non-empty range inside the chunk. */
static int check_range(const struct dataserv *ds, uint64_t off, uint64_t len)
{
    uint64_t size = chunk_size(ds);

    if (size == 0)
        return -EAGAIN;
    if (len == 0 || len > FRAME_MAX_PAYLOAD || off >= size || len > size - off)
        return -EINVAL;
    return 0;
}

/* A request came: counted in the load until served. The next one from the
 * same client is likely close behind. */
static void arrived(struct dataserv *ds)
{
    ds->load++;
    busypoll_kick(&ds->poll);
}

static void served(struct dataserv *ds)
{
    ds->load--;
}

/* ------------------------------------------------------------------ read */

/* A read or checksum request; it holds its charge until the reply's bytes
 * have gone out (the payload release). */
struct read_call {
    struct dataserv *ds;
    rpc_req *req;
    uint64_t charge;
    void *base; /* the reply's buffer */
};

static void read_call_end(struct read_call *fr)
{
    served(fr->ds);
    inflight_give(fr->ds->inflight, fr->charge);
    free(fr->base);
    free(fr);
}

static void read_release(void *arg)
{
    read_call_end(arg);
}

static struct read_call *read_call_new(struct dataserv *ds, rpc_req *req, uint64_t bytes)
{
    struct read_call *fr = xcalloc(1, sizeof(*fr));

    fr->ds = ds;
    fr->req = req;
    fr->charge = INFLIGHT_REQUEST_COST + bytes;
    arrived(ds);
    inflight_take(ds->inflight, fr->charge);
    return fr;
}

static void read_done(int status, struct replicas_result *res, void *arg)
{
    struct read_call *fr = arg;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__ReadRep body = KEEL__READ_REP__INIT;
    const Keel__ReadReq *q = fr->req->env->read_req;

    if (status) {
        rpc_reply_error(fr->req, status, "read of chunk %016" PRIx64 ": %s", q->chunk_id,
                        err_str(status));
        read_call_end(fr);
        return;
    }
    body.checksum = res->checksum;
    rep.body_case = KEEL__ENVELOPE__BODY_READ_REP;
    rep.read_rep = &body;
    /* The bytes go out from the buffer they were read into. */
    fr->base = res->base;
    res->base = NULL;
    rpc_reply(fr->req, &rep, (rpc_payload){res->data, res->len, read_release, fr});
}

static void h_read(rpc_req *req, void *ctx)
{
    struct dataserv *ds = ctx;
    const Keel__ReadReq *q = req->env->read_req;
    struct read_call *fr;
    int r = check_range(ds, q->offset, q->length);

    if (r) {
        rpc_reply_error(req, r, "read range %" PRIu64 "+%u is not inside the chunk", q->offset,
                        q->length);
        return;
    }
    fr = read_call_new(ds, req, q->length);
    r = replicas_read(ds->reps, q->chunk_id, q->version, q->offset, q->length, 0, read_done, fr);
    if (r) {
        rpc_reply_error(req, r, "read of chunk %016" PRIx64 ": %s", q->chunk_id, err_str(r));
        read_call_end(fr);
    }
}

/* ----------------------------------------------------------------- write */

struct chain_write {
    struct dataserv *ds;
    rpc_req *req;
    uint8_t *payload;
    uint64_t charge;
    int refs;
    bool local_done, fwd_done;
    int local_status;
    uint64_t self;
    /* What the rest of the chain reported, this node's own failure first. */
    uint64_t failed[DATASERV_MAX_CHAIN + 1];
    int32_t failed_status[DATASERV_MAX_CHAIN + 1];
    size_t nfailed;
    uint64_t unreached[DATASERV_MAX_CHAIN];
    size_t nunreached;
};

/* Drops n references; the last one frees. */
static void chain_write_unref(struct chain_write *fw, int n)
{
    fw->refs -= n;
    if (fw->refs)
        return;
    inflight_give(fw->ds->inflight, fw->charge);
    free(fw->payload);
    free(fw);
}

static void release_payload(void *arg)
{
    chain_write_unref(arg, 1);
}

/* Answers once both the local write and the forward are done. Returns the
 * references the caller now drops: the reply's, once it is sent. */
static int chain_write_reply(struct chain_write *fw)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__WriteRep body = KEEL__WRITE_REP__INIT;

    if (!fw->local_done || !fw->fwd_done)
        return 0;
    if (fw->local_status) {
        /* This node first, then the ones after it. */
        memmove(fw->failed + 1, fw->failed, fw->nfailed * sizeof(*fw->failed));
        memmove(fw->failed_status + 1, fw->failed_status, fw->nfailed * sizeof(*fw->failed_status));
        fw->failed[0] = fw->self;
        fw->failed_status[0] = err_to_wire(fw->local_status);
        fw->nfailed++;
    }
    body.n_failed = fw->nfailed;
    body.failed = fw->failed;
    body.n_failed_status = fw->nfailed;
    body.failed_status = fw->failed_status;
    body.n_unreached = fw->nunreached;
    body.unreached = fw->unreached;
    rep.body_case = KEEL__ENVELOPE__BODY_WRITE_REP;
    rep.write_rep = &body;
    served(fw->ds);
    rpc_reply(fw->req, &rep, RPC_NO_PAYLOAD);
    fw->req = NULL;
    return 1;
}

static void local_done(int status, struct replicas_result *res, void *arg)
{
    struct chain_write *fw = arg;

    fw->local_done = true;
    fw->local_status = status;
    if (status)
        log_debug("dataserv: local write of chunk %016" PRIx64 ": %s",
                  fw->req->env->write_req->chunk_id, err_str(status));
    chain_write_unref(fw, 1 + chain_write_reply(fw)); /* the local write's, and maybe the reply's */
}

/* The next node failed (err): it is failed, the ones after it unreached. */
static void chain_failed(struct chain_write *fw, int err)
{
    const Keel__WriteReq *q = fw->req->env->write_req;

    fw->nfailed = 1;
    fw->failed[0] = q->chain[0]->node_id;
    fw->failed_status[0] = err_to_wire(err);
    fw->nunreached = q->n_chain - 1;
    for (size_t i = 1; i < q->n_chain; i++)
        fw->unreached[i - 1] = q->chain[i]->node_id;
    log_warn("dataserv: write of chunk %016" PRIx64 " to node %" PRIu64 " (%s) failed: %s",
             q->chunk_id, q->chain[0]->node_id, q->chain[0]->addr, err_str(err));
}

static void forward_done(int status, rpc_msg *msg, void *arg)
{
    struct chain_write *fw = arg;
    const Keel__WriteRep *w = NULL;
    size_t rest = fw->req->env->write_req->n_chain;

    if (status == 0) {
        w = msg->env->body_case == KEEL__ENVELOPE__BODY_WRITE_REP ? msg->env->write_rep : NULL;
        /* The nodes after this one can name at most the rest of the chain. */
        if (!w || w->n_failed != w->n_failed_status || w->n_failed > rest || w->n_unreached > rest)
            status = -EPROTO;
    }
    if (status) {
        chain_failed(fw, status);
    } else {
        fw->nfailed = w->n_failed;
        if (w->n_failed) {
            memcpy(fw->failed, w->failed, w->n_failed * sizeof(*fw->failed));
            memcpy(fw->failed_status, w->failed_status, w->n_failed * sizeof(*fw->failed_status));
        }
        fw->nunreached = w->n_unreached;
        if (w->n_unreached)
            memcpy(fw->unreached, w->unreached, w->n_unreached * sizeof(*fw->unreached));
    }
    fw->fwd_done = true;
    chain_write_unref(fw, chain_write_reply(fw));
}

/* Sends the write on to chain[0] with chain[1..]. */
static void forward(struct chain_write *fw)
{
    const Keel__WriteReq *q = fw->req->env->write_req;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__WriteReq next = *q;
    struct rpc_call_opts opts = {0};
    rpc_conn *conn;
    int r;

    r = peers_get(fw->ds->peers, q->chain[0]->addr, &conn);
    if (r) {
        chain_failed(fw, r);
        fw->fwd_done = true;
        return;
    }
    next.chain = q->chain + 1;
    next.n_chain = q->n_chain - 1;
    env.body_case = KEEL__ENVELOPE__BODY_WRITE_REQ;
    env.write_req = &next;
    /* Each node behind the next one may take a full timeout of its own
     * before it answers for the node after it. */
    opts.timeout_ms = peers_timeout(fw->ds->peers) * (uint32_t)q->n_chain;
    fw->refs++;
    r = rpc_call(conn, &env, (rpc_payload){fw->payload, q->length, release_payload, fw}, &opts,
                 forward_done, fw);
    if (r) {
        fw->refs--;
        chain_failed(fw, r);
        fw->fwd_done = true;
    }
}

static int check_chain(const Keel__WriteReq *q)
{
    if (q->n_chain > DATASERV_MAX_CHAIN)
        return -EINVAL;
    for (size_t i = 0; i < q->n_chain; i++)
        if (!q->chain[i] || q->chain[i]->node_id == 0 || peers_check_addr(q->chain[i]->addr))
            return -EINVAL;
    return 0;
}

static void h_write(rpc_req *req, void *ctx)
{
    struct dataserv *ds = ctx;
    const Keel__WriteReq *q = req->env->write_req;
    struct chunkstore_identity id;
    struct chain_write *fw;
    int r;

    if (!chunkstore_identity(ds->cs, &id)) {
        rpc_reply_error(req, -EAGAIN, "datanode not registered yet");
        return;
    }
    if (q->length != req->payload_len || (q->length && !req->payload)) {
        rpc_reply_error(req, -EINVAL, "payload has %u bytes, the write declares %u",
                        req->payload_len, q->length);
        return;
    }
    /* No bytes at 0 readies the replica (replicafile_write). */
    r = q->length == 0 && q->offset == 0 ? 0 : check_range(ds, q->offset, q->length);
    if (r) {
        rpc_reply_error(req, r, "write range %" PRIu64 "+%u is not inside the chunk", q->offset,
                        q->length);
        return;
    }
    /* Hashing on the loop (XXH3 runs at memory speed) so that a damaged
     * payload is refused before it is forwarded anywhere. */
    if (csum_buf(req->payload, q->length) != q->checksum) {
        rpc_reply_error(req, -EBADMSG, "payload checksum mismatch");
        return;
    }
    if (check_chain(q)) {
        rpc_reply_error(req, -EINVAL, "bad chain: at most %d nodes with ids and IPv4 addresses",
                        DATASERV_MAX_CHAIN);
        return;
    }
    fw = xcalloc(1, sizeof(*fw));
    fw->ds = ds;
    fw->req = req;
    fw->payload = req->payload;
    req->payload = NULL;
    fw->refs = 2; /* the reply, the local write */
    fw->self = id.node_id;
    fw->charge = INFLIGHT_REQUEST_COST + q->length;
    arrived(ds);
    inflight_take(ds->inflight, fw->charge);
    if (q->n_chain)
        forward(fw);
    else
        fw->fwd_done = true;
    r = replicas_write(ds->reps, q->chunk_id, q->version, q->offset, fw->payload, q->length,
                       local_done, fw);
    if (r) {
        fw->local_done = true;
        fw->local_status = r;
        chain_write_unref(fw, 1 + chain_write_reply(fw));
    }
}

/* ----------------------------------------------------------------- flush */

struct flush_call {
    struct dataserv *ds;
    rpc_req *req;
    int32_t *status;
    size_t left;
};

static void flush_reply(struct flush_call *ff)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__FlushRep body = KEEL__FLUSH_REP__INIT;

    body.n_status = ff->req->env->flush_req->n_chunk_ids;
    body.status = ff->status;
    rep.body_case = KEEL__ENVELOPE__BODY_FLUSH_REP;
    rep.flush_rep = &body;
    served(ff->ds);
    rpc_reply(ff->req, &rep, RPC_NO_PAYLOAD);
    inflight_give(ff->ds->inflight, INFLIGHT_REQUEST_COST);
    free(ff->status);
    free(ff);
}

struct flush_one {
    struct flush_call *ff;
    size_t i;
};

static void flush_done(int status, struct replicas_result *res, void *arg)
{
    struct flush_one *one = arg;
    struct flush_call *ff = one->ff;

    ff->status[one->i] = err_to_wire(status);
    free(one);
    if (--ff->left == 0)
        flush_reply(ff);
}

static void h_flush(rpc_req *req, void *ctx)
{
    struct dataserv *ds = ctx;
    const Keel__FlushReq *q = req->env->flush_req;
    struct flush_call *ff;

    if (q->n_chunk_ids != q->n_versions || q->n_chunk_ids > MAX_FLUSH_CHUNKS) {
        rpc_reply_error(req, -EINVAL, "flush names %zu chunks and %zu versions (at most %d)",
                        q->n_chunk_ids, q->n_versions, MAX_FLUSH_CHUNKS);
        return;
    }
    ff = xcalloc(1, sizeof(*ff));
    ff->ds = ds;
    ff->req = req;
    ff->status = xcalloc(q->n_chunk_ids ? q->n_chunk_ids : 1, sizeof(*ff->status));
    ff->left = 1; /* until every flush is submitted */
    arrived(ds);
    inflight_take(ds->inflight, INFLIGHT_REQUEST_COST);
    for (size_t i = 0; i < q->n_chunk_ids; i++) {
        struct flush_one *one = xmalloc(sizeof(*one));
        int r;

        one->ff = ff;
        one->i = i;
        ff->left++;
        r = replicas_flush(ds->reps, q->chunk_ids[i], q->versions[i], flush_done, one);
        if (r) {
            ff->left--;
            ff->status[i] = err_to_wire(r);
            free(one);
        }
    }
    if (--ff->left == 0)
        flush_reply(ff);
}

/* ------------------------------------------------------------- checksums */

static void checksums_done(int status, struct replicas_result *res, void *arg)
{
    struct read_call *fr = arg;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__ChecksumsRep body = KEEL__CHECKSUMS_REP__INIT;

    if (status) {
        rpc_reply_error(fr->req, status, "checksums of chunk %016" PRIx64 ": %s",
                        fr->req->env->checksums_req->chunk_id, err_str(status));
        read_call_end(fr);
        return;
    }
    body.version = res->info.version;
    body.length = res->info.length;
    body.block_size = KEEL_BLOCK_SIZE;
    rep.body_case = KEEL__ENVELOPE__BODY_CHECKSUMS_REP;
    rep.checksums_rep = &body;
    fr->base = res->base;
    res->base = NULL;
    rpc_reply(fr->req, &rep, (rpc_payload){res->data, res->len, read_release, fr});
}

static void h_checksums(rpc_req *req, void *ctx)
{
    struct dataserv *ds = ctx;
    const Keel__ChecksumsReq *q = req->env->checksums_req;
    struct read_call *fr =
        read_call_new(ds, req, (uint64_t)chunkstore_blocks(ds->cs) * sizeof(uint64_t));
    int r = replicas_checksums(ds->reps, q->chunk_id, q->version, checksums_done, fr);

    if (r) {
        rpc_reply_error(req, r, "checksums of chunk %016" PRIx64 ": %s", q->chunk_id, err_str(r));
        read_call_end(fr);
    }
}

/* ----------------------------------------------------------------- local */

static void h_local(rpc_req *req, void *ctx)
{
    struct dataserv *ds = ctx;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__LocalRep body = KEEL__LOCAL_REP__INIT;
    struct chunkstore_identity id;
    char *dir;

    if (ds->no_local_reads) {
        rpc_reply_error(req, -EOPNOTSUPP, "local reads are off");
        return;
    }
    if (!chunkstore_identity(ds->cs, &id)) {
        rpc_reply_error(req, -EAGAIN, "not registered yet");
        return;
    }
    dir = realpath(chunkstore_dir(ds->cs), NULL);
    if (!dir) {
        int e = -errno;

        rpc_reply_error(req, e, "data directory: %s", err_str(e));
        return;
    }
    body.dir = dir;
    body.node_id = id.node_id;
    rep.body_case = KEEL__ENVELOPE__BODY_LOCAL_REP;
    rep.local_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
    free(dir);
}

/* ------------------------------------------------------------------ copy */

static void h_copy(rpc_req *req, void *ctx)
{
    struct dataserv *ds = ctx;

    copyrecv_handle(ds->copies, req);
}

static const rpc_handler handlers[] = {
    {KEEL__ENVELOPE__BODY_READ_REQ, "read", h_read},
    {KEEL__ENVELOPE__BODY_WRITE_REQ, "write", h_write},
    {KEEL__ENVELOPE__BODY_FLUSH_REQ, "flush", h_flush},
    {KEEL__ENVELOPE__BODY_CHECKSUMS_REQ, "checksums", h_checksums},
    {KEEL__ENVELOPE__BODY_COPY_CHUNK_REQ, "copy-chunk", h_copy},
    {KEEL__ENVELOPE__BODY_LOCAL_REQ, "local", h_local},
};

static void on_open(rpc_conn *c, void *ctx)
{
    struct dataserv *ds = ctx;

    inflight_watch(ds->inflight, c);
}

static void on_close(rpc_conn *c, int err, void *ctx)
{
    struct dataserv *ds = ctx;

    inflight_unwatch(ds->inflight, c);
}

int dataserv_start(const struct dataserv_config *cfg, struct dataserv **out)
{
    struct dataserv *ds = xcalloc(1, sizeof(*ds));
    int r;

    ds->loop = cfg->loop;
    ds->cs = cfg->cs;
    ds->reps = cfg->reps;
    ds->peers = cfg->peers;
    ds->copies = cfg->copies;
    ds->inflight = cfg->inflight;
    ds->no_local_reads = cfg->no_local_reads;
    ds->svc.handlers = handlers;
    ds->svc.nhandlers = ARRAY_SIZE(handlers);
    ds->svc.ctx = ds;
    ds->svc.on_open = on_open;
    ds->svc.on_close = on_close;
    r = rpc_listen(cfg->loop, cfg->listen, &ds->svc, NULL, &ds->server);
    if (r) {
        free(ds);
        return r;
    }
    busypoll_init(&ds->poll, cfg->loop, cfg->poll_us);
    *out = ds;
    return 0;
}

void dataserv_addr(const struct dataserv *ds, char *buf, size_t len)
{
    rpc_server_addr(ds->server, buf, len);
}

uint32_t dataserv_load(const struct dataserv *ds)
{
    return ds->load;
}

void dataserv_stop(struct dataserv *ds)
{
    if (ds->server) {
        rpc_server_close(ds->server);
        busypoll_close(&ds->poll);
    }
    ds->server = NULL;
}

void dataserv_free(struct dataserv *ds)
{
    free(ds);
}
