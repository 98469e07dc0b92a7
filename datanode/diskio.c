/*
 * diskio: see diskio.h.
 */
#include "diskio.h"

#include <errno.h>
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

int diskio_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(fd, p + done, len - done, (off_t)(off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENOSPC;
        done += (size_t)n;
    }
    return 0;
}

int diskio_datasync(int fd)
{
    return fdatasync(fd) < 0 ? -errno : 0;
}
