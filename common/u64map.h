/*
 * u64map: a hash map from non-zero 64-bit keys (chunk ids, node ids, call
 * ids, inode numbers) to pointers. Open addressing with linear probing and
 * backward-shift deletion; grows at 70% load. Not thread-safe.
 *
 * Fallible calls return -ENOMEM instead of aborting, so the client library
 * can use it.
 */
#ifndef KEEL_U64MAP_H
#define KEEL_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct u64map_slot {
    uint64_t key; /* 0: empty */
    void *val;
};

struct u64map {
    struct u64map_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
};

void u64map_init(struct u64map *m);
/* Frees the table, not the values. */
void u64map_free(struct u64map *m);
/* The value for key, or NULL. */
void *u64map_get(const struct u64map *m, uint64_t key);
/* Inserts or replaces. key must not be 0. Returns 0 or -ENOMEM. */
int u64map_put(struct u64map *m, uint64_t key, void *val);
/* Removes key and returns its value (NULL if absent). */
void *u64map_del(struct u64map *m, uint64_t key);

/*
 * Iteration: for (size_t i = 0; u64map_next(m, &i, &k, &v);) ... Removing the
 * current key during iteration may skip or repeat entries; collect first.
 */
int u64map_next(const struct u64map *m, size_t *iter, uint64_t *key, void **val);

#endif
