/*
 * file: the public file API (keel_open .. keel_close, keel_aio_*) and the
 * write-lease bookkeeping core asks for (io.h).
 *
 * A keel_file is a handle on a struct kinode, the client's shared state for
 * the file. Synchronous calls are asynchronous file operations (struct fop)
 * that the calling thread waits for; keel_aio requests are the same
 * operations completed through the request object instead.
 *
 * The write lease: taken when the namenode grants a write (chunkio), kept by
 * core's renewals, lost when a renewal says so, handed over on a recall when
 * the file has been idle for lease_idle_ms (after a flush), and released at
 * the last close.
 */
#include "chunkio.h"
#include "core.h"
#include "errors.h"
#include "io.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct keel_file {
    keel_client *c;
    struct kinode *in;
    int flags;
    struct list link; /* c->files */
};

struct keel_aio {
    struct core_wait w;
    keel_aio_cb cb;
    void *arg;
    int state; /* 0 idle, 1 in flight, 2 done; under w.m */
    ssize_t result;
    struct fop op;
};

/* ------------------------------------------------------------- sync ops */

struct sync_fop {
    struct fop op;
    struct core_wait w;
};

static void sync_done(struct fop *op)
{
    core_wait_signal(&((struct sync_fop *)op)->w);
}

static void run_fop(struct core_op *base)
{
    chunkio_start((struct fop *)base);
}

static int check_io(keel_file *f, size_t len, uint64_t off, int need)
{
    if (!f)
        return -EBADF;
    if (!(f->flags & need))
        return -EBADF;
    if (len > (size_t)SSIZE_MAX || off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EFBIG;
    return 0;
}

static ssize_t run_sync(keel_file *f, enum fop_kind kind, void *buf, size_t len, uint64_t off)
{
    struct sync_fop s;
    ssize_t r;

    memset(&s, 0, sizeof(s));
    s.op.base.run = run_fop;
    s.op.in = f->in;
    s.op.kind = kind;
    s.op.buf = buf;
    s.op.len = len;
    s.op.off = off;
    s.op.done = sync_done;
    core_wait_init(&s.w);
    r = core_submit(f->c, &s.op.base);
    if (r == 0) {
        core_wait_block(&s.w, -1);
        r = s.op.result;
    }
    core_wait_destroy(&s.w);
    return r;
}

ssize_t keel_pread(keel_file *f, void *buf, size_t len, uint64_t off)
{
    int r = check_io(f, len, off, KEEL_O_READ);

    return r ? r : run_sync(f, FOP_READ, buf, len, off);
}

/* ---------------------------------------------------------- write-behind */

/*
 * A KEEL_O_WRITEBACK write is a fop on a copy of the data that nobody waits
 * for. The file's write-behind writes in flight sit on in->wb in the order
 * they were queued (c->wb_lock); a barrier (flush, drain, truncate, close)
 * waits until every one queued before it has completed. Reads need no
 * barrier: chunkio orders them after the overlapping writes queued first.
 */
#define WB_MAX_BYTES (16u << 20) /* in flight per file, before writers wait */
/* ... and at most this many writes: each is a call with its own timeout,
 * which must not run out while thousands of small writes queue ahead of it
 * at the datanodes (a replica that times out is dropped as failed). */
#define WB_MAX_WRITES 512u

struct wb_write {
    struct fop op;    /* first: the fop is the allocation */
    struct list link; /* in->wb */
    uint64_t seq;
    struct list all; /* c->wb */
    uint64_t all_seq;
    uint8_t data[];
};

static void wb_done(struct fop *op)
{
    struct wb_write *w = (struct wb_write *)op;
    struct kinode *in = op->in;
    keel_client *c = in->c;

    if (op->result < 0)
        log_warn("write-behind of %zu bytes at %llu to ino %llu failed: %s", op->len,
                 (unsigned long long)op->off, (unsigned long long)in->ino,
                 err_str((int)op->result));
    pthread_mutex_lock(&c->wb_lock);
    list_del(&w->link);
    list_del(&w->all);
    in->wb_bytes -= op->len;
    in->wb_writes--;
    if (op->result < 0 && !in->wb_err)
        in->wb_err = (int)op->result;
    pthread_cond_broadcast(&c->wb_cv);
    pthread_mutex_unlock(&c->wb_lock);
    free(w);
}

/* Queues a copy of the write; if the file has too much in flight, waits,
 * or with !wait returns -EAGAIN. */
static ssize_t wb_pwrite(keel_file *f, const void *buf, size_t len, uint64_t off, bool wait)
{
    keel_client *c = f->c;
    struct kinode *in = f->in;
    struct wb_write *w;
    int r;

    if (len == 0)
        return 0;
    w = malloc(sizeof(*w) + len);
    if (!w)
        return -ENOMEM;
    memset(w, 0, sizeof(*w));
    memcpy(w->data, buf, len);
    w->op.base.run = run_fop;
    w->op.in = in;
    w->op.kind = FOP_WRITE;
    w->op.buf = w->data;
    w->op.len = len;
    w->op.off = off;
    w->op.done = wb_done;
    pthread_mutex_lock(&c->wb_lock);
    while ((in->wb_bytes > 0 && in->wb_bytes + len > WB_MAX_BYTES) ||
           in->wb_writes >= WB_MAX_WRITES) {
        if (!wait) {
            pthread_mutex_unlock(&c->wb_lock);
            free(w);
            return -EAGAIN;
        }
        pthread_cond_wait(&c->wb_cv, &c->wb_lock);
    }
    w->seq = in->wb_seq++;
    list_add_tail(&in->wb, &w->link);
    w->all_seq = c->wb_seq++;
    list_add_tail(&c->wb, &w->all);
    in->wb_bytes += len;
    in->wb_writes++;
    /* Queued under the lock: the I/O thread starts them in seq order. */
    r = core_submit(c, &w->op.base);
    if (r) {
        list_del(&w->link);
        list_del(&w->all);
        in->wb_bytes -= len;
        in->wb_writes--;
        pthread_cond_broadcast(&c->wb_cv);
    }
    pthread_mutex_unlock(&c->wb_lock);
    if (r) {
        free(w);
        return r;
    }
    return (ssize_t)len;
}

/* Waits for the write-behind writes to f's file queued before this call.
 * Returns the first failure not yet reported (reporting it, with take). */
static int wb_barrier(keel_file *f, bool take)
{
    keel_client *c = f->c;
    struct kinode *in = f->in;
    uint64_t upto;
    int err;

    pthread_mutex_lock(&c->wb_lock);
    upto = in->wb_seq;
    while (!list_empty(&in->wb) && list_entry(in->wb.next, struct wb_write, link)->seq < upto)
        pthread_cond_wait(&c->wb_cv, &c->wb_lock);
    err = in->wb_err;
    if (take)
        in->wb_err = 0;
    pthread_mutex_unlock(&c->wb_lock);
    return err;
}

void io_wb_barrier_all(keel_client *c)
{
    uint64_t upto;

    pthread_mutex_lock(&c->wb_lock);
    upto = c->wb_seq;
    while (!list_empty(&c->wb) && list_entry(c->wb.next, struct wb_write, all)->all_seq < upto)
        pthread_cond_wait(&c->wb_cv, &c->wb_lock);
    pthread_mutex_unlock(&c->wb_lock);
}

ssize_t keel_pwrite(keel_file *f, const void *buf, size_t len, uint64_t off)
{
    int r = check_io(f, len, off, KEEL_O_WRITE);

    if (r)
        return r;
    if (f->flags & KEEL_O_WRITEBACK)
        return wb_pwrite(f, buf, len, off, true);
    return run_sync(f, FOP_WRITE, (void *)buf, len, off);
}

ssize_t keel_try_pwrite(keel_file *f, const void *buf, size_t len, uint64_t off)
{
    int r = check_io(f, len, off, KEEL_O_WRITE);

    if (r)
        return r;
    if (!(f->flags & KEEL_O_WRITEBACK))
        return -EAGAIN;
    return wb_pwrite(f, buf, len, off, false);
}

int keel_flush(keel_file *f)
{
    int err, r;

    if (!f)
        return -EBADF;
    err = wb_barrier(f, true);
    r = (int)run_sync(f, FOP_FLUSH, NULL, 0, 0);
    return r ? r : err;
}

int keel_drain(keel_file *f)
{
    int err, r;

    if (!f)
        return -EBADF;
    err = wb_barrier(f, true);
    r = (int)run_sync(f, FOP_TOUCH, NULL, 0, 0);
    return err ? err : r;
}

/* ----------------------------------------------------------------- aio */

int keel_aio_create(keel_aio_cb cb, void *arg, keel_aio **out)
{
    keel_aio *a = calloc(1, sizeof(*a));

    if (!a)
        return -ENOMEM;
    core_wait_init(&a->w);
    a->cb = cb;
    a->arg = arg;
    *out = a;
    return 0;
}

void keel_aio_release(keel_aio *aio)
{
    if (!aio)
        return;
    core_wait_destroy(&aio->w);
    free(aio);
}

static void aio_done(struct fop *op)
{
    keel_aio *a = op->done_arg;
    keel_aio_cb cb = a->cb;
    void *arg = a->arg;

    a->result = op->result;
    /* A waiter may release a as soon as it sees it done: touch nothing of
     * it after the unlock. */
    pthread_mutex_lock(&a->w.m);
    a->state = 2;
    a->w.done = true;
    pthread_cond_broadcast(&a->w.cv);
    pthread_mutex_unlock(&a->w.m);
    if (cb)
        cb(a, arg);
}

static int aio_submit(keel_file *f, enum fop_kind kind, void *buf, size_t len, uint64_t off,
                      keel_aio *a, int need)
{
    int r = need ? check_io(f, len, off, need) : (f ? 0 : -EBADF);

    if (r)
        return r;
    if (!a)
        return -EINVAL;
    pthread_mutex_lock(&a->w.m);
    if (a->state == 1) {
        pthread_mutex_unlock(&a->w.m);
        return -EBUSY;
    }
    a->state = 1;
    a->w.done = false;
    pthread_mutex_unlock(&a->w.m);
    memset(&a->op, 0, sizeof(a->op));
    a->op.base.run = run_fop;
    a->op.in = f->in;
    a->op.kind = kind;
    a->op.buf = buf;
    a->op.len = len;
    a->op.off = off;
    a->op.done = aio_done;
    a->op.done_arg = a;
    r = core_submit(f->c, &a->op.base);
    if (r) {
        pthread_mutex_lock(&a->w.m);
        a->state = 0;
        pthread_mutex_unlock(&a->w.m);
    }
    return r;
}

int keel_aio_pread(keel_file *f, void *buf, size_t len, uint64_t off, keel_aio *aio)
{
    return aio_submit(f, FOP_READ, buf, len, off, aio, KEEL_O_READ);
}

int keel_aio_pwrite(keel_file *f, const void *buf, size_t len, uint64_t off, keel_aio *aio)
{
    return aio_submit(f, FOP_WRITE, (void *)buf, len, off, aio, KEEL_O_WRITE);
}

int keel_aio_flush(keel_file *f, keel_aio *aio)
{
    return aio_submit(f, FOP_FLUSH, NULL, 0, 0, aio, 0);
}

bool keel_aio_done(const keel_aio *aio)
{
    bool done;

    pthread_mutex_lock((pthread_mutex_t *)&aio->w.m);
    done = aio->state == 2;
    pthread_mutex_unlock((pthread_mutex_t *)&aio->w.m);
    return done;
}

int keel_aio_wait(keel_aio *aio, int timeout_ms)
{
    int state;

    pthread_mutex_lock(&aio->w.m);
    state = aio->state;
    pthread_mutex_unlock(&aio->w.m);
    if (state == 0)
        return -EINVAL;
    return core_wait_block(&aio->w, timeout_ms);
}

ssize_t keel_aio_result(const keel_aio *aio)
{
    return aio->result;
}

/* -------------------------------------------------------------- open */

struct open_args {
    struct keel_stat st;
    uint64_t chunk_size;
    bool created; /* by this open: its truncation took no lease */
};

static void copy_attr(const Keel__Envelope *rep, void *arg)
{
    struct open_args *o = arg;
    const Keel__Attr *a = NULL;

    switch (rep->body_case) {
    case KEEL__ENVELOPE__BODY_CREATE_REP:
        a = rep->create_rep->attr;
        o->created = rep->create_rep->created;
        break;
    case KEEL__ENVELOPE__BODY_STAT_REP:
        a = rep->stat_rep->attr;
        break;
    case KEEL__ENVELOPE__BODY_SETATTR_REP:
        a = rep->setattr_rep->attr;
        break;
    default:
        break;
    }
    core_attr_to_stat(a, o->chunk_size, &o->st);
}

struct attach_op {
    struct core_op op;
    struct core_wait w;
    uint64_t ino;
    uint64_t size;
    bool truncated;
    bool leased; /* the namenode took the write lease to truncate it */
    struct kinode *in;
};

static void attach_run(struct core_op *base)
{
    struct attach_op *a = (struct attach_op *)base;

    a->in = chunkio_inode(base->client, a->ino, a->size);
    if (a->in) {
        a->in->opens++;
        if (a->truncated) {
            chunkio_truncated(a->in, 0);
            a->in->lease |= a->leased;
        } else if (!chunkio_size_is_ours(a->in)) {
            a->in->size = a->size;
        }
    }
    core_wait_signal(&a->w);
}

int keel_open(keel_client *c, const char *path, int flags, const struct keel_open_args *args,
              keel_file **out)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CreateReq creq = KEEL__CREATE_REQ__INIT;
    Keel__StatReq sreq = KEEL__STAT_REQ__INIT;
    Keel__SetattrReq treq = KEEL__SETATTR_REQ__INIT;
    struct open_args o = {.chunk_size = c ? c->chunk_size : 0};
    struct attach_op a;
    keel_file *f;
    int r;

    if (!c || !path || path[0] != '/' || !out || !(flags & KEEL_O_RDWR))
        return -EINVAL;
    if ((flags & KEEL_O_TRUNC) && !(flags & KEEL_O_WRITE))
        return -EINVAL;
    if (flags & KEEL_O_TRUNC)
        io_wb_barrier_all(c); /* no write queued before may land after */
    if (flags & KEEL_O_CREATE) {
        creq.path = (char *)path;
        creq.mode = S_IFREG | ((args && args->mode) ? (args->mode & 07777) : 0644);
        creq.uid = (uint32_t)getuid();
        creq.gid = (uint32_t)getgid();
        creq.exclusive = (flags & KEEL_O_EXCL) != 0;
        creq.truncate = (flags & KEEL_O_TRUNC) != 0;
        creq.size = args ? args->size : 0;
        creq.replication = args ? args->replication : 0;
        creq.client_id = c->client_id;
        env.body_case = KEEL__ENVELOPE__BODY_CREATE_REQ;
        env.create_req = &creq;
    } else if (flags & KEEL_O_TRUNC) {
        treq.path = (char *)path;
        treq.valid = KEEL__SETATTR_VALID__SETATTR_SIZE;
        treq.size = 0;
        treq.client_id = c->client_id;
        env.body_case = KEEL__ENVELOPE__BODY_SETATTR_REQ;
        env.setattr_req = &treq;
    } else {
        sreq.path = (char *)path;
        env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
        env.stat_req = &sreq;
    }
    r = core_nn_sync(c, &env, copy_attr, &o, 0);
    if (r)
        return r;
    if (S_ISDIR(o.st.mode))
        return -EISDIR;
    if (!S_ISREG(o.st.mode))
        return -EINVAL;

    f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    memset(&a, 0, sizeof(a));
    a.op.run = attach_run;
    a.ino = o.st.ino;
    a.size = o.st.size;
    a.truncated = (flags & KEEL_O_TRUNC) != 0;
    /* A file this open created was empty: the namenode took no lease. */
    a.leased = a.truncated && !o.created;
    core_wait_init(&a.w);
    r = core_submit(c, &a.op);
    if (r == 0) {
        core_wait_block(&a.w, -1);
        r = a.in ? 0 : -ENOMEM;
    }
    core_wait_destroy(&a.w);
    if (r) {
        free(f);
        return r;
    }
    f->c = c;
    f->in = a.in;
    f->flags = flags;
    pthread_mutex_lock(&c->lock);
    list_add_tail(&c->files, &f->link);
    pthread_mutex_unlock(&c->lock);
    *out = f;
    return 0;
}

/* ------------------------------------------------------ truncate, fstat */

struct setattr_op {
    struct core_op op;
    struct core_wait w;
    keel_file *f;
    Keel__Envelope env;
    Keel__SetattrReq req;
    struct keel_stat st;
    int status;
};

static void setattr_done(int status, const Keel__Envelope *rep, void *arg)
{
    struct setattr_op *s = arg;
    struct kinode *in = s->f->in;

    if (status == 0 && rep->body_case != KEEL__ENVELOPE__BODY_SETATTR_REP)
        status = -EPROTO;
    if (status == 0) {
        core_attr_to_stat(rep->setattr_rep->attr, s->f->c->chunk_size, &s->st);
        if (s->req.valid & KEEL__SETATTR_VALID__SETATTR_SIZE) {
            chunkio_truncated(in, s->req.size);
            in->lease = true;
        } else if (!chunkio_size_is_ours(in)) {
            in->size = s->st.size;
        } else if (in->size > s->st.size) {
            s->st.size = in->size; /* our extends may still be on their way */
        }
    }
    in->ops--;
    s->status = status;
    core_wait_signal(&s->w);
}

static void setattr_run(struct core_op *base)
{
    struct setattr_op *s = (struct setattr_op *)base;
    int r;

    s->f->in->ops++;
    r = core_nn_call(base->client, &s->env, setattr_done, s);
    if (r)
        setattr_done(r, NULL, s);
}

/* SetattrReq by inode: valid 0 reads the attributes. */
static int file_setattr(keel_file *f, unsigned valid, uint64_t size, struct keel_stat *st)
{
    struct setattr_op s;
    int r;

    if (!f)
        return -EBADF;
    memset(&s, 0, sizeof(s));
    s.op.run = setattr_run;
    s.f = f;
    keel__envelope__init(&s.env);
    keel__setattr_req__init(&s.req);
    s.req.path = (char *)protobuf_c_empty_string;
    s.req.ino = f->in->ino;
    s.req.valid = valid;
    s.req.size = size;
    s.req.client_id = f->c->client_id;
    s.env.body_case = KEEL__ENVELOPE__BODY_SETATTR_REQ;
    s.env.setattr_req = &s.req;
    r = core_submit_wait(f->c, &s.op, &s.w, &s.status);
    if (r == 0 && st)
        *st = s.st;
    return r;
}

int keel_truncate(keel_file *f, uint64_t size)
{
    if (f && !(f->flags & KEEL_O_WRITE))
        return -EBADF;
    if (size > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (f)
        wb_barrier(f, false); /* no write queued before may land after */
    return file_setattr(f, KEEL__SETATTR_VALID__SETATTR_SIZE, size, NULL);
}

int keel_fstat(keel_file *f, struct keel_stat *st)
{
    return file_setattr(f, 0, 0, st);
}

/* ---------------------------------------------------------------- close */

struct close_op {
    struct core_op op;
    struct core_wait w;
    struct list link; /* c->closing while waiting for I/O to drain */
    keel_file *f;
    struct fop flush;
    Keel__Envelope env;
    Keel__LeaseReleaseReq req;
    int status;
};

static void close_finish(struct close_op *co)
{
    core_wait_signal(&co->w);
}

static void released(int status, const Keel__Envelope *rep, void *arg)
{
    struct close_op *co = arg;
    struct kinode *in = co->f->in;

    if (status)
        log_debug("releasing the lease of ino %llu: %s", (unsigned long long)in->ino,
                  err_str(status));
    in->ops--;
    chunkio_inode_put(in);
    close_finish(co);
}

/* Tells the namenode this client gives up the write lease on ino; env and
 * req must live until cb. */
static int release_lease(keel_client *c, uint64_t ino, Keel__Envelope *env,
                         Keel__LeaseReleaseReq *req, core_nn_fn cb, void *arg)
{
    keel__envelope__init(env);
    keel__lease_release_req__init(req);
    req->client_id = c->client_id;
    req->ino = ino;
    env->body_case = KEEL__ENVELOPE__BODY_LEASE_RELEASE_REQ;
    env->lease_release_req = req;
    return core_nn_call(c, env, cb, arg);
}

static void close_detach(struct close_op *co)
{
    struct kinode *in = co->f->in;

    if (--in->opens == 0 && in->lease) {
        chunkio_drop_lease(in, false);
        in->ops++;
        if (release_lease(in->c, in->ino, &co->env, &co->req, released, co) == 0)
            return;
        in->ops--;
    }
    chunkio_inode_put(in);
    close_finish(co);
}

static void close_flushed(struct fop *op)
{
    struct close_op *co = op->done_arg;

    co->status = (int)op->result;
    if (co->status)
        log_warn("flush at close of ino %llu: %s", (unsigned long long)co->f->in->ino,
                 err_str(co->status));
    close_detach(co);
}

static void close_step(struct close_op *co)
{
    struct kinode *in = co->f->in;

    if (in->ops > 0) {
        /* Requests still in flight (asynchronous ones, at disconnect). */
        list_add_tail(&in->c->closing, &co->link);
        return;
    }
    if ((co->f->flags & KEEL_O_WRITE) && chunkio_dirty(in) && in->opens == 1) {
        co->flush.in = in;
        co->flush.kind = FOP_FLUSH;
        co->flush.done = close_flushed;
        co->flush.done_arg = co;
        chunkio_start(&co->flush);
        return;
    }
    close_detach(co);
}

static void close_run(struct core_op *base)
{
    close_step((struct close_op *)base);
}

int keel_close(keel_file *f)
{
    struct close_op co;
    int err, r;

    if (!f)
        return -EBADF;
    err = wb_barrier(f, true);
    memset(&co, 0, sizeof(co));
    co.op.run = close_run;
    co.f = f;
    list_init(&co.link);
    core_wait_init(&co.w);
    pthread_mutex_lock(&f->c->lock);
    list_del(&f->link);
    pthread_mutex_unlock(&f->c->lock);
    r = core_submit(f->c, &co.op);
    if (r == 0) {
        core_wait_block(&co.w, -1);
        r = co.status;
    }
    core_wait_destroy(&co.w);
    free(f);
    return r ? r : err;
}

struct path_trunc_op {
    struct core_op op;
    struct core_wait w;
    uint64_t ino, size;
    Keel__Envelope env;
    Keel__LeaseReleaseReq req;
};

static void path_trunc_released(int status, const Keel__Envelope *rep, void *arg)
{
    struct path_trunc_op *t = arg;

    (void)rep;
    if (status)
        log_debug("releasing the lease of ino %llu after a truncate: %s",
                  (unsigned long long)t->ino, err_str(status));
    core_wait_signal(&t->w);
}

static void path_trunc_run(struct core_op *base)
{
    struct path_trunc_op *t = (struct path_trunc_op *)base;
    keel_client *c = base->client;
    struct kinode *in = u64map_get(&c->inodes, t->ino);

    if (in && in->opens > 0) {
        chunkio_truncated(in, t->size);
        in->lease = true;
        core_wait_signal(&t->w);
        return;
    }
    if (release_lease(c, t->ino, &t->env, &t->req, path_trunc_released, t) != 0)
        core_wait_signal(&t->w);
}

void io_truncated_by_path(keel_client *c, uint64_t ino, uint64_t size)
{
    struct path_trunc_op t;

    memset(&t, 0, sizeof(t));
    t.op.run = path_trunc_run;
    t.ino = ino;
    t.size = size;
    core_wait_init(&t.w);
    if (core_submit(c, &t.op) == 0)
        core_wait_block(&t.w, -1);
    core_wait_destroy(&t.w);
}

void io_close_all(keel_client *c)
{
    for (;;) {
        keel_file *f = NULL;

        pthread_mutex_lock(&c->lock);
        if (!list_empty(&c->files))
            f = list_entry(c->files.next, keel_file, link);
        pthread_mutex_unlock(&c->lock);
        if (!f)
            break;
        keel_close(f);
    }
}

/* -------------------------------------------------------------- leases */

struct recall {
    struct fop flush;
    void (*reply)(int released, void *arg);
    void *arg;
};

static void recall_flushed(struct fop *op)
{
    struct recall *rc = op->done_arg;
    struct kinode *in = op->in;

    log_info("handing over the write lease of ino %llu%s", (unsigned long long)in->ino,
             op->result ? " failed: flush error" : "");
    rc->reply(op->result == 0, rc->arg);
    free(rc);
    chunkio_inode_put(in);
}

void io_lease_recall(keel_client *c, uint64_t ino, void (*reply)(int released, void *arg),
                     void *arg)
{
    struct kinode *in = u64map_get(&c->inodes, ino);
    struct recall *rc;

    if (!in || !in->lease) {
        reply(1, arg);
        return;
    }
    if (in->writes > 0 || mono_ms() - in->last_write_ms < c->opts.lease_idle_ms) {
        reply(0, arg);
        return;
    }
    rc = calloc(1, sizeof(*rc));
    if (!rc) {
        reply(0, arg);
        return;
    }
    chunkio_drop_lease(in, true);
    rc->reply = reply;
    rc->arg = arg;
    rc->flush.in = in;
    rc->flush.kind = FOP_FLUSH;
    rc->flush.done = recall_flushed;
    rc->flush.done_arg = rc;
    chunkio_start(&rc->flush);
}

void io_lease_lost(keel_client *c, uint64_t ino)
{
    struct kinode *in = u64map_get(&c->inodes, ino);

    if (in && in->lease) {
        log_warn("lost the write lease of ino %llu", (unsigned long long)ino);
        chunkio_drop_lease(in, false);
    }
}

size_t io_lease_inos(keel_client *c, uint64_t *out, size_t max)
{
    size_t i = 0, n = 0;
    uint64_t ino;
    void *val;

    while (u64map_next(&c->inodes, &i, &ino, &val)) {
        if (!((struct kinode *)val)->lease)
            continue;
        if (out && n < max)
            out[n] = ino;
        n++;
    }
    return out ? MIN(n, max) : n;
}

void io_reconnected(keel_client *c)
{
    chunkio_resend_sizes(c);
}

void io_tick(keel_client *c, uint64_t now_ms)
{
    struct list waiting, *pos;

    chunkio_tick(c, now_ms);
    if (list_empty(&c->closing))
        return;
    waiting = c->closing;
    waiting.next->prev = &waiting;
    waiting.prev->next = &waiting;
    list_init(&c->closing);
    while ((pos = list_pop(&waiting)))
        close_step(list_entry(pos, struct close_op, link));
}
