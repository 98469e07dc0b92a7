/*
 * Tests of a whole datanode (datanode/datanode.c and every module under it)
 * inside one process: a fake namenode served with rpc_listen, up to four
 * datanodes on the same loop, and a client speaking the data protocol.
 *
 * Covered: registration (VERSION written, full report, heartbeats), chained
 * writes and reads on every replica, a dead node named in the ack, refusal
 * of invalid writes without forwarding, fencing by version, corruption
 * reported at once, commands (delete, set version, replicate) from
 * heartbeat replies, ReplicateDone, re-registration on request and after a
 * namenode restart, and a datanode refused by the namenode stopping.
 */
#include "checksum.h"
#include "datanode/datanode.h"
#include "errors.h"
#include "rpc.h"
#include "util.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1u << 20)
#define NDN   4

static uv_loop_t loop;
static char root[64];

/* ------------------------------------------------------------ fake namenode */

struct fake_node {
    uint64_t id;
    char addr[64];
    rpc_conn *conn; /* the datanode's registered connection */
    int registrations;
    int full_reports_done;
    int heartbeats;
    bool full_flag;
    Keel__Command *queued[8]; /* sent in the next heartbeat reply */
    int nqueued;
    bool reregister_next;
};

struct fake_report {
    uint64_t node, chunk, version, length;
    Keel__ReplicaState state;
};

static struct {
    rpc_server *server;
    char addr[64];
    struct fake_node nodes[NDN + 1]; /* by node id */
    uint64_t next_id;
    struct fake_report reports[256]; /* incremental ones */
    int nreports;
    int replicate_done;
    int replicate_status;
    uint64_t replicate_bytes;
    const char *cluster; /* "": refuse with -EINVAL */
} nn;

static struct fake_node *node_of(rpc_conn *c)
{
    for (uint64_t i = 1; i <= NDN; i++)
        if (nn.nodes[i].conn == c)
            return &nn.nodes[i];
    return NULL;
}

static void h_register(rpc_req *req, void *ctx)
{
    const Keel__RegisterReq *q = req->env->register_req;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__RegisterRep body = KEEL__REGISTER_REP__INIT;
    struct fake_node *n;
    uint64_t id = q->node_id;

    if (!nn.cluster[0] || (q->cluster_id[0] && strcmp(q->cluster_id, nn.cluster) != 0)) {
        rpc_reply_error(req, -EINVAL, "wrong cluster");
        return;
    }
    if (id == 0)
        id = ++nn.next_id;
    ck_assert_uint_le(id, NDN);
    n = &nn.nodes[id];
    n->id = id;
    snprintf(n->addr, sizeof(n->addr), "%s", q->addr);
    if (n->conn != req->conn) {
        if (n->conn)
            rpc_conn_unref(n->conn);
        n->conn = req->conn;
        rpc_conn_ref(n->conn);
    }
    n->registrations++;
    body.cluster_id = (char *)nn.cluster;
    body.node_id = id;
    body.chunk_size = CHUNK;
    body.heartbeat_ms = 50;
    rep.body_case = KEEL__ENVELOPE__BODY_REGISTER_REP;
    rep.register_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void reply_commands(rpc_req *req, struct fake_node *n, bool heartbeat)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__HeartbeatRep hb = KEEL__HEARTBEAT_REP__INIT;
    Keel__BlockReportRep br = KEEL__BLOCK_REPORT_REP__INIT;
    int k = n ? n->nqueued : 0;

    if (heartbeat) {
        hb.n_commands = (size_t)k;
        hb.commands = n ? n->queued : NULL;
        hb.reregister = n && n->reregister_next;
        if (n)
            n->reregister_next = false;
        rep.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT_REP;
        rep.heartbeat_rep = &hb;
    } else {
        rep.body_case = KEEL__ENVELOPE__BODY_BLOCK_REPORT_REP;
        rep.block_report_rep = &br;
        k = 0;
    }
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
    for (int i = 0; i < k; i++) {
        free(n->queued[i]->target);
        free(n->queued[i]);
    }
    if (n && k)
        n->nqueued = 0;
}

static void h_heartbeat(rpc_req *req, void *ctx)
{
    struct fake_node *n = node_of(req->conn);

    if (n) {
        n->heartbeats++;
        n->full_flag = req->env->heartbeat_req->full;
    }
    reply_commands(req, n, true);
}

static void h_block_report(rpc_req *req, void *ctx)
{
    const Keel__BlockReportReq *q = req->env->block_report_req;
    struct fake_node *n = node_of(req->conn);

    if (q->full) {
        if (n && q->last)
            n->full_reports_done++;
    } else {
        for (size_t i = 0; i < q->n_replicas && nn.nreports < 256; i++) {
            struct fake_report *r = &nn.reports[nn.nreports++];

            r->node = q->node_id;
            r->chunk = q->replicas[i]->chunk_id;
            r->version = q->replicas[i]->version;
            r->length = q->replicas[i]->length;
            r->state = q->replicas[i]->state;
        }
    }
    reply_commands(req, n, false);
}

static void h_replicate_done(rpc_req *req, void *ctx)
{
    nn.replicate_done++;
    nn.replicate_status = req->env->replicate_done_req->status;
    nn.replicate_bytes = req->env->replicate_done_req->bytes_sent;
    rpc_reply(req, NULL, RPC_NO_PAYLOAD);
}

static const rpc_handler nn_handlers[] = {
    {KEEL__ENVELOPE__BODY_REGISTER_REQ, "register", h_register},
    {KEEL__ENVELOPE__BODY_HEARTBEAT_REQ, "heartbeat", h_heartbeat},
    {KEEL__ENVELOPE__BODY_BLOCK_REPORT_REQ, "block-report", h_block_report},
    {KEEL__ENVELOPE__BODY_REPLICATE_DONE_REQ, "replicate-done", h_replicate_done},
};

static rpc_service nn_service = {nn_handlers, 4, NULL, NULL, NULL};

static void nn_listen(const char *addr)
{
    ck_assert_int_eq(rpc_listen(&loop, addr, &nn_service, NULL, &nn.server), 0);
    rpc_server_addr(nn.server, nn.addr, sizeof(nn.addr));
}

static void nn_close(void)
{
    for (int i = 1; i <= NDN; i++) {
        if (nn.nodes[i].conn)
            rpc_conn_unref(nn.nodes[i].conn);
        nn.nodes[i].conn = NULL;
        for (int k = 0; k < nn.nodes[i].nqueued; k++) {
            free(nn.nodes[i].queued[k]->target);
            free(nn.nodes[i].queued[k]);
        }
        nn.nodes[i].nqueued = 0;
    }
    if (nn.server)
        rpc_server_close(nn.server);
    nn.server = NULL;
}

static void queue_command(uint64_t node, Keel__CommandKind kind, uint64_t chunk, uint64_t version,
                          uint64_t target)
{
    struct fake_node *n = &nn.nodes[node];
    Keel__Command *c = calloc(1, sizeof(*c));

    keel__command__init(c);
    c->kind = kind;
    c->chunk_id = chunk;
    c->version = version;
    if (target) {
        c->target = calloc(1, sizeof(*c->target));
        keel__replica__init(c->target);
        c->target->node_id = target;
        c->target->addr = nn.nodes[target].addr;
        c->target->domain = (char *)"";
    }
    n->queued[n->nqueued++] = c;
}

/* --------------------------------------------------------------- loop help */

static void expire(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

static void closed_cb(uv_handle_t *h)
{
    *(int *)h->data = 1;
}

/* Runs the loop until cond() holds or ms pass; returns cond(). */
static bool run_until(bool (*cond)(void *), void *arg, unsigned ms)
{
    int expired = 0, closed = 0;
    uv_timer_t t;
    bool ok;

    uv_timer_init(&loop, &t);
    t.data = &expired;
    uv_timer_start(&t, expire, ms, 0);
    while (!(ok = cond(arg)) && !expired)
        uv_run(&loop, UV_RUN_ONCE);
    t.data = &closed;
    uv_close((uv_handle_t *)&t, closed_cb);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    return ok;
}

static bool never(void *arg)
{
    return false;
}

static void sleep_loop(unsigned ms)
{
    run_until(never, NULL, ms);
}

static bool flag_set(void *arg)
{
    return *(int *)arg != 0;
}

/* ------------------------------------------------------------- datanodes */

static struct datanode *dns[NDN + 1];
static struct datanode *stopped[16]; /* freed once the loop has run dry */
static int nstopped;
static char dirs[NDN + 1][96];

static uint64_t repl_rate; /* outgoing copy rate of datanodes started next; 0: unlimited */

static void dn_start_opts(int i, uint64_t scrub_rate)
{
    struct datanode_config cfg = {0};

    snprintf(dirs[i], sizeof(dirs[i]), "%s/dn%d", root, i);
    cfg.data_dir = dirs[i];
    cfg.namenode = nn.addr;
    cfg.listen = "127.0.0.1:0";
    cfg.domain = "d";
    cfg.scrub_rate = scrub_rate;
    cfg.replication_rate = repl_rate;
    cfg.peer_timeout_ms = 1000;
    ck_assert_int_eq(datanode_start(&loop, &cfg, &dns[i]), 0);
}

static bool registered(void *arg)
{
    int i = *(int *)arg;

    return nn.nodes[i].full_reports_done > 0 && nn.nodes[i].heartbeats > 0;
}

/* Starts datanode i and waits until it is node i at the fake namenode. */
static void dn_up(int i)
{
    dn_start_opts(i, 0);
    ck_assert(run_until(registered, &i, 5000));
}

/* Stops datanode i (like a shutdown: its listener goes away). */
static void dn_down(int i)
{
    datanode_stop(dns[i]);
    ck_assert_int_lt(nstopped, 16);
    stopped[nstopped++] = dns[i];
    dns[i] = NULL;
    sleep_loop(100);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    memset(&nn, 0, sizeof(nn));
    memset(dns, 0, sizeof(dns));
    nstopped = 0;
    repl_rate = 0;
    nn.cluster = "test-cluster";
    snprintf(root, sizeof(root), "/tmp/keel-ut-dn.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    nn_listen("127.0.0.1:0");
}

static void teardown(void)
{
    for (int i = 1; i <= NDN; i++)
        if (dns[i])
            datanode_stop(dns[i]);
    nn_close();
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 1; i <= NDN; i++)
        datanode_free(dns[i]);
    for (int i = 0; i < nstopped; i++)
        datanode_free(stopped[i]);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------ calls */

struct result {
    int done;
    int status;
    Keel__Envelope *env; /* a copy of the reply's envelope */
    uint8_t *payload;
    uint32_t len;
};

static void call_done(int status, rpc_msg *m, void *arg)
{
    struct result *r = arg;

    r->done = 1;
    r->status = status;
    if (m) {
        size_t n = keel__envelope__get_packed_size(m->env);
        uint8_t *buf = malloc(n);

        keel__envelope__pack(m->env, buf);
        r->env = keel__envelope__unpack(NULL, n, buf);
        free(buf);
        if (m->payload && !m->in_rbuf) {
            r->payload = m->payload;
            r->len = m->payload_len;
            m->payload = NULL;
        }
    }
}

static void result_free(struct result *r)
{
    if (r->env)
        keel__envelope__free_unpacked(r->env, NULL);
    free(r->payload);
    memset(r, 0, sizeof(*r));
}

static void wait_result(struct result *r)
{
    ck_assert(run_until(flag_set, &r->done, 10000));
}

static rpc_conn *client_of(int i)
{
    char addr[64];
    rpc_conn *c;

    datanode_addr(dns[i], addr, sizeof(addr));
    ck_assert_int_eq(rpc_connect(&loop, addr, NULL, NULL, &c), 0);
    return c;
}

/* The fake namenode calls CreateReplica on datanode i. */
static int nn_create(int i, uint64_t chunk, uint64_t version)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CreateReplicaReq q = KEEL__CREATE_REPLICA_REQ__INIT;
    struct result r = {0};
    int st;

    q.chunk_id = chunk;
    q.version = version;
    env.body_case = KEEL__ENVELOPE__BODY_CREATE_REPLICA_REQ;
    env.create_replica_req = &q;
    ck_assert_int_eq(rpc_call(nn.nodes[i].conn, &env, RPC_NO_PAYLOAD, NULL, call_done, &r), 0);
    wait_result(&r);
    st = r.status;
    result_free(&r);
    return st;
}

static int nn_set_version(int i, uint64_t chunk, uint64_t from, uint64_t to)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__SetVersionReq q = KEEL__SET_VERSION_REQ__INIT;
    struct result r = {0};
    int st;

    q.chunk_id = chunk;
    q.version = from;
    q.new_version = to;
    env.body_case = KEEL__ENVELOPE__BODY_SET_VERSION_REQ;
    env.set_version_req = &q;
    ck_assert_int_eq(rpc_call(nn.nodes[i].conn, &env, RPC_NO_PAYLOAD, NULL, call_done, &r), 0);
    wait_result(&r);
    st = r.status;
    if (st == 0)
        ck_assert_uint_eq(r.env->set_version_rep->replica->version, to);
    result_free(&r);
    return st;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 7 + seed * 31) ^ (i >> 10));
}

/* Sends a write to datanode i's client connection c with the given chain
 * (datanode indexes). Returns the reply in r. */
static void do_write(rpc_conn *c, uint64_t chunk, uint64_t version, uint64_t off,
                     const uint8_t *data, uint32_t len, const int *chain, int nchain,
                     uint64_t checksum, struct result *r)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__WriteReq q = KEEL__WRITE_REQ__INIT;
    Keel__Replica reps[NDN], *ptrs[NDN];
    uint8_t *copy = malloc(len ? len : 1);

    memcpy(copy, data, len);
    for (int k = 0; k < nchain; k++) {
        keel__replica__init(&reps[k]);
        reps[k].node_id = nn.nodes[chain[k]].id;
        reps[k].addr = nn.nodes[chain[k]].addr;
        ptrs[k] = &reps[k];
    }
    q.chunk_id = chunk;
    q.version = version;
    q.offset = off;
    q.length = len;
    q.checksum = checksum;
    q.n_chain = (size_t)nchain;
    q.chain = ptrs;
    env.body_case = KEEL__ENVELOPE__BODY_WRITE_REQ;
    env.write_req = &q;
    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(rpc_call(c, &env, rpc_payload_malloced(copy, len), NULL, call_done, r), 0);
    wait_result(r);
}

static void do_read(rpc_conn *c, uint64_t chunk, uint64_t version, uint64_t off, uint32_t len,
                    struct result *r)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReadReq q = KEEL__READ_REQ__INIT;

    q.chunk_id = chunk;
    q.version = version;
    q.offset = off;
    q.length = len;
    env.body_case = KEEL__ENVELOPE__BODY_READ_REQ;
    env.read_req = &q;
    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(rpc_call(c, &env, RPC_NO_PAYLOAD, NULL, call_done, r), 0);
    wait_result(r);
}

static int do_flush(rpc_conn *c, uint64_t chunk, uint64_t version)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__FlushReq q = KEEL__FLUSH_REQ__INIT;
    struct result r = {0};
    int st;

    q.n_chunk_ids = 1;
    q.chunk_ids = &chunk;
    q.n_versions = 1;
    q.versions = &version;
    env.body_case = KEEL__ENVELOPE__BODY_FLUSH_REQ;
    env.flush_req = &q;
    ck_assert_int_eq(rpc_call(c, &env, RPC_NO_PAYLOAD, NULL, call_done, &r), 0);
    wait_result(&r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.env->flush_rep->n_status, 1);
    st = r.env->flush_rep->status[0];
    result_free(&r);
    return st;
}

/* Reads len bytes at off from datanode i and compares them with want. */
static void expect_bytes(int i, uint64_t chunk, uint64_t version, uint64_t off, const uint8_t *want,
                         uint32_t len)
{
    rpc_conn *c = client_of(i);
    struct result r;

    do_read(c, chunk, version, off, len, &r);
    ck_assert_msg(r.status == 0, "read from datanode %d: %d", i, r.status);
    ck_assert_uint_eq(r.len, len);
    ck_assert_int_eq(memcmp(r.payload, want, len), 0);
    ck_assert_uint_eq(r.env->read_rep->checksum, csum_buf(want, len));
    result_free(&r);
    rpc_conn_close(c);
}

/* ------------------------------------------------------------------ tests */

START_TEST(registration_writes_version_and_reports)
{
    char path[512], line[80], *text = NULL;

    dn_up(1);
    snprintf(path, sizeof(path), "%s/VERSION", dirs[1]);
    ck_assert_int_eq(read_file(path, &text, NULL), 0);
    ck_assert_ptr_nonnull(strstr(text, "cluster_id=test-cluster\n"));
    ck_assert_ptr_nonnull(strstr(text, "node_id=1\n"));
    ck_assert_ptr_nonnull(strstr(text, "chunk_size=1048576\n"));
    free(text);
    snprintf(path, sizeof(path), "%s/listen.addr", dirs[1]);
    ck_assert_int_eq(read_file(path, &text, NULL), 0);
    snprintf(line, sizeof(line), "%s\n", nn.nodes[1].addr);
    ck_assert_str_eq(text, line);
    free(text);
    /* A restart keeps the identity. */
    dn_down(1);
    nn.nodes[1].full_reports_done = 0;
    dn_up(1);
    ck_assert_uint_eq(nn.next_id, 1);
    ck_assert_int_ge(nn.nodes[1].registrations, 2);
}
END_TEST

START_TEST(chained_write_reaches_every_replica)
{
    static uint8_t data[200000];
    int chain[] = {2, 3};
    rpc_conn *c;
    struct result r;

    for (int i = 1; i <= 3; i++) {
        dn_up(i);
        ck_assert_int_eq(nn_create(i, 0x42, 1), 0);
    }
    ck_assert_int_eq(nn_create(1, 0x42, 1), -EEXIST);
    fill(data, sizeof(data), 1);
    c = client_of(1);
    do_write(c, 0x42, 1, 5000, data, sizeof(data), chain, 2, csum_buf(data, sizeof(data)), &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.env->write_rep->n_failed, 0);
    ck_assert_uint_eq(r.env->write_rep->n_unreached, 0);
    result_free(&r);
    for (int i = 1; i <= 3; i++) {
        expect_bytes(i, 0x42, 1, 5000, data, sizeof(data));
        ck_assert_int_eq(do_flush(c, 0x42, 1), 0);
    }
    ck_assert_int_eq(do_flush(c, 0x42, 2), err_to_wire(-ESTALE));
    ck_assert_int_eq(do_flush(c, 0x99, 1), err_to_wire(-ENOENT));
    rpc_conn_close(c);
}
END_TEST

START_TEST(dead_third_node_is_named_in_the_ack)
{
    static uint8_t data[65536];
    int chain[] = {2, 3};
    rpc_conn *c;
    struct result r;

    for (int i = 1; i <= 3; i++) {
        dn_up(i);
        ck_assert_int_eq(nn_create(i, 7, 1), 0);
    }
    fill(data, sizeof(data), 2);
    c = client_of(1);
    do_write(c, 7, 1, 0, data, sizeof(data), chain, 2, csum_buf(data, sizeof(data)), &r);
    ck_assert_uint_eq(r.env->write_rep->n_failed, 0);
    result_free(&r);
    dn_down(3);
    do_write(c, 7, 1, 65536, data, sizeof(data), chain, 2, csum_buf(data, sizeof(data)), &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.env->write_rep->n_failed, 1);
    ck_assert_uint_eq(r.env->write_rep->failed[0], 3);
    ck_assert_int_eq(r.env->write_rep->failed_status[0], err_to_wire(-ECONNREFUSED));
    ck_assert_uint_eq(r.env->write_rep->n_unreached, 0);
    result_free(&r);
    /* The survivors have the write. */
    expect_bytes(1, 7, 1, 65536, data, sizeof(data));
    expect_bytes(2, 7, 1, 65536, data, sizeof(data));
    /* With the middle node gone, the last is unreached. */
    dn_down(2);
    do_write(c, 7, 1, 0, data, 100, chain, 2, csum_buf(data, 100), &r);
    ck_assert_uint_eq(r.env->write_rep->n_failed, 1);
    ck_assert_uint_eq(r.env->write_rep->failed[0], 2);
    ck_assert_uint_eq(r.env->write_rep->n_unreached, 1);
    ck_assert_uint_eq(r.env->write_rep->unreached[0], 3);
    result_free(&r);
    rpc_conn_close(c);
}
END_TEST

START_TEST(invalid_writes_are_refused_and_not_forwarded)
{
    static uint8_t data[8192], zeros[8192];
    int chain[] = {2};
    rpc_conn *c;
    struct result r;

    dn_up(1);
    dn_up(2);
    ck_assert_int_eq(nn_create(1, 9, 1), 0);
    ck_assert_int_eq(nn_create(2, 9, 1), 0);
    fill(data, sizeof(data), 3);
    c = client_of(1);
    /* Checksum of other bytes. */
    do_write(c, 9, 1, 0, data, sizeof(data), chain, 1, csum_buf(data, 100), &r);
    ck_assert_int_eq(r.status, -EBADMSG);
    result_free(&r);
    /* Past the end of the chunk. */
    do_write(c, 9, 1, CHUNK - 100, data, sizeof(data), chain, 1, csum_buf(data, sizeof(data)), &r);
    ck_assert_int_eq(r.status, -EINVAL);
    result_free(&r);
    /* Empty, anywhere but at 0. */
    do_write(c, 9, 1, 4096, data, 0, chain, 1, csum_buf(data, 0), &r);
    ck_assert_int_eq(r.status, -EINVAL);
    result_free(&r);
    /* Empty at 0 readies the replicas and writes nothing. */
    do_write(c, 9, 1, 0, data, 0, chain, 1, csum_buf(data, 0), &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.env->write_rep->n_failed, 0);
    result_free(&r);
    /* Neither node holds any of it. */
    expect_bytes(1, 9, 1, 0, zeros, sizeof(zeros));
    expect_bytes(2, 9, 1, 0, zeros, sizeof(zeros));
    {
        /* A read past the end, and a read of an unknown chunk. */
        do_read(c, 9, 1, CHUNK - 10, 11, &r);
        ck_assert_int_eq(r.status, -EINVAL);
        result_free(&r);
        do_read(c, 10, 1, 0, 11, &r);
        ck_assert_int_eq(r.status, -ENOENT);
        result_free(&r);
    }
    rpc_conn_close(c);
}
END_TEST

START_TEST(stale_versions_are_fenced)
{
    static uint8_t data[4096];
    int chain[] = {2};
    rpc_conn *c;
    struct result r;

    dn_up(1);
    dn_up(2);
    ck_assert_int_eq(nn_create(1, 11, 1), 0);
    ck_assert_int_eq(nn_create(2, 11, 1), 0);
    /* Recovery moved node 1 to version 2; node 2 missed it. */
    ck_assert_int_eq(nn_set_version(1, 11, 1, 2), 0);
    ck_assert_int_eq(nn_set_version(1, 11, 1, 2), 0); /* a retry is fine */
    ck_assert_int_eq(nn_set_version(1, 11, 5, 6), -ESTALE);
    fill(data, sizeof(data), 4);
    c = client_of(1);
    /* An old writer at version 1: refused by node 1, applied by stale node 2. */
    do_write(c, 11, 1, 0, data, sizeof(data), chain, 1, csum_buf(data, sizeof(data)), &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.env->write_rep->n_failed, 1);
    ck_assert_uint_eq(r.env->write_rep->failed[0], 1);
    ck_assert_int_eq(r.env->write_rep->failed_status[0], err_to_wire(-ESTALE));
    result_free(&r);
    do_read(c, 11, 1, 0, 10, &r);
    ck_assert_int_eq(r.status, -ESTALE);
    result_free(&r);
    /* Incremental reports are for changes the namenode did not ask for. */
    ck_assert_int_eq(nn.nreports, 0);
    rpc_conn_close(c);
}
END_TEST

static void data_path(int i, uint64_t chunk, const char *ext, char *buf, size_t len)
{
    snprintf(buf, len, "%s/chunks/%02x/%016llx.%s", dirs[i], (unsigned)(chunk & 0xff),
             (unsigned long long)chunk, ext);
}

static bool reported_corrupt(void *arg)
{
    uint64_t chunk = *(uint64_t *)arg;

    for (int i = 0; i < nn.nreports; i++)
        if (nn.reports[i].chunk == chunk &&
            nn.reports[i].state == KEEL__REPLICA_STATE__REPLICA_CORRUPT)
            return true;
    return false;
}

START_TEST(corrupt_replica_is_reported_at_once)
{
    static uint8_t data[10000];
    uint64_t chunk = 12;
    char path[512];
    rpc_conn *c;
    struct result r;
    int fd;

    dn_up(1);
    ck_assert_int_eq(nn_create(1, chunk, 3), 0);
    fill(data, sizeof(data), 5);
    c = client_of(1);
    do_write(c, chunk, 3, 0, data, sizeof(data), NULL, 0, csum_buf(data, sizeof(data)), &r);
    ck_assert_uint_eq(r.env->write_rep->n_failed, 0);
    result_free(&r);
    data_path(1, chunk, "data", path, sizeof(path));
    fd = open(path, O_WRONLY);
    ck_assert_int_eq(pwrite(fd, "X", 1, 9000), 1);
    close(fd);
    do_read(c, chunk, 3, 8950, 100, &r);
    ck_assert_int_eq(r.status, -EIO);
    result_free(&r);
    ck_assert(run_until(reported_corrupt, &chunk, 5000));
    ck_assert_uint_eq(nn.reports[0].node, 1);
    ck_assert_uint_eq(nn.reports[0].version, 3);
    rpc_conn_close(c);
}
END_TEST

START_TEST(scrubber_finds_damage_without_reads)
{
    uint64_t chunk = 13;
    char path[512];
    int fd;

    dn_start_opts(1, 64u << 20);
    {
        int i = 1;

        ck_assert(run_until(registered, &i, 5000));
    }
    ck_assert_int_eq(nn_create(1, chunk, 1), 0);
    data_path(1, chunk, "meta", path, sizeof(path));
    fd = open(path, O_WRONLY);
    ck_assert_int_eq(pwrite(fd, "Y", 1, 4096 + 8 * 77 + 2), 1); /* block 77's checksum */
    close(fd);
    ck_assert(run_until(reported_corrupt, &chunk, 8000));
}
END_TEST

static bool have_report(void *arg)
{
    const struct fake_report *want = arg;

    for (int i = 0; i < nn.nreports; i++)
        if (nn.reports[i].chunk == want->chunk && nn.reports[i].node == want->node &&
            nn.reports[i].state == want->state && nn.reports[i].version == want->version)
            return true;
    return false;
}

START_TEST(commands_delete_and_set_version)
{
    struct fake_report del = {1, 20, 1, 0, KEEL__REPLICA_STATE__REPLICA_DELETED};
    struct fake_report sv = {1, 21, 5, 0, KEEL__REPLICA_STATE__REPLICA_OK};
    char path[512];

    dn_up(1);
    ck_assert_int_eq(nn_create(1, 20, 1), 0);
    ck_assert_int_eq(nn_create(1, 21, 1), 0);
    queue_command(1, KEEL__COMMAND_KIND__CMD_DELETE, 20, 1, 0);
    queue_command(1, KEEL__COMMAND_KIND__CMD_SET_VERSION, 21, 5, 0);
    ck_assert(run_until(have_report, &del, 5000));
    ck_assert(run_until(have_report, &sv, 5000));
    data_path(1, 20, "meta", path, sizeof(path));
    ck_assert_int_ne(access(path, F_OK), 0);
    data_path(1, 20, "data", path, sizeof(path));
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

static bool replicate_finished(void *arg)
{
    return nn.replicate_done > 0;
}

START_TEST(replicate_command_copies_a_replica)
{
    static uint8_t data[300000];
    struct fake_report arrived = {2, 30, 4, 0, KEEL__REPLICA_STATE__REPLICA_OK};
    rpc_conn *c;
    struct result r, s1, s2;

    dn_up(1);
    dn_up(2);
    ck_assert_int_eq(nn_create(1, 30, 4), 0);
    fill(data, sizeof(data), 6);
    c = client_of(1);
    do_write(c, 30, 4, 100, data, sizeof(data), NULL, 0, csum_buf(data, sizeof(data)), &r);
    result_free(&r);
    queue_command(1, KEEL__COMMAND_KIND__CMD_REPLICATE, 30, 4, 2);
    ck_assert(run_until(replicate_finished, NULL, 10000));
    ck_assert_int_eq(nn.replicate_status, 0);
    ck_assert_uint_ge(nn.replicate_bytes, sizeof(data));
    ck_assert(run_until(have_report, &arrived, 5000));
    expect_bytes(2, 30, 4, 100, data, sizeof(data));
    /* Identical checksums on both replicas. */
    {
        Keel__Envelope env = KEEL__ENVELOPE__INIT;
        Keel__ChecksumsReq q = KEEL__CHECKSUMS_REQ__INIT;
        rpc_conn *c2 = client_of(2);

        q.chunk_id = 30;
        env.body_case = KEEL__ENVELOPE__BODY_CHECKSUMS_REQ;
        env.checksums_req = &q;
        memset(&s1, 0, sizeof(s1));
        memset(&s2, 0, sizeof(s2));
        ck_assert_int_eq(rpc_call(c, &env, RPC_NO_PAYLOAD, NULL, call_done, &s1), 0);
        ck_assert_int_eq(rpc_call(c2, &env, RPC_NO_PAYLOAD, NULL, call_done, &s2), 0);
        wait_result(&s1);
        wait_result(&s2);
        ck_assert_int_eq(s1.status, 0);
        ck_assert_int_eq(s2.status, 0);
        ck_assert_uint_eq(s1.len, (CHUNK / KEEL_BLOCK_SIZE) * 8);
        ck_assert_uint_eq(s1.len, s2.len);
        ck_assert_int_eq(memcmp(s1.payload, s2.payload, s1.len), 0);
        ck_assert_uint_eq(s2.env->checksums_rep->version, 4);
        ck_assert_uint_eq(s2.env->checksums_rep->length, 100 + sizeof(data));
        result_free(&s1);
        result_free(&s2);
        rpc_conn_close(c2);
    }
    /* A second copy to a node that has it is refused by the target. */
    nn.replicate_done = 0;
    queue_command(1, KEEL__COMMAND_KIND__CMD_REPLICATE, 30, 4, 2);
    ck_assert(run_until(replicate_finished, NULL, 10000));
    ck_assert_int_eq(nn.replicate_status, err_to_wire(-EEXIST));
    rpc_conn_close(c);
}
END_TEST

static bool replicate_finished_thrice(void *arg)
{
    return nn.replicate_done >= 3;
}

/* The namenode moved a chunk past a copy that had not started yet (one
 * stream, busy with another chunk) and commands the copy again at the new
 * version, to the same target: the new command waits for the old copy to
 * end (it fails, stale) instead of being taken for it and dropped. */
START_TEST(a_copy_at_a_new_version_waits_for_the_old_one)
{
    static uint8_t big[256 * 1024], small[64 * 1024];
    struct fake_report bumped = {1, 31, 5, 0, KEEL__REPLICA_STATE__REPLICA_OK};
    struct fake_report arrived = {2, 31, 5, 0, KEEL__REPLICA_STATE__REPLICA_OK};
    rpc_conn *c;
    struct result r;

    repl_rate = 64 * 1024; /* one stream: chunk 30 takes it for about 4 s */
    dn_up(1);
    repl_rate = 0;
    dn_up(2);
    ck_assert_int_eq(nn_create(1, 30, 4), 0);
    ck_assert_int_eq(nn_create(1, 31, 4), 0);
    fill(big, sizeof(big), 7);
    fill(small, sizeof(small), 8);
    c = client_of(1);
    do_write(c, 30, 4, 0, big, sizeof(big), NULL, 0, csum_buf(big, sizeof(big)), &r);
    ck_assert_int_eq(r.status, 0);
    result_free(&r);
    do_write(c, 31, 4, 0, small, sizeof(small), NULL, 0, csum_buf(small, sizeof(small)), &r);
    ck_assert_int_eq(r.status, 0);
    result_free(&r);
    queue_command(1, KEEL__COMMAND_KIND__CMD_REPLICATE, 30, 4, 2);
    queue_command(1, KEEL__COMMAND_KIND__CMD_REPLICATE, 31, 4, 2);
    sleep_loop(300);
    queue_command(1, KEEL__COMMAND_KIND__CMD_SET_VERSION, 31, 5, 0);
    ck_assert(run_until(have_report, &bumped, 5000));
    queue_command(1, KEEL__COMMAND_KIND__CMD_REPLICATE, 31, 5, 2);
    sleep_loop(300);
    ck_assert_int_eq(nn.replicate_done, 0); /* chunk 30 still holds the stream */
    /* Chunk 30 copied, chunk 31 at version 4 failed, at version 5 copied. */
    ck_assert(run_until(replicate_finished_thrice, NULL, 20000));
    ck_assert_int_eq(nn.replicate_status, 0);
    ck_assert(run_until(have_report, &arrived, 5000));
    expect_bytes(2, 31, 5, 0, small, sizeof(small));
    rpc_conn_close(c);
}
END_TEST

/* Sends one CopyChunkReq piece to datanode i. */
static int copy_piece(rpc_conn *c, uint64_t chunk, uint64_t session, bool first, bool last,
                      uint64_t off, const uint8_t *data, size_t len, const uint64_t *sums,
                      const uint64_t *all, size_t nall)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CopyChunkReq q = KEEL__COPY_CHUNK_REQ__INIT;
    uint8_t *copy = malloc(len ? len : 1);
    struct result r = {0};
    int st;

    if (len)
        memcpy(copy, data, len);
    q.chunk_id = chunk;
    q.version = 2;
    q.length = 8192;
    q.first = first;
    q.last = last;
    q.offset = off;
    q.n_block_checksums = len / KEEL_BLOCK_SIZE;
    q.block_checksums = (uint64_t *)sums;
    q.n_all_checksums = nall;
    q.all_checksums = (uint64_t *)all;
    q.session = session;
    env.body_case = KEEL__ENVELOPE__BODY_COPY_CHUNK_REQ;
    env.copy_chunk_req = &q;
    ck_assert_int_eq(rpc_call(c, &env, rpc_payload_malloced(copy, len), NULL, call_done, &r), 0);
    wait_result(&r);
    st = r.status;
    result_free(&r);
    return st;
}

static bool tmp_empty(int i)
{
    char path[512];
    struct dirent *de;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "%s/tmp", dirs[i]);
    d = opendir(path);
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n == 0;
}

static bool tmp_is_empty(void *arg)
{
    return tmp_empty(*(int *)arg);
}

START_TEST(copies_are_verified_on_arrival)
{
    static uint8_t data[8192];
    uint64_t sums[2], *all = malloc((CHUNK / KEEL_BLOCK_SIZE) * sizeof(*all));
    rpc_conn *c;
    struct result r;
    int one = 1;

    dn_up(1);
    c = client_of(1);
    fill(data, sizeof(data), 8);
    csum_blocks(data, 2, sums);
    for (size_t b = 0; b < CHUNK / KEEL_BLOCK_SIZE; b++)
        all[b] = csum_zero_block();
    all[0] = sums[0];
    all[1] = sums[1];

    /* A block damaged on the way: refused, nothing left behind. */
    data[5000] ^= 1;
    ck_assert_int_eq(copy_piece(c, 50, 1, true, false, 0, data, sizeof(data), sums, NULL, 0),
                     -EBADMSG);
    data[5000] ^= 1;
    ck_assert(run_until(tmp_is_empty, &one, 5000));
    ck_assert_int_eq(
        copy_piece(c, 50, 1, false, true, 8192, NULL, 0, NULL, all, CHUNK / KEEL_BLOCK_SIZE),
        -ENOENT); /* the session is gone */
    /* Final checksums that disagree with what arrived: refused. */
    ck_assert_int_eq(copy_piece(c, 51, 2, true, false, 0, data, sizeof(data), sums, NULL, 0), 0);
    all[1] ^= 1;
    ck_assert_int_eq(
        copy_piece(c, 51, 2, false, true, 8192, NULL, 0, NULL, all, CHUNK / KEEL_BLOCK_SIZE),
        -EBADMSG);
    all[1] ^= 1;
    ck_assert(run_until(tmp_is_empty, &one, 5000));
    /* Out of order (a piece before the end of the last one): refused and
     * the session dropped. */
    ck_assert_int_eq(copy_piece(c, 52, 3, true, false, 0, data, sizeof(data), sums, NULL, 0), 0);
    ck_assert_int_eq(copy_piece(c, 52, 3, false, false, 4096, data + 4096, 4096, sums + 1, NULL, 0),
                     -EINVAL);
    ck_assert(run_until(tmp_is_empty, &one, 5000));
    /* Nothing was installed. */
    do_read(c, 50, 2, 0, 10, &r);
    ck_assert_int_eq(r.status, -ENOENT);
    result_free(&r);
    do_read(c, 51, 2, 0, 10, &r);
    ck_assert_int_eq(r.status, -ENOENT);
    result_free(&r);
    /* The same pieces, right: installed and readable. */
    ck_assert_int_eq(copy_piece(c, 53, 4, true, false, 0, data, sizeof(data), sums, NULL, 0), 0);
    ck_assert_int_eq(
        copy_piece(c, 53, 4, false, true, 8192, NULL, 0, NULL, all, CHUNK / KEEL_BLOCK_SIZE), 0);
    ck_assert(tmp_empty(1));
    do_read(c, 53, 2, 0, sizeof(data), &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(memcmp(r.payload, data, sizeof(data)), 0);
    result_free(&r);
    free(all);
    rpc_conn_close(c);
}
END_TEST

/* Sends a CopyChunkReq q (session, chunk, version filled by the caller) with
 * a copy of the payload to c. */
static int send_copy(rpc_conn *c, Keel__CopyChunkReq *q, const void *payload, size_t len)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    uint8_t *copy = malloc(len ? len : 1);
    struct result r = {0};
    int st;

    if (len)
        memcpy(copy, payload, len);
    env.body_case = KEEL__ENVELOPE__BODY_COPY_CHUNK_REQ;
    env.copy_chunk_req = q;
    ck_assert_int_eq(rpc_call(c, &env, rpc_payload_malloced(copy, len), NULL, call_done, &r), 0);
    wait_result(&r);
    st = r.status;
    result_free(&r);
    return st;
}

/* A delta piece of chunk 60 at version 2: the blocks named, their data. */
static int delta_piece(rpc_conn *c, uint64_t session, bool first, uint32_t *blocks, size_t n,
                       const uint8_t *data)
{
    Keel__CopyChunkReq q = KEEL__COPY_CHUNK_REQ__INIT;
    uint64_t sums[8];

    csum_blocks(data, n, sums);
    q.chunk_id = 60;
    q.version = 2;
    q.length = 3 * 4096;
    q.first = first;
    q.delta = true;
    q.session = session;
    q.n_blocks = n;
    q.blocks = blocks;
    q.n_block_checksums = n;
    q.block_checksums = sums;
    return send_copy(c, &q, data, n * KEEL_BLOCK_SIZE);
}

/* The last piece of a delta of chunk 60, every checksum in the payload. */
static int delta_last(rpc_conn *c, uint64_t session, bool first, const uint64_t *all)
{
    Keel__CopyChunkReq q = KEEL__COPY_CHUNK_REQ__INIT;

    q.chunk_id = 60;
    q.version = 2;
    q.length = 3 * 4096;
    q.first = first;
    q.last = true;
    q.delta = true;
    q.session = session;
    q.checksums_in_payload = true;
    return send_copy(c, &q, all, (CHUNK / KEEL_BLOCK_SIZE) * sizeof(uint64_t));
}

/* A source that gives a copy up says so: the target drops the session and
 * its temporary files at once. An abort carrying a payload is refused and
 * changes nothing; one for an unknown session is answered all the same. */
START_TEST(an_abandoned_copy_is_dropped_at_once)
{
    static uint8_t data[8192];
    uint64_t sums[2];
    Keel__CopyChunkReq q = KEEL__COPY_CHUNK_REQ__INIT;
    rpc_conn *c;
    int one = 1;

    dn_up(1);
    c = client_of(1);
    fill(data, sizeof(data), 9);
    csum_blocks(data, 2, sums);
    ck_assert_int_eq(copy_piece(c, 54, 5, true, false, 0, data, sizeof(data), sums, NULL, 0), 0);
    ck_assert(!tmp_empty(1));
    q.chunk_id = 54;
    q.session = 5;
    q.abort = true;
    ck_assert_int_eq(send_copy(c, &q, data, 4096), -EINVAL);
    ck_assert(!tmp_empty(1));
    q.session = 99;
    ck_assert_int_eq(send_copy(c, &q, NULL, 0), 0);
    ck_assert(!tmp_empty(1));
    q.session = 5;
    ck_assert_int_eq(send_copy(c, &q, NULL, 0), 0);
    ck_assert(run_until(tmp_is_empty, &one, 5000));
    ck_assert_int_eq(copy_piece(c, 54, 5, false, false, 8192, data, 4096, sums, NULL, 0),
                     -ENOENT); /* the session is gone */
    rpc_conn_close(c);
}
END_TEST

START_TEST(delta_copies_start_from_the_older_replica)
{
    const size_t blocks = CHUNK / KEEL_BLOCK_SIZE;
    static uint8_t old[3 * 4096], newer[4096], want[3 * 4096];
    uint64_t *all = malloc(blocks * sizeof(*all));
    uint32_t bl[2];
    rpc_conn *c;
    struct result r;
    int one = 1;

    dn_up(1);
    c = client_of(1);
    fill(old, sizeof(old), 11);
    fill(newer, sizeof(newer), 12);
    memcpy(want, old, sizeof(old));
    memcpy(want + 4096, newer, sizeof(newer));
    for (size_t b = 0; b < blocks; b++)
        all[b] = htole64(csum_zero_block());
    for (size_t b = 0; b < 3; b++)
        all[b] = htole64(csum_buf(want + b * 4096, 4096));

    /* Nothing to start from: refused at the first piece. */
    bl[0] = 1;
    ck_assert_int_eq(delta_piece(c, 70, true, bl, 1, newer), -ENOENT);
    /* The older replica (version 1). */
    ck_assert_int_eq(nn_create(1, 60, 1), 0);
    do_write(c, 60, 1, 0, old, sizeof(old), NULL, 0, csum_buf(old, sizeof(old)), &r);
    ck_assert_int_eq(r.status, 0);
    result_free(&r);
    /* Blocks out of order, or outside the chunk: refused. */
    bl[0] = 2;
    bl[1] = 1;
    ck_assert_int_eq(delta_piece(c, 71, true, bl, 2, want), -EINVAL);
    bl[0] = (uint32_t)blocks;
    ck_assert_int_eq(delta_piece(c, 71, true, bl, 1, newer), -EINVAL);
    /* A checksum payload of the wrong size: refused. */
    {
        Keel__CopyChunkReq q = KEEL__COPY_CHUNK_REQ__INIT;

        q.chunk_id = 60;
        q.version = 2;
        q.length = 3 * 4096;
        q.first = q.last = q.delta = q.checksums_in_payload = true;
        q.session = 72;
        ck_assert_int_eq(send_copy(c, &q, all, 64), -EINVAL);
    }
    /* Final checksums that a kept block does not match: refused. The older
     * replica was taken as the copy's start, so it is gone as well (it was
     * stale: the next copy is a whole one). */
    bl[0] = 1;
    ck_assert_int_eq(delta_piece(c, 73, true, bl, 1, newer), 0);
    all[2] ^= 1;
    ck_assert_int_eq(delta_last(c, 73, false, all), -EBADMSG);
    all[2] ^= 1;
    ck_assert(run_until(tmp_is_empty, &one, 5000));
    do_read(c, 60, 1, 0, 10, &r);
    ck_assert_int_eq(r.status, -ENOENT);
    result_free(&r);
    /* The older replica again. */
    ck_assert_int_eq(nn_create(1, 60, 1), 0);
    do_write(c, 60, 1, 0, old, sizeof(old), NULL, 0, csum_buf(old, sizeof(old)), &r);
    ck_assert_int_eq(r.status, 0);
    result_free(&r);
    expect_bytes(1, 60, 1, 0, old, sizeof(old));
    /* Right: block 1 is replaced, blocks 0 and 2 are kept. */
    ck_assert_int_eq(delta_piece(c, 74, true, bl, 1, newer), 0);
    ck_assert_int_eq(delta_last(c, 74, false, all), 0);
    ck_assert(tmp_empty(1));
    expect_bytes(1, 60, 2, 0, want, sizeof(want));
    do_read(c, 60, 1, 0, 10, &r);
    ck_assert_int_eq(r.status, -ESTALE);
    result_free(&r);
    /* At the same version now: a further delta has nothing to do. */
    ck_assert_int_eq(delta_last(c, 75, true, all), -EEXIST);
    free(all);
    rpc_conn_close(c);
}
END_TEST

static bool command_answered(void *arg)
{
    return ((struct result *)arg)->done;
}

START_TEST(pushed_commands_run_at_once)
{
    struct fake_report sv = {1, 62, 7, 0, KEEL__REPLICA_STATE__REPLICA_OK};
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CommandReq q = KEEL__COMMAND_REQ__INIT;
    Keel__Command cmd = KEEL__COMMAND__INIT, *cmds[1] = {&cmd};
    struct result r = {0};

    dn_up(1);
    ck_assert_int_eq(nn_create(1, 62, 1), 0);
    cmd.kind = KEEL__COMMAND_KIND__CMD_SET_VERSION;
    cmd.chunk_id = 62;
    cmd.version = 7;
    q.n_commands = 1;
    q.commands = cmds;
    env.body_case = KEEL__ENVELOPE__BODY_COMMAND_REQ;
    env.command_req = &q;
    ck_assert_int_eq(rpc_call(nn.nodes[1].conn, &env, RPC_NO_PAYLOAD, NULL, call_done, &r), 0);
    ck_assert(run_until(command_answered, &r, 5000));
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(r.env->body_case, KEEL__ENVELOPE__BODY_COMMAND_REP);
    result_free(&r);
    ck_assert(run_until(have_report, &sv, 5000));
}
END_TEST

static bool reregistered(void *arg)
{
    return nn.nodes[1].registrations >= *(int *)arg && nn.nodes[1].full_reports_done >= *(int *)arg;
}

START_TEST(reregisters_on_request_and_after_namenode_restart)
{
    int want = 2;
    rpc_conn *c;
    struct result r;
    static uint8_t data[1000];

    dn_up(1);
    ck_assert_int_eq(nn_create(1, 40, 1), 0);
    nn.nodes[1].reregister_next = true;
    ck_assert(run_until(reregistered, &want, 5000));
    /* The namenode goes away: the datanode keeps serving. */
    nn_close();
    sleep_loop(200);
    fill(data, sizeof(data), 7);
    c = client_of(1);
    do_write(c, 40, 1, 0, data, sizeof(data), NULL, 0, csum_buf(data, sizeof(data)), &r);
    ck_assert_uint_eq(r.env->write_rep->n_failed, 0);
    result_free(&r);
    expect_bytes(1, 40, 1, 0, data, sizeof(data));
    /* It comes back at the same address: registration and report again. */
    nn_listen(nn.addr);
    want = 3;
    ck_assert(run_until(reregistered, &want, 10000));
    rpc_conn_close(c);
}
END_TEST

static bool stopped_with_error(void *arg)
{
    return datanode_status(dns[1]) != 0;
}

START_TEST(refused_identity_stops_the_datanode)
{
    dn_up(1);
    dn_down(1);
    nn.cluster = "another-cluster";
    dn_start_opts(1, 0);
    ck_assert(run_until(stopped_with_error, NULL, 5000));
    ck_assert_int_eq(datanode_status(dns[1]), -EINVAL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("datanode");
    TCase *tc = tcase_create("datanode");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, registration_writes_version_and_reports);
    tcase_add_test(tc, chained_write_reaches_every_replica);
    tcase_add_test(tc, dead_third_node_is_named_in_the_ack);
    tcase_add_test(tc, invalid_writes_are_refused_and_not_forwarded);
    tcase_add_test(tc, stale_versions_are_fenced);
    tcase_add_test(tc, corrupt_replica_is_reported_at_once);
    tcase_add_test(tc, scrubber_finds_damage_without_reads);
    tcase_add_test(tc, commands_delete_and_set_version);
    tcase_add_test(tc, replicate_command_copies_a_replica);
    tcase_add_test(tc, a_copy_at_a_new_version_waits_for_the_old_one);
    tcase_add_test(tc, copies_are_verified_on_arrival);
    tcase_add_test(tc, an_abandoned_copy_is_dropped_at_once);
    tcase_add_test(tc, delta_copies_start_from_the_older_replica);
    tcase_add_test(tc, pushed_commands_run_at_once);
    tcase_add_test(tc, reregisters_on_request_and_after_namenode_restart);
    tcase_add_test(tc, refused_identity_stops_the_datanode);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
