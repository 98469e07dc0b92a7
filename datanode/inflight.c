/*
 * inflight: see inflight.h for the states.
 *
 * Watched connections are kept in an array (connections come and go far
 * less often than requests); a pause or a resume walks it.
 */
#include "inflight.h"

#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>

#define REPORT_EVERY_MS 10000 /* pauses are summed up in one line at most this often */

struct inflight {
    uint64_t limit;
    uint64_t bytes;
    uint64_t peak;
    bool paused;
    rpc_conn **conns;
    size_t nconns, cap;
    uint64_t pauses;         /* since the last report */
    uint64_t last_report_ms; /* 0: none yet */
};

int inflight_new(uint64_t limit, struct inflight **out)
{
    struct inflight *f = xcalloc(1, sizeof(*f));

    f->limit = limit;
    *out = f;
    return 0;
}

void inflight_free(struct inflight *f)
{
    if (!f)
        return;
    if (f->bytes)
        log_error("inflight: %" PRIu64 " bytes still charged at the end: a request leaked them",
                  f->bytes);
    log_info("inflight: at most %" PRIu64 " bytes of requests were in progress (limit %" PRIu64
             ", 0: none)",
             f->peak, f->limit);
    free(f->conns);
    free(f);
}

static void set_paused(struct inflight *f, bool paused)
{
    uint64_t now;

    f->paused = paused;
    for (size_t i = 0; i < f->nconns; i++) {
        if (paused)
            rpc_conn_pause(f->conns[i]);
        else
            rpc_conn_resume(f->conns[i]);
    }
    log_debug("inflight: %s reading from %zu connections (%" PRIu64 " bytes in progress)",
              paused ? "paused" : "resumed", f->nconns, f->bytes);
    if (!paused)
        return;
    f->pauses++;
    now = mono_ms();
    if (f->last_report_ms == 0 || now - f->last_report_ms >= REPORT_EVERY_MS) {
        log_warn("inflight: %" PRIu64 " bytes of requests in progress, over the limit of %" PRIu64
                 ": reads paused (%" PRIu64 " times since the last report)",
                 f->bytes, f->limit, f->pauses);
        f->pauses = 0;
        f->last_report_ms = now;
    }
}

void inflight_watch(struct inflight *f, rpc_conn *c)
{
    if (f->nconns == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->conns = xrealloc(f->conns, f->cap * sizeof(*f->conns));
    }
    f->conns[f->nconns++] = c;
    if (f->paused)
        rpc_conn_pause(c);
}

void inflight_unwatch(struct inflight *f, rpc_conn *c)
{
    for (size_t i = 0; i < f->nconns; i++) {
        if (f->conns[i] == c) {
            f->conns[i] = f->conns[--f->nconns];
            return;
        }
    }
}

void inflight_take(struct inflight *f, uint64_t bytes)
{
    f->bytes += bytes;
    if (f->bytes > f->peak)
        f->peak = f->bytes;
    if (f->limit && !f->paused && f->bytes > f->limit)
        set_paused(f, true);
}

void inflight_give(struct inflight *f, uint64_t bytes)
{
    if (bytes > f->bytes) {
        log_error("inflight: %" PRIu64 " bytes given back, only %" PRIu64 " charged", bytes,
                  f->bytes);
        bytes = f->bytes;
    }
    f->bytes -= bytes;
    if (f->paused && f->bytes <= f->limit / 4 * 3)
        set_paused(f, false);
}

uint64_t inflight_bytes(const struct inflight *f)
{
    return f->bytes;
}

uint64_t inflight_peak(const struct inflight *f)
{
    return f->peak;
}

bool inflight_paused(const struct inflight *f)
{
    return f->paused;
}
