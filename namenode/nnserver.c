/*
 * nnserver: see nnserver.h.
 *
 * Connections carry a struct nn_peer (who is at the other end), created
 * when they open and freed when they close; closing detaches the peer from
 * the registry (datanodes) and the client table (lease recalls).
 */
#include "nnserver.h"

#include "dnops.h"
#include "errors.h"
#include "fileops.h"
#include "log.h"
#include "nsops.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define TICK_MS 200u

struct nnserver {
    struct nn_config cfg;
    struct nn_core core;
    rpc_server *server;
    rpc_handler *handlers;
    rpc_service svc;
    uv_timer_t tick;
    int lock_fd;
    bool stopping;
    char addr[64];
};

int nnserver_format(const char *dir, uint64_t chunk_size, uint32_t replication, char *err,
                    size_t errlen)
{
    struct store_settings s = {.chunk_size = chunk_size, .replication = replication};

    return store_format(dir, &s, err, errlen);
}

/* ------------------------------------------------------------ connections */

static void on_open(rpc_conn *c, void *ctx)
{
    rpc_conn_set_data(c, xcalloc(1, sizeof(struct nn_peer)));
}

static void on_close(rpc_conn *c, int err, void *ctx)
{
    struct nn_core *core = ctx;
    struct nn_peer *peer = rpc_conn_data(c);

    if (!peer)
        return;
    if (peer->node_id) {
        log_info("nnserver: datanode %" PRIu64 " disconnected (%s)", peer->node_id, err_str(err));
        registry_detach(core->reg, peer->node_id, c);
    }
    if (peer->client_id)
        nsops_conn_closed(core->ns, peer->client_id, c);
    rpc_conn_set_data(c, NULL);
    free(peer);
}

/* ------------------------------------------------------------ periodic */

static void node_died(struct reg_node *n, void *arg)
{
    struct nnserver *s = arg;

    repair_node_dead(s->core.repair, n->id);
}

static void on_tick(uv_timer_t *t)
{
    struct nnserver *s = t->data;
    uint64_t now = mono_ms();

    registry_tick(s->core.reg, now, node_died, s);
    lease_tick(s->core.leases, now);
    dnops_check_safe_mode(&s->core);
    repair_tick(s->core.repair, now);
}

/* -------------------------------------------------------------- start-up */

static int load_node(const struct store_node *n, void *arg)
{
    struct nnserver *s = arg;

    registry_load(s->core.reg, n, mono_ms());
    return 0;
}

static int load_chunk(const struct store_chunk *c, void *arg)
{
    struct nnserver *s = arg;

    chunkmap_add(s->core.cm, c->id, c->version, c->replication, c->ino, c->index);
    return 0;
}

static int load_state(struct nnserver *s)
{
    MDB_txn *txn;
    int r = store_read_begin(s->core.store, &txn);

    if (r)
        return r;
    r = store_nodes_foreach(s->core.store, txn, load_node, s);
    if (r == 0)
        r = store_chunks_foreach(s->core.store, txn, load_chunk, s);
    mdb_txn_abort(txn);
    return r;
}

static int lock_dir(const char *dir, int *fd_out)
{
    char path[4096];
    int fd;

    snprintf(path, sizeof(path), "%s/namenode.lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int r = errno == EWOULDBLOCK ? -EBUSY : -errno;

        close(fd);
        return r;
    }
    *fd_out = fd;
    return 0;
}

static void build_handlers(struct nnserver *s)
{
    size_t n = nsops_nhandlers + fileops_nhandlers + dnops_nhandlers, k = 0;

    s->handlers = xcalloc(n, sizeof(*s->handlers));
    for (size_t i = 0; i < nsops_nhandlers; i++)
        s->handlers[k++] = nsops_handlers[i];
    for (size_t i = 0; i < fileops_nhandlers; i++)
        s->handlers[k++] = fileops_handlers[i];
    for (size_t i = 0; i < dnops_nhandlers; i++)
        s->handlers[k++] = dnops_handlers[i];
    s->svc.handlers = s->handlers;
    s->svc.nhandlers = n;
    s->svc.ctx = &s->core;
    s->svc.on_open = on_open;
    s->svc.on_close = on_close;
}

/* Frees what start-up made. Handles being closed (the server, the commit
 * module's) finish on the loop, which the caller runs before closing it. */
static void free_modules(struct nnserver *s)
{
    if (s->server)
        rpc_server_close(s->server);
    sizes_free(s->core.sizes);
    commit_close(s->core.commit);
    repair_free(s->core.repair);
    if (s->core.leases)
        lease_table_free(s->core.leases);
    chunkctl_free(s->core.ctl);
    nsops_free(s->core.ns);
    chunkmap_free(s->core.cm);
    registry_free(s->core.reg);
    store_close(s->core.store);
    free(s->handlers);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
}

int nnserver_start(uv_loop_t *loop, const struct nn_config *cfg, struct nnserver **out, char *err,
                   size_t errlen)
{
    struct nnserver *s = xcalloc(1, sizeof(*s));
    struct chunkctl_config cc = {0};
    struct repair_config rc = {0};
    struct lease_ops lops;
    char path[4096], line[80];
    int r;

    s->lock_fd = -1;
    s->cfg = *cfg;
    s->core.cfg = &s->cfg;
    s->core.loop = loop;
    r = store_open(cfg->meta_dir, &s->core.store, err, errlen);
    if (r)
        goto fail;
    s->core.settings = store_get_settings(s->core.store);
    r = lock_dir(cfg->meta_dir, &s->lock_fd);
    if (r) {
        snprintf(err, errlen, "%s: %s", cfg->meta_dir,
                 r == -EBUSY ? "in use by another namenode" : strerror(-r));
        goto fail;
    }
    if (cfg->min_replicas < 1 || cfg->min_replicas > s->core.settings->replication) {
        snprintf(err, errlen, "--min-replicas %u must be between 1 and the replication (%u)",
                 cfg->min_replicas, s->core.settings->replication);
        r = -EINVAL;
        goto fail;
    }
    s->core.reg = registry_new(cfg->dead_timeout_ms);
    s->core.cm = chunkmap_new();
    r = load_state(s);
    if (r) {
        snprintf(err, errlen, "%s: cannot load metadata: %s", cfg->meta_dir, err_str(r));
        goto fail;
    }
    r = commit_new(loop, store_env(s->core.store), cfg->commit_batch, &s->core.commit);
    if (r) {
        snprintf(err, errlen, "cannot set up commits: %s", uv_strerror(r));
        goto fail;
    }
    s->core.sizes = sizes_new(loop, s->core.commit, s->core.store, 0, 0);
    cc.loop = loop;
    cc.store = s->core.store;
    cc.commit = s->core.commit;
    cc.reg = s->core.reg;
    cc.cm = s->core.cm;
    cc.min_replicas = cfg->min_replicas;
    cc.call_timeout_ms = cfg->dn_call_timeout_ms;
    s->core.ctl = chunkctl_new(&cc);
    s->core.ns = nsops_new(&s->core);
    lops = fileops_lease_ops(&s->core);
    s->core.leases = lease_table_new(&lops, (uint32_t)cfg->lease_ms, mono_ms(), true);
    safemode_init(&s->core.safe, cfg->safe_mode_threshold, cfg->safe_mode_timeout_ms, mono_ms());
    rc.loop = loop;
    rc.store = s->core.store;
    rc.commit = s->core.commit;
    rc.reg = s->core.reg;
    rc.cm = s->core.cm;
    rc.ctl = s->core.ctl;
    rc.leases = s->core.leases;
    rc.safe = &s->core.safe;
    rc.streams = cfg->replication_streams ? cfg->replication_streams : 2;
    rc.timeout_ms = cfg->replication_timeout_ms ? cfg->replication_timeout_ms : 60000;
    rc.call_timeout_ms = cfg->dn_call_timeout_ms;
    s->core.repair = repair_new(&rc);
    dnops_check_safe_mode(&s->core);

    build_handlers(s);
    r = rpc_listen(loop, cfg->listen, &s->svc, NULL, &s->server);
    if (r) {
        snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen,
                 r == -EINVAL ? "bad address" : err_str(r));
        s->server = NULL;
        goto fail;
    }
    rpc_server_addr(s->server, s->addr, sizeof(s->addr));
    snprintf(path, sizeof(path), "%s/listen.addr", cfg->meta_dir);
    snprintf(line, sizeof(line), "%s\n", s->addr);
    r = write_file_atomic(path, line, strlen(line));
    if (r) {
        snprintf(err, errlen, "cannot write %s: %s", path, err_str(r));
        goto fail;
    }
    uv_timer_init(loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
    log_info("nnserver: cluster %s listening on %s: %zu chunks, %zu datanodes known, safe mode %s",
             s->core.settings->cluster_id, s->addr, chunkmap_count(s->core.cm),
             registry_count(s->core.reg), s->core.safe.on ? "on" : "off");
    *out = s;
    return 0;
fail:
    free_modules(s);
    return r;
}

const char *nnserver_addr(const struct nnserver *s)
{
    return s->addr;
}

struct nn_core *nnserver_core(struct nnserver *s)
{
    return &s->core;
}

void nnserver_stop(struct nnserver *s)
{
    struct commit_stats st;

    if (s->stopping)
        return;
    s->stopping = true;
    s->core.stopping = true;
    commit_get_stats(s->core.commit, &st);
    log_info("nnserver: shutting down; %" PRIu64 " operations committed in %" PRIu64
             " transactions (at most %" PRIu64 " in one)",
             st.ops, st.batches, st.max_batch);
    uv_timer_stop(&s->tick);
    uv_close((uv_handle_t *)&s->tick, NULL);
    repair_stop(s->core.repair);
    rpc_server_close(s->server);
    s->server = NULL;
    lease_cancel_all(s->core.leases, -ECANCELED);
    sizes_close(s->core.sizes); /* queues what is not committed yet */
    commit_close(s->core.commit);
}

void nnserver_free(struct nnserver *s)
{
    if (!s)
        return;
    if (chunkctl_in_flight(s->core.ctl))
        log_error("nnserver: freed with chunk operations in flight");
    s->core.commit = NULL; /* closed by nnserver_stop, freed on the loop */
    free_modules(s);
}
