/*
 * u64map: see u64map.h.
 */
#include "u64map.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t cap)
{
    /* Fibonacci hashing spreads sequential ids over the table. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

void u64map_init(struct u64map *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void u64map_free(struct u64map *m)
{
    free(m->slots);
    u64map_init(m);
}

void *u64map_get(const struct u64map *m, uint64_t key)
{
    if (m->cap == 0 || key == 0)
        return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key)
            return m->slots[i].val;
        if (m->slots[i].key == 0)
            return NULL;
    }
}

static void insert(struct u64map_slot *slots, size_t cap, uint64_t key, void *val)
{
    size_t i = slot_of(key, cap);

    while (slots[i].key != 0 && slots[i].key != key)
        i = (i + 1) & (cap - 1);
    slots[i].key = key;
    slots[i].val = val;
}

static int grow(struct u64map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    struct u64map_slot *ns = calloc(ncap, sizeof(*ns));

    if (!ns)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            insert(ns, ncap, m->slots[i].key, m->slots[i].val);
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int u64map_put(struct u64map *m, uint64_t key, void *val)
{
    if (key == 0)
        return -EINVAL;
    if ((m->len + 1) * 10 > m->cap * 7) {
        int r = grow(m);
        if (r)
            return r;
    }
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key) {
            m->slots[i].val = val;
            return 0;
        }
        if (m->slots[i].key == 0) {
            m->slots[i].key = key;
            m->slots[i].val = val;
            m->len++;
            return 0;
        }
    }
}

void *u64map_del(struct u64map *m, uint64_t key)
{
    size_t mask = m->cap - 1, i, j;
    void *val;

    if (m->cap == 0 || key == 0)
        return NULL;
    for (i = slot_of(key, m->cap);; i = (i + 1) & mask) {
        if (m->slots[i].key == 0)
            return NULL;
        if (m->slots[i].key == key)
            break;
    }
    val = m->slots[i].val;
    /* Backward-shift: pull later members of the probe run into the hole. */
    for (j = (i + 1) & mask; m->slots[j].key != 0; j = (j + 1) & mask) {
        size_t home = slot_of(m->slots[j].key, m->cap);
        /* Move j to i unless its home lies cyclically in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->slots[i].val = NULL;
    m->len--;
    return val;
}

int u64map_next(const struct u64map *m, size_t *iter, uint64_t *key, void **val)
{
    for (size_t i = *iter; i < m->cap; i++) {
        if (m->slots[i].key) {
            *iter = i + 1;
            if (key)
                *key = m->slots[i].key;
            if (val)
                *val = m->slots[i].val;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
