/*
 * rpc: connections, calls and request dispatch over libuv. See rpc.h for the
 * model and the connection states.
 *
 * Memory: an rpc_conn lives while it has references (its creator, every
 * rpc_req it produced, and for a server connection its open socket); its
 * retry timer is closed last and frees it. Each socket (one per connect or
 * accept) is an rpc_sock with two handles, freed when both have closed. Each
 * call owns a timer, freed when that timer has closed.
 */
#include "rpc.h"

#include "errors.h"
#include "frame.h"
#include "list.h"
#include "log.h"
#include "u64map.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF_SIZE   (256u * 1024)
#define DIRECT_MIN_READ (32u * 1024)

enum conn_state { C_IDLE, C_CONNECTING, C_OPEN };

struct write_req;

struct rpc_sock {
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect timeout, then the partial-frame watchdog */
    uv_connect_t connect_req;
    rpc_conn *conn; /* NULL once detached from its connection */
    struct frame_reader reader;
    uint8_t *rbuf;
    bool direct; /* the last alloc handed out the payload's own buffer */
    uint64_t frame_start_ms;
    uint64_t frames; /* frames delivered, to see a new frame begin */
    int open_handles;
    struct rpc_call *receiving; /* call whose rbuf the payload is being read into */
};

struct rpc_call {
    uint64_t id;
    struct write_req *wreq; /* the payload is still being written */
    rpc_conn *conn;
    rpc_done_fn cb;
    void *arg;
    uv_timer_t timer;
    uint8_t *hdr; /* encoded frame head, until written */
    size_t hdrlen;
    rpc_payload payload;
    struct list queue; /* on conn->queue while waiting for the connection */
    void *rbuf;
    size_t rcap;
};

struct rpc_conn {
    uv_loop_t *loop;
    int refs;
    bool client;
    bool closed; /* rpc_conn_close called, or a server socket gone */
    bool paused; /* rpc_conn_pause: not reading */
    enum conn_state state;
    struct sockaddr_in addr;
    char peer[64];
    const rpc_service *svc;
    struct rpc_opts opts;
    void *data;
    struct rpc_sock *sock;
    uint64_t next_id;
    struct u64map calls; /* id -> rpc_call, queued or sent */
    struct list queue;   /* calls not yet written, in order */
    uv_timer_t retry;    /* reconnect after backoff */
    uint32_t backoff_ms;
    uint64_t retry_at_ms;
    int connect_err;  /* why the last connect failed; 0 once open */
    struct list link; /* on the server's list (server connections) */
    rpc_server *server;
};

struct rpc_server {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    const rpc_service *svc;
    struct rpc_opts opts;
    char addr[64];
    struct list conns;
};

struct write_req {
    uv_write_t req;
    uint8_t *hdr;
    rpc_payload payload;
    struct rpc_call *call; /* a call's frame, until either ends */
};

static void conn_connect(rpc_conn *c);
static void on_retry(uv_timer_t *t);
static void on_fail_fast(uv_timer_t *t);
static void sock_close(struct rpc_sock *s, int err);

/* ------------------------------------------------------------------ helpers */

static void release_payload(rpc_payload *p)
{
    if (p->release)
        p->release(p->arg);
    p->release = NULL;
}

static void free_release(void *arg)
{
    free(arg);
}

rpc_payload rpc_payload_malloced(void *data, size_t len)
{
    return (rpc_payload){data, len, free_release, data};
}

static void fill_opts(struct rpc_opts *o, const struct rpc_opts *in)
{
    if (in)
        *o = *in;
    else
        memset(o, 0, sizeof(*o));
    if (!o->call_timeout_ms)
        o->call_timeout_ms = 30000;
    if (!o->connect_timeout_ms)
        o->connect_timeout_ms = 5000;
    if (!o->frame_timeout_ms)
        o->frame_timeout_ms = 30000;
    if (!o->backoff_min_ms)
        o->backoff_min_ms = 100;
    if (!o->backoff_max_ms)
        o->backoff_max_ms = 5000;
}

static void write_done(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct rpc_sock *s = req->handle->data;

    if (w->call)
        w->call->wreq = NULL;
    free(w->hdr);
    release_payload(&w->payload);
    free(w);
    if (status < 0 && status != UV_ECANCELED && s->conn) {
        log_debug("rpc: write to %s failed: %s", s->conn->peer, uv_strerror(status));
        sock_close(s, -ECONNRESET);
    }
}

/*
 * Writes an encoded head and payload; takes both on success. What the
 * socket takes at once needs no request: with libuv 1.44 a queued write,
 * even one done at once, costs an epoll_ctl when its stream drains. Only
 * the rest, if any, is queued (uv_try_write defers to writes queued
 * before, so the order holds).
 */
static int sock_write(struct rpc_sock *s, uint8_t *hdr, size_t hdrlen, rpc_payload *payload,
                      struct rpc_call *call)
{
    uv_stream_t *stream = (uv_stream_t *)&s->tcp;
    struct write_req *w;
    uv_buf_t bufs[2];
    unsigned n = 1, first = 0;
    size_t sent;
    int r;

    bufs[0] = uv_buf_init((char *)hdr, (unsigned)hdrlen);
    if (payload->len)
        bufs[n++] = uv_buf_init((char *)payload->data, (unsigned)payload->len);
    r = uv_try_write(stream, bufs, n);
    if (r < 0 && r != UV_EAGAIN)
        return r;
    sent = r < 0 ? 0 : (size_t)r;
    if (sent == hdrlen + payload->len) {
        free(hdr);
        release_payload(payload);
        return 0;
    }
    for (; sent >= bufs[first].len; first++)
        sent -= bufs[first].len;
    bufs[first].base += sent;
    bufs[first].len -= (unsigned)sent;
    w = malloc(sizeof(*w));
    if (!w)
        return -ENOMEM; /* the caller closes the socket: part may be sent */
    w->hdr = hdr;
    w->payload = *payload;
    w->call = call;
    r = uv_write(&w->req, stream, bufs + first, n - first, write_done);
    if (r < 0) {
        free(w);
        return r;
    }
    if (call)
        call->wreq = w;
    payload->release = NULL;
    return 0;
}

/* ------------------------------------------------------------------- calls */

static void call_free_cb(uv_handle_t *h)
{
    struct rpc_call *call = h->data;
    rpc_conn *c = call->conn;

    free(call);
    rpc_conn_unref(c);
}

/* Runs the callback once and disposes of the call. It must already be out of
 * conn->calls and off the queue. */
static void call_finish(struct rpc_call *call, int status, rpc_msg *msg)
{
    if (call->wreq)
        call->wreq->call = NULL;
    call->wreq = NULL;
    uv_timer_stop(&call->timer);
    free(call->hdr);
    call->hdr = NULL;
    release_payload(&call->payload);
    call->cb(status, msg, call->arg);
    uv_close((uv_handle_t *)&call->timer, call_free_cb);
}

static void call_timeout(uv_timer_t *t)
{
    struct rpc_call *call = t->data;
    rpc_conn *c = call->conn;

    u64map_del(&c->calls, call->id);
    list_del(&call->queue);
    if (c->sock && c->sock->receiving == call) {
        /* The reply is arriving into the caller's buffer: stop writing there. */
        frame_reader_discard(&c->sock->reader);
        c->sock->receiving = NULL;
    }
    if (call->wreq && c->sock) {
        /* The peer is not even reading: its payload is still queued. Closing
         * the socket guarantees no byte of it is read after the callback,
         * so a borrowed payload may be freed by the caller. */
        log_warn("rpc: %s stopped reading, resetting the connection", c->peer);
        rpc_conn_ref(c);
        call_finish(call, -ETIMEDOUT, NULL);
        sock_close(c->sock, -ETIMEDOUT);
        rpc_conn_unref(c);
        return;
    }
    call_finish(call, -ETIMEDOUT, NULL);
}

/* Fails every call of c, queued or sent. Calls the callbacks make go on. */
static void fail_calls(rpc_conn *c, int err)
{
    struct u64map old = c->calls;
    size_t i = 0;
    void *val;

    u64map_init(&c->calls);
    while (u64map_next(&old, &i, NULL, &val)) {
        struct rpc_call *call = val;

        list_del(&call->queue);
        call_finish(call, err, NULL);
    }
    u64map_free(&old);
}

static int call_send(rpc_conn *c, struct rpc_call *call)
{
    int r = sock_write(c->sock, call->hdr, call->hdrlen, &call->payload, call);

    if (r == 0)
        call->hdr = NULL;
    return r;
}

int rpc_call(rpc_conn *c, Keel__Envelope *env, rpc_payload payload,
             const struct rpc_call_opts *opts, rpc_done_fn cb, void *arg)
{
    struct rpc_call *call;
    uint32_t timeout;
    int r;

    if (c->closed)
        return -ENOTCONN;
    if (payload.len > (c->opts.max_payload ? c->opts.max_payload : FRAME_MAX_PAYLOAD))
        return -EMSGSIZE;
    call = calloc(1, sizeof(*call));
    if (!call)
        return -ENOMEM;
    call->id = ++c->next_id;
    env->call_id = call->id;
    env->reply = 0;
    env->status = 0;
    env->error = (char *)protobuf_c_empty_string;
    r = frame_encode(env, (uint32_t)payload.len, &call->hdr, &call->hdrlen);
    if (r)
        goto fail;
    r = u64map_put(&c->calls, call->id, call);
    if (r)
        goto fail;
    call->conn = c;
    call->cb = cb;
    call->arg = arg;
    call->payload = payload;
    if (opts) {
        call->rbuf = opts->rbuf;
        call->rcap = opts->rcap;
    }
    list_init(&call->queue);
    uv_timer_init(c->loop, &call->timer);
    call->timer.data = call;
    rpc_conn_ref(c);
    timeout = opts && opts->timeout_ms ? opts->timeout_ms : c->opts.call_timeout_ms;
    uv_timer_start(&call->timer, call_timeout, timeout, 0);

    if (c->state == C_OPEN) {
        r = call_send(c, call);
        if (r) {
            /* Writes fail only on a dead socket: let the close path report it. */
            list_add_tail(&c->queue, &call->queue);
            sock_close(c->sock, -ECONNRESET);
        }
        return 0;
    }
    list_add_tail(&c->queue, &call->queue);
    if (c->state == C_IDLE && c->client)
        conn_connect(c);
    return 0;
fail:
    free(call->hdr);
    free(call);
    return r;
}

/* -------------------------------------------------------------- requests */

static void req_free(rpc_req *req)
{
    if (req->env)
        keel__envelope__free_unpacked(req->env, NULL);
    free(req->payload);
    rpc_conn_unref(req->conn);
    free(req);
}

static int send_reply(rpc_req *req, Keel__Envelope *rep, int err, const char *msg,
                      rpc_payload payload)
{
    Keel__Envelope empty = KEEL__ENVELOPE__INIT;
    rpc_conn *c = req->conn;
    uint8_t *hdr;
    size_t hdrlen;
    int r;

    if (!rep)
        rep = &empty;
    rep->call_id = req->call_id;
    rep->reply = 1;
    rep->status = err_to_wire(err);
    rep->error = (char *)(msg ? msg : protobuf_c_empty_string);
    if (!c->sock || c->state != C_OPEN) {
        r = -ENOTCONN;
        goto out;
    }
    r = frame_encode(rep, (uint32_t)payload.len, &hdr, &hdrlen);
    if (r) {
        log_error("rpc: cannot encode reply to %s from %s: %s", req->name, c->peer, err_str(r));
        goto out;
    }
    r = sock_write(c->sock, hdr, hdrlen, &payload, NULL);
    if (r) {
        free(hdr);
        sock_close(c->sock, -ECONNRESET);
    }
out:
    release_payload(&payload);
    req_free(req);
    return r;
}

int rpc_reply(rpc_req *req, Keel__Envelope *rep, rpc_payload payload)
{
    return send_reply(req, rep, 0, NULL, payload);
}

int rpc_reply_error(rpc_req *req, int err, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return send_reply(req, NULL, err, msg, RPC_NO_PAYLOAD);
}

static const rpc_handler *find_handler(const rpc_service *svc, Keel__Envelope__BodyCase type)
{
    if (!svc)
        return NULL;
    for (size_t i = 0; i < svc->nhandlers; i++)
        if (svc->handlers[i].type == type)
            return &svc->handlers[i];
    return NULL;
}

static int dispatch(rpc_conn *c, Keel__Envelope *env, uint8_t *payload, uint32_t plen)
{
    const rpc_handler *h = find_handler(c->svc, env->body_case);
    rpc_req *req = calloc(1, sizeof(*req));

    if (!req) {
        keel__envelope__free_unpacked(env, NULL);
        free(payload);
        return -ENOMEM;
    }
    rpc_conn_ref(c);
    req->conn = c;
    req->call_id = env->call_id;
    req->env = env;
    req->payload = payload;
    req->payload_len = plen;
    req->name = h ? h->name : "unknown";
    if (!h) {
        log_warn("rpc: %s sent an unknown message (type %d)", c->peer, (int)env->body_case);
        rpc_reply_error(req, -EOPNOTSUPP, "unknown message type %d", (int)env->body_case);
        return 0;
    }
    h->fn(req, c->svc->ctx);
    return 0;
}

/* ----------------------------------------------------------------- frames */

static void *on_payload_buf(void *ctx, const Keel__Envelope *env, uint32_t plen)
{
    struct rpc_sock *s = ctx;
    struct rpc_call *call;

    if (!env->reply || !s->conn)
        return NULL;
    call = u64map_get(&s->conn->calls, env->call_id);
    if (!call || !call->rbuf || call->rcap < plen)
        return NULL;
    s->receiving = call;
    return call->rbuf;
}

static int on_frame(void *ctx, Keel__Envelope *env, uint8_t *payload, uint32_t plen, bool external)
{
    struct rpc_sock *s = ctx;
    rpc_conn *c = s->conn;
    struct rpc_call *call;
    rpc_msg msg;
    int status;

    s->frames++;
    s->receiving = NULL;
    if (!c) {
        keel__envelope__free_unpacked(env, NULL);
        if (!external)
            free(payload);
        return 1;
    }
    if (!env->reply)
        return dispatch(c, env, payload, plen);

    call = u64map_del(&c->calls, env->call_id);
    if (!call) {
        /* A reply after its call timed out. */
        log_debug("rpc: late reply %llu from %s dropped", (unsigned long long)env->call_id,
                  c->peer);
        keel__envelope__free_unpacked(env, NULL);
        if (!external)
            free(payload);
        return 0;
    }
    list_del(&call->queue);
    msg.env = env;
    msg.payload = payload;
    msg.payload_len = payload ? plen : 0;
    msg.in_rbuf = external;
    status = err_from_wire(env->status);
    rpc_conn_ref(c);
    call_finish(call, status, &msg);
    keel__envelope__free_unpacked(env, NULL);
    if (!external)
        free(msg.payload);
    /* The callback may have closed the connection. */
    status = s->conn ? 0 : 1;
    rpc_conn_unref(c);
    return status;
}

/* ---------------------------------------------------------------- sockets */

static void sock_handle_closed(uv_handle_t *h)
{
    struct rpc_sock *s = h->data;

    if (--s->open_handles == 0) {
        frame_reader_free(&s->reader);
        free(s->rbuf);
        free(s);
    }
}

/*
 * Detaches s from its connection, fails the connection's calls and tells
 * the service. Safe to call more than once.
 */
static void sock_close(struct rpc_sock *s, int err)
{
    rpc_conn *c = s->conn;
    bool was_open;

    if (!c)
        return;
    was_open = c->state == C_OPEN;
    s->conn = NULL;
    s->receiving = NULL;
    c->sock = NULL;
    c->state = C_IDLE;
    uv_close((uv_handle_t *)&s->tcp, sock_handle_closed);
    uv_close((uv_handle_t *)&s->timer, sock_handle_closed);

    if (c->client) {
        if (was_open) {
            c->backoff_ms = 0;
            c->retry_at_ms = 0;
            c->connect_err = 0;
        } else {
            c->connect_err = err;
            c->backoff_ms = c->backoff_ms ? MIN(c->backoff_ms * 2, c->opts.backoff_max_ms)
                                          : c->opts.backoff_min_ms;
            c->retry_at_ms = mono_ms() + c->backoff_ms;
        }
    } else {
        c->closed = true;
        if (c->server)
            list_del(&c->link);
    }
    rpc_conn_ref(c);
    fail_calls(c, was_open ? -ECONNRESET : err);
    if (was_open && c->svc && c->svc->on_close)
        c->svc->on_close(c, err, c->svc->ctx);
    if (!c->client)
        rpc_conn_unref(c); /* the socket's reference */
    rpc_conn_unref(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct rpc_sock *s = h->data;
    uint8_t *dst;
    size_t len;

    if (frame_reader_direct(&s->reader, &dst, &len) && len >= DIRECT_MIN_READ) {
        s->direct = true;
        *buf = uv_buf_init((char *)dst, (unsigned)len);
        return;
    }
    s->direct = false;
    *buf = uv_buf_init((char *)s->rbuf, READ_BUF_SIZE);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct rpc_sock *s = stream->data;
    uint64_t frames = s->frames;
    int r;

    if (nread == 0 || !s->conn)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("rpc: read from %s: %s", s->conn->peer, uv_strerror((int)nread));
        sock_close(s, nread == UV_EOF ? -ECONNRESET : (int)nread);
        return;
    }
    if (s->direct)
        r = frame_reader_direct_done(&s->reader, (size_t)nread);
    else
        r = frame_reader_feed(&s->reader, s->rbuf, (size_t)nread);
    if (r < 0 && s->conn) {
        log_warn("rpc: bad frame from %s (%s), closing", s->conn->peer, err_str(r));
        sock_close(s, r);
        return;
    }
    if (frame_reader_idle(&s->reader))
        s->frame_start_ms = 0;
    else if (s->frame_start_ms == 0 || s->frames != frames)
        s->frame_start_ms = mono_ms();
}

/* Partial-frame watchdog: a frame that does not complete in time closes. */
static void on_watchdog(uv_timer_t *t)
{
    struct rpc_sock *s = t->data;
    rpc_conn *c = s->conn;

    if (!c || !s->frame_start_ms || c->paused)
        return;
    if (mono_ms() - s->frame_start_ms > c->opts.frame_timeout_ms) {
        log_warn("rpc: partial frame from %s stalled for %ums, closing", c->peer,
                 c->opts.frame_timeout_ms);
        sock_close(s, -ETIMEDOUT);
    }
}

static struct rpc_sock *sock_new(rpc_conn *c)
{
    struct rpc_sock *s = calloc(1, sizeof(*s));
    struct frame_hooks hooks = {on_payload_buf, on_frame, NULL};

    if (!s)
        return NULL;
    s->rbuf = malloc(READ_BUF_SIZE);
    if (!s->rbuf) {
        free(s);
        return NULL;
    }
    hooks.ctx = s;
    frame_reader_init(&s->reader, &hooks, c->opts.max_header, c->opts.max_payload);
    uv_tcp_init(c->loop, &s->tcp);
    uv_timer_init(c->loop, &s->timer);
    s->tcp.data = s;
    s->timer.data = s;
    s->open_handles = 2;
    s->conn = c;
    return s;
}

/* The socket is connected or accepted: start reading and send what waits. */
static void sock_open(struct rpc_sock *s)
{
    rpc_conn *c = s->conn;
    uint32_t every = MAX(c->opts.frame_timeout_ms / 4, 10);
    int r;

    uv_tcp_nodelay(&s->tcp, 1);
    c->state = C_OPEN;
    c->backoff_ms = 0;
    r = c->paused ? 0 : uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (r < 0) {
        sock_close(s, r);
        return;
    }
    uv_timer_start(&s->timer, on_watchdog, every, every);
    rpc_conn_ref(c);
    if (c->svc && c->svc->on_open)
        c->svc->on_open(c, c->svc->ctx);
    while (c->sock == s && !list_empty(&c->queue)) {
        struct rpc_call *call = list_entry(c->queue.next, struct rpc_call, queue);

        list_del(&call->queue);
        if (call_send(c, call)) {
            list_add_tail(&c->queue, &call->queue);
            sock_close(s, -ECONNRESET);
        }
    }
    rpc_conn_unref(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct rpc_sock *s = req->data;

    if (!s->conn)
        return;
    if (status < 0) {
        log_debug("rpc: connect to %s: %s", s->conn->peer, uv_strerror(status));
        sock_close(s, status == UV_ECANCELED ? -ECONNREFUSED : status);
        return;
    }
    uv_timer_stop(&s->timer);
    sock_open(s);
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct rpc_sock *s = t->data;

    if (s->conn)
        sock_close(s, -ETIMEDOUT);
}

static void conn_connect(rpc_conn *c)
{
    struct rpc_sock *s;
    uint64_t now = mono_ms();
    int r;

    if (c->closed || c->state != C_IDLE)
        return;
    if (now < c->retry_at_ms && c->opts.fail_fast && c->connect_err) {
        /* Failed from the loop, not inside the rpc_call that got here. */
        if (!uv_is_active((uv_handle_t *)&c->retry))
            uv_timer_start(&c->retry, on_fail_fast, 0, 0);
        return;
    }
    if (now < c->retry_at_ms) {
        uv_timer_start(&c->retry, on_retry, c->retry_at_ms - now, 0);
        c->state = C_CONNECTING; /* waiting out the backoff counts as connecting */
        return;
    }
    s = sock_new(c);
    if (!s) {
        fail_calls(c, -ENOMEM);
        return;
    }
    c->sock = s;
    c->state = C_CONNECTING;
    s->connect_req.data = s;
    r = uv_tcp_connect(&s->connect_req, &s->tcp, (const struct sockaddr *)&c->addr, on_connect);
    if (r < 0) {
        sock_close(s, r);
        return;
    }
    uv_timer_start(&s->timer, on_connect_timeout, c->opts.connect_timeout_ms, 0);
}

static void on_fail_fast(uv_timer_t *t)
{
    rpc_conn *c = t->data;

    if (c->state != C_IDLE || c->closed)
        return; /* a connect started meanwhile: the calls wait for it */
    if (mono_ms() >= c->retry_at_ms) {
        if (!list_empty(&c->queue))
            conn_connect(c); /* the backoff is over: try again */
        return;
    }
    rpc_conn_ref(c);
    fail_calls(c, c->connect_err);
    rpc_conn_unref(c);
}

static void on_retry(uv_timer_t *t)
{
    rpc_conn *c = t->data;

    c->state = C_IDLE;
    if (!list_empty(&c->queue))
        conn_connect(c);
}

/* ------------------------------------------------------------ connections */

static rpc_conn *conn_new(uv_loop_t *loop, const rpc_service *svc, const struct rpc_opts *opts)
{
    rpc_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->loop = loop;
    c->refs = 1;
    c->svc = svc;
    fill_opts(&c->opts, opts);
    u64map_init(&c->calls);
    list_init(&c->queue);
    list_init(&c->link);
    uv_timer_init(loop, &c->retry);
    c->retry.data = c;
    return c;
}

int rpc_connect(uv_loop_t *loop, const char *addr, const rpc_service *svc,
                const struct rpc_opts *opts, rpc_conn **out)
{
    struct sockaddr_in sa;
    rpc_conn *c;

    if (parse_addr(addr, &sa) || sa.sin_port == 0)
        return -EINVAL;
    c = conn_new(loop, svc, opts);
    if (!c)
        return -ENOMEM;
    c->client = true;
    c->addr = sa;
    snprintf(c->peer, sizeof(c->peer), "%s", addr);
    *out = c;
    return 0;
}

static void conn_free_cb(uv_handle_t *h)
{
    rpc_conn *c = h->data;

    u64map_free(&c->calls);
    free(c);
}

void rpc_conn_ref(rpc_conn *c)
{
    c->refs++;
}

void rpc_conn_unref(rpc_conn *c)
{
    if (--c->refs > 0)
        return;
    uv_close((uv_handle_t *)&c->retry, conn_free_cb);
}

void rpc_conn_reset(rpc_conn *c)
{
    if (c->sock)
        sock_close(c->sock, -ECONNRESET);
}

void rpc_conn_close(rpc_conn *c)
{
    rpc_conn_ref(c);
    c->closed = true;
    uv_timer_stop(&c->retry);
    if (c->sock)
        sock_close(c->sock, -ECONNRESET);
    fail_calls(c, -ECONNRESET); /* calls queued during backoff */
    c->state = C_IDLE;
    if (c->client)
        rpc_conn_unref(c); /* the creator's reference */
    rpc_conn_unref(c);
}

bool rpc_conn_is_open(const rpc_conn *c)
{
    return c->state == C_OPEN;
}

const char *rpc_conn_peer(const rpc_conn *c)
{
    return c->peer;
}

void *rpc_conn_data(const rpc_conn *c)
{
    return c->data;
}

void rpc_conn_set_data(rpc_conn *c, void *data)
{
    c->data = data;
}

size_t rpc_conn_pending(const rpc_conn *c)
{
    return c->calls.len;
}

void rpc_conn_pause(rpc_conn *c)
{
    if (c->paused)
        return;
    c->paused = true;
    if (c->sock && c->state == C_OPEN)
        uv_read_stop((uv_stream_t *)&c->sock->tcp);
}

void rpc_conn_resume(rpc_conn *c)
{
    struct rpc_sock *s = c->sock;

    if (!c->paused)
        return;
    c->paused = false;
    if (!s || c->state != C_OPEN)
        return;
    if (s->frame_start_ms)
        s->frame_start_ms = mono_ms(); /* a frame cut by the pause starts its clock again */
    if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) < 0)
        sock_close(s, -ECONNRESET);
}

/* ----------------------------------------------------------------- server */

static void on_connection(uv_stream_t *server, int status)
{
    rpc_server *srv = server->data;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    struct rpc_sock *s;
    rpc_conn *c;

    if (status < 0) {
        log_warn("rpc: accept on %s: %s", srv->addr, uv_strerror(status));
        return;
    }
    c = conn_new(srv->loop, srv->svc, &srv->opts);
    s = c ? sock_new(c) : NULL;
    if (!s) {
        /* Out of memory: accept into a throwaway handle would also allocate. */
        log_error("rpc: out of memory accepting on %s", srv->addr);
        if (c)
            rpc_conn_unref(c);
        return;
    }
    c->sock = s;
    if (uv_accept(server, (uv_stream_t *)&s->tcp) < 0) {
        sock_close(s, -ECONNABORTED); /* drops the socket's reference: frees c */
        return;
    }
    if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &sslen) == 0 && ss.ss_family == AF_INET)
        format_addr((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
    else
        snprintf(c->peer, sizeof(c->peer), "unknown");
    c->server = srv;
    list_add_tail(&srv->conns, &c->link);
    /* The open socket holds the creation reference; on_close gets to see it go. */
    sock_open(s);
}

int rpc_listen(uv_loop_t *loop, const char *addr, const rpc_service *svc,
               const struct rpc_opts *opts, rpc_server **out)
{
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    rpc_server *s;
    int r;

    if (parse_addr(addr, &sa))
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->svc = svc;
    fill_opts(&s->opts, opts);
    list_init(&s->conns);
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    r = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&sa, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&s->tcp, 511, on_connection);
    if (r == 0)
        r = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &blen);
    if (r < 0) {
        uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
        return r;
    }
    format_addr((struct sockaddr_in *)&bound, s->addr, sizeof(s->addr));
    *out = s;
    return 0;
}

void rpc_server_addr(const rpc_server *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s", s->addr);
}

static void server_free_cb(uv_handle_t *h)
{
    free(h->data);
}

void rpc_server_close(rpc_server *s)
{
    struct list *pos, *tmp;

    list_for_each_safe(pos, tmp, &s->conns)
    {
        rpc_conn *c = list_entry(pos, rpc_conn, link);
        if (c->sock)
            sock_close(c->sock, -ECONNRESET);
    }
    uv_close((uv_handle_t *)&s->tcp, server_free_cb);
}
