/*
 * store: the LMDB schema and every namespace and chunk operation. See
 * store.h for the databases, the path rules and the threading contract.
 *
 * Record layouts (little-endian, first byte = record layout, 1):
 *
 *   inode  [0] layout [4] mode [8] nlink [12] uid [16] gid [20] replication
 *          [24] size [32] nchunks [40] atime [48] mtime [56] ctime, then a
 *          symlink's target (no NUL)
 *   chunk  [0] layout [4] refs [8] replication [16] version [24] ino [32] index
 *   node   [0] layout [4] flags [8] capacity [16] used [24] u16 addr length
 *          [26] u16 domain length [28] addr, domain
 */
#include "store.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAYOUT         1u
#define INODE_FIXED    64u
#define CHUNK_REC      40u
#define NODE_FIXED     28u
#define MAP_SIZE       (64ull << 30)
#define MIN_CHUNK_SIZE (64u << 10)
#define MAX_CHUNK_SIZE (1u << 30)

#define K_MAGIC       "keel.magic"
#define K_LAYOUT      "layout"
#define K_CLUSTER     "cluster_id"
#define K_CHUNK_SIZE  "chunk_size"
#define K_REPLICATION "replication"
#define K_NEXT_INO    "next_ino"
#define K_NEXT_NODE   "next_node"
#define K_CHUNK_LIMIT "chunk_id_limit"
#define MAGIC_VALUE   "keel-namenode-metadata"

struct store {
    MDB_env *env;
    MDB_dbi settings, inodes, dirents, fchunks, chunks, nodes;
    struct store_settings cfg;
};

/* --------------------------------------------------------------- encoding */

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void encode_inode(uint8_t *b, const struct store_inode *in)
{
    memset(b, 0, INODE_FIXED);
    b[0] = LAYOUT;
    put_le32(b + 4, in->mode);
    put_le32(b + 8, in->nlink);
    put_le32(b + 12, in->uid);
    put_le32(b + 16, in->gid);
    put_le32(b + 20, in->replication);
    put_le64(b + 24, in->size);
    put_le64(b + 32, in->nchunks);
    put_le64(b + 40, (uint64_t)in->atime);
    put_le64(b + 48, (uint64_t)in->mtime);
    put_le64(b + 56, (uint64_t)in->ctime);
}

static int decode_inode(uint64_t ino, const MDB_val *v, struct store_inode *in)
{
    const uint8_t *b = v->mv_data;

    if (v->mv_size < INODE_FIXED || b[0] != LAYOUT) {
        log_error("store: inode %" PRIu64 " record is corrupt", ino);
        return -EIO;
    }
    in->ino = ino;
    in->mode = get_le32(b + 4);
    in->nlink = get_le32(b + 8);
    in->uid = get_le32(b + 12);
    in->gid = get_le32(b + 16);
    in->replication = get_le32(b + 20);
    in->size = get_le64(b + 24);
    in->nchunks = get_le64(b + 32);
    in->atime = (int64_t)get_le64(b + 40);
    in->mtime = (int64_t)get_le64(b + 48);
    in->ctime = (int64_t)get_le64(b + 56);
    return 0;
}

static void encode_chunk(uint8_t *b, const struct store_chunk *c)
{
    memset(b, 0, CHUNK_REC);
    b[0] = LAYOUT;
    put_le32(b + 4, c->refs);
    put_le32(b + 8, c->replication);
    put_le64(b + 16, c->version);
    put_le64(b + 24, c->ino);
    put_le64(b + 32, c->index);
}

static int decode_chunk(uint64_t id, const MDB_val *v, struct store_chunk *c)
{
    const uint8_t *b = v->mv_data;

    if (v->mv_size < CHUNK_REC || b[0] != LAYOUT) {
        log_error("store: chunk %" PRIx64 " record is corrupt", id);
        return -EIO;
    }
    c->id = id;
    c->refs = get_le32(b + 4);
    c->replication = get_le32(b + 8);
    c->version = get_le64(b + 16);
    c->ino = get_le64(b + 24);
    c->index = get_le64(b + 32);
    return 0;
}

/* ------------------------------------------------------------------ basics */

int store_errno(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_KEYEXIST:
        return -EEXIST;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return -ENOSPC;
    case MDB_READERS_FULL:
        return -EAGAIN;
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return -EPROTO; /* not an environment this LMDB can open */
    default:
        if (rc > 0 && rc < 4096)
            return -rc; /* a system errno */
        log_error("store: lmdb: %s", mdb_strerror(rc));
        return -EIO;
    }
}

void store_chunk_list_free(struct store_chunk_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static void chunk_list_add(struct store_chunk_list *l, const struct store_chunk *c)
{
    if (!l)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = *c;
}

static MDB_val key_u64(uint8_t *buf, uint64_t v)
{
    put_be64(buf, v);
    return (MDB_val){8, buf};
}

static int get_u64_setting(struct store *s, MDB_txn *txn, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int r = store_errno(mdb_get(txn, s->settings, &k, &v));

    if (r)
        return r;
    if (v.mv_size != 8)
        return -EIO;
    *out = get_le64(v.mv_data);
    return 0;
}

static int put_u64_setting(struct store *s, MDB_txn *txn, const char *name, uint64_t val)
{
    uint8_t b[8];
    MDB_val k = {strlen(name), (void *)name}, v = {8, b};

    put_le64(b, val);
    return store_errno(mdb_put(txn, s->settings, &k, &v, 0));
}

/* Takes the next value of a persisted counter. */
static int next_id(struct store *s, MDB_txn *txn, const char *name, uint64_t *out)
{
    uint64_t v;
    int r = get_u64_setting(s, txn, name, &v);

    if (r)
        return r == -ENOENT ? -EIO : r;
    r = put_u64_setting(s, txn, name, v + 1);
    if (r == 0)
        *out = v;
    return r;
}

/* ------------------------------------------------------------- inode I/O */

static int inode_raw(struct store *s, MDB_txn *txn, uint64_t ino, MDB_val *v)
{
    uint8_t kb[8];
    MDB_val k = key_u64(kb, ino);

    return store_errno(mdb_get(txn, s->inodes, &k, v));
}

int store_inode_get(struct store *s, MDB_txn *txn, uint64_t ino, struct store_inode *out)
{
    MDB_val v;
    int r;

    if (ino == 0)
        return -ENOENT;
    r = inode_raw(s, txn, ino, &v);
    if (r)
        return r;
    return decode_inode(ino, &v, out);
}

int store_inode_target(struct store *s, MDB_txn *txn, uint64_t ino, char *buf, size_t len)
{
    MDB_val v;
    size_t tlen;
    int r = inode_raw(s, txn, ino, &v);

    if (r)
        return r;
    if (v.mv_size < INODE_FIXED)
        return -EIO;
    tlen = v.mv_size - INODE_FIXED;
    if (tlen + 1 > len)
        return -ERANGE;
    memcpy(buf, (const char *)v.mv_data + INODE_FIXED, tlen);
    buf[tlen] = '\0';
    return 0;
}

int store_next_ino(struct store *s, MDB_txn *txn, uint64_t *ino)
{
    return next_id(s, txn, K_NEXT_INO, ino);
}

int store_inode_create(struct store *s, MDB_txn *txn, const struct store_inode *in,
                       const char *target, size_t tlen)
{
    uint8_t kb[8];
    MDB_val k = key_u64(kb, in->ino), v;
    uint8_t *b = xmalloc(INODE_FIXED + tlen);
    int r;

    encode_inode(b, in);
    if (tlen)
        memcpy(b + INODE_FIXED, target, tlen);
    v.mv_size = INODE_FIXED + tlen;
    v.mv_data = b;
    r = store_errno(mdb_put(txn, s->inodes, &k, &v, MDB_NOOVERWRITE));
    free(b);
    return r;
}

int store_inode_update(struct store *s, MDB_txn *txn, const struct store_inode *in)
{
    uint8_t kb[8];
    MDB_val k = key_u64(kb, in->ino), v;
    uint8_t *b;
    int r = store_errno(mdb_get(txn, s->inodes, &k, &v));

    if (r)
        return r;
    if (v.mv_size < INODE_FIXED)
        return -EIO;
    b = xmalloc(v.mv_size);
    memcpy(b, v.mv_data, v.mv_size);
    encode_inode(b, in);
    v.mv_data = b;
    r = store_errno(mdb_put(txn, s->inodes, &k, &v, 0));
    free(b);
    return r;
}

int store_inode_delete(struct store *s, MDB_txn *txn, uint64_t ino)
{
    uint8_t kb[8];
    MDB_val k = key_u64(kb, ino);

    return store_errno(mdb_del(txn, s->inodes, &k, NULL));
}

/* ----------------------------------------------------------- directories */

static MDB_val dirent_key(uint8_t *buf, uint64_t dir, const char *name, size_t len)
{
    put_be64(buf, dir);
    memcpy(buf + 8, name, len);
    return (MDB_val){8 + len, buf};
}

int store_dirent_get(struct store *s, MDB_txn *txn, uint64_t dir, const char *name, size_t len,
                     uint64_t *ino)
{
    uint8_t kb[8 + STORE_NAME_MAX];
    MDB_val k = dirent_key(kb, dir, name, len), v;
    int r = store_errno(mdb_get(txn, s->dirents, &k, &v));

    if (r)
        return r;
    if (v.mv_size != 8)
        return -EIO;
    *ino = get_le64(v.mv_data);
    return 0;
}

int store_dirent_put(struct store *s, MDB_txn *txn, uint64_t dir, const char *name, size_t len,
                     uint64_t ino)
{
    uint8_t kb[8 + STORE_NAME_MAX], vb[8];
    MDB_val k = dirent_key(kb, dir, name, len), v = {8, vb};

    put_le64(vb, ino);
    return store_errno(mdb_put(txn, s->dirents, &k, &v, 0));
}

int store_dirent_del(struct store *s, MDB_txn *txn, uint64_t dir, const char *name, size_t len)
{
    uint8_t kb[8 + STORE_NAME_MAX];
    MDB_val k = dirent_key(kb, dir, name, len);

    return store_errno(mdb_del(txn, s->dirents, &k, NULL));
}

int store_dir_empty(struct store *s, MDB_txn *txn, uint64_t dir)
{
    uint8_t kb[8];
    MDB_val k = key_u64(kb, dir), v;
    MDB_cursor *cur;
    int rc, r;

    r = store_errno(mdb_cursor_open(txn, s->dirents, &cur));
    if (r)
        return r;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        r = 0;
    else if (rc)
        r = store_errno(rc);
    else
        r = k.mv_size >= 8 && get_be64(k.mv_data) == dir ? -ENOTEMPTY : 0;
    mdb_cursor_close(cur);
    return r;
}

int store_dirent_scan(struct store *s, MDB_txn *txn, uint64_t dir, const char *after,
                      store_scan_fn fn, void *arg)
{
    uint8_t kb[8 + STORE_NAME_MAX];
    size_t alen = after ? strlen(after) : 0;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc, r;

    if (alen > STORE_NAME_MAX)
        return -ENAMETOOLONG;
    r = store_errno(mdb_cursor_open(txn, s->dirents, &cur));
    if (r)
        return r;
    k = dirent_key(kb, dir, after, alen);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *name;
        size_t len;

        if (k.mv_size < 8 || get_be64(k.mv_data) != dir)
            break;
        name = (const char *)k.mv_data + 8;
        len = k.mv_size - 8;
        if (alen && len == alen && memcmp(name, after, alen) == 0)
            continue;
        if (v.mv_size != 8) {
            r = -EIO;
            goto out;
        }
        r = fn(name, len, get_le64(v.mv_data), arg);
        if (r)
            goto out;
    }
    if (rc && rc != MDB_NOTFOUND)
        r = store_errno(rc);
out:
    mdb_cursor_close(cur);
    return r;
}

/* ---------------------------------------------------------------- chunks */

static MDB_val fchunk_key(uint8_t *buf, uint64_t ino, uint64_t index)
{
    put_be64(buf, ino);
    put_be64(buf + 8, index);
    return (MDB_val){16, buf};
}

int store_chunk_get(struct store *s, MDB_txn *txn, uint64_t chunk_id, struct store_chunk *out)
{
    uint8_t kb[8];
    MDB_val k = key_u64(kb, chunk_id), v;
    int r;

    if (chunk_id == 0)
        return -ENOENT;
    r = store_errno(mdb_get(txn, s->chunks, &k, &v));
    if (r)
        return r;
    return decode_chunk(chunk_id, &v, out);
}

static int chunk_put(struct store *s, MDB_txn *txn, const struct store_chunk *c, unsigned flags)
{
    uint8_t kb[8], vb[CHUNK_REC];
    MDB_val k = key_u64(kb, c->id), v = {CHUNK_REC, vb};

    encode_chunk(vb, c);
    return store_errno(mdb_put(txn, s->chunks, &k, &v, flags));
}

/* Drops one reference; a chunk left with none is deleted and listed in freed. */
static int chunk_unref(struct store *s, MDB_txn *txn, uint64_t chunk_id,
                       struct store_chunk_list *freed)
{
    struct store_chunk c;
    uint8_t kb[8];
    MDB_val k;
    int r = store_chunk_get(s, txn, chunk_id, &c);

    if (r)
        return r == -ENOENT ? -EIO : r;
    if (c.refs > 1) {
        c.refs--;
        return chunk_put(s, txn, &c, 0);
    }
    k = key_u64(kb, chunk_id);
    r = store_errno(mdb_del(txn, s->chunks, &k, NULL));
    if (r == 0) {
        c.refs = 0;
        chunk_list_add(freed, &c);
    }
    return r;
}

int store_file_chunks_drop(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t first,
                           struct store_chunk_list *freed, uint64_t *removed)
{
    uint8_t kb[16];
    MDB_val k = fchunk_key(kb, ino, first), v;
    MDB_cursor *cur;
    uint64_t n = 0;
    int rc, r;

    r = store_errno(mdb_cursor_open(txn, s->fchunks, &cur));
    if (r)
        return r;
    /* After mdb_cursor_del the cursor rests on the next entry, which
     * MDB_NEXT then returns. */
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t chunk_id;

        if (k.mv_size != 16 || get_be64(k.mv_data) != ino)
            break;
        if (v.mv_size != 8) {
            r = -EIO;
            goto out;
        }
        chunk_id = get_le64(v.mv_data);
        r = store_errno(mdb_cursor_del(cur, 0));
        if (r)
            goto out;
        n++;
        r = chunk_unref(s, txn, chunk_id, freed);
        if (r)
            goto out;
    }
    if (rc && rc != MDB_NOTFOUND)
        r = store_errno(rc);
    if (r == 0)
        *removed = n;
out:
    mdb_cursor_close(cur);
    return r;
}

/* One name of a non-directory went away; the inode goes with its last name. */
int store_file_chunk(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t index,
                     uint64_t *chunk_id)
{
    uint8_t kb[16];
    MDB_val k = fchunk_key(kb, ino, index), v;
    int r = store_errno(mdb_get(txn, s->fchunks, &k, &v));

    if (r)
        return r;
    if (v.mv_size != 8)
        return -EIO;
    *chunk_id = get_le64(v.mv_data);
    return 0;
}

int store_file_chunks(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t first, uint64_t last,
                      store_fchunk_fn fn, void *arg)
{
    uint8_t kb[16];
    MDB_val k = fchunk_key(kb, ino, first), v;
    MDB_cursor *cur;
    int rc, r;

    r = store_errno(mdb_cursor_open(txn, s->fchunks, &cur));
    if (r)
        return r;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t index;

        if (k.mv_size != 16 || get_be64(k.mv_data) != ino)
            break;
        index = get_be64((uint8_t *)k.mv_data + 8);
        if (index > last)
            break;
        if (v.mv_size != 8) {
            r = -EIO;
            goto out;
        }
        r = fn(index, get_le64(v.mv_data), arg);
        if (r)
            goto out;
    }
    if (rc && rc != MDB_NOTFOUND)
        r = store_errno(rc);
out:
    mdb_cursor_close(cur);
    return r;
}

int store_chunk_add(struct store *s, MDB_txn *txn, uint64_t ino, uint64_t index, uint64_t chunk_id,
                    uint32_t replication)
{
    struct store_chunk c = {chunk_id, 1, 1, replication, ino, index};
    struct store_inode in;
    uint8_t kb[16], vb[8];
    MDB_val k = fchunk_key(kb, ino, index), v = {8, vb};
    int r;

    if (chunk_id == 0)
        return -EINVAL;
    r = store_inode_get(s, txn, ino, &in);
    if (r)
        return r;
    if (!S_ISREG(in.mode) || index >= STORE_MAX_FILE_SIZE / s->cfg.chunk_size)
        return -EINVAL;
    put_le64(vb, chunk_id);
    r = store_errno(mdb_put(txn, s->fchunks, &k, &v, MDB_NOOVERWRITE));
    if (r)
        return r;
    r = chunk_put(s, txn, &c, MDB_NOOVERWRITE);
    if (r)
        return r;
    in.nchunks++;
    return store_inode_update(s, txn, &in);
}

int store_chunk_set_version(struct store *s, MDB_txn *txn, uint64_t chunk_id, uint64_t old_version,
                            uint64_t new_version)
{
    struct store_chunk c;
    int r = store_chunk_get(s, txn, chunk_id, &c);

    if (r)
        return r;
    if (c.version != old_version)
        return -ESTALE;
    c.version = new_version;
    return chunk_put(s, txn, &c, 0);
}

int store_chunks_foreach(struct store *s, MDB_txn *txn, store_chunk_fn fn, void *arg)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc, r;

    r = store_errno(mdb_cursor_open(txn, s->chunks, &cur));
    if (r)
        return r;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct store_chunk c;

        if (k.mv_size != 8) {
            r = -EIO;
            goto out;
        }
        r = decode_chunk(get_be64(k.mv_data), &v, &c);
        if (r == 0)
            r = fn(&c, arg);
        if (r)
            goto out;
    }
    if (rc != MDB_NOTFOUND)
        r = store_errno(rc);
out:
    mdb_cursor_close(cur);
    return r;
}

int store_reserve_chunk_ids(struct store *s, MDB_txn *txn, uint64_t n, uint64_t *first)
{
    uint64_t limit;
    int r = get_u64_setting(s, txn, K_CHUNK_LIMIT, &limit);

    if (r)
        return r == -ENOENT ? -EIO : r;
    if (n == 0 || limit > UINT64_MAX - n)
        return -EOVERFLOW;
    r = put_u64_setting(s, txn, K_CHUNK_LIMIT, limit + n);
    if (r == 0)
        *first = limit;
    return r;
}

int store_count_inodes(struct store *s, MDB_txn *txn, uint64_t *out)
{
    MDB_stat st;
    int r = store_errno(mdb_stat(txn, s->inodes, &st));

    if (r == 0)
        *out = st.ms_entries;
    return r;
}

/* ----------------------------------------------------------------- nodes */

static int decode_node(uint64_t id, const MDB_val *v, struct store_node *n)
{
    const uint8_t *b = v->mv_data;
    size_t alen, dlen;

    if (v->mv_size < NODE_FIXED || b[0] != LAYOUT)
        goto bad;
    alen = get_le16(b + 24);
    dlen = get_le16(b + 26);
    if (alen > STORE_ADDR_MAX || dlen > STORE_DOMAIN_MAX || v->mv_size != NODE_FIXED + alen + dlen)
        goto bad;
    memset(n, 0, sizeof(*n));
    n->id = id;
    n->flags = get_le32(b + 4);
    n->capacity = get_le64(b + 8);
    n->used = get_le64(b + 16);
    memcpy(n->addr, b + NODE_FIXED, alen);
    memcpy(n->domain, b + NODE_FIXED + alen, dlen);
    return 0;
bad:
    log_error("store: node %" PRIu64 " record is corrupt", id);
    return -EIO;
}

static int node_put(struct store *s, MDB_txn *txn, const struct store_node *n)
{
    size_t alen = strnlen(n->addr, STORE_ADDR_MAX), dlen = strnlen(n->domain, STORE_DOMAIN_MAX);
    uint8_t kb[8], vb[NODE_FIXED + STORE_ADDR_MAX + STORE_DOMAIN_MAX];
    MDB_val k = key_u64(kb, n->id), v = {NODE_FIXED + alen + dlen, vb};

    memset(vb, 0, NODE_FIXED);
    vb[0] = LAYOUT;
    put_le32(vb + 4, n->flags);
    put_le64(vb + 8, n->capacity);
    put_le64(vb + 16, n->used);
    put_le16(vb + 24, (uint16_t)alen);
    put_le16(vb + 26, (uint16_t)dlen);
    memcpy(vb + NODE_FIXED, n->addr, alen);
    memcpy(vb + NODE_FIXED + alen, n->domain, dlen);
    return store_errno(mdb_put(txn, s->nodes, &k, &v, 0));
}

int store_node_get(struct store *s, MDB_txn *txn, uint64_t id, struct store_node *out)
{
    uint8_t kb[8];
    MDB_val k = key_u64(kb, id), v;
    int r;

    if (id == 0)
        return -ENOENT;
    r = store_errno(mdb_get(txn, s->nodes, &k, &v));
    if (r)
        return r;
    return decode_node(id, &v, out);
}

int store_node_register(struct store *s, MDB_txn *txn, struct store_node *n)
{
    struct store_node old;
    int r;

    if (n->id == 0) {
        r = next_id(s, txn, K_NEXT_NODE, &n->id);
        if (r)
            return r;
        n->flags = 0;
    } else {
        r = store_node_get(s, txn, n->id, &old);
        if (r)
            return r;
        n->flags = old.flags;
    }
    return node_put(s, txn, n);
}

int store_node_set_flags(struct store *s, MDB_txn *txn, uint64_t id, uint32_t set, uint32_t clear,
                         uint32_t *flags)
{
    struct store_node n;
    int r = store_node_get(s, txn, id, &n);

    if (r)
        return r;
    n.flags = (n.flags | set) & ~clear;
    r = node_put(s, txn, &n);
    if (r == 0)
        *flags = n.flags;
    return r;
}

int store_nodes_foreach(struct store *s, MDB_txn *txn, store_node_fn fn, void *arg)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc, r;

    r = store_errno(mdb_cursor_open(txn, s->nodes, &cur));
    if (r)
        return r;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct store_node n;

        if (k.mv_size != 8) {
            r = -EIO;
            goto out;
        }
        r = decode_node(get_be64(k.mv_data), &v, &n);
        if (r == 0)
            r = fn(&n, arg);
        if (r)
            goto out;
    }
    if (rc != MDB_NOTFOUND)
        r = store_errno(rc);
out:
    mdb_cursor_close(cur);
    return r;
}

/* ------------------------------------------------------------ environment */

MDB_env *store_env(struct store *s)
{
    return s->env;
}

const struct store_settings *store_get_settings(const struct store *s)
{
    return &s->cfg;
}

int store_read_begin(struct store *s, MDB_txn **txn)
{
    return store_errno(mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn));
}

static void set_err(char *err, size_t len, const char *fmt, const char *dir, const char *what)
{
    if (err && len)
        snprintf(err, len, fmt, dir, what);
}

static int env_create(const char *dir, MDB_env **out)
{
    MDB_env *env;
    int r = store_errno(mdb_env_create(&env));

    if (r)
        return r;
    r = store_errno(mdb_env_set_maxdbs(env, 8));
    if (r == 0)
        r = store_errno(mdb_env_set_mapsize(env, MAP_SIZE));
    if (r == 0)
        r = store_errno(mdb_env_open(env, dir, MDB_NOTLS, 0600));
    if (r) {
        mdb_env_close(env);
        return r;
    }
    *out = env;
    return 0;
}

static int open_dbs(struct store *s, MDB_txn *txn, unsigned flags)
{
    static const char *const names[] = {"settings", "inodes", "dirents",
                                        "fchunks",  "chunks", "nodes"};
    MDB_dbi *dbis[] = {&s->settings, &s->inodes, &s->dirents, &s->fchunks, &s->chunks, &s->nodes};

    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        int r = store_errno(mdb_dbi_open(txn, names[i], flags, dbis[i]));
        if (r)
            return r;
    }
    return 0;
}

static bool has_store(const char *dir)
{
    char p[4096];
    struct stat st;

    snprintf(p, sizeof(p), "%s/data.mdb", dir);
    return stat(p, &st) == 0;
}

/* A random id in the usual 8-4-4-4-12 hex form. */
static void make_cluster_id(char *buf, size_t len)
{
    uint64_t a = random_u64(), b = random_u64();

    snprintf(buf, len, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64,
             a >> 32, (a >> 16) & 0xffff, a & 0xffff, b >> 48, b & UINT64_C(0xffffffffffff));
}

static int write_settings(struct store *s, MDB_txn *txn)
{
    MDB_val k, v;
    int r;

    k = (MDB_val){strlen(K_MAGIC), (void *)K_MAGIC};
    v = (MDB_val){strlen(MAGIC_VALUE), (void *)MAGIC_VALUE};
    r = store_errno(mdb_put(txn, s->settings, &k, &v, 0));
    if (r)
        return r;
    k = (MDB_val){strlen(K_CLUSTER), (void *)K_CLUSTER};
    v = (MDB_val){strlen(s->cfg.cluster_id), s->cfg.cluster_id};
    r = store_errno(mdb_put(txn, s->settings, &k, &v, 0));
    if (r == 0)
        r = put_u64_setting(s, txn, K_LAYOUT, LAYOUT);
    if (r == 0)
        r = put_u64_setting(s, txn, K_CHUNK_SIZE, s->cfg.chunk_size);
    if (r == 0)
        r = put_u64_setting(s, txn, K_REPLICATION, s->cfg.replication);
    if (r == 0)
        r = put_u64_setting(s, txn, K_NEXT_INO, STORE_ROOT_INO + 1);
    if (r == 0)
        r = put_u64_setting(s, txn, K_NEXT_NODE, 1);
    if (r == 0)
        r = put_u64_setting(s, txn, K_CHUNK_LIMIT, 1);
    return r;
}

int store_format(const char *dir, const struct store_settings *settings, char *err, size_t errlen)
{
    struct store s = {0};
    struct store_inode root = {0};
    MDB_txn *txn = NULL;
    int r;

    if (settings->chunk_size % 4096 || settings->chunk_size < MIN_CHUNK_SIZE ||
        settings->chunk_size > MAX_CHUNK_SIZE) {
        set_err(err, errlen, "%s: bad chunk size (a multiple of 4 KiB, 64 KiB to 1 GiB)%s", dir,
                "");
        return -EINVAL;
    }
    if (settings->replication < 1 || settings->replication > STORE_MAX_REPLICATION) {
        set_err(err, errlen, "%s: bad replication (1 to 16)%s", dir, "");
        return -EINVAL;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        set_err(err, errlen, "%s: cannot create: %s", dir, strerror(-r));
        return r;
    }
    if (has_store(dir)) {
        set_err(err, errlen, "%s: already holds a Keel metadata store%s", dir, "");
        return -EEXIST;
    }
    s.cfg = *settings;
    if (!s.cfg.cluster_id[0])
        make_cluster_id(s.cfg.cluster_id, sizeof(s.cfg.cluster_id));
    r = env_create(dir, &s.env);
    if (r) {
        set_err(err, errlen, "%s: cannot create the environment: %s", dir, strerror(-r));
        return r;
    }
    r = store_errno(mdb_txn_begin(s.env, NULL, 0, &txn));
    if (r)
        goto out;
    r = open_dbs(&s, txn, MDB_CREATE);
    if (r == 0)
        r = write_settings(&s, txn);
    if (r == 0) {
        root.ino = STORE_ROOT_INO;
        root.mode = S_IFDIR | 0755;
        root.nlink = 2;
        root.atime = root.mtime = root.ctime = now_ns();
        r = store_inode_create(&s, txn, &root, NULL, 0);
    }
    if (r == 0) {
        r = store_errno(mdb_txn_commit(txn));
        txn = NULL;
    }
out:
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(s.env);
    if (r)
        set_err(err, errlen, "%s: format failed: %s", dir, strerror(-r));
    return r;
}

/* -ENOENT (the key is missing: not our store) or an I/O error. */
static int get_raw_setting(struct store *s, MDB_txn *txn, const char *name, MDB_val *v)
{
    MDB_val k = {strlen(name), (void *)name};

    return store_errno(mdb_get(txn, s->settings, &k, v));
}

static int read_settings(struct store *s, MDB_txn *txn, char *err, size_t errlen, const char *dir)
{
    uint64_t layout, cs, repl;
    MDB_val v;
    int r;

    r = get_raw_setting(s, txn, K_MAGIC, &v);
    if (r == 0 && (v.mv_size != strlen(MAGIC_VALUE) || memcmp(v.mv_data, MAGIC_VALUE, v.mv_size)))
        r = -ENOENT;
    if (r)
        goto bad;
    r = get_u64_setting(s, txn, K_LAYOUT, &layout);
    if (r)
        goto bad;
    if (layout != LAYOUT) {
        set_err(err, errlen, "%s: metadata layout %s is not supported", dir,
                layout > LAYOUT ? "newer" : "older");
        return -EPROTO;
    }
    r = get_raw_setting(s, txn, K_CLUSTER, &v);
    if (r == 0 && (v.mv_size == 0 || v.mv_size > STORE_CLUSTER_ID_MAX))
        r = -ENOENT;
    if (r)
        goto bad;
    memcpy(s->cfg.cluster_id, v.mv_data, v.mv_size);
    s->cfg.cluster_id[v.mv_size] = '\0';
    r = get_u64_setting(s, txn, K_CHUNK_SIZE, &cs);
    if (r == 0)
        r = get_u64_setting(s, txn, K_REPLICATION, &repl);
    if (r == 0 && (cs < MIN_CHUNK_SIZE || cs > MAX_CHUNK_SIZE || cs % 4096 || repl < 1 ||
                   repl > STORE_MAX_REPLICATION))
        r = -ENOENT;
    if (r)
        goto bad;
    s->cfg.chunk_size = cs;
    s->cfg.replication = (uint32_t)repl;
    return 0;
bad:
    if (r == -ENOENT || r == -EIO) {
        /* Missing or malformed settings: someone else's environment. */
        set_err(err, errlen, "%s: not a Keel namenode metadata store%s", dir, "");
        return -EPROTO;
    }
    set_err(err, errlen, "%s: cannot read the settings: %s", dir, strerror(-r));
    return r;
}

int store_open(const char *dir, struct store **out, char *err, size_t errlen)
{
    struct store *s;
    MDB_txn *txn = NULL;
    int dead = 0, r;

    if (err && errlen)
        err[0] = '\0';
    if (!has_store(dir)) {
        set_err(err, errlen, "%s: no metadata store here (run with --format first)%s", dir, "");
        return -ENOENT;
    }
    s = xcalloc(1, sizeof(*s));
    r = env_create(dir, &s->env);
    if (r) {
        set_err(err, errlen, "%s: cannot open the metadata store: %s", dir,
                r == -EPROTO ? "not an LMDB environment" : strerror(-r));
        free(s);
        return r;
    }
    /* Reader slots of a namenode killed with -9 would pin old pages. */
    r = store_errno(mdb_reader_check(s->env, &dead));
    if (r)
        log_warn("store: cannot check for stale readers: %s", strerror(-r));
    else if (dead)
        log_info("store: cleared %d stale reader slots", dead);
    r = store_errno(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (r)
        goto fail;
    r = open_dbs(s, txn, 0);
    if (r) {
        set_err(err, errlen, "%s: not a Keel namenode metadata store%s", dir, "");
        r = -EPROTO;
        goto fail;
    }
    r = read_settings(s, txn, err, errlen, dir);
    if (r)
        goto fail;
    r = store_errno(mdb_txn_commit(txn));
    txn = NULL;
    if (r)
        goto fail;
    *out = s;
    return 0;
fail:
    if (txn)
        mdb_txn_abort(txn);
    if (err && errlen && !err[0])
        set_err(err, errlen, "%s: cannot open the metadata store: %s", dir, strerror(-r));
    mdb_env_close(s->env);
    free(s);
    return r;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    mdb_env_close(s->env);
    free(s);
}
