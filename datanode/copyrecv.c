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

#include <endian.h>
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
    bool delta;
    int data_fd, meta_fd;
    bool files; /* the temporary files exist */
    bool based; /* delta: the older replica has been copied in */
    uint64_t base_version;
    uint64_t next_off;   /* whole: later pieces start here or after */
    uint64_t next_block; /* delta: later pieces name blocks from here on */
    uint64_t *sums;      /* what each block holds now (zeros, older replica, received) */
    uint64_t received;   /* blocks received */
    bool busy;
    bool aborting;
    uint64_t last_ms;
};

struct copyrecv {
    uv_loop_t *loop;
    struct chunkstore *cs;
    struct replicas *reps;
    struct inflight *inflight;
    uint32_t idle_ms;
    struct u64map sessions;
    uv_timer_t sweep;
    bool stopping;
};

struct piece {
    uv_work_t work;
    struct session *s;
    rpc_req *req;    /* NULL for the removal of an aborted session's files */
    uint64_t charge; /* held against the inflight bound until answered */
    bool need_base;  /* stopped before its blocks: the older replica comes first */
    int status;
};

static void session_free(struct session *s)
{
    if (s->data_fd >= 0)
        close(s->data_fd);
    if (s->meta_fd >= 0)
        close(s->meta_fd);
    free(s->sums);
    free(s);
}

/* ------------------------------------------------------------ pool work */

/* Writes blocks [first, first + n) from data. */
static int write_run(struct session *s, uint64_t first, const uint8_t *data, size_t n)
{
    size_t done;

    return diskio_pwrite_pieces(s->data_fd, data, n * KEEL_BLOCK_SIZE, first * KEEL_BLOCK_SIZE,
                                &done);
}

/* Verifies a piece's blocks against the checksums sent with them, then
 * writes them (runs of consecutive blocks at once). */
static int write_piece(struct session *s, const Keel__CopyChunkReq *q, const uint8_t *data,
                       size_t len)
{
    uint64_t first = q->offset / KEEL_BLOCK_SIZE;
    size_t n = len / KEEL_BLOCK_SIZE, run = 0;
    int r = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t sum = csum_buf(data + i * KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE);
        uint64_t b = q->delta ? q->blocks[i] : first + i;

        if (sum != q->block_checksums[i]) {
            log_warn("copyrecv: chunk %016" PRIx64 " block %" PRIu64
                     " arrived damaged (session %016" PRIx64 ")",
                     s->chunk_id, b, s->id);
            return -EBADMSG;
        }
    }
    if (!q->delta && n)
        r = write_run(s, first, data, n);
    for (size_t i = 0; q->delta && r == 0 && i < n; i += run) {
        for (run = 1; i + run < n && q->blocks[i + run] == q->blocks[i] + run; run++)
            ;
        r = write_run(s, q->blocks[i], data + i * KEEL_BLOCK_SIZE, run);
    }
    if (r)
        return r;
    for (size_t i = 0; i < n; i++)
        s->sums[q->delta ? q->blocks[i] : first + i] = q->block_checksums[i];
    s->received += n;
    return 0;
}

/* Checks the final checksums against what every block holds, then writes
 * the sidecar and syncs both files. */
static int finish_files(struct session *s, const Keel__CopyChunkReq *q, uint8_t *payload)
{
    struct sidecar_header h = {s->chunk_id, s->version, s->length, 0, s->blocks};
    uint64_t *all = q->all_checksums;
    int r;

    if (q->checksums_in_payload) {
        all = (uint64_t *)payload; /* malloc'd: aligned for u64 */
        for (uint32_t b = 0; b < s->blocks; b++)
            all[b] = le64toh(all[b]);
    }
    for (uint32_t b = 0; b < s->blocks; b++) {
        if (s->sums[b] != all[b]) {
            log_warn("copyrecv: chunk %016" PRIx64 " block %u: final checksum disagrees with "
                     "what %s (session %016" PRIx64 ")",
                     s->chunk_id, b, s->delta ? "the block holds" : "arrived", s->id);
            return -EBADMSG;
        }
    }
    /* Whole blocks were written: cut to the length (the rest reads as zeros). */
    if (ftruncate(s->data_fd, (off_t)s->length) < 0)
        return -errno;
    r = sidecar_write_new(s->meta_fd, &h, all);
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
    if (s->delta && !s->based) {
        p->need_base = true;
        return;
    }
    if (!q->checksums_in_payload)
        p->status = write_piece(s, q, p->req->payload, p->req->payload_len);
    if (p->status == 0 && q->last)
        p->status = finish_files(s, q, p->req->payload);
}

/* ------------------------------------------------------------- sessions */

static void piece_done(uv_work_t *w, int status);

static void queue_piece(struct session *s, struct piece *p)
{
    int r;

    s->busy = true;
    r = uv_queue_work(s->cr->loop, &p->work, piece_work, piece_done);
    if (r < 0) {
        /* Only for invalid arguments; cannot happen with a live loop. */
        log_error("copyrecv: cannot queue work: %s", uv_strerror(r));
        abort();
    }
}

static struct piece *piece_new(struct session *s, rpc_req *req)
{
    struct piece *p = xcalloc(1, sizeof(*p));

    p->s = s;
    p->req = req;
    return p;
}

/* The piece's request was answered: its bytes are no longer held. */
static void piece_answered(struct piece *p)
{
    inflight_give(p->s->cr->inflight, p->charge);
    free(p);
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
        return; /* piece_done or base_done comes back here */
    if (s->files) {
        s->files = false;
        queue_piece(s, piece_new(s, NULL));
        return;
    }
    session_free(s);
}

/* Answers a piece that failed (err) and aborts its session. */
static void piece_failed(struct piece *p, int err)
{
    struct session *s = p->s;

    s->busy = false;
    rpc_reply_error(p->req, err, "copy of chunk %016" PRIx64 ": %s", s->chunk_id, err_str(err));
    piece_answered(p);
    session_abort(s, err_str(err));
}

static void install_done(int status, struct replicas_result *res, void *arg)
{
    struct piece *p = arg;
    struct session *s = p->s;
    struct copyrecv *cr = s->cr;

    if (status) {
        piece_failed(p, status);
        return;
    }
    if (s->delta)
        log_info("copyrecv: chunk %016" PRIx64 " version %" PRIu64 " received (%" PRIu64
                 " bytes): %" PRIu64 " blocks sent, the rest kept from version %" PRIu64,
                 s->chunk_id, s->version, s->length, s->received, s->base_version);
    else
        log_info("copyrecv: chunk %016" PRIx64 " version %" PRIu64 " received (%" PRIu64
                 " bytes, %" PRIu64 " blocks sent)",
                 s->chunk_id, s->version, s->length, s->received);
    rpc_reply(p->req, NULL, RPC_NO_PAYLOAD);
    piece_answered(p);
    if (u64map_get(&cr->sessions, s->id) == s)
        u64map_del(&cr->sessions, s->id);
    s->files = false; /* installed: they are the replica's now */
    session_free(s);
}

/* The older replica's data is the temporary data file: now the piece's
 * blocks. */
static void base_done(int status, struct replicas_result *res, void *arg)
{
    struct piece *p = arg;
    struct session *s = p->s;

    if (status == 0 && s->aborting)
        status = -ECANCELED;
    if (status) {
        piece_failed(p, status);
        return;
    }
    s->based = true;
    s->base_version = res->info.version;
    log_info("copyrecv: chunk %016" PRIx64 " (session %016" PRIx64
             ") starts from its version %" PRIu64 " replica",
             s->chunk_id, s->id, s->base_version);
    p->need_base = false;
    queue_piece(s, p);
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
        piece_failed(p, r ? r : -ECANCELED);
        return;
    }
    if (p->need_base) {
        s->busy = true;
        r = replicas_take(cr->reps, s->chunk_id, s->version, s->id, &s->data_fd, s->sums, base_done,
                          p);
        if (r)
            piece_failed(p, r);
        return;
    }
    if (!p->req->env->copy_chunk_req->last) {
        rpc_reply(p->req, NULL, RPC_NO_PAYLOAD);
        piece_answered(p);
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
    if (r)
        piece_failed(p, r);
}

/* Checks the shape of a piece on its own: NULL if fine, else why not. */
static const char *bad_piece(const Keel__CopyChunkReq *q, const rpc_req *req, uint32_t blocks)
{
    uint64_t size = (uint64_t)blocks * KEEL_BLOCK_SIZE;
    size_t n = req->payload_len / KEEL_BLOCK_SIZE;

    if (q->session == 0 || q->chunk_id == 0 || q->version == 0 || q->length > size)
        return "bad session, chunk, version or length";
    if (req->payload_len && !req->payload)
        return "payload missing";
    if (q->checksums_in_payload) {
        if (!q->last || q->n_block_checksums || q->n_blocks || q->n_all_checksums ||
            req->payload_len != (uint64_t)blocks * sizeof(uint64_t))
            return "a checksum payload must be the last piece, one checksum per block, no blocks";
        return NULL;
    }
    if (q->last && q->n_all_checksums != blocks)
        return "last piece lacks the checksum of every block";
    if (req->payload_len % KEEL_BLOCK_SIZE || q->n_block_checksums != n)
        return "piece is not whole blocks with one checksum each";
    if (!q->delta) {
        if (q->n_blocks || q->offset % KEEL_BLOCK_SIZE || q->offset > size ||
            req->payload_len > size - q->offset)
            return "piece is not whole blocks inside the chunk";
        return NULL;
    }
    if (q->n_blocks != n)
        return "delta piece must name each of its blocks";
    for (size_t i = 0; i < n; i++)
        if (q->blocks[i] >= blocks || (i && q->blocks[i] <= q->blocks[i - 1]))
            return "delta blocks must be inside the chunk, in increasing order";
    return NULL;
}

/* Where the piece starts, to keep pieces in order: bytes or block numbers. */
static uint64_t piece_start(const Keel__CopyChunkReq *q)
{
    if (q->checksums_in_payload)
        return UINT64_MAX;
    if (q->delta)
        return q->n_blocks ? q->blocks[0] : UINT64_MAX;
    return q->offset;
}

/* Validates a piece against its session (or opens one). NULL: answered. */
static struct session *admit(struct copyrecv *cr, rpc_req *req)
{
    const Keel__CopyChunkReq *q = req->env->copy_chunk_req;
    uint32_t blocks = chunkstore_blocks(cr->cs);
    struct session *s = u64map_get(&cr->sessions, q->session);
    struct replica_info have;
    bool has = false;
    const char *why = NULL;
    int err = -EINVAL;

    if (q->first)
        has = replicas_get(cr->reps, q->chunk_id, &have);
    if (cr->stopping) {
        err = -ECANCELED;
        why = "shutting down";
    } else if (!blocks) {
        err = -EAGAIN;
        why = "not registered yet";
    } else if ((why = bad_piece(q, req, blocks)) != NULL) {
        /* refused as it is */
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
                     s->length != q->length || s->delta != q->delta ||
                     (piece_start(q) != UINT64_MAX &&
                      piece_start(q) < (s->delta ? s->next_block : s->next_off)))) {
        why = "piece out of order or unlike its session";
        session_abort(s, why);
        s = NULL;
    } else if (q->first && q->delta && !has) {
        err = -ENOENT;
        why = "no older replica here to start a delta from";
    } else if (q->first && q->delta && have.corrupt) {
        err = -EIO;
        why = "the replica a delta would start from is corrupt";
    } else if (q->first && has && !have.corrupt && have.version >= q->version) {
        err = -EEXIST;
        why = "a sound replica at this version or newer is here";
    }
    if (why) {
        rpc_reply_error(req, err, "copy of chunk %016" PRIx64 ": %s", q->chunk_id, why);
        return NULL;
    }
    if (!s) {
        uint64_t zero = csum_zero_block();

        s = xcalloc(1, sizeof(*s));
        s->cr = cr;
        s->id = q->session;
        s->chunk_id = q->chunk_id;
        s->version = q->version;
        s->length = q->length;
        s->blocks = blocks;
        s->delta = q->delta;
        s->data_fd = s->meta_fd = -1;
        s->sums = xmalloc((size_t)blocks * sizeof(*s->sums));
        for (uint32_t b = 0; b < blocks; b++)
            s->sums[b] = zero; /* a delta's come from the older replica */
        s->last_ms = mono_ms();
        if (u64map_put(&cr->sessions, s->id, s) < 0) {
            log_error("copyrecv: out of memory");
            abort();
        }
        log_info("copyrecv: receiving chunk %016" PRIx64 " version %" PRIu64
                 "%s (session %016" PRIx64 ")",
                 s->chunk_id, s->version, s->delta ? " as a delta" : "", s->id);
    }
    if (!q->checksums_in_payload && q->delta && q->n_blocks)
        s->next_block = (uint64_t)q->blocks[q->n_blocks - 1] + 1;
    else if (!q->checksums_in_payload && !q->delta)
        s->next_off = q->offset + req->payload_len;
    return s;
}

/* The source gave the copy up: drop its session at once. */
static void source_gave_up(struct copyrecv *cr, rpc_req *req)
{
    const Keel__CopyChunkReq *q = req->env->copy_chunk_req;
    struct session *s = u64map_get(&cr->sessions, q->session);

    if (req->payload_len) {
        rpc_reply_error(req, -EINVAL, "an abort of a copy carries no payload");
        return;
    }
    if (s && s->chunk_id == q->chunk_id)
        session_abort(s, "its source gave it up");
    rpc_reply(req, NULL, RPC_NO_PAYLOAD);
}

void copyrecv_handle(struct copyrecv *cr, rpc_req *req)
{
    uint64_t charge = INFLIGHT_REQUEST_COST + req->payload_len;
    struct session *s;
    struct piece *p;

    if (req->env->copy_chunk_req->abort) {
        source_gave_up(cr, req);
        return;
    }
    inflight_take(cr->inflight, charge);
    s = admit(cr, req);
    if (!s) {
        inflight_give(cr->inflight, charge); /* answered already */
        return;
    }
    p = piece_new(s, req);
    p->charge = charge;
    queue_piece(s, p);
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

int copyrecv_new(uv_loop_t *loop, struct chunkstore *cs, struct replicas *reps,
                 struct inflight *inflight, uint32_t idle_ms, struct copyrecv **out)
{
    struct copyrecv *cr = xcalloc(1, sizeof(*cr));

    cr->loop = loop;
    cr->cs = cs;
    cr->reps = reps;
    cr->inflight = inflight;
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
