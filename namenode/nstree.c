/*
 * nstree: POSIX namespace operations over the store's inode and directory
 * records. See nstree.h for the path rules.
 *
 * Invariants kept here: a directory's nlink is 2 plus its subdirectories; a
 * file's nlink counts its names, and its inode and chunk references go with
 * the last one; every change to a directory's entries updates its mtime and
 * ctime. Rename checks "into itself" on path components, which is exact
 * because directories have one name and paths contain no symlinks.
 */
#include "nstree.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* ----------------------------------------------------------------- paths */

struct comp {
    const char *p;
    size_t len;
};

/* The next non-empty component after *cur: 1 with c set, or 0 at the end. */
static int next_comp(const char **cur, struct comp *c)
{
    const char *p = *cur;

    while (*p == '/')
        p++;
    if (!*p) {
        *cur = p;
        return 0;
    }
    c->p = p;
    while (*p && *p != '/')
        p++;
    c->len = (size_t)(p - c->p);
    *cur = p;
    return 1;
}

int nstree_check_path(const char *path)
{
    struct comp c;
    const char *cur = path;

    if (!path || path[0] != '/')
        return -EINVAL;
    if (strlen(path) > NSTREE_PATH_MAX)
        return -ENAMETOOLONG;
    while (next_comp(&cur, &c)) {
        if (c.len > STORE_NAME_MAX)
            return -ENAMETOOLONG;
        if ((c.len == 1 && c.p[0] == '.') || (c.len == 2 && c.p[0] == '.' && c.p[1] == '.'))
            return -EINVAL;
    }
    return 0;
}

/* Where a path leads: its parent directory, last name, and inode (0: absent). */
struct loc {
    uint64_t parent; /* 0 for the root itself */
    const char *name;
    size_t len;
    uint64_t ino;
};

static int resolve(struct store *s, MDB_txn *txn, const char *path, struct loc *l)
{
    const char *cur = path;
    struct comp c, nx;
    uint64_t dir = STORE_ROOT_INO;
    int r = nstree_check_path(path);

    if (r)
        return r;
    l->parent = 0;
    l->name = NULL;
    l->len = 0;
    l->ino = STORE_ROOT_INO;
    if (!next_comp(&cur, &c))
        return 0;
    for (;;) {
        struct store_inode in;
        uint64_t child;

        if (!next_comp(&cur, &nx)) {
            l->parent = dir;
            l->name = c.p;
            l->len = c.len;
            r = store_dirent_get(s, txn, dir, c.p, c.len, &l->ino);
            if (r == -ENOENT) {
                l->ino = 0;
                r = 0;
            }
            return r;
        }
        r = store_dirent_get(s, txn, dir, c.p, c.len, &child);
        if (r)
            return r;
        r = store_inode_get(s, txn, child, &in);
        if (r)
            return r == -ENOENT ? -EIO : r;
        if (!S_ISDIR(in.mode))
            return -ENOTDIR;
        dir = child;
        c = nx;
    }
}

/* True when the directory path `dir` is a proper ancestor of `path`. */
static bool path_inside(const char *dir, const char *path)
{
    const char *a = dir, *b = path;
    struct comp ca, cb;

    while (next_comp(&a, &ca)) {
        if (!next_comp(&b, &cb) || ca.len != cb.len || memcmp(ca.p, cb.p, ca.len) != 0)
            return false;
    }
    return next_comp(&b, &cb) == 1;
}

int nstree_stat(struct store *s, MDB_txn *txn, const char *path, struct store_inode *out)
{
    struct loc l;
    int r = resolve(s, txn, path, &l);

    if (r)
        return r;
    if (!l.ino)
        return -ENOENT;
    return store_inode_get(s, txn, l.ino, out);
}

static int new_inode(struct store *s, MDB_txn *txn, uint32_t mode, uint32_t uid, uint32_t gid,
                     int64_t now, struct store_inode *in)
{
    int r = store_next_ino(s, txn, &in->ino);

    if (r)
        return r;
    in->mode = mode;
    in->nlink = 1;
    in->uid = uid;
    in->gid = gid;
    in->replication = 0;
    in->size = 0;
    in->nchunks = 0;
    in->atime = in->mtime = in->ctime = now;
    return 0;
}

/* A directory gained or lost entries: times, and nlink for subdirectories. */
static int touch_dir(struct store *s, MDB_txn *txn, uint64_t dir, int nlink_delta, int64_t now)
{
    struct store_inode in;
    int r = store_inode_get(s, txn, dir, &in);

    if (r)
        return r == -ENOENT ? -EIO : r;
    in.nlink = (uint32_t)((int64_t)in.nlink + nlink_delta);
    in.mtime = in.ctime = now;
    return store_inode_update(s, txn, &in);
}

/* One name of a non-directory went away; the inode goes with its last name. */
static int drop_link(struct store *s, MDB_txn *txn, struct store_inode *in, int64_t now,
                     struct store_chunk_list *freed)
{
    uint64_t removed;
    int r;

    if (in->nlink > 1) {
        in->nlink--;
        in->ctime = now;
        return store_inode_update(s, txn, in);
    }
    r = store_file_chunks_drop(s, txn, in->ino, 0, freed, &removed);
    if (r == 0)
        r = store_inode_delete(s, txn, in->ino);
    return r;
}

/* ------------------------------------------------------------- namespace */

int nstree_mkdir(struct store *s, MDB_txn *txn, const char *path, uint32_t mode, uint32_t uid,
                 uint32_t gid, int64_t now, struct store_inode *out)
{
    struct store_inode in;
    struct loc l;
    int r = resolve(s, txn, path, &l);

    if (r)
        return r;
    if (l.ino)
        return -EEXIST;
    r = new_inode(s, txn, S_IFDIR | (mode & 07777), uid, gid, now, &in);
    if (r)
        return r;
    in.nlink = 2;
    r = store_inode_create(s, txn, &in, NULL, 0);
    if (r == 0)
        r = store_dirent_put(s, txn, l.parent, l.name, l.len, in.ino);
    if (r == 0)
        r = touch_dir(s, txn, l.parent, +1, now);
    if (r == 0)
        *out = in;
    return r;
}

/*
 * A size that does not grow the file also frees every chunk past the new
 * end, including chunks a writer allocated past the old size before
 * extending it, so nothing stale reappears if the file grows again.
 */
static int set_size(struct store *s, MDB_txn *txn, struct store_inode *in, uint64_t size,
                    struct store_chunk_list *freed)
{
    uint64_t cs = store_get_settings(s)->chunk_size;
    uint64_t removed = 0;
    int r = 0;

    if (size <= in->size) {
        r = store_file_chunks_drop(s, txn, in->ino, (size + cs - 1) / cs, freed, &removed);
        if (r)
            return r;
        in->nchunks = in->nchunks >= removed ? in->nchunks - removed : 0;
    }
    in->size = size;
    return 0;
}

int nstree_create(struct store *s, MDB_txn *txn, const struct nstree_create_args *a,
                  struct store_inode *out, bool *created, struct store_chunk_list *freed)
{
    struct store_inode in;
    struct loc l;
    uint32_t repl = a->replication ? a->replication : store_get_settings(s)->replication;
    int r;

    if ((a->mode & S_IFMT) && (a->mode & S_IFMT) != S_IFREG)
        return -EINVAL;
    if (repl < 1 || repl > STORE_MAX_REPLICATION)
        return -EINVAL;
    if (a->size > STORE_MAX_FILE_SIZE)
        return -EFBIG;
    r = resolve(s, txn, a->path, &l);
    if (r)
        return r;
    if (l.ino) {
        if (a->exclusive)
            return -EEXIST;
        r = store_inode_get(s, txn, l.ino, &in);
        if (r)
            return r;
        if (S_ISDIR(in.mode))
            return -EISDIR;
        if (!S_ISREG(in.mode))
            return -EEXIST;
        if (a->truncate) {
            r = set_size(s, txn, &in, 0, freed);
            if (r)
                return r;
            in.mtime = in.ctime = a->now;
            r = store_inode_update(s, txn, &in);
            if (r)
                return r;
        }
        *out = in;
        *created = false;
        return 0;
    }
    r = new_inode(s, txn, S_IFREG | (a->mode & 07777), a->uid, a->gid, a->now, &in);
    if (r)
        return r;
    in.replication = repl;
    in.size = a->size;
    r = store_inode_create(s, txn, &in, NULL, 0);
    if (r == 0)
        r = store_dirent_put(s, txn, l.parent, l.name, l.len, in.ino);
    if (r == 0)
        r = touch_dir(s, txn, l.parent, 0, a->now);
    if (r == 0) {
        *out = in;
        *created = true;
    }
    return r;
}

struct readdir_walk {
    struct store *s;
    MDB_txn *txn;
    size_t max, n;
    nstree_dirent_fn fn;
    void *arg;
};

static int readdir_entry(const char *name, size_t len, uint64_t ino, void *arg)
{
    struct readdir_walk *w = arg;
    struct store_inode in;
    int r;

    if (w->n == w->max)
        return 1; /* one more entry exists: not the end */
    r = store_inode_get(w->s, w->txn, ino, &in);
    if (r)
        return r == -ENOENT ? -EIO : r;
    w->fn(name, len, &in, w->arg);
    w->n++;
    return 0;
}

int nstree_readdir(struct store *s, MDB_txn *txn, const char *path, const char *after, size_t max,
                   nstree_dirent_fn fn, void *arg, bool *eof)
{
    struct readdir_walk w = {s, txn, max, 0, fn, arg};
    struct store_inode dir;
    int r;

    if (after && strlen(after) > STORE_NAME_MAX)
        return -ENAMETOOLONG;
    r = nstree_stat(s, txn, path, &dir);
    if (r)
        return r;
    if (!S_ISDIR(dir.mode))
        return -ENOTDIR;
    r = store_dirent_scan(s, txn, dir.ino, after, readdir_entry, &w);
    if (r < 0)
        return r;
    *eof = r == 0;
    return 0;
}

int nstree_unlink(struct store *s, MDB_txn *txn, const char *path, int64_t now,
                  struct store_chunk_list *freed)
{
    struct store_inode in;
    struct loc l;
    int r = resolve(s, txn, path, &l);

    if (r)
        return r;
    if (!l.parent)
        return -EISDIR;
    if (!l.ino)
        return -ENOENT;
    r = store_inode_get(s, txn, l.ino, &in);
    if (r)
        return r;
    if (S_ISDIR(in.mode))
        return -EISDIR;
    r = store_dirent_del(s, txn, l.parent, l.name, l.len);
    if (r == 0)
        r = drop_link(s, txn, &in, now, freed);
    if (r == 0)
        r = touch_dir(s, txn, l.parent, 0, now);
    return r;
}

int nstree_rmdir(struct store *s, MDB_txn *txn, const char *path, int64_t now)
{
    struct store_inode in;
    struct loc l;
    int r = resolve(s, txn, path, &l);

    if (r)
        return r;
    if (!l.parent)
        return -EBUSY;
    if (!l.ino)
        return -ENOENT;
    r = store_inode_get(s, txn, l.ino, &in);
    if (r)
        return r;
    if (!S_ISDIR(in.mode))
        return -ENOTDIR;
    r = store_dir_empty(s, txn, l.ino);
    if (r == 0)
        r = store_dirent_del(s, txn, l.parent, l.name, l.len);
    if (r == 0)
        r = store_inode_delete(s, txn, l.ino);
    if (r == 0)
        r = touch_dir(s, txn, l.parent, -1, now);
    return r;
}

int nstree_rename(struct store *s, MDB_txn *txn, const char *from, const char *to, uint32_t flags,
                  int64_t now, struct store_chunk_list *freed)
{
    struct store_inode src, dst;
    struct loc lf, lt;
    bool src_dir;
    int r;

    if (flags & ~NSTREE_RENAME_NOREPLACE)
        return -EINVAL;
    r = resolve(s, txn, from, &lf);
    if (r)
        return r;
    r = resolve(s, txn, to, &lt);
    if (r)
        return r;
    if (!lf.parent || !lt.parent)
        return -EBUSY;
    if (!lf.ino)
        return -ENOENT;
    r = store_inode_get(s, txn, lf.ino, &src);
    if (r)
        return r;
    src_dir = S_ISDIR(src.mode);
    if (src_dir && path_inside(from, to))
        return -EINVAL;
    if (lt.ino == lf.ino)
        return (flags & NSTREE_RENAME_NOREPLACE) ? -EEXIST : 0;
    if (lt.ino) {
        if (flags & NSTREE_RENAME_NOREPLACE)
            return -EEXIST;
        r = store_inode_get(s, txn, lt.ino, &dst);
        if (r)
            return r;
        if (src_dir && !S_ISDIR(dst.mode))
            return -ENOTDIR;
        if (!src_dir && S_ISDIR(dst.mode))
            return -EISDIR;
        if (S_ISDIR(dst.mode)) {
            r = store_dir_empty(s, txn, dst.ino);
            if (r == 0)
                r = store_inode_delete(s, txn, dst.ino);
            if (r == 0)
                r = touch_dir(s, txn, lt.parent, -1, now);
        } else {
            r = drop_link(s, txn, &dst, now, freed);
        }
        if (r)
            return r;
    }
    r = store_dirent_del(s, txn, lf.parent, lf.name, lf.len);
    if (r)
        return r;
    r = store_dirent_put(s, txn, lt.parent, lt.name, lt.len, src.ino);
    if (r)
        return r;
    r = touch_dir(s, txn, lf.parent, src_dir ? -1 : 0, now);
    if (r == 0)
        r = touch_dir(s, txn, lt.parent, src_dir ? +1 : 0, now);
    if (r)
        return r;
    r = store_inode_get(s, txn, src.ino, &src);
    if (r)
        return r;
    src.ctime = now;
    return store_inode_update(s, txn, &src);
}

int nstree_link(struct store *s, MDB_txn *txn, const char *from, const char *to, int64_t now,
                struct store_inode *out)
{
    struct store_inode in;
    struct loc lf, lt;
    int r = resolve(s, txn, from, &lf);

    if (r)
        return r;
    r = resolve(s, txn, to, &lt);
    if (r)
        return r;
    if (!lf.ino)
        return -ENOENT;
    if (lt.ino)
        return -EEXIST;
    r = store_inode_get(s, txn, lf.ino, &in);
    if (r)
        return r;
    if (S_ISDIR(in.mode))
        return -EPERM;
    if (in.nlink >= NSTREE_MAX_NLINK)
        return -EMLINK;
    in.nlink++;
    in.ctime = now;
    r = store_inode_update(s, txn, &in);
    if (r == 0)
        r = store_dirent_put(s, txn, lt.parent, lt.name, lt.len, in.ino);
    if (r == 0)
        r = touch_dir(s, txn, lt.parent, 0, now);
    if (r == 0)
        *out = in;
    return r;
}

int nstree_symlink(struct store *s, MDB_txn *txn, const char *target, const char *path,
                   uint32_t uid, uint32_t gid, int64_t now, struct store_inode *out)
{
    size_t tlen = target ? strlen(target) : 0;
    struct store_inode in;
    struct loc l;
    int r;

    if (tlen == 0)
        return -EINVAL;
    if (tlen > NSTREE_SYMLINK_MAX)
        return -ENAMETOOLONG;
    r = resolve(s, txn, path, &l);
    if (r)
        return r;
    if (l.ino)
        return -EEXIST;
    r = new_inode(s, txn, S_IFLNK | 0777, uid, gid, now, &in);
    if (r)
        return r;
    in.size = tlen;
    r = store_inode_create(s, txn, &in, target, tlen);
    if (r == 0)
        r = store_dirent_put(s, txn, l.parent, l.name, l.len, in.ino);
    if (r == 0)
        r = touch_dir(s, txn, l.parent, 0, now);
    if (r == 0)
        *out = in;
    return r;
}

int nstree_readlink(struct store *s, MDB_txn *txn, const char *path, char *buf, size_t len)
{
    struct store_inode in;
    int r = nstree_stat(s, txn, path, &in);

    if (r)
        return r;
    if (!S_ISLNK(in.mode))
        return -EINVAL;
    return store_inode_target(s, txn, in.ino, buf, len);
}

/* The trim half of a shrink: the chunk cut by the new end gets its new version. */
static int commit_trim(struct store *s, MDB_txn *txn, const struct nstree_setattr_args *a,
                       const struct store_inode *in)
{
    uint64_t cs = store_get_settings(s)->chunk_size, chunk_id;
    int r;

    if (a->size % cs == 0 || a->size == 0)
        return -EINVAL;
    r = store_file_chunk(s, txn, in->ino, (a->size - 1) / cs, &chunk_id);
    if (r)
        return r == -ENOENT ? -ESTALE : r;
    if (chunk_id != a->trim_chunk)
        return -ESTALE;
    return store_chunk_set_version(s, txn, chunk_id, a->trim_old_version, a->trim_new_version);
}

int nstree_setattr(struct store *s, MDB_txn *txn, const struct nstree_setattr_args *a,
                   struct store_inode *out, struct store_chunk_list *freed)
{
    struct store_inode in;
    int r;

    if (a->valid & ~NSTREE_SET_ALL)
        return -EINVAL;
    if (a->path && a->path[0])
        r = nstree_stat(s, txn, a->path, &in);
    else
        r = store_inode_get(s, txn, a->ino, &in);
    if (r)
        return r;
    if (a->valid & NSTREE_SET_SIZE) {
        if (S_ISDIR(in.mode))
            return -EISDIR;
        if (!S_ISREG(in.mode))
            return -EINVAL;
        if (a->size > STORE_MAX_FILE_SIZE)
            return -EFBIG;
        if (a->trim_chunk) {
            if (a->size >= in.size)
                return -ESTALE;
            r = commit_trim(s, txn, a, &in);
            if (r)
                return r;
        }
        if (a->size != in.size)
            in.mtime = a->now;
        r = set_size(s, txn, &in, a->size, freed);
        if (r)
            return r;
    }
    if (a->valid & NSTREE_SET_MODE)
        in.mode = (in.mode & S_IFMT) | (a->mode & 07777);
    if (a->valid & NSTREE_SET_UID)
        in.uid = a->uid;
    if (a->valid & NSTREE_SET_GID)
        in.gid = a->gid;
    if (a->valid & NSTREE_SET_ATIME_NOW)
        in.atime = a->now;
    else if (a->valid & NSTREE_SET_ATIME)
        in.atime = a->atime;
    if (a->valid & NSTREE_SET_MTIME_NOW)
        in.mtime = a->now;
    else if (a->valid & NSTREE_SET_MTIME)
        in.mtime = a->mtime;
    in.ctime = a->now;
    r = store_inode_update(s, txn, &in);
    if (r == 0)
        *out = in;
    return r;
}

int nstree_extend(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t size, int64_t now,
                  bool touch, uint64_t *out)
{
    struct store_inode in;
    int r;

    if (size > STORE_MAX_FILE_SIZE)
        return -EFBIG;
    r = store_inode_get(s, txn, ino, &in);
    if (r)
        return r;
    if (S_ISDIR(in.mode))
        return -EISDIR;
    if (!S_ISREG(in.mode))
        return -EINVAL;
    if (size > in.size) {
        in.size = size;
        in.mtime = in.ctime = now;
    } else if (touch && now > in.mtime) {
        in.mtime = now;
        if (now > in.ctime)
            in.ctime = now;
    } else {
        *out = in.size;
        return 0;
    }
    r = store_inode_update(s, txn, &in);
    if (r)
        return r;
    *out = in.size;
    return 0;
}
