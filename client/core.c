/*
 * core: see core.h. The client's life:
 *
 *   keel_connect: start the I/O thread, Hello to the namenode (retried
 *                 until retry_ms) -> connected
 *   connected:    API calls arrive through core_submit; the tick timer
 *                 retries namenode calls and renews write leases
 *   keel_disconnect: close open files (io), release leases, stop the loop
 *                 from inside, join the thread, free.
 */
#include "core.h"

#include "errors.h"
#include "io.h"
#include "localread.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 50
/* The namenode answers some calls only after its own round trips to
 * datanodes (a recovery bumps versions on them), so its calls wait longer
 * than data calls; a namenode that dies is still noticed at once, by the
 * connection. */
#define NN_MIN_TIMEOUT_MS 20000
#define RETRY_BASE_MS     50
#define RETRY_MAX_MS      2000
#define EAGAIN_FIRST_MS   10
#define EAGAIN_RETRY_MS   100

/* ---------------------------------------------------------------- waits */

void core_wait_init(struct core_wait *w)
{
    pthread_condattr_t a;

    pthread_mutex_init(&w->m, NULL);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &a);
    pthread_condattr_destroy(&a);
    w->done = false;
}

void core_wait_destroy(struct core_wait *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->m);
}

void core_wait_signal(struct core_wait *w)
{
    pthread_mutex_lock(&w->m);
    w->done = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->m);
}

int core_wait_block(struct core_wait *w, int timeout_ms)
{
    struct timespec until;
    int r = 0;

    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&w->m);
    while (!w->done && r == 0)
        r = timeout_ms < 0 ? pthread_cond_wait(&w->cv, &w->m)
                           : pthread_cond_timedwait(&w->cv, &w->m, &until);
    r = w->done ? 0 : -ETIMEDOUT;
    pthread_mutex_unlock(&w->m);
    return r;
}

/* ------------------------------------------------------------ submission */

int core_submit_wait(keel_client *c, struct core_op *op, struct core_wait *w, const int *status)
{
    int r;

    core_wait_init(w);
    r = core_submit(c, op);
    if (r == 0) {
        core_wait_block(w, -1);
        r = *status;
    }
    core_wait_destroy(w);
    return r;
}

/* The client whose watch callback runs on this thread: what it submits is
 * run when the callback returns (on_watch), not through the eventfd. */
static _Thread_local keel_client *deferring;

int core_submit(keel_client *c, struct core_op *op)
{
    op->client = c;
    pthread_mutex_lock(&c->lock);
    if (c->stopping) {
        pthread_mutex_unlock(&c->lock);
        return -ESHUTDOWN;
    }
    list_add_tail(&c->submitted, &op->link);
    pthread_mutex_unlock(&c->lock);
    if (deferring != c)
        uv_async_send(&c->wake);
    return 0;
}

static void on_wake(uv_async_t *a)
{
    keel_client *c = a->data;
    struct list batch, *n;

    list_init(&batch);
    pthread_mutex_lock(&c->lock);
    if (!list_empty(&c->submitted)) {
        batch = c->submitted;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        list_init(&c->submitted);
    }
    pthread_mutex_unlock(&c->lock);
    if (!list_empty(&batch))
        busypoll_kick(&c->poll);
    while ((n = list_pop(&batch))) {
        struct core_op *op = list_entry(n, struct core_op, link);
        op->run(op);
    }
}

/* ------------------------------------------------------------- watching */

struct core_watch {
    uv_poll_t poll;
    keel_client *client;
    int (*cb)(void *arg);
    void *arg;
};

struct watch_op {
    struct core_op op;
    struct core_wait w;
    int fd; /* -1: unwatch */
    int (*cb)(void *arg);
    void *arg;
    int status;
};

static void on_watch(uv_poll_t *p, int status, int events)
{
    struct core_watch *cw = p->data;
    keel_client *c = cw->client;
    int stop;

    (void)status;
    (void)events;
    busypoll_kick(&c->poll);
    deferring = c;
    stop = cw->cb(cw->arg);
    deferring = NULL;
    if (stop)
        uv_poll_stop(p);
    on_wake(&c->wake);
}

static void free_watch(uv_handle_t *h)
{
    free(h->data);
}

static void unwatch(keel_client *c)
{
    if (c->watch) {
        uv_close((uv_handle_t *)&c->watch->poll, free_watch);
        c->watch = NULL;
    }
}

static void watch_run(struct core_op *op)
{
    struct watch_op *wo = (struct watch_op *)op;
    keel_client *c = op->client;
    struct core_watch *cw;
    int r = 0;

    if (wo->fd < 0) {
        unwatch(c);
    } else if (c->watch) {
        r = -EBUSY;
    } else if (!(cw = calloc(1, sizeof(*cw)))) {
        r = -ENOMEM;
    } else if ((r = uv_poll_init(&c->loop, &cw->poll, wo->fd)) != 0) {
        free(cw);
    } else {
        cw->poll.data = cw;
        cw->client = c;
        cw->cb = wo->cb;
        cw->arg = wo->arg;
        c->watch = cw;
        r = uv_poll_start(&cw->poll, UV_READABLE, on_watch);
        if (r)
            unwatch(c);
    }
    wo->status = r;
    core_wait_signal(&wo->w);
}

static int watch_call(keel_client *c, int fd, int (*cb)(void *arg), void *arg)
{
    struct watch_op wo = {.op.run = watch_run, .fd = fd, .cb = cb, .arg = arg};

    return core_submit_wait(c, &wo.op, &wo.w, &wo.status);
}

int keel_watch_fd(keel_client *c, int fd, int (*cb)(void *arg), void *arg)
{
    if (!c || fd < 0 || !cb)
        return -EINVAL;
    return watch_call(c, fd, cb, arg);
}

void keel_unwatch_fd(keel_client *c)
{
    if (c)
        (void)watch_call(c, -1, NULL, NULL);
}

/* ------------------------------------------------------------- namenode */

void core_attr_to_stat(const Keel__Attr *a, uint64_t chunk_size, struct keel_stat *st)
{
    memset(st, 0, sizeof(*st));
    if (!a)
        return;
    st->ino = a->ino;
    st->mode = a->mode;
    st->nlink = a->nlink;
    st->uid = a->uid;
    st->gid = a->gid;
    st->size = a->size;
    st->allocated = a->chunks * chunk_size;
    st->atime_ns = a->atime_ns;
    st->mtime_ns = a->mtime_ns;
    st->ctime_ns = a->ctime_ns;
    st->replication = a->replication;
}

bool core_transport_error(int err)
{
    switch (-err) {
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case ETIMEDOUT:
    case ENOTCONN:
    case EHOSTUNREACH:
    case EPIPE:
        return true;
    default:
        return false;
    }
}

struct nn_call {
    keel_client *c;
    Keel__Envelope *req;
    core_nn_fn fn;
    void *arg;
    uint64_t deadline_ms;
    uint64_t retry_at_ms;
    unsigned attempts;
    int done_err;
    bool maybe_applied; /* an attempt was lost after it may have been sent */
    struct list link;   /* on c->retries while waiting */
};

static void nn_send(struct nn_call *call);

static void nn_done(int status, rpc_msg *m, void *arg)
{
    struct nn_call *call = arg;
    keel_client *c = call->c;
    bool retry = core_transport_error(status) || status == -EAGAIN;

    if (status == -ECONNRESET || status == -ETIMEDOUT)
        call->maybe_applied = true;
    if (retry && mono_ms() < call->deadline_ms && !c->stopping) {
        /* A lost namenode backs off; -EAGAIN (a chunk being copied, a
         * cluster starting) ends when that work does: ask again soon and
         * often (but less and less), so a writer waits about as long as
         * the copy, which is short when it is a delta. */
        uint64_t delay =
            status == -EAGAIN
                ? MIN((uint64_t)EAGAIN_FIRST_MS << MIN(call->attempts - 1, 4), EAGAIN_RETRY_MS)
                : MIN((uint64_t)RETRY_BASE_MS << MIN(call->attempts, 6), RETRY_MAX_MS);

        log_debug("namenode call failed (%s), retrying in %llums", err_str(status),
                  (unsigned long long)delay);
        call->retry_at_ms = mono_ms() + delay;
        list_add_tail(&c->retries, &call->link);
        core_wake_at(c, call->retry_at_ms);
        return;
    }
    if (status && m && m->env->error && *m->env->error)
        log_debug("namenode: %s", m->env->error);
    if (status && status == call->done_err && call->maybe_applied) {
        log_debug("namenode: %s after a lost attempt: taken as done", err_str(status));
        status = 0;
        m = NULL;
    }
    if (call->fn)
        call->fn(status, status == 0 && m ? m->env : NULL, call->arg);
    free(call);
}

static void nn_send(struct nn_call *call)
{
    struct rpc_call_opts o = {.timeout_ms = MAX(core_call_timeout(call->c), NN_MIN_TIMEOUT_MS)};
    int r;

    call->attempts++;
    r = rpc_call(call->c->nn, call->req, RPC_NO_PAYLOAD, &o, nn_done, call);
    if (r) {
        if (call->fn)
            call->fn(r, NULL, call->arg);
        free(call);
    }
}

int core_nn_call(keel_client *c, Keel__Envelope *req, core_nn_fn fn, void *arg)
{
    return core_nn_call_ex(c, req, 0, fn, arg);
}

int core_nn_call_ex(keel_client *c, Keel__Envelope *req, int done_err, core_nn_fn fn, void *arg)
{
    struct nn_call *call = calloc(1, sizeof(*call));

    if (!call)
        return -ENOMEM;
    call->c = c;
    call->done_err = done_err;
    call->req = req;
    call->fn = fn;
    call->arg = arg;
    call->deadline_ms = mono_ms() + c->opts.retry_ms;
    list_init(&call->link);
    nn_send(call);
    return 0;
}

struct nn_sync {
    struct core_op op;
    struct core_wait w;
    Keel__Envelope *req;
    core_copy_fn copy;
    void *arg;
    int done_err;
    int status;
};

static void sync_done(int status, const Keel__Envelope *rep, void *arg)
{
    struct nn_sync *s = arg;

    if (status == 0 && s->copy && rep)
        s->copy(rep, s->arg);
    s->status = status;
    core_wait_signal(&s->w);
}

static void sync_run(struct core_op *op)
{
    struct nn_sync *s = (struct nn_sync *)op;
    int r = core_nn_call_ex(op->client, s->req, s->done_err, sync_done, s);

    if (r)
        sync_done(r, NULL, s);
}

int core_nn_sync(keel_client *c, Keel__Envelope *req, core_copy_fn copy, void *arg, int done_err)
{
    struct nn_sync s = {.req = req, .copy = copy, .arg = arg, .done_err = done_err};

    s.op.run = sync_run;
    return core_submit_wait(c, &s.op, &s.w, &s.status);
}

/* Hello on every new connection to the namenode, ahead of anything queued. */
static void hello_done(int status, rpc_msg *m, void *arg)
{
    keel_client *c = arg;

    if (status) {
        log_warn("hello to namenode %s: %s", c->nn_addr, err_str(status));
        return;
    }
    if (m->env->body_case != KEEL__ENVELOPE__BODY_HELLO_REP)
        return;
    c->chunk_size = m->env->hello_rep->chunk_size;
    c->lease_ms = m->env->hello_rep->lease_ms;
    c->min_replicas = m->env->hello_rep->min_replicas;
    snprintf(c->cluster_id, sizeof(c->cluster_id), "%s", m->env->hello_rep->cluster_id);
    c->hello_done = true;
    io_reconnected(c);
}

static void nn_open(rpc_conn *conn, void *ctx)
{
    keel_client *c = ctx;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HelloReq req = KEEL__HELLO_REQ__INIT;
    int r;

    req.client_id = c->client_id;
    req.name = c->name;
    env.body_case = KEEL__ENVELOPE__BODY_HELLO_REQ;
    env.hello_req = &req;
    r = rpc_call(conn, &env, RPC_NO_PAYLOAD, NULL, hello_done, c);
    if (r)
        log_warn("cannot send hello: %s", err_str(r));
    log_debug("connected to namenode %s", c->nn_addr);
}

static void nn_close(rpc_conn *conn, int err, void *ctx)
{
    keel_client *c = ctx;

    if (!c->disconnecting)
        log_info("lost namenode %s: %s", c->nn_addr, err_str(err));
}

static void recall_replied(int released, void *arg)
{
    rpc_req *req = arg;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__LeaseRecallRep body = KEEL__LEASE_RECALL_REP__INIT;

    body.released = released;
    rep.body_case = KEEL__ENVELOPE__BODY_LEASE_RECALL_REP;
    rep.lease_recall_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void h_lease_recall(rpc_req *req, void *ctx)
{
    io_lease_recall(ctx, req->env->lease_recall_req->ino, recall_replied, req);
}

static const rpc_handler nn_handlers[] = {
    {KEEL__ENVELOPE__BODY_LEASE_RECALL_REQ, "lease-recall", h_lease_recall},
};

/* ----------------------------------------------------------------- tick */

struct renew {
    keel_client *c;
    Keel__Envelope env;
    Keel__LeaseRenewReq req;
    uint64_t *inos;
};

static void renew_done(int status, const Keel__Envelope *rep, void *arg)
{
    struct renew *r = arg;

    if (status == 0 && rep->body_case == KEEL__ENVELOPE__BODY_LEASE_RENEW_REP) {
        for (size_t i = 0; i < rep->lease_renew_rep->n_lost; i++)
            io_lease_lost(r->c, rep->lease_renew_rep->lost[i]);
    } else if (status) {
        log_debug("lease renewal: %s", err_str(status));
    }
    free(r->inos);
    free(r);
}

static void renew_leases(keel_client *c)
{
    struct renew *r;
    size_t n;

    n = io_lease_inos(c, NULL, 0);
    if (n == 0)
        return;
    r = calloc(1, sizeof(*r));
    if (!r)
        return;
    r->inos = calloc(n, sizeof(uint64_t));
    if (!r->inos) {
        free(r);
        return;
    }
    r->c = c;
    n = io_lease_inos(c, r->inos, n);
    keel__envelope__init(&r->env);
    keel__lease_renew_req__init(&r->req);
    r->req.client_id = c->client_id;
    r->req.inos = r->inos;
    r->req.n_inos = n;
    r->env.body_case = KEEL__ENVELOPE__BODY_LEASE_RENEW_REQ;
    r->env.lease_renew_req = &r->req;
    if (core_nn_call(c, &r->env, renew_done, r)) {
        free(r->inos);
        free(r);
    }
}

static void tick_work(keel_client *c)
{
    uint64_t now = mono_ms();
    struct list *pos, *tmp;

    list_for_each_safe(pos, tmp, &c->retries)
    {
        struct nn_call *call = list_entry(pos, struct nn_call, link);

        if (now >= call->retry_at_ms) {
            list_del(&call->link);
            nn_send(call);
        }
    }
    if (c->lease_ms && now >= c->next_renew_ms) {
        c->next_renew_ms = now + MAX(c->lease_ms / 3, 100);
        renew_leases(c);
    }
    io_tick(c, now);
}

/* The periodic tick and the one-shot `soon` timer both do the tick's work. */
static void on_tick(uv_timer_t *t)
{
    tick_work(t->data);
}

void core_wake_at(keel_client *c, uint64_t when_ms)
{
    uint64_t now = mono_ms();

    if (c->disconnecting || (uv_is_active((uv_handle_t *)&c->soon) && c->soon_at <= when_ms))
        return;
    c->soon_at = when_ms;
    uv_timer_start(&c->soon, on_tick, when_ms > now ? when_ms - now : 0, 0);
}

/* ------------------------------------------------------------- datanodes */

uint32_t core_call_timeout(const keel_client *c)
{
    return c->opts.call_timeout_ms;
}

/* A datanode's connection closed: what it said of its directory may no
 * longer hold (it may come back with another, or refuse local reads). */
static void node_closed(rpc_conn *conn, int err, void *ctx)
{
    struct core_node *n = rpc_conn_data(conn);

    if (n)
        localread_forget(n);
}

static const rpc_service node_service = {.on_close = node_closed};

struct core_node *core_node_get(keel_client *c, const char *addr)
{
    struct rpc_opts ro = {.call_timeout_ms = c->opts.call_timeout_ms,
                          .connect_timeout_ms = MIN(c->opts.call_timeout_ms, 5000),
                          .backoff_min_ms = 50,
                          .backoff_max_ms = 200,
                          .fail_fast = true}; /* another replica can serve */
    struct core_node *n, **grown;

    for (size_t i = 0; i < c->nnodes; i++)
        if (strcmp(c->nodes[i]->addr, addr) == 0)
            return c->nodes[i];
    n = calloc(1, sizeof(*n));
    grown = n ? realloc(c->nodes, (c->nnodes + 1) * sizeof(*grown)) : NULL;
    if (!grown) {
        free(n);
        return NULL;
    }
    c->nodes = grown;
    snprintf(n->addr, sizeof(n->addr), "%s", addr);
    if (rpc_connect(&c->loop, addr, &node_service, &ro, &n->conn)) {
        free(n);
        return NULL;
    }
    rpc_conn_set_data(n->conn, n);
    n->ewma_us = 1000;
    n->local_dirfd = -1;
    c->nodes[c->nnodes++] = n;
    return n;
}

void core_node_done(keel_client *c, struct core_node *n, int status, uint64_t us_taken)
{
    if (n->inflight)
        n->inflight--;
    if (status == 0 || (!core_transport_error(status) && status != -EIO)) {
        n->ewma_us = (n->ewma_us * 7 + us_taken) / 8;
        return;
    }
    /* Unreachable, silent or serving bad data: steer reads elsewhere for a
     * while. */
    n->error_until = mono_ms() + 3000;
}

/* ------------------------------------------------------------ lifecycle */

static void drop_log(enum log_level level, const char *line, void *arg)
{
}

static keel_log_fn user_log;
static void *user_log_arg;

static void forward_log(enum log_level level, const char *line, void *arg)
{
    if (user_log)
        user_log((int)level, line, user_log_arg);
}

void keel_options_init(struct keel_options *o)
{
    memset(o, 0, sizeof(*o));
    o->call_timeout_ms = 10000;
    o->retry_ms = 60000;
    o->lease_idle_ms = 1000;
    o->location_ttl_ms = 2000;
    o->log_level = KEEL_LOG_WARN;
    o->client_name = "libkeel";
    o->local_reads = true;
    o->fanout_max = 128 << 10;
}

const char *keel_strerror(int err)
{
    return err_str(err);
}

static void io_thread(void *arg)
{
    keel_client *c = arg;
    sigset_t all;

    /* Signals go to the program's own threads: a handler that wakes its
     * main thread (libfuse's does) must not run here. A write to a
     * datanode that just died fails with EPIPE on this thread instead of
     * killing the process that linked libkeel; its disposition of SIGPIPE
     * is left alone. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
}

struct stop_op {
    struct core_op op;
};

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* On the I/O thread: every file is closed by now; let every handle go. */
static void stop_run(struct core_op *op)
{
    keel_client *c = op->client;
    struct list *pos, *tmp;

    list_for_each_safe(pos, tmp, &c->retries)
    {
        struct nn_call *call = list_entry(pos, struct nn_call, link);

        list_del(&call->link);
        call->fn(-ECANCELED, NULL, call->arg);
        free(call);
    }
    for (size_t i = 0; i < c->nnodes; i++)
        rpc_conn_close(c->nodes[i]->conn);
    c->disconnecting = true;
    rpc_conn_close(c->nn);
    unwatch(c);
    uv_close((uv_handle_t *)&c->tick, NULL);
    uv_close((uv_handle_t *)&c->soon, NULL);
    uv_close((uv_handle_t *)&c->wake, NULL);
    free(op);
}

static void free_client(keel_client *c)
{
    for (size_t i = 0; i < c->nnodes; i++) {
        if (c->nodes[i]->local == LOCAL_YES)
            close(c->nodes[i]->local_dirfd);
        free(c->nodes[i]);
    }
    free(c->nodes);
    u64map_free(&c->inodes);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->wb_lock);
    pthread_cond_destroy(&c->wb_cv);
    free(c);
}

struct hello_op {
    struct core_op op;
    struct core_wait w;
    Keel__Envelope env;
    Keel__HelloReq req;
    int status;
};

static void first_hello_done(int status, const Keel__Envelope *rep, void *arg)
{
    struct hello_op *h = arg;

    if (status == 0 && rep->body_case == KEEL__ENVELOPE__BODY_HELLO_REP) {
        keel_client *c = h->op.client;

        c->chunk_size = rep->hello_rep->chunk_size;
        c->lease_ms = rep->hello_rep->lease_ms;
        c->min_replicas = rep->hello_rep->min_replicas;
        snprintf(c->cluster_id, sizeof(c->cluster_id), "%s", rep->hello_rep->cluster_id);
        c->hello_done = true;
        if (c->chunk_size == 0)
            status = -EPROTO;
    }
    h->status = status;
    core_wait_signal(&h->w);
}

static void first_hello_run(struct core_op *op)
{
    struct hello_op *h = (struct hello_op *)op;
    int r = core_nn_call(op->client, &h->env, first_hello_done, h);

    if (r)
        first_hello_done(r, NULL, h);
}

int keel_connect(const char *namenode, const struct keel_options *opts, keel_client **out)
{
    static const rpc_service nn_svc_tmpl = {nn_handlers, 1, NULL, nn_open, nn_close};
    struct rpc_opts ro = {.backoff_min_ms = 50, .backoff_max_ms = 1000};
    struct hello_op hello;
    struct sockaddr_in sa;
    rpc_service *svc;
    keel_client *c;
    int r;

    if (!namenode)
        namenode = getenv("KEEL_NAMENODE");
    if (!namenode || !*namenode)
        namenode = "127.0.0.1:7420";
    if (parse_addr(namenode, &sa) || sa.sin_port == 0)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    svc = calloc(1, sizeof(*svc));
    if (!c || !svc) {
        free(c);
        free(svc);
        return -ENOMEM;
    }
    if (opts)
        c->opts = *opts;
    else
        keel_options_init(&c->opts);
    if (!c->opts.call_timeout_ms)
        c->opts.call_timeout_ms = 10000;
    if (!c->opts.location_ttl_ms)
        c->opts.location_ttl_ms = 2000;
    c->opts.poll_us = MIN(c->opts.poll_us, 10000);
    snprintf(c->name, sizeof(c->name), "%s", c->opts.client_name ? c->opts.client_name : "libkeel");
    c->opts.client_name = c->name;
    snprintf(c->nn_addr, sizeof(c->nn_addr), "%s", namenode);
    c->client_id = random_u64();
    if (c->opts.log_fn) {
        user_log = c->opts.log_fn;
        user_log_arg = c->opts.log_arg;
        log_set_sink(forward_log, NULL);
        log_set_level((enum log_level)c->opts.log_level);
    } else if (!user_log) {
        log_set_sink(drop_log, NULL);
    }
    log_init(c->name, log_get_level());

    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->wb_lock, NULL);
    pthread_cond_init(&c->wb_cv, NULL);
    list_init(&c->wb);
    list_init(&c->submitted);
    list_init(&c->retries);
    list_init(&c->files);
    list_init(&c->closing);
    u64map_init(&c->inodes);
    r = uv_loop_init(&c->loop);
    if (r) {
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->wb_lock);
        pthread_cond_destroy(&c->wb_cv);
        free(c);
        free(svc);
        return r;
    }
    uv_async_init(&c->loop, &c->wake, on_wake);
    c->wake.data = c;
    uv_timer_init(&c->loop, &c->tick);
    c->tick.data = c;
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(&c->loop, &c->soon);
    c->soon.data = c;
    busypoll_init(&c->poll, &c->loop, c->opts.poll_us);
    *svc = nn_svc_tmpl;
    svc->ctx = c;
    ro.call_timeout_ms = c->opts.call_timeout_ms;
    ro.connect_timeout_ms = MIN(c->opts.call_timeout_ms, 5000);
    r = rpc_connect(&c->loop, namenode, svc, &ro, &c->nn);
    if (r == 0) {
        rpc_conn_set_data(c->nn, svc);
        r = uv_thread_create(&c->thread, io_thread, c);
    }
    if (r) {
        if (c->nn)
            rpc_conn_close(c->nn);
        free(svc);
        uv_close((uv_handle_t *)&c->wake, NULL);
        uv_close((uv_handle_t *)&c->tick, NULL);
        uv_close((uv_handle_t *)&c->soon, NULL);
        busypoll_close(&c->poll);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
        free_client(c);
        return r;
    }

    memset(&hello, 0, sizeof(hello));
    hello.op.run = first_hello_run;
    keel__envelope__init(&hello.env);
    keel__hello_req__init(&hello.req);
    hello.req.client_id = c->client_id;
    hello.req.name = c->name;
    hello.env.body_case = KEEL__ENVELOPE__BODY_HELLO_REQ;
    hello.env.hello_req = &hello.req;
    r = core_submit_wait(c, &hello.op, &hello.w, &hello.status);
    if (r) {
        keel_disconnect(c);
        return r;
    }
    *out = c;
    return 0;
}

void keel_disconnect(keel_client *c)
{
    struct stop_op *stop;
    rpc_service *svc;

    if (!c)
        return;
    svc = c->nn ? rpc_conn_data(c->nn) : NULL;
    io_close_all(c);
    stop = calloc(1, sizeof(*stop));
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    if (stop) {
        stop->op.run = stop_run;
        stop->op.client = c;
        list_add_tail(&c->submitted, &stop->op.link);
    }
    pthread_mutex_unlock(&c->lock);
    if (!stop) {
        /* Cannot allocate even this: stop the loop from outside, leaking. */
        uv_stop(&c->loop);
    }
    uv_async_send(&c->wake);
    uv_thread_join(&c->thread);
    /* Handles closed late (close callbacks of timers of finished calls). */
    uv_walk(&c->loop, close_walk, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    free(svc);
    free_client(c);
}
