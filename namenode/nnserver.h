/*
 * nnserver: a running namenode. Opens the metadata store (refusing an
 * unformatted or foreign directory, or one another namenode holds), loads
 * the datanode registry and the chunk map, serves clients and datanodes on
 * one listening address with one handler table, and drives the periodic
 * work (dead datanodes, lease expiry, the safe mode timeout).
 *
 * Life cycle:
 *
 *   nnserver_start --> SERVING --nnserver_stop--> DRAINING (connections
 *   closed, waiters cancelled, commits finishing) --loop empty--> nnserver_free
 *
 * Threads: the loop thread; LMDB writes run on the libuv thread pool.
 */
#ifndef KEEL_NN_NNSERVER_H
#define KEEL_NN_NNSERVER_H

#include "nncore.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct nnserver;

/*
 * Creates a cluster's metadata in dir (see store_format). err gets a
 * one-line reason on failure.
 */
int nnserver_format(const char *dir, uint64_t chunk_size, uint32_t replication, char *err,
                    size_t errlen);

/*
 * Starts a namenode on loop with cfg (borrowed, with its strings, for the
 * server's life). Writes the bound address to cfg->meta_dir/listen.addr.
 * Returns 0 and *out, or a negative errno with a one-line reason in err.
 */
int nnserver_start(uv_loop_t *loop, const struct nn_config *cfg, struct nnserver **out, char *err,
                   size_t errlen);

/* The address the server listens on ("host:port"). */
const char *nnserver_addr(const struct nnserver *s);

/* The shared state, for tests that look inside. Borrowed. */
struct nn_core *nnserver_core(struct nnserver *s);

/*
 * Begins shutdown: stops listening, closes every connection, cancels
 * waiting requests and lets queued commits finish. The loop then runs
 * dry; call nnserver_free after it has.
 */
void nnserver_stop(struct nnserver *s);

/* Frees everything (after nnserver_stop and the loop ran dry). */
void nnserver_free(struct nnserver *s);

#endif
