/*
 * diskio: whole-buffer positional reads and writes on a file descriptor.
 *
 * pread(2) and pwrite(2) may transfer fewer bytes than asked and may be
 * interrupted; these loop until the whole buffer is done, so callers issue
 * one call per range and handle one error. Safe on any thread.
 */
#ifndef KEEL_DISKIO_H
#define KEEL_DISKIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Reads len bytes at off into buf. The end of the file stops the read:
 * *got (if not NULL) receives the count read and the rest of buf is left
 * alone; with got NULL a short file is -EIO. Returns 0 or a negative errno.
 */
int diskio_pread(int fd, void *buf, size_t len, uint64_t off, size_t *got);

/*
 * As diskio_pread, but a read that would wait for the disk (any part of the
 * range not in the page cache) fails with -EAGAIN: preadv2 with RWF_NOWAIT.
 * Where the kernel or filesystem cannot tell, also -EAGAIN.
 */
int diskio_pread_nowait(int fd, void *buf, size_t len, uint64_t off, size_t *got);

/* Writes len bytes at off. A write that makes no progress is -ENOSPC.
 * Returns 0 or a negative errno; on error some bytes may have been written. */
int diskio_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* The same, telling how many bytes were written (all of them on success). */
int diskio_pwrite_done(int fd, const void *buf, size_t len, uint64_t off, size_t *done);

/*
 * As diskio_pwrite_done, one pwrite per aligned DISKIO_PIECE, for files that
 * later take small overwrites in place (a replica's data). The page cache
 * sizes the folio a buffered write creates by the length written, and a
 * later 4 KiB write into a large folio walks every block of it
 * (ext4_block_write_begin in Linux 6.18): after 1 MiB writes, a 4 KiB
 * overwrite cost a datanode a quarter of its time in that walk.
 */
#define DISKIO_PIECE (64u << 10)
int diskio_pwrite_pieces(int fd, const void *buf, size_t len, uint64_t off, size_t *done);

/* fdatasync(2), as 0 or a negative errno. Never retried by callers: after a
 * failure the kernel may have dropped the dirty pages. */
int diskio_datasync(int fd);

/* Starts writing the range's dirty pages to disk without waiting for them
 * (sync_file_range with SYNC_FILE_RANGE_WRITE). Makes nothing durable and
 * reports no error: a later fdatasync does both. */
void diskio_start_writeback(int fd, uint64_t off, uint64_t len);

/* Writes back every dirty page of the file and waits for it: sync_file_range
 * over the whole file. Commits no metadata, and the data may still sit in
 * the device's volatile cache. 0 or a negative errno (a writeback error). */
int diskio_writeback_wait(int fd);

/*
 * True if the filesystem holding fd writes an overwrite of allocated blocks
 * in place and has nothing of its own to commit for it, so that writing the
 * pages back and then flushing the device's cache is all an fdatasync would
 * do: ext2/3/4 (which share a magic number) unless mounted data=journal.
 * Copy-on-write filesystems, journalled data, overlays, anything unknown:
 * false. Reads /proc/self/mountinfo; call once, at startup.
 */
bool diskio_overwrites_in_place(int fd);

#endif
