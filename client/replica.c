/*
 * replica: see replica.h.
 */
#include "replica.h"

int replica_pick(const struct replica_view *v, unsigned n, uint64_t tried_mask)
{
    int best = -1;
    uint64_t best_score = 0;

    for (unsigned i = 0; i < n && i < 64; i++) {
        uint64_t score;

        if (tried_mask & (1ull << i))
            continue;
        /* Expected wait: everything queued ahead of us, plus ours. */
        score = (uint64_t)(v[i].inflight + 1) * (v[i].ewma_us ? v[i].ewma_us : 1);
        if (v[i].failing)
            score += 1ull << 40;
        if (best < 0 || score < best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    return best;
}

uint64_t replica_local_rank(uint64_t chunk_id, uint64_t node_id)
{
    uint64_t x = chunk_id * 0x9e3779b97f4a7c15ull ^ node_id;

    /* splitmix64's finaliser */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
