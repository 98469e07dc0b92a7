/*
 * copyrecv: the receiving end of replication copies (CopyChunkReq).
 *
 * A copy is a session (chosen by the source) of pieces that arrive in
 * order. The first piece opens temporary files (chunkstore_tmp_create); each
 * piece's blocks are verified against the checksums that came with them
 * before they are written; the last piece carries the checksums of every
 * block of the chunk, which must agree with everything received (blocks
 * never sent must be zeros). The files are then synced and installed in
 * place of any older replica (replicas_install), which reports the new
 * replica to the namenode.
 *
 * Session states:
 *
 *   (none) --first piece--> RECEIVING --last piece, all verified--> INSTALLING --> (done)
 *                              \--bad piece, idle timeout, shutdown--> (aborted: files removed)
 *
 * One piece of a session is processed at a time; a piece that arrives while
 * another is in progress, out of order, or for an unknown session is
 * refused and aborts the session. Delta copies (start from an existing
 * replica, receive only the blocks that differ) are refused with
 * -EOPNOTSUPP for now; a session already records which blocks arrived and
 * their checksums, so a delta session only has to start from a copy of the
 * base replica's files and checksums instead of empty ones.
 *
 * Threads: loop thread; file work on the pool.
 */
#ifndef KEEL_DATANODE_COPYRECV_H
#define KEEL_DATANODE_COPYRECV_H

#include "chunkstore.h"
#include "replicas.h"
#include "rpc.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct copyrecv;

/* cs and reps are borrowed. A session idle for idle_ms is aborted. */
int copyrecv_new(uv_loop_t *loop, struct chunkstore *cs, struct replicas *reps, uint32_t idle_ms,
                 struct copyrecv **out);
/* Handles one CopyChunkReq; takes ownership of req (answers it). */
void copyrecv_handle(struct copyrecv *cr, rpc_req *req);
/* Sessions in progress. */
size_t copyrecv_active(const struct copyrecv *cr);
/* Aborts every session; the loop stops once their file work is done. */
void copyrecv_shutdown(struct copyrecv *cr);
/* Frees; after the loop has stopped. */
void copyrecv_free(struct copyrecv *cr);

#endif
