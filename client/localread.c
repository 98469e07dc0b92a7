/*
 * localread: see localread.h.
 */
#include "localread.h"

#include "checksum.h"
#include "diskio.h"
#include "errors.h"
#include "log.h"
#include "sidecar.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ASK_AGAIN_MS 5000 /* after an answer that may change (unreachable, unregistered) */
#define VERSION_MAX  4096
#define STACK_SUMS   256

/* ------------------------------------------------------------ the node */

struct local_ask {
    keel_client *c;
    struct core_node *n;
};

/* The value of "key=" in VERSION's text, or NULL. */
static const char *version_value(const char *text, const char *key)
{
    size_t n = strlen(key);
    const char *line = text;

    while (line) {
        if (strncmp(line, key, n) == 0 && line[n] == '=')
            return line + n + 1;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return NULL;
}

/* How this client opens a datanode's files: never through a link, and
 * never waiting in open(2), as it would for a FIFO put in a file's place
 * (whose reads then fail, and the read goes over the network). O_NONBLOCK
 * changes nothing for a regular file. */
#define LOCAL_OPEN_FLAGS (O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)

/* Whether the VERSION file below dirfd names node_id of cluster. */
static bool names_node(int dirfd, uint64_t node_id, const char *cluster)
{
    char text[VERSION_MAX + 1];
    const char *v;
    size_t got = 0, n = strlen(cluster);
    int fd = openat(dirfd, "VERSION", LOCAL_OPEN_FLAGS);
    bool ok;

    if (fd < 0)
        return false;
    ok = diskio_pread(fd, text, VERSION_MAX, 0, &got) == 0 && got < VERSION_MAX;
    close(fd);
    if (!ok)
        return false;
    text[got] = '\0';
    v = version_value(text, "node_id");
    if (!v || strtoull(v, NULL, 10) != node_id)
        return false;
    v = version_value(text, "cluster_id");
    return v && strncmp(v, cluster, n) == 0 && (v[n] == '\n' || v[n] == '\0');
}

static void local_answered(int status, rpc_msg *m, void *arg)
{
    keel_client *c = ((struct local_ask *)arg)->c;
    struct core_node *n = ((struct local_ask *)arg)->n;
    const Keel__LocalRep *rep;
    int fd;

    free(arg);
    n->local = LOCAL_NO;
    if (status == 0 && m->env->body_case != KEEL__ENVELOPE__BODY_LOCAL_REP)
        status = -EPROTO;
    if (status) {
        /* A node that is away or not registered yet may say yes later. */
        if (core_transport_error(status) || status == -EAGAIN) {
            n->local = LOCAL_UNKNOWN;
            n->local_asked_ms = mono_ms();
        }
        log_debug("local reads from %s: %s", n->addr, err_str(status));
        return;
    }
    rep = m->env->local_rep;
    fd = rep->dir[0] == '/' ? open(rep->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0)
        return; /* another host's directory, or one we may not read */
    if (!names_node(fd, rep->node_id, c->cluster_id)) {
        close(fd);
        return;
    }
    n->local_dirfd = fd;
    n->local_node = rep->node_id;
    n->local = LOCAL_YES;
    log_info("reading the replicas of node %" PRIu64 " (%s) from %s", rep->node_id, n->addr,
             rep->dir);
}

bool localread_node(keel_client *c, struct core_node *n, uint64_t node_id)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__LocalReq req = KEEL__LOCAL_REQ__INIT;
    struct rpc_call_opts o = {.timeout_ms = core_call_timeout(c)};
    struct local_ask *ask;

    if (n->local == LOCAL_YES)
        return n->local_node == node_id;
    if (n->local != LOCAL_UNKNOWN ||
        (n->local_asked_ms && mono_ms() - n->local_asked_ms < ASK_AGAIN_MS))
        return false;
    ask = malloc(sizeof(*ask));
    if (!ask)
        return false;
    *ask = (struct local_ask){c, n};
    env.body_case = KEEL__ENVELOPE__BODY_LOCAL_REQ;
    env.local_req = &req;
    n->local_asked_ms = mono_ms();
    if (rpc_call(n->conn, &env, RPC_NO_PAYLOAD, &o, local_answered, ask) == 0)
        n->local = LOCAL_ASKING;
    else
        free(ask);
    return false;
}

void localread_forget(struct core_node *n)
{
    if (n->local == LOCAL_YES) {
        log_info("node %" PRIu64 " (%s) is gone: its replicas are read from their files again "
                 "only once it answers where they are",
                 n->local_node, n->addr);
        close(n->local_dirfd);
    }
    n->local_dirfd = -1;
    n->local_asked_ms = 0;
    if (n->local != LOCAL_ASKING) /* its answer will come, as a failure */
        n->local = LOCAL_UNKNOWN;
}

/* ----------------------------------------------------------- the reads */

static int open_replica_file(int dirfd, uint64_t chunk_id, const char *ext)
{
    char path[64];
    int r = replica_path(chunk_id, ext, path, sizeof(path)), fd;

    if (r)
        return r;
    fd = openat(dirfd, path, LOCAL_OPEN_FLAGS);
    return fd < 0 ? -errno : fd;
}

/* Checks the header of the sidecar open at fd. */
static int check_header(int fd, uint64_t chunk_id, uint64_t version, uint32_t blocks, bool nowait)
{
    struct sidecar_header h;
    int r = sidecar_read_header(fd, &h, nowait);

    if (r)
        return r;
    if (h.chunk_id != chunk_id || h.blocks != blocks)
        return -EBADMSG;
    if (h.version != version)
        return -ESTALE;
    if (h.flags & SIDECAR_CORRUPT)
        return -EIO;
    if (h.flags & SIDECAR_DIRTY)
        return -EBUSY;
    return 0;
}

/* Reads and verifies blocks [first, first + n) into blk. */
static int read_blocks(int data_fd, int meta_fd, uint64_t first, size_t n, uint8_t *blk,
                       bool nowait)
{
    uint64_t stack_sums[STACK_SUMS], *sums = stack_sums;
    size_t bytes = n * KEEL_BLOCK_SIZE, got = 0;
    int r;

    if (n > STACK_SUMS && !(sums = malloc(n * sizeof(*sums))))
        return -ENOMEM;
    r = sidecar_read_sums(meta_fd, first, n, sums, nowait);
    if (r == 0)
        r = nowait ? diskio_pread_nowait(data_fd, blk, bytes, first * KEEL_BLOCK_SIZE, &got)
                   : diskio_pread(data_fd, blk, bytes, first * KEEL_BLOCK_SIZE, &got);
    if (r == 0) {
        memset(blk + got, 0, bytes - got); /* past the end of a sparse replica */
        r = csum_verify(sums, blk, n, NULL);
    }
    if (sums != stack_sums)
        free(sums);
    return r;
}

int localread_read(int dirfd, uint64_t chunk_id, uint64_t version, uint32_t blocks, uint64_t off,
                   void *buf, size_t len, bool nowait)
{
    uint64_t first, last;
    size_t n;
    bool whole;
    uint8_t *blk;
    int meta_fd, data_fd, r;

    if (len == 0)
        return 0;
    csum_block_range(off, len, &first, &last);
    if (last >= blocks)
        return -EINVAL;
    n = (size_t)(last - first + 1);
    /* The sidecar first: it is created after the data and removed before. */
    meta_fd = open_replica_file(dirfd, chunk_id, "meta");
    if (meta_fd < 0)
        return meta_fd;
    data_fd = open_replica_file(dirfd, chunk_id, "data");
    if (data_fd < 0) {
        close(meta_fd);
        return data_fd;
    }
    r = check_header(meta_fd, chunk_id, version, blocks, nowait);
    whole = off % KEEL_BLOCK_SIZE == 0 && len % KEEL_BLOCK_SIZE == 0;
    blk = whole ? buf : NULL;
    if (r == 0 && !whole && !(blk = malloc(n * KEEL_BLOCK_SIZE)))
        r = -ENOMEM;
    if (r == 0)
        r = read_blocks(data_fd, meta_fd, first, n, blk, nowait);
    if (r == 0 && !whole)
        memcpy(buf, blk + off % KEEL_BLOCK_SIZE, len);
    if (!whole)
        free(blk);
    close(data_fd);
    close(meta_fd);
    return r;
}
