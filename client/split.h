/*
 * split: cuts a byte range of a file into pieces that each lie inside one
 * chunk and are at most max_io bytes long, so each piece is one request to
 * one chunk's replicas. Pure arithmetic.
 */
#ifndef KEEL_CLIENT_SPLIT_H
#define KEEL_CLIENT_SPLIT_H

#include <stddef.h>
#include <stdint.h>

struct split_piece {
    uint64_t index; /* chunk index */
    uint64_t coff;  /* offset inside the chunk */
    uint32_t len;
    size_t boff; /* offset inside the caller's buffer */
};

/* Number of pieces [off, off + len) splits into (0 when len is 0). */
size_t split_count(uint64_t off, uint64_t len, uint64_t chunk_size, uint32_t max_io);

/* Fills out[0..split_count()) in file order. */
void split_range(uint64_t off, uint64_t len, uint64_t chunk_size, uint32_t max_io,
                 struct split_piece *out);

#endif
