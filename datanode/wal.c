/*
 * wal: see wal.h for the format and the rules.
 */
#include "wal.h"

#include "checksum.h"
#include "diskio.h"
#include "le.h"
#include "u64map.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK       4096u
#define SB_MAGIC    0x314c41574c45454bull /* "KEELWAL1" little-endian */
#define SEG_MAGIC   0x314745534c45454bull /* "KEELSEG1" little-endian */
#define SB_BOOT     48u                   /* WAL_BOOT_LEN bytes */
#define SB_REPLAY   0x1u                  /* superblock flag: see wal_must_replay */
#define SB_GEN      (SB_BOOT + WAL_BOOT_LEN)
#define SB_SUMMED   (SB_GEN + 8)
#define RING        (2 * BLOCK) /* segments start behind the superblock's two copies */
#define SEG_HDR     64u
#define REC_LEN     48u
#define MAX_RECS    ((BLOCK - SEG_HDR) / REC_LEN)
#define SEG_MAX     (1u << 20) /* a segment's bytes, header included */
#define STAGE_BYTES (4u << 20)
#define NO_SEG      SIZE_MAX
#define RESERVE     (1u << 20) /* kept for barriers: writes are refused first */

/* Records staged for the next commit, laid out as the segments they go to
 * disk as (their positions and sequence numbers are given at commit). */
struct stage {
    uint8_t *buf;  /* STAGE_BYTES, block-aligned */
    size_t fill;   /* bytes used */
    size_t seg;    /* offset of the open segment's header, or NO_SEG */
    uint32_t nrec; /* records in the open segment */
    uint64_t last; /* number of the last record staged */
};

struct wal {
    int fd;
    uint64_t size;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct stage stage[2];
    int active; /* the stage that takes appends; the other is empty or being written */
    bool appending;
    bool committing;
    bool checkpointing;
    bool stopping;     /* the checkpointer is to end */
    bool checkpointer; /* it runs */
    pthread_t thread;
    int error;                   /* sticky: a commit failed */
    int sync_error;              /* sticky: a checkpoint's syncfs failed (SB_REPLAY) */
    uint64_t epoch;              /* of the superblock; segments of another are stale */
    char boot[WAL_BOOT_LEN + 1]; /* of the superblock */
    uint32_t flags;              /* of the superblock: SB_REPLAY */
    uint64_t sb_gen;             /* of the superblock last written or read */
    uint64_t tail;               /* first live segment (superblock) */
    uint64_t tail_seq;
    uint64_t head;         /* where the next segment goes */
    uint64_t next_seq;     /* its sequence number */
    uint64_t durable_head; /* head and next_seq as of the last commit that finished */
    uint64_t durable_seq;
    uint64_t used;        /* bytes from tail to durable_head, including a wrap's waste */
    uint64_t reserved;    /* bytes staged */
    uint64_t appended;    /* number of the last record staged */
    uint64_t committed;   /* every record up to this number is durable */
    struct u64map chunks; /* chunk id -> number of its last record in the live log */
};

static uint64_t round_block(uint64_t n)
{
    return (n + BLOCK - 1) & ~(uint64_t)(BLOCK - 1);
}

static uint64_t capacity(const struct wal *w)
{
    return w->size - RING;
}

/* What writes may fill: a wrap's waste and the barriers' room are kept. */
static uint64_t usable(const struct wal *w)
{
    return capacity(w) - SEG_MAX - RESERVE;
}

/* A segment that ends at the file's end leaves the next one at the
 * ring's start. */
static uint64_t ring_pos(const struct wal *w, uint64_t pos)
{
    return pos == w->size ? RING : pos;
}

/* Bytes from a to b going forward around the ring of segments. */
static uint64_t ring_dist(const struct wal *w, uint64_t a, uint64_t b)
{
    return b >= a ? b - a : (w->size - a) + (b - RING);
}

static void *alloc_blocks(size_t n)
{
    void *p = NULL;

    return posix_memalign(&p, BLOCK, n) ? NULL : p;
}

/* Reads len bytes at off; what lies past the file's end reads as zeros,
 * which no header matches. */
static int read_at(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    int r = diskio_pread(fd, buf, len, off, &got);

    if (r == 0 && got < len)
        memset(buf + got, 0, len - got);
    return r;
}

/* ------------------------------------------------------------ superblock */

/*
 * The superblock has two copies, in the first two blocks, written in turn
 * with a growing generation: a write the power cut tears leaves the other
 * copy, the last one written whole, which still describes a log that is
 * there (what it frees is reused only once the newer copy is durable).
 */
static int write_super(struct wal *w, uint64_t seq, uint64_t pos)
{
    uint8_t *b = alloc_blocks(BLOCK);
    uint64_t gen = w->sb_gen + 1;
    int r;

    if (!b)
        return -ENOMEM;
    memset(b, 0, BLOCK);
    le_put64(b + 0, SB_MAGIC);
    le_put32(b + 8, WAL_LAYOUT);
    le_put32(b + 12, w->flags);
    le_put64(b + 16, w->size);
    le_put64(b + 24, seq);
    le_put64(b + 32, pos);
    le_put64(b + 40, w->epoch);
    memcpy(b + SB_BOOT, w->boot, strnlen(w->boot, WAL_BOOT_LEN));
    le_put64(b + SB_GEN, gen);
    le_put64(b + SB_SUMMED, csum_buf(b, SB_SUMMED));
    r = diskio_pwrite(w->fd, b, BLOCK, (gen % 2) * BLOCK);
    if (r == 0 && fdatasync(w->fd) < 0)
        r = -errno;
    if (r == 0)
        w->sb_gen = gen;
    free(b);
    return r;
}

/* The copy in block `slot`, if it is whole and sound: 1, else 0, or an
 * error: of the read, or -EPROTONOSUPPORT for a log of another layout. */
static int read_super_copy(struct wal *w, uint8_t *b, int slot)
{
    uint64_t pos;
    int r = read_at(w->fd, b, BLOCK, (uint64_t)slot * BLOCK);

    if (r)
        return r;
    if (le_get64(b + 0) == SB_MAGIC && le_get32(b + 8) != WAL_LAYOUT)
        return -EPROTONOSUPPORT;
    pos = le_get64(b + 32);
    return le_get64(b + 0) == SB_MAGIC && le_get64(b + SB_SUMMED) == csum_buf(b, SB_SUMMED) &&
           le_get64(b + 16) == w->size && pos >= RING && pos < w->size && pos % BLOCK == 0 &&
           le_get64(b + SB_GEN) % 2 == (uint64_t)slot;
}

static int read_super(struct wal *w)
{
    uint8_t *b = alloc_blocks(2 * BLOCK), *c;
    int ok[2] = {0, 0}, r = 0;
    bool newer;

    if (!b)
        return -ENOMEM;
    /* A torn copy leaves the other. One that cannot be read stops the
     * open: it may be a newer copy, written whole, whose predecessor's
     * tail the ring has since written over. */
    for (int slot = 0; slot < 2 && r == 0; slot++) {
        r = read_super_copy(w, b + slot * BLOCK, slot);
        ok[slot] = r == 1;
        r = r < 0 ? r : 0;
    }
    if (r == 0 && !ok[0] && !ok[1])
        r = -EBADMSG;
    if (r == 0) {
        /* The newer sound copy. */
        newer = ok[1] && (!ok[0] || le_get64(b + BLOCK + SB_GEN) > le_get64(b + SB_GEN));
        c = newer ? b + BLOCK : b;
        w->tail_seq = le_get64(c + 24);
        w->tail = le_get64(c + 32);
        w->epoch = le_get64(c + 40);
        w->flags = le_get32(c + 12);
        memcpy(w->boot, c + SB_BOOT, WAL_BOOT_LEN);
        w->boot[WAL_BOOT_LEN] = 0;
        w->sb_gen = le_get64(c + SB_GEN);
    }
    free(b);
    return r;
}

/* -------------------------------------------------------------- open/close */

/*
 * Writes zeros over the whole file: a commit into blocks that were only
 * allocated would have the filesystem record them as written, a journal
 * commit with every device flush until the log has gone round once.
 */
static int zero_fill(int fd, uint64_t size)
{
    size_t piece = 1u << 20;
    uint8_t *zeros = alloc_blocks(piece);
    int r = 0;

    if (!zeros)
        return -ENOMEM;
    memset(zeros, 0, piece);
    for (uint64_t off = 0; off < size && r == 0; off += piece)
        r = diskio_pwrite(fd, zeros, (size_t)MIN(piece, size - off), off);
    free(zeros);
    return r;
}

static int create_file(int dirfd, const char *name, uint64_t size)
{
    int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
    struct wal w = {.size = size, .epoch = 1};
    char tmp[256];
    int fd, r;

    if (snprintf(tmp, sizeof(tmp), "%s.new", name) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    (void)unlinkat(dirfd, tmp, 0);
    fd = openat(dirfd, tmp, flags | O_DIRECT, 0644); /* the zeros need not be cached */
    if (fd < 0 && errno == EINVAL)
        fd = openat(dirfd, tmp, flags, 0644);
    if (fd < 0)
        return -errno;
    r = zero_fill(fd, size);
    w.fd = fd;
    if (r == 0)
        r = write_super(&w, 1, RING);
    if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
        r = -errno;
    if (r == 0 && fsync(dirfd) < 0)
        r = -errno;
    close(fd);
    if (r)
        (void)unlinkat(dirfd, tmp, 0);
    return r;
}

static int open_file(int dirfd, const char *name, int *out)
{
    int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
    int fd = openat(dirfd, name, flags | O_DIRECT);

    if (fd < 0 && errno == EINVAL) /* a filesystem without O_DIRECT (tmpfs) */
        fd = openat(dirfd, name, flags);
    if (fd < 0)
        return -errno;
    *out = fd;
    return 0;
}

int wal_open(int dirfd, const char *name, uint64_t size, struct wal **out)
{
    struct wal *w;
    struct stat st;
    int r, fd = -1;

    if (size < WAL_MIN_SIZE || size % BLOCK)
        return -EINVAL;
    r = open_file(dirfd, name, &fd);
    if (r == -ENOENT) {
        r = create_file(dirfd, name, size);
        if (r == 0)
            r = open_file(dirfd, name, &fd);
    }
    if (r)
        return r;
    if (fstat(fd, &st) < 0)
        r = -errno;
    else if (!S_ISREG(st.st_mode))
        r = -EBADMSG;
    if (r) {
        close(fd);
        return r;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        close(fd);
        return -ENOMEM;
    }
    w->fd = fd;
    w->size = (uint64_t)st.st_size;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    u64map_init(&w->chunks);
    for (int i = 0; i < 2; i++) {
        w->stage[i].buf = alloc_blocks(STAGE_BYTES);
        w->stage[i].seg = NO_SEG;
    }
    r = !w->stage[0].buf || !w->stage[1].buf ? -ENOMEM : 0;
    if (r == 0)
        r = w->size < WAL_MIN_SIZE || w->size % BLOCK ? -EBADMSG : read_super(w);
    if (r) {
        wal_close(w);
        return r;
    }
    w->head = w->durable_head = w->tail;
    w->next_seq = w->durable_seq = w->tail_seq;
    *out = w;
    return 0;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    if (w->checkpointer) {
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    close(w->fd);
    free(w->stage[0].buf);
    free(w->stage[1].buf);
    u64map_free(&w->chunks);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* ----------------------------------------------------------------- replay */

static uint64_t seg_hash(uint8_t *seg, uint64_t bytes)
{
    uint8_t saved[8];
    uint64_t h;

    memcpy(saved, seg + 40, 8);
    memset(seg + 40, 0, 8);
    h = csum_buf(seg, bytes);
    memcpy(seg + 40, saved, 8);
    return h;
}

static uint64_t decode_record(const uint8_t *p, struct wal_record *r)
{
    r->chunk_id = le_get64(p + 0);
    r->version = le_get64(p + 8);
    r->off = le_get64(p + 16);
    r->len = le_get32(p + 24);
    r->kind = le_get32(p + 28);
    return le_get64(p + 32);
}

/*
 * Reads the segment `seq` at pos into buf (SEG_MAX bytes). 1 if it is
 * there, whole and well formed; 0 if not; or a read error.
 */
static int read_segment(struct wal *w, uint64_t pos, uint64_t seq, uint8_t *buf)
{
    uint64_t bytes, data = 0;
    uint32_t nrec;
    int r;

    if (pos + BLOCK > w->size)
        return 0;
    r = read_at(w->fd, buf, BLOCK, pos);
    if (r)
        return r;
    bytes = le_get64(buf + 16);
    nrec = le_get32(buf + 24);
    if (le_get64(buf + 0) != SEG_MAGIC || le_get64(buf + 8) != seq ||
        le_get64(buf + 32) != w->epoch || bytes < BLOCK || bytes > SEG_MAX || bytes % BLOCK ||
        pos + bytes > w->size || nrec > MAX_RECS)
        return 0;
    r = read_at(w->fd, buf + BLOCK, bytes - BLOCK, pos + BLOCK);
    if (r)
        return r;
    if (seg_hash(buf, bytes) != le_get64(buf + 40))
        return 0;
    for (uint32_t i = 0; i < nrec; i++) {
        struct wal_record rec;

        decode_record(buf + SEG_HDR + i * REC_LEN, &rec);
        if (rec.chunk_id == 0 || (rec.kind != WAL_WRITE && rec.kind != WAL_BARRIER) ||
            (rec.kind == WAL_WRITE && (rec.len == 0 || rec.len > WAL_MAX_RECORD)))
            return 0;
        if (rec.kind == WAL_WRITE)
            data += round_block(rec.len);
    }
    return BLOCK + data <= bytes ? 1 : 0;
}

/*
 * Walks the live segments in order, calling visit for each record with its
 * number. Leaves the position and number of the first missing
 * segment in *end_pos, *end_seq.
 */
typedef int (*visit_fn)(void *arg, uint64_t number, const struct wal_record *r, const void *data);

static int walk(struct wal *w, visit_fn visit, void *arg, uint64_t *end_pos, uint64_t *end_seq)
{
    uint8_t *buf = alloc_blocks(SEG_MAX);
    uint64_t pos = w->tail, seq = w->tail_seq;
    int r = 0;

    if (!buf)
        return -ENOMEM;
    for (;;) {
        int found = read_segment(w, pos, seq, buf);
        const uint8_t *data = buf + BLOCK;

        if (found == 0 && pos != RING) { /* the writer wrapped */
            found = read_segment(w, RING, seq, buf);
            if (found == 1)
                pos = RING;
        }
        if (found <= 0) {
            r = found;
            break;
        }
        for (uint32_t i = 0; i < le_get32(buf + 24) && r == 0; i++) {
            struct wal_record rec;
            uint64_t number = decode_record(buf + SEG_HDR + i * REC_LEN, &rec);

            r = visit(arg, number, &rec, rec.kind == WAL_WRITE ? data : NULL);
            if (rec.kind == WAL_WRITE)
                data += round_block(rec.len);
        }
        if (r)
            break;
        pos = ring_pos(w, pos + le_get64(buf + 16));
        seq++;
    }
    free(buf);
    *end_pos = pos;
    *end_seq = seq;
    return r;
}

struct replay {
    struct u64map barriers; /* chunk id -> the highest record number a barrier obsoletes */
    wal_replay_fn fn;
    void *arg;
    uint64_t records;
};

static int note_barrier(void *arg, uint64_t number, const struct wal_record *r, const void *data)
{
    struct replay *rp = arg;
    uint64_t upto = (uintptr_t)u64map_get(&rp->barriers, r->chunk_id);

    (void)number, (void)data;
    if (r->kind != WAL_BARRIER || r->off <= upto)
        return 0;
    return u64map_put(&rp->barriers, r->chunk_id, (void *)(uintptr_t)r->off);
}

static int apply(void *arg, uint64_t number, const struct wal_record *r, const void *data)
{
    struct replay *rp = arg;

    if (r->kind != WAL_WRITE || number <= (uintptr_t)u64map_get(&rp->barriers, r->chunk_id))
        return 0;
    rp->records++;
    return rp->fn(rp->arg, r, data);
}

int wal_replay(struct wal *w, wal_replay_fn fn, void *arg, uint64_t *records)
{
    struct replay rp = {.fn = fn, .arg = arg};
    uint64_t pos, seq;
    int r;

    u64map_init(&rp.barriers);
    r = walk(w, note_barrier, &rp, &pos, &seq);
    if (r == 0)
        r = walk(w, apply, &rp, &pos, &seq);
    u64map_free(&rp.barriers);
    if (records)
        *records = rp.records;
    if (r)
        return r;
    pthread_mutex_lock(&w->lock);
    w->head = w->durable_head = pos;
    w->next_seq = w->durable_seq = seq;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

const char *wal_boot(const struct wal *w)
{
    return w->boot;
}

bool wal_must_replay(const struct wal *w)
{
    return w->flags & SB_REPLAY;
}

int wal_reset(struct wal *w, const char *boot)
{
    char old[sizeof(w->boot)];
    uint64_t epoch = w->epoch;
    int r;

    /* A new epoch: segments written before it, whole or torn, are stale
     * whatever their numbers. */
    w->epoch++;
    w->flags = 0;
    memcpy(old, w->boot, sizeof(old));
    snprintf(w->boot, sizeof(w->boot), "%s", boot);
    r = write_super(w, w->next_seq, w->head);
    if (r) {
        w->epoch = epoch;
        memcpy(w->boot, old, sizeof(old));
        return r;
    }
    pthread_mutex_lock(&w->lock);
    w->tail = w->durable_head = w->head;
    w->tail_seq = w->durable_seq = w->next_seq;
    w->used = 0;
    w->appending = true;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* ----------------------------------------------------------------- append */

uint64_t wal_append(struct wal *w, const struct wal_record *r, const void *data)
{
    uint64_t need = r->kind == WAL_WRITE ? round_block(r->len) : 0, add, n = 0;
    struct stage *s;
    uint8_t *p;
    bool fresh;

    if (r->kind == WAL_WRITE && (r->len == 0 || r->len > WAL_MAX_RECORD))
        return 0;
    pthread_mutex_lock(&w->lock);
    s = &w->stage[w->active];
    fresh = s->seg == NO_SEG || s->nrec == MAX_RECS || s->fill - s->seg + need > SEG_MAX;
    add = need + (fresh ? BLOCK : 0);
    /* Room for one segment's worth of waste where a commit wraps, and
     * for barriers once writes are refused. */
    if (!w->appending || w->error || s->fill + add > STAGE_BYTES ||
        w->used + w->reserved + add > (need ? usable(w) : capacity(w) - SEG_MAX) ||
        u64map_put(&w->chunks, r->chunk_id, (void *)(uintptr_t)(w->appended + 1)) < 0)
        goto out;
    if (fresh) {
        if (s->seg != NO_SEG)
            le_put64(s->buf + s->seg + 16, s->fill - s->seg);
        s->seg = s->fill;
        memset(s->buf + s->seg, 0, BLOCK);
        s->fill += BLOCK;
        s->nrec = 0;
    }
    p = s->buf + s->seg + SEG_HDR + s->nrec * REC_LEN;
    le_put64(p + 0, r->chunk_id);
    le_put64(p + 8, r->version);
    le_put64(p + 16, r->off);
    le_put32(p + 24, r->len);
    le_put32(p + 28, r->kind);
    le_put64(p + 32, w->appended + 1);
    le_put32(s->buf + s->seg + 24, ++s->nrec);
    if (need) {
        memcpy(s->buf + s->fill, data, r->len);
        memset(s->buf + s->fill + r->len, 0, need - r->len);
        s->fill += need;
    }
    w->reserved += add;
    n = s->last = ++w->appended;
out:
    pthread_mutex_unlock(&w->lock);
    return n;
}

/* ----------------------------------------------------------------- commit */

/*
 * Gives the segments of stage s their places and numbers (under the lock),
 * advancing head, and returns the bytes they take with the waste.
 */
static uint64_t place(struct wal *w, struct stage *s)
{
    uint64_t taken = 0;

    le_put64(s->buf + s->seg + 16, s->fill - s->seg);
    for (size_t off = 0; off < s->fill;) {
        uint8_t *seg = s->buf + off;
        uint64_t bytes = le_get64(seg + 16);

        if (w->head + bytes > w->size) {
            taken += w->size - w->head;
            w->head = RING;
        }
        le_put64(seg + 0, SEG_MAGIC);
        le_put64(seg + 8, w->next_seq++);
        le_put64(seg + 32, w->epoch);
        le_put64(seg + 48, w->head); /* where it goes, for write_stage */
        w->head = ring_pos(w, w->head + bytes);
        taken += bytes;
        off += bytes;
    }
    return taken;
}

/* Writes the placed segments of s (without the lock), then flushes. */
static int write_stage(struct wal *w, struct stage *s)
{
    size_t run = 0, off = 0;
    int r = 0;

    while (off < s->fill && r == 0) {
        uint8_t *seg = s->buf + off;
        uint64_t bytes = le_get64(seg + 16), pos = le_get64(seg + 48);

        le_put64(seg + 48, 0);
        le_put64(seg + 40, seg_hash(seg, bytes));
        off += bytes;
        /* One write per run of segments that follow each other on disk. */
        if (off == s->fill || le_get64(s->buf + off + 48) != pos + bytes) {
            uint64_t start = pos + bytes - (off - run);

            r = diskio_pwrite(w->fd, s->buf + run, off - run, start);
            run = off;
        }
    }
    if (r == 0 && fdatasync(w->fd) < 0)
        r = -errno;
    return r;
}

int wal_commit(struct wal *w, uint64_t upto)
{
    int r = 0;

    pthread_mutex_lock(&w->lock);
    while (w->committed < upto && !w->error) {
        struct stage *s = &w->stage[w->active];
        uint64_t taken, last = s->last;

        if (w->committing) {
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        if (s->fill == 0) { /* nothing staged: upto was never given */
            r = -EINVAL;
            break;
        }
        w->committing = true;
        w->active ^= 1;
        taken = place(w, s);
        pthread_mutex_unlock(&w->lock);
        r = write_stage(w, s);
        pthread_mutex_lock(&w->lock);
        /* A failed commit's segments may be on disk whole all the same:
         * the next checkpoint moves the tail past them too, or a replay
         * would take their records, never acknowledged, for live ones. */
        w->used += taken;
        w->durable_head = w->head;
        w->durable_seq = w->next_seq;
        if (r == 0)
            w->committed = last;
        else
            w->error = r;
        w->reserved -= s->fill;
        s->fill = 0;
        s->seg = NO_SEG;
        s->nrec = 0;
        w->committing = false;
        pthread_cond_broadcast(&w->cond);
    }
    if (w->committed < upto && r == 0)
        r = w->error;
    pthread_mutex_unlock(&w->lock);
    return r;
}

/* ------------------------------------------------------------- checkpoint */

bool wal_has_chunk(struct wal *w, uint64_t chunk_id)
{
    bool yes;

    pthread_mutex_lock(&w->lock);
    yes = u64map_get(&w->chunks, chunk_id) != NULL;
    pthread_mutex_unlock(&w->lock);
    return yes;
}

static bool wants_checkpoint_locked(const struct wal *w);

bool wal_wants_checkpoint(struct wal *w)
{
    bool yes;

    pthread_mutex_lock(&w->lock);
    yes = wants_checkpoint_locked(w);
    pthread_mutex_unlock(&w->lock);
    return yes;
}

uint64_t wal_size(const struct wal *w)
{
    return w->size;
}

uint64_t wal_used(struct wal *w)
{
    uint64_t n;

    pthread_mutex_lock(&w->lock);
    n = w->used + w->reserved;
    pthread_mutex_unlock(&w->lock);
    return n;
}

/* Forgets the chunks whose last record is at most `upto`. */
static void prune_chunks(struct wal *w, uint64_t upto)
{
    uint64_t key, *old = NULL;
    size_t n = 0, cap = 0;
    void *val;

    for (size_t i = 0; u64map_next(&w->chunks, &i, &key, &val);) {
        if ((uintptr_t)val > upto)
            continue;
        if (n == cap) {
            uint64_t *p = realloc(old, (cap = cap ? cap * 2 : 64) * sizeof(*old));

            if (!p)
                break; /* kept: merely a barrier more */
            old = p;
        }
        old[n++] = key;
    }
    for (size_t i = 0; i < n; i++)
        u64map_del(&w->chunks, old[i]);
    free(old);
}

int wal_checkpoint(struct wal *w)
{
    uint64_t pos, seq, upto;
    int r;

    pthread_mutex_lock(&w->lock);
    while (w->checkpointing) /* it may have begun before what the caller needs */
        pthread_cond_wait(&w->cond, &w->lock);
    if (!w->appending || w->sync_error) {
        r = w->appending ? w->sync_error : 0;
        pthread_mutex_unlock(&w->lock);
        return r;
    }
    w->checkpointing = true;
    pos = w->durable_head;
    seq = w->durable_seq;
    /* Records staged after a failed commit are never committed: their
     * files are synced below like the others'. */
    upto = w->error ? w->appended : w->committed;
    pthread_mutex_unlock(&w->lock);
    /* Every committed record's bytes were in the page cache of its data
     * file before it was staged: once synced, the log need not hold them. */
    r = syncfs(w->fd) < 0 ? -errno : 0;
    if (r) {
        /* Some page never reached the disk, and the kernel will not write
         * it again: a later syncfs would succeed without it. So the tail
         * stays where it is for good, the log keeps every record it has,
         * and the next start must put them back whatever the boot. Once
         * the log is full, writes sync their files. */
        pthread_mutex_lock(&w->lock);
        w->flags |= SB_REPLAY;
        w->sync_error = r;
        pthread_mutex_unlock(&w->lock);
        (void)write_super(w, w->tail_seq, w->tail);
    } else {
        r = write_super(w, seq, pos);
    }
    pthread_mutex_lock(&w->lock);
    if (r == 0) {
        w->used -= ring_dist(w, w->tail, pos);
        w->tail = pos;
        w->tail_seq = seq;
        prune_chunks(w, upto);
    }
    w->checkpointing = false;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return r;
}

/* One of the log's counters, read under its lock. */
static uint64_t get_locked(struct wal *w, const uint64_t *counter)
{
    uint64_t n;

    pthread_mutex_lock(&w->lock);
    n = *counter;
    pthread_mutex_unlock(&w->lock);
    return n;
}

uint64_t wal_last(struct wal *w)
{
    return get_locked(w, &w->appended);
}

int wal_keep_for_replay(struct wal *w)
{
    pthread_mutex_lock(&w->lock);
    w->flags |= SB_REPLAY;
    pthread_mutex_unlock(&w->lock);
    return write_super(w, w->tail_seq, w->tail);
}

uint64_t wal_committed(struct wal *w)
{
    return get_locked(w, &w->committed);
}

int wal_barrier(struct wal *w, uint64_t chunk_id, uint64_t upto)
{
    struct wal_record b = {chunk_id, 0, upto, 0, WAL_BARRIER};
    uint64_t n;

    if (!wal_has_chunk(w, chunk_id))
        return 0;
    n = wal_append(w, &b, NULL);
    if (n == 0 && wal_commit(w, wal_last(w)) == 0) /* the stage was full */
        n = wal_append(w, &b, NULL);
    if (n && wal_commit(w, n) == 0)
        return 0;
    return wal_checkpoint(w); /* no room, or the log failed: free all of it */
}

/* ------------------------------------------------------------ checkpointer */

static bool wants_checkpoint_locked(const struct wal *w)
{
    /* Staged bytes count towards the threshold (they will be committed),
     * but a checkpoint only frees committed ones. */
    return w->appending && !w->checkpointing && !w->sync_error && w->used > 0 &&
           (w->used + w->reserved) * 2 >= usable(w);
}

static void *checkpointer(void *arg)
{
    struct wal *w = arg;

    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        if (!wants_checkpoint_locked(w)) {
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        pthread_mutex_unlock(&w->lock);
        (void)wal_checkpoint(
            w); /* a failure leaves the log to fill: writes then sync their files */
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int wal_start_checkpoints(struct wal *w)
{
    int r;

    pthread_mutex_lock(&w->lock);
    r = w->checkpointer ? 0 : -pthread_create(&w->thread, NULL, checkpointer, w);
    if (r == 0)
        w->checkpointer = true;
    pthread_mutex_unlock(&w->lock);
    return r;
}
