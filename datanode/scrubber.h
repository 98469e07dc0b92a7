/*
 * scrubber: a background pass that re-reads and verifies every replica at a
 * bounded rate, so damage is found (marked corrupt, reported) without any
 * client read.
 *
 * The pass walks chunk ids in increasing order and each chunk in pieces of
 * SCRUBBER_PIECE_BLOCKS blocks, each verified through the chunk's queue
 * like a read. Bytes actually read from disk are paced to `rate` bytes per
 * second (a hole costs nothing); a finished pass starts over after a pause.
 *
 * Threads: loop thread.
 */
#ifndef KEEL_DATANODE_SCRUBBER_H
#define KEEL_DATANODE_SCRUBBER_H

#include "replicas.h"

#include <stdint.h>
#include <uv.h>

#define SCRUBBER_PIECE_BLOCKS 256u

struct scrubber;

/* rate: bytes per second (> 0). reps is borrowed. */
int scrubber_start(uv_loop_t *loop, struct replicas *reps, uint64_t rate, struct scrubber **out);
/* Stops after the piece in progress; closes the timer. */
void scrubber_stop(struct scrubber *sc);
/* Frees; after the loop has stopped. */
void scrubber_free(struct scrubber *sc);

#endif
