/*
 * Unit tests for common/util, flags and errors: parsing sizes, durations
 * and addresses, flag tables, and the wire status mapping.
 */
#include "errors.h"
#include "flags.h"
#include "util.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(sizes)
{
    uint64_t v;

    ck_assert_int_eq(parse_size("64M", &v), 0);
    ck_assert_uint_eq(v, 64ull << 20);
    ck_assert_int_eq(parse_size("4k", &v), 0);
    ck_assert_uint_eq(v, 4096);
    ck_assert_int_eq(parse_size("1GiB", &v), 0);
    ck_assert_uint_eq(v, 1ull << 30);
    ck_assert_int_eq(parse_size("123", &v), 0);
    ck_assert_uint_eq(v, 123);
    ck_assert_int_eq(parse_size("", &v), -EINVAL);
    ck_assert_int_eq(parse_size("-1", &v), -EINVAL);
    ck_assert_int_eq(parse_size("12X", &v), -EINVAL);
    ck_assert_int_eq(parse_size("99999999999999999999", &v), -EINVAL);
    ck_assert_int_eq(parse_size("99999999999T", &v), -ERANGE);
}
END_TEST

START_TEST(durations)
{
    uint64_t v;

    ck_assert_int_eq(parse_duration_ms("30s", &v), 0);
    ck_assert_uint_eq(v, 30000);
    ck_assert_int_eq(parse_duration_ms("250ms", &v), 0);
    ck_assert_uint_eq(v, 250);
    ck_assert_int_eq(parse_duration_ms("2m", &v), 0);
    ck_assert_uint_eq(v, 120000);
    ck_assert_int_eq(parse_duration_ms("5x", &v), -EINVAL);
}
END_TEST

START_TEST(addresses)
{
    struct sockaddr_in sa;
    char buf[64];

    ck_assert_int_eq(parse_addr("127.0.0.1:7420", &sa), 0);
    format_addr(&sa, buf, sizeof(buf));
    ck_assert_str_eq(buf, "127.0.0.1:7420");
    ck_assert_int_eq(parse_addr("127.0.0.1:0", &sa), 0);
    ck_assert_int_eq(parse_addr("localhost:1", &sa), 0);
    ck_assert_int_eq(parse_addr("127.0.0.1", &sa), -EINVAL);
    ck_assert_int_eq(parse_addr(":80", &sa), -EINVAL);
    ck_assert_int_eq(parse_addr("127.0.0.1:65536", &sa), -EINVAL);
    ck_assert_int_eq(parse_addr("127.0.0.1:12ab", &sa), -EINVAL);
    ck_assert_int_eq(parse_addr("no.such.host.invalid:80", &sa), -EINVAL);
}
END_TEST

START_TEST(flag_table)
{
    const char *dir = NULL, *addr = "127.0.0.1:7420";
    uint64_t size = 1, dur = 2;
    bool fmt = false;
    struct flag f[] = {
        {"meta", FLAG_STRING, &dir, "dir"},   {"listen", FLAG_ADDR, &addr, "addr"},
        {"chunk-size", FLAG_SIZE, &size, "s"}, {"dead-timeout", FLAG_DURATION, &dur, "d"},
        {"format", FLAG_BOOL, &fmt, "f"},
    };
    struct flags_spec spec = {"prog", "[options]", NULL, f, 5, false};
    char *ok[] = {"prog", "--meta", "/tmp/x", "--chunk-size=1M", "--format",
                  "--dead-timeout", "5s", "--listen", "127.0.0.1:0", NULL};
    char *unknown[] = {"prog", "--bogus", NULL};
    char *badaddr[] = {"prog", "--listen", "nowhere", NULL};
    char *missing[] = {"prog", "--meta", NULL};
    char *positional[] = {"prog", "stray", NULL};
    int first;

    ck_assert_int_eq(flags_parse(&spec, 9, ok, &first), 0);
    ck_assert_str_eq(dir, "/tmp/x");
    ck_assert_uint_eq(size, 1 << 20);
    ck_assert_uint_eq(dur, 5000);
    ck_assert(fmt);
    ck_assert_str_eq(addr, "127.0.0.1:0");
    ck_assert_int_eq(first, 9);
    ck_assert_int_eq(flags_parse(&spec, 2, unknown, &first), -EINVAL);
    ck_assert_int_eq(flags_parse(&spec, 3, badaddr, &first), -EINVAL);
    ck_assert_int_eq(flags_parse(&spec, 2, missing, &first), -EINVAL);
    ck_assert_int_eq(flags_parse(&spec, 2, positional, &first), -EINVAL);
    spec.stop_at_positional = true;
    ck_assert_int_eq(flags_parse(&spec, 2, positional, &first), 0);
    ck_assert_int_eq(first, 1);
}
END_TEST

START_TEST(wire_status)
{
    int errs[] = {0, -ENOENT, -EIO, -ESTALE, -EBUSY, -ENOSPC, -ETIMEDOUT, -ECONNRESET, -EAGAIN};

    for (unsigned i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
        ck_assert_int_eq(err_from_wire(err_to_wire(errs[i])), errs[i]);
    ck_assert_int_eq(err_from_wire(-9999), -EIO);
    ck_assert_int_eq(err_to_wire(-EKEYREJECTED), err_to_wire(-EIO));
    ck_assert_str_eq(err_str(-ESTALE), "stale chunk version");
}
END_TEST

START_TEST(atomic_files)
{
    char dir[] = "/tmp/keel-util-XXXXXX", path[128], *data = NULL;
    size_t len;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    ck_assert_int_eq(write_file_atomic(path, "hello", 5), 0);
    ck_assert_int_eq(read_file(path, &data, &len), 0);
    ck_assert_uint_eq(len, 5);
    ck_assert_str_eq(data, "hello");
    free(data);
    unlink(path);
    rmdir(dir);
    ck_assert_int_eq(read_file(path, &data, &len), -ENOENT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, sizes);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, addresses);
    tcase_add_test(tc, flag_table);
    tcase_add_test(tc, wire_status);
    tcase_add_test(tc, atomic_files);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
