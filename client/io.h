/*
 * io: what core needs from the file layer (file.c): write-lease bookkeeping
 * for renewals and recalls, the periodic tick, and closing every file at
 * disconnect. All but io_close_all, io_wb_barrier_all and
 * io_truncated_by_path run on the I/O thread.
 */
#ifndef KEEL_CLIENT_IO_H
#define KEEL_CLIENT_IO_H

#include "keel.h"

#include <stddef.h>
#include <stdint.h>

/*
 * The namenode asks us to give up the write lease on ino. reply(released)
 * is called once, possibly later (after a flush).
 */
void io_lease_recall(keel_client *c, uint64_t ino, void (*reply)(int released, void *arg),
                     void *arg);

/* The namenode says we no longer hold the lease on ino. */
void io_lease_lost(keel_client *c, uint64_t ino);

/* Writes up to max inodes whose lease we hold into out (may be NULL) and
 * returns how many there are. */
size_t io_lease_inos(keel_client *c, uint64_t *out, size_t max);

void io_tick(keel_client *c, uint64_t now_ms);

/* A new connection to the namenode said hello. */
void io_reconnected(keel_client *c);

/* From a user thread: waits for every write-behind write of this client
 * queued before the call (before a namespace change that truncates). */
void io_wb_barrier_all(keel_client *c);

/*
 * From a user thread, after this client changed ino's size by path: the
 * namenode gave it the write lease for that. Kept (and the cached chunks
 * past size dropped) if the file is open here; released at once if not,
 * since nothing here would renew or release it and the next writer
 * elsewhere would wait for it to expire.
 */
void io_truncated_by_path(keel_client *c, uint64_t ino, uint64_t size);

/* From the disconnecting thread: closes every file still open. */
void io_close_all(keel_client *c);

#endif
