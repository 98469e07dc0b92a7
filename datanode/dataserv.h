/*
 * dataserv: the datanode's data service, for clients and peer datanodes:
 * ReadReq, WriteReq (chained), FlushReq, ChecksumsReq, CopyChunkReq
 * (handed to copyrecv), and LocalReq (where the replicas are, for a client
 * on this host that reads them from their files: client/localread.h).
 *
 * Every request is validated before anything happens (ranges inside the
 * chunk, payload length equal to the declared one, payload checksum, chain
 * addresses); an invalid one gets an error reply, changes nothing and is
 * not forwarded.
 *
 * A write goes to the local replica and, at the same moment, to the next
 * node of its chain (with the rest of the chain), sharing one payload
 * buffer. The reply waits for both and lists the nodes where the write
 * failed (this one included, with its error) and the ones never reached.
 * A forward's timeout grows with the length of the chain behind it, so an
 * upstream node never gives up before a downstream one has named the slow
 * node.
 *
 * Every request is charged to the inflight bound (inflight.h) from its
 * arrival until its memory is released: its payload, or the reply it sends,
 * plus a fixed cost. The connections it serves are the ones paused when the
 * bound is passed.
 *
 * Threads: loop thread.
 */
#ifndef KEEL_DATANODE_DATASERV_H
#define KEEL_DATANODE_DATASERV_H

#include "chunkstore.h"
#include "copyrecv.h"
#include "inflight.h"
#include "peers.h"
#include "replicas.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Longest chain a write may carry after its first node. */
#define DATASERV_MAX_CHAIN 15

struct dataserv;

struct dataserv_config {
    uv_loop_t *loop;
    const char *listen; /* "host:port"; port 0 picks one */
    struct chunkstore *cs;
    struct replicas *reps;
    struct peers *peers;
    struct copyrecv *copies;
    struct inflight *inflight; /* charged for every request in progress */
    bool no_local_reads;       /* LocalReq is refused */
    unsigned poll_us;          /* busy-poll window after each request (busypoll.h); 0: none */
};

/* Listens and serves. Everything in cfg is borrowed for the service's life.
 * Returns 0, -EINVAL (address), or the bind error. */
int dataserv_start(const struct dataserv_config *cfg, struct dataserv **out);
/* The bound address, "host:port". */
void dataserv_addr(const struct dataserv *ds, char *buf, size_t len);
/* Requests being served. */
uint32_t dataserv_load(const struct dataserv *ds);
/* Stops listening and closes every connection. Requests in progress still
 * complete (their answers are dropped). */
void dataserv_stop(struct dataserv *ds);
/* Frees; after the loop has stopped. */
void dataserv_free(struct dataserv *ds);

#endif
