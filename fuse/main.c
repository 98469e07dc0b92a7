/*
 * keel-fuse: mounts a Keel cluster as a file system, the datastore of a
 * hypervisor host.
 *
 *   keel-fuse --namenode 127.0.0.1:7420 /mnt/keel [-f] [-s] [-o opt,...]
 *
 * Parses Keel's flags, leaves the rest to libfuse (-f foreground, -s single
 * thread, -d debug, -o mount options), checks the namenode answers, mounts,
 * daemonizes, then connects libkeel (whose I/O thread must be born in the
 * daemon) and serves until unmounted or signalled.
 */
#include "keelfs.h"

#include "fdio.h"
#include "serve.h"

#include <fuse_lowlevel.h>

#include "flags.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static bool to_syslog;

static void log_line(int level, const char *line, void *arg)
{
    if (to_syslog)
        syslog(level == KEEL_LOG_ERROR  ? LOG_ERR
               : level == KEEL_LOG_WARN ? LOG_WARNING
                                        : LOG_INFO,
               "%s", line);
    else
        fprintf(stderr, "%s\n", line);
}

static void usage(void)
{
    printf("usage: keel-fuse [--namenode HOST:PORT] MOUNTPOINT [-f] [-s] [-d] [-o OPT,...]\n\n"
           "Mounts a Keel cluster as a file system for VM images.\n\n"
           "keel options:\n"
           "  --namenode HOST:PORT   namenode address (default $KEEL_NAMENODE or 127.0.0.1:7420)\n"
           "  --timeout TIME         timeout of one request to a node (default 10s)\n"
           "  --retry TIME           how long to keep retrying an unreachable namenode (default "
           "300s)\n"
           "  --log-level LEVEL      error, warn, info or debug (default warn)\n"
           "  --no-local-reads       read replicas only through their datanodes, never from\n"
           "                         the files of a datanode on this host\n"
           "  --fanout-max SIZE      writes up to SIZE go to every replica at once, larger\n"
           "                         ones down the chain of replicas (default 128K; 0: all\n"
           "                         down the chain)\n"
           "  --poll-us N            after each request, keep polling for the next event\n"
           "                         for N microseconds before sleeping, yielding the CPU\n"
           "                         to anything else that can run (default 100; 0: sleep\n"
           "                         at once; at most 10000)\n"
           "  --help                 this help, then libfuse's\n\n"
           "libfuse options:\n");
}

/* A mountinfo path field, its octal escapes (\040 for a space) undone. */
static void unescape(char *s)
{
    char *out = s;

    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
            s += 4;
        } else {
            *out++ = *s++;
        }
    }
    *out = '\0';
}

/*
 * The kernel gives a FUSE mount 128 KiB of read-ahead whatever INIT asks
 * for: it keeps the smaller of the two, and the default of a new mount's
 * bdi is that. Sequential buffered reads then reach keel-fuse as 256 KiB
 * requests, one or two at a time; with the read-ahead at KEELFS_MAX_IO
 * they went from about 930 MB/s to about 1,200 (fio, 1 MiB reads of a
 * 1 GiB file, three replicas on one host). Only the bdi's sysfs file can
 * raise it, so this writes it, found by the mount's device number in
 * /proc/self/mountinfo (a stat of the mount point would wait on this very
 * process). `mountpoint` is as fuse_parse_cmdline leaves it, made absolute
 * by realpath before the mount. Without the right to (not root), the mount
 * keeps the default. Returns whether the read-ahead was raised.
 */
static bool raise_readahead(const char *mountpoint)
{
    char *line = NULL, path[80] = "";
    size_t cap = 0;
    bool ok = false;
    FILE *f = fopen("/proc/self/mountinfo", "r");

    while (f && getline(&line, &cap, f) > 0) {
        unsigned maj, min;
        char mnt[4096];

        /* id parent major:minor root mount-point ... */
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) != 3)
            continue;
        unescape(mnt);
        if (strcmp(mnt, mountpoint) == 0) /* the last one is on top */
            snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
    }
    if (f)
        fclose(f);
    free(line);
    if (path[0] && (f = fopen(path, "w"))) {
        ok = fprintf(f, "%u\n", KEELFS_MAX_IO >> 10) > 0;
        ok = fclose(f) == 0 && ok;
    }
    return ok;
}

/* Takes "--name" out of argv; whether it was there. */
static bool take_switch(int *argc, char **argv, const char *name)
{
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], name) != 0)
            continue;
        memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof(char *));
        (*argc)--;
        return true;
    }
    return false;
}

/* Takes "--name value" / "--name=value" out of argv; NULL if absent. */
static const char *take_flag(int *argc, char **argv, const char *name, bool *bad)
{
    size_t n = strlen(name);

    for (int i = 1; i < *argc; i++) {
        const char *v = NULL;
        int drop = 0;

        if (strncmp(argv[i], name, n) != 0)
            continue;
        if (argv[i][n] == '=') {
            v = argv[i] + n + 1;
            drop = 1;
        } else if (argv[i][n] == '\0') {
            if (i + 1 >= *argc) {
                *bad = true;
                return NULL;
            }
            v = argv[i + 1];
            drop = 2;
        } else {
            continue;
        }
        memmove(&argv[i], &argv[i + drop], (size_t)(*argc - i - drop + 1) * sizeof(char *));
        *argc -= drop;
        return v;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *namenode = getenv("KEEL_NAMENODE"), *v;
    uint64_t timeout_ms = 10000, retry_ms = 300000, fanout_max = UINT64_MAX, poll_us = 100;
    enum log_level level = LOG_WARN;
    struct fuse_cmdline_opts fo;
    struct keel_options o;
    struct keelfs fs = {0};
    struct fuse *fuse = NULL;
    struct fuse_args args;
    struct sockaddr_in sa;
    keel_client *probe;
    bool bad = false, no_local_reads, fdio_ok;
    int r, rc = 1;

    if ((v = take_flag(&argc, argv, "--namenode", &bad)))
        namenode = v;
    if ((v = take_flag(&argc, argv, "--timeout", &bad)) && parse_duration_ms(v, &timeout_ms))
        bad = true;
    if ((v = take_flag(&argc, argv, "--retry", &bad)) && parse_duration_ms(v, &retry_ms))
        bad = true;
    if ((v = take_flag(&argc, argv, "--log-level", &bad)) && log_parse_level(v, &level))
        bad = true;
    if ((v = take_flag(&argc, argv, "--fanout-max", &bad)) &&
        (parse_size(v, &fanout_max) || fanout_max > UINT32_MAX))
        bad = true;
    if ((v = take_flag(&argc, argv, "--poll-us", &bad)) &&
        (parse_uint(v, &poll_us) || poll_us > 10000))
        bad = true;
    no_local_reads = take_switch(&argc, argv, "--no-local-reads");
    if (!namenode || !*namenode)
        namenode = "127.0.0.1:7420";
    if (bad || parse_addr(namenode, &sa)) {
        fprintf(stderr, "keel-fuse: bad or missing flag value (see --help)\n");
        return 2;
    }
    args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
    if (fuse_parse_cmdline(&args, &fo) != 0)
        return 2;
    if (fo.show_help) {
        usage();
        fuse_cmdline_help();
        fuse_lib_help(&args);
        rc = 0;
        goto out;
    }
    if (fo.show_version) {
        printf("keel-fuse 0.1, FUSE library %s\n", fuse_pkgversion());
        rc = 0;
        goto out;
    }
    if (!fo.mountpoint) {
        fprintf(stderr, "keel-fuse: no mountpoint (see --help)\n");
        rc = 2;
        goto out;
    }

    keep_freed_memory(); /* a read reply or write-behind copy per request */
    keel_options_init(&o);
    o.call_timeout_ms = (uint32_t)timeout_ms;
    o.retry_ms = (uint32_t)MIN(retry_ms, 10000);
    o.log_fn = log_line;
    o.log_level = (int)level;
    o.client_name = "keel-fuse";
    o.local_reads = !no_local_reads;
    if (fanout_max != UINT64_MAX)
        o.fanout_max = (uint32_t)fanout_max;
    o.poll_us = (uint32_t)poll_us;
    /* Fail early, in the foreground, if the cluster cannot be reached. */
    r = keel_connect(namenode, &o, &probe);
    if (r) {
        fprintf(stderr, "keel-fuse: cannot reach the namenode at %s: %s\n", namenode,
                keel_strerror(r));
        goto out;
    }
    keel_disconnect(probe);

    fuse = fuse_new(&args, &keelfs_ops, sizeof(keelfs_ops), &fs);
    if (!fuse)
        goto out;
    if (fuse_mount(fuse, fo.mountpoint) != 0)
        goto out;
    if (!raise_readahead(fo.mountpoint) && level >= LOG_INFO)
        log_line(KEEL_LOG_INFO, "keel-fuse: read-ahead left at the kernel's 128 KiB", NULL);
    fdio_ok = fdio_install(fuse_get_session(fuse), keelfs_take) == 0;
    if (!fdio_ok)
        log_line(KEEL_LOG_WARN,
                 "keel-fuse: direct writes to one file will be serialised, and every "
                 "request waits on a libfuse worker",
                 NULL);
    if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0)
        goto unmount;
    to_syslog = !fo.foreground;
    if (fuse_daemonize(fo.foreground) != 0)
        goto signals;
    o.retry_ms = (uint32_t)retry_ms;
    r = keel_connect(namenode, &o, &fs.client);
    if (r) {
        log_line(KEEL_LOG_ERROR, "keel-fuse: lost the namenode while mounting", NULL);
        goto signals;
    }
    r = -ENOTSUP;
    if (fdio_ok && !fo.singlethread)
        r = serve_run(fuse_get_session(fuse), fs.client, keelfs_take,
                      KEELFS_MAX_IO + KEELFS_REQ_HEADROOM);
    if (r == -ENOTSUP)
        r = fo.singlethread ? fuse_loop(fuse) : fuse_loop_mt(fuse, fo.clone_fd);
    /* libfuse's loops return the signal that ended them (SIGTERM, SIGINT,
     * SIGHUP: an orderly stop, as serve_run's 0 is); only an error fails. */
    rc = r < 0 ? 1 : 0;
    keel_disconnect(fs.client);
  signals:
    fuse_remove_signal_handlers(fuse_get_session(fuse));
unmount:
    fuse_unmount(fuse);
out:
    if (fuse)
        fuse_destroy(fuse);
    free(fo.mountpoint);
    fuse_opt_free_args(&args);
    return rc;
}
