/*
 * nn-load: writes a formatted namenode metadata store holding many chunks,
 * fast, for bench/nn-scale. It is not a way to make a cluster: it writes
 * LMDB directly, through the namenode's own store and nstree functions (the
 * ones the namenode's commits run), so the records are exactly what a
 * namenode would have written, without datanodes or the RPC path.
 *
 *   nn-load --meta DIR [--chunks 1000000] [--files 1000] [--chunk-size 64M]
 *           [--replication 3]
 *
 * Formats DIR (which must not hold a store), creates the directory
 * /nn-scale with --files regular files f000000... and spreads --chunks
 * chunks over them in order (file k holds chunks k*per, ..., its size is
 * its chunk count times the chunk size). Chunk ids are one reserved range,
 * so the namenode never hands them out again; they are printed, with the
 * time taken, on one line:
 *
 *   chunks=N first_id=ID files=F per_file=P ms=T
 *
 * A fake datanode that holds chunk id first_id + i reports it at version 1.
 */
#include "flags.h"
#include "nstree.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define TXN_CHUNKS 100000u /* chunks per write transaction */

struct load {
    struct store *s;
    uint64_t chunks, files, per_file, first_id;
    uint32_t replication;
};

/* Creates /nn-scale and its files (in one transaction). */
static int load_files(struct load *l, char *err, size_t errlen)
{
    MDB_txn *txn;
    struct store_inode in;
    int64_t now = now_ns();
    int r = store_errno(mdb_txn_begin(store_env(l->s), NULL, 0, &txn));

    if (r)
        return r;
    r = nstree_mkdir(l->s, txn, "/nn-scale", 0755, 0, 0, now, &in);
    for (uint64_t f = 0; r == 0 && f < l->files; f++) {
        uint64_t first = f * l->per_file, n = MIN(l->per_file, l->chunks - MIN(first, l->chunks));
        char path[64];
        struct nstree_create_args a = {.path = path,
                                       .mode = 0644,
                                       .exclusive = true,
                                       .size = n * store_get_settings(l->s)->chunk_size,
                                       .replication = l->replication,
                                       .now = now};
        bool created;

        snprintf(path, sizeof(path), "/nn-scale/f%06" PRIu64, f);
        r = nstree_create(l->s, txn, &a, &in, &created, NULL);
    }
    if (r == 0)
        r = store_reserve_chunk_ids(l->s, txn, l->chunks ? l->chunks : 1, &l->first_id);
    if (r) {
        snprintf(err, errlen, "creating the files: %s", strerror(-r));
        mdb_txn_abort(txn);
        return r;
    }
    return store_errno(mdb_txn_commit(txn));
}

/* Adds chunks [from, to) to their files. */
static int load_chunks(struct load *l, uint64_t from, uint64_t to, char *err, size_t errlen)
{
    MDB_txn *txn;
    struct store_inode in = {0};
    uint64_t file = UINT64_MAX;
    int r = store_errno(mdb_txn_begin(store_env(l->s), NULL, 0, &txn));

    if (r)
        return r;
    for (uint64_t k = from; r == 0 && k < to; k++) {
        if (k / l->per_file != file) {
            char path[64];

            file = k / l->per_file;
            snprintf(path, sizeof(path), "/nn-scale/f%06" PRIu64, file);
            r = nstree_stat(l->s, txn, path, &in);
            if (r)
                break;
        }
        r = store_chunk_add(l->s, txn, in.ino, k % l->per_file, l->first_id + k, l->replication);
    }
    if (r) {
        snprintf(err, errlen, "adding chunks %" PRIu64 "..%" PRIu64 ": %s", from, to, strerror(-r));
        mdb_txn_abort(txn);
        return r;
    }
    return store_errno(mdb_txn_commit(txn));
}

int main(int argc, char **argv)
{
    const char *meta = NULL;
    uint64_t chunk_size = 64ull << 20, replication = 3;
    struct load l = {.chunks = 1000000, .files = 1000};
    const struct flag flags[] = {
        {"meta", FLAG_STRING, &meta, "metadata directory to format and fill"},
        {"chunks", FLAG_UINT, &l.chunks, "chunks to create"},
        {"files", FLAG_UINT, &l.files, "files they are spread over"},
        {"chunk-size", FLAG_SIZE, &chunk_size, "the cluster's chunk size"},
        {"replication", FLAG_UINT, &replication, "replication of the files and chunks"},
    };
    const struct flags_spec spec = {
        .prog = "nn-load",
        .usage = "--meta DIR [--chunks N] [--files N] [--chunk-size SIZE] [--replication N]",
        .about = "Formats a namenode metadata store and fills it with files and chunks "
                 "through the namenode's store functions (for bench/nn-scale).",
        .flags = flags,
        .nflags = (int)ARRAY_SIZE(flags),
    };
    struct store_settings settings = {0};
    char err[512] = "";
    uint64_t t0 = mono_ms();
    int first, r = flags_parse(&spec, argc, argv, &first);

    if (r)
        return r > 0 ? 0 : 2;
    if (!meta || first != argc || l.files == 0 || l.files > 1000000 || l.chunks > (1ull << 32) ||
        replication < 1 || replication > STORE_MAX_REPLICATION) {
        fprintf(stderr, "nn-load: --meta DIR is required; --files 1..1000000, --chunks up to "
                        "2^32, --replication 1..16\n");
        return 2;
    }
    l.replication = (uint32_t)replication;
    l.per_file = (l.chunks + l.files - 1) / l.files;
    if (l.per_file == 0)
        l.per_file = 1;
    settings.chunk_size = chunk_size;
    settings.replication = l.replication;
    r = store_format(meta, &settings, err, sizeof(err));
    if (r == 0)
        r = store_open(meta, &l.s, err, sizeof(err));
    if (r) {
        fprintf(stderr, "nn-load: %s\n", err);
        return 1;
    }
    r = load_files(&l, err, sizeof(err));
    for (uint64_t k = 0; r == 0 && k < l.chunks; k += TXN_CHUNKS)
        r = load_chunks(&l, k, MIN(k + TXN_CHUNKS, l.chunks), err, sizeof(err));
    store_close(l.s);
    if (r) {
        fprintf(stderr, "nn-load: %s\n", err[0] ? err : strerror(-r));
        return 1;
    }
    printf("chunks=%" PRIu64 " first_id=%" PRIu64 " files=%" PRIu64 " per_file=%" PRIu64
           " ms=%" PRIu64 "\n",
           l.chunks, l.first_id, l.files, l.per_file, mono_ms() - t0);
    return 0;
}
