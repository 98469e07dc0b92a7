/*
 * localread: reads of the replicas a datanode on this host keeps, straight
 * from their files, as HDFS's short-circuit reads do: no trip through the
 * datanode's process, no socket either way.
 *
 * A node is local when it says where its data directory is (LocalReq, asked
 * once, on the first read that could use it) and the VERSION file of that
 * directory, as this client sees it, names the same node and cluster: the
 * client then sees the very files the node serves. Until the answer comes,
 * for a node that is not local, and for a node started with
 * --no-local-reads, reads go over the network.
 *
 * A local read returns what the node itself would serve, or nothing:
 *   - the replica's files are opened by name for every read, so a replica
 *     the node has deleted or replaced is never read through an old file;
 *   - the sidecar's header must hold the version the client reads at and no
 *     CORRUPT flag, as the node's own check (replicas.c, check_readable):
 *     the node writes a version change or a corrupt mark to the header
 *     before it acts on it, and a replica that missed writes keeps an older
 *     version there;
 *   - the header must not be DIRTY: a replica being written keeps its
 *     newest checksums in the node's memory until it settles (about a
 *     second after its last write), so its sidecar cannot vouch for it;
 *   - every block read is verified against its checksum in the sidecar.
 * Any check that fails, and any error, sends the read over the network,
 * where the node decides and reports real damage. A local read reports
 * nothing: a block that does not match its checksum may be one the node is
 * writing at that moment.
 *
 * Unlike the node, a local read is not ordered against the node's writes
 * of the same blocks: a read that overlaps a write in flight may return
 * some blocks old and some new, each block whole, as a disk may. A read
 * issued after a write was acknowledged sees it (the client does not start
 * a read over a write of its own still in flight).
 */
#ifndef KEEL_CLIENT_LOCALREAD_H
#define KEEL_CLIENT_LOCALREAD_H

#include "core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * True if node n (node_id at the namenode) keeps its replicas on this host
 * where this client can read them; n->local_dirfd is then its directory.
 * The first call for a node asks it and answers false until the reply has
 * come. I/O thread.
 */
bool localread_node(keel_client *c, struct core_node *n, uint64_t node_id);

/*
 * Forgets what node n said, and closes its directory: its connection has
 * closed, and a node that starts again may keep its replicas elsewhere or
 * refuse local reads. It is asked again at the next read. I/O thread.
 */
void localread_forget(struct core_node *n);

/*
 * Reads [off, off + len) of replica (chunk_id, version) of a chunk of
 * `blocks` blocks into buf, from the files below dirfd, with the checks
 * above. Returns 0; -EAGAIN when nowait and some of it is not in the page
 * cache (nothing is then known); -ESTALE (another version), -EBUSY (being
 * written), -EIO (marked corrupt, or a block that does not match),
 * -EBADMSG (a header that cannot be trusted), -ENOENT, -ENOMEM or a read
 * error. Any thread.
 */
int localread_read(int dirfd, uint64_t chunk_id, uint64_t version, uint32_t blocks, uint64_t off,
                   void *buf, size_t len, bool nowait);

#endif
