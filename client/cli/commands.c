/*
 * commands: see commands.h. Errors print one line on stderr:
 *
 *   keel: ls /nope: No such file or directory
 */
#include "commands.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_BLOCK (4u << 20)
#define COPY_DEPTH 4

static int fail(const char *what, const char *arg, int err)
{
    fprintf(stderr, "keel: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", keel_strerror(err));
    return 1;
}

static int usage(const char *name)
{
    for (int i = 0; i < ncommands; i++)
        if (strcmp(commands[i].name, name) == 0)
            fprintf(stderr, "usage: keel %s %s\n", name, commands[i].usage);
    return 2;
}

/* Strips leading "-x" options of argv (letters in allowed) into flags. */
static int short_opts(int *argc, char ***argv, const char *allowed, bool *flags)
{
    while (*argc > 0 && (*argv)[0][0] == '-' && (*argv)[0][1] && strcmp((*argv)[0], "-") != 0) {
        const char *o = (*argv)[0] + 1;

        if (strcmp((*argv)[0], "--") == 0) {
            (*argc)--;
            (*argv)++;
            break;
        }
        for (; *o; o++) {
            const char *at = strchr(allowed, *o);
            if (!at)
                return -1;
            flags[at - allowed] = true;
        }
        (*argc)--;
        (*argv)++;
    }
    return 0;
}

static const char *type_name(uint32_t mode)
{
    return S_ISDIR(mode) ? "dir" : S_ISLNK(mode) ? "symlink" : S_ISREG(mode) ? "file" : "other";
}

static void mode_string(uint32_t mode, char out[11])
{
    static const char rwx[] = "rwxrwxrwx";

    out[0] = S_ISDIR(mode) ? 'd' : S_ISLNK(mode) ? 'l' : '-';
    for (int i = 0; i < 9; i++)
        out[i + 1] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
    out[10] = '\0';
}

static void json_stat(struct json *j, const char *name, const struct keel_stat *st)
{
    if (name)
        json_str(j, "name", name);
    json_u64(j, "ino", st->ino);
    json_str(j, "type", type_name(st->mode));
    json_u64(j, "mode", st->mode & 07777);
    json_u64(j, "nlink", st->nlink);
    json_u64(j, "uid", st->uid);
    json_u64(j, "gid", st->gid);
    json_u64(j, "size", st->size);
    json_u64(j, "allocated", st->allocated);
    json_i64(j, "mtime_ns", st->mtime_ns);
    json_i64(j, "ctime_ns", st->ctime_ns);
    json_u64(j, "replication", st->replication);
}

/* ------------------------------------------------------------- status */

static void print_nodes(struct cli *cli, const struct keel_status *st)
{
    char cap[32], used[32];

    if (cli->json) {
        json_begin_array(&cli->j, "nodes");
        for (size_t i = 0; i < st->nnodes; i++) {
            const struct keel_node *n = &st->nodes[i];

            json_begin(&cli->j, NULL);
            json_u64(&cli->j, "node_id", n->node_id);
            json_str(&cli->j, "addr", n->addr);
            json_str(&cli->j, "domain", n->domain);
            json_str(&cli->j, "state", keel_node_state_name(n->state));
            json_u64(&cli->j, "capacity", n->capacity);
            json_u64(&cli->j, "used", n->used);
            json_u64(&cli->j, "chunks", n->chunks);
            json_u64(&cli->j, "since_heartbeat_ms", n->since_heartbeat_ms);
            json_u64(&cli->j, "load", n->load);
            json_u64(&cli->j, "decommission_left", n->decommission_left);
            json_end(&cli->j);
        }
        json_end_array(&cli->j);
        return;
    }
    printf("%-5s %-22s %-10s %-16s %10s %10s %8s %6s\n", "ID", "ADDRESS", "DOMAIN", "STATE",
           "CAPACITY", "USED", "CHUNKS", "SEEN");
    for (size_t i = 0; i < st->nnodes; i++) {
        const struct keel_node *n = &st->nodes[i];
        char state[40];

        if (n->state == 3)
            snprintf(state, sizeof(state), "draining(%" PRIu64 ")", n->decommission_left);
        else
            snprintf(state, sizeof(state), "%s", keel_node_state_name(n->state));
        printf("%-5" PRIu64 " %-22s %-10s %-16s %10s %10s %8" PRIu64 " %5.1fs\n", n->node_id,
               n->addr, n->domain, state, human_size(n->capacity, cap, sizeof(cap)),
               human_size(n->used, used, sizeof(used)), n->chunks,
               (double)n->since_heartbeat_ms / 1000.0);
    }
}

static int cmd_status(struct cli *cli, int argc, char **argv)
{
    struct keel_status st;
    char cs[32];
    int r;

    if (argc != 0)
        return usage("status");
    r = keel_status(cli->c, &st);
    if (r)
        return fail("status", NULL, r);
    if (cli->json) {
        json_begin(&cli->j, NULL);
        json_str(&cli->j, "cluster_id", st.cluster_id);
        json_u64(&cli->j, "chunk_size", st.chunk_size);
        json_u64(&cli->j, "replication", st.replication);
        json_u64(&cli->j, "min_replicas", st.min_replicas);
        json_bool(&cli->j, "safe_mode", st.safe_mode);
        json_u64(&cli->j, "files", st.files);
        json_begin(&cli->j, "chunks");
        json_u64(&cli->j, "total", st.chunks);
        json_u64(&cli->j, "healthy", st.healthy);
        json_u64(&cli->j, "under_replicated", st.under_replicated);
        json_u64(&cli->j, "missing", st.missing);
        json_u64(&cli->j, "misplaced", st.misplaced);
        json_u64(&cli->j, "stale_pending", st.stale_pending);
        json_u64(&cli->j, "corrupt", st.corrupt);
        json_u64(&cli->j, "replication_queue", st.repl_queue);
        json_u64(&cli->j, "replication_running", st.repl_running);
        json_end(&cli->j);
        print_nodes(cli, &st);
        json_end(&cli->j);
        json_done(&cli->j);
    } else {
        printf("cluster %s  chunk size %s  replication %u (min %u)%s\n", st.cluster_id,
               human_size(st.chunk_size, cs, sizeof(cs)), st.replication, st.min_replicas,
               st.safe_mode ? "  SAFE MODE" : "");
        printf("files %" PRIu64 "  chunks %" PRIu64 ": %" PRIu64 " healthy, %" PRIu64
               " under-replicated, %" PRIu64 " missing, %" PRIu64 " misplaced, %" PRIu64
               " corrupt, %" PRIu64 " stale replicas pending deletion\n",
               st.files, st.chunks, st.healthy, st.under_replicated, st.missing, st.misplaced,
               st.corrupt, st.stale_pending);
        if (st.repl_queue || st.repl_running)
            printf("re-replication: %" PRIu64 " queued, %" PRIu64 " running\n", st.repl_queue,
                   st.repl_running);
        printf("\n");
        print_nodes(cli, &st);
    }
    keel_status_free(&st);
    return 0;
}

static int cmd_nodes(struct cli *cli, int argc, char **argv)
{
    struct keel_status st;
    int r;

    if (argc != 0)
        return usage("nodes");
    r = keel_status(cli->c, &st);
    if (r)
        return fail("nodes", NULL, r);
    if (cli->json)
        json_begin(&cli->j, NULL);
    print_nodes(cli, &st);
    if (cli->json) {
        json_end(&cli->j);
        json_done(&cli->j);
    }
    keel_status_free(&st);
    return 0;
}

/* Finds a node by id or address. */
static int find_node(struct cli *cli, const char *spec, uint64_t *id)
{
    struct keel_status st;
    char *end;
    uint64_t want = strtoull(spec, &end, 10);
    int r = keel_status(cli->c, &st);

    if (r)
        return r;
    r = -ENOENT;
    for (size_t i = 0; i < st.nnodes; i++) {
        if ((*end == '\0' && st.nodes[i].node_id == want) || strcmp(st.nodes[i].addr, spec) == 0) {
            *id = st.nodes[i].node_id;
            r = 0;
        }
    }
    keel_status_free(&st);
    return r;
}

static int decommission(struct cli *cli, int argc, char **argv, bool back)
{
    const char *name = back ? "recommission" : "decommission";
    uint64_t id;
    int r;

    if (argc != 1)
        return usage(name);
    r = find_node(cli, argv[0], &id);
    if (r == 0)
        r = keel_decommission(cli->c, id, back);
    if (r)
        return fail(name, argv[0], r);
    if (cli->json) {
        json_begin(&cli->j, NULL);
        json_u64(&cli->j, "node_id", id);
        json_str(&cli->j, "action", name);
        json_end(&cli->j);
        json_done(&cli->j);
    } else {
        printf("node %" PRIu64 ": %s started\n", id, name);
    }
    return 0;
}

static int cmd_decommission(struct cli *cli, int argc, char **argv)
{
    return decommission(cli, argc, argv, false);
}

static int cmd_recommission(struct cli *cli, int argc, char **argv)
{
    return decommission(cli, argc, argv, true);
}

/* ----------------------------------------------------------------- ls */

struct ls_ctx {
    struct cli *cli;
    bool lng;
};

static void print_long(const char *name, const struct keel_stat *st)
{
    char mode[11], when[32];

    mode_string(st->mode, mode);
    printf("%s %3u %5u %5u %14" PRIu64 " %s %s\n", mode, st->nlink, st->uid, st->gid, st->size,
           human_time(st->mtime_ns, when, sizeof(when)), name);
}

static int ls_entry(const char *name, const struct keel_stat *st, void *arg)
{
    struct ls_ctx *ls = arg;

    if (ls->cli->json) {
        json_begin(&ls->cli->j, NULL);
        json_stat(&ls->cli->j, name, st);
        json_end(&ls->cli->j);
    } else if (ls->lng) {
        print_long(name, st);
    } else {
        printf("%s%s\n", name, S_ISDIR(st->mode) ? "/" : "");
    }
    return 0;
}

static int cmd_ls(struct cli *cli, int argc, char **argv)
{
    bool flags[1] = {false};
    struct ls_ctx ls = {cli, false};
    const char *path;
    struct keel_stat st;
    int r;

    if (short_opts(&argc, &argv, "l", flags) || argc > 1)
        return usage("ls");
    ls.lng = flags[0];
    path = argc ? argv[0] : "/";
    r = keel_stat(cli->c, path, &st);
    if (r)
        return fail("ls", path, r);
    if (cli->json) {
        json_begin(&cli->j, NULL);
        json_str(&cli->j, "path", path);
        json_begin_array(&cli->j, "entries");
    }
    if (S_ISDIR(st.mode)) {
        r = keel_readdir(cli->c, path, ls_entry, &ls);
    } else {
        const char *base = strrchr(path, '/');
        ls_entry(base ? base + 1 : path, &st, &ls);
    }
    if (cli->json) {
        json_end_array(&cli->j);
        json_end(&cli->j);
        json_done(&cli->j);
    }
    return r ? fail("ls", path, r) : 0;
}

/* --------------------------------------------------------------- stat */

static const char *replica_state(int s)
{
    return s == 0 ? "current" : s == 1 ? "stale" : "corrupt";
}

static int cmd_stat(struct cli *cli, int argc, char **argv)
{
    struct keel_chunk_info *chunks = NULL;
    size_t n = 0;
    struct keel_stat st;
    char mode[11], when[32], sz[32], alloc[32];
    int r;

    if (argc != 1)
        return usage("stat");
    r = keel_stat(cli->c, argv[0], &st);
    if (r)
        return fail("stat", argv[0], r);
    if (S_ISREG(st.mode)) {
        r = keel_file_chunks(cli->c, argv[0], 0, 0, &chunks, &n);
        if (r)
            return fail("stat", argv[0], r);
    }
    if (cli->json) {
        json_begin(&cli->j, NULL);
        json_str(&cli->j, "path", argv[0]);
        json_stat(&cli->j, NULL, &st);
        json_begin_array(&cli->j, "chunks");
        for (size_t i = 0; i < n; i++) {
            json_begin(&cli->j, NULL);
            json_u64(&cli->j, "index", chunks[i].index);
            json_u64(&cli->j, "chunk_id", chunks[i].chunk_id);
            json_u64(&cli->j, "version", chunks[i].version);
            json_bool(&cli->j, "misplaced", chunks[i].misplaced);
            json_begin_array(&cli->j, "replicas");
            for (unsigned k = 0; k < chunks[i].nreplicas; k++) {
                const struct keel_replica *rp = &chunks[i].replicas[k];
                json_begin(&cli->j, NULL);
                json_u64(&cli->j, "node_id", rp->node_id);
                json_str(&cli->j, "addr", rp->addr);
                json_str(&cli->j, "domain", rp->domain);
                json_str(&cli->j, "state", replica_state(rp->state));
                json_end(&cli->j);
            }
            json_end_array(&cli->j);
            json_end(&cli->j);
        }
        json_end_array(&cli->j);
        json_end(&cli->j);
        json_done(&cli->j);
    } else {
        mode_string(st.mode, mode);
        printf("  path: %s\n  type: %s  mode: %s  links: %u  uid: %u  gid: %u\n", argv[0],
               type_name(st.mode), mode, st.nlink, st.uid, st.gid);
        printf("  size: %" PRIu64 " (%s)  allocated: %s  replication: %u\n  inode: %" PRIu64
               "  modified: %s\n",
               st.size, human_size(st.size, sz, sizeof(sz)),
               human_size(st.allocated, alloc, sizeof(alloc)), st.replication, st.ino,
               human_time(st.mtime_ns, when, sizeof(when)));
        if (n)
            printf("  chunks:\n  %6s %10s %7s  %s\n", "INDEX", "ID", "VERSION", "REPLICAS");
        for (size_t i = 0; i < n; i++) {
            printf("  %6" PRIu64 " %10" PRIu64 " %7" PRIu64 " ", chunks[i].index,
                   chunks[i].chunk_id, chunks[i].version);
            for (unsigned k = 0; k < chunks[i].nreplicas; k++) {
                const struct keel_replica *rp = &chunks[i].replicas[k];
                printf(" %s[%s]%s", rp->addr, rp->domain,
                       rp->state ? (rp->state == 1 ? "(stale)" : "(corrupt)") : "");
            }
            printf("%s\n", chunks[i].misplaced ? "  MISPLACED" : "");
        }
    }
    keel_chunks_free(chunks, n);
    return 0;
}

/* ------------------------------------------------------- mkdir, rm, mv */

static int mkdir_p(keel_client *c, const char *path)
{
    char *copy = strdup(path);
    int r = 0;

    if (!copy)
        return -ENOMEM;
    for (char *p = copy + 1; r == 0; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        r = keel_mkdir(c, copy, 0755);
        if (r == -EEXIST) {
            struct keel_stat st;
            r = keel_stat(c, copy, &st);
            if (r == 0 && !S_ISDIR(st.mode))
                r = -ENOTDIR;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(copy);
    return r;
}

static int cmd_mkdir(struct cli *cli, int argc, char **argv)
{
    bool flags[1] = {false};

    if (short_opts(&argc, &argv, "p", flags) || argc < 1)
        return usage("mkdir");
    for (int i = 0; i < argc; i++) {
        int r = flags[0] ? mkdir_p(cli->c, argv[i]) : keel_mkdir(cli->c, argv[i], 0755);
        if (r)
            return fail("mkdir", argv[i], r);
    }
    return 0;
}

struct names {
    char **v;
    size_t n, cap;
};

static int collect(const char *name, const struct keel_stat *st, void *arg)
{
    struct names *ns = arg;

    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 64;
        char **v = realloc(ns->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ns->v = v;
        ns->cap = cap;
    }
    ns->v[ns->n] = strdup(name);
    return ns->v[ns->n++] ? 0 : -ENOMEM;
}

static int remove_tree(keel_client *c, const char *path)
{
    struct names ns = {0};
    struct keel_stat st;
    int r = keel_stat(c, path, &st);

    if (r)
        return r;
    if (!S_ISDIR(st.mode))
        return keel_unlink(c, path);
    r = keel_readdir(c, path, collect, &ns);
    for (size_t i = 0; r == 0 && i < ns.n; i++) {
        size_t len = strlen(path) + strlen(ns.v[i]) + 2;
        char *child = malloc(len);

        if (!child) {
            r = -ENOMEM;
            break;
        }
        snprintf(child, len, "%s%s%s", path, strcmp(path, "/") ? "/" : "", ns.v[i]);
        r = remove_tree(c, child);
        free(child);
    }
    for (size_t i = 0; i < ns.n; i++)
        free(ns.v[i]);
    free(ns.v);
    if (r == 0 && strcmp(path, "/") != 0)
        r = keel_rmdir(c, path);
    return r;
}

static int cmd_rm(struct cli *cli, int argc, char **argv)
{
    bool flags[1] = {false};

    if (short_opts(&argc, &argv, "r", flags) || argc < 1)
        return usage("rm");
    for (int i = 0; i < argc; i++) {
        int r;

        if (flags[0]) {
            r = remove_tree(cli->c, argv[i]);
        } else {
            r = keel_unlink(cli->c, argv[i]);
        }
        if (r)
            return fail("rm", argv[i], r);
    }
    return 0;
}

static int cmd_mv(struct cli *cli, int argc, char **argv)
{
    int r;

    if (argc != 2)
        return usage("mv");
    r = keel_rename(cli->c, argv[0], argv[1], 0);
    return r ? fail("mv", argv[0], r) : 0;
}

static int cmd_truncate(struct cli *cli, int argc, char **argv)
{
    struct keel_setattr sa = {.mask = KEEL_SET_SIZE};
    int r;

    if (argc != 2 || parse_size(argv[1], &sa.size))
        return usage("truncate");
    r = keel_setattr(cli->c, argv[0], &sa, NULL);
    return r ? fail("truncate", argv[0], r) : 0;
}

/* ---------------------------------------------------- put, get, cat */

struct slot {
    keel_aio *aio;
    uint8_t *buf;
    size_t len;
    uint64_t off;
    bool busy;
};

static void free_slots(struct slot *s)
{
    for (int i = 0; i < COPY_DEPTH; i++) {
        if (s[i].busy)
            keel_aio_wait(s[i].aio, -1);
        keel_aio_release(s[i].aio);
        free(s[i].buf);
    }
}

static int alloc_slots(struct slot *s)
{
    memset(s, 0, COPY_DEPTH * sizeof(*s));
    for (int i = 0; i < COPY_DEPTH; i++) {
        s[i].buf = malloc(COPY_BLOCK);
        if (!s[i].buf || keel_aio_create(NULL, NULL, &s[i].aio))
            return -ENOMEM;
    }
    return 0;
}

static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t have = 0;

    while (have < len) {
        ssize_t n = read(fd, buf + have, len - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        have += (size_t)n;
    }
    return (ssize_t)have;
}

static int write_full(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cmd_put(struct cli *cli, int argc, char **argv)
{
    struct keel_open_args oa = {.mode = 0644};
    struct slot slots[COPY_DEPTH];
    struct progress pg;
    struct stat lst;
    keel_file *f = NULL;
    uint64_t off = 0;
    int fd, r = 0, next = 0;
    bool eof = false;

    if (argc == 4 && strcmp(argv[0], "--replication") == 0) {
        oa.replication = (uint32_t)atoi(argv[1]);
        argc -= 2;
        argv += 2;
    }
    if (argc != 2)
        return usage("put");
    fd = strcmp(argv[0], "-") == 0 ? STDIN_FILENO : open(argv[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("put", argv[0], -errno);
    if (fstat(fd, &lst) < 0)
        lst.st_size = 0;
    r = keel_open(cli->c, argv[1], KEEL_O_WRITE | KEEL_O_CREATE | KEEL_O_TRUNC, &oa, &f);
    if (r) {
        if (fd != STDIN_FILENO)
            close(fd);
        return fail("put", argv[1], r);
    }
    if (alloc_slots(slots)) {
        r = -ENOMEM;
        goto out;
    }
    progress_start(&pg, isatty(STDOUT_FILENO) && S_ISREG(lst.st_mode), (uint64_t)lst.st_size);
    while (r == 0) {
        struct slot *s = &slots[next];

        if (s->busy) {
            keel_aio_wait(s->aio, -1);
            s->busy = false;
            if (keel_aio_result(s->aio) < 0) {
                r = (int)keel_aio_result(s->aio);
                break;
            }
            progress_update(&pg, s->off + s->len);
        }
        if (eof) {
            bool any = false;
            for (int i = 0; i < COPY_DEPTH; i++)
                any |= slots[i].busy;
            if (!any)
                break;
            next = (next + 1) % COPY_DEPTH;
            continue;
        }
        ssize_t n = read_full(fd, s->buf, COPY_BLOCK);
        if (n < 0) {
            r = (int)n;
            break;
        }
        if (n == 0) {
            eof = true;
            continue;
        }
        s->len = (size_t)n;
        s->off = off;
        off += (uint64_t)n;
        r = keel_aio_pwrite(f, s->buf, s->len, s->off, s->aio);
        if (r)
            break;
        s->busy = true;
        next = (next + 1) % COPY_DEPTH;
    }
    if (r == 0)
        r = keel_flush(f);
    progress_end(&pg);
out:
    free_slots(slots);
    if (fd != STDIN_FILENO)
        close(fd);
    {
        int rc = keel_close(f);
        if (r == 0)
            r = rc;
    }
    return r ? fail("put", argv[1], r) : 0;
}

/* Streams a remote file to fd in order, COPY_DEPTH reads in flight. */
static int copy_out(struct cli *cli, const char *remote, int fd, bool show)
{
    struct slot slots[COPY_DEPTH];
    struct progress pg;
    struct keel_stat st;
    keel_file *f;
    uint64_t off = 0, size;
    int r, head = 0, tail = 0, inflight = 0;

    r = keel_open(cli->c, remote, KEEL_O_READ, NULL, &f);
    if (r)
        return r;
    r = keel_fstat(f, &st);
    size = st.size;
    if (r == 0)
        r = alloc_slots(slots);
    progress_start(&pg, show, size);
    while (r == 0 && (off < size || inflight > 0)) {
        if (off < size && inflight < COPY_DEPTH) {
            struct slot *s = &slots[head];

            s->off = off;
            s->len = (size_t)MIN((uint64_t)COPY_BLOCK, size - off);
            r = keel_aio_pread(f, s->buf, s->len, s->off, s->aio);
            if (r)
                break;
            s->busy = true;
            off += s->len;
            head = (head + 1) % COPY_DEPTH;
            inflight++;
            continue;
        }
        struct slot *s = &slots[tail];
        keel_aio_wait(s->aio, -1);
        s->busy = false;
        inflight--;
        tail = (tail + 1) % COPY_DEPTH;
        ssize_t got = keel_aio_result(s->aio);
        if (got < 0) {
            r = (int)got;
            break;
        }
        r = write_full(fd, s->buf, (size_t)got);
        progress_update(&pg, s->off + (uint64_t)got);
    }
    progress_end(&pg);
    free_slots(slots);
    keel_close(f);
    return r;
}

static int cmd_get(struct cli *cli, int argc, char **argv)
{
    int fd, r;

    if (argc != 2)
        return usage("get");
    fd = strcmp(argv[1], "-") == 0 ? STDOUT_FILENO
                                   : open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail("get", argv[1], -errno);
    r = copy_out(cli, argv[0], fd, fd != STDOUT_FILENO && isatty(STDOUT_FILENO));
    if (fd != STDOUT_FILENO && close(fd) < 0 && r == 0)
        r = -errno;
    return r ? fail("get", argv[0], r) : 0;
}

static int cmd_cat(struct cli *cli, int argc, char **argv)
{
    if (argc < 1)
        return usage("cat");
    for (int i = 0; i < argc; i++) {
        int r = copy_out(cli, argv[i], STDOUT_FILENO, false);
        if (r)
            return fail("cat", argv[i], r);
    }
    return 0;
}

/* --------------------------------------------------------------- fsck */

struct fsck {
    struct cli *cli;
    bool verify;
    uint64_t files, chunks, missing, under, misplaced, stale, corrupt, mismatched;
    int err;
};

static void problem(struct fsck *fk, const char *path, const struct keel_chunk_info *ci,
                    const char *what, const char *detail)
{
    if (fk->cli->json) {
        json_begin(&fk->cli->j, NULL);
        json_str(&fk->cli->j, "path", path);
        json_u64(&fk->cli->j, "index", ci->index);
        json_u64(&fk->cli->j, "chunk_id", ci->chunk_id);
        json_str(&fk->cli->j, "problem", what);
        json_str(&fk->cli->j, "detail", detail);
        json_end(&fk->cli->j);
    } else {
        printf("%s: chunk %" PRIu64 " (id %" PRIu64 " v%" PRIu64 "): %s%s%s\n", path, ci->index,
               ci->chunk_id, ci->version, what, *detail ? ": " : "", detail);
    }
}

#define VERIFY_TRIES    5 /* looks at a chunk whose version moves under us */
#define VERIFY_PAUSE_US 200000

/*
 * Compares the block checksums of every current replica of a chunk.
 * Returns false, having judged nothing, when a replica is at another
 * version than the namenode said and this is not the last try: the
 * version moved while we looked (a fence, a repair), so the caller looks
 * again with fresh locations.
 */
static bool verify_chunk(struct fsck *fk, const char *path, const struct keel_chunk_info *ci,
                         bool last)
{
    unsigned n = ci->nreplicas;
    uint64_t **sums = xcalloc(n + 1, sizeof(*sums));
    size_t *nsums = xcalloc(n + 1, sizeof(*nsums));
    int *errs = xcalloc(n + 1, sizeof(*errs));
    bool moved = false;
    int ref = -1;

    for (unsigned k = 0; k < n; k++) {
        if (ci->replicas[k].state != 0)
            continue;
        errs[k] = keel_replica_checksums(fk->cli->c, ci->replicas[k].addr, ci->chunk_id,
                                         ci->version, &sums[k], &nsums[k], NULL);
        moved |= errs[k] == -ESTALE;
    }
    for (unsigned k = 0; (!moved || last) && k < n; k++) {
        const char *addr = ci->replicas[k].addr;
        size_t diff = 0, first = 0;
        char detail[256];

        if (ci->replicas[k].state != 0)
            continue;
        if (errs[k]) {
            snprintf(detail, sizeof(detail), "%s: %s", addr, keel_strerror(errs[k]));
            problem(fk, path, ci, "replica unreadable", detail);
            fk->mismatched++;
            continue;
        }
        if (ref < 0) {
            ref = (int)k;
            continue;
        }
        for (size_t b = 0; b < MAX(nsums[k], nsums[ref]); b++) {
            if (b >= nsums[k] || b >= nsums[ref] || sums[k][b] != sums[ref][b]) {
                if (diff++ == 0)
                    first = b;
            }
        }
        if (diff) {
            snprintf(detail, sizeof(detail), "%s and %s differ in %zu block(s), first %zu",
                     ci->replicas[ref].addr, addr, diff, first);
            problem(fk, path, ci, "replicas differ", detail);
            fk->mismatched++;
        }
    }
    for (unsigned k = 0; k < n; k++)
        free(sums[k]);
    free(sums);
    free(nsums);
    free(errs);
    return !moved || last;
}

/* verify_chunk, again with fresh locations while the version moves. */
static void verify_settled(struct fsck *fk, const char *path, const struct keel_chunk_info *ci)
{
    struct keel_chunk_info *fresh = NULL;
    size_t n = 0;

    for (int tries = 1; ci && !verify_chunk(fk, path, ci, tries == VERIFY_TRIES); tries++) {
        uint64_t index = ci->index;

        keel_chunks_free(fresh, n);
        fresh = NULL;
        n = 0;
        ci = NULL;
        usleep(VERIFY_PAUSE_US);
        if (keel_file_chunks(fk->cli->c, path, 0, 0, &fresh, &n) == 0)
            for (size_t i = 0; i < n && !ci; i++)
                if (fresh[i].index == index)
                    ci = &fresh[i];
    }
    keel_chunks_free(fresh, n);
}

static void check_file(struct fsck *fk, const char *path)
{
    struct keel_chunk_info *chunks;
    size_t n;
    int r = keel_file_chunks(fk->cli->c, path, 0, 0, &chunks, &n);

    fk->files++;
    if (r) {
        fprintf(stderr, "keel: fsck %s: %s\n", path, keel_strerror(r));
        fk->err = r;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct keel_chunk_info *ci = &chunks[i];
        unsigned current = 0, stale = 0, bad = 0;
        char detail[64];

        fk->chunks++;
        for (unsigned k = 0; k < ci->nreplicas; k++) {
            current += ci->replicas[k].state == 0;
            stale += ci->replicas[k].state == 1;
            bad += ci->replicas[k].state == 2;
        }
        snprintf(detail, sizeof(detail), "%u of %u replicas", current, ci->replication);
        if (current == 0) {
            fk->missing++;
            problem(fk, path, ci, "missing", detail);
        } else if (current < ci->replication) {
            fk->under++;
            problem(fk, path, ci, "under-replicated", detail);
        }
        if (ci->misplaced) {
            fk->misplaced++;
            problem(fk, path, ci, "misplaced", "replicas share a failure domain");
        }
        if (stale) {
            fk->stale++;
            problem(fk, path, ci, "stale replicas", "");
        }
        if (bad) {
            fk->corrupt++;
            problem(fk, path, ci, "corrupt replicas", "");
        }
        if (fk->verify && current > 1)
            verify_settled(fk, path, ci);
    }
    keel_chunks_free(chunks, n);
}

static void walk(struct fsck *fk, const char *path)
{
    struct names ns = {0};
    struct keel_stat st;
    int r = keel_stat(fk->cli->c, path, &st);

    if (r) {
        fprintf(stderr, "keel: fsck %s: %s\n", path, keel_strerror(r));
        fk->err = r;
        return;
    }
    if (S_ISREG(st.mode)) {
        check_file(fk, path);
        return;
    }
    if (!S_ISDIR(st.mode))
        return;
    r = keel_readdir(fk->cli->c, path, collect, &ns);
    if (r) {
        fprintf(stderr, "keel: fsck %s: %s\n", path, keel_strerror(r));
        fk->err = r;
    }
    for (size_t i = 0; i < ns.n; i++) {
        size_t len = strlen(path) + strlen(ns.v[i]) + 2;
        char *child = malloc(len);

        if (child) {
            snprintf(child, len, "%s%s%s", path, strcmp(path, "/") ? "/" : "", ns.v[i]);
            walk(fk, child);
            free(child);
        }
        free(ns.v[i]);
    }
    free(ns.v);
}

static int cmd_fsck(struct cli *cli, int argc, char **argv)
{
    struct fsck fk = {.cli = cli};
    const char *root = "/";

    if (argc > 0 && strcmp(argv[0], "--verify") == 0) {
        fk.verify = true;
        argc--;
        argv++;
    }
    if (argc > 1)
        return usage("fsck");
    if (argc == 1)
        root = argv[0];
    if (cli->json) {
        json_begin(&cli->j, NULL);
        json_begin_array(&cli->j, "problems");
    }
    walk(&fk, root);
    if (cli->json) {
        json_end_array(&cli->j);
        json_u64(&cli->j, "files", fk.files);
        json_u64(&cli->j, "chunks", fk.chunks);
        json_u64(&cli->j, "missing", fk.missing);
        json_u64(&cli->j, "under_replicated", fk.under);
        json_u64(&cli->j, "misplaced", fk.misplaced);
        json_u64(&cli->j, "stale", fk.stale);
        json_u64(&cli->j, "corrupt", fk.corrupt);
        json_u64(&cli->j, "mismatched", fk.mismatched);
        json_bool(&cli->j, "verified", fk.verify);
        json_bool(&cli->j, "healthy", !fk.missing && !fk.mismatched && !fk.err);
        json_end(&cli->j);
        json_done(&cli->j);
    } else {
        printf("%" PRIu64 " files, %" PRIu64 " chunks: %" PRIu64 " missing, %" PRIu64
               " under-replicated, %" PRIu64 " misplaced, %" PRIu64 " with stale replicas, %" PRIu64
               " with corrupt replicas%s",
               fk.files, fk.chunks, fk.missing, fk.under, fk.misplaced, fk.stale, fk.corrupt,
               fk.verify ? "" : "\n");
        if (fk.verify)
            printf(", %" PRIu64 " with differing replicas\n", fk.mismatched);
        printf("%s\n", fk.missing || fk.mismatched || fk.err ? "NOT HEALTHY" : "HEALTHY");
    }
    return fk.missing || fk.mismatched || fk.err ? 1 : 0;
}

const struct command commands[] = {
    {"status", "", "cluster summary and the datanode table", cmd_status, true},
    {"nodes", "", "the datanode table", cmd_nodes, true},
    {"ls", "[-l] [PATH]", "list a directory", cmd_ls, true},
    {"stat", "PATH", "attributes, and each chunk with its replicas", cmd_stat, true},
    {"mkdir", "[-p] PATH...", "make directories", cmd_mkdir, true},
    {"rm", "[-r] PATH...", "remove files (and with -r directories)", cmd_rm, true},
    {"mv", "FROM TO", "rename", cmd_mv, true},
    {"put", "[--replication N] LOCAL|- REMOTE", "copy a local file in", cmd_put, true},
    {"get", "REMOTE LOCAL|-", "copy a file out", cmd_get, true},
    {"cat", "PATH...", "print files", cmd_cat, true},
    {"truncate", "PATH SIZE", "set a file's size", cmd_truncate, true},
    {"fsck", "[--verify] [PATH]",
     "report missing, under-replicated, misplaced, stale, corrupt chunks; --verify compares "
     "replicas block by block",
     cmd_fsck, true},
    {"decommission", "NODE", "drain a datanode (id or address)", cmd_decommission, true},
    {"recommission", "NODE", "return a draining datanode to service", cmd_recommission, true},
};

const int ncommands = (int)(sizeof(commands) / sizeof(commands[0]));
