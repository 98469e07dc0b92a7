/*
 * replicate: see replicate.h for the states.
 *
 * Memory: a copy holds its snapshot (one checksum per block), during a
 * delta the target's checksums, and at most one piece: the read buffer,
 * whose blocks are sent from where they were read (a delta piece is packed
 * in place), owned by rpc once the piece is handed over.
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

#define MAX_PIECE_BLOCKS 256u /* 1 MiB */
#define PACE_SLICE       4u   /* a piece is at most 1/PACE_SLICE s of the rate */

enum copy_state { CS_QUEUED, CS_PROBING, CS_SNAPSHOT, CS_SENDING, CS_PACING, CS_FINAL };

struct copy {
    struct list link; /* rp->queued or rp->running */
    struct list pace; /* rp->pacing while waiting for the rate */
    struct replicate *rp;
    enum copy_state state;
    uint64_t chunk_id, version, target, session;
    char addr[64];
    bool delta_asked; /* the command said the target has an older replica */
    bool delta;       /* sending only the blocks that differ */
    bool fuzzy;       /* writes may go on: take blocks as they are, label version - 1 */
    uint32_t blocks;
    uint64_t length;  /* replica length at the snapshot */
    uint64_t *snap;   /* every block's checksum at the start */
    uint64_t *theirs; /* delta: the target's checksums */
    size_t ntheirs;
    uint32_t next;        /* next block to consider */
    uint64_t whole_bytes; /* what a whole copy sends */
    uint64_t bytes_sent;
    bool first_sent;
    /* The piece being read or sent. */
    void *base; /* buffer holding data */
    const uint8_t *data;
    size_t len;
    uint64_t *sums;  /* checksums of the piece's blocks */
    uint32_t *blist; /* delta: block numbers of the piece */
    size_t nblocks;
    uint64_t off; /* whole: byte offset of the piece */
    bool last;    /* the final piece: data is every block's checksum */
};

struct replicate {
    uv_loop_t *loop;
    struct replicas *reps;
    struct peers *peers;
    uint32_t piece_blocks;
    uint64_t rate;
    unsigned streams;
    struct replicate_hooks hooks;
    struct list queued, running, pacing;
    size_t nqueued, nrunning;
    uv_timer_t timer; /* the rate allows the first pacing copy's piece */
    uint64_t next_ns; /* when the rate allows the next piece */
    uint64_t zero_sum;
    bool stopping;
};

static void next_piece(struct copy *c);
static int begin(struct copy *c);

/* ------------------------------------------------------------- life cycle */

static void copy_free(struct copy *c)
{
    free(c->snap);
    free(c->theirs);
    free(c->base);
    free(c->sums);
    free(c->blist);
    free(c);
}

static void unlink_copy(struct copy *c)
{
    struct replicate *rp = c->rp;

    if (c->state == CS_QUEUED)
        rp->nqueued--;
    else
        rp->nrunning--;
    list_del(&c->link);
    list_del(&c->pace);
}

/* Starts queued copies while there are free streams. */
static void start_queued(struct replicate *rp);
static struct copy *find_copy(struct list *head, uint64_t chunk_id, uint64_t target);

static void abort_answered(int status, rpc_msg *msg, void *arg)
{
    (void)msg;
    (void)arg;
    if (status)
        log_debug("replicate: abort of a copy not delivered: %s", err_str(status));
}

/* Tells the target to drop the session of a copy given up after its first
 * piece, rather than keep it until its idle timeout. Best effort. */
static void send_abort(struct copy *c)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CopyChunkReq q = KEEL__COPY_CHUNK_REQ__INIT;
    struct rpc_call_opts opts = {.timeout_ms = peers_timeout(c->rp->peers)};
    rpc_conn *conn;

    q.chunk_id = c->chunk_id;
    q.session = c->session;
    q.abort = true;
    env.body_case = KEEL__ENVELOPE__BODY_COPY_CHUNK_REQ;
    env.copy_chunk_req = &q;
    if (peers_get(c->rp->peers, c->addr, &conn) == 0)
        rpc_call(conn, &env, RPC_NO_PAYLOAD, &opts, abort_answered, NULL);
}

static void finish(struct copy *c, int status)
{
    struct replicate *rp = c->rp;
    struct replicate_outcome o = {.chunk_id = c->chunk_id,
                                  .version = c->version,
                                  .target = c->target,
                                  .status = status,
                                  .bytes_sent = c->bytes_sent,
                                  .fuzzy = c->fuzzy};

    if (status == 0 && c->delta && c->whole_bytes > c->bytes_sent)
        o.bytes_saved = c->whole_bytes - c->bytes_sent;
    if (status)
        log_warn("replicate: copy of chunk %016" PRIx64 " version %" PRIu64 " to node %" PRIu64
                 " (%s) failed: %s",
                 c->chunk_id, c->version, c->target, c->addr, err_str(status));
    else if (c->delta)
        log_info("replicate: delta resync of chunk %016" PRIx64 ": sent %" PRIu64 " of %" PRIu64
                 " bytes (version %" PRIu64 " to node %" PRIu64 ")",
                 c->chunk_id, c->bytes_sent, c->whole_bytes, c->version, c->target);
    else
        log_info("replicate: copied chunk %016" PRIx64 " version %" PRIu64 " to node %" PRIu64
                 " (%" PRIu64 " bytes)%s",
                 c->chunk_id, c->version, c->target, c->bytes_sent,
                 c->fuzzy ? ", fuzzy: installed there as the version before" : "");
    if (status && c->first_sent && !rp->stopping)
        send_abort(c);
    unlink_copy(c);
    copy_free(c);
    if (rp->hooks.done)
        rp->hooks.done(rp->hooks.ctx, &o);
    start_queued(rp);
}

/* The first queued copy that may start: one whose chunk is not being
 * copied to the same target under another version (it waits for that one,
 * which its source's version change ends soon, to end). */
static struct copy *next_queued(struct replicate *rp)
{
    for (struct list *pos = rp->queued.next; pos != &rp->queued; pos = pos->next) {
        struct copy *c = list_entry(pos, struct copy, link);

        if (!find_copy(&rp->running, c->chunk_id, c->target))
            return c;
    }
    return NULL;
}

static void start_queued(struct replicate *rp)
{
    struct copy *c;

    while (!rp->stopping && rp->nrunning < rp->streams && (c = next_queued(rp))) {
        int r;

        list_del(&c->link);
        rp->nqueued--;
        list_add_tail(&rp->running, &c->link);
        rp->nrunning++;
        c->state = CS_SNAPSHOT;
        r = begin(c);
        if (r)
            finish(c, r);
    }
}

static bool wanted(const struct copy *c, uint32_t b)
{
    return c->delta ? c->snap[b] != c->theirs[b] : c->snap[b] != c->rp->zero_sum;
}

/* ------------------------------------------------------------------ pacing */

static void send_piece(struct copy *c);

static void reserve(struct replicate *rp, size_t len, uint64_t now)
{
    rp->next_ns = MAX(rp->next_ns, now) + (uint64_t)len * 1000000000u / rp->rate;
}

static void on_pace(uv_timer_t *t)
{
    struct replicate *rp = t->data;
    uint64_t now = mono_ns();

    while (!list_empty(&rp->pacing) && rp->next_ns <= now) {
        struct copy *c = list_entry(rp->pacing.next, struct copy, pace);

        list_del(&c->pace);
        reserve(rp, c->len, now);
        send_piece(c);
    }
    if (!list_empty(&rp->pacing))
        uv_timer_start(&rp->timer, on_pace, (rp->next_ns - now + 999999) / 1000000, 0);
}

/* Sends c's piece now, or when the rate allows it, first come first served. */
static void pace(struct copy *c)
{
    struct replicate *rp = c->rp;
    uint64_t now;

    if (rp->rate == 0) {
        send_piece(c);
        return;
    }
    now = mono_ns();
    if (list_empty(&rp->pacing) && rp->next_ns <= now) {
        reserve(rp, c->len, now);
        send_piece(c);
        return;
    }
    c->state = CS_PACING;
    list_add_tail(&rp->pacing, &c->pace);
    if (!uv_is_active((uv_handle_t *)&rp->timer))
        uv_timer_start(&rp->timer, on_pace,
                       rp->next_ns > now ? (rp->next_ns - now + 999999) / 1000000 : 0, 0);
}

/* ------------------------------------------------------------------ pieces */

static void fall_back_to_whole(struct copy *c, const char *why);

static void piece_done(int status, rpc_msg *msg, void *arg)
{
    struct copy *c = arg;

    if (status == 0 && c->rp->stopping)
        status = -ECANCELED;
    if (status && c->delta && !c->first_sent && (status == -ENOENT || status == -EIO)) {
        fall_back_to_whole(c, err_str(status));
        return;
    }
    if (status) {
        finish(c, status);
        return;
    }
    c->first_sent = true;
    if (c->last) {
        finish(c, 0);
        return;
    }
    c->bytes_sent += c->len;
    next_piece(c);
}

/* Hands the piece to rpc (its buffer with it) and waits for the answer. */
static void send_piece(struct copy *c)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CopyChunkReq q = KEEL__COPY_CHUNK_REQ__INIT;
    struct rpc_call_opts opts = {0};
    rpc_conn *conn;
    int r;

    c->state = c->last ? CS_FINAL : CS_SENDING;
    q.chunk_id = c->chunk_id;
    /* A fuzzy copy is stale by construction; its length is not known (a
     * write may extend the replica at any time): the chunk's size, the rest
     * being zeros, covers whatever was sent. */
    q.version = c->fuzzy ? c->version - 1 : c->version;
    q.length = c->fuzzy ? (uint64_t)c->blocks * KEEL_BLOCK_SIZE : c->length;
    q.first = !c->first_sent;
    q.last = c->last;
    q.delta = c->delta;
    q.session = c->session;
    if (c->last) {
        q.checksums_in_payload = true;
    } else {
        q.n_block_checksums = c->nblocks;
        q.block_checksums = c->sums;
        if (c->delta) {
            q.n_blocks = c->nblocks;
            q.blocks = c->blist;
        } else {
            q.offset = c->off;
        }
    }
    env.body_case = KEEL__ENVELOPE__BODY_COPY_CHUNK_REQ;
    env.copy_chunk_req = &q;
    opts.timeout_ms = peers_timeout(c->rp->peers);
    r = peers_get(c->rp->peers, c->addr, &conn);
    if (r == 0)
        r = rpc_call(conn, &env, (rpc_payload){c->data, c->len, free, c->base}, &opts, piece_done,
                     c);
    if (r) {
        finish(c, r);
        return;
    }
    c->base = NULL; /* rpc frees it once written */
}

static void read_done(int status, struct replicas_result *res, void *arg)
{
    struct copy *c = arg;
    uint32_t lo = (uint32_t)(c->off / KEEL_BLOCK_SIZE);
    size_t n;

    if (status == 0 && c->rp->stopping)
        status = -ECANCELED;
    if (status) {
        finish(c, status);
        return;
    }
    n = res->nsums;
    for (size_t i = 0; i < n; i++) {
        if (res->sums[i] == c->snap[lo + i])
            continue;
        if (!c->fuzzy) {
            log_warn("replicate: chunk %016" PRIx64 " block %" PRIu64 " changed during the copy",
                     c->chunk_id, (uint64_t)lo + i);
            finish(c, -EAGAIN);
            return;
        }
        c->snap[lo + i] = res->sums[i]; /* what the target will hold */
    }
    c->base = res->base;
    res->base = NULL;
    c->data = res->data;
    c->len = res->len;
    memcpy(c->sums, res->sums, n * sizeof(*c->sums));
    c->nblocks = n;
    if (c->delta) {
        /* Pack the blocks that differ to the front of the buffer. */
        uint8_t *p = (uint8_t *)c->base + (c->data - (const uint8_t *)c->base);
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
            if (!wanted(c, lo + (uint32_t)i))
                continue;
            if (k != i)
                memmove(p + k * KEEL_BLOCK_SIZE, p + i * KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE);
            c->sums[k] = c->sums[i];
            c->blist[k++] = lo + (uint32_t)i;
        }
        c->nblocks = k;
        c->len = k * KEEL_BLOCK_SIZE;
    }
    pace(c);
}

static void final_done(int status, struct replicas_result *res, void *arg)
{
    struct copy *c = arg;
    const uint64_t *now = res ? (const uint64_t *)res->data : NULL;

    if (status == 0 && c->rp->stopping)
        status = -ECANCELED;
    if (status == 0 &&
        (res->len != (size_t)c->blocks * sizeof(uint64_t) || res->info.length != c->length))
        status = -EAGAIN;
    for (uint32_t b = 0; status == 0 && b < c->blocks; b++)
        if (le64toh(now[b]) != c->snap[b])
            status = -EAGAIN;
    if (status) {
        if (status == -EAGAIN)
            log_warn("replicate: chunk %016" PRIx64 " was written to during the copy", c->chunk_id);
        finish(c, status);
        return;
    }
    /* The checksums go out as the last piece's payload, little-endian as read. */
    c->base = res->base;
    res->base = NULL;
    c->data = res->data;
    c->len = res->len;
    c->nblocks = 0;
    c->last = true;
    pace(c);
}

/* A fuzzy copy's last piece: the checksums of what was sent (and zeros
 * elsewhere), not of what the replica holds now. */
static void final_fuzzy(struct copy *c)
{
    uint64_t *all = xmalloc((size_t)c->blocks * sizeof(*all));

    for (uint32_t b = 0; b < c->blocks; b++)
        all[b] = htole64(c->snap[b]);
    c->base = all;
    c->data = (const uint8_t *)all;
    c->len = (size_t)c->blocks * sizeof(*all);
    c->nblocks = 0;
    c->last = true;
    pace(c);
}

/* Reads the next piece: the wanted blocks of the next window of
 * piece_blocks blocks that has any, from the first to the last of them. */
static void next_piece(struct copy *c)
{
    struct replicate *rp = c->rp;
    int r;

    if (rp->stopping) {
        finish(c, -ECANCELED);
        return;
    }
    c->state = CS_SENDING;
    while (c->next < c->blocks) {
        uint32_t end = MIN(c->blocks, (c->next / rp->piece_blocks + 1) * rp->piece_blocks);
        uint32_t lo = c->next, hi;

        while (lo < end && !wanted(c, lo))
            lo++;
        c->next = end;
        if (lo == end)
            continue;
        hi = end - 1;
        while (!wanted(c, hi))
            hi--;
        c->off = (uint64_t)lo * KEEL_BLOCK_SIZE;
        r = replicas_read(rp->reps, c->chunk_id, c->version, c->off,
                          (size_t)(hi - lo + 1) * KEEL_BLOCK_SIZE, REPLICAS_SUMS, read_done, c);
        if (r)
            finish(c, r);
        return;
    }
    c->state = CS_FINAL;
    if (c->fuzzy) {
        final_fuzzy(c);
        return;
    }
    r = replicas_checksums(rp->reps, c->chunk_id, c->version, final_done, c);
    if (r)
        finish(c, r);
}

/* -------------------------------------------------------------- the plan */

static void snapshot_done(int status, struct replicas_result *res, void *arg)
{
    struct copy *c = arg;
    struct replicate *rp = c->rp;
    uint64_t whole = 0, differ = 0;

    if (status == 0 && rp->stopping)
        status = -ECANCELED;
    if (status) {
        finish(c, status);
        return;
    }
    c->snap = res->base;
    res->base = NULL;
    c->blocks = (uint32_t)(res->len / sizeof(uint64_t));
    c->length = res->info.length;
    for (uint32_t b = 0; b < c->blocks; b++) {
        c->snap[b] = le64toh(c->snap[b]);
        whole += c->snap[b] != rp->zero_sum;
    }
    c->whole_bytes = whole * KEEL_BLOCK_SIZE;
    if (c->theirs && c->ntheirs == c->blocks) {
        for (uint32_t b = 0; b < c->blocks; b++)
            differ += c->snap[b] != c->theirs[b];
        /* Worth it when clearly cheaper than sending the chunk whole. */
        c->delta = differ * 4 < whole * 3;
        if (!c->delta)
            log_info("replicate: chunk %016" PRIx64 ": %" PRIu64 " of %" PRIu64
                     " blocks differ on node %" PRIu64 ", sending it whole",
                     c->chunk_id, differ, whole, c->target);
    } else if (c->theirs) {
        log_warn("replicate: node %" PRIu64 " sent %zu checksums for chunk %016" PRIx64
                 ", not %u: sending it whole",
                 c->target, c->ntheirs, c->chunk_id, c->blocks);
    }
    if (!c->delta) {
        free(c->theirs);
        c->theirs = NULL;
    }
    c->sums = xmalloc(rp->piece_blocks * sizeof(*c->sums));
    c->blist = xmalloc(rp->piece_blocks * sizeof(*c->blist));
    c->next = 0;
    next_piece(c);
}

static int snapshot(struct copy *c)
{
    c->state = CS_SNAPSHOT;
    return replicas_checksums(c->rp->reps, c->chunk_id, c->version, snapshot_done, c);
}

static void fall_back_to_whole(struct copy *c, const char *why)
{
    log_info("replicate: node %" PRIu64 " refused a delta of chunk %016" PRIx64
             " (%s): sending it whole",
             c->target, c->chunk_id, why);
    c->delta = false;
    free(c->theirs);
    c->theirs = NULL;
    c->session = random_u64();
    c->next = 0;
    c->bytes_sent = 0;
    next_piece(c);
}

static void probe_done(int status, rpc_msg *msg, void *arg)
{
    struct copy *c = arg;
    const Keel__ChecksumsRep *rep = NULL;
    int r;

    if (c->rp->stopping) {
        finish(c, -ECANCELED);
        return;
    }
    if (status == 0) {
        rep = msg->env->body_case == KEEL__ENVELOPE__BODY_CHECKSUMS_REP ? msg->env->checksums_rep
                                                                        : NULL;
        if (!rep || rep->block_size != KEEL_BLOCK_SIZE || !msg->payload || msg->in_rbuf ||
            msg->payload_len % sizeof(uint64_t))
            status = -EPROTO;
    }
    if (status) {
        log_info("replicate: node %" PRIu64 " has no usable replica of chunk %016" PRIx64
                 " (%s): sending it whole",
                 c->target, c->chunk_id, err_str(status));
    } else {
        c->theirs = (uint64_t *)msg->payload;
        c->ntheirs = msg->payload_len / sizeof(uint64_t);
        msg->payload = NULL;
        for (size_t b = 0; b < c->ntheirs; b++)
            c->theirs[b] = le64toh(c->theirs[b]);
    }
    r = snapshot(c);
    if (r)
        finish(c, r);
}

/* Asks the target for its checksums; on any failure the copy goes whole. */
static int probe(struct copy *c)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ChecksumsReq q = KEEL__CHECKSUMS_REQ__INIT;
    struct rpc_call_opts opts = {0};
    rpc_conn *conn;
    int r;

    c->state = CS_PROBING;
    q.chunk_id = c->chunk_id;
    q.version = 0; /* whatever version it has */
    env.body_case = KEEL__ENVELOPE__BODY_CHECKSUMS_REQ;
    env.checksums_req = &q;
    opts.timeout_ms = peers_timeout(c->rp->peers);
    r = peers_get(c->rp->peers, c->addr, &conn);
    if (r == 0)
        r = rpc_call(conn, &env, RPC_NO_PAYLOAD, &opts, probe_done, c);
    if (r)
        return snapshot(c);
    return 0;
}

static int begin(struct copy *c)
{
    log_info("replicate: copying chunk %016" PRIx64 " version %" PRIu64 " to node %" PRIu64
             " (%s)%s",
             c->chunk_id, c->version, c->target, c->addr,
             c->delta_asked ? ", delta"
             : c->fuzzy     ? ", fuzzy"
                            : "");
    return c->delta_asked ? probe(c) : snapshot(c);
}

/* ------------------------------------------------------------- public API */

int replicate_new(uv_loop_t *loop, struct replicas *reps, struct peers *peers,
                  const struct replicate_config *cfg, const struct replicate_hooks *hooks,
                  struct replicate **out)
{
    struct replicate *rp = xcalloc(1, sizeof(*rp));
    uint64_t blocks = cfg->piece_bytes / KEEL_BLOCK_SIZE;

    rp->loop = loop;
    rp->reps = reps;
    rp->peers = peers;
    rp->rate = cfg->rate;
    rp->streams = cfg->streams ? cfg->streams : 1;
    /* At a low rate a piece must not keep the target waiting for long. */
    if (rp->rate)
        blocks = MIN(blocks, rp->rate / PACE_SLICE / KEEL_BLOCK_SIZE);
    rp->piece_blocks = (uint32_t)MAX(1, MIN(blocks, MAX_PIECE_BLOCKS));
    rp->zero_sum = csum_zero_block();
    if (hooks)
        rp->hooks = *hooks;
    list_init(&rp->queued);
    list_init(&rp->running);
    list_init(&rp->pacing);
    uv_timer_init(loop, &rp->timer);
    rp->timer.data = rp;
    *out = rp;
    return 0;
}

static struct copy *find_copy(struct list *head, uint64_t chunk_id, uint64_t target)
{
    struct list *pos, *tmp;

    list_for_each_safe(pos, tmp, head)
    {
        struct copy *c = list_entry(pos, struct copy, link);

        if (c->chunk_id == chunk_id && c->target == target)
            return c;
    }
    return NULL;
}

int replicate_start(struct replicate *rp, uint64_t chunk_id, uint64_t version, uint64_t target_id,
                    const char *target_addr, bool delta, bool fuzzy)
{
    struct replica_info ri;
    struct copy *c, *older;
    int r;

    if (rp->stopping)
        return -ECANCELED;
    if (target_id == 0 || !target_addr || peers_check_addr(target_addr))
        return -EINVAL;
    if (fuzzy && (delta || version < 2))
        return -EINVAL; /* a fuzzy copy is whole, and labelled version - 1 >= 1 */
    older = find_copy(&rp->running, chunk_id, target_id);
    if (!older)
        older = find_copy(&rp->queued, chunk_id, target_id);
    if (older && older->version == version)
        return -EALREADY;
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
    c->delta_asked = delta;
    c->fuzzy = fuzzy;
    snprintf(c->addr, sizeof(c->addr), "%s", target_addr);
    list_init(&c->pace);
    if (rp->nrunning >= rp->streams || older) {
        c->state = CS_QUEUED;
        list_add_tail(&rp->queued, &c->link);
        rp->nqueued++;
        if (older)
            log_info("replicate: copy of chunk %016" PRIx64 " version %" PRIu64 " to node %" PRIu64
                     " waits for its copy at version %" PRIu64 " to end",
                     chunk_id, version, target_id, older->version);
        else
            log_info("replicate: copy of chunk %016" PRIx64 " to node %" PRIu64
                     " waits for a stream (%zu queued)",
                     chunk_id, target_id, rp->nqueued);
        return 0;
    }
    c->state = CS_SNAPSHOT;
    list_add_tail(&rp->running, &c->link);
    rp->nrunning++;
    r = begin(c);
    if (r) {
        unlink_copy(c);
        copy_free(c);
    }
    return r;
}

size_t replicate_active(const struct replicate *rp)
{
    return rp->nrunning + rp->nqueued;
}

void replicate_shutdown(struct replicate *rp)
{
    if (rp->stopping)
        return;
    rp->stopping = true;
    while (!list_empty(&rp->queued))
        finish(list_entry(rp->queued.next, struct copy, link), -ECANCELED);
    while (!list_empty(&rp->pacing))
        finish(list_entry(rp->pacing.next, struct copy, pace), -ECANCELED);
    uv_close((uv_handle_t *)&rp->timer, NULL);
}

void replicate_free(struct replicate *rp)
{
    free(rp);
}
