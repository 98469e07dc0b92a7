/*
 * replicate: see replicate.h.
 */
#include "replicate.h"

#include "checksum.h"
#include "errors.h"
#include "list.h"
#include "log.h"
#include "util.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct copy {
    struct list link;
    struct replicate *rp;
    uint64_t chunk_id, version, target, session;
    char addr[64];
    uint64_t length; /* replica length when the copy started */
    uint64_t end;    /* bytes to send: the length rounded up to a block */
    uint64_t off;    /* next byte to send */
    uint64_t bytes_sent;
    size_t piece_len; /* payload of the piece in flight */
    bool first_sent;
    bool last_sent;
};

struct replicate {
    uv_loop_t *loop;
    struct replicas *reps;
    struct peers *peers;
    uint32_t piece_bytes;
    struct replicate_hooks hooks;
    struct list copies;
    size_t active;
    bool stopping;
};

static void step(struct copy *c);

static void finish(struct copy *c, int status)
{
    struct replicate *rp = c->rp;
    struct replicate_outcome o = {c->chunk_id, c->version, c->target, status, c->bytes_sent};

    if (status)
        log_warn("replicate: copy of chunk %016" PRIx64 " version %" PRIu64 " to node %" PRIu64
                 " (%s) failed: %s",
                 c->chunk_id, c->version, c->target, c->addr, err_str(status));
    else
        log_info("replicate: copied chunk %016" PRIx64 " version %" PRIu64 " to node %" PRIu64
                 " (%" PRIu64 " bytes)",
                 c->chunk_id, c->version, c->target, c->bytes_sent);
    list_del(&c->link);
    rp->active--;
    free(c);
    if (rp->hooks.done)
        rp->hooks.done(rp->hooks.ctx, &o);
}

static void piece_done(int status, rpc_msg *msg, void *arg)
{
    struct copy *c = arg;

    if (status) {
        finish(c, status);
        return;
    }
    c->bytes_sent += c->piece_len;
    c->off += c->piece_len;
    c->first_sent = true;
    if (c->last_sent)
        finish(c, 0);
    else
        step(c);
}

/* Sends one piece: payload (taken: released by rpc, or freed here on a
 * failure) with the checksums of its blocks; all (nall) on the last. */
static void send_piece(struct copy *c, void *base, const uint8_t *data, size_t len, uint64_t *sums,
                       size_t nsums, uint64_t *all, size_t nall)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CopyChunkReq q = KEEL__COPY_CHUNK_REQ__INIT;
    struct rpc_call_opts opts = {0};
    rpc_conn *conn;
    int r;

    q.chunk_id = c->chunk_id;
    q.version = c->version;
    q.length = c->length;
    q.first = !c->first_sent;
    q.last = all != NULL;
    q.offset = c->off;
    q.n_block_checksums = nsums;
    q.block_checksums = sums;
    q.n_all_checksums = nall;
    q.all_checksums = all;
    q.session = c->session;
    env.body_case = KEEL__ENVELOPE__BODY_COPY_CHUNK_REQ;
    env.copy_chunk_req = &q;
    opts.timeout_ms = peers_timeout(c->rp->peers);
    c->piece_len = len;
    c->last_sent = q.last;
    r = peers_get(c->rp->peers, c->addr, &conn);
    if (r == 0)
        r = rpc_call(conn, &env, (rpc_payload){data, len, free, base}, &opts, piece_done, c);
    if (r) {
        free(base);
        finish(c, r);
    }
}

static void read_done(int status, struct replicas_result *res, void *arg)
{
    struct copy *c = arg;
    void *base = res->base;

    if (status == 0 && c->rp->stopping)
        status = -ECANCELED;
    if (status) {
        finish(c, status);
        return;
    }
    res->base = NULL;
    /* The encoder copies the checksums into the header now; the bytes go
     * out from the read buffer. */
    send_piece(c, base, res->data, res->len, res->sums, res->nsums, NULL, 0);
}

static void sums_done(int status, struct replicas_result *res, void *arg)
{
    struct copy *c = arg;
    size_t n = res->len / sizeof(uint64_t);
    uint64_t *all = (uint64_t *)res->base;

    if (status == 0 && res->info.length != c->length)
        status = -EAGAIN; /* written to during the copy */
    if (status == 0 && c->rp->stopping)
        status = -ECANCELED;
    if (status) {
        finish(c, status);
        return;
    }
    for (size_t i = 0; i < n; i++)
        all[i] = le64toh(all[i]);
    send_piece(c, NULL, NULL, 0, NULL, 0, all, n);
}

/* Reads the next piece, or the final checksums. */
static int submit_step(struct copy *c)
{
    struct replicate *rp = c->rp;

    if (rp->stopping)
        return -ECANCELED;
    if (c->off < c->end)
        return replicas_read(rp->reps, c->chunk_id, c->version, c->off,
                             (size_t)MIN((uint64_t)rp->piece_bytes, c->end - c->off), REPLICAS_SUMS,
                             read_done, c);
    return replicas_checksums(rp->reps, c->chunk_id, c->version, sums_done, c);
}

static void step(struct copy *c)
{
    int r = submit_step(c);

    if (r)
        finish(c, r);
}

int replicate_new(uv_loop_t *loop, struct replicas *reps, struct peers *peers, uint32_t piece_bytes,
                  const struct replicate_hooks *hooks, struct replicate **out)
{
    struct replicate *rp = xcalloc(1, sizeof(*rp));

    rp->loop = loop;
    rp->reps = reps;
    rp->peers = peers;
    piece_bytes -= piece_bytes % KEEL_BLOCK_SIZE;
    rp->piece_bytes = piece_bytes ? piece_bytes : KEEL_BLOCK_SIZE;
    if (hooks)
        rp->hooks = *hooks;
    list_init(&rp->copies);
    *out = rp;
    return 0;
}

int replicate_start(struct replicate *rp, uint64_t chunk_id, uint64_t version, uint64_t target_id,
                    const char *target_addr)
{
    struct replica_info ri;
    struct list *pos, *tmp;
    struct copy *c;
    int r;

    if (rp->stopping)
        return -ECANCELED;
    if (target_id == 0 || !target_addr || peers_check_addr(target_addr))
        return -EINVAL;
    list_for_each_safe(pos, tmp, &rp->copies)
    {
        c = list_entry(pos, struct copy, link);
        if (c->chunk_id == chunk_id && c->target == target_id)
            return -EALREADY;
    }
    if (!replicas_get(rp->reps, chunk_id, &ri))
        return -ENOENT;
    if (ri.version != version)
        return -ESTALE;
    if (ri.corrupt)
        return -EIO;
    c = xcalloc(1, sizeof(*c));
    c->rp = rp;
    c->chunk_id = chunk_id;
    c->version = version;
    c->target = target_id;
    c->session = random_u64();
    snprintf(c->addr, sizeof(c->addr), "%s", target_addr);
    c->length = ri.length;
    c->end = (ri.length + KEEL_BLOCK_SIZE - 1) / KEEL_BLOCK_SIZE * KEEL_BLOCK_SIZE;
    r = submit_step(c);
    if (r) {
        free(c);
        return r;
    }
    list_add_tail(&rp->copies, &c->link);
    rp->active++;
    log_info("replicate: copying chunk %016" PRIx64 " version %" PRIu64 " to node %" PRIu64 " (%s)",
             chunk_id, version, target_id, target_addr);
    return 0;
}

size_t replicate_active(const struct replicate *rp)
{
    return rp->active;
}

void replicate_shutdown(struct replicate *rp)
{
    rp->stopping = true;
}

void replicate_free(struct replicate *rp)
{
    free(rp);
}
