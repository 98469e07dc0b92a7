/*
 * copyrecv: see copyrecv.h for the session states.
 *
 * A piece is validated on the loop, then written by a pool thread (struct
 * piece), which also finishes the files on the last piece. The session is
 * touched by one side at a time: `busy` is set while a piece's work runs.
 */
#include "copyrecv.h"

#include "checksum.h"
#include "diskio.h"
#include "errors.h"
#include "list.h"
#include "log.h"
#include "sidecar.h"
#include "u64map.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SWEEP_MS     1000
#define MAX_SESSIONS 64 /* copies received at once; more wait for the source's retry */

struct session {
    struct copyrecv *cr;
    uint64_t id;
    uint64_t chunk_id, version, length;
    uint32_t blocks;
    int data_fd, meta_fd;
    bool files; /* the temporary files exist */
    uint64_t next_off;
    uint64_t *sums; /* checksums of the blocks received */
    uint8_t *have;  /* 1 for each block received */
    bool busy;
    bool aborting;
    uint64_t last_ms;
};

struct copyrecv {
    uv_loop_t *loop;
    struct chunkstore *cs;
    struct replicas *reps;
    uint32_t idle_ms;
    struct u64map sessions;
    uv_timer_t sweep;
    bool stopping;
};

struct piece {
    uv_work_t work;
    struct session *s;
    rpc_req *req; /* NULL for the removal of an aborted session's files */
    int status;
};

static void session_free(struct session *s)
{
    if (s->data_fd >= 0)
        close(s->data_fd);
    if (s->meta_fd >= 0)
        close(s->meta_fd);
    free(s->sums);
    free(s->have);
    free(s);
}

/* ------------------------------------------------------------ pool work */

static int write_piece(struct session *s, const Keel__CopyChunkReq *q, const uint8_t *data,
                       size_t len)
{
    uint64_t first = q->offset / KEEL_BLOCK_SIZE;
    size_t n = len / KEEL_BLOCK_SIZE;
    int r;

    for (size_t i = 0; i < n; i++) {
        uint64_t sum = csum_buf(data + i * KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE);

        if (sum != q->block_checksums[i]) {
            log_warn("copyrecv: chunk %016" PRIx64 " block %" PRIu64
                     " arrived damaged (session %016" PRIx64 ")",
                     s->chunk_id, first + i, s->id);
            return -EBADMSG;
        }
    }
    if (len) {
        r = diskio_pwrite(s->data_fd, data, len, q->offset);
        if (r)
            return r;
    }
    for (size_t i = 0; i < n; i++) {
        s->sums[first + i] = q->block_checksums[i];
        s->have[first + i] = 1;
    }
    return 0;
}

/* Checks the final checksums against what arrived, then writes the sidecar
 * and syncs both files. */
static int finish_files(struct session *s, const Keel__CopyChunkReq *q)
{
    struct sidecar_header h = {s->chunk_id, s->version, s->length, 0, s->blocks};
    uint64_t zero = csum_zero_block();
    int r;

    for (uint32_t b = 0; b < s->blocks; b++) {
        uint64_t want = q->all_checksums[b];

        if (s->have[b] ? s->sums[b] != want : want != zero) {
            log_warn("copyrecv: chunk %016" PRIx64 " block %u: final checksum disagrees with "
                     "what arrived (session %016" PRIx64 ")",
                     s->chunk_id, b, s->id);
            return -EBADMSG;
        }
    }
    /* Blocks past the length were sent zero-padded: cut to the length. */
    if (ftruncate(s->data_fd, (off_t)s->length) < 0)
        return -errno;
    r = sidecar_write_new(s->meta_fd, &h, q->all_checksums);
    if (r == 0)
        r = diskio_datasync(s->data_fd);
    if (r == 0)
        r = diskio_datasync(s->meta_fd);
    return r;
}

static void piece_work(uv_work_t *w)
{
    struct piece *p = (struct piece *)w;
    struct session *s = p->s;
    const Keel__CopyChunkReq *q;

    if (!p->req) {
        p->status = chunkstore_tmp_remove(s->cr->cs, s->chunk_id, s->id);
        return;
    }
    q = p->req->env->copy_chunk_req;
    if (!s->files) {
        p->status = chunkstore_tmp_create(s->cr->cs, s->chunk_id, s->id, &s->data_fd, &s->meta_fd);
        if (p->status)
            return;
        s->files = true;
    }
    p->status = write_piece(s, q, p->req->payload, p->req->payload_len);
    if (p->status == 0 && q->last)
        p->status = finish_files(s, q);
}

/* ------------------------------------------------------------- sessions */

static void piece_done(uv_work_t *w, int status);

static void queue_piece(struct session *s, rpc_req *req)
{
    struct piece *p = xcalloc(1, sizeof(*p));
    int r;

    p->s = s;
    p->req = req;
    s->busy = true;
    r = uv_queue_work(s->cr->loop, &p->work, piece_work, piece_done);
    if (r < 0) {
        /* Only for invalid arguments; cannot happen with a live loop. */
        log_error("copyrecv: cannot queue work: %s", uv_strerror(r));
        abort();
    }
}

/* Drops the session; its files are removed on the pool. */
static void session_abort(struct session *s, const char *why)
{
    struct copyrecv *cr = s->cr;

    if (!s->aborting) {
        log_warn("copyrecv: copy of chunk %016" PRIx64 " (session %016" PRIx64 ") aborted: %s",
                 s->chunk_id, s->id, why);
        s->aborting = true;
        if (u64map_get(&cr->sessions, s->id) == s)
            u64map_del(&cr->sessions, s->id);
    }
    if (s->busy)
        return; /* piece_done comes back here */
    if (s->files) {
        s->files = false;
        queue_piece(s, NULL);
        return;
    }
    session_free(s);
}

static void install_done(int status, struct replicas_result *res, void *arg)
{
    struct piece *p = arg;
    struct session *s = p->s;
    struct copyrecv *cr = s->cr;

    if (status) {
        rpc_reply_error(p->req, status, "installing chunk %016" PRIx64 ": %s", s->chunk_id,
                        err_str(status));
        s->busy = false;
        free(p);
        session_abort(s, err_str(status));
        return;
    }
    log_info("copyrecv: chunk %016" PRIx64 " version %" PRIu64 " received (%" PRIu64 " bytes)",
             s->chunk_id, s->version, s->length);
    rpc_reply(p->req, NULL, RPC_NO_PAYLOAD);
    free(p);
    if (u64map_get(&cr->sessions, s->id) == s)
        u64map_del(&cr->sessions, s->id);
    s->files = false; /* installed: they are the replica's now */
    session_free(s);
}

static void piece_done(uv_work_t *w, int status)
{
    struct piece *p = (struct piece *)w;
    struct session *s = p->s;
    struct copyrecv *cr = s->cr;
    struct replica_info ri;
    int r = p->status ? p->status : status;

    s->busy = false;
    if (!p->req) {
        if (r)
            log_warn("copyrecv: removing the files of session %016" PRIx64 ": %s", s->id,
                     err_str(r));
        free(p);
        session_free(s);
        return;
    }
    s->last_ms = mono_ms();
    if (r || s->aborting) {
        if (!r)
            r = -ECANCELED;
        rpc_reply_error(p->req, r, "copy of chunk %016" PRIx64 ": %s", s->chunk_id, err_str(r));
        free(p);
        session_abort(s, err_str(r));
        return;
    }
    if (!p->req->env->copy_chunk_req->last) {
        rpc_reply(p->req, NULL, RPC_NO_PAYLOAD);
        free(p);
        return;
    }
    /* The files are complete and synced: hand them over. */
    close(s->data_fd);
    close(s->meta_fd);
    s->data_fd = s->meta_fd = -1;
    ri.chunk_id = s->chunk_id;
    ri.version = s->version;
    ri.length = s->length;
    ri.corrupt = false;
    s->busy = true;
    r = replicas_install(cr->reps, &ri, s->id, install_done, p);
    if (r) {
        s->busy = false;
        rpc_reply_error(p->req, r, "installing chunk %016" PRIx64 ": %s", s->chunk_id, err_str(r));
        free(p);
        session_abort(s, err_str(r));
    }
}

/* Validates a piece against its session (or opens one). NULL: answered. */
static struct session *admit(struct copyrecv *cr, rpc_req *req)
{
    const Keel__CopyChunkReq *q = req->env->copy_chunk_req;
    uint32_t blocks = chunkstore_blocks(cr->cs);
    uint64_t size = (uint64_t)blocks * KEEL_BLOCK_SIZE;
    struct session *s = u64map_get(&cr->sessions, q->session);
    struct replica_info have;
    size_t n = req->payload_len / KEEL_BLOCK_SIZE;
    const char *why = NULL;
    int err = -EINVAL;

    if (cr->stopping) {
        err = -ECANCELED;
        why = "shutting down";
    } else if (!blocks) {
        err = -EAGAIN;
        why = "not registered yet";
    } else if (q->delta) {
        err = -EOPNOTSUPP;
        why = "delta copies are not supported";
    } else if (q->session == 0 || q->chunk_id == 0 || q->version == 0 || q->length > size) {
        why = "bad session, chunk, version or length";
    } else if (req->payload_len % KEEL_BLOCK_SIZE || q->n_block_checksums != n ||
               q->offset % KEEL_BLOCK_SIZE || q->offset > size ||
               req->payload_len > size - q->offset) {
        why = "piece is not whole blocks inside the chunk, with one checksum each";
    } else if (q->last && q->n_all_checksums != blocks) {
        why = "last piece lacks the checksum of every block";
    } else if (q->first && s) {
        err = -EEXIST;
        why = "session exists";
        s = NULL; /* leave the existing session alone */
    } else if (q->first && cr->sessions.len >= MAX_SESSIONS) {
        err = -EBUSY;
        why = "too many copies in progress";
    } else if (!q->first && !s) {
        err = -ENOENT;
        why = "unknown session";
    } else if (s && (s->busy || s->chunk_id != q->chunk_id || s->version != q->version ||
                     s->length != q->length || s->next_off != q->offset)) {
        why = "piece out of order or unlike its session";
        session_abort(s, why);
        s = NULL;
    } else if (q->first && replicas_get(cr->reps, q->chunk_id, &have) && !have.corrupt &&
               have.version >= q->version) {
        err = -EEXIST;
        why = "a sound replica at this version or newer is here";
    } else {
        why = NULL;
    }
    if (why) {
        rpc_reply_error(req, err, "copy of chunk %016" PRIx64 ": %s", q->chunk_id, why);
        return NULL;
    }
    if (!s) {
        s = xcalloc(1, sizeof(*s));
        s->cr = cr;
        s->id = q->session;
        s->chunk_id = q->chunk_id;
        s->version = q->version;
        s->length = q->length;
        s->blocks = blocks;
        s->data_fd = s->meta_fd = -1;
        s->sums = xcalloc(blocks, sizeof(*s->sums));
        s->have = xcalloc(blocks, 1);
        s->last_ms = mono_ms();
        if (u64map_put(&cr->sessions, s->id, s) < 0) {
            log_error("copyrecv: out of memory");
            abort();
        }
        log_info("copyrecv: receiving chunk %016" PRIx64 " version %" PRIu64 " (session %016" PRIx64
                 ")",
                 s->chunk_id, s->version, s->id);
    }
    s->next_off = q->offset + req->payload_len;
    return s;
}

void copyrecv_handle(struct copyrecv *cr, rpc_req *req)
{
    struct session *s = admit(cr, req);

    if (s)
        queue_piece(s, req);
}

static void on_sweep(uv_timer_t *t)
{
    struct copyrecv *cr = t->data;
    struct session *stale[64];
    uint64_t now = mono_ms();
    size_t i = 0, n = 0;
    void *val;

    while (n < ARRAY_SIZE(stale) && u64map_next(&cr->sessions, &i, NULL, &val)) {
        struct session *s = val;

        if (!s->busy && now - s->last_ms > cr->idle_ms)
            stale[n++] = s;
    }
    for (i = 0; i < n; i++)
        session_abort(stale[i], "no piece arrived in time");
}

int copyrecv_new(uv_loop_t *loop, struct chunkstore *cs, struct replicas *reps, uint32_t idle_ms,
                 struct copyrecv **out)
{
    struct copyrecv *cr = xcalloc(1, sizeof(*cr));

    cr->loop = loop;
    cr->cs = cs;
    cr->reps = reps;
    cr->idle_ms = idle_ms ? idle_ms : 30000;
    u64map_init(&cr->sessions);
    uv_timer_init(loop, &cr->sweep);
    cr->sweep.data = cr;
    uv_timer_start(&cr->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    *out = cr;
    return 0;
}

size_t copyrecv_active(const struct copyrecv *cr)
{
    return cr->sessions.len;
}

void copyrecv_shutdown(struct copyrecv *cr)
{
    void *val;

    if (cr->stopping)
        return;
    cr->stopping = true;
    uv_close((uv_handle_t *)&cr->sweep, NULL);
    while (cr->sessions.len) {
        size_t i = 0;

        if (!u64map_next(&cr->sessions, &i, NULL, &val))
            break;
        session_abort(val, "shutting down");
    }
}

void copyrecv_free(struct copyrecv *cr)
{
    if (!cr)
        return;
    u64map_free(&cr->sessions);
    free(cr);
}
