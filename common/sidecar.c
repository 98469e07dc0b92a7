/*
 * sidecar: see sidecar.h for the format.
 */
#include "sidecar.h"

#include "checksum.h"
#include "diskio.h"
#include "le.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIDECAR_MAGIC  0x41544d4bu /* "KMTA" little-endian */
#define HDR_SUMMED     56u         /* bytes covered by the header checksum */
#define SUMS_PER_WRITE 8192u       /* checksums staged per write when creating */

uint64_t sidecar_size(uint32_t blocks)
{
    return SIDECAR_SUMS_OFF + (uint64_t)blocks * sizeof(uint64_t);
}

void sidecar_encode(const struct sidecar_header *h, uint8_t *buf)
{
    memset(buf, 0, SIDECAR_HEADER_LEN);
    le_put32(buf + 0, SIDECAR_MAGIC);
    le_put32(buf + 4, SIDECAR_LAYOUT);
    le_put64(buf + 8, h->chunk_id);
    le_put64(buf + 16, h->version);
    le_put64(buf + 24, h->length);
    le_put32(buf + 32, h->flags);
    le_put32(buf + 36, h->blocks);
    le_put64(buf + HDR_SUMMED, csum_buf(buf, HDR_SUMMED));
}

int sidecar_decode(const uint8_t *buf, struct sidecar_header *h)
{
    struct sidecar_header d;

    if (le_get32(buf) != SIDECAR_MAGIC || le_get32(buf + 4) != SIDECAR_LAYOUT ||
        le_get64(buf + HDR_SUMMED) != csum_buf(buf, HDR_SUMMED))
        return -EBADMSG;
    d.chunk_id = le_get64(buf + 8);
    d.version = le_get64(buf + 16);
    d.length = le_get64(buf + 24);
    d.flags = le_get32(buf + 32);
    d.blocks = le_get32(buf + 36);
    if (d.flags & ~SIDECAR_FLAGS || d.blocks == 0 || d.chunk_id == 0 ||
        d.length > (uint64_t)d.blocks * KEEL_BLOCK_SIZE)
        return -EBADMSG;
    *h = d;
    return 0;
}

int sidecar_read_header(int fd, struct sidecar_header *h, bool nowait)
{
    uint8_t buf[SIDECAR_HEADER_LEN];
    size_t got = 0;
    int r = nowait ? diskio_pread_nowait(fd, buf, sizeof(buf), 0, &got)
                   : diskio_pread(fd, buf, sizeof(buf), 0, &got);

    if (r)
        return r;
    if (got < sizeof(buf))
        return -EBADMSG;
    return sidecar_decode(buf, h);
}

int sidecar_write_header(int fd, const struct sidecar_header *h)
{
    uint8_t buf[SIDECAR_HEADER_LEN];

    sidecar_encode(h, buf);
    return diskio_pwrite(fd, buf, sizeof(buf), 0);
}

int sidecar_read_sums(int fd, uint64_t first, size_t n, uint64_t *sums, bool nowait)
{
    uint64_t off = SIDECAR_SUMS_OFF + first * sizeof(uint64_t);
    size_t got;
    int r = nowait ? diskio_pread_nowait(fd, sums, n * sizeof(uint64_t), off, &got)
                   : diskio_pread(fd, sums, n * sizeof(uint64_t), off, &got);

    if (r)
        return r;
    if (got < n * sizeof(uint64_t))
        return -EBADMSG;
    for (size_t i = 0; i < n; i++)
        sums[i] = le64toh(sums[i]);
    return 0;
}

/* Little-endian staging for hosts where it differs; a plain write otherwise. */
static int write_sums_le(int fd, uint64_t first, size_t n, const uint64_t *sums)
{
    uint64_t stage[512];
    size_t done = 0;
    int r = 0;

    if (htole64(1) == 1)
        return diskio_pwrite(fd, sums, n * sizeof(uint64_t),
                             SIDECAR_SUMS_OFF + first * sizeof(uint64_t));
    while (done < n && r == 0) {
        size_t k = n - done < ARRAY_SIZE(stage) ? n - done : ARRAY_SIZE(stage);

        for (size_t i = 0; i < k; i++)
            stage[i] = htole64(sums[done + i]);
        r = diskio_pwrite(fd, stage, k * sizeof(uint64_t),
                          SIDECAR_SUMS_OFF + (first + done) * sizeof(uint64_t));
        done += k;
    }
    return r;
}

int sidecar_write_sums(int fd, uint64_t first, size_t n, const uint64_t *sums)
{
    return write_sums_le(fd, first, n, sums);
}

int sidecar_write_new(int fd, const struct sidecar_header *h, const uint64_t *sums)
{
    uint8_t head[SIDECAR_SUMS_OFF];
    uint64_t *zeros = NULL;
    int r;

    memset(head, 0, sizeof(head));
    sidecar_encode(h, head);
    r = diskio_pwrite(fd, head, sizeof(head), 0);
    if (r)
        goto out;
    if (sums) {
        r = write_sums_le(fd, 0, h->blocks, sums);
        goto out;
    }
    zeros = malloc(SUMS_PER_WRITE * sizeof(uint64_t));
    if (!zeros) {
        r = -ENOMEM;
        goto out;
    }
    zeros[0] = csum_zero_block();
    for (size_t i = 1; i < SUMS_PER_WRITE; i++)
        zeros[i] = zeros[0];
    for (uint64_t b = 0; b < h->blocks && r == 0; b += SUMS_PER_WRITE) {
        size_t k = h->blocks - b < SUMS_PER_WRITE ? h->blocks - b : SUMS_PER_WRITE;

        r = write_sums_le(fd, b, k, zeros);
    }
out:
    free(zeros);
    return r;
}

int replica_path(uint64_t chunk_id, const char *ext, char *buf, size_t len)
{
    int n;

    if (chunk_id == 0)
        return -EINVAL;
    n = snprintf(buf, len, "chunks/%02x/%016" PRIx64 ".%s", (unsigned)(chunk_id & 0xff), chunk_id,
                 ext);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
