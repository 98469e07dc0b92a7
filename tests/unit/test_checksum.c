/*
 * Unit tests for common/checksum: range updates against full recomputes.
 */
#include "checksum.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (64u * KEEL_BLOCK_SIZE)
#define NB    (CHUNK / KEEL_BLOCK_SIZE)

static uint8_t content[CHUNK];

static int read_block(uint64_t b, void *buf, void *arg)
{
    memcpy(buf, content + b * KEEL_BLOCK_SIZE, KEEL_BLOCK_SIZE);
    return 0;
}

static int failing_read(uint64_t b, void *buf, void *arg)
{
    return -EIO;
}

START_TEST(zero_block)
{
    uint8_t z[KEEL_BLOCK_SIZE] = {0};
    uint64_t s;

    csum_blocks(z, 1, &s);
    ck_assert_uint_eq(s, csum_zero_block());
    ck_assert_uint_eq(s, csum_buf(z, sizeof(z)));
}
END_TEST

START_TEST(random_range_updates_match_recompute)
{
    uint64_t sums[NB], full[NB];
    static uint8_t data[CHUNK];

    srand(12345);
    memset(content, 0, sizeof(content));
    for (unsigned i = 0; i < NB; i++)
        sums[i] = csum_zero_block();
    for (int round = 0; round < 3000; round++) {
        uint64_t off = (uint64_t)rand() % CHUNK;
        size_t len = 1 + (size_t)rand() % (round % 3 ? 64 : CHUNK - off);

        if (off + len > CHUNK)
            len = CHUNK - off;
        if (round % 5 == 0) { /* aligned writes too */
            off &= ~(uint64_t)(KEEL_BLOCK_SIZE - 1);
            len = (len + KEEL_BLOCK_SIZE - 1) & ~(size_t)(KEEL_BLOCK_SIZE - 1);
            if (off + len > CHUNK)
                len = CHUNK - off;
        }
        for (size_t i = 0; i < len; i++)
            data[i] = (uint8_t)rand();
        ck_assert_int_eq(csum_update(sums, off, data, len, read_block, NULL), 0);
        memcpy(content + off, data, len);
        csum_blocks(content, NB, full);
        ck_assert_mem_eq(sums, full, sizeof(sums));
    }
    ck_assert_int_eq(csum_verify(sums, content, NB, NULL), 0);
}
END_TEST

START_TEST(verify_finds_the_bad_block)
{
    uint64_t sums[NB];
    size_t bad = 0;

    for (unsigned i = 0; i < CHUNK; i++)
        content[i] = (uint8_t)(i * 7);
    csum_blocks(content, NB, sums);
    content[5 * KEEL_BLOCK_SIZE + 100] ^= 1;
    ck_assert_int_eq(csum_verify(sums, content, NB, &bad), -EIO);
    ck_assert_uint_eq(bad, 5);
    ck_assert_int_eq(csum_verify(sums + 6, content + 6 * KEEL_BLOCK_SIZE, NB - 6, NULL), 0);
}
END_TEST

START_TEST(failed_edge_read_changes_nothing)
{
    uint64_t sums[NB], before[NB];
    uint8_t data[10] = {1, 2, 3};

    for (unsigned i = 0; i < NB; i++)
        sums[i] = i + 1;
    memcpy(before, sums, sizeof(sums));
    ck_assert_int_eq(csum_update(sums, 4090, data, sizeof(data), failing_read, NULL), -EIO);
    ck_assert_mem_eq(sums, before, sizeof(sums));
}
END_TEST

START_TEST(block_range)
{
    uint64_t a, b;

    csum_block_range(0, 1, &a, &b);
    ck_assert(a == 0 && b == 0);
    csum_block_range(4095, 2, &a, &b);
    ck_assert(a == 0 && b == 1);
    csum_block_range(4096, 8192, &a, &b);
    ck_assert(a == 1 && b == 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("checksum");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, zero_block);
    tcase_add_test(tc, random_range_updates_match_recompute);
    tcase_add_test(tc, verify_finds_the_bad_block);
    tcase_add_test(tc, failed_edge_read_changes_nothing);
    tcase_add_test(tc, block_range);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
