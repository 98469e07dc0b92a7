/*
 * placement: see placement.h for the rules.
 *
 * A pick works on the candidate list in three passes: count how many of the
 * chunk's replicas each candidate's domain already has, keep the candidates
 * whose domain count is the lowest (zero when a fresh domain is left), and
 * draw one of them with probability proportional to its free space (in MiB,
 * plus one so that an almost full node keeps a small chance).
 */
#include "placement.h"

#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_next(struct placement_rng *r)
{
    uint64_t x = r->s ? r->s : 0x9e3779b97f4a7c15ull;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t free_bytes(const struct placement_node *n)
{
    return n->capacity > n->used ? n->capacity - n->used : 0;
}

bool placement_usable(const struct placement_node *node, uint64_t chunk_size)
{
    return node->alive && !node->full && !node->decommissioning && free_bytes(node) >= chunk_size;
}

static bool listed(uint64_t id, const uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static bool same_domain(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static const char *domain_of(uint64_t id, const struct placement_node *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (nodes[i].id == id)
            return nodes[i].domain ? nodes[i].domain : "";
    return NULL; /* a node the caller did not list: its domain is unknown */
}

/* How many of the chunk's replicas (held or picked) are in domain d. */
static unsigned domain_use(const char *d, const char *const *held_dom, size_t nheld)
{
    unsigned use = 0;

    for (size_t i = 0; i < nheld; i++)
        if (held_dom[i] && same_domain(held_dom[i], d))
            use++;
    return use;
}

int placement_choose(const struct placement_node *nodes, size_t n, const struct placement_req *req,
                     struct placement_rng *rng, uint64_t *out, size_t *nout, bool *misplaced)
{
    size_t want, got = 0, nheld = 0, ncand = 0;
    const char **held_dom = NULL;
    uint64_t *held = NULL;
    size_t *cand = NULL;
    unsigned *use = NULL;
    bool mis = false;

    if (req->replication == 0)
        return -EINVAL;
    want = req->replication > req->nexisting ? req->replication - req->nexisting : 0;
    held = xcalloc(req->nexisting + want + 1, sizeof(*held));
    held_dom = xcalloc(req->nexisting + want + 1, sizeof(*held_dom));
    cand = xcalloc(n + 1, sizeof(*cand));
    use = xcalloc(n + 1, sizeof(*use));
    for (size_t i = 0; i < req->nexisting; i++) {
        held_dom[nheld] = domain_of(req->existing[i], nodes, n);
        held[nheld++] = req->existing[i];
    }
    for (size_t i = 0; i < n; i++) {
        const struct placement_node *nd = &nodes[i];

        if (placement_usable(nd, req->chunk_size) && !listed(nd->id, held, nheld) &&
            !listed(nd->id, req->exclude, req->nexclude))
            cand[ncand++] = i;
    }

    while (got < want && ncand > 0) {
        unsigned best = UINT32_MAX;
        uint64_t total = 0, pick;
        size_t chosen = 0;

        for (size_t c = 0; c < ncand; c++) {
            use[c] = domain_use(nodes[cand[c]].domain, held_dom, nheld);
            best = MIN(best, use[c]);
        }
        for (size_t c = 0; c < ncand; c++)
            if (use[c] == best)
                total += (free_bytes(&nodes[cand[c]]) >> 20) + 1;
        pick = rng_next(rng) % total;
        for (size_t c = 0; c < ncand; c++) {
            uint64_t w;

            if (use[c] != best)
                continue;
            w = (free_bytes(&nodes[cand[c]]) >> 20) + 1;
            if (pick < w) {
                chosen = c;
                break;
            }
            pick -= w;
        }
        if (best > 0)
            mis = true;
        out[got++] = nodes[cand[chosen]].id;
        held_dom[nheld] = nodes[cand[chosen]].domain ? nodes[cand[chosen]].domain : "";
        held[nheld++] = nodes[cand[chosen]].id;
        cand[chosen] = cand[--ncand];
    }
    /* Existing replicas may already share a domain. */
    for (size_t i = 0; i < nheld && !mis; i++)
        if (held_dom[i] && domain_use(held_dom[i], held_dom, nheld) > 1)
            mis = true;
    *nout = got;
    *misplaced = mis;
    free(use);
    free(cand);
    free(held_dom);
    free(held);
    return 0;
}

/* Orders removal candidates: most crowded domain, then least free, then id. */
static bool removes_before(const struct placement_node *a, unsigned a_use,
                           const struct placement_node *b, unsigned b_use)
{
    if (a_use != b_use)
        return a_use > b_use;
    if (free_bytes(a) != free_bytes(b))
        return free_bytes(a) < free_bytes(b);
    return a->id > b->id;
}

size_t placement_choose_excess(const struct placement_node *holders, size_t n, size_t keep,
                               uint64_t *out)
{
    const char **doms;
    bool *gone;
    size_t removed = 0;

    if (n <= keep)
        return 0;
    doms = xcalloc(n, sizeof(*doms));
    gone = xcalloc(n, sizeof(*gone));
    for (size_t i = 0; i < n; i++)
        doms[i] = holders[i].domain ? holders[i].domain : "";
    while (n - removed > keep) {
        size_t victim = n;
        unsigned victim_use = 0;

        for (size_t i = 0; i < n; i++) {
            unsigned use = 0;

            if (gone[i])
                continue;
            for (size_t k = 0; k < n; k++)
                use += !gone[k] && same_domain(doms[k], doms[i]);
            if (victim == n || removes_before(&holders[i], use, &holders[victim], victim_use)) {
                victim = i;
                victim_use = use;
            }
        }
        gone[victim] = true;
        out[removed++] = holders[victim].id;
    }
    free(gone);
    free(doms);
    return removed;
}
