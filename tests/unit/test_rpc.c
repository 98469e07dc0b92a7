/*
 * Unit tests for common/rpc: real TCP on 127.0.0.1 inside one process.
 * Calls in flight answered out of order, timeouts, closes, bad frames from a
 * raw socket, unknown messages, reconnects, payloads read in place, calls
 * from the server side, and pausing a connection's reads.
 */
#include "frame.h"
#include "rpc.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NCALLS 1000

static uv_loop_t loop;
static rpc_server *server;
static char server_addr[64];

/* --------------------------------------------------------------- server */

static rpc_req *held[NCALLS];
static int nheld;
static int hold_all; /* stash requests instead of answering */
static int answer_after;

static void reply_stat(rpc_req *req)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__StatRep body = KEEL__STAT_REP__INIT;
    Keel__Attr attr = KEEL__ATTR__INIT;

    attr.ino = strtoull(req->env->stat_req->path + 1, NULL, 10);
    body.attr = &attr;
    rep.body_case = KEEL__ENVELOPE__BODY_STAT_REP;
    rep.stat_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void shuffle_and_answer(void)
{
    for (int i = nheld - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        rpc_req *t = held[i];
        held[i] = held[j];
        held[j] = t;
    }
    for (int i = 0; i < nheld; i++)
        reply_stat(held[i]);
    nheld = 0;
}

static void h_stat(rpc_req *req, void *ctx)
{
    if (!hold_all) {
        reply_stat(req);
        return;
    }
    held[nheld++] = req;
    if (answer_after && nheld == answer_after)
        shuffle_and_answer();
}

/* The first byte of each read request's payload, in arrival order. */
static uint8_t arrivals[64];
static size_t narrivals;

/* Echoes the request's payload back. */
static void h_read(rpc_req *req, void *ctx)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__ReadRep body = KEEL__READ_REP__INIT;
    uint8_t *p = req->payload;
    uint32_t n = req->payload_len;

    if (n && narrivals < sizeof(arrivals))
        arrivals[narrivals++] = p[0];

    body.checksum = n;
    rep.body_case = KEEL__ENVELOPE__BODY_READ_REP;
    rep.read_rep = &body;
    req->payload = NULL;
    rpc_reply(req, &rep, rpc_payload_malloced(p, n));
}

static const rpc_handler handlers[] = {
    {KEEL__ENVELOPE__BODY_STAT_REQ, "stat", h_stat},
    {KEEL__ENVELOPE__BODY_READ_REQ, "read", h_read},
};

static int server_closes;
static rpc_conn *last_server_conn;

static void srv_open(rpc_conn *c, void *ctx)
{
    last_server_conn = c;
}

static void srv_close(rpc_conn *c, int err, void *ctx)
{
    server_closes++;
    if (last_server_conn == c)
        last_server_conn = NULL;
}

static rpc_service service = {handlers, 2, NULL, srv_open, srv_close};

static void start_server(const char *addr, uint32_t frame_timeout_ms)
{
    struct rpc_opts o = {.frame_timeout_ms = frame_timeout_ms};

    ck_assert_int_eq(rpc_listen(&loop, addr, &service, &o, &server), 0);
    rpc_server_addr(server, server_addr, sizeof(server_addr));
}

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    nheld = 0;
    hold_all = 0;
    answer_after = 0;
    server_closes = 0;
    last_server_conn = NULL;
    start_server("127.0.0.1:0", 0);
}

/* Runs the loop until every handle is closed; fails on leftovers. */
static void teardown(void)
{
    for (int i = 0; i < nheld; i++)
        rpc_reply_error(held[i], -EIO, "test over");
    nheld = 0;
    if (server)
        rpc_server_close(server);
    server = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static void closed_cb(uv_handle_t *h)
{
    *(int *)h->data = 1;
}

/* Closes a handle that lives on the stack and waits until libuv let go. */
static void close_and_wait(uv_handle_t *h)
{
    int closed = 0;

    h->data = &closed;
    uv_close(h, closed_cb);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
}

static void expire(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop until *flag becomes non-zero or ms pass. */
static void run_until(int *flag, unsigned ms)
{
    int expired = 0;
    uv_timer_t t;

    uv_timer_init(&loop, &t);
    t.data = &expired;
    uv_timer_start(&t, expire, ms, 0);
    while (!*flag && !expired)
        uv_run(&loop, UV_RUN_ONCE);
    close_and_wait((uv_handle_t *)&t);
}

static void sleep_loop(unsigned ms)
{
    int never = 0;

    run_until(&never, ms);
}

/* --------------------------------------------------------------- client */

struct result {
    int calls;
    int status;
    uint64_t ino;
};

static struct result results[NCALLS];
static int completed;

static void stat_done(int status, rpc_msg *m, void *arg)
{
    struct result *r = arg;

    r->calls++;
    r->status = status;
    if (status == 0 && m->env->body_case == KEEL__ENVELOPE__BODY_STAT_REP)
        r->ino = m->env->stat_rep->attr->ino;
    completed++;
}

static int call_stat(rpc_conn *c, int n, uint32_t timeout_ms)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatReq req = KEEL__STAT_REQ__INIT;
    struct rpc_call_opts o = {.timeout_ms = timeout_ms};
    char path[32];

    snprintf(path, sizeof(path), "/%d", n);
    req.path = path;
    env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
    env.stat_req = &req;
    return rpc_call(c, &env, RPC_NO_PAYLOAD, &o, stat_done, &results[n]);
}

static rpc_conn *client(void)
{
    rpc_conn *c;

    memset(results, 0, sizeof(results));
    completed = 0;
    ck_assert_int_eq(rpc_connect(&loop, server_addr, NULL, NULL, &c), 0);
    return c;
}

START_TEST(thousand_calls_out_of_order)
{
    rpc_conn *c = client();
    int done_flag = 0;

    hold_all = 1;
    answer_after = NCALLS;
    srand(4);
    for (int i = 0; i < NCALLS; i++)
        ck_assert_int_eq(call_stat(c, i, 10000), 0);
    ck_assert_uint_eq(rpc_conn_pending(c), NCALLS);
    while (completed < NCALLS && !done_flag) {
        run_until(&done_flag, 10);
        done_flag = completed >= NCALLS;
    }
    for (int i = 0; i < NCALLS; i++) {
        ck_assert_int_eq(results[i].calls, 1);
        ck_assert_int_eq(results[i].status, 0);
        ck_assert_uint_eq(results[i].ino, (uint64_t)i);
    }
    ck_assert_uint_eq(rpc_conn_pending(c), 0);
    rpc_conn_close(c);
}
END_TEST

START_TEST(timeout_fires_once_and_late_reply_is_dropped)
{
    rpc_conn *c = client();
    int flag = 0;

    hold_all = 1;
    ck_assert_int_eq(call_stat(c, 1, 50), 0);
    run_until(&completed, 2000);
    ck_assert_int_eq(results[1].calls, 1);
    ck_assert_int_eq(results[1].status, -ETIMEDOUT);
    /* The server answers late: nothing more may reach the callback. */
    ck_assert_int_eq(nheld, 1);
    reply_stat(held[0]);
    nheld = 0;
    sleep_loop(100);
    ck_assert_int_eq(results[1].calls, 1);
    /* The connection still works. */
    hold_all = 0;
    ck_assert_int_eq(call_stat(c, 2, 1000), 0);
    flag = 0;
    while (results[2].calls == 0 && flag++ < 200)
        sleep_loop(5);
    ck_assert_int_eq(results[2].status, 0);
    ck_assert_uint_eq(results[2].ino, 2);
    rpc_conn_close(c);
}
END_TEST

START_TEST(close_fails_pending_calls)
{
    rpc_conn *c = client();

    hold_all = 1;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(call_stat(c, i, 10000), 0);
    while (nheld < 10 && completed == 0)
        sleep_loop(5);
    rpc_conn_close(c);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(results[i].calls, 1);
        ck_assert_int_eq(results[i].status, -ECONNRESET);
    }
    sleep_loop(50);
    ck_assert_int_eq(completed, 10);
}
END_TEST

START_TEST(server_close_fails_client_calls)
{
    rpc_conn *c = client();
    int tries = 0;

    hold_all = 1;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(call_stat(c, i, 10000), 0);
    while (nheld < 10 && tries++ < 400)
        sleep_loop(5);
    ck_assert_int_eq(nheld, 10);
    ck_assert_ptr_nonnull(last_server_conn);
    rpc_conn_reset(last_server_conn);
    tries = 0;
    while (completed < 10 && tries++ < 400)
        sleep_loop(5);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(results[i].calls, 1);
        ck_assert_int_eq(results[i].status, -ECONNRESET);
    }
    ck_assert_int_eq(server_closes, 1);
    /* Answering requests of a closed connection is harmless. */
    for (int i = 0; i < nheld; i++)
        ck_assert_int_eq(rpc_reply_error(held[i], -EIO, "gone"), -ENOTCONN);
    nheld = 0;
    /* The client reconnects on its next call. */
    hold_all = 0;
    ck_assert_int_eq(call_stat(c, 20, 5000), 0);
    tries = 0;
    while (results[20].calls == 0 && tries++ < 400)
        sleep_loop(5);
    ck_assert_int_eq(results[20].status, 0);
    rpc_conn_close(c);
}
END_TEST

static void unknown_done(int status, rpc_msg *m, void *arg)
{
    int *st = arg;
    *st = status;
}

START_TEST(unknown_message_gets_an_error)
{
    rpc_conn *c = client();
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__MkdirReq req = KEEL__MKDIR_REQ__INIT;
    int st = 1, tries = 0;

    req.path = "/x";
    env.body_case = KEEL__ENVELOPE__BODY_MKDIR_REQ;
    env.mkdir_req = &req;
    ck_assert_int_eq(rpc_call(c, &env, RPC_NO_PAYLOAD, NULL, unknown_done, &st), 0);
    while (st == 1 && tries++ < 400)
        sleep_loop(5);
    ck_assert_int_eq(st, -EOPNOTSUPP);
    ck_assert_int_eq(call_stat(c, 3, 1000), 0);
    tries = 0;
    while (results[3].calls == 0 && tries++ < 400)
        sleep_loop(5);
    ck_assert_int_eq(results[3].status, 0);
    ck_assert_int_eq(server_closes, 0);
    rpc_conn_close(c);
}
END_TEST

struct echo {
    int status;
    bool in_rbuf;
    uint32_t len;
    int done;
    uint8_t *copy;
};

static void echo_done(int status, rpc_msg *m, void *arg)
{
    struct echo *e = arg;

    e->done = 1;
    e->status = status;
    if (status == 0) {
        e->in_rbuf = m->in_rbuf;
        e->len = m->payload_len;
        if (!m->in_rbuf) {
            e->copy = m->payload; /* take it */
            m->payload = NULL;
        }
    }
}

START_TEST(payload_round_trip_into_caller_buffer)
{
    rpc_conn *c = client();
    const size_t n = 4u << 20;
    uint8_t *out = malloc(n), *in = calloc(1, n);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReadReq req = KEEL__READ_REQ__INIT;
    struct rpc_call_opts o = {.timeout_ms = 10000, .rbuf = in, .rcap = n};
    struct echo e = {0};

    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(i * 31 + 7);
    env.body_case = KEEL__ENVELOPE__BODY_READ_REQ;
    env.read_req = &req;
    ck_assert_int_eq(rpc_call(c, &env, rpc_payload_malloced(out, n), &o, echo_done, &e), 0);
    run_until(&e.done, 10000);
    ck_assert_int_eq(e.status, 0);
    ck_assert(e.in_rbuf);
    ck_assert_uint_eq(e.len, n);
    for (size_t i = 0; i < n; i++)
        if (in[i] != (uint8_t)(i * 31 + 7))
            ck_abort_msg("payload byte %zu differs", i);

    /* Too small a buffer: the payload comes malloc'd instead. */
    memset(&e, 0, sizeof(e));
    o.rcap = 10;
    out = malloc(1000);
    memset(out, 9, 1000);
    ck_assert_int_eq(rpc_call(c, &env, rpc_payload_malloced(out, 1000), &o, echo_done, &e), 0);
    run_until(&e.done, 10000);
    ck_assert_int_eq(e.status, 0);
    ck_assert(!e.in_rbuf);
    ck_assert_uint_eq(e.len, 1000);
    ck_assert_uint_eq(e.copy[999], 9);
    free(e.copy);

    /* Over the payload limit: refused up front, nothing taken. */
    uint8_t *big = malloc(8);
    ck_assert_int_eq(rpc_call(c, &env, (rpc_payload){big, FRAME_MAX_PAYLOAD + 1u, NULL, NULL}, &o,
                              echo_done, &e),
                     -EMSGSIZE);
    free(big);
    free(in);
    rpc_conn_close(c);
}
END_TEST

/* Frames queued behind a full socket (the server reads nothing) and frames
 * written at once must reach the peer whole and in the order sent. */
START_TEST(frames_behind_a_full_socket_keep_their_order)
{
    rpc_conn *c = client();
    enum { K = 8 };
    struct echo e[K] = {0};
    size_t len[K];
    int done = 0;

    ck_assert_int_eq(call_stat(c, 1, 10000), 0);
    run_until(&completed, 2000);
    ck_assert_ptr_nonnull(last_server_conn);
    rpc_conn_pause(last_server_conn);
    narrivals = 0;
    for (int k = 0; k < K; k++) {
        Keel__Envelope env = KEEL__ENVELOPE__INIT;
        Keel__ReadReq req = KEEL__READ_REQ__INIT;
        struct rpc_call_opts o = {.timeout_ms = 10000};
        uint8_t *out;

        len[k] = k % 2 ? 100 : (3u << 20) + 1; /* more than the socket buffers */
        out = malloc(len[k]);
        memset(out, 'a' + k, len[k]);
        env.body_case = KEEL__ENVELOPE__BODY_READ_REQ;
        env.read_req = &req;
        ck_assert_int_eq(rpc_call(c, &env, rpc_payload_malloced(out, len[k]), &o, echo_done, &e[k]),
                         0);
    }
    sleep_loop(100);
    rpc_conn_resume(last_server_conn);
    for (int i = 0; i < 1000 && done < K; i++) {
        sleep_loop(10);
        done = 0;
        for (int k = 0; k < K; k++)
            done += e[k].done;
    }
    ck_assert_int_eq(done, K);
    ck_assert_uint_eq(narrivals, K);
    for (int k = 0; k < K; k++) {
        ck_assert_int_eq(e[k].status, 0);
        ck_assert_uint_eq(e[k].len, len[k]);
        ck_assert_int_eq(arrivals[k], 'a' + k);
        for (size_t i = 0; i < len[k]; i++)
            if (e[k].copy[i] != 'a' + k)
                ck_abort_msg("reply %d byte %zu differs", k, i);
        free(e[k].copy);
    }
    rpc_conn_close(c);
}
END_TEST

/* Learns a free port (the server's), stops listening on it, and connects
 * there with opts: a first call is refused. */
static rpc_conn *refused_client(char *addr, size_t len, const struct rpc_opts *opts)
{
    rpc_conn *c;

    snprintf(addr, len, "%s", server_addr);
    rpc_server_close(server);
    server = NULL;
    sleep_loop(10);
    memset(results, 0, sizeof(results));
    completed = 0;
    ck_assert_int_eq(rpc_connect(&loop, addr, NULL, opts, &c), 0);
    ck_assert_int_eq(call_stat(c, 1, 2000), 0);
    run_until(&completed, 3000);
    ck_assert_int_eq(results[1].calls, 1);
    ck_assert_int_eq(results[1].status, -ECONNREFUSED);
    return c;
}

START_TEST(reconnect_after_refused)
{
    char addr[64];
    rpc_conn *c = refused_client(addr, sizeof(addr), NULL);
    int tries = 0;

    /* A call during the backoff waits for the next attempt, which works. */
    start_server(addr, 0);
    ck_assert_int_eq(call_stat(c, 2, 5000), 0);
    while (results[2].calls == 0 && tries++ < 1000)
        sleep_loop(5);
    ck_assert_int_eq(results[2].calls, 1);
    ck_assert_int_eq(results[2].status, 0);
    rpc_conn_close(c);
}
END_TEST

START_TEST(fail_fast_during_backoff)
{
    struct rpc_opts o = {.backoff_min_ms = 60000, .backoff_max_ms = 60000, .fail_fast = true};
    char addr[64];
    rpc_conn *c = refused_client(addr, sizeof(addr), &o);

    /* Within the minute of backoff: fails with the connect's error, from
     * the loop (not inside rpc_call), long before its own timeout. */
    completed = 0;
    ck_assert_int_eq(call_stat(c, 2, 30000), 0);
    ck_assert_int_eq(results[2].calls, 0);
    run_until(&completed, 2000);
    ck_assert_int_eq(results[2].calls, 1);
    ck_assert_int_eq(results[2].status, -ECONNREFUSED);
    rpc_conn_close(c);
}
END_TEST

/* The server side calls a client that serves handlers. */
static int client_served;

static void h_recall(rpc_req *req, void *ctx)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__LeaseRecallRep body = KEEL__LEASE_RECALL_REP__INIT;

    client_served++;
    body.released = req->env->lease_recall_req->ino == 77;
    rep.body_case = KEEL__ENVELOPE__BODY_LEASE_RECALL_REP;
    rep.lease_recall_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void recall_done(int status, rpc_msg *m, void *arg)
{
    int *released = arg;
    *released = status == 0 && m->env->lease_recall_rep->released ? 1 : -1;
}

START_TEST(server_calls_client)
{
    static const rpc_handler ch[] = {{KEEL__ENVELOPE__BODY_LEASE_RECALL_REQ, "recall", h_recall}};
    static rpc_service csvc = {ch, 1, NULL, NULL, NULL};
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__LeaseRecallReq req = KEEL__LEASE_RECALL_REQ__INIT;
    rpc_conn *c;
    int released = 0, tries = 0;

    memset(results, 0, sizeof(results));
    ck_assert_int_eq(rpc_connect(&loop, server_addr, &csvc, NULL, &c), 0);
    ck_assert_int_eq(call_stat(c, 5, 2000), 0);
    while (results[5].calls == 0 && tries++ < 400)
        sleep_loop(5);
    ck_assert_ptr_nonnull(last_server_conn);
    req.ino = 77;
    env.body_case = KEEL__ENVELOPE__BODY_LEASE_RECALL_REQ;
    env.lease_recall_req = &req;
    ck_assert_int_eq(rpc_call(last_server_conn, &env, RPC_NO_PAYLOAD, NULL, recall_done, &released),
                     0);
    run_until(&released, 5000);
    ck_assert_int_eq(released, 1);
    ck_assert_int_eq(client_served, 1);
    rpc_conn_close(c);
}
END_TEST

/* ------------------------------------------------- raw sockets, bad frames */

struct raw {
    const void *data;
    size_t len;
    int closed_by_server; /* 1 if recv saw EOF or reset */
    double seconds;       /* until it did */
    int done;
    uv_async_t *wake;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *raw_thread(void *arg)
{
    struct raw *r = arg;
    struct sockaddr_in sa;
    struct timeval tv = {5, 0};
    char *colon = strrchr(server_addr, ':');
    char buf[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    double t0;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        t0 = now_s();
        if (send(fd, r->data, r->len, MSG_NOSIGNAL) == (ssize_t)r->len) {
            ssize_t n;
            while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
                ;
            r->closed_by_server = n == 0 || (n < 0 && errno == ECONNRESET);
            r->seconds = now_s() - t0;
        }
    }
    close(fd);
    r->done = 1;
    uv_async_send(r->wake);
    return NULL;
}

static void noop_async(uv_async_t *a)
{
}

static struct raw run_raw(const void *data, size_t len)
{
    struct raw r = {data, len, 0, 0, 0, NULL};
    uv_async_t wake;
    pthread_t th;

    uv_async_init(&loop, &wake, noop_async);
    r.wake = &wake;
    pthread_create(&th, NULL, raw_thread, &r);
    while (!r.done)
        uv_run(&loop, UV_RUN_ONCE);
    pthread_join(th, NULL);
    close_and_wait((uv_handle_t *)&wake);
    return r;
}

START_TEST(garbage_closes_connection)
{
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    struct raw r = run_raw(junk, sizeof(junk) - 1);

    ck_assert(r.closed_by_server);
    ck_assert_int_eq(server_closes, 1);
}
END_TEST

START_TEST(oversized_frame_closes_connection)
{
    uint32_t p[4] = {FRAME_MAGIC, 64, FRAME_MAX_PAYLOAD + 1, 0};
    struct raw r = run_raw(p, sizeof(p));

    ck_assert(r.closed_by_server);
    p[1] = FRAME_MAX_HEADER + 1;
    p[2] = 0;
    r = run_raw(p, sizeof(p));
    ck_assert(r.closed_by_server);
    ck_assert_int_eq(server_closes, 2);
}
END_TEST

START_TEST(stalled_partial_frame_closes_after_deadline)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatReq req = KEEL__STAT_REQ__INIT;
    uint8_t *hdr;
    size_t hlen;
    struct raw r;

    rpc_server_close(server);
    start_server("127.0.0.1:0", 300);
    req.path = "/x";
    env.call_id = 1;
    env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
    env.stat_req = &req;
    ck_assert_int_eq(frame_encode(&env, 100, &hdr, &hlen), 0);
    /* Header complete, payload promised but never sent. */
    r = run_raw(hdr, hlen);
    free(hdr);
    ck_assert(r.closed_by_server);
    ck_assert(r.seconds >= 0.25);
    ck_assert(r.seconds < 3.0);
}
END_TEST

START_TEST(paused_connection_reads_nothing_until_resumed)
{
    rpc_conn *c = client();

    ck_assert_int_eq(call_stat(c, 1, 10000), 0);
    run_until(&completed, 2000);
    ck_assert_int_eq(completed, 1);
    ck_assert_ptr_nonnull(last_server_conn);
    rpc_conn_pause(last_server_conn);
    rpc_conn_pause(last_server_conn); /* idempotent */
    ck_assert_int_eq(call_stat(c, 2, 10000), 0);
    ck_assert_int_eq(call_stat(c, 3, 10000), 0);
    sleep_loop(300);
    ck_assert_int_eq(completed, 1); /* neither read nor answered */
    ck_assert_int_eq(results[2].calls, 0);
    rpc_conn_resume(last_server_conn);
    rpc_conn_resume(last_server_conn);
    for (int i = 0; i < 200 && completed < 3; i++)
        sleep_loop(10);
    ck_assert_int_eq(completed, 3);
    ck_assert_int_eq(results[2].status, 0);
    ck_assert_uint_eq(results[2].ino, 2);
    ck_assert_int_eq(results[3].status, 0);
    ck_assert_uint_eq(results[3].ino, 3);
    rpc_conn_close(c);
}
END_TEST

static void pause_server_conn(uv_timer_t *t)
{
    if (last_server_conn)
        rpc_conn_pause(last_server_conn);
}

static void resume_server_conn(uv_timer_t *t)
{
    if (last_server_conn)
        rpc_conn_resume(last_server_conn);
}

START_TEST(paused_time_does_not_count_against_a_partial_frame)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatReq req = KEEL__STAT_REQ__INIT;
    uv_timer_t pause_t, resume_t;
    uint8_t *hdr;
    size_t hlen;
    struct raw r;

    rpc_server_close(server);
    start_server("127.0.0.1:0", 300);
    req.path = "/x";
    env.call_id = 1;
    env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
    env.stat_req = &req;
    ck_assert_int_eq(frame_encode(&env, 100, &hdr, &hlen), 0);
    /* The header arrives, the payload never does: paused from 100 ms to
     * 900 ms, the frame's 300 ms run from the resume. */
    uv_timer_init(&loop, &pause_t);
    uv_timer_init(&loop, &resume_t);
    uv_timer_start(&pause_t, pause_server_conn, 100, 0);
    uv_timer_start(&resume_t, resume_server_conn, 900, 0);
    r = run_raw(hdr, hlen);
    free(hdr);
    ck_assert(r.closed_by_server);
    ck_assert(r.seconds >= 1.1);
    ck_assert(r.seconds < 4.0);
    close_and_wait((uv_handle_t *)&pause_t);
    close_and_wait((uv_handle_t *)&resume_t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rpc");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, thousand_calls_out_of_order);
    tcase_add_test(tc, timeout_fires_once_and_late_reply_is_dropped);
    tcase_add_test(tc, close_fails_pending_calls);
    tcase_add_test(tc, server_close_fails_client_calls);
    tcase_add_test(tc, unknown_message_gets_an_error);
    tcase_add_test(tc, payload_round_trip_into_caller_buffer);
    tcase_add_test(tc, frames_behind_a_full_socket_keep_their_order);
    tcase_add_test(tc, reconnect_after_refused);
    tcase_add_test(tc, fail_fast_during_backoff);
    tcase_add_test(tc, server_calls_client);
    tcase_add_test(tc, garbage_closes_connection);
    tcase_add_test(tc, oversized_frame_closes_connection);
    tcase_add_test(tc, stalled_partial_frame_closes_after_deadline);
    tcase_add_test(tc, paused_connection_reads_nothing_until_resumed);
    tcase_add_test(tc, paused_time_does_not_count_against_a_partial_frame);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
