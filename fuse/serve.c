/*
 * serve: see serve.h.
 *
 * The I/O thread reads into its own buffer; a request the hook does not
 * take is queued in that buffer, and the I/O thread takes a new one, so a
 * 1 MiB write is not copied on the way. The workers block signals, which
 * reach the main thread: libfuse's handlers only mark the session as
 * exited, so the main thread looks at it at least once a second.
 */
#include "serve.h"

#include "list.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define WORKERS  10 /* libfuse's own default */
#define READ_MAX 32 /* requests read per wakeup, before libkeel starts them */

struct req {
    struct list link;
    void (*fn)(void *arg); /* a job of serve_post, or NULL: a request */
    void *arg;
    size_t len;
    char data[];
};

struct serve {
    struct fuse_session *se;
    int fd;
    size_t bufsize;
    fdio_take_fn take;
    struct req *cur; /* the I/O thread's read buffer */

    pthread_mutex_t m;
    pthread_cond_t cv; /* workers: a request is queued, or the end */
    struct list queue; /* struct req, guarded by m */
    bool ending;       /* guarded by m */

    sem_t ended;      /* posted by the I/O thread when /dev/fuse ends */
    atomic_int error; /* the I/O thread's: 0 or a negative errno */
    atomic_bool done;
};

/* The session serve_run serves, for serve_post. */
static pthread_mutex_t posting = PTHREAD_MUTEX_INITIALIZER;
static struct serve *serving; /* guarded by posting */

static struct req *req_new(const struct serve *s)
{
    struct req *r = malloc(sizeof(struct req) + s->bufsize);

    if (r)
        r->fn = NULL;
    return r;
}

/* Queues r for a worker; false once the workers are told to stop. */
static bool enqueue(struct serve *s, struct req *r)
{
    bool ok;

    pthread_mutex_lock(&s->m);
    ok = !s->ending;
    if (ok) {
        list_add_tail(&s->queue, &r->link);
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->m);
    return ok;
}

bool serve_post(void (*fn)(void *arg), void *arg)
{
    struct req *r = malloc(sizeof(*r));
    bool posted = false;

    if (!r)
        return false;
    r->fn = fn;
    r->arg = arg;
    pthread_mutex_lock(&posting);
    if (serving)
        posted = enqueue(serving, r);
    pthread_mutex_unlock(&posting);
    if (!posted)
        free(r);
    return posted;
}

/* On the I/O thread. */
static void end(struct serve *s, int err)
{
    atomic_store(&s->error, err);
    atomic_store(&s->done, true);
    fuse_session_exit(s->se);
    sem_post(&s->ended);
}

/* Requests the kernel expects no answer to. */
static bool no_reply(uint32_t opcode)
{
    return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET;
}

/* The keel_watch_fd callback, on libkeel's I/O thread: reads what the
 * kernel has, up to READ_MAX requests. */
static int on_readable(void *arg)
{
    struct serve *s = arg;

    for (int i = 0; i < READ_MAX; i++) {
        const struct fuse_in_header *h = (const void *)s->cur->data;
        ssize_t n = read(s->fd, s->cur->data, s->bufsize);
        struct req *next;

        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            if (errno == ENOENT) /* the kernel gave the request up */
                continue;
            /* ENODEV: unmounted, or the connection was aborted. */
            end(s, errno == ENODEV ? 0 : -errno);
            return 1;
        }
        if ((size_t)n < sizeof(*h) || h->len != (size_t)n) {
            log_error("keel-fuse: short read from /dev/fuse (%zd bytes)", n);
            end(s, -EIO);
            return 1;
        }
        /* keel-fuse's handlers run to the end anyway; the kernel needs no
         * answer to an INTERRUPT. */
        if (h->opcode == FUSE_INTERRUPT)
            continue;
        if (s->take && s->take(s->fd, s->cur->data, (size_t)n))
            continue;
        next = req_new(s);
        if (!next) {
            if (!no_reply(h->opcode))
                (void)fdio_reply(s->fd, h->unique, -ENOMEM, NULL, 0);
            continue;
        }
        s->cur->len = (size_t)n;
        if (!enqueue(s, s->cur)) { /* not reached: unwatched before */
            free(next);
            return 1;
        }
        s->cur = next;
    }
    return 0;
}

static void *worker(void *arg)
{
    struct serve *s = arg;

    for (;;) {
        struct fuse_buf fb = {0};
        struct list *n;
        struct req *r;

        pthread_mutex_lock(&s->m);
        while (list_empty(&s->queue) && !s->ending)
            pthread_cond_wait(&s->cv, &s->m);
        n = list_pop(&s->queue);
        pthread_mutex_unlock(&s->m);
        if (!n)
            return NULL;
        r = list_entry(n, struct req, link);
        if (r->fn) {
            r->fn(r->arg);
        } else {
            fb.mem = r->data;
            fb.size = r->len;
            fuse_session_process_buf(s->se, &fb);
        }
        free(r);
    }
}

/* Tells the workers to stop once the queue is empty, and joins them. */
static void stop_workers(struct serve *s, pthread_t *tids, int n)
{
    pthread_mutex_lock(&s->m);
    s->ending = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->m);
    for (int i = 0; i < n; i++)
        pthread_join(tids[i], NULL);
}

static int start_workers(struct serve *s, pthread_t *tids)
{
    sigset_t all, old;
    int n = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    while (n < WORKERS && pthread_create(&tids[n], NULL, worker, s) == 0)
        n++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return n;
}

int serve_run(struct fuse_session *se, keel_client *c, fdio_take_fn take, size_t bufsize)
{
    struct serve s = {.se = se, .fd = fuse_session_fd(se), .bufsize = bufsize, .take = take};
    pthread_t tids[WORKERS];
    int flags, nworkers, r;

    flags = fcntl(s.fd, F_GETFL);
    if (flags < 0 || fcntl(s.fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -ENOTSUP;
    s.cur = req_new(&s);
    if (!s.cur || sem_init(&s.ended, 0, 0) != 0) {
        free(s.cur);
        (void)fcntl(s.fd, F_SETFL, flags);
        return -ENOTSUP;
    }
    pthread_mutex_init(&s.m, NULL);
    pthread_cond_init(&s.cv, NULL);
    list_init(&s.queue);

    nworkers = start_workers(&s, tids);
    pthread_mutex_lock(&posting);
    serving = &s;
    pthread_mutex_unlock(&posting);
    r = nworkers > 0 ? keel_watch_fd(c, s.fd, on_readable, &s) : -EAGAIN;
    if (r) {
        log_warn("keel-fuse: cannot read /dev/fuse on libkeel's thread (%s)", keel_strerror(r));
        r = -ENOTSUP;
    } else {
        while (!atomic_load(&s.done) && !fuse_session_exited(se)) {
            struct timespec t;

            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec++;
            (void)sem_timedwait(&s.ended, &t);
        }
        keel_unwatch_fd(c);
        r = atomic_load(&s.error);
    }
    /* The workers answer what was queued (libkeel's completions after
     * this answer on its thread); the kernel drops the answers after an
     * unmount. */
    pthread_mutex_lock(&posting);
    serving = NULL;
    pthread_mutex_unlock(&posting);
    stop_workers(&s, tids, nworkers);
    (void)fcntl(s.fd, F_SETFL, flags);
    free(s.cur);
    sem_destroy(&s.ended);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.m);
    return r;
}
