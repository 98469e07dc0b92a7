/*
 * store: the namenode's persistent metadata in one LMDB environment.
 *
 * The environment lives in the --meta directory (data.mdb, lock.mdb) and
 * holds these named databases (keys are big-endian so LMDB's byte order is
 * numeric order; values are little-endian records with a layout byte):
 *
 *   settings  name -> value      cluster id, chunk size, default replication,
 *                                layout, id counters (next inode, next node,
 *                                chunk id reservation limit)
 *   inodes    ino -> inode       attributes; a symlink's target follows them
 *   dirents   parent ino, name -> child ino   (ordered by name: readdir)
 *   fchunks   ino, index -> chunk id          (the file's chunk map)
 *   chunks    chunk id -> chunk  version, reference count, owner, replication
 *   nodes     node id -> node    datanode identity: address, domain, capacity
 *
 * The namespace operations built on these records are in nstree.c.
 *
 * Every operation is a function over a caller's MDB_txn and touches nothing
 * else, so it runs on whichever thread owns the transaction (the group
 * commit's worker for writes, the loop thread for reads) and can be tested
 * without an event loop. A failing write operation may have written part of
 * its change: run it in a nested transaction and abort that on error (the
 * commit module does).
 *
 * Errors: 0 or a negative errno. LMDB failures map to -ENOSPC (map full),
 * the system errno LMDB reported, or -EIO (corruption, anything else).
 */
#ifndef KEEL_NN_STORE_H
#define KEEL_NN_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ROOT_INO        1u
#define STORE_NAME_MAX        255u
#define STORE_MAX_REPLICATION 16u
#define STORE_MAX_FILE_SIZE   (1ull << 60)
#define STORE_CLUSTER_ID_MAX  64u
#define STORE_ADDR_MAX        64u
#define STORE_DOMAIN_MAX      64u

struct store;

/* Cluster settings, fixed at format time. */
struct store_settings {
    char cluster_id[STORE_CLUSTER_ID_MAX + 1];
    uint64_t chunk_size;
    uint32_t replication; /* default for new files */
};

struct store_inode {
    uint64_t ino;
    uint32_t mode; /* st_mode: type and permission bits */
    uint32_t nlink;
    uint32_t uid, gid;
    uint32_t replication; /* regular files */
    uint64_t size;
    uint64_t nchunks; /* allocated chunks */
    int64_t atime, mtime, ctime;
};

struct store_chunk {
    uint64_t id;
    uint64_t version;
    uint32_t refs;
    uint32_t replication;
    uint64_t ino;   /* the file that allocated it */
    uint64_t index; /* its position there */
};

/* A growable list of chunks; what an operation freed (refs reached 0). */
struct store_chunk_list {
    struct store_chunk *v;
    size_t n, cap;
};

void store_chunk_list_free(struct store_chunk_list *l);

/* A datanode's persistent identity. */
struct store_node {
    uint64_t id;
    char addr[STORE_ADDR_MAX + 1];
    char domain[STORE_DOMAIN_MAX + 1];
    uint64_t capacity;
    uint64_t used;
    uint32_t flags; /* STORE_NODE_* */
};

#define STORE_NODE_DECOMMISSIONING 1u
#define STORE_NODE_DECOMMISSIONED  2u

/* ------------------------------------------------------------ environment */

/*
 * Creates a new cluster's metadata in dir (created if missing): the
 * environment, the root directory and the settings. A cluster id is made up
 * when settings->cluster_id is empty. Fails with -EEXIST if dir already
 * holds a store, -EINVAL for bad settings (chunk size not a multiple of 4 KiB
 * or outside 64 KiB..1 GiB; replication outside 1..STORE_MAX_REPLICATION).
 * On failure err (if not NULL) gets a one-line reason.
 */
int store_format(const char *dir, const struct store_settings *settings, char *err, size_t errlen);

/*
 * Opens the store in dir. Returns 0 and *out, -ENOENT if dir holds no store
 * (never formatted), -EPROTO if it holds something else or another layout,
 * or the system error; err (if not NULL) then gets a one-line reason. Stale
 * reader slots of dead processes are cleared. The caller owns *out
 * (store_close).
 */
int store_open(const char *dir, struct store **out, char *err, size_t errlen);

/* Closes the environment; no transaction may be open. NULL is allowed. */
void store_close(struct store *s);

/* The environment, for the commit module and read transactions. Borrowed. */
MDB_env *store_env(struct store *s);

/* The settings read at open. Borrowed for the store's life. */
const struct store_settings *store_get_settings(const struct store *s);

/* A read-only transaction (any thread; end it with mdb_txn_abort). */
int store_read_begin(struct store *s, MDB_txn **txn);

/* LMDB return code -> negative errno (0 stays 0). */
int store_errno(int mdb_rc);

/* ---------------------------------------------------------------- records
 *
 * Inode and directory entry records, for nstree (the namespace operations)
 * and for reads by inode number. None of these checks POSIX rules.
 */

/* An inode's attributes: 0, or -ENOENT if ino does not exist. */
int store_inode_get(struct store *s, MDB_txn *txn, uint64_t ino, struct store_inode *out);

/* Writes a new inode (-EEXIST if its number is taken), with a symlink's
 * target of tlen bytes when tlen > 0. */
int store_inode_create(struct store *s, MDB_txn *txn, const struct store_inode *in,
                       const char *target, size_t tlen);

/* Rewrites an existing inode's attributes, keeping a symlink's target. */
int store_inode_update(struct store *s, MDB_txn *txn, const struct store_inode *in);

int store_inode_delete(struct store *s, MDB_txn *txn, uint64_t ino);

/* A symlink's target into buf, NUL-terminated (-ERANGE if it does not fit). */
int store_inode_target(struct store *s, MDB_txn *txn, uint64_t ino, char *buf, size_t len);

/* Takes the next inode number (never reused). */
int store_next_ino(struct store *s, MDB_txn *txn, uint64_t *ino);

/* Number of inodes (files, directories, symlinks). */
int store_count_inodes(struct store *s, MDB_txn *txn, uint64_t *out);

/* The entry name (len bytes) of directory dir: 0 and *ino, or -ENOENT. */
int store_dirent_get(struct store *s, MDB_txn *txn, uint64_t dir, const char *name, size_t len,
                     uint64_t *ino);
int store_dirent_put(struct store *s, MDB_txn *txn, uint64_t dir, const char *name, size_t len,
                     uint64_t ino);
int store_dirent_del(struct store *s, MDB_txn *txn, uint64_t dir, const char *name, size_t len);

/* 0 if dir has no entries, -ENOTEMPTY if it has. */
int store_dir_empty(struct store *s, MDB_txn *txn, uint64_t dir);

/*
 * Runs fn for the entries of dir in name order, starting after the name
 * `after` ("" or NULL: from the first). name is not NUL-terminated and valid
 * only during the call. A non-zero return from fn stops the scan and is
 * returned; 0 means the scan reached the end.
 */
typedef int (*store_scan_fn)(const char *name, size_t len, uint64_t ino, void *arg);
int store_dirent_scan(struct store *s, MDB_txn *txn, uint64_t dir, const char *after,
                      store_scan_fn fn, void *arg);

/* ---------------------------------------------------------------- chunks */

int store_chunk_get(struct store *s, MDB_txn *txn, uint64_t chunk_id, struct store_chunk *out);

/* The chunk at a file's index: 0 and *chunk_id, or -ENOENT (a hole). */
int store_file_chunk(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t index,
                     uint64_t *chunk_id);

/* Runs fn for each chunk of ino with first <= index <= last, in order;
 * a non-zero return from fn stops the walk and is returned. */
typedef int (*store_fchunk_fn)(uint64_t index, uint64_t chunk_id, void *arg);
int store_file_chunks(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t first, uint64_t last,
                      store_fchunk_fn fn, void *arg);

/*
 * Records a newly allocated chunk at version 1 with one reference, mapped at
 * ino's index. -EEXIST if the index already has a chunk or the id is taken,
 * -ENOENT if ino is gone, -EINVAL if it is not a regular file or the index
 * is past the largest file size.
 */
int store_chunk_add(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t index, uint64_t chunk_id,
                    uint32_t replication);

/*
 * Removes ino's chunk map entries with index >= first, dropping one
 * reference on each chunk; chunks left with none are deleted and appended
 * to freed (which may be NULL). *removed gets how many entries went.
 */
int store_file_chunks_drop(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t first,
                           struct store_chunk_list *freed, uint64_t *removed);

/* Moves a chunk from old_version to new_version: -ENOENT, or -ESTALE when it
 * is not at old_version. */
int store_chunk_set_version(struct store *s, MDB_txn *txn, uint64_t chunk_id, uint64_t old_version,
                            uint64_t new_version);

/* Every chunk, in id order; a non-zero return from fn stops and is returned. */
typedef int (*store_chunk_fn)(const struct store_chunk *c, void *arg);
int store_chunks_foreach(struct store *s, MDB_txn *txn, store_chunk_fn fn, void *arg);

/*
 * Chunk ids are handed out from reserved ranges so that an id used at a
 * datanode before its chunk committed is never handed out again after a
 * crash: this moves the persisted limit up by n and returns the first id of
 * the new range [*first, *first + n).
 */
int store_reserve_chunk_ids(struct store *s, MDB_txn *txn, uint64_t n, uint64_t *first);

/* ----------------------------------------------------------------- nodes */

/*
 * Registers a datanode: with n->id 0 a new id is assigned (written back);
 * otherwise the node must exist (-ENOENT) and its address, domain and
 * capacity are updated. The flags stored are kept.
 */
int store_node_register(struct store *s, MDB_txn *txn, struct store_node *n);

int store_node_get(struct store *s, MDB_txn *txn, uint64_t id, struct store_node *out);

/* Sets then clears flag bits (STORE_NODE_*) of node id; *flags gets the
 * result. -ENOENT if the node does not exist. */
int store_node_set_flags(struct store *s, MDB_txn *txn, uint64_t id, uint32_t set, uint32_t clear,
                         uint32_t *flags);

typedef int (*store_node_fn)(const struct store_node *n, void *arg);
int store_nodes_foreach(struct store *s, MDB_txn *txn, store_node_fn fn, void *arg);

#endif
