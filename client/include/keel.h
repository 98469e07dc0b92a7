/*
 * keel.h - the Keel client library (libkeel).
 *
 * Keel stores virtual-machine disk images as files split into large chunks,
 * each replicated on several datanodes in distinct failure domains. This
 * library is how a program uses a Keel cluster: it talks metadata to the
 * namenode and reads and writes chunk data straight to the datanodes, many
 * chunks in parallel, failing over between replicas and repairing broken
 * write pipelines on its own.
 *
 * Conventions
 * - Every fallible function returns 0 (or a byte count) on success and a
 *   negative errno on failure (-ENOENT, -EIO, -EBUSY, ...). keel_strerror()
 *   describes one. Out-parameters are written only on success.
 * - Paths are absolute ("/images/vm1.qcow2"). Names are at most 255 bytes,
 *   contain no '/' or NUL, and are not "." or "..".
 * - Threads: every function may be called from any thread at the same time,
 *   on the same or different handles, except that a handle must not be used
 *   after (or while) it is closed: keel_close() and keel_disconnect() must be
 *   the last call on their handle. The library runs one internal I/O thread
 *   per client; asynchronous completions are called on it.
 * - The library never exits or aborts the process, never writes to stdout or
 *   stderr (lines go to the log callback, if one is set), and never raises
 *   signals. Out of memory is reported as -ENOMEM.
 *
 * Consistency (see the project's design document): a write that returned
 * success is seen by every later read of any client (with write-behind, of
 * this client; of others once drained); keel_flush() makes
 * every write to the file that completed before it durable on every current
 * replica; one client at a time may write a file (the write lease, taken at
 * the first write and handed over when the holder goes idle).
 */
#ifndef KEEL_H
#define KEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KEEL_BUILDING_LIBRARY)
#define KEEL_API __attribute__((visibility("default")))
#else
#define KEEL_API
#endif

/** A connection to one Keel cluster. Opaque. */
typedef struct keel_client keel_client;
/** An open file. Opaque. */
typedef struct keel_file keel_file;
/** One asynchronous request. Opaque. */
typedef struct keel_aio keel_aio;

/** Log levels passed to the log callback. */
enum keel_log_level { KEEL_LOG_ERROR = 0, KEEL_LOG_WARN, KEEL_LOG_INFO, KEEL_LOG_DEBUG };

/**
 * Receives one log line (no trailing newline), on any library thread.
 * @param level  a keel_log_level
 * @param line   borrowed for the duration of the call
 */
typedef void (*keel_log_fn)(int level, const char *line, void *arg);

/** Options for keel_connect(). Initialise with keel_options_init(). */
struct keel_options {
    /** Timeout of one call to a datanode or the namenode, in ms (default 10000). */
    uint32_t call_timeout_ms;
    /** How long to keep retrying the namenode while it is unreachable, in ms
     *  (default 60000); after that the operation fails with its last error. */
    uint32_t retry_ms;
    /** A write-lease holder hands the lease over when asked if it has not
     *  written the file for this long, in ms (default 1000). */
    uint32_t lease_idle_ms;
    /** Chunk locations of files this client does not write are re-checked
     *  with the namenode after this long, in ms (default 2000). */
    uint32_t location_ttl_ms;
    /** Log callback (NULL: log lines are dropped) and its argument. */
    keel_log_fn log_fn;
    void *log_arg;
    /** Most verbose level passed to log_fn (default KEEL_LOG_WARN). */
    int log_level;
    /** Name shown in the namenode's logs (default "libkeel"); copied. */
    const char *client_name;
    /** Read the replicas that a datanode on this host keeps straight from
     *  their files, when this process may read them (default true). */
    bool local_reads;
    /** Writes of up to this many bytes go to every replica at once and wait
     *  for one round trip; larger ones go down the chain of replicas, each
     *  forwarding to the next, so that the client sends their bytes once
     *  (default 131072; 0: every write goes down the chain). */
    uint32_t fanout_max;
    /** After each request from the program, libkeel's I/O thread keeps
     *  polling for this many microseconds before it sleeps, yielding its CPU
     *  to any other thread that can run; an answer that comes meanwhile
     *  does not have to wake it. Lowers the latency of requests made one
     *  at a time where waking an idle CPU is dear (virtual machines), at the
     *  cost of CPU time that would otherwise be idle (default 0: never;
     *  at most 10000). */
    uint32_t poll_us;
};

/** Fills o with the defaults. */
KEEL_API void keel_options_init(struct keel_options *o);

/**
 * Connects to a cluster.
 * @param namenode  "host:port" of the namenode; NULL means the environment
 *                  variable KEEL_NAMENODE, or "127.0.0.1:7420".
 * @param opts      NULL for defaults; copied.
 * @param[out] out  the new client, on success.
 * @return 0, -EINVAL (bad address), -ENOMEM, or the error of the first
 *         exchange with the namenode (e.g. -ECONNREFUSED, -ETIMEDOUT) when it
 *         cannot be reached within opts->retry_ms.
 */
KEEL_API int keel_connect(const char *namenode, const struct keel_options *opts, keel_client **out);

/**
 * Closes every file still open (flushing it; errors are logged), releases
 * the client's write leases and frees the client. Asynchronous requests still
 * in flight complete (with their result or -ECANCELED) before it returns.
 */
KEEL_API void keel_disconnect(keel_client *c);

/** Returns a static, human-readable description of a negative errno. */
KEEL_API const char *keel_strerror(int err);

/* ------------------------------------------------------------ namespace */

/** File attributes. mode holds the file type bits as in stat(2). */
struct keel_stat {
    uint64_t ino;
    uint32_t mode;
    uint32_t nlink;
    uint32_t uid;
    uint32_t gid;
    uint64_t size;
    uint64_t allocated; /**< bytes of allocated chunks (thin provisioning) */
    int64_t atime_ns;
    int64_t mtime_ns;
    int64_t ctime_ns;
    uint32_t replication; /**< replicas per chunk (regular files) */
};

/**
 * Attributes of path (not following a final symlink).
 * @return 0, -ENOENT, -ENOTDIR, -EINVAL (bad path), or a transport error.
 */
KEEL_API int keel_stat(keel_client *c, const char *path, struct keel_stat *st);

/** Creates a directory. @return 0, -EEXIST, -ENOENT (no parent), -ENOTDIR, -EINVAL, -ENAMETOOLONG.
 */
KEEL_API int keel_mkdir(keel_client *c, const char *path, uint32_t mode);

/**
 * Called once per directory entry ("." and ".." are not listed).
 * @param name  borrowed for the call
 * @return 0 to continue, non-zero to stop (keel_readdir then returns it).
 */
typedef int (*keel_readdir_fn)(const char *name, const struct keel_stat *st, void *arg);

/**
 * Lists a directory in name order, fetching it in pages; entries added or
 * removed during the listing may or may not be seen, others are seen once.
 * @return 0, the callback's non-zero value, -ENOENT, -ENOTDIR.
 */
KEEL_API int keel_readdir(keel_client *c, const char *path, keel_readdir_fn fn, void *arg);

/** Removes a file name. @return 0, -ENOENT, -EISDIR. */
KEEL_API int keel_unlink(keel_client *c, const char *path);
/** Removes an empty directory. @return 0, -ENOENT, -ENOTDIR, -ENOTEMPTY, -EBUSY (root). */
KEEL_API int keel_rmdir(keel_client *c, const char *path);

/** keel_rename() flag: fail with -EEXIST rather than replace the target. */
#define KEEL_RENAME_NOREPLACE 1u
/**
 * Renames atomically, replacing an existing target as rename(2) does.
 * @return 0, -ENOENT, -EEXIST (NOREPLACE), -EISDIR, -ENOTDIR, -ENOTEMPTY,
 *         -EINVAL (a directory into itself).
 */
KEEL_API int keel_rename(keel_client *c, const char *from, const char *to, unsigned flags);

/** Makes a hard link "to" of the file "from". @return 0, -EEXIST, -ENOENT, -EPERM (directory). */
KEEL_API int keel_link(keel_client *c, const char *from, const char *to);
/** Creates a symlink at path pointing to target. @return 0, -EEXIST, -ENOENT. */
KEEL_API int keel_symlink(keel_client *c, const char *target, const char *path);
/**
 * Reads a symlink's target into buf (NUL-terminated, truncated to len - 1).
 * @return the target's full length, -ENOENT, -EINVAL (not a symlink).
 */
KEEL_API int keel_readlink(keel_client *c, const char *path, char *buf, size_t len);

/** Which fields of struct keel_setattr to apply. */
enum keel_setattr_mask {
    KEEL_SET_MODE = 1,
    KEEL_SET_UID = 2,
    KEEL_SET_GID = 4,
    KEEL_SET_SIZE = 8,
    KEEL_SET_ATIME = 16,
    KEEL_SET_MTIME = 32,
    KEEL_SET_ATIME_NOW = 64,
    KEEL_SET_MTIME_NOW = 128,
};

struct keel_setattr {
    unsigned mask; /**< keel_setattr_mask bits */
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    uint64_t size;
    int64_t atime_ns;
    int64_t mtime_ns;
};

/**
 * Changes attributes of path. A size change takes the file's write lease
 * (-EBUSY if another client is writing it); shrinking frees whole chunks past
 * the end and zeroes the rest of the last one.
 * @param[out] st  optional: the attributes after the change.
 */
KEEL_API int keel_setattr(keel_client *c, const char *path, const struct keel_setattr *sa,
                          struct keel_stat *st);

struct keel_statfs {
    uint64_t capacity; /**< bytes on all live datanodes */
    uint64_t used;     /**< bytes used there (all replicas) */
    uint64_t free;
    uint64_t files;
    uint64_t chunk_size;
    uint32_t live_nodes;
    uint32_t replication; /**< default replication factor */
};

KEEL_API int keel_statfs(keel_client *c, struct keel_statfs *st);

/* ---------------------------------------------------------------- files */

/** keel_open() flags. */
enum keel_open_flags {
    KEEL_O_READ = 1,
    KEEL_O_WRITE = 2,
    KEEL_O_RDWR = 3,
    KEEL_O_CREATE = 4, /**< create the file if it does not exist */
    KEEL_O_EXCL = 8,   /**< with CREATE: fail with -EEXIST if it exists */
    KEEL_O_TRUNC = 16, /**< set the size to 0 (takes the write lease) */
    /**
     * Write-behind: keel_pwrite() on this handle copies the data, queues the
     * write and returns at once (waiting only while 16 MiB of the file's
     * writes are already in flight), as a page cache would. Reads by this
     * client see the data at once; other clients see it when the write has
     * landed, at the latest when keel_drain(), keel_flush() or keel_close()
     * returns. A failed write is reported by the next keel_drain(),
     * keel_flush() or keel_close() on any handle of the file, once.
     */
    KEEL_O_WRITEBACK = 32,
};

/** Optional arguments of keel_open() for a file it creates. */
struct keel_open_args {
    uint32_t mode;        /**< permission bits (default 0644) */
    uint64_t size;        /**< initial size of a new file; nothing is allocated */
    uint32_t replication; /**< replicas per chunk; 0: the cluster default */
};

/**
 * Opens (and with KEEL_O_CREATE creates) a regular file. Opening for write
 * does not take the write lease: the first write does.
 * @param args     NULL for defaults; used only when the file is created.
 * @param[out] out the open file.
 * @return 0, -ENOENT, -EEXIST, -EISDIR, -EINVAL, -EBUSY (TRUNC while another
 *         client writes), -ENOMEM, or a transport error.
 */
KEEL_API int keel_open(keel_client *c, const char *path, int flags,
                       const struct keel_open_args *args, keel_file **out);

/**
 * Reads up to len bytes at off. Ranges never written read as zeros.
 * @return bytes read (fewer than len only at the end of the file), or
 *         -EIO (no replica could serve the data), -EBADF (not open for read),
 *         -EINVAL, -ENOENT (the file was removed).
 */
KEEL_API ssize_t keel_pread(keel_file *f, void *buf, size_t len, uint64_t off);

/**
 * Writes len bytes at off, growing the file if it ends past its size. The
 * data is on every replica of the chunks it touches when this returns (not
 * yet durable: see keel_flush), unless f was opened with KEEL_O_WRITEBACK.
 * @return len, or -EBUSY (another client is writing the file), -EIO (fewer
 *         than the cluster's min-replicas replicas could take it), -ENOSPC,
 *         -EBADF (not open for write), -EFBIG, -EINVAL.
 */
KEEL_API ssize_t keel_pwrite(keel_file *f, const void *buf, size_t len, uint64_t off);

/**
 * keel_pwrite() of a KEEL_O_WRITEBACK file that never waits: -EAGAIN when
 * the file has as much written behind in flight as it may (or f is not
 * KEEL_O_WRITEBACK), where keel_pwrite() would wait for room. May be
 * called from a keel_watch_fd() callback.
 */
KEEL_API ssize_t keel_try_pwrite(keel_file *f, const void *buf, size_t len, uint64_t off);

/**
 * Makes every write to f's file that completed (or, with write-behind, was
 * queued) before this call durable on every current replica.
 * @return 0, -EIO, or the error of a write-behind write not yet reported.
 */
KEEL_API int keel_flush(keel_file *f);

/**
 * Waits until the write-behind writes to f's file queued before this call
 * have landed on the replicas (seen by every client, not yet durable), then
 * tells the namenode that the file's data changed, without waiting for its
 * answer: the file's mtime and ctime move, as keel_flush() and keel_close()
 * make them move too.
 * @return 0, or the first error of a write-behind write not yet reported.
 */
KEEL_API int keel_drain(keel_file *f);

/** Sets the file's size (see keel_setattr). @return 0, -EBUSY, -EIO, -EBADF. */
KEEL_API int keel_truncate(keel_file *f, uint64_t size);

/** Attributes of the open file. */
KEEL_API int keel_fstat(keel_file *f, struct keel_stat *st);

/**
 * Flushes (if written), closes and frees f; the last close of a file by this
 * client releases its write lease. Asynchronous requests on f must have
 * completed; write-behind writes are waited for. @return 0, the flush's
 * error, or a write-behind error not yet reported (f is freed either way).
 */
KEEL_API int keel_close(keel_file *f);

/* ---------------------------------------------------------------- async */

/**
 * Called exactly once when an asynchronous request completes, on the
 * library's I/O thread: it must not block for long and must not call
 * keel_disconnect(). The request's result is keel_aio_result(aio).
 */
typedef void (*keel_aio_cb)(keel_aio *aio, void *arg);

/**
 * Creates a request object, reusable for one request at a time.
 * @param cb  optional completion callback; without one, use keel_aio_wait()
 *            or keel_aio_done().
 */
KEEL_API int keel_aio_create(keel_aio_cb cb, void *arg, keel_aio **out);
/**
 * Frees a request that is not in flight. A request with a callback may be
 * released from inside its own callback, but not by another thread until
 * that callback has returned.
 */
KEEL_API void keel_aio_release(keel_aio *aio);

/**
 * Submit asynchronous requests. buf must stay valid (and, for writes,
 * unchanged) until completion. The completion callback is never called when
 * these return an error. A read waits for the overlapping writes submitted
 * before it and sees them. keel_aio_pwrite never writes behind, and
 * keel_aio_flush covers the writes completed before it.
 * @return 0 when submitted, -EBUSY (aio already in flight), -EBADF, -EINVAL,
 *         -ENOMEM, -ESHUTDOWN (the client is disconnecting).
 */
KEEL_API int keel_aio_pread(keel_file *f, void *buf, size_t len, uint64_t off, keel_aio *aio);
KEEL_API int keel_aio_pwrite(keel_file *f, const void *buf, size_t len, uint64_t off,
                             keel_aio *aio);
KEEL_API int keel_aio_flush(keel_file *f, keel_aio *aio);

/** True once the request has completed (its callback, if any, may still be running). */
KEEL_API bool keel_aio_done(const keel_aio *aio);
/**
 * Waits until the request completes or timeout_ms pass (-1: no limit).
 * @return 0 (complete), -ETIMEDOUT, -EINVAL (never submitted).
 */
KEEL_API int keel_aio_wait(keel_aio *aio, int timeout_ms);
/** The result of a completed request: as keel_pread/keel_pwrite/keel_flush. */
KEEL_API ssize_t keel_aio_result(const keel_aio *aio);

/**
 * Calls cb(arg) on the library's I/O thread each time fd is readable, until
 * keel_unwatch_fd(): for a program that serves requests read from a
 * descriptor (keel-fuse's /dev/fuse), so that it reads them on the thread
 * that answers them. cb must not block: fd should be non-blocking. It
 * returns 0 to be called again, anything else to stop being called (call
 * keel_unwatch_fd() still). The keel_aio_* requests cb submits start when
 * it returns, without a wakeup of the I/O thread. One descriptor per
 * client.
 * @return 0, -EBUSY (a descriptor is already watched), -ESHUTDOWN, or
 *         libuv's error for fd.
 */
KEEL_API int keel_watch_fd(keel_client *c, int fd, int (*cb)(void *arg), void *arg);
/** Stops keel_watch_fd(); once it returns, cb is not running and is not
 * called again. Not from the I/O thread. */
KEEL_API void keel_unwatch_fd(keel_client *c);

/* ---------------------------------------------------- cluster inspection */

/** One replica of a chunk, as the namenode sees it. */
struct keel_replica {
    uint64_t node_id;
    char addr[64];
    char domain[64];
    int state; /**< 0 current, 1 stale, 2 corrupt */
};

/** One allocated chunk of a file. */
struct keel_chunk_info {
    uint64_t index; /**< file offset / chunk size */
    uint64_t chunk_id;
    uint64_t version;
    uint32_t replication; /**< wanted replicas */
    bool misplaced;       /**< replicas share a failure domain */
    unsigned nreplicas;
    struct keel_replica *replicas; /**< owned by the list */
};

/**
 * The allocated chunks of path's file in [off, off + len) (len 0: to the
 * end), with their replicas, current first. Free with keel_chunks_free().
 */
KEEL_API int keel_file_chunks(keel_client *c, const char *path, uint64_t off, uint64_t len,
                              struct keel_chunk_info **out, size_t *count);
KEEL_API void keel_chunks_free(struct keel_chunk_info *chunks, size_t count);

/**
 * The per-4 KiB-block checksums one replica holds for a chunk (for
 * comparing replicas). *sums is malloc'd; the caller frees it.
 */
KEEL_API int keel_replica_checksums(keel_client *c, const char *addr, uint64_t chunk_id,
                                    uint64_t version, uint64_t **sums, size_t *count,
                                    uint64_t *length);

/** A datanode as the namenode sees it. */
struct keel_node {
    uint64_t node_id;
    char addr[64];
    char domain[64];
    int state; /**< 1 alive, 2 dead, 3 decommissioning, 4 decommissioned */
    uint64_t capacity;
    uint64_t used;
    uint64_t chunks;
    uint64_t since_heartbeat_ms;
    uint32_t load;
    uint64_t decommission_left;
};

/** Cluster summary. nodes is owned by the struct: free with keel_status_free(). */
struct keel_status {
    char cluster_id[64];
    uint64_t chunk_size;
    uint32_t replication;
    uint32_t min_replicas;
    bool safe_mode;
    uint64_t files;
    uint64_t chunks;
    uint64_t healthy;
    uint64_t under_replicated;
    uint64_t missing;
    uint64_t misplaced;
    uint64_t stale_pending;
    uint64_t corrupt;
    uint64_t repl_queue;
    uint64_t repl_running;
    size_t nnodes;
    struct keel_node *nodes;
};

KEEL_API int keel_status(keel_client *c, struct keel_status *st);
KEEL_API void keel_status_free(struct keel_status *st);

/** Starts draining (or, with recommission, returns to service) a datanode. */
KEEL_API int keel_decommission(keel_client *c, uint64_t node_id, bool recommission);

/** Node state names: "alive", "dead", "decommissioning", "decommissioned". */
KEEL_API const char *keel_node_state_name(int state);

#ifdef __cplusplus
}
#endif

#endif
