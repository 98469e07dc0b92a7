/*
 * split: see split.h.
 */
#include "split.h"

size_t split_count(uint64_t off, uint64_t len, uint64_t chunk_size, uint32_t max_io)
{
    size_t n = 0;

    while (len > 0) {
        uint64_t room = chunk_size - off % chunk_size;
        uint64_t take = len < room ? len : room;

        if (take > max_io)
            take = max_io;
        n++;
        off += take;
        len -= take;
    }
    return n;
}

void split_range(uint64_t off, uint64_t len, uint64_t chunk_size, uint32_t max_io,
                 struct split_piece *out)
{
    size_t boff = 0;

    while (len > 0) {
        uint64_t room = chunk_size - off % chunk_size;
        uint64_t take = len < room ? len : room;

        if (take > max_io)
            take = max_io;
        out->index = off / chunk_size;
        out->coff = off % chunk_size;
        out->len = (uint32_t)take;
        out->boff = boff;
        out++;
        off += take;
        len -= take;
        boff += take;
    }
}
