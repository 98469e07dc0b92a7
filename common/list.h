/*
 * list: an intrusive doubly linked list (a node embedded in each member).
 * A list head is a node pointing at itself when empty.
 */
#ifndef KEEL_LIST_H
#define KEEL_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *prev, *next;
};

#define list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))
#define list_for_each_safe(pos, tmp, head)                                                         \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

static inline void list_init(struct list *h)
{
    h->prev = h->next = h;
}

static inline bool list_empty(const struct list *h)
{
    return h->next == h;
}

static inline void list_add_tail(struct list *h, struct list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void list_del(struct list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static inline struct list *list_pop(struct list *h)
{
    struct list *n = h->next;
    if (n == h)
        return NULL;
    list_del(n);
    return n;
}

#endif
