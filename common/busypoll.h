/*
 * busypoll: keeps a libuv loop polling its descriptors, rather than sleeping
 * in the kernel, for a short window after work arrives.
 *
 * A small request at queue depth 1 (a guest's O_DIRECT write, waiting for
 * three replicas) crosses several processes, and each of them sleeps until
 * its next message comes. Where the machine is virtual, waking a CPU that
 * went idle is a trip through the hypervisor: about 40 us on the test
 * machine, more than a datanode's whole work for a 4 KiB write. A process
 * that expects an answer or a next request within the window keeps its CPU
 * awake instead.
 *
 * While the window is open the loop does not block: each turn polls with a
 * zero timeout, then yields the CPU (sched_yield), so any other thread that
 * can run on that CPU runs first. What it costs is CPU time that would
 * otherwise be idle: at most one window after each kick, all of it while
 * kicks come closer together than the window.
 *
 * Threads: the loop's thread.
 */
#ifndef KEEL_BUSYPOLL_H
#define KEEL_BUSYPOLL_H

#include <stdint.h>
#include <uv.h>

struct busypoll {
    uv_idle_t idle;
    uint64_t window_ns; /* 0: never polls */
    uint64_t until_ns;
};

/* window_us 0 turns it off. The handle does not keep the loop alive. */
void busypoll_init(struct busypoll *bp, uv_loop_t *loop, unsigned window_us);
/* Work came: poll until window_us from now. */
void busypoll_kick(struct busypoll *bp);
/* Closes the handle (uv_close); bp must live until the loop has run its
 * close callbacks. */
void busypoll_close(struct busypoll *bp);

#endif
