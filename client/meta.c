/*
 * meta: the namespace half of the public API (keel_stat .. keel_statfs).
 * Each call is one request to the namenode, made synchronously through
 * core_nn_sync (retried while the namenode is away), with the answer copied
 * out on the I/O thread.
 *
 * A request retried after the connection dropped may have taken effect the
 * first time; the retry then fails with -EEXIST or -ENOENT. For mkdir,
 * symlink, link, unlink and rmdir those answers after a lost connection are
 * taken as success, as NFS clients do.
 */
#include "chunkio.h"
#include "core.h"
#include "errors.h"
#include "io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READDIR_PAGE 256

struct attr_out {
    keel_client *c;
    struct keel_stat *st;
};

static const Keel__Attr *reply_attr(const Keel__Envelope *rep)
{
    switch (rep->body_case) {
    case KEEL__ENVELOPE__BODY_STAT_REP:
        return rep->stat_rep->attr;
    case KEEL__ENVELOPE__BODY_MKDIR_REP:
        return rep->mkdir_rep->attr;
    case KEEL__ENVELOPE__BODY_SETATTR_REP:
        return rep->setattr_rep->attr;
    case KEEL__ENVELOPE__BODY_LINK_REP:
        return rep->link_rep->attr;
    case KEEL__ENVELOPE__BODY_SYMLINK_REP:
        return rep->symlink_rep->attr;
    default:
        return NULL;
    }
}

static void copy_attr(const Keel__Envelope *rep, void *arg)
{
    struct attr_out *o = arg;

    if (o->st) {
        core_attr_to_stat(reply_attr(rep), o->c->chunk_size, o->st);
        if (rep->body_case == KEEL__ENVELOPE__BODY_STAT_REP)
            chunkio_local_attr(o->c, o->st);
    }
}

static bool bad_path(const char *p)
{
    return !p || p[0] != '/';
}

int keel_stat(keel_client *c, const char *path, struct keel_stat *st)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatReq req = KEEL__STAT_REQ__INIT;
    struct keel_stat tmp;
    struct attr_out o = {c, &tmp};
    int r;

    if (!c || bad_path(path) || !st)
        return -EINVAL;
    req.path = (char *)path;
    env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
    env.stat_req = &req;
    r = core_nn_sync(c, &env, copy_attr, &o, 0);
    if (r == 0)
        *st = tmp;
    return r;
}

/* A namespace call answered by success or an error only. */
static int simple_call(keel_client *c, Keel__Envelope *env, int done_err)
{
    return core_nn_sync(c, env, NULL, NULL, done_err);
}

int keel_mkdir(keel_client *c, const char *path, uint32_t mode)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__MkdirReq req = KEEL__MKDIR_REQ__INIT;

    if (!c || bad_path(path))
        return -EINVAL;
    req.path = (char *)path;
    req.mode = S_IFDIR | (mode & 07777);
    req.uid = (uint32_t)getuid();
    req.gid = (uint32_t)getgid();
    env.body_case = KEEL__ENVELOPE__BODY_MKDIR_REQ;
    env.mkdir_req = &req;
    return simple_call(c, &env, -EEXIST);
}

struct page {
    keel_client *c;
    size_t n;
    char **names;
    struct keel_stat *stats;
    bool eof;
    int err;
};

static void copy_page(const Keel__Envelope *rep, void *arg)
{
    struct page *pg = arg;
    const Keel__ReaddirRep *r;

    if (rep->body_case != KEEL__ENVELOPE__BODY_READDIR_REP) {
        pg->err = -EPROTO;
        return;
    }
    r = rep->readdir_rep;
    pg->eof = r->eof;
    pg->names = calloc(r->n_entries ? r->n_entries : 1, sizeof(char *));
    pg->stats = calloc(r->n_entries ? r->n_entries : 1, sizeof(struct keel_stat));
    if (!pg->names || !pg->stats) {
        pg->err = -ENOMEM;
        return;
    }
    for (size_t i = 0; i < r->n_entries; i++) {
        pg->names[i] = strdup(r->entries[i]->name);
        if (!pg->names[i]) {
            pg->err = -ENOMEM;
            return;
        }
        core_attr_to_stat(r->entries[i]->attr, pg->c->chunk_size, &pg->stats[i]);
        chunkio_local_attr(pg->c, &pg->stats[i]);
        pg->n = i + 1;
    }
}

static void free_page(struct page *pg)
{
    for (size_t i = 0; i < pg->n; i++)
        free(pg->names[i]);
    free(pg->names);
    free(pg->stats);
    memset(pg, 0, sizeof(*pg));
}

int keel_readdir(keel_client *c, const char *path, keel_readdir_fn fn, void *arg)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReaddirReq req = KEEL__READDIR_REQ__INIT;
    char *after = NULL;
    int r = 0;

    if (!c || bad_path(path) || !fn)
        return -EINVAL;
    req.path = (char *)path;
    req.max = READDIR_PAGE;
    env.body_case = KEEL__ENVELOPE__BODY_READDIR_REQ;
    env.readdir_req = &req;
    for (;;) {
        struct page pg = {.c = c};

        req.after = after ? after : (char *)"";
        r = core_nn_sync(c, &env, copy_page, &pg, 0);
        if (r == 0)
            r = pg.err;
        for (size_t i = 0; r == 0 && i < pg.n; i++)
            r = fn(pg.names[i], &pg.stats[i], arg);
        if (r == 0 && !pg.eof && pg.n > 0) {
            free(after);
            after = strdup(pg.names[pg.n - 1]);
            if (!after)
                r = -ENOMEM;
        }
        bool last = pg.eof || pg.n == 0;
        free_page(&pg);
        if (r || last)
            break;
    }
    free(after);
    return r;
}

int keel_unlink(keel_client *c, const char *path)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__UnlinkReq req = KEEL__UNLINK_REQ__INIT;

    if (!c || bad_path(path))
        return -EINVAL;
    req.path = (char *)path;
    env.body_case = KEEL__ENVELOPE__BODY_UNLINK_REQ;
    env.unlink_req = &req;
    return simple_call(c, &env, -ENOENT);
}

int keel_rmdir(keel_client *c, const char *path)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__RmdirReq req = KEEL__RMDIR_REQ__INIT;

    if (!c || bad_path(path))
        return -EINVAL;
    req.path = (char *)path;
    env.body_case = KEEL__ENVELOPE__BODY_RMDIR_REQ;
    env.rmdir_req = &req;
    return simple_call(c, &env, -ENOENT);
}

int keel_rename(keel_client *c, const char *from, const char *to, unsigned flags)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__RenameReq req = KEEL__RENAME_REQ__INIT;

    if (!c || bad_path(from) || bad_path(to) || (flags & ~KEEL_RENAME_NOREPLACE))
        return -EINVAL;
    req.from = (char *)from;
    req.to = (char *)to;
    req.flags = flags;
    env.body_case = KEEL__ENVELOPE__BODY_RENAME_REQ;
    env.rename_req = &req;
    return simple_call(c, &env, 0);
}

int keel_link(keel_client *c, const char *from, const char *to)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__LinkReq req = KEEL__LINK_REQ__INIT;

    if (!c || bad_path(from) || bad_path(to))
        return -EINVAL;
    req.from = (char *)from;
    req.to = (char *)to;
    env.body_case = KEEL__ENVELOPE__BODY_LINK_REQ;
    env.link_req = &req;
    return simple_call(c, &env, -EEXIST);
}

int keel_symlink(keel_client *c, const char *target, const char *path)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__SymlinkReq req = KEEL__SYMLINK_REQ__INIT;

    if (!c || !target || bad_path(path))
        return -EINVAL;
    req.target = (char *)target;
    req.path = (char *)path;
    req.uid = (uint32_t)getuid();
    req.gid = (uint32_t)getgid();
    env.body_case = KEEL__ENVELOPE__BODY_SYMLINK_REQ;
    env.symlink_req = &req;
    return simple_call(c, &env, -EEXIST);
}

struct link_out {
    char *buf;
    size_t len;
    int full;
};

static void copy_target(const Keel__Envelope *rep, void *arg)
{
    struct link_out *o = arg;

    if (rep->body_case != KEEL__ENVELOPE__BODY_READLINK_REP || !rep->readlink_rep->target) {
        o->full = -EPROTO;
        return;
    }
    o->full = (int)strlen(rep->readlink_rep->target);
    if (o->len)
        snprintf(o->buf, o->len, "%s", rep->readlink_rep->target);
}

int keel_readlink(keel_client *c, const char *path, char *buf, size_t len)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReadlinkReq req = KEEL__READLINK_REQ__INIT;
    struct link_out o = {buf, len, 0};
    int r;

    if (!c || bad_path(path) || (!buf && len))
        return -EINVAL;
    req.path = (char *)path;
    env.body_case = KEEL__ENVELOPE__BODY_READLINK_REQ;
    env.readlink_req = &req;
    r = core_nn_sync(c, &env, copy_target, &o, 0);
    return r ? r : o.full;
}

int keel_setattr(keel_client *c, const char *path, const struct keel_setattr *sa,
                 struct keel_stat *st)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__SetattrReq req = KEEL__SETATTR_REQ__INIT;
    struct keel_stat tmp;
    struct attr_out o = {c, &tmp};
    int r;

    if (!c || bad_path(path) || !sa || (sa->mask & ~0xffu))
        return -EINVAL;
    if (sa->mask & KEEL_SET_SIZE)
        io_wb_barrier_all(c); /* no write queued before may land after */
    req.path = (char *)path;
    req.valid = sa->mask; /* keel_setattr_mask matches SetattrValid bit for bit */
    req.mode = sa->mode & 07777;
    req.uid = sa->uid;
    req.gid = sa->gid;
    req.size = sa->size;
    req.atime_ns = sa->atime_ns;
    req.mtime_ns = sa->mtime_ns;
    req.client_id = c->client_id;
    env.body_case = KEEL__ENVELOPE__BODY_SETATTR_REQ;
    env.setattr_req = &req;
    r = core_nn_sync(c, &env, copy_attr, &o, 0);
    if (r == 0 && (sa->mask & KEEL_SET_SIZE))
        io_truncated_by_path(c, tmp.ino, sa->size);
    if (r == 0 && st)
        *st = tmp;
    return r;
}

static void copy_statfs(const Keel__Envelope *rep, void *arg)
{
    struct keel_statfs *st = arg;
    const Keel__StatfsRep *r = rep->statfs_rep;

    memset(st, 0, sizeof(*st));
    if (rep->body_case != KEEL__ENVELOPE__BODY_STATFS_REP)
        return;
    st->capacity = r->capacity;
    st->used = r->used;
    st->free = r->free;
    st->files = r->files;
    st->chunk_size = r->chunk_size;
    st->live_nodes = r->live_nodes;
    st->replication = r->replication;
}

int keel_statfs(keel_client *c, struct keel_statfs *st)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatfsReq req = KEEL__STATFS_REQ__INIT;
    struct keel_statfs tmp;
    int r;

    if (!c || !st)
        return -EINVAL;
    env.body_case = KEEL__ENVELOPE__BODY_STATFS_REQ;
    env.statfs_req = &req;
    r = core_nn_sync(c, &env, copy_statfs, &tmp, 0);
    if (r == 0)
        *st = tmp;
    return r;
}
