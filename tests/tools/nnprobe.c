/*
 * nnprobe: drives a real keel-namenode over the real RPC, for the
 * namenode's integration tests. Subcommands:
 *
 *   nnprobe dn --namenode A --state FILE [--domain D] [--capacity S] ...
 *       A fake datanode: registers (keeping its identity and replicas in
 *       FILE, rewritten atomically on every change), sends a full block
 *       report, heartbeats, executes delete commands, and answers the
 *       namenode's CreateReplica, SetVersion, TrimReplica and CommandReq
 *       calls. A replicate command is played, not done: after --copy-ms the
 *       source answers ReplicateDoneReq (status 0, or --copy-fail), and
 *       the target's state does not change. Every event is one line on
 *       stderr.
 *   nnprobe op --namenode A [--client-id N] CMD ARGS...
 *       One metadata operation; prints its result, or "ERR ENAME message"
 *       and exits 1. CMD: mkdir stat ls create rm rmdir mv ln symlink
 *       readlink chmod truncate extend extends statfs status chunks recover
 *       decommission recommission. `extends PATH COUNT [durable]` grows a
 *       file COUNT times by 1 MiB, one call at a time, and prints the mean
 *       time per call.
 *   nnprobe burst --namenode A --dir D --count N [--inflight K] --log FILE
 *       Creates D/f000000... with K calls in flight; appends "sent NAME"
 *       before each call and "ack NAME" after each success to FILE (one
 *       write(2) each, so the log survives a crash of anything), and stops
 *       at the first failure.
 *   nnprobe writer --namenode A --path P [--answer release|busy|ignore]
 *       A client that takes the write lease of P (GetChunks for_write of
 *       its first chunk), renews it, and answers recalls as told. Prints
 *       events on stdout until SIGTERM or --hold.
 */
#include "errors.h"
#include "flags.h"
#include "log.h"
#include "rpc.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uv_loop_t loop;

static const char *namenode_addr(const char *flag)
{
    const char *env = getenv("KEEL_NAMENODE");

    if (flag)
        return flag;
    return env ? env : "127.0.0.1:7420";
}

static const char *errname(int err)
{
    static const struct {
        int e;
        const char *name;
    } names[] = {
        {ENOENT, "ENOENT"},
        {EEXIST, "EEXIST"},
        {EINVAL, "EINVAL"},
        {ENOTDIR, "ENOTDIR"},
        {EISDIR, "EISDIR"},
        {ENOTEMPTY, "ENOTEMPTY"},
        {ENAMETOOLONG, "ENAMETOOLONG"},
        {EBUSY, "EBUSY"},
        {EPERM, "EPERM"},
        {EIO, "EIO"},
        {ENOSPC, "ENOSPC"},
        {ESTALE, "ESTALE"},
        {EFBIG, "EFBIG"},
        {ECONNREFUSED, "ECONNREFUSED"},
        {ETIMEDOUT, "ETIMEDOUT"},
        {ECONNRESET, "ECONNRESET"},
        {EOPNOTSUPP, "EOPNOTSUPP"},
        {EAGAIN, "EAGAIN"},
        {ECANCELED, "ECANCELED"},
        {ERANGE, "ERANGE"},
        {EMLINK, "EMLINK"},
        {EPROTO, "EPROTO"},
        {ENOTCONN, "ENOTCONN"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (names[i].e == -err)
            return names[i].name;
    return "EOTHER";
}

/* -------------------------------------------------------- synchronous calls */

struct waitcall {
    int done;
    int status;
    Keel__Envelope *rep;
    char err[256];
};

static Keel__Envelope *copy_env(const Keel__Envelope *env)
{
    size_t n = keel__envelope__get_packed_size(env);
    uint8_t *buf = xmalloc(n ? n : 1);
    Keel__Envelope *copy;

    keel__envelope__pack(env, buf);
    copy = keel__envelope__unpack(NULL, n, buf);
    free(buf);
    return copy;
}

static void wait_cb(int status, rpc_msg *m, void *arg)
{
    struct waitcall *w = arg;

    w->done = 1;
    w->status = status;
    if (m && m->env) {
        snprintf(w->err, sizeof(w->err), "%s", m->env->error ? m->env->error : "");
        if (status == 0)
            w->rep = copy_env(m->env);
    } else {
        snprintf(w->err, sizeof(w->err), "%s", err_str(status));
    }
}

/* Calls and waits. On 0, *rep is the reply (free with
 * keel__envelope__free_unpacked). */
static int call(rpc_conn *c, Keel__Envelope *env, uint32_t timeout_ms, Keel__Envelope **rep,
                char *err, size_t errlen)
{
    struct rpc_call_opts o = {.timeout_ms = timeout_ms};
    struct waitcall w = {0};
    int r = rpc_call(c, env, RPC_NO_PAYLOAD, &o, wait_cb, &w);

    if (r) {
        snprintf(err, errlen, "%s", err_str(r));
        return r;
    }
    while (!w.done)
        uv_run(&loop, UV_RUN_ONCE);
    if (w.status) {
        snprintf(err, errlen, "%s", w.err);
        return w.status;
    }
    *rep = w.rep;
    return 0;
}

/* ---------------------------------------------------------- fake datanode */

#define MAX_REPLICAS 65536

struct replica {
    uint64_t chunk, version, length;
};

static struct dn {
    const char *state_path;
    const char *domain;
    const char *addr;
    const char *cluster_override;
    uint64_t capacity, used;
    int fail_create;
    bool full;
    char cluster[80];
    uint64_t node_id;
    struct replica *reps;
    size_t nreps;
    rpc_conn *conn;
    bool registered, registering;
    uint32_t heartbeat_ms;
    uv_timer_t hb;
    uv_signal_t sigterm, sigint;
    bool stopping;
    /* Copies being played: reported done at their deadline. */
    uint64_t copy_ms;
    int copy_fail;
    uint64_t copy_fails; /* how many copies fail (0: all) */
    uint64_t copies_failed;
    uv_timer_t copy_timer;
    struct dn_copy {
        uint64_t chunk, version, target, due_ms;
        bool delta;
    } copies[256];
    size_t ncopies;
} dn;

static void dn_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void dn_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nothing to do about a lost log line. */
    }
}

static void dn_save(void)
{
    size_t cap = 256 + dn.nreps * 64, len = 0;
    char *buf = xmalloc(cap);
    int r;

    len += (size_t)snprintf(buf + len, cap - len, "cluster %s\nnode %" PRIu64 "\n",
                            dn.cluster[0] ? dn.cluster : "-", dn.node_id);
    for (size_t i = 0; i < dn.nreps; i++)
        len +=
            (size_t)snprintf(buf + len, cap - len, "replica %" PRIx64 " %" PRIu64 " %" PRIu64 "\n",
                             dn.reps[i].chunk, dn.reps[i].version, dn.reps[i].length);
    r = write_file_atomic(dn.state_path, buf, len);
    if (r)
        dn_log("dn: cannot save %s: %s", dn.state_path, err_str(r));
    free(buf);
}

static void dn_load(void)
{
    char *buf, *line, *save = NULL;
    size_t len;

    dn.reps = xcalloc(MAX_REPLICAS, sizeof(*dn.reps));
    if (read_file(dn.state_path, &buf, &len))
        return;
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        struct replica r;

        if (sscanf(line, "cluster %79s", dn.cluster) == 1 && strcmp(dn.cluster, "-") == 0)
            dn.cluster[0] = '\0';
        sscanf(line, "node %" SCNu64, &dn.node_id);
        if (sscanf(line, "replica %" SCNx64 " %" SCNu64 " %" SCNu64, &r.chunk, &r.version,
                   &r.length) == 3 &&
            dn.nreps < MAX_REPLICAS)
            dn.reps[dn.nreps++] = r;
    }
    free(buf);
}

static struct replica *dn_find(uint64_t chunk)
{
    for (size_t i = 0; i < dn.nreps; i++)
        if (dn.reps[i].chunk == chunk)
            return &dn.reps[i];
    return NULL;
}

static void dn_drop(uint64_t chunk)
{
    struct replica *r = dn_find(chunk);

    if (r)
        *r = dn.reps[--dn.nreps];
}

static void reply_replica(rpc_req *req, const struct replica *r, bool trim)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__SetVersionRep sv = KEEL__SET_VERSION_REP__INIT;
    Keel__TrimReplicaRep tr = KEEL__TRIM_REPLICA_REP__INIT;
    Keel__ReplicaInfo info = KEEL__REPLICA_INFO__INIT;

    info.chunk_id = r->chunk;
    info.version = r->version;
    info.length = r->length;
    if (trim) {
        tr.replica = &info;
        env.body_case = KEEL__ENVELOPE__BODY_TRIM_REPLICA_REP;
        env.trim_replica_rep = &tr;
    } else {
        sv.replica = &info;
        env.body_case = KEEL__ENVELOPE__BODY_SET_VERSION_REP;
        env.set_version_rep = &sv;
    }
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void dn_h_create(rpc_req *req, void *ctx)
{
    Keel__CreateReplicaReq *rq = req->env->create_replica_req;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CreateReplicaRep rep = KEEL__CREATE_REPLICA_REP__INIT;

    if (dn.fail_create) {
        dn_log("dn: refused create of %" PRIx64, rq->chunk_id);
        rpc_reply_error(req, -dn.fail_create, "refused by --fail-create");
        return;
    }
    if (dn_find(rq->chunk_id)) {
        rpc_reply_error(req, -EEXIST, "replica exists");
        return;
    }
    if (dn.nreps == MAX_REPLICAS) {
        rpc_reply_error(req, -ENOSPC, "fake datanode full");
        return;
    }
    dn.reps[dn.nreps++] = (struct replica){rq->chunk_id, rq->version, 0};
    dn_save();
    dn_log("dn: created %" PRIx64 " v%" PRIu64, rq->chunk_id, rq->version);
    env.body_case = KEEL__ENVELOPE__BODY_CREATE_REPLICA_REP;
    env.create_replica_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void dn_h_set_version(rpc_req *req, void *ctx)
{
    Keel__SetVersionReq *rq = req->env->set_version_req;
    struct replica *r = dn_find(rq->chunk_id);

    if (!r) {
        rpc_reply_error(req, -ENOENT, "no replica");
        return;
    }
    if (r->version != rq->version && r->version != rq->new_version) {
        rpc_reply_error(req, -ESTALE, "replica at version %" PRIu64, r->version);
        return;
    }
    dn_log("dn: set-version %" PRIx64 " %" PRIu64 "->%" PRIu64, r->chunk, r->version,
           rq->new_version);
    r->version = rq->new_version;
    dn_save();
    reply_replica(req, r, false);
}

static void dn_h_trim(rpc_req *req, void *ctx)
{
    Keel__TrimReplicaReq *rq = req->env->trim_replica_req;
    struct replica *r = dn_find(rq->chunk_id);

    if (!r) {
        rpc_reply_error(req, -ENOENT, "no replica");
        return;
    }
    if (r->version != rq->version && r->version != rq->new_version) {
        rpc_reply_error(req, -ESTALE, "replica at version %" PRIu64, r->version);
        return;
    }
    r->version = rq->new_version;
    r->length = MIN(r->length, rq->length);
    dn_log("dn: trim %" PRIx64 " to %" PRIu64 " v%" PRIu64, r->chunk, rq->length, r->version);
    dn_save();
    reply_replica(req, r, true);
}

static void dn_register(void);
static void dn_tick(uv_timer_t *t);

static void dn_copy_done(int status, rpc_msg *m, void *arg)
{
    if (status)
        dn_log("dn: ReplicateDone not delivered: %s", err_str(status));
}

/* Reports the copies whose time has come. */
static void dn_copy_tick(uv_timer_t *t)
{
    uint64_t now = mono_ms();

    for (size_t i = 0; i < dn.ncopies;) {
        struct dn_copy *cp = &dn.copies[i];
        Keel__Envelope env = KEEL__ENVELOPE__INIT;
        Keel__ReplicateDoneReq rq = KEEL__REPLICATE_DONE_REQ__INIT;

        if (cp->due_ms > now) {
            i++;
            continue;
        }
        rq.node_id = dn.node_id;
        rq.chunk_id = cp->chunk;
        rq.version = cp->version;
        rq.target = cp->target;
        /* Played copies make no replicas: a played replica may be the
         * source of the next one, so the source is not checked here. */
        if (dn.copy_fail && (dn.copy_fails == 0 || dn.copies_failed < dn.copy_fails)) {
            rq.status = err_to_wire(-dn.copy_fail);
            dn.copies_failed++;
        }
        rq.bytes_sent = rq.status ? 0 : (cp->delta ? 4096 : 1u << 20);
        rq.bytes_saved = rq.status || !cp->delta ? 0 : (1u << 20) - 4096;
        dn_log("dn: copied %" PRIx64 " v%" PRIu64 " to %" PRIu64 "%s: status %d", cp->chunk,
               cp->version, cp->target, cp->delta ? " (delta)" : "", rq.status);
        env.body_case = KEEL__ENVELOPE__BODY_REPLICATE_DONE_REQ;
        env.replicate_done_req = &rq;
        if (dn.registered)
            rpc_call(dn.conn, &env, RPC_NO_PAYLOAD, NULL, dn_copy_done, NULL);
        *cp = dn.copies[--dn.ncopies];
    }
}

static void dn_replicate(const Keel__Command *c)
{
    uint64_t target = c->target ? c->target->node_id : 0;

    for (size_t i = 0; i < dn.ncopies; i++)
        if (dn.copies[i].chunk == c->chunk_id && dn.copies[i].target == target)
            return; /* that copy runs */
    if (dn.ncopies == ARRAY_SIZE(dn.copies)) {
        dn_log("dn: too many copies; %" PRIx64 " dropped", c->chunk_id);
        return;
    }
    dn.copies[dn.ncopies++] =
        (struct dn_copy){c->chunk_id, c->version, target, mono_ms() + dn.copy_ms, c->delta};
    dn_log("dn: copy %" PRIx64 " v%" PRIu64 " to %" PRIu64 "%s", c->chunk_id, c->version, target,
           c->delta ? " (delta)" : "");
}

static void dn_commands(Keel__Command **cmds, size_t n)
{
    bool changed = false;

    for (size_t i = 0; i < n; i++) {
        struct replica *r = dn_find(cmds[i]->chunk_id);

        if (cmds[i]->kind == KEEL__COMMAND_KIND__CMD_REPLICATE)
            dn_replicate(cmds[i]);
        if (cmds[i]->kind != KEEL__COMMAND_KIND__CMD_DELETE)
            continue;
        if (r && r->version <= cmds[i]->version) {
            dn_log("dn: deleted %" PRIx64 " v%" PRIu64, r->chunk, r->version);
            dn_drop(cmds[i]->chunk_id);
            changed = true;
        }
    }
    if (changed)
        dn_save();
}

static void dn_report_done(int status, rpc_msg *m, void *arg)
{
    if (status) {
        dn_log("dn: block report failed: %s", err_str(status));
        return;
    }
    if (m->env->body_case == KEEL__ENVELOPE__BODY_BLOCK_REPORT_REP)
        dn_commands(m->env->block_report_rep->commands, m->env->block_report_rep->n_commands);
}

static void dn_full_report(void)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__BlockReportReq br = KEEL__BLOCK_REPORT_REQ__INIT;
    Keel__ReplicaInfo *infos = xcalloc(dn.nreps + 1, sizeof(*infos));
    Keel__ReplicaInfo **ptrs = xcalloc(dn.nreps + 1, sizeof(*ptrs));
    int r;

    for (size_t i = 0; i < dn.nreps; i++) {
        keel__replica_info__init(&infos[i]);
        infos[i].chunk_id = dn.reps[i].chunk;
        infos[i].version = dn.reps[i].version;
        infos[i].length = dn.reps[i].length;
        ptrs[i] = &infos[i];
    }
    br.node_id = dn.node_id;
    br.full = br.first = br.last = true;
    br.replicas = ptrs;
    br.n_replicas = dn.nreps;
    env.body_case = KEEL__ENVELOPE__BODY_BLOCK_REPORT_REQ;
    env.block_report_req = &br;
    r = rpc_call(dn.conn, &env, RPC_NO_PAYLOAD, NULL, dn_report_done, NULL);
    if (r)
        dn_log("dn: cannot send the block report: %s", err_str(r));
    free(ptrs);
    free(infos);
}

static void dn_registered(int status, rpc_msg *m, void *arg)
{
    Keel__RegisterRep *rep;

    dn.registering = false;
    if (status) {
        dn_log("dn: registration refused: %s: %s", err_str(status),
               m && m->env ? m->env->error : "");
        if (status == -EINVAL) {
            /* Another cluster, or a bad identity: give up like a datanode would. */
            dn.stopping = true;
            uv_stop(&loop);
        }
        return;
    }
    rep = m->env->register_rep;
    snprintf(dn.cluster, sizeof(dn.cluster), "%s", rep->cluster_id);
    dn.node_id = rep->node_id;
    dn.heartbeat_ms = rep->heartbeat_ms ? rep->heartbeat_ms : 1000;
    dn.registered = true;
    dn_save();
    dn_log("dn: registered as node %" PRIu64 " of cluster %s (heartbeat %u ms)", dn.node_id,
           dn.cluster, dn.heartbeat_ms);
    dn_full_report();
    uv_timer_start(&dn.hb, dn_tick, dn.heartbeat_ms, dn.heartbeat_ms);
}

static void dn_register(void)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__RegisterReq rq = KEEL__REGISTER_REQ__INIT;
    int r;

    if (dn.registering || dn.stopping)
        return;
    rq.cluster_id = dn.cluster_override ? (char *)dn.cluster_override : dn.cluster;
    rq.node_id = dn.node_id;
    rq.addr = (char *)dn.addr;
    rq.domain = (char *)dn.domain;
    rq.capacity = dn.capacity;
    rq.used = dn.used;
    env.body_case = KEEL__ENVELOPE__BODY_REGISTER_REQ;
    env.register_req = &rq;
    r = rpc_call(dn.conn, &env, RPC_NO_PAYLOAD, NULL, dn_registered, NULL);
    if (r == 0)
        dn.registering = true;
}

static void dn_hb_done(int status, rpc_msg *m, void *arg)
{
    Keel__HeartbeatRep *rep;

    if (status) {
        dn.registered = false;
        dn_log("dn: heartbeat failed: %s", err_str(status));
        return;
    }
    rep = m->env->heartbeat_rep;
    if (rep->reregister) {
        dn_log("dn: asked to register again");
        dn.registered = false;
        dn_register();
        return;
    }
    dn_commands(rep->commands, rep->n_commands);
}

static void dn_tick(uv_timer_t *t)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HeartbeatReq hb = KEEL__HEARTBEAT_REQ__INIT;

    if (dn.stopping)
        return;
    if (!dn.registered) {
        dn_register();
        return;
    }
    hb.node_id = dn.node_id;
    hb.capacity = dn.capacity;
    hb.used = dn.used;
    hb.full = dn.full;
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT_REQ;
    env.heartbeat_req = &hb;
    rpc_call(dn.conn, &env, RPC_NO_PAYLOAD, NULL, dn_hb_done, NULL);
}

static void dn_close(rpc_conn *c, int err, void *ctx)
{
    dn.registered = false;
}

static void dn_h_command(rpc_req *req, void *ctx)
{
    Keel__CommandReq *rq = req->env->command_req;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CommandRep rep = KEEL__COMMAND_REP__INIT;

    dn_commands(rq->commands, rq->n_commands);
    env.body_case = KEEL__ENVELOPE__BODY_COMMAND_REP;
    env.command_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void dn_signal(uv_signal_t *s, int signum)
{
    dn.stopping = true;
    uv_stop(&loop);
}

static const rpc_handler dn_handlers[] = {
    {KEEL__ENVELOPE__BODY_CREATE_REPLICA_REQ, "create_replica", dn_h_create},
    {KEEL__ENVELOPE__BODY_SET_VERSION_REQ, "set_version", dn_h_set_version},
    {KEEL__ENVELOPE__BODY_TRIM_REPLICA_REQ, "trim_replica", dn_h_trim},
    {KEEL__ENVELOPE__BODY_COMMAND_REQ, "command", dn_h_command},
};

static int cmd_dn(int argc, char **argv)
{
    const char *nn = NULL;
    uint64_t fail = 0, copy_fail = 0;
    bool no_push = false;
    char addr[64];
    struct flag flags[] = {
        {"namenode", FLAG_ADDR, &nn, "namenode address"},
        {"state", FLAG_STRING, &dn.state_path, "state file (identity, replicas)"},
        {"domain", FLAG_STRING, &dn.domain, "failure domain"},
        {"addr", FLAG_STRING, &dn.addr, "data address to advertise"},
        {"capacity", FLAG_SIZE, &dn.capacity, "capacity to report"},
        {"used", FLAG_SIZE, &dn.used, "use to report"},
        {"fail-create", FLAG_UINT, &fail, "answer CreateReplica with this errno"},
        {"full", FLAG_BOOL, &dn.full, "report a full disk in heartbeats"},
        {"cluster-id", FLAG_STRING, &dn.cluster_override, "claim this cluster id"},
        {"copy-ms", FLAG_DURATION, &dn.copy_ms, "a replicate command is reported done after this"},
        {"copy-fail", FLAG_UINT, &copy_fail, "report replicate commands failed with this errno"},
        {"copy-fails", FLAG_UINT, &dn.copy_fails, "with --copy-fail: only the first N (0: all)"},
        {"no-push", FLAG_BOOL, &no_push, "refuse CommandReq (commands at heartbeats only)"},
    };
    struct flags_spec spec = {"nnprobe dn",           "--namenode A --state FILE [options]",
                              "A fake datanode.",     flags,
                              (int)ARRAY_SIZE(flags), false};
    rpc_service svc = {dn_handlers, ARRAY_SIZE(dn_handlers), NULL, NULL, dn_close};
    int first, r;

    dn.copy_ms = 50;

    dn.domain = "default";
    dn.capacity = 100ull << 30;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", 20000 + (int)(getpid() % 40000));
    dn.addr = addr;
    r = flags_parse(&spec, argc, argv, &first);
    if (r)
        return r > 0 ? 0 : 2;
    if (!dn.state_path) {
        fprintf(stderr, "nnprobe dn: --state is required\n");
        return 2;
    }
    dn.fail_create = (int)fail;
    dn.copy_fail = (int)copy_fail;
    if (no_push)
        svc.nhandlers--; /* the command handler is the last one */
    dn_load();
    r = rpc_connect(&loop, namenode_addr(nn), &svc, NULL, &dn.conn);
    if (r) {
        fprintf(stderr, "nnprobe dn: bad namenode address\n");
        return 2;
    }
    uv_timer_init(&loop, &dn.hb);
    dn.heartbeat_ms = 200;
    uv_timer_start(&dn.hb, dn_tick, 0, 200);
    uv_timer_init(&loop, &dn.copy_timer);
    uv_timer_start(&dn.copy_timer, dn_copy_tick, 10, 10);
    uv_signal_init(&loop, &dn.sigterm);
    uv_signal_init(&loop, &dn.sigint);
    uv_signal_start(&dn.sigterm, dn_signal, SIGTERM);
    uv_signal_start(&dn.sigint, dn_signal, SIGINT);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&dn.hb, NULL);
    uv_close((uv_handle_t *)&dn.copy_timer, NULL);
    uv_close((uv_handle_t *)&dn.sigterm, NULL);
    uv_close((uv_handle_t *)&dn.sigint, NULL);
    rpc_conn_close(dn.conn);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(dn.reps);
    return dn.registered || dn.node_id ? 0 : 3;
}

/* -------------------------------------------------------------- client */

static uint64_t client_id;
static const char *recall_answer = "release";
static bool writer_released;

static void h_recall(rpc_req *req, void *ctx)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__LeaseRecallRep rep = KEEL__LEASE_RECALL_REP__INIT;

    printf("recall ino=%" PRIu64 " answer=%s\n", req->env->lease_recall_req->ino, recall_answer);
    fflush(stdout);
    if (strcmp(recall_answer, "ignore") == 0) {
        /* As good as no answer: the namenode treats an error like a
         * timeout (holder unreachable) and waits for the lease to expire. */
        rpc_reply_error(req, -ETIMEDOUT, "ignored");
        return;
    }
    rep.released = strcmp(recall_answer, "release") == 0;
    if (rep.released)
        writer_released = true;
    env.body_case = KEEL__ENVELOPE__BODY_LEASE_RECALL_REP;
    env.lease_recall_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static const rpc_handler client_handlers[] = {
    {KEEL__ENVELOPE__BODY_LEASE_RECALL_REQ, "lease_recall", h_recall},
};

static rpc_service client_svc = {client_handlers, ARRAY_SIZE(client_handlers), NULL, NULL, NULL};

static rpc_conn *client_connect(const char *addr, Keel__HelloRep *out)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HelloReq h = KEEL__HELLO_REQ__INIT;
    Keel__Envelope *rep;
    char err[256];
    rpc_conn *c;

    if (rpc_connect(&loop, addr, &client_svc, NULL, &c)) {
        fprintf(stderr, "nnprobe: bad namenode address %s\n", addr);
        exit(2);
    }
    if (!client_id)
        client_id = random_u64();
    h.client_id = client_id;
    h.name = "nnprobe";
    env.body_case = KEEL__ENVELOPE__BODY_HELLO_REQ;
    env.hello_req = &h;
    if (call(c, &env, 10000, &rep, err, sizeof(err))) {
        printf("ERR ECONNREFUSED %s\n", err);
        exit(1);
    }
    if (out) {
        out->chunk_size = rep->hello_rep->chunk_size;
        out->lease_ms = rep->hello_rep->lease_ms;
    }
    keel__envelope__free_unpacked(rep, NULL);
    return c;
}

static void print_attr(const Keel__Attr *a)
{
    printf("ino=%" PRIu64 " mode=%o nlink=%u uid=%u gid=%u size=%" PRIu64 " replication=%u "
           "chunks=%" PRIu64 " mtime=%" PRId64 "\n",
           a->ino, a->mode, a->nlink, a->uid, a->gid, a->size, a->replication, a->chunks,
           a->mtime_ns);
}

static void print_loc(const Keel__ChunkLoc *l)
{
    printf("chunk %" PRIu64 " %" PRIx64 " v%" PRIu64 " replicas=", l->index, l->chunk_id,
           l->version);
    for (size_t i = 0; i < l->n_replicas; i++)
        printf("%s%" PRIu64, i ? "," : "", l->replicas[i]->node_id);
    printf(" domains=");
    for (size_t i = 0; i < l->n_replicas; i++)
        printf("%s%s", i ? "," : "", l->replicas[i]->domain);
    printf(" stale=%zu corrupt=%zu misplaced=%d replication=%u\n", l->n_stale, l->n_corrupt,
           l->misplaced, l->replication);
}

static const char *state_name(Keel__NodeState s)
{
    switch (s) {
    case KEEL__NODE_STATE__NODE_ALIVE:
        return "alive";
    case KEEL__NODE_STATE__NODE_DEAD:
        return "dead";
    case KEEL__NODE_STATE__NODE_DECOMMISSIONING:
        return "decommissioning";
    case KEEL__NODE_STATE__NODE_DECOMMISSIONED:
        return "decommissioned";
    default:
        return "unknown";
    }
}

static int need(int argc, int n, const char *usage)
{
    if (argc < n) {
        fprintf(stderr, "nnprobe op: usage: %s\n", usage);
        exit(2);
    }
    return 0;
}

static uint64_t num(const char *s)
{
    uint64_t v;

    if (parse_size(s, &v)) {
        fprintf(stderr, "nnprobe: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

/* Resolves a path to its inode number (exits on error). */
static uint64_t ino_of(rpc_conn *c, const char *path)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT, *rep;
    Keel__StatReq sr = KEEL__STAT_REQ__INIT;
    char err[256];
    uint64_t ino;
    int r;

    sr.path = (char *)path;
    env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
    env.stat_req = &sr;
    r = call(c, &env, 10000, &rep, err, sizeof(err));
    if (r) {
        printf("ERR %s %s\n", errname(r), err);
        exit(1);
    }
    ino = rep->stat_rep->attr->ino;
    keel__envelope__free_unpacked(rep, NULL);
    return ino;
}

static int list_all(rpc_conn *c, const char *path, uint32_t page)
{
    char after[300] = "";

    for (int pages = 0; pages < 1000000; pages++) {
        Keel__Envelope env = KEEL__ENVELOPE__INIT, *rep;
        Keel__ReaddirReq rq = KEEL__READDIR_REQ__INIT;
        char err[256];
        bool eof;
        int r;

        rq.path = (char *)path;
        rq.after = after;
        rq.max = page;
        env.body_case = KEEL__ENVELOPE__BODY_READDIR_REQ;
        env.readdir_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r) {
            printf("ERR %s %s\n", errname(r), err);
            return 1;
        }
        for (size_t i = 0; i < rep->readdir_rep->n_entries; i++) {
            printf("%s\n", rep->readdir_rep->entries[i]->name);
            snprintf(after, sizeof(after), "%s", rep->readdir_rep->entries[i]->name);
        }
        eof = rep->readdir_rep->eof || rep->readdir_rep->n_entries == 0;
        keel__envelope__free_unpacked(rep, NULL);
        if (eof)
            return 0;
    }
    return 1;
}

static int cmd_op(int argc, char **argv)
{
    const char *nn = NULL;
    uint64_t cid = 0;
    struct flag flags[] = {
        {"namenode", FLAG_ADDR, &nn, "namenode address"},
        {"client-id", FLAG_UINT, &cid, "client id (default: random)"},
    };
    struct flags_spec spec = {"nnprobe op", "--namenode A CMD ARGS...", "One operation.",
                              flags,        (int)ARRAY_SIZE(flags),     true};
    Keel__Envelope env = KEEL__ENVELOPE__INIT, *rep = NULL;
    Keel__HelloRep hello = KEEL__HELLO_REP__INIT;
    char err[256] = "";
    const char *cmd;
    rpc_conn *c;
    int first, r = 0, rc = 0;
    char **a;
    int n;

    r = flags_parse(&spec, argc, argv, &first);
    if (r)
        return r > 0 ? 0 : 2;
    a = argv + first;
    n = argc - first;
    need(n, 1, "CMD ARGS...");
    cmd = a[0];
    client_id = cid;
    c = client_connect(namenode_addr(nn), &hello);

    if (strcmp(cmd, "mkdir") == 0) {
        Keel__MkdirReq rq = KEEL__MKDIR_REQ__INIT;

        need(n, 2, "mkdir PATH [MODE]");
        rq.path = a[1];
        rq.mode = n > 2 ? (uint32_t)strtoul(a[2], NULL, 8) : 0755;
        env.body_case = KEEL__ENVELOPE__BODY_MKDIR_REQ;
        env.mkdir_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            print_attr(rep->mkdir_rep->attr);
    } else if (strcmp(cmd, "stat") == 0) {
        Keel__StatReq rq = KEEL__STAT_REQ__INIT;

        need(n, 2, "stat PATH");
        rq.path = a[1];
        env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
        env.stat_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            print_attr(rep->stat_rep->attr);
    } else if (strcmp(cmd, "ls") == 0) {
        need(n, 2, "ls PATH [PAGE]");
        rc = list_all(c, a[1], n > 2 ? (uint32_t)num(a[2]) : 0);
    } else if (strcmp(cmd, "create") == 0) {
        Keel__CreateReq rq = KEEL__CREATE_REQ__INIT;

        need(n, 2, "create PATH [excl] [trunc] [size=N] [repl=N]");
        rq.path = a[1];
        rq.mode = 0644;
        rq.client_id = client_id;
        for (int i = 2; i < n; i++) {
            if (strcmp(a[i], "excl") == 0)
                rq.exclusive = true;
            else if (strcmp(a[i], "trunc") == 0)
                rq.truncate = true;
            else if (strncmp(a[i], "size=", 5) == 0)
                rq.size = num(a[i] + 5);
            else if (strncmp(a[i], "repl=", 5) == 0)
                rq.replication = (uint32_t)num(a[i] + 5);
        }
        env.body_case = KEEL__ENVELOPE__BODY_CREATE_REQ;
        env.create_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0) {
            printf("created=%d ", rep->create_rep->created);
            print_attr(rep->create_rep->attr);
        }
    } else if (strcmp(cmd, "rm") == 0 || strcmp(cmd, "rmdir") == 0) {
        Keel__UnlinkReq ul = KEEL__UNLINK_REQ__INIT;
        Keel__RmdirReq rd = KEEL__RMDIR_REQ__INIT;

        need(n, 2, "rm|rmdir PATH");
        if (cmd[1] == 'm' && cmd[2] == '\0') {
            ul.path = a[1];
            env.body_case = KEEL__ENVELOPE__BODY_UNLINK_REQ;
            env.unlink_req = &ul;
        } else {
            rd.path = a[1];
            env.body_case = KEEL__ENVELOPE__BODY_RMDIR_REQ;
            env.rmdir_req = &rd;
        }
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            printf("ok\n");
    } else if (strcmp(cmd, "mv") == 0) {
        Keel__RenameReq rq = KEEL__RENAME_REQ__INIT;

        need(n, 3, "mv FROM TO [noreplace]");
        rq.from = a[1];
        rq.to = a[2];
        rq.flags = n > 3 && strcmp(a[3], "noreplace") == 0 ? 1 : 0;
        env.body_case = KEEL__ENVELOPE__BODY_RENAME_REQ;
        env.rename_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            printf("ok\n");
    } else if (strcmp(cmd, "ln") == 0) {
        Keel__LinkReq rq = KEEL__LINK_REQ__INIT;

        need(n, 3, "ln FROM TO");
        rq.from = a[1];
        rq.to = a[2];
        env.body_case = KEEL__ENVELOPE__BODY_LINK_REQ;
        env.link_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            print_attr(rep->link_rep->attr);
    } else if (strcmp(cmd, "symlink") == 0) {
        Keel__SymlinkReq rq = KEEL__SYMLINK_REQ__INIT;

        need(n, 3, "symlink TARGET PATH");
        rq.target = a[1];
        rq.path = a[2];
        env.body_case = KEEL__ENVELOPE__BODY_SYMLINK_REQ;
        env.symlink_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            print_attr(rep->symlink_rep->attr);
    } else if (strcmp(cmd, "readlink") == 0) {
        Keel__ReadlinkReq rq = KEEL__READLINK_REQ__INIT;

        need(n, 2, "readlink PATH");
        rq.path = a[1];
        env.body_case = KEEL__ENVELOPE__BODY_READLINK_REQ;
        env.readlink_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            printf("%s\n", rep->readlink_rep->target);
    } else if (strcmp(cmd, "chmod") == 0 || strcmp(cmd, "truncate") == 0) {
        Keel__SetattrReq rq = KEEL__SETATTR_REQ__INIT;

        need(n, 3, "chmod PATH MODE | truncate PATH SIZE");
        rq.path = a[1];
        rq.client_id = client_id;
        if (cmd[0] == 'c') {
            rq.valid = KEEL__SETATTR_VALID__SETATTR_MODE;
            rq.mode = (uint32_t)strtoul(a[2], NULL, 8);
        } else {
            rq.valid = KEEL__SETATTR_VALID__SETATTR_SIZE;
            rq.size = num(a[2]);
        }
        env.body_case = KEEL__ENVELOPE__BODY_SETATTR_REQ;
        env.setattr_req = &rq;
        r = call(c, &env, 20000, &rep, err, sizeof(err));
        if (r == 0)
            print_attr(rep->setattr_rep->attr);
    } else if (strcmp(cmd, "extend") == 0) {
        Keel__ExtendReq rq = KEEL__EXTEND_REQ__INIT;

        need(n, 3, "extend PATH SIZE [durable]");
        rq.ino = ino_of(c, a[1]);
        rq.size = num(a[2]);
        rq.client_id = client_id;
        rq.durable = n > 3 && strcmp(a[3], "durable") == 0;
        env.body_case = KEEL__ENVELOPE__BODY_EXTEND_REQ;
        env.extend_req = &rq;
        r = call(c, &env, 20000, &rep, err, sizeof(err));
        if (r == 0)
            printf("size=%" PRIu64 "\n", rep->extend_rep->size);
    } else if (strcmp(cmd, "extends") == 0) {
        Keel__ExtendReq rq = KEEL__EXTEND_REQ__INIT;
        uint64_t count, t0;

        need(n, 3, "extends PATH COUNT [durable]");
        rq.ino = ino_of(c, a[1]);
        count = num(a[2]);
        rq.client_id = client_id;
        rq.durable = n > 3 && strcmp(a[3], "durable") == 0;
        env.body_case = KEEL__ENVELOPE__BODY_EXTEND_REQ;
        env.extend_req = &rq;
        t0 = mono_ns();
        for (uint64_t i = 1; i <= count && r == 0; i++) {
            rq.size = i << 20;
            r = call(c, &env, 20000, &rep, err, sizeof(err));
            if (r == 0) {
                keel__envelope__free_unpacked(rep, NULL);
                rep = NULL;
            }
        }
        if (r == 0)
            printf("extends=%" PRIu64 " durable=%d us_per_call=%.1f\n", count, rq.durable,
                   count ? (double)(mono_ns() - t0) / 1000.0 / (double)count : 0.0);
    } else if (strcmp(cmd, "statfs") == 0) {
        Keel__StatfsReq rq = KEEL__STATFS_REQ__INIT;

        env.body_case = KEEL__ENVELOPE__BODY_STATFS_REQ;
        env.statfs_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            printf("capacity=%" PRIu64 " used=%" PRIu64 " free=%" PRIu64 " files=%" PRIu64
                   " chunk_size=%" PRIu64 " live_nodes=%u replication=%u\n",
                   rep->statfs_rep->capacity, rep->statfs_rep->used, rep->statfs_rep->free,
                   rep->statfs_rep->files, rep->statfs_rep->chunk_size, rep->statfs_rep->live_nodes,
                   rep->statfs_rep->replication);
    } else if (strcmp(cmd, "status") == 0) {
        Keel__StatusReq rq = KEEL__STATUS_REQ__INIT;

        env.body_case = KEEL__ENVELOPE__BODY_STATUS_REQ;
        env.status_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0) {
            Keel__StatusRep *s = rep->status_rep;

            for (size_t i = 0; i < s->n_nodes; i++)
                printf("node %" PRIu64 " %s domain=%s addr=%s chunks=%" PRIu64 " since_ms=%" PRIu64
                       " capacity=%" PRIu64 " left=%" PRIu64 "\n",
                       s->nodes[i]->node_id, state_name(s->nodes[i]->state), s->nodes[i]->domain,
                       s->nodes[i]->addr, s->nodes[i]->chunks, s->nodes[i]->since_heartbeat_ms,
                       s->nodes[i]->capacity, s->nodes[i]->decommission_left);
            printf("cluster=%s safe_mode=%d files=%" PRIu64 " chunks=%" PRIu64 " healthy=%" PRIu64
                   " under=%" PRIu64 " missing=%" PRIu64 " misplaced=%" PRIu64 " stale=%" PRIu64
                   " corrupt=%" PRIu64 " repl_queue=%" PRIu64 " repl_running=%" PRIu64 "\n",
                   s->cluster_id, s->safe_mode, s->files, s->chunks, s->healthy,
                   s->under_replicated, s->missing, s->misplaced, s->stale_pending, s->corrupt,
                   s->repl_queue, s->repl_running);
        }
    } else if (strcmp(cmd, "chunks") == 0) {
        Keel__GetChunksReq rq = KEEL__GET_CHUNKS_REQ__INIT;

        need(n, 4, "chunks PATH OFFSET LENGTH [write] [detail]");
        rq.ino = ino_of(c, a[1]);
        rq.offset = num(a[2]);
        rq.length = num(a[3]);
        rq.client_id = client_id;
        for (int i = 4; i < n; i++) {
            rq.for_write |= strcmp(a[i], "write") == 0;
            rq.detail |= strcmp(a[i], "detail") == 0;
        }
        env.body_case = KEEL__ENVELOPE__BODY_GET_CHUNKS_REQ;
        env.get_chunks_req = &rq;
        r = call(c, &env, 30000, &rep, err, sizeof(err));
        if (r == 0) {
            printf("size=%" PRIu64 " chunk_size=%" PRIu64 " count=%zu\n", rep->get_chunks_rep->size,
                   rep->get_chunks_rep->chunk_size, rep->get_chunks_rep->n_chunks);
            for (size_t i = 0; i < rep->get_chunks_rep->n_chunks; i++)
                print_loc(rep->get_chunks_rep->chunks[i]);
        }
    } else if (strcmp(cmd, "recover") == 0) {
        Keel__RecoverChunkReq rq = KEEL__RECOVER_CHUNK_REQ__INIT;
        uint64_t failed[16];

        need(n, 4, "recover PATH CHUNK_HEX VERSION [FAILED_NODE...]");
        rq.ino = ino_of(c, a[1]);
        rq.chunk_id = strtoull(a[2], NULL, 16);
        rq.version = num(a[3]);
        rq.client_id = client_id;
        for (int i = 4; i < n && i - 4 < 16; i++)
            failed[rq.n_failed++] = num(a[i]);
        rq.failed = failed;
        env.body_case = KEEL__ENVELOPE__BODY_RECOVER_CHUNK_REQ;
        env.recover_chunk_req = &rq;
        r = call(c, &env, 30000, &rep, err, sizeof(err));
        if (r == 0)
            print_loc(rep->recover_chunk_rep->chunk);
    } else if (strcmp(cmd, "decommission") == 0 || strcmp(cmd, "recommission") == 0) {
        Keel__DecommissionReq rq = KEEL__DECOMMISSION_REQ__INIT;

        need(n, 2, "decommission|recommission NODE");
        rq.node_id = num(a[1]);
        rq.recommission = cmd[0] == 'r';
        env.body_case = KEEL__ENVELOPE__BODY_DECOMMISSION_REQ;
        env.decommission_req = &rq;
        r = call(c, &env, 10000, &rep, err, sizeof(err));
        if (r == 0)
            printf("node %" PRIu64 " %s left=%" PRIu64 "\n", rep->decommission_rep->node->node_id,
                   state_name(rep->decommission_rep->node->state),
                   rep->decommission_rep->node->decommission_left);
    } else {
        fprintf(stderr, "nnprobe op: unknown command '%s'\n", cmd);
        rc = 2;
    }
    if (r) {
        printf("ERR %s %s\n", errname(r), err);
        rc = 1;
    }
    if (rep)
        keel__envelope__free_unpacked(rep, NULL);
    rpc_conn_close(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    return rc;
}

/* --------------------------------------------------------------- burst */

static struct {
    rpc_conn *conn;
    const char *dir;
    int log_fd;
    uint64_t count, inflight, next, acked, running;
    bool failed;
} burst;

static void burst_log(const char *what, uint64_t i)
{
    char line[400];
    int n = snprintf(line, sizeof(line), "%s %s/f%06" PRIu64 "\n", what, burst.dir, i);

    if (write(burst.log_fd, line, (size_t)n) != n)
        fprintf(stderr, "nnprobe burst: cannot write the log\n");
}

static void burst_next(void);

static void burst_done(int status, rpc_msg *m, void *arg)
{
    uint64_t i = (uint64_t)(uintptr_t)arg;

    burst.running--;
    if (status) {
        if (!burst.failed)
            fprintf(stderr, "nnprobe burst: create %" PRIu64 " failed: %s\n", i, err_str(status));
        burst.failed = true;
        return;
    }
    burst_log("ack", i);
    burst.acked++;
    burst_next();
}

static void burst_next(void)
{
    while (!burst.failed && burst.next < burst.count && burst.running < burst.inflight) {
        Keel__Envelope env = KEEL__ENVELOPE__INIT;
        Keel__CreateReq rq = KEEL__CREATE_REQ__INIT;
        char path[300];
        uint64_t i = burst.next++;

        snprintf(path, sizeof(path), "%s/f%06" PRIu64, burst.dir, i);
        rq.path = path;
        rq.mode = 0600;
        rq.exclusive = true;
        rq.size = i;
        env.body_case = KEEL__ENVELOPE__BODY_CREATE_REQ;
        env.create_req = &rq;
        burst_log("sent", i);
        if (rpc_call(burst.conn, &env, RPC_NO_PAYLOAD, NULL, burst_done, (void *)(uintptr_t)i)) {
            burst.failed = true;
            return;
        }
        burst.running++;
    }
}

static int cmd_burst(int argc, char **argv)
{
    const char *nn = NULL, *log_path = NULL;
    struct flag flags[] = {
        {"namenode", FLAG_ADDR, &nn, "namenode address"},
        {"dir", FLAG_STRING, &burst.dir, "directory to create files in"},
        {"count", FLAG_UINT, &burst.count, "files to create"},
        {"inflight", FLAG_UINT, &burst.inflight, "creates in flight at once"},
        {"log", FLAG_STRING, &log_path, "append sent/ack lines here"},
    };
    struct flags_spec spec = {"nnprobe burst", "--dir D --count N --log FILE", "Create burst.",
                              flags,           (int)ARRAY_SIZE(flags),         false};
    uint64_t t0;
    int first, r;

    burst.count = 1000;
    burst.inflight = 64;
    r = flags_parse(&spec, argc, argv, &first);
    if (r)
        return r > 0 ? 0 : 2;
    if (!burst.dir || !log_path || !burst.inflight) {
        fprintf(stderr, "nnprobe burst: --dir, --log and a non-zero --inflight are required\n");
        return 2;
    }
    burst.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (burst.log_fd < 0) {
        perror(log_path);
        return 2;
    }
    burst.conn = client_connect(namenode_addr(nn), NULL);
    t0 = mono_ms();
    burst_next();
    while (burst.running > 0)
        uv_run(&loop, UV_RUN_ONCE);
    printf("sent=%" PRIu64 " acked=%" PRIu64 " ms=%" PRIu64 "\n", burst.next, burst.acked,
           mono_ms() - t0);
    close(burst.log_fd);
    rpc_conn_close(burst.conn);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}

/* -------------------------------------------------------------- writer */

static struct {
    rpc_conn *conn;
    uint64_t ino;
    uv_timer_t renew, hold;
    uv_signal_t sigterm;
    bool stop;
} wr;

static void writer_renewed(int status, rpc_msg *m, void *arg)
{
    if (status) {
        printf("renew failed: %s\n", err_str(status));
    } else if (m->env->lease_renew_rep->n_lost) {
        printf("lost ino=%" PRIu64 "\n", wr.ino);
        wr.stop = true;
        uv_stop(&loop);
    }
    fflush(stdout);
}

static void writer_tick(uv_timer_t *t)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__LeaseRenewReq rq = KEEL__LEASE_RENEW_REQ__INIT;

    if (writer_released) {
        printf("released ino=%" PRIu64 "\n", wr.ino);
        fflush(stdout);
        wr.stop = true;
        uv_stop(&loop);
        return;
    }
    rq.client_id = client_id;
    rq.inos = &wr.ino;
    rq.n_inos = 1;
    env.body_case = KEEL__ENVELOPE__BODY_LEASE_RENEW_REQ;
    env.lease_renew_req = &rq;
    rpc_call(wr.conn, &env, RPC_NO_PAYLOAD, NULL, writer_renewed, NULL);
}

static void writer_stop(uv_timer_t *t)
{
    wr.stop = true;
    uv_stop(&loop);
}

static void writer_signal(uv_signal_t *s, int signum)
{
    wr.stop = true;
    uv_stop(&loop);
}

static int cmd_writer(int argc, char **argv)
{
    const char *nn = NULL, *path = NULL;
    uint64_t hold_ms = 0, cid = 0;
    struct flag flags[] = {
        {"namenode", FLAG_ADDR, &nn, "namenode address"},
        {"path", FLAG_STRING, &path, "file to hold the write lease of"},
        {"answer", FLAG_STRING, &recall_answer, "release, busy or ignore"},
        {"hold", FLAG_DURATION, &hold_ms, "exit after this long (0: on SIGTERM)"},
        {"client-id", FLAG_UINT, &cid, "client id (default: random)"},
    };
    struct flags_spec spec = {"nnprobe writer",       "--path P [--answer A]",
                              "A lease holder.",      flags,
                              (int)ARRAY_SIZE(flags), false};
    Keel__Envelope env = KEEL__ENVELOPE__INIT, *rep;
    Keel__GetChunksReq rq = KEEL__GET_CHUNKS_REQ__INIT;
    Keel__HelloRep hello = KEEL__HELLO_REP__INIT;
    char err[256];
    int first, r;

    r = flags_parse(&spec, argc, argv, &first);
    if (r)
        return r > 0 ? 0 : 2;
    if (!path) {
        fprintf(stderr, "nnprobe writer: --path is required\n");
        return 2;
    }
    client_id = cid;
    wr.conn = client_connect(namenode_addr(nn), &hello);
    wr.ino = ino_of(wr.conn, path);
    rq.ino = wr.ino;
    rq.offset = 0;
    rq.length = 1;
    rq.for_write = true;
    rq.client_id = client_id;
    env.body_case = KEEL__ENVELOPE__BODY_GET_CHUNKS_REQ;
    env.get_chunks_req = &rq;
    r = call(wr.conn, &env, 30000, &rep, err, sizeof(err));
    if (r) {
        printf("ERR %s %s\n", errname(r), err);
        rpc_conn_close(wr.conn);
        uv_run(&loop, UV_RUN_DEFAULT);
        return 1;
    }
    printf("granted ino=%" PRIu64 " client=%" PRIx64 "\n", wr.ino, client_id);
    for (size_t i = 0; i < rep->get_chunks_rep->n_chunks; i++)
        print_loc(rep->get_chunks_rep->chunks[i]);
    fflush(stdout);
    keel__envelope__free_unpacked(rep, NULL);
    uv_timer_init(&loop, &wr.renew);
    uv_timer_start(&wr.renew, writer_tick, hello.lease_ms / 4, MAX(hello.lease_ms / 4, 50));
    uv_timer_init(&loop, &wr.hold);
    if (hold_ms)
        uv_timer_start(&wr.hold, writer_stop, hold_ms, 0);
    uv_signal_init(&loop, &wr.sigterm);
    uv_signal_start(&wr.sigterm, writer_signal, SIGTERM);
    while (!wr.stop)
        uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&wr.renew, NULL);
    uv_close((uv_handle_t *)&wr.hold, NULL);
    uv_close((uv_handle_t *)&wr.sigterm, NULL);
    rpc_conn_close(wr.conn);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}

int main(int argc, char **argv)
{
    int r;

    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    log_init("nnprobe", LOG_WARN);
    if (argc < 2) {
        fprintf(stderr, "usage: nnprobe dn|op|burst|writer [options] (see --help of each)\n");
        return 2;
    }
    uv_loop_init(&loop);
    if (strcmp(argv[1], "dn") == 0)
        r = cmd_dn(argc - 1, argv + 1);
    else if (strcmp(argv[1], "op") == 0)
        r = cmd_op(argc - 1, argv + 1);
    else if (strcmp(argv[1], "burst") == 0)
        r = cmd_burst(argc - 1, argv + 1);
    else if (strcmp(argv[1], "writer") == 0)
        r = cmd_writer(argc - 1, argv + 1);
    else {
        fprintf(stderr, "nnprobe: unknown subcommand '%s'\n", argv[1]);
        r = 2;
    }
    uv_loop_close(&loop);
    return r;
}
