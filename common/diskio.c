/*
 * diskio: see diskio.h.
 */
#include "diskio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

int diskio_pread(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    uint8_t *p = buf;
    size_t have = 0;

    while (have < len) {
        ssize_t n = pread(fd, p + have, len - have, (off_t)(off + have));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        have += (size_t)n;
    }
    if (got)
        *got = have;
    else if (have < len)
        return -EIO;
    return 0;
}

int diskio_pread_nowait(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    uint8_t *p = buf;
    size_t have = 0;

    while (have < len) {
        struct iovec iov = {p + have, len - have};
        ssize_t n = preadv2(fd, &iov, 1, (off_t)(off + have), RWF_NOWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EOPNOTSUPP || errno == EINVAL))
            return -EAGAIN;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        have += (size_t)n;
    }
    *got = have;
    return 0;
}

int diskio_pwrite_done(int fd, const void *buf, size_t len, uint64_t off, size_t *done)
{
    const uint8_t *p = buf;
    int r = 0;

    *done = 0;
    while (*done < len) {
        ssize_t n = pwrite(fd, p + *done, len - *done, (off_t)(off + *done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0) {
            r = -ENOSPC;
            break;
        }
        *done += (size_t)n;
    }
    return r;
}

int diskio_pwrite_pieces(int fd, const void *buf, size_t len, uint64_t off, size_t *done)
{
    const uint8_t *p = buf;
    int r = 0;

    *done = 0;
    while (*done < len && r == 0) {
        uint64_t at = off + *done;
        size_t n = len - *done, got;

        if (n > DISKIO_PIECE - (at & (DISKIO_PIECE - 1)))
            n = DISKIO_PIECE - (at & (DISKIO_PIECE - 1));
        r = diskio_pwrite_done(fd, p + *done, n, at, &got);
        *done += got;
    }
    return r;
}

int diskio_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done;

    return diskio_pwrite_done(fd, buf, len, off, &done);
}

int diskio_datasync(int fd)
{
    return fdatasync(fd) < 0 ? -errno : 0;
}

void diskio_start_writeback(int fd, uint64_t off, uint64_t len)
{
    (void)sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

int diskio_writeback_wait(int fd)
{
    unsigned flags =
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;

    return sync_file_range(fd, 0, 0, flags) < 0 ? -errno : 0;
}

bool diskio_overwrites_in_place(int fd)
{
    char line[4096], dev[32], fstype[32];
    unsigned maj, min;
    bool yes = false;
    struct stat st;
    FILE *f;

    if (fstat(fd, &st) < 0)
        return false;
    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    /* id parent major:minor root mountpoint options [tags] - fstype source superoptions */
    while (fgets(line, sizeof(line), f)) {
        const char *sep = strstr(line, " - ");

        if (!sep || sscanf(line, "%*s %*s %31s", dev) != 1 || sscanf(dev, "%u:%u", &maj, &min) != 2)
            continue;
        if (maj != major(st.st_dev) || min != minor(st.st_dev))
            continue;
        if (sscanf(sep + 3, "%31s", fstype) != 1)
            break;
        yes = (!strcmp(fstype, "ext4") || !strcmp(fstype, "ext3") || !strcmp(fstype, "ext2")) &&
              !strstr(sep, "data=journal");
        break;
    }
    fclose(f);
    return yes;
}
