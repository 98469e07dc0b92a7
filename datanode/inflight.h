/*
 * inflight: the bound on the bytes that requests in progress hold, and the
 * backpressure that keeps them under it.
 *
 * Requests of clients and peers hold memory while they run: a write its
 * payload until the local write and the forward are done, a read or
 * checksum reply its buffer until the socket has taken it, a copy piece its
 * payload until it is written. The data service charges each request its
 * bytes (payload or reply, plus a fixed cost per request, so that floods of
 * small requests count too) when it arrives and gives them back when that
 * memory is released. Past the limit, every connection being watched stops
 * being read (rpc_conn_pause) until the bytes in progress fall to three
 * quarters of it: senders then wait in TCP instead of in this process's
 * memory. What was read before a pause still runs, so the limit can be
 * passed by up to one read buffer and one payload per connection.
 *
 *   FLOWING --bytes > limit--> PAUSED --bytes <= 3/4 limit--> FLOWING
 *
 * Threads: loop thread.
 */
#ifndef KEEL_DATANODE_INFLIGHT_H
#define KEEL_DATANODE_INFLIGHT_H

#include "rpc.h"

#include <stdbool.h>
#include <stdint.h>

/* What a request costs besides its bytes. */
#define INFLIGHT_REQUEST_COST 1024u

struct inflight;

/* limit: bytes; 0 means no limit (nothing is ever paused). */
int inflight_new(uint64_t limit, struct inflight **out);
/* Frees; every connection must have been unwatched. Logs the peak. */
void inflight_free(struct inflight *f);

/* A connection to pause while over the limit (paused at once if it is).
 * c is borrowed until inflight_unwatch, which must come before it closes. */
void inflight_watch(struct inflight *f, rpc_conn *c);
void inflight_unwatch(struct inflight *f, rpc_conn *c);

/* A request's bytes, from its arrival until its memory is released. */
void inflight_take(struct inflight *f, uint64_t bytes);
void inflight_give(struct inflight *f, uint64_t bytes);

uint64_t inflight_bytes(const struct inflight *f);
/* The most bytes ever in progress at once. */
uint64_t inflight_peak(const struct inflight *f);
bool inflight_paused(const struct inflight *f);

#endif
