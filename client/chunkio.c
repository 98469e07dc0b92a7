/*
 * chunkio: see chunkio.h for the model and the chunk states.
 */
#include "chunkio.h"

#include "checksum.h"
#include "errors.h"
#include "localread.h"
#include "log.h"
#include "replica.h"
#include "split.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_READ_ROUNDS    4
#define REFETCH_DELAY_MS   200
#define STALE_DELAY_MS     20
#define MAX_STALE_ROUNDS   12
#define MAX_RECOVER_ROUNDS 12
#define MAX_FLUSH_ROUNDS   6

/* A flush's view of one chunk of its set. */
enum { FS_DONE = 0, FS_AGAIN = 1, FS_ROUND = 2 };

struct piece;

/* One replica's share of a write sent to every replica at once. */
struct leg {
    struct piece *p;
    struct core_node *node;
    uint64_t node_id;
    int status;
};

struct piece {
    struct fop *op;
    struct kchunk *ch;
    uint64_t seq;
    uint64_t coff;
    uint32_t len;
    uint8_t *buf;
    bool write;
    struct list link;
    uint64_t tried;        /* replicas tried this round (reads) */
    unsigned rounds;       /* rounds that met bad data (reads) */
    bool bad_seen;         /* this round met bad data, not just silence */
    unsigned quiet_rounds; /* rounds of silence or moving versions */
    bool local_tried;      /* a local read (localread.h) was tried */
    uint64_t deadline_ms;  /* give up waiting for reachable replicas */
    struct core_node *node;
    uint64_t sent_ns;
    uint64_t sent_version;
    Keel__Envelope env;
    union {
        Keel__ReadReq read;
        Keel__WriteReq write;
    } req;
    Keel__Replica chain[KC_MAX_REPLICAS];
    Keel__Replica *chainp[KC_MAX_REPLICAS];
    /* A write sent to every replica at once (send_fanout). */
    struct leg legs[KC_MAX_REPLICAS];
    unsigned nlegs;
    unsigned legs_left;
};

static void pump(struct kchunk *ch);
static void recover(struct kchunk *ch);
static void flush_round(struct fop *op);
struct flush_call;
static void free_flush_call(struct flush_call *fc);

/* ---------------------------------------------------------------- state */

static uint64_t chunk_size(const struct kinode *in)
{
    return in->c->chunk_size;
}

struct kinode *chunkio_inode(keel_client *c, uint64_t ino, uint64_t size)
{
    struct kinode *in = u64map_get(&c->inodes, ino);

    if (in)
        return in;
    in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->c = c;
    in->ino = ino;
    in->size = size;
    in->ext_done = size;
    in->ext_durable = size;
    u64map_init(&in->chunks);
    list_init(&in->ext_waiters);
    list_init(&in->deferred);
    list_init(&in->wb);
    if (u64map_put(&c->inodes, ino, in)) {
        free(in);
        return NULL;
    }
    return in;
}

void chunkio_inode_put(struct kinode *in)
{
    size_t i = 0;
    void *val;

    if (in->opens || in->ops)
        return;
    while (u64map_next(&in->chunks, &i, NULL, &val))
        free(val);
    u64map_free(&in->chunks);
    u64map_del(&in->c->inodes, in->ino);
    free(in);
}

void chunkio_local_attr(keel_client *c, struct keel_stat *st)
{
    const struct kinode *in = u64map_get(&c->inodes, st->ino);

    if (in && chunkio_size_is_ours(in) && in->size > st->size)
        st->size = in->size;
}

/* Looks at ch again at when (chunkio_tick), on time rather than at a tick. */
static void retry_at(struct kchunk *ch, uint64_t when)
{
    ch->retry_at_ms = when;
    core_wake_at(ch->in->c, when);
}

static struct kchunk *get_chunk(struct kinode *in, uint64_t index)
{
    struct kchunk *ch = u64map_get(&in->chunks, index + 1);

    if (ch)
        return ch;
    ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    ch->in = in;
    ch->index = index;
    list_init(&ch->waiting);
    list_init(&ch->inflight);
    if (u64map_put(&in->chunks, index + 1, ch)) {
        free(ch);
        return NULL;
    }
    return ch;
}

static bool usable_for_write(const struct kchunk *ch)
{
    return ch->known && ch->id && ch->writable && ch->in->lease;
}

static bool usable_for_read(const struct kchunk *ch, uint64_t now)
{
    if (!ch->known)
        return false;
    if (ch->writable && ch->in->lease)
        return true;
    return now - ch->fetched_ms < ch->in->c->opts.location_ttl_ms;
}

void chunkio_drop_lease(struct kinode *in, bool handover)
{
    size_t i = 0;
    void *val;

    in->lease = false;
    /* The mtime is no longer this client's to move: a touch would ask for
     * the lease back. A handover's flush still moves it. */
    if (!handover)
        in->ext_touch = in->touched = in->wgen;
    while (u64map_next(&in->chunks, &i, NULL, &val))
        ((struct kchunk *)val)->writable = false;
}

void chunkio_truncated(struct kinode *in, uint64_t size)
{
    uint64_t cs = chunk_size(in);
    size_t i = 0;
    void *val;

    while (u64map_next(&in->chunks, &i, NULL, &val)) {
        struct kchunk *ch = val;

        /* Chunks past the end are gone; the last one has a new version. */
        if ((ch->index + 1) * cs > size) {
            ch->known = false;
            ch->writable = false;
            ch->dirty = false;
        }
    }
    in->size = size;
    in->ext_done = size;
    in->ext_durable = size;
}

/* Writes that landed and that no touch has been sent for yet. */
static bool untouched(const struct kinode *in)
{
    return in->wgen > in->ext_touch;
}

bool chunkio_dirty(const struct kinode *in)
{
    size_t i = 0;
    void *val;

    if (in->ext_done > in->ext_durable || untouched(in))
        return true;
    while (u64map_next(&in->chunks, &i, NULL, &val))
        if (((struct kchunk *)val)->dirty)
            return true;
    return false;
}

/* ----------------------------------------------------------- completion */

static void op_finish(struct fop *op)
{
    struct kinode *in = op->in;

    if (op->kind == FOP_WRITE && in->writes)
        in->writes--;
    if (op->kind == FOP_READ)
        in->c->reads--;
    if (op->err)
        op->result = op->err;
    else if (op->kind == FOP_READ)
        op->result = (ssize_t)(op->off >= in->size ? 0 : MIN(op->len, in->size - op->off));
    else if (op->kind == FOP_WRITE)
        op->result = (ssize_t)op->len;
    else
        op->result = 0;
    free(op->pieces);
    op->pieces = NULL;
    free(op->flush_chunks);
    op->flush_chunks = NULL;
    free(op->flush_state);
    op->flush_state = NULL;
    in->ops--;
    op->done(op);
}

static void op_step_done(struct fop *op, int err)
{
    if (err && !op->err)
        op->err = err;
    if (--op->pending == 0)
        op_finish(op);
}

static void piece_done(struct piece *p, int err)
{
    op_step_done(p->op, err);
}

/* Fails every waiting piece of ch (writes only, or all) with err. */
static void fail_waiting(struct kchunk *ch, bool writes_only, int err)
{
    struct list *pos, *tmp;

    list_for_each_safe(pos, tmp, &ch->waiting)
    {
        struct piece *p = list_entry(pos, struct piece, link);

        if (writes_only && !p->write)
            continue;
        list_del(&p->link);
        piece_done(p, err);
    }
}

/* Puts p back on ch's waiting list, keeping submission order. */
static void requeue(struct kchunk *ch, struct piece *p)
{
    struct list *pos;

    for (pos = ch->waiting.next; pos != &ch->waiting; pos = pos->next)
        if (list_entry(pos, struct piece, link)->seq > p->seq)
            break;
    list_add_tail(pos, &p->link);
}

/* ----------------------------------------------------------------- fetch */

struct fetch {
    struct kinode *in;
    uint64_t first, last; /* chunk indexes */
    bool write;
    Keel__Envelope env;
    Keel__GetChunksReq req;
};

static void set_location(struct kchunk *ch, const Keel__ChunkLoc *loc, bool write)
{
    unsigned n = (unsigned)MIN(loc->n_replicas, KC_MAX_REPLICAS);

    ch->id = loc->chunk_id;
    ch->version = loc->version;
    ch->nreps = n;
    for (unsigned i = 0; i < n; i++) {
        ch->reps[i].node_id = loc->replicas[i]->node_id;
        snprintf(ch->reps[i].addr, sizeof(ch->reps[i].addr), "%s", loc->replicas[i]->addr);
    }
    ch->known = true;
    ch->writable = write;
    ch->fetched_ms = mono_ms();
}

static void fetch_done(int status, const Keel__Envelope *rep, void *arg)
{
    struct fetch *f = arg;
    struct kinode *in = f->in;
    const Keel__GetChunksRep *r = status == 0 ? rep->get_chunks_rep : NULL;

    if (status == 0 && rep->body_case != KEEL__ENVELOPE__BODY_GET_CHUNKS_REP)
        status = -EPROTO;
    if (status == 0) {
        if (f->write)
            in->lease = true;
        /* Our own writes may run ahead of the namenode's size. */
        if (!in->lease || r->size > in->size)
            in->size = MAX(r->size, in->ext_want);
        if (r->size > in->ext_done)
            in->ext_done = r->size;
    }
    for (uint64_t i = f->first; i <= f->last; i++) {
        struct kchunk *ch = u64map_get(&in->chunks, i + 1);
        const Keel__ChunkLoc *loc = NULL;

        if (!ch)
            continue;
        ch->fetching = false;
        if (status) {
            log_debug("ino %llu chunk %llu: locations: %s", (unsigned long long)in->ino,
                      (unsigned long long)i, err_str(status));
            fail_waiting(ch, f->write, status);
            if (status == -EBUSY)
                chunkio_drop_lease(in, false);
            pump(ch);
            continue;
        }
        for (size_t k = 0; k < r->n_chunks; k++)
            if (r->chunks[k]->index == i)
                loc = r->chunks[k];
        if (ch->recovering)
            continue;
        if (loc && loc->n_replicas == 0 && f->write) {
            /* Allocated, but no replica known yet (block reports still
             * coming in after a namenode restart): ask again shortly. */
            if (++ch->attempts > ch->in->c->opts.retry_ms / REFETCH_DELAY_MS) {
                ch->attempts = 0;
                fail_waiting(ch, true, -EIO);
            } else {
                retry_at(ch, mono_ms() + REFETCH_DELAY_MS);
            }
            continue;
        }
        if (loc) {
            set_location(ch, loc, f->write);
        } else if (f->write) {
            fail_waiting(ch, true, -EIO);
        } else {
            ch->id = 0; /* a hole */
            ch->nreps = 0;
            ch->known = true;
            ch->writable = false;
            ch->fetched_ms = mono_ms();
        }
        pump(ch);
    }
    in->ops--;
    free(f);
    chunkio_inode_put(in);
}

/* Asks the namenode for chunks [first, last] of in, marking them fetching. */
static void fetch(struct kinode *in, uint64_t first, uint64_t last, bool write)
{
    struct fetch *f = calloc(1, sizeof(*f));
    int r;

    for (uint64_t i = first; i <= last; i++) {
        struct kchunk *ch = u64map_get(&in->chunks, i + 1);
        if (ch)
            ch->fetching = true;
    }
    if (!f) {
        r = -ENOMEM;
        goto fail;
    }
    f->in = in;
    f->first = first;
    f->last = last;
    f->write = write;
    keel__envelope__init(&f->env);
    keel__get_chunks_req__init(&f->req);
    f->req.ino = in->ino;
    f->req.offset = first * chunk_size(in);
    f->req.length = (last - first + 1) * chunk_size(in);
    f->req.for_write = write;
    f->req.client_id = in->c->client_id;
    f->env.body_case = KEEL__ENVELOPE__BODY_GET_CHUNKS_REQ;
    f->env.get_chunks_req = &f->req;
    in->ops++;
    r = core_nn_call(in->c, &f->env, fetch_done, f);
    if (r == 0)
        return;
    in->ops--;
    free(f);
fail:
    for (uint64_t i = first; i <= last; i++) {
        struct kchunk *ch = u64map_get(&in->chunks, i + 1);
        if (ch) {
            ch->fetching = false;
            fail_waiting(ch, false, r);
        }
    }
}

/* ----------------------------------------------------------------- reads */

static void send_read(struct piece *p);

static void bad_reported(int status, const Keel__Envelope *rep, void *arg)
{
    free(arg);
}

static void report_bad(struct kchunk *ch, uint64_t node_id, const char *why)
{
    Keel__Envelope *env = calloc(1, sizeof(*env) + sizeof(Keel__BadReplicaReq));
    Keel__BadReplicaReq *req;

    if (!env)
        return;
    req = (Keel__BadReplicaReq *)(env + 1);
    keel__envelope__init(env);
    keel__bad_replica_req__init(req);
    req->chunk_id = ch->id;
    req->version = ch->version;
    req->node_id = node_id;
    req->reason = (char *)why;
    env->body_case = KEEL__ENVELOPE__BODY_BAD_REPLICA_REQ;
    env->bad_replica_req = req;
    log_warn("chunk %llu v%llu: replica on node %llu is bad (%s)", (unsigned long long)ch->id,
             (unsigned long long)ch->version, (unsigned long long)node_id, why);
    if (core_nn_call(ch->in->c, env, bad_reported, env) == 0)
        return;
    free(env);
}

/*
 * Every replica of this round failed. Bad data (a checksum) ends the read
 * after MAX_READ_ROUNDS; replicas that were unreachable, unknown (a namenode
 * that has just restarted knows none until the datanodes report) or at a
 * version that is moving (-ESTALE while a bump is under way) are asked for
 * again, after a short and growing pause, until retry_ms passes.
 */
static void read_round_failed(struct piece *p)
{
    struct kchunk *ch = p->ch;
    uint64_t now = mono_ms();

    if (!p->deadline_ms)
        p->deadline_ms = now + ch->in->c->opts.retry_ms;
    if (p->bad_seen ? ++p->rounds > MAX_READ_ROUNDS : now >= p->deadline_ms) {
        piece_done(p, -EIO);
        return;
    }
    if (!p->bad_seen)
        retry_at(ch, now + MIN(STALE_DELAY_MS << MIN(p->quiet_rounds++, 4), REFETCH_DELAY_MS));
    p->tried = 0;
    p->bad_seen = false;
    ch->known = false;
    requeue(ch, p);
    pump(ch);
}

static void read_done(int status, rpc_msg *m, void *arg)
{
    struct piece *p = arg;
    struct kchunk *ch = p->ch;
    int idx = -1;

    ch->reads--;
    core_node_done(ch->in->c, p->node, status, (mono_ns() - p->sent_ns) / 1000);
    for (unsigned i = 0; i < ch->nreps; i++)
        if (strcmp(ch->reps[i].addr, p->node->addr) == 0)
            idx = (int)i;
    if (status == 0) {
        if (m->env->body_case != KEEL__ENVELOPE__BODY_READ_REP || m->payload_len != p->len) {
            status = -EPROTO;
        } else {
            if (!m->in_rbuf)
                memcpy(p->buf, m->payload, p->len);
            if (csum_buf(p->buf, p->len) != m->env->read_rep->checksum)
                status = -EBADMSG;
        }
    }
    if (status == 0) {
        piece_done(p, 0);
        return;
    }
    log_debug("read chunk %llu from %s: %s", (unsigned long long)ch->id, p->node->addr,
              err_str(status));
    if (status == -EIO || status == -EBADMSG || status == -EPROTO)
        p->bad_seen = true;
    if ((status == -EIO || status == -EBADMSG) && idx >= 0)
        report_bad(ch, ch->reps[idx].node_id, status == -EIO ? "checksum" : "bad data on wire");
    if (status == -ESTALE && p->sent_version == ch->version && !ch->recovering) {
        /* Our idea of the version is old: ask again. */
        ch->known = false;
    }
    if (status != -ESTALE && ch->known && p->sent_version == ch->version) {
        send_read(p); /* next replica */
        return;
    }
    read_round_failed(p);
}

static void send_read(struct piece *p)
{
    struct kchunk *ch = p->ch;
    keel_client *c = ch->in->c;
    struct replica_view v[KC_MAX_REPLICAS];
    struct core_node *nodes[KC_MAX_REPLICAS];
    struct rpc_call_opts o = {.timeout_ms = core_call_timeout(c), .rbuf = p->buf, .rcap = p->len};
    uint64_t now = mono_ms();
    int pick, r;

    for (unsigned i = 0; i < ch->nreps; i++) {
        nodes[i] = core_node_get(c, ch->reps[i].addr);
        if (!nodes[i]) {
            p->tried |= 1ull << i;
            continue;
        }
        v[i].inflight = nodes[i]->inflight;
        v[i].ewma_us = nodes[i]->ewma_us;
        v[i].failing = nodes[i]->error_until > now;
    }
    pick = replica_pick(v, ch->nreps, p->tried);
    if (pick < 0) {
        read_round_failed(p);
        return;
    }
    p->tried |= 1ull << pick;
    p->node = nodes[pick];
    p->sent_version = ch->version;
    keel__envelope__init(&p->env);
    keel__read_req__init(&p->req.read);
    p->req.read.chunk_id = ch->id;
    p->req.read.version = ch->version;
    p->req.read.offset = p->coff;
    p->req.read.length = p->len;
    p->env.body_case = KEEL__ENVELOPE__BODY_READ_REQ;
    p->env.read_req = &p->req.read;
    p->sent_ns = mono_ns();
    r = rpc_call(p->node->conn, &p->env, RPC_NO_PAYLOAD, &o, read_done, p);
    if (r) {
        piece_done(p, r);
        return;
    }
    p->node->inflight++;
    ch->reads++;
}

/* ----------------------------------------------------------- local reads */

/* A local read that has to wait for the disk, on a thread of the pool. */
struct local_work {
    uv_work_t work;
    struct piece *p;
    int dirfd; /* its own: the node's may be closed meanwhile (localread_forget) */
    uint64_t chunk_id, version;
    uint32_t blocks;
    int status;
};

static void local_work_run(uv_work_t *w)
{
    struct local_work *lw = w->data;
    struct piece *p = lw->p;

    lw->status = localread_read(lw->dirfd, lw->chunk_id, lw->version, lw->blocks, p->coff, p->buf,
                                p->len, false);
}

static void local_work_done(uv_work_t *w, int status)
{
    struct local_work *lw = w->data;
    struct piece *p = lw->p;

    if (status == 0 && lw->status == 0) {
        piece_done(p, 0);
    } else {
        log_debug("local read of chunk %llu: %s", (unsigned long long)lw->chunk_id,
                  err_str(status ? status : lw->status));
        requeue(p->ch, p); /* over the network, with what is known now */
        pump(p->ch);
    }
    close(lw->dirfd);
    free(lw);
}

/*
 * Reads p from the files of a replica on this host, if there is one (of
 * several, the one replica_local_rank puts first, every time): on the loop
 * when the page cache holds it all, else on the pool. True if the
 * read is done or under way; false to read over the network.
 */
static bool read_local(struct piece *p)
{
    struct kchunk *ch = p->ch;
    keel_client *c = ch->in->c;
    uint32_t blocks = (uint32_t)(c->chunk_size / KEEL_BLOCK_SIZE);
    struct core_node *n = NULL;
    struct local_work *lw;
    uint64_t best = 0;
    int r;

    if (p->local_tried || !c->opts.local_reads)
        return false;
    for (unsigned i = 0; i < ch->nreps; i++) {
        struct core_node *m = core_node_get(c, ch->reps[i].addr);
        uint64_t rank = replica_local_rank(ch->id, ch->reps[i].node_id);

        if (m && localread_node(c, m, ch->reps[i].node_id) && (!n || rank > best)) {
            n = m;
            best = rank;
        }
    }
    if (!n)
        return false;
    p->local_tried = true;
    r = localread_read(n->local_dirfd, ch->id, ch->version, blocks, p->coff, p->buf, p->len, true);
    if (r == 0) {
        piece_done(p, 0);
        return true;
    }
    if (r != -EAGAIN || !(lw = calloc(1, sizeof(*lw)))) {
        log_debug("local read of chunk %llu: %s", (unsigned long long)ch->id, err_str(r));
        return false;
    }
    *lw = (struct local_work){.p = p,
                              .dirfd = fcntl(n->local_dirfd, F_DUPFD_CLOEXEC, 0),
                              .chunk_id = ch->id,
                              .version = ch->version,
                              .blocks = blocks};
    lw->work.data = lw;
    if (lw->dirfd >= 0 && uv_queue_work(&c->loop, &lw->work, local_work_run, local_work_done) == 0)
        return true;
    if (lw->dirfd >= 0)
        close(lw->dirfd);
    free(lw);
    return false;
}

/* ---------------------------------------------------------------- writes */

static void add_failed(struct kchunk *ch, uint64_t node, int status)
{
    for (unsigned i = 0; i < ch->nfailed; i++)
        if (ch->failed[i] == node)
            return;
    if (ch->nfailed < KC_MAX_REPLICAS) {
        ch->failed[ch->nfailed] = node;
        ch->failed_status[ch->nfailed++] = status;
    }
}

/* The request itself is wrong: no replica will take it. */
static bool write_refused(int status)
{
    return status == -EINVAL || status == -EMSGSIZE || status == -ERANGE || status == -EFBIG ||
           status == -EPROTO;
}

/* p has left ch->inflight; failed: some replica (now in ch->failed) may
 * have missed it. */
static void write_ended(struct piece *p, bool failed)
{
    struct kchunk *ch = p->ch;

    if (!failed) {
        ch->in->wgen++;
        ch->dirty = true;
        ch->readied = false;
        ch->attempts = 0;
        ch->stale_rounds = 0;
        ch->error = 0;
        piece_done(p, 0);
        return;
    }
    log_info("write to chunk %llu v%llu failed on %u replica(s), recovering (node %llu: %s)",
             (unsigned long long)ch->id, (unsigned long long)ch->version, ch->nfailed,
             (unsigned long long)ch->failed[ch->nfailed - 1],
             err_str(ch->failed_status[ch->nfailed - 1]));
    ch->recovering = true;
    requeue(ch, p);
}

static void write_next(struct kchunk *ch)
{
    if (ch->recovering && list_empty(&ch->inflight))
        recover(ch);
    else
        pump(ch);
}

static void write_done(int status, rpc_msg *m, void *arg)
{
    struct piece *p = arg;
    struct kchunk *ch = p->ch;
    bool failed = false;

    core_node_done(ch->in->c, p->node, status, (mono_ns() - p->sent_ns) / 1000);
    list_del(&p->link);
    if (status == 0 && m->env->body_case != KEEL__ENVELOPE__BODY_WRITE_REP)
        status = -EPROTO;
    if (write_refused(status)) {
        log_error("write to chunk %llu refused: %s", (unsigned long long)ch->id, err_str(status));
        piece_done(p, status);
        write_next(ch);
        return;
    }
    if (status) {
        /* The head did not take it (or never answered). */
        add_failed(ch, ch->nreps ? ch->reps[0].node_id : 0, status);
        failed = true;
    } else {
        const Keel__WriteRep *r = m->env->write_rep;

        for (size_t i = 0; i < r->n_failed; i++) {
            add_failed(ch, r->failed[i], i < r->n_failed_status ? r->failed_status[i] : -EIO);
            failed = true;
        }
        /* Nodes that were never asked missed the write too; resending to
         * them after recovery is enough, they did nothing wrong. */
        if (r->n_unreached && !failed) {
            add_failed(ch, r->unreached[0], -EPIPE);
            failed = true;
        }
    }
    write_ended(p, failed);
    write_next(ch);
}

static void init_write_req(struct piece *p)
{
    struct kchunk *ch = p->ch;

    keel__envelope__init(&p->env);
    keel__write_req__init(&p->req.write);
    p->req.write.chunk_id = ch->id;
    p->req.write.version = ch->version;
    p->req.write.offset = p->coff;
    p->req.write.length = p->len;
    p->req.write.checksum = csum_buf(p->buf, p->len);
    p->env.body_case = KEEL__ENVELOPE__BODY_WRITE_REQ;
    p->env.write_req = &p->req.write;
    p->sent_ns = mono_ns();
    p->sent_version = ch->version;
}

/* Sends p down the chain of ch's replicas, the first one first. */
static void send_write(struct piece *p)
{
    struct kchunk *ch = p->ch;
    keel_client *c = ch->in->c;
    struct rpc_call_opts o = {.timeout_ms = core_call_timeout(c)};
    rpc_payload payload = {p->buf, p->len, NULL, NULL};
    int r;

    p->node = core_node_get(c, ch->reps[0].addr);
    if (!p->node) {
        piece_done(p, -ENOMEM);
        return;
    }
    init_write_req(p);
    for (unsigned i = 1; i < ch->nreps; i++) {
        keel__replica__init(&p->chain[i - 1]);
        p->chain[i - 1].node_id = ch->reps[i].node_id;
        p->chain[i - 1].addr = ch->reps[i].addr;
        p->chainp[i - 1] = &p->chain[i - 1];
    }
    p->req.write.chain = p->chainp;
    p->req.write.n_chain = ch->nreps - 1;
    list_add_tail(&ch->inflight, &p->link);
    r = rpc_call(p->node->conn, &p->env, payload, &o, write_done, p);
    if (r) {
        list_del(&p->link);
        piece_done(p, r);
        return;
    }
    p->node->inflight++;
}

static void leg_done(int status, rpc_msg *m, void *arg)
{
    struct leg *l = arg;
    struct piece *p = l->p;
    struct kchunk *ch = p->ch;
    unsigned refused = 0, took = 0;
    bool failed = false;

    core_node_done(ch->in->c, l->node, status, (mono_ns() - p->sent_ns) / 1000);
    if (status == 0) {
        const Keel__WriteRep *r =
            m->env->body_case == KEEL__ENVELOPE__BODY_WRITE_REP ? m->env->write_rep : NULL;

        /* A node with no chain after it names only itself. */
        if (!r || r->n_failed > 1 || r->n_unreached)
            status = -EPROTO;
        else if (r->n_failed)
            status = r->n_failed_status ? r->failed_status[0] : -EIO;
    }
    l->status = status;
    if (--p->legs_left)
        return;
    list_del(&p->link);
    for (unsigned i = 0; i < p->nlegs; i++) {
        refused += write_refused(p->legs[i].status);
        took += p->legs[i].status == 0;
    }
    if (refused == p->nlegs) {
        log_error("write to chunk %llu refused: %s", (unsigned long long)ch->id,
                  err_str(p->legs[0].status));
        piece_done(p, p->legs[0].status);
        write_next(ch);
        return;
    }
    /*
     * Some replica took it: every other one missed it, whatever the reason
     * (one the client could not even send to included). If none did, the
     * trouble may be this client's own: name one replica, as a chain whose
     * head did not answer would, and send to the others again after the
     * recovery, rather than name them all and leave none.
     */
    for (unsigned i = 0; i < p->nlegs; i++) {
        const struct leg *g = &p->legs[i];

        if (g->status == 0 || (!took && write_refused(g->status)))
            continue;
        add_failed(ch, g->node_id, g->status);
        failed = true;
        if (!took)
            break;
    }
    write_ended(p, failed);
    write_next(ch);
}

/*
 * Sends p to every replica of ch at once, each told it is the last of its
 * chain: a small write then waits for one round trip rather than one per
 * replica. The order of overlapping writes still holds, as the client never
 * has two of them in flight to one chunk.
 */
static void send_fanout(struct piece *p)
{
    struct kchunk *ch = p->ch;
    keel_client *c = ch->in->c;
    struct rpc_call_opts o = {.timeout_ms = core_call_timeout(c)};
    rpc_payload payload = {p->buf, p->len, NULL, NULL};
    int r = 0;

    init_write_req(p);
    p->nlegs = ch->nreps;
    p->legs_left = 0;
    list_add_tail(&ch->inflight, &p->link);
    for (unsigned i = 0; i < p->nlegs; i++) {
        struct leg *l = &p->legs[i];

        l->p = p;
        l->node_id = ch->reps[i].node_id;
        l->node = core_node_get(c, ch->reps[i].addr);
        r = l->node ? rpc_call(l->node->conn, &p->env, payload, &o, leg_done, l) : -ENOMEM;
        l->status = r;
        if (r == 0) {
            l->node->inflight++;
            p->legs_left++;
        }
    }
    if (p->legs_left == 0) {
        list_del(&p->link);
        piece_done(p, r);
    }
}

static bool overlaps(const struct piece *a, const struct piece *b)
{
    return a->coff < b->coff + b->len && b->coff < a->coff + a->len;
}

static bool write_blocked(const struct kchunk *ch, const struct piece *p, struct piece *const *held,
                          size_t nheld)
{
    const struct list *pos;

    for (pos = ch->inflight.next; pos != &ch->inflight; pos = pos->next)
        if (overlaps(list_entry(pos, struct piece, link), p))
            return true;
    for (size_t i = 0; i < nheld; i++)
        if (overlaps(held[i], p))
            return true;
    return false;
}

/* ------------------------------------------------------------- recovery */

struct recovery {
    struct kchunk *ch;
    Keel__Envelope env;
    Keel__RecoverChunkReq req;
    uint64_t failed[KC_MAX_REPLICAS];
    bool full; /* every replica that failed was out of space */
};

/* What the writes of a chunk that could not be recovered fail with: a
 * full disk is told as such (a hypervisor pauses the guest on ENOSPC
 * rather than pass it an I/O error). */
static int unrecovered(int status, bool full)
{
    if (status == -EBUSY)
        return -EBUSY;
    return full ? -ENOSPC : -EIO;
}

static void recovered(int status, const Keel__Envelope *rep, void *arg)
{
    struct recovery *rc = arg;
    struct kchunk *ch = rc->ch;
    struct kinode *in = ch->in;

    if (status == 0 && rep->body_case != KEEL__ENVELOPE__BODY_RECOVER_CHUNK_REP)
        status = -EPROTO;
    ch->recovering = false;
    ch->nfailed = 0;
    if (status == 0 && rep->recover_chunk_rep->chunk) {
        set_location(ch, rep->recover_chunk_rep->chunk, true);
        log_info("chunk %llu recovered: v%llu on %u replica(s)", (unsigned long long)ch->id,
                 (unsigned long long)ch->version, ch->nreps);
    } else {
        log_warn("chunk %llu: recovery failed: %s%s", (unsigned long long)ch->id, err_str(status),
                 rc->full ? " (its replicas are out of space)" : "");
        if (status != -ESTALE)
            ch->error = unrecovered(status, rc->full);
        ch->known = false;
        ch->writable = false;
        if (status == -EBUSY)
            chunkio_drop_lease(in, false);
        if (status != -ESTALE)
            fail_waiting(ch, true, ch->error);
    }
    in->ops--;
    free(rc);
    pump(ch);
    chunkio_inode_put(in);
}

/* The writes in flight have finished; some failed. Repair the pipeline. */
static void recover(struct kchunk *ch)
{
    struct kinode *in = ch->in;
    struct recovery *rc;
    bool only_stale = ch->nfailed > 0, full = ch->nfailed > 0;
    unsigned n = 0;

    for (unsigned i = 0; i < ch->nfailed; i++) {
        only_stale &= ch->failed_status[i] == -ESTALE;
        full &= ch->failed_status[i] == -ENOSPC;
    }
    if (++ch->attempts > MAX_RECOVER_ROUNDS) {
        log_error("chunk %llu: giving up after %u recovery rounds", (unsigned long long)ch->id,
                  ch->attempts - 1);
        ch->error = unrecovered(-EIO, full);
        ch->recovering = false;
        ch->nfailed = 0;
        ch->known = false;
        ch->attempts = 0;
        fail_waiting(ch, true, ch->error);
        pump(ch);
        return;
    }
    if (only_stale && ch->stale_rounds < MAX_STALE_ROUNDS) {
        /* The version moved on (lease handover, repair), or is moving: the
         * datanodes may have the new one before the namenode has committed
         * it. Ask again after a short, growing pause; a replica that is
         * still refused after that is dropped like any failed one. */
        ch->attempts--;
        ch->recovering = false;
        ch->nfailed = 0;
        ch->known = false;
        ch->writable = false;
        retry_at(ch, mono_ms() + MIN(STALE_DELAY_MS << MIN(ch->stale_rounds, 4), REFETCH_DELAY_MS));
        ch->stale_rounds++;
        pump(ch);
        return;
    }
    rc = calloc(1, sizeof(*rc));
    if (!rc) {
        ch->recovering = false;
        fail_waiting(ch, true, -ENOMEM);
        return;
    }
    rc->ch = ch;
    rc->full = full;
    keel__envelope__init(&rc->env);
    keel__recover_chunk_req__init(&rc->req);
    rc->req.ino = in->ino;
    rc->req.chunk_id = ch->id;
    rc->req.version = ch->version;
    rc->req.client_id = in->c->client_id;
    /* Replicas that only refused a version that moved are not failed:
     * named with a dead one, too few might be left. */
    for (unsigned i = 0; i < ch->nfailed; i++)
        if (only_stale || ch->failed_status[i] != -ESTALE)
            rc->failed[n++] = ch->failed[i];
    rc->req.failed = rc->failed;
    rc->req.n_failed = n;
    rc->env.body_case = KEEL__ENVELOPE__BODY_RECOVER_CHUNK_REQ;
    rc->env.recover_chunk_req = &rc->req;
    in->ops++;
    if (core_nn_call(in->c, &rc->env, recovered, rc)) {
        in->ops--;
        free(rc);
        ch->recovering = false;
        fail_waiting(ch, true, -ENOMEM);
    }
}

/* ------------------------------------------------------------------ pump */

static void ready_done(int status, rpc_msg *m, void *arg)
{
    if (status)
        log_debug("readying chunk %llu: %s", (unsigned long long)(uintptr_t)arg, err_str(status));
}

/*
 * A replica's first write after it settled marks it dirty on disk first,
 * and that sync waits for whatever else the disk has queued: 30-130 ms
 * under a stream of writes. A sequential writer has the next chunk of the
 * file readied as soon as it writes into a chunk, with a write of no bytes
 * to each of its replicas, so that it finds them marked when it gets
 * there: a whole chunk's writes ahead, as half of one was not always
 * enough. Only a hint: its failures are the writes' to find.
 */
static void ready_next(struct kchunk *ch, const struct piece *p)
{
    struct kinode *in = ch->in;
    keel_client *c = in->c;
    uint64_t csize = chunk_size(in), off = ch->index * csize + p->coff;
    bool sequential = off == in->seq_end;
    struct kchunk *next;

    in->seq_end = off + p->len;
    if (!sequential || (ch->index + 1) * csize >= in->size)
        return;
    next = get_chunk(in, ch->index + 1);
    /* Only a chunk nobody waits on, and one with no trouble of its own. */
    if (!next || next->readied || next->fetching || next->recovering || next->error ||
        next->retry_at_ms > mono_ms() || !list_empty(&next->waiting) ||
        !list_empty(&next->inflight))
        return;
    if (!usable_for_write(next)) {
        /* Where its writes would fetch it anyway, moments later. */
        if (!next->known)
            fetch(in, next->index, next->index, true);
        return;
    }
    next->readied = true;
    for (unsigned i = 0; i < next->nreps; i++) {
        struct rpc_call_opts o = {.timeout_ms = core_call_timeout(c)};
        struct core_node *node = core_node_get(c, next->reps[i].addr);
        Keel__Envelope env = KEEL__ENVELOPE__INIT;
        Keel__WriteReq req = KEEL__WRITE_REQ__INIT;

        if (!node)
            return;
        req.chunk_id = next->id;
        req.version = next->version;
        req.checksum = csum_buf(NULL, 0);
        env.body_case = KEEL__ENVELOPE__BODY_WRITE_REQ;
        env.write_req = &req;
        (void)rpc_call(node->conn, &env, RPC_NO_PAYLOAD, &o, ready_done,
                       (void *)(uintptr_t)next->id);
    }
}

/* Starts whatever waiting pieces of ch can start now. */
static void pump(struct kchunk *ch)
{
    struct piece *held[64];
    size_t nheld = 0;
    struct list *pos, *tmp;
    uint64_t now = mono_ms();

    if (ch->fetching || ch->recovering || now < ch->retry_at_ms)
        return;
    list_for_each_safe(pos, tmp, &ch->waiting)
    {
        struct piece *p = list_entry(pos, struct piece, link);

        if (p->write) {
            if (!usable_for_write(ch)) {
                fetch(ch->in, ch->index, ch->index, true);
                return;
            }
            if (write_blocked(ch, p, held, nheld)) {
                if (nheld == ARRAY_SIZE(held))
                    return;
                held[nheld++] = p;
                continue;
            }
            list_del(&p->link);
            ready_next(ch, p);
            if (ch->nreps > 1 && p->len <= ch->in->c->opts.fanout_max)
                send_fanout(p);
            else
                send_write(p);
        } else {
            if (!usable_for_read(ch, now)) {
                fetch(ch->in, ch->index, ch->index, false);
                return;
            }
            /* A read sees the writes queued before it. */
            if (write_blocked(ch, p, held, nheld))
                continue;
            list_del(&p->link);
            if (ch->id == 0) {
                memset(p->buf, 0, p->len);
                piece_done(p, 0);
            } else if (!read_local(p)) {
                send_read(p);
            }
        }
    }
}

/* ---------------------------------------------------------------- extend */

struct ext_waiter {
    struct list link;
    struct fop *op;
    uint64_t size;
    bool durable;
};

struct extend {
    struct kinode *in;
    uint64_t touch;
    Keel__Envelope env;
    Keel__ExtendReq req;
};

static void send_extend(struct kinode *in);

static bool ext_satisfied(const struct kinode *in, const struct ext_waiter *w)
{
    return w->size <= (w->durable ? in->ext_durable : in->ext_done);
}

static void extended(int status, const Keel__Envelope *rep, void *arg)
{
    struct extend *e = arg;
    struct kinode *in = e->in;
    struct list *pos, *tmp;

    if (status == 0 && rep->body_case != KEEL__ENVELOPE__BODY_EXTEND_REP)
        status = -EPROTO;
    in->ext_inflight = false;
    if (status == 0) {
        in->ext_done = MAX(in->ext_done, MAX(rep->extend_rep->size, e->req.size));
        if (e->req.durable)
            in->ext_durable = MAX(in->ext_durable, e->req.size);
    } else if (e->req.touch) {
        log_debug("ino %llu: telling the namenode of writes: %s", (unsigned long long)in->ino,
                  err_str(status));
    }
    /* Done with, either way: a failed touch is not sent again. */
    in->touched = MAX(in->touched, e->touch);
    list_for_each_safe(pos, tmp, &in->ext_waiters)
    {
        struct ext_waiter *w = list_entry(pos, struct ext_waiter, link);

        if (status == 0 && !ext_satisfied(in, w))
            continue;
        list_del(&w->link);
        op_step_done(w->op, status);
        free(w);
    }
    in->ops--;
    free(e);
    if (!list_empty(&in->ext_waiters) || in->ext_touch > in->touched)
        send_extend(in);
    chunkio_inode_put(in);
}

static void send_extend(struct kinode *in)
{
    struct extend *e = calloc(1, sizeof(*e));
    struct list *pos, *tmp;

    if (e) {
        e->in = in;
        keel__envelope__init(&e->env);
        keel__extend_req__init(&e->req);
        e->req.ino = in->ino;
        e->req.size = in->ext_want;
        e->req.durable = in->ext_want_durable;
        e->req.client_id = in->c->client_id;
        e->touch = in->ext_touch;
        e->req.touch = e->touch > in->touched;
        e->env.body_case = KEEL__ENVELOPE__BODY_EXTEND_REQ;
        e->env.extend_req = &e->req;
        in->ext_want_durable = false;
        in->ext_inflight = true;
        in->ops++;
        if (core_nn_call(in->c, &e->env, extended, e) == 0)
            return;
        in->ops--;
        in->ext_inflight = false;
        free(e);
    }
    list_for_each_safe(pos, tmp, &in->ext_waiters)
    {
        struct ext_waiter *w = list_entry(pos, struct ext_waiter, link);
        list_del(&w->link);
        op_step_done(w->op, -ENOMEM);
        free(w);
    }
}

/* op needs the namenode to show (durable: to have committed) a size of at
 * least size before it completes. */
static void wait_extend(struct fop *op, uint64_t size, bool durable)
{
    struct kinode *in = op->in;
    struct ext_waiter *w = calloc(1, sizeof(*w));

    if (!w) {
        op->err = -ENOMEM;
        return;
    }
    w->op = op;
    w->size = size;
    w->durable = durable;
    op->pending++;
    list_add_tail(&in->ext_waiters, &w->link);
    in->ext_want = MAX(in->ext_want, size);
    in->ext_want_durable |= durable;
    if (!in->ext_inflight)
        send_extend(in);
}

/* op writes up to size: the namenode's file size must cover it. */
static void extend(struct fop *op, uint64_t size)
{
    struct kinode *in = op->in;

    if (size > in->size)
        in->size = size;
    if (size > in->ext_done)
        wait_extend(op, size, false);
}

void chunkio_resend_sizes(keel_client *c)
{
    size_t i = 0;
    void *val;

    while (u64map_next(&c->inodes, &i, NULL, &val)) {
        struct kinode *in = val;

        if (!in->lease || in->ext_done == 0)
            continue;
        in->ext_want = MAX(in->ext_want, in->ext_done);
        if (!in->ext_inflight)
            send_extend(in);
    }
}

/* ----------------------------------------------------------------- flush */

struct flush_call {
    struct fop *op;
    struct core_node *node;
    Keel__Envelope env;
    Keel__FlushReq req;
    uint64_t *ids, *versions;
    struct kchunk **chunks;
    size_t n;
};

static void flush_node_done(int status, rpc_msg *m, void *arg)
{
    struct flush_call *fc = arg;
    struct fop *op = fc->op;

    core_node_done(op->in->c, fc->node, status, 0);
    if (status == 0 && m->env->body_case != KEEL__ENVELOPE__BODY_FLUSH_REP)
        status = -EPROTO;
    for (size_t i = 0; i < fc->n; i++) {
        struct kchunk *ch = fc->chunks[i];
        int st = status;

        if (st == 0)
            st = i < m->env->flush_rep->n_status ? m->env->flush_rep->status[i] : -EIO;
        if (st == 0)
            continue;
        log_info("flush of chunk %llu on %s: %s", (unsigned long long)ch->id, fc->node->addr,
                 err_str(st));
        ch->dirty = true;
        for (size_t j = 0; j < op->nflush; j++)
            if (op->flush_chunks[j] == ch)
                op->flush_state[j] = FS_AGAIN;
        if (fc->versions[i] != ch->version)
            continue; /* already moved on */
        for (unsigned k = 0; k < ch->nreps; k++)
            if (strcmp(ch->reps[k].addr, fc->node->addr) == 0)
                add_failed(ch, ch->reps[k].node_id, st);
        ch->recovering = true;
    }
    free_flush_call(fc);
    if (--op->pending)
        return;
    /* The round is over: repair what failed, then flush it again. */
    op->pending = 1;
    for (size_t i = 0; i < op->nflush; i++) {
        struct kchunk *ch = op->flush_chunks[i];
        if (op->flush_state[i] == FS_AGAIN && ch->recovering && list_empty(&ch->inflight) &&
            !ch->fetching)
            recover(ch);
    }
    flush_round(op);
}

/* A chunk in recovery has writes not yet done, and one being located has
 * no version to flush at: its flush waits. Writes merely in flight do not
 * hold a flush back: they are not covered by it. A dirty chunk whose
 * location was dropped is located again. */
static bool chunk_settled(struct kchunk *ch)
{
    if (ch->dirty && !ch->known && !ch->fetching && !ch->recovering && !ch->error)
        fetch(ch->in, ch->index, ch->index, false);
    return !ch->recovering && !ch->fetching;
}

static void free_flush_call(struct flush_call *fc)
{
    free(fc->ids);
    free(fc->versions);
    free(fc->chunks);
    free(fc);
}

/* The FlushReq for one datanode: every chunk of the set it holds. */
static struct flush_call *build_flush_call(struct fop *op, struct core_node *node)
{
    struct flush_call *fc = calloc(1, sizeof(*fc));
    size_t n = op->nflush;

    if (!fc)
        return NULL;
    fc->ids = calloc(n, sizeof(uint64_t));
    fc->versions = calloc(n, sizeof(uint64_t));
    fc->chunks = calloc(n, sizeof(*fc->chunks));
    if (!fc->ids || !fc->versions || !fc->chunks) {
        free_flush_call(fc);
        return NULL;
    }
    fc->op = op;
    fc->node = node;
    for (size_t j = 0; j < n; j++) {
        struct kchunk *ch = op->flush_chunks[j];

        if (op->flush_state[j] != FS_ROUND)
            continue;
        for (unsigned k = 0; k < ch->nreps; k++) {
            if (strcmp(ch->reps[k].addr, node->addr) == 0) {
                fc->ids[fc->n] = ch->id;
                fc->versions[fc->n] = ch->version;
                fc->chunks[fc->n++] = ch;
            }
        }
    }
    keel__envelope__init(&fc->env);
    keel__flush_req__init(&fc->req);
    fc->req.chunk_ids = fc->ids;
    fc->req.n_chunk_ids = fc->n;
    fc->req.versions = fc->versions;
    fc->req.n_versions = fc->n;
    fc->env.body_case = KEEL__ENVELOPE__BODY_FLUSH_REQ;
    fc->env.flush_req = &fc->req;
    return fc;
}

/*
 * Flushes op's chunks on every replica. The set is the chunks dirty when the
 * flush began: writes that complete later are not this flush's business, so
 * a chunk is flushed once, and again only if its flush failed on some
 * replica (after that replica has been dropped by a recovery), at most
 * MAX_FLUSH_ROUNDS times. Then the file's size is made durable.
 */
static void flush_round(struct fop *op)
{
    struct kinode *in = op->in;
    keel_client *c = in->c;
    struct core_node **nodes = NULL;
    size_t n = 0, nnodes = 0;

    for (size_t i = 0; i < op->nflush; i++) {
        struct kchunk *ch = op->flush_chunks[i];

        if (op->flush_state[i] != FS_AGAIN)
            continue;
        if (!chunk_settled(ch)) {
            /* Wait for the recovery or the location; chunkio_tick retries. */
            list_add_tail(&in->deferred, &op->defer_link);
            return;
        }
        if (ch->error || !ch->known || ch->id == 0 || ch->nreps == 0) {
            /* A failed recovery, or a chunk truncated away: nothing to flush. */
            if (ch->error)
                op->err = ch->error;
            op->flush_state[i] = FS_DONE;
            continue;
        }
        op->flush_state[i] = FS_ROUND;
        n++;
    }
    if (n == 0) {
        /* The data is durable; now the size that covers it. */
        if (!op->err && in->ext_done > in->ext_durable)
            wait_extend(op, in->ext_done, true);
        op_step_done(op, 0);
        return;
    }
    if (++op->flush_rounds > MAX_FLUSH_ROUNDS) {
        op_step_done(op, -EIO);
        return;
    }
    nodes = calloc(n * KC_MAX_REPLICAS, sizeof(*nodes));
    if (!nodes) {
        op_step_done(op, -ENOMEM);
        return;
    }
    for (size_t i = 0; i < op->nflush; i++) {
        struct kchunk *ch = op->flush_chunks[i];

        if (op->flush_state[i] != FS_ROUND)
            continue;
        ch->dirty = false;
        for (unsigned r = 0; r < ch->nreps; r++) {
            struct core_node *node = core_node_get(c, ch->reps[r].addr);
            bool seen = false;

            for (size_t k = 0; k < nnodes && !seen; k++)
                seen = nodes[k] == node;
            if (!node) {
                ch->dirty = true;
                op->err = -ENOMEM;
            } else if (!seen) {
                nodes[nnodes++] = node;
            }
        }
    }
    for (size_t k = 0; k < nnodes; k++) {
        struct flush_call *fc = build_flush_call(op, nodes[k]);

        if (fc &&
            rpc_call(nodes[k]->conn, &fc->env, RPC_NO_PAYLOAD, NULL, flush_node_done, fc) == 0) {
            op->pending++;
            nodes[k]->inflight++;
            continue;
        }
        if (fc)
            free_flush_call(fc);
        op->err = -ENOMEM;
    }
    for (size_t i = 0; i < op->nflush; i++)
        if (op->flush_state[i] == FS_ROUND)
            op->flush_state[i] = FS_DONE;
    free(nodes);
    /* Drop the hold taken for this round. */
    op_step_done(op, 0);
}

/*
 * Tells the namenode that the file's data changed since the last touch
 * (ExtendReq touch): it moves the mtime, as a local file system does on a
 * write, for other clients and backup tools to see. A flush, a drain
 * (close(2) through keel-fuse) and a lease handover send one, and do not
 * wait for it: I/O never waits on the namenode for this. It goes out
 * before whatever the client sends the namenode next (a lease's release
 * or handover, on the same connection, in order).
 */
static void touch(struct kinode *in)
{
    if (!untouched(in))
        return;
    in->ext_touch = in->wgen;
    if (!in->ext_inflight)
        send_extend(in);
}

static void start_flush(struct fop *op)
{
    struct kinode *in = op->in;
    size_t i = 0, n = 0;
    void *val;

    touch(in);
    op->flush_chunks = calloc(in->chunks.len ? in->chunks.len : 1, sizeof(*op->flush_chunks));
    op->flush_state = calloc(in->chunks.len ? in->chunks.len : 1, 1);
    if (!op->flush_chunks || !op->flush_state) {
        op_step_done(op, -ENOMEM);
        return;
    }
    while (u64map_next(&in->chunks, &i, NULL, &val)) {
        struct kchunk *ch = val;
        if (ch->dirty || ch->recovering) {
            op->flush_state[n] = FS_AGAIN;
            op->flush_chunks[n++] = ch;
        }
    }
    op->nflush = n;
    flush_round(op);
}

/* ----------------------------------------------------------------- start */

/*
 * How much of a read one datanode request carries. A read alone in the
 * client (one VM's sequential stream, a synchronous caller) goes out as
 * 128 KiB pieces, which the replicas read, checksum and send at once: on
 * 1 MiB sequential reads that is about half again the throughput of one
 * request. Two reads at a time are cut in 512 KiB pieces; with more, the
 * datanodes are kept busy already and cutting only adds requests.
 */
static uint32_t read_piece_size(const keel_client *c)
{
    unsigned k = c->reads ? MIN(c->reads, 3u) : 1;
    uint64_t size = (uint64_t)KC_READ_PIECE << (2 * (k - 1));

    return (uint32_t)MIN(size, (uint64_t)KC_MAX_IO);
}

static int queue_pieces(struct fop *op)
{
    struct kinode *in = op->in;
    uint64_t cs = chunk_size(in);
    bool write = op->kind == FOP_WRITE;
    uint32_t max_io = write ? KC_MAX_IO : read_piece_size(in->c);
    size_t n = split_count(op->off, op->len, cs, max_io);
    struct split_piece *sp;
    uint64_t now = mono_ms();
    uint64_t run_first = 0, run_last = 0;
    bool in_run = false;

    if (n == 0)
        return 0;
    sp = calloc(n, sizeof(*sp));
    op->pieces = calloc(n, sizeof(*op->pieces));
    if (!sp || !op->pieces) {
        free(sp);
        return -ENOMEM;
    }
    split_range(op->off, op->len, cs, max_io, sp);
    for (size_t i = 0; i < n; i++) {
        struct kchunk *ch = get_chunk(in, sp[i].index);
        struct piece *p = &op->pieces[i];

        if (!ch) {
            free(sp);
            return -ENOMEM;
        }
        p->op = op;
        p->ch = ch;
        p->seq = ch->next_seq++;
        p->coff = sp[i].coff;
        p->len = sp[i].len;
        p->buf = op->buf + sp[i].boff;
        p->write = write;
        list_add_tail(&ch->waiting, &p->link);
    }
    op->npieces = n;
    op->pending += (unsigned)n;
    /* Fetch the locations we lack, one call per run of adjacent chunks. */
    for (size_t i = 0; i < n; i++) {
        struct kchunk *ch = op->pieces[i].ch;
        bool need;

        if (i > 0 && op->pieces[i - 1].ch == ch)
            continue;
        need = !ch->fetching && !ch->recovering &&
               !(write ? usable_for_write(ch) : usable_for_read(ch, now));
        if (need && in_run && ch->index == run_last + 1) {
            run_last = ch->index;
            continue;
        }
        if (in_run)
            fetch(in, run_first, run_last, write);
        in_run = need;
        run_first = run_last = ch->index;
    }
    if (in_run)
        fetch(in, run_first, run_last, write);
    free(sp);
    return 0;
}

void chunkio_start(struct fop *op)
{
    struct kinode *in = op->in;
    uint64_t now = mono_ms();
    int r;

    in->ops++;
    op->pending = 1; /* held until everything is queued */
    switch (op->kind) {
    case FOP_FLUSH:
        start_flush(op);
        return;
    case FOP_TOUCH:
        touch(in);
        op_step_done(op, 0);
        return;
    case FOP_READ:
        in->c->reads++;
        /* A holder of the lease knows the size; others may need to ask. */
        if (op->len == 0 || (in->lease && op->off >= in->size)) {
            op_step_done(op, 0);
            return;
        }
        if (!in->lease && op->off + op->len > in->size) {
            /* Past our idea of the end: refresh it with the locations. */
            uint64_t first = op->off / chunk_size(in);
            struct kchunk *ch = get_chunk(in, first);
            if (ch)
                ch->fetched_ms = 0;
        }
        break;
    case FOP_WRITE:
        in->writes++;
        in->last_write_ms = now;
        if (op->len == 0) {
            op_step_done(op, 0);
            return;
        }
        extend(op, op->off + op->len);
        break;
    }
    r = queue_pieces(op);
    if (r) {
        op->err = r;
        /* Pieces already queued complete on their own. */
    }
    for (size_t i = 0; i < op->npieces; i++)
        if (i == 0 || op->pieces[i].ch != op->pieces[i - 1].ch)
            pump(op->pieces[i].ch);
    op_step_done(op, 0);
}

void chunkio_tick(keel_client *c, uint64_t now_ms)
{
    size_t i = 0;
    void *val;

    while (u64map_next(&c->inodes, &i, NULL, &val)) {
        struct kinode *in = val;
        struct list deferred, *pos;
        size_t k = 0, cap = in->chunks.cap;
        void *cv;

        while (u64map_next(&in->chunks, &k, NULL, &cv)) {
            struct kchunk *ch = cv;

            if (ch->retry_at_ms && now_ms >= ch->retry_at_ms) {
                ch->retry_at_ms = 0;
                if (ch->recovering && list_empty(&ch->inflight))
                    recover(ch);
                else
                    pump(ch);
            }
            if (in->chunks.cap != cap) { /* pump added a chunk (ready_next) */
                cap = in->chunks.cap;
                k = 0;
            }
        }
        if (list_empty(&in->deferred))
            continue;
        list_init(&deferred);
        deferred = in->deferred;
        deferred.next->prev = &deferred;
        deferred.prev->next = &deferred;
        list_init(&in->deferred);
        while ((pos = list_pop(&deferred)))
            flush_round(list_entry(pos, struct fop, defer_link));
    }
}
