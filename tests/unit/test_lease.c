/*
 * Unit tests for namenode/lease with a scripted owner: grants, renewals,
 * handover after a recall (and the fencing of exactly the chunks the old
 * holder was given), refusal with -EBUSY, an unreachable holder losing the
 * lease when it expires, expiry without a successor, release, the fencing
 * of every chunk right after a restart, fencing failures, queues of
 * waiters and cancellation; and when a file may still be written with
 * locations handed out (lease_busy).
 */
#include "lease.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_MS 10000
#define INO      42
#define A        0xaaull
#define B        0xbbull
#define C        0xccull

static struct lease_table *t;

/* What the table asked of its owner. */
static int recalls;
static uint64_t recall_holder;
static int recall_result; /* returned by ops.recall */
static int fences;
static uint64_t fenced[16];
static size_t nfenced;
static bool fenced_all;

static int op_recall(void *ctx, uint64_t holder, uint64_t ino)
{
    ck_assert_uint_ge(ino, INO);
    recalls++;
    recall_holder = holder;
    return recall_result;
}

static void op_fence(void *ctx, uint64_t ino, const uint64_t *chunks, size_t n, bool all)
{
    ck_assert_uint_le(n, 16);
    fences++;
    memcpy(fenced, chunks, n * sizeof(*chunks));
    nfenced = n;
    fenced_all = all;
}

static const struct lease_ops ops = {op_recall, op_fence, NULL};

struct req {
    struct lease_waiter w;
    int calls;
    int status;
};

static void req_cb(struct lease_waiter *w, int status)
{
    struct req *r = (struct req *)w;

    r->calls++;
    r->status = status;
}

static int acquire(uint64_t client, uint64_t now, struct req *r)
{
    memset(r, 0, sizeof(*r));
    r->w.cb = req_cb;
    return lease_acquire(t, INO, client, now, &r->w);
}

static bool fenced_has(uint64_t id)
{
    for (size_t i = 0; i < nfenced; i++)
        if (fenced[i] == id)
            return true;
    return false;
}

static void setup(void)
{
    recalls = fences = 0;
    recall_result = 0;
    nfenced = 0;
    fenced_all = false;
    t = lease_table_new(&ops, LEASE_MS, 1000, false);
}

static void teardown(void)
{
    lease_cancel_all(t, -ECANCELED);
    lease_table_free(t);
}

START_TEST(free_lease_is_granted_at_once)
{
    struct req r;

    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    ck_assert_uint_eq(lease_holder(t, INO), A);
    ck_assert_int_eq(acquire(A, 2000, &r), 0); /* again: same holder */
    ck_assert_uint_eq(lease_count(t), 1);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_int_eq(lease_renew(t, A, INO, 3000), 0);
    ck_assert_int_eq(lease_renew(t, B, INO, 3000), -ENOENT);
    ck_assert_int_eq(lease_renew(t, A, INO + 1, 3000), -ENOENT);
    ck_assert_int_eq(acquire(0, 3000, &r), -EINVAL);
}
END_TEST

START_TEST(handover_fences_the_chunks_given)
{
    uint64_t given[] = {10, 11};
    uint64_t other[] = {99};
    struct req r;

    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    lease_given(t, INO, A, given, 2);
    lease_given(t, INO, B, other, 1); /* not the holder: ignored */
    ck_assert_int_eq(acquire(B, 2000, &r), -EINPROGRESS);
    ck_assert_int_eq(recalls, 1);
    ck_assert_uint_eq(recall_holder, A);
    ck_assert_int_eq(r.calls, 0);

    lease_recall_done(t, INO, 0, true, 2100);
    ck_assert_int_eq(fences, 1);
    ck_assert_uint_eq(nfenced, 2);
    ck_assert(fenced_has(10) && fenced_has(11) && !fenced_has(99));
    ck_assert(!fenced_all);
    ck_assert_int_eq(r.calls, 0); /* not before the fence completed */
    ck_assert_uint_eq(lease_holder(t, INO), 0);

    lease_fence_done(t, INO, 0, 2200);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(lease_holder(t, INO), B);
    ck_assert_int_eq(lease_renew(t, A, INO, 2300), -ENOENT); /* A learns it lost it */
}
END_TEST

START_TEST(a_busy_holder_refuses)
{
    struct req r;

    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    ck_assert_int_eq(acquire(B, 2000, &r), -EINPROGRESS);
    lease_recall_done(t, INO, 0, false, 2100);
    ck_assert_int_eq(r.calls, 0); /* asked again for a while first */
    lease_tick(t, 2200);
    ck_assert_int_eq(recalls, 1); /* not before 250 ms have passed */
    lease_tick(t, 2400);
    ck_assert_int_eq(recalls, 2);
    lease_recall_done(t, INO, 0, false, 2450);
    for (uint64_t now = 2600; now < 4100; now += 200) {
        lease_tick(t, now);
        lease_recall_done(t, INO, 0, false, now + 10);
    }
    ck_assert_int_eq(r.calls, 0);
    lease_tick(t, 4100); /* 2 s after the first refusal */
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, -EBUSY);
    ck_assert_uint_eq(lease_holder(t, INO), A);
    ck_assert_int_eq(fences, 0);
}
END_TEST

START_TEST(a_holder_that_stops_writing_hands_over_when_asked_again)
{
    struct req r;

    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    ck_assert_int_eq(acquire(B, 2000, &r), -EINPROGRESS);
    lease_recall_done(t, INO, 0, false, 2100); /* A wrote a moment ago */
    lease_tick(t, 2400);
    ck_assert_int_eq(recalls, 2);
    lease_recall_done(t, INO, 0, true, 2410); /* now idle */
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(lease_holder(t, INO), B);
}
END_TEST

START_TEST(an_unreachable_holder_loses_the_lease_when_it_expires)
{
    uint64_t given[] = {7};
    struct req r;

    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    lease_given(t, INO, A, given, 1);
    ck_assert_int_eq(acquire(B, 2000, &r), -EINPROGRESS);
    lease_recall_done(t, INO, -ETIMEDOUT, false, 4000);
    lease_tick(t, 5000);
    ck_assert_int_eq(r.calls, 0); /* A's lease runs until 11000 */
    ck_assert_uint_eq(lease_holder(t, INO), A);
    lease_tick(t, 11000);
    ck_assert_int_eq(fences, 1);
    ck_assert_uint_eq(fenced[0], 7);
    lease_fence_done(t, INO, 0, 11100);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(lease_holder(t, INO), B);
    ck_assert_int_eq(recalls, 1); /* never asked twice */
}
END_TEST

START_TEST(no_connection_waits_then_hands_over)
{
    struct req r;

    recall_result = -ENOTCONN;
    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    ck_assert_int_eq(acquire(B, 3000, &r), -EINPROGRESS);
    ck_assert_int_eq(recalls, 1);
    lease_tick(t, 10999);
    ck_assert_int_eq(r.calls, 0);
    lease_tick(t, 11000);
    /* A was given nothing: no fence needed. */
    ck_assert_int_eq(fences, 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, 0);
}
END_TEST

START_TEST(a_renewing_but_silent_holder_times_the_waiter_out)
{
    struct req r;

    recall_result = -ENOTCONN;
    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    ck_assert_int_eq(acquire(B, 2000, &r), -EINPROGRESS);
    for (uint64_t now = 3000; now <= 12000; now += 1000) {
        ck_assert_int_eq(lease_renew(t, A, INO, now), 0);
        lease_tick(t, now);
    }
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, -EBUSY);
    ck_assert_uint_eq(lease_holder(t, INO), A);
}
END_TEST

START_TEST(expiry_fences_at_once)
{
    uint64_t given[] = {5, 6, 7};
    struct req r;

    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    lease_given(t, INO, A, given, 3);
    lease_tick(t, 10999);
    ck_assert_uint_eq(lease_holder(t, INO), A);
    ck_assert_int_eq(fences, 0);
    /* Expired: fenced right away, before anyone asks for the file. */
    lease_tick(t, 11000);
    ck_assert_uint_eq(lease_holder(t, INO), 0);
    ck_assert_uint_eq(lease_count(t), 0);
    ck_assert_int_eq(fences, 1);
    ck_assert_uint_eq(nfenced, 3);
    ck_assert_int_eq(lease_renew(t, A, INO, 11001), -ENOENT);

    /* A newcomer during the fence waits for it. */
    ck_assert_int_eq(acquire(C, 11002, &r), -EINPROGRESS);
    ck_assert_int_eq(fences, 1);
    ck_assert_int_eq(recalls, 0);
    lease_fence_done(t, INO, 0, 11003);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(lease_holder(t, INO), C);
}
END_TEST

START_TEST(release_fences_at_the_next_handover_or_later)
{
    uint64_t given[] = {1};
    struct req r;

    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    lease_given(t, INO, A, given, 1);
    ck_assert_int_eq(lease_release(t, B, INO, 1100), -ENOENT);
    ck_assert_int_eq(lease_release(t, A, INO, 1100), 0);
    ck_assert_uint_eq(lease_holder(t, INO), 0);
    ck_assert_int_eq(fences, 0);
    /* The same client comes back: its versions stay good, no fence. */
    ck_assert_int_eq(acquire(A, 1200, &r), 0);
    ck_assert_int_eq(fences, 0);
    /* ...and its chunks are still remembered for the next handover. */
    ck_assert_int_eq(lease_release(t, A, INO, 1300), 0);
    ck_assert_int_eq(acquire(B, 1400, &r), -EINPROGRESS);
    ck_assert_int_eq(fences, 1);
    ck_assert_uint_eq(fenced[0], 1);
    lease_fence_done(t, INO, 0, 1500);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(lease_holder(t, INO), B);

    /* Released and left alone: fenced after ten lease periods anyway. */
    lease_given(t, INO, B, given, 1);
    ck_assert_int_eq(lease_release(t, B, INO, 2000), 0);
    lease_tick(t, 2000 + 10 * LEASE_MS - 1);
    ck_assert_int_eq(fences, 1);
    lease_tick(t, 2000 + 10 * LEASE_MS);
    ck_assert_int_eq(fences, 2);
    lease_fence_done(t, INO, 0, 2000 + 10 * LEASE_MS + 1);
    ck_assert_int_eq(acquire(C, 2000 + 10 * LEASE_MS + 2, &r), 0);
}
END_TEST

START_TEST(after_a_restart_everything_is_fenced_once)
{
    struct req r;

    lease_table_free(t);
    t = lease_table_new(&ops, LEASE_MS, 1000, true);

    /* A new writer right after the restart: every chunk is fenced. */
    ck_assert_int_eq(acquire(B, 2000, &r), -EINPROGRESS);
    ck_assert_int_eq(fences, 1);
    ck_assert(fenced_all);
    lease_fence_done(t, INO, 0, 2100);
    ck_assert_int_eq(r.status, 0);

    /* A holder of the previous run renewing another file gets it back,
     * and its unknown chunks are all fenced at its next handover. */
    ck_assert_int_eq(lease_renew(t, A, INO + 1, 3000), 0);
    ck_assert_uint_eq(lease_holder(t, INO + 1), A);
    /* But not a file someone else already took. */
    ck_assert_int_eq(lease_renew(t, A, INO, 3000), -ENOENT);
    {
        struct req r2 = {.w.cb = req_cb};

        ck_assert_int_eq(lease_acquire(t, INO + 1, C, 4000, &r2.w), -EINPROGRESS);
        lease_recall_done(t, INO + 1, 0, true, 4100);
        ck_assert_int_eq(fences, 2);
        ck_assert(fenced_all);
        lease_fence_done(t, INO + 1, 0, 4200);
        ck_assert_int_eq(r2.status, 0);
    }
    /* After one lease period, new files need no fence. */
    ck_assert_int_eq(lease_renew(t, A, INO + 2, 12000), -ENOENT);
    ck_assert_int_eq(lease_acquire(t, INO + 3, C, 12000, &r.w), 0);
    ck_assert_int_eq(fences, 2);
}
END_TEST

START_TEST(a_failed_fence_fails_the_waiter_and_is_retried)
{
    uint64_t given[] = {3};
    struct req r;

    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    lease_given(t, INO, A, given, 1);
    ck_assert_int_eq(lease_release(t, A, INO, 1100), 0);
    ck_assert_int_eq(acquire(B, 1200, &r), -EINPROGRESS);
    ck_assert_int_eq(fences, 1);
    lease_fence_done(t, INO, -EIO, 1300);
    ck_assert_int_eq(r.status, -EIO);
    ck_assert_uint_eq(lease_holder(t, INO), 0);
    /* A new waiter retries at once. */
    ck_assert_int_eq(acquire(B, 1400, &r), -EINPROGRESS);
    ck_assert_int_eq(fences, 2);
    ck_assert_uint_eq(fenced[0], 3);
    lease_fence_done(t, INO, 0, 1500);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(lease_holder(t, INO), B);

    /* Without waiters (B expired) the retry comes after a pause. */
    lease_given(t, INO, B, given, 1);
    lease_tick(t, 1500 + LEASE_MS);
    ck_assert_int_eq(fences, 3);
    lease_fence_done(t, INO, -EIO, 1500 + LEASE_MS);
    lease_tick(t, 1500 + LEASE_MS + 1000);
    ck_assert_int_eq(fences, 3);
    lease_tick(t, 1500 + LEASE_MS + 2000);
    ck_assert_int_eq(fences, 4);
    lease_fence_done(t, INO, 0, 1500 + LEASE_MS + 2001);
    ck_assert_int_eq(acquire(C, 1500 + LEASE_MS + 2002, &r), 0);
}
END_TEST

START_TEST(waiters_queue_in_order_and_cancel)
{
    struct req rb, rc;

    ck_assert_int_eq(acquire(A, 1000, &rb), 0);
    ck_assert_int_eq(acquire(B, 2000, &rb), -EINPROGRESS);
    memset(&rc, 0, sizeof(rc));
    rc.w.cb = req_cb;
    ck_assert_int_eq(lease_acquire(t, INO, C, 2001, &rc.w), -EINPROGRESS);
    ck_assert_int_eq(recalls, 1); /* one recall at a time */
    lease_recall_done(t, INO, 0, true, 2100);
    ck_assert_int_eq(rb.status, 0);
    ck_assert_uint_eq(lease_holder(t, INO), B);
    ck_assert_int_eq(recalls, 2); /* now C asks B */
    ck_assert_uint_eq(recall_holder, B);
    ck_assert_int_eq(rc.calls, 0);
    lease_cancel_all(t, -ECANCELED);
    ck_assert_int_eq(rc.calls, 1);
    ck_assert_int_eq(rc.status, -ECANCELED);
    /* A late answer to the cancelled recall changes nothing. */
    lease_recall_done(t, INO, 0, true, 2200);
    ck_assert_uint_eq(lease_holder(t, INO), 0);
}
END_TEST

START_TEST(busy_while_someone_may_write)
{
    uint64_t given[] = {5};
    struct req r;

    ck_assert(!lease_busy(t, INO, 1000));
    ck_assert_int_eq(acquire(A, 1000, &r), 0);
    lease_given(t, INO, A, given, 1);
    ck_assert(lease_busy(t, INO, 1001));
    /* A voluntary release gives the locations up: not busy, although the
     * fence is still owed. */
    ck_assert_int_eq(lease_release(t, A, INO, 2000), 0);
    ck_assert(!lease_busy(t, INO, 2001));
    /* Held again, then lost by expiry: busy until the fence is done. */
    ck_assert_int_eq(acquire(A, 3000, &r), 0);
    lease_given(t, INO, A, given, 1);
    lease_tick(t, 3000 + LEASE_MS);
    ck_assert_int_eq(fences, 1);
    ck_assert(lease_busy(t, INO, 3000 + LEASE_MS));
    lease_fence_done(t, INO, -EIO, 3001 + LEASE_MS); /* failed: still owed */
    ck_assert(lease_busy(t, INO, 3002 + LEASE_MS));
    lease_tick(t, 6000 + LEASE_MS); /* retried */
    lease_fence_done(t, INO, 0, 6001 + LEASE_MS);
    ck_assert(!lease_busy(t, INO, 6002 + LEASE_MS));
    ck_assert(!lease_busy(t, 0, 6002 + LEASE_MS));
}
END_TEST

START_TEST(busy_right_after_a_restart)
{
    struct lease_table *t2 = lease_table_new(&ops, LEASE_MS, 1000, true);

    /* Holders of the previous run are unknown for one lease period. */
    ck_assert(lease_busy(t2, 77, 1000));
    ck_assert(lease_busy(t2, 77, 1000 + LEASE_MS - 1));
    ck_assert(!lease_busy(t2, 77, 1000 + LEASE_MS));
    lease_table_free(t2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("lease");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, free_lease_is_granted_at_once);
    tcase_add_test(tc, handover_fences_the_chunks_given);
    tcase_add_test(tc, a_busy_holder_refuses);
    tcase_add_test(tc, a_holder_that_stops_writing_hands_over_when_asked_again);
    tcase_add_test(tc, an_unreachable_holder_loses_the_lease_when_it_expires);
    tcase_add_test(tc, no_connection_waits_then_hands_over);
    tcase_add_test(tc, a_renewing_but_silent_holder_times_the_waiter_out);
    tcase_add_test(tc, expiry_fences_at_once);
    tcase_add_test(tc, release_fences_at_the_next_handover_or_later);
    tcase_add_test(tc, after_a_restart_everything_is_fenced_once);
    tcase_add_test(tc, a_failed_fence_fails_the_waiter_and_is_retried);
    tcase_add_test(tc, waiters_queue_in_order_and_cancel);
    tcase_add_test(tc, busy_while_someone_may_write);
    tcase_add_test(tc, busy_right_after_a_restart);
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
