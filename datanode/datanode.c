/*
 * datanode: see datanode.h for the order of start-up and shutdown.
 */
#include "datanode.h"

#include "chunkstore.h"
#include "copyrecv.h"
#include "dataserv.h"
#include "errors.h"
#include "inflight.h"
#include "log.h"
#include "nnlink.h"
#include "peers.h"
#include "replicas.h"
#include "replicate.h"
#include "scrubber.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define PIECE_BYTES      (1u << 20)
#define DEFAULT_MAX_OPEN 256

struct datanode {
    uv_loop_t *loop;
    struct chunkstore *cs;
    struct replicas *reps;
    struct peers *peers;
    struct inflight *inflight;
    struct copyrecv *copies;
    struct replicate *repl;
    struct dataserv *ds;
    struct nnlink *nn;
    struct scrubber *scrub;
    struct replicas_hooks rhooks;
    struct replicate_hooks phooks;
    char addr[64];
    int status;
    bool started;
    bool stopping;
};

/* ------------------------------------------------------------ wiring */

static void on_report(void *ctx, const struct replica_info *ri, bool deleted)
{
    struct datanode *dn = ctx;

    if (dn->nn)
        nnlink_report(dn->nn, ri, deleted);
}

static void on_disk_error(void *ctx, uint64_t chunk_id, int err)
{
    struct datanode *dn = ctx;

    if (dn->nn)
        nnlink_disk_error(dn->nn, err);
}

static void on_copied(void *ctx, const struct replicate_outcome *o)
{
    struct datanode *dn = ctx;

    if (dn->nn)
        nnlink_replicate_done(dn->nn, o);
}

static uint32_t load(void *ctx)
{
    struct datanode *dn = ctx;

    return dataserv_load(dn->ds);
}

static uint32_t copies(void *ctx)
{
    struct datanode *dn = ctx;

    return (uint32_t)(replicate_active(dn->repl) + copyrecv_active(dn->copies));
}

static void on_fatal(void *ctx, int err, const char *why)
{
    struct datanode *dn = ctx;

    dn->status = err ? err : -EINVAL;
    datanode_stop(dn);
}

static int load_replica(void *arg, const struct replica_info *ri)
{
    struct datanode *dn = arg;

    return replicas_load(dn->reps, ri);
}

/* Publishes the bound address for scripts and tests. */
static int write_addr(struct datanode *dn)
{
    char path[4096], line[80];
    int n = snprintf(line, sizeof(line), "%s\n", dn->addr);

    if (snprintf(path, sizeof(path), "%s/listen.addr", chunkstore_dir(dn->cs)) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    return write_file_atomic(path, line, (size_t)n);
}

/* ------------------------------------------------------------- life */

int datanode_start(uv_loop_t *loop, const struct datanode_config *cfg, struct datanode **out)
{
    struct datanode *dn = xcalloc(1, sizeof(*dn));
    struct dataserv_config dcfg = {0};
    struct nnlink_config ncfg = {0};
    struct replicate_config pcfg = {PIECE_BYTES, cfg->replication_rate, cfg->replication_streams};
    uint32_t peer_ms = cfg->peer_timeout_ms ? (uint32_t)cfg->peer_timeout_ms : 5000;
    int r;

    dn->loop = loop;
    r = chunkstore_open(cfg->data_dir, &dn->cs);
    if (r) {
        log_error("datanode: cannot use data directory %s: %s%s", cfg->data_dir, err_str(r),
                  r == -EBADMSG || r == -EPROTONOSUPPORT ? " (its VERSION file)" : "");
        goto fail;
    }
    dn->rhooks = (struct replicas_hooks){on_report, on_disk_error, dn};
    replicas_new(loop, dn->cs, cfg->max_open ? cfg->max_open : DEFAULT_MAX_OPEN, &dn->rhooks,
                 &dn->reps);
    r = cfg->boot_id_file ? chunkstore_read_boot_id(dn->cs, cfg->boot_id_file) : 0;
    if (r) {
        log_error("datanode: cannot read a boot id from %s: %s", cfg->boot_id_file, err_str(r));
        goto fail;
    }
    r = chunkstore_use_wal(dn->cs, cfg->wal_size);
    if (r == 0)
        r = chunkstore_scan(dn->cs, load_replica, dn);
    if (r) {
        log_error("datanode: scanning %s: %s%s", cfg->data_dir, err_str(r),
                  r == -EEXIST ? " (replicas but no VERSION file)" : "");
        goto fail;
    }
    log_info("datanode: %zu replicas in %s", replicas_count(dn->reps), cfg->data_dir);
    peers_new(loop, peer_ms, &dn->peers);
    inflight_new(cfg->max_inflight, &dn->inflight);
    /* A copy whose source went quiet for several peer timeouts is dead. */
    copyrecv_new(loop, dn->cs, dn->reps, dn->inflight, 6 * peer_ms, &dn->copies);
    dn->phooks = (struct replicate_hooks){on_copied, dn};
    replicate_new(loop, dn->reps, dn->peers, &pcfg, &dn->phooks, &dn->repl);

    dcfg.loop = loop;
    dcfg.listen = cfg->listen;
    dcfg.cs = dn->cs;
    dcfg.reps = dn->reps;
    dcfg.peers = dn->peers;
    dcfg.copies = dn->copies;
    dcfg.inflight = dn->inflight;
    dcfg.no_local_reads = cfg->no_local_reads;
    dcfg.poll_us = cfg->poll_us;
    r = dataserv_start(&dcfg, &dn->ds);
    if (r) {
        log_error("datanode: cannot listen on %s: %s", cfg->listen, err_str(r));
        goto fail;
    }
    dataserv_addr(dn->ds, dn->addr, sizeof(dn->addr));
    r = write_addr(dn);
    if (r) {
        log_error("datanode: cannot write %s/listen.addr: %s", cfg->data_dir, err_str(r));
        goto fail;
    }

    ncfg.loop = loop;
    ncfg.namenode = cfg->namenode;
    ncfg.addr = dn->addr;
    ncfg.domain = cfg->domain;
    ncfg.capacity = cfg->capacity;
    ncfg.cs = dn->cs;
    ncfg.reps = dn->reps;
    ncfg.repl = dn->repl;
    ncfg.load = load;
    ncfg.copies = copies;
    ncfg.fatal = on_fatal;
    ncfg.ctx = dn;
    r = nnlink_start(&ncfg, &dn->nn);
    if (r) {
        log_error("datanode: bad namenode address %s", cfg->namenode);
        goto fail;
    }
    if (cfg->scrub_rate)
        scrubber_start(loop, dn->reps, cfg->scrub_rate, &dn->scrub);
    log_info("datanode: serving %s on %s (domain %s), namenode %s", cfg->data_dir, dn->addr,
             cfg->domain, cfg->namenode);
    dn->started = true;
    *out = dn;
    return 0;
fail:
    /* Nothing has run on the loop yet: take down what exists, let the loop
     * close the handles, then free. */
    datanode_stop(dn);
    uv_run(loop, UV_RUN_DEFAULT);
    datanode_free(dn);
    return r;
}

void datanode_stop(struct datanode *dn)
{
    if (dn->stopping)
        return;
    dn->stopping = true;
    if (dn->started)
        log_info("datanode: shutting down");
    if (dn->scrub)
        scrubber_stop(dn->scrub);
    if (dn->ds)
        dataserv_stop(dn->ds);
    if (dn->copies)
        copyrecv_shutdown(dn->copies);
    if (dn->repl)
        replicate_shutdown(dn->repl);
    if (dn->nn)
        nnlink_stop(dn->nn);
    if (dn->peers)
        peers_close(dn->peers);
    dn->peers = NULL;
    if (dn->reps)
        replicas_shutdown(dn->reps);
}

int datanode_status(const struct datanode *dn)
{
    return dn->status;
}

void datanode_addr(const struct datanode *dn, char *buf, size_t len)
{
    snprintf(buf, len, "%s", dn->addr);
}

void datanode_free(struct datanode *dn)
{
    if (!dn)
        return;
    scrubber_free(dn->scrub);
    nnlink_free(dn->nn);
    dataserv_free(dn->ds);
    replicate_free(dn->repl);
    copyrecv_free(dn->copies);
    inflight_free(dn->inflight);
    replicas_free(dn->reps);
    chunkstore_close(dn->cs);
    free(dn);
}
