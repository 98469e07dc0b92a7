/*
 * rpc: calls and replies over libuv TCP, built on frame.
 *
 * A connection (rpc_conn) carries frames both ways: each side may call the
 * other, many calls may be in flight, and replies may come in any order. A
 * call names its reply by call id; each call has a timeout, and its callback
 * runs exactly once: with the reply, with -ETIMEDOUT, or with -ECONNRESET
 * (or the connect error) when the connection goes away.
 *
 * Incoming requests are dispatched through a table {type, name, handler}
 * (the Envelope body case). A handler owns its rpc_req and must answer it
 * exactly once with rpc_reply or rpc_reply_error, at once or later from the
 * loop thread (e.g. after disk work); answering a request whose connection
 * has closed just frees it. A request with no handler is answered
 * -EOPNOTSUPP. A bad frame closes the connection.
 *
 * Client connections (rpc_connect) know their peer's address and reconnect
 * on demand: a call made while disconnected starts a connect (after the
 * backoff that follows a failed attempt, doubling from backoff_min to
 * backoff_max) and waits, bounded by its own timeout, or with fail_fast
 * fails during that backoff; a failed connect fails the waiting calls.
 * Server connections come from rpc_listen and end when their socket closes.
 *
 * Connection states (client side):
 *
 *   IDLE --call--> CONNECTING --connected--> OPEN --socket lost--> IDLE
 *                      \--failed (calls fail, backoff)--> IDLE
 *
 * Threads: everything here runs on the loop thread that owns the handles.
 */
#ifndef KEEL_RPC_H
#define KEEL_RPC_H

#include "keel.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct rpc_conn rpc_conn;
typedef struct rpc_server rpc_server;

/* An incoming request; see rpc_reply. */
typedef struct rpc_req {
    rpc_conn *conn; /* referenced until answered */
    uint64_t call_id;
    Keel__Envelope *env; /* decoded request, owned by the req */
    uint8_t *payload;    /* owned by the req; a handler may take it (set to NULL) */
    uint32_t payload_len;
    const char *name; /* handler name, for logs */
} rpc_req;

/* A reply handed to a call's callback; valid only during the callback. */
typedef struct rpc_msg {
    Keel__Envelope *env; /* never NULL when status came from the peer */
    uint8_t *payload;    /* the callback may take it (set to NULL) unless in_rbuf */
    uint32_t payload_len;
    bool in_rbuf; /* payload was read into the call's rbuf */
} rpc_msg;

typedef void (*rpc_handler_fn)(rpc_req *req, void *ctx);

typedef struct rpc_handler {
    Keel__Envelope__BodyCase type;
    const char *name;
    rpc_handler_fn fn;
} rpc_handler;

/* What a connection serves, and whom it tells when it opens and closes. */
typedef struct rpc_service {
    const rpc_handler *handlers;
    size_t nhandlers;
    void *ctx;
    /* Optional: a connection is open (client: connected; server: accepted). */
    void (*on_open)(rpc_conn *c, void *ctx);
    /* Optional: the socket is gone (err: why). Client connections may reopen. */
    void (*on_close)(rpc_conn *c, int err, void *ctx);
} rpc_service;

struct rpc_opts {
    uint32_t call_timeout_ms;    /* default per-call timeout; 0: 30 s */
    uint32_t connect_timeout_ms; /* 0: 5 s */
    uint32_t frame_timeout_ms;   /* a partial frame must complete in this; 0: 30 s */
    uint32_t backoff_min_ms;     /* 0: 100 ms */
    uint32_t backoff_max_ms;     /* 0: 5 s */
    uint32_t max_header;         /* 0: FRAME_MAX_HEADER */
    uint32_t max_payload;        /* 0: FRAME_MAX_PAYLOAD */
    /* Client: a call made while the backoff after a failed connect runs
     * fails at once with that connect's error instead of waiting for the
     * next attempt (for peers that others can stand in for). */
    bool fail_fast;
};

/*
 * Raw bytes sent after a frame's header. rpc_call and rpc_reply take the
 * payload when they return 0: release(arg) runs exactly once, when the bytes
 * have been written or dropped. On an error return nothing was taken.
 *
 * release may be NULL: the bytes are then borrowed, and for a call they are
 * guaranteed not to be read after the call's callback has run (a call that
 * times out while its payload is still queued resets the connection first),
 * so a caller may send straight from its own buffer.
 */
typedef struct rpc_payload {
    const void *data;
    size_t len;
    void (*release)(void *arg);
    void *arg;
} rpc_payload;

#define RPC_NO_PAYLOAD ((rpc_payload){NULL, 0, NULL, NULL})
/* A malloc'd buffer, freed once sent. */
rpc_payload rpc_payload_malloced(void *data, size_t len);

struct rpc_call_opts {
    uint32_t timeout_ms; /* 0: the connection's call_timeout_ms */
    void *rbuf;          /* optional: read the reply's payload straight into this */
    size_t rcap;         /*   if it fits in rcap bytes */
};

/*
 * status: 0, a negative errno from the peer (reply->env carries its error
 * text), or a local -ETIMEDOUT / -ECONNRESET / connect error (reply NULL).
 */
typedef void (*rpc_done_fn)(int status, rpc_msg *reply, void *arg);

/*
 * Listens on "host:port" (port 0: a free one). Returns 0, -EINVAL for a bad
 * address, or the bind/listen error. svc is borrowed for the server's life.
 */
int rpc_listen(uv_loop_t *loop, const char *addr, const rpc_service *svc,
               const struct rpc_opts *opts, rpc_server **out);
/* The address actually bound, "host:port". */
void rpc_server_addr(const rpc_server *s, char *buf, size_t len);
/* Stops listening and closes every accepted connection. Frees the server. */
void rpc_server_close(rpc_server *s);

/*
 * Creates a client connection to "host:port"; nothing is sent until the
 * first call. The caller holds one reference, released by rpc_conn_close.
 * Returns 0, -EINVAL (bad address), or -ENOMEM.
 */
int rpc_connect(uv_loop_t *loop, const char *addr, const rpc_service *svc,
                const struct rpc_opts *opts, rpc_conn **out);

/*
 * Closes the socket (pending calls fail with -ECONNRESET; a client
 * connection will not reconnect). On a client connection this also drops the
 * creator's reference; a server connection's reference belongs to its
 * socket, so holders of extra references still drop their own.
 */
void rpc_conn_close(rpc_conn *c);
/* Closes the socket only; a client connection reconnects on the next call. */
void rpc_conn_reset(rpc_conn *c);
void rpc_conn_ref(rpc_conn *c);
void rpc_conn_unref(rpc_conn *c);
bool rpc_conn_is_open(const rpc_conn *c);
/* The peer's address (client: the address given; server: the remote end). */
const char *rpc_conn_peer(const rpc_conn *c);
void *rpc_conn_data(const rpc_conn *c);
void rpc_conn_set_data(rpc_conn *c, void *data);
/* Calls waiting for a reply. */
size_t rpc_conn_pending(const rpc_conn *c);

/*
 * Backpressure: stop and restart reading from c's socket. While paused,
 * nothing more is read (no requests dispatched, no replies delivered), so
 * the peer's sends back up into TCP; what was already read when it paused
 * (the rest of one read buffer) is still dispatched, and the partial-frame
 * watchdog does not count the paused time. Writes go on. Idempotent; a
 * client connection that reconnects stays paused until resumed.
 */
void rpc_conn_pause(rpc_conn *c);
void rpc_conn_resume(rpc_conn *c);

/*
 * Sends a call. env carries the request body (its call_id, reply, status and
 * error fields are set here); it is encoded before return and stays the
 * caller's. cb runs exactly once, later, on the loop thread, unless this
 * returns an error: -EMSGSIZE (header or payload over the limits), -ENOMEM,
 * -ENOTCONN (the connection was closed by rpc_conn_close, or is a server
 * connection whose socket is gone).
 */
int rpc_call(rpc_conn *c, Keel__Envelope *env, rpc_payload payload,
             const struct rpc_call_opts *opts, rpc_done_fn cb, void *arg);

/*
 * Answers req and frees it. rep may be NULL (an empty success); its body,
 * if any, stays the caller's. The payload is taken as for rpc_call. Returns
 * 0, or -ENOTCONN if the connection is gone (the answer is dropped, the
 * payload released). Either way req is freed.
 */
int rpc_reply(rpc_req *req, Keel__Envelope *rep, rpc_payload payload);
/* Answers req with a negative errno and a message; frees req. */
int rpc_reply_error(rpc_req *req, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
