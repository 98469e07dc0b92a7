/*
 * Unit tests for common/util, flags, errors, diskio and busypoll: parsing
 * sizes, durations and addresses, flag tables, the wire status mapping,
 * writes in pieces, and a loop that polls for a window after a kick.
 */
#include "busypoll.h"
#include "diskio.h"
#include "errors.h"
#include "flags.h"
#include "util.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
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

START_TEST(uints)
{
    uint64_t v = 7;

    ck_assert_int_eq(parse_uint("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(parse_uint("18446744073709551615", &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
    ck_assert_int_eq(parse_uint("18446744073709551616", &v), -EINVAL);
    ck_assert_int_eq(parse_uint("2K", &v), -EINVAL);
    ck_assert_int_eq(parse_uint("-1", &v), -EINVAL);
    ck_assert_int_eq(parse_uint(" 1", &v), -EINVAL);
    ck_assert_int_eq(parse_uint("", &v), -EINVAL);
    ck_assert_uint_eq(v, UINT64_MAX);
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
        {"meta", FLAG_STRING, &dir, "dir"},    {"listen", FLAG_ADDR, &addr, "addr"},
        {"chunk-size", FLAG_SIZE, &size, "s"}, {"dead-timeout", FLAG_DURATION, &dur, "d"},
        {"format", FLAG_BOOL, &fmt, "f"},
    };
    struct flags_spec spec = {"prog", "[options]", NULL, f, 5, false};
    char *ok[] = {"prog",           "--meta", "/tmp/x",   "--chunk-size=1M", "--format",
                  "--dead-timeout", "5s",     "--listen", "127.0.0.1:0",     NULL};
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

/* The pwrites made while `recording`: offset and length of each. */
static bool recording;
static uint64_t pw_off[16], pw_len[16];
static unsigned npw;

ssize_t __real_pwrite(int fd, const void *buf, size_t len, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t len, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (recording && npw < 16) {
        pw_off[npw] = (uint64_t)off;
        pw_len[npw++] = len;
    }
    return __real_pwrite(fd, buf, len, off);
}

START_TEST(pwrite_pieces)
{
    char dir[] = "/tmp/keel-util-XXXXXX", path[128];
    const uint64_t off = 60 * 1024 + 100;
    const size_t len = 200 * 1024;
    uint8_t *data = malloc(len), *back = malloc(len);
    size_t done = 1;
    int fd;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    fd = open(path, O_RDWR | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 7 + i / 4096);
    recording = true;
    ck_assert_int_eq(diskio_pwrite_pieces(fd, data, len, off, &done), 0);
    recording = false;
    ck_assert_uint_eq(done, len);
    /* Pieces end on 64 KiB boundaries: [off, 64K), three whole ones, the rest. */
    ck_assert_uint_eq(npw, 5);
    ck_assert_uint_eq(pw_off[0], off);
    ck_assert_uint_eq(pw_len[0], DISKIO_PIECE - off);
    for (unsigned i = 1; i < 4; i++) {
        ck_assert_uint_eq(pw_off[i], i * DISKIO_PIECE);
        ck_assert_uint_eq(pw_len[i], DISKIO_PIECE);
    }
    ck_assert_uint_eq(pw_off[4], 4 * DISKIO_PIECE);
    ck_assert_uint_eq(pw_off[4] + pw_len[4], off + len);
    ck_assert_int_eq(pread(fd, back, len, (off_t)off), (ssize_t)len);
    ck_assert_mem_eq(back, data, len);
    close(fd);
    /* An error stops it: nothing written, the errno returned. */
    fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(diskio_pwrite_pieces(fd, data, len, 0, &done), -EBADF);
    ck_assert_uint_eq(done, 0);
    close(fd);
    unlink(path);
    rmdir(dir);
    free(data);
    free(back);
}
END_TEST

static void count_fires(uv_timer_t *t)
{
    (*(int *)t->data)++;
}

/* One turn of the loop; how long it took, in ms. */
static uint64_t turn_ms(uv_loop_t *loop)
{
    uint64_t t0 = mono_ms();

    uv_run(loop, UV_RUN_ONCE);
    return mono_ms() - t0;
}

START_TEST(busy_poll_window)
{
    uv_loop_t loop;
    uv_timer_t timer;
    struct busypoll bp, off;
    unsigned long turns = 0;
    int fired = 0;

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &timer);
    timer.data = &fired;
    uv_timer_start(&timer, count_fires, 300, 300);
    busypoll_init(&bp, &loop, 50 * 1000);
    busypoll_init(&off, &loop, 0);

    /* Not kicked: a turn sleeps until the timer. */
    ck_assert_uint_ge(turn_ms(&loop), 250);
    ck_assert_int_eq(fired, 1);

    /* A window of 0 never polls. */
    busypoll_kick(&off);
    ck_assert(!uv_is_active((uv_handle_t *)&off.idle));

    /* Kicked: the loop's turns return without waiting for the timer (due
     * 300 ms after its last fire) until the window (50 ms) has passed; then
     * the poll stops by itself. A loop that slept would block in its first
     * turn until the timer fired. */
    fired = 0;
    busypoll_kick(&bp);
    while (uv_is_active((uv_handle_t *)&bp.idle) && turns < 10000000ul) {
        uv_run(&loop, UV_RUN_ONCE);
        turns++;
    }
    ck_assert(!uv_is_active((uv_handle_t *)&bp.idle));
    ck_assert_uint_ge(turns, 2);
    ck_assert_int_eq(fired, 0);

    /* Closed again: a turn sleeps until the timer. */
    ck_assert_uint_ge(turn_ms(&loop), 100);
    ck_assert_int_eq(fired, 1);

    /* The poll does not keep the loop alive on its own. */
    uv_close((uv_handle_t *)&timer, NULL);
    busypoll_kick(&bp);
    ck_assert(uv_is_active((uv_handle_t *)&bp.idle));
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);

    /* Close, and a kick after it is ignored. */
    busypoll_close(&bp);
    busypoll_close(&off);
    busypoll_kick(&bp);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, sizes);
    tcase_add_test(tc, uints);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, addresses);
    tcase_add_test(tc, flag_table);
    tcase_add_test(tc, wire_status);
    tcase_add_test(tc, atomic_files);
    tcase_add_test(tc, pwrite_pieces);
    tcase_add_test(tc, busy_poll_window);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
