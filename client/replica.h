/*
 * replica: which replica a read goes to. Each candidate is scored by what
 * the client has seen of its datanode: requests outstanding (spread the
 * load), smoothed reply time (prefer the fast), and a recent failure (avoid
 * for a while). Replicas already tried for this read are skipped; the
 * namenode's order breaks ties. Pure: the caller supplies the statistics.
 */
#ifndef KEEL_CLIENT_REPLICA_H
#define KEEL_CLIENT_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

struct replica_view {
    uint32_t inflight;
    uint64_t ewma_us;
    bool failing; /* a recent transport error */
};

/*
 * Picks among n candidates (n <= 64) those not set in tried_mask. Returns
 * the index, or -1 when every candidate has been tried.
 */
int replica_pick(const struct replica_view *v, unsigned n, uint64_t tried_mask);

/*
 * Ranks node node_id for reading chunk_id from its files on this host
 * (localread.h); among the local replicas the highest rank reads. The
 * namenode's order moves with the nodes' load and free space, so following
 * it would read a chunk from one replica's files now and another's next
 * time, each into the page cache once; a rank of the pair keeps a chunk on
 * one replica while spreading the chunks over the host's datanodes.
 */
uint64_t replica_local_rank(uint64_t chunk_id, uint64_t node_id);

#endif
