/*
 * replicas: see replicas.h for the model.
 *
 * An operation (struct op) is one row of the op_types table: a class that
 * says what it may run alongside, a check run on the loop when it starts,
 * a run step (on a pool thread, or first tried on the loop without waiting
 * for the disk), and a done step on the loop that folds the outcome into
 * the replica. An op whose check fails, that has nothing to do, or that ran
 * on the loop completes without touching the pool; its callback is
 * deferred to the loop's check (or idle) phase so that no callback ever
 * runs inside a submit call.
 *
 * Ordering: an op may start when it is compatible with every op of its
 * replica that is running or queued before it (compatible()). Writes carry
 * an arrival sequence number: a flush makes durable the writes that arrived
 * before it, and a replica is unflushed while a write at or after
 * `durable_below` has started.
 *
 * Memory: a replica lives while it is in the table or has ops (queued,
 * running or deferred); ops are freed after their callback.
 */
#include "replicas.h"

#include "checksum.h"
#include "errors.h"
#include "list.h"
#include "log.h"
#include "u64map.h"
#include "util.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define SKIP 1 /* a check's verdict: done already, succeed without work */

#define INLINE_MAX      (128u * 1024) /* largest read or write tried on the loop */
#define INLINE_SLOW_NS  20000000ull   /* a loop write this slow (the kernel throttled it) ... */
#define INLINE_PAUSE_MS 1000          /* ... sends writes to the pool for this long */
#define SETTLE_IDLE_MS  1000          /* a replica idle this long settles */
#define SETTLE_CHECK_MS 250
#define ROOM_MARGIN     (1u << 20) /* free beyond a write's bytes to retry a full replica */
#define MAX_SCAN        64         /* queued ops looked at before one that may start */
#define FLUSH_GATHER_NS 1000000ull /* a device flush waits this long for more flushes */

/* What an op may run alongside (see compatible()). */
enum op_class {
    CLS_READ,  /* reads its block range */
    CLS_WRITE, /* writes its block range */
    CLS_FLUSH, /* syncs what the writes before it wrote */
    CLS_ALONE, /* runs alone */
};

struct replica {
    struct replicas *r;
    uint64_t id;
    uint64_t version;
    uint64_t length;
    bool present; /* created or installed, not deleted */
    bool mapped;  /* in r->table */
    bool corrupt;
    int error;      /* sticky disk error of a write path */
    bool full_only; /* error is writes' -ENOSPC alone: room clears it */
    struct replicafile *file;
    struct list queue;   /* ops not yet started, in arrival order */
    struct list running; /* ops started on the pool, not yet done */
    bool pumping;
    unsigned nops; /* ops queued, running or deferred */
    uint64_t next_seq;
    uint64_t last_write_seq; /* arrival number of the latest write started */
    uint64_t durable_below;  /* writes that arrived before this one are flushed */
    bool unsettled;          /* marked dirty on disk (replicafile_unsettled) */
    bool settle_queued;
    uint64_t last_write_ms;
    struct list settle; /* on r->unsettled */
    struct list lru;
    bool in_lru;
};

struct replicas {
    uv_loop_t *loop;
    struct chunkstore *cs;
    struct replicas_hooks hooks;
    unsigned max_open;
    unsigned nopen;
    struct u64map table;
    struct list lru;       /* idle, settled replicas with open files, oldest first */
    struct list unsettled; /* replicas marked dirty on disk */
    struct list deferred;  /* ops completed without the pool, callbacks pending */
    uv_check_t check;      /* runs deferred callbacks after the I/O that queued them */
    uv_idle_t idle;        /* keeps the loop from blocking while some wait */
    uv_timer_t settle_timer;
    bool handles_closed;
    uint64_t inline_paused_until_ms;
    size_t busy;
    bool stopping;
    /* Device cache flushes, shared by the flushes that wait for one. */
    struct list flush_waiting; /* their ops, oldest first */
    unsigned flushes_on_pool;  /* flush ops whose run has not come back */
    uint64_t flushes_started;
    bool flush_running;
    int flush_status;
    uv_work_t flush_work;
    /* Commits of the log of small writes, shared the same way. */
    struct list log_waiting; /* flush ops that are a commit alone */
    bool log_running;
    uint64_t log_upto; /* what the running commit makes durable */
    int log_status;
    uv_work_t log_work;
};

struct op;

struct op_type {
    const char *name;
    enum op_class cls;
    bool opens;   /* needs the replica's files */
    bool at_stop; /* still runs while shutting down */
    int (*check)(struct op *op);
    void (*run)(struct op *op);
    /* Optional: the run step without waiting for the disk; -EAGAIN if it
     * would have to (nothing was done), else 0 with op->status set. */
    int (*try_now)(struct op *op);
    void (*done)(struct op *op);
};

struct op {
    struct list link; /* queue, running list, or deferred list */
    uv_work_t work;
    struct replicas *r;
    struct replica *rep;
    const struct op_type *type;
    enum op_class cls; /* as started */
    replicas_cb cb;
    void *arg;
    unsigned flags;
    uint64_t seq;           /* arrival number */
    uint64_t bfirst, blast; /* blocks touched (read and write classes) */
    uint64_t version, to, off, length, session;
    int *data_fd;   /* take: the copy session's temporary data file */
    uint64_t *sums; /* take: where the checksums go */
    bool taken;     /* take: the replica is gone (its data moved) */
    const void *data;
    size_t len;
    struct replicafile *file;
    bool file_changed;      /* run opened, replaced or closed the files */
    bool open_failed;       /* the files could not be opened; run was skipped */
    bool damaged;           /* scrub: the files are not the replica's any more */
    bool device_flush;      /* flush: durable after a device cache flush */
    uint64_t flush_gen;     /* ... the one with this number */
    uint64_t flush_wait_ns; /* since when it waits */
    struct list flush_link; /* on r->flush_waiting or r->log_waiting */
    uint64_t log_upto;      /* flush: the log's records it needs durable */
    int status;
    struct replicafile_readout ro;
    struct replicas_result res;
};

enum {
    OP_READ,
    OP_WRITE,
    OP_FLUSH,
    OP_CHECKSUMS,
    OP_SCRUB,
    OP_CREATE,
    OP_SET_VERSION,
    OP_TRIM,
    OP_DELETE,
    OP_INSTALL,
    OP_MARK,
    OP_TAKE,
    OP_SETTLE,
};

static void pump(struct replica *rep);
static void enqueue(struct replica *rep, struct op *op);
static void set_corrupt(struct replica *rep, uint64_t block, const char *what);
static void on_settle_timer(uv_timer_t *t);
static void queue_settle(struct replica *rep);

/* ------------------------------------------------------------ replicas */

static struct replica *rep_new(struct replicas *r, uint64_t id)
{
    struct replica *rep = xcalloc(1, sizeof(*rep));

    rep->r = r;
    rep->id = id;
    rep->next_seq = 1;
    rep->durable_below = 1;
    list_init(&rep->queue);
    list_init(&rep->running);
    list_init(&rep->settle);
    list_init(&rep->lru);
    if (u64map_put(&r->table, id, rep) < 0) {
        log_error("replicas: out of memory");
        abort();
    }
    rep->mapped = true;
    return rep;
}

static void rep_info(const struct replica *rep, struct replica_info *ri)
{
    ri->chunk_id = rep->id;
    ri->version = rep->version;
    ri->length = rep->length;
    ri->corrupt = rep->corrupt;
}

/* Written since the last successful flush. */
static bool unflushed(const struct replica *rep)
{
    return rep->last_write_seq >= rep->durable_below;
}

static bool idle_now(const struct replica *rep)
{
    return list_empty(&rep->running) && list_empty(&rep->queue);
}

static void lru_remove(struct replica *rep)
{
    if (rep->in_lru) {
        list_del(&rep->lru);
        rep->in_lru = false;
    }
}

static void close_file(struct replica *rep)
{
    if (rep->file) {
        /* close(2) of a file without a pending sync does not wait for I/O. */
        replicafile_close(rep->file);
        rep->file = NULL;
        rep->r->nopen--;
    }
}

/* Frees a replica that has left the table once no op refers to it. */
static void rep_release(struct replica *rep)
{
    if (rep->mapped || rep->nops)
        return;
    lru_remove(rep);
    list_del(&rep->settle);
    close_file(rep);
    free(rep);
}

static void rep_unmap(struct replica *rep)
{
    if (rep->mapped && u64map_get(&rep->r->table, rep->id) == rep)
        u64map_del(&rep->r->table, rep->id);
    rep->mapped = false;
    rep->present = false;
}

/* An idle, settled replica's files go to the LRU; the oldest beyond
 * max_open are closed. */
static void rep_idle(struct replica *rep)
{
    struct replicas *r = rep->r;

    if (rep->mapped && rep->file && idle_now(rep) && !rep->unsettled && !rep->error &&
        !rep->in_lru) {
        list_add_tail(&r->lru, &rep->lru);
        rep->in_lru = true;
    }
    while (r->nopen > r->max_open && !list_empty(&r->lru)) {
        struct replica *old = list_entry(r->lru.next, struct replica, lru);

        lru_remove(old);
        close_file(old);
    }
}

static void report(struct replica *rep, bool deleted)
{
    struct replicas *r = rep->r;
    struct replica_info ri;

    rep_info(rep, &ri);
    if (r->hooks.report)
        r->hooks.report(r->hooks.ctx, &ri, deleted);
}

/* Mirrors the file's dirty flag; unsettled replicas wait on r->unsettled. */
static void track_settle(struct replica *rep)
{
    struct replicas *r = rep->r;

    rep->unsettled = rep->file && replicafile_unsettled(rep->file);
    if (!rep->unsettled) {
        list_del(&rep->settle);
        return;
    }
    if (list_empty(&rep->settle))
        list_add_tail(&r->unsettled, &rep->settle);
    if (r->stopping)
        queue_settle(rep); /* a write that ran into the shutdown */
    else if (!uv_is_active((uv_handle_t *)&r->settle_timer))
        uv_timer_start(&r->settle_timer, on_settle_timer, SETTLE_CHECK_MS, SETTLE_CHECK_MS);
}

/* ------------------------------------------------------------ op plumbing */

static struct op *op_new(struct replicas *r, const struct op_type *type, replicas_cb cb, void *arg)
{
    struct op *op = xcalloc(1, sizeof(*op));

    op->r = r;
    op->type = type;
    op->cls = type->cls;
    op->cb = cb;
    op->arg = arg;
    list_init(&op->link);
    return op;
}

static void maybe_close_handles(struct replicas *r)
{
    if (r->stopping && r->busy == 0 && !r->handles_closed) {
        r->handles_closed = true;
        uv_close((uv_handle_t *)&r->check, NULL);
        uv_close((uv_handle_t *)&r->idle, NULL);
        uv_close((uv_handle_t *)&r->settle_timer, NULL);
    }
}

/* Runs the callback and frees the op. */
static void op_complete(struct op *op)
{
    struct replicas *r = op->r;
    struct replica *rep = op->rep;

    if (op->cb)
        op->cb(op->status, &op->res, op->arg);
    free(op->res.base);
    free(op->res.sums);
    free(op);
    rep->nops--;
    r->busy--;
    rep_release(rep);
    maybe_close_handles(r);
}

static void run_deferred(struct replicas *r)
{
    struct list *n;

    while ((n = list_pop(&r->deferred)))
        op_complete(list_entry(n, struct op, link));
    if (!r->handles_closed) {
        uv_idle_stop(&r->idle);
        uv_check_stop(&r->check);
    }
}

static void on_check(uv_check_t *h)
{
    run_deferred(h->data);
}

static void on_idle(uv_idle_t *h)
{
    run_deferred(h->data);
}

/* Completes op without the pool; the callback runs from the check phase of
 * this loop iteration (or the idle phase of the next). */
static void op_defer(struct op *op, int status)
{
    struct replicas *r = op->r;

    op->status = status;
    rep_info(op->rep, &op->res.info);
    list_add_tail(&r->deferred, &op->link);
    if (!r->handles_closed) {
        uv_check_start(&r->check, on_check);
        uv_idle_start(&r->idle, on_idle);
    }
}

/* The files of a present replica would not open. Damage (a bad header, a
 * link, a missing sidecar) makes it corrupt; a lack of descriptors or
 * memory only fails the op. */
static void open_failure(struct replica *rep, int err)
{
    log_error("replicas: cannot open chunk %016" PRIx64 ": %s", rep->id, err_str(err));
    if (err == -EBADMSG || err == -ELOOP || err == -EINVAL || err == -ENOENT || err == -EIO)
        set_corrupt(rep, UINT64_MAX, "open");
}

static void work_cb(uv_work_t *w)
{
    struct op *op = list_entry(w, struct op, work);

    if (op->type->opens && !op->file) {
        op->status = chunkstore_open_replica(op->r->cs, op->rep->id, &op->file);
        if (op->status) {
            op->open_failed = true;
            return;
        }
        op->file_changed = true;
    }
    op->type->run(op);
}

/* The outcome of a run, on the loop: fold it into the replica. */
static void finish_run(struct op *op)
{
    struct replica *rep = op->rep;
    struct replicas *r = op->r;

    if (op->file_changed && op->file != rep->file) {
        r->nopen += (op->file != NULL) - (rep->file != NULL);
        rep->file = op->file;
    }
    if (op->status && op->status != -ESTALE && op->status != -EINVAL)
        log_debug("replicas: %s of chunk %016" PRIx64 ": %s", op->type->name, rep->id,
                  err_str(op->status));
    if (op->open_failed)
        open_failure(rep, op->status);
    else
        op->type->done(op);
    track_settle(rep);
    rep_info(rep, &op->res.info);
}

/* A run that left the pool is over: fold it in, call back, start what waited. */
static void op_finished(struct op *op)
{
    struct replica *rep = op->rep;

    list_del(&op->link);
    finish_run(op);
    rep->nops++; /* keep rep while the callback may queue more */
    op_complete(op);
    rep->nops--;
    pump(rep);
    rep_idle(rep);
    rep_release(rep);
}

/*
 * A flush whose writes went back without an fdatasync (replicafile_flush)
 * stays running until a device cache flush that began after its writeback
 * has finished: the next one to start. One device flush serves every flush
 * that came while the one before it ran. It also waits, for FLUSH_GATHER_NS
 * at most, for the flushes still on the pool: the chunks of one flush
 * request, which arrive together, then share one.
 */
static void device_flush_start(struct replicas *r);

static void device_flush_work(uv_work_t *w)
{
    struct replicas *r = list_entry(w, struct replicas, flush_work);

    r->flush_status = chunkstore_flush_device(r->cs);
}

static void device_flush_done(uv_work_t *w, int status)
{
    struct replicas *r = list_entry(w, struct replicas, flush_work);
    struct list *pos, *tmp;

    r->flush_running = false;
    list_for_each_safe(pos, tmp, &r->flush_waiting)
    {
        struct op *op = list_entry(pos, struct op, flush_link);

        if (op->flush_gen > r->flushes_started)
            continue; /* came while it ran */
        list_del(&op->flush_link);
        op->status = status < 0 ? status : r->flush_status;
        op_finished(op);
    }
    device_flush_start(r);
}

static void device_flush_start(struct replicas *r)
{
    struct op *oldest;
    int rc;

    if (r->flush_running || list_empty(&r->flush_waiting))
        return;
    oldest = list_entry(r->flush_waiting.next, struct op, flush_link);
    if (r->flushes_on_pool && mono_ns() - oldest->flush_wait_ns < FLUSH_GATHER_NS)
        return; /* the next to come back starts it */
    r->flushes_started++;
    r->flush_running = true;
    rc = uv_queue_work(r->loop, &r->flush_work, device_flush_work, device_flush_done);
    if (rc < 0)
        device_flush_done(&r->flush_work, rc);
}

static void after_work_cb(uv_work_t *w, int status)
{
    struct op *op = list_entry(w, struct op, work);
    struct replicas *r = op->r;

    if (status < 0 && op->status == 0)
        op->status = status;
    if (op->type->cls == CLS_FLUSH)
        r->flushes_on_pool--;
    if (op->device_flush && op->status == 0) {
        op->flush_gen = r->flushes_started + 1;
        op->flush_wait_ns = mono_ns();
        list_add_tail(&r->flush_waiting, &op->flush_link);
    } else {
        op_finished(op);
    }
    device_flush_start(r);
}

/*
 * A flush whose writes the log holds all of is a commit of the log and
 * nothing more (replicafile_flush). Rather than a trip through the pool
 * each, such flushes (the chunks of one flush request, and every flush that
 * comes meanwhile) wait here for one commit that covers them all; one the
 * log has already made durable finishes at once. If the commit fails, each
 * takes the pool after all, where replicafile_flush syncs the file.
 */
static void log_commit_start(struct replicas *r);

static void log_commit_work(uv_work_t *w)
{
    struct replicas *r = list_entry(w, struct replicas, log_work);

    r->log_status = chunkstore_commit_log(r->cs, r->log_upto);
}

static void log_commit_done(uv_work_t *w, int status)
{
    struct replicas *r = list_entry(w, struct replicas, log_work);
    uint64_t upto = r->log_upto;
    int st = status < 0 ? status : r->log_status;
    struct list done, *pos, *tmp;

    /* The callbacks below may start flushes: they wait for the next
     * commit, which starts once these are all answered. */
    list_init(&done);
    list_for_each_safe(pos, tmp, &r->log_waiting)
    {
        struct op *op = list_entry(pos, struct op, flush_link);

        if (op->log_upto > upto)
            continue; /* came while it ran */
        list_del(&op->flush_link);
        list_add_tail(&done, &op->flush_link);
    }
    list_for_each_safe(pos, tmp, &done)
    {
        struct op *op = list_entry(pos, struct op, flush_link);
        int rc;

        list_del(&op->flush_link);
        if (st == 0) {
            op->status = 0;
            op_finished(op);
            continue;
        }
        rc = uv_queue_work(r->loop, &op->work, work_cb, after_work_cb);
        if (rc < 0) {
            op->status = rc;
            op_finished(op);
        } else {
            r->flushes_on_pool++;
        }
    }
    r->log_running = false;
    log_commit_start(r);
}

static void log_commit_start(struct replicas *r)
{
    struct list *pos;
    int rc;

    if (r->log_running || list_empty(&r->log_waiting))
        return;
    r->log_upto = 0;
    for (pos = r->log_waiting.next; pos != &r->log_waiting; pos = pos->next)
        r->log_upto = MAX(r->log_upto, list_entry(pos, struct op, flush_link)->log_upto);
    r->log_running = true;
    rc = uv_queue_work(r->loop, &r->log_work, log_commit_work, log_commit_done);
    if (rc < 0)
        log_commit_done(&r->log_work, rc);
}

/* Starts a flush that is a commit of the log alone; false if it is not. */
static bool start_log_flush(struct op *op)
{
    struct replicas *r = op->r;
    uint64_t upto;

    if (op->type->cls != CLS_FLUSH || !op->file || !replicafile_flush_is_commit(op->file, &upto))
        return false;
    if (upto <= chunkstore_log_committed(r->cs)) {
        op->status = 0;
        finish_run(op);
        op_defer(op, 0);
        return true;
    }
    op->log_upto = upto;
    list_add_tail(&op->rep->running, &op->link);
    list_add_tail(&r->log_waiting, &op->flush_link);
    log_commit_start(r);
    return true;
}

/* Tries the op on the loop; true if it ran there. */
static bool run_now(struct op *op)
{
    struct replicas *r = op->r;
    bool write = op->type->cls == CLS_WRITE;
    uint64_t t0 = 0;

    if (!op->type->try_now || !op->file || op->len > INLINE_MAX)
        return false;
    if (write) {
        if (mono_ms() < r->inline_paused_until_ms)
            return false;
        t0 = mono_ns();
    }
    if (op->type->try_now(op) == -EAGAIN)
        return false;
    if (write && mono_ns() - t0 > INLINE_SLOW_NS) {
        r->inline_paused_until_ms = mono_ms() + INLINE_PAUSE_MS;
        log_info("replicas: a write took %" PRIu64 " us on the loop; writes go to the pool for "
                 "%d ms",
                 (mono_ns() - t0) / 1000, INLINE_PAUSE_MS);
    }
    return true;
}

static void op_start(struct op *op)
{
    struct replica *rep = op->rep;
    int r;

    lru_remove(rep);
    op->file = rep->file;
    if (start_log_flush(op))
        return;
    if (run_now(op)) {
        finish_run(op);
        op_defer(op, op->status);
        return;
    }
    list_add_tail(&rep->running, &op->link);
    r = uv_queue_work(op->r->loop, &op->work, work_cb, after_work_cb);
    if (r < 0) {
        list_del(&op->link);
        op_defer(op, r);
    } else if (op->type->cls == CLS_FLUSH) {
        op->r->flushes_on_pool++;
    }
}

/* How op would run if it started now. */
static enum op_class class_now(const struct replica *rep, const struct op *op)
{
    if (op->type->opens && !rep->file)
        return CLS_ALONE; /* opens the files */
    if (op->type->cls == CLS_WRITE && !rep->unsettled)
        return CLS_ALONE; /* marks the replica dirty on disk */
    return op->type->cls;
}

/* May `later` run while `earlier` (running, or queued before it) has not
 * finished? */
static bool compatible(const struct op *earlier, enum op_class a, const struct op *later,
                       enum op_class b)
{
    if (a == CLS_ALONE || b == CLS_ALONE)
        return false;
    if (a == CLS_FLUSH || b == CLS_FLUSH)
        return !(a == CLS_WRITE && b == CLS_FLUSH); /* a flush waits for earlier writes */
    if (a == CLS_READ && b == CLS_READ)
        return true;
    return earlier->blast < later->bfirst || later->blast < earlier->bfirst;
}

static bool may_start(const struct replica *rep, const struct op *op, enum op_class cls)
{
    const struct list *pos;

    for (pos = rep->running.next; pos != &rep->running; pos = pos->next) {
        const struct op *o = list_entry(pos, struct op, link);

        if (!compatible(o, o->cls, op, cls))
            return false;
    }
    for (pos = rep->queue.next; pos != &op->link; pos = pos->next) {
        const struct op *o = list_entry(pos, struct op, link);

        if (!compatible(o, class_now(rep, o), op, cls))
            return false;
    }
    return true;
}

/* Starts every queued op that may start. */
static void pump(struct replica *rep)
{
    struct list *pos, *tmp;
    unsigned scanned = 0;

    if (rep->pumping)
        return;
    rep->pumping = true;
    list_for_each_safe(pos, tmp, &rep->queue)
    {
        struct op *op = list_entry(pos, struct op, link);
        enum op_class cls;
        int c;

        if (rep->r->stopping && !op->type->at_stop) {
            list_del(&op->link);
            op_defer(op, -ECANCELED);
            continue;
        }
        cls = class_now(rep, op);
        if (!may_start(rep, op, cls)) {
            if (cls == CLS_ALONE || ++scanned >= MAX_SCAN)
                break; /* nothing behind it may start either, or enough looked at */
            continue;
        }
        list_del(&op->link);
        op->cls = cls;
        /* A replica that left the table (deleted, or its creation failed)
         * runs nothing more; a new one may already stand in its place. */
        c = rep->mapped ? op->type->check(op) : -ENOENT;
        if (c)
            op_defer(op, c < 0 ? c : 0);
        else
            op_start(op);
    }
    rep->pumping = false;
    rep_idle(rep); /* what ran on the loop may have left it idle */
}

static void enqueue(struct replica *rep, struct op *op)
{
    op->rep = rep;
    op->seq = rep->next_seq++;
    list_add_tail(&rep->queue, &op->link);
    rep->nops++;
    rep->r->busy++;
    pump(rep);
}

/* The replica of an existing chunk, for an op to queue on. */
static int lookup(struct replicas *r, uint64_t id, struct replica **out)
{
    struct replica *rep;

    if (r->stopping)
        return -ECANCELED;
    if (!chunkstore_blocks(r->cs))
        return -EAGAIN;
    rep = u64map_get(&r->table, id);
    if (!rep)
        return -ENOENT;
    *out = rep;
    return 0;
}

static uint64_t chunk_bytes(const struct replicas *r)
{
    return (uint64_t)chunkstore_blocks(r->cs) * KEEL_BLOCK_SIZE;
}

static bool range_ok(const struct replicas *r, uint64_t off, size_t len)
{
    return len > 0 && off < chunk_bytes(r) && len <= chunk_bytes(r) - off;
}

/* ------------------------------------------------------ state transitions */

/* A write path failed on disk: the error sticks, the namenode hears. */
static void disk_failure(struct replica *rep, const char *what, int err)
{
    struct replicas *r = rep->r;

    if (!rep->error)
        rep->error = err;
    rep->full_only = false;
    log_error("replicas: %s of chunk %016" PRIx64 " failed on disk: %s", what, rep->id,
              err_str(err));
    if (r->hooks.disk_error)
        r->hooks.disk_error(r->hooks.ctx, rep->id, err);
    /* A full disk leaves the replica intact but behind; anything else leaves
     * it in an unknown state: have it replaced. */
    if (err != -ENOSPC)
        set_corrupt(rep, UINT64_MAX, what);
}

/* ------------------------------------------------------------ op types */

static int check_present(struct op *op)
{
    return op->rep->present ? 0 : -ENOENT;
}

static int check_readable(struct op *op)
{
    struct replica *rep = op->rep;

    if (!rep->present)
        return -ENOENT;
    if (rep->corrupt)
        return -EIO;
    if (op->version && op->version != rep->version)
        return -ESTALE;
    return 0;
}

static int check_writable(struct op *op)
{
    struct replica *rep = op->rep;
    int c = check_readable(op);

    if (c)
        return c;
    return rep->error;
}

/*
 * A replica that a full disk stopped (done_write) takes writes and version
 * changes again once the disk has room for them: the writes it refused were
 * never acknowledged, and what it holds is as its checksums say. Anything
 * else that failed sticks.
 */
static void room_again(struct op *op)
{
    struct replica *rep = op->rep;
    struct statvfs sv;

    if (rep->error != -ENOSPC || !rep->full_only || statvfs(chunkstore_dir(op->r->cs), &sv) != 0 ||
        (uint64_t)sv.f_bavail * sv.f_frsize < op->len + ROOM_MARGIN)
        return;
    if (rep->file && !replicafile_clear_full(rep->file))
        return;
    rep->error = 0;
    rep->full_only = false;
    log_info("replicas: chunk %016" PRIx64 " takes writes again: the disk has room", rep->id);
}

/* set_version and trim: from (op->version) -> to. */
static int check_move(struct op *op)
{
    struct replica *rep = op->rep;

    room_again(op);
    if (!rep->present)
        return -ENOENT;
    if (rep->corrupt)
        return -EIO;
    if (rep->error)
        return rep->error;
    if (rep->version == op->to)
        return 0;
    if (op->version ? rep->version != op->version : rep->version > op->to)
        return -ESTALE;
    return 0;
}

/* Reads the blocks of the op into a buffer it owns (kept should the read
 * move from the loop to the pool). */
static void read_into(struct op *op, unsigned flags)
{
    uint64_t first = op->bfirst;
    size_t n = (size_t)(op->blast - first + 1);

    if (!op->res.base)
        op->res.base = malloc(n * KEEL_BLOCK_SIZE);
    if ((op->flags & REPLICAS_SUMS) && !op->res.sums)
        op->res.sums = op->ro.sums = malloc(n * sizeof(uint64_t));
    if (!op->res.base || ((op->flags & REPLICAS_SUMS) && !op->res.sums)) {
        op->status = -ENOMEM;
        return;
    }
    op->status = replicafile_read_blocks(op->file, first, n, op->res.base, &op->ro, flags);
    if (op->status)
        return;
    op->res.data = (uint8_t *)op->res.base + (op->off - first * KEEL_BLOCK_SIZE);
    op->res.len = op->len;
    op->res.checksum = csum_buf(op->res.data, op->len);
    op->res.nsums = op->res.sums ? n : 0;
}

static void run_read(struct op *op)
{
    read_into(op, 0);
}

static int try_read(struct op *op)
{
    read_into(op, REPLICAFILE_NOWAIT);
    return op->status == -EAGAIN ? -EAGAIN : 0;
}

static void done_read(struct op *op)
{
    if (op->ro.mismatch)
        set_corrupt(op->rep, op->ro.bad, op->type->name);
    if (op->status) {
        free(op->res.base);
        free(op->res.sums);
        op->res.base = NULL;
        op->res.sums = NULL;
        op->res.data = NULL;
        op->res.len = 0;
    }
}

static int check_write(struct op *op)
{
    struct replica *rep = op->rep;
    int c;

    room_again(op);
    c = check_writable(op);

    if (c == 0) {
        /* Even a failed write may have changed the files. */
        rep->last_write_seq = MAX(rep->last_write_seq, op->seq);
        rep->last_write_ms = mono_ms();
    }
    return c;
}

static void run_write(struct op *op)
{
    op->status = replicafile_write(op->file, op->off, op->data, op->len, 0, &op->ro.mismatch);
}

static int try_write(struct op *op)
{
    op->status = replicafile_write(op->file, op->off, op->data, op->len, REPLICAFILE_NOWAIT,
                                   &op->ro.mismatch);
    return op->status == -EAGAIN ? -EAGAIN : 0;
}

static void done_write(struct op *op)
{
    struct replica *rep = op->rep;

    if (rep->file)
        rep->length = replicafile_length(rep->file);
    if (op->status == 0 || op->status == -EINVAL)
        return;
    if (rep->file && replicafile_error(rep->file)) {
        /* The write reached the disk and failed there. */
        bool full = op->status == -ENOSPC && !op->ro.mismatch && (!rep->error || rep->full_only);

        disk_failure(rep, "write", op->status);
        rep->full_only = full;
        if (op->ro.mismatch)
            set_corrupt(rep, UINT64_MAX, "a failed write cut a block");
    } else if (op->ro.mismatch) {
        set_corrupt(rep, UINT64_MAX, "write over a bad block");
    }
}

static int check_flush(struct op *op)
{
    int c = check_writable(op);

    if (c == 0 && !unflushed(op->rep))
        return SKIP;
    return c;
}

static void run_flush(struct op *op)
{
    op->status = replicafile_flush(op->file, &op->device_flush);
}

static void done_flush(struct op *op)
{
    struct replica *rep = op->rep;

    if (op->status == 0)
        rep->durable_below = MAX(rep->durable_below, op->seq);
    else
        disk_failure(rep, "flush", op->status);
}

static void run_checksums(struct op *op)
{
    uint32_t blocks = replicafile_header(op->file)->blocks;
    uint64_t *sums = malloc((size_t)blocks * sizeof(*sums));

    op->res.base = sums;
    if (!sums) {
        op->status = -ENOMEM;
        return;
    }
    op->status = replicafile_sums(op->file, 0, blocks, sums);
    for (uint32_t b = 0; b < blocks; b++)
        sums[b] = htole64(sums[b]);
    op->res.data = op->res.base;
    op->res.len = (size_t)blocks * sizeof(*sums);
}

static void done_nothing(struct op *op)
{
}

static void run_scrub(struct op *op)
{
    void *buf;

    /* Files removed or cut behind the datanode's back may still read fine
     * through descriptors opened before: look at the files themselves. */
    op->status = replicafile_check(op->file);
    if (op->status == -ENOENT || op->status == -EBADMSG) {
        op->damaged = true;
        return;
    }
    buf = malloc(op->len * KEEL_BLOCK_SIZE);
    if (!buf) {
        op->status = -ENOMEM;
        return;
    }
    op->status = replicafile_read_blocks(op->file, op->off, op->len, buf, &op->ro, 0);
    op->res.data_bytes = op->ro.data_bytes;
    free(buf);
}

static void done_scrub(struct op *op)
{
    if (op->ro.mismatch)
        set_corrupt(op->rep, op->ro.bad, "scrub");
    else if (op->damaged)
        set_corrupt(op->rep, UINT64_MAX,
                    op->status == -ENOENT ? "scrub: its files were removed"
                                          : "scrub: its data file changed size");
}

static int check_create(struct op *op)
{
    return op->rep->present ? -EEXIST : 0;
}

static void run_create(struct op *op)
{
    op->status = chunkstore_create(op->r->cs, op->rep->id, op->version, &op->file);
    op->file_changed = op->status == 0;
}

static void done_create(struct op *op)
{
    struct replica *rep = op->rep;

    if (op->status) {
        if (!rep->present)
            rep_unmap(rep);
        return;
    }
    rep->present = true;
    rep->version = op->version;
    rep->length = 0;
}

static void run_set_version(struct op *op)
{
    op->status = replicafile_set_version(op->file, op->to);
}

static void done_set_version(struct op *op)
{
    struct replica *rep = op->rep;

    if (op->status) {
        disk_failure(rep, "version change", op->status);
        return;
    }
    rep->version = op->to;
    if (op->flags & REPLICAS_REPORT)
        report(rep, false);
}

static void run_trim(struct op *op)
{
    op->status = replicafile_trim(op->file, op->length, op->to, &op->ro.mismatch);
}

static void done_trim(struct op *op)
{
    struct replica *rep = op->rep;

    if (op->status == 0) {
        rep->version = op->to;
        rep->length = replicafile_length(rep->file);
        rep->durable_below = MAX(rep->durable_below, op->seq);
        if (op->flags & REPLICAS_REPORT)
            report(rep, false);
    } else if (op->ro.mismatch) {
        set_corrupt(rep, UINT64_MAX, "trim over a bad block");
    } else if (op->status != -EINVAL) {
        disk_failure(rep, "trim", op->status);
    }
}

static int check_delete(struct op *op)
{
    struct replica *rep = op->rep;

    if (!rep->present)
        return -ENOENT;
    return rep->version > op->version ? -ESTALE : 0;
}

static void run_delete(struct op *op)
{
    if (op->file) {
        replicafile_close(op->file);
        op->file = NULL;
        op->file_changed = true;
    }
    op->status = chunkstore_remove(op->r->cs, op->rep->id);
    if (op->status == -ENOENT)
        op->status = 0; /* gone already: what was asked */
}

static void done_delete(struct op *op)
{
    struct replica *rep = op->rep;

    if (op->status) {
        log_error("replicas: deleting chunk %016" PRIx64 ": %s", rep->id, err_str(op->status));
        return;
    }
    log_info("replicas: deleted chunk %016" PRIx64 " version %" PRIu64, rep->id, rep->version);
    if (op->flags & REPLICAS_REPORT)
        report(rep, true);
    rep_unmap(rep);
}

static int check_install(struct op *op)
{
    struct replica *rep = op->rep;

    /* A corrupt replica is replaced whatever its version. */
    return rep->present && !rep->corrupt && rep->version >= op->to ? -EEXIST : 0;
}

static void run_install(struct op *op)
{
    if (op->file) {
        replicafile_close(op->file);
        op->file = NULL;
        op->file_changed = true;
    }
    op->status = chunkstore_install(op->r->cs, op->rep->id, op->session);
    if (op->status == 0) {
        op->status = chunkstore_open_replica(op->r->cs, op->rep->id, &op->file);
        op->file_changed = true;
    }
}

static void done_install(struct op *op)
{
    struct replica *rep = op->rep;

    if (op->status) {
        if (!rep->file)
            rep_unmap(rep); /* the old replica, if any, is gone too */
        return;
    }
    rep->present = true;
    rep->version = replicafile_header(rep->file)->version;
    rep->length = replicafile_length(rep->file);
    rep->corrupt = false;
    rep->error = 0;
    rep->durable_below = rep->last_write_seq + 1;
    log_info("replicas: installed chunk %016" PRIx64 " version %" PRIu64 " (%" PRIu64 " bytes)",
             rep->id, rep->version, rep->length);
    report(rep, false);
}

static void run_mark(struct op *op)
{
    op->status = replicafile_mark_corrupt(op->file);
}

static void done_mark(struct op *op)
{
    if (op->status)
        log_warn("replicas: could not persist the corrupt flag of chunk %016" PRIx64 ": %s",
                 op->rep->id, err_str(op->status));
}

static int check_take(struct op *op)
{
    struct replica *rep = op->rep;

    if (!rep->present)
        return -ENOENT;
    if (rep->corrupt)
        return -EIO;
    return rep->version >= op->to ? -EEXIST : 0;
}

static void run_take(struct op *op)
{
    op->status = replicafile_sums(op->file, 0, replicafile_header(op->file)->blocks, op->sums);
    if (op->status)
        return;
    replicafile_close(op->file);
    op->file = NULL;
    op->file_changed = true;
    op->status = chunkstore_take(op->r->cs, op->rep->id, op->session, op->data_fd, &op->taken);
}

static void done_take(struct op *op)
{
    struct replica *rep = op->rep;

    if (!op->taken)
        return; /* still the replica it was */
    if (op->status)
        log_error("replicas: taking chunk %016" PRIx64 " version %" PRIu64
                  " for a delta copy failed after it was removed: %s",
                  rep->id, rep->version, err_str(op->status));
    else
        log_info("replicas: chunk %016" PRIx64 " version %" PRIu64
                 " is now the start of a delta copy (session %016" PRIx64 ")",
                 rep->id, rep->version, op->session);
    report(rep, true);
    rep_unmap(rep);
}

static int check_settle(struct op *op)
{
    struct replica *rep = op->rep;

    rep->settle_queued = false;
    if (!rep->present || !rep->file || !rep->unsettled || rep->corrupt || rep->error)
        return SKIP;
    return 0;
}

static void run_settle(struct op *op)
{
    op->status = replicafile_settle(op->file);
}

static void done_settle(struct op *op)
{
    struct replica *rep = op->rep;

    if (op->status) {
        disk_failure(rep, "settle", op->status);
        list_del(&rep->settle); /* not retried: the flag on disk stays */
        return;
    }
    rep->durable_below = rep->last_write_seq + 1; /* settle syncs the data too */
}

static const struct op_type op_types[] = {
    [OP_READ] = {"read", CLS_READ, true, false, check_readable, run_read, try_read, done_read},
    [OP_WRITE] = {"write", CLS_WRITE, true, false, check_write, run_write, try_write, done_write},
    [OP_FLUSH] = {"flush", CLS_FLUSH, true, false, check_flush, run_flush, NULL, done_flush},
    [OP_CHECKSUMS] = {"checksums", CLS_READ, true, false, check_readable, run_checksums, NULL,
                      done_nothing},
    [OP_SCRUB] = {"scrub", CLS_READ, true, false, check_readable, run_scrub, NULL, done_scrub},
    [OP_CREATE] = {"create", CLS_ALONE, false, false, check_create, run_create, NULL, done_create},
    [OP_SET_VERSION] = {"set-version", CLS_ALONE, true, false, check_move, run_set_version, NULL,
                        done_set_version},
    [OP_TRIM] = {"trim", CLS_ALONE, true, false, check_move, run_trim, NULL, done_trim},
    [OP_DELETE] = {"delete", CLS_ALONE, false, false, check_delete, run_delete, NULL, done_delete},
    [OP_INSTALL] = {"install", CLS_ALONE, false, false, check_install, run_install, NULL,
                    done_install},
    [OP_MARK] = {"mark-corrupt", CLS_ALONE, true, false, check_present, run_mark, NULL, done_mark},
    [OP_TAKE] = {"take", CLS_ALONE, true, false, check_take, run_take, NULL, done_take},
    [OP_SETTLE] = {"settle", CLS_ALONE, true, true, check_settle, run_settle, NULL, done_settle},
};

/* Queues a settle of an unsettled replica, once. */
static void queue_settle(struct replica *rep)
{
    if (rep->settle_queued || !rep->mapped)
        return;
    rep->settle_queued = true;
    enqueue(rep, op_new(rep->r, &op_types[OP_SETTLE], NULL, NULL));
}

/* Replicas idle for SETTLE_IDLE_MS settle. */
static void on_settle_timer(uv_timer_t *t)
{
    struct replicas *r = t->data;
    uint64_t now = mono_ms();
    struct list *pos, *tmp;

    list_for_each_safe(pos, tmp, &r->unsettled)
    {
        struct replica *rep = list_entry(pos, struct replica, settle);

        if (idle_now(rep) && now - rep->last_write_ms >= SETTLE_IDLE_MS)
            queue_settle(rep);
    }
    if (list_empty(&r->unsettled))
        uv_timer_stop(t);
}

/* A checksum failed: stop serving the replica, persist the flag, tell. */
static void set_corrupt(struct replica *rep, uint64_t block, const char *what)
{
    if (rep->corrupt)
        return;
    rep->corrupt = true;
    if (block != UINT64_MAX)
        log_error("replicas: chunk %016" PRIx64 " version %" PRIu64 " is corrupt: block %" PRIu64
                  " failed its checksum (%s)",
                  rep->id, rep->version, block, what);
    else
        log_error("replicas: chunk %016" PRIx64 " version %" PRIu64 " is unusable (%s)", rep->id,
                  rep->version, what);
    report(rep, false);
    if (!rep->r->stopping)
        enqueue(rep, op_new(rep->r, &op_types[OP_MARK], NULL, NULL));
}

/* ------------------------------------------------------------ public API */

int replicas_new(uv_loop_t *loop, struct chunkstore *cs, unsigned max_open,
                 const struct replicas_hooks *hooks, struct replicas **out)
{
    struct replicas *r = xcalloc(1, sizeof(*r));

    r->loop = loop;
    r->cs = cs;
    r->max_open = max_open ? max_open : 1;
    if (hooks)
        r->hooks = *hooks;
    u64map_init(&r->table);
    list_init(&r->lru);
    list_init(&r->unsettled);
    list_init(&r->deferred);
    list_init(&r->flush_waiting);
    list_init(&r->log_waiting);
    uv_check_init(loop, &r->check);
    uv_idle_init(loop, &r->idle);
    uv_timer_init(loop, &r->settle_timer);
    r->check.data = r->idle.data = r->settle_timer.data = r;
    *out = r;
    return 0;
}

void replicas_shutdown(struct replicas *r)
{
    struct list *pos, *tmp;
    size_t i = 0;
    void *val;

    if (r->stopping)
        return;
    r->stopping = true;
    uv_timer_stop(&r->settle_timer);
    /* Unsettled replicas settle on the way out, so the next start has no
     * checksums to recompute; everything else queued is cancelled. */
    list_for_each_safe(pos, tmp, &r->unsettled)
    {
        struct replica *rep = list_entry(pos, struct replica, settle);

        if (!rep->corrupt && !rep->error)
            queue_settle(rep);
    }
    while (u64map_next(&r->table, &i, NULL, &val))
        pump(val);
    maybe_close_handles(r);
}

void replicas_free(struct replicas *r)
{
    size_t i = 0;
    void *val;

    if (!r)
        return;
    while (u64map_next(&r->table, &i, NULL, &val)) {
        struct replica *rep = val;

        close_file(rep);
        free(rep);
    }
    u64map_free(&r->table);
    free(r);
}

int replicas_load(struct replicas *r, const struct replica_info *ri)
{
    struct replica *rep;

    if (ri->chunk_id == 0)
        return -EINVAL;
    if (u64map_get(&r->table, ri->chunk_id))
        return -EEXIST;
    rep = rep_new(r, ri->chunk_id);
    rep->present = true;
    rep->version = ri->version;
    rep->length = ri->length;
    rep->corrupt = ri->corrupt;
    return 0;
}

bool replicas_get(const struct replicas *r, uint64_t chunk_id, struct replica_info *out)
{
    const struct replica *rep = u64map_get(&r->table, chunk_id);

    if (!rep || !rep->present)
        return false;
    if (out)
        rep_info(rep, out);
    return true;
}

size_t replicas_count(const struct replicas *r)
{
    size_t i = 0, n = 0;
    void *val;

    while (u64map_next(&r->table, &i, NULL, &val))
        n += ((struct replica *)val)->present;
    return n;
}

uint64_t replicas_bytes(const struct replicas *r)
{
    uint64_t bytes = 0;
    size_t i = 0;
    void *val;

    while (u64map_next(&r->table, &i, NULL, &val))
        if (((struct replica *)val)->present)
            bytes += ((struct replica *)val)->length;
    return bytes;
}

size_t replicas_busy(const struct replicas *r)
{
    return r->busy;
}

size_t replicas_snapshot(const struct replicas *r, struct replica_info **out)
{
    struct replica_info *all = xmalloc((r->table.len ? r->table.len : 1) * sizeof(*all));
    size_t i = 0, n = 0;
    void *val;

    while (u64map_next(&r->table, &i, NULL, &val))
        if (((struct replica *)val)->present)
            rep_info(val, &all[n++]);
    *out = all;
    return n;
}

size_t replicas_ids_after(const struct replicas *r, uint64_t after, uint64_t *ids, size_t max)
{
    size_t i = 0, n = 0;
    uint64_t key;
    void *val;

    /* Keeps the max smallest ids above `after`, by insertion into ids[]. */
    while (max && u64map_next(&r->table, &i, &key, &val)) {
        size_t j;

        if (key <= after || !((struct replica *)val)->present)
            continue;
        if (n == max && key >= ids[n - 1])
            continue;
        j = n < max ? n++ : n - 1;
        while (j > 0 && ids[j - 1] > key) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = key;
    }
    return n;
}

int replicas_read(struct replicas *r, uint64_t chunk_id, uint64_t version, uint64_t off, size_t len,
                  unsigned flags, replicas_cb cb, void *arg)
{
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    if (!range_ok(r, off, len))
        return -EINVAL;
    op = op_new(r, &op_types[OP_READ], cb, arg);
    op->version = version ? version : UINT64_MAX; /* 0 is never a version */
    op->off = off;
    op->len = len;
    op->flags = flags;
    csum_block_range(off, len, &op->bfirst, &op->blast);
    enqueue(rep, op);
    return 0;
}

int replicas_write(struct replicas *r, uint64_t chunk_id, uint64_t version, uint64_t off,
                   const void *data, size_t len, replicas_cb cb, void *arg)
{
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    if (len ? !range_ok(r, off, len) : off != 0) /* no bytes: see replicafile_write */
        return -EINVAL;
    op = op_new(r, &op_types[OP_WRITE], cb, arg);
    op->version = version ? version : UINT64_MAX;
    op->off = off;
    op->data = data;
    op->len = len;
    if (len)
        csum_block_range(off, len, &op->bfirst, &op->blast);
    else
        op->bfirst = op->blast = 0; /* touches no block; ordered as one */
    enqueue(rep, op);
    return 0;
}

int replicas_flush(struct replicas *r, uint64_t chunk_id, uint64_t version, replicas_cb cb,
                   void *arg)
{
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    op = op_new(r, &op_types[OP_FLUSH], cb, arg);
    op->version = version ? version : UINT64_MAX;
    enqueue(rep, op);
    return 0;
}

int replicas_checksums(struct replicas *r, uint64_t chunk_id, uint64_t version, replicas_cb cb,
                       void *arg)
{
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    op = op_new(r, &op_types[OP_CHECKSUMS], cb, arg);
    op->version = version; /* 0: any */
    op->bfirst = 0;
    op->blast = chunkstore_blocks(r->cs) - 1;
    enqueue(rep, op);
    return 0;
}

int replicas_scrub(struct replicas *r, uint64_t chunk_id, uint64_t first, size_t n, replicas_cb cb,
                   void *arg)
{
    uint32_t blocks = chunkstore_blocks(r->cs);
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    if (n == 0 || first >= blocks)
        return -EINVAL;
    op = op_new(r, &op_types[OP_SCRUB], cb, arg);
    op->off = first;
    op->len = MIN(n, (size_t)(blocks - first));
    op->bfirst = first;
    op->blast = first + op->len - 1;
    enqueue(rep, op);
    return 0;
}

int replicas_create(struct replicas *r, uint64_t chunk_id, uint64_t version, replicas_cb cb,
                    void *arg)
{
    struct op *op;

    if (r->stopping)
        return -ECANCELED;
    if (!chunkstore_blocks(r->cs))
        return -EAGAIN;
    if (chunk_id == 0 || version == 0)
        return -EINVAL;
    if (u64map_get(&r->table, chunk_id))
        return -EEXIST;
    op = op_new(r, &op_types[OP_CREATE], cb, arg);
    op->version = version;
    enqueue(rep_new(r, chunk_id), op);
    return 0;
}

int replicas_set_version(struct replicas *r, uint64_t chunk_id, uint64_t from, uint64_t to,
                         unsigned flags, replicas_cb cb, void *arg)
{
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    if (to == 0)
        return -EINVAL;
    op = op_new(r, &op_types[OP_SET_VERSION], cb, arg);
    op->version = from;
    op->to = to;
    op->flags = flags;
    enqueue(rep, op);
    return 0;
}

int replicas_trim(struct replicas *r, uint64_t chunk_id, uint64_t from, uint64_t to,
                  uint64_t length, unsigned flags, replicas_cb cb, void *arg)
{
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    if (to == 0 || length > chunk_bytes(r))
        return -EINVAL;
    op = op_new(r, &op_types[OP_TRIM], cb, arg);
    op->version = from;
    op->to = to;
    op->length = length;
    op->flags = flags;
    enqueue(rep, op);
    return 0;
}

int replicas_delete(struct replicas *r, uint64_t chunk_id, uint64_t max_version, unsigned flags,
                    replicas_cb cb, void *arg)
{
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    op = op_new(r, &op_types[OP_DELETE], cb, arg);
    op->version = max_version;
    op->flags = flags;
    enqueue(rep, op);
    return 0;
}

int replicas_install(struct replicas *r, const struct replica_info *ri, uint64_t session,
                     replicas_cb cb, void *arg)
{
    struct replica *rep;
    struct op *op;

    if (r->stopping)
        return -ECANCELED;
    if (!chunkstore_blocks(r->cs))
        return -EAGAIN;
    if (ri->chunk_id == 0 || ri->version == 0)
        return -EINVAL;
    rep = u64map_get(&r->table, ri->chunk_id);
    if (!rep)
        rep = rep_new(r, ri->chunk_id);
    op = op_new(r, &op_types[OP_INSTALL], cb, arg);
    op->to = ri->version;
    op->session = session;
    op->flags = REPLICAS_REPORT;
    enqueue(rep, op);
    return 0;
}

int replicas_take(struct replicas *r, uint64_t chunk_id, uint64_t below, uint64_t session,
                  int *data_fd, uint64_t *sums, replicas_cb cb, void *arg)
{
    struct replica *rep;
    struct op *op;
    int e = lookup(r, chunk_id, &rep);

    if (e)
        return e;
    if (!data_fd || *data_fd < 0 || !sums || below == 0 || session == 0)
        return -EINVAL;
    op = op_new(r, &op_types[OP_TAKE], cb, arg);
    op->to = below;
    op->session = session;
    op->data_fd = data_fd;
    op->sums = sums;
    enqueue(rep, op);
    return 0;
}
