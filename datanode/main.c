/*
 * keel-datanode: parses flags and runs one datanode (datanode.h) until
 * SIGTERM or SIGINT.
 */
#include "datanode.h"
#include "flags.h"
#include "log.h"
#include "util.h"
#include "wal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

struct signals {
    uv_signal_t term, intr;
    struct datanode *dn;
};

/* Replicas written since their last flush keep their files open (and 257
 * directories stay open): take every descriptor the system allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("datanode: cannot raise the open file limit: %s", strerror(errno));
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct signals *s = h->data;

    log_info("datanode: %s received", strsignal(signum));
    datanode_stop(s->dn);
    uv_close((uv_handle_t *)&s->term, NULL);
    uv_close((uv_handle_t *)&s->intr, NULL);
}

int main(int argc, char **argv)
{
    const char *data = NULL, *namenode = getenv("KEEL_NAMENODE");
    const char *listen = "127.0.0.1:0", *domain = "default", *boot_id_file = NULL;
    bool no_local_reads = false;
    uint64_t scrub_rate = 8u << 20, capacity = 0, peer_timeout = 5000, io_threads = 4;
    uint64_t repl_rate = 64u << 20, repl_streams = 2, max_inflight = 256u << 20;
    uint64_t wal_size = 64u << 20, poll_us = 100;
    enum log_level level = LOG_INFO;
    const struct flag flags[] = {
        {"data", FLAG_STRING, &data, "data directory: VERSION, chunks/ (required)"},
        {"namenode", FLAG_ADDR, &namenode, "namenode address (env KEEL_NAMENODE)"},
        {"listen", FLAG_ADDR, &listen,
         "data service address for clients and peers; port 0 picks one, written to "
         "DIR/listen.addr"},
        {"domain", FLAG_STRING, &domain, "failure domain (rack, host, zone)"},
        {"scrub-rate", FLAG_SIZE, &scrub_rate,
         "bytes per second the background scrubber verifies; 0 disables it"},
        {"capacity", FLAG_SIZE, &capacity,
         "capacity to report instead of the filesystem's (0: the filesystem's)"},
        {"peer-timeout", FLAG_DURATION, &peer_timeout,
         "timeout of writes forwarded to, and copies sent to, other datanodes"},
        {"replication-rate", FLAG_SIZE, &repl_rate,
         "bytes per second of outgoing replication copies, all together, so client I/O keeps "
         "priority; 0: unlimited, else at least 64K"},
        {"replication-streams", FLAG_UINT, &repl_streams,
         "outgoing replication copies at once (1..64); more wait their turn"},
        {"max-inflight", FLAG_SIZE, &max_inflight,
         "bytes that requests in progress may hold (payloads, replies); past it, connections "
         "are not read until work drains; 0: unbounded, else at least 1M"},
        {"io-threads", FLAG_UINT, &io_threads, "disk I/O threads (1..128)"},
        {"wal-size", FLAG_SIZE, &wal_size,
         "size of DIR/wal, the log of small writes that makes a flush one sequential write; "
         "0: none (flushes sync each replica's file), else at least 8M"},
        {"boot-id-file", FLAG_STRING, &boot_id_file,
         "file whose first line is the machine's boot id (default: the kernel's); the log "
         "is replayed at start only if it was written under another boot"},
        {"no-local-reads", FLAG_BOOL, &no_local_reads,
         "do not tell clients on this host where the replicas are, so they read them only "
         "through this server"},
        {"poll-us", FLAG_UINT, &poll_us,
         "microseconds to keep polling for the next request after each one before sleeping, "
         "yielding the CPU to anything else that can run (0..10000; 0: sleep at once)"},
        {"log-level", FLAG_LOGLEVEL, &level, "error, warn, info or debug"},
    };
    const struct flags_spec spec = {
        "keel-datanode",
        "--data DIR [--namenode HOST:PORT] [options]",
        "Keel storage server: keeps chunk replicas with per-4 KiB checksums in DIR, serves "
        "reads and chained writes, reports to the namenode and scrubs its data.",
        flags,
        (int)ARRAY_SIZE(flags),
        false,
    };
    struct datanode_config cfg = {0};
    struct signals sig = {0};
    char threads[16];
    uv_loop_t loop;
    int first, r, status;

    if (!namenode)
        namenode = "127.0.0.1:7420";
    r = flags_parse(&spec, argc, argv, &first);
    if (r == 1)
        return 0;
    if (r < 0)
        return 2;
    if (first < argc) {
        fprintf(stderr, "keel-datanode: unexpected argument '%s'\n", argv[first]);
        return 2;
    }
    if (!data || !*data) {
        fprintf(stderr, "keel-datanode: --data DIR is required\n");
        return 2;
    }
    if (io_threads < 1 || io_threads > 128) {
        fprintf(stderr, "keel-datanode: --io-threads must be 1..128\n");
        return 2;
    }
    if (repl_rate != 0 && repl_rate < (64u << 10)) {
        fprintf(stderr, "keel-datanode: --replication-rate must be 0 or at least 64K\n");
        return 2;
    }
    if (max_inflight != 0 && max_inflight < (1u << 20)) {
        fprintf(stderr, "keel-datanode: --max-inflight must be 0 or at least 1M\n");
        return 2;
    }
    if (wal_size != 0 && (wal_size < WAL_MIN_SIZE || wal_size % 4096)) {
        fprintf(stderr,
                "keel-datanode: --wal-size must be 0, or at least 8M and a multiple of 4K\n");
        return 2;
    }
    if (repl_streams < 1 || repl_streams > 64) {
        fprintf(stderr, "keel-datanode: --replication-streams must be 1..64\n");
        return 2;
    }
    if (poll_us > 10000) {
        fprintf(stderr, "keel-datanode: --poll-us must be 0..10000\n");
        return 2;
    }
    if (peer_timeout < 10 || peer_timeout > 600000) {
        fprintf(stderr, "keel-datanode: --peer-timeout must be 10ms..10m\n");
        return 2;
    }
    log_init("datanode", level);
    keep_freed_memory();
    /* The pool is sized before the loop's first work item. */
    snprintf(threads, sizeof(threads), "%u", (unsigned)io_threads);
    setenv("UV_THREADPOOL_SIZE", threads, 1);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    cfg.data_dir = data;
    cfg.namenode = namenode;
    cfg.listen = listen;
    cfg.domain = domain;
    cfg.scrub_rate = scrub_rate;
    cfg.capacity = capacity;
    cfg.peer_timeout_ms = peer_timeout;
    cfg.replication_rate = repl_rate;
    cfg.replication_streams = (unsigned)repl_streams;
    cfg.max_inflight = max_inflight;
    cfg.wal_size = wal_size;
    cfg.boot_id_file = boot_id_file;
    cfg.no_local_reads = no_local_reads;
    cfg.poll_us = (unsigned)poll_us;
    if (uv_loop_init(&loop) < 0) {
        fprintf(stderr, "keel-datanode: cannot create the event loop\n");
        return 1;
    }
    r = datanode_start(&loop, &cfg, &sig.dn);
    if (r) {
        uv_loop_close(&loop);
        return 1;
    }
    uv_signal_init(&loop, &sig.term);
    uv_signal_init(&loop, &sig.intr);
    sig.term.data = sig.intr.data = &sig;
    uv_signal_start(&sig.term, on_signal, SIGTERM);
    uv_signal_start(&sig.intr, on_signal, SIGINT);
    /* The datanode's own handles decide when the loop ends. */
    uv_unref((uv_handle_t *)&sig.term);
    uv_unref((uv_handle_t *)&sig.intr);
    uv_run(&loop, UV_RUN_DEFAULT);
    status = datanode_status(sig.dn);
    if (!uv_is_closing((uv_handle_t *)&sig.term)) {
        /* Stopped from inside (the namenode refused it): close the rest. */
        uv_close((uv_handle_t *)&sig.term, NULL);
        uv_close((uv_handle_t *)&sig.intr, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    datanode_free(sig.dn);
    if (uv_loop_close(&loop) != 0)
        log_warn("datanode: event loop closed with handles still open");
    log_info("datanode: stopped");
    return status ? 1 : 0;
}
