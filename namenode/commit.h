/*
 * commit: group commit of metadata mutations into LMDB.
 *
 * Mutations are queued on the loop thread. One batch at a time runs on the
 * libuv thread pool: a single write transaction in which each operation
 * applies inside its own nested transaction (an operation that fails is
 * rolled back alone), then one commit, so one fsync covers every operation
 * of the batch. While a batch is committing, new operations queue up and
 * form the next batch: the busier the namenode, the larger the batches.
 * After the commit returns, each operation's completion runs on the loop
 * thread with its status, so nothing is acknowledged before it is durable.
 *
 * States of an operation:
 *
 *   QUEUED --batch starts--> APPLYING (worker) --commit--> DONE (loop: done())
 *
 * Threads: commit_submit and the done callbacks run on the loop thread;
 * apply runs on a worker thread and must touch only its transaction and its
 * own operation's memory (never loop-owned state).
 */
#ifndef KEEL_NN_COMMIT_H
#define KEEL_NN_COMMIT_H

#include "list.h"

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct commit;
struct commit_op;

/*
 * Worker thread: applies the operation in txn (a nested transaction of the
 * batch). Returns 0 to keep its changes or a negative errno to roll them
 * back; that value becomes the operation's status.
 */
typedef int (*commit_apply_fn)(MDB_txn *txn, struct commit_op *op);

/*
 * Loop thread: status is 0 once the operation's changes are durable, its
 * own apply error, or the batch's commit error (nothing of it is durable).
 */
typedef void (*commit_done_fn)(struct commit_op *op, int status);

/* Embedded in the caller's request; the caller owns the memory, which must
 * stay valid until done runs. */
struct commit_op {
    commit_apply_fn apply;
    commit_done_fn done;
    /* private */
    struct list link;
    int status;
};

struct commit_stats {
    uint64_t batches;   /* write transactions committed or failed */
    uint64_t ops;       /* operations completed */
    uint64_t max_batch; /* most operations in one transaction */
    uint64_t failed;    /* batches whose commit failed */
};

/* max_batch: most operations per transaction (0: 512). env is borrowed. */
int commit_new(uv_loop_t *loop, MDB_env *env, size_t max_batch, struct commit **out);

/*
 * Closes c once everything queued has completed (submissions made by
 * completions meanwhile still run); then its handle closes and c is freed
 * on the loop. NULL is allowed. The loop must keep running until then.
 */
void commit_close(struct commit *c);

/* Queues op; op->apply and op->done must be set. done always runs later,
 * never from inside commit_submit. */
void commit_submit(struct commit *c, struct commit_op *op);

/* True when nothing is queued or committing. */
int commit_idle(const struct commit *c);

void commit_get_stats(const struct commit *c, struct commit_stats *out);

#endif
