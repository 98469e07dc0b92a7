/*
 * commit: group commit; see commit.h for the model.
 *
 * At most one batch is in flight, because LMDB has one writer and a second
 * transaction would only wait for the first: operations arriving meanwhile
 * wait in `queue` and leave together when the batch completes. When nothing
 * is in flight, the first submission arms an idle handle instead of starting
 * at once, so every request read in the same loop iteration joins the batch.
 *
 * Closing: commit_close marks the module closing; it keeps draining what
 * is queued (completions may still submit) and closes its handle once idle,
 * then frees itself.
 */
#include "commit.h"

#include "errors.h"
#include "log.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#define DEFAULT_MAX_BATCH 512
#define FULL_BELOW        (1u << 20) /* free bytes under which a failed commit is ENOSPC */

struct commit {
    uv_loop_t *loop;
    MDB_env *env;
    size_t max_batch;
    struct list queue;
    struct commit_stats stats;
    /* The batch in flight (busy) */
    uv_work_t work;
    struct list batch;
    size_t batch_len;
    int batch_status; /* the write transaction's outcome */
    uint64_t batch_start_ns;
    int busy;
    uv_idle_t kick; /* starts a batch on the next loop iteration */
    int closing;
};

static void start_batch(struct commit *c);
static void maybe_close(struct commit *c);

/* LMDB reports a commit that the file system had room for only part of
 * (a short write) as EIO: tell it as the full disk it is. */
static int commit_status(MDB_env *env, int r)
{
    const char *dir;
    struct statvfs sv;

    if (r == -EIO && mdb_env_get_path(env, &dir) == 0 && statvfs(dir, &sv) == 0 &&
        (uint64_t)sv.f_bavail * sv.f_frsize < FULL_BELOW)
        return -ENOSPC;
    return r;
}

/* Worker thread: apply every op of the batch, then commit once. */
static void run_batch(uv_work_t *w)
{
    struct commit *c = w->data;
    MDB_txn *txn = NULL;
    struct list *pos, *tmp;
    int r;

    r = store_errno(mdb_txn_begin(c->env, NULL, 0, &txn));
    if (r) {
        c->batch_status = r;
        return;
    }
    list_for_each_safe(pos, tmp, &c->batch)
    {
        struct commit_op *op = list_entry(pos, struct commit_op, link);
        MDB_txn *child;

        r = store_errno(mdb_txn_begin(c->env, txn, 0, &child));
        if (r) {
            op->status = r;
            continue;
        }
        op->status = op->apply(child, op);
        if (op->status) {
            mdb_txn_abort(child);
            continue;
        }
        r = store_errno(mdb_txn_commit(child));
        if (r) {
            /* The parent may be unusable now: fail the whole batch. */
            mdb_txn_abort(txn);
            c->batch_status = r;
            return;
        }
    }
    c->batch_status = commit_status(c->env, store_errno(mdb_txn_commit(txn)));
}

/* Loop thread: report every op, then start the next batch. */
static void batch_done(uv_work_t *w, int status)
{
    struct commit *c = w->data;
    struct list done;
    struct list *n;
    int bs = status < 0 ? -ECANCELED : c->batch_status;

    if (bs) {
        c->stats.failed++;
        log_error("commit: a batch of %zu operations failed: %s", c->batch_len, err_str(bs));
    } else {
        log_debug("commit: %zu operations in %" PRIu64 " us", c->batch_len,
                  (mono_ns() - c->batch_start_ns) / 1000);
    }
    c->stats.batches++;
    c->stats.ops += c->batch_len;
    if (c->batch_len > c->stats.max_batch)
        c->stats.max_batch = c->batch_len;

    /* Take the batch first: done callbacks may submit new operations. */
    list_init(&done);
    while ((n = list_pop(&c->batch)))
        list_add_tail(&done, n);
    c->batch_len = 0;
    c->busy = 0;
    start_batch(c);
    while ((n = list_pop(&done))) {
        struct commit_op *op = list_entry(n, struct commit_op, link);
        int st = bs ? (op->status ? op->status : bs) : op->status;

        op->done(op, st);
    }
    maybe_close(c);
}

static void start_batch(struct commit *c)
{
    int r;

    if (c->busy || list_empty(&c->queue))
        return;
    while (c->batch_len < c->max_batch && !list_empty(&c->queue)) {
        struct list *n = list_pop(&c->queue);

        list_add_tail(&c->batch, n);
        c->batch_len++;
    }
    c->batch_status = 0;
    c->batch_start_ns = mono_ns();
    c->busy = 1;
    r = uv_queue_work(c->loop, &c->work, run_batch, batch_done);
    if (r < 0) {
        /* Only on invalid arguments; report it as a failed batch. */
        log_error("commit: cannot queue work: %s", uv_strerror(r));
        c->batch_status = -EIO;
        batch_done(&c->work, 0);
    }
}

static void on_kick(uv_idle_t *h)
{
    struct commit *c = h->data;

    uv_idle_stop(h);
    start_batch(c);
}

static void free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void maybe_close(struct commit *c)
{
    if (c->closing == 1 && commit_idle(c)) {
        c->closing = 2;
        uv_close((uv_handle_t *)&c->kick, free_cb);
    }
}

int commit_new(uv_loop_t *loop, MDB_env *env, size_t max_batch, struct commit **out)
{
    struct commit *c = xcalloc(1, sizeof(*c));
    int r = uv_idle_init(loop, &c->kick);

    if (r < 0) {
        free(c);
        return r;
    }
    c->loop = loop;
    c->env = env;
    c->max_batch = max_batch ? max_batch : DEFAULT_MAX_BATCH;
    c->work.data = c;
    c->kick.data = c;
    list_init(&c->queue);
    list_init(&c->batch);
    *out = c;
    return 0;
}

void commit_close(struct commit *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    maybe_close(c);
}

void commit_submit(struct commit *c, struct commit_op *op)
{
    op->status = 0;
    list_add_tail(&c->queue, &op->link);
    if (!c->busy)
        uv_idle_start(&c->kick, on_kick);
}

int commit_idle(const struct commit *c)
{
    return !c->busy && list_empty(&c->queue);
}

void commit_get_stats(const struct commit *c, struct commit_stats *out)
{
    *out = c->stats;
}
