/*
 * keelfs: the FUSE file system over libkeel: the operations table that
 * keel-fuse mounts, and the caching policy it asks the kernel for.
 *
 * Caching: attributes and names are cached by the kernel for
 * KEELFS_ATTR_TIMEOUT seconds (a change made by another client shows after
 * at most that long); failed lookups for KEELFS_NEGATIVE_TIMEOUT. File data
 * goes through the page cache except for files opened with O_DIRECT, which
 * go straight to libkeel; every open drops the file's cached pages, so data
 * another client wrote before the open is always seen. A changed mtime
 * alone does not drop them (FUSE_CAP_AUTO_INVAL_DATA is off): every flush
 * of a writer moves it, and the kernel would otherwise drop a whole file's
 * cache at its next look at the attributes after each.
 *
 * Reads of up to KEELFS_FAST_IO bytes (of any size from files opened with
 * O_DIRECT), and direct writes of up to KEELFS_FAST_IO bytes and direct
 * fsyncs, are answered from libkeel's completion, off libfuse; buffered
 * writes of up to that are queued and answered at once (keelfs_take). The
 * rest go to libfuse, on worker threads.
 *
 * Writes: buffered writes are written behind (KEEL_O_WRITEBACK: up to 16
 * MiB per file in flight, reads see them at once); close(2) waits for them
 * to land and reports a failed one. O_DIRECT writes return when every
 * replica has the data, and several may run at once on one file.
 *
 * Durability: fsync and fdatasync are keel_flush; files opened with O_SYNC
 * or O_DSYNC flush after each write.
 */
#ifndef KEEL_FUSE_KEELFS_H
#define KEEL_FUSE_KEELFS_H

#include <fuse.h>
#include <stdbool.h>
#include <stddef.h>

#include "keel.h"

#define KEELFS_ATTR_TIMEOUT     1.0
#define KEELFS_NEGATIVE_TIMEOUT 0.5
#define KEELFS_MAX_IO           (1u << 20)
#define KEELFS_REQ_HEADROOM     4096u        /* a request's headers, beyond its data */
#define KEELFS_FAST_IO          (128u << 10) /* requests answered off libfuse */

/* What the mount serves; fuse's private data points at it. The client is
 * connected after the process has daemonized, before requests flow. */
struct keelfs {
    keel_client *client;
};

extern const struct fuse_operations keelfs_ops;

/* The transport's hook (fdio_take_fn): takes the reads, direct writes and
 * fsyncs it can answer from libkeel's I/O thread, and the buffered writes
 * it can queue without waiting. Never blocks. */
bool keelfs_take(int fd, const void *req, size_t len);

#endif
