/*
 * registry: see registry.h for the node states.
 */
#include "registry.h"

#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct registry {
    struct u64map nodes; /* id -> struct reg_node */
    uint64_t dead_timeout_ms;
};

struct registry *registry_new(uint64_t dead_timeout_ms)
{
    struct registry *r = xcalloc(1, sizeof(*r));

    u64map_init(&r->nodes);
    r->dead_timeout_ms = dead_timeout_ms;
    return r;
}

static void drop_commands(struct reg_node *n)
{
    size_t i = 0;
    void *v;

    while (u64map_next(&n->deletes, &i, NULL, &v))
        free(v);
    u64map_free(&n->deletes);
    u64map_init(&n->deletes);
    n->ncopies = 0;
}

void registry_free(struct registry *r)
{
    size_t i = 0;
    void *v;

    if (!r)
        return;
    while (u64map_next(&r->nodes, &i, NULL, &v)) {
        struct reg_node *n = v;

        if (n->conn)
            rpc_conn_unref(n->conn);
        drop_commands(n);
        free(n->copy_cmds);
        free(n);
    }
    u64map_free(&r->nodes);
    free(r);
}

static void copy_identity(struct reg_node *dst, const struct store_node *src)
{
    snprintf(dst->addr, sizeof(dst->addr), "%s", src->addr);
    snprintf(dst->domain, sizeof(dst->domain), "%s", src->domain);
    dst->capacity = src->capacity;
    dst->used = src->used;
    dst->flags = src->flags;
}

static struct reg_node *get_or_add(struct registry *r, uint64_t id)
{
    struct reg_node *n = u64map_get(&r->nodes, id);

    if (n)
        return n;
    n = xcalloc(1, sizeof(*n));
    n->id = id;
    u64map_init(&n->deletes);
    if (u64map_put(&r->nodes, id, n) < 0) {
        log_error("registry: out of memory");
        abort();
    }
    return n;
}

/* The state a node that is heard from is in, by its stored flags. */
static enum reg_state serving_state(uint32_t flags)
{
    if (flags & STORE_NODE_DECOMMISSIONED)
        return REG_DECOMMISSIONED;
    if (flags & STORE_NODE_DECOMMISSIONING)
        return REG_DECOMMISSIONING;
    return REG_ALIVE;
}

void registry_load(struct registry *r, const struct store_node *sn, uint64_t now_ms)
{
    struct reg_node *n = get_or_add(r, sn->id);

    copy_identity(n, sn);
    n->state = (sn->flags & STORE_NODE_DECOMMISSIONED) ? REG_DECOMMISSIONED : REG_UNKNOWN;
    n->last_seen_ms = now_ms;
}

struct reg_node *registry_get(const struct registry *r, uint64_t id)
{
    return id ? u64map_get(&r->nodes, id) : NULL;
}

struct reg_node *registry_register(struct registry *r, const struct store_node *sn, rpc_conn *conn,
                                   uint64_t now_ms)
{
    struct reg_node *n = get_or_add(r, sn->id);

    copy_identity(n, sn);
    n->full = false;
    n->reregister = false;
    n->no_push = false;
    n->reported = false;
    n->registered_ms = now_ms;
    n->state = serving_state(sn->flags);
    n->last_seen_ms = now_ms;
    if (n->conn != conn) {
        if (conn)
            rpc_conn_ref(conn);
        if (n->conn)
            rpc_conn_unref(n->conn);
        n->conn = conn;
    }
    return n;
}

void registry_detach(struct registry *r, uint64_t id, const rpc_conn *conn)
{
    struct reg_node *n = registry_get(r, id);

    if (n && n->conn == conn) {
        rpc_conn_unref(n->conn);
        n->conn = NULL;
    }
}

struct reg_node *registry_heartbeat(struct registry *r, uint64_t id, const rpc_conn *conn,
                                    const struct reg_heartbeat *hb, uint64_t now_ms)
{
    struct reg_node *n = registry_get(r, id);

    if (!n || !n->conn || n->conn != conn)
        return NULL;
    if (n->state == REG_DEAD || n->state == REG_UNKNOWN || n->reregister) {
        if (!n->reregister)
            log_info("registry: datanode %" PRIu64 " (%s) is back; it must register again", n->id,
                     n->addr);
        n->reregister = true;
        return NULL;
    }
    n->capacity = hb->capacity;
    n->used = hb->used;
    n->load = hb->load;
    n->copies = hb->copies;
    n->full = hb->full;
    n->last_seen_ms = now_ms;
    return n;
}

void registry_tick(struct registry *r, uint64_t now_ms, void (*fn)(struct reg_node *n, void *arg),
                   void *arg)
{
    size_t i = 0;
    void *v;

    while (u64map_next(&r->nodes, &i, NULL, &v)) {
        struct reg_node *n = v;

        if (n->state != REG_ALIVE && n->state != REG_DECOMMISSIONING && n->state != REG_UNKNOWN)
            continue;
        if (now_ms - n->last_seen_ms <= r->dead_timeout_ms)
            continue;
        log_warn("registry: datanode %" PRIu64 " (%s, domain %s) is dead: silent for %" PRIu64
                 " ms",
                 n->id, n->addr, n->domain, now_ms - n->last_seen_ms);
        n->state = REG_DEAD;
        if (fn)
            fn(n, arg);
    }
}

void registry_order_delete(struct registry *r, uint64_t id, uint64_t chunk_id, uint64_t version)
{
    struct reg_node *n = registry_get(r, id);
    struct reg_cmd *c;

    if (!n)
        return;
    c = u64map_get(&n->deletes, chunk_id);
    if (c) {
        c->version = MAX(c->version, version);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->kind = REG_CMD_DELETE;
    c->chunk_id = chunk_id;
    c->version = version;
    if (u64map_put(&n->deletes, chunk_id, c) < 0) {
        log_error("registry: out of memory");
        abort();
    }
}

void registry_order_copy(struct registry *r, uint64_t id, const struct reg_cmd *cmd)
{
    struct reg_node *n = registry_get(r, id);

    if (!n)
        return;
    for (size_t i = 0; i < n->ncopies; i++) {
        if (n->copy_cmds[i].chunk_id == cmd->chunk_id && n->copy_cmds[i].target == cmd->target) {
            n->copy_cmds[i] = *cmd;
            n->copy_cmds[i].kind = REG_CMD_REPLICATE;
            return;
        }
    }
    if (n->ncopies == n->copies_cap) {
        n->copies_cap = n->copies_cap ? n->copies_cap * 2 : 4;
        n->copy_cmds = xrealloc(n->copy_cmds, n->copies_cap * sizeof(*n->copy_cmds));
    }
    n->copy_cmds[n->ncopies] = *cmd;
    n->copy_cmds[n->ncopies++].kind = REG_CMD_REPLICATE;
}

void registry_cancel_copy(struct registry *r, uint64_t id, uint64_t chunk_id, uint64_t target)
{
    struct reg_node *n = registry_get(r, id);

    for (size_t i = 0; n && i < n->ncopies; i++) {
        if (n->copy_cmds[i].chunk_id == chunk_id && n->copy_cmds[i].target == target) {
            memmove(&n->copy_cmds[i], &n->copy_cmds[i + 1],
                    (n->ncopies - i - 1) * sizeof(*n->copy_cmds));
            n->ncopies--;
            return;
        }
    }
}

void registry_drop_commands(struct registry *r, uint64_t id)
{
    struct reg_node *n = registry_get(r, id);

    if (n)
        drop_commands(n);
}

size_t registry_take_commands(struct reg_node *n, struct reg_cmd *out, size_t max)
{
    size_t i = 0, got = 0, copies = MIN(max, n->ncopies), first_delete;
    void *v;

    if (copies) {
        memcpy(out, n->copy_cmds, copies * sizeof(*out));
        memmove(n->copy_cmds, n->copy_cmds + copies, (n->ncopies - copies) * sizeof(*n->copy_cmds));
        n->ncopies -= copies;
    }
    got = first_delete = copies;
    while (got < max && u64map_next(&n->deletes, &i, NULL, &v))
        out[got++] = *(struct reg_cmd *)v;
    for (size_t k = first_delete; k < got; k++)
        free(u64map_del(&n->deletes, out[k].chunk_id));
    return got;
}

struct reg_node *registry_set_flags(struct registry *r, uint64_t id, uint32_t flags)
{
    struct reg_node *n = registry_get(r, id);

    if (!n)
        return NULL;
    n->flags = flags;
    if (n->state == REG_DEAD || n->state == REG_UNKNOWN)
        return n; /* it takes the state when it registers */
    if (n->state == REG_DECOMMISSIONED && !(flags & STORE_NODE_DECOMMISSIONED)) {
        /* Its replicas were forgotten when it drained. */
        n->reregister = true;
    }
    n->state = serving_state(flags);
    n->decommission_left = 0;
    return n;
}

bool registry_node_live(const struct reg_node *n)
{
    return n->state == REG_ALIVE || n->state == REG_DECOMMISSIONING;
}

struct reg_node *registry_next(const struct registry *r, size_t *iter)
{
    void *v;

    return u64map_next(&r->nodes, iter, NULL, &v) ? v : NULL;
}

size_t registry_count(const struct registry *r)
{
    return r->nodes.len;
}
