/*
 * scrubber: see scrubber.h.
 */
#include "scrubber.h"

#include "checksum.h"
#include "errors.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#define PASS_PAUSE_MS 1000
#define ID_BATCH      64

struct scrubber {
    uv_loop_t *loop;
    struct replicas *reps;
    uint64_t rate;
    uv_timer_t timer;
    bool stopping;
    bool busy; /* a piece is being verified */
    /* Position: ids[pos] is the chunk in progress, at block `block`. */
    uint64_t ids[ID_BATCH];
    size_t nids, pos;
    uint64_t block;
    uint64_t due_ms; /* when the next piece may start */
    /* This pass. */
    uint64_t pass_chunks, pass_bytes, pass_bad;
    uint64_t pass_start_ms;
};

static void next_piece(struct scrubber *sc);

static void on_timer(uv_timer_t *t)
{
    next_piece(t->data);
}

/* Runs next_piece at sc->due_ms (at once if it has passed). */
static void schedule(struct scrubber *sc)
{
    uint64_t now = mono_ms();

    uv_timer_start(&sc->timer, on_timer, sc->due_ms > now ? sc->due_ms - now : 0, 0);
}

static void piece_done(int status, struct replicas_result *res, void *arg)
{
    struct scrubber *sc = arg;
    uint64_t now = mono_ms();

    sc->busy = false;
    if (sc->stopping)
        return;
    sc->pass_bytes += res->data_bytes;
    /* Pace by what was read: rate bytes per second. */
    sc->due_ms = MAX(sc->due_ms, now) + res->data_bytes * 1000 / sc->rate;
    if (status == 0) {
        sc->block += SCRUBBER_PIECE_BLOCKS;
    } else {
        /* Corrupt (now or before), deleted meanwhile, or unreadable: the
         * replicas module has logged and reported what matters. */
        if (status == -EIO)
            sc->pass_bad++;
        sc->block = UINT64_MAX;
    }
    schedule(sc);
}

static void next_piece(struct scrubber *sc)
{
    uint64_t after;
    int r;

    if (sc->stopping || sc->busy)
        return;
    for (;;) {
        if (sc->pos < sc->nids) {
            uint64_t id = sc->ids[sc->pos];

            if (sc->block != UINT64_MAX) {
                r = replicas_scrub(sc->reps, id, sc->block, SCRUBBER_PIECE_BLOCKS, piece_done, sc);
                if (r == 0) {
                    sc->busy = true;
                    return;
                }
                if (r == -ECANCELED)
                    return;
                /* -EINVAL: past the end of the chunk; -ENOENT: gone. */
                if (r == -EINVAL)
                    sc->pass_chunks++;
            }
            sc->pos++;
            sc->block = 0;
            continue;
        }
        after = sc->nids ? sc->ids[sc->nids - 1] : 0;
        sc->nids = replicas_ids_after(sc->reps, after, sc->ids, ID_BATCH);
        sc->pos = 0;
        sc->block = 0;
        if (sc->nids)
            continue;
        if (sc->pass_bad)
            log_warn("scrubber: pass done: %" PRIu64 " replicas, %" PRIu64
                     " bytes verified, %" PRIu64 " bad, in %" PRIu64 " ms",
                     sc->pass_chunks, sc->pass_bytes, sc->pass_bad, mono_ms() - sc->pass_start_ms);
        else if (sc->pass_chunks)
            log_debug("scrubber: pass done: %" PRIu64 " replicas, %" PRIu64
                      " bytes verified in %" PRIu64 " ms",
                      sc->pass_chunks, sc->pass_bytes, mono_ms() - sc->pass_start_ms);
        sc->pass_chunks = sc->pass_bytes = sc->pass_bad = 0;
        sc->due_ms = MAX(sc->due_ms, mono_ms() + PASS_PAUSE_MS);
        sc->pass_start_ms = sc->due_ms;
        schedule(sc);
        return;
    }
}

int scrubber_start(uv_loop_t *loop, struct replicas *reps, uint64_t rate, struct scrubber **out)
{
    struct scrubber *sc;

    if (rate == 0)
        return -EINVAL;
    sc = xcalloc(1, sizeof(*sc));
    sc->loop = loop;
    sc->reps = reps;
    sc->rate = rate;
    uv_timer_init(loop, &sc->timer);
    sc->timer.data = sc;
    sc->due_ms = mono_ms() + PASS_PAUSE_MS;
    sc->pass_start_ms = sc->due_ms;
    schedule(sc);
    *out = sc;
    return 0;
}

void scrubber_stop(struct scrubber *sc)
{
    if (!sc || sc->stopping)
        return;
    sc->stopping = true;
    uv_close((uv_handle_t *)&sc->timer, NULL);
}

void scrubber_free(struct scrubber *sc)
{
    free(sc);
}
