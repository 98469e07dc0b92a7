/*
 * sizes: file sizes grown in memory and committed lazily (ExtendReq
 * without durable), the way a local file system keeps a size in memory
 * until fsync.
 *
 * A grown size is an entry in an overlay keyed by inode. It is visible at
 * once: every reply that carries a file's size or times (Stat, Readdir,
 * GetChunks, Create, Setattr, Link, Extend) passes the inode read from
 * LMDB through sizes_apply, which shows max(committed, grown). A touch (a
 * writer's data changed, ExtendReq touch) is an entry too, with the
 * committed size and a new mtime. A timer then commits every changed
 * entry in one operation of the group commit, a few milliseconds after a
 * grow, up to a second after a touch; an entry leaves the overlay when the
 * commit that carried its latest value is durable. An entry that changed
 * again meanwhile (its sequence number moved) stays for the next commit.
 *
 * Operations that set a size or times themselves (truncate, a truncating
 * create, setattr) must not be overtaken by an older grown size: they
 * take a hold on the inode first (sizes_hold), which commits the inode's
 * entry at once, ahead of them in the commit queue, and makes further
 * grows of that inode go through the commit queue too (sizes_grow answers
 * -EAGAIN) until they release it. A size the operation replaced is then
 * dropped (sizes_release with superseded). Entries of inodes that were
 * deleted meanwhile commit as nothing and go.
 *
 * Memory: at most max_entries inodes in the overlay; past that, grows go
 * through the commit queue (-EAGAIN).
 *
 * States of an entry:
 *
 *   (none) --grow--> DIRTY --timer: submitted--> COMMITTING --committed--> (none)
 *                      ^                             |--grown again meanwhile--> DIRTY
 *                      \--------commit failed--------/
 *
 * Threads: the loop thread; the commits' apply runs on the commit worker
 * and reads only its own snapshot.
 */
#ifndef KEEL_NN_SIZES_H
#define KEEL_NN_SIZES_H

#include "commit.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sizes;

/* delay_ms: from the first grow to its commit (0: 2 ms); max_entries: 0
 * means 65536. loop, commit and store are borrowed. */
struct sizes *sizes_new(uv_loop_t *loop, struct commit *commit, struct store *store,
                        uint32_t delay_ms, size_t max_entries);

/* Shutdown: submits what is not committed yet (before commit_close) and
 * closes the timer; nothing is accepted afterwards. */
void sizes_close(struct sizes *z);

/* Frees the overlay (after the loop ran dry). NULL is allowed. */
void sizes_free(struct sizes *z);

/* The size clients see for ino whose committed size is committed. */
uint64_t sizes_visible(const struct sizes *z, uint64_t ino, uint64_t committed);

/* Puts the overlay on an inode read from LMDB: size, mtime and ctime. */
void sizes_apply(const struct sizes *z, struct store_inode *in);

/*
 * Grows regular file ino (committed size committed) to size at wall time
 * now_ns, in memory; with touch (its data changed), its mtime moves up to
 * now_ns even if it does not grow. Returns 0 and *visible (the size
 * clients see now, never less than size), or -EAGAIN when the change must
 * go through the commit queue (a hold is on ino, the overlay is full, or
 * closed).
 */
int sizes_grow(struct sizes *z, uint64_t ino, uint64_t committed, uint64_t size, int64_t now_ns,
               bool touch, uint64_t *visible);

/* Before an operation that sets ino's size or times is submitted: commits
 * ino's entry ahead of it and routes grows of ino to the commit queue. */
void sizes_hold(struct sizes *z, uint64_t ino);

/* The held operation is done; superseded: it committed a size of its own,
 * so a grown size from before the hold is void. */
void sizes_release(struct sizes *z, uint64_t ino, bool superseded);

struct sizes_stats {
    uint64_t grows;   /* answered from memory */
    uint64_t commits; /* overlay commits */
    uint64_t entries; /* in the overlay now */
};

void sizes_get_stats(const struct sizes *z, struct sizes_stats *out);

#endif
