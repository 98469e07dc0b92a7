/*
 * nnlink: see nnlink.h for the states.
 *
 * Every call to the namenode carries the epoch of the registration it
 * belongs to; a reply from an older epoch (the link went down and came back
 * meanwhile) is dropped.
 */
#include "nnlink.h"

#include "checksum.h"
#include "errors.h"
#include "log.h"
#include "rpc.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define REPORT_BATCH     8192
#define CALL_TIMEOUT_MS  10000
#define RETRY_MIN_MS     200
#define RETRY_MAX_MS     5000
#define HEARTBEAT_MIN_MS 100
#define HEARTBEAT_MAX_MS 60000

enum nn_state { NN_DOWN, NN_REGISTERING, NN_REPORTING, NN_UP };

static const char *const state_names[] = {"down", "registering", "reporting", "up"};

struct pending {
    struct replica_info ri;
    bool deleted;
};

struct nnlink {
    struct nnlink_config cfg;
    char *namenode, *addr, *domain;
    rpc_service svc;
    rpc_conn *conn;
    enum nn_state state;
    uint64_t epoch;
    uint64_t node_id;
    uv_timer_t retry;
    uv_timer_t heartbeat;
    uint32_t heartbeat_ms;
    uint32_t retry_ms;
    bool stopped;
    int last_error; /* logged once per change */
    /* The full report being sent. */
    struct replica_info *snap;
    size_t nsnap, sent;
    /* Incremental reports, oldest first; the first `inflight` are sent. */
    struct pending *inc;
    size_t ninc, cap, inflight;
    /* Space, refreshed before each heartbeat. */
    uv_fs_t statfs_req;
    bool statfs_busy;
    uint64_t capacity, used, avail;
    bool full;      /* -ENOSPC since the last heartbeat */
    bool said_full; /* the last heartbeat said full (logged when it changes) */
    bool hb_busy;
    /* The VERSION write of a first registration. */
    uv_work_t id_work;
    struct chunkstore_identity new_id;
    int id_status;
    bool id_busy;
};

/* A call in flight, and what it was about. */
struct call {
    struct nnlink *nn;
    uint64_t epoch;
    size_t n;       /* report batch size */
    bool full_sent; /* heartbeat: announced a full disk */
};

static void do_register(struct nnlink *nn);
static void on_heartbeat(uv_timer_t *t);
static void execute(struct nnlink *nn, Keel__Command **cmds, size_t n);
static void flush_incremental(struct nnlink *nn);

/* ---------------------------------------------------------------- helpers */

static struct call *call_new(struct nnlink *nn)
{
    struct call *c = xcalloc(1, sizeof(*c));

    c->nn = nn;
    c->epoch = nn->epoch;
    return c;
}

/* The reply belongs to a link that no longer exists: drop it. */
static bool stale(const struct call *c)
{
    return c->nn->stopped || c->epoch != c->nn->epoch;
}

static int call(struct nnlink *nn, Keel__Envelope *env, rpc_done_fn cb, struct call *c)
{
    struct rpc_call_opts opts = {.timeout_ms = CALL_TIMEOUT_MS};
    int r = rpc_call(nn->conn, env, RPC_NO_PAYLOAD, &opts, cb, c);

    if (r)
        free(c);
    return r;
}

static void set_state(struct nnlink *nn, enum nn_state s)
{
    if (nn->state != s)
        log_debug("nnlink: %s -> %s", state_names[nn->state], state_names[s]);
    nn->state = s;
}

static void note_error(struct nnlink *nn, const char *what, int err)
{
    if (err != nn->last_error)
        log_warn("nnlink: %s with the namenode at %s failed: %s (retrying)", what, nn->namenode,
                 err_str(err));
    nn->last_error = err;
}

static void on_retry(uv_timer_t *t)
{
    do_register(t->data);
}

/* The link is down: try again after a delay. */
static void link_down(struct nnlink *nn)
{
    if (nn->stopped)
        return;
    nn->epoch++;
    nn->inflight = 0;
    nn->hb_busy = false;
    set_state(nn, NN_DOWN);
    uv_timer_stop(&nn->heartbeat);
    uv_timer_start(&nn->retry, on_retry, nn->retry_ms, 0);
    nn->retry_ms = MIN(nn->retry_ms * 2, RETRY_MAX_MS);
}

static void fatal(struct nnlink *nn, int err, const char *why)
{
    log_error("nnlink: the namenode at %s refuses this datanode: %s", nn->namenode, why);
    nnlink_stop(nn);
    if (nn->cfg.fatal)
        nn->cfg.fatal(nn->cfg.ctx, err, why);
}

static Keel__ReplicaInfo *info_to_wire(const struct replica_info *ri, bool deleted,
                                       Keel__ReplicaInfo *w)
{
    keel__replica_info__init(w);
    w->chunk_id = ri->chunk_id;
    w->version = ri->version;
    w->length = ri->length;
    w->state = deleted       ? KEEL__REPLICA_STATE__REPLICA_DELETED
               : ri->corrupt ? KEEL__REPLICA_STATE__REPLICA_CORRUPT
                             : KEEL__REPLICA_STATE__REPLICA_OK;
    return w;
}

/* ------------------------------------------------------------------ space */

static void space_from(struct nnlink *nn, uint64_t blocks, uint64_t avail_blocks, uint64_t bsize)
{
    uint64_t total = blocks * bsize, avail = avail_blocks * bsize;

    if (nn->cfg.capacity) {
        /* A configured capacity (tests): what replicas hold counts as used. */
        nn->capacity = nn->cfg.capacity;
        nn->used = replicas_bytes(nn->cfg.reps);
        nn->avail = MIN(avail, nn->capacity > nn->used ? nn->capacity - nn->used : 0);
    } else {
        nn->capacity = total;
        nn->used = total > avail ? total - avail : 0;
        nn->avail = avail;
    }
}

static bool looks_full(const struct nnlink *nn)
{
    struct chunkstore_identity id;

    return nn->full ||
           (chunkstore_identity(nn->cfg.cs, &id) && nn->avail < id.chunk_size + (1u << 20));
}

/* ----------------------------------------------------------- registration */

static void start_report(struct nnlink *nn);

static void write_id_work(uv_work_t *w)
{
    struct nnlink *nn = w->data;

    nn->id_status = chunkstore_write_identity(nn->cfg.cs, &nn->new_id);
}

static void write_id_done(uv_work_t *w, int status)
{
    struct nnlink *nn = w->data;

    nn->id_busy = false;
    if (nn->stopped)
        return;
    if (nn->id_status) {
        log_error("nnlink: cannot write %s/VERSION: %s", chunkstore_dir(nn->cfg.cs),
                  err_str(nn->id_status));
        fatal(nn, nn->id_status, "cannot record the identity it gave");
        return;
    }
    chunkstore_adopt_identity(nn->cfg.cs, &nn->new_id);
    log_info("nnlink: joined cluster %s as datanode %" PRIu64 " (chunk size %" PRIu64 ")",
             nn->new_id.cluster_id, nn->new_id.node_id, nn->new_id.chunk_size);
    /* From now on this is a known datanode: register as one. */
    do_register(nn);
}

static void register_done(int status, rpc_msg *msg, void *arg)
{
    struct call *c = arg;
    struct nnlink *nn = c->nn;
    struct chunkstore_identity id;
    const Keel__RegisterRep *rep;

    if (stale(c))
        goto out;
    if (status == -EINVAL) {
        fatal(nn, status, msg && msg->env->error[0] ? msg->env->error : "identity refused");
        goto out;
    }
    if (status == 0 && msg->env->body_case != KEEL__ENVELOPE__BODY_REGISTER_REP)
        status = -EPROTO;
    if (status) {
        note_error(nn, "registration", status);
        link_down(nn);
        goto out;
    }
    rep = msg->env->register_rep;
    nn->heartbeat_ms = rep->heartbeat_ms ? rep->heartbeat_ms : 3000;
    nn->heartbeat_ms = MAX(HEARTBEAT_MIN_MS, MIN(nn->heartbeat_ms, HEARTBEAT_MAX_MS));
    nn->retry_ms = RETRY_MIN_MS;
    nn->last_error = 0;
    if (chunkstore_identity(nn->cfg.cs, &id)) {
        if (strcmp(rep->cluster_id, id.cluster_id) != 0 || rep->node_id != id.node_id ||
            rep->chunk_size != id.chunk_size) {
            fatal(nn, -EINVAL, "its cluster id, node id or chunk size differ from VERSION");
            goto out;
        }
        log_info("nnlink: registered with %s as datanode %" PRIu64, nn->namenode, id.node_id);
        start_report(nn);
        goto out;
    }
    memset(&nn->new_id, 0, sizeof(nn->new_id));
    if (strlen(rep->cluster_id) > CHUNKSTORE_MAX_CLUSTER_ID) {
        fatal(nn, -EINVAL, "cluster id too long");
        goto out;
    }
    snprintf(nn->new_id.cluster_id, sizeof(nn->new_id.cluster_id), "%s", rep->cluster_id);
    nn->new_id.node_id = rep->node_id;
    nn->new_id.chunk_size = rep->chunk_size;
    nn->id_busy = true;
    nn->id_work.data = nn;
    if (uv_queue_work(nn->cfg.loop, &nn->id_work, write_id_work, write_id_done) < 0) {
        nn->id_busy = false;
        fatal(nn, -EIO, "cannot queue the VERSION write");
    }
out:
    free(c);
}

static void do_register(struct nnlink *nn)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__RegisterReq q = KEEL__REGISTER_REQ__INIT;
    struct chunkstore_identity id;
    int r;

    if (nn->stopped || nn->id_busy)
        return; /* write_id_done registers again */
    nn->epoch++;
    nn->inflight = 0;
    nn->hb_busy = false;
    uv_timer_stop(&nn->heartbeat);
    set_state(nn, NN_REGISTERING);
    if (chunkstore_identity(nn->cfg.cs, &id)) {
        q.cluster_id = id.cluster_id;
        q.node_id = id.node_id;
    } else {
        q.cluster_id = (char *)"";
    }
    q.addr = nn->addr;
    q.domain = nn->domain;
    q.capacity = nn->capacity;
    q.used = nn->used;
    env.body_case = KEEL__ENVELOPE__BODY_REGISTER_REQ;
    env.register_req = &q;
    r = call(nn, &env, register_done, call_new(nn));
    if (r) {
        note_error(nn, "registration", r);
        link_down(nn);
    }
}

/* ------------------------------------------------------------ block reports */

static void send_batch(struct nnlink *nn);

static void report_done(int status, rpc_msg *msg, void *arg)
{
    struct call *c = arg;
    struct nnlink *nn = c->nn;

    if (stale(c))
        goto out;
    if (status == 0 && msg->env->body_case != KEEL__ENVELOPE__BODY_BLOCK_REPORT_REP)
        status = -EPROTO;
    if (status) {
        note_error(nn, "block report", status);
        link_down(nn);
        goto out;
    }
    nn->sent += c->n;
    execute(nn, msg->env->block_report_rep->commands, msg->env->block_report_rep->n_commands);
    if (nn->stopped || stale(c))
        goto out;
    if (nn->sent < nn->nsnap) {
        send_batch(nn);
        goto out;
    }
    log_info("nnlink: block report of %zu replicas sent", nn->nsnap);
    free(nn->snap);
    nn->snap = NULL;
    set_state(nn, NN_UP);
    uv_timer_start(&nn->heartbeat, on_heartbeat, nn->heartbeat_ms, nn->heartbeat_ms);
    flush_incremental(nn);
out:
    free(c);
}

static void send_batch(struct nnlink *nn)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__BlockReportReq q = KEEL__BLOCK_REPORT_REQ__INIT;
    size_t n = MIN((size_t)REPORT_BATCH, nn->nsnap - nn->sent);
    Keel__ReplicaInfo *infos = xmalloc((n ? n : 1) * sizeof(*infos));
    Keel__ReplicaInfo **ptrs = xmalloc((n ? n : 1) * sizeof(*ptrs));
    struct call *c = call_new(nn);
    int r;

    for (size_t i = 0; i < n; i++)
        ptrs[i] = info_to_wire(&nn->snap[nn->sent + i], false, &infos[i]);
    q.node_id = nn->node_id;
    q.full = true;
    q.first = nn->sent == 0;
    q.last = nn->sent + n == nn->nsnap;
    q.n_replicas = n;
    q.replicas = ptrs;
    env.body_case = KEEL__ENVELOPE__BODY_BLOCK_REPORT_REQ;
    env.block_report_req = &q;
    c->n = n;
    r = call(nn, &env, report_done, c);
    free(infos);
    free(ptrs);
    if (r) {
        note_error(nn, "block report", r);
        link_down(nn);
    }
}

static void start_report(struct nnlink *nn)
{
    struct chunkstore_identity id;

    chunkstore_identity(nn->cfg.cs, &id);
    nn->node_id = id.node_id;
    set_state(nn, NN_REPORTING);
    /* The full report says all the queued increments would. */
    nn->ninc = 0;
    free(nn->snap);
    nn->nsnap = replicas_snapshot(nn->cfg.reps, &nn->snap);
    nn->sent = 0;
    send_batch(nn);
}

static void incremental_done(int status, rpc_msg *msg, void *arg)
{
    struct call *c = arg;
    struct nnlink *nn = c->nn;

    if (stale(c))
        goto out;
    if (status == 0 && msg->env->body_case != KEEL__ENVELOPE__BODY_BLOCK_REPORT_REP)
        status = -EPROTO;
    if (status) {
        note_error(nn, "incremental report", status);
        link_down(nn);
        goto out;
    }
    memmove(nn->inc, nn->inc + c->n, (nn->ninc - c->n) * sizeof(*nn->inc));
    nn->ninc -= c->n;
    nn->inflight = 0;
    execute(nn, msg->env->block_report_rep->commands, msg->env->block_report_rep->n_commands);
    flush_incremental(nn);
out:
    free(c);
}

static void flush_incremental(struct nnlink *nn)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__BlockReportReq q = KEEL__BLOCK_REPORT_REQ__INIT;
    Keel__ReplicaInfo *infos, **ptrs;
    struct call *c;
    size_t n;
    int r;

    if (nn->stopped || nn->state != NN_UP || nn->inflight || nn->ninc == 0)
        return;
    n = MIN(nn->ninc, (size_t)REPORT_BATCH);
    infos = xmalloc(n * sizeof(*infos));
    ptrs = xmalloc(n * sizeof(*ptrs));
    for (size_t i = 0; i < n; i++)
        ptrs[i] = info_to_wire(&nn->inc[i].ri, nn->inc[i].deleted, &infos[i]);
    q.node_id = nn->node_id;
    q.n_replicas = n;
    q.replicas = ptrs;
    env.body_case = KEEL__ENVELOPE__BODY_BLOCK_REPORT_REQ;
    env.block_report_req = &q;
    c = call_new(nn);
    c->n = n;
    nn->inflight = n;
    r = call(nn, &env, incremental_done, c);
    free(infos);
    free(ptrs);
    if (r) {
        note_error(nn, "incremental report", r);
        link_down(nn);
    }
}

void nnlink_report(struct nnlink *nn, const struct replica_info *ri, bool deleted)
{
    if (nn->stopped)
        return;
    if (nn->ninc == nn->cap) {
        nn->cap = nn->cap ? nn->cap * 2 : 64;
        nn->inc = xrealloc(nn->inc, nn->cap * sizeof(*nn->inc));
    }
    nn->inc[nn->ninc].ri = *ri;
    nn->inc[nn->ninc].deleted = deleted;
    nn->ninc++;
    log_info("nnlink: reporting chunk %016" PRIx64 " version %" PRIu64 " %s", ri->chunk_id,
             ri->version,
             deleted       ? "deleted"
             : ri->corrupt ? "corrupt"
                           : "present");
    flush_incremental(nn);
}

/* -------------------------------------------------------------- heartbeat */

static void heartbeat_done(int status, rpc_msg *msg, void *arg)
{
    struct call *c = arg;
    struct nnlink *nn = c->nn;
    const Keel__HeartbeatRep *rep;

    if (stale(c))
        goto out;
    nn->hb_busy = false;
    if (status == 0 && msg->env->body_case != KEEL__ENVELOPE__BODY_HEARTBEAT_REP)
        status = -EPROTO;
    if (status) {
        note_error(nn, "heartbeat", status);
        link_down(nn);
        goto out;
    }
    if (c->full_sent)
        nn->full = false;
    rep = msg->env->heartbeat_rep;
    if (rep->reregister) {
        log_info("nnlink: the namenode asks this datanode to register again");
        do_register(nn);
        goto out;
    }
    execute(nn, rep->commands, rep->n_commands);
out:
    free(c);
}

static void send_heartbeat(struct nnlink *nn)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HeartbeatReq q = KEEL__HEARTBEAT_REQ__INIT;
    struct call *c;

    if (nn->stopped || nn->state != NN_UP || nn->hb_busy)
        return;
    q.node_id = nn->node_id;
    q.capacity = nn->capacity;
    q.used = nn->used;
    q.load = nn->cfg.load ? nn->cfg.load(nn->cfg.ctx) : 0;
    q.copies = nn->cfg.copies ? nn->cfg.copies(nn->cfg.ctx) : 0;
    q.full = looks_full(nn);
    if (q.full != nn->said_full) {
        if (q.full)
            log_warn("nnlink: %" PRIu64 " bytes left on the disk: reporting it full", nn->avail);
        else
            log_info("nnlink: %" PRIu64 " bytes free on the disk: no longer full", nn->avail);
        nn->said_full = q.full;
    }
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT_REQ;
    env.heartbeat_req = &q;
    c = call_new(nn);
    c->full_sent = nn->full;
    nn->hb_busy = true;
    if (call(nn, &env, heartbeat_done, c)) {
        nn->hb_busy = false;
        link_down(nn);
    }
}

static void statfs_done(uv_fs_t *req)
{
    struct nnlink *nn = req->data;
    const uv_statfs_t *st = req->ptr;

    nn->statfs_busy = false;
    if (req->result == 0 && st)
        space_from(nn, st->f_blocks, st->f_bavail, st->f_bsize);
    else
        log_warn("nnlink: statfs of %s: %s", chunkstore_dir(nn->cfg.cs),
                 uv_strerror((int)req->result));
    uv_fs_req_cleanup(req);
    send_heartbeat(nn);
}

static void on_heartbeat(uv_timer_t *t)
{
    struct nnlink *nn = t->data;

    if (nn->stopped || nn->statfs_busy)
        return;
    nn->statfs_busy = true;
    nn->statfs_req.data = nn;
    if (uv_fs_statfs(nn->cfg.loop, &nn->statfs_req, chunkstore_dir(nn->cfg.cs), statfs_done) < 0) {
        nn->statfs_busy = false;
        send_heartbeat(nn);
    }
}

void nnlink_disk_error(struct nnlink *nn, int err)
{
    if (err == -ENOSPC && !nn->full) {
        log_warn("nnlink: disk full; telling the namenode in the next heartbeat");
        nn->full = true;
    }
}

/* --------------------------------------------------------------- commands */

struct cmd_ctx {
    struct nnlink *nn;
    const char *name;
    uint64_t chunk_id;
};

static void command_done(int status, struct replicas_result *res, void *arg)
{
    struct cmd_ctx *cc = arg;
    struct nnlink *nn = cc->nn;

    if (status) {
        log_warn("nnlink: command %s on chunk %016" PRIx64 " failed: %s", cc->name, cc->chunk_id,
                 err_str(status));
        /* The namenode's idea of this replica is wrong: tell it the truth. */
        if (status == -ESTALE && !nn->stopped)
            nnlink_report(nn, &res->info, false);
    }
    free(cc);
}

static struct cmd_ctx *cmd_ctx(struct nnlink *nn, const char *name, uint64_t chunk_id)
{
    struct cmd_ctx *cc = xmalloc(sizeof(*cc));

    cc->nn = nn;
    cc->name = name;
    cc->chunk_id = chunk_id;
    return cc;
}

static int cmd_delete(struct nnlink *nn, const Keel__Command *cmd, const char *name)
{
    struct cmd_ctx *cc = cmd_ctx(nn, name, cmd->chunk_id);
    int r = replicas_delete(nn->cfg.reps, cmd->chunk_id, cmd->version, REPLICAS_REPORT,
                            command_done, cc);

    if (r)
        free(cc);
    if (r == -ENOENT) {
        /* Already gone: make sure the namenode knows. */
        struct replica_info ri = {cmd->chunk_id, cmd->version, 0, false};

        nnlink_report(nn, &ri, true);
        r = 0;
    }
    return r;
}

static int cmd_set_version(struct nnlink *nn, const Keel__Command *cmd, const char *name)
{
    struct cmd_ctx *cc = cmd_ctx(nn, name, cmd->chunk_id);
    int r = replicas_set_version(nn->cfg.reps, cmd->chunk_id, 0, cmd->version, REPLICAS_REPORT,
                                 command_done, cc);

    if (r)
        free(cc);
    return r;
}

static int cmd_trim(struct nnlink *nn, const Keel__Command *cmd, const char *name)
{
    struct cmd_ctx *cc = cmd_ctx(nn, name, cmd->chunk_id);
    int r = replicas_trim(nn->cfg.reps, cmd->chunk_id, cmd->version, cmd->version, cmd->length,
                          REPLICAS_REPORT, command_done, cc);

    if (r)
        free(cc);
    return r;
}

/* The copy reports through nnlink_replicate_done, also when it cannot start. */
static int cmd_replicate(struct nnlink *nn, const Keel__Command *cmd, const char *name)
{
    const Keel__Replica *t = cmd->target;
    struct replicate_outcome o = {cmd->chunk_id, cmd->version, t ? t->node_id : 0, 0, 0, 0,
                                  cmd->fuzzy};

    o.status = replicate_start(nn->cfg.repl, cmd->chunk_id, cmd->version, o.target,
                               t ? t->addr : NULL, cmd->delta, cmd->fuzzy);
    if (o.status == -EALREADY)
        return 0; /* the same copy is running */
    if (o.status)
        nnlink_replicate_done(nn, &o);
    return o.status;
}

struct command {
    Keel__CommandKind kind;
    const char *name;
    int (*fn)(struct nnlink *nn, const Keel__Command *cmd, const char *name);
};

static const struct command commands[] = {
    {KEEL__COMMAND_KIND__CMD_DELETE, "delete", cmd_delete},
    {KEEL__COMMAND_KIND__CMD_SET_VERSION, "set-version", cmd_set_version},
    {KEEL__COMMAND_KIND__CMD_TRIM, "trim", cmd_trim},
    {KEEL__COMMAND_KIND__CMD_REPLICATE, "replicate", cmd_replicate},
};

static const struct command *find_command(Keel__CommandKind kind)
{
    for (size_t k = 0; k < ARRAY_SIZE(commands); k++)
        if (commands[k].kind == kind)
            return &commands[k];
    return NULL;
}

static void execute(struct nnlink *nn, Keel__Command **cmds, size_t n)
{
    for (size_t i = 0; i < n && !nn->stopped; i++) {
        const Keel__Command *cmd = cmds[i];
        const struct command *c = find_command(cmd->kind);
        int r;

        if (!c) {
            if (cmd->kind != KEEL__COMMAND_KIND__CMD_NONE)
                log_warn("nnlink: unknown command kind %d ignored", (int)cmd->kind);
            continue;
        }
        log_debug("nnlink: command %s chunk %016" PRIx64 " version %" PRIu64, c->name,
                  cmd->chunk_id, cmd->version);
        r = c->fn(nn, cmd, c->name);
        if (r)
            log_warn("nnlink: command %s on chunk %016" PRIx64 ": %s", c->name, cmd->chunk_id,
                     err_str(r));
    }
}

static void replicate_done_reply(int status, rpc_msg *msg, void *arg)
{
    struct call *c = arg;

    if (status && !c->nn->stopped)
        log_warn("nnlink: ReplicateDone not delivered: %s", err_str(status));
    free(c);
}

void nnlink_replicate_done(struct nnlink *nn, const struct replicate_outcome *o)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReplicateDoneReq q = KEEL__REPLICATE_DONE_REQ__INIT;

    if (nn->stopped)
        return;
    q.node_id = nn->node_id;
    q.chunk_id = o->chunk_id;
    q.version = o->version;
    q.target = o->target;
    q.status = err_to_wire(o->status);
    q.bytes_sent = o->bytes_sent;
    q.bytes_saved = o->bytes_saved;
    q.fuzzy = o->fuzzy;
    env.body_case = KEEL__ENVELOPE__BODY_REPLICATE_DONE_REQ;
    env.replicate_done_req = &q;
    call(nn, &env, replicate_done_reply, call_new(nn));
}

/* ---------------------------------------------- the namenode's calls to us */

static void fill_replica(Keel__ReplicaInfo *w, const struct replica_info *ri)
{
    info_to_wire(ri, false, w);
}

static void create_done(int status, struct replicas_result *res, void *arg)
{
    rpc_req *req = arg;

    if (status) {
        rpc_reply_error(req, status, "create chunk %016" PRIx64 ": %s",
                        req->env->create_replica_req->chunk_id, err_str(status));
        return;
    }
    log_debug("nnlink: created chunk %016" PRIx64 " version %" PRIu64, res->info.chunk_id,
              res->info.version);
    {
        Keel__Envelope rep = KEEL__ENVELOPE__INIT;
        Keel__CreateReplicaRep body = KEEL__CREATE_REPLICA_REP__INIT;

        rep.body_case = KEEL__ENVELOPE__BODY_CREATE_REPLICA_REP;
        rep.create_replica_rep = &body;
        rpc_reply(req, &rep, RPC_NO_PAYLOAD);
    }
}

static void h_create(rpc_req *req, void *ctx)
{
    struct nnlink *nn = ctx;
    const Keel__CreateReplicaReq *q = req->env->create_replica_req;
    int r = replicas_create(nn->cfg.reps, q->chunk_id, q->version, create_done, req);

    if (r)
        rpc_reply_error(req, r, "create chunk %016" PRIx64 ": %s", q->chunk_id, err_str(r));
}

static void set_version_done(int status, struct replicas_result *res, void *arg)
{
    rpc_req *req = arg;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__SetVersionRep body = KEEL__SET_VERSION_REP__INIT;
    Keel__ReplicaInfo ri;

    if (status) {
        rpc_reply_error(req, status, "set version of chunk %016" PRIx64 " (at %" PRIu64 "): %s",
                        req->env->set_version_req->chunk_id, res->info.version, err_str(status));
        return;
    }
    fill_replica(&ri, &res->info);
    body.replica = &ri;
    rep.body_case = KEEL__ENVELOPE__BODY_SET_VERSION_REP;
    rep.set_version_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void h_set_version(rpc_req *req, void *ctx)
{
    struct nnlink *nn = ctx;
    const Keel__SetVersionReq *q = req->env->set_version_req;
    int r;

    if (q->version == 0 || q->new_version == 0) {
        rpc_reply_error(req, -EINVAL, "versions start at 1");
        return;
    }
    r = replicas_set_version(nn->cfg.reps, q->chunk_id, q->version, q->new_version, 0,
                             set_version_done, req);
    if (r)
        rpc_reply_error(req, r, "set version of chunk %016" PRIx64 ": %s", q->chunk_id, err_str(r));
}

static void trim_done(int status, struct replicas_result *res, void *arg)
{
    rpc_req *req = arg;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__TrimReplicaRep body = KEEL__TRIM_REPLICA_REP__INIT;
    Keel__ReplicaInfo ri;

    if (status) {
        rpc_reply_error(req, status, "trim of chunk %016" PRIx64 ": %s",
                        req->env->trim_replica_req->chunk_id, err_str(status));
        return;
    }
    fill_replica(&ri, &res->info);
    body.replica = &ri;
    rep.body_case = KEEL__ENVELOPE__BODY_TRIM_REPLICA_REP;
    rep.trim_replica_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void h_trim(rpc_req *req, void *ctx)
{
    struct nnlink *nn = ctx;
    const Keel__TrimReplicaReq *q = req->env->trim_replica_req;
    int r;

    if (q->version == 0 || q->new_version == 0) {
        rpc_reply_error(req, -EINVAL, "versions start at 1");
        return;
    }
    r = replicas_trim(nn->cfg.reps, q->chunk_id, q->version, q->new_version, q->length, 0,
                      trim_done, req);
    if (r)
        rpc_reply_error(req, r, "trim of chunk %016" PRIx64 ": %s", q->chunk_id, err_str(r));
}

/* Commands pushed at once instead of in a heartbeat reply: run exactly like
 * those; the answer says they were taken, not that they are done. */
static void h_command(rpc_req *req, void *ctx)
{
    struct nnlink *nn = ctx;
    const Keel__CommandReq *q = req->env->command_req;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__CommandRep body = KEEL__COMMAND_REP__INIT;

    if (nn->stopped) {
        rpc_reply_error(req, -ECANCELED, "shutting down");
        return;
    }
    execute(nn, q->commands, q->n_commands);
    rep.body_case = KEEL__ENVELOPE__BODY_COMMAND_REP;
    rep.command_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static const rpc_handler handlers[] = {
    {KEEL__ENVELOPE__BODY_CREATE_REPLICA_REQ, "create-replica", h_create},
    {KEEL__ENVELOPE__BODY_SET_VERSION_REQ, "set-version", h_set_version},
    {KEEL__ENVELOPE__BODY_TRIM_REPLICA_REQ, "trim-replica", h_trim},
    {KEEL__ENVELOPE__BODY_COMMAND_REQ, "command", h_command},
};

static void on_conn_close(rpc_conn *c, int err, void *ctx)
{
    struct nnlink *nn = ctx;

    if (nn->stopped || nn->state == NN_DOWN)
        return;
    note_error(nn, "the connection", err ? err : -ECONNRESET);
    link_down(nn);
}

/* ------------------------------------------------------------------ life */

int nnlink_start(const struct nnlink_config *cfg, struct nnlink **out)
{
    struct nnlink *nn = xcalloc(1, sizeof(*nn));
    struct rpc_opts opts = {
        .call_timeout_ms = CALL_TIMEOUT_MS, .backoff_min_ms = 100, .backoff_max_ms = 2000};
    struct statvfs sv;
    int r;

    nn->cfg = *cfg;
    nn->namenode = xstrdup(cfg->namenode);
    nn->addr = xstrdup(cfg->addr);
    nn->domain = xstrdup(cfg->domain);
    nn->svc.handlers = handlers;
    nn->svc.nhandlers = ARRAY_SIZE(handlers);
    nn->svc.ctx = nn;
    nn->svc.on_close = on_conn_close;
    nn->retry_ms = RETRY_MIN_MS;
    r = rpc_connect(cfg->loop, cfg->namenode, &nn->svc, &opts, &nn->conn);
    if (r) {
        free(nn->namenode);
        free(nn->addr);
        free(nn->domain);
        free(nn);
        return r;
    }
    uv_timer_init(cfg->loop, &nn->retry);
    uv_timer_init(cfg->loop, &nn->heartbeat);
    nn->retry.data = nn;
    nn->heartbeat.data = nn;
    /* The first figures for registration; later ones come asynchronously. */
    if (statvfs(chunkstore_dir(cfg->cs), &sv) == 0)
        space_from(nn, sv.f_blocks, sv.f_bavail, sv.f_frsize);
    do_register(nn);
    *out = nn;
    return 0;
}

void nnlink_stop(struct nnlink *nn)
{
    if (nn->stopped)
        return;
    nn->stopped = true;
    uv_close((uv_handle_t *)&nn->retry, NULL);
    uv_close((uv_handle_t *)&nn->heartbeat, NULL);
    rpc_conn_close(nn->conn);
    nn->conn = NULL;
}

void nnlink_free(struct nnlink *nn)
{
    if (!nn)
        return;
    free(nn->snap);
    free(nn->inc);
    free(nn->namenode);
    free(nn->addr);
    free(nn->domain);
    free(nn);
}
