/*
 * lease: write leases (DESIGN.md promise 5). One writer per file: the lease
 * on an inode belongs to one client (all opens of a keel_client share it).
 * It is taken at the first write, renewed by the client, handed over when
 * another client asks and the holder agrees (asked again for a while if it
 * refuses), refused with -EBUSY while the holder keeps writing, and lost by
 * a holder that stops renewing.
 *
 * Fencing: the table remembers which chunks each holder was given for
 * writing. Before another client is granted the lease, those chunks get a
 * new version at the datanodes (ops->fence), so a late write of the old
 * holder is rejected. A holder that stopped renewing is fenced at once; a
 * released lease at the next handover, or after ten lease periods if
 * nobody wrote meanwhile (the releaser may take it back without a fence,
 * keeping its versions). Leases live in memory only; after a restart
 * (`after_restart`) the holders of the previous run are unknown, so for one
 * lease period a new writer first has every chunk of the file fenced, and a
 * holder that renews in that period gets its lease back with a note that
 * its chunks are unknown (all are fenced at its next handover).
 *
 * States of a lease (per inode):
 *
 *   FREE --acquire, nothing to fence--> HELD
 *   FREE --acquire, another holder's chunks to fence--> FENCING
 *   HELD --another client acquires--> RECALLING --released--> FENCING
 *                                              \--refused--> HELD, asked
 *                                                 again for 2 s, then -EBUSY
 *                                              \--unreachable--> HELD, wait
 *   HELD --not renewed for lease_ms--> FENCING
 *   HELD --released--> FREE (chunks to fence, see above)
 *   FENCING --done--> FREE (the first waiter, if any, gets the lease)
 *   FENCING --failed--> FREE, fence retried (at once for a new waiter)
 *
 * A request that cannot be granted at once waits in the inode's queue (no
 * thread blocks) for at most lease_ms, then fails with -EBUSY.
 *
 * Pure logic: time comes in as arguments, the recall and fence actions go
 * out through ops, so every path is testable without a network. Threads:
 * the loop thread only.
 */
#ifndef KEEL_NN_LEASE_H
#define KEEL_NN_LEASE_H

#include "list.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lease_table;

/*
 * What the table asks of its owner. The answers come through
 * lease_recall_done / lease_fence_done, later or from inside the call (a
 * fence with nothing to do); the table copes with either.
 */
struct lease_ops {
    /* Ask the holder to give ino up. Returns 0 when the request went out,
     * or a negative errno when the holder cannot be asked at all (no
     * connection): the table then waits for the lease to expire. */
    int (*recall)(void *ctx, uint64_t holder, uint64_t ino);
    /* Move the chunks (or, with all, every chunk of ino) to a new version
     * at the datanodes. chunks is borrowed for the call only. */
    void (*fence)(void *ctx, uint64_t ino, const uint64_t *chunks, size_t n, bool all);
    void *ctx;
};

/* A request waiting for a lease; embedded in the caller's request, which
 * owns it. cb runs exactly once, after the waiter left the table. */
struct lease_waiter {
    uint64_t client;
    void (*cb)(struct lease_waiter *w, int status);
    /* private */
    struct list link;
    uint64_t deadline_ms;
    bool refused; /* the holder has refused it once */
};

/* ops is copied. lease_ms: the renewal period (a holder silent this long
 * loses the lease). */
struct lease_table *lease_table_new(const struct lease_ops *ops, uint32_t lease_ms, uint64_t now_ms,
                                    bool after_restart);

/* Frees the table. No waiter may be queued (see lease_cancel_all). */
void lease_table_free(struct lease_table *t);

/*
 * The write lease on ino for client. Returns 0 when client holds it now
 * (it is renewed), or -EINPROGRESS when w was queued: w->cb then runs once
 * (possibly before lease_acquire returns, when a fence completes at once;
 * so queueing must be the caller's last step) with 0 (granted), -EBUSY (the holder is writing, or
 * did not let go in time), a fencing error, or the error given to lease_cancel_all. w->client is
 * set here. client must not be 0 (-EINVAL).
 */
int lease_acquire(struct lease_table *t, uint64_t ino, uint64_t client, uint64_t now_ms,
                  struct lease_waiter *w);

/* Records chunks handed to client for writing ino (ignored unless it holds
 * the lease). */
void lease_given(struct lease_table *t, uint64_t ino, uint64_t client, const uint64_t *chunks,
                 size_t n);

/* Renews client's lease on ino: 0, or -ENOENT if it does not hold it (lost). */
int lease_renew(struct lease_table *t, uint64_t client, uint64_t ino, uint64_t now_ms);

/* Gives the lease up: 0, or -ENOENT if client does not hold it. */
int lease_release(struct lease_table *t, uint64_t client, uint64_t ino, uint64_t now_ms);

/* The holder's answer to ops->recall: status 0 and released, or the call's
 * error (the holder is then treated as unreachable). */
void lease_recall_done(struct lease_table *t, uint64_t ino, int status, bool released,
                       uint64_t now_ms);

/* The outcome of ops->fence (0 or a negative errno). */
void lease_fence_done(struct lease_table *t, uint64_t ino, int status, uint64_t now_ms);

/* Expires holders that stopped renewing and waiters that waited too long.
 * Call it a few times per lease period. */
void lease_tick(struct lease_table *t, uint64_t now_ms);

/* Fails every queued waiter with err (shutdown). */
void lease_cancel_all(struct lease_table *t, int err);

/* The client holding ino's lease, or 0. */
uint64_t lease_holder(const struct lease_table *t, uint64_t ino);

/*
 * True when some client may still write ino with locations it was given:
 * the lease is held, being recalled or fenced, waited for, or a lost
 * holder's chunks are not fenced yet, or, right after a restart, a holder
 * of the previous run may still write. A chunk of such a file must get a
 * new version before it is copied, so that no write lands on the source
 * after the copy read it. A client that released the lease gave up its
 * write locations with it: it asks for them again before writing.
 */
bool lease_busy(const struct lease_table *t, uint64_t ino, uint64_t now_ms);

/* Leases held. */
size_t lease_count(const struct lease_table *t);

#endif
