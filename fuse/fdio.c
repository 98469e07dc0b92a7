/*
 * fdio: see fdio.h. The open handler marks its thread; the next reply that
 * thread sends is that open's reply, and if it is a successful OPEN or
 * CREATE answer its fuse_open_out gets the flag. take_fn is set once,
 * before the session's threads start.
 */
#include "fdio.h"

#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static _Thread_local bool flag_next_reply;

void fdio_flag_this_open(void)
{
    flag_next_reply = true;
}

static fdio_take_fn take_fn;

/*
 * Reads the next request for libfuse, after passing each to take_fn, which
 * may answer it itself. INTERRUPTs are dropped: keel-fuse's handlers run to
 * the end anyway, the kernel needs no answer, and libfuse would keep one
 * for a request it never saw (answered by take_fn) until it stopped.
 * libfuse cancels its workers here when the session ends, so take_fn runs
 * with cancellation off, as libfuse's own handlers do.
 */
static ssize_t fd_read(int fd, void *buf, size_t len, void *userdata)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        const struct fuse_in_header *h = buf;
        bool taken;
        int old;

        if (n < (ssize_t)sizeof(*h) || h->len != (size_t)n)
            return n;
        if (h->opcode == FUSE_INTERRUPT)
            continue;
        if (!take_fn)
            return n;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
        taken = take_fn(fd, buf, (size_t)n);
        pthread_setcancelstate(old, NULL);
        if (!taken)
            return n;
    }
}

int fdio_reply(int fd, uint64_t unique, int error, const void *data, size_t len)
{
    struct fuse_out_header h = {.len = (uint32_t)(sizeof(h) + (error ? 0 : len)),
                                .error = error,
                                .unique = unique};
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)data, error ? 0 : len}};
    ssize_t n = writev(fd, iov, error || len == 0 ? 1 : 2);

    /* ENOENT: the kernel gave the request up (interrupted, or unmounted). */
    return n < 0 ? -errno : 0;
}

/* The fuse_open_out of a successful OPEN or CREATE reply, if this is one. */
static struct fuse_open_out *open_out(struct iovec *iov, int count)
{
    const struct fuse_out_header *h;
    size_t payload;

    if (count != 2 || iov[0].iov_len != sizeof(*h))
        return NULL;
    h = iov[0].iov_base;
    payload = iov[1].iov_len;
    if (h->error != 0 || h->len != sizeof(*h) + payload)
        return NULL;
    if (payload == sizeof(struct fuse_open_out))
        return iov[1].iov_base;
    if (payload == sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out))
        return (struct fuse_open_out *)((char *)iov[1].iov_base + sizeof(struct fuse_entry_out));
    return NULL;
}

static ssize_t fd_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    if (flag_next_reply) {
        struct fuse_open_out *o = open_out(iov, count);

        flag_next_reply = false;
        if (o && (o->open_flags & FOPEN_DIRECT_IO))
            o->open_flags |= FOPEN_PARALLEL_DIRECT_WRITES;
    }
    return writev(fd, iov, count);
}

int fdio_install(struct fuse_session *se, fdio_take_fn take)
{
    static const struct fuse_custom_io io = {.writev = fd_writev, .read = fd_read};

    take_fn = take;
    return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
