/*
 * nn-reporter: fake datanodes that send a namenode full block reports of
 * many chunks, and a client that times Status calls; the measuring half of
 * bench/nn-scale.
 *
 *   nn-reporter --namenode A --chunks N [--first-id 1] [--datanodes 3]
 *               [--replication 3] [--batch 8192] [--nn-pid PID]
 *               [--status-calls 5] [--kill] [--timeout 15m] [--json]
 *
 * Chunk first_id + i (version 1, as nn-load wrote it) is held by the
 * --replication datanodes i mod D, (i + 1) mod D, ... (D = --datanodes),
 * each in its own failure domain d1..dD, so every chunk is fully and well
 * replicated once all have reported. The datanodes speak the real protocol
 * on their own connections: RegisterReq, HeartbeatReq at the interval the
 * namenode gives, full reports as BlockReportReq batches of --batch
 * replicas with one batch in flight (as keel-datanode sends them), and
 * answers to the namenode's calls (every command is counted; none is
 * expected).
 *
 * Steps, each timed:
 *   1. register every datanode;
 *   2. round 1: every datanode sends its full report at once (a cluster
 *      coming back after a namenode restart); per datanode, the time from
 *      its first batch sent to its last batch answered;
 *   3. settle: Status polled every 100 ms until safe mode is off and every
 *      chunk is healthy with nothing queued for repair; the slowest of
 *      these calls is printed (after chunks changed, a Status counts them
 *      all again);
 *   4. --status-calls Status calls one after another, each timed (nothing
 *      changes now: the namenode reuses its counts);
 *   5. round 2: the datanodes send a full report again, one after another
 *      (a datanode restarting while the namenode runs), each timed alone.
 *   6. with --kill: datanode 1 goes silent (its connection closed) and
 *      Status is polled every 100 ms: the time until the namenode
 *      declares it dead, then until every chunk it held is in the
 *      re-replication queue (queued or copying), the slowest Status call
 *      meanwhile (how long the loop was held), and whether every other
 *      datanode stayed alive. The others take the copy commands and never
 *      carry them out (they are counted). Needs a --dead-timeout of a few
 *      seconds at the namenode, and 4 or more datanodes so that the
 *      chunks have somewhere to go.
 * With --nn-pid, the namenode's VmRSS and VmHWM (/proc/PID/status) are read
 * before step 1 and after steps 2, 3, 5 and 6.
 */
#include "errors.h"
#include "flags.h"
#include "log.h"
#include "rpc.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DATANODES 64u
#define MAX_STATUS    1000u

enum step { S_REGISTER, S_ROUND1, S_SETTLE, S_STATUS, S_ROUND2, S_KILL, S_DONE, S_FAILED };

struct fdn {
    unsigned idx;
    rpc_conn *conn;
    uint64_t node_id;
    bool registered;
    uint32_t heartbeat_ms;
    uv_timer_t hb;
    /* The report in progress. */
    uint64_t cursor; /* next chunk index to look at */
    uint64_t t0_ns;
    uint64_t replicas, batches;
    bool reporting;
    /* Per round: what was sent and how long it took. */
    uint64_t round_ms[2], round_replicas[2], round_batches[2];
    /* Commands the namenode sent (heartbeats, report replies, pushes). */
    uint64_t deletes, replicates, other_cmds, calls_answered, reregisters;
    bool killed; /* --kill: this one went silent */
};

struct mem {
    uint64_t rss_kb, hwm_kb;
};

static struct {
    const char *namenode;
    uint64_t chunks, first_id, ndn, replication, batch, nn_pid, status_calls, timeout_ms;
    bool kill, json;
} A = {NULL, 0, 1, 3, 3, 8192, 0, 5, 900000, false, false};

static struct {
    uv_loop_t loop;
    struct fdn dn[MAX_DATANODES];
    rpc_conn *client;
    uv_timer_t poll, deadline;
    uv_signal_t sigint;
    enum step step;
    unsigned round2_next; /* datanode reporting in round 2 */
    uint64_t chunk_size;
    uint64_t t_round1_ns, t_round1_end_ns, t_safe_off_ns, t_settled_ns;
    double status_ms[MAX_STATUS];
    uint64_t nstatus;
    double settle_status_max_ms; /* Status calls while the chunks changed */
    uint64_t settle_status_calls;
    uint64_t status_t0_ns;
    bool status_busy;
    struct mem mem[5]; /* loaded, after round 1, settled, after round 2, after the kill */
    /* --kill */
    uint64_t t_kill_ns, t_dead_ns, t_queued_ns, victim_chunks, others_lost;
    double kill_status_max_ms;
    uint64_t kill_status_calls;
    char why[256];
    uint64_t last_healthy, last_queue;
} R;

static void next_step(void);

static void failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failed(const char *fmt, ...)
{
    va_list ap;

    if (R.step == S_FAILED)
        return;
    va_start(ap, fmt);
    vsnprintf(R.why, sizeof(R.why), fmt, ap);
    va_end(ap);
    R.step = S_FAILED;
    uv_stop(&R.loop);
}

static void read_mem(struct mem *m)
{
    char path[64], line[256];
    FILE *f;

    memset(m, 0, sizeof(*m));
    if (!A.nn_pid)
        return;
    snprintf(path, sizeof(path), "/proc/%" PRIu64 "/status", A.nn_pid);
    f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            m->rss_kb = strtoull(line + 6, NULL, 10);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            m->hwm_kb = strtoull(line + 6, NULL, 10);
    }
    fclose(f);
}

static double ms_since(uint64_t t0_ns)
{
    return (double)(mono_ns() - t0_ns) / 1e6;
}

/* ------------------------------------------------------- the namenode calls */

static struct fdn *dn_of(rpc_conn *c)
{
    return rpc_conn_data(c);
}

static void count_commands(struct fdn *d, Keel__Command **cmds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (cmds[i]->kind == KEEL__COMMAND_KIND__CMD_DELETE)
            d->deletes++;
        else if (cmds[i]->kind == KEEL__COMMAND_KIND__CMD_REPLICATE)
            d->replicates++;
        else
            d->other_cmds++;
    }
}

static void h_create(rpc_req *req, void *ctx)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CreateReplicaRep rep = KEEL__CREATE_REPLICA_REP__INIT;

    dn_of(req->conn)->calls_answered++;
    env.body_case = KEEL__ENVELOPE__BODY_CREATE_REPLICA_REP;
    env.create_replica_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void h_set_version(rpc_req *req, void *ctx)
{
    Keel__SetVersionReq *rq = req->env->set_version_req;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__SetVersionRep rep = KEEL__SET_VERSION_REP__INIT;
    Keel__ReplicaInfo info = KEEL__REPLICA_INFO__INIT;

    dn_of(req->conn)->calls_answered++;
    info.chunk_id = rq->chunk_id;
    info.version = rq->new_version;
    info.length = R.chunk_size;
    rep.replica = &info;
    env.body_case = KEEL__ENVELOPE__BODY_SET_VERSION_REP;
    env.set_version_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void h_command(rpc_req *req, void *ctx)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CommandRep rep = KEEL__COMMAND_REP__INIT;
    struct fdn *d = dn_of(req->conn);

    d->calls_answered++;
    count_commands(d, req->env->command_req->commands, req->env->command_req->n_commands);
    env.body_case = KEEL__ENVELOPE__BODY_COMMAND_REP;
    env.command_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static const rpc_handler dn_handlers[] = {
    {KEEL__ENVELOPE__BODY_CREATE_REPLICA_REQ, "create_replica", h_create},
    {KEEL__ENVELOPE__BODY_SET_VERSION_REQ, "set_version", h_set_version},
    {KEEL__ENVELOPE__BODY_COMMAND_REQ, "command", h_command},
};

static void dn_on_close(rpc_conn *c, int err, void *ctx)
{
    struct fdn *d = rpc_conn_data(c);

    if (d && R.step != S_DONE && R.step != S_FAILED)
        failed("datanode %u lost its connection: %s", d->idx + 1, err_str(err));
}

static const rpc_service dn_svc = {dn_handlers, ARRAY_SIZE(dn_handlers), NULL, NULL, dn_on_close};

/* ------------------------------------------------------------- heartbeats */

static void register_dn(struct fdn *d);

static void hb_done(int status, rpc_msg *m, void *arg)
{
    struct fdn *d = arg;

    if (status) {
        /* Closing a connection on purpose (--kill, or at the end) fails
         * the heartbeat in flight: not a failure of the run. */
        if (!d->killed && R.step != S_DONE && R.step != S_FAILED)
            failed("datanode %u: heartbeat failed: %s", d->idx + 1, err_str(status));
        return;
    }
    if (m->env->heartbeat_rep->reregister) {
        d->reregisters++;
        d->registered = false;
        register_dn(d);
        return;
    }
    count_commands(d, m->env->heartbeat_rep->commands, m->env->heartbeat_rep->n_commands);
}

static void hb_tick(uv_timer_t *t)
{
    struct fdn *d = t->data;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HeartbeatReq hb = KEEL__HEARTBEAT_REQ__INIT;

    if (!d->registered)
        return;
    hb.node_id = d->node_id;
    hb.capacity = 100ull << 40;
    hb.used = 1ull << 40;
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT_REQ;
    env.heartbeat_req = &hb;
    if (rpc_call(d->conn, &env, RPC_NO_PAYLOAD, NULL, hb_done, d))
        failed("datanode %u: cannot send a heartbeat", d->idx + 1);
}

/* ----------------------------------------------------------- registration */

static void registered(int status, rpc_msg *m, void *arg)
{
    struct fdn *d = arg;
    Keel__RegisterRep *rep;

    if (status) {
        failed("datanode %u: registration refused: %s %s", d->idx + 1, err_str(status),
               m && m->env && m->env->error ? m->env->error : "");
        return;
    }
    rep = m->env->register_rep;
    d->node_id = rep->node_id;
    d->heartbeat_ms = rep->heartbeat_ms ? rep->heartbeat_ms : 3000;
    d->registered = true;
    R.chunk_size = rep->chunk_size;
    uv_timer_start(&d->hb, hb_tick, d->heartbeat_ms, d->heartbeat_ms);
    if (R.step == S_REGISTER)
        next_step();
}

static void register_dn(struct fdn *d)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__RegisterReq rq = KEEL__REGISTER_REQ__INIT;
    char addr[32], domain[16];

    /* Nobody connects to a fake datanode: any port will do. */
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", 9 + d->idx);
    snprintf(domain, sizeof(domain), "d%u", d->idx + 1);
    rq.cluster_id = "";
    rq.node_id = 0;
    rq.addr = addr;
    rq.domain = domain;
    rq.capacity = 100ull << 40;
    rq.used = 1ull << 40;
    env.body_case = KEEL__ENVELOPE__BODY_REGISTER_REQ;
    env.register_req = &rq;
    if (rpc_call(d->conn, &env, RPC_NO_PAYLOAD, NULL, registered, d))
        failed("datanode %u: cannot send RegisterReq", d->idx + 1);
}

/* ------------------------------------------------------------ full reports */

static bool holds(const struct fdn *d, uint64_t i)
{
    return (d->idx + A.ndn - i % A.ndn) % A.ndn < A.replication;
}

static void send_batch(struct fdn *d);

static void report_done(int status, rpc_msg *m, void *arg)
{
    struct fdn *d = arg;
    int round = R.step == S_ROUND1 ? 0 : 1;

    if (status) {
        failed("datanode %u: block report batch failed: %s %s", d->idx + 1, err_str(status),
               m && m->env && m->env->error ? m->env->error : "");
        return;
    }
    count_commands(d, m->env->block_report_rep->commands, m->env->block_report_rep->n_commands);
    if (d->cursor < A.chunks) {
        send_batch(d);
        return;
    }
    d->reporting = false;
    d->round_ms[round] = (mono_ns() - d->t0_ns) / 1000000;
    d->round_replicas[round] = d->replicas;
    d->round_batches[round] = d->batches;
    next_step();
}

/* Sends the next batch: up to --batch replicas from the cursor on. */
static void send_batch(struct fdn *d)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__BlockReportReq q = KEEL__BLOCK_REPORT_REQ__INIT;
    Keel__ReplicaInfo *infos = xmalloc(A.batch * sizeof(*infos));
    Keel__ReplicaInfo **ptrs = xmalloc(A.batch * sizeof(*ptrs));
    size_t n = 0;

    q.first = d->batches == 0;
    while (d->cursor < A.chunks && n < A.batch) {
        uint64_t i = d->cursor++;

        if (!holds(d, i))
            continue;
        keel__replica_info__init(&infos[n]);
        infos[n].chunk_id = A.first_id + i;
        infos[n].version = 1;
        infos[n].length = R.chunk_size;
        ptrs[n] = &infos[n];
        n++;
    }
    /* The rest of the range may hold nothing of this node's. */
    while (d->cursor < A.chunks && !holds(d, d->cursor))
        d->cursor++;
    q.node_id = d->node_id;
    q.full = true;
    q.last = d->cursor >= A.chunks;
    q.replicas = ptrs;
    q.n_replicas = n;
    env.body_case = KEEL__ENVELOPE__BODY_BLOCK_REPORT_REQ;
    env.block_report_req = &q;
    d->batches++;
    d->replicas += n;
    if (rpc_call(d->conn, &env, RPC_NO_PAYLOAD, NULL, report_done, d))
        failed("datanode %u: cannot send a block report", d->idx + 1);
    free(infos);
    free(ptrs);
}

static void start_report(struct fdn *d)
{
    d->cursor = 0;
    d->replicas = d->batches = 0;
    d->reporting = true;
    d->t0_ns = mono_ns();
    send_batch(d);
}

/* ------------------------------------------------------------- the client */

static void status_done(int status, rpc_msg *m, void *arg);

static void call_status(void)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatusReq rq = KEEL__STATUS_REQ__INIT;
    struct rpc_call_opts o = {.timeout_ms = 60000};

    env.body_case = KEEL__ENVELOPE__BODY_STATUS_REQ;
    env.status_req = &rq;
    R.status_busy = true;
    R.status_t0_ns = mono_ns();
    if (rpc_call(R.client, &env, RPC_NO_PAYLOAD, &o, status_done, NULL))
        failed("cannot send StatusReq");
}

/* --kill: the victim dead, then all it held queued; the others alive. */
static void kill_status(const Keel__StatusRep *s, double ms)
{
    uint64_t victim = R.dn[0].node_id;

    R.kill_status_calls++;
    R.kill_status_max_ms = MAX(R.kill_status_max_ms, ms);
    R.others_lost = 0;
    for (size_t i = 0; i < s->n_nodes; i++) {
        const Keel__NodeStatus *n = s->nodes[i];

        if (n->node_id == victim) {
            if (n->state == KEEL__NODE_STATE__NODE_DEAD && !R.t_dead_ns)
                R.t_dead_ns = mono_ns();
        } else if (n->state != KEEL__NODE_STATE__NODE_ALIVE) {
            R.others_lost++;
        }
    }
    R.last_queue = s->repl_queue + s->repl_running;
    if (R.t_dead_ns && R.last_queue >= R.victim_chunks) {
        R.t_queued_ns = mono_ns();
        next_step();
    }
}

static void status_done(int status, rpc_msg *m, void *arg)
{
    double ms = ms_since(R.status_t0_ns);
    Keel__StatusRep *s;

    R.status_busy = false;
    if (status) {
        failed("Status failed: %s", err_str(status));
        return;
    }
    s = m->env->status_rep;
    if (R.step == S_SETTLE) {
        R.settle_status_calls++;
        R.settle_status_max_ms = MAX(R.settle_status_max_ms, ms);
        if (!s->safe_mode && !R.t_safe_off_ns)
            R.t_safe_off_ns = mono_ns();
        R.last_healthy = s->healthy;
        R.last_queue = s->repl_queue + s->repl_running;
        if (!s->safe_mode && s->healthy == A.chunks && s->chunks == A.chunks &&
            s->repl_queue == 0 && s->repl_running == 0) {
            R.t_settled_ns = mono_ns();
            next_step();
        }
        return;
    }
    if (R.step == S_KILL) {
        kill_status(s, ms);
        return;
    }
    if (R.step == S_STATUS) {
        if (R.nstatus < MAX_STATUS)
            R.status_ms[R.nstatus++] = ms;
        if (R.nstatus < A.status_calls)
            call_status();
        else
            next_step();
    }
}

static void poll_tick(uv_timer_t *t)
{
    if ((R.step == S_SETTLE || R.step == S_KILL) && !R.status_busy)
        call_status();
}

static void hello_done(int status, rpc_msg *m, void *arg)
{
    if (status)
        failed("HelloReq failed: %s", err_str(status));
}

static int client_connect(void)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HelloReq h = KEEL__HELLO_REQ__INIT;
    int r = rpc_connect(&R.loop, A.namenode, NULL, NULL, &R.client);

    if (r)
        return r;
    h.client_id = random_u64() | 1;
    h.name = "nn-reporter";
    env.body_case = KEEL__ENVELOPE__BODY_HELLO_REQ;
    env.hello_req = &h;
    return rpc_call(R.client, &env, RPC_NO_PAYLOAD, NULL, hello_done, NULL);
}

/* ------------------------------------------------------------------ steps */

static bool all(bool (*pred)(const struct fdn *d))
{
    for (unsigned i = 0; i < A.ndn; i++)
        if (!pred(&R.dn[i]))
            return false;
    return true;
}

static bool is_registered(const struct fdn *d)
{
    return d->registered;
}

static bool is_idle(const struct fdn *d)
{
    return !d->reporting;
}

/* --kill: datanode 1 goes silent, as if its machine died. */
static void kill_first(void)
{
    struct fdn *d = &R.dn[0];

    for (uint64_t i = 0; i < A.chunks; i++)
        R.victim_chunks += holds(d, i);
    d->killed = true;
    d->registered = false;
    uv_timer_stop(&d->hb);
    rpc_conn_set_data(d->conn, NULL);
    rpc_conn_close(d->conn);
    d->conn = NULL;
    R.step = S_KILL;
    R.t_kill_ns = mono_ns();
    uv_timer_start(&R.poll, poll_tick, 0, 100);
}

/* Moves on when the current step is complete. */
static void next_step(void)
{
    switch (R.step) {
    case S_REGISTER:
        if (!all(is_registered))
            return;
        R.step = S_ROUND1;
        R.t_round1_ns = mono_ns();
        for (unsigned i = 0; i < A.ndn; i++)
            start_report(&R.dn[i]);
        return;
    case S_ROUND1:
        if (!all(is_idle))
            return;
        R.t_round1_end_ns = mono_ns();
        read_mem(&R.mem[1]);
        R.step = S_SETTLE;
        uv_timer_start(&R.poll, poll_tick, 0, 100);
        return;
    case S_SETTLE:
        uv_timer_stop(&R.poll);
        read_mem(&R.mem[2]);
        R.step = S_STATUS;
        call_status();
        return;
    case S_STATUS:
        R.step = S_ROUND2;
        R.round2_next = 0;
        start_report(&R.dn[R.round2_next++]);
        return;
    case S_ROUND2:
        if (R.round2_next < A.ndn) {
            start_report(&R.dn[R.round2_next++]);
            return;
        }
        read_mem(&R.mem[3]);
        if (A.kill) {
            kill_first();
            return;
        }
        R.step = S_DONE;
        uv_stop(&R.loop);
        return;
    case S_KILL:
        uv_timer_stop(&R.poll);
        read_mem(&R.mem[4]);
        R.step = S_DONE;
        uv_stop(&R.loop);
        return;
    default:
        return;
    }
}

static void on_deadline(uv_timer_t *t)
{
    failed("timed out (step %d; %" PRIu64 " healthy, %" PRIu64 " queued or copying at the last "
           "Status)",
           (int)R.step, R.last_healthy, R.last_queue);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    failed("interrupted");
}

/* ----------------------------------------------------------------- output */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void print_results(void)
{
    static const char *const mem_names[] = {"loaded", "reported", "settled", "rereported",
                                            "killed"};
    int nmem = A.kill ? 5 : 4;
    double dead_ms = R.t_dead_ns ? (double)(R.t_dead_ns - R.t_kill_ns) / 1e6 : 0;
    double queued_ms = R.t_queued_ns ? (double)(R.t_queued_ns - R.t_dead_ns) / 1e6 : 0;
    double st[MAX_STATUS];
    double settle_ms = (double)(R.t_settled_ns - R.t_round1_end_ns) / 1e6;
    double safe_ms = R.t_safe_off_ns ? (double)(R.t_safe_off_ns - R.t_round1_ns) / 1e6 : 0;
    double round1_ms = (double)(R.t_round1_end_ns - R.t_round1_ns) / 1e6;
    uint64_t cmds = 0;

    memcpy(st, R.status_ms, R.nstatus * sizeof(*st));
    qsort(st, R.nstatus, sizeof(*st), cmp_double);
    for (unsigned i = 0; i < A.ndn; i++)
        cmds += R.dn[i].deletes + R.dn[i].replicates + R.dn[i].other_cmds + R.dn[i].reregisters;
    if (A.json) {
        printf("{\"chunks\":%" PRIu64 ",\"datanodes\":%" PRIu64 ",\"replication\":%" PRIu64
               ",\"batch\":%" PRIu64 ",\"round1_ms\":%.0f,\"safe_mode_off_ms\":%.0f,"
               "\"settle_ms\":%.0f,\"settle_status_calls\":%" PRIu64
               ",\"settle_status_max_ms\":%.1f,\"status_ms\":[",
               A.chunks, A.ndn, A.replication, A.batch, round1_ms, safe_ms, settle_ms,
               R.settle_status_calls, R.settle_status_max_ms);
        for (uint64_t i = 0; i < R.nstatus; i++)
            printf("%s%.1f", i ? "," : "", R.status_ms[i]);
        printf("],\"reports\":[");
        for (unsigned i = 0; i < A.ndn; i++) {
            const struct fdn *d = &R.dn[i];

            printf("%s{\"datanode\":%u,\"node_id\":%" PRIu64 ",\"replicas\":%" PRIu64
                   ",\"batches\":%" PRIu64 ",\"round1_ms\":%" PRIu64 ",\"round2_ms\":%" PRIu64 "}",
                   i ? "," : "", i + 1, d->node_id, d->round_replicas[0], d->round_batches[0],
                   d->round_ms[0], d->round_ms[1]);
        }
        printf("],");
        if (A.kill)
            printf("\"kill\":{\"victim_chunks\":%" PRIu64 ",\"dead_ms\":%.0f,\"queued_ms\":%.0f,"
                   "\"status_calls\":%" PRIu64 ",\"status_max_ms\":%.1f,\"others_lost\":%" PRIu64
                   "},",
                   R.victim_chunks, dead_ms, queued_ms, R.kill_status_calls, R.kill_status_max_ms,
                   R.others_lost);
        printf("\"memory_kb\":{");
        for (int i = 0; i < nmem; i++)
            printf("%s\"%s\":{\"rss\":%" PRIu64 ",\"hwm\":%" PRIu64 "}", i ? "," : "", mem_names[i],
                   R.mem[i].rss_kb, R.mem[i].hwm_kb);
        printf("},\"commands\":%" PRIu64 "}\n", cmds);
        return;
    }
    printf("nn-scale: %" PRIu64 " chunks on %" PRIu64 " datanodes, replication %" PRIu64
           ", reports in batches of %" PRIu64 "\n",
           A.chunks, A.ndn, A.replication, A.batch);
    if (A.nn_pid)
        for (int i = 0; i < nmem; i++)
            printf("  namenode memory %-10s VmRSS %7.1f MiB  VmHWM %7.1f MiB\n", mem_names[i],
                   (double)R.mem[i].rss_kb / 1024, (double)R.mem[i].hwm_kb / 1024);
    printf("  round 1, every datanode at once: %.0f ms in all (safe mode off after %.0f ms)\n",
           round1_ms, safe_ms);
    for (unsigned i = 0; i < A.ndn; i++)
        printf("    datanode %u: %" PRIu64 " replicas in %" PRIu64 " batches, %" PRIu64
               " ms first batch sent to last answered\n",
               i + 1, R.dn[i].round_replicas[0], R.dn[i].round_batches[0], R.dn[i].round_ms[0]);
    printf("  settle (repair examined every chunk, all healthy): %.0f ms after round 1\n",
           settle_ms);
    printf("  Status while settling (counts the chunks when they changed): %" PRIu64
           " calls, max %.1f ms\n",
           R.settle_status_calls, R.settle_status_max_ms);
    if (R.nstatus)
        printf("  Status at %" PRIu64 " chunks, settled: %" PRIu64 " calls, min %.1f ms, "
               "median %.1f ms, max %.1f ms\n",
               A.chunks, R.nstatus, st[0], st[R.nstatus / 2], st[R.nstatus - 1]);
    printf("  round 2, one datanode at a time (replicas already known):\n");
    for (unsigned i = 0; i < A.ndn; i++)
        printf("    datanode %u: %" PRIu64 " ms\n", i + 1, R.dn[i].round_ms[1]);
    if (A.kill)
        printf("  datanode 1 (%" PRIu64 " replicas) silent: declared dead after %.0f ms, all its "
               "chunks queued for repair %.0f ms later; Status meanwhile: %" PRIu64
               " calls, max %.1f ms; other datanodes not alive at the end: %" PRIu64 "\n",
               R.victim_chunks, dead_ms, queued_ms, R.kill_status_calls, R.kill_status_max_ms,
               R.others_lost);
    printf("  commands received from the namenode: %" PRIu64 "\n", cmds);
}

/* ------------------------------------------------------------------- main */

static void close_all(void)
{
    for (unsigned i = 0; i < A.ndn; i++) {
        struct fdn *d = &R.dn[i];

        uv_close((uv_handle_t *)&d->hb, NULL);
        if (d->conn) {
            rpc_conn_set_data(d->conn, NULL);
            rpc_conn_close(d->conn);
        }
    }
    if (R.client)
        rpc_conn_close(R.client);
    uv_close((uv_handle_t *)&R.poll, NULL);
    uv_close((uv_handle_t *)&R.deadline, NULL);
    uv_close((uv_handle_t *)&R.sigint, NULL);
    uv_run(&R.loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv)
{
    const struct flag flags[] = {
        {"namenode", FLAG_ADDR, &A.namenode, "namenode address"},
        {"chunks", FLAG_UINT, &A.chunks, "chunks the store holds (nn-load's chunks=)"},
        {"first-id", FLAG_UINT, &A.first_id, "id of the first chunk (nn-load's first_id=)"},
        {"datanodes", FLAG_UINT, &A.ndn, "fake datanodes, each in its own failure domain"},
        {"replication", FLAG_UINT, &A.replication, "datanodes holding each chunk"},
        {"batch", FLAG_UINT, &A.batch, "replicas per BlockReportReq"},
        {"nn-pid", FLAG_UINT, &A.nn_pid, "the namenode's pid, for its memory use"},
        {"status-calls", FLAG_UINT, &A.status_calls, "Status calls timed after settling"},
        {"kill", FLAG_BOOL, &A.kill, "at the end, datanode 1 goes silent (see the file's top)"},
        {"timeout", FLAG_DURATION, &A.timeout_ms, "give up after this long"},
        {"json", FLAG_BOOL, &A.json, "one JSON object instead of text"},
    };
    const struct flags_spec spec = {
        .prog = "nn-reporter",
        .usage = "--namenode A --chunks N [--first-id ID] [--datanodes D] [options]",
        .about = "Fake datanodes send full block reports of N chunks; prints the time of each "
                 "report, of the namenode settling and of Status calls (bench/nn-scale).",
        .flags = flags,
        .nflags = (int)ARRAY_SIZE(flags),
    };
    int first, r;

    signal(SIGPIPE, SIG_IGN);
    log_init("nn-reporter", LOG_WARN);
    r = flags_parse(&spec, argc, argv, &first);
    if (r)
        return r > 0 ? 0 : 2;
    if (!A.namenode || first != argc || A.chunks == 0 || A.first_id == 0 || A.ndn == 0 ||
        A.ndn > MAX_DATANODES || A.replication == 0 || A.replication > A.ndn || A.batch == 0 ||
        A.batch > 30000 || A.status_calls > MAX_STATUS) {
        fprintf(stderr,
                "nn-reporter: --namenode and --chunks are required; --datanodes 1..%u, "
                "--replication 1..datanodes, --batch 1..30000\n",
                MAX_DATANODES);
        return 2;
    }
    uv_loop_init(&R.loop);
    uv_timer_init(&R.loop, &R.poll);
    uv_timer_init(&R.loop, &R.deadline);
    uv_timer_start(&R.deadline, on_deadline, A.timeout_ms, 0);
    uv_signal_init(&R.loop, &R.sigint);
    uv_signal_start(&R.sigint, on_sigint, SIGINT);
    for (unsigned i = 0; i < A.ndn; i++) {
        R.dn[i].idx = i;
        uv_timer_init(&R.loop, &R.dn[i].hb);
        R.dn[i].hb.data = &R.dn[i];
    }
    read_mem(&R.mem[0]);
    r = client_connect();
    for (unsigned i = 0; r == 0 && i < A.ndn; i++) {
        struct fdn *d = &R.dn[i];

        r = rpc_connect(&R.loop, A.namenode, &dn_svc, NULL, &d->conn);
        if (r == 0) {
            rpc_conn_set_data(d->conn, d);
            register_dn(d);
        }
    }
    if (r) {
        fprintf(stderr, "nn-reporter: cannot connect to %s: %s\n", A.namenode, err_str(r));
        close_all();
        uv_loop_close(&R.loop);
        return 1;
    }
    uv_run(&R.loop, UV_RUN_DEFAULT);
    if (R.step == S_DONE)
        print_results();
    else
        fprintf(stderr, "nn-reporter: %s\n", R.why[0] ? R.why : "stopped early");
    close_all();
    uv_loop_close(&R.loop);
    return R.step == S_DONE ? 0 : 1;
}
