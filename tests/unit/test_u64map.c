/*
 * Unit tests for common/u64map against a brute-force model.
 */
#include "u64map.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#define KEYS 5000

START_TEST(model_check)
{
    static void *model[KEYS + 1];
    struct u64map m;

    u64map_init(&m);
    srand(99);
    for (int i = 0; i < 200000; i++) {
        uint64_t k = 1 + (uint64_t)rand() % KEYS;
        void *v = (void *)(uintptr_t)(rand() | 1);

        switch (rand() % 3) {
        case 0:
            ck_assert_int_eq(u64map_put(&m, k, v), 0);
            model[k] = v;
            break;
        case 1:
            ck_assert_ptr_eq(u64map_del(&m, k), model[k]);
            model[k] = NULL;
            break;
        default:
            ck_assert_ptr_eq(u64map_get(&m, k), model[k]);
        }
    }
    size_t n = 0, it = 0;
    uint64_t k;
    void *v;
    while (u64map_next(&m, &it, &k, &v)) {
        ck_assert_ptr_eq(model[k], v);
        n++;
    }
    size_t want = 0;
    for (int i = 1; i <= KEYS; i++)
        want += model[i] != NULL;
    ck_assert_uint_eq(n, want);
    ck_assert_uint_eq(m.len, want);
    ck_assert_int_ne(u64map_put(&m, 0, v), 0);
    ck_assert_ptr_null(u64map_get(&m, 0));
    u64map_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("u64map");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, model_check);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
