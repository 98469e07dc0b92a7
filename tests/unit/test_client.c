/*
 * Unit tests for libkeel's I/O state machine (client/chunkio.c) against a
 * fake cluster in this process: a fake namenode and three fake datanodes
 * speaking the real protocol over 127.0.0.1, on their own loop thread, with
 * failures injected at will. The real daemons are tested elsewhere; here
 * the point is the client's behaviour: splitting, pipelines, recovery after
 * a failed replica, refetching after a version change, read failover,
 * min-replicas, overlapping writes never in flight together, the async
 * API and write-behind.
 */
#include "checksum.h"
#include "keel.h"
#include "rpc.h"
#include "util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CS     (256u * 1024) /* chunk size */
#define NCHUNK 16
#define NDN    3

/* ------------------------------------------------------------ fake state */

struct fake_dn {
    rpc_server *srv;
    char addr[64];
    bool dead;           /* drop connections on any request */
    int drop_next;       /* drop them on this many more requests */
    bool fail_reads;     /* answer reads with -EIO (a corrupt replica) */
    int writes;          /* writes applied */
    int readied[NCHUNK]; /* writes of no bytes (libkeel's ready_next) */
    uint64_t version[NCHUNK];
    bool has[NCHUNK];
    uint8_t *data[NCHUNK];
    /* Overlap detector: writes between arrival and answer, per chunk. */
    struct {
        uint64_t off, len;
        bool used;
    } busy[NCHUNK][32];
    int overlap_violations;
    rpc_conn *peers[NDN];
};

static struct {
    pthread_mutex_t lock;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;
    rpc_server *nn;
    char nn_addr[64];
    struct fake_dn dn[NDN];
    uint64_t version[NCHUNK];
    bool alloc[NCHUNK];
    int reps[NCHUNK][NDN]; /* replica dn indexes, -1 unused */
    int nreps[NCHUNK];
    uint64_t size;
    int recovers;
    int bad_reports;
    int eagain_left;    /* write lookups still to answer -EAGAIN */
    int eagain_answers; /* how many were */
} F;

/* Records a write [off, off + len) arriving at d; counts overlaps. */
static int busy_add(struct fake_dn *d, int c, uint64_t off, uint64_t len)
{
    int slot = -1;

    for (int k = 0; k < 32; k++) {
        if (!d->busy[c][k].used) {
            slot = k;
            continue;
        }
        if (off < d->busy[c][k].off + d->busy[c][k].len && d->busy[c][k].off < off + len)
            d->overlap_violations++;
    }
    if (slot >= 0) {
        d->busy[c][slot].off = off;
        d->busy[c][slot].len = len;
        d->busy[c][slot].used = true;
    }
    return slot;
}

static int dn_index(const char *addr)
{
    for (int i = 0; i < NDN; i++)
        if (strcmp(F.dn[i].addr, addr) == 0)
            return i;
    return -1;
}

static uint64_t dn_id(int i)
{
    return (uint64_t)i + 1;
}

static void fill_attr(Keel__Attr *a)
{
    a->ino = 2;
    a->mode = S_IFREG | 0644;
    a->nlink = 1;
    a->size = F.size;
    a->replication = 3;
}

/* ------------------------------------------------------------ fake namenode */

static void nn_hello(rpc_req *req, void *ctx)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__HelloRep b = KEEL__HELLO_REP__INIT;

    b.cluster_id = "fake";
    b.chunk_size = CS;
    b.lease_ms = 3000;
    b.min_replicas = 2;
    rep.body_case = KEEL__ENVELOPE__BODY_HELLO_REP;
    rep.hello_rep = &b;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void nn_attr(rpc_req *req, void *ctx)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__Attr a = KEEL__ATTR__INIT;
    Keel__CreateRep cr = KEEL__CREATE_REP__INIT;
    Keel__StatRep sr = KEEL__STAT_REP__INIT;
    Keel__SetattrRep st = KEEL__SETATTR_REP__INIT;

    pthread_mutex_lock(&F.lock);
    if (req->env->body_case == KEEL__ENVELOPE__BODY_SETATTR_REQ &&
        (req->env->setattr_req->valid & KEEL__SETATTR_VALID__SETATTR_SIZE))
        F.size = req->env->setattr_req->size;
    fill_attr(&a);
    pthread_mutex_unlock(&F.lock);
    switch (req->env->body_case) {
    case KEEL__ENVELOPE__BODY_CREATE_REQ:
        cr.attr = &a;
        rep.body_case = KEEL__ENVELOPE__BODY_CREATE_REP;
        rep.create_rep = &cr;
        break;
    case KEEL__ENVELOPE__BODY_STAT_REQ:
        sr.attr = &a;
        rep.body_case = KEEL__ENVELOPE__BODY_STAT_REP;
        rep.stat_rep = &sr;
        break;
    default:
        st.attr = &a;
        rep.body_case = KEEL__ENVELOPE__BODY_SETATTR_REP;
        rep.setattr_rep = &st;
    }
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

/* ChunkLoc for chunk i, into caller storage. */
static void chunk_loc(int i, Keel__ChunkLoc *l, Keel__Replica *r, Keel__Replica **rp)
{
    keel__chunk_loc__init(l);
    l->index = (uint64_t)i;
    l->chunk_id = 100 + (uint64_t)i;
    l->version = F.version[i];
    for (int k = 0; k < F.nreps[i]; k++) {
        int d = F.reps[i][k];
        keel__replica__init(&r[k]);
        r[k].node_id = dn_id(d);
        r[k].addr = F.dn[d].addr;
        rp[k] = &r[k];
    }
    l->replicas = rp;
    l->n_replicas = (size_t)F.nreps[i];
}

static void nn_get_chunks(rpc_req *req, void *ctx)
{
    const Keel__GetChunksReq *q = req->env->get_chunks_req;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__GetChunksRep b = KEEL__GET_CHUNKS_REP__INIT;
    Keel__ChunkLoc locs[NCHUNK], *lp[NCHUNK];
    Keel__Replica reps[NCHUNK][NDN], *rp[NCHUNK][NDN];
    size_t n = 0;

    pthread_mutex_lock(&F.lock);
    if (q->for_write && F.eagain_left > 0) {
        /* As the namenode answers while the chunk is being copied. */
        F.eagain_left--;
        F.eagain_answers++;
        pthread_mutex_unlock(&F.lock);
        rpc_reply_error(req, -EAGAIN, "chunk being copied");
        return;
    }
    for (uint64_t i = q->offset / CS; i < NCHUNK && i * CS < q->offset + q->length; i++) {
        if (!F.alloc[i] && q->for_write) {
            F.alloc[i] = true;
            F.version[i] = 1;
            F.nreps[i] = NDN;
            for (int k = 0; k < NDN; k++) {
                F.reps[i][k] = k;
                F.dn[k].has[i] = true;
                F.dn[k].version[i] = 1;
            }
        }
        if (!F.alloc[i])
            continue;
        chunk_loc((int)i, &locs[n], reps[n], rp[n]);
        lp[n] = &locs[n];
        n++;
    }
    b.chunk_size = CS;
    b.size = F.size;
    b.chunks = lp;
    b.n_chunks = n;
    rep.body_case = KEEL__ENVELOPE__BODY_GET_CHUNKS_REP;
    rep.get_chunks_rep = &b;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
    pthread_mutex_unlock(&F.lock);
}

static void nn_recover(rpc_req *req, void *ctx)
{
    const Keel__RecoverChunkReq *q = req->env->recover_chunk_req;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__RecoverChunkRep b = KEEL__RECOVER_CHUNK_REP__INIT;
    Keel__ChunkLoc loc;
    Keel__Replica reps[NDN], *rp[NDN];
    int i = (int)(q->chunk_id - 100), n = 0;

    pthread_mutex_lock(&F.lock);
    F.recovers++;
    for (int k = 0; k < F.nreps[i]; k++) {
        bool failed = false;
        for (size_t f = 0; f < q->n_failed; f++)
            failed |= q->failed[f] == dn_id(F.reps[i][k]);
        if (!failed)
            F.reps[i][n++] = F.reps[i][k];
    }
    F.nreps[i] = n;
    if (n < 2) {
        pthread_mutex_unlock(&F.lock);
        rpc_reply_error(req, -EIO, "fewer than min-replicas survive");
        return;
    }
    F.version[i]++;
    for (int k = 0; k < n; k++)
        F.dn[F.reps[i][k]].version[i] = F.version[i];
    chunk_loc(i, &loc, reps, rp);
    b.chunk = &loc;
    rep.body_case = KEEL__ENVELOPE__BODY_RECOVER_CHUNK_REP;
    rep.recover_chunk_rep = &b;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
    pthread_mutex_unlock(&F.lock);
}

static void nn_extend(rpc_req *req, void *ctx)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__ExtendRep b = KEEL__EXTEND_REP__INIT;

    pthread_mutex_lock(&F.lock);
    if (req->env->extend_req->size > F.size)
        F.size = req->env->extend_req->size;
    b.size = F.size;
    pthread_mutex_unlock(&F.lock);
    rep.body_case = KEEL__ENVELOPE__BODY_EXTEND_REP;
    rep.extend_rep = &b;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void nn_ok(rpc_req *req, void *ctx)
{
    if (req->env->body_case == KEEL__ENVELOPE__BODY_BAD_REPLICA_REQ) {
        pthread_mutex_lock(&F.lock);
        F.bad_reports++;
        pthread_mutex_unlock(&F.lock);
    }
    rpc_reply(req, NULL, RPC_NO_PAYLOAD);
}

static const rpc_handler nn_handlers[] = {
    {KEEL__ENVELOPE__BODY_HELLO_REQ, "hello", nn_hello},
    {KEEL__ENVELOPE__BODY_CREATE_REQ, "create", nn_attr},
    {KEEL__ENVELOPE__BODY_STAT_REQ, "stat", nn_attr},
    {KEEL__ENVELOPE__BODY_SETATTR_REQ, "setattr", nn_attr},
    {KEEL__ENVELOPE__BODY_GET_CHUNKS_REQ, "get-chunks", nn_get_chunks},
    {KEEL__ENVELOPE__BODY_RECOVER_CHUNK_REQ, "recover", nn_recover},
    {KEEL__ENVELOPE__BODY_EXTEND_REQ, "extend", nn_extend},
    {KEEL__ENVELOPE__BODY_LEASE_RENEW_REQ, "renew", nn_ok},
    {KEEL__ENVELOPE__BODY_LEASE_RELEASE_REQ, "release", nn_ok},
    {KEEL__ENVELOPE__BODY_BAD_REPLICA_REQ, "bad", nn_ok},
};
static rpc_service nn_svc = {nn_handlers, sizeof(nn_handlers) / sizeof(nn_handlers[0]), NULL, NULL,
                             NULL};

/* ------------------------------------------------------------ fake datanode */

struct fwd {
    rpc_req *req;
    int self;
    int chunk;
    int slot;
    uint64_t next; /* the node forwarded to */
    uint64_t off;
    uint32_t len;
    Keel__Envelope env;
    Keel__WriteReq wr;
    int local_status;
};

static void reply_write(rpc_req *req, int self_status, uint64_t self_id, const uint64_t *failed,
                        const int32_t *st, size_t nf, const uint64_t *unreached, size_t nu)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__WriteRep b = KEEL__WRITE_REP__INIT;
    uint64_t f[NDN + 1];
    int32_t s[NDN + 1];
    size_t n = 0;

    if (self_status) {
        f[n] = self_id;
        s[n++] = self_status;
    }
    for (size_t i = 0; i < nf; i++) {
        f[n] = failed[i];
        s[n++] = st[i];
    }
    b.failed = f;
    b.n_failed = n;
    b.failed_status = s;
    b.n_failed_status = n;
    b.unreached = (uint64_t *)unreached;
    b.n_unreached = nu;
    rep.body_case = KEEL__ENVELOPE__BODY_WRITE_REP;
    rep.write_rep = &b;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void fwd_done(int status, rpc_msg *m, void *arg)
{
    struct fwd *fw = arg;
    uint64_t next = fw->next;

    pthread_mutex_lock(&F.lock);
    if (fw->slot >= 0)
        F.dn[fw->self].busy[fw->chunk][fw->slot].used = false;
    pthread_mutex_unlock(&F.lock);
    if (status) {
        /* The next node failed: it and everything after it missed the write. */
        uint64_t un[NDN];
        int32_t st = status;
        for (size_t i = 0; i < fw->wr.n_chain; i++)
            un[i] = fw->wr.chain[i]->node_id;
        reply_write(fw->req, fw->local_status, dn_id(fw->self), &next, &st, 1, un, fw->wr.n_chain);
    } else {
        const Keel__WriteRep *r = m->env->write_rep;
        reply_write(fw->req, fw->local_status, dn_id(fw->self), r->failed, r->failed_status,
                    r->n_failed, r->unreached, r->n_unreached);
    }
    free(fw);
}

static bool dead_check(rpc_req *req, int self)
{
    bool dead;

    pthread_mutex_lock(&F.lock);
    dead = F.dn[self].dead || F.dn[self].drop_next > 0;
    if (F.dn[self].drop_next > 0)
        F.dn[self].drop_next--;
    pthread_mutex_unlock(&F.lock);
    if (dead) {
        rpc_conn_reset(req->conn);
        rpc_reply_error(req, -EIO, "dead");
    }
    return dead;
}

static void dn_write(rpc_req *req, void *ctx)
{
    int self = (int)(intptr_t)ctx;
    struct fake_dn *d = &F.dn[self];
    const Keel__WriteReq *q = req->env->write_req;
    int i = (int)(q->chunk_id - 100);
    struct fwd *fw;
    int st = 0;

    if (dead_check(req, self))
        return;
    if (i < 0 || i >= NCHUNK || q->offset + q->length > CS || req->payload_len != q->length ||
        csum_buf(req->payload, q->length) != q->checksum) {
        rpc_reply_error(req, -EINVAL, "bad write");
        return;
    }
    pthread_mutex_lock(&F.lock);
    if (!d->has[i])
        st = -ENOENT;
    else if (d->version[i] != q->version)
        st = -ESTALE;
    if (st == 0 && q->length) {
        memcpy(d->data[i] + q->offset, req->payload, q->length);
        d->writes++;
    } else if (st == 0) {
        d->readied[i]++;
    }
    pthread_mutex_unlock(&F.lock);
    if (q->n_chain == 0) {
        pthread_mutex_lock(&F.lock);
        busy_add(d, i, q->offset, q->length);
        for (int k = 0; k < 32; k++)
            if (d->busy[i][k].used && d->busy[i][k].off == q->offset &&
                d->busy[i][k].len == q->length)
                d->busy[i][k].used = false;
        pthread_mutex_unlock(&F.lock);
        reply_write(req, st, dn_id(self), NULL, NULL, 0, NULL, 0);
        return;
    }
    fw = calloc(1, sizeof(*fw));
    fw->req = req;
    fw->self = self;
    fw->chunk = i;
    fw->local_status = st;
    fw->next = q->chain[0]->node_id;
    fw->wr = *q;
    fw->wr.chain = q->chain + 1;
    fw->wr.n_chain = q->n_chain - 1;
    fw->wr.base = q->base;
    keel__envelope__init(&fw->env);
    fw->env.body_case = KEEL__ENVELOPE__BODY_WRITE_REQ;
    fw->env.write_req = &fw->wr;
    {
        int next = dn_index(q->chain[0]->addr);
        rpc_conn **pc = &d->peers[next];
        struct rpc_call_opts o = {.timeout_ms = 2000};

        if (!*pc)
            rpc_connect(&F.loop, q->chain[0]->addr, NULL, NULL, pc);
        pthread_mutex_lock(&F.lock);
        fw->slot = busy_add(d, i, q->offset, q->length);
        pthread_mutex_unlock(&F.lock);
        /* The forwarded request borrows req's payload until fwd_done. */
        if (rpc_call(*pc, &fw->env, (rpc_payload){req->payload, q->length, NULL, NULL}, &o,
                     fwd_done, fw))
            fwd_done(-EIO, NULL, fw);
    }
}

static void dn_read(rpc_req *req, void *ctx)
{
    int self = (int)(intptr_t)ctx;
    struct fake_dn *d = &F.dn[self];
    const Keel__ReadReq *q = req->env->read_req;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__ReadRep b = KEEL__READ_REP__INIT;
    int i = (int)(q->chunk_id - 100);
    uint8_t *buf;
    int st = 0;

    if (dead_check(req, self))
        return;
    pthread_mutex_lock(&F.lock);
    if (i < 0 || i >= NCHUNK || !d->has[i])
        st = -ENOENT;
    else if (d->version[i] != q->version)
        st = -ESTALE;
    else if (d->fail_reads)
        st = -EIO;
    buf = st ? NULL : malloc(q->length ? q->length : 1);
    if (buf)
        memcpy(buf, d->data[i] + q->offset, q->length);
    pthread_mutex_unlock(&F.lock);
    if (st) {
        rpc_reply_error(req, st, "read refused");
        return;
    }
    b.checksum = csum_buf(buf, q->length);
    rep.body_case = KEEL__ENVELOPE__BODY_READ_REP;
    rep.read_rep = &b;
    rpc_reply(req, &rep, rpc_payload_malloced(buf, q->length));
}

struct late_flush {
    uv_timer_t timer;
    rpc_req *req;
    int self;
};

static void flush_answer(uv_timer_t *t)
{
    struct late_flush *lf = t->data;
    const Keel__FlushReq *q = lf->req->env->flush_req;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__FlushRep b = KEEL__FLUSH_REP__INIT;
    int32_t st[64] = {0};

    pthread_mutex_lock(&F.lock);
    for (size_t k = 0; k < q->n_chunk_ids && k < 64; k++) {
        int i = (int)(q->chunk_ids[k] - 100);
        if (i < 0 || i >= NCHUNK || !F.dn[lf->self].has[i])
            st[k] = -ENOENT;
        else if (F.dn[lf->self].version[i] != q->versions[k])
            st[k] = -ESTALE;
    }
    pthread_mutex_unlock(&F.lock);
    b.status = st;
    b.n_status = q->n_chunk_ids;
    rep.body_case = KEEL__ENVELOPE__BODY_FLUSH_REP;
    rep.flush_rep = &b;
    rpc_reply(lf->req, &rep, RPC_NO_PAYLOAD);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

/* Flushes take a few milliseconds, as fdatasync does, so writes land
 * while a flush is under way. */
static void dn_flush(rpc_req *req, void *ctx)
{
    struct late_flush *lf;

    if (dead_check(req, (int)(intptr_t)ctx))
        return;
    lf = calloc(1, sizeof(*lf));
    lf->req = req;
    lf->self = (int)(intptr_t)ctx;
    uv_timer_init(&F.loop, &lf->timer);
    lf->timer.data = lf;
    uv_timer_start(&lf->timer, flush_answer, 5, 0);
}

static const rpc_handler dn_handlers[] = {
    {KEEL__ENVELOPE__BODY_WRITE_REQ, "write", dn_write},
    {KEEL__ENVELOPE__BODY_READ_REQ, "read", dn_read},
    {KEEL__ENVELOPE__BODY_FLUSH_REQ, "flush", dn_flush},
};
static rpc_service dn_svc[NDN];

/* ------------------------------------------------------------- harness */

static void on_stop(uv_async_t *a)
{
    rpc_server_close(F.nn);
    for (int i = 0; i < NDN; i++) {
        rpc_server_close(F.dn[i].srv);
        for (int k = 0; k < NDN; k++)
            if (F.dn[i].peers[k])
                rpc_conn_close(F.dn[i].peers[k]);
    }
    uv_close((uv_handle_t *)a, NULL);
}

static void fake_thread(void *arg)
{
    uv_run(&F.loop, UV_RUN_DEFAULT);
}

static keel_client *client;
static keel_file *file;

/* fanout_max: -1 for libkeel's default. */
static void setup_with(int64_t fanout_max)
{
    struct keel_options o;

    memset(&F, 0, sizeof(F));
    pthread_mutex_init(&F.lock, NULL);
    ck_assert_int_eq(uv_loop_init(&F.loop), 0);
    ck_assert_int_eq(rpc_listen(&F.loop, "127.0.0.1:0", &nn_svc, NULL, &F.nn), 0);
    rpc_server_addr(F.nn, F.nn_addr, sizeof(F.nn_addr));
    for (int i = 0; i < NDN; i++) {
        dn_svc[i] = (rpc_service){dn_handlers, 3, (void *)(intptr_t)i, NULL, NULL};
        ck_assert_int_eq(rpc_listen(&F.loop, "127.0.0.1:0", &dn_svc[i], NULL, &F.dn[i].srv), 0);
        rpc_server_addr(F.dn[i].srv, F.dn[i].addr, sizeof(F.dn[i].addr));
        for (int c = 0; c < NCHUNK; c++)
            F.dn[i].data[c] = calloc(1, CS);
    }
    uv_async_init(&F.loop, &F.stop, on_stop);
    uv_thread_create(&F.thread, fake_thread, NULL);

    keel_options_init(&o);
    o.call_timeout_ms = 2000;
    o.retry_ms = 5000;
    if (fanout_max >= 0)
        o.fanout_max = (uint32_t)fanout_max;
    ck_assert_int_eq(keel_connect(F.nn_addr, &o, &client), 0);
    ck_assert_int_eq(keel_open(client, "/disk", KEEL_O_RDWR | KEEL_O_CREATE, NULL, &file), 0);
}

static void setup(void)
{
    setup_with(-1); /* small writes go to every replica at once */
}

static void setup_chain(void)
{
    setup_with(0); /* every write goes down the chain */
}

static void teardown(void)
{
    keel_close(file);
    keel_disconnect(client);
    uv_async_send(&F.stop);
    uv_thread_join(&F.thread);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    uv_loop_close(&F.loop);
    for (int i = 0; i < NDN; i++)
        for (int c = 0; c < NCHUNK; c++)
            free(F.dn[i].data[c]);
    pthread_mutex_destroy(&F.lock);
}

static void pattern(uint8_t *buf, size_t len, uint64_t off, int seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((off + i) * 131 + (uint64_t)seed * 7 + ((off + i) >> 12));
}

/* Checks replica d holds pattern seed over [off, off + len) of the file. */
static bool replica_has(int d, uint64_t off, size_t len, int seed)
{
    uint8_t *want = malloc(len);
    bool ok = true;

    pattern(want, len, off, seed);
    pthread_mutex_lock(&F.lock);
    for (size_t i = 0; i < len && ok; i++) {
        uint64_t at = off + i;
        ok = F.dn[d].data[at / CS][at % CS] == want[i];
    }
    pthread_mutex_unlock(&F.lock);
    free(want);
    return ok;
}

/* ----------------------------------------------------------------- tests */

START_TEST(write_read_across_chunks)
{
    const size_t len = 3 * CS + 12345;
    const uint64_t off = CS / 2 + 7;
    uint8_t *buf = malloc(len), *back = malloc(len);

    pattern(buf, len, off, 1);
    ck_assert_int_eq(keel_pwrite(file, buf, len, off), (ssize_t)len);
    ck_assert_int_eq(keel_pread(file, back, len, off), (ssize_t)len);
    ck_assert_mem_eq(buf, back, len);
    for (int d = 0; d < NDN; d++)
        ck_assert(replica_has(d, off, len, 1));
    /* A hole reads as zeros, and the size grew to the end of the write. */
    memset(back, 0xff, 100);
    ck_assert_int_eq(keel_pread(file, back, 100, 0), 100);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(back[i], 0);
    ck_assert_uint_eq(F.size, off + len);
    ck_assert_int_eq(keel_pread(file, back, 100, off + len), 0);
    ck_assert_int_eq(keel_flush(file), 0);
    free(buf);
    free(back);
}
END_TEST

static int readied(int chunk)
{
    int n = 0;

    pthread_mutex_lock(&F.lock);
    for (int d = 0; d < NDN; d++)
        n += F.dn[d].readied[chunk] > 0;
    pthread_mutex_unlock(&F.lock);
    return n;
}

/* A sequential writer has the replicas of the chunk after the one it
 * writes readied; random writes and a write at the end of the file do
 * not. */
START_TEST(sequential_writer_readies_the_next_chunk)
{
    const size_t io = CS / 8;
    uint8_t *buf = malloc(4 * CS);

    pattern(buf, 4 * CS, 0, 2);
    ck_assert_int_eq(keel_pwrite(file, buf, 4 * CS, 0), (ssize_t)(4 * CS));
    ck_assert_int_eq(keel_flush(file), 0);
    /* Out of order, in the second halves of chunks 1 and 2. */
    for (int i = 7; i >= 4; i--)
        ck_assert_int_eq(keel_pwrite(file, buf, io, CS + i * io), (ssize_t)io);
    ck_assert_int_eq(keel_pwrite(file, buf, io, 2 * CS + 5 * io), (ssize_t)io);
    ck_assert_int_eq(keel_pwrite(file, buf, io, CS + 6 * io), (ssize_t)io);
    ck_assert_int_eq(readied(2) + readied(3), 0);
    /* In order from the start of chunk 0: its second write readies chunk 1. */
    for (unsigned i = 0; i < 2; i++)
        ck_assert_int_eq(keel_pwrite(file, buf + i * io, io, i * io), (ssize_t)io);
    ck_assert_int_eq(readied(1), NDN);
    ck_assert_int_eq(readied(2), 0);
    /* On into chunk 1: its first write readies chunk 2. */
    for (unsigned i = 2; i < 9; i++)
        ck_assert_int_eq(keel_pwrite(file, buf + i * io, io, i * io), (ssize_t)io);
    ck_assert_int_eq(readied(1), NDN);
    ck_assert_int_eq(readied(2), NDN);
    /* Through chunk 3, the last: nothing after it to ready. */
    for (unsigned i = 0; i < 8; i++)
        ck_assert_int_eq(keel_pwrite(file, buf + i * io, io, 3 * CS + i * io), (ssize_t)io);
    ck_assert_int_eq(keel_flush(file), 0);
    ck_assert_int_eq(readied(0) + readied(3) + readied(4), 0);
    ck_assert_int_eq(keel_pread(file, buf + CS, io, 0), (ssize_t)io);
    ck_assert_mem_eq(buf, buf + CS, io);
    free(buf);
}
END_TEST

START_TEST(failed_replica_is_dropped_and_writes_go_on)
{
    uint8_t buf[8192], back[8192];

    pattern(buf, sizeof(buf), 0, 2);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    pthread_mutex_lock(&F.lock);
    F.dn[1].dead = true; /* the middle of the pipeline */
    pthread_mutex_unlock(&F.lock);
    pattern(buf, sizeof(buf), 0, 3);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    ck_assert_int_eq(F.recovers, 1);
    ck_assert_int_eq(F.nreps[0], 2);
    ck_assert_uint_eq(F.version[0], 2);
    ck_assert(replica_has(0, 0, sizeof(buf), 3));
    ck_assert(replica_has(2, 0, sizeof(buf), 3));
    ck_assert(replica_has(1, 0, sizeof(buf), 2)); /* missed it: now stale */
    ck_assert_int_eq(keel_pread(file, back, sizeof(back), 0), (ssize_t)sizeof(back));
    ck_assert_mem_eq(buf, back, sizeof(buf));
    ck_assert_int_eq(keel_flush(file), 0);
}
END_TEST

START_TEST(head_failure_is_recovered)
{
    uint8_t buf[4096];

    pattern(buf, sizeof(buf), CS, 4);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), CS), (ssize_t)sizeof(buf));
    pthread_mutex_lock(&F.lock);
    F.dn[0].dead = true;
    pthread_mutex_unlock(&F.lock);
    pattern(buf, sizeof(buf), CS, 5);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), CS), (ssize_t)sizeof(buf));
    ck_assert(replica_has(1, CS, sizeof(buf), 5));
    ck_assert(replica_has(2, CS, sizeof(buf), 5));
    ck_assert_int_eq(F.nreps[1], 2);
}
END_TEST

/* A write no replica answered (the client's own trouble, say) drops one
 * replica, as a chain whose head did not answer would, and goes on with the
 * others; naming all three would leave none. */
START_TEST(unanswered_write_drops_one_replica)
{
    uint8_t buf[4096], back[4096];

    pattern(buf, sizeof(buf), 2 * CS, 9);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 2 * CS), (ssize_t)sizeof(buf));
    pthread_mutex_lock(&F.lock);
    for (int d = 0; d < NDN; d++)
        F.dn[d].drop_next = 1;
    pthread_mutex_unlock(&F.lock);
    pattern(buf, sizeof(buf), 2 * CS, 10);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 2 * CS), (ssize_t)sizeof(buf));
    ck_assert_int_eq(F.recovers, 1);
    ck_assert_int_eq(F.nreps[2], 2);
    ck_assert_int_eq(keel_pread(file, back, sizeof(back), 2 * CS), (ssize_t)sizeof(back));
    ck_assert_mem_eq(buf, back, sizeof(buf));
    ck_assert_int_eq(keel_flush(file), 0);
}
END_TEST

START_TEST(below_min_replicas_is_an_error)
{
    uint8_t buf[4096];

    pattern(buf, sizeof(buf), 0, 6);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    pthread_mutex_lock(&F.lock);
    F.dn[0].dead = true;
    F.dn[2].dead = true;
    pthread_mutex_unlock(&F.lock);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), -EIO);
}
END_TEST

START_TEST(version_moved_on_means_refetch_not_recovery)
{
    uint8_t buf[4096], back[4096];

    pattern(buf, sizeof(buf), 0, 7);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    /* Behind the client's back, as a lease handover would. */
    pthread_mutex_lock(&F.lock);
    F.version[0] = 5;
    for (int d = 0; d < NDN; d++)
        F.dn[d].version[0] = 5;
    pthread_mutex_unlock(&F.lock);
    pattern(buf, sizeof(buf), 0, 8);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    ck_assert_int_eq(F.recovers, 0);
    for (int d = 0; d < NDN; d++)
        ck_assert(replica_has(d, 0, sizeof(buf), 8));
    ck_assert_int_eq(keel_pread(file, back, sizeof(back), 0), (ssize_t)sizeof(back));
    ck_assert_mem_eq(buf, back, sizeof(buf));
}
END_TEST

static void *commit_later(void *arg)
{
    usleep(150000);
    pthread_mutex_lock(&F.lock);
    F.version[0] = 5;
    pthread_mutex_unlock(&F.lock);
    return NULL;
}

/* The datanodes have the new version before the namenode committed it (a
 * bump under way): reads and writes wait for it, nothing is dropped. */
START_TEST(version_bump_in_flight_is_waited_out)
{
    uint8_t buf[4096], back[4096];
    pthread_t th;

    pattern(buf, sizeof(buf), 0, 11);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    pthread_mutex_lock(&F.lock);
    for (int d = 0; d < NDN; d++)
        F.dn[d].version[0] = 5;
    pthread_mutex_unlock(&F.lock);
    pthread_create(&th, NULL, commit_later, NULL);
    pattern(buf, sizeof(buf), 0, 12);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    pthread_join(th, NULL);
    ck_assert_int_eq(F.recovers, 0);
    ck_assert_int_eq(F.nreps[0], NDN);
    for (int d = 0; d < NDN; d++)
        ck_assert(replica_has(d, 0, sizeof(buf), 12));
    /* The same for a read with a stale idea of the version. */
    pthread_mutex_lock(&F.lock);
    for (int d = 0; d < NDN; d++)
        F.dn[d].version[0] = 6;
    pthread_mutex_unlock(&F.lock);
    keel_file *other;
    ck_assert_int_eq(keel_open(client, "/disk", KEEL_O_READ, NULL, &other), 0);
    pthread_mutex_lock(&F.lock);
    F.version[0] = 6;
    pthread_mutex_unlock(&F.lock);
    ck_assert_int_eq(keel_pread(other, back, sizeof(back), 0), (ssize_t)sizeof(back));
    ck_assert_mem_eq(buf, back, sizeof(buf));
    keel_close(other);
}
END_TEST

/* One replica is dead and another refuses the version because a bump is
 * under way there: only the dead one is named failed, or the namenode
 * would see one survivor and fail the write. */
START_TEST(refused_version_is_not_a_failed_replica)
{
    uint8_t buf[4096];

    pattern(buf, sizeof(buf), 0, 13);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    pthread_mutex_lock(&F.lock);
    F.dn[1].version[0] = F.version[0] + 1;
    F.dn[2].dead = true;
    pthread_mutex_unlock(&F.lock);
    pattern(buf, sizeof(buf), 0, 14);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    ck_assert_int_eq(F.recovers, 1);
    ck_assert_int_eq(F.nreps[0], 2);
    ck_assert_int_eq(F.reps[0][0], 0);
    ck_assert_int_eq(F.reps[0][1], 1);
    ck_assert(replica_has(0, 0, sizeof(buf), 14));
    ck_assert(replica_has(1, 0, sizeof(buf), 14));
    ck_assert_int_eq(keel_flush(file), 0);
}
END_TEST

/* -EAGAIN from the namenode (the chunk is being copied) is asked again
 * soon, not backed off like a lost namenode (0.1 s, 0.2 s ... 2 s): six
 * refusals cost about 0.35 s, where the back-off would take 5 s. */
START_TEST(busy_chunk_is_asked_again_soon)
{
    uint8_t buf[4096], back[4096];
    uint64_t t0;

    pthread_mutex_lock(&F.lock);
    F.eagain_left = 6;
    pthread_mutex_unlock(&F.lock);
    pattern(buf, sizeof(buf), 5 * CS, 15);
    t0 = mono_ms();
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 5 * CS), (ssize_t)sizeof(buf));
    ck_assert_uint_ge(mono_ms() - t0, 300); /* it waited between the asks */
    ck_assert_uint_lt(mono_ms() - t0, 2000);
    ck_assert_int_eq(F.eagain_answers, 6);
    ck_assert_int_eq(F.recovers, 0);
    ck_assert_int_eq(keel_pread(file, back, sizeof(back), 5 * CS), (ssize_t)sizeof(back));
    ck_assert_mem_eq(buf, back, sizeof(buf));
}
END_TEST

START_TEST(reads_fail_over_and_report_bad_replicas)
{
    uint8_t buf[65536], back[65536];

    pattern(buf, sizeof(buf), 0, 9);
    ck_assert_int_eq(keel_pwrite(file, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    pthread_mutex_lock(&F.lock);
    F.dn[0].fail_reads = true;
    F.dn[1].dead = true;
    pthread_mutex_unlock(&F.lock);
    for (int i = 0; i < 10; i++) {
        memset(back, 0, sizeof(back));
        ck_assert_int_eq(keel_pread(file, back, sizeof(back), 0), (ssize_t)sizeof(back));
        ck_assert_mem_eq(buf, back, sizeof(buf));
    }
    /* With every replica failing, the read fails with an error, not a hang,
     * and the corrupt replicas it met were reported (in the background). */
    pthread_mutex_lock(&F.lock);
    F.dn[2].fail_reads = true;
    pthread_mutex_unlock(&F.lock);
    ck_assert_int_eq(keel_pread(file, back, sizeof(back), 0), -EIO);
    for (int i = 0; i < 200 && __atomic_load_n(&F.bad_reports, __ATOMIC_SEQ_CST) < 2; i++)
        usleep(10000);
    ck_assert_int_ge(F.bad_reports, 2);
}
END_TEST

struct writer {
    int id;
    int errors;
};

/* Overlapping writes from many threads: replicas must end identical. */
static void *overlap_writer(void *arg)
{
    struct writer *w = arg;
    uint8_t buf[3 * 4096];

    srand((unsigned)w->id);
    for (int i = 0; i < 200; i++) {
        uint64_t off = (uint64_t)(rand() % (int)(2 * CS - sizeof(buf)));
        size_t len = 1 + (size_t)rand() % sizeof(buf);

        memset(buf, w->id * 16 + i % 16, len);
        if (keel_pwrite(file, buf, len, off) != (ssize_t)len)
            w->errors++;
    }
    return NULL;
}

START_TEST(overlapping_writes_leave_identical_replicas)
{
    pthread_t th[8];
    struct writer w[8];

    for (int i = 0; i < 8; i++) {
        w[i] = (struct writer){i + 1, 0};
        pthread_create(&th[i], NULL, overlap_writer, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].errors, 0);
    }
    for (int c = 0; c < 2; c++) {
        ck_assert_mem_eq(F.dn[0].data[c], F.dn[1].data[c], CS);
        ck_assert_mem_eq(F.dn[0].data[c], F.dn[2].data[c], CS);
    }
    /* The head sees every write; none overlapped one still in flight. */
    ck_assert_int_eq(F.dn[0].overlap_violations, 0);
    ck_assert_int_gt(F.dn[0].writes, 8 * 200 - 1);
}
END_TEST

/* Some threads flush often while others never stop writing: a flush owes
 * nothing to writes that complete after it began, so it must never be
 * starved into an error by them. */
static void *flushing_writer(void *arg)
{
    struct writer *w = arg;
    uint8_t buf[4096];

    memset(buf, w->id, sizeof(buf));
    for (int i = 0; i < 300; i++) {
        uint64_t off = (uint64_t)((w->id * 300 + i) % 120) * sizeof(buf);

        if (keel_pwrite(file, buf, sizeof(buf), off) != (ssize_t)sizeof(buf))
            w->errors++;
        /* Odd threads flush every other write; even ones only write. */
        if ((w->id & 1) && i % 2 == 1 && keel_flush(file) != 0)
            w->errors++;
    }
    return NULL;
}

START_TEST(flushes_amid_other_writers_succeed)
{
    pthread_t th[8];
    struct writer w[8];

    for (int i = 0; i < 8; i++) {
        w[i] = (struct writer){i + 1, 0};
        pthread_create(&th[i], NULL, flushing_writer, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].errors, 0);
    }
}
END_TEST

static int aio_calls;

static void count_aio(keel_aio *aio, void *arg)
{
    __atomic_add_fetch(&aio_calls, 1, __ATOMIC_SEQ_CST);
}

START_TEST(async_with_64_in_flight)
{
    enum { N = 64, LEN = 8192 };
    keel_aio *a[N];
    uint8_t *bufs = malloc((size_t)N * LEN), *back = malloc((size_t)N * LEN);

    aio_calls = 0;
    for (int i = 0; i < N; i++) {
        pattern(bufs + i * LEN, LEN, (uint64_t)i * LEN, 10);
        ck_assert_int_eq(keel_aio_create(count_aio, NULL, &a[i]), 0);
        ck_assert_int_eq(keel_aio_pwrite(file, bufs + i * LEN, LEN, (uint64_t)i * LEN, a[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(keel_aio_wait(a[i], 10000), 0);
        ck_assert_int_eq(keel_aio_result(a[i]), LEN);
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(keel_aio_pread(file, back + i * LEN, LEN, (uint64_t)i * LEN, a[i]), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(keel_aio_wait(a[i], 10000), 0);
        ck_assert_int_eq(keel_aio_result(a[i]), LEN);
        keel_aio_release(a[i]);
    }
    ck_assert_mem_eq(bufs, back, (size_t)N * LEN);
    /* Callbacks run just after completion becomes visible. */
    for (int i = 0; i < 200 && __atomic_load_n(&aio_calls, __ATOMIC_SEQ_CST) < 2 * N; i++)
        usleep(10000);
    ck_assert_int_eq(__atomic_load_n(&aio_calls, __ATOMIC_SEQ_CST), 2 * N);
    keel_aio *unused;
    ck_assert_int_eq(keel_aio_create(NULL, NULL, &unused), 0);
    ck_assert_int_eq(keel_aio_wait(unused, 0), -EINVAL);
    keel_aio_release(unused);
    free(bufs);
    free(back);
}
END_TEST

/* Write-behind: a write returns before it lands, yet every later read of
 * this client (through any handle) sees it, as do stat and, once drained,
 * the replicas. */
START_TEST(write_behind_is_read_back_at_once)
{
    enum { LEN = 12288 };
    keel_file *wb;
    uint8_t buf[LEN], back[LEN];
    struct keel_stat st;
    uint64_t end = 0, off = 0;

    ck_assert_int_eq(keel_open(client, "/disk", KEEL_O_RDWR | KEEL_O_WRITEBACK, NULL, &wb), 0);
    for (int i = 0; i < 300; i++) {
        /* Overlapping ranges over three chunks, some across a boundary. */
        off = (uint64_t)(i * 7919) % (3 * CS - LEN);
        pattern(buf, LEN, off, 20 + i);
        ck_assert_int_eq(keel_pwrite(wb, buf, LEN, off), LEN);
        end = off + LEN > end ? off + LEN : end;
        /* The size counts the writes on their way, even before the first
         * has brought the lease. */
        ck_assert_int_eq(keel_fstat(file, &st), 0);
        ck_assert_uint_ge(st.size, end);
        ck_assert_int_eq(keel_pread(file, back, LEN, off), LEN);
        ck_assert_mem_eq(buf, back, LEN);
    }
    ck_assert_int_eq(keel_stat(client, "/disk", &st), 0);
    ck_assert_uint_ge(st.size, end);
    ck_assert_int_eq(keel_drain(wb), 0);
    for (int d = 0; d < NDN; d++)
        ck_assert(replica_has(d, off, LEN, 20 + 299));
    ck_assert_int_eq(F.dn[0].overlap_violations, 0);
    ck_assert_int_eq(keel_close(wb), 0);
}
END_TEST

/* A write-behind write that fails is reported by the next drain, flush or
 * close, once. */
START_TEST(write_behind_failure_is_reported_once)
{
    keel_file *wb;
    uint8_t buf[4096];

    ck_assert_int_eq(keel_open(client, "/disk", KEEL_O_RDWR | KEEL_O_WRITEBACK, NULL, &wb), 0);
    pattern(buf, sizeof(buf), 0, 30);
    ck_assert_int_eq(keel_pwrite(wb, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    ck_assert_int_eq(keel_flush(wb), 0);
    pthread_mutex_lock(&F.lock);
    F.dn[0].dead = true;
    F.dn[2].dead = true;
    pthread_mutex_unlock(&F.lock);
    /* Queued: the failure comes later. */
    ck_assert_int_eq(keel_pwrite(wb, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    ck_assert_int_eq(keel_drain(wb), -EIO);
    ck_assert_int_eq(keel_drain(wb), 0);
    /* A new chunk, placed on the dead nodes too. */
    ck_assert_int_eq(keel_pwrite(wb, buf, sizeof(buf), 2 * CS), (ssize_t)sizeof(buf));
    ck_assert_int_eq(keel_close(wb), -EIO);
}
END_TEST

/* keel_try_pwrite queues like a write-behind keel_pwrite, but says -EAGAIN
 * where keel_pwrite would wait for room; never for a file not written
 * behind, whose writes always wait. */
START_TEST(try_pwrite_never_waits)
{
    enum { LEN = 4096, TRIES = 20000 };
    keel_file *wb;
    uint8_t buf[LEN], back[LEN];
    int queued = 0, again = 0;
    uint64_t off = 0;

    pattern(buf, LEN, 0, 40);
    ck_assert_int_eq(keel_try_pwrite(file, buf, LEN, 0), -EAGAIN);
    ck_assert_int_eq(keel_open(client, "/disk", KEEL_O_RDWR | KEEL_O_WRITEBACK, NULL, &wb), 0);
    ck_assert_int_eq(keel_try_pwrite(wb, buf, LEN, UINT64_MAX - 4), -EFBIG);
    /* Queued far faster than three replicas answer: the file fills up. */
    for (int i = 0; i < TRIES && again == 0; i++) {
        ssize_t r;

        off = (uint64_t)(i % (NCHUNK * (CS / LEN))) * LEN;
        pattern(buf, LEN, off, 41);
        r = keel_try_pwrite(wb, buf, LEN, off);
        if (r == -EAGAIN) {
            again++;
        } else {
            ck_assert_int_eq(r, LEN);
            queued++;
        }
    }
    ck_assert_int_gt(queued, 0);
    ck_assert_int_eq(again, 1);
    ck_assert_int_eq(keel_drain(wb), 0);
    /* Room again, and what was queued landed. */
    pattern(buf, LEN, 0, 42);
    ck_assert_int_eq(keel_try_pwrite(wb, buf, LEN, 0), LEN);
    ck_assert_int_eq(keel_drain(wb), 0);
    for (int d = 0; d < NDN; d++)
        ck_assert(replica_has(d, 0, LEN, 42));
    if (off != 0) {
        ck_assert_int_eq(keel_pread(file, back, LEN, off - LEN), LEN);
        pattern(buf, LEN, off - LEN, 41);
        ck_assert_mem_eq(buf, back, LEN);
    }
    ck_assert_int_eq(keel_close(wb), 0);
}
END_TEST

struct watch_state {
    int fd;
    int calls; /* atomic */
    keel_aio *aio;
    int submitted;
    uint8_t buf[4096];
};

/* On libkeel's I/O thread: 'w' writes buf at 0 from right here, 's' stops
 * the calls. */
static int on_pipe(void *arg)
{
    struct watch_state *w = arg;
    char b;

    if (read(w->fd, &b, 1) != 1)
        return 0;
    if (b == 'w')
        w->submitted = keel_aio_pwrite(file, w->buf, sizeof(w->buf), 0, w->aio);
    __atomic_add_fetch(&w->calls, 1, __ATOMIC_SEQ_CST);
    return b == 's';
}

static void wait_calls(struct watch_state *w, int n)
{
    for (int i = 0; i < 500 && __atomic_load_n(&w->calls, __ATOMIC_SEQ_CST) < n; i++)
        usleep(10000);
    ck_assert_int_eq(__atomic_load_n(&w->calls, __ATOMIC_SEQ_CST), n);
}

static int no_call(void *arg)
{
    (void)arg;
    return 1;
}

/* A watched descriptor's callback runs on the I/O thread, and a request it
 * submits there runs (no wakeup of the thread is needed); it stops when
 * the callback says so, and for good once unwatched. */
START_TEST(watched_fd_submits_from_the_io_thread)
{
    struct watch_state w = {0};
    uint8_t back[4096];
    int p[2];

    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_ne(fcntl(p[0], F_SETFL, O_NONBLOCK), -1);
    w.fd = p[0];
    pattern(w.buf, sizeof(w.buf), 0, 50);
    ck_assert_int_eq(keel_aio_create(NULL, NULL, &w.aio), 0);
    ck_assert_int_eq(keel_watch_fd(client, -1, on_pipe, &w), -EINVAL);
    ck_assert_int_eq(keel_watch_fd(client, p[0], on_pipe, &w), 0);
    ck_assert_int_eq(keel_watch_fd(client, p[0], no_call, NULL), -EBUSY);

    ck_assert_int_eq(write(p[1], "w", 1), 1);
    wait_calls(&w, 1);
    ck_assert_int_eq(w.submitted, 0);
    ck_assert_int_eq(keel_aio_wait(w.aio, 10000), 0);
    ck_assert_int_eq(keel_aio_result(w.aio), (ssize_t)sizeof(w.buf));
    ck_assert_int_eq(keel_pread(file, back, sizeof(back), 0), (ssize_t)sizeof(back));
    ck_assert_mem_eq(w.buf, back, sizeof(back));
    for (int d = 0; d < NDN; d++)
        ck_assert(replica_has(d, 0, sizeof(back), 50));

    /* 's' stops the calls: 'x' stays unread. */
    ck_assert_int_eq(write(p[1], "sx", 2), 2);
    wait_calls(&w, 2);
    usleep(100000);
    ck_assert_int_eq(__atomic_load_n(&w.calls, __ATOMIC_SEQ_CST), 2);
    keel_unwatch_fd(client);

    /* Watched again, it reads 'x'; unwatched, it reads nothing more. */
    ck_assert_int_eq(keel_watch_fd(client, p[0], on_pipe, &w), 0);
    wait_calls(&w, 3);
    keel_unwatch_fd(client);
    ck_assert_int_eq(write(p[1], "y", 1), 1);
    usleep(100000);
    ck_assert_int_eq(__atomic_load_n(&w.calls, __ATOMIC_SEQ_CST), 3);
    keel_unwatch_fd(client); /* twice is harmless */

    /* Left watched: keel_disconnect (teardown) stops it. The pipe stays
     * open until the process ends. */
    ck_assert_int_eq(keel_watch_fd(client, p[0], no_call, NULL), 0);
    keel_aio_release(w.aio);
    close(p[1]);
}
END_TEST

START_TEST(bad_arguments)
{
    keel_file *ro;
    uint8_t b[16];

    ck_assert_int_eq(keel_open(client, "relative", KEEL_O_READ, NULL, &ro), -EINVAL);
    ck_assert_int_eq(keel_open(client, "/disk", 0, NULL, &ro), -EINVAL);
    ck_assert_int_eq(keel_open(client, "/disk", KEEL_O_READ, NULL, &ro), 0);
    ck_assert_int_eq(keel_pwrite(ro, b, sizeof(b), 0), -EBADF);
    ck_assert_int_eq(keel_pread(ro, b, sizeof(b), UINT64_MAX - 4), -EFBIG);
    ck_assert_int_eq(keel_close(ro), 0);
    keel_client *other = NULL;
    ck_assert_int_eq(keel_connect("nonsense", NULL, &other), -EINVAL);
    ck_assert_ptr_null(other);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, write_read_across_chunks);
    tcase_add_test(tc, sequential_writer_readies_the_next_chunk);
    tcase_add_test(tc, failed_replica_is_dropped_and_writes_go_on);
    tcase_add_test(tc, head_failure_is_recovered);
    tcase_add_test(tc, below_min_replicas_is_an_error);
    tcase_add_test(tc, version_moved_on_means_refetch_not_recovery);
    tcase_add_test(tc, version_bump_in_flight_is_waited_out);
    tcase_add_test(tc, refused_version_is_not_a_failed_replica);
    tcase_add_test(tc, busy_chunk_is_asked_again_soon);
    tcase_add_test(tc, reads_fail_over_and_report_bad_replicas);
    tcase_add_test(tc, overlapping_writes_leave_identical_replicas);
    tcase_add_test(tc, flushes_amid_other_writers_succeed);
    tcase_add_test(tc, async_with_64_in_flight);
    tcase_add_test(tc, write_behind_is_read_back_at_once);
    tcase_add_test(tc, write_behind_failure_is_reported_once);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, unanswered_write_drops_one_replica);
    tcase_add_test(tc, try_pwrite_never_waits);
    tcase_add_test(tc, watched_fd_submits_from_the_io_thread);
    suite_add_tcase(s, tc);
    /* The same failures with every write down the chain. */
    tc = tcase_create("chain");
    tcase_add_checked_fixture(tc, setup_chain, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, write_read_across_chunks);
    tcase_add_test(tc, failed_replica_is_dropped_and_writes_go_on);
    tcase_add_test(tc, head_failure_is_recovered);
    tcase_add_test(tc, below_min_replicas_is_an_error);
    tcase_add_test(tc, refused_version_is_not_a_failed_replica);
    tcase_add_test(tc, overlapping_writes_leave_identical_replicas);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
