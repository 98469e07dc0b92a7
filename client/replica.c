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
