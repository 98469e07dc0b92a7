/*
 * Unit tests for namenode/repair against fake datanodes served over real
 * RPC on 127.0.0.1 in this process: a lost replica is copied from a
 * survivor to a node in a fresh domain, pushed with CommandReq; a stale
 * holder gets a delta copy; a file someone may write is moved to a new
 * version first and copied at it, fuzzily (writers go on), then by a delta
 * during which it is "copying"; a failed copy
 * goes to another target; no node sends or receives more than the stream
 * limit; an extra replica is trimmed; nothing happens in safe mode; and a
 * decommissioning node drains (progress counted) and is marked
 * decommissioned, then recommissioned.
 */
#include "chunkctl.h"
#include "chunkmap.h"
#include "commit.h"
#include "lease.h"
#include "nstree.h"
#include "registry.h"
#include "repair.h"
#include "safemode.h"
#include "store.h"
#include "util.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NDN     5
#define CS      (1u << 20)
#define STREAMS 2u
#define MAXCMD  256

struct fake_dn {
    rpc_server *srv;
    char addr[64];
    rpc_conn *conn;
    int fail; /* answer SetVersion with this */
    int set_versions;
};

struct cmd_rec {
    uint64_t node, chunk, version, target;
    bool delta, fuzzy;
};

static struct fake_dn dns[NDN];
static rpc_service dn_svc[NDN];
static struct cmd_rec cmds[MAXCMD];
static size_t ncmds;
static uv_loop_t loop;
static char dir[256];
static struct store *st;
static struct commit *cm;
static struct registry *reg;
static struct chunkmap *map;
static struct chunkctl *ctl;
static struct lease_table *leases;
static struct safemode safe;
static struct repair *rp;
static uint64_t file_ino;

/* ------------------------------------------------------ fake datanodes */

static void dn_create(rpc_req *req, void *ctx)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CreateReplicaRep rep = KEEL__CREATE_REPLICA_REP__INIT;

    env.body_case = KEEL__ENVELOPE__BODY_CREATE_REPLICA_REP;
    env.create_replica_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void dn_set_version(rpc_req *req, void *ctx)
{
    struct fake_dn *d = ctx;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__SetVersionRep rep = KEEL__SET_VERSION_REP__INIT;

    d->set_versions++;
    if (d->fail) {
        rpc_reply_error(req, d->fail, "refused");
        return;
    }
    env.body_case = KEEL__ENVELOPE__BODY_SET_VERSION_REP;
    env.set_version_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void dn_command(rpc_req *req, void *ctx)
{
    struct fake_dn *d = ctx;
    Keel__CommandReq *rq = req->env->command_req;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CommandRep rep = KEEL__COMMAND_REP__INIT;

    for (size_t i = 0; i < rq->n_commands && ncmds < MAXCMD; i++) {
        const Keel__Command *c = rq->commands[i];

        ck_assert_int_eq(c->kind, KEEL__COMMAND_KIND__CMD_REPLICATE);
        ck_assert_ptr_nonnull(c->target);
        cmds[ncmds++] = (struct cmd_rec){(uint64_t)(d - dns) + 1, c->chunk_id, c->version,
                                         c->target->node_id,      c->delta,    c->fuzzy};
    }
    env.body_case = KEEL__ENVELOPE__BODY_COMMAND_REP;
    env.command_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static const rpc_handler dn_handlers[] = {
    {KEEL__ENVELOPE__BODY_CREATE_REPLICA_REQ, "create", dn_create},
    {KEEL__ENVELOPE__BODY_SET_VERSION_REQ, "set_version", dn_set_version},
    {KEEL__ENVELOPE__BODY_COMMAND_REQ, "command", dn_command},
};

/* -------------------------------------------------------------- fixture */

static int no_recall(void *ctx, uint64_t holder, uint64_t ino)
{
    return -ENOTCONN;
}

static void no_fence(void *ctx, uint64_t ino, const uint64_t *chunks, size_t n, bool all)
{
}

static void setup(void)
{
    struct store_settings cfg = {.chunk_size = CS, .replication = 3};
    struct nstree_create_args a = {.path = "/f", .mode = 0644, .now = 1};
    struct chunkctl_config cc = {0};
    struct repair_config rc = {0};
    struct lease_ops lops = {no_recall, no_fence, NULL};
    struct store_inode in;
    char err[256];
    MDB_txn *txn;
    bool created;

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    snprintf(dir, sizeof(dir), "/tmp/keel-repair-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(store_format(dir, &cfg, err, sizeof(err)), 0);
    ck_assert_int_eq(store_open(dir, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
    ck_assert_int_eq(nstree_create(st, txn, &a, &in, &created, NULL), 0);
    file_ino = in.ino;
    memset(dns, 0, sizeof(dns));
    ncmds = 0;
    for (int i = 0; i < NDN; i++) {
        struct store_node n = {.capacity = 100ull << 30};

        dn_svc[i] = (rpc_service){dn_handlers, ARRAY_SIZE(dn_handlers), &dns[i], NULL, NULL};
        ck_assert_int_eq(rpc_listen(&loop, "127.0.0.1:0", &dn_svc[i], NULL, &dns[i].srv), 0);
        rpc_server_addr(dns[i].srv, dns[i].addr, sizeof(dns[i].addr));
        snprintf(n.addr, sizeof(n.addr), "%s", dns[i].addr);
        snprintf(n.domain, sizeof(n.domain), "d%d", i);
        ck_assert_int_eq(store_node_register(st, txn, &n), 0);
        ck_assert_uint_eq(n.id, (uint64_t)i + 1);
    }
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    ck_assert_int_eq(commit_new(&loop, store_env(st), 0, &cm), 0);
    reg = registry_new(3600000);
    map = chunkmap_new();
    for (int i = 0; i < NDN; i++) {
        struct store_node n;

        ck_assert_int_eq(store_read_begin(st, &txn), 0);
        ck_assert_int_eq(store_node_get(st, txn, (uint64_t)i + 1, &n), 0);
        mdb_txn_abort(txn);
        ck_assert_int_eq(rpc_connect(&loop, dns[i].addr, NULL, NULL, &dns[i].conn), 0);
        registry_register(reg, &n, dns[i].conn, mono_ms())->reported = true;
    }
    cc.loop = &loop;
    cc.store = st;
    cc.commit = cm;
    cc.reg = reg;
    cc.cm = map;
    cc.min_replicas = 2;
    cc.call_timeout_ms = 2000;
    cc.seed = 7;
    ctl = chunkctl_new(&cc);
    leases = lease_table_new(&lops, 10000, mono_ms(), false);
    safemode_init(&safe, 0, 0, mono_ms());
    safe.on = false;
    rc.loop = &loop;
    rc.store = st;
    rc.commit = cm;
    rc.reg = reg;
    rc.cm = map;
    rc.ctl = ctl;
    rc.leases = leases;
    rc.safe = &safe;
    rc.streams = STREAMS;
    rc.timeout_ms = 60000;
    rc.call_timeout_ms = 2000;
    rc.seed = 11;
    rp = repair_new(&rc);
}

static void teardown(void)
{
    char cmd[300];

    repair_stop(rp);
    lease_cancel_all(leases, -ECANCELED);
    for (int i = 0; i < NDN; i++)
        rpc_conn_close(dns[i].conn);
    for (int i = 0; i < NDN; i++)
        rpc_server_close(dns[i].srv);
    commit_close(cm);
    uv_run(&loop, UV_RUN_DEFAULT);
    repair_free(rp);
    ck_assert_uint_eq(chunkctl_in_flight(ctl), 0);
    chunkctl_free(ctl);
    lease_table_free(leases);
    chunkmap_free(map);
    registry_free(reg); /* the last references to the connections */
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Turns the loop (with repair's tick) until cond holds, for at most 5 s. */
static void run_until(bool (*cond)(void *), void *arg)
{
    uint64_t end = mono_ms() + 5000;

    while (!cond(arg) && mono_ms() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        repair_tick(rp, mono_ms());
        usleep(1000);
    }
    ck_assert(cond(arg));
}

/* Turns the loop for ms milliseconds. */
static void run_for(uint64_t ms)
{
    uint64_t end = mono_ms() + ms;

    while (mono_ms() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        repair_tick(rp, mono_ms());
        usleep(1000);
    }
}

static bool flag_set(void *arg)
{
    return *(int *)arg != 0;
}

static bool cmds_at_least(void *arg)
{
    return ncmds >= *(size_t *)arg;
}

static void wait_cmds(size_t n)
{
    run_until(cmds_at_least, &n);
}

static void on_done(void *arg, int status)
{
    ck_assert_int_eq(status, 0);
    (*(int *)arg)++;
}

static void on_bump(void *arg, int status, const struct chunkctl_bump_result *res)
{
    ck_assert_int_eq(status, 0);
    (*(int *)arg)++;
}

static struct cm_chunk *alloc(uint64_t index)
{
    int done = 0;
    uint64_t id;
    MDB_txn *txn;

    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, index, 3, on_done, &done), 0);
    run_until(flag_set, &done);
    ck_assert_int_eq(store_read_begin(st, &txn), 0);
    ck_assert_int_eq(store_file_chunk(st, txn, file_ino, index, &id), 0);
    mdb_txn_abort(txn);
    return chunkmap_get(map, id);
}

static bool holds(const struct cm_chunk *c, uint64_t node)
{
    for (uint32_t i = 0; i < c->nrep; i++)
        if (c->reps[i].node == node && cm_replica_current(c, &c->reps[i]))
            return true;
    return false;
}

/* A node holding a current replica of c. */
static uint64_t a_holder(const struct cm_chunk *c, uint64_t other_than)
{
    for (uint32_t i = 0; i < c->nrep; i++)
        if (cm_replica_current(c, &c->reps[i]) && c->reps[i].node != other_than)
            return c->reps[i].node;
    ck_abort_msg("no holder");
    return 0;
}

static void kill_node(uint64_t node)
{
    registry_get(reg, node)->state = REG_DEAD;
    repair_node_dead(rp, node);
}

static bool chunk_healthy(void *arg)
{
    struct cm_chunk *c = chunkmap_get(map, *(uint64_t *)arg);
    struct cm_view v = chunkctl_view(ctl);
    struct cm_chunk_health h;

    chunkmap_chunk_health(c, &v, &h);
    return h.good == c->replication && !h.misplaced;
}

/* --------------------------------------------------------------- tests */

START_TEST(a_lost_replica_is_copied_from_a_survivor)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id, lost = a_holder(c, 0);
    struct repair_stats s;

    kill_node(lost);
    c = chunkmap_get(map, id);
    ck_assert(!holds(c, lost));
    wait_cmds(1);
    ck_assert_uint_eq(cmds[0].chunk, id);
    ck_assert(holds(c, cmds[0].node)); /* the source has it */
    ck_assert(!holds(c, cmds[0].target));
    ck_assert_uint_ne(cmds[0].target, lost);
    ck_assert_uint_eq(cmds[0].version, c->version);
    ck_assert(!cmds[0].delta);
    ck_assert(repair_copying(rp, id));
    repair_get_stats(rp, &s);
    ck_assert_uint_eq(s.running, 1);
    /* A late notice about another copy changes nothing. */
    repair_copy_done(rp, cmds[0].node, id, c->version, false, lost, -EIO, 0, 0);
    ck_assert(repair_copying(rp, id));
    repair_copy_done(rp, cmds[0].node, id, c->version, false, cmds[0].target, 0, CS, 0);
    ck_assert(!repair_copying(rp, id));
    run_until(chunk_healthy, &id);
    repair_get_stats(rp, &s);
    ck_assert_uint_eq(s.copies_done, 1);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.running, 0);
    run_for(50);
    ck_assert_uint_eq(ncmds, 1);
}
END_TEST

START_TEST(the_target_reporting_ends_the_copy)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id;

    kill_node(a_holder(c, 0));
    wait_cmds(1);
    chunkmap_report(map, cmds[0].target, id, cmds[0].version, false);
    repair_replica_reported(rp, cmds[0].target, id, cmds[0].version, false);
    ck_assert(!repair_copying(rp, id));
    run_until(chunk_healthy, &id);
}
END_TEST

START_TEST(a_stale_holder_gets_a_delta_copy)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id, stale = a_holder(c, 0);
    int done = 0;

    /* A bump the node misses leaves it stale. */
    dns[stale - 1].fail = -EIO;
    ck_assert_int_eq(chunkctl_bump(ctl, id, NULL, 0, on_bump, &done), 0);
    run_until(flag_set, &done);
    c = chunkmap_get(map, id);
    ck_assert_uint_eq(c->version, 2);
    wait_cmds(1);
    ck_assert_uint_eq(cmds[0].target, stale);
    ck_assert(cmds[0].delta);
    ck_assert_uint_eq(cmds[0].version, 2);
    repair_copy_done(rp, cmds[0].node, id, 2, false, stale, 0, 4096, CS - 4096);
    run_until(chunk_healthy, &id);
}
END_TEST

START_TEST(a_file_being_written_is_bumped_first)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id, lost = a_holder(c, 0);
    struct lease_waiter w = {0};
    int sv = 0;

    ck_assert_int_eq(lease_acquire(leases, file_ino, 99, mono_ms(), &w), 0);
    ck_assert(lease_busy(leases, file_ino, mono_ms()));
    kill_node(lost);
    wait_cmds(1);
    c = chunkmap_get(map, id);
    /* Both survivors took version 2 before the copy was commanded at it. */
    for (int i = 0; i < NDN; i++)
        sv += dns[i].set_versions;
    ck_assert_int_eq(sv, 2);
    ck_assert_uint_eq(c->version, 2);
    ck_assert_uint_eq(cmds[0].version, 2);
    /* A whole copy of a file being written is fuzzy: writers go on. */
    ck_assert(cmds[0].fuzzy && !cmds[0].delta);
    ck_assert(!repair_copying(rp, id));
    repair_copy_done(rp, cmds[0].node, id, 2, true, cmds[0].target, 0, CS, 0);
    /* The target holds version 1 (stale): a delta at a new version follows,
     * and writers wait for that one. */
    wait_cmds(2);
    c = chunkmap_get(map, id);
    ck_assert_uint_eq(c->version, 3);
    ck_assert_uint_eq(cmds[1].target, cmds[0].target);
    ck_assert(cmds[1].delta && !cmds[1].fuzzy);
    ck_assert_uint_eq(cmds[1].version, 3);
    ck_assert(repair_copying(rp, id));
    ck_assert(!chunk_healthy(&id));
    repair_copy_done(rp, cmds[1].node, id, 3, false, cmds[1].target, 0, 4096, CS - 4096);
    run_until(chunk_healthy, &id);

    /* Above version 1 a fuzzy copy needs no new version first. */
    sv = 0;
    for (int i = 0; i < NDN; i++)
        sv += dns[i].set_versions;
    kill_node(a_holder(chunkmap_get(map, id), 0));
    wait_cmds(3);
    ck_assert(cmds[2].fuzzy);
    ck_assert_uint_eq(cmds[2].version, 3);
    ck_assert_uint_eq(chunkmap_get(map, id)->version, 3);
    for (int i = 0; i < NDN; i++)
        sv -= dns[i].set_versions;
    ck_assert_int_eq(sv, 0);
    ck_assert(!repair_copying(rp, id));
}
END_TEST

static bool not_copying(void *arg)
{
    return !repair_copying(rp, *(uint64_t *)arg);
}

static int set_versions(void)
{
    int n = 0;

    for (int i = 0; i < NDN; i++)
        n += dns[i].set_versions;
    return n;
}

START_TEST(a_writer_does_not_wait_for_a_whole_copy)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id;
    struct lease_waiter w = {0};
    struct repair_stats s;

    kill_node(a_holder(c, 0));
    wait_cmds(1);
    /* The file is idle: a plain whole copy at version 1, fenced. */
    ck_assert(!cmds[0].fuzzy && !cmds[0].delta);
    ck_assert_uint_eq(cmds[0].version, 1);
    ck_assert(repair_copying(rp, id));
    ck_assert_int_eq(set_versions(), 0);
    /* A writer comes and is told to wait: the chunk moves past the copy
     * (once, however often it asks), and the copy is dropped. */
    ck_assert_int_eq(lease_acquire(leases, file_ino, 99, mono_ms(), &w), 0);
    repair_writer_waits(rp, id);
    repair_writer_waits(rp, id);
    ck_assert(repair_copying(rp, id)); /* until the new version is committed */
    run_until(not_copying, &id);
    c = chunkmap_get(map, id);
    ck_assert_uint_eq(c->version, 2);
    ck_assert_int_eq(set_versions(), 2); /* the two survivors */
    repair_get_stats(rp, &s);
    ck_assert_uint_eq(s.copies_failed, 1);
    /* The source's late word of success leaves the target stale, not current. */
    repair_copy_done(rp, cmds[0].node, id, 1, false, cmds[0].target, 0, CS, 0);
    ck_assert(!holds(chunkmap_get(map, id), cmds[0].target));
    /* The next copy lets the writer through. */
    wait_cmds(2);
    ck_assert(cmds[1].fuzzy && !cmds[1].delta);
    ck_assert_uint_eq(cmds[1].version, 2);
    ck_assert(!repair_copying(rp, id));
    ck_assert_int_eq(set_versions(), 2);
    /* A delta is short: a writer waits for it, nothing is bumped. */
    repair_copy_done(rp, cmds[1].node, id, 2, true, cmds[1].target, 0, CS, 0);
    wait_cmds(3);
    ck_assert(cmds[2].delta);
    ck_assert(repair_copying(rp, id));
    ck_assert_uint_eq(chunkmap_get(map, id)->version, 3);
    repair_writer_waits(rp, id);
    run_for(50);
    ck_assert(repair_copying(rp, id));
    ck_assert_uint_eq(chunkmap_get(map, id)->version, 3);
    repair_copy_done(rp, cmds[2].node, id, 3, false, cmds[2].target, 0, 4096, CS - 4096);
    run_until(chunk_healthy, &id);
}
END_TEST

/* The copy's source answers -ESTALE (the writer's version change reached it)
 * before that change is committed: the failure is the change's doing, so
 * the source is not avoided and sends the next copy again (the planner's
 * pick among equally loaded sources is the same as the first time). */
START_TEST(a_copy_moved_past_for_a_writer_is_not_blamed)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id;
    struct lease_waiter w = {0};

    kill_node(a_holder(c, 0));
    wait_cmds(1);
    ck_assert(!cmds[0].fuzzy && !cmds[0].delta);
    ck_assert_int_eq(lease_acquire(leases, file_ino, 99, mono_ms(), &w), 0);
    repair_writer_waits(rp, id);
    repair_copy_done(rp, cmds[0].node, id, 1, false, cmds[0].target, -ESTALE, 0, 0);
    ck_assert_uint_eq(chunkmap_get(map, id)->version, 1); /* the change is not committed yet */
    wait_cmds(2);
    ck_assert_uint_eq(chunkmap_get(map, id)->version, 2);
    ck_assert(cmds[1].fuzzy);
    ck_assert_uint_eq(cmds[1].node, cmds[0].node);
}
END_TEST

START_TEST(a_failed_copy_goes_elsewhere)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id;

    kill_node(a_holder(c, 0));
    wait_cmds(1);
    /* The target refused (disk full): the next copy goes to another one. */
    repair_copy_done(rp, cmds[0].node, id, cmds[0].version, false, cmds[0].target, -ENOSPC, 0, 0);
    wait_cmds(2);
    ck_assert_uint_eq(cmds[1].chunk, id);
    ck_assert_uint_ne(cmds[1].target, cmds[0].target);
    repair_copy_done(rp, cmds[1].node, id, cmds[1].version, false, cmds[1].target, 0, CS, 0);
    run_until(chunk_healthy, &id);
}
END_TEST

START_TEST(streams_per_node)
{
    struct cm_chunk *c;
    uint64_t lost = 1;
    size_t want = 0;
    uint32_t out[NDN + 1] = {0}, in[NDN + 1] = {0};

    for (uint64_t i = 0; i < 12; i++) {
        c = alloc(i);
        want += holds(c, lost);
    }
    ck_assert_uint_ge(want, 3);
    kill_node(lost);
    /* Nothing completes: at most STREAMS copies per node either way. */
    run_for(300);
    ck_assert_uint_gt(ncmds, 0);
    ck_assert_uint_lt(ncmds, want + 1);
    for (size_t i = 0; i < ncmds; i++) {
        out[cmds[i].node]++;
        in[cmds[i].target]++;
    }
    for (int n = 1; n <= NDN; n++) {
        ck_assert_uint_le(out[n], STREAMS);
        ck_assert_uint_le(in[n], STREAMS);
    }
    /* Completing them lets the rest go, until every chunk is whole. */
    for (size_t done = 0; done < want;) {
        size_t have = ncmds;

        for (; done < have; done++)
            repair_copy_done(rp, cmds[done].node, cmds[done].chunk, cmds[done].version, false,
                             cmds[done].target, 0, CS, 0);
        if (done < want)
            wait_cmds(done + 1);
    }
    ck_assert_uint_eq(ncmds, want);
}
END_TEST

START_TEST(an_extra_replica_is_trimmed)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id, extra = 0;
    struct reg_cmd rc[4];

    for (uint64_t n = 1; n <= NDN && !extra; n++)
        if (!holds(c, n))
            extra = n;
    registry_get(reg, extra)->used = 90ull << 30; /* the fullest */
    chunkmap_set_replica(map, c, extra, c->version);
    run_until(chunk_healthy, &id);
    ck_assert(!holds(chunkmap_get(map, id), extra));
    ck_assert_uint_eq(registry_take_commands(registry_get(reg, extra), rc, 4), 1);
    ck_assert_uint_eq(rc[0].kind, REG_CMD_DELETE);
    ck_assert_uint_eq(ncmds, 0);
}
END_TEST

START_TEST(nothing_happens_in_safe_mode)
{
    struct cm_chunk *c = alloc(0);
    uint64_t id = c->id;

    safe.on = true;
    kill_node(a_holder(c, 0));
    run_for(200);
    ck_assert_uint_eq(ncmds, 0);
    safe.on = false;
    repair_scan_all(rp);
    wait_cmds(1);
    ck_assert_uint_eq(cmds[0].chunk, id);
}
END_TEST

static void on_decom(void *arg, int status, uint64_t node)
{
    ck_assert_int_eq(status, 0);
    (*(int *)arg)++;
}

static bool node_in_state(void *arg)
{
    const uint64_t *a = arg;

    return registry_get(reg, a[0])->state == (enum reg_state)a[1];
}

START_TEST(a_decommissioning_node_drains)
{
    uint64_t node = 2, held = 0, wait[2] = {node, REG_DECOMMISSIONED};
    struct store_node sn;
    MDB_txn *txn;
    int done = 0;

    for (uint64_t i = 0; i < 6; i++)
        held += holds(alloc(i), node);
    ck_assert_uint_ge(held, 1);
    repair_decommission(rp, node, false, on_decom, &done);
    run_until(flag_set, &done);
    ck_assert_int_eq(registry_get(reg, node)->state, REG_DECOMMISSIONING);
    ck_assert_uint_eq(repair_decommission_left(rp, node), held);
    /* Its chunks are copied elsewhere, the leaving node as the preferred
     * source (others while its streams are busy). */
    wait_cmds(1);
    ck_assert_uint_eq(cmds[0].node, node);
    for (size_t done_cmds = 0; done_cmds < held;) {
        size_t have = ncmds;

        for (; done_cmds < have; done_cmds++) {
            ck_assert_uint_ne(cmds[done_cmds].target, node);
            repair_copy_done(rp, cmds[done_cmds].node, cmds[done_cmds].chunk,
                             cmds[done_cmds].version, false, cmds[done_cmds].target, 0, CS, 0);
        }
        if (done_cmds < held)
            wait_cmds(done_cmds + 1);
    }
    ck_assert_uint_eq(repair_decommission_left(rp, node), 0);
    run_until(node_in_state, wait);
    ck_assert_uint_eq(chunkmap_node_replicas(map, node), 0);
    ck_assert_int_eq(store_read_begin(st, &txn), 0);
    ck_assert_int_eq(store_node_get(st, txn, node, &sn), 0);
    mdb_txn_abort(txn);
    ck_assert_uint_eq(sn.flags, STORE_NODE_DECOMMISSIONED);
    /* Asking again changes nothing; recommissioning brings it back. */
    repair_decommission(rp, node, false, on_decom, &done);
    run_until(flag_set, &done);
    ck_assert_int_eq(registry_get(reg, node)->state, REG_DECOMMISSIONED);
    done = 0;
    repair_decommission(rp, node, true, on_decom, &done);
    run_until(flag_set, &done);
    ck_assert_int_eq(registry_get(reg, node)->state, REG_ALIVE);
    ck_assert(registry_get(reg, node)->reregister); /* it reports in full again */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("repair");
    TCase *tc = tcase_create("repair");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_lost_replica_is_copied_from_a_survivor);
    tcase_add_test(tc, the_target_reporting_ends_the_copy);
    tcase_add_test(tc, a_stale_holder_gets_a_delta_copy);
    tcase_add_test(tc, a_file_being_written_is_bumped_first);
    tcase_add_test(tc, a_writer_does_not_wait_for_a_whole_copy);
    tcase_add_test(tc, a_copy_moved_past_for_a_writer_is_not_blamed);
    tcase_add_test(tc, a_failed_copy_goes_elsewhere);
    tcase_add_test(tc, streams_per_node);
    tcase_add_test(tc, an_extra_replica_is_trimmed);
    tcase_add_test(tc, nothing_happens_in_safe_mode);
    tcase_add_test(tc, a_decommissioning_node_drains);
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
