/*
 * sizes: see sizes.h for the model.
 *
 * A commit carries a snapshot (inode, size, mtime, sequence) of the dirty
 * entries taken on the loop when it is submitted, so the worker reads only
 * the operation's own memory. The timer's commits go one at a time; a
 * hold's commit of one inode goes at once, whatever else is in flight, so
 * that it is queued ahead of the operation that takes the hold.
 */
#include "sizes.h"

#include "errors.h"
#include "log.h"
#include "nstree.h"
#include "u64map.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DELAY_MS    2u
#define DEFAULT_MAX_ENTRIES 65536u
#define RETRY_MS            200u /* after a failed commit */
/* A touch alone (mtime, no size) waits longer: a writer that flushes
 * often touches often, and each commit is a sync of the metadata disk. */
#define TOUCH_DELAY_MS 1000u

struct entry {
    uint64_t size;
    int64_t mtime;
    uint64_t seq; /* moves on every grow or touch */
    bool dirty;   /* not in any commit since it last changed */
    bool grew;    /* ... and grew since (not only touched) */
};

struct item {
    uint64_t ino, size, seq;
    int64_t mtime;
};

struct flush {
    struct commit_op op;
    struct sizes *z;
    struct store *store;
    bool timed; /* the timer's commit (one at a time) */
    size_t n;
    struct item items[];
};

struct sizes {
    uv_loop_t *loop;
    struct commit *commit;
    struct store *store;
    uint32_t delay_ms;
    size_t max_entries;
    struct u64map entries; /* ino -> struct entry */
    struct u64map holds;   /* ino -> hold count (as a pointer-sized integer) */
    uv_timer_t *timer;     /* its own allocation, freed by its close callback */
    bool timed_inflight, closed;
    uint64_t seq;
    size_t ndirty;
    size_t ngrew; /* dirty entries that grew: commit soon, not a second on */
    struct sizes_stats stats;
    size_t inflight; /* commits submitted, not done */
};

static void must(int r)
{
    if (r < 0) {
        log_error("sizes: out of memory");
        abort();
    }
}

static void on_timer(uv_timer_t *t);

/* How soon the dirty entries should commit. */
static uint32_t delay(const struct sizes *z)
{
    return z->ngrew ? z->delay_ms : TOUCH_DELAY_MS;
}

/* Commits within ms, or sooner if already due sooner. */
static void arm(struct sizes *z, uint32_t ms)
{
    if (z->closed || !z->timer || z->timed_inflight || z->ndirty == 0)
        return;
    if (uv_is_active((uv_handle_t *)z->timer) && uv_timer_get_due_in(z->timer) <= ms)
        return;
    uv_timer_start(z->timer, on_timer, ms, 0);
}

/* Worker thread: each inode grows to its size; one deleted meanwhile (or
 * replaced by a non-file, which never happens with unique numbers) is
 * skipped, any other failure rolls the whole commit back. */
static int flush_apply(MDB_txn *txn, struct commit_op *op)
{
    struct flush *f = list_entry(op, struct flush, op);

    for (size_t i = 0; i < f->n; i++) {
        uint64_t out;
        int r = nstree_extend(f->store, txn, f->items[i].ino, f->items[i].size, f->items[i].mtime,
                              true, &out);

        if (r == -ENOENT || r == -EISDIR || r == -EINVAL)
            continue;
        if (r)
            return r;
    }
    return 0;
}

static void flush_done(struct commit_op *op, int status)
{
    struct flush *f = list_entry(op, struct flush, op);
    struct sizes *z = f->z;

    z->inflight--;
    if (f->timed)
        z->timed_inflight = false;
    if (status == 0)
        z->stats.commits++;
    else
        log_error("sizes: committing %zu file sizes failed: %s; will retry", f->n, err_str(status));
    for (size_t i = 0; i < f->n; i++) {
        struct entry *e = u64map_get(&z->entries, f->items[i].ino);

        if (!e || e->seq != f->items[i].seq)
            continue; /* gone, or grown again: a later commit carries it */
        if (status == 0) {
            free(u64map_del(&z->entries, f->items[i].ino));
        } else if (!e->dirty) {
            e->dirty = true;
            z->ndirty++;
        }
    }
    arm(z, status ? RETRY_MS : delay(z));
    free(f);
}

static struct flush *flush_new(struct sizes *z, size_t n, bool timed)
{
    struct flush *f = xcalloc(1, sizeof(*f) + (n ? n : 1) * sizeof(struct item));

    f->z = z;
    f->store = z->store;
    f->timed = timed;
    f->op.apply = flush_apply;
    f->op.done = flush_done;
    return f;
}

static void take(struct sizes *z, struct flush *f, uint64_t ino, struct entry *e)
{
    f->items[f->n++] = (struct item){ino, e->size, e->seq, e->mtime};
    if (e->dirty) {
        e->dirty = false;
        z->ndirty--;
    }
    if (e->grew) {
        e->grew = false;
        z->ngrew--;
    }
}

static void submit(struct sizes *z, struct flush *f)
{
    z->inflight++;
    if (f->timed)
        z->timed_inflight = true;
    commit_submit(z->commit, &f->op);
}

static uintptr_t hold_count(const struct sizes *z, uint64_t ino)
{
    return (uintptr_t)u64map_get(&z->holds, ino);
}

/* Submits every dirty entry in one commit (timed: the timer's one), except
 * those of held inodes: their holder's operation is queued already and an
 * older size must not land after it. */
static void flush_dirty(struct sizes *z, bool timed)
{
    struct flush *f;
    size_t i = 0, cap = z->ndirty;
    uint64_t ino;
    void *v;

    if (cap == 0 || (timed && z->timed_inflight))
        return;
    f = flush_new(z, cap, timed);
    while (f->n < cap && u64map_next(&z->entries, &i, &ino, &v)) {
        struct entry *e = v;

        if (e->dirty && !hold_count(z, ino))
            take(z, f, ino, e);
    }
    if (f->n == 0) {
        free(f);
        return;
    }
    submit(z, f);
}

static void on_timer(uv_timer_t *t)
{
    flush_dirty(t->data, true);
}

struct sizes *sizes_new(uv_loop_t *loop, struct commit *commit, struct store *store,
                        uint32_t delay_ms, size_t max_entries)
{
    struct sizes *z = xcalloc(1, sizeof(*z));

    z->loop = loop;
    z->commit = commit;
    z->store = store;
    z->delay_ms = delay_ms ? delay_ms : DEFAULT_DELAY_MS;
    z->max_entries = max_entries ? max_entries : DEFAULT_MAX_ENTRIES;
    u64map_init(&z->entries);
    u64map_init(&z->holds);
    z->timer = xcalloc(1, sizeof(*z->timer));
    if (uv_timer_init(loop, z->timer) < 0) {
        /* Only on bad arguments: every grow then goes through commits. */
        log_error("sizes: cannot create a timer; sizes are committed at once");
        free(z->timer);
        z->timer = NULL;
        z->closed = true;
    } else {
        z->timer->data = z;
    }
    return z;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

void sizes_close(struct sizes *z)
{
    if (!z || !z->timer)
        return;
    uv_timer_stop(z->timer);
    uv_close((uv_handle_t *)z->timer, free_handle);
    z->timer = NULL;
    z->closed = true;
    /* Queued behind any commit in flight; no timer waits for it. */
    flush_dirty(z, false);
}

void sizes_free(struct sizes *z)
{
    size_t i = 0;
    void *v;

    if (!z)
        return;
    if (z->timer) {
        /* Never closed (a failed start): nothing to commit, only the handle. */
        uv_close((uv_handle_t *)z->timer, free_handle);
        z->timer = NULL;
    }
    if (z->inflight)
        log_error("sizes: freed with %zu commits in flight", z->inflight);
    if (z->entries.len)
        log_warn("sizes: %zu file sizes were not committed", z->entries.len);
    while (u64map_next(&z->entries, &i, NULL, &v))
        free(v);
    u64map_free(&z->entries);
    u64map_free(&z->holds);
    free(z);
}

uint64_t sizes_visible(const struct sizes *z, uint64_t ino, uint64_t committed)
{
    const struct entry *e = ino ? u64map_get(&z->entries, ino) : NULL;

    return e && e->size > committed ? e->size : committed;
}

void sizes_apply(const struct sizes *z, struct store_inode *in)
{
    const struct entry *e = in->ino ? u64map_get(&z->entries, in->ino) : NULL;

    if (!e)
        return;
    if (e->size > in->size)
        in->size = e->size;
    if (e->mtime > in->mtime)
        in->mtime = e->mtime;
    if (e->mtime > in->ctime)
        in->ctime = e->mtime;
}

int sizes_grow(struct sizes *z, uint64_t ino, uint64_t committed, uint64_t size, int64_t now_ns,
               bool touch, uint64_t *visible)
{
    struct entry *e;
    uint64_t cur;

    if (z->closed || ino == 0 || hold_count(z, ino))
        return -EAGAIN;
    e = u64map_get(&z->entries, ino);
    cur = sizes_visible(z, ino, committed);
    if (size <= cur && !touch) {
        *visible = cur;
        return 0;
    }
    if (!e) {
        if (z->entries.len >= z->max_entries)
            return -EAGAIN;
        e = xcalloc(1, sizeof(*e));
        must(u64map_put(&z->entries, ino, e));
    }
    e->size = MAX(size, cur);
    e->mtime = MAX(e->mtime, now_ns);
    e->seq = ++z->seq;
    if (!e->dirty) {
        e->dirty = true;
        z->ndirty++;
    }
    if (size > cur && !e->grew) {
        e->grew = true;
        z->ngrew++;
    }
    z->stats.grows++;
    arm(z, delay(z));
    *visible = e->size;
    return 0;
}

void sizes_hold(struct sizes *z, uint64_t ino)
{
    struct entry *e = ino ? u64map_get(&z->entries, ino) : NULL;

    if (ino == 0)
        return;
    must(u64map_put(&z->holds, ino, (void *)(hold_count(z, ino) + 1)));
    if (e && e->dirty) {
        struct flush *f = flush_new(z, 1, false);

        take(z, f, ino, e);
        submit(z, f);
    }
}

void sizes_release(struct sizes *z, uint64_t ino, bool superseded)
{
    uintptr_t n = ino ? hold_count(z, ino) : 0;

    if (n == 0)
        return;
    if (n == 1)
        u64map_del(&z->holds, ino);
    else
        must(u64map_put(&z->holds, ino, (void *)(n - 1)));
    if (superseded) {
        struct entry *e = u64map_del(&z->entries, ino);

        if (e && e->dirty)
            z->ndirty--;
        if (e && e->grew)
            z->ngrew--;
        free(e);
    }
}

void sizes_get_stats(const struct sizes *z, struct sizes_stats *out)
{
    *out = z->stats;
    out->entries = z->entries.len;
}
