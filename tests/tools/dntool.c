/*
 * dntool: speaks the datanode protocol directly (and, to get chunks
 * allocated, a little of the namenode's), so tests can drive and check
 * datanodes precisely. Output is key=value lines for shell tests.
 *
 *   dntool alloc --nn A --path P [--index I] [--replication R] [--client-id C]
 *       Hello, Create (open) P, GetChunks(for_write) for chunk I of P:
 *       prints ino= chunk= version= chunk_size= replicas=ID@ADDR,...
 *   dntool locate --nn A --path P [--index I]
 *       GetChunks with detail: chunk= version= replicas= stale= corrupt=
 *   dntool recover --nn A --ino N --chunk C --version V --failed ID,... [--client-id C]
 *       RecoverChunk: prints version= replicas=
 *   dntool write --dn A --chunk C --version V --offset O --len N [--seed S]
 *                [--chain ID@ADDR,...] [--count K] [--span S] [--until-failure]
 *                [--interval MS] [--bad-checksum] [--declare-len N]
 *       K writes of N bytes at O, O+N, ... (wrapping at --span), each byte
 *       the pattern of seed S at its chunk offset. Prints a line per write
 *       that failed somewhere, then writes= acked= status= failed=ID:ERR,...
 *       unreached=ID,...
 *   dntool read --dn A --chunk C --version V --offset O --len N [--seed S | --zeros]
 *       Verifies ReadRep.checksum, and the bytes against the pattern of S
 *       (or zeros). Prints status= and match=.
 *   dntool flush --dn A --chunk C --version V        prints status=
 *   dntool checksums --dn A --chunk C [--version V]  prints version= length= digest=
 *   dntool stream --dn A --chunk C --version V --journal F [--span S] [--seconds T]
 *                 [--flush-every K] [--inflight Q] [--chain ID@ADDR,...]
 *       Overlapping random writes with flushes, Q in flight, until the
 *       datanode goes away or T seconds pass; records every write and its
 *       outcome in F. With --chain the writes go down that chain too.
 *   dntool verify-stream --dn A --chunk C --version V --journal F
 *       Every byte must hold what the acknowledged writes left there, or the
 *       bytes of a write whose outcome is unknown that came after them; any
 *       read error (a checksum failure) fails.
 *
 * Exit status: 0 as expected; 2 bad usage; 3 an RPC failed; 4 content
 * mismatch; 5 a reply's checksum does not match its payload.
 */
#include "checksum.h"
#include "errors.h"
#include "flags.h"
#include "log.h"
#include "rpc.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CHAIN  16
#define READ_PIECE (1u << 20)
#define CALL_MS    20000

static uv_loop_t loop;

static struct {
    const char *dn, *nn, *path, *chain, *failed, *journal;
    uint64_t chunk, version, offset, len, seed, index, replication, client_id, ino;
    uint64_t count, span, interval, seconds, flush_every, inflight, declare_len;
    bool until_failure, bad_checksum, zeros;
} o = {.len = 4096,
       .seed = 1,
       .replication = 0,
       .client_id = 0,
       .count = 1,
       .seconds = 10,
       .flush_every = 16,
       .inflight = 8,
       .span = 1u << 20};

/* ---------------------------------------------------------------- helpers */

static const char *errname(int err)
{
    static const struct {
        int e;
        const char *n;
    } names[] = {{0, "OK"},
                 {-EIO, "EIO"},
                 {-ESTALE, "ESTALE"},
                 {-ENOENT, "ENOENT"},
                 {-EINVAL, "EINVAL"},
                 {-EBADMSG, "EBADMSG"},
                 {-ENOSPC, "ENOSPC"},
                 {-ECONNREFUSED, "ECONNREFUSED"},
                 {-ECONNRESET, "ECONNRESET"},
                 {-ETIMEDOUT, "ETIMEDOUT"},
                 {-EEXIST, "EEXIST"},
                 {-EAGAIN, "EAGAIN"},
                 {-EBUSY, "EBUSY"},
                 {-EPROTO, "EPROTO"},
                 {-EPIPE, "EPIPE"},
                 {-ECANCELED, "ECANCELED"},
                 {-EOPNOTSUPP, "EOPNOTSUPP"},
                 {-ENOTCONN, "ENOTCONN"}};
    static char buf[32];

    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (names[i].e == err)
            return names[i].n;
    snprintf(buf, sizeof(buf), "E%d", -err);
    return buf;
}

/* The test pattern: byte x of the chunk under seed s. */
static uint8_t pattern(uint64_t s, uint64_t x)
{
    uint64_t v = (x + 1) * 0x9E3779B97F4A7C15ull ^ (s + 1) * 0xC2B2AE3D27D4EB4Full;

    v ^= v >> 29;
    v *= 0xBF58476D1CE4E5B9ull;
    v ^= v >> 32;
    return (uint8_t)v;
}

static void fill_pattern(uint8_t *p, size_t n, uint64_t s, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(s, off + i);
}

struct reply {
    int done;
    int status;
    Keel__Envelope *env; /* a copy, owned */
    uint8_t *payload;
    uint32_t len;
    void *arg;
};

static void on_reply(int status, rpc_msg *m, void *arg)
{
    struct reply *r = arg;

    r->done = 1;
    r->status = status;
    if (m) {
        size_t n = keel__envelope__get_packed_size(m->env);
        uint8_t *buf = xmalloc(n ? n : 1);

        keel__envelope__pack(m->env, buf);
        r->env = keel__envelope__unpack(NULL, n, buf);
        free(buf);
        if (m->payload && !m->in_rbuf) {
            r->payload = m->payload;
            r->len = m->payload_len;
            m->payload = NULL;
        }
    }
}

static void reply_free(struct reply *r)
{
    if (r->env)
        keel__envelope__free_unpacked(r->env, NULL);
    free(r->payload);
    memset(r, 0, sizeof(*r));
}

/* Sends a call and runs the loop until its answer; returns its status. */
static int call(rpc_conn *c, Keel__Envelope *env, rpc_payload p, struct reply *r)
{
    struct rpc_call_opts opts = {.timeout_ms = CALL_MS};
    int e;

    memset(r, 0, sizeof(*r));
    /* Timers count from the loop's clock, which stands still while this
     * tool computes between calls. */
    uv_update_time(&loop);
    e = rpc_call(c, env, p, &opts, on_reply, r);
    if (e) {
        if (p.release)
            p.release(p.arg);
        return r->status = e;
    }
    while (!r->done)
        uv_run(&loop, UV_RUN_ONCE);
    return r->status;
}

static rpc_conn *connect_to(const char *addr, const char *what)
{
    struct rpc_opts opts = {.call_timeout_ms = CALL_MS, .backoff_min_ms = 50};
    rpc_conn *c;

    if (!addr || rpc_connect(&loop, addr, NULL, &opts, &c)) {
        fprintf(stderr, "dntool: need a valid %s address\n", what);
        exit(2);
    }
    return c;
}

static void done_with(rpc_conn *c)
{
    rpc_conn_close(c);
    uv_run(&loop, UV_RUN_NOWAIT);
}

struct chain {
    Keel__Replica reps[MAX_CHAIN];
    Keel__Replica *ptrs[MAX_CHAIN];
    char addrs[MAX_CHAIN][64];
    size_t n;
};

/* Parses "ID@ADDR,ID@ADDR". */
static void parse_chain(const char *s, struct chain *ch)
{
    char *copy = xstrdup(s ? s : ""), *save = NULL;

    ch->n = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *at = strchr(t, '@');

        if (!at || ch->n == MAX_CHAIN) {
            fprintf(stderr, "dntool: bad chain element '%s'\n", t);
            exit(2);
        }
        *at = '\0';
        keel__replica__init(&ch->reps[ch->n]);
        ch->reps[ch->n].node_id = strtoull(t, NULL, 10);
        snprintf(ch->addrs[ch->n], sizeof(ch->addrs[0]), "%s", at + 1);
        ch->reps[ch->n].addr = ch->addrs[ch->n];
        ch->ptrs[ch->n] = &ch->reps[ch->n];
        ch->n++;
    }
    free(copy);
}

static void print_replicas(const char *key, Keel__Replica **r, size_t n)
{
    printf("%s=", key);
    for (size_t i = 0; i < n; i++)
        printf("%s%" PRIu64 "@%s", i ? "," : "", r[i]->node_id, r[i]->addr);
    printf("\n");
}

/* ------------------------------------------------------------- namenode */

static uint64_t hello(rpc_conn *c, uint64_t *chunk_size)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__HelloReq q = KEEL__HELLO_REQ__INIT;
    struct reply r;

    if (!o.client_id)
        o.client_id = random_u64() >> 1;
    q.client_id = o.client_id;
    q.name = (char *)"dntool";
    env.body_case = KEEL__ENVELOPE__BODY_HELLO_REQ;
    env.hello_req = &q;
    if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
        printf("status=%s\n", errname(r.status));
        exit(3);
    }
    *chunk_size = r.env->hello_rep->chunk_size;
    reply_free(&r);
    return o.client_id;
}

static uint64_t lookup_ino(rpc_conn *c, bool create)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    struct reply r;
    uint64_t ino;

    if (create) {
        Keel__CreateReq q = KEEL__CREATE_REQ__INIT;

        q.path = (char *)o.path;
        q.mode = S_IFREG | 0644;
        q.replication = (uint32_t)o.replication;
        q.client_id = o.client_id;
        env.body_case = KEEL__ENVELOPE__BODY_CREATE_REQ;
        env.create_req = &q;
        if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
            printf("status=%s\n", errname(r.status));
            exit(3);
        }
        ino = r.env->create_rep->attr->ino;
    } else {
        Keel__StatReq q = KEEL__STAT_REQ__INIT;

        q.path = (char *)o.path;
        env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
        env.stat_req = &q;
        if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
            printf("status=%s\n", errname(r.status));
            exit(3);
        }
        ino = r.env->stat_rep->attr->ino;
    }
    reply_free(&r);
    return ino;
}

static int get_chunks(rpc_conn *c, bool for_write, bool detail)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__GetChunksReq q = KEEL__GET_CHUNKS_REQ__INIT;
    uint64_t chunk_size;
    struct reply r;
    const Keel__ChunkLoc *loc;

    hello(c, &chunk_size);
    q.ino = lookup_ino(c, for_write);
    q.offset = o.index * chunk_size;
    q.length = 1;
    q.for_write = for_write;
    q.detail = detail;
    q.client_id = o.client_id;
    env.body_case = KEEL__ENVELOPE__BODY_GET_CHUNKS_REQ;
    env.get_chunks_req = &q;
    if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
        printf("status=%s\n", errname(r.status));
        return 3;
    }
    printf("status=OK\nino=%" PRIu64 "\nchunk_size=%" PRIu64 "\nclient_id=%" PRIu64 "\n", q.ino,
           chunk_size, o.client_id);
    if (r.env->get_chunks_rep->n_chunks == 0) {
        printf("chunk=0\n");
        reply_free(&r);
        return 0;
    }
    loc = r.env->get_chunks_rep->chunks[0];
    printf("chunk=%" PRIu64 "\nversion=%" PRIu64 "\n", loc->chunk_id, loc->version);
    print_replicas("replicas", loc->replicas, loc->n_replicas);
    if (detail) {
        print_replicas("stale", loc->stale, loc->n_stale);
        print_replicas("corrupt", loc->corrupt, loc->n_corrupt);
    }
    reply_free(&r);
    return 0;
}

static int cmd_alloc(void)
{
    rpc_conn *c = connect_to(o.nn, "--nn");
    int r = get_chunks(c, true, false);

    done_with(c);
    return r;
}

static int cmd_locate(void)
{
    rpc_conn *c = connect_to(o.nn, "--nn");
    int r = get_chunks(c, false, true);

    done_with(c);
    return r;
}

static int cmd_recover(void)
{
    rpc_conn *c = connect_to(o.nn, "--nn");
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__RecoverChunkReq q = KEEL__RECOVER_CHUNK_REQ__INIT;
    uint64_t failed[MAX_CHAIN], chunk_size;
    char *copy = xstrdup(o.failed ? o.failed : ""), *save = NULL;
    struct reply r;
    int rc = 0;

    hello(c, &chunk_size);
    for (char *t = strtok_r(copy, ",", &save); t && q.n_failed < MAX_CHAIN;
         t = strtok_r(NULL, ",", &save))
        failed[q.n_failed++] = strtoull(t, NULL, 10);
    free(copy);
    q.ino = o.ino;
    q.chunk_id = o.chunk;
    q.version = o.version;
    q.failed = failed;
    q.client_id = o.client_id;
    env.body_case = KEEL__ENVELOPE__BODY_RECOVER_CHUNK_REQ;
    env.recover_chunk_req = &q;
    if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
        printf("status=%s\n", errname(r.status));
        rc = 3;
    } else {
        const Keel__ChunkLoc *loc = r.env->recover_chunk_rep->chunk;

        printf("status=OK\nversion=%" PRIu64 "\n", loc->version);
        print_replicas("replicas", loc->replicas, loc->n_replicas);
    }
    reply_free(&r);
    done_with(c);
    return rc;
}

/* ---------------------------------------------------------------- datanode */

static int cmd_write(void)
{
    rpc_conn *c = connect_to(o.dn, "--dn");
    struct chain ch;
    uint64_t off = o.offset, acked = 0, n;
    int rc = 0, last_status = 0;
    char failed[512] = "", unreached[512] = "";

    parse_chain(o.chain, &ch);
    for (n = 0; n < o.count; n++) {
        Keel__Envelope env = KEEL__ENVELOPE__INIT;
        Keel__WriteReq q = KEEL__WRITE_REQ__INIT;
        uint8_t *data = xmalloc(o.len ? o.len : 1);
        const Keel__WriteRep *w;
        struct reply r;

        if (o.span && off + o.len > o.span)
            off = o.offset;
        fill_pattern(data, o.len, o.seed, off);
        q.chunk_id = o.chunk;
        q.version = o.version;
        q.offset = off;
        q.length = (uint32_t)(o.declare_len ? o.declare_len : o.len);
        q.checksum = csum_buf(data, o.len) ^ (o.bad_checksum ? 1 : 0);
        q.n_chain = ch.n;
        q.chain = ch.ptrs;
        env.body_case = KEEL__ENVELOPE__BODY_WRITE_REQ;
        env.write_req = &q;
        last_status = call(c, &env, rpc_payload_malloced(data, o.len), &r);
        if (last_status) {
            printf("write %" PRIu64 " offset %" PRIu64 ": %s\n", n, off, errname(last_status));
            reply_free(&r);
            rc = 3;
            n++;
            break;
        }
        w = r.env->write_rep;
        failed[0] = unreached[0] = '\0';
        for (size_t i = 0; i < w->n_failed; i++)
            snprintf(failed + strlen(failed), sizeof(failed) - strlen(failed), "%s%" PRIu64 ":%s",
                     i ? "," : "", w->failed[i],
                     errname(i < w->n_failed_status ? err_from_wire(w->failed_status[i]) : -EIO));
        for (size_t i = 0; i < w->n_unreached; i++)
            snprintf(unreached + strlen(unreached), sizeof(unreached) - strlen(unreached),
                     "%s%" PRIu64, i ? "," : "", w->unreached[i]);
        if (w->n_failed || w->n_unreached) {
            printf("write %" PRIu64 " offset %" PRIu64 ": failed=%s unreached=%s\n", n, off, failed,
                   unreached);
            if (o.until_failure) {
                reply_free(&r);
                n++;
                break;
            }
        } else {
            acked++;
        }
        reply_free(&r);
        off += o.len;
        if (o.interval) {
            uint64_t until = mono_ms() + o.interval;

            while (mono_ms() < until) {
                uv_run(&loop, UV_RUN_NOWAIT);
                usleep(1000);
            }
        }
    }
    printf("writes=%" PRIu64 "\nacked=%" PRIu64 "\nlast_offset=%" PRIu64 "\nstatus=%s\nfailed=%s\n"
           "unreached=%s\n",
           n, acked, off, errname(last_status), failed, unreached);
    done_with(c);
    return rc;
}

static int cmd_read(void)
{
    rpc_conn *c = connect_to(o.dn, "--dn");
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReadReq q = KEEL__READ_REQ__INIT;
    struct reply r;
    int rc = 0;

    q.chunk_id = o.chunk;
    q.version = o.version;
    q.offset = o.offset;
    q.length = (uint32_t)o.len;
    env.body_case = KEEL__ENVELOPE__BODY_READ_REQ;
    env.read_req = &q;
    if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
        printf("status=%s\n", errname(r.status));
        rc = 3;
        goto out;
    }
    printf("status=OK\n");
    if (r.len != o.len || r.env->read_rep->checksum != csum_buf(r.payload, r.len)) {
        printf("checksum=bad\n");
        rc = 5;
        goto out;
    }
    if (o.zeros || o.seed) {
        uint64_t bad = 0, first = UINT64_MAX;

        for (uint64_t i = 0; i < r.len; i++) {
            uint8_t want = o.zeros ? 0 : pattern(o.seed, o.offset + i);

            if (r.payload[i] != want) {
                bad++;
                first = MIN(first, i);
            }
        }
        printf("match=%s\n", bad ? "no" : "yes");
        if (bad) {
            printf("mismatched=%" PRIu64 " first=%" PRIu64 "\n", bad, o.offset + first);
            rc = 4;
        }
    }
out:
    reply_free(&r);
    done_with(c);
    return rc;
}

static int cmd_flush(void)
{
    rpc_conn *c = connect_to(o.dn, "--dn");
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__FlushReq q = KEEL__FLUSH_REQ__INIT;
    struct reply r;
    int rc = 0;

    q.n_chunk_ids = q.n_versions = 1;
    q.chunk_ids = &o.chunk;
    q.versions = &o.version;
    env.body_case = KEEL__ENVELOPE__BODY_FLUSH_REQ;
    env.flush_req = &q;
    if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
        printf("status=%s\n", errname(r.status));
        rc = 3;
    } else if (r.env->flush_rep->n_status != 1) {
        printf("status=EPROTO\n");
        rc = 3;
    } else {
        int st = err_from_wire(r.env->flush_rep->status[0]);

        printf("status=%s\n", errname(st));
        rc = st ? 3 : 0;
    }
    reply_free(&r);
    done_with(c);
    return rc;
}

static int cmd_checksums(void)
{
    rpc_conn *c = connect_to(o.dn, "--dn");
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ChecksumsReq q = KEEL__CHECKSUMS_REQ__INIT;
    struct reply r;
    int rc = 0;

    q.chunk_id = o.chunk;
    q.version = o.version;
    env.body_case = KEEL__ENVELOPE__BODY_CHECKSUMS_REQ;
    env.checksums_req = &q;
    if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
        printf("status=%s\n", errname(r.status));
        rc = 3;
    } else {
        printf("status=OK\nversion=%" PRIu64 "\nlength=%" PRIu64 "\nblocks=%u\ndigest=%016" PRIx64
               "\n",
               r.env->checksums_rep->version, r.env->checksums_rep->length, r.len / 8,
               csum_buf(r.payload, r.len));
    }
    reply_free(&r);
    done_with(c);
    return rc;
}

/* ------------------------------------------------------------------ stream */

enum wstate { W_SENT = 'U', W_ACKED = 'A', W_FAILED = 'F' };

struct sop {
    bool flush;
    uint64_t off, len, seed, upto;
    char state;
    struct reply r;
};

static struct {
    struct sop *ops;
    size_t n, cap, inflight;
    bool dead;
    struct chain chain;
} st;

static void stream_reply(int status, rpc_msg *m, void *arg)
{
    struct sop *op = &st.ops[(size_t)(uintptr_t)arg];

    st.inflight--;
    if (status == -ECONNRESET || status == -ECONNREFUSED || status == -ETIMEDOUT ||
        status == -ENOTCONN) {
        st.dead = true;
        return; /* outcome unknown */
    }
    if (status == 0 && op->flush)
        status = m->env->flush_rep->n_status == 1 ? err_from_wire(m->env->flush_rep->status[0])
                                                  : -EPROTO;
    if (status == 0 && !op->flush &&
        (m->env->write_rep->n_failed || m->env->write_rep->n_unreached))
        status = -EIO;
    op->state = status ? W_FAILED : W_ACKED;
}

static void stream_send(rpc_conn *c)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__WriteReq wq = KEEL__WRITE_REQ__INIT;
    Keel__FlushReq fq = KEEL__FLUSH_REQ__INIT;
    struct rpc_call_opts opts = {.timeout_ms = CALL_MS};
    rpc_payload p = RPC_NO_PAYLOAD;
    struct sop *op;
    size_t writes = 0;

    if (st.n == st.cap) {
        st.cap = st.cap ? st.cap * 2 : 1024;
        st.ops = xrealloc(st.ops, st.cap * sizeof(*st.ops));
    }
    op = &st.ops[st.n];
    memset(op, 0, sizeof(*op));
    op->state = W_SENT;
    for (size_t i = st.n; i-- > 0 && !st.ops[i].flush;)
        writes++;
    if (o.flush_every && writes >= o.flush_every) {
        op->flush = true;
        op->upto = st.n;
        fq.n_chunk_ids = fq.n_versions = 1;
        fq.chunk_ids = &o.chunk;
        fq.versions = &o.version;
        env.body_case = KEEL__ENVELOPE__BODY_FLUSH_REQ;
        env.flush_req = &fq;
    } else {
        uint8_t *data;

        op->len = 1 + (uint64_t)rand() % (rand() % 4 ? 16384 : 200000);
        op->len = MIN(op->len, o.span);
        op->off = (uint64_t)rand() % (o.span - op->len + 1);
        op->seed = o.seed * 1000003 + st.n;
        data = xmalloc(op->len);
        fill_pattern(data, op->len, op->seed, op->off);
        wq.chunk_id = o.chunk;
        wq.version = o.version;
        wq.offset = op->off;
        wq.length = (uint32_t)op->len;
        wq.checksum = csum_buf(data, op->len);
        wq.n_chain = st.chain.n;
        wq.chain = st.chain.ptrs;
        env.body_case = KEEL__ENVELOPE__BODY_WRITE_REQ;
        env.write_req = &wq;
        p = rpc_payload_malloced(data, op->len);
    }
    if (rpc_call(c, &env, p, &opts, stream_reply, (void *)(uintptr_t)st.n)) {
        if (p.release)
            p.release(p.arg);
        st.dead = true;
        return;
    }
    st.n++;
    st.inflight++;
}

static int cmd_stream(void)
{
    rpc_conn *c = connect_to(o.dn, "--dn");
    uint64_t deadline = mono_ms() + o.seconds * 1000;
    size_t acked = 0, failed = 0;
    FILE *f;

    srand((unsigned)o.seed);
    parse_chain(o.chain, &st.chain);
    if (!o.journal || o.span == 0) {
        fprintf(stderr, "dntool: stream needs --journal and a --span\n");
        return 2;
    }
    while (!st.dead && mono_ms() < deadline) {
        while (!st.dead && st.inflight < o.inflight)
            stream_send(c);
        uv_run(&loop, UV_RUN_ONCE);
    }
    /* What is in flight ends with a reply, a reset or a timeout. */
    while (st.inflight)
        uv_run(&loop, UV_RUN_ONCE);
    f = fopen(o.journal, "w");
    if (!f) {
        perror(o.journal);
        return 3;
    }
    fprintf(f, "span %" PRIu64 "\n", o.span);
    for (size_t i = 0; i < st.n; i++) {
        const struct sop *op = &st.ops[i];

        if (op->flush)
            fprintf(f, "L %zu %" PRIu64 " %c\n", i, op->upto, op->state);
        else
            fprintf(f, "W %zu %" PRIu64 " %" PRIu64 " %" PRIu64 " %c\n", i, op->off, op->len,
                    op->seed, op->state);
        acked += op->state == W_ACKED;
        failed += op->state == W_FAILED;
    }
    fclose(f);
    printf("ops=%zu\nacked=%zu\nfailed=%zu\nended=%s\n", st.n, acked, failed,
           st.dead ? "lost" : "time");
    free(st.ops);
    done_with(c);
    return 0;
}

static int cmd_verify_stream(void)
{
    rpc_conn *c = connect_to(o.dn, "--dn");
    FILE *f = o.journal ? fopen(o.journal, "r") : NULL;
    uint64_t span = 0, bad = 0, flushed_upto = 0;
    uint8_t *model, *got;
    int64_t *last_a;
    struct sop *ops = NULL;
    size_t n = 0, cap = 0;
    char line[256];
    int rc = 0;

    if (!f) {
        fprintf(stderr, "dntool: cannot read the journal\n");
        return 2;
    }
    while (fgets(line, sizeof(line), f)) {
        struct sop op = {0};
        size_t idx;
        char s;

        if (sscanf(line, "span %" SCNu64, &span) == 1)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            ops = xrealloc(ops, cap * sizeof(*ops));
        }
        if (sscanf(line, "W %zu %" SCNu64 " %" SCNu64 " %" SCNu64 " %c", &idx, &op.off, &op.len,
                   &op.seed, &s) == 5) {
            op.state = s;
        } else if (sscanf(line, "L %zu %" SCNu64 " %c", &idx, &op.upto, &s) == 3) {
            op.flush = true;
            op.state = s;
            if (s == W_ACKED)
                flushed_upto = op.upto;
        } else {
            continue;
        }
        ops[n++] = op;
    }
    fclose(f);
    if (span == 0 || span > (1u << 30)) {
        fprintf(stderr, "dntool: bad journal\n");
        return 2;
    }
    model = xcalloc(1, span);
    got = xmalloc(span);
    last_a = xmalloc(span * sizeof(*last_a));
    for (uint64_t x = 0; x < span; x++)
        last_a[x] = -1;
    /* What the acknowledged writes left, and which write put it there. */
    for (size_t i = 0; i < n; i++) {
        if (ops[i].flush || ops[i].state != W_ACKED)
            continue;
        fill_pattern(model + ops[i].off, ops[i].len, ops[i].seed, ops[i].off);
        for (uint64_t x = ops[i].off; x < ops[i].off + ops[i].len; x++)
            last_a[x] = (int64_t)i;
    }
    for (uint64_t off = 0; off < span; off += READ_PIECE) {
        Keel__Envelope env = KEEL__ENVELOPE__INIT;
        Keel__ReadReq q = KEEL__READ_REQ__INIT;
        struct reply r;

        q.chunk_id = o.chunk;
        q.version = o.version;
        q.offset = off;
        q.length = (uint32_t)MIN((uint64_t)READ_PIECE, span - off);
        env.body_case = KEEL__ENVELOPE__BODY_READ_REQ;
        env.read_req = &q;
        if (call(c, &env, RPC_NO_PAYLOAD, &r)) {
            printf("status=%s\nread_offset=%" PRIu64 "\n", errname(r.status), off);
            reply_free(&r);
            rc = 3;
            goto out;
        }
        if (r.len != q.length || r.env->read_rep->checksum != csum_buf(r.payload, r.len)) {
            printf("checksum=bad\n");
            reply_free(&r);
            rc = 5;
            goto out;
        }
        memcpy(got + off, r.payload, r.len);
        reply_free(&r);
    }
    for (uint64_t x = 0; x < span; x++) {
        bool ok = got[x] == model[x];

        /* Or the bytes of a later write whose outcome is unknown. */
        for (size_t i = n; !ok && i-- > 0 && (int64_t)i > last_a[x];)
            if (!ops[i].flush && ops[i].state != W_ACKED && x >= ops[i].off &&
                x < ops[i].off + ops[i].len && got[x] == pattern(ops[i].seed, x))
                ok = true;
        if (!ok) {
            if (bad < 5)
                printf("mismatch at %" PRIu64 ": got %u want %u\n", x, got[x], model[x]);
            bad++;
        }
    }
    printf("status=OK\nops=%zu\nflushed_upto=%" PRIu64 "\nmismatched=%" PRIu64 "\n", n,
           flushed_upto, bad);
    rc = bad ? 4 : 0;
out:
    free(model);
    free(got);
    free(last_a);
    free(ops);
    done_with(c);
    return rc;
}

/* -------------------------------------------------------------------- main */

static const struct {
    const char *name;
    int (*fn)(void);
} commands[] = {
    {"alloc", cmd_alloc},         {"locate", cmd_locate}, {"recover", cmd_recover},
    {"write", cmd_write},         {"read", cmd_read},     {"flush", cmd_flush},
    {"checksums", cmd_checksums}, {"stream", cmd_stream}, {"verify-stream", cmd_verify_stream},
};

int main(int argc, char **argv)
{
    const struct flag flags[] = {
        {"dn", FLAG_STRING, &o.dn, "datanode address"},
        {"nn", FLAG_STRING, &o.nn, "namenode address"},
        {"path", FLAG_STRING, &o.path, "file path at the namenode"},
        {"index", FLAG_UINT, &o.index, "chunk index in the file"},
        {"replication", FLAG_UINT, &o.replication, "replication of a new file (0: default)"},
        {"client-id", FLAG_UINT, &o.client_id, "client id for the namenode (0: random)"},
        {"ino", FLAG_UINT, &o.ino, "inode number"},
        {"chunk", FLAG_UINT, &o.chunk, "chunk id"},
        {"version", FLAG_UINT, &o.version, "chunk version"},
        {"offset", FLAG_SIZE, &o.offset, "byte offset in the chunk"},
        {"len", FLAG_SIZE, &o.len, "bytes per read or write"},
        {"seed", FLAG_UINT, &o.seed, "pattern seed"},
        {"zeros", FLAG_BOOL, &o.zeros, "read: expect zeros"},
        {"chain", FLAG_STRING, &o.chain, "write, stream: ID@ADDR,... after the first node"},
        {"count", FLAG_UINT, &o.count, "write: number of writes"},
        {"span", FLAG_SIZE, &o.span, "bytes of the chunk used"},
        {"interval", FLAG_UINT, &o.interval, "write: milliseconds between writes"},
        {"until-failure", FLAG_BOOL, &o.until_failure, "write: stop at the first failure"},
        {"bad-checksum", FLAG_BOOL, &o.bad_checksum, "write: send a wrong payload checksum"},
        {"declare-len", FLAG_SIZE, &o.declare_len, "write: length to declare (not --len)"},
        {"failed", FLAG_STRING, &o.failed, "recover: failed node ids"},
        {"journal", FLAG_STRING, &o.journal, "stream: journal file"},
        {"seconds", FLAG_UINT, &o.seconds, "stream: duration"},
        {"flush-every", FLAG_UINT, &o.flush_every, "stream: writes between flushes"},
        {"inflight", FLAG_UINT, &o.inflight, "stream: requests in flight"},
    };
    const struct flags_spec spec = {
        "dntool",
        "COMMAND [flags]  (alloc locate recover write read flush checksums stream verify-stream)",
        "Drives datanodes over their own protocol for tests.",
        flags,
        (int)ARRAY_SIZE(flags),
        false,
    };
    int first, r = 2;

    log_init("dntool", LOG_WARN);
    if (argc < 2) {
        flags_usage(&spec);
        return 2;
    }
    r = flags_parse(&spec, argc - 1, argv + 1, &first);
    if (r == 1)
        return 0;
    if (r < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN); /* a killed datanode is an error, not our end */
    uv_loop_init(&loop);
    r = -1;
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            r = commands[i].fn();
    if (r < 0) {
        fprintf(stderr, "dntool: unknown command '%s'\n", argv[1]);
        r = 2;
    }
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return r;
}
