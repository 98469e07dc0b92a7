/*
 * Unit tests for client/split: pieces cover a range exactly, in order, never
 * crossing a chunk boundary or exceeding the request size.
 */
#include "split.h"

#include <check.h>
#include <stdlib.h>

static void check_split(uint64_t off, uint64_t len, uint64_t cs, uint32_t max_io)
{
    size_t n = split_count(off, len, cs, max_io);
    struct split_piece *p = calloc(n ? n : 1, sizeof(*p));
    uint64_t pos = off;
    size_t boff = 0;

    split_range(off, len, cs, max_io, p);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_gt(p[i].len, 0);
        ck_assert_uint_le(p[i].len, max_io);
        ck_assert_uint_eq(p[i].index * cs + p[i].coff, pos);
        ck_assert_uint_le(p[i].coff + p[i].len, cs);
        ck_assert_uint_eq(p[i].boff, boff);
        pos += p[i].len;
        boff += p[i].len;
    }
    ck_assert_uint_eq(pos, off + len);
    free(p);
}

START_TEST(examples)
{
    struct split_piece p[8];

    ck_assert_uint_eq(split_count(0, 0, 1 << 20, 1 << 20), 0);
    /* 16 MiB across 64 MiB chunks from 60 MiB, 4 MiB requests: 4+4+4+4. */
    ck_assert_uint_eq(split_count(60ull << 20, 16ull << 20, 64ull << 20, 4u << 20), 4);
    split_range(60ull << 20, 16ull << 20, 64ull << 20, 4u << 20, p);
    ck_assert_uint_eq(p[0].index, 0);
    ck_assert_uint_eq(p[1].index, 1);
    ck_assert_uint_eq(p[1].coff, 0);
    /* An unaligned write spanning a boundary of 1 MiB chunks. */
    ck_assert_uint_eq(split_count((1 << 20) - 10, 20, 1 << 20, 4u << 20), 2);
    split_range((1 << 20) - 10, 20, 1 << 20, 4u << 20, p);
    ck_assert_uint_eq(p[0].len, 10);
    ck_assert_uint_eq(p[1].len, 10);
    ck_assert_uint_eq(p[1].boff, 10);
}
END_TEST

START_TEST(random_ranges)
{
    srand(3);
    for (int i = 0; i < 5000; i++) {
        uint64_t cs = 1ull << (12 + rand() % 15);
        /* Requests from a 64th of a chunk up to 16 MiB. */
        uint32_t max_io = (uint32_t)(cs >> (rand() % 7)) + (uint32_t)(rand() % 4096);
        uint64_t off = ((uint64_t)rand() << 16 ^ (uint64_t)rand()) % (cs * 50);
        uint64_t len = (uint64_t)rand() % (cs * 3 + 1);

        check_split(off, len, cs, max_io);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("split");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, examples);
    tcase_add_test(tc, random_ranges);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
