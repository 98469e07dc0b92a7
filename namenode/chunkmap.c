/*
 * chunkmap: see chunkmap.h. Each chunk keeps a small array of replicas; each
 * node keeps an index of the chunks it holds (so a full report's end and a
 * node's replica count do not scan every chunk). `reported` counts chunks
 * with at least one current replica, for safe mode, and is kept up to date
 * around every change.
 */
#include "chunkmap.h"

#include "log.h"
#include "store.h"
#include "u64map.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cm_node {
    uint64_t gen;
    struct u64map chunks; /* chunk id -> struct cm_chunk */
};

struct chunkmap {
    struct u64map chunks; /* id -> struct cm_chunk */
    struct u64map nodes;  /* id -> struct cm_node */
    size_t reported;
    uint64_t changes; /* see chunkmap_changes */
    void (*hook)(void *arg, uint64_t chunk_id);
    void *hook_arg;
};

static void must(int r)
{
    if (r < 0) {
        log_error("chunkmap: out of memory");
        abort();
    }
}

struct chunkmap *chunkmap_new(void)
{
    struct chunkmap *cm = xcalloc(1, sizeof(*cm));

    u64map_init(&cm->chunks);
    u64map_init(&cm->nodes);
    return cm;
}

void chunkmap_free(struct chunkmap *cm)
{
    size_t i = 0;
    void *v;

    if (!cm)
        return;
    while (u64map_next(&cm->chunks, &i, NULL, &v)) {
        struct cm_chunk *c = v;

        free(c->reps);
        free(c);
    }
    i = 0;
    while (u64map_next(&cm->nodes, &i, NULL, &v)) {
        struct cm_node *n = v;

        u64map_free(&n->chunks);
        free(n);
    }
    u64map_free(&cm->chunks);
    u64map_free(&cm->nodes);
    free(cm);
}

static struct cm_node *node_get(struct chunkmap *cm, uint64_t id)
{
    struct cm_node *n = u64map_get(&cm->nodes, id);

    if (!n) {
        n = xcalloc(1, sizeof(*n));
        u64map_init(&n->chunks);
        must(u64map_put(&cm->nodes, id, n));
    }
    return n;
}

static bool has_current(const struct cm_chunk *c)
{
    for (uint32_t i = 0; i < c->nrep; i++)
        if (cm_replica_current(c, &c->reps[i]))
            return true;
    return false;
}

/* Keeps `reported` right across a change of c that began with `before`,
 * and announces the change. */
static void recount(struct chunkmap *cm, const struct cm_chunk *c, bool before)
{
    bool after = has_current(c);

    if (after && !before)
        cm->reported++;
    else if (before && !after)
        cm->reported--;
    cm->changes++;
    if (cm->hook)
        cm->hook(cm->hook_arg, c->id);
}

static struct cm_replica *find(const struct cm_chunk *c, uint64_t node)
{
    for (uint32_t i = 0; i < c->nrep; i++)
        if (c->reps[i].node == node)
            return &c->reps[i];
    return NULL;
}

static struct cm_replica *add_replica(struct chunkmap *cm, struct cm_chunk *c, uint64_t node)
{
    struct cm_replica *r = find(c, node);

    if (r)
        return r;
    if (c->nrep == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->reps = xrealloc(c->reps, c->cap * sizeof(*c->reps));
    }
    r = &c->reps[c->nrep++];
    memset(r, 0, sizeof(*r));
    r->node = node;
    must(u64map_put(&node_get(cm, node)->chunks, c->id, c));
    return r;
}

static void del_replica(struct chunkmap *cm, struct cm_chunk *c, uint32_t i)
{
    struct cm_node *n = u64map_get(&cm->nodes, c->reps[i].node);

    if (n)
        u64map_del(&n->chunks, c->id);
    c->reps[i] = c->reps[--c->nrep];
}

struct cm_chunk *chunkmap_add(struct chunkmap *cm, uint64_t id, uint64_t version,
                              uint32_t replication, uint64_t ino, uint64_t index)
{
    struct cm_chunk *c = u64map_get(&cm->chunks, id);
    bool before;

    if (!c) {
        c = xcalloc(1, sizeof(*c));
        c->id = id;
        must(u64map_put(&cm->chunks, id, c));
    }
    before = has_current(c);
    c->version = version;
    c->replication = replication;
    c->ino = ino;
    c->index = index;
    recount(cm, c, before);
    return c;
}

struct cm_chunk *chunkmap_get(const struct chunkmap *cm, uint64_t id)
{
    return id ? u64map_get(&cm->chunks, id) : NULL;
}

void chunkmap_remove(struct chunkmap *cm, uint64_t id)
{
    struct cm_chunk *c = u64map_del(&cm->chunks, id);

    if (!c)
        return;
    if (has_current(c))
        cm->reported--;
    while (c->nrep)
        del_replica(cm, c, c->nrep - 1);
    cm->changes++;
    if (cm->hook)
        cm->hook(cm->hook_arg, id);
    free(c->reps);
    free(c);
}

void chunkmap_set_version(struct chunkmap *cm, struct cm_chunk *c, uint64_t version)
{
    bool before = has_current(c);

    c->version = version;
    recount(cm, c, before);
}

void chunkmap_set_replica(struct chunkmap *cm, struct cm_chunk *c, uint64_t node, uint64_t version)
{
    bool before = has_current(c);
    struct cm_replica *r = add_replica(cm, c, node);

    r->version = version;
    r->corrupt = false;
    r->gen = node_get(cm, node)->gen;
    recount(cm, c, before);
}

void chunkmap_drop_replica(struct chunkmap *cm, struct cm_chunk *c, uint64_t node)
{
    bool before = has_current(c);

    for (uint32_t i = 0; i < c->nrep; i++) {
        if (c->reps[i].node == node) {
            del_replica(cm, c, i);
            recount(cm, c, before);
            return;
        }
    }
}

bool chunkmap_mark_corrupt(struct chunkmap *cm, struct cm_chunk *c, uint64_t node)
{
    bool before = has_current(c);
    struct cm_replica *r = find(c, node);

    if (!r)
        return false;
    r->corrupt = true;
    recount(cm, c, before);
    return true;
}

enum cm_report chunkmap_report(struct chunkmap *cm, uint64_t node, uint64_t chunk_id,
                               uint64_t version, bool corrupt)
{
    struct cm_chunk *c = chunkmap_get(cm, chunk_id);
    struct cm_replica *r;
    bool before;

    if (!c)
        return CM_ORPHAN;
    before = has_current(c);
    r = find(c, node);
    if (r && r->version == version && r->corrupt == corrupt) {
        r->gen = node_get(cm, node)->gen; /* seen again, unchanged */
    } else {
        r = add_replica(cm, c, node);
        r->version = version;
        r->corrupt = corrupt;
        r->gen = node_get(cm, node)->gen;
        recount(cm, c, before);
    }
    if (corrupt)
        return CM_CORRUPT;
    if (version == c->version)
        return CM_CURRENT;
    return version < c->version ? CM_STALE : CM_AHEAD;
}

void chunkmap_report_deleted(struct chunkmap *cm, uint64_t node, uint64_t chunk_id)
{
    struct cm_chunk *c = chunkmap_get(cm, chunk_id);

    if (c)
        chunkmap_drop_replica(cm, c, node);
}

void chunkmap_full_begin(struct chunkmap *cm, uint64_t node)
{
    node_get(cm, node)->gen++;
}

size_t chunkmap_full_end(struct chunkmap *cm, uint64_t node)
{
    struct cm_node *n = node_get(cm, node);
    struct cm_chunk **gone = xcalloc(n->chunks.len + 1, sizeof(*gone));
    size_t i = 0, ngone = 0;
    void *v;

    while (u64map_next(&n->chunks, &i, NULL, &v)) {
        struct cm_chunk *c = v;
        struct cm_replica *r = find(c, node);

        if (r && r->gen != n->gen)
            gone[ngone++] = c;
    }
    for (size_t k = 0; k < ngone; k++)
        chunkmap_drop_replica(cm, gone[k], node);
    free(gone);
    return ngone;
}

size_t chunkmap_drop_node(struct chunkmap *cm, uint64_t node)
{
    struct cm_node *n = u64map_get(&cm->nodes, node);
    struct cm_chunk **all;
    size_t i = 0, k = 0, count;
    void *v;

    if (!n)
        return 0;
    count = n->chunks.len;
    all = xcalloc(count + 1, sizeof(*all));
    while (u64map_next(&n->chunks, &i, NULL, &v) && k < count)
        all[k++] = v;
    for (size_t j = 0; j < k; j++)
        chunkmap_drop_replica(cm, all[j], node);
    free(all);
    return k;
}

size_t chunkmap_count(const struct chunkmap *cm)
{
    return cm->chunks.len;
}

size_t chunkmap_reported(const struct chunkmap *cm)
{
    return cm->reported;
}

size_t chunkmap_node_replicas(const struct chunkmap *cm, uint64_t node)
{
    struct cm_node *n = u64map_get(&cm->nodes, node);

    return n ? n->chunks.len : 0;
}

struct cm_chunk *chunkmap_next(const struct chunkmap *cm, size_t *iter)
{
    void *v;

    return u64map_next(&cm->chunks, iter, NULL, &v) ? v : NULL;
}

struct cm_chunk *chunkmap_node_next(const struct chunkmap *cm, uint64_t node, size_t *iter)
{
    struct cm_node *n = u64map_get(&cm->nodes, node);
    void *v;

    return n && u64map_next(&n->chunks, iter, NULL, &v) ? v : NULL;
}

void chunkmap_set_hook(struct chunkmap *cm, void (*fn)(void *arg, uint64_t chunk_id), void *arg)
{
    cm->hook = fn;
    cm->hook_arg = arg;
}

void chunkmap_chunk_health(const struct cm_chunk *c, const struct cm_view *v,
                           struct cm_chunk_health *h)
{
    const char *doms[STORE_MAX_REPLICATION * 2];
    size_t ndoms = 0;

    memset(h, 0, sizeof(*h));
    for (uint32_t i = 0; i < c->nrep; i++) {
        const struct cm_replica *r = &c->reps[i];
        const char *d = NULL;
        enum cm_node_state st = v->node(v->ctx, r->node, &d);
        bool seen = false;

        if (st == CM_NODE_GONE)
            continue;
        if (r->corrupt) {
            h->corrupt++;
            continue;
        }
        if (r->version < c->version) {
            h->stale++;
            continue;
        }
        if (r->version != c->version)
            continue; /* ahead: being adopted */
        h->readable++;
        if (st == CM_NODE_LEAVING) {
            h->leaving++;
            continue;
        }
        h->good++;
        d = d ? d : "";
        for (size_t k = 0; k < ndoms && !seen; k++)
            seen = strcmp(doms[k], d) == 0;
        if (!seen && ndoms < ARRAY_SIZE(doms))
            doms[ndoms++] = d;
    }
    h->domains = (uint32_t)ndoms;
    h->misplaced = MIN(h->good, v->live_domains) > h->domains;
}

void chunkmap_health(const struct chunkmap *cm, const struct cm_view *v, struct cm_health *out)
{
    struct cm_chunk *c;
    size_t i = 0;

    memset(out, 0, sizeof(*out));
    while ((c = chunkmap_next(cm, &i))) {
        struct cm_chunk_health h;

        chunkmap_chunk_health(c, v, &h);
        out->chunks++;
        out->stale += h.stale;
        out->corrupt += h.corrupt;
        if (h.misplaced)
            out->misplaced++;
        if (h.readable == 0)
            out->missing++;
        else if (h.good < c->replication)
            out->under_replicated++;
        else if (!h.misplaced)
            out->healthy++;
    }
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t chunkmap_changes(const struct chunkmap *cm)
{
    return cm->changes;
}

bool chunkmap_health_recent(const struct chunkmap *cm, const struct cm_view *v, uint64_t view_sig,
                            uint64_t now_ns, struct cm_health_memo *m, struct cm_health *out)
{
    uint64_t t0;
    bool same = m->valid && m->changes == cm->changes && m->view_sig == view_sig;
    bool recent = m->valid && m->cost_ns >= CM_HEALTH_MIN_COST && now_ns >= m->at_ns &&
                  now_ns - m->at_ns < m->cost_ns * CM_HEALTH_DUTY;

    if (same || recent) {
        *out = m->h;
        return false;
    }
    t0 = thread_cpu_ns();
    chunkmap_health(cm, v, &m->h);
    m->cost_ns = thread_cpu_ns() - t0;
    m->changes = cm->changes;
    m->view_sig = view_sig;
    m->at_ns = now_ns;
    m->valid = true;
    *out = m->h;
    return true;
}
