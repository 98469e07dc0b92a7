/*
 * peers: client connections from this datanode to other datanodes, one per
 * address, shared by every forwarded write and replication copy to it.
 *
 * One connection per peer keeps the writes of a chunk in the order they
 * were forwarded. Connections reconnect on demand (rpc backoff); the pool is
 * bounded, and when full the least recently used idle connection is closed.
 *
 * Threads: loop thread only.
 */
#ifndef KEEL_DATANODE_PEERS_H
#define KEEL_DATANODE_PEERS_H

#include "rpc.h"

#include <stdint.h>
#include <uv.h>

struct peers;

/* timeout_ms: connect timeout and default call timeout (--peer-timeout). */
int peers_new(uv_loop_t *loop, uint32_t timeout_ms, struct peers **out);
/* Closes every connection (their calls fail with -ECONNRESET) and frees. */
void peers_close(struct peers *p);

/*
 * The connection to "a.b.c.d:port", created on first use. Borrowed: valid
 * until the next peers_get or peers_close. -EINVAL unless addr is an IPv4
 * literal with a port (no name lookups on the loop), -EBUSY when the pool is
 * full of busy connections.
 */
int peers_get(struct peers *p, const char *addr, rpc_conn **out);

uint32_t peers_timeout(const struct peers *p);

/* 0 if addr is "a.b.c.d:port" with a non-zero port, else -EINVAL. */
int peers_check_addr(const char *addr);

#endif
