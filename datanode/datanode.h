/*
 * datanode: one storage server, assembled from its modules and taken down
 * again in order.
 *
 *   chunkstore (the data directory) <- replicas (table, per-chunk queues)
 *   replicas <- dataserv (clients, peers), copyrecv, replicate, scrubber
 *   inflight (bytes of requests in progress) <- dataserv, copyrecv
 *   nnlink (namenode) -> replicas, replicate; replicas/replicate -> nnlink (reports)
 *
 * Start-up: open the data directory and scan it (recovering replicas left
 * dirty by an unclean stop), listen and publish the address in
 * DIR/listen.addr, then register with the namenode and start the scrubber.
 * Shutdown: stop taking work (listener, namenode link, scrubber, copies),
 * let running disk work finish, close every handle; the loop then ends and
 * datanode_free releases the rest.
 *
 * Threads: loop thread.
 */
#ifndef KEEL_DATANODE_DATANODE_H
#define KEEL_DATANODE_DATANODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct datanode;

struct datanode_config {
    const char *data_dir;
    const char *namenode;         /* "host:port" */
    const char *listen;           /* "host:port"; port 0 picks one */
    const char *domain;           /* failure domain */
    uint64_t scrub_rate;          /* bytes per second; 0: no scrubbing */
    uint64_t capacity;            /* bytes to report; 0: the filesystem's */
    uint64_t peer_timeout_ms;     /* forwarded writes and copies */
    unsigned max_open;            /* idle replicas whose files stay open */
    uint64_t replication_rate;    /* outgoing copy bytes per second; 0: unlimited */
    unsigned replication_streams; /* outgoing copies at once (0: 1) */
    uint64_t max_inflight;        /* bytes of requests in progress; 0: unbounded */
    uint64_t wal_size;            /* log of small writes (chunkstore_use_wal); 0: none */
    const char *boot_id_file;     /* the machine's boot id; NULL: the kernel's */
    bool no_local_reads;          /* refuse LocalReq (dataserv.h) */
    unsigned poll_us;             /* busy-poll window after a request (dataserv.h) */
};

/*
 * Starts a datanode on loop. Returns 0, or an error after logging what went
 * wrong (unusable data directory or VERSION, address in use...).
 */
int datanode_start(uv_loop_t *loop, const struct datanode_config *cfg, struct datanode **out);
/* Begins an orderly shutdown; the loop ends when it is complete. */
void datanode_stop(struct datanode *dn);
/* 0, or the error that stopped the datanode (the namenode refused it). */
int datanode_status(const struct datanode *dn);
/* The data service address, "host:port". */
void datanode_addr(const struct datanode *dn, char *buf, size_t len);
/* Frees everything; after uv_run has returned. */
void datanode_free(struct datanode *dn);

#endif
