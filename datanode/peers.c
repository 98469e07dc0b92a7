/*
 * peers: see peers.h.
 */
#include "peers.h"

#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PEERS 256

struct peer {
    char addr[64];
    rpc_conn *conn;
    uint64_t used; /* use counter value at the last peers_get */
};

struct peers {
    uv_loop_t *loop;
    uint32_t timeout_ms;
    struct rpc_opts opts;
    struct peer peer[MAX_PEERS];
    size_t n;
    uint64_t clock;
};

int peers_new(uv_loop_t *loop, uint32_t timeout_ms, struct peers **out)
{
    struct peers *p = xcalloc(1, sizeof(*p));

    p->loop = loop;
    p->timeout_ms = timeout_ms ? timeout_ms : 5000;
    p->opts.call_timeout_ms = p->timeout_ms;
    p->opts.connect_timeout_ms = p->timeout_ms;
    /* A restarted peer should be found again quickly; while a peer refuses
     * connections, what is forwarded to it fails at once (the writer
     * recovers without it) instead of waiting for the next attempt. */
    p->opts.backoff_min_ms = 50;
    p->opts.backoff_max_ms = 200;
    p->opts.fail_fast = true;
    *out = p;
    return 0;
}

void peers_close(struct peers *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        rpc_conn_close(p->peer[i].conn);
    free(p);
}

uint32_t peers_timeout(const struct peers *p)
{
    return p->timeout_ms;
}

int peers_check_addr(const char *addr)
{
    char host[INET_ADDRSTRLEN];
    struct in_addr in;
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    size_t hlen;
    char *end;
    unsigned long port;

    if (!colon)
        return -EINVAL;
    hlen = (size_t)(colon - addr);
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, &in) != 1)
        return -EINVAL;
    if (colon[1] < '0' || colon[1] > '9')
        return -EINVAL;
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno || *end || port == 0 || port > 65535)
        return -EINVAL;
    return 0;
}

/* Frees a slot: the least recently used connection with no call pending. */
static int evict(struct peers *p)
{
    size_t victim = p->n;

    for (size_t i = 0; i < p->n; i++)
        if (rpc_conn_pending(p->peer[i].conn) == 0 &&
            (victim == p->n || p->peer[i].used < p->peer[victim].used))
            victim = i;
    if (victim == p->n)
        return -EBUSY;
    rpc_conn_close(p->peer[victim].conn);
    p->peer[victim] = p->peer[--p->n];
    return 0;
}

int peers_get(struct peers *p, const char *addr, rpc_conn **out)
{
    struct peer *peer;
    int r;

    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->peer[i].addr, addr) == 0) {
            p->peer[i].used = ++p->clock;
            *out = p->peer[i].conn;
            return 0;
        }
    }
    r = peers_check_addr(addr);
    if (r)
        return r;
    if (p->n == MAX_PEERS && (r = evict(p)) != 0)
        return r;
    peer = &p->peer[p->n];
    snprintf(peer->addr, sizeof(peer->addr), "%s", addr);
    r = rpc_connect(p->loop, addr, NULL, &p->opts, &peer->conn);
    if (r)
        return r;
    peer->used = ++p->clock;
    p->n++;
    *out = peer->conn;
    return 0;
}
