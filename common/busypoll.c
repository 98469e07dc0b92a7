/*
 * busypoll: see busypoll.h.
 *
 * An active idle handle is what makes libuv poll with a zero timeout; it is
 * started by a kick and stops itself once the window has passed.
 */
#include "busypoll.h"

#include "util.h"

#include <sched.h>

static void on_idle(uv_idle_t *h)
{
    struct busypoll *bp = h->data;

    if (mono_ns() >= bp->until_ns)
        uv_idle_stop(h);
    else
        sched_yield();
}

void busypoll_init(struct busypoll *bp, uv_loop_t *loop, unsigned window_us)
{
    bp->window_ns = (uint64_t)window_us * 1000;
    bp->until_ns = 0;
    uv_idle_init(loop, &bp->idle);
    uv_unref((uv_handle_t *)&bp->idle);
    bp->idle.data = bp;
}

void busypoll_kick(struct busypoll *bp)
{
    if (!bp->window_ns || uv_is_closing((uv_handle_t *)&bp->idle))
        return;
    bp->until_ns = mono_ns() + bp->window_ns;
    uv_idle_start(&bp->idle, on_idle);
}

void busypoll_close(struct busypoll *bp)
{
    if (!uv_is_closing((uv_handle_t *)&bp->idle))
        uv_close((uv_handle_t *)&bp->idle, NULL);
}
