/*
 * replq: see replq.h for the states.
 *
 * Each class is a skip list ordered by age (`since`, then the order in
 * which entries were first queued, `seq`), so an entry that changes class
 * or wakes from the postponed list finds its place in O(log n) however
 * many entries share its age: re-replication after a datanode's death
 * moves hundreds of thousands of entries between classes, and a sorted
 * list walked from either end made that quadratic. Lane 0 links every
 * entry of a class in order (iteration and removal use it); an entry also
 * sits in lanes 1..level-1, each holding about a quarter of the entries
 * of the lane below. New entries are usually the youngest and go to the
 * tail of each lane in O(levels). Entries are found by chunk id through a
 * hash map; running entries also sit in a second map so that timeouts and
 * node deaths look only at what runs. Per-node stream counts live in a map
 * of their own, freed when a node's counts return to zero.
 */
#include "replq.h"

#include "list.h"
#include "log.h"
#include "u64map.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RQ_LEVELS 16u /* lanes of a class: enough for 4^16 entries */

enum rq_state { RQ_IDLE, RQ_QUEUED, RQ_POSTPONED, RQ_RUNNING };

struct rq_entry {
    uint64_t chunk;
    enum rq_state state;
    uint32_t cls;
    uint64_t since;    /* first queued */
    uint64_t seq;      /* order of first queueing, among equal ages */
    uint64_t until_ms; /* POSTPONED */
    uint32_t failures;
    uint64_t avoid[REPLQ_MAX_AVOID];
    size_t navoid;
    struct replq_copy copies[REPLQ_MAX_COPIES];
    size_t ncopies;
    uint32_t level; /* lanes it has, 1..RQ_LEVELS */
    /* links[0]: in its class's lane 0, or in the postponed list;
     * links[1..level): in the upper lanes of its class (QUEUED only). */
    struct list links[];
};

/* A class: the heads of its lanes. */
struct rq_class {
    struct list lanes[RQ_LEVELS];
};

struct rq_node {
    uint32_t out, in;
};

struct replq {
    uint32_t nclasses, streams;
    struct rq_class *classes; /* nclasses skip lists of QUEUED entries */
    struct list postponed;    /* POSTPONED entries */
    struct u64map entries;    /* chunk id -> struct rq_entry */
    struct u64map running;    /* chunk id -> struct rq_entry (RUNNING) */
    struct u64map nodes;      /* node id -> struct rq_node */
    size_t nqueued, ncopies;
    uint64_t next_seq;
    uint64_t rng; /* lane levels */
};

static void must(int r)
{
    if (r < 0) {
        log_error("replq: out of memory");
        abort();
    }
}

struct replq *replq_new(uint32_t nclasses, uint32_t streams)
{
    struct replq *q = xcalloc(1, sizeof(*q));

    q->nclasses = nclasses ? nclasses : 1;
    q->streams = streams ? streams : 1;
    q->classes = xcalloc(q->nclasses, sizeof(*q->classes));
    for (uint32_t i = 0; i < q->nclasses; i++)
        for (uint32_t l = 0; l < RQ_LEVELS; l++)
            list_init(&q->classes[i].lanes[l]);
    q->rng = 0x9E3779B97F4A7C15ull;
    list_init(&q->postponed);
    u64map_init(&q->entries);
    u64map_init(&q->running);
    u64map_init(&q->nodes);
    return q;
}

void replq_free(struct replq *q)
{
    size_t i = 0;
    void *v;

    if (!q)
        return;
    while (u64map_next(&q->entries, &i, NULL, &v))
        free(v);
    i = 0;
    while (u64map_next(&q->nodes, &i, NULL, &v))
        free(v);
    u64map_free(&q->entries);
    u64map_free(&q->running);
    u64map_free(&q->nodes);
    free(q->classes);
    free(q);
}

static struct rq_entry *entry_of(struct list *l)
{
    return list_entry(l, struct rq_entry, links);
}

/* The entry whose link in lane lvl is l. */
static struct rq_entry *lane_entry(struct list *l, uint32_t lvl)
{
    return (struct rq_entry *)((char *)(l - lvl) - offsetof(struct rq_entry, links));
}

static bool older(const struct rq_entry *a, const struct rq_entry *b)
{
    return a->since < b->since || (a->since == b->since && a->seq < b->seq);
}

/* 1, 2, ... with probability 3/4, 3/16, ... */
static uint32_t random_level(struct replq *q)
{
    uint32_t level = 1;
    uint64_t x;

    q->rng ^= q->rng << 13;
    q->rng ^= q->rng >> 7;
    q->rng ^= q->rng << 17;
    for (x = q->rng; level < RQ_LEVELS && (x & 3) == 0; x >>= 2)
        level++;
    return level;
}

/* Puts e in its place by age in class k (e is in no lane). Lane 0 alone
 * decides the order: the upper lanes only let the walk start later, at an
 * entry known to be older than e, so they must never hold an entry that
 * has left lane 0 (unlink_lanes takes an entry out of all its lanes). */
static void insert_by_age(struct rq_class *k, struct rq_entry *e)
{
    struct rq_entry *at = NULL; /* the last entry older than e; NULL: the heads */
    struct list *h0 = &k->lanes[0];

    if (list_empty(h0) || older(entry_of(h0->prev), e)) {
        /* The youngest: the tail of every lane. */
        for (uint32_t l = 0; l < e->level; l++)
            list_add_tail(&k->lanes[l], &e->links[l]);
        return;
    }
    for (uint32_t l = RQ_LEVELS; l-- > 0;) {
        struct list *h = &k->lanes[l], *x = at ? &at->links[l] : h;

        while (x->next != h && older(lane_entry(x->next, l), e))
            x = x->next;
        at = x == h ? NULL : lane_entry(x, l);
        if (l < e->level)
            list_add_tail(x->next, &e->links[l]); /* right after x */
    }
}

/* Takes e out of every lane of its class (or out of the postponed list). */
static void unlink_lanes(struct rq_entry *e)
{
    for (uint32_t l = 0; l < e->level; l++)
        list_del(&e->links[l]);
}

/* Takes e out of whatever list it is in. */
static void unlink_entry(struct replq *q, struct rq_entry *e)
{
    if (e->state == RQ_QUEUED || e->state == RQ_POSTPONED) {
        unlink_lanes(e);
        q->nqueued--;
    }
}

static struct rq_node *node_counts(struct replq *q, uint64_t node, bool create)
{
    struct rq_node *n = u64map_get(&q->nodes, node);

    if (!n && create) {
        n = xcalloc(1, sizeof(*n));
        must(u64map_put(&q->nodes, node, n));
    }
    return n;
}

static void node_release(struct replq *q, uint64_t node, bool out)
{
    struct rq_node *n = node_counts(q, node, false);

    if (!n)
        return;
    if (out && n->out)
        n->out--;
    else if (!out && n->in)
        n->in--;
    if (n->out == 0 && n->in == 0)
        free(u64map_del(&q->nodes, node));
}

void replq_push(struct replq *q, uint64_t chunk, uint32_t cls, uint64_t now_ms)
{
    struct rq_entry *e = u64map_get(&q->entries, chunk);

    if (chunk == 0)
        return;
    if (cls >= q->nclasses)
        cls = q->nclasses - 1;
    if (!e) {
        uint32_t level = random_level(q);

        e = xcalloc(1, sizeof(*e) + level * sizeof(e->links[0]));
        e->chunk = chunk;
        e->since = now_ms;
        e->seq = q->next_seq++;
        e->level = level;
        for (uint32_t l = 0; l < level; l++)
            list_init(&e->links[l]);
        must(u64map_put(&q->entries, chunk, e));
    }
    if (e->state == RQ_RUNNING)
        return;
    if (e->state == RQ_QUEUED && e->cls == cls)
        return;
    unlink_entry(q, e);
    e->cls = cls;
    e->state = RQ_QUEUED;
    insert_by_age(&q->classes[cls], e);
    q->nqueued++;
}

static void release_copies(struct replq *q, struct rq_entry *e)
{
    for (size_t i = 0; i < e->ncopies; i++) {
        node_release(q, e->copies[i].src, true);
        node_release(q, e->copies[i].tgt, false);
    }
    q->ncopies -= e->ncopies;
    e->ncopies = 0;
}

void replq_remove(struct replq *q, uint64_t chunk)
{
    struct rq_entry *e = chunk ? u64map_del(&q->entries, chunk) : NULL;

    if (!e)
        return;
    unlink_entry(q, e);
    if (e->state == RQ_RUNNING) {
        release_copies(q, e);
        u64map_del(&q->running, chunk);
    }
    free(e);
}

void replq_postpone(struct replq *q, uint64_t chunk, uint64_t until_ms)
{
    struct rq_entry *e = chunk ? u64map_get(&q->entries, chunk) : NULL;

    if (!e || e->state != RQ_QUEUED)
        return;
    unlink_lanes(e);
    e->state = RQ_POSTPONED;
    e->until_ms = until_ms;
    list_add_tail(&q->postponed, &e->links[0]);
}

size_t replq_wake(struct replq *q, uint64_t now_ms, bool all)
{
    struct list *pos, *tmp;
    size_t n = 0;

    list_for_each_safe(pos, tmp, &q->postponed)
    {
        struct rq_entry *e = entry_of(pos);

        if (!all && e->until_ms > now_ms)
            continue;
        list_del(&e->links[0]);
        e->state = RQ_QUEUED;
        insert_by_age(&q->classes[e->cls], e);
        n++;
    }
    return n;
}

bool replq_iter_next(struct replq *q, struct replq_iter *it, uint64_t *chunk, uint32_t *cls)
{
    struct list *pos;

    if (!it->begun) {
        it->begun = true;
        it->cls = 0;
        it->next = q->classes[0].lanes[0].next;
    }
    while (it->cls < q->nclasses) {
        pos = it->next;
        if (pos != &q->classes[it->cls].lanes[0]) {
            struct rq_entry *e = entry_of(pos);

            it->next = pos->next;
            *chunk = e->chunk;
            *cls = e->cls;
            return true;
        }
        if (++it->cls < q->nclasses)
            it->next = q->classes[it->cls].lanes[0].next;
    }
    return false;
}

int replq_start(struct replq *q, uint64_t chunk, const struct replq_copy *copies, size_t n)
{
    struct rq_entry *e = chunk ? u64map_get(&q->entries, chunk) : NULL;

    if (!e)
        return -ENOENT;
    if (e->state == RQ_RUNNING)
        return -EALREADY;
    if (n == 0 || n > REPLQ_MAX_COPIES)
        return -EINVAL;
    /* Check every limit first, counting copies of this start together. */
    for (size_t i = 0; i < n; i++) {
        struct rq_node *s = node_counts(q, copies[i].src, false);
        struct rq_node *t = node_counts(q, copies[i].tgt, false);
        uint32_t out = s ? s->out : 0, in = t ? t->in : 0;

        if (copies[i].src == copies[i].tgt || copies[i].src == 0 || copies[i].tgt == 0)
            return -EINVAL;
        for (size_t k = 0; k < i; k++) {
            out += copies[k].src == copies[i].src;
            in += copies[k].tgt == copies[i].tgt;
            if (copies[k].tgt == copies[i].tgt)
                return -EINVAL; /* one copy per target */
        }
        if (out >= q->streams || in >= q->streams)
            return -EBUSY;
    }
    unlink_entry(q, e);
    e->state = RQ_RUNNING;
    memcpy(e->copies, copies, n * sizeof(*copies));
    e->ncopies = n;
    for (size_t i = 0; i < n; i++) {
        node_counts(q, copies[i].src, true)->out++;
        node_counts(q, copies[i].tgt, true)->in++;
    }
    q->ncopies += n;
    must(u64map_put(&q->running, chunk, e));
    return 0;
}

bool replq_is_running(const struct replq *q, uint64_t chunk)
{
    return chunk && u64map_get(&q->running, chunk) != NULL;
}

bool replq_is_queued(const struct replq *q, uint64_t chunk)
{
    struct rq_entry *e = chunk ? u64map_get(&q->entries, chunk) : NULL;

    return e && (e->state == RQ_QUEUED || e->state == RQ_POSTPONED);
}

struct replq_copy *replq_find(struct replq *q, uint64_t chunk, uint64_t src, uint64_t tgt)
{
    struct rq_entry *e = chunk ? u64map_get(&q->running, chunk) : NULL;

    for (size_t i = 0; e && i < e->ncopies; i++)
        if (e->copies[i].src == src && e->copies[i].tgt == tgt)
            return &e->copies[i];
    return NULL;
}

size_t replq_copies(const struct replq *q, uint64_t chunk, struct replq_copy *out)
{
    struct rq_entry *e = chunk ? u64map_get(&q->running, chunk) : NULL;

    if (!e)
        return 0;
    memcpy(out, e->copies, e->ncopies * sizeof(*out));
    return e->ncopies;
}

static void avoid(struct rq_entry *e, uint64_t node)
{
    for (size_t i = 0; i < e->navoid; i++)
        if (e->avoid[i] == node)
            return;
    if (e->navoid == REPLQ_MAX_AVOID) {
        /* Forget the oldest: a node that failed long ago may be fine now. */
        memmove(e->avoid, e->avoid + 1, (REPLQ_MAX_AVOID - 1) * sizeof(*e->avoid));
        e->navoid--;
    }
    e->avoid[e->navoid++] = node;
}

bool replq_end(struct replq *q, uint64_t chunk, uint64_t src, uint64_t tgt,
               enum replq_outcome outcome)
{
    struct rq_entry *e = chunk ? u64map_get(&q->running, chunk) : NULL;
    size_t i;

    if (!e)
        return false;
    for (i = 0; i < e->ncopies; i++)
        if (e->copies[i].src == src && e->copies[i].tgt == tgt)
            break;
    if (i == e->ncopies)
        return false;
    node_release(q, src, true);
    node_release(q, tgt, false);
    e->copies[i] = e->copies[--e->ncopies];
    q->ncopies--;
    if (outcome == REPLQ_TARGET_FAILED || outcome == REPLQ_BOTH_FAILED)
        avoid(e, tgt);
    if (outcome == REPLQ_SOURCE_FAILED || outcome == REPLQ_BOTH_FAILED)
        avoid(e, src);
    if (outcome == REPLQ_DONE)
        e->failures = 0;
    else if (outcome != REPLQ_CANCELLED)
        e->failures++;
    if (e->ncopies)
        return false;
    e->state = RQ_IDLE;
    u64map_del(&q->running, chunk);
    return true;
}

size_t replq_avoid(const struct replq *q, uint64_t chunk, uint64_t *out)
{
    struct rq_entry *e = chunk ? u64map_get(&q->entries, chunk) : NULL;

    if (!e)
        return 0;
    memcpy(out, e->avoid, e->navoid * sizeof(*out));
    return e->navoid;
}

uint32_t replq_failures(const struct replq *q, uint64_t chunk)
{
    struct rq_entry *e = chunk ? u64map_get(&q->entries, chunk) : NULL;

    return e ? e->failures : 0;
}

uint32_t replq_out(const struct replq *q, uint64_t node)
{
    struct rq_node *n = node ? u64map_get(&q->nodes, node) : NULL;

    return n ? n->out : 0;
}

uint32_t replq_in(const struct replq *q, uint64_t node)
{
    struct rq_node *n = node ? u64map_get(&q->nodes, node) : NULL;

    return n ? n->in : 0;
}

uint32_t replq_streams(const struct replq *q)
{
    return q->streams;
}

/* Running copies matching a predicate, into a malloc'd array. */
static struct replq_ref *collect(const struct replq *q,
                                 bool (*pick)(const struct replq_copy *c, const void *arg),
                                 const void *arg, size_t *n)
{
    struct replq_ref *out = NULL;
    size_t i = 0, k = 0;
    void *v;

    *n = 0;
    if (q->ncopies == 0)
        return NULL;
    while (u64map_next(&q->running, &i, NULL, &v)) {
        struct rq_entry *e = v;

        for (size_t c = 0; c < e->ncopies; c++) {
            if (!pick(&e->copies[c], arg))
                continue;
            if (!out)
                out = xcalloc(q->ncopies, sizeof(*out));
            if (k < q->ncopies)
                out[k++] = (struct replq_ref){e->chunk, e->copies[c].src, e->copies[c].tgt};
        }
    }
    *n = k;
    return out;
}

struct expiry {
    uint64_t now, timeout;
};

static bool pick_expired(const struct replq_copy *c, const void *arg)
{
    const struct expiry *x = arg;

    return c->sent_ms && x->now >= c->sent_ms + x->timeout;
}

struct replq_ref *replq_expired(const struct replq *q, uint64_t now_ms, uint64_t timeout_ms,
                                size_t *n)
{
    struct expiry x = {now_ms, timeout_ms};

    return collect(q, pick_expired, &x, n);
}

static bool pick_node(const struct replq_copy *c, const void *arg)
{
    uint64_t node = *(const uint64_t *)arg;

    return c->src == node || c->tgt == node;
}

struct replq_ref *replq_node_copies(const struct replq *q, uint64_t node, size_t *n)
{
    return collect(q, pick_node, &node, n);
}

size_t replq_queued(const struct replq *q)
{
    return q->nqueued;
}

size_t replq_running(const struct replq *q)
{
    return q->ncopies;
}
