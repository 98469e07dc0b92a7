/*
 * Unit tests for namenode/placement over many topologies: 1-20 nodes in 1-6
 * failure domains with replication 1-4 (distinct domains whenever enough
 * exist, best spread and the misplaced mark otherwise), balance across
 * equal nodes, weighting by free space without flooding an empty node,
 * and nodes that are dead, full, decommissioning, excluded or already hold
 * the chunk never being picked; and the choice of which extra replicas of
 * an over-replicated chunk go (the best spread kept, the fullest first).
 */
#include "placement.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 32
#define CS   (64ull << 20)
#define GB   (1ull << 30)

static struct placement_node nodes[MAXN];
static char domains[MAXN][16];

/* n nodes, node i in domain i % d, each with cap bytes and nothing used. */
static void topology(size_t n, size_t d, uint64_t cap)
{
    memset(nodes, 0, sizeof(nodes));
    for (size_t i = 0; i < n; i++) {
        snprintf(domains[i], sizeof(domains[i]), "d%u", (unsigned)(i % d));
        nodes[i].id = 100 + i;
        nodes[i].domain = domains[i];
        nodes[i].capacity = cap;
        nodes[i].alive = true;
    }
}

static const struct placement_node *node(uint64_t id)
{
    for (size_t i = 0; i < MAXN; i++)
        if (nodes[i].id == id)
            return &nodes[i];
    ck_abort_msg("unknown node %llu", (unsigned long long)id);
    return NULL;
}

static size_t distinct_domains(const uint64_t *ids, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            seen |= strcmp(node(ids[i])->domain, node(ids[j])->domain) == 0;
        k += !seen;
    }
    return k;
}

static size_t choose(size_t n, uint32_t repl, struct placement_rng *rng, uint64_t *out,
                     bool *misplaced)
{
    struct placement_req req = {.replication = repl, .chunk_size = CS};
    size_t got = 0;

    ck_assert_int_eq(placement_choose(nodes, n, &req, rng, out, &got, misplaced), 0);
    return got;
}

START_TEST(every_small_topology_spreads_over_domains)
{
    struct placement_rng rng = {42};

    for (size_t n = 1; n <= 20; n++) {
        for (size_t d = 1; d <= 6; d++) {
            size_t present = d < n ? d : n;

            topology(n, d, 100 * GB);
            for (uint32_t repl = 1; repl <= 4; repl++) {
                for (int trial = 0; trial < 20; trial++) {
                    uint64_t out[8];
                    bool mis;
                    size_t got = choose(n, repl, &rng, out, &mis);
                    size_t want = repl < n ? repl : n;
                    size_t spread = want < present ? want : present;

                    ck_assert_uint_eq(got, want);
                    for (size_t i = 0; i < got; i++)
                        for (size_t j = 0; j < i; j++)
                            ck_assert_uint_ne(out[i], out[j]);
                    /* As many domains as possible; misplaced iff shared. */
                    ck_assert_uint_eq(distinct_domains(out, got), spread);
                    ck_assert_int_eq(mis, got > present);
                }
            }
        }
    }
}
END_TEST

START_TEST(equal_nodes_get_equal_shares)
{
    struct placement_rng rng = {7};
    unsigned count[MAXN] = {0};
    const int chunks = 30000;

    topology(12, 4, 1000 * GB);
    for (int c = 0; c < chunks; c++) {
        uint64_t out[3];
        bool mis;

        ck_assert_uint_eq(choose(12, 3, &rng, out, &mis), 3);
        ck_assert(!mis);
        for (int i = 0; i < 3; i++)
            count[out[i] - 100]++;
    }
    for (int i = 0; i < 12; i++) {
        /* Expected 7500 each. */
        ck_assert_uint_gt(count[i], 7500 * 90 / 100);
        ck_assert_uint_lt(count[i], 7500 * 110 / 100);
    }
}
END_TEST

START_TEST(free_space_weighs_without_flooding)
{
    struct placement_rng rng = {99};
    unsigned count[MAXN] = {0};
    const int chunks = 20000;
    unsigned others = 0;

    /* 20 nodes in 5 domains, 90% used, except node 0 which is empty. */
    topology(20, 5, 1000 * GB);
    for (int i = 1; i < 20; i++)
        nodes[i].used = 900 * GB;
    for (int c = 0; c < chunks; c++) {
        uint64_t out[3];
        bool mis;

        ck_assert_uint_eq(choose(20, 3, &rng, out, &mis), 3);
        for (int i = 0; i < 3; i++)
            count[out[i] - 100]++;
    }
    for (int i = 1; i < 20; i++) {
        ck_assert_uint_gt(count[i], 0); /* everyone still takes some */
        others += count[i];
    }
    /* The empty node takes far more than an average node... */
    ck_assert_uint_gt(count[0], 3 * (others / 19));
    /* ...but not every chunk: a greedy policy would give it all 20000. */
    ck_assert_uint_lt(count[0], chunks * 85 / 100);
}
END_TEST

START_TEST(unusable_nodes_are_never_picked)
{
    struct placement_rng rng = {5};

    topology(10, 5, 100 * GB);
    nodes[0].alive = false;            /* dead */
    nodes[1].full = true;              /* reported ENOSPC */
    nodes[2].decommissioning = true;   /* draining */
    nodes[3].used = 100 * GB - CS + 1; /* less than a chunk free */
    nodes[4].used = 200 * GB;          /* over-full */
    for (int c = 0; c < 2000; c++) {
        uint64_t out[3];
        bool mis;
        size_t got = choose(10, 3, &rng, out, &mis);

        ck_assert_uint_eq(got, 3);
        for (size_t i = 0; i < got; i++)
            ck_assert_uint_ge(out[i], 105);
        /* Nodes 5..9 span all five domains: still distinct. */
        ck_assert_uint_eq(distinct_domains(out, got), 3);
    }
    /* Nothing usable at all. */
    for (int i = 5; i < 10; i++)
        nodes[i].alive = false;
    {
        uint64_t out[3];
        bool mis;

        ck_assert_uint_eq(choose(10, 3, &rng, out, &mis), 0);
    }
}
END_TEST

START_TEST(existing_and_excluded_replicas)
{
    struct placement_rng rng = {11};
    uint64_t existing[] = {100}; /* domain d0 */
    uint64_t exclude[] = {101};  /* domain d1 */
    struct placement_req req = {.replication = 3,
                                .chunk_size = CS,
                                .existing = existing,
                                .nexisting = 1,
                                .exclude = exclude,
                                .nexclude = 1};

    topology(6, 3, 100 * GB); /* d0: 100,103  d1: 101,104  d2: 102,105 */
    for (int c = 0; c < 500; c++) {
        uint64_t out[3];
        size_t got;
        bool mis;

        ck_assert_int_eq(placement_choose(nodes, 6, &req, &rng, out, &got, &mis), 0);
        ck_assert_uint_eq(got, 2); /* one replica exists already */
        ck_assert(!mis);
        for (size_t i = 0; i < got; i++) {
            ck_assert_uint_ne(out[i], 100);
            ck_assert_uint_ne(out[i], 101);
            ck_assert_str_ne(node(out[i])->domain, "d0");
        }
        ck_assert_str_ne(node(out[0])->domain, node(out[1])->domain);
    }
}
END_TEST

START_TEST(too_few_domains_fall_back_to_the_best_spread)
{
    struct placement_rng rng = {3};

    topology(6, 2, 100 * GB);
    for (int c = 0; c < 500; c++) {
        uint64_t out[4];
        bool mis;
        unsigned d0 = 0;
        size_t got = choose(6, 4, &rng, out, &mis);

        ck_assert_uint_eq(got, 4);
        ck_assert(mis);
        for (size_t i = 0; i < got; i++)
            d0 += strcmp(node(out[i])->domain, "d0") == 0;
        ck_assert_uint_eq(d0, 2); /* 2 + 2, never 3 + 1 */
    }
}
END_TEST

START_TEST(deterministic_and_bad_input)
{
    struct placement_rng a = {1234}, b = {1234};
    struct placement_req req = {.replication = 0, .chunk_size = CS};
    uint64_t x[3], y[3];
    size_t got;
    bool mis;

    topology(9, 3, 100 * GB);
    for (int c = 0; c < 50; c++) {
        choose(9, 3, &a, x, &mis);
        choose(9, 3, &b, y, &mis);
        ck_assert_int_eq(memcmp(x, y, sizeof(x)), 0);
    }
    ck_assert_int_eq(placement_choose(nodes, 9, &req, &a, x, &got, &mis), -EINVAL);
}
END_TEST

/* Distinct domains among the holders not in removed. */
static size_t kept_domains(size_t n, const uint64_t *removed, size_t nremoved)
{
    uint64_t kept[MAXN];
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        bool gone = false;

        for (size_t j = 0; j < nremoved; j++)
            gone |= removed[j] == nodes[i].id;
        if (!gone)
            kept[k++] = nodes[i].id;
    }
    return distinct_domains(kept, k);
}

START_TEST(excess_keeps_the_spread_and_trims_the_fullest)
{
    uint64_t out[MAXN];
    size_t got;

    /* 5 holders in 3 domains (d0: 100, 103; d1: 101, 104; d2: 102), keep 3:
     * one from d0 and one from d1 go, whatever their fill. */
    topology(5, 3, 100 * GB);
    nodes[2].used = 99 * GB; /* the fullest, but alone in d2 */
    nodes[0].used = 10 * GB;
    nodes[3].used = 20 * GB; /* fuller than 100 in d0 */
    nodes[1].used = 30 * GB;
    nodes[4].used = 5 * GB;
    got = placement_choose_excess(nodes, 5, 3, out);
    ck_assert_uint_eq(got, 2);
    ck_assert_uint_eq(kept_domains(5, out, got), 3);
    ck_assert(out[0] == 101 || out[1] == 101); /* d1's fuller one */
    ck_assert(out[0] == 103 || out[1] == 103); /* d0's fuller one */

    /* All in distinct domains, keep 2: the fullest goes. */
    topology(3, 3, 100 * GB);
    nodes[1].used = 70 * GB;
    got = placement_choose_excess(nodes, 3, 2, out);
    ck_assert_uint_eq(got, 1);
    ck_assert_uint_eq(out[0], 101);

    /* The most crowded domain loses first: d0 holds three. */
    topology(4, 2, 100 * GB); /* d0: 100, 102; d1: 101, 103 */
    nodes[2].domain = "d0";
    nodes[3].domain = "d0";
    nodes[1].used = 90 * GB;
    got = placement_choose_excess(nodes, 4, 3, out);
    ck_assert_uint_eq(got, 1);
    ck_assert(out[0] != 101);
    ck_assert_uint_eq(kept_domains(4, out, got), 2);

    /* Nothing to remove. */
    ck_assert_uint_eq(placement_choose_excess(nodes, 3, 3, out), 0);
    ck_assert_uint_eq(placement_choose_excess(nodes, 2, 3, out), 0);

    /* Random topologies: the kept spread is the best possible. */
    for (unsigned seed = 1; seed < 200; seed++) {
        size_t n = 2 + seed % 9, d = 1 + seed % 4, keep = 1 + seed % 3, best;
        size_t doms_all;
        uint64_t all[MAXN];

        if (keep >= n)
            continue;
        topology(n, d, 100 * GB);
        for (size_t i = 0; i < n; i++) {
            nodes[i].used = ((seed * 7919 + i * 104729) % 100) * GB;
            all[i] = nodes[i].id;
        }
        doms_all = distinct_domains(all, n);
        best = doms_all < keep ? doms_all : keep;
        got = placement_choose_excess(nodes, n, keep, out);
        ck_assert_uint_eq(got, n - keep);
        ck_assert_uint_eq(kept_domains(n, out, got), best);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("placement");
    TCase *tc = tcase_create("placement");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, every_small_topology_spreads_over_domains);
    tcase_add_test(tc, equal_nodes_get_equal_shares);
    tcase_add_test(tc, free_space_weighs_without_flooding);
    tcase_add_test(tc, unusable_nodes_are_never_picked);
    tcase_add_test(tc, existing_and_excluded_replicas);
    tcase_add_test(tc, too_few_domains_fall_back_to_the_best_spread);
    tcase_add_test(tc, deterministic_and_bad_input);
    tcase_add_test(tc, excess_keeps_the_spread_and_trims_the_fullest);
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
