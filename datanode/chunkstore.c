/*
 * chunkstore: see chunkstore.h for the layout.
 */
#include "chunkstore.h"

#include "checksum.h"
#include "diskio.h"
#include "errors.h"
#include "log.h"
#include "util.h"
#include "wal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NSUBDIRS    256
#define NAME_LEN    64 /* room for "<16 hex>-<16 hex>.meta.tmp" */
#define VERSION_MAX 1024
#define WAL_NAME    "wal"

struct chunkstore {
    char *dir;
    int dir_fd;
    int chunks_fd;
    int tmp_fd;
    int sub_fd[NSUBDIRS];
    bool in_place; /* diskio_overwrites_in_place */
    bool have_id;
    struct chunkstore_identity id;
    uint64_t wal_size;           /* of the log of small writes to keep; 0: none */
    struct wal *wal;             /* once the scan has replayed it */
    char boot[WAL_BOOT_LEN + 1]; /* the machine's boot id; empty: unknown */
};

/* -------------------------------------------------------------- helpers */

static int sub_of(uint64_t chunk_id)
{
    return (int)(chunk_id & 0xff);
}

static void file_name(uint64_t chunk_id, const char *ext, char *buf)
{
    snprintf(buf, NAME_LEN, "%016" PRIx64 ".%s", chunk_id, ext);
}

static void tmp_name(uint64_t chunk_id, uint64_t session, const char *ext, char *buf)
{
    snprintf(buf, NAME_LEN, "%016" PRIx64 "-%016" PRIx64 ".%s", chunk_id, session, ext);
}

/* Opens a directory below dirfd without following a link, creating it. */
static int open_subdir(int dirfd, const char *name, int *out)
{
    int fd;

    if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
        return -errno;
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOTDIR ? -ELOOP : -errno;
    *out = fd;
    return 0;
}

/* Opens a regular file below dirfd, never through a link. */
static int open_file(int dirfd, const char *name, int flags, int *out)
{
    struct stat st;
    int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    int r = 0;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        r = -errno;
    else if (!S_ISREG(st.st_mode))
        r = -EINVAL;
    if (r) {
        close(fd);
        return r;
    }
    *out = fd;
    return 0;
}

static int sync_dir(int fd)
{
    return fsync(fd) < 0 ? -errno : 0;
}

static int unlink_file(int dirfd, const char *name)
{
    return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

/* ------------------------------------------------------------- identity */

static bool valid_cluster_id(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > CHUNKSTORE_MAX_CLUSTER_ID)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)s[i]))
            return false;
    return true;
}

static bool valid_identity(const struct chunkstore_identity *id)
{
    return valid_cluster_id(id->cluster_id) && id->node_id != 0 && id->chunk_size > 0 &&
           id->chunk_size % KEEL_BLOCK_SIZE == 0 && id->chunk_size / KEEL_BLOCK_SIZE <= UINT32_MAX;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;

    if (!isdigit((unsigned char)*s))
        return -EBADMSG;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno || *end ? -EBADMSG : 0;
}

/* Parses VERSION: "key=value" lines; '#' starts a comment line. */
static int parse_version(char *text, struct chunkstore_identity *id)
{
    uint64_t layout = 0;
    char *save = NULL;
    int r = 0;

    memset(id, 0, sizeof(*id));
    for (char *line = strtok_r(text, "\n", &save); line && r == 0;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');

        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (!eq)
            return -EBADMSG;
        *eq = '\0';
        if (strcmp(line, "cluster_id") == 0) {
            if (strlen(eq + 1) > CHUNKSTORE_MAX_CLUSTER_ID)
                return -EBADMSG;
            snprintf(id->cluster_id, sizeof(id->cluster_id), "%s", eq + 1);
        } else if (strcmp(line, "node_id") == 0) {
            r = parse_u64(eq + 1, &id->node_id);
        } else if (strcmp(line, "layout") == 0) {
            r = parse_u64(eq + 1, &layout);
        } else if (strcmp(line, "chunk_size") == 0) {
            r = parse_u64(eq + 1, &id->chunk_size);
        }
    }
    if (r)
        return r;
    if (layout != CHUNKSTORE_LAYOUT)
        return layout ? -EPROTONOSUPPORT : -EBADMSG;
    return valid_identity(id) ? 0 : -EBADMSG;
}

static int load_version(struct chunkstore *cs)
{
    char text[VERSION_MAX + 1];
    size_t got;
    int fd = -1, r;

    r = open_file(cs->dir_fd, "VERSION", O_RDONLY, &fd);
    if (r == -ENOENT)
        return 0;
    if (r)
        return r;
    r = diskio_pread(fd, text, VERSION_MAX, 0, &got);
    close(fd);
    if (r)
        return r;
    if (got == VERSION_MAX)
        return -EBADMSG;
    text[got] = '\0';
    r = parse_version(text, &cs->id);
    if (r == 0)
        cs->have_id = true;
    return r;
}

int chunkstore_write_identity(struct chunkstore *cs, const struct chunkstore_identity *id)
{
    char text[VERSION_MAX], path[4096];
    int n;

    if (!valid_identity(id))
        return -EINVAL;
    n = snprintf(text, sizeof(text),
                 "# keel datanode; written once at registration\n"
                 "cluster_id=%s\nnode_id=%" PRIu64 "\nlayout=%u\nchunk_size=%" PRIu64 "\n",
                 id->cluster_id, id->node_id, CHUNKSTORE_LAYOUT, id->chunk_size);
    if (snprintf(path, sizeof(path), "%s/VERSION", cs->dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    return write_file_atomic(path, text, (size_t)n);
}

void chunkstore_adopt_identity(struct chunkstore *cs, const struct chunkstore_identity *id)
{
    cs->id = *id;
    cs->have_id = true;
}

bool chunkstore_identity(const struct chunkstore *cs, struct chunkstore_identity *out)
{
    if (cs->have_id && out)
        *out = cs->id;
    return cs->have_id;
}

uint32_t chunkstore_blocks(const struct chunkstore *cs)
{
    return cs->have_id ? (uint32_t)(cs->id.chunk_size / KEEL_BLOCK_SIZE) : 0;
}

const char *chunkstore_dir(const struct chunkstore *cs)
{
    return cs->dir;
}

/* ---------------------------------------------------------- open / close */

int chunkstore_open(const char *dir, struct chunkstore **out)
{
    struct chunkstore *cs = xcalloc(1, sizeof(*cs));
    char name[8];
    int r;

    cs->dir = xstrdup(dir);
    cs->dir_fd = cs->chunks_fd = cs->tmp_fd = -1;
    for (int i = 0; i < NSUBDIRS; i++)
        cs->sub_fd[i] = -1;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        r = -errno;
        goto fail;
    }
    cs->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cs->dir_fd < 0) {
        r = -errno;
        goto fail;
    }
    r = open_subdir(cs->dir_fd, "chunks", &cs->chunks_fd);
    if (r == 0)
        r = open_subdir(cs->dir_fd, "tmp", &cs->tmp_fd);
    for (int i = 0; i < NSUBDIRS && r == 0; i++) {
        snprintf(name, sizeof(name), "%02x", i);
        r = open_subdir(cs->chunks_fd, name, &cs->sub_fd[i]);
    }
    if (r == 0)
        r = load_version(cs);
    if (r)
        goto fail;
    cs->in_place = diskio_overwrites_in_place(cs->chunks_fd);
    if (cs->in_place)
        log_info("chunkstore: %s overwrites in place: flushes share device cache flushes", dir);
    *out = cs;
    return 0;
fail:
    chunkstore_close(cs);
    return r;
}

void chunkstore_close(struct chunkstore *cs)
{
    if (!cs)
        return;
    wal_close(cs->wal);
    for (int i = 0; i < NSUBDIRS; i++)
        if (cs->sub_fd[i] >= 0)
            close(cs->sub_fd[i]);
    if (cs->tmp_fd >= 0)
        close(cs->tmp_fd);
    if (cs->chunks_fd >= 0)
        close(cs->chunks_fd);
    if (cs->dir_fd >= 0)
        close(cs->dir_fd);
    free(cs->dir);
    free(cs);
}

/* -------------------------------------------------------------- replicas */

int chunkstore_open_replica(struct chunkstore *cs, uint64_t chunk_id, struct replicafile **out)
{
    int dirfd, data_fd = -1, meta_fd = -1, r;
    char name[NAME_LEN];

    if (!cs->have_id)
        return -EAGAIN;
    if (chunk_id == 0)
        return -EINVAL;
    dirfd = cs->sub_fd[sub_of(chunk_id)];
    file_name(chunk_id, "meta", name);
    r = open_file(dirfd, name, O_RDWR, &meta_fd);
    if (r)
        return r;
    /* A missing .data next to a .meta reads as zeros; the checksums judge. */
    file_name(chunk_id, "data", name);
    r = open_file(dirfd, name, O_RDWR | O_CREAT, &data_fd);
    if (r) {
        close(meta_fd);
        return r;
    }
    r = replicafile_open(data_fd, meta_fd, chunk_id, chunkstore_blocks(cs),
                         cs->in_place ? REPLICAFILE_IN_PLACE : 0, out);
    if (r == 0 && cs->wal)
        replicafile_use_wal(*out, cs->wal);
    return r;
}

/* Makes what the log holds of a chunk obsolete: its replica is another
 * file now. */
static int obsolete_records(struct chunkstore *cs, uint64_t chunk_id)
{
    return cs->wal ? wal_barrier(cs->wal, chunk_id, wal_last(cs->wal)) : 0;
}

int chunkstore_flush_device(struct chunkstore *cs)
{
    return diskio_datasync(cs->chunks_fd);
}

int chunkstore_commit_log(struct chunkstore *cs, uint64_t upto)
{
    return cs->wal ? wal_commit(cs->wal, upto) : -EINVAL;
}

uint64_t chunkstore_log_committed(struct chunkstore *cs)
{
    return cs->wal ? wal_committed(cs->wal) : 0;
}

int chunkstore_create(struct chunkstore *cs, uint64_t chunk_id, uint64_t version,
                      struct replicafile **out)
{
    struct sidecar_header h = {chunk_id, version, 0, 0, chunkstore_blocks(cs)};
    char meta[NAME_LEN], tmp[NAME_LEN], data[NAME_LEN];
    int dirfd, fd = -1, r;
    struct stat st;

    if (!cs->have_id)
        return -EAGAIN;
    if (chunk_id == 0 || version == 0)
        return -EINVAL;
    dirfd = cs->sub_fd[sub_of(chunk_id)];
    file_name(chunk_id, "meta", meta);
    file_name(chunk_id, "meta.tmp", tmp);
    file_name(chunk_id, "data", data);
    if (fstatat(dirfd, meta, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return -EEXIST;
    /* The log's records of the chunk, if any, are of a replica removed
     * since: none of them is to be replayed into this one. */
    r = obsolete_records(cs, chunk_id);
    if (r)
        return r;
    /* The data first (empty; an orphan from a crash is emptied), then the
     * sidecar under a temporary name, renamed into place once complete. */
    r = open_file(dirfd, data, O_RDWR | O_CREAT | O_TRUNC, &fd);
    if (r)
        return r;
    close(fd);
    r = open_file(dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC, &fd);
    if (r)
        return r;
    r = sidecar_write_new(fd, &h, NULL);
    if (r == 0)
        r = diskio_datasync(fd);
    close(fd);
    if (r == 0 && renameat(dirfd, tmp, dirfd, meta) < 0)
        r = -errno;
    if (r == 0)
        r = sync_dir(dirfd);
    if (r) {
        unlinkat(dirfd, tmp, 0);
        return r;
    }
    return chunkstore_open_replica(cs, chunk_id, out);
}

int chunkstore_remove(struct chunkstore *cs, uint64_t chunk_id)
{
    char name[NAME_LEN];
    int dirfd, r;

    if (chunk_id == 0)
        return -EINVAL;
    dirfd = cs->sub_fd[sub_of(chunk_id)];
    file_name(chunk_id, "meta", name);
    r = unlink_file(dirfd, name);
    if (r)
        return r;
    file_name(chunk_id, "data", name);
    r = unlink_file(dirfd, name);
    return r == -ENOENT ? 0 : r;
}

/* ----------------------------------------------------------------- copies */

int chunkstore_tmp_create(struct chunkstore *cs, uint64_t chunk_id, uint64_t session, int *data_fd,
                          int *meta_fd)
{
    char name[NAME_LEN];
    int dfd = -1, mfd = -1, r;

    if (chunk_id == 0)
        return -EINVAL;
    tmp_name(chunk_id, session, "data", name);
    r = open_file(cs->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL, &dfd);
    if (r)
        return r;
    tmp_name(chunk_id, session, "meta", name);
    r = open_file(cs->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL, &mfd);
    if (r) {
        close(dfd);
        tmp_name(chunk_id, session, "data", name);
        unlinkat(cs->tmp_fd, name, 0);
        return r;
    }
    *data_fd = dfd;
    *meta_fd = mfd;
    return 0;
}

int chunkstore_tmp_remove(struct chunkstore *cs, uint64_t chunk_id, uint64_t session)
{
    static const char *const exts[] = {"data", "meta"};
    char name[NAME_LEN];
    int r = 0;

    for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
        tmp_name(chunk_id, session, exts[i], name);
        if (unlinkat(cs->tmp_fd, name, 0) < 0 && errno != ENOENT && r == 0)
            r = -errno;
    }
    return r;
}

int chunkstore_take(struct chunkstore *cs, uint64_t chunk_id, uint64_t session, int *data_fd,
                    bool *gone)
{
    char from[NAME_LEN], to[NAME_LEN];
    int dirfd, fd = -1, r;

    *gone = false;
    if (chunk_id == 0)
        return -EINVAL;
    dirfd = cs->sub_fd[sub_of(chunk_id)];
    file_name(chunk_id, "meta", from);
    if (unlinkat(dirfd, from, 0) < 0)
        return -errno;
    *gone = true;
    r = sync_dir(dirfd);
    if (r)
        return r;
    file_name(chunk_id, "data", from);
    tmp_name(chunk_id, session, "data", to);
    if (renameat(dirfd, from, cs->tmp_fd, to) < 0)
        return errno == ENOENT ? 0 : -errno;
    r = open_file(cs->tmp_fd, to, O_RDWR, &fd);
    if (r)
        return r;
    close(*data_fd);
    *data_fd = fd;
    r = sync_dir(dirfd);
    return r ? r : sync_dir(cs->tmp_fd);
}

int chunkstore_install(struct chunkstore *cs, uint64_t chunk_id, uint64_t session)
{
    char from[NAME_LEN], to[NAME_LEN];
    int dirfd, r;

    if (chunk_id == 0)
        return -EINVAL;
    dirfd = cs->sub_fd[sub_of(chunk_id)];
    file_name(chunk_id, "meta", to);
    if (unlinkat(dirfd, to, 0) == 0) {
        r = sync_dir(dirfd); /* the old replica is gone before its data changes */
        if (r)
            return r;
    } else if (errno != ENOENT) {
        return -errno;
    }
    /* Before the new files take its place, as for a create. */
    r = obsolete_records(cs, chunk_id);
    if (r)
        return r;
    tmp_name(chunk_id, session, "data", from);
    file_name(chunk_id, "data", to);
    if (renameat(cs->tmp_fd, from, dirfd, to) < 0)
        return -errno;
    tmp_name(chunk_id, session, "meta", from);
    file_name(chunk_id, "meta", to);
    if (renameat(cs->tmp_fd, from, dirfd, to) < 0)
        return -errno;
    r = sync_dir(dirfd);
    if (r == 0)
        r = sync_dir(cs->tmp_fd);
    return r;
}

/* ------------------------------------------------------------------- scan */

/* Parses "<16 hex>.<ext>"; returns the id or 0. */
static uint64_t parse_name(const char *name, const char *ext)
{
    uint64_t id = 0;

    for (int i = 0; i < 16; i++) {
        char c = name[i];

        if (c >= '0' && c <= '9')
            id = id << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            id = id << 4 | (uint64_t)(c - 'a' + 10);
        else
            return 0;
    }
    if (name[16] != '.' || strcmp(name + 17, ext) != 0)
        return 0;
    return id;
}

/* Loads one replica found on disk and reports it. */
static int scan_replica(struct chunkstore *cs, uint64_t id, chunkstore_scan_fn fn, void *arg)
{
    struct replica_info ri = {id, 0, 0, true};
    struct replicafile *rf;
    char path[NAME_LEN + 16], name[NAME_LEN];
    int r;

    replica_path(id, "meta", path, sizeof(path));
    file_name(id, "meta", name);
    r = chunkstore_open_replica(cs, id, &rf);
    if (r == -EBADMSG || r == -ELOOP || r == -EINVAL || r == -EIO) {
        struct sidecar_header h;
        int fd = -1;

        /* Keep the version when only the rest is wrong, so it can be
         * reported corrupt at the version it has. */
        if (open_file(cs->sub_fd[sub_of(id)], name, O_RDONLY, &fd) == 0) {
            if (sidecar_read_header(fd, &h, false) == 0)
                ri.version = h.version;
            close(fd);
        }
        log_error("chunkstore: %s: cannot be trusted (%s), reporting it corrupt", path, err_str(r));
        return fn(arg, &ri);
    }
    if (r)
        return r;
    if (replicafile_header(rf)->flags & SIDECAR_DIRTY) {
        uint64_t changed = 0;

        r = replicafile_recover(rf, &changed);
        if (r) {
            log_error("chunkstore: %s: recovering checksums failed: %s", path, err_str(r));
            replicafile_close(rf);
            return r;
        }
        log_info("chunkstore: %s: recovered after an unclean stop (%" PRIu64
                 " block checksums recomputed)",
                 path, changed);
    }
    ri.version = replicafile_header(rf)->version;
    ri.length = replicafile_length(rf);
    ri.corrupt = replicafile_header(rf)->flags & SIDECAR_CORRUPT;
    replicafile_close(rf);
    return fn(arg, &ri);
}

static int scan_subdir(struct chunkstore *cs, int sub, chunkstore_scan_fn fn, void *arg)
{
    struct dirent *de;
    DIR *d;
    int fd = dup(cs->sub_fd[sub]);
    int r = 0;

    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    rewinddir(d);
    while (r == 0 && (de = readdir(d))) {
        const char *n = de->d_name;
        uint64_t id;
        struct stat st;
        char other[NAME_LEN];

        if (n[0] == '.')
            continue;
        if ((id = parse_name(n, "meta")) != 0 && sub_of(id) == sub) {
            if (!cs->have_id)
                r = -EEXIST;
            else
                r = scan_replica(cs, id, fn, arg);
        } else if ((id = parse_name(n, "data")) != 0 && sub_of(id) == sub) {
            file_name(id, "meta", other);
            if (fstatat(cs->sub_fd[sub], other, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
                log_info("chunkstore: removing orphan chunks/%02x/%s", sub, n);
                if (unlinkat(cs->sub_fd[sub], n, 0) < 0)
                    log_warn("chunkstore: cannot remove chunks/%02x/%s: %s", sub, n,
                             strerror(errno));
            }
        } else if ((id = parse_name(n, "meta.tmp")) != 0 && sub_of(id) == sub) {
            if (unlinkat(cs->sub_fd[sub], n, 0) < 0)
                log_warn("chunkstore: cannot remove chunks/%02x/%s: %s", sub, n, strerror(errno));
        } else {
            log_warn("chunkstore: ignoring unexpected file chunks/%02x/%s", sub, n);
        }
    }
    closedir(d);
    return r;
}

static int clean_tmp(struct chunkstore *cs)
{
    struct dirent *de;
    int fd = dup(cs->tmp_fd);
    DIR *d;

    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    rewinddir(d);
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && unlinkat(cs->tmp_fd, de->d_name, 0) < 0)
            log_warn("chunkstore: cannot remove tmp/%s: %s", de->d_name, strerror(errno));
    closedir(d);
    return 0;
}

/* ------------------------------------------------------------------- log */

int chunkstore_use_wal(struct chunkstore *cs, uint64_t size)
{
    if (size && (size < WAL_MIN_SIZE || size % KEEL_BLOCK_SIZE))
        return -EINVAL;
    cs->wal_size = size;
    return 0;
}

void chunkstore_set_boot_id(struct chunkstore *cs, const char *boot)
{
    snprintf(cs->boot, sizeof(cs->boot), "%s", boot);
}

int chunkstore_read_boot_id(struct chunkstore *cs, const char *path)
{
    char line[WAL_BOOT_LEN + 2] = "";
    FILE *f = fopen(path, "re");
    int r = 0;

    if (!f)
        return -errno;
    if (!fgets(line, sizeof(line), f))
        r = ferror(f) ? -EIO : -EINVAL;
    fclose(f);
    line[strcspn(line, "\n")] = 0;
    if (r == 0 && !*line)
        r = -EINVAL;
    if (r == 0)
        chunkstore_set_boot_id(cs, line);
    return r;
}

/*
 * Puts a logged write back into its replica. Only a replica an unclean stop
 * left dirty takes it: a settled one synced its data before it settled (and
 * the settle's barrier made the record obsolete anyway), a corrupt one is
 * not to be served. A version change keeps the data, so it keeps the
 * records too: a replica recovered at a new version still needs the writes
 * flushed at the old one; a replica that is another file (created or
 * installed since) came with a barrier. A record at a version above the
 * replica's cannot be its own and is left. Checksums are then recomputed
 * from the data by the scan, as for any dirty replica.
 */
static int replay_record(void *arg, const struct wal_record *rec, const void *data)
{
    struct chunkstore *cs = arg;
    int dirfd = cs->sub_fd[sub_of(rec->chunk_id)], fd = -1, r;
    struct sidecar_header h;
    char name[NAME_LEN];

    if (!cs->have_id || rec->off > cs->id.chunk_size || rec->len > cs->id.chunk_size - rec->off)
        return 0;
    file_name(rec->chunk_id, "meta", name);
    if (open_file(dirfd, name, O_RDONLY, &fd))
        return 0; /* removed since */
    r = sidecar_read_header(fd, &h, false);
    close(fd);
    if (r || rec->version > h.version || (h.flags & SIDECAR_FLAGS) != SIDECAR_DIRTY)
        return 0;
    file_name(rec->chunk_id, "data", name);
    r = open_file(dirfd, name, O_RDWR | O_CREAT, &fd);
    if (r == 0) {
        r = diskio_pwrite(fd, data, rec->len, rec->off);
        close(fd);
    }
    if (r)
        log_error("chunkstore: replaying a logged write into chunks/%02x/%s: %s",
                  sub_of(rec->chunk_id), name, err_str(r));
    return r;
}

/*
 * Replays the log left by the last run, if there is one, and keeps it (or
 * a new one) for appends when asked to; a log no longer wanted, or of
 * another size, is removed once replayed and synced.
 */
static int open_wal(struct chunkstore *cs)
{
    struct wal *w = NULL;
    uint64_t n = 0;
    struct stat st;
    int r = 0;

    if (fstatat(cs->dir_fd, WAL_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT)
            return -errno;
        if (!cs->wal_size)
            return 0;
        /* A new log: without one, flushes sync each replica's file. */
        r = wal_open(cs->dir_fd, WAL_NAME, cs->wal_size, &w);
        if (r) {
            log_warn("chunkstore: cannot create %s/" WAL_NAME " (%s): flushes sync each "
                     "replica's file",
                     cs->dir, err_str(r));
            return 0;
        }
    }
    if (!w)
        r = wal_open(cs->dir_fd, WAL_NAME, cs->wal_size ? cs->wal_size : WAL_MIN_SIZE, &w);
    if (!*cs->boot) /* unknown, if unreadable: the log is always replayed */
        (void)chunkstore_read_boot_id(cs, "/proc/sys/kernel/random/boot_id");
    /* Since the same boot, the page cache holds every write (see wal_boot). */
    if (r == 0 && (!*cs->boot || strcmp(wal_boot(w), cs->boot) != 0 || wal_must_replay(w)))
        r = wal_replay(w, replay_record, cs, &n);
    if (n)
        log_info("chunkstore: replayed %" PRIu64 " logged writes (%s)", n,
                 wal_must_replay(w) ? "a write-back had failed" : "the machine restarted");
    /* Replayed or not, the data files must hold it all before it goes. A
     * page that did not reach the disk is reported once only: the next
     * start replays whatever the boot. */
    if (r == 0 && syncfs(cs->dir_fd) < 0) {
        r = -errno;
        (void)wal_keep_for_replay(w);
    }
    if (r == 0 && cs->wal_size == wal_size(w)) {
        r = wal_reset(w, cs->boot);
        if (r == 0)
            r = wal_start_checkpoints(w);
        if (r == 0) {
            cs->wal = w;
            return 0;
        }
    }
    wal_close(w);
    if (r == -EPROTONOSUPPORT)
        log_error("chunkstore: %s/" WAL_NAME " is a log of small writes of another layout: "
                  "start this datanode once with the version that wrote it (which replays "
                  "it if it must) and stop it with SIGTERM, then remove the file",
                  cs->dir);
    else if (r)
        log_error("chunkstore: the log of small writes (%s/" WAL_NAME "): %s", cs->dir, err_str(r));
    if (r)
        return r;
    if (unlinkat(cs->dir_fd, WAL_NAME, 0) < 0)
        return -errno;
    r = sync_dir(cs->dir_fd);
    return r == 0 && cs->wal_size ? open_wal(cs) : r;
}

int chunkstore_scan(struct chunkstore *cs, chunkstore_scan_fn fn, void *arg)
{
    int r = clean_tmp(cs);

    if (r == 0 && !cs->wal)
        r = open_wal(cs);

    for (int i = 0; i < NSUBDIRS && r == 0; i++)
        r = scan_subdir(cs, i, fn, arg);
    return r;
}
