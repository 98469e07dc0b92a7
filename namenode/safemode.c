/*
 * safemode: see safemode.h.
 */
#include "safemode.h"

#include "log.h"

#include <inttypes.h>

void safemode_init(struct safemode *sm, uint32_t threshold_pct, uint64_t timeout_ms,
                   uint64_t now_ms)
{
    sm->on = true;
    sm->threshold_pct = threshold_pct > 100 ? 100 : threshold_pct;
    sm->deadline_ms = now_ms + timeout_ms;
}

bool safemode_update(struct safemode *sm, uint64_t known, uint64_t reported, uint64_t now_ms)
{
    if (!sm->on)
        return false;
    if (known == 0) {
        log_info("safe mode: off (no chunks to wait for)");
    } else if (reported * 100 >= (uint64_t)sm->threshold_pct * known) {
        log_info("safe mode: off, %" PRIu64 " of %" PRIu64 " chunks reported", reported, known);
    } else if (now_ms >= sm->deadline_ms) {
        log_warn("safe mode: off after the timeout with only %" PRIu64 " of %" PRIu64
                 " chunks reported",
                 reported, known);
    } else {
        return false;
    }
    sm->on = false;
    return true;
}
