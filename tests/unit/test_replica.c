/*
 * Unit tests for client/replica: reads go to the fast and idle, skip what
 * was tried or recently failed, and spread over equal replicas.
 */
#include "replica.h"

#include <check.h>

START_TEST(prefers_fast_and_idle)
{
    struct replica_view v[3] = {{0, 5000, false}, {0, 500, false}, {0, 900, false}};

    ck_assert_int_eq(replica_pick(v, 3, 0), 1);
    v[1].inflight = 20; /* busy: 21 * 500 > 900 */
    ck_assert_int_eq(replica_pick(v, 3, 0), 2);
}
END_TEST

START_TEST(skips_tried_and_failing)
{
    struct replica_view v[3] = {{0, 100, true}, {0, 100, false}, {0, 100, false}};

    ck_assert_int_eq(replica_pick(v, 3, 0), 1);
    ck_assert_int_eq(replica_pick(v, 3, 1u << 1), 2);
    /* A failing replica is still used when nothing else is left. */
    ck_assert_int_eq(replica_pick(v, 3, (1u << 1) | (1u << 2)), 0);
    ck_assert_int_eq(replica_pick(v, 3, 7), -1);
    ck_assert_int_eq(replica_pick(v, 0, 0), -1);
}
END_TEST

START_TEST(spreads_equal_load)
{
    struct replica_view v[3] = {{0, 1000, false}, {0, 1000, false}, {0, 1000, false}};
    int count[3] = {0, 0, 0};

    /* Each pick adds one request in flight to the chosen replica. */
    for (int i = 0; i < 30; i++) {
        int k = replica_pick(v, 3, 0);
        count[k]++;
        v[k].inflight++;
    }
    ck_assert_int_eq(count[0], 10);
    ck_assert_int_eq(count[1], 10);
    ck_assert_int_eq(count[2], 10);
}
END_TEST

/* A chunk is read from the same one of several local replicas every time,
 * and the chunks are spread over them. */
START_TEST(local_rank_is_stable_and_spreads)
{
    const uint64_t nodes[3] = {7, 8, 1234567};
    int wins[3] = {0, 0, 0};

    for (uint64_t chunk = 1; chunk <= 3000; chunk++) {
        uint64_t r[3];
        int best = 0;

        for (int i = 0; i < 3; i++) {
            r[i] = replica_local_rank(chunk, nodes[i]);
            ck_assert_uint_eq(r[i], replica_local_rank(chunk, nodes[i]));
        }
        ck_assert(r[0] != r[1] && r[1] != r[2] && r[0] != r[2]);
        for (int i = 1; i < 3; i++)
            if (r[i] > r[best])
                best = i;
        wins[best]++;
    }
    for (int i = 0; i < 3; i++)
        ck_assert_msg(wins[i] > 850 && wins[i] < 1150, "node %d first for %d of 3000 chunks", i,
                      wins[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("replica");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, prefers_fast_and_idle);
    tcase_add_test(tc, skips_tried_and_failing);
    tcase_add_test(tc, spreads_equal_load);
    tcase_add_test(tc, local_rank_is_stable_and_spreads);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
