/*
 * keelfs: see keelfs.h. Every operation maps onto one or two libkeel calls;
 * libkeel's negative errnos are FUSE's answers as they are. Runs on FUSE's
 * worker threads, many at once (and the requests keelfs_take takes end
 * on libkeel's I/O thread): libkeel is thread-safe, and the only state
 * here is the per-open struct below.
 */
#include "keelfs.h"

#include "fdio.h"
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* One open file description. */
struct kfh {
    keel_file *f;
    bool sync;       /* O_SYNC / O_DSYNC: flush after every write */
    bool fast_write; /* O_DIRECT alone: writes and fsyncs go to keelfs_take */
};

static keel_client *client(void)
{
    return ((struct keelfs *)fuse_get_context()->private_data)->client;
}

static struct kfh *fh(const struct fuse_file_info *fi)
{
    return (struct kfh *)(uintptr_t)fi->fh;
}

static void to_stat(const struct keel_stat *ks, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ks->ino;
    st->st_mode = ks->mode;
    st->st_nlink = ks->nlink;
    st->st_uid = ks->uid;
    st->st_gid = ks->gid;
    st->st_size = (off_t)ks->size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)(ks->allocated / 512);
    st->st_atim.tv_sec = ks->atime_ns / 1000000000;
    st->st_atim.tv_nsec = ks->atime_ns % 1000000000;
    st->st_mtim.tv_sec = ks->mtime_ns / 1000000000;
    st->st_mtim.tv_nsec = ks->mtime_ns % 1000000000;
    st->st_ctim.tv_sec = ks->ctime_ns / 1000000000;
    st->st_ctim.tv_nsec = ks->ctime_ns % 1000000000;
}

static void *kfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    cfg->use_ino = 1;
    cfg->attr_timeout = KEELFS_ATTR_TIMEOUT;
    cfg->entry_timeout = KEELFS_ATTR_TIMEOUT;
    cfg->negative_timeout = KEELFS_NEGATIVE_TIMEOUT;
    /* An unlinked file still open is renamed aside until its last close. */
    cfg->hard_remove = 0;
    /* Large requests: sequential I/O is not cut into 128 KiB pieces. */
    conn->max_write = KEELFS_MAX_IO;
    conn->max_readahead = KEELFS_MAX_IO;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    /* Cached pages go at open, not when the mtime moves (keelfs.h). */
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    return fuse_get_context()->private_data;
}

static int kfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    struct keel_stat ks;
    int r = fi ? keel_fstat(fh(fi)->f, &ks) : keel_stat(client(), path, &ks);

    if (r == 0)
        to_stat(&ks, st);
    return r;
}

static int kfs_readlink(const char *path, char *buf, size_t len)
{
    int r = keel_readlink(client(), path, buf, len);

    return r < 0 ? r : 0;
}

static int kfs_mkdir(const char *path, mode_t mode)
{
    return keel_mkdir(client(), path, mode);
}

static int kfs_unlink(const char *path)
{
    return keel_unlink(client(), path);
}

static int kfs_rmdir(const char *path)
{
    return keel_rmdir(client(), path);
}

static int kfs_symlink(const char *target, const char *path)
{
    return keel_symlink(client(), target, path);
}

static int kfs_rename(const char *from, const char *to, unsigned int flags)
{
    if (flags & ~RENAME_NOREPLACE)
        return -EINVAL; /* RENAME_EXCHANGE, RENAME_WHITEOUT */
    return keel_rename(client(), from, to, flags & RENAME_NOREPLACE ? KEEL_RENAME_NOREPLACE : 0);
}

static int kfs_link(const char *from, const char *to)
{
    return keel_link(client(), from, to);
}

static int setattr(const char *path, struct fuse_file_info *fi, const struct keel_setattr *sa)
{
    if (fi && (sa->mask & KEEL_SET_SIZE) && sa->mask == KEEL_SET_SIZE)
        return keel_truncate(fh(fi)->f, sa->size);
    if (!path)
        return -EBADF;
    return keel_setattr(client(), path, sa, NULL);
}

static int kfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    struct keel_setattr sa = {.mask = KEEL_SET_MODE, .mode = mode};

    return setattr(path, fi, &sa);
}

static int kfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    struct keel_setattr sa = {.uid = uid, .gid = gid};

    if (uid != (uid_t)-1)
        sa.mask |= KEEL_SET_UID;
    if (gid != (gid_t)-1)
        sa.mask |= KEEL_SET_GID;
    return sa.mask ? setattr(path, fi, &sa) : 0;
}

static int kfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    struct keel_setattr sa = {.mask = KEEL_SET_SIZE, .size = (uint64_t)size};

    if (size < 0)
        return -EINVAL;
    return setattr(path, fi, &sa);
}

static int kfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    struct keel_setattr sa = {0};

    if (tv[0].tv_nsec == UTIME_NOW)
        sa.mask |= KEEL_SET_ATIME_NOW;
    else if (tv[0].tv_nsec != UTIME_OMIT) {
        sa.mask |= KEEL_SET_ATIME;
        sa.atime_ns = (int64_t)tv[0].tv_sec * 1000000000 + tv[0].tv_nsec;
    }
    if (tv[1].tv_nsec == UTIME_NOW)
        sa.mask |= KEEL_SET_MTIME_NOW;
    else if (tv[1].tv_nsec != UTIME_OMIT) {
        sa.mask |= KEEL_SET_MTIME;
        sa.mtime_ns = (int64_t)tv[1].tv_sec * 1000000000 + tv[1].tv_nsec;
    }
    return sa.mask ? setattr(path, fi, &sa) : 0;
}

static int open_flags(int flags)
{
    int kf = 0;

    switch (flags & O_ACCMODE) {
    case O_RDONLY:
        kf = KEEL_O_READ;
        break;
    case O_WRONLY:
        kf = KEEL_O_WRITE;
        break;
    default:
        kf = KEEL_O_RDWR;
    }
    /* The kernel reads pages around a write into the page cache. */
    kf |= KEEL_O_READ;
    /* Buffered writes return once queued, as with a local disk's page
     * cache; close(2) waits for them and fsync(2) makes them durable.
     * Direct and synchronous writers expect the replicas to have the data. */
    if ((kf & KEEL_O_WRITE) && !(flags & (O_DIRECT | O_SYNC | O_DSYNC)))
        kf |= KEEL_O_WRITEBACK;
    if (flags & O_TRUNC)
        kf |= KEEL_O_TRUNC;
    return kf;
}

static int finish_open(keel_file *f, struct fuse_file_info *fi)
{
    struct kfh *h = calloc(1, sizeof(*h));

    if (!h) {
        keel_close(f);
        return -ENOMEM;
    }
    h->f = f;
    h->sync = (fi->flags & (O_SYNC | O_DSYNC)) != 0;
    h->fast_write = (fi->flags & O_DIRECT) && !h->sync;
    fi->fh = (uintptr_t)h;
    fi->direct_io = (fi->flags & O_DIRECT) != 0;
    fi->keep_cache = 0;
    if (fi->direct_io)
        fdio_flag_this_open();
    return 0;
}

static int kfs_open(const char *path, struct fuse_file_info *fi)
{
    keel_file *f;
    int r = keel_open(client(), path, open_flags(fi->flags), NULL, &f);

    return r ? r : finish_open(f, fi);
}

static int kfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    struct keel_open_args oa = {.mode = mode & 07777};
    int flags = open_flags(fi->flags) | KEEL_O_CREATE;
    keel_file *f;
    int r;

    if (fi->flags & O_EXCL)
        flags |= KEEL_O_EXCL;
    r = keel_open(client(), path, flags, &oa, &f);
    return r ? r : finish_open(f, fi);
}

static int kfs_read(const char *path, char *buf, size_t len, off_t off, struct fuse_file_info *fi)
{
    if (off < 0)
        return -EINVAL;
    return (int)keel_pread(fh(fi)->f, buf, len, (uint64_t)off);
}

/*
 * keelfs_take, on libkeel's I/O thread when keel-fuse's own loop reads
 * /dev/fuse there (serve.c), or on the libfuse worker that read the
 * request otherwise:
 * - reads, writes of up to KEELFS_FAST_IO bytes and fsyncs of files opened
 *   with O_DIRECT are handed to libkeel as they come from the kernel and
 *   answered from libkeel's completion, on its I/O thread, with no thread
 *   woken on the way: on a virtual machine a wakeup across CPUs is an
 *   interrupt through the hypervisor;
 * - but a read of more than KEELFS_FAST_IO bytes of a file not opened with
 *   O_DIRECT (the kernel's read-ahead, several at a time) is answered by a
 *   worker (serve_post), so that those copies into the kernel run on every
 *   core at once and do not hold the I/O thread up; an O_DIRECT reader
 *   sends one at a time, and waits for each;
 * - buffered writes of up to KEELFS_FAST_IO bytes are queued to be written
 *   behind and answered at once, unless the file has as much in flight as
 *   it may.
 * The rest go to libfuse (bench/README.md has the figures).
 */
struct fast {
    int fd;
    uint32_t opcode;
    uint64_t unique;
    keel_aio *aio;
    bool post;      /* a large read-ahead read: a worker answers it */
    ssize_t result; /* its result */
    char data[];    /* what is read, or what is written */
};

static void answer_read(void *arg)
{
    struct fast *fa = arg;

    (void)fdio_reply(fa->fd, fa->unique, 0, fa->data, (size_t)fa->result);
    free(fa);
}

static void fast_done(keel_aio *aio, void *arg)
{
    struct fast *fa = arg;
    ssize_t r = keel_aio_result(aio);
    struct fuse_write_out wo = {.size = (uint32_t)r};

    if (fa->post && r >= 0) {
        fa->result = r;
        keel_aio_release(aio);
        if (!serve_post(answer_read, fa))
            answer_read(fa);
        return;
    }
    if (r < 0)
        (void)fdio_reply(fa->fd, fa->unique, (int)r, NULL, 0);
    else if (fa->opcode == FUSE_READ)
        (void)fdio_reply(fa->fd, fa->unique, 0, fa->data, (size_t)r);
    else if (fa->opcode == FUSE_WRITE)
        (void)fdio_reply(fa->fd, fa->unique, 0, &wo, sizeof(wo));
    else
        (void)fdio_reply(fa->fd, fa->unique, 0, NULL, 0);
    keel_aio_release(aio);
    free(fa);
}

/* The open file and the payload size of a request keelfs_take can take,
 * or NULL. */
static struct kfh *fast_target(const struct fuse_in_header *h, size_t len, size_t *size)
{
    const void *in = h + 1;
    const struct fuse_read_in *rd = in;
    const struct fuse_write_in *wr = in;
    const struct fuse_fsync_in *fs = in;
    struct kfh *k;

    *size = 0;
    switch (h->opcode) {
    case FUSE_READ:
        if (len < sizeof(*h) + sizeof(*rd) || rd->size > KEELFS_MAX_IO)
            return NULL;
        *size = rd->size;
        return (struct kfh *)(uintptr_t)rd->fh;
    case FUSE_WRITE:
        if (len < sizeof(*h) + sizeof(*wr) || wr->size > KEELFS_FAST_IO ||
            len != sizeof(*h) + sizeof(*wr) + wr->size)
            return NULL;
        *size = wr->size;
        return (struct kfh *)(uintptr_t)wr->fh;
    case FUSE_FSYNC:
        if (len < sizeof(*h) + sizeof(*fs))
            return NULL;
        k = (struct kfh *)(uintptr_t)fs->fh;
        return k && k->fast_write ? k : NULL;
    default:
        return NULL;
    }
}

/* A write of a buffered file: queued to be written behind and answered at
 * once, unless the file has as much in flight as it may (or is opened
 * O_SYNC): then a worker takes it, and waits. */
static bool take_write_behind(int fd, const struct fuse_in_header *h, struct kfh *k, size_t size)
{
    const struct fuse_write_in *wr = (const void *)(h + 1);
    ssize_t n = wr->offset > INT64_MAX ? -EINVAL : keel_try_pwrite(k->f, wr + 1, size, wr->offset);
    struct fuse_write_out wo = {.size = (uint32_t)n};

    if (n == -EAGAIN)
        return false;
    (void)fdio_reply(fd, h->unique, n < 0 ? (int)n : 0, &wo, sizeof(wo));
    return true;
}

bool keelfs_take(int fd, const void *req, size_t len)
{
    const struct fuse_in_header *h = req;
    const struct fuse_read_in *rd = (const void *)(h + 1);
    const struct fuse_write_in *wr = (const void *)(h + 1);
    struct fast *fa;
    struct kfh *k;
    size_t size;
    int r;

    k = fast_target(h, len, &size);
    if (!k)
        return false;
    if (h->opcode == FUSE_WRITE && !k->fast_write)
        return take_write_behind(fd, h, k, size);
    fa = malloc(sizeof(*fa) + size);
    if (!fa)
        return false;
    fa->fd = fd;
    fa->opcode = h->opcode;
    fa->unique = h->unique;
    fa->post = h->opcode == FUSE_READ && size > KEELFS_FAST_IO && !k->fast_write;
    if (keel_aio_create(fast_done, fa, &fa->aio) != 0) {
        free(fa);
        return false;
    }
    switch (h->opcode) {
    case FUSE_READ:
        r = rd->offset > INT64_MAX ? -EINVAL
                                   : keel_aio_pread(k->f, fa->data, size, rd->offset, fa->aio);
        break;
    case FUSE_WRITE:
        /* The request's buffer is the reader's, reused for its next one. */
        memcpy(fa->data, wr + 1, size);
        r = wr->offset > INT64_MAX ? -EINVAL
                                   : keel_aio_pwrite(k->f, fa->data, size, wr->offset, fa->aio);
        break;
    default:
        r = keel_aio_flush(k->f, fa->aio);
    }
    if (r) {
        (void)fdio_reply(fd, h->unique, r, NULL, 0);
        keel_aio_release(fa->aio);
        free(fa);
    }
    return true;
}

static int kfs_write(const char *path, const char *buf, size_t len, off_t off,
                     struct fuse_file_info *fi)
{
    ssize_t r;

    if (off < 0)
        return -EINVAL;
    r = keel_pwrite(fh(fi)->f, buf, len, (uint64_t)off);
    if (r >= 0 && fh(fi)->sync) {
        int fr = keel_flush(fh(fi)->f);
        if (fr)
            return fr;
    }
    return (int)r;
}

static int kfs_statfs(const char *path, struct statvfs *sv)
{
    struct keel_statfs ks;
    uint64_t repl;
    int r = keel_statfs(client(), &ks);

    if (r)
        return r;
    /* Report what files can still use: raw space divided among replicas. */
    repl = ks.replication ? ks.replication : 1;
    memset(sv, 0, sizeof(*sv));
    sv->f_bsize = 4096;
    sv->f_frsize = 4096;
    sv->f_blocks = ks.capacity / repl / 4096;
    sv->f_bfree = ks.free / repl / 4096;
    sv->f_bavail = sv->f_bfree;
    sv->f_files = ks.files + 1000000;
    sv->f_ffree = 1000000;
    sv->f_favail = sv->f_ffree;
    sv->f_namemax = 255;
    return 0;
}

static int kfs_flush(const char *path, struct fuse_file_info *fi)
{
    /* close(2) promises no durability (fsync does), but once it returns
     * other clients see what was written, and it reports a failed write. */
    return keel_drain(fh(fi)->f);
}

static int kfs_release(const char *path, struct fuse_file_info *fi)
{
    struct kfh *h = fh(fi);
    int r = keel_close(h->f);

    free(h);
    return r;
}

static int kfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    return keel_flush(fh(fi)->f);
}

struct fill {
    void *buf;
    fuse_fill_dir_t filler;
};

static int fill_one(const char *name, const struct keel_stat *ks, void *arg)
{
    struct fill *fl = arg;
    struct stat st;

    to_stat(ks, &st);
    return fl->filler(fl->buf, name, &st, 0, FUSE_FILL_DIR_PLUS) ? 1 : 0;
}

static int kfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    struct fill fl = {buf, filler};
    int r;

    filler(buf, ".", NULL, 0, 0);
    filler(buf, "..", NULL, 0, 0);
    r = keel_readdir(client(), path, fill_one, &fl);
    return r == 1 ? 0 : r; /* 1: the kernel's buffer is full */
}

static int kfs_fallocate(const char *path, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
    struct keel_stat ks;
    int r;

    if (off < 0 || len <= 0)
        return -EINVAL;
    if (mode & ~FALLOC_FL_KEEP_SIZE)
        return -EOPNOTSUPP; /* punching holes is not supported yet */
    /* Thin provisioning: chunks are allocated on first write; only the
     * size changes. */
    if (mode & FALLOC_FL_KEEP_SIZE)
        return 0;
    r = keel_fstat(fh(fi)->f, &ks);
    if (r == 0 && ks.size < (uint64_t)off + (uint64_t)len)
        r = keel_truncate(fh(fi)->f, (uint64_t)off + (uint64_t)len);
    return r;
}

const struct fuse_operations keelfs_ops = {
    .init = kfs_init,
    .getattr = kfs_getattr,
    .readlink = kfs_readlink,
    .mkdir = kfs_mkdir,
    .unlink = kfs_unlink,
    .rmdir = kfs_rmdir,
    .symlink = kfs_symlink,
    .rename = kfs_rename,
    .link = kfs_link,
    .chmod = kfs_chmod,
    .chown = kfs_chown,
    .truncate = kfs_truncate,
    .open = kfs_open,
    .read = kfs_read,
    .write = kfs_write,
    .statfs = kfs_statfs,
    .flush = kfs_flush,
    .release = kfs_release,
    .fsync = kfs_fsync,
    .readdir = kfs_readdir,
    .create = kfs_create,
    .utimens = kfs_utimens,
    .fallocate = kfs_fallocate,
};
