/*
 * fdio: the transport between libfuse and /dev/fuse, with one addition:
 * replies to OPEN and CREATE of files opened for direct I/O carry
 * FOPEN_PARALLEL_DIRECT_WRITES, so the kernel lets several direct writes to
 * one file reach us at once instead of holding the inode lock around each
 * (a VM's queue depth against one image file). libfuse 3.15 and later can
 * say this itself (fuse_file_info.parallel_direct_writes); the 3.14 of
 * Debian 12 cannot, so keel-fuse installs this transport with
 * fuse_session_custom_io(). It is safe because libkeel orders overlapping
 * writes to a chunk itself.
 *
 * Thread-safe: libfuse's worker threads read and write concurrently.
 */
#ifndef KEEL_FUSE_FDIO_H
#define KEEL_FUSE_FDIO_H

#include <fuse_lowlevel.h>

/* Installs the transport on a mounted session. Returns 0 or -1 (libfuse's
 * own transport then stays). */
int fdio_install(struct fuse_session *se);

/* Marks the open being answered on this thread as one to flag (called from
 * the open and create handlers, which run on the thread that replies). */
void fdio_flag_this_open(void);

#endif
