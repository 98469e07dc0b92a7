/*
 * checksum: see checksum.h.
 */
#include "checksum.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>
#ifdef KEEL_HAVE_XXH_DISPATCH
#include <xxh_x86dispatch.h> /* XXH3_64bits becomes the run-time dispatched one */
#endif

uint64_t csum_buf(const void *data, size_t len)
{
    return XXH3_64bits(data, len);
}

uint64_t csum_zero_block(void)
{
    static const unsigned char zeros[KEEL_BLOCK_SIZE];

    return XXH3_64bits(zeros, sizeof(zeros));
}

void csum_block_range(uint64_t off, uint64_t len, uint64_t *first, uint64_t *last)
{
    *first = off >> KEEL_BLOCK_SHIFT;
    *last = (off + len - 1) >> KEEL_BLOCK_SHIFT;
}

void csum_blocks(const void *data, size_t n, uint64_t *out)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < n; i++)
        out[i] = XXH3_64bits(p + i * KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE);
}

/* Checksum of block b after the write [off, off + len) is laid over it. */
static int edge_sum(uint64_t b, uint64_t off, const unsigned char *data, size_t len,
                    csum_read_fn read, void *arg, uint64_t *sum)
{
    unsigned char buf[KEEL_BLOCK_SIZE];
    uint64_t bstart = b << KEEL_BLOCK_SHIFT;
    uint64_t from = off > bstart ? off : bstart;
    uint64_t to = off + len < bstart + KEEL_BLOCK_SIZE ? off + len : bstart + KEEL_BLOCK_SIZE;
    int r = read(b, buf, arg);

    if (r)
        return r;
    memcpy(buf + (from - bstart), data + (from - off), (size_t)(to - from));
    *sum = XXH3_64bits(buf, sizeof(buf));
    return 0;
}

int csum_update(uint64_t *sums, uint64_t off, const void *data, size_t len, csum_read_fn read,
                void *arg)
{
    const unsigned char *p = data;
    uint64_t first, last, head, tail;
    int r;

    if (len == 0)
        return 0;
    csum_block_range(off, len, &first, &last);
    /* Edge blocks first: if a read fails, nothing has been stored. */
    head = sums[first];
    tail = sums[last];
    if (off & (KEEL_BLOCK_SIZE - 1) || (first == last && len < KEEL_BLOCK_SIZE)) {
        r = edge_sum(first, off, p, len, read, arg, &head);
        if (r)
            return r;
    } else {
        head = XXH3_64bits(p, KEEL_BLOCK_SIZE);
    }
    if (last != first) {
        if ((off + len) & (KEEL_BLOCK_SIZE - 1)) {
            r = edge_sum(last, off, p, len, read, arg, &tail);
            if (r)
                return r;
        } else {
            tail = XXH3_64bits(p + ((last << KEEL_BLOCK_SHIFT) - off), KEEL_BLOCK_SIZE);
        }
    }
    for (uint64_t b = first + 1; b < last; b++)
        sums[b] = XXH3_64bits(p + ((b << KEEL_BLOCK_SHIFT) - off), KEEL_BLOCK_SIZE);
    sums[first] = head;
    if (last != first)
        sums[last] = tail;
    return 0;
}

int csum_verify(const uint64_t *sums, const void *data, size_t n, size_t *bad)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < n; i++) {
        if (XXH3_64bits(p + i * KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE) != sums[i]) {
            if (bad)
                *bad = i;
            return -EIO;
        }
    }
    return 0;
}
