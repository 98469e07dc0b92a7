/*
 * nstree: the POSIX namespace (directories, files, hard links, symlinks and
 * their attributes) as operations over store records.
 *
 * Paths are absolute ("/a/b"); empty components ("//", a trailing "/") are
 * ignored; a component must not be "." or ".." (-EINVAL) nor longer than
 * STORE_NAME_MAX bytes (-ENAMETOOLONG), and a path is at most
 * NSTREE_PATH_MAX bytes. Intermediate components must be directories
 * (-ENOTDIR): symlinks are not followed, the caller (the kernel under FUSE)
 * resolves them. Inode numbers are never reused; root is STORE_ROOT_INO.
 *
 * Like store, every function works inside the caller's MDB_txn and keeps no
 * state; a failed write operation may have written part of its change, so
 * run it in a nested transaction that is aborted on error. `now` is the
 * caller's wall clock (ns), so results do not depend on when a batch runs.
 * Chunks whose last reference an operation drops are deleted from the store
 * and appended to `freed` (which may be NULL); their replicas are the
 * caller's to have deleted.
 */
#ifndef KEEL_NN_NSTREE_H
#define KEEL_NN_NSTREE_H

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define NSTREE_PATH_MAX    4095u
#define NSTREE_SYMLINK_MAX 4095u
#define NSTREE_MAX_NLINK   65000u

/* RenameReq.flags */
#define NSTREE_RENAME_NOREPLACE 1u

/* SetattrReq.valid bits (the values of keel.proto's SetattrValid). */
#define NSTREE_SET_MODE      1u
#define NSTREE_SET_UID       2u
#define NSTREE_SET_GID       4u
#define NSTREE_SET_SIZE      8u
#define NSTREE_SET_ATIME     16u
#define NSTREE_SET_MTIME     32u
#define NSTREE_SET_ATIME_NOW 64u
#define NSTREE_SET_MTIME_NOW 128u
#define NSTREE_SET_ALL       255u

/* Checks a path's syntax without looking anything up. */
int nstree_check_path(const char *path);

/* lstat: -ENOENT if absent. */
int nstree_stat(struct store *s, MDB_txn *txn, const char *path, struct store_inode *out);

/* mkdir: -EEXIST if the name exists, -ENOENT/-ENOTDIR for a bad parent. */
int nstree_mkdir(struct store *s, MDB_txn *txn, const char *path, uint32_t mode, uint32_t uid,
                 uint32_t gid, int64_t now, struct store_inode *out);

struct nstree_create_args {
    const char *path;
    uint32_t mode; /* permission bits; a file type other than S_IFREG is -EINVAL */
    uint32_t uid, gid;
    bool exclusive;       /* -EEXIST if it exists */
    bool truncate;        /* an existing file's size becomes 0, its chunks are freed */
    uint64_t size;        /* a new file's size (thin: nothing is allocated) */
    uint32_t replication; /* 0: the cluster default */
    int64_t now;
};

/*
 * Creates a regular file or opens an existing one; *created says which.
 * Opening a directory is -EISDIR, any other non-regular file -EEXIST.
 */
int nstree_create(struct store *s, MDB_txn *txn, const struct nstree_create_args *a,
                  struct store_inode *out, bool *created, struct store_chunk_list *freed);

/*
 * Lists a directory in name order after the name `after` ("" for the
 * start), at most max entries; fn runs for each (name is not NUL-terminated;
 * name and inode are valid only during the call). *eof is set when the
 * listing reached the end.
 */
typedef void (*nstree_dirent_fn)(const char *name, size_t len, const struct store_inode *in,
                                 void *arg);
int nstree_readdir(struct store *s, MDB_txn *txn, const char *path, const char *after, size_t max,
                   nstree_dirent_fn fn, void *arg, bool *eof);

/* unlink of a non-directory; when nlink reaches 0 the inode and its chunk
 * references go. */
int nstree_unlink(struct store *s, MDB_txn *txn, const char *path, int64_t now,
                  struct store_chunk_list *freed);

/* rmdir: -ENOTEMPTY, -ENOTDIR, -EBUSY for the root. */
int nstree_rmdir(struct store *s, MDB_txn *txn, const char *path, int64_t now);

/*
 * rename(2), atomic, replacing an existing target as POSIX does (a
 * non-directory over a non-directory, a directory over an empty directory).
 * flags: 0 or NSTREE_RENAME_NOREPLACE (-EEXIST if the target exists). Moving
 * a directory into itself is -EINVAL; the root is -EBUSY.
 */
int nstree_rename(struct store *s, MDB_txn *txn, const char *from, const char *to, uint32_t flags,
                  int64_t now, struct store_chunk_list *freed);

/* Hard link `to` to the non-directory `from` (-EPERM for a directory). */
int nstree_link(struct store *s, MDB_txn *txn, const char *from, const char *to, int64_t now,
                struct store_inode *out);

/* A symlink at path pointing at target (1..NSTREE_SYMLINK_MAX bytes). */
int nstree_symlink(struct store *s, MDB_txn *txn, const char *target, const char *path,
                   uint32_t uid, uint32_t gid, int64_t now, struct store_inode *out);

/* The target of a symlink (-EINVAL for anything else) into buf, NUL-terminated. */
int nstree_readlink(struct store *s, MDB_txn *txn, const char *path, char *buf, size_t len);

struct nstree_setattr_args {
    const char *path; /* or, when NULL or "", ino */
    uint64_t ino;
    uint32_t valid; /* NSTREE_SET_* */
    uint32_t mode, uid, gid;
    uint64_t size;
    int64_t atime, mtime;
    int64_t now;
    /*
     * When shrinking leaves a partial last chunk, the caller first trims
     * its replicas to a new version; that version commits here together
     * with the size. The chunk must be the file's chunk at index
     * (size - 1) / chunk size and still at trim_old_version, else -ESTALE.
     */
    uint64_t trim_chunk;
    uint64_t trim_old_version, trim_new_version;
};

/*
 * Changes attributes; ctime becomes now. A size change applies to regular
 * files only (-EISDIR, -EINVAL). A size that does not grow the file frees
 * every chunk wholly past the new end. The file type bits of mode are kept.
 */
int nstree_setattr(struct store *s, MDB_txn *txn, const struct nstree_setattr_args *a,
                   struct store_inode *out, struct store_chunk_list *freed);

/* Grows a regular file to size (never shrinks), its mtime and ctime then
 * now; with touch (its data changed) they move up to now in any case.
 * *out gets the resulting size. */
int nstree_extend(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t size, int64_t now,
                  bool touch, uint64_t *out);

#endif
