/*
 * lease: see lease.h for the model and the states.
 *
 * An entry exists per inode while it is held, has waiters, or still has an
 * old holder's chunks to fence; otherwise it is freed. When fencing runs:
 *   - before the lease goes to another client (always);
 *   - at once when a holder stopped renewing (it may be a zombie);
 *   - FENCE_IDLE_LEASES lease periods after a voluntary release, if nobody
 *     wrote meanwhile, so the obligation does not wait in memory for ever;
 *     the releaser itself may come back before that without a fence (it
 *     keeps reading and writing with the versions it has);
 *   - a failed fence is retried at once for a new waiter, else after
 *     FENCE_RETRY_MS.
 * Waiter callbacks and owner callbacks may call back into the table, so an
 * entry being advanced is never freed underneath (`advancing`), and a
 * nested advance just asks the running one to go round again.
 */
#include "lease.h"

#include "log.h"
#include "u64map.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

enum lease_state { L_FREE, L_HELD, L_RECALLING, L_FENCING };

struct lease {
    uint64_t ino;
    enum lease_state state;
    uint64_t holder; /* HELD, RECALLING */
    uint64_t renewed_ms;
    bool unreachable;      /* the last recall could not reach the holder */
    bool holder_all;       /* the holder's chunks are unknown (regranted after a restart) */
    struct u64map given;   /* chunks the holder was given for writing */
    struct u64map pending; /* chunks of past holders still to fence */
    bool pending_all;      /* fence every chunk of the file */
    uint64_t prev;         /* the holder `pending` came from (0: unknown) */
    uint64_t fence_ms;     /* fence `pending` from then on, waiter or not */
    uint64_t recall_ms;    /* HELD, after a refusal: not asked again before */
    bool released;         /* `pending` came from a voluntary release only */
    struct list waiters;
    bool advancing, again;
};

struct lease_table {
    struct lease_ops ops;
    uint32_t lease_ms;
    uint64_t fence_until_ms; /* after a restart: holders before it are unknown */
    struct u64map leases;    /* ino -> struct lease */
    size_t held;
};

#define MARK               ((void *)1)
#define FENCE_RETRY_MS     2000u
#define FENCE_IDLE_LEASES  10u
/*
 * A holder that refuses a recall is asked again every RECALL_RETRY_MS for
 * RECALL_PATIENCE_MS before the waiter gets -EBUSY: one that has just
 * stopped writing (a VM migrated away a moment ago, a file closed on one
 * host whose release is still on its way) goes idle meanwhile, as libkeel
 * hands a lease over once a file has been idle for a second.
 */
#define RECALL_RETRY_MS    250u
#define RECALL_PATIENCE_MS 2000u

static void advance(struct lease_table *t, struct lease *e, uint64_t now);
static uint64_t *snapshot(const struct lease_table *t, size_t *n);

struct lease_table *lease_table_new(const struct lease_ops *ops, uint32_t lease_ms, uint64_t now_ms,
                                    bool after_restart)
{
    struct lease_table *t = xcalloc(1, sizeof(*t));

    t->ops = *ops;
    t->lease_ms = lease_ms;
    t->fence_until_ms = after_restart ? now_ms + lease_ms : 0;
    u64map_init(&t->leases);
    return t;
}

static void lease_free(struct lease *e)
{
    u64map_free(&e->given);
    u64map_free(&e->pending);
    free(e);
}

void lease_table_free(struct lease_table *t)
{
    size_t i = 0;
    void *v;

    if (!t)
        return;
    while (u64map_next(&t->leases, &i, NULL, &v)) {
        struct lease *e = v;

        if (!list_empty(&e->waiters))
            log_error("lease: table freed with waiters on inode %" PRIu64, e->ino);
        lease_free(e);
    }
    u64map_free(&t->leases);
    free(t);
}

static void set_put(struct u64map *m, uint64_t key)
{
    if (key && u64map_put(m, key, MARK) < 0) {
        log_error("lease: out of memory");
        abort();
    }
}

static struct lease *get(const struct lease_table *t, uint64_t ino)
{
    return u64map_get(&t->leases, ino);
}

static struct lease *get_or_create(struct lease_table *t, uint64_t ino, uint64_t now)
{
    struct lease *e = get(t, ino);

    if (e)
        return e;
    e = xcalloc(1, sizeof(*e));
    e->ino = ino;
    u64map_init(&e->given);
    u64map_init(&e->pending);
    list_init(&e->waiters);
    /* Right after a restart, a holder of the previous run may still write. */
    e->pending_all = now < t->fence_until_ms;
    if (u64map_put(&t->leases, ino, e) < 0) {
        log_error("lease: out of memory");
        abort();
    }
    return e;
}

static bool needs_fence(const struct lease *e)
{
    return e->pending_all || e->pending.len;
}

/* Before client may write: its own earlier chunks need no fence. */
static bool needs_fence_for(const struct lease *e, uint64_t client)
{
    return e->pending_all || (e->pending.len && client != e->prev);
}

static void maybe_free(struct lease_table *t, struct lease *e)
{
    if (e->advancing || e->state != L_FREE || !list_empty(&e->waiters) || needs_fence(e))
        return;
    u64map_del(&t->leases, e->ino);
    lease_free(e);
}

static bool holder_expired(const struct lease_table *t, const struct lease *e, uint64_t now)
{
    return now >= e->renewed_ms + t->lease_ms;
}

/*
 * The holder is gone (released, expired, handed over): its chunks must be
 * fenced before anyone else writes, and no later than fence_ms.
 */
static void lose_holder(struct lease_table *t, struct lease *e, uint64_t fence_ms)
{
    size_t i = 0;
    uint64_t k;

    if (e->pending.len && e->prev != e->holder)
        e->prev = 0; /* chunks of two holders: fence whoever comes next */
    else
        e->prev = e->holder;
    while (u64map_next(&e->given, &i, &k, NULL))
        set_put(&e->pending, k);
    u64map_free(&e->given);
    u64map_init(&e->given);
    e->pending_all |= e->holder_all;
    e->holder_all = false;
    e->holder = 0;
    e->unreachable = false;
    e->fence_ms = fence_ms;
    e->released = false;
    e->state = L_FREE;
    t->held--;
}

static void grant(struct lease_table *t, struct lease *e, uint64_t client, uint64_t now)
{
    if (!needs_fence(e) || !needs_fence_for(e, client)) {
        /* Its own chunks of before (or none): keep them as given. */
        struct u64map tmp = e->given;

        e->given = e->pending;
        e->pending = tmp;
        e->prev = 0;
    }
    e->state = L_HELD;
    e->holder = client;
    e->renewed_ms = now;
    e->unreachable = false;
    e->recall_ms = 0;
    t->held++;
}

static void start_fence(struct lease_table *t, struct lease *e)
{
    uint64_t *ids = xcalloc(e->pending.len + 1, sizeof(*ids));
    size_t i = 0, n = 0;
    uint64_t k;

    while (u64map_next(&e->pending, &i, &k, NULL))
        ids[n++] = k;
    e->state = L_FENCING;
    t->ops.fence(t->ops.ctx, e->ino, ids, n, e->pending_all);
    free(ids);
}

static struct lease_waiter *pop_waiter(struct lease *e)
{
    struct list *n = list_pop(&e->waiters);

    return n ? list_entry(n, struct lease_waiter, link) : NULL;
}

/* Serves the head of the queue as far as the state allows. */
static void advance_once(struct lease_table *t, struct lease *e, uint64_t now)
{
    while (!list_empty(&e->waiters)) {
        struct lease_waiter *w = list_entry(e->waiters.next, struct lease_waiter, link);
        int r;

        switch (e->state) {
        case L_RECALLING:
        case L_FENCING:
            return;
        case L_HELD:
            if (e->holder == w->client) {
                e->renewed_ms = now;
                pop_waiter(e);
                w->cb(w, 0);
                continue;
            }
            if (holder_expired(t, e, now)) {
                log_info("lease: client %" PRIx64 " lost inode %" PRIu64 " (not renewed)",
                         e->holder, e->ino);
                lose_holder(t, e, now);
                continue;
            }
            if (e->unreachable)
                return; /* wait for it to expire (lease_tick) */
            if (now < e->recall_ms)
                return; /* it refused a moment ago: lease_tick asks again */
            e->state = L_RECALLING;
            r = t->ops.recall(t->ops.ctx, e->holder, e->ino);
            if (r < 0) {
                e->state = L_HELD;
                e->unreachable = true;
            }
            return;
        case L_FREE:
            if (needs_fence_for(e, w->client)) {
                start_fence(t, e);
                return;
            }
            grant(t, e, w->client, now);
            pop_waiter(e);
            w->cb(w, 0);
            continue;
        }
    }
    if (e->state == L_FREE && needs_fence(e) && now >= e->fence_ms)
        start_fence(t, e);
}

static void advance(struct lease_table *t, struct lease *e, uint64_t now)
{
    if (e->advancing) {
        e->again = true;
        return;
    }
    e->advancing = true;
    do {
        e->again = false;
        advance_once(t, e, now);
    } while (e->again);
    e->advancing = false;
    maybe_free(t, e);
}

int lease_acquire(struct lease_table *t, uint64_t ino, uint64_t client, uint64_t now_ms,
                  struct lease_waiter *w)
{
    struct lease *e;

    if (client == 0 || ino == 0)
        return -EINVAL;
    e = get_or_create(t, ino, now_ms);
    if (e->state == L_HELD && e->holder != client && holder_expired(t, e, now_ms))
        lose_holder(t, e, now_ms);
    if ((e->state == L_HELD || e->state == L_RECALLING) && e->holder == client) {
        e->renewed_ms = now_ms;
        return 0;
    }
    if (e->state == L_FREE && list_empty(&e->waiters) && !needs_fence_for(e, client)) {
        grant(t, e, client, now_ms);
        return 0;
    }
    w->client = client;
    w->deadline_ms = now_ms + t->lease_ms;
    w->refused = false;
    list_add_tail(&e->waiters, &w->link);
    advance(t, e, now_ms);
    return -EINPROGRESS;
}

void lease_given(struct lease_table *t, uint64_t ino, uint64_t client, const uint64_t *chunks,
                 size_t n)
{
    struct lease *e = get(t, ino);

    if (!e || e->holder != client || (e->state != L_HELD && e->state != L_RECALLING))
        return;
    for (size_t i = 0; i < n; i++)
        set_put(&e->given, chunks[i]);
}

int lease_renew(struct lease_table *t, uint64_t client, uint64_t ino, uint64_t now_ms)
{
    struct lease *e = get(t, ino);

    if (client == 0)
        return -ENOENT;
    if (e && e->holder == client && (e->state == L_HELD || e->state == L_RECALLING)) {
        e->renewed_ms = now_ms;
        return 0;
    }
    if (now_ms < t->fence_until_ms && !e) {
        /* A holder of the previous run: give it back, chunks unknown. */
        e = get_or_create(t, ino, now_ms);
        e->pending_all = false;
        grant(t, e, client, now_ms);
        e->holder_all = true;
        log_info("lease: client %" PRIx64 " keeps inode %" PRIu64 " across the restart", client,
                 ino);
        return 0;
    }
    return -ENOENT;
}

int lease_release(struct lease_table *t, uint64_t client, uint64_t ino, uint64_t now_ms)
{
    struct lease *e = get(t, ino);

    if (!e || client == 0 || e->holder != client || (e->state != L_HELD && e->state != L_RECALLING))
        return -ENOENT;
    lose_holder(t, e, now_ms + (uint64_t)FENCE_IDLE_LEASES * t->lease_ms);
    e->released = !e->pending_all;
    advance(t, e, now_ms);
    return 0;
}

void lease_recall_done(struct lease_table *t, uint64_t ino, int status, bool released,
                       uint64_t now_ms)
{
    struct lease *e = get(t, ino);
    struct lease_waiter *w;

    if (!e || e->state != L_RECALLING)
        return; /* released or expired meanwhile */
    if (status == 0 && released) {
        log_info("lease: client %" PRIx64 " handed inode %" PRIu64 " over", e->holder, ino);
        lose_holder(t, e, now_ms);
    } else if (status == 0) {
        e->state = L_HELD;
        e->recall_ms = now_ms + RECALL_RETRY_MS;
        if (!list_empty(&e->waiters)) {
            w = list_entry(e->waiters.next, struct lease_waiter, link);
            if (!w->refused)
                w->deadline_ms = MIN(w->deadline_ms, now_ms + RECALL_PATIENCE_MS);
            w->refused = true;
            if (now_ms >= w->deadline_ms) {
                pop_waiter(e);
                w->cb(w, -EBUSY);
            }
        }
    } else {
        log_info("lease: client %" PRIx64 " holding inode %" PRIu64
                 " did not answer (%d); waiting for its lease to expire",
                 e->holder, ino, status);
        e->state = L_HELD;
        e->unreachable = true;
    }
    advance(t, e, now_ms);
}

void lease_fence_done(struct lease_table *t, uint64_t ino, int status, uint64_t now_ms)
{
    struct lease *e = get(t, ino);
    struct lease_waiter *w;

    if (!e || e->state != L_FENCING)
        return;
    e->state = L_FREE;
    if (status == 0) {
        u64map_free(&e->pending);
        u64map_init(&e->pending);
        e->pending_all = false;
        e->prev = 0;
    } else {
        log_warn("lease: fencing inode %" PRIu64 " failed (%d); will retry", ino, status);
        e->fence_ms = now_ms + FENCE_RETRY_MS;
        w = pop_waiter(e);
        if (w)
            w->cb(w, status);
    }
    advance(t, e, now_ms);
}

void lease_tick(struct lease_table *t, uint64_t now_ms)
{
    size_t n;
    uint64_t *inos = snapshot(t, &n);

    for (size_t j = 0; j < n; j++) {
        struct lease *e = get(t, inos[j]);
        struct list *pos, *tmp;

        if (!e)
            continue;
        e->advancing = true;
        if (e->state == L_HELD && holder_expired(t, e, now_ms)) {
            log_info("lease: client %" PRIx64 " lost inode %" PRIu64 " (not renewed)", e->holder,
                     e->ino);
            lose_holder(t, e, now_ms);
        }
        if (e->state == L_HELD) {
            list_for_each_safe(pos, tmp, &e->waiters)
            {
                struct lease_waiter *w = list_entry(pos, struct lease_waiter, link);

                if (now_ms >= w->deadline_ms) {
                    list_del(&w->link);
                    w->cb(w, -EBUSY);
                }
            }
        }
        e->advancing = false;
        advance(t, e, now_ms);
    }
    free(inos);
}

/* The inodes with an entry, collected first: callbacks may add or free entries. */
static uint64_t *snapshot(const struct lease_table *t, size_t *n)
{
    uint64_t *inos = xcalloc(t->leases.len + 1, sizeof(*inos));
    size_t i = 0;
    uint64_t k;

    *n = 0;
    while (u64map_next(&t->leases, &i, &k, NULL))
        inos[(*n)++] = k;
    return inos;
}

void lease_cancel_all(struct lease_table *t, int err)
{
    size_t n;
    uint64_t *inos = snapshot(t, &n);

    for (size_t j = 0; j < n; j++) {
        struct lease *e = get(t, inos[j]);
        struct lease_waiter *w;

        if (!e)
            continue;
        e->advancing = true;
        while ((w = pop_waiter(e)))
            w->cb(w, err);
        e->advancing = false;
        maybe_free(t, e);
    }
    free(inos);
}

uint64_t lease_holder(const struct lease_table *t, uint64_t ino)
{
    struct lease *e = get(t, ino);

    return e && (e->state == L_HELD || e->state == L_RECALLING) ? e->holder : 0;
}

bool lease_busy(const struct lease_table *t, uint64_t ino, uint64_t now_ms)
{
    const struct lease *e = ino ? get(t, ino) : NULL;

    if (!ino)
        return false;
    if (now_ms < t->fence_until_ms)
        return true;
    if (!e)
        return false;
    return e->state != L_FREE || !list_empty(&e->waiters) || (needs_fence(e) && !e->released);
}

size_t lease_count(const struct lease_table *t)
{
    return t->held;
}
