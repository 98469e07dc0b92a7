/*
 * Unit tests for namenode/chunkctl (allocation and versioning) against
 * fake datanodes served over real RPC on 127.0.0.1 in this process: the
 * datanodes are called before LMDB commits; failed replicas are left stale;
 * nothing commits when no replica took a change; concurrent requests share
 * one allocation; version changes of a chunk run one after another; chunk
 * ids are never reused across a restart; deleted chunks' replicas are
 * ordered deleted; stale replicas wait for enough good ones; extra
 * replicas go from the crowded domain, the fuller node first, never from a
 * leaving node.
 */
#include "chunkctl.h"
#include "chunkmap.h"
#include "commit.h"
#include "nstree.h"
#include "registry.h"
#include "store.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NDN 4
#define CS  (1u << 20)

/* ------------------------------------------------------ fake datanodes */

struct fake_dn {
    rpc_server *srv;
    char addr[64];
    rpc_conn *conn; /* the namenode's connection to it */
    int fail;       /* answer every call with this error */
    int creates, set_versions, trims;
    uint64_t last_chunk, last_version, last_new_version, last_length;
};

static struct fake_dn dns[NDN];
static uv_loop_t loop;
static char dir[256];
static struct store *st;
static struct commit *cm;
static struct registry *reg;
static struct chunkmap *map;
static struct chunkctl *ctl;
static uint64_t file_ino;

static struct fake_dn *dn_of(void *ctx)
{
    return ctx;
}

static void dn_create(rpc_req *req, void *ctx)
{
    struct fake_dn *d = dn_of(ctx);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__CreateReplicaRep rep = KEEL__CREATE_REPLICA_REP__INIT;

    d->creates++;
    d->last_chunk = req->env->create_replica_req->chunk_id;
    d->last_version = req->env->create_replica_req->version;
    if (d->fail) {
        rpc_reply_error(req, d->fail, "refused");
        return;
    }
    env.body_case = KEEL__ENVELOPE__BODY_CREATE_REPLICA_REP;
    env.create_replica_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void dn_set_version(rpc_req *req, void *ctx)
{
    struct fake_dn *d = dn_of(ctx);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__SetVersionRep rep = KEEL__SET_VERSION_REP__INIT;

    d->set_versions++;
    d->last_chunk = req->env->set_version_req->chunk_id;
    d->last_version = req->env->set_version_req->version;
    d->last_new_version = req->env->set_version_req->new_version;
    if (d->fail) {
        rpc_reply_error(req, d->fail, "refused");
        return;
    }
    env.body_case = KEEL__ENVELOPE__BODY_SET_VERSION_REP;
    env.set_version_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static void dn_trim(rpc_req *req, void *ctx)
{
    struct fake_dn *d = dn_of(ctx);
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__TrimReplicaRep rep = KEEL__TRIM_REPLICA_REP__INIT;

    d->trims++;
    d->last_chunk = req->env->trim_replica_req->chunk_id;
    d->last_version = req->env->trim_replica_req->version;
    d->last_new_version = req->env->trim_replica_req->new_version;
    d->last_length = req->env->trim_replica_req->length;
    if (d->fail) {
        rpc_reply_error(req, d->fail, "refused");
        return;
    }
    env.body_case = KEEL__ENVELOPE__BODY_TRIM_REPLICA_REP;
    env.trim_replica_rep = &rep;
    rpc_reply(req, &env, RPC_NO_PAYLOAD);
}

static const rpc_handler dn_handlers[] = {
    {KEEL__ENVELOPE__BODY_CREATE_REPLICA_REQ, "create", dn_create},
    {KEEL__ENVELOPE__BODY_SET_VERSION_REQ, "set_version", dn_set_version},
    {KEEL__ENVELOPE__BODY_TRIM_REPLICA_REQ, "trim", dn_trim},
};

static rpc_service dn_svc[NDN];

/* -------------------------------------------------------------- fixture */

static void open_all(void)
{
    struct chunkctl_config cc = {0};
    char err[256];

    ck_assert_int_eq(store_open(dir, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(commit_new(&loop, store_env(st), 0, &cm), 0);
    reg = registry_new(30000);
    map = chunkmap_new();
    cc.loop = &loop;
    cc.store = st;
    cc.commit = cm;
    cc.reg = reg;
    cc.cm = map;
    cc.min_replicas = 2;
    cc.call_timeout_ms = 2000;
    cc.seed = 77;
    ctl = chunkctl_new(&cc);
    for (int i = 0; i < NDN; i++) {
        struct store_node n = {.id = (uint64_t)i + 1, .capacity = 100ull << 30};

        snprintf(n.addr, sizeof(n.addr), "%s", dns[i].addr);
        snprintf(n.domain, sizeof(n.domain), "d%d", i % 3); /* nodes 1 and 4 share d0 */
        ck_assert_int_eq(rpc_connect(&loop, dns[i].addr, NULL, NULL, &dns[i].conn), 0);
        registry_register(reg, &n, dns[i].conn, 1);
    }
}

static void close_all(void)
{
    ck_assert_uint_eq(chunkctl_in_flight(ctl), 0);
    chunkctl_free(ctl);
    chunkmap_free(map);
    registry_free(reg);
    for (int i = 0; i < NDN; i++)
        rpc_conn_close(dns[i].conn);
    commit_close(cm);
    uv_run(&loop, UV_RUN_NOWAIT);
    store_close(st);
}

static void setup(void)
{
    struct store_settings cfg = {.chunk_size = CS, .replication = 3};
    struct nstree_create_args a = {.path = "/f", .mode = 0644, .now = 1};
    struct store_inode in;
    char err[256];
    MDB_txn *txn;
    bool created;

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    snprintf(dir, sizeof(dir), "/tmp/keel-chunkctl-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(store_format(dir, &cfg, err, sizeof(err)), 0);
    memset(dns, 0, sizeof(dns));
    for (int i = 0; i < NDN; i++) {
        dn_svc[i] = (rpc_service){dn_handlers, 3, &dns[i], NULL, NULL};
        ck_assert_int_eq(rpc_listen(&loop, "127.0.0.1:0", &dn_svc[i], NULL, &dns[i].srv), 0);
        rpc_server_addr(dns[i].srv, dns[i].addr, sizeof(dns[i].addr));
    }
    open_all();
    ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
    ck_assert_int_eq(nstree_create(st, txn, &a, &in, &created, NULL), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    file_ino = in.ino;
}

static void teardown(void)
{
    char cmd[300];

    close_all();
    for (int i = 0; i < NDN; i++)
        rpc_server_close(dns[i].srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void run_until(int *flag)
{
    for (int i = 0; i < 200000 && !*flag; i++)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert(*flag);
}

/* ---------------------------------------------------------- utilities */

struct result {
    int done;
    int status;
    struct chunkctl_bump_result bump;
    struct chunkctl_change *trim;
};

static void on_done(void *arg, int status)
{
    struct result *r = arg;

    r->done++;
    r->status = status;
}

static void on_bump(void *arg, int status, const struct chunkctl_bump_result *res)
{
    struct result *r = arg;

    r->done++;
    r->status = status;
    if (res)
        r->bump = *res;
}

static void on_trim(void *arg, int status, struct chunkctl_change *t)
{
    struct result *r = arg;

    r->done++;
    r->status = status;
    r->trim = t;
}

static uint64_t lmdb_version(uint64_t chunk_id)
{
    struct store_chunk c;
    MDB_txn *txn;
    int r;

    ck_assert_int_eq(store_read_begin(st, &txn), 0);
    r = store_chunk_get(st, txn, chunk_id, &c);
    mdb_txn_abort(txn);
    return r ? 0 : c.version;
}

static uint64_t chunk_at(uint64_t index)
{
    uint64_t id = 0;
    MDB_txn *txn;

    ck_assert_int_eq(store_read_begin(st, &txn), 0);
    if (store_file_chunk(st, txn, file_ino, index, &id))
        id = 0;
    mdb_txn_abort(txn);
    return id;
}

static int current_replicas(const struct cm_chunk *c)
{
    int n = 0;

    for (uint32_t i = 0; i < c->nrep; i++)
        n += cm_replica_current(c, &c->reps[i]);
    return n;
}

static uint64_t alloc_ok(uint64_t index)
{
    struct result r = {0};

    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, index, 3, on_done, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, 0);
    return chunk_at(index);
}

static bool has_replica(const struct cm_chunk *c, uint64_t node)
{
    for (uint32_t i = 0; i < c->nrep; i++)
        if (c->reps[i].node == node)
            return true;
    return false;
}

/* --------------------------------------------------------------- tests */

START_TEST(allocation_creates_then_commits)
{
    uint64_t id = alloc_ok(0);
    struct cm_chunk *c = chunkmap_get(map, id);
    char seen[3][8] = {{0}};
    int creates = 0;

    ck_assert_uint_ne(id, 0);
    ck_assert_uint_eq(lmdb_version(id), 1);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(current_replicas(c), 3);
    for (int i = 0; i < NDN; i++) {
        creates += dns[i].creates;
        if (dns[i].creates) {
            ck_assert_uint_eq(dns[i].last_chunk, id);
            ck_assert_uint_eq(dns[i].last_version, 1);
        }
    }
    ck_assert_int_eq(creates, 3);
    /* Three distinct domains: nodes 1 and 4 (both d0) are never both used. */
    for (uint32_t i = 0; i < c->nrep; i++) {
        int d = (int)((c->reps[i].node - 1) % 3);

        ck_assert_int_eq(seen[d][0], 0);
        seen[d][0] = 1;
    }
}
END_TEST

START_TEST(concurrent_requests_share_one_allocation)
{
    struct result a = {0}, b = {0}, c = {0};
    int creates = 0;

    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 7, 3, on_done, &a), 0);
    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 7, 3, on_done, &b), 0);
    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 8, 3, on_done, &c), 0);
    run_until(&a.done);
    run_until(&b.done);
    run_until(&c.done);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(b.status, 0);
    ck_assert_int_eq(c.status, 0);
    for (int i = 0; i < NDN; i++)
        creates += dns[i].creates;
    ck_assert_int_eq(creates, 6); /* two chunks, not three */
    ck_assert_uint_ne(chunk_at(7), chunk_at(8));
    ck_assert_uint_eq(chunkmap_count(map), 2);
}
END_TEST

START_TEST(allocation_needs_min_replicas)
{
    struct result r = {0};
    struct reg_cmd cmds[8];
    int taken = 0;

    /* Node 1 refuses: its domain-mate node 4 or another takes its place
     * only if picked; with two refusals of three the chunk fails. */
    dns[0].fail = -EIO;
    dns[1].fail = -EIO;
    dns[3].fail = -EIO;
    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 0, 3, on_done, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, -EIO);
    ck_assert_uint_eq(chunk_at(0), 0);
    ck_assert_uint_eq(chunkmap_count(map), 0);
    /* The replica that was created is garbage now: ordered deleted. */
    for (uint64_t id = 1; id <= NDN; id++)
        taken += (int)registry_take_commands(registry_get(reg, id), cmds, 8);
    ck_assert_int_eq(taken, dns[2].creates);
    ck_assert_int_eq(dns[2].creates, 1);

    /* One refusal of three is fine with min_replicas 2. */
    dns[1].fail = 0;
    dns[3].fail = 0;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 0, 3, on_done, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_ge(current_replicas(chunkmap_get(map, chunk_at(0))), 2);
}
END_TEST

START_TEST(full_nodes_mean_enospc)
{
    struct result r = {0};

    for (uint64_t id = 1; id <= NDN; id++)
        registry_get(reg, id)->full = true;
    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 0, 3, on_done, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, -ENOSPC);
    /* Datanodes answering ENOSPC are reported the same way. */
    for (uint64_t id = 1; id <= NDN; id++)
        registry_get(reg, id)->full = false;
    for (int i = 0; i < NDN; i++)
        dns[i].fail = -ENOSPC;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 0, 3, on_done, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, -ENOSPC);
}
END_TEST

/* After a restart, datanodes not yet heard from may still come back: too
 * few usable nodes then means "ask again", not a failed write; dead ones
 * do not count. */
START_TEST(too_few_nodes_while_others_return_means_eagain)
{
    struct result r = {0};

    for (uint64_t id = 2; id <= NDN; id++)
        registry_get(reg, id)->state = REG_UNKNOWN;
    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 0, 3, on_done, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, -EAGAIN);
    ck_assert_uint_eq(chunk_at(0), 0);
    for (uint64_t id = 2; id <= NDN; id++)
        registry_get(reg, id)->state = REG_DEAD;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(chunkctl_alloc(ctl, file_ino, 0, 3, on_done, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, -EIO);
}
END_TEST

START_TEST(bump_leaves_failed_replicas_stale)
{
    uint64_t id = alloc_ok(0);
    struct cm_chunk *c = chunkmap_get(map, id);
    uint64_t failing = c->reps[0].node, dropped = c->reps[1].node;
    struct result r = {0};

    dns[failing - 1].fail = -EIO;
    ck_assert_int_eq(chunkctl_bump(ctl, id, &dropped, 1, on_bump, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.bump.version, 2);
    ck_assert_uint_eq(r.bump.targets, 2); /* the dropped node was not asked */
    ck_assert_uint_eq(r.bump.ok, 1);
    ck_assert_int_eq(dns[dropped - 1].set_versions, 0);
    ck_assert_uint_eq(lmdb_version(id), 2);
    c = chunkmap_get(map, id);
    ck_assert_uint_eq(c->version, 2);
    ck_assert_int_eq(current_replicas(c), 1);
    ck_assert(has_replica(c, failing)); /* still known, as stale */
    for (int i = 0; i < NDN; i++) {
        if (dns[i].set_versions) {
            ck_assert_uint_eq(dns[i].last_version, 1);
            ck_assert_uint_eq(dns[i].last_new_version, 2);
        }
    }
}
END_TEST

START_TEST(nothing_commits_when_no_replica_took_it)
{
    uint64_t id = alloc_ok(0);
    struct result r = {0};

    for (int i = 0; i < NDN; i++)
        dns[i].fail = -EIO;
    ck_assert_int_eq(chunkctl_bump(ctl, id, NULL, 0, on_bump, &r), 0);
    run_until(&r.done);
    ck_assert_int_eq(r.status, -EIO);
    ck_assert_uint_eq(lmdb_version(id), 1);
    ck_assert_uint_eq(chunkmap_get(map, id)->version, 1);
    ck_assert_int_eq(current_replicas(chunkmap_get(map, id)), 3);
}
END_TEST

START_TEST(changes_of_one_chunk_run_in_order)
{
    uint64_t id = alloc_ok(0);
    struct result a = {0}, b = {0}, t = {0};

    ck_assert_int_eq(chunkctl_bump(ctl, id, NULL, 0, on_bump, &a), 0);
    ck_assert_int_eq(chunkctl_bump(ctl, id, NULL, 0, on_bump, &b), 0);
    ck_assert_int_eq(chunkctl_trim(ctl, id, 4096, on_trim, &t), 0);
    run_until(&t.done);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(b.status, 0);
    ck_assert_uint_eq(a.bump.version, 2);
    ck_assert_uint_eq(b.bump.version, 3);
    ck_assert_int_eq(t.status, 0);
    ck_assert_uint_eq(chunkctl_trim_old_version(t.trim), 3);
    ck_assert_uint_eq(chunkctl_trim_new_version(t.trim), 4);
    for (int i = 0; i < NDN; i++)
        if (dns[i].trims)
            ck_assert_uint_eq(dns[i].last_length, 4096);
    /* The caller's commit carries the new version; the map follows. */
    {
        MDB_txn *txn;

        ck_assert_int_eq(mdb_txn_begin(store_env(st), NULL, 0, &txn), 0);
        ck_assert_int_eq(store_chunk_set_version(st, txn, id, 3, 4), 0);
        ck_assert_int_eq(mdb_txn_commit(txn), 0);
    }
    chunkctl_trim_finish(ctl, t.trim, 0);
    ck_assert_uint_eq(chunkmap_get(map, id)->version, 4);
    ck_assert_int_eq(current_replicas(chunkmap_get(map, id)), 3);
}
END_TEST

START_TEST(reported_higher_version_is_adopted)
{
    uint64_t id = alloc_ok(0);
    struct cm_chunk *c = chunkmap_get(map, id);

    ck_assert_int_eq(chunkmap_report(map, c->reps[0].node, id, 2, false), CM_AHEAD);
    chunkctl_adopt(ctl, id, 2);
    for (int i = 0; i < 100000 && lmdb_version(id) != 2; i++)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_uint_eq(lmdb_version(id), 2);
    for (int i = 0; i < 1000 && chunkctl_in_flight(ctl); i++)
        uv_run(&loop, UV_RUN_ONCE);
    c = chunkmap_get(map, id);
    ck_assert_uint_eq(c->version, 2);
    ck_assert_int_eq(current_replicas(c), 1); /* the others are stale now */
}
END_TEST

START_TEST(forgotten_chunks_are_deleted_everywhere)
{
    uint64_t id = alloc_ok(0);
    struct store_chunk_list freed = {0};
    struct store_chunk sc = {.id = id};
    struct reg_cmd cmds[4];
    int orders = 0;

    freed.v = &sc;
    freed.n = 1;
    chunkctl_forget(ctl, &freed);
    ck_assert_ptr_null(chunkmap_get(map, id));
    for (uint64_t n = 1; n <= NDN; n++) {
        size_t k = registry_take_commands(registry_get(reg, n), cmds, 4);

        for (size_t i = 0; i < k; i++) {
            ck_assert_uint_eq(cmds[i].kind, REG_CMD_DELETE);
            ck_assert_uint_eq(cmds[i].chunk_id, id);
            orders++;
        }
    }
    ck_assert_int_eq(orders, 3);
}
END_TEST

START_TEST(chunk_ids_are_not_reused_after_restart)
{
    uint64_t first = alloc_ok(0), second;

    /* An id handed to datanodes must not come back even if its chunk
     * never committed: restart and allocate again. */
    close_all();
    open_all();
    second = alloc_ok(1);
    ck_assert_uint_gt(second, first);
    ck_assert_uint_ge(second - first, 1000); /* a fresh reserved range */
}
END_TEST

START_TEST(collect_waits_for_enough_current_replicas)
{
    uint64_t id = alloc_ok(0);
    struct cm_chunk *c = chunkmap_get(map, id);
    uint64_t stale_node = c->reps[0].node;
    struct reg_cmd cmds[4];
    struct result r = {0};

    /* Node goes stale through a failed bump. */
    dns[stale_node - 1].fail = -EIO;
    ck_assert_int_eq(chunkctl_bump(ctl, id, NULL, 0, on_bump, &r), 0);
    run_until(&r.done);
    struct cm_view v = chunkctl_view(ctl);

    c = chunkmap_get(map, id);
    chunkctl_collect(ctl, c, &v); /* 2 current < 3 wanted: keep it */
    ck_assert_uint_eq(registry_take_commands(registry_get(reg, stale_node), cmds, 4), 0);
    c->replication = 2; /* now enough */
    chunkctl_collect(ctl, c, &v);
    ck_assert_uint_eq(registry_take_commands(registry_get(reg, stale_node), cmds, 4), 1);
    ck_assert_uint_eq(cmds[0].version, 1);
    ck_assert(!has_replica(c, stale_node));
}
END_TEST

START_TEST(excess_replicas_go_from_the_crowded_domain)
{
    uint64_t id = alloc_ok(0);
    struct cm_chunk *c = chunkmap_get(map, id);
    /* Nodes 1 and 4 share d0; the allocation used one of them. */
    uint64_t extra = has_replica(c, 1) ? 4 : 1, other = extra == 1 ? 4 : 1;
    struct reg_cmd cmds[4];
    struct cm_view v;

    ck_assert(has_replica(c, other));
    chunkmap_set_replica(map, c, extra, c->version);
    ck_assert_uint_eq(c->nrep, 4);
    registry_get(reg, other)->used = 60ull << 30; /* the fuller one in d0 */
    ck_assert_uint_eq(chunkctl_drop_excess(ctl, c), 1);
    c = chunkmap_get(map, id);
    ck_assert(!has_replica(c, other));
    ck_assert(has_replica(c, extra));
    ck_assert_uint_eq(registry_take_commands(registry_get(reg, other), cmds, 4), 1);
    ck_assert_uint_eq(cmds[0].kind, REG_CMD_DELETE);
    ck_assert_uint_eq(cmds[0].version, c->version);
    ck_assert_uint_eq(chunkctl_drop_excess(ctl, c), 0);
    /* A replica on a leaving node is neither counted nor trimmed. */
    registry_get(reg, other)->state = REG_DECOMMISSIONING;
    chunkmap_set_replica(map, c, other, c->version);
    ck_assert_uint_eq(chunkctl_drop_excess(ctl, c), 0);
    v = chunkctl_view(ctl);
    ck_assert_uint_eq(chunkctl_collect(ctl, c, &v), 0);
    ck_assert_uint_eq(registry_take_commands(registry_get(reg, other), cmds, 4), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chunkctl");
    TCase *tc = tcase_create("chunkctl");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, allocation_creates_then_commits);
    tcase_add_test(tc, concurrent_requests_share_one_allocation);
    tcase_add_test(tc, allocation_needs_min_replicas);
    tcase_add_test(tc, full_nodes_mean_enospc);
    tcase_add_test(tc, too_few_nodes_while_others_return_means_eagain);
    tcase_add_test(tc, bump_leaves_failed_replicas_stale);
    tcase_add_test(tc, nothing_commits_when_no_replica_took_it);
    tcase_add_test(tc, changes_of_one_chunk_run_in_order);
    tcase_add_test(tc, reported_higher_version_is_adopted);
    tcase_add_test(tc, forgotten_chunks_are_deleted_everywhere);
    tcase_add_test(tc, chunk_ids_are_not_reused_after_restart);
    tcase_add_test(tc, collect_waits_for_enough_current_replicas);
    tcase_add_test(tc, excess_replicas_go_from_the_crowded_domain);
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
