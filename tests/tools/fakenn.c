/*
 * fakenn: a stand-in namenode for datanode tests that need commands the
 * real namenode does not send yet (CMD_REPLICATE) or needs to time
 * precisely. It registers datanodes, takes their reports and heartbeats,
 * and obeys a control file the test appends lines to:
 *
 *   create NODE CHUNK VERSION              CreateReplicaReq to NODE
 *   setversion NODE CHUNK FROM TO          SetVersionReq to NODE
 *   replicate NODE CHUNK VERSION TARGET [delta|fuzzy] [push]
 *                                          CMD_REPLICATE in NODE's next heartbeat reply
 *                                          (push: in a CommandReq at once; delta: the
 *                                          target holds an older replica; fuzzy:
 *                                          writes may go on during the copy)
 *   delete NODE CHUNK VERSION [push]       CMD_DELETE, likewise
 *
 * and prints one line per event on stdout for the test to wait on:
 *
 *   registered NODE ADDR
 *   full-report NODE REPLICAS
 *   report NODE CHUNK VERSION LENGTH ok|corrupt|deleted
 *   create-done NODE CHUNK STATUS          (STATUS: 0 or a negative errno)
 *   setversion-done NODE CHUNK STATUS
 *   replicate-done NODE CHUNK VERSION TARGET STATUS BYTES_SENT BYTES_SAVED [fuzzy]
 *   command-done NODE CHUNK STATUS         (the answer to a CommandReq)
 *   full NODE                              (a heartbeat said the disk is full)
 *
 *   fakenn --dir D --control FILE [--chunk-size 4M] [--heartbeat 100]
 *
 * The bound address goes to D/listen.addr. SIGTERM or SIGINT ends it.
 */
#include "errors.h"
#include "flags.h"
#include "log.h"
#include "rpc.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES  16
#define MAX_QUEUED 32

struct node {
    uint64_t id;
    char addr[64];
    rpc_conn *conn;
    Keel__Command *queued[MAX_QUEUED];
    int nqueued;
    bool full;
};

static struct {
    uv_loop_t loop;
    rpc_server *server;
    struct node nodes[MAX_NODES + 1];
    uint64_t next_id;
    uint64_t chunk_size;
    uint64_t heartbeat_ms;
    const char *control;
    long control_off;
    uv_timer_t poll;
    uv_signal_t term, intr;
} nn;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static struct node *node_of(rpc_conn *c)
{
    for (int i = 1; i <= MAX_NODES; i++)
        if (nn.nodes[i].conn == c)
            return &nn.nodes[i];
    return NULL;
}

static void free_command(Keel__Command *c)
{
    if (c->target) {
        free(c->target->addr);
        free(c->target);
    }
    free(c);
}

/* ---------------------------------------------------------- datanode calls */

static void h_register(rpc_req *req, void *ctx)
{
    const Keel__RegisterReq *q = req->env->register_req;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__RegisterRep body = KEEL__REGISTER_REP__INIT;
    uint64_t id = q->node_id ? q->node_id : ++nn.next_id;
    struct node *n;

    if (id > MAX_NODES || (q->cluster_id[0] && strcmp(q->cluster_id, "fake-cluster") != 0)) {
        rpc_reply_error(req, -EINVAL, "unknown node or cluster");
        return;
    }
    n = &nn.nodes[id];
    n->id = id;
    snprintf(n->addr, sizeof(n->addr), "%s", q->addr);
    if (n->conn != req->conn) {
        if (n->conn)
            rpc_conn_unref(n->conn);
        rpc_conn_ref(req->conn);
        n->conn = req->conn;
    }
    body.cluster_id = (char *)"fake-cluster";
    body.node_id = id;
    body.chunk_size = nn.chunk_size;
    body.heartbeat_ms = (uint32_t)nn.heartbeat_ms;
    rep.body_case = KEEL__ENVELOPE__BODY_REGISTER_REP;
    rep.register_rep = &body;
    if (q->node_id)
        say("registered %" PRIu64 " %s", id, q->addr);
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void h_heartbeat(rpc_req *req, void *ctx)
{
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__HeartbeatRep body = KEEL__HEARTBEAT_REP__INIT;
    struct node *n = node_of(req->conn);
    int k = n ? n->nqueued : 0;

    if (n && req->env->heartbeat_req->full && !n->full)
        say("full %" PRIu64, n->id);
    if (n)
        n->full = req->env->heartbeat_req->full;
    body.n_commands = (size_t)k;
    body.commands = n ? n->queued : NULL;
    body.reregister = n == NULL;
    rep.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT_REP;
    rep.heartbeat_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
    for (int i = 0; i < k; i++)
        free_command(n->queued[i]);
    if (n)
        n->nqueued = 0;
}

static void h_block_report(rpc_req *req, void *ctx)
{
    static const char *const states[] = {"ok", "corrupt", "deleted"};
    const Keel__BlockReportReq *q = req->env->block_report_req;
    Keel__Envelope rep = KEEL__ENVELOPE__INIT;
    Keel__BlockReportRep body = KEEL__BLOCK_REPORT_REP__INIT;

    if (q->full && q->last)
        say("full-report %" PRIu64 " %zu", q->node_id, q->n_replicas);
    for (size_t i = 0; i < q->n_replicas; i++) {
        const Keel__ReplicaInfo *ri = q->replicas[i];

        if (!q->full)
            say("report %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %s", q->node_id,
                ri->chunk_id, ri->version, ri->length, states[ri->state % 3]);
    }
    rep.body_case = KEEL__ENVELOPE__BODY_BLOCK_REPORT_REP;
    rep.block_report_rep = &body;
    rpc_reply(req, &rep, RPC_NO_PAYLOAD);
}

static void h_replicate_done(rpc_req *req, void *ctx)
{
    const Keel__ReplicateDoneReq *q = req->env->replicate_done_req;

    say("replicate-done %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %" PRIu64 " %" PRIu64
        "%s",
        q->node_id, q->chunk_id, q->version, q->target, err_from_wire(q->status), q->bytes_sent,
        q->bytes_saved, q->fuzzy ? " fuzzy" : "");
    rpc_reply(req, NULL, RPC_NO_PAYLOAD);
}

static const rpc_handler handlers[] = {
    {KEEL__ENVELOPE__BODY_REGISTER_REQ, "register", h_register},
    {KEEL__ENVELOPE__BODY_HEARTBEAT_REQ, "heartbeat", h_heartbeat},
    {KEEL__ENVELOPE__BODY_BLOCK_REPORT_REQ, "block-report", h_block_report},
    {KEEL__ENVELOPE__BODY_REPLICATE_DONE_REQ, "replicate-done", h_replicate_done},
};

static rpc_service service = {handlers, ARRAY_SIZE(handlers), NULL, NULL, NULL};

/* ------------------------------------------------------------ control file */

struct sync_call {
    const char *what;
    uint64_t node, chunk;
};

static void sync_done(int status, rpc_msg *m, void *arg)
{
    struct sync_call *sc = arg;

    say("%s-done %" PRIu64 " %" PRIu64 " %d", sc->what, sc->node, sc->chunk, status);
    free(sc);
}

static void call_node(uint64_t node, Keel__Envelope *env, const char *what, uint64_t chunk)
{
    struct sync_call *sc = xmalloc(sizeof(*sc));

    sc->what = what;
    sc->node = node;
    sc->chunk = chunk;
    if (node == 0 || node > MAX_NODES || !nn.nodes[node].conn ||
        rpc_call(nn.nodes[node].conn, env, RPC_NO_PAYLOAD, NULL, sync_done, sc)) {
        say("%s-done %" PRIu64 " %" PRIu64 " %d", what, node, chunk, -ENOTCONN);
        free(sc);
    }
}

/* A command for NODE: queued for its next heartbeat reply, or pushed now. */
static void queue_command(uint64_t node, Keel__CommandKind kind, uint64_t chunk, uint64_t version,
                          uint64_t target, bool delta, bool fuzzy, bool push)
{
    struct node *n = node && node <= MAX_NODES ? &nn.nodes[node] : NULL;
    Keel__Command *c;

    if (!n || n->nqueued == MAX_QUEUED ||
        (target && (target > MAX_NODES || !nn.nodes[target].id))) {
        say("error cannot queue a command for node %" PRIu64, node);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    keel__command__init(c);
    c->kind = kind;
    c->chunk_id = chunk;
    c->version = version;
    c->delta = delta;
    c->fuzzy = fuzzy;
    if (target) {
        c->target = xcalloc(1, sizeof(*c->target));
        keel__replica__init(c->target);
        c->target->node_id = target;
        c->target->addr = xstrdup(nn.nodes[target].addr);
        c->target->domain = (char *)"";
    }
    if (push) {
        Keel__Envelope env = KEEL__ENVELOPE__INIT;
        Keel__CommandReq q = KEEL__COMMAND_REQ__INIT;

        q.n_commands = 1;
        q.commands = &c;
        env.body_case = KEEL__ENVELOPE__BODY_COMMAND_REQ;
        env.command_req = &q;
        call_node(node, &env, "command", chunk);
        free_command(c);
        return;
    }
    n->queued[n->nqueued++] = c;
}

/* True if the control line has the word w after its command. */
static bool has_word(const char *line, const char *w)
{
    size_t n = strlen(w);

    for (const char *p = strchr(line, ' '); p; p = strchr(p + 1, ' '))
        if (strncmp(p + 1, w, n) == 0 && (p[1 + n] == ' ' || p[1 + n] == '\n' || !p[1 + n]))
            return true;
    return false;
}

static void run_line(const char *line)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    char cmd[32];

    if (sscanf(line, "%31s %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, cmd, &a, &b, &c, &d) < 1)
        return;
    if (strcmp(cmd, "create") == 0) {
        Keel__CreateReplicaReq q = KEEL__CREATE_REPLICA_REQ__INIT;

        q.chunk_id = b;
        q.version = c;
        env.body_case = KEEL__ENVELOPE__BODY_CREATE_REPLICA_REQ;
        env.create_replica_req = &q;
        call_node(a, &env, "create", b);
    } else if (strcmp(cmd, "setversion") == 0) {
        Keel__SetVersionReq q = KEEL__SET_VERSION_REQ__INIT;

        q.chunk_id = b;
        q.version = c;
        q.new_version = d;
        env.body_case = KEEL__ENVELOPE__BODY_SET_VERSION_REQ;
        env.set_version_req = &q;
        call_node(a, &env, "setversion", b);
    } else if (strcmp(cmd, "replicate") == 0) {
        queue_command(a, KEEL__COMMAND_KIND__CMD_REPLICATE, b, c, d, has_word(line, "delta"),
                      has_word(line, "fuzzy"), has_word(line, "push"));
    } else if (strcmp(cmd, "delete") == 0) {
        queue_command(a, KEEL__COMMAND_KIND__CMD_DELETE, b, c, 0, false, false,
                      has_word(line, "push"));
    } else {
        say("error unknown control line: %s", line);
    }
}

/* Runs the control file's complete lines added since the last poll. */
static void on_poll(uv_timer_t *t)
{
    char line[256];
    FILE *f = fopen(nn.control, "r");

    if (!f)
        return;
    if (fseek(f, nn.control_off, SEEK_SET) == 0) {
        while (fgets(line, sizeof(line), f) && strchr(line, '\n')) {
            nn.control_off += (long)strlen(line);
            run_line(line);
        }
    }
    fclose(f);
}

/* ------------------------------------------------------------------- main */

static void on_signal(uv_signal_t *h, int signum)
{
    for (int i = 1; i <= MAX_NODES; i++) {
        if (nn.nodes[i].conn)
            rpc_conn_unref(nn.nodes[i].conn);
        nn.nodes[i].conn = NULL;
        for (int k = 0; k < nn.nodes[i].nqueued; k++)
            free_command(nn.nodes[i].queued[k]);
        nn.nodes[i].nqueued = 0;
    }
    rpc_server_close(nn.server);
    uv_close((uv_handle_t *)&nn.poll, NULL);
    uv_close((uv_handle_t *)&nn.term, NULL);
    uv_close((uv_handle_t *)&nn.intr, NULL);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    char addr[64], path[4096];
    const struct flag flags[] = {
        {"dir", FLAG_STRING, &dir, "directory for listen.addr"},
        {"control", FLAG_STRING, &nn.control, "control file to follow"},
        {"chunk-size", FLAG_SIZE, &nn.chunk_size, "chunk size given to datanodes"},
        {"heartbeat", FLAG_UINT, &nn.heartbeat_ms, "heartbeat interval, ms"},
    };
    const struct flags_spec spec = {"fakenn",
                                    "--dir D --control FILE [options]",
                                    "A scripted namenode for datanode tests.",
                                    flags,
                                    (int)ARRAY_SIZE(flags),
                                    false};
    int first, r;

    nn.chunk_size = 4u << 20;
    nn.heartbeat_ms = 100;
    log_init("fakenn", LOG_WARN);
    r = flags_parse(&spec, argc, argv, &first);
    if (r)
        return r == 1 ? 0 : 2;
    if (!dir || !nn.control) {
        fprintf(stderr, "fakenn: --dir and --control are required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&nn.loop);
    r = rpc_listen(&nn.loop, "127.0.0.1:0", &service, NULL, &nn.server);
    if (r) {
        fprintf(stderr, "fakenn: listen: %s\n", err_str(r));
        return 1;
    }
    rpc_server_addr(nn.server, addr, sizeof(addr));
    snprintf(path, sizeof(path), "%s/listen.addr", dir);
    if (write_file_atomic(path, addr, strlen(addr))) {
        fprintf(stderr, "fakenn: cannot write %s\n", path);
        return 1;
    }
    uv_timer_init(&nn.loop, &nn.poll);
    uv_timer_start(&nn.poll, on_poll, 50, 50);
    uv_signal_init(&nn.loop, &nn.term);
    uv_signal_init(&nn.loop, &nn.intr);
    uv_signal_start(&nn.term, on_signal, SIGTERM);
    uv_signal_start(&nn.intr, on_signal, SIGINT);
    uv_run(&nn.loop, UV_RUN_DEFAULT);
    uv_loop_close(&nn.loop);
    return 0;
}
