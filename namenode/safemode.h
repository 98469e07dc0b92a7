/*
 * safemode: the namenode's start-up phase (DESIGN.md). After a restart the
 * replica locations are unknown until datanodes report them; until block
 * reports have shown a current replica for `threshold` percent of the known
 * chunks, or `timeout` has passed, the namenode is in safe mode: reads are
 * served, but no replica is ordered deleted and nothing is re-replicated,
 * because decisions made on a partial picture could destroy data. With no
 * known chunks it ends at once.
 *
 *   ON --reported >= threshold% of known, or the timeout--> OFF (for good)
 *
 * Pure: the caller passes the counts and the time.
 */
#ifndef KEEL_NN_SAFEMODE_H
#define KEEL_NN_SAFEMODE_H

#include <stdbool.h>
#include <stdint.h>

struct safemode {
    bool on;
    uint32_t threshold_pct;
    uint64_t deadline_ms;
};

void safemode_init(struct safemode *sm, uint32_t threshold_pct, uint64_t timeout_ms,
                   uint64_t now_ms);

/*
 * Re-evaluates with `known` chunks of which `reported` have a current
 * replica reported. Returns true exactly once: when safe mode ends now.
 */
bool safemode_update(struct safemode *sm, uint64_t known, uint64_t reported, uint64_t now_ms);

#endif
