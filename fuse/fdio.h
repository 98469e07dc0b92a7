/*
 * fdio: the transport between libfuse and /dev/fuse, installed with
 * fuse_session_custom_io(), with two additions:
 *
 * - Replies to OPEN and CREATE of files opened for direct I/O carry
 *   FOPEN_PARALLEL_DIRECT_WRITES, so the kernel lets several direct writes
 *   to one file reach us at once instead of holding the inode lock around
 *   each (a VM's queue depth against one image file). libfuse 3.15 and
 *   later can say this itself (fuse_file_info.parallel_direct_writes); the
 *   3.14 of Debian 12 cannot. It is safe because libkeel orders overlapping
 *   writes to a chunk itself.
 * - Each request is offered to a hook before libfuse sees it; the hook may
 *   take it and answer it later, from any thread (keel-fuse's small reads
 *   and direct writes, see keelfs_take). libfuse's high-level API can only
 *   answer a request from the handler that got it.
 *
 * Thread-safe: libfuse's worker threads read and write concurrently.
 */
#ifndef KEEL_FUSE_FDIO_H
#define KEEL_FUSE_FDIO_H

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Offered each request read from the kernel (fd, the whole request) before
 * libfuse sees it: returns true if it took the request and will answer it
 * (with fdio_reply, from any thread), false to leave it to libfuse. */
typedef bool (*fdio_take_fn)(int fd, const void *req, size_t len);

/* Installs the transport on a mounted session, with take (or NULL).
 * Returns 0 or -1 (libfuse's own transport then stays). */
int fdio_install(struct fuse_session *se, fdio_take_fn take);

/* Answers request `unique` read from fd: error (a negative errno) or data.
 * Returns 0 or a negative errno. */
int fdio_reply(int fd, uint64_t unique, int error, const void *data, size_t len);

/* Marks the open being answered on this thread as one to flag (called from
 * the open and create handlers, which run on the thread that replies). */
void fdio_flag_this_open(void);

#endif
