/*
 * keel-namenode: parses flags, then either formats a metadata directory or
 * runs the namenode (nnserver) until SIGTERM or SIGINT.
 */
#include "flags.h"
#include "log.h"
#include "nnserver.h"
#include "util.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opts {
    const char *meta;
    bool format;
    uint64_t chunk_size;
    uint64_t replication;
    uint64_t min_replicas;
    const char *listen;
    uint64_t dead_timeout_ms;
    uint64_t heartbeat_ms;
    uint64_t lease_ms;
    uint64_t safe_mode_timeout_ms;
    uint64_t safe_mode_threshold;
    uint64_t dn_timeout_ms;
    uint64_t commit_batch;
    uint64_t replication_streams;
    uint64_t replication_timeout_ms;
    enum log_level level;
};

struct daemon {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    struct nnserver *srv;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;

    log_info("signal %d, stopping", signum);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    nnserver_stop(d->srv);
}

/* Checks what flags cannot: ranges and relations. */
static int check(const struct opts *o)
{
    if (!o->meta) {
        fprintf(stderr, "keel-namenode: --meta DIR is required (see --help)\n");
        return -1;
    }
    if (o->replication < 1 || o->replication > STORE_MAX_REPLICATION) {
        fprintf(stderr, "keel-namenode: --replication must be 1 to %u\n", STORE_MAX_REPLICATION);
        return -1;
    }
    if (o->format)
        return 0;
    if (o->min_replicas < 1 || o->min_replicas > STORE_MAX_REPLICATION) {
        fprintf(stderr, "keel-namenode: --min-replicas must be 1 to %u\n", STORE_MAX_REPLICATION);
        return -1;
    }
    if (o->heartbeat_ms < 10 || o->heartbeat_ms > UINT32_MAX || o->lease_ms < 100 ||
        o->lease_ms > UINT32_MAX || o->dn_timeout_ms < 10 || o->dn_timeout_ms > UINT32_MAX) {
        fprintf(stderr, "keel-namenode: --heartbeat-interval, --lease-timeout or "
                        "--datanode-timeout out of range\n");
        return -1;
    }
    if (o->dead_timeout_ms <= o->heartbeat_ms) {
        fprintf(stderr, "keel-namenode: --dead-timeout must be longer than "
                        "--heartbeat-interval\n");
        return -1;
    }
    if (o->safe_mode_threshold > 100) {
        fprintf(stderr, "keel-namenode: --safe-mode-threshold is a percentage (0 to 100)\n");
        return -1;
    }
    if (o->commit_batch > 65536) {
        fprintf(stderr, "keel-namenode: --commit-batch must be at most 65536\n");
        return -1;
    }
    if (o->replication_streams < 1 || o->replication_streams > 64) {
        fprintf(stderr, "keel-namenode: --replication-streams must be 1 to 64\n");
        return -1;
    }
    if (o->replication_timeout_ms < 100) {
        fprintf(stderr, "keel-namenode: --replication-timeout must be at least 100ms\n");
        return -1;
    }
    return 0;
}

static int run(const struct opts *o)
{
    struct nn_config cfg = {
        .meta_dir = o->meta,
        .listen = o->listen,
        .min_replicas = (uint32_t)o->min_replicas,
        .dead_timeout_ms = o->dead_timeout_ms,
        .heartbeat_ms = o->heartbeat_ms,
        .lease_ms = o->lease_ms,
        .safe_mode_timeout_ms = o->safe_mode_timeout_ms,
        .safe_mode_threshold = (uint32_t)o->safe_mode_threshold,
        .dn_call_timeout_ms = (uint32_t)o->dn_timeout_ms,
        .commit_batch = (uint32_t)o->commit_batch,
        .replication_streams = (uint32_t)o->replication_streams,
        .replication_timeout_ms = o->replication_timeout_ms,
    };
    struct daemon d = {0};
    char err[512] = "";
    int r;

    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&d.loop) < 0) {
        fprintf(stderr, "keel-namenode: cannot create the event loop\n");
        return 1;
    }
    r = nnserver_start(&d.loop, &cfg, &d.srv, err, sizeof(err));
    if (r) {
        fprintf(stderr, "keel-namenode: %s\n", err);
        uv_run(&d.loop, UV_RUN_DEFAULT);
        uv_loop_close(&d.loop);
        return 1;
    }
    uv_signal_init(&d.loop, &d.sigterm);
    uv_signal_init(&d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    nnserver_free(d.srv);
    r = uv_loop_close(&d.loop);
    if (r < 0)
        log_error("handles left open at exit: %s", uv_strerror(r));
    log_info("stopped");
    return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct opts o = {
        .chunk_size = 64ull << 20,
        .replication = 3,
        .min_replicas = 2,
        .listen = "127.0.0.1:7420",
        .dead_timeout_ms = 30000,
        .heartbeat_ms = 3000,
        .lease_ms = 10000,
        .safe_mode_timeout_ms = 30000,
        .safe_mode_threshold = 99,
        .dn_timeout_ms = 10000,
        .commit_batch = 512,
        .replication_streams = 2,
        .replication_timeout_ms = 60000,
        .level = LOG_INFO,
    };
    const struct flag flags[] = {
        {"meta", FLAG_STRING, &o.meta, "metadata directory (LMDB environment, listen.addr)"},
        {"format", FLAG_BOOL, &o.format, "create a new cluster in --meta and exit"},
        {"chunk-size", FLAG_SIZE, &o.chunk_size,
         "with --format: chunk size, a multiple of 4K from 64K to 1G"},
        {"replication", FLAG_UINT, &o.replication,
         "with --format: default replication factor of new files"},
        {"min-replicas", FLAG_UINT, &o.min_replicas,
         "fewest current replicas a write, flush or recovery may go on with"},
        {"listen", FLAG_ADDR, &o.listen,
         "address for clients and datanodes; port 0 picks a free one"},
        {"dead-timeout", FLAG_DURATION, &o.dead_timeout_ms, "a datanode silent this long is dead"},
        {"heartbeat-interval", FLAG_DURATION, &o.heartbeat_ms,
         "how often datanodes heartbeat (told at registration)"},
        {"lease-timeout", FLAG_DURATION, &o.lease_ms,
         "a write lease not renewed this long is lost"},
        {"safe-mode-timeout", FLAG_DURATION, &o.safe_mode_timeout_ms,
         "safe mode ends after this even if reports are missing"},
        {"safe-mode-threshold", FLAG_UINT, &o.safe_mode_threshold,
         "percent of known chunks with a reported replica that ends safe mode"},
        {"datanode-timeout", FLAG_DURATION, &o.dn_timeout_ms,
         "timeout of calls to datanodes (create, set version, trim)"},
        {"commit-batch", FLAG_UINT, &o.commit_batch,
         "most metadata operations in one LMDB transaction"},
        {"replication-streams", FLAG_UINT, &o.replication_streams,
         "re-replication copies one datanode sends, and receives, at a time"},
        {"replication-timeout", FLAG_DURATION, &o.replication_timeout_ms,
         "a re-replication copy not done by then is retried elsewhere"},
        {"log-level", FLAG_LOGLEVEL, &o.level, "error, warn, info or debug"},
    };
    const struct flags_spec spec = {
        .prog = "keel-namenode",
        .usage = "--meta DIR [--format [--chunk-size SIZE] [--replication N]] [options]",
        .about = "The Keel metadata server: namespace, chunk map and datanode registry in "
                 "LMDB, write leases, placement. Run once with --format to create a cluster.",
        .flags = flags,
        .nflags = (int)ARRAY_SIZE(flags),
    };
    char err[512] = "";
    int first, r;

    r = flags_parse(&spec, argc, argv, &first);
    if (r == 1)
        return 0;
    if (r < 0)
        return 2;
    if (check(&o))
        return 2;
    log_init("keel-namenode", o.level);
    if (o.format) {
        r = nnserver_format(o.meta, o.chunk_size, (uint32_t)o.replication, err, sizeof(err));
        if (r) {
            fprintf(stderr, "keel-namenode: %s\n", err);
            return 1;
        }
        log_info("formatted %s (chunk size %llu, replication %llu)", o.meta,
                 (unsigned long long)o.chunk_size, (unsigned long long)o.replication);
        return 0;
    }
    return run(&o);
}
