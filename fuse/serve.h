/*
 * serve: keel-fuse's session loop, in place of libfuse's multi-threaded
 * one. libkeel's I/O thread reads the requests from /dev/fuse
 * (keel_watch_fd) and offers each to a hook first (fdio_take_fn;
 * keel-fuse's is keelfs_take: reads, small direct writes, direct fsyncs
 * and small buffered writes), which starts it in libkeel right there and
 * answers it from libkeel's completion on the same thread. The rest go to
 * a pool of worker threads that hand them to libfuse
 * (fuse_session_process_buf).
 *
 * With libfuse's loop a worker read each request and woke the I/O thread
 * for it, while another worker slept in the kernel for the next: on a
 * virtual machine, where a wakeup across CPUs is an interrupt through the
 * hypervisor, this loop took a 4 KiB direct write from 4.3 to 3.2 context
 * switches and from 96 to 80 us of keel-fuse's CPU (bench/README.md).
 */
#ifndef KEEL_FUSE_SERVE_H
#define KEEL_FUSE_SERVE_H

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>

#include "fdio.h"
#include "keel.h"

/*
 * Serves se until it is unmounted or fuse_session_exit() is called (by
 * libfuse's signal handlers). bufsize: the largest request (max_write plus
 * headers). Returns 0, a negative errno for /dev/fuse's failure, or
 * -ENOTSUP if it could not start (nothing was read: run libfuse's loop).
 */
int serve_run(struct fuse_session *se, keel_client *c, fdio_take_fn take, size_t bufsize);

/* Runs fn(arg) on one of serve_run's workers, from any thread: for work
 * that should not hold libkeel's I/O thread up (copying a large read's
 * answer to the kernel). False if serve_run is not serving, or stopping:
 * run it yourself. */
bool serve_post(void (*fn)(void *arg), void *arg);

#endif
