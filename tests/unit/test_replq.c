/*
 * Unit tests for namenode/replq: service order (class first, oldest first
 * within a class, age kept across class changes and postponement), stream
 * limits per datanode in both directions, the memory of failed nodes that
 * sends a retry elsewhere, timeouts, a node's copies, and entries removed
 * in any state giving their streams back. The order is also checked
 * against a model under random pushes, moves, postponements and removals,
 * and many entries of one age changing class must not cost a walk each.
 */
#include "replq.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct replq *q;

static void setup(void)
{
    q = replq_new(5, 2);
}

static void teardown(void)
{
    replq_free(q);
}

/* The queued chunks in service order, into out; returns how many. */
static size_t order(uint64_t *out, size_t max)
{
    struct replq_iter it = {0};
    uint64_t id;
    uint32_t cls;
    size_t n = 0;

    while (n < max && replq_iter_next(q, &it, &id, &cls))
        out[n++] = id;
    return n;
}

static struct replq_copy copy(uint64_t src, uint64_t tgt)
{
    return (struct replq_copy){.src = src, .tgt = tgt};
}

START_TEST(class_then_age)
{
    uint64_t got[16];

    replq_push(q, 10, 2, 100); /* two replicas left */
    replq_push(q, 11, 1, 200); /* one replica left, younger */
    replq_push(q, 12, 4, 50);  /* misplaced, oldest */
    replq_push(q, 13, 1, 150); /* one replica left, older than 11 */
    replq_push(q, 14, 2, 90);  /* older than 10 */
    replq_push(q, 15, 9, 10);  /* past the last class: clamped to it */
    ck_assert_uint_eq(replq_queued(q), 6);
    ck_assert_uint_eq(order(got, 16), 6);
    ck_assert_uint_eq(got[0], 13);
    ck_assert_uint_eq(got[1], 11);
    ck_assert_uint_eq(got[2], 14);
    ck_assert_uint_eq(got[3], 10);
    ck_assert_uint_eq(got[4], 15);
    ck_assert_uint_eq(got[5], 12);

    /* 10 loses another replica: class 1, and it keeps its age, so it goes
     * before 13 and 11, both queued later. Pushing again is a no-op. */
    replq_push(q, 10, 1, 500);
    replq_push(q, 10, 1, 600);
    order(got, 16);
    ck_assert_uint_eq(got[0], 10);
    ck_assert_uint_eq(got[1], 13);
    ck_assert_uint_eq(got[2], 11);
    ck_assert_uint_eq(got[3], 14);
    ck_assert_uint_eq(replq_queued(q), 6);

    /* Postponed entries are skipped, then come back in age order. */
    replq_postpone(q, 13, 1000);
    replq_postpone(q, 14, 2000);
    ck_assert_uint_eq(order(got, 16), 4);
    ck_assert_uint_eq(got[0], 10);
    ck_assert_uint_eq(replq_queued(q), 6);
    ck_assert_uint_eq(replq_wake(q, 999, false), 0);
    ck_assert_uint_eq(replq_wake(q, 1000, false), 1);
    order(got, 16);
    ck_assert_uint_eq(got[1], 13);
    ck_assert_uint_eq(replq_wake(q, 0, true), 1);
    ck_assert_uint_eq(order(got, 16), 6);
    ck_assert_uint_eq(got[3], 14);

    replq_remove(q, 13);
    replq_remove(q, 999);
    ck_assert_uint_eq(replq_queued(q), 5);
    ck_assert(!replq_is_queued(q, 13));
    ck_assert(replq_is_queued(q, 14));
}
END_TEST

START_TEST(insertion_by_age_from_either_end)
{
    uint64_t got[64];

    for (uint64_t i = 0; i < 40; i++)
        replq_push(q, 100 + i, 3, 1000 + i * 10);
    /* Entries moving into the class with old and middle ages. */
    replq_push(q, 1, 0, 1005);
    replq_push(q, 2, 0, 1195);
    replq_push(q, 3, 0, 1001);
    replq_push(q, 4, 0, 9999);
    replq_push(q, 1, 3, 0);
    replq_push(q, 2, 3, 0);
    replq_push(q, 3, 3, 0);
    replq_push(q, 4, 3, 0);
    ck_assert_uint_eq(order(got, 64), 44);
    ck_assert_uint_eq(got[0], 100);
    ck_assert_uint_eq(got[1], 3);
    ck_assert_uint_eq(got[2], 1);
    ck_assert_uint_eq(got[3], 101);
    ck_assert_uint_eq(got[43], 4);
    for (size_t i = 0; i + 1 < 44; i++) {
        /* every neighbouring pair of the original entries keeps its order */
        if (got[i] >= 100 && got[i + 1] >= 100)
            ck_assert_uint_lt(got[i], got[i + 1]);
    }
    /* 2 (age 1195) sits between 119 (1190) and 120 (1200). */
    for (size_t i = 1; i + 1 < 44; i++)
        if (got[i] == 2) {
            ck_assert_uint_eq(got[i - 1], 119);
            ck_assert_uint_eq(got[i + 1], 120);
        }
}
END_TEST

START_TEST(streams_per_node)
{
    struct replq_copy two[2] = {copy(1, 2), copy(1, 3)};
    struct replq_copy third = copy(1, 4);
    struct replq_copy into2 = copy(5, 2), into2b = copy(6, 2);

    for (uint64_t c = 1; c <= 5; c++)
        replq_push(q, c, 1, c);
    ck_assert_int_eq(replq_start(q, 1, two, 2), 0);
    ck_assert_uint_eq(replq_out(q, 1), 2);
    ck_assert_uint_eq(replq_in(q, 2), 1);
    ck_assert_uint_eq(replq_running(q), 2);
    ck_assert_uint_eq(replq_queued(q), 4);
    ck_assert(replq_is_running(q, 1));
    /* Node 1 sends two already: a third copy from it waits. */
    ck_assert_int_eq(replq_start(q, 2, &third, 1), -EBUSY);
    ck_assert(replq_is_queued(q, 2));
    ck_assert_int_eq(replq_start(q, 3, &into2, 1), 0);
    /* Node 2 receives two already. */
    ck_assert_int_eq(replq_start(q, 4, &into2b, 1), -EBUSY);
    /* Two copies of one start are counted together. */
    {
        struct replq_copy both[2] = {copy(7, 8), copy(7, 9)};
        struct replq_copy twice[2] = {copy(7, 8), copy(9, 8)};

        ck_assert_int_eq(replq_start(q, 4, twice, 2), -EINVAL); /* one target twice */
        ck_assert_int_eq(replq_start(q, 4, both, 2), 0);
        ck_assert_uint_eq(replq_out(q, 7), 2);
    }
    ck_assert_int_eq(replq_start(q, 1, &third, 1), -EALREADY);
    ck_assert_int_eq(replq_start(q, 42, &third, 1), -ENOENT);
    ck_assert_int_eq(replq_start(q, 5, &third, 0), -EINVAL);
    {
        struct replq_copy self = copy(3, 3);

        ck_assert_int_eq(replq_start(q, 5, &self, 1), -EINVAL);
    }
    /* One copy of chunk 1 ends: node 1 may send again. */
    ck_assert(!replq_end(q, 1, 1, 2, REPLQ_DONE));
    ck_assert_uint_eq(replq_out(q, 1), 1);
    ck_assert_int_eq(replq_start(q, 2, &third, 1), 0);
    ck_assert(replq_end(q, 1, 1, 3, REPLQ_DONE)); /* the last one */
    ck_assert(!replq_is_running(q, 1));
    ck_assert(!replq_is_queued(q, 1)); /* idle: the caller decides */
    ck_assert(!replq_end(q, 1, 1, 3, REPLQ_DONE));
    /* Removing a running chunk gives its streams back. */
    replq_remove(q, 4);
    ck_assert_uint_eq(replq_out(q, 7), 0);
    ck_assert_uint_eq(replq_running(q), 2);
}
END_TEST

START_TEST(failures_send_retries_elsewhere)
{
    struct replq_copy c1 = copy(1, 2), c2 = copy(1, 3), c3 = copy(4, 5);
    uint64_t avoid[REPLQ_MAX_AVOID];
    size_t n;

    replq_push(q, 9, 1, 1);
    ck_assert_int_eq(replq_start(q, 9, &c1, 1), 0);
    ck_assert(replq_end(q, 9, 1, 2, REPLQ_TARGET_FAILED));
    replq_push(q, 9, 1, 50);
    n = replq_avoid(q, 9, avoid);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(avoid[0], 2);
    ck_assert_uint_eq(replq_failures(q, 9), 1);
    ck_assert_int_eq(replq_start(q, 9, &c2, 1), 0);
    ck_assert(replq_end(q, 9, 1, 3, REPLQ_SOURCE_FAILED));
    replq_push(q, 9, 1, 60);
    n = replq_avoid(q, 9, avoid);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(avoid[1], 1); /* the source this time */
    ck_assert_int_eq(replq_start(q, 9, &c3, 1), 0);
    ck_assert(replq_end(q, 9, 4, 5, REPLQ_BOTH_FAILED));
    ck_assert_uint_eq(replq_avoid(q, 9, avoid), 4);
    ck_assert_uint_eq(replq_failures(q, 9), 3);
    /* Success resets the failure count (the memory stays with the entry). */
    replq_push(q, 9, 1, 70);
    ck_assert_int_eq(replq_start(q, 9, &c1, 1), 0);
    ck_assert(replq_end(q, 9, 1, 2, REPLQ_DONE));
    ck_assert_uint_eq(replq_failures(q, 9), 0);
    /* Only the latest REPLQ_MAX_AVOID nodes are remembered. */
    for (uint64_t t = 10; t < 20; t++) {
        struct replq_copy c = copy(1, t);

        replq_push(q, 9, 1, 80);
        ck_assert_int_eq(replq_start(q, 9, &c, 1), 0);
        replq_end(q, 9, 1, t, REPLQ_TARGET_FAILED);
    }
    ck_assert_uint_eq(replq_avoid(q, 9, avoid), REPLQ_MAX_AVOID);
    ck_assert_uint_eq(avoid[REPLQ_MAX_AVOID - 1], 19);
    /* A cancelled copy blames nobody and is no failure. */
    replq_push(q, 9, 1, 90);
    ck_assert_int_eq(replq_start(q, 9, &c3, 1), 0);
    replq_end(q, 9, 4, 5, REPLQ_CANCELLED);
    ck_assert_uint_eq(replq_failures(q, 9), 10);
    /* Removal forgets it all. */
    replq_remove(q, 9);
    ck_assert_uint_eq(replq_avoid(q, 9, avoid), 0);
    ck_assert_uint_eq(replq_failures(q, 9), 0);
}
END_TEST

START_TEST(timeouts_and_node_copies)
{
    struct replq_copy a[2] = {copy(1, 2), copy(3, 4)};
    struct replq_copy b = copy(5, 1);
    struct replq_ref *refs;
    struct replq_copy *cp;
    size_t n;

    replq_push(q, 7, 1, 1);
    replq_push(q, 8, 1, 2);
    ck_assert_int_eq(replq_start(q, 7, a, 2), 0);
    ck_assert_int_eq(replq_start(q, 8, &b, 1), 0);
    /* Not sent yet (a bump runs first): never expires. */
    refs = replq_expired(q, 1000000, 10, &n);
    ck_assert_ptr_null(refs);
    ck_assert_uint_eq(n, 0);
    cp = replq_find(q, 7, 1, 2);
    ck_assert_ptr_nonnull(cp);
    cp->version = 3;
    cp->sent_ms = 100;
    replq_find(q, 8, 5, 1)->sent_ms = 150;
    ck_assert_ptr_null(replq_find(q, 7, 1, 4));
    refs = replq_expired(q, 159, 50, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(refs[0].chunk, 7);
    ck_assert_uint_eq(refs[0].tgt, 2);
    free(refs);
    refs = replq_expired(q, 200, 50, &n);
    ck_assert_uint_eq(n, 2);
    free(refs);
    /* Node 1 is the source of one copy and the target of another. */
    refs = replq_node_copies(q, 1, &n);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < n; i++)
        ck_assert(refs[i].src == 1 || refs[i].tgt == 1);
    free(refs);
    refs = replq_node_copies(q, 42, &n);
    ck_assert_ptr_null(refs);
    ck_assert_uint_eq(n, 0);
}
END_TEST

/* The model: what the queue should hold, in first-queued order. */
#define MODEL_N 1500

static struct model_entry {
    bool in; /* has an entry (queued, postponed or running) */
    bool postponed;
    bool running;
    uint32_t cls;
    uint64_t since, first; /* age; rank of its first queueing */
} model[MODEL_N + 1];

static int model_cmp(const void *a, const void *b)
{
    const struct model_entry *x = &model[*(const uint64_t *)a], *y = &model[*(const uint64_t *)b];

    if (x->cls != y->cls)
        return x->cls < y->cls ? -1 : 1;
    if (x->since != y->since)
        return x->since < y->since ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* Checks the queue's service order and count against the model. */
static void check_model(void)
{
    static uint64_t want[MODEL_N + 1], got[MODEL_N + 1];
    size_t n = 0, queued = 0, i;

    for (uint64_t c = 1; c <= MODEL_N; c++) {
        if (!model[c].in || model[c].running)
            continue;
        queued++;
        if (!model[c].postponed)
            want[n++] = c;
    }
    qsort(want, n, sizeof(*want), model_cmp);
    ck_assert_uint_eq(replq_queued(q), queued);
    ck_assert_uint_eq(order(got, MODEL_N), n);
    /* One assertion for the lot: Check records every assertion passed. */
    for (i = 0; i < n && got[i] == want[i]; i++)
        ;
    ck_assert_msg(i == n, "position %zu of %zu: chunk %" PRIu64 ", the model says %" PRIu64, i, n,
                  got[i], want[i]);
}

/* Random pushes (new entries, and moves between classes among many equal
 * ages), postponements, wakes, runs that end and are queued again, and
 * removals, under several seeds; the order is compared with the model
 * often, and after every step for a stretch of each run. */
START_TEST(order_matches_a_model)
{
    for (uint64_t seed = 1; seed <= 4; seed++) {
        uint64_t rank = 0, x = seed * 0x9E3779B97F4A7C15ull;

        replq_free(q);
        q = replq_new(5, 1u << 20);
        memset(model, 0, sizeof(model));
        for (int round = 0; round < 20000; round++) {
            uint64_t chunk, r;
            struct model_entry *m;

            x = x * 6364136223846793005ull + 1442695040888963407ull;
            r = x >> 24;
            chunk = 1 + r % MODEL_N;
            m = &model[chunk];
            switch ((r >> 12) % 10) {
            case 0:
            case 1:
            case 2:
            case 3: /* queue it, or move it to another class; few distinct ages */
                if (m->running)
                    break;
                if (!m->in) {
                    m->in = true;
                    m->since = (r >> 20) % 7;
                    m->first = rank++;
                }
                m->cls = (uint32_t)((r >> 16) % 5);
                m->postponed = false;
                replq_push(q, chunk, m->cls, m->since + 1000);
                break;
            case 4:
                if (m->in && !m->postponed && !m->running) {
                    m->postponed = true;
                    replq_postpone(q, chunk, 100);
                }
                break;
            case 5:
                if ((r >> 20) % 16 == 0) {
                    replq_wake(q, 100, false);
                    for (uint64_t i = 1; i <= MODEL_N; i++)
                        model[i].postponed = false;
                }
                break;
            case 6: /* run it: it leaves its class (from postponed too) */
                if (m->in && !m->running) {
                    struct replq_copy c = {.src = 1, .tgt = 2};

                    ck_assert_int_eq(replq_start(q, chunk, &c, 1), 0);
                    m->running = true;
                    m->postponed = false;
                }
                break;
            case 7: /* its copy ends; queued again it keeps its age */
                if (m->running) {
                    ck_assert(replq_end(q, chunk, 1, 2, REPLQ_DONE));
                    m->running = false;
                    m->cls = (uint32_t)((r >> 16) % 5);
                    replq_push(q, chunk, m->cls, 5000);
                }
                break;
            default:
                *m = (struct model_entry){0};
                replq_remove(q, chunk);
                break;
            }
            if (round % 97 == 96 || (round >= 15000 && round < 15300))
                check_model();
        }
        check_model();
    }
}
END_TEST

/* A datanode's death queues hundreds of thousands of chunks at about the
 * same time, and they move between classes as the other datanodes'
 * reports come in: each move must find its place without walking every
 * entry of its age. */
START_TEST(many_of_one_age_change_class)
{
    const uint64_t n = 300000;
    struct timespec t0, t1;
    uint64_t prev = 0, id = 0;
    struct replq_iter it = {0};
    uint32_t cls = 0, last_cls = 1;
    size_t seen = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t c = 1; c <= n; c++)
        replq_push(q, c, 2, 1000);
    replq_push(q, n + 1, 2, 9000); /* one young entry */
    for (uint64_t c = 1; c <= n; c += 2)
        replq_push(q, c, 1, 9100);
    for (uint64_t c = 3; c <= n; c += 4)
        replq_push(q, c, 2, 9200); /* back, among the many of age 1000 */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Linear-logarithmic work takes a second or two even with the
     * sanitizers; a walk per move takes many minutes. */
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 60);
    ck_assert_uint_eq(replq_queued(q), n + 1);
    /* Class 1 holds c = 1 mod 4, class 2 the others, each in age order
     * and ties in the order they were first queued; n + 1 comes last. */
    while (replq_iter_next(q, &it, &id, &cls)) {
        if (cls != last_cls)
            prev = 0;
        last_cls = cls;
        if (cls != (id <= n && id % 4 == 1 ? 1u : 2u) || id <= prev)
            break;
        prev = id;
        seen++;
    }
    ck_assert_msg(seen == n + 1, "chunk %" PRIu64 " in class %u after %" PRIu64 " (%zu seen)", id,
                  cls, prev, seen);
    ck_assert_uint_eq(prev, n + 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("replq");
    TCase *tc = tcase_create("replq");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, class_then_age);
    tcase_add_test(tc, insertion_by_age_from_either_end);
    tcase_add_test(tc, streams_per_node);
    tcase_add_test(tc, failures_send_retries_elsewhere);
    tcase_add_test(tc, timeouts_and_node_copies);
    tcase_add_test(tc, order_matches_a_model);
    tcase_add_test(tc, many_of_one_age_change_class);
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
