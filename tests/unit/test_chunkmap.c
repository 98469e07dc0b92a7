/*
 * Unit tests for namenode/chunkmap: block report classification (current,
 * stale, ahead, corrupt, orphan), full reports dropping what they did not
 * mention but keeping replicas the namenode recorded meanwhile, the count
 * of chunks with a reported replica (safe mode), version changes
 * re-deriving every replica, health counts (good, readable, leaving,
 * misplacement judged against the live domains), the change hook,
 * forgetting a node's replicas, and the health counts Status remembers
 * (counted again after any change, kept for a bounded time while a large
 * map keeps changing).
 */
#include "chunkmap.h"

#include <check.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static struct chunkmap *cm;

static void setup(void)
{
    cm = chunkmap_new();
}

static void teardown(void)
{
    chunkmap_free(cm);
}

/* Nodes 1..6; node n is in domain "d<n % 3>"; nodes >= 5 are dead, node
 * 6 when `leaving6` is set is leaving instead. */
static bool leaving6;

static enum cm_node_state view(void *ctx, uint64_t id, const char **domain)
{
    static const char *names[] = {"d0", "d1", "d2"};

    *domain = id ? names[id % 3] : NULL;
    if (id == 6 && leaving6)
        return CM_NODE_LEAVING;
    return id >= 1 && id <= 4 ? CM_NODE_LIVE : CM_NODE_GONE;
}

static const struct cm_view v = {view, NULL, 3};

/* The hook's record of announced chunks. */
static uint64_t announced[64];
static size_t nannounced;

static void hook(void *arg, uint64_t chunk)
{
    if (nannounced < 64)
        announced[nannounced++] = chunk;
}

START_TEST(report_classification)
{
    struct cm_chunk *c = chunkmap_add(cm, 10, 3, 3, 100, 0);

    ck_assert_int_eq(chunkmap_report(cm, 1, 10, 3, false), CM_CURRENT);
    ck_assert_int_eq(chunkmap_report(cm, 2, 10, 2, false), CM_STALE);
    ck_assert_int_eq(chunkmap_report(cm, 3, 10, 4, false), CM_AHEAD);
    ck_assert_int_eq(chunkmap_report(cm, 4, 10, 3, true), CM_CORRUPT);
    ck_assert_int_eq(chunkmap_report(cm, 1, 99, 1, false), CM_ORPHAN);
    ck_assert_uint_eq(c->nrep, 4);
    ck_assert_uint_eq(chunkmap_reported(cm), 1);
    /* Adopting version 4 makes node 3 the only current one. */
    chunkmap_set_version(cm, c, 4);
    ck_assert(cm_replica_current(c, &c->reps[2]));
    ck_assert(!cm_replica_current(c, &c->reps[0]));
    ck_assert_uint_eq(chunkmap_reported(cm), 1);
    chunkmap_report_deleted(cm, 3, 10);
    ck_assert_uint_eq(chunkmap_reported(cm), 0);
    ck_assert_uint_eq(chunkmap_node_replicas(cm, 3), 0);
    ck_assert_uint_eq(chunkmap_node_replicas(cm, 1), 1);
}
END_TEST

START_TEST(full_report_replaces_a_node_set)
{
    struct cm_chunk *a = chunkmap_add(cm, 1, 1, 3, 100, 0);
    struct cm_chunk *b = chunkmap_add(cm, 2, 1, 3, 100, 1);
    struct cm_chunk *c = chunkmap_add(cm, 3, 1, 3, 100, 2);

    chunkmap_report(cm, 7, 1, 1, false);
    chunkmap_report(cm, 7, 2, 1, false);
    ck_assert_uint_eq(chunkmap_node_replicas(cm, 7), 2);
    /* A new full report mentions only chunk 2; meanwhile the namenode
     * itself put chunk 3 there. Chunk 1 goes, 2 and 3 stay. */
    chunkmap_full_begin(cm, 7);
    chunkmap_set_replica(cm, c, 7, 1);
    chunkmap_report(cm, 7, 2, 1, false);
    ck_assert_uint_eq(chunkmap_full_end(cm, 7), 1);
    ck_assert_uint_eq(a->nrep, 0);
    ck_assert_uint_eq(b->nrep, 1);
    ck_assert_uint_eq(c->nrep, 1);
    ck_assert_uint_eq(chunkmap_reported(cm), 2);
    chunkmap_remove(cm, 2);
    ck_assert_uint_eq(chunkmap_reported(cm), 1);
    ck_assert_uint_eq(chunkmap_node_replicas(cm, 7), 1);
    ck_assert_uint_eq(chunkmap_count(cm), 2);
}
END_TEST

START_TEST(health_counts)
{
    struct cm_chunk *ok = chunkmap_add(cm, 1, 1, 3, 100, 0);
    struct cm_chunk *under = chunkmap_add(cm, 2, 1, 3, 100, 1);
    struct cm_chunk *mis = chunkmap_add(cm, 3, 1, 2, 100, 2);
    struct cm_health h;

    chunkmap_add(cm, 4, 1, 3, 100, 3); /* no replica at all: missing */
    chunkmap_set_replica(cm, ok, 1, 1);
    chunkmap_set_replica(cm, ok, 2, 1);
    chunkmap_set_replica(cm, ok, 3, 1);
    chunkmap_set_replica(cm, ok, 4, 0 + 1);
    chunkmap_mark_corrupt(cm, ok, 4);
    chunkmap_set_replica(cm, under, 1, 1);
    chunkmap_set_replica(cm, under, 5, 1); /* on a dead node */
    chunkmap_report(cm, 2, 2, 0 + 1, false);
    chunkmap_set_version(cm, under, 2);    /* all three stale now */
    chunkmap_set_replica(cm, under, 2, 2); /* node 2 took version 2 */
    chunkmap_set_replica(cm, mis, 1, 1);
    chunkmap_set_replica(cm, mis, 4, 1); /* 1 and 4 share domain d1 */
    chunkmap_health(cm, &v, &h);
    ck_assert_uint_eq(h.chunks, 4);
    ck_assert_uint_eq(h.healthy, 1);
    ck_assert_uint_eq(h.under_replicated, 1);
    ck_assert_uint_eq(h.missing, 1);
    ck_assert_uint_eq(h.misplaced, 1);
    ck_assert_uint_eq(h.corrupt, 1);
    ck_assert_uint_eq(h.stale, 1); /* under's on node 1; node 5's is on a dead node */
}
END_TEST

START_TEST(good_readable_and_leaving)
{
    struct cm_chunk *c = chunkmap_add(cm, 1, 4, 3, 100, 0);
    struct cm_view two = v;
    struct cm_chunk_health h;

    chunkmap_set_replica(cm, c, 1, 4);
    chunkmap_set_replica(cm, c, 4, 4); /* same domain as 1 */
    chunkmap_set_replica(cm, c, 6, 4); /* leaving when leaving6 */
    chunkmap_set_replica(cm, c, 2, 3); /* stale */
    leaving6 = true;
    chunkmap_chunk_health(c, &v, &h);
    ck_assert_uint_eq(h.good, 2);
    ck_assert_uint_eq(h.readable, 3);
    ck_assert_uint_eq(h.leaving, 1);
    ck_assert_uint_eq(h.stale, 1);
    ck_assert_uint_eq(h.domains, 1);
    ck_assert(h.misplaced); /* two good replicas in one domain, three alive */
    /* With a single live domain, sharing it is the best there is. */
    two.live_domains = 1;
    chunkmap_chunk_health(c, &two, &h);
    ck_assert(!h.misplaced);
    /* A leaving node's replica is readable but not good: under-replicated. */
    chunkmap_drop_replica(cm, c, 4);
    chunkmap_chunk_health(c, &v, &h);
    ck_assert_uint_eq(h.good, 1);
    ck_assert_uint_eq(h.readable, 2);
    ck_assert(!h.misplaced);
    leaving6 = false; /* node 6 gone: only node 1 left */
    chunkmap_chunk_health(c, &v, &h);
    ck_assert_uint_eq(h.readable, 1);
}
END_TEST

START_TEST(changes_are_announced)
{
    struct cm_chunk *c = chunkmap_add(cm, 7, 1, 3, 100, 0);

    chunkmap_set_hook(cm, hook, NULL);
    nannounced = 0;
    chunkmap_report(cm, 1, 7, 1, false);
    ck_assert_uint_eq(nannounced, 1);
    /* The same replica seen again unchanged (a full report): no news. */
    chunkmap_report(cm, 1, 7, 1, false);
    ck_assert_uint_eq(nannounced, 1);
    chunkmap_report(cm, 1, 7, 1, true); /* now corrupt */
    chunkmap_set_version(cm, c, 2);
    chunkmap_set_replica(cm, c, 2, 2);
    chunkmap_drop_replica(cm, c, 3); /* not there: no news */
    chunkmap_drop_replica(cm, c, 2);
    ck_assert_uint_eq(nannounced, 5);
    for (size_t i = 0; i < nannounced; i++)
        ck_assert_uint_eq(announced[i], 7);
    chunkmap_remove(cm, 7);
    ck_assert_uint_eq(nannounced, 6);
    chunkmap_set_hook(cm, NULL, NULL);
}
END_TEST

START_TEST(a_node_is_forgotten_whole)
{
    struct cm_chunk *c;
    size_t i = 0, seen = 0;

    for (uint64_t id = 1; id <= 20; id++) {
        c = chunkmap_add(cm, id, 1, 3, 100, id);
        chunkmap_set_replica(cm, c, 1, 1);
        chunkmap_set_replica(cm, c, 2, 1);
    }
    while ((c = chunkmap_node_next(cm, 2, &i)))
        seen++;
    ck_assert_uint_eq(seen, 20);
    ck_assert_uint_eq(chunkmap_drop_node(cm, 2), 20);
    ck_assert_uint_eq(chunkmap_node_replicas(cm, 2), 0);
    ck_assert_uint_eq(chunkmap_node_replicas(cm, 1), 20);
    ck_assert_uint_eq(chunkmap_get(cm, 5)->nrep, 1);
    ck_assert_uint_eq(chunkmap_reported(cm), 20);
    ck_assert_uint_eq(chunkmap_drop_node(cm, 99), 0);
}
END_TEST

/* Compares two health counts field by field. */
static void same_health(const struct cm_health *a, const struct cm_health *b)
{
    ck_assert_uint_eq(a->chunks, b->chunks);
    ck_assert_uint_eq(a->healthy, b->healthy);
    ck_assert_uint_eq(a->under_replicated, b->under_replicated);
    ck_assert_uint_eq(a->missing, b->missing);
    ck_assert_uint_eq(a->misplaced, b->misplaced);
    ck_assert_uint_eq(a->stale, b->stale);
    ck_assert_uint_eq(a->corrupt, b->corrupt);
}

static struct cm_health_memo memo;
static uint64_t clock_ns = 1000000000;

/* Asks for recent counts long after the last walk (past its window):
 * they must equal a fresh walk, and come from one exactly when walked. */
static void check_recent(uint64_t sig, bool walked)
{
    struct cm_health want, got;

    clock_ns += 10ull * 1000000000;
    ck_assert_msg(chunkmap_health_recent(cm, &v, sig, clock_ns, &memo, &got) == walked,
                  "the call at %" PRIu64 " s should %s", clock_ns / 1000000000,
                  walked ? "walk" : "not walk");
    chunkmap_health(cm, &v, &want);
    same_health(&got, &want);
}

/* Status remembers the counts: every kind of change (and a change of the
 * view) makes it count again, and it does not walk while nothing changed. */
START_TEST(recent_health_follows_every_change)
{
    struct cm_health got, want;
    struct cm_chunk *a = chunkmap_add(cm, 1, 1, 3, 100, 0), *b = chunkmap_add(cm, 2, 1, 2, 100, 1);

    memset(&memo, 0, sizeof(memo));
    check_recent(7, true);
    check_recent(7, false);
    check_recent(8, true); /* another view */
    chunkmap_set_replica(cm, a, 1, 1);
    check_recent(8, true);
    check_recent(8, false);
    chunkmap_report(cm, 2, 1, 1, false);
    check_recent(8, true);
    chunkmap_report(cm, 2, 1, 1, false); /* seen again, unchanged */
    check_recent(8, false);
    chunkmap_report(cm, 3, 1, 1, false);
    check_recent(8, true); /* healthy now */
    chunkmap_mark_corrupt(cm, a, 3);
    check_recent(8, true);
    chunkmap_set_version(cm, a, 2);
    check_recent(8, true);
    chunkmap_set_replica(cm, b, 1, 1);
    chunkmap_set_replica(cm, b, 2, 1);
    check_recent(8, true);
    chunkmap_drop_replica(cm, b, 2);
    check_recent(8, true);
    chunkmap_report_deleted(cm, 1, 2);
    check_recent(8, true);
    chunkmap_set_replica(cm, b, 4, 1);
    check_recent(8, true);
    chunkmap_full_begin(cm, 4);
    check_recent(8, false);
    chunkmap_full_end(cm, 4); /* b's replica on 4 was not reported */
    check_recent(8, true);
    chunkmap_set_replica(cm, b, 2, 1);
    chunkmap_drop_node(cm, 2);
    check_recent(8, true);
    chunkmap_add(cm, 3, 1, 3, 100, 2);
    check_recent(8, true);
    check_recent(8, false);
    chunkmap_remove(cm, 1);
    check_recent(8, true);
    /* A walk this cheap opens no window: a change at the same instant
     * is counted. */
    ck_assert_uint_lt(memo.cost_ns, CM_HEALTH_MIN_COST);
    chunkmap_remove(cm, 3);
    ck_assert(chunkmap_health_recent(cm, &v, 8, clock_ns, &memo, &got));
    chunkmap_health(cm, &v, &want);
    same_health(&got, &want);
}
END_TEST

/* While chunks keep changing, a large map (one whose walk costs more than
 * CM_HEALTH_MIN_COST) is walked at most once per CM_HEALTH_DUTY times the
 * walk's cost; a small one every time it changed. */
START_TEST(recent_health_bounds_its_share)
{
    struct cm_health got;
    uint64_t t, window, n = 0, lost;

    memset(&memo, 0, sizeof(memo));
    t = 5000000000ull;
    /* Grow the map until a walk costs enough (bounded: 2^21 chunks). */
    do {
        for (uint64_t id = n + 1; id <= 2 * n + 4096; id++)
            chunkmap_set_replica(cm, chunkmap_add(cm, id, 1, 1, 100, id), 1 + id % 4, 1);
        n = 2 * n + 4096;
        ck_assert(chunkmap_health_recent(cm, &v, 1, t, &memo, &got));
        ck_assert_uint_eq(got.healthy, n);
        if (n < 4096 * 4)
            ck_assert(chunkmap_health_recent(cm, &v, 1, t, &memo, &got) == false); /* unchanged */
    } while (memo.cost_ns < CM_HEALTH_MIN_COST && n < (1u << 21));
    ck_assert_uint_ge(memo.cost_ns, CM_HEALTH_MIN_COST);
    window = memo.cost_ns * CM_HEALTH_DUTY;
    lost = chunkmap_drop_node(cm, 1); /* a quarter of the chunks lose their only replica */
    ck_assert_uint_gt(lost, 0);
    ck_assert(!chunkmap_health_recent(cm, &v, 1, t + window - 1, &memo, &got));
    ck_assert_uint_eq(got.healthy, n); /* not yet counted again */
    ck_assert(chunkmap_health_recent(cm, &v, 1, t + window, &memo, &got));
    ck_assert_uint_eq(got.healthy, n - lost);
    ck_assert_uint_eq(got.missing, lost);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chunkmap");
    TCase *tc = tcase_create("chunkmap");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, report_classification);
    tcase_add_test(tc, full_report_replaces_a_node_set);
    tcase_add_test(tc, health_counts);
    tcase_add_test(tc, good_readable_and_leaving);
    tcase_add_test(tc, changes_are_announced);
    tcase_add_test(tc, a_node_is_forgotten_whole);
    tcase_add_test(tc, recent_health_follows_every_change);
    tcase_add_test(tc, recent_health_bounds_its_share);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
