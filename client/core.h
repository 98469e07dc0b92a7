/*
 * core: the heart of a keel_client. It owns the client's I/O thread (one
 * libuv loop), the queue through which API calls made on any thread reach
 * that loop, the connection to the namenode (with Hello on every reconnect,
 * retries while the namenode is away, and the lease-recall handler), the pool
 * of connections to datanodes with their speed statistics, and the log sink.
 *
 * Threads: core_submit() and the core_wait functions may be called from any
 * thread; everything else in this header runs on the I/O thread.
 */
#ifndef KEEL_CLIENT_CORE_H
#define KEEL_CLIENT_CORE_H

#include "keel.h"
#include "busypoll.h"
#include "list.h"
#include "rpc.h"
#include "u64map.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* A unit of work handed to the I/O thread. */
struct core_op {
    struct list link;
    void (*run)(struct core_op *op); /* on the I/O thread */
    keel_client *client;
};

/* A one-shot completion a user thread can block on. */
struct core_wait {
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool done;
};

/* Whether a datanode's replicas can be read from their files (localread.h). */
enum { LOCAL_UNKNOWN, LOCAL_ASKING, LOCAL_YES, LOCAL_NO };

/* What the client knows of one datanode it talks to. */
struct core_node {
    char addr[64];
    rpc_conn *conn;
    uint32_t inflight;    /* calls outstanding */
    uint64_t ewma_us;     /* smoothed reply time */
    uint64_t error_until; /* mono ms: avoid while a recent error is fresh */
    int local;            /* LOCAL_* */
    int local_dirfd;      /* LOCAL_YES: the node's data directory */
    uint64_t local_node;  /* LOCAL_YES: its node id */
    uint64_t local_asked_ms;
};

struct keel_client {
    struct keel_options opts;
    char name[64];
    char nn_addr[64];
    uint64_t client_id;

    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;
    uv_timer_t tick;          /* retries and lease renewal */
    uv_timer_t soon;          /* the tick's work again, for a retry due before the next tick */
    struct core_watch *watch; /* keel_watch_fd, or NULL; on the I/O thread */
    uint64_t soon_at;
    struct busypoll poll; /* kicked by each request from the program */
    pthread_mutex_t lock;
    struct list submitted; /* core_op, guarded by lock */
    bool stopping;         /* guarded by lock */

    rpc_conn *nn;
    bool hello_done;
    bool disconnecting;  /* keel_disconnect is closing the namenode link */
    struct list retries; /* nn calls waiting to be retried */
    uint64_t chunk_size;
    uint32_t lease_ms;
    uint32_t min_replicas;
    char cluster_id[64];
    uint64_t next_renew_ms;

    struct core_node **nodes; /* entries never move: callers keep pointers */
    size_t nnodes;

    struct u64map inodes; /* ino -> struct kinode (chunkio.c) */
    struct list files;    /* open keel_files, guarded by lock */
    struct list closing;  /* closes waiting for their file's I/O to drain */
    unsigned reads;       /* read fops in progress (I/O thread) */

    /* Write-behind (file.c): wb_lock guards the wb_* fields of every kinode;
     * wb_cv is broadcast when a write-behind write completes. */
    pthread_mutex_t wb_lock;
    pthread_cond_t wb_cv;
    struct list wb;  /* every write-behind write in flight, oldest first */
    uint64_t wb_seq; /* the client-wide number of the next one */
};

/* --- threads ----------------------------------------------------------- */

/* Hands op to the I/O thread. Returns 0 or -ESHUTDOWN. */
int core_submit(keel_client *c, struct core_op *op);

void core_wait_init(struct core_wait *w);
void core_wait_destroy(struct core_wait *w);
void core_wait_signal(struct core_wait *w);
/* Blocks until signalled; timeout_ms < 0 waits for ever. 0 or -ETIMEDOUT. */
int core_wait_block(struct core_wait *w, int timeout_ms);
/* Hands op to the I/O thread and waits until it signals w (initialised and
 * destroyed here); returns *status then, or core_submit's error. */
int core_submit_wait(keel_client *c, struct core_op *op, struct core_wait *w, const int *status);

/* --- namenode ---------------------------------------------------------- */

/* Called with the reply (status 0) or NULL; runs once, on the I/O thread. */
typedef void (*core_nn_fn)(int status, const Keel__Envelope *rep, void *arg);

/*
 * A call to the namenode, retried through reconnects on transport errors and
 * -EAGAIN until opts.retry_ms has passed. req is borrowed until fn runs.
 * Returns 0 or -ENOMEM (fn is then not called).
 */
int core_nn_call(keel_client *c, Keel__Envelope *req, core_nn_fn fn, void *arg);
/* core_nn_call with done_err as for core_nn_sync. */
int core_nn_call_ex(keel_client *c, Keel__Envelope *req, int done_err, core_nn_fn fn, void *arg);

/*
 * The same from a user thread: blocks until done. copy runs on the I/O
 * thread with the reply (only on success) to copy out what the caller needs.
 *
 * done_err: for a call that is not idempotent (mkdir, unlink, ...), the
 * error a retry sees when an earlier attempt, lost with its connection,
 * did take effect (-EEXIST, -ENOENT); after such a loss it counts as
 * success (copy is then not called). 0 for none.
 */
typedef void (*core_copy_fn)(const Keel__Envelope *rep, void *arg);
int core_nn_sync(keel_client *c, Keel__Envelope *req, core_copy_fn copy, void *arg, int done_err);

/* --- datanodes --------------------------------------------------------- */

/* The pool entry for addr, created on first use; NULL on -ENOMEM. */
struct core_node *core_node_get(keel_client *c, const char *addr);

/* Records the outcome of a call to n that took us_taken microseconds. */
void core_node_done(keel_client *c, struct core_node *n, int status, uint64_t us_taken);

/* The call timeout for data calls. */
uint32_t core_call_timeout(const keel_client *c);

/* Does the tick's work (retries) at when_ms too, not only every tick. */
void core_wake_at(keel_client *c, uint64_t when_ms);

/* A namenode Attr as the public struct (allocated bytes from chunks). */
void core_attr_to_stat(const Keel__Attr *a, uint64_t chunk_size, struct keel_stat *st);

/* True for errors that say "try again elsewhere or later", not "no". */
bool core_transport_error(int err);

#endif
