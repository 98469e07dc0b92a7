/*
 * copyrecv: the receiving end of replication copies (CopyChunkReq).
 *
 * A copy is a session (chosen by the source) of pieces that arrive in
 * order. The first piece opens temporary files (chunkstore_tmp_create). A
 * whole copy starts from nothing: blocks never sent are zeros. A delta copy
 * starts from this node's own older replica of the chunk, which stops being
 * a replica: its data file becomes the temporary one and its checksums the
 * starting point (replicas_take; nothing is copied, so a delta costs the
 * blocks it sends). If the copy then fails, the old replica is gone: it
 * was stale anyway, and the next copy is a whole one. Each piece's blocks
 * are verified against the checksums that came with them before they are
 * written; the last piece carries the checksums of every block of the chunk
 * (in its header or, for chunks of any size, its payload), and every block
 * must match them: received, kept from the older replica, or zeros. The
 * files are then synced and installed in place of any older replica
 * (replicas_install), which reports the new replica to the namenode.
 *
 * Session states:
 *
 *   (none) --first piece--> [BASING: delta, older replica taken] --> RECEIVING
 *          --last piece, all verified--> INSTALLING --> (done)
 *   any --bad piece, idle timeout, shutdown--> (aborted: files removed)
 *
 * One piece of a session is processed at a time; a piece that arrives while
 * another is in progress, out of order, or for an unknown session is
 * refused and aborts the session.
 *
 * Threads: loop thread; file work on the pool.
 */
#ifndef KEEL_DATANODE_COPYRECV_H
#define KEEL_DATANODE_COPYRECV_H

#include "chunkstore.h"
#include "inflight.h"
#include "replicas.h"
#include "rpc.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct copyrecv;

/* cs, reps and inflight (charged for each piece until it is answered) are
 * borrowed. A session idle for idle_ms is aborted. */
int copyrecv_new(uv_loop_t *loop, struct chunkstore *cs, struct replicas *reps,
                 struct inflight *inflight, uint32_t idle_ms, struct copyrecv **out);
/* Handles one CopyChunkReq; takes ownership of req (answers it). */
void copyrecv_handle(struct copyrecv *cr, rpc_req *req);
/* Sessions in progress. */
size_t copyrecv_active(const struct copyrecv *cr);
/* Aborts every session; the loop stops once their file work is done. */
void copyrecv_shutdown(struct copyrecv *cr);
/* Frees; after the loop has stopped. */
void copyrecv_free(struct copyrecv *cr);

#endif
